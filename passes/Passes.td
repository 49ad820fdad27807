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
    Einsum). The analyses are a C++ library (`include/attn/Analysis.h`:
    `PassAnalysis`, `CostAnalysis`, `Poly`) that other passes reuse.

    * **passes(r)** for every reduced rank r (a rank some Einsum reduces, or
      iterates along with an output index `r + 1`), in FuseMax's sense (arXiv
      2406.10491, Sec. III): a *pass* is one traversal of a fiber of r, and
      an Einsum that iterates r must start a new pass when it depends *in
      full* on a reduction over r. An *r-reduction* is an Einsum with r in
      `reduced` or iterative along r. For every Einsum E iterating r,
      `level(E) = 1 + max level(R)` over the r-reductions R that E depends on
      in full, transitively through any Einsums (1 without any), and
      `passes(r)` is the largest level; the Einsums of level k form pass k.
      Reading an iterative Einsum's result at index `r` or `r + 1` from an
      Einsum that iterates r is a prefix read (the running state up to the
      current step, `RM[m, p1]`, `RM[m, p1 + 1]`) and does not count, though
      what the iterative Einsum depends on in full still propagates; a read
      at `|r|` (the final state) or any other index is a full read. For a
      partitioned rank `p -> p1, p0` the count is over the outer rank p1 and
      is reported as passes(p); reductions over p0 alone stay within a tile.
      The plain softmax cascade is 3-pass over the key rank, the cascade
      with deferred division 2-pass, FlashAttention's 1-pass. Each pass lists
      its Einsums by name and, from pass 2 on, the tensors indexed by the
      rank that it re-reads (produced or read by an earlier pass).
    * **flops**: for each Einsum, points of its iteration space times the
      nodes of its map action (add, sub, mul, div, neg, max, min, floordiv,
      mod, select, pow, abs, round, floor, cast, and comparisons inside a
      select: 1 each), plus one combine per point for a reduction. The
      transcendental functions exp, exp2, log, log2, tanh, sigmoid and sqrt
      are counted separately (`special`). Loads, rank values, constants,
      the index arithmetic of loads, the condition and top-k are free.
      Counts are polynomials in the rank sizes: a dynamic rank is a variable
      named like the rank, the inner rank of a partition has its tile size,
      the outer rank is its own variable unless |p| is static, and a
      relation `h = 4 * g` expresses g as h/4. An Einsum iterating both
      ranks of a partition of p counts |p| points for the pair (the ragged
      remainder `p1 * T + p0 >= |p|` is excluded). The conjuncts of a
      condition that do not load from tensors are counted exactly by
      enumerating the ranks they use when those sizes are static and there
      are at most 1e8 combinations; a condition that loads from tensors
      (runtime data) or has dynamic sizes gives an upper bound (`<= ...`).
    * **bytes**: `fused` = the arguments and results of the cascade (one
      kernel reading its inputs and writing its outputs once); `unfused` =
      the sum over Einsums of their operands and result. Element sizes: f64
      and i64 8, f32 and i32 4, f16 and bf16 2, f8 and i8 1, i4 0.5, i1 1/8.
      The result of an Einsum iterative along r has |r| + 1 entries along r.
    * **buffer**: the largest intermediate (an Einsum result that is not
      yielded) and the peak total of intermediates live at one Einsum in
      program order (from definition to last use). A running state along r
      holds one step (r dropped); when passes(p) = 1 for a partition
      `p -> p1, p0`, a tensor indexed by p1 holds one tile (p1 dropped).
      Sizes are compared with every dynamic size set to 4096.

    Example: `attn-opt --attn-analyze examples/mha.mlir` prints

    ```
    remark: passes(p) = 3; pass 1: qk, gm; pass 2: sn, sd (re-reads qk); pass 3: o (re-reads sn)
    remark: passes(e) = 1; pass 1: qk
    remark: flops = 387*b*h*m*p + b*h*m; special = b*h*m*p + b*h*m
    remark: bytes: fused = 516*b*h*m + 512*b*h*p; unfused = 24*b*h*m*p + 540*b*h*m + 512*b*h*p
    remark: buffer: largest = qk, 4*b*h*m*p bytes; peak = 8*b*h*m*p + 4*b*h*m bytes at sn (live: qk, gm, sn)
    ```

    and with `per-einsum` also, for instance,
    `remark: einsum qk: level(p) = 1, level(e) = 1; points = 64*b*h*m*p;
    flops = 192*b*h*m*p (3 per point)`.
  }];
  let options = [
    Option<"perEinsum", "per-einsum", "bool", /*default=*/"false",
           "Also emit one remark per Einsum (its levels, points and FLOPs)">
  ];
}

