// attn-quantize on FP8 e4m3 attention.
//
// 1. FlashAttention-3's interface (Shah et al. 2024; examples/fp8.mlir):
//    Q, K, V stored as f8E4M3FN with a float32 descale per (b, h), named by
//    `scale = "..."`. The scores become an f32-accumulated dot product of
//    the widened values with both descales folded into the score scale; V is
//    dequantized where PV reads it. The result is examples/fp8.mlir, which
//    writes the same by hand (test/unit/QuantizeTest.cpp runs both).
// RUN: attn-opt %s --attn-quantize -split-input-file 2>&1 | FileCheck %s

// CHECK: remark: quantized 'qk' (q: stored f8E4M3FN with descale 'q_descale[b, h]'; k: stored f8E4M3FN with descale 'k_descale[b, h]'): dot product in f32, scales folded into 'qk = dot[b, h, m, p] * q_descale[b, h] * k_descale[b, h] * 0.125'
// CHECK: remark: dequantized 'v' in 'o': sn[b, h, m, p] * (cast(v[b, h, p, f] : f32) * v_descale[b, h]) / sd[b, h, m]
// CHECK-LABEL: attn.cascade @fp8
// The descriptive part of the annotations stays; `scale` is now explicit.
// CHECK-NEXT: (%q: !attn.t<[b, h, m, e], f8E4M3FN> {attn.quant = #attn.quant<storage = f8E4M3FN, granularity = head>}
// CHECK: %dot = attn.einsum [b, h, m, p] = cast(%q[b, h, m, e] : f32) * cast(%k[b, h, p, e] : f32) sum(e) {attn.quant = #attn.quant<acc = f32>} : f32
// CHECK-NEXT: %qk = attn.einsum [b, h, m, p] = %dot[b, h, m, p] * %q_descale[b, h] * %k_descale[b, h] * 0.125 : f32
// CHECK: %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * (cast(%v[b, h, p, f] : f32) * %v_descale[b, h]) / %sd[b, h, m] sum(p) : f32
attn.cascade @fp8 ranks(b, h, m, p, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f8E4M3FN> {attn.quant = #attn.quant<storage = f8E4M3FN, granularity = head, scale = "q_descale">},
     %k: !attn.t<[b, h, p, e], f8E4M3FN> {attn.quant = #attn.quant<storage = f8E4M3FN, granularity = head, scale = "k_descale">},
     %v: !attn.t<[b, h, p, f], f8E4M3FN> {attn.quant = #attn.quant<storage = f8E4M3FN, granularity = head, scale = "v_descale">},
     %q_descale: !attn.t<[b, h], f32>, %k_descale: !attn.t<[b, h], f32>, %v_descale: !attn.t<[b, h], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.125 sum(e) : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}

// -----

// 2. FP8 on the fly (`to = f8E4M3FN`) from f32 inputs: Q per token, K per
//    block of 64 keys; scales absmax / 448 (e4m3's largest finite value),
//    values rounded to e4m3 by a cast, an f32 dot product.
// CHECK-LABEL: attn.cascade @fp8_on_the_fly ranks(b, h, m, p, e = 64, f = 64) partition(p -> p1, p0 = 64 ragged)
// CHECK: %qmax = attn.einsum [b, h, m] = abs(%q[b, h, m, e]) max(e) : f32
// CHECK: %sq = attn.einsum [b, h, m] = select(%qmax[b, h, m] == 0.0, 1.0, %qmax[b, h, m] / 448.0) : f32
// CHECK: %q8 = attn.einsum [b, h, m, e] = cast(%q[b, h, m, e] / %sq[b, h, m] : f8E4M3FN) : f8E4M3FN
// CHECK: %kmax = attn.einsum [b, h, p1] = abs(%k[b, h, p1 * 64 + p0, e]) max(e, p0) : f32
// CHECK: %sk = attn.einsum [b, h, p1] = select(%kmax[b, h, p1] == 0.0, 1.0, %kmax[b, h, p1] / 448.0) : f32
// CHECK: %k8 = attn.einsum [b, h, p, e] = cast(%k[b, h, p, e] / %sk[b, h, p floordiv 64] : f8E4M3FN) : f8E4M3FN
// CHECK: %dot = attn.einsum [b, h, m, p] = cast(%q8[b, h, m, e] : f32) * cast(%k8[b, h, p, e] : f32) sum(e) {attn.quant = #attn.quant<acc = f32>} : f32
// CHECK: %qk = attn.einsum [b, h, m, p] = %dot[b, h, m, p] * %sq[b, h, m] * %sk[b, h, p floordiv 64] * 0.125 : f32

attn.cascade @fp8_on_the_fly ranks(b, h, m, p, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32> {attn.quant = #attn.quant<to = f8E4M3FN, granularity = token>},
     %k: !attn.t<[b, h, p, e], f32> {attn.quant = #attn.quant<to = f8E4M3FN, granularity = block, block_size = 64, along = "p">},
     %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.125 sum(e) {attn.quant = #attn.quant<acc = f32>} : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}
