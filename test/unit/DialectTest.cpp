//===- DialectTest.cpp - C++ API of the attn dialect -----------------------===//
//
// This file tests what the textual IR cannot show directly: the accessors
// that passes use to read cascades and Einsums.
//
//===----------------------------------------------------------------------===//

#include "attn/Dialect.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"

#include <catch2/catch.hpp>

using namespace mlir;

namespace {
const char *kCascade = R"mlir(
attn.cascade @online ranks(m, p = 1000, e = 64) partition(p -> p1, p0 = 64 ragged)
    (%q: !attn.t<[m, e], f32>, %k: !attn.t<[p, e], f32>) -> (rm: !attn.t<[m], f32>) {
  %qk = attn.einsum [m, p1, p0] = %q[m, e] * %k[p1 * 64 + p0, e] : f32
  %lm = attn.einsum [m, p1] = %qk[m, p1, p0] max(p0) : f32
  %rm = attn.einsum [m, p1 + 1] = max(%rm[m, p1], %lm[m, p1]) init(-inf) : f32
  %fin = attn.einsum [m] = %rm[m, |p1|] : f32
  attn.yield %fin : !attn.t<[m], f32>
}
)mlir";
} // namespace

TEST_CASE("cascade accessors follow partitions and iterative ranks", "[dialect]") {
  MLIRContext ctx;
  ctx.loadDialect<attn::AttnDialect>();
  OwningOpRef<ModuleOp> module = parseSourceString<ModuleOp>(kCascade, &ctx);
  REQUIRE(module);
  auto cascade = *module->getOps<attn::CascadeOp>().begin();
  CHECK(cascade.getRankSize("p") == 1000);
  CHECK(cascade.getRankSize("p0") == 64);
  CHECK(cascade.getRankSize("p1") == 16); // ceildiv(1000, 64)
  CHECK(ShapedType::isDynamic(*cascade.getRankSize("m")));
  CHECK_FALSE(cascade.getRankSize("x").has_value());

  auto einsums = llvm::to_vector(cascade.getBodyBlock().getOps<attn::EinsumOp>());
  REQUIRE(einsums.size() == 4);
  attn::EinsumOp qk = einsums[0], lm = einsums[1], rm = einsums[2];
  CHECK(qk.getReducer() == attn::Reducer::Sum); // implied by the missing e
  CHECK(llvm::to_vector(qk.getIterationRanks()) ==
        SmallVector<StringRef>{"m", "p1", "p0", "e"});
  CHECK(lm.getReducer() == attn::Reducer::Max);
  CHECK(rm.getIterativeRank() == "p1");
  CHECK(qk.getIterativeRank().empty());
  CHECK(rm.getInit()->convertToDouble() == -INFINITY);
  CHECK(*rm.getName() == "rm");
}
