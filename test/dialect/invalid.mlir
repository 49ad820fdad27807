// RUN: attn-opt %s -split-input-file -verify-diagnostics

// Verifier errors of the attn dialect (and the errors the custom syntax
// reports while building an operation): one malformed cascade per chunk.

/// Unknown rank in an Einsum: 'zz' is not declared by the cascade.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{'attn.einsum' op uses unknown rank 'zz' (declare it in the cascade's ranks(...))}}
  %z = attn.einsum [m, zz] = %x[m, p] : f32
  %o = attn.einsum [m] = %x[m, p] : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// Unknown rank in an argument type.
// expected-error @+1 {{'attn.cascade' op unknown rank 'zz' in the argument 'x'}}
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, zz], f32>) -> (o: !attn.t<[m], f32>) {
  %o = attn.einsum [m] = 1.0 : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// Unknown rank in a result type.
// expected-error @+1 {{'attn.cascade' op unknown rank 'zz' in the result 'o'}}
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[zz], f32>) {
  %o = attn.einsum [zz] = 1.0 : f32
  attn.yield %o : !attn.t<[zz], f32>
}

// -----

/// Unknown rank in a size relation.
// expected-error @+1 {{'attn.cascade' op relation names unknown rank 'g'}}
attn.cascade @c ranks(h, m) where(h = 4 * g) (%x: !attn.t<[h, m], f32>) -> (o: !attn.t<[m], f32>) {
  %o = attn.einsum [m] = %x[h, m] : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// Unknown rank in a partition.
// expected-error @+1 {{'attn.cascade' op partition of unknown rank 'q'}}
attn.cascade @c ranks(m, p) partition(q -> q1, q0 = 16) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  %o = attn.einsum [m] = %x[m, p] : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A rank declared twice.
// expected-error @+1 {{'attn.cascade' op rank 'm' is declared twice}}
attn.cascade @c ranks(m, p, m) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  %o = attn.einsum [m] = %x[m, p] : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A partition declares a rank that already exists.
// expected-error @+1 {{'attn.cascade' op partition of 'p' declares rank 'm', which already exists}}
attn.cascade @c ranks(m, p) partition(p -> m, p0 = 16) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  %o = attn.einsum [m] = %x[m, p] : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// Ranks of different static sizes: k's dimension is rank g (|g| = 2) but it
/// is indexed by h (|h| = 8 = 4 * |g|).
attn.cascade @c ranks(b, g = 2, h = 8, m, p, e = 64) where(h = 4 * g)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, g, p, e], f32>)
    -> (o: !attn.t<[b, h, m, p], f32>) {
  // expected-error @+1 {{'attn.einsum' op indexes rank 'g' of operand #1 (%k) with rank 'h' of a different size (|h| = 8, |g| = 2); index it with an expression of 'h' (e.g. 'h floordiv 4') or use 'g'}}
  %o = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] sum(e) : f32
  attn.yield %o : !attn.t<[b, h, m, p], f32>
}

// -----

/// Ranks of dynamic sizes used for one another: h and g are not known to be
/// of the same size.
attn.cascade @c ranks(b, g, h, m, p, e = 64) where(h = 4 * g)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, g, p, e], f32>)
    -> (o: !attn.t<[b, h, m, p], f32>) {
  // expected-error @+1 {{'attn.einsum' op indexes rank 'g' of operand #1 (%k) with rank 'h' of a size not known to be equal}}
  %o = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] sum(e) : f32
  attn.yield %o : !attn.t<[b, h, m, p], f32>
}

// -----

/// Reducing a rank that does not appear in the Einsum.
attn.cascade @c ranks(m, p, e) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{'attn.einsum' op reduces rank 'e', which does not appear in the Einsum}}
  %o = attn.einsum [m] = %x[m, p] sum(p, e) : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// Reducing an output rank.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{'attn.einsum' op reduces rank 'm', which is in the output}}
  %o = attn.einsum [m] = %x[m, p] max(m, p) : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A reduce list that misses an iterated rank.
attn.cascade @c ranks(m, p, e) (%x: !attn.t<[m, p, e], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{'attn.einsum' op rank 'e' is iterated but neither in the output nor in the reduce list}}
  %o = attn.einsum [m] = %x[m, p, e] sum(p) : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A rank absent from the output without a reduce action (generic form).
