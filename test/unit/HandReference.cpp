//===- HandReference.cpp - Naive float64 attention references -------------===//
//
// This file implements the hand-written float64 attention references with
// plain nested loops. Clarity beats speed here: every formula is spelled out
// next to the loop that computes it.
//
//===----------------------------------------------------------------------===//

#include "HandReference.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>

namespace attn {
namespace handref {

//===----------------------------------------------------------------------===//
// Dense
//===----------------------------------------------------------------------===//

int64_t Dense::offset(std::initializer_list<int64_t> idx) const {
  if (idx.size() != shape.size())
    throw std::out_of_range("Dense::at: rank " + std::to_string(idx.size()) +
                            " index into rank " + std::to_string(shape.size()) +
                            " tensor");
  // Row-major: offset = ((i0 * d1 + i1) * d2 + i2) * ...
  int64_t flat = 0;
  size_t dim = 0;
  for (int64_t i : idx) {
    if (i < 0 || i >= shape[dim])
      throw std::out_of_range("Dense::at: index " + std::to_string(i) +
                              " out of range for dimension " +
                              std::to_string(dim) + " of size " +
                              std::to_string(shape[dim]));
    flat = flat * shape[dim] + i;
    ++dim;
  }
  return flat;
}

double &Dense::at(std::initializer_list<int64_t> idx) {
  return data[static_cast<size_t>(offset(idx))];
}

double Dense::at(std::initializer_list<int64_t> idx) const {
  return data[static_cast<size_t>(offset(idx))];
}

int64_t numElements(const std::vector<int64_t> &shape) {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

Dense zeros(std::vector<int64_t> shape) {
  Dense t;
  t.data.assign(static_cast<size_t>(numElements(shape)), 0.0);
  t.shape = std::move(shape);
  return t;
}

Dense randomTensor(std::vector<int64_t> shape, uint64_t seed, double lo,
                   double hi) {
  Dense t = zeros(std::move(shape));
  std::mt19937_64 gen(seed);
  for (double &x : t.data) {
    // The top 53 bits of a 64-bit draw give a uniform u in [0, 1) that is
    // exactly representable; mt19937_64's output is fixed by the standard.
    double u = static_cast<double>(gen() >> 11) * 0x1.0p-53;
    x = lo + (hi - lo) * u;
  }
  return t;
}

//===----------------------------------------------------------------------===//
// Helpers
//===----------------------------------------------------------------------===//

namespace {

/// Throws std::invalid_argument with \p msg unless \p cond holds.
void require(bool cond, const std::string &msg) {
  if (!cond)
    throw std::invalid_argument("handref: " + msg);
}

/// Computes one softmax-attention output row from the scores \p s of the
/// keys with kept[p] true:
///   max = max_p s[p]
///   o[f] = sum_p exp(s[p] - max) v[b,g,p,f] / sum_p exp(s[p] - max)
///   lse = max + log(sum_p exp(s[p] - max))
/// With no kept key, o = 0 and lse = -infinity.
void softmaxRow(const std::vector<double> &s, const std::vector<bool> &kept,
                const Dense &v, int64_t b, int64_t g, std::vector<double> &o,
                double &lse) {
  const int64_t P = v.shape[2], F = v.shape[3];
  o.assign(static_cast<size_t>(F), 0.0);

  double maxScore = -std::numeric_limits<double>::infinity();
  bool anyKept = false;
  for (int64_t p = 0; p < P; ++p) {
    if (kept[p]) {
      maxScore = std::max(maxScore, s[p]);
      anyKept = true;
    }
  }
  if (!anyKept) {
    lse = -std::numeric_limits<double>::infinity();
    return;
  }

  double sum = 0;
  for (int64_t p = 0; p < P; ++p) {
    if (!kept[p])
      continue;
    double w = std::exp(s[p] - maxScore);
    sum += w;
    for (int64_t f = 0; f < F; ++f)
      o[f] += w * v.at({b, g, p, f});
  }
  for (int64_t f = 0; f < F; ++f)
    o[f] /= sum;
  lse = maxScore + std::log(sum);
}

/// phi(x) = elu(x) + 1, where elu(x) = x > 0 ? x : exp(x) - 1.
double phi(double x) { return (x > 0 ? x : std::exp(x) - 1) + 1; }

/// Symmetric per-block INT8 quantization of x[b,h,:,:] along dimension 2 in
/// blocks of \p block rows. For each block: scale = max |x| / 127 (1 if the
/// max is 0) and xi = clamp(nearbyint(x / scale), -127, 127), rounding half
/// to even. Returns xi as [rows][E] and the scale of each row's block in
/// \p rowScale.
std::vector<std::vector<int64_t>>
quantizeRows(const std::function<double(int64_t, int64_t)> &x, int64_t rows,
             int64_t E, int64_t block, std::vector<double> &rowScale) {
  std::vector<std::vector<int64_t>> xi(static_cast<size_t>(rows),
                                       std::vector<int64_t>(E, 0));
  rowScale.assign(static_cast<size_t>(rows), 1.0);
  for (int64_t start = 0; start < rows; start += block) {
    int64_t end = std::min(rows, start + block);
    double maxAbs = 0;
    for (int64_t r = start; r < end; ++r)
      for (int64_t e = 0; e < E; ++e)
        maxAbs = std::max(maxAbs, std::fabs(x(r, e)));
    double scale = maxAbs == 0 ? 1.0 : maxAbs / 127.0;
    for (int64_t r = start; r < end; ++r) {
      rowScale[r] = scale;
      for (int64_t e = 0; e < E; ++e) {
        // std::nearbyint rounds half to even in the default rounding mode.
        double rounded = std::nearbyint(x(r, e) / scale);
        xi[r][e] = static_cast<int64_t>(std::clamp(rounded, -127.0, 127.0));
      }
    }
  }
  return xi;
}

} // namespace

//===----------------------------------------------------------------------===//
// Softmax attention
//===----------------------------------------------------------------------===//

AttnOut softmaxAttention(const Dense &q, const Dense &k, const Dense &v,
                         const SoftmaxOptions &opt) {
  require(q.shape.size() == 4 && k.shape.size() == 4 && v.shape.size() == 4,
          "softmaxAttention expects rank-4 q, k, v");
  const int64_t B = q.shape[0], H = q.shape[1], M = q.shape[2], E = q.shape[3];
  const int64_t G = k.shape[1], P = k.shape[2], F = v.shape[3];
  require(k.shape[0] == B && v.shape[0] == B, "batch sizes differ");
  require(k.shape[3] == E, "q and k head dims differ");
  require(v.shape[1] == G && v.shape[2] == P, "k and v shapes differ");
  require(G > 0 && H % G == 0, "H must be a multiple of G");
  require(opt.topk >= 0, "topk must be >= 0");
  const int64_t groupSize = H / G;

  AttnOut out{zeros({B, H, M, F}), zeros({B, H, M})};
  std::vector<double> s(static_cast<size_t>(P));
  std::vector<bool> kept(static_cast<size_t>(P));
  std::vector<double> oRow;

  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / groupSize; // GQA: kv head read by query head h
      // ALiBi slope(h) = 2^(-8 (h+1) / H).
      const double slope = std::pow(2.0, -8.0 * static_cast<double>(h + 1) /
                                             static_cast<double>(H));
      for (int64_t m = 0; m < M; ++m) {
        for (int64_t p = 0; p < P; ++p) {
          // 1. s = scale * sum_e q[m,e] k[p,e]
          double dot = 0;
          for (int64_t e = 0; e < E; ++e)
            dot += q.at({b, h, m, e}) * k.at({b, g, p, e});
          double score = opt.scale * dot;
          // 2. softcap: s = cap * tanh(s / cap)
          if (opt.softcap > 0)
            score = opt.softcap * std::tanh(score / opt.softcap);
          // 3. alibi: s += slope(h) * (p - m)
          if (opt.alibi)
            score += slope * static_cast<double>(p - m);
          s[p] = score;
          // 4. mask
          switch (opt.mask) {
          case Mask::None:
            kept[p] = true;
            break;
          case Mask::CausalTopLeft: // p <= m
            kept[p] = p <= m;
            break;
          case Mask::CausalBottomRight: // p <= m + (P - M)
            kept[p] = p <= m + (P - M);
            break;
          case Mask::SlidingWindow: // m - left <= p <= m + right
            kept[p] = m - opt.windowLeft <= p && p <= m + opt.windowRight;
            break;
          }
        }
        // 5. topk: keep kept keys whose score >= the topk-th largest kept
        // score (ties are all kept).
        if (opt.topk > 0) {
          std::vector<double> keptScores;
          for (int64_t p = 0; p < P; ++p)
            if (kept[p])
              keptScores.push_back(s[p]);
          if (static_cast<int64_t>(keptScores.size()) > opt.topk) {
            std::sort(keptScores.begin(), keptScores.end(),
                      std::greater<double>());
            double threshold = keptScores[opt.topk - 1];
            for (int64_t p = 0; p < P; ++p)
              if (kept[p] && s[p] < threshold)
                kept[p] = false;
          }
        }
        double lse;
        softmaxRow(s, kept, v, b, g, oRow, lse);
        for (int64_t f = 0; f < F; ++f)
          out.o.at({b, h, m, f}) = oRow[f];
        out.lse.at({b, h, m}) = lse;
      }
    }
  }
  return out;
}

//===----------------------------------------------------------------------===//
// Linear attention
//===----------------------------------------------------------------------===//

Dense linearAttention(const Dense &q, const Dense &k, const Dense &v,
                      bool causal) {
  require(q.shape.size() == 4 && k.shape.size() == 4 && v.shape.size() == 4,
          "linearAttention expects rank-4 q, k, v");
  const int64_t B = q.shape[0], H = q.shape[1], M = q.shape[2], E = q.shape[3];
  const int64_t P = k.shape[2], F = v.shape[3];
  require(k.shape[0] == B && k.shape[1] == H && k.shape[3] == E,
          "q and k shapes are inconsistent");
  require(v.shape[0] == B && v.shape[1] == H && v.shape[2] == P,
          "k and v shapes are inconsistent");

  Dense o = zeros({B, H, M, F});
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t m = 0; m < M; ++m) {
        // o[m,f] = sum_p w[p] v[p,f] / sum_p w[p],
        // w[p] = phi(q_m) · phi(k_p).
        std::vector<double> numerator(static_cast<size_t>(F), 0.0);
        double denominator = 0;
        for (int64_t p = 0; p < P; ++p) {
          if (causal && p > m)
            continue;
          double w = 0;
          for (int64_t e = 0; e < E; ++e)
            w += phi(q.at({b, h, m, e})) * phi(k.at({b, h, p, e}));
          denominator += w;
          for (int64_t f = 0; f < F; ++f)
            numerator[f] += w * v.at({b, h, p, f});
        }
        for (int64_t f = 0; f < F; ++f)
          o.at({b, h, m, f}) =
              denominator == 0 ? 0.0 : numerator[f] / denominator;
      }
    }
  }
  return o;
}

