//===- HandReference.cpp - Naive float64 attention references -------------===//
//
// This file implements the hand-written float64 attention references with
// plain nested loops. Clarity beats speed here: every formula is spelled out
// next to the loop that computes it. The variant references state each
// variant's semantics directly (which keys a query sees, which bias it adds,
// where a paged or packed key lives), never the way a cascade computes it.
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
#include <utility>

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
          // 4. any other additive bias
          if (opt.bias)
            score += opt.bias(b, h, m, p);
          s[p] = score;
          // 5. mask
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
          case Mask::Power2: { // d = m - p >= 0 is 0 or a power of two
            const int64_t d = m - p;
            kept[p] = d >= 0 && (d & (d - 1)) == 0;
            break;
          }
          }
          if (opt.keep && !opt.keep(b, h, m, p))
            kept[p] = false;
        }
        // 6. topk: keep kept keys whose score >= the topk-th largest kept
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

//===----------------------------------------------------------------------===//
// Variants
//===----------------------------------------------------------------------===//

namespace {

/// x rounded to a non-negative integer index (metadata is stored as doubles).
int64_t toIndex(double x, const char *what) {
  require(x >= 0 && x == std::floor(x), std::string(what) + " must be a "
                                                            "non-negative integer");
  return static_cast<int64_t>(x);
}

} // namespace

AttnOut prefixLMAttention(const Dense &q, const Dense &k, const Dense &v,
                          const std::vector<int64_t> &prefixLen, double scale) {
  require(static_cast<int64_t>(prefixLen.size()) == q.shape[0],
          "one prefix length per batch entry");
  SoftmaxOptions opt;
  opt.scale = scale;
  // Bidirectional inside the prefix, causal after it.
  opt.keep = [&](int64_t b, int64_t, int64_t m, int64_t p) {
    return p < prefixLen[b] || p <= m;
  };
  return softmaxAttention(q, k, v, opt);
}

AttnOut documentMaskAttention(const Dense &q, const Dense &k, const Dense &v,
                              const std::vector<std::vector<int64_t>> &segQ,
                              const std::vector<std::vector<int64_t>> &segK,
                              double scale) {
  require(static_cast<int64_t>(segQ.size()) == q.shape[0] &&
              static_cast<int64_t>(segK.size()) == k.shape[0],
          "one list of segment ids per batch entry");
  SoftmaxOptions opt;
  opt.scale = scale;
  // Same document only.
  opt.keep = [&](int64_t b, int64_t, int64_t m, int64_t p) {
    return segQ[b].at(m) == segK[b].at(p);
  };
  return softmaxAttention(q, k, v, opt);
}

AttnOut varlenAttention(const Dense &q, const Dense &k, const Dense &v,
                        const std::vector<int64_t> &cuQ,
                        const std::vector<int64_t> &cuK, double scale) {
  require(q.shape.size() == 3 && k.shape.size() == 3 && v.shape.size() == 3,
          "varlenAttention expects token-major rank-3 q, k, v");
  require(cuQ.size() == cuK.size() && !cuQ.empty(),
          "cu_seqlens of queries and keys need the same number of entries");
  const int64_t M = q.shape[0], H = q.shape[1], E = q.shape[2];
  const int64_t P = k.shape[0], F = v.shape[2];
  const int64_t S = static_cast<int64_t>(cuQ.size()) - 1;
  require(cuQ.back() <= M && cuK.back() <= P, "cu_seqlens past the tokens");

  AttnOut out{zeros({M, H, F}), zeros({H, M})};
  for (double &l : out.lse.data)
    l = -std::numeric_limits<double>::infinity(); // tokens of no sequence
  for (int64_t s = 0; s < S; ++s) {
    const int64_t q0 = cuQ[s], nq = cuQ[s + 1] - cuQ[s];
    const int64_t k0 = cuK[s], nk = cuK[s + 1] - cuK[s];
    require(nq >= 0 && nk >= 0, "cu_seqlens must be nondecreasing");
    if (nq == 0)
      continue;
    if (nk == 0)
      continue; // queries without keys: o = 0, lse = -inf (already)
    // Sequence s on its own, as a [1, H, n, *] batch of plain attention.
    Dense qs = zeros({1, H, nq, E}), ks = zeros({1, H, nk, E}),
          vs = zeros({1, H, nk, F});
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t i = 0; i < nq; ++i)
        for (int64_t e = 0; e < E; ++e)
          qs.at({0, h, i, e}) = q.at({q0 + i, h, e});
      for (int64_t j = 0; j < nk; ++j) {
        for (int64_t e = 0; e < E; ++e)
          ks.at({0, h, j, e}) = k.at({k0 + j, h, e});
        for (int64_t f = 0; f < F; ++f)
          vs.at({0, h, j, f}) = v.at({k0 + j, h, f});
      }
    }
    SoftmaxOptions opt;
    opt.scale = scale;
    AttnOut part = softmaxAttention(qs, ks, vs, opt);
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < nq; ++i) {
        for (int64_t f = 0; f < F; ++f)
          out.o.at({q0 + i, h, f}) = part.o.at({0, h, i, f});
        out.lse.at({h, q0 + i}) = part.lse.at({0, h, i});
      }
  }
  return out;
}

