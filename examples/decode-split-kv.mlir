// Decode with GQA: |m| = 1 new query per sequence (|m| of a few for
// speculative decoding) against a long KV history, 8 query heads per KV head
// (h = 8 * g, as in Llama 3 70B), head dimension 128. Written as the generic
// plain cascade with |m| dynamic and the causal mask aligned bottom-right
// (key p is visible to query m iff p <= m + |p| - |m|; with |m| = 1 every key
// is). Decode has too little parallelism in b * h * m to fill a machine, so
// the key rank must be split across workers (Flash-Decoding, Dao et al.
// 2023): attn-split-kv derives that form from this cascade, partitioning p
// into chunks that each produce a partial (O, LSE) and merging them with the
// associative LSE merge
//   LSE = log(sum_c exp(LSE_c)),  O = sum_c exp(LSE_c - LSE) * O_c;
// nothing split-specific is written here. |m| > |p| leaves the first rows
// without keys: O = 0 and LSE = -inf.
attn.cascade @decode_split_kv ranks(b, h, g, m, p, e = 128, f = 128) where(h = 8 * g)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, g, p, e], f32>, %v: !attn.t<[b, g, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h floordiv 8, p, e] * 0.08838834764831845 sum(e) if (p <= m + |p| - |m|) else -inf {attn.sparse = #attn.sparse<causal_bottom_right>} : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) if (%gm[b, h, m] > -inf) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h floordiv 8, p, f] / %sd[b, h, m] sum(p) if (%sd[b, h, m] > 0) : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}
