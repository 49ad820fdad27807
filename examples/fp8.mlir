// FP8 attention with the FlashAttention-3 interface (Shah et al. 2024): Q, K
// and V are stored as float8 e4m3 (f8E4M3FN: 3 mantissa bits, no infinity,
// largest value 448), each with a float32 descale factor per batch entry and
// head (q_descale, k_descale, v_descale [b, h]; the real values are
// descale * stored value). The e4m3 elements are widened to f32 (exactly) for
// the contraction, which accumulates in f32; the descales are applied to the
// accumulated scores and to the output, as FlashAttention-3 does:
//   S = (sum_e Q K) * q_descale * k_descale / sqrt(64)
//   O = (sum_p softmax(S) V) * v_descale
// FlashAttention-3 also rounds P to e4m3 for the PV product; the value it
// rounds is exp(S - running max), which depends on the tiling of the derived
// 1-pass form, so that rounding belongs to a kernel (attn-quantize places it),
// not to this plain cascade. No mask: no row is empty.
attn.cascade @fp8 ranks(b, h, m, p, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f8E4M3FN> {attn.quant = #attn.quant<storage = f8E4M3FN, granularity = head>},
     %k: !attn.t<[b, h, p, e], f8E4M3FN> {attn.quant = #attn.quant<storage = f8E4M3FN, granularity = head>},
     %v: !attn.t<[b, h, p, f], f8E4M3FN> {attn.quant = #attn.quant<storage = f8E4M3FN, granularity = head>},
     %q_descale: !attn.t<[b, h], f32>, %k_descale: !attn.t<[b, h], f32>, %v_descale: !attn.t<[b, h], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %dot = attn.einsum [b, h, m, p] = cast(%q[b, h, m, e] : f32) * cast(%k[b, h, p, e] : f32) sum(e) {attn.quant = #attn.quant<acc = f32>} : f32
  %qk = attn.einsum [b, h, m, p] = %dot[b, h, m, p] * %q_descale[b, h] * %k_descale[b, h] * 0.125 : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * cast(%v[b, h, p, f] : f32) / %sd[b, h, m] * %v_descale[b, h] sum(p) {attn.quant = #attn.quant<acc = f32>} : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}
