//===- InterpreterTest.cpp - the interpreter against hand references -------===//
//
// This file checks the reference interpreter on the example cascades against
// independent, hand-written float64 loops (HandReference.cpp), and checks
// that the hand-written 1-pass cascade equals the plain 3-pass one.
//
//===----------------------------------------------------------------------===//

#include "HandReference.h"
#include "attn/Interpreter.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <string>
#include <utility>

using namespace mlir;
using ::attn::handref::Dense;
namespace handref = ::attn::handref;

namespace {

/// Parses examples/<name>.mlir and returns its first cascade.
struct Example {
  MLIRContext ctx;
  OwningOpRef<ModuleOp> module;
  mlir::attn::CascadeOp cascade;

  explicit Example(const std::string &name) {
    ctx.loadDialect<mlir::attn::AttnDialect>();
    module = parseSourceFile<ModuleOp>(
        std::string(ATTN_SOURCE_DIR) + "/examples/" + name + ".mlir", &ctx);
    REQUIRE(module);
    cascade = *module->getOps<mlir::attn::CascadeOp>().begin();
  }

  /// Runs the cascade in ideal float64 on `inputs` (integer metadata as
  /// integral doubles); `sizes` gives ranks that no input implies.
  std::vector<mlir::attn::Tensor>
  run(const std::vector<Dense> &inputs, bool exactTypes = false,
      const std::vector<std::pair<std::string, int64_t>> &sizes = {}) {
    std::vector<mlir::attn::Tensor> tensors;
    for (const Dense &d : inputs)
      tensors.push_back({d.shape, d.data});
    mlir::attn::InterpretOptions options;
    options.roundToTypes = exactTypes;
    for (const auto &[rank, size] : sizes)
      options.sizes[rank] = size;
    mlir::attn::InterpretResult result =
        mlir::attn::interpret(cascade, tensors, options);
    INFO(result.error);
    REQUIRE(result.ok());
    return result.outputs;
  }
};

/// |a - b| <= tol * max(1, |b|) elementwise; infinities must match exactly.
void requireClose(const std::vector<double> &got,
                  const std::vector<double> &want, double tol = 1e-12) {
  REQUIRE(got.size() == want.size());
  double worst = 0;
  size_t worstAt = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    REQUIRE_FALSE(std::isnan(got[i]));
    if (std::isinf(want[i])) {
      REQUIRE(got[i] == want[i]);
      continue;
    }
    double err = std::fabs(got[i] - want[i]) / std::max(1.0, std::fabs(want[i]));
    if (err > worst) {
      worst = err;
      worstAt = i;
    }
  }
  INFO("worst relative error " << worst << " at " << worstAt << ": got "
                               << got[worstAt] << " want " << want[worstAt]);
  REQUIRE(worst <= tol);
}

/// Inputs [B,H,M,E], [B,G,P,E], [B,G,P,F] with e = f = 64.
std::vector<Dense> qkv(int64_t b, int64_t h, int64_t g, int64_t m, int64_t p,
                       uint64_t seed, double amplitude = 1.0) {
  return {handref::randomTensor({b, h, m, 64}, seed, -amplitude, amplitude),
          handref::randomTensor({b, g, p, 64}, seed + 1, -amplitude, amplitude),
          handref::randomTensor({b, g, p, 64}, seed + 2)};
}

void checkSoftmax(const std::string &example, const std::vector<Dense> &in,
                  handref::SoftmaxOptions opt) {
  Example ex(example);
  auto out = ex.run(in);
  opt.scale = 0.125;
  handref::AttnOut want = handref::softmaxAttention(in[0], in[1], in[2], opt);
  requireClose(out[0].data, want.o.data);
  requireClose(out[1].data, want.lse.data);
}

/// Outputs o and lse of a cascade against a reference.
void requireSame(const std::vector<mlir::attn::Tensor> &out,
                 const handref::AttnOut &want) {
  REQUIRE(out.size() >= 2);
  REQUIRE(out[0].shape == want.o.shape);
  REQUIRE(out[1].shape == want.lse.shape);
  requireClose(out[0].data, want.o.data);
  requireClose(out[1].data, want.lse.data);
}

