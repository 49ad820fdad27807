//===- Quantize.cpp - attn-quantize -----------------------------------------===//
//
// This file implements the rewrite that the quantization annotations
// (#attn.quant on cascade arguments, docs/dialect.md) ask for:
//
//  * `to = i8` (or f8E4M3FN / f8E5M2) on both operands of a contraction
//    S = sum_c X * Y * rest (the scores Q K^T): quantize them on the fly
//    (SageAttention, Zhang et al. 2025): optional smoothing (subtract the
//    mean over tokens), per-tensor / per-head / per-token / per-block /
//    per-channel absmax scales, quantized tensors, an integer (i32) or f32
//    dot product, and the scales folded into the score scale:
//        S = dot * sx * sy * rest [+ the smoothing term, added back]
//  * `scale = "x_descale"` on arguments stored quantized (FP8 or INT8): the
//    descale factors (FlashAttention-3's interface) go to the score scale of
//    a contraction of two such operands (the dot accumulates in f32 for FP8,
//    i32 for INT8); every other read of such an argument is dequantized in
//    place, cast(x : f32) * x_descale (PV with FP8 V).
//
// Algorithm:
//   1. Collect the arguments whose annotation has `to` or `scale`.
//   2. Find the contractions that read them: an Einsum that sums over one
//      rank c, whose map is a product with the annotated operands as
//      factors (a load, or a cast of a load).
//   3. For a contraction of two annotated operands, build per operand the
//      quantized tensor and its scale (in the operand's own ranks), then
//      the dot Einsum and the dequantization in place of the contraction.
//      Any check that fails is a located error and the pass fails: a
//      quantization the user asked for is never silently dropped.
//   4. Dequantize every other read of a `scale` argument; an argument with
//      `to` that no contraction consumed is an error.
//   5. Materialize, and strip the `to` / `scale` parts of the annotations
//      (the quantization is now explicit in the cascade).
//
//===----------------------------------------------------------------------===//

#include "attn/Passes.h"
#include "attn/Transforms/Online.h"
#include "attn/Transforms/Products.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "llvm/ADT/StringExtras.h"

#include <set>

namespace mlir::attn {
#define GEN_PASS_DEF_ATTNQUANTIZEPASS
#include "passes/Passes.h.inc"

namespace {

//===----------------------------------------------------------------------===//
// Helpers
//===----------------------------------------------------------------------===//

bool loadsAny(ExprAttr e, const std::set<unsigned> &ids) {
  bool found = false;
  if (e)
    walkExpr(e, [&](ExprAttr n) {
      if (n.getKind() == ExprKind::Load && n.getInput() >= 0 &&
          ids.count(n.getInput()))
        found = true;
    });
  return found;
}

/// The load inside a factor that is a load or a cast of a load.
ExprAttr factorLoad(ExprAttr e) {
  if (e.getKind() == ExprKind::Cast)
    e = e.getArgs()[0];
  return e.getKind() == ExprKind::Load ? e : ExprAttr();
}

/// The largest finite value of a quantized type (the absmax maps to it).
double quantMax(Type t) {
  if (t.isInteger(8))
    return 127.0;
  if (isa<Float8E4M3FNType>(t))
    return 448.0;
  return 57344.0; // f8E5M2
}

std::string typeName(Type t) {
  std::string s;
  llvm::raw_string_ostream os(s);
  os << t;
  return s;
}

const char *granularityText(Granularity g) {
  switch (g) {
  case Granularity::Tensor: return "per tensor";
  case Granularity::Head: return "per head";
  case Granularity::Block: return "per block";
  case Granularity::Channel: return "per channel";
  case Granularity::Token: return "per token";
  }
  return "";
}

/// A failure with the location at fault (reported as an error).
struct Refusal {
  Location loc;
  std::string message;
};

//===----------------------------------------------------------------------===//
// The rewrite
//===----------------------------------------------------------------------===//

/// One annotated operand of a contraction.
struct Operand {
  unsigned arg;           // the cascade argument
  QuantAttr quant;
  ExprAttr load;          // its load in the contraction (global form)
  SmallVector<AffineExpr> idx; // the load's indices
  int channelDim = -1;    // the dimension indexed by the contraction rank
  int tokenDim = -1;      // the token dimension (-1: unknown)
  // Results of the rewrite:
  unsigned value = 0;     // the tensor that enters the dot product
  unsigned source = 0;    // the float tensor that is quantized (after smoothing)
  ExprAttr scale;         // its scale at the contraction's indices, or null
  Type qtype;             // i8 / f8 element type of `value`
  std::string describe;
};

class Quantizer {
public:
  Quantizer(GlobalCascade &gc, bool honourSmooth)
      : gc(gc), ctx(gc.getContext()), honourSmooth(honourSmooth) {}

