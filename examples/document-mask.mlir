// Document masking of packed sequences (Krell et al. 2021, "packing without
// cross-contamination"; the document mask of FlexAttention, Dong et al. 2024):
// every token carries the id of the document it belongs to, and a query sees
// a key iff both belong to the same document:
//   key p is visible to query m iff seg_q[b, m] == seg_k[b, p].
// The ids are runtime metadata (i32, annotated segment_ids); they need not be
// sorted or contiguous. A query whose id no key carries (e.g. padding with
// id -1 on the query side only) sees no key: the guards give O = 0 and
// LSE = -inf there. Causal document masking adds `and p <= m`.
attn.cascade @document_mask ranks(b, h, m, p, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>,
     %seg_q: !attn.t<[b, m], i32> {attn.sparse = #attn.sparse<segment_ids>},
     %seg_k: !attn.t<[b, p], i32> {attn.sparse = #attn.sparse<segment_ids>})
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.125 sum(e) if (%seg_q[b, m] == %seg_k[b, p]) else -inf : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) if (%gm[b, h, m] > -inf) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) if (%sd[b, h, m] > 0) : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}
