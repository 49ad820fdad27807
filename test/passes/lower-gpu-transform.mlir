// attn-lower-gpu with a score transform: an Einsum between the score and
// the softmax, X = f(S, ranks) [if (cond) else -inf], evaluated on the
// score registers after the tensor-core product. Soft-capping (Gemma 2) and
// ALiBi (a bias from the head and the distance p - m) are the examples.
// RUN: attn-opt %s -split-input-file --attn-derive-online=tile=32 --attn-lower-gpu -verify-diagnostics 2>/dev/null | FileCheck %s
// RUN: attn-opt %s -split-input-file --attn-derive-online=tile=32 --attn-lower-gpu --attn-gpu-to-nvvm=chip=sm_80 --gpu-module-to-binary=format=isa -verify-diagnostics 2>/dev/null | FileCheck %s --check-prefix=PTX

/// Soft-capping: X = 30 tanh(S / 30) with S = 0.125 Q K^T; then X log2(e)
/// feeds ex2 as the plain kernel's scaled score does. tanh(x) is computed
/// as sign(x) (1 - 2 / (2^(2 |x| log2 e) + 1)) with ex2.approx.
// CHECK-LABEL: gpu.func @softcap_kernel(
// CHECK: scf.for
// CHECK: %[[C:.*]] = arith.constant 1.250000e-01 : f32
// CHECK-NEXT: %[[S:[0-9]+]] = arith.mulf %{{.*}}, %[[C]] : f32
// CHECK: %[[X:[0-9]+]] = arith.divf %[[S]], %{{.*}} : f32
// CHECK-NEXT: %[[AX:[0-9]+]] = math.absf %[[X]] : f32
// CHECK: %[[TWO:.*]] = arith.constant 2.885390e+00 : f32
// CHECK-NEXT: %[[A2:[0-9]+]] = arith.mulf %[[AX]], %[[TWO]] : f32
// CHECK-NEXT: %[[E:[0-9]+]] = llvm.call_intrinsic "llvm.nvvm.ex2.approx.ftz.f"(%[[A2]])
// CHECK: %[[E1:[0-9]+]] = arith.addf %[[E]], %{{.*}} : f32
// CHECK: %[[Q:[0-9]+]] = arith.divf %{{.*}}, %[[E1]] : f32
// CHECK: %[[T:[0-9]+]] = arith.subf %{{.*}}, %[[Q]] : f32
// CHECK-NEXT: %[[TS:[0-9]+]] = math.copysign %[[T]], %[[X]] : f32
// CHECK: %[[CAP:[0-9]+]] = arith.mulf %{{.*}}, %[[TS]] : f32
// CHECK: %[[L2E:.*]] = arith.constant 1.44269502 : f32
// CHECK-NEXT: %[[SC:[0-9]+]] = arith.mulf %[[CAP]], %[[L2E]] : f32
// CHECK-NEXT: arith.select %{{.*}}, %[[SC]], %{{.*}} : f32
// PTX: .visible .entry softcap_kernel(
// PTX-SAME: ex2.approx.ftz.f32
// PTX-SAME: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
// expected-remark @below {{derived the 1-pass form over p}}
attn.cascade @softcap ranks(b, h, m, p, e = 32, f = 32)
    (%q: !attn.t<[b, h, m, e], bf16>, %k: !attn.t<[b, h, p, e], bf16>, %v: !attn.t<[b, h, p, f], bf16>)
    -> (o: !attn.t<[b, h, m, f], bf16>, lse: !attn.t<[b, h, m], f32>) {
  %s = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.125 sum(e) : f32
  %qk = attn.einsum [b, h, m, p] = 30.0 * tanh(%s[b, h, m, p] / 30.0) : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : bf16
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], bf16>, !attn.t<[b, h, m], f32>
}

// -----

/// ALiBi: X = S + 2^(-8 (h + 1) / |h|) (p - m), causal. The rank values are
/// i32 affine values converted to f32. The causal condition sits on the
/// transform: it still ends the key loop at the diagonal tile.
// CHECK-LABEL: gpu.func @alibi_kernel(
// The key tile range: min(ceildiv(|p|, 32), floordiv(last row, 32) + 1).
// CHECK: %[[LAST:[0-9]+]] = arith.floordivsi %{{.*}}, %c32_i32{{.*}} : i32
// CHECK: %[[END:[0-9]+]] = arith.addi %[[LAST]], %c1_i32{{.*}} : i32
// CHECK: arith.minsi %{{.*}}, %[[END]] : i32
// CHECK: scf.for
// CHECK: %[[C:.*]] = arith.constant 1.250000e-01 : f32
// CHECK-NEXT: %[[S:[0-9]+]] = arith.mulf %{{.*}}, %[[C]] : f32
// CHECK: %[[H1:[0-9]+]] = arith.sitofp %{{.*}} : i32 to f32
// CHECK-NEXT: %[[E8:[0-9]+]] = arith.mulf %{{.*}}, %[[H1]] : f32
// CHECK-NEXT: %[[NH:[0-9]+]] = arith.sitofp %{{.*}} : i32 to f32
// CHECK-NEXT: %[[EX:[0-9]+]] = arith.divf %[[E8]], %[[NH]] : f32
// CHECK-NEXT: %[[SLOPE:[0-9]+]] = llvm.call_intrinsic "llvm.nvvm.ex2.approx.ftz.f"(%[[EX]])
// CHECK: %[[D:[0-9]+]] = arith.sitofp %{{.*}} : i32 to f32
// CHECK-NEXT: %[[B:[0-9]+]] = arith.mulf %[[SLOPE]], %[[D]] : f32
// CHECK-NEXT: %[[X:[0-9]+]] = arith.addf %[[S]], %[[B]] : f32
// CHECK: %[[L2E:.*]] = arith.constant 1.44269502 : f32
// CHECK-NEXT: arith.mulf %[[X]], %[[L2E]] : f32
// PTX: .visible .entry alibi_kernel(
// PTX-SAME: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
// expected-remark @below {{derived the 1-pass form over p}}
attn.cascade @alibi ranks(b, h, m, p, e = 32, f = 32)
    (%q: !attn.t<[b, h, m, e], bf16>, %k: !attn.t<[b, h, p, e], bf16>, %v: !attn.t<[b, h, p, f], bf16>)
    -> (o: !attn.t<[b, h, m, f], bf16>, lse: !attn.t<[b, h, m], f32>) {
  %s = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.125 sum(e) : f32
  %qk = attn.einsum [b, h, m, p] = %s[b, h, m, p] + exp2(-8.0 * (h + 1) / |h|) * (p - m) if (p <= m) else -inf : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) if (%gm[b, h, m] > -inf) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) if (%sd[b, h, m] > 0) : bf16
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], bf16>, !attn.t<[b, h, m], f32>
}

// -----

/// A transform that reads a tensor (a bias table) is not evaluated on the
/// registers: refused, with the skeleton.
// expected-remark @below {{derived the 1-pass form over p}}
attn.cascade @bias_table ranks(b, h, m, p, e = 32, f = 32)
    (%q: !attn.t<[b, h, m, e], bf16>, %k: !attn.t<[b, h, p, e], bf16>, %v: !attn.t<[b, h, p, f], bf16>)
    -> (o: !attn.t<[b, h, m, f], bf16>) {
  %s = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.125 sum(e) : f32
  // expected-error @below {{not a step of the derived online softmax}}
  %qk = attn.einsum [b, h, m, p] = %s[b, h, m, p] + %q[b, h, m, 0] : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : bf16
  attn.yield %o : !attn.t<[b, h, m, f], bf16>
}
