/*===- runtime.c - the runtime carried by every generated library --*- C -*-===*
 *
 * Implements the C ABI of attn/runtime.h: status strings, the thread-local
 * error message, and attn_rt_v1_run, which validates the caller's tensors
 * against a kernel descriptor, builds MLIR memref descriptors and runs the
 * kernel's tasks on the calling thread, a caller's parallel-for or a small
 * persistent pthread pool; and attn_rt_v1_run_cuda, which validates the
 * same way and launches a cubin through the CUDA driver API, loaded with
 * dlopen at the first GPU call (no link-time dependency on libcuda).
 *
 * C11; needs only libc (with dlopen: glibc >= 2.34, else -ldl) and pthreads
 * (and libgcc for __builtin_cpu_supports).
 * It is compiled once into an object that attnc embeds and adds to every
 * static library it writes, so:
 *   - it never aborts, exits or prints;
 *   - every symbol is static or prefixed attn_rt_v1_, except the public API
 *     (attn_status_string, attn_last_error) and the thread-local message
 *     buffer attn_rt_error_message they share. All global symbols are weak,
 *     so that two generated libraries (even of different runtime versions,
 *     even with --whole-archive) can be linked into one program, and all
 *     their runtimes report through one buffer.
 *
 *===----------------------------------------------------------------------===*/

#define _POSIX_C_SOURCE 200809L

#include "attn/runtime.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define ATTN_RT_WEAK __attribute__((weak))

/*===------------------------------------------------------------------===*
 * Status strings and the error message
 *===------------------------------------------------------------------===*/

/* The size is part of the cross-version contract: never change it. */
#define ATTN_RT_ERROR_SIZE 1024
ATTN_RT_WEAK _Thread_local char attn_rt_error_message[ATTN_RT_ERROR_SIZE];

ATTN_RT_WEAK const char *attn_status_string(attn_status status) {
  switch (status) {
  case ATTN_OK: return "success";
  case ATTN_ERR_NULL_POINTER: return "null pointer";
  case ATTN_ERR_DEVICE: return "wrong device";
  case ATTN_ERR_DTYPE: return "wrong dtype";
  case ATTN_ERR_NDIM: return "wrong number of dimensions";
  case ATTN_ERR_SHAPE: return "shape mismatch";
  case ATTN_ERR_STRIDE: return "unsupported strides";
  case ATTN_ERR_ALIGNMENT: return "misaligned data";
  case ATTN_ERR_METADATA: return "invalid metadata";
  case ATTN_ERR_NO_KERNEL: return "no kernel for this device or CPU";
  case ATTN_ERR_OUT_OF_MEMORY: return "out of memory";
  case ATTN_ERR_THREADS: return "thread pool could not start";
  case ATTN_ERR_INVALID_ARGUMENT: return "invalid argument";
  case ATTN_ERR_NO_DEVICE: return "no CUDA driver or device";
  case ATTN_ERR_DRIVER: return "CUDA driver call failed";
  }
  return "unknown status";
}

ATTN_RT_WEAK const char *attn_last_error(void) {
  return attn_rt_error_message;
}

/* Formats the message of a failure into the thread's buffer; returns
 * `status`. `kernel` may be NULL. */
__attribute__((format(printf, 3, 4))) static attn_status
fail(attn_status status, const attn_rt_kernel *kernel, const char *fmt, ...) {
  char *buf = attn_rt_error_message;
  size_t used = 0;
  if (kernel && kernel->name) {
    int n = snprintf(buf, ATTN_RT_ERROR_SIZE, "%s: ", kernel->name);
    used = n < 0 ? 0 : (size_t)n;
    if (used >= ATTN_RT_ERROR_SIZE)
      used = ATTN_RT_ERROR_SIZE - 1;
  }
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf + used, ATTN_RT_ERROR_SIZE - used, fmt, ap);
  va_end(ap);
  return status;
}

/*===------------------------------------------------------------------===*
 * Validation
 *===------------------------------------------------------------------===*/

/* Where a rank's size came from, for messages. */
enum { SRC_NONE = -1, SRC_STATIC = -2, SRC_RELATION = -3 };
typedef struct {
  int64_t size;
  int32_t arg; /* argument index, or SRC_* */
  int32_t dim;
} rank_state;

static const char *rank_name(const attn_rt_kernel *k, int32_t r) {
  const char *n = k->ranks[r].name;
  return n ? n : "?";
}

static const char *arg_name(const attn_rt_kernel *k, int32_t a) {
  const char *n = k->args[a].name;
  return n ? n : "?";
}

/* "float32", "bfloat16", ... into buf. */
static const char *dtype_name(attn_dtype t, char *buf, size_t len) {
  const char *base = NULL;
  switch (t.code) {
  case ATTN_DTYPE_INT: base = "int"; break;
  case ATTN_DTYPE_UINT: base = "uint"; break;
  case ATTN_DTYPE_FLOAT: base = "float"; break;
  case ATTN_DTYPE_BFLOAT: base = "bfloat"; break;
  default: break;
  }
  if (base && t.lanes == 1)
    snprintf(buf, len, "%s%u", base, (unsigned)t.bits);
  else if (base)
    snprintf(buf, len, "%s%u x %u lanes", base, (unsigned)t.bits,
             (unsigned)t.lanes);
  else
    snprintf(buf, len, "dtype(code %u, bits %u, lanes %u)", (unsigned)t.code,
             (unsigned)t.bits, (unsigned)t.lanes);
  return buf;
}

/* Describes where rank r's size came from into buf. */
static const char *rank_source(const attn_rt_kernel *k, const rank_state *rs,
                               int32_t r, char *buf, size_t len) {
  const rank_state *s = &rs[r];
  if (s->arg >= 0)
    snprintf(buf, len, "%s dimension %d", arg_name(k, s->arg), s->dim);
  else if (s->arg == SRC_STATIC)
    snprintf(buf, len, "the kernel's static size");
  else
    snprintf(buf, len, "a relation");
  return buf;
}

