//===- AttnAttrs.td - attn dialect attributes --------------*- tablegen -*-===//
//
// Expressions (the map action, conditions, index expressions), rank
// declarations, and the sparsity / quantization / rank annotations.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_ATTRS_TD
#define ATTN_ATTRS_TD

include "dialects/attn/AttnDialect.td"
include "mlir/IR/BuiltinAttributeInterfaces.td"

class Attn_Attr<string name, string attrMnemonic, list<Trait> traits = []>
    : AttrDef<Attn_Dialect, name, traits> {
  let mnemonic = attrMnemonic;
}

//===----------------------------------------------------------------------===//
// Enums
//===----------------------------------------------------------------------===//

def Attn_ExprKind : I32EnumAttr<"ExprKind", "expression node kind", [
    // Leaves.
    I32EnumAttrCase<"Load", 0, "load">,     // an operand element, operand[indices]
    I32EnumAttrCase<"Index", 1, "index">,   // an affine value of ranks and rank sizes
    I32EnumAttrCase<"Const", 2, "const">,   // a floating-point constant
    // Arithmetic.
    I32EnumAttrCase<"Add", 3, "add">, I32EnumAttrCase<"Sub", 4, "sub">,
    I32EnumAttrCase<"Mul", 5, "mul">, I32EnumAttrCase<"Div", 6, "div">,
    I32EnumAttrCase<"Neg", 7, "neg">,
    I32EnumAttrCase<"Max", 8, "max">, I32EnumAttrCase<"Min", 9, "min">,
    I32EnumAttrCase<"FloorDiv", 10, "floordiv">, I32EnumAttrCase<"Mod", 11, "mod">,
    // Elementwise functions.
    I32EnumAttrCase<"Exp", 12, "exp">, I32EnumAttrCase<"Exp2", 13, "exp2">,
    I32EnumAttrCase<"Log", 14, "log">, I32EnumAttrCase<"Log2", 15, "log2">,
    I32EnumAttrCase<"Tanh", 16, "tanh">, I32EnumAttrCase<"Sigmoid", 17, "sigmoid">,
    I32EnumAttrCase<"Sqrt", 18, "sqrt">, I32EnumAttrCase<"Abs", 19, "abs">,
    I32EnumAttrCase<"Round", 20, "round">, I32EnumAttrCase<"Floor", 21, "floor">,
    I32EnumAttrCase<"Pow", 22, "pow">,
    I32EnumAttrCase<"Cast", 23, "cast">,    // round to the node's type
    I32EnumAttrCase<"Select", 24, "select">,
    // Predicates.
    I32EnumAttrCase<"Lt", 25, "lt">, I32EnumAttrCase<"Le", 26, "le">,
    I32EnumAttrCase<"Gt", 27, "gt">, I32EnumAttrCase<"Ge", 28, "ge">,
    I32EnumAttrCase<"Eq", 29, "eq">, I32EnumAttrCase<"Ne", 30, "ne">,
    I32EnumAttrCase<"And", 31, "and">, I32EnumAttrCase<"Or", 32, "or">,
    I32EnumAttrCase<"Not", 33, "not">
  ]> {
  let cppNamespace = "::mlir::attn";
  let genSpecializedAttr = 0;
}

def Attn_Reducer : I32EnumAttr<"Reducer", "reduce action", [
    I32EnumAttrCase<"None", 0, "none">, I32EnumAttrCase<"Sum", 1, "sum">,
    I32EnumAttrCase<"Max", 2, "max">, I32EnumAttrCase<"Min", 3, "min">
  ]> {
  let cppNamespace = "::mlir::attn";
  let genSpecializedAttr = 0;
}
def Attn_ReducerAttr : EnumAttr<Attn_Dialect, Attn_Reducer, "reducer">;

def Attn_Granularity : I32EnumAttr<"Granularity", "quantization scale granularity", [
    I32EnumAttrCase<"Tensor", 0, "tensor">, I32EnumAttrCase<"Head", 1, "head">,
    I32EnumAttrCase<"Block", 2, "block">, I32EnumAttrCase<"Channel", 3, "channel">,
    I32EnumAttrCase<"Token", 4, "token">
  ]> {
  let cppNamespace = "::mlir::attn";
  let genSpecializedAttr = 0;
}

