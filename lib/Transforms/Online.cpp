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

bool OnlinePlan::usesKey(ExprAttr e) const {
  return llvm::any_of(keyRanks, [&](unsigned k) { return usesRank(e, k); });
}
bool OnlinePlan::usesKey(AffineExpr e) const {
  return llvm::any_of(keyRanks, [&](unsigned k) { return usesRank(e, k); });
}

void attn::initKeyRank(GlobalCascade &gc, unsigned rank, OnlinePlan &plan) {
  plan.rank = plan.loop = rank;
  plan.partition.reset();
  plan.declared.reset();
  plan.keyRanks = {rank};
  CascadeOp cascade = gc.getCascade();
  for (auto part : cascade.getPartitions().getAsRange<PartitionAttr>()) {
    if (part.getRank().getValue() != gc.rankName(rank))
      continue;
    unsigned outer = *gc.rankId(part.getOuter().getValue());
    unsigned inner = *gc.rankId(part.getInner().getValue());
    plan.declared = ExistingPartition{outer, inner, part.getTile()};
    // Written over the partition: some reduction reduces its outer rank.
    if (llvm::none_of(gc.body(), [&](unsigned id) {
          return reducesRank(gc, id, outer);
        }))
      continue;
    plan.loop = outer;
    plan.partition = ExistingPartition{outer, inner, part.getTile()};
    plan.keyRanks = {rank, outer, inner};
  }
}

AffineExpr attn::substituteRanks(const GlobalCascade &gc, ArrayRef<unsigned> ranks,
                                 ArrayRef<AffineExpr> indices, AffineExpr e) {
  SmallVector<AffineExpr> dims, syms;
  for (unsigned g = 0; g < gc.numRanks(); ++g) {
    dims.push_back(gc.dim(g));
    syms.push_back(gc.sym(g));
  }
  for (auto [r, idx] : llvm::zip_equal(ranks, indices))
    dims[r] = idx;
  return e.replaceDimsAndSymbols(dims, syms);
}

ExprAttr attn::substituteRanks(const GlobalCascade &gc, ArrayRef<unsigned> ranks,
                               ArrayRef<AffineExpr> indices, ExprAttr e) {
  return mapAffine(e, [&](AffineExpr a) {
    return substituteRanks(gc, ranks, indices, a);
  });
}

ExprAttr attn::safeReference(ExprAttr v, Reducer r) {
  MLIRContext *ctx = v.getContext();
  ExprAttr empty = ExprAttr::getOp(
      ctx, ExprKind::Eq, {v, ExprAttr::getConst(ctx, reducerIdentity(r))});
  return ExprAttr::getOp(ctx, ExprKind::Select,
                         {empty, ExprAttr::getConst(ctx, 0.0), v});
}

ExprAttr attn::buildCorrection(const Correction &c, ExprAttr old, ExprAttr ref) {
  MLIRContext *ctx = old.getContext();
  ExprAttr diff = ExprAttr::getOp(ctx, ExprKind::Sub,
                                  c.coef < 0 ? ArrayRef<ExprAttr>{old, ref}
                                             : ArrayRef<ExprAttr>{ref, old});
  double scale = std::abs(c.coef);
  if (scale != 1)
    diff = ExprAttr::getOp(ctx, ExprKind::Mul,
                           {diff, ExprAttr::getConst(ctx, scale)});
  return ExprAttr::getOp(ctx, c.base2 ? ExprKind::Exp2 : ExprKind::Exp, {diff});
}

Type attn::accumulationType(Type t) {
  if (auto f = dyn_cast<FloatType>(t); f && f.getWidth() < 32)
    return Float32Type::get(t.getContext());
  return t;
}

SmallVector<std::string>
attn::emitCorrections(GlobalCascade &gc, const OnlinePlan &plan, unsigned producer,
                      ArrayRef<AffineExpr> out,
                      function_ref<ExprAttr(const Correction &)> build,
                      CorrectionIds &ids, function_ref<unsigned(GEinsum)> emit) {
  SmallVector<std::string> texts;
  const GEinsum &pe = gc.einsum(producer);
  for (unsigned r : plan.online)
    for (const Correction &c : plan.corrections.lookup(r)) {
      auto key = std::make_tuple(producer, c.coef, c.base2);
      if (c.producer != producer || ids.count(key))
        continue;
      std::string name = "c_" + pe.name;
      if (llvm::any_of(ids, [&](auto &kv) { return std::get<0>(kv.first) == producer; }))
        name += "_" + std::to_string(ids.size());
      GEinsum g{name, SmallVector<AffineExpr>(out.begin(), out.end()),
                build(c), nullptr, Reducer::None, {}, {}, {}, pe.elemType, {},
                pe.loc};
      texts.push_back(name + " = " + printExpr(gc, g.expr));
      ids[key] = emit(std::move(g));
    }
  return texts;
}

ExprAttr attn::rescale(const GlobalCascade &gc, const OnlinePlan &plan,
                       unsigned r, ExprAttr value, unsigned outer,
                       const CorrectionIds &ids) {
  MLIRContext *ctx = gc.getContext();
  for (const Correction &c : plan.corrections.lookup(r)) {
    SmallVector<ExprAttr> idx;
    for (AffineExpr a : c.index)
      idx.push_back(ExprAttr::getIndex(a));
    idx.push_back(ExprAttr::getIndex(gc.dim(outer)));
    unsigned cid = ids.at(std::make_tuple(c.producer, c.coef, c.base2));
    value = ExprAttr::getOp(ctx, ExprKind::Mul,
                            {value, ExprAttr::getLoad(ctx, cid, idx)});
  }
  return value;
}

