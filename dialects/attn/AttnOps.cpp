//===- AttnOps.cpp - attn dialect operations -------------------------------===//
//
// This file implements attn.cascade, attn.einsum and attn.yield: their custom
// syntax (which reads like the FuseMax notation) and their verifiers.
//
//===----------------------------------------------------------------------===//

#include "attn/Dialect.h"
#include "dialects/attn/ExprSyntax.h"

#include "mlir/IR/AffineMap.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/MathExtras.h"

using namespace mlir;
using namespace mlir::attn;

//===----------------------------------------------------------------------===//
// Parse scopes
//===----------------------------------------------------------------------===//
//
// The Einsum syntax does not repeat operand types (`%q[b, h, m, e]` rather
// than `%q[...] : !attn.t<...>`). OpAsmParser cannot look up the type of a
// value by name, so while a cascade is parsed its argument names and the
// names of the Einsums parsed so far are recorded with their types here.
// MLIR parses one buffer on one thread; the stack is thread-local and
// restored on every exit path.

namespace {
using Scope = llvm::StringMap<Type>;
thread_local std::vector<Scope> parseScopes;

struct ScopeGuard {
  ScopeGuard() { parseScopes.emplace_back(); }
  ~ScopeGuard() { parseScopes.pop_back(); }
};

StringRef stripSigil(StringRef name) {
  name.consume_front("%");
  return name;
}

/// The value of a constant expression (a float or an integer).
FailureOr<double> constantValue(ExprAttr e) {
  if (e.getKind() == ExprKind::Const)
    return e.getConstValue();
  if (e.getKind() == ExprKind::Index)
    if (auto c = dyn_cast<AffineConstantExpr>(e.getIndex()))
      return (double)c.getValue();
  return failure();
}

/// Parses a name (a bare identifier), with an error that says what it names.
ParseResult parseName(OpAsmParser &parser, StringRef &name, StringRef what) {
  SMLoc loc = parser.getCurrentLocation();
  if (failed(parser.parseOptionalKeyword(&name)))
    return parser.emitError(loc) << "expected " << what;
  return success();
}

bool isIdentifier(StringRef s) {
  if (s.empty() || !(isalpha(s[0]) || s[0] == '_'))
    return false;
  return llvm::all_of(s, [](char c) { return isalnum(c) || c == '_'; });
}
} // namespace

//===----------------------------------------------------------------------===//
// CascadeOp
//===----------------------------------------------------------------------===//

std::optional<int64_t> CascadeOp::getRankSize(StringRef rank) {
  for (auto r : getRanks().getAsRange<RankAttr>())
    if (r.getName().getValue() == rank)
      return r.getSize();
  if (PartitionAttr part = getPartitionOf(rank)) {
    if (part.getInner().getValue() == rank)
      return part.getTile();
    std::optional<int64_t> whole = getRankSize(part.getRank().getValue());
    if (!whole || ShapedType::isDynamic(*whole))
      return ShapedType::kDynamic;
    return llvm::divideCeil(*whole, part.getTile());
  }
  return std::nullopt;
}

PartitionAttr CascadeOp::getPartitionOf(StringRef rank) {
  for (auto p : getPartitions().getAsRange<PartitionAttr>())
    if (p.getOuter().getValue() == rank || p.getInner().getValue() == rank)
      return p;
  return {};
}

Attribute CascadeOp::getArgAnnotation(unsigned i, StringRef name) {
  ArrayAttr all = getArgAttrsAttr();
  if (!all || i >= all.size())
    return {};
  return cast<DictionaryAttr>(all[i]).get(name);
}

void CascadeOp::getAsmBlockArgumentNames(Region &region,
                                         OpAsmSetValueNameFn setNameFn) {
  for (auto [arg, name] : llvm::zip(region.getArguments(), getArgNames()))
    setNameFn(arg, cast<StringAttr>(name).getValue());
}

