/*===- FakeCuda.c - a stand-in libcuda.so.1 for GPU-less host tests -------===*
 *
 * Built as fake-driver/libcuda.so.1; a test that puts that directory first
 * in LD_LIBRARY_PATH makes the runtime's dlopen("libcuda.so.1") find it. It
 * implements the driver entry points the runtime uses, records what it is
 * asked (module loads, the chosen cubin's SM from its ELF header, the
 * function name, launch configurations and parameter values) and exposes
 * that through attn_fake_cuda_state(). Nothing runs: cuLaunchKernel only
 * records.
 *
 * Environment: ATTN_FAKE_CUDA_DEVICES (default 1; 0 makes cuInit fail with
 * CUDA_ERROR_NO_DEVICE), ATTN_FAKE_CUDA_CC (compute capability as major *
 * 10 + minor, default 90; read at every query), ATTN_FAKE_CUDA_EMULATE: if
 * set, "device" memory is host memory (cuMemAlloc = aligned malloc) and
 * cuLaunchKernel computes the attention of an MHA/causal kernel (bf16 q, k,
 * v, o; f32 lse; scale 0.125; causal if the function's name contains
 * "causal" or "alibi"; soft-capping or ALiBi by the name too) in double
 * precision on the host from the kernel parameters (the
 * expanded memref descriptors). That checks the numeric test's harness and
 * the parameter passing, never the GPU kernel itself.
 *
 *===----------------------------------------------------------------------===*/

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;

typedef struct attn_fake_cuda_state {
  int init_calls;
  int module_loads;
  int last_module_sm;          /* (e_flags >> 8) & 0xff of the loaded ELF */
  int last_image_is_elf;
  char last_function[128];
  int launches;
  unsigned grid[3], block[3], shared_bytes;
  void *stream;
  int num_params_to_copy;      /* set by the test before a launch */
  uint64_t params[256];
  int primary_retains, pushes, pops;
  void *current;               /* the "current context" (NULL: none) */
  int current_device;          /* its device */
  CUresult launch_result;      /* what cuLaunchKernel returns */
  int func_set_attribute_calls;
} attn_fake_cuda_state;

static attn_fake_cuda_state state;
static char primary_ctx[64][1];
static char modules[64][1];
static char functions[64][1];

attn_fake_cuda_state *attn_fake_cuda_state_get(void) { return &state; }

static int env_int(const char *name, int dflt) {
  const char *v = getenv(name);
  return v && *v ? atoi(v) : dflt;
}

static int num_devices(void) { return env_int("ATTN_FAKE_CUDA_DEVICES", 1); }

CUresult cuInit(unsigned flags) {
  (void)flags;
  ++state.init_calls;
  return num_devices() > 0 ? 0 : 100; /* CUDA_ERROR_NO_DEVICE */
}

CUresult cuGetErrorName(CUresult r, const char **s) {
  switch (r) {
  case 0: *s = "CUDA_SUCCESS"; return 0;
  case 100: *s = "CUDA_ERROR_NO_DEVICE"; return 0;
  case 101: *s = "CUDA_ERROR_INVALID_DEVICE"; return 0;
  case 209: *s = "CUDA_ERROR_NO_BINARY_FOR_GPU"; return 0;
  case 701: *s = "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES"; return 0;
  default: *s = "CUDA_ERROR_UNKNOWN"; return 0;
  }
}

CUresult cuGetErrorString(CUresult r, const char **s) {
  *s = r == 701 ? "too many resources requested for launch" : "fake error";
  return 0;
}

CUresult cuDeviceGetCount(int *n) {
  *n = num_devices();
  return 0;
}

CUresult cuDeviceGet(int *dev, int ordinal) {
  if (ordinal < 0 || ordinal >= num_devices())
    return 101;
  *dev = ordinal;
  return 0;
}

CUresult cuDeviceGetAttribute(int *v, int attr, int dev) {
  (void)dev;
  int cc = env_int("ATTN_FAKE_CUDA_CC", 90);
  if (attr == 75) { *v = cc / 10; return 0; }
  if (attr == 76) { *v = cc % 10; return 0; }
  return 1;
}

