//===- Analysis.h - analyses of attn cascades -------------------*- C++ -*-===//
//
// Static analyses of an attn.cascade: the pass count of every reduced rank
// (FuseMax, arXiv 2406.10491, Sec. III), FLOPs, bytes moved and buffer
// sizes. Costs are exact symbolic polynomials in the rank sizes (Poly).
//
// The analyses are plain classes computed eagerly from a cascade; they do not
// hold on to the IR beyond the operations they map, so rebuild them after a
// rewrite (the derivation pass re-runs PassAnalysis to report "3 -> 1").
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_ANALYSIS_H
#define ATTN_ANALYSIS_H

#include "attn/Dialect.h"

#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/DynamicAPInt.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/ADT/StringMap.h"

#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace mlir::attn {

//===----------------------------------------------------------------------===//
// Exact arithmetic
//===----------------------------------------------------------------------===//

/// An exact rational number with arbitrary-precision numerator and
/// denominator, always normalized (denominator > 0, gcd 1).
class Rational {
public:
  Rational(int64_t n = 0) : num(n), den(1) {}
  Rational(llvm::DynamicAPInt n, llvm::DynamicAPInt d);
  static Rational get(int64_t n, int64_t d) {
    return Rational(llvm::DynamicAPInt(n), llvm::DynamicAPInt(d));
  }

  const llvm::DynamicAPInt &getNumerator() const { return num; }
  const llvm::DynamicAPInt &getDenominator() const { return den; }
  bool isZero() const { return num == 0; }
  bool isOne() const { return num == 1 && den == 1; }
  bool isInteger() const { return den == 1; }
  bool isNegative() const { return num < 0; }
  /// The nearest double (for display only; comparisons are exact).
  double toDouble() const;

  /// Prints an integer as is, a fraction whose denominator has no prime
  /// factors but 2 and 5 as a finite decimal (`0.125`), others as `1/3`.
  void print(llvm::raw_ostream &os) const;
  std::string str() const;

  friend Rational operator+(const Rational &a, const Rational &b);
  friend Rational operator-(const Rational &a, const Rational &b);
  friend Rational operator*(const Rational &a, const Rational &b);
  friend Rational operator/(const Rational &a, const Rational &b);
  Rational operator-() const { return Rational(-num, den); }
  friend bool operator==(const Rational &a, const Rational &b) {
    return a.num == b.num && a.den == b.den;
  }
  friend bool operator!=(const Rational &a, const Rational &b) {
    return !(a == b);
  }
  friend bool operator<(const Rational &a, const Rational &b) {
    return a.num * b.den < b.num * a.den;
  }

private:
  llvm::DynamicAPInt num, den;
};

Rational operator+(const Rational &a, const Rational &b);
Rational operator-(const Rational &a, const Rational &b);
Rational operator*(const Rational &a, const Rational &b);
Rational operator/(const Rational &a, const Rational &b);

inline llvm::raw_ostream &operator<<(llvm::raw_ostream &os, const Rational &r) {
  r.print(os);
  return os;
}

/// A variable of a polynomial: the size of a rank. Variables sort by `order`
/// (the rank's declaration position) and then by name, which fixes the order
/// in which they print inside a monomial (`b*h*m*p`, as declared).
struct PolySymbol {
  int order = 0;
  std::string name;
  friend bool operator<(const PolySymbol &a, const PolySymbol &b) {
    return std::tie(a.order, a.name) < std::tie(b.order, b.name);
  }
  friend bool operator==(const PolySymbol &a, const PolySymbol &b) {
    return a.order == b.order && a.name == b.name;
  }
};

/// The value every symbol takes when polynomials are compared (to pick the
/// largest buffer): a dynamic rank size is assumed to be 4096.
inline constexpr int64_t kDefaultSymbolValue = 4096;

