//===- AttnTypes.td - attn dialect types -------------------*- tablegen -*-===//

#ifndef ATTN_TYPES_TD
#define ATTN_TYPES_TD

include "dialects/attn/AttnDialect.td"

def Attn_TensorType : TypeDef<Attn_Dialect, "NamedTensor"> {
  let mnemonic = "t";
  let summary = "a tensor indexed by named ranks";
  let description = [{
    `!attn.t<[b, h, m, e], bf16>` is a tensor whose dimensions are the named
    ranks `b, h, m, e` of the enclosing cascade, in that order, with elements
    of type `bf16`. A rank name appears at most once. The sizes come from the
    cascade's rank declarations. A tensor produced by an Einsum that is
    iterative along rank `r` has `|r| + 1` entries along `r` (the initial
    value and one per step).

    Element types: f64, f32, f16, bf16, f8E4M3FN, f8E5M2, i64, i32, i8, i4 and
    i1 (booleans, for masks).
  }];
  let parameters = (ins
    ArrayRefParameter<"::mlir::StringAttr", "rank names">:$ranks,
    "::mlir::Type":$elementType
  );
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// Position of rank `name` in this tensor, or -1.
    int64_t getDimOf(::llvm::StringRef name) const;
    unsigned getNumDims() const { return getRanks().size(); }
  }];
}

def Attn_AnyTensor : Type<CPred<"::llvm::isa<::mlir::attn::NamedTensorType>($_self)">,
                          "attn tensor", "::mlir::attn::NamedTensorType">;

#endif // ATTN_TYPES_TD