CUresult cuCtxGetCurrent(void **ctx) {
  *ctx = state.current;
  return 0;
}

CUresult cuCtxGetDevice(int *dev) {
  if (!state.current)
    return 201; /* CUDA_ERROR_INVALID_CONTEXT */
  *dev = state.current_device;
  return 0;
}

CUresult cuDevicePrimaryCtxRetain(void **ctx, int dev) {
  ++state.primary_retains;
  *ctx = primary_ctx[dev & 63];
  return 0;
}

CUresult cuCtxPushCurrent_v2(void *ctx) {
  (void)ctx;
  ++state.pushes;
  return 0;
}

CUresult cuCtxPopCurrent_v2(void **ctx) {
  *ctx = NULL;
  ++state.pops;
  return 0;
}

CUresult cuModuleLoadData(void **mod, const void *image) {
  const unsigned char *p = (const unsigned char *)image;
  state.last_image_is_elf = p[0] == 0x7f && p[1] == 'E' && p[2] == 'L' &&
                            p[3] == 'F';
  uint32_t flags;
  memcpy(&flags, p + 48, 4); /* e_flags of a 64-bit ELF header */
  state.last_module_sm = (int)((flags >> 8) & 0xff);
  *mod = modules[state.module_loads & 63];
  ++state.module_loads;
  return 0;
}

CUresult cuModuleGetFunction(void **f, void *mod, const char *name) {
  (void)mod;
  strncpy(state.last_function, name, sizeof state.last_function - 1);
  *f = functions[0];
  return 0;
}

CUresult cuFuncSetAttribute(void *f, int attr, int value) {
  (void)f;
  (void)attr;
  (void)value;
  ++state.func_set_attribute_calls;
  return 0;
}

/* Host memory as "device" memory (ATTN_FAKE_CUDA_EMULATE). */
typedef unsigned long long CUdeviceptr;
CUresult cuCtxSetCurrent(void *ctx) {
  state.current = ctx;
  state.current_device = 0;
  return 0;
}
CUresult cuCtxSynchronize(void) { return 0; }
CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t n) {
  void *m = aligned_alloc(256, (n + 255) / 256 * 256);
  if (!m)
    return 2; /* CUDA_ERROR_OUT_OF_MEMORY */
  *p = (CUdeviceptr)(uintptr_t)m;
  return 0;
}
CUresult cuMemFree_v2(CUdeviceptr p) {
  free((void *)(uintptr_t)p);
  return 0;
}
CUresult cuMemcpyHtoD_v2(CUdeviceptr d, const void *s, size_t n) {
  memcpy((void *)(uintptr_t)d, s, n);
  return 0;
}
CUresult cuMemcpyDtoH_v2(void *d, CUdeviceptr s, size_t n) {
  memcpy(d, (const void *)(uintptr_t)s, n);
  return 0;
}
CUresult cuMemsetD8_v2(CUdeviceptr d, unsigned char v, size_t n) {
  memset((void *)(uintptr_t)d, v, n);
  return 0;
}

