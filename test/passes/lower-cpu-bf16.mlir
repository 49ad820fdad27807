// attn-lower-cpu with bf16-dot=true (AVX512-BF16, set by attnc when the host
// has it): a contraction whose scalar operand A is a bf16 tensor runs on
// vdpbf16ps, which adds two products per f32 lane:
//   acc[j] += A[i, 2kp] * B[2kp, j] + A[i, 2kp + 1] * B[2kp + 1, j].
// B is stored as bf16 pairs along the reduced rank k, [ceil(k / 2), 2 * rows]
// (B[2kp, j] and B[2kp + 1, j] side by side); A's pair is two bf16 loads
// packed into one i32 and broadcast. Sums stay f32. Here head dim e = 15
// (odd: the last pair's partner is B = 0, A read in bounds at k = 14).
// RUN: attn-opt %s --attn-derive-online=tile=32 --attn-lower-cpu="row-tile=32 bf16-dot=true" 2>/dev/null | FileCheck %s
// RUN: attn-opt %s --attn-derive-online=tile=32 --attn-lower-cpu="row-tile=32 bf16-dot=true" --attn-cpu-to-llvm 2>/dev/null | FileCheck %s --check-prefix=LLVM
// Off by default, and only for 16-lane vectors.
// RUN: attn-opt %s --attn-derive-online=tile=32 --attn-lower-cpu="row-tile=32" 2>/dev/null | FileCheck %s --check-prefix=OFF
// RUN: attn-opt %s --attn-derive-online=tile=32 --attn-lower-cpu="row-tile=32 bf16-dot=true vector-width=8 vector-registers=16" 2>/dev/null | FileCheck %s --check-prefix=OFF
// OFF-NOT: dpbf16ps

// The pair buffers: the scores qk [p0 = 32 keys] as 16 pairs x 2 * 32 rows,
// Q [e = 15] as 8 pairs (zero-filled once per call, so the partner of e = 14
// stays 0).
// CHECK: %[[SPAIR:[a-z0-9_]+]] = memref.alloc() {alignment = 64 : i64} : memref<16x64xbf16>
// CHECK: %[[QPAIR:[a-z0-9_]+]] = memref.alloc() {alignment = 64 : i64} : memref<8x64xbf16>
// CHECK: memref.store %{{.*}}, %[[QPAIR]][%{{.*}}, %{{.*}}] : memref<8x64xbf16>

// Q is packed per task, scaled by 0.25 and rounded, at [e / 2, 2 m + e % 2].
// CHECK: scf.for
// CHECK: %[[QS:[0-9]+]] = arith.mulf %{{.*}}, %{{.*}} : f32
// CHECK: %[[E2:[0-9]+]] = arith.remui %{{.*}}, %c2{{.*}} : index
// CHECK: %[[COL:[0-9]+]] = arith.addi %{{.*}}, %[[E2]] : index
// CHECK: %[[EP:[0-9]+]] = arith.divui %{{.*}}, %c2{{.*}} : index
// CHECK: %[[QB:[0-9]+]] = arith.truncf %[[QS]] : f32 to bf16
// CHECK: memref.store %[[QB]], %[[QPAIR]][%[[EP]], %[[COL]]] : memref<8x64xbf16>

