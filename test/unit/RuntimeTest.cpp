//===- RuntimeTest.cpp - Tests for the generated libraries' runtime ------===//
//
// Unit tests for lib/Runtime/runtime.c (attn/runtime.h), linked as the very
// object attnc embeds. Hand-written task functions stand in for generated
// code: they read the memref descriptors the runtime builds. Covered: the
// results, every status with its message, outputs untouched on every
// failure, relations (GQA ratios, a rank inferred from a relation), NULL vs
// explicit strides, an absent optional output, cu_seqlens metadata, the
// thread pool (1, 2, 0 threads, 8 MiB stacks), a caller's parallel_for and
// many concurrent callers.
//
//===----------------------------------------------------------------------===//

#include "attn/runtime.h"

#include <catch2/catch.hpp>

#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

using Catch::Matchers::Contains;

namespace {

/// MLIR's ranked memref descriptor.
template <int N> struct MemRef {
  void *allocated;
  void *aligned;
  int64_t offset;
  int64_t sizes[N];
  int64_t strides[N];
};

constexpr float kSentinel = -12345.0f;

//===----------------------------------------------------------------------===//
// Kernel 1: "gqa_add", a GQA-shaped elementwise kernel with metadata
//
//   ranks b, h, g, m, e = 4, n;  h = 2 * g
//   x  [b, h, m, e] f32 input (innermost stride 1)
//   y  [b, g, m, e] f32 input
//   cu [n] i32 input, cu_seqlens bounded by m
//   o  [b, h, m, e] f32 output:           o = x + y[h / 2] + cu[n - 1]
//   s  [b, h, m]    f32 optional output:  s = sum_e o
//   tasks over (b, h, m) with m tiled by 3.
//===----------------------------------------------------------------------===//

enum { RB, RH, RG, RM, RE, RN, NUM_RANKS };
enum { AX, AY, ACU, AO, AS, NUM_ARGS };

// What the task function saw, for the tests to check.
std::atomic<int64_t> gTasksRun{0};
std::mutex gSeenMutex;
std::set<std::thread::id> gThreads;
std::vector<int64_t> gSizesSeen;
std::atomic<bool> gSlowTasks{false};
std::atomic<size_t> gMinWorkerStack{SIZE_MAX};
std::thread::id gMainThread;

void noteThread() {
  std::thread::id me = std::this_thread::get_id();
  {
    std::lock_guard<std::mutex> lock(gSeenMutex);
    gThreads.insert(me);
  }
  if (me != gMainThread) {
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
      size_t size = 0;
      pthread_attr_getstacksize(&attr, &size);
      pthread_attr_destroy(&attr);
      size_t cur = gMinWorkerStack.load();
      while (size < cur && !gMinWorkerStack.compare_exchange_weak(cur, size)) {
      }
    }
  }
}