def AttnDeriveOnlinePass : Pass<"attn-derive-online", "::mlir::ModuleOp"> {
  let summary = "Derive the online (1-pass or 2-pass) form of a cascade over the key rank";
  let description = [{
    Rewrites every cascade whose reductions over a rank p are read in full
    by later computations over p (the 3-pass shape of softmax) into a
    cascade that reads p once: p is partitioned into tiles
    (`p -> p1, p0 = tile`, ragged unless |p| is a static multiple), every
    reduction over p becomes a local reduction over a tile (`l_x`) and a
    running value along the iterative rank p1 (`r_x`), and every running
    sum whose terms carry exp(-max) is rescaled by a correction
    `c_max = exp(r_max[p1] - ref_max[p1])` when the max grows. The reference
    `ref_max = (r_max == -inf ? 0 : r_max)` keeps fully masked tiles and rows
    free of NaN. Readers outside the loop read the final values
    (`x = r_x[|p1|]`). Before that, factors and conditions of a sum over p
    that do not depend on p but on another reduction over p move out of the
    sum (`o = sum_p sn * v / sd` becomes `o_num = sum_p sn * v`,
    `o = o_num / sd`).

    The rewrite is generic, not a softmax pattern: any score modification
    (scale, bias, ALiBi, softcap, masks), any number of outputs, several
    value operands, exp and exp2. A term must factor into a part free of the
    reductions and exponentials of a running max (or min) with the stable
    sign, exp(a * (s - max)) with a > 0 where s is what the max reduces
    (docs/derivation.md states the rule and the checks). When a check
    fails, the cascade is left unchanged and a remark at the offending
    Einsum says why (a top-k along p, a factor such as tanh(s - max) that
    mixes the tile with the max, a p-indexed output that needs the final
    max, ...). A cascade that is already 1-pass (sigmoid or linear
    attention, or one that was derived) gets a remark and no change; a
    quantization prologue (`attn.prologue`, attn-split-quant) is left
    alone without one.

    After the rewrite the pass re-runs the pass analysis and reports the
    certificate, e.g. `derived the 1-pass form over p (tiles of 64):
    passes(p) 3 -> 1; ...`.

    With `two-pass`, only the reductions read in full inside the loop (the
    max and the denominator) become running values; the rest stays a second
    pass over p that reads their final values.

    A cascade that declares a partition of p (`p -> p1, p0 = 16`) is tiled
    by it instead of a new one: a paged KV cache, whose reductions are
    written over the pages (`max(p1, p0)`), iterates the page rank p1 with
    a page as the tile; the key blocks of a block-sparse layout are the
    tiles. A value that is the reference of a max, `select(gm == -inf, 0,
    gm)` (as in the parts that attn-split-kv makes), reads inside the loop
    as the running reference.
  }];
  let options = [
    Option<"rank", "rank", "std::string", /*default=*/"\"\"",
           "The rank to derive over (default: the only rank with more passes than wanted)">,
    Option<"tile", "tile", "int64_t", /*default=*/"64",
           "Tile size along the rank (the inner rank of the partition; a "
           "partition that the cascade declares for the rank is used instead)">,
    Option<"twoPass", "two-pass", "bool", /*default=*/"false",
           "Derive the 2-pass form (running max and denominator, then a normalising pass)">
  ];
}

