// Prefix-LM attention (UniLM, Dong et al. 2019; T5's prefix LM, Raffel et
// al. 2020): the first prefix_len[b] tokens of sequence b (the prompt) attend
// bidirectionally among themselves, the rest causally:
//   key p is visible to query m iff p < prefix_len[b] or p <= m.
// The prefix length is runtime metadata, one i32 per sequence (annotated
// seq_lens: a per-sequence length); prefix_len[b] = 0 is plain causal
// attention, prefix_len[b] >= |p| is full attention. Key 0 is visible to every
// query, so no row is empty and no guard is needed.
attn.cascade @prefix_lm ranks(b, h, m, p, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>,
     %prefix_len: !attn.t<[b], i32> {attn.sparse = #attn.sparse<seq_lens>})
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.125 sum(e) if (p < %prefix_len[b] or p <= m) else -inf {attn.sparse = #attn.sparse<prefix>} : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}