static double bf16_load(const uint16_t *p) {
  uint32_t u = (uint32_t)*p << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static uint16_t bf16_round(double d) {
  float f = (float)d;
  uint32_t u;
  memcpy(&u, &f, 4);
  u += 0x7fff + ((u >> 16) & 1);
  return (uint16_t)(u >> 16);
}

/* A 4-D (or 3-D) memref descriptor from the parameter list. */
typedef struct {
  char *ptr;
  int64_t size[4], stride[4];
} desc;

static int read_desc(void **params, int at, int rank, desc *d) {
  uint64_t w[11];
  for (int i = 0; i < 3 + 2 * rank; ++i)
    memcpy(&w[i], params[at + i], 8);
  d->ptr = (char *)(uintptr_t)w[1];
  for (int i = 0; i < rank; ++i) {
    d->size[i] = (int64_t)w[3 + i];
    d->stride[i] = (int64_t)w[3 + rank + i];
  }
  return at + 3 + 2 * rank;
}

/* O = softmax(Q K^T * 0.125 [causal]) V and LSE, per (b, h, m). */
/* transform: 0 none, 1 soft-capping 30 tanh(s / 30), 2 ALiBi
 * s + 2^(-8 (h + 1) / |h|) (p - m) (examples/softcap.mlir, alibi.mlir). */
static void emulate(void **params, int causal, int transform) {
  desc q, k, v, o, l;
  int at = read_desc(params, 0, 4, &q);
  at = read_desc(params, at, 4, &k);
  at = read_desc(params, at, 4, &v);
  at = read_desc(params, at, 4, &o);
  read_desc(params, at, 3, &l);
  int64_t P = k.size[2], d = q.size[3], dv = v.size[3];
  /* GQA: query head h reads K/V head h / (|h| / |kv heads|). */
  int64_t group = k.size[1] ? q.size[1] / k.size[1] : 1;
  double *s = (double *)malloc(sizeof(double) * (size_t)(P ? P : 1));
  for (int64_t b = 0; b < q.size[0]; ++b)
    for (int64_t h = 0; h < q.size[1]; ++h)
      for (int64_t m = 0; m < q.size[2]; ++m) {
        const uint16_t *qr = (const uint16_t *)q.ptr +
                             b * q.stride[0] + h * q.stride[1] +
                             m * q.stride[2];
        double mx = -INFINITY, sum = 0;
        for (int64_t p = 0; p < P; ++p) {
          const uint16_t *kr = (const uint16_t *)k.ptr + b * k.stride[0] +
                               (h / group) * k.stride[1] + p * k.stride[2];
          double acc = 0;
          for (int64_t e = 0; e < d; ++e)
            acc += bf16_load(qr + e) * bf16_load(kr + e);
          double x = acc * 0.125;
          if (transform == 1)
            x = 30.0 * tanh(x / 30.0);
          else if (transform == 2)
            x += exp2(-8.0 * (double)(h + 1) / (double)q.size[1]) *
                 (double)(p - m);
          s[p] = causal && p > m ? -INFINITY : x;
          if (s[p] > mx)
            mx = s[p];
        }
        for (int64_t p = 0; p < P; ++p)
          sum += isinf(s[p]) ? 0 : exp(s[p] - mx);
        uint16_t *orow = (uint16_t *)o.ptr + b * o.stride[0] +
                         h * o.stride[1] + m * o.stride[2];
        for (int64_t f = 0; f < dv; ++f) {
          double acc = 0;
          for (int64_t p = 0; p < P; ++p)
            if (!isinf(s[p]))
              acc += exp(s[p] - mx) *
                     bf16_load((const uint16_t *)v.ptr + b * v.stride[0] +
                               (h / group) * v.stride[1] + p * v.stride[2] + f);
          orow[f] = bf16_round(sum > 0 ? acc / sum : 0);
        }
        if (l.ptr)
          *((float *)l.ptr + b * l.stride[0] + h * l.stride[1] +
            m * l.stride[2]) = (float)(sum > 0 ? mx + log(sum) : -INFINITY);
      }
  free(s);
}

CUresult cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz,
                        unsigned bx, unsigned by, unsigned bz, unsigned smem,
                        void *stream, void **params, void **extra) {
  (void)f;
  (void)extra;
  if (state.launch_result != 0)
    return state.launch_result;
  ++state.launches;
  state.grid[0] = gx;
  state.grid[1] = gy;
  state.grid[2] = gz;
  state.block[0] = bx;
  state.block[1] = by;
  state.block[2] = bz;
  state.shared_bytes = smem;
  state.stream = stream;
  for (int i = 0; i < state.num_params_to_copy && i < 256; ++i)
    memcpy(&state.params[i], params[i], 8);
  if (getenv("ATTN_FAKE_CUDA_EMULATE"))
    emulate(params,
            strstr(state.last_function, "causal") != NULL ||
                strstr(state.last_function, "alibi") != NULL,
            strstr(state.last_function, "softcap") ? 1
            : strstr(state.last_function, "alibi") ? 2
                                                   : 0);
  return 0;
}
