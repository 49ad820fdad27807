//===- AnalysisTest.cpp - the analysis library's C++ API -------------------===//
//
// This file tests the exact arithmetic (Rational, Poly) and the analyses as
// other passes call them: pass levels, full dependences and prefix reads,
// point counts under conditions, rank sizes and costs.
//
//===----------------------------------------------------------------------===//

#include "attn/Analysis.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"

#include <catch2/catch.hpp>

using namespace mlir;
using namespace mlir::attn;

namespace {

/// Parses one cascade and gives access to its Einsums by name.
struct Parsed {
  explicit Parsed(const char *source) {
    ctx.loadDialect<AttnDialect>();
    module = parseSourceString<ModuleOp>(source, &ctx);
    REQUIRE(module);
    cascade = *module->getOps<CascadeOp>().begin();
  }
  EinsumOp operator[](StringRef name) {
    for (EinsumOp op : cascade.getBodyBlock().getOps<EinsumOp>())
      if (op.getName() && *op.getName() == name)
        return op;
    FAIL("no Einsum named " << name.str());
    return {};
  }
  std::vector<std::string> names(ArrayRef<EinsumOp> ops) {
    std::vector<std::string> out;
    for (EinsumOp op : ops)
      out.push_back(op.getName()->str());
    return out;
  }

  MLIRContext ctx;
  OwningOpRef<ModuleOp> module;
  CascadeOp cascade;
};

const char *kMha = R"mlir(
attn.cascade @mha ranks(b, h, m, p, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>, lse: !attn.t<[b, h, m], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.125 sum(e) : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] / %sd[b, h, m] sum(p) : f32
  %lse = attn.einsum [b, h, m] = %gm[b, h, m] + log(%sd[b, h, m]) : f32
  attn.yield %o, %lse : !attn.t<[b, h, m, f], f32>, !attn.t<[b, h, m], f32>
}
)mlir";

const char *kDeferred = R"mlir(
attn.cascade @deferred ranks(b, h, m, p, e = 64, f = 64)
    (%q: !attn.t<[b, h, m, e], f32>, %k: !attn.t<[b, h, p, e], f32>, %v: !attn.t<[b, h, p, f], f32>)
    -> (o: !attn.t<[b, h, m, f], f32>) {
  %qk = attn.einsum [b, h, m, p] = %q[b, h, m, e] * %k[b, h, p, e] * 0.125 sum(e) : f32
  %gm = attn.einsum [b, h, m] = %qk[b, h, m, p] max(p) : f32
  %sn = attn.einsum [b, h, m, p] = exp(%qk[b, h, m, p] - %gm[b, h, m]) : f32
  %sd = attn.einsum [b, h, m] = %sn[b, h, m, p] sum(p) : f32
  %snv = attn.einsum [b, h, m, f] = %sn[b, h, m, p] * %v[b, h, p, f] sum(p) : f32
  %o = attn.einsum [b, h, m, f] = %snv[b, h, m, f] / %sd[b, h, m] : f32
  attn.yield %o : !attn.t<[b, h, m, f], f32>
}
)mlir";

const char *kFlash = R"mlir(
attn.cascade @flash ranks(m, p, e = 64, f = 64) partition(p -> p1, p0 = 64 ragged)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>, %v: !attn.t<[p, f], f32>)
    -> (o: !attn.t<[m, f], f32>) {
  %qk = attn.einsum [m, p1, p0] = %q[m, e] * %k[p1 * 64 + p0, e] sum(e) else -inf : f32
  %lm = attn.einsum [m, p1] = %qk[m, p1, p0] max(p0) : f32
  %rm = attn.einsum [m, p1 + 1] = max(%rm[m, p1], %lm[m, p1]) init(-inf) : f32
  %ref = attn.einsum [m, p1] = select(%rm[m, p1 + 1] == -inf, 0.0, %rm[m, p1 + 1]) : f32
  %sn = attn.einsum [m, p1, p0] = exp(%qk[m, p1, p0] - %ref[m, p1]) : f32
  %prm = attn.einsum [m, p1] = exp(%rm[m, p1] - %ref[m, p1]) : f32
  %ld = attn.einsum [m, p1] = %sn[m, p1, p0] sum(p0) : f32
  %rd = attn.einsum [m, p1 + 1] = %rd[m, p1] * %prm[m, p1] + %ld[m, p1] init(0.0) : f32
  %lnv = attn.einsum [m, p1, f] = %sn[m, p1, p0] * %v[p1 * 64 + p0, f] sum(p0) : f32
  %rnv = attn.einsum [m, p1 + 1, f] = %rnv[m, p1, f] * %prm[m, p1] + %lnv[m, p1, f] init(0.0) : f32
  %o = attn.einsum [m, f] = %rnv[m, |p1|, f] / %rd[m, |p1|] : f32
  attn.yield %o : !attn.t<[m, f], f32>
}
)mlir";

