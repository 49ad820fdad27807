//===- Cost.cpp - FLOPs, bytes and buffers of attn cascades ----------------===//
//
// This file implements the cost side of the analysis: operation counts of
// map expressions, the number of points of an Einsum (counting conditions
// exactly by enumeration where the sizes allow it), and CostAnalysis (FLOPs,
// fused and unfused bytes, the largest and the peak of live intermediates).
//
//===----------------------------------------------------------------------===//

#include "attn/Analysis.h"
#include "attn/Interpreter.h"

#include "mlir/IR/AffineExpr.h"
#include "llvm/ADT/STLExtras.h"

#include <cmath>

using namespace mlir;
using namespace mlir::attn;

//===----------------------------------------------------------------------===//
// Expression operations
//===----------------------------------------------------------------------===//

static void countOps(ExprAttr e, ExprOps &ops) {
  switch (e.getKind()) {
  case ExprKind::Load:
    // Free, and so is the index arithmetic of a gather.
    return;
  case ExprKind::Index:
  case ExprKind::Const:
    return;
  case ExprKind::Exp: case ExprKind::Exp2: case ExprKind::Log:
  case ExprKind::Log2: case ExprKind::Tanh: case ExprKind::Sigmoid:
  case ExprKind::Sqrt:
    ++ops.special;
    break;
  default:
    ++ops.arithmetic;
    break;
  }
  for (ExprAttr arg : e.getArgs())
    countOps(arg, ops);
}

ExprOps mlir::attn::countExprOps(ExprAttr expr) {
  ExprOps ops;
  countOps(expr, ops);
  return ops;
}

//===----------------------------------------------------------------------===//
// Points
//===----------------------------------------------------------------------===//

namespace {
/// A load-free condition compiled to a flat array of nodes, evaluated at
/// every enumerated point: `dims` holds the value of every rank of the
/// Einsum's space, `syms` its size. Symbols are folded into constants.
class CompiledCondition {
public:
  CompiledCondition(ExprAttr e, ArrayRef<int64_t> syms) : syms(syms) {
    root = compile(e);
  }

  bool holds(ArrayRef<int64_t> dims) const { return eval(root, dims) != 0.0; }

private:
  /// Affine nodes (values are integers) and expression nodes share one
  /// array; `isAffine` tells them apart.
  struct Node {
    bool isAffine;
    AffineExprKind affineKind;
    ExprKind kind;
    int64_t value;   // An affine constant, or the dimension position.
    double constant; // A floating-point constant.
    unsigned args[3];
    unsigned numArgs;
    Type castType;
  };

  unsigned add(Node n) {
    nodes.push_back(n);
    return nodes.size() - 1;
  }

  unsigned compileAffine(AffineExpr e) {
    Node n{true, e.getKind(), ExprKind::Index, 0, 0.0, {0, 0, 0}, 0, Type()};
    if (auto c = dyn_cast<AffineConstantExpr>(e)) {
      n.value = c.getValue();
    } else if (auto d = dyn_cast<AffineDimExpr>(e)) {
      n.value = d.getPosition();
    } else if (auto s = dyn_cast<AffineSymbolExpr>(e)) {
      n.affineKind = AffineExprKind::Constant;
      n.value = syms[s.getPosition()];
    } else {
      auto bin = cast<AffineBinaryOpExpr>(e);
      n.args[0] = compileAffine(bin.getLHS());
      n.args[1] = compileAffine(bin.getRHS());
    }
    return add(n);
  }

  unsigned compile(ExprAttr e) {
    Node n{false, AffineExprKind::Constant, e.getKind(), 0, 0.0, {0, 0, 0},
           (unsigned)std::min<size_t>(e.getArgs().size(), 3), e.getCastType()};
    if (e.getKind() == ExprKind::Index)
      n.args[0] = compileAffine(e.getIndex());
    else if (e.getKind() == ExprKind::Const)
      n.constant = e.getConstValue();
    for (auto [i, arg] : llvm::enumerate(e.getArgs()))
      if (i < 3)
        n.args[i] = compile(arg);
    return add(n);
  }

