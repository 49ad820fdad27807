//===- bench.h - attn-bench: implementations and their registry ---*- C++ -*-===//
//
// attn-bench times attention implementations on fp32 tensors laid out
// [b, h, n, d] (compact, row-major) and checks them against a float64
// reference. Every implementation is an `Impl` in a `Registry`:
//
//   * built in: the OpenBLAS anchor ("openblas-unfused", anchor_openblas.cpp);
//   * generated kernels: called through the C ABI of include/attn/runtime.h by
//     `AbiKernelImpl` (abi.cpp); register them in generated.cpp;
//   * test doubles (never results): "naive-abi", a hand-written naive kernel
//     with the generated-kernel signature that exercises AbiKernelImpl.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_TOOLS_ATTN_BENCH_BENCH_H
#define ATTN_TOOLS_ATTN_BENCH_BENCH_H

#include "attn/runtime.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace attn_bench {

/// One problem: q [b,h,n,d], k [b,h,n,d], v [b,h,n,d] -> o [b,h,n,d], lse [b,h,n].
/// scores = scale * q k^T, masked to p <= m (top-left aligned) when causal;
/// lse is the natural-log sum of exp of the (scaled, masked) scores.
struct Shape {
  int64_t b = 1, h = 8, n = 1024, d = 128;
  bool causal = false;
  float scale = 0.f; // 1/sqrt(d)
  int64_t bh() const { return b * h; }
};

/// Useful FLOPs: 4*BH*N^2*d, or only the kept (m,p) pairs when causal
/// (4*BH*d*N(N+1)/2).
double usefulFlops(const Shape &s);

class Impl {
public:
  virtual ~Impl() = default;
  /// Name used by --impl. Several impls may share a name: the first one whose
  /// supports() accepts a configuration runs it (e.g. one generated kernel per
  /// mask under one name).
  virtual const char *name() const = 0;
  /// A test double is never part of "--impl all" and is labelled as such.
  virtual bool isTestDouble() const { return false; }
  /// The reference the table's ratio column divides by.
  virtual bool isAnchor() const { return false; }
  /// Whether run() writes lse (a kernel may leave the optional output out).
  virtual bool writesLse() const { return true; }
  /// Whether this impl computes `s`; when not, `why` says why.
  virtual bool supports(const Shape &s, int threads, std::string *why) const = 0;
  /// Writes o and lse. Returns false (and fills `err`) on failure.
  virtual bool run(const float *q, const float *k, const float *v, float *o,
                   float *lse, const Shape &s, int threads,
                   std::string *err) = 0;
  /// Free-form one-line description (library version, memory behaviour).
  virtual std::string describe() const { return ""; }
  /// Called once after the timed runs, before o and lse are checked: an
  /// impl that computes in another storage type converts its outputs here.
  virtual void finish(float *o, float *lse, const Shape &s) {}
};

class Registry {
public:
  void add(std::unique_ptr<Impl> impl) { impls.push_back(std::move(impl)); }
  const std::vector<std::unique_ptr<Impl>> &all() const { return impls; }
  /// Distinct names in registration order.
  std::vector<std::string> names(bool includeTestDoubles) const;
  /// The first impl called `name` that supports `s`; nullptr if none (then
  /// `why` holds the reason of the last candidate, or "unknown impl").
  Impl *find(const std::string &name, const Shape &s, int threads,
             std::string *why) const;
  bool known(const std::string &name) const;

private:
  std::vector<std::unique_ptr<Impl>> impls;
};

//===----------------------------------------------------------------------===//
// Generated kernels through the runtime.h ABI (abi.cpp)
//===----------------------------------------------------------------------===//

/// `attn_status <lib>_<kernel>(const <lib>_<kernel>_args *, const attn_launch *)`
/// where the args struct is one `const attn_tensor *` per cascade argument and
/// result, in the cascade's order. Such a struct has the layout of an array of
/// `const attn_tensor *`, which is what the adapter passes.
using AbiKernelFn = attn_status (*)(const void *args, const attn_launch *launch);

/// What each slot of the args struct holds.
enum class ArgRole { Q, K, V, O, LSE, QDescale, KDescale,
                     Absent /* optional output passed NULL */ };

struct AbiKernelSpec {
  std::string name;          // --impl name
  AbiKernelFn fn = nullptr;  // the generated function
  std::vector<ArgRole> order = {ArgRole::Q, ArgRole::K, ArgRole::V, ArgRole::O,
                                ArgRole::LSE};
  int causal = -1;           // mask the kernel computes: 0 none, 1 causal
                             // (top-left, p <= m), -1 accepts both (the
                             // launch cannot tell it; only for test doubles)
  int64_t staticD = -1;      // head dim baked into the kernel, -1 dynamic
  float scale = 0.f;         // scale baked into the kernel, 0: 1/sqrt(d)
  bool testDouble = false;
  /// Q, K, V, O and LSE stored in bf16: the inputs are rounded once (in the
  /// first call, a warm-up call by default), outputs widened in finish().
  bool bf16 = false;
  /// Q and K quantized to int8 with a descale per (b, h) (absmax / 127,
  /// symmetric; QDescale/KDescale slots), V rounded to bf16, O and LSE f32;
  /// done once per set of inputs, like bf16.
  bool int8 = false;
  /// Optional: the library's attn_last_error, for messages on failure.
  const char *(*lastError)(void) = nullptr;
  std::string description;
};

