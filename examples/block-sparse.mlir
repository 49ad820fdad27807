// Block-sparse attention with a runtime layout (block-sparse FlashAttention,
// Dao et al. 2022; BSR layouts as in FlashInfer, Ye et al. 2025): queries and
// keys are cut into blocks of 32 tokens, and query block i attends to the key
// blocks listed for it, per batch entry and head, in CSR form:
//   block_indices[b, h, block_offsets[b, h, i] ... block_offsets[b, h, i + 1] - 1]
// (|n| = ceildiv(|m|, 32) + 1 offsets, |l| >= the number of listed blocks).
// The list is runtime metadata (i32, annotated block_offsets and
// block_indices). The dialect states the predicate "key block j is listed for
// query block i" with an integer Einsum that counts the list entries equal to
// j within row i's range, a dense block mask of |n| x ceildiv(|p|, 32)
// entries (the last row, i = |n| - 1, is empty: its range is clamped to
// [offsets[|n| - 1], offsets[|n| - 1])); the scores read it at
// [m floordiv 32, p floordiv 32]. A query block with an empty list sees no
// key: O = 0 and LSE = -inf.
attn.cascade @block_sparse ranks(b, h, m, p, n, l, e = 64, f = 64) partition(p -> p1, p0 = 32 ragged)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>,
     %block_offsets: !attn.t<[b, h, n], i32> {attn.sparse = #attn.sparse<block_offsets>},
     %block_indices: !attn.t<[b, h, l], i32> {attn.sparse = #attn.sparse<block_indices>})
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %listed = attn.einsum [b, h, n, p1] = 1 sum(l) if (l >= %block_offsets[b, h, n] and l < %block_offsets[b, h, min(n + 1, |n| - 1)] and %block_indices[b, h, l] == p1) : i32
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.125 sum(e) if (%listed[b, h, m floordiv 32, p floordiv 32] > 0) else -inf : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) if (%gm[b, h, m] > -inf) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) if (%sd[b, h, m] > 0) : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}
