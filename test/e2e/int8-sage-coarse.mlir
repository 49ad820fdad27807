// INT8 on the fly with coarse scales: Q per token (one scale per query
// row), K per tensor and smoothed (one scale for the whole K after its mean
// over the keys is subtracted). The per-tensor scale reduces over the batch
// and the heads, so the prologue e2e_<id>_sage_quant runs as one task (its
// results include the rank-0 scale sk); the attention kernel reads sk[] as
// a rank-0 argument.
attn.cascade @sage ranks(b, h, m, p, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32> {attn.quant = #attn.quant<to = i8, granularity = token>},
     %k: !attn.t<[b, h, p, e], f32> {attn.quant = #attn.quant<to = i8, granularity = tensor, along = "p", smooth = true>},
     %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.125 sum(e) {attn.quant = #attn.quant<acc = i32>} : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}
