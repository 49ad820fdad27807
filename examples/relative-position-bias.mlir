// T5 relative position bias (Shaw et al. 2018; bucketed as in T5, Raffel et
// al. 2020): a learned scalar per head and distance bucket is added to the
// scores, rel_bias[h, bucket(p - m)]. Bidirectional T5 bucketing with 32
// buckets and max_distance 128: 16 buckets per direction (keys after the
// query use buckets 16..31); distances n = |p - m| below 8 get a bucket of
// their own, larger ones share log-spaced buckets up to 128 and beyond:
//   bucket = 16 * (p > m) + (n < 8 ? n : min(8 + floor(log(n / 8) / log(16) * 8), 15))
// written with log2 (log(x) / log(16) * 8 = 2 * log2(x)), which is exact at
// the bucket edges n = 16, 32, 64 (a quotient of two rounded logarithms, as
// in a float32 implementation, need not be).
// The clipping is not affine, so the bucket is an integer Einsum and the bias
// a gather through it. T5 itself does not scale QK (it folds 1/sqrt(d) into
// the initialisation); the 1/8 is kept here like in the other examples.
attn.cascade @relative_position_bias ranks(b, h, m, p, r = 32, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>,
     %rel_bias: !attn.t<[h, r], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %bucket = attn.einsum [m, p] = floor(select(p > m, 16.0, 0.0) + select(max(p - m, m - p) < 8, max(p - m, m - p), min(8.0 + floor(2.0 * log2(max(p - m, m - p) / 8.0)), 15.0))) : i32
  %s = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.125 sum(e) : f32
  %qk = attn.einsum [b, h, m, p] = %s[b, h, m, p] + %rel_bias[h, %bucket[m, p]] : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}
