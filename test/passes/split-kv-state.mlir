// attn-split-kv with merge=state: the splits' (max, sum) state is merged
// instead of their normalised (O, LSE): no division per split, and results
// need not be ratios (a max of rescaled terms splits too).
// RUN: attn-opt %s --attn-split-kv="split-size=128 merge=state" -split-input-file -verify-diagnostics | FileCheck %s

// Each split reduces its own keys against its own max (ref_gm_part). The
// merge takes the max over splits first, then rescales every partial sum
// by c_gm = exp(gm_part - ref_gm): an empty split (gm_part = -inf) adds 0.
// The original Einsums after the reductions read the merged values.
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
// expected-remark@+1 {{split p into parts of 128 (ps = ceildiv(|p|, 128) splits, reduced independently); merge: gm = max_ps gm_part[b, h, m, ps], sd = sum_ps sd_part[b, h, m, ps] * c_gm[b, h, m, ps], o_num = sum_ps o_num_part[b, h, m, f, ps] * c_gm[b, h, m, ps]}}
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

// A max of rescaled terms: its correction is nonnegative, so the state
// merge applies to it (the (O, LSE) form does not exist).
// CHECK-LABEL: attn.cascade @max_consumer
// CHECK: %pmax = attn.einsum [m] = %pmax_part[m, ps] * %c_gm[m, ps] max(ps)
// expected-remark@+1 {{merge: gm = max_ps gm_part[m, ps], pmax = max_ps pmax_part[m, ps] * c_gm[m, ps]}}
attn.cascade @max_consumer ranks(m, p, e = 8)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>) -> (pmax: !attn.t<[m], f32>) {
  %s = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) : f32
  %gm = attn.einsum [m] = %s[m, p] max(p) : f32
  %pmax = attn.einsum [m] = exp(%s[m, p] - %gm[m]) max(p) : f32
  attn.yield %pmax : !attn.t<[m], f32>
}

// -----

// The state merge takes one key rank; several are merged in (O, LSE) form.
// CHECK-LABEL: attn.cascade @two_key_ranks
// CHECK-NOT: partition
// expected-remark@+1 {{no split form over s, p: merge=state takes one key rank; several key ranks are merged in (O, LSE) form (merge=lse)}}
attn.cascade @two_key_ranks ranks(m, s, p, e = 8)
    (%q: !attn.t<[m, e], f32>, %kp: !attn.t<[s, e], f32>, %ks: !attn.t<[p, e], f32>) -> (lse: !attn.t<[m], f32>) {
  %qkp = attn.einsum [m, s] = %q[m, e] * %kp[s, e] sum(e) : f32
  %qks = attn.einsum [m, p] = %q[m, e] * %ks[p, e] sum(e) : f32
  %gmp = attn.einsum [m] = %qkp[m, s] max(s) : f32
  %gms = attn.einsum [m] = %qks[m, p] max(p) : f32
  %gm = attn.einsum [m] = max(%gmp[m], %gms[m]) : f32
  %sdp = attn.einsum [m] = exp(%qkp[m, s] - %gm[m]) sum(s) : f32
  %sds = attn.einsum [m] = exp(%qks[m, p] - %gm[m]) sum(p) : f32
  %sd = attn.einsum [m] = %sdp[m] + %sds[m] : f32
  %lse = attn.einsum [m] = %gm[m] + log(%sd[m]) : f32
  attn.yield %lse : !attn.t<[m], f32>
}
