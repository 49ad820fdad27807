//===- MaskTiles.h - classifying masks for tile skipping --------*- C++ -*-===//
//
// A mask (the condition of the score Einsum, `else -inf`) is read conjunct by
// conjunct. For a tile of query rows and a tile of keys, each conjunct that
// is understood tells whether it holds for no pair of the two tiles (the
// key tile is empty for these rows), for every pair (full) or for some
// (partial); a tile is empty if one conjunct empties it, full if every
// conjunct keeps it whole. attn-sparsify reports this classification and
// records it on the Einsum (`attn.tiles`); attn-lower-cpu skips empty key
// tiles and evaluates the mask only in partial ones (docs/codegen.md, "Masks
// per tile"; docs/sparsify.md).
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_TRANSFORMS_MASKTILES_H
#define ATTN_TRANSFORMS_MASKTILES_H

#include "attn/Transforms/GlobalCascade.h"

#include "llvm/ADT/STLFunctionalExtras.h"

#include <vector>

namespace mlir::attn {

enum class MaskConjunctKind {
  /// `d + strict <= 0` affine in the key, row and fixed task ranks and the
  /// sizes (causal, window, bottom-right): key-tile loop bounds per row tile
  /// and a range of full tiles.
  Affine,
  /// `R == K` with R read at the row (no key rank) and K at the key (no row
  /// rank), from arguments only (segment ids): per tile min/max of both
  /// sides; empty when the ranges do not meet, full when both tiles hold
  /// one and the same value.
  SegmentIds,
  /// `sq[m] == sk[p]` where sq and sk count the cu_seqlens boundaries at or
  /// before the token (varlen): the key tiles of the sequences of the row
  /// tile's rows, as loop bounds.
  Varlen,
  /// `sq[m] < |n| - 1`: rows past the last boundary (padding) see nothing;
  /// read together with a Varlen conjunct.
  VarlenBound,
  /// An `or` of upper bounds on the key, each `p < X` or `p <= X` with X
  /// affine in the row (nondecreasing), the fixed task ranks and the sizes,
  /// or read from an argument at fixed task ranks (prefix-LM: `p <
  /// prefix_len[b] or p <= m`): the key loop ends after the largest bound of
  /// the task's last row; tiles below the smallest bound of its first row
  /// are full.
  Prefix,
  /// `D == 0 or pow(2, floor(log2(D))) == D` with the distance D = row -
  /// key (PowerAttention: a query sees the keys 0 or a power of two
  /// positions back): a key tile is visited only when the distances between
  /// its keys and the row tile's rows include 0 or a power of two; never
  /// full (the mask is evaluated in every visited tile).
  Power2,
  /// Anything else: evaluated per element in every tile.
  Element,
};

/// The spelling in `attn.tiles` and in remarks: affine, segment_ids, varlen,
/// varlen_bound, prefix, power2, element.
llvm::StringRef stringifyMaskConjunctKind(MaskConjunctKind k);
std::optional<MaskConjunctKind> symbolizeMaskConjunctKind(llvm::StringRef s);

/// The name of the annotation attn-sparsify writes on the score Einsum.
constexpr llvm::StringLiteral kTilesAttrName = "attn.tiles";

/// A sequence-id Einsum `s[x] = 1 sum(n) if (n >= 1 and cu[n] <= x)` (its
/// value at x is the number of boundaries s >= 1 at or before x).
struct SequenceId {
  unsigned einsum;
  unsigned cu;   // the boundaries: a cascade argument [n]
  unsigned n;    // the boundary rank
  /// The token position compared with the boundaries (`m`, or
  /// `p1 * 64 + p0` after attn-derive-online).
  AffineExpr pos;
};

struct MaskConjunct {
  ExprAttr expr;
  MaskConjunctKind kind = MaskConjunctKind::Element;
  /// Affine: the conjunct as `d + strict <= 0`.
  std::optional<AffineLeZero> affine;
  /// SegmentIds: the row side and the key side of the equality.
  ExprAttr rowSide, keySide;
  /// Varlen (both) and VarlenBound (row only): the sequence ids.
  std::optional<SequenceId> rowSeq, keySeq;
  /// Prefix: per disjunct, the key position (an index expression), the
  /// bound X and 1 for `<` (0 for `<=`): key <= X - strict.
  struct UpperBound {
    AffineExpr key;
    ExprAttr bound;
    int64_t strict = 0;
  };
  std::vector<UpperBound> upper;
  /// Power2: the key position in the distance D = row - key (an index
  /// expression linear in the key ranks, without constant).
  AffineExpr power2Key;
  /// Why an Element conjunct is not classified (for remarks).
  std::string why;
};

/// The ranks a classification is relative to: the row rank (query tiles),
/// the ranks whose values give the key position (p; or p, p1, p0 after
/// attn-derive-online), and the ranks fixed for a whole task (batch, head).
struct MaskRanks {
  int row = -1;
  llvm::SmallVector<unsigned> key;
  llvm::function_ref<bool(unsigned)> fixed;
};

/// Recognises `s[x..] = 1 sum(n) if (n >= 1 and cu[n] <= pos)` with pos
/// affine in the output ranks (conjuncts in any order, `cu[n] <= pos` also
/// as `pos >= cu[n]`).
std::optional<SequenceId> matchSequenceId(const GlobalCascade &gc, unsigned id);

/// The `attn.sparse` annotation of cascade argument `arg` (null if none).
SparseAttr argSparsity(CascadeOp cascade, unsigned arg);

/// Classifies every conjunct of `cond`.
llvm::SmallVector<MaskConjunct> classifyMask(const GlobalCascade &gc,
                                             ExprAttr cond,
                                             const MaskRanks &ranks);

} // namespace mlir::attn

#endif // ATTN_TRANSFORMS_MASKTILES_H