/// An integer tensor (runtime metadata) of `shape` holding `values`.
Dense ints(std::vector<int64_t> shape, const std::vector<int64_t> &values) {
  Dense t = handref::zeros(std::move(shape));
  REQUIRE(t.data.size() == values.size());
  for (size_t i = 0; i < values.size(); ++i)
    t.data[i] = static_cast<double>(values[i]);
  return t;
}

/// Number of -inf entries (rows without keys) of an LSE.
int64_t emptyRows(const Dense &lse) {
  int64_t n = 0;
  for (double x : lse.data)
    n += x == -INFINITY;
  return n;
}

} // namespace

TEST_CASE("interpreter: MHA with LSE", "[interpreter]") {
  checkSoftmax("mha", qkv(2, 3, 3, 17, 29, 1), {});
}

TEST_CASE("interpreter: causal, top-left and bottom-right", "[interpreter]") {
  handref::SoftmaxOptions tl;
  tl.mask = handref::Mask::CausalTopLeft;
  checkSoftmax("causal", qkv(1, 2, 2, 23, 23, 2), tl);
  checkSoftmax("causal", qkv(1, 2, 2, 31, 12, 3), tl); // |m| > |p|
  handref::SoftmaxOptions br;
  br.mask = handref::Mask::CausalBottomRight;
  checkSoftmax("causal-bottom-right", qkv(1, 2, 2, 9, 40, 4), br);
  // |m| > |p|: the first 19 query rows see no key (O = 0, LSE = -inf).
  checkSoftmax("causal-bottom-right", qkv(1, 2, 2, 30, 11, 5), br);
}

TEST_CASE("interpreter: sliding window", "[interpreter]") {
  handref::SoftmaxOptions opt;
  opt.mask = handref::Mask::SlidingWindow;
  opt.windowLeft = 32;
  checkSoftmax("sliding-window", qkv(1, 2, 2, 70, 70, 6), opt);
}

TEST_CASE("interpreter: GQA and MQA", "[interpreter]") {
  checkSoftmax("gqa", qkv(1, 8, 2, 13, 21, 7), {});
  checkSoftmax("gqa", qkv(2, 4, 1, 5, 9, 8), {}); // MQA: one KV head
}

TEST_CASE("interpreter: ALiBi", "[interpreter]") {
  handref::SoftmaxOptions opt;
  opt.mask = handref::Mask::CausalTopLeft;
  opt.alibi = true;
  checkSoftmax("alibi", qkv(1, 4, 4, 19, 19, 9), opt);
}

TEST_CASE("interpreter: softcap", "[interpreter]") {
  handref::SoftmaxOptions opt;
  opt.softcap = 30;
  // Large inputs so that the scores reach the tanh's saturation.
  checkSoftmax("softcap", qkv(1, 2, 2, 11, 14, 10, /*amplitude=*/8.0), opt);
}

TEST_CASE("interpreter: top-k", "[interpreter]") {
  handref::SoftmaxOptions opt;
  opt.topk = 8;
  checkSoftmax("topk", qkv(1, 2, 2, 7, 33, 11), opt);
}

TEST_CASE("interpreter: linear attention, causal and not", "[interpreter]") {
  auto in = qkv(1, 2, 2, 15, 15, 12);
  for (bool causal : {false, true}) {
    Example ex(causal ? "linear-causal" : "linear");
    auto out = ex.run(in);
    requireClose(out[0].data,
                 handref::linearAttention(in[0], in[1], in[2], causal).data);
  }
}

TEST_CASE("interpreter: INT8 QK with per-block scales and K smoothing",
          "[interpreter]") {
  // 45 and 70 are not multiples of the 32-token blocks: ragged last blocks.
  auto in = qkv(1, 2, 2, 45, 70, 13);
  // A K offset that smoothing removes.
  for (double &x : in[1].data)
    x += 0.75;
  Example ex("int8-sage");
  auto out = ex.run(in);
  handref::Int8Options opt;
  opt.scale = 0.125;
  handref::AttnOut want = handref::int8Attention(in[0], in[1], in[2], opt);
  requireClose(out[0].data, want.o.data);
  requireClose(out[1].data, want.lse.data);
}

