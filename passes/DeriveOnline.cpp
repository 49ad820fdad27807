//===- DeriveOnline.cpp - attn-derive-online -------------------------------===//
//
// Rewrites a cascade whose reductions over the key rank p are read in full
// by later computations over p (the 3-pass shape of softmax) into the
// online form: p is partitioned into tiles (p -> p1, p0), every reduction
// over p becomes a local reduction over the tile (`l_x`) and a running value
// along the iterative rank p1 (`r_x`), a running max gets a reference value
// that is 0 while it is -inf (`ref_x`, so that exp(-inf - -inf) never
// occurs), and every running sum whose terms contain exp(-max) is rescaled
// by a correction `c_x = exp(r_x[p1] - ref_x[p1])` when the max grows. The
// final values (`x = r_x[|p1|]`) replace the reductions for every reader
// outside the loop. The planning and every check live in
// lib/Transforms/Online.cpp; docs/derivation.md explains the rule.
//
//===----------------------------------------------------------------------===//

#include "attn/Analysis.h"
#include "attn/Passes.h"
#include "attn/Transforms/Online.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "llvm/ADT/StringExtras.h"

#include <map>

namespace mlir::attn {
#define GEN_PASS_DEF_ATTNDERIVEONLINEPASS
#include "passes/Passes.h.inc"

namespace {

/// Builds the online body from a plan.
class OnlineEmitter {
public:
  OnlineEmitter(GlobalCascade &gc, const OnlinePlan &plan, unsigned p1,
                unsigned p0, int64_t tile)
      : gc(gc), plan(plan), ctx(gc.getContext()), p(plan.rank), p1(p1),
        p0(p0), tile(tile),
        rewriter(gc, plan, p1, p0, tile,
                 [this](unsigned y, SmallVector<ExprAttr> idx, bool inCond) {
                   return loadRunning(y, std::move(idx), inCond);
                 }) {}

  LogicalResult run();
  std::string error;
  /// Names for the remark.
  SmallVector<std::string> runningMax, runningSums, corrections;

private:
  /// Inside the loop, an online value reads as its running value at p1 + 1
  /// (in conditions) or as its reference (in expressions).
  ExprAttr loadRunning(unsigned y, SmallVector<ExprAttr> idx, bool inCond) {
    if (inCond) {
      idx.push_back(ExprAttr::getIndex(gc.dim(p1) + 1));
      return ExprAttr::getLoad(ctx, runId.lookup(y), idx);
    }
    if (!refId.count(y))
      rewriter.error = "internal: '" + gc.valueName(y) + "' has no reference value";
    idx.push_back(ExprAttr::getIndex(gc.dim(p1)));
    return ExprAttr::getLoad(ctx, refId.lookup(y), idx);
  }
  ExprAttr tileExpr(ExprAttr e, bool inCond) { return rewriter.rewrite(e, inCond); }
  SmallVector<ExprAttr> indexOf(ArrayRef<unsigned> ranks) {
    SmallVector<ExprAttr> out;
    for (unsigned r : ranks)
      out.push_back(ExprAttr::getIndex(gc.dim(r)));
    return out;
  }
  unsigned emit(GEinsum g) {
    unsigned id = gc.add(std::move(g));
    order.push_back(id);
    return id;
  }
  void emitOnline(unsigned r);
  void emitCorrections(unsigned producer);

