/* embed_demo: calls the attnc-generated kernels of my_attn.h from C.
 *
 * Causal attention (b = 1, h = 2, 113 queries and keys, head dim 64) on
 * deterministic pseudo-random data, compared with a float64 reference
 * written here; then a GQA call with a wrong K/V head count, which the
 * entry point rejects with ATTN_ERR_SHAPE and a message. Prints
 * "embed: OK" and exits 0 when both behave. */
#include "my_attn.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { B = 1, H = 2, M = 113, P = 113, D = 64 };

static float next_uniform(uint64_t *state) { /* uniform in [-1, 1) */
  *state = *state * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((*state >> 40) * 0x1.0p-24 * 2.0 - 1.0);
}

/* A compact row-major attn_tensor over `data`. */
static attn_tensor tensor(float *data, int32_t ndim, const int64_t *shape) {
  attn_tensor t;
  memset(&t, 0, sizeof t);
  t.data = data;
  t.device.device_type = ATTN_DEVICE_CPU;
  t.ndim = ndim;
  t.dtype.code = ATTN_DTYPE_FLOAT;
  t.dtype.bits = 32;
  t.dtype.lanes = 1;
  t.shape = shape;
  t.strides = NULL; /* compact row-major */
  return t;
}

/* Float64 causal attention for one (b, h): o [M, D], lse [M]. */
static void reference(const float *q, const float *k, const float *v,
                      double *o, double *lse) {
  for (int m = 0; m < M; ++m) {
    double s[P], mx = -INFINITY, sum = 0;
    for (int p = 0; p <= m && p < P; ++p) {
      double dot = 0;
      for (int e = 0; e < D; ++e)
        dot += (double)q[m * D + e] * k[p * D + e];
      s[p] = dot * 0.125;
      if (s[p] > mx) mx = s[p];
    }
    for (int p = 0; p <= m && p < P; ++p) sum += exp(s[p] - mx);
    for (int f = 0; f < D; ++f) {
      double acc = 0;
      for (int p = 0; p <= m && p < P; ++p) acc += exp(s[p] - mx) * v[p * D + f];
      o[m * D + f] = acc / sum;
    }
    lse[m] = mx + log(sum);
  }
}

int main(void) {
  const size_t n = (size_t)B * H * M * D;
  float *q = malloc(n * sizeof *q), *k = malloc(n * sizeof *k),
        *v = malloc(n * sizeof *v), *o = malloc(n * sizeof *o),
        *lse = malloc((size_t)B * H * M * sizeof *lse);
  double *ro = malloc((size_t)M * D * sizeof *ro), *rl = malloc(M * sizeof *rl);
  if (!q || !k || !v || !o || !lse || !ro || !rl) return 2;
  uint64_t state = 42;
  for (size_t i = 0; i < n; ++i) {
    q[i] = next_uniform(&state);
    k[i] = next_uniform(&state);
    v[i] = next_uniform(&state);
  }

  const int64_t qshape[4] = {B, H, M, D}, kshape[4] = {B, H, P, D},
                lshape[3] = {B, H, M};
  attn_tensor tq = tensor(q, 4, qshape), tk = tensor(k, 4, kshape),
              tv = tensor(v, 4, kshape), to = tensor(o, 4, qshape),
              tl = tensor(lse, 3, lshape);
  my_attn_causal_args args = {&tq, &tk, &tv, &to, &tl};
  attn_launch launch = {0, NULL, NULL, NULL}; /* all hardware threads */
  attn_status st = my_attn_causal(&args, &launch);
  if (st != ATTN_OK) {
    fprintf(stderr, "embed: my_attn_causal: %s: %s\n", attn_status_string(st),
            attn_last_error());
    return 1;
  }
  double worst = 0;
  for (int bh = 0; bh < B * H; ++bh) {
    size_t off = (size_t)bh * M * D;
    reference(q + off, k + off, v + off, ro, rl);
    for (int i = 0; i < M * D; ++i) {
      double err = fabs(o[off + i] - ro[i]) / (2e-5 + 2e-5 * fabs(ro[i]));
      if (err > worst) worst = err;
    }
    for (int m = 0; m < M; ++m) {
      double err = fabs(lse[bh * M + m] - rl[m]) / (2e-5 + 2e-5 * fabs(rl[m]));
      if (err > worst) worst = err;
    }
  }
  printf("embed: causal b=%d h=%d m=%d p=%d d=%d: worst error %.3g x tolerance\n",
         B, H, M, P, D, worst);

  /* GQA needs |h| = 4 * |g|: 2 query heads with 2 KV heads is rejected. */
  my_attn_gqa_args gargs = {&tq, &tk, &tv, &to, NULL};
  st = my_attn_gqa(&gargs, NULL);
  printf("embed: gqa with |h| = |g| = 2: %s: %s\n", attn_status_string(st),
         attn_last_error());

  int ok = worst <= 1.0 && st == ATTN_ERR_SHAPE;
  printf("embed: %s\n", ok ? "OK" : "FAILED");
  free(q), free(k), free(v), free(o), free(lse), free(ro), free(rl);
  return ok ? 0 : 1;
}