  int64_t affine(unsigned i, ArrayRef<int64_t> dims) const {
    const Node &n = nodes[i];
    switch (n.affineKind) {
    case AffineExprKind::Constant:
      return n.value;
    case AffineExprKind::DimId:
      return dims[n.value];
    default:
      break;
    }
    int64_t l = affine(n.args[0], dims), r = affine(n.args[1], dims);
    switch (n.affineKind) {
    case AffineExprKind::Add:
      return l + r;
    case AffineExprKind::Mul:
      return l * r;
    case AffineExprKind::FloorDiv:
      return r == 0 ? 0 : llvm::divideFloorSigned(l, r);
    case AffineExprKind::CeilDiv:
      return r == 0 ? 0 : llvm::divideCeilSigned(l, r);
    case AffineExprKind::Mod:
      return r <= 0 ? 0 : llvm::mod(l, r);
    default:
      return 0;
    }
  }

  double eval(unsigned i, ArrayRef<int64_t> dims) const {
    const Node &n = nodes[i];
    auto arg = [&](unsigned k) { return eval(n.args[k], dims); };
    switch (n.kind) {
    case ExprKind::Index: return (double)affine(n.args[0], dims);
    case ExprKind::Const: return n.constant;
    case ExprKind::Load: return 0.0; // Not reached: loads are not enumerated.
    default: {
      double values[3] = {0, 0, 0};
      for (unsigned k = 0; k < n.numArgs; ++k)
        values[k] = arg(k);
      return applyScalarOp(n.kind, ArrayRef<double>(values, n.numArgs),
                           n.castType);
    }
    }
  }

  ArrayRef<int64_t> syms;
  std::vector<Node> nodes;
  unsigned root;
};
} // namespace

/// Splits a condition into its conjuncts.
static void collectConjuncts(ExprAttr e, SmallVectorImpl<ExprAttr> &out) {
  if (e.getKind() == ExprKind::And) {
    for (ExprAttr arg : e.getArgs())
      collectConjuncts(arg, out);
    return;
  }
  out.push_back(e);
}

static bool hasLoad(ExprAttr e) {
  bool found = false;
  e.walk([&](ExprAttr node) { found |= node.getKind() == ExprKind::Load; });
  return found;
}

