// SageAttention-style INT8 on the fly from annotations (docs/quantize.md):
// examples/mha.mlir with Q and K quantized to i8 per block of 32 tokens, K
// smoothed. attnc runs attn-quantize (which adds the smoothing term
// qk_smooth back into the scores, so the LSE is that of the unquantized
// scores) and attn-split-quant: the library has the prologue
// e2e_<id>_sage_quant (q, k -> qi, ki, sq_m, sk_p, qk_smooth) and the
// attention kernel e2e_<id>_sage reading its results. The variant
// `_nosmooth` (test/e2e/CMakeLists.txt) drops `smooth = true`.
attn.cascade @sage ranks(b, h, m, p, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32> {attn.quant = #attn.quant<to = i8, granularity = block, block_size = 32, along = "m">},
     %k: !attn.t<[b, h, p, e], f32> {attn.quant = #attn.quant<to = i8, granularity = block, block_size = 32, along = "p", smooth = true>},
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
