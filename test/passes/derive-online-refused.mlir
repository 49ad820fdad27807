// Cascades without an online form: attn-derive-online leaves them unchanged
// and a remark at the Einsum that blocks the rewrite says why. Never wrong
// code.
// RUN: attn-opt %s --attn-derive-online -split-input-file -verify-diagnostics | FileCheck %s
// CHECK-NOT: partition(p

// Top-k keeps the 8 largest scores of the whole row: no online form.
attn.cascade @topk ranks(m, p, e = 8, f = 8)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>, %v: !attn.t<[p, f], f32>) -> (o: !attn.t<[m, f], f32>) {
  %s = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) : f32
  // expected-remark@+1 {{no online form over p: 'qk' keeps the top 8 along p, which compares every element with the whole row}}
  %qk = attn.einsum [m, p] = %s[m, p] topk(8, p) : f32
  %gm = attn.einsum [m] = %qk[m, p] max(p) : f32
  %sn = attn.einsum [m, p] = exp(%qk[m, p] - %gm[m]) : f32
  %sd = attn.einsum [m] = %sn[m, p] sum(p) : f32
  %o = attn.einsum [m, f] = %sn[m, p] * %v[p, f] / %sd[m] sum(p) : f32
  attn.yield %o : !attn.t<[m, f], f32>
}

// -----

// tanh(s - max) mixes the tile with the max: no correction exists.
attn.cascade @tanh_mix ranks(m, p, e = 8)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>) -> (o: !attn.t<[m], f32>) {
  %s = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) : f32
  %gm = attn.einsum [m] = %s[m, p] max(p) : f32
  %t = attn.einsum [m, p] = tanh(%s[m, p] - %gm[m]) : f32
  // expected-remark@+1 {{no online form over p: in 'o', the factor 'tanh(s[m, p] - gm[m])' depends on a full reduction over p and is not an exponential of it}}
  %o = attn.einsum [m] = %t[m, p] sum(p) : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

// The attention probabilities themselves, indexed by p, need the final max
// and denominator: no 1-pass form (the 2-pass form can produce them).
attn.cascade @probabilities ranks(m, p, e = 8)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>) -> (pr: !attn.t<[m, p], f32>) {
  %s = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) : f32
  %gm = attn.einsum [m] = %s[m, p] max(p) : f32
  %sn = attn.einsum [m, p] = exp(%s[m, p] - %gm[m]) : f32
  %sd = attn.einsum [m] = %sn[m, p] sum(p) : f32
  // expected-remark@+1 {{no online form over p: 'pr' is indexed by p and needs the final value of a reduction over p: no 1-pass form exists}}
  %pr = attn.einsum [m, p] = %sn[m, p] / %sd[m] : f32
  attn.yield %pr : !attn.t<[m, p], f32>
}

// -----

// exp(s + max) grows with the max: its correction would overflow.
attn.cascade @grows ranks(m, p, e = 8)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>) -> (o: !attn.t<[m], f32>) {
  %s = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) : f32
  %gm = attn.einsum [m] = %s[m, p] max(p) : f32
  // expected-remark@+1 {{no online form over p: in 'sd', 'exp(s[m, p] + gm[m])' grows with the running max 'gm': its correction would overflow}}
  %sd = attn.einsum [m] = exp(%s[m, p] + %gm[m]) sum(p) : f32
  attn.yield %sd : !attn.t<[m], f32>
}

// -----

// exp(2 s - max) is not bounded by 1: the terms could overflow.
attn.cascade @unbounded ranks(m, p, e = 8)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>) -> (o: !attn.t<[m], f32>) {
  %s = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) : f32
  %gm = attn.einsum [m] = %s[m, p] max(p) : f32
  // expected-remark@+1 {{no online form over p: in 'sd', the exponent of 'exp(2.0 * s[m, p] - gm[m])' is not a multiple of 's[m, p] - gm'}}
  %sd = attn.einsum [m] = exp(2.0 * %s[m, p] - %gm[m]) sum(p) : f32
  attn.yield %sd : !attn.t<[m], f32>
}

// -----

// A running sum inside an exponent (exp(s - max - log(sum))) has no
// correction of the form exp(a * max).
attn.cascade @sum_in_exponent ranks(m, p, e = 8, f = 8)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>, %v: !attn.t<[p, f], f32>) -> (o: !attn.t<[m, f], f32>) {
  %s = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) : f32
  %gm = attn.einsum [m] = %s[m, p] max(p) : f32
  %sd = attn.einsum [m] = exp(%s[m, p] - %gm[m]) sum(p) : f32
  // expected-remark@+1 {{no online form over p: in 'o', 'log(sd[m])' inside 'exp(s[m, p] - gm[m] - log(sd[m]))' is not a running max or min}}
  %o = attn.einsum [m, f] = exp(%s[m, p] - %gm[m] - log(%sd[m])) * %v[p, f] sum(p) : f32
  attn.yield %o : !attn.t<[m, f], f32>
}

// -----

// A condition on the max that is not an emptiness guard cannot be evaluated
// on the running max.
attn.cascade @threshold ranks(m, p, e = 8)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>) -> (o: !attn.t<[m], f32>) {
  %s = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) : f32
  %gm = attn.einsum [m] = %s[m, p] max(p) : f32
  // expected-remark@+1 {{no online form over p: the condition 's[m, p] > gm[m] - 4.0' depends on a full reduction over p and is not an emptiness guard}}
  %sn = attn.einsum [m, p] = exp(%s[m, p] - %gm[m]) if (%s[m, p] > %gm[m] - 4.0) : f32
  %sd = attn.einsum [m] = %sn[m, p] sum(p) : f32
  attn.yield %sd : !attn.t<[m], f32>
}

// -----

// The max of a masked subset, summed over all keys: partial sums over keys
// the max excludes would be lost when it is still -inf.
attn.cascade @mask_mismatch ranks(m, p, e = 8)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>) -> (o: !attn.t<[m], f32>) {
  %s = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) : f32
  %gm = attn.einsum [m] = %s[m, p] max(p) if (p <= m) : f32
  // expected-remark@+1 {{no online form over p: 'sd' reduces elements that the max 'gm' excludes ('p <= m')}}
  %sd = attn.einsum [m] = exp(%s[m, p] - %gm[m]) sum(p) : f32
  attn.yield %sd : !attn.t<[m], f32>
}

// -----

// Reductions over j and over its partition j1, j0 at once: no single loop.
attn.cascade @mixed_partition ranks(m, j, e = 8) partition(j -> j1, j0 = 16 ragged)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[j, e], f32>) -> (sd: !attn.t<[m], f32>) {
  %s = attn.einsum [m, j] = %q[m, e] * %k[j, e] sum(e) : f32
  %gm = attn.einsum [m] = %s[m, j1 * 16 + j0] max(j1, j0) : f32
  // expected-remark@+1 {{no online form over j: 'sd' reduces j while other reductions are written over its partition into j1, j0}}
  %sd = attn.einsum [m] = exp(%s[m, j] - %gm[m]) sum(j) : f32
  attn.yield %sd : !attn.t<[m], f32>
}