void gqaAddTasks(void **descs, int64_t begin, int64_t end) {
  auto *sizes = static_cast<MemRef<1> *>(descs[0]);
  auto *x = static_cast<MemRef<4> *>(descs[1 + AX]);
  auto *y = static_cast<MemRef<4> *>(descs[1 + AY]);
  auto *cu = static_cast<MemRef<1> *>(descs[1 + ACU]);
  auto *o = static_cast<MemRef<4> *>(descs[1 + AO]);
  auto *s = static_cast<MemRef<3> *>(descs[1 + AS]);
  const int64_t *sz = static_cast<const int64_t *>(sizes->aligned);
  const int64_t B = sz[RB], H = sz[RH], M = sz[RM], E = sz[RE];
  const bool haveS = sz[NUM_RANKS + AS] != 0;
  const int64_t tiles = (M + 2) / 3;
  noteThread();
  if (begin == 0) {
    std::lock_guard<std::mutex> lock(gSeenMutex);
    gSizesSeen.assign(sz, sz + sizes->sizes[0]);
  }
  const int32_t *cuData = static_cast<const int32_t *>(cu->aligned);
  const float last = float(cuData[(cu->sizes[0] - 1) * cu->strides[0]]);
  for (int64_t t = begin; t < end; ++t) {
    // (No Catch2 assertions here: tasks run on the pool's threads.)
    int64_t mt = t % tiles, h = (t / tiles) % H, b = t / (tiles * H);
    if (b >= B)
      continue;
    for (int64_t m = mt * 3; m < std::min(M, mt * 3 + 3); ++m) {
      float sum = 0;
      for (int64_t e = 0; e < E; ++e) {
        const float xv = static_cast<const float *>(
            x->aligned)[b * x->strides[0] + h * x->strides[1] +
                        m * x->strides[2] + e * x->strides[3]];
        const float yv = static_cast<const float *>(
            y->aligned)[b * y->strides[0] + (h / 2) * y->strides[1] +
                        m * y->strides[2] + e * y->strides[3]];
        const float v = xv + yv + last;
        static_cast<float *>(o->aligned)[b * o->strides[0] +
                                         h * o->strides[1] +
                                         m * o->strides[2] +
                                         e * o->strides[3]] = v;
        sum += v;
      }
      if (haveS)
        static_cast<float *>(s->aligned)[b * s->strides[0] +
                                         h * s->strides[1] +
                                         m * s->strides[2]] = sum;
    }
    ++gTasksRun;
    if (gSlowTasks)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

attn_dtype f32() { return attn_dtype{ATTN_DTYPE_FLOAT, 32, 1}; }
attn_dtype i32() { return attn_dtype{ATTN_DTYPE_INT, 32, 1}; }

attn_rt_arg makeArg(const char *name, int32_t role, attn_dtype dtype,
                    std::vector<int32_t> dims, int32_t unitInner = 0) {
  attn_rt_arg a;
  std::memset(&a, 0, sizeof a);
  a.name = name;
  a.role = role;
  a.dtype = dtype;
  a.ndim = int32_t(dims.size());
  for (size_t i = 0; i < dims.size(); ++i)
    a.dims[i] = dims[i];
  a.unit_inner_stride = unitInner;
  a.metadata_kind = ATTN_RT_META_NONE;
  a.metadata_bound_rank = -1;
  return a;
}

/// A kernel descriptor with its arrays.
struct GqaKernel {
  attn_rt_rank ranks[NUM_RANKS] = {{"b", -1}, {"h", -1}, {"g", -1},
                                   {"m", -1}, {"e", 4},  {"n", -1}};
  attn_rt_relation relations[1] = {{RH, 2, RG}};
  attn_rt_arg args[NUM_ARGS];
  attn_rt_kernel k;

  GqaKernel() {
    args[AX] = makeArg("x", ATTN_RT_INPUT, f32(), {RB, RH, RM, RE}, 1);
    args[AY] = makeArg("y", ATTN_RT_INPUT, f32(), {RB, RG, RM, RE});
    args[ACU] = makeArg("cu", ATTN_RT_INPUT, i32(), {RN});
    args[ACU].metadata_kind = ATTN_RT_META_CU_SEQLENS;
    args[ACU].metadata_bound_rank = RM;
    args[AO] = makeArg("o", ATTN_RT_OUTPUT, f32(), {RB, RH, RM, RE});
    args[AS] = makeArg("s", ATTN_RT_OPTIONAL_OUTPUT, f32(), {RB, RH, RM});
    std::memset(&k, 0, sizeof k);
    k.name = "gqa_add";
    k.abi_version = ATTN_RUNTIME_ABI_VERSION;
    k.device_type = ATTN_DEVICE_CPU;
    k.num_ranks = NUM_RANKS;
    k.ranks = ranks;
    k.num_relations = 1;
    k.relations = relations;
    k.num_args = NUM_ARGS;
    k.args = args;
    k.num_task_ranks = 3;
    k.task_ranks[0] = RB;
    k.task_ranks[1] = RH;
    k.task_ranks[2] = RM;
    k.tiled_rank = RM;
    k.tile = 3;
    k.tasks = gqaAddTasks;
    k.required_isa = ATTN_RT_ISA_NONE;
  }
  GqaKernel(const GqaKernel &) = delete;
};

/// A tensor over its own storage (with room around it for strided views).
template <typename T> struct Tensor {
  std::vector<T> storage;
  std::vector<int64_t> shape, strides;
  attn_tensor t;

  /// Compact row-major, strides NULL.
  Tensor(std::vector<int64_t> shp, attn_dtype dtype) : shape(std::move(shp)) {
    int64_t n = 1;
    for (int64_t s : shape)
      n *= s;
    storage.assign(size_t(std::max<int64_t>(n, 1)), T());
    init(dtype, false);
  }
  /// Explicit strides over `elements` elements.
  Tensor(std::vector<int64_t> shp, std::vector<int64_t> str, int64_t elements,
         attn_dtype dtype)
      : shape(std::move(shp)), strides(std::move(str)) {
    storage.assign(size_t(elements), T());
    init(dtype, true);
  }
  Tensor(const Tensor &) = delete;

  void init(attn_dtype dtype, bool withStrides) {
    std::memset(&t, 0, sizeof t);
    t.data = storage.data();
    t.device = attn_device{ATTN_DEVICE_CPU, 0};
    t.ndim = int32_t(shape.size());
    t.dtype = dtype;
    t.shape = shape.data();
    t.strides = withStrides ? strides.data() : nullptr;
    t.byte_offset = 0;
  }
  /// Element offset of an index under the tensor's strides.
  int64_t at(std::vector<int64_t> idx) const {
    int64_t off = 0, compact = 1;
    for (int i = int(shape.size()) - 1; i >= 0; --i) {
      off += idx[i] * (strides.empty() ? compact : strides[i]);
      compact *= shape[i];
    }
    return off;
  }
  T &operator()(std::vector<int64_t> idx) { return storage[size_t(at(idx))]; }
  void fill(T v) { std::fill(storage.begin(), storage.end(), v); }
  bool all(T v) const {
    return std::all_of(storage.begin(), storage.end(),
                       [&](T e) { return e == v; });
  }
};

/// Valid arguments of gqa_add: B=2, H=4, G=2, M=7, E=4, cu = {0, 3, 7}.
struct GqaCase {
  int64_t B = 2, H = 4, G = 2, M = 7, E = 4;
  Tensor<float> x{{B, H, M, E}, f32()};
  Tensor<float> y{{B, G, M, E}, f32()};
  Tensor<int32_t> cu{{3}, i32()};
  Tensor<float> o{{B, H, M, E}, f32()};
  Tensor<float> s{{B, H, M}, f32()};
  const attn_tensor *ptrs[NUM_ARGS];

  GqaCase() {
    for (size_t i = 0; i < x.storage.size(); ++i)
      x.storage[i] = float(i % 97) * 0.5f;
    for (size_t i = 0; i < y.storage.size(); ++i)
      y.storage[i] = float(i % 31) - 7.0f;
    cu.storage = {0, 3, 7};
    o.fill(kSentinel);
    s.fill(kSentinel);
    ptrs[AX] = &x.t;
    ptrs[AY] = &y.t;
    ptrs[ACU] = &cu.t;
    ptrs[AO] = &o.t;
    ptrs[AS] = &s.t;
  }
  GqaCase(const GqaCase &) = delete;

  float want(int64_t b, int64_t h, int64_t m, int64_t e) {
    return x({b, h, m, e}) + y({b, h / 2, m, e}) + 7.0f;
  }
  /// Checks o (and s unless absent) against the reference.
  void check(bool withS = true) {
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t m = 0; m < M; ++m) {
          float sum = 0;
          for (int64_t e = 0; e < E; ++e) {
            REQUIRE(o({b, h, m, e}) == want(b, h, m, e));
            sum += want(b, h, m, e);
          }
          if (withS)
            REQUIRE(s({b, h, m}) == sum);
        }
  }
  bool outputsUntouched() const {
    return o.all(kSentinel) && s.all(kSentinel);
  }
};

attn_launch threads(int n) {
  attn_launch l;
  std::memset(&l, 0, sizeof l);
  l.num_threads = n;
  return l;
}

void resetObservations() {
  gTasksRun = 0;
  std::lock_guard<std::mutex> lock(gSeenMutex);
  gThreads.clear();
  gSizesSeen.clear();
  gMainThread = std::this_thread::get_id();
}

/// Runs gqa_add expecting `status` with a message containing `text`, and
/// checks that no output was written.
void expectFailure(const attn_rt_kernel &k, GqaCase &c, attn_status status,
                   const std::string &text,
                   const attn_launch *launch = nullptr) {
  resetObservations();
  attn_status st = attn_rt_v1_run(&k, c.ptrs, launch);
  INFO("message: " << attn_last_error());
  REQUIRE(st == status);
  REQUIRE_THAT(attn_last_error(), Contains(text));
  REQUIRE(gTasksRun == 0);
  REQUIRE(c.outputsUntouched());
}

} // namespace

