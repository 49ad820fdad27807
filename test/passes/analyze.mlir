// RUN: attn-opt %s --attn-analyze --split-input-file -o /dev/null 2>&1 | FileCheck %s
// RUN: attn-opt %s --attn-analyze="per-einsum=true" --split-input-file -o /dev/null 2>&1 | FileCheck %s --check-prefix=EINSUM

/// The plain 3-pass cascade (FuseMax Cascade 4): SN needs the full max GM,
/// O needs the full sum SD.
/// FLOPs by hand (e = f = 64), per point of each Einsum:
///   qk: 64*bhmp points * (2 mul + 1 sum)  = 192*bhmp
///   gm: bhmp * 1 max; sn: bhmp * 1 sub (+ 1 exp); sd: bhmp * 1 sum
///   o:  64*bhmp * (mul + div + sum)       = 192*bhmp
///   lse: bhm * 1 add (+ 1 log)
///   total 387*bhmp + bhm, special bhmp + bhm.
/// Bytes (f32): fused = q, o 256*bhm each + lse 4*bhm + k, v 256*bhp each;
/// unfused adds 4*bhmp for every read or write of qk or sn (6 of them) and
/// 4*bhm for every one of gm, sd, lse (7).

// CHECK: remark: passes(p) = 3; pass 1: qk, gm; pass 2: sn, sd (re-reads qk); pass 3: o (re-reads sn)
// CHECK: remark: passes(e) = 1; pass 1: qk
// CHECK: remark: flops = 387*b*h*m*p + b*h*m; special = b*h*m*p + b*h*m
// CHECK: remark: bytes: fused = 516*b*h*m + 512*b*h*p; unfused = 24*b*h*m*p + 540*b*h*m + 512*b*h*p
// CHECK: remark: buffer: largest = qk, 4*b*h*m*p bytes; peak = 8*b*h*m*p + 4*b*h*m bytes at sn (live: qk, gm, sn)

// EINSUM: remark: einsum qk: level(p) = 1, level(e) = 1; points = 64*b*h*m*p; flops = 192*b*h*m*p (3 per point)
// EINSUM: remark: einsum gm: level(p) = 1; points = b*h*m*p; flops = b*h*m*p (1 per point)
// EINSUM: remark: einsum sn: level(p) = 2; points = b*h*m*p; flops = b*h*m*p (1 per point); special = b*h*m*p (1 per point)
// EINSUM: remark: einsum sd: level(p) = 2; points = b*h*m*p; flops = b*h*m*p (1 per point)
// EINSUM: remark: einsum o: level(p) = 3; points = 64*b*h*m*p; flops = 192*b*h*m*p (3 per point)
// EINSUM: remark: einsum lse: points = b*h*m; flops = b*h*m (1 per point); special = b*h*m (1 per point)
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

/// Deferred division: SNV = sum_p SN * V no longer reads SD, and the division
/// O = SNV / SD does not iterate p, so the cascade is 2-pass.
///   flops: qk 192, gm 1, sn 1, sd 1, snv 64 * (mul + sum) = 128 per bhmp;
///   o 64*bhm divisions, lse bhm: 323*bhmp + 65*bhm.

// CHECK: remark: passes(p) = 2; pass 1: qk, gm; pass 2: sn, sd, snv (re-reads qk)
// CHECK: remark: passes(e) = 1; pass 1: qk
// CHECK: remark: flops = 323*b*h*m*p + 65*b*h*m; special = b*h*m*p + b*h*m

// EINSUM: remark: einsum snv: level(p) = 2; points = 64*b*h*m*p; flops = 128*b*h*m*p (2 per point)
// EINSUM: remark: einsum o: points = 64*b*h*m; flops = 64*b*h*m (1 per point)
attn.cascade @deferred ranks(b, h, m, p, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.125 sum(e) : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %snv = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %snv[b, h, m, f] / %sd[b, h, m] : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}

// -----