/// attn.cascade @name ranks(b, m, p, e = 128) partition(p -> p1, p0 = 64)
///     where(h = 4 * g) (%q: type {attrs}, ...) -> (o: type, ...) { ... }
ParseResult CascadeOp::parse(OpAsmParser &parser, OperationState &result) {
  MLIRContext *ctx = parser.getContext();
  Builder b(ctx);
  StringAttr symName;
  if (parser.parseSymbolName(symName, getSymNameAttrName(result.name),
                             result.attributes))
    return failure();

  // A rank name being declared.
  auto parseRankName = [&](StringRef &name) -> ParseResult {
    SMLoc loc = parser.getCurrentLocation();
    if (parseName(parser, name, "a rank name"))
      return failure();
    if (syntax::isReservedName(name))
      return parser.emitError(loc)
             << "'" << name << "' is reserved and cannot name a rank";
    return success();
  };

  // ranks(name [= size], ...)
  SmallVector<Attribute> ranks;
  if (parser.parseKeyword("ranks") ||
      parser.parseCommaSeparatedList(OpAsmParser::Delimiter::Paren, [&]() -> ParseResult {
        StringRef name;
        int64_t size = ShapedType::kDynamic;
        if (parseRankName(name))
          return failure();
        if (succeeded(parser.parseOptionalEqual()) &&
            failed(parser.parseOptionalQuestion())) {
          SMLoc sizeLoc = parser.getCurrentLocation();
          if (parser.parseInteger(size))
            return failure();
          // kDynamic is INT64_MIN: do not let it read as '?'.
          if (ShapedType::isDynamic(size))
            return parser.emitError(sizeLoc) << "rank '" << name
                                             << "' has non-positive size "
                                             << size;
        }
        ranks.push_back(RankAttr::get(ctx, b.getStringAttr(name), size));
        return success();
      }))
    return failure();
  result.addAttribute(getRanksAttrName(result.name), b.getArrayAttr(ranks));

  // partition(p -> p1, p0 = 64 [ragged]) clauses.
  SmallVector<Attribute> partitions;
  while (succeeded(parser.parseOptionalKeyword("partition"))) {
    StringRef whole, outer, inner;
    int64_t tile;
    if (parser.parseLParen() || parseName(parser, whole, "a rank name") ||
        parser.parseArrow() || parseRankName(outer) || parser.parseComma() ||
        parseRankName(inner) || parser.parseEqual() ||
        parser.parseInteger(tile))
      return failure();
    bool ragged = succeeded(parser.parseOptionalKeyword("ragged"));
    if (parser.parseRParen())
      return failure();
    partitions.push_back(PartitionAttr::get(
        ctx, b.getStringAttr(whole), b.getStringAttr(outer),
        b.getStringAttr(inner), tile, ragged));
  }
  if (!partitions.empty())
    result.addAttribute(getPartitionsAttrName(result.name),
                        b.getArrayAttr(partitions));

  // where(h = 4 * g, ...)
  if (succeeded(parser.parseOptionalKeyword("where"))) {
    SmallVector<Attribute> relations;
    if (parser.parseCommaSeparatedList(OpAsmParser::Delimiter::Paren, [&] {
          StringRef lhs, rhs;
          int64_t factor;
          if (parseName(parser, lhs, "a rank name") || parser.parseEqual() ||
              parser.parseInteger(factor) || parser.parseStar() ||
              parseName(parser, rhs, "a rank name"))
            return failure();
          relations.push_back(RelationAttr::get(ctx, b.getStringAttr(lhs),
                                                factor, b.getStringAttr(rhs)));
          return success();
        }))
      return failure();
    result.addAttribute(getRelationsAttrName(result.name),
                        b.getArrayAttr(relations));
  }

  // Arguments.
  SmallVector<OpAsmParser::Argument> args;
  if (parser.parseArgumentList(args, OpAsmParser::Delimiter::Paren,
                               /*allowType=*/true, /*allowAttrs=*/true))
    return failure();
  SmallVector<Type> argTypes;
  SmallVector<Attribute> argNames, argAttrs;
  bool anyArgAttrs = false;
  for (auto &arg : args) {
    argTypes.push_back(arg.type);
    argNames.push_back(b.getStringAttr(stripSigil(arg.ssaName.name)));
    DictionaryAttr attrs = arg.attrs ? arg.attrs : b.getDictionaryAttr({});
    anyArgAttrs |= !attrs.empty();
    argAttrs.push_back(attrs);
  }

  // Results: -> (name: type, ...)
  SmallVector<Type> resultTypes;
  SmallVector<Attribute> resultNames;
  if (parser.parseArrow() ||
      parser.parseCommaSeparatedList(OpAsmParser::Delimiter::Paren, [&]() -> ParseResult {
        StringRef name;
        Type type;
        if (parseName(parser, name, "a result name") || parser.parseColon())
          return failure();
        SMLoc typeLoc = parser.getCurrentLocation();
        OptionalParseResult r = parser.parseOptionalType(type);
        if (!r.has_value())
          return parser.emitError(typeLoc)
                 << "expected the type of result '" << name << "'";
        if (failed(*r))
          return failure();
        resultNames.push_back(b.getStringAttr(name));
        resultTypes.push_back(type);
        return success();
      }))
    return failure();

  result.addAttribute(getFunctionTypeAttrName(result.name),
                      TypeAttr::get(b.getFunctionType(argTypes, resultTypes)));
  result.addAttribute(getArgNamesAttrName(result.name), b.getArrayAttr(argNames));
  result.addAttribute(getResultNamesAttrName(result.name),
                      b.getArrayAttr(resultNames));
  if (anyArgAttrs)
    result.addAttribute(getArgAttrsAttrName(result.name),
                        b.getArrayAttr(argAttrs));
  if (parser.parseOptionalAttrDictWithKeyword(result.attributes))
    return failure();

  ScopeGuard scope;
  for (auto &arg : args)
    parseScopes.back()[stripSigil(arg.ssaName.name)] = arg.type;
  Region *body = result.addRegion();
  return parser.parseRegion(*body, args);
}

void CascadeOp::print(OpAsmPrinter &p) {
  p << ' ';
  p.printSymbolName(getSymName());
  p << " ranks(";
  llvm::interleaveComma(getRanks().getAsRange<RankAttr>(), p, [&](RankAttr r) {
    p << r.getName().getValue();
    if (!ShapedType::isDynamic(r.getSize()))
      p << " = " << r.getSize();
  });
  p << ')';
  for (auto part : getPartitions().getAsRange<PartitionAttr>()) {
    p << " partition(" << part.getRank().getValue() << " -> "
      << part.getOuter().getValue() << ", " << part.getInner().getValue()
      << " = " << part.getTile() << (part.getRagged() ? " ragged" : "") << ')';
  }
  if (!getRelations().empty()) {
    p << " where(";
    llvm::interleaveComma(getRelations().getAsRange<RelationAttr>(), p,
                          [&](RelationAttr r) {
                            p << r.getLhs().getValue() << " = " << r.getFactor()
                              << " * " << r.getRhs().getValue();
                          });
    p << ')';
  }
  p << "\n    (";
  Block &block = getBodyBlock();
  ArrayAttr argAttrs = getArgAttrsAttr();
  llvm::interleaveComma(llvm::enumerate(block.getArguments()), p, [&](auto it) {
    auto attrs = argAttrs ? cast<DictionaryAttr>(argAttrs[it.index()]).getValue()
                          : ArrayRef<NamedAttribute>();
    p.printRegionArgument(it.value(), attrs);
  });
  p << ")\n    -> (";
  llvm::interleaveComma(
      llvm::zip(getResultNames(), getFunctionType().getResults()), p,
      [&](auto it) {
        p << cast<StringAttr>(std::get<0>(it)).getValue() << ": "
          << std::get<1>(it);
      });
  p << ')';
  p.printOptionalAttrDictWithKeyword(
      (*this)->getAttrs(),
      {getSymNameAttrName(), getFunctionTypeAttrName(), getRanksAttrName(),
       getPartitionsAttrName(), getRelationsAttrName(), getArgNamesAttrName(),
       getResultNamesAttrName(), getArgAttrsAttrName()});
  p << ' ';
  p.printRegion(getBody(), /*printEntryBlockArgs=*/false);
}

