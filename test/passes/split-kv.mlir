// attn-split-kv: the key rank in independent parts of 128 keys, merged with
// the corrections of the online form (FlashDecoding's split for decode).
// RUN: attn-opt %s --attn-split-kv=split-size=128 -split-input-file -verify-diagnostics | FileCheck %s

// Each split reduces its own keys against its own max (ref_gm_part). The
// merge takes the max over splits first, then rescales every partial sum
// by c_gm = exp(gm_part - ref_gm): an empty split (gm_part = -inf) adds 0.
// CHECK-LABEL: attn.cascade @decode
// CHECK-SAME: partition(p -> ps, pi = 128 ragged)
// CHECK: %gm_part = attn.einsum [b, h, m, ps] = %qk[b, h, m, ps, pi] max(pi)
// CHECK: %ref_gm_part = attn.einsum [b, h, m, ps] = select(%gm_part[b, h, m, ps] == -inf, 0.0, %gm_part[b, h, m, ps])
// CHECK: %gm = attn.einsum [b, h, m] = %gm_part[b, h, m, ps] max(ps)
// CHECK: %ref_gm = attn.einsum [b, h, m] = select(%gm[b, h, m] == -inf, 0.0, %gm[b, h, m])
// CHECK: %c_gm = attn.einsum [b, h, m, ps] = exp(%gm_part[b, h, m, ps] - %ref_gm[b, h, m])
// CHECK: %sn = attn.einsum [b, h, m, ps, pi] = exp(%qk[b, h, m, ps, pi] - %ref_gm_part[b, h, m, ps])
// CHECK: %sd_part = attn.einsum [b, h, m, ps] = %sn[b, h, m, ps, pi] sum(pi)
// CHECK: %sd = attn.einsum [b, h, m] = %sd_part[b, h, m, ps] * %c_gm[b, h, m, ps] sum(ps)
// CHECK: %o_num_part = attn.einsum [b, h, m, f, ps] = %sn[b, h, m, ps, pi] * %v[b, h floordiv 4, ps * 128 + pi, f] sum(pi)
// CHECK: %o_num = attn.einsum [b, h, m, f] = %o_num_part[b, h, m, f, ps] * %c_gm[b, h, m, ps] sum(ps)
// CHECK: %o = attn.einsum [b, h, m, f] = %o_num[b, h, m, f] / %sd[b, h, m]
// CHECK: %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m])
// expected-remark@+1 {{split p into parts of 128 (ps = ceildiv(|p|, 128) splits, reduced independently); merge: gm = max_ps gm_part, sd = sum_ps sd_part * c_gm, o_num = sum_ps o_num_part * c_gm}}
attn.cascade @decode ranks(b, h, g, m, p, e = 64, f = 64) where(h = 4 * g)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, g, p, e], f32>, %v: !attn.t<[b, g, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h floordiv 4, p, e] * 0.125 sum(e) : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h floordiv 4, p, f] / %sd[b, h, m] sum(p) : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}

// -----

// Same refusals as attn-derive-online: top-k has no split form.
// CHECK-LABEL: attn.cascade @topk
// CHECK-NOT: partition
attn.cascade @topk ranks(m, p, e = 8)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>) -> (sd: !attn.t<[m], f32>) {
  %s = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) : f32
  // expected-remark@+1 {{no split form over p: 'qk' keeps the top 2 along p}}
  %qk = attn.einsum [m, p] = %s[m, p] topk(2, p) : f32
  %gm = attn.einsum [m] = %qk[m, p] max(p) : f32
  %sd = attn.einsum [m] = exp(%qk[m, p] - %gm[m]) sum(p) : f32
  attn.yield %sd : !attn.t<[m], f32>
}
