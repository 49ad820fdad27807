//===- LowerCPUPrologue.cpp - attn-lower-cpu for quantization prologues ----===//
//
// A cascade marked `attn.prologue` (attn-split-quant: the quantization of Q
// and K that SageAttention runs before its attention kernel) has no key
// loop: it reads every key and query of one (batch, head) a few times (the
// mean of K, the absmax of each block, the quantized values). It is lowered
// here, apart from the attention micro-kernels of LowerCPU.cpp:
//
//   * one task per value of the task ranks: the dynamic ranks every result
//     has (b, h); no row tile;
//   * every Einsum a loop nest over its non-task output ranks, then its
//     reduced ranks, evaluated in float64 as the interpreter does; every
//     sum adds its terms in the interpreter's order. Where the memory
//     order asks for it: a sum whose reads run along an output rank (K's
//     mean over the tokens, read along the channels) has its output loops
//     inside the reduced ones, with f64 accumulators; a maximum or minimum
//     (order-free) reduces the rank of the innermost index last, 4 partial
//     results at a time over a static extent. The condition is an `scf.if`
//     (an empty element gets the else value or the reducer's identity); a
//     ragged partition's bound shortens the inner loop (min(tile, |m| -
//     tile * m1)) when the outer loop encloses it, else it is a condition;
//   * the result rounded to the declared element type (integers: to nearest
//     even, saturated, NaN -> 0) and stored into the result tensor if it is
//     yielded, else into a per-call buffer over its non-task ranks.
//
// The quantized values are then the interpreter's own (test/e2e checks the
// int8 values for equality): the attention kernel reading them can be
// checked against the interpreter tightly. The cost is O(|p| d + |m| d)
// per (batch, head) against O(|m| |p| d) for the attention kernel; the
// code is scalar (about 12 ms on one thread for 8 heads of 4096 x 128
// on the development machine, docs/quantize.md).
//
// A rank that some Einsum reduces or reads across (a per-tensor scale
// reduces b and h) is not a task rank (planPrologueTasks): such a prologue
// runs in fewer tasks, one for a per-tensor scale. Refused with a located
// error: gathers, iterative or top-k Einsums, partition ranks in argument
// or result types, FP8 element types.
//
//===----------------------------------------------------------------------===//

#include "passes/CpuPrologue.h"

#include "attn/Transforms/GlobalCascade.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/SmallBitVector.h"

#include <algorithm>
#include <cmath>

namespace mlir::attn {

namespace {

class PrologueLowering {
public:
  explicit PrologueLowering(CascadeOp cascade)
      : cascade(cascade), gc(cascade), b(cascade->getContext()),
        loc(cascade.getLoc()) {}

  FailureOr<func::FuncOp> run();

private:
  Value cIndex(int64_t v) { return arith::ConstantIndexOp::create(b, loc, v); }
  Value cF64(double v) {
    return arith::ConstantOp::create(b, loc, b.getF64FloatAttr(v));
  }
  bool fail(Location l, const Twine &msg) {
    if (!hadError)
      emitError(l) << "attn-lower-cpu: " << msg;
    hadError = true;
    return false;
  }
  bool isTask(unsigned g) const {
    return llvm::is_contained(plan.taskRanks, int(g));
  }
  Value emitAffine(AffineExpr e);
  Value toF64(Value v);
  Value asBool(Value v);
  Value asF64(Value v);
  Value roundTo(Value v, Type t);
  Value emitExpr(ExprAttr e);
  Value emitLoad(ExprAttr load);
  void emitEinsum(unsigned id);
  /// The loops of an Einsum: its non-task output ranks, its reduced ranks
  /// (for a maximum or minimum, the one of the innermost index last), and
  /// whether the output loops go inside the reduced ones (a sum over the
  /// outer index of what it reads, with an f64 accumulator buffer).
  struct Nest {
    SmallVector<unsigned> loops, reduced;
    bool outputInner = false;
  };
  Nest nestOf(unsigned id);
  /// The trip count of a loop over rank g at this point.
  Value upperBound(unsigned g);
  /// A loop nest over `ranks` (outermost first) around `body`.
  void forNest(ArrayRef<unsigned> ranks, function_ref<void()> body);
  /// The iteration ranks of an Einsum: output ranks, then the others in
  /// global order (the space order of the interpreter).
  SmallVector<unsigned> iterationRanks(const GEinsum &e);

  CascadeOp cascade;
  GlobalCascade gc;
  OpBuilder b;
  Location loc;
  CpuTaskPlan plan;
  bool hadError = false;
  unsigned currentId = 0;