  GlobalCascade &gc;
  const OnlinePlan &plan;
  MLIRContext *ctx;
  unsigned p, p1, p0;
  int64_t tile;
  TiledRewriter rewriter;
  std::vector<unsigned> order;
  DenseMap<unsigned, unsigned> runId, refId, finalId;
  std::map<std::tuple<unsigned, double, bool>, unsigned> corrId;
};

void OnlineEmitter::emitCorrections(unsigned producer) {
  const GEinsum &pe = gc.einsum(producer);
  SmallVector<unsigned> ranks = gc.valueRanks(producer);
  SmallVector<ExprAttr> at = indexOf(ranks), atNext = at;
  at.push_back(ExprAttr::getIndex(gc.dim(p1)));
  ExprAttr old = ExprAttr::getLoad(ctx, runId[producer], at);
  ExprAttr ref = ExprAttr::getLoad(ctx, refId[producer], at);
  SmallVector<AffineExpr> out;
  for (unsigned r : ranks)
    out.push_back(gc.dim(r));
  out.push_back(gc.dim(p1));
  for (auto &[r, list] : plan.corrections)
    for (const Correction &c : list) {
      if (c.producer != producer)
        continue;
      auto key = std::make_tuple(producer, c.coef, c.base2);
      if (corrId.count(key))
        continue;
      // base(a * (new - old)); a < 0 for a max: base(|a| * (old - new)).
      ExprAttr diff = ExprAttr::getOp(ctx, ExprKind::Sub,
                                      c.coef < 0 ? ArrayRef<ExprAttr>{old, ref}
                                                 : ArrayRef<ExprAttr>{ref, old});
      double scale = std::abs(c.coef);
      if (scale != 1)
        diff = ExprAttr::getOp(ctx, ExprKind::Mul,
                               {diff, ExprAttr::getConst(ctx, scale)});
      GEinsum g{"c_" + pe.name, out,
                ExprAttr::getOp(ctx, c.base2 ? ExprKind::Exp2 : ExprKind::Exp,
                                {diff}),
                nullptr, Reducer::None, {}, {}, {}, pe.elemType, {}, pe.loc};
      if (!corrId.empty() &&
          llvm::any_of(corrId, [&](auto &kv) { return std::get<0>(kv.first) == producer; }))
        g.name += "_" + std::to_string(corrId.size());
      corrections.push_back(g.name + " = " +
                            printExpr(gc, g.expr));
      corrId[key] = emit(std::move(g));
    }
}

void OnlineEmitter::emitOnline(unsigned r) {
  const GEinsum &re = gc.einsum(r);
  SmallVector<unsigned> ranks = gc.valueRanks(r);
  SmallVector<ExprAttr> at = indexOf(ranks);
  at.push_back(ExprAttr::getIndex(gc.dim(p1)));

  // Local reduction over the tile.
  GEinsum local = re;
  local.name = "l_" + re.name;
  local.out.push_back(gc.dim(p1));
  local.expr = tileExpr(re.expr, false);
  local.cond = re.cond ? tileExpr(re.cond, true) : ExprAttr();
  local.fill.reset();
  unsigned localId = emit(std::move(local));

  // Running value along p1, rescaled by the corrections.
  ExprAttr self = ExprAttr::getLoad(ctx, -1, at);
  for (const Correction &c : plan.corrections.lookup(r)) {
    SmallVector<ExprAttr> idx;
    for (AffineExpr a : c.index)
      idx.push_back(ExprAttr::getIndex(a));
    idx.push_back(ExprAttr::getIndex(gc.dim(p1)));
    unsigned cid = corrId[std::make_tuple(c.producer, c.coef, c.base2)];
    self = ExprAttr::getOp(ctx, ExprKind::Mul,
                           {self, ExprAttr::getLoad(ctx, cid, idx)});
  }
  ExprAttr l = ExprAttr::getLoad(ctx, localId, at);
  ExprAttr update;
  switch (re.reducer) {
  case Reducer::Sum:
    update = ExprAttr::getOp(ctx, ExprKind::Add, {self, l});
    break;
  case Reducer::Max:
    update = ExprAttr::getOp(ctx, ExprKind::Max, {self, l});
    break;
  default:
    update = ExprAttr::getOp(ctx, ExprKind::Min, {self, l});
    break;
  }
  SmallVector<AffineExpr> out;
  for (unsigned rk : ranks)
    out.push_back(gc.dim(rk));
  SmallVector<AffineExpr> runOut = out;
  runOut.push_back(gc.dim(p1) + 1);
  GEinsum run{"r_" + re.name, runOut, update, nullptr, Reducer::None, {},
              reducerIdentity(re.reducer), {}, re.elemType, {}, re.loc};
  runId[r] = emit(std::move(run));
  (re.reducer == Reducer::Sum ? runningSums : runningMax).push_back("r_" + re.name);

  SmallVector<ExprAttr> next = indexOf(ranks);
  next.push_back(ExprAttr::getIndex(gc.dim(p1) + 1));
  if (plan.producers.contains(r)) {
    // ref = (r == -inf ? 0 : r): the reference of the exponents.
    ExprAttr cur = ExprAttr::getLoad(ctx, runId[r], next);
    ExprAttr empty = ExprAttr::getOp(
        ctx, ExprKind::Eq,
        {cur, ExprAttr::getConst(ctx, reducerIdentity(re.reducer))});
    SmallVector<AffineExpr> refOut = out;
    refOut.push_back(gc.dim(p1));
    GEinsum ref{"ref_" + re.name, refOut,
                ExprAttr::getOp(ctx, ExprKind::Select,
                                {empty, ExprAttr::getConst(ctx, 0.0), cur}),
                nullptr, Reducer::None, {}, {}, {}, re.elemType, {}, re.loc};
    refId[r] = emit(std::move(ref));
    emitCorrections(r);
  }

  // The final value replaces the reduction outside the loop.
  SmallVector<ExprAttr> last = indexOf(ranks);
  last.push_back(ExprAttr::getIndex(gc.sym(p1)));
  GEinsum fin{re.name, out, ExprAttr::getLoad(ctx, runId[r], last), nullptr,
              Reducer::None, {}, {}, {}, re.elemType, {}, re.loc};
  finalId[r] = emit(std::move(fin));
}

LogicalResult OnlineEmitter::run() {
  for (unsigned x : gc.body()) {
    if (plan.online.contains(x)) {
      emitOnline(x);
      continue;
    }
    if (plan.tiled.contains(x))
      rewriter.emitTiled(x, order);
    // The original stays for readers outside the loop (removed if unused);
    // it reads the final values of the online reductions.
    GEinsum &g = gc.einsum(x);
    auto toFinal = [&](ExprAttr e) {
      return mapExpr(e, [&](ExprAttr node, ArrayRef<ExprAttr> args) -> ExprAttr {
        if (node.getKind() == ExprKind::Load && node.getInput() >= 0 &&
            finalId.count(node.getInput()))
          return ExprAttr::getLoad(ctx, finalId[node.getInput()], args);
        return nullptr;
      });
    };
    g.expr = toFinal(g.expr);
    if (g.cond)
      g.cond = toFinal(g.cond);
    order.push_back(x);
  }
  for (unsigned &y : gc.yields())
    if (finalId.count(y))
      y = finalId[y];
  gc.body() = order;
  gc.removeDeadEinsums();
  // Where the original of a tiled Einsum stays (2-pass form: it is read in
  // the second pass), the tiled copy gets its own name.
  for (auto [x, t] : rewriter.tiledId)
    if (llvm::is_contained(gc.body(), x))
      gc.einsum(t).name += "_t";
  error = rewriter.error;
  return success(error.empty());
}

struct DeriveOnlinePass
    : public impl::AttnDeriveOnlinePassBase<DeriveOnlinePass> {
  using Base::Base;

  void runOnOperation() override {
    SmallVector<CascadeOp> cascades;
    getOperation().walk([&](CascadeOp c) { cascades.push_back(c); });
    for (CascadeOp c : cascades)
      if (failed(derive(c)))
        return signalPassFailure();
  }

  LogicalResult derive(CascadeOp cascade) {
    unsigned target = twoPass ? 2 : 1;
    PassAnalysis before(cascade);
    std::string rankName = rank;
    if (rankName.empty()) {
      SmallVector<std::string> candidates;
      for (const std::string &r : before.getRanks())
        if (before.getPassCount(r) > target)
          candidates.push_back(r);
      // Only a rank that some max or min reduces has a softmax-like chain
      // to derive (the head dims of a backward pass are read twice, but
      // nothing there needs a correction).
      SmallVector<std::string> withMax;
      for (const std::string &r : candidates) {
        bool reducedByMax = false;
        cascade.walk([&](EinsumOp op) {
          if (op.getReducer() != Reducer::None && op.getReducer() != Reducer::Sum &&
              llvm::is_contained(op.getReduced().getAsValueRange<StringAttr>(), r))
            reducedByMax = true;
        });
        if (reducedByMax)
          withMax.push_back(r);
      }
      if (!candidates.empty() && withMax.empty()) {
        emitRemark(cascade.getLoc())
            << "nothing to derive: no max or min reduces "
            << llvm::join(candidates, ", ")
            << " (the rank(s) with more than " << target
            << " pass(es)); name a rank with rank=<name> to try anyway";
        return success();
      }
      candidates = withMax;
      if (candidates.empty()) {
        emitRemark(cascade.getLoc())
            << "already " << (target == 1 ? "1-pass" : "at most 2-pass")
            << " over every rank; nothing to derive";
        return success();
      }
      if (candidates.size() > 1) {
        emitRemark(cascade.getLoc())
            << "several ranks need more than " << target
            << " pass(es) (" << llvm::join(candidates, ", ")
            << "); choose one with rank=<name>";
        return success();
      }
      rankName = candidates.front();
    }
    if (!cascade.hasRank(rankName))
      return emitError(cascade.getLoc())
             << "attn-derive-online: no rank '" << rankName << "'";
    unsigned passesBefore = before.getPassCount(rankName);
    if (passesBefore <= target) {
      emitRemark(cascade.getLoc())
          << "already " << (passesBefore == 0 ? 1 : passesBefore)
          << "-pass over " << rankName << "; nothing to derive";
      return success();
    }
    if (tile <= 0)
      return emitError(cascade.getLoc())
             << "attn-derive-online: tile must be positive, got " << tile;

    GlobalCascade gc(cascade);
    unsigned p = *gc.rankId(rankName);
    OnlinePlan plan;
    if (!twoPass)
      hoistInvariantFactors(gc, p, plan);
    std::optional<Refusal> why;
    if (failed(planOnline(gc, p, twoPass ? OnlineMode::TwoPass
                                         : OnlineMode::OnePass,
                          plan, why))) {
      emitRemark(why->loc) << "no online form over " << rankName << ": "
                           << why->message;
      return success();
    }

    unsigned p1 = gc.addRank(gc.freshRankName(rankName + "1"));
    unsigned p0 = gc.addRank(gc.freshRankName(rankName + "0"));
    std::optional<int64_t> size = gc.staticSize(p);
    gc.addPartition(p, p1, p0, tile, !size || *size % tile != 0);
    OnlineEmitter emitter(gc, plan, p1, p0, tile);
    if (failed(emitter.run())) {
      emitRemark(cascade.getLoc())
          << "no online form over " << rankName << ": " << emitter.error;
      return success();
    }
    CascadeOp result = gc.materialize();
    if (!result)
      return emitError(cascade.getLoc())
             << "attn-derive-online: internal error, the derived cascade "
                "does not verify";
    PassAnalysis after(result);
    unsigned passesAfter = after.getPassCount(rankName);
    if (passesAfter != target) {
      result.erase();
      return emitError(cascade.getLoc())
             << "attn-derive-online: internal error, the derived cascade has "
             << passesAfter << " passes over " << rankName;
    }

    std::string text;
    llvm::raw_string_ostream os(text);
    os << "derived the " << target << "-pass form over " << rankName
       << " (tiles of " << tile << "): passes(" << rankName << ") "
       << passesBefore << " -> " << passesAfter;
    if (!emitter.runningMax.empty())
      os << "; running max/min: " << llvm::join(emitter.runningMax, ", ");
    if (!emitter.runningSums.empty())
      os << "; running sums: " << llvm::join(emitter.runningSums, ", ");
    if (!emitter.corrections.empty())
      os << "; corrections: " << llvm::join(emitter.corrections, ", ");
    if (!plan.hoisted.empty())
      os << "; moved out of sums: " << llvm::join(plan.hoisted, ", ");
    emitRemark(result.getLoc()) << text;
    cascade.erase();
    return success();
  }
};

} // namespace
} // namespace mlir::attn
