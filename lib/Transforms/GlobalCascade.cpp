//===- GlobalCascade.cpp - a cascade in rank-global form -------------------===//
//
// Conversion of an attn.cascade to the rank-global form of
// include/attn/Transforms/GlobalCascade.h and back.
//
//===----------------------------------------------------------------------===//

#include "attn/Transforms/GlobalCascade.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/Verifier.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/ADT/StringSet.h"

using namespace mlir;
using namespace mlir::attn;

//===----------------------------------------------------------------------===//
// Expression utilities
//===----------------------------------------------------------------------===//

void attn::walkExpr(ExprAttr e, function_ref<void(ExprAttr)> fn) {
  fn(e);
  for (ExprAttr a : e.getArgs())
    walkExpr(a, fn);
}

ExprAttr attn::withArgs(ExprAttr e, ArrayRef<ExprAttr> args) {
  MLIRContext *ctx = e.getContext();
  switch (e.getKind()) {
  case ExprKind::Load:
    return ExprAttr::getLoad(ctx, e.getInput(), args);
  case ExprKind::Index:
  case ExprKind::Const:
    return e;
  case ExprKind::Cast:
    return ExprAttr::getCast(args[0], e.getCastType());
  default:
    return ExprAttr::getOp(ctx, e.getKind(), args);
  }
}

ExprAttr attn::mapExpr(
    ExprAttr e, function_ref<ExprAttr(ExprAttr, ArrayRef<ExprAttr>)> fn) {
  SmallVector<ExprAttr> args;
  for (ExprAttr a : e.getArgs())
    args.push_back(mapExpr(a, fn));
  if (ExprAttr r = fn(e, args))
    return r;
  return withArgs(e, args);
}

ExprAttr attn::mapAffine(ExprAttr e, function_ref<AffineExpr(AffineExpr)> fn) {
  return mapExpr(e, [&](ExprAttr node, ArrayRef<ExprAttr>) -> ExprAttr {
    if (node.getKind() == ExprKind::Index)
      return ExprAttr::getIndex(fn(node.getIndex()));
    return nullptr;
  });
}

bool attn::usesRank(AffineExpr e, unsigned g) {
  bool found = false;
  e.walk([&](AffineExpr sub) {
    if (auto d = dyn_cast<AffineDimExpr>(sub); d && d.getPosition() == g)
      found = true;
  });
  return found;
}

std::optional<AffineLeZero> attn::affineLeZero(ExprAttr c, unsigned numDims) {
  ExprKind k = c.getKind();
  if (k != ExprKind::Le && k != ExprKind::Lt && k != ExprKind::Ge &&
      k != ExprKind::Gt)
    return std::nullopt;
  ExprAttr l = c.getArgs()[0], r = c.getArgs()[1];
  if (l.getKind() != ExprKind::Index || r.getKind() != ExprKind::Index)
    return std::nullopt;
  AffineLeZero out;
  bool le = k == ExprKind::Le || k == ExprKind::Lt;
  out.d = le ? l.getIndex() - r.getIndex() : r.getIndex() - l.getIndex();
  out.strict = (k == ExprKind::Lt || k == ExprKind::Gt) ? 1 : 0;
  out.coeffs.assign(numDims, 0);
  if (!linearDimCoefficients(out.d, 1, out.coeffs))
    return std::nullopt;
  return out;
}

bool attn::linearDimCoefficients(AffineExpr e, int64_t scale,
                                 SmallVectorImpl<int64_t> &coeffs) {
  bool hasDims = false;
  e.walk([&](AffineExpr s) { hasDims |= isa<AffineDimExpr>(s); });
  if (!hasDims)
    return true;
  switch (e.getKind()) {
  case AffineExprKind::DimId:
    coeffs[cast<AffineDimExpr>(e).getPosition()] += scale;
    return true;
  case AffineExprKind::Add: {
    auto bin = cast<AffineBinaryOpExpr>(e);
    return linearDimCoefficients(bin.getLHS(), scale, coeffs) &&
           linearDimCoefficients(bin.getRHS(), scale, coeffs);
  }
  case AffineExprKind::Mul: {
    auto bin = cast<AffineBinaryOpExpr>(e);
    if (auto c = dyn_cast<AffineConstantExpr>(bin.getRHS()))
      return linearDimCoefficients(bin.getLHS(), scale * c.getValue(), coeffs);
    if (auto c = dyn_cast<AffineConstantExpr>(bin.getLHS()))
      return linearDimCoefficients(bin.getRHS(), scale * c.getValue(), coeffs);
    return false;
  }
  default:
    return false;
  }
}

