//===- SplitQuant.cpp - attn-split-quant ------------------------------------===//
//
// Splits a cascade that attn-quantize rewrote for quantization on the fly
// into the two kernels SageAttention runs (Zhang et al. 2025): a
// quantization kernel and the attention kernel proper.
//
//   * The quantized contractions are the Einsums annotated with an
//     accumulator (`dot = qi * ki sum(e) {attn.quant = #attn.quant<acc =
//     i32>}`). Their *prologue* is every Einsum their operands come from
//     (the quantized tensors, the scales, the absmax reductions, the mean of
//     K), plus every Einsum that a reader of a contraction reads and that is
//     computed from the prologue (the smoothing term `qk_smooth`).
//   * What the rest of the cascade reads from the prologue becomes its
//     interface: the prologue cascade `@<name>_quant` yields those values,
//     and the attention cascade `@<name>` takes them as arguments. A value
//     over a partition rank (a block scale `sq[b, h, m1]`, read as
//     `sq[b, h, m floordiv 32]`) is first written out at the reader's ranks
//     (`sq_m[b, h, m] = sq[b, h, m floordiv 32]`), so that neither kernel's
//     interface has the partition ranks of the blocks; a value over
//     declared ranks is passed as it is (GQA: one int8 K per KV head, read
//     at `h floordiv 4` by the kernel).
//
// Every Einsum is kept as it was: running the prologue and then the
// attention cascade on its results computes exactly what the quantized
// cascade computes (the interpreter checks it in the tests). The prologue
// reads each key and query once per call, outside the key loop: K's mean and
// its block absmax are full reductions over the keys, which no online form of
// the key loop has (attn-derive-online refuses them); docs/quantize.md
// explains the choice. The prologue cascade carries the attribute
// `attn.prologue`; attn-derive-online leaves it alone and attn-lower-cpu
// lowers it with a per-(batch, head) loop nest (LowerCPUPrologue.cpp).
//
//===----------------------------------------------------------------------===//

#include "attn/Passes.h"
#include "attn/Transforms/GlobalCascade.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringSet.h"

#include <map>

