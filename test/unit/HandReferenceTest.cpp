//===- HandReferenceTest.cpp - Self-checks of the hand references ---------===//
//
// This file implements self-checks for the naive float64 attention
// references: hand-computed examples, mask and GQA equivalences, and
// invariances that any correct implementation must satisfy (and, for the
// backward pass, finite differences of the forward).
//
//===----------------------------------------------------------------------===//

#include "HandReference.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <utility>
#include <vector>

using attn::handref::AttnGrads;
using attn::handref::AttnOut;
using attn::handref::Dense;
using attn::handref::int8Attention;
using attn::handref::Int8Options;
using attn::handref::linearAttention;
using attn::handref::Mask;
using attn::handref::randomTensor;
using attn::handref::softmaxAttention;
using attn::handref::SoftmaxOptions;
using attn::handref::zeros;

namespace {

const double kInf = std::numeric_limits<double>::infinity();

/// Returns max_i |a[i] - b[i]|, treating equal infinities as a difference of
/// 0. Requires equal shapes.
double maxAbsDiff(const Dense &a, const Dense &b) {
  REQUIRE(a.shape == b.shape);
  REQUIRE(a.data.size() == b.data.size());
  double worst = 0;
  for (size_t i = 0; i < a.data.size(); ++i) {
    if (a.data[i] == b.data[i])
      continue; // also covers -inf == -inf
    worst = std::max(worst, std::fabs(a.data[i] - b.data[i]));
  }
  return worst;
}

/// Makes a [1, 1, n, 1] tensor from \p values.
Dense column(const std::vector<double> &values) {
  Dense t = zeros({1, 1, static_cast<int64_t>(values.size()), 1});
  t.data = values;
  return t;
}

/// Returns a copy of \p kv [B, G, P, D] with each kv head repeated H / G
/// times, giving [B, H, P, D] (query head h reads kv head h / (H / G)).
Dense repeatHeads(const Dense &kv, int64_t H) {
  const int64_t B = kv.shape[0], G = kv.shape[1], P = kv.shape[2],
                D = kv.shape[3];
  Dense out = zeros({B, H, P, D});
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t p = 0; p < P; ++p)
        for (int64_t d = 0; d < D; ++d)
          out.at({b, h, p, d}) = kv.at({b, h / (H / G), p, d});
  return out;
}

/// phi(x) = elu(x) + 1, written out again independently of the reference.
double phi(double x) { return x > 0 ? x + 1 : std::exp(x); }

} // namespace

TEST_CASE("handref Dense indexing and randomTensor", "[handref]") {
  Dense t = zeros({2, 3, 4});
  t.at({1, 2, 3}) = 7;
  CHECK(t.data[1 * 12 + 2 * 4 + 3] == 7);
  CHECK(static_cast<const Dense &>(t).at({1, 2, 3}) == 7);
  CHECK_THROWS_AS(t.at({2, 0, 0}), std::out_of_range);
  CHECK_THROWS_AS(t.at({0, 0}), std::out_of_range);
  Dense scalar = zeros({});
  CHECK(scalar.data.size() == 1);
  scalar.at({}) = 3;
  CHECK(scalar.data[0] == 3);

  Dense a = randomTensor({3, 5}, 42, -2, 3);
  Dense b = randomTensor({3, 5}, 42, -2, 3);
  Dense c = randomTensor({3, 5}, 43, -2, 3);
  CHECK(a.data == b.data);
  CHECK(a.data != c.data);
  for (double x : a.data) {
    CHECK(x >= -2);
    CHECK(x <= 3);
  }
  // Pinned against the values the C++ standard fixes for std::mt19937_64
  // (default seed 5489): the first draw, and the 10000th draw
  // 9981545732273789042 guaranteed by [rand.predef].
  Dense u = randomTensor({10000}, 5489, 0, 1);
  CHECK(u.data[0] ==
        static_cast<double>(14514284786278117030ull >> 11) * 0x1.0p-53);
  CHECK(u.data[9999] ==
        static_cast<double>(9981545732273789042ull >> 11) * 0x1.0p-53);
}

TEST_CASE("handref softmax weights sum to one", "[handref]") {
  Dense q = randomTensor({2, 4, 5, 8}, 1);
  Dense k = randomTensor({2, 2, 7, 8}, 2);
  Dense ones = zeros({2, 2, 7, 3});
  for (double &x : ones.data)
    x = 1;

  std::vector<SoftmaxOptions> variants(6);
  variants[1].mask = Mask::CausalTopLeft;
  variants[2].mask = Mask::CausalBottomRight;
  variants[3].mask = Mask::SlidingWindow;
  variants[3].windowLeft = 2;
  variants[3].windowRight = 1;
  variants[4].alibi = true;
  variants[4].softcap = 0.7;
  variants[5].topk = 3;
  for (size_t i = 0; i < variants.size(); ++i) {
    INFO("variant " << i);
    variants[i].scale = 0.9;
    AttnOut out = softmaxAttention(q, k, ones, variants[i]);
    for (double x : out.o.data)
      CHECK(x == Approx(1.0).margin(1e-12).epsilon(0));
    for (double l : out.lse.data)
      CHECK(std::isfinite(l));
  }
}

TEST_CASE("handref softmax hand-computed MHA example", "[handref]") {
  // M = P = 2, E = F = 1, q = [1, 2], k = [1, -1], v = [10, 20].
  // Row 0: s = [1, -1], o = (10 e + 20 e^-1) / (e + e^-1),
  //        lse = log(e + e^-1).
  // Row 1: s = [2, -2], o = (10 e^2 + 20 e^-2) / (e^2 + e^-2),
  //        lse = log(e^2 + e^-2).
  Dense q = column({1, 2}), k = column({1, -1}), v = column({10, 20});
  SoftmaxOptions opt;
  AttnOut out = softmaxAttention(q, k, v, opt);
  const double tol = 1e-12;
  CHECK(out.o.at({0, 0, 0, 0}) == Approx(11.192029220221174).margin(tol));
  CHECK(out.o.at({0, 0, 1, 0}) == Approx(10.179862099620916).margin(tol));
  CHECK(out.lse.at({0, 0, 0}) == Approx(1.1269280110429725).margin(tol));
  CHECK(out.lse.at({0, 0, 1}) == Approx(2.01814992791781).margin(tol));

  // The same example through the scale: q/2 with scale 2.
  Dense qHalf = column({0.5, 1});
  opt.scale = 2;
  AttnOut scaled = softmaxAttention(qHalf, k, v, opt);
  CHECK(maxAbsDiff(scaled.o, out.o) <= tol);
  CHECK(maxAbsDiff(scaled.lse, out.lse) <= tol);
}

