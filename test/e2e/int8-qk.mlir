// Q and K stored as INT8 with a float32 descale per (b, h), as a separate
// quantization kernel (SageAttention, FlashAttention-3's FP8 interface)
// would hand them over; V in f32. The products of int8 values summed over
// e = 128 stay below 2^24 in magnitude, so the f32 dot product is exact.
attn.cascade @int8_qk ranks(b, h, m, p, e = 128, f = 128)
    (%q: !attn.t<[b, h, m, e], i8>, %k: !attn.t<[b, h, p, e], i8>, %v: !attn.t<[b, h, p, f], f32>,
     %q_descale: !attn.t<[b, h], f32>, %k_descale: !attn.t<[b, h], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %dot = attn.einsum [b, h, m, p] = cast(%q[b, h, m, e] : f32) * cast(%k[b, h, p, e] : f32) sum(e) : f32
  %qk = attn.einsum [b, h, m, p] = %dot[b, h, m, p] * %q_descale[b, h] * %k_descale[b, h] * 0.08838834764831845 : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}