//===----------------------------------------------------------------------===//
// Success
//===----------------------------------------------------------------------===//

TEST_CASE("runtime: gqa_add runs and fills the descriptors", "[runtime]") {
  GqaKernel gk;
  GqaCase c;
  resetObservations();
  REQUIRE(attn_rt_v1_run(&gk.k, c.ptrs, nullptr) == ATTN_OK);
  c.check();
  // 2 * 4 * ceil(7 / 3) tasks.
  REQUIRE(gTasksRun == 2 * 4 * 3);
  // Ranks b, h, g, m, e, n then one presence flag per argument.
  REQUIRE(gSizesSeen == std::vector<int64_t>{2, 4, 2, 7, 4, 3, 1, 1, 1, 1, 1});
  // A NULL launch runs on the calling thread.
  REQUIRE(gThreads.size() == 1);
  REQUIRE(*gThreads.begin() == std::this_thread::get_id());
}

TEST_CASE("runtime: status strings", "[runtime]") {
  REQUIRE(std::string(attn_status_string(ATTN_OK)) == "success");
  REQUIRE(std::string(attn_status_string(ATTN_ERR_SHAPE)) == "shape mismatch");
  for (int s = ATTN_OK; s <= ATTN_ERR_DRIVER; ++s) {
    std::string text = attn_status_string(attn_status(s));
    REQUIRE(!text.empty());
    REQUIRE(text != "unknown status");
  }
  REQUIRE(std::string(attn_status_string(ATTN_ERR_OUT_OF_MEMORY)) ==
          "out of memory");
  REQUIRE(std::string(attn_status_string(ATTN_ERR_THREADS)) ==
          "thread pool could not start");
  REQUIRE(std::string(attn_status_string(ATTN_ERR_NO_DEVICE)) ==
          "no CUDA driver or device");
  REQUIRE(std::string(attn_status_string(ATTN_ERR_DRIVER)) ==
          "CUDA driver call failed");
  REQUIRE(std::string(attn_status_string(attn_status(99))) ==
          "unknown status");
}

TEST_CASE("runtime: explicit non-contiguous strides", "[runtime]") {
  GqaKernel gk;
  GqaCase c;
  const int64_t B = c.B, H = c.H, M = c.M, E = c.E, G = c.G;
  // x stored as [b, m, h, e] (innermost still contiguous).
  Tensor<float> x({B, H, M, E}, {M * H * E, E, H * E, 1}, B * H * M * E, f32());
  // y with every element two apart and padded rows.
  Tensor<float> y({B, G, M, E}, {G * M * 2 * E + 5, M * 2 * E, 2 * E, 2},
                  B * (G * M * 2 * E + 5), f32());
  // o with padded m rows; the padding must stay untouched.
  Tensor<float> o({B, H, M, E}, {H * M * (E + 3), M * (E + 3), E + 3, 1},
                  B * H * M * (E + 3), f32());
  // cu with stride 2.
  Tensor<int32_t> cu({3}, {2}, 6, i32());
  cu.storage = {0, -1, 3, -1, 7, -1};
  for (int64_t b = 0; b < B; ++b)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t e = 0; e < E; ++e) {
        for (int64_t h = 0; h < H; ++h)
          x({b, h, m, e}) = c.x({b, h, m, e});
        for (int64_t g = 0; g < G; ++g)
          y({b, g, m, e}) = c.y({b, g, m, e});
      }
  o.fill(kSentinel);
  const attn_tensor *ptrs[NUM_ARGS] = {&x.t, &y.t, &cu.t, &o.t, &c.s.t};
  REQUIRE(attn_rt_v1_run(&gk.k, ptrs, nullptr) == ATTN_OK);
  size_t written = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t m = 0; m < M; ++m)
        for (int64_t e = 0; e < E; ++e) {
          REQUIRE(o({b, h, m, e}) == c.want(b, h, m, e));
          ++written;
        }
  size_t sentinels = size_t(std::count(o.storage.begin(), o.storage.end(),
                                       kSentinel));
  REQUIRE(sentinels == o.storage.size() - written);

  // The same tensors through NULL strides give the same result.
  REQUIRE(attn_rt_v1_run(&gk.k, c.ptrs, nullptr) == ATTN_OK);
  c.check();
}

