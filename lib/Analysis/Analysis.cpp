//===- Analysis.cpp - rank sizes and pass counts of attn cascades ----------===//
//
// This file implements RankSizes (rank and tensor sizes as polynomials) and
// PassAnalysis, the pass count of every reduced rank by the rule of
// FuseMax (arXiv 2406.10491, Sec. III) as stated in include/attn/Analysis.h.
//
//===----------------------------------------------------------------------===//

#include "attn/Analysis.h"

#include "mlir/IR/AffineExpr.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringSet.h"

using namespace mlir;
using namespace mlir::attn;

//===----------------------------------------------------------------------===//
// Tensors
//===----------------------------------------------------------------------===//

Rational mlir::attn::getElementBytes(Type elementType) {
  return Rational::get(elementType.getIntOrFloatBitWidth(), 8);
}

std::string mlir::attn::getValueName(Value value) {
  if (auto arg = dyn_cast<BlockArgument>(value)) {
    if (auto cascade = dyn_cast<CascadeOp>(arg.getOwner()->getParentOp()))
      if (arg.getArgNumber() < cascade.getArgNames().size())
        return cast<StringAttr>(cascade.getArgNames()[arg.getArgNumber()])
            .str();
    return "arg" + std::to_string(arg.getArgNumber());
  }
  auto op = value.getDefiningOp<EinsumOp>();
  if (!op)
    return "value";
  if (auto name = op.getName())
    return name->str();
  unsigned position = 0;
  for (Operation &other : *op->getBlock()) {
    if (&other == op.getOperation())
      break;
    position += isa<EinsumOp>(other);
  }
  return "einsum#" + std::to_string(position);
}

//===----------------------------------------------------------------------===//
// RankSizes
//===----------------------------------------------------------------------===//

RankSizes::RankSizes(CascadeOp cascade) : cascade(cascade) {
  int next = 0;
  for (auto rank : cascade.getRanks().getAsRange<RankAttr>()) {
    StringRef name = rank.getName().getValue();
    orders[name] = next;
    for (auto part : cascade.getPartitions().getAsRange<PartitionAttr>()) {
      if (part.getRank().getValue() != name)
        continue;
      orders[part.getOuter().getValue()] = next + 1;
      orders[part.getInner().getValue()] = next + 2;
    }
    next += 4;
  }
}

int RankSizes::order(StringRef rank) const {
  auto it = orders.find(rank);
  return it == orders.end() ? INT32_MAX : it->second;
}

std::optional<int64_t> RankSizes::staticSize(StringRef rank) const {
  if (std::optional<Rational> c = size(rank).getConstant())
    if (c->isInteger())
      return int64_t(c->getNumerator());
  return std::nullopt;
}

Poly RankSizes::size(StringRef rank) const { return computeSize(rank, 0); }

Poly RankSizes::computeSize(StringRef rank, unsigned depth) const {
  std::optional<int64_t> declared = cascade.getRankSize(rank);
  if (declared && !ShapedType::isDynamic(*declared))
    return Poly(*declared);
  Poly symbol = Poly::symbol(rank, order(rank));
  if (depth > 8)
    return symbol;
  if (PartitionAttr part = cascade.getPartitionOf(rank)) {
    // The inner rank is always static; the outer one is ceildiv(|p|, tile)
    // if |p| is a number through a relation, otherwise its own variable.
    Poly whole = computeSize(part.getRank().getValue(), depth + 1);
    if (std::optional<Rational> c = whole.getConstant(); c && c->isInteger())
      return Poly(llvm::divideCeil(int64_t(c->getNumerator()), part.getTile()));
    return symbol;
  }
  for (auto rel : cascade.getRelations().getAsRange<RelationAttr>()) {
    StringRef lhs = rel.getLhs().getValue(), rhs = rel.getRhs().getValue();
    // |lhs| = factor * |rhs|: the right-hand rank through the left.
    if (rhs == rank && lhs != rank)
      return computeSize(lhs, depth + 1) * Poly(Rational::get(1, rel.getFactor()));
    if (lhs == rank && rhs != rank) {
      std::optional<int64_t> r = cascade.getRankSize(rhs);
      if (r && !ShapedType::isDynamic(*r))
        return Poly(rel.getFactor() * *r);
    }
  }
  return symbol;
}

