//===- Online.cpp - planning the online (1-pass) form of a cascade ---------===//
//
// Implements include/attn/Transforms/Online.h: hoisting of p-invariant
// factors, classification of the Einsums, factoring of every term into a
// p-part and a correction, and the checks of docs/derivation.md. Every check
// that fails gives a Refusal naming the Einsum and the reason; nothing here
// guesses.
//
//===----------------------------------------------------------------------===//

#include "attn/Transforms/Online.h"

#include "dialects/attn/ExprSyntax.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/raw_ostream.h"

#include <cmath>

using namespace mlir;
using namespace mlir::attn;

//===----------------------------------------------------------------------===//
// Printing and small queries
//===----------------------------------------------------------------------===//

static std::vector<std::string> rankNamesOf(const GlobalCascade &gc) {
  std::vector<std::string> names;
  for (unsigned g = 0; g < gc.numRanks(); ++g)
    names.push_back(gc.rankName(g).str());
  return names;
}

std::string attn::printExpr(const GlobalCascade &gc, ExprAttr e) {
  std::vector<std::string> names = rankNamesOf(gc);
  syntax::PrintNames pn;
  pn.space = names;
  pn.printInput = [&](raw_ostream &os, int64_t in) {
    os << (in < 0 ? std::string("self") : gc.valueName(in));
  };
  std::string s;
  llvm::raw_string_ostream os(s);
  syntax::printExpr(os, e, pn);
  return s;
}

std::string attn::printAffine(const GlobalCascade &gc, AffineExpr e) {
  std::vector<std::string> names = rankNamesOf(gc);
  std::string s;
  llvm::raw_string_ostream os(s);
  syntax::printAffine(os, e, names);
  return s;
}

bool attn::iteratesRank(const GlobalCascade &gc, unsigned id, unsigned g) {
  const GEinsum &e = gc.einsum(id);
  for (AffineExpr o : e.out)
    if (usesRank(o, g))
      return true;
  return usesRank(e.expr, g) || (e.cond && usesRank(e.cond, g));
}

bool attn::reducesRank(const GlobalCascade &gc, unsigned id, unsigned g) {
  return gc.einsum(id).reducer != Reducer::None && iteratesRank(gc, id, g) &&
         !llvm::is_contained(gc.valueRanks(id), g);
}

double attn::reducerIdentity(Reducer r) {
  return r == Reducer::Max ? -INFINITY : r == Reducer::Min ? INFINITY : 0.0;
}

static bool loadsAny(ExprAttr e, function_ref<bool(unsigned)> pred) {
  bool found = false;
  if (e)
    walkExpr(e, [&](ExprAttr n) {
      if (n.getKind() == ExprKind::Load && n.getInput() >= 0 &&
          pred(n.getInput()))
        found = true;
    });
  return found;
}

/// Uses only the ranks in `allowed` (sizes of any rank are fine).
static bool onlyUsesRanks(ExprAttr e, ArrayRef<unsigned> allowed) {
  bool ok = true;
  walkExpr(e, [&](ExprAttr n) {
    if (n.getKind() == ExprKind::Index)
      n.getIndex().walk([&](AffineExpr sub) {
        if (auto d = dyn_cast<AffineDimExpr>(sub);
            d && !llvm::is_contained(allowed, d.getPosition()))
          ok = false;
      });
  });
  return ok;
}

/// Top-level factors of a product: (factor, is a divisor).
static void flattenProduct(ExprAttr e, bool divisor,
                           SmallVectorImpl<std::pair<ExprAttr, bool>> &out) {
  if (e.getKind() == ExprKind::Mul) {
    flattenProduct(e.getArgs()[0], divisor, out);
    flattenProduct(e.getArgs()[1], divisor, out);
  } else if (e.getKind() == ExprKind::Div) {
    flattenProduct(e.getArgs()[0], divisor, out);
    flattenProduct(e.getArgs()[1], !divisor, out);
  } else {
    out.push_back({e, divisor});
  }
}

