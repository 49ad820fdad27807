// attn-lower-cpu on linear attention in the forms attn-reassociate writes
// (docs/codegen.md, "Linear attention"). One task per head: the task ranks
// are b and h only (the state phi(K)^T V is shared by every query of the
// head); the task runs the key tiles into the state, then the row tiles.
// RUN: attn-opt %s --attn-reassociate --attn-lower-cpu=row-tile=32 -split-input-file | FileCheck %s
// RUN: attn-opt %s --attn-reassociate=chunk=16 --attn-lower-cpu -split-input-file | FileCheck %s --check-prefix=CAUSAL

// Non-causal, phi = elu + 1, e = f = 16, row and key tiles of 32.
// Buffers: the state S = [phi(K)^T V | phi(K)^T 1 | 0] (16 x 32: the
// values, the denominator's column of ones, padding to 2 vectors), the
// key tile of [V | 1] (32 x 32), phi(K) and phi(Q) tiles (32 x 16), the
// rows' products phi(Q) S (32 x 32).
// CHECK-LABEL: func.func @linear_tasks
// CHECK: %[[S:.*]] = memref.alloc() {alignment = 64 : i64} : memref<16x32xf32>
// CHECK: %[[VX:.*]] = memref.alloc() {alignment = 64 : i64} : memref<32x32xf32>
// CHECK: %[[FK:.*]] = memref.alloc() {alignment = 64 : i64} : memref<32x16xf32>
// CHECK: %[[FQ:.*]] = memref.alloc() {alignment = 64 : i64} : memref<32x16xf32>
// CHECK: %[[OX:.*]] = memref.alloc() {alignment = 64 : i64} : memref<32x32xf32>
// The column of ones (column 16 of VX), written once per call.
// CHECK: memref.store %{{.*}}, %[[VX]][%{{.*}}, %c16{{.*}}] : memref<32x32xf32>
// A task is one (b, h): two decodings, no row tile.
// CHECK: scf.for %[[T:.*]] = %arg5 to %arg6
// CHECK-NEXT: arith.remui %[[T]]
// CHECK-NEXT: %[[T1:.*]] = arith.divui %[[T]]
// CHECK-NEXT: arith.remui %[[T1]]
// CHECK-NEXT: arith.divui %[[T1]]
// CHECK-NOT: arith.remui
// S = 0, then per key tile (ceil(|p| / 32) of them): phi(K) and V into the
// tile buffers, S += phi(K)^T [V | 1] with vector.fma along the columns.
// CHECK: memref.store %{{.*}}, %[[S]]
// CHECK: arith.ceildivsi %{{.*}}, %c32
// CHECK: math.exp
// CHECK: memref.store %{{.*}}, %[[FK]]
// CHECK: memref.store %{{.*}}, %[[VX]]
// CHECK: vector.load %[[S]]
// CHECK: scf.for
// CHECK: vector.load %[[VX]]
// CHECK: memref.load %[[FK]]
// CHECK: vector.fma
// CHECK: vector.store %{{.*}}, %[[S]]
// Per row tile: phi(Q), then phi(Q) S (numerator and denominator at once).
// CHECK: arith.ceildivsi %{{.*}}, %c32
// CHECK: memref.store %{{.*}}, %[[FQ]]
// CHECK: vector.load %[[S]]
// CHECK: memref.load %[[FQ]]
// CHECK: vector.fma
// CHECK: vector.store %{{.*}}, %[[OX]]
// The result o = num / den from OX, stored if o is present.
// CHECK: scf.if
// CHECK: memref.load %[[OX]]
// CHECK: memref.load %[[OX]][%{{.*}}, %c16
// CHECK: arith.divf
// CHECK: memref.store %{{.*}}, %arg4

