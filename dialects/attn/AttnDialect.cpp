//===- AttnDialect.cpp - the attn dialect ----------------------------------===//
//
// This file implements the dialect class and the verification of the
// annotations (attn.sparse, attn.quant, attn.lowrank): where each may appear
// and what it requires of the tensor or Einsum it annotates.
//
//===----------------------------------------------------------------------===//

#include "attn/Dialect.h"

#include <functional>

using namespace mlir;
using namespace mlir::attn;

#include "dialects/attn/AttnDialect.cpp.inc"

void AttnDialect::initialize() {
  registerTypes();
  registerAttributes();
  addOperations<
#define GET_OP_LIST
#include "dialects/attn/AttnOps.cpp.inc"
      >();
}

static bool isMetadataKind(SparseKind k) {
  switch (k) {
  case SparseKind::SegmentIds: case SparseKind::CuSeqlens:
  case SparseKind::SeqLens: case SparseKind::BlockOffsets:
  case SparseKind::BlockIndices: case SparseKind::BlockTable:
  case SparseKind::KeyIndices:
    return true;
  default:
    return false;
  }
}

/// Annotations on attn.einsum.
LogicalResult AttnDialect::verifyOperationAttribute(Operation *op,
                                                    NamedAttribute attr) {
  StringRef name = attr.getName().getValue();
  if (name == kPrologueAttrName) {
    // attn-split-quant: the cascade is the quantization prologue of the
    // cascade it names (which reads its results).
    if (!isa<CascadeOp>(op) || !isa<FlatSymbolRefAttr>(attr.getValue()))
      return op->emitError() << "'" << name
                             << "' marks an attn.cascade with the symbol of "
                                "the cascade that reads its results";
    return success();
  }
  auto einsum = dyn_cast<EinsumOp>(op);
  if (!einsum)
    return op->emitError() << "'" << name
                           << "' applies to attn.einsum operations and "
                              "attn.cascade arguments only";
  // Dialect attributes are verified before the operation itself: make sure
  // its own attributes are well-formed before reading them.
  if (failed(einsum.verifyInvariantsImpl()))
    return failure();
  if (name == kSparseAttrName) {
    auto sparse = dyn_cast<SparseAttr>(attr.getValue());
    if (!sparse)
      return op->emitError() << "'" << name << "' must be an #attn.sparse attribute";
    SparseKind k = sparse.getKind();
    if (isMetadataKind(k))
      return op->emitError() << "sparsity '" << stringifySparseKind(k)
                             << "' describes runtime metadata and annotates an "
                                "integer cascade argument, not an Einsum";
    if (k == SparseKind::TopK && !einsum.getPopulate())
      return op->emitError() << "sparsity 'topk' needs a populate action "
                                "(topk(k, rank)) on this Einsum";
    if (k != SparseKind::TopK && !einsum.getCond())
      return op->emitError() << "sparsity '" << stringifySparseKind(k)
                             << "' describes a mask, but this Einsum has no "
                                "condition ('if (...)')";
    return success();
  }
  if (name == kQuantAttrName) {
    auto quant = dyn_cast<QuantAttr>(attr.getValue());
    if (!quant)
      return op->emitError() << "'" << name << "' must be an #attn.quant attribute";
    if (einsum.getReducer() != Reducer::Sum)
      return op->emitError() << "'attn.quant' on an Einsum sets the accumulator "
                                "of a sum reduction, and this Einsum has none";
    if (!quant.getAcc())
      return op->emitError() << "'attn.quant' on an Einsum must give the "
                                "accumulator type (acc = ...)";
    if (quant.getStorage())
      return op->emitError() << "'attn.quant' storage types annotate cascade "
                                "arguments, not Einsums";
    if (!isSupportedElementType(quant.getAcc()))
      return op->emitError() << "'attn.quant' accumulator type "
                             << quant.getAcc()
                             << " is not an attn element type";
    if (quant.getGranularity() != Granularity::Tensor ||
        quant.getBlockSize() != 0 || quant.getAlong() || quant.getSmooth() ||
        quant.getTo() || quant.getScale())
      return op->emitError() << "'attn.quant' on an Einsum gives only the "
                                "accumulator type; scale granularity, "
                                "block_size, along, smooth, to and scale "
                                "annotate cascade arguments";
    return success();
  }
  if (name == kLowRankAttrName) {
    auto lowRank = dyn_cast<LowRankAttr>(attr.getValue());
    if (!lowRank)
      return op->emitError() << "'" << name
                             << "' must be an #attn.lowrank attribute";
    StringRef rank = lowRank.getRank().getValue();
    if (lowRank.getKind() != LowRankKind::FeatureMap &&
        !llvm::is_contained(einsum.getReduced().getAsValueRange<StringAttr>(),
                            rank))
      return op->emitError() << "low-rank '"
                             << stringifyLowRankKind(lowRank.getKind())
                             << "' annotation names factor rank '" << rank
                             << "', which this Einsum does not reduce";
    return success();
  }
  if (name == "attn.tiles") {
    // attn-sparsify's classification of the condition, one class per
    // conjunct (include/attn/Transforms/MaskTiles.h).
    auto list = dyn_cast<ArrayAttr>(attr.getValue());
    if (!einsum.getCond())
      return op->emitError() << "'attn.tiles' classifies a mask, but this "
                                "Einsum has no condition ('if (...)')";
    unsigned conjuncts = 0;
    std::function<void(ExprAttr)> count = [&](ExprAttr e) {
      if (e.getKind() == ExprKind::And) {
        count(e.getArgs()[0]);
        count(e.getArgs()[1]);
        return;
      }
      ++conjuncts;
    };
    count(*einsum.getCond());
    if (!list || list.size() != conjuncts)
      return op->emitError() << "'attn.tiles' must list one class per "
                                "conjunct of the condition ("
                             << conjuncts << ")";
    for (Attribute a : list) {
      auto s = dyn_cast<StringAttr>(a);
      if (!s || !llvm::is_contained(
                    {"affine", "segment_ids", "varlen", "varlen_bound",
                     "prefix", "power2", "element"},
                    s.getValue()))
        return op->emitError()
               << "'attn.tiles' classes are affine, segment_ids, varlen, "
                  "varlen_bound, prefix, power2 and element";
    }
    return success();
  }
  return op->emitError() << "unknown attn annotation '" << name << "'";
}

