//===- AttnTypes.cpp - attn dialect types ----------------------------------===//
//
// This file implements !attn.t<[ranks], element-type>: its syntax and verifier.
//
//===----------------------------------------------------------------------===//

#include "attn/Dialect.h"
#include "dialects/attn/ExprSyntax.h"

#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::attn;

#define GET_TYPEDEF_CLASSES
#include "dialects/attn/AttnTypes.cpp.inc"

void AttnDialect::registerTypes() {
  addTypes<
#define GET_TYPEDEF_LIST
#include "dialects/attn/AttnTypes.cpp.inc"
      >();
}

bool attn::isSupportedElementType(Type t) {
  if (t.isF64() || t.isF32() || t.isF16() || t.isBF16() ||
      isa<Float8E4M3FNType, Float8E5M2Type>(t))
    return true;
  if (auto i = dyn_cast<IntegerType>(t))
    return i.isSignless() && llvm::is_contained({1u, 4u, 8u, 32u, 64u},
                                                i.getWidth());
  return false;
}

int64_t NamedTensorType::getDimOf(StringRef name) const {
  for (auto [i, r] : llvm::enumerate(getRanks()))
    if (r.getValue() == name)
      return i;
  return -1;
}

LogicalResult NamedTensorType::verify(function_ref<InFlightDiagnostic()> emitError,
                                 ArrayRef<StringAttr> ranks, Type elementType) {
  llvm::StringSet<> seen;
  for (StringAttr r : ranks)
    if (!seen.insert(r.getValue()).second)
      return emitError() << "rank '" << r.getValue()
                         << "' appears twice in a tensor type";
  if (!isSupportedElementType(elementType))
    return emitError() << "unsupported element type " << elementType
                       << " (expected " << syntax::kElementTypeNames << ")";
  return success();
}

/// !attn.t<[b, h, m, e], bf16>
void NamedTensorType::print(AsmPrinter &printer) const {
  printer << "<[";
  llvm::interleaveComma(getRanks(), printer,
                        [&](StringAttr r) { printer << r.getValue(); });
  printer << "], " << getElementType() << ">";
}

Type NamedTensorType::parse(AsmParser &parser) {
  SmallVector<StringAttr> ranks;
  Type elementType;
  SMLoc loc = parser.getCurrentLocation();
  if (parser.parseLess() ||
      parser.parseCommaSeparatedList(AsmParser::Delimiter::Square, [&]() -> ParseResult {
        StringRef name;
        SMLoc nameLoc = parser.getCurrentLocation();
        if (failed(parser.parseOptionalKeyword(&name)))
          return parser.emitError(nameLoc, "expected a rank name");
        ranks.push_back(StringAttr::get(parser.getContext(), name));
        return success();
      }) ||
      parser.parseComma() || syntax::parseElementType(parser, elementType) ||
      parser.parseGreater())
    return {};
  return getChecked([&] { return parser.emitError(loc); },
                    parser.getContext(), ArrayRef<StringAttr>(ranks),
                    elementType);
}
