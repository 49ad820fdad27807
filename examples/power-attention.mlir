// PowerAttention (Chen et al. 2025, arXiv 2503.03588), token-level form: a
// causal sparse pattern in which query m sees key p iff the distance
// d = m - p is 0 or a power of two (1, 2, 4, 8, ...), so that L stacked
// layers reach 2^L tokens back with O(log |p|) keys per query. The paper
// applies the predicate to blocks of tokens (m floordiv B, p floordiv B in
// place of m, p); the static sparsity class is power2.
// The dialect has no bit operations, so "d is a power of two" is written
// with float functions: for an integer d >= 1,
//   pow(2, floor(log2(d))) == d
// holds exactly when d is a power of two (log2 of a power of two is exact;
// for other d below 2^48, log2(d) stays below the next integer in float64).
// For d = 0 the left side is pow(2, -inf) = 0 as well, and for p > m log2
// gives NaN, which compares false; both cases are written out anyway.
// With |m| > |p| a row can see no key (m = 7, |p| = 2: d = 7, 6): O = 0 and
// LSE = -inf there.
attn.cascade @power_attention ranks(b, h, m, p, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.125 sum(e) if (p <= m and (p == m or pow(2.0, floor(log2(m - p))) == m - p)) else -inf {attn.sparse = #attn.sparse<power2>} : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) if (%gm[b, h, m] > -inf) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) if (%sd[b, h, m] > 0) : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}
