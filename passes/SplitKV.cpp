//===- SplitKV.cpp - attn-split-kv -----------------------------------------===//
//
// Splits the key rank p into parts of `split-size` keys (p -> ps, pi) that
// are reduced independently (in parallel, FlashDecoding-style), then merges
// the partial results with the same corrections as the online form
// (docs/derivation.md, step 7): producers first (gm = max over splits of
// gm_part), then every partial sum rescaled by
// c_gm[ps] = exp(gm_part[ps] - ref_gm) and summed over the splits. The
// planning is the one of attn-derive-online (lib/Transforms/Online.cpp).
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
#define GEN_PASS_DEF_ATTNSPLITKVPASS
#include "passes/Passes.h.inc"

namespace {

class SplitEmitter {
public:
  SplitEmitter(GlobalCascade &gc, const OnlinePlan &plan, unsigned ps,
               unsigned pi, int64_t size)
      : gc(gc), plan(plan), ctx(gc.getContext()), ps(ps),
        rewriter(gc, plan, ps, pi, size,
                 [this](unsigned y, SmallVector<ExprAttr> idx, bool inCond) {
                   // Inside a split, an online value is that split's partial
                   // (raw in conditions, its reference in expressions).
                   idx.push_back(ExprAttr::getIndex(this->gc.dim(this->ps)));
                   return ExprAttr::getLoad(ctx, inCond ? partId.lookup(y)
                                                        : refPartId.lookup(y),
                                            idx);
                 }) {}

  LogicalResult run();
  std::string error;
  SmallVector<std::string> merges;

private:
  SmallVector<ExprAttr> indexOf(ArrayRef<unsigned> ranks) {
    SmallVector<ExprAttr> out;
    for (unsigned r : ranks)
      out.push_back(ExprAttr::getIndex(gc.dim(r)));
    return out;
  }
  SmallVector<AffineExpr> dimsOf(ArrayRef<unsigned> ranks) {
    SmallVector<AffineExpr> out;
    for (unsigned r : ranks)
      out.push_back(gc.dim(r));
    return out;
  }
  unsigned emit(GEinsum g) {
    unsigned id = gc.add(std::move(g));
    order.push_back(id);
    return id;
  }
  ExprAttr safe(ExprAttr v, Reducer r) {
    ExprAttr empty = ExprAttr::getOp(
        ctx, ExprKind::Eq, {v, ExprAttr::getConst(ctx, reducerIdentity(r))});
    return ExprAttr::getOp(ctx, ExprKind::Select,
                           {empty, ExprAttr::getConst(ctx, 0.0), v});
  }
  void emitSplit(unsigned r);