TEST_CASE("runtime: byte_offset and unit-size dimensions", "[runtime]") {
  GqaKernel gk;
  GqaCase c;
  // x's data starts 8 floats into its buffer, through byte_offset.
  Tensor<float> x({c.B, c.H, c.M, c.E}, {c.H * c.M * c.E, c.M * c.E, c.E, 1},
                  8 + c.B * c.H * c.M * c.E, f32());
  x.t.byte_offset = 8 * sizeof(float);
  for (int64_t i = 0; i < c.B * c.H * c.M * c.E; ++i)
    x.storage[size_t(8 + i)] = c.x.storage[size_t(i)];
  c.ptrs[AX] = &x.t;
  REQUIRE(attn_rt_v1_run(&gk.k, c.ptrs, nullptr) == ATTN_OK);
  c.check();

  // A dimension of size 1 may have any stride: negative, or 0 in an output.
  Tensor<float> o1({1, 1, 1, 4}, {-7, 99, 0, 1}, 4, f32());
  Tensor<float> x1({1, 1, 1, 4}, f32());
  Tensor<float> y1({1, 1, 1, 4}, f32());
  Tensor<int32_t> cu1({1}, i32());
  cu1.storage = {0};
  gk.relations[0].factor = 1;
  const attn_tensor *ptrs[NUM_ARGS] = {&x1.t, &y1.t, &cu1.t, &o1.t, nullptr};
  REQUIRE(attn_rt_v1_run(&gk.k, ptrs, nullptr) == ATTN_OK);
}

TEST_CASE("runtime: absent optional output", "[runtime]") {
  GqaKernel gk;
  GqaCase c;
  c.ptrs[AS] = nullptr;
  resetObservations();
  REQUIRE(attn_rt_v1_run(&gk.k, c.ptrs, nullptr) == ATTN_OK);
  c.check(/*withS=*/false);
  REQUIRE(c.s.all(kSentinel));
  REQUIRE(gSizesSeen.back() == 0); // the presence flag of s
  REQUIRE(gSizesSeen[NUM_RANKS + AO] == 1);

  // A required output may not be absent.
  GqaCase d;
  d.ptrs[AO] = nullptr;
  expectFailure(gk.k, d, ATTN_ERR_NULL_POINTER,
                "gqa_add: o: tensor is NULL (it is a required output)");
}

TEST_CASE("runtime: no tasks returns at once", "[runtime]") {
  GqaKernel gk;
  // M = 0: no tasks, and empty tensors may have NULL data.
  Tensor<float> x({2, 4, 0, 4}, f32()), y({2, 2, 0, 4}, f32()),
      o({2, 4, 0, 4}, f32());
  Tensor<int32_t> cu({1}, i32());
  cu.storage = {0};
  x.t.data = nullptr;
  o.t.data = nullptr;
  const attn_tensor *ptrs[NUM_ARGS] = {&x.t, &y.t, &cu.t, &o.t, nullptr};
  resetObservations();
  attn_launch l = threads(4);
  REQUIRE(attn_rt_v1_run(&gk.k, ptrs, &l) == ATTN_OK);
  REQUIRE(gTasksRun == 0);
}

//===----------------------------------------------------------------------===//
// Every failure: status, message, outputs untouched
//===----------------------------------------------------------------------===//

TEST_CASE("runtime: null pointers", "[runtime]") {
  GqaKernel gk;
  {
    GqaCase c;
    c.ptrs[AX] = nullptr;
    expectFailure(gk.k, c, ATTN_ERR_NULL_POINTER,
                  "gqa_add: x: tensor is NULL (it is an input)");
  }
  {
    GqaCase c;
    c.y.t.data = nullptr;
    expectFailure(gk.k, c, ATTN_ERR_NULL_POINTER,
                  "y: data is NULL but the tensor has 112 elements");
  }
  {
    GqaCase c;
    c.s.t.data = nullptr; // a present optional output needs its data
    expectFailure(gk.k, c, ATTN_ERR_NULL_POINTER, "s: data is NULL");
  }
  {
    GqaCase c;
    c.x.t.shape = nullptr;
    expectFailure(gk.k, c, ATTN_ERR_NULL_POINTER, "x: shape is NULL");
  }
  {
    GqaCase c;
    resetObservations();
    REQUIRE(attn_rt_v1_run(&gk.k, nullptr, nullptr) == ATTN_ERR_NULL_POINTER);
    REQUIRE_THAT(attn_last_error(), Contains("the argument array is NULL"));
  }
}

TEST_CASE("runtime: device, ndim, dtype", "[runtime]") {
  GqaKernel gk;
  {
    GqaCase c;
    c.y.t.device.device_type = ATTN_DEVICE_CUDA;
    expectFailure(gk.k, c, ATTN_ERR_DEVICE,
                  "y: tensor is on device type 2, but the kernel runs on 1 "
                  "(CPU)");
  }
  {
    GqaCase c;
    c.x.t.ndim = 3;
    expectFailure(gk.k, c, ATTN_ERR_NDIM,
                  "x: tensor has 3 dimensions, but the kernel needs 4");
  }
  {
    GqaCase c;
    c.x.t.dtype = attn_dtype{ATTN_DTYPE_FLOAT, 16, 1};
    expectFailure(gk.k, c, ATTN_ERR_DTYPE,
                  "x: dtype is float16, but the kernel needs float32");
  }
  {
    GqaCase c;
    c.o.t.dtype = attn_dtype{ATTN_DTYPE_BFLOAT, 16, 1};
    expectFailure(gk.k, c, ATTN_ERR_DTYPE,
                  "o: dtype is bfloat16, but the kernel needs float32");
  }
  {
    GqaCase c;
    c.cu.t.dtype = attn_dtype{ATTN_DTYPE_INT, 64, 1};
    expectFailure(gk.k, c, ATTN_ERR_DTYPE,
                  "cu: dtype is int64, but the kernel needs int32");
  }
  {
    GqaCase c;
    c.y.t.dtype = attn_dtype{ATTN_DTYPE_FLOAT, 32, 4};
    expectFailure(gk.k, c, ATTN_ERR_DTYPE,
                  "y: dtype is float32 x 4 lanes, but the kernel needs "
                  "float32");
  }
  {
    GqaCase c;
    c.y.t.dtype = attn_dtype{9, 8, 1};
    expectFailure(gk.k, c, ATTN_ERR_DTYPE,
                  "y: dtype is dtype(code 9, bits 8, lanes 1)");
  }
}

