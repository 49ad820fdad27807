/*===- attn/runtime.h - C ABI of generated attention kernels ------*- C -*-===*
 *
 * Every library written by `attnc` exposes one function per kernel:
 *
 *     attn_status <lib>_<kernel>(const <lib>_<kernel>_args *args,
 *                                const attn_launch *launch);
 *
 * where the args struct holds one `const attn_tensor *` per cascade argument
 * and result, in the cascade's order. The generated header repeats this file
 * (guarded by ATTN_RUNTIME_H), so users need nothing from this project at run
 * time: the library carries the small runtime below (argument validation, a
 * thread pool) and needs only libc, libm and pthreads (GPU kernels also
 * dlopen libcuda.so.1 at their first call; see the CUDA part below).
 *
 * The part after "For generated code" is the contract between `attnc` and the
 * runtime; users do not call it.
 *
 *===----------------------------------------------------------------------===*/

#ifndef ATTN_RUNTIME_H
#define ATTN_RUNTIME_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ATTN_RUNTIME_ABI_VERSION 1
/* Additions that keep version 1 compatible: 1 = CUDA kernels (status codes
 * 13 and 14, attn_rt_cuda_kernel, attn_rt_v1_run_cuda). A program built
 * against minor 0 still works with libraries of minor 1; it may only see
 * status codes it does not name. */
#define ATTN_RUNTIME_ABI_MINOR 1

/* Status of a call. 0 is success; the message of the last failure on the
 * calling thread is attn_last_error(). */
typedef enum attn_status {
  ATTN_OK = 0,
  ATTN_ERR_NULL_POINTER = 1,    /* a required tensor or its data is NULL */
  ATTN_ERR_DEVICE = 2,          /* tensor on the wrong device */
  ATTN_ERR_DTYPE = 3,           /* element type differs from the kernel's */
  ATTN_ERR_NDIM = 4,            /* wrong number of dimensions */
  ATTN_ERR_SHAPE = 5,           /* sizes disagree, differ from a static size,
                                   or break a relation (e.g. GQA ratio) */
  ATTN_ERR_STRIDE = 6,          /* a stride this kernel does not support */
  ATTN_ERR_ALIGNMENT = 7,       /* data not aligned to its element size */
  ATTN_ERR_METADATA = 8,        /* invalid metadata (e.g. cu_seqlens) */
  ATTN_ERR_NO_KERNEL = 9,       /* no code for this device or CPU */
  ATTN_ERR_OUT_OF_MEMORY = 10,
  ATTN_ERR_THREADS = 11,        /* the thread pool could not start */
  ATTN_ERR_INVALID_ARGUMENT = 12, /* anything else (e.g. a bad launch) */
  ATTN_ERR_NO_DEVICE = 13,      /* GPU kernels: no CUDA driver (libcuda.so.1
                                   cannot be loaded) or no usable device */
  ATTN_ERR_DRIVER = 14          /* GPU kernels: a CUDA driver call failed
                                   (the message names it and its error) */
} attn_status;

/* A tensor, laid out exactly as DLPack's DLTensor (dlpack.h, v0.8+), so that
 * a DLTensor pointer can be passed as is. Strides are in elements; NULL
 * strides mean compact row-major. On a dimension of size > 1 a stride must
 * be >= 0, and > 0 in an output (ATTN_ERR_STRIDE); outputs must not overlap
 * each other or the inputs (not checked). data may be NULL only when the
 * tensor has no elements; data + byte_offset must be aligned to the element
 * size. device_id is not used by CPU kernels. */
typedef struct attn_device {
  int32_t device_type; /* 1 = CPU (kDLCPU), 2 = CUDA (kDLCUDA) */
  int32_t device_id;
} attn_device;

typedef struct attn_dtype {
  uint8_t code;   /* 0 int, 1 uint, 2 float, 4 bfloat (DLDataTypeCode) */
  uint8_t bits;   /* 8, 16, 32, 64 */
  uint16_t lanes; /* 1 */
} attn_dtype;

typedef struct attn_tensor {
  void *data;
  attn_device device;
  int32_t ndim;
  attn_dtype dtype;
  const int64_t *shape;
  const int64_t *strides;
  uint64_t byte_offset;
} attn_tensor;

#define ATTN_DEVICE_CPU 1
#define ATTN_DEVICE_CUDA 2
#define ATTN_DTYPE_INT 0
#define ATTN_DTYPE_UINT 1
#define ATTN_DTYPE_FLOAT 2
#define ATTN_DTYPE_BFLOAT 4

