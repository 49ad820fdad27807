// attn-bench's INT8 kernel: Q and K quantized to int8 with a descale per
// (b, h) by the bench (absmax / 127, outside the timed calls), V in bf16,
// O and LSE in f32. QK^T runs on AVX512-VNNI (exact i32 sums), PV on
// AVX512-BF16 when the host has them. CMakeLists.txt adds `if (p <= m) else
// -inf` for the causal kernel.
attn.cascade @int8 ranks(b, h, m, p, e = 128, f = 128)
    (%q: !attn.t<[b, h, m, e], i8>, %k: !attn.t<[b, h, p, e], i8>, %v: !attn.t<[b, h, p, f], bf16>,
     %q_descale: !attn.t<[b, h], f32>, %k_descale: !attn.t<[b, h], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %dot = attn.einsum [b, h, m, p] = cast(%q[b, h, m, e] : f32) * cast(%k[b, h, p, e] : f32) sum(e) : f32
  %qk = attn.einsum [b, h, m, p] = %dot[b, h, m, p] * %q_descale[b, h] * %k_descale[b, h] * 0.08838834764831845 : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) if (%gm[b, h, m] > -inf) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) if (%sd[b, h, m] > 0) : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}
