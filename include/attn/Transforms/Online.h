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
#include <map>
#include <tuple>

namespace mlir::attn {

class TiledRewriter;

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

/// A rank that is already partitioned (`p -> p1, p0 = 16`, the pages of a
/// paged KV cache) and whose reductions are written over the partition
/// (`max(p1, p0)`): the online form then iterates the existing outer rank
/// and takes the existing inner rank as its tile.
struct ExistingPartition {
  unsigned outer, inner;
  int64_t tile;
};

struct OnlinePlan {
  /// The key rank p.
  unsigned rank = 0;
  /// The rank whose reduction makes an Einsum a p-reduction: p, or the outer
  /// rank of `partition` when the cascade is written over it.
  unsigned loop = 0;
  std::optional<ExistingPartition> partition;
  /// A partition of p that the cascade declares (written over or not, as
  /// the blocks of 32 keys of block-sparse attention).
  std::optional<ExistingPartition> declared;
  /// The ranks through which a value depends on the keys: p, and the outer
  /// and inner ranks of an existing partition of p.
  llvm::SmallVector<unsigned, 3> keyRanks;
  /// S, in program order.
  llvm::SetVector<unsigned> online;
  /// Einsums over p computed per tile.
  llvm::DenseSet<unsigned> tiled;
  /// Producers read inside the loop (they need a running reference value).
  llvm::SetVector<unsigned> producers;
  /// Values that are the reference of a producer P, `select(P == -inf, 0,
  /// P)` (`ref_gmp` of a split-KV part): inside the loop they read as P's
  /// running reference, in expressions (not in conditions).
  llvm::DenseMap<unsigned, unsigned> aliases;
  /// The corrections of every member of S (empty: none needed).
  llvm::DenseMap<unsigned, llvm::SmallVector<Correction>> corrections;
  /// What hoisting did, for the remark (e.g. "o: / sd, if (sd > 0)").
  llvm::SmallVector<std::string> hoisted;
  /// The indicators of every member of S: the conditions on its elements
  /// that are free of S (its own and those of inlined Einsums).
  llvm::DenseMap<unsigned, llvm::SmallVector<ExprAttr>> indicators;
  /// Members of S whose terms are positive wherever an indicator holds (a
  /// product of exponentials and positive constants): a denominator whose
  /// logarithm is the log-sum-exp of a partial result.
  llvm::DenseSet<unsigned> positive;