static ExprAttr buildProduct(MLIRContext *ctx,
                             ArrayRef<std::pair<ExprAttr, bool>> factors) {
  ExprAttr result;
  for (auto [f, divisor] : factors) {
    if (!result)
      result = divisor ? ExprAttr::getOp(ctx, ExprKind::Div,
                                         {ExprAttr::getConst(ctx, 1.0), f})
                       : f;
    else
      result = ExprAttr::getOp(ctx, divisor ? ExprKind::Div : ExprKind::Mul,
                               {result, f});
  }
  return result ? result : ExprAttr::getConst(ctx, 1.0);
}

//===----------------------------------------------------------------------===//
// Hoisting
//===----------------------------------------------------------------------===//

void attn::hoistInvariantFactors(GlobalCascade &gc, unsigned rank,
                                 OnlinePlan &plan) {
  MLIRContext *ctx = gc.getContext();
  // Values that are, or are computed from, a p-reduction.
  DenseMap<unsigned, bool> memo;
  std::function<bool(unsigned)> fromReduction = [&](unsigned id) -> bool {
    if (!gc.isEinsum(id))
      return false;
    if (auto it = memo.find(id); it != memo.end())
      return it->second;
    memo[id] = false;
    bool r = reducesRank(gc, id, rank) ||
             llvm::any_of(gc.operandsOf(id), fromReduction);
    memo[id] = r;
    return r;
  };

  std::vector<unsigned> body = gc.body();
  for (unsigned id : body) {
    GEinsum &g = gc.einsum(id);
    if (g.reducer != Reducer::Sum || !reducesRank(gc, id, rank) || g.fill)
      continue;
    SmallVector<unsigned> outRanks = gc.valueRanks(id);
    auto hoistable = [&](ExprAttr e) {
      return onlyUsesRanks(e, outRanks) && loadsAny(e, fromReduction);
    };
    SmallVector<std::pair<ExprAttr, bool>> factors, keep, move;
    flattenProduct(g.expr, false, factors);
    for (auto f : factors)
      (hoistable(f.first) ? move : keep).push_back(f);
    SmallVector<ExprAttr> conds, keepConds, moveConds;
    splitConjuncts(g.cond, conds);
    for (ExprAttr c : conds)
      (hoistable(c) ? moveConds : keepConds).push_back(c);
    if (move.empty() && moveConds.empty())
      continue;

    GEinsum num = g;
    num.name = g.name + "_num";
    num.expr = buildProduct(ctx, keep);
    num.cond = conjoin(ctx, keepConds);
    unsigned numId = gc.add(num);

    std::string what;
    llvm::raw_string_ostream os(what);
    os << g.name << " = " << num.name;
    SmallVector<ExprAttr> outIdx;
    for (unsigned r : outRanks)
      outIdx.push_back(ExprAttr::getIndex(gc.dim(r)));
    SmallVector<std::pair<ExprAttr, bool>> outer{
        {ExprAttr::getLoad(ctx, numId, outIdx), false}};
    for (auto f : move) {
      outer.push_back(f);
      os << (f.second ? " / " : " * ") << printExpr(gc, f.first);
    }
    if (!moveConds.empty())
      os << " if (" << printExpr(gc, conjoin(ctx, moveConds)) << ")";
    plan.hoisted.push_back(what);

    GEinsum &outerE = gc.einsum(id);
    outerE.expr = buildProduct(ctx, outer);
    outerE.cond = conjoin(ctx, moveConds);
    outerE.reducer = Reducer::None;
    outerE.attrs.clear();
    auto &order = gc.body();
    order.insert(llvm::find(order, id), numId);
    memo.clear();
  }
}

//===----------------------------------------------------------------------===//
// Linear forms
//===----------------------------------------------------------------------===//

namespace {
/// sum_i coef_i * atom_i + constant.
struct Linear {
  llvm::MapVector<ExprAttr, double> terms;
  double constant = 0;
  void add(const Linear &o, double scale) {
    for (auto &[a, c] : o.terms)
      terms[a] += scale * c;
    constant += scale * o.constant;
  }
};
} // namespace

