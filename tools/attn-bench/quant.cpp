//===- quant.cpp - attn-bench --int8-fly: INT8 quantized on the fly ---------===//
//
// SageAttention-style INT8 from f32 inputs (docs/quantize.md, "Lowering on
// the fly quantization"): examples/mha.mlir at d = 128 with Q and K
// annotated `to = i8` per block of 32 tokens, K smoothed, V in f32 or in
// bf16 (SageAttention's INT8 QK^T with 16-bit PV; PV on AVX512-BF16 when
// the host has it).
// attnc splits it into the quantization prologue (..._mha_quant: K's mean,
// the block scales, int8 Q and K, the smoothing term; one task per head)
// and the attention kernel (..._mha: VNNI dot products when the host has
// them). Both are timed, and their sum against our f32 kernel
// (examples/mha.mlir, d = 128) on the same inputs (uniform [-1, 1), plus a
// per-channel K offset of 1). max_abs_err: the largest |o_int8 - o_f32|, a
// sanity check of the quantized result (not a timing).
//
//===----------------------------------------------------------------------===//

#include "bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

extern "C" {
attn_status bench_mha_d128_mha(const void *, const attn_launch *);
attn_status bench_int8_fly_d128_mha_quant(const void *, const attn_launch *);
attn_status bench_int8_fly_d128_mha(const void *, const attn_launch *);
attn_status bench_int8_fly_bf16v_d128_mha_quant(const void *,
                                                const attn_launch *);
attn_status bench_int8_fly_bf16v_d128_mha(const void *, const attn_launch *);
}

