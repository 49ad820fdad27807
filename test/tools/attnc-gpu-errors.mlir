// attnc's GPU targets without ptxas: --emit=mlir stops after attn-lower-gpu
// (the kernel's launch plan is an attribute attnc reads); bad target lists
// and a missing ptxas are errors.
// RUN: attnc %s --target=sm_80 --storage=bf16 -o %t/x --emit=mlir 2>/dev/null | FileCheck %s
// RUN: not attnc %s --target=sm_80,x86_64-avx2 -o %t/x 2>&1 | FileCheck %s --check-prefix=MIX
// RUN: not attnc %s --target=sm_80,sm_80 -o %t/x 2>&1 | FileCheck %s --check-prefix=TWICE
// RUN: not attnc %s --target=sm_80 --storage=f64 -o %t/x 2>&1 | FileCheck %s --check-prefix=STORAGE
// RUN: not attnc %s --target=sm_80 --storage=bf16 --ptxas=%t/no-such-ptxas -o %t/x 2>&1 | FileCheck %s --check-prefix=PTXAS
// RUN: not attnc %s --target=sm_80 -o %t/x 2>&1 | FileCheck %s --check-prefix=F32

// CHECK: gpu.module @mha_gpu
// CHECK: gpu.func @mha_kernel(
// CHECK-SAME: attn_launch = {arg_align_bytes = array<i64: 16, 16, 16, 4>, arg_stride_multiple = array<i64: 8, 8, 8, 2>, block_rows = 64 : i64, dynamic_shared_bytes = 0 : i64, grid_y_ranks = ["b", "h"], row_rank = "m"}
// CHECK-SAME: known_block_size = array<i32: 128, 1, 1>
// CHECK-NOT: attn.cascade

// MIX: error: unknown GPU target 'x86_64-avx2'
// TWICE: error: GPU target sm_80 is listed twice
// STORAGE: error: --storage must be bf16 or f16
// PTXAS: error: cannot execute ptxas '{{.*}}no-such-ptxas'
// F32: error: 'attn.cascade' op attn-lower-gpu: q, k and v must all be bf16 or all f16

attn.cascade @mha ranks(b, h, m, p, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.125 sum(e) : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}