/* Checks the descriptor itself (a bug in the generator if it fails). */
static attn_status check_kernel(const attn_rt_kernel *k) {
  if (k->num_ranks < 0 || k->num_ranks > ATTN_RT_MAX_RANKS ||
      (k->num_ranks > 0 && !k->ranks))
    return fail(ATTN_ERR_INVALID_ARGUMENT, k,
                "kernel descriptor: bad rank count %d", k->num_ranks);
  if (k->num_args < 0 || k->num_args > ATTN_RT_MAX_ARGS ||
      (k->num_args > 0 && !k->args))
    return fail(ATTN_ERR_INVALID_ARGUMENT, k,
                "kernel descriptor: bad argument count %d", k->num_args);
  if (k->num_relations < 0 || (k->num_relations > 0 && !k->relations))
    return fail(ATTN_ERR_INVALID_ARGUMENT, k,
                "kernel descriptor: bad relation count %d", k->num_relations);
  if (k->num_task_ranks < 0 || k->num_task_ranks > ATTN_RT_MAX_RANKS)
    return fail(ATTN_ERR_INVALID_ARGUMENT, k,
                "kernel descriptor: bad task rank count %d",
                k->num_task_ranks);
  if (!k->tasks && k->device_type == ATTN_DEVICE_CPU)
    return fail(ATTN_ERR_INVALID_ARGUMENT, k,
                "kernel descriptor: no task function");
  for (int32_t r = 0; r < k->num_ranks; ++r)
    if (k->ranks[r].static_size < -1)
      return fail(ATTN_ERR_INVALID_ARGUMENT, k,
                  "kernel descriptor: rank %d has static size %lld", r,
                  (long long)k->ranks[r].static_size);
  for (int32_t i = 0; i < k->num_relations; ++i) {
    const attn_rt_relation *rel = &k->relations[i];
    if (rel->lhs < 0 || rel->lhs >= k->num_ranks || rel->rhs < 0 ||
        rel->rhs >= k->num_ranks || rel->factor < 1)
      return fail(ATTN_ERR_INVALID_ARGUMENT, k,
                  "kernel descriptor: bad relation %d", i);
  }
  int tiled_found = k->tiled_rank == -1;
  for (int32_t i = 0; i < k->num_task_ranks; ++i) {
    if (k->task_ranks[i] < 0 || k->task_ranks[i] >= k->num_ranks)
      return fail(ATTN_ERR_INVALID_ARGUMENT, k,
                  "kernel descriptor: bad task rank %d", i);
    if (k->task_ranks[i] == k->tiled_rank)
      tiled_found = 1;
  }
  if (!tiled_found || (k->tiled_rank >= 0 && k->tile < 1))
    return fail(ATTN_ERR_INVALID_ARGUMENT, k,
                "kernel descriptor: bad tiled rank %d (tile %lld)",
                k->tiled_rank, (long long)k->tile);
  for (int32_t a = 0; a < k->num_args; ++a) {
    const attn_rt_arg *d = &k->args[a];
    if (d->role < ATTN_RT_INPUT || d->role > ATTN_RT_OPTIONAL_OUTPUT ||
        d->ndim < 0 || d->ndim > ATTN_RT_MAX_NDIM)
      return fail(ATTN_ERR_INVALID_ARGUMENT, k,
                  "kernel descriptor: bad argument %d", a);
    for (int32_t i = 0; i < d->ndim; ++i)
      if (d->dims[i] < 0 || d->dims[i] >= k->num_ranks)
        return fail(ATTN_ERR_INVALID_ARGUMENT, k,
                    "kernel descriptor: argument %d dimension %d has bad "
                    "rank %d",
                    a, i, d->dims[i]);
    if (d->metadata_kind == ATTN_RT_META_CU_SEQLENS) {
      if (d->role != ATTN_RT_INPUT || d->ndim != 1 ||
          d->dtype.code != ATTN_DTYPE_INT || d->dtype.bits != 32 ||
          d->metadata_bound_rank < 0 ||
          d->metadata_bound_rank >= k->num_ranks)
        return fail(ATTN_ERR_INVALID_ARGUMENT, k,
                    "kernel descriptor: argument %d: cu_seqlens must be a "
                    "1-D int32 input with a bound rank",
                    a);
    } else if (d->metadata_kind == ATTN_RT_META_INDEX) {
      if (d->role != ATTN_RT_INPUT || d->dtype.code != ATTN_DTYPE_INT ||
          d->dtype.bits != 32 || d->metadata_bound_rank < 0 ||
          d->metadata_bound_rank >= k->num_ranks)
        return fail(ATTN_ERR_INVALID_ARGUMENT, k,
                    "kernel descriptor: argument %d: indices must be an "
                    "int32 input with a bound rank",
                    a);
    } else if (d->metadata_kind != ATTN_RT_META_NONE) {
      return fail(ATTN_ERR_INVALID_ARGUMENT, k,
                  "kernel descriptor: argument %d has unknown metadata "
                  "kind %d",
                  a, d->metadata_kind);
    }
  }
  return ATTN_OK;
}

static attn_status check_isa(const attn_rt_kernel *k) {
  switch (k->required_isa) {
  case ATTN_RT_ISA_NONE:
    return ATTN_OK;
#if defined(__x86_64__) || defined(__i386__)
  case ATTN_RT_ISA_AVX2_FMA:
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
      return ATTN_OK;
    return fail(ATTN_ERR_NO_KERNEL, k,
                "the kernel needs AVX2 and FMA, which this CPU lacks");
  case ATTN_RT_ISA_AVX512F:
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
      return ATTN_OK;
    return fail(ATTN_ERR_NO_KERNEL, k,
                "the kernel needs AVX-512F, which this CPU lacks");
#else
  case ATTN_RT_ISA_AVX2_FMA:
  case ATTN_RT_ISA_AVX512F:
    return fail(ATTN_ERR_NO_KERNEL, k,
                "the kernel needs an x86 CPU (AVX2/AVX-512)");
#endif
  default:
    return fail(ATTN_ERR_NO_KERNEL, k,
                "the kernel needs an unknown instruction set (%d)",
                k->required_isa);
  }
}

static int is_output(int32_t role) {
  return role == ATTN_RT_OUTPUT || role == ATTN_RT_OPTIONAL_OUTPUT;
}

/* The per-tensor checks: pointers, device, ndim, dtype, sizes, strides,
 * alignment. Fills strides (given or compact) and numel. */