TEST_CASE("interpreter: the hand-written 1-pass cascade equals the plain one",
          "[interpreter]") {
  Example plain("mha"), flash("flash-1pass");
  struct Case {
    int64_t m, p;
    double amplitude;
  };
  // Lengths 1, 64 (one full tile), 113 and 200 (ragged last tile), and
  // large logits (|s| up to ~5e3).
  for (Case c : {Case{3, 1, 1.0}, Case{5, 64, 1.0}, Case{7, 113, 1.0},
                 Case{4, 200, 25.0}}) {
    auto in = qkv(1, 2, 2, c.m, c.p, 14 + c.p, c.amplitude);
    auto want = plain.run(in);
    auto got = flash.run(in);
    requireClose(got[0].data, want[0].data);
    requireClose(got[1].data, want[1].data);
  }
}

TEST_CASE("interpreter: values are rounded to their element types",
          "[interpreter]") {
  MLIRContext ctx;
  ctx.loadDialect<mlir::attn::AttnDialect>();
  Float32Type f32 = Float32Type::get(&ctx);
  BFloat16Type bf16 = BFloat16Type::get(&ctx);
  IntegerType i8 = IntegerType::get(&ctx, 8);
  CHECK(mlir::attn::roundToType(1.0 / 3.0, f32) == (double)(1.0f / 3.0f));
  CHECK(mlir::attn::roundToType(1.00390625, bf16) == 1.0); // tie to even
  CHECK(mlir::attn::roundToType(1.01171875, bf16) == 1.015625);
  CHECK(mlir::attn::roundToType(2.5, i8) == 2.0);
  CHECK(mlir::attn::roundToType(-300.0, i8) == -128.0);
  CHECK(std::isinf(mlir::attn::roundToType(-INFINITY, bf16)));
}

TEST_CASE("interpreter: errors are reported, not thrown", "[interpreter]") {
  Example ex("gqa");
  // h = 6 is not a multiple of the 4 query heads per KV head.
  auto in = qkv(1, 6, 2, 3, 3, 20);
  std::vector<mlir::attn::Tensor> tensors;
  for (const Dense &d : in)
    tensors.push_back({d.shape, d.data});
  mlir::attn::InterpretResult r = mlir::attn::interpret(ex.cascade, tensors);
  CHECK_FALSE(r.ok());
  CHECK_THAT(r.error, Catch::Contains("relation h = 4 * g"));
  r = mlir::attn::interpret(ex.cascade, {});
  CHECK_THAT(r.error, Catch::Contains("takes 3 inputs"));
}

//===----------------------------------------------------------------------===//
// Variants with runtime metadata, biases, other layouts, FP8 and backward
//===----------------------------------------------------------------------===//

namespace {

/// `n` pseudo-random integers in [0, bound).
std::vector<int64_t> randomInts(size_t n, int64_t bound, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int64_t> out(n);
  for (int64_t &x : out)
    x = static_cast<int64_t>(rng() % static_cast<uint64_t>(bound));
  return out;
}

} // namespace

TEST_CASE("interpreter: prefix-LM", "[interpreter]") {
  Example ex("prefix-lm");
  struct Case {
    int64_t b, m, p;
    std::vector<int64_t> prefix;
  };
  // Prefix 0 (causal), inside the sequence, past its end (full); |m| != |p|;
  // length 1.
  for (const Case &c : {Case{3, 113, 113, {0, 40, 200}}, Case{2, 37, 50, {45, 7}},
                        Case{2, 50, 37, {0, 20}}, Case{1, 1, 1, {0}}}) {
    auto in = qkv(c.b, 2, 2, c.m, c.p, 30 + c.m);
    in.push_back(ints({c.b}, c.prefix));
    requireSame(ex.run(in),
                handref::prefixLMAttention(in[0], in[1], in[2], c.prefix, 0.125));
  }
}

