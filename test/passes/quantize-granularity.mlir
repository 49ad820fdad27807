// attn-quantize: the scale granularities of #attn.quant on the operands of
// the scores (docs/quantize.md). Each scale is an absmax over the ranks the
// granularity leaves out, divided by 127; the quantized operands meet in an
// exact i32 dot product and the scales are folded into the score scale.
//   tensor   one scale:              qmax[]       = max |q| over (b, h, m, e)
//   head     one per (b, h):         qmax[b, h]   = max over (m, e)
//   token    one per query/key:      qmax[b, h, m] = max over e
//   block    one per block of tokens (quantize-int8.mlir)
//   channel  one per (b, h, e): sum_e q k = sum_e (q / s[e]) (k s[e]), so the
//            channel scales move into the other operand before it is
//            quantized and do not appear in the score scale.
// RUN: attn-opt %s --attn-quantize -split-input-file 2>/dev/null | FileCheck %s

/// Q per tensor (a rank-0 scale), K per block and smoothed.
// CHECK-LABEL: attn.cascade @tensor ranks(b, h, m, p, e = 64, f = 64) partition(p -> p1, p0 = 32 ragged)
// CHECK: %qmax = attn.einsum [] = abs(%q[b, h, m, e]) max(b, h, m, e) : f32
// CHECK: %sq = attn.einsum [] = select(%qmax[] == 0.0, 1.0, %qmax[] / 127.0) : f32
// CHECK: %qi = attn.einsum [b, h, m, e] = round(%q[b, h, m, e] / %sq[]) : i8
// CHECK: %kbar = attn.einsum [b, h, e] = %k[b, h, p, e] / |p| sum(p) : f32
// CHECK: %ks = attn.einsum [b, h, p, e] = %k[b, h, p, e] - %kbar[b, h, e] : f32
// CHECK: %kmax = attn.einsum [b, h, p1] = abs(%ks[b, h, p1 * 32 + p0, e]) max(e, p0) : f32
// CHECK: %sk = attn.einsum [b, h, p1] = select(%kmax[b, h, p1] == 0.0, 1.0, %kmax[b, h, p1] / 127.0) : f32
// CHECK: %ki = attn.einsum [b, h, p, e] = round(%ks[b, h, p, e] / %sk[b, h, p floordiv 32]) : i8
// CHECK: %dot = attn.einsum [b, h, m, p] = %qi[b, h, m, e] * %ki[b, h, p, e] sum(e) {attn.quant = #attn.quant<acc = i32>} : i32
// CHECK: %qk_smooth = attn.einsum [b, h, m] = %q[b, h, m, e] * %kbar[b, h, e] * 0.125 sum(e) : f32
// CHECK: %qk = attn.einsum [b, h, m, p] = %dot[b, h, m, p] * %sq[] * %sk[b, h, p floordiv 32] * 0.125 + %qk_smooth[b, h, m] : f32