static Linear linearize(ExprAttr e) {
  Linear l;
  ArrayRef<ExprAttr> a = e.getArgs();
  switch (e.getKind()) {
  case ExprKind::Const:
    l.constant = e.getConstValue();
    return l;
  case ExprKind::Add:
    l.add(linearize(a[0]), 1);
    l.add(linearize(a[1]), 1);
    return l;
  case ExprKind::Sub:
    l.add(linearize(a[0]), 1);
    l.add(linearize(a[1]), -1);
    return l;
  case ExprKind::Neg:
    l.add(linearize(a[0]), -1);
    return l;
  case ExprKind::Mul:
    if (a[0].getKind() == ExprKind::Const) {
      l.add(linearize(a[1]), a[0].getConstValue());
      return l;
    }
    if (a[1].getKind() == ExprKind::Const) {
      l.add(linearize(a[0]), a[1].getConstValue());
      return l;
    }
    break;
  case ExprKind::Div:
    if (a[1].getKind() == ExprKind::Const && a[1].getConstValue() != 0) {
      l.add(linearize(a[0]), 1 / a[1].getConstValue());
      return l;
    }
    break;
  default:
    break;
  }
  l.terms[e] = 1;
  return l;
}

static bool near(double a, double b) {
  return std::abs(a - b) <= 1e-12 * std::max(std::abs(a), std::abs(b));
}

//===----------------------------------------------------------------------===//
// Planning
//===----------------------------------------------------------------------===//

namespace {
class Planner {
public:
  Planner(GlobalCascade &gc, unsigned rank, OnlineMode mode, OnlinePlan &plan)
      : gc(gc), ctx(gc.getContext()), p(rank), mode(mode), plan(plan) {}

  LogicalResult run();
  std::optional<Refusal> why;

private:
  LogicalResult refuse(Location loc, const Twine &msg) {
    why = Refusal{loc, msg.str()};
    return failure();
  }
  bool inS(unsigned id) const { return plan.online.contains(id); }
  bool readsS(ExprAttr e) const {
    return loadsAny(e, [&](unsigned id) { return inS(id); });
  }
  /// Tiled Einsums whose value depends on S.
  bool dependsOnS(unsigned id);
  FailureOr<ExprAttr> inlineTerm(ExprAttr e, Location loc,
                                 SmallVectorImpl<unsigned> &guards);
  LogicalResult classifyGuard(ExprAttr c, Location loc,
                              SmallVectorImpl<unsigned> &guards);
  LogicalResult analyzeTerm(unsigned r);

  GlobalCascade &gc;
  MLIRContext *ctx;
  unsigned p;
  OnlineMode mode;
  OnlinePlan &plan;
  DenseMap<unsigned, bool> dependsMemo;
};
} // namespace

bool Planner::dependsOnS(unsigned id) {
  if (!gc.isEinsum(id))
    return false;
  if (inS(id))
    return true;
  if (auto it = dependsMemo.find(id); it != dependsMemo.end())
    return it->second;
  dependsMemo[id] = false;
  bool r = llvm::any_of(gc.operandsOf(id), [&](unsigned o) { return dependsOnS(o); });
  dependsMemo[id] = r;
  return r;
}

/// A guard is a condition that only says "the row is not empty":
/// `P > -inf` or `P <> -inf` for a max producer P (`P < inf` for a min).
/// Inside the loop it reads the running value; it is exact there because a
/// partial over elements P has not seen is zero (the stability condition).
LogicalResult Planner::classifyGuard(ExprAttr c, Location loc,
                                     SmallVectorImpl<unsigned> &guards) {
  auto isLoadOfS = [&](ExprAttr e) {
    return e.getKind() == ExprKind::Load && e.getInput() >= 0 &&
           inS(e.getInput()) && !usesRank(e, p);
  };
  ExprKind k = c.getKind();
  if (c.getArgs().size() == 2) {
    ExprAttr l = c.getArgs()[0], r = c.getArgs()[1];
    bool swapped = false;
    if (!isLoadOfS(l) && isLoadOfS(r)) {
      std::swap(l, r);
      swapped = true;
    }
    if (isLoadOfS(l) && r.getKind() == ExprKind::Const) {
      Reducer red = gc.einsum(l.getInput()).reducer;
      double v = r.getConstValue();
      if (swapped)
        k = k == ExprKind::Lt ? ExprKind::Gt : k == ExprKind::Gt ? ExprKind::Lt : k;
      bool ok = (red == Reducer::Max && v == -INFINITY &&
                 (k == ExprKind::Gt || k == ExprKind::Ne)) ||
                (red == Reducer::Min && v == INFINITY &&
                 (k == ExprKind::Lt || k == ExprKind::Ne));
      if (ok) {
        guards.push_back(l.getInput());
        return success();
      }
    }
  }
  return refuse(loc, "the condition '" + printExpr(gc, c) +
                         "' depends on a full reduction over " +
                         gc.rankName(p) +
                         " and is not an emptiness guard ('max > -inf'); "
                         "inside the loop only the running value is known");
}

