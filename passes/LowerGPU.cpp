//===- LowerGPU.cpp - attn-lower-gpu: cascades to an sm_80 kernel ---------===//
//
// Lowers an MHA-family cascade in the 1-pass form (attn-derive-online) to a
// gpu.module with one FlashAttention-2 style kernel (docs/gpu.md):
//
//   grid  (ceil(|m| / 64), product of the task ranks), block 128 threads;
//   warp w owns query rows 16w .. 16w+15 of the block's 64-row tile;
//   Q is staged through shared memory into mma.sync A fragments (registers);
//   per key tile j (the partition p -> p1, p0 = T of the cascade):
//     V(j) cp.async -> sV                      (overlaps S = Q K^T)
//     S  = Q K(j)^T    nvgpu.ldmatrix + mma.sync m16n8k16, f32 accumulators
//     K(j+1) cp.async -> sK                    (overlaps softmax and P V)
//     mask (the score Einsum's condition, keys past |p|), running max by
//     quad shuffles, p = exp2(s*c - m*c), rescale l and O by exp2(dm*c)
//     O += P V(j)      P stays in registers (C fragment = A fragment),
//                      V fragments by ldmatrix.trans
//   O / l and LSE = m + ln l written from registers.
// Key tiles that the affine conjuncts of the mask exclude for every row of
// the block are not visited (causal: the loop ends at the diagonal).
//
// The lowering recognises the cascade: every Einsum after the score must be
// one of the derived online-softmax Einsums (checked structurally, below);
// anything else is refused with a located error.
//
//===----------------------------------------------------------------------===//

#include "attn/CodeGen/GPU.h"
#include "attn/Dialect.h"
#include "attn/Passes.h"
#include "attn/Transforms/GlobalCascade.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/AffineExpr.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"

#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/FormatVariadic.h"

#include <cmath>
#include <cstdio>

namespace mlir::attn {
#define GEN_PASS_DEF_ATTNLOWERGPUPASS
#include "passes/Passes.h.inc"

namespace {

//===----------------------------------------------------------------------===//
// Recognising the cascade
//===----------------------------------------------------------------------===//

/// What the kernel needs to know about the cascade.
struct MhaPlan {
  EinsumOp score;                    ///< S = Q K^T * scale [if cond else -inf]
  /// Optional: X = f(S, ranks) [if cond else -inf] between the score and the
  /// softmax (soft-capping, ALiBi), evaluated on the score registers.
  EinsumOp transform;
  int qArg = -1, kArg = -1, vArg = -1; ///< cascade argument numbers
  int oResult = -1, lseResult = -1;  ///< yield positions
  double scale = 1.0;
  int64_t tile = 0; ///< key tile T (the partition of p)
  int64_t dQK = 0, dV = 0;
  unsigned numTaskRanks = 0; ///< leading ranks of every tensor
  std::string rowRank, keyRank, keyOuter, keyInner;
  /// Per leading rank: K and V read it at `t floordiv kvDiv` (GQA/MQA: the
  /// query heads of a group share one K/V head); 1 elsewhere.
  SmallVector<int64_t> kvDiv;
  Type storage;  ///< Q, K, V element type in memory
  Type oElem;    ///< O element type in memory
};

/// The index expression of a load argument (null if it is a gather).
static AffineExpr indexOf(ExprAttr ix) {
  return ix.getKind() == ExprKind::Index ? ix.getIndex() : AffineExpr();
}

/// The rank name of a plain dimension index.
static std::optional<StringRef> dimName(ExprAttr ix, ArrayAttr space) {
  AffineExpr e = indexOf(ix);
  if (auto d = dyn_cast_or_null<AffineDimExpr>(e))
    return cast<StringAttr>(space[d.getPosition()]).getValue();
  return std::nullopt;
}

/// The rank of a plain index `t`, or of `t floordiv c` (c > 0) with its c.
static std::optional<std::pair<StringRef, int64_t>>
dimOrGroup(ExprAttr ix, ArrayAttr space) {
  if (auto n = dimName(ix, space))
    return std::make_pair(*n, int64_t(1));
  auto fd = dyn_cast_or_null<AffineBinaryOpExpr>(indexOf(ix));
  if (!fd || fd.getKind() != AffineExprKind::FloorDiv)
    return std::nullopt;
  auto d = dyn_cast<AffineDimExpr>(fd.getLHS());
  auto c = dyn_cast<AffineConstantExpr>(fd.getRHS());
  if (!d || !c || c.getValue() <= 0)
    return std::nullopt;
  return std::make_pair(cast<StringAttr>(space[d.getPosition()]).getValue(),
                        c.getValue());
}

class Recognizer {
public:
  Recognizer(CascadeOp cascade) : cascade(cascade) {}
  FailureOr<MhaPlan> run(const GpuLowerOptions &options);

private:
  bool isScoreTransform(EinsumOp op);
  InFlightDiagnostic refuse(Operation *at, const Twine &why) {
    return at->emitOpError("attn-lower-gpu: ") << why;
  }
  /// A skeleton of an expression: loads by role, constants by value.
  std::string skeleton(EinsumOp op, ExprAttr e);
  std::string skeleton(EinsumOp op);
  bool matchScore(EinsumOp op);
  bool isKeyIndex(AffineExpr e, ArrayAttr space);

