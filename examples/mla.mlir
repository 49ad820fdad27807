// Multi-head latent attention (MLA, DeepSeek-V2, arXiv 2405.04434): the keys
// and values of every head come from one latent vector per token,
//   K[b, h, p, e] = sum_r C[b, p, r] Wk[h, r, e],
//   V[b, h, p, f] = sum_r C[b, p, r] Wv[h, r, f]      (|r| = 128),
// so a KV cache stores C (|r| per token) instead of K and V (2 |h| |e|).
// Both projections carry #attn.lowrank<latent, "r">: attn-reassociate may
// absorb Wk into the queries (QK^T = (Q Wk^T) C^T, one latent per key) and
// Wv into the output (O = (P C) Wv), where the FLOP count says it is
// cheaper: for decode (few queries per key), not for a long prefill with
// |r| > |e|. The RoPE part of DeepSeek's keys is left out.
attn.cascade @mla ranks(b, h, m, p, r = 128, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32>, %c: !attn.t<[b, p, r], f32>,
     %wk: !attn.t<[h, r, e], f32>, %wv: !attn.t<[h, r, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %k = attn.einsum [b, h, p, e] = %c[b, p, r] * %wk[h, r, e] sum(r) {attn.lowrank = #attn.lowrank<latent, "r">} : f32
  %v = attn.einsum [b, h, p, f] = %c[b, p, r] * %wv[h, r, f] sum(r) {attn.lowrank = #attn.lowrank<latent, "r">} : f32
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.125 sum(e) : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}
