// attn-lower-cpu with vnni=true (AVX512-VNNI, set by attnc when the host
// has it): a contraction of two int8 tensors (cast(x : f32) of i8 loads)
// runs on vpdpbusd, which adds four byte products per i32 lane:
//   acc[j] += sum_{t<4} U(A[i, 4kq + t]) * S(B[4kq + t, j])
// with U unsigned and S signed bytes. A's quad (K[p, 4kq .. 4kq+3]) is made
// unsigned by flipping each byte's sign bit (A + 128), so the accumulator
// starts from -128 * (the sum of B's column), which the Q pack computes per
// row: the i32 sums are exact, and converted to f32 once per tile.
// RUN: attn-opt %s --attn-derive-online=tile=32 --attn-lower-cpu="row-tile=32 vnni=true" 2>/dev/null | FileCheck %s
// RUN: attn-opt %s --attn-derive-online=tile=32 --attn-lower-cpu="row-tile=32 vnni=true" --attn-cpu-to-llvm 2>/dev/null | FileCheck %s --check-prefix=LLVM
// Off by default: the int8 values go through the f32 micro-kernel (exact).
// RUN: attn-opt %s --attn-derive-online=tile=32 --attn-lower-cpu="row-tile=32" 2>/dev/null | FileCheck %s --check-prefix=OFF
// OFF-NOT: vpdpbusd
// OFF: vector.fma

// K's view with a unit innermost stride, and whether it has one.
// CHECK: %{{.*}}, %{{.*}}, %{{.*}}:4, %[[KST:[a-z0-9_]+]]:4 = memref.extract_strided_metadata %arg2
// CHECK: %[[KU:[a-z0-9_]+]] = memref.reinterpret_cast %arg2
// CHECK: %[[KUNIT:[0-9]+]] = arith.cmpi eq, %[[KST]]#3, %c1{{.*}} : index
// The Q pack: e = 16 as 4 quads x 4 * 32 rows of i8, and the row sums.
// CHECK: %[[QQ:[a-z0-9_]+]] = memref.alloc() {alignment = 64 : i64} : memref<4x128xi8>
// CHECK: %[[QS:[a-z0-9_]+]] = memref.alloc() {alignment = 64 : i64} : memref<32xi32>
// Per task: Q[m, e] stored at [e / 4, 4 m + e % 4], its row sum added up.
// CHECK: %[[QV:[0-9]+]] = memref.load %arg1[
// CHECK: memref.store %[[QV]], %[[QQ]][%{{.*}}, %{{.*}}] : memref<4x128xi8>
// CHECK: %[[OLD:[0-9]+]] = memref.load %[[QS]][%{{.*}}] : memref<32xi32>
// CHECK: %[[QX:[0-9]+]] = arith.extsi %[[QV]] : i8 to i32
// CHECK: %[[NEW:[0-9]+]] = arith.addi %[[OLD]], %[[QX]] : i32
// CHECK: memref.store %[[NEW]], %[[QS]]
// The micro-kernel: accumulators start at -128 * row sums.
// CHECK: %[[M128:.*]] = arith.constant dense<-128> : vector<16xi32>
// CHECK: %[[S0:[0-9]+]] = vector.load %[[QS]][%{{.*}}] : memref<32xi32>, vector<16xi32>
// CHECK: %[[I0:[0-9]+]] = arith.muli %[[S0]], %[[M128]] : vector<16xi32>
// With unit stride, K's quad is one 32-bit load; its sign bits flipped.
// CHECK: scf.if %[[KUNIT]] -> (vector<16xi32>
// CHECK: scf.for %[[KQ:[a-z0-9]+]] = {{.*}} iter_args(%{{[a-z0-9]+}} = %[[I0]]
// CHECK: %[[K0:[0-9]+]] = arith.muli %[[KQ]], %c4{{.*}} : index
// CHECK: %[[BV:[0-9]+]] = vector.load %[[QQ]][%[[KQ]], %{{.*}}] : memref<4x128xi8>, vector<64xi8>
// CHECK: %[[A4:[0-9]+]] = vector.load %[[KU]][%{{.*}}, %{{.*}}, %{{.*}}, %[[K0]]] : {{.*}}, vector<4xi8>
// CHECK: %[[AW:[0-9]+]] = vector.bitcast %[[A4]] : vector<4xi8> to vector<1xi32>
// CHECK: %[[AS:[0-9]+]] = vector.extract %[[AW]][0] : i32 from vector<1xi32>
// CHECK: %[[AU:[0-9]+]] = arith.xori %[[AS]], %c-2139062144_i32 : i32
// CHECK: %[[AB:[0-9]+]] = vector.broadcast %[[AU]] : i32 to vector<16xi32>
// CHECK: %[[AQ:[0-9]+]] = vector.bitcast %[[AB]] : vector<16xi32> to vector<64xi8>
// CHECK: llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512"(%{{.*}}, %[[AQ]], %[[BV]]) : (vector<16xi32>, vector<64xi8>, vector<64xi8>) -> vector<16xi32>
// Otherwise four byte loads, shifted into place.
// CHECK: } else {
// CHECK: memref.load %arg2[
// CHECK: arith.extui %{{.*}} : i8 to i32
// CHECK: arith.shli
// CHECK: llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512"
// Then to f32, and the epilogue scales by 0.25.
// CHECK: %[[F:[0-9]+]] = arith.sitofp %{{.*}} : vector<16xi32> to vector<16xf32>
// CHECK: arith.mulf %[[F]], %{{.*}} : vector<16xf32>
// LLVM: llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512"

attn.cascade @int8 ranks(b, h, m, p, e = 16, f = 16)
    (%q: !attn.t<[b, h, m, e], i8>, %k: !attn.t<[b, h, p, e], i8>, %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>) {
  %dot = attn.einsum [b, h, m, p] = cast(%q[b, h, m, e] : f32) * cast(%k[b, h, p, e] : f32) * 0.25 sum(e) : f32
  %gm = attn.einsum [b, h, m] = %dot[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%dot[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}
