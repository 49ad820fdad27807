//===- Passes.td - attn passes -----------------------------*- tablegen -*-===//
//
// Every pass of the attention compiler, one .cpp per pass in passes/ and a
// lit test per pass in test/passes/ (docs/reference/Passes.md is generated
// from this file).
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_PASSES_TD
#define ATTN_PASSES_TD

include "mlir/Pass/PassBase.td"

def AttnAnalyzePass : Pass<"attn-analyze", "::mlir::ModuleOp"> {
  let summary = "Report pass counts, FLOPs, bytes and buffer sizes of cascades";
  let description = [{
    Emits remarks on every `attn.cascade` (and, with `per-einsum`, on every
    Einsum):

    * **passes(r)** for every reduced rank r, in FuseMax's sense (arXiv
      2406.10491, Sec. III): a *pass* is one traversal of a fiber of r, and
      an Einsum that iterates r must start a new pass when it reads, in full,
      the result of a reduction over r (or the final state of an iteration
      along r). The plain softmax cascade is 3-pass over the key rank, the
      cascade with deferred division 2-pass, FlashAttention's 1-pass.
      Reads of a running state at the current step (`RM[m, p1]`,
      `RM[m, p1 + 1]` in an Einsum iterating p1) are prefix reads and do not
      end a pass. For a partitioned rank `p -> p1, p0` the count is over the
      outer rank p1 and is reported as passes(p).
    * **flops**: for each Einsum, points of its iteration space times the
      arithmetic nodes of its map action, plus one combine per point for a
      reduction; transcendental functions (exp, log, tanh, ...) are counted
      separately. Given as a polynomial in the rank sizes; Einsums with a
      condition are counted exactly when the sizes of the ranks the
      condition uses are static, and otherwise bounded by the dense count.
    * **bytes**: bytes read (arguments) and written (results) by a fused
      kernel, and the traffic of an unfused evaluation (every Einsum reads
      its operands and writes its result).
    * **buffer**: the largest intermediate tensor and the peak of live
      intermediates in program order; a running state along an iterative
      rank counts one step.

    Example: `attn-opt --attn-analyze examples/mha.mlir` prints
    `passes(p) = 3 ...`.
  }];
  let options = [
    Option<"perEinsum", "per-einsum", "bool", /*default=*/"false",
           "Also emit one remark per Einsum (its level and FLOPs)">
  ];
}

#endif // ATTN_PASSES_TD
