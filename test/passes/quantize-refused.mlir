// attn-quantize refusals: a quantization that the pass cannot honour is an
// error at the Einsum (or argument) at fault, and the pass fails; it never
// silently leaves a tensor unquantized. The verifier's own checks of the
// `to` and `scale` annotations come last.
// RUN: attn-opt %s --attn-quantize -split-input-file -verify-diagnostics

/// Only Q quantized: an integer dot product needs both operands.
attn.cascade @one_side ranks(m, p, e = 8)
    (%q: !attn.t<[m, e], f32> {attn.quant = #attn.quant<to = i8, granularity = token>}, %k: !attn.t<[p, e], f32>)
    -> (s: !attn.t<[m, p], f32>) {
  // expected-error@+1 {{attn-quantize: only one operand of the contraction 's' ('q') is quantized on the fly; an integer or fp8 dot product needs both (attn-quantize quantizes both operands of Q K^T; PV stays in the storage type)}}
  %s = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) : f32
  attn.yield %s : !attn.t<[m, p], f32>
}

// -----

/// i8 with fp8.
attn.cascade @mixed ranks(m, p, e = 8)
    (%q: !attn.t<[m, e], f32> {attn.quant = #attn.quant<to = i8, granularity = token>},
     %k: !attn.t<[p, e], f32> {attn.quant = #attn.quant<to = f8E4M3FN, granularity = token>})
    -> (s: !attn.t<[m, p], f32>) {
  // expected-error@+1 {{attn-quantize: 's' contracts i8 ('q') with f8E4M3FN ('k'); both operands must be i8, or both fp8}}
  %s = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) : f32
  attn.yield %s : !attn.t<[m, p], f32>
}

// -----

/// Per-channel scales on both sides cannot both leave the contraction.
attn.cascade @two_channels ranks(m, p, e = 8)
    (%q: !attn.t<[m, e], f32> {attn.quant = #attn.quant<to = i8, granularity = channel>},
     %k: !attn.t<[p, e], f32> {attn.quant = #attn.quant<to = i8, granularity = channel>})
    -> (s: !attn.t<[m, p], f32>) {
  // expected-error@+1 {{attn-quantize: 'q' and 'k' are both quantized per channel; the scales of the contraction rank 'e' can move into one operand only (quantize the other per token, block, head or tensor)}}
  %s = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) : f32
  attn.yield %s : !attn.t<[m, p], f32>
}

// -----

/// Blocks along the contraction rank would put scales inside the dot product.
attn.cascade @block_along_e ranks(m, p, e = 64)
    (%q: !attn.t<[m, e], f32> {attn.quant = #attn.quant<to = i8, granularity = block, block_size = 32, along = "e">},
     %k: !attn.t<[p, e], f32> {attn.quant = #attn.quant<to = i8, granularity = token>})
    -> (s: !attn.t<[m, p], f32>) {
  // expected-error@+1 {{attn-quantize: the scales of 'q' run along 'e', the contraction rank of 's': they would sit inside the dot product; blocks and smoothing run along the token rank}}
  %s = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) : f32
  attn.yield %s : !attn.t<[m, p], f32>
}

// -----

/// Smoothing both operands (SageAttention smooths K only).
attn.cascade @smooth_both ranks(m, p, e = 8)
    (%q: !attn.t<[m, e], f32> {attn.quant = #attn.quant<to = i8, granularity = head, along = "m", smooth = true>},
     %k: !attn.t<[p, e], f32> {attn.quant = #attn.quant<to = i8, granularity = head, along = "p", smooth = true>})
    -> (s: !attn.t<[m, p], f32>) {
  // expected-error@+1 {{attn-quantize: both 'q' and 'k' ask for smoothing; smooth one operand of 's' (K, as SageAttention does)}}
  %s = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) : f32
  attn.yield %s : !attn.t<[m, p], f32>
}

// -----

/// An INT8 dot product does not fit an f16 accumulator.
attn.cascade @narrow_acc ranks(m, p, e = 8)
    (%q: !attn.t<[m, e], f32> {attn.quant = #attn.quant<to = i8, granularity = token>},
     %k: !attn.t<[p, e], f32> {attn.quant = #attn.quant<to = i8, granularity = token>})
    -> (s: !attn.t<[m, p], f32>) {
  // expected-error@+1 {{attn-quantize: the accumulator f16 of 's' cannot hold the exact dot product of i8 values; use acc = i32}}
  %s = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) {attn.quant = #attn.quant<acc = f16>} : f32
  attn.yield %s : !attn.t<[m, p], f32>
}

// -----

/// V quantized on the fly: PV stays in the storage type (only Q K^T is
/// quantized on the fly).
attn.cascade @v_on_the_fly ranks(m, p, f = 8)
    (%a: !attn.t<[m, p], f32>, %v: !attn.t<[p, f], f32> {attn.quant = #attn.quant<to = i8, granularity = channel>})
    -> (o: !attn.t<[m, f], f32>) {
  // expected-error@+1 {{attn-quantize: only one operand of the contraction 'o' ('v') is quantized on the fly; an integer or fp8 dot product needs both (attn-quantize quantizes both operands of Q K^T; PV stays in the storage type)}}
  %o = attn.einsum [m, f] = %a[m, p] * %v[p, f] sum(p) : f32
  attn.yield %o : !attn.t<[m, f], f32>
}

// -----

/// A stored (already quantized) K cannot be smoothed by the compiler.
attn.cascade @smooth_stored ranks(m, p, e = 8)
    (%q: !attn.t<[m, e], f8E4M3FN> {attn.quant = #attn.quant<storage = f8E4M3FN, scale = "qd">},
     %k: !attn.t<[p, e], f8E4M3FN> {attn.quant = #attn.quant<storage = f8E4M3FN, granularity = head, along = "p", smooth = true, scale = "kd">},
     %qd: !attn.t<[], f32>, %kd: !attn.t<[], f32>)
    -> (s: !attn.t<[m, p], f32>) {
  // expected-error@+1 {{attn-quantize: 'k' is stored quantized; the compiler cannot smooth stored values (smooth before quantizing)}}
  %s = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) : f32
  attn.yield %s : !attn.t<[m, p], f32>
}

// -----

/// A per-channel descale of K varies along the contraction rank.
attn.cascade @descale_per_channel ranks(m, p, e = 8)
    (%q: !attn.t<[m, e], f8E4M3FN> {attn.quant = #attn.quant<storage = f8E4M3FN, scale = "qd">},
     %k: !attn.t<[p, e], f8E4M3FN> {attn.quant = #attn.quant<storage = f8E4M3FN, granularity = channel, scale = "kd">},
     %qd: !attn.t<[], f32>, %kd: !attn.t<[e], f32>)
    -> (s: !attn.t<[m, p], f32>) {
  // expected-error@+1 {{attn-quantize: the descale of 'k' varies along the contraction rank 'e' (per channel): it would sit inside the dot product}}
  %s = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) : f32
  attn.yield %s : !attn.t<[m, p], f32>
}

// -----

/// A per-tensor annotation whose descale has ranks.
attn.cascade @descale_layout ranks(m, p, e = 8)
    (%q: !attn.t<[m, e], f8E4M3FN> {attn.quant = #attn.quant<storage = f8E4M3FN, scale = "qd">},
     %k: !attn.t<[p, e], f8E4M3FN> {attn.quant = #attn.quant<storage = f8E4M3FN, scale = "kd">},
     %qd: !attn.t<[m], f32>, %kd: !attn.t<[], f32>)
    -> (s: !attn.t<[m, p], f32>) {
  // expected-error@+1 {{attn-quantize: 'q' is quantized per tensor, but its descale 'qd' has ranks}}
  %s = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) : f32
  attn.yield %s : !attn.t<[m, p], f32>
}

// -----

/// An argument quantized on the fly that no contraction reads.
attn.cascade @unused ranks(p, f = 8)
    // expected-error@+1 {{attn-quantize: 'v' is quantized on the fly (to = i8) but is not an operand of a contraction with another such operand}}
    (%v: !attn.t<[p, f], f32> {attn.quant = #attn.quant<to = i8, granularity = tensor>})
    -> (o: !attn.t<[p, f], f32>) {
  %o = attn.einsum [p, f] = %v[p, f] * 2.0 : f32
  attn.yield %o : !attn.t<[p, f], f32>
}

// -----

/// Gathered operands (top-k keys) are not quantized.
attn.cascade @gathered ranks(m, p, l, e = 8)
    (%q: !attn.t<[m, e], f32> {attn.quant = #attn.quant<to = i8, granularity = token>},
     %k: !attn.t<[p, e], f32> {attn.quant = #attn.quant<to = i8, granularity = token>},
     %idx: !attn.t<[m, l], i32>)
    -> (s: !attn.t<[m, l], f32>) {
  // expected-error@+1 {{attn-quantize: 's' gathers from 'k'; quantizing gathered operands is not supported}}
  %s = attn.einsum [m, l] = %q[m, e] * %k[%idx[m, l], e] sum(e) : f32
  attn.yield %s : !attn.t<[m, l], f32>
}

// -----

// The verifier's checks of `to` and `scale`.

// expected-error@+1 {{argument 'k': 'to' quantizes a float tensor (f16, bf16, f32, f64) on the fly, and this argument holds 'i8'}}
attn.cascade @to_on_int ranks(p, e) (%k: !attn.t<[p, e], i8> {attn.quant = #attn.quant<to = i8>}) -> (o: !attn.t<[p], f32>) {
  %o = attn.einsum [p] = %k[p, e] sum(e) : f32
  attn.yield %o : !attn.t<[p], f32>
}

// -----

// expected-error@+1 {{argument 'k': 'to' quantizes to i8, f8E4M3FN or f8E5M2, not 'i4'}}
attn.cascade @to_i4 ranks(p, e) (%k: !attn.t<[p, e], f32> {attn.quant = #attn.quant<to = i4>}) -> (o: !attn.t<[p], f32>) {
  %o = attn.einsum [p] = %k[p, e] sum(e) : f32
  attn.yield %o : !attn.t<[p], f32>
}

// -----

// expected-error@+1 {{argument 'k': give either 'to' (quantize on the fly, scales computed) or 'scale' (stored quantized values and their descale argument), not both}}
attn.cascade @to_and_scale ranks(p, e) (%k: !attn.t<[p, e], f32> {attn.quant = #attn.quant<to = i8, scale = "kd">}, %kd: !attn.t<[], f32>) -> (o: !attn.t<[p], f32>) {
  %o = attn.einsum [p] = %k[p, e] sum(e) : f32
  attn.yield %o : !attn.t<[p], f32>
}

// -----

// expected-error@+1 {{argument 'k': a descale argument (scale = "kd") belongs to an argument stored quantized (i8, f8E4M3FN or f8E5M2), not 'f32'}}
attn.cascade @scale_on_float ranks(p, e) (%k: !attn.t<[p, e], f32> {attn.quant = #attn.quant<scale = "kd">}, %kd: !attn.t<[], f32>) -> (o: !attn.t<[p], f32>) {
  %o = attn.einsum [p] = %k[p, e] sum(e) : f32
  attn.yield %o : !attn.t<[p], f32>
}

// -----

// expected-error@+1 {{argument 'k': the descale argument 'missing' is not an argument of the cascade}}
attn.cascade @scale_missing ranks(p, e) (%k: !attn.t<[p, e], i8> {attn.quant = #attn.quant<scale = "missing">}) -> (o: !attn.t<[p], f32>) {
  %o = attn.einsum [p] = %k[p, e] sum(e) : f32
  attn.yield %o : !attn.t<[p], f32>
}

// -----

// expected-error@+1 {{argument 'k': the descale argument 'kd' must be another float tensor (f16, bf16, f32 or f64)}}
attn.cascade @scale_int ranks(p, e) (%k: !attn.t<[p, e], i8> {attn.quant = #attn.quant<scale = "kd">}, %kd: !attn.t<[], i32>) -> (o: !attn.t<[p], f32>) {
  %o = attn.einsum [p] = %k[p, e] sum(e) : f32
  attn.yield %o : !attn.t<[p], f32>
}

// -----

attn.cascade @to_on_einsum ranks(p, e) (%k: !attn.t<[p, e], f32>) -> (o: !attn.t<[p], f32>) {
  // expected-error@+1 {{'attn.quant' on an Einsum gives only the accumulator type; scale granularity, block_size, along, smooth, to and scale annotate cascade arguments}}
  %o = attn.einsum [p] = %k[p, e] sum(e) {attn.quant = #attn.quant<to = i8, acc = i32>} : f32
  attn.yield %o : !attn.t<[p], f32>
}