TEST_CASE("handref softmax causal masks", "[handref]") {
  Dense q = randomTensor({2, 3, 6, 4}, 11);
  Dense k = randomTensor({2, 3, 6, 4}, 12);
  Dense v = randomTensor({2, 3, 6, 5}, 13);
  SoftmaxOptions opt;
  opt.scale = 0.5;

  SECTION("top-left row 0 attends only to key 0") {
    opt.mask = Mask::CausalTopLeft;
    AttnOut out = softmaxAttention(q, k, v, opt);
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t h = 0; h < 3; ++h) {
        for (int64_t f = 0; f < 5; ++f)
          CHECK(out.o.at({b, h, 0, f}) ==
                Approx(v.at({b, h, 0, f})).margin(1e-12));
        double s00 = 0;
        for (int64_t e = 0; e < 4; ++e)
          s00 += q.at({b, h, 0, e}) * k.at({b, h, 0, e});
        CHECK(out.lse.at({b, h, 0}) == Approx(0.5 * s00).margin(1e-12));
      }
  }
  SECTION("bottom-right with M == 1 is unmasked") {
    Dense q1 = randomTensor({2, 3, 1, 4}, 14);
    AttnOut plain = softmaxAttention(q1, k, v, opt);
    opt.mask = Mask::CausalBottomRight;
    AttnOut masked = softmaxAttention(q1, k, v, opt);
    CHECK(maxAbsDiff(plain.o, masked.o) <= 1e-12);
    CHECK(maxAbsDiff(plain.lse, masked.lse) <= 1e-12);
  }
  SECTION("bottom-right equals top-left when M == P") {
    opt.mask = Mask::CausalBottomRight;
    AttnOut br = softmaxAttention(q, k, v, opt);
    opt.mask = Mask::CausalTopLeft;
    AttnOut tl = softmaxAttention(q, k, v, opt);
    CHECK(maxAbsDiff(br.o, tl.o) == 0);
    CHECK(maxAbsDiff(br.lse, tl.lse) == 0);
  }
  SECTION("sliding window limits") {
    // A window covering everything to the left equals top-left causal.
    opt.mask = Mask::SlidingWindow;
    opt.windowLeft = 6;
    opt.windowRight = 0;
    AttnOut window = softmaxAttention(q, k, v, opt);
    opt.mask = Mask::CausalTopLeft;
    AttnOut causal = softmaxAttention(q, k, v, opt);
    CHECK(maxAbsDiff(window.o, causal.o) == 0);
    // A window covering everything equals no mask.
    opt.mask = Mask::SlidingWindow;
    opt.windowRight = 6;
    AttnOut wide = softmaxAttention(q, k, v, opt);
    opt.mask = Mask::None;
    AttnOut plain = softmaxAttention(q, k, v, opt);
    CHECK(maxAbsDiff(wide.o, plain.o) == 0);
    // A zero-width window keeps only the diagonal: o[m] = v[m].
    opt.mask = Mask::SlidingWindow;
    opt.windowLeft = 0;
    opt.windowRight = 0;
    AttnOut diag = softmaxAttention(q, k, v, opt);
    CHECK(maxAbsDiff(diag.o, v) <= 1e-12);
  }
  SECTION("sliding window hand example") {
    // M = P = 3, E = F = 1, q = 1, k = [0, 1, 2], v = [1, 2, 4],
    // window left 1, right 0: row 2 keeps keys 1 and 2 with scores 1 and 2.
    Dense q3 = column({1, 1, 1}), k3 = column({0, 1, 2}),
          v3 = column({1, 2, 4});
    SoftmaxOptions w;
    w.mask = Mask::SlidingWindow;
    w.windowLeft = 1;
    AttnOut out = softmaxAttention(q3, k3, v3, w);
    double e1 = std::exp(1.0), e2 = std::exp(2.0);
    CHECK(out.o.at({0, 0, 2, 0}) ==
          Approx((2 * e1 + 4 * e2) / (e1 + e2)).margin(1e-12));
    CHECK(out.lse.at({0, 0, 2}) == Approx(std::log(e1 + e2)).margin(1e-12));
    // Row 1 keeps keys 0 and 1 with scores 0 and 1.
    CHECK(out.o.at({0, 0, 1, 0}) ==
          Approx((1 + 2 * e1) / (1 + e1)).margin(1e-12));
  }
}

TEST_CASE("handref softmax fully masked rows", "[handref]") {
  // M = 4 > P = 2 with bottom-right causal keeps p <= m - 2: rows 0 and 1
  // keep no key, rows 2 and 3 keep keys {0} and {0, 1}.
  Dense q = randomTensor({1, 2, 4, 3}, 21);
  Dense k = randomTensor({1, 2, 2, 3}, 22);
  Dense v = randomTensor({1, 2, 2, 4}, 23);
  SoftmaxOptions opt;
  opt.mask = Mask::CausalBottomRight;
  AttnOut out = softmaxAttention(q, k, v, opt);
  AttnOut plain = softmaxAttention(q, k, v, SoftmaxOptions());
  for (int64_t h = 0; h < 2; ++h) {
    for (int64_t m = 0; m < 2; ++m) {
      CHECK(out.lse.at({0, h, m}) == -kInf);
      for (int64_t f = 0; f < 4; ++f)
        CHECK(out.o.at({0, h, m, f}) == 0);
    }
    for (int64_t f = 0; f < 4; ++f) {
      CHECK(out.o.at({0, h, 2, f}) == Approx(v.at({0, h, 0, f})).margin(1e-12));
      CHECK(out.o.at({0, h, 3, f}) == plain.o.at({0, h, 3, f}));
    }
    CHECK(out.lse.at({0, h, 3}) == plain.lse.at({0, h, 3}));
  }

  // A zero-width sliding window with M > P leaves rows m >= P empty.
  opt.mask = Mask::SlidingWindow;
  opt.windowLeft = opt.windowRight = 0;
  out = softmaxAttention(q, k, v, opt);
  for (int64_t h = 0; h < 2; ++h)
    for (int64_t m = 2; m < 4; ++m) {
      CHECK(out.lse.at({0, h, m}) == -kInf);
      for (int64_t f = 0; f < 4; ++f)
        CHECK(out.o.at({0, h, m, f}) == 0);
    }
}

