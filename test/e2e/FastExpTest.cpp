//===- FastExpTest.cpp - accuracy of the generated exp --------------------===//
//
// attn-cpu-to-llvm replaces exp on f32 with a 13-operation sequence
// (FastExpF32 in passes/LowerCPU.cpp). This compiles test/e2e/fast-exp.mlir
// with attnc (scalar and vector lanes) and compares it with std::exp in
// double over a sweep of every 251st float in [-88, 88.3] and the special
// values, with the bounds documented there.
//
//===----------------------------------------------------------------------===//

#include "attn/runtime.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

extern "C" attn_status e2e_fast_exp_fexp(const void *, const attn_launch *);

namespace {

/// exp of every x through the kernel: (scalar path, vector path).
std::pair<std::vector<float>, std::vector<float>>
run(const std::vector<float> &x) {
  int64_t m = int64_t(x.size()) / 16;
  std::vector<float> ys(x.size(), -1.0f), yv(x.size(), -1.0f);
  int64_t shape[2] = {m, 16};
  auto tensor = [&](const float *data) {
    attn_tensor t{};
    t.data = const_cast<float *>(data);
    t.device = {ATTN_DEVICE_CPU, 0};
    t.ndim = 2;
    t.dtype = {ATTN_DTYPE_FLOAT, 32, 1};
    t.shape = shape;
    return t;
  };
  attn_tensor tx = tensor(x.data()), ts = tensor(ys.data()),
              tv = tensor(yv.data());
  const attn_tensor *args[] = {&tx, &ts, &tv};
  REQUIRE(e2e_fast_exp_fexp(args, nullptr) == ATTN_OK);
  return {ys, yv};
}

} // namespace

TEST_CASE("generated exp: relative error below 2e-7", "[e2e][exp]") {
  // Every 251st float of [-88, 88.3] by bit pattern (both signs).
  auto bits = [](float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
  };
  auto fromBits = [](uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  };
  std::vector<float> x;
  for (uint32_t u = 0; u <= bits(88.0f); u += 251)
    x.push_back(-fromBits(u));
  for (uint32_t u = 0; u <= bits(88.3f); u += 251)
    x.push_back(fromBits(u));
  x.resize(x.size() / 16 * 16);
  REQUIRE(x.size() > 5000000);
  auto [ys, yv] = run(x);
  for (const std::vector<float> *y : {&ys, &yv}) {
    double worst = 0;
    float at = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      double want = std::exp(double(x[i]));
      double got = (*y)[i];
      // Below 2^-126.5 the result may be flushed to 0.
      if (want < std::ldexp(1.0, -126)) {
        CHECK(std::fabs(got - want) <= std::ldexp(1.0, -126));
        continue;
      }
      double rel = std::fabs(got - want) / want;
      if (rel > worst) {
        worst = rel;
        at = x[i];
      }
    }
    INFO("worst relative error " << worst << " at x = " << at);
    CHECK(worst < 2e-7);
  }
}

TEST_CASE("generated exp: special values", "[e2e][exp]") {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> x = {-inf, -1000.0f, -88.5f, 0.0f, -0.0f, 1.0f,
                          88.5f, 1000.0f, inf, std::nanf(""), -1.0f,
                          0.5f, -0.5f, 10.0f, -10.0f, 88.0f};
  auto [ys, yv] = run(x);
  for (const std::vector<float> *y : {&ys, &yv}) {
    CHECK((*y)[0] == 0.0f);  // masked scores contribute exactly nothing
    CHECK((*y)[1] == 0.0f);
    CHECK((*y)[2] >= 0.0f);
    CHECK((*y)[2] < 1e-38f);
    CHECK((*y)[3] == 1.0f);  // the row maximum weighs exactly 1
    CHECK((*y)[4] == 1.0f);
    CHECK((*y)[5] == Approx(std::exp(1.0)).epsilon(2e-7));
    CHECK((*y)[6] == inf);   // documented: +inf from 88.38 on
    CHECK((*y)[7] == inf);
    CHECK((*y)[8] == inf);
    CHECK(std::isnan((*y)[9]));
    CHECK((*y)[15] == Approx(std::exp(88.0)).epsilon(2e-7));
  }
}
