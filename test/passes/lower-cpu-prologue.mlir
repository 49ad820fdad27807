// attn-lower-cpu on a quantization prologue (attribute attn.prologue, the
// cascade attn-split-quant splits off; docs/quantize.md, "Lowering on the
// fly quantization"). attn-derive-online leaves it alone; the lowering
// (passes/LowerCPUPrologue.cpp) writes one task per value of the task ranks
// (the dynamic ranks every result has, unless an Einsum reduces or reads
// across them) and, per task, each Einsum as a scalar float64 loop nest:
// output ranks, then reduced ranks (a sum read along its output's
// innermost rank, K's mean, the other way round into f64 accumulators; a
// maximum with its reduced ranks in memory order and 4 partial maxima),
// each sum adding its terms in the interpreter's order, the result rounded
// to its type (i8: round to nearest even, saturate, NaN to 0) and stored
// into the result or into a per-call buffer over the Einsum's non-task
// ranks. O((|m| + |p|) d) per (b, h).
// RUN: attn-opt %s --attn-quantize --attn-split-quant --attn-derive-online --attn-lower-cpu -split-input-file 2>/dev/null | FileCheck %s
// RUN: attn-opt %s --attn-quantize --attn-split-quant --attn-derive-online -split-input-file 2>/dev/null | FileCheck %s --check-prefix=DERIVE

