//===- SplitKV.cpp - attn-split-kv -----------------------------------------===//
//
// Splits the keys into parts that are reduced independently, then merges the
// partial results (docs/derivation.md, step 7):
//
//   * one key rank p: p -> ps, pi in parts of `split-size` keys (in parallel,
//     FlashDecoding-style), or along an existing partition of p (one part
//     per page of a paged KV cache);
//   * several key ranks (Hydragen's shared prefix, rank=s,p): one part per
//     rank, the cascade restricted to that rank's keys.
//
// Each part computes its reductions against its own max. With merge=lse
// (the default), each part then produces its normalised results, e.g.
// O_i = N_i / D_i and LSE_i = ref(max_i) + log(D_i), and the merge is
//   LSE = log sum_i exp(LSE_i)   (computed as M + log sum_i exp(LSE_i - M),
//                                 M = max_i LSE_i, 0 where it is -inf)
//   O   = sum_i exp(LSE_i - LSE) * O_i.
// With merge=state, the (max, sum) state is merged instead: the maxima
// first, then every partial sum rescaled to the merged max. The planning is
// the one of attn-derive-online (lib/Transforms/Online.cpp).
//
//===----------------------------------------------------------------------===//

#include "attn/Analysis.h"
#include "attn/Passes.h"
#include "attn/Transforms/Online.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "llvm/ADT/StringExtras.h"

#include <cmath>
#include <deque>
#include <map>
#include <memory>

namespace mlir::attn {
#define GEN_PASS_DEF_ATTNSPLITKVPASS
#include "passes/Passes.h.inc"

namespace {

GEinsum makeEinsum(std::string name, SmallVector<AffineExpr> out, ExprAttr expr,
                   Type type, Location loc, Reducer reducer = Reducer::None,
                   ExprAttr cond = {}) {
  return GEinsum{std::move(name), std::move(out), expr, cond, reducer,
                 {}, {}, {}, type, {}, loc};
}

//===----------------------------------------------------------------------===//
// The merge in (O, LSE) form
//===----------------------------------------------------------------------===//

/// One part of the keys, as the merge sees it.
struct PartForm {
  const OnlinePlan *plan;
  /// The classification of the results, in the order of the yields.
  SmallVector<NormalizedOutput> outputs;
  /// Name suffix of the part's Einsums ("_part", "_s").
  std::string suffix;
  /// Rewrites the loads of S into loads of the part's values.
  std::function<ExprAttr(ExprAttr)> toPart;
  /// The part's reference value of producer P at `idx` (P's ranks).
  std::function<ExprAttr(unsigned, SmallVector<ExprAttr>)> ref;
};

/// Emits the per-part results and the merge. With a split rank, the parts
/// are the entries of that rank (one PartForm, merged by reductions over
/// it); otherwise each PartForm is a part (merged by explicit sums).
class LseMerger {
public:
  LseMerger(GlobalCascade &gc, std::vector<unsigned> &order,
            std::optional<unsigned> splitRank, std::vector<PartForm> parts)
      : gc(gc), ctx(gc.getContext()), order(order), splitRank(splitRank),
        parts(std::move(parts)) {}

  /// Appends the Einsums to `order` and returns the new yields.
  LogicalResult run(std::vector<unsigned> &yields);
  std::string error;
  SmallVector<std::string> partials, merges;

private:
  struct Group {
    SmallVector<unsigned> dens;
    SmallVector<unsigned> ranks;
    std::string base;
    SmallVector<unsigned> lsePart;
    unsigned lse = 0;
  };
  unsigned emit(GEinsum g) {
    unsigned id = gc.add(std::move(g));
    order.push_back(id);
    return id;
  }
  /// The indices of a part's value: `idx`, plus the split rank.
  SmallVector<ExprAttr> atPart(SmallVector<ExprAttr> idx) {
    if (splitRank)
      idx.push_back(ExprAttr::getIndex(gc.dim(*splitRank)));
    return idx;
  }
  SmallVector<AffineExpr> outPart(SmallVector<AffineExpr> out) {
    if (splitRank)
      out.push_back(gc.dim(*splitRank));
    return out;
  }
  /// Combines term(k) over the parts: returns the expression and the
  /// reducer of the merging Einsum (Max or Sum over the split rank, or an
  /// explicit max(...) or + over the parts).
  std::pair<ExprAttr, Reducer> combine(ExprKind kind,
                                       function_ref<ExprAttr(unsigned)> term) {
    if (splitRank)
      return {term(0), kind == ExprKind::Max ? Reducer::Max : Reducer::Sum};
    ExprAttr e;
    for (unsigned k = 0; k < parts.size(); ++k)
      e = e ? ExprAttr::getOp(ctx, kind, {e, term(k)}) : term(k);
    return {e, Reducer::None};
  }
  void emitGroupParts(Group &g);
  void emitGroupMerge(Group &g);
  static bool exactLse(const GlobalCascade &gc, const NormalizedOutput &o,
                       const GEinsum &y);