LogicalResult CascadeOp::verify() {
  // Ranks: unique names, positive or dynamic sizes.
  llvm::StringMap<int64_t> sizes;
  auto checkName = [&](StringRef name) -> LogicalResult {
    if (!isIdentifier(name))
      return emitOpError() << "rank name '" << name
                           << "' is not an identifier";
    if (syntax::isReservedName(name))
      return emitOpError() << "'" << name
                           << "' is reserved and cannot name a rank";
    return success();
  };
  for (auto r : getRanks().getAsRange<RankAttr>()) {
    StringRef name = r.getName().getValue();
    if (failed(checkName(name)))
      return failure();
    if (!sizes.try_emplace(name, r.getSize()).second)
      return emitOpError() << "rank '" << name << "' is declared twice";
    if (!ShapedType::isDynamic(r.getSize()) && r.getSize() <= 0)
      return emitOpError() << "rank '" << name << "' has non-positive size "
                           << r.getSize();
  }
  for (auto part : getPartitions().getAsRange<PartitionAttr>()) {
    StringRef whole = part.getRank().getValue();
    auto it = sizes.find(whole);
    if (it == sizes.end())
      return emitOpError() << "partition of unknown rank '" << whole << "'";
    if (part.getTile() <= 0)
      return emitOpError() << "partition of '" << whole
                           << "' has non-positive tile size " << part.getTile();
    for (StringAttr sub : {part.getOuter(), part.getInner()})
      if (failed(checkName(sub.getValue())))
        return failure();
    for (StringAttr sub : {part.getOuter(), part.getInner()})
      if (!sizes.try_emplace(sub.getValue(), 0).second)
        return emitOpError() << "partition of '" << whole << "' declares rank '"
                             << sub.getValue() << "', which already exists";
    if (!ShapedType::isDynamic(it->second) && !part.getRagged() &&
        it->second % part.getTile() != 0)
      return emitOpError() << "partition of '" << whole << "' (size "
                           << it->second << ") into tiles of " << part.getTile()
                           << " does not divide it; declare it 'ragged' to "
                              "mask the remainder";
  }
  for (auto rel : getRelations().getAsRange<RelationAttr>()) {
    for (StringAttr r : {rel.getLhs(), rel.getRhs()})
      if (!hasRank(r.getValue()))
        return emitOpError() << "relation names unknown rank '" << r.getValue()
                             << "'";
    if (rel.getFactor() <= 0)
      return emitOpError() << "relation factor must be positive, got "
                           << rel.getFactor();
    if (rel.getLhs() == rel.getRhs())
      return emitOpError() << "relation " << rel.getLhs().getValue() << " = "
                           << rel.getFactor() << " * " << rel.getRhs().getValue()
                           << " relates rank '" << rel.getLhs().getValue()
                           << "' to itself";
    int64_t l = *getRankSize(rel.getLhs().getValue());
    int64_t r = *getRankSize(rel.getRhs().getValue());
    int64_t product;
    if (!ShapedType::isDynamic(l) && !ShapedType::isDynamic(r) &&
        (llvm::MulOverflow(rel.getFactor(), r, product) || l != product))
      return emitOpError() << "relation " << rel.getLhs().getValue() << " = "
                           << rel.getFactor() << " * " << rel.getRhs().getValue()
                           << " contradicts the sizes " << l << " and " << r;
  }

  // Signature.
  FunctionType fnType = getFunctionType();
  if (getArgNames().size() != fnType.getNumInputs() ||
      getResultNames().size() != fnType.getNumResults())
    return emitOpError() << "needs one name per argument and per result";
  llvm::StringSet<> names;
  for (Attribute a : llvm::concat<const Attribute>(getArgNames().getValue(),
                                                   getResultNames().getValue())) {
    StringRef name = cast<StringAttr>(a).getValue();
    if (!isIdentifier(name))
      return emitOpError() << "argument and result names must be identifiers "
                              "(they name C parameters), got '" << name << "'";
    if (!names.insert(name).second)
      return emitOpError() << "name '" << name << "' is used twice";
  }
  auto checkType = [&](Type t, StringRef what,
                       StringRef name) -> LogicalResult {
    auto tensor = dyn_cast<NamedTensorType>(t);
    if (!tensor)
      return emitOpError() << what << " '" << name
                           << "' must be an !attn.t tensor, got " << t;
    for (StringAttr r : tensor.getRanks())
      if (!hasRank(r.getValue()))
        return emitOpError() << "unknown rank '" << r.getValue() << "' in the "
                             << what << " '" << name << "'";
    return success();
  };
  for (auto [t, n] : llvm::zip(fnType.getInputs(), getArgNames()))
    if (failed(checkType(t, "argument", cast<StringAttr>(n).getValue())))
      return failure();
  for (auto [t, n] : llvm::zip(fnType.getResults(), getResultNames()))
    if (failed(checkType(t, "result", cast<StringAttr>(n).getValue())))
      return failure();

  // Annotations on arguments.
  if (ArrayAttr argAttrs = getArgAttrsAttr()) {
    if (argAttrs.size() != fnType.getNumInputs())
      return emitOpError() << "needs one attribute dictionary per argument";
    auto *dialect = getContext()->getLoadedDialect<AttnDialect>();
    for (auto [i, dict] : llvm::enumerate(argAttrs.getAsRange<DictionaryAttr>()))
      for (NamedAttribute attr : dict)
        if (attr.getName().getValue().starts_with("attn.") &&
            failed(dialect->verifyRegionArgAttribute(*this, 0, i, attr)))
          return failure();
  }
  return success();
}

