//===- abi.cpp - attn-bench: generated kernels through runtime.h ----------===//
//
// AbiKernelImpl calls a function with the signature of a generated kernel,
//
//     attn_status f(const <lib>_<kernel>_args *args, const attn_launch *launch);
//
// building one attn_tensor (DLTensor layout) per slot of the args struct.
//
// Also here: the "naive-abi" TEST DOUBLE, a naive kernel written by hand with
// that signature. It exists only to exercise the adapter (descriptor
// construction, argument order, optional outputs, error propagation); its
// timings are not results.
//
//===----------------------------------------------------------------------===//

#include "bench.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

namespace attn_bench {
namespace {

const char *statusName(attn_status s) {
  switch (s) {
  case ATTN_OK: return "ok";
  case ATTN_ERR_NULL_POINTER: return "null pointer";
  case ATTN_ERR_DEVICE: return "wrong device";
  case ATTN_ERR_DTYPE: return "wrong dtype";
  case ATTN_ERR_NDIM: return "wrong ndim";
  case ATTN_ERR_SHAPE: return "shape mismatch";
  case ATTN_ERR_STRIDE: return "unsupported stride";
  case ATTN_ERR_ALIGNMENT: return "misaligned data";
  case ATTN_ERR_METADATA: return "invalid metadata";
  case ATTN_ERR_NO_KERNEL: return "no kernel for this device/CPU";
  case ATTN_ERR_OUT_OF_MEMORY: return "out of memory";
  case ATTN_ERR_THREADS: return "thread pool failed";
  case ATTN_ERR_INVALID_ARGUMENT: return "invalid argument";
  case ATTN_ERR_NO_DEVICE: return "no CUDA driver or device";
  case ATTN_ERR_DRIVER: return "CUDA driver call failed";
  }
  return "unknown status";
}

class AbiKernelImpl final : public Impl {
public:
  explicit AbiKernelImpl(AbiKernelSpec spec) : spec(std::move(spec)) {}
  const char *name() const override { return spec.name.c_str(); }
  bool isTestDouble() const override { return spec.testDouble; }
  bool writesLse() const override {
    return std::find(spec.order.begin(), spec.order.end(), ArgRole::LSE) !=
           spec.order.end();
  }
  std::string describe() const override { return spec.description; }

  bool supports(const Shape &s, int, std::string *why) const override {
    if (!spec.fn) {
      *why = "no function";
      return false;
    }
    if (spec.causal >= 0 && spec.causal != int(s.causal)) {
      *why = spec.causal ? "kernel is causal" : "kernel is not causal";
      return false;
    }
    if (spec.staticD >= 0 && spec.staticD != s.d) {
      *why = "kernel has d = " + std::to_string(spec.staticD);
      return false;
    }
    if (spec.scale != 0.f && std::fabs(spec.scale - s.scale) > 1e-7f * s.scale) {
      *why = "kernel's scale differs from 1/sqrt(d)";
      return false;
    }
    return true;
  }

  bool run(const float *q, const float *k, const float *v, float *o, float *lse,
           const Shape &s, int threads, std::string *err) override {
    if (spec.bf16) {
      // Rounded copies of the inputs, made once per set of inputs.
      const size_t n4 = size_t(s.bh()) * size_t(s.n) * size_t(s.d);
      if (q != lastQ || k != lastK || v != lastV || n4 != b16q.size()) {
        b16q = toBF16(q, n4);
        b16k = toBF16(k, n4);
        b16v = toBF16(v, n4);
        b16o.assign(n4, 0);
        b16l.assign(size_t(s.bh()) * size_t(s.n), 0);
        lastQ = q, lastK = k, lastV = v;
      }
      return call(b16q.data(), b16k.data(), b16v.data(), b16o.data(),
                  b16l.data(), s, threads, err);
    }
    if (spec.int8) {
      const size_t per = size_t(s.n) * size_t(s.d), bh = size_t(s.bh());
      if (q != lastQ || k != lastK || v != lastV || bh * per != i8q.size()) {
        auto quantize = [&](const float *x, std::vector<int8_t> &out,
                            std::vector<float> &descale) {
          out.resize(bh * per);
          descale.resize(bh);
          for (size_t h = 0; h < bh; ++h) {
            float mx = 0;
            for (size_t i = 0; i < per; ++i)
              mx = std::max(mx, std::fabs(x[h * per + i]));
            float sc = mx > 0 ? mx / 127.0f : 1.0f;
            descale[h] = sc;
            for (size_t i = 0; i < per; ++i)
              out[h * per + i] = int8_t(std::lrint(x[h * per + i] / sc));
          }
        };
        quantize(q, i8q, qDescale);
        quantize(k, i8k, kDescale);
        b16v = toBF16(v, bh * per);
        lastQ = q, lastK = k, lastV = v;
      }
      return call(i8q.data(), i8k.data(), b16v.data(), o, lse, s, threads,
                  err);
    }
    return call(q, k, v, o, lse, s, threads, err);
  }

