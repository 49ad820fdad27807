//===- QuantizeTest.cpp - attn-quantize: equivalence and measured accuracy -===//
//
// 1. The cascades that attn-quantize derives from annotations on the plain
//    examples/mha.mlir agree, in the reference interpreter, with the forms
//    written by hand: examples/int8-sage.mlir (INT8 per-block Q/K, K
//    smoothed) and examples/fp8.mlir (FP8 e4m3 with descales).
// 2. Accuracy: the derived INT8 and FP8 cascades, run with every value
//    rounded to its declared type (f32 intermediates, i8 saturating, i32
//    dot products, e4m3), against unquantized softmax attention in float64
//    (examples/mha.mlir in ideal arithmetic). Metrics as in SageAttention
//    (Zhang et al. 2025): cosine similarity and relative L1
//    (sum |o - r| / sum |r|) of O, plus the largest absolute error; they
//    are printed as a table (docs/quantize.md reproduces it).
//
//    The data is SYNTHETIC (no model weights here): Q, K, V ~ N(0, 1), d =
//    64, |m| = 64 queries, |p| = 256 keys, 2 heads; "K offset s" adds to K
//    a per-(b, h, channel) offset drawn from N(0, s^2) and shared by every
//    token, the structure SageAttention reports for real K (a large
//    channel-wise bias common to all tokens). The bars are those the issue
//    cites from SageAttention for INT8 per-block with K smoothing on real
//    layers (cosine ~0.9999, relative L1 ~0.02): cosine >= 0.9998 and
//    relative L1 <= 0.02. With smoothing switched off (the pass option
//    smooth=false, or the annotation without it) the same data must miss
//    the bar: the test fails if smoothing silently stops working.
//
//===----------------------------------------------------------------------===//

#include "HandReference.h"
#include "attn/Interpreter.h"
#include "attn/Passes.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/raw_ostream.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

using namespace mlir;
namespace handref = ::attn::handref;
using mlir::attn::Tensor;

namespace {

std::string readExample(const std::string &name) {
  std::ifstream in(std::string(ATTN_SOURCE_DIR) + "/examples/" + name + ".mlir");
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string replaceOnce(std::string s, const std::string &from,
                        const std::string &to) {
  size_t pos = s.find(from);
  REQUIRE(pos != std::string::npos);
  s.replace(pos, from.size(), to);
  return s;
}

struct Parsed {
  MLIRContext ctx;
  OwningOpRef<ModuleOp> module;
  explicit Parsed(const std::string &text) {
    ctx.loadDialect<mlir::attn::AttnDialect>();
    module = parseSourceString<ModuleOp>(text, &ctx);
    REQUIRE(module);
  }
  mlir::attn::CascadeOp cascade() {
    return *module->getOps<mlir::attn::CascadeOp>().begin();
  }
};

/// examples/mha.mlir with #attn.quant annotations on q and k.
std::string annotatedMha(const std::string &qQuant, const std::string &kQuant) {
  std::string text = readExample("mha");
  text = replaceOnce(text, "%q: !attn.t<[b, h, m, e], f32>",
                     "%q: !attn.t<[b, h, m, e], f32> {attn.quant = #attn.quant<" +
                         qQuant + ">}");
  text = replaceOnce(text, "%k: !attn.t<[b, h, p, e], f32>",
                     "%k: !attn.t<[b, h, p, e], f32> {attn.quant = #attn.quant<" +
                         kQuant + ">}");
  return text;
}

/// Runs attn-quantize on `text`; returns the printed module.
std::string quantize(const std::string &text, bool smooth = true) {
  Parsed p(text);
  PassManager pm(&p.ctx);
  mlir::attn::AttnQuantizePassOptions options;
  options.smooth = smooth;
  pm.addPass(mlir::attn::createAttnQuantizePass(options));
  std::string errors;
  ScopedDiagnosticHandler collect(&p.ctx, [&](Diagnostic &d) {
    if (d.getSeverity() == DiagnosticSeverity::Error)
      errors += d.str() + "\n";
    return success();
  });
  bool ok = succeeded(pm.run(*p.module));
  INFO(errors);
  REQUIRE(ok);
  std::string s;
  llvm::raw_string_ostream os(s);
  p.module->print(os);
  return s;
}

std::vector<Tensor> run(const std::string &text, const std::vector<Tensor> &in,
                        bool roundToTypes) {
  Parsed p(text);
  mlir::attn::InterpretOptions options;
  options.roundToTypes = roundToTypes;
  mlir::attn::InterpretResult r = mlir::attn::interpret(p.cascade(), in, options);
  INFO(r.error);
  REQUIRE(r.ok());
  return r.outputs;
}

Tensor fromDense(const handref::Dense &d) { return {d.shape, d.data}; }

double worstRelative(const std::vector<double> &got,
                     const std::vector<double> &want) {
  REQUIRE(got.size() == want.size());
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    REQUIRE(std::isfinite(got[i]));
    worst = std::max(worst, std::fabs(got[i] - want[i]) /
                                std::max(1.0, std::fabs(want[i])));
  }
  return worst;
}

const char *kSageQ = "to = i8, granularity = block, block_size = 32, along = \"m\"";
const char *kSageK =
    "to = i8, granularity = block, block_size = 32, along = \"p\", smooth = true";

} // namespace

