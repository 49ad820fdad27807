//===- Reassociate.cpp - attn-reassociate ----------------------------------===//
//
// This file implements the rewrites that the rank annotations
// (#attn.lowrank, docs/dialect.md) permit: a low-rank additive bias folded
// into the score contraction by concatenation (FlashBias), linear attention
// reassociated to phi(Q) (phi(K)^T V) or computed in causal chunks, and the
// latent projection of MLA absorbed into the query or the output. Every
// rewrite is exact in real arithmetic; docs/reassociate.md states each one.
//
// Algorithm:
//   1. Collect the annotated Einsums of a cascade in program order.
//   2. For each, build the rewritten cascade (a *candidate*) from the
//      current one, in rank-global form (GlobalCascade):
//      * bias B = sum_r U W: the contraction S = sum_e A B it is added to
//        becomes one contraction over a new rank `er` (|e| + |r|) of the
//        concatenations [A, U] and [B, W]; B is never formed;
//      * feature_map on the operands of a score a = sum_e phi(Q) phi(K):
//        without a mask, every reader R = sum_p a * G becomes
//        sum_e phi(Q) * (sum_p phi(K) * G); with the mask `p <= m`, the
//        chunked causal form (state across chunks, quadratic within);
//      * latent L = sum_r C W: every reader R = sum_s L * Z becomes
//        sum_r C * (sum_s W * Z) (the projection absorbed into the other
//        operand of R).
//      A rewrite that cannot apply leaves the cascade unchanged and emits a
//      remark at the annotated Einsum.
//   3. Keep the candidate if its FLOPs (attn-analyze's CostAnalysis, rank
//      sizes from `sizes`, others 4096) are lower, or always with
//      `always`; a remark gives both costs either way.
//
//===----------------------------------------------------------------------===//

#include "attn/Analysis.h"
#include "attn/Passes.h"
#include "attn/Transforms/Online.h"
#include "attn/Transforms/Products.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/Format.h"

#include <algorithm>
#include <set>