  void finish(float *o, float *lse, const Shape &s) override {
    if (!spec.bf16)
      return;
    auto widen = [](const std::vector<uint16_t> &x, float *out) {
      for (size_t i = 0; i < x.size(); ++i) {
        uint32_t bits = uint32_t(x[i]) << 16;
        std::memcpy(&out[i], &bits, 4);
      }
    };
    widen(b16o, o);
    widen(b16l, lse);
  }

private:
  static std::vector<uint16_t> toBF16(const float *x, size_t n) {
    std::vector<uint16_t> out(n);
    for (size_t i = 0; i < n; ++i) {
      uint32_t bits;
      std::memcpy(&bits, &x[i], 4);
      bits += 0x7fff + ((bits >> 16) & 1); // round to nearest even (finite x)
      out[i] = uint16_t(bits >> 16);
    }
    return out;
  }

  bool call(const void *q, const void *k, const void *v, void *o, void *lse,
            const Shape &s, int threads, std::string *err) {
    // [b, h, n, d] and [b, h, n], compact row-major, explicit strides
    // (a DLPack producer such as PyTorch passes them too).
    const int64_t shape4[4] = {s.b, s.h, s.n, s.d};
    const int64_t strides4[4] = {s.h * s.n * s.d, s.n * s.d, s.d, 1};
    const int64_t shape3[3] = {s.b, s.h, s.n};
    const int64_t strides3[3] = {s.h * s.n, s.n, 1};
    const attn_dtype dtype = spec.bf16 ? attn_dtype{ATTN_DTYPE_BFLOAT, 16, 1}
                                       : attn_dtype{ATTN_DTYPE_FLOAT, 32, 1};
    auto make = [&](const void *data, int ndim, const int64_t *shape,
                    const int64_t *strides) {
      attn_tensor t{};
      t.data = const_cast<void *>(data);
      t.device = attn_device{ATTN_DEVICE_CPU, 0};
      t.ndim = ndim;
      t.dtype = dtype;
      t.shape = shape;
      t.strides = strides;
      t.byte_offset = 0;
      return t;
    };
    attn_tensor tq = make(q, 4, shape4, strides4);
    attn_tensor tk = make(k, 4, shape4, strides4);
    attn_tensor tv = make(v, 4, shape4, strides4);
    attn_tensor to = make(o, 4, shape4, strides4);
    attn_tensor tl = make(lse, 3, shape3, strides3);
    const int64_t shape2[2] = {s.b, s.h}, strides2[2] = {s.h, 1};
    attn_tensor tqs = make(qDescale.data(), 2, shape2, strides2);
    attn_tensor tks = make(kDescale.data(), 2, shape2, strides2);
    if (spec.int8) {
      tq.dtype = tk.dtype = attn_dtype{ATTN_DTYPE_INT, 8, 1};
      tv.dtype = attn_dtype{ATTN_DTYPE_BFLOAT, 16, 1};
      to.dtype = tl.dtype = tqs.dtype = tks.dtype =
          attn_dtype{ATTN_DTYPE_FLOAT, 32, 1};
    }
    std::vector<const attn_tensor *> args;
    for (ArgRole role : spec.order) {
      switch (role) {
      case ArgRole::Q: args.push_back(&tq); break;
      case ArgRole::K: args.push_back(&tk); break;
      case ArgRole::V: args.push_back(&tv); break;
      case ArgRole::O: args.push_back(&to); break;
      case ArgRole::LSE: args.push_back(&tl); break;
      case ArgRole::QDescale: args.push_back(&tqs); break;
      case ArgRole::KDescale: args.push_back(&tks); break;
      case ArgRole::Absent: args.push_back(nullptr); break;
      }
    }
    attn_launch launch{};
    launch.num_threads = threads;
    attn_status st = spec.fn(args.data(), &launch);
    if (st != ATTN_OK) {
      *err = std::string("status ") + std::to_string(int(st)) + " (" +
             statusName(st) + ")";
      if (spec.lastError && spec.lastError()[0])
        *err += std::string(": ") + spec.lastError();
      return false;
    }
    return true;
  }