//===----------------------------------------------------------------------===//
// The derived cascades agree with the hand-written ones
//===----------------------------------------------------------------------===//

TEST_CASE("quantize: the derived INT8 cascade agrees with examples/int8-sage.mlir",
          "[quantize]") {
  std::string derived = quantize(annotatedMha(kSageQ, kSageK));
  CHECK_THAT(derived, Catch::Contains("partition(m -> m1, m0 = 32 ragged)"));
  CHECK_THAT(derived, Catch::Contains("{attn.quant = #attn.quant<acc = i32>} : i32"));
  std::string hand = readExample("int8-sage");
  // 45 and 70 are not multiples of the 32-token blocks (ragged last blocks);
  // 1 query and 1 key: blocks of one token.
  for (auto [m, p] : {std::pair<int64_t, int64_t>{45, 70}, {1, 1}, {64, 33}}) {
    INFO("m = " << m << ", p = " << p);
    uint64_t seed = 300 + m + p;
    handref::Dense q = handref::randomTensor({1, 2, m, 64}, seed);
    handref::Dense k = handref::randomTensor({1, 2, p, 64}, seed + 1);
    handref::Dense v = handref::randomTensor({1, 2, p, 64}, seed + 2);
    for (double &x : k.data)
      x += 0.75; // an offset that smoothing removes
    std::vector<Tensor> in{fromDense(q), fromDense(k), fromDense(v)};
    // The added-back smoothing term: delta[b, h, m] = 0.125 sum_e q kbar.
    std::vector<double> delta(2 * m);
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t i = 0; i < m; ++i) {
        double s = 0;
        for (int64_t e = 0; e < 64; ++e) {
          double kbar = 0;
          for (int64_t j = 0; j < p; ++j)
            kbar += k.at({0, h, j, e}) / p;
          s += q.at({0, h, i, e}) * kbar;
        }
        delta[h * m + i] = 0.125 * s;
      }
    for (bool rounded : {false, true}) {
      INFO("values rounded to their types: " << rounded);
      auto got = run(derived, in, rounded), want = run(hand, in, rounded);
      // O is invariant to the per-row shift; the LSE of the hand-written
      // form lacks it (its scores are those of the smoothed K).
      std::vector<double> lse = got[1].data;
      for (size_t i = 0; i < lse.size(); ++i)
        lse[i] -= delta[i];
      double tol = rounded ? 1e-5 : 1e-12;
      CHECK(worstRelative(got[0].data, want[0].data) <= tol);
      CHECK(worstRelative(lse, want[1].data) <= tol);
    }
    // The comparison has teeth: without smoothing the results differ (with
    // one key, attention returns v whatever the scores).
    if (p == 1)
      continue;
    auto unsmoothed = run(quantize(annotatedMha(kSageQ, kSageK), false), in, false);
    CHECK(worstRelative(unsmoothed[0].data, run(hand, in, false)[0].data) > 1e-6);
  }
}