namespace mlir::attn {
#define GEN_PASS_DEF_ATTNREASSOCIATEPASS
#include "passes/Passes.h.inc"

namespace {

//===----------------------------------------------------------------------===//
// Products and ranks
//===----------------------------------------------------------------------===//

SmallVector<Factor> factorsOf(ExprAttr e) {
  SmallVector<Factor> out;
  flattenProduct(e, false, out);
  return out;
}

std::set<unsigned> ranksUsed(ArrayRef<Factor> factors) {
  std::set<unsigned> out;
  for (const Factor &f : factors) {
    std::set<unsigned> r = ranksUsed(f.e);
    out.insert(r.begin(), r.end());
  }
  return out;
}

bool usesAny(ExprAttr e, const std::set<unsigned> &ranks) {
  for (unsigned g : ranksUsed(e))
    if (ranks.count(g))
      return true;
  return false;
}

/// True if `e` loads value `id`.
bool loads(ExprAttr e, unsigned id) {
  bool found = false;
  if (e)
    walkExpr(e, [&](ExprAttr n) {
      if (n.getKind() == ExprKind::Load && n.getInput() == (int64_t)id)
        found = true;
    });
  return found;
}

/// The Einsums of the body that load `id`, in program order.
SmallVector<unsigned> readersOf(GlobalCascade &gc, unsigned id) {
  SmallVector<unsigned> out;
  for (unsigned x : gc.body())
    if (loads(gc.einsum(x).expr, id) || loads(gc.einsum(x).cond, id))
      out.push_back(x);
  return out;
}

/// The affine indices of a load, or failure for a gather.
FailureOr<SmallVector<AffineExpr>> affineIndices(ExprAttr load) {
  SmallVector<AffineExpr> out;
  for (ExprAttr ix : load.getArgs()) {
    if (ix.getKind() != ExprKind::Index)
      return failure();
    out.push_back(ix.getIndex());
  }
  return out;
}

/// A plain sum of products: a sum reduction (or none), not iterative, no
/// top-k.
bool isPlainSum(const GEinsum &g) {
  return (g.reducer == Reducer::Sum || g.reducer == Reducer::None) &&
         !g.topk && !isIterative(g);
}

std::string rankList(const GlobalCascade &gc, const std::set<unsigned> &ranks) {
  SmallVector<std::string> names;
  for (unsigned r : ranks)
    names.push_back(gc.rankName(r).str());
  return llvm::join(names, ", ");
}

GEinsum makeEinsum(std::string name, SmallVector<AffineExpr> out, ExprAttr expr,
                   ExprAttr cond, Reducer reducer, Type type, Location loc) {
  return GEinsum{std::move(name), std::move(out), expr, cond, reducer,
                 {}, {}, {}, type, {}, loc};
}

/// Inserts `id` into the body right before `before`.
void insertBefore(GlobalCascade &gc, unsigned before, unsigned id) {
  auto &body = gc.body();
  body.insert(llvm::find(body, before), id);
}

SmallVector<unsigned> sorted(const std::set<unsigned> &s) {
  return SmallVector<unsigned>(s.begin(), s.end());
}

/// Refusals carry the location of the Einsum at fault.
struct Refused {
  Location loc;
  std::string message;
};
using Result = std::optional<Refused>;

//===----------------------------------------------------------------------===//
// Reassociation of a contraction into its reader (feature maps, latents)
//===----------------------------------------------------------------------===//

/// R[o] = sum_s F * I[x],  I[x] = sum_t G   (I loaded once, as a factor)
///   =>  T[u] = sum_s (factors of F * G that use s),
///       R[o] = sum_t T[u] * (the other factors)
/// where u is what those factors use besides s. Conditions of R over s move
/// to T. Returns the new Einsum T.
FailureOr<unsigned> reassociateInto(GlobalCascade &gc, unsigned inner,
                                    unsigned reader, Result &why) {
  MLIRContext *ctx = gc.getContext();
  const GEinsum &in = gc.einsum(inner);
  GEinsum &r = gc.einsum(reader);
  auto refuse = [&](const Twine &msg) {
    why = Refused{r.loc, msg.str()};
    return failure();
  };
  if (!isPlainSum(in) || in.cond)
    return refuse("'" + in.name + "' is not a plain sum of products (it has a "
                  "condition, a top-k, a max or min, or is iterative)");
  if (r.reducer != Reducer::Sum || r.topk || isIterative(r))
    return refuse("'" + r.name + "' reads '" + in.name +
                  "' but is not a sum over ranks");
  std::set<unsigned> inner_t = reducedRanks(gc, inner);
  std::set<unsigned> s = reducedRanks(gc, reader);
  if (loads(r.cond, inner))
    return refuse("the condition of '" + r.name + "' reads '" + in.name + "'");

  // R's factors, with the one load of I replaced by I's factors.
  SmallVector<Factor> factors;
  int found = 0;
  for (const Factor &f : factorsOf(r.expr)) {
    if (!loads(f.e, inner)) {
      factors.push_back(f);
      continue;
    }
    if (f.inverse || f.e.getKind() != ExprKind::Load || ++found > 1)
      return refuse("'" + r.name + "' does not read '" + in.name +
                    "' as a single factor of a product");
    auto idx = affineIndices(f.e);
    if (failed(idx))
      return refuse("'" + r.name + "' gathers from '" + in.name + "'");
    ExprAttr body = substituteRanks(gc, gc.valueRanks(inner), *idx, in.expr);
    for (const Factor &g : factorsOf(body))
      factors.push_back(g);
  }
  if (found != 1)
    return refuse("'" + r.name + "' does not read '" + in.name +
                  "' as a single factor of a product");
  std::set<unsigned> usedByR = ranksUsed(r.expr), condRanks = ranksUsed(r.cond);
  usedByR.insert(condRanks.begin(), condRanks.end());
  for (unsigned g : gc.valueRanks(reader))
    usedByR.insert(g);
  for (unsigned t : inner_t)
    if (usedByR.count(t))
      return refuse("'" + r.name + "' already uses rank '" + gc.rankName(t) +
                    "', which '" + in.name + "' reduces");

  // Split the factors: those over s (and constants) go into T.
  SmallVector<Factor> first, rest;
  for (const Factor &f : factors)
    (f.e.getKind() == ExprKind::Const || usesAny(f.e, s) ? first : rest)
        .push_back(f);
  if (llvm::all_of(first, [](const Factor &f) {
        return f.e.getKind() == ExprKind::Const;
      }) || rest.empty())
    return refuse("in '" + r.name + "', every factor uses " +
                  (rest.empty() ? "the reduced rank(s) " + rankList(gc, s)
                                : "none of " + rankList(gc, s)) +
                  ": nothing to reassociate");
  SmallVector<ExprAttr> conds, innerConds, outerConds;
  splitConjuncts(r.cond, conds);
  for (ExprAttr c : conds)
    (usesAny(c, s) ? innerConds : outerConds).push_back(c);
  if (!innerConds.empty() && r.fill)
    return refuse("'" + r.name + "' has an else value and a condition over " +
                  rankList(gc, s));

  std::set<unsigned> u = ranksUsed(first);
  for (ExprAttr c : innerConds) {
    std::set<unsigned> cr = ranksUsed(c);
    u.insert(cr.begin(), cr.end());
  }
  for (unsigned g : s)
    u.erase(g);
  SmallVector<unsigned> uRanks = sorted(u);
  std::string suffix = rankList(gc, inner_t);
  suffix.erase(std::remove(suffix.begin(), suffix.end(), ' '), suffix.end());
  std::replace(suffix.begin(), suffix.end(), ',', '_');
  GEinsum t = makeEinsum(r.name + "_" + suffix, gc.dims(uRanks),
                         buildProduct(ctx, first), conjoin(ctx, innerConds),
                         Reducer::Sum, r.elemType, r.loc);
  unsigned tId = gc.add(std::move(t));
  GEinsum &r2 = gc.einsum(reader);
  // The rest first, then T: phi(Q) (phi(K)^T V) reads left to right.
  auto firstInverse = llvm::find_if(rest, [](const Factor &f) { return f.inverse; });
  rest.insert(firstInverse,
              Factor{ExprAttr::getLoad(ctx, tId, gc.indices(uRanks)), false});
  r2.expr = buildProduct(ctx, rest);
  r2.cond = conjoin(ctx, outerConds);
  std::set<unsigned> left = reducedRanks(gc, reader);
  r2.reducer = left.empty() ? Reducer::None : Reducer::Sum;
  insertBefore(gc, reader, tId);
  return tId;
}

/// Linear attention without a mask, and MLA: reassociates `inner` into every
/// Einsum that reads it.
Result reassociateAll(GlobalCascade &gc, unsigned inner, std::string &what) {
  if (llvm::is_contained(gc.yields(), inner))
    return Refused{gc.einsum(inner).loc,
                   "'" + gc.einsum(inner).name + "' is a result of the cascade"};
  SmallVector<unsigned> readers = readersOf(gc, inner);
  SmallVector<std::string> made;
  for (unsigned x : readers) {
    Result why;
    auto t = reassociateInto(gc, inner, x, why);
    if (failed(t))
      return why;
    made.push_back(gc.einsum(*t).name + " = " + printExpr(gc, gc.einsum(*t).expr));
  }
  if (readers.empty())
    return Refused{gc.einsum(inner).loc,
                   "'" + gc.einsum(inner).name + "' has no reader"};
  gc.removeDeadEinsums();
  what = llvm::join(made, "; ");
  return std::nullopt;
}

//===----------------------------------------------------------------------===//
// Causal linear attention in chunks
//===----------------------------------------------------------------------===//

/// a[m, p] = sum_e X[m, e] Y[p, e] if (p <= m), R[m, ..] = sum_p a G[p, ..]:
///   R_chunk[.., m1]   = sum_m0 Y G at key m1*C + m0 if (m1*C + m0 < |p|)
///   R_state[.., m1+1] = R_state[.., m1] + R_chunk[.., m1]      (init 0)
///   R_inter[m, ..]    = sum_e X[m, e] R_state[.., e, m floordiv C]
///   a_intra[m, m0]    = sum_e X Y at key j = (m floordiv C)*C + m0
///                         if (m0 <= m mod C and j < |p|)
///   R_intra[m, ..]    = sum_m0 a_intra G at key j (same condition)
///   R                 = R_inter + R_intra
/// with m partitioned into chunks m -> m1, m0 = C.
Result chunkCausal(GlobalCascade &gc, unsigned a, int64_t chunk,
                   std::string &what) {
  MLIRContext *ctx = gc.getContext();
  const GEinsum ae = gc.einsum(a);
  auto refuse = [&](Location loc, const Twine &msg) -> Result {
    return Refused{loc, msg.str()};
  };
  if (!isPlainSum(ae) || ae.fill)
    return refuse(ae.loc, "the causal score '" + ae.name +
                              "' is not a plain sum of products");
  // The mask: exactly `p <= m` (or `m >= p`), p and m output ranks.
  SmallVector<ExprAttr> conds;
  splitConjuncts(ae.cond, conds);
  std::optional<unsigned> p, m;
  if (conds.size() == 1) {
    ExprAttr c = conds[0];
    bool le = c.getKind() == ExprKind::Le, ge = c.getKind() == ExprKind::Ge;
    if ((le || ge) && c.getArgs()[0].getKind() == ExprKind::Index &&
        c.getArgs()[1].getKind() == ExprKind::Index) {
      auto l = dyn_cast<AffineDimExpr>(c.getArgs()[0].getIndex());
      auto rr = dyn_cast<AffineDimExpr>(c.getArgs()[1].getIndex());
      if (l && rr) {
        p = le ? l.getPosition() : rr.getPosition();
        m = le ? rr.getPosition() : l.getPosition();
      }
    }
  }
  SmallVector<unsigned> aRanks = gc.valueRanks(a);
  if (!p || !m || !llvm::is_contained(aRanks, *p) ||
      !llvm::is_contained(aRanks, *m))
    return refuse(ae.loc,
                  "the mask of '" + ae.name + "' is not the causal mask "
                  "'key <= query' between two of its ranks; only that mask "
                  "has a chunked form here");
  if (llvm::is_contained(gc.yields(), a))
    return refuse(ae.loc, "'" + ae.name + "' is a result of the cascade");
  SmallVector<Factor> x, y;
  for (const Factor &f : factorsOf(ae.expr)) {
    bool usesP = usesRank(f.e, *p), usesM = usesRank(f.e, *m);
    if (usesP && usesM)
      return refuse(ae.loc, "in '" + ae.name + "', the factor '" +
                                printExpr(gc, f.e) + "' uses both " +
                                gc.rankName(*m) + " and " + gc.rankName(*p));
    (usesP ? y : x).push_back(f);
  }
  std::set<unsigned> e = reducedRanks(gc, a);

  // The readers: R = sum_p a * G, G free of m.
  struct Reader {
    unsigned id;
    SmallVector<Factor> g;
  };
  SmallVector<Reader> readers;
  for (unsigned r : readersOf(gc, a)) {
    const GEinsum &re = gc.einsum(r);
    if (re.reducer != Reducer::Sum || re.cond || re.topk || isIterative(re) ||
        reducedRanks(gc, r) != std::set<unsigned>{*p})
      return refuse(re.loc, "'" + re.name + "' reads the causal score '" +
                                ae.name + "' but is not a sum over " +
                                gc.rankName(*p) + " alone without a condition");
    Reader rd{r, {}};
    int found = 0;
    for (const Factor &f : factorsOf(re.expr)) {
      if (loads(f.e, a)) {
        auto idx = affineIndices(f.e);
        if (f.inverse || f.e.getKind() != ExprKind::Load || failed(idx) ||
            ArrayRef<AffineExpr>(*idx) != ArrayRef<AffineExpr>(gc.dims(aRanks)) ||
            ++found > 1)
          return refuse(re.loc, "'" + re.name + "' does not read '" + ae.name +
                                    "' as one factor at its own indices");
        continue;
      }
      if (usesRank(f.e, *m))
        return refuse(re.loc, "in '" + re.name + "', the factor '" +
                                  printExpr(gc, f.e) + "' uses the query rank " +
                                  gc.rankName(*m));
      rd.g.push_back(f);
    }
    if (found != 1)
      return refuse(re.loc, "'" + re.name + "' does not read '" + ae.name +
                                "' as one factor at its own indices");
    for (unsigned t : e)
      if (ranksUsed(re.expr).count(t))
        return refuse(re.loc, "'" + re.name + "' already uses rank '" +
                                  gc.rankName(t) + "', which '" + ae.name +
                                  "' reduces");
    readers.push_back(std::move(rd));
  }
  if (readers.empty())
    return refuse(ae.loc, "'" + ae.name + "' has no reader");

  // Chunks of the query rank: m -> m1, m0 = chunk.
  std::string mName = gc.rankName(*m).str();
  unsigned m1 = gc.addRank(gc.freshRankName(mName + "1"));
  unsigned m0 = gc.addRank(gc.freshRankName(mName + "0"));
  std::optional<int64_t> mSize = gc.staticSize(*m);
  gc.addPartition(*m, m1, m0, chunk, !mSize || *mSize % chunk != 0);
  AffineExpr chunkKey = gc.dim(m1) * chunk + gc.dim(m0);
  AffineExpr diagKey = gc.dim(*m).floorDiv(chunk) * chunk + gc.dim(m0);
  auto before = [&](AffineExpr key) {
    return ExprAttr::getOp(ctx, ExprKind::Lt,
                           {gc.index(key), gc.index(gc.sym(*p))});
  };
  ExprAttr intraCond = conjoin(
      ctx, {ExprAttr::getOp(ctx, ExprKind::Le,
                            {gc.index(gc.dim(m0)),
                             gc.index(gc.dim(*m) % chunk)}),
            before(diagKey)});
  auto atKey = [&](ExprAttr ex, AffineExpr key) {
    return substituteRanks(gc, {*p}, {key}, ex);
  };

  // The scores inside the query's chunk, shared by every reader.
  SmallVector<unsigned> intraRanks(aRanks);
  *llvm::find(intraRanks, *p) = m0;
  GEinsum intra = makeEinsum(ae.name + "_intra", gc.dims(intraRanks),
                             atKey(ae.expr, diagKey), intraCond, Reducer::Sum,
                             ae.elemType, ae.loc);
  unsigned intraId = gc.add(std::move(intra));
  insertBefore(gc, readers.front().id, intraId);

  SmallVector<std::string> states;
  for (Reader &rd : readers) {
    GEinsum re = gc.einsum(rd.id);
    SmallVector<Factor> yg(y);
    yg.append(rd.g.begin(), rd.g.end());
    std::set<unsigned> sr = ranksUsed(yg);
    sr.erase(*p);
    SmallVector<unsigned> srRanks = sorted(sr);
    SmallVector<AffineExpr> outC = gc.dims(srRanks);
    outC.push_back(gc.dim(m1));
    SmallVector<ExprAttr> atC = gc.indices(srRanks);
    atC.push_back(gc.index(gc.dim(m1)));
    unsigned chunkId = gc.add(makeEinsum(
        re.name + "_chunk", outC, atKey(buildProduct(ctx, yg), chunkKey),
        before(chunkKey), Reducer::Sum, re.elemType, re.loc));
    SmallVector<AffineExpr> outS = gc.dims(srRanks);
    outS.push_back(gc.dim(m1) + 1);
    GEinsum state = makeEinsum(
        re.name + "_state", outS,
        ExprAttr::getOp(ctx, ExprKind::Add,
                        {ExprAttr::getLoad(ctx, -1, atC),
                         ExprAttr::getLoad(ctx, chunkId, atC)}),
        {}, Reducer::None, re.elemType, re.loc);
    state.init = 0.0;
    unsigned stateId = gc.add(std::move(state));
    SmallVector<ExprAttr> atQ = gc.indices(srRanks);
    atQ.push_back(gc.index(gc.dim(*m).floorDiv(chunk)));
    SmallVector<Factor> xs(x);
    xs.push_back({ExprAttr::getLoad(ctx, stateId, atQ), false});
    SmallVector<unsigned> outR = gc.valueRanks(rd.id);
    unsigned interId = gc.add(makeEinsum(re.name + "_inter", gc.dims(outR),
                                         buildProduct(ctx, xs), {}, Reducer::Sum,
                                         re.elemType, re.loc));
    SmallVector<Factor> ig;
    ig.push_back({ExprAttr::getLoad(ctx, intraId, gc.indices(intraRanks)), false});
    for (const Factor &f : rd.g)
      ig.push_back({atKey(f.e, diagKey), f.inverse});
    unsigned intraR = gc.add(makeEinsum(re.name + "_intra", gc.dims(outR),
                                        buildProduct(ctx, ig), intraCond,
                                        Reducer::Sum, re.elemType, re.loc));
    for (unsigned id : {chunkId, stateId, interId, intraR})
      insertBefore(gc, rd.id, id);
    GEinsum &r2 = gc.einsum(rd.id);
    r2.expr = ExprAttr::getOp(
        ctx, ExprKind::Add,
        {ExprAttr::getLoad(ctx, interId, gc.indices(outR)),
         ExprAttr::getLoad(ctx, intraR, gc.indices(outR))});
    r2.reducer = Reducer::None;
    states.push_back(re.name + "_state");
  }
  gc.removeDeadEinsums();
  what = "chunks of " + std::to_string(chunk) + " along " + mName +
         ", running state " + llvm::join(states, ", ");
  return std::nullopt;
}

//===----------------------------------------------------------------------===//
// Low-rank bias folded by concatenation
//===----------------------------------------------------------------------===//

/// What the fold needs: the bias B, the contraction S it is added to in Q,
/// the two contraction ranks and the split of the factors into the query
/// side (A) and the key side (B).
struct BiasPlan {
  unsigned bias, s, q;
  unsigned e, r;
  int64_t sizeE, sizeR;
  bool negate = false;
  SmallVector<Factor> sA, sB, bA, bB;
  SmallVector<unsigned> qRanks, kRanks;
};

/// Additive terms of `e` with their signs.
void flattenSum(ExprAttr e, bool neg,
                SmallVectorImpl<std::pair<ExprAttr, bool>> &out) {
  if (e.getKind() == ExprKind::Add) {
    flattenSum(e.getArgs()[0], neg, out);
    flattenSum(e.getArgs()[1], neg, out);
  } else if (e.getKind() == ExprKind::Sub) {
    flattenSum(e.getArgs()[0], neg, out);
    flattenSum(e.getArgs()[1], !neg, out);
  } else {
    out.push_back({e, neg});
  }
}

Result planBias(GlobalCascade &gc, unsigned bias, StringRef rankName,
                BiasPlan &plan) {
  const GEinsum &be = gc.einsum(bias);
  auto refuse = [&](const Twine &msg) -> Result {
    return Refused{be.loc, msg.str()};
  };
  plan.bias = bias;
  plan.r = *gc.rankId(rankName);
  if (!isPlainSum(be) || be.cond || be.reducer != Reducer::Sum ||
      reducedRanks(gc, bias) != std::set<unsigned>{plan.r})
    return refuse("the bias '" + be.name + "' is not a sum over its factor "
                  "rank '" + rankName + "' alone without a condition");
  std::optional<int64_t> sizeR = gc.staticSize(plan.r);
  if (!sizeR)
    return refuse("the factor rank '" + rankName +
                  "' has a dynamic size; concatenation needs a static one");
  plan.sizeR = *sizeR;
  if (llvm::is_contained(gc.yields(), bias))
    return refuse("the bias '" + be.name + "' is a result of the cascade");
  SmallVector<unsigned> readers = readersOf(gc, bias);
  if (readers.size() != 1)
    return refuse("the bias '" + be.name + "' has " +
                  std::to_string(readers.size()) +
                  " readers; the fold needs exactly one, which adds it to a "
                  "contraction");
  plan.q = readers[0];
  const GEinsum &qe = gc.einsum(plan.q);
  SmallVector<std::pair<ExprAttr, bool>> terms;
  flattenSum(qe.expr, false, terms);
  std::optional<SmallVector<AffineExpr>> biasIdx;
  for (auto [t, neg] : terms)
    if (t.getKind() == ExprKind::Load && t.getInput() == (int64_t)bias) {
      auto idx = affineIndices(t);
      if (failed(idx) || biasIdx)
        return refuse("'" + qe.name + "' does not add the bias once");
      biasIdx = *idx;
      plan.negate = neg;
    }
  if (!biasIdx || loads(qe.cond, bias))
    return refuse("'" + qe.name + "' reads the bias other than as a term of a "
                  "sum");
  // The contraction S: another term, loaded at the same indices.
  std::string whyNot = "no other term of '" + qe.name +
                       "' is a contraction over one static rank, read at its "
                       "own indices";
  for (auto [t, neg] : terms) {
    if (neg || t.getKind() != ExprKind::Load || t.getInput() < 0 ||
        !gc.isEinsum(t.getInput()) || t.getInput() == (int64_t)bias)
      continue;
    unsigned s = t.getInput();
    const GEinsum &se = gc.einsum(s);
    auto idx = affineIndices(t);
    // S is read at its own indices: its ranks are the reader's, in which
    // the bias is loaded (possibly broadcast, `%bias[h, m, p]`).
    if (failed(idx) ||
        ArrayRef<AffineExpr>(*idx) !=
            ArrayRef<AffineExpr>(gc.dims(gc.valueRanks(s))) ||
        !isPlainSum(se) || se.cond || se.reducer != Reducer::Sum)
      continue;
    std::set<unsigned> red = reducedRanks(gc, s);
    if (red.size() != 1 || red.count(plan.r))
      continue;
    if (readersOf(gc, s).size() != 1 || llvm::is_contained(gc.yields(), s)) {
      whyNot = "the contraction '" + se.name + "' is also read elsewhere";
      continue;
    }
    unsigned e = *red.begin();
    std::optional<int64_t> sizeE = gc.staticSize(e);
    if (!sizeE) {
      whyNot = "the contraction rank '" + gc.rankName(e).str() +
               "' of '" + se.name + "' has a dynamic size";
      continue;
    }
    // The key side: the factors that use rank k, for the last output rank k
    // that splits both products into two thin sides.
    SmallVector<unsigned> outRanks = gc.valueRanks(s);
    for (unsigned k : llvm::reverse(outRanks)) {
      BiasPlan cand = plan;
      cand.s = s;
      cand.e = e;
      cand.sizeE = *sizeE;
      auto split = [&](ExprAttr ex, SmallVector<Factor> &qs,
                       SmallVector<Factor> &ks) {
        for (const Factor &f : factorsOf(ex))
          (usesRank(f.e, k) ? ks : qs).push_back(f);
      };
      split(se.expr, cand.sA, cand.sB);
      split(substituteRanks(gc, gc.valueRanks(bias), *biasIdx, be.expr),
            cand.bA, cand.bB);
      std::set<unsigned> qr = ranksUsed(cand.sA), kr = ranksUsed(cand.sB);
      std::set<unsigned> bq = ranksUsed(cand.bA), bk = ranksUsed(cand.bB);
      qr.insert(bq.begin(), bq.end());
      kr.insert(bk.begin(), bk.end());
      for (std::set<unsigned> *side : {&qr, &kr}) {
        side->erase(e);
        side->erase(plan.r);
      }
      bool thin = qr.size() < outRanks.size() && kr.size() < outRanks.size();
      if (!thin || cand.sB.empty() || cand.bB.empty())
        continue;
      cand.qRanks = sorted(qr);
      cand.kRanks = sorted(kr);
      plan = cand;
      return std::nullopt;
    }
    whyNot = "the factors of '" + se.name + "' and '" + be.name +
             "' do not split into a query side and a key side";
  }
  return Refused{be.loc, whyNot};
}

/// Emits the fold with the concatenated rank `c` (|c| = |e| + |r|).
std::string emitBias(GlobalCascade &gc, const BiasPlan &plan, unsigned c) {
  MLIRContext *ctx = gc.getContext();
  const GEinsum se = gc.einsum(plan.s);
  const GEinsum be = gc.einsum(plan.bias);
  // In range for both branches: e = c mod |e| (c < |e|), r = (c - |e|) mod |r|.
  AffineExpr atE = gc.dim(c) % plan.sizeE;
  AffineExpr atR = (gc.dim(c) - plan.sizeE) % plan.sizeR;
  ExprAttr first = ExprAttr::getOp(
      ctx, ExprKind::Lt,
      {gc.index(gc.dim(c)), ExprAttr::getConst(ctx, (double)plan.sizeE)});
  auto concat = [&](ArrayRef<Factor> fromS, ArrayRef<Factor> fromB,
                    bool negate) {
    SmallVector<Factor> bf(fromB);
    if (negate)
      bf.insert(bf.begin(), Factor{ExprAttr::getConst(ctx, -1.0), false});
    return ExprAttr::getOp(
        ctx, ExprKind::Select,
        {first,
         substituteRanks(gc, {plan.e}, {atE}, buildProduct(ctx, fromS)),
         substituteRanks(gc, {plan.r}, {atR}, buildProduct(ctx, bf))});
  };
  auto withC = [&](SmallVector<unsigned> ranks) {
    ranks.push_back(c);
    return ranks;
  };
  unsigned catQ = gc.add(makeEinsum("cat_q", gc.dims(withC(plan.qRanks)),
                                    concat(plan.sA, plan.bA, plan.negate), {},
                                    Reducer::None, se.elemType, se.loc));
  unsigned catK = gc.add(makeEinsum("cat_k", gc.dims(withC(plan.kRanks)),
                                    concat(plan.sB, plan.bB, false), {},
                                    Reducer::None, se.elemType, se.loc));
  insertBefore(gc, plan.s, catQ);
  insertBefore(gc, plan.s, catK);
  // S + B as one contraction over c.
  GEinsum &s2 = gc.einsum(plan.s);
  s2.name = se.name + "_" + be.name;
  s2.expr = ExprAttr::getOp(
      ctx, ExprKind::Mul,
      {ExprAttr::getLoad(ctx, catQ, gc.indices(withC(plan.qRanks))),
       ExprAttr::getLoad(ctx, catK, gc.indices(withC(plan.kRanks)))});
  // The reader no longer adds B.
  GEinsum &q = gc.einsum(plan.q);
  SmallVector<std::pair<ExprAttr, bool>> terms;
  flattenSum(q.expr, false, terms);
  ExprAttr sum;
  for (auto [t, neg] : terms) {
    if (t.getKind() == ExprKind::Load && t.getInput() == (int64_t)plan.bias)
      continue;
    if (!sum)
      sum = neg ? ExprAttr::getOp(ctx, ExprKind::Neg, {t}) : t;
    else
      sum = ExprAttr::getOp(ctx, neg ? ExprKind::Sub : ExprKind::Add, {sum, t});
  }
  q.expr = sum;
  gc.removeDeadEinsums();
  return s2.name + " = " + printExpr(gc, s2.expr) + " sum(" +
         gc.rankName(c).str() + ")";
}

//===----------------------------------------------------------------------===//
// The pass
//===----------------------------------------------------------------------===//

/// The FLOPs (with special functions) and unfused bytes of a cascade, as
/// polynomials and as values at the comparison sizes.
struct Cost {
  Poly flops, bytes;
  Rational flopsAt, bytesAt;
};

struct ReassociatePass : public impl::AttnReassociatePassBase<ReassociatePass> {
  using Base::Base;

