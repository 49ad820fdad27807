// Grouped-query attention (Ainslie et al. 2023): 4 query heads share one
// key/value head, h = 4 * g; query head h reads KV head h floordiv 4. MQA is
// the case |g| = 1. No K/V copies: the index expression does the sharing.
attn.cascade @gqa ranks(b, h, g, m, p, e = 64, f = 64) where(h = 4 * g)
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