static attn_status check_tensor(const attn_rt_kernel *k, int32_t a,
                                const attn_tensor *t, int64_t *strides,
                                int64_t *numel_out) {
  const attn_rt_arg *d = &k->args[a];
  const char *name = arg_name(k, a);
  char b1[64], b2[64];
  if (t->device.device_type != k->device_type)
    return fail(ATTN_ERR_DEVICE, k,
                "%s: tensor is on device type %d, but the kernel runs on %d "
                "(%s)",
                name, t->device.device_type, k->device_type,
                k->device_type == ATTN_DEVICE_CPU ? "CPU" : "CUDA");
  if (t->ndim != d->ndim)
    return fail(ATTN_ERR_NDIM, k,
                "%s: tensor has %d dimensions, but the kernel needs %d", name,
                t->ndim, d->ndim);
  if (t->dtype.code != d->dtype.code || t->dtype.bits != d->dtype.bits ||
      t->dtype.lanes != 1)
    return fail(ATTN_ERR_DTYPE, k, "%s: dtype is %s, but the kernel needs %s",
                name, dtype_name(t->dtype, b1, sizeof b1),
                dtype_name(d->dtype, b2, sizeof b2));
  if (d->ndim > 0 && !t->shape)
    return fail(ATTN_ERR_NULL_POINTER, k, "%s: shape is NULL", name);
  int64_t numel = 1;
  int overflow = 0, any_zero = 0;
  for (int32_t i = 0; i < d->ndim; ++i) {
    int64_t s = t->shape[i];
    if (s < 0)
      return fail(ATTN_ERR_SHAPE, k,
                  "%s: dimension %d (%s) has negative size %lld", name, i,
                  rank_name(k, d->dims[i]), (long long)s);
    any_zero |= s == 0;
    overflow |= __builtin_mul_overflow(numel, s, &numel);
  }
  if (any_zero)
    numel = 0;
  else if (overflow)
    return fail(ATTN_ERR_SHAPE, k,
                "%s: the number of elements overflows int64", name);
  if (numel > 0 && !t->data)
    return fail(ATTN_ERR_NULL_POINTER, k,
                "%s: data is NULL but the tensor has %lld elements", name,
                (long long)numel);
  /* Strides: given, or compact row-major. */
  if (t->strides) {
    for (int32_t i = 0; i < d->ndim; ++i)
      strides[i] = t->strides[i];
  } else {
    int64_t s = 1;
    for (int32_t i = d->ndim - 1; i >= 0; --i) {
      strides[i] = s;
      /* Cannot overflow when numel does not; with numel == 0 the strides
       * are never used to address memory. */
      if (numel > 0)
        s *= t->shape[i];
    }
  }
  if (numel > 0) {
    for (int32_t i = 0; i < d->ndim; ++i) {
      if (t->shape[i] > 1 && strides[i] < 0)
        return fail(ATTN_ERR_STRIDE, k,
                    "%s: dimension %d (%s) has negative stride %lld, which "
                    "the kernel does not support",
                    name, i, rank_name(k, d->dims[i]), (long long)strides[i]);
      if (t->shape[i] > 1 && strides[i] == 0 && is_output(d->role))
        return fail(ATTN_ERR_STRIDE, k,
                    "%s: dimension %d (%s) of an output has stride 0 (its "
                    "elements would overlap)",
                    name, i, rank_name(k, d->dims[i]));
    }
    if (d->unit_inner_stride && d->ndim > 0 &&
        t->shape[d->ndim - 1] > 1 && strides[d->ndim - 1] != 1)
      return fail(ATTN_ERR_STRIDE, k,
                  "%s: dimension %d (%s) has stride %lld, but the kernel "
                  "needs stride 1 (contiguous innermost dimension)",
                  name, d->ndim - 1, rank_name(k, d->dims[d->ndim - 1]),
                  (long long)strides[d->ndim - 1]);
    /* The largest element offset must be addressable. */
    int64_t last = 0;
    for (int32_t i = 0; i < d->ndim; ++i) {
      int64_t term;
      if (__builtin_mul_overflow(t->shape[i] - 1, strides[i], &term) ||
          __builtin_add_overflow(last, term, &last))
        return fail(ATTN_ERR_STRIDE, k,
                    "%s: the strides address past int64 elements", name);
    }
    unsigned bytes = ((unsigned)t->dtype.bits + 7u) / 8u;
    unsigned align = 1;
    while (align < bytes)
      align *= 2;
    uintptr_t p = (uintptr_t)t->data + (uintptr_t)t->byte_offset;
    if (p % align != 0)
      return fail(ATTN_ERR_ALIGNMENT, k,
                  "%s: data + byte_offset (%p + %llu) is not aligned to the "
                  "element size (%u bytes)",
                  name, t->data, (unsigned long long)t->byte_offset, align);
  }
  *numel_out = numel;
  return ATTN_OK;
}

/* cu_seqlens: int32 [n], [0] == 0, nondecreasing, last <= |bound|. */
static attn_status check_cu_seqlens(const attn_rt_kernel *k, int32_t a,
                                    const attn_tensor *t, int64_t stride,
                                    int64_t bound) {
  const char *name = arg_name(k, a);
  const char *bname = rank_name(k, k->args[a].metadata_bound_rank);
  int64_t n = t->shape[0];
  if (n < 1)
    return fail(ATTN_ERR_METADATA, k,
                "%s: cu_seqlens needs at least one boundary (it is empty)",
                name);
  const int32_t *v =
      (const int32_t *)((const char *)t->data + t->byte_offset);
  if (v[0] != 0)
    return fail(ATTN_ERR_METADATA, k, "%s: cu_seqlens[0] is %d, not 0", name,
                (int)v[0]);
  for (int64_t i = 1; i < n; ++i) {
    int32_t prev = v[(i - 1) * stride], cur = v[i * stride];
    if (cur < prev)
      return fail(ATTN_ERR_METADATA, k,
                  "%s: cu_seqlens decreases: [%lld] = %d, [%lld] = %d", name,
                  (long long)(i - 1), (int)prev, (long long)i, (int)cur);
  }
  int32_t last = v[(n - 1) * stride];
  if (last > bound)
    return fail(ATTN_ERR_METADATA, k,
                "%s: cu_seqlens[%lld] = %d exceeds the size of %s (%lld)",
                name, (long long)(n - 1), (int)last, bname, (long long)bound);
  return ATTN_OK;
}

/* Every element of an int32 index tensor (any rank and strides) in
 * [0, bound): the block table of a paged KV cache. O(elements). */
static attn_status check_indices(const attn_rt_kernel *k, int32_t a,
                                 const attn_tensor *t, const int64_t *strides,
                                 int64_t bound) {
  int32_t nd = t->ndim;
  int64_t total = 1;
  for (int32_t i = 0; i < nd; ++i)
    total *= t->shape[i];
  const int32_t *v =
      (const int32_t *)((const char *)t->data + t->byte_offset);
  int64_t idx[ATTN_RT_MAX_NDIM] = {0};
  for (int64_t e = 0; e < total; ++e) {
    int64_t off = 0;
    for (int32_t i = 0; i < nd; ++i)
      off += idx[i] * strides[i];
    int32_t x = v[off];
    if (x < 0 || x >= bound)
      return fail(ATTN_ERR_METADATA, k,
                  "%s: element %lld is %d, outside [0, %lld) (the size of "
                  "%s)",
                  arg_name(k, a), (long long)e, (int)x, (long long)bound,
                  rank_name(k, k->args[a].metadata_bound_rank));
    for (int32_t i = nd - 1; i >= 0; --i) {
      if (++idx[i] < t->shape[i])
        break;
      idx[i] = 0;
    }
  }
  return ATTN_OK;
}

/*===------------------------------------------------------------------===*
 * The thread pool
 *===------------------------------------------------------------------===*/

#define ATTN_RT_MAX_WORKERS 1023
#define ATTN_RT_STACK_SIZE ((size_t)8 << 20)

typedef struct {
  attn_rt_task_fn fn;
  void **descs;
  int64_t num_tasks;
} job;

static struct {
  pthread_mutex_t run_lock; /* one job at a time */
  pthread_mutex_t lock;     /* protects what follows */
  pthread_cond_t wake;      /* a new job */
  pthread_cond_t done;      /* a worker finished */
  int num_workers;
  uint64_t generation;
  job job;
  int limit;   /* workers that may join the current job */
  int joined;  /* workers that joined it */
  int finished;
  int closed;  /* the caller is done: nobody joins any more */
  int atfork_registered;
  _Atomic int64_t next;
} pool = {.run_lock = PTHREAD_MUTEX_INITIALIZER,
          .lock = PTHREAD_MUTEX_INITIALIZER,
          .wake = PTHREAD_COND_INITIALIZER,
          .done = PTHREAD_COND_INITIALIZER};

static void run_tasks(const job *j) {
  for (;;) {
    int64_t i = atomic_fetch_add_explicit(&pool.next, 1, memory_order_relaxed);
    if (i >= j->num_tasks)
      return;
    j->fn(j->descs, i, i + 1);
  }
}

