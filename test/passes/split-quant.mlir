// attn-split-quant: a cascade quantized on the fly (what attn-quantize
// writes, or examples/int8-sage.mlir by hand) becomes two cascades, the two
// kernels SageAttention runs:
//   @<name>_quant (attribute attn.prologue): the quantization prologue, every
//     Einsum the int8 dot product's operands come from (the mean of K, the
//     absmax scales, the int8 Q and K) and the smoothing term; its results
//     are what the attention reads;
//   @<name>: the attention cascade, with those results as arguments (int8 Q
//     and K with their scales: the interface that attn-derive-online and
//     attn-lower-cpu already handle, test/e2e/int8-qk.mlir).
// The Einsums are kept as they are: running the prologue and then @<name>
// computes what the quantized cascade computes (test/e2e checks it).
// RUN: attn-opt %s --attn-quantize --attn-split-quant -split-input-file 2>/dev/null | FileCheck %s
// RUN: attn-opt %s --attn-quantize --attn-split-quant -split-input-file -o /dev/null 2>&1 | FileCheck %s --check-prefix=REMARK

// examples/int8-sage.mlir: per-block scales (32 tokens), K smoothed, no
// smoothing term (the hand-written form leaves it out).
// REMARK: remark: split the quantization out of 'int8_sage': 'int8_sage_quant' (q, k -> qi, ki, sq_m, sk_p) runs first; 'int8_sage' reads its results
// The prologue reads Q and K only, keeps both partitions, and yields the
// int8 tensors and the block scales written out per token (sq_m, sk_p: no
// partition rank in either interface).
// CHECK-LABEL: attn.cascade @int8_sage_quant ranks(b, h, m, p, e = 64, f = 64) partition(m -> m1, m0 = 32 ragged) partition(p -> p1, p0 = 32 ragged)
// CHECK-NEXT: (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>)
// CHECK-NEXT: -> (qi: !attn.t<[b, h, m, e], i8>, ki: !attn.t<[b, h, p, e], i8>, sq_m: !attn.t<[b, h, m], f32>, sk_p: !attn.t<[b, h, p], f32>) attributes {attn.prologue = @int8_sage} {
// CHECK-NEXT: %kbar = attn.einsum [b, h, e] = %k[b, h, p, e] / |p| sum(p) : f32
// CHECK-NEXT: %ks = attn.einsum [b, h, p, e] = %k[b, h, p, e] - %kbar[b, h, e] : f32
// CHECK-NEXT: %qmax = attn.einsum [b, h, m1] = abs(%q[b, h, m1 * 32 + m0, e]) max(e, m0) : f32
// CHECK-NEXT: %sq = attn.einsum [b, h, m1] = select(%qmax[b, h, m1] == 0, 1.0, %qmax[b, h, m1] / 127.0) : f32
// CHECK-NEXT: %kmax = attn.einsum [b, h, p1] = abs(%ks[b, h, p1 * 32 + p0, e]) max(e, p0) : f32
// CHECK-NEXT: %sk = attn.einsum [b, h, p1] = select(%kmax[b, h, p1] == 0, 1.0, %kmax[b, h, p1] / 127.0) : f32
// CHECK-NEXT: %qi = attn.einsum [b, h, m, e] = round(%q[b, h, m, e] / %sq[b, h, m floordiv 32]) : i8
// CHECK-NEXT: %ki = attn.einsum [b, h, p, e] = round(%ks[b, h, p, e] / %sk[b, h, p floordiv 32]) : i8
// CHECK-NEXT: %sq_m = attn.einsum [b, h, m] = %sq[b, h, m floordiv 32] : f32
// CHECK-NEXT: %sk_p = attn.einsum [b, h, p] = %sk[b, h, p floordiv 32] : f32
// CHECK-NEXT: attn.yield %qi, %ki, %sq_m, %sk_p
// The attention cascade: the dot product's operands first, then the
// arguments it still reads (V), then the other interface values.
// CHECK-LABEL: attn.cascade @int8_sage ranks(b, h, m, p, e = 64, f = 64)
// CHECK-NEXT: (%qi: !attn.t<[b, h, m, e], i8>, %ki: !attn.t<[b, h, p, e], i8>, %v: !attn.t<[b, h, p, f], f32>, %sq_m: !attn.t<[b, h, m], f32>, %sk_p: !attn.t<[b, h, p], f32>)
// CHECK-NEXT: -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
// CHECK-NEXT: %dot = attn.einsum [b, h, m, p] = %qi[b, h, m, e] * %ki[b, h, p, e] sum(e) {attn.quant = #attn.quant<acc = i32>} : i32
// CHECK-NEXT: %qk = attn.einsum [b, h, m, p] = %dot[b, h, m, p] * %sq_m[b, h, m] * %sk_p[b, h, p] * 0.125 : f32
// CHECK-NEXT: %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
// CHECK: attn.yield %o, %lse

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

