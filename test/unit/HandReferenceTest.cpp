//===- HandReferenceTest.cpp - Self-checks of the hand references ---------===//
//
// This file implements self-checks for the naive float64 attention
// references: hand-computed examples, mask and GQA equivalences, and
// invariances that any correct implementation must satisfy.
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