def Attn_SparseKind : I32EnumAttr<"SparseKind", "sparsity annotation kind", [
    // Static predicates, stated by an Einsum condition.
    I32EnumAttrCase<"Causal", 0, "causal">,
    I32EnumAttrCase<"CausalBottomRight", 1, "causal_bottom_right">,
    I32EnumAttrCase<"Window", 2, "window">,
    I32EnumAttrCase<"Prefix", 3, "prefix">,
    I32EnumAttrCase<"Power2", 4, "power2">,
    I32EnumAttrCase<"Sinks", 5, "sinks">,
    // Runtime metadata operands (integer cascade arguments).
    I32EnumAttrCase<"SegmentIds", 6, "segment_ids">,
    I32EnumAttrCase<"CuSeqlens", 7, "cu_seqlens">,
    I32EnumAttrCase<"SeqLens", 8, "seq_lens">,
    I32EnumAttrCase<"BlockOffsets", 9, "block_offsets">,
    I32EnumAttrCase<"BlockIndices", 10, "block_indices">,
    I32EnumAttrCase<"BlockTable", 11, "block_table">,
    // Data-dependent: an Einsum with a top-k populate action.
    I32EnumAttrCase<"TopK", 12, "topk">,
    // Runtime metadata: per-query lists of key indices (retrieval, an
    // indexer's top-k) gathered through.
    I32EnumAttrCase<"KeyIndices", 13, "key_indices">
  ]> {
  let cppNamespace = "::mlir::attn";
  let genSpecializedAttr = 0;
}

def Attn_LowRankKind : I32EnumAttr<"LowRankKind", "rank annotation kind", [
    I32EnumAttrCase<"Bias", 0, "bias">,          // B = U W^T, reduced over the factor rank
    I32EnumAttrCase<"FeatureMap", 1, "feature_map">, // phi(Q), phi(K) of linear attention
    I32EnumAttrCase<"Latent", 2, "latent">       // K, V produced from a shared latent (MLA)
  ]> {
  let cppNamespace = "::mlir::attn";
  let genSpecializedAttr = 0;
}

//===----------------------------------------------------------------------===//
// Expressions
//===----------------------------------------------------------------------===//

