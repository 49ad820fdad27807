//===- anchor_openblas.cpp - attn-bench: the OpenBLAS unfused anchor -------===//
//
// "openblas-unfused": attention the way a framework's math path computes it,
// one (batch, head) at a time:
//
//   S = scale * Q K^T          cblas_sgemm, N x N, all N^2 entries
//   P = exp(S - rowmax)        row softmax in place (rows split over threads);
//                              causal: entries p > m set to 0, max/sum over
//                              p <= m only; lse = rowmax + log(rowsum)
//   O = P V                    cblas_sgemm, N x N by N x d (the full product
//                              even when causal: the zeros are multiplied)
//   O[m,:] *= 1 / rowsum[m]
//
// Threads: openblas_set_num_threads(T) for both GEMMs, an OpenMP loop with T
// threads for the softmax (the same libgomp pool as libopenblas-openmp).
// Memory: one N x N fp32 scratch (S/P), reused across heads: 4 N^2 bytes
// (64 MiB at N = 4096), i.e. O(N^2), on top of q, k, v, o, lse.
//
//===----------------------------------------------------------------------===//

#include "bench.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#if ATTN_BENCH_HAVE_OPENBLAS
#include <cblas.h>
#include <immintrin.h>
// GCC 12 warns about _mm512_undefined_ps() inside its own avx512fintrin.h
// when the intrinsics are used under a target attribute (a false positive).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#if ATTN_BENCH_HAVE_OPENMP
#include <omp.h>
#endif

// Declared here too: the cblas.h found may be the generic one.
extern "C" {
void openblas_set_num_threads(int num_threads);
char *openblas_get_config(void);
char *openblas_get_corename(void);
int openblas_get_parallel(void);
}
#endif

namespace attn_bench {

#if ATTN_BENCH_HAVE_OPENBLAS
namespace {

/// exp(x) for 16 lanes as 2^(x log2 e): round to nearest n, degree-6 Taylor
/// polynomial of 2^f on [-0.5, 0.5] (relative error ~1.2e-7), vscalefps by n.
__attribute__((target("avx512f,fma"))) static inline __m512 exp16(__m512 s) {
  const __m512 c1 = _mm512_set1_ps(0.693147180559945f);
  const __m512 c2 = _mm512_set1_ps(0.240226506959101f);
  const __m512 c3 = _mm512_set1_ps(0.0555041086648216f);
  const __m512 c4 = _mm512_set1_ps(0.00961812910762848f);
  const __m512 c5 = _mm512_set1_ps(0.00133335581464284f);
  const __m512 c6 = _mm512_set1_ps(0.000154035303933816f);
  __m512 x = _mm512_mul_ps(s, _mm512_set1_ps(1.44269504088896341f));
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-150.f)), _mm512_set1_ps(128.f));
  __m512 r = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 f = _mm512_sub_ps(x, r);
  __m512 y = _mm512_fmadd_ps(c6, f, c5);
  y = _mm512_fmadd_ps(y, f, c4);
  y = _mm512_fmadd_ps(y, f, c3);
  y = _mm512_fmadd_ps(y, f, c2);
  y = _mm512_fmadd_ps(y, f, c1);
  y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(y, r);
}

/// One row of the softmax, AVX-512: max over [0,len), p = exp(s - max) in
/// place, zeros in [len, n). Returns the row sum; writes the row max.
__attribute__((target("avx512f,fma"))) double
softmaxRowAvx512(float *row, int64_t len, int64_t n, float *rowMax) {
  const float ninf = -std::numeric_limits<float>::infinity();
  __m512 vmax = _mm512_set1_ps(ninf);
  int64_t p = 0;
  for (; p + 16 <= len; p += 16)
    vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(row + p));
  float mx = _mm512_reduce_max_ps(vmax);
  for (; p < len; ++p)
    mx = std::max(mx, row[p]);
  *rowMax = mx;

  const __m512 vm = _mm512_set1_ps(mx);
  __m512 vsum = _mm512_setzero_ps();
  for (p = 0; p + 16 <= len; p += 16) {
    __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(row + p), vm));
    _mm512_storeu_ps(row + p, e);
    vsum = _mm512_add_ps(vsum, e);
  }
  if (p < len) {
    __mmask16 m = __mmask16((1u << (len - p)) - 1);
    __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, row + p), vm));
    e = _mm512_maskz_mov_ps(m, e);
    _mm512_mask_storeu_ps(row + p, m, e);
    vsum = _mm512_add_ps(vsum, e);
  }
  if (len < n)
    std::memset(row + len, 0, sizeof(float) * size_t(n - len));
  return double(_mm512_reduce_add_ps(vsum));
}