//===----------------------------------------------------------------------===//
// INT8 attention
//===----------------------------------------------------------------------===//

AttnOut int8Attention(const Dense &q, const Dense &k, const Dense &v,
                      const Int8Options &opt) {
  require(q.shape.size() == 4 && k.shape.size() == 4 && v.shape.size() == 4,
          "int8Attention expects rank-4 q, k, v");
  const int64_t B = q.shape[0], H = q.shape[1], M = q.shape[2], E = q.shape[3];
  const int64_t P = k.shape[2], F = v.shape[3];
  require(k.shape[0] == B && k.shape[1] == H && k.shape[3] == E,
          "q and k shapes are inconsistent");
  require(v.shape[0] == B && v.shape[1] == H && v.shape[2] == P,
          "k and v shapes are inconsistent");
  require(opt.blockQ > 0 && opt.blockK > 0, "block sizes must be positive");

  AttnOut out{zeros({B, H, M, F}), zeros({B, H, M})};
  std::vector<double> s(static_cast<size_t>(P));
  const std::vector<bool> kept(static_cast<size_t>(P), true); // no mask
  std::vector<double> oRow;

  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      // K smoothing: kbar[e] = (1/P) sum_p k[p,e]; k' = k - kbar.
      std::vector<double> kbar(static_cast<size_t>(E), 0.0);
      if (opt.smoothK && P > 0) {
        for (int64_t p = 0; p < P; ++p)
          for (int64_t e = 0; e < E; ++e)
            kbar[e] += k.at({b, h, p, e});
        for (int64_t e = 0; e < E; ++e)
          kbar[e] /= static_cast<double>(P);
      }

      // Per-block quantization of q and k'.
      std::vector<double> sq, sk;
      std::vector<std::vector<int64_t>> qi = quantizeRows(
          [&](int64_t m, int64_t e) {
            return q.at({b, h, m, e});
          },
          M, E, opt.blockQ, sq);
      std::vector<std::vector<int64_t>> ki = quantizeRows(
          [&](int64_t p, int64_t e) {
            return k.at({b, h, p, e}) - kbar[e];
          },
          P, E, opt.blockK, sk);

      for (int64_t m = 0; m < M; ++m) {
        // s[m,p] = scale * sq(m) * sk(p) * sum_e qi[m,e] ki[p,e]
        for (int64_t p = 0; p < P; ++p) {
          int64_t idot = 0;
          for (int64_t e = 0; e < E; ++e)
            idot += qi[m][e] * ki[p][e];
          s[p] = opt.scale * sq[m] * sk[p] * static_cast<double>(idot);
        }
        double lse;
        softmaxRow(s, kept, v, b, h, oRow, lse);
        for (int64_t f = 0; f < F; ++f)
          out.o.at({b, h, m, f}) = oRow[f];
        out.lse.at({b, h, m}) = lse;
      }
    }
  }
  return out;
}

} // namespace handref
} // namespace attn
