//===- MaskTiles.cpp - classifying masks for tile skipping ------------------===//

#include "attn/Transforms/MaskTiles.h"

#include "llvm/ADT/SmallBitVector.h"

#include <cmath>
#include <functional>

using namespace mlir;
using namespace mlir::attn;

StringRef attn::stringifyMaskConjunctKind(MaskConjunctKind k) {
  switch (k) {
  case MaskConjunctKind::Affine: return "affine";
  case MaskConjunctKind::SegmentIds: return "segment_ids";
  case MaskConjunctKind::Varlen: return "varlen";
  case MaskConjunctKind::VarlenBound: return "varlen_bound";
  case MaskConjunctKind::Prefix: return "prefix";
  case MaskConjunctKind::Power2: return "power2";
  case MaskConjunctKind::Element: return "element";
  }
  return "element";
}

std::optional<MaskConjunctKind> attn::symbolizeMaskConjunctKind(StringRef s) {
  for (MaskConjunctKind k :
       {MaskConjunctKind::Affine, MaskConjunctKind::SegmentIds,
        MaskConjunctKind::Varlen, MaskConjunctKind::VarlenBound,
        MaskConjunctKind::Prefix, MaskConjunctKind::Power2,
        MaskConjunctKind::Element})
    if (stringifyMaskConjunctKind(k) == s)
      return k;
  return std::nullopt;
}

/// The ranks whose values `e` uses.
static llvm::SmallBitVector ranksUsed(const GlobalCascade &gc, ExprAttr e) {
  llvm::SmallBitVector used(gc.numRanks());
  for (unsigned g = 0; g < gc.numRanks(); ++g)
    used[g] = usesRank(e, g);
  return used;
}

/// True if every load of `e` reads a cascade argument at plain indices (no
/// gather, no Einsum result).
static bool argumentLoadsOnly(const GlobalCascade &gc, ExprAttr e) {
  bool ok = true;
  walkExpr(e, [&](ExprAttr n) {
    if (n.getKind() != ExprKind::Load)
      return;
    if (n.getInput() < 0 || gc.isEinsum(n.getInput()))
      ok = false;
    for (ExprAttr ix : n.getArgs())
      ok &= ix.getKind() == ExprKind::Index;
  });
  return ok;
}

