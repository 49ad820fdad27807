//===- Sparsify.cpp - attn-sparsify -----------------------------------------===//
//
// Classifies the mask of every cascade's score Einsum for tile skipping
// (include/attn/Transforms/MaskTiles.h; docs/sparsify.md), records the
// classification as `attn.tiles` on the Einsum and reports it as a remark.
//
//===----------------------------------------------------------------------===//

#include "attn/Passes.h"
#include "attn/Transforms/GlobalCascade.h"
#include "attn/Transforms/MaskTiles.h"

#include "mlir/IR/Builders.h"

#include <cmath>

namespace mlir::attn {
#define GEN_PASS_DEF_ATTNSPARSIFYPASS
#include "passes/Passes.h.inc"

namespace {

/// What the lowering does with a conjunct of each class.
StringRef effect(MaskConjunctKind k) {
  switch (k) {
  case MaskConjunctKind::Affine:
    return "key-tile bounds per row tile, mask-free full tiles";
  case MaskConjunctKind::SegmentIds:
    return "per-tile id ranges: empty tiles skipped, mask-free full tiles";
  case MaskConjunctKind::Varlen:
    return "key tiles of the row tile's sequences as loop bounds, mask-free "
           "full tiles";
  case MaskConjunctKind::VarlenBound:
    return "padding rows past the last boundary see no key";
  case MaskConjunctKind::Prefix:
    return "the key loop ends after the largest upper bound of the row tile, "
           "mask-free full tiles below the smallest";
  case MaskConjunctKind::Power2:
    return "a key tile is visited only if the distances from the row tile's "
           "rows to its keys include 0 or a power of two";
  case MaskConjunctKind::Element:
    return "evaluated per element";
  }
  return "";
}

struct AttnSparsifyPass : impl::AttnSparsifyPassBase<AttnSparsifyPass> {
  using Base::Base;

  void runOnOperation() override {
    getOperation().walk([&](CascadeOp c) { runOnCascade(c); });
  }