  SmallVector<Value> argMems, rankSize;
  llvm::DenseMap<unsigned, Value> rankValue;
  /// Where each Einsum's values live, and the ranks of its dimensions.
  llvm::DenseMap<unsigned, Value> mems;
  llvm::DenseMap<unsigned, SmallVector<unsigned>> memDims;
  /// f64 accumulators of the sums with the output loops inside (nestOf).
  llvm::DenseMap<unsigned, Value> accMems;
};

SmallVector<unsigned> PrologueLowering::iterationRanks(const GEinsum &e) {
  llvm::SetVector<unsigned> ranks;
  for (AffineExpr o : e.out)
    ranks.insert(cast<AffineDimExpr>(o).getPosition());
  llvm::SmallBitVector used(gc.numRanks());
  for (ExprAttr x : {e.expr, e.cond})
    if (x)
      walkExpr(x, [&](ExprAttr n) {
        if (n.getKind() == ExprKind::Index)
          n.getIndex().walk([&](AffineExpr s) {
            if (auto d = dyn_cast<AffineDimExpr>(s))
              used.set(d.getPosition());
          });
      });
  for (unsigned g = 0; g < gc.numRanks(); ++g)
    if (used.test(g))
      ranks.insert(g);
  return SmallVector<unsigned>(ranks.begin(), ranks.end());
}

Value PrologueLowering::emitAffine(AffineExpr e) {
  switch (e.getKind()) {
  case AffineExprKind::DimId: {
    Value v = rankValue.lookup(cast<AffineDimExpr>(e).getPosition());
    if (!v) {
      fail(gc.einsum(currentId).loc, "internal: a rank without a value");
      return cIndex(0);
    }
    return v;
  }
  case AffineExprKind::SymbolId:
    return rankSize[cast<AffineSymbolExpr>(e).getPosition()];
  case AffineExprKind::Constant:
    return cIndex(cast<AffineConstantExpr>(e).getValue());
  default:
    break;
  }
  auto bin = cast<AffineBinaryOpExpr>(e);
  Value l = emitAffine(bin.getLHS()), r = emitAffine(bin.getRHS());
  switch (e.getKind()) {
  case AffineExprKind::Add:
    return arith::AddIOp::create(b, loc, l, r);
  case AffineExprKind::Mul:
    return arith::MulIOp::create(b, loc, l, r);
  case AffineExprKind::FloorDiv:
    return arith::FloorDivSIOp::create(b, loc, l, r);
  case AffineExprKind::CeilDiv:
    return arith::CeilDivSIOp::create(b, loc, l, r);
  case AffineExprKind::Mod: {
    Value rem = arith::RemSIOp::create(b, loc, l, r);
    Value neg = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, rem,
                                      cIndex(0));
    return arith::SelectOp::create(b, loc, neg,
                                   arith::AddIOp::create(b, loc, rem, r), rem);
  }
  default:
    return cIndex(0);
  }
}

Value PrologueLowering::toF64(Value v) {
  Type t = v.getType();
  if (t.isF64())
    return v;
  if (isa<FloatType>(t))
    return arith::ExtFOp::create(b, loc, b.getF64Type(), v);
  if (t.isInteger(1))
    return arith::UIToFPOp::create(b, loc, b.getF64Type(), v);
  return arith::SIToFPOp::create(b, loc, b.getF64Type(), v);
}

Value PrologueLowering::asBool(Value v) {
  if (v.getType().isInteger(1))
    return v;
  return arith::CmpFOp::create(b, loc, arith::CmpFPredicate::UNE, v, cF64(0));
}

Value PrologueLowering::asF64(Value v) { return toF64(v); }

/// roundToType of the interpreter, on an f64 value (the result stays f64
/// for casts inside expressions; stores convert it once more, exactly).
Value PrologueLowering::roundTo(Value v, Type t) {
  if (t.isF64())
    return v;
  if (isa<FloatType>(t))
    return arith::ExtFOp::create(b, loc, b.getF64Type(),
                                 arith::TruncFOp::create(b, loc, t, v).getResult());
  unsigned w = t.getIntOrFloatBitWidth();
  if (w == 1)
    return toF64(asBool(v));
  double lo = -std::ldexp(1.0, w - 1), hi = std::ldexp(1.0, w - 1) - 1;
  Value r = math::RoundEvenOp::create(b, loc, v);
  r = arith::MaximumFOp::create(b, loc, r, cF64(lo));
  r = arith::MinimumFOp::create(b, loc, r, cF64(hi));
  Value nan = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::UNO, v, v);
  return arith::SelectOp::create(b, loc, nan, cF64(0), r);
}