std::optional<SequenceId> attn::matchSequenceId(const GlobalCascade &gc,
                                                unsigned id) {
  if (!gc.isEinsum(id))
    return std::nullopt;
  const GEinsum &e = gc.einsum(id);
  bool one = (e.expr.getKind() == ExprKind::Const &&
              e.expr.getConstValue() == 1.0) ||
             (e.expr.getKind() == ExprKind::Index &&
              e.expr.getIndex() == getAffineConstantExpr(1, gc.getContext()));
  if (e.out.empty() || e.reducer != Reducer::Sum || e.fill || e.topk ||
      !e.cond || !one)
    return std::nullopt;
  SmallVector<unsigned> outRanks;
  for (AffineExpr o : e.out) {
    auto d = dyn_cast<AffineDimExpr>(o);
    if (!d)
      return std::nullopt;
    outRanks.push_back(d.getPosition());
  }
  AffineExpr pos;
  SmallVector<ExprAttr> conj;
  splitConjuncts(e.cond, conj);
  if (conj.size() != 2)
    return std::nullopt;
  std::optional<unsigned> n, cu;
  bool lowerBound = false;
  // Integer constants compare like affine constants (`n >= 1`).
  auto affineSide = [&](ExprAttr x) -> ExprAttr {
    if (x.getKind() == ExprKind::Const &&
        x.getConstValue() == std::floor(x.getConstValue()))
      return ExprAttr::getIndex(getAffineConstantExpr(
          int64_t(x.getConstValue()), gc.getContext()));
    return x;
  };
  for (ExprAttr c : conj) {
    if (c.getArgs().size() == 2)
      c = ExprAttr::getOp(gc.getContext(), c.getKind(),
                          {affineSide(c.getArgs()[0]), affineSide(c.getArgs()[1])});
    // n >= 1 (or 1 <= n, 0 < n, n > 0).
    if (auto le = affineLeZero(c, gc.numRanks())) {
      unsigned nz = 0, dim = 0;
      for (auto [g, v] : llvm::enumerate(le->coeffs))
        if (v)
          ++nz, dim = g;
      // -n + 1 <= 0: coefficient -1 on n and constant 1 - strict.
      auto cst = dyn_cast<AffineConstantExpr>(
          le->d.replace(getAffineDimExpr(dim, gc.getContext()),
                        getAffineConstantExpr(0, gc.getContext())));
      if (nz == 1 && le->coeffs[dim] == -1 && cst &&
          cst.getValue() + le->strict == 1) {
        lowerBound = true;
        n = dim;
        continue;
      }
      return std::nullopt;
    }
    // cu[n] <= x, x >= cu[n].
    ExprAttr l, r;
    if (c.getKind() == ExprKind::Le)
      l = c.getArgs()[0], r = c.getArgs()[1];
    else if (c.getKind() == ExprKind::Ge)
      l = c.getArgs()[1], r = c.getArgs()[0];
    else
      return std::nullopt;
    if (l.getKind() != ExprKind::Load || l.getInput() < 0 ||
        gc.isEinsum(l.getInput()) || l.getArgs().size() != 1 ||
        l.getArgs()[0].getKind() != ExprKind::Index ||
        !isa<AffineDimExpr>(l.getArgs()[0].getIndex()) ||
        r.getKind() != ExprKind::Index)
      return std::nullopt;
    pos = r.getIndex();
    for (unsigned g = 0; g < gc.numRanks(); ++g)
      if (usesRank(pos, g) && !llvm::is_contained(outRanks, g))
        return std::nullopt;
    cu = l.getInput();
    if (n && *n != cast<AffineDimExpr>(l.getArgs()[0].getIndex()).getPosition())
      return std::nullopt;
    n = cast<AffineDimExpr>(l.getArgs()[0].getIndex()).getPosition();
  }
  if (!lowerBound || !cu || !n || llvm::is_contained(outRanks, *n))
    return std::nullopt;
  // The boundaries: a 1-D argument over n (the runtime checks cu_seqlens
  // arguments: [0] = 0, nondecreasing, last <= the bound rank's size).
  SmallVector<unsigned> cuRanks = gc.valueRanks(*cu);
  if (cuRanks.size() != 1 || cuRanks[0] != *n)
    return std::nullopt;
  return SequenceId{id, *cu, *n, pos};
}

/// The sequence id read by `load` at `rank` (its only index is that rank's
/// value, or any index when `rank` < 0).
static std::optional<SequenceId> seqIdLoad(const GlobalCascade &gc,
                                           ExprAttr load) {
  if (load.getKind() != ExprKind::Load || load.getInput() < 0)
    return std::nullopt;
  std::optional<SequenceId> s = matchSequenceId(gc, load.getInput());
  if (!s)
    return std::nullopt;
  // Read at its own point (the reader's value of its output ranks).
  for (auto [ix, o] : llvm::zip(load.getArgs(), gc.einsum(s->einsum).out))
    if (ix.getKind() != ExprKind::Index || ix.getIndex() != o)
      return std::nullopt;
  return s;
}

/// True if `cu` is annotated as cu_seqlens (validated by the runtime).
SparseAttr attn::argSparsity(CascadeOp cascade, unsigned arg) {
  ArrayAttr all = cascade.getArgAttrsAttr();
  if (!all || arg >= all.size())
    return SparseAttr();
  auto dict = dyn_cast<DictionaryAttr>(all[arg]);
  return dict ? dyn_cast_or_null<SparseAttr>(dict.get(kSparseAttrName))
              : SparseAttr();
}

static bool isCuSeqlens(const GlobalCascade &gc, unsigned cu) {
  SparseAttr sparse = argSparsity(gc.getCascade(), cu);
  return sparse && sparse.getKind() == SparseKind::CuSeqlens;
}

