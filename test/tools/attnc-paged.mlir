// attnc on a paged KV cache (examples/paged-kv.mlir, pages of 16 tokens):
// the cache [n, p0, g, e] and the block table [b, p1] use the partition
// ranks of p -> p1, p0. The rank table lists them after the declared ranks,
// |p0| = 16 and |p| = 16 |p1| (from the block table's width), and the entry
// point checks the block table's entries against |n|, the page count of the
// cache they index.
// RUN: attnc %S/../../examples/paged-kv.mlir -o %t/paged --target=x86_64-avx512 2>/dev/null
// RUN: FileCheck %s < %t/paged.h
// CHECK: Relations: |h| = 4 * |g|, |p| = 16 * |p1|
// CHECK: k_cache: input, float32 [n, p0=16, g, e=64]
// CHECK: block_table: input, int32 [b, p1], indices: every value in [0, |n|)
// CHECK: seq_lens: input, int32 [b]
//
// An argument over p next to one over p1 would give |p| twice; refused.
// RUN: not attnc %s -o %t/both 2>&1 | FileCheck %s --check-prefix=BOTH
// BOTH: error: attnc: an argument uses the rank p and another its partition rank p1; not supported yet (|p| = 16 * |p1| is derived)
attn.cascade @both ranks(b, m, p, e = 16, f = 16) partition(p -> p1, p0 = 16 ragged)
    (%q: !attn.t<[b, m, e], f32>, %k: !attn.t<[b, p, e], f32>, %v: !attn.t<[b, p, f], f32>,
     %keep: !attn.t<[b, p1], i32>)
    -> (o: !attn.t<[b, m, f], f32>) {
  %qk = attn.einsum [b, m, p1, p0] = %q[b, m, e] * %k[b, p1 * 16 + p0, e] * 0.25 sum(e) if (%keep[b, p1] > 0) else -inf : f32
  %gm = attn.einsum [b, m] = %qk[b, m, p1, p0] max(p1, p0) : f32
  %sn = attn.einsum [b, m, p1, p0] = exp(%qk[b, m, p1, p0] - %gm[b, m]) if (%gm[b, m] > -inf) : f32
  %sd = attn.einsum [b, m] = %sn[b, m, p1, p0] sum(p1, p0) : f32
  %o = attn.einsum [b, m, f] = %sn[b, m, p1, p0] * %v[b, p1 * 16 + p0, f] / %sd[b, m] sum(p1, p0) if (%sd[b, m] > 0) : f32
  attn.yield %o : !attn.t<[b, m, f], f32>
}