// From annotations (attn-quantize first): GQA with 4 query heads per KV
// head, causal, Q per token, K per KV head and smoothed. The smoothing term
// qk_smooth (read by the scores, computed from Q and K's mean) is in the
// prologue; the int8 K and its scale stay per KV head (ranks b, g: declared
// ranks, passed as they are), and the kernel reads them at h floordiv 4.
// The mask stays on the dot product and the scores.
// REMARK: remark: quantized 'qk'
// REMARK: remark: split the quantization out of 'causal_gqa': 'causal_gqa_quant' (q, k -> qi, ki, sq, sk, qk_smooth) runs first; 'causal_gqa' reads its results
// CHECK-LABEL: attn.cascade @causal_gqa_quant ranks(b, h, g, m, p, e = 64, f = 64) where(h = 4 * g)
// CHECK-NEXT: (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, g, p, e], f32>)
// CHECK-NEXT: -> (qi: !attn.t<[b, h, m, e], i8>, ki: !attn.t<[b, g, p, e], i8>, sq: !attn.t<[b, h, m], f32>, sk: !attn.t<[b, g], f32>, qk_smooth: !attn.t<[b, h, m], f32>) attributes {attn.prologue = @causal_gqa} {
// CHECK: %kbar = attn.einsum [b, g, e] = %k[b, g, p, e] / |p| sum(p) : f32
// CHECK: %ki = attn.einsum [b, g, p, e] = round(%ks[b, g, p, e] / %sk[b, g]) : i8
// CHECK-NEXT: %qk_smooth = attn.einsum [b, h, m] = %q[b, h, m, e] * %kbar[b, h floordiv 4, e] * 0.125 sum(e) : f32
// CHECK-NEXT: attn.yield %qi, %ki, %sq, %sk, %qk_smooth
// CHECK-LABEL: attn.cascade @causal_gqa ranks(b, h, g, m, p, e = 64, f = 64) where(h = 4 * g)
// CHECK-NEXT: (%qi: !attn.t<[b, h, m, e], i8>, %ki: !attn.t<[b, g, p, e], i8>, %v: !attn.t<[b, g, p, f], f32>, %sq: !attn.t<[b, h, m], f32>, %sk: !attn.t<[b, g], f32>, %qk_smooth: !attn.t<[b, h, m], f32>)
// CHECK-NEXT: -> (o: !attn.t<[b, h, m, f], f32>) {
// CHECK-NEXT: %dot = attn.einsum [b, h, m, p] = %qi[b, h, m, e] * %ki[b, h floordiv 4, p, e] sum(e) if (p <= m) {attn.quant = #attn.quant<acc = i32>} : i32
// CHECK-NEXT: %qk = attn.einsum [b, h, m, p] = %dot[b, h, m, p] * %sq[b, h, m] * %sk[b, h floordiv 4] * 0.125 + %qk_smooth[b, h, m] if (p <= m) else -inf {attn.sparse = #attn.sparse<causal>} : f32

attn.cascade @causal_gqa ranks(b, h, g, m, p, e = 64, f = 64) where(h = 4 * g)
    (%q: !attn.t<[b, h, m, e], f32> {attn.quant = #attn.quant<to = i8, granularity = token>},
     %k: !attn.t<[b, g, p, e], f32> {attn.quant = #attn.quant<to = i8, granularity = head, along = "p", smooth = true>},
     %v: !attn.t<[b, g, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h floordiv 4, p, e] * 0.125 sum(e) if (p <= m) else -inf {attn.quant = #attn.quant<acc = i32>, attn.sparse = #attn.sparse<causal>} : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) if (%gm[b, h, m] > -inf) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h floordiv 4, p, f] / %sd[b, h, m] sum(p) if (%sd[b, h, m] > 0) : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}


// -----

// Q and K stored as int8 (arguments): nothing to split, a remark says so.
// REMARK: remark: attn-split-quant: the quantized contraction reads only arguments (stored quantized values); nothing to split
// CHECK-LABEL: attn.cascade @int8_stored
// CHECK-NOT: attn.prologue
// CHECK: attn.yield

attn.cascade @int8_stored ranks(b, h, m, p, e = 64, f = 64)
    (%qi: !attn.t<[b, h, m, e], i8>, %ki: !attn.t<[b, h, p, e], i8>, %v: !attn.t<[b, h, p, f], f32>, %s: !attn.t<[b, h], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>) {
  %dot = attn.einsum [b, h, m, p] = %qi[b, h, m, e] * %ki[b, h, p, e] sum(e) {attn.quant = #attn.quant<acc = i32>} : i32
  %qk = attn.einsum [b, h, m, p] = %dot[b, h, m, p] * %s[b, h] : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}


// -----

// No quantized contraction: unchanged, no remark.
// REMARK-NOT: remark
// CHECK-LABEL: attn.cascade @mha
// CHECK-NEXT: (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>)
// CHECK-NOT: attn.prologue
// CHECK: attn.yield %o

attn.cascade @mha ranks(b, h, m, p, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.125 sum(e) : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}
