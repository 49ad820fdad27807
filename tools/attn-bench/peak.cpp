//===- peak.cpp - attn-bench: measured FP32 FMA peak ----------------------===//
//
// The peak every percentage is taken against: a loop of independent FMA
// chains (acc = acc * x + y), enough of them to cover latency x throughput
// (Zen 5: 4-cycle FMA on 2 pipes needs >= 8 zmm chains; 24 are used, as in
// ../shared/notes/cpu-kernels.md), run on T std::threads at once. The wide
// variant is chosen at run time with __builtin_cpu_supports; each lives in a
// function with a target attribute, so the binary itself needs no -march.
//
//===----------------------------------------------------------------------===//

#include "bench.h"

#include <immintrin.h>

// GCC 12 warns about _mm512_undefined_ps() inside its own avx512fintrin.h
// when the intrinsics are used under a target attribute (a false positive).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

namespace attn_bench {
namespace {

using Clock = std::chrono::steady_clock;

// acc = acc * x + y converges to y / (1 - x) = 1: no overflow or denormals.
#define ATTN_FMA_CHAINS(X)                                                     \
  X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define ATTN_FMA_CHAINS_HI(X)                                                  \
  X(12) X(13) X(14) X(15) X(16) X(17) X(18) X(19) X(20) X(21) X(22) X(23)

/// 24 zmm chains: 24 * 16 lanes * 2 flop per iteration.
__attribute__((target("avx512f,fma"), noinline)) float
fmaLoopAvx512(int64_t iters) {
  const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-6f);
#define DECL(i) __m512 a##i = _mm512_set1_ps(0.5f + (i) * 1e-3f);
  ATTN_FMA_CHAINS(DECL) ATTN_FMA_CHAINS_HI(DECL)
#undef DECL
  for (int64_t it = 0; it < iters; ++it) {
#define STEP(i) a##i = _mm512_fmadd_ps(a##i, x, y);
    ATTN_FMA_CHAINS(STEP) ATTN_FMA_CHAINS_HI(STEP)
#undef STEP
  }
  __m512 s = _mm512_setzero_ps();
#define SUM(i) s = _mm512_add_ps(s, a##i);
  ATTN_FMA_CHAINS(SUM) ATTN_FMA_CHAINS_HI(SUM)
#undef SUM
  return _mm512_reduce_add_ps(s);
}
constexpr double kFlopPerIterAvx512 = 24 * 16 * 2;

/// 12 ymm chains (16 ymm registers: 12 + x + y): 12 * 8 lanes * 2 flop.
__attribute__((target("avx2,fma"), noinline)) float fmaLoopAvx2(int64_t iters) {
  const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-6f);
#define DECL(i) __m256 a##i = _mm256_set1_ps(0.5f + (i) * 1e-3f);
  ATTN_FMA_CHAINS(DECL)
#undef DECL
  for (int64_t it = 0; it < iters; ++it) {
#define STEP(i) a##i = _mm256_fmadd_ps(a##i, x, y);
    ATTN_FMA_CHAINS(STEP)
#undef STEP
  }
  __m256 s = _mm256_setzero_ps();
#define SUM(i) s = _mm256_add_ps(s, a##i);
  ATTN_FMA_CHAINS(SUM)
#undef SUM
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, s);
  float r = 0;
  for (float l : lanes)
    r += l;
  return r;
}
constexpr double kFlopPerIterAvx2 = 12 * 8 * 2;

/// Portable fallback: 8 scalar chains (what the compiler makes of it).
__attribute__((noinline)) float fmaLoopScalar(int64_t iters) {
  float a[8] = {0.5f, 0.51f, 0.52f, 0.53f, 0.54f, 0.55f, 0.56f, 0.57f};
  for (int64_t it = 0; it < iters; ++it)
    for (float &v : a)
      v = v * 0.999999f + 1e-6f;
  float r = 0;
  for (float v : a)
    r += v;
  return r;
}
constexpr double kFlopPerIterScalar = 8 * 2;

std::atomic<float> sink{0};

} // namespace

PeakResult measureFmaPeak(int threads, double seconds, int trials) {
  float (*loop)(int64_t) = fmaLoopScalar;
  double flopPerIter = kFlopPerIterScalar;
  PeakResult res;
  res.isa = "scalar x8";
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma")) {
    loop = fmaLoopAvx512;
    flopPerIter = kFlopPerIterAvx512;
    res.isa = "avx512f zmm x24";
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    loop = fmaLoopAvx2;
    flopPerIter = kFlopPerIterAvx2;
    res.isa = "avx2+fma ymm x12";
  }
  threads = std::max(threads, 1);

  // Calibrate the iteration count on one thread (also warms the clock up).
  int64_t iters = 1 << 16;
  for (;;) {
    auto t0 = Clock::now();
    sink.store(sink.load() + loop(iters));
    double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    if (dt > 0.02 || iters > (int64_t(1) << 40)) {
      iters = std::max<int64_t>(1, int64_t(iters * (seconds / dt)));
      break;
    }
    iters *= 4;
  }

  for (int t = 0; t < trials; ++t) {
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> pool;
    std::vector<double> secs(threads, 0);
    for (int i = 0; i < threads; ++i)
      pool.emplace_back([&, i] {
        ready.fetch_add(1);
        while (!go.load(std::memory_order_acquire)) {
        }
        auto t0 = Clock::now();
        float r = loop(iters);
        secs[i] = std::chrono::duration<double>(Clock::now() - t0).count();
        float cur = sink.load();
        sink.store(cur + r);
      });
    while (ready.load() < threads) {
    }
    auto t0 = Clock::now();
    go.store(true, std::memory_order_release);
    for (auto &th : pool)
      th.join();
    double wall = std::chrono::duration<double>(Clock::now() - t0).count();
    // All threads run the same work: the wall time of the slowest counts.
    wall = std::max(wall, *std::max_element(secs.begin(), secs.end()));
    res.gflops = std::max(res.gflops, flopPerIter * iters * threads / wall * 1e-9);
  }
  return res;
}

} // namespace attn_bench