bool attn::usesRank(ExprAttr e, unsigned g) {
  bool found = false;
  walkExpr(e, [&](ExprAttr node) {
    if (node.getKind() == ExprKind::Index && usesRank(node.getIndex(), g))
      found = true;
  });
  return found;
}

void attn::splitConjuncts(ExprAttr cond, SmallVectorImpl<ExprAttr> &out) {
  if (!cond)
    return;
  if (cond.getKind() == ExprKind::And) {
    splitConjuncts(cond.getArgs()[0], out);
    splitConjuncts(cond.getArgs()[1], out);
    return;
  }
  out.push_back(cond);
}

ExprAttr attn::conjoin(MLIRContext *ctx, ArrayRef<ExprAttr> conds) {
  ExprAttr result;
  for (ExprAttr c : conds)
    result = result ? ExprAttr::getOp(ctx, ExprKind::And, {result, c}) : c;
  return result;
}

//===----------------------------------------------------------------------===//
// GlobalCascade
//===----------------------------------------------------------------------===//

GlobalCascade::GlobalCascade(CascadeOp cascade) : cascade(cascade) {
  for (auto r : cascade.getRanks().getAsRange<RankAttr>())
    rankNames.push_back(r.getName().str());
  for (auto part : cascade.getPartitions().getAsRange<PartitionAttr>()) {
    rankNames.push_back(part.getOuter().str());
    rankNames.push_back(part.getInner().str());
  }
  originalRankCount = rankNames.size();

  Block &block = cascade.getBodyBlock();
  argCount = block.getNumArguments();
  DenseMap<Value, unsigned> ids;
  for (BlockArgument a : block.getArguments())
    ids[a] = a.getArgNumber();
  for (Operation &op : block) {
    if (auto yield = dyn_cast<YieldOp>(op)) {
      for (Value v : yield.getValues())
        yielded.push_back(ids.lookup(v));
      continue;
    }
    auto einsum = cast<EinsumOp>(op);
    SmallVector<AffineExpr> dimRepl, symRepl;
    for (StringRef r : einsum.getSpace().getAsValueRange<StringAttr>()) {
      unsigned g = *rankId(r);
      dimRepl.push_back(dim(g));
      symRepl.push_back(sym(g));
    }
    auto global = [&](AffineExpr e) {
      return e.replaceDimsAndSymbols(dimRepl, symRepl);
    };
    auto globalExpr = [&](ExprAttr e) -> ExprAttr {
      return mapExpr(e, [&](ExprAttr node, ArrayRef<ExprAttr> args) -> ExprAttr {
        if (node.getKind() == ExprKind::Index)
          return ExprAttr::getIndex(global(node.getIndex()));
        if (node.getKind() == ExprKind::Load && node.getInput() >= 0)
          return ExprAttr::getLoad(
              getContext(), ids.lookup(einsum->getOperand(node.getInput())),
              args);
        return nullptr;
      });
    };
    GEinsum g{/*name=*/"", {}, nullptr, nullptr, Reducer::None, {}, {}, {},
              einsum.getResultType().getElementType(), {}, einsum.getLoc()};
    g.name = einsum.getName() ? einsum.getName()->str()
                              : "e" + std::to_string(argCount + einsums.size());
    for (AffineExpr e : einsum.getOutput().getResults())
      g.out.push_back(global(e));
    g.expr = globalExpr(einsum.getExpr());
    if (auto c = einsum.getCond())
      g.cond = globalExpr(*c);
    g.reducer = einsum.getReducer();
    if (auto f = einsum.getFill())
      g.fill = f->convertToDouble();
    if (auto i = einsum.getInit())
      g.init = i->convertToDouble();
    if (auto pop = einsum.getPopulate())
      g.topk = {pop->getK(), *rankId(pop->getRank().getValue())};
    for (NamedAttribute a : einsum->getDiscardableAttrs())
      g.attrs.push_back(a);
    unsigned id = add(std::move(g));
    order.push_back(id);
    ids[einsum.getResult()] = id;
  }
}

