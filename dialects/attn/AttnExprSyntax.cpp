//===- AttnExprSyntax.cpp - infix syntax of attn expressions ---------------===//
//
// This file implements the printer and the recursive-descent parser of attn
// expressions. Affine sub-expressions of ranks, rank sizes and integers are
// folded into a single `index` node carrying an mlir::AffineExpr, so that
// index arithmetic stays affine for the analyses and the lowering.
//
//===----------------------------------------------------------------------===//

#include "dialects/attn/ExprSyntax.h"

#include "mlir/IR/AffineExpr.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/ScopeExit.h"
#include "llvm/ADT/StringSwitch.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

using namespace mlir;
using namespace mlir::attn;
using namespace mlir::attn::syntax;

namespace {

/// Binding strength of operators, weakest first.
enum Prec { kTop = 0, kOr = 1, kAnd = 2, kCmp = 3, kAdd = 4, kMul = 5, kUnary = 6 };

/// A function written `name(args)`: its kind and number of arguments.
struct FunctionInfo {
  ExprKind kind;
  int arity;
};

std::optional<FunctionInfo> lookupFunction(StringRef name) {
  return llvm::StringSwitch<std::optional<FunctionInfo>>(name)
      .Case("exp", FunctionInfo{ExprKind::Exp, 1})
      .Case("exp2", FunctionInfo{ExprKind::Exp2, 1})
      .Case("log", FunctionInfo{ExprKind::Log, 1})
      .Case("log2", FunctionInfo{ExprKind::Log2, 1})
      .Case("tanh", FunctionInfo{ExprKind::Tanh, 1})
      .Case("sigmoid", FunctionInfo{ExprKind::Sigmoid, 1})
      .Case("sqrt", FunctionInfo{ExprKind::Sqrt, 1})
      .Case("abs", FunctionInfo{ExprKind::Abs, 1})
      .Case("round", FunctionInfo{ExprKind::Round, 1})
      .Case("floor", FunctionInfo{ExprKind::Floor, 1})
      .Case("pow", FunctionInfo{ExprKind::Pow, 2})
      .Case("max", FunctionInfo{ExprKind::Max, 2})
      .Case("min", FunctionInfo{ExprKind::Min, 2})
      .Case("select", FunctionInfo{ExprKind::Select, 3})
      .Case("not", FunctionInfo{ExprKind::Not, 1})
      .Case("lt", FunctionInfo{ExprKind::Lt, 2})
      .Case("le", FunctionInfo{ExprKind::Le, 2})
      .Case("gt", FunctionInfo{ExprKind::Gt, 2})
      .Case("ge", FunctionInfo{ExprKind::Ge, 2})
      .Case("eq", FunctionInfo{ExprKind::Eq, 2})
      .Case("ne", FunctionInfo{ExprKind::Ne, 2})
      .Case("cast", FunctionInfo{ExprKind::Cast, 1})
      .Default(std::nullopt);
}

/// The functions of lookupFunction, for diagnostics.
constexpr const char *kFunctionNames =
    "exp, exp2, log, log2, tanh, sigmoid, sqrt, abs, round, floor, pow, max, "
    "min, select, not, lt, le, gt, ge, eq, ne, cast";

/// Infix spelling of binary operators; empty for functions.
StringRef infixSpelling(ExprKind k) {
  switch (k) {
  case ExprKind::Add: return "+";
  case ExprKind::Sub: return "-";
  case ExprKind::Mul: return "*";
  case ExprKind::Div: return "/";
  case ExprKind::FloorDiv: return "floordiv";
  case ExprKind::Mod: return "mod";
  case ExprKind::Lt: return "<";
  case ExprKind::Le: return "<=";
  case ExprKind::Gt: return ">";
  case ExprKind::Ge: return ">=";
  case ExprKind::Eq: return "==";
  case ExprKind::Ne: return "<>";
  case ExprKind::And: return "and";
  case ExprKind::Or: return "or";
  default: return "";
  }
}

int precOf(ExprKind k) {
  switch (k) {
  case ExprKind::Or: return kOr;
  case ExprKind::And: return kAnd;
  case ExprKind::Lt: case ExprKind::Le: case ExprKind::Gt:
  case ExprKind::Ge: case ExprKind::Eq: case ExprKind::Ne: return kCmp;
  case ExprKind::Add: case ExprKind::Sub: return kAdd;
  case ExprKind::Mul: case ExprKind::Div: case ExprKind::FloorDiv:
  case ExprKind::Mod: return kMul;
  default: return kUnary + 1;
  }
}

bool isComparison(ExprKind k) { return precOf(k) == kCmp; }

//===----------------------------------------------------------------------===//
// Printing
//===----------------------------------------------------------------------===//

/// Shortest decimal text that reads back as exactly `v`, always with a '.'
/// so that the lexer sees a floating-point literal.
std::string formatDouble(double v) {
  char buf[64];
  for (int prec = 1; prec <= 17; ++prec) {
    std::snprintf(buf, sizeof(buf), "%.*g", prec, v);
    if (std::strtod(buf, nullptr) == v)
      break;
  }
  std::string s(buf);
  if (s.find_first_of(".nN") == std::string::npos) {
    size_t e = s.find_first_of("eE");
    s.insert(e == std::string::npos ? s.size() : e, ".0");
  }
  return s;
}

std::string rankName(unsigned pos, ArrayRef<std::string> space) {
  if (space.empty() || pos >= space.size())
    return "d" + std::to_string(pos);
  return space[pos];
}

void printAffineImpl(raw_ostream &os, AffineExpr e, ArrayRef<std::string> space,
                     int parent) {
  auto paren = [&](int prec, auto body) {
    bool need = prec < parent;
    if (need) os << '(';
    body();
    if (need) os << ')';
  };
  if (auto d = dyn_cast<AffineDimExpr>(e)) {
    os << rankName(d.getPosition(), space);
    return;
  }
  if (auto s = dyn_cast<AffineSymbolExpr>(e)) {
    os << '|' << rankName(s.getPosition(), space) << '|';
    return;
  }
  if (auto c = dyn_cast<AffineConstantExpr>(e)) {
    paren(c.getValue() < 0 ? kUnary : kUnary + 1, [&] { os << c.getValue(); });
    return;
  }
  auto bin = cast<AffineBinaryOpExpr>(e);
  AffineExpr l = bin.getLHS(), r = bin.getRHS();
  switch (e.getKind()) {
  case AffineExprKind::Add:
    paren(kAdd, [&] {
      printAffineImpl(os, l, space, kAdd);
      // a + b * -c prints as a - b * c; a + -c as a - c.
      if (auto rc = dyn_cast<AffineConstantExpr>(r); rc && rc.getValue() < 0) {
        os << " - " << -rc.getValue();
        return;
      }
      if (auto rm = dyn_cast<AffineBinaryOpExpr>(r);
          rm && rm.getKind() == AffineExprKind::Mul) {
        if (auto c = dyn_cast<AffineConstantExpr>(rm.getRHS());
            c && c.getValue() < 0) {
          os << " - ";
          if (c.getValue() == -1)
            printAffineImpl(os, rm.getLHS(), space, kAdd + 1);
          else
            printAffineImpl(os, rm.getLHS() * -c.getValue(), space, kAdd + 1);
          return;
        }
      }
      os << " + ";
      printAffineImpl(os, r, space, kAdd + 1);
    });
    return;
  case AffineExprKind::Mul:
    if (auto c = dyn_cast<AffineConstantExpr>(r); c && c.getValue() == -1) {
      paren(kUnary, [&] {
        os << '-';
        printAffineImpl(os, l, space, kUnary);
      });
      return;
    }
    paren(kMul, [&] {
      printAffineImpl(os, l, space, kMul);
      os << " * ";
      printAffineImpl(os, r, space, kMul + 1);
    });
    return;
  case AffineExprKind::FloorDiv:
  case AffineExprKind::CeilDiv:
  case AffineExprKind::Mod:
    paren(kMul, [&] {
      printAffineImpl(os, l, space, kMul);
      os << (e.getKind() == AffineExprKind::FloorDiv ? " floordiv "
             : e.getKind() == AffineExprKind::CeilDiv ? " ceildiv "
                                                      : " mod ");
      printAffineImpl(os, r, space, kMul + 1);
    });
    return;
  default:
    os << "<?>";
  }
}

void printImpl(raw_ostream &os, ExprAttr e, const PrintNames &names,
               int parent) {
  ExprKind k = e.getKind();
  ArrayRef<ExprAttr> args = e.getArgs();
  auto paren = [&](int prec, auto body) {
    bool need = prec < parent;
    if (need) os << '(';
    body();
    if (need) os << ')';
  };
  switch (k) {
  case ExprKind::Load:
    names.printInput(os, e.getInput());
    os << '[';
    llvm::interleaveComma(args, os, [&](ExprAttr a) { printImpl(os, a, names, kTop); });
    os << ']';
    return;
  case ExprKind::Index:
    printAffineImpl(os, e.getIndex(), names.space, parent);
    return;
  case ExprKind::Const: {
    double v = e.getConstValue();
    std::string text = std::isinf(v) ? (v < 0 ? "-inf" : "inf")
                       : std::isnan(v) ? "nan"
                                       : formatDouble(v);
    paren(text[0] == '-' ? kUnary : kUnary + 1, [&] { os << text; });
    return;
  }
  case ExprKind::Neg:
    paren(kUnary, [&] {
      os << '-';
      printImpl(os, args[0], names, kUnary);
    });
    return;
  case ExprKind::Cast:
    os << "cast(";
    printImpl(os, args[0], names, kTop);
    os << " : " << e.getCastType() << ')';
    return;
  default:
    break;
  }
  StringRef infix = infixSpelling(k);
  if (!infix.empty() && !(isComparison(k) && !names.infixCompare)) {
    int prec = precOf(k);
    paren(prec, [&] {
      // Comparisons do not chain: both sides bind tighter.
      printImpl(os, args[0], names, isComparison(k) ? prec + 1 : prec);
      os << ' ' << infix << ' ';
      printImpl(os, args[1], names, prec + 1);
    });
    return;
  }
  os << stringifyExprKind(k) << '(';
  llvm::interleaveComma(args, os, [&](ExprAttr a) { printImpl(os, a, names, kTop); });
  os << ')';
}

//===----------------------------------------------------------------------===//
// Parsing
//===----------------------------------------------------------------------===//

/// The deepest expression the parser accepts. The parser, the printer, the
/// verifier and the passes walk expression trees recursively; the limit keeps
/// them far from the end of the stack on any input.
constexpr unsigned kMaxDepth = 256;

class ExprParser {
public:
  ExprParser(AsmParser &p, ParseNames &names)
      : p(p), names(names), ctx(p.getContext()) {}

