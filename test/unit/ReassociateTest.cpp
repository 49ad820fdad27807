//===- ReassociateTest.cpp - the reassociated cascades equal the originals -===//
//
// Property tests of attn-reassociate: each rewrite (low-rank bias folded by
// concatenation, ALiBi as a rank-2 bias, linear attention reassociated and
// in causal chunks, MLA's latent projection absorbed) is run in the
// reference interpreter (float64) before and after, on random inputs, with
// lengths 1, 113 and chunk boundaries (63, 64, 65, 128), more queries than
// keys and the reverse, and head dims 64 and 59. Outputs must agree within
// 1e-12 relative to max(1, |value|). Each rewrite is forced (`always`) so
// that small sizes test it too. A deliberately wrong variant of each
// rewritten cascade (a mutation of its text) must fail the same comparison,
// and MLA is also checked against a hand-written loop.
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
#include <fstream>
#include <random>
#include <sstream>

using namespace mlir;
namespace handref = ::attn::handref;

namespace {

std::string readExample(const std::string &name) {
  std::ifstream in(std::string(ATTN_SOURCE_DIR) + "/examples/" + name + ".mlir");
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string replaceAll(std::string s, const std::string &from,
                       const std::string &to) {
  for (size_t pos = s.find(from); pos != std::string::npos;
       pos = s.find(from, pos + to.size()))
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

std::string print(Operation *op) {
  std::string s;
  llvm::raw_string_ostream os(s);
  op->print(os);
  return s;
}

/// Runs attn-reassociate (forced) on `text`; returns the printed result and
/// the remarks.
std::string reassociate(const std::string &text, int64_t chunk,
                        std::string *remarks = nullptr) {
  Parsed p(text);
  PassManager pm(&p.ctx);
  mlir::attn::AttnReassociatePassOptions options;
  options.always = true;
  options.chunk = chunk;
  pm.addPass(mlir::attn::createAttnReassociatePass(options));
  std::string notes;
  ScopedDiagnosticHandler collect(&p.ctx, [&](Diagnostic &d) {
    notes += d.str() + "\n";
    return success(d.getSeverity() == DiagnosticSeverity::Remark);
  });
  REQUIRE(succeeded(pm.run(*p.module)));
  if (remarks)
    *remarks = notes;
  return print(p.module.get());
}

/// Random inputs for `cascade` at `sizes`: values in [-1, 1] (the feature
/// maps and the softmax see ordinary and negative values).
std::vector<mlir::attn::Tensor> inputsFor(mlir::attn::CascadeOp cascade,
                                          const llvm::StringMap<int64_t> &given,
                                          uint64_t seed) {
  llvm::StringMap<int64_t> sizes;
  std::string err = mlir::attn::resolveRankSizes(cascade, {}, given, sizes);
  INFO(err);
  REQUIRE(err.empty());
  std::mt19937_64 rng(seed);
  std::vector<mlir::attn::Tensor> inputs;
  for (unsigned i = 0; i < cascade.getFunctionType().getNumInputs(); ++i) {
    auto type = cast<mlir::attn::NamedTensorType>(cascade.getFunctionType().getInput(i));
    mlir::attn::Tensor t;
    t.shape = mlir::attn::shapeOf(type, sizes);
    t.data.resize(t.numElements());
    for (double &v : t.data)
      v = -1 + 2 * ((double)(rng() >> 11) * 0x1.0p-53);
    inputs.push_back(std::move(t));
  }
  return inputs;
}

std::vector<mlir::attn::Tensor> run(mlir::attn::CascadeOp c,
                                    const std::vector<mlir::attn::Tensor> &inputs,
                                    const llvm::StringMap<int64_t> &given) {
  mlir::attn::InterpretOptions options;
  options.sizes = given;
  options.roundToTypes = false;
  mlir::attn::InterpretResult r = mlir::attn::interpret(c, inputs, options);
  INFO(r.error);
  REQUIRE(r.ok());
  return r.outputs;
}

/// The largest relative difference (inf if shapes, infinities or NaNs
/// differ).
double worstError(const std::vector<mlir::attn::Tensor> &got,
                  const std::vector<mlir::attn::Tensor> &want) {
  if (got.size() != want.size())
    return INFINITY;
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i].shape != want[i].shape)
      return INFINITY;
    for (size_t j = 0; j < got[i].data.size(); ++j) {
      double g = got[i].data[j], w = want[i].data[j];
      if (std::isnan(g) || std::isnan(w) || std::isinf(g) || std::isinf(w)) {
        if (!(g == w || (std::isnan(g) && std::isnan(w))))
          return INFINITY;
        continue;
      }
      worst = std::max(worst, std::fabs(g - w) / std::max(1.0, std::fabs(w)));
    }
  }
  return worst;
}

