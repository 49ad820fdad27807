// RUN: attn-opt %s | attn-opt | FileCheck %s
// RUN: attn-opt %s -mlir-print-op-generic | attn-opt | FileCheck %s
// RUN: attn-opt %s -mlir-print-op-generic | FileCheck %s --check-prefix=GENERIC

// Every syntax feature of the attn dialect prints back as it was written,
// directly and through the generic form: partitions (ragged or not), size
// relations, dynamic sizes (`= ?`), every element type, annotations on
// arguments and Einsums, gathers, rank sizes, iterative Einsums, topk, conditions
// with and/or/not and '<>', else and init values, casts, select and every
// function. Implicit reductions print as an explicit sum(...).

attn.cascade @all ranks(b, g, h, m, p = 1000, l = 16, e = 64, f = 64, r, x = ?)
    partition(p -> p1, p0 = 64 ragged) partition(m -> m1, m0 = 32) where(h = 4 * g)
    (%q: !attn.t<[b, h, m, e], bf16>,
     %k: !attn.t<[b, g, p, e], i8> {attn.quant = #attn.quant<storage = i8, granularity = block, block_size = 64, along = "p", smooth = true>},
     %v: !attn.t<[b, g, p, f], f8E4M3FN> {attn.quant = #attn.quant<storage = f8E4M3FN, granularity = channel>},
     %idx: !attn.t<[m, l], i32> {attn.sparse = #attn.sparse<block_indices>},
     %seg: !attn.t<[m], i64> {attn.sparse = #attn.sparse<segment_ids>},
     %cu: !attn.t<[b], i32> {attn.sparse = #attn.sparse<cu_seqlens>},
     %u: !attn.t<[m, r], f32>, %w: !attn.t<[p, r], f32>, %mask: !attn.t<[m, p], i1>,
     %half: !attn.t<[m], f16>, %tiny: !attn.t<[m], i4>, %e5: !attn.t<[m], f8E5M2>)
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>, top: !attn.t<[b, h, m, p], f32>, sel: !attn.t<[m, l, e], bf16>) {
  %bias = attn.einsum [m, p] = %u[m, r] * %w[p, r] sum(r) {attn.lowrank = #attn.lowrank<bias, "r">, attn.quant = #attn.quant<acc = f32>} : f32
  %qk = attn.einsum [b, h, m, p] = cast(%q[b, h, m, e] : f32) * cast(%k[b, h floordiv 4, p, e] : f32) * 0.125 + %bias[m, p] - (p - m) sum(e) if (p <= m and not(%mask[m, p]) or %seg[m] <> 0) else -inf {attn.sparse = #attn.sparse<causal>} : f32
  %top = attn.einsum [b, h, m, p] = %qk[b, h, m, p] topk(8, p) {attn.sparse = #attn.sparse<topk>} : f32
  %gm = attn.einsum [b, h, m] = %top[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = select(%gm[b, h, m] == -inf, 0.0, exp2(%top[b, h, m, p] - %gm[b, h, m])) if (p < |p| - 1 or m >= 0 and p > 3 or p == m) : f32
  %rd = attn.einsum [b, h, m, p1 + 1] = %rd[b, h, m, p1] + %sn[b, h, m, p1 * 64 + p0] sum(p0) init(0.0) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * cast(%v[b, h floordiv 4, p, f] : f32) / %rd[b, h, m, |p1|] sum(p) : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%rd[b, h, m, |p1|]) + min(pow(2.0, 3.0), max(abs(-1.5), sqrt(tanh(sigmoid(log2(floor(round(1.0e+300)))))))) : f32
  %sel = attn.einsum [m, l, e] = cast(%k[0, 0, %idx[m, l] * 64 + e mod 64, e] : bf16) : bf16
  %neg = attn.einsum [m] = -%seg[m] + m ceildiv 2 - m mod 3 + (m - 1) floordiv 2 - |m| * 2 : i64
  %tm = attn.einsum [m1, m0] = m1 * 32 + m0 min(b) if (b > 0) else nan : f32
  %phi = attn.einsum [m, r] = exp(%u[m, r]) {attn.lowrank = #attn.lowrank<feature_map, "r">} : f32
  %imp = attn.einsum [m] = %phi[m, r] : f32
  %0 = attn.einsum [m] = cast(%half[m] : f64) + cast(%tiny[m] : f64) * cast(%e5[m] : f64) : f64
  %win = attn.einsum [m, p] = %w[p, 0] if (p <= m and m - p < 128) {attn.sparse = #attn.sparse<window>} : f16
  attn.yield %o, %lse, %top, %sel : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>, !attn.t<[b, h, m, p], f32>, !attn.t<[m, l, e], bf16>
}

// CHECK-LABEL: attn.cascade @all ranks(b, g, h, m, p = 1000, l = 16, e = 64, f = 64, r, x) partition(p -> p1, p0 = 64 ragged) partition(m -> m1, m0 = 32) where(h = 4 * g)
// CHECK-NEXT: (%q: !attn.t<[b, h, m, e], bf16>, %k: !attn.t<[b, g, p, e], i8> {attn.quant = #attn.quant<storage = i8, granularity = block, block_size = 64, along = "p", smooth = true>}, %v: !attn.t<[b, g, p, f], f8E4M3FN> {attn.quant = #attn.quant<storage = f8E4M3FN, granularity = channel>}, %idx: !attn.t<[m, l], i32> {attn.sparse = #attn.sparse<block_indices>}, %seg: !attn.t<[m], i64> {attn.sparse = #attn.sparse<segment_ids>}, %cu: !attn.t<[b], i32> {attn.sparse = #attn.sparse<cu_seqlens>}, %u: !attn.t<[m, r], f32>, %w: !attn.t<[p, r], f32>, %mask: !attn.t<[m, p], i1>, %half: !attn.t<[m], f16>, %tiny: !attn.t<[m], i4>, %e5: !attn.t<[m], f8E5M2>)
// CHECK-NEXT: -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>, top: !attn.t<[b, h, m, p], f32>, sel: !attn.t<[m, l, e], bf16>) {
// CHECK-NEXT: %bias = attn.einsum [m, p] = %u[m, r] * %w[p, r] sum(r) {attn.lowrank = #attn.lowrank<bias, "r">, attn.quant = #attn.quant<acc = f32>} : f32
// CHECK-NEXT: %qk = attn.einsum [b, h, m, p] = cast(%q[b, h, m, e] : f32) * cast(%k[b, h floordiv 4, p, e] : f32) * 0.125 + %bias[m, p] - (p - m) sum(e) if (p <= m and not(%mask[m, p]) or %seg[m] <> 0) else -inf {attn.sparse = #attn.sparse<causal>} : f32
// CHECK-NEXT: %top = attn.einsum [b, h, m, p] = %qk[b, h, m, p] topk(8, p) {attn.sparse = #attn.sparse<topk>} : f32
// CHECK-NEXT: %gm = attn.einsum [b, h, m] = %top[b, h, m, p] max(p) : f32
// CHECK-NEXT: %sn = attn.einsum [b, h, m, p] = select(%gm[b, h, m] == -inf, 0.0, exp2(%top[b, h, m, p] - %gm[b, h, m])) if (p < |p| - 1 or m >= 0 and p > 3 or p == m) : f32
// CHECK-NEXT: %rd = attn.einsum [b, h, m, p1 + 1] = %rd[b, h, m, p1] + %sn[b, h, m, p1 * 64 + p0] sum(p0) init(0.0) : f32
// CHECK-NEXT: %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * cast(%v[b, h floordiv 4, p, f] : f32) / %rd[b, h, m, |p1|] sum(p) : f32
// CHECK-NEXT: %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%rd[b, h, m, |p1|]) + min(pow(2.0, 3.0), max(abs(-1.5), sqrt(tanh(sigmoid(log2(floor(round(1.0e+300)))))))) : f32
// CHECK-NEXT: %sel = attn.einsum [m, l, e] = cast(%k[0, 0, %idx[m, l] * 64 + e mod 64, e] : bf16) : bf16
// CHECK-NEXT: %neg = attn.einsum [m] = -%seg[m] + m ceildiv 2 - m mod 3 + (m - 1) floordiv 2 - |m| * 2 : i64
// CHECK-NEXT: %tm = attn.einsum [m1, m0] = m1 * 32 + m0 min(b) if (b > 0) else nan : f32
// CHECK-NEXT: %phi = attn.einsum [m, r] = exp(%u[m, r]) {attn.lowrank = #attn.lowrank<feature_map, "r">} : f32
// CHECK-NEXT: %imp = attn.einsum [m] = %phi[m, r] sum(r) : f32
// CHECK-NEXT: %0 = attn.einsum [m] = cast(%half[m] : f64) + cast(%tiny[m] : f64) * cast(%e5[m] : f64) : f64
// CHECK-NEXT: %win = attn.einsum [m, p] = %w[p, 0] if (p <= m and m - p < 128) {attn.sparse = #attn.sparse<window>} : f16
// CHECK-NEXT: attn.yield %o, %lse, %top, %sel : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>, !attn.t<[b, h, m, p], f32>, !attn.t<[m, l, e], bf16>

// GENERIC-LABEL: "attn.cascade"()
// GENERIC-SAME: partitions = [#attn.partition<"p", "p1", "p0", 64, ragged = true>, #attn.partition<"m", "m1", "m0", 32>]
// GENERIC-SAME: ranks = [#attn.rank<"b">, #attn.rank<"g">, #attn.rank<"h">, #attn.rank<"m">, #attn.rank<"p" = 1000>, #attn.rank<"l" = 16>, #attn.rank<"e" = 64>, #attn.rank<"f" = 64>, #attn.rank<"r">, #attn.rank<"x">]
// GENERIC-SAME: relations = [#attn.relation<"h" = 4 * "g">]
// GENERIC: cond = #attn.expr<(le(d3, d2) and not(in3[d2, d3]) or ne(in4[d2], 0))>
// GENERIC: expr = #attn.expr<(cast(in0[d0, d1, d2, d4] : f32) * cast(in1[d0, d1 floordiv 4, d3, d4] : f32) * 0.125 + in2[d2, d3] - (d3 - d2))>
// GENERIC: fill = 0xFFF0000000000000 : f64
// GENERIC: populate = #attn.topk<8, "p">
// GENERIC: cond = #attn.expr<(lt(d3, |d3| - 1) or ge(d2, 0) and gt(d3, 3) or eq(d3, d2))>
// GENERIC: expr = #attn.expr<(select(eq(in0[d0, d1, d2], -inf), 0.0, exp2(in1[d0, d1, d2, d3] - in0[d0, d1, d2])))>
// GENERIC: expr = #attn.expr<(self[d0, d1, d2, d3] + in0[d0, d1, d2, d3 * 64 + d4])>
// GENERIC: init = 0.000000e+00 : f64
// GENERIC: expr = #attn.expr<(cast(in0[0, 0, in1[d0, d1] * 64 + d2 mod 64, d2] : bf16))>
// GENERIC: expr = #attn.expr<(-in0[d0] + d0 ceildiv 2 - d0 mod 3 + (d0 - 1) floordiv 2 - |d0| * 2)>

// A cascade with no ranks, arguments or results is well-formed (and useless).
attn.cascade @empty ranks() () -> () {
  attn.yield
}

// CHECK-LABEL: attn.cascade @empty ranks()
// CHECK-NEXT: ()
// CHECK-NEXT: -> () {
// CHECK-NEXT: attn.yield
// CHECK-NEXT: }

// Division and remainder by a rank size are not affine: they stay expression
// nodes (an AffineExpr divides by constants only).
attn.cascade @semi ranks(m, p) (%x: !attn.t<[m, p], i32>) -> (o: !attn.t<[m, p], i32>) {
  %o = attn.einsum [m, p] = %x[m, p] * (m floordiv |p|) + p mod |m| + m * p : i32
  attn.yield %o : !attn.t<[m, p], i32>
}

// CHECK-LABEL: attn.cascade @semi ranks(m, p)
// CHECK: %o = attn.einsum [m, p] = %x[m, p] * (m floordiv |p|) + p mod |m| + m * p : i32
