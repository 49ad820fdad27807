// FlashAttention's 1-pass cascade written by hand (FuseMax Cascade 5), with the
// guards of the derivation rule (docs/derivation.md): the key rank p is split
// into tiles p1 of 64 keys p0; running max RM, denominator RD and numerator RNV
// are carried along the iterative rank p1 and rescaled by the correction PRM.
//   safe(x) = (x == -inf ? 0 : x) keeps exp(-inf - -inf) from producing NaN.
attn.cascade @flash ranks(b, h, m, p, e = 64, f = 64) partition(p -> p1, p0 = 64 ragged)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %qk = attn.einsum [b, h, m, p1, p0] = %q[b, h, m, e] * %k[b, h, p1 * 64 + p0, e] * 0.125 sum(e) else -inf : f32
  // Local max of the tile, then the running max.
  %lm = attn.einsum [b, h, m, p1] = %qk[b, h, m, p1, p0] max(p0) : f32
  %rm = attn.einsum [b, h, m, p1 + 1] = max(%rm[b, h, m, p1], %lm[b, h, m, p1]) init(-inf) : f32
  // Reference for the exponents: the new running max, 0 while it is -inf.
  %ref = attn.einsum [b, h, m, p1] = select(%rm[b, h, m, p1 + 1] == -inf, 0.0, %rm[b, h, m, p1 + 1]) : f32
  %sn = attn.einsum [b, h, m, p1, p0] = exp(%qk[b, h, m, p1, p0] - %ref[b, h, m, p1]) : f32
  // Correction of the running sums: exp(old max - new max).
  %prm = attn.einsum [b, h, m, p1] = exp(%rm[b, h, m, p1] - %ref[b, h, m, p1]) : f32
  %ld = attn.einsum [b, h, m, p1] = %sn[b, h, m, p1, p0] sum(p0) : f32
  %rd = attn.einsum [b, h, m, p1 + 1] = %rd[b, h, m, p1] * %prm[b, h, m, p1] + %ld[b, h, m, p1] init(0.0) : f32
  %lnv = attn.einsum [b, h, m, p1, f] = %sn[b, h, m, p1, p0] * %v[b, h, p1 * 64 + p0, f] sum(p0) : f32
  %rnv = attn.einsum [b, h, m, p1 + 1, f] = %rnv[b, h, m, p1, f] * %prm[b, h, m, p1] + %lnv[b, h, m, p1, f] init(0.0) : f32
  // Epilogue on the final state.
  %o = attn.einsum [b, h, m, f] = %rnv[b, h, m, |p1|, f] / %rd[b, h, m, |p1|] if (%rd[b, h, m, |p1|] > 0) : f32
  %lse = attn.einsum [b, h, m] = %rm[b, h, m, |p1|] + log(%rd[b, h, m, |p1|]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}