TEST_CASE("interpreter: document mask", "[interpreter]") {
  Example ex("document-mask");
  struct Case {
    int64_t m, p;
  };
  for (Case c : {Case{113, 113}, Case{37, 50}, Case{1, 1}}) {
    INFO("m = " << c.m << ", p = " << c.p);
    auto in = qkv(2, 2, 2, c.m, c.p, 40 + c.m);
    // Batch 0: contiguous documents of 30 tokens, the last 3 queries are
    // padding (id -1, which no key has: empty rows). Batch 1: random ids.
    std::vector<std::vector<int64_t>> segQ(2), segK(2);
    for (int64_t m = 0; m < c.m; ++m)
      segQ[0].push_back(m >= c.m - 3 && c.m > 3 ? -1 : m / 30);
    for (int64_t p = 0; p < c.p; ++p)
      segK[0].push_back(p / 30);
    segQ[1] = randomInts(c.m, 3, 41);
    segK[1] = randomInts(c.p, 4, 42);
    std::vector<int64_t> flatQ = segQ[0], flatK = segK[0];
    flatQ.insert(flatQ.end(), segQ[1].begin(), segQ[1].end());
    flatK.insert(flatK.end(), segK[1].begin(), segK[1].end());
    in.push_back(ints({2, c.m}, flatQ));
    in.push_back(ints({2, c.p}, flatK));
    handref::AttnOut want =
        handref::documentMaskAttention(in[0], in[1], in[2], segQ, segK, 0.125);
    if (c.m > 3)
      CHECK(emptyRows(want.lse) >= 2 * 3); // the padding rows of both heads
    requireSame(ex.run(in), want);
  }
}

TEST_CASE("interpreter: varlen (cu_seqlens)", "[interpreter]") {
  Example ex("varlen");
  struct Case {
    int64_t m, p;
    std::vector<int64_t> cuQ, cuK;
  };
  // Sequences of (50, 40), (30, 0: queries without keys), (0, 30: keys
  // without queries), (33, 30); 7 query and 13 key tokens of padding after
  // them. Then a single sequence of one token, and one of 113.
  for (const Case &c : {Case{120, 113, {0, 50, 80, 80, 113}, {0, 40, 40, 70, 100}},
                        Case{1, 1, {0, 1}, {0, 1}},
                        Case{113, 113, {0, 113}, {0, 113}}}) {
    Dense q = handref::randomTensor({c.m, 3, 64}, 50 + c.m);
    Dense k = handref::randomTensor({c.p, 3, 64}, 51 + c.m);
    Dense v = handref::randomTensor({c.p, 3, 64}, 52 + c.m);
    int64_t n = static_cast<int64_t>(c.cuQ.size());
    auto out = ex.run({q, k, v, ints({n}, c.cuQ), ints({n}, c.cuK)});
    handref::AttnOut want = handref::varlenAttention(q, k, v, c.cuQ, c.cuK, 0.125);
    if (c.m == 120)
      CHECK(emptyRows(want.lse) == 3 * (30 + 7));
    requireSame(out, want);
  }
}

TEST_CASE("interpreter: paged KV cache (shuffled, shared pages)",
          "[interpreter]") {
  Example ex("paged-kv");
  // 20 pages of 16 tokens, 2 KV heads, 8 query heads. Sequence 0 (113 tokens)
  // is spread over 8 shuffled pages; sequence 1 (50 tokens) shares its first
  // two pages (a common prompt of 32 tokens) and has two pages of its own;
  // sequence 2 has 3 tokens; sequence 3 is an idle slot (length 0). Unused
  // table entries are -1.
  const std::vector<int64_t> table = {5, 17, 3,  9,  0,  11, 2,  14,
                                      5, 17, 6,  1,  -1, -1, -1, -1,
                                      8, -1, -1, -1, -1, -1, -1, -1,
                                      -1, -1, -1, -1, -1, -1, -1, -1};
  const std::vector<int64_t> lens = {113, 50, 3, 0};
  std::vector<std::vector<int64_t>> rows;
  for (int64_t b = 0; b < 4; ++b)
    rows.emplace_back(table.begin() + 8 * b, table.begin() + 8 * (b + 1));
  Dense kCache = handref::randomTensor({20, 16, 2, 64}, 61);
  Dense vCache = handref::randomTensor({20, 16, 2, 64}, 62);
  // Decode (1 query), a chunk of 5, and a chunk of 40 (the sequences of 3
  // and 0 tokens then have rows without keys). |p| = 113 is not a multiple
  // of the page size: the last page of sequence 0 is partly used.
  for (int64_t m : {1, 5, 40}) {
    INFO("m = " << m);
    Dense q = handref::randomTensor({4, 8, m, 64}, 63 + m);
    auto out = ex.run({q, kCache, vCache, ints({4, 8}, table), ints({4}, lens)},
                      false, {{"p", 113}});
    handref::AttnOut want = handref::pagedAttention(q, kCache, vCache, rows, lens, 0.125);
    CHECK(emptyRows(want.lse) >= 8 * m); // at least the idle slot
    requireSame(out, want);
  }
  // |p| = 1: one page column, sequences of 1 and 0 tokens.
  Dense q = handref::randomTensor({2, 8, 2, 64}, 70);
  auto out = ex.run({q, kCache, vCache, ints({2, 1}, {13, -1}), ints({2}, {1, 0})},
                    false, {{"p", 1}});
  requireSame(out, handref::pagedAttention(q, kCache, vCache, {{13}, {-1}}, {1, 0}, 0.125));
}