"attn.cascade"() <{arg_names = ["x"], function_type = (!attn.t<[m, p], f32>) -> !attn.t<[m], f32>, ranks = [#attn.rank<"m">, #attn.rank<"p">], result_names = ["o"], sym_name = "c"}> ({
^bb0(%arg0: !attn.t<[m, p], f32>):
  // expected-error @+1 {{'attn.einsum' op rank 'p' is absent from the output but there is no reduce action}}
  %0 = "attn.einsum"(%arg0) <{expr = #attn.expr<(in0[d0, d1])>, output = affine_map<(d0, d1)[s0, s1] -> (d0)>, space = ["m", "p"]}> : (!attn.t<[m, p], f32>) -> !attn.t<[m], f32>
  "attn.yield"(%0) : (!attn.t<[m], f32>) -> ()
}) : () -> ()

// -----

/// A reducer that reduces nothing (generic form).
"attn.cascade"() <{arg_names = ["x"], function_type = (!attn.t<[m], f32>) -> !attn.t<[m], f32>, ranks = [#attn.rank<"m">], result_names = ["o"], sym_name = "c"}> ({
^bb0(%arg0: !attn.t<[m], f32>):
  // expected-error @+1 {{'attn.einsum' op 'sum' reduces no rank}}
  %0 = "attn.einsum"(%arg0) <{expr = #attn.expr<(in0[d0])>, output = affine_map<(d0)[s0] -> (d0)>, reducer = #attn<reducer sum>, reduced = [], space = ["m"]}> : (!attn.t<[m], f32>) -> !attn.t<[m], f32>
  "attn.yield"(%0) : (!attn.t<[m], f32>) -> ()
}) : () -> ()

// -----

/// Use before definition: %b is defined by a later Einsum.
attn.cascade @c ranks(m) (%x: !attn.t<[m], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{use of undefined value '%b' (operands of attn.einsum are cascade arguments or earlier Einsums)}}
  %a = attn.einsum [m] = %b[m] + 1.0 : f32
  %b = attn.einsum [m] = %x[m] : f32
  attn.yield %a : !attn.t<[m], f32>
}

// -----

/// A cycle: a non-iterative Einsum reads its own result.
attn.cascade @c ranks(m) (%x: !attn.t<[m], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{'attn.einsum' op reads its own result, which only an Einsum iterative along a rank ('r + 1' in the output) may do}}
  %o = attn.einsum [m] = %o[m] + %x[m] : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A float expression stored into an i8 tensor without round or cast.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], i8>) {
  // expected-error @+1 {{'attn.einsum' op stores a non-integer value into 'i8'; round(...) or cast(... : 'i8') it first}}
  %o = attn.einsum [m] = %x[m, p] * 0.5 sum(p) : i8
  attn.yield %o : !attn.t<[m], i8>
}

// -----

/// A predicate stored into an f32 tensor.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m, p], f32>) {
  // expected-error @+1 {{'attn.einsum' op a predicate produces an i1 tensor, not 'f32'}}
  %o = attn.einsum [m, p] = %x[m, p] > 0.0 : f32
  attn.yield %o : !attn.t<[m, p], f32>
}

// -----

/// A float tensor used as a gather index.
attn.cascade @c ranks(m, p, e) (%k: !attn.t<[p, e], f32>, %idx: !attn.t<[m], f32>) -> (o: !attn.t<[m, e], f32>) {
  // expected-error @+1 {{'attn.einsum' op index 0 of operand #0 (%k) is not an integer: indices are ranks, affine expressions or loads from integer tensors}}
  %o = attn.einsum [m, e] = %k[%idx[m], e] : f32
  attn.yield %o : !attn.t<[m, e], f32>
}

// -----

/// A condition that is not a predicate.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{'attn.einsum' op the condition must be a predicate (a comparison, and/or/not, or an i1 element)}}
  %o = attn.einsum [m] = %x[m, p] sum(p) if (p - m) : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// select with a condition that is not a predicate.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m, p], f32>) {
  // expected-error @+1 {{'attn.einsum' op 'select' needs a predicate as operand 0}}
  %o = attn.einsum [m, p] = select(%x[m, p], 0.0, 1.0) : f32
  attn.yield %o : !attn.t<[m, p], f32>
}

// -----

/// A predicate used as a number.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m, p], f32>) {
  // expected-error @+1 {{'attn.einsum' op a predicate is used as a number in 'mul'; use select(pred, a, b)}}
  %o = attn.einsum [m, p] = (p <= m) * %x[m, p] : f32
  attn.yield %o : !attn.t<[m, p], f32>
}

// -----

/// and/or need predicates.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m, p], f32>) {
  // expected-error @+1 {{'attn.einsum' op 'and' needs a predicate as operand 1}}
  %o = attn.einsum [m, p] = %x[m, p] if (p <= m and %x[m, p]) : f32
  attn.yield %o : !attn.t<[m, p], f32>
}

// -----

/// attn.sparse<causal> on an Einsum without a condition.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m, p], f32>) {
  // expected-error @+1 {{sparsity 'causal' describes a mask, but this Einsum has no condition ('if (...)')}}
  %o = attn.einsum [m, p] = %x[m, p] {attn.sparse = #attn.sparse<causal>} : f32
  attn.yield %o : !attn.t<[m, p], f32>
}

// -----

/// attn.sparse<topk> on an Einsum without a populate action.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m, p], f32>) {
  // expected-error @+1 {{sparsity 'topk' needs a populate action (topk(k, rank)) on this Einsum}}
  %o = attn.einsum [m, p] = %x[m, p] {attn.sparse = #attn.sparse<topk>} : f32
  attn.yield %o : !attn.t<[m, p], f32>
}

// -----