  /// Comparison sizes (the `sizes` option).
  llvm::StringMap<int64_t> given;

  void runOnOperation() override {
    for (const std::string &kv : sizes) {
      auto [name, value] = StringRef(kv).split('=');
      int64_t v;
      if (value.trim().getAsInteger(10, v) || v <= 0) {
        emitError(getOperation().getLoc())
            << "attn-reassociate: sizes takes rank=value pairs with a "
               "positive value, got '"
            << kv << "'";
        return signalPassFailure();
      }
      given[name.trim()] = v;
    }
    if (chunk < 2) {
      emitError(getOperation().getLoc())
          << "attn-reassociate: chunk must be at least 2, got "
          << static_cast<int64_t>(chunk);
      return signalPassFailure();
    }
    SmallVector<CascadeOp> cascades;
    getOperation().walk([&](CascadeOp c) { cascades.push_back(c); });
    for (CascadeOp c : cascades)
      if (failed(run(c)))
        return signalPassFailure();
  }

  Cost costOf(CascadeOp c) {
    PassAnalysis pa(c);
    CostAnalysis ca(c, pa);
    Cost cost;
    cost.flops = ca.getFlops().value + ca.getSpecial().value;
    cost.bytes = ca.getUnfusedBytes();
    auto value = [&](const PolySymbol &s) -> Rational {
      std::function<int64_t(StringRef)> size = [&](StringRef n) -> int64_t {
        if (given.count(n))
          return given.lookup(n);
        for (auto part : c.getPartitions().getAsRange<PartitionAttr>())
          if (part.getOuter().getValue() == n) {
            int64_t t = part.getTile();
            return (size(part.getRank().getValue()) + t - 1) / t;
          }
        return kDefaultSymbolValue;
      };
      return Rational(size(s.name));
    };
    cost.flopsAt = cost.flops.evaluate(value);
    cost.bytesAt = cost.bytes.evaluate(value);
    return cost;
  }