TEST_CASE("interpreter: sparse attention over given key indices",
          "[interpreter]") {
  // examples/sparse-indices.mlir against a float64 loop that attends each
  // query to the keys its list names: |l| = 5 lists over |p| = 9 keys with
  // a repeated key (counted twice) and a list naming one key only.
  Example ex("sparse-indices");
  const int64_t B = 1, H = 2, M = 3, L = 5, P = 9, D = 64;
  Dense q = handref::randomTensor({B, H, M, D}, 81);
  Dense k = handref::randomTensor({B, H, P, D}, 82);
  Dense v = handref::randomTensor({B, H, P, D}, 83);
  std::vector<int64_t> idx = {0, 8, 3, 3, 5,  4, 4, 4, 4, 4,  8, 7, 6, 1, 2,
                              1, 2, 3, 4, 5,  0, 0, 0, 0, 0,  6, 8, 6, 8, 7};
  auto out = ex.run({q, k, v, ints({B, H, M, L}, idx)});
  Dense o = handref::zeros({B, H, M, D}), lse = handref::zeros({B, H, M});
  for (int64_t h = 0; h < H; ++h)
    for (int64_t m = 0; m < M; ++m) {
      std::vector<double> s(L);
      double mx = -INFINITY;
      for (int64_t l = 0; l < L; ++l) {
        int64_t key = idx[(h * M + m) * L + l];
        s[l] = 0;
        for (int64_t e = 0; e < D; ++e)
          s[l] += q.at({0, h, m, e}) * k.at({0, h, key, e});
        s[l] *= 0.125;
        mx = std::max(mx, s[l]);
      }
      double sum = 0;
      for (double &x : s)
        sum += (x = std::exp(x - mx));
      for (int64_t f = 0; f < D; ++f) {
        double acc = 0;
        for (int64_t l = 0; l < L; ++l)
          acc += s[l] * v.at({0, h, idx[(h * M + m) * L + l], f});
        o.at({0, h, m, f}) = acc / sum;
      }
      lse.at({0, h, m}) = mx + std::log(sum);
    }
  requireClose(out[0].data, o.data);
  requireClose(out[1].data, lse.data);
}

TEST_CASE("interpreter: T5 relative position bias", "[interpreter]") {
  Example ex("relative-position-bias");
  struct Case {
    int64_t m, p;
  };
  // Distances up to 112 (every bucket below 15), and up to 299 (clipped).
  for (Case c : {Case{113, 113}, Case{1, 300}, Case{200, 7}, Case{1, 1}}) {
    INFO("m = " << c.m << ", p = " << c.p);
    auto in = qkv(1, 2, 2, c.m, c.p, 80 + c.m);
    in.push_back(handref::randomTensor({2, 32}, 81, -3, 3));
    requireSame(ex.run(in), handref::relativePositionBiasAttention(
                                in[0], in[1], in[2], in[3], 0.125));
  }
}