TEST_CASE("handref softmax GQA and MQA equal MHA with repeated heads",
          "[handref]") {
  const int64_t H = 6;
  Dense q = randomTensor({2, H, 5, 4}, 31);
  for (int64_t G : {1, 2, 3, 6}) {
    INFO("G = " << G);
    Dense k = randomTensor({2, G, 7, 4}, 32);
    Dense v = randomTensor({2, G, 7, 3}, 33);
    SoftmaxOptions opt;
    opt.scale = 0.5;
    opt.mask = Mask::CausalBottomRight;
    opt.alibi = true;
    AttnOut gqa = softmaxAttention(q, k, v, opt);
    AttnOut mha =
        softmaxAttention(q, repeatHeads(k, H), repeatHeads(v, H), opt);
    CHECK(maxAbsDiff(gqa.o, mha.o) <= 1e-12);
    CHECK(maxAbsDiff(gqa.lse, mha.lse) <= 1e-12);
  }
  // H not divisible by G is rejected.
  CHECK_THROWS_AS(softmaxAttention(q, randomTensor({2, 4, 7, 4}, 1),
                                   randomTensor({2, 4, 7, 3}, 2),
                                   SoftmaxOptions()),
                  std::invalid_argument);
}

TEST_CASE("handref softmax softcap and alibi", "[handref]") {
  Dense q = randomTensor({1, 4, 5, 8}, 41, -2, 2);
  Dense k = randomTensor({1, 4, 6, 8}, 42, -2, 2);
  Dense v = randomTensor({1, 4, 6, 3}, 43);
  SoftmaxOptions opt;

  SECTION("a huge cap is no cap") {
    AttnOut plain = softmaxAttention(q, k, v, opt);
    opt.softcap = 1e12;
    AttnOut capped = softmaxAttention(q, k, v, opt);
    CHECK(maxAbsDiff(plain.o, capped.o) <= 1e-9);
    CHECK(maxAbsDiff(plain.lse, capped.lse) <= 1e-9);
  }
  SECTION("hand example: softcap before alibi") {
    // H = 1 so slope = 2^-8. M = 1, P = 2, E = F = 1, q = 3, k = [1, 2],
    // v = [5, 7], scale 0.5, cap 1:
    //   s[p] = tanh(0.5 * 3 * k[p]) + 2^-8 * (p - 0).
    Dense q1 = column({3}), k1 = column({1, 2}), v1 = column({5, 7});
    opt.scale = 0.5;
    opt.softcap = 1;
    opt.alibi = true;
    AttnOut out = softmaxAttention(q1, k1, v1, opt);
    double s0 = std::tanh(1.5), s1 = std::tanh(3.0) + std::pow(2.0, -8);
    double w0 = std::exp(s0), w1 = std::exp(s1);
    CHECK(out.o.at({0, 0, 0, 0}) ==
          Approx((5 * w0 + 7 * w1) / (w0 + w1)).margin(1e-12));
    CHECK(out.lse.at({0, 0, 0}) == Approx(std::log(w0 + w1)).margin(1e-12));
  }
  SECTION("alibi slopes depend on the query head") {
    // With q = 0 all raw scores are 0, so row m of head h sees scores
    // slope(h) * (p - m) with slope(h) = 2^(-8 (h+1) / H), H = 4.
    Dense q0 = zeros({1, 4, 1, 8});
    opt.alibi = true;
    AttnOut out = softmaxAttention(q0, k, v, opt);
    for (int64_t h = 0; h < 4; ++h) {
      double slope = std::pow(2.0, -8.0 * (h + 1) / 4.0);
      double sum = 0;
      for (int64_t p = 0; p < 6; ++p)
        sum += std::exp(slope * p);
      CHECK(out.lse.at({0, h, 0}) == Approx(std::log(sum)).margin(1e-12));
    }
  }
}

TEST_CASE("handref softmax topk", "[handref]") {
  Dense q = randomTensor({1, 2, 5, 4}, 51);
  Dense k = randomTensor({1, 2, 7, 4}, 52);
  Dense v = randomTensor({1, 2, 7, 3}, 53);
  SoftmaxOptions opt;
  opt.mask = Mask::CausalBottomRight;

  SECTION("topk >= P is no topk") {
    AttnOut plain = softmaxAttention(q, k, v, opt);
    for (int64_t topk : {7, 8, 100}) {
      opt.topk = topk;
      AttnOut out = softmaxAttention(q, k, v, opt);
      CHECK(maxAbsDiff(plain.o, out.o) <= 1e-12);
      CHECK(maxAbsDiff(plain.lse, out.lse) <= 1e-12);
    }
  }
  SECTION("topk 1 picks the best unmasked key") {
    opt.topk = 1;
    AttnOut out = softmaxAttention(q, k, v, opt);
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t m = 0; m < 5; ++m) {
        // Unmasked keys are p <= m + (7 - 5).
        int64_t best = -1;
        double bestScore = -kInf;
        for (int64_t p = 0; p <= m + 2; ++p) {
          double s = 0;
          for (int64_t e = 0; e < 4; ++e)
            s += q.at({0, h, m, e}) * k.at({0, h, p, e});
          if (s > bestScore) {
            bestScore = s;
            best = p;
          }
        }
        CHECK(out.lse.at({0, h, m}) == Approx(bestScore).margin(1e-12));
        for (int64_t f = 0; f < 3; ++f)
          CHECK(out.o.at({0, h, m, f}) ==
                Approx(v.at({0, h, best, f})).margin(1e-12));
      }
  }
  SECTION("ties at the k-th value are all kept") {
    // q = 1, k = [1, 1, 0, 1, -1], v = [1, 2, 4, 8, 16], topk = 2:
    // scores [1, 1, 0, 1, -1]; the 2nd largest is 1, so keys 0, 1, 3 stay.
    Dense q1 = column({1}), k1 = column({1, 1, 0, 1, -1}),
          v1 = column({1, 2, 4, 8, 16});
    SoftmaxOptions t;
    t.topk = 2;
    AttnOut out = softmaxAttention(q1, k1, v1, t);
    CHECK(out.o.at({0, 0, 0, 0}) == Approx((1 + 2 + 8) / 3.0).margin(1e-12));
    CHECK(out.lse.at({0, 0, 0}) == Approx(1 + std::log(3.0)).margin(1e-12));
  }
}