LogicalResult CascadeOp::verifyRegions() {
  Block &block = getBodyBlock();
  FunctionType fnType = getFunctionType();
  if (block.getArgumentTypes() != fnType.getInputs())
    return emitOpError() << "body arguments do not match the signature";
  for (Operation &op : block)
    if (!isa<EinsumOp, YieldOp>(op))
      return op.emitOpError() << "cannot appear in an attn.cascade, whose body "
                                 "holds attn.einsum operations and an "
                                 "attn.yield";
  auto yield = dyn_cast<YieldOp>(block.getTerminator());
  if (!yield)
    return emitOpError() << "body must end with attn.yield";
  if (yield.getValues().getTypes() != fnType.getResults())
    return yield.emitOpError()
           << "yields (" << yield.getValues().getTypes()
           << ") but the cascade returns (" << fnType.getResults() << ")";
  return success();
}

//===----------------------------------------------------------------------===//
// EinsumOp
//===----------------------------------------------------------------------===//

StringRef EinsumOp::getIterativeRank() {
  for (AffineExpr e : getOutput().getResults())
    if (auto add = dyn_cast<AffineBinaryOpExpr>(e);
        add && add.getKind() == AffineExprKind::Add)
      if (auto d = dyn_cast<AffineDimExpr>(add.getLHS()))
        return cast<StringAttr>(getSpace()[d.getPosition()]).getValue();
  return {};
}

SmallVector<StringRef> EinsumOp::getOutputRanks() {
  SmallVector<StringRef> out;
  for (StringAttr r : getResultType().getRanks())
    out.push_back(r.getValue());
  return out;
}

/// Positions of the ranks iterated: dims used in the output, the map
/// expression or the condition.
static llvm::SmallSetVector<unsigned, 8> iteratedDims(EinsumOp op) {
  llvm::SmallSetVector<unsigned, 8> dims;
  auto addExpr = [&](AffineExpr e) {
    e.walk([&](AffineExpr sub) {
      if (auto d = dyn_cast<AffineDimExpr>(sub))
        dims.insert(d.getPosition());
    });
  };
  for (AffineExpr e : op.getOutput().getResults())
    addExpr(e);
  auto addTree = [&](ExprAttr tree) {
    tree.walk([&](ExprAttr node) {
      if (node.getKind() == ExprKind::Index)
        addExpr(node.getIndex());
    });
  };
  addTree(op.getExpr());
  if (op.getCond())
    addTree(*op.getCond());
  return dims;
}

SmallVector<StringRef> EinsumOp::getIterationRanks() {
  auto dims = iteratedDims(*this);
  SmallVector<StringRef> out = getOutputRanks();
  for (unsigned i = 0, e = getSpace().size(); i < e; ++i) {
    StringRef name = cast<StringAttr>(getSpace()[i]).getValue();
    if (dims.contains(i) && !llvm::is_contained(out, name))
      out.push_back(name);
  }
  return out;
}

void EinsumOp::getAsmResultNames(OpAsmSetValueNameFn setNameFn) {
  if (auto name = getName())
    setNameFn(getResult(), *name);
}

