// attn-lower-cpu: a cascade in the 1-pass form becomes the task function the
// runtime of a generated library calls. Here: causal attention, key tiles of
// 32 (attn-derive-online), row tiles of 32 query rows, 16-lane vectors.
// RUN: attn-opt %s --attn-derive-online=tile=32 --attn-lower-cpu=row-tile=32 2>/dev/null | FileCheck %s
// RUN: attn-opt %s --attn-derive-online=tile=32 --attn-lower-cpu="row-tile=32 vectorize=false" 2>/dev/null | FileCheck %s --check-prefix=SCALAR
// RUN: attn-opt %s --attn-derive-online=tile=32 --attn-lower-cpu=row-tile=32 --attn-cpu-to-llvm 2>/dev/null | FileCheck %s --check-prefix=LLVM

// The signature: the sizes buffer (rank sizes, then presence flags), one
// strided memref per argument and result, the task range.
// CHECK-LABEL: func.func @causal_tasks(
// CHECK-SAME: %[[SIZES:[a-z0-9]+]]: memref<?xi64>, %[[Q:[a-z0-9]+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>
// CHECK-SAME: %[[BEGIN:[a-z0-9]+]]: index, %[[END:[a-z0-9]+]]: index) attributes {llvm.emit_c_interface}

// One buffer per Einsum, the row rank innermost: qk [p0, m0] = 32 x 32,
// running max r_gm in two slots, the numerator o_num [f, m0] = 16 x 32 and
// its running state 2 x 16 x 32; Q packed per task as [e, m0] = 16 x 32.
// CHECK: memref.alloc() {alignment = 64 : i64} : memref<32x32xf32>
// CHECK: memref.alloc() {alignment = 64 : i64} : memref<2x32xf32>
// CHECK: memref.alloc() {alignment = 64 : i64} : memref<2x16x32xf32>
// CHECK: memref.alloc() {alignment = 64 : i64} : memref<16x32xf32>

// The task loop; tasks are decoded row-major over (b, h, row tile).
// CHECK: scf.for %[[T:[a-z0-9]+]] = %[[BEGIN]] to %[[END]]
// CHECK: arith.remui %[[T]]
// Q is packed once per task.
// CHECK: memref.load %[[Q]]
// CHECK: memref.store {{.*}}, %[[QPACK:[a-z0-9_]+]][{{.*}}] : memref<16x32xf32>

// Tile skipping: the mask p1 * 32 + p0 <= m bounds the key tiles of a row
// tile by its last row: end = min(|p1|, floordiv(max m, 32) + 1).
// CHECK: %[[LAST:[0-9]+]] = arith.floordivsi %{{.*}}, %c32{{.*}} : index
// CHECK: %[[END1:[0-9]+]] = arith.addi %[[LAST]], %c1
// CHECK: %[[KEND:[0-9]+]] = arith.minsi %{{.*}}, %[[END1]] : index
// The running state starts in slot (first tile mod 2).
// CHECK: memref.store %cst{{.*}}, %{{.*}}[%{{.*}}, %{{.*}}] : memref<2x32xf32>
// CHECK: scf.for %[[P1:[a-z0-9]+]] = %{{.*}} to %{{.*}} step

// QK^T as a register-tiled micro-kernel: 4 keys x 2 vectors of 16 rows, a
// reduction over e = 16 with 8 vector accumulators, K read as scalars and
// broadcast, the packed Q as vectors.
// CHECK: scf.for %{{.*}} = %c0{{.*}} to %c16{{.*}} step %c1{{.*}} iter_args({{.*}}) -> (vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>)
// CHECK: vector.load %[[QPACK]]
// CHECK: vector.broadcast
// CHECK: vector.fma
// The scale, then the mask as a select with the else value -inf.
// CHECK: arith.mulf
// CHECK: arith.cmpf ole
// CHECK: arith.select
// CHECK: vector.store

// The tile max: a vertical max over the keys of the tile, 16 rows at once.
// CHECK: scf.for {{.*}} iter_args({{.*}}) -> (vector<16xf32>)
// CHECK: arith.maximumf {{.*}} : vector<16xf32>
// The correction exp(r_gm[p1] - ref_gm[p1]) reads the old slot p1 mod 2.
// CHECK: arith.remui %[[P1]], %c2
// CHECK: math.exp {{.*}} : vector<16xf32>

// After the key loop, the final state is read from slot (last tile mod 2)
// and each result is copied out only when the caller passed it.
// CHECK: scf.if
// CHECK: memref.store {{.*}} : memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>
// CHECK: memref.dealloc

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