TEST_CASE("handref linear attention", "[handref]") {
  const int64_t B = 2, H = 3, M = 5, P = 6, E = 4, F = 3;
  Dense q = randomTensor({B, H, M, E}, 61, -2, 2);
  Dense k = randomTensor({B, H, P, E}, 62, -2, 2);
  Dense v = randomTensor({B, H, P, F}, 63);

  SECTION("non-causal equals the reassociated phi(Q) (phi(K)^T V)") {
    Dense o = linearAttention(q, k, v, /*causal=*/false);
    Dense expected = zeros({B, H, M, F});
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h) {
        // kv[e][f] = sum_p phi(k[p,e]) v[p,f]; ksum[e] = sum_p phi(k[p,e]).
        std::vector<std::vector<double>> kv(E, std::vector<double>(F, 0));
        std::vector<double> ksum(E, 0);
        for (int64_t p = 0; p < P; ++p)
          for (int64_t e = 0; e < E; ++e) {
            ksum[e] += phi(k.at({b, h, p, e}));
            for (int64_t f = 0; f < F; ++f)
              kv[e][f] += phi(k.at({b, h, p, e})) * v.at({b, h, p, f});
          }
        // o[m,f] = sum_e phi(q[m,e]) kv[e][f] / sum_e phi(q[m,e]) ksum[e].
        for (int64_t m = 0; m < M; ++m) {
          double den = 0;
          for (int64_t e = 0; e < E; ++e)
            den += phi(q.at({b, h, m, e})) * ksum[e];
          for (int64_t f = 0; f < F; ++f) {
            double num = 0;
            for (int64_t e = 0; e < E; ++e)
              num += phi(q.at({b, h, m, e})) * kv[e][f];
            expected.at({b, h, m, f}) = num / den;
          }
        }
      }
    CHECK(maxAbsDiff(o, expected) <= 1e-12);
  }
  SECTION("causal equals the recurrent running-state form") {
    Dense o = linearAttention(q, k, v, /*causal=*/true);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h) {
        // State after step m: kv += phi(k_m) v_m^T, ksum += phi(k_m).
        std::vector<std::vector<double>> kv(E, std::vector<double>(F, 0));
        std::vector<double> ksum(E, 0);
        for (int64_t m = 0; m < M; ++m) {
          for (int64_t e = 0; e < E; ++e) {
            ksum[e] += phi(k.at({b, h, m, e}));
            for (int64_t f = 0; f < F; ++f)
              kv[e][f] += phi(k.at({b, h, m, e})) * v.at({b, h, m, f});
          }
          double den = 0;
          for (int64_t e = 0; e < E; ++e)
            den += phi(q.at({b, h, m, e})) * ksum[e];
          for (int64_t f = 0; f < F; ++f) {
            double num = 0;
            for (int64_t e = 0; e < E; ++e)
              num += phi(q.at({b, h, m, e})) * kv[e][f];
            CHECK(o.at({b, h, m, f}) == Approx(num / den).margin(1e-12));
          }
        }
        // Row 0 only sees key 0.
        for (int64_t f = 0; f < F; ++f)
          CHECK(o.at({b, h, 0, f}) == Approx(v.at({b, h, 0, f})).margin(1e-12));
      }
  }
  SECTION("zero inputs give the mean of v") {
    // phi(0) = 1, so every weight is E and o = mean_p v[p].
    Dense o = linearAttention(zeros({1, 1, 2, E}), zeros({1, 1, P, E}),
                              column({1, 2, 3, 4, 5, 9}), false);
    CHECK(o.at({0, 0, 0, 0}) == Approx(4.0).margin(1e-12));
    CHECK(o.at({0, 0, 1, 0}) == Approx(4.0).margin(1e-12));
  }
}