static void *worker_main(void *unused) {
  (void)unused;
  uint64_t seen = 0;
  pthread_mutex_lock(&pool.lock);
  for (;;) {
    while (pool.generation == seen)
      pthread_cond_wait(&pool.wake, &pool.lock);
    seen = pool.generation;
    if (pool.closed || pool.joined >= pool.limit)
      continue;
    ++pool.joined;
    job j = pool.job;
    pthread_mutex_unlock(&pool.lock);
    run_tasks(&j);
    pthread_mutex_lock(&pool.lock);
    if (++pool.finished == pool.joined)
      pthread_cond_signal(&pool.done);
  }
  return NULL;
}

/* fork(): the child has none of the workers. Taking both locks around the
 * fork keeps the pool's state consistent; the child then starts afresh and
 * grows a new pool on its first parallel call. */
static void atfork_prepare(void) {
  pthread_mutex_lock(&pool.run_lock);
  pthread_mutex_lock(&pool.lock);
}

static void atfork_parent(void) {
  pthread_mutex_unlock(&pool.lock);
  pthread_mutex_unlock(&pool.run_lock);
}

static void atfork_child(void) {
  pool.num_workers = 0;
  pool.joined = pool.finished = 0;
  pool.closed = 1;
  pthread_cond_init(&pool.wake, NULL);
  pthread_cond_init(&pool.done, NULL);
  pthread_mutex_unlock(&pool.lock);
  pthread_mutex_unlock(&pool.run_lock);
}

/* Grows the pool to `want` workers (pool.run_lock held). Returns the number
 * available, and the pthread error of the first failure in *err. */
