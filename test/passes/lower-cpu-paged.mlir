// attn-lower-cpu on a paged KV cache (examples/paged-kv.mlir, pages of 16
// tokens = the key tile): K and V are read through the block table,
// K[block_table[b, p1], p0, h / 4, e]. The page does not change inside a
// key tile, so the gather is allowed in the micro-kernels' scalar operand:
// the block table entry is loaded, clamped into the cache's page count (the
// entry point has checked it already) and used as the first index.
// RUN: attn-opt %S/../../examples/paged-kv.mlir --attn-derive-online --attn-lower-cpu 2>/dev/null | FileCheck %s

// Q K^T: the page, clamped to [0, |n| - 1], then K's element broadcast.
// CHECK: %[[PG:[0-9]+]] = memref.load %arg4[%{{.*}}, %{{.*}}] : memref<?x?xi32
// CHECK: %[[PI:[0-9]+]] = arith.index_cast %{{.*}} : i64 to index
// CHECK: %[[N:.*]] = memref.dim %arg2, %c0{{.*}}
// CHECK: %[[LAST:[0-9]+]] = arith.subi %[[N]], %c1{{.*}} : index
// CHECK: %[[HI:[0-9]+]] = arith.minsi %[[PI]], %[[LAST]] : index
// CHECK: %[[PC:[0-9]+]] = arith.maxsi %c0{{.*}}, %[[HI]] : index
// CHECK: %[[KV:[0-9]+]] = memref.load %arg2[%[[PC]], %{{.*}}, %{{.*}}, %{{.*}}]
// CHECK: %[[KB:[0-9]+]] = vector.broadcast %[[KV]] : f32 to vector<16xf32>
// CHECK: vector.fma %[[KB]], %{{.*}}, %{{.*}} : vector<16xf32>
// P V: the cascade repeats the score's mask on the PV sum (so that its
// interpreter never reads a table entry past a sequence's pages); the
// probabilities are already 0 there (exp of -inf), so the micro-kernel
// drops it and reads V through the clamped page the same way.
// CHECK: memref.load %arg3[%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}] : memref<?x?x?x?xf32
// CHECK-NEXT: vector.broadcast
// CHECK-NEXT: vector.fma
