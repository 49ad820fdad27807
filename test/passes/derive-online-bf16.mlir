// attn-derive-online keeps the partial sums and running states of a
// reduction declared in a narrow float in f32: the plain cascade rounds the
// bf16 numerator once, at its end, and so must the derived one. Only the
// final Einsums keep the declared bf16.
// RUN: attn-opt %s --attn-derive-online=tile=32 2>/dev/null | FileCheck %s

// CHECK: %l_o_num = attn.einsum [b, h, m, f, p1] = {{.*}} sum(p0) : f32
// CHECK: %r_o_num = attn.einsum [b, h, m, f, p1 + 1] = {{.*}} init(0.0) : f32
// CHECK: %o_num = attn.einsum [b, h, m, f] = %r_o_num[b, h, m, f, |p1|] : f32
// CHECK: %o = attn.einsum [b, h, m, f] = %o_num[b, h, m, f] / %sd[b, h, m] : bf16
// CHECK: %lse = attn.einsum [b, h, m] = {{.*}} : bf16

attn.cascade @mha ranks(b, h, m, p, e = 16, f = 16)
    (%q: !attn.t<[b, h, m, e], bf16>, %k: !attn.t<[b, h, p, e], bf16>, %v: !attn.t<[b, h, p, f], bf16>)
    -> (o: !attn.t<[b, h, m, f], bf16>, lse: !attn.t<[b, h, m], bf16>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.25 sum(e) : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : bf16
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : bf16
  attn.yield %o, %lse : !attn.t<[b, h, m, f], bf16>, !attn.t<[b, h, m], bf16>
}