/// %x = attn.einsum [out] = expr [sum(ranks)] [topk(k, r)] [if (cond)]
///        [else c] [init(c)] {attrs} : elemtype
ParseResult EinsumOp::parse(OpAsmParser &parser, OperationState &result) {
  MLIRContext *ctx = parser.getContext();
  Builder b(ctx);
  SmallVector<std::string> space;
  StringRef selfName = stripSigil(parser.getResultName(0).first);

  // Operands, numbered in order of first use.
  SmallVector<OpAsmParser::UnresolvedOperand> operands;
  SmallVector<Type> operandTypes;
  syntax::ParseNames names;
  names.space = &space;
  names.parseInput = [&](int64_t &input) -> OptionalParseResult {
    OpAsmParser::UnresolvedOperand operand;
    OptionalParseResult r = parser.parseOptionalOperand(operand);
    if (!r.has_value() || failed(*r))
      return r;
    StringRef name = stripSigil(operand.name);
    if (name == selfName && !selfName.empty()) {
      input = -1;
      return success();
    }
    for (auto [i, o] : llvm::enumerate(operands))
      if (o.name == operand.name && o.number == operand.number) {
        input = i;
        return success();
      }
    Type type;
    if (!parseScopes.empty()) {
      auto it = parseScopes.back().find(name);
      if (it != parseScopes.back().end())
        type = it->second;
    }
    if (!type && parseScopes.empty())
      return parser.emitError(operand.location)
             << "the type of '%" << name << "' is unknown: attn.einsum reads "
                "the arguments of an enclosing attn.cascade in custom form "
                "and the Einsums before it";
    if (!type)
      return parser.emitError(operand.location)
             << "use of undefined value '%" << name
             << "' (operands of attn.einsum are cascade arguments or earlier "
                "Einsums)";
    input = operands.size();
    operands.push_back(operand);
    operandTypes.push_back(type);
    return success();
  };

  // Output index: [b, h, m, p] or [m, p1 + 1].
  SmallVector<AffineExpr> outExprs;
  SMLoc outLoc = parser.getCurrentLocation();
  if (parser.parseCommaSeparatedList(OpAsmParser::Delimiter::Square, [&]() -> ParseResult {
        SMLoc loc = parser.getCurrentLocation();
        ExprAttr e;
        if (syntax::parseExpr(parser, names, e))
          return failure();
        if (e.getKind() != ExprKind::Index)
          return parser.emitError(loc)
                 << "output indices are ranks (or 'r + 1' for an iterative "
                    "rank)";
        outExprs.push_back(e.getIndex());
        return success();
      }))
    return failure();

  ExprAttr expr;
  if (parser.parseEqual() || syntax::parseExpr(parser, names, expr))
    return failure();

  // Reduce action.
  Reducer reducer = Reducer::None;
  SmallVector<Attribute> reduced;
  StringRef reducerName;
  bool explicitReducer = succeeded(
      parser.parseOptionalKeyword(&reducerName, {"sum", "max", "min"}));
  if (explicitReducer) {
    reducer = *symbolizeReducer(reducerName);
    if (parser.parseCommaSeparatedList(OpAsmParser::Delimiter::Paren, [&] {
          StringRef r;
          if (parseName(parser, r, "a rank name"))
            return failure();
          reduced.push_back(b.getStringAttr(r));
          return success();
        }))
      return failure();
  }

  // Populate action.
  if (succeeded(parser.parseOptionalKeyword("topk"))) {
    int64_t k;
    StringRef rank;
    if (parser.parseLParen() || parser.parseInteger(k) || parser.parseComma() ||
        parseName(parser, rank, "a rank name") || parser.parseRParen())
      return failure();
    result.addAttribute(getPopulateAttrName(result.name),
                        TopKAttr::get(ctx, k, b.getStringAttr(rank)));
  }

  // Condition.
  if (succeeded(parser.parseOptionalKeyword("if"))) {
    ExprAttr cond;
    if (parser.parseLParen() || syntax::parseExpr(parser, names, cond) ||
        parser.parseRParen())
      return failure();
    result.addAttribute(getCondAttrName(result.name), cond);
  }

  // Value of elements that receive no point.
  if (succeeded(parser.parseOptionalKeyword("else"))) {
    SMLoc loc = parser.getCurrentLocation();
    ExprAttr fill;
    if (syntax::parseExpr(parser, names, fill))
      return failure();
    FailureOr<double> value = constantValue(fill);
    if (failed(value))
      return parser.emitError(loc) << "else takes a constant";
    result.addAttribute(getFillAttrName(result.name), b.getF64FloatAttr(*value));
  }

  // Initial value of an iterative Einsum.
  if (succeeded(parser.parseOptionalKeyword("init"))) {
    SMLoc loc = parser.getCurrentLocation();
    ExprAttr init;
    if (parser.parseLParen() || syntax::parseExpr(parser, names, init) ||
        parser.parseRParen())
      return failure();
    FailureOr<double> value = constantValue(init);
    if (failed(value))
      return parser.emitError(loc) << "init takes a constant";
    result.addAttribute(getInitAttrName(result.name), b.getF64FloatAttr(*value));
  }

  Type elementType;
  if (parser.parseOptionalAttrDict(result.attributes))
    return failure();
  SMLoc colonLoc = parser.getCurrentLocation();
  if (failed(parser.parseOptionalColon()))
    return parser.emitError(colonLoc)
           << "expected ':' and the element type, or an operator, a reduction "
              "(sum/max/min), topk, if, else, init or attributes";
  if (syntax::parseElementType(parser, elementType))
    return failure();

  // Output ranks: each index is a rank r or r + 1.
  SmallVector<StringAttr> outRanks;
  for (AffineExpr e : outExprs) {
    AffineExpr base = e;
    if (auto add = dyn_cast<AffineBinaryOpExpr>(e);
        add && add.getKind() == AffineExprKind::Add)
      if (auto c = dyn_cast<AffineConstantExpr>(add.getRHS()); c && c.getValue() == 1)
        base = add.getLHS();
    auto d = dyn_cast<AffineDimExpr>(base);
    if (!d)
      return parser.emitError(outLoc)
             << "output indices are ranks (or 'r + 1' for an iterative rank)";
    StringAttr rank = b.getStringAttr(space[d.getPosition()]);
    if (llvm::is_contained(outRanks, rank))
      return parser.emitError(outLoc)
             << "rank '" << rank.getValue() << "' appears twice in the output";
    outRanks.push_back(rank);
  }

  // Without a written reducer, ranks absent from the output are summed.
  unsigned n = space.size();
  AffineMap outMap = AffineMap::get(n, n, outExprs, ctx);
  result.addAttribute(getOutputAttrName(result.name), AffineMapAttr::get(outMap));
  SmallVector<Attribute> spaceAttrs;
  for (auto &s : space)
    spaceAttrs.push_back(b.getStringAttr(s));
  result.addAttribute(getSpaceAttrName(result.name), b.getArrayAttr(spaceAttrs));
  result.addAttribute(getExprAttrName(result.name), expr);
  if (!explicitReducer) {
    // Compute the reduced ranks the same way the verifier does.
    llvm::SmallSetVector<unsigned, 8> dims;
    auto add = [&](ExprAttr tree) {
      tree.walk([&](ExprAttr node) {
        if (node.getKind() == ExprKind::Index)
          node.getIndex().walk([&](AffineExpr sub) {
            if (auto d = dyn_cast<AffineDimExpr>(sub))
              dims.insert(d.getPosition());
          });
      });
    };
    add(expr);
    if (auto cond = result.attributes.get(getCondAttrName(result.name)))
      add(cast<ExprAttr>(cond));
    for (unsigned d : dims)
      if (!llvm::is_contained(outRanks, b.getStringAttr(space[d])))
        reduced.push_back(b.getStringAttr(space[d]));
    if (!reduced.empty())
      reducer = Reducer::Sum;
  }
  if (reducer != Reducer::None) {
    result.addAttribute(getReducerAttrName(result.name),
                        ReducerAttr::get(ctx, reducer));
    result.addAttribute(getReducedAttrName(result.name), b.getArrayAttr(reduced));
  }
  if (!selfName.empty() && !llvm::all_of(selfName, ::isdigit))
    result.addAttribute(getNameAttrName(result.name), b.getStringAttr(selfName));

  Type resultType = NamedTensorType::getChecked(
      [&] { return parser.emitError(outLoc); }, ctx, ArrayRef<StringAttr>(outRanks),
      elementType);
  if (!resultType)
    return failure();
  result.addTypes(resultType);
  if (!parseScopes.empty() && !selfName.empty())
    parseScopes.back()[selfName] = resultType;
  return parser.resolveOperands(operands, operandTypes,
                                parser.getCurrentLocation(), result.operands);
}

