//===- GPU.h - lowering cascades to NVIDIA GPU code -------------*- C++ -*-===//
//
// attn-lower-gpu turns an attn.cascade of the MHA family in the 1-pass form
// (the output of attn-derive-online) into a gpu.module holding one kernel
// built from gpu, nvgpu (cp.async, ldmatrix, mma.sync), nvvm, scf, memref,
// vector and arith ops (docs/gpu.md). buildGpuToNVVMPipeline lowers that
// module to the LLVM/NVVM dialect for one target; compileGpuKernels runs
// it, translates to PTX with LLVM's NVPTX back end (gpu-module-to-binary)
// and assembles a cubin with ptxas.
//
// Level 1 (sm_80 class): mma.sync m16n8k16 tensor cores; the same kernel
// assembles for sm_90a (wgmma/TMA is a later level).
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_CODEGEN_GPU_H
#define ATTN_CODEGEN_GPU_H

#include "attn/Dialect.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/PassManager.h"

#include <string>
#include <vector>

namespace mlir::gpu {
class GPUModuleOp;
} // namespace mlir::gpu

namespace mlir::attn {

struct GpuLowerOptions {
  /// Element type that replaces f32 in the inputs and the `o` output of
  /// the cascade: "" (keep the declared types: the inputs must then be f16
  /// or bf16), "bf16" or "f16".
  std::string storage;
};

/// Query rows per thread block (4 warps of 16 rows) and threads per block.
inline constexpr int64_t kGpuBlockRows = 64;
inline constexpr int64_t kGpuBlockThreads = 128;

/// The dictionary attribute attn-lower-gpu puts on each kernel: how a host
/// launches it. {block_rows (i64): query rows per block, row_rank (string):
/// the rank whose size / block_rows (rounded up) is grid x, grid_y_ranks
/// (array of strings): ranks whose sizes multiply to grid y (decoded
/// row-major by the kernel), dynamic_shared_bytes (i64), arg_align_bytes
/// and arg_stride_multiple (i64 arrays, one per parameter: the alignment of
/// its data in bytes, and the multiple in elements that every stride but
/// the innermost must be; the innermost stride must be 1)}. The block size is
/// the kernel's known_block_size. Every kernel parameter is a memref,
/// passed as its expanded descriptor (allocated and aligned pointers,
/// offset, sizes, strides; 8 bytes each); a null aligned pointer for the
/// lse result means "not requested".
inline constexpr llvm::StringLiteral kGpuLaunchAttrName = "attn_launch";

/// Names of the generated gpu.module and kernel for `cascade`.
std::string gpuModuleName(CascadeOp cascade);
std::string gpuKernelName(CascadeOp cascade);

/// Lowers `cascade` to a new gpu.module inserted before it (the cascade is
/// left in place) and marks the enclosing module `gpu.container_module`.
/// Emits located errors and returns failure for cascades it does not
/// support.
FailureOr<gpu::GPUModuleOp> lowerCascadeToGpu(CascadeOp cascade,
                                              const GpuLowerOptions &options);

/// Appends to a ModuleOp pass manager: nvvm-attach-target for `chip`
/// (sm_80, sm_90a, ...) and the lowering of every gpu.module to the LLVM
/// and NVVM dialects. `gpu-module-to-binary` can follow.
void buildGpuToNVVMPipeline(OpPassManager &pm, llvm::StringRef chip);

/// Registers what the GPU lowering and gpu-module-to-binary need in a
/// context (NVVM target attribute model, translations to LLVM IR).
void registerGpuCodeGenInterfaces(DialectRegistry &registry);

/// One kernel compiled for one chip.
struct GpuKernelBinary {
  std::string chip;   ///< sm_80, sm_90a
  std::string kernel; ///< the gpu.func name (the cubin's entry)
  std::string ptx;
  std::string cubin; ///< empty if ptxas was not run
  std::string ptxasLog; ///< ptxas -v output (registers, spills)
  int registers = -1;
  int spillStores = -1, spillLoads = -1;
  int sharedBytes = -1;
};

/// Lowers a clone of `module` (one holding gpu.modules, e.g. the output of
/// attn-lower-gpu) for `chip` to PTX and, if `ptxas` is a path, assembles
/// it with `ptxas -v -arch=<chip>`. Errors are reported on `module`.
FailureOr<std::vector<GpuKernelBinary>>
compileGpuKernels(ModuleOp module, llvm::StringRef chip, llvm::StringRef ptxas);

/// Parses the `ptxas -v` report of `kernel` into `bin` (registers, spill
/// bytes, shared memory); false if no line for the kernel was found.
bool parsePtxasReport(llvm::StringRef log, GpuKernelBinary &bin);

} // namespace mlir::attn

#endif // ATTN_CODEGEN_GPU_H
