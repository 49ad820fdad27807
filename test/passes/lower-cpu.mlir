// attn-lower-cpu: a cascade in the 1-pass form becomes the task function the
// runtime of a generated library calls. Here: causal attention, key tiles of
// 32 (attn-derive-online), row tiles of 32 query rows, 16-lane vectors.
// RUN: attn-opt %s --attn-derive-online=tile=32 --attn-lower-cpu=row-tile=32 2>/dev/null | FileCheck %s
// RUN: attn-opt %s --attn-derive-online=tile=32 --attn-lower-cpu="row-tile=32 vectorize=false" 2>/dev/null | FileCheck %s --check-prefix=SCALAR
// RUN: attn-opt %s --attn-derive-online=tile=32 --attn-lower-cpu=row-tile=32 --attn-cpu-to-llvm 2>/dev/null | FileCheck %s --check-prefix=LLVM
// RUN: attn-opt %s --attn-derive-online=tile=32 --attn-lower-cpu="row-tile=32 vector-width=8 vector-registers=16" 2>/dev/null | FileCheck %s --check-prefix=AVX2

// The signature: the sizes buffer (rank sizes, then presence flags), one
// strided memref per argument and result, the task range.
// CHECK-LABEL: func.func @causal_tasks(
// CHECK-SAME: %[[SIZES:[a-z0-9]+]]: memref<?xi64>, %[[Q:[a-z0-9]+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>
// CHECK-SAME: %[[BEGIN:[a-z0-9]+]]: index, %[[END:[a-z0-9]+]]: index) attributes {llvm.emit_c_interface}

// One buffer per Einsum, the row rank innermost: qk [p0, m0] = 32 x 32,
// running max r_gm in two slots, the numerator o_num [f, m0] = 16 x 32 and
// its running state 2 x 16 x 32; Q packed per task as [e, m0] = 16 x 32.
// (The buffer of l_o_num, whose sums go straight into the running state,
// stays allocated and unused.)
// CHECK: memref.alloc() {alignment = 64 : i64} : memref<32x32xf32>
// CHECK: memref.alloc() {alignment = 64 : i64} : memref<2x32xf32>
// CHECK: memref.alloc() {alignment = 64 : i64} : memref<2x16x32xf32>
// CHECK: memref.alloc() {alignment = 64 : i64} : memref<16x32xf32>

// The task loop; tasks are decoded row-major over (b, h, row tile).
// CHECK: scf.for %[[T:[a-z0-9]+]] = %[[BEGIN]] to %[[END]]
// CHECK: arith.remui %[[T]]
// Q is packed once per task, times the constant factor 0.25 of qk.
// CHECK: %[[QV:[0-9]+]] = memref.load %[[Q]]
// CHECK: %[[QS:[0-9]+]] = arith.mulf %[[QV]], %{{.*}} : f32
// CHECK: memref.store %[[QS]], %[[QPACK:[a-z0-9_]+]][{{.*}}] : memref<16x32xf32>

// Tile skipping: the mask p1 * 32 + p0 <= m bounds the key tiles of a row
// tile by its last row: end = min(|p1|, floordiv(max m, 32) + 1).
// CHECK: %[[LAST:[0-9]+]] = arith.floordivsi %{{.*}}, %c32{{.*}} : index
// CHECK: %[[END1:[0-9]+]] = arith.addi %[[LAST]], %c1
// CHECK: %[[KEND:[0-9]+]] = arith.minsi %{{.*}}, %[[END1]] : index
// Tiles the mask keeps entirely end at floordiv(min m + 1, 32).
// CHECK: %[[FIRST:[0-9]+]] = arith.addi %{{.*}}, %c1{{.*}} : index
// CHECK: %[[FULLEND0:[0-9]+]] = arith.floordivsi %[[FIRST]], %c32{{.*}} : index
// CHECK: %[[FULLEND:[0-9]+]] = arith.minsi %{{.*}}, %[[FULLEND0]] : index
// The running state starts in slot (first tile mod 2).
// CHECK: memref.store %cst{{.*}}, %{{.*}}[%{{.*}}, %{{.*}}] : memref<2x32xf32>
// CHECK: scf.for %[[P1:[a-z0-9]+]] = %{{.*}} to %{{.*}} step
// A key tile is partial outside [full begin, full end).
// CHECK: %[[GE:[0-9]+]] = arith.cmpi sge, %[[P1]], %[[FULLEND]] : index
// CHECK: %[[PARTIAL:[0-9]+]] = arith.ori %{{.*}}, %[[GE]] : i1

// The micro-kernels cover only the vectors of rows the task has: ceil(valid
// rows / 16) vectors, in blocks of 2, then single vectors (decode computes
// one vector of 16 rows, not the whole row tile).
// CHECK: %[[NVEC:[0-9]+]] = arith.ceildivsi %{{.*}}, %c16{{.*}} : index
// CHECK: %[[NBLK:[0-9]+]] = arith.divsi %[[NVEC]], %c2{{.*}} : index
// CHECK: %[[NMAIN:[0-9]+]] = arith.muli %[[NBLK]], %c2{{.*}} : index
// CHECK: scf.for %{{.*}} = %c0{{.*}} to %[[NMAIN]] step %c2

