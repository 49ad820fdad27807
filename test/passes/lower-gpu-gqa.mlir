// attn-lower-gpu on grouped-query attention (GQA; MQA is one group): the
// query heads h of a group share K/V head h floordiv 4, read through the
// index expression, with no copies. The kernel is the MHA kernel of
// lower-gpu.mlir; only the K and V tile copies index the leading ranks
// differently: [b, h floordiv 4, key, e] instead of [b, h, key, e].
// RUN: attn-opt %s -split-input-file --attn-derive-online=tile=32 --attn-lower-gpu -verify-diagnostics 2>/dev/null | FileCheck %s
// RUN: attn-opt %s -split-input-file --attn-derive-online=tile=32 --attn-lower-gpu --attn-gpu-to-nvvm=chip=sm_80 --gpu-module-to-binary=format=isa -verify-diagnostics 2>/dev/null | FileCheck %s --check-prefix=PTX

// Block y is the flattened (b, h) of the output: h = y mod |h|,
// b = (y / |h|) mod |b|. Q rows are copied at (b, h).
// CHECK-LABEL: gpu.func @gqa_kernel(
// CHECK-SAME: %[[Q:[a-z0-9]+]]: memref<?x?x?x?xbf16, strided<[?, ?, ?, 1], offset: ?>>, %[[K:[a-z0-9]+]]: memref<?x?x?x?xbf16, strided<[?, ?, ?, 1], offset: ?>>, %[[V:[a-z0-9]+]]: memref<?x?x?x?xbf16, strided<[?, ?, ?, 1], offset: ?>>
// CHECK: %[[BY:.*]] = gpu.block_id  y
// CHECK: %[[H:[0-9]+]] = arith.remui %[[BY]], %{{.*}} : index
// CHECK: %[[B:[0-9]+]] = arith.remui %{{.*}}, %{{.*}} : index
// CHECK: nvgpu.device_async_copy %[[Q]][%[[B]], %[[H]], %{{.*}}, %{{.*}}]
// The first K tile: the K/V head is h / 4.
// CHECK: %[[G:[0-9]+]] = arith.divui %[[H]], %c4{{.*}} : index
// CHECK: nvgpu.device_async_copy %[[K]][%[[B]], %[[G]], %{{.*}}, %{{.*}}]
// In the key loop: V(j), then K(j + 1), at the same group.
// CHECK: scf.for
// CHECK: %[[GV:[0-9]+]] = arith.divui %[[H]], %c4{{.*}} : index
// CHECK: nvgpu.device_async_copy %[[V]][%[[B]], %[[GV]], %{{.*}}, %{{.*}}]
// CHECK: %[[GK:[0-9]+]] = arith.divui %[[H]], %c4{{.*}} : index
// CHECK: nvgpu.device_async_copy %[[K]][%[[B]], %[[GK]], %{{.*}}, %{{.*}}]
// PTX: .visible .entry gqa_kernel(
// PTX-SAME: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
// expected-remark @below {{derived the 1-pass form over p}}
attn.cascade @gqa ranks(b, h, g, m, p, e = 32, f = 32) where(h = 4 * g)
    (%q: !attn.t<[b, h, m, e], bf16>, %k: !attn.t<[b, g, p, e], bf16>, %v: !attn.t<[b, g, p, f], bf16>)
    -> (o: !attn.t<[b, h, m, f], bf16>, lse: !attn.t<[b, h, m], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h floordiv 4, p, e] * 0.125 sum(e) if (p <= m) else -inf : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) if (%gm[b, h, m] > -inf) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h floordiv 4, p, f] / %sd[b, h, m] sum(p) if (%sd[b, h, m] > 0) : bf16
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], bf16>, !attn.t<[b, h, m], f32>
}

// -----

// K and V grouped differently: refused.
// expected-remark @below {{derived the 1-pass form over p}}
attn.cascade @mixed ranks(b, h, g, m, p, e = 32, f = 32) where(h = 4 * g)
    (%q: !attn.t<[b, h, m, e], bf16>, %k: !attn.t<[b, g, p, e], bf16>, %v: !attn.t<[b, h, p, f], bf16>)
    -> (o: !attn.t<[b, h, m, f], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h floordiv 4, p, e] * 0.125 sum(e) : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  // expected-error @below {{the values must be read as V[.., p, f] with the score's leading ranks, grouped as K's}}
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}