/// A running max over p1 whose *final* state is read by an Einsum that
/// iterates p1 again: that is a full read, so a second pass.
const char *kFinalStateReread = R"mlir(
attn.cascade @reread ranks(m, p, e = 64) partition(p -> p1, p0 = 64)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>) -> (s: !attn.t<[m], f32>) {
  %qk = attn.einsum [m, p1, p0] = %q[m, e] * %k[p1 * 64 + p0, e] : f32
  %lm = attn.einsum [m, p1] = %qk[m, p1, p0] max(p0) : f32
  %rm = attn.einsum [m, p1 + 1] = max(%rm[m, p1], %lm[m, p1]) init(-inf) : f32
  %sn = attn.einsum [m, p1, p0] = exp(%qk[m, p1, p0] - %rm[m, |p1|]) : f32
  %s = attn.einsum [m] = %sn[m, p1, p0] sum(p1, p0) : f32
  attn.yield %s : !attn.t<[m], f32>
}
)mlir";

const char *kCausal = R"mlir(
attn.cascade @causal ranks(m = 128, p = 96, e = 8, w)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>, %mask: !attn.t<[m, p], i1>)
    -> (a: !attn.t<[m, p], f32>, b: !attn.t<[m, p], f32>, c: !attn.t<[m, p], f32>, d: !attn.t<[m, p, w], f32>) {
  %a = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) if (p <= m) : f32
  %b = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) if (p <= m and %mask[m, p]) : f32
  %c = attn.einsum [m, p] = %q[m, e] * %k[p, e] sum(e) if (m - p < 16 and p <= m) : f32
  %d = attn.einsum [m, p, w] = %q[m, e] * %k[p, e] sum(e) if (p <= m and w < 3) : f32
  attn.yield %a, %b, %c, %d : !attn.t<[m, p], f32>, !attn.t<[m, p], f32>, !attn.t<[m, p], f32>, !attn.t<[m, p, w], f32>
}
)mlir";

} // namespace

//===----------------------------------------------------------------------===//
// Exact arithmetic
//===----------------------------------------------------------------------===//

TEST_CASE("rationals normalize and print exactly", "[analysis]") {
  CHECK(Rational::get(6, -4) == Rational::get(-3, 2));
  CHECK(Rational::get(6, -4).str() == "-1.5");
  CHECK(Rational::get(1, 8).str() == "0.125");
  CHECK(Rational::get(1, 3).str() == "1/3");
  CHECK(Rational::get(1, 40).str() == "0.025");
  CHECK((Rational::get(1, 2) + Rational::get(1, 3)).str() == "5/6");
  CHECK((Rational::get(3, 4) * Rational(8)).str() == "6");
  CHECK(Rational::get(1, 3) < Rational::get(1, 2));
  // Beyond 64 bits: (2^40)^2 = 2^80.
  Rational big = Rational(int64_t(1) << 40) * Rational(int64_t(1) << 40);
  CHECK(big.str() == "1208925819614629174706176");
}