Value PrologueLowering::emitLoad(ExprAttr load) {
  const GEinsum &self = gc.einsum(currentId);
  int64_t id = load.getInput() < 0 ? currentId : load.getInput();
  SmallVector<Value> idx;
  for (ExprAttr ix : load.getArgs()) {
    if (ix.getKind() != ExprKind::Index) {
      fail(self.loc, "'" + self.name +
                         "' gathers; a quantization prologue does not");
      return cF64(0);
    }
  }
  if (!gc.isEinsum(id)) {
    for (ExprAttr ix : load.getArgs())
      idx.push_back(emitAffine(ix.getIndex()));
    return toF64(memref::LoadOp::create(b, loc, argMems[id], idx));
  }
  SmallVector<unsigned> ranks = gc.valueRanks(id);
  const SmallVector<unsigned> &dims = memDims[id];
  for (auto [ix, r] : llvm::zip(load.getArgs(), ranks)) {
    if (!llvm::is_contained(dims, r)) {
      // A task rank dropped from the buffer: the reader's own value.
      if (ix.getIndex() != gc.dim(r)) {
        // planPrologueTasks keeps such ranks out of the task ranks.
        fail(self.loc, "internal: '" + self.name + "' reads '" +
                           gc.valueName(id) + "' of another " +
                           gc.rankName(r) + ", a task rank");
        return cF64(0);
      }
      continue;
    }
    idx.push_back(emitAffine(ix.getIndex()));
  }
  return toF64(memref::LoadOp::create(b, loc, mems[id], idx));
}

Value PrologueLowering::emitExpr(ExprAttr e) {
  auto arg = [&](unsigned i) { return asF64(emitExpr(e.getArgs()[i])); };
  auto cmp = [&](arith::CmpFPredicate p) -> Value {
    Value l = arg(0), r = arg(1);
    return arith::CmpFOp::create(b, loc, p, l, r);
  };
  auto unary = [&](auto op) -> Value {
    using Op = decltype(op);
    return Op::create(b, loc, arg(0));
  };
  using P = arith::CmpFPredicate;
  switch (e.getKind()) {
  case ExprKind::Const:
    return cF64(e.getConstValue());
  case ExprKind::Index: {
    Value i = emitAffine(e.getIndex());
    Value i64 = arith::IndexCastOp::create(b, loc, b.getI64Type(), i);
    return arith::SIToFPOp::create(b, loc, b.getF64Type(), i64);
  }
  case ExprKind::Load:
    return emitLoad(e);
  case ExprKind::Add:
    return arith::AddFOp::create(b, loc, arg(0), arg(1));
  case ExprKind::Sub:
    return arith::SubFOp::create(b, loc, arg(0), arg(1));
  case ExprKind::Mul:
    return arith::MulFOp::create(b, loc, arg(0), arg(1));
  case ExprKind::Div:
    return arith::DivFOp::create(b, loc, arg(0), arg(1));
  case ExprKind::Neg:
    return arith::NegFOp::create(b, loc, arg(0));
  case ExprKind::Max:
    return arith::MaximumFOp::create(b, loc, arg(0), arg(1));
  case ExprKind::Min:
    return arith::MinimumFOp::create(b, loc, arg(0), arg(1));
  case ExprKind::FloorDiv:
    return math::FloorOp::create(
        b, loc, arith::DivFOp::create(b, loc, arg(0), arg(1)));
  case ExprKind::Mod: {
    Value x = arg(0), y = arg(1);
    Value q = math::FloorOp::create(b, loc, arith::DivFOp::create(b, loc, x, y));
    return arith::SubFOp::create(b, loc, x, arith::MulFOp::create(b, loc, y, q));
  }
  case ExprKind::Exp:
    return unary(math::ExpOp());
  case ExprKind::Exp2:
    return unary(math::Exp2Op());
  case ExprKind::Log:
    return unary(math::LogOp());
  case ExprKind::Log2:
    return unary(math::Log2Op());
  case ExprKind::Tanh:
    return unary(math::TanhOp());
  case ExprKind::Sqrt:
    return unary(math::SqrtOp());
  case ExprKind::Abs:
    return unary(math::AbsFOp());
  case ExprKind::Round:
    return unary(math::RoundEvenOp());
  case ExprKind::Floor:
    return unary(math::FloorOp());
  case ExprKind::Sigmoid: {
    Value x = arg(0);
    Value ex = math::ExpOp::create(b, loc, arith::NegFOp::create(b, loc, x));
    return arith::DivFOp::create(b, loc, cF64(1),
                                 arith::AddFOp::create(b, loc, cF64(1), ex));
  }
  case ExprKind::Pow:
    return math::PowFOp::create(b, loc, arg(0), arg(1));
  case ExprKind::Cast:
    return roundTo(arg(0), e.getCastType());
  case ExprKind::Select: {
    Value c = asBool(emitExpr(e.getArgs()[0]));
    return arith::SelectOp::create(b, loc, c, arg(1), arg(2));
  }
  case ExprKind::Lt:
    return cmp(P::OLT);
  case ExprKind::Le:
    return cmp(P::OLE);
  case ExprKind::Gt:
    return cmp(P::OGT);
  case ExprKind::Ge:
    return cmp(P::OGE);
  case ExprKind::Eq:
    return cmp(P::OEQ);
  case ExprKind::Ne:
    return cmp(P::UNE);
  case ExprKind::And:
    return arith::AndIOp::create(b, loc, asBool(emitExpr(e.getArgs()[0])),
                                 asBool(emitExpr(e.getArgs()[1])));
  case ExprKind::Or:
    return arith::OrIOp::create(b, loc, asBool(emitExpr(e.getArgs()[0])),
                                asBool(emitExpr(e.getArgs()[1])));
  case ExprKind::Not:
    return arith::XOrIOp::create(
        b, loc, asBool(emitExpr(e.getArgs()[0])),
        arith::ConstantOp::create(b, loc, b.getBoolAttr(true)));
  }
  fail(gc.einsum(currentId).loc, "unsupported expression");
  return cF64(0);
}

