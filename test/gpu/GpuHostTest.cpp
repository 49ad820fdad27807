//===- GpuHostTest.cpp - GPU entry points without a GPU -------------------===//
//
// Links GPU kernel libraries written by `attnc --target=sm_80,sm_90a` and
// checks their host side on a machine without a GPU:
//   [validation]  bad arguments give the documented status codes before
//                 any driver call (run with and without a driver);
//   [nodriver]    a valid call without libcuda.so.1 returns
//                 ATTN_ERR_NO_DEVICE and says why (skipped, with a warning,
//                 when a real driver is installed);
//   [fake]        with test/gpu/FakeCuda.c as libcuda.so.1 (LD_LIBRARY_PATH):
//                 cubin choice by compute capability, ATTN_ERR_NO_KERNEL,
//                 one module load per context, the launch configuration and
//                 the kernel parameters;
//   [fake-nodevice] the fake driver with no device: ATTN_ERR_NO_DEVICE.
// ctest runs each tag as its own test (the driver is loaded once per
// process). Device pointers are made-up addresses: nothing dereferences
// them here.
//
//===----------------------------------------------------------------------===//

#include "gpu_causal.h"
#include "gpu_mha.h"

#include <catch2/catch.hpp>

#include <dlfcn.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace {

struct FakeState {
  int init_calls;
  int module_loads;
  int last_module_sm;
  int last_image_is_elf;
  char last_function[128];
  int launches;
  unsigned grid[3], block[3], shared_bytes;
  void *stream;
  int num_params_to_copy;
  uint64_t params[256];
  int primary_retains, pushes, pops;
  void *current;
  int current_device;
  int launch_result;
  int func_set_attribute_calls;
};

/// A CUDA tensor over a made-up device address.
struct DevTensor {
  std::vector<int64_t> shape, strides;
  attn_tensor t{};
  DevTensor(std::vector<int64_t> s, attn_dtype dt, uintptr_t addr,
            std::vector<int64_t> st = {})
      : shape(std::move(s)), strides(std::move(st)) {
    t.data = reinterpret_cast<void *>(addr);
    t.device = {ATTN_DEVICE_CUDA, 0};
    t.ndim = static_cast<int32_t>(shape.size());
    t.dtype = dt;
    t.shape = shape.data();
    t.strides = strides.empty() ? nullptr : strides.data();
    t.byte_offset = 0;
  }
};

constexpr attn_dtype kBf16{ATTN_DTYPE_BFLOAT, 16, 1};
constexpr attn_dtype kF32{ATTN_DTYPE_FLOAT, 32, 1};

/// Valid arguments of gpu_causal_causal: b = 2, h = 3, |m| = 113, |p| = 77,
/// d = 64, with lse.
struct CausalCall {
  DevTensor q{{2, 3, 113, 64}, kBf16, 0x7f0000100000};
  DevTensor k{{2, 3, 77, 64}, kBf16, 0x7f0000200000};
  DevTensor v{{2, 3, 77, 64}, kBf16, 0x7f0000300000};
  DevTensor o{{2, 3, 113, 64}, kBf16, 0x7f0000400000};
  DevTensor lse{{2, 3, 113}, kF32, 0x7f0000500000};
  gpu_causal_causal_args args{&q.t, &k.t, &v.t, &o.t, &lse.t};
  attn_launch launch{1, nullptr, nullptr, reinterpret_cast<void *>(0x5eed)};
  attn_status run() { return gpu_causal_causal(&args, &launch); }
};

bool realDriverPresent() {
  void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
  if (!h)
    h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!h)
    return false;
  bool fake = dlsym(h, "attn_fake_cuda_state_get") != nullptr;
  return !fake;
}

FakeState *fake() {
  void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  REQUIRE(h != nullptr);
  auto get = reinterpret_cast<FakeState *(*)()>(
      dlsym(h, "attn_fake_cuda_state_get"));
  REQUIRE(get != nullptr); // LD_LIBRARY_PATH must point at fake-driver/
  return get();
}

std::string lastError() { return attn_last_error(); }

} // namespace