TEST_CASE("handref int8 attention", "[handref]") {
  const int64_t B = 1, H = 2, M = 70, P = 80, E = 64, F = 16;
  Dense q = randomTensor({B, H, M, E}, 71);
  Dense k = randomTensor({B, H, P, E}, 72);
  Dense v = randomTensor({B, H, P, F}, 73);
  const double scale = 1.0 / std::sqrt(static_cast<double>(E));

  SECTION("close to float softmax attention") {
    SoftmaxOptions sopt;
    sopt.scale = scale;
    AttnOut ref = softmaxAttention(q, k, v, sopt);
    for (bool smooth : {true, false}) {
      INFO("smoothK = " << smooth);
      Int8Options iopt;
      iopt.scale = scale;
      iopt.smoothK = smooth;
      AttnOut out = int8Attention(q, k, v, iopt);
      CHECK(maxAbsDiff(out.o, ref.o) < 5e-2);
      if (!smooth) // smoothing shifts lse by scale * q·kbar
        CHECK(maxAbsDiff(out.lse, ref.lse) < 5e-2);
      // Quantization must actually perturb the result a little.
      CHECK(maxAbsDiff(out.o, ref.o) > 0);
    }
  }
  SECTION("K smoothing is a shift the float softmax ignores") {
    // kbar[e] = mean_p k[p,e]; k' = k - kbar.
    Dense shifted = k;
    for (int64_t h = 0; h < H; ++h)
      for (int64_t e = 0; e < E; ++e) {
        double kbar = 0;
        for (int64_t p = 0; p < P; ++p)
          kbar += k.at({0, h, p, e});
        kbar /= P;
        for (int64_t p = 0; p < P; ++p)
          shifted.at({0, h, p, e}) -= kbar;
      }
    SoftmaxOptions sopt;
    sopt.scale = scale;
    AttnOut a = softmaxAttention(q, k, v, sopt);
    AttnOut b = softmaxAttention(q, shifted, v, sopt);
    CHECK(maxAbsDiff(a.o, b.o) <= 1e-12);
    // The lse moves by exactly scale * q_m · kbar.
    for (int64_t h = 0; h < H; ++h)
      for (int64_t m = 0; m < M; ++m) {
        double qk = 0;
        for (int64_t e = 0; e < E; ++e)
          qk += q.at({0, h, m, e}) *
                (k.at({0, h, 0, e}) - shifted.at({0, h, 0, e}));
        CHECK(a.lse.at({0, h, m}) - b.lse.at({0, h, m}) ==
              Approx(scale * qk).margin(1e-12));
      }
  }
  SECTION("exactly representable inputs are quantized losslessly") {
    // Integers in [-127, 127] with a 127 in every block give scale 1 and
    // qi = q, so the int8 result equals the float one.
    Dense qi = randomTensor({1, 1, 8, 4}, 74, -127, 127);
    Dense ki = randomTensor({1, 1, 8, 4}, 75, -127, 127);
    for (double &x : qi.data)
      x = std::round(x);
    for (double &x : ki.data)
      x = std::round(x);
    qi.at({0, 0, 0, 0}) = 127;
    qi.at({0, 0, 4, 0}) = -127;
    ki.at({0, 0, 1, 1}) = 127;
    ki.at({0, 0, 5, 2}) = 127;
    Dense vi = randomTensor({1, 1, 8, 3}, 76);
    Int8Options iopt;
    iopt.blockQ = iopt.blockK = 4;
    iopt.smoothK = false;
    iopt.scale = 1e-3;
    SoftmaxOptions sopt;
    sopt.scale = 1e-3;
    AttnOut ref = softmaxAttention(qi, ki, vi, sopt);
    AttnOut out = int8Attention(qi, ki, vi, iopt);
    CHECK(maxAbsDiff(out.o, ref.o) <= 1e-12);
    CHECK(maxAbsDiff(out.lse, ref.lse) <= 1e-12);

    // Rows k0, -k0, k1, -k1, ... sum to exactly 0 in floating point (every
    // partial sum at an even row is 0), so smoothing changes nothing.
    Dense kz = zeros({1, 1, 8, 4});
    for (int64_t p = 0; p < 4; ++p)
      for (int64_t e = 0; e < 4; ++e) {
        kz.at({0, 0, 2 * p, e}) = k.at({0, 0, p, e});
        kz.at({0, 0, 2 * p + 1, e}) = -k.at({0, 0, p, e});
      }
    Int8Options smooth = iopt, plain = iopt;
    smooth.smoothK = true;
    AttnOut s1 = int8Attention(qi, kz, vi, smooth);
    AttnOut s2 = int8Attention(qi, kz, vi, plain);
    CHECK(maxAbsDiff(s1.o, s2.o) == 0);
    CHECK(maxAbsDiff(s1.lse, s2.lse) == 0);
  }
  SECTION("rounding is half to even") {
    // q = [127, x] gives sq = 1, k = [[0, 1]] gives sk = 1/127, ki = [0, 127],
    // so with P = 1: lse = s = 1 * (1/127) * 127 * round(x).
    Dense k1 = zeros({1, 1, 1, 2});
    k1.at({0, 0, 0, 1}) = 1;
    Dense v1 = zeros({1, 1, 1, 1});
    Int8Options iopt;
    iopt.smoothK = false;
    for (auto [x, rounded] : std::vector<std::pair<double, double>>{
             {2.5, 2}, {3.5, 4}, {-2.5, -2}, {-3.5, -4}, {2.4, 2}, {2.6, 3}}) {
      INFO("x = " << x);
      Dense q1 = zeros({1, 1, 1, 2});
      q1.at({0, 0, 0, 0}) = 127;
      q1.at({0, 0, 0, 1}) = x;
      AttnOut out = int8Attention(q1, k1, v1, iopt);
      CHECK(out.lse.at({0, 0, 0}) == Approx(rounded).margin(1e-12));
    }
  }
  SECTION("all-zero blocks use scale 1") {
    AttnOut out = int8Attention(zeros({1, 1, 3, 4}), zeros({1, 1, 5, 4}),
                                column({1, 2, 3, 4, 5}), Int8Options());
    for (int64_t m = 0; m < 3; ++m) {
      CHECK(out.o.at({0, 0, m, 0}) == Approx(3.0).margin(1e-12));
      CHECK(out.lse.at({0, 0, m}) == Approx(std::log(5.0)).margin(1e-12));
    }
  }
}

//===----------------------------------------------------------------------===//
// Variants
//===----------------------------------------------------------------------===//

TEST_CASE("handref PowerAttention mask", "[handref]") {
  // q = 0: every kept key has score 0, so lse = log(#kept) and o is the mean
  // of the kept values. Row 8 keeps d = 0, 1, 2, 4, 8: keys 8, 7, 6, 4, 0.
  Dense v = zeros({1, 1, 9, 1});
  for (int64_t p = 0; p < 9; ++p)
    v.at({0, 0, p, 0}) = std::ldexp(1.0, static_cast<int>(p)); // 2^p
  SoftmaxOptions opt;
  opt.mask = Mask::Power2;
  AttnOut out = softmaxAttention(zeros({1, 1, 9, 2}), zeros({1, 1, 9, 2}), v, opt);
  CHECK(out.lse.at({0, 0, 8}) == Approx(std::log(5.0)).epsilon(0).margin(1e-12));
  CHECK(out.o.at({0, 0, 8, 0}) ==
        Approx((256 + 128 + 64 + 16 + 1) / 5.0).epsilon(0).margin(1e-12));
  // Row 6 keeps d = 0, 1, 2, 4: keys 6, 5, 4, 2 (not 3, d = 3; not 0, d = 6).
  CHECK(out.o.at({0, 0, 6, 0}) == Approx((64 + 32 + 16 + 4) / 4.0).epsilon(0).margin(1e-12));
  // |m| > |p|: rows whose distances to keys 0, 1 are both not powers of two
  // (m = 6: d = 6, 5; m = 7: d = 7, 6) are empty.
  AttnOut wide = softmaxAttention(zeros({1, 1, 8, 2}), zeros({1, 1, 2, 2}),
                                  column({1, 2}), opt);
  for (int64_t m : {6, 7}) {
    CHECK(wide.lse.at({0, 0, m}) == -kInf);
    CHECK(wide.o.at({0, 0, m, 0}) == 0);
  }
  // Row 5 keeps key 1 only (d = 4), whose value is 2.
  CHECK(wide.o.at({0, 0, 5, 0}) == Approx(2.0).epsilon(0).margin(1e-12));
}