  GlobalCascade &gc;
  MLIRContext *ctx;
  std::vector<unsigned> &order;
  std::optional<unsigned> splitRank;
  std::vector<PartForm> parts;
};

/// The result is exactly the merged LSE of its denominator (`lse = gm +
/// log(sd)`): the merge's final Einsum takes its name.
bool LseMerger::exactLse(const GlobalCascade &gc, const NormalizedOutput &o,
                         const GEinsum &y) {
  if (o.kind != NormalizedOutput::Kind::LogSum ||
      std::abs(o.scale - 1) > 1e-15 || o.rest || !o.conds.empty())
    return false;
  if (o.guarded && (!y.fill || *y.fill != -INFINITY))
    return false;
  SmallVector<unsigned> ranks = gc.valueRanks(o.den);
  return gc.valueRanks(o.value) == ranks &&
         ArrayRef<AffineExpr>(o.denIndex) == ArrayRef<AffineExpr>(gc.dims(ranks));
}

void LseMerger::emitGroupParts(Group &g) {
  SmallVector<AffineExpr> out = gc.dims(g.ranks);
  SmallVector<ExprAttr> at = gc.indices(g.ranks);
  const GEinsum &d0 = gc.einsum(g.dens[0]);
  Type type = d0.elemType;
  Location loc = d0.loc;
  // The LSE of each part: log D_i plus the max it is relative to,
  // -a * ln(base) * ref(P_i) for each correction exp(a * P).
  for (auto [k, part] : llvm::enumerate(parts)) {
    unsigned d = g.dens[k];
    ExprAttr e;
    for (const Correction &c : part.plan->corrections.lookup(d)) {
      SmallVector<ExprAttr> idx;
      for (AffineExpr a : c.index)
        idx.push_back(ExprAttr::getIndex(a));
      ExprAttr t = part.ref(c.producer, idx);
      double coef = -c.coef * (c.base2 ? std::log(2.0) : 1.0);
      if (coef != 1)
        t = ExprAttr::getOp(ctx, ExprKind::Mul, {t, ExprAttr::getConst(ctx, coef)});
      e = e ? ExprAttr::getOp(ctx, ExprKind::Add, {e, t}) : t;
    }
    ExprAttr log = ExprAttr::getOp(
        ctx, ExprKind::Log, {part.toPart(ExprAttr::getLoad(ctx, d, at))});
    e = e ? ExprAttr::getOp(ctx, ExprKind::Add, {e, log}) : log;
    g.lsePart.push_back(
        emit(makeEinsum(g.base + part.suffix, outPart(out), e, type, loc)));
    partials.push_back(g.base + part.suffix + " = " + printExpr(gc, e));
  }
}

void LseMerger::emitGroupMerge(Group &g) {
  SmallVector<AffineExpr> out = gc.dims(g.ranks);
  SmallVector<ExprAttr> at = gc.indices(g.ranks);
  const GEinsum &d0 = gc.einsum(g.dens[0]);
  Type type = d0.elemType;
  Location loc = d0.loc;
  auto lsePart = [&](unsigned k, SmallVector<ExprAttr> idx) {
    return ExprAttr::getLoad(ctx, g.lsePart[k], atPart(std::move(idx)));
  };
  // M = max_i LSE_i, its reference, sum_i exp(LSE_i - ref(M)), and
  // LSE = ref(M) + log(sum): -inf where every part is empty.
  auto [maxE, maxR] = combine(ExprKind::Max, [&](unsigned k) { return lsePart(k, at); });
  unsigned mx = emit(makeEinsum(g.base + "_max", out, maxE, type, loc, maxR));
  unsigned ref = emit(makeEinsum("ref_" + g.base + "_max", out,
                                 safeReference(ExprAttr::getLoad(ctx, mx, at), Reducer::Max),
                                 type, loc));
  ExprAttr refAt = ExprAttr::getLoad(ctx, ref, at);
  auto [sumE, sumR] = combine(ExprKind::Add, [&](unsigned k) {
    return ExprAttr::getOp(
        ctx, ExprKind::Exp,
        {ExprAttr::getOp(ctx, ExprKind::Sub, {lsePart(k, at), refAt})});
  });
  unsigned sum = emit(makeEinsum(g.base + "_sum", out, sumE, type, loc, sumR));
  g.lse = emit(makeEinsum(
      g.base, out,
      ExprAttr::getOp(ctx, ExprKind::Add,
                      {refAt, ExprAttr::getOp(ctx, ExprKind::Log,
                                              {ExprAttr::getLoad(ctx, sum, at)})}),
      type, loc));
  std::string partsText;
  if (splitRank) {
    partsText = "sum_" + gc.rankName(*splitRank).str() + " exp(" + g.base +
                parts[0].suffix + ")";
  } else {
    for (auto &part : parts)
      partsText += (partsText.empty() ? "" : " + ") + ("exp(" + g.base + part.suffix + ")");
  }
  merges.push_back(g.base + " = log(" + partsText + ")");
}

LogicalResult LseMerger::run(std::vector<unsigned> &yields) {
  std::vector<unsigned> original = gc.yields();
  std::map<SmallVector<unsigned>, unsigned> groupOf;
  std::vector<Group> groups;
  for (auto [i, y] : llvm::enumerate(original)) {
    const NormalizedOutput &o0 = parts[0].outputs[i];
    SmallVector<unsigned> dens;
    for (auto &part : parts) {
      const NormalizedOutput &o = part.outputs[i];
      if (o.kind != o0.kind || std::abs(o.scale - o0.scale) > 1e-15 ||
          o.rest != o0.rest || o.guarded != o0.guarded) {
        error = "the parts disagree on the form of '" + gc.valueName(y) + "'";
        return failure();
      }
      dens.push_back(o.den);
    }
    if (o0.kind == NormalizedOutput::Kind::Free)
      continue;
    auto [it, inserted] = groupOf.try_emplace(dens, groups.size());
    if (inserted) {
      Group g;
      g.dens = dens;
      g.ranks = gc.valueRanks(dens[0]);
      for (unsigned d : dens)
        if (gc.valueRanks(d) != g.ranks) {
          error = "the denominators '" + gc.valueName(dens[0]) + "' and '" +
                  gc.valueName(d) + "' of the parts have different ranks";
          return failure();
        }
      g.base = "lse_" + gc.valueName(dens[0]);
      groups.push_back(g);
    }
  }
  // A result that is exactly the merged LSE names its group.
  for (auto [i, y] : llvm::enumerate(original)) {
    const NormalizedOutput &o = parts[0].outputs[i];
    if (!gc.isEinsum(y) || !exactLse(gc, o, gc.einsum(y)))
      continue;
    SmallVector<unsigned> dens;
    for (auto &part : parts)
      dens.push_back(part.outputs[i].den);
    Group &g = groups[groupOf[dens]];
    if (StringRef(g.base).starts_with("lse_" + gc.valueName(dens[0])))
      g.base = gc.valueName(y);
  }
  // Per part: the normalised results, then the LSEs; then the merge.
  std::map<unsigned, SmallVector<unsigned>> partOuts;
  for (auto [i, y] : llvm::enumerate(original)) {
    if (parts[0].outputs[i].kind != NormalizedOutput::Kind::Ratio)
      continue;
    const GEinsum &ye = gc.einsum(y);
    SmallVector<unsigned> &ids = partOuts[i];
    for (auto &part : parts) {
      const NormalizedOutput &ok = part.outputs[i];
      SmallVector<ExprAttr> denAt;
      for (AffineExpr a : ok.denIndex)
        denAt.push_back(ExprAttr::getIndex(a));
      ExprAttr den = part.toPart(ExprAttr::getLoad(ctx, ok.den, denAt));
      GEinsum pe = makeEinsum(
          ye.name + part.suffix, outPart(ye.out), part.toPart(ok.expr),
          ye.elemType, ye.loc, Reducer::None,
          ExprAttr::getOp(ctx, ExprKind::Gt, {den, ExprAttr::getConst(ctx, 0.0)}));
      partials.push_back(pe.name + " = " + printExpr(gc, pe.expr) + " if (" +
                         printExpr(gc, pe.cond) + ")");
      ids.push_back(emit(std::move(pe)));
    }
  }
  for (Group &g : groups)
    emitGroupParts(g);
  for (Group &g : groups)
    emitGroupMerge(g);

  yields.clear();
  for (auto [i, y] : llvm::enumerate(original)) {
    const NormalizedOutput &o = parts[0].outputs[i];
    if (o.kind == NormalizedOutput::Kind::Free) {
      yields.push_back(y);
      continue;
    }
    SmallVector<unsigned> dens;
    for (auto &part : parts)
      dens.push_back(part.outputs[i].den);
    Group &g = groups[groupOf[dens]];
    const GEinsum ye = gc.einsum(y);
    if (exactLse(gc, o, ye) && g.base == ye.name) {
      yields.push_back(g.lse);
      continue;
    }
    SmallVector<unsigned> ranks = gc.valueRanks(y);
    SmallVector<AffineExpr> out = ye.out;
    SmallVector<ExprAttr> denAt;
    for (AffineExpr a : o.denIndex)
      denAt.push_back(ExprAttr::getIndex(a));
    ExprAttr lseAt = ExprAttr::getLoad(ctx, g.lse, denAt);
    SmallVector<ExprAttr> conds(o.conds.begin(), o.conds.end());
    if (o.guarded)
      conds.push_back(ExprAttr::getOp(
          ctx, ExprKind::Gt, {lseAt, ExprAttr::getConst(ctx, -INFINITY)}));
    GEinsum fin = ye;
    fin.attrs.clear();
    fin.cond = conjoin(ctx, conds);
    if (o.kind == NormalizedOutput::Kind::LogSum) {
      ExprAttr e = lseAt;
      if (o.scale != 1)
        e = ExprAttr::getOp(ctx, ExprKind::Mul, {e, ExprAttr::getConst(ctx, o.scale)});
      if (o.rest)
        e = ExprAttr::getOp(ctx, ExprKind::Add, {e, o.rest});
      fin.expr = e;
      fin.reducer = Reducer::None;
      merges.push_back(ye.name + " = " + printExpr(gc, e));
      yields.push_back(emit(std::move(fin)));
      continue;
    }
    // Ratio: O_i per part (0 where the part has no denominator, emitted
    // above), merged as O = sum_i exp(LSE_i - LSE) * O_i.
    SmallVector<unsigned> &partOut = partOuts[i];
    SmallVector<ExprAttr> yAt = gc.indices(ranks);
    auto [e, red] = combine(ExprKind::Add, [&](unsigned k) {
      ExprAttr w = ExprAttr::getOp(
          ctx, ExprKind::Exp,
          {ExprAttr::getOp(ctx, ExprKind::Sub,
                           {ExprAttr::getLoad(ctx, g.lsePart[k], atPart(denAt)),
                            lseAt})});
      return ExprAttr::getOp(
          ctx, ExprKind::Mul,
          {w, ExprAttr::getLoad(ctx, partOut[k], atPart(yAt))});
    });
    fin.expr = e;
    fin.reducer = red;
    std::string text = ye.name + " = ";
    if (splitRank)
      text += "sum_" + gc.rankName(*splitRank).str() + " exp(" + g.base +
              parts[0].suffix + " - " + g.base + ") * " + ye.name + parts[0].suffix;
    else
      for (auto [k, part] : llvm::enumerate(parts))
        text += (k ? " + " : "") + ("exp(" + g.base + part.suffix + " - " +
                                    g.base + ") * " + ye.name + part.suffix);
    merges.push_back(text);
    yields.push_back(emit(std::move(fin)));
  }
  return success();
}

//===----------------------------------------------------------------------===//
// One key rank: splits
//===----------------------------------------------------------------------===//

class SplitEmitter {
public:
  SplitEmitter(GlobalCascade &gc, const OnlinePlan &plan, unsigned ps,
               unsigned pi, int64_t size, bool mergeState)
      : gc(gc), plan(plan), ctx(gc.getContext()), ps(ps),
        mergeState(mergeState),
        rewriter(gc, plan, ps, pi, size,
                 [this](unsigned y, SmallVector<ExprAttr> idx, bool inCond) {
                   // Inside a split, an online value is that split's partial
                   // (raw in conditions, its reference in expressions).
                   idx.push_back(ExprAttr::getIndex(this->gc.dim(this->ps)));
                   return ExprAttr::getLoad(ctx, inCond ? partId.lookup(y)
                                                        : refPartId.lookup(y),
                                            idx);
                 }) {}