TEST_CASE("GPU entry: bad arguments fail before any driver call",
          "[validation]") {
  CausalCall c;
  SECTION("null args and tensors") {
    CHECK(gpu_causal_causal(nullptr, &c.launch) == ATTN_ERR_NULL_POINTER);
    c.args.q = nullptr;
    CHECK(c.run() == ATTN_ERR_NULL_POINTER);
    CHECK(lastError() == "gpu_causal_causal: q: tensor is NULL (it is an "
                         "input)");
    c.args.q = &c.q.t;
    c.args.o = nullptr;
    CHECK(c.run() == ATTN_ERR_NULL_POINTER);
  }
  SECTION("CPU tensors and mixed devices") {
    c.k.t.device.device_type = ATTN_DEVICE_CPU;
    CHECK(c.run() == ATTN_ERR_DEVICE);
    CHECK_THAT(lastError(), Catch::Contains("k: tensor is on device type 1"));
    c.k.t.device.device_type = ATTN_DEVICE_CUDA;
    c.v.t.device.device_id = 1;
    CHECK(c.run() == ATTN_ERR_DEVICE);
    CHECK_THAT(lastError(),
               Catch::Contains("v: tensor is on CUDA device 1, but q is on "
                               "device 0"));
  }
  SECTION("dtype") {
    c.q.t.dtype = kF32;
    CHECK(c.run() == ATTN_ERR_DTYPE);
    CHECK_THAT(lastError(),
               Catch::Contains("q: dtype is float32, but the kernel needs "
                               "bfloat16"));
    c.q.t.dtype = kBf16;
    c.lse.t.dtype = kBf16;
    CHECK(c.run() == ATTN_ERR_DTYPE);
  }
  SECTION("ndim") {
    c.q.t.ndim = 3;
    CHECK(c.run() == ATTN_ERR_NDIM);
  }
  SECTION("static head dim, shapes that disagree, GQA ratio 1 only") {
    c.k.shape[3] = 128;
    CHECK(c.run() == ATTN_ERR_SHAPE);
    CHECK_THAT(lastError(), Catch::Contains("the kernel needs e = 64"));
    c.k.shape[3] = 64;
    c.v.shape[2] = 76;
    CHECK(c.run() == ATTN_ERR_SHAPE);
    CHECK_THAT(lastError(), Catch::Contains("v: dimension 2 (p) has size 76"));
    c.v.shape[2] = 77;
    // 3 query heads over 1 KV head: this kernel has no GQA.
    c.k.shape[1] = 1;
    c.v.shape[1] = 1;
    CHECK(c.run() == ATTN_ERR_SHAPE);
    CHECK_THAT(lastError(), Catch::Contains("k: dimension 1 (h) has size 1"));
  }
  SECTION("strides the kernel does not support") {
    // Innermost stride 2.
    c.q.strides = {3 * 113 * 128, 113 * 128, 128, 2};
    c.q.t.strides = c.q.strides.data();
    CHECK(c.run() == ATTN_ERR_STRIDE);
    CHECK_THAT(lastError(), Catch::Contains("needs stride 1"));
    // Rows of 65 elements: not 16-byte aligned for cp.async.
    c.q.strides = {3 * 113 * 65, 113 * 65, 65, 1};
    CHECK(c.run() == ATTN_ERR_STRIDE);
    CHECK_THAT(lastError(),
               Catch::Contains("q: dimension 0 (b) has stride 22035, but the "
                               "GPU kernel needs a multiple of 8 elements "
                               "(rows aligned to 16 bytes)"));
    // Rows of 72 elements (padded) are fine for q; o needs even strides.
    c.q.strides = {3 * 113 * 72, 113 * 72, 72, 1};
    c.o.strides = {3 * 113 * 65, 113 * 65, 65, 1};
    c.o.t.strides = c.o.strides.data();
    CHECK(c.run() == ATTN_ERR_STRIDE);
    CHECK_THAT(lastError(),
               Catch::Contains("o: dimension 0 (b) has stride 22035, but the "
                               "GPU kernel needs a multiple of 2 elements"));
    // Negative strides.
    c.o.t.strides = nullptr;
    c.k.strides = {3 * 77 * 64, 77 * 64, -64, 1};
    c.k.t.strides = c.k.strides.data();
    CHECK(c.run() == ATTN_ERR_STRIDE);
  }
  SECTION("alignment") {
    c.q.t.byte_offset = 8; // element-aligned, not 16-byte aligned
    CHECK(c.run() == ATTN_ERR_ALIGNMENT);
    CHECK_THAT(lastError(), Catch::Contains("not aligned to 16 bytes"));
    c.q.t.byte_offset = 0;
    c.o.t.byte_offset = 2; // o rows need 2-element (4-byte) alignment
    CHECK(c.run() == ATTN_ERR_ALIGNMENT);
    c.o.t.byte_offset = 0;
    c.lse.t.byte_offset = 1;
    CHECK(c.run() == ATTN_ERR_ALIGNMENT);
  }
  SECTION("grid limits") {
    // b * h = 300 * 300 > 65535 blocks in grid y.
    for (DevTensor *t : {&c.q, &c.k, &c.v, &c.o, &c.lse}) {
      t->shape[0] = 300;
      t->shape[1] = 300;
    }
    CHECK(c.run() == ATTN_ERR_SHAPE);
    CHECK_THAT(lastError(),
               Catch::Contains("b * h = 90000 exceeds the GPU grid's y limit "
                               "65535"));
  }
  SECTION("no work: ATTN_OK without the driver") {
    c.q.shape[2] = 0;
    c.o.shape[2] = 0;
    c.lse.shape[2] = 0;
    CHECK(c.run() == ATTN_OK);
  }
}