namespace mlir::attn {
#define GEN_PASS_DEF_ATTNSPLITQUANTPASS
#include "passes/Passes.h.inc"

namespace {

/// True if `op` is a quantized contraction: annotated with an accumulator.
bool isQuantizedContraction(const GEinsum &e) {
  for (const NamedAttribute &a : e.attrs)
    if (a.getName() == kQuantAttrName)
      if (auto q = dyn_cast<QuantAttr>(a.getValue()); q && q.getAcc())
        return true;
  return false;
}

/// A signature entry of a rebuilt cascade: the value that the new block
/// argument replaces, its name and its annotations.
struct ArgEntry {
  Value value;
  std::string name;
  DictionaryAttr attrs;
};

/// Gives `cascade` the arguments `args` (in this order) and the results
/// `results`: a new body block whose arguments replace `args[i].value`, the
/// yield replaced by one of `results`. Ops listed in `drop` are erased
/// first (latest first), partitions that no Einsum uses any more are
/// removed.
void rebuild(CascadeOp cascade, ArrayRef<ArgEntry> args,
             ArrayRef<std::pair<Value, std::string>> results,
             ArrayRef<Operation *> drop) {
  MLIRContext *ctx = cascade->getContext();
  Block *old = &cascade.getBodyBlock();
  auto *nb = new Block();
  SmallVector<Type> argTypes, resultTypes;
  SmallVector<Attribute> names, attrs, resultNames;
  bool anyAttrs = false;
  for (const ArgEntry &a : args) {
    argTypes.push_back(a.value.getType());
    nb->addArgument(a.value.getType(), a.value.getLoc());
    names.push_back(StringAttr::get(ctx, a.name));
    DictionaryAttr d = a.attrs ? a.attrs : DictionaryAttr::get(ctx, {});
    anyAttrs |= !d.empty();
    attrs.push_back(d);
  }
  // The new yield, before the arguments replace the values it may yield.
  Operation *yield = old->getTerminator();
  OpBuilder b(yield);
  SmallVector<Value> yielded;
  for (auto &[v, n] : results) {
    yielded.push_back(v);
    resultTypes.push_back(v.getType());
    resultNames.push_back(StringAttr::get(ctx, n));
  }
  YieldOp::create(b, yield->getLoc(), yielded);
  yield->erase();
  for (auto [i, a] : llvm::enumerate(args)) {
    Value v = a.value;
    v.replaceAllUsesWith(nb->getArgument(i));
  }
  for (Operation *op : llvm::reverse(drop))
    op->erase();
  nb->getOperations().splice(nb->end(), old->getOperations());
  cascade.getBody().push_back(nb);
  old->dropAllUses();
  old->erase();

  cascade.setFunctionTypeAttr(
      TypeAttr::get(FunctionType::get(ctx, argTypes, resultTypes)));
  cascade.setArgNamesAttr(ArrayAttr::get(ctx, names));
  cascade.setResultNamesAttr(ArrayAttr::get(ctx, resultNames));
  if (anyAttrs)
    cascade.setArgAttrsAttr(ArrayAttr::get(ctx, attrs));
  else
    cascade->removeAttr(cascade.getArgAttrsAttrName());

  // Partitions whose ranks no Einsum uses any more.
  llvm::StringSet<> used;
  cascade.walk([&](EinsumOp op) {
    for (Attribute r : op.getSpace())
      used.insert(cast<StringAttr>(r).getValue());
  });
  SmallVector<Attribute> parts;
  for (auto part : cascade.getPartitions().getAsRange<PartitionAttr>())
    if (used.contains(part.getOuter().getValue()) ||
        used.contains(part.getInner().getValue()))
      parts.push_back(part);
  cascade.setPartitionsAttr(ArrayAttr::get(ctx, parts));
}

struct SplitQuantPass
    : public impl::AttnSplitQuantPassBase<SplitQuantPass> {
  using Base::Base;

  void runOnOperation() override {
    SmallVector<CascadeOp> cascades;
    getOperation().walk([&](CascadeOp c) { cascades.push_back(c); });
    for (CascadeOp c : cascades)
      if (failed(split(c)))
        return signalPassFailure();
  }

  LogicalResult split(CascadeOp cascade) {
    if (cascade->hasAttr(kPrologueAttrName))
      return success();
    GlobalCascade gc(cascade);
    MLIRContext *ctx = gc.getContext();
    std::vector<unsigned> body = gc.body();

    // 1. The quantized contractions and the Einsums that depend on them.
    llvm::SetVector<unsigned> dots;
    for (unsigned id : body)
      if (isQuantizedContraction(gc.einsum(id)))
        dots.insert(id);
    if (dots.empty())
      return success();
    llvm::DenseSet<unsigned> kernel(dots.begin(), dots.end());
    for (unsigned id : body)
      for (unsigned o : gc.operandsOf(id))
        if (kernel.contains(o))
          kernel.insert(id);

    // 2. The prologue: what the contractions' operands come from, and the
    // terms their readers compute from it.
    llvm::DenseSet<unsigned> prologue;
    SmallVector<unsigned> work;
    auto addClosure = [&](unsigned id) {
      work.push_back(id);
      while (!work.empty()) {
        unsigned x = work.pop_back_val();
        if (!gc.isEinsum(x) || kernel.contains(x) || !prologue.insert(x).second)
          continue;
        for (unsigned o : gc.operandsOf(x))
          work.push_back(o);
      }
    };
    for (unsigned d : dots)
      for (unsigned o : gc.operandsOf(d))
        addClosure(o);
    if (prologue.empty()) {
      emitRemark(cascade.getLoc())
          << "attn-split-quant: the quantized contraction"
          << (dots.size() > 1 ? "s read" : " reads")
          << " only arguments (stored quantized values); nothing to split";
      return success();
    }
    for (unsigned id : body) {
      if (kernel.contains(id) || prologue.contains(id))
        continue;
      bool readByDotReader = llvm::any_of(body, [&](unsigned r) {
        return kernel.contains(r) && !dots.contains(r) &&
               llvm::is_contained(gc.operandsOf(r), id) &&
               llvm::any_of(gc.operandsOf(r),
                            [&](unsigned o) { return dots.contains(o); });
      });
      bool fromPrologue = llvm::any_of(
          gc.operandsOf(id), [&](unsigned o) { return prologue.contains(o); });
      if (readByDotReader && fromPrologue)
        addClosure(id);
    }

    // 3. The interface: loads of prologue values outside the prologue, at
    // the value's own ranks (the value itself) or else through a copy at
    // the ranks the indices use.
    unsigned numDeclared = cascade.getRanks().size();
    std::map<std::pair<unsigned, const void *>, unsigned> copies;
    SmallVector<unsigned> copyOrder;
    for (unsigned id : body) {
      if (prologue.contains(id))
        continue;
      GEinsum &e = gc.einsum(id);
      auto redirect = [&](ExprAttr x) -> ExprAttr {
        if (!x)
          return x;
        return mapExpr(x, [&](ExprAttr n, ArrayRef<ExprAttr> a) -> ExprAttr {
          if (n.getKind() != ExprKind::Load || n.getInput() < 0 ||
              !prologue.contains(n.getInput()))
            return nullptr;
          unsigned src = n.getInput();
          SmallVector<unsigned> own = gc.valueRanks(src);
          bool plain = a.size() == own.size();
          for (auto [ix, r] : llvm::zip(a, own))
            plain &= ix.getKind() == ExprKind::Index &&
                     ix.getIndex() == gc.dim(r);
          // A value over declared ranks is an argument of the kernel as it
          // is, read at the same indices (GQA's `ki[b, h floordiv 4, p, e]`
          // stays one int8 K per KV head); only partition ranks (block
          // scales over m1) are written out at the reader's ranks.
          bool declared = llvm::all_of(
              own, [&](unsigned r) { return r < numDeclared; });
          if (plain || declared)
            return nullptr;
          // The ranks the indices use, in global order.
          SmallVector<unsigned> ranks;
          for (unsigned g = 0; g < gc.numRanks(); ++g)
            if (llvm::any_of(a, [&](ExprAttr ix) { return usesRank(ix, g); }))
              ranks.push_back(g);
          ExprAttr load = ExprAttr::getLoad(ctx, src, a);
          auto key = std::make_pair(src, load.getAsOpaquePointer());
          auto it = copies.find(key);
          if (it == copies.end()) {
            std::string name = gc.valueName(src);
            for (unsigned g : ranks)
              if (!llvm::is_contained(own, g))
                name += "_" + gc.rankName(g).str();
            GEinsum c{name, gc.dims(ranks), load, nullptr, Reducer::None,
                      {}, {}, {}, gc.valueElemType(src), {}, gc.einsum(src).loc};
            it = copies.emplace(key, gc.add(std::move(c))).first;
            copyOrder.push_back(it->second);
          }
          return ExprAttr::getLoad(ctx, it->second, gc.indices(ranks));
        });
      };
      e.expr = redirect(e.expr);
      e.cond = redirect(e.cond);
    }
    std::vector<unsigned> order;
    for (unsigned id : body)
      if (prologue.contains(id))
        order.push_back(id);
    llvm::append_range(order, copyOrder);
    for (unsigned id : body)
      if (!prologue.contains(id))
        order.push_back(id);
    gc.body() = order;
    for (unsigned c : copyOrder)
      prologue.insert(c);
    for (unsigned y : gc.yields())
      if (prologue.contains(y))
        return emitError(gc.einsum(y).loc)
               << "attn-split-quant: the result '" << gc.einsum(y).name
               << "' is computed by the quantization prologue; not supported";
    CascadeOp whole = gc.materialize();
    if (!whole)
      return emitError(cascade.getLoc())
             << "attn-split-quant: internal error, the rewritten cascade does "
                "not verify";
    cascade.erase();

    // 4. Two cascades from it.
    llvm::StringSet<> prologueNames;
    for (unsigned id : prologue)
      prologueNames.insert(gc.einsum(id).name);
    SmallVector<EinsumOp> pOps, kOps;
    whole.walk([&](EinsumOp op) {
      (prologueNames.contains(op.getDisplayName()) ? pOps : kOps).push_back(op);
    });
    // The interface, in the order the kernel first reads it: the
    // contractions' operands first.
    llvm::SetVector<Value> iface;
    auto noteReads = [&](EinsumOp op) {
      for (Value v : op->getOperands())
        if (auto def = v.getDefiningOp<EinsumOp>();
            def && prologueNames.contains(def.getDisplayName()))
          iface.insert(v);
    };
    for (EinsumOp op : kOps)
      if (dots.size() && isQuantizedOp(op))
        noteReads(op);
    unsigned numDotOperands = iface.size();
    for (EinsumOp op : kOps)
      noteReads(op);

    Block &block = whole.getBodyBlock();
    auto argAttrs = whole.getArgAttrsAttr();
    auto entryOf = [&](unsigned i) {
      return ArgEntry{block.getArgument(i),
                      cast<StringAttr>(whole.getArgNames()[i]).str(),
                      argAttrs ? cast<DictionaryAttr>(argAttrs[i])
                               : DictionaryAttr()};
    };
    auto usedBy = [&](Value v, ArrayRef<EinsumOp> ops) {
      return llvm::any_of(v.getUsers(), [&](Operation *u) {
        return llvm::is_contained(ops, dyn_cast<EinsumOp>(u));
      });
    };
    auto nameOf = [](Value v) {
      return v.getDefiningOp<EinsumOp>().getDisplayName().str();
    };

    // The prologue: a copy of the whole, without the kernel's Einsums.
    OpBuilder b(whole);
    auto pro = cast<CascadeOp>(b.clone(*whole));
    {
      SmallVector<EinsumOp> proP, proK;
      pro.walk([&](EinsumOp op) {
        (prologueNames.contains(op.getDisplayName()) ? proP : proK).push_back(op);
      });
      SmallVector<ArgEntry> args;
      Block &pb = pro.getBodyBlock();
      for (unsigned i = 0; i < pb.getNumArguments(); ++i)
        if (usedBy(pb.getArgument(i), proP)) {
          ArgEntry a = entryOf(i);
          a.value = pb.getArgument(i);
          args.push_back(a);
        }
      SmallVector<std::pair<Value, std::string>> results;
      for (Value v : iface) {
        std::string n = nameOf(v);
        for (EinsumOp op : proP)
          if (op.getDisplayName() == n)
            results.push_back({op.getResult(), n});
      }
      SmallVector<Operation *> drop;
      for (EinsumOp op : proK)
        drop.push_back(op);
      rebuild(pro, args, results, drop);
      pro.setSymName((whole.getSymName() + "_quant").str());
      pro->setAttr(kPrologueAttrName, FlatSymbolRefAttr::get(ctx, whole.getSymName()));
    }

    // The kernel: the interface values become its arguments.
    SmallVector<ArgEntry> args;
    for (Value v : iface.getArrayRef().take_front(numDotOperands))
      args.push_back({v, nameOf(v), DictionaryAttr()});
    for (unsigned i = 0; i < block.getNumArguments(); ++i)
      if (usedBy(block.getArgument(i), kOps))
        args.push_back(entryOf(i));
    for (Value v : iface.getArrayRef().drop_front(numDotOperands))
      args.push_back({v, nameOf(v), DictionaryAttr()});
    SmallVector<std::pair<Value, std::string>> results;
    for (auto [v, n] : llvm::zip(block.getTerminator()->getOperands(),
                                 whole.getResultNames()))
      results.push_back({v, cast<StringAttr>(n).str()});
    SmallVector<Operation *> drop;
    for (EinsumOp op : pOps)
      drop.push_back(op);
    rebuild(whole, args, results, drop);

    SmallVector<std::string> ifaceNames, inNames;
    for (Attribute a : pro.getResultNames())
      ifaceNames.push_back(cast<StringAttr>(a).str());
    for (Attribute a : pro.getArgNames())
      inNames.push_back(cast<StringAttr>(a).str());
    emitRemark(whole.getLoc())
        << "split the quantization out of '" << whole.getSymName() << "': '"
        << pro.getSymName() << "' (" << llvm::join(inNames, ", ") << " -> "
        << llvm::join(ifaceNames, ", ") << ") runs first; '"
        << whole.getSymName() << "' reads its results";
    return success();
  }

  static bool isQuantizedOp(EinsumOp op) {
    if (auto q = dyn_cast_or_null<QuantAttr>(op->getAttr(kQuantAttrName)))
      return bool(q.getAcc());
    return false;
  }
};

} // namespace
} // namespace mlir::attn
