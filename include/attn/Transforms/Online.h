//===- Online.h - planning the online (1-pass) form of a cascade -*- C++ -*-===//
//
// The analysis shared by attn-derive-online and attn-split-kv: which
// reductions over the key rank p can be computed from partial results
// (tiles of p, or splits of p) and how each partial result is rescaled when
// the reductions it depends on change. docs/derivation.md states the rule;
// this is its implementation.
//
// Vocabulary (all relative to the rank p):
//   * a *p-reduction* reduces p;
//   * the *online set* S holds the p-reductions to compute from partials
//     (all of them for the 1-pass form; those some other Einsum over p reads
//     in full for the 2-pass form);
//   * a *producer* is a max (min) in S that other members of S read;
//   * the *tiled* Einsums are the Einsums over p (not in S) that the members
//     of S read, directly or through each other: they are computed per tile;
//   * the *term* of a member R of S is its map expression with the tiled
//     Einsums that read S inlined. It must factor as Z * K, Z free of S and K
//     a product of exp(a * P) (or exp2) over producers P, each with the
//     stability condition of the derivation rule: a < 0 for a max (a > 0 for
//     a min), and Z contains exp(-a * s) where s is P's own term, so that a
//     partial result over elements P has not seen yet is zero and every
//     correction exp(a * (P_new - P_old)) lies in [0, 1].
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_TRANSFORMS_ONLINE_H
#define ATTN_TRANSFORMS_ONLINE_H

#include "attn/Transforms/GlobalCascade.h"

#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/MapVector.h"
#include "llvm/ADT/SetVector.h"

#include <functional>

namespace mlir::attn {

enum class OnlineMode {
  /// Every p-reduction from partials: one pass over p.
  OnePass,
  /// Only the reductions read in full inside the loop over p (the running
  /// max and denominator) from partials; the others in a second pass.
  TwoPass,
};

/// The rescaling of a partial result when producer P changes: the partial
/// carries the factor base(coef * P) with P loaded at `index` (global form,
/// in the consumer's ranks).
struct Correction {
  unsigned producer;
  double coef;
  bool base2;
  llvm::SmallVector<AffineExpr> index;
};

struct OnlinePlan {
  unsigned rank = 0;
  /// S, in program order.
  llvm::SetVector<unsigned> online;
  /// Einsums over p computed per tile.
  llvm::DenseSet<unsigned> tiled;
  /// Producers read inside the loop (they need a running reference value).
  llvm::SetVector<unsigned> producers;
  /// The corrections of every member of S (empty: none needed).
  llvm::DenseMap<unsigned, llvm::SmallVector<Correction>> corrections;
  /// What hoisting did, for the remark (e.g. "o: / sd, if (sd > 0)").
  llvm::SmallVector<std::string> hoisted;
};

/// Why a cascade has no online form: a location and a sentence.
struct Refusal {
  Location loc;
  std::string message;
};

/// Prints a global-form expression with rank and value names
/// (`exp(qk[b, h, m, p] - gm[b, h, m])`).
std::string printExpr(const GlobalCascade &gc, ExprAttr e);
std::string printAffine(const GlobalCascade &gc, AffineExpr e);

/// True if Einsum `id` iterates global rank `g` (uses it in its output,
/// expression or condition).
bool iteratesRank(const GlobalCascade &gc, unsigned id, unsigned g);
/// True if Einsum `id` reduces global rank `g`.
bool reducesRank(const GlobalCascade &gc, unsigned id, unsigned g);

/// Moves the factors and conditions of every sum over p that do not depend
/// on p but on another p-reduction out of the sum (`sum_p a * c = c * sum_p
/// a`): `o = sum_p sn * v / sd if (sd > 0)` becomes `o_num = sum_p sn * v`
/// and `o = o_num / sd if (sd > 0)`. Records what moved in `plan.hoisted`.
void hoistInvariantFactors(GlobalCascade &gc, unsigned rank, OnlinePlan &plan);

/// Plans the online form over `rank`; on failure fills `why` and returns
/// failure without having changed `gc`.
LogicalResult planOnline(GlobalCascade &gc, unsigned rank, OnlineMode mode,
                         OnlinePlan &plan, std::optional<Refusal> &why);

/// The identity of a reducer (0, -inf, +inf).
double reducerIdentity(Reducer r);

/// Rewrites Einsums over p for p = outer * tile + inner (tiles of the online
/// form, or splits of split-KV): indices over p are substituted, loads of
/// tiled Einsums get their two new indices, and loads of online values are
/// supplied by the caller (the running value, a split's partial, ...).
class TiledRewriter {
public:
  /// Supplies the load of online value `y` at `indices` (its own ranks,
  /// without the outer rank) inside the loop; `inCond` is true in a
  /// condition (the raw value) and false in an expression (the reference).
  using OnlineLoad =
      std::function<ExprAttr(unsigned y, llvm::SmallVector<ExprAttr> indices,
                             bool inCond)>;

  TiledRewriter(GlobalCascade &gc, const OnlinePlan &plan, unsigned outer,
                unsigned inner, int64_t tile, OnlineLoad onlineLoad)
      : gc(gc), plan(plan), outer(outer), inner(inner), tile(tile),
        onlineLoad(std::move(onlineLoad)) {}

  AffineExpr tiled(AffineExpr e) const;
  ExprAttr rewrite(ExprAttr e, bool inCond);
  /// The tiled copy of Einsum `x` (p replaced by outer, inner); returns the
  /// new value, already appended to `order`.
  unsigned emitTiled(unsigned x, std::vector<unsigned> &order);
  /// The tiled copies made so far (original -> copy).
  llvm::DenseMap<unsigned, unsigned> tiledId;
  /// Set when an expression cannot be rewritten.
  std::string error;

private:
  GlobalCascade &gc;
  const OnlinePlan &plan;
  unsigned outer, inner;
  int64_t tile;
  OnlineLoad onlineLoad;
};

} // namespace mlir::attn

#endif // ATTN_TRANSFORMS_ONLINE_H
