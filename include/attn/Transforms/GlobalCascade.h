//===- GlobalCascade.h - a cascade in rank-global form ----------*- C++ -*-===//
//
// The editable form of an attn.cascade that the rewriting passes
// (attn-derive-online, attn-split-kv) work on. In an EinsumOp, dimension i of
// an index expression is the i-th rank of that Einsum's own `space`, and an
// operand is named by its position among that Einsum's operands; both change
// from Einsum to Einsum, which makes moving an expression from one Einsum
// into another (inlining, tiling, hoisting) error-prone. Here every Einsum is
// a GEinsum in *global* form:
//
//   * AffineDimExpr(g) is the value of rank g and AffineSymbolExpr(g) its
//     size |g|, where g is the rank's position in GlobalCascade::ranks()
//     (the cascade's ranks, its partition ranks, then ranks added by a
//     rewrite);
//   * a load's `input` is a global value id: the cascade's arguments first,
//     then every Einsum result ever created (-1 still names the Einsum's own
//     result, for iterative Einsums).
//
// A rewrite edits `body()` (the Einsums in program order) and `yields()`,
// then materialize() builds a new, verified cascade from them. The space of
// a materialized Einsum is its output ranks, then every other rank it uses
// in global order; its reduced ranks are the iterated ranks absent from the
// output, as the verifier requires.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_TRANSFORMS_GLOBALCASCADE_H
#define ATTN_TRANSFORMS_GLOBALCASCADE_H

#include "attn/Dialect.h"

#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/SmallVector.h"

#include <optional>
#include <string>
#include <vector>

namespace mlir::attn {

/// An Einsum in global form (see the file comment).
struct GEinsum {
  std::string name;
  /// Output indices: AffineDimExpr(g), or g + 1 along an iterative rank.
  llvm::SmallVector<AffineExpr> out;
  ExprAttr expr;
  /// The condition, or null.
  ExprAttr cond;
  Reducer reducer = Reducer::None;
  std::optional<double> fill, init;
  /// topk(k, rank): k and the global rank.
  std::optional<std::pair<int64_t, unsigned>> topk;
  Type elemType;
  /// Discardable attributes (annotations such as attn.sparse).
  llvm::SmallVector<NamedAttribute> attrs;
  Location loc;
};

/// Walks every node of `e`, including the index expressions of loads.
void walkExpr(ExprAttr e, llvm::function_ref<void(ExprAttr)> fn);

/// Rebuilds `e` bottom-up: `fn(node, newArgs)` returns the replacement of a
/// node whose arguments were already replaced by `newArgs`; returning null
/// keeps the node with the new arguments.
ExprAttr mapExpr(ExprAttr e,
                 llvm::function_ref<ExprAttr(ExprAttr, llvm::ArrayRef<ExprAttr>)> fn);

/// `e` with its arguments replaced.
ExprAttr withArgs(ExprAttr e, llvm::ArrayRef<ExprAttr> args);

/// `e` with every affine index expression (index nodes and load indices)
/// transformed by `fn`.
ExprAttr mapAffine(ExprAttr e, llvm::function_ref<AffineExpr(AffineExpr)> fn);

/// True if `e` uses the value (not only the size) of global rank `g`.
bool usesRank(ExprAttr e, unsigned g);
bool usesRank(AffineExpr e, unsigned g);

/// Adds scale * (coefficient of each rank value) of `e` to `coeffs` (indexed
/// by dimension position); false if `e` is not linear in the rank values
/// (symbols may appear anywhere outside products with ranks). The back ends
/// read affine mask bounds with it.
bool linearDimCoefficients(AffineExpr e, int64_t scale,
                           llvm::SmallVectorImpl<int64_t> &coeffs);

/// A mask conjunct comparing two affine indices (`l <= r`, `l < r`,
/// `l >= r`, `l > r`) as `d + strict <= 0`, with the coefficient of every
/// dimension of d (`numDims` of them): how the back ends read tile bounds
/// from masks.
struct AffineLeZero {
  AffineExpr d;
  int64_t strict = 0;
  llvm::SmallVector<int64_t> coeffs;
};
/// None for any other conjunct (equalities, loads, non-linear indices).
std::optional<AffineLeZero> affineLeZero(ExprAttr conjunct, unsigned numDims);

/// Splits a condition into its conjuncts (`a and b and c`).
void splitConjuncts(ExprAttr cond, llvm::SmallVectorImpl<ExprAttr> &out);
/// The conjunction of `conds` (null if empty).
ExprAttr conjoin(MLIRContext *ctx, llvm::ArrayRef<ExprAttr> conds);

class GlobalCascade {
public:
  explicit GlobalCascade(CascadeOp cascade);