TEST_CASE("polynomials add, multiply and print in declaration order",
          "[analysis]") {
  // Orders as a cascade declares ranks(b, h, m, p, e).
  Poly b = Poly::symbol("b", 0), h = Poly::symbol("h", 4),
       m = Poly::symbol("m", 8), p = Poly::symbol("p", 12),
       e = Poly::symbol("e", 16);
  Poly qk = Poly(2) * b * h * m * p * e;
  CHECK(qk.str() == "2*b*h*m*p*e");
  // Multiplication commutes: the variables sort by order, not by use.
  CHECK((e * p * Poly(2) * m * h * b) == qk);
  // Higher degree first, then declaration order; like terms combine.
  Poly sum = b * h * m + qk + b * h * m * Poly(3) + Poly(7);
  CHECK(sum.str() == "2*b*h*m*p*e + 4*b*h*m + 7");
  CHECK((sum - sum).isZero());
  CHECK((sum - sum).str() == "0");
  // Powers and negative coefficients.
  Poly x = Poly::symbol("x");
  CHECK(((x + Poly(1)) * (x - Poly(1))).str() == "x^2 - 1");
  CHECK((Poly(0) - x * Poly(3)).str() == "-3*x");
  // Fractional coefficients (an i1 mask: 1/8 byte per element).
  CHECK((m * p * Poly(Rational::get(1, 8))).str() == "0.125*m*p");
  // Evaluation: every variable 4096 by default, or chosen per variable.
  CHECK((b * h).evaluate() == Rational(4096 * 4096));
  CHECK(sum.evaluate([](const PolySymbol &s) {
          return Rational(s.name == "b" ? 2 : 1);
        }) == Rational(2 * 2 + 4 * 2 + 7));
  CHECK(qk.getSymbols().size() == 5);
  CHECK(Poly(5).getConstant() == Rational(5));
  CHECK_FALSE(qk.isConstant());
  CHECK((Bound{qk, false}).str() == "<= 2*b*h*m*p*e");
}

//===----------------------------------------------------------------------===//
// Pass count
//===----------------------------------------------------------------------===//

TEST_CASE("mha is 3-pass over p and 1-pass over e", "[analysis]") {
  Parsed ir(kMha);
  PassAnalysis passes(ir.cascade);
  CHECK(std::vector<std::string>(passes.getRanks().begin(),
                                 passes.getRanks().end()) ==
        std::vector<std::string>{"p", "e"});
  CHECK(passes.getPassCount("p") == 3);
  CHECK(passes.getPassCount("e") == 1);
  CHECK(passes.getPassCount("m") == 0); // Not reduced.
  CHECK(passes.getLevel(ir["qk"], "p") == 1);
  CHECK(passes.getLevel(ir["gm"], "p") == 1);
  CHECK(passes.getLevel(ir["sn"], "p") == 2);
  CHECK(passes.getLevel(ir["sd"], "p") == 2);
  CHECK(passes.getLevel(ir["o"], "p") == 3);
  CHECK(passes.getLevel(ir["lse"], "p") == 0); // Does not iterate p.
  CHECK(passes.isReduction(ir["gm"], "p"));
  CHECK_FALSE(passes.isReduction(ir["qk"], "p"));
  CHECK(passes.isReduction(ir["qk"], "e"));
  // O depends in full on GM (through SN) and SD.
  CHECK(ir.names(passes.getFullDependences(ir["o"], "p")) ==
        std::vector<std::string>{"gm", "sd"});
  CHECK(ir.names(passes.getPassEinsums("p", 2)) ==
        std::vector<std::string>{"sn", "sd"});
  SmallVector<Value> reReads = passes.getReReads("p", 3);
  REQUIRE(reReads.size() == 1);
  CHECK(getValueName(reReads[0]) == "sn");
}

TEST_CASE("deferring the division makes the cascade 2-pass", "[analysis]") {
  Parsed ir(kDeferred);
  PassAnalysis passes(ir.cascade);
  CHECK(passes.getPassCount("p") == 2);
  CHECK(passes.getLevel(ir["snv"], "p") == 2);
  CHECK(passes.getLevel(ir["o"], "p") == 0);
  CHECK(ir.names(passes.getFullDependences(ir["o"], "p")) ==
        std::vector<std::string>{"gm", "sd", "snv"});
}