AttnOut pagedAttention(const Dense &q, const Dense &kCache, const Dense &vCache,
                       const std::vector<std::vector<int64_t>> &blockTable,
                       const std::vector<int64_t> &seqLens, double scale) {
  require(q.shape.size() == 4 && kCache.shape.size() == 4 &&
              vCache.shape.size() == 4,
          "pagedAttention expects rank-4 q and caches");
  const int64_t B = q.shape[0], H = q.shape[1], M = q.shape[2], E = q.shape[3];
  const int64_t N = kCache.shape[0], S = kCache.shape[1], G = kCache.shape[2];
  const int64_t F = vCache.shape[3];
  require(static_cast<int64_t>(blockTable.size()) == B &&
              static_cast<int64_t>(seqLens.size()) == B,
          "one block table row and one length per sequence");

  AttnOut out{zeros({B, H, M, F}), zeros({B, H, M})};
  for (int64_t b = 0; b < B; ++b) {
    const int64_t L = seqLens[b];
    Dense qb = zeros({1, H, M, E});
    for (int64_t h = 0; h < H; ++h)
      for (int64_t m = 0; m < M; ++m)
        for (int64_t e = 0; e < E; ++e)
          qb.at({0, h, m, e}) = q.at({b, h, m, e});
    AttnOut part;
    if (L == 0) {
      // No tokens: every row is empty.
      part = {zeros({1, H, M, F}), zeros({1, H, M})};
      for (double &l : part.lse.data)
        l = -std::numeric_limits<double>::infinity();
    } else {
      // Gather token t from page blockTable[b][t / S], slot t % S.
      Dense kb = zeros({1, G, L, E}), vb = zeros({1, G, L, F});
      for (int64_t t = 0; t < L; ++t) {
        const int64_t page = blockTable[b].at(t / S), slot = t % S;
        require(page >= 0 && page < N, "block table entry out of range");
        for (int64_t g = 0; g < G; ++g) {
          for (int64_t e = 0; e < E; ++e)
            kb.at({0, g, t, e}) = kCache.at({page, slot, g, e});
          for (int64_t f = 0; f < F; ++f)
            vb.at({0, g, t, f}) = vCache.at({page, slot, g, f});
        }
      }
      // The M queries are the last M tokens: bottom-right causal.
      SoftmaxOptions opt;
      opt.scale = scale;
      opt.mask = Mask::CausalBottomRight;
      part = softmaxAttention(qb, kb, vb, opt);
    }
    for (int64_t h = 0; h < H; ++h)
      for (int64_t m = 0; m < M; ++m) {
        for (int64_t f = 0; f < F; ++f)
          out.o.at({b, h, m, f}) = part.o.at({0, h, m, f});
        out.lse.at({b, h, m}) = part.lse.at({0, h, m});
      }
  }
  return out;
}

int64_t t5RelativeBucket(int64_t rel) {
  // 32 buckets, bidirectional: 16 per direction, keys after the query
  // (rel > 0) in the upper half.
  int64_t bucket = rel > 0 ? 16 : 0;
  const int64_t n = rel < 0 ? -rel : rel;
  if (n < 8)
    return bucket + n; // exact buckets
  // Log-spaced: 8 + floor(log(n / 8) / log(128 / 8) * 8)
  //           = 8 + floor(2 * log2(n / 8)) = 8 + floor(log2(n^2 / 64)),
  // i.e. 8 + the largest k with 64 * 2^k <= n^2, clipped to bucket 15.
  int64_t k = 0;
  while (k < 8 && (int64_t{64} << (k + 1)) <= n * n)
    ++k;
  return bucket + std::min<int64_t>(8 + k, 15);
}