attn.cascade @tensor ranks(b, h, m, p, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32> {attn.quant = #attn.quant<to = i8, granularity = tensor>},
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

// -----

/// Q per channel: its scales sq[b, h, e] multiply the smoothed K (km) before
/// K is quantized per block; the score scale has sk only.
// CHECK-LABEL: attn.cascade @channel ranks(b, h, m, p, e = 64, f = 64) partition(p -> p1, p0 = 32 ragged)
// CHECK: %qmax = attn.einsum [b, h, e] = abs(%q[b, h, m, e]) max(m) : f32
// CHECK: %sq = attn.einsum [b, h, e] = select(%qmax[b, h, e] == 0.0, 1.0, %qmax[b, h, e] / 127.0) : f32
// CHECK: %qi = attn.einsum [b, h, m, e] = round(%q[b, h, m, e] / %sq[b, h, e]) : i8
// CHECK: %kbar = attn.einsum [b, h, e] = %k[b, h, p, e] / |p| sum(p) : f32
// CHECK: %ks = attn.einsum [b, h, p, e] = %k[b, h, p, e] - %kbar[b, h, e] : f32
// CHECK: %km = attn.einsum [b, h, p, e] = %ks[b, h, p, e] * %sq[b, h, e] : f32
// CHECK: %kmax = attn.einsum [b, h, p1] = abs(%km[b, h, p1 * 32 + p0, e]) max(e, p0) : f32
// CHECK: %sk = attn.einsum [b, h, p1] = select(%kmax[b, h, p1] == 0.0, 1.0, %kmax[b, h, p1] / 127.0) : f32
// CHECK: %ki = attn.einsum [b, h, p, e] = round(%km[b, h, p, e] / %sk[b, h, p floordiv 32]) : i8
// CHECK: %dot = attn.einsum [b, h, m, p] = %qi[b, h, m, e] * %ki[b, h, p, e] sum(e) {attn.quant = #attn.quant<acc = i32>} : i32
// CHECK: %qk_smooth = attn.einsum [b, h, m] = %q[b, h, m, e] * %kbar[b, h, e] * 0.125 sum(e) : f32
// CHECK: %qk = attn.einsum [b, h, m, p] = %dot[b, h, m, p] * %sk[b, h, p floordiv 32] * 0.125 + %qk_smooth[b, h, m] : f32

attn.cascade @channel ranks(b, h, m, p, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32> {attn.quant = #attn.quant<to = i8, granularity = channel>},
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

// -----

/// Q per token (SageAttention's per-token variant) and K per channel: K's
/// channel scales move into Q (qm = q * sk[e]), then Q is quantized per token.
// CHECK-LABEL: attn.cascade @token_channel ranks(b, h, m, p, e = 64, f = 64)
// CHECK: %kmax = attn.einsum [b, h, e] = abs(%k[b, h, p, e]) max(p) : f32
// CHECK: %sk = attn.einsum [b, h, e] = select(%kmax[b, h, e] == 0.0, 1.0, %kmax[b, h, e] / 127.0) : f32
// CHECK: %ki = attn.einsum [b, h, p, e] = round(%k[b, h, p, e] / %sk[b, h, e]) : i8
// CHECK: %qm = attn.einsum [b, h, m, e] = %q[b, h, m, e] * %sk[b, h, e] : f32
// CHECK: %qmax = attn.einsum [b, h, m] = abs(%qm[b, h, m, e]) max(e) : f32
// CHECK: %sq = attn.einsum [b, h, m] = select(%qmax[b, h, m] == 0.0, 1.0, %qmax[b, h, m] / 127.0) : f32
// CHECK: %qi = attn.einsum [b, h, m, e] = round(%qm[b, h, m, e] / %sq[b, h, m]) : i8
// CHECK: %dot = attn.einsum [b, h, m, p] = %qi[b, h, m, e] * %ki[b, h, p, e] sum(e) {attn.quant = #attn.quant<acc = i32>} : i32
// CHECK: %qk = attn.einsum [b, h, m, p] = %dot[b, h, m, p] * %sq[b, h, m] * 0.125 : f32

attn.cascade @token_channel ranks(b, h, m, p, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32> {attn.quant = #attn.quant<to = i8, granularity = token>},
     %k: !attn.t<[b, h, p, e], f32> {attn.quant = #attn.quant<to = i8, granularity = channel>},
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

// -----

/// GQA (4 query heads per KV head), causal, per-head scales: K's scales and
/// mean are over its own ranks [b, g] and read at h floordiv 4; the mask
/// also restricts the dot product (no else value there: it is an i32).
/// The token ranks are inferred (the rank only one operand indexes: m for q,
/// p for k); smoothing names it (along = "p").
// CHECK-LABEL: attn.cascade @gqa ranks(b, h, g, m, p, e = 64, f = 64) where(h = 4 * g)
// CHECK: %qmax = attn.einsum [b, h] = abs(%q[b, h, m, e]) max(m, e) : f32
// CHECK: %sq = attn.einsum [b, h] = select(%qmax[b, h] == 0.0, 1.0, %qmax[b, h] / 127.0) : f32
// CHECK: %qi = attn.einsum [b, h, m, e] = round(%q[b, h, m, e] / %sq[b, h]) : i8
// CHECK: %kbar = attn.einsum [b, g, e] = %k[b, g, p, e] / |p| sum(p) : f32
// CHECK: %ks = attn.einsum [b, g, p, e] = %k[b, g, p, e] - %kbar[b, g, e] : f32
// CHECK: %kmax = attn.einsum [b, g] = abs(%ks[b, g, p, e]) max(p, e) : f32
// CHECK: %sk = attn.einsum [b, g] = select(%kmax[b, g] == 0.0, 1.0, %kmax[b, g] / 127.0) : f32
// CHECK: %ki = attn.einsum [b, g, p, e] = round(%ks[b, g, p, e] / %sk[b, g]) : i8
// CHECK: %dot = attn.einsum [b, h, m, p] = %qi[b, h, m, e] * %ki[b, h floordiv 4, p, e] sum(e) if (p <= m) {attn.quant = #attn.quant<acc = i32>} : i32
// CHECK: %qk_smooth = attn.einsum [b, h, m] = %q[b, h, m, e] * %kbar[b, h floordiv 4, e] * 0.125 sum(e) : f32
// CHECK: %qk = attn.einsum [b, h, m, p] = %dot[b, h, m, p] * %sq[b, h] * %sk[b, h floordiv 4] * 0.125 + %qk_smooth[b, h, m] if (p <= m) else -inf : f32

attn.cascade @gqa ranks(b, h, g, m, p, e = 64, f = 64) where(h = 4 * g)
    (%q: !attn.t<[b, h, m, e], f32> {attn.quant = #attn.quant<to = i8, granularity = head>},
     %k: !attn.t<[b, g, p, e], f32> {attn.quant = #attn.quant<to = i8, granularity = head, along = "p", smooth = true>},
     %v: !attn.t<[b, g, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h floordiv 4, p, e] * 0.125 sum(e) if (p <= m) else -inf : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) if (%gm[b, h, m] > -inf) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h floordiv 4, p, f] / %sd[b, h, m] sum(p) if (%sd[b, h, m] > 0) : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}