SmallVector<MaskConjunct> attn::classifyMask(const GlobalCascade &gc,
                                             ExprAttr cond,
                                             const MaskRanks &ranks) {
  SmallVector<ExprAttr> conjuncts;
  splitConjuncts(cond, conjuncts);
  SmallVector<MaskConjunct> out;
  unsigned numRanks = gc.numRanks();
  auto isKey = [&](unsigned g) { return llvm::is_contained(ranks.key, g); };
  auto isFixed = [&](unsigned g) { return ranks.fixed && ranks.fixed(g); };
  // Uses only ranks accepted by `ok` and at least one accepted by `need`.
  auto within = [&](ExprAttr e, function_ref<bool(unsigned)> ok) {
    llvm::SmallBitVector used = ranksUsed(gc, e);
    for (unsigned g : used.set_bits())
      if (!ok(g))
        return false;
    return true;
  };
  auto usesKey = [&](ExprAttr e) {
    return llvm::any_of(ranks.key, [&](unsigned g) { return usesRank(e, g); });
  };
  AffineExpr rowDim =
      ranks.row >= 0 ? getAffineDimExpr(ranks.row, gc.getContext()) : AffineExpr();

  // The key position of a distance `row - key` (coefficient 1 on the row,
  // the key ranks linear without constant, nothing else), or none.
  auto distanceKey = [&](AffineExpr d) -> std::optional<AffineExpr> {
    SmallVector<int64_t> co(numRanks, 0);
    if (!linearDimCoefficients(d, 1, co) || co[ranks.row] != 1)
      return std::nullopt;
    AffineExpr key = rowDim - d;
    SmallVector<int64_t> kc(numRanks, 0);
    if (!linearDimCoefficients(key, 1, kc))
      return std::nullopt;
    bool anyKey = false;
    for (unsigned g = 0; g < numRanks; ++g) {
      if (kc[g] == 0)
        continue;
      if (!isKey(g))
        return std::nullopt;
      anyKey = true;
    }
    AffineExpr at0 = key;
    for (unsigned g : ranks.key)
      at0 = at0.replace(getAffineDimExpr(g, gc.getContext()),
                        getAffineConstantExpr(0, gc.getContext()));
    auto c0 = dyn_cast<AffineConstantExpr>(simplifyAffineExpr(at0, numRanks, 0));
    if (!anyKey || !c0 || c0.getValue() != 0)
      return std::nullopt;
    return simplifyAffineExpr(key, numRanks, 0);
  };
  // `a == b` of two index expressions whose difference is a distance (in
  // either order): its key position.
  auto zeroDistance = [&](ExprAttr x) -> std::optional<AffineExpr> {
    if (x.getKind() != ExprKind::Eq)
      return std::nullopt;
    ExprAttr a = x.getArgs()[0], b = x.getArgs()[1];
    if (a.getKind() != ExprKind::Index || b.getKind() != ExprKind::Index)
      return std::nullopt;
    if (auto k = distanceKey(a.getIndex() - b.getIndex()))
      return k;
    return distanceKey(b.getIndex() - a.getIndex());
  };
  // `pow(2, floor(log2(D))) == D` (either side first): D's key position.
  auto powerOfTwo = [&](ExprAttr x) -> std::optional<AffineExpr> {
    if (x.getKind() != ExprKind::Eq)
      return std::nullopt;
    for (int side = 0; side < 2; ++side) {
      ExprAttr pw = x.getArgs()[side], d = x.getArgs()[1 - side];
      if (pw.getKind() != ExprKind::Pow || d.getKind() != ExprKind::Index)
        continue;
      ExprAttr base = pw.getArgs()[0], fl = pw.getArgs()[1];
      if (base.getKind() != ExprKind::Const || base.getConstValue() != 2.0 ||
          fl.getKind() != ExprKind::Floor)
        continue;
      ExprAttr lg = fl.getArgs()[0];
      if (lg.getKind() != ExprKind::Log2 ||
          lg.getArgs()[0].getKind() != ExprKind::Index ||
          lg.getArgs()[0].getIndex() != d.getIndex())
        continue;
      if (auto k = distanceKey(d.getIndex()))
        return k;
    }
    return std::nullopt;
  };
  // The whole `or` (two disjuncts, either order, the same key position).
  auto matchPower2 = [&](ExprAttr x) -> std::optional<AffineExpr> {
    if (ranks.row < 0)
      return std::nullopt;
    ExprAttr a = x.getArgs()[0], b = x.getArgs()[1];
    for (int swap = 0; swap < 2; ++swap, std::swap(a, b)) {
      std::optional<AffineExpr> z = zeroDistance(a), p = powerOfTwo(b);
      if (z && p && *z == *p)
        return z;
    }
    return std::nullopt;
  };

  for (ExprAttr c : conjuncts) {
    MaskConjunct mc;
    mc.expr = c;
    out.push_back(mc);
    MaskConjunct &r = out.back();
    if (ranks.row < 0 || ranks.key.empty()) {
      r.why = "no row or key rank";
      continue;
    }
    if (auto le = affineLeZero(c, numRanks)) {
      bool other = false, key = false;
      for (unsigned g = 0; g < numRanks; ++g) {
        if (!le->coeffs[g])
          continue;
        if (isKey(g))
          key = true;
        else if (int(g) != ranks.row && !isFixed(g))
          other = true;
      }
      if (other) {
        r.why = "an affine bound on a rank other than the key, the row and "
                "the fixed task ranks";
        continue;
      }
      if (!key) {
        r.why = "an affine condition without the key rank";
        continue;
      }
      r.kind = MaskConjunctKind::Affine;
      r.affine = le;
      continue;
    }
    if (c.getKind() == ExprKind::Eq) {
      ExprAttr a = c.getArgs()[0], b = c.getArgs()[1];
      // Varlen: sq[m] == sk[p].
      std::optional<SequenceId> sa = seqIdLoad(gc, a), sb = seqIdLoad(gc, b);
      if (sa && sb) {
        if (usesKey(a))
          std::swap(a, b), std::swap(sa, sb);
        bool rowOk = sa->pos == rowDim;
        bool keyOk = !usesRank(sb->pos, ranks.row) &&
                     llvm::any_of(ranks.key,
                                  [&](unsigned g) { return usesRank(sb->pos, g); }) &&
                     within(b, [&](unsigned g) { return isKey(g); });
        if (rowOk && keyOk && sa->n == sb->n && isCuSeqlens(gc, sa->cu) &&
            isCuSeqlens(gc, sb->cu)) {
          r.kind = MaskConjunctKind::Varlen;
          r.rowSeq = sa;
          r.keySeq = sb;
          continue;
        }
        r.why = "sequence ids not read at the row and the key, or boundaries "
                "not annotated cu_seqlens";
        continue;
      }
      // Segment ids: row side == key side.
      if (usesKey(a))
        std::swap(a, b);
      bool rowOk = !usesKey(a) && argumentLoadsOnly(gc, a) &&
                   within(a, [&](unsigned g) {
                     return int(g) == ranks.row || isFixed(g);
                   });
      bool keyOk = usesKey(b) && argumentLoadsOnly(gc, b) &&
                   within(b, [&](unsigned g) { return isKey(g) || isFixed(g); });
      if (rowOk && keyOk) {
        r.kind = MaskConjunctKind::SegmentIds;
        r.rowSide = a;
        r.keySide = b;
        continue;
      }
      r.why = "an equality whose sides are not one per row and one per key "
              "(cascade arguments only)";
      continue;
    }
    // Power2: `D == 0 or pow(2, floor(log2(D))) == D`, D = row - key.
    if (c.getKind() == ExprKind::Or) {
      if (std::optional<AffineExpr> key = matchPower2(c)) {
        r.kind = MaskConjunctKind::Power2;
        r.power2Key = *key;
        continue;
      }
    }
    // Prefix: an `or` of upper bounds on the key (or one such bound that
    // is not affine: a length read from an argument, `p <= seq_lens[b] -
    // |m| + m`).
    ExprKind ck = c.getKind();
    if (ck == ExprKind::Or || ck == ExprKind::Lt || ck == ExprKind::Le ||
        ck == ExprKind::Gt || ck == ExprKind::Ge) {
      // A bound: affine in the sizes, the fixed ranks and the row (with a
      // coefficient of the row's sign `sign`: the bound must not decrease
      // as the row grows), integer argument loads at fixed ranks, and sums
      // and differences of these.
      std::function<bool(ExprAttr, int)> boundOk = [&](ExprAttr x,
                                                       int sign) -> bool {
        switch (x.getKind()) {
        case ExprKind::Index: {
          SmallVector<int64_t> bc(numRanks, 0);
          if (!linearDimCoefficients(x.getIndex(), 1, bc))
            return false;
          for (unsigned g = 0; g < numRanks; ++g)
            if (bc[g] != 0 && !isFixed(g) &&
                !(int(g) == ranks.row && bc[g] * sign > 0))
              return false;
          return true;
        }
        case ExprKind::Load:
          return argumentLoadsOnly(gc, x) &&
                 within(x, [&](unsigned g) { return isFixed(g); });
        case ExprKind::Add:
          return boundOk(x.getArgs()[0], sign) && boundOk(x.getArgs()[1], sign);
        case ExprKind::Sub:
          return boundOk(x.getArgs()[0], sign) &&
                 boundOk(x.getArgs()[1], -sign);
        case ExprKind::Neg:
          return boundOk(x.getArgs()[0], -sign);
        default:
          return false;
        }
      };
      SmallVector<ExprAttr> disjuncts;
      std::function<void(ExprAttr)> split = [&](ExprAttr x) {
        if (x.getKind() == ExprKind::Or) {
          split(x.getArgs()[0]);
          split(x.getArgs()[1]);
          return;
        }
        disjuncts.push_back(x);
      };
      split(c);
      bool ok = true;
      for (ExprAttr d : disjuncts) {
        ExprKind k = d.getKind();
        if (k != ExprKind::Lt && k != ExprKind::Le && k != ExprKind::Gt &&
            k != ExprKind::Ge) {
          ok = false;
          break;
        }
        bool le = k == ExprKind::Lt || k == ExprKind::Le;
        ExprAttr keyX = le ? d.getArgs()[0] : d.getArgs()[1];
        ExprAttr bound = le ? d.getArgs()[1] : d.getArgs()[0];
        // The key position: linear in the key ranks only, no constant.
        SmallVector<int64_t> co(numRanks, 0);
        if (keyX.getKind() != ExprKind::Index ||
            !linearDimCoefficients(keyX.getIndex(), 1, co) ||
            !usesKey(keyX)) {
          ok = false;
          break;
        }
        for (unsigned g = 0; g < numRanks; ++g)
          ok &= co[g] == 0 || isKey(g);
        AffineExpr at0 = keyX.getIndex();
        for (unsigned g : ranks.key)
          at0 = at0.replace(getAffineDimExpr(g, gc.getContext()),
                            getAffineConstantExpr(0, gc.getContext()));
        auto c0 = dyn_cast<AffineConstantExpr>(at0);
        ok &= c0 && c0.getValue() == 0;
        // The bound: nondecreasing in the row, else fixed ranks, sizes and
        // lengths read from arguments at fixed ranks.
        ok &= boundOk(bound, 1);
        if (!ok)
          break;
        r.upper.push_back({keyX.getIndex(), bound,
                           (k == ExprKind::Lt || k == ExprKind::Gt) ? 1 : 0});
      }
      if (ok) {
        r.kind = MaskConjunctKind::Prefix;
        continue;
      }
      r.upper.clear();
      if (ck == ExprKind::Or) {
        r.why = "an `or` that is not of upper bounds on the key";
        continue;
      }
      // A comparison: the checks below may still classify it.
      r.why = "a comparison that is not an upper bound on the key (affine "
              "in the row, the fixed ranks and the sizes, plus lengths read "
              "at fixed ranks)";
    }
    // Varlen padding rows: sq[m] < |n| - 1.
    if (c.getKind() == ExprKind::Lt) {
      ExprAttr a = c.getArgs()[0], b = c.getArgs()[1];
      std::optional<SequenceId> sa = seqIdLoad(gc, a);
      if (sa && sa->pos == rowDim &&
          b.getKind() == ExprKind::Index &&
          b.getIndex() == getAffineSymbolExpr(sa->n, gc.getContext()) - 1) {
        r.kind = MaskConjunctKind::VarlenBound;
        r.rowSeq = sa;
        continue;
      }
    }
    r.why = "not an affine bound, a segment-id equality or a cu_seqlens "
            "range";
  }
  // A bound needs its equality: without a Varlen conjunct it is evaluated
  // per element.
  bool varlen = llvm::any_of(out, [](const MaskConjunct &m) {
    return m.kind == MaskConjunctKind::Varlen;
  });
  for (MaskConjunct &m : out)
    if (m.kind == MaskConjunctKind::VarlenBound && !varlen) {
      m.kind = MaskConjunctKind::Element;
      m.why = "a sequence-id bound without a sequence-id equality";
    }
  return out;
}