TEST_CASE("running states read at p1 or p1 + 1 are prefix reads",
          "[analysis]") {
  Parsed ir(kFlash);
  PassAnalysis passes(ir.cascade);
  // Reported as p, never as p0 or p1.
  CHECK(std::vector<std::string>(passes.getRanks().begin(),
                                 passes.getRanks().end()) ==
        std::vector<std::string>{"p", "e"});
  CHECK(passes.getPassCount("p") == 1);
  CHECK(passes.getPassCount("p1") == 0);
  CHECK(passes.iterates(ir["lm"], "p"));
  CHECK_FALSE(passes.isReduction(ir["lm"], "p")); // Within a tile.
  CHECK(passes.isReduction(ir["rm"], "p"));       // Iterative along p1.
  for (StringRef name : {"qk", "lm", "rm", "ref", "sn", "prm", "ld", "rd",
                         "lnv", "rnv"})
    CHECK(passes.getLevel(ir[name], "p") == 1);
  // ref reads rm[m, p1 + 1]: a prefix read, so no full dependence.
  ExprAttr load = ir["ref"].getExpr().getArgs()[2];
  REQUIRE(load.getKind() == ExprKind::Load);
  CHECK(passes.isPrefixRead(ir["ref"], ir["rm"], load.getArgs(), "p"));
  CHECK(passes.getFullDependences(ir["ref"], "p").empty());
  // The epilogue reads the final states: full reads, but it does not
  // iterate p.
  CHECK(ir.names(passes.getFullDependences(ir["o"], "p")) ==
        std::vector<std::string>{"rd", "rnv"});
  CHECK(passes.getLevel(ir["o"], "p") == 0);
}

TEST_CASE("reading a final state while iterating p again is a new pass",
          "[analysis]") {
  Parsed ir(kFinalStateReread);
  PassAnalysis passes(ir.cascade);
  CHECK(passes.getLevel(ir["rm"], "p") == 1);
  CHECK(passes.getLevel(ir["sn"], "p") == 2);
  CHECK(passes.getLevel(ir["s"], "p") == 2);
  CHECK(passes.getPassCount("p") == 2);
  SmallVector<Value> reReads = passes.getReReads("p", 2);
  REQUIRE(reReads.size() == 1);
  CHECK(getValueName(reReads[0]) == "qk");
}

//===----------------------------------------------------------------------===//
// Costs
//===----------------------------------------------------------------------===//

TEST_CASE("conditions are counted exactly when static and load-free",
          "[analysis]") {
  Parsed ir(kCausal);
  RankSizes sizes(ir.cascade);
  // a: p <= m over m < 128, p < 96: rows m < 96 see m + 1 keys (4656 pairs),
  // rows 96..127 all 96 (3072): 7728 pairs, times e = 8 -> 61824 points.
  Bound a = countPoints(ir["a"], sizes);
  CHECK(a.exact);
  CHECK(a.value == Poly(61824));
  // b: the mask is runtime data: the static conjunct bounds the count.
  Bound b = countPoints(ir["b"], sizes);
  CHECK_FALSE(b.exact);
  CHECK(b.value == Poly(61824));
  // c: a band 0 <= m - p < 16 with p < 96: rows m < 16 see m + 1 keys
  // (1 + ... + 16 = 136 pairs), rows 16..95 see 16 (80 * 16 = 1280), rows
  // 96..110 see the keys m - 15..95, 111 - m of them (15 + ... + 1 = 120),
  // rows 111..127 none: 1536 pairs, times e = 8 -> 12288 points.
  Bound c = countPoints(ir["c"], sizes);
  CHECK(c.exact);
  CHECK(c.value == Poly(12288));
  // d: w is dynamic and the condition uses it: the dense bound.
  Bound d = countPoints(ir["d"], sizes);
  CHECK_FALSE(d.exact);
  CHECK(d.value.str() == "98304*w");
  // Over the enumeration limit: the dense bound 128 * 96 * 8.
  Bound capped = countPoints(ir["a"], sizes, /*limit=*/1000);
  CHECK_FALSE(capped.exact);
  CHECK(capped.value == Poly(98304));
}

