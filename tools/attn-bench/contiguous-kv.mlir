// attn-bench --paged: the dense counterpart of examples/paged-kv.mlir (at
// d = 128): the same queries, mask and GQA 4:1, with each sequence's keys
// and values contiguous in [b, p, g, e] instead of pages reached through a
// block table. Sequence b holds seq_lens[b] tokens; its |m| queries are its
// last |m| tokens (bottom-right causal).
attn.cascade @contiguous_kv ranks(b, h, g, m, p, e = 128, f = 128) where(h = 4 * g)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, p, g, e], f32>, %v: !attn.t<[b, p, g, f], f32>,
     %seq_lens: !attn.t<[b], i32> {attn.sparse = #attn.sparse<seq_lens>})
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, p, h floordiv 4, e] * 0.08838834764831845 sum(e) if (p <= %seq_lens[b] - |m| + m) else -inf : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) if (%gm[b, h, m] > -inf) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, p, h floordiv 4, f] / %sd[b, h, m] sum(p) if (%sd[b, h, m] > 0) : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}