  LogicalResult run(ArrayRef<NormalizedOutput> outputs);
  std::string error;
  SmallVector<std::string> partials, merges;

private:
  unsigned emit(GEinsum g) {
    unsigned id = gc.add(std::move(g));
    order.push_back(id);
    return id;
  }
  void emitSplit(unsigned r);
  void emitStateMerge(unsigned r);

  GlobalCascade &gc;
  const OnlinePlan &plan;
  MLIRContext *ctx;
  unsigned ps;
  bool mergeState;
  DenseMap<unsigned, unsigned> partId, refPartId, finalId, refId;
  CorrectionIds corrId;
  TiledRewriter rewriter;
  std::vector<unsigned> order;
};

void SplitEmitter::emitSplit(unsigned r) {
  const GEinsum &re = gc.einsum(r);
  SmallVector<unsigned> ranks = gc.valueRanks(r);

  // The partial result of each split, and for a max its reference.
  GEinsum part = re;
  part.name = re.name + "_part";
  part.out.push_back(gc.dim(ps));
  part.expr = rewriter.rewrite(re.expr, false);
  part.cond = re.cond ? rewriter.rewrite(re.cond, true) : ExprAttr();
  part.fill.reset();
  partId[r] = emit(std::move(part));
  SmallVector<ExprAttr> atSplit = gc.indices(ranks);
  atSplit.push_back(ExprAttr::getIndex(gc.dim(ps)));
  ExprAttr partLoad = ExprAttr::getLoad(ctx, partId[r], atSplit);
  SmallVector<AffineExpr> outSplit = gc.dims(ranks);
  outSplit.push_back(gc.dim(ps));
  if (plan.producers.contains(r))
    refPartId[r] = emit(makeEinsum("ref_" + re.name + "_part", outSplit,
                                   safeReference(partLoad, re.reducer),
                                   re.elemType, re.loc));
  if (mergeState)
    emitStateMerge(r);
}

/// merge=state: the producers first (gm = max_ps gm_part), then every
/// partial sum rescaled to the merged producers.
void SplitEmitter::emitStateMerge(unsigned r) {
  const GEinsum &re = gc.einsum(r);
  SmallVector<unsigned> ranks = gc.valueRanks(r);
  SmallVector<AffineExpr> out = gc.dims(ranks);
  SmallVector<ExprAttr> atSplit = gc.indices(ranks);
  atSplit.push_back(ExprAttr::getIndex(gc.dim(ps)));
  ExprAttr partLoad = ExprAttr::getLoad(ctx, partId[r], atSplit);
  SmallVector<AffineExpr> outSplit = out;
  outSplit.push_back(gc.dim(ps));

  ExprAttr term = rescale(gc, plan, r, partLoad, ps, corrId);
  std::string text = re.name + " = " +
                     (re.reducer == Reducer::Sum   ? "sum"
                      : re.reducer == Reducer::Max ? "max"
                                                   : "min") +
                     "_" + gc.rankName(ps).str() + " " + printExpr(gc, term);
  merges.push_back(text);
  finalId[r] = emit(makeEinsum(re.name, out, term, re.elemType, re.loc,
                               re.reducer));

  if (!plan.producers.contains(r))
    return;
  ExprAttr merged = ExprAttr::getLoad(ctx, finalId[r], gc.indices(ranks));
  refId[r] = emit(makeEinsum("ref_" + re.name, out,
                             safeReference(merged, re.reducer), re.elemType,
                             re.loc));
  ExprAttr ref = ExprAttr::getLoad(ctx, refId[r], gc.indices(ranks));
  emitCorrections(
      gc, plan, r, outSplit,
      [&](const Correction &c) { return buildCorrection(c, partLoad, ref); },
      corrId, [&](GEinsum g) { return emit(std::move(g)); });
}

LogicalResult SplitEmitter::run(ArrayRef<NormalizedOutput> outputs) {
  emitBody(gc, plan, rewriter, order, finalId, [&](unsigned x) { emitSplit(x); });
  if (!rewriter.error.empty()) {
    error = rewriter.error;
    return failure();
  }
  if (mergeState) {
    finishBody(gc, std::move(order), finalId);
    return success();
  }
  PartForm part;
  part.plan = &plan;
  part.outputs.assign(outputs.begin(), outputs.end());
  part.suffix = "_part";
  part.toPart = [this](ExprAttr e) {
    return mapExpr(e, [&](ExprAttr node, ArrayRef<ExprAttr> args) -> ExprAttr {
      if (node.getKind() != ExprKind::Load || node.getInput() < 0 ||
          !partId.count(node.getInput()))
        return nullptr;
      SmallVector<ExprAttr> idx(args.begin(), args.end());
      idx.push_back(ExprAttr::getIndex(gc.dim(ps)));
      return ExprAttr::getLoad(ctx, partId.lookup(node.getInput()), idx);
    });
  };
  part.ref = [this](unsigned producer, SmallVector<ExprAttr> idx) {
    idx.push_back(ExprAttr::getIndex(gc.dim(ps)));
    return ExprAttr::getLoad(ctx, refPartId.lookup(producer), idx);
  };
  std::vector<PartForm> forms;
  forms.push_back(std::move(part));
  LseMerger merger(gc, order, ps, std::move(forms));
  std::vector<unsigned> yields;
  if (failed(merger.run(yields))) {
    error = merger.error;
    return failure();
  }
  partials = merger.partials;
  merges = merger.merges;
  gc.yields() = yields;
  finishBody(gc, std::move(order), DenseMap<unsigned, unsigned>());
  return success();
}

//===----------------------------------------------------------------------===//
// The pass
//===----------------------------------------------------------------------===//

struct SplitKVPass : public impl::AttnSplitKVPassBase<SplitKVPass> {
  using Base::Base;

