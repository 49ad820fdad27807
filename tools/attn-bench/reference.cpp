//===- reference.cpp - attn-bench: float64 reference on sampled rows -------===//
//
// Plain loops in double: s_p = scale * sum_e q[m,e] k[p,e] (p <= m when
// causal), gm = max_p s_p, sd = sum_p exp(s_p - gm), o[f] = sum_p exp(s_p - gm)
// v[p,f] / sd, lse = gm + log(sd). One row costs 4*n*d flops, so checking a
// sample of rows keeps the check from dominating the run.
//
//===----------------------------------------------------------------------===//

#include "bench.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace attn_bench {

double usefulFlops(const Shape &s) {
  double n = double(s.n), bh = double(s.bh()), d = double(s.d);
  return s.causal ? 4.0 * bh * d * n * (n + 1) / 2 : 4.0 * bh * n * n * d;
}

ErrorResult checkAgainstReference(const float *q, const float *k,
                                  const float *v, const float *o,
                                  const float *lse, const Shape &s,
                                  int64_t rows) {
  const int64_t bh = s.bh(), n = s.n, d = s.d;
  const double scale = s.scale;
  // Which rows: all, or `rows` spread over the heads, each head's first and
  // last row included (the causal extremes: 1 key and n keys).
  std::vector<std::pair<int64_t, int64_t>> picks; // (head, row)
  if (rows < 0 || rows >= bh * n) {
    for (int64_t hh = 0; hh < bh; ++hh)
      for (int64_t m = 0; m < n; ++m)
        picks.push_back({hh, m});
  } else {
    int64_t perHead = std::max<int64_t>(2, (rows + bh - 1) / bh);
    perHead = std::min(perHead, n);
    for (int64_t hh = 0; hh < bh; ++hh)
      for (int64_t i = 0; i < perHead; ++i) {
        int64_t m = perHead == 1 ? 0 : (i * (n - 1)) / (perHead - 1);
        // Offset odd heads a little so that not every head checks the same rows.
        if (i > 0 && i + 1 < perHead)
          m = std::min(n - 2, m + (hh % 7));
        picks.push_back({hh, m});
      }
  }

  ErrorResult r;
  std::vector<double> sc(n), acc(d);
  for (auto [hh, m] : picks) {
    const float *qr = q + (hh * n + m) * d;
    const float *kh = k + hh * n * d;
    const float *vh = v + hh * n * d;
    const int64_t len = s.causal ? m + 1 : n;
    double gm = -std::numeric_limits<double>::infinity();
    for (int64_t p = 0; p < len; ++p) {
      double dot = 0;
      for (int64_t e = 0; e < d; ++e)
        dot += double(qr[e]) * double(kh[p * d + e]);
      sc[p] = dot * scale;
      gm = std::max(gm, sc[p]);
    }
    double sd = 0;
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int64_t p = 0; p < len; ++p) {
      double w = std::exp(sc[p] - gm);
      sd += w;
      for (int64_t f = 0; f < d; ++f)
        acc[f] += w * double(vh[p * d + f]);
    }
    const float *orow = o + (hh * n + m) * d;
    for (int64_t f = 0; f < d; ++f) {
      double got = orow[f];
      if (!std::isfinite(got))
        r.finite = false;
      r.maxAbsErrO = std::max(r.maxAbsErrO, std::fabs(got - acc[f] / sd));
    }
    if (lse) {
      double got = lse[hh * n + m];
      if (!std::isfinite(got))
        r.finite = false;
      r.maxAbsErrLse = std::max(r.maxAbsErrLse, std::fabs(got - (gm + std::log(sd))));
    }
    ++r.rowsChecked;
  }
  return r;
}

} // namespace attn_bench