static int grow_pool(int want, int *err) {
  *err = 0;
  if (want > ATTN_RT_MAX_WORKERS)
    want = ATTN_RT_MAX_WORKERS;
  if (pool.num_workers >= want)
    return pool.num_workers;
  if (!pool.atfork_registered) {
    if ((*err = pthread_atfork(atfork_prepare, atfork_parent,
                               atfork_child)) != 0)
      return pool.num_workers;
    pool.atfork_registered = 1;
  }
  pthread_attr_t attr;
  if ((*err = pthread_attr_init(&attr)) != 0)
    return pool.num_workers;
  size_t stack = 0;
  if (pthread_attr_getstacksize(&attr, &stack) != 0 ||
      stack < ATTN_RT_STACK_SIZE)
    pthread_attr_setstacksize(&attr, ATTN_RT_STACK_SIZE);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  /* Workers block every signal: they belong to no one. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  while (pool.num_workers < want) {
    pthread_t tid;
    int rc = pthread_create(&tid, &attr, worker_main, NULL);
    if (rc != 0) {
      *err = rc;
      break;
    }
    pthread_mutex_lock(&pool.lock);
    ++pool.num_workers;
    pthread_mutex_unlock(&pool.lock);
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  return pool.num_workers;
}

/* Runs tasks [0, n) on the caller plus up to threads - 1 pool workers. */
static attn_status run_pool(const attn_rt_kernel *k, void **descs, int64_t n,
                            int threads) {
  pthread_mutex_lock(&pool.run_lock);
  int want = threads - 1;
  if ((int64_t)want > n - 1)
    want = (int)(n - 1);
  int err = 0;
  int have = grow_pool(want, &err);
  if (have == 0 && want > 0) {
    pthread_mutex_unlock(&pool.run_lock);
    return fail(ATTN_ERR_THREADS, k,
                "could not start a worker thread (pthread_create: error %d)",
                err);
  }
  job j = {k->tasks, descs, n};
  pthread_mutex_lock(&pool.lock);
  pool.job = j;
  pool.limit = want < have ? want : have;
  pool.joined = 0;
  pool.finished = 0;
  pool.closed = 0;
  atomic_store_explicit(&pool.next, 0, memory_order_relaxed);
  ++pool.generation;
  pthread_cond_broadcast(&pool.wake);
  pthread_mutex_unlock(&pool.lock);

  run_tasks(&j);

  pthread_mutex_lock(&pool.lock);
  pool.closed = 1;
  while (pool.finished < pool.joined)
    pthread_cond_wait(&pool.done, &pool.lock);
  pthread_mutex_unlock(&pool.lock);
  pthread_mutex_unlock(&pool.run_lock);
  return ATTN_OK;
}

/* The ctx of a caller's parallel_for. */
typedef struct {
  attn_rt_task_fn fn;
  void **descs;
  int64_t num_tasks;
} pf_ctx;

static void pf_trampoline(void *ctx, int64_t begin, int64_t end) {
  const pf_ctx *c = (const pf_ctx *)ctx;
  if (begin < 0)
    begin = 0;
  if (end > c->num_tasks)
    end = c->num_tasks;
  if (begin < end)
    c->fn(c->descs, begin, end);
}

/* The checks shared by CPU and GPU kernels: every tensor (pointers,
 * device, ndim, dtype, sizes, strides, alignment), the rank sizes (static
 * sizes, agreement between tensors, relations) and metadata. Fills the
 * strides of each given tensor (given or compact) and the rank sizes. */
static attn_status check_args(const attn_rt_kernel *k,
                              const attn_tensor *const *tensors,
                              int64_t strides[][ATTN_RT_MAX_NDIM],
                              rank_state *rs) {
  /* Per-tensor checks. */
  attn_status st;
  for (int32_t a = 0; a < k->num_args; ++a) {
    const attn_tensor *t = tensors[a];
    if (!t) {
      if (k->args[a].role == ATTN_RT_OPTIONAL_OUTPUT)
        continue;
      return fail(ATTN_ERR_NULL_POINTER, k, "%s: tensor is NULL (it is %s)",
                  arg_name(k, a),
                  k->args[a].role == ATTN_RT_INPUT ? "an input"
                                                   : "a required output");
    }
    int64_t numel;
    if ((st = check_tensor(k, a, t, strides[a], &numel)) != ATTN_OK)
      return st;
  }

  /* Rank sizes: static sizes, then the tensors, then the relations. */
  for (int32_t r = 0; r < k->num_ranks; ++r) {
    rs[r].size = k->ranks[r].static_size;
    rs[r].arg = rs[r].size >= 0 ? SRC_STATIC : SRC_NONE;
    rs[r].dim = -1;
  }
  for (int32_t a = 0; a < k->num_args; ++a) {
    const attn_tensor *t = tensors[a];
    if (!t)
      continue;
    const attn_rt_arg *d = &k->args[a];
    for (int32_t i = 0; i < d->ndim; ++i) {
      int32_t r = d->dims[i];
      int64_t s = t->shape[i];
      if (rs[r].arg == SRC_NONE) {
        rs[r].size = s;
        rs[r].arg = a;
        rs[r].dim = i;
      } else if (rs[r].size != s) {
        if (rs[r].arg == SRC_STATIC)
          return fail(ATTN_ERR_SHAPE, k,
                      "%s: dimension %d (%s) has size %lld, but the kernel "
                      "needs %s = %lld",
                      arg_name(k, a), i, rank_name(k, r), (long long)s,
                      rank_name(k, r), (long long)rs[r].size);
        return fail(ATTN_ERR_SHAPE, k,
                    "%s: dimension %d (%s) has size %lld, but %s has %lld "
                    "(dimension %d)",
                    arg_name(k, a), i, rank_name(k, r), (long long)s,
                    arg_name(k, rs[r].arg), (long long)rs[r].size, rs[r].dim);
      }
    }
  }
  for (int changed = 1; changed;) {
    changed = 0;
    for (int32_t i = 0; i < k->num_relations; ++i) {
      const attn_rt_relation *rel = &k->relations[i];
      rank_state *l = &rs[rel->lhs], *r = &rs[rel->rhs];
      const char *ln = rank_name(k, rel->lhs), *rn = rank_name(k, rel->rhs);
      char b1[96], b2[96];
      if (l->arg != SRC_NONE && r->arg != SRC_NONE) {
        int64_t want;
        if (__builtin_mul_overflow(rel->factor, r->size, &want) ||
            want != l->size)
          return fail(ATTN_ERR_SHAPE, k,
                      "%s = %lld (from %s) is not %lld * %s = %lld * %lld "
                      "(%s from %s)",
                      ln, (long long)l->size,
                      rank_source(k, rs, rel->lhs, b1, sizeof b1),
                      (long long)rel->factor, rn, (long long)rel->factor,
                      (long long)r->size, rn,
                      rank_source(k, rs, rel->rhs, b2, sizeof b2));
      } else if (l->arg != SRC_NONE) {
        if (l->size % rel->factor != 0)
          return fail(ATTN_ERR_SHAPE, k,
                      "%s = %lld (from %s) is not a multiple of %lld, as "
                      "%s = %lld * %s needs",
                      ln, (long long)l->size,
                      rank_source(k, rs, rel->lhs, b1, sizeof b1),
                      (long long)rel->factor, ln, (long long)rel->factor, rn);
        r->size = l->size / rel->factor;
        r->arg = SRC_RELATION;
        changed = 1;
      } else if (r->arg != SRC_NONE) {
        if (__builtin_mul_overflow(rel->factor, r->size, &l->size))
          return fail(ATTN_ERR_SHAPE, k, "%s = %lld * %s overflows int64", ln,
                      (long long)rel->factor, rn);
        l->arg = SRC_RELATION;
        changed = 1;
      }
    }
  }
  for (int32_t r = 0; r < k->num_ranks; ++r)
    if (rs[r].arg == SRC_NONE)
      return fail(ATTN_ERR_INVALID_ARGUMENT, k,
                  "the size of rank %s is unknown: it appears in no given "
                  "tensor and no relation determines it",
                  rank_name(k, r));

  /* Metadata. */
  for (int32_t a = 0; a < k->num_args; ++a) {
    if (!tensors[a])
      continue;
    int64_t bound = rs[k->args[a].metadata_bound_rank < 0
                           ? 0
                           : k->args[a].metadata_bound_rank].size;
    if (k->args[a].metadata_kind == ATTN_RT_META_CU_SEQLENS)
      st = check_cu_seqlens(k, a, tensors[a], strides[a][0], bound);
    else if (k->args[a].metadata_kind == ATTN_RT_META_INDEX)
      st = check_indices(k, a, tensors[a], strides[a], bound);
    else
      continue;
    if (st != ATTN_OK)
      return st;
  }
  return ATTN_OK;

}

/*===------------------------------------------------------------------===*
 * attn_rt_v1_run
 *===------------------------------------------------------------------===*/

/* MLIR's ranked memref descriptor, as words: allocated, aligned, offset,
 * sizes[n], strides[n]. Pointers and int64 are both 8 bytes on the 64-bit
 * targets the generated code is for. */
typedef union {
  void *ptr;
  int64_t i64;
} word;

_Static_assert(sizeof(void *) == sizeof(int64_t),
               "memref descriptors assume 64-bit pointers");

#define DESC_WORDS (3 + 2 * ATTN_RT_MAX_NDIM)

ATTN_RT_WEAK attn_status attn_rt_v1_run(const attn_rt_kernel *kernel,
                                        const attn_tensor *const *tensors,
                                        const attn_launch *launch) {
  const attn_rt_kernel *k = kernel;
  if (!k)
    return fail(ATTN_ERR_INVALID_ARGUMENT, NULL, "kernel descriptor is NULL");
  if (k->abi_version != ATTN_RUNTIME_ABI_VERSION)
    return fail(ATTN_ERR_INVALID_ARGUMENT, k,
                "the kernel was built for runtime ABI version %d, but this "
                "runtime implements version %d",
                k->abi_version, ATTN_RUNTIME_ABI_VERSION);
  attn_status st = check_kernel(k);
  if (st != ATTN_OK)
    return st;
  if (launch && launch->num_threads < 0)
    return fail(ATTN_ERR_INVALID_ARGUMENT, k,
                "launch: num_threads is %d (must be >= 0)",
                launch->num_threads);
  if (k->device_type != ATTN_DEVICE_CPU)
    return fail(ATTN_ERR_NO_KERNEL, k,
                "this runtime runs CPU kernels only (the kernel is for "
                "device type %d)",
                k->device_type);
  if ((st = check_isa(k)) != ATTN_OK)
    return st;
  if (!tensors && k->num_args > 0)
    return fail(ATTN_ERR_NULL_POINTER, k, "the argument array is NULL");

  int64_t strides[ATTN_RT_MAX_ARGS][ATTN_RT_MAX_NDIM];
  rank_state rs[ATTN_RT_MAX_RANKS];
  if ((st = check_args(k, tensors, strides, rs)) != ATTN_OK)
    return st;

  /* The number of tasks. */
  int64_t num_tasks = 1;
  for (int32_t i = 0; i < k->num_task_ranks; ++i) {
    int32_t r = k->task_ranks[i];
    int64_t s = rs[r].size;
    if (r == k->tiled_rank)
      s = s / k->tile + (s % k->tile != 0);
    if (__builtin_mul_overflow(num_tasks, s, &num_tasks))
      return fail(ATTN_ERR_SHAPE, k, "the number of tasks overflows int64");
  }
  if (num_tasks == 0)
    return ATTN_OK;

  /* Memref descriptors: descs[0] the sizes buffer, descs[1 + a] argument a. */
  int64_t sizes_buf[ATTN_RT_MAX_RANKS + ATTN_RT_MAX_ARGS];
  word sizes_desc[5];
  word arg_desc[ATTN_RT_MAX_ARGS][DESC_WORDS];
  void *descs[1 + ATTN_RT_MAX_ARGS];
  int64_t nsizes = k->num_ranks + k->num_args;
  for (int32_t r = 0; r < k->num_ranks; ++r)
    sizes_buf[r] = rs[r].size;
  sizes_desc[0].ptr = sizes_buf;
  sizes_desc[1].ptr = sizes_buf;
  sizes_desc[2].i64 = 0;
  sizes_desc[3].i64 = nsizes;
  sizes_desc[4].i64 = 1;
  descs[0] = sizes_desc;
  for (int32_t a = 0; a < k->num_args; ++a) {
    const attn_tensor *t = tensors[a];
    const attn_rt_arg *d = &k->args[a];
    word *w = arg_desc[a];
    int32_t n = d->ndim;
    sizes_buf[k->num_ranks + a] = t ? 1 : 0;
    if (t) {
      void *p = (char *)t->data + t->byte_offset;
      if (!t->data)
        p = NULL;
      w[0].ptr = p;
      w[1].ptr = p;
      for (int32_t i = 0; i < n; ++i) {
        w[3 + i].i64 = t->shape[i];
        w[3 + n + i].i64 = strides[a][i];
      }
    } else {
      /* An absent optional output: null pointers, the sizes its ranks have,
       * compact strides. */
      w[0].ptr = NULL;
      w[1].ptr = NULL;
      int64_t s = 1;
      for (int32_t i = n - 1; i >= 0; --i) {
        int64_t size = rs[d->dims[i]].size;
        w[3 + i].i64 = size;
        w[3 + n + i].i64 = s;
        if (__builtin_mul_overflow(s, size, &s))
          s = 0;
      }
    }
    w[2].i64 = 0;
    descs[1 + a] = w;
  }

  /* Run. */
  int threads = launch ? launch->num_threads : 1;
  if (threads == 1) {
    k->tasks(descs, 0, num_tasks);
    return ATTN_OK;
  }
  if (launch->parallel_for) {
    pf_ctx ctx = {k->tasks, descs, num_tasks};
    launch->parallel_for(launch->parallel_for_user, num_tasks, pf_trampoline,
                         &ctx);
    return ATTN_OK;
  }
  if (threads == 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    threads = n < 1 ? 1 : n > ATTN_RT_MAX_WORKERS + 1
                              ? ATTN_RT_MAX_WORKERS + 1
                              : (int)n;
  }
  if (threads == 1 || num_tasks == 1) {
    k->tasks(descs, 0, num_tasks);
    return ATTN_OK;
  }
  return run_pool(k, descs, num_tasks, threads);
}

/*===------------------------------------------------------------------===*
 * CUDA kernels: the driver API through dlopen
 *===------------------------------------------------------------------===*/

/* The few driver types and entry points used, as cuda.h declares them
 * (CUDA 11+ ABI; names without _v2 are the original, still exported). */
typedef int cu_result;
typedef int cu_device;
typedef struct cu_ctx_st *cu_context;
typedef struct cu_mod_st *cu_module;
typedef struct cu_func_st *cu_function;
typedef struct cu_stream_st *cu_stream;

#define CU_SUCCESS 0
#define CU_ATTR_CC_MAJOR 75
#define CU_ATTR_CC_MINOR 76
#define CU_FUNC_ATTR_MAX_DYNAMIC_SHARED 8

static struct {
  pthread_once_t once;
  attn_status status; /* of loading and cuInit */
  char message[512];
  cu_result (*init)(unsigned);
  cu_result (*get_error_string)(cu_result, const char **);
  cu_result (*get_error_name)(cu_result, const char **);
  cu_result (*device_get)(cu_device *, int);
  cu_result (*device_get_count)(int *);
  cu_result (*device_get_attribute)(int *, int, cu_device);
  cu_result (*ctx_get_current)(cu_context *);
  cu_result (*ctx_get_device)(cu_device *);
  cu_result (*ctx_push)(cu_context);
  cu_result (*ctx_pop)(cu_context *);
  cu_result (*primary_ctx_retain)(cu_context *, cu_device);
  cu_result (*module_load_data)(cu_module *, const void *);
  cu_result (*module_get_function)(cu_function *, cu_module, const char *);
  cu_result (*func_set_attribute)(cu_function, int, int);
  cu_result (*launch_kernel)(cu_function, unsigned, unsigned, unsigned,
                             unsigned, unsigned, unsigned, unsigned,
                             cu_stream, void **, void **);
} cuda = {.once = PTHREAD_ONCE_INIT};

static void cuda_load(void) {
  void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *why = dlerror();
    cuda.status = ATTN_ERR_NO_DEVICE;
    snprintf(cuda.message, sizeof cuda.message,
             "no CUDA driver: cannot load libcuda.so.1 (%s)",
             why ? why : "dlopen failed");
    return;
  }
  struct {
    const char *name;
    void **slot;
  } syms[] = {
      {"cuInit", (void **)&cuda.init},
      {"cuGetErrorString", (void **)&cuda.get_error_string},
      {"cuGetErrorName", (void **)&cuda.get_error_name},
      {"cuDeviceGet", (void **)&cuda.device_get},
      {"cuDeviceGetCount", (void **)&cuda.device_get_count},
      {"cuDeviceGetAttribute", (void **)&cuda.device_get_attribute},
      {"cuCtxGetCurrent", (void **)&cuda.ctx_get_current},
      {"cuCtxGetDevice", (void **)&cuda.ctx_get_device},
      {"cuCtxPushCurrent_v2", (void **)&cuda.ctx_push},
      {"cuCtxPopCurrent_v2", (void **)&cuda.ctx_pop},
      {"cuDevicePrimaryCtxRetain", (void **)&cuda.primary_ctx_retain},
      {"cuModuleLoadData", (void **)&cuda.module_load_data},
      {"cuModuleGetFunction", (void **)&cuda.module_get_function},
      {"cuFuncSetAttribute", (void **)&cuda.func_set_attribute},
      {"cuLaunchKernel", (void **)&cuda.launch_kernel},
  };
  for (size_t i = 0; i < sizeof syms / sizeof syms[0]; ++i) {
    *syms[i].slot = dlsym(h, syms[i].name);
    if (!*syms[i].slot) {
      cuda.status = ATTN_ERR_NO_DEVICE;
      snprintf(cuda.message, sizeof cuda.message,
               "no usable CUDA driver: libcuda.so.1 lacks %s", syms[i].name);
      return; /* the handle stays open: harmless */
    }
  }
  cu_result r = cuda.init(0);
  if (r != CU_SUCCESS) {
    const char *name = NULL;
    if (cuda.get_error_name(r, &name) != CU_SUCCESS || !name)
      name = "?";
    cuda.status = ATTN_ERR_NO_DEVICE;
    snprintf(cuda.message, sizeof cuda.message,
             "no usable CUDA device: cuInit failed with %s (%d)", name, r);
    return;
  }
  cuda.status = ATTN_OK;
}