  ParseResult parseLevel(int level, ExprAttr &result);

private:
  /// Fails with a located error if `e` is deeper than kMaxDepth.
  ParseResult checkDepth(ExprAttr e, SMLoc loc);
  unsigned depthOf(ExprAttr e);
  unsigned depthOf(AffineExpr e);
  ParseResult emitTooDeep(SMLoc loc) {
    return p.emitError(loc) << "expression nests more than " << kMaxDepth
                            << " levels deep";
  }

  ParseResult parseUnary(ExprAttr &result);
  ParseResult parsePrimary(ExprAttr &result);
  ParseResult parseRank(StringRef name, SMLoc loc, unsigned &pos);
  ParseResult parseLoadIndices(int64_t input, ExprAttr &result);
  ParseResult parseCall(StringRef name, FunctionInfo fn, SMLoc loc,
                        ExprAttr &result);
  /// Builds `a <k> b`, folding affine operands into one index node.
  FailureOr<ExprAttr> combine(ExprKind k, ExprAttr a, ExprAttr b, SMLoc loc);
  ParseResult parseInfixOp(int level, std::optional<ExprKind> &op);
  std::optional<ExprKind> parseInfixOpKind(int level);

  AsmParser &p;
  ParseNames &names;
  MLIRContext *ctx;
  /// Current recursion depth of parseUnary (parentheses, calls, loads, signs).
  unsigned nesting = 0;
  /// Depths of the trees built so far.
  llvm::DenseMap<Attribute, unsigned> exprDepths;
  llvm::DenseMap<AffineExpr, unsigned> affineDepths;
};

unsigned ExprParser::depthOf(AffineExpr e) {
  auto it = affineDepths.find(e);
  if (it != affineDepths.end())
    return it->second;
  unsigned d = 1;
  if (auto bin = dyn_cast<AffineBinaryOpExpr>(e))
    d = 1 + std::max(depthOf(bin.getLHS()), depthOf(bin.getRHS()));
  affineDepths[e] = d;
  return d;
}

unsigned ExprParser::depthOf(ExprAttr e) {
  auto it = exprDepths.find(e);
  if (it != exprDepths.end())
    return it->second;
  unsigned d = e.getKind() == ExprKind::Index && e.getIndex()
                   ? depthOf(e.getIndex())
                   : 1;
  for (ExprAttr a : e.getArgs())
    d = std::max(d, 1 + depthOf(a));
  exprDepths[e] = d;
  return d;
}

ParseResult ExprParser::checkDepth(ExprAttr e, SMLoc loc) {
  if (depthOf(e) > kMaxDepth)
    return emitTooDeep(loc);
  return success();
}

FailureOr<ExprAttr> ExprParser::combine(ExprKind k, ExprAttr a, ExprAttr b,
                                        SMLoc loc) {
  if ((k == ExprKind::FloorDiv || k == ExprKind::Mod) &&
      b.getKind() == ExprKind::Index)
    if (auto c = dyn_cast<AffineConstantExpr>(b.getIndex());
        c && c.getValue() == 0)
      return p.emitError(loc) << "'" << stringifyExprKind(k) << "' by zero";
  if (a.getKind() == ExprKind::Index && b.getKind() == ExprKind::Index) {
    AffineExpr x = a.getIndex(), y = b.getIndex();
    switch (k) {
    case ExprKind::Add: return ExprAttr::getIndex(x + y);
    case ExprKind::Sub: return ExprAttr::getIndex(x - y);
    case ExprKind::Mul:
      if (x.isSymbolicOrConstant() || y.isSymbolicOrConstant())
        return ExprAttr::getIndex(x * y);
      break;
    case ExprKind::FloorDiv:
    case ExprKind::Mod:
      if (auto c = dyn_cast<AffineConstantExpr>(y)) {
        if (c.getValue() <= 0)
          return p.emitError(loc) << "'" << stringifyExprKind(k)
                                  << "' by a non-positive constant ("
                                  << c.getValue() << ")";
        return ExprAttr::getIndex(k == ExprKind::FloorDiv ? x.floorDiv(y)
                                                          : x % y);
      }
      break;
    default:
      break;
    }
  }
  return ExprAttr::getOp(ctx, k, {a, b});
}

ParseResult ExprParser::parseInfixOp(int level, std::optional<ExprKind> &op) {
  op = parseInfixOpKind(level);
  if (op != ExprKind::Eq)
    return success();
  // A lone '=' never follows an expression: the first '=' must start '=='.
  SMLoc loc = p.getCurrentLocation();
  if (failed(p.parseOptionalEqual()))
    return p.emitError(loc) << "expected '==' (a single '=' is not an "
                               "operator)";
  return success();
}

std::optional<ExprKind> ExprParser::parseInfixOpKind(int level) {
  switch (level) {
  case kOr:
    if (succeeded(p.parseOptionalKeyword("or"))) return ExprKind::Or;
    return std::nullopt;
  case kAnd:
    if (succeeded(p.parseOptionalKeyword("and"))) return ExprKind::And;
    return std::nullopt;
  case kCmp:
    if (succeeded(p.parseOptionalLess())) {
      if (succeeded(p.parseOptionalEqual())) return ExprKind::Le;
      if (succeeded(p.parseOptionalGreater())) return ExprKind::Ne;
      return ExprKind::Lt;
    }
    if (succeeded(p.parseOptionalGreater())) {
      if (succeeded(p.parseOptionalEqual())) return ExprKind::Ge;
      return ExprKind::Gt;
    }
    if (succeeded(p.parseOptionalEqual()))
      return ExprKind::Eq; // the first half of '=='; see parseInfixOp
    return std::nullopt;
  case kAdd:
    if (succeeded(p.parseOptionalPlus())) return ExprKind::Add;
    if (succeeded(p.parseOptionalMinus())) return ExprKind::Sub;
    return std::nullopt;
  case kMul:
    if (succeeded(p.parseOptionalStar())) return ExprKind::Mul;
    if (succeeded(p.parseOptionalSlash())) return ExprKind::Div;
    if (succeeded(p.parseOptionalKeyword("floordiv"))) return ExprKind::FloorDiv;
    if (succeeded(p.parseOptionalKeyword("mod"))) return ExprKind::Mod;
    return std::nullopt;
  default:
    return std::nullopt;
  }
}

ParseResult ExprParser::parseLevel(int level, ExprAttr &result) {
  if (level > kMul)
    return parseUnary(result);
  if (failed(parseLevel(level + 1, result)))
    return failure();
  while (true) {
    SMLoc loc = p.getCurrentLocation();
    // `ceildiv` exists only between affine operands with a constant divisor.
    if (level == kMul && succeeded(p.parseOptionalKeyword("ceildiv"))) {
      ExprAttr rhs;
      if (failed(parseLevel(level + 1, rhs)))
        return failure();
      auto c = rhs.getKind() == ExprKind::Index
                   ? dyn_cast<AffineConstantExpr>(rhs.getIndex())
                   : AffineConstantExpr();
      if (result.getKind() != ExprKind::Index || !c || c.getValue() <= 0)
        return p.emitError(loc) << "'ceildiv' needs an affine left operand "
                                   "and a positive integer divisor";
      result = ExprAttr::getIndex(result.getIndex().ceilDiv(c));
      if (failed(checkDepth(result, loc)))
        return failure();
      continue;
    }
    std::optional<ExprKind> op;
    if (failed(parseInfixOp(level, op)))
      return failure();
    if (!op)
      return success();
    ExprAttr rhs;
    if (failed(parseLevel(level + 1, rhs)))
      return failure();
    FailureOr<ExprAttr> combined = combine(*op, result, rhs, loc);
    if (failed(combined) || failed(checkDepth(*combined, loc)))
      return failure();
    result = *combined;
    // Comparisons do not chain.
    if (level == kCmp)
      return success();
  }
}

ParseResult ExprParser::parseUnary(ExprAttr &result) {
  // Every level of parentheses, call, load and sign recurses through here.
  SMLoc loc = p.getCurrentLocation();
  if (nesting >= kMaxDepth)
    return emitTooDeep(loc);
  ++nesting;
  llvm::scope_exit restore([&] { --nesting; });
  if (succeeded(p.parseOptionalMinus())) {
    ExprAttr operand;
    if (failed(parseUnary(operand)))
      return failure();
    if (operand.getKind() == ExprKind::Index)
      result = ExprAttr::getIndex(-operand.getIndex());
    else if (operand.getKind() == ExprKind::Const)
      result = ExprAttr::getConst(ctx, -operand.getConstValue());
    else
      result = ExprAttr::getOp(ctx, ExprKind::Neg, {operand});
    return checkDepth(result, loc);
  }
  if (failed(parsePrimary(result)))
    return failure();
  return checkDepth(result, loc);
}

ParseResult ExprParser::parseRank(StringRef name, SMLoc loc, unsigned &pos) {
  if (names.positional) {
    unsigned n;
    if (!name.starts_with("d") || name.drop_front().getAsInteger(10, n))
      return p.emitError(loc) << "expected a positional rank 'd<N>', got '"
                              << name << "'";
    pos = n;
    return success();
  }
  if (isReservedName(name))
    return p.emitError(loc) << "'" << name
                            << "' is reserved and cannot name a rank";
  auto &space = *names.space;
  auto it = llvm::find(space, name.str());
  pos = it - space.begin();
  if (it == space.end())
    space.push_back(name.str());
  return success();
}

ParseResult ExprParser::parseLoadIndices(int64_t input, ExprAttr &result) {
  SmallVector<ExprAttr> indices;
  if (p.parseCommaSeparatedList(AsmParser::Delimiter::Square, [&] {
        ExprAttr idx;
        if (failed(parseLevel(kOr, idx)))
          return failure();
        indices.push_back(idx);
        return success();
      }))
    return failure();
  result = ExprAttr::getLoad(ctx, input, indices);
  return success();
}

ParseResult ExprParser::parseCall(StringRef name, FunctionInfo fn, SMLoc loc,
                                  ExprAttr &result) {
  if (p.parseLParen())
    return failure();
  if (fn.kind == ExprKind::Cast) {
    ExprAttr arg;
    Type type;
    if (failed(parseLevel(kOr, arg)) || p.parseColon() ||
        syntax::parseElementType(p, type) || p.parseRParen())
      return failure();
    if (!isSupportedElementType(type))
      return p.emitError(loc) << "cannot cast to " << type << " (expected "
                              << kElementTypeNames << ")";
    result = ExprAttr::getCast(arg, type);
    return success();
  }
  SmallVector<ExprAttr> args;
  if (failed(p.parseOptionalRParen())) {
    do {
      ExprAttr a;
      if (failed(parseLevel(kOr, a)))
        return failure();
      args.push_back(a);
    } while (succeeded(p.parseOptionalComma()));
    if (p.parseRParen())
      return failure();
  }
  if ((int)args.size() != fn.arity)
    return p.emitError(loc) << "'" << name << "' takes " << fn.arity
                            << " argument" << (fn.arity == 1 ? "" : "s")
                            << ", got " << args.size();
  result = ExprAttr::getOp(ctx, fn.kind, args);
  return success();
}

ParseResult ExprParser::parsePrimary(ExprAttr &result) {
  SMLoc loc = p.getCurrentLocation();
  if (succeeded(p.parseOptionalLParen())) {
    if (failed(parseLevel(kOr, result)) || p.parseRParen())
      return failure();
    return success();
  }
  // |rank|: the size of a rank.
  if (succeeded(p.parseOptionalVerticalBar())) {
    StringRef name;
    SMLoc nameLoc = p.getCurrentLocation();
    unsigned pos;
    if (p.parseKeyword(&name) || parseRank(name, nameLoc, pos) ||
        p.parseVerticalBar())
      return failure();
    result = ExprAttr::getIndex(getAffineSymbolExpr(pos, ctx));
    return success();
  }
  StringRef kw;
  if (succeeded(p.parseOptionalKeyword(&kw))) {
    if (kw == "inf") {
      result = ExprAttr::getConst(ctx, INFINITY);
      return success();
    }
    if (kw == "nan") {
      result = ExprAttr::getConst(ctx, NAN);
      return success();
    }
    if (auto fn = lookupFunction(kw))
      return parseCall(kw, *fn, loc, result);
    if (names.positional) {
      unsigned n;
      if (kw == "self")
        return parseLoadIndices(-1, result);
      if (kw.starts_with("in") && !kw.drop_front(2).getAsInteger(10, n))
        return parseLoadIndices(n, result);
    }
    // A name followed by '(' is a call; a rank is never followed by '('.
    if (succeeded(p.parseOptionalLParen()))
      return p.emitError(loc) << "unknown function '" << kw
                              << "' (expected one of " << kFunctionNames
                              << ")";
    unsigned pos;
    if (failed(parseRank(kw, loc, pos)))
      return failure();
    result = ExprAttr::getIndex(getAffineDimExpr(pos, ctx));
    return success();
  }
  if (names.parseInput) {
    int64_t input;
    OptionalParseResult r = names.parseInput(input);
    if (r.has_value()) {
      if (failed(*r))
        return failure();
      return parseLoadIndices(input, result);
    }
  }
  APInt intValue;
  OptionalParseResult ir = p.parseOptionalInteger(intValue);
  if (ir.has_value()) {
    if (failed(*ir))
      return failure();
    if (intValue.getSignificantBits() > 48)
      return p.emitError(loc) << "integer constant out of range";
    result = ExprAttr::getIndex(
        getAffineConstantExpr(intValue.getSExtValue(), ctx));
    return success();
  }
  // A floating-point literal. parseFloat would report its own, less helpful
  // error when there is none; the attribute parser reports nothing then. Keep
  // '[' and '{' from starting an array or a dictionary.
  if (succeeded(p.parseOptionalLSquare()) || succeeded(p.parseOptionalLBrace()))
    return p.emitError(loc) << "expected an expression: an operand element, a "
                               "rank, a number or a function call";
  Attribute literal;
  OptionalParseResult fr =
      p.parseOptionalAttribute(literal, Float64Type::get(ctx));
  if (fr.has_value() && failed(*fr))
    return failure();
  auto value = dyn_cast_if_present<FloatAttr>(literal);
  if (!value)
    return p.emitError(loc) << "expected an expression: an operand element, a "
                               "rank, a number or a function call";
  result = ExprAttr::getConst(ctx, value.getValueAsDouble());
  return success();
}

} // namespace