llvm::StringMap<int64_t> sizesOf(std::initializer_list<std::pair<const char *, int64_t>> kv) {
  llvm::StringMap<int64_t> s;
  for (auto [k, v] : kv)
    s[k] = v;
  return s;
}

/// Compares `before` and `after` on every size set; returns the worst error.
double compare(const std::string &before, const std::string &after,
               const std::vector<llvm::StringMap<int64_t>> &sizeSets) {
  Parsed a(before), b(after);
  double worst = 0;
  uint64_t seed = 11;
  for (const auto &given : sizeSets) {
    auto inputs = inputsFor(a.cascade(), given, ++seed);
    double err = worstError(run(b.cascade(), inputs, given),
                            run(a.cascade(), inputs, given));
    std::string text;
    for (const auto &kv : given)
      text += " " + kv.getKey().str() + "=" + std::to_string(kv.getValue());
    INFO("sizes" << text << ": worst relative error " << err);
    worst = std::max(worst, err);
  }
  return worst;
}

/// (m, p) pairs with b = 1, h = 2.
std::vector<llvm::StringMap<int64_t>>
lengths(std::initializer_list<std::pair<int64_t, int64_t>> mp, int64_t h = 2) {
  std::vector<llvm::StringMap<int64_t>> out;
  for (auto [m, p] : mp)
    out.push_back(sizesOf({{"b", 1}, {"h", h}, {"m", m}, {"p", p}}));
  return out;
}

/// Head dims 64 (as written) and 59.
std::vector<std::string> headDims(const std::string &text) {
  return {text, replaceAll(replaceAll(text, "e = 64", "e = 59"), "f = 64", "f = 59")};
}

/// The rewrite changed the cascade, agrees with the original, and the
/// mutation `from` -> `to` of the rewritten text does not.
void checkRewrite(const std::string &text, int64_t chunk,
                  const std::vector<llvm::StringMap<int64_t>> &sizes,
                  const std::string &mustContain, const std::string &from,
                  const std::string &to) {
  std::string remarks;
  std::string after = reassociate(text, chunk, &remarks);
  INFO(remarks);
  INFO(after);
  REQUIRE(after.find(mustContain) != std::string::npos);
  CHECK(compare(text, after, sizes) <= 1e-12);
  if (from.empty())
    return;
  REQUIRE(after.find(from) != std::string::npos);
  std::string wrong = replaceAll(after, from, to);
  CHECK(compare(text, wrong, {sizes.back()}) > 1e-6);
}

} // namespace

TEST_CASE("linear attention reassociated to phi(Q) (phi(K)^T V)", "[reassociate]") {
  for (const std::string &text : headDims(readExample("linear")))
    // Mutation: the denominator sums phi(K)^2 instead of phi(K).
    checkRewrite(text, 64, lengths({{1, 1}, {113, 113}, {1, 113}, {113, 7}}),
                 "%num_e = attn.einsum", "%fk[b, h, p, e] sum(p)",
                 "%fk[b, h, p, e] * %fk[b, h, p, e] sum(p)");
}