/* Formats a failed driver call; returns ATTN_ERR_DRIVER. */
static attn_status cuda_fail(const attn_rt_kernel *k, const char *call,
                             cu_result r) {
  const char *name = NULL, *text = NULL;
  if (cuda.get_error_name(r, &name) != CU_SUCCESS || !name)
    name = "?";
  if (cuda.get_error_string(r, &text) != CU_SUCCESS || !text)
    text = "";
  return fail(ATTN_ERR_DRIVER, k, "%s failed: %s (%d) %s", call, name, r,
              text);
}

/* Loaded modules, one per (kernel descriptor, context); never unloaded.
 * A context destroyed and another created at the same address would reuse
 * a stale entry: contexts are expected to live as long as the process
 * (primary contexts do). */
typedef struct cuda_module_entry {
  struct cuda_module_entry *next;
  const attn_rt_cuda_kernel *kernel;
  cu_context ctx;
  cu_module module;
  cu_function function;
} cuda_module_entry;

static pthread_mutex_t cuda_modules_lock = PTHREAD_MUTEX_INITIALIZER;
static cuda_module_entry *cuda_modules;

/* Primary contexts retained per device ordinal (never released). */
#define ATTN_RT_MAX_CUDA_DEVICES 64
static cu_context cuda_primary[ATTN_RT_MAX_CUDA_DEVICES];

