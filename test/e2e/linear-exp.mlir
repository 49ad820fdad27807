// Linear attention with a generic feature map given as a map action,
// phi(x) = exp(x / 2), a constant inside the scores, a static head count
// (looped inside a task), K and V stored [b, p, h, e] (strided reads) and
// two results: the normalised output and the denominator itself.
// attn-reassociate (run by attnc for feature maps) rewrites it; the tests
// compile it non-causal and causal (the `p <= m` variant below).
attn.cascade @linear_exp ranks(b, h = 3, m, p, e = 24, f = 40)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, p, h, e], f32>, %v: !attn.t<[b, p, h, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>, z: !attn.t<[b, h, m], f32>) {
  %fq = attn.einsum [b, h, m, e] = exp(%q[b, h, m, e] * 0.5) {attn.lowrank = #attn.lowrank<feature_map, "e">} : f32
  %fk = attn.einsum [b, h, p, e] = exp(%k[b, p, h, e] * 0.5) {attn.lowrank = #attn.lowrank<feature_map, "e">} : f32
  %a = attn.einsum [b, h, m, p] = %fq[b, h, m, e] * %fk[b, h, p, e] * 0.25 sum(e) : f32
  %num = attn.einsum [b, h, m, f] = %a[b, h, m, p] * %v[b, p, h, f] sum(p) : f32
  %den = attn.einsum [b, h, m] = %a[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %num[b, h, m, f] / %den[b, h, m] : f32
  %z = attn.einsum [b, h, m] = log(%den[b, h, m]) : f32
  attn.yield %o, %z : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}