  AbiKernelSpec spec;
  const float *lastQ = nullptr, *lastK = nullptr, *lastV = nullptr;
  std::vector<uint16_t> b16q, b16k, b16v, b16o, b16l;
  std::vector<int8_t> i8q, i8k;
  std::vector<float> qDescale, kDescale;
};

//===----------------------------------------------------------------------===//
// TEST DOUBLE: a naive kernel with the generated-kernel signature.
//===----------------------------------------------------------------------===//

thread_local std::string testDoubleError;

attn_status fail(attn_status st, std::string msg) {
  testDoubleError = std::move(msg);
  return st;
}

/// Checks one tensor the way the runtime's validation would (compact fp32
/// CPU tensor of the expected rank and sizes; NULL strides = compact).
attn_status checkTensor(const attn_tensor *t, const char *name, int ndim,
                        const int64_t *expect) {
  if (!t || !t->data)
    return fail(ATTN_ERR_NULL_POINTER, std::string(name) + " is NULL");
  if (t->device.device_type != ATTN_DEVICE_CPU)
    return fail(ATTN_ERR_DEVICE, std::string(name) + " is not on the CPU");
  if (t->dtype.code != ATTN_DTYPE_FLOAT || t->dtype.bits != 32 || t->dtype.lanes != 1)
    return fail(ATTN_ERR_DTYPE, std::string(name) + " is not f32");
  if (t->ndim != ndim)
    return fail(ATTN_ERR_NDIM, std::string(name) + " has " +
                                   std::to_string(t->ndim) + " dimensions, expected " +
                                   std::to_string(ndim));
  int64_t stride = 1;
  for (int i = ndim - 1; i >= 0; --i) {
    if (expect && t->shape[i] != expect[i])
      return fail(ATTN_ERR_SHAPE, std::string(name) + " dimension " +
                                      std::to_string(i) + " is " +
                                      std::to_string(t->shape[i]) + ", expected " +
                                      std::to_string(expect[i]));
    if (t->strides && t->shape[i] > 1 && t->strides[i] != stride)
      return fail(ATTN_ERR_STRIDE, std::string(name) + " is not compact");
    stride *= t->shape[i];
  }
  if (t->byte_offset % sizeof(float))
    return fail(ATTN_ERR_ALIGNMENT, std::string(name) + " byte_offset");
  return ATTN_OK;
}

template <bool Causal>
attn_status naiveAttention(const void *argsPtr, const attn_launch *launch) {
  testDoubleError.clear();
  if (!argsPtr)
    return fail(ATTN_ERR_NULL_POINTER, "args is NULL");
  const attn_tensor *const *args = static_cast<const attn_tensor *const *>(argsPtr);
  const attn_tensor *tq = args[0], *tk = args[1], *tv = args[2], *to = args[3],
                    *tl = args[4];
  attn_status st = checkTensor(tq, "q", 4, nullptr);
  if (st != ATTN_OK)
    return st;
  const int64_t *sz = tq->shape;
  const int64_t lseShape[3] = {sz[0], sz[1], sz[2]};
  if ((st = checkTensor(tk, "k", 4, sz)) != ATTN_OK ||
      (st = checkTensor(tv, "v", 4, sz)) != ATTN_OK ||
      (st = checkTensor(to, "o", 4, sz)) != ATTN_OK ||
      (tl && (st = checkTensor(tl, "lse", 3, lseShape)) != ATTN_OK))
    return st;
  if (launch && launch->num_threads < 0)
    return fail(ATTN_ERR_INVALID_ARGUMENT, "num_threads < 0");
  auto at = [](const attn_tensor *t) {
    return reinterpret_cast<float *>(static_cast<char *>(t->data) + t->byte_offset);
  };
  const float *q = at(tq), *k = at(tk), *v = at(tv);
  float *o = at(to), *lse = tl ? at(tl) : nullptr;
  const int64_t bh = sz[0] * sz[1], n = sz[2], d = sz[3];
  const double scale = 1.0 / std::sqrt(double(d));

  auto heads = [&](int64_t begin, int64_t end) {
    std::vector<double> sc(n), acc(d);
    for (int64_t hh = begin; hh < end; ++hh)
      for (int64_t m = 0; m < n; ++m) {
        const int64_t len = Causal ? m + 1 : n;
        double gm = -std::numeric_limits<double>::infinity();
        for (int64_t p = 0; p < len; ++p) {
          double dot = 0;
          for (int64_t e = 0; e < d; ++e)
            dot += double(q[(hh * n + m) * d + e]) * k[(hh * n + p) * d + e];
          sc[p] = dot * scale;
          gm = std::max(gm, sc[p]);
        }
        double sd = 0;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t p = 0; p < len; ++p) {
          double w = std::exp(sc[p] - gm);
          sd += w;
          for (int64_t f = 0; f < d; ++f)
            acc[f] += w * v[(hh * n + p) * d + f];
        }
        for (int64_t f = 0; f < d; ++f)
          o[(hh * n + m) * d + f] = float(acc[f] / sd);
        if (lse)
          lse[hh * n + m] = float(gm + std::log(sd));
      }
  };
  int threads = launch ? launch->num_threads : 0;
  if (threads == 0)
    threads = int(std::max(1u, std::thread::hardware_concurrency()));
  threads = int(std::min<int64_t>(threads, std::max<int64_t>(bh, 1)));
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t)
    pool.emplace_back(heads, bh * t / threads, bh * (t + 1) / threads);
  heads(0, bh / threads);
  for (auto &th : pool)
    th.join();
  return ATTN_OK;
}

} // namespace