/* The cubin of `k` for compute capability major.minor, or NULL. An
 * arch-specific cubin needs the exact capability; a generic one the same
 * major and a minor <= the device's. The best is the exact match, else the
 * highest minor. */
static const attn_rt_cubin *pick_cubin(const attn_rt_cuda_kernel *k,
                                       int major, int minor) {
  const attn_rt_cubin *best = NULL;
  int best_score = -1;
  for (int32_t i = 0; i < k->num_cubins; ++i) {
    const attn_rt_cubin *c = &k->cubins[i];
    int exact = c->major == major && c->minor == minor;
    int fits = exact || (!c->arch_specific && c->major == major &&
                         c->minor <= minor);
    if (!fits)
      continue;
    int score = (exact ? 1000 : 0) + c->minor * 2 + (c->arch_specific ? 1 : 0);
    if (score > best_score) {
      best = c;
      best_score = score;
    }
  }
  return best;
}

/* The module and function of `k` in context `ctx` on device `dev` (loaded
 * on first use). */
static attn_status cuda_function(const attn_rt_cuda_kernel *k,
                                 cu_context ctx, cu_device dev,
                                 cu_function *out) {
  const attn_rt_kernel *b = &k->base;
  attn_status st = ATTN_OK;
  pthread_mutex_lock(&cuda_modules_lock);
  for (cuda_module_entry *e = cuda_modules; e; e = e->next)
    if (e->kernel == k && e->ctx == ctx) {
      *out = e->function;
      pthread_mutex_unlock(&cuda_modules_lock);
      return ATTN_OK;
    }
  int major = 0, minor = 0;
  cu_result r = cuda.device_get_attribute(&major, CU_ATTR_CC_MAJOR, dev);
  if (r == CU_SUCCESS)
    r = cuda.device_get_attribute(&minor, CU_ATTR_CC_MINOR, dev);
  if (r != CU_SUCCESS) {
    st = cuda_fail(b, "cuDeviceGetAttribute(compute capability)", r);
    goto out;
  }
  const attn_rt_cubin *cubin = pick_cubin(k, major, minor);
  if (!cubin) {
    char have[256];
    size_t used = 0;
    have[0] = 0;
    for (int32_t i = 0; i < k->num_cubins && used < sizeof have; ++i) {
      int n = snprintf(have + used, sizeof have - used, "%s%s",
                       i ? ", " : "",
                       k->cubins[i].arch ? k->cubins[i].arch : "?");
      if (n < 0)
        break;
      used += (size_t)n;
    }
    st = fail(ATTN_ERR_NO_KERNEL, b,
              "no kernel for this device: it is sm_%d%d (compute capability "
              "%d.%d), the library has cubins for %s",
              major, minor, major, minor,
              k->num_cubins ? have : "no architecture");
    goto out;
  }
  cuda_module_entry *e = (cuda_module_entry *)calloc(1, sizeof *e);
  if (!e) {
    st = fail(ATTN_ERR_OUT_OF_MEMORY, b, "no memory for the module cache");
    goto out;
  }
  r = cuda.module_load_data(&e->module, cubin->image);
  if (r != CU_SUCCESS) {
    free(e);
    st = cuda_fail(b, "cuModuleLoadData", r);
    goto out;
  }
  r = cuda.module_get_function(&e->function, e->module, k->function);
  if (r != CU_SUCCESS) {
    free(e); /* the module stays loaded: harmless, and rare */
    st = cuda_fail(b, "cuModuleGetFunction", r);
    goto out;
  }
  if (k->dynamic_shared_bytes > 48 * 1024) {
    r = cuda.func_set_attribute(e->function, CU_FUNC_ATTR_MAX_DYNAMIC_SHARED,
                                k->dynamic_shared_bytes);
    if (r != CU_SUCCESS) {
      free(e);
      st = cuda_fail(b, "cuFuncSetAttribute(max dynamic shared memory)", r);
      goto out;
    }
  }
  e->kernel = k;
  e->ctx = ctx;
  e->next = cuda_modules;
  cuda_modules = e;
  *out = e->function;
out:
  pthread_mutex_unlock(&cuda_modules_lock);
  return st;
}

