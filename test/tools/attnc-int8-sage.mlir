// attnc on a cascade quantized on the fly (examples/int8-sage.mlir): the
// library has two entry points, the quantization prologue first (also first
// in the header), and the header says in which order to call them
// (docs/quantize.md, "Lowering on the fly quantization"). The GPU back end
// refuses the prologue by name; a cascade without quantization gets no note.
// RUN: attnc %attn_src/examples/int8-sage.mlir -o %t/sage
// RUN: FileCheck %s < %t/sage.h
// RUN: not attnc %attn_src/examples/int8-sage.mlir --target=sm_80 -o %t/gpu 2>&1 | FileCheck %s --check-prefix=GPU
// RUN: attnc %attn_src/examples/mha.mlir -o %t/mha
// RUN: FileCheck %s --check-prefix=PLAIN < %t/mha.h

// CHECK: Kernels: sage_int8_sage_quant sage_int8_sage
// CHECK-NEXT: sage_int8_sage_quant: Quantization prologue: call it first, then sage_int8_sage with its results.
// CHECK-NEXT: sage_int8_sage: Attention kernel: call sage_int8_sage_quant first; its results are inputs here.
// CHECK-LABEL: ===- sage_int8_sage_quant
// CHECK: * Quantization prologue: call it first, then sage_int8_sage with its results.
// CHECK-NEXT: * It quantizes q, k on the fly (attn-split-quant, docs/quantize.md):
// CHECK-NEXT: * one task per (b, h), each reading its inputs a few times.
// CHECK-NEXT: * Pass its results (qi, ki, sq_m, sk_p) unchanged to
// CHECK: *   q: input, float32 [b, h, m, e=64]
// CHECK-NEXT: *   k: input, float32 [b, h, p, e=64]
// CHECK-NEXT: *   qi: output, int8 [b, h, m, e=64]
// CHECK-NEXT: *   ki: output, int8 [b, h, p, e=64]
// CHECK-NEXT: *   sq_m: output, float32 [b, h, m]
// CHECK-NEXT: *   sk_p: output, float32 [b, h, p]
// CHECK: attn_status sage_int8_sage_quant(const sage_int8_sage_quant_args *args, const attn_launch *launch);
// CHECK-LABEL: ===- sage_int8_sage -
// CHECK: * Attention kernel: call sage_int8_sage_quant first; its results are inputs here.
// CHECK: *   qi: input, int8 [b, h, m, e=64]
// CHECK-NEXT: *   ki: input, int8 [b, h, p, e=64]
// CHECK-NEXT: *   v: input, float32 [b, h, p, f=64]
// CHECK-NEXT: *   sq_m: input, float32 [b, h, m]
// CHECK-NEXT: *   sk_p: input, float32 [b, h, p]
// CHECK-NEXT: *   o: output, float32 [b, h, m, f=64]
// CHECK-NEXT: *   lse: optional output, float32 [b, h, m]; may be NULL (then not computed)
// CHECK: attn_status sage_int8_sage(const sage_int8_sage_args *args, const attn_launch *launch);

// GPU: error: @int8_sage_quant is the quantization prologue of INT8 on the fly (attn-split-quant): lowered on the CPU only

// PLAIN: Kernels: mha_mha
// PLAIN-NEXT: Link with the library
// PLAIN-NOT: Quantization prologue
// PLAIN-NOT: Attention kernel: call