/// segment_ids on a float argument.
// expected-error @+1 {{argument 'seg': runtime metadata 'segment_ids' must be an integer tensor (i8, i32 or i64), not 'f32'}}
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>, %seg: !attn.t<[m], f32> {attn.sparse = #attn.sparse<segment_ids>})
    -> (o: !attn.t<[m, p], f32>) {
  %o = attn.einsum [m, p] = %x[m, p] : f32
  attn.yield %o : !attn.t<[m, p], f32>
}

// -----

/// segment_ids on an Einsum.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m, p], f32>) {
  // expected-error @+1 {{sparsity 'segment_ids' describes runtime metadata and annotates an integer cascade argument, not an Einsum}}
  %o = attn.einsum [m, p] = %x[m, p] if (p <= m) {attn.sparse = #attn.sparse<segment_ids>} : f32
  attn.yield %o : !attn.t<[m, p], f32>
}

// -----

/// A mask kind on an argument.
// expected-error @+1 {{argument 'x': sparsity 'window' describes an Einsum (a mask or a populate action), not a cascade argument}}
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], i32> {attn.sparse = #attn.sparse<window>}) -> (o: !attn.t<[m, p], i32>) {
  %o = attn.einsum [m, p] = %x[m, p] : i32
  attn.yield %o : !attn.t<[m, p], i32>
}

// -----

