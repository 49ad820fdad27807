// attn-split-kv: the keys in independent parts (FlashDecoding's split for
// decode), each producing its partial (O, LSE), merged by log-sum-exp. This
// file is the algorithm by example; docs/derivation.md (step 7) states it.
// RUN: attn-opt %s --attn-split-kv=split-size=128 -split-input-file -verify-diagnostics | FileCheck %s

// Decode with GQA and the guards of empty rows (|m| > |p| leaves rows
// without keys).
// 1. p becomes ps * 128 + pi: ps numbers the splits, pi the keys of one.
// 2. Each split reduces its own keys against its own max: gm_part, its
//    reference ref_gm_part (0 while the split's max is -inf, so an empty
//    split computes exp(-inf - 0) = 0, never exp(-inf - -inf) = NaN), and
//    the sums sd_part and o_num_part (`/ sd` moved out of the sum first).
// 3. Each split normalises: o_part = o_num_part / sd_part (0 for an empty
//    split), and lse_part = ref_gm_part + log(sd_part), the log of the
//    split's denominator without its max (-inf for an empty split).
// 4. The merge: LSE = log sum_ps exp(lse_part), computed stably around
//    M = max_ps lse_part (0 while -inf: a row whose splits are all empty
//    gets lse = 0 + log(0) = -inf), then O = sum_ps exp(lse_part - lse) *
//    o_part. The guard `if (sd > 0)` of the original becomes
//    `if (lse > -inf)`: a row without keys keeps O = 0, LSE = -inf.
// CHECK-LABEL: attn.cascade @decode
// CHECK-SAME: partition(p -> ps, pi = 128 ragged)
// CHECK: %qk = attn.einsum [b, h, m, ps, pi] = {{.*}} %k[b, h floordiv 4, ps * 128 + pi, e] {{.*}} if (ps * 128 + pi <= m + |p| - |m|) else -inf
// CHECK: %gm_part = attn.einsum [b, h, m, ps] = %qk[b, h, m, ps, pi] max(pi)
// CHECK: %ref_gm_part = attn.einsum [b, h, m, ps] = select(%gm_part[b, h, m, ps] == -inf, 0.0, %gm_part[b, h, m, ps])
// CHECK: %sn = attn.einsum [b, h, m, ps, pi] = exp(%qk[b, h, m, ps, pi] - %ref_gm_part[b, h, m, ps]) if (%gm_part[b, h, m, ps] > -inf)
// CHECK: %sd_part = attn.einsum [b, h, m, ps] = %sn[b, h, m, ps, pi] sum(pi)
// CHECK: %o_num_part = attn.einsum [b, h, m, f, ps] = %sn[b, h, m, ps, pi] * %v[b, h floordiv 4, ps * 128 + pi, f] sum(pi)
// CHECK: %o_part = attn.einsum [b, h, m, f, ps] = %o_num_part[b, h, m, f, ps] / %sd_part[b, h, m, ps] if (%sd_part[b, h, m, ps] > 0.0)
// CHECK: %lse_part = attn.einsum [b, h, m, ps] = %ref_gm_part[b, h, m, ps] + log(%sd_part[b, h, m, ps])
// CHECK: %lse_max = attn.einsum [b, h, m] = %lse_part[b, h, m, ps] max(ps)
// CHECK: %ref_lse_max = attn.einsum [b, h, m] = select(%lse_max[b, h, m] == -inf, 0.0, %lse_max[b, h, m])
// CHECK: %lse_sum = attn.einsum [b, h, m] = exp(%lse_part[b, h, m, ps] - %ref_lse_max[b, h, m]) sum(ps)
// CHECK: %lse = attn.einsum [b, h, m] = %ref_lse_max[b, h, m] + log(%lse_sum[b, h, m])
// CHECK: %o = attn.einsum [b, h, m, f] = exp(%lse_part[b, h, m, ps] - %lse[b, h, m]) * %o_part[b, h, m, f, ps] sum(ps) if (%lse[b, h, m] > -inf)
// CHECK: attn.yield %o, %lse
// expected-remark@+1 {{split p into parts of 128 (ps = ceildiv(|p|, 128) splits, reduced independently); per split: o_part = o_num_part[b, h, m, f, ps] / sd_part[b, h, m, ps] if (sd_part[b, h, m, ps] > 0.0), lse_part = ref_gm_part[b, h, m, ps] + log(sd_part[b, h, m, ps]); merge: lse = log(sum_ps exp(lse_part)), o = sum_ps exp(lse_part - lse) * o_part}}
attn.cascade @decode ranks(b, h, g, m, p, e = 64, f = 64) where(h = 4 * g)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, g, p, e], f32>, %v: !attn.t<[b, g, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h floordiv 4, p, e] * 0.125 sum(e) if (p <= m + |p| - |m|) else -inf : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) if (%gm[b, h, m] > -inf) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h floordiv 4, p, f] / %sd[b, h, m] sum(p) if (%sd[b, h, m] > 0) : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}

// -----

