// attn-reassociate refusals: an annotation that cannot be honoured leaves
// the cascade unchanged, with a remark at the Einsum at fault that says why.
// RUN: attn-opt %s --attn-reassociate -split-input-file -verify-diagnostics | FileCheck %s
// RUN: not attn-opt %s --attn-reassociate=chunk=1 -split-input-file 2>&1 | FileCheck %s --check-prefix=CHUNK
// CHUNK: attn-reassociate: chunk must be at least 2, got 1
// CHECK-NOT: cat_q
// CHECK-NOT: _state

/// A bias over a factor rank of dynamic size cannot be concatenated.
attn.cascade @negative_bias_dynamic_rank ranks(m, p, r, e = 8)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>, %u: !attn.t<[m, r], f32>, %w: !attn.t<[p, r], f32>)
    -> (s: !attn.t<[m, p], f32>) {
  // expected-remark@+1 {{folding the bias 'bias' is not possible: the factor rank 'r' has a dynamic size; concatenation needs a static one}}
  %bias = attn.einsum [m, p] = %u[m, r] * %w[p, r] sum(r) {attn.lowrank = #attn.lowrank<bias, "r">} : f32
  %s = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) : f32
  %qk = attn.einsum [m, p] = %s[m, p] + %bias[m, p] : f32
  attn.yield %qk : !attn.t<[m, p], f32>
}

// -----

/// A bias added after a nonlinear map of the scores (softcap) is no term of a
/// contraction.
attn.cascade @negative_bias_after_softcap ranks(m, p, r = 4, e = 8)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>, %u: !attn.t<[m, r], f32>, %w: !attn.t<[p, r], f32>)
    -> (s: !attn.t<[m, p], f32>) {
  // expected-remark@+1 {{folding the bias 'bias' is not possible: no other term of 'qk' is a contraction over one static rank, read at its own indices}}
  %bias = attn.einsum [m, p] = %u[m, r] * %w[p, r] sum(r) {attn.lowrank = #attn.lowrank<bias, "r">} : f32
  %s = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) : f32
  %qk = attn.einsum [m, p] = 30.0 * tanh(%s[m, p] / 30.0) + %bias[m, p] : f32
  attn.yield %qk : !attn.t<[m, p], f32>
}

// -----

/// The bias read twice would still have to be formed.
attn.cascade @negative_bias_two_readers ranks(m, p, r = 4, e = 8)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>, %u: !attn.t<[m, r], f32>, %w: !attn.t<[p, r], f32>)
    -> (s: !attn.t<[m, p], f32>, b2: !attn.t<[m, p], f32>) {
  // expected-remark@+1 {{folding the bias 'bias' is not possible: the bias 'bias' has 2 readers; the fold needs exactly one, which adds it to a contraction}}
  %bias = attn.einsum [m, p] = %u[m, r] * %w[p, r] sum(r) {attn.lowrank = #attn.lowrank<bias, "r">} : f32
  %s = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) : f32
  %qk = attn.einsum [m, p] = %s[m, p] + %bias[m, p] : f32
  %twice = attn.einsum [m, p] = %bias[m, p] * 2.0 : f32
  attn.yield %qk, %twice : !attn.t<[m, p], f32>, !attn.t<[m, p], f32>
}

// -----

/// Causal linear attention with a sliding window: only the mask p <= m has a
/// chunked form here.
attn.cascade @negative_linear_window ranks(m, p, e = 8, f = 8)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>, %v: !attn.t<[p, f], f32>)
    -> (o: !attn.t<[m, f], f32>) {
  %fq = attn.einsum [m, e] = exp(%q[m, e]) {attn.lowrank = #attn.lowrank<feature_map, "e">} : f32
  %fk = attn.einsum [p, e] = exp(%k[p, e]) {attn.lowrank = #attn.lowrank<feature_map, "e">} : f32
  // expected-remark@+1 {{the causal chunked form of 'a' is not possible: the mask of 'a' is not the causal mask 'key <= query' between two of its ranks; only that mask has a chunked form here}}
  %a = attn.einsum [m, p] = %fq[m, e] * %fk[p, e] sum(e) if (p <= m and p + 16 > m) : f32
  %num = attn.einsum [m, f] = %a[m, p] * %v[p, f] sum(p) : f32
  %den = attn.einsum [m] = %a[m, p] sum(p) : f32
  %o = attn.einsum [m, f] = %num[m, f] / %den[m] : f32
  attn.yield %o : !attn.t<[m, f], f32>
}

// -----

/// Linear attention whose scores go through a nonlinearity (here a square)
/// before the sum over keys: no reassociation.
attn.cascade @negative_linear_nonlinear_reader ranks(m, p, e = 8, f = 8)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>, %v: !attn.t<[p, f], f32>)
    -> (o: !attn.t<[m, f], f32>) {
  %fq = attn.einsum [m, e] = exp(%q[m, e]) {attn.lowrank = #attn.lowrank<feature_map, "e">} : f32
  %fk = attn.einsum [p, e] = exp(%k[p, e]) {attn.lowrank = #attn.lowrank<feature_map, "e">} : f32
  %a = attn.einsum [m, p] = %fq[m, e] * %fk[p, e] sum(e) : f32
  // expected-remark@+1 {{the form phi(Q) (phi(K)^T V) of 'a' is not possible: 'o' does not read 'a' as a single factor of a product}}
  %o = attn.einsum [m, f] = %a[m, p] * %a[m, p] * %v[p, f] sum(p) : f32
  attn.yield %o : !attn.t<[m, f], f32>
}

// -----

/// A feature map that no score contracts.
attn.cascade @negative_feature_map_unused ranks(m, e = 8)
    (%q: !attn.t<[m, e], f32>) -> (o: !attn.t<[m, e], f32>) {
  // expected-remark@+1 {{feature map not used: no Einsum reads 'fq' and reduces its feature rank 'e'}}
  %fq = attn.einsum [m, e] = exp(%q[m, e]) {attn.lowrank = #attn.lowrank<feature_map, "e">} : f32
  attn.yield %fq : !attn.t<[m, e], f32>
}

// -----

/// A latent K that is also a result of the cascade stays formed.
attn.cascade @negative_latent_yielded ranks(m, p, r = 4, e = 8)
    (%q: !attn.t<[m, e], f32>, %c: !attn.t<[p, r], f32>, %wk: !attn.t<[r, e], f32>)
    -> (s: !attn.t<[m, p], f32>, k: !attn.t<[p, e], f32>) {
  // expected-remark@+1 {{absorbing the latent projection 'k' is not possible: 'k' is a result of the cascade}}
  %k = attn.einsum [p, e] = %c[p, r] * %wk[r, e] sum(r) {attn.lowrank = #attn.lowrank<latent, "r">} : f32
  %s = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) : f32
  attn.yield %s, %k : !attn.t<[m, p], f32>, !attn.t<[p, e], f32>
}