TEST_CASE("runtime: shapes", "[runtime]") {
  GqaKernel gk;
  {
    GqaCase c;
    c.y.shape[0] = 3;
    expectFailure(gk.k, c, ATTN_ERR_SHAPE,
                  "gqa_add: y: dimension 0 (b) has size 3, but x has 2 "
                  "(dimension 0)");
  }
  {
    GqaCase c;
    c.o.shape[2] = 6;
    expectFailure(gk.k, c, ATTN_ERR_SHAPE,
                  "o: dimension 2 (m) has size 6, but x has 7 (dimension 2)");
  }
  {
    GqaCase c;
    c.s.shape[1] = 5;
    expectFailure(gk.k, c, ATTN_ERR_SHAPE,
                  "s: dimension 1 (h) has size 5, but x has 4 (dimension 1)");
  }
  {
    // The static size e = 4.
    GqaCase c;
    c.x.shape[3] = 5;
    expectFailure(gk.k, c, ATTN_ERR_SHAPE,
                  "x: dimension 3 (e) has size 5, but the kernel needs e = 4");
  }
  {
    GqaCase c;
    c.y.shape[2] = -1;
    expectFailure(gk.k, c, ATTN_ERR_SHAPE,
                  "y: dimension 2 (m) has negative size -1");
  }
  {
    GqaCase c;
    int64_t huge = int64_t(1) << 40;
    c.y.shape[0] = huge;
    c.y.shape[2] = huge;
    expectFailure(gk.k, c, ATTN_ERR_SHAPE,
                  "y: the number of elements overflows int64");
  }
}

TEST_CASE("runtime: relations and GQA ratios", "[runtime]") {
  GqaKernel gk;
  {
    // h = 4 but g = 3: 4 != 2 * 3.
    GqaCase c;
    Tensor<float> y({2, 3, 7, 4}, f32());
    c.ptrs[AY] = &y.t;
    expectFailure(gk.k, c, ATTN_ERR_SHAPE,
                  "h = 4 (from x dimension 1) is not 2 * g = 2 * 3 (g from y "
                  "dimension 1)");
  }
  {
    // MQA-like: g = 1 with h = 2 is fine.
    GqaCase c;
    Tensor<float> x({2, 2, 7, 4}, f32()), o({2, 2, 7, 4}, f32());
    Tensor<float> y({2, 1, 7, 4}, f32());
    const attn_tensor *ptrs[NUM_ARGS] = {&x.t, &y.t, &c.cu.t, &o.t, nullptr};
    REQUIRE(attn_rt_v1_run(&gk.k, ptrs, nullptr) == ATTN_OK);
  }
  {
    // A ratio 3 that does not divide h = 4, with g in no tensor: the
    // runtime infers g from h and rejects h = 4 with factor 3.
    GqaCase c;
    gk.relations[0].factor = 3;
    gk.args[AY].dims[1] = RH; // y is [b, h, m, e] now: g appears nowhere
    Tensor<float> y({2, 4, 7, 4}, f32());
    c.ptrs[AY] = &y.t;
    expectFailure(gk.k, c, ATTN_ERR_SHAPE,
                  "h = 4 (from x dimension 1) is not a multiple of 3, as "
                  "h = 3 * g needs");
    gk.relations[0].factor = 2;
    gk.args[AY].dims[1] = RG;
  }
  {
    // A static size that breaks a relation: e = 4 = 3 * n.
    GqaCase c;
    GqaKernel k2;
    k2.relations[0] = attn_rt_relation{RE, 3, RN};
    expectFailure(k2.k, c, ATTN_ERR_SHAPE,
                  "e = 4 (from the kernel's static size) is not 3 * n = 3 * 3 "
                  "(n from cu dimension 0)");
  }
}

namespace {

// Kernel 2: "pairs": ranks n, half with n = 2 * half; half appears in no
// tensor. x [n] input, o [n] output, o = 10 * x; one task per pair.
std::atomic<int64_t> gHalfSeen{-1};

void pairsTasks(void **descs, int64_t begin, int64_t end) {
  auto *sizes = static_cast<MemRef<1> *>(descs[0]);
  auto *x = static_cast<MemRef<1> *>(descs[1]);
  auto *o = static_cast<MemRef<1> *>(descs[2]);
  gHalfSeen = static_cast<const int64_t *>(sizes->aligned)[1];
  for (int64_t t = begin; t < end; ++t)
    for (int64_t i = 2 * t; i < 2 * t + 2; ++i)
      static_cast<float *>(o->aligned)[i * o->strides[0]] =
          10 * static_cast<const float *>(x->aligned)[i * x->strides[0]];
}

struct PairsKernel {
  attn_rt_rank ranks[2] = {{"n", -1}, {"half", -1}};
  attn_rt_relation relations[1] = {{0, 2, 1}};
  attn_rt_arg args[2];
  attn_rt_kernel k;
  PairsKernel() {
    args[0] = makeArg("x", ATTN_RT_INPUT, f32(), {0});
    args[1] = makeArg("o", ATTN_RT_OUTPUT, f32(), {0});
    std::memset(&k, 0, sizeof k);
    k.name = "pairs";
    k.abi_version = ATTN_RUNTIME_ABI_VERSION;
    k.device_type = ATTN_DEVICE_CPU;
    k.num_ranks = 2;
    k.ranks = ranks;
    k.num_relations = 1;
    k.relations = relations;
    k.num_args = 2;
    k.args = args;
    k.num_task_ranks = 1;
    k.task_ranks[0] = 1;
    k.tiled_rank = -1;
    k.tile = 1;
    k.tasks = pairsTasks;
  }
};

} // namespace