def AttnSplitKVPass : Pass<"attn-split-kv", "::mlir::ModuleOp"> {
  let summary = "Split the keys into independent parts and merge their partial (O, LSE) results";
  let description = [{
    Splits the keys into parts whose reductions are independent (the
    parallel split of FlashDecoding for decode, where one query row has too
    little work for a whole machine; the shared prefix of Hydragen), then
    merges the parts' results.

    * One key rank p: p is partitioned into parts of `split-size` keys
      (`p -> ps, pi`, ps = ceildiv(|p|, split-size) splits). A cascade whose
      reductions are already written over a partition of p (a paged KV
      cache, `max(p1, p0)`) is split along it, one split per outer index.
    * Several key ranks reduced together (`rank=s,p`; Hydragen's shared
      prefix, where the prefix keys have no batch rank): one part per rank,
      the cascade restricted to that rank's keys. Every reduction over one
      key rank must be read only in a combination with its counterparts over
      the others (`max(gmp, gms)`, `sdp + sds`).

    Without `rank`, the key rank is the only rank that a max reduces, or the
    ranks whose maxima one Einsum combines (`max(gmp, gms)`).

    Each part reduces its keys against its own max (`ref_gm_part`, 0 while
    the max is -inf). With `merge=lse` (the default), each part produces its
    normalised results and their log-sum-exp, and the merge is the one that
    FlashDecoding kernels exchange:

    ```
    o_part   = o_num_part / sd_part if (sd_part > 0)   // per split
    lse_part = ref_gm_part + log(sd_part)               // -inf for an empty split
    lse      = M + log(sum_ps exp(lse_part - M))        // M = max_ps lse_part, 0 if -inf
    o        = sum_ps exp(lse_part - lse) * o_part if (lse > -inf)
    ```

    This applies to results that are a ratio N / D of sums over the keys
    rescaled by the same max (D positive), or the log-sum-exp of such a D
    (`gm + log(sd)`); any other result is refused with a remark. The guards
    of the original (`if (sd > 0)`) carry over, so a row without keys gives
    O = 0 and LSE = -inf, and an empty split (masked, or the ragged last one)
    has weight exp(-inf) = 0.

    With `merge=state`, the (max, sum) state is merged instead, without a
    division per split: every max first (`gm = max_ps gm_part`), then every
    partial sum rescaled to the merged max, `sd = sum_ps sd_part * c_gm` with
    `c_gm[ps] = exp(gm_part[ps] - ref_gm)`. It takes one key rank.

    The planning and its refusals are those of attn-derive-online (the same
    cascades have, or lack, a split form); factors such as `/ sd` move out of
    the sums first.
  }];
  let options = [
    ListOption<"rank", "rank", "std::string",
               "The key rank to split, or several key ranks reduced together "
               "(rank=s,p); default: detected">,
    Option<"splitSize", "split-size", "int64_t", /*default=*/"256",
           "Keys per split (the inner rank of the partition; one key rank only)">,
    Option<"merge", "merge", "std::string", /*default=*/"\"lse\"",
           "How the parts are merged: lse (partial (O, LSE), merged by "
           "log-sum-exp) or state (the (max, sum) state)">
  ];
}

