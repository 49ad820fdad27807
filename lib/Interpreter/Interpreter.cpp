//===- Interpreter.cpp - float64 reference interpreter ---------------------===//
//
// This file implements the reference interpreter: every Einsum is evaluated
// point by point over its iteration space in float64, following the
// semantics stated in AttnOps.td. It is deliberately naive; it is the oracle
// against which rewrites and generated kernels are checked.
//
//===----------------------------------------------------------------------===//

#include "attn/Interpreter.h"

#include "mlir/IR/AffineExpr.h"
#include "llvm/ADT/APFloat.h"

#include <algorithm>
#include <cmath>
#include <functional>

using namespace mlir;
using namespace mlir::attn;

int64_t Tensor::numElements() const {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

//===----------------------------------------------------------------------===//
// Element types
//===----------------------------------------------------------------------===//

double attn::roundToType(double v, Type t) {
  if (std::isnan(v) && isa<IntegerType>(t))
    return 0;
  if (t.isF64())
    return v;
  if (t.isF32())
    return (double)(float)v;
  if (auto ft = dyn_cast<FloatType>(t)) {
    llvm::APFloat f(v);
    bool lost;
    f.convert(ft.getFloatSemantics(), llvm::APFloat::rmNearestTiesToEven, &lost);
    f.convert(llvm::APFloat::IEEEdouble(), llvm::APFloat::rmNearestTiesToEven,
              &lost);
    return f.convertToDouble();
  }
  auto it = cast<IntegerType>(t);
  unsigned w = it.getWidth();
  if (w == 1)
    return v != 0 ? 1 : 0;
  double lo = -std::ldexp(1.0, w - 1), hi = std::ldexp(1.0, w - 1) - 1;
  return std::clamp(std::nearbyint(v), lo, hi);
}

//===----------------------------------------------------------------------===//
// Rank sizes
//===----------------------------------------------------------------------===//

std::vector<int64_t> attn::shapeOf(NamedTensorType type,
                                   const llvm::StringMap<int64_t> &sizes,
                                   StringRef iterative) {
  std::vector<int64_t> shape;
  for (StringAttr r : type.getRanks())
    shape.push_back(sizes.lookup(r.getValue()) +
                    (r.getValue() == iterative ? 1 : 0));
  return shape;
}

std::string attn::resolveRankSizes(CascadeOp cascade,
                                   ArrayRef<std::vector<int64_t>> inputShapes,
                                   const llvm::StringMap<int64_t> &given,
                                   llvm::StringMap<int64_t> &sizes) {
  std::string error;
  auto set = [&](StringRef rank, int64_t size, const std::string &from) {
    if (!error.empty())
      return;
    if (size <= 0) {
      error = "rank '" + rank.str() + "' gets non-positive size " +
              std::to_string(size) + " from " + from;
      return;
    }
    auto [it, inserted] = sizes.try_emplace(rank, size);
    if (!inserted && it->second != size)
      error = "rank '" + rank.str() + "' has size " + std::to_string(it->second) +
              " but " + from + " gives " + std::to_string(size);
  };
  for (auto r : cascade.getRanks().getAsRange<RankAttr>())
    if (!ShapedType::isDynamic(r.getSize()))
      set(r.getName().getValue(), r.getSize(), "its declaration");
  for (auto part : cascade.getPartitions().getAsRange<PartitionAttr>())
    set(part.getInner().getValue(), part.getTile(), "its partition");
  FunctionType fnType = cascade.getFunctionType();
  for (auto [i, shape] : llvm::enumerate(inputShapes)) {
    if (shape.empty() && i < inputShapes.size() &&
        cast<NamedTensorType>(fnType.getInput(i)).getNumDims() != 0)
      continue; // not given
    auto type = cast<NamedTensorType>(fnType.getInput(i));
    std::string name = cast<StringAttr>(cascade.getArgNames()[i]).str();
    if (shape.size() != type.getNumDims()) {
      return "argument '" + name + "' has " + std::to_string(shape.size()) +
             " dimensions but its type has " +
             std::to_string(type.getNumDims());
    }
    for (auto [d, r] : llvm::enumerate(type.getRanks()))
      set(r.getValue(), shape[d], "argument '" + name + "'");
  }
  for (const auto &kv : given)
    set(kv.getKey(), kv.getValue(), "the given sizes");
  // Relations and partitions until nothing changes.
  for (bool changed = true; changed && error.empty();) {
    changed = false;
    auto known = [&](StringRef r) { return sizes.count(r) != 0; };
    for (auto rel : cascade.getRelations().getAsRange<RelationAttr>()) {
      StringRef l = rel.getLhs().getValue(), r = rel.getRhs().getValue();
      int64_t f = rel.getFactor();
      if (known(l) && !known(r)) {
        if (sizes[l] % f != 0)
          return "relation " + l.str() + " = " + std::to_string(f) + " * " +
                 r.str() + ": |" + l.str() + "| = " + std::to_string(sizes[l]) +
                 " is not a multiple of " + std::to_string(f);
        set(r, sizes[l] / f, "relation " + l.str() + " = " + std::to_string(f) +
                                 " * " + r.str());
        changed = true;
      } else if (known(r) && !known(l)) {
        set(l, sizes[r] * f, "relation " + l.str() + " = " + std::to_string(f) +
                                 " * " + r.str());
        changed = true;
      } else if (known(l) && known(r) && sizes[l] != f * sizes[r]) {
        return "relation " + l.str() + " = " + std::to_string(f) + " * " +
               r.str() + " does not hold for sizes " + std::to_string(sizes[l]) +
               " and " + std::to_string(sizes[r]);
      }
    }
    for (auto part : cascade.getPartitions().getAsRange<PartitionAttr>()) {
      StringRef whole = part.getRank().getValue();
      StringRef outer = part.getOuter().getValue();
      if (known(whole) && !known(outer)) {
        set(outer, llvm::divideCeil(sizes[whole], part.getTile()),
            "partition of '" + whole.str() + "'");
        changed = true;
      } else if (known(whole) && known(outer) &&
                 sizes[outer] != (int64_t)llvm::divideCeil(sizes[whole],
                                                           part.getTile())) {
        return "rank '" + outer.str() + "' has size " +
               std::to_string(sizes[outer]) + " but the partition of '" +
               whole.str() + "' (size " + std::to_string(sizes[whole]) +
               ") into tiles of " + std::to_string(part.getTile()) + " needs " +
               std::to_string(llvm::divideCeil(sizes[whole], part.getTile()));
      }
      if (known(whole) && !part.getRagged() &&
          sizes[whole] % part.getTile() != 0)
        return "partition of '" + whole.str() + "' (size " +
               std::to_string(sizes[whole]) + ") into tiles of " +
               std::to_string(part.getTile()) +
               " does not divide it and is not declared ragged";
    }
  }
  if (!error.empty())
    return error;
  auto require = [&](StringRef r) -> std::string {
    if (!sizes.count(r))
      return "the size of rank '" + r.str() +
             "' is unknown: it is dynamic and no input has it (give it, e.g. "
             "--size " + r.str() + "=N)";
    return "";
  };
  for (auto r : cascade.getRanks().getAsRange<RankAttr>())
    if (std::string e = require(r.getName().getValue()); !e.empty())
      return e;
  for (auto part : cascade.getPartitions().getAsRange<PartitionAttr>())
    if (std::string e = require(part.getOuter().getValue()); !e.empty())
      return e;
  return "";
}

/// NaN-propagating maximum and minimum (IEEE 754-2019 maximum/minimum).
static double nanMax(double a, double b) {
  return (std::isnan(a) || std::isnan(b)) ? NAN : std::max(a, b);
}
static double nanMin(double a, double b) {
  return (std::isnan(a) || std::isnan(b)) ? NAN : std::min(a, b);
}

double attn::applyScalarOp(ExprKind k, ArrayRef<double> x, Type castType) {
  auto arg = [&](unsigned i) { return i < x.size() ? x[i] : 0.0; };
  switch (k) {
  case ExprKind::Add: return arg(0) + arg(1);
  case ExprKind::Sub: return arg(0) - arg(1);
  case ExprKind::Mul: return arg(0) * arg(1);
  case ExprKind::Div: return arg(0) / arg(1);
  case ExprKind::Neg: return -arg(0);
  case ExprKind::Max: return nanMax(arg(0), arg(1));
  case ExprKind::Min: return nanMin(arg(0), arg(1));
  case ExprKind::FloorDiv: return std::floor(arg(0) / arg(1));
  case ExprKind::Mod: return arg(0) - arg(1) * std::floor(arg(0) / arg(1));
  case ExprKind::Exp: return std::exp(arg(0));
  case ExprKind::Exp2: return std::exp2(arg(0));
  case ExprKind::Log: return std::log(arg(0));
  case ExprKind::Log2: return std::log2(arg(0));
  case ExprKind::Tanh: return std::tanh(arg(0));
  case ExprKind::Sigmoid: return 1.0 / (1.0 + std::exp(-arg(0)));
  case ExprKind::Sqrt: return std::sqrt(arg(0));
  case ExprKind::Abs: return std::fabs(arg(0));
  case ExprKind::Round: return std::nearbyint(arg(0));
  case ExprKind::Floor: return std::floor(arg(0));
  case ExprKind::Pow: return std::pow(arg(0), arg(1));
  case ExprKind::Cast: return castType ? roundToType(arg(0), castType) : arg(0);
  case ExprKind::Select: return arg(0) != 0 ? arg(1) : arg(2);
  case ExprKind::Lt: return arg(0) < arg(1);
  case ExprKind::Le: return arg(0) <= arg(1);
  case ExprKind::Gt: return arg(0) > arg(1);
  case ExprKind::Ge: return arg(0) >= arg(1);
  case ExprKind::Eq: return arg(0) == arg(1);
  case ExprKind::Ne: return arg(0) != arg(1);
  case ExprKind::And: return arg(0) != 0 && arg(1) != 0;
  case ExprKind::Or: return arg(0) != 0 || arg(1) != 0;
  case ExprKind::Not: return arg(0) == 0;
  case ExprKind::Load: case ExprKind::Index: case ExprKind::Const:
    break;
  }
  return NAN;
}

//===----------------------------------------------------------------------===//
// Evaluation of one Einsum
//===----------------------------------------------------------------------===//

namespace {

int64_t floorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

int64_t evalAffine(AffineExpr e, ArrayRef<int64_t> dims, ArrayRef<int64_t> syms) {
  switch (e.getKind()) {
  case AffineExprKind::DimId:
    return dims[cast<AffineDimExpr>(e).getPosition()];
  case AffineExprKind::SymbolId:
    return syms[cast<AffineSymbolExpr>(e).getPosition()];
  case AffineExprKind::Constant:
    return cast<AffineConstantExpr>(e).getValue();
  default:
    break;
  }
  auto bin = cast<AffineBinaryOpExpr>(e);
  int64_t l = evalAffine(bin.getLHS(), dims, syms);
  int64_t r = evalAffine(bin.getRHS(), dims, syms);
  switch (e.getKind()) {
  case AffineExprKind::Add: return l + r;
  case AffineExprKind::Mul: return l * r;
  case AffineExprKind::FloorDiv: return r == 0 ? 0 : floorDiv(l, r);
  case AffineExprKind::CeilDiv: return r == 0 ? 0 : -floorDiv(-l, r);
  case AffineExprKind::Mod: return r == 0 ? 0 : l - r * floorDiv(l, r);
  default: return 0;
  }
}


/// A tensor being read: its data and row-major strides.
struct View {
  const Tensor *tensor;
  std::vector<int64_t> strides;
};

View makeView(const Tensor &t) {
  View v{&t, std::vector<int64_t>(t.shape.size())};
  int64_t s = 1;
  for (int i = (int)t.shape.size() - 1; i >= 0; --i) {
    v.strides[i] = s;
    s *= t.shape[i];
  }
  return v;
}

class EinsumEvaluator {
public:
  EinsumEvaluator(EinsumOp op, ArrayRef<const Tensor *> operands,
                  Tensor &result, const llvm::StringMap<int64_t> &sizes)
      : op(op), result(result) {
    for (const Tensor *t : operands)
      views.push_back(makeView(*t));
    self = makeView(result);
    for (StringAttr s : op.getSpace().getAsRange<StringAttr>())
      syms.push_back(sizes.lookup(s.getValue()));
    dims.assign(syms.size(), 0);
  }

  /// Evaluates `e` at the current point; sets `error` on a bad gather.
  double eval(ExprAttr e) {
    ArrayRef<ExprAttr> a = e.getArgs();
    auto arg = [&](unsigned i) { return eval(a[i]); };
    switch (e.getKind()) {
    case ExprKind::Load: {
      const View &v = e.getInput() < 0 ? self : views[e.getInput()];
      int64_t offset = 0;
      for (auto [i, idx] : llvm::enumerate(a)) {
        double x = eval(idx);
        int64_t n = v.tensor->shape[i];
        if (!(x >= 0 && x < (double)n) || x != std::floor(x)) {
          if (error.empty())
            error = "index " + std::to_string(x) + " out of range [0, " +
                    std::to_string(n) + ") in dimension " + std::to_string(i) +
                    " of " +
                    (e.getInput() < 0 ? std::string("its own result")
                                      : "operand #" + std::to_string(e.getInput()));
          return NAN;
        }
        offset += (int64_t)x * v.strides[i];
      }
      return v.tensor->data[offset];
    }
    case ExprKind::Index:
      return (double)evalAffine(e.getIndex(), dims, syms);
    case ExprKind::Const:
      return e.getConstValue();
    case ExprKind::Select:
      // Lazy, so that a guarded gather is never evaluated out of range.
      return arg(0) != 0 ? arg(1) : arg(2);
    default: {
      double values[3] = {0, 0, 0};
      for (unsigned i = 0; i < a.size() && i < 3; ++i)
        values[i] = arg(i);
      return applyScalarOp(e.getKind(), ArrayRef<double>(values, a.size()),
                           e.getCastType());
    }
    }
  }

  /// Runs the Einsum; returns an error message or "".
  std::string run(const llvm::StringMap<int64_t> &sizes, bool roundResults) {
    auto space = op.getSpace();
    auto position = [&](StringRef name) -> unsigned {
      for (unsigned i = 0; i < space.size(); ++i)
        if (cast<StringAttr>(space[i]).getValue() == name)
          return i;
      return ~0u;
    };
    StringRef iterative = op.getIterativeRank();
    // Loop order: the iterative rank outermost, so that every step finishes
    // before the next one reads it.
    SmallVector<unsigned> loops;
    if (!iterative.empty())
      loops.push_back(position(iterative));
    for (StringRef r : op.getIterationRanks())
      if (r != iterative)
        loops.push_back(position(r));

    // Ragged partitions whose outer and inner ranks are both iterated.
    struct Ragged {
      unsigned outer, inner;
      int64_t tile, whole;
    };
    SmallVector<Ragged> ragged;
    auto cascade = op->getParentOfType<CascadeOp>();
    for (auto part : cascade.getPartitions().getAsRange<PartitionAttr>()) {
      unsigned o = position(part.getOuter().getValue());
      unsigned i = position(part.getInner().getValue());
      if (part.getRagged() && llvm::is_contained(loops, o) &&
          llvm::is_contained(loops, i))
        ragged.push_back({o, i, part.getTile(),
                          sizes.lookup(part.getRank().getValue())});
    }

    Reducer reducer = op.getReducer();
    double identity = reducer == Reducer::Max   ? -INFINITY
                      : reducer == Reducer::Min ? INFINITY
                                                : 0.0;
    double fill = op.getFill() ? op.getFill()->convertToDouble() : identity;
    int64_t total = result.numElements();
    result.data.assign(total, identity);
    std::vector<char> touched(total, 0);
    AffineMap outMap = op.getOutput();
    int64_t iterDim = iterative.empty()
                          ? -1
                          : op.getResultType().getDimOf(iterative);
    if (iterDim >= 0) {
      // Entry 0 along the iterative rank is the initial value.
      double init = op.getInit()->convertToDouble();
      for (int64_t i = 0; i < total; ++i)
        if ((i / self.strides[iterDim]) % result.shape[iterDim] == 0) {
          result.data[i] = init;
          touched[i] = 1;
        }
    }
    auto finishElements = [&](std::function<bool(int64_t)> select) {
      for (int64_t i = 0; i < total; ++i)
        if (!touched[i] && select(i)) {
          result.data[i] = fill;
          touched[i] = 1;
        }
    };

    std::optional<ExprAttr> cond = op.getCond();
    ExprAttr expr = op.getExpr();
    std::function<void(unsigned)> loop = [&](unsigned depth) {
      if (!error.empty())
        return;
      if (depth == loops.size()) {
        for (const Ragged &r : ragged)
          if (dims[r.outer] * r.tile + dims[r.inner] >= r.whole)
            return;
        if (cond && eval(*cond) == 0)
          return;
        double v = eval(expr);
        int64_t offset = 0;
        for (auto [i, e] : llvm::enumerate(outMap.getResults()))
          offset += evalAffine(e, dims, syms) * self.strides[i];
        double &acc = result.data[offset];
        switch (reducer) {
        case Reducer::None: acc = v; break;
        case Reducer::Sum: acc += v; break;
        case Reducer::Max: acc = nanMax(acc, v); break;
        case Reducer::Min: acc = nanMin(acc, v); break;
        }
        touched[offset] = 1;
        return;
      }
      unsigned pos = loops[depth];
      for (int64_t i = 0, n = syms[pos]; i < n && error.empty(); ++i) {
        dims[pos] = i;
        loop(depth + 1);
        if (depth == 0 && iterDim >= 0) {
          // Step i is complete: its empty elements get the fill value before
          // step i + 1 reads them.
          finishElements([&](int64_t e) {
            return (e / self.strides[iterDim]) % result.shape[iterDim] == i + 1;
          });
        }
      }
    };
    loop(0);
    if (!error.empty())
      return error;
    finishElements([](int64_t) { return true; });

    if (auto pop = op.getPopulate())
      applyTopK(pop->getK(),
                op.getResultType().getDimOf(pop->getRank().getValue()));
    Type elemType = op.getResultType().getElementType();
    if (roundResults || isa<IntegerType>(elemType))
      for (double &v : result.data)
        v = roundToType(v, elemType);
    return "";
  }

  /// Keeps the k largest values (and ties with the k-th) of every fiber along
  /// dimension `dim`; the others become -inf.
  void applyTopK(int64_t k, int64_t dim) {
    int64_t n = result.shape[dim], stride = self.strides[dim];
    if (k >= n)
      return;
    std::vector<double> fiber(n);
    for (int64_t base = 0, total = result.numElements(); base < total; ++base) {
      if ((base / stride) % n != 0)
        continue; // not the first element of its fiber
      for (int64_t i = 0; i < n; ++i)
        fiber[i] = result.data[base + i * stride];
      std::vector<double> sorted = fiber;
      std::nth_element(sorted.begin(), sorted.begin() + (k - 1), sorted.end(),
                       std::greater<double>());
      double threshold = sorted[k - 1];
      for (int64_t i = 0; i < n; ++i)
        if (fiber[i] < threshold)
          result.data[base + i * stride] = -INFINITY;
    }
  }

  std::string error;

private:
  EinsumOp op;
  Tensor &result;
  std::vector<View> views;
  View self;
  std::vector<int64_t> dims, syms;
};

} // namespace

InterpretResult attn::interpret(CascadeOp cascade, ArrayRef<Tensor> inputs,
                                const InterpretOptions &options) {
  InterpretResult res;
  FunctionType fnType = cascade.getFunctionType();
  if (inputs.size() != fnType.getNumInputs()) {
    res.error = "the cascade takes " + std::to_string(fnType.getNumInputs()) +
                " inputs, got " + std::to_string(inputs.size());
    return res;
  }
  std::vector<std::vector<int64_t>> shapes;
  for (const Tensor &t : inputs)
    shapes.push_back(t.shape);
  res.error = resolveRankSizes(cascade, shapes, options.sizes, res.sizes);
  if (!res.ok())
    return res;

  llvm::DenseMap<Value, Tensor> values;
  Block &body = cascade.getBodyBlock();
  for (auto [i, arg] : llvm::enumerate(body.getArguments())) {
    Tensor t = inputs[i];
    if ((int64_t)t.data.size() != t.numElements()) {
      res.error = "input '" + cast<StringAttr>(cascade.getArgNames()[i]).str() +
                  "' has " + std::to_string(t.data.size()) +
                  " values for its shape of " +
                  std::to_string(t.numElements()) + " elements";
      return res;
    }
    if (options.roundToTypes) {
      Type elem = cast<NamedTensorType>(arg.getType()).getElementType();
      for (double &v : t.data)
        v = roundToType(v, elem);
    }
    values[arg] = std::move(t);
  }
  for (auto op : body.getOps<EinsumOp>()) {
    Tensor result;
    result.shape = shapeOf(op.getResultType(), res.sizes, op.getIterativeRank());
    SmallVector<const Tensor *> operands;
    for (Value v : op.getInputs())
      operands.push_back(&values[v]);
    EinsumEvaluator evaluator(op, operands, result, res.sizes);
    std::string err = evaluator.run(res.sizes, options.roundToTypes);
    if (!err.empty()) {
      res.error = "in Einsum '" + op.getDisplayName().str() + "': " + err;
      return res;
    }
    values[op.getResult()] = std::move(result);
  }
  auto yield = cast<YieldOp>(body.getTerminator());
  for (Value v : yield.getValues())
    res.outputs.push_back(values[v]);
  return res;
}
