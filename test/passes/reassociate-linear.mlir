// attn-reassociate on linear attention (Katharopoulos et al. 2020): the
// feature maps phi(Q), phi(K) carry #attn.lowrank<feature_map, "e">, which
// lets the score contraction a = phi(Q) phi(K)^T be reassociated with its
// readers. The rewrite is kept where attn-analyze's FLOP count is lower:
// at |m| = |p| = 4096 (the default) it is, at 16 it is not (second RUN).
// RUN: attn-opt %s --attn-reassociate -split-input-file -verify-diagnostics | FileCheck %s
// RUN: attn-opt %s --attn-reassociate="sizes=m=16,p=16" -split-input-file | FileCheck %s --check-prefix=SHORT

/// Non-causal, phi = elu + 1: O = phi(Q) (phi(K)^T V) / phi(Q) (phi(K)^T 1).
// CHECK-LABEL: attn.cascade @linear
// 1. phi(K)^T V and phi(K)^T 1 over the keys: |e| x |f| and |e| per head,
//    O(N d^2) work, no |m| x |p| tensor.
// CHECK: %num_e = attn.einsum [b, h, e, f] = %fk[b, h, p, e] * %v[b, h, p, f] sum(p)
// 2. Each query contracts its features with them.
// CHECK: %num = attn.einsum [b, h, m, f] = %fq[b, h, m, e] * %num_e[b, h, e, f] sum(e)
// CHECK: %den_e = attn.einsum [b, h, e] = %fk[b, h, p, e] sum(p)
// CHECK: %den = attn.einsum [b, h, m] = %fq[b, h, m, e] * %den_e[b, h, e] sum(e)
// CHECK: %o = attn.einsum [b, h, m, f] = %num[b, h, m, f] / %den[b, h, m]
// 3. The scores a[m, p] are gone.
// CHECK-NOT: %a =
// SHORT-LABEL: attn.cascade @linear
// SHORT: %a = attn.einsum [b, h, m, p]
attn.cascade @linear ranks(b, h, m, p, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>) {
  // expected-remark@+1 {{reassociated linear attention over 'a' to phi(Q) (phi(K)^T V): num_e = fk[b, h, p, e] * v[b, h, p, f]; den_e = fk[b, h, p, e]; flops 257*b*h*m*p + 320*b*h*m + 256*b*h*p -> 8640*b*h*m + 8512*b*h*p}}
  %fq = attn.einsum [b, h, m, e] = select(%q[b, h, m, e] > 0, %q[b, h, m, e] + 1.0, exp(%q[b, h, m, e])) {attn.lowrank = #attn.lowrank<feature_map, "e">} : f32
  %fk = attn.einsum [b, h, p, e] = select(%k[b, h, p, e] > 0, %k[b, h, p, e] + 1.0, exp(%k[b, h, p, e])) {attn.lowrank = #attn.lowrank<feature_map, "e">} : f32
  %a = attn.einsum [b, h, m, p] = %fq[b, h, m, e] * %fk[b, h, p, e] sum(e) : f32
  %num = attn.einsum [b, h, m, f] = %a[b, h, m, p] * %v[b, h, p, f] sum(p) : f32
  %den = attn.einsum [b, h, m] = %a[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %num[b, h, m, f] / %den[b, h, m] : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}

// -----

/// Causal (key p <= query m), a generic feature map phi(x) = exp(x) given as
/// a map action, a scale inside the scores. The queries are cut into chunks
/// of 64 (m -> m1, m0); per chunk a quadratic part, across chunks a running
/// state of phi(K)^T V.
// CHECK-LABEL: attn.cascade @linear_causal
// CHECK-SAME: partition(m -> m1, m0 = 64 ragged)
// 1. Inside the query's chunk: scores against its keys j = (m floordiv 64) * 64 + m0
//    up to the diagonal (quadratic in the chunk length only).
// CHECK: %a_intra = attn.einsum [m, m0] = %fq[m, e] * %fk[m floordiv 64 * 64 + m0, e] * 0.5 sum(e) if (m0 <= m mod 64 and m floordiv 64 * 64 + m0 < |p|)
// 2. Per chunk of keys, its phi(K)^T V; the state before chunk m1 is the sum
//    over the chunks before it (an iterative rank, init 0).
// CHECK: %num_chunk = attn.einsum [e, f, m1] = %fk[m1 * 64 + m0, e] * %v[m1 * 64 + m0, f] sum(m0) if (m1 * 64 + m0 < |p|)
// CHECK: %num_state = attn.einsum [e, f, m1 + 1] = %num_state[e, f, m1] + %num_chunk[e, f, m1] init(0.0)
// 3. A query reads the state of its own chunk (every earlier key) and adds
//    its chunk's part; the scale stays on the query side.
// CHECK: %num_inter = attn.einsum [m, f] = %fq[m, e] * 0.5 * %num_state[e, f, m floordiv 64] sum(e)
// CHECK: %num_intra = attn.einsum [m, f] = %a_intra[m, m0] * %v[m floordiv 64 * 64 + m0, f] sum(m0) if (m0 <= m mod 64 and m floordiv 64 * 64 + m0 < |p|)
// CHECK: %num = attn.einsum [m, f] = %num_inter[m, f] + %num_intra[m, f]
// CHECK: %den_state = attn.einsum [e, m1 + 1] = %den_state[e, m1] + %den_chunk[e, m1] init(0.0)
// CHECK: %den = attn.einsum [m] = %den_inter[m] + %den_intra[m]
// CHECK-NOT: %a =
// SHORT-LABEL: attn.cascade @linear_causal
// SHORT: %a = attn.einsum [m, p]
attn.cascade @linear_causal ranks(m, p, e = 64, f = 64)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>, %v: !attn.t<[p, f], f32>)
    -> (o: !attn.t<[m, f], f32>) {
  // expected-remark@+1 {{linear attention over 'a' in causal chunks: chunks of 64 along m, running state num_state, den_state; flops}}
  %fq = attn.einsum [m, e] = exp(%q[m, e]) {attn.lowrank = #attn.lowrank<feature_map, "e">} : f32
  %fk = attn.einsum [p, e] = exp(%k[p, e]) {attn.lowrank = #attn.lowrank<feature_map, "e">} : f32
  %a = attn.einsum [m, p] = %fq[m, e] * %fk[p, e] * 0.5 sum(e) if (p <= m) : f32
  %num = attn.einsum [m, f] = %a[m, p] * %v[p, f] sum(p) : f32
  %den = attn.einsum [m] = %a[m, p] sum(p) : f32
  %o = attn.einsum [m, f] = %num[m, f] / %den[m] : f32
  attn.yield %o : !attn.t<[m, f], f32>
}
