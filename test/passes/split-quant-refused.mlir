// What the lowering of quantization on the fly refuses (docs/quantize.md,
// "Lowering on the fly quantization"): a located error, never a silently
// different kernel. attn-split-quant refuses a cascade result computed by
// the prologue; attn-lower-cpu refuses prologues that gather, FP8 values
// (no FP8 CPU path) and interfaces over a partition rank (a prologue
// written by hand; attn-split-quant writes block scales out per token).
// A scale over the whole tensor (reducing over b and h) is not refused: the
// prologue then runs as one task (test/e2e/int8-sage-coarse.mlir).
// RUN: attn-opt %s --attn-quantize --attn-split-quant --attn-derive-online --attn-lower-cpu -split-input-file -verify-diagnostics

/// The int8 K as a result of the cascade: the prologue computes it.
attn.cascade @yields_ki ranks(b, h, m, p, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>, ki_out: !attn.t<[b, h, p, e], i8>) {
  %sq = attn.einsum [b, h] = abs(%q[b, h, m, e]) / 127.0 max(m, e) : f32
  %sk = attn.einsum [b, h] = abs(%k[b, h, p, e]) / 127.0 max(p, e) : f32
  %qi = attn.einsum [b, h, m, e] = round(%q[b, h, m, e] / %sq[b, h]) : i8
  // expected-error@+1 {{attn-split-quant: the result 'ki' is computed by the quantization prologue; not supported}}
  %ki = attn.einsum [b, h, p, e] = round(%k[b, h, p, e] / %sk[b, h]) : i8
  %dot = attn.einsum [b, h, m, p] = %qi[b, h, m, e] * %ki[b, h, p, e] sum(e) {attn.quant = #attn.quant<acc = i32>} : i32
  %qk = attn.einsum [b, h, m, p] = %dot[b, h, m, p] * %sq[b, h] * %sk[b, h] * 0.125 : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : f32
  attn.yield %o, %ki : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, p, e], i8>
}

// -----

/// K read through a block table (paged): the prologue would gather.
// expected-remark@+2 {{split the quantization out of 'paged': 'paged_quant' (q, k, idx -> qi, ki, sq, sk) runs first; 'paged' reads its results}}
// expected-remark@+1 {{derived the 1-pass form over p}}
attn.cascade @paged ranks(b, h, m, p, n, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, n, e], f32>, %v: !attn.t<[b, h, p, f], f32>, %idx: !attn.t<[b, p], i32>)
    -> (o: !attn.t<[b, h, m, f], f32>) {
  %sq = attn.einsum [b, h] = abs(%q[b, h, m, e]) / 127.0 max(m, e) : f32
  // expected-error@+1 {{attn-lower-cpu: 'kg' gathers; a quantization prologue does not}}
  %kg = attn.einsum [b, h, p, e] = %k[b, h, %idx[b, p], e] : f32
  %sk = attn.einsum [b, h] = abs(%kg[b, h, p, e]) / 127.0 max(p, e) : f32
  %qi = attn.einsum [b, h, m, e] = round(%q[b, h, m, e] / %sq[b, h]) : i8
  %ki = attn.einsum [b, h, p, e] = round(%kg[b, h, p, e] / %sk[b, h]) : i8
  %dot = attn.einsum [b, h, m, p] = %qi[b, h, m, e] * %ki[b, h, p, e] sum(e) {attn.quant = #attn.quant<acc = i32>} : i32
  %qk = attn.einsum [b, h, m, p] = %dot[b, h, m, p] * %sq[b, h] * %sk[b, h] * 0.125 : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}

// -----

/// FP8 e4m3 on the fly: attn-quantize and attn-split-quant write it, the CPU
/// back end has no FP8 path.
// expected-remark@+3 {{split the quantization out of 'fp8': 'fp8_quant' (q, k -> q8, k8, sq, sk_p) runs first; 'fp8' reads its results}}
// expected-remark@+2 {{derived the 1-pass form over p}}
// expected-error@+1 {{attn-lower-cpu: FP8 quantization is not lowered on the CPU}}
attn.cascade @fp8 ranks(b, h, m, p, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32> {attn.quant = #attn.quant<to = f8E4M3FN, granularity = token>},
     %k: !attn.t<[b, h, p, e], f32> {attn.quant = #attn.quant<to = f8E4M3FN, granularity = block, block_size = 64, along = "p">},
     %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>) {
  // expected-remark@+1 {{quantized 'qk' (q: f8E4M3FN per token; k: f8E4M3FN per block (64 along p)): dot product in f32}}
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.125 sum(e) {attn.quant = #attn.quant<acc = f32>} : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}

// -----

/// A prologue written by hand whose result is over the partition rank m1.
// expected-error@+1 {{attn-lower-cpu: the quantization prologue 'block_scales_by_hand' has a tensor over the partition rank m1; not supported}}
attn.cascade @block_scales_by_hand ranks(b, h, m, e = 64) partition(m -> m1, m0 = 32 ragged)
    (%q: !attn.t<[b, h, m, e], f32>)
    -> (qi: !attn.t<[b, h, m, e], i8>, sq: !attn.t<[b, h, m1], f32>) attributes {attn.prologue = @elsewhere} {
  %qmax = attn.einsum [b, h, m1] = abs(%q[b, h, m1 * 32 + m0, e]) max(m0, e) : f32
  %sq = attn.einsum [b, h, m1] = select(%qmax[b, h, m1] == 0, 1.0, %qmax[b, h, m1] / 127.0) : f32
  %qi = attn.einsum [b, h, m, e] = round(%q[b, h, m, e] / %sq[b, h, m floordiv 32]) : i8
  attn.yield %qi, %sq : !attn.t<[b, h, m, e], i8>, !attn.t<[b, h, m1], f32>
}