TEST_CASE("runtime: a rank inferred from a relation", "[runtime]") {
  PairsKernel pk;
  Tensor<float> x({8}, f32()), o({8}, f32());
  for (int i = 0; i < 8; ++i)
    x.storage[size_t(i)] = float(i);
  const attn_tensor *ptrs[2] = {&x.t, &o.t};
  attn_launch l = threads(3);
  REQUIRE(attn_rt_v1_run(&pk.k, ptrs, &l) == ATTN_OK);
  REQUIRE(gHalfSeen == 4);
  for (int i = 0; i < 8; ++i)
    REQUIRE(o.storage[size_t(i)] == 10.0f * float(i));

  Tensor<float> x7({7}, f32()), o7({7}, f32());
  o7.fill(kSentinel);
  const attn_tensor *ptrs7[2] = {&x7.t, &o7.t};
  REQUIRE(attn_rt_v1_run(&pk.k, ptrs7, &l) == ATTN_ERR_SHAPE);
  REQUIRE_THAT(attn_last_error(),
               Contains("pairs: n = 7 (from x dimension 0) is not a multiple "
                        "of 2, as n = 2 * half needs"));
  REQUIRE(o7.all(kSentinel));

  // Without the relation, half has no size at all.
  pk.k.num_relations = 0;
  REQUIRE(attn_rt_v1_run(&pk.k, ptrs, &l) == ATTN_ERR_INVALID_ARGUMENT);
  REQUIRE_THAT(attn_last_error(),
               Contains("the size of rank half is unknown"));
}

TEST_CASE("runtime: strides", "[runtime]") {
  GqaKernel gk;
  {
    // x needs a contiguous innermost dimension.
    GqaCase c;
    Tensor<float> x({2, 4, 7, 4}, {224, 56, 8, 2}, 448, f32());
    c.ptrs[AX] = &x.t;
    expectFailure(gk.k, c, ATTN_ERR_STRIDE,
                  "x: dimension 3 (e) has stride 2, but the kernel needs "
                  "stride 1");
  }
  {
    GqaCase c;
    Tensor<float> y({2, 2, 7, 4}, {56, 28, -4, 1}, 112, f32());
    c.ptrs[AY] = &y.t;
    expectFailure(gk.k, c, ATTN_ERR_STRIDE,
                  "y: dimension 2 (m) has negative stride -4");
  }
  {
    // An input may broadcast (stride 0); an output may not.
    GqaCase c;
    Tensor<float> y({2, 2, 7, 4}, {0, 0, 4, 1}, 28, f32());
    c.ptrs[AY] = &y.t;
    resetObservations();
    REQUIRE(attn_rt_v1_run(&gk.k, c.ptrs, nullptr) == ATTN_OK);
    GqaCase d;
    Tensor<float> o({2, 4, 7, 4}, {112, 28, 0, 1}, 224, f32());
    o.fill(kSentinel);
    d.ptrs[AO] = &o.t;
    expectFailure(gk.k, d, ATTN_ERR_STRIDE,
                  "o: dimension 2 (m) of an output has stride 0");
    REQUIRE(o.all(kSentinel));
  }
  {
    GqaCase c;
    Tensor<float> y({2, 2, 7, 4}, {INT64_MAX / 2, INT64_MAX / 2, 4, 1}, 112, f32());
    c.ptrs[AY] = &y.t;
    expectFailure(gk.k, c, ATTN_ERR_STRIDE,
                  "y: the strides address past int64 elements");
  }
}

TEST_CASE("runtime: alignment", "[runtime]") {
  GqaKernel gk;
  {
    GqaCase c;
    c.x.t.byte_offset = 2;
    expectFailure(gk.k, c, ATTN_ERR_ALIGNMENT,
                  "x: data + byte_offset");
    REQUIRE_THAT(attn_last_error(),
                 Contains("is not aligned to the element size (4 bytes)"));
  }
  {
    GqaCase c;
    std::vector<float> buf(c.o.storage.size() + 1);
    c.o.t.data = reinterpret_cast<char *>(buf.data()) + 1;
    expectFailure(gk.k, c, ATTN_ERR_ALIGNMENT, "o: data + byte_offset");
  }
}

TEST_CASE("runtime: cu_seqlens metadata", "[runtime]") {
  GqaKernel gk;
  {
    GqaCase c;
    c.cu.storage = {1, 3, 7};
    expectFailure(gk.k, c, ATTN_ERR_METADATA, "cu: cu_seqlens[0] is 1, not 0");
  }
  {
    GqaCase c;
    c.cu.storage = {0, 5, 4};
    expectFailure(gk.k, c, ATTN_ERR_METADATA,
                  "cu: cu_seqlens decreases: [1] = 5, [2] = 4");
  }
  {
    GqaCase c;
    c.cu.storage = {0, 3, 8};
    expectFailure(gk.k, c, ATTN_ERR_METADATA,
                  "cu: cu_seqlens[2] = 8 exceeds the size of m (7)");
  }
  {
    GqaCase c;
    Tensor<int32_t> cu({0}, i32());
    c.ptrs[ACU] = &cu.t;
    expectFailure(gk.k, c, ATTN_ERR_METADATA,
                  "cu: cu_seqlens needs at least one boundary");
  }
  {
    // Equal boundaries (empty sequences) and last < |m| are fine.
    GqaCase c;
    c.cu.storage = {0, 0, 5};
    REQUIRE(attn_rt_v1_run(&gk.k, c.ptrs, nullptr) == ATTN_OK);
  }
}

