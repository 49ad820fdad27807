// attn-sparsify: which masks the CPU kernels classify per (row tile, key
// tile) and how (docs/sparsify.md). The class of each conjunct is recorded
// as attn.tiles on the score Einsum and reported as a remark; attn-lower-cpu
// consumes it (test/passes/lower-cpu-sparse.mlir).
// RUN: attn-opt %s -split-input-file --attn-sparsify -verify-diagnostics | FileCheck %s
// RUN: not attn-opt %s -split-input-file --attn-sparsify=metadata=false 2>/dev/null | FileCheck %s --check-prefix=NOMETA

// Causal: an affine bound gives the key loop's bounds and the full tiles.
// CHECK-LABEL: attn.cascade @causal
// CHECK: %qk = attn.einsum {{.*}} {attn.tiles = ["affine"]}
// NOMETA-LABEL: attn.cascade @causal
// NOMETA: {attn.tiles = ["affine"]}
attn.cascade @causal ranks(b, h, m, p, e = 16, f = 16)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>) {
  // expected-remark @below {{attn-sparsify: mask of 'qk' over key tiles of p and row tiles of m: conjunct 1 affine (key-tile bounds per row tile, mask-free full tiles); empty tiles are skipped, the mask is evaluated only in partial tiles}}
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] sum(e) if (p <= m) else -inf : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}

// -----

// Document mask (segment ids, unsorted allowed), causal: the id ranges of
// the row tile and of each key tile decide empty and full tiles; p <= m
// bounds the key loop. With metadata=false the ids stay per element.
// CHECK-LABEL: attn.cascade @document_causal
// CHECK: {attn.tiles = ["segment_ids", "affine"]}
// NOMETA-LABEL: attn.cascade @document_causal
// NOMETA: {attn.tiles = ["element", "affine"]}
attn.cascade @document_causal ranks(b, h, m, p, e = 16, f = 16)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>,
     %seg_q: !attn.t<[b, m], i32> {attn.sparse = #attn.sparse<segment_ids>},
     %seg_k: !attn.t<[b, p], i32> {attn.sparse = #attn.sparse<segment_ids>})
    -> (o: !attn.t<[b, h, m, f], f32>) {
  // expected-remark @below {{conjunct 1 segment_ids (per-tile id ranges: empty tiles skipped, mask-free full tiles); conjunct 2 affine (key-tile bounds per row tile, mask-free full tiles); empty tiles are skipped, the mask is evaluated only in partial tiles}}
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] sum(e) if (%seg_q[b, m] == %seg_k[b, p] and p <= m) else -inf : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) if (%gm[b, h, m] > -inf) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) if (%sd[b, h, m] > 0) : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}

// -----