/// The hand-written 1-pass FlashAttention cascade (examples/flash-1pass.mlir):
/// the running states RM, RD, RNV are read at p1 / p1 + 1 (prefix reads) and
/// only the epilogue, which does not iterate p, reads them at |p1|.
/// Einsums iterating p1 and p0 count |p| points for the pair (ragged tiles):
///   bhmp:  qk 64 * 3, lm 1, sn 1, ld 1, lnv 64 * 2         = 323
///   bhmp1: rm 1, ref 2 (select, ==), prm 1, rd 2, rnv 64 * 2 = 134
///   bhm:   o 64 (a bound: its condition loads rd), lse 1     = 65
/// Buffers: p is 1-pass, so p1-indexed tensors hold one tile and running
/// states one step: qk is 64 * 4 bytes per (b, h, m).

// CHECK: remark: passes(p) = 1; pass 1: qk, lm, rm, ref, sn, prm, ld, rd, lnv, rnv
// CHECK: remark: passes(e) = 1; pass 1: qk
// CHECK: remark: flops = <= 323*b*h*m*p + 134*b*h*m*p1 + 65*b*h*m; special = b*h*m*p + b*h*m*p1 + b*h*m
// CHECK: remark: bytes: fused = 516*b*h*m + 512*b*h*p; unfused = 2628*b*h*m*p1 + 1056*b*h*m + 512*b*h*p
// CHECK: remark: buffer: largest = qk, 256*b*h*m bytes; peak = 524*b*h*m bytes at lnv (live: rm, sn, prm, rd, lnv)

// EINSUM: remark: einsum rm: level(p) = 1; points = b*h*m*p1; flops = b*h*m*p1 (1 per point)
// EINSUM: remark: einsum ref: level(p) = 1; points = b*h*m*p1; flops = 2*b*h*m*p1 (2 per point)
// EINSUM: remark: einsum rnv: level(p) = 1; points = 64*b*h*m*p1; flops = 128*b*h*m*p1 (2 per point)
// EINSUM: remark: einsum o: points = <= 64*b*h*m; flops = <= 64*b*h*m (1 per point)
attn.cascade @flash ranks(b, h, m, p, e = 64, f = 64) partition(p -> p1, p0 = 64 ragged)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %qk = attn.einsum [b, h, m, p1, p0] = %q[b, h, m, e] * %k[b, h, p1 * 64 + p0, e] * 0.125 sum(e) else -inf : f32
  %lm = attn.einsum [b, h, m, p1] = %qk[b, h, m, p1, p0] max(p0) : f32
  %rm = attn.einsum [b, h, m, p1 + 1] = max(%rm[b, h, m, p1], %lm[b, h, m, p1]) init(-inf) : f32
  %ref = attn.einsum [b, h, m, p1] = select(%rm[b, h, m, p1 + 1] == -inf, 0.0, %rm[b, h, m, p1 + 1]) : f32
  %sn = attn.einsum [b, h, m, p1, p0] = exp(%qk[b, h, m, p1, p0] - %ref[b, h, m, p1]) : f32
  %prm = attn.einsum [b, h, m, p1] = exp(%rm[b, h, m, p1] - %ref[b, h, m, p1]) : f32
  %ld = attn.einsum [b, h, m, p1] = %sn[b, h, m, p1, p0] sum(p0) : f32
  %rd = attn.einsum [b, h, m, p1 + 1] = %rd[b, h, m, p1] * %prm[b, h, m, p1] + %ld[b, h, m, p1] init(0.0) : f32
  %lnv = attn.einsum [b, h, m, p1, f] = %sn[b, h, m, p1, p0] * %v[b, h, p1 * 64 + p0, f] sum(p0) : f32
  %rnv = attn.einsum [b, h, m, p1 + 1, f] = %rnv[b, h, m, p1, f] * %prm[b, h, m, p1] + %lnv[b, h, m, p1, f] init(0.0) : f32
  %o = attn.einsum [b, h, m, f] = %rnv[b, h, m, |p1|, f] / %rd[b, h, m, |p1|] if (%rd[b, h, m, |p1|] > 0) : f32
  %lse = attn.einsum [b, h, m] = %rm[b, h, m, |p1|] + log(%rd[b, h, m, |p1|]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}

// -----

