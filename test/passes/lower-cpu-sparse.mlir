// attn-lower-cpu with masks from runtime metadata (docs/sparsify.md):
// key tiles classified per row tile as empty (skipped), full (no mask) or
// partial (mask per element). Key tiles of 32, row tiles of 32, 16 lanes.
// RUN: attn-opt %s -split-input-file --attn-sparsify --attn-derive-online=tile=32 --attn-lower-cpu=row-tile=32 2>/dev/null | FileCheck %s
// RUN: attn-opt %s -split-input-file --attn-sparsify=metadata=false --attn-derive-online=tile=32 --attn-lower-cpu=row-tile=32 2>/dev/null | FileCheck %s --check-prefix=NOMETA

// Document mask. The query ids of the task are packed once ([32] x i32) so
// that the masked epilogue reads them as vectors.
// CHECK-LABEL: func.func @document_mask_tasks(
// CHECK: %[[PACK:[a-z0-9_]+]] = memref.alloc() {alignment = 64 : i64} : memref<32xi32>
// CHECK: scf.for %{{.*}} = %{{.*}} to %{{.*}} step
// CHECK: memref.store %{{.*}}, %[[PACK]][%{{.*}}] : memref<32xi32>
// The [min, max] of the query ids over the rows of the task (on the
// integers, converted once: the mask compares them as f32).
// CHECK: %[[QI:[0-9]+]]:2 = scf.for %{{.*}} iter_args(%{{.*}} = %{{.*}}, %{{.*}} = %{{.*}}) -> (i32, i32)
// CHECK: arith.minsi
// CHECK: arith.maxsi
// CHECK: %[[QLO:[0-9]+]] = arith.sitofp %[[QI]]#0 : i32 to f32
// CHECK: %[[QHI:[0-9]+]] = arith.sitofp %[[QI]]#1 : i32 to f32
// The key loop carries the running state's step (tiles processed so far).
// CHECK: %{{.*}} = scf.for %[[P1:[a-z0-9]+]] = %{{.*}} to %{{.*}} step %{{.*}} iter_args(%[[STEP:[a-z0-9]+]] = %{{.*}}) -> (index)
// Per key tile: the [min, max] of the key ids over its valid keys.
// CHECK: %[[KI:[0-9]+]]:2 = scf.for %{{.*}} iter_args(%{{.*}} = %{{.*}}, %{{.*}} = %{{.*}}) -> (i32, i32)
// CHECK: memref.load %{{.*}} : memref<?x?xi32, strided<[?, ?], offset: ?>>
// CHECK: %[[KLO:[0-9]+]] = arith.sitofp %[[KI]]#0 : i32 to f32
// CHECK: %[[KHI:[0-9]+]] = arith.sitofp %[[KI]]#1 : i32 to f32
// Kept when the ranges meet; full when both are one and the same id.
// CHECK: %[[LE:[0-9]+]] = arith.cmpf ole, %[[KLO]], %[[QHI]] : f32
// CHECK: %[[GE:[0-9]+]] = arith.cmpf oge, %[[KHI]], %[[QLO]] : f32
// CHECK: %[[KEPT:[0-9]+]] = arith.andi %[[GE]], %[[LE]] : i1
// CHECK: arith.cmpf oeq, %[[QLO]], %[[KLO]] : f32
// CHECK: arith.cmpf oeq, %[[KLO]], %[[KHI]] : f32
// CHECK: arith.cmpf oeq, %[[QLO]], %[[QHI]] : f32
// CHECK: %[[F1:[0-9]+]] = arith.andi
// CHECK: %[[FULL:[0-9]+]] = arith.andi %[[F1]]
// A kept tile runs and advances the step; a skipped one only yields it.
// CHECK: %[[NEXT:[0-9]+]] = scf.if %[[KEPT]] -> (index) {
// CHECK: %[[NOTFULL:[0-9]+]] = arith.xori %[[FULL]], %true
// CHECK: %[[PARTIAL:[0-9]+]] = arith.ori %{{.*}}, %[[NOTFULL]] : i1
// The micro-kernel's epilogue evaluates the mask only in partial tiles,
// with the packed query ids as vectors.
// CHECK: scf.if %[[PARTIAL]] -> (vector<16xf32>, vector<16xf32>) {
// CHECK: vector.load %[[PACK]][%{{.*}}] : memref<32xi32>, vector<16xi32>
// CHECK: arith.cmpf oeq, %{{.*}} : vector<16xf32>
// CHECK: } else {
// CHECK-NOT: arith.cmpf oeq
// CHECK: }
// The running state's slots come from the step, not the tile index.
// CHECK: arith.remui %[[STEP]], %c2
// CHECK: scf.yield %{{[0-9]+}} : index
// CHECK: } else {
// CHECK: scf.yield %[[STEP]] : index
// CHECK: scf.yield %[[NEXT]] : index

// With metadata=false the ids are compared per element in every tile: no
// per-tile ranges, the key loop is over all tiles.
// NOMETA-LABEL: func.func @document_mask_tasks(
// NOMETA-NOT: iter_args(%{{.*}}) -> (index)
// NOMETA: arith.cmpf oeq
attn.cascade @document_mask ranks(b, h, m, p, e = 16, f = 16)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>,
     %seg_q: !attn.t<[b, m], i32> {attn.sparse = #attn.sparse<segment_ids>},
     %seg_k: !attn.t<[b, p], i32> {attn.sparse = #attn.sparse<segment_ids>})
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.25 sum(e) if (%seg_q[b, m] == %seg_k[b, p]) else -inf : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) if (%gm[b, h, m] > -inf) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) if (%sd[b, h, m] > 0) : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}