// Varlen: the sequence ids count cu_seqlens boundaries; the key loop of a
// row tile runs over its sequences' keys only, and the bound |n| - 1 makes
// padding rows see nothing.
// CHECK-LABEL: attn.cascade @varlen
// CHECK: {attn.tiles = ["varlen", "varlen_bound"]}
// NOMETA-LABEL: attn.cascade @varlen
// NOMETA: {attn.tiles = ["element", "element"]}
attn.cascade @varlen ranks(h, m, p, n, e = 16, f = 16)
    (%q: !attn.t<[m, h, e], f32>, %k: !attn.t<[p, h, e], f32>, %v: !attn.t<[p, h, f], f32>,
     %cu_seqlens_q: !attn.t<[n], i32> {attn.sparse = #attn.sparse<cu_seqlens>},
     %cu_seqlens_k: !attn.t<[n], i32> {attn.sparse = #attn.sparse<cu_seqlens>})
    -> (o: !attn.t<[m, h, f], f32>) {
  %sq = attn.einsum [m] = 1 sum(n) if (n >= 1 and %cu_seqlens_q[n] <= m) : i32
  %sk = attn.einsum [p] = 1 sum(n) if (n >= 1 and %cu_seqlens_k[n] <= p) : i32
  // expected-remark @below {{conjunct 1 varlen (key tiles of the row tile's sequences as loop bounds, mask-free full tiles); conjunct 2 varlen_bound (padding rows past the last boundary see no key)}}
  %qk = attn.einsum [h, m, p] = %q[m, h, e] * %k[p, h, e] sum(e) if (%sq[m] == %sk[p] and %sq[m] < |n| - 1) else -inf : f32
  %gm = attn.einsum [h, m] = %qk[h, m, p] max(p) : f32
  %sn = attn.einsum [h, m, p] = exp(%qk[h, m, p] - %gm[h, m]) if (%gm[h, m] > -inf) : f32
  %sd = attn.einsum [h, m] = %sn[h, m, p] sum(p) : f32
  %o = attn.einsum [m, h, f] = %sn[h, m, p] * %v[p, h, f] / %sd[h, m] sum(p) if (%sd[h, m] > 0) : f32
  attn.yield %o : !attn.t<[m, h, f], f32>
}

// -----

// Prefix-LM (p < prefix_len[b] or p <= m): an `or` of upper bounds on the
// key, one read from metadata per sequence; a row sees the keys up to
// max(prefix_len[b] - 1, m). The key loop ends after the last row's bound;
// tiles below the first row's bound are full.
// CHECK-LABEL: attn.cascade @prefix_lm
// CHECK: {attn.sparse = #attn.sparse<prefix>, attn.tiles = ["prefix"]}
attn.cascade @prefix_lm ranks(b, h, m, p, e = 16, f = 16)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>,
     %prefix_len: !attn.t<[b], i32> {attn.sparse = #attn.sparse<seq_lens>})
    -> (o: !attn.t<[b, h, m, f], f32>) {
  // expected-remark @below {{conjunct 1 prefix (the key loop ends after the largest upper bound of the row tile, mask-free full tiles below the smallest); empty tiles are skipped, the mask is evaluated only in partial tiles}}
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] sum(e) if (p < %prefix_len[b] or p <= m) else -inf {attn.sparse = #attn.sparse<prefix>} : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}

// -----

// Refused: an `or` with a lower bound on the key (a sink of 4 keys or a
// window) is not an upper bound; it is evaluated per element in every tile.
// CHECK-LABEL: attn.cascade @sinks
// CHECK: {attn.tiles = ["element"]}
attn.cascade @sinks ranks(b, h, m, p, e = 16, f = 16)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>) {
  // expected-remark @below {{conjunct 1 element (evaluated per element: an `or` that is not of upper bounds on the key); no tile is skipped and the mask is evaluated in every tile}}
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] sum(e) if (p < 4 or p >= m - 16) else -inf : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}

// -----

// Refused: an equality of ids read through another Einsum (a block layout
// expanded to a dense block mask) is not a per-row / per-key equality; with
// a window it still bounds the loop, but no tile is full.
// CHECK-LABEL: attn.cascade @blocks
// CHECK: {attn.tiles = ["element", "affine"]}
attn.cascade @blocks ranks(b, h, m, p, e = 16, f = 16)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>,
     %ids: !attn.t<[b, p], i32> {attn.sparse = #attn.sparse<segment_ids>})
    -> (o: !attn.t<[b, h, m, f], f32>) {
  %blk = attn.einsum [b, m, p] = %ids[b, p] * 2 : i32
  // expected-remark @below {{conjunct 1 element (evaluated per element: an equality whose sides are not one per row and one per key (cascade arguments only)); conjunct 2 affine (key-tile bounds per row tile, mask-free full tiles); empty tiles are skipped, no tile is full (the mask is evaluated in every tile visited)}}
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] sum(e) if (%blk[b, m, p] == 4 and p >= m - 32) else -inf : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) if (%gm[b, h, m] > -inf) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) if (%sd[b, h, m] > 0) : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}

// -----

// No mask with else -inf: nothing to classify, no annotation.
// CHECK-LABEL: attn.cascade @dense
// CHECK-NOT: attn.tiles
// expected-remark @below {{attn-sparsify: no mask with 'else -inf': every key tile is visited}}
attn.cascade @dense ranks(b, h, m, p, e = 16, f = 16)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] sum(e) : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}

// -----

// An annotation that does not list one class per conjunct is rejected.
attn.cascade @bad ranks(b, h, m, p, e = 16, f = 16)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>)
    -> (qk: !attn.t<[b, h, m, p], f32>) {
  // expected-error @below {{'attn.tiles' must list one class per conjunct of the condition (2)}}
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] sum(e) if (p <= m and p >= m - 4) else -inf {attn.tiles = ["affine"]} : f32
  attn.yield %qk : !attn.t<[b, h, m, p], f32>
}