// Causal, chunks of 16: per chunk of queries (rows) and the keys at the same
// positions, OX = phi(Q) S (the keys of earlier chunks), A = phi(Q) phi(K)^T
// masked to key <= query (and key < |p|), OX += A [V | 1], S += phi(K)^T [V | 1].
// CAUSAL-LABEL: func.func @linear_causal_tasks
// CAUSAL: %[[S:.*]] = memref.alloc() {alignment = 64 : i64} : memref<16x32xf32>
// CAUSAL: %[[VX:.*]] = memref.alloc() {alignment = 64 : i64} : memref<16x32xf32>
// CAUSAL: %[[FK:.*]] = memref.alloc() {alignment = 64 : i64} : memref<16x16xf32>
// CAUSAL: %[[FQ:.*]] = memref.alloc() {alignment = 64 : i64} : memref<16x16xf32>
// CAUSAL: %[[OX:.*]] = memref.alloc() {alignment = 64 : i64} : memref<16x32xf32>
// CAUSAL: %[[FKT:.*]] = memref.alloc() {alignment = 64 : i64} : memref<16x16xf32>
// CAUSAL: %[[A:.*]] = memref.alloc() {alignment = 64 : i64} : memref<16x16xf32>
// CAUSAL: arith.ceildivsi %{{.*}}, %c16
// phi(Q) of the chunk's rows, phi(K) of its keys (also transposed), V.
// CAUSAL: memref.store %{{.*}}, %[[FQ]]
// CAUSAL: memref.store %[[PK:.*]], %[[FK]]
// CAUSAL-NEXT: memref.store %[[PK]], %[[FKT]]
// CAUSAL: memref.store %{{.*}}, %[[VX]]
// OX = phi(Q) S.
// CAUSAL: vector.load %[[S]]
// CAUSAL: memref.load %[[FQ]]
// CAUSAL: vector.store %{{.*}}, %[[OX]]
// A: the scores inside the chunk, vectors along the keys, then the mask
// j <= min(i, kv - 1) as a select.
// CAUSAL: vector.load %[[FKT]]
// CAUSAL: memref.load %[[FQ]]
// CAUSAL: arith.minsi
// CAUSAL: arith.cmpi sle, %{{.*}} : vector<16xindex>
// CAUSAL: arith.select
// CAUSAL: vector.store %{{.*}}, %[[A]]
// OX += A [V | 1], starting from OX.
// CAUSAL: vector.load %[[OX]]
// CAUSAL: vector.load %[[VX]]
// CAUSAL: memref.load %[[A]]
// CAUSAL: vector.store %{{.*}}, %[[OX]]
// S += phi(K)^T [V | 1], after the chunk's rows read it.
// CAUSAL: vector.load %[[S]]
// CAUSAL: vector.load %[[VX]]
// CAUSAL: memref.load %[[FK]]
// CAUSAL: vector.store %{{.*}}, %[[S]]
// CAUSAL: arith.divf
// CAUSAL: memref.store %{{.*}}, %arg4
attn.cascade @linear ranks(b, h, m, p, e = 16, f = 16)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>) {
  %fq = attn.einsum [b, h, m, e] = select(%q[b, h, m, e] > 0, %q[b, h, m, e] + 1.0, exp(%q[b, h, m, e])) {attn.lowrank = #attn.lowrank<feature_map, "e">} : f32
  %fk = attn.einsum [b, h, p, e] = select(%k[b, h, p, e] > 0, %k[b, h, p, e] + 1.0, exp(%k[b, h, p, e])) {attn.lowrank = #attn.lowrank<feature_map, "e">} : f32
  %a = attn.einsum [b, h, m, p] = %fq[b, h, m, e] * %fk[b, h, p, e] sum(e) : f32
  %num = attn.einsum [b, h, m, f] = %a[b, h, m, p] * %v[b, h, p, f] sum(p) : f32
  %den = attn.einsum [b, h, m] = %a[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %num[b, h, m, f] / %den[b, h, m] : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}

// -----

attn.cascade @linear_causal ranks(b, h, m, p, e = 16, f = 16)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>) {
  %fq = attn.einsum [b, h, m, e] = select(%q[b, h, m, e] > 0, %q[b, h, m, e] + 1.0, exp(%q[b, h, m, e])) {attn.lowrank = #attn.lowrank<feature_map, "e">} : f32
  %fk = attn.einsum [b, h, p, e] = select(%k[b, h, p, e] > 0, %k[b, h, p, e] + 1.0, exp(%k[b, h, p, e])) {attn.lowrank = #attn.lowrank<feature_map, "e">} : f32
  %a = attn.einsum [b, h, m, p] = %fq[b, h, m, e] * %fk[b, h, p, e] sum(e) if (p <= m) : f32
  %num = attn.einsum [b, h, m, f] = %a[b, h, m, p] * %v[b, h, p, f] sum(p) : f32
  %den = attn.einsum [b, h, m] = %a[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %num[b, h, m, f] / %den[b, h, m] : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}