Bound mlir::attn::countPoints(EinsumOp op, const RankSizes &sizes,
                              uint64_t limit) {
  CascadeOp cascade = sizes.getCascade();
  SmallVector<StringRef> iterated = op.getIterationRanks();
  SmallVector<StringRef> space(op.getSpace().getAsValueRange<StringAttr>());
  auto positionOf = [&](StringRef rank) {
    return (unsigned)(llvm::find(space, rank) - space.begin());
  };

  // Partitions whose outer and inner ranks are both iterated: together they
  // cover the |p| points of p (the ragged remainder is not iterated).
  SmallVector<PartitionAttr> pairs;
  for (auto part : cascade.getPartitions().getAsRange<PartitionAttr>())
    if (llvm::is_contained(iterated, part.getOuter().getValue()) &&
        llvm::is_contained(iterated, part.getInner().getValue()))
      pairs.push_back(part);

  // The load-free conjuncts of the condition and the ranks and sizes they
  // use.
  SmallVector<ExprAttr> conjuncts, enumerated;
  if (auto cond = op.getCond())
    collectConjuncts(*cond, conjuncts);
  llvm::SetVector<unsigned> enumDims;
  llvm::SmallSetVector<unsigned, 4> usedSyms;
  for (ExprAttr c : conjuncts) {
    if (hasLoad(c))
      continue;
    enumerated.push_back(c);
    c.walk([&](ExprAttr node) {
      if (node.getKind() != ExprKind::Index)
        return;
      node.getIndex().walk([&](AffineExpr sub) {
        if (auto d = dyn_cast<AffineDimExpr>(sub))
          enumDims.insert(d.getPosition());
        if (auto s = dyn_cast<AffineSymbolExpr>(sub))
          usedSyms.insert(s.getPosition());
      });
    });
  }
  // A condition on one rank of a pair enumerates both, with the ragged
  // remainder excluded.
  SmallVector<PartitionAttr> enumPairs;
  for (PartitionAttr part : pairs) {
    unsigned outer = positionOf(part.getOuter().getValue());
    unsigned inner = positionOf(part.getInner().getValue());
    if (!enumDims.contains(outer) && !enumDims.contains(inner))
      continue;
    enumDims.insert(outer);
    enumDims.insert(inner);
    enumPairs.push_back(part);
  }

  bool exact = enumerated.size() == conjuncts.size();
  bool canEnumerate = !enumerated.empty();
  SmallVector<int64_t> symValues(space.size(), 0);
  for (unsigned s : usedSyms) {
    std::optional<int64_t> n = sizes.staticSize(space[s]);
    canEnumerate &= n.has_value();
    symValues[s] = n.value_or(0);
  }
  SmallVector<int64_t> extents;
  uint64_t combinations = 1;
  for (unsigned d : enumDims) {
    std::optional<int64_t> n = sizes.staticSize(space[d]);
    if (!n || *n <= 0 || combinations > limit / (uint64_t)*n) {
      canEnumerate = false;
      break;
    }
    extents.push_back(*n);
    combinations *= *n;
  }
  SmallVector<int64_t> raggedWhole;
  for (PartitionAttr part : enumPairs) {
    std::optional<int64_t> n = sizes.staticSize(part.getRank().getValue());
    canEnumerate &= n.has_value();
    raggedWhole.push_back(n.value_or(0));
  }
  if (!canEnumerate) {
    // The dense count bounds the points that satisfy the condition.
    exact = conjuncts.empty();
    enumDims.clear();
    enumPairs.clear();
  }

  // The ranks not enumerated: a dense product.
  Poly points(1);
  for (StringRef rank : iterated) {
    unsigned pos = positionOf(rank);
    if (enumDims.contains(pos))
      continue;
    auto pair = llvm::find_if(pairs, [&](PartitionAttr part) {
      return part.getOuter().getValue() == rank ||
             part.getInner().getValue() == rank;
    });
    if (pair == pairs.end())
      points *= sizes.size(rank);
    else if (pair->getOuter().getValue() == rank)
      points *= sizes.size(pair->getRank().getValue());
  }
  if (enumDims.empty())
    return Bound{points, exact};

  // Enumerate the condition's ranks (an odometer over their values).
  SmallVector<int64_t> dimValues(space.size(), 0);
  SmallVector<CompiledCondition> conditions;
  for (ExprAttr c : enumerated)
    conditions.emplace_back(c, symValues);
  SmallVector<unsigned> dims(enumDims.begin(), enumDims.end());
  uint64_t count = 0;
  while (true) {
    bool inside = true;
    for (auto [part, whole] : llvm::zip(enumPairs, raggedWhole)) {
      int64_t outer = dimValues[positionOf(part.getOuter().getValue())];
      int64_t inner = dimValues[positionOf(part.getInner().getValue())];
      inside &= outer * part.getTile() + inner < whole;
    }
    for (const CompiledCondition &c : conditions) {
      if (!inside)
        break;
      inside &= c.holds(dimValues);
    }
    count += inside;
    unsigned i = 0;
    for (; i < dims.size(); ++i) {
      if (++dimValues[dims[i]] < extents[i])
        break;
      dimValues[dims[i]] = 0;
    }
    if (i == dims.size())
      break;
  }
  return Bound{points * Poly(Rational((int64_t)count)), exact};
}

//===----------------------------------------------------------------------===//
// CostAnalysis
//===----------------------------------------------------------------------===//

/// `b` times `factor`; zero times a bound is exactly zero.
static Bound scale(const Bound &b, unsigned factor) {
  return Bound{b.value * Poly((int64_t)factor), b.exact || factor == 0};
}