  /// Runs the rewrite; returns the remarks (one per rewritten Einsum) or a
  /// refusal.
  std::optional<Refusal> run(SmallVectorImpl<std::pair<Location, std::string>> &notes);

private:
  GlobalCascade &gc;
  MLIRContext *ctx;
  bool honourSmooth;
  DenseMap<unsigned, QuantAttr> annotated;
  std::set<unsigned> consumed;
  /// The dot products made (they read the stored values as they are).
  std::set<unsigned> dots;
  /// Partitions created or found, by partitioned rank and tile: (outer, inner).
  std::map<std::pair<unsigned, int64_t>, std::pair<unsigned, unsigned>> parts;

  Location argLoc(unsigned arg) {
    return gc.getCascade().getBodyBlock().getArgument(arg).getLoc();
  }
  std::string name(unsigned id) { return gc.valueName(id); }
  ExprAttr c(double v) { return ExprAttr::getConst(ctx, v); }
  ExprAttr op(ExprKind k, ArrayRef<ExprAttr> args) {
    return ExprAttr::getOp(ctx, k, args);
  }
  ExprAttr load(unsigned id, ArrayRef<AffineExpr> idx) {
    SmallVector<ExprAttr> ix;
    for (AffineExpr e : idx)
      ix.push_back(ExprAttr::getIndex(e));
    return ExprAttr::getLoad(ctx, id, ix);
  }
  unsigned addBefore(unsigned before, GEinsum e) {
    unsigned id = gc.add(std::move(e));
    auto &body = gc.body();
    body.insert(llvm::find(body, before), id);
    return id;
  }
  GEinsum einsum(std::string nm, ArrayRef<unsigned> outRanks, ExprAttr expr,
                 Reducer reducer, Type type, Location loc) {
    return GEinsum{std::move(nm), gc.dims(outRanks), expr, nullptr, reducer,
                   {}, {}, {}, type, {}, loc};
  }
  FailureOr<std::pair<unsigned, unsigned>> partition(unsigned rank, int64_t tile,
                                                     Location loc,
                                                     std::optional<Refusal> &why);
  std::optional<Refusal> rewriteContraction(unsigned id, Operand &x, Operand &y,
                                            std::string &note);
  std::optional<Refusal> quantizeOnTheFly(unsigned score, Operand &x,
                                          Operand &other, unsigned cRank,
                                          std::optional<ExprAttr> migrated);
  FailureOr<ExprAttr> descaleAt(unsigned arg, QuantAttr quant,
                                ArrayRef<AffineExpr> idx, Location loc,
                                std::optional<Refusal> &why);
};

FailureOr<std::pair<unsigned, unsigned>>
Quantizer::partition(unsigned rank, int64_t tile, Location loc,
                     std::optional<Refusal> &why) {
  auto key = std::make_pair(rank, tile);
  if (auto it = parts.find(key); it != parts.end())
    return it->second;
  for (Attribute a : gc.getCascade().getPartitions()) {
    auto p = cast<PartitionAttr>(a);
    if (p.getRank().getValue() != gc.rankName(rank))
      continue;
    if (p.getTile() != tile) {
      why = Refusal{loc, "blocks of " + std::to_string(tile) + " along '" +
                             gc.rankName(rank).str() +
                             "' differ from the cascade's partition of it "
                             "(tiles of " +
                             std::to_string(p.getTile()) + ")"};
      return failure();
    }
    auto r = std::make_pair(*gc.rankId(p.getOuter().getValue()),
                            *gc.rankId(p.getInner().getValue()));
    parts[key] = r;
    return r;
  }
  std::string base = gc.rankName(rank).str();
  unsigned outer = gc.addRank(gc.freshRankName(base + "1"));
  unsigned inner = gc.addRank(gc.freshRankName(base + "0"));
  std::optional<int64_t> size = gc.staticSize(rank);
  gc.addPartition(rank, outer, inner, tile, !size || *size % tile != 0);
  parts[key] = {outer, inner};
  return parts[key];
}

/// The descale of `arg` (argument `quant.getScale()`) at the element of
/// `arg` loaded at `idx`: each rank of the descale is a rank of `arg`
/// (read at that dimension's index) or the outer rank of a partition of
/// one (read at the index floordiv the tile).
FailureOr<ExprAttr> Quantizer::descaleAt(unsigned arg, QuantAttr quant,
                                         ArrayRef<AffineExpr> idx, Location loc,
                                         std::optional<Refusal> &why) {
  auto names = gc.getCascade().getArgNames().getAsValueRange<StringAttr>();
  unsigned sid = std::distance(
      names.begin(), llvm::find(names, quant.getScale().getValue()));
  SmallVector<unsigned> argRanks = gc.valueRanks(arg);
  SmallVector<AffineExpr> sidx;
  for (unsigned r : gc.valueRanks(sid)) {
    AffineExpr found;
    for (auto [i, ar] : llvm::enumerate(argRanks))
      if (ar == r)
        found = idx[i];
    if (!found)
      for (Attribute a : gc.getCascade().getPartitions()) {
        auto p = cast<PartitionAttr>(a);
        if (p.getOuter().getValue() != gc.rankName(r))
          continue;
        for (auto [i, ar] : llvm::enumerate(argRanks))
          if (gc.rankName(ar) == p.getRank().getValue())
            found = idx[i].floorDiv(p.getTile());
      }
    if (!found) {
      why = Refusal{loc, "the descale '" + name(sid) + "' of '" +
                             name(arg) + "' has rank '" +
                             gc.rankName(r).str() +
                             "', which is neither a rank of '" + name(arg) +
                             "' nor the outer rank of a partition of one"};
      return failure();
    }
    sidx.push_back(found);
  }
  if (quant.getGranularity() == Granularity::Tensor && !sidx.empty()) {
    why = Refusal{loc, "'" + name(arg) + "' is quantized per tensor, but its "
                       "descale '" + name(sid) + "' has ranks"};
    return failure();
  }
  return load(sid, sidx);
}

/// Quantizes operand x of contraction `score` on the fly: smoothing,
/// scales, the quantized tensor. Sets x.value, x.scale (null when the scale
/// migrates into the other operand: per-channel), x.qtype.
std::optional<Refusal> Quantizer::quantizeOnTheFly(
    unsigned score, Operand &x, Operand &other, unsigned cRank,
    std::optional<ExprAttr> migrated) {
  Location loc = gc.einsum(score).loc;
  QuantAttr q = x.quant;
  Type f32 = Float32Type::get(ctx);
  SmallVector<unsigned> xr = gc.valueRanks(x.arg);
  std::string xn = name(x.arg);
  Granularity gran = q.getGranularity();
  unsigned t = x.tokenDim >= 0 ? xr[x.tokenDim] : ~0u;
  x.qtype = q.getTo();
  x.describe = xn + ": " + typeName(x.qtype) + " " + granularityText(gran);
  if (gran == Granularity::Block)
    x.describe += " (" + std::to_string(q.getBlockSize()) + " along " +
                  gc.rankName(t).str() + ")";

  // 1. Smoothing: xs = x - mean over tokens.
  unsigned src = x.arg;
  if (q.getSmooth() && honourSmooth) {
    SmallVector<unsigned> meanRanks;
    for (unsigned r : xr)
      if (r != t)
        meanRanks.push_back(r);
    unsigned bar = addBefore(
        score, einsum(xn + "bar", meanRanks,
                      op(ExprKind::Div, {load(x.arg, gc.dims(xr)),
                                         ExprAttr::getIndex(gc.sym(t))}),
                      Reducer::Sum, f32, loc));
    src = addBefore(score, einsum(xn + "s", xr,
                                  op(ExprKind::Sub, {load(x.arg, gc.dims(xr)),
                                                     load(bar, gc.dims(meanRanks))}),
                                  Reducer::None, f32, loc));
    x.describe += ", smoothed";
  } else if (q.getSmooth()) {
    x.describe += ", smoothing skipped (smooth=false)";
  }
  // 2. Per-channel scales of the other operand migrate into this one.
  if (migrated) {
    src = addBefore(score, einsum(xn + "m", xr,
                                  op(ExprKind::Mul, {load(src, gc.dims(xr)),
                                                     *migrated}),
                                  Reducer::None, f32, loc));
  }
  x.source = src;

  // 3. Scale ranks and the absmax.
  SmallVector<unsigned> scaleRanks;
  // The element of src read by the absmax: t -> t1 * B + t0 for blocks.
  SmallVector<AffineExpr> readIdx = gc.dims(xr);
  unsigned outer = 0;
  int64_t bs = q.getBlockSize();
  if (gran == Granularity::Block) {
    std::optional<Refusal> why;
    auto pr = partition(t, bs, loc, why);
    if (failed(pr))
      return why;
    outer = pr->first;
    readIdx[x.tokenDim] = gc.dim(pr->first) * bs + gc.dim(pr->second);
  }
  for (auto [i, r] : llvm::enumerate(xr)) {
    bool keep = false;
    switch (gran) {
    case Granularity::Tensor: keep = false; break;
    case Granularity::Head: keep = (int)i != x.tokenDim && (int)i != x.channelDim; break;
    case Granularity::Token: keep = (int)i != x.channelDim; break;
    case Granularity::Block: keep = (int)i != x.channelDim; break;
    case Granularity::Channel: keep = (int)i != x.tokenDim; break;
    }
    if (keep)
      scaleRanks.push_back(gran == Granularity::Block && (int)i == x.tokenDim
                               ? outer
                               : r);
  }
  unsigned mx = addBefore(
      score, einsum(xn + "max", scaleRanks,
                    op(ExprKind::Abs, {load(src, readIdx)}), Reducer::Max,
                    f32, loc));
  double qmax = quantMax(x.qtype);
  unsigned s = addBefore(
      score,
      einsum("s" + xn, scaleRanks,
             op(ExprKind::Select,
                {op(ExprKind::Eq, {load(mx, gc.dims(scaleRanks)), c(0.0)}),
                 c(1.0),
                 op(ExprKind::Div, {load(mx, gc.dims(scaleRanks)), c(qmax)})}),
             Reducer::None, f32, loc));
  // The scale at an element of x given x's indices `at`.
  auto scaleAt = [&](ArrayRef<AffineExpr> at) {
    SmallVector<AffineExpr> si;
    for (auto [i, r] : llvm::enumerate(xr)) {
      (void)r;
      bool keep = false;
      switch (gran) {
      case Granularity::Tensor: break;
      case Granularity::Head: keep = (int)i != x.tokenDim && (int)i != x.channelDim; break;
      case Granularity::Token: case Granularity::Block: keep = (int)i != x.channelDim; break;
      case Granularity::Channel: keep = (int)i != x.tokenDim; break;
      }
      if (keep)
        si.push_back(gran == Granularity::Block && (int)i == x.tokenDim
                         ? at[i].floorDiv(bs)
                         : at[i]);
    }
    return load(s, si);
  };
  // 4. The quantized tensor.
  ExprAttr ratio = op(ExprKind::Div, {load(src, gc.dims(xr)), scaleAt(gc.dims(xr))});
  ExprAttr qexpr = x.qtype.isInteger(8) ? op(ExprKind::Round, {ratio})
                                        : ExprAttr::getCast(ratio, x.qtype);
  x.value = addBefore(score, einsum(xn + (x.qtype.isInteger(8) ? "i" : "8"), xr,
                                    qexpr, Reducer::None, x.qtype, loc));
  if (gran == Granularity::Channel) {
    // sum_c xq[c] s[c] y[c]: s moves into the other operand before it is
    // quantized; `other` reads it at its own ranks (below).
    x.scale = nullptr;
    x.describe += " (scales moved into " + name(other.arg) + ")";
  } else {
    x.scale = scaleAt(x.idx);
  }
  (void)cRank;
  return std::nullopt;
}

std::optional<Refusal> Quantizer::rewriteContraction(unsigned id, Operand &x,
                                                     Operand &y,
                                                     std::string &note) {
  GEinsum &g = gc.einsum(id);
  Location loc = g.loc;
  auto refuse = [&](const Twine &msg) -> std::optional<Refusal> {
    return Refusal{loc, msg.str()};
  };
  std::set<unsigned> red = reducedRanks(gc, id);
  if (red.size() != 1)
    return refuse("'" + g.name + "' contracts " + std::to_string(red.size()) +
                  " ranks; a quantized dot product contracts exactly one");
  unsigned cr = *red.begin();
  if (g.cond && ranksUsed(g.cond).count(cr))
    return refuse("the condition of '" + g.name + "' uses the contraction rank '" +
                  gc.rankName(cr).str() + "'");

  // The channel and token dimensions of each operand.
  for (Operand *o : {&x, &y}) {
    Operand &other = o == &x ? y : x;
    SmallVector<unsigned> r = gc.valueRanks(o->arg);
    std::set<unsigned> otherUses;
    for (AffineExpr e : other.idx)
      e.walk([&](AffineExpr s) {
        if (auto d = dyn_cast<AffineDimExpr>(s))
          otherUses.insert(d.getPosition());
      });
    for (auto [i, e] : llvm::enumerate(o->idx)) {
      if (e == gc.dim(cr)) {
        o->channelDim = i;
        continue;
      }
      if (usesRank(e, cr))
        return refuse("'" + name(o->arg) + "' is read at '" + g.name +
                      "' with the contraction rank '" + gc.rankName(cr).str() +
                      "' inside an index expression");
    }
    if (o->channelDim < 0)
      return refuse("'" + name(o->arg) + "' has no dimension indexed by the "
                    "contraction rank '" + gc.rankName(cr).str() + "' of '" +
                    g.name + "'");
    if (StringAttr along = o->quant.getAlong()) {
      for (auto [i, rk] : llvm::enumerate(r))
        if (gc.rankName(rk) == along.getValue())
          o->tokenDim = i;
      if (o->tokenDim == o->channelDim)
        return refuse("the scales of '" + name(o->arg) + "' run along '" +
                      along.getValue() + "', the contraction rank of '" +
                      g.name + "': they would sit inside the dot product; "
                      "blocks and smoothing run along the token rank");
    } else {
      int found = -1, count = 0;
      for (auto [i, e] : llvm::enumerate(o->idx)) {
        if ((int)i == o->channelDim)
          continue;
        bool own = false;
        e.walk([&](AffineExpr s) {
          if (auto d = dyn_cast<AffineDimExpr>(s))
            own |= !otherUses.count(d.getPosition());
        });
        if (own) {
          found = i;
          ++count;
        }
      }
      if (count == 1)
        o->tokenDim = found;
    }
    Granularity gran = o->quant.getGranularity();
    if (o->tokenDim < 0 && o->quant.getTo() && gran != Granularity::Tensor)
      return refuse("cannot tell the token rank of '" + name(o->arg) +
                    "' (the rank only it indexes in '" + g.name +
                    "'); give it with along = \"...\"");
  }

  bool xFly = (bool)x.quant.getTo(), yFly = (bool)y.quant.getTo();
  // Element types entering the dot.
  Type xt = xFly ? x.quant.getTo() : gc.valueElemType(x.arg);
  Type yt = yFly ? y.quant.getTo() : gc.valueElemType(y.arg);
  if (xt.isInteger(8) != yt.isInteger(8))
    return refuse("'" + g.name + "' contracts " + typeName(xt) + " ('" +
                  name(x.arg) + "') with " + typeName(yt) + " ('" +
                  name(y.arg) + "'); both operands must be i8, or both fp8");
  bool isInt = xt.isInteger(8);
  Type accType = isInt ? (Type)IntegerType::get(ctx, 32) : (Type)Float32Type::get(ctx);
  for (NamedAttribute a : g.attrs)
    if (a.getName() == kQuantAttrName)
      if (auto qa = dyn_cast<QuantAttr>(a.getValue()); qa && qa.getAcc() &&
                                                       qa.getAcc() != accType)
        return refuse("the accumulator " + typeName(qa.getAcc()) + " of '" +
                      g.name + "' cannot hold the exact dot product of " +
                      typeName(xt) + " values; use acc = " + typeName(accType));
  for (Operand *o : {&x, &y}) {
    bool fly = (bool)o->quant.getTo();
    if (!fly && o->quant.getSmooth())
      return refuse("'" + name(o->arg) + "' is stored quantized; the compiler "
                    "cannot smooth stored values (smooth before quantizing)");
    if (fly && o->quant.getSmooth() && o->tokenDim < 0)
      return refuse("cannot tell the token rank of '" + name(o->arg) +
                    "' to smooth along");
  }
  if (x.quant.getSmooth() && y.quant.getSmooth())
    return refuse("both '" + name(x.arg) + "' and '" + name(y.arg) +
                  "' ask for smoothing; smooth one operand of '" + g.name +
                  "' (K, as SageAttention does)");
  bool xChan = xFly && x.quant.getGranularity() == Granularity::Channel;
  bool yChan = yFly && y.quant.getGranularity() == Granularity::Channel;
  if (xChan && yChan)
    return refuse("'" + name(x.arg) + "' and '" + name(y.arg) +
                  "' are both quantized per channel; the scales of the "
                  "contraction rank '" + gc.rankName(cr).str() +
                  "' can move into one operand only (quantize the other per "
                  "token, block, head or tensor)");
  if ((xChan && !yFly) || (yChan && !xFly))
    return refuse("per-channel scales of '" + name(xChan ? x.arg : y.arg) +
                  "' would move into '" + name(xChan ? y.arg : x.arg) +
                  "', which is stored quantized");

  // Every other factor of the contraction: free of the contraction rank.
  SmallVector<Factor> factors, rest;
  flattenProduct(g.expr, false, factors, /*splitNegation=*/false);
  for (const Factor &f : factors) {
    ExprAttr l = factorLoad(f.e);
    if (l && (l == x.load || l == y.load) && !f.inverse)
      continue;
    if (usesRank(f.e, cr))
      return refuse("the factor '" + printExpr(gc, f.e) + "' of '" + g.name +
                    "' uses the contraction rank '" + gc.rankName(cr).str() +
                    "'; only the two quantized operands may");
    rest.push_back(f);
  }

  // Descales of stored operands.
  for (Operand *o : {&x, &y}) {
    if (o->quant.getTo())
      continue;
    std::optional<Refusal> why;
    auto d = descaleAt(o->arg, o->quant, o->idx, loc, why);
    if (failed(d))
      return why;
    if (usesRank(*d, cr))
      return refuse("the descale of '" + name(o->arg) + "' varies along the "
                    "contraction rank '" + gc.rankName(cr).str() +
                    "' (per channel): it would sit inside the dot product");
    o->value = o->arg;
    o->source = o->arg;
    o->scale = *d;
    o->qtype = gc.valueElemType(o->arg);
    o->describe = name(o->arg) + ": stored " + typeName(o->qtype) +
                  " with descale '" + printExpr(gc, *d) + "'";
  }

  // On-the-fly quantization: a per-channel operand first (its scales move
  // into the other before that one is quantized).
  Operand *first = &x, *second = &y;
  if (yChan)
    std::swap(first, second);
  std::optional<ExprAttr> migrated;
  if (first->quant.getTo()) {
    if (auto why = quantizeOnTheFly(id, *first, *second, cr, std::nullopt))
      return why;
    if (!first->scale) {
      // The channel scales of `first`, read at `second`'s own ranks: map
      // each rank of the contraction's space to second's rank at the
      // dimension it indexes.
      SmallVector<unsigned> sr = gc.valueRanks(second->arg);
      SmallVector<unsigned> from;
      SmallVector<AffineExpr> to;
      for (auto [i, e] : llvm::enumerate(second->idx))
        if (auto d = dyn_cast<AffineDimExpr>(e)) {
          from.push_back(d.getPosition());
          to.push_back(gc.dim(sr[i]));
        }
      // s_first at first's indices in the contraction's space.
      SmallVector<unsigned> fr = gc.valueRanks(first->arg);
      SmallVector<AffineExpr> at;
      for (auto [i, r] : llvm::enumerate(fr))
        if ((int)i != first->tokenDim)
          at.push_back(substituteRanks(gc, from, to, first->idx[i]));
      for (AffineExpr e : at) {
        bool ok = true;
        e.walk([&](AffineExpr s) {
          if (auto d = dyn_cast<AffineDimExpr>(s))
            ok &= llvm::is_contained(sr, d.getPosition());
        });
        if (!ok)
          return refuse("the per-channel scales of '" + name(first->arg) +
                        "' cannot be read at the ranks of '" +
                        name(second->arg) + "'");
      }
      // The scale Einsum is the one named s<first>: the last scale added.
      unsigned sId = 0;
      for (unsigned b : gc.body())
        if (gc.einsum(b).name == "s" + name(first->arg))
          sId = b;
      migrated = load(sId, at);
    }
  }
  if (second->quant.getTo())
    if (auto why = quantizeOnTheFly(id, *second, *first, cr, migrated))
      return why;

  // The dot product and the dequantization.
  auto widen = [&](Operand &o) {
    ExprAttr l = load(o.value, o.idx);
    return isInt ? l : ExprAttr::getCast(l, Float32Type::get(ctx));
  };
  SmallVector<unsigned> outRanks = gc.valueRanks(id);
  GEinsum dot = einsum("dot", outRanks,
                       op(ExprKind::Mul, {widen(x), widen(y)}), Reducer::Sum,
                       accType, loc);
  // Mask conjuncts that read no tensor also restrict the dot product.
  SmallVector<ExprAttr> conj, keep;
  splitConjuncts(g.cond, conj);
  for (ExprAttr cj : conj) {
    bool loadsTensor = false;
    walkExpr(cj, [&](ExprAttr n) { loadsTensor |= n.getKind() == ExprKind::Load; });
    if (!loadsTensor)
      keep.push_back(cj);
  }
  dot.cond = conjoin(ctx, keep);
  dot.attrs.push_back(NamedAttribute(
      StringAttr::get(ctx, kQuantAttrName),
      QuantAttr::get(ctx, nullptr, nullptr, Granularity::Tensor, 0, nullptr,
                     false, nullptr, accType)));
  unsigned dotId = addBefore(id, std::move(dot));
  dots.insert(dotId);

  SmallVector<Factor> deq{{load(dotId, gc.dims(outRanks)), false}};
  for (Operand *o : {&x, &y})
    if (o->scale)
      deq.push_back({o->scale, false});
  deq.append(rest.begin(), rest.end());
  ExprAttr expr = buildProduct(ctx, deq);

  // Smoothing is exact: sum_c x (y - ybar) + sum_c x ybar. The second term
  // (one value per row of the scores) is added back, so every reader of
  // the scores (the LSE too) sees the unquantized values up to rounding.
  for (Operand *o : {&x, &y}) {
    if (!(o->quant.getTo() && o->quant.getSmooth() && honourSmooth))
      continue;
    Operand &other = o == &x ? y : x;
    unsigned bar = 0;
    for (unsigned b : gc.body())
      if (gc.einsum(b).name == name(o->arg) + "bar")
        bar = b;
    SmallVector<AffineExpr> barIdx;
    for (auto [i, e] : llvm::enumerate(o->idx))
      if ((int)i != o->tokenDim)
        barIdx.push_back(e);
    SmallVector<Factor> terms{{load(other.arg, other.idx), false},
                              {load(bar, barIdx), false}};
    terms.append(rest.begin(), rest.end());
    ExprAttr body = buildProduct(ctx, terms);
    std::set<unsigned> used = ranksUsed(body);
    SmallVector<unsigned> corrRanks;
    for (unsigned r : outRanks)
      if (used.count(r))
        corrRanks.push_back(r);
    unsigned corr = addBefore(
        id, einsum(g.name + "_smooth", corrRanks, body, Reducer::Sum,
                   Float32Type::get(ctx), loc));
    expr = op(ExprKind::Add, {expr, load(corr, gc.dims(corrRanks))});
  }
  GEinsum &g2 = gc.einsum(id);
  g2.expr = expr;
  g2.reducer = Reducer::None;
  llvm::erase_if(g2.attrs, [](NamedAttribute a) {
    return a.getName() == kQuantAttrName;
  });
  note = "quantized '" + g2.name + "' (" + x.describe + "; " + y.describe +
         "): dot product in " + typeName(accType) + ", scales folded into '" +
         g2.name + " = " + printExpr(gc, g2.expr) + "'";
  consumed.insert(x.arg);
  consumed.insert(y.arg);
  return std::nullopt;
}

std::optional<Refusal>
Quantizer::run(SmallVectorImpl<std::pair<Location, std::string>> &notes) {
  CascadeOp cascade = gc.getCascade();
  if (ArrayAttr argAttrs = cascade.getArgAttrsAttr())
    for (auto [i, a] : llvm::enumerate(argAttrs))
      if (auto q = dyn_cast_or_null<QuantAttr>(
              cast<DictionaryAttr>(a).get(kQuantAttrName)))
        if (q.getTo() || q.getScale())
          annotated[i] = q;
  if (annotated.empty())
    return std::nullopt;
  std::set<unsigned> ids;
  for (auto &kv : annotated)
    ids.insert(kv.first);

  // Contractions of two annotated operands.
  std::vector<unsigned> body = gc.body();
  for (unsigned id : body) {
    const GEinsum &g = gc.einsum(id);
    if (g.reducer != Reducer::Sum || g.topk || isIterative(g))
      continue;
    SmallVector<Factor> factors;
    flattenProduct(g.expr, false, factors, /*splitNegation=*/false);
    SmallVector<ExprAttr> loadsOf;
    for (const Factor &f : factors)
      if (ExprAttr l = factorLoad(f.e);
          l && !f.inverse && ids.count(l.getInput()))
        loadsOf.push_back(l);
    if (loadsOf.size() < 2) {
      if (loadsOf.size() == 1 && annotated[loadsOf[0].getInput()].getTo() &&
          !reducedRanks(gc, id).empty()) {
        unsigned other = loadsOf[0].getInput();
        return Refusal{g.loc, "only one operand of the contraction '" + g.name +
                                  "' ('" + name(other) +
                                  "') is quantized on the fly; an integer or "
                                  "fp8 dot product needs both (attn-quantize "
                                  "quantizes both operands of Q K^T; PV stays "
                                  "in the storage type)"};
      }
      continue;
    }
    if (loadsOf.size() > 2)
      return Refusal{g.loc, "'" + g.name + "' multiplies more than two "
                            "quantized operands"};
    if (loadsAny(g.cond, ids))
      return Refusal{g.loc, "the condition of '" + g.name +
                                "' reads a quantized operand"};
    Operand ops[2];
    for (int k = 0; k < 2; ++k) {
      ops[k].arg = loadsOf[k].getInput();
      ops[k].quant = annotated[ops[k].arg];
      ops[k].load = loadsOf[k];
      for (ExprAttr ix : loadsOf[k].getArgs()) {
        if (ix.getKind() != ExprKind::Index)
          return Refusal{g.loc, "'" + g.name + "' gathers from '" +
                                    name(ops[k].arg) +
                                    "'; quantizing gathered operands is not "
                                    "supported"};
        ops[k].idx.push_back(ix.getIndex());
      }
    }
    std::string note;
    if (auto why = rewriteContraction(id, ops[0], ops[1], note))
      return why;
    notes.push_back({gc.einsum(id).loc, note});
  }

  // Every other read of a stored operand: dequantized in place.
  for (auto &[arg, q] : annotated) {
    if (q.getTo()) {
      if (!consumed.count(arg))
        return Refusal{argLoc(arg),
                       "'" + name(arg) + "' is quantized on the fly (to = " +
                           typeName(q.getTo()) +
                           ") but is not an operand of a contraction with "
                           "another such operand"};
      continue;
    }
    if (q.getSmooth())
      return Refusal{argLoc(arg), "'" + name(arg) + "' is stored quantized; "
                                  "the compiler cannot smooth stored values"};
    for (unsigned id : gc.body()) {
      if (dots.count(id))
        continue;
      GEinsum &g = gc.einsum(id);
      std::optional<Refusal> why;
      auto deq = [&](ExprAttr e) -> ExprAttr {
        return mapExpr(e, [&](ExprAttr node, ArrayRef<ExprAttr> args) -> ExprAttr {
          if (why || node.getKind() != ExprKind::Load ||
              node.getInput() != (int64_t)arg)
            return nullptr;
          SmallVector<AffineExpr> idx;
          for (ExprAttr ix : args) {
            if (ix.getKind() != ExprKind::Index) {
              why = Refusal{g.loc, "'" + g.name + "' gathers from the stored "
                                   "quantized '" + name(arg) + "'"};
              return nullptr;
            }
            idx.push_back(ix.getIndex());
          }
          auto d = descaleAt(arg, q, idx, g.loc, why);
          if (failed(d))
            return nullptr;
          return op(ExprKind::Mul,
                    {ExprAttr::getCast(withArgs(node, args), Float32Type::get(ctx)),
                     *d});
        });
      };
      // A cast of the stored value to f32 becomes the dequantized value.
      auto stripCasts = [&](ExprAttr e) {
        return mapExpr(e, [&](ExprAttr node, ArrayRef<ExprAttr> args) -> ExprAttr {
          if (node.getKind() == ExprKind::Cast && args[0].getKind() == ExprKind::Load &&
              args[0].getInput() == (int64_t)arg)
            return args[0];
          return nullptr;
        });
      };
      bool reads = false;
      walkExpr(g.expr, [&](ExprAttr n) {
        reads |= n.getKind() == ExprKind::Load && n.getInput() == (int64_t)arg;
      });
      if (!reads)
        continue;
      g.expr = deq(stripCasts(g.expr));
      if (why)
        return why;
      notes.push_back({g.loc, "dequantized '" + name(arg) + "' in '" + g.name +
                                  "': " + printExpr(gc, g.expr)});
    }
  }
  return std::nullopt;
}

//===----------------------------------------------------------------------===//
// The pass
//===----------------------------------------------------------------------===//

struct AttnQuantizePass : impl::AttnQuantizePassBase<AttnQuantizePass> {
  using AttnQuantizePassBase::AttnQuantizePassBase;

