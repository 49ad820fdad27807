//===- HandReference.h - Naive float64 attention references -----*- C++ -*-===//
//
// This file declares hand-written, deliberately naive float64 reference
// implementations of softmax attention and its variants (masks, biases,
// varlen and paged layouts, FP8 inputs, the backward pass), linear and INT8
// (SageAttention-style) attention. They serve as an independent oracle for
// testing the cascade interpreter.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_TEST_UNIT_HANDREFERENCE_H
#define ATTN_TEST_UNIT_HANDREFERENCE_H

#include <cstdint>
#include <functional>
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
/// Power2: p <= m and m - p is 0 or a power of two (PowerAttention).
enum class Mask { None, CausalTopLeft, CausalBottomRight, SlidingWindow, Power2 };

/// A predicate or a value per score element (b, query head h, m, p).
using ScoreFn = std::function<double(int64_t b, int64_t h, int64_t m, int64_t p)>;
using KeepFn = std::function<bool(int64_t b, int64_t h, int64_t m, int64_t p)>;

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
  /// If set: score += bias(b, h, m, p), after alibi.
  ScoreFn bias;
  /// If set: key p is kept only if keep(b, h, m, p) also holds (in addition
  /// to `mask`).
  KeepFn keep;
};

/// Attention output and per-row log-sum-exp.
struct AttnOut {
  Dense o;   ///< [B, H, M, F]
  Dense lse; ///< [B, H, M]
};

/// Softmax attention. q [B,H,M,E], k [B,G,P,E], v [B,G,P,F] with H % G == 0;
/// query head h reads kv head h / (H/G).
///   s[m,p] = scale * sum_e q[m,e] k[p,e]; then softcap; then + alibi; then
///   + bias; then mask and keep (masked keys are excluded); then topk.
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

//===----------------------------------------------------------------------===//
// Variants (each one states its semantics with plain loops or through
// softmaxAttention on rearranged inputs; see HandReference.cpp)
//===----------------------------------------------------------------------===//

/// Prefix-LM: key p is visible to query m of batch b iff p < prefixLen[b] or
/// p <= m. q [B,H,M,E], k/v [B,H,P,*].
AttnOut prefixLMAttention(const Dense &q, const Dense &k, const Dense &v,
                          const std::vector<int64_t> &prefixLen, double scale);

/// Document mask: key p is visible to query m of batch b iff
/// segQ[b][m] == segK[b][p].
AttnOut documentMaskAttention(const Dense &q, const Dense &k, const Dense &v,
                              const std::vector<std::vector<int64_t>> &segQ,
                              const std::vector<std::vector<int64_t>> &segK,
                              double scale);

/// Packed variable-length batch: q [M,H,E], k [P,H,E], v [P,H,F] hold the
/// tokens of S = cuQ.size() - 1 sequences; sequence s owns queries
/// [cuQ[s], cuQ[s+1]) and keys [cuK[s], cuK[s+1]). Each sequence is attended
/// on its own (no mask inside it). Returns o [M,H,F] and lse [H,M]; tokens
/// outside every sequence, and sequences without keys, get o = 0, lse = -inf.
AttnOut varlenAttention(const Dense &q, const Dense &k, const Dense &v,
                        const std::vector<int64_t> &cuQ,
                        const std::vector<int64_t> &cuK, double scale);

/// Paged KV cache: kCache [N,S,G,E], vCache [N,S,G,F] hold pages of S = page
/// size tokens; sequence b's token t lives on page blockTable[b][t / S] at
/// slot t % S, for t < seqLens[b]. q [B,H,M,E] holds the last M tokens of
/// each sequence: they attend causally (bottom-right) to the sequence's
/// seqLens[b] tokens, with GQA (H % G == 0). Gathers each sequence into
/// contiguous K/V and calls softmaxAttention.
AttnOut pagedAttention(const Dense &q, const Dense &kCache, const Dense &vCache,
                       const std::vector<std::vector<int64_t>> &blockTable,
                       const std::vector<int64_t> &seqLens, double scale);

/// T5's bidirectional relative position bucket of rel = p - m with 32
/// buckets and max_distance 128, computed with integers only:
/// 16 * (rel > 0) + (n < 8 ? n : min(8 + k, 15)), n = |rel|, where k is the
/// largest integer with 64 * 2^k <= n^2 (= floor(2 * log2(n / 8))).
int64_t t5RelativeBucket(int64_t rel);

/// Scores + relBias[h][t5RelativeBucket(p - m)], relBias [H,32].
AttnOut relativePositionBiasAttention(const Dense &q, const Dense &k,
                                      const Dense &v, const Dense &relBias,
                                      double scale);

/// Scores + sum_r u[b,h,m,r] w[b,h,p,r] (a low-rank bias), u [B,H,M,R],
/// w [B,H,P,R].
AttnOut lowRankBiasAttention(const Dense &q, const Dense &k, const Dense &v,
                             const Dense &u, const Dense &w, double scale);

/// Block-sparse attention with a CSR layout per (b, h): query block
/// i = m / block sees the key blocks offsets[b,h,i] ... offsets[b,h,i+1]-1 of
/// indices [B,H,L] (key block j holds keys [j*block, (j+1)*block) within P).
AttnOut blockSparseAttention(const Dense &q, const Dense &k, const Dense &v,
                             const Dense &offsets, const Dense &indices,
                             int64_t block, double scale);

/// Rounds x to the nearest float8 e4m3 (FN: 4 exponent bits with bias 7,
/// 3 mantissa bits, subnormals down to 2^-9, largest finite 448, no
/// infinity), ties to even. |x| > 448 is outside its range: throws
/// std::domain_error. Written with frexp/ldexp, independently of APFloat.
double roundToE4M3(double x);

/// FP8 attention (FlashAttention-3 interface): q, k, v hold e4m3 values (not
/// rounded here), the descales are [B,H]:
///   s = scale * qDescale[b,h] * kDescale[b,h] * sum_e q k,
///   o = vDescale[b,h] * softmax(s) v.
AttnOut fp8Attention(const Dense &q, const Dense &k, const Dense &v,
                     const Dense &qDescale, const Dense &kDescale,
                     const Dense &vDescale, double scale);

/// Gradients of attention.
struct AttnGrads {
  Dense dq; ///< [B,H,M,E]
  Dense dk; ///< [B,H,P,E]
  Dense dv; ///< [B,H,P,F]
};

/// Backward of softmax attention (MHA, optionally top-left causal) for the
/// loss L = sum dout * O, derived by hand: with P the softmax probabilities
/// (recomputed here from q and k, with their own row max),
///   dV = P^T dO,  dP = dO V^T,  dS[m,p] = P[m,p] (dP[m,p] - sum_p' P[m,p'] dP[m,p']),
///   dQ = scale * dS K,  dK = scale * dS^T Q.
/// Rows without keys have P = 0.
AttnGrads attentionBackward(const Dense &q, const Dense &k, const Dense &v,
                            const Dense &dout, bool causal, double scale);

} // namespace handref
} // namespace attn

#endif // ATTN_TEST_UNIT_HANDREFERENCE_H
