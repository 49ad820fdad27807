//===- CpuPrologue.h - attn-lower-cpu for quantization prologues -*- C++ -*-===//
//
// Private to attn-lower-cpu (LowerCPU.cpp dispatches here): the lowering of
// a cascade marked `attn.prologue` (attn-split-quant's quantization of Q and
// K), implemented in LowerCPUPrologue.cpp.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_PASSES_CPUPROLOGUE_H
#define ATTN_PASSES_CPUPROLOGUE_H

#include "attn/CodeGen/CPU.h"

namespace mlir::attn {

/// True if `cascade` is a quantization prologue (attn-split-quant).
inline bool isQuantPrologue(CascadeOp cascade) {
  return cascade->hasAttr(kPrologueAttrName);
}

/// Tasks of a prologue: the dynamic ranks every result has, no row tile.
FailureOr<CpuTaskPlan> planPrologueTasks(CascadeOp cascade, std::string &why);

/// The task function of a prologue: per task, every Einsum as a scalar
/// float64 loop nest in the interpreter's order, rounded to its type.
FailureOr<func::FuncOp> lowerPrologueToCpu(CascadeOp cascade);

} // namespace mlir::attn

#endif // ATTN_PASSES_CPUPROLOGUE_H