void EinsumOp::print(OpAsmPrinter &p) {
  SmallVector<std::string> space;
  for (StringAttr s : getSpace().getAsRange<StringAttr>())
    space.push_back(s.getValue().str());
  syntax::PrintNames names;
  names.space = space;
  names.printInput = [&](raw_ostream &, int64_t i) {
    p.printOperand(i < 0 ? getResult() : getInputs()[i]);
  };
  raw_ostream &os = p.getStream();
  os << " [";
  llvm::interleaveComma(getOutput().getResults(), os, [&](AffineExpr e) {
    syntax::printAffine(os, e, space);
  });
  os << "] = ";
  syntax::printExpr(os, getExpr(), names);
  if (getReducer() != Reducer::None) {
    os << ' ' << stringifyReducer(getReducer()) << '(';
    llvm::interleaveComma(getReduced().getAsValueRange<StringAttr>(), os);
    os << ')';
  }
  if (auto pop = getPopulate())
    os << " topk(" << pop->getK() << ", " << pop->getRank().getValue() << ')';
  if (auto cond = getCond()) {
    os << " if (";
    syntax::printExpr(os, *cond, names);
    os << ')';
  }
  if (auto fill = getFill()) {
    os << " else ";
    syntax::printExpr(os, ExprAttr::getConst(getContext(), fill->convertToDouble()),
                      names);
  }
  if (auto init = getInit()) {
    os << " init(";
    syntax::printExpr(os, ExprAttr::getConst(getContext(), init->convertToDouble()),
                      names);
    os << ')';
  }
  p.printOptionalAttrDict((*this)->getAttrs(),
                          {getSpaceAttrName(), getOutputAttrName(),
                           getExprAttrName(), getReducerAttrName(),
                           getReducedAttrName(), getCondAttrName(),
                           getPopulateAttrName(), getInitAttrName(),
                           getFillAttrName(), getNameAttrName()});
  os << " : " << getResultType().getElementType();
}

namespace {
/// Checks an Einsum's expression trees against its space and operands.
class EinsumChecker {
public:
  EinsumChecker(EinsumOp op, CascadeOp cascade)
      : op(op), cascade(cascade), n(op.getSpace().size()),
        iterative(op.getIterativeRank()) {}

  StringRef rank(unsigned pos) {
    return cast<StringAttr>(op.getSpace()[pos]).getValue();
  }

  /// "operand #1 (%k)", or "its own result" for input -1.
  std::string describe(int64_t input) {
    if (input < 0)
      return "its own result";
    std::string text = "operand #" + std::to_string(input);
    Value v = op.getInputs()[input];
    StringRef name;
    if (auto arg = dyn_cast<BlockArgument>(v)) {
      if (arg.getOwner()->getParentOp() == cascade.getOperation() &&
          arg.getArgNumber() < cascade.getArgNames().size())
        name = cast<StringAttr>(cascade.getArgNames()[arg.getArgNumber()])
                   .getValue();
    } else if (auto def = v.getDefiningOp<EinsumOp>()) {
      if (def.getName())
        name = *def.getName();
    }
    if (!name.empty())
      text += " (%" + name.str() + ")";
    return text;
  }

  NamedTensorType typeOf(int64_t input) {
    return input < 0 ? op.getResultType()
                     : cast<NamedTensorType>(op.getInputs()[input].getType());
  }

