// attn-derive-online turns the plain softmax cascade into FlashAttention's
// 1-pass cascade. This file is the algorithm by example; docs/derivation.md
// states the rule.
// RUN: attn-opt %s --attn-derive-online -split-input-file -verify-diagnostics | FileCheck %s
// RUN: attn-opt %s --attn-derive-online -split-input-file -verify-diagnostics | attn-opt --attn-analyze -split-input-file 2>&1 | FileCheck %s --check-prefix=CERT

// The plain 3-pass cascade (FuseMax Cascade 4) with LSE.
// 1. `/ sd` does not depend on p: it moves out of the sum (o_num, then o).
// 2. p becomes p1 * 64 + p0 (ragged: |p| is dynamic).
// 3. Each reduction over p: a local one over the tile (l_x) and a running
//    one along p1 (r_x, iterative, starting at the identity).
// 4. The running max has a reference that is 0 while it is -inf (ref_gm);
//    every exponent subtracts it.
// 5. The running sums carry exp(-max), so they are rescaled by
//    c_gm = exp(old max - new max) before the tile is added.
// 6. Readers outside the loop read the final values (gm = r_gm[|p1|]).
// CHECK-LABEL: attn.cascade @mha
// CHECK-SAME: partition(p -> p1, p0 = 64 ragged)
// CHECK: %qk = attn.einsum [b, h, m, p1, p0] = %q[b, h, m, e] * %k[b, h, p1 * 64 + p0, e] * 0.125 sum(e)
// CHECK: %l_gm = attn.einsum [b, h, m, p1] = %qk[b, h, m, p1, p0] max(p0)
// CHECK: %r_gm = attn.einsum [b, h, m, p1 + 1] = max(%r_gm[b, h, m, p1], %l_gm[b, h, m, p1]) init(-inf)
// CHECK: %ref_gm = attn.einsum [b, h, m, p1] = select(%r_gm[b, h, m, p1 + 1] == -inf, 0.0, %r_gm[b, h, m, p1 + 1])
// CHECK: %c_gm = attn.einsum [b, h, m, p1] = exp(%r_gm[b, h, m, p1] - %ref_gm[b, h, m, p1])
// CHECK: %gm = attn.einsum [b, h, m] = %r_gm[b, h, m, |p1|]
// CHECK: %sn = attn.einsum [b, h, m, p1, p0] = exp(%qk[b, h, m, p1, p0] - %ref_gm[b, h, m, p1])
// CHECK: %l_sd = attn.einsum [b, h, m, p1] = %sn[b, h, m, p1, p0] sum(p0)
// CHECK: %r_sd = attn.einsum [b, h, m, p1 + 1] = %r_sd[b, h, m, p1] * %c_gm[b, h, m, p1] + %l_sd[b, h, m, p1] init(0.0)
// CHECK: %sd = attn.einsum [b, h, m] = %r_sd[b, h, m, |p1|]
// CHECK: %l_o_num = attn.einsum [b, h, m, f, p1] = %sn[b, h, m, p1, p0] * %v[b, h, p1 * 64 + p0, f] sum(p0)
// CHECK: %r_o_num = attn.einsum [b, h, m, f, p1 + 1] = %r_o_num[b, h, m, f, p1] * %c_gm[b, h, m, p1] + %l_o_num[b, h, m, f, p1] init(0.0)
// CHECK: %o_num = attn.einsum [b, h, m, f] = %r_o_num[b, h, m, f, |p1|]
// CHECK: %o = attn.einsum [b, h, m, f] = %o_num[b, h, m, f] / %sd[b, h, m] : f32
// CHECK: %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m])
// CHECK: attn.yield %o, %lse
// CERT: passes(p) = 1
// expected-remark@+1 {{derived the 1-pass form over p (tiles of 64): passes(p) 3 -> 1; running max/min: r_gm; running sums: r_sd, r_o_num; corrections: c_gm = exp(r_gm[b, h, m, p1] - ref_gm[b, h, m, p1]); moved out of sums: o = o_num / sd[b, h, m]}}
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

// -----