std::optional<unsigned> GlobalCascade::rankId(StringRef name) const {
  for (auto [i, n] : llvm::enumerate(rankNames))
    if (n == name)
      return i;
  return std::nullopt;
}

unsigned GlobalCascade::addRank(StringRef name) {
  rankNames.push_back(name.str());
  return rankNames.size() - 1;
}

std::string GlobalCascade::freshRankName(StringRef base) const {
  std::string name = base.str();
  for (int i = 0; rankId(name) || llvm::is_contained(
                                      cascade.getArgNames().getAsValueRange<StringAttr>(),
                                      name);
       ++i)
    name = base.str() + "_" + std::to_string(i);
  return name;
}

AffineExpr GlobalCascade::dim(unsigned g) const {
  return getAffineDimExpr(g, getContext());
}
AffineExpr GlobalCascade::sym(unsigned g) const {
  return getAffineSymbolExpr(g, getContext());
}

SmallVector<AffineExpr> GlobalCascade::dims(ArrayRef<unsigned> ranks) const {
  SmallVector<AffineExpr> out;
  for (unsigned r : ranks)
    out.push_back(dim(r));
  return out;
}

SmallVector<ExprAttr> GlobalCascade::indices(ArrayRef<unsigned> ranks) const {
  SmallVector<ExprAttr> out;
  for (unsigned r : ranks)
    out.push_back(ExprAttr::getIndex(dim(r)));
  return out;
}

void GlobalCascade::addPartition(unsigned rank, unsigned outer, unsigned inner,
                                 int64_t tile, bool ragged) {
  MLIRContext *ctx = getContext();
  newPartitions.push_back(PartitionAttr::get(
      ctx, StringAttr::get(ctx, rankNames[rank]),
      StringAttr::get(ctx, rankNames[outer]),
      StringAttr::get(ctx, rankNames[inner]), tile, ragged));
}

std::optional<int64_t> GlobalCascade::staticSize(unsigned g) const {
  if (g >= originalRankCount)
    return std::nullopt;
  std::optional<int64_t> size = cascade.getRankSize(rankNames[g]);
  if (!size || ShapedType::isDynamic(*size))
    return std::nullopt;
  return size;
}

SmallVector<unsigned> GlobalCascade::valueRanks(unsigned id) const {
  SmallVector<unsigned> out;
  if (!isEinsum(id)) {
    auto type = cast<NamedTensorType>(
        cascade.getBodyBlock().getArgument(id).getType());
    for (StringAttr r : type.getRanks())
      out.push_back(*rankId(r.getValue()));
    return out;
  }
  for (AffineExpr e : einsum(id).out) {
    if (auto add = dyn_cast<AffineBinaryOpExpr>(e))
      e = add.getLHS();
    out.push_back(cast<AffineDimExpr>(e).getPosition());
  }
  return out;
}

Type GlobalCascade::valueElemType(unsigned id) const {
  if (!isEinsum(id))
    return cast<NamedTensorType>(
               cascade.getBodyBlock().getArgument(id).getType())
        .getElementType();
  return einsum(id).elemType;
}

std::string GlobalCascade::valueName(unsigned id) const {
  if (!isEinsum(id))
    return cast<StringAttr>(cascade.getArgNames()[id]).str();
  return einsum(id).name;
}

unsigned GlobalCascade::add(GEinsum e) {
  einsums.push_back(std::make_unique<GEinsum>(std::move(e)));
  return argCount + einsums.size() - 1;
}