  bool isIntegerValued(ExprAttr e) {
    switch (e.getKind()) {
    case ExprKind::Index:
      return true;
    case ExprKind::Load:
      return isa<IntegerType>(typeOf(e.getInput()).getElementType());
    case ExprKind::Add: case ExprKind::Sub: case ExprKind::Mul:
    case ExprKind::FloorDiv: case ExprKind::Mod: case ExprKind::Max:
    case ExprKind::Min: case ExprKind::Neg:
      return llvm::all_of(e.getArgs(), [&](ExprAttr a) { return isIntegerValued(a); });
    case ExprKind::Select:
      return isIntegerValued(e.getArgs()[1]) && isIntegerValued(e.getArgs()[2]);
    default:
      return false;
    }
  }

  bool isBoolean(ExprAttr e) {
    return e.isPredicate() ||
           (e.getKind() == ExprKind::Load &&
            typeOf(e.getInput()).getElementType().isInteger(1));
  }

  LogicalResult checkAffine(AffineExpr e) {
    std::optional<unsigned> outside;
    WalkResult r = e.walk([&](AffineExpr sub) {
      if (auto d = dyn_cast<AffineDimExpr>(sub); d && d.getPosition() >= n)
        outside = d.getPosition();
      if (auto s = dyn_cast<AffineSymbolExpr>(sub); s && s.getPosition() >= n)
        outside = s.getPosition();
      return outside ? WalkResult::interrupt() : WalkResult::advance();
    });
    if (r.wasInterrupted())
      return op.emitOpError() << "index expression refers to rank d"
                              << *outside << ", but the space has " << n
                              << " rank" << (n == 1 ? "" : "s");
    return success();
  }

  LogicalResult checkLoad(ExprAttr e) {
    int64_t input = e.getInput();
    int64_t numInputs = op.getInputs().size();
    if (input >= numInputs || input < -1)
      return op.emitOpError() << "loads from operand #" << input << " but has "
                              << numInputs << " operand"
                              << (numInputs == 1 ? "" : "s");
    if (input < 0 && iterative.empty())
      return op.emitOpError() << "reads its own result, which only an Einsum "
                                 "iterative along a rank ('r + 1' in the "
                                 "output) may do";
    NamedTensorType type = typeOf(input);
    std::string what = describe(input);
    if (e.getArgs().size() != type.getNumDims())
      return op.emitOpError() << "indexes " << what << " with "
                              << e.getArgs().size() << " indices, but it has "
                              << type.getNumDims() << " ranks ("
                              << type << ")";
    for (auto [i, idx] : llvm::enumerate(e.getArgs())) {
      if (failed(check(idx)))
        return failure();
      if (!isIntegerValued(idx))
        return op.emitOpError() << "index " << i << " of " << what
                                << " is not an integer: indices are ranks, "
                                   "affine expressions or loads from integer "
                                   "tensors";
      StringRef dimRank = type.getRanks()[i].getValue();
      if (idx.getKind() != ExprKind::Index)
        continue;
      auto d = dyn_cast<AffineDimExpr>(idx.getIndex());
      if (input < 0 && dimRank == iterative &&
          !(d && rank(d.getPosition()) == iterative))
        return op.emitOpError() << "an iterative Einsum reads its own result "
                                   "at step '"
                                << iterative << "' (the previous state) only";
      if (!d || rank(d.getPosition()) == dimRank)
        continue;
      // A dimension indexed by a different rank: the sizes must agree.
      StringRef used = rank(d.getPosition());
      int64_t usedSize = *cascade.getRankSize(used);
      int64_t dimSize = *cascade.getRankSize(dimRank);
      if (ShapedType::isDynamic(usedSize) || ShapedType::isDynamic(dimSize) ||
          usedSize != dimSize) {
        auto diag = op.emitOpError()
                    << "indexes rank '" << dimRank << "' of " << what
                    << " with rank '" << used << "' of ";
        if (ShapedType::isDynamic(usedSize) || ShapedType::isDynamic(dimSize))
          diag << "a size not known to be equal";
        else
          diag << "a different size (|" << used << "| = " << usedSize << ", |"
               << dimRank << "| = " << dimSize << ")";
        diag << "; index it with an expression of '" << used
             << "' (e.g. '" << used << " floordiv 4') or use '" << dimRank
             << "'";
        return diag;
      }
    }
    return success();
  }

  LogicalResult check(ExprAttr e) {
    ExprKind k = e.getKind();
    int arity = exprArity(k);
    if (arity >= 0 && (int)e.getArgs().size() != arity)
      return op.emitOpError() << "'" << stringifyExprKind(k) << "' takes "
                              << arity << " operands, got " << e.getArgs().size();
    switch (k) {
    case ExprKind::Load:
      return checkLoad(e);
    case ExprKind::Index:
      if (!e.getIndex())
        return op.emitOpError() << "index node without an expression";
      return checkAffine(e.getIndex());
    case ExprKind::Const:
      if (!isa_and_present<FloatAttr>(e.getValue()))
        return op.emitOpError() << "constant node without a value";
      return success();
    case ExprKind::Cast:
      if (!e.getCastType() || !isSupportedElementType(e.getCastType()))
        return op.emitOpError() << "cast to an unsupported type";
      break;
    default:
      break;
    }
    for (auto [i, a] : llvm::enumerate(e.getArgs())) {
      if (failed(check(a)))
        return failure();
      bool wantBool = k == ExprKind::And || k == ExprKind::Or ||
                      k == ExprKind::Not || (k == ExprKind::Select && i == 0);
      if (wantBool && !isBoolean(a))
        return op.emitOpError() << "'" << stringifyExprKind(k)
                                << "' needs a predicate as operand " << i;
      if (!wantBool && a.isPredicate())
        return op.emitOpError() << "a predicate is used as a number in '"
                                << stringifyExprKind(k)
                                << "'; use select(pred, a, b)";
    }
    return success();
  }

