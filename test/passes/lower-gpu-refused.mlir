// attn-lower-gpu refuses, with a located error, every cascade that is not
// the MHA family it lowers (docs/gpu.md, "Refused"). Each case is derived
// first (the remark of attn-derive-online is expected too).
// RUN: attn-opt %s -split-input-file --attn-derive-online --attn-lower-gpu -verify-diagnostics

/// f32 inputs without storage=bf16|f16: level 1 has bf16 and f16 tensor
/// cores only.
// expected-remark @below {{derived the 1-pass form}}
// expected-error @below {{attn-lower-gpu: q, k and v must all be bf16 or all f16 (or f32 with storage=bf16|f16)}}
attn.cascade @negative_f32 ranks(b, h, m, p, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.125 sum(e) : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}

// -----

/// K read at head h mod 4: neither the score's own head nor a group of
/// heads (GQA's h floordiv 4 is lowered: lower-gpu-gqa.mlir).
// expected-remark @below {{derived the 1-pass form}}
attn.cascade @negative_head_mod ranks(b, h, g, m, p, e = 64, f = 64) where(h = 4 * g)
    (%q: !attn.t<[b, h, m, e], bf16>, %k: !attn.t<[b, g, p, e], bf16>, %v: !attn.t<[b, g, p, f], bf16>)
    -> (o: !attn.t<[b, h, m, f], f32>) {
  // expected-error @below {{attn-lower-gpu: the first Einsum is not a score Q[.., m, e] * K[.., p, e] * c sum(e) with c > 0}}
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h mod 4, p, e] * 0.125 sum(e) : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h mod 4, p, f] / %sd[b, h, m] sum(p) : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}

// -----

/// A score transform with a function the kernel does not evaluate on the
/// registers (sigmoid; soft-capping's tanh is lowered: lower-gpu-transform.mlir).
// expected-remark @below {{derived the 1-pass form}}
attn.cascade @negative_sigmoid_cap ranks(b, h, m, p, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], bf16>, %k: !attn.t<[b, h, p, e], bf16>, %v: !attn.t<[b, h, p, f], bf16>)
    -> (o: !attn.t<[b, h, m, f], f32>) {
  %s = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.125 sum(e) : f32
  // expected-error @below {{attn-lower-gpu: not a step of the derived online softmax of an MHA-family cascade: none;;;mul(30,sigmoid(div(S,30)));}}
  %qk = attn.einsum [b, h, m, p] = 30.0 * sigmoid(%s[b, h, m, p] / 30.0) : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}

// -----

/// A mask read from a tensor (document ids): a fourth input.
// expected-remark @below {{derived the 1-pass form}}
// expected-error @below {{attn-lower-gpu: expects exactly the inputs q, k, v}}
attn.cascade @negative_document ranks(m, p, e = 64, f = 64)
    (%q: !attn.t<[m, e], bf16>, %k: !attn.t<[p, e], bf16>, %v: !attn.t<[p, f], bf16>,
     %doc_q: !attn.t<[m], i32>, %doc_k: !attn.t<[p], i32>)
    -> (o: !attn.t<[m, f], f32>) {
  %qk = attn.einsum [m, p] = %q[m, e] * %k[p, e] * 0.125 sum(e) if (%doc_q[m] == %doc_k[p]) else -inf : f32
  %gm = attn.einsum [m] = %qk[m, p] max(p) : f32
  %sn = attn.einsum [m, p] = exp(%qk[m, p] - %gm[m]) if (%gm[m] > -inf) : f32
  %sd = attn.einsum [m] = %sn[m, p] sum(p) : f32
  %o = attn.einsum [m, f] = %sn[m, p] * %v[p, f] / %sd[m] sum(p) if (%sd[m] > 0) : f32
  attn.yield %o : !attn.t<[m, f], f32>
}

// -----

/// Head dimension 256: more accumulator registers than level 1 plans for.
// expected-remark @below {{derived the 1-pass form}}
// expected-error @below {{attn-lower-gpu: head dimensions must be static multiples of 16 up to 128}}
attn.cascade @negative_d256 ranks(m, p, e = 256, f = 256)
    (%q: !attn.t<[m, e], bf16>, %k: !attn.t<[p, e], bf16>, %v: !attn.t<[p, f], bf16>)
    -> (o: !attn.t<[m, f], f32>) {
  %qk = attn.einsum [m, p] = %q[m, e] * %k[p, e] * 0.0625 sum(e) : f32
  %gm = attn.einsum [m] = %qk[m, p] max(p) : f32
  %sn = attn.einsum [m, p] = exp(%qk[m, p] - %gm[m]) : f32
  %sd = attn.einsum [m] = %sn[m, p] sum(p) : f32
  %o = attn.einsum [m, f] = %sn[m, p] * %v[p, f] / %sd[m] sum(p) : f32
  attn.yield %o : !attn.t<[m, f], f32>
}

// -----

/// A negative softmax scale: the running max of s * c is not c times the
/// max of s.
// expected-remark @below {{derived the 1-pass form}}
attn.cascade @negative_scale ranks(m, p, e = 64, f = 64)
    (%q: !attn.t<[m, e], bf16>, %k: !attn.t<[p, e], bf16>, %v: !attn.t<[p, f], bf16>)
    -> (o: !attn.t<[m, f], f32>) {
  // expected-error @below {{with c > 0}}
  %qk = attn.einsum [m, p] = %q[m, e] * %k[p, e] * -0.125 sum(e) : f32
  %gm = attn.einsum [m] = %qk[m, p] max(p) : f32
  %sn = attn.einsum [m, p] = exp(%qk[m, p] - %gm[m]) : f32
  %sd = attn.einsum [m] = %sn[m, p] sum(p) : f32
  %o = attn.einsum [m, f] = %sn[m, p] * %v[p, f] / %sd[m] sum(p) : f32
  attn.yield %o : !attn.t<[m, f], f32>
}