def AttnSparsifyPass : Pass<"attn-sparsify", "::mlir::ModuleOp"> {
  let summary = "Classify masks for tile skipping: empty, full and partial tiles";
  let description = [{
    For every cascade, finds the score Einsum (a condition with `else -inf`
    that the Einsums over the key rank read) and reads its condition
    conjunct by conjunct, relative to the row rank (the queries, cut in
    tiles per task), the key rank (p, or p, p1, p0 after
    attn-derive-online) and the ranks fixed for a task (batch, head). For a
    (row tile, key tile) pair each understood conjunct says whether it holds
    for none of its pairs (the key tile is **empty** for these rows), all of
    them (**full**) or some (**partial**):

    * `affine`: `a*p + b*m + c <= 0` with task ranks and sizes (causal both
      alignments, sliding window): key-tile loop bounds per row tile, and
      the range of full tiles.
    * `segment_ids`: `R == K` with R read at the row and K at the key, from
      cascade arguments only (document masks): per task the range [min, max]
      of R over the row tile (|row tile| loads), per key tile that of K
      (|key tile| loads); empty when the ranges do not meet, full when both
      hold one and the same id.
    * `varlen`: `sq[m] == sk[p]` where sq and sk count the `cu_seqlens`
      boundaries at or before the token: the keys of the sequences of the
      row tile's rows, `[cu_k[sq[first row]], cu_k[sq[last row] + 1])`, as
      loop bounds (the runtime checks that cu_seqlens is nondecreasing);
      full tiles when the row tile is one sequence. `varlen_bound`
      (`sq[m] < |n| - 1`, padding rows) is read with it.
    * `prefix`: an `or` of upper bounds on the key, each `p < X` or
      `p <= X` with X nondecreasing in the row or read from an argument at
      the task's fixed ranks (prefix-LM: `p < prefix_len[b] or p <= m`): the
      key loop ends after the last row's bound, tiles below the first row's
      bound are full.
    * `element`: anything else (an `or` with a lower bound, a block layout
      read through an Einsum, PowerAttention's bit test): evaluated per
      element in every tile the other conjuncts keep.

    The classification is recorded on the Einsum as `attn.tiles = [...]`, one
    class per conjunct, and reported as a remark. attn-derive-online keeps
    the annotation and attn-lower-cpu consumes it: a conjunct recorded as
    `element` is evaluated per element even where the lowering could
    classify it (with `metadata=false` this turns off tile skipping from
    runtime metadata); any other class must match what the lowering reads.
    Without the annotation attn-lower-cpu classifies the mask itself, the
    same way (include/attn/Transforms/MaskTiles.h). A cascade without such
    a mask gets a remark and no annotation. docs/sparsify.md.
  }];
  let options = [
    Option<"metadata", "metadata", "bool", /*default=*/"true",
           "Classify conjuncts over runtime metadata (segment ids, "
           "cu_seqlens); false records them as `element`">
  ];
}

def AttnLowerCpuPass : Pass<"attn-lower-cpu", "::mlir::ModuleOp"> {
  let summary = "Lower cascades to task functions on memrefs for the CPU";
  let description = [{
    Replaces every `attn.cascade` by `func.func @<name>_tasks(%sizes,
    %args..., %begin, %end)` (with `llvm.emit_c_interface`), the function the
    runtime of a generated library calls from its threads (include/attn/
    runtime.h, docs/codegen.md).

    **Tasks.** The task ranks are the dynamic ranks that every result has;
    the row rank is the task rank that indexes none of the operands read
    with the key rank (the queries), split in tiles of `row-tile` rows. A
    task is one value of each task rank and one row tile; %sizes holds the
    size of every declared rank, then one presence flag per argument (an
    absent optional result is not written).

    **Buffers and placement.** Every Einsum gets a buffer over its output
    ranks without the task ranks (the row rank as one tile, always the
    innermost dimension). In a cascade in the 1-pass form of
    `attn-derive-online` (a partition `p -> p1, p0` and Einsums iterating
    `p1`), the Einsums over `p1` run in an `scf.for` over the key tiles; the
    state of an iterative Einsum is kept in two slots (`p1 mod 2` and
    `(p1 + 1) mod 2`), so both the state before and after the step can be
    read. Einsums reading no running value run before the loop, those
    reading a final value (`r[.., |p1|]`) after it. The ragged last key tile
    and the last row tile are bounded by the sizes.

    **Einsums.** A loop nest over the output ranks, then the reduced ranks;
    the map expression becomes arith/math ops on f32 (narrower storage types
    are extended on load and rounded on store), the condition guards the
    point, and empty elements get the `else` value or the reducer's
    identity, as the dialect defines. With `vectorize`, an Einsum whose
    buffer has the row rank runs on vectors of `vector-width` query rows
    (the condition becomes a select), and a sum over one rank of a product
    of two loads, one read along the rows, becomes a register-tiled
    micro-kernel (4 x 4 vectors of `vector.fma`); a tensor read along the
    rows is packed once per task.

    Unsupported (a located error): gathers, top-k, Einsums over a dynamic
    rank that is not a task rank, reductions across tasks.

    **Quantization prologues.** A cascade marked `attn.prologue` (the
    quantization of Q and K that attn-split-quant splits off) has no key
    loop: one task per value of the dynamic ranks every result has (b, h;
    a rank some Einsum reduces, as a per-tensor scale does, is not a task
    rank), each Einsum a scalar float64 loop nest rounded to its type, as
    the interpreter computes it (passes/LowerCPUPrologue.cpp; refused:
    gathers, FP8, partition ranks in its interface).
  }];
  let dependentDialects = ["::mlir::func::FuncDialect",
                           "::mlir::scf::SCFDialect",
                           "::mlir::memref::MemRefDialect",
                           "::mlir::arith::ArithDialect",
                           "::mlir::math::MathDialect",
                           "::mlir::LLVM::LLVMDialect",
                           "::mlir::vector::VectorDialect"];
  let options = [
    Option<"rowTile", "row-tile", "int64_t", /*default=*/"64",
           "Rows of the query rank per task">,
    Option<"vectorWidth", "vector-width", "int64_t", /*default=*/"16",
           "f32 lanes of a vector register (16: AVX-512, 8: AVX2)">,
    Option<"vectorRegisters", "vector-registers", "int64_t", /*default=*/"32",
           "Vector registers of the target (32: AVX-512, 16: AVX2); bounds "
           "the micro-kernel's register tile">,
    Option<"vectorize", "vectorize", "bool", /*default=*/"true",
           "Register-tiled micro-kernels and vector loops (false: scalar)">,
    Option<"bf16Dot", "bf16-dot", "bool", /*default=*/"false",
           "Contractions whose scalar operand is stored in bf16 use AVX512-BF16 "
           "pair dot products (vdpbf16ps; needs vector-width=16): the vector "
           "operand is rounded to bf16, sums stay f32">,
    Option<"vnni", "vnni", "bool", /*default=*/"false",
           "Contractions of two int8 tensors use AVX512-VNNI vpdpbusd (four "
           "int8 products per i32 lane, exact; needs vector-width=16 and a "
           "static reduced extent that is a multiple of 4)">
  ];
}

def AttnReassociatePass : Pass<"attn-reassociate", "::mlir::ModuleOp"> {
  let summary = "Reassociate contractions that rank annotations factor (low-rank bias, linear attention, latent KV)";
  let description = [{
    Rewrites the contractions that an `attn.lowrank` annotation declares
    low-rank, and keeps a rewrite only where it lowers the FLOPs that
    `attn-analyze` counts (CostAnalysis, with the rank sizes of `sizes`
    and 4096 for the others), unless `always` is set. Every decision, taken
    or not, is a remark at the annotated Einsum with both costs. A rewrite
    that cannot apply leaves the cascade unchanged with a remark that says
    why. docs/reassociate.md states each rewrite.

    * `#attn.lowrank<bias, "r">` on `B[m, p] = sum_r U[m, r] W[p, r]`, added
      to a contraction `S[m, p] = sum_e A[m, e] K[p, e]` (FlashBias, Wu et
      al. 2025; ALiBi is the rank-2 bias U = [slope, -slope * m],
      W = [p, 1]): one contraction over the concatenated rank
      `er` (|er| = |e| + |r|, both static), B never formed:

      ```
      %cat_q  = [m, er] = select(er < |e|, A[m, er mod |e|], U[m, (er - |e|) mod |r|])
      %cat_k  = [p, er] = select(er < |e|, K[p, er mod |e|], W[p, (er - |e|) mod |r|])
      %s_bias = [m, p]  = %cat_q[m, er] * %cat_k[p, er] sum(er)
      ```

      Constant factors of S (the softmax scale) go with the query side.
    * `#attn.lowrank<feature_map, "e">` on phi(Q) and phi(K) (any map
      action), read by a score `a[m, p] = sum_e phi(Q)[m, e] phi(K)[p, e]`:
      without a mask every reader `R = sum_p a * G` (G free of m: the
      values, or 1 for the denominator) becomes
      `R_e[e, ..] = sum_p phi(K) G`, `R = sum_e phi(Q) R_e`, which costs
      O(N d^2) instead of O(N^2 d). With the causal mask `p <= m`, the
      queries are cut into chunks `m -> m1, m0 = chunk` and

      ```
      %R_chunk[.., m1]     = sum_m0 phi(K) G  at key m1*C + m0, if (m1*C + m0 < |p|)
      %R_state[.., m1 + 1] = %R_state[.., m1] + %R_chunk[.., m1]        init(0)
      %R_inter[m, ..]      = sum_e phi(Q)[m, e] %R_state[.., e, m floordiv C]
      %a_intra[m, m0]      = sum_e phi(Q) phi(K) at key j = (m floordiv C)*C + m0
                               if (m0 <= m mod C and j < |p|)
      %R_intra[m, ..]      = sum_m0 %a_intra G at key j   (same condition)
      %R                   = %R_inter + %R_intra
      ```

      (a running state across chunks, quadratic inside one).
    * `#attn.lowrank<latent, "r">` on `K = sum_r C[p, r] Wk[r, e]` (MLA):
      every reader `R = sum_s K * Z` becomes `R_r = sum_s Wk * Z`,
      `R = sum_r C * R_r` (the projection absorbed into Q for the scores,
      into the output for V), kept where it is cheaper: for decode
      (|m| = 1) but not for long prefill with |r| > |e|.

    Numerics: the rewrites reorder sums (and the causal form sums a prefix
    state), so results differ from the original by rounding only; in
    float64 (the interpreter) they agree to about 1e-13.
  }];
  let options = [
    Option<"chunk", "chunk", "int64_t", /*default=*/"64",
           "Chunk length of causal linear attention (queries per chunk, at least 2)">,
    Option<"always", "always", "bool", /*default=*/"false",
           "Apply every rewrite that is valid, whatever its cost">,
    ListOption<"sizes", "sizes", "std::string",
               "Rank sizes at which costs are compared (rank=value, e.g. "
               "sizes=m=1,p=8192); others are 4096">
  ];
}

def AttnQuantizePass : Pass<"attn-quantize", "::mlir::ModuleOp"> {
  let summary = "Place quantize/dequantize Einsums from #attn.quant annotations and fold the scales into the score scale";
  let description = [{
    Rewrites a cascade from the quantization annotations on its arguments
    (docs/quantize.md states every rule and its refusals):

    * `#attn.quant<to = i8, granularity = block, block_size = 32, along =
      "m">` on Q and `#attn.quant<to = i8, granularity = block, block_size =
      32, along = "p", smooth = true>` on K (SageAttention, Zhang et al.
      2025): K is smoothed (`kbar = mean_p K`, `ks = K - kbar`), each operand
      gets absmax scales (`qmax`, `sq = qmax / 127`, 1 for an all-zero
      block) per tensor, head, token, block (a partition `m -> m1, m0`) or
      channel, and is quantized (`qi = round(q / sq) : i8`); the scores
      become an exact i32 dot product (`dot`, `acc = i32`) dequantized by
      the product of the scales and the original score factors:
      `qk = dot * sq[..] * sk[..] * 0.125 + qk_smooth`, where `qk_smooth =
      sum_e q * kbar * 0.125` adds the smoothing term back (exact for every
      reader, the LSE too). Per-channel scales of one operand move into the
      other before it is quantized. `to = f8E4M3FN` / `f8E5M2` does the
      same with fp8 values (absmax / 448 or / 57344) and an f32 dot.
    * `#attn.quant<storage = f8E4M3FN, granularity = head, scale =
      "q_descale">` on arguments stored quantized (FlashAttention-3's FP8
      interface): the contraction of two such operands becomes
      `dot = cast(q : f32) * cast(k : f32) sum(e)` (f32 accumulator; i32 for
      stored i8) with the descales folded into the score scale, and every
      other read (PV) is dequantized in place, `cast(v : f32) * v_descale`.

    Whatever cannot be honoured is a located error and the pass fails
    (a quantization is never silently dropped): one operand of a
    contraction quantized alone, i8 with fp8, both operands per channel,
    scales along the contraction rank, smoothing of stored values or of
    both operands, gathers, an accumulator that cannot hold the exact dot
    product, an argument with `to` that no contraction consumes (V).
    Each rewrite is reported as a remark. Lowering the quantized cascades
    to CPU kernels (VNNI) is not done yet.
  }];
  let options = [
    Option<"smooth", "smooth", "bool", /*default=*/"true",
           "Honour smooth = true (false: skip smoothing, an ablation for "
           "accuracy studies)">
  ];
}

def AttnSplitQuantPass : Pass<"attn-split-quant", "::mlir::ModuleOp"> {
  let summary = "Split a quantized cascade into its quantization prologue and the attention kernel (SageAttention's two kernels)";
  let description = [{
    On a cascade that attn-quantize rewrote for quantization on the fly
    (docs/quantize.md): the quantized contractions (`dot = qi * ki sum(e)
    {attn.quant = #attn.quant<acc = i32>}`) read tensors computed from Q and
    K by full reductions (K's mean, absmax scales per block, head or token),
    which no online form of the key loop computes. This pass moves them into
    a cascade of their own, `@<name>_quant` (attribute `attn.prologue`):
    the Einsums the contractions' operands come from, and the terms the
    contractions' readers compute from those (the smoothing term
    `qk_smooth`). Its results are what the rest reads: the quantized
    tensors and the scales, those over a partition rank (block scales)
    written out at the readers' ranks (`sq_m[b, h, m] = sq[b, h, m floordiv
    32]`), the others as they are (GQA: one int8 K per KV head, read at
    `h floordiv 4` by the kernel). `@<name>` keeps every other
    Einsum and takes those values as arguments: the interface of
    SageAttention's kernel (int8 Q and K with their scales), which
    attn-derive-online and attn-lower-cpu handle like any int8 cascade.
    Running the two in sequence computes exactly what the quantized cascade
    computes. A cascade without quantized contractions is left unchanged;
    one whose contractions read only arguments (values stored quantized)
    too, with a remark. A result of the cascade computed by the prologue
    (yielding the int8 K itself) is refused with an error.
  }];
}

def AttnLowerGpuPass : Pass<"attn-lower-gpu", "::mlir::ModuleOp"> {
  let summary = "Lower an MHA-family cascade in the 1-pass form to an sm_80 tensor-core kernel (gpu/nvgpu/nvvm)";
  let description = [{
    Replaces nothing: inserts before every `attn.cascade` a `gpu.module
    @<name>_gpu` with one kernel `@<name>_kernel` (FlashAttention-2 form,
    docs/gpu.md) and marks the module `gpu.container_module`:

    * grid (ceil(|m| / 64), product of the leading task ranks), 128 threads
      (4 warps x 16 query rows); parameters q, k, v, then the results, as
      strided memrefs with a contiguous innermost dimension;
    * K and V tiles of the cascade's key partition (`p -> p1, p0 = T`) in
      shared memory (`workgroup` attributions, rows padded by 8 elements),
      loaded by `nvgpu.device_async_copy` (cp.async, zero-fill past |p|):
      V(j) overlaps S = Q K(j)^T, K(j+1) overlaps the softmax and P V;
    * both products on `mma.sync` m16n8k16 with f32 accumulators (f16:
      `nvgpu.mma.sync`; bf16: `nvvm.mma.sync`), fragments by
      `nvgpu.ldmatrix` (V with `transpose`);
    * the online softmax in registers: masked scores -inf, row max over
      the lane quad (`gpu.shuffle xor`), `exp2` by `ex2.approx.ftz`, the
      correction exp2(m_old - m_new) applied to l and O each tile;
    * key tiles excluded for every row of the block by an affine conjunct
      of the score's condition are not visited (causal stops at the
      diagonal, windows start late).

    Only cascades whose Einsums are the score `Q[.., m, e] * K[.., p, e] *
    c sum(e) [if affine-conjuncts else -inf]` followed by the online
    softmax that attn-derive-online writes are accepted; anything else is
    refused with a located error. `storage=bf16|f16` reads f32-declared
    inputs and `o` as that type (LSE stays f32).
  }];
  let options = [
    Option<"storage", "storage", "std::string", /*default=*/"\"\"",
           "Element type for f32-declared q, k, v and o: bf16 or f16 (empty: as declared)">
  ];
  let dependentDialects = ["::mlir::gpu::GPUDialect", "::mlir::nvgpu::NVGPUDialect",
                           "::mlir::NVVM::NVVMDialect", "::mlir::LLVM::LLVMDialect",
                           "::mlir::scf::SCFDialect", "::mlir::memref::MemRefDialect",
                           "::mlir::vector::VectorDialect", "::mlir::arith::ArithDialect",
                           "::mlir::math::MathDialect"];
}

#endif // ATTN_PASSES_TD
