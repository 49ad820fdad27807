// attn-quantize on SageAttention's INT8 scores (Zhang et al. 2025). The plain
// softmax cascade of examples/mha.mlir carries #attn.quant annotations on Q
// and K: quantize on the fly to i8 (`to = i8`), per-block scales (32 query
// tokens, 32 key tokens), K smoothed (its mean over the keys subtracted).
// The pass writes out what examples/int8-sage.mlir writes by hand:
//   kbar = mean_p K,  ks = K - kbar                         (smoothing)
//   qmax = max |Q| over a block (m -> m1, m0 = 32), sq = qmax / 127 (1 if 0)
//   qi = round(Q / sq) : i8,  ki = round(ks / sk) : i8
//   dot = sum_e qi * ki : i32                               (exact, acc = i32)
//   qk  = dot * sq * sk * 0.125 + qk_smooth                 (scales folded)
// and one term more than the hand-written form: qk_smooth = sum_e Q kbar
// * 0.125 adds back what smoothing subtracted (one value per query row), so
// the LSE is that of the unquantized scores, not only O. Everything after
// the scores is untouched; PV stays in f32.
// RUN: attn-opt %s --attn-quantize 2>&1 | FileCheck %s
// RUN: attn-opt %s --attn-quantize | attn-opt --attn-analyze 2>&1 | FileCheck %s --check-prefix=ANALYZE

// CHECK: remark: quantized 'qk' (q: i8 per block (32 along m); k: i8 per block (32 along p), smoothed): dot product in i32, scales folded into 'qk = dot[b, h, m, p] * sq[b, h, m floordiv 32] * sk[b, h, p floordiv 32] * 0.125 + qk_smooth[b, h, m]'
// CHECK-LABEL: attn.cascade @sage ranks(b, h, m, p, e = 64, f = 64) partition(m -> m1, m0 = 32 ragged) partition(p -> p1, p0 = 32 ragged)
// The annotations that asked for the rewrite are gone; the arguments stay f32.
// CHECK-NEXT: (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>)
// CHECK: %qmax = attn.einsum [b, h, m1] = abs(%q[b, h, m1 * 32 + m0, e]) max(e, m0) : f32
// CHECK-NEXT: %sq = attn.einsum [b, h, m1] = select(%qmax[b, h, m1] == 0.0, 1.0, %qmax[b, h, m1] / 127.0) : f32
// CHECK-NEXT: %qi = attn.einsum [b, h, m, e] = round(%q[b, h, m, e] / %sq[b, h, m floordiv 32]) : i8
// CHECK-NEXT: %kbar = attn.einsum [b, h, e] = %k[b, h, p, e] / |p| sum(p) : f32
// CHECK-NEXT: %ks = attn.einsum [b, h, p, e] = %k[b, h, p, e] - %kbar[b, h, e] : f32
// CHECK-NEXT: %kmax = attn.einsum [b, h, p1] = abs(%ks[b, h, p1 * 32 + p0, e]) max(e, p0) : f32
// CHECK-NEXT: %sk = attn.einsum [b, h, p1] = select(%kmax[b, h, p1] == 0.0, 1.0, %kmax[b, h, p1] / 127.0) : f32
// CHECK-NEXT: %ki = attn.einsum [b, h, p, e] = round(%ks[b, h, p, e] / %sk[b, h, p floordiv 32]) : i8
// CHECK-NEXT: %dot = attn.einsum [b, h, m, p] = %qi[b, h, m, e] * %ki[b, h, p, e] sum(e) {attn.quant = #attn.quant<acc = i32>} : i32
// CHECK-NEXT: %qk_smooth = attn.einsum [b, h, m] = %q[b, h, m, e] * %kbar[b, h, e] * 0.125 sum(e) : f32
// CHECK-NEXT: %qk = attn.einsum [b, h, m, p] = %dot[b, h, m, p] * %sq[b, h, m floordiv 32] * %sk[b, h, p floordiv 32] * 0.125 + %qk_smooth[b, h, m] : f32
// CHECK-NEXT: %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
// CHECK-NEXT: %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
// CHECK-NEXT: %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
// CHECK-NEXT: %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : f32

// Like examples/int8-sage.mlir, the derived form is 4-pass over p (the K mean
// and the block absmax are full reductions over p; docs/status.md).
// ANALYZE: passes(p) = 4
attn.cascade @sage ranks(b, h, m, p, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32> {attn.quant = #attn.quant<to = i8, granularity = block, block_size = 32, along = "m">},
     %k: !attn.t<[b, h, p, e], f32> {attn.quant = #attn.quant<to = i8, granularity = block, block_size = 32, along = "p", smooth = true>},
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