TEST_CASE("interpreter: decode with GQA (the split-KV input)", "[interpreter]") {
  Example ex("decode-split-kv");
  struct Case {
    int64_t b, h, g, m, p;
  };
  // Decode against 300 keys; one key; MQA (one KV head); |m| > |p| (rows
  // without keys); a chunk of 13 queries against 113 keys.
  for (Case c : {Case{2, 16, 2, 1, 300}, Case{1, 8, 1, 1, 1}, Case{1, 8, 1, 1, 77},
                 Case{1, 16, 2, 4, 2}, Case{1, 8, 1, 13, 113}}) {
    INFO("h = " << c.h << ", m = " << c.m << ", p = " << c.p);
    std::vector<Dense> in = {
        handref::randomTensor({c.b, c.h, c.m, 128}, 90 + c.p),
        handref::randomTensor({c.b, c.g, c.p, 128}, 91 + c.p),
        handref::randomTensor({c.b, c.g, c.p, 128}, 92 + c.p)};
    handref::SoftmaxOptions opt;
    opt.scale = 1.0 / std::sqrt(128.0);
    opt.mask = handref::Mask::CausalBottomRight;
    handref::AttnOut want = handref::softmaxAttention(in[0], in[1], in[2], opt);
    if (c.m > c.p)
      CHECK(emptyRows(want.lse) == c.b * c.h * (c.m - c.p));
    requireSame(ex.run(in), want);
  }
}

TEST_CASE("interpreter: shared prefix equals attention over the concatenation",
          "[interpreter]") {
  Example ex("shared-prefix");
  struct Case {
    int64_t b, m, s, p;
    double amplitude = 1; // of q and the suffix keys
  };
  // The last case has suffix scores thousands above the prefix's: the max
  // must run over both key sets, or exp overflows.
  for (Case c : {Case{2, 1, 113, 1}, Case{2, 5, 40, 17}, Case{1, 113, 1, 113},
                 Case{1, 7, 3, 2}, Case{1, 3, 20, 9, 80.0}}) {
    INFO("m = " << c.m << ", s = " << c.s << ", p = " << c.p);
    const int64_t H = 2;
    const double a = c.amplitude;
    Dense q = handref::randomTensor({c.b, H, c.m, 64}, 100 + c.m, -a, a);
    Dense kp = handref::randomTensor({H, c.s, 64}, 101 + c.s);
    Dense vp = handref::randomTensor({H, c.s, 64}, 102 + c.s);
    Dense ks = handref::randomTensor({c.b, H, c.p, 64}, 103 + c.p, -a, a);
    Dense vs = handref::randomTensor({c.b, H, c.p, 64}, 104 + c.p);
    // K/V of every sequence: the prefix, then its suffix.
    Dense k = handref::zeros({c.b, H, c.s + c.p, 64}), v = k;
    for (int64_t b = 0; b < c.b; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t j = 0; j < c.s + c.p; ++j)
          for (int64_t e = 0; e < 64; ++e) {
            k.at({b, h, j, e}) = j < c.s ? kp.at({h, j, e}) : ks.at({b, h, j - c.s, e});
            v.at({b, h, j, e}) = j < c.s ? vp.at({h, j, e}) : vs.at({b, h, j - c.s, e});
          }
    handref::SoftmaxOptions opt;
    opt.scale = 0.125;
    if (c.m <= c.p) {
      // The queries are the last tokens of prefix + suffix: plain causal
      // (bottom-right) attention over the concatenation.
      opt.mask = handref::Mask::CausalBottomRight;
    } else {
      // More queries than suffix tokens: the prefix stays fully visible.
      opt.keep = [&](int64_t, int64_t, int64_t m, int64_t j) {
        return j < c.s || j - c.s <= m + c.p - c.m;
      };
    }
    requireSame(ex.run({q, kp, vp, ks, vs}),
                handref::softmaxAttention(q, k, v, opt));
  }
}

TEST_CASE("interpreter: low-rank bias", "[interpreter]") {
  Example ex("lowrank-bias");
  struct Case {
    int64_t b, m, p;
  };
  for (Case c : {Case{1, 113, 113}, Case{2, 1, 1}, Case{1, 17, 50}}) {
    auto in = qkv(c.b, 2, 2, c.m, c.p, 110 + c.m);
    in.push_back(handref::randomTensor({c.b, 2, c.m, 16}, 111 + c.p));
    in.push_back(handref::randomTensor({c.b, 2, c.p, 16}, 112 + c.p));
    requireSame(ex.run(in), handref::lowRankBiasAttention(in[0], in[1], in[2],
                                                          in[3], in[4], 0.125));
  }
}

