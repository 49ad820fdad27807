// attn-split-kv over several key ranks: Hydragen's shared prefix. The keys
// of one softmax live in two ranks, the prefix s (stored once, without the
// batch rank) and each sequence's suffix p; the plain cascade combines
// their maxima and sums by hand (max(gmp, gms), sdp + sds). The pass gives
// one partial (O, LSE) per rank, the cascade restricted to that rank's
// keys, and merges them by log-sum-exp, as split-KV merges its splits. The
// ranks are detected from max(gmp, gms), or named with rank=s,p.
// RUN: attn-opt %s --attn-split-kv -split-input-file -verify-diagnostics | FileCheck %s
// RUN: attn-opt %s --attn-split-kv=rank=s,p -split-input-file -verify-diagnostics | FileCheck %s
// Each part is an ordinary softmax over its rank, which attn-derive-online
// turns into its 1-pass form (the prefix part as one pass over s for every
// sequence and query, as Hydragen computes it):
// RUN: attn-opt %s -split-input-file --pass-pipeline="builtin.module(attn-split-kv{rank=s,p},attn-derive-online{rank=s tile=16},attn-derive-online{rank=p tile=16})" 2>/dev/null | attn-opt --attn-analyze -split-input-file 2>&1 | FileCheck %s --check-prefix=CERT

