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
  unsigned emit(GEinsum g) {
    unsigned id = gc.add(std::move(g));
    order.push_back(id);
    return id;
  }
  void emitOnline(unsigned r);

  GlobalCascade &gc;
  const OnlinePlan &plan;
  MLIRContext *ctx;
  unsigned p, p1, p0;
  int64_t tile;
  TiledRewriter rewriter;
  std::vector<unsigned> order;
  DenseMap<unsigned, unsigned> runId, refId, finalId;
  CorrectionIds corrId;
};

void OnlineEmitter::emitOnline(unsigned r) {
  const GEinsum &re = gc.einsum(r);
  SmallVector<unsigned> ranks = gc.valueRanks(r);
  SmallVector<ExprAttr> at = gc.indices(ranks);
  at.push_back(ExprAttr::getIndex(gc.dim(p1)));

  // Local reduction over the tile.
  GEinsum local = re;
  local.name = "l_" + re.name;
  local.out.push_back(gc.dim(p1));
  local.expr = tileExpr(re.expr, false);
  local.cond = re.cond ? tileExpr(re.cond, true) : ExprAttr();
  local.fill.reset();
  local.elemType = accumulationType(re.elemType);
  unsigned localId = emit(std::move(local));

  // Running value along p1, rescaled by the corrections.
  ExprAttr self =
      rescale(gc, plan, r, ExprAttr::getLoad(ctx, -1, at), p1, corrId);
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
  SmallVector<AffineExpr> out = gc.dims(ranks);
  SmallVector<AffineExpr> runOut = out;
  runOut.push_back(gc.dim(p1) + 1);
  GEinsum run{"r_" + re.name, runOut, update, nullptr, Reducer::None, {},
              reducerIdentity(re.reducer), {}, accumulationType(re.elemType),
              {}, re.loc};
  runId[r] = emit(std::move(run));
  (re.reducer == Reducer::Sum ? runningSums : runningMax).push_back("r_" + re.name);

  SmallVector<ExprAttr> next = gc.indices(ranks);
  next.push_back(ExprAttr::getIndex(gc.dim(p1) + 1));
  if (plan.producers.contains(r)) {
    // ref = (r == -inf ? 0 : r): the reference of the exponents.
    ExprAttr cur = ExprAttr::getLoad(ctx, runId[r], next);
    SmallVector<AffineExpr> refOut = out;
    refOut.push_back(gc.dim(p1));
    GEinsum ref{"ref_" + re.name, refOut, safeReference(cur, re.reducer),
                nullptr, Reducer::None, {}, {}, {},
                accumulationType(re.elemType), {}, re.loc};
    refId[r] = emit(std::move(ref));
    // c = base(a * (new - old)); a < 0 for a max: base(|a| * (old - new)).
    ExprAttr old = ExprAttr::getLoad(ctx, runId[r], at);
    ExprAttr refAt = ExprAttr::getLoad(ctx, refId[r], at);
    corrections.append(emitCorrections(
        gc, plan, r, refOut,
        [&](const Correction &c) { return buildCorrection(c, old, refAt); },
        corrId, [&](GEinsum g) { return emit(std::move(g)); }));
  }

  // The final value replaces the reduction outside the loop.
  SmallVector<ExprAttr> last = gc.indices(ranks);
  last.push_back(ExprAttr::getIndex(gc.sym(p1)));
  GEinsum fin{re.name, out, ExprAttr::getLoad(ctx, runId[r], last), nullptr,
              Reducer::None, {}, {}, {}, re.elemType, {}, re.loc};
  finalId[r] = emit(std::move(fin));
}

LogicalResult OnlineEmitter::run() {
  emitBody(gc, plan, rewriter, order, finalId,
           [&](unsigned x) { emitOnline(x); });
  finishBody(gc, std::move(order), finalId);
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
    // A quantization prologue (attn-split-quant) has no key loop: its
    // passes over the keys are per (batch, head), before the kernel runs.
    if (cascade->hasAttr(kPrologueAttrName))
      return success();
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
        // r itself, or the outer rank of its partition (a paged KV cache).
        SmallVector<std::string> names = {r};
        for (auto part : cascade.getPartitions().getAsRange<PartitionAttr>())
          if (part.getRank().getValue() == r)
            names.push_back(part.getOuter().str());
        bool reducedByMax = false;
        cascade.walk([&](EinsumOp op) {
          if (op.getReducer() != Reducer::None && op.getReducer() != Reducer::Sum &&
              llvm::any_of(op.getReduced().getAsValueRange<StringAttr>(),
                           [&](StringRef n) { return llvm::is_contained(names, n); }))
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

    // Tiles of `tile` keys, or the partition of p that the cascade
    // declares (the pages of a paged KV cache, whose reductions are
    // written over it; the blocks of block-sparse attention).
    unsigned p1, p0;
    int64_t tileSize = tile;
    std::string tiling;
    if (plan.declared) {
      p1 = plan.declared->outer;
      p0 = plan.declared->inner;
      tileSize = plan.declared->tile;
      tiling = "the declared partition " + rankName + " -> " +
               gc.rankName(p1).str() + ", " + gc.rankName(p0).str() + " = " +
               std::to_string(tileSize);
    } else {
      p1 = gc.addRank(gc.freshRankName(rankName + "1"));
      p0 = gc.addRank(gc.freshRankName(rankName + "0"));
      std::optional<int64_t> size = gc.staticSize(p);
      gc.addPartition(p, p1, p0, tile, !size || *size % tile != 0);
      tiling = "tiles of " + std::to_string(tile);
    }
    OnlineEmitter emitter(gc, plan, p1, p0, tileSize);
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
       << " (" << tiling << "): passes(" << rankName << ") "
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