TEST_CASE("interpreter: block-sparse CSR layout", "[interpreter]") {
  Example ex("block-sparse");
  struct Case {
    int64_t b, h, m, p;
  };
  // 113 queries: 4 blocks of 32 (the last ragged); 150 keys: 5 blocks.
  for (Case c : {Case{1, 2, 113, 150}, Case{2, 1, 64, 33}, Case{1, 1, 1, 1}}) {
    INFO("m = " << c.m << ", p = " << c.p);
    const int64_t rows = (c.m + 31) / 32, cols = (c.p + 31) / 32;
    // A random list per (b, h, query block): each key block with
    // probability 1/2, some twice, in random order; query block 1 of
    // (0, 0) lists nothing.
    std::mt19937_64 rng(120 + c.m);
    std::vector<std::vector<int64_t>> offsets, lists;
    size_t longest = 0;
    for (int64_t bh = 0; bh < c.b * c.h; ++bh) {
      std::vector<int64_t> off = {0}, list;
      for (int64_t i = 0; i < rows; ++i) {
        for (int64_t j = cols - 1; j >= 0; --j)
          if (rng() % 2 && !(bh == 0 && i == 1)) {
            list.push_back(j);
            if (rng() % 4 == 0)
              list.push_back(j); // a duplicate entry
          }
        if (c.m == 1 && list.empty())
          list.push_back(0);
        off.push_back(static_cast<int64_t>(list.size()));
      }
      longest = std::max(longest, list.size());
      offsets.push_back(off);
      lists.push_back(list);
    }
    const int64_t L = std::max<int64_t>(1, static_cast<int64_t>(longest));
    std::vector<int64_t> flatOff, flatIdx;
    for (int64_t bh = 0; bh < c.b * c.h; ++bh) {
      flatOff.insert(flatOff.end(), offsets[bh].begin(), offsets[bh].end());
      lists[bh].resize(L, -1); // padding, outside every row's range
      flatIdx.insert(flatIdx.end(), lists[bh].begin(), lists[bh].end());
    }
    auto in = qkv(c.b, c.h, c.h, c.m, c.p, 121 + c.m);
    in.push_back(ints({c.b, c.h, rows + 1}, flatOff));
    in.push_back(ints({c.b, c.h, L}, flatIdx));
    handref::AttnOut want = handref::blockSparseAttention(
        in[0], in[1], in[2], in[3], in[4], 32, 0.125);
    if (rows > 1)
      CHECK(emptyRows(want.lse) >= 32); // query block 1 of (0, 0)
    requireSame(ex.run(in), want);
  }
}

TEST_CASE("interpreter: PowerAttention", "[interpreter]") {
  handref::SoftmaxOptions opt;
  opt.mask = handref::Mask::Power2;
  checkSoftmax("power-attention", qkv(1, 2, 2, 113, 113, 130), opt);
  checkSoftmax("power-attention", qkv(1, 1, 1, 1, 1, 131), opt);
  // |m| > |p|: rows 6 and 7 (distances 6, 5 and 7, 6) see no key.
  auto in = qkv(1, 2, 2, 8, 2, 132);
  opt.scale = 0.125;
  CHECK(emptyRows(handref::softmaxAttention(in[0], in[1], in[2], opt).lse) == 2 * 2);
  checkSoftmax("power-attention", in, opt);
}

