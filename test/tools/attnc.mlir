// attnc: a cascade in, a static library and a C header out.
// RUN: rm -rf %t && mkdir -p %t
// RUN: attnc %s -o %t/flash --timing 2>&1 | FileCheck %s --check-prefix=TIMING
// RUN: FileCheck %s --check-prefix=HEADER < %t/flash.h
// RUN: llvm-nm %t/libflash.a | FileCheck %s --check-prefix=SYMS
// RUN: attnc %s -o %t/flash --emit=llvm | FileCheck %s --check-prefix=LLVM
// RUN: attnc %s -o %t/flash --target=x86_64-avx2 --emit=asm | FileCheck %s --check-prefix=AVX2
// RUN: attnc %s -o %t/flash --target=x86_64-avx512 --emit=asm | FileCheck %s --check-prefix=AVX512
// RUN: attnc --help | FileCheck %s --check-prefix=HELP
// RUN: not attnc %s -o %t/flash --target=arm 2>&1 | FileCheck %s --check-prefix=BADTARGET
// RUN: not attnc %s -o %t/bad-name 2>&1 | FileCheck %s --check-prefix=BADNAME
// RUN: not attnc %s -o %t/flash --rank-size=z=3 2>&1 | FileCheck %s --check-prefix=BADRANK

// TIMING: attnc: timing
// TIMING: attn-derive-online
// TIMING: attn-lower-cpu
// TIMING: LLVM O3
// TIMING: total

// The header: the runtime ABI, the version, the args struct in the order
// of the cascade, the documented shapes (static sizes and relations).
// HEADER: #define ATTN_RUNTIME_ABI_VERSION 1
// HEADER: #define FLASH_ABI_VERSION 1
// HEADER: attn.cascade @gqa ranks(b, h, g, m, p, e = 64, f = 64)
// HEADER: typedef struct flash_gqa_args {
// HEADER-NEXT: const attn_tensor *q;
// HEADER-NEXT: const attn_tensor *k;
// HEADER-NEXT: const attn_tensor *v;
// HEADER-NEXT: const attn_tensor *o;
// HEADER-NEXT: const attn_tensor *lse;
// HEADER: attn_status flash_gqa(const flash_gqa_args *args, const attn_launch *launch);

// The archive: the entry point and the runtime.
// SYMS: T flash_gqa
// SYMS: attn_rt_v1_run

// LLVM IR: the descriptor constant points at the packed task wrapper, the
// entry point calls the runtime.
// LLVM: @flash_gqa_kernel = internal constant
// LLVM-SAME: @flash_gqa_tasks_packed
// LLVM: define void @_mlir_ciface_flash_gqa_tasks(
// LLVM: define {{.*}}i32 @flash_gqa(
// LLVM: call i32 @attn_rt_v1_run(ptr {{.*}}@flash_gqa_kernel

// AVX2: vfmadd{{.*}}ymm
// AVX2-NOT: zmm
// AVX512: vfmadd{{.*}}zmm

// HELP: attnc: compiles attention cascades
// HELP: --emit=<string>
// HELP: --rank-size=<rank=size>
// HELP: --target=<string>
// HELP: --timing

// BADTARGET: attnc: error: unknown --target 'arm'
// BADNAME: attnc: error: NAME in -o DIR/NAME must be a C identifier: 'bad-name'
// BADRANK: attnc: error: --rank-size: no rank named 'z'

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