CostAnalysis::CostAnalysis(CascadeOp cascade, const PassAnalysis &passes)
    : sizes(cascade), passes(passes) {
  Block &body = cascade.getBodyBlock();

  // FLOPs.
  for (EinsumOp op : body.getOps<EinsumOp>()) {
    EinsumCost cost;
    cost.points = countPoints(op, sizes);
    cost.ops = countExprOps(op.getExpr());
    cost.combines = op.getReducer() != Reducer::None ? 1 : 0;
    cost.flops = scale(cost.points, cost.ops.arithmetic + cost.combines);
    cost.special = scale(cost.points, cost.ops.special);
    flops += cost.flops;
    special += cost.special;
    costs[op] = std::move(cost);
  }

  // Bytes.
  auto yield = cast<YieldOp>(body.getTerminator());
  for (BlockArgument arg : body.getArguments())
    fusedBytes += sizes.bytes(arg);
  for (Value result : yield.getValues())
    fusedBytes += sizes.bytes(result);
  for (EinsumOp op : body.getOps<EinsumOp>()) {
    for (Value input : op.getInputs())
      unfusedBytes += sizes.bytes(input);
    unfusedBytes += sizes.bytes(op.getResult());
  }

  // Buffers: live ranges of the intermediates in program order.
  SmallVector<EinsumOp> order(body.getOps<EinsumOp>());
  DenseMap<Operation *, unsigned> position;
  for (auto [i, op] : llvm::enumerate(order))
    position[op] = i;
  struct Interval {
    Value value;
    unsigned def, last;
    Poly bytes;
    Rational weight;
  };
  SmallVector<Interval> intervals;
  for (auto [i, op] : llvm::enumerate(order)) {
    Value result = op.getResult();
    if (llvm::is_contained(yield.getValues(), result))
      continue;
    unsigned last = i;
    for (Operation *user : result.getUsers())
      if (auto it = position.find(user); it != position.end())
        last = std::max(last, it->second);
    Poly held = getHeldBytes(result);
    Rational weight = held.evaluate();
    intervals.push_back({result, (unsigned)i, last, held, weight});
    if (!buffer.largest || buffer.largestBytes.evaluate() < weight) {
      buffer.largest = result;
      buffer.largestBytes = held;
    }
  }
  std::optional<Rational> peakWeight;
  for (auto [i, op] : llvm::enumerate(order)) {
    Poly total;
    Rational weight;
    SmallVector<Value> live;
    for (const Interval &in : intervals) {
      if (in.def > i || in.last < i)
        continue;
      total += in.bytes;
      weight = weight + in.weight;
      live.push_back(in.value);
    }
    if (live.empty() || (peakWeight && !(*peakWeight < weight)))
      continue;
    peakWeight = weight;
    buffer.peakBytes = total;
    buffer.peakAt = op;
    buffer.peakLive = std::move(live);
  }
}

const EinsumCost &CostAnalysis::getCost(EinsumOp op) const {
  auto it = costs.find(op);
  assert(it != costs.end() && "not an Einsum of the analyzed cascade");
  return it->second;
}

Poly CostAnalysis::getHeldBytes(Value tensor) const {
  auto type = cast<NamedTensorType>(tensor.getType());
  CascadeOp cascade = sizes.getCascade();
  StringRef iterative;
  if (auto op = tensor.getDefiningOp<EinsumOp>())
    iterative = op.getIterativeRank();
  Poly n = Poly(getElementBytes(type.getElementType()));
  for (StringAttr rankAttr : type.getRanks()) {
    StringRef rank = rankAttr.getValue();
    // A running state holds one step.
    if (rank == iterative)
      continue;
    // A 1-pass partitioned rank is streamed one tile at a time.
    PartitionAttr part = cascade.getPartitionOf(rank);
    if (part && part.getOuter().getValue() == rank &&
        passes.getPassCount(part.getRank().getValue()) == 1)
      continue;
    n *= sizes.size(rank);
  }
  return n;
}