  void runOnOperation() override {
    SmallVector<CascadeOp> cascades;
    getOperation().walk([&](CascadeOp c) { cascades.push_back(c); });
    for (CascadeOp c : cascades)
      if (failed(split(c)))
        return signalPassFailure();
  }

  /// The key rank of a reduced rank: the rank itself, or the rank that it
  /// partitions.
  static unsigned keyOf(const GlobalCascade &gc, unsigned r) {
    for (auto part : gc.getCascade().getPartitions().getAsRange<PartitionAttr>())
      if (part.getOuter().getValue() == gc.rankName(r) ||
          part.getInner().getValue() == gc.rankName(r))
        return *gc.rankId(part.getRank().getValue());
    return r;
  }

  /// Without rank=: the only rank that a max or min reduces, or the key
  /// ranks whose maxima one Einsum combines (max(gmp, gms): a shared
  /// prefix).
  LogicalResult detectRanks(GlobalCascade &gc, SmallVectorImpl<unsigned> &keys,
                            std::string &why) {
    llvm::SetVector<unsigned> maxRanks;
    DenseMap<unsigned, unsigned> maxOf; // max Einsum -> its single key rank
    for (unsigned id : gc.body()) {
      const GEinsum &e = gc.einsum(id);
      if (e.reducer != Reducer::Max && e.reducer != Reducer::Min)
        continue;
      llvm::SetVector<unsigned> ks;
      for (unsigned g = 0; g < gc.numRanks(); ++g)
        if (reducesRank(gc, id, g))
          ks.insert(keyOf(gc, g));
      maxRanks.insert(ks.begin(), ks.end());
      if (ks.size() == 1)
        maxOf[id] = ks.front();
    }
    // A combination of maxima over several ranks.
    llvm::SetVector<unsigned> combined;
    for (unsigned id : gc.body())
      walkExpr(gc.einsum(id).expr, [&](ExprAttr n) {
        if (n.getKind() != ExprKind::Max || !combined.empty())
          return;
        llvm::SetVector<unsigned> ks;
        for (ExprAttr a : n.getArgs())
          if (a.getKind() == ExprKind::Load && a.getInput() >= 0 &&
              maxOf.count(a.getInput()))
            ks.insert(maxOf.lookup(a.getInput()));
        if (ks.size() == n.getArgs().size())
          combined = ks;
      });
    if (combined.size() > 1) {
      // Nested max(max(a, b), c): take every max combined with these.
      keys.assign(combined.begin(), combined.end());
      llvm::sort(keys);
      return success();
    }
    if (maxRanks.size() == 1) {
      keys.push_back(maxRanks.front());
      return success();
    }
    std::vector<std::string> names;
    for (unsigned r : maxRanks)
      names.push_back(gc.rankName(r).str());
    why = maxRanks.empty()
              ? "no max or min reduces a rank; name the key rank with rank=<name>"
              : "several ranks are reduced by a max or min (" +
                    llvm::join(names, ", ") +
                    "); name the key rank with rank=<name>, or the key ranks "
                    "reduced together with rank=<a>,<b>";
    return failure();
  }

