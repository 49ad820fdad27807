//===- Products.h - products of an Einsum's expression ---------*- C++ -*-===//
//
// Helpers shared by the cascade rewrites that take a map expression apart
// into its factors and put it back together (attn-reassociate,
// attn-quantize), and the ranks an Einsum reduces.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_TRANSFORMS_PRODUCTS_H
#define ATTN_TRANSFORMS_PRODUCTS_H

#include "attn/Transforms/GlobalCascade.h"

#include <set>

namespace mlir::attn {

/// A factor of a product, in the numerator or (inverse) the denominator.
struct Factor {
  ExprAttr e;
  bool inverse = false;
};

/// Flattens `e` into its factors: `a * b / c` gives a, b, 1/c; with
/// `splitNegation`, `-a` gives -1, a. Anything else is one factor.
inline void flattenProduct(ExprAttr e, bool inverse,
                           SmallVectorImpl<Factor> &out,
                           bool splitNegation = true) {
  switch (e.getKind()) {
  case ExprKind::Mul:
    flattenProduct(e.getArgs()[0], inverse, out, splitNegation);
    flattenProduct(e.getArgs()[1], inverse, out, splitNegation);
    return;
  case ExprKind::Div:
    flattenProduct(e.getArgs()[0], inverse, out, splitNegation);
    flattenProduct(e.getArgs()[1], !inverse, out, splitNegation);
    return;
  case ExprKind::Neg:
    if (splitNegation) {
      out.push_back({ExprAttr::getConst(e.getContext(), -1.0), false});
      flattenProduct(e.getArgs()[0], inverse, out, splitNegation);
      return;
    }
    [[fallthrough]];
  default:
    out.push_back({e, inverse});
  }
}

/// (numerator factors) / (denominator factors), 1.0 for an empty product.
inline ExprAttr buildProduct(MLIRContext *ctx, ArrayRef<Factor> factors) {
  ExprAttr num, den;
  for (const Factor &f : factors) {
    ExprAttr &acc = f.inverse ? den : num;
    acc = acc ? ExprAttr::getOp(ctx, ExprKind::Mul, {acc, f.e}) : f.e;
  }
  if (!num)
    num = ExprAttr::getConst(ctx, 1.0);
  return den ? ExprAttr::getOp(ctx, ExprKind::Div, {num, den}) : num;
}

/// The ranks (dimension positions) whose values `e` uses, in its affine
/// leaves and the indices of its loads.
inline std::set<unsigned> ranksUsed(ExprAttr e) {
  std::set<unsigned> out;
  if (!e)
    return out;
  walkExpr(e, [&](ExprAttr node) {
    if (node.getKind() != ExprKind::Index)
      return;
    node.getIndex().walk([&](AffineExpr sub) {
      if (auto d = dyn_cast<AffineDimExpr>(sub))
        out.insert(d.getPosition());
    });
  });
  return out;
}

/// The ranks Einsum `id` reduces: those it uses that are not in its output.
inline std::set<unsigned> reducedRanks(const GlobalCascade &gc, unsigned id) {
  const GEinsum &g = gc.einsum(id);
  std::set<unsigned> used = ranksUsed(g.expr), cond = ranksUsed(g.cond);
  used.insert(cond.begin(), cond.end());
  for (unsigned r : gc.valueRanks(id))
    used.erase(r);
  return used;
}

/// True if an output index is not a plain rank (`p1 + 1`: iterative).
inline bool isIterative(const GEinsum &g) {
  return llvm::any_of(g.out,
                      [](AffineExpr e) { return !isa<AffineDimExpr>(e); });
}

} // namespace mlir::attn

#endif // ATTN_TRANSFORMS_PRODUCTS_H