/// Builds attn_tensor descriptors for [b,h,n,d] / [b,h,n] compact fp32 CPU
/// tensors (explicit row-major strides), and calls `spec.fn` with
/// attn_launch{num_threads = threads}.
std::unique_ptr<Impl> makeAbiKernelImpl(AbiKernelSpec spec);

/// Registers "naive-abi": a test double (a naive kernel written by hand with
/// the generated-kernel signature), used to exercise the adapter. Not a result.
void registerTestDoubles(Registry &r);

} // namespace attn_bench

/// The test doubles behind "naive-abi" (abi.cpp): naive float64 loops with the
/// exact signature of a generated kernel, q,k,v,o,lse order, lse optional.
extern "C" {
attn_status attn_bench_testdouble_naive_mha(const void *args,
                                            const attn_launch *launch);
attn_status attn_bench_testdouble_naive_causal(const void *args,
                                               const attn_launch *launch);
const char *attn_bench_testdouble_last_error(void);
}

namespace attn_bench {

/// A compact row-major tensor descriptor of the C ABI over caller memory
/// (the kernel-versus-kernel modes: --doc-mask, --linear, --paged).
struct RowMajorTensor {
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

/// The median wall time in ms of `reps` calls of `call` (returning an
/// attn_status) after one warm-up call; -1 if any call fails.
template <typename Call> double medianCallMs(int reps, Call &&call) {
  if (call() != ATTN_OK)
    return -1.0;
  std::vector<double> ms;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    if (call() != ATTN_OK)
      return -1.0;
    ms.push_back(std::chrono::duration<double, std::milli>(
                     std::chrono::steady_clock::now() - t0)
                     .count());
  }
  std::sort(ms.begin(), ms.end());
  size_t h = ms.size() / 2;
  return ms.size() % 2 ? ms[h] : 0.5 * (ms[h - 1] + ms[h]);
}

/// --doc-mask (sparse.cpp): the document-mask kernel against the dense one
/// at d = 128 for documents of each length; returns nonzero on failure.
int runDocMaskBench(int64_t bh, int64_t n, int threads, int reps,
                    const std::vector<int64_t> &docLens);

/// --linear (linear.cpp): linear attention against the softmax kernel for
/// each sequence length of `ns`.
int runLinearBench(int64_t bh, const std::vector<int64_t> &ns,
                   const std::vector<int> &causals, int threads, int reps);

/// --paged (paged.cpp): a paged KV cache against contiguous K/V at |p| = n.
int runPagedBench(int64_t n, int threads, int reps);

/// --int8-fly (quant.cpp): INT8 quantized on the fly (prologue + kernel)
/// against the f32 kernel for each sequence length of `ns`.
int runInt8FlyBench(int64_t bh, const std::vector<int64_t> &ns, int threads,
                    int reps);

/// Generated kernels, added by hand in generated.cpp (empty for now).
void registerGeneratedImpls(Registry &r);

/// The OpenBLAS anchor (anchor_openblas.cpp); registers nothing and sets
/// `note` when the bench was built without OpenBLAS.
void registerOpenBlasAnchor(Registry &r, std::string *note);
/// "<openblas config>, core <corename>, threading <mode>"; "" without it.
std::string openBlasInfo();
/// The kernel set OpenBLAS picked at load time ("Haswell", "SkylakeX", ...);
/// "" without OpenBLAS.
std::string openBlasCoreName();

//===----------------------------------------------------------------------===//
// FP32 FMA peak (peak.cpp)
//===----------------------------------------------------------------------===//

struct PeakResult {
  double gflops = 0;  // best of the trials
  std::string isa;    // "avx512f zmm x24", "avx2+fma ymm x12", "scalar"
};
/// Runs an FMA loop with independent accumulators on `threads` std::threads
/// (each ~`seconds` long), best of `trials`; returns total GFLOP/s.
PeakResult measureFmaPeak(int threads, double seconds = 0.15, int trials = 3);

//===----------------------------------------------------------------------===//
// float64 reference (reference.cpp)
//===----------------------------------------------------------------------===//

struct ErrorResult {
  double maxAbsErrO = 0, maxAbsErrLse = 0;
  int64_t rowsChecked = 0;
  bool finite = true;
};
/// Recomputes `rows` rows in float64 (all rows when rows < 0 or >= b*h*n),
/// spread evenly over the heads, the first and last row of each included.
/// `lse` may be NULL (not checked).
ErrorResult checkAgainstReference(const float *q, const float *k,
                                  const float *v, const float *o,
                                  const float *lse, const Shape &s,
                                  int64_t rows);

} // namespace attn_bench

#endif // ATTN_TOOLS_ATTN_BENCH_BENCH_H
