//===- GatherTest.cpp - gathered indices are clamped, never out of bounds -===//
//
// test/e2e/gather.mlir compiled by attnc: s[m, l] = sum_e q[m, e] *
// k[idx[m, l], e]. In-range indices give exactly the gathered dot product;
// out-of-range ones (negative, |p|, far past the end) read the nearest row
// (index clamped to [0, |p| - 1]) and the call still returns ATTN_OK.
//
//===----------------------------------------------------------------------===//

#include "attn/runtime.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

extern "C" attn_status e2e_gather_gather(const void *, const attn_launch *);

TEST_CASE("gathered indices: in range exact, out of range clamped",
          "[e2e][gather]") {
  const int64_t M = 37, L = 5, P = 23, E = 16;
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  std::vector<float> q(M * E), k(P * E), s(M * L, 12345.0f);
  for (float &x : q)
    x = uni(rng);
  for (float &x : k)
    x = uni(rng);
  std::vector<int32_t> idx(M * L);
  const int32_t bad[] = {-1, -1000000, int32_t(P), int32_t(P) + 7, INT32_MAX};
  for (int64_t j = 0; j < M * L; ++j)
    idx[j] = j % 3 == 0 ? bad[(j / 3) % 5] : int32_t(rng() % P);
  int64_t qs[2] = {M, E}, ks[2] = {P, E}, is[2] = {M, L}, ss[2] = {M, L};
  auto tensor = [](void *data, int64_t *shape, attn_dtype dt) {
    attn_tensor t{};
    t.data = data;
    t.device = {ATTN_DEVICE_CPU, 0};
    t.ndim = 2;
    t.dtype = dt;
    t.shape = shape;
    return t;
  };
  attn_dtype f32{ATTN_DTYPE_FLOAT, 32, 1}, i32{ATTN_DTYPE_INT, 32, 1};
  attn_tensor tq = tensor(q.data(), qs, f32), tk = tensor(k.data(), ks, f32),
              ti = tensor(idx.data(), is, i32), ts = tensor(s.data(), ss, f32);
  const attn_tensor *args[] = {&tq, &tk, &ti, &ts};
  REQUIRE(e2e_gather_gather(args, nullptr) == ATTN_OK);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t l = 0; l < L; ++l) {
      int64_t r = std::clamp<int64_t>(idx[m * L + l], 0, P - 1);
      double want = 0;
      for (int64_t e = 0; e < E; ++e)
        want += double(q[m * E + e]) * k[r * E + e];
      INFO("m " << m << " l " << l << " idx " << idx[m * L + l]);
      CHECK(std::fabs(s[m * L + l] - want) <= 1e-5 * (1 + std::fabs(want)));
    }
}