  LogicalResult split(CascadeOp cascade) {
    if (splitSize <= 0)
      return emitError(cascade.getLoc())
             << "attn-split-kv: split-size must be positive, got " << splitSize;
    if (merge != "lse" && merge != "state")
      return emitError(cascade.getLoc())
             << "attn-split-kv: merge must be 'lse' or 'state', got '" << merge
             << "'";
    GlobalCascade gc(cascade);
    SmallVector<unsigned> keys;
    for (const std::string &r : rank) {
      std::optional<unsigned> id = gc.rankId(r);
      if (!id || !cascade.hasRank(r))
        return emitError(cascade.getLoc())
               << "attn-split-kv: no rank '" << r << "'";
      keys.push_back(*id);
    }
    if (keys.empty()) {
      std::string why;
      if (failed(detectRanks(gc, keys, why))) {
        emitRemark(cascade.getLoc()) << "nothing split: " << why;
        return success();
      }
    }
    if (keys.size() > 1)
      return splitKeyRanks(cascade, gc, keys);
    return splitOneRank(cascade, gc, keys.front());
  }

  LogicalResult splitOneRank(CascadeOp cascade, GlobalCascade &gc, unsigned p) {
    std::string rankName = gc.rankName(p).str();
    OnlinePlan plan;
    hoistInvariantFactors(gc, p, plan);
    std::optional<Refusal> why;
    if (failed(planOnline(gc, p, OnlineMode::OnePass, plan, why))) {
      emitRemark(why->loc) << "no split form over " << rankName << ": "
                           << why->message;
      return success();
    }
    bool mergeState = merge == "state";
    SmallVector<NormalizedOutput> outputs;
    if (!mergeState &&
        failed(classifyOutputs(gc, plan, gc.yields(), outputs, why))) {
      emitRemark(why->loc) << "no split form over " << rankName << ": "
                           << why->message;
      return success();
    }
    unsigned ps, pi;
    int64_t size = splitSize;
    std::string how;
    if (plan.partition) {
      ps = plan.partition->outer;
      pi = plan.partition->inner;
      size = plan.partition->tile;
      how = "split " + rankName + " along its existing partition (one split per " +
            gc.rankName(ps).str() + ", " + std::to_string(size) + " keys each)";
    } else {
      ps = gc.addRank(gc.freshRankName(rankName + "s"));
      pi = gc.addRank(gc.freshRankName(rankName + "i"));
      std::optional<int64_t> static_ = gc.staticSize(p);
      gc.addPartition(p, ps, pi, splitSize, !static_ || *static_ % splitSize != 0);
      how = "split " + rankName + " into parts of " + std::to_string(splitSize) +
            " (" + gc.rankName(ps).str() + " = ceildiv(|" + rankName + "|, " +
            std::to_string(splitSize) + ") splits, reduced independently)";
    }
    SplitEmitter emitter(gc, plan, ps, pi, size, mergeState);
    if (failed(emitter.run(outputs))) {
      emitRemark(cascade.getLoc())
          << "no split form over " << rankName << ": " << emitter.error;
      return success();
    }
    CascadeOp result = gc.materialize();
    if (!result)
      return emitError(cascade.getLoc())
             << "attn-split-kv: internal error, the split cascade does not "
                "verify";
    InFlightDiagnostic remark = emitRemark(result.getLoc()) << how;
    if (!emitter.partials.empty())
      remark << "; per split: " << llvm::join(emitter.partials, ", ");
    remark << "; merge: " << llvm::join(emitter.merges, ", ");
    cascade.erase();
    return success();
  }