  CascadeOp cascade;
  MhaPlan plan;
  llvm::DenseMap<Value, std::string> role;
  std::string bad;
};

/// True if `e` is the key rank: `p` or `p1 * T + p0`.
bool Recognizer::isKeyIndex(AffineExpr e, ArrayAttr space) {
  auto name = [&](AffineExpr x) -> StringRef {
    if (auto d = dyn_cast<AffineDimExpr>(x))
      return cast<StringAttr>(space[d.getPosition()]).getValue();
    return "";
  };
  if (name(e) == plan.keyRank)
    return true;
  auto add = dyn_cast<AffineBinaryOpExpr>(e);
  if (!add || add.getKind() != AffineExprKind::Add)
    return false;
  auto mul = dyn_cast<AffineBinaryOpExpr>(add.getLHS());
  if (!mul || mul.getKind() != AffineExprKind::Mul ||
      name(add.getRHS()) != plan.keyInner || name(mul.getLHS()) != plan.keyOuter)
    return false;
  auto c = dyn_cast<AffineConstantExpr>(mul.getRHS());
  return c && c.getValue() == plan.tile;
}

std::string Recognizer::skeleton(EinsumOp op, ExprAttr e) {
  switch (e.getKind()) {
  case ExprKind::Const: {
    double v = e.getConstValue();
    if (std::isinf(v))
      return v < 0 ? "-inf" : "inf";
    char buf[32];
    snprintf(buf, sizeof(buf), "%g", v);
    return buf;
  }
  case ExprKind::Index:
    if (auto c = dyn_cast<AffineConstantExpr>(e.getIndex()))
      return std::to_string(c.getValue());
    bad = "an index value in the expression";
    return "?";
  case ExprKind::Load: {
    if (e.getInput() < 0)
      return "self";
    Value in = op.getInputs()[e.getInput()];
    auto it = role.find(in);
    if (it == role.end()) {
      bad = "an operand that is not part of the derived softmax";
      return "?";
    }
    std::string r = it->second;
    // Loads of Einsum results read the reader's own point; along the
    // iterative rank of a running value: p1 (before), p1 + 1 (after),
    // |p1| (final).
    auto def = in.getDefiningOp<EinsumOp>();
    if (!def)
      return r;
    StringRef iter = def.getIterativeRank();
    auto outRanks = def.getOutputRanks();
    for (auto [i, ix] : llvm::enumerate(e.getArgs())) {
      AffineExpr x = indexOf(ix);
      if (!x) {
        bad = "a gather";
        return "?";
      }
      if (!iter.empty() && outRanks[i] == iter) {
        if (isa<AffineDimExpr>(x))
          continue;
        if (auto add = dyn_cast<AffineBinaryOpExpr>(x);
            add && add.getKind() == AffineExprKind::Add &&
            isa<AffineDimExpr>(add.getLHS()) &&
            isa<AffineConstantExpr>(add.getRHS()) &&
            cast<AffineConstantExpr>(add.getRHS()).getValue() == 1)
          r += "'";
        else if (x.isSymbolicOrConstant())
          r += "$";
        else
          r += "?";
        continue;
      }
      auto d = dyn_cast<AffineDimExpr>(x);
      if (!d ||
          cast<StringAttr>(op.getSpace()[d.getPosition()]).getValue() !=
              outRanks[i])
        r += "?";
    }
    return r;
  }
  default: {
    std::string s = stringifyExprKind(e.getKind()).str() + "(";
    for (auto [i, a] : llvm::enumerate(e.getArgs()))
      s += (i ? "," : "") + skeleton(op, a);
    return s + ")";
  }
  }
}

std::string Recognizer::skeleton(EinsumOp op) {
  std::string s = stringifyReducer(op.getReducer()).str() + ";";
  s += op.getIterativeRank().empty() ? ";" : "it;";
  if (auto init = op.getInit())
    s += skeleton(op, ExprAttr::getConst(op.getContext(),
                                         init->convertToDouble()));
  s += ";" + skeleton(op, op.getExpr()) + ";";
  if (op.getCond())
    s += skeleton(op, *op.getCond());
  if (auto fill = op.getFill())
    s += ";else " + skeleton(op, ExprAttr::getConst(op.getContext(),
                                                    fill->convertToDouble()));
  if (op.getPopulate())
    s += ";topk";
  return s;
}

/// X[t.., m, p1, p0] = f(S[t.., m, p1, p0]) [if (cond) else -inf]: no
/// reduction, the score's output ranks, S read once at its own point, and
/// otherwise constants, affine values of the ranks and + - * / neg max min
/// exp exp2 tanh (what the kernel evaluates per score register).
bool Recognizer::isScoreTransform(EinsumOp op) {
  if (op.getReducer() != Reducer::None || op.getPopulate() ||
      !op.getIterativeRank().empty() ||
      op.getOutputRanks() != plan.score.getOutputRanks() ||
      op.getInputs().size() != 1 || op.getInputs()[0] != plan.score.getResult())
    return false;
  ArrayAttr space = op.getSpace();
  auto outRanks = op.getOutputRanks();
  int loads = 0;
  bool ok = true;
  op.getExpr().walk([&](ExprAttr n) {
    switch (n.getKind()) {
    case ExprKind::Load: {
      ++loads;
      auto args = n.getArgs();
      ok &= n.getInput() == 0 && args.size() == outRanks.size();
      for (auto [i, ix] : llvm::enumerate(args))
        ok &= ok && dimName(ix, space) == StringRef(outRanks[i]);
      break;
    }
    case ExprKind::Const: case ExprKind::Index: case ExprKind::Add:
    case ExprKind::Sub: case ExprKind::Mul: case ExprKind::Div:
    case ExprKind::Neg: case ExprKind::Max: case ExprKind::Min:
    case ExprKind::Exp: case ExprKind::Exp2: case ExprKind::Tanh:
      break;
    default:
      ok = false;
    }
  });
  return ok && loads == 1;
}

/// S[t.., m, p1, p0] = Q[t.., m, e] * K[t.., p1 * T + p0, e] * c sum(e)
///   [if (affine conjuncts) else -inf]
bool Recognizer::matchScore(EinsumOp op) {
  if (op.getReducer() != Reducer::Sum || op.getReduced().size() != 1 ||
      op.getPopulate() || !op.getIterativeRank().empty())
    return false;
  SmallVector<ExprAttr> factors{op.getExpr()}, loads;
  double c = 1.0;
  while (!factors.empty()) {
    ExprAttr f = factors.pop_back_val();
    if (f.getKind() == ExprKind::Mul) {
      factors.append(f.getArgs().begin(), f.getArgs().end());
    } else if (f.getKind() == ExprKind::Const) {
      c *= f.getConstValue();
    } else if (f.getKind() == ExprKind::Load && f.getInput() >= 0) {
      loads.push_back(f);
    } else {
      return false;
    }
  }
  if (loads.size() != 2 || !(c > 0))
    return false;
  ArrayAttr space = op.getSpace();
  StringRef red = cast<StringAttr>(op.getReduced()[0]).getValue();
  auto outRanks = op.getOutputRanks();
  Block &body = cascade.getBodyBlock();
  for (int swap = 0; swap < 2; ++swap) {
    ExprAttr q = loads[swap], k = loads[1 - swap];
    auto qa = dyn_cast<BlockArgument>(op.getInputs()[q.getInput()]);
    auto ka = dyn_cast<BlockArgument>(op.getInputs()[k.getInput()]);
    if (!qa || !ka || qa.getOwner() != &body || ka.getOwner() != &body ||
        qa == ka)
      continue;
    auto qi = q.getArgs(), ki = k.getArgs();
    if (qi.size() != ki.size() || qi.size() < 2)
      continue;
    unsigned n = qi.size() - 2;
    bool ok = dimName(qi.back(), space) == red &&
              dimName(ki.back(), space) == red &&
              indexOf(ki[n]) && isKeyIndex(indexOf(ki[n]), space) &&
              dimName(qi[n], space).has_value();
    // K's leading indices: Q's, or a group of them (t floordiv c: GQA).
    SmallVector<int64_t> div;
    for (unsigned i = 0; ok && i < n; ++i) {
      auto kd = dimOrGroup(ki[i], space);
      ok = dimName(qi[i], space).has_value() && kd &&
           kd->first == *dimName(qi[i], space) && outRanks.size() > i &&
           outRanks[i] == *dimName(qi[i], space);
      if (ok)
        div.push_back(kd->second);
    }
    if (!ok)
      continue;
    plan.kvDiv = div;
    plan.score = op;
    plan.qArg = qa.getArgNumber();
    plan.kArg = ka.getArgNumber();
    plan.scale = c;
    plan.numTaskRanks = n;
    plan.rowRank = dimName(qi[n], space)->str();
    plan.dQK = *cascade.getRankSize(red);
    return true;
  }
  return false;
}

FailureOr<MhaPlan> Recognizer::run(const GpuLowerOptions &options) {
  // The key loop: one partition p -> p1, p0 = T.
  auto parts = cascade.getPartitions().getAsRange<PartitionAttr>();
  if (cascade.getPartitions().size() != 1) {
    refuse(cascade, "expects the 1-pass form with one key partition "
                    "(run attn-derive-online first)");
    return failure();
  }
  PartitionAttr part = *parts.begin();
  plan.keyRank = part.getRank().getValue().str();
  plan.keyOuter = part.getOuter().getValue().str();
  plan.keyInner = part.getInner().getValue().str();
  plan.tile = part.getTile();
  if (plan.tile % 16 != 0 || plan.tile > 128) {
    refuse(cascade, llvm::formatv("key tile {0} is not a multiple of 16 up "
                                  "to 128", plan.tile).str());
    return failure();
  }
  if (cascade.getBody().getNumArguments() != 3) {
    refuse(cascade, "expects exactly the inputs q, k, v");
    return failure();
  }

  auto ops = llvm::to_vector(cascade.getBodyBlock().getOps<EinsumOp>());
  if (ops.empty() || !matchScore(ops.front())) {
    refuse(ops.empty() ? cascade.getOperation() : ops.front().getOperation(),
           "the first Einsum is not a score Q[.., m, e] * K[.., p, e] * c "
           "sum(e) with c > 0 (gathers and other scores are not "
           "supported yet)");
    return failure();
  }
  Block &body = cascade.getBodyBlock();
  role[body.getArgument(plan.qArg)] = "Q";
  role[body.getArgument(plan.kArg)] = "K";
  plan.vArg = 3 - plan.qArg - plan.kArg;
  role[body.getArgument(plan.vArg)] = "V";
  role[plan.score.getResult()] = "S";

  // A score transform: X = f(S at its own point, constants, rank values)
  // with the score's output ranks (soft-capping, ALiBi). Its result takes
  // the role of S for the softmax templates.
  if (ops.size() > 1 && isScoreTransform(ops[1])) {
    plan.transform = ops[1];
    role[plan.score.getResult()] = "S0";
    role[plan.transform.getResult()] = "S";
    ops.erase(ops.begin() + 1);
  }

  // The conditions of the score (and of the transform): comparisons of
  // affine values, joined by `and`, with else -inf.
  for (EinsumOp masked : {plan.score, plan.transform})
  if (auto cond = masked ? masked.getCond() : std::nullopt) {
    auto fill = masked.getFill();
    bool affine = fill && fill->isInfinity() && fill->isNegative();
    SmallVector<ExprAttr> work{*cond};
    while (affine && !work.empty()) {
      ExprAttr c = work.pop_back_val();
      switch (c.getKind()) {
      case ExprKind::And:
        work.append(c.getArgs().begin(), c.getArgs().end());
        break;
      case ExprKind::Lt: case ExprKind::Le: case ExprKind::Gt:
      case ExprKind::Ge: case ExprKind::Eq: case ExprKind::Ne:
        for (ExprAttr a : c.getArgs())
          affine &= a.getKind() == ExprKind::Index;
        break;
      default:
        affine = false;
      }
    }
    if (!affine) {
      refuse(masked, "the score's condition must compare affine values "
                     "of the ranks (joined by 'and') with else -inf; "
                     "masks read from tensors are not supported yet");
      return failure();
    }
  }

  // The derived online softmax, Einsum by Einsum (attn-derive-online).
  struct Template {
    const char *name;
    SmallVector<std::string> forms;
  };
  SmallVector<Template> templates = {
      {"l_gm", {"max;;;S;"}},
      {"r_gm", {"none;it;-inf;max(self,l_gm);"}},
      {"ref_gm", {"none;;;select(eq(r_gm',-inf),0,r_gm');"}},
      {"c_gm", {"none;;;exp(sub(r_gm,ref_gm));"}},
      {"gm", {"none;;;r_gm$;"}},
      {"sn", {"none;;;exp(sub(S,ref_gm));", "none;;;exp(sub(S,ref_gm));gt(r_gm',-inf)"}},
      {"l_sd", {"sum;;;sn;"}},
      {"r_sd", {"none;it;0;add(mul(self,c_gm),l_sd);"}},
      {"sd", {"none;;;r_sd$;"}},
      {"l_o_num", {"sum;;;mul(sn,V);"}},
      {"r_o_num", {"none;it;0;add(mul(self,c_gm),l_o_num);"}},
      {"o_num", {"none;;;r_o_num$;"}},
      {"o", {"none;;;div(o_num,sd);", "none;;;div(o_num,sd);gt(sd,0)"}},
      {"lse", {"none;;;add(gm,log(sd));"}},
  };
  llvm::StringSet<> matched;
  for (EinsumOp op : llvm::drop_begin(ops)) {
    bad.clear();
    std::string s = skeleton(op);
    const char *found = nullptr;
    for (Template &t : templates)
      if (!matched.contains(t.name) && llvm::is_contained(t.forms, s))
        found = t.name;
    if (!found) {
      refuse(op, "not a step of the derived online softmax of an MHA-family "
                 "cascade")
          << (bad.empty() ? "" : " (" + bad + ")") << ": " << s;
      return failure();
    }
    matched.insert(found);
    role[op.getResult()] = found;
  }
  // The value load of l_o_num: V[t.., p1 * T + p0, f].
  for (EinsumOp op : ops)
    if (role[op.getResult()] == "l_o_num") {
      bool ok = false;
      op.getExpr().walk([&](ExprAttr n) {
        if (n.getKind() != ExprKind::Load || n.getInput() < 0 ||
            op.getInputs()[n.getInput()] != body.getArgument(plan.vArg))
          return;
        auto args = n.getArgs();
        ArrayAttr space = op.getSpace();
        ok = args.size() == plan.numTaskRanks + 2 &&
             indexOf(args[plan.numTaskRanks]) &&
             isKeyIndex(indexOf(args[plan.numTaskRanks]), space) &&
             dimName(args.back(), space).has_value();
        for (unsigned i = 0; ok && i < plan.numTaskRanks; ++i) {
          auto vd = dimOrGroup(args[i], space);
          ok = vd && vd->first == StringRef(op.getOutputRanks()[i]) &&
               vd->second == plan.kvDiv[i];
        }
        if (ok)
          plan.dV = *cascade.getRankSize(*dimName(args.back(), space));
      });
      if (!ok) {
        refuse(op, "the values must be read as V[.., p, f] with the "
                   "score's leading ranks, grouped as K's");
        return failure();
      }
    }

  // The results: o (and optionally lse).
  auto yield = cast<YieldOp>(body.getTerminator());
  for (auto [i, v] : llvm::enumerate(yield.getValues())) {
    StringRef r = role.lookup(v);
    if (r == "o" && plan.oResult < 0)
      plan.oResult = i;
    else if (r == "lse" && plan.lseResult < 0)
      plan.lseResult = i;
    else {
      refuse(cascade, "yields something other than o and lse");
      return failure();
    }
  }
  if (plan.oResult < 0) {
    refuse(cascade, "does not yield the attention output o");
    return failure();
  }

  // Sizes and types.
  for (int64_t d : {plan.dQK, plan.dV})
    if (ShapedType::isDynamic(d) || d % 16 != 0 || d > 128) {
      refuse(cascade, "head dimensions must be static multiples of 16 up "
                      "to 128");
      return failure();
    }
  if ((plan.tile * plan.dQK / 8) % kGpuBlockThreads != 0 ||
      (plan.tile * plan.dV / 8) % kGpuBlockThreads != 0) {
    refuse(cascade, "key tile x head dimension must be a multiple of 1024 "
                    "elements (one 16-byte copy per thread)");
    return failure();
  }
  MLIRContext *ctx = cascade.getContext();
  auto argElem = [&](int i) {
    return cast<NamedTensorType>(body.getArgument(i).getType()).getElementType();
  };
  Type override;
  if (options.storage == "bf16")
    override = BFloat16Type::get(ctx);
  else if (options.storage == "f16")
    override = Float16Type::get(ctx);
  else if (!options.storage.empty()) {
    refuse(cascade, "storage must be bf16 or f16");
    return failure();
  }
  SmallVector<Type> elems;
  for (int i = 0; i < 3; ++i) {
    Type t = argElem(i);
    if (override && t.isF32())
      t = override;
    elems.push_back(t);
  }
  if (elems[0] != elems[1] || elems[0] != elems[2] ||
      !(elems[0].isBF16() || elems[0].isF16())) {
    refuse(cascade, "q, k and v must all be bf16 or all f16 (or f32 with "
                    "storage=bf16|f16)");
    return failure();
  }
  plan.storage = elems[0];
  auto resElem = [&](int i) {
    return cast<NamedTensorType>(cascade.getFunctionTypeValue().getResult(i))
        .getElementType();
  };
  plan.oElem = resElem(plan.oResult);
  if (override && plan.oElem.isF32())
    plan.oElem = override;
  if (!(plan.oElem.isF32() || plan.oElem == plan.storage)) {
    refuse(cascade, "o must be f32 or the storage type");
    return failure();
  }
  if (plan.lseResult >= 0 && !resElem(plan.lseResult).isF32()) {
    refuse(cascade, "lse must be f32");
    return failure();
  }
  return plan;
}

//===----------------------------------------------------------------------===//
// The kernel
//===----------------------------------------------------------------------===//

class KernelBuilder {
public:
  KernelBuilder(CascadeOp cascade, const MhaPlan &plan)
      : cascade(cascade), plan(plan),
        b(cascade.getLoc(), cascade->getContext()) {}
  FailureOr<gpu::GPUModuleOp> run();

private:
  using Acc = SmallVector<Value, 4>; ///< m16n8 C fragment: 4 f32 per lane