  void runOnOperation() override {
    SmallVector<CascadeOp> cascades(getOperation().getOps<CascadeOp>());
    for (CascadeOp cascade : cascades) {
      GlobalCascade gc(cascade);
      Quantizer qz(gc, smooth);
      SmallVector<std::pair<Location, std::string>> notes;
      if (auto why = qz.run(notes)) {
        emitError(why->loc) << "attn-quantize: " << why->message;
        signalPassFailure();
        return;
      }
      if (notes.empty())
        continue;
      CascadeOp next = gc.materialize();
      if (!next) {
        emitError(cascade.getLoc())
            << "attn-quantize: internal error: the rewritten cascade does not "
               "verify";
        signalPassFailure();
        return;
      }
      // The quantization is explicit now: drop `to` and `scale`.
      if (ArrayAttr argAttrs = next.getArgAttrsAttr()) {
        SmallVector<Attribute> updated;
        for (Attribute a : argAttrs) {
          NamedAttrList list(cast<DictionaryAttr>(a));
          if (auto q = dyn_cast_or_null<QuantAttr>(list.get(kQuantAttrName))) {
            if (q.getTo())
              list.erase(kQuantAttrName);
            else if (q.getScale())
              list.set(kQuantAttrName,
                       QuantAttr::get(&getContext(), q.getStorage(), nullptr,
                                      q.getGranularity(), q.getBlockSize(),
                                      q.getAlong(), q.getSmooth(), nullptr,
                                      q.getAcc()));
          }
          updated.push_back(list.getDictionary(&getContext()));
        }
        next.setArgAttrsAttr(ArrayAttr::get(&getContext(), updated));
      }
      for (auto &[loc, text] : notes)
        emitRemark(loc) << text;
      cascade.erase();
    }
  }
};

} // namespace
} // namespace mlir::attn
