//===- CPU.h - lowering cascades to CPU code --------------------*- C++ -*-===//
//
// attn-lower-cpu turns an attn.cascade (preferably in the 1-pass form that
// attn-derive-online writes) into a func.func on memrefs built from scf,
// memref, arith, math and vector ops; buildCpuToLLVMPipeline lowers that to
// the LLVM dialect. The task decomposition (which ranks the runtime
// parallelises over, the query tile) is planned here and shared with attnc,
// which writes it into the kernel descriptor.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_CODEGEN_CPU_H
#define ATTN_CODEGEN_CPU_H

#include "attn/Dialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Pass/PassManager.h"

#include <string>

namespace mlir::attn {

struct CpuLowerOptions {
  /// Rows of the query (row) rank per task.
  int64_t rowTile = 64;
  /// Vector width in f32 lanes (16 for AVX-512, 8 for AVX2).
  int64_t vectorWidth = 16;
  /// Vector registers of the target (32 for AVX-512, 16 for AVX2): bounds
  /// the register tile of the contraction micro-kernel (cpuRegisterTile).
  int64_t vectorRegisters = 32;
  /// Use the register-tiled contraction micro-kernels and vectorised
  /// elementwise loops (off: plain scalar loops, for debugging).
  bool vectorize = true;
  /// AVX512-BF16: contractions whose scalar operand A is a bf16 tensor run
  /// on vdpbf16ps (two products per f32 lane), with the vector operand B
  /// rounded to bf16 and stored in pairs along the reduced rank (docs/
  /// codegen.md, "BF16 dot products"). Needs vectorWidth 16.
  bool bf16Dot = false;
  /// AVX512-VNNI: contractions of two int8 tensors (`cast(x : f32)` of i8
  /// loads) with a static reduced extent that is a multiple of 4 run on
  /// vpdpbusd (four int8 products per i32 lane), exact in i32, converted to
  /// f32 once per tile (docs/codegen.md, "INT8 dot products"). Needs
  /// vectorWidth 16.
  bool vnni = false;
};

/// How the runtime splits a kernel into tasks: the product of the sizes of
/// `taskRanks` (declared-rank indices of the cascade), where `rowRank` (one
/// of them, or -1) counts tiles of `rowTile`.
struct CpuTaskPlan {
  llvm::SmallVector<int> taskRanks;
  int rowRank = -1;
  int64_t rowTile = 1;
};

/// The register tile of the contraction micro-kernel: `rows` values of the
/// output rank i by `cols` vectors of query rows.
struct CpuRegisterTile {
  int64_t rows = 4, cols = 4;
};

/// The x86 cost model of the micro-kernel (docs/codegen.md, "Tiles"): the
/// rows * cols accumulators, the cols vectors of B, one broadcast of A and
/// one spare must fit in `vectorRegisters`; rows is 4 (a power of two, so
/// that head dims and key tiles leave no remainder), cols the largest of 4,
/// 2, 1 that fits and divides the vectors of a row tile
/// (`rowTile / vectorWidth`). AVX-512 (32 registers): 4 x 4, 22 registers;
/// AVX2 (16): 4 x 2, 12 registers.
CpuRegisterTile cpuRegisterTile(const CpuLowerOptions &options);

/// Data cache sizes per core, in bytes, as the tile model reads them.
struct CpuCacheSizes {
  int64_t l1d = 48 * 1024;
  int64_t l2 = 1024 * 1024;
};

/// What the tile model needs to know about a cascade (cpuTileQuery).
struct CpuTileQuery {
  /// Sizes of the QK contraction (d) and of the PV output columns (dv).
  int64_t headDim = 128, valueDim = 128;
  /// Some Einsum has a mask (a condition on rank indices or on integer
  /// metadata), so key tiles can be partial.
  bool masked = false;
};

/// Reads the head dims and the presence of a mask from `cascade` (before
/// derivation): d is the largest static sum-reduction (the QK contraction),
/// dv the largest static output extent of a sum over a dynamic rank (PV);
/// 128 where the cascade leaves them dynamic.
CpuTileQuery cpuTileQuery(CascadeOp cascade);

/// A partition rank that an argument or result type uses (paged KV: the
/// cache [n, p0, ..] and the block table [b, p1] of `p -> p1, p0`).
struct CpuArgPartitionRank {
  std::string name;
  int64_t staticSize; ///< the tile for an inner rank, -1 for an outer one
  std::string whole;  ///< the partitioned rank (p)
  int64_t tile;       ///< p = tile * p1 (the relation the runtime checks)
  bool outer;
};

/// The partition ranks the cascade's argument and result types use, in
/// partition order (outer, then inner). The runtime's rank table lists them
/// after the declared ranks (attnc), so the task function's %sizes holds
/// their sizes there and the presence flags after them. Such a cascade
/// gets |p| from the relation p = tile * p1: no argument may use p itself.
SmallVector<CpuArgPartitionRank> cpuArgPartitionRanks(CascadeOp cascade);

/// Row (query) tile and key tile chosen by the model.
struct CpuTiles {
  int64_t rowTile = 64, keyTile = 64;
  /// One line per decision, for `attnc -v`.
  std::string reason;
};

/// The cache part of the x86 cost model (docs/codegen.md, "Tiles"). With B
/// = the rows of one register tile (cols * vectorWidth, cpuRegisterTile):
///  - row tile R: 64 rounded up to a multiple of B (K and V are re-read per
///    task, 2/R bytes per FLOP), halved while the task's Q pack and running
///    output, R * (d + dv) * 4 bytes, exceed a quarter of L2 (not below B);
///  - key tile T: the largest of 128, 64, 32, 16 such that the PV
///    micro-kernel's block of scores (T * B * 4 bytes, re-read for every 4
///    output columns) fits in 2/3 of L1d, the K and V tiles (T * (d + dv) *
///    4 bytes) in a quarter of L2, and, for masked cascades, T <= R (a
///    diagonal tile computes T keys per row of which about half are masked).
/// Calibrated against the tile study of docs/performance.md.
CpuTiles cpuTileModel(const CpuLowerOptions &options, const CpuCacheSizes &caches,
                      const CpuTileQuery &query);

/// Plans the tasks of `cascade`; on failure `why` says what is unsupported.
FailureOr<CpuTaskPlan> planCpuTasks(CascadeOp cascade,
                                    const CpuLowerOptions &options,
                                    std::string &why);

/// The name of the task function generated for `cascade`.
std::string cpuTaskFunctionName(CascadeOp cascade);

/// Lowers `cascade` to a new func.func inserted before it (the cascade is
/// left in place). Emits located errors and returns failure for cascades the
/// lowering does not support.
FailureOr<func::FuncOp> lowerCascadeToCpu(CascadeOp cascade,
                                          const CpuLowerOptions &options);

/// Appends the passes that take the output of attn-lower-cpu to the LLVM
/// dialect (vector and math lowering, scf to cf, memref, func with C
/// interfaces, reconcile casts).
void buildCpuToLLVMPipeline(OpPassManager &pm);

} // namespace mlir::attn

#endif // ATTN_CODEGEN_CPU_H