FailureOr<ExprAttr> Planner::inlineTerm(ExprAttr e, Location loc,
                                        SmallVectorImpl<unsigned> &guards) {
  bool failed = false;
  ExprAttr result = mapExpr(e, [&](ExprAttr node, ArrayRef<ExprAttr> args) -> ExprAttr {
    if (failed || node.getKind() != ExprKind::Load || node.getInput() < 0)
      return nullptr;
    unsigned y = node.getInput();
    for (ExprAttr a : args)
      if (readsS(a) || (a.getKind() != ExprKind::Index && dependsOnS(y))) {
        failed = true;
        (void)refuse(loc, "'" + gc.valueName(y) +
                              "' is read through an index computed from a "
                              "full reduction, or gathered while it depends "
                              "on one");
        return nullptr;
      }
    if (!plan.tiled.contains(y) || !dependsOnS(y))
      return nullptr;
    const GEinsum &ye = gc.einsum(y);
    if (ye.reducer != Reducer::None) {
      failed = true;
      (void)refuse(ye.loc, "'" + ye.name +
                               "' reduces a rank and reads a full reduction "
                               "over " + gc.rankName(p) +
                               ": inline it into its reader first");
      return nullptr;
    }
    // Substitute the load's indices for y's output ranks.
    SmallVector<unsigned> yr = gc.valueRanks(y);
    auto subst = [&](AffineExpr a) {
      SmallVector<AffineExpr> dims, syms;
      for (unsigned g = 0; g < gc.numRanks(); ++g) {
        dims.push_back(gc.dim(g));
        syms.push_back(gc.sym(g));
      }
      for (auto [k, r] : llvm::enumerate(yr))
        dims[r] = args[k].getIndex();
      return a.replaceDimsAndSymbols(dims, syms);
    };
    FailureOr<ExprAttr> body = inlineTerm(mapAffine(ye.expr, subst), ye.loc, guards);
    if (mlir::failed(body)) {
      failed = true;
      return nullptr;
    }
    SmallVector<ExprAttr> conds, kept;
    if (ye.cond)
      splitConjuncts(mapAffine(ye.cond, subst), conds);
    for (ExprAttr c : conds) {
      if (!readsS(c)) {
        kept.push_back(c);
        continue;
      }
      if (mlir::failed(classifyGuard(c, ye.loc, guards))) {
        failed = true;
        return nullptr;
      }
    }
    if (kept.empty())
      return *body;
    return ExprAttr::getOp(ctx, ExprKind::Select,
                           {conjoin(ctx, kept), *body,
                            ExprAttr::getConst(ctx, ye.fill.value_or(0.0))});
  });
  if (failed)
    return failure();
  return result;
}