// examples/int8-sage.mlir: tasks are (b, h).
// attn-derive-online leaves the prologue as it is (its sums and maxima over
// p stay full reductions) and derives the attention cascade (running max).
// DERIVE-LABEL: attn.cascade @int8_sage_quant
// DERIVE-NOT: r_gm
// DERIVE: %kbar = attn.einsum [b, h, e] = %k[b, h, p, e] / |p| sum(p) : f32
// DERIVE-LABEL: attn.cascade @int8_sage ranks
// DERIVE: %r_gm = attn.einsum [b, h, m, p1 + 1]
// The task function: sizes, Q and K (f32), then the results qi, ki (i8) and
// sq_m, sk_p (f32), then the task range.
// CHECK-LABEL: func.func @int8_sage_quant_tasks(%arg0: memref<?xi64>, %arg1: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>, %arg2: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>, %arg3: memref<?x?x?x?xi8, strided<[?, ?, ?, ?], offset: ?>>, %arg4: memref<?x?x?x?xi8, strided<[?, ?, ?, ?], offset: ?>>, %arg5: memref<?x?x?xf32, strided<[?, ?, ?], offset: ?>>, %arg6: memref<?x?x?xf32, strided<[?, ?, ?], offset: ?>>, %arg7: index, %arg8: index)
// |m1| = ceil(|m| / 32), |p1| = ceil(|p| / 32).
// CHECK: %[[M1:.*]] = arith.ceildivsi %{{.*}}, %c32
// CHECK: %[[P1:.*]] = arith.ceildivsi %{{.*}}, %c32
// Buffers over the non-task ranks, once per call: kbar[e], ks[p, e],
// qmax[m1], sq[m1], kmax[p1], sk[p1], and the f64 accumulators of kbar.
// CHECK: %[[KBAR:.*]] = memref.alloc(%c64) {alignment = 64 : i64} : memref<?xf32>
// CHECK: %[[KS:.*]] = memref.alloc(%{{.*}}, %c64) {alignment = 64 : i64} : memref<?x?xf32>
// CHECK: %[[QMAX:.*]] = memref.alloc(%[[M1]]) {alignment = 64 : i64} : memref<?xf32>
// CHECK: %[[SQ:.*]] = memref.alloc(%[[M1]]) {alignment = 64 : i64} : memref<?xf32>
// CHECK: %[[KMAX:.*]] = memref.alloc(%[[P1]]) {alignment = 64 : i64} : memref<?xf32>
// CHECK: %[[SK:.*]] = memref.alloc(%[[P1]]) {alignment = 64 : i64} : memref<?xf32>
// CHECK: %[[ACC:.*]] = memref.alloc(%c64) {alignment = 64 : i64} : memref<?xf64>
// One task per (b, h): h = t mod |h|, b = (t / |h|) mod |b|.
// CHECK: scf.for %[[T:.*]] = %arg7 to %arg8
// CHECK-NEXT: %[[H:.*]] = arith.remui %[[T]]
// CHECK-NEXT: %[[T1:.*]] = arith.divui %[[T]]
// CHECK-NEXT: %[[B:.*]] = arith.remui %[[T1]]
// CHECK-NEXT: arith.divui %[[T1]]
// kbar[e] = sum_p k[b, h, p, e] / |p|: K is read along its rows (p outer, e
// inner) into f64 accumulators, each adding its terms in the interpreter's
// order (p = 0, 1, ...), then rounded to f32.
// CHECK: scf.for %[[E0:.*]] = %{{.*}} to %c64
// CHECK-NEXT: arith.constant 0.000000e+00 : f64
// CHECK-NEXT: memref.store %{{.*}}, %[[ACC]][%[[E0]]] : memref<?xf64>
// CHECK: scf.for %[[P:.*]] = %{{.*}} to %{{.*}} step
// CHECK: scf.for %[[E:.*]] = %{{.*}} to %c64
// CHECK-NEXT: %[[A:.*]] = memref.load %[[ACC]][%[[E]]] : memref<?xf64>
// CHECK: memref.load %arg2[%[[B]], %[[H]], %[[P]], %[[E]]]
// CHECK: arith.divf
// CHECK: %[[S:.*]] = arith.addf %[[A]]
// CHECK-NEXT: memref.store %[[S]], %[[ACC]][%[[E]]] : memref<?xf64>
// CHECK: scf.for %[[E2:.*]] = %{{.*}} to %c64
// CHECK-NEXT: memref.load %[[ACC]][%[[E2]]]
// CHECK-NEXT: arith.truncf %{{.*}} : f64 to f32
// CHECK-NEXT: memref.store %{{.*}}, %[[KBAR]][%[[E2]]] : memref<?xf32>
// ks = k - kbar.
// CHECK: memref.load %[[KBAR]]
// CHECK: arith.subf
// CHECK: memref.store %{{.*}}, %[[KS]]
// qmax[m1] = max over (m0, e) of |q[m1 * 32 + m0, e]|: the rows of the
// block (min(32, |m| - 32 m1) of them: the last block is ragged), then the
// channels, 4 at a time into 4 maxima (the order of a maximum does not
// matter).
// CHECK: scf.for %[[MB:.*]] = %{{.*}} to %[[M1]]
// CHECK: arith.constant 0xFFF0000000000000 : f64
// CHECK: %[[ROWS:.*]] = arith.minsi %c32{{.*}}, %{{.*}} : index
// CHECK: scf.for %{{.*}} = %{{.*}} to %[[ROWS]] step %{{.*}} iter_args(%{{.*}}) -> (f64)
// CHECK: scf.for %{{.*}} = %{{.*}} to %c64{{.*}} step %c4 iter_args({{.*}}) -> (f64, f64, f64, f64)
// CHECK: memref.load %arg1[%[[B]], %[[H]], %{{.*}}, %{{.*}}]
// CHECK: math.absf
// CHECK: arith.maximumf
// CHECK-NOT: scf.if
// CHECK: memref.store %{{.*}}, %[[QMAX]][%[[MB]]]
// sq = select(qmax == 0, 1, qmax / 127).
// CHECK: arith.cmpf oeq
// CHECK: arith.select
// CHECK: memref.store %{{.*}}, %[[SQ]]
// The same for K's blocks, from ks.
// CHECK: memref.load %[[KS]]
// CHECK: memref.store %{{.*}}, %[[KMAX]]
// CHECK: memref.store %{{.*}}, %[[SK]]
// qi = round(q / sq[m floordiv 32]) : i8, into the result qi.
// CHECK: arith.floordivsi %{{.*}}, %c32
// CHECK: memref.load %[[SQ]]
// CHECK: arith.divf
// CHECK: math.roundeven
// CHECK: arith.constant -1.280000e+02 : f64
// CHECK: arith.maximumf
// CHECK: arith.constant 1.270000e+02 : f64
// CHECK: arith.minimumf
// CHECK: arith.cmpf uno
// CHECK: arith.select
// CHECK: %[[QI:.*]] = arith.fptosi %{{.*}} : f64 to i8
// CHECK: memref.store %[[QI]], %arg3[%[[B]], %[[H]], %{{.*}}, %{{.*}}]
// ki from ks and sk, into the result ki.
// CHECK: memref.load %[[SK]]
// CHECK: memref.load %[[KS]]
// CHECK: arith.fptosi %{{.*}} : f64 to i8
// CHECK: memref.store %{{.*}}, %arg4[%[[B]], %[[H]]
// The block scales per token: sq_m[b, h, m] = sq[m floordiv 32].
// CHECK: arith.floordivsi %{{.*}}, %c32
// CHECK: memref.load %[[SQ]]
// CHECK: memref.store %{{.*}}, %arg5[%[[B]], %[[H]], %{{.*}}]
// CHECK: memref.load %[[SK]]
// CHECK: memref.store %{{.*}}, %arg6[%[[B]], %[[H]], %{{.*}}]
// CHECK: memref.dealloc %[[KBAR]]
// The attention kernel is lowered as any int8 cascade.
// CHECK-LABEL: func.func @int8_sage_tasks