/// attn.quant storage type different from the argument's element type.
// expected-error @+1 {{argument 'k': quantized storage type 'f8E4M3FN' differs from the argument's element type 'i8'}}
attn.cascade @c ranks(p, e) (%k: !attn.t<[p, e], i8> {attn.quant = #attn.quant<storage = f8E4M3FN>}) -> (o: !attn.t<[p], f32>) {
  %o = attn.einsum [p] = cast(%k[p, e] : f32) sum(e) : f32
  attn.yield %o : !attn.t<[p], f32>
}

// -----

/// Block granularity without block_size.
// expected-error @+1 {{argument 'k': block granularity needs a positive block_size}}
attn.cascade @c ranks(p, e) (%k: !attn.t<[p, e], i8> {attn.quant = #attn.quant<storage = i8, granularity = block, along = "p">}) -> (o: !attn.t<[p], f32>) {
  %o = attn.einsum [p] = cast(%k[p, e] : f32) sum(e) : f32
  attn.yield %o : !attn.t<[p], f32>
}

// -----

/// Block granularity without the rank it runs along.
// expected-error @+1 {{argument 'k': block scales and smoothing need the rank they run along (along = "p")}}
attn.cascade @c ranks(p, e) (%k: !attn.t<[p, e], i8> {attn.quant = #attn.quant<storage = i8, granularity = block, block_size = 64>}) -> (o: !attn.t<[p], f32>) {
  %o = attn.einsum [p] = cast(%k[p, e] : f32) sum(e) : f32
  attn.yield %o : !attn.t<[p], f32>
}

// -----

/// Quantization along a rank the argument does not have.
// expected-error @+1 {{argument 'k': quantization runs along rank 'm', which the argument does not have}}
attn.cascade @c ranks(m, p, e) (%k: !attn.t<[p, e], i8> {attn.quant = #attn.quant<storage = i8, granularity = block, block_size = 64, along = "m">}) -> (o: !attn.t<[p], f32>) {
  %o = attn.einsum [p] = cast(%k[p, e] : f32) sum(e) : f32
  attn.yield %o : !attn.t<[p], f32>
}

// -----

/// block_size without block granularity.
// expected-error @+1 {{argument 'k': block_size is only meaningful with block granularity}}
attn.cascade @c ranks(p, e) (%k: !attn.t<[p, e], i8> {attn.quant = #attn.quant<storage = i8, granularity = channel, block_size = 64>}) -> (o: !attn.t<[p], f32>) {
  %o = attn.einsum [p] = cast(%k[p, e] : f32) sum(e) : f32
  attn.yield %o : !attn.t<[p], f32>
}

// -----

/// An accumulator type on an argument.
// expected-error @+1 {{argument 'k': the accumulator type (acc) belongs on the Einsum that reduces, not on an argument}}
attn.cascade @c ranks(p, e) (%k: !attn.t<[p, e], i8> {attn.quant = #attn.quant<storage = i8, acc = i32>}) -> (o: !attn.t<[p], f32>) {
  %o = attn.einsum [p] = cast(%k[p, e] : f32) sum(e) : f32
  attn.yield %o : !attn.t<[p], f32>
}

// -----

/// attn.quant on an Einsum that does not sum.
attn.cascade @c ranks(p, e) (%k: !attn.t<[p, e], f32>) -> (o: !attn.t<[p], f32>) {
  // expected-error @+1 {{'attn.quant' on an Einsum sets the accumulator of a sum reduction, and this Einsum has none}}
  %o = attn.einsum [p] = %k[p, e] max(e) {attn.quant = #attn.quant<acc = f32>} : f32
  attn.yield %o : !attn.t<[p], f32>
}

// -----

/// attn.quant on an Einsum with an accumulator type that is not an element type.
attn.cascade @c ranks(p, e) (%k: !attn.t<[p, e], f32>) -> (o: !attn.t<[p], f32>) {
  // expected-error @+1 {{'attn.quant' accumulator type 'i7' is not an attn element type}}
  %o = attn.einsum [p] = %k[p, e] sum(e) {attn.quant = #attn.quant<acc = i7>} : f32
  attn.yield %o : !attn.t<[p], f32>
}

// -----

/// attn.quant on an Einsum with argument-only parameters.
attn.cascade @c ranks(p, e) (%k: !attn.t<[p, e], f32>) -> (o: !attn.t<[p], f32>) {
  // expected-error @+1 {{'attn.quant' on an Einsum gives only the accumulator type; scale granularity, block_size, along, smooth, to and scale annotate cascade arguments}}
  %o = attn.einsum [p] = %k[p, e] sum(e) {attn.quant = #attn.quant<granularity = block, block_size = 4, along = "e", acc = f32>} : f32
  attn.yield %o : !attn.t<[p], f32>
}

// -----

/// attn.lowrank naming a rank the Einsum does not reduce.
attn.cascade @c ranks(m, p, r) (%u: !attn.t<[m, r], f32>, %w: !attn.t<[p, r], f32>) -> (o: !attn.t<[m, p], f32>) {
  // expected-error @+1 {{low-rank 'bias' annotation names factor rank 'p', which this Einsum does not reduce}}
  %o = attn.einsum [m, p] = %u[m, r] * %w[p, r] sum(r) {attn.lowrank = #attn.lowrank<bias, "p">} : f32
  attn.yield %o : !attn.t<[m, p], f32>
}

// -----

/// attn.lowrank on an argument.
// expected-error @+1 {{argument 'u': 'attn.lowrank' annotates the Einsum that contracts the factor rank, not an argument}}
attn.cascade @c ranks(m, r) (%u: !attn.t<[m, r], f32> {attn.lowrank = #attn.lowrank<bias, "r">}) -> (o: !attn.t<[m], f32>) {
  %o = attn.einsum [m] = %u[m, r] : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// An unknown attn.* annotation on an Einsum.
attn.cascade @c ranks(m) (%x: !attn.t<[m], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{unknown attn annotation 'attn.spares'}}
  %o = attn.einsum [m] = %x[m] {attn.spares = #attn.sparse<causal>} : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// An unknown attn.* annotation on an argument.
// expected-error @+1 {{argument 'x': unknown attn annotation 'attn.qaunt'}}
attn.cascade @c ranks(m) (%x: !attn.t<[m], f32> {attn.qaunt = 1}) -> (o: !attn.t<[m], f32>) {
  %o = attn.einsum [m] = %x[m] : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// An annotation of the wrong attribute kind.
attn.cascade @c ranks(m) (%x: !attn.t<[m], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{'attn.sparse' must be an #attn.sparse attribute}}
  %o = attn.einsum [m] = %x[m] {attn.sparse = "causal"} : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// An annotation on the cascade itself.
// expected-error @+1 {{'attn.sparse' applies to attn.einsum operations and attn.cascade arguments only}}
attn.cascade @c ranks(m) (%x: !attn.t<[m], f32>) -> (o: !attn.t<[m], f32>) attributes {attn.sparse = #attn.sparse<causal>} {
  %o = attn.einsum [m] = %x[m] : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// An attn annotation on the argument of another function-like operation.
// expected-error @+1 {{'attn.sparse' applies to attn.einsum operations and attn.cascade arguments only, not to arguments of 'func.func'}}
func.func @f(%seg: i32 {attn.sparse = #attn.sparse<segment_ids>}) {
  return
}

// -----

/// A partition that does not divide its rank, without 'ragged'.
// expected-error @+1 {{'attn.cascade' op partition of 'p' (size 1000) into tiles of 64 does not divide it; declare it 'ragged' to mask the remainder}}
attn.cascade @c ranks(m, p = 1000) partition(p -> p1, p0 = 64) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  %o = attn.einsum [m] = %x[m, p] : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A partition into tiles of 0.
// expected-error @+1 {{'attn.cascade' op partition of 'p' has non-positive tile size 0}}
attn.cascade @c ranks(m, p) partition(p -> p1, p0 = 0) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  %o = attn.einsum [m] = %x[m, p] : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// An iterative Einsum without an initial value.
attn.cascade @c ranks(m, p) partition(p -> p1, p0 = 64) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m, p1], f32>) {
  // expected-error @+1 {{'attn.einsum' op an iterative Einsum needs an initial value ('init(...)')}}
  %rm = attn.einsum [m, p1 + 1] = max(%rm[m, p1], %x[m, p1 * 64 + p0]) max(p0) : f32
  %o = attn.einsum [m, p1] = %rm[m, p1] : f32
  attn.yield %o : !attn.t<[m, p1], f32>
}

// -----

/// init on an Einsum that is not iterative.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{'attn.einsum' op only an iterative Einsum ('r + 1' in the output) takes an initial value}}
  %o = attn.einsum [m] = %x[m, p] max(p) init(-inf) : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// An iterative Einsum that reads its own result at step p1 + 1.
attn.cascade @c ranks(m, p) partition(p -> p1, p0 = 64) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m, p1], f32>) {
  // expected-error @+1 {{'attn.einsum' op an iterative Einsum reads its own result at step 'p1' (the previous state) only}}
  %rm = attn.einsum [m, p1 + 1] = max(%rm[m, p1 + 1], %x[m, p1 * 64 + p0]) max(p0) init(-inf) : f32
  %o = attn.einsum [m, p1] = %rm[m, p1] : f32
  attn.yield %o : !attn.t<[m, p1], f32>
}

// -----

/// An iterative Einsum that reads its own final state |p1|.
attn.cascade @c ranks(m, p) partition(p -> p1, p0 = 64) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m, p1], f32>) {
  // expected-error @+1 {{'attn.einsum' op an iterative Einsum reads its own result at step 'p1' (the previous state) only}}
  %rm = attn.einsum [m, p1 + 1] = max(%rm[m, |p1|], %x[m, p1 * 64 + p0]) max(p0) init(-inf) : f32
  %o = attn.einsum [m, p1] = %rm[m, p1] : f32
  attn.yield %o : !attn.t<[m, p1], f32>
}

// -----

/// An Einsum iterative along two ranks.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{'attn.einsum' op an Einsum is iterative along one rank at most}}
  %s = attn.einsum [m + 1, p + 1] = %s[m, p] + %x[m, p] init(0.0) : f32
  %o = attn.einsum [m] = %x[m, p] : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// An output index that is not a rank.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{output indices are ranks (or 'r + 1' for an iterative rank)}}
  %o = attn.einsum [m * 2] = %x[m, p] : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// An output index that is not a rank (generic form).
"attn.cascade"() <{arg_names = ["x"], function_type = (!attn.t<[m], f32>) -> !attn.t<[m], f32>, ranks = [#attn.rank<"m">], result_names = ["o"], sym_name = "c"}> ({
^bb0(%arg0: !attn.t<[m], f32>):
  // expected-error @+1 {{'attn.einsum' op output indices are ranks, or 'r + 1' for an iterative rank}}
  %0 = "attn.einsum"(%arg0) <{expr = #attn.expr<(in0[d0])>, output = affine_map<(d0)[s0] -> (d0 floordiv 2)>, space = ["m"]}> : (!attn.t<[m], f32>) -> !attn.t<[m], f32>
  "attn.yield"(%0) : (!attn.t<[m], f32>) -> ()
}) : () -> ()

// -----

/// A rank that appears twice in the output.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{rank 'm' appears twice in the output}}
  %z = attn.einsum [m, m] = %x[m, p] : f32
  %o = attn.einsum [m] = %x[m, p] : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A rank that appears twice in the output (generic form).
"attn.cascade"() <{arg_names = ["x"], function_type = (!attn.t<[m], f32>) -> !attn.t<[m], f32>, ranks = [#attn.rank<"m">], result_names = ["o"], sym_name = "c"}> ({
^bb0(%arg0: !attn.t<[m], f32>):
  // expected-error @+1 {{'attn.einsum' op rank 'm' appears twice in the output}}
  %0 = "attn.einsum"(%arg0) <{expr = #attn.expr<(in0[d0])>, output = affine_map<(d0)[s0] -> (d0, d0)>, space = ["m"]}> : (!attn.t<[m], f32>) -> !attn.t<[m], f32>
  "attn.yield"(%0) : (!attn.t<[m], f32>) -> ()
}) : () -> ()

// -----

/// topk along a rank that is not in the output.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{'attn.einsum' op topk runs along rank 'p', which is not in the output}}
  %o = attn.einsum [m] = %x[m, p] max(p) topk(4, p) : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// topk with k = 0.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m, p], f32>) {
  // expected-error @+1 {{'attn.einsum' op topk needs a positive k, got 0}}
  %o = attn.einsum [m, p] = %x[m, p] topk(0, p) : f32
  attn.yield %o : !attn.t<[m, p], f32>
}

// -----

/// An operand indexed with the wrong number of indices.
attn.cascade @c ranks(b, h, m, e) (%q: !attn.t<[b, h, m, e], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{'attn.einsum' op indexes operand #0 (%q) with 3 indices, but it has 4 ranks ('!attn.t<[b, h, m, e], f32>')}}
  %o = attn.einsum [m] = %q[b, h, m] : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// An Einsum result indexed with the wrong number of indices.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  %s = attn.einsum [m] = %x[m, p] : f32
  // expected-error @+1 {{'attn.einsum' op indexes operand #0 (%s) with 2 indices, but it has 1 ranks ('!attn.t<[m], f32>')}}
  %o = attn.einsum [m] = %s[m, 0] : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// attn.yield types that do not match the signature.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>, l: !attn.t<[m], f32>) {
  %o = attn.einsum [m] = %x[m, p] : f32
  // expected-error @+1 {{'attn.yield' op yields ('!attn.t<[m], f32>') but the cascade returns ('!attn.t<[m], f32>', '!attn.t<[m], f32>')}}
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// attn.yield of a value of another type than the result's.
attn.cascade @c ranks(m, p) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], bf16>) {
  %o = attn.einsum [m] = %x[m, p] : f32
  // expected-error @+1 {{'attn.yield' op yields ('!attn.t<[m], f32>') but the cascade returns ('!attn.t<[m], bf16>')}}
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// An argument name that is not an identifier.
// expected-error @+1 {{'attn.cascade' op argument and result names must be identifiers (they name C parameters), got '0'}}
attn.cascade @c ranks(m) (%0: !attn.t<[m], f32>) -> (o: !attn.t<[m], f32>) {
  %o = attn.einsum [m] = %0[m] : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A result name that is not an identifier (generic form).
// expected-error @+1 {{'attn.cascade' op argument and result names must be identifiers (they name C parameters), got 'o.1'}}
"attn.cascade"() <{arg_names = ["x"], function_type = (!attn.t<[m], f32>) -> !attn.t<[m], f32>, ranks = [#attn.rank<"m">], result_names = ["o.1"], sym_name = "c"}> ({
^bb0(%arg0: !attn.t<[m], f32>):
  "attn.yield"(%arg0) : (!attn.t<[m], f32>) -> ()
}) : () -> ()

// -----

/// An argument and a result with the same name.
// expected-error @+1 {{'attn.cascade' op name 'o' is used twice}}
attn.cascade @c ranks(m) (%o: !attn.t<[m], f32>) -> (o: !attn.t<[m], f32>) {
  %r = attn.einsum [m] = %o[m] : f32
  attn.yield %r : !attn.t<[m], f32>
}

// -----

/// Two results with the same name.
// expected-error @+1 {{'attn.cascade' op name 'o' is used twice}}
attn.cascade @c ranks(m) (%x: !attn.t<[m], f32>) -> (o: !attn.t<[m], f32>, o: !attn.t<[m], f32>) {
  %r = attn.einsum [m] = %x[m] : f32
  attn.yield %r, %r : !attn.t<[m], f32>, !attn.t<[m], f32>
}

// -----

/// Two arguments with the same name (generic form).
// expected-error @+1 {{'attn.cascade' op name 'x' is used twice}}
"attn.cascade"() <{arg_names = ["x", "x"], function_type = (!attn.t<[m], f32>, !attn.t<[m], f32>) -> !attn.t<[m], f32>, ranks = [#attn.rank<"m">], result_names = ["o"], sym_name = "c"}> ({
^bb0(%arg0: !attn.t<[m], f32>, %arg1: !attn.t<[m], f32>):
  "attn.yield"(%arg0) : (!attn.t<[m], f32>) -> ()
}) : () -> ()

// -----

/// A size relation that contradicts the static sizes.
// expected-error @+1 {{'attn.cascade' op relation h = 4 * g contradicts the sizes 8 and 4}}
attn.cascade @c ranks(g = 4, h = 8, m) where(h = 4 * g) (%x: !attn.t<[h, m], f32>) -> (o: !attn.t<[m], f32>) {
  %o = attn.einsum [m] = %x[h, m] : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A size relation whose product overflows contradicts any static size.
// expected-error @+1 {{'attn.cascade' op relation h = 4611686018427387904 * g contradicts the sizes 8 and 4}}
attn.cascade @c ranks(g = 4, h = 8, m) where(h = 4611686018427387904 * g) (%x: !attn.t<[h, m], f32>) -> (o: !attn.t<[m], f32>) {
  %o = attn.einsum [m] = %x[h, m] : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A size relation with factor 0.
// expected-error @+1 {{'attn.cascade' op relation factor must be positive, got 0}}
attn.cascade @c ranks(g, h, m) where(h = 0 * g) (%x: !attn.t<[h, m], f32>) -> (o: !attn.t<[m], f32>) {
  %o = attn.einsum [m] = %x[h, m] : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A size relation between a rank and itself.
// expected-error @+1 {{'attn.cascade' op relation h = 2 * h relates rank 'h' to itself}}
attn.cascade @c ranks(h, m) where(h = 2 * h) (%x: !attn.t<[h, m], f32>) -> (o: !attn.t<[m], f32>) {
  %o = attn.einsum [m] = %x[h, m] : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A rank of size 0.
// expected-error @+1 {{'attn.cascade' op rank 'p' has non-positive size 0}}
attn.cascade @c ranks(m, p = 0) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  %o = attn.einsum [m] = %x[m, p] : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A rank of negative size.
// expected-error @+1 {{'attn.cascade' op rank 'p' has non-positive size -16}}
attn.cascade @c ranks(m, p = -16) (%x: !attn.t<[m, p], f32>) -> (o: !attn.t<[m], f32>) {
  %o = attn.einsum [m] = %x[m, p] : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A rank name that is not an identifier (generic form).
// expected-error @+1 {{'attn.cascade' op rank name 'a b' is not an identifier}}
"attn.cascade"() <{arg_names = [], function_type = () -> (), ranks = [#attn.rank<"a b">], result_names = [], sym_name = "c"}> ({
  "attn.yield"() : () -> ()
}) : () -> ()

// -----

/// A reserved rank name (generic form).
// expected-error @+1 {{'attn.cascade' op 'exp' is reserved and cannot name a rank}}
"attn.cascade"() <{arg_names = [], function_type = () -> (), ranks = [#attn.rank<"exp" = 4>], result_names = [], sym_name = "c"}> ({
  "attn.yield"() : () -> ()
}) : () -> ()

// -----

/// An argument that is not an attn tensor.
// expected-error @+1 {{'attn.cascade' op argument 'x' must be an !attn.t tensor, got 'tensor<4xf32>'}}
attn.cascade @c ranks(m) (%x: tensor<4xf32>) -> (o: !attn.t<[m], f32>) {
  %o = attn.einsum [m] = 1.0 : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// An operation other than attn.einsum in a cascade.
attn.cascade @c ranks(m) (%x: !attn.t<[m], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{'arith.constant' op cannot appear in an attn.cascade, whose body holds attn.einsum operations and an attn.yield}}
  %c = arith.constant 1.0 : f32
  %o = attn.einsum [m] = %x[m] : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A cascade inside a cascade.
attn.cascade @c ranks(m) (%x: !attn.t<[m], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{'attn.cascade' op symbol's parent must have the SymbolTable trait}}
  attn.cascade @d ranks(p) () -> () {
    attn.yield
  }
  %o = attn.einsum [m] = %x[m] : f32
  attn.yield %o : !attn.t<[m], f32>
}

// -----

/// A cascade without attn.yield.
attn.cascade @c ranks(m) (%x: !attn.t<[m], f32>) -> (o: !attn.t<[m], f32>) {
  // expected-error @+1 {{block with no terminator}}
  %o = attn.einsum [m] = %x[m] : f32
}

// -----

/// An Einsum inside func.func.
func.func @f() {
  // expected-error @+1 {{'attn.einsum' op expects parent op 'attn.cascade'}}
  %o = attn.einsum [m] = 1.0 : f32
  return
}

// -----

/// An Einsum at module level, reading a value it cannot know the type of.
// expected-error @+1 {{the type of '%x' is unknown: attn.einsum reads the arguments of an enclosing attn.cascade in custom form and the Einsums before it}}
%o = attn.einsum [m] = %x[m] : f32

// -----

/// attn.yield outside a cascade.
func.func @f() {
  // expected-error @+1 {{'attn.yield' op expects parent op 'attn.cascade'}}
  attn.yield
}

// -----

/// Generic form: a load from an operand the Einsum does not have.
"attn.cascade"() <{arg_names = ["x"], function_type = (!attn.t<[m, p], f32>) -> !attn.t<[m], f32>, ranks = [#attn.rank<"m">, #attn.rank<"p">], result_names = ["o"], sym_name = "c"}> ({
^bb0(%arg0: !attn.t<[m, p], f32>):
  // expected-error @+1 {{'attn.einsum' op loads from operand #99 but has 1 operand}}
  %0 = "attn.einsum"(%arg0) <{expr = #attn.expr<(in99[d0, d1])>, output = affine_map<(d0, d1)[s0, s1] -> (d0)>, reduced = ["p"], reducer = #attn<reducer sum>, space = ["m", "p"]}> : (!attn.t<[m, p], f32>) -> !attn.t<[m], f32>
  "attn.yield"(%0) : (!attn.t<[m], f32>) -> ()
}) : () -> ()

// -----

/// Generic form: a rank d7 beyond the Einsum's space of two ranks.
"attn.cascade"() <{arg_names = ["x"], function_type = (!attn.t<[m, p], f32>) -> !attn.t<[m], f32>, ranks = [#attn.rank<"m">, #attn.rank<"p">], result_names = ["o"], sym_name = "c"}> ({
^bb0(%arg0: !attn.t<[m, p], f32>):
  // expected-error @+1 {{'attn.einsum' op index expression refers to rank d7, but the space has 2 ranks}}
  %0 = "attn.einsum"(%arg0) <{expr = #attn.expr<(in0[d0, d7])>, output = affine_map<(d0, d1)[s0, s1] -> (d0)>, reduced = ["p"], reducer = #attn<reducer sum>, space = ["m", "p"]}> : (!attn.t<[m, p], f32>) -> !attn.t<[m], f32>
  "attn.yield"(%0) : (!attn.t<[m], f32>) -> ()
}) : () -> ()

// -----

/// Generic form: the size |d5| of a rank beyond the Einsum's space, in the condition.
"attn.cascade"() <{arg_names = ["x"], function_type = (!attn.t<[m], f32>) -> !attn.t<[m], f32>, ranks = [#attn.rank<"m">], result_names = ["o"], sym_name = "c"}> ({
^bb0(%arg0: !attn.t<[m], f32>):
  // expected-error @+1 {{'attn.einsum' op index expression refers to rank d5, but the space has 1 rank}}
  %0 = "attn.einsum"(%arg0) <{cond = #attn.expr<(lt(d0, |d5|))>, expr = #attn.expr<(in0[d0])>, output = affine_map<(d0)[s0] -> (d0)>, space = ["m"]}> : (!attn.t<[m], f32>) -> !attn.t<[m], f32>
  "attn.yield"(%0) : (!attn.t<[m], f32>) -> ()
}) : () -> ()

// -----

/// Generic form: 'self' in an Einsum that is not iterative.
"attn.cascade"() <{arg_names = ["x"], function_type = (!attn.t<[m], f32>) -> !attn.t<[m], f32>, ranks = [#attn.rank<"m">], result_names = ["o"], sym_name = "c"}> ({
^bb0(%arg0: !attn.t<[m], f32>):
  // expected-error @+1 {{'attn.einsum' op reads its own result, which only an Einsum iterative along a rank ('r + 1' in the output) may do}}
  %0 = "attn.einsum"(%arg0) <{expr = #attn.expr<(self[d0])>, output = affine_map<(d0)[s0] -> (d0)>, space = ["m"]}> : (!attn.t<[m], f32>) -> !attn.t<[m], f32>
  "attn.yield"(%0) : (!attn.t<[m], f32>) -> ()
}) : () -> ()

// -----

/// Generic form: a missing required attribute.
"attn.cascade"() <{arg_names = ["x"], function_type = (!attn.t<[m], f32>) -> !attn.t<[m], f32>, ranks = [#attn.rank<"m">], result_names = ["o"], sym_name = "c"}> ({
^bb0(%arg0: !attn.t<[m], f32>):
  // expected-error @+1 {{'attn.einsum' op requires attribute 'space'}}
  %0 = "attn.einsum"(%arg0) <{expr = #attn.expr<(in0[d0])>, output = affine_map<(d0)[s0] -> (d0)>}> : (!attn.t<[m], f32>) -> !attn.t<[m], f32>
  "attn.yield"(%0) : (!attn.t<[m], f32>) -> ()
}) : () -> ()

// -----

/// Generic form: a missing required cascade attribute.
// expected-error @+1 {{'attn.cascade' op requires attribute 'ranks'}}
"attn.cascade"() <{arg_names = [], function_type = () -> (), result_names = [], sym_name = "c"}> ({
  "attn.yield"() : () -> ()
}) : () -> ()

// -----

/// Generic form: a reduce list of integers, on an annotated Einsum (the
/// annotation is verified before the operation: it must not read them).
"attn.cascade"() <{arg_names = ["x"], function_type = (!attn.t<[m, p], f32>) -> !attn.t<[m], f32>, ranks = [#attn.rank<"m">, #attn.rank<"p">], result_names = ["o"], sym_name = "c"}> ({
^bb0(%arg0: !attn.t<[m, p], f32>):
  // expected-error @+1 {{'attn.einsum' op attribute 'reduced' failed to satisfy constraint: string array attribute}}
  %0 = "attn.einsum"(%arg0) <{expr = #attn.expr<(in0[d0, d1])>, output = affine_map<(d0, d1)[s0, s1] -> (d0)>, reduced = [1], reducer = #attn<reducer sum>, space = ["m", "p"]}> {attn.lowrank = #attn.lowrank<bias, "p">} : (!attn.t<[m, p], f32>) -> !attn.t<[m], f32>
  "attn.yield"(%0) : (!attn.t<[m], f32>) -> ()
}) : () -> ()

// -----

/// Generic form: an output map with the wrong number of dimensions.
"attn.cascade"() <{arg_names = ["x"], function_type = (!attn.t<[m, p], f32>) -> !attn.t<[m], f32>, ranks = [#attn.rank<"m">, #attn.rank<"p">], result_names = ["o"], sym_name = "c"}> ({
^bb0(%arg0: !attn.t<[m, p], f32>):
  // expected-error @+1 {{'attn.einsum' op output map must have one dimension and one symbol per rank of its space}}
  %0 = "attn.einsum"(%arg0) <{expr = #attn.expr<(in0[d0, d1])>, output = affine_map<(d0)[s0] -> (d0)>, reduced = ["p"], reducer = #attn<reducer sum>, space = ["m", "p"]}> : (!attn.t<[m, p], f32>) -> !attn.t<[m], f32>
  "attn.yield"(%0) : (!attn.t<[m], f32>) -> ()
}) : () -> ()

// -----

/// Generic form: a result type that does not follow the output index.
"attn.cascade"() <{arg_names = ["x"], function_type = (!attn.t<[m, p], f32>) -> !attn.t<[p], f32>, ranks = [#attn.rank<"m">, #attn.rank<"p">], result_names = ["o"], sym_name = "c"}> ({
^bb0(%arg0: !attn.t<[m, p], f32>):
  // expected-error @+1 {{'attn.einsum' op result type '!attn.t<[p], f32>' does not match the output index}}
  %0 = "attn.einsum"(%arg0) <{expr = #attn.expr<(in0[d0, d1])>, output = affine_map<(d0, d1)[s0, s1] -> (d0)>, reduced = ["p"], reducer = #attn<reducer sum>, space = ["m", "p"]}> : (!attn.t<[m, p], f32>) -> !attn.t<[p], f32>
  "attn.yield"(%0) : (!attn.t<[p], f32>) -> ()
}) : () -> ()

// -----

/// Generic form: a rank listed twice in the space.
"attn.cascade"() <{arg_names = ["x"], function_type = (!attn.t<[m], f32>) -> !attn.t<[m], f32>, ranks = [#attn.rank<"m">], result_names = ["o"], sym_name = "c"}> ({
^bb0(%arg0: !attn.t<[m], f32>):
  // expected-error @+1 {{'attn.einsum' op rank 'm' appears twice in its space}}
  %0 = "attn.einsum"(%arg0) <{expr = #attn.expr<(in0[d0])>, output = affine_map<(d0, d1)[s0, s1] -> (d0)>, space = ["m", "m"]}> : (!attn.t<[m], f32>) -> !attn.t<[m], f32>
  "attn.yield"(%0) : (!attn.t<[m], f32>) -> ()
}) : () -> ()