// Causal mask with the guards of fully masked rows. The mask stays on the
// scores (now over p1 * 64 + p0); the guard `gm > -inf` reads the running
// max inside the loop (exact: a tile the max has not reached is all -inf);
// the guard `sd > 0` moves out of the sum with `/ sd`. |p| = 256 is a
// multiple of the tile: no ragged remainder.
// CHECK-LABEL: attn.cascade @causal
// CHECK-SAME: partition(p -> p1, p0 = 64)
// CHECK: %qk = attn.einsum [b, m, p1, p0] = {{.*}} if (p1 * 64 + p0 <= m) else -inf {attn.sparse = #attn.sparse<causal>}
// CHECK: %sn = attn.einsum [b, m, p1, p0] = exp(%qk[b, m, p1, p0] - %ref_gm[b, m, p1]) if (%r_gm[b, m, p1 + 1] > -inf)
// CHECK: %o = attn.einsum [b, m, f] = %o_num[b, m, f] / %sd[b, m] if (%sd[b, m] > 0)
// CERT: passes(p) = 1
// expected-remark@+1 {{passes(p) 3 -> 1}}
attn.cascade @causal ranks(b, m, p = 256, e = 64, f = 64)
    (%q: !attn.t<[b, m, e], f32>, %k: !attn.t<[b, p, e], f32>, %v: !attn.t<[b, p, f], f32>)
    -> (o: !attn.t<[b, m, f], f32>) {
  %qk = attn.einsum [b, m, p] = %q[b, m, e] * %k[b, p, e] * 0.125 sum(e) if (p <= m) else -inf {attn.sparse = #attn.sparse<causal>} : f32
  %gm = attn.einsum [b, m] = %qk[b, m, p] max(p) : f32
  %sn = attn.einsum [b, m, p] = exp(%qk[b, m, p] - %gm[b, m]) if (%gm[b, m] > -inf) : f32
  %sd = attn.einsum [b, m] = %sn[b, m, p] sum(p) : f32
  %o = attn.einsum [b, m, f] = %sn[b, m, p] * %v[b, p, f] / %sd[b, m] sum(p) if (%sd[b, m] > 0) : f32
  attn.yield %o : !attn.t<[b, m, f], f32>
}

// -----

// exp2 with the scale inside the exponent, and two value tensors: the
// correction is exp2((old - new) * 0.5), shared by the denominator and both
// numerators. The softmax is written without a separate sn Einsum.
// CHECK-LABEL: attn.cascade @exp2_two_values
// CHECK: %c_gm = attn.einsum [m, p1] = exp2((%r_gm[m, p1] - %ref_gm[m, p1]) * 0.5)
// CHECK: %r_sd = attn.einsum [m, p1 + 1] = %r_sd[m, p1] * %c_gm[m, p1] + %l_sd[m, p1]
// CHECK: %l_o1_num = attn.einsum [m, f, p1] = exp2((%s[m, p1, p0] - %ref_gm[m, p1]) * 0.5) * %v1[p1 * 64 + p0, f] sum(p0)
// CHECK: %r_o1_num = attn.einsum [m, f, p1 + 1] = %r_o1_num[m, f, p1] * %c_gm[m, p1] + %l_o1_num[m, f, p1]
// CHECK: %r_o2_num = attn.einsum [m, f, p1 + 1] = %r_o2_num[m, f, p1] * %c_gm[m, p1] + %l_o2_num[m, f, p1]
// CHECK: attn.yield %o1, %o2
// CERT: passes(p) = 1
// expected-remark@+1 {{passes(p) 3 -> 1; running max/min: r_gm; running sums: r_sd, r_o1_num, r_o2_num; corrections: c_gm = exp2((r_gm[m, p1] - ref_gm[m, p1]) * 0.5)}}
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

// A max of rescaled terms (a max consumer): the correction is nonnegative,
// so it distributes over max too.
// CHECK-LABEL: attn.cascade @max_consumer
// CHECK: %r_pmax = attn.einsum [m, p1 + 1] = max(%r_pmax[m, p1] * %c_gm[m, p1], %l_pmax[m, p1]) init(-inf)
// expected-remark@+1 {{passes(p) 2 -> 1}}
attn.cascade @max_consumer ranks(m, p, e = 8)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>) -> (pmax: !attn.t<[m], f32>) {
  %s = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) : f32
  %gm = attn.einsum [m] = %s[m, p] max(p) : f32
  %pmax = attn.einsum [m] = exp(%s[m, p] - %gm[m]) max(p) : f32
  attn.yield %pmax : !attn.t<[m], f32>
}

// -----

// Already 1-pass: linear attention has no reduction read in full.
// CHECK-LABEL: attn.cascade @linear
// CHECK-NOT: partition
// expected-remark@+1 {{already 1-pass over every rank; nothing to derive}}
attn.cascade @linear ranks(m, p, e = 8, f = 8)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>, %v: !attn.t<[p, f], f32>) -> (o: !attn.t<[m, f], f32>) {
  %a = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) : f32
  %num = attn.einsum [m, f] = %a[m, p] * %v[p, f] sum(p) : f32
  %den = attn.einsum [m] = %a[m, p] sum(p) : f32
  %o = attn.einsum [m, f] = %num[m, f] / %den[m] : f32
  attn.yield %o : !attn.t<[m, f], f32>
}

// -----

// Two passes over the head dim e (scores, then an output over e, as in a
// backward pass) but no max or min over e: no correction chain to derive.
// CHECK-LABEL: attn.cascade @two_passes_no_max
// CHECK-NOT: partition
// expected-remark@+1 {{nothing to derive: no max or min reduces e (the rank(s) with more than 1 pass(es)); name a rank with rank=<name> to try anyway}}
attn.cascade @two_passes_no_max ranks(m, p, e = 8)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>) -> (dq: !attn.t<[m, e], f32>) {
  %s = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) : f32
  %dq = attn.einsum [m, e] = %s[m, p] * %k[p, e] sum(p) : f32
  attn.yield %dq : !attn.t<[m, e], f32>
}