  Value cI(int64_t v) { return arith::ConstantIndexOp::create(b, v); }
  Value c32(int64_t v) { return arith::ConstantIntOp::create(b, v, 32); }
  Value cF(double v) {
    return arith::ConstantOp::create(b, b.getF32FloatAttr(float(v)));
  }
  Value toI32(Value idx) {
    return arith::IndexCastOp::create(b, b.getI32Type(), idx);
  }
  Value exp2(Value x) {
    return LLVM::CallIntrinsicOp::create(
               b, b.getF32Type(), b.getStringAttr("llvm.nvvm.ex2.approx.ftz.f"),
               ValueRange{x})
        .getResult(0);
  }
  Value quadMax(Value x) {
    for (int off : {1, 2})
      x = arith::MaxNumFOp::create(
          b, x, gpu::ShuffleOp::create(b, x, off, 32, gpu::ShuffleMode::XOR)
                    .getShuffleResult());
    return x;
  }
  Value quadSum(Value x) {
    for (int off : {1, 2})
      x = arith::AddFOp::create(
          b, x, gpu::ShuffleOp::create(b, x, off, 32, gpu::ShuffleMode::XOR)
                    .getShuffleResult());
    return x;
  }

  /// Issues cp.async copies of rows [row0, row0 + rows) of `src` (rows at
  /// or past `limit` zero-filled) into `dst`; returns the group token.
  Value copyTile(Value src, Value dst, Value row0, int64_t rows, int64_t d,
                 Value limit, bool kv = false);
  Acc mma(Value a, Value bFrag, ArrayRef<Value> c);
  Value affine(AffineExpr e, ArrayRef<Value> dims, ArrayRef<Value> syms);
  Value predicate(ExprAttr e, ArrayRef<Value> dims, ArrayRef<Value> syms);
  std::pair<Value, Value> keyTileRange(Value rowLo, Value rowHi);
  void narrowKeyTiles(EinsumOp masked, Value rowLo, Value rowHi, Value &begin,
                      Value &end);
  Value transformValue(ExprAttr e, ArrayRef<Value> dims, ArrayRef<Value> syms,
                       Value s);
  Value tanhF(Value x);

