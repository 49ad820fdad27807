//===- HandReference.h - Naive float64 attention references -----*- C++ -*-===//
//
// This file declares hand-written, deliberately naive float64 reference
// implementations of softmax, linear and INT8 (SageAttention-style) attention.
// They serve as an independent oracle for testing the cascade interpreter.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_TEST_UNIT_HANDREFERENCE_H
#define ATTN_TEST_UNIT_HANDREFERENCE_H

#include <cstdint>
#include <initializer_list>
#include <vector>

namespace attn {
namespace handref {

/// A dense row-major float64 tensor.
struct Dense {
  std::vector<int64_t> shape;
  std::vector<double> data;

  /// Returns the element at multi-index \p idx. Throws std::out_of_range if
  /// the rank or any index is wrong.
  double &at(std::initializer_list<int64_t> idx);
  double at(std::initializer_list<int64_t> idx) const;

  /// Returns the row-major flat offset of \p idx (bounds-checked).
  int64_t offset(std::initializer_list<int64_t> idx) const;
};

/// Returns the number of elements of a tensor with \p shape (1 for rank 0).
int64_t numElements(const std::vector<int64_t> &shape);

/// Returns a zero-filled tensor of \p shape.
Dense zeros(std::vector<int64_t> shape);

/// Returns a tensor of \p shape filled with deterministic pseudo-random values
/// in [lo, hi] (hi is reachable only through rounding). Uses std::mt19937_64
/// with a manual mapping to doubles so that the values are identical on every
/// platform.
Dense randomTensor(std::vector<int64_t> shape, uint64_t seed, double lo = -1,
                   double hi = 1);

/// Masking patterns for softmaxAttention (m = query index, p = key index).
enum class Mask { None, CausalTopLeft, CausalBottomRight, SlidingWindow };

/// Score modifications for softmaxAttention.
struct SoftmaxOptions {
  /// Multiplies q·k.
  double scale = 1.0;
  Mask mask = Mask::None;
  /// SlidingWindow: key p is kept iff m - windowLeft <= p <= m + windowRight
  /// (top-left aligned).
  int64_t windowLeft = 0, windowRight = 0;
  /// score += slope(h) * (p - m), slope(h) = 2^(-8*(h+1)/H), H = number of
  /// query heads.
  bool alibi = false;
  /// If > 0: score = softcap * tanh(score / softcap), applied after scale and
  /// before alibi and mask.
  double softcap = 0;
  /// If > 0: per query row keep only the topk largest (post-modification)
  /// scores among unmasked keys; ties keep every key whose score is >= the
  /// k-th largest value.
  int64_t topk = 0;
};

/// Attention output and per-row log-sum-exp.
struct AttnOut {
  Dense o;   ///< [B, H, M, F]
  Dense lse; ///< [B, H, M]
};

/// Softmax attention. q [B,H,M,E], k [B,G,P,E], v [B,G,P,F] with H % G == 0;
/// query head h reads kv head h / (H/G).
///   s[m,p] = scale * sum_e q[m,e] k[p,e]; then softcap; then + alibi; then
///   mask (masked keys are excluded); then topk.
///   o[m,f] = sum_p exp(s - max) v[p,f] / sum_p exp(s - max)
///   lse[m] = max + log(sum_p exp(s - max))
/// A row with no kept key gets o = 0 and lse = -infinity.
/// Throws std::invalid_argument on inconsistent shapes.
AttnOut softmaxAttention(const Dense &q, const Dense &k, const Dense &v,
                         const SoftmaxOptions &opt);

/// Linear attention with phi(x) = elu(x) + 1. q [B,H,M,E], k [B,H,P,E],
/// v [B,H,P,F]:
///   o[m,f] = sum_p (phi(q_m)·phi(k_p)) v[p,f] / sum_p (phi(q_m)·phi(k_p))
/// With \p causal only keys p <= m are used. A row with no keys gets o = 0.
Dense linearAttention(const Dense &q, const Dense &k, const Dense &v,
                      bool causal);

/// Options for int8Attention.
struct Int8Options {
  int64_t blockQ = 32, blockK = 32;
  bool smoothK = true;
  double scale = 1.0;
};

/// SageAttention-style attention: per-block symmetric INT8 quantization of Q
/// and (optionally mean-smoothed) K, an exact integer QK^T, then an exact
/// float64 softmax and PV. q [B,H,M,E], k [B,H,P,E], v [B,H,P,F].
AttnOut int8Attention(const Dense &q, const Dense &k, const Dense &v,
                      const Int8Options &opt);

} // namespace handref
} // namespace attn

#endif // ATTN_TEST_UNIT_HANDREFERENCE_H
