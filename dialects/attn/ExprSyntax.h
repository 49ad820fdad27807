//===- ExprSyntax.h - infix syntax of attn expressions ----------*- C++ -*-===//
//
// The printer and parser of expression trees (ExprAttr), shared by the
// attn.einsum custom syntax (rank names, SSA operands, infix comparisons) and
// the standalone #attn.expr<...> form (positional names d0/in0, comparisons
// as functions so that '<' and '>' stay balanced inside the attribute).
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_DIALECTS_ATTN_EXPRSYNTAX_H
#define ATTN_DIALECTS_ATTN_EXPRSYNTAX_H

#include "attn/Dialect.h"

#include <functional>
#include <string>

namespace mlir::attn::syntax {

/// How names are printed.
struct PrintNames {
  /// Rank names by space position; empty for positional `d<i>` names.
  llvm::ArrayRef<std::string> space;
  /// Prints the base of a load from input `i` (-1: the Einsum itself).
  std::function<void(llvm::raw_ostream &, int64_t)> printInput;
  /// Print comparisons infix (`p <= m`) rather than as `le(p, m)`.
  bool infixCompare = true;
};

void printExpr(llvm::raw_ostream &os, ExprAttr e, const PrintNames &names);
void printAffine(llvm::raw_ostream &os, AffineExpr e,
                 llvm::ArrayRef<std::string> space);

/// Parser state: rank names seen so far (grown as new names appear) and the
/// hook that parses the base of a load.
struct ParseNames {
  /// Rank names by space position; new names are appended. Unused for
  /// positional parsing.
  llvm::SmallVectorImpl<std::string> *space = nullptr;
  /// Positional mode: ranks are `d<i>`, loads `in<i>` / `self`.
  bool positional = false;
  /// Named mode: if the next token starts a load base (an SSA value), parse
  /// it and set `input`; return std::nullopt when no load starts here.
  std::function<OptionalParseResult(int64_t &input)> parseInput;
};

/// Parses a full expression (arithmetic, comparisons, `and`/`or`).
ParseResult parseExpr(AsmParser &p, ParseNames &names, ExprAttr &result);

/// True if `name` is reserved (a function or keyword of the syntax).
bool isReservedName(llvm::StringRef name);

/// The element types of attn tensors, for diagnostics.
inline constexpr const char *kElementTypeNames =
    "f64, f32, f16, bf16, f8E4M3FN, f8E5M2, i64, i32, i8, i4 or i1";

/// Parses an element type, with a clear error for an unknown type name.
/// Whether the type is supported is checked by the caller.
ParseResult parseElementType(AsmParser &p, Type &type);

} // namespace mlir::attn::syntax

#endif // ATTN_DIALECTS_ATTN_EXPRSYNTAX_H