  /// True if `e` uses one of keyRanks.
  bool usesKey(ExprAttr e) const;
  bool usesKey(AffineExpr e) const;
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

/// The type partial sums and running states of a reduction declared with
/// element type `t` are kept in: f32 for floats narrower than 32 bits (the
/// plain cascade rounds a reduction once, at its end; tiles must not round
/// every partial), `t` otherwise.
Type accumulationType(Type t);

/// Sets plan.rank, plan.loop, plan.partition and plan.keyRanks for the key
/// rank `rank` (hoistInvariantFactors and planOnline call it).
void initKeyRank(GlobalCascade &gc, unsigned rank, OnlinePlan &plan);

//===----------------------------------------------------------------------===//
// Building blocks of the rewrites
//===----------------------------------------------------------------------===//

/// `e` (global form) with the ranks `ranks` replaced by `indices`: the body
/// of a value whose ranks are `ranks`, seen from a load at `indices`.
AffineExpr substituteRanks(const GlobalCascade &gc, llvm::ArrayRef<unsigned> ranks,
                           llvm::ArrayRef<AffineExpr> indices, AffineExpr e);
ExprAttr substituteRanks(const GlobalCascade &gc, llvm::ArrayRef<unsigned> ranks,
                         llvm::ArrayRef<AffineExpr> indices, ExprAttr e);

/// The reference value of a running (or partial) max or min `v`:
/// `select(v == -inf, 0, v)` (`+inf` for a min). Exponents subtract the
/// reference, so that exp(-inf - -inf) never occurs.
ExprAttr safeReference(ExprAttr v, Reducer r);

/// The factor that rescales a partial result carrying base(a * P_old) to
/// P_new, `base(|a| * (old - ref))` for a < 0 (a max) and
/// `base(|a| * (ref - old))` for a > 0 (a min); `old` and `ref` are loads of
/// the producer's old value and of the new reference.
ExprAttr buildCorrection(const Correction &c, ExprAttr old, ExprAttr ref);

/// The correction Einsums emitted so far, by (producer, coef, base2): the
/// reductions rescaled by the same factor share one.
using CorrectionIds = std::map<std::tuple<unsigned, double, bool>, unsigned>;

/// Emits one Einsum per distinct correction of `producer` among
/// plan.corrections (named c_<P>, then c_<P>_<k>), with output `out` and
/// expression `build(c)`, through `emit`; records them in `ids` and returns
/// "name = expression" for each, for remarks.
llvm::SmallVector<std::string>
emitCorrections(GlobalCascade &gc, const OnlinePlan &plan, unsigned producer,
                llvm::ArrayRef<AffineExpr> out,
                llvm::function_ref<ExprAttr(const Correction &)> build,
                CorrectionIds &ids, llvm::function_ref<unsigned(GEinsum)> emit);

/// `value * c_P[index, outer] * ...` for each correction of S-member `r`
/// (`outer`: the iterative or split rank the corrections are indexed by).
ExprAttr rescale(const GlobalCascade &gc, const OnlinePlan &plan, unsigned r,
                 ExprAttr value, unsigned outer, const CorrectionIds &ids);

/// `e` with the loads of the values in `to` (original -> replacement)
/// redirected, indices unchanged: originals that stay outside the loop read
/// the final values of the online reductions.
ExprAttr redirectLoads(ExprAttr e, const llvm::DenseMap<unsigned, unsigned> &to);

/// The common skeleton of the rewrites: walks gc.body() in program order and
/// appends to `order` what replaces each Einsum: `emitOnline(x)` for a
/// member of S, a tiled copy for a tiled Einsum, and every Einsum but the
/// members of S themselves, reading the final values (`finalId`, filled by
/// emitOnline as it goes).
void emitBody(GlobalCascade &gc, const OnlinePlan &plan, TiledRewriter &rewriter,
              std::vector<unsigned> &order,
              const llvm::DenseMap<unsigned, unsigned> &finalId,
              llvm::function_ref<void(unsigned)> emitOnline);

/// Redirects the yields to the final values, installs `order` as the body and
/// drops the Einsums that no result needs.
void finishBody(GlobalCascade &gc, std::vector<unsigned> order,
                const llvm::DenseMap<unsigned, unsigned> &finalId);

//===----------------------------------------------------------------------===//
// The (O, LSE) form of a result
//===----------------------------------------------------------------------===//

/// How a result of the cascade is merged from partial results computed over
/// disjoint parts of the keys (the splits of split-KV, the prefix and the
/// suffix of Hydragen):
///   * Free: it does not depend on the online set;
///   * Ratio: `N / D` times factors free of S, where D is a positive sum of S
///     (the denominator) and N a linear combination of sums of S rescaled
///     exactly like D (the numerators): per part O_i = N_i / D_i, and
///     O = sum_i exp(LSE_i - LSE) * O_i with LSE_i = log of D_i without its
///     max (`ref_gm_i + log(D_i)`) and LSE = log sum_i exp(LSE_i);
///   * LogSum: `scale * LSE + rest` (`gm + log(sd)`), rest free of S.
struct NormalizedOutput {
  enum class Kind { Free, Ratio, LogSum };
  Kind kind = Kind::Free;
  /// The result (a value of the cascade).
  unsigned value = 0;
  /// Ratio: the expression of the result with the Einsums between it and S
  /// inlined (global form, in the result's ranks).
  ExprAttr expr;
  /// The denominator D and where the result reads it (in its ranks).
  unsigned den = 0;
  llvm::SmallVector<AffineExpr> denIndex;
  /// The conditions of the result that are free of S.
  llvm::SmallVector<ExprAttr> conds;
  /// The result is guarded by `D > 0` (empty, i.e. its else value, where
  /// every part is empty).
  bool guarded = false;
  /// LogSum: the result is scale * LSE + rest (rest free of S, or null).
  double scale = 1;
  ExprAttr rest;
};

/// Classifies the results `values` (the cascade's yields, or those of a
/// restriction) against `plan`; on failure, `why` names the result that has
/// no (O, LSE) form.
LogicalResult classifyOutputs(GlobalCascade &gc, const OnlinePlan &plan,
                              llvm::ArrayRef<unsigned> values,
                              llvm::SmallVectorImpl<NormalizedOutput> &out,
                              std::optional<Refusal> &why);

//===----------------------------------------------------------------------===//
// Several key ranks (Hydragen's shared prefix)
//===----------------------------------------------------------------------===//

/// The cascade restricted to the keys of one key rank r among several:
/// every combination of counterparts (`max(gmp, gms)`, `sdp + sds`) is
/// replaced by its part over r, so that the reductions over the other key
/// ranks drop out (as if those ranks were empty). Einsums that change get a
/// copy named `<name>_<r>`; a copy that only reads another value is
/// forwarded to it.
struct Restriction {
  unsigned rank = 0;
  /// The Einsums it needs, in program order (shared ones included).
  std::vector<unsigned> body;
  /// The results, in the order of the cascade's yields.
  std::vector<unsigned> yields;
};

/// Checks that the cascade computes one reduction over the union of the key
/// ranks `keyRanks`: every reduction over one of them is read only inside a
/// combination with exactly one counterpart over each other key rank (a
/// sum in `+`, a max in `max(...)`, a min in `min(...)`), nothing iterates
/// two key ranks, and every result needs only such combinations; then
/// builds the restriction to each key rank.
LogicalResult restrictToKeyRanks(GlobalCascade &gc, llvm::ArrayRef<unsigned> keyRanks,
                                 llvm::SmallVectorImpl<Restriction> &out,
                                 std::optional<Refusal> &why);

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