TEST_CASE("interpreter: FP8 e4m3 with descales", "[interpreter]") {
  MLIRContext ctx;
  Type e4m3 = Float8E4M3FNType::get(&ctx);
  // The hand-written rounding agrees with the interpreter's (APFloat) on
  // every multiple of 2^-12 in [-448, 448] (ties, subnormals, binade edges)
  // and on random doubles.
  for (int64_t i = -448 * 4096; i <= 448 * 4096; ++i) {
    double x = std::ldexp(static_cast<double>(i), -12);
    if (handref::roundToE4M3(x) != mlir::attn::roundToType(x, e4m3)) {
      INFO("x = " << x);
      REQUIRE(handref::roundToE4M3(x) == mlir::attn::roundToType(x, e4m3));
    }
  }
  for (double x : handref::randomTensor({100000}, 140, -448, 448).data)
    REQUIRE(handref::roundToE4M3(x) == mlir::attn::roundToType(x, e4m3));

  Example ex("fp8");
  struct Case {
    int64_t b, m, p;
  };
  for (Case c : {Case{1, 113, 113}, Case{2, 1, 1}, Case{1, 5, 77}}) {
    INFO("m = " << c.m << ", p = " << c.p);
    // Values across many binades (|x| up to 8), stored as e4m3.
    auto raw = qkv(c.b, 2, 2, c.m, c.p, 141 + c.m, 8.0);
    std::vector<Dense> in = raw;
    for (int i = 0; i < 3; ++i)
      for (double &x : in[i].data)
        x = handref::roundToE4M3(x);
    for (uint64_t s : {142, 143, 144})
      in.push_back(handref::randomTensor({c.b, 2}, s + c.m, 0.05, 0.5));
    handref::AttnOut want =
        handref::fp8Attention(in[0], in[1], in[2], in[3], in[4], in[5], 0.125);
    requireSame(ex.run(in), want);
    // The interpreter rounding the raw inputs to their declared e4m3 itself
    // (and every result to f32) lands within float32 accuracy of the same.
    for (int i = 3; i < 6; ++i)
      raw.push_back(in[i]);
    auto rounded = ex.run(raw, /*exactTypes=*/true);
    requireClose(rounded[0].data, want.o.data, 1e-5);
    requireClose(rounded[1].data, want.lse.data, 1e-5);
  }
}

TEST_CASE("interpreter: backward of MHA and causal attention",
          "[interpreter]") {
  struct Case {
    int64_t b, h, m, p;
  };
  for (bool causal : {false, true}) {
    Example ex(causal ? "backward-causal" : "backward-mha");
    for (Case c : {Case{1, 2, 113, 113}, Case{1, 1, 1, 1}, Case{2, 2, 37, 50},
                   Case{1, 2, 50, 37}}) {
      INFO("causal = " << causal << ", m = " << c.m << ", p = " << c.p);
      auto in = qkv(c.b, c.h, c.h, c.m, c.p, 150 + c.m + c.p);
      Dense dout = handref::randomTensor({c.b, c.h, c.m, 64}, 151 + c.m);
      handref::SoftmaxOptions opt;
      opt.scale = 0.125;
      opt.mask = causal ? handref::Mask::CausalTopLeft : handref::Mask::None;
      // The forward's outputs, from the hand-written forward.
      handref::AttnOut fwd = handref::softmaxAttention(in[0], in[1], in[2], opt);
      auto out = ex.run({in[0], in[1], in[2], fwd.o, dout, fwd.lse});
      handref::AttnGrads want =
          handref::attentionBackward(in[0], in[1], in[2], dout, causal, 0.125);
      requireClose(out[0].data, want.dq.data);
      requireClose(out[1].data, want.dk.data);
      requireClose(out[2].data, want.dv.data);

      // A row the forward left empty (LSE = -inf, O = 0) gets P = 0: the
      // same gradients as a zero dO for that row, and dQ = 0 there.
      if (c.m < 3 || c.m == 113)
        continue;
      Dense lse = fwd.lse, o = fwd.o, dzero = dout;
      lse.at({0, c.h - 1, 2}) = -INFINITY;
      for (int64_t f = 0; f < 64; ++f) {
        o.at({0, c.h - 1, 2, f}) = 0;
        dzero.at({0, c.h - 1, 2, f}) = 0;
      }
      auto masked = ex.run({in[0], in[1], in[2], o, dout, lse});
      handref::AttnGrads wantMasked =
          handref::attentionBackward(in[0], in[1], in[2], dzero, causal, 0.125);
      for (int64_t e = 0; e < 64; ++e)
        CHECK(wantMasked.dq.at({0, c.h - 1, 2, e}) == 0);
      requireClose(masked[0].data, wantMasked.dq.data);
      requireClose(masked[1].data, wantMasked.dk.data);
      requireClose(masked[2].data, wantMasked.dv.data);
    }
  }
}
