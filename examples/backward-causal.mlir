// Backward pass of causal attention (top-left: key p is visible to query m
// iff p <= m, as in causal.mlir), as FlashAttention-2 computes it (Dao 2023,
// Algorithm 2): the probabilities are recomputed from Q, K and the forward's
// LSE instead of being stored, and the softmax gradient uses
// D = rowsum(dO * O):
//   S  = Q K^T * scale, masked: -inf  P  = exp(S - LSE)  (0 where LSE = -inf)
//   D  = sum_f dO * O                 dV = sum_m P * dO
//   dP = sum_f dO * V                 dS = P * (dP - D)
//   dQ = sum_p dS * K * scale         dK = sum_m dS * Q * scale
// with scale = 1/sqrt(64). Inputs are the forward's inputs, its outputs O and
// LSE, and the gradient dout = dL/dO; outputs are dL/dQ, dL/dK, dL/dV. Masked
// scores are -inf, so P = exp(-inf - LSE) = 0 there and dS = 0: masked pairs
// contribute nothing. A row that the forward left empty (LSE = -inf, O = 0;
// top-left causal has none, but the guard keeps the cascade total) gets
// P = 0 and dQ = 0.
attn.cascade @backward_causal ranks(b, h, m, p, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>,
     %o: !attn.t<[b, h, m, f], f32>, %dout: !attn.t<[b, h, m, f], f32>, %lse: !attn.t<[b, h, m], f32>)
    -> (dq: !attn.t<[b, h, m, e], f32>, dk: !attn.t<[b, h, p, e], f32>, dv: !attn.t<[b, h, p, f], f32>) {
  %delta = attn.einsum [b, h, m] = %dout[b, h, m, f] * %o[b, h, m, f] sum(f) : f32
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.125 sum(e) if (p <= m) else -inf {attn.sparse = #attn.sparse<causal>} : f32
  %pr = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %lse[b, h, m]) if (%lse[b, h, m] > -inf) : f32
  %dv = attn.einsum [b, h, p, f] = %pr[b, h, m, p] * %dout[b, h, m, f] sum(m) : f32
  %dp = attn.einsum [b, h, m, p] = %dout[b, h, m, f] * %v[b, h, p, f] sum(f) : f32
  %ds = attn.einsum [b, h, m, p] = %pr[b, h, m, p] * (%dp[b, h, m, p] - %delta[b, h, m]) : f32
  %dq = attn.einsum [b, h, m, e] = %ds[b, h, m, p] * %k[b, h, p, e] * 0.125 sum(p) : f32
  %dk = attn.einsum [b, h, p, e] = %ds[b, h, m, p] * %q[b, h, m, e] * 0.125 sum(m) : f32
  attn.yield %dq, %dk, %dv : !attn.t<[b, h, m, e], f32>, !attn.t<[b, h, p, e], f32>, !attn.t<[b, h, p, f], f32>
}
