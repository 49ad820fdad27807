// attn-reassociate on a low-rank additive bias (FlashBias, Wu et al. 2025):
// B[m, p] = sum_r U[m, r] W[p, r] carries #attn.lowrank<bias, "r">. Added
// to the scores S = sum_e Q K * scale, it becomes part of one contraction
// over the concatenated rank er = e ++ r (|er| = |e| + |r|):
//   [Q * scale, U] . [K, W]^T = S + B,
// so the |m| x |p| bias is never formed; the concatenations are O(N (e + r)).
// RUN: attn-opt %s --attn-reassociate -split-input-file -verify-diagnostics | FileCheck %s

/// A rank-16 bias (examples/lowrank-bias.mlir).
// CHECK-LABEL: attn.cascade @lowrank_bias
// CHECK-SAME: ranks(b, h, m, p, r = 16, e = 64, f = 64, er = 80)
// 1. The query side: Q * scale in columns 0..63, U in 64..79. Both indices
//    stay in range in both branches (er mod 64, (er - 64) mod 16 = er mod 16).
// CHECK: %cat_q = attn.einsum [b, h, m, er] = select(er < 64.0, %q[b, h, m, er mod 64] * 0.125, %u[b, h, m, er mod 16])
// 2. The key side: K, then W.
// CHECK: %cat_k = attn.einsum [b, h, p, er] = select(er < 64.0, %k[b, h, p, er mod 64], %w[b, h, p, er mod 16])
// 3. One contraction gives S + B.
// CHECK: %s_bias = attn.einsum [b, h, m, p] = %cat_q[b, h, m, er] * %cat_k[b, h, p, er] sum(er)
// CHECK: %qk = attn.einsum [b, h, m, p] = %s_bias[b, h, m, p] : f32
// CHECK-NOT: %bias
attn.cascade @lowrank_bias ranks(b, h, m, p, r = 16, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>,
     %u: !attn.t<[b, h, m, r], f32>, %w: !attn.t<[b, h, p, r], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  // expected-remark@+1 {{folded the rank-16 bias 'bias' into the contraction 's' (er = e ++ r, 80): s_bias = cat_q[b, h, m, er] * cat_k[b, h, p, er] sum(er); flops 421*b*h*m*p + 2*b*h*m -> 356*b*h*m*p + 242*b*h*m + 160*b*h*p}}
  %bias = attn.einsum [b, h, m, p] = %u[b, h, m, r] * %w[b, h, p, r] sum(r) {attn.lowrank = #attn.lowrank<bias, "r">} : f32
  %s = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.125 sum(e) : f32
  %qk = attn.einsum [b, h, m, p] = %s[b, h, m, p] + %bias[b, h, m, p] : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}

// -----

/// ALiBi is a rank-2 bias: slope(h) * (p - m) = [slope, -slope * m] . [p, 1].
/// Written so (broadcast over b, subtracted), it folds like any other; the
/// mask stays on the reader. A subtracted bias negates its query side.
// CHECK-LABEL: attn.cascade @alibi_rank2
// CHECK-SAME: er = 10
// CHECK: %cat_q = attn.einsum [b, h, m, er] = select(er < 8.0, %q[b, h, m, er mod 8] * 0.125, -1.0 * %u[h, m, er mod 2])
// CHECK: %cat_k = attn.einsum [b, h, p, er] = select(er < 8.0, %k[b, h, p, er mod 8], %w[p, er mod 2])
// CHECK: %s_neg_bias = attn.einsum [b, h, m, p] = %cat_q[b, h, m, er] * %cat_k[b, h, p, er] sum(er)
// CHECK: %qk = attn.einsum [b, h, m, p] = %s_neg_bias[b, h, m, p] if (p <= m) else -inf
attn.cascade @alibi_rank2 ranks(b, h, m, p, r = 2, e = 8, f = 8)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>) {
  %u = attn.einsum [h, m, r] = select(r == 0, exp2(-8.0 * (h + 1) / |h|), -exp2(-8.0 * (h + 1) / |h|) * m) : f32
  %w = attn.einsum [p, r] = select(r == 0, p, 1.0) : f32
  // expected-remark@+1 {{folded the rank-2 bias 'neg_bias' into the contraction 's'}}
  %neg_bias = attn.einsum [h, m, p] = %u[h, m, r] * %w[p, r] sum(r) {attn.lowrank = #attn.lowrank<bias, "r">} : f32
  %s = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.125 sum(e) : f32
  %qk = attn.einsum [b, h, m, p] = %s[b, h, m, p] - %neg_bias[h, m, p] if (p <= m) else -inf : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) if (%gm[b, h, m] > -inf) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) if (%sd[b, h, m] > 0) : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}