  GlobalCascade &gc;
  const OnlinePlan &plan;
  MLIRContext *ctx;
  unsigned ps;
  DenseMap<unsigned, unsigned> partId, refPartId, finalId, refId;
  std::map<std::tuple<unsigned, double, bool>, unsigned> corrId;
  TiledRewriter rewriter;
  std::vector<unsigned> order;
};

void SplitEmitter::emitSplit(unsigned r) {
  const GEinsum &re = gc.einsum(r);
  SmallVector<unsigned> ranks = gc.valueRanks(r);
  SmallVector<AffineExpr> out = dimsOf(ranks);

  // The partial result of each split.
  GEinsum part = re;
  part.name = re.name + "_part";
  part.out.push_back(gc.dim(ps));
  part.expr = rewriter.rewrite(re.expr, false);
  part.cond = re.cond ? rewriter.rewrite(re.cond, true) : ExprAttr();
  part.fill.reset();
  partId[r] = emit(std::move(part));
  SmallVector<ExprAttr> atSplit = indexOf(ranks);
  atSplit.push_back(ExprAttr::getIndex(gc.dim(ps)));
  ExprAttr partLoad = ExprAttr::getLoad(ctx, partId[r], atSplit);
  SmallVector<AffineExpr> outSplit = out;
  outSplit.push_back(gc.dim(ps));
  if (plan.producers.contains(r))
    refPartId[r] = emit(GEinsum{"ref_" + re.name + "_part", outSplit,
                                safe(partLoad, re.reducer), nullptr,
                                Reducer::None, {}, {}, {}, re.elemType, {},
                                re.loc});

  // The merge over splits: partials rescaled to the merged producers.
  ExprAttr term = partLoad;
  std::string text = re.name + " = " +
                     (re.reducer == Reducer::Sum   ? "sum"
                      : re.reducer == Reducer::Max ? "max"
                                                   : "min") +
                     "_" + gc.rankName(ps).str() + " " + re.name + "_part";
  for (const Correction &c : plan.corrections.lookup(r)) {
    SmallVector<ExprAttr> idx;
    for (AffineExpr a : c.index)
      idx.push_back(ExprAttr::getIndex(a));
    idx.push_back(ExprAttr::getIndex(gc.dim(ps)));
    unsigned cid = corrId[std::make_tuple(c.producer, c.coef, c.base2)];
    term = ExprAttr::getOp(ctx, ExprKind::Mul,
                           {term, ExprAttr::getLoad(ctx, cid, idx)});
    text += " * " + gc.valueName(cid);
  }
  merges.push_back(text);
  finalId[r] = emit(GEinsum{re.name, out, term, nullptr, re.reducer, {}, {},
                            {}, re.elemType, {}, re.loc});

  if (!plan.producers.contains(r))
    return;
  ExprAttr merged = ExprAttr::getLoad(ctx, finalId[r], indexOf(ranks));
  refId[r] = emit(GEinsum{"ref_" + re.name, out, safe(merged, re.reducer),
                          nullptr, Reducer::None, {}, {}, {}, re.elemType, {},
                          re.loc});
  ExprAttr ref = ExprAttr::getLoad(ctx, refId[r], indexOf(ranks));
  for (auto &[consumer, list] : plan.corrections)
    for (const Correction &c : list) {
      auto key = std::make_tuple(r, c.coef, c.base2);
      if (c.producer != r || corrId.count(key))
        continue;
      ExprAttr diff = ExprAttr::getOp(ctx, ExprKind::Sub,
                                      c.coef < 0 ? ArrayRef<ExprAttr>{partLoad, ref}
                                                 : ArrayRef<ExprAttr>{ref, partLoad});
      double scale = std::abs(c.coef);
      if (scale != 1)
        diff = ExprAttr::getOp(ctx, ExprKind::Mul,
                               {diff, ExprAttr::getConst(ctx, scale)});
      std::string name = "c_" + re.name;
      if (llvm::any_of(corrId, [&](auto &kv) { return std::get<0>(kv.first) == r; }))
        name += "_" + std::to_string(corrId.size());
      corrId[key] = emit(GEinsum{
          name, outSplit,
          ExprAttr::getOp(ctx, c.base2 ? ExprKind::Exp2 : ExprKind::Exp, {diff}),
          nullptr, Reducer::None, {}, {}, {}, re.elemType, {}, re.loc});
    }
}

LogicalResult SplitEmitter::run() {
  for (unsigned x : gc.body()) {
    if (plan.online.contains(x)) {
      emitSplit(x);
      continue;
    }
    if (plan.tiled.contains(x))
      rewriter.emitTiled(x, order);
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
  error = rewriter.error;
  return success(error.empty());
}

struct SplitKVPass : public impl::AttnSplitKVPassBase<SplitKVPass> {
  using Base::Base;

  void runOnOperation() override {
    SmallVector<CascadeOp> cascades;
    getOperation().walk([&](CascadeOp c) { cascades.push_back(c); });
    for (CascadeOp c : cascades)
      if (failed(split(c)))
        return signalPassFailure();
  }

  LogicalResult split(CascadeOp cascade) {
    if (splitSize <= 0)
      return emitError(cascade.getLoc())
             << "attn-split-kv: split-size must be positive, got " << splitSize;
    if (!cascade.hasRank(rank))
      return emitError(cascade.getLoc())
             << "attn-split-kv: no rank '" << rank << "' (set rank=<name>)";
    GlobalCascade gc(cascade);
    unsigned p = *gc.rankId(rank);
    OnlinePlan plan;
    hoistInvariantFactors(gc, p, plan);
    std::optional<Refusal> why;
    if (failed(planOnline(gc, p, OnlineMode::OnePass, plan, why))) {
      emitRemark(why->loc) << "no split form over " << rank << ": "
                           << why->message;
      return success();
    }
    unsigned ps = gc.addRank(gc.freshRankName(rank + "s"));
    unsigned pi = gc.addRank(gc.freshRankName(rank + "i"));
    std::optional<int64_t> size = gc.staticSize(p);
    gc.addPartition(p, ps, pi, splitSize, !size || *size % splitSize != 0);
    SplitEmitter emitter(gc, plan, ps, pi, splitSize);
    if (failed(emitter.run())) {
      emitRemark(cascade.getLoc())
          << "no split form over " << rank << ": " << emitter.error;
      return success();
    }
    CascadeOp result = gc.materialize();
    if (!result)
      return emitError(cascade.getLoc())
             << "attn-split-kv: internal error, the split cascade does not "
                "verify";
    emitRemark(result.getLoc())
        << "split " << rank << " into parts of " << std::to_string(splitSize) << " ("
        << gc.rankName(ps) << " = ceildiv(|" << rank << "|, " << std::to_string(splitSize)
        << ") splits, reduced independently); merge: "
        << llvm::join(emitter.merges, ", ");
    cascade.erase();
    return success();
  }
};

} // namespace
} // namespace mlir::attn