def Attn_ExprAttr : Attn_Attr<"Expr", "expr"> {
  let summary = "an expression tree of the map action, a condition or an index";
  let description = [{
    A node of a scalar expression evaluated at one point of an Einsum's
    iteration space. Leaves are operand elements (`load`: `input` is the
    operand number, or -1 for the Einsum's own earlier value along its
    iterative rank; `args` are the index expressions, one per operand
    dimension, which may themselves load from integer tensors: a gather),
    affine values of the ranks and rank sizes (`index`: dimension i is the
    i-th name of the Einsum's `space`, symbol i is its size), and constants.

    Inside an `attn.einsum` the expression prints in infix notation with rank
    names (`exp(%qk[m, p] - %gm[m])`). On its own it prints with positional
    names: `#attn.expr<exp(in0[d0, d1] - in1[d0])>`.
  }];
  let parameters = (ins
    EnumParameter<Attn_ExprKind>:$kind,
    OptionalArrayRefParameter<"::mlir::attn::ExprAttr">:$args,
    DefaultValuedParameter<"int64_t", "0">:$input,
    DefaultValuedParameter<"::mlir::AffineExpr", "::mlir::AffineExpr()">:$index,
    DefaultValuedParameter<"::mlir::Attribute", "::mlir::Attribute()">:$value
  );
  let hasCustomAssemblyFormat = 1;
  let extraClassDeclaration = [{
    static ExprAttr getLoad(::mlir::MLIRContext *ctx, int64_t input,
                            ::llvm::ArrayRef<ExprAttr> indices);
    static ExprAttr getIndex(::mlir::AffineExpr e);
    static ExprAttr getConst(::mlir::MLIRContext *ctx, double v);
    static ExprAttr getOp(::mlir::MLIRContext *ctx, ExprKind k,
                          ::llvm::ArrayRef<ExprAttr> args);
    static ExprAttr getCast(ExprAttr arg, ::mlir::Type type);
    /// The constant's value (kind Const).
    double getConstValue() const;
    /// The target type of a Cast node.
    ::mlir::Type getCastType() const;
    /// True for comparison and boolean nodes.
    bool isPredicate() const;
    /// Calls `fn` on this node and every node below it, parents first.
    void walk(::llvm::function_ref<void(ExprAttr)> fn) const;
  }];
}

//===----------------------------------------------------------------------===//
// Rank declarations
//===----------------------------------------------------------------------===//

def Attn_RankAttr : Attn_Attr<"Rank", "rank"> {
  let summary = "a named rank and its size (dynamic when unknown)";
  let parameters = (ins "::mlir::StringAttr":$name,
                        DefaultValuedParameter<"int64_t", "::mlir::ShapedType::kDynamic">:$size);
  let assemblyFormat = "`<` $name (`=` $size^)? `>`";
}

def Attn_PartitionAttr : Attn_Attr<"Partition", "partition"> {
  let summary = "a rank partitioned into an outer and an inner rank";
  let description = [{
    `p -> p1, p0 = 64` declares ranks p1 and p0 with `p = p1 * 64 + p0`,
    `|p0| = 64` and `|p1| = ceildiv(|p|, 64)`. Unless `ragged` is declared,
    `|p|` must be a multiple of the tile size. With `ragged`, points with
    `p1 * 64 + p0 >= |p|` are outside the iteration space of every Einsum
    that iterates both p1 and p0.
  }];
  let parameters = (ins "::mlir::StringAttr":$rank, "::mlir::StringAttr":$outer,
                        "::mlir::StringAttr":$inner, "int64_t":$tile,
                        DefaultValuedParameter<"bool", "false">:$ragged);
  let assemblyFormat = "`<` $rank `,` $outer `,` $inner `,` $tile (`,` `ragged` `=` $ragged^)? `>`";
}

def Attn_RelationAttr : Attn_Attr<"Relation", "relation"> {
  let summary = "a size relation between two ranks: |lhs| = factor * |rhs|";
  let parameters = (ins "::mlir::StringAttr":$lhs, "int64_t":$factor,
                        "::mlir::StringAttr":$rhs);
  let assemblyFormat = "`<` $lhs `=` $factor `*` $rhs `>`";
}

def Attn_TopKAttr : Attn_Attr<"TopK", "topk"> {
  let summary = "populate action: keep the k largest values along a rank";
  let parameters = (ins "int64_t":$k, "::mlir::StringAttr":$rank);
  let assemblyFormat = "`<` $k `,` $rank `>`";
}

//===----------------------------------------------------------------------===//
// Annotations
//===----------------------------------------------------------------------===//

def Attn_SparseAttr : Attn_Attr<"Sparse", "sparse"> {
  let summary = "sparsity annotation";
  let description = [{
    On an Einsum with a condition: the class of its static predicate
    (`causal`, `causal_bottom_right`, `window`, `prefix`, `power2`, `sinks`).
    On an integer cascade argument: the runtime metadata it carries
    (`segment_ids`, `cu_seqlens`, `seq_lens`, `block_offsets`,
    `block_indices`, `block_table`, `key_indices`). On an Einsum with a
    populate action:
    `topk`.
  }];
  let parameters = (ins EnumParameter<Attn_SparseKind>:$kind);
  let assemblyFormat = "`<` $kind `>`";
}

def Attn_QuantAttr : Attn_Attr<"Quant", "quant"> {
  let summary = "quantization annotation";
  let description = [{
    On a cascade argument: the storage type of the tensor and how its scales
    are laid out (`tensor`, `head`, `block` of `block_size` entries along rank
    `along`, `channel`, `token`), and whether it is smoothed (the mean over
    `along` is subtracted before quantizing; softmax is invariant to it for
    K). On an Einsum: the accumulator type of its reduction.

    Two forms ask `attn-quantize` (docs/quantize.md) to rewrite the cascade:
    * `to = i8` (or `f8E4M3FN`, `f8E5M2`) on a float argument: quantize it on
      the fly; the pass computes the scales (absmax / 127, or / the largest
      finite fp8 value) with the given granularity, and smooths it first
      when `smooth` is set (SageAttention);
    * `scale = "q_descale"` on an argument stored quantized (i8 or fp8
      elements): the named argument holds its descale factors (the real
      value is descale * stored value), laid out by the granularity
      (FlashAttention-3's FP8 interface).
    An annotation with neither only describes the storage.
  }];
  let parameters = (ins
    OptionalParameter<"::mlir::Type">:$storage,
    OptionalParameter<"::mlir::Type">:$to,
    DefaultValuedParameter<"::mlir::attn::Granularity", "::mlir::attn::Granularity::Tensor">:$granularity,
    DefaultValuedParameter<"int64_t", "0">:$block_size,
    OptionalParameter<"::mlir::StringAttr">:$along,
    DefaultValuedParameter<"bool", "false">:$smooth,
    OptionalParameter<"::mlir::StringAttr">:$scale,
    OptionalParameter<"::mlir::Type">:$acc
  );
  let assemblyFormat = "`<` struct(params) `>`";
}

def Attn_LowRankAttr : Attn_Attr<"LowRank", "lowrank"> {
  let summary = "rank annotation: a low-rank factorisation the compiler may reassociate";
  let description = [{
    `bias` on an Einsum that reduces the factor rank `rank` (B = U W^T),
    `feature_map` on an Einsum of linear attention (phi applied to Q or K),
    `latent` on an Einsum that produces K or V from a latent over `rank`.
  }];
  let parameters = (ins EnumParameter<Attn_LowRankKind>:$kind,
                        "::mlir::StringAttr":$rank);
  let assemblyFormat = "`<` $kind `,` $rank `>`";
}

#endif // ATTN_ATTRS_TD
