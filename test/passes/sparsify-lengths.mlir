// An upper bound on the key read from a per-sequence length: the mask of a
// KV cache whose sequence b holds seq_lens[b] tokens and whose |m| queries
// are its last tokens, p <= seq_lens[b] - |m| + m (examples/paged-kv.mlir,
// the decode and chunked-prefill mask). attn-sparsify classifies it as a
// `prefix` conjunct with one bound (affine in the row plus a length read at
// the task's batch entry); attn-lower-cpu ends each row tile's key loop
// after the tile of the last row's bound and makes the tiles up to the
// first row's bound mask-free. A bound that decreases with the row, or that
// reads a length at the row, stays `element`.
// RUN: attn-opt %s -split-input-file --attn-sparsify -verify-diagnostics | FileCheck %s
// RUN: attn-opt %s -split-input-file --attn-sparsify --attn-derive-online=tile=32 --attn-lower-cpu=row-tile=32 2>/dev/null | FileCheck %s --check-prefix=LOWER

// CHECK-LABEL: attn.cascade @kv_lengths
// CHECK: attn.tiles = ["prefix"]
// The bound at the last row of the tile ends the key loop, the bound at
// the first row ends the mask-free tiles: seq_lens[b] - |m| + row, twice.
// LOWER-LABEL: func.func @kv_lengths_tasks(
// LOWER: memref.load %arg4[%{{.*}}] : memref<?xi32, strided<[?], offset: ?>>
// LOWER: arith.subi
// LOWER: arith.addi
// LOWER: memref.load %arg4[%{{.*}}] : memref<?xi32, strided<[?], offset: ?>>
// LOWER: arith.subi
// LOWER: arith.addi
// LOWER: %[[LAST:[0-9]+]] = arith.floordivsi %{{.*}}, %c32
// LOWER: arith.addi %[[LAST]], %c1
// LOWER: arith.floordivsi %{{.*}}, %c32
// LOWER: scf.for
attn.cascade @kv_lengths ranks(b, h, m, p, e = 16, f = 16)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>,
     %seq_lens: !attn.t<[b], i32> {attn.sparse = #attn.sparse<seq_lens>})
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  // expected-remark @below {{conjunct 1 prefix (the key loop ends after the largest upper bound of the row tile, mask-free full tiles below the smallest); empty tiles are skipped, the mask is evaluated only in partial tiles}}
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.25 sum(e) if (p <= %seq_lens[b] - |m| + m) else -inf : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) if (%gm[b, h, m] > -inf) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) if (%sd[b, h, m] > 0) : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}

// -----

// The bound decreases as the row grows: not a prefix.
// CHECK-LABEL: attn.cascade @decreasing
// CHECK: attn.tiles = ["element"]
attn.cascade @decreasing ranks(b, h, m, p, e = 16, f = 16)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>,
     %seq_lens: !attn.t<[b], i32> {attn.sparse = #attn.sparse<seq_lens>})
    -> (o: !attn.t<[b, h, m, f], f32>) {
  // expected-remark @below {{conjunct 1 element}}
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] sum(e) if (p <= %seq_lens[b] - m) else -inf : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) if (%gm[b, h, m] > -inf) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) if (%sd[b, h, m] > 0) : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}

// -----

// A length read at the row (per query, not per task): not a prefix.
// CHECK-LABEL: attn.cascade @per_row
// CHECK: attn.tiles = ["element"]
attn.cascade @per_row ranks(b, h, m, p, e = 16, f = 16)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>,
     %lens: !attn.t<[b, m], i32> {attn.sparse = #attn.sparse<seq_lens>})
    -> (o: !attn.t<[b, h, m, f], f32>) {
  // expected-remark @below {{conjunct 1 element}}
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] sum(e) if (p < %lens[b, m]) else -inf : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) if (%gm[b, h, m] > -inf) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) if (%sd[b, h, m] > 0) : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}