TEST_CASE("handref prefix-LM and document masks", "[handref]") {
  Dense q = randomTensor({2, 2, 9, 4}, 81);
  Dense k = randomTensor({2, 2, 9, 4}, 82);
  Dense v = randomTensor({2, 2, 9, 3}, 83);
  SoftmaxOptions plain, causal;
  causal.mask = Mask::CausalTopLeft;
  AttnOut full = softmaxAttention(q, k, v, plain);
  AttnOut tl = softmaxAttention(q, k, v, causal);

  SECTION("prefix 0 is causal, prefix >= P is full attention") {
    AttnOut out = prefixLMAttention(q, k, v, {0, 9}, 1.0);
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t m = 0; m < 9; ++m) {
        CHECK(out.lse.at({0, h, m}) == tl.lse.at({0, h, m}));
        CHECK(out.lse.at({1, h, m}) == full.lse.at({1, h, m}));
      }
  }
  SECTION("prefix rows see the whole prefix") {
    // With prefix 5, query 1 sees keys 0..4, the same as full attention
    // restricted to the first 5 keys.
    AttnOut out = prefixLMAttention(q, k, v, {5, 5}, 1.0);
    SoftmaxOptions first5;
    first5.keep = [](int64_t, int64_t, int64_t, int64_t p) { return p < 5; };
    AttnOut want = softmaxAttention(q, k, v, first5);
    for (int64_t m = 0; m < 5; ++m)
      CHECK(out.lse.at({1, 1, m}) == want.lse.at({1, 1, m}));
    for (int64_t m = 5; m < 9; ++m)
      CHECK(out.lse.at({1, 1, m}) == tl.lse.at({1, 1, m}));
  }
  SECTION("document mask") {
    // One document: full attention. Each token its own document: o = v.
    std::vector<int64_t> one(9, 7), own(9);
    for (int64_t i = 0; i < 9; ++i)
      own[i] = i;
    AttnOut same = documentMaskAttention(q, k, v, {one, one}, {one, one}, 1.0);
    CHECK(maxAbsDiff(same.o, full.o) == 0);
    AttnOut diag = documentMaskAttention(q, k, v, {own, own}, {own, own}, 1.0);
    CHECK(maxAbsDiff(diag.o, v) <= 1e-12);
    // A query id that no key carries: an empty row.
    std::vector<int64_t> padded = one;
    padded[4] = -1;
    AttnOut pad = documentMaskAttention(q, k, v, {padded, one}, {one, one}, 1.0);
    CHECK(pad.lse.at({0, 0, 4}) == -kInf);
    CHECK(pad.o.at({0, 1, 4, 2}) == 0);
    CHECK(pad.lse.at({0, 0, 3}) == full.lse.at({0, 0, 3}));
  }
}

TEST_CASE("handref varlen equals per-sequence attention", "[handref]") {
  // Token-major packed q [M, H, E] for sequences of 3 and 4 queries, 5 and 2
  // keys; one more query token is padding.
  const int64_t H = 2, E = 3, F = 2;
  Dense q = randomTensor({8, H, E}, 91), k = randomTensor({7, H, E}, 92),
        v = randomTensor({7, H, F}, 93);
  AttnOut out = varlenAttention(q, k, v, {0, 3, 7}, {0, 5, 7}, 0.7);
  // Sequence 1 as a batch of its own, in the [B, H, M, E] layout.
  Dense q1 = zeros({1, H, 4, E}), k1 = zeros({1, H, 2, E}),
        v1 = zeros({1, H, 2, F});
  for (int64_t h = 0; h < H; ++h) {
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t e = 0; e < E; ++e)
        q1.at({0, h, i, e}) = q.at({3 + i, h, e});
    for (int64_t j = 0; j < 2; ++j) {
      for (int64_t e = 0; e < E; ++e)
        k1.at({0, h, j, e}) = k.at({5 + j, h, e});
      for (int64_t f = 0; f < F; ++f)
        v1.at({0, h, j, f}) = v.at({5 + j, h, f});
    }
  }
  SoftmaxOptions opt;
  opt.scale = 0.7;
  AttnOut want = softmaxAttention(q1, k1, v1, opt);
  for (int64_t h = 0; h < H; ++h) {
    for (int64_t i = 0; i < 4; ++i) {
      CHECK(out.lse.at({h, 3 + i}) == want.lse.at({0, h, i}));
      for (int64_t f = 0; f < F; ++f)
        CHECK(out.o.at({3 + i, h, f}) == want.o.at({0, h, i, f}));
    }
    CHECK(out.lse.at({h, 7}) == -kInf); // padding
    CHECK(out.o.at({7, h, 1}) == 0);
  }
  // A sequence without keys leaves its queries empty.
  AttnOut empty = varlenAttention(q, k, v, {0, 3, 7}, {0, 5, 5}, 0.7);
  CHECK(empty.lse.at({1, 4}) == -kInf);
  CHECK(empty.lse.at({1, 2}) == out.lse.at({1, 2}));
}

TEST_CASE("handref paged KV cache with an identity table is contiguous KV",
          "[handref]") {
  // One sequence of 10 tokens on pages 0, 1, 2 of 4 slots, in order: the
  // cache is K itself, and the queries are the last 3 tokens.
  const int64_t G = 2, H = 4, E = 3, F = 2;
  Dense k = randomTensor({1, G, 10, E}, 101), v = randomTensor({1, G, 10, F}, 102);
  Dense q = randomTensor({1, H, 3, E}, 103);
  Dense kCache = zeros({3, 4, G, E}), vCache = zeros({3, 4, G, F});
  for (int64_t t = 0; t < 10; ++t)
    for (int64_t g = 0; g < G; ++g) {
      for (int64_t e = 0; e < E; ++e)
        kCache.at({t / 4, t % 4, g, e}) = k.at({0, g, t, e});
      for (int64_t f = 0; f < F; ++f)
        vCache.at({t / 4, t % 4, g, f}) = v.at({0, g, t, f});
    }
  AttnOut out = pagedAttention(q, kCache, vCache, {{0, 1, 2}}, {10}, 0.5);
  SoftmaxOptions opt;
  opt.scale = 0.5;
  opt.mask = Mask::CausalBottomRight;
  AttnOut want = softmaxAttention(q, k, v, opt);
  CHECK(maxAbsDiff(out.o, want.o) == 0);
  CHECK(maxAbsDiff(out.lse, want.lse) == 0);
  // The same tokens with the pages stored in reverse order.
  Dense kRev = zeros({3, 4, G, E}), vRev = zeros({3, 4, G, F});
  for (int64_t n = 0; n < 3; ++n)
    for (int64_t s = 0; s < 4; ++s)
      for (int64_t g = 0; g < G; ++g) {
        for (int64_t e = 0; e < E; ++e)
          kRev.at({2 - n, s, g, e}) = kCache.at({n, s, g, e});
        for (int64_t f = 0; f < F; ++f)
          vRev.at({2 - n, s, g, f}) = vCache.at({n, s, g, f});
      }
  AttnOut rev = pagedAttention(q, kRev, vRev, {{2, 1, 0}}, {10}, 0.5);
  CHECK(maxAbsDiff(rev.o, want.o) == 0);
  // Length 0: empty rows; length 1 < 3 queries: the first two rows empty.
  AttnOut none = pagedAttention(q, kCache, vCache, {{0, 1, 2}}, {0}, 0.5);
  CHECK(none.lse.at({0, 1, 2}) == -kInf);
  AttnOut one = pagedAttention(q, kCache, vCache, {{0, 1, 2}}, {1}, 0.5);
  CHECK(one.lse.at({0, 3, 1}) == -kInf);
  CHECK(one.o.at({0, 3, 2, 1}) == Approx(v.at({0, 1, 0, 1})).epsilon(0).margin(1e-12));
}

