//===- sparse.cpp - attn-bench --doc-mask: tile skipping from segment ids --===//
//
// Times the document-mask kernel (examples/document-mask.mlir at d = 128,
// compiled by attnc) against the dense kernel (examples/mha.mlir, d = 128)
// on the same shape, for packed documents of equal length L: the kept
// fraction of (row tile, key tile) pairs is counted from the ids with the
// kernels' 64 x 64 tiles, ideal = dense time x kept fraction, and the
// ratio to ideal is what tile skipping loses (classification, partial
// tiles, fewer tiles per task). Both kernels are called through the C ABI.
//
//===----------------------------------------------------------------------===//

#include "bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

extern "C" {
attn_status bench_mha_d128_mha(const void *, const attn_launch *);
attn_status bench_document_mask_d128_document_mask(const void *,
                                                   const attn_launch *);
}

namespace attn_bench {

namespace {

struct Tensor {
  std::vector<int64_t> shape, strides;
  attn_tensor t{};
  void describe(void *data, attn_dtype dt, std::vector<int64_t> s) {
    shape = std::move(s);
    strides.assign(shape.size(), 1);
    for (int i = int(shape.size()) - 2; i >= 0; --i)
      strides[i] = strides[i + 1] * shape[i + 1];
    t.data = data;
    t.device = {ATTN_DEVICE_CPU, 0};
    t.ndim = int32_t(shape.size());
    t.dtype = dt;
    t.shape = shape.data();
    t.strides = strides.data();
    t.byte_offset = 0;
  }
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}

} // namespace

int runDocMaskBench(int64_t bh, int64_t n, int threads, int reps,
                    const std::vector<int64_t> &docLens) {
  const int64_t d = 128, T = 64;
  const attn_dtype f32{ATTN_DTYPE_FLOAT, 32, 1}, i32{ATTN_DTYPE_INT, 32, 1};
  size_t elems = size_t(bh) * n * d;
  std::vector<float> q(elems), k(elems), v(elems), o(elems), lse(bh * n);
  uint64_t s = 12345;
  auto rnd = [&] {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return float(double(s >> 40) / double(1ull << 24) * 2.0 - 1.0);
  };
  for (size_t i = 0; i < elems; ++i)
    q[i] = rnd(), k[i] = rnd(), v[i] = rnd();
  attn_launch launch{};
  launch.num_threads = threads;
  auto timeIt = [&](auto &&call) {
    call(); // warm-up
    std::vector<double> ms;
    for (int r = 0; r < reps; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      if (call() != ATTN_OK)
        return -1.0;
      ms.push_back(std::chrono::duration<double, std::milli>(
                       std::chrono::steady_clock::now() - t0)
                       .count());
    }
    return median(ms);
  };
  Tensor tq, tk, tv, to, tl, tsq, tsk;
  tq.describe(q.data(), f32, {1, bh, n, d});
  tk.describe(k.data(), f32, {1, bh, n, d});
  tv.describe(v.data(), f32, {1, bh, n, d});
  to.describe(o.data(), f32, {1, bh, n, d});
  tl.describe(lse.data(), f32, {1, bh, n});
  const attn_tensor *dense[] = {&tq.t, &tk.t, &tv.t, &to.t, &tl.t};
  double denseMs =
      timeIt([&] { return bench_mha_d128_mha(dense, &launch); });
  std::printf("document mask vs dense (examples/document-mask.mlir vs "
              "examples/mha.mlir, d = 128; kept tiles counted at 64 x 64, the tiles "
              "attnc's model gives the masked kernel here): bh = %lld, n = "
              "%lld, %d thread%s, median of %d\n",
              (long long)bh, (long long)n, threads, threads == 1 ? "" : "s",
              reps);
  std::printf("%-10s %10s %8s %10s %10s %8s\n", "doc len", "ms", "kept",
              "ideal ms", "dense ms", "/ideal");
  int failures = denseMs < 0;
  for (int64_t len : docLens) {
    std::vector<int32_t> ids(n);
    for (int64_t i = 0; i < n; ++i)
      ids[i] = int32_t(i / len);
    // Kept (row tile, key tile) pairs: id ranges that meet.
    int64_t tiles = (n + T - 1) / T, kept = 0;
    for (int64_t a = 0; a < tiles; ++a)
      for (int64_t c = 0; c < tiles; ++c) {
        int32_t qlo = ids[a * T], qhi = ids[std::min(n, (a + 1) * T) - 1];
        int32_t klo = ids[c * T], khi = ids[std::min(n, (c + 1) * T) - 1];
        kept += khi >= qlo && klo <= qhi;
      }
    double frac = double(kept) / double(tiles * tiles);
    tsq.describe(ids.data(), i32, {1, n});
    tsk.describe(ids.data(), i32, {1, n});
    const attn_tensor *docArgs[] = {&tq.t, &tk.t, &tv.t, &tsq.t,
                                    &tsk.t, &to.t, &tl.t};
    double ms = timeIt([&] {
      return bench_document_mask_d128_document_mask(docArgs, &launch);
    });
    failures += ms < 0;
    double ideal = denseMs * frac;
    std::printf("%-10lld %10.2f %7.1f%% %10.2f %10.2f %7.2fx\n",
                (long long)len, ms, 100 * frac, ideal, denseMs, ms / ideal);
    std::fflush(stdout);
  }
  return failures ? 1 : 0;
}

} // namespace attn_bench
