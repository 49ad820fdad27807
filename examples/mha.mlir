// Multi-head attention with LSE, the plain 3-pass cascade (FuseMax Cascade 4).
//   QK[b,h,m,p] = sum_e Q[b,h,m,e] * K[b,h,p,e] * scale
//   GM[b,h,m]   = max_p QK                       (pass 1 over p)
//   SN[b,h,m,p] = exp(QK - GM)                   (pass 2)
//   SD[b,h,m]   = sum_p SN
//   O[b,h,m,f]  = sum_p SN * V / SD              (pass 3)
//   LSE[b,h,m]  = GM + log(SD)
// scale = 1/sqrt(64).
attn.cascade @mha ranks(b, h, m, p, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.125 sum(e) : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}