PrologueLowering::Nest PrologueLowering::nestOf(unsigned id) {
  const GEinsum &e = gc.einsum(id);
  Nest n;
  SmallVector<unsigned> outRanks = gc.valueRanks(id);
  for (unsigned g : iterationRanks(e)) {
    if (llvm::is_contained(outRanks, g)) {
      if (!isTask(g))
        n.loops.push_back(g);
    } else {
      n.reduced.push_back(g);
    }
  }
  if (e.reducer == Reducer::None)
    return n;
  // The ranks of the innermost index of the tensors read (the contiguous
  // dimension of a compact layout).
  llvm::SmallBitVector inner(gc.numRanks());
  for (ExprAttr x : {e.expr, e.cond})
    if (x)
      walkExpr(x, [&](ExprAttr l) {
        if (l.getKind() != ExprKind::Load || l.getArgs().empty() ||
            l.getArgs().back().getKind() != ExprKind::Index)
          return;
        l.getArgs().back().getIndex().walk([&](AffineExpr a) {
          if (auto d = dyn_cast<AffineDimExpr>(a))
            inner.set(d.getPosition());
        });
      });
  // A maximum or minimum does not depend on the order: the reduced rank of
  // the innermost index goes innermost (a block's rows, then its channels).
  if (e.reducer != Reducer::Sum)
    std::stable_partition(n.reduced.begin(), n.reduced.end(),
                          [&](unsigned g) { return !inner.test(g); });
  // A sum over a rank of the outer index (K's mean over the tokens, read
  // along the channels): the output loops go inside the reduced ones, with
  // an f64 accumulator per output element. Each element still adds its
  // terms in the interpreter's order.
  double identity = e.reducer == Reducer::Max   ? -INFINITY
                    : e.reducer == Reducer::Min ? INFINITY
                                                : 0.0;
  bool track = e.fill && *e.fill != identity;
  n.outputInner = !track && !n.loops.empty() && !n.reduced.empty() &&
                  llvm::any_of(n.loops, [&](unsigned g) { return inner.test(g); }) &&
                  llvm::none_of(n.reduced, [&](unsigned g) { return inner.test(g); });
  return n;
}

Value PrologueLowering::upperBound(unsigned g) {
  // The inner rank of a ragged partition inside its outer rank's loop:
  // min(tile, |r| - outer * tile) points.
  for (auto part : cascade.getPartitions().getAsRange<PartitionAttr>()) {
    unsigned o = *gc.rankId(part.getOuter().getValue());
    unsigned i = *gc.rankId(part.getInner().getValue());
    if (i != g || !part.getRagged() || !rankValue.count(o))
      continue;
    unsigned r = *gc.rankId(part.getRank().getValue());
    Value start =
        arith::MulIOp::create(b, loc, rankValue.lookup(o), cIndex(part.getTile()));
    return arith::MinSIOp::create(
        b, loc, cIndex(part.getTile()),
        arith::SubIOp::create(b, loc, rankSize[r], start));
  }
  return rankSize[g];
}