Poly RankSizes::elements(Value tensor) const {
  auto type = cast<NamedTensorType>(tensor.getType());
  StringRef iterative;
  if (auto op = tensor.getDefiningOp<EinsumOp>())
    iterative = op.getIterativeRank();
  Poly n(1);
  for (StringAttr rank : type.getRanks()) {
    Poly extent = size(rank.getValue());
    if (rank.getValue() == iterative)
      extent += Poly(1);
    n *= extent;
  }
  return n;
}

Poly RankSizes::bytes(Value tensor) const {
  auto type = cast<NamedTensorType>(tensor.getType());
  return elements(tensor) * Poly(getElementBytes(type.getElementType()));
}

//===----------------------------------------------------------------------===//
// PassAnalysis
//===----------------------------------------------------------------------===//

StringRef mlir::attn::getPassRank(CascadeOp cascade, StringRef rank) {
  if (PartitionAttr part = cascade.getPartitionOf(rank)) {
    if (part.getOuter().getValue() == rank)
      return part.getRank().getValue();
    return {};
  }
  return rank;
}

/// The partition of `rank` (the partitioned rank), if any.
static PartitionAttr getPartitionOfWhole(CascadeOp cascade, StringRef rank) {
  for (auto part : cascade.getPartitions().getAsRange<PartitionAttr>())
    if (part.getRank().getValue() == rank)
      return part;
  return {};
}

/// Calls `fn` on every load in the map expression and the condition of `op`,
/// gathers in index arguments included.
static void forEachLoad(EinsumOp op, function_ref<void(ExprAttr)> fn) {
  auto visit = [&](ExprAttr tree) {
    tree.walk([&](ExprAttr node) {
      if (node.getKind() == ExprKind::Load)
        fn(node);
    });
  };
  visit(op.getExpr());
  if (auto cond = op.getCond())
    visit(*cond);
}

PassAnalysis::PassAnalysis(CascadeOp cascade) : cascade(cascade) {
  llvm::StringSet<> reduced;
  for (EinsumOp op : cascade.getBodyBlock().getOps<EinsumOp>()) {
    for (StringRef r : op.getReduced().getAsValueRange<StringAttr>())
      if (StringRef passRank = getPassRank(cascade, r); !passRank.empty())
        reduced.insert(passRank);
    if (StringRef t = op.getIterativeRank(); !t.empty())
      if (StringRef passRank = getPassRank(cascade, t); !passRank.empty())
        reduced.insert(passRank);
  }
  for (auto rank : cascade.getRanks().getAsRange<RankAttr>())
    if (reduced.contains(rank.getName().getValue()))
      ranks.push_back(rank.getName().str());
  for (const std::string &rank : ranks)
    analyzeRank(rank, infos[rank]);
}

bool PassAnalysis::iterates(EinsumOp op, StringRef rank) const {
  SmallVector<StringRef> iterated = op.getIterationRanks();
  if (llvm::is_contained(iterated, rank))
    return true;
  PartitionAttr part = getPartitionOfWhole(cascade, rank);
  return part && llvm::is_contained(iterated, part.getOuter().getValue());
}

bool PassAnalysis::isReduction(EinsumOp op, StringRef rank) const {
  for (StringRef r : op.getReduced().getAsValueRange<StringAttr>())
    if (getPassRank(cascade, r) == rank)
      return true;
  StringRef t = op.getIterativeRank();
  return !t.empty() && getPassRank(cascade, t) == rank;
}

bool PassAnalysis::isPrefixRead(EinsumOp reader, EinsumOp producer,
                                ArrayRef<ExprAttr> indices,
                                StringRef rank) const {
  StringRef t = producer.getIterativeRank();
  if (t.empty() || getPassRank(cascade, t) != rank ||
      !llvm::is_contained(reader.getIterationRanks(), t))
    return false;
  int64_t pos = producer.getResultType().getDimOf(t);
  if (pos < 0 || pos >= (int64_t)indices.size() ||
      indices[pos].getKind() != ExprKind::Index)
    return false;
  // `t` or `t + 1`, with t a rank of the reader's space.
  AffineExpr index = indices[pos].getIndex();
  if (auto add = dyn_cast<AffineBinaryOpExpr>(index);
      add && add.getKind() == AffineExprKind::Add)
    if (auto c = dyn_cast<AffineConstantExpr>(add.getRHS());
        c && c.getValue() == 1)
      index = add.getLHS();
  auto dim = dyn_cast<AffineDimExpr>(index);
  return dim && dim.getPosition() < reader.getSpace().size() &&
         cast<StringAttr>(reader.getSpace()[dim.getPosition()]).getValue() == t;
}

