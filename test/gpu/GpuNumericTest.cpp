//===- GpuNumericTest.cpp - the GPU kernels against a float64 reference ---===//
//
// Runs the kernels of `attnc --target=sm_80,sm_90a --storage=bf16` (MHA and
// causal at d = 64, MHA at d = 128) on a GPU: bf16 inputs in [-1, 1), device
// memory through the CUDA driver API (loaded with dlopen, like the
// runtime), outputs compared with a float64 reference computed from the
// same bf16 inputs, |x - ref| <= 1e-2 + 1.6e-2 |ref| for O (bf16) and LSE
// (f32). Shapes: odd lengths (113), length 1, |m| != |p| both ways, a
// padded (strided) q, and a call without lse.
//
// Exits 77 (ctest SKIP_RETURN_CODE) when there is no driver or no device,
// 0 when every case passes, 1 otherwise.
//
//===----------------------------------------------------------------------===//

#include "gpu_causal.h"
#include "gpu_alibi.h"
#include "gpu_gqa.h"
#include "gpu_mha.h"
#include "gpu_mha_d128.h"
#include "gpu_softcap.h"

#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

namespace {

typedef int CUresult;
typedef unsigned long long CUdeviceptr;

struct Driver {
  CUresult (*init)(unsigned);
  CUresult (*deviceGetCount)(int *);
  CUresult (*deviceGet)(int *, int);
  CUresult (*deviceGetAttribute)(int *, int, int);
  CUresult (*primaryCtxRetain)(void **, int);
  CUresult (*ctxSetCurrent)(void *);
  CUresult (*memAlloc)(CUdeviceptr *, size_t);
  CUresult (*memFree)(CUdeviceptr);
  CUresult (*memcpyHtoD)(CUdeviceptr, const void *, size_t);
  CUresult (*memcpyDtoH)(void *, CUdeviceptr, size_t);
  CUresult (*memsetD8)(CUdeviceptr, unsigned char, size_t);
  CUresult (*ctxSynchronize)();
} cu;

bool loadDriver(const char **why) {
  void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    *why = "libcuda.so.1 not found";
    return false;
  }
  struct {
    const char *name;
    void **slot;
  } syms[] = {
      {"cuInit", (void **)&cu.init},
      {"cuDeviceGetCount", (void **)&cu.deviceGetCount},
      {"cuDeviceGet", (void **)&cu.deviceGet},
      {"cuDeviceGetAttribute", (void **)&cu.deviceGetAttribute},
      {"cuDevicePrimaryCtxRetain", (void **)&cu.primaryCtxRetain},
      {"cuCtxSetCurrent", (void **)&cu.ctxSetCurrent},
      {"cuMemAlloc_v2", (void **)&cu.memAlloc},
      {"cuMemFree_v2", (void **)&cu.memFree},
      {"cuMemcpyHtoD_v2", (void **)&cu.memcpyHtoD},
      {"cuMemcpyDtoH_v2", (void **)&cu.memcpyDtoH},
      {"cuMemsetD8_v2", (void **)&cu.memsetD8},
      {"cuCtxSynchronize", (void **)&cu.ctxSynchronize},
  };
  for (auto &s : syms)
    if (!(*s.slot = dlsym(h, s.name))) {
      *why = "libcuda.so.1 lacks a driver entry point (a fake or stub?)";
      return false;
    }
  if (dlsym(h, "attn_fake_cuda_state_get"))
    std::printf("fake driver (test/gpu/FakeCuda.c): the host emulates the "
                "kernels; this checks the harness only\n");
  int n = 0;
  if (cu.init(0) != 0 || cu.deviceGetCount(&n) != 0 || n == 0) {
    *why = "no CUDA device";
    return false;
  }
  return true;
}