  EinsumOp op;
  CascadeOp cascade;
  unsigned n;
  StringRef iterative;
};
} // namespace

LogicalResult EinsumOp::verify() {
  auto cascade = (*this)->getParentOfType<CascadeOp>();
  if (!cascade)
    return emitOpError() << "must be inside an attn.cascade";
  unsigned n = getSpace().size();
  AffineMap out = getOutput();
  if (out.getNumDims() != n || out.getNumSymbols() != n)
    return emitOpError() << "output map must have one dimension and one symbol "
                            "per rank of its space";

  // 1. Every rank is declared, once.
  llvm::StringSet<> seen;
  for (StringRef r : getSpace().getAsValueRange<StringAttr>()) {
    if (!seen.insert(r).second)
      return emitOpError() << "rank '" << r << "' appears twice in its space";
    if (!cascade.hasRank(r))
      return emitOpError() << "uses unknown rank '" << r
                           << "' (declare it in the cascade's ranks(...))";
  }

  // 2. Output indices: distinct ranks, at most one 'r + 1'.
  EinsumChecker checker(*this, cascade);
  SmallVector<StringRef> outRanks;
  int iterativeCount = 0;
  for (AffineExpr e : out.getResults()) {
    AffineExpr base = e;
    if (auto add = dyn_cast<AffineBinaryOpExpr>(e);
        add && add.getKind() == AffineExprKind::Add) {
      auto c = dyn_cast<AffineConstantExpr>(add.getRHS());
      if (!c || c.getValue() != 1)
        return emitOpError() << "output indices are ranks, or 'r + 1' for an "
                                "iterative rank";
      base = add.getLHS();
      ++iterativeCount;
    }
    auto d = dyn_cast<AffineDimExpr>(base);
    if (!d)
      return emitOpError() << "output indices are ranks, or 'r + 1' for an "
                              "iterative rank";
    StringRef name = checker.rank(d.getPosition());
    if (llvm::is_contained(outRanks, name))
      return emitOpError() << "rank '" << name << "' appears twice in the output";
    outRanks.push_back(name);
  }
  if (iterativeCount > 1)
    return emitOpError() << "an Einsum is iterative along one rank at most";
  if (outRanks != getOutputRanks())
    return emitOpError() << "result type " << getResultType()
                         << " does not match the output index";

  // 3. Expressions.
  if (failed(checker.check(getExpr())))
    return failure();
  if (auto cond = getCond()) {
    if (failed(checker.check(*cond)))
      return failure();
    if (!checker.isBoolean(*cond))
      return emitOpError() << "the condition must be a predicate (a "
                              "comparison, and/or/not, or an i1 element)";
  }
  if (getExpr().isPredicate() && !getResultType().getElementType().isInteger(1))
    return emitOpError() << "a predicate produces an i1 tensor, not "
                         << getResultType().getElementType();
  Type elemType = getResultType().getElementType();
  if (isa<IntegerType>(elemType) && !elemType.isInteger(1) &&
      !checker.isIntegerValued(getExpr()) &&
      !llvm::is_contained({ExprKind::Round, ExprKind::Floor, ExprKind::Cast},
                          getExpr().getKind()))
    return emitOpError() << "stores a non-integer value into " << elemType
                         << "; round(...) or cast(... : " << elemType
                         << ") it first";

  // 4. Reduce action: exactly the iterated ranks absent from the output.
  auto dims = iteratedDims(*this);
  SmallVector<StringRef> expected;
  for (unsigned d : dims)
    if (!llvm::is_contained(outRanks, checker.rank(d)))
      expected.push_back(checker.rank(d));
  SmallVector<StringRef> listed(getReduced().getAsValueRange<StringAttr>());
  if (getReducer() == Reducer::None) {
    if (!expected.empty())
      return emitOpError() << "rank '" << expected.front()
                           << "' is absent from the output but there is no "
                              "reduce action";
    if (!listed.empty())
      return emitOpError() << "lists reduced ranks without a reduce action";
  } else {
    if (listed.empty())
      return emitOpError() << "'" << stringifyReducer(getReducer())
                           << "' reduces no rank";
    for (StringRef r : listed) {
      if (!llvm::is_contained(expected, r))
        return emitOpError()
               << "reduces rank '" << r << "', which "
               << (llvm::is_contained(outRanks, r)
                       ? "is in the output"
                       : "does not appear in the Einsum");
    }
    for (StringRef r : expected)
      if (!llvm::is_contained(listed, r))
        return emitOpError() << "rank '" << r
                             << "' is iterated but neither in the output nor "
                                "in the reduce list";
  }

  // 5. Populate and iteration.
  if (auto pop = getPopulate()) {
    if (pop->getK() <= 0)
      return emitOpError() << "topk needs a positive k, got " << pop->getK();
    if (!llvm::is_contained(outRanks, pop->getRank().getValue()))
      return emitOpError() << "topk runs along rank '"
                           << pop->getRank().getValue()
                           << "', which is not in the output";
  }
  if (!checker.iterative.empty() && !getInit())
    return emitOpError() << "an iterative Einsum needs an initial value "
                            "('init(...)')";
  if (checker.iterative.empty() && getInit())
    return emitOpError() << "only an iterative Einsum ('r + 1' in the output) "
                            "takes an initial value";
  return success();
}

#define GET_OP_CLASSES
#include "dialects/attn/AttnOps.cpp.inc"