  CascadeOp cascade;
  MhaPlan plan;
  ImplicitLocOpBuilder b;
  Value tid, lane, warp;
  SmallVector<Value> task; ///< values of the task ranks (index)
  Value numRows, numKeys;  ///< |m|, |p| (index)
  Value numTiles;          ///< ceildiv(|p|, T)
  llvm::StringMap<Value> rankValue, rankSize; ///< i32, by rank name
};

Value KernelBuilder::copyTile(Value src, Value dst, Value row0, int64_t rows,
                              int64_t d, Value limit, bool kv) {
  // K and V: the task's group (t floordiv kvDiv) along grouped ranks.
  SmallVector<Value> lead(task.begin(), task.end());
  if (kv)
    for (auto [t, c] : llvm::zip(lead, plan.kvDiv))
      if (c != 1)
        t = arith::DivUIOp::create(b, t, cI(c));
  int64_t chunks = d / 8, total = rows * chunks;
  SmallVector<Value> tokens;
  auto tokTy = nvgpu::DeviceAsyncTokenType::get(b.getContext());
  for (int64_t i = 0; i < total / kGpuBlockThreads; ++i) {
    Value idx = arith::AddIOp::create(b, tid, cI(i * kGpuBlockThreads));
    Value r = arith::DivUIOp::create(b, idx, cI(chunks));
    Value c = arith::MulIOp::create(b, arith::RemUIOp::create(b, idx, cI(chunks)),
                                    cI(8));
    Value g = arith::AddIOp::create(b, row0, r);
    Value valid = arith::CmpIOp::create(b, arith::CmpIPredicate::ult, g, limit);
    Value gs = arith::SelectOp::create(b, valid, g, cI(0));
    Value n = arith::SelectOp::create(b, valid, cI(8), cI(0));
    SmallVector<Value> srcIdx(lead);
    srcIdx.append({gs, c});
    tokens.push_back(nvgpu::DeviceAsyncCopyOp::create(
        b, tokTy, dst, ValueRange{r, c}, src, srcIdx, b.getIndexAttr(8), n,
        b.getUnitAttr()));
  }
  return nvgpu::DeviceAsyncCreateGroupOp::create(b, tokTy, tokens);
}

/// D = A B + C on one m16n8k16 tile. f16: nvgpu.mma.sync. bf16:
/// nvvm.mma.sync on packed i32 operands (MLIR 22's nvgpu.mma.sync cannot
/// deduce the bf16 PTX types; fixed upstream by llvm#194203).
KernelBuilder::Acc KernelBuilder::mma(Value a, Value bFrag, ArrayRef<Value> c) {
  Acc d;
  if (plan.storage.isF16()) {
    Value cv = vector::FromElementsOp::create(
        b, VectorType::get({2, 2}, b.getF32Type()), c);
    Value r = nvgpu::MmaSyncOp::create(b, a, bFrag, cv, ArrayRef<int64_t>{16, 8, 16});
    for (int64_t i = 0; i < 4; ++i)
      d.push_back(vector::ExtractOp::create(b, r, ArrayRef<int64_t>{i / 2, i % 2}));
    return d;
  }
  auto packed = [&](Value frag, int64_t n) {
    SmallVector<Value> regs;
    for (int64_t i = 0; i < n; ++i) {
      Value pair = vector::ExtractOp::create(b, frag, ArrayRef<int64_t>{i});
      Value w = vector::BitCastOp::create(
          b, VectorType::get({1}, b.getI32Type()), pair);
      regs.push_back(vector::ExtractOp::create(b, w, ArrayRef<int64_t>{0}));
    }
    return regs;
  };
  Type f32 = b.getF32Type();
  auto structTy = LLVM::LLVMStructType::getLiteral(b.getContext(), {f32, f32, f32, f32});
  Value r = NVVM::MmaOp::create(
      b, structTy, packed(a, 4), packed(bFrag, 2), c, ArrayRef<int64_t>{16, 8, 16},
      std::nullopt, std::nullopt,
      std::array<NVVM::MMATypes, 2>{NVVM::MMATypes::bf16, NVVM::MMATypes::bf16},
      std::array<NVVM::MMALayout, 2>{NVVM::MMALayout::row, NVVM::MMALayout::col});
  for (int64_t i = 0; i < 4; ++i)
    d.push_back(LLVM::ExtractValueOp::create(b, r, ArrayRef<int64_t>{i}));
  return d;
}

/// An affine expression of the score's ranks in i32 (dims and symbols are
/// the values of the score's space ranks and their sizes).
Value KernelBuilder::affine(AffineExpr e, ArrayRef<Value> dims,
                            ArrayRef<Value> syms) {
  switch (e.getKind()) {
  case AffineExprKind::Constant:
    return c32(cast<AffineConstantExpr>(e).getValue());
  case AffineExprKind::DimId:
    return dims[cast<AffineDimExpr>(e).getPosition()];
  case AffineExprKind::SymbolId:
    return syms[cast<AffineSymbolExpr>(e).getPosition()];
  default:
    break;
  }
  auto bin = cast<AffineBinaryOpExpr>(e);
  Value l = affine(bin.getLHS(), dims, syms), r = affine(bin.getRHS(), dims, syms);
  switch (e.getKind()) {
  case AffineExprKind::Add:
    return arith::AddIOp::create(b, l, r);
  case AffineExprKind::Mul:
    return arith::MulIOp::create(b, l, r);
  case AffineExprKind::FloorDiv:
    return arith::FloorDivSIOp::create(b, l, r);
  case AffineExprKind::CeilDiv:
    return arith::CeilDivSIOp::create(b, l, r);
  default: { // Mod: non-negative remainder
    Value m = arith::RemSIOp::create(b, l, r);
    Value neg = arith::CmpIOp::create(b, arith::CmpIPredicate::slt, m, c32(0));
    return arith::SelectOp::create(b, neg, arith::AddIOp::create(b, m, r), m);
  }
  }
}

Value KernelBuilder::predicate(ExprAttr e, ArrayRef<Value> dims,
                               ArrayRef<Value> syms) {
  auto args = e.getArgs();
  if (e.getKind() == ExprKind::And) {
    Value v = predicate(args[0], dims, syms);
    for (ExprAttr a : args.drop_front())
      v = arith::AndIOp::create(b, v, predicate(a, dims, syms));
    return v;
  }
  arith::CmpIPredicate p;
  switch (e.getKind()) {
  case ExprKind::Lt: p = arith::CmpIPredicate::slt; break;
  case ExprKind::Le: p = arith::CmpIPredicate::sle; break;
  case ExprKind::Gt: p = arith::CmpIPredicate::sgt; break;
  case ExprKind::Ge: p = arith::CmpIPredicate::sge; break;
  case ExprKind::Eq: p = arith::CmpIPredicate::eq; break;
  default: p = arith::CmpIPredicate::ne; break;
  }
  return arith::CmpIOp::create(b, p, affine(args[0].getIndex(), dims, syms),
                               affine(args[1].getIndex(), dims, syms));
}

/// The score transform at one register: S is `s` (already times c), index
/// values are i32 affine values of the ranks converted to f32.
Value KernelBuilder::transformValue(ExprAttr e, ArrayRef<Value> dims,
                                    ArrayRef<Value> syms, Value s) {
  // Operands in order (the IR reads left to right).
  SmallVector<Value> a;
  if (e.getKind() != ExprKind::Load)
    for (ExprAttr x : e.getArgs())
      a.push_back(transformValue(x, dims, syms, s));
  auto arg = [&](unsigned i) { return a[i]; };
  switch (e.getKind()) {
  case ExprKind::Load:
    return s;
  case ExprKind::Const:
    return cF(e.getConstValue());
  case ExprKind::Index:
    return arith::SIToFPOp::create(b, b.getF32Type(),
                                   affine(e.getIndex(), dims, syms));
  case ExprKind::Add:
    return arith::AddFOp::create(b, arg(0), arg(1));
  case ExprKind::Sub:
    return arith::SubFOp::create(b, arg(0), arg(1));
  case ExprKind::Mul:
    return arith::MulFOp::create(b, arg(0), arg(1));
  case ExprKind::Div:
    return arith::DivFOp::create(b, arg(0), arg(1));
  case ExprKind::Neg:
    return arith::NegFOp::create(b, arg(0));
  case ExprKind::Max:
    return arith::MaximumFOp::create(b, arg(0), arg(1));
  case ExprKind::Min:
    return arith::MinimumFOp::create(b, arg(0), arg(1));
  case ExprKind::Exp:
    return exp2(arith::MulFOp::create(b, arg(0), cF(M_LOG2E)));
  case ExprKind::Exp2:
    return exp2(arg(0));
  case ExprKind::Tanh:
    return tanhF(arg(0));
  default:
    llvm_unreachable("checked by isScoreTransform");
  }
}

/// tanh(x) = sign(x) (1 - 2 / (exp(2 |x|) + 1)) with ex2.approx (relative
/// error about 2^-22, where tanh.approx.f32 has 2^-11: soft-capping at 30
/// multiplies the error by 30). exp(2|x|) = inf for large |x| gives 1.
Value KernelBuilder::tanhF(Value x) {
  Value ax = math::AbsFOp::create(b, x);
  Value e2 = exp2(arith::MulFOp::create(b, ax, cF(2 * M_LOG2E)));
  Value t = arith::SubFOp::create(
      b, cF(1),
      arith::DivFOp::create(b, cF(2), arith::AddFOp::create(b, e2, cF(1))));
  return math::CopySignOp::create(b, t, x);
}

/// The key tiles [begin, end) that can hold a visible key for some row in
/// [rowLo, rowHi]: each conjunct `cp * p + cm * m + rest <= 0` (p = p1 * T
/// + p0 or p itself, other ranks fixed per block) bounds p for the
/// extreme rows; conjuncts of another form bound nothing.
std::pair<Value, Value> KernelBuilder::keyTileRange(Value rowLo, Value rowHi) {
  Value begin = c32(0), end = toI32(numTiles);
  for (EinsumOp masked : {plan.score, plan.transform})
    if (masked && masked.getCond())
      narrowKeyTiles(masked, rowLo, rowHi, begin, end);
  begin = arith::MaxSIOp::create(b, begin, c32(0));
  end = arith::MaxSIOp::create(b, begin, end);
  return {begin, end};
}

/// keyTileRange for the conjuncts of one Einsum's condition.
void KernelBuilder::narrowKeyTiles(EinsumOp masked, Value rowLo, Value rowHi,
                                   Value &begin, Value &end) {
  auto cond = masked.getCond();
  ArrayAttr space = masked.getSpace();
  SmallVector<ExprAttr> conjuncts, work{*cond};
  while (!work.empty()) {
    ExprAttr c = work.pop_back_val();
    if (c.getKind() == ExprKind::And)
      work.append(c.getArgs().begin(), c.getArgs().end());
    else
      conjuncts.push_back(c);
  }
  auto pos = [&](StringRef n) -> int {
    for (auto [i, s] : llvm::enumerate(space))
      if (cast<StringAttr>(s).getValue() == n)
        return i;
    return -1;
  };
  int pP = pos(plan.keyRank), p1 = pos(plan.keyOuter), p0 = pos(plan.keyInner),
      pm = pos(plan.rowRank);
  for (ExprAttr c : conjuncts) {
    // d + strict <= 0.
    std::optional<AffineLeZero> bound = affineLeZero(c, space.size());
    if (!bound)
      continue;
    AffineExpr d = bound->d;
    int64_t strict = bound->strict;
    ArrayRef<int64_t> flat = bound->coeffs;
    int64_t cp = 0;
    if (p0 >= 0 && flat[p0] != 0) {
      if (p1 < 0 || flat[p1] != flat[p0] * plan.tile ||
          (pP >= 0 && flat[pP] != 0))
        continue;
      cp = flat[p0];
    } else if (pP >= 0 && flat[pP] != 0 && (p1 < 0 || flat[p1] == 0)) {
      cp = flat[pP];
    } else {
      continue;
    }
    int64_t cm = pm >= 0 ? flat[pm] : 0;
    // rest = d at p = 0 and m = 0, the task ranks as they are.
    SmallVector<Value> dims, syms;
    for (auto s : space) {
      StringRef n = cast<StringAttr>(s).getValue();
      bool zero = n == plan.keyRank || n == plan.keyOuter ||
                  n == plan.keyInner || n == plan.rowRank;
      dims.push_back(zero ? c32(0) : rankValue.lookup(n));
      syms.push_back(rankSize.lookup(n));
    }
    bool known = true;
    for (auto [i, v] : llvm::enumerate(dims))
      known &= v || flat[i] == 0;
    if (!known)
      continue;
    for (auto &v : dims)
      if (!v)
        v = c32(0);
    Value rest = arith::AddIOp::create(b, affine(d, dims, syms), c32(strict));
    // cp * p <= -(cm * m + rest) at the extreme rows.
    auto rhs = [&](Value m) {
      return arith::SubIOp::create(
          b, c32(0),
          arith::AddIOp::create(b, arith::MulIOp::create(b, c32(cm), m), rest));
    };
    Value lo = rhs(rowLo), hi = rhs(rowHi);
    if (cp > 0) {
      Value pmax = arith::MaxSIOp::create(
          b, arith::FloorDivSIOp::create(b, lo, c32(cp)),
          arith::FloorDivSIOp::create(b, hi, c32(cp)));
      Value tileEnd = arith::AddIOp::create(
          b, arith::FloorDivSIOp::create(b, pmax, c32(plan.tile)), c32(1));
      end = arith::MinSIOp::create(b, end, tileEnd);
    } else {
      auto first = [&](Value v) {
        return arith::CeilDivSIOp::create(
            b, arith::SubIOp::create(b, c32(0), v), c32(-cp));
      };
      Value pmin = arith::MinSIOp::create(b, first(lo), first(hi));
      begin = arith::MaxSIOp::create(
          b, begin, arith::FloorDivSIOp::create(b, pmin, c32(plan.tile)));
    }
  }
}

FailureOr<gpu::GPUModuleOp> KernelBuilder::run() {
  MLIRContext *ctx = cascade.getContext();
  auto top = cascade->getParentOfType<ModuleOp>();
  top->setAttr(gpu::GPUDialect::getContainerModuleAttrName(), b.getUnitAttr());
  b.setInsertionPoint(cascade);
  auto mod = gpu::GPUModuleOp::create(b, gpuModuleName(cascade));
  b.setInsertionPointToStart(&mod.getBodyRegion().front());

  const int64_t T = plan.tile, BM = kGpuBlockRows, dQK = plan.dQK, dV = plan.dV;
  const unsigned nt = plan.numTaskRanks;
  Type st = plan.storage, f32 = b.getF32Type();
  // Kernel parameters: q, k, v in argument order, then the results, each a
  // strided memref whose innermost dimension is contiguous.
  auto tensorTy = [&](unsigned rank, Type elem) {
    SmallVector<int64_t> shape(rank, ShapedType::kDynamic);
    SmallVector<int64_t> strides(rank, ShapedType::kDynamic);
    strides.back() = 1;
    auto layout = StridedLayoutAttr::get(ctx, ShapedType::kDynamic, strides);
    return MemRefType::get(shape, elem, layout);
  };
  SmallVector<Type> params;
  for (int i = 0; i < 3; ++i)
    params.push_back(tensorTy(nt + 2, st));
  auto yield = cast<YieldOp>(cascade.getBodyBlock().getTerminator());
  for (unsigned i = 0; i < yield.getValues().size(); ++i)
    params.push_back(int(i) == plan.oResult ? tensorTy(nt + 2, plan.oElem)
                                            : tensorTy(nt + 1, f32));
  auto wg = gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Workgroup);
  // Shared memory: K tile and V tile (Q is staged through the V buffer),
  // rows padded by 8 elements (16 bytes) so that ldmatrix's 8 row
  // addresses fall in distinct bank groups.
  int64_t dMax = std::max(dQK, dV);
  auto sKTy = MemRefType::get({T, dQK + 8}, st, AffineMap(), wg);
  auto sVTy = MemRefType::get({std::max(T, BM), dMax + 8}, st, AffineMap(), wg);
  auto func = gpu::GPUFuncOp::create(b, gpuKernelName(cascade),
                                     b.getFunctionType(params, {}),
                                     TypeRange{sKTy, sVTy});
  func->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), b.getUnitAttr());
  func.setKnownBlockSizeAttr(b.getDenseI32ArrayAttr({int32_t(kGpuBlockThreads), 1, 1}));
  func->setAttr("nvvm.maxntid", b.getDenseI32ArrayAttr({int32_t(kGpuBlockThreads), 1, 1}));
  // How to launch it (read by attnc's host side, docs/gpu.md): grid x =
  // ceil(|row_rank| / block_rows), grid y = the product of the grid_y_ranks
  // (decoded row-major below), no dynamic shared memory.
  {
    auto oTy = cast<NamedTensorType>(
        cast<YieldOp>(cascade.getBodyBlock().getTerminator())
            .getValues()[plan.oResult]
            .getType());
    SmallVector<Attribute> gridY(oTy.getRanks().begin(),
                                 oTy.getRanks().begin() + plan.numTaskRanks);
    // Per parameter: the alignment of its data (bytes) and the multiple
    // (elements) every stride but the innermost must be. q, k, v: 16-byte
    // cp.async chunks of each row; o: 2-element vector stores; lse: f32.
    SmallVector<int64_t> align, strideMultiple;
    for (Type t : params) {
      auto mt = cast<MemRefType>(t);
      int64_t bytes = mt.getElementTypeBitWidth() / 8;
      int64_t a = mt.getRank() == int64_t(nt) + 1 ? bytes
                  : align.size() < 3              ? 16
                                                  : 2 * bytes;
      align.push_back(a);
      strideMultiple.push_back(a / bytes);
    }
    func->setAttr(kGpuLaunchAttrName,
                  b.getDictionaryAttr({
                      b.getNamedAttr("block_rows", b.getI64IntegerAttr(BM)),
                      b.getNamedAttr("row_rank", b.getStringAttr(plan.rowRank)),
                      b.getNamedAttr("grid_y_ranks", b.getArrayAttr(gridY)),
                      b.getNamedAttr("dynamic_shared_bytes",
                                     b.getI64IntegerAttr(0)),
                      b.getNamedAttr("arg_align_bytes",
                                     b.getDenseI64ArrayAttr(align)),
                      b.getNamedAttr("arg_stride_multiple",
                                     b.getDenseI64ArrayAttr(strideMultiple)),
                  }));
  }
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  Value q = entry.getArgument(plan.qArg), k = entry.getArgument(plan.kArg),
        v = entry.getArgument(plan.vArg);
  Value o = entry.getArgument(3 + plan.oResult);
  Value lse = plan.lseResult >= 0 ? entry.getArgument(3 + plan.lseResult) : Value();
  Value sK = func.getWorkgroupAttributions()[0],
        sV = func.getWorkgroupAttributions()[1];

  // Block and thread coordinates.
  tid = gpu::ThreadIdOp::create(b, gpu::Dimension::x);
  lane = arith::RemUIOp::create(b, tid, cI(32));
  warp = arith::DivUIOp::create(b, tid, cI(32));
  Value qTile = gpu::BlockIdOp::create(b, gpu::Dimension::x);
  Value flat = gpu::BlockIdOp::create(b, gpu::Dimension::y);
  task.assign(nt, Value());
  for (int i = int(nt) - 1; i >= 0; --i) {
    Value size = memref::DimOp::create(b, o, i);
    task[i] = arith::RemUIOp::create(b, flat, size);
    flat = arith::DivUIOp::create(b, flat, size);
  }
  numRows = memref::DimOp::create(b, q, nt);
  numKeys = memref::DimOp::create(b, k, nt);
  numTiles = arith::CeilDivUIOp::create(b, numKeys, cI(T));

  // Rank values and sizes (i32) for the mask and the tile range.
  ArrayAttr space = plan.score.getSpace();
  {
    auto qIdx = [&]() {
      ExprAttr e = plan.score.getExpr();
      ExprAttr qLoad;
      e.walk([&](ExprAttr n) {
        if (n.getKind() == ExprKind::Load && n.getInput() >= 0) {
          auto ba = dyn_cast<BlockArgument>(plan.score.getInputs()[n.getInput()]);
          if (ba && int(ba.getArgNumber()) == plan.qArg)
            qLoad = n;
        }
      });
      return qLoad.getArgs();
    }();
    for (unsigned i = 0; i < nt; ++i) {
      StringRef n = *dimName(qIdx[i], space);
      rankValue[n] = toI32(task[i]);
      rankSize[n] = toI32(memref::DimOp::create(b, q, i));
    }
  }
  rankSize[plan.rowRank] = toI32(numRows);
  rankSize[plan.keyRank] = toI32(numKeys);
  rankSize[plan.keyOuter] = toI32(numTiles);
  rankSize[plan.keyInner] = c32(T);
  for (auto s : space) {
    StringRef n = cast<StringAttr>(s).getValue();
    if (!rankSize.count(n)) {
      auto size = cascade.getRankSize(n);
      rankSize[n] = c32(size && !ShapedType::isDynamic(*size) ? *size : 0);
    }
  }

  // Rows of this block and of this lane (r0 = lane / 4, r1 = r0 + 8 of the
  // warp's 16), columns 2 (lane % 4) + {0, 1} of each n8 tile.
  Value row0 = arith::MulIOp::create(b, qTile, cI(BM));
  Value rowLast = arith::SubIOp::create(
      b, arith::MinUIOp::create(b, arith::AddIOp::create(b, row0, cI(BM)), numRows),
      cI(1));
  Value warpRow = arith::AddIOp::create(b, row0, arith::MulIOp::create(b, warp, cI(16)));
  Value lr0 = arith::AddIOp::create(b, warpRow, arith::DivUIOp::create(b, lane, cI(4)));
  Value lr1 = arith::AddIOp::create(b, lr0, cI(8));
  Value lcol = arith::MulIOp::create(b, arith::RemUIOp::create(b, lane, cI(4)), cI(2));
  auto [tBegin, tEnd] = keyTileRange(toI32(row0), toI32(rowLast));

  // Q: global -> shared (the V buffer) -> A fragments, one per k16 step.
  Value gq = copyTile(q, sV, row0, BM, dQK, numRows);
  nvgpu::DeviceAsyncWaitOp::create(b, gq, b.getI32IntegerAttr(0));
  gpu::BarrierOp::create(b);
  auto aTy = VectorType::get({4, 2}, st), bTy = VectorType::get({2, 2}, st);
  SmallVector<Value> qFrag;
  Value aRow = arith::AddIOp::create(b, arith::MulIOp::create(b, warp, cI(16)),
                                     arith::RemUIOp::create(b, lane, cI(16)));
  Value aCol = arith::MulIOp::create(b, arith::DivUIOp::create(b, lane, cI(16)), cI(8));
  for (int64_t ks = 0; ks < dQK / 16; ++ks)
    qFrag.push_back(nvgpu::LdMatrixOp::create(
        b, aTy, sV, ValueRange{aRow, arith::AddIOp::create(b, aCol, cI(ks * 16))},
        b.getBoolAttr(false), b.getI32IntegerAttr(4)));
  gpu::BarrierOp::create(b);
  // The first K tile.
  Value beginIdx = arith::IndexCastOp::create(b, b.getIndexType(), tBegin);
  Value endIdx = arith::IndexCastOp::create(b, b.getIndexType(), tEnd);
  copyTile(k, sK, arith::MulIOp::create(b, beginIdx, cI(T)), T, dQK, numKeys,
           /*kv=*/true);

  // The key loop. Carried: O fragments (dV / 8 n8 tiles x 4), the running
  // max m (log2 units: max of s * scale * log2 e) and the lane's partial
  // row sums l, for rows r0 and r1.
  const double log2e = 1.4426950408889634;
  const double c = plan.scale * log2e;
  Value ninf = cF(-INFINITY), zero = cF(0.0);
  SmallVector<Value> init(dV / 8 * 4, zero);
  init.append({ninf, ninf, zero, zero});
  auto loop = scf::ForOp::create(b, beginIdx, endIdx, cI(1), init);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(loop.getBody());
    Value j = loop.getInductionVar();
    auto carried = loop.getRegionIterArgs();
    Value key0 = arith::MulIOp::create(b, j, cI(T));
    // V(j) is loaded while S = Q K(j)^T runs.
    Value gv = copyTile(v, sV, key0, T, dV, numKeys, /*kv=*/true);
    nvgpu::DeviceAsyncWaitOp::create(b, gv, b.getI32IntegerAttr(1));
    gpu::BarrierOp::create(b);
    SmallVector<Acc> s(T / 8, Acc(4, zero));
    Value bRow = arith::RemUIOp::create(b, lane, cI(8));
    Value bCol = arith::MulIOp::create(
        b, arith::RemUIOp::create(b, arith::DivUIOp::create(b, lane, cI(8)), cI(2)),
        cI(8));
    for (int64_t ks = 0; ks < dQK / 16; ++ks)
      for (int64_t n = 0; n < T / 8; ++n) {
        Value kf = nvgpu::LdMatrixOp::create(
            b, bTy, sK,
            ValueRange{arith::AddIOp::create(b, bRow, cI(n * 8)),
                       arith::AddIOp::create(b, bCol, cI(ks * 16))},
            b.getBoolAttr(false), b.getI32IntegerAttr(2));
        s[n] = mma(qFrag[ks], kf, s[n]);
      }
    gpu::BarrierOp::create(b);
    // K(j + 1) is loaded during the softmax and P V (zero-filled past the
    // last tile, so that every iteration commits one group).
    Value next = arith::AddIOp::create(b, j, cI(1));
    Value nextValid = arith::CmpIOp::create(b, arith::CmpIPredicate::ult, next, endIdx);
    Value nextRow = arith::SelectOp::create(
        b, nextValid, arith::MulIOp::create(b, next, cI(T)), numKeys);
    copyTile(k, sK, nextRow, T, dQK, numKeys, /*kv=*/true);

    // Mask: the score's condition and keys past |p|; masked scores -inf.
    Value cc = cF(c);
    Value key0i = toI32(key0), keysI = rankSize[plan.keyRank];
    Value rowI[2] = {toI32(lr0), toI32(lr1)};
    Value jI = toI32(j), lcolI = toI32(lcol);
    for (int64_t n = 0; n < T / 8; ++n)
      for (int64_t e = 0; e < 4; ++e) {
        Value col = arith::AddIOp::create(b, lcolI, c32(n * 8 + e % 2));
        Value key = arith::AddIOp::create(b, key0i, col);
        Value keep = arith::CmpIOp::create(b, arith::CmpIPredicate::slt, key, keysI);
        // Rank values (i32) at this register, in an Einsum's space order.
        auto at = [&](EinsumOp op, SmallVector<Value> &dims,
                      SmallVector<Value> &syms) {
          for (auto sp : op.getSpace()) {
            StringRef nm = cast<StringAttr>(sp).getValue();
            Value val = nm == plan.keyOuter  ? jI
                        : nm == plan.keyInner ? col
                        : nm == plan.keyRank  ? key
                        : nm == plan.rowRank  ? rowI[e / 2]
                                              : rankValue.lookup(nm);
            dims.push_back(val ? val : c32(0));
            syms.push_back(rankSize.lookup(nm));
          }
        };
        for (EinsumOp masked : {plan.score, plan.transform}) {
          if (!masked || !masked.getCond())
            continue;
          SmallVector<Value> dims, syms;
          at(masked, dims, syms);
          keep = arith::AndIOp::create(
              b, keep, predicate(*masked.getCond(), dims, syms));
        }
        Value scaled;
        if (plan.transform) {
          // X = f(c S), then scaled by log2(e) for ex2.
          SmallVector<Value> dims, syms;
          at(plan.transform, dims, syms);
          Value x = transformValue(
              plan.transform.getExpr(), dims, syms,
              arith::MulFOp::create(b, s[n][e], cF(plan.scale)));
          scaled = arith::MulFOp::create(b, x, cF(M_LOG2E));
        } else {
          scaled = arith::MulFOp::create(b, s[n][e], cc);
        }
        s[n][e] = arith::SelectOp::create(b, keep, scaled, ninf);
      }
    // Online softmax for the lane's two rows.
    SmallVector<Value> oAcc(carried.begin(), carried.begin() + dV / 8 * 4);
    Value corr[2], mNew[2], lNew[2];
    for (int r = 0; r < 2; ++r) {
      Value mx = ninf;
      for (int64_t n = 0; n < T / 8; ++n)
        for (int64_t e = 0; e < 2; ++e)
          mx = arith::MaxNumFOp::create(b, mx, s[n][2 * r + e]);
      Value mOld = carried[dV / 8 * 4 + r];
      mNew[r] = arith::MaxNumFOp::create(b, mOld, quadMax(mx));
      // ref = 0 while the row has seen no key (exp2(-inf - 0) = 0, no NaN).
      Value isInf = arith::CmpFOp::create(b, arith::CmpFPredicate::OEQ, mNew[r], ninf);
      Value ref = arith::SelectOp::create(b, isInf, zero, mNew[r]);
      corr[r] = exp2(arith::SubFOp::create(b, mOld, ref));
      Value sum = zero;
      for (int64_t n = 0; n < T / 8; ++n)
        for (int64_t e = 0; e < 2; ++e) {
          Value &x = s[n][2 * r + e];
          x = exp2(arith::SubFOp::create(b, x, ref));
          sum = arith::AddFOp::create(b, sum, x);
        }
      lNew[r] = arith::AddFOp::create(
          b, arith::MulFOp::create(b, carried[dV / 8 * 4 + 2 + r], corr[r]), sum);
    }
    for (int64_t i = 0; i < dV / 8 * 4; ++i)
      oAcc[i] = arith::MulFOp::create(b, oAcc[i], corr[(i % 4) / 2]);
    // P (C fragments of n8 tiles 2kk, 2kk + 1) is the A fragment of k16
    // step kk: [r0 cols 0-7, r1 cols 0-7, r0 cols 8-15, r1 cols 8-15].
    nvgpu::DeviceAsyncWaitOp::create(b, gv, b.getI32IntegerAttr(1));
    gpu::BarrierOp::create(b);
    auto pairTy = VectorType::get({2}, st);
    Value vRow = arith::RemUIOp::create(b, lane, cI(16));
    for (int64_t kk = 0; kk < T / 16; ++kk) {
      SmallVector<Value> pairs;
      for (auto [n, r] : {std::pair{0, 0}, {0, 1}, {1, 0}, {1, 1}}) {
        Acc &t = s[2 * kk + n];
        Value pr = vector::FromElementsOp::create(
            b, VectorType::get({2}, f32), ValueRange{t[2 * r], t[2 * r + 1]});
        pairs.push_back(arith::TruncFOp::create(b, pairTy, pr));
      }
      Value pFrag = arith::ConstantOp::create(b, cast<TypedAttr>(b.getZeroAttr(aTy)));
      for (int64_t i = 0; i < 4; ++i)
        pFrag = vector::InsertOp::create(b, pairs[i], pFrag, ArrayRef<int64_t>{i});
      for (int64_t n = 0; n < dV / 8; ++n) {
        Value vf = nvgpu::LdMatrixOp::create(
            b, bTy, sV,
            ValueRange{arith::AddIOp::create(b, vRow, cI(kk * 16)), cI(n * 8)},
            b.getBoolAttr(true), b.getI32IntegerAttr(2));
        Acc d = mma(pFrag, vf, ArrayRef<Value>(oAcc).slice(n * 4, 4));
        std::copy(d.begin(), d.end(), oAcc.begin() + n * 4);
      }
    }
    // sV is rewritten by the next iteration's V load.
    gpu::BarrierOp::create(b);
    SmallVector<Value> yielded(oAcc);
    yielded.append({mNew[0], mNew[1], lNew[0], lNew[1]});
    scf::YieldOp::create(b, yielded);
  }
  // Outstanding (zero-filled) copies must land before the block exits.
  nvgpu::DeviceAsyncWaitOp::create(b, gq, b.getI32IntegerAttr(0));

  // Epilogue: l over the quad, O / l (0 for a row without keys), LSE.
  auto res = loop.getResults();
  Value ln2 = cF(0.6931471805599453);
  for (int r = 0; r < 2; ++r) {
    Value l = quadSum(res[dV / 8 * 4 + 2 + r]);
    Value m = res[dV / 8 * 4 + r];
    Value pos = arith::CmpFOp::create(b, arith::CmpFPredicate::OGT, l, zero);
    Value inv = arith::SelectOp::create(b, pos, arith::DivFOp::create(b, cF(1.0), l), zero);
    Value row = r == 0 ? lr0 : lr1;
    Value inRange = arith::CmpIOp::create(b, arith::CmpIPredicate::ult, row, numRows);
    auto ifOp = scf::IfOp::create(b, inRange, false);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(ifOp.thenBlock());
    for (int64_t n = 0; n < dV / 8; ++n) {
      Value x0 = arith::MulFOp::create(b, res[n * 4 + 2 * r], inv);
      Value x1 = arith::MulFOp::create(b, res[n * 4 + 2 * r + 1], inv);
      Value pr = vector::FromElementsOp::create(b, VectorType::get({2}, f32),
                                                ValueRange{x0, x1});
      if (plan.oElem != f32)
        pr = arith::TruncFOp::create(b, VectorType::get({2}, plan.oElem), pr);
      SmallVector<Value> idx(task.begin(), task.end());
      idx.append({row, arith::AddIOp::create(b, lcol, cI(n * 8))});
      // Two elements at an even column: aligned to their size as long as
      // every row of o starts so (the launcher's contract, docs/gpu.md).
      vector::StoreOp::create(
          b, pr, o, idx, /*nontemporal=*/false,
          llvm::MaybeAlign(2 * plan.oElem.getIntOrFloatBitWidth() / 8));
    }
    if (lse) {
      // lse is optional in the C ABI: an absent one comes as null pointers.
      Value lsePtr = memref::ExtractAlignedPointerAsIndexOp::create(b, lse);
      Value first = arith::AndIOp::create(
          b,
          arith::CmpIOp::create(b, arith::CmpIPredicate::eq,
                                arith::RemUIOp::create(b, lane, cI(4)), cI(0)),
          arith::CmpIOp::create(b, arith::CmpIPredicate::ne, lsePtr, cI(0)));
      auto ifLse = scf::IfOp::create(b, first, false);
      b.setInsertionPointToStart(ifLse.thenBlock());
      // LSE = max(s * scale) + ln l = (m + log2 l) ln 2 (-inf without
      // keys); lg2.approx, not libdevice's logf.
      Value lg2 = LLVM::CallIntrinsicOp::create(
                      b, f32, b.getStringAttr("llvm.nvvm.lg2.approx.ftz.f"),
                      ValueRange{l})
                      .getResult(0);
      Value val =
          arith::MulFOp::create(b, arith::AddFOp::create(b, m, lg2), ln2);
      SmallVector<Value> idx(task.begin(), task.end());
      idx.push_back(row);
      memref::StoreOp::create(b, val, lse, idx);
    }
  }
  gpu::ReturnOp::create(b);
  return mod;
}

//===----------------------------------------------------------------------===//
// The pass
//===----------------------------------------------------------------------===//

struct AttnLowerGpuPass : impl::AttnLowerGpuPassBase<AttnLowerGpuPass> {
  using Base::Base;
  void runOnOperation() override {
    GpuLowerOptions options;
    options.storage = storage;
    SmallVector<CascadeOp> cascades(getOperation().getOps<CascadeOp>());
    for (CascadeOp c : cascades)
      if (failed(lowerCascadeToGpu(c, options)))
        return signalPassFailure();
  }
};

} // namespace

std::string gpuModuleName(CascadeOp cascade) {
  return (cascade.getSymName() + "_gpu").str();
}

std::string gpuKernelName(CascadeOp cascade) {
  return (cascade.getSymName() + "_kernel").str();
}

FailureOr<gpu::GPUModuleOp> lowerCascadeToGpu(CascadeOp cascade,
                                              const GpuLowerOptions &options) {
  Recognizer rec(cascade);
  FailureOr<MhaPlan> plan = rec.run(options);
  if (failed(plan))
    return failure();
  return KernelBuilder(cascade, *plan).run();
}

} // namespace mlir::attn
