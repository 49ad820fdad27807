// attn-lower-cpu refuses linear attention (a cascade with feature maps,
// #attn.lowrank<feature_map>) that is not in a form attn-reassociate writes,
// with the reason. The quadratic form has no kernel: its scores span the
// whole key rank.
// RUN: attn-opt %s --attn-lower-cpu -split-input-file -verify-diagnostics

// Not reassociated (attnc runs attn-reassociate first; here it did not).
// expected-error @+1 {{attn-lower-cpu: linear attention not in a form attn-reassociate writes (the quadratic form has no kernel): 'a' is not a sum over the (dynamic) key rank alone}}
attn.cascade @quadratic ranks(b, h, m, p, e = 16, f = 16)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>) {
  %fq = attn.einsum [b, h, m, e] = exp(%q[b, h, m, e]) {attn.lowrank = #attn.lowrank<feature_map, "e">} : f32
  %fk = attn.einsum [b, h, p, e] = exp(%k[b, h, p, e]) {attn.lowrank = #attn.lowrank<feature_map, "e">} : f32
  %a = attn.einsum [b, h, m, p] = %fq[b, h, m, e] * %fk[b, h, p, e] sum(e) : f32
  %o = attn.einsum [b, h, m, f] = %a[b, h, m, p] * %v[b, h, p, f] sum(p) : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}

// -----

// The reassociated form with a feature rank of dynamic size.
// expected-error @+1 {{attn-lower-cpu: linear attention not in a form attn-reassociate writes (the quadratic form has no kernel): the feature rank 'e' has no static size}}
attn.cascade @dynamic_e ranks(m, p, e, f = 16)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>, %v: !attn.t<[p, f], f32>)
    -> (o: !attn.t<[m, f], f32>) {
  %fq = attn.einsum [m, e] = exp(%q[m, e]) {attn.lowrank = #attn.lowrank<feature_map, "e">} : f32
  %fk = attn.einsum [p, e] = exp(%k[p, e]) {attn.lowrank = #attn.lowrank<feature_map, "e">} : f32
  %num_e = attn.einsum [e, f] = %fk[p, e] * %v[p, f] sum(p) : f32
  %o = attn.einsum [m, f] = %fq[m, e] * %num_e[e, f] sum(e) : f32
  attn.yield %o : !attn.t<[m, f], f32>
}

// -----

// A feature map of the keys that reads an Einsum (a reduction over the
// keys hidden in phi) is not evaluated per element.
// expected-error @+1 {{attn-lower-cpu: linear attention not in a form attn-reassociate writes (the quadratic form has no kernel): 'num_e' is not a feature map of the keys (times one tensor of values)}}
attn.cascade @phi_reads_einsum ranks(m, p, e = 16, f = 16)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>, %v: !attn.t<[p, f], f32>)
    -> (o: !attn.t<[m, f], f32>) {
  %mx = attn.einsum [e] = %k[p, e] max(p) : f32
  %fq = attn.einsum [m, e] = exp(%q[m, e]) {attn.lowrank = #attn.lowrank<feature_map, "e">} : f32
  %fk = attn.einsum [p, e] = exp(%k[p, e] - %mx[e]) {attn.lowrank = #attn.lowrank<feature_map, "e">} : f32
  %num_e = attn.einsum [e, f] = %fk[p, e] * %v[p, f] sum(p) : f32
  %o = attn.einsum [m, f] = %fq[m, e] * %num_e[e, f] sum(e) : f32
  attn.yield %o : !attn.t<[m, f], f32>
}