  /// Clones `current` (with extra static ranks), lets `build` rewrite it in
  /// global form and materializes the candidate; null on a refusal.
  CascadeOp candidate(CascadeOp current, ArrayRef<std::pair<std::string, int64_t>> extra,
                      function_ref<Result(GlobalCascade &)> build,
                      Result &why) {
    OpBuilder b(current);
    auto clone = cast<CascadeOp>(b.clone(*current));
    if (!extra.empty()) {
      SmallVector<Attribute> ranks(clone.getRanks().begin(), clone.getRanks().end());
      for (auto &[name, size] : extra)
        ranks.push_back(RankAttr::get(b.getContext(), b.getStringAttr(name), size));
      clone.setRanksAttr(b.getArrayAttr(ranks));
    }
    GlobalCascade gc(clone);
    why = build(gc);
    CascadeOp result;
    if (!why) {
      result = gc.materialize();
      if (!result)
        why = Refused{current.getLoc(),
                      "internal error: the rewritten cascade does not verify"};
    }
    clone.erase();
    return result;
  }

  /// The Einsum named `name` in `c`, as a global id of `gc`.
  static std::optional<unsigned> findByName(GlobalCascade &gc, StringRef name) {
    for (unsigned id : gc.body())
      if (gc.einsum(id).name == name)
        return id;
    return std::nullopt;
  }

