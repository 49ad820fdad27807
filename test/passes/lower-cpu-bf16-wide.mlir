// attn-lower-cpu with bf16-dot=true, head dims e = f = 16 (even): the pair
// (k, k + 1) that vdpbf16ps takes from the scalar operand A is one 32-bit
// load instead of two bf16 loads and three integer ops, when A's pairs are
// adjacent in memory. Strides are known only at run time, so the lowering
// versions on them (lower-cpu-bf16.mlir shows the two-load form alone).
// RUN: attn-opt %s --attn-derive-online=tile=32 --attn-lower-cpu="row-tile=32 bf16-dot=true" 2>/dev/null | FileCheck %s

// Each bf16 argument gets a view whose innermost stride is declared 1, and
// the test that it really is (K is %arg2, V is %arg3).
// CHECK: %{{.*}}, %{{.*}}, %{{.*}}:4, %[[KST:[a-z0-9_]+]]:4 = memref.extract_strided_metadata %arg2
// CHECK: %[[KU:[a-z0-9_]+]] = memref.reinterpret_cast %arg2 to {{.*}} strides: [%[[KST]]#0, %[[KST]]#1, %[[KST]]#2, 1] {{.*}} to memref<?x?x?x?xbf16, strided<[?, ?, ?, 1], offset: ?>>
// CHECK: %[[KUNIT:[0-9]+]] = arith.cmpi eq, %[[KST]]#3, %c1{{.*}} : index
// CHECK: %{{.*}}, %{{.*}}, %{{.*}}:4, %[[VST:[a-z0-9_]+]]:4 = memref.extract_strided_metadata %arg3
// CHECK: %[[VU:[a-z0-9_]+]] = memref.reinterpret_cast %arg3
// CHECK: %[[VUNIT:[0-9]+]] = arith.cmpi eq, %[[VST]]#3, %c1{{.*}} : index

// Q K^T (A = K[.., p, e], pairs along e, its innermost dimension): with unit
// stride, K[p, 2kp .. 2kp + 1] is loaded as vector<2xbf16> = one i32 and
// broadcast; otherwise the two-load form.
// CHECK: scf.if %[[KUNIT]] -> (vector<16xf32>
// CHECK: scf.for %[[KP:[a-z0-9]+]] =
// CHECK: %[[K0:[0-9]+]] = arith.muli %[[KP]], %c2{{.*}} : index
// CHECK: %[[W:[0-9]+]] = vector.load %[[KU]][%{{.*}}, %{{.*}}, %{{.*}}, %[[K0]]] : memref<?x?x?x?xbf16, strided<[?, ?, ?, 1], offset: ?>>, vector<2xbf16>
// CHECK: %[[WI:[0-9]+]] = vector.bitcast %[[W]] : vector<2xbf16> to vector<1xi32>
// CHECK: %[[WS:[0-9]+]] = vector.extract %[[WI]][0] : i32 from vector<1xi32>
// CHECK: %[[WB:[0-9]+]] = vector.broadcast %[[WS]] : i32 to vector<16xi32>
// CHECK: %[[WA:[0-9]+]] = vector.bitcast %[[WB]] : vector<16xi32> to vector<32xbf16>
// CHECK: llvm.call_intrinsic "llvm.x86.avx512bf16.dpbf16ps.512"(%{{.*}}, %[[WA]], %{{.*}})
// CHECK: } else {
// CHECK: memref.load %arg2[
// CHECK: arith.shli
// CHECK: llvm.call_intrinsic "llvm.x86.avx512bf16.dpbf16ps.512"

// P V (A = V[.., p, f], pairs along p: not adjacent). With unit stride
// along f, rows 2kp and 2kp + 1 of the key tile are read as vectors and
// interleaved into the copy once per contraction (the partner of an odd
// last key is 0); the micro-kernel then reads each pair as one i32.
// CHECK: scf.if %[[VUNIT]] {
// CHECK: scf.for %[[CP:[a-z0-9]+]] =
// CHECK: %[[C0:[0-9]+]] = arith.muli %[[CP]], %c2{{.*}} : index
// CHECK: %[[C1:[0-9]+]] = arith.addi %[[C0]], %c1{{.*}} : index
// CHECK: %[[HAS1:[0-9]+]] = arith.cmpi ult, %[[C1]], %{{.*}} : index
// CHECK: scf.for %[[F:[a-z0-9]+]] = %c0{{.*}} to %c16{{.*}} step %c16
// CHECK: %[[LO:[0-9]+]] = vector.load %[[VU]][%{{.*}}, %{{.*}}, %{{.*}}, %[[F]]] : {{.*}}, vector<16xbf16>
// CHECK: %[[HI:[0-9]+]] = vector.load %[[VU]][%{{.*}}, %{{.*}}, %{{.*}}, %[[F]]] : {{.*}}, vector<16xbf16>
// CHECK: %[[HIZ:[0-9]+]] = arith.select %[[HAS1]], %[[HI]], %{{.*}} : vector<16xbf16>
// CHECK: %[[MIX:[0-9]+]] = vector.shuffle %[[LO]], %[[HIZ]] [0, 16, 1, 17, {{.*}}, 15, 31] : vector<16xbf16>, vector<16xbf16>
// The copy of V in pairs along the key: [16 pairs of p0, 2 * 16 f].
// CHECK: vector.store %[[MIX]], %[[VPAIR:[a-z0-9_]+]][%[[CP]], %{{.*}}] : memref<16x32xbf16>, vector<32xbf16>
// CHECK: scf.if %[[VUNIT]] -> (vector<16xf32>
// CHECK: %[[VW:[0-9]+]] = vector.load %[[VPAIR]][%{{.*}}, %{{.*}}] : memref<16x32xbf16>, vector<2xbf16>
// CHECK: vector.bitcast %[[VW]] : vector<2xbf16> to vector<1xi32>
// CHECK: llvm.call_intrinsic "llvm.x86.avx512bf16.dpbf16ps.512"
// CHECK: } else {
// CHECK: memref.load %arg3[
// CHECK: llvm.call_intrinsic "llvm.x86.avx512bf16.dpbf16ps.512"

attn.cascade @mha ranks(b, h, m, p, e = 16, f = 16)
    (%q: !attn.t<[b, h, m, e], bf16>, %k: !attn.t<[b, h, p, e], bf16>, %v: !attn.t<[b, h, p, f], bf16>)
    -> (o: !attn.t<[b, h, m, f], bf16>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.25 sum(e) : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : bf16
  attn.yield %o : !attn.t<[b, h, m, f], bf16>
}