void PrologueLowering::forNest(ArrayRef<unsigned> ranks,
                               function_ref<void()> body) {
  if (ranks.empty())
    return body();
  OpBuilder::InsertionGuard guard(b);
  unsigned g = ranks.front();
  auto l = scf::ForOp::create(b, loc, cIndex(0), upperBound(g), cIndex(1));
  b.setInsertionPointToStart(l.getBody());
  rankValue[g] = l.getInductionVar();
  forNest(ranks.drop_front(), body);
  rankValue.erase(g);
}

void PrologueLowering::emitEinsum(unsigned id) {
  currentId = id;
  const GEinsum &e = gc.einsum(id);
  Nest n = nestOf(id);
  for (unsigned g : n.reduced)
    if (isTask(g)) {
      // planPrologueTasks keeps reduced ranks out of the task ranks.
      fail(e.loc, "internal: '" + e.name + "' reduces the task rank " +
                      gc.rankName(g));
      return;
    }
  // The loop order; ragged partitions whose outer rank's loop encloses the
  // inner one's bound the inner loop (upperBound), the others (and those
  // with the rank outside) get the bound as a condition.
  SmallVector<unsigned> order;
  if (n.outputInner) {
    llvm::append_range(order, n.reduced);
    llvm::append_range(order, n.loops);
  } else {
    llvm::append_range(order, n.loops);
    llvm::append_range(order, n.reduced);
  }
  auto pos = [&](unsigned g) { return llvm::find(order, g) - order.begin(); };
  SmallVector<ExprAttr> bounds;
  for (auto part : cascade.getPartitions().getAsRange<PartitionAttr>()) {
    unsigned r = *gc.rankId(part.getRank().getValue());
    unsigned o = *gc.rankId(part.getOuter().getValue());
    unsigned i = *gc.rankId(part.getInner().getValue());
    bool iterO = llvm::is_contained(order, o) || isTask(o);
    if (!part.getRagged() || !iterO || !llvm::is_contained(order, i))
      continue;
    if (llvm::is_contained(order, o) && pos(o) < pos(i))
      continue; // bounded by upperBound
    bounds.push_back(ExprAttr::getOp(
        b.getContext(), ExprKind::Lt,
        {ExprAttr::getIndex(gc.dim(o) * part.getTile() + gc.dim(i)),
         ExprAttr::getIndex(gc.sym(r))}));
  }
  ExprAttr cond = e.cond;
  for (ExprAttr bd : bounds)
    cond = cond ? ExprAttr::getOp(b.getContext(), ExprKind::And, {bd, cond})
                : bd;
  double identity = e.reducer == Reducer::Max   ? -INFINITY
                    : e.reducer == Reducer::Min ? INFINITY
                                                : 0.0;
  double fill = e.fill ? *e.fill : identity;
  bool track = e.reducer != Reducer::None && fill != identity;

  auto store = [&](Value v) {
    SmallVector<Value> idx;
    for (unsigned r : memDims[id])
      idx.push_back(rankValue.lookup(r));
    Type t = e.elemType;
    Value s;
    if (t.isF64())
      s = v;
    else if (isa<FloatType>(t))
      s = arith::TruncFOp::create(b, loc, t, v);
    else
      s = arith::FPToSIOp::create(b, loc, t, roundTo(v, t));
    memref::StoreOp::create(b, loc, s, mems[id], idx);
  };
  auto combine = [&](Value a, Value v) -> Value {
    switch (e.reducer) {
    case Reducer::Sum:
      return arith::AddFOp::create(b, loc, a, v);
    case Reducer::Max:
      return arith::MaximumFOp::create(b, loc, a, v);
    default:
      return arith::MinimumFOp::create(b, loc, a, v);
    }
  };

  if (e.reducer == Reducer::None) {
    forNest(n.loops, [&] {
      if (!cond)
        return store(asF64(emitExpr(e.expr)));
      auto ifOp = scf::IfOp::create(b, loc, TypeRange{b.getF64Type()},
                                    asBool(emitExpr(cond)), true);
      {
        OpBuilder::InsertionGuard g2(b);
        b.setInsertionPointToStart(&ifOp.getThenRegion().front());
        scf::YieldOp::create(b, loc, ValueRange{asF64(emitExpr(e.expr))});
        b.setInsertionPointToStart(&ifOp.getElseRegion().front());
        scf::YieldOp::create(b, loc, ValueRange{cF64(fill)});
      }
      store(ifOp.getResult(0));
    });
    return;
  }

  if (n.outputInner) {
    // acc[loops] = identity; for reduced: for loops: acc = acc (+) value;
    // then the results from acc.
    Value acc = accMems.lookup(id);
    auto accIdx = [&] {
      SmallVector<Value> idx;
      for (unsigned g : n.loops)
        idx.push_back(rankValue.lookup(g));
      return idx;
    };
    forNest(n.loops, [&] {
      memref::StoreOp::create(b, loc, cF64(identity), acc, accIdx());
    });
    SmallVector<unsigned> all(order.begin(), order.end());
    forNest(all, [&] {
      auto update = [&] {
        Value a = memref::LoadOp::create(b, loc, acc, accIdx());
        memref::StoreOp::create(b, loc, combine(a, asF64(emitExpr(e.expr))),
                                acc, accIdx());
      };
      if (!cond)
        return update();
      auto ifOp = scf::IfOp::create(b, loc, TypeRange{},
                                    asBool(emitExpr(cond)), false);
      OpBuilder::InsertionGuard g2(b);
      b.setInsertionPointToStart(&ifOp.getThenRegion().front());
      update();
    });
    forNest(n.loops, [&] {
      store(memref::LoadOp::create(b, loc, acc, accIdx()));
    });
    return;
  }

  // Output loops, then the reduction in f64 iter_args (and whether any
  // point was seen).
  forNest(n.loops, [&] {
    SmallVector<Value> init{cF64(identity)};
    if (track)
      init.push_back(arith::ConstantOp::create(b, loc, b.getBoolAttr(false)));
    std::function<SmallVector<Value>(unsigned, ValueRange)> nest =
        [&](unsigned level, ValueRange acc) -> SmallVector<Value> {
      if (level == n.reduced.size()) {
        auto step = [&](ValueRange a) -> SmallVector<Value> {
          SmallVector<Value> out{combine(a[0], asF64(emitExpr(e.expr)))};
          if (track)
            out.push_back(
                arith::ConstantOp::create(b, loc, b.getBoolAttr(true)));
          return out;
        };
        if (!cond)
          return step(acc);
        SmallVector<Type> types;
        for (Value a : acc)
          types.push_back(a.getType());
        auto ifOp =
            scf::IfOp::create(b, loc, types, asBool(emitExpr(cond)), true);
        OpBuilder::InsertionGuard g2(b);
        b.setInsertionPointToStart(&ifOp.getThenRegion().front());
        scf::YieldOp::create(b, loc, step(acc));
        b.setInsertionPointToStart(&ifOp.getElseRegion().front());
        scf::YieldOp::create(b, loc, acc);
        return SmallVector<Value>(ifOp.getResults());
      }
      unsigned g = n.reduced[level];
      // The innermost loop of a maximum or minimum over a static extent
      // that 4 divides: 4 accumulators, combined at the end (the order
      // does not matter; the chain of dependent maxima would bound it).
      std::optional<int64_t> extent =
          g < cascade.getRanks().size() ? gc.staticSize(g) : std::nullopt;
      if (level + 1 == n.reduced.size() && e.reducer != Reducer::Sum &&
          !cond && !track && extent && *extent % 4 == 0) {
        SmallVector<Value> init4(4, acc[0]);
        auto l = scf::ForOp::create(b, loc, cIndex(0), cIndex(*extent),
                                    cIndex(4), init4);
        {
          OpBuilder::InsertionGuard g2(b);
          b.setInsertionPointToStart(l.getBody());
          SmallVector<Value> next;
          for (unsigned j = 0; j < 4; ++j) {
            rankValue[g] = arith::AddIOp::create(b, loc, l.getInductionVar(),
                                                 cIndex(j));
            next.push_back(
                combine(l.getRegionIterArgs()[j], asF64(emitExpr(e.expr))));
          }
          scf::YieldOp::create(b, loc, next);
          rankValue.erase(g);
        }
        Value r = combine(combine(l.getResult(0), l.getResult(1)),
                          combine(l.getResult(2), l.getResult(3)));
        return SmallVector<Value>{r};
      }
      auto l = scf::ForOp::create(b, loc, cIndex(0), upperBound(g), cIndex(1),
                                  acc);
      {
        OpBuilder::InsertionGuard g2(b);
        b.setInsertionPointToStart(l.getBody());
        rankValue[g] = l.getInductionVar();
        SmallVector<Value> next = nest(level + 1, l.getRegionIterArgs());
        scf::YieldOp::create(b, loc, next);
        rankValue.erase(g);
      }
      return SmallVector<Value>(l.getResults());
    };
    SmallVector<Value> res = nest(0, init);
    Value v = res[0];
    if (track)
      v = arith::SelectOp::create(b, loc, res[1], v, cF64(fill));
    store(v);
  });
}

