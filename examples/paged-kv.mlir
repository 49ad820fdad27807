// Paged KV cache (vLLM's PagedAttention, Kwon et al. 2023), with GQA (4 query
// heads per KV head). K and V live in a pool of |n| physical pages of 16
// tokens each, [n, p0, g, e] (the layout of vLLM's FlashAttention backend);
// sequence b's logical key position p = p1 * 16 + p0 lives on page
// block_table[b, p1] at slot p0. The key rank p is partitioned into pages p1
// and slots p0 (ragged: |p|, the longest context, need not be a multiple of
// 16), and keys are read through the block table:
// %k_cache[%block_table[b, p1], p0, h floordiv 4, e]. Pages may be
// shared between sequences (a common prompt) and appear in any order.
// Sequence b holds seq_lens[b] tokens; its |m| queries are its last |m|
// tokens (decode: |m| = 1; chunked prefill: |m| > 1), so query m sits at
// position seq_lens[b] - |m| + m and sees the keys at or before it:
//   key (p1, p0) is visible to query m iff p1 * 16 + p0 <= seq_lens[b] - |m| + m.
// Entries of block_table past a sequence's last page are never read: both
// Einsums that gather through it carry the mask in their condition, so they
// may hold anything. A sequence shorter than |m| (seq_lens[b] = 0: an
// idle batch slot) leaves rows without keys: O = 0 and LSE = -inf.
attn.cascade @paged_kv ranks(b, h, g, m, p, n, e = 64, f = 64) partition(p -> p1, p0 = 16 ragged) where(h = 4 * g)
    (%q: !attn.t<[b, h, m, e], f32>, %k_cache: !attn.t<[n, p0, g, e], f32>, %v_cache: !attn.t<[n, p0, g, f], f32>,
     %block_table: !attn.t<[b, p1], i32> {attn.sparse = #attn.sparse<block_table>},
     %seq_lens: !attn.t<[b], i32> {attn.sparse = #attn.sparse<seq_lens>})
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %qk = attn.einsum [b, h, m, p1, p0] = %q[b, h, m, e] * %k_cache[%block_table[b, p1], p0, h floordiv 4, e] * 0.125 sum(e) if (p1 * 16 + p0 <= %seq_lens[b] - |m| + m) else -inf : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p1, p0] max(p1, p0) : f32
  %sn = attn.einsum [b, h, m, p1, p0] = exp(%qk[b, h, m, p1, p0] - %gm[b, h, m]) if (%gm[b, h, m] > -inf) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p1, p0] sum(p1, p0) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p1, p0] * %v_cache[%block_table[b, p1], p0, h floordiv 4, f] / %sd[b, h, m] sum(p1, p0) if (%sd[b, h, m] > 0 and p1 * 16 + p0 <= %seq_lens[b] - |m| + m) : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}