namespace attn_bench {

namespace {

/// A compact row-major tensor [1, bh, n, cols] ([1, bh, n] for cols 0).
struct QView {
  int64_t shape[4], strides[4];
  attn_tensor t{};
  QView(void *data, attn_dtype dt, int64_t bh, int64_t n, int64_t cols) {
    int nd = cols ? 4 : 3;
    int64_t s[4] = {1, bh, n, cols};
    int64_t stride = 1;
    for (int i = nd - 1; i >= 0; --i) {
      shape[i] = s[i];
      strides[i] = stride;
      stride *= s[i];
    }
    t.data = data;
    t.device = {ATTN_DEVICE_CPU, 0};
    t.ndim = nd;
    t.dtype = dt;
    t.shape = shape;
    t.strides = strides;
  }
};

} // namespace

int runInt8FlyBench(int64_t bh, const std::vector<int64_t> &ns, int threads,
                    int reps) {
  const int64_t d = 128;
  const attn_dtype f32{ATTN_DTYPE_FLOAT, 32, 1}, i8{ATTN_DTYPE_INT, 8, 1};
  attn_launch launch{};
  launch.num_threads = threads;
  std::printf("INT8 on the fly (mha d = 128, Q and K per block of 32, K "
              "smoothed; V in f32 or bf16) vs our f32 kernel "
              "(examples/mha.mlir), bh = "
              "%lld, %d thread%s, median of %d\n",
              (long long)bh, threads, threads == 1 ? "" : "s", reps);
  std::printf("%-5s %6s %10s %12s %12s %14s %9s %10s %12s\n", "V", "n",
              "f32 ms", "prologue ms", "kernel ms", "prologue+kern", "speedup",
              "prologue%", "max_abs_err");
  int failures = 0;
  for (bool bf16V : {false, true})
  for (int64_t n : ns) {
    size_t elems = size_t(bh) * size_t(n) * size_t(d);
    std::vector<float> q(elems), k(elems), v(elems), o(elems), o8(elems),
        lse(bh * n), lse8(bh * n), sq(bh * n), sk(bh * n), smooth(bh * n);
    std::vector<int8_t> qi(elems), ki(elems);
    std::vector<uint16_t> vb(elems);
    uint64_t s = 4242 + uint64_t(n);
    for (std::vector<float> *x : {&q, &k, &v})
      for (float &f : *x) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        f = float(double(s >> 40) / double(1ull << 24) * 2.0 - 1.0);
      }
    // A per-(head, channel) offset of K shared by every token (what K
    // smoothing removes).
    for (int64_t h = 0; h < bh; ++h)
      for (int64_t e = 0; e < d; ++e) {
        float off = std::sin(float(h * d + e)); // in [-1, 1]
        for (int64_t p = 0; p < n; ++p)
          k[(h * n + p) * d + e] += off;
      }
    // V in bf16 (round to nearest even): the bf16 kernel's V.
    for (size_t j = 0; j < elems; ++j) {
      uint32_t u;
      std::memcpy(&u, &v[j], 4);
      u += 0x7fffu + ((u >> 16) & 1u);
      vb[j] = uint16_t(u >> 16);
    }
    const attn_dtype bf16{ATTN_DTYPE_BFLOAT, 16, 1};
    QView tvb(vb.data(), bf16, bh, n, d);
    QView tq(q.data(), f32, bh, n, d), tk(k.data(), f32, bh, n, d),
        tv(v.data(), f32, bh, n, d), to(o.data(), f32, bh, n, d),
        tl(lse.data(), f32, bh, n, 0), tqi(qi.data(), i8, bh, n, d),
        tki(ki.data(), i8, bh, n, d), tsq(sq.data(), f32, bh, n, 0),
        tsk(sk.data(), f32, bh, n, 0), tsm(smooth.data(), f32, bh, n, 0),
        to8(o8.data(), f32, bh, n, d), tl8(lse8.data(), f32, bh, n, 0);
    const attn_tensor *f32Args[] = {&tq.t, &tk.t, &tv.t, &to.t, &tl.t};
    const attn_tensor *proArgs[] = {&tq.t,  &tk.t,  &tqi.t, &tki.t,
                                    &tsq.t, &tsk.t, &tsm.t};
    const attn_tensor *kerArgs[] = {&tqi.t, &tki.t, bf16V ? &tvb.t : &tv.t,
                                    &tsq.t, &tsk.t, &tsm.t, &to8.t, &tl8.t};
    using Fn = attn_status (*)(const void *, const attn_launch *);
    // Median times of `fns` called in sequence, and of each of them.
    auto time = [&](std::vector<std::pair<Fn, const attn_tensor **>> fns,
                    std::vector<double> &each) {
      std::vector<std::vector<double>> ms(fns.size() + 1);
      for (int r = 0; r <= reps; ++r) { // the first run warms up
        auto t0 = std::chrono::steady_clock::now();
        auto last = t0;
        for (size_t i = 0; i < fns.size(); ++i) {
          if (fns[i].first(fns[i].second, &launch) != ATTN_OK) {
            std::printf("call failed: %s\n", attn_last_error());
            return -1.0;
          }
          auto now = std::chrono::steady_clock::now();
          if (r)
            ms[i + 1].push_back(
                std::chrono::duration<double, std::milli>(now - last).count());
          last = now;
        }
        if (r)
          ms[0].push_back(
              std::chrono::duration<double, std::milli>(last - t0).count());
      }
      for (auto &m : ms)
        std::nth_element(m.begin(), m.begin() + m.size() / 2, m.end());
      each.clear();
      for (size_t i = 1; i < ms.size(); ++i)
        each.push_back(ms[i][ms[i].size() / 2]);
      return ms[0][ms[0].size() / 2];
    };
    std::vector<double> each, parts;
    double f32Ms = time({{bench_mha_d128_mha, f32Args}}, each);
    double bothMs =
        bf16V ? time({{bench_int8_fly_bf16v_d128_mha_quant, proArgs},
                      {bench_int8_fly_bf16v_d128_mha, kerArgs}},
                     parts)
              : time({{bench_int8_fly_d128_mha_quant, proArgs},
                      {bench_int8_fly_d128_mha, kerArgs}},
                     parts);
    double err = 0;
    for (size_t j = 0; j < elems; ++j)
      err = std::max(err, double(std::fabs(o8[j] - o[j])));
    bool bad = f32Ms < 0 || bothMs < 0 || !(err < 0.05);
    failures += bad;
    std::printf("%-5s %6lld %10.2f %12.2f %12.2f %14.2f %8.2fx %9.1f%% "
                "%12.2e%s\n",
                bf16V ? "bf16" : "f32", (long long)n, f32Ms, bad ? -1.0 : parts[0],
                bad ? -1.0 : parts[1], bothMs, f32Ms / bothMs,
                bad ? 0.0 : 100.0 * parts[0] / bothMs, err,
                bad ? "  FAILED" : "");
    std::fflush(stdout);
  }
  return failures ? 1 : 0;
}

} // namespace attn_bench