/// Linear attention with phi = elu + 1 = select(x > 0, x + 1.0, exp(x)): no
/// reduction over p is read by anything iterating p, so 1 pass.
///   fq: 64*bhm * (select, >, +) = 192*bhm (+ 64*bhm exp); fk likewise on p
///   a: 64*bhmp * (mul + sum); num: 64*bhmp * (mul + sum); den: bhmp * sum
///   o: 64*bhm divisions
///   total 257*bhmp + 256*bhm + 192*bhp, special 64*bhm + 64*bhp.

// CHECK: remark: passes(p) = 1; pass 1: fk, a, num, den
// CHECK: remark: passes(e) = 1; pass 1: fq, fk, a
// CHECK: remark: flops = 257*b*h*m*p + 256*b*h*m + 192*b*h*p; special = 64*b*h*m + 64*b*h*p

// EINSUM: remark: einsum fq: level(e) = 1; points = 64*b*h*m; flops = 192*b*h*m (3 per point); special = 64*b*h*m (1 per point)
attn.cascade @linear ranks(b, h, m, p, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>) {
  %fq = attn.einsum [b, h, m, e] = select(%q[b, h, m, e] > 0, %q[b, h, m, e] + 1.0, exp(%q[b, h, m, e])) : f32
  %fk = attn.einsum [b, h, p, e] = select(%k[b, h, p, e] > 0, %k[b, h, p, e] + 1.0, exp(%k[b, h, p, e])) : f32
  %a = attn.einsum [b, h, m, p] = %fq[b, h, m, e] * %fk[b, h, p, e] sum(e) : f32
  %num = attn.einsum [b, h, m, f] = %a[b, h, m, p] * %v[b, h, p, f] sum(p) : f32
  %den = attn.einsum [b, h, m] = %a[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %num[b, h, m, f] / %den[b, h, m] : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}

// -----

/// Causal attention with static sizes: the mask p <= m is enumerated, so qk
/// is counted exactly. b = 2, h = 4, m = p = 128, e = f = 64:
///   qk: 128*129/2 = 8256 visible (m, p) pairs * b*h*e = 512 -> 4227072 points
///       * 3 (2 mul + sum) = 12681216
///   gm, sn, sd: 2*4*128*128 = 131072 points * 1 each = 393216
///   o: 131072 * 64 = 8388608 points * 3 = 25165824
///   lse: 2*4*128 = 1024
///   total 12681216 + 393216 + 25165824 + 1024 = 38241280
///   special: sn 131072 exp + lse 1024 log = 132096

// CHECK: remark: passes(p) = 3; pass 1: qk, gm; pass 2: sn, sd (re-reads qk); pass 3: o (re-reads sn)
// CHECK: remark: flops = 38241280 (~3.82e+07); special = 132096
// CHECK: remark: bytes: fused = 1052672 (~1.05e+06); unfused = 4222976 (~4.22e+06)

// EINSUM: remark: einsum qk: level(p) = 1, level(e) = 1; points = 4227072 (~4.23e+06); flops = 12681216 (~1.27e+07) (3 per point)
// EINSUM: remark: einsum gm: level(p) = 1; points = 131072; flops = 131072 (1 per point)
attn.cascade @causal ranks(b = 2, h = 4, m = 128, p = 128, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.125 sum(e) if (p <= m) else -inf : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}

// -----

/// A causal mask on a ragged partition with static sizes: the enumeration
/// runs over m, p1, p0 and drops the ragged remainder p1 * 64 + p0 >= 100.
/// m = p = 100, tiles of 64 (|p1| = 2), e = 64:
///   qk: sum over m of (m + 1) = 5050 pairs * e = 323200 points * 2 = 646400
///   lm: |m| * |p| = 10000 points * 1 max; rm: |m| * |p1| = 200 * 1 max
///   fin: 100 points, no arithmetic
///   total 646400 + 10000 + 200 = 656600

// CHECK: remark: passes(p) = 1; pass 1: qk, lm, rm
// CHECK: remark: flops = 656600; special = 0

// EINSUM: remark: einsum qk: level(p) = 1, level(e) = 1; points = 323200; flops = 646400 (2 per point)
// EINSUM: remark: einsum lm: level(p) = 1; points = 10000; flops = 10000 (1 per point)
attn.cascade @ragged ranks(m = 100, p = 100, e = 64) partition(p -> p1, p0 = 64 ragged)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>) -> (rm: !attn.t<[m], f32>) {
  %qk = attn.einsum [m, p1, p0] = %q[m, e] * %k[p1 * 64 + p0, e] sum(e) if (p1 * 64 + p0 <= m) else -inf : f32
  %lm = attn.einsum [m, p1] = %qk[m, p1, p0] max(p0) : f32
  %rm = attn.einsum [m, p1 + 1] = max(%rm[m, p1], %lm[m, p1]) init(-inf) : f32
  %fin = attn.einsum [m] = %rm[m, |p1|] : f32
  attn.yield %fin : !attn.t<[m], f32>
}