TEST_CASE("causal linear attention in chunks", "[reassociate]") {
  // Lengths: 1, 113, the chunk boundaries (a multiple of the chunk and one
  // more), more keys than queries and the reverse (rows past the last key
  // see every key). Mutation: the diagonal key of each query is dropped.
  for (const std::string &text : headDims(readExample("linear-causal")))
    checkRewrite(text, 64,
                 lengths({{1, 1}, {113, 113}, {64, 64}, {65, 65}, {50, 113},
                          {113, 50}}),
                 "%num_state = attn.einsum", "m0 <= m mod 64", "m0 < m mod 64");
  std::string text = readExample("linear-causal");
  checkRewrite(text, 16, lengths({{1, 1}, {33, 33}, {32, 32}, {17, 40}, {40, 17}}),
               "%num_state = attn.einsum", "m0 <= m mod 16", "m0 < m mod 16");
  checkRewrite(text, 2, lengths({{1, 1}, {5, 5}, {6, 6}, {3, 6}, {6, 3}}),
               "%num_state = attn.einsum", "m0 <= m mod 2", "m0 < m mod 2");
}

TEST_CASE("causal linear attention: a generic feature map", "[reassociate]") {
  // phi(x) = exp(x) * (x * x + 1), given as a map action.
  std::string text = replaceAll(
      readExample("linear-causal"),
      "select(%q[b, h, m, e] > 0, %q[b, h, m, e] + 1.0, exp(%q[b, h, m, e]))",
      "exp(%q[b, h, m, e]) * (%q[b, h, m, e] * %q[b, h, m, e] + 1.0)");
  text = replaceAll(
      text, "select(%k[b, h, p, e] > 0, %k[b, h, p, e] + 1.0, exp(%k[b, h, p, e]))",
      "exp(%k[b, h, p, e]) * (%k[b, h, p, e] * %k[b, h, p, e] + 1.0)");
  REQUIRE(text.find("select") == std::string::npos);
  // Mutation: the earlier chunks (the running state) are dropped.
  checkRewrite(text, 16, lengths({{1, 1}, {113, 113}, {32, 32}, {33, 33}}),
               "%den_state = attn.einsum", "%num_inter[b, h, m, f] + %num_intra",
               "%num_inter[b, h, m, f] * 0.0 + %num_intra");
}

TEST_CASE("low-rank bias folded into the score contraction", "[reassociate]") {
  for (const std::string &text : headDims(readExample("lowrank-bias")))
    // Mutation: the concatenation boundary moves by one column.
    checkRewrite(text, 64, lengths({{1, 1}, {113, 113}, {1, 113}, {113, 5}}),
                 "%s_bias = attn.einsum", "select(er < ", "select(er + 1 < ");
}

