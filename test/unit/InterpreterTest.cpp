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

  /// Runs the cascade in ideal float64 on `inputs`.
  std::vector<mlir::attn::Tensor> run(const std::vector<Dense> &inputs,
                                      bool exactTypes = false) {
    std::vector<mlir::attn::Tensor> tensors;
    for (const Dense &d : inputs)
      tensors.push_back({d.shape, d.data});
    mlir::attn::InterpretOptions options;
    options.roundToTypes = exactTypes;
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