FailureOr<func::FuncOp> PrologueLowering::run() {
  MLIRContext *ctx = cascade->getContext();
  FunctionType ft = cascade.getFunctionType();
  std::string why;
  auto p = planPrologueTasks(cascade, why);
  if (failed(p))
    return emitError(loc) << "attn-lower-cpu: " << why;
  plan = *p;
  for (Type t : llvm::concat<const Type>(ft.getInputs(), ft.getResults())) {
    auto nt = cast<NamedTensorType>(t);
    for (StringAttr r : nt.getRanks())
      if (llvm::none_of(cascade.getRanks().getAsRange<RankAttr>(),
                        [&](RankAttr d) { return d.getName() == r; }))
        return emitError(loc) << "attn-lower-cpu: the quantization prologue '"
                              << cascade.getSymName()
                              << "' has a tensor over the partition rank "
                              << r.getValue() << "; not supported";
    if (isa<Float8E4M3FNType, Float8E5M2Type>(nt.getElementType()))
      return emitError(loc) << "attn-lower-cpu: FP8 quantization is not "
                               "lowered on the CPU";
  }
  for (unsigned id : gc.body()) {
    const GEinsum &e = gc.einsum(id);
    if (e.topk)
      return emitError(e.loc) << "attn-lower-cpu: '" << e.name
                              << "' has a top-k action; not supported in a "
                                 "quantization prologue";
    for (AffineExpr o : e.out)
      if (!isa<AffineDimExpr>(o))
        return emitError(e.loc) << "attn-lower-cpu: '" << e.name
                                << "' is iterative; not supported in a "
                                   "quantization prologue";
    if (isa<Float8E4M3FNType, Float8E5M2Type>(e.elemType))
      return emitError(e.loc) << "attn-lower-cpu: '" << e.name
                              << "': FP8 quantization is not lowered on the "
                                 "CPU";
  }

  // The signature of every task function (LowerCPU.cpp): %sizes, one
  // memref per argument and result, the task range.
  b.setInsertionPoint(cascade);
  auto dynMemref = [&](unsigned rank, Type elem) {
    SmallVector<int64_t> shape(rank, ShapedType::kDynamic);
    auto layout = StridedLayoutAttr::get(
        ctx, ShapedType::kDynamic, SmallVector<int64_t>(rank, ShapedType::kDynamic));
    return MemRefType::get(shape, elem, layout);
  };
  SmallVector<Type> argTypes{
      MemRefType::get({ShapedType::kDynamic}, b.getI64Type())};
  for (Type t : llvm::concat<const Type>(ft.getInputs(), ft.getResults())) {
    auto nt = cast<NamedTensorType>(t);
    argTypes.push_back(dynMemref(nt.getRanks().size(), nt.getElementType()));
  }
  argTypes.push_back(b.getIndexType());
  argTypes.push_back(b.getIndexType());
  auto func = func::FuncOp::create(b, loc, cpuTaskFunctionName(cascade),
                                   b.getFunctionType(argTypes, {}));
  func->setAttr("llvm.emit_c_interface", UnitAttr::get(ctx));
  Block *entry = func.addEntryBlock();
  b.setInsertionPointToStart(entry);
  Value sizes = entry->getArgument(0);
  unsigned numTensors = ft.getNumInputs() + ft.getNumResults();
  for (unsigned i = 0; i < numTensors; ++i)
    argMems.push_back(entry->getArgument(1 + i));
  Value begin = entry->getArgument(1 + numTensors);
  Value end = entry->getArgument(2 + numTensors);

  unsigned declared = cascade.getRanks().size();
  rankSize.resize(gc.numRanks());
  for (unsigned g = 0; g < declared; ++g) {
    if (auto s = gc.staticSize(g)) {
      rankSize[g] = cIndex(*s);
      continue;
    }
    Value v = memref::LoadOp::create(b, loc, sizes, ValueRange{cIndex(g)});
    rankSize[g] = arith::IndexCastOp::create(b, loc, b.getIndexType(), v);
  }
  for (auto part : cascade.getPartitions().getAsRange<PartitionAttr>()) {
    unsigned r = *gc.rankId(part.getRank().getValue());
    rankSize[*gc.rankId(part.getInner().getValue())] = cIndex(part.getTile());
    rankSize[*gc.rankId(part.getOuter().getValue())] = arith::CeilDivSIOp::create(
        b, loc, rankSize[r], cIndex(part.getTile()));
  }

  // Where values live: results in their tensors, the others in per-call
  // buffers over their non-task ranks.
  SmallVector<Value> allocs;
  for (unsigned id : gc.body()) {
    SmallVector<unsigned> ranks = gc.valueRanks(id);
    auto y = llvm::find(gc.yields(), id);
    if (y != gc.yields().end()) {
      mems[id] = argMems[ft.getNumInputs() + (y - gc.yields().begin())];
      memDims[id] = ranks;
      continue;
    }
    SmallVector<Value> dyn;
    SmallVector<int64_t> shape;
    for (unsigned r : ranks) {
      if (isTask(r))
        continue;
      memDims[id].push_back(r);
      shape.push_back(ShapedType::kDynamic);
      dyn.push_back(rankSize[r]);
    }
    mems[id] = memref::AllocOp::create(
        b, loc, MemRefType::get(shape, gc.einsum(id).elemType), dyn,
        b.getI64IntegerAttr(64));
    allocs.push_back(mems[id]);
  }

  for (unsigned id : gc.body()) {
    Nest n = nestOf(id);
    if (!n.outputInner)
      continue;
    SmallVector<Value> dyn;
    for (unsigned g : n.loops)
      dyn.push_back(rankSize[g]);
    accMems[id] = memref::AllocOp::create(
        b, loc,
        MemRefType::get(SmallVector<int64_t>(n.loops.size(), ShapedType::kDynamic),
                        b.getF64Type()),
        dyn, b.getI64IntegerAttr(64));
    allocs.push_back(accMems[id]);
  }

  auto taskLoop = scf::ForOp::create(b, loc, begin, end, cIndex(1));
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(taskLoop.getBody());
    Value t = taskLoop.getInductionVar();
    for (int k = int(plan.taskRanks.size()) - 1; k >= 0; --k) {
      unsigned g = plan.taskRanks[k];
      rankValue[g] = arith::RemUIOp::create(b, loc, t, rankSize[g]);
      t = arith::DivUIOp::create(b, loc, t, rankSize[g]);
    }
    for (unsigned id : gc.body())
      emitEinsum(id);
  }
  for (Value a : allocs)
    memref::DeallocOp::create(b, loc, a);
  func::ReturnOp::create(b, loc);
  if (hadError) {
    func.erase();
    return failure();
  }
  return func;
}

} // namespace