// Generic, not a softmax pattern: exp2 with the scale inside the exponent,
// two outputs over one denominator, and no LSE result. The terms carry
// exp2(-0.5 * gm), so the denominator without its max is
// log(sd) + 0.5 * ln(2) * gm: lse_sd_part (in natural log, as every LSE
// here) holds ref_gm_part * 0.3466 (= 0.5 ln 2). Both outputs share its
// merge; a split that no key reaches (the ragged last one) has
// lse_sd_part = -inf and weight 0.
// CHECK-LABEL: attn.cascade @exp2_two_values
// CHECK: %o1_part = attn.einsum [m, f, ps] = %o1_num_part[m, f, ps] / %sd_part[m, ps] if (%sd_part[m, ps] > 0.0)
// CHECK: %o2_part = attn.einsum [m, f, ps] = %o2_num_part[m, f, ps] / %sd_part[m, ps] if (%sd_part[m, ps] > 0.0)
// CHECK: %lse_sd_part = attn.einsum [m, ps] = %ref_gm_part[m, ps] * 0.34657359027997264 + log(%sd_part[m, ps])
// CHECK: %lse_sd = attn.einsum [m] = %ref_lse_sd_max[m] + log(%lse_sd_sum[m])
// CHECK: %o1 = attn.einsum [m, f] = exp(%lse_sd_part[m, ps] - %lse_sd[m]) * %o1_part[m, f, ps] sum(ps) : f32
// CHECK: %o2 = attn.einsum [m, f] = exp(%lse_sd_part[m, ps] - %lse_sd[m]) * %o2_part[m, f, ps] sum(ps) : f32
// CHECK: attn.yield %o1, %o2
// expected-remark@+1 {{merge: lse_sd = log(sum_ps exp(lse_sd_part)), o1 = sum_ps exp(lse_sd_part - lse_sd) * o1_part, o2 = sum_ps exp(lse_sd_part - lse_sd) * o2_part}}
attn.cascade @exp2_two_values ranks(m, p, e = 16, f = 16)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>, %v1: !attn.t<[p, f], f32>, %v2: !attn.t<[p, f], f32>)
    -> (o1: !attn.t<[m, f], f32>, o2: !attn.t<[m, f], f32>) {
  %s = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) : f32
  %gm = attn.einsum [m] = %s[m, p] max(p) : f32
  %sd = attn.einsum [m] = exp2((%s[m, p] - %gm[m]) * 0.5) sum(p) : f32
  %o1 = attn.einsum [m, f] = exp2((%s[m, p] - %gm[m]) * 0.5) * %v1[p, f] / %sd[m] sum(p) : f32
  %o2 = attn.einsum [m, f] = exp2((%s[m, p] - %gm[m]) * 0.5) * %v2[p, f] / %sd[m] sum(p) : f32
  attn.yield %o1, %o2 : !attn.t<[m, f], f32>, !attn.t<[m, f], f32>
}

// -----

// A paged KV cache: the reductions are written over the partition of p into
// pages (p -> p1, p0 = 16), so the split follows it, one split per page
// (split-size does not apply). Pages past a sequence's end are fully
// masked: their splits are empty and weigh exp(-inf) = 0.
// CHECK-LABEL: attn.cascade @paged
// CHECK-SAME: partition(p -> p1, p0 = 16 ragged)
// CHECK-NOT: partition
// CHECK: %gm_part = attn.einsum [b, m, p1] = %qk[b, m, p1, p0] max(p0)
// CHECK: %o_part = attn.einsum [b, m, f, p1] = %o_num_part[b, m, f, p1] / %sd_part[b, m, p1] if (%sd_part[b, m, p1] > 0.0)
// CHECK: %lse = attn.einsum [b, m] = %ref_lse_max[b, m] + log(%lse_sum[b, m])
// CHECK: %o = attn.einsum [b, m, f] = exp(%lse_part[b, m, p1] - %lse[b, m]) * %o_part[b, m, f, p1] sum(p1) if (%lse[b, m] > -inf)
// expected-remark@+1 {{split p along its existing partition (one split per p1, 16 keys each)}}
attn.cascade @paged ranks(b, m, p, n, e = 8, f = 8) partition(p -> p1, p0 = 16 ragged)
    (%q: !attn.t<[b, m, e], f32>, %k_cache: !attn.t<[n, p0, e], f32>, %v_cache: !attn.t<[n, p0, f], f32>,
     %block_table: !attn.t<[b, p1], i32>, %seq_lens: !attn.t<[b], i32>)
    -> (o: !attn.t<[b, m, f], f32>, lse: !attn.t<[b, m], f32>) {
  %qk = attn.einsum [b, m, p1, p0] = %q[b, m, e] * %k_cache[%block_table[b, p1], p0, e] if (p1 * 16 + p0 < %seq_lens[b]) else -inf : f32
  %gm = attn.einsum [b, m] = %qk[b, m, p1, p0] max(p1, p0) : f32
  %sn = attn.einsum [b, m, p1, p0] = exp(%qk[b, m, p1, p0] - %gm[b, m]) if (%gm[b, m] > -inf) : f32
  %sd = attn.einsum [b, m] = %sn[b, m, p1, p0] sum(p1, p0) : f32
  %o = attn.einsum [b, m, f] = %sn[b, m, p1, p0] * %v_cache[%block_table[b, p1], p0, f] / %sd[b, m] sum(p1, p0) if (%sd[b, m] > 0 and p1 * 16 + p0 < %seq_lens[b]) : f32
  %lse = attn.einsum [b, m] = %gm[b, m] + log(%sd[b, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, m, f], f32>, !attn.t<[b, m], f32>
}

// -----

// Same refusals as attn-derive-online: top-k has no split form.
// CHECK-LABEL: attn.cascade @topk
// CHECK-NOT: partition
attn.cascade @topk ranks(m, p, e = 8)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>) -> (sd: !attn.t<[m], f32>) {
  %s = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) : f32
  // expected-remark@+1 {{no split form over p: 'qk' keeps the top 2 along p}}
  %qk = attn.einsum [m, p] = %s[m, p] topk(2, p) : f32
  %gm = attn.einsum [m] = %qk[m, p] max(p) : f32
  %sd = attn.einsum [m] = exp(%qk[m, p] - %gm[m]) sum(p) : f32
  attn.yield %sd : !attn.t<[m], f32>
}