// -----

// A paged KV cache: the reductions are written over the partition of p into
// pages (max(p1, p0)), so the derivation iterates the page rank p1 and takes
// a page (16 slots) as its tile; no partition is added and tile= does not
// apply. The gathers through the block table stay as written.
// CHECK-LABEL: attn.cascade @paged
// CHECK-SAME: partition(p -> p1, p0 = 16 ragged)
// CHECK-NOT: partition
// CHECK: %l_gm = attn.einsum [b, m, p1] = %qk[b, m, p1, p0] max(p0)
// CHECK: %r_gm = attn.einsum [b, m, p1 + 1] = max(%r_gm[b, m, p1], %l_gm[b, m, p1]) init(-inf)
// CHECK: %sn = attn.einsum [b, m, p1, p0] = exp(%qk[b, m, p1, p0] - %ref_gm[b, m, p1]) if (%r_gm[b, m, p1 + 1] > -inf)
// CHECK: %l_o_num = attn.einsum [b, m, f, p1] = %sn[b, m, p1, p0] * %v_cache[%block_table[b, p1], p0, f] sum(p0) if (p1 * 16 + p0 < %seq_lens[b])
// CHECK: %o = attn.einsum [b, m, f] = %o_num[b, m, f] / %sd[b, m] if (%sd[b, m] > 0)
// CERT: passes(p) = 1
// expected-remark@+1 {{derived the 1-pass form over p (the declared partition p -> p1, p0 = 16): passes(p) 3 -> 1}}
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

// A declared partition of p that the reductions do not use (the key blocks
// of a block-sparse layout) is the tiling: p is rewritten as p1 * 32 + p0
// with its ranks, one tile per key block.
// CHECK-LABEL: attn.cascade @blocks
// CHECK-SAME: partition(p -> p1, p0 = 32 ragged)
// CHECK-NOT: partition
// CHECK: %qk = attn.einsum [m, p1, p0] = %q[m, e] * %k[p1 * 32 + p0, e] sum(e) if (%mask[m floordiv 32, p1 + p0 floordiv 32] > 0) else -inf
// CHECK: %l_gm = attn.einsum [m, p1] = %qk[m, p1, p0] max(p0)
// CERT: passes(p) = 1
// expected-remark@+1 {{derived the 1-pass form over p (the declared partition p -> p1, p0 = 32): passes(p) 3 -> 1}}
attn.cascade @blocks ranks(m, p, n, e = 8, f = 8) partition(p -> p1, p0 = 32 ragged)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>, %v: !attn.t<[p, f], f32>, %mask: !attn.t<[n, p1], i32>)
    -> (o: !attn.t<[m, f], f32>) {
  %qk = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) if (%mask[m floordiv 32, p floordiv 32] > 0) else -inf : f32
  %gm = attn.einsum [m] = %qk[m, p] max(p) : f32
  %sn = attn.einsum [m, p] = exp(%qk[m, p] - %gm[m]) if (%gm[m] > -inf) : f32
  %sd = attn.einsum [m] = %sn[m, p] sum(p) : f32
  %o = attn.einsum [m, f] = %sn[m, p] * %v[p, f] / %sd[m] sum(p) if (%sd[m] > 0) : f32
  attn.yield %o : !attn.t<[m, f], f32>
}

// -----

// The reference of the max written out (ref_gm, as in the parts that
// attn-split-kv makes): inside the loop it reads as the running reference,
// which is what the derivation subtracts anyway; outside, the original
// reads the final max.
// CHECK-LABEL: attn.cascade @reference
// CHECK: %ref_gm = attn.einsum [m, p1] = select(%r_gm[m, p1 + 1] == -inf, 0.0, %r_gm[m, p1 + 1])
// CHECK: %ref_gm_0 = attn.einsum [m] = select(%gm[m] == -inf, 0.0, %gm[m])
// CHECK: %sn = attn.einsum [m, p1, p0] = exp(%s[m, p1, p0] - %ref_gm[m, p1])
// CHECK: %lse = attn.einsum [m] = %ref_gm_0[m] + log(%sd[m])
// CERT: passes(p) = 1
// expected-remark@+1 {{passes(p) 2 -> 1}}
attn.cascade @reference ranks(m, p, e = 8)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>) -> (lse: !attn.t<[m], f32>) {
  %s = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) : f32
  %gm = attn.einsum [m] = %s[m, p] max(p) : f32
  %ref_gm = attn.einsum [m] = select(%gm[m] == -inf, 0.0, %gm[m]) : f32
  %sn = attn.einsum [m, p] = exp(%s[m, p] - %ref_gm[m]) : f32
  %sd = attn.einsum [m] = %sn[m, p] sum(p) : f32
  %lse = attn.einsum [m] = %ref_gm[m] + log(%sd[m]) : f32
  attn.yield %lse : !attn.t<[m], f32>
}