LogicalResult Planner::analyzeTerm(unsigned r) {
  const GEinsum &re = gc.einsum(r);
  Location loc = re.loc;
  SmallVector<unsigned> guards;
  FailureOr<ExprAttr> term = inlineTerm(re.expr, loc, guards);
  if (failed(term))
    return failure();
  // Indicators: the conditions free of S on the way (the Einsum's own and
  // those of inlined Einsums as select(c, x, 0)).
  SmallVector<ExprAttr> indicators;
  SmallVector<ExprAttr> ownConds;
  splitConjuncts(re.cond, ownConds);
  for (ExprAttr c : ownConds) {
    if (!readsS(c))
      indicators.push_back(c);
    else if (failed(classifyGuard(c, loc, guards)))
      return failure();
  }

  // Factors of the term.
  SmallVector<ExprAttr> factors;
  std::function<void(ExprAttr)> split = [&](ExprAttr e) {
    switch (e.getKind()) {
    case ExprKind::Mul:
    case ExprKind::Div:
      split(e.getArgs()[0]);
      split(e.getArgs()[1]);
      return;
    case ExprKind::Neg:
      split(e.getArgs()[0]);
      return;
    case ExprKind::Select:
      if (e.getArgs()[2].getKind() == ExprKind::Const &&
          e.getArgs()[2].getConstValue() == 0 && !readsS(e.getArgs()[0])) {
        SmallVector<ExprAttr> cs;
        splitConjuncts(e.getArgs()[0], cs);
        indicators.append(cs.begin(), cs.end());
        split(e.getArgs()[1]);
        return;
      }
      break;
    default:
      break;
    }
    factors.push_back(e);
  };
  split(*term);

  SmallVector<Correction> corrections;
  for (ExprAttr f : factors) {
    if (!readsS(f))
      continue;
    bool isExp = f.getKind() == ExprKind::Exp || f.getKind() == ExprKind::Exp2;
    if (!isExp)
      return refuse(loc, "in '" + re.name + "', the factor '" +
                             printExpr(gc, f) +
                             "' depends on a full reduction over " +
                             gc.rankName(p) +
                             " and is not an exponential of it: a partial "
                             "result cannot be rescaled when it changes "
                             "(no correction exists)");
    Linear lin = linearize(f.getArgs()[0]);
    Linear z;
    z.constant = lin.constant;
    SmallVector<Correction> here;
    for (auto &[atom, coef] : lin.terms) {
      if (!readsS(atom)) {
        z.terms[atom] += coef;
        continue;
      }
      bool isProducerLoad = atom.getKind() == ExprKind::Load &&
                            !usesRank(atom, p) &&
                            gc.einsum(atom.getInput()).reducer != Reducer::Sum;
      if (!isProducerLoad)
        return refuse(loc, "in '" + re.name + "', '" + printExpr(gc, atom) +
                               "' inside '" + printExpr(gc, f) + "' " +
                               (usesRank(atom, p)
                                    ? "mixes values over " + gc.rankName(p) +
                                          " with a full reduction"
                                    : std::string("is not a running max or min")) +
                               ": the exponent must be linear in the running "
                               "max (no correction exists)");
      Correction c;
      c.producer = atom.getInput();
      c.coef = coef;
      c.base2 = f.getKind() == ExprKind::Exp2;
      for (ExprAttr a : atom.getArgs())
        c.index.push_back(a.getIndex());
      here.push_back(c);
    }
    for (Correction &c : here) {
      const GEinsum &pe = gc.einsum(c.producer);
      bool isMax = pe.reducer == Reducer::Max;
      if (c.coef == 0)
        continue;
      if ((isMax && c.coef > 0) || (!isMax && c.coef < 0))
        return refuse(loc, "in '" + re.name + "', '" + printExpr(gc, f) +
                               "' grows with the running " +
                               (isMax ? "max" : "min") + " '" + pe.name +
                               "': its correction would overflow");
      if (llvm::any_of(corrections,
                       [&](const Correction &o) { return o.producer == c.producer; }))
        return refuse(loc, "in '" + re.name + "', '" + pe.name +
                               "' appears in two exponentials");
      // P's own term at the consumer's indices must appear in the exponent
      // with the opposite coefficient (exp(s - P) <= 1).
      if (readsS(pe.expr))
        return refuse(pe.loc, "'" + pe.name +
                                  "' is a max over values computed from "
                                  "another full reduction over " +
                                  gc.rankName(p));
      SmallVector<unsigned> pr = gc.valueRanks(c.producer);
      auto subst = [&](AffineExpr a) {
        SmallVector<AffineExpr> dims, syms;
        for (unsigned g = 0; g < gc.numRanks(); ++g) {
          dims.push_back(gc.dim(g));
          syms.push_back(gc.sym(g));
        }
        for (auto [k, rk] : llvm::enumerate(pr))
          dims[rk] = c.index[k];
        return a.replaceDimsAndSymbols(dims, syms);
      };
      Linear s = linearize(mapAffine(pe.expr, subst));
      Linear rest = z;
      for (auto &[atom, sc] : s.terms) {
        auto it = rest.terms.find(atom);
        if (it == rest.terms.end() || !near(it->second, -c.coef * sc))
          return refuse(loc, "in '" + re.name + "', the exponent of '" +
                                 printExpr(gc, f) + "' is not a multiple of '" +
                                 printExpr(gc, pe.expr) + " - " + pe.name +
                                 "': the terms would not be bounded by 1 and "
                                 "could overflow");
        it->second = 0;
      }
      for (auto &[atom, rc] : rest.terms)
        if (rc != 0 && usesRank(atom, p))
          return refuse(loc, "in '" + re.name + "', the exponent of '" +
                                 printExpr(gc, f) + "' has the term '" +
                                 printExpr(gc, atom) + "' over " +
                                 gc.rankName(p) + " beyond '" +
                                 printExpr(gc, pe.expr) + " - " + pe.name +
                                 "': it could overflow");
      // Elements that P excludes must be excluded here too.
      SmallVector<ExprAttr> pconds;
      if (pe.cond)
        splitConjuncts(mapAffine(pe.cond, subst), pconds);
      for (ExprAttr pc : pconds)
        if (!llvm::is_contained(indicators, pc))
          return refuse(loc, "'" + re.name + "' reduces elements that the " +
                                 "max '" + pe.name + "' excludes ('" +
                                 printExpr(gc, pc) + "')");
      corrections.push_back(c);
    }
  }
  for (unsigned gp : guards)
    if (!llvm::any_of(corrections,
                      [&](const Correction &c) { return c.producer == gp; }))
      return refuse(loc, "'" + re.name + "' is guarded by '" +
                             gc.valueName(gp) +
                             " > -inf' but does not decrease with it, so the "
                             "guard is not exact on partial results");
  // The reducer must admit the (nonnegative) corrections.
  if (!corrections.empty() && re.reducer == Reducer::Min)
    return refuse(loc, "'" + re.name + "' is a min of rescaled terms");
  plan.corrections[r] = corrections;
  for (const Correction &c : corrections)
    plan.producers.insert(c.producer);
  for (unsigned gp : guards)
    plan.producers.insert(gp);
  return success();
}

