//===- paged.cpp - attn-bench --paged: a paged KV cache against contiguous --===//
//
// Times examples/paged-kv.mlir (at d = 128; pages of 16 and of 64 tokens,
// reached through a shuffled block table) against the same attention with
// each sequence's keys and values contiguous (contiguous-kv.mlir here): the
// same queries, bottom-right causal mask, seq_lens and GQA 4:1, both
// compiled by attnc and called through the C ABI. Two shapes: prefill (one
// sequence whose |m| = |p| queries are all new tokens: causal; 8 query
// heads over 2 KV heads) and decode (one query per sequence, 8 sequences,
// 32 query heads over 8 KV heads). The paged kernel's outputs are compared
// with the contiguous kernel's (max_abs_diff: both sum in the same order,
// so they should agree to rounding).
//
//===----------------------------------------------------------------------===//

#include "bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

extern "C" {
attn_status bench_paged_kv_d128_paged_kv(const void *, const attn_launch *);
attn_status bench_paged_kv_p64_d128_paged_kv(const void *, const attn_launch *);
attn_status bench_contiguous_kv_d128_contiguous_kv(const void *,
                                                   const attn_launch *);
}

namespace attn_bench {

int runPagedBench(int64_t n, int threads, int reps) {
  const int64_t d = 128;
  const attn_dtype f32{ATTN_DTYPE_FLOAT, 32, 1}, i32{ATTN_DTYPE_INT, 32, 1};
  attn_launch launch{};
  launch.num_threads = threads;
  std::printf("paged KV cache (examples/paged-kv.mlir, d = %lld, shuffled "
              "block table) vs contiguous K/V (tools/attn-bench/"
              "contiguous-kv.mlir), same mask, GQA 4:1; |p| = %lld, %d "
              "thread%s, median of %d\n",
              (long long)d, (long long)n, threads, threads == 1 ? "" : "s",
              reps);
  std::printf("%-8s %4s %4s %5s %6s %12s %12s %8s %10s %12s\n", "shape", "b",
              "h", "m", "page", "paged ms", "contig ms", "ratio", "GFLOP/s",
              "max|diff|");
  int failures = 0;
  struct Shape {
    const char *name;
    int64_t b, g, m;
  };
  // Prefill first: after the decode shape's buffers (1 GiB at |p| = 4096)
  // are freed, the prefill kernels measured 2.5x slower in this process
  // than alone (contiguous 257-290 ms against 105 ms), so the small shape
  // runs before the large one.
  for (Shape sh : {Shape{"prefill", 1, 2, n}, Shape{"decode", 8, 8, 1}}) {
    int64_t B = sh.b, G = sh.g, H = 4 * G, M = sh.m;
    uint64_t s = 99 + uint64_t(M);
    auto rnd = [&] {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      return float(double(s >> 40) / double(1ull << 24) * 2.0 - 1.0);
    };
    std::vector<float> q(B * H * M * d), kc(B * n * G * d), vc(B * n * G * d);
    for (float &x : q)
      x = rnd();
    for (float &x : kc)
      x = rnd();
    for (float &x : vc)
      x = rnd();
    std::vector<int32_t> lens(B, int32_t(n));
    std::vector<float> oc(B * H * M * d), lc(B * H * M);
    RowMajorTensor tq, tk, tv, tlen, to, tl;
    tq.describe(q.data(), f32, {B, H, M, d});
    tk.describe(kc.data(), f32, {B, n, G, d});
    tv.describe(vc.data(), f32, {B, n, G, d});
    tlen.describe(lens.data(), i32, {B});
    to.describe(oc.data(), f32, {B, H, M, d});
    tl.describe(lc.data(), f32, {B, H, M});
    const attn_tensor *cargs[] = {&tq.t, &tk.t, &tv.t, &tlen.t, &to.t, &tl.t};
    auto timeIt = [&](auto &&call) { return medianCallMs(reps, call); };
    double contMs = timeIt([&] {
      return bench_contiguous_kv_d128_contiguous_kv(cargs, &launch);
    });
    // Useful FLOPs: every query against the keys at or before it.
    double flops = 0;
    for (int64_t i = 0; i < M; ++i)
      flops += 4.0 * B * H * double(n - M + i + 1) * d;
    for (int64_t T : {16, 64}) {
      // The same keys, cut into pages of T and scattered over a pool with
      // a few spare pages, in shuffled order.
      int64_t P1 = (n + T - 1) / T, pages = B * P1 + 3;
      std::vector<int32_t> table(B * P1), perm(pages);
      std::iota(perm.begin(), perm.end(), 0);
      std::shuffle(perm.begin(), perm.end(), std::mt19937(uint32_t(T)));
      for (int64_t i = 0; i < B * P1; ++i)
        table[i] = perm[i];
      std::vector<float> kp(pages * T * G * d), vp(pages * T * G * d);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t p = 0; p < n; ++p) {
          int64_t page = table[b * P1 + p / T], slot = p % T;
          for (int64_t x = 0; x < G * d; ++x) {
            kp[(page * T + slot) * G * d + x] = kc[(b * n + p) * G * d + x];
            vp[(page * T + slot) * G * d + x] = vc[(b * n + p) * G * d + x];
          }
        }
      std::vector<float> op(oc.size()), lp(lc.size());
      RowMajorTensor tkp, tvp, ttab, top, tlp;
      tkp.describe(kp.data(), f32, {pages, T, G, d});
      tvp.describe(vp.data(), f32, {pages, T, G, d});
      ttab.describe(table.data(), i32, {B, P1});
      top.describe(op.data(), f32, {B, H, M, d});
      tlp.describe(lp.data(), f32, {B, H, M});
      const attn_tensor *pargs[] = {&tq.t,   &tkp.t,   &tvp.t, &ttab.t,
                                    &tlen.t, &top.t, &tlp.t};
      auto fn = T == 16 ? bench_paged_kv_d128_paged_kv
                        : bench_paged_kv_p64_d128_paged_kv;
      double ms = timeIt([&] { return fn(pargs, &launch); });
      double diff = 0;
      for (size_t i = 0; i < op.size(); ++i)
        diff = std::max(diff, double(std::fabs(op[i] - oc[i])));
      bool bad = ms < 0 || contMs < 0 || !(diff < 1e-4);
      failures += bad;
      std::printf("%-8s %4lld %4lld %5lld %6lld %12.2f %12.2f %7.2fx %10.1f "
                  "%12.2e%s\n",
                  sh.name, (long long)B, (long long)H, (long long)M,
                  (long long)T, ms, contMs, ms / contMs, flops / ms / 1e6,
                  diff, bad ? "  FAILED" : "");
      std::fflush(stdout);
    }
  }
  return failures ? 1 : 0;
}

} // namespace attn_bench