void syntax::printExpr(raw_ostream &os, ExprAttr e, const PrintNames &names) {
  printImpl(os, e, names, kTop);
}

void syntax::printAffine(raw_ostream &os, AffineExpr e,
                         ArrayRef<std::string> space) {
  printAffineImpl(os, e, space, kTop);
}

ParseResult syntax::parseExpr(AsmParser &p, ParseNames &names,
                              ExprAttr &result) {
  return ExprParser(p, names).parseLevel(kOr, result);
}

bool syntax::isReservedName(StringRef name) {
  return lookupFunction(name).has_value() ||
         llvm::is_contained({"inf", "nan", "and", "or", "floordiv", "mod",
                             "ceildiv", "if", "else", "init", "topk", "sum", "self"},
                            name);
}

ParseResult syntax::parseElementType(AsmParser &p, Type &type) {
  SMLoc loc = p.getCurrentLocation();
  OptionalParseResult r = p.parseOptionalType(type);
  if (r.has_value())
    return *r;
  StringRef name;
  if (succeeded(p.parseOptionalKeyword(&name)))
    return p.emitError(loc) << "unknown element type '" << name
                            << "' (expected " << kElementTypeNames << ")";
  return p.emitError(loc) << "expected an element type (" << kElementTypeNames
                          << ")";
}
