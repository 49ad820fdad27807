// Shared-prefix attention (Hydragen, Juravsky et al. 2024): every sequence of
// the batch continues one common prefix (a system prompt, few-shot examples),
// whose keys and values are stored once, without the batch rank:
// kp [h, s, e], vp [h, s, f]; each sequence b adds its own suffix
// ks [b, h, p, e], vs [b, h, p, f]. The |m| queries of sequence b are its last
// |m| suffix tokens: they see the whole prefix and the suffix causally
// (bottom-right aligned, key p iff p <= m + |p| - |m|; |m| = 1 in decode).
// One softmax over the union of both key sets: the max and the sum run over
// both, so this equals plain attention over the concatenated K/V. Hydragen's
// form (the prefix part as one matrix product for all b * m queries, merged
// with the suffix part through their LSEs) is what attn-split-kv derives from
// this plain cascade. Every query sees the prefix (|s| >= 1): no row is empty.
attn.cascade @shared_prefix ranks(b, h, m, s, p, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32>,
     %kp: !attn.t<[h, s, e], f32>, %vp: !attn.t<[h, s, f], f32>,
     %ks: !attn.t<[b, h, p, e], f32>, %vs: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %qkp = attn.einsum [b, h, m, s] = %q[b, h, m, e] * %kp[h, s, e] * 0.125 sum(e) : f32
  %qks = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %ks[b, h, p, e] * 0.125 sum(e) if (p <= m + |p| - |m|) else -inf {attn.sparse = #attn.sparse<causal_bottom_right>} : f32
  %gmp = attn.einsum [b, h, m] = %qkp[b, h, m, s] max(s) : f32
  %gms = attn.einsum [b, h, m] = %qks[b, h, m, p] max(p) : f32
  %gm = attn.einsum [b, h, m] = max(%gmp[b, h, m], %gms[b, h, m]) : f32
  %snp = attn.einsum [b, h, m, s] = exp(%qkp[b, h, m, s] - %gm[b, h, m]) : f32
  %sns = attn.einsum [b, h, m, p] = exp(%qks[b, h, m, p] - %gm[b, h, m]) : f32
  %sdp = attn.einsum [b, h, m] = %snp[b, h, m, s] sum(s) : f32
  %sds = attn.einsum [b, h, m] = %sns[b, h, m, p] sum(p) : f32
  %sd = attn.einsum [b, h, m] = %sdp[b, h, m] + %sds[b, h, m] : f32
  %op = attn.einsum [b, h, m, f] = %snp[b, h, m, s] * %vp[h, s, f] sum(s) : f32
  %os = attn.einsum [b, h, m, f] = %sns[b, h, m, p] * %vs[b, h, p, f] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = (%op[b, h, m, f] + %os[b, h, m, f]) / %sd[b, h, m] : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}