TEST_CASE("rank sizes follow partitions and relations", "[analysis]") {
  Parsed ir(R"mlir(
attn.cascade @sizes ranks(b, h, g, p, e = 64, n = 1000)
    partition(p -> p1, p0 = 64) partition(n -> n1, n0 = 64 ragged) where(h = 4 * g)
    (%k: !attn.t<[b, g, p, e], i4>, %m: !attn.t<[n, e], i1>) -> (o: !attn.t<[b, g, p, e], i4>) {
  %o = attn.einsum [b, g, p, e] = %k[b, g, p, e] : i4
  attn.yield %o : !attn.t<[b, g, p, e], i4>
}
)mlir");
  RankSizes sizes(ir.cascade);
  CHECK(sizes.size("e").str() == "64");
  CHECK(sizes.size("g").str() == "0.25*h");
  CHECK(sizes.size("p1").str() == "p1");
  CHECK(sizes.size("p0").str() == "64");
  CHECK(sizes.size("n1").str() == "16"); // ceildiv(1000, 64)
  CHECK(sizes.staticSize("n1") == 16);
  CHECK_FALSE(sizes.staticSize("p").has_value());
  CHECK(getElementBytes(IntegerType::get(&ir.ctx, 4)) == Rational::get(1, 2));
  CHECK(getElementBytes(Float16Type::get(&ir.ctx)) == Rational(2));
  Value k = ir.cascade.getBodyBlock().getArgument(0);
  Value mask = ir.cascade.getBodyBlock().getArgument(1);
  // 64 entries of i4 per (b, g, p) with g = h/4: 8*b*h*p bytes.
  CHECK(sizes.bytes(k).str() == "8*b*h*p");
  CHECK(sizes.bytes(mask).str() == "8000");
}

TEST_CASE("mha costs: flops, bytes and buffers", "[analysis]") {
  Parsed ir(kMha);
  PassAnalysis passes(ir.cascade);
  CostAnalysis costs(ir.cascade, passes);
  Poly b = Poly::symbol("b", 0), h = Poly::symbol("h", 4),
       m = Poly::symbol("m", 8), p = Poly::symbol("p", 12);
  Poly bhm = b * h * m, bhmp = bhm * p, bhp = b * h * p;
  // qk: 64*bhmp points * (2 mul + sum).
  const EinsumCost &qk = costs.getCost(ir["qk"]);
  CHECK(qk.points.value == Poly(64) * bhmp);
  CHECK(qk.ops.arithmetic == 2);
  CHECK(qk.combines == 1);
  CHECK(qk.flops.value == Poly(192) * bhmp);
  // sn: 1 sub and 1 exp per point.
  CHECK(costs.getCost(ir["sn"]).ops.special == 1);
  CHECK(costs.getCost(ir["sn"]).special.value == bhmp);
  CHECK(costs.getFlops().exact);
  CHECK(costs.getFlops().value == Poly(387) * bhmp + bhm);
  CHECK(costs.getSpecial().value == bhmp + bhm);
  CHECK(costs.getFusedBytes() == Poly(516) * bhm + Poly(512) * bhp);
  CHECK(costs.getUnfusedBytes() ==
        Poly(24) * bhmp + Poly(540) * bhm + Poly(512) * bhp);
  const BufferInfo &buffer = costs.getBuffer();
  CHECK(getValueName(buffer.largest) == "qk");
  CHECK(buffer.largestBytes == Poly(4) * bhmp);
  CHECK(buffer.peakBytes == Poly(8) * bhmp + Poly(4) * bhm);
  CHECK(getValueName(cast<EinsumOp>(buffer.peakAt).getResult()) == "sn");
}

TEST_CASE("a 1-pass partition holds one tile", "[analysis]") {
  Parsed ir(kFlash);
  PassAnalysis passes(ir.cascade);
  CostAnalysis costs(ir.cascade, passes);
  // qk [m, p1, p0] f32: one tile of 64 keys per query; rm one step.
  auto held = [&](StringRef name) {
    return costs.getHeldBytes(ir[name].getResult()).str();
  };
  CHECK(held("qk") == "256*m");
  CHECK(held("rm") == "4*m");
  CHECK(held("lnv") == "256*m");
  // Full sizes: qk spans every tile, rm has |p1| + 1 steps.
  RankSizes sizes(ir.cascade);
  CHECK(sizes.bytes(ir["qk"].getResult()).str() == "256*m*p1");
  CHECK(sizes.bytes(ir["rm"].getResult()).str() == "4*m*p1 + 4*m");
  // The pair (p1, p0) counts |p| points: the ragged remainder is excluded.
  CHECK(costs.getCost(ir["qk"]).points.value.str() == "64*m*p");
  CHECK(costs.getCost(ir["rm"]).points.value.str() == "m*p1");
}