AttnOut relativePositionBiasAttention(const Dense &q, const Dense &k,
                                      const Dense &v, const Dense &relBias,
                                      double scale) {
  require(relBias.shape.size() == 2 && relBias.shape[0] == q.shape[1] &&
              relBias.shape[1] == 32,
          "relBias must be [H, 32]");
  SoftmaxOptions opt;
  opt.scale = scale;
  opt.bias = [&](int64_t, int64_t h, int64_t m, int64_t p) {
    return relBias.at({h, t5RelativeBucket(p - m)});
  };
  return softmaxAttention(q, k, v, opt);
}

AttnOut lowRankBiasAttention(const Dense &q, const Dense &k, const Dense &v,
                             const Dense &u, const Dense &w, double scale) {
  require(u.shape.size() == 4 && w.shape.size() == 4 && u.shape[3] == w.shape[3],
          "u [B,H,M,R] and w [B,H,P,R] need the same factor rank");
  const int64_t R = u.shape[3];
  SoftmaxOptions opt;
  opt.scale = scale;
  // bias[m,p] = sum_r u[m,r] w[p,r]
  opt.bias = [&](int64_t b, int64_t h, int64_t m, int64_t p) {
    double bias = 0;
    for (int64_t r = 0; r < R; ++r)
      bias += u.at({b, h, m, r}) * w.at({b, h, p, r});
    return bias;
  };
  return softmaxAttention(q, k, v, opt);
}

AttnOut blockSparseAttention(const Dense &q, const Dense &k, const Dense &v,
                             const Dense &offsets, const Dense &indices,
                             int64_t block, double scale) {
  const int64_t B = q.shape[0], H = q.shape[1], M = q.shape[2];
  const int64_t P = k.shape[2];
  const int64_t rows = (M + block - 1) / block, cols = (P + block - 1) / block;
  require(offsets.shape.size() == 3 && offsets.shape[2] >= rows + 1,
          "offsets must be [B, H, >= ceil(M / block) + 1]");
  // listed[b][h][i][j]: key block j is in query block i's list.
  std::vector<bool> listed(static_cast<size_t>(B * H * rows * cols), false);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < rows; ++i) {
        const int64_t begin = toIndex(offsets.at({b, h, i}), "offset");
        const int64_t end = toIndex(offsets.at({b, h, i + 1}), "offset");
        for (int64_t l = begin; l < end; ++l) {
          const int64_t j = toIndex(indices.at({b, h, l}), "block index");
          require(j < cols, "block index out of range");
          listed[((b * H + h) * rows + i) * cols + j] = true;
        }
      }
  SoftmaxOptions opt;
  opt.scale = scale;
  opt.keep = [&](int64_t b, int64_t h, int64_t m, int64_t p) {
    return static_cast<bool>(
        listed[((b * H + h) * rows + m / block) * cols + p / block]);
  };
  return softmaxAttention(q, k, v, opt);
}

double roundToE4M3(double x) {
  if (x == 0 || std::isnan(x))
    return x;
  const double a = std::fabs(x);
  if (a > 448)
    throw std::domain_error("handref: " + std::to_string(x) +
                            " is outside the range of float8 e4m3");
  // a = f * 2^ex with f in [0.5, 1): the binade of a starts at 2^(ex - 1).
  // Normal numbers (binades from 2^-6) have 3 fraction bits, so the spacing
  // is 2^(ex - 1 - 3); below 2^-6 the spacing is that of the subnormals,
  // 2^-9.
  int ex;
  std::frexp(a, &ex);
  const int quantumExp = std::max(ex - 1, -6) - 3;
  // Round to a multiple of the spacing, ties to even (nearbyint in the
  // default rounding mode). Rounding up into the next binade stays exact.
  const double r =
      std::ldexp(std::nearbyint(std::ldexp(a, -quantumExp)), quantumExp);
  return x < 0 ? -r : r;
}

