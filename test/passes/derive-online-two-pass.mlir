// With two-pass, only the reductions that are read in full inside the loop
// over p (the max and the denominator) become running values; the output is
// a second pass over p that reads their final values (FuseMax's 2-pass
// class, as in TileFlow).
// RUN: attn-opt %s --attn-derive-online=two-pass -verify-diagnostics | FileCheck %s
// RUN: attn-opt %s --attn-derive-online=two-pass | attn-opt --attn-analyze 2>&1 | FileCheck %s --check-prefix=CERT

// Pass 1, over tiles: the running max and the rescaled running denominator
// (the _t copies). Pass 2, over p: the probabilities with the final max,
// times V, over the final denominator (the original Einsums). The two are
// interleaved in program order.
// CHECK: %qk_t = attn.einsum [b, m, p1, p0] = {{.*}} if (p1 * 64 + p0 <= m) else -inf
// CHECK: %qk = attn.einsum [b, m, p] = {{.*}} if (p <= m) else -inf
// CHECK: %r_gm = attn.einsum [b, m, p1 + 1] = max(%r_gm[b, m, p1], %l_gm[b, m, p1]) init(-inf)
// CHECK: %gm = attn.einsum [b, m] = %r_gm[b, m, |p1|]
// CHECK: %sn_t = attn.einsum [b, m, p1, p0] = exp(%qk_t[b, m, p1, p0] - %ref_gm[b, m, p1]) if (%r_gm[b, m, p1 + 1] > -inf)
// CHECK: %sn = attn.einsum [b, m, p] = exp(%qk[b, m, p] - %gm[b, m]) if (%gm[b, m] > -inf)
// CHECK: %r_sd = attn.einsum [b, m, p1 + 1] = %r_sd[b, m, p1] * %c_gm[b, m, p1] + %l_sd[b, m, p1] init(0.0)
// CHECK: %o = attn.einsum [b, m, f] = %sn[b, m, p] * %v[b, p, f] / %sd[b, m] sum(p) if (%sd[b, m] > 0)
// CERT: passes(p) = 2
// expected-remark@+1 {{derived the 2-pass form over p (tiles of 64): passes(p) 3 -> 2; running max/min: r_gm; running sums: r_sd}}
attn.cascade @causal ranks(b, m, p, e = 64, f = 64)
    (%q: !attn.t<[b, m, e], f32>, %k: !attn.t<[b, p, e], f32>, %v: !attn.t<[b, p, f], f32>)
    -> (o: !attn.t<[b, m, f], f32>) {
  %qk = attn.einsum [b, m, p] = %q[b, m, e] * %k[b, p, e] * 0.125 sum(e) if (p <= m) else -inf : f32
  %gm = attn.einsum [b, m] = %qk[b, m, p] max(p) : f32
  %sn = attn.einsum [b, m, p] = exp(%qk[b, m, p] - %gm[b, m]) if (%gm[b, m] > -inf) : f32
  %sd = attn.einsum [b, m] = %sn[b, m, p] sum(p) : f32
  %o = attn.einsum [b, m, f] = %sn[b, m, p] * %v[b, p, f] / %sd[b, m] sum(p) if (%sd[b, m] > 0) : f32
  attn.yield %o : !attn.t<[b, m, f], f32>
}
