// INT8 on the fly with GQA (4 query heads per KV head) and a causal mask:
// Q per token, K per KV head and smoothed. The prologue e2e_<id>_gqa_quant
// keeps one int8 K per KV head (ki[b, g, p, e], read at h floordiv 4 by the
// kernel); its tasks are the batches (the K results lack h, the Q results
// g). The mask stays on the dot product and the scores.
attn.cascade @gqa ranks(b, h, g, m, p, e = 64, f = 64) where(h = 4 * g)
    (%q: !attn.t<[b, h, m, e], f32> {attn.quant = #attn.quant<to = i8, granularity = token>},
     %k: !attn.t<[b, g, p, e], f32> {attn.quant = #attn.quant<to = i8, granularity = head, along = "p", smooth = true>},
     %v: !attn.t<[b, g, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h floordiv 4, p, e] * 0.125 sum(e) if (p <= m) else -inf {attn.quant = #attn.quant<acc = i32>, attn.sparse = #attn.sparse<causal>} : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) if (%gm[b, h, m] > -inf) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h floordiv 4, p, f] / %sd[b, h, m] sum(p) if (%sd[b, h, m] > 0) : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}