AttnOut fp8Attention(const Dense &q, const Dense &k, const Dense &v,
                     const Dense &qDescale, const Dense &kDescale,
                     const Dense &vDescale, double scale) {
  const int64_t B = q.shape[0], H = q.shape[1], M = q.shape[2], E = q.shape[3];
  const int64_t P = k.shape[2], F = v.shape[3];
  AttnOut out{zeros({B, H, M, F}), zeros({B, H, M})};
  std::vector<double> s(static_cast<size_t>(P));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const double qd = qDescale.at({b, h}), kd = kDescale.at({b, h}),
                   vd = vDescale.at({b, h});
      for (int64_t m = 0; m < M; ++m) {
        // s[p] = (sum_e q k) * qd * kd * scale
        double maxScore = -std::numeric_limits<double>::infinity();
        for (int64_t p = 0; p < P; ++p) {
          double dot = 0;
          for (int64_t e = 0; e < E; ++e)
            dot += q.at({b, h, m, e}) * k.at({b, h, p, e});
          s[p] = dot * qd * kd * scale;
          maxScore = std::max(maxScore, s[p]);
        }
        // o[f] = vd * sum_p exp(s - max) v / sum_p exp(s - max)
        double sum = 0;
        for (int64_t p = 0; p < P; ++p)
          sum += std::exp(s[p] - maxScore);
        for (int64_t f = 0; f < F; ++f) {
          double acc = 0;
          for (int64_t p = 0; p < P; ++p)
            acc += std::exp(s[p] - maxScore) * v.at({b, h, p, f});
          out.o.at({b, h, m, f}) = vd * acc / sum;
        }
        out.lse.at({b, h, m}) = maxScore + std::log(sum);
      }
    }
  return out;
}

AttnGrads attentionBackward(const Dense &q, const Dense &k, const Dense &v,
                            const Dense &dout, bool causal, double scale) {
  require(q.shape.size() == 4 && k.shape.size() == 4 && v.shape.size() == 4 &&
              dout.shape.size() == 4,
          "attentionBackward expects rank-4 tensors");
  const int64_t B = q.shape[0], H = q.shape[1], M = q.shape[2], E = q.shape[3];
  const int64_t P = k.shape[2], F = v.shape[3];
  require(k.shape[1] == H && v.shape[1] == H, "attentionBackward is MHA only");
  AttnGrads g{zeros({B, H, M, E}), zeros({B, H, P, E}), zeros({B, H, P, F})};
  std::vector<double> pr(static_cast<size_t>(P)), dp(static_cast<size_t>(P));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t m = 0; m < M; ++m) {
        // Forward probabilities of row m: P[p] = softmax_p(scale * q.k),
        // over the visible keys (0 elsewhere).
        double maxScore = -std::numeric_limits<double>::infinity();
        for (int64_t p = 0; p < P; ++p) {
          pr[p] = -std::numeric_limits<double>::infinity();
          if (causal && p > m)
            continue;
          double dot = 0;
          for (int64_t e = 0; e < E; ++e)
            dot += q.at({b, h, m, e}) * k.at({b, h, p, e});
          pr[p] = scale * dot;
          maxScore = std::max(maxScore, pr[p]);
        }
        if (maxScore == -std::numeric_limits<double>::infinity())
          continue; // no visible key: P = 0, no gradient flows
        double sum = 0;
        for (int64_t p = 0; p < P; ++p) {
          pr[p] = std::exp(pr[p] - maxScore); // exp(-inf) = 0 when masked
          sum += pr[p];
        }
        for (int64_t p = 0; p < P; ++p)
          pr[p] /= sum;
        // dP[p] = dO[m] . V[p];  D = sum_p P[p] dP[p]
        double d = 0;
        for (int64_t p = 0; p < P; ++p) {
          dp[p] = 0;
          for (int64_t f = 0; f < F; ++f)
            dp[p] += dout.at({b, h, m, f}) * v.at({b, h, p, f});
          d += pr[p] * dp[p];
        }
        for (int64_t p = 0; p < P; ++p) {
          // dV[p] += P[p] dO[m]
          for (int64_t f = 0; f < F; ++f)
            g.dv.at({b, h, p, f}) += pr[p] * dout.at({b, h, m, f});
          // dS = P (dP - D): the softmax Jacobian applied to dP.
          const double ds = pr[p] * (dp[p] - d);
          // S = scale * q.k: dQ[m] += scale dS K[p], dK[p] += scale dS Q[m].
          for (int64_t e = 0; e < E; ++e) {
            g.dq.at({b, h, m, e}) += scale * ds * k.at({b, h, p, e});
            g.dk.at({b, h, p, e}) += scale * ds * q.at({b, h, m, e});
          }
        }
      }
  return g;
}

} // namespace handref
} // namespace attn