/// A polynomial in rank sizes with exact rational coefficients, e.g.
/// `387*b*h*m*p + b*h*m`. Terms print by decreasing degree, then by their
/// variables in declaration order; a power prints as `p^2`.
class Poly {
public:
  /// A product of variables, sorted, a variable repeated for its power.
  using Monomial = std::vector<PolySymbol>;
  /// Term order: higher degree first, then lexicographic on the variables.
  struct TermLess {
    bool operator()(const Monomial &a, const Monomial &b) const {
      if (a.size() != b.size())
        return a.size() > b.size();
      return a < b;
    }
  };
  using Terms = std::map<Monomial, Rational, TermLess>;

  Poly() = default;
  Poly(int64_t c) : Poly(Rational(c)) {}
  Poly(const Rational &c);
  /// The polynomial consisting of one variable.
  static Poly symbol(llvm::StringRef name, int order = 0);

  const Terms &getTerms() const { return terms; }
  bool isZero() const { return terms.empty(); }
  /// The value of a polynomial without variables.
  std::optional<Rational> getConstant() const;
  bool isConstant() const { return getConstant().has_value(); }
  /// The names of the variables that occur, sorted by order.
  std::vector<PolySymbol> getSymbols() const;

  /// The value with every variable replaced by `value(symbol)`.
  Rational evaluate(llvm::function_ref<Rational(const PolySymbol &)> value) const;
  /// The value with every variable set to `value` (kDefaultSymbolValue).
  Rational evaluate(int64_t value = kDefaultSymbolValue) const;

  Poly &operator+=(const Poly &other);
  Poly &operator-=(const Poly &other);
  Poly &operator*=(const Poly &other);
  friend Poly operator+(Poly a, const Poly &b) { return a += b; }
  friend Poly operator-(Poly a, const Poly &b) { return a -= b; }
  friend Poly operator*(Poly a, const Poly &b) { return a *= b; }
  friend bool operator==(const Poly &a, const Poly &b) {
    return a.terms == b.terms;
  }
  friend bool operator!=(const Poly &a, const Poly &b) { return !(a == b); }

  void print(llvm::raw_ostream &os) const;
  std::string str() const;

private:
  void addTerm(const Monomial &m, const Rational &c);
  Terms terms;
};

inline llvm::raw_ostream &operator<<(llvm::raw_ostream &os, const Poly &p) {
  p.print(os);
  return os;
}

/// A count that is exact or only an upper bound (prints as `<= ...`).
struct Bound {
  Poly value;
  bool exact = true;

  Bound &operator+=(const Bound &other) {
    value += other.value;
    exact &= other.exact;
    return *this;
  }
  void print(llvm::raw_ostream &os) const;
  std::string str() const;
};

inline llvm::raw_ostream &operator<<(llvm::raw_ostream &os, const Bound &b) {
  b.print(os);
  return os;
}

//===----------------------------------------------------------------------===//
// Rank sizes and tensor sizes
//===----------------------------------------------------------------------===//

/// Bytes per element: f64/i64 8, f32/i32 4, f16/bf16 2, f8 and i8 1, i4 1/2,
/// i1 1/8 (bit width / 8).
Rational getElementBytes(Type elementType);

/// A printable name of a tensor of a cascade: the argument name, the
/// Einsum's `name`, or `einsum#<position>`.
std::string getValueName(Value value);

/// The sizes of a cascade's ranks as polynomials. A static size is a number;
/// a dynamic size is the variable named like the rank. The inner rank of a
/// partition has the tile size; the outer rank is `ceildiv(|p|, tile)` when
/// |p| is static and its own variable otherwise. A relation `h = 4 * g`
/// between dynamic ranks expresses the right-hand rank through the left
/// (`|g| = h/4`), or either through the static one.
class RankSizes {
public:
  explicit RankSizes(CascadeOp cascade);

  CascadeOp getCascade() const { return cascade; }
  /// |rank| as a polynomial.
  Poly size(llvm::StringRef rank) const;
  /// |rank| if it is a number.
  std::optional<int64_t> staticSize(llvm::StringRef rank) const;
  /// The declaration position of a rank (outer partition ranks right after
  /// the rank they partition), which orders variables when printing.
  int order(llvm::StringRef rank) const;

