// Linear attention (Katharopoulos et al. 2020) with the feature map
// phi(x) = elu(x) + 1, non-causal:
//   O[m,f] = sum_p (phi(Q_m) . phi(K_p)) V[p,f] / sum_p phi(Q_m) . phi(K_p)
// No softmax, so no running max: the cascade is already 1-pass over p.
attn.cascade @linear ranks(b, h, m, p, e = 64, f = 64)
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