  void runOnCascade(CascadeOp cascade) {
    GlobalCascade gc(cascade);
    SmallVector<EinsumOp> ops(cascade.getBodyBlock().getOps<EinsumOp>());
    if (ops.size() != gc.body().size())
      return;
    // The score Einsum: a condition with else -inf, read by an Einsum that
    // reduces one of its ranks (the key rank), or iterated over a partition
    // (the 1-pass form).
    int maskIdx = -1;
    SmallVector<unsigned> keyRanks;
    for (auto [i, id] : llvm::enumerate(gc.body())) {
      const GEinsum &e = gc.einsum(id);
      if (!e.cond || !e.fill || *e.fill != -INFINITY)
        continue;
      maskIdx = int(i);
      for (auto part : cascade.getPartitions().getAsRange<PartitionAttr>()) {
        unsigned p = *gc.rankId(part.getRank().getValue());
        unsigned p1 = *gc.rankId(part.getOuter().getValue());
        unsigned p0 = *gc.rankId(part.getInner().getValue());
        SmallVector<unsigned> ranks = gc.valueRanks(id);
        if (llvm::is_contained(ranks, p1) && llvm::is_contained(ranks, p0))
          keyRanks = {p, p1, p0};
      }
      if (keyRanks.empty()) {
        // The rank of the scores that a reader reduces (max or sum over p).
        SmallVector<unsigned> ranks = gc.valueRanks(id);
        for (unsigned other : gc.body()) {
          const GEinsum &o = gc.einsum(other);
          if (o.reducer == Reducer::None ||
              !llvm::is_contained(gc.operandsOf(other), id))
            continue;
          SmallVector<unsigned> outRanks = gc.valueRanks(other);
          for (unsigned r : ranks)
            if (!llvm::is_contained(outRanks, r) && keyRanks.empty())
              keyRanks.push_back(r);
        }
      }
      break;
    }
    if (maskIdx < 0) {
      emitRemark(cascade.getLoc())
          << "attn-sparsify: no mask with 'else -inf': every key tile is "
             "visited";
      return;
    }
    unsigned maskId = gc.body()[maskIdx];
    const GEinsum &mask = gc.einsum(maskId);
    EinsumOp op = ops[maskIdx];
    // Task ranks: the dynamic ranks every result has; the row rank: the
    // last of them, in the first result's order, that indexes no argument
    // read with a key rank (as attn-lower-cpu plans tasks).
    unsigned declared = cascade.getRanks().size();
    SmallVector<unsigned> task;
    for (unsigned g = 0; g < declared; ++g) {
      if (gc.staticSize(g) || llvm::is_contained(keyRanks, g))
        continue;
      bool all = !gc.yields().empty();
      for (unsigned y : gc.yields())
        all &= llvm::is_contained(gc.valueRanks(y), g);
      if (all)
        task.push_back(g);
    }
    int row = -1;
    if (!gc.yields().empty())
      for (unsigned r : gc.valueRanks(gc.yields().front())) {
        if (!llvm::is_contained(task, r))
          continue;
        bool withKey = false;
        for (unsigned id : gc.body()) {
          const GEinsum &e = gc.einsum(id);
          for (ExprAttr x : {e.expr, e.cond}) {
            if (!x)
              continue;
            walkExpr(x, [&](ExprAttr n) {
              if (n.getKind() != ExprKind::Load || n.getInput() < 0 ||
                  gc.isEinsum(n.getInput()))
                return;
              bool key = false, uses = false;
              for (ExprAttr ix : n.getArgs()) {
                for (unsigned k : keyRanks)
                  key |= usesRank(ix, k);
                uses |= usesRank(ix, r);
              }
              withKey |= key && uses;
            });
          }
        }
        if (!withKey)
          row = int(r);
      }
    auto fixed = [&](unsigned g) {
      return llvm::is_contained(task, g) && int(g) != row;
    };
    MaskRanks ranks;
    ranks.row = row;
    ranks.key = keyRanks;
    ranks.fixed = fixed;
    SmallVector<MaskConjunct> conj = classifyMask(gc, mask.cond, ranks);
    if (!metadata)
      for (MaskConjunct &mc : conj)
        if (mc.kind != MaskConjunctKind::Affine &&
            mc.kind != MaskConjunctKind::Prefix &&
            mc.kind != MaskConjunctKind::Power2 &&
            mc.kind != MaskConjunctKind::Element) {
          mc.kind = MaskConjunctKind::Element;
          mc.why = "metadata=false";
        }

    Builder b(cascade->getContext());
    SmallVector<Attribute> classes;
    for (const MaskConjunct &mc : conj)
      classes.push_back(b.getStringAttr(stringifyMaskConjunctKind(mc.kind)));
    op->setAttr(kTilesAttrName, b.getArrayAttr(classes));

    InFlightDiagnostic d = emitRemark(op.getLoc());
    d << "attn-sparsify: mask of '" << mask.name << "' over key tiles of "
      << (keyRanks.empty() ? std::string("?") : gc.rankName(keyRanks[0]).str())
      << " and row tiles of "
      << (row < 0 ? std::string("?") : gc.rankName(row).str()) << ":";
    bool anyElement = false, anyTile = false;
    for (auto [i, mc] : llvm::enumerate(conj)) {
      d << (i ? ";" : "") << " conjunct " << (i + 1) << " "
        << stringifyMaskConjunctKind(mc.kind) << " (" << effect(mc.kind);
      if (mc.kind == MaskConjunctKind::Element && !mc.why.empty())
        d << ": " << mc.why;
      d << ")";
      anyElement |= mc.kind == MaskConjunctKind::Element;
      anyTile |= mc.kind != MaskConjunctKind::Element &&
                 mc.kind != MaskConjunctKind::VarlenBound;
    }
    if (!anyTile)
      d << "; no tile is skipped and the mask is evaluated in every tile";
    else if (anyElement)
      d << "; empty tiles are skipped, no tile is full (the mask is "
           "evaluated in every tile visited)";
    else
      d << "; empty tiles are skipped, the mask is evaluated only in "
           "partial tiles";
  }
};

} // namespace
} // namespace mlir::attn