void PassAnalysis::analyzeRank(StringRef rank, RankInfo &info) {
  for (EinsumOp op : cascade.getBodyBlock().getOps<EinsumOp>()) {
    llvm::SetVector<Operation *> deps;
    forEachLoad(op, [&](ExprAttr load) {
      if (load.getInput() < 0)
        return; // The running state of an iterative Einsum: its own step.
      auto producer =
          op.getInputs()[load.getInput()].getDefiningOp<EinsumOp>();
      if (!producer)
        return;
      // What the producer depends on in full, E depends on in full too.
      auto it = info.deps.find(producer);
      if (it != info.deps.end())
        deps.insert(it->second.begin(), it->second.end());
      if (isReduction(producer, rank) &&
          !isPrefixRead(op, producer, load.getArgs(), rank))
        deps.insert(producer);
    });
    if (iterates(op, rank)) {
      unsigned level = 1;
      for (Operation *dep : deps)
        level = std::max(level, info.levels.lookup(dep) + 1);
      info.levels[op] = level;
      info.passes = std::max(info.passes, level);
    }
    info.deps[op] = std::move(deps);
  }
}

unsigned PassAnalysis::getLevel(EinsumOp op, StringRef rank) const {
  auto it = infos.find(rank);
  return it == infos.end() ? 0 : it->second.levels.lookup(op);
}

unsigned PassAnalysis::getPassCount(StringRef rank) const {
  auto it = infos.find(rank);
  return it == infos.end() ? 0 : it->second.passes;
}

SmallVector<EinsumOp> PassAnalysis::getPassEinsums(StringRef rank,
                                                   unsigned pass) const {
  SmallVector<EinsumOp> out;
  for (EinsumOp op : cascade.getBodyBlock().getOps<EinsumOp>())
    if (getLevel(op, rank) == pass && pass > 0)
      out.push_back(op);
  return out;
}

SmallVector<EinsumOp> PassAnalysis::getFullDependences(EinsumOp op,
                                                       StringRef rank) const {
  SmallVector<EinsumOp> out;
  auto it = infos.find(rank);
  if (it == infos.end())
    return out;
  auto deps = it->second.deps.find(op);
  if (deps == it->second.deps.end())
    return out;
  for (EinsumOp other : cascade.getBodyBlock().getOps<EinsumOp>())
    if (deps->second.contains(other))
      out.push_back(other);
  return out;
}

/// True if `index` varies over the iteration (uses a rank or loads), rather
/// than naming one entry such as `|p1|`.
static bool isTraversing(ExprAttr index) {
  bool varies = false;
  index.walk([&](ExprAttr node) {
    if (node.getKind() == ExprKind::Load)
      varies = true;
    if (node.getKind() == ExprKind::Index)
      node.getIndex().walk([&](AffineExpr e) {
        varies |= isa<AffineDimExpr>(e);
      });
  });
  return varies;
}

bool PassAnalysis::isIndexedBy(StringRef tensorRank, StringRef rank) const {
  if (tensorRank == rank)
    return true;
  PartitionAttr part = getPartitionOfWhole(cascade, rank);
  return part && (tensorRank == part.getOuter().getValue() ||
                  tensorRank == part.getInner().getValue());
}

SmallVector<Value> PassAnalysis::getReReads(StringRef rank,
                                            unsigned pass) const {
  SmallVector<Value> out;
  if (pass < 2)
    return out;
  // Tensors produced or read by an earlier pass.
  llvm::SmallPtrSet<void *, 16> earlier;
  for (EinsumOp op : cascade.getBodyBlock().getOps<EinsumOp>()) {
    unsigned level = getLevel(op, rank);
    if (level == 0 || level >= pass)
      continue;
    earlier.insert(op.getResult().getAsOpaquePointer());
    for (Value input : op.getInputs())
      earlier.insert(input.getAsOpaquePointer());
  }
  // Loads that traverse a dimension of the rank again.
  for (EinsumOp op : getPassEinsums(rank, pass)) {
    forEachLoad(op, [&](ExprAttr load) {
      if (load.getInput() < 0)
        return;
      Value input = op.getInputs()[load.getInput()];
      if (!earlier.contains(input.getAsOpaquePointer()) ||
          llvm::is_contained(out, input))
        return;
      auto type = cast<NamedTensorType>(input.getType());
      for (auto [dimRank, index] : llvm::zip(type.getRanks(), load.getArgs())) {
        if (isIndexedBy(dimRank.getValue(), rank) && isTraversing(index)) {
          out.push_back(input);
          return;
        }
      }
    });
  }
  return out;
}
