// attn-lower-cpu refuses, with a located error, what it cannot lower yet.
// RUN: attn-opt %s --attn-lower-cpu -split-input-file -verify-diagnostics

// The plain 3-pass cascade: its scores QK[b, h, m, p] span the whole key
// rank, which a task cannot hold (run attn-derive-online first).
attn.cascade @plain ranks(b, h, m, p, e = 16, f = 16)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>) {
  // expected-error @+1 {{'qk' has the rank p of dynamic size in its result but not among the task ranks}}
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] sum(e) : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}

// -----

// A gather from an Einsum's result (gathers into arguments are supported:
// lower-cpu-gather.mlir).
attn.cascade @gather ranks(m, l, p = 32, e = 16)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>, %idx: !attn.t<[m, l], i32>)
    -> (s: !attn.t<[m, l], f32>) {
  %k2 = attn.einsum [p, e] = %k[p, e] * 2.0 : f32
  // expected-error @+1 {{'s' gathers from an Einsum's result or through a computed index; only gathers into arguments by a loaded index are supported}}
  %s = attn.einsum [m, l] = %q[m, e] * %k2[%idx[m, l], e] sum(e) : f32
  attn.yield %s : !attn.t<[m, l], f32>
}

// -----

// Top-k keeps the k largest scores of a row: a populate action.
attn.cascade @topk ranks(m, p, e = 16)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>)
    -> (s: !attn.t<[m, p], f32>) {
  // expected-error @+1 {{top-k populate actions are not supported yet}}
  %s = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) topk(4, p) : f32
  attn.yield %s : !attn.t<[m, p], f32>
}
