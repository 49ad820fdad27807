//===- Interpreter.h - float64 reference interpreter of cascades -*- C++ -*-===//
//
// The oracle of every transformation and code generation test: executes any
// attn.cascade in float64, point by point, exactly as the dialect documents
// its semantics. Simplicity over speed.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_INTERPRETER_H
#define ATTN_INTERPRETER_H

#include "attn/Dialect.h"

#include "llvm/ADT/StringMap.h"

#include <string>
#include <vector>

namespace mlir::attn {

/// A dense row-major tensor of float64 values.
struct Tensor {
  std::vector<int64_t> shape;
  std::vector<double> data;

  int64_t numElements() const;
};

/// Options of one interpretation.
struct InterpretOptions {
  /// Sizes of ranks that are neither static nor implied by the inputs (and
  /// checks for those that are).
  llvm::StringMap<int64_t> sizes;
  /// Round inputs and every Einsum result to their declared element types
  /// (the stored values of a bf16 tensor are bf16 values). Off: ideal
  /// float64 arithmetic throughout; explicit round() and cast() still apply.
  bool roundToTypes = true;
};

/// The result of an interpretation: the outputs in the order of the cascade's
/// results, or an error message.
struct InterpretResult {
  std::vector<Tensor> outputs;
  /// Sizes of every rank as resolved from the declarations, the inputs and
  /// the options.
  llvm::StringMap<int64_t> sizes;
  std::string error;
  bool ok() const { return error.empty(); }
};

/// Resolves the size of every rank of `cascade`: static declarations, then
/// `inputShapes` (one per argument, may be empty to skip), then `given`,
/// then partitions and relations. Returns an error message or "".
std::string resolveRankSizes(CascadeOp cascade,
                             llvm::ArrayRef<std::vector<int64_t>> inputShapes,
                             const llvm::StringMap<int64_t> &given,
                             llvm::StringMap<int64_t> &sizes);

/// Shape of a tensor of type `type` given resolved rank sizes; `iterative`
/// adds the initial entry along that rank.
std::vector<int64_t> shapeOf(NamedTensorType type,
                             const llvm::StringMap<int64_t> &sizes,
                             llvm::StringRef iterative = {});

/// Runs `cascade` on `inputs` (one per argument, dimensions in the order of
/// the argument's ranks).
InterpretResult interpret(CascadeOp cascade, llvm::ArrayRef<Tensor> inputs,
                          const InterpretOptions &options = {});

/// The value of an expression node of kind `k` (neither load, index nor
/// constant) on its evaluated arguments: the one definition of the
/// dialect's scalar semantics (IEEE 754; max/min propagate NaN; predicates
/// give 1 or 0). `castType` is the target of a Cast node.
double applyScalarOp(ExprKind k, llvm::ArrayRef<double> args,
                     Type castType = {});

/// Rounds `v` to the nearest value of element type `t` (round to nearest
/// even; integers saturate; i1 is v != 0).
double roundToType(double v, Type t);

} // namespace mlir::attn

#endif // ATTN_INTERPRETER_H
