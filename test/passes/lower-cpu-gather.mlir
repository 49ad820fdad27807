// attn-lower-cpu: gathers into cascade arguments (`%k[%idx[m, l], e]`, a
// relative-position bias table read at a computed bucket, a paged cache read
// through a block table). The gathered index is the loaded value, converted
// to an index and clamped into the dimension it selects, so that a bad index
// reads the nearest element instead of memory outside the tensor (the
// interpreter reports such an index as an error). Einsums that gather take
// the scalar path: no vector lanes, no micro-kernel.
// RUN: attn-opt %s --attn-lower-cpu=row-tile=32 2>/dev/null | FileCheck %s

// CHECK-LABEL: func.func @gather_tasks(
// CHECK-SAME: %[[K:[a-z0-9]+]]: memref<?x?xf32, strided<[?, ?], offset: ?>>, %[[IDX:[a-z0-9]+]]: memref<?x?xi32, strided<[?, ?], offset: ?>>
// The index: loaded as i32, sign-extended, cast, clamped to [0, |p| - 1].
// CHECK: %[[RAW:[0-9]+]] = memref.load %[[IDX]][{{.*}}] : memref<?x?xi32
// CHECK: %[[I64:[0-9]+]] = arith.extsi %[[RAW]] : i32 to i64
// CHECK: %[[I:[0-9]+]] = arith.index_cast %[[I64]] : i64 to index
// CHECK: %[[DIM:[a-z0-9_]+]] = memref.dim %[[K]], %c0
// CHECK: %[[LAST:[0-9]+]] = arith.subi %[[DIM]], %c1
// CHECK: %[[HI:[0-9]+]] = arith.minsi %[[I]], %[[LAST]] : index
// CHECK: %[[SAFE:[0-9]+]] = arith.maxsi %c0{{.*}}, %[[HI]] : index
// CHECK: memref.load %[[K]][%[[SAFE]], %{{.*}}]
// CHECK-NOT: vector.fma
attn.cascade @gather ranks(m, l, p, e = 16)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>, %idx: !attn.t<[m, l], i32>)
    -> (s: !attn.t<[m, l], f32>) {
  %s = attn.einsum [m, l] = %q[m, e] * %k[%idx[m, l], e] sum(e) : f32
  attn.yield %s : !attn.t<[m, l], f32>
}
