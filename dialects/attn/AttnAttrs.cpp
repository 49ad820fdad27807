//===- AttnAttrs.cpp - attn dialect attributes -----------------------------===//
//
// This file implements the expression attribute (builders, walk, the
// positional #attn.expr<...> syntax) and registers the dialect's attributes.
//
//===----------------------------------------------------------------------===//

#include "attn/Dialect.h"
#include "dialects/attn/ExprSyntax.h"

#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::attn;

#include "dialects/attn/AttnEnums.cpp.inc"
#define GET_ATTRDEF_CLASSES
#include "dialects/attn/AttnAttrs.cpp.inc"

void AttnDialect::registerAttributes() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "dialects/attn/AttnAttrs.cpp.inc"
      >();
}

int attn::exprArity(ExprKind k) {
  switch (k) {
  case ExprKind::Load: return -1;
  case ExprKind::Index: case ExprKind::Const: return 0;
  case ExprKind::Neg: case ExprKind::Exp: case ExprKind::Exp2:
  case ExprKind::Log: case ExprKind::Log2: case ExprKind::Tanh:
  case ExprKind::Sigmoid: case ExprKind::Sqrt: case ExprKind::Abs:
  case ExprKind::Round: case ExprKind::Floor: case ExprKind::Cast:
  case ExprKind::Not: return 1;
  case ExprKind::Select: return 3;
  default: return 2;
  }
}

ExprAttr ExprAttr::getLoad(MLIRContext *ctx, int64_t input,
                           ArrayRef<ExprAttr> indices) {
  return get(ctx, ExprKind::Load, indices, input, AffineExpr(), Attribute());
}

ExprAttr ExprAttr::getIndex(AffineExpr e) {
  return get(e.getContext(), ExprKind::Index, {}, 0, e, Attribute());
}

ExprAttr ExprAttr::getConst(MLIRContext *ctx, double v) {
  return get(ctx, ExprKind::Const, {}, 0, AffineExpr(),
             FloatAttr::get(Float64Type::get(ctx), v));
}

ExprAttr ExprAttr::getOp(MLIRContext *ctx, ExprKind k, ArrayRef<ExprAttr> args) {
  return get(ctx, k, args, 0, AffineExpr(), Attribute());
}

ExprAttr ExprAttr::getCast(ExprAttr arg, Type type) {
  return get(arg.getContext(), ExprKind::Cast, {arg}, 0, AffineExpr(),
             TypeAttr::get(type));
}

double ExprAttr::getConstValue() const {
  auto f = dyn_cast_if_present<FloatAttr>(getValue());
  return f ? f.getValueAsDouble() : 0.0;
}

Type ExprAttr::getCastType() const {
  auto t = dyn_cast_if_present<TypeAttr>(getValue());
  return t ? t.getValue() : Type();
}

bool ExprAttr::isPredicate() const {
  switch (getKind()) {
  case ExprKind::Lt: case ExprKind::Le: case ExprKind::Gt: case ExprKind::Ge:
  case ExprKind::Eq: case ExprKind::Ne: case ExprKind::And: case ExprKind::Or:
  case ExprKind::Not:
    return true;
  default:
    return false;
  }
}

void ExprAttr::walk(function_ref<void(ExprAttr)> fn) const {
  fn(*this);
  for (ExprAttr a : getArgs())
    a.walk(fn);
}

/// Standalone form: #attn.expr<(exp(in0[d0, d1] - in1[d0]))>.
void ExprAttr::print(AsmPrinter &printer) const {
  syntax::PrintNames names;
  names.infixCompare = false;
  names.printInput = [](raw_ostream &os, int64_t i) {
    if (i < 0)
      os << "self";
    else
      os << "in" << i;
  };
  printer << "<(";
  syntax::printExpr(printer.getStream(), *this, names);
  printer << ")>";
}

Attribute ExprAttr::parse(AsmParser &parser, Type) {
  syntax::ParseNames names;
  names.positional = true;
  ExprAttr result;
  if (parser.parseLess() || parser.parseLParen() ||
      syntax::parseExpr(parser, names, result) || parser.parseRParen() ||
      parser.parseGreater())
    return {};
  return result;
}
