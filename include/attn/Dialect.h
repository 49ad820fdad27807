//===- Dialect.h - the attn dialect -----------------------------*- C++ -*-===//
//
// Public header of the attn dialect: types, attributes, operations and the
// helpers that passes use to read Einsums.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_DIALECT_H
#define ATTN_DIALECT_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/ControlFlowInterfaces.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "dialects/attn/AttnEnums.h.inc"

namespace mlir::attn {
class ExprAttr;
} // namespace mlir::attn

#define GET_TYPEDEF_CLASSES
#include "dialects/attn/AttnTypes.h.inc"
#define GET_ATTRDEF_CLASSES
#include "dialects/attn/AttnAttrs.h.inc"
#include "dialects/attn/AttnDialect.h.inc"
#define GET_OP_CLASSES
#include "dialects/attn/AttnOps.h.inc"

namespace mlir::attn {

/// Names of the annotation attributes.
inline constexpr llvm::StringLiteral kSparseAttrName = "attn.sparse";
inline constexpr llvm::StringLiteral kQuantAttrName = "attn.quant";
inline constexpr llvm::StringLiteral kLowRankAttrName = "attn.lowrank";
/// On a cascade that attn-split-quant split off (the quantization prologue
/// of the cascade it names): lowered per (batch, head), never derived.
inline constexpr llvm::StringLiteral kPrologueAttrName = "attn.prologue";

/// True if `t` is an element type a cascade tensor may have.
bool isSupportedElementType(Type t);

/// Number of operands a node of kind `k` takes (-1: any number, for loads).
int exprArity(ExprKind k);

} // namespace mlir::attn

#endif // ATTN_DIALECT_H
