//===- linear.cpp - attn-bench --linear: linear vs softmax attention as N grows
//
// For each sequence length N (queries = keys): our softmax kernel
// (examples/mha.mlir or causal.mlir at d = 128) against linear attention
// (examples/linear.mlir or linear-causal.mlir at d = 128: phi = elu + 1,
// reassociated by attnc to phi(Q) (phi(K)^T V), causal in chunks of the row
// tile), both compiled by attnc and called through the C ABI on the same
// inputs. Softmax attention costs O(N^2 d) per head, linear O(N d^2): the
// table gives both times, their ratio and the linear kernel's time per
// token, which stays flat as N grows. The linear kernel's output is checked
// against a float64 evaluation of its quadratic definition on a sample of
// rows (max_abs_err).
//
//===----------------------------------------------------------------------===//

#include "bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <vector>

extern "C" {
attn_status bench_mha_d128_mha(const void *, const attn_launch *);
attn_status bench_causal_d128_causal(const void *, const attn_launch *);
attn_status bench_linear_d128_linear(const void *, const attn_launch *);
attn_status bench_linear_causal_d128_linear_causal(const void *,
                                                   const attn_launch *);
}

namespace attn_bench {

namespace {

/// A row-major f32 tensor [1, bh, n, cols] (or [1, bh, n]) for the C ABI.
RowMajorTensor view(float *data, int64_t bh, int64_t n, int64_t cols) {
  RowMajorTensor r;
  std::vector<int64_t> shape{1, bh, n};
  if (cols)
    shape.push_back(cols);
  r.describe(data, {ATTN_DTYPE_FLOAT, 32, 1}, shape);
  return r;
}

/// Max |o - reference| over `rows` rows spread over every head, the
/// reference being linear attention's quadratic definition in float64.
double linearError(const std::vector<float> &q, const std::vector<float> &k,
                   const std::vector<float> &v, const std::vector<float> &o,
                   int64_t bh, int64_t n, int64_t d, bool causal, int rows) {
  auto phi = [](double x) { return x > 0 ? x + 1.0 : std::exp(x); };
  double worst = 0;
  std::vector<double> acc(d), fq(d);
  for (int r = 0; r < rows; ++r) {
    int64_t head = r % bh, m = (int64_t(r) * 7919) % n;
    if (r == rows - 1)
      m = n - 1;
    const float *qh = &q[(head * n + m) * d];
    for (int64_t e = 0; e < d; ++e)
      fq[e] = phi(qh[e]);
    std::fill(acc.begin(), acc.end(), 0.0);
    double den = 0;
    for (int64_t p = 0; p < (causal ? m + 1 : n); ++p) {
      const float *kp = &k[(head * n + p) * d], *vp = &v[(head * n + p) * d];
      double a = 0;
      for (int64_t e = 0; e < d; ++e)
        a += fq[e] * phi(kp[e]);
      den += a;
      for (int64_t f = 0; f < d; ++f)
        acc[f] += a * vp[f];
    }
    for (int64_t f = 0; f < d; ++f) {
      double err = std::fabs(acc[f] / den - o[(head * n + m) * d + f]);
      if (!(err <= worst))
        worst = err; // NaN sticks
    }
  }
  return worst;
}

} // namespace

int runLinearBench(int64_t bh, const std::vector<int64_t> &ns,
                   const std::vector<int> &causals, int threads, int reps) {
  const int64_t d = 128;
  attn_launch launch{};
  launch.num_threads = threads;
  std::printf("linear attention (examples/linear*.mlir, phi = elu + 1) vs our "
              "softmax kernel (examples/mha.mlir, causal.mlir), d = %lld, bh = "
              "%lld, %d thread%s, median of %d; err = max |o - float64| of "
              "the linear kernel over 64 rows\n",
              (long long)d, (long long)bh, threads, threads == 1 ? "" : "s",
              reps);
  std::printf("%-7s %6s %12s %12s %9s %14s %10s\n", "causal", "n",
              "softmax ms", "linear ms", "ratio", "linear ns/tok", "err");
  int failures = 0;
  for (int causal : causals)
    for (int64_t n : ns) {
      size_t elems = size_t(bh) * size_t(n) * size_t(d);
      std::vector<float> q(elems), k(elems), v(elems), o(elems), lse(bh * n);
      uint64_t s = 777 + uint64_t(n);
      for (std::vector<float> *x : {&q, &k, &v})
        for (float &f : *x) {
          s = s * 6364136223846793005ull + 1442695040888963407ull;
          f = float(double(s >> 40) / double(1ull << 24) * 2.0 - 1.0);
        }
      RowMajorTensor tq = view(q.data(), bh, n, d), tk = view(k.data(), bh, n, d),
                     tv = view(v.data(), bh, n, d), to = view(o.data(), bh, n, d),
                     tl = view(lse.data(), bh, n, 0);
      const attn_tensor *soft[] = {&tq.t, &tk.t, &tv.t, &to.t, &tl.t};
      const attn_tensor *lin[] = {&tq.t, &tk.t, &tv.t, &to.t};
      auto time = [&](attn_status (*fn)(const void *, const attn_launch *),
                      const attn_tensor **args) {
        return medianCallMs(reps, [&] { return fn(args, &launch); });
      };
      double softMs = time(causal ? bench_causal_d128_causal : bench_mha_d128_mha,
                           soft);
      double linMs = time(causal ? bench_linear_causal_d128_linear_causal
                                 : bench_linear_d128_linear,
                          lin);
      double err = linearError(q, k, v, o, bh, n, d, causal, 64);
      bool bad = softMs < 0 || linMs < 0 || !(err < 1e-3);
      failures += bad;
      std::printf("%-7d %6lld %12.2f %12.2f %8.2fx %14.1f %10.2e%s\n", causal,
                  (long long)n, softMs, linMs, softMs / linMs,
                  linMs * 1e6 / double(bh * n), err, bad ? "  FAILED" : "");
      std::fflush(stdout);
    }
  return failures ? 1 : 0;
}

} // namespace attn_bench