LogicalResult Planner::run() {
  plan.rank = p;
  std::string pn = gc.rankName(p).str();
  SmallVector<unsigned> reductions;
  for (unsigned id : gc.body()) {
    const GEinsum &e = gc.einsum(id);
    if (e.topk && e.topk->second == p)
      return refuse(e.loc, "'" + e.name + "' keeps the top " +
                               std::to_string(e.topk->first) + " along " + pn +
                               ", which compares every element with the whole "
                               "row: no online form exists");
    for (AffineExpr o : e.out)
      if (isa<AffineBinaryOpExpr>(o) && usesRank(o, p))
        return refuse(e.loc, "'" + e.name + "' already iterates along " + pn);
    if (reducesRank(gc, id, p))
      reductions.push_back(id);
  }
  if (reductions.empty())
    return refuse(gc.getCascade().getLoc(), "no reduction over " + pn);

  // The online set.
  for (unsigned r : reductions) {
    bool readInLoop = llvm::any_of(gc.body(), [&](unsigned x) {
      return x != r && iteratesRank(gc, x, p) &&
             llvm::is_contained(gc.operandsOf(x), r);
    });
    if (mode == OnlineMode::OnePass || readInLoop)
      plan.online.insert(r);
  }
  if (plan.online.empty())
    return refuse(gc.getCascade().getLoc(),
                  "no reduction over " + pn + " is read in full inside the "
                  "loop over " + pn + ": already at most 2-pass");

  // Tiled Einsums: the Einsums over p that members of S read.
  SmallVector<unsigned> work(plan.online.begin(), plan.online.end());
  while (!work.empty()) {
    unsigned x = work.pop_back_val();
    for (unsigned y : gc.operandsOf(x)) {
      if (!gc.isEinsum(y) || inS(y) || plan.tiled.contains(y))
        continue;
      if (!iteratesRank(gc, y, p)) {
        if (dependsOnS(y))
          return refuse(gc.einsum(x).loc,
                        "'" + gc.einsum(x).name + "' reads '" + gc.valueName(y) +
                            "', which is computed from a full reduction over " +
                            pn + " without iterating " + pn +
                            "; write it into its readers");
        continue;
      }
      if (reducesRank(gc, y, p))
        continue;
      plan.tiled.insert(y);
      work.push_back(y);
    }
  }

  // A p-indexed result of a full reduction has no 1-pass form.
  for (unsigned x : gc.body()) {
    if (inS(x) || plan.tiled.contains(x) || !iteratesRank(gc, x, p))
      continue;
    if (mode == OnlineMode::OnePass && dependsOnS(x))
      return refuse(gc.einsum(x).loc,
                    "'" + gc.einsum(x).name + "' is indexed by " + pn +
                        " and needs the final value of a reduction over " +
                        pn + ": no 1-pass form exists (the 2-pass form "
                        "computes it in its second pass)");
  }

  for (unsigned r : plan.online) {
    const GEinsum &re = gc.einsum(r);
    if (re.fill && *re.fill != reducerIdentity(re.reducer))
      return refuse(re.loc, "'" + re.name + "' has an else value; a partial "
                            "result over an empty tile must be the identity");
    if (re.topk)
      return refuse(re.loc, "'" + re.name + "' has a top-k action");
    if (failed(analyzeTerm(r)))
      return failure();
  }
  return success();
}