// QK^T as a register-tiled micro-kernel: 4 keys x 2 vectors of 16 rows, a
// reduction over e = 16 with 8 vector accumulators, K read as scalars and
// broadcast, the packed Q as vectors. The i loop over key quads carries the
// tile max l_gm (max over p0 of qk), fused into the micro-kernel.
// CHECK: scf.for %{{.*}} iter_args(%[[MAX0:[a-z0-9]+]] = %{{.*}}, %{{.*}} = %{{.*}}) -> (vector<16xf32>, vector<16xf32>)
// CHECK: scf.for %{{.*}} = %c0{{.*}} to %c16{{.*}} step %c1{{.*}} iter_args({{.*}}) -> (vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>)
// CHECK: vector.load %[[QPACK]]
// CHECK: vector.broadcast
// CHECK: vector.fma
// In a partial tile the mask selects the else value -inf; a full tile
// stores the sums as they are. Both update the tile max.
// CHECK: scf.if %[[PARTIAL]] -> (vector<16xf32>, vector<16xf32>) {
// CHECK: arith.cmpf ole
// CHECK: %[[SEL:[0-9]+]] = arith.select
// CHECK: vector.store %[[SEL]]
// CHECK: arith.maximumf %[[MAX0]], %[[SEL]] fastmath<nsz> : vector<16xf32>
// CHECK: } else {
// CHECK-NOT: arith.select
// CHECK: vector.store %[[RAW:[0-9]+#0]]
// CHECK: arith.maximumf %[[MAX0]], %[[RAW]] fastmath<nsz> : vector<16xf32>
// CHECK: }
// After the key quads, the tile max is stored once per row vector.
// CHECK: vector.store %{{.*}}, %[[LGM:[a-z0-9_]+]][%{{.*}}] : memref<32xf32>, vector<16xf32>
// Then the same micro-kernel one vector at a time for the last odd vector.
// CHECK: scf.for %{{.*}} = %[[NMAIN]] to %[[NVEC]] step %c1

// The running max reads l_gm; the correction exp(r_gm[p1] - ref_gm[p1])
// reads the old slot p1 mod 2.
// CHECK: vector.load %[[LGM]]
// CHECK: arith.maximumf {{.*}} : vector<16xf32>
// CHECK: arith.remui %[[P1]], %c2
// CHECK: math.exp {{.*}} : vector<16xf32>

// sn = exp(qk - ref) and its sum l_sd over the tile in one sweep: rows
// outside, keys inside, sn stored for P V.
// CHECK: %[[LSD:[0-9]+]] = scf.for %{{.*}} iter_args(%[[ACC:[a-z0-9]+]] = %{{.*}}) -> (vector<16xf32>)
// CHECK: math.exp
// CHECK: vector.store %[[SN:[0-9]+]], %[[SNBUF:[a-z0-9_]+]][
// CHECK: arith.addf %[[ACC]], %[[SN]] : vector<16xf32>
// CHECK: vector.store %[[LSD]]

// P V accumulates into the running numerator: the micro-kernel starts from
// r_o_num[p1] (slot p1 mod 2) times the correction and stores r_o_num[p1 + 1]
// (slot (p1 + 1) mod 2), with no separate rescale pass.
// CHECK: %[[OLD:[0-9]+]] = vector.load %[[STATE:[a-z0-9_]+]][%[[OLDSLOT:[0-9]+]], {{.*}}] : memref<2x16x32xf32>, vector<16xf32>
// CHECK: %[[INIT:[0-9]+]] = arith.mulf %[[OLD]], %{{.*}} : vector<16xf32>
// CHECK: scf.for %{{.*}} iter_args(%{{.*}} = %[[INIT]],
// CHECK: vector.load %[[SNBUF]]
// CHECK: vector.fma
// CHECK: vector.store %{{.*}}, %[[STATE]][%[[NEW:[0-9]+]], %{{.*}}, %{{.*}}] : memref<2x16x32xf32>, vector<16xf32>
// CHECK-NOT: vector.store %{{.*}}, %[[STATE]][%[[OLDSLOT]],

// After the key loop, the final state is read from slot (last tile mod 2)
// and each result is copied out only when the caller passed it.
// CHECK: scf.if
// CHECK: memref.store {{.*}} : memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>
// CHECK: memref.dealloc

// AVX2 (16 registers of 8 lanes): the register tile shrinks to 4 keys x 2
// vectors, 8 accumulators + 2 vectors of Q + 1 broadcast + 1 spare = 12
// registers (4 x 4 would need 22 and spill).
// AVX2-LABEL: func.func @causal_tasks(
// AVX2: scf.for %{{.*}} step %c4{{.*}} iter_args({{.*}}) -> (vector<8xf32>, vector<8xf32>)
// AVX2: scf.for %{{.*}} iter_args({{[^)]*}}) -> (vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>) {

// Without vectorisation: the same structure with scalar loops, the
// condition as an scf.if around each point.
// SCALAR-LABEL: func.func @causal_tasks(
// SCALAR-NOT: vector.fma
// SCALAR: scf.if %{{.*}} -> (f32, i1)
// SCALAR: math.exp {{.*}} : f32

// The LLVM dialect: the task function and its C interface.
// LLVM: llvm.func @causal_tasks(
// LLVM: llvm.func @_mlir_ciface_causal_tasks(
// LLVM-NOT: math.exp

attn.cascade @causal ranks(b, h, m, p, e = 16, f = 16)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.25 sum(e) if (p <= m) else -inf : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) if (%gm[b, h, m] > -inf) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) if (%sd[b, h, m] > 0.0) : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}