ATTN_RT_WEAK attn_status attn_rt_v1_run_cuda(const attn_rt_cuda_kernel *kernel,
                                             const attn_tensor *const *tensors,
                                             const attn_launch *launch) {
  if (!kernel)
    return fail(ATTN_ERR_INVALID_ARGUMENT, NULL, "kernel descriptor is NULL");
  const attn_rt_kernel *k = &kernel->base;
  if (k->abi_version != ATTN_RUNTIME_ABI_VERSION)
    return fail(ATTN_ERR_INVALID_ARGUMENT, k,
                "the kernel was built for runtime ABI version %d, but this "
                "runtime implements version %d",
                k->abi_version, ATTN_RUNTIME_ABI_VERSION);
  attn_status st = check_kernel(k);
  if (st != ATTN_OK)
    return st;
  if (k->device_type != ATTN_DEVICE_CUDA || !kernel->function ||
      kernel->num_cubins < 0 || (kernel->num_cubins > 0 && !kernel->cubins) ||
      kernel->block[0] < 1 || kernel->block[1] < 1 || kernel->block[2] < 1 ||
      kernel->dynamic_shared_bytes < 0 || k->tiled_rank < 0 ||
      kernel->max_grid_y < 1 || kernel->max_rank_size < 1)
    return fail(ATTN_ERR_INVALID_ARGUMENT, k,
                "kernel descriptor: not a valid CUDA kernel");
  for (int32_t a = 0; a < k->num_args; ++a)
    if (k->args[a].metadata_kind != ATTN_RT_META_NONE ||
        kernel->align_bytes[a] < 1 || kernel->stride_multiple[a] < 1)
      return fail(ATTN_ERR_INVALID_ARGUMENT, k,
                  "kernel descriptor: bad CUDA argument %d", a);
  if (!tensors && k->num_args > 0)
    return fail(ATTN_ERR_NULL_POINTER, k, "the argument array is NULL");

  /* The shared checks (device type CUDA, dtype, ndim, shapes, relations,
   * strides >= 0, unit innermost stride, element alignment). */
  int64_t strides[ATTN_RT_MAX_ARGS][ATTN_RT_MAX_NDIM];
  rank_state rs[ATTN_RT_MAX_RANKS];
  if ((st = check_args(k, tensors, strides, rs)) != ATTN_OK)
    return st;

  /* One device for all tensors; the kernel's own alignment and strides. */
  int32_t device_id = -1, device_arg = -1;
  for (int32_t a = 0; a < k->num_args; ++a) {
    const attn_tensor *t = tensors[a];
    if (!t)
      continue;
    const attn_rt_arg *d = &k->args[a];
    const char *name = arg_name(k, a);
    if (device_arg < 0) {
      device_id = t->device.device_id;
      device_arg = a;
      if (device_id < 0 || device_id >= ATTN_RT_MAX_CUDA_DEVICES)
        return fail(ATTN_ERR_DEVICE, k, "%s: device_id %d is out of range",
                    name, device_id);
    } else if (t->device.device_id != device_id) {
      return fail(ATTN_ERR_DEVICE, k,
                  "%s: tensor is on CUDA device %d, but %s is on device %d",
                  name, t->device.device_id, arg_name(k, device_arg),
                  device_id);
    }
    int64_t numel = 1;
    for (int32_t i = 0; i < d->ndim; ++i)
      numel = t->shape[i] == 0 ? 0 : numel;
    if (numel == 0)
      continue;
    uintptr_t p = (uintptr_t)t->data + (uintptr_t)t->byte_offset;
    if (p % (uintptr_t)kernel->align_bytes[a] != 0)
      return fail(ATTN_ERR_ALIGNMENT, k,
                  "%s: data + byte_offset (%p + %llu) is not aligned to %d "
                  "bytes, as the GPU kernel needs",
                  name, t->data, (unsigned long long)t->byte_offset,
                  kernel->align_bytes[a]);
    for (int32_t i = 0; i + 1 < d->ndim; ++i)
      if (t->shape[i] > 1 && strides[a][i] % kernel->stride_multiple[a] != 0)
        return fail(ATTN_ERR_STRIDE, k,
                    "%s: dimension %d (%s) has stride %lld, but the GPU "
                    "kernel needs a multiple of %d elements (rows aligned to "
                    "%d bytes)",
                    name, i, rank_name(k, d->dims[i]), (long long)strides[a][i],
                    kernel->stride_multiple[a],
                    kernel->stride_multiple[a] * ((d->dtype.bits + 7) / 8));
  }
  for (int32_t r = 0; r < k->num_ranks; ++r)
    if (rs[r].size > kernel->max_rank_size)
      return fail(ATTN_ERR_SHAPE, k,
                  "rank %s has size %lld; the GPU kernel supports at most "
                  "%lld",
                  rank_name(k, r), (long long)rs[r].size,
                  (long long)kernel->max_rank_size);

  /* The grid. */
  int64_t grid_x = 0, grid_y = 1;
  for (int32_t i = 0; i < k->num_task_ranks; ++i) {
    int32_t r = k->task_ranks[i];
    int64_t s = rs[r].size;
    if (r == k->tiled_rank)
      grid_x = s / k->tile + (s % k->tile != 0);
    else if (__builtin_mul_overflow(grid_y, s, &grid_y))
      grid_y = INT64_MAX;
  }
  if (grid_x == 0 || grid_y == 0)
    return ATTN_OK;
  if (grid_y > kernel->max_grid_y) {
    char ranks[160];
    size_t used = 0;
    ranks[0] = 0;
    for (int32_t i = 0; i < k->num_task_ranks && used < sizeof ranks; ++i) {
      if (k->task_ranks[i] == k->tiled_rank)
        continue;
      int n = snprintf(ranks + used, sizeof ranks - used, "%s%s",
                       used ? " * " : "", rank_name(k, k->task_ranks[i]));
      if (n < 0)
        break;
      used += (size_t)n;
    }
    return fail(ATTN_ERR_SHAPE, k,
                "%s = %lld exceeds the GPU grid's y limit %lld", ranks,
                (long long)grid_y, (long long)kernel->max_grid_y);
  }
  if (grid_x > 0x7fffffff)
    return fail(ATTN_ERR_SHAPE, k, "%lld query blocks exceed the grid's x "
                "limit", (long long)grid_x);

  /* The parameters: every argument's expanded memref descriptor. */
  word values[ATTN_RT_MAX_ARGS][DESC_WORDS];
  void *params[ATTN_RT_MAX_ARGS * DESC_WORDS];
  int32_t np = 0;
  for (int32_t a = 0; a < k->num_args; ++a) {
    const attn_tensor *t = tensors[a];
    const attn_rt_arg *d = &k->args[a];
    word *w = values[a];
    int32_t n = d->ndim;
    if (t) {
      void *p = t->data ? (char *)t->data + t->byte_offset : NULL;
      w[0].ptr = p;
      w[1].ptr = p;
      for (int32_t i = 0; i < n; ++i) {
        w[3 + i].i64 = t->shape[i];
        w[3 + n + i].i64 = strides[a][i];
      }
    } else {
      w[0].ptr = NULL;
      w[1].ptr = NULL;
      int64_t s = 1;
      for (int32_t i = n - 1; i >= 0; --i) {
        int64_t size = rs[d->dims[i]].size;
        w[3 + i].i64 = size;
        w[3 + n + i].i64 = s;
        if (__builtin_mul_overflow(s, size, &s))
          s = 0;
      }
    }
    w[2].i64 = 0;
    for (int32_t i = 0; i < 3 + 2 * n; ++i)
      params[np++] = &w[i];
  }

  /* The driver, the context, the module, the launch. */
  pthread_once(&cuda.once, cuda_load);
  if (cuda.status != ATTN_OK)
    return fail(cuda.status, k, "%s", cuda.message);
  cu_device dev;
  cu_result r = cuda.device_get(&dev, device_id);
  if (r != CU_SUCCESS) {
    int count = 0;
    if (cuda.device_get_count(&count) == CU_SUCCESS && device_id >= count)
      return fail(ATTN_ERR_DEVICE, k,
                  "the tensors are on CUDA device %d, but there %s %d "
                  "device%s",
                  device_id, count == 1 ? "is" : "are", count,
                  count == 1 ? "" : "s");
    return cuda_fail(k, "cuDeviceGet", r);
  }
  cu_context ctx = NULL, pushed = NULL;
  if (cuda.ctx_get_current(&ctx) != CU_SUCCESS)
    ctx = NULL;
  if (ctx) {
    cu_device cur;
    if (cuda.ctx_get_device(&cur) != CU_SUCCESS || cur != dev)
      ctx = NULL;
  }
  if (!ctx) {
    pthread_mutex_lock(&cuda_modules_lock);
    if (!cuda_primary[device_id]) {
      r = cuda.primary_ctx_retain(&cuda_primary[device_id], dev);
      if (r != CU_SUCCESS)
        cuda_primary[device_id] = NULL;
    }
    ctx = cuda_primary[device_id];
    pthread_mutex_unlock(&cuda_modules_lock);
    if (!ctx)
      return cuda_fail(k, "cuDevicePrimaryCtxRetain", r);
    if ((r = cuda.ctx_push(ctx)) != CU_SUCCESS)
      return cuda_fail(k, "cuCtxPushCurrent", r);
    pushed = ctx;
  }
  cu_function f = NULL;
  st = cuda_function(kernel, ctx, dev, &f);
  if (st == ATTN_OK) {
    r = cuda.launch_kernel(
        f, (unsigned)grid_x, (unsigned)grid_y, 1, (unsigned)kernel->block[0],
        (unsigned)kernel->block[1], (unsigned)kernel->block[2],
        (unsigned)kernel->dynamic_shared_bytes,
        launch ? (cu_stream)launch->stream : NULL, params, NULL);
    if (r != CU_SUCCESS)
      st = cuda_fail(k, "cuLaunchKernel", r);
  }
  if (pushed) {
    cu_context popped;
    cuda.ctx_pop(&popped);
  }
  return st;
}