TEST_CASE("runtime: descriptor, launch and CPU checks", "[runtime]") {
  {
    GqaCase c;
    REQUIRE(attn_rt_v1_run(nullptr, c.ptrs, nullptr) ==
            ATTN_ERR_INVALID_ARGUMENT);
    REQUIRE_THAT(attn_last_error(), Contains("kernel descriptor is NULL"));
  }
  {
    GqaKernel gk;
    gk.k.abi_version = 2;
    GqaCase c;
    expectFailure(gk.k, c, ATTN_ERR_INVALID_ARGUMENT,
                  "gqa_add: the kernel was built for runtime ABI version 2, "
                  "but this runtime implements version 1");
  }
  {
    GqaKernel gk;
    gk.args[AX].ndim = ATTN_RT_MAX_NDIM + 1;
    GqaCase c;
    expectFailure(gk.k, c, ATTN_ERR_INVALID_ARGUMENT,
                  "kernel descriptor: bad argument 0");
  }
  {
    GqaKernel gk;
    gk.k.tiled_rank = RE; // not a task rank
    GqaCase c;
    expectFailure(gk.k, c, ATTN_ERR_INVALID_ARGUMENT,
                  "kernel descriptor: bad tiled rank");
  }
  {
    GqaKernel gk;
    gk.args[ACU].dtype = f32();
    GqaCase c;
    expectFailure(gk.k, c, ATTN_ERR_INVALID_ARGUMENT,
                  "cu_seqlens must be a 1-D int32 input");
  }
  {
    GqaKernel gk;
    GqaCase c;
    attn_launch l = threads(-1);
    expectFailure(gk.k, c, ATTN_ERR_INVALID_ARGUMENT,
                  "launch: num_threads is -1 (must be >= 0)", &l);
  }
  {
    GqaKernel gk;
    gk.k.device_type = ATTN_DEVICE_CUDA;
    GqaCase c;
    expectFailure(gk.k, c, ATTN_ERR_NO_KERNEL,
                  "this runtime runs CPU kernels only");
  }
  {
    GqaKernel gk;
    gk.k.required_isa = 7;
    GqaCase c;
    expectFailure(gk.k, c, ATTN_ERR_NO_KERNEL,
                  "the kernel needs an unknown instruction set (7)");
  }
  {
    // The real ISA checks agree with the compiler's view of this CPU.
    GqaKernel gk;
    __builtin_cpu_init();
    const bool avx2 =
        __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    const bool avx512 = __builtin_cpu_supports("avx512f");
    gk.k.required_isa = ATTN_RT_ISA_AVX2_FMA;
    GqaCase c;
    if (avx2) {
      REQUIRE(attn_rt_v1_run(&gk.k, c.ptrs, nullptr) == ATTN_OK);
    } else {
      expectFailure(gk.k, c, ATTN_ERR_NO_KERNEL, "needs AVX2 and FMA");
    }
    gk.k.required_isa = ATTN_RT_ISA_AVX512F;
    GqaCase d;
    if (avx512) {
      REQUIRE(attn_rt_v1_run(&gk.k, d.ptrs, nullptr) == ATTN_OK);
    } else {
      expectFailure(gk.k, d, ATTN_ERR_NO_KERNEL, "needs AVX-512F");
    }
  }
}

TEST_CASE("runtime: the error message is per thread and kept on success",
          "[runtime]") {
  GqaKernel gk;
  GqaCase c;
  c.x.t.ndim = 2;
  REQUIRE(attn_rt_v1_run(&gk.k, c.ptrs, nullptr) == ATTN_ERR_NDIM);
  std::string mine = attn_last_error();
  std::string other;
  std::thread([&] { other = attn_last_error(); }).join();
  REQUIRE(other.empty());
  GqaCase d;
  REQUIRE(attn_rt_v1_run(&gk.k, d.ptrs, nullptr) == ATTN_OK);
  REQUIRE(std::string(attn_last_error()) == mine);
}

//===----------------------------------------------------------------------===//
// Threads
//===----------------------------------------------------------------------===//

TEST_CASE("runtime: num_threads 1, 2 and 0", "[runtime]") {
  GqaKernel gk;
  const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  gSlowTasks = true;
  for (int n : {1, 2, 0, 3, 2}) {
    GqaCase c;
    resetObservations();
    attn_launch l = threads(n);
    REQUIRE(attn_rt_v1_run(&gk.k, c.ptrs, &l) == ATTN_OK);
    c.check();
    REQUIRE(gTasksRun == 24);
    INFO("num_threads " << n << ": " << gThreads.size() << " threads");
    if (n == 1) {
      REQUIRE(gThreads.size() == 1);
      REQUIRE(*gThreads.begin() == std::this_thread::get_id());
    } else {
      const size_t limit = size_t(n == 0 ? std::max(cpus, 1L) : n);
      REQUIRE(gThreads.size() <= limit);
      // 24 tasks of 2 ms each: a second thread always gets some.
      if (limit >= 2)
        REQUIRE(gThreads.size() >= 2);
    }
  }
  gSlowTasks = false;
  // Pool workers have stacks of at least 8 MiB.
  REQUIRE(gMinWorkerStack.load() >= size_t(8) << 20);
  REQUIRE(gMinWorkerStack.load() != SIZE_MAX);
}