#define CU(call)                                                               \
  do {                                                                         \
    CUresult r_ = (call);                                                      \
    if (r_ != 0) {                                                             \
      std::fprintf(stderr, "%s:%d: %s failed: %d\n", __FILE__, __LINE__,       \
                   #call, r_);                                                 \
      std::exit(1);                                                            \
    }                                                                          \
  } while (0)

uint16_t toBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fff + ((u >> 16) & 1); // round to nearest even (no NaNs here)
  return static_cast<uint16_t>(u >> 16);
}

float fromBf16(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

struct DeviceBuffer {
  CUdeviceptr ptr = 0;
  size_t bytes = 0;
  explicit DeviceBuffer(size_t n) : bytes(n ? n : 16) {
    CU(cu.memAlloc(&ptr, bytes));
    CU(cu.memsetD8(ptr, 0, bytes));
  }
  ~DeviceBuffer() { cu.memFree(ptr); }
};

attn_tensor cudaTensor(CUdeviceptr p, attn_dtype dt, const int64_t *shape,
                       int32_t ndim, const int64_t *strides) {
  attn_tensor t{};
  t.data = reinterpret_cast<void *>(p);
  t.device = {ATTN_DEVICE_CUDA, 0};
  t.ndim = ndim;
  t.dtype = dt;
  t.shape = shape;
  t.strides = strides;
  return t;
}

struct Case {
  const char *kernel;
  bool causal;
  int64_t d, b, h, lq, lk;
  int64_t qRowStride; // 0: compact (d)
  bool withLse;
  int64_t group = 1; // query heads per K/V head (GQA); K, V: [b, h / group, p, d]
  int transform = 0;  // 1: soft-capping 30 tanh(s / 30); 2: ALiBi (causal)
};

using Entry = std::function<attn_status(const attn_tensor *, const attn_tensor *,
                                        const attn_tensor *, const attn_tensor *,
                                        const attn_tensor *)>;

bool runCase(const Case &c, const Entry &entry, std::mt19937 &rng) {
  const int64_t d = c.d, B = c.b, H = c.h, M = c.lq, P = c.lk;
  const int64_t HK = H / c.group;
  const int64_t qs = c.qRowStride ? c.qRowStride : d;
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  std::vector<uint16_t> q(B * H * M * qs, 0), k(B * HK * P * d),
      v(B * HK * P * d);
  for (int64_t i = 0; i < B * H * M; ++i)
    for (int64_t e = 0; e < d; ++e)
      q[i * qs + e] = toBf16(dist(rng));
  for (auto &x : k)
    x = toBf16(dist(rng));
  for (auto &x : v)
    x = toBf16(dist(rng));

  DeviceBuffer dq(q.size() * 2), dk(k.size() * 2), dv(v.size() * 2),
      dO(B * H * M * d * 2), dl(B * H * M * 4);
  CU(cu.memcpyHtoD(dq.ptr, q.data(), q.size() * 2));
  if (!k.empty()) {
    CU(cu.memcpyHtoD(dk.ptr, k.data(), k.size() * 2));
    CU(cu.memcpyHtoD(dv.ptr, v.data(), v.size() * 2));
  }
  const attn_dtype bf16{ATTN_DTYPE_BFLOAT, 16, 1}, f32{ATTN_DTYPE_FLOAT, 32, 1};
  int64_t qShape[] = {B, H, M, d}, kShape[] = {B, HK, P, d},
          oShape[] = {B, H, M, d}, lShape[] = {B, H, M};
  int64_t qStrides[] = {H * M * qs, M * qs, qs, 1};
  attn_tensor tq = cudaTensor(dq.ptr, bf16, qShape, 4, qStrides),
              tk = cudaTensor(dk.ptr, bf16, kShape, 4, nullptr),
              tv = cudaTensor(dv.ptr, bf16, kShape, 4, nullptr),
              to = cudaTensor(dO.ptr, bf16, oShape, 4, nullptr),
              tl = cudaTensor(dl.ptr, f32, lShape, 3, nullptr);
  attn_status st = entry(&tq, &tk, &tv, &to, c.withLse ? &tl : nullptr);
  if (st != ATTN_OK) {
    std::printf("FAIL %s: status %d (%s): %s\n", c.kernel, st,
                attn_status_string(st), attn_last_error());
    return false;
  }
  CU(cu.ctxSynchronize());
  std::vector<uint16_t> o(B * H * M * d);
  std::vector<float> lse(B * H * M);
  CU(cu.memcpyDtoH(o.data(), dO.ptr, o.size() * 2));
  CU(cu.memcpyDtoH(lse.data(), dl.ptr, lse.size() * 4));

  // float64 reference on the bf16 inputs; scale 0.125 as in the examples.
  const double scale = 0.125, atol = 1e-2, rtol = 1.6e-2;
  double maxErrO = 0, maxErrL = 0;
  int64_t bad = 0;
  std::vector<double> s(P);
  for (int64_t bh = 0; bh < B * H; ++bh)
    for (int64_t m = 0; m < M; ++m) {
      // The K/V head of query head h: h / group.
      const int64_t kvh = (bh / H) * HK + (bh % H) / c.group;
      double mx = -INFINITY;
      for (int64_t p = 0; p < P; ++p) {
        double acc = 0;
        for (int64_t e = 0; e < d; ++e)
          acc += double(fromBf16(q[(bh * M + m) * qs + e])) *
                 fromBf16(k[(kvh * P + p) * d + e]);
        double x = acc * scale;
        if (c.transform == 1)
          x = 30.0 * std::tanh(x / 30.0);
        else if (c.transform == 2) // slope 2^(-8 (h + 1) / |h|)
          x += std::exp2(-8.0 * double(bh % H + 1) / double(H)) * double(p - m);
        s[p] = c.causal && p > m ? -INFINITY : x;
        mx = std::max(mx, s[p]);
      }
      double sum = 0;
      for (int64_t p = 0; p < P; ++p)
        sum += std::isinf(s[p]) ? 0 : std::exp(s[p] - mx);
      for (int64_t f = 0; f < d; ++f) {
        double ref = 0;
        for (int64_t p = 0; p < P; ++p)
          if (!std::isinf(s[p]))
            ref += std::exp(s[p] - mx) * fromBf16(v[(kvh * P + p) * d + f]);
        ref = sum > 0 ? ref / sum : 0;
        double got = fromBf16(o[(bh * M + m) * d + f]);
        double err = std::fabs(got - ref);
        maxErrO = std::max(maxErrO, err);
        if (!(err <= atol + rtol * std::fabs(ref)))
          ++bad;
      }
      if (c.withLse) {
        double ref = sum > 0 ? mx + std::log(sum) : -INFINITY;
        double got = lse[bh * M + m];
        if (std::isinf(ref)) {
          if (!(std::isinf(got) && got < 0))
            ++bad;
          continue;
        }
        double err = std::fabs(got - ref);
        maxErrL = std::max(maxErrL, err);
        if (!(err <= atol + rtol * std::fabs(ref)))
          ++bad;
      }
    }
  std::printf("%s %s d=%lld b=%lld h=%lld (kv %lld) Lq=%lld Lk=%lld%s%s: "
              "max |err| O %.2e, LSE %.2e, %lld out of tolerance\n",
              bad ? "FAIL" : "ok  ", c.kernel, (long long)d, (long long)B,
              (long long)H, (long long)HK, (long long)M, (long long)P,
              c.qRowStride ? " (q rows padded)" : "",
              c.withLse ? "" : " (no lse)", maxErrO, maxErrL, (long long)bad);
  return bad == 0;
}

/// The entry point of a generated kernel with arguments (q, k, v, o, lse).
template <typename Args, attn_status (*Fn)(const Args *, const attn_launch *)>
attn_status entryOf(const attn_tensor *q, const attn_tensor *k,
                    const attn_tensor *v, const attn_tensor *o,
                    const attn_tensor *l) {
  Args a{q, k, v, o, l};
  return Fn(&a, nullptr);
}

} // namespace