TEST_CASE("quantize: the derived FP8 cascade agrees with examples/fp8.mlir",
          "[quantize]") {
  std::string text = R"(
attn.cascade @fp8 ranks(b, h, m, p, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f8E4M3FN> {attn.quant = #attn.quant<storage = f8E4M3FN, granularity = head, scale = "q_descale">},
     %k: !attn.t<[b, h, p, e], f8E4M3FN> {attn.quant = #attn.quant<storage = f8E4M3FN, granularity = head, scale = "k_descale">},
     %v: !attn.t<[b, h, p, f], f8E4M3FN> {attn.quant = #attn.quant<storage = f8E4M3FN, granularity = head, scale = "v_descale">},
     %q_descale: !attn.t<[b, h], f32>, %k_descale: !attn.t<[b, h], f32>, %v_descale: !attn.t<[b, h], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.125 sum(e) : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}
)";
  std::string derived = quantize(text);
  std::string hand = readExample("fp8");
  for (auto [m, p] : {std::pair<int64_t, int64_t>{113, 113}, {1, 1}, {5, 77}}) {
    INFO("m = " << m << ", p = " << p);
    std::vector<Tensor> in;
    uint64_t seed = 400 + m;
    for (auto shape : {std::vector<int64_t>{1, 2, m, 64}, {1, 2, p, 64}, {1, 2, p, 64}}) {
      handref::Dense d = handref::randomTensor(shape, seed++, -8, 8);
      for (double &x : d.data)
        x = handref::roundToE4M3(x);
      in.push_back(fromDense(d));
    }
    for (int i = 0; i < 3; ++i)
      in.push_back(fromDense(handref::randomTensor({1, 2}, seed++, 0.05, 0.5)));
    for (bool rounded : {false, true}) {
      auto got = run(derived, in, rounded), want = run(hand, in, rounded);
      double tol = rounded ? 1e-6 : 1e-12;
      CHECK(worstRelative(got[0].data, want[0].data) <= tol);
      CHECK(worstRelative(got[1].data, want[1].data) <= tol);
    }
  }
}

//===----------------------------------------------------------------------===//
// Accuracy against unquantized float64 attention
//===----------------------------------------------------------------------===//

namespace {

struct Metrics {
  double cosine = 0, relL1 = 0, maxAbs = 0;
};

Metrics measure(const std::vector<double> &got, const std::vector<double> &ref) {
  REQUIRE(got.size() == ref.size());
  double dot = 0, gg = 0, rr = 0, diff = 0, norm = 0;
  Metrics out;
  for (size_t i = 0; i < got.size(); ++i) {
    REQUIRE(std::isfinite(got[i]));
    dot += got[i] * ref[i];
    gg += got[i] * got[i];
    rr += ref[i] * ref[i];
    diff += std::fabs(got[i] - ref[i]);
    norm += std::fabs(ref[i]);
    out.maxAbs = std::max(out.maxAbs, std::fabs(got[i] - ref[i]));
  }
  out.cosine = dot / std::sqrt(gg * rr);
  out.relL1 = diff / norm;
  return out;
}

/// SageAttention's figures for INT8 per-block Q, K with K smoothing on real
/// layers (cosine ~0.9999, relative L1 ~0.02), as bars.
bool meetsSageBar(const Metrics &x) {
  return x.cosine >= 0.9998 && x.relL1 <= 0.02;
}

/// Synthetic Q, K, V ~ N(0, 1) [1, 2, |m|, 64]; K plus a per-(head,
/// channel) offset ~ N(0, offset^2) shared by all tokens.
std::vector<Tensor> syntheticInputs(double offset, int64_t m = 64,
                                    int64_t p = 256, uint64_t seed = 7) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  auto tensor = [&](std::vector<int64_t> shape) {
    Tensor t{shape, {}};
    t.data.resize(t.numElements());
    for (double &x : t.data)
      x = normal(rng);
    return t;
  };
  Tensor q = tensor({1, 2, m, 64}), k = tensor({1, 2, p, 64}),
         v = tensor({1, 2, p, 64});
  for (int64_t h = 0; h < 2; ++h)
    for (int64_t e = 0; e < 64; ++e) {
      double off = offset * normal(rng);
      for (int64_t j = 0; j < p; ++j)
        k.data[(h * p + j) * 64 + e] += off;
    }
  return {q, k, v};
}

std::string kAnnotation(const std::string &gran, bool smooth) {
  std::string s = "to = i8, granularity = " + gran;
  if (gran == "block")
    s += ", block_size = 32";
  if (gran == "block" || smooth)
    s += ", along = \"p\"";
  if (smooth)
    s += ", smooth = true";
  return s;
}

std::string qAnnotation(const std::string &gran, const std::string &to = "i8") {
  std::string s = "to = " + to + ", granularity = " + gran;
  if (gran == "block")
    s += ", block_size = 32, along = \"m\"";
  return s;
}

Metrics measureDerived(const std::string &annotated, double offset,
                       bool smoothOption, const std::string &label) {
  std::vector<Tensor> in = syntheticInputs(offset);
  static std::map<double, std::vector<Tensor>> refs;
  if (!refs.count(offset))
    refs[offset] = run(readExample("mha"), in, /*roundToTypes=*/false);
  const std::vector<Tensor> &ref = refs[offset];
  auto got = run(quantize(annotated, smoothOption), in, /*roundToTypes=*/true);
  Metrics x = measure(got[0].data, ref[0].data);
  std::printf("quantize accuracy | %-50s | K offset %2.0f | cos %.6f | rel L1 "
              "%.4f | max abs %.4f\n",
              label.c_str(), offset, x.cosine, x.relL1, x.maxAbs);
  return x;
}

} // namespace

TEST_CASE("quantize: INT8 accuracy against float64 attention (SageAttention bar)",
          "[quantize]") {
  // Every granularity of Q and K, K smoothed, on K with a large channel
  // offset. (Smoothing removes a token-shared offset exactly: the smoothed
  // results are the same for every offset, 0 included.)
  for (std::string gran : {"block", "head", "tensor"}) {
    Metrics x = measureDerived(annotatedMha(qAnnotation(gran), kAnnotation(gran, true)),
                               8.0, true,
                               "int8 Q,K per " + gran + (gran == "block" ? " (32)" : "") +
                                   ", K smoothed");
    INFO(gran << ": cos " << x.cosine << ", rel L1 " << x.relL1);
    CHECK(meetsSageBar(x));
    CHECK(x.maxAbs <= 0.05);
  }
  // Per-token Q (SageAttention's other variant) and per-channel Q (its
  // scales moved into K) with per-block smoothed K.
  for (std::string gran : {"token", "channel"}) {
    Metrics x = measureDerived(annotatedMha(qAnnotation(gran), kAnnotation("block", true)),
                               8.0, true, "int8 Q per " + gran + ", K per block (32), smoothed");
    CHECK(meetsSageBar(x));
  }
  // Without an offset, smoothing is not needed.
  Metrics plain = measureDerived(annotatedMha(qAnnotation("block"), kAnnotation("block", false)),
                                 0.0, true, "int8 Q,K per block (32), not smoothed");
  CHECK(meetsSageBar(plain));
}

TEST_CASE("quantize: without K smoothing, offset K misses the bar",
          "[quantize]") {
  // The annotation asks for smoothing; the pass option smooth=false
  // switches it off (an ablation). On K with a large channel offset, every
  // granularity then misses SageAttention's bar (while the smoothed forms
  // meet it, test above), so the accuracy test fails if smoothing stops
  // working.
  for (std::string gran : {"block", "head", "tensor"}) {
    std::string annotated = annotatedMha(qAnnotation(gran), kAnnotation(gran, true));
    Metrics off = measureDerived(annotated, 8.0, false,
                                 "int8 Q,K per " + gran + (gran == "block" ? " (32)" : "") +
                                     ", smoothing switched off");
    INFO(gran << ": unsmoothed cos " << off.cosine << " rel L1 " << off.relL1);
    CHECK_FALSE(meetsSageBar(off));
    CHECK(off.relL1 > 0.03);
  }
  // The same without the annotation asking for it.
  Metrics plain = measureDerived(annotatedMha(qAnnotation("block"), kAnnotation("block", false)),
                                 8.0, true, "int8 Q,K per block (32), not smoothed");
  CHECK_FALSE(meetsSageBar(plain));
}

TEST_CASE("quantize: FP8 accuracy against float64 attention", "[quantize]") {
  // e4m3 on the fly (3 mantissa bits): per token / per block scales, f32
  // dot product. e4m3 is coarser than int8 within a block (relative step
  // 2^-4 against 1/127 of the block's absmax at the top of the range), and
  // without smoothing a K offset costs much more than with int8.
  auto fp8 = [&](bool smooth) {
    std::string text = annotatedMha(
        qAnnotation("token", "f8E4M3FN"),
        std::string("to = f8E4M3FN, granularity = block, block_size = 64, along = \"p\"") +
            (smooth ? ", smooth = true" : ""));
    return replaceOnce(text, "sum(e) : f32",
                       "sum(e) {attn.quant = #attn.quant<acc = f32>} : f32");
  };
  Metrics plain = measureDerived(fp8(false), 0.0, true,
                                 "fp8 e4m3 Q per token, K per block (64)");
  Metrics offset = measureDerived(fp8(false), 8.0, true,
                                  "fp8 e4m3 Q per token, K per block (64)");
  Metrics smoothed = measureDerived(fp8(true), 8.0, true,
                                    "fp8 e4m3 Q per token, K per block, smoothed");
  CHECK(plain.cosine >= 0.999);
  CHECK(smoothed.cosine >= 0.999);
  CHECK(offset.cosine < 0.999);
}

TEST_CASE("quantize: causal and GQA cascades keep their masks and head mapping",
          "[quantize]") {
  // The mask stays on the dequantized scores (and restricts the dot
  // product); K's scales and mean are read at h floordiv 4 under GQA. The
  // derived cascades stay within the INT8 bar of their float64 originals
  // (uniform data in [-1, 1), K offset 4 per channel, 113 queries and keys:
  // ragged blocks, a first row with a single key).
  struct Case {
    std::string example, kShape;
    int64_t heads, kvHeads;
  };
  for (const Case &c : {Case{"causal", "%k: !attn.t<[b, h, p, e], f32>", 2, 2},
                        Case{"gqa", "%k: !attn.t<[b, g, p, e], f32>", 4, 1}}) {
    INFO(c.example);
    std::string text = readExample(c.example);
    text = replaceOnce(text, "%q: !attn.t<[b, h, m, e], f32>",
                       "%q: !attn.t<[b, h, m, e], f32> {attn.quant = #attn.quant<" +
                           qAnnotation("block") + ">}");
    std::string kGran = c.example == "gqa" ? "head" : "block";
    text = replaceOnce(text, c.kShape,
                       c.kShape + " {attn.quant = #attn.quant<" +
                           kAnnotation(kGran, true) + ">}");
    std::string derived = quantize(text);
    if (c.example == "causal")
      CHECK_THAT(derived, Catch::Contains("sum(e) if (p <= m) {attn.quant"));
    else
      CHECK_THAT(derived, Catch::Contains("%sk[b, h floordiv 4]"));
    handref::Dense q = handref::randomTensor({1, c.heads, 113, 64}, 501);
    handref::Dense k = handref::randomTensor({1, c.kvHeads, 113, 64}, 502);
    handref::Dense v = handref::randomTensor({1, c.kvHeads, 113, 64}, 503);
    handref::Dense off = handref::randomTensor({c.kvHeads, 64}, 504, -4, 4);
    for (int64_t g = 0; g < c.kvHeads; ++g)
      for (int64_t j = 0; j < 113; ++j)
        for (int64_t e = 0; e < 64; ++e)
          k.at({0, g, j, e}) += off.at({g, e});
    std::vector<Tensor> in{fromDense(q), fromDense(k), fromDense(v)};
    auto ref = run(readExample(c.example), in, false);
    auto got = run(derived, in, true);
    Metrics o = measure(got[0].data, ref[0].data);
    INFO("cos " << o.cosine << ", rel L1 " << o.relL1);
    CHECK(meetsSageBar(o));
    // The LSE is that of the unquantized scores (smoothing term added back).
    double worstLse = 0;
    for (size_t i = 0; i < ref[1].data.size(); ++i)
      worstLse = std::max(worstLse, std::fabs(got[1].data[i] - ref[1].data[i]));
    INFO("worst LSE error " << worstLse);
    CHECK(worstLse <= 0.05);
  }
}