// -----

// Varlen: the row tile's sequences sq[first row] .. sq[last row] (clamped
// below |n| - 1: padding rows see nothing) bound the key loop by their keys
// [cu_k[s_lo], cu_k[s_hi + 1]) in tiles; tiles inside one sequence are full.
// CHECK-LABEL: func.func @varlen_tasks(
// CHECK: %[[SLO:[0-9]+]] = memref.load %[[SQ:[a-z0-9_]+]][%c0{{.*}}] : memref<32xi32>
// CHECK: %[[SHI:[0-9]+]] = memref.load %[[SQ]][%{{.*}}] : memref<32xi32>
// CHECK: %[[KLO:[0-9]+]] = memref.load %arg5[%{{.*}}] : memref<?xi32, strided<[?], offset: ?>>
// CHECK: %[[KHI:[0-9]+]] = memref.load %arg5[%{{.*}}] : memref<?xi32, strided<[?], offset: ?>>
// CHECK: %[[FIRST:[0-9]+]] = arith.floordivsi %{{.*}}, %c32
// CHECK: %[[BEGIN:[0-9]+]] = arith.maxsi %{{.*}}, %[[FIRST]] : index
// CHECK: arith.ceildivsi %{{.*}}, %c32
// CHECK: %[[END:[0-9]+]] = arith.minsi
// The key loop runs from the first to the last tile of those keys.
// CHECK: scf.for %[[P1:[a-z0-9]+]] = %[[BEGIN]] to %{{.*}} step
// The key's sequence id (|n| loads per key) is computed only in partial
// tiles, where the mask reads it.
// CHECK: scf.if %{{.*}} {
// CHECK: memref.load %arg5
// NOMETA-LABEL: func.func @varlen_tasks(
// NOMETA-NOT: memref.load %arg5[%{{[0-9]+}}] : memref<?xi32, strided<[?], offset: ?>>
// NOMETA: scf.for %{{.*}} = %c0{{.*}} to %{{.*}} step
attn.cascade @varlen ranks(h, m, p, n, e = 16, f = 16)
    (%q: !attn.t<[m, h, e], f32>, %k: !attn.t<[p, h, e], f32>, %v: !attn.t<[p, h, f], f32>,
     %cu_seqlens_q: !attn.t<[n], i32> {attn.sparse = #attn.sparse<cu_seqlens>},
     %cu_seqlens_k: !attn.t<[n], i32> {attn.sparse = #attn.sparse<cu_seqlens>})
    -> (o: !attn.t<[m, h, f], f32>, lse: !attn.t<[h, m], f32>) {
  %sq = attn.einsum [m] = 1 sum(n) if (n >= 1 and %cu_seqlens_q[n] <= m) : i32
  %sk = attn.einsum [p] = 1 sum(n) if (n >= 1 and %cu_seqlens_k[n] <= p) : i32
  %qk = attn.einsum [h, m, p] = %q[m, h, e] * %k[p, h, e] * 0.25 sum(e) if (%sq[m] == %sk[p] and %sq[m] < |n| - 1) else -inf : f32
  %gm = attn.einsum [h, m] = %qk[h, m, p] max(p) : f32
  %sn = attn.einsum [h, m, p] = exp(%qk[h, m, p] - %gm[h, m]) if (%gm[h, m] > -inf) : f32
  %sd = attn.einsum [h, m] = %sn[h, m, p] sum(p) : f32
  %o = attn.einsum [m, h, f] = %sn[h, m, p] * %v[p, h, f] / %sd[h, m] sum(p) if (%sd[h, m] > 0) : f32
  %lse = attn.einsum [h, m] = %gm[h, m] + log(%sd[h, m]) : f32
  attn.yield %o, %lse : !attn.t<[m, h, f], f32>, !attn.t<[h, m], f32>
}

// -----

// Prefix-LM: per task, the largest bound max(prefix_len[b] - 1, last row)
// ends the key loop and the smallest, max(prefix_len[b] - 1, first row),
// ends the full tiles.
// CHECK-LABEL: func.func @prefix_lm_tasks(
// CHECK: %[[L1:[0-9]+]] = memref.load %arg4[%{{.*}}] : memref<?xi32, strided<[?], offset: ?>>
// CHECK: %[[HI:[0-9]+]] = arith.maxsi
// CHECK: %[[L2:[0-9]+]] = memref.load %arg4[%{{.*}}] : memref<?xi32, strided<[?], offset: ?>>
// CHECK: %[[LO:[0-9]+]] = arith.maxsi
// CHECK: %[[LAST:[0-9]+]] = arith.floordivsi %[[HI]], %c32
// CHECK: arith.addi %[[LAST]], %c1
// CHECK: %[[LO1:[0-9]+]] = arith.addi %[[LO]], %c1
// CHECK: %[[FULLEND:[0-9]+]] = arith.floordivsi %[[LO1]], %c32
// CHECK: scf.for %[[P1:[a-z0-9]+]] = %{{.*}} to %{{.*}} step
// CHECK: arith.cmpi sge, %[[P1]], %{{.*}} : index
// CHECK: scf.if %{{.*}} -> (vector<16xf32>, vector<16xf32>) {
attn.cascade @prefix_lm ranks(b, h, m, p, e = 16, f = 16)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>,
     %prefix_len: !attn.t<[b], i32> {attn.sparse = #attn.sparse<seq_lens>})
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.25 sum(e) if (p < %prefix_len[b] or p <= m) else -inf {attn.sparse = #attn.sparse<prefix>} : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}
