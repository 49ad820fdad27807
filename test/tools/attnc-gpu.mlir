// attnc --target=sm_80,sm_90a: attn-lower-gpu's kernel, one cubin per arch
// (ptxas), embedded as constants in a host module whose entry point calls
// the runtime's CUDA launcher (docs/gpu.md).
// REQUIRES: cuda-toolkit
// RUN: attnc %s --target=sm_80,sm_90a --storage=bf16 -o %t/lib --emit=llvm 2>/dev/null | FileCheck %s
// RUN: attnc %s --target=sm_80,sm_90a --storage=bf16 -o %t/lib --emit=asm 2>/dev/null | FileCheck %s --check-prefix=ASM
// RUN: rm -rf %t && attnc %s --target=sm_90a --storage=bf16 -o %t/gpu 2>/dev/null
// RUN: FileCheck %s --check-prefix=HDR < %t/gpu.h
// RUN: llvm-nm %t/libgpu.a | FileCheck %s --check-prefix=NM
// RUN: attn-opt %s --attn-derive-online --attn-lower-gpu=storage=bf16 --attn-gpu-to-nvvm=chip=sm_80 --gpu-module-to-binary=format=isa 2>/dev/null | FileCheck %s --check-prefix=PARAMS

/// The kernel's PTX parameters are what the runtime passes: every memref's
/// expanded descriptor in 8-byte values, 11 for each 4-D tensor (q, k, v,
/// o: pointer, pointer, offset, 4 sizes, 4 strides) and 9 for lse.
// PARAMS: .entry causal_kernel(
// PARAMS-SAME: .param .u64 .ptr .align 1 causal_kernel_param_0,
// PARAMS-SAME: .param .u64 .ptr .align 1 causal_kernel_param_1,
// PARAMS-SAME: .param .u64 causal_kernel_param_2,
// PARAMS-SAME: .param .u64 .ptr .align 1 causal_kernel_param_11,
// PARAMS-SAME: .param .u64 .ptr .align 1 causal_kernel_param_33,
// PARAMS-SAME: .param .u64 .ptr .align 1 causal_kernel_param_44,
// PARAMS-SAME: .param .u64 .ptr .align 1 causal_kernel_param_45,
// PARAMS-SAME: .param .u64 causal_kernel_param_52
// PARAMS-NOT: causal_kernel_param_53

/// The host module is for this machine; each cubin is a private constant
/// holding the ELF image ptxas wrote.
// CHECK: target triple = "x86_64
// CHECK-DAG: @lib_causal.cubin.sm_80 = private constant [{{[0-9]+}} x i8] c"\7FELF{{.*}}", align 16
// CHECK-DAG: @lib_causal.cubin.sm_90a = private constant [{{[0-9]+}} x i8] c"\7FELF{{.*}}", align 16
// CHECK-DAG: @lib_causal.function = private unnamed_addr constant [14 x i8] c"causal_kernel\00"
/// attn_rt_cubin {arch, major, minor, arch_specific, image, size}.
// CHECK-DAG: @lib_causal.cubins = private constant [2 x {{.*}}] [{{.*}} <{ ptr @lib_causal.arch.sm_80, i32 8, i32 0, i32 0, [4 x i8] zeroinitializer, ptr @lib_causal.cubin.sm_80, i64 {{[0-9]+}} }>, {{.*}} <{ ptr @lib_causal.arch.sm_90a, i32 9, i32 0, i32 1, [4 x i8] zeroinitializer, ptr @lib_causal.cubin.sm_90a, i64 {{[0-9]+}} }>]
/// The descriptor: device type 2 (CUDA), 6 ranks, 5 arguments (q, k, v, o
/// in bf16 (code 4, 16 bits), lse f32), grid y over b, h and grid x over m
/// in tiles of 64, no task function; then the function, 2 cubins, 128 x 1 x
/// 1 threads, no dynamic shared memory, alignments 16/16/16/4/4 bytes and
/// stride multiples 8/8/8/2/1, ranks < 2^31, grid y <= 65535.
// CHECK: @lib_causal_kernel = internal constant
// CHECK-SAME: <{ ptr @lib_causal.name, i32 1, i32 2, i32 6, [4 x i8] zeroinitializer, ptr @lib_causal.ranks, i32 0,
// CHECK-SAME: i32 5, [4 x i8] zeroinitializer, ptr @lib_causal.args, i32 3, [24 x i32] [i32 0, i32 1, i32 2, i32 0,
// CHECK-SAME: i32 2, i64 64, ptr null, i32 0, [4 x i8] zeroinitializer, ptr @lib_causal.function, i32 2, [4 x i8] zeroinitializer, ptr @lib_causal.cubins,
// CHECK-SAME: [3 x i32] [i32 128, i32 1, i32 1], i32 0,
// CHECK-SAME: [24 x i32] [i32 16, i32 16, i32 16, i32 4, i32 4, i32 1,
// CHECK-SAME: [24 x i32] [i32 8, i32 8, i32 8, i32 2, i32 1, i32 1,
// CHECK-SAME: i64 2147483647, i64 65535 }>, align 8
/// The entry point: the runtime's CUDA launcher with the descriptor.
// CHECK: declare i32 @attn_rt_v1_run_cuda(ptr, ptr, ptr)
// CHECK: define i32 @lib_causal(ptr %args, ptr %launch)
// CHECK-NEXT: entry:
// CHECK-NEXT: call i32 @attn_rt_v1_run_cuda(ptr @lib_causal_kernel, ptr %args, ptr %launch)

/// In the assembly: the entry point and the images in read-only data.
// ASM: .globl lib_causal
// ASM: lib_causal:
// ASM: lib_causal_kernel(%rip)
// ASM: attn_rt_v1_run_cuda
// ASM: .section .rodata,"a",@progbits
// ASM-NEXT: .p2align 4
// ASM-NEXT: .Llib_causal.cubin.sm_80:
// ASM-NEXT: .asciz "\177ELF
// ASM: .size .Llib_causal.cubin.sm_80, {{[0-9]+}}
// ASM: .Llib_causal.cubin.sm_90a:
// ASM-NEXT: .asciz "\177ELF

/// The header documents the GPU contract.
// HDR: #define GPU_ABI_VERSION 1
// HDR: q: input, bfloat16 [b, h, m, e=64], innermost stride 1
// HDR: lse: optional output, float32 [b, h, m], innermost stride 1; may be NULL
// HDR: GPU kernel: tensors in CUDA device memory (data is a CUdeviceptr),
// HDR: q 16/8, k 16/8, v 16/8, o 4/2, lse 4/1.
// HDR: grid (ceil(|m| / 64), |b| * |h| <= 65535), 128 x 1 x 1 threads
// HDR: Cubins: sm_90a (another device: ATTN_ERR_NO_KERNEL;
// HDR: attn_status gpu_causal(const gpu_causal_args *args, const attn_launch *launch);

/// The archive: the kernels' object (entry point) and the runtime (the
/// launcher; libcuda is not linked, it is loaded at run time).
// NM: gpu.o:
// NM-DAG: T gpu_causal
// NM-DAG: U attn_rt_v1_run_cuda
// NM: attn_runtime.o:
// NM: W attn_rt_v1_run_cuda
// NM-NOT: cuLaunchKernel

attn.cascade @causal ranks(b, h, m, p, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.125 sum(e) if (p <= m) else -inf : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) if (%gm[b, h, m] > -inf) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) if (%sd[b, h, m] > 0) : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}