namespace {
/// ALiBi (examples/alibi.mlir) with its bias written as a rank-2 product:
/// slope(h) * (p - m) = [slope(h), -slope(h) * m] . [p, 1].
const char *kAlibiRank2 = R"(
attn.cascade @alibi_rank2 ranks(b, h, m, p, r = 2, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %u = attn.einsum [h, m, r] = select(r == 0, exp2(-8.0 * (h + 1) / |h|), -exp2(-8.0 * (h + 1) / |h|) * m) : f32
  %w = attn.einsum [p, r] = select(r == 0, p, 1.0) : f32
  %bias = attn.einsum [h, m, p] = %u[h, m, r] * %w[p, r] sum(r) {attn.lowrank = #attn.lowrank<bias, "r">} : f32
  %s = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.125 sum(e) : f32
  %qk = attn.einsum [b, h, m, p] = %s[b, h, m, p] + %bias[h, m, p] if (p <= m) else -inf {attn.sparse = #attn.sparse<causal>} : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) if (%gm[b, h, m] > -inf) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) if (%sd[b, h, m] > 0) : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}
)";
} // namespace

TEST_CASE("ALiBi as a rank-2 bias, folded", "[reassociate]") {
  auto sizes = lengths({{1, 1}, {113, 113}, {40, 17}}, 4);
  // The rank-2 form is ALiBi: it agrees with examples/alibi.mlir.
  CHECK(compare(readExample("alibi"), kAlibiRank2, lengths({{17, 40}}, 4)) <= 1e-12);
  std::string after = reassociate(kAlibiRank2, 64);
  INFO(after);
  REQUIRE(after.find("%bias") == std::string::npos);
  CHECK(compare(readExample("alibi"), after, sizes) <= 1e-12);
  checkRewrite(kAlibiRank2, 64, sizes, "%s_bias = attn.einsum", "select(er < ",
               "select(er + 1 < ");
}

namespace {
/// MLA by hand: K = C Wk, V = C Wv, then softmax attention (scale 0.125).
handref::AttnOut mlaByHand(const std::vector<mlir::attn::Tensor> &in) {
  const auto &q = in[0], &c = in[1], &wk = in[2], &wv = in[3];
  int64_t B = q.shape[0], H = q.shape[1], M = q.shape[2], E = q.shape[3];
  int64_t P = c.shape[1], R = c.shape[2], F = wv.shape[2];
  handref::Dense hq = handref::zeros({B, H, M, E});
  hq.data = q.data;
  handref::Dense k = handref::zeros({B, H, P, E}), v = handref::zeros({B, H, P, F});
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t p = 0; p < P; ++p)
        for (int64_t r = 0; r < R; ++r) {
          double cv = c.data[(b * P + p) * R + r];
          for (int64_t e = 0; e < E; ++e)
            k.at({b, h, p, e}) += cv * wk.data[(h * R + r) * E + e];
          for (int64_t f = 0; f < F; ++f)
            v.at({b, h, p, f}) += cv * wv.data[(h * R + r) * F + f];
        }
  handref::SoftmaxOptions opt;
  opt.scale = 0.125;
  return handref::softmaxAttention(hq, k, v, opt);
}
} // namespace

TEST_CASE("MLA: latent projections absorbed", "[reassociate]") {
  for (const std::string &text : headDims(readExample("mla"))) {
    auto sizes = lengths({{1, 1}, {1, 113}, {113, 20}, {7, 65}});
    // Mutation: the absorbed query forgets the softmax scale.
    checkRewrite(text, 64, sizes, "%qk_r = attn.einsum", " * 0.125 sum(e)",
                 " sum(e)");
    // Against the hand-written loop.
    std::string after = reassociate(text, 64);
    REQUIRE(after.find("%o_r = attn.einsum") != std::string::npos);
    Parsed a(after);
    uint64_t seed = 99;
    for (const auto &given : sizes) {
      auto inputs = inputsFor(a.cascade(), given, ++seed);
      auto got = run(a.cascade(), inputs, given);
      handref::AttnOut want = mlaByHand(inputs);
      mlir::attn::Tensor o{want.o.shape, want.o.data},
          lse{want.lse.shape, want.lse.data};
      CHECK(worstError(got, {o, lse}) <= 1e-12);
    }
  }
}

TEST_CASE("attn-reassociate keeps what costs more", "[reassociate]") {
  // Prefill MLA with |r| > |e|: absorbing costs more at |m| = |p| = 4096.
  std::string text = readExample("mla");
  Parsed p(text);
  PassManager pm(&p.ctx);
  pm.addPass(mlir::attn::createAttnReassociatePass());
  std::string notes;
  ScopedDiagnosticHandler collect(&p.ctx, [&](Diagnostic &d) {
    notes += d.str() + "\n";
    return success();
  });
  REQUIRE(succeeded(pm.run(*p.module)));
  INFO(notes);
  CHECK(print(p.cascade()) == print(Parsed(text).cascade()));
  CHECK(notes.find("kept as written: absorbing the latent projection 'k' costs more") !=
        std::string::npos);
}