  CascadeOp getCascade() const { return cascade; }
  MLIRContext *getContext() const { return cascade->getContext(); }

  // Ranks.
  unsigned numRanks() const { return rankNames.size(); }
  llvm::StringRef rankName(unsigned g) const { return rankNames[g]; }
  std::optional<unsigned> rankId(llvm::StringRef name) const;
  /// Appends a rank (e.g. the outer and inner ranks of a new partition).
  unsigned addRank(llvm::StringRef name);
  /// A rank name not used yet, `base` if free, else base with a suffix.
  std::string freshRankName(llvm::StringRef base) const;
  AffineExpr dim(unsigned g) const;
  AffineExpr sym(unsigned g) const;
  /// dim(g) for each rank of `ranks` (an output index), and as index
  /// expressions (the indices of a load at those ranks).
  llvm::SmallVector<AffineExpr> dims(llvm::ArrayRef<unsigned> ranks) const;
  llvm::SmallVector<ExprAttr> indices(llvm::ArrayRef<unsigned> ranks) const;
  ExprAttr index(AffineExpr e) const { return ExprAttr::getIndex(e); }
  /// Partitions added by the rewrite: rank, outer, inner, tile, ragged.
  void addPartition(unsigned rank, unsigned outer, unsigned inner, int64_t tile,
                    bool ragged);
  /// The static size of a rank of the original cascade, if any.
  std::optional<int64_t> staticSize(unsigned g) const;

  // Values.
  unsigned numArgs() const { return argCount; }
  /// True if `id` names an Einsum (rather than a cascade argument).
  bool isEinsum(unsigned id) const { return id >= argCount; }
  GEinsum &einsum(unsigned id) { return *einsums[id - argCount]; }
  const GEinsum &einsum(unsigned id) const { return *einsums[id - argCount]; }
  /// The global ranks of value `id`'s dimensions, in order.
  llvm::SmallVector<unsigned> valueRanks(unsigned id) const;
  Type valueElemType(unsigned id) const;
  /// A printable name of value `id`.
  std::string valueName(unsigned id) const;
  /// Registers a new Einsum (not yet placed in the body); returns its id.
  unsigned add(GEinsum e);
  /// Global ids of the values that `id`'s expression and condition load.
  llvm::SmallVector<unsigned> operandsOf(unsigned id) const;

  /// The Einsums in program order, and the values yielded.
  std::vector<unsigned> &body() { return order; }
  std::vector<unsigned> &yields() { return yielded; }

  /// Drops the Einsums of the body that no yielded value depends on.
  void removeDeadEinsums();

  /// Builds the cascade described by body() and yields() right before the
  /// original one and returns it (the original is left untouched; the caller
  /// erases one of the two). Returns null and reports through the
  /// diagnostic handler if the result does not verify.
  CascadeOp materialize();

private:
  mutable CascadeOp cascade;
  std::vector<std::string> rankNames;
  unsigned originalRankCount = 0;
  unsigned argCount = 0;
  std::vector<std::unique_ptr<GEinsum>> einsums;
  std::vector<unsigned> order;
  std::vector<unsigned> yielded;
  llvm::SmallVector<Attribute> newPartitions;
};

} // namespace mlir::attn

#endif // ATTN_TRANSFORMS_GLOBALCASCADE_H
