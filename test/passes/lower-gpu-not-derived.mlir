// attn-lower-gpu needs the 1-pass form (the key partition of
// attn-derive-online); the plain 3-pass cascade is refused.
// RUN: attn-opt %s --attn-lower-gpu -verify-diagnostics

// expected-error @below {{attn-lower-gpu: expects the 1-pass form with one key partition (run attn-derive-online first)}}
attn.cascade @negative_plain ranks(b, h, m, p, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], bf16>, %k: !attn.t<[b, h, p, e], bf16>, %v: !attn.t<[b, h, p, f], bf16>)
    -> (o: !attn.t<[b, h, m, f], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.125 sum(e) : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}