int main() {
  const char *why = nullptr;
  if (!loadDriver(&why)) {
    std::printf("SKIP: %s\n", why);
    return 77;
  }
  int dev = 0, major = 0, minor = 0;
  void *ctx = nullptr;
  CU(cu.deviceGet(&dev, 0));
  CU(cu.deviceGetAttribute(&major, 75, dev));
  CU(cu.deviceGetAttribute(&minor, 76, dev));
  CU(cu.primaryCtxRetain(&ctx, dev));
  CU(cu.ctxSetCurrent(ctx));
  std::printf("device 0: sm_%d%d\n", major, minor);

  const Entry mha = entryOf<gpu_mha_mha_args, gpu_mha_mha>;
  const Entry causal = entryOf<gpu_causal_causal_args, gpu_causal_causal>;
  const Entry mha128 = entryOf<gpu_mha_d128_mha_args, gpu_mha_d128_mha>;
  const Entry gqa = entryOf<gpu_gqa_gqa_args, gpu_gqa_gqa>;
  const Entry softcap = entryOf<gpu_softcap_softcap_args, gpu_softcap_softcap>;
  const Entry alibi = entryOf<gpu_alibi_alibi_args, gpu_alibi_alibi>;
  const Case cases[] = {
      {"gpu_mha_mha", false, 64, 2, 3, 113, 113, 0, true},
      {"gpu_mha_mha", false, 64, 1, 2, 1, 1, 0, true},
      {"gpu_mha_mha", false, 64, 1, 2, 1, 113, 0, true},
      {"gpu_mha_mha", false, 64, 1, 2, 113, 1, 0, true},
      {"gpu_mha_mha", false, 64, 1, 1, 200, 77, 0, false},
      {"gpu_mha_mha", false, 64, 1, 2, 113, 130, 72, true},
      {"gpu_causal_causal", true, 64, 2, 3, 113, 113, 0, true},
      {"gpu_causal_causal", true, 64, 1, 2, 1, 1, 0, true},
      {"gpu_causal_causal", true, 64, 1, 2, 113, 200, 0, true},
      {"gpu_causal_causal", true, 64, 1, 2, 200, 113, 0, true},
      {"gpu_causal_causal", true, 64, 1, 1, 1, 113, 0, true},
      {"gpu_mha_d128_mha", false, 128, 1, 2, 113, 113, 0, true},
      {"gpu_mha_d128_mha", false, 128, 1, 1, 1, 1, 0, true},
      // GQA: 4 query heads per K/V head (examples/gqa.mlir); decode too.
      {"gpu_gqa_gqa", false, 64, 2, 8, 113, 130, 0, true, 4},
      {"gpu_gqa_gqa", false, 64, 1, 4, 1, 200, 0, true, 4},
      // Score transforms evaluated on the registers.
      {"gpu_softcap_softcap", false, 64, 2, 3, 113, 130, 0, true, 1, 1},
      {"gpu_softcap_softcap", false, 64, 1, 2, 1, 77, 0, true, 1, 1},
      {"gpu_alibi_alibi", true, 64, 2, 4, 113, 113, 0, true, 1, 2},
      {"gpu_alibi_alibi", true, 64, 1, 8, 200, 113, 0, true, 1, 2},
  };
  std::mt19937 rng(20261123);
  int failed = 0;
  for (const Case &c : cases) {
    const Entry entry = c.transform == 1 ? softcap
                        : c.transform == 2 ? alibi
                        : c.group > 1      ? gqa
                        : c.d == 128       ? mha128
                        : c.causal         ? causal
                                           : mha;
    failed += !runCase(c, entry, rng);
  }
  std::printf("%d of %zu cases failed\n", failed, sizeof cases / sizeof *cases);
  return failed ? 1 : 0;
}