/* How to run a call. A NULL launch runs every task on the calling thread
 * (as num_threads = 1 does). Otherwise: num_threads 1 -> the calling thread;
 * else parallel_for when set (it gets all tasks; num_threads is then only a
 * request to it); else the built-in pool with num_threads threads, the
 * caller included (0: one per online hardware thread). The pool is created
 * lazily, grows to the largest request, keeps its threads (8 MiB stacks,
 * every signal blocked) for the life of the process and runs one call at a
 * time: concurrent calls from several threads are safe and wait their turn.
 * num_threads < 0 is ATTN_ERR_INVALID_ARGUMENT. */
typedef void (*attn_task_fn)(void *ctx, int64_t begin, int64_t end);
/* A framework's parallel-for: must call fn(ctx, b, e) over disjoint ranges
 * covering [0, num_tasks), from any threads, and return when all are done.
 * It is called at most once per call, with num_tasks >= 1. */
typedef void (*attn_parallel_for_fn)(void *user, int64_t num_tasks,
                                     attn_task_fn fn, void *ctx);
typedef struct attn_launch {
  int32_t num_threads;               /* 0: one per hardware thread;
                                        1: the calling thread only */
  attn_parallel_for_fn parallel_for; /* optional: used instead of the
                                        built-in pool when set */
  void *parallel_for_user;
  void *stream;                      /* GPU kernels: the CUstream to launch
                                        on (NULL: the default stream); the
                                        other fields are then not used */
} attn_launch;

/* A short constant description of a status ("shape mismatch", ...). */
const char *attn_status_string(attn_status status);
/* The message of the last failed call on this thread ("" if none): names
 * the kernel, the tensor, the dimension and the sizes involved, e.g.
 * "flash: v: dimension 2 (p) has size 99, but k has 100 (dimension 2)".
 * Successful calls leave it as it is. The pointer stays valid for the life
 * of the thread; the text changes with the next failure on this thread. */
const char *attn_last_error(void);

/*===------------------------------------------------------------------===*
 * For generated code: the kernel descriptor that `attnc` emits as a
 * constant, and the one runtime entry every generated function calls.
 *===------------------------------------------------------------------===*/

#define ATTN_RT_MAX_NDIM 8
#define ATTN_RT_MAX_ARGS 24
#define ATTN_RT_MAX_RANKS 24

enum {
  ATTN_RT_INPUT = 0,
  ATTN_RT_OUTPUT = 1,
  ATTN_RT_OPTIONAL_OUTPUT = 2 /* may be NULL: not computed then */
};

enum {
  ATTN_RT_META_NONE = 0,
  /* int32 [n] boundaries: [0] = 0, nondecreasing, last <= |bound_rank| */
  ATTN_RT_META_CU_SEQLENS = 1,
  /* int32 indices into a dimension of another tensor (a paged KV cache's
   * block table): every value in [0, |bound_rank|) */
  ATTN_RT_META_INDEX = 2
};

typedef struct attn_rt_rank {
  const char *name;
  int64_t static_size; /* -1: taken from the tensors */
} attn_rt_rank;

/* |lhs| = factor * |rhs| */
typedef struct attn_rt_relation {
  int32_t lhs;
  int64_t factor;
  int32_t rhs;
} attn_rt_relation;

typedef struct attn_rt_arg {
  const char *name; /* the C parameter name */
  int32_t role;     /* ATTN_RT_INPUT / _OUTPUT / _OPTIONAL_OUTPUT */
  attn_dtype dtype;
  int32_t ndim;
  int32_t dims[ATTN_RT_MAX_NDIM]; /* rank index of each dimension */
  int32_t unit_inner_stride;      /* 1: the last dimension must have stride 1
                                     (when its size is > 1) */
  int32_t metadata_kind;          /* ATTN_RT_META_* */
  int32_t metadata_bound_rank;    /* rank whose size bounds the values */
} attn_rt_arg;

/* The generated task function. descs[0] points to the memref descriptor of a
 * 1-D i64 buffer holding the size of every rank (kernel order) followed by one
 * presence flag (1/0) per argument; descs[1 + i] points to the memref
 * descriptor of argument i ({allocated, aligned, offset, sizes[n],
 * strides[n]}, MLIR's ranked memref layout): both pointers are
 * data + byte_offset, offset is 0, strides are the tensor's (compact
 * row-major when it has none). An absent optional output has flag 0, null
 * pointers, its ranks' sizes and compact strides. It runs tasks
 * [begin, end), 0 <= begin < end <= number of tasks, possibly on several
 * threads at once (with disjoint ranges). */
typedef void (*attn_rt_task_fn)(void **descs, int64_t begin, int64_t end);

/* required_isa values. */
enum {
  ATTN_RT_ISA_NONE = 0,
  ATTN_RT_ISA_AVX2_FMA = 1, /* __builtin_cpu_supports("avx2") && ("fma") */
  ATTN_RT_ISA_AVX512F = 2   /* __builtin_cpu_supports("avx512f") */
};

