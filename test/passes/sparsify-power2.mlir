// PowerAttention's mask (examples/power-attention.mlir): query m sees key p
// iff p <= m and the distance m - p is 0 or a power of two, written with
// float functions: `p == m or pow(2.0, floor(log2(m - p))) == m - p`.
// attn-sparsify classifies the `or` as `power2`; attn-lower-cpu visits a
// key tile only when the distances between the task's rows and the tile's
// keys, [first row - last key, last row - first key], hold 0 or a power of
// two (the largest power of two <= the upper end, 1 << (63 - ctlz), against
// the lower end), about 2 log2(|p| / T) tiles per row tile instead of all
// of them; and it evaluates the predicate in a visited tile with integers:
// X >= 0 and X & (X - 1) == 0. A distance that is not row - key (here with
// an offset) stays `element`.
// RUN: attn-opt %s -split-input-file --attn-sparsify -verify-diagnostics | FileCheck %s
// RUN: attn-opt %s -split-input-file --attn-sparsify --attn-derive-online=tile=32 --attn-lower-cpu=row-tile=32 2>/dev/null | FileCheck %s --check-prefix=LOWER

// CHECK-LABEL: attn.cascade @power2
// CHECK: attn.tiles = ["affine", "power2"]
// Per key tile: the distance range, ctlz of its upper end, the test.
// LOWER-LABEL: func.func @power2_tasks(
// LOWER: scf.for
// LOWER: math.ctlz %{{.*}} : i64
// LOWER: arith.shli
// LOWER: arith.ori
// LOWER: scf.if
// In the visited tiles, the predicate on vectors of distances: no float
// log2 or pow is left.
// LOWER: arith.andi %{{.*}}, %{{.*}} : vector<16xindex>
// LOWER-NOT: math.log2
// LOWER-NOT: math.powf
attn.cascade @power2 ranks(b, h, m, p, e = 16, f = 16)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  // expected-remark @below {{conjunct 1 affine (key-tile bounds per row tile, mask-free full tiles); conjunct 2 power2 (a key tile is visited only if the distances from the row tile's rows to its keys include 0 or a power of two)}}
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.25 sum(e) if (p <= m and (p == m or pow(2.0, floor(log2(m - p))) == m - p)) else -inf : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) if (%gm[b, h, m] > -inf) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) if (%sd[b, h, m] > 0) : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}

// -----

// The distance m - p + 3 is not row - key: evaluated per element.
// CHECK-LABEL: attn.cascade @offset
// CHECK: attn.tiles = ["element"]
attn.cascade @offset ranks(b, h, m, p, e = 16, f = 16)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>) {
  // expected-remark @below {{conjunct 1 element}}
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] sum(e) if (p == m + 3 or pow(2.0, floor(log2(m - p + 3))) == m - p + 3) else -inf : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) if (%gm[b, h, m] > -inf) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) if (%sd[b, h, m] > 0) : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}