// QK^T: the k loop runs over ceil(15 / 2) = 8 pairs; K[p, 2kp] and
// K[p, min(2kp + 1, 14)] make one i32, broadcast to 16 lanes.
// CHECK: %[[NP:[0-9]+]] = arith.ceildivsi %c15, %c2{{.*}} : index
// CHECK: scf.for %[[KP:[a-z0-9]+]] = %c0{{.*}} to %[[NP]] step %c1{{.*}} iter_args(
// CHECK: %[[K0:[0-9]+]] = arith.muli %[[KP]], %c2{{.*}} : index
// CHECK: %[[LAST:[0-9]+]] = arith.subi %c15, %c1{{.*}} : index
// CHECK: %[[K1A:[0-9]+]] = arith.addi %[[K0]], %c1{{.*}} : index
// CHECK: %[[K1:[0-9]+]] = arith.minsi %[[K1A]], %[[LAST]] : index
// CHECK: %[[BV:[0-9]+]] = vector.load %[[QPAIR]][%[[KP]], %{{.*}}] : memref<8x64xbf16>, vector<32xbf16>
// CHECK: %[[A0:[0-9]+]] = memref.load %{{.*}}[%{{.*}}, %{{.*}}, %{{.*}}, %[[K0]]] : memref<?x?x?x?xbf16
// CHECK: %[[A1:[0-9]+]] = memref.load %{{.*}}[%{{.*}}, %{{.*}}, %{{.*}}, %[[K1]]] : memref<?x?x?x?xbf16
// CHECK: %[[H16:[0-9]+]] = arith.bitcast %[[A1]] : bf16 to i16
// CHECK: %[[H32:[0-9]+]] = arith.extui %[[H16]] : i16 to i32
// CHECK: %[[HI:[0-9]+]] = arith.shli %[[H32]], %c16_i32 : i32
// CHECK: %[[L16:[0-9]+]] = arith.bitcast %[[A0]] : bf16 to i16
// CHECK: %[[LO:[0-9]+]] = arith.extui %[[L16]] : i16 to i32
// CHECK: %[[PAIR:[0-9]+]] = arith.ori %[[LO]], %[[HI]] : i32
// CHECK: %[[BC:[0-9]+]] = vector.broadcast %[[PAIR]] : i32 to vector<16xi32>
// CHECK: %[[AV:[0-9]+]] = vector.bitcast %[[BC]] : vector<16xi32> to vector<32xbf16>
// CHECK: llvm.call_intrinsic "llvm.x86.avx512bf16.dpbf16ps.512"(%{{.*}}, %[[AV]], %[[BV]]) : (vector<16xf32>, vector<32xbf16>, vector<32xbf16>) -> vector<16xf32>

// P V: before the contraction, the probabilities sn [p0, m0] (f32, written
// by the softmax sweep) are rounded into pairs: rows 2kp and 2kp + 1
// interleaved by one shuffle; the partner of an odd last key is 0.
// CHECK: %[[NKP:[0-9]+]] = arith.ceildivsi %[[KV:[0-9]+]], %c2{{.*}} : index
// CHECK: scf.for %[[CP:[a-z0-9]+]] = %c0{{.*}} to %[[NKP]]
// CHECK: %[[C0:[0-9]+]] = arith.muli %[[CP]], %c2{{.*}} : index
// CHECK: %[[C1:[0-9]+]] = arith.addi %[[C0]], %c1{{.*}} : index
// CHECK: %[[HAS1:[0-9]+]] = arith.cmpi ult, %[[C1]], %[[KV]] : index
// CHECK: %[[LOV:[0-9]+]] = vector.load %{{.*}}[%[[C0]], %{{.*}}] : memref<32x32xf32>, vector<16xf32>
// CHECK: %[[LOB:[0-9]+]] = arith.truncf %[[LOV]] : vector<16xf32> to vector<16xbf16>
// CHECK: %[[HIV:[0-9]+]] = vector.load %{{.*}}[%{{.*}}, %{{.*}}] : memref<32x32xf32>, vector<16xf32>
// CHECK: %[[HIB:[0-9]+]] = arith.truncf %[[HIV]] : vector<16xf32> to vector<16xbf16>
// CHECK: %[[HIZ:[0-9]+]] = arith.select %[[HAS1]], %[[HIB]], %{{.*}} : vector<16xbf16>
// CHECK: %[[MIX:[0-9]+]] = vector.shuffle %[[LOB]], %[[HIZ]] [0, 16, 1, 17, 2, 18, {{.*}}, 15, 31] : vector<16xbf16>, vector<16xbf16>
// CHECK: vector.store %[[MIX]], %[[SPAIR]][%[[CP]], %{{.*}}] : memref<16x64xbf16>, vector<32xbf16>
// The PV micro-kernel then reads the pairs of sn and V[2kp, f], V[2kp+1, f].
// CHECK: vector.load %[[SPAIR]][%{{.*}}, %{{.*}}] : memref<16x64xbf16>, vector<32xbf16>
// CHECK: llvm.call_intrinsic "llvm.x86.avx512bf16.dpbf16ps.512"

// Down to the LLVM dialect, the intrinsic stays a call_intrinsic.
// LLVM: llvm.call_intrinsic "llvm.x86.avx512bf16.dpbf16ps.512"
// LLVM-NOT: vector.

attn.cascade @mha ranks(b, h, m, p, e = 15, f = 16)
    (%q: !attn.t<[b, h, m, e], bf16>, %k: !attn.t<[b, h, p, e], bf16>, %v: !attn.t<[b, h, p, f], bf16>)
    -> (o: !attn.t<[b, h, m, f], bf16>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.25 sum(e) : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : bf16
  attn.yield %o : !attn.t<[b, h, m, f], bf16>
}
