// Variable-length batch, packed (FlashAttention-2's varlen interface, Dao
// 2023): the tokens of all sequences are concatenated along m (queries) and p
// (keys); sequence s owns queries cu_seqlens_q[s] <= m < cu_seqlens_q[s + 1]
// and keys cu_seqlens_k[s] <= p < cu_seqlens_k[s + 1], with |n| = S + 1
// boundaries for S sequences (cu_seqlens[0] = 0, nondecreasing). A key is
// visible to a query iff both lie in the same sequence.
// The dialect states this with the boundaries as runtime metadata (i32,
// annotated cu_seqlens) and two small integer Einsums: the sequence id of a
// token is the number of boundaries s >= 1 at or before it,
//   sq[m] = #{s >= 1 : cu_seqlens_q[s] <= m},  sk[p] likewise,
// and the mask compares them. Tokens past the last boundary (padding up to
// |m| or |p|) get id S and see nothing. A sequence with queries but no keys
// leaves its rows empty: the guards give O = 0 and LSE = -inf there.
// Per-sequence causal masking (top-left) would add
//   p - cu_seqlens_k[sk[p]] <= m - cu_seqlens_q[sq[m]].
// Layout as in FlashAttention: token-major q [m, h, e], LSE [h, m].
attn.cascade @varlen ranks(h, m, p, n, e = 64, f = 64)
    (%q: !attn.t<[m, h, e], f32>, %k: !attn.t<[p, h, e], f32>, %v: !attn.t<[p, h, f], f32>,
     %cu_seqlens_q: !attn.t<[n], i32> {attn.sparse = #attn.sparse<cu_seqlens>},
     %cu_seqlens_k: !attn.t<[n], i32> {attn.sparse = #attn.sparse<cu_seqlens>})
    -> (o: !attn.t<[m, h, f], f32>, lse: !attn.t<[h, m], f32>) {
  %sq = attn.einsum [m] = 1 sum(n) if (n >= 1 and %cu_seqlens_q[n] <= m) : i32
  %sk = attn.einsum [p] = 1 sum(n) if (n >= 1 and %cu_seqlens_k[n] <= p) : i32
  %qk = attn.einsum [h, m, p] = %q[m, h, e] * %k[p, h, e] * 0.125 sum(e) if (%sq[m] == %sk[p] and %sq[m] < |n| - 1) else -inf : f32
  %gm = attn.einsum [h, m] = %qk[h, m, p] max(p) : f32
  %sn = attn.einsum [h, m, p] = exp(%qk[h, m, p] - %gm[h, m]) if (%gm[h, m] > -inf) : f32
  %sd = attn.einsum [h, m] = %sn[h, m, p] sum(p) : f32
  %o = attn.einsum [m, h, f] = %sn[h, m, p] * %v[p, h, f] / %sd[h, m] sum(p) if (%sd[h, m] > 0) : f32
  %lse = attn.einsum [h, m] = %gm[h, m] + log(%sd[h, m]) : f32
  attn.yield %o, %lse : !attn.t<[m, h, f], f32>, !attn.t<[h, m], f32>
}