ExprAttr attn::redirectLoads(ExprAttr e, const DenseMap<unsigned, unsigned> &to) {
  if (!e)
    return e;
  return mapExpr(e, [&](ExprAttr node, ArrayRef<ExprAttr> args) -> ExprAttr {
    if (node.getKind() == ExprKind::Load && node.getInput() >= 0)
      if (auto it = to.find(node.getInput()); it != to.end())
        return ExprAttr::getLoad(e.getContext(), it->second, args);
    return nullptr;
  });
}

void attn::emitBody(GlobalCascade &gc, const OnlinePlan &plan,
                    TiledRewriter &rewriter, std::vector<unsigned> &order,
                    const DenseMap<unsigned, unsigned> &finalId,
                    function_ref<void(unsigned)> emitOnline) {
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
    g.expr = redirectLoads(g.expr, finalId);
    g.cond = redirectLoads(g.cond, finalId);
    order.push_back(x);
  }
}

void attn::finishBody(GlobalCascade &gc, std::vector<unsigned> order,
                      const DenseMap<unsigned, unsigned> &finalId) {
  for (unsigned &y : gc.yields())
    if (auto it = finalId.find(y); it != finalId.end())
      y = it->second;
  gc.body() = std::move(order);
  gc.removeDeadEinsums();
}