std::unique_ptr<Impl> makeAbiKernelImpl(AbiKernelSpec spec) {
  return std::make_unique<AbiKernelImpl>(std::move(spec));
}

} // namespace attn_bench

// The test doubles have C linkage and the exact generated-kernel signature.
extern "C" attn_status attn_bench_testdouble_naive_mha(const void *args,
                                                       const attn_launch *launch) {
  return attn_bench::naiveAttention<false>(args, launch);
}
extern "C" attn_status attn_bench_testdouble_naive_causal(const void *args,
                                                          const attn_launch *launch) {
  return attn_bench::naiveAttention<true>(args, launch);
}
extern "C" const char *attn_bench_testdouble_last_error(void) {
  return attn_bench::testDoubleError.c_str();
}

namespace attn_bench {

void registerTestDoubles(Registry &r) {
  for (int causal = 0; causal < 2; ++causal) {
    AbiKernelSpec spec;
    spec.name = "naive-abi";
    spec.fn = causal ? attn_bench_testdouble_naive_causal
                     : attn_bench_testdouble_naive_mha;
    spec.causal = causal;
    spec.testDouble = true;
    spec.lastError = attn_bench_testdouble_last_error;
    spec.description = "TEST DOUBLE: naive float64 loops behind the runtime.h "
                       "ABI adapter (checks the adapter, not a result)";
    r.add(makeAbiKernelImpl(std::move(spec)));
  }
}

} // namespace attn_bench