typedef struct attn_rt_kernel {
  const char *name;
  int32_t abi_version;  /* ATTN_RUNTIME_ABI_VERSION */
  int32_t device_type;  /* ATTN_DEVICE_CPU */
  int32_t num_ranks;
  const attn_rt_rank *ranks;
  int32_t num_relations;
  const attn_rt_relation *relations;
  int32_t num_args;
  const attn_rt_arg *args;
  /* Tasks: the product over task_ranks of their sizes, where tiled_rank (one
   * of them, or -1) counts ceil(size / tile). The task function decodes a
   * task index itself (row-major over task_ranks). */
  int32_t num_task_ranks;
  int32_t task_ranks[ATTN_RT_MAX_RANKS];
  int32_t tiled_rank;
  int64_t tile;
  attn_rt_task_fn tasks;
  /* x86 feature the code needs, checked at run time (ATTN_RT_ISA_*). */
  int32_t required_isa;
} attn_rt_kernel;

/* Validates `kernel` (ATTN_ERR_INVALID_ARGUMENT for a bad descriptor or
 * abi_version), `launch`, the CPU (ATTN_ERR_NO_KERNEL) and `tensors`
 * (num_args pointers, in argument order), then runs its tasks as `launch`
 * says. Touches no output when it fails. With no tasks (a task rank of size
 * 0) it returns ATTN_OK at once. */
attn_status attn_rt_v1_run(const attn_rt_kernel *kernel,
                           const attn_tensor *const *tensors,
                           const attn_launch *launch);

/*===------------------------------------------------------------------===*
 * For generated code: CUDA kernels (ABI minor 1)
 *
 * A GPU entry point validates like a CPU one (the tensors must have
 * device_type ATTN_DEVICE_CUDA and one device_id; data are CUdeviceptr
 * values), then launches through the CUDA driver API, which the runtime
 * loads with dlopen("libcuda.so.1") at the first GPU call: a library links
 * and runs on machines without a driver (calls return ATTN_ERR_NO_DEVICE).
 *===------------------------------------------------------------------===*/

/* One embedded cubin (an ELF image assembled by ptxas for one arch). */
typedef struct attn_rt_cubin {
  const char *arch;      /* "sm_80", "sm_90a" */
  int32_t major, minor;  /* the compute capability it was assembled for */
  int32_t arch_specific; /* 1 ("a" archs): only that exact capability;
                            0: also later minors of the same major */
  const void *image;
  uint64_t size;
} attn_rt_cubin;

/* base: the CPU descriptor's fields with device_type ATTN_DEVICE_CUDA and
 * tasks NULL; task_ranks give the grid: tiled_rank (tile rows per block) is
 * grid x, the product of the other task ranks grid y. Each kernel
 * parameter is an argument's memref descriptor expanded into 8-byte values
 * (allocated, aligned pointer, offset 0, sizes[ndim], strides[ndim]); an
 * absent optional output has null pointers. */
typedef struct attn_rt_cuda_kernel {
  attn_rt_kernel base;
  const char *function; /* the kernel's entry in every cubin */
  int32_t num_cubins;
  const attn_rt_cubin *cubins;
  int32_t block[3];             /* threads per block */
  int32_t dynamic_shared_bytes; /* > 48 KiB: set as the function's limit */
  /* Per argument: data + byte_offset must be a multiple of align_bytes;
   * the stride of every dimension but the innermost a multiple of
   * stride_multiple elements (cp.async copies 16-byte chunks of a row). */
  int32_t align_bytes[ATTN_RT_MAX_ARGS];
  int32_t stride_multiple[ATTN_RT_MAX_ARGS];
  int64_t max_rank_size; /* every rank size must be <= this (i32 indices) */
  int64_t max_grid_y;    /* 65535 */
} attn_rt_cuda_kernel;

/* Validates `kernel`, `launch` and `tensors` as attn_rt_v1_run does (no
 * driver call before every check has passed), then loads the driver (once
 * per process), the module (once per CUDA context, thread-safely), picks
 * the cubin for the device's compute capability (ATTN_ERR_NO_KERNEL if
 * none fits) and launches it on launch->stream. The context: the calling
 * thread's current one if it is on the tensors' device, else that device's
 * primary context (retained once, pushed for the call). Returns when the
 * launch is queued; errors of the running kernel surface on the stream.
 * With no work (a grid dimension of 0) it returns ATTN_OK without touching
 * the driver. */
attn_status attn_rt_v1_run_cuda(const attn_rt_cuda_kernel *kernel,
                                const attn_tensor *const *tensors,
                                const attn_launch *launch);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_RUNTIME_H */
