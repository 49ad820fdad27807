// SageAttention-style INT8 QK^T (Zhang et al. 2025), written out explicitly:
//  1. smooth K: subtract its mean over tokens (softmax is invariant to it);
//  2. per-block scales: one per 32 query tokens (m -> m1, m0) and one per 32
//     key tokens (p -> p1, p0), s = max|x| / 127 (1 for an all-zero block);
//  3. int8 values round(x / s) (to nearest even), an exact int32 dot product;
//  4. dequantize into the scores, then a float softmax and PV.
// attn-quantize will derive this form from quantization annotations.
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