/// Annotations on attn.cascade arguments (checked by CascadeOp::verify).
LogicalResult AttnDialect::verifyRegionArgAttribute(Operation *op, unsigned,
                                                    unsigned argIndex,
                                                    NamedAttribute attr) {
  StringRef name = attr.getName().getValue();
  // Also called for the arguments of other function-like operations.
  auto cascade = dyn_cast<CascadeOp>(op);
  if (!cascade)
    return op->emitError() << "'" << name
                           << "' applies to attn.einsum operations and "
                              "attn.cascade arguments only, not to arguments "
                              "of '"
                           << op->getName() << "'";
  auto type = dyn_cast<NamedTensorType>(
      cascade.getFunctionType().getInput(argIndex));
  if (!type)
    return op->emitError() << "'" << name
                           << "' annotates !attn.t arguments only";
  auto argName = cast<StringAttr>(cascade.getArgNames()[argIndex]).getValue();
  auto error = [&]() {
    return op->emitError() << "argument '" << argName << "': ";
  };
  if (name == kSparseAttrName) {
    auto sparse = dyn_cast<SparseAttr>(attr.getValue());
    if (!sparse)
      return error() << "'" << name << "' must be an #attn.sparse attribute";
    if (!isMetadataKind(sparse.getKind()))
      return error() << "sparsity '" << stringifySparseKind(sparse.getKind())
                     << "' describes an Einsum (a mask or a populate action), "
                        "not a cascade argument";
    if (!isa<IntegerType>(type.getElementType()) ||
        type.getElementType().getIntOrFloatBitWidth() < 8)
      return error() << "runtime metadata '"
                     << stringifySparseKind(sparse.getKind())
                     << "' must be an integer tensor (i8, i32 or i64), not "
                     << type.getElementType();
    return success();
  }
  if (name == kQuantAttrName) {
    auto quant = dyn_cast<QuantAttr>(attr.getValue());
    if (!quant)
      return error() << "'" << name << "' must be an #attn.quant attribute";
    if (quant.getStorage() && quant.getStorage() != type.getElementType())
      return error() << "quantized storage type " << quant.getStorage()
                     << " differs from the argument's element type "
                     << type.getElementType();
    if (quant.getAcc())
      return error() << "the accumulator type (acc) belongs on the Einsum "
                        "that reduces, not on an argument";
    bool needsRank = quant.getGranularity() == Granularity::Block ||
                     quant.getSmooth();
    StringAttr along = quant.getAlong();
    if (needsRank && !along)
      return error() << "block scales and smoothing need the rank they run "
                        "along (along = \"p\")";
    if (along && type.getDimOf(along.getValue()) < 0)
      return error() << "quantization runs along rank '" << along.getValue()
                     << "', which the argument does not have";
    if (quant.getGranularity() == Granularity::Block && quant.getBlockSize() <= 0)
      return error() << "block granularity needs a positive block_size";
    if (quant.getGranularity() != Granularity::Block && quant.getBlockSize() != 0)
      return error() << "block_size is only meaningful with block granularity";
    Type elem = type.getElementType();
    auto isQuantType = [](Type t) {
      return t.isInteger(8) || isa<Float8E4M3FNType, Float8E5M2Type>(t);
    };
    if (quant.getTo() && quant.getScale())
      return error() << "give either 'to' (quantize on the fly, scales "
                        "computed) or 'scale' (stored quantized values and "
                        "their descale argument), not both";
    if (Type to = quant.getTo()) {
      if (!isQuantType(to))
        return error() << "'to' quantizes to i8, f8E4M3FN or f8E5M2, not "
                       << to;
      if (!isa<FloatType>(elem) || elem.getIntOrFloatBitWidth() <= 8)
        return error() << "'to' quantizes a float tensor (f16, bf16, f32, f64) "
                          "on the fly, and this argument holds "
                       << elem;
    }
    if (StringAttr scale = quant.getScale()) {
      if (!isQuantType(elem))
        return error() << "a descale argument (scale = \"" << scale.getValue()
                       << "\") belongs to an argument stored quantized (i8, "
                          "f8E4M3FN or f8E5M2), not "
                       << elem;
      auto names = cascade.getArgNames().getAsValueRange<StringAttr>();
      auto it = llvm::find(names, scale.getValue());
      if (it == names.end())
        return error() << "the descale argument '" << scale.getValue()
                       << "' is not an argument of the cascade";
      unsigned scaleIndex = std::distance(names.begin(), it);
      auto scaleType = dyn_cast<NamedTensorType>(
          cascade.getFunctionType().getInput(scaleIndex));
      if (scaleIndex == argIndex || !scaleType ||
          !isa<FloatType>(scaleType.getElementType()) ||
          scaleType.getElementType().getIntOrFloatBitWidth() < 16)
        return error() << "the descale argument '" << scale.getValue()
                       << "' must be another float tensor (f16, bf16, f32 "
                          "or f64)";
    }
    return success();
  }
  if (name == kLowRankAttrName)
    return error() << "'attn.lowrank' annotates the Einsum that contracts the "
                      "factor rank, not an argument";
  return error() << "unknown attn annotation '" << name << "'";
}