  /// Elements of a tensor: the product of its rank sizes, with |r| + 1
  /// entries along r for the result of an Einsum iterative along r.
  Poly elements(Value tensor) const;
  /// Bytes of a tensor: elements times getElementBytes.
  Poly bytes(Value tensor) const;

private:
  Poly computeSize(llvm::StringRef rank, unsigned depth) const;

  /// Op accessors are not const: the handle is mutable.
  mutable CascadeOp cascade;
  llvm::StringMap<int> orders;
};

//===----------------------------------------------------------------------===//
// Pass count
//===----------------------------------------------------------------------===//

/// The rank whose passes a reduction or iteration over `rank` counts for:
/// `p` for the outer rank p1 of a partition `p -> p1, p0`, nothing (an empty
/// StringRef) for the inner rank p0 (it stays within one tile), otherwise
/// `rank` itself.
llvm::StringRef getPassRank(CascadeOp cascade, llvm::StringRef rank);

/// Pass counts in FuseMax's sense, for every rank that some Einsum reduces
/// (`reduced`) or iterates (`r + 1` output index), partitions counted over
/// their outer rank and reported under the partitioned rank.
///
/// For a rank r, an *r-reduction* is an Einsum that reduces r or iterates
/// along r. Einsum E *depends in full* on an r-reduction R if E, or any
/// Einsum E reads transitively, reads R other than by a prefix read. A prefix
/// read is a load of the result of an Einsum iterative along t (with t
/// counting for r) at index `t` or `t + 1` from an Einsum that iterates t:
/// the running state up to the current step. What the iterative Einsum
/// itself depends on in full still propagates through a prefix read. For
/// every Einsum E iterating r:
///
///   level_r(E) = 1 + max { level_r(R) : R an r-reduction E depends on in full }
///
/// (1 without any), and passes(r) is the largest level. The Einsums of level k
/// form pass k.
class PassAnalysis {
public:
  explicit PassAnalysis(CascadeOp cascade);

  CascadeOp getCascade() const { return cascade; }
  /// The ranks reported, in declaration order.
  llvm::ArrayRef<std::string> getRanks() const { return ranks; }

  /// True if `op` iterates `rank` (the rank itself or its outer partition
  /// rank).
  bool iterates(EinsumOp op, llvm::StringRef rank) const;
  /// True if `op` is a `rank`-reduction.
  bool isReduction(EinsumOp op, llvm::StringRef rank) const;
  /// True if loading the result of `producer` at `indices` from `reader` is a
  /// prefix read with respect to `rank`.
  bool isPrefixRead(EinsumOp reader, EinsumOp producer,
                    llvm::ArrayRef<ExprAttr> indices,
                    llvm::StringRef rank) const;

  /// The level of `op` for `rank`; 0 if `op` does not iterate `rank` or the
  /// rank is not reported.
  unsigned getLevel(EinsumOp op, llvm::StringRef rank) const;
  /// passes(rank); 0 if the rank is not reported.
  unsigned getPassCount(llvm::StringRef rank) const;
  /// The Einsums of pass `pass` (1-based), in program order.
  llvm::SmallVector<EinsumOp> getPassEinsums(llvm::StringRef rank,
                                             unsigned pass) const;
  /// The `rank`-reductions `op` depends on in full, in program order.
  llvm::SmallVector<EinsumOp> getFullDependences(EinsumOp op,
                                                 llvm::StringRef rank) const;
  /// The tensors that the Einsums of pass `pass` read along `rank` (or its
  /// partition ranks) although an earlier pass produced or read them. A load
  /// of one entry along the rank (a final state `rm[m, |p1|]`) is no
  /// traversal and is not listed.
  llvm::SmallVector<Value> getReReads(llvm::StringRef rank,
                                      unsigned pass) const;

private:
  struct RankInfo {
    /// Level of every Einsum iterating the rank.
    llvm::DenseMap<Operation *, unsigned> levels;
    /// Full dependences (rank-reductions) of every Einsum.
    llvm::DenseMap<Operation *, llvm::SetVector<Operation *>> deps;
    unsigned passes = 0;
  };
  void analyzeRank(llvm::StringRef rank, RankInfo &info);
  /// True if a tensor dimension of rank `tensorRank` is indexed by `rank`
  /// (the rank itself or one of its partition ranks).
  bool isIndexedBy(llvm::StringRef tensorRank, llvm::StringRef rank) const;