// -----

// A max of rescaled terms has an online form (attn-derive-online derives
// it) but no (O, LSE) form: it is neither a ratio of sums nor a
// log-sum-exp. The (max, sum) state merge applies (merge=state).
// CHECK-LABEL: attn.cascade @max_consumer
// CHECK-NOT: partition
attn.cascade @max_consumer ranks(m, p, e = 8)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>) -> (pmax: !attn.t<[m], f32>) {
  %s = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) : f32
  %gm = attn.einsum [m] = %s[m, p] max(p) : f32
  // expected-remark@+1 {{no split form over p: 'pmax' is itself a reduction over p: it has no (O, LSE) form (a result must be a ratio N / D of sums over p rescaled by the same max, with D positive, or the log-sum-exp of such a D, as o_num / sd and gm + log(sd) are; merge=state merges the (max, sum) state instead)}}
  %pmax = attn.einsum [m] = exp(%s[m, p] - %gm[m]) max(p) : f32
  attn.yield %pmax : !attn.t<[m], f32>
}

// -----

// A denominator whose terms may be negative (weighted by w) has no
// logarithm: no LSE of a part, no (O, LSE) form.
// CHECK-LABEL: attn.cascade @signed_denominator
// CHECK-NOT: partition
attn.cascade @signed_denominator ranks(m, p, e = 8, f = 8)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>, %v: !attn.t<[p, f], f32>, %w: !attn.t<[p], f32>)
    -> (o: !attn.t<[m, f], f32>) {
  %s = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) : f32
  %gm = attn.einsum [m] = %s[m, p] max(p) : f32
  %sd = attn.einsum [m] = exp(%s[m, p] - %gm[m]) * %w[p] sum(p) : f32
  // expected-remark@+1 {{no split form over p: the denominator 'sd' of 'o' sums terms that are not known to be positive}}
  %o = attn.einsum [m, f] = exp(%s[m, p] - %gm[m]) * %v[p, f] / %sd[m] sum(p) : f32
  attn.yield %o : !attn.t<[m, f], f32>
}

// -----

// A numerator that counts keys its denominator excludes: a split without
// denominator could still have a numerator, which the merge would lose.
// CHECK-LABEL: attn.cascade @numerator_beyond_denominator
// CHECK-NOT: partition
attn.cascade @numerator_beyond_denominator ranks(m, p, e = 8, f = 8)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>, %v: !attn.t<[p, f], f32>)
    -> (o: !attn.t<[m, f], f32>) {
  %s = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) : f32
  %gm = attn.einsum [m] = %s[m, p] max(p) : f32
  %sd = attn.einsum [m] = exp(%s[m, p] - %gm[m]) sum(p) if (p <= m) : f32
  // expected-remark@+1 {{no split form over p: in 'o', 'o_num' sums elements that the denominator 'sd' excludes ('p <= m')}}
  %o = attn.einsum [m, f] = exp(%s[m, p] - %gm[m]) * %v[p, f] / %sd[m] sum(p) : f32
  attn.yield %o : !attn.t<[m, f], f32>
}

// -----

// Several ranks reduced by a max and none named: nothing is split.
// CHECK-LABEL: attn.cascade @two_maxima
// CHECK-NOT: partition
// expected-remark@+1 {{nothing split: several ranks are reduced by a max or min (m, p); name the key rank with rank=<name>, or the key ranks reduced together with rank=<a>,<b>}}
attn.cascade @two_maxima ranks(m, p, e = 8)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>) -> (a: !attn.t<[p], f32>, b: !attn.t<[m], f32>) {
  %s = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) : f32
  %a = attn.einsum [p] = %s[m, p] max(m) : f32
  %b = attn.einsum [m] = %s[m, p] max(p) : f32
  attn.yield %a, %b : !attn.t<[p], f32>, !attn.t<[m], f32>
}