/// The value of a constant: a float constant or an integer index (`0` in
/// `sd > 0`).
static std::optional<double> constValue(ExprAttr e) {
  if (e.getKind() == ExprKind::Const)
    return e.getConstValue();
  if (e.getKind() == ExprKind::Index)
    if (auto c = dyn_cast<AffineConstantExpr>(e.getIndex()))
      return (double)c.getValue();
  return std::nullopt;
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
  initKeyRank(gc, rank, plan);
  unsigned loop = plan.loop;
  // Values that are, or are computed from, a p-reduction.
  DenseMap<unsigned, bool> memo;
  std::function<bool(unsigned)> fromReduction = [&](unsigned id) -> bool {
    if (!gc.isEinsum(id))
      return false;
    if (auto it = memo.find(id); it != memo.end())
      return it->second;
    memo[id] = false;
    bool r = reducesRank(gc, id, loop) ||
             llvm::any_of(gc.operandsOf(id), fromReduction);
    memo[id] = r;
    return r;
  };

  std::vector<unsigned> body = gc.body();
  for (unsigned id : body) {
    GEinsum &g = gc.einsum(id);
    if (g.reducer != Reducer::Sum || !reducesRank(gc, id, loop) || g.fill)
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
    num.elemType = accumulationType(g.elemType);
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
  /// Iterates p (or a rank of its existing partition).
  bool iterates(unsigned id) const {
    return llvm::any_of(plan.keyRanks,
                        [&](unsigned k) { return iteratesRank(gc, id, k); });
  }
  /// A p-reduction.
  bool reduces(unsigned id) const { return reducesRank(gc, id, plan.loop); }
  bool readsS(ExprAttr e) const {
    return loadsAny(e, [&](unsigned id) {
      return inS(id) || plan.aliases.count(id);
    });
  }
  /// Finds the references of the producers (plan.aliases).
  void findAliases();
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

/// True if value `id` is in the online set of `plan` or depends on one of
/// its members, memoised in `memo`.
static bool dependsOnOnline(const GlobalCascade &gc, const OnlinePlan &plan,
                            unsigned id, DenseMap<unsigned, bool> &memo) {
  if (!gc.isEinsum(id))
    return false;
  if (plan.online.contains(id))
    return true;
  if (auto it = memo.find(id); it != memo.end())
    return it->second;
  memo[id] = false;
  bool r = llvm::any_of(gc.operandsOf(id), [&](unsigned o) {
    return dependsOnOnline(gc, plan, o, memo);
  });
  memo[id] = r;
  return r;
}

bool Planner::dependsOnS(unsigned id) {
  return dependsOnOnline(gc, plan, id, dependsMemo);
}

/// A guard is a condition that only says "the row is not empty":
/// `P > -inf` or `P <> -inf` for a max producer P (`P < inf` for a min).
/// Inside the loop it reads the running value; it is exact there because a
/// partial over elements P has not seen is zero (the stability condition).
LogicalResult Planner::classifyGuard(ExprAttr c, Location loc,
                                     SmallVectorImpl<unsigned> &guards) {
  auto isLoadOfS = [&](ExprAttr e) {
    return e.getKind() == ExprKind::Load && e.getInput() >= 0 &&
           inS(e.getInput()) && !plan.usesKey(e);
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
    // The reference of a producer reads as the producer (inside the loop,
    // expressions read the producer's reference anyway).
    if (auto it = plan.aliases.find(y); it != plan.aliases.end())
      return ExprAttr::getLoad(ctx, it->second, args);
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
    SmallVector<AffineExpr> at;
    for (ExprAttr a : args)
      at.push_back(a.getIndex());
    FailureOr<ExprAttr> body =
        inlineTerm(substituteRanks(gc, yr, at, ye.expr), ye.loc, guards);
    if (mlir::failed(body)) {
      failed = true;
      return nullptr;
    }
    SmallVector<ExprAttr> conds, kept;
    if (ye.cond)
      splitConjuncts(substituteRanks(gc, yr, at, ye.cond), conds);
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
  bool negated = false;
  std::function<void(ExprAttr)> split = [&](ExprAttr e) {
    switch (e.getKind()) {
    case ExprKind::Mul:
    case ExprKind::Div:
      split(e.getArgs()[0]);
      split(e.getArgs()[1]);
      return;
    case ExprKind::Neg:
      negated = true;
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
  bool positive = !negated && llvm::all_of(factors, [](ExprAttr f) {
    return f.getKind() == ExprKind::Exp || f.getKind() == ExprKind::Exp2 ||
           constValue(f) > 0.0;
  });

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
                            !plan.usesKey(atom) &&
                            gc.einsum(atom.getInput()).reducer != Reducer::Sum;
      if (!isProducerLoad)
        return refuse(loc, "in '" + re.name + "', '" + printExpr(gc, atom) +
                               "' inside '" + printExpr(gc, f) + "' " +
                               (plan.usesKey(atom)
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
      Linear s = linearize(substituteRanks(gc, pr, c.index, pe.expr));
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
        if (rc != 0 && plan.usesKey(atom))
          return refuse(loc, "in '" + re.name + "', the exponent of '" +
                                 printExpr(gc, f) + "' has the term '" +
                                 printExpr(gc, atom) + "' over " +
                                 gc.rankName(p) + " beyond '" +
                                 printExpr(gc, pe.expr) + " - " + pe.name +
                                 "': it could overflow");
      // Elements that P excludes must be excluded here too.
      SmallVector<ExprAttr> pconds;
      if (pe.cond)
        splitConjuncts(substituteRanks(gc, pr, c.index, pe.cond), pconds);
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
  plan.indicators[r] = indicators;
  if (positive)
    plan.positive.insert(r);
  for (const Correction &c : corrections)
    plan.producers.insert(c.producer);
  for (unsigned gp : guards)
    plan.producers.insert(gp);
  return success();
}

void Planner::findAliases() {
  for (unsigned x : gc.body()) {
    const GEinsum &xe = gc.einsum(x);
    if (xe.reducer != Reducer::None || xe.cond || xe.fill || xe.init ||
        xe.topk || iterates(x))
      continue;
    SmallVector<unsigned> ranks = gc.valueRanks(x);
    SmallVector<ExprAttr> at;
    for (unsigned r : ranks)
      at.push_back(ExprAttr::getIndex(gc.dim(r)));
    for (unsigned y : gc.operandsOf(x)) {
      if (!inS(y) || gc.einsum(y).reducer == Reducer::Sum ||
          gc.valueRanks(y) != ranks || gc.valueElemType(y) != xe.elemType)
        continue;
      if (xe.expr == safeReference(ExprAttr::getLoad(ctx, y, at),
                                   gc.einsum(y).reducer))
        plan.aliases[x] = y;
    }
  }
}

LogicalResult Planner::run() {
  initKeyRank(gc, p, plan);
  std::string pn = gc.rankName(p).str();
  SmallVector<unsigned> reductions;
  for (unsigned id : gc.body()) {
    const GEinsum &e = gc.einsum(id);
    if (e.topk && llvm::is_contained(plan.keyRanks, e.topk->second))
      return refuse(e.loc, "'" + e.name + "' keeps the top " +
                               std::to_string(e.topk->first) + " along " + pn +
                               ", which compares every element with the whole "
                               "row: no online form exists");
    for (AffineExpr o : e.out)
      if (isa<AffineBinaryOpExpr>(o) && plan.usesKey(o))
        return refuse(e.loc, "'" + e.name + "' already iterates along " + pn);
    if (plan.partition && reducesRank(gc, id, p))
      return refuse(e.loc, "'" + e.name + "' reduces " + pn +
                               " while other reductions are written over its "
                               "partition into " +
                               gc.rankName(plan.partition->outer) + ", " +
                               gc.rankName(plan.partition->inner));
    if (reduces(id))
      reductions.push_back(id);
  }
  if (reductions.empty())
    return refuse(gc.getCascade().getLoc(), "no reduction over " + pn);

  // The online set.
  for (unsigned r : reductions) {
    bool readInLoop = llvm::any_of(gc.body(), [&](unsigned x) {
      return x != r && iterates(x) &&
             llvm::is_contained(gc.operandsOf(x), r);
    });
    if (mode == OnlineMode::OnePass || readInLoop)
      plan.online.insert(r);
  }
  if (plan.online.empty())
    return refuse(gc.getCascade().getLoc(),
                  "no reduction over " + pn + " is read in full inside the "
                  "loop over " + pn + ": already at most 2-pass");
  findAliases();

  // Tiled Einsums: the Einsums over p that members of S read.
  SmallVector<unsigned> work(plan.online.begin(), plan.online.end());
  while (!work.empty()) {
    unsigned x = work.pop_back_val();
    for (unsigned y : gc.operandsOf(x)) {
      if (!gc.isEinsum(y) || inS(y) || plan.tiled.contains(y) ||
          plan.aliases.count(y))
        continue;
      if (!iterates(y)) {
        if (dependsOnS(y))
          return refuse(gc.einsum(x).loc,
                        "'" + gc.einsum(x).name + "' reads '" + gc.valueName(y) +
                            "', which is computed from a full reduction over " +
                            pn + " without iterating " + pn +
                            "; write it into its readers");
        continue;
      }
      if (reduces(y))
        continue;
      plan.tiled.insert(y);
      work.push_back(y);
    }
  }

  // A p-indexed result of a full reduction has no 1-pass form.
  for (unsigned x : gc.body()) {
    if (inS(x) || plan.tiled.contains(x) || !iterates(x))
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
    if (auto it = plan.aliases.find(y); it != plan.aliases.end()) {
      if (inCond)
        error = "'" + gc.valueName(y) + "', the reference of '" +
                gc.valueName(it->second) + "', is read in a condition";
      return onlineLoad(it->second,
                        SmallVector<ExprAttr>(args.begin(), args.end()), false);
    }
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

//===----------------------------------------------------------------------===//
// The (O, LSE) form of the results
//===----------------------------------------------------------------------===//

namespace {
class OutputClassifier {
public:
  OutputClassifier(GlobalCascade &gc, const OnlinePlan &plan)
      : gc(gc), ctx(gc.getContext()), plan(plan),
        pn(gc.rankName(plan.rank).str()) {}

  LogicalResult classify(unsigned v, NormalizedOutput &out);
  std::optional<Refusal> why;

private:
  LogicalResult refuse(Location loc, const Twine &msg) {
    why = Refusal{loc, msg.str()};
    return failure();
  }
  bool inS(unsigned id) const { return plan.online.contains(id); }
  bool readsS(ExprAttr e) const {
    return e && loadsAny(e, [&](unsigned id) { return inS(id); });
  }
  bool dependsOnS(unsigned id);
  /// `e` with the Einsums between it and S inlined (they must be plain
  /// maps: no reduction, no condition).
  FailureOr<ExprAttr> inlineEpilogue(ExprAttr e, Location loc);
  /// A load of a sum of S at affine indices: (value, indices).
  std::optional<std::pair<unsigned, SmallVector<AffineExpr>>>
  sumLoad(ExprAttr e) const;
  /// Corrections and indicators of S-member `id`, seen from a load at `at`.
  SmallVector<std::tuple<unsigned, double, bool, SmallVector<AffineExpr>>>
  correctionsAt(unsigned id, ArrayRef<AffineExpr> at);
  SmallVector<ExprAttr> indicatorsAt(unsigned id, ArrayRef<AffineExpr> at);
  static bool sameIndex(ArrayRef<AffineExpr> a, ArrayRef<AffineExpr> b) {
    return llvm::equal(a, b);
  }

  GlobalCascade &gc;
  MLIRContext *ctx;
  const OnlinePlan &plan;
  std::string pn;
  DenseMap<unsigned, bool> memo;
};
} // namespace

bool OutputClassifier::dependsOnS(unsigned id) {
  return dependsOnOnline(gc, plan, id, memo);
}

FailureOr<ExprAttr> OutputClassifier::inlineEpilogue(ExprAttr e, Location loc) {
  bool failed = false;
  ExprAttr result = mapExpr(e, [&](ExprAttr node, ArrayRef<ExprAttr> args) -> ExprAttr {
    if (failed || node.getKind() != ExprKind::Load || node.getInput() < 0)
      return nullptr;
    unsigned y = node.getInput();
    if (!dependsOnS(y))
      return nullptr;
    for (ExprAttr a : args)
      if (a.getKind() != ExprKind::Index) {
        failed = true;
        (void)refuse(loc, "'" + gc.valueName(y) + "' is gathered while it "
                          "depends on a reduction over " + pn);
        return nullptr;
      }
    if (inS(y))
      return nullptr;
    const GEinsum &ye = gc.einsum(y);
    if (ye.reducer != Reducer::None || ye.cond || ye.topk) {
      failed = true;
      (void)refuse(ye.loc, "'" + ye.name + "' combines reductions over " + pn +
                               " with a reduction or a condition of its own; "
                               "write it into its readers");
      return nullptr;
    }
    SmallVector<AffineExpr> at;
    for (ExprAttr a : args)
      at.push_back(a.getIndex());
    FailureOr<ExprAttr> body =
        inlineEpilogue(substituteRanks(gc, gc.valueRanks(y), at, ye.expr), ye.loc);
    if (mlir::failed(body)) {
      failed = true;
      return nullptr;
    }
    return *body;
  });
  if (failed)
    return failure();
  return result;
}

std::optional<std::pair<unsigned, SmallVector<AffineExpr>>>
OutputClassifier::sumLoad(ExprAttr e) const {
  if (e.getKind() != ExprKind::Load || e.getInput() < 0 || !inS(e.getInput()) ||
      gc.einsum(e.getInput()).reducer != Reducer::Sum)
    return std::nullopt;
  SmallVector<AffineExpr> at;
  for (ExprAttr a : e.getArgs()) {
    if (a.getKind() != ExprKind::Index)
      return std::nullopt;
    at.push_back(a.getIndex());
  }
  return std::make_pair(unsigned(e.getInput()), at);
}

SmallVector<std::tuple<unsigned, double, bool, SmallVector<AffineExpr>>>
OutputClassifier::correctionsAt(unsigned id, ArrayRef<AffineExpr> at) {
  SmallVector<std::tuple<unsigned, double, bool, SmallVector<AffineExpr>>> out;
  SmallVector<unsigned> ranks = gc.valueRanks(id);
  for (const Correction &c : plan.corrections.lookup(id)) {
    SmallVector<AffineExpr> idx;
    for (AffineExpr a : c.index)
      idx.push_back(substituteRanks(gc, ranks, at, a));
    out.push_back({c.producer, c.coef, c.base2, idx});
  }
  llvm::sort(out, [](const auto &a, const auto &b) {
    return std::get<0>(a) < std::get<0>(b);
  });
  return out;
}

SmallVector<ExprAttr> OutputClassifier::indicatorsAt(unsigned id,
                                                     ArrayRef<AffineExpr> at) {
  SmallVector<ExprAttr> out;
  for (ExprAttr c : plan.indicators.lookup(id))
    out.push_back(substituteRanks(gc, gc.valueRanks(id), at, c));
  return out;
}

LogicalResult OutputClassifier::classify(unsigned v, NormalizedOutput &out) {
  out = NormalizedOutput();
  out.value = v;
  if (!dependsOnS(v))
    return success();
  const GEinsum &ye = gc.einsum(v);
  Location loc = ye.loc;
  std::string name = "'" + ye.name + "'";
  std::string noForm =
      " (a result must be a ratio N / D of sums over " + pn +
      " rescaled by the same max, with D positive, or the log-sum-exp of "
      "such a D, as o_num / sd and gm + log(sd) are; merge=state merges the "
      "(max, sum) state instead)";
  if (inS(v))
    return refuse(loc, name + " is itself a reduction over " + pn +
                           ": it has no (O, LSE) form" + noForm);
  if (ye.reducer != Reducer::None || ye.topk)
    return refuse(loc, name + " reduces a rank after the reductions over " +
                           pn + ": it has no (O, LSE) form" + noForm);
  FailureOr<ExprAttr> x = inlineEpilogue(ye.expr, loc);
  if (failed(x))
    return failure();

  // Conditions: free of S, or the guard `D > 0`.
  std::optional<std::pair<unsigned, SmallVector<AffineExpr>>> guard;
  SmallVector<ExprAttr> conds;
  splitConjuncts(ye.cond, conds);
  for (ExprAttr c : conds) {
    FailureOr<ExprAttr> ci = inlineEpilogue(c, loc);
    if (failed(ci))
      return failure();
    if (!readsS(*ci)) {
      out.conds.push_back(*ci);
      continue;
    }
    ExprAttr l, r;
    bool ok = false;
    if (ci->getArgs().size() == 2) {
      l = ci->getArgs()[0];
      r = ci->getArgs()[1];
      ExprKind k = ci->getKind();
      if (constValue(r) == 0.0 && (k == ExprKind::Gt || k == ExprKind::Ne))
        ok = true;
      else if (constValue(l) == 0.0 && (k == ExprKind::Lt || k == ExprKind::Ne)) {
        std::swap(l, r);
        ok = true;
      }
    }
    auto d = ok ? sumLoad(l) : std::nullopt;
    if (!d || guard)
      return refuse(loc, "the condition '" + printExpr(gc, *ci) + "' of " +
                             name + " depends on the reductions over " + pn +
                             " and is not the guard 'D > 0' of its "
                             "denominator" + noForm);
    guard = d;
  }

  SmallVector<std::pair<ExprAttr, bool>> factors;
  flattenProduct(*x, false, factors);
  SmallVector<ExprAttr> nums, dens;
  for (auto [f, divisor] : factors)
    if (readsS(f))
      (divisor ? dens : nums).push_back(f);

  auto checkDen = [&](unsigned d) -> LogicalResult {
    if (!plan.positive.contains(d))
      return refuse(loc, "the denominator '" + gc.valueName(d) + "' of " +
                             name + " sums terms that are not known to be "
                             "positive: its logarithm is not a log-sum-exp" +
                             noForm);
    return success();
  };

  if (!dens.empty()) {
    // Ratio.
    auto d = dens.size() == 1 ? sumLoad(dens[0]) : std::nullopt;
    if (!d || nums.size() != 1)
      return refuse(loc, name + " divides by '" + printExpr(gc, dens[0]) +
                             "' but is not a ratio of one numerator and one "
                             "sum over " + pn + noForm);
    if (failed(checkDen(d->first)))
      return failure();
    auto denCorr = correctionsAt(d->first, d->second);
    SmallVector<ExprAttr> denInd = indicatorsAt(d->first, d->second);
    Linear lin = linearize(nums[0]);
    if (lin.constant != 0 || lin.terms.empty())
      return refuse(loc, "the numerator '" + printExpr(gc, nums[0]) + "' of " +
                             name + " is not linear in sums over " + pn +
                             noForm);
    for (auto &[atom, coef] : lin.terms) {
      auto n = sumLoad(atom);
      if (!n)
        return refuse(loc, "the numerator '" + printExpr(gc, nums[0]) + "' of " +
                               name + " has the term '" +
                               printExpr(gc, atom) + "', not a sum over " + pn +
                               noForm);
      if (correctionsAt(n->first, n->second) != denCorr)
        return refuse(loc, "in " + name + ", '" + gc.valueName(n->first) +
                               "' and '" + gc.valueName(d->first) +
                               "' are not rescaled by the same max: their "
                               "ratio depends on it" + noForm);
      SmallVector<ExprAttr> numInd = indicatorsAt(n->first, n->second);
      for (ExprAttr c : denInd)
        if (!llvm::is_contained(numInd, c))
          return refuse(loc, "in " + name + ", '" + gc.valueName(n->first) +
                                 "' sums elements that the denominator '" +
                                 gc.valueName(d->first) + "' excludes ('" +
                                 printExpr(gc, c) +
                                 "'): a part without denominator could "
                                 "still have a numerator" + noForm);
    }
    if (guard && (guard->first != d->first || guard->second != d->second))
      return refuse(loc, name + " is guarded by another denominator than '" +
                             gc.valueName(d->first) + "'" + noForm);
    out.kind = NormalizedOutput::Kind::Ratio;
    out.expr = *x;
    out.den = d->first;
    out.denIndex = d->second;
    out.guarded = guard.has_value();
    return success();
  }

  // LogSum: scale * (log D - sum_c a_c ln(base_c) P_c) + rest.
  Linear lin = linearize(*x);
  std::optional<std::pair<unsigned, SmallVector<AffineExpr>>> d;
  double scale = 0;
  SmallVector<std::tuple<unsigned, SmallVector<AffineExpr>, double>> producers;
  Linear rest;
  rest.constant = lin.constant;
  for (auto &[atom, coef] : lin.terms) {
    if (!readsS(atom)) {
      rest.terms[atom] += coef;
      continue;
    }
    if ((atom.getKind() == ExprKind::Log || atom.getKind() == ExprKind::Log2) &&
        !d) {
      d = sumLoad(atom.getArgs()[0]);
      if (d) {
        scale = atom.getKind() == ExprKind::Log ? coef : coef / std::log(2.0);
        continue;
      }
    }
    if (atom.getKind() == ExprKind::Load && atom.getInput() >= 0 &&
        inS(atom.getInput()) &&
        gc.einsum(atom.getInput()).reducer != Reducer::Sum) {
      SmallVector<AffineExpr> at;
      for (ExprAttr a : atom.getArgs())
        if (a.getKind() == ExprKind::Index)
          at.push_back(a.getIndex());
      if (at.size() == atom.getArgs().size()) {
        producers.push_back({unsigned(atom.getInput()), at, coef});
        continue;
      }
    }
    return refuse(loc, "in " + name + ", the term '" + printExpr(gc, atom) +
                           "' depends on the reductions over " + pn +
                           " and is neither the log of a denominator nor "
                           "its max" + noForm);
  }
  if (!d)
    return refuse(loc, name + " depends on the reductions over " + pn +
                           " but is neither a ratio N / D nor the log of a "
                           "denominator D" + noForm);
  if (failed(checkDen(d->first)))
    return failure();
  // Every correction exp(a * P) of D must appear as -a * ln(base) * P.
  auto expected = correctionsAt(d->first, d->second);
  for (auto &[producer, idx, coef] : producers) {
    auto it = llvm::find_if(expected, [&](const auto &c) {
      return std::get<0>(c) == producer && std::get<3>(c) == idx;
    });
    double want = it == expected.end()
                      ? 0
                      : -std::get<1>(*it) * scale *
                            (std::get<2>(*it) ? std::log(2.0) : 1.0);
    if (it == expected.end() || !near(coef, want))
      return refuse(loc, "in " + name + ", '" + gc.valueName(producer) +
                             "' does not appear as the max that '" +
                             gc.valueName(d->first) +
                             "' is relative to: it is not a log-sum-exp" +
                             noForm);
    expected.erase(it);
  }
  if (!expected.empty())
    return refuse(loc, "in " + name + ", '" + gc.valueName(d->first) +
                           "' is relative to the max '" +
                           gc.valueName(std::get<0>(expected.front())) +
                           "', which does not appear beside its log: it is "
                           "not a log-sum-exp" + noForm);
  if (guard && (guard->first != d->first || guard->second != d->second))
    return refuse(loc, name + " is guarded by another denominator than '" +
                           gc.valueName(d->first) + "'" + noForm);
  out.kind = NormalizedOutput::Kind::LogSum;
  out.den = d->first;
  out.denIndex = d->second;
  out.scale = scale;
  out.guarded = guard.has_value();
  // The rest, rebuilt.
  ExprAttr r;
  for (auto &[atom, coef] : rest.terms) {
    if (coef == 0)
      continue;
    ExprAttr t = coef == 1 ? atom
                           : ExprAttr::getOp(ctx, ExprKind::Mul,
                                             {atom, ExprAttr::getConst(ctx, coef)});
    r = r ? ExprAttr::getOp(ctx, ExprKind::Add, {r, t}) : t;
  }
  if (rest.constant != 0) {
    ExprAttr c = ExprAttr::getConst(ctx, rest.constant);
    r = r ? ExprAttr::getOp(ctx, ExprKind::Add, {r, c}) : c;
  }
  out.rest = r;
  return success();
}

LogicalResult attn::classifyOutputs(GlobalCascade &gc, const OnlinePlan &plan,
                                    ArrayRef<unsigned> values,
                                    SmallVectorImpl<NormalizedOutput> &out,
                                    std::optional<Refusal> &why) {
  OutputClassifier classifier(gc, plan);
  for (unsigned v : values) {
    NormalizedOutput o;
    if (failed(classifier.classify(v, o))) {
      why = classifier.why;
      return failure();
    }
    out.push_back(std::move(o));
  }
  return success();
}

//===----------------------------------------------------------------------===//
// Several key ranks
//===----------------------------------------------------------------------===//

namespace {
class KeyRankSplitter {
public:
  KeyRankSplitter(GlobalCascade &gc, ArrayRef<unsigned> keys)
      : gc(gc), ctx(gc.getContext()), keys(keys.begin(), keys.end()) {}

  LogicalResult check();
  LogicalResult restrict(unsigned r, Restriction &out);
  std::optional<Refusal> why;

private:
  LogicalResult refuse(Location loc, const Twine &msg) {
    why = Refusal{loc, msg.str()};
    return failure();
  }
  std::string keyList() const {
    std::string s;
    for (unsigned k : keys)
      s += (s.empty() ? "" : ", ") + gc.rankName(k).str();
    return s;
  }
  /// The operands of a chain of `kind` (a + b + c, max(max(a, b), c)).
  static void flattenChain(ExprAttr e, ExprKind kind,
                           SmallVectorImpl<ExprAttr> &out) {
    if (e.getKind() == kind) {
      for (ExprAttr a : e.getArgs())
        flattenChain(a, kind, out);
      return;
    }
    out.push_back(e);
  }
  bool isPartLoad(ExprAttr e) const {
    return e.getKind() == ExprKind::Load && e.getInput() >= 0 &&
           partRank.count(e.getInput());
  }
  /// If `e` combines counterparts over every key rank, its parts by rank.
  FailureOr<std::optional<DenseMap<unsigned, ExprAttr>>>
  unionParts(ExprAttr e, Location loc);
  LogicalResult checkExpr(ExprAttr e, const GEinsum &in);
  ExprAttr restrictExpr(ExprAttr e, unsigned r,
                        const DenseMap<unsigned, unsigned> &map);

  GlobalCascade &gc;
  MLIRContext *ctx;
  SmallVector<unsigned> keys;
  /// The reductions over one key rank, and that rank.
  DenseMap<unsigned, unsigned> partRank;
};
} // namespace

FailureOr<std::optional<DenseMap<unsigned, ExprAttr>>>
KeyRankSplitter::unionParts(ExprAttr e, Location loc) {
  ExprKind k = e.getKind();
  if (k != ExprKind::Add && k != ExprKind::Max && k != ExprKind::Min)
    return std::optional<DenseMap<unsigned, ExprAttr>>();
  SmallVector<ExprAttr> ops;
  flattenChain(e, k, ops);
  if (llvm::none_of(ops, [&](ExprAttr o) { return isPartLoad(o); }))
    return std::optional<DenseMap<unsigned, ExprAttr>>();
  Reducer want = k == ExprKind::Add   ? Reducer::Sum
                 : k == ExprKind::Max ? Reducer::Max
                                      : Reducer::Min;
  DenseMap<unsigned, ExprAttr> parts;
  std::string what = "'" + printExpr(gc, e) + "'";
  for (ExprAttr o : ops) {
    if (!isPartLoad(o))
      return refuse(loc, what + " combines a reduction over one key rank with '" +
                             printExpr(gc, o) + "': with several key ranks (" +
                             keyList() + "), a combination must hold exactly "
                             "one counterpart over each");
    const GEinsum &oe = gc.einsum(o.getInput());
    if (oe.reducer != want)
      return refuse(loc, what + " combines '" + oe.name + "' with " +
                             (k == ExprKind::Add ? "+" : k == ExprKind::Max ? "max" : "min") +
                             ", which is not its reducer");
    unsigned r = partRank.lookup(o.getInput());
    if (parts.count(r))
      return refuse(loc, what + " combines two reductions over " +
                             gc.rankName(r));
    parts[r] = o;
  }
  if (parts.size() != keys.size())
    return refuse(loc, what + " does not combine a counterpart over every key "
                              "rank (" + keyList() + ")");
  ExprAttr first = parts[keys.front()];
  for (unsigned r : keys) {
    ExprAttr o = parts[r];
    if (gc.valueRanks(o.getInput()) != gc.valueRanks(first.getInput()) ||
        o.getArgs() != first.getArgs())
      return refuse(loc, what + " combines values of different shapes or "
                                "at different indices");
  }
  return std::optional<DenseMap<unsigned, ExprAttr>>(std::move(parts));
}

LogicalResult KeyRankSplitter::checkExpr(ExprAttr e, const GEinsum &in) {
  if (!e)
    return success();
  auto parts = unionParts(e, in.loc);
  if (failed(parts))
    return failure();
  if (*parts)
    return success();
  if (isPartLoad(e))
    return refuse(in.loc, "'" + in.name + "' reads '" +
                              gc.valueName(e.getInput()) +
                              "', a reduction over " +
                              gc.rankName(partRank.lookup(e.getInput())) +
                              " alone: with several key ranks (" + keyList() +
                              "), it must be combined with its counterparts "
                              "over the others (max(gmp, gms), sdp + sds)");
  for (ExprAttr a : e.getArgs())
    if (failed(checkExpr(a, in)))
      return failure();
  return success();
}

LogicalResult KeyRankSplitter::check() {
  if (keys.size() < 2)
    return refuse(gc.getCascade().getLoc(), "fewer than two key ranks");
  for (unsigned id : gc.body()) {
    const GEinsum &e = gc.einsum(id);
    SmallVector<unsigned> iterated;
    for (unsigned k : keys)
      if (iteratesRank(gc, id, k))
        iterated.push_back(k);
    if (iterated.size() > 1)
      return refuse(e.loc, "'" + e.name + "' iterates both " +
                               gc.rankName(iterated[0]) + " and " +
                               gc.rankName(iterated[1]));
    if (e.topk && llvm::is_contained(keys, e.topk->second))
      return refuse(e.loc, "'" + e.name + "' keeps the top " +
                               std::to_string(e.topk->first) + " along " +
                               gc.rankName(e.topk->second) +
                               ": no online form exists");
    if (iterated.size() == 1 && reducesRank(gc, id, iterated[0]))
      partRank[id] = iterated[0];
  }
  for (unsigned k : keys)
    if (llvm::none_of(partRank, [&](auto &kv) { return kv.second == k; }))
      return refuse(gc.getCascade().getLoc(),
                    "no reduction over " + gc.rankName(k));
  for (unsigned id : gc.body()) {
    const GEinsum &e = gc.einsum(id);
    if (failed(checkExpr(e.expr, e)) || failed(checkExpr(e.cond, e)))
      return failure();
  }
  for (unsigned y : gc.yields())
    if (partRank.count(y))
      return refuse(gc.einsum(y).loc,
                    "the result '" + gc.valueName(y) + "' is a reduction over " +
                        gc.rankName(partRank.lookup(y)) + " alone");
  return success();
}

ExprAttr KeyRankSplitter::restrictExpr(ExprAttr e, unsigned r,
                                       const DenseMap<unsigned, unsigned> &map) {
  if (!e)
    return e;
  auto parts = unionParts(e, gc.getCascade().getLoc());
  if (succeeded(parts) && *parts)
    e = (**parts)[r];
  if (e.getKind() == ExprKind::Load && e.getInput() >= 0) {
    SmallVector<ExprAttr> args;
    for (ExprAttr a : e.getArgs())
      args.push_back(restrictExpr(a, r, map));
    auto it = map.find(e.getInput());
    return ExprAttr::getLoad(ctx, it == map.end() ? e.getInput() : it->second,
                             args);
  }
  SmallVector<ExprAttr> args;
  for (ExprAttr a : e.getArgs())
    args.push_back(restrictExpr(a, r, map));
  return withArgs(e, args);
}

LogicalResult KeyRankSplitter::restrict(unsigned r, Restriction &out) {
  out.rank = r;
  DenseMap<unsigned, unsigned> map;
  DenseSet<unsigned> excluded;
  std::string suffix = "_" + gc.rankName(r).str();
  for (unsigned x : gc.body()) {
    const GEinsum &xe = gc.einsum(x);
    bool other = llvm::any_of(keys, [&](unsigned k) {
      return k != r && iteratesRank(gc, x, k);
    });
    ExprAttr expr = restrictExpr(xe.expr, r, map);
    ExprAttr cond = restrictExpr(xe.cond, r, map);
    auto readsExcluded = [&](ExprAttr e) {
      return e && loadsAny(e, [&](unsigned id) { return excluded.contains(id); });
    };
    if (other || readsExcluded(expr) || readsExcluded(cond)) {
      excluded.insert(x);
      continue;
    }
    if (expr == xe.expr && cond == xe.cond) {
      out.body.push_back(x);
      continue;
    }
    // A copy that only reads another value of the same shape is that value.
    SmallVector<unsigned> ranks = gc.valueRanks(x);
    if (expr.getKind() == ExprKind::Load && expr.getInput() >= 0 && !cond &&
        xe.reducer == Reducer::None && !xe.fill && !xe.init && !xe.topk &&
        gc.valueRanks(expr.getInput()) == ranks &&
        gc.valueElemType(expr.getInput()) == xe.elemType &&
        llvm::all_of(xe.out, [](AffineExpr o) { return isa<AffineDimExpr>(o); }) &&
        llvm::all_of(llvm::zip_equal(expr.getArgs(), ranks), [&](auto pair) {
          auto [a, rk] = pair;
          return a.getKind() == ExprKind::Index && a.getIndex() == gc.dim(rk);
        })) {
      map[x] = expr.getInput();
      continue;
    }
    GEinsum copy = xe;
    copy.name = xe.name + suffix;
    copy.expr = expr;
    copy.cond = cond;
    unsigned id = gc.add(std::move(copy));
    map[x] = id;
    out.body.push_back(id);
  }
  for (unsigned y : gc.yields()) {
    if (excluded.contains(y))
      return refuse(gc.einsum(y).loc,
                    "the result '" + gc.valueName(y) +
                        "' needs the keys of another rank than " +
                        gc.rankName(r) + " outside a combination");
    auto it = map.find(y);
    out.yields.push_back(it == map.end() ? y : it->second);
  }
  // Drop what the results do not need.
  DenseSet<unsigned> live(out.yields.begin(), out.yields.end());
  for (unsigned id : llvm::reverse(out.body))
    if (live.contains(id))
      for (unsigned op : gc.operandsOf(id))
        live.insert(op);
  llvm::erase_if(out.body, [&](unsigned id) { return !live.contains(id); });
  return success();
}

LogicalResult attn::restrictToKeyRanks(GlobalCascade &gc, ArrayRef<unsigned> keyRanks,
                                       SmallVectorImpl<Restriction> &out,
                                       std::optional<Refusal> &why) {
  KeyRankSplitter splitter(gc, keyRanks);
  if (failed(splitter.check())) {
    why = splitter.why;
    return failure();
  }
  for (unsigned r : keyRanks) {
    Restriction restriction;
    if (failed(splitter.restrict(r, restriction))) {
      why = splitter.why;
      return failure();
    }
    out.push_back(std::move(restriction));
  }
  return success();
}