/// Portable fallback (std::exp).
double softmaxRowScalar(float *row, int64_t len, int64_t n, float *rowMax) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t p = 0; p < len; ++p)
    mx = std::max(mx, row[p]);
  *rowMax = mx;
  float sum = 0;
  for (int64_t p = 0; p < len; ++p) {
    row[p] = std::exp(row[p] - mx);
    sum += row[p];
  }
  for (int64_t p = len; p < n; ++p)
    row[p] = 0;
  return sum;
}

class OpenBlasUnfused final : public Impl {
public:
  OpenBlasUnfused() {
    __builtin_cpu_init();
    useAvx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
  }
  ~OpenBlasUnfused() override { std::free(scratch); }
  const char *name() const override { return "openblas-unfused"; }
  bool isAnchor() const override { return true; }
  bool supports(const Shape &s, int, std::string *why) const override {
    if (s.n > 46340) { // N^2 floats must fit the int sizes of cblas
      *why = "N x N scratch too large for cblas int sizes";
      return false;
    }
    return true;
  }
  std::string describe() const override {
    return std::string("S=QK^T and O=PV with cblas_sgemm per head, row softmax (") +
           (useAvx512 ? "AVX-512 exp" : "std::exp") +
           "), N x N fp32 scratch (O(N^2) memory)";
  }
  bool run(const float *q, const float *k, const float *v, float *o, float *lse,
           const Shape &s, int threads, std::string *err) override {
    const int64_t n = s.n, d = s.d;
    size_t need = size_t(n) * size_t(n);
    if (need > capacity) {
      std::free(scratch);
      scratch = static_cast<float *>(std::aligned_alloc(64, (need * sizeof(float) + 63) / 64 * 64));
      capacity = scratch ? need : 0;
      if (!scratch) {
        *err = "out of memory for the N x N scratch";
        return false;
      }
    }
    rowMax.resize(n);
    rowInv.resize(n);
    openblas_set_num_threads(threads);
    float *S = scratch;
    const int N = int(n), D = int(d);
    for (int64_t hh = 0; hh < s.bh(); ++hh) {
      const float *Q = q + hh * n * d, *K = k + hh * n * d, *V = v + hh * n * d;
      float *O = o + hh * n * d;
      float *L = lse ? lse + hh * n : nullptr;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, N, D, s.scale, Q,
                  D, K, D, 0.f, S, N);
      const bool causal = s.causal, avx = useAvx512;
      float *mx = rowMax.data(), *inv = rowInv.data();
#if ATTN_BENCH_HAVE_OPENMP
#pragma omp parallel for num_threads(threads) schedule(dynamic, 16)
#endif
      for (int64_t m = 0; m < n; ++m) {
        int64_t len = causal ? m + 1 : n;
        float *row = S + m * n;
        double sum = avx ? softmaxRowAvx512(row, len, n, &mx[m])
                         : softmaxRowScalar(row, len, n, &mx[m]);
        inv[m] = float(1.0 / sum);
        if (L)
          L[m] = float(double(mx[m]) + std::log(sum));
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, D, N, 1.f, S, N,
                  V, D, 0.f, O, D);
#if ATTN_BENCH_HAVE_OPENMP
#pragma omp parallel for num_threads(threads) schedule(static)
#endif
      for (int64_t m = 0; m < n; ++m)
        for (int64_t f = 0; f < d; ++f)
          O[m * d + f] *= inv[m];
    }
    return true;
  }

private:
  bool useAvx512 = false;
  float *scratch = nullptr;
  size_t capacity = 0;
  std::vector<float> rowMax, rowInv;
};

} // namespace

void registerOpenBlasAnchor(Registry &r, std::string *note) {
  (void)note;
  r.add(std::make_unique<OpenBlasUnfused>());
}

std::string openBlasCoreName() { return openblas_get_corename(); }

std::string openBlasInfo() {
  const char *modes[] = {"sequential", "pthreads", "openmp"};
  int par = openblas_get_parallel();
  std::string s = openblas_get_config(); // "OpenBLAS 0.3.21 ... <core> ..."
  s += ", core ";
  s += openblas_get_corename();
  s += ", threading ";
  s += (par >= 0 && par <= 2) ? modes[par] : "?";
  return s;
}

#else // !ATTN_BENCH_HAVE_OPENBLAS

void registerOpenBlasAnchor(Registry &, std::string *note) {
  *note = "built without OpenBLAS (cblas.h / libopenblas not found): no "
          "openblas-unfused anchor; install libopenblas-openmp-dev and reconfigure";
}
std::string openBlasInfo() { return ""; }
std::string openBlasCoreName() { return ""; }

#endif

} // namespace attn_bench
