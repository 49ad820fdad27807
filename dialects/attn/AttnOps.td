//===- AttnOps.td - attn dialect operations ----------------*- tablegen -*-===//

#ifndef ATTN_OPS_TD
#define ATTN_OPS_TD

include "dialects/attn/AttnDialect.td"
include "dialects/attn/AttnTypes.td"
include "dialects/attn/AttnAttrs.td"
include "mlir/IR/SymbolInterfaces.td"
include "mlir/IR/OpAsmInterface.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/Interfaces/ControlFlowInterfaces.td"

def Attn_CascadeOp : Attn_Op<"cascade", [
    IsolatedFromAbove, Symbol,
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmBlockArgumentNames"]>]> {
  let summary = "an attention variant as a cascade of Einsums";
  let description = [{
    Declares the ranks of the variant, their sizes (static, or dynamic when
    omitted), partitions and size relations, the named inputs and outputs,
    and a body of `attn.einsum` operations ending in `attn.yield`.

    ```mlir
    attn.cascade @mha ranks(b, h, g, m, p, e = 128, f = 128) where(h = 4 * g)
        (%q: !attn.t<[b, h, m, e], bf16>, %k: !attn.t<[b, g, p, e], bf16>,
         %v: !attn.t<[b, g, p, f], bf16>)
        -> (o: !attn.t<[b, h, m, f], f32>) {
      ...
      attn.yield %o : !attn.t<[b, h, m, f], f32>
    }
    ```

    The argument and result names are kept (`arg_names`, `result_names`):
    they name the tensors of the generated C entry points. A partition
    `partition(p -> p1, p0 = 64)` declares the ranks p1 and p0.
  }];
  let arguments = (ins
    SymbolNameAttr:$sym_name,
    TypeAttrOf<FunctionType>:$function_type,
    TypedArrayAttrBase<Attn_RankAttr, "rank declarations">:$ranks,
    DefaultValuedAttr<TypedArrayAttrBase<Attn_PartitionAttr, "partitions">, "{}">:$partitions,
    DefaultValuedAttr<TypedArrayAttrBase<Attn_RelationAttr, "relations">, "{}">:$relations,
    StrArrayAttr:$arg_names,
    StrArrayAttr:$result_names,
    OptionalAttr<DictArrayAttr>:$arg_attrs
  );
  let regions = (region SizedRegion<1>:$body);
  let hasCustomAssemblyFormat = 1;
  let hasVerifier = 1;
  let hasRegionVerifier = 1;
  let extraClassDeclaration = [{
    ::mlir::Block &getBodyBlock() { return getBody().front(); }
    ::mlir::FunctionType getFunctionTypeValue() { return getFunctionType(); }
    /// The declared size of `rank` (kDynamic when unknown), following
    /// partitions; std::nullopt if no such rank is declared.
    std::optional<int64_t> getRankSize(::llvm::StringRef rank);
    /// True if `rank` is declared (directly or by a partition).
    bool hasRank(::llvm::StringRef rank) { return getRankSize(rank).has_value(); }
    /// The partition that declares `rank` as its outer or inner rank.
    ::mlir::attn::PartitionAttr getPartitionOf(::llvm::StringRef rank);
    /// The annotation `name` on argument `i`, if any.
    ::mlir::Attribute getArgAnnotation(unsigned i, ::llvm::StringRef name);
  }];
}

def Attn_EinsumOp : Attn_Op<"einsum", [Pure, HasParent<"CascadeOp">,
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>]> {
  let summary = "one Einsum of a cascade: map, reduce, populate, condition";
  let description = [{
    ```mlir
    %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h floordiv 4, p, e]
            sum(e) if (p <= m) else -inf : f32
    %rm = attn.einsum [m, p1 + 1] = max(%rm[m, p1], %lm[m, p1]) init(-inf) : f32
    ```

    Semantics, for every point of the iteration space (every combination of
    the ranks used in the output and the operands) that satisfies the
    condition: evaluate the map expression, then combine the values that
    land on the same output element with the reducer (`sum`, `max`, `min`)
    over the ranks absent from the output. An output element that receives
    no value is *empty* and holds the `else` value if one is given
    (`if (p <= m) else -inf` masks scores), otherwise the reducer's identity:
    0 for `sum` and for Einsums without reduction, -inf for `max`, +inf for
    `min`. Arithmetic follows IEEE 754 (so `exp(-inf - -inf)` is NaN: guard
    fully masked rows with a condition).

    A populate action `topk(k, p)` then keeps, along rank `p` of the output,
    the k largest values (all values tied with the k-th) and sets the others
    to -inf.

    An output index `r + 1` makes the Einsum iterative along `r`: the result
    has `|r| + 1` entries along `r`, entry 0 is `init`, and the expression may
    read the Einsum's own result at steps `<= r` (by its own name).

    Index expressions are affine in the ranks and the rank sizes (`|p|`), or
    load from integer tensors (gathers: `%k[%idx[m, l], e]`). A bare rank or
    `|rank|` in the map expression is its value as a number (ALiBi: `p - m`).
  }];
  let arguments = (ins
    Variadic<Attn_AnyTensor>:$inputs,
    StrArrayAttr:$space,
    AffineMapAttr:$output,
    Attn_ExprAttr:$expr,
    DefaultValuedAttr<Attn_ReducerAttr, "::mlir::attn::Reducer::None">:$reducer,
    DefaultValuedAttr<StrArrayAttr, "{}">:$reduced,
    OptionalAttr<Attn_ExprAttr>:$cond,
    OptionalAttr<Attn_TopKAttr>:$populate,
    OptionalAttr<F64Attr>:$init,
    OptionalAttr<F64Attr>:$fill,
    OptionalAttr<StrAttr>:$name
  );
  let results = (outs Attn_AnyTensor:$result);
  let hasCustomAssemblyFormat = 1;
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// The iterative rank (output index `r + 1`), or an empty StringRef.
    ::llvm::StringRef getIterativeRank();
    /// Names of the ranks the Einsum iterates over: output ranks first, then
    /// reduced ranks, in `space` order.
    ::llvm::SmallVector<::llvm::StringRef> getIterationRanks();
    /// Names of the output ranks, in order.
    ::llvm::SmallVector<::llvm::StringRef> getOutputRanks();
    /// The tensor type of the result.
    ::mlir::attn::NamedTensorType getResultType() {
      return ::llvm::cast<::mlir::attn::NamedTensorType>(getResult().getType());
    }
    /// A printable name: the `name` attribute or "einsum".
    ::llvm::StringRef getDisplayName() {
      return getName() ? *getName() : ::llvm::StringRef("einsum");
    }
  }];
}

def Attn_YieldOp : Attn_Op<"yield", [Pure, Terminator, ReturnLike,
                                      HasParent<"CascadeOp">]> {
  let summary = "the outputs of a cascade";
  let arguments = (ins Variadic<Attn_AnyTensor>:$values);
  let assemblyFormat = "attr-dict ($values^ `:` type($values))?";
}

#endif // ATTN_OPS_TD