// 1. Restriction to s: max(gmp, gms) becomes gmp and sdp + sds becomes
//    sdp, as if the suffix were empty; the Einsums that read them get a
//    copy named after the rank (snp_s, sdp_s, op_s). Likewise over p.
// 2. As in a split, a part's exponents subtract the reference of its own
//    max (ref_gms is 0 where the suffix has no visible key, so those rows
//    compute exp(-inf - 0) = 0, not NaN); conditions read the max itself.
// 3. Each part normalises: o_s = op_s / sdp_s, lse_s = ref_gmp + log(sdp_s)
//    (lse_p = -inf where the suffix part is empty).
// 4. The merge: lse = log(exp(lse_s) + exp(lse_p)) around their max, and
//    o = exp(lse_s - lse) * o_s + exp(lse_p - lse) * o_p.
// CHECK-LABEL: attn.cascade @shared_prefix
// CHECK-NOT: partition
// CHECK: %gmp = attn.einsum [b, h, m] = %qkp[b, h, m, s] max(s)
// CHECK: %ref_gmp = attn.einsum [b, h, m] = select(%gmp[b, h, m] == -inf, 0.0, %gmp[b, h, m])
// CHECK: %snp_s = attn.einsum [b, h, m, s] = exp(%qkp[b, h, m, s] - %ref_gmp[b, h, m])
// CHECK: %sdp_s = attn.einsum [b, h, m] = %snp_s[b, h, m, s] sum(s)
// CHECK: %op_s = attn.einsum [b, h, m, f] = %snp_s[b, h, m, s] * %vp[h, s, f] sum(s)
// CHECK: %gms = attn.einsum [b, h, m] = %qks[b, h, m, p] max(p)
// CHECK: %ref_gms = attn.einsum [b, h, m] = select(%gms[b, h, m] == -inf, 0.0, %gms[b, h, m])
// CHECK: %sns_p = attn.einsum [b, h, m, p] = exp(%qks[b, h, m, p] - %ref_gms[b, h, m])
// CHECK: %sds_p = attn.einsum [b, h, m] = %sns_p[b, h, m, p] sum(p)
// CHECK: %os_p = attn.einsum [b, h, m, f] = %sns_p[b, h, m, p] * %vs[b, h, p, f] sum(p)
// CHECK: %o_s = attn.einsum [b, h, m, f] = %op_s[b, h, m, f] / %sdp_s[b, h, m] if (%sdp_s[b, h, m] > 0.0)
// CHECK: %o_p = attn.einsum [b, h, m, f] = %os_p[b, h, m, f] / %sds_p[b, h, m] if (%sds_p[b, h, m] > 0.0)
// CHECK: %lse_s = attn.einsum [b, h, m] = %ref_gmp[b, h, m] + log(%sdp_s[b, h, m])
// CHECK: %lse_p = attn.einsum [b, h, m] = %ref_gms[b, h, m] + log(%sds_p[b, h, m])
// CHECK: %lse_max = attn.einsum [b, h, m] = max(%lse_s[b, h, m], %lse_p[b, h, m])
// CHECK: %ref_lse_max = attn.einsum [b, h, m] = select(%lse_max[b, h, m] == -inf, 0.0, %lse_max[b, h, m])
// CHECK: %lse_sum = attn.einsum [b, h, m] = exp(%lse_s[b, h, m] - %ref_lse_max[b, h, m]) + exp(%lse_p[b, h, m] - %ref_lse_max[b, h, m])
// CHECK: %lse = attn.einsum [b, h, m] = %ref_lse_max[b, h, m] + log(%lse_sum[b, h, m])
// CHECK: %o = attn.einsum [b, h, m, f] = exp(%lse_s[b, h, m] - %lse[b, h, m]) * %o_s[b, h, m, f] + exp(%lse_p[b, h, m] - %lse[b, h, m]) * %o_p[b, h, m, f] : f32
// CHECK: attn.yield %o, %lse
// CERT: passes(s) = 1
// CERT: passes(p) = 1
// expected-remark@+1 {{split the keys by rank (s, p; one part per rank, each reduced against its own max); per part: o_s = op_s[b, h, m, f] / sdp_s[b, h, m] if (sdp_s[b, h, m] > 0.0), o_p = os_p[b, h, m, f] / sds_p[b, h, m] if (sds_p[b, h, m] > 0.0), lse_s = ref_gmp[b, h, m] + log(sdp_s[b, h, m]), lse_p = ref_gms[b, h, m] + log(sds_p[b, h, m]); merge: lse = log(exp(lse_s) + exp(lse_p)), o = exp(lse_s - lse) * o_s + exp(lse_p - lse) * o_p}}
attn.cascade @shared_prefix ranks(b, h, m, s, p, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32>,
     %kp: !attn.t<[h, s, e], f32>, %vp: !attn.t<[h, s, f], f32>,
     %ks: !attn.t<[b, h, p, e], f32>, %vs: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %qkp = attn.einsum [b, h, m, s] = %q[b, h, m, e] * %kp[h, s, e] * 0.125 sum(e) : f32
  %qks = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %ks[b, h, p, e] * 0.125 sum(e) if (p <= m + |p| - |m|) else -inf : f32
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

// -----

// Each part relative to its own max, then added: not one softmax over the
// union of the keys (the sums have different scales), so not split.
// CHECK-LABEL: attn.cascade @own_maxima
// CHECK-NOT: lse_s
attn.cascade @own_maxima ranks(m, s, p, e = 8)
    (%q: !attn.t<[m, e], f32>, %kp: !attn.t<[s, e], f32>, %ks: !attn.t<[p, e], f32>) -> (lse: !attn.t<[m], f32>) {
  %qkp = attn.einsum [m, s] = %q[m, e] * %kp[s, e] sum(e) : f32
  %qks = attn.einsum [m, p] = %q[m, e] * %ks[p, e] sum(e) : f32
  %gmp = attn.einsum [m] = %qkp[m, s] max(s) : f32
  %gms = attn.einsum [m] = %qks[m, p] max(p) : f32
  %gm = attn.einsum [m] = max(%gmp[m], %gms[m]) : f32
  // expected-remark@+1 {{no split form over s, p: 'sdp' reads 'gmp', a reduction over s alone: with several key ranks (s, p), it must be combined with its counterparts over the others (max(gmp, gms), sdp + sds)}}
  %sdp = attn.einsum [m] = exp(%qkp[m, s] - %gmp[m]) sum(s) : f32
  %sds = attn.einsum [m] = exp(%qks[m, p] - %gm[m]) sum(p) : f32
  %sd = attn.einsum [m] = %sdp[m] + %sds[m] : f32
  %lse = attn.einsum [m] = %gm[m] + log(%sd[m]) : f32
  attn.yield %lse : !attn.t<[m], f32>
}

// -----

// A weighted combination (the suffix counted twice) is not a sum over the
// union of the keys.
// CHECK-LABEL: attn.cascade @weighted
// CHECK-NOT: lse_s
attn.cascade @weighted ranks(m, s, p, e = 8)
    (%q: !attn.t<[m, e], f32>, %kp: !attn.t<[s, e], f32>, %ks: !attn.t<[p, e], f32>) -> (lse: !attn.t<[m], f32>) {
  %qkp = attn.einsum [m, s] = %q[m, e] * %kp[s, e] sum(e) : f32
  %qks = attn.einsum [m, p] = %q[m, e] * %ks[p, e] sum(e) : f32
  %gmp = attn.einsum [m] = %qkp[m, s] max(s) : f32
  %gms = attn.einsum [m] = %qks[m, p] max(p) : f32
  %gm = attn.einsum [m] = max(%gmp[m], %gms[m]) : f32
  %sdp = attn.einsum [m] = exp(%qkp[m, s] - %gm[m]) sum(s) : f32
  %sds = attn.einsum [m] = exp(%qks[m, p] - %gm[m]) sum(p) : f32
  // expected-remark@+1 {{no split form over s, p: 'sdp[m] + 2.0 * sds[m]' combines a reduction over one key rank with '2.0 * sds[m]': with several key ranks (s, p), a combination must hold exactly one counterpart over each}}
  %sd = attn.einsum [m] = %sdp[m] + 2.0 * %sds[m] : f32
  %lse = attn.einsum [m] = %gm[m] + log(%sd[m]) : f32
  attn.yield %lse : !attn.t<[m], f32>
}
