//===- AttnDialect.td - the attn dialect -------------------*- tablegen -*-===//
//
// The attn dialect states attention as a cascade of Einsums over named ranks,
// in the notation of FuseMax (arXiv 2406.10491) and EDGE (arXiv 2404.11591).
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_DIALECT_TD
#define ATTN_DIALECT_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

def Attn_Dialect : Dialect {
  let name = "attn";
  let cppNamespace = "::mlir::attn";
  let summary = "Attention as a cascade of Einsums over named ranks";
  let description = [{
    An `attn.cascade` is an ordered list of `attn.einsum` operations over
    named ranks (`m` queries, `p` keys, `e`/`f` head dimensions, ...). Each
    Einsum has an output indexed by ranks, a *map* action (an expression over
    operand elements, constants and index values), a *reduce* action over the
    ranks that appear in operands but not in the output, an optional
    *populate* action (top-k along a rank) and an optional *condition* that
    restricts the iteration space (a mask).

    Ranks may be *partitioned* (`p -> p1, p0 = 64`, so `p = p1 * 64 + p0`)
    and Einsums may be *iterative* along a rank (`RM[m, p1 + 1] =
    max(RM[m, p1], LM[m, p1])`), which makes the 1-pass FlashAttention
    cascade expressible.

    Annotations (`attn.sparse`, `attn.quant`, `attn.lowrank`) are attributes
    on cascade arguments and Einsums; the dialect verifies where they apply.
  }];
  let useDefaultTypePrinterParser = 1;
  let useDefaultAttributePrinterParser = 1;
  let hasOperationAttrVerify = 1;
  let hasRegionArgAttrVerify = 1;
  let extraClassDeclaration = [{
    void registerTypes();
    void registerAttributes();
  }];
}

class Attn_Op<string mnemonic, list<Trait> traits = []>
    : Op<Attn_Dialect, mnemonic, traits>;

#endif // ATTN_DIALECT_TD