// -----

/// Grouped-query attention: K and V have g = h / 4 heads (where h = 4 * g),
/// read at h floordiv 4 (index arithmetic is free). The FLOPs are those of
/// MHA; K and V hold 64 * 4 bytes per (b, g, p), i.e. 64*b*h*p each.

// CHECK: remark: passes(p) = 3; pass 1: qk, gm; pass 2: sn, sd (re-reads qk); pass 3: o (re-reads sn)
// CHECK: remark: flops = 387*b*h*m*p + b*h*m; special = b*h*m*p + b*h*m
// CHECK: remark: bytes: fused = 516*b*h*m + 128*b*h*p; unfused = 24*b*h*m*p + 540*b*h*m + 128*b*h*p
attn.cascade @gqa ranks(b, h, g, m, p, e = 64, f = 64) where(h = 4 * g)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, g, p, e], f32>, %v: !attn.t<[b, g, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h floordiv 4, p, e] * 0.125 sum(e) : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h floordiv 4, p, f] / %sd[b, h, m] sum(p) : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}

// -----

/// Every size dynamic, bf16 inputs and an i1 mask (runtime data, so the
/// masked Einsum is a bound): head dims appear as variables. Terms print by
/// degree, then in declaration order of the ranks (b, h, m, p, e, f).
///   qk <= 2*bhmpe (mul + sum); gm, sn, sd 1 each per bhmp;
///   snv 2*bhmpf (mul + sum); o bhmf (div).
/// Bytes: bf16 is 2 bytes, f32 4, i1 1/8. Unfused: qk, sn written once and
/// read twice each (6 * 4*bhmp); snv written and read (2 * 4*bhmf) plus o
/// written (4*bhmf); gm, sd written once and read once each (4 * 4*bhm).

// CHECK: remark: passes(p) = 2; pass 1: qk, gm; pass 2: sn, sd, snv (re-reads qk)
// CHECK: remark: passes(e) = 1; pass 1: qk
// CHECK: remark: flops = <= 2*b*h*m*p*e + 2*b*h*m*p*f + 3*b*h*m*p + b*h*m*f; special = b*h*m*p
// CHECK: remark: bytes: fused = 2*b*h*m*e + 4*b*h*m*f + 2*b*h*p*e + 2*b*h*p*f + 0.125*m*p;
// CHECK-SAME: unfused = 24*b*h*m*p + 2*b*h*m*e + 12*b*h*m*f + 2*b*h*p*e + 2*b*h*p*f + 16*b*h*m + 0.125*m*p
// CHECK: remark: buffer: largest = qk, 4*b*h*m*p bytes; peak = 8*b*h*m*p + 4*b*h*m bytes at sn (live: qk, gm, sn)
attn.cascade @dynamic ranks(b, h, m, p, e, f)
    (%q: !attn.t<[b, h, m, e], bf16>, %k: !attn.t<[b, h, p, e], bf16>, %v: !attn.t<[b, h, p, f], bf16>,
     %mask: !attn.t<[m, p], i1>)
    -> (o: !attn.t<[b, h, m, f], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] sum(e) if (%mask[m, p]) else -inf : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %snv = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %snv[b, h, m, f] / %sd[b, h, m] : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}