TEST_CASE("GPU entry: no driver", "[nodriver]") {
  if (realDriverPresent()) {
    WARN("libcuda.so.1 is installed: the no-driver status is not checked");
    return;
  }
  CausalCall c;
  CHECK(c.run() == ATTN_ERR_NO_DEVICE);
  CHECK_THAT(lastError(),
             Catch::StartsWith("gpu_causal_causal: no CUDA driver: cannot "
                               "load libcuda.so.1"));
  CHECK(std::string(attn_status_string(ATTN_ERR_NO_DEVICE)) ==
        "no CUDA driver or device");
  // Again (the failed load is remembered), and with lse absent.
  c.args.lse = nullptr;
  CHECK(c.run() == ATTN_ERR_NO_DEVICE);
  // Validation still comes first.
  c.q.t.dtype = kF32;
  CHECK(c.run() == ATTN_ERR_DTYPE);
}

TEST_CASE("GPU entry: fake driver", "[fake]") {
  FakeState *f = fake();
  CausalCall c;
  setenv("ATTN_FAKE_CUDA_CC", "90", 1);

  SECTION("launch on an sm_90 device: the sm_90a cubin, grid, parameters") {
    f->num_params_to_copy = 4 * 11 + 9;
    int loads = f->module_loads, launches = f->launches;
    REQUIRE(c.run() == ATTN_OK);
    CHECK(f->launches == launches + 1);
    CHECK(f->last_image_is_elf == 1);
    CHECK(f->last_module_sm == 90);
    CHECK(std::string(f->last_function) == "causal_kernel");
    // ceil(113 / 64) query blocks x (b * h) = 2 x 6, 128 threads.
    CHECK(f->grid[0] == 2);
    CHECK(f->grid[1] == 6);
    CHECK(f->grid[2] == 1);
    CHECK(f->block[0] == 128);
    CHECK(f->block[1] == 1);
    CHECK(f->block[2] == 1);
    CHECK(f->shared_bytes == 0);
    CHECK(f->stream == reinterpret_cast<void *>(0x5eed));
    // q's expanded memref descriptor: allocated, aligned, offset 0, sizes,
    // compact strides.
    std::vector<uint64_t> q(f->params, f->params + 11);
    CHECK(q == std::vector<uint64_t>{0x7f0000100000, 0x7f0000100000, 0, 2, 3,
                                     113, 64, 3 * 113 * 64, 113 * 64, 64, 1});
    // k follows, then v, o; lse last: rank 3.
    CHECK(f->params[11] == 0x7f0000200000);
    CHECK(f->params[11 + 5] == 77);
    CHECK(f->params[44] == 0x7f0000500000);
    CHECK(f->params[44 + 3] == 2);
    CHECK(f->params[44 + 8] == 1);
    // The module is loaded once for this context.
    int after = f->module_loads;
    CHECK(after >= loads);
    REQUIRE(c.run() == ATTN_OK);
    CHECK(f->module_loads == after);
  }

  SECTION("strides and byte offsets reach the kernel; an absent lse is null") {
    f->num_params_to_copy = 4 * 11 + 9;
    c.q.strides = {3 * 113 * 72, 113 * 72, 72, 1};
    c.q.t.strides = c.q.strides.data();
    c.q.t.byte_offset = 32;
    c.args.lse = nullptr;
    REQUIRE(c.run() == ATTN_OK);
    CHECK(f->params[0] == 0x7f0000100000 + 32);
    CHECK(f->params[7] == 3 * 113 * 72);
    CHECK(f->params[9] == 72);
    CHECK(f->params[44] == 0);
    CHECK(f->params[45] == 0);
    CHECK(f->params[47] == 2); // sizes from the other tensors
    CHECK(f->params[49] == 113);
    CHECK(f->params[52] == 1); // compact strides
  }

  SECTION("an sm_86 device runs the sm_80 cubin") {
    setenv("ATTN_FAKE_CUDA_CC", "86", 1);
    f->current = reinterpret_cast<void *>(0xc0de86);
    f->current_device = 0;
    REQUIRE(c.run() == ATTN_OK);
    CHECK(f->last_module_sm == 80);
    f->current = nullptr;
  }

  SECTION("no cubin for sm_75 or sm_100") {
    f->current = reinterpret_cast<void *>(0xc0de75);
    f->current_device = 0;
    setenv("ATTN_FAKE_CUDA_CC", "75", 1);
    CHECK(c.run() == ATTN_ERR_NO_KERNEL);
    CHECK(lastError() ==
          "gpu_causal_causal: no kernel for this device: it is sm_75 (compute "
          "capability 7.5), the library has cubins for sm_80, sm_90a");
    setenv("ATTN_FAKE_CUDA_CC", "100", 1);
    f->current = reinterpret_cast<void *>(0xc0de100);
    CHECK(c.run() == ATTN_ERR_NO_KERNEL);
    CHECK_THAT(lastError(), Catch::Contains("it is sm_100"));
    f->current = nullptr;
  }

  SECTION("one module per context and kernel") {
    f->current = reinterpret_cast<void *>(0xc0de01);
    f->current_device = 0;
    int loads = f->module_loads;
    REQUIRE(c.run() == ATTN_OK);
    REQUIRE(c.run() == ATTN_OK);
    CHECK(f->module_loads == loads + 1);
    f->current = reinterpret_cast<void *>(0xc0de02);
    REQUIRE(c.run() == ATTN_OK);
    CHECK(f->module_loads == loads + 2);
    // Another kernel in the same context loads its own module.
    DevTensor q{{1, 1, 5, 64}, kBf16, 0x1000}, k{{1, 1, 5, 64}, kBf16, 0x2000},
        v{{1, 1, 5, 64}, kBf16, 0x3000}, o{{1, 1, 5, 64}, kBf16, 0x4000},
        lse{{1, 1, 5}, kF32, 0x5000};
    gpu_mha_mha_args margs{&q.t, &k.t, &v.t, &o.t, &lse.t};
    REQUIRE(gpu_mha_mha(&margs, nullptr) == ATTN_OK);
    CHECK(f->module_loads == loads + 3);
    CHECK(std::string(f->last_function) == "mha_kernel");
    CHECK(f->stream == nullptr); // a NULL launch: the default stream
    f->current = nullptr;
  }

  SECTION("no current context: the device's primary context is pushed") {
    f->current = nullptr;
    int pushes = f->pushes, pops = f->pops;
    REQUIRE(c.run() == ATTN_OK);
    CHECK(f->pushes == pushes + 1);
    CHECK(f->pops == pops + 1);
    CHECK(f->primary_retains == 1); // retained once per process
  }

  SECTION("a current context on another device: the primary context") {
    f->current = reinterpret_cast<void *>(0xc0de03);
    f->current_device = 1;
    int pushes = f->pushes;
    REQUIRE(c.run() == ATTN_OK);
    CHECK(f->pushes == pushes + 1);
    f->current = nullptr;
  }

  SECTION("a device that does not exist") {
    for (DevTensor *t : {&c.q, &c.k, &c.v, &c.o, &c.lse})
      t->t.device.device_id = 3;
    CHECK(c.run() == ATTN_ERR_DEVICE);
    CHECK_THAT(lastError(),
               Catch::Contains("the tensors are on CUDA device 3, but there "
                               "is 1 device"));
  }

  SECTION("a failed launch is ATTN_ERR_DRIVER with the driver's error") {
    f->launch_result = 701;
    CHECK(c.run() == ATTN_ERR_DRIVER);
    CHECK_THAT(lastError(),
               Catch::Contains("cuLaunchKernel failed: "
                               "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES (701)"));
    f->launch_result = 0;
  }
  CHECK(f->init_calls == 1);
}

TEST_CASE("GPU entry: fake driver without devices", "[fake-nodevice]") {
  fake();
  CausalCall c;
  CHECK(c.run() == ATTN_ERR_NO_DEVICE);
  CHECK(lastError() == "gpu_causal_causal: no usable CUDA device: cuInit "
                       "failed with CUDA_ERROR_NO_DEVICE (100)");
}