TEST_CASE("handref T5 relative position buckets", "[handref]") {
  // Values of T5's bucketing (32 buckets, max distance 128, bidirectional).
  const std::vector<std::pair<int64_t, int64_t>> known = {
      {0, 0},     {-1, 1},     {1, 17},    {-7, 7},    {7, 23},
      {-8, 8},    {-11, 8},    {-12, 9},   {-15, 9},   {-16, 10},
      {-22, 10},  {-23, 11},   {-32, 12},  {-45, 12},  {-46, 13},
      {-64, 14},  {-90, 14},   {-91, 15},  {-128, 15}, {-1000, 15},
      {8, 24},    {16, 26},    {64, 30},   {127, 31},  {5000, 31}};
  for (auto [rel, bucket] : known) {
    INFO("rel = " << rel);
    CHECK(attn::handref::t5RelativeBucket(rel) == bucket);
  }
  // The float formula of T5 (in float64, where it is exact at the edges).
  for (int64_t rel = -2000; rel <= 2000; ++rel) {
    int64_t n = rel < 0 ? -rel : rel;
    int64_t want = (rel > 0 ? 16 : 0) +
                   (n < 8 ? n
                          : std::min<int64_t>(
                                8 + static_cast<int64_t>(std::floor(
                                        std::log(n / 8.0) / std::log(16.0) * 8)),
                                15));
    INFO("rel = " << rel);
    REQUIRE(attn::handref::t5RelativeBucket(rel) == want);
  }
}

TEST_CASE("handref additive biases", "[handref]") {
  Dense q = randomTensor({1, 2, 5, 4}, 111), k = randomTensor({1, 2, 6, 4}, 112);
  Dense v = randomTensor({1, 2, 6, 3}, 113);
  AttnOut plain = softmaxAttention(q, k, v, SoftmaxOptions());
  SECTION("a zero low-rank factor is no bias") {
    Dense w = randomTensor({1, 2, 6, 3}, 114);
    AttnOut out = attn::handref::lowRankBiasAttention(q, k, v, zeros({1, 2, 5, 3}), w, 1.0);
    CHECK(maxAbsDiff(out.o, plain.o) == 0);
  }
  SECTION("a bias constant along p shifts only the LSE") {
    // u[m] = (m + 1, 0, 0), w[p] = (1, 0, 0): bias[m,p] = m + 1.
    Dense u = zeros({1, 2, 5, 3}), w = zeros({1, 2, 6, 3});
    for (int64_t h = 0; h < 2; ++h) {
      for (int64_t m = 0; m < 5; ++m)
        u.at({0, h, m, 0}) = static_cast<double>(m + 1);
      for (int64_t p = 0; p < 6; ++p)
        w.at({0, h, p, 0}) = 1;
    }
    AttnOut out = attn::handref::lowRankBiasAttention(q, k, v, u, w, 1.0);
    CHECK(maxAbsDiff(out.o, plain.o) <= 1e-12);
    for (int64_t m = 0; m < 5; ++m)
      CHECK(out.lse.at({0, 1, m}) ==
            Approx(plain.lse.at({0, 1, m}) + m + 1).epsilon(0).margin(1e-12));
  }
  SECTION("relative position bias: a table constant per head shifts the LSE") {
    Dense table = zeros({2, 32});
    for (int64_t r = 0; r < 32; ++r)
      table.at({1, r}) = 2.5;
    AttnOut out = attn::handref::relativePositionBiasAttention(q, k, v, table, 1.0);
    CHECK(maxAbsDiff(out.o, plain.o) <= 1e-12);
    CHECK(out.lse.at({0, 0, 3}) == plain.lse.at({0, 0, 3}));
    CHECK(out.lse.at({0, 1, 3}) == Approx(plain.lse.at({0, 1, 3}) + 2.5).epsilon(0).margin(1e-12));
  }
}

TEST_CASE("handref block-sparse layouts", "[handref]") {
  Dense q = randomTensor({1, 1, 7, 4}, 121), k = randomTensor({1, 1, 7, 4}, 122);
  Dense v = randomTensor({1, 1, 7, 3}, 123);
  auto csr = [](std::vector<double> offsets, std::vector<double> indices) {
    Dense o = zeros({1, 1, static_cast<int64_t>(offsets.size())});
    o.data = std::move(offsets);
    Dense i = zeros({1, 1, static_cast<int64_t>(indices.size())});
    i.data = std::move(indices);
    return std::make_pair(o, i);
  };
  // Blocks of 3: query blocks {0-2, 3-5, 6}, key blocks likewise.
  auto [allOff, allIdx] = csr({0, 3, 6, 9}, {0, 1, 2, 2, 1, 0, 1, 2, 0});
  AttnOut all = attn::handref::blockSparseAttention(q, k, v, allOff, allIdx, 3, 1.0);
  CHECK(maxAbsDiff(all.o, softmaxAttention(q, k, v, SoftmaxOptions()).o) == 0);
  // Block 1 lists nothing; block 2 lists key block 2 twice.
  auto [off, idx] = csr({0, 1, 1, 3}, {0, 2, 2});
  AttnOut out = attn::handref::blockSparseAttention(q, k, v, off, idx, 3, 1.0);
  CHECK(out.lse.at({0, 0, 4}) == -kInf);
  CHECK(out.o.at({0, 0, 6, 1}) == Approx(v.at({0, 0, 6, 1})).epsilon(0).margin(1e-12));
  // Blocks of 1 listing only the diagonal: o = v.
  auto [dOff, dIdx] = csr({0, 1, 2, 3, 4, 5, 6, 7}, {0, 1, 2, 3, 4, 5, 6});
  AttnOut diag = attn::handref::blockSparseAttention(q, k, v, dOff, dIdx, 1, 1.0);
  CHECK(maxAbsDiff(diag.o, v) <= 1e-12);
}

