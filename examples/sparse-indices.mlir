// Sparse attention over given key indices per query: each query attends only
// to the |l| keys its list names (retrieval, or the top-k of a lightweight
// indexer as in DeepSeek Sparse Attention), gathered from K and V:
//   S[m, l] = Q[m] . K[key_indices[m, l]] / sqrt(d),  O[m] = softmax_l(S) V[key_indices[m, l]]
// The index list is runtime metadata (`key_indices`): the entry point checks
// every entry against |p| and returns ATTN_ERR_METADATA for one outside it.
// A key listed twice counts twice (the sum over l), as the cascade says.
attn.cascade @sparse_indices ranks(b, h, m, l, p, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>,
     %key_indices: !attn.t<[b, h, m, l], i32> {attn.sparse = #attn.sparse<key_indices>})
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %s = attn.einsum [b, h, m, l] = %q[b, h, m, e] * %k[b, h, %key_indices[b, h, m, l], e] * 0.125 sum(e) : f32
  %gm = attn.einsum [b, h, m] = %s[b, h, m, l] max(l) : f32
  %sn = attn.einsum [b, h, m, l] = exp(%s[b, h, m, l] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, l] sum(l) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, l] * %v[b, h, %key_indices[b, h, m, l], f] / %sd[b, h, m] sum(l) : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}