  /// Op accessors are not const: the handle is mutable.
  mutable CascadeOp cascade;
  std::vector<std::string> ranks;
  llvm::StringMap<RankInfo> infos;
};

//===----------------------------------------------------------------------===//
// Costs
//===----------------------------------------------------------------------===//

/// Operation counts of one evaluation of an expression.
struct ExprOps {
  /// add, sub, mul, div, neg, max, min, floordiv, mod, select, pow, abs,
  /// round, floor, cast, and comparisons and boolean connectives used as
  /// values (in a select): 1 each.
  unsigned arithmetic = 0;
  /// exp, exp2, log, log2, tanh, sigmoid, sqrt: 1 each.
  unsigned special = 0;
};

/// Counts the nodes of a map expression. Loads, rank values and constants
/// are free, and so is the index arithmetic inside a load (addressing).
ExprOps countExprOps(ExprAttr expr);

/// The maximum number of points enumerated to count a condition exactly.
inline constexpr uint64_t kMaxEnumeratedPoints = 100000000;

/// The number of points of `op`'s iteration space that satisfy its condition.
/// Without a condition, the product of the iteration rank sizes (an Einsum
/// iterating both ranks of a partition of p counts |p| for the pair, which
/// excludes the ragged remainder). The conjuncts of a condition that do not
/// load from tensors are counted exactly by enumerating the ranks they use
/// when their sizes are static and there are at most `limit` combinations;
/// conjuncts that load (runtime data) or dynamic sizes give an upper bound.
Bound countPoints(EinsumOp op, const RankSizes &sizes,
                  uint64_t limit = kMaxEnumeratedPoints);

/// The costs of one Einsum.
struct EinsumCost {
  Bound points;
  ExprOps ops;
  /// 1 if the Einsum reduces (one combine per point), else 0.
  unsigned combines = 0;
  /// points * (ops.arithmetic + combines).
  Bound flops;
  /// points * ops.special.
  Bound special;
};

/// The largest intermediate and the peak of live intermediates.
struct BufferInfo {
  /// The largest intermediate (first in program order on ties); null if
  /// every Einsum result is yielded.
  Value largest;
  Poly largestBytes;
  /// The peak total of intermediates live at one Einsum, the Einsum where it
  /// is reached and the intermediates live there.
  Poly peakBytes;
  Operation *peakAt = nullptr;
  llvm::SmallVector<Value> peakLive;
};

/// FLOPs, bytes and buffers of a cascade.
///
/// Bytes: `fused` = arguments + results of the cascade (one kernel reading
/// its inputs and writing its outputs once); `unfused` = the sum over
/// Einsums of the bytes of their operands and result.
///
/// Buffers: the intermediates are the Einsum results that are not yielded;
/// one is live from its definition to its last use. An Einsum result
/// iterative along r holds one step (r dropped), and when passes(p) == 1 for
/// a partition `p -> p1, p0`, a tensor indexed by p1 holds one tile (p1
/// dropped). Sizes compare by their value with every variable set to
/// kDefaultSymbolValue.
class CostAnalysis {
public:
  CostAnalysis(CascadeOp cascade, const PassAnalysis &passes);

  const RankSizes &getSizes() const { return sizes; }
  const EinsumCost &getCost(EinsumOp op) const;
  const Bound &getFlops() const { return flops; }
  const Bound &getSpecial() const { return special; }
  const Poly &getFusedBytes() const { return fusedBytes; }
  const Poly &getUnfusedBytes() const { return unfusedBytes; }
  const BufferInfo &getBuffer() const { return buffer; }
  /// The bytes an intermediate holds under the rules above.
  Poly getHeldBytes(Value tensor) const;

private:
  RankSizes sizes;
  const PassAnalysis &passes;
  llvm::DenseMap<Operation *, EinsumCost> costs;
  Bound flops, special;
  Poly fusedBytes, unfusedBytes;
  BufferInfo buffer;
};

} // namespace mlir::attn

#endif // ATTN_ANALYSIS_H
