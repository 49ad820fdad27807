// attn-reassociate on latent KV (MLA, DeepSeek-V2): K = C Wk and V = C Wv
// carry #attn.lowrank<latent, "r">. The projection can be absorbed into the
// other operand of each reader: QK^T = (Q Wk^T) C^T and O = (P C) Wv. That
// pays for decode (one query per head against many keys) but not for a
// long prefill when |r| > |e|: the pass keeps what attn-analyze counts as
// fewer FLOPs.
// RUN: attn-opt %s --attn-reassociate -split-input-file -verify-diagnostics | FileCheck %s

/// Decode: |m| = 1. Both projections are absorbed; K and V are never formed.
// CHECK-LABEL: attn.cascade @mla_decode
// 1. The query in latent space, with the scale: |h| x |r| per token.
// CHECK: %qk_r = attn.einsum [b, h, m, r] = %q[b, h, m, e] * %wk[h, r, e] * 0.125 sum(e)
// 2. Scores straight from the latent cache.
// CHECK: %qk = attn.einsum [b, h, m, p] = %c[b, p, r] * %qk_r[b, h, m, r] sum(r)
// 3. The weighted sum of latents, then one projection per query.
// CHECK: %o_r = attn.einsum [b, h, m, r] = %sn[b, h, m, p] * %c[b, p, r] sum(p)
// CHECK: %o = attn.einsum [b, h, m, f] = %wv[h, r, f] * %o_r[b, h, m, r] / %sd[b, h, m] sum(r)
// CHECK-NOT: %k =
// CHECK-NOT: %v =
attn.cascade @mla_decode ranks(b, h, m = 1, p, r = 128, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32>, %c: !attn.t<[b, p, r], f32>,
     %wk: !attn.t<[h, r, e], f32>, %wv: !attn.t<[h, r, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>) {
  // expected-remark@+1 {{absorbed the latent projection 'k' into its readers: qk_r = q[b, h, m, e] * wk[h, r, e] * 0.125; flops 33156*b*h*p -> 16836*b*h*p + 24576*b*h}}
  %k = attn.einsum [b, h, p, e] = %c[b, p, r] * %wk[h, r, e] sum(r) {attn.lowrank = #attn.lowrank<latent, "r">} : f32
  // expected-remark@+1 {{absorbed the latent projection 'v' into its readers: o_r = sn[b, h, m, p] * c[b, p, r]}}
  %v = attn.einsum [b, h, p, f] = %c[b, p, r] * %wv[h, r, f] sum(r) {attn.lowrank = #attn.lowrank<latent, "r">} : f32
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.125 sum(e) : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}

// -----

/// Prefill (|m| = |p| = 4096 when compared): with |r| = 128 > |e| = 64 the
/// scores over the latent cost more than projecting K once; unchanged.
// CHECK-LABEL: attn.cascade @mla_prefill
// CHECK: %k = attn.einsum [b, h, p, e] = %c[b, p, r] * %wk[h, r, e] sum(r)
// CHECK: %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.125 sum(e)
attn.cascade @mla_prefill ranks(b, h, m, p, r = 128, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32>, %c: !attn.t<[b, p, r], f32>, %wk: !attn.t<[h, r, e], f32>)
    -> (s: !attn.t<[b, h, m, p], f32>) {
  // expected-remark@+1 {{kept as written: absorbing the latent projection 'k' costs more; flops 192*b*h*m*p + 16384*b*h*p -> 256*b*h*m*p + 24576*b*h*m}}
  %k = attn.einsum [b, h, p, e] = %c[b, p, r] * %wk[h, r, e] sum(r) {attn.lowrank = #attn.lowrank<latent, "r">} : f32
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.125 sum(e) : f32
  attn.yield %qk : !attn.t<[b, h, m, p], f32>
}