attn.cascade @int8_sage ranks(b, h, m, p, e = 64, f = 64)
    partition(m -> m1, m0 = 32 ragged) partition(p -> p1, p0 = 32 ragged)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %kbar = attn.einsum [b, h, e] = %k[b, h, p, e] / |p| sum(p) : f32
  %ks = attn.einsum [b, h, p, e] = %k[b, h, p, e] - %kbar[b, h, e] : f32
  %qmax = attn.einsum [b, h, m1] = abs(%q[b, h, m1 * 32 + m0, e]) max(m0, e) : f32
  %sq = attn.einsum [b, h, m1] = select(%qmax[b, h, m1] == 0, 1.0, %qmax[b, h, m1] / 127.0) : f32
  %kmax = attn.einsum [b, h, p1] = abs(%ks[b, h, p1 * 32 + p0, e]) max(p0, e) : f32
  %sk = attn.einsum [b, h, p1] = select(%kmax[b, h, p1] == 0, 1.0, %kmax[b, h, p1] / 127.0) : f32
  %qi = attn.einsum [b, h, m, e] = round(%q[b, h, m, e] / %sq[b, h, m floordiv 32]) : i8
  %ki = attn.einsum [b, h, p, e] = round(%ks[b, h, p, e] / %sk[b, h, p floordiv 32]) : i8
  %dot = attn.einsum [b, h, m, p] = %qi[b, h, m, e] * %ki[b, h, p, e] sum(e) {attn.quant = #attn.quant<acc = i32>} : i32
  %qk = attn.einsum [b, h, m, p] = %dot[b, h, m, p] * %sq[b, h, m floordiv 32] * %sk[b, h, p floordiv 32] * 0.125 : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}


// -----

// Q per token, K per tensor and smoothed (test/e2e/int8-sage-coarse.mlir,
// after attn-quantize): K's scale reduces over b and h, so no rank is a task
// rank: one task computes everything, its buffers span b and h.
// CHECK-LABEL: func.func @sage_quant_tasks
// CHECK-SAME: %arg6: memref<f32, strided<[], offset: ?>>
// CHECK: memref.alloc(%{{.*}}, %{{.*}}, %{{.*}}, %c64) {alignment = 64 : i64} : memref<?x?x?x?xf32>
// CHECK: %[[KMAX:.*]] = memref.alloc() {alignment = 64 : i64} : memref<f32>
// CHECK: scf.for %[[T:.*]] = %arg8 to %arg9
// CHECK-NOT: arith.remui %[[T]]
// kmax = max over b, h, p, e (of ks = k - kbar), into the rank-0 buffer.
// CHECK: math.absf
// CHECK: arith.maximumf
// CHECK: memref.store %{{.*}}, %[[KMAX]][] : memref<f32>
// CHECK: memref.store %{{.*}}, %arg6[] : memref<f32, strided<[], offset: ?>>
// CHECK-LABEL: func.func @sage_tasks
attn.cascade @sage ranks(b, h, m, p, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32> {attn.quant = #attn.quant<to = i8, granularity = token>},
     %k: !attn.t<[b, h, p, e], f32> {attn.quant = #attn.quant<to = i8, granularity = tensor, along = "p", smooth = true>},
     %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.125 sum(e) {attn.quant = #attn.quant<acc = i32>} : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}