  LogicalResult run(CascadeOp cascade) {
    // 1. The annotated Einsums, in program order.
    struct Item {
      LowRankKind kind;
      std::string name, rank;
      Location loc;
    };
    SmallVector<Item> items;
    cascade.walk([&](EinsumOp op) {
      if (auto lr = op->getAttrOfType<LowRankAttr>(kLowRankAttrName))
        items.push_back({lr.getKind(), op.getDisplayName().str(),
                         lr.getRank().str(), op.getLoc()});
    });
    if (items.empty())
      return success();

    CascadeOp current = cascade;
    std::set<std::string> doneScores, coveredMaps;
    for (const Item &item : items) {
      // 2. The candidates of this annotation.
      struct Try {
        std::string label, alt;
        std::function<Result(GlobalCascade &)> build;
      };
      SmallVector<Try> tries;
      SmallVector<std::pair<std::string, int64_t>> extra;
      std::string what, label;
      GlobalCascade probe(current);
      std::optional<unsigned> self = findByName(probe, item.name);
      if (!self)
        continue; // rewritten away by an earlier annotation
      switch (item.kind) {
      case LowRankKind::Bias: {
        BiasPlan plan;
        if (Result why = planBias(probe, *self, item.rank, plan)) {
          emitRemark(why->loc) << "folding the bias '" << item.name
                               << "' is not possible: " << why->message;
          continue;
        }
        std::string c = probe.freshRankName(probe.rankName(plan.e).str() + item.rank);
        extra.push_back({c, plan.sizeE + plan.sizeR});
        label = "folded the rank-" + std::to_string(plan.sizeR) + " bias '" +
                item.name + "' into the contraction '" +
                probe.einsum(plan.s).name + "' (" + c + " = " +
                probe.rankName(plan.e).str() + " ++ " + item.rank + ", " +
                std::to_string(plan.sizeE + plan.sizeR) + ")";
        std::string name = item.name, rank = item.rank;
        tries.push_back({label, "folding the bias '" + name + "'", [&, name, rank, c](GlobalCascade &gc) -> Result {
                           BiasPlan p2;
                           unsigned id = *findByName(gc, name);
                           if (Result why = planBias(gc, id, rank, p2))
                             return why;
                           what = emitBias(gc, p2, *gc.rankId(c));
                           return std::nullopt;
                         }});
        break;
      }
      case LowRankKind::FeatureMap: {
        if (coveredMaps.count(item.name))
          continue; // its score was handled with the other feature map
        // The scores that contract this feature rank over a feature map.
        unsigned fr = *probe.rankId(item.rank);
        bool any = false, handled = false;
        for (unsigned a : readersOf(probe, *self)) {
          const GEinsum &ae = probe.einsum(a);
          if (!reducedRanks(probe, a).count(fr))
            continue;
          if (doneScores.count(ae.name)) {
            handled = true;
            continue;
          }
          any = true;
          doneScores.insert(ae.name);
          for (unsigned op : probe.operandsOf(a))
            coveredMaps.insert(probe.valueName(op));
          std::string name = ae.name;
          if (ae.cond) {
            label = "linear attention over '" + name + "' in causal chunks";
            tries.push_back({label, "the causal chunked form of '" + name + "'",
                             [&, name](GlobalCascade &gc) {
                               return chunkCausal(gc, *findByName(gc, name),
                                                  chunk, what);
                             }});
          } else {
            label = "reassociated linear attention over '" + name +
                    "' to phi(Q) (phi(K)^T V)";
            tries.push_back({label,
                             "the form phi(Q) (phi(K)^T V) of '" + name + "'",
                             [&, name](GlobalCascade &gc) {
                               return reassociateAll(gc, *findByName(gc, name),
                                                     what);
                             }});
          }
        }
        if (!any && handled)
          continue; // its score was handled with the other feature map
        if (!any) {
          emitRemark(item.loc)
              << "feature map not used: no Einsum reads '" << item.name
              << "' and reduces its feature rank '" << item.rank << "'";
          continue;
        }
        break;
      }
      case LowRankKind::Latent: {
        std::string name = item.name;
        label = "absorbed the latent projection '" + name + "' into its readers";
        tries.push_back({label, "absorbing the latent projection '" + name + "'",
                         [&, name](GlobalCascade &gc) {
                           return reassociateAll(gc, *findByName(gc, name), what);
                         }});
        break;
      }
      }

      // 3. Keep each candidate if it is cheaper (or with `always`).
      for (Try &t : tries) {
        Result why;
        what.clear();
        CascadeOp next = candidate(current, extra, t.build, why);
        if (!next) {
          emitRemark(why->loc) << t.alt << " is not possible: " << why->message;
          continue;
        }
        Cost before = costOf(current), after = costOf(next);
        bool cheaper = after.flopsAt < before.flopsAt ||
                       (after.flopsAt == before.flopsAt &&
                        after.bytesAt < before.bytesAt);
        std::string ratio;
        llvm::raw_string_ostream(ratio)
            << llvm::format("%.3g", after.flopsAt.toDouble() /
                                        std::max(before.flopsAt.toDouble(), 1.0));
        std::string costs = "flops " + before.flops.str() + " -> " +
                            after.flops.str() + " (x" + ratio +
                            " at the compared sizes)";
        if (cheaper || always) {
          emitRemark(item.loc) << t.label << ": " << what << "; " << costs;
          if (current != cascade)
            current.erase();
          current = next;
        } else {
          emitRemark(item.loc) << "kept as written: " << t.alt
                               << " costs more; " << costs;
          next.erase();
        }
      }
    }
    if (current != cascade)
      cascade.erase();
    return success();
  }
};

} // namespace
} // namespace mlir::attn