  /// Several key ranks (Hydragen): one part per rank, merged in (O, LSE)
  /// form.
  LogicalResult splitKeyRanks(CascadeOp cascade, GlobalCascade &gc,
                              ArrayRef<unsigned> keys) {
    std::vector<std::string> names;
    for (unsigned k : keys)
      names.push_back(gc.rankName(k).str());
    std::string list = llvm::join(names, ", ");
    if (merge == "state") {
      emitRemark(cascade.getLoc())
          << "no split form over " << list
          << ": merge=state takes one key rank; several key ranks are merged "
             "in (O, LSE) form (merge=lse)";
      return success();
    }
    std::optional<Refusal> why;
    SmallVector<Restriction> restrictions;
    if (failed(restrictToKeyRanks(gc, keys, restrictions, why))) {
      emitRemark(why->loc) << "no split form over " << list << ": "
                           << why->message;
      return success();
    }
    std::deque<OnlinePlan> plans;
    auto refs = std::make_shared<DenseMap<unsigned, unsigned>>();
    std::vector<PartForm> forms;
    std::vector<unsigned> order;
    DenseSet<unsigned> placed;
    for (Restriction &r : restrictions) {
      OnlinePlan &plan = plans.emplace_back();
      gc.body() = r.body;
      hoistInvariantFactors(gc, r.rank, plan);
      if (failed(planOnline(gc, r.rank, OnlineMode::OnePass, plan, why))) {
        emitRemark(why->loc) << "no split form over " << list << ": over "
                             << gc.rankName(r.rank) << ", " << why->message;
        return success();
      }
      r.body = gc.body();
      // As inside a split: the part's reductions and what they read over
      // its rank subtract the reference of its max (0 while the max is
      // -inf, so that a part without keys gives 0, not NaN); conditions
      // read the max itself.
      for (unsigned producer : plan.producers) {
        const GEinsum &pe = gc.einsum(producer);
        SmallVector<unsigned> ranks = gc.valueRanks(producer);
        unsigned ref = gc.add(makeEinsum(
            "ref_" + pe.name, gc.dims(ranks),
            safeReference(ExprAttr::getLoad(gc.getContext(), producer,
                                            gc.indices(ranks)),
                          pe.reducer),
            pe.elemType, pe.loc));
        r.body.insert(llvm::find(r.body, producer) + 1, ref);
        (*refs)[producer] = ref;
      }
      for (unsigned id : r.body) {
        if (!plan.tiled.contains(id) && !plan.online.contains(id))
          continue;
        GEinsum &e = gc.einsum(id);
        e.expr = redirectLoads(e.expr, *refs);
      }
      PartForm form;
      form.plan = &plan;
      if (failed(classifyOutputs(gc, plan, r.yields, form.outputs, why))) {
        emitRemark(why->loc) << "no split form over " << list << ": over "
                             << gc.rankName(r.rank) << ", " << why->message;
        return success();
      }
      form.suffix = "_" + gc.rankName(r.rank).str();
      form.toPart = [](ExprAttr e) { return e; };
      forms.push_back(std::move(form));
      for (unsigned id : r.body)
        if (placed.insert(id).second)
          order.push_back(id);
    }
    // The reference of each part's max, for its LSE.
    for (PartForm &form : forms)
      form.ref = [&gc, refs](unsigned producer, SmallVector<ExprAttr> idx) {
        return ExprAttr::getLoad(gc.getContext(), refs->lookup(producer), idx);
      };
    LseMerger merger(gc, order, std::nullopt, std::move(forms));
    std::vector<unsigned> yields;
    if (failed(merger.run(yields))) {
      emitRemark(cascade.getLoc())
          << "no split form over " << list << ": " << merger.error;
      return success();
    }
    gc.yields() = yields;
    finishBody(gc, std::move(order), DenseMap<unsigned, unsigned>());
    CascadeOp result = gc.materialize();
    if (!result)
      return emitError(cascade.getLoc())
             << "attn-split-kv: internal error, the split cascade does not "
                "verify";
    emitRemark(result.getLoc())
        << "split the keys by rank (" << list
        << "; one part per rank, each reduced against its own max); per part: "
        << llvm::join(merger.partials, ", ")
        << "; merge: " << llvm::join(merger.merges, ", ");
    cascade.erase();
    return success();
  }
};

} // namespace
} // namespace mlir::attn