namespace {

struct UserPool {
  std::atomic<int> calls{0};
  std::atomic<int64_t> chunks{0};
  int64_t lastNumTasks = -1;
};

/// A framework-style parallel-for: chunks of 5 over 3 std::threads.
void userParallelFor(void *user, int64_t numTasks, attn_task_fn fn,
                     void *ctx) {
  auto *pool = static_cast<UserPool *>(user);
  ++pool->calls;
  pool->lastNumTasks = numTasks;
  std::atomic<int64_t> next{0};
  auto work = [&] {
    for (;;) {
      int64_t b = next.fetch_add(5);
      if (b >= numTasks)
        return;
      ++pool->chunks;
      fn(ctx, b, std::min(numTasks, b + 5));
    }
  };
  std::vector<std::thread> ts;
  for (int i = 0; i < 3; ++i)
    ts.emplace_back(work);
  for (std::thread &t : ts)
    t.join();
}

} // namespace

TEST_CASE("runtime: a caller's parallel_for", "[runtime]") {
  GqaKernel gk;
  UserPool pool;
  attn_launch l = threads(0);
  l.parallel_for = userParallelFor;
  l.parallel_for_user = &pool;
  {
    GqaCase c;
    resetObservations();
    REQUIRE(attn_rt_v1_run(&gk.k, c.ptrs, &l) == ATTN_OK);
    c.check();
    REQUIRE(pool.calls == 1);
    REQUIRE(pool.lastNumTasks == 24);
    REQUIRE(pool.chunks == 5); // ceil(24 / 5)
    REQUIRE(gTasksRun == 24);
  }
  {
    // num_threads 1 still means the calling thread only.
    GqaCase c;
    l.num_threads = 1;
    REQUIRE(attn_rt_v1_run(&gk.k, c.ptrs, &l) == ATTN_OK);
    c.check();
    REQUIRE(pool.calls == 1);
  }
  {
    // A failure never reaches the callback.
    GqaCase c;
    l.num_threads = 4;
    c.x.t.ndim = 1;
    expectFailure(gk.k, c, ATTN_ERR_NDIM, "x: tensor has 1 dimensions", &l);
    REQUIRE(pool.calls == 1);
  }
}

TEST_CASE("runtime: many concurrent callers", "[runtime]") {
  GqaKernel gk;
  PairsKernel pk;
  std::atomic<int> failures{0};
  std::vector<std::thread> callers;
  for (int id = 0; id < 6; ++id)
    callers.emplace_back([&, id] {
      for (int iter = 0; iter < 25; ++iter) {
        GqaCase c;
        // Distinct data per caller and iteration.
        for (float &v : c.x.storage)
          v += float(id * 100 + iter);
        attn_launch l = threads(id % 3 == 0 ? 0 : id % 3 == 1 ? 2 : 1);
        if (attn_rt_v1_run(&gk.k, c.ptrs, iter % 5 == 4 ? nullptr : &l) !=
            ATTN_OK) {
          ++failures;
          continue;
        }
        bool ok = true;
        for (int64_t b = 0; b < c.B && ok; ++b)
          for (int64_t h = 0; h < c.H && ok; ++h)
            for (int64_t m = 0; m < c.M && ok; ++m)
              for (int64_t e = 0; e < c.E && ok; ++e)
                ok = c.o({b, h, m, e}) == c.want(b, h, m, e);
        if (!ok)
          ++failures;
        // Interleave a failing call and a second kernel on the same pool.
        c.y.t.ndim = 1;
        if (attn_rt_v1_run(&gk.k, c.ptrs, &l) != ATTN_ERR_NDIM ||
            std::string(attn_last_error()).find("y: tensor has 1") ==
                std::string::npos)
          ++failures;
        Tensor<float> x({64}, f32()), o({64}, f32());
        for (int i = 0; i < 64; ++i)
          x.storage[size_t(i)] = float(i + id);
        const attn_tensor *ptrs[2] = {&x.t, &o.t};
        attn_launch l4 = threads(4);
        if (attn_rt_v1_run(&pk.k, ptrs, &l4) != ATTN_OK)
          ++failures;
        for (int i = 0; i < 64; ++i)
          if (o.storage[size_t(i)] != 10.0f * float(i + id))
            ++failures;
      }
    });
  for (std::thread &t : callers)
    t.join();
  REQUIRE(failures == 0);
}

TEST_CASE("runtime: the pool after fork", "[runtime]") {
  GqaKernel gk;
  {
    // Start the pool in the parent.
    GqaCase c;
    attn_launch l = threads(2);
    REQUIRE(attn_rt_v1_run(&gk.k, c.ptrs, &l) == ATTN_OK);
  }
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // The child has no workers: it must start its own and not hang.
    alarm(20);
    gSlowTasks = true;
    int code = 0;
    for (int iter = 0; iter < 3 && code == 0; ++iter) {
      GqaCase c;
      resetObservations();
      attn_launch l = threads(2);
      if (attn_rt_v1_run(&gk.k, c.ptrs, &l) != ATTN_OK)
        code = 1;
      else if (gTasksRun != 24)
        code = 2;
      else if (gThreads.size() != 2)
        code = 3;
      for (int64_t i = 0; code == 0 && i < c.B * c.H * c.M * c.E; ++i)
        if (c.o.storage[size_t(i)] == kSentinel)
          code = 4;
    }
    _exit(code);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  INFO("child status " << status);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  // The parent's pool still works.
  GqaCase c;
  attn_launch l = threads(2);
  REQUIRE(attn_rt_v1_run(&gk.k, c.ptrs, &l) == ATTN_OK);
  c.check();
}