FailureOr<CpuTaskPlan> planPrologueTasks(CascadeOp cascade, std::string &why) {
  GlobalCascade gc(cascade);
  CpuTaskPlan plan;
  if (gc.yields().empty()) {
    why = "the cascade yields nothing";
    return failure();
  }
  // A rank is a task rank if every result has it and no Einsum combines
  // values of several of its indices: none reduces it (a scale per tensor
  // reduces b and h) and none reads a computed value at another index of
  // it. Otherwise the values of one task would depend on another's, and
  // the rank stays a loop inside the task (one task for a per-tensor
  // scale: correct, on one thread).
  llvm::SmallBitVector crossing(gc.numRanks());
  for (unsigned id : gc.body()) {
    const GEinsum &e = gc.einsum(id);
    SmallVector<unsigned> own = gc.valueRanks(id);
    for (ExprAttr x : {e.expr, e.cond}) {
      if (!x)
        continue;
      walkExpr(x, [&](ExprAttr n) {
        if (n.getKind() == ExprKind::Index)
          n.getIndex().walk([&](AffineExpr s) {
            if (auto d = dyn_cast<AffineDimExpr>(s))
              if (!llvm::is_contained(own, d.getPosition()))
                crossing.set(d.getPosition()); // reduced
          });
        if (n.getKind() != ExprKind::Load || n.getInput() < 0 ||
            !gc.isEinsum(n.getInput()))
          return;
        for (auto [ix, r] :
             llvm::zip(n.getArgs(), gc.valueRanks(n.getInput())))
          if (ix.getKind() != ExprKind::Index || ix.getIndex() != gc.dim(r))
            crossing.set(r);
      });
    }
  }
  for (unsigned g = 0; g < cascade.getRanks().size(); ++g) {
    if (gc.staticSize(g) || crossing.test(g))
      continue;
    if (llvm::all_of(gc.yields(), [&](unsigned y) {
          return llvm::is_contained(gc.valueRanks(y), g);
        }))
      plan.taskRanks.push_back(g);
  }
  return plan;
}

FailureOr<func::FuncOp> lowerPrologueToCpu(CascadeOp cascade) {
  return PrologueLowering(cascade).run();
}

} // namespace mlir::attn