TEST_CASE("handref float8 e4m3 rounding", "[handref]") {
  using attn::handref::roundToE4M3;
  const std::vector<std::pair<double, double>> cases = {
      {0.0, 0.0},
      {1.0, 1.0},
      {1.0625, 1.0},       // tie between 1 and 1.125: to even (1)
      {1.1875, 1.25},      // tie between 1.125 and 1.25: to even (1.25)
      {1.07, 1.125},
      {-1.07, -1.125},
      {0.3, 0.3125},       // spacing 2^-5 in [0.25, 0.5)
      {448.0, 448.0},      // largest finite
      {440.0, 448.0},      // spacing 32 in [256, 448]
      {15.5, 16.0},        // rounds up into the next binade
      {std::ldexp(1.0, -6), std::ldexp(1.0, -6)},   // smallest normal
      {std::ldexp(1.0, -9), std::ldexp(1.0, -9)},   // smallest subnormal
      {std::ldexp(1.0, -10), 0.0},                  // tie between 0 and 2^-9
      {3 * std::ldexp(1.0, -10), std::ldexp(1.0, -8)}, // tie: to 2 * 2^-9
      {5 * std::ldexp(1.0, -10), std::ldexp(1.0, -8)}, // tie: to 2 * 2^-9
      {std::ldexp(1.0, -11), 0.0}};
  for (auto [x, want] : cases) {
    INFO("x = " << x);
    CHECK(roundToE4M3(x) == want);
  }
  CHECK_THROWS_AS(roundToE4M3(449.0), std::domain_error);
  // Exactly the e4m3 values are fixed points. They are multiples of 2^-9:
  // per sign, 7 subnormals, 14 full binades 2^-6 ... 2^7 of 8 values and
  // 256 ... 448 (7 values; 480 would be the NaN encoding); and 0.
  int64_t fixedPoints = 0;
  for (int64_t i = -448 * 512; i <= 448 * 512; ++i) {
    double x = i / 512.0;
    if (roundToE4M3(x) == x)
      ++fixedPoints;
  }
  CHECK(fixedPoints == 2 * (7 + 14 * 8 + 7) + 1);
}

TEST_CASE("handref FP8 attention with unit descales is softmax attention",
          "[handref]") {
  Dense q = randomTensor({1, 2, 4, 8}, 131, -4, 4), k = randomTensor({1, 2, 6, 8}, 132, -4, 4);
  Dense v = randomTensor({1, 2, 6, 3}, 133, -4, 4);
  for (Dense *t : {&q, &k, &v})
    for (double &x : t->data)
      x = attn::handref::roundToE4M3(x);
  Dense ones = zeros({1, 2});
  for (double &x : ones.data)
    x = 1;
  SoftmaxOptions opt;
  opt.scale = 0.25;
  AttnOut want = softmaxAttention(q, k, v, opt);
  AttnOut out = attn::handref::fp8Attention(q, k, v, ones, ones, ones, 0.25);
  CHECK(maxAbsDiff(out.o, want.o) <= 1e-12);
  CHECK(maxAbsDiff(out.lse, want.lse) <= 1e-12);
  // Descales: q_descale = 2 equals q * 2; v_descale = 3 scales O by 3.
  Dense two = ones, three = ones;
  for (double &x : two.data)
    x = 2;
  for (double &x : three.data)
    x = 3;
  Dense q2 = q;
  for (double &x : q2.data)
    x *= 2;
  AttnOut scaled = attn::handref::fp8Attention(q, k, v, two, ones, three, 0.25);
  AttnOut want2 = softmaxAttention(q2, k, v, opt);
  for (size_t i = 0; i < want2.o.data.size(); ++i)
    CHECK(scaled.o.data[i] == Approx(3 * want2.o.data[i]).epsilon(0).margin(1e-12));
  CHECK(maxAbsDiff(scaled.lse, want2.lse) <= 1e-12);
}

TEST_CASE("handref backward equals finite differences of the forward",
          "[handref]") {
  const int64_t B = 1, H = 2, M = 4, P = 5, E = 3, F = 2;
  const double scale = 0.6;
  Dense q = randomTensor({B, H, M, E}, 141), k = randomTensor({B, H, P, E}, 142);
  Dense v = randomTensor({B, H, P, F}, 143), dout = randomTensor({B, H, M, F}, 144);
  for (bool causal : {false, true}) {
    INFO("causal = " << causal);
    SoftmaxOptions opt;
    opt.scale = scale;
    opt.mask = causal ? Mask::CausalTopLeft : Mask::None;
    // L = sum dout * O
    auto loss = [&](const Dense &qq, const Dense &kk, const Dense &vv) {
      AttnOut out = softmaxAttention(qq, kk, vv, opt);
      double l = 0;
      for (size_t i = 0; i < out.o.data.size(); ++i)
        l += dout.data[i] * out.o.data[i];
      return l;
    };
    AttnGrads g = attn::handref::attentionBackward(q, k, v, dout, causal, scale);
    const double step = 1e-5;
    auto check = [&](Dense &x, const Dense &grad, int which) {
      for (size_t i = 0; i < x.data.size(); ++i) {
        const double saved = x.data[i];
        x.data[i] = saved + step;
        double up = which == 0 ? loss(x, k, v) : which == 1 ? loss(q, x, v) : loss(q, k, x);
        x.data[i] = saved - step;
        double down = which == 0 ? loss(x, k, v) : which == 1 ? loss(q, x, v) : loss(q, k, x);
        x.data[i] = saved;
        CHECK(grad.data[i] == Approx((up - down) / (2 * step)).epsilon(0).margin(1e-8));
      }
    };
    Dense qc = q, kc = k, vc = v;
    check(qc, g.dq, 0);
    check(kc, g.dk, 1);
    check(vc, g.dv, 2);
  }
  // Causal: key P - 1 > M - 1 is seen by no query, so its gradients are 0.
  AttnGrads g = attn::handref::attentionBackward(q, k, v, dout, true, scale);
  CHECK(g.dk.at({0, 1, 4, 2}) == 0);
  CHECK(g.dv.at({0, 1, 4, 1}) == 0);
}
