// Low-rank attention bias (FlashBias, Wu et al. 2025): an additive bias
// B[m, p] that is a product of two thin factors,
//   B[b, h, m, p] = sum_r U[b, h, m, r] * W[b, h, p, r]    (|r| = 16),
// e.g. the factorised form of a spatial or pair bias. Materialising B costs
// |m| * |p| memory traffic; a rank-16 bias costs (|m| + |p|) * 16. The bias
// Einsum carries #attn.lowrank<bias, "r">, which lets attn-reassociate fold it
// into the score contraction (FlashBias: QK' = [Q * scale, U] . [K, W], one
// contraction over e and r) instead of forming B. No mask: no row is empty.
attn.cascade @lowrank_bias ranks(b, h, m, p, r = 16, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>,
     %u: !attn.t<[b, h, m, r], f32>, %w: !attn.t<[b, h, p, r], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
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