SmallVector<unsigned> GlobalCascade::operandsOf(unsigned id) const {
  llvm::SetVector<unsigned> ops;
  auto collect = [&](ExprAttr e) {
    if (!e)
      return;
    walkExpr(e, [&](ExprAttr node) {
      if (node.getKind() == ExprKind::Load && node.getInput() >= 0)
        ops.insert(node.getInput());
    });
  };
  collect(einsum(id).expr);
  collect(einsum(id).cond);
  return SmallVector<unsigned>(ops.begin(), ops.end());
}

void GlobalCascade::removeDeadEinsums() {
  DenseSet<unsigned> live(yielded.begin(), yielded.end());
  for (unsigned id : llvm::reverse(order))
    if (live.contains(id))
      for (unsigned op : operandsOf(id))
        live.insert(op);
  llvm::erase_if(order, [&](unsigned id) { return !live.contains(id); });
}

CascadeOp GlobalCascade::materialize() {
  MLIRContext *ctx = getContext();
  OpBuilder b(cascade);
  auto result = cast<CascadeOp>(b.clone(*cascade));
  if (!newPartitions.empty()) {
    SmallVector<Attribute> parts(result.getPartitions().begin(),
                                 result.getPartitions().end());
    parts.append(newPartitions.begin(), newPartitions.end());
    result.setPartitionsAttr(b.getArrayAttr(parts));
  }
  Block &block = result.getBodyBlock();
  for (Operation &op : llvm::make_early_inc_range(llvm::reverse(block)))
    op.erase();

  DenseMap<unsigned, Value> values;
  for (BlockArgument a : block.getArguments())
    values[a.getArgNumber()] = a;
  b.setInsertionPointToEnd(&block);
  // Names are unique: a later Einsum with a name already given (the
  // reference ref_gm of a split part, then the running ref_gm of its
  // derivation) gets a suffix.
  llvm::StringSet<> names;
  for (Attribute a : cascade.getArgNames())
    names.insert(cast<StringAttr>(a).getValue());
  for (unsigned id : order) {
    GEinsum &g = einsum(id);
    if (!names.insert(g.name).second) {
      std::string base = g.name;
      for (int i = 0; !names.insert(g.name).second; ++i)
        g.name = base + "_" + std::to_string(i);
    }
  }
  for (unsigned id : order) {
    const GEinsum &g = einsum(id);
    // The ranks used: output ranks first, then the others in global order.
    SmallVector<unsigned> outRanks = valueRanks(id);
    llvm::SetVector<unsigned> used(outRanks.begin(), outRanks.end());
    llvm::SmallSetVector<unsigned, 8> iterated(outRanks.begin(), outRanks.end());
    SmallVector<unsigned> others;
    auto note = [&](AffineExpr e, bool isIterated) {
      e.walk([&](AffineExpr sub) {
        if (auto d = dyn_cast<AffineDimExpr>(sub)) {
          if (!used.contains(d.getPosition()))
            others.push_back(d.getPosition());
          used.insert(d.getPosition());
          if (isIterated)
            iterated.insert(d.getPosition());
        } else if (auto s = dyn_cast<AffineSymbolExpr>(sub)) {
          if (!used.contains(s.getPosition()))
            others.push_back(s.getPosition());
          used.insert(s.getPosition());
        }
      });
    };
    auto noteExpr = [&](ExprAttr e) {
      if (e)
        walkExpr(e, [&](ExprAttr node) {
          if (node.getKind() == ExprKind::Index)
            note(node.getIndex(), true);
        });
    };
    for (AffineExpr e : g.out)
      note(e, true);
    noteExpr(g.expr);
    noteExpr(g.cond);
    llvm::sort(others);
    SmallVector<unsigned> space(outRanks.begin(), outRanks.end());
    for (unsigned r : others)
      if (!llvm::is_contained(space, r))
        space.push_back(r);

    SmallVector<AffineExpr> dimRepl(numRanks()), symRepl(numRanks());
    for (unsigned g2 = 0; g2 < numRanks(); ++g2) {
      dimRepl[g2] = getAffineConstantExpr(0, ctx);
      symRepl[g2] = getAffineConstantExpr(0, ctx);
    }
    for (auto [i, r] : llvm::enumerate(space)) {
      dimRepl[r] = getAffineDimExpr(i, ctx);
      symRepl[r] = getAffineSymbolExpr(i, ctx);
    }
    auto local = [&](AffineExpr e) {
      return e.replaceDimsAndSymbols(dimRepl, symRepl);
    };
    SmallVector<Value> operands;
    DenseMap<unsigned, unsigned> operandPos;
    auto localExpr = [&](ExprAttr e) -> ExprAttr {
      return mapExpr(e, [&](ExprAttr node, ArrayRef<ExprAttr> args) -> ExprAttr {
        if (node.getKind() == ExprKind::Index)
          return ExprAttr::getIndex(local(node.getIndex()));
        if (node.getKind() == ExprKind::Load && node.getInput() >= 0) {
          unsigned in = node.getInput();
          auto [it, inserted] = operandPos.try_emplace(in, operands.size());
          if (inserted)
            operands.push_back(values.lookup(in));
          return ExprAttr::getLoad(ctx, it->second, args);
        }
        return nullptr;
      });
    };

    OperationState state(g.loc, EinsumOp::getOperationName());
    SmallVector<Attribute> spaceNames;
    for (unsigned r : space)
      spaceNames.push_back(b.getStringAttr(rankNames[r]));
    SmallVector<AffineExpr> outLocal;
    for (AffineExpr e : g.out)
      outLocal.push_back(local(e));
    ExprAttr expr = localExpr(g.expr);
    ExprAttr cond = g.cond ? localExpr(g.cond) : ExprAttr();
    state.addOperands(operands);
    state.addAttribute(EinsumOp::getSpaceAttrName(state.name),
                       b.getArrayAttr(spaceNames));
    state.addAttribute(
        EinsumOp::getOutputAttrName(state.name),
        AffineMapAttr::get(AffineMap::get(space.size(), space.size(), outLocal, ctx)));
    state.addAttribute(EinsumOp::getExprAttrName(state.name), expr);
    if (g.reducer != Reducer::None) {
      SmallVector<Attribute> reduced;
      for (unsigned r : space)
        if (iterated.contains(r) && !llvm::is_contained(outRanks, r))
          reduced.push_back(b.getStringAttr(rankNames[r]));
      state.addAttribute(EinsumOp::getReducerAttrName(state.name),
                         ReducerAttr::get(ctx, g.reducer));
      state.addAttribute(EinsumOp::getReducedAttrName(state.name),
                         b.getArrayAttr(reduced));
    }
    if (cond)
      state.addAttribute(EinsumOp::getCondAttrName(state.name), cond);
    if (g.topk)
      state.addAttribute(
          EinsumOp::getPopulateAttrName(state.name),
          TopKAttr::get(ctx, g.topk->first,
                        b.getStringAttr(rankNames[g.topk->second])));
    if (g.init)
      state.addAttribute(EinsumOp::getInitAttrName(state.name),
                         b.getF64FloatAttr(*g.init));
    if (g.fill)
      state.addAttribute(EinsumOp::getFillAttrName(state.name),
                         b.getF64FloatAttr(*g.fill));
    state.addAttribute(EinsumOp::getNameAttrName(state.name),
                       b.getStringAttr(g.name));
    for (NamedAttribute a : g.attrs)
      state.addAttribute(a.getName(), a.getValue());
    SmallVector<StringAttr> resultRanks;
    for (unsigned r : outRanks)
      resultRanks.push_back(b.getStringAttr(rankNames[r]));
    state.addTypes(NamedTensorType::get(ctx, resultRanks, g.elemType));
    values[id] = b.create(state)->getResult(0);
  }
  SmallVector<Value> results;
  for (unsigned id : yielded)
    results.push_back(values.lookup(id));
  YieldOp::create(b, cascade.getLoc(), results);
  if (failed(verify(result))) {
    result.erase();
    return nullptr;
  }
  return result;
}