LogicalResult attn::planOnline(GlobalCascade &gc, unsigned rank,
                               OnlineMode mode, OnlinePlan &plan,
                               std::optional<Refusal> &why) {
  Planner planner(gc, rank, mode, plan);
  if (succeeded(planner.run()))
    return success();
  why = planner.why;
  return failure();
}

//===----------------------------------------------------------------------===//
// TiledRewriter
//===----------------------------------------------------------------------===//

AffineExpr TiledRewriter::tiled(AffineExpr e) const {
  return e.replace(gc.dim(plan.rank), gc.dim(outer) * tile + gc.dim(inner));
}

ExprAttr TiledRewriter::rewrite(ExprAttr e, bool inCond) {
  MLIRContext *ctx = gc.getContext();
  unsigned p = plan.rank;
  return mapExpr(e, [&](ExprAttr node, ArrayRef<ExprAttr> args) -> ExprAttr {
    if (node.getKind() == ExprKind::Index)
      return ExprAttr::getIndex(tiled(node.getIndex()));
    if (node.getKind() != ExprKind::Load || node.getInput() < 0)
      return nullptr;
    unsigned y = node.getInput();
    if (plan.tiled.contains(y)) {
      SmallVector<ExprAttr> idx;
      for (auto [k, r] : llvm::enumerate(gc.valueRanks(y))) {
        if (r != p) {
          idx.push_back(args[k]);
          continue;
        }
        if (args[k].getKind() != ExprKind::Index) {
          error = "'" + gc.valueName(y) + "' is gathered along " +
                  gc.rankName(p).str() + ", which is being tiled";
          idx.push_back(args[k]);
          continue;
        }
        AffineExpr a = args[k].getIndex();
        if (a == gc.dim(outer) * tile + gc.dim(inner)) {
          idx.push_back(ExprAttr::getIndex(gc.dim(outer)));
          idx.push_back(ExprAttr::getIndex(gc.dim(inner)));
        } else {
          idx.push_back(ExprAttr::getIndex(a.floorDiv(tile)));
          idx.push_back(ExprAttr::getIndex(a % tile));
        }
      }
      return ExprAttr::getLoad(ctx, tiledId.lookup(y), idx);
    }
    if (plan.online.contains(y))
      return onlineLoad(y, SmallVector<ExprAttr>(args.begin(), args.end()),
                        inCond);
    return nullptr;
  });
}

unsigned TiledRewriter::emitTiled(unsigned x, std::vector<unsigned> &order) {
  GEinsum g = gc.einsum(x);
  SmallVector<AffineExpr> out;
  for (AffineExpr o : g.out) {
    if (o == gc.dim(plan.rank)) {
      out.push_back(gc.dim(outer));
      out.push_back(gc.dim(inner));
    } else {
      out.push_back(o);
    }
  }
  g.out = out;
  g.expr = rewrite(g.expr, false);
  if (g.cond)
    g.cond = rewrite(g.cond, true);
  unsigned id = gc.add(std::move(g));
  order.push_back(id);
  tiledId[x] = id;
  return id;
}
