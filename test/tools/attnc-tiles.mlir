// The cache part of attnc's tile model (cpuTileModel, docs/codegen.md
// "Tiles"): per cascade, a row tile and a key tile from the L1d and L2
// sizes, the vector width, the head dims and whether the cascade has a mask.
// -v prints each choice with its reason; --row-tile / --key-tile override it.
// The cache sizes are given as flags so that the test does not depend on the
// machine (by default attnc reads them with CPUID for --target=host).
//
// RUN: attnc %s -o %t/tiles --emit=mlir -v --target=x86_64-avx512 --l1d-cache=48 --l2-cache=1024 2>&1 >/dev/null | FileCheck %s --check-prefix=ZEN5
// RUN: attnc %s -o %t/tiles --emit=mlir -v --target=x86_64-avx512 --l1d-cache=32 --l2-cache=1024 2>&1 >/dev/null | FileCheck %s --check-prefix=L1-32K
// RUN: attnc %s -o %t/tiles --emit=mlir -v --target=x86_64-avx2 --l1d-cache=32 --l2-cache=256 2>&1 >/dev/null | FileCheck %s --check-prefix=AVX2
// RUN: attnc %s -o %t/tiles --emit=mlir -v --target=x86_64-avx512 --l1d-cache=48 --l2-cache=1024 --row-tile=32 --key-tile=32 2>&1 >/dev/null | FileCheck %s --check-prefix=FLAGS
// RUN: not attnc %s -o %t/tiles --emit=mlir --key-tile=-4 2>&1 | FileCheck %s --check-prefix=NEGATIVE

// ZEN5: attnc: caches L1d 48 KiB, L2 1024 KiB (flags)
// Unmasked, d = 128: 128 keys x 64 rows of scores (32 KiB) fit in 2/3 of L1d.
// ZEN5: @mha128 tiles 64 x 128 (row tile 64: Q pack + running output 64 KiB
// Masked: the key tile stays at most the row tile (diagonal tiles).
// ZEN5: @causal128 tiles 64 x 64 ({{.*}}<= row tile (masked))
// d = 256: K and V tiles of 128 keys are 256 KiB = L2 / 4, still in.
// ZEN5: @mha256 tiles 64 x 128 (
// The mask may come from integer metadata (segment ids) rather than ranks.
// ZEN5: @document tiles 64 x 64 ({{.*}}(masked))
// Each cascade is then derived with its own key tile.
// ZEN5: derived the 1-pass form over p (tiles of 128)
// ZEN5: derived the 1-pass form over p (tiles of 64)
// ZEN5: derived the 1-pass form over p (tiles of 128)
// ZEN5: derived the 1-pass form over p (tiles of 64)

// A 32 KiB L1d (e.g. Skylake-SP) keeps 64 keys: 128 x 64 x 4 = 32 KiB > 21 KiB.
// L1-32K: @mha128 tiles 64 x 64 (
// L1-32K: @mha256 tiles 64 x 64 (

// Under AVX2 (register tiles of 4 x 2 vectors of 8 rows), a 256 KiB L2 bounds the
// K and V tiles to 64 keys at d = 128, and at d = 256 halves the row tile
// (64 rows x 512 x 4 = 128 KiB > 64 KiB) and the key tile.
// AVX2: caches L1d 32 KiB, L2 256 KiB (flags)
// AVX2: @mha128 tiles 64 x 64 (
// AVX2: @mha256 tiles 32 x 32 (

// FLAGS: @mha128 tiles 32 x 32 ({{.*}}; overridden by flags)
// FLAGS: derived the 1-pass form over p (tiles of 32)

// NEGATIVE: attnc: error: --row-tile, --key-tile, --l1d-cache and --l2-cache take positive values

attn.cascade @mha128 ranks(b, h, m, p, e = 128, f = 128)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] sum(e) : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}

attn.cascade @causal128 ranks(b, h, m, p, e = 128, f = 128)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] sum(e) if (p <= m) else -inf : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) if (%gm[b, h, m] > -inf) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) if (%sd[b, h, m] > 0) : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}

attn.cascade @mha256 ranks(b, h, m, p, e = 256, f = 256)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] sum(e) : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}

attn.cascade @document ranks(b, h, m, p, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>,
     %seg_q: !attn.t<[b, m], i32>, %seg_k: !attn.t<[b, p], i32>)
    -> (o: !attn.t<[b, h, m, f], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] sum(e) if (%seg_q[b, m] == %seg_k[b, p]) else -inf : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) if (%gm[b, h, m] > -inf) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) if (%sd[b, h, m] > 0) : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}
