//===- LowerCPU.cpp - attn-lower-cpu ----------------------------------------===//
//
// Lowers an attn.cascade to a task function on memrefs:
//
//   func.func @<cascade>_tasks(%sizes: memref<?xi64>, %arg0: memref<...>, ...,
//                              %begin: index, %end: index)
//
// which runs the tasks [begin, end) of the decomposition planned by
// planCpuTasks (one task = one value of every task rank, with the row rank
// in tiles of `row-tile` rows). The runtime (lib/Runtime) validates the
// arguments, fills %sizes with the rank sizes and one presence flag per
// argument, and calls this function from its threads.
//
// Inside a task every Einsum of the cascade gets a buffer that holds the part
// of its result the task needs: its output ranks without the task ranks, the
// row rank as a tile of `row-tile`, and, for a cascade in the 1-pass form of
// attn-derive-online (a partition p -> p1, p0 and Einsums iterating p1), the
// key loop: an scf.for over p1 that evaluates the Einsums over p1 for one
// key tile. The running state of an iterative Einsum (`r[.., p1 + 1]`) lives
// in two slots, p1 mod 2 and (p1 + 1) mod 2, so that a read of the state
// before the step (`r[.., p1]`) after the update still sees the old value.
// Einsums are placed before the key loop (they read no running value), in it
// (they iterate p1) or after it (they read a final value `r[.., |p1|]`).
//
// Each Einsum is a loop nest over its ranks whose body evaluates the map
// expression with arith/math ops; the condition guards the point (an scf.if,
// so masked points load nothing), the reducer combines, and empty elements
// get the `else` value or the reducer's identity, as the dialect defines.
// With `vectorize`, Einsums of the shape of a matrix product (a sum of a
// product of two loads over one reduced rank) are emitted as register-tiled
// vector.fma micro-kernels (docs/codegen.md) and the other loops over the
// innermost dimension are vectorised.
//
//===----------------------------------------------------------------------===//

#include "attn/CodeGen/CPU.h"
#include "attn/Passes.h"
#include "attn/Transforms/GlobalCascade.h"
#include "attn/Transforms/MaskTiles.h"
#include "attn/Transforms/Products.h"
#include "passes/CpuPrologue.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Arith/Transforms/Passes.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Math/Transforms/Passes.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/ADT/SmallBitVector.h"
#include "llvm/ADT/StringSet.h"

#include <cmath>
#include <functional>

namespace mlir::attn {
#define GEN_PASS_DEF_ATTNLOWERCPUPASS
#include "passes/Passes.h.inc"

namespace {

//===----------------------------------------------------------------------===//
// Planning
//===----------------------------------------------------------------------===//

enum class Place { Pre, Loop, Post };

// Linear attention (passes/LowerCPULinear.inc).
struct LinearPlan;
struct LinearSource;
std::shared_ptr<LinearPlan> matchLinearAttention(GlobalCascade &gc,
                                                 std::string &why);
bool hasFeatureMap(CascadeOp cascade);
const SmallVector<int> &linearTaskRanks(const LinearPlan &plan);

/// The key loop of a cascade in 1-pass form: p -> p1, p0 with Einsums
/// iterating p1.
struct KeyLoop {
  int rank = -1, outer = -1, inner = -1;
  int64_t tile = 0;
  bool ragged = false;
};

/// Output ranks of an Einsum and whether it is iterative (along which).
struct OutInfo {
  SmallVector<unsigned> ranks;
  int iterative = -1;
};

OutInfo outInfo(const GEinsum &e) {
  OutInfo info;
  for (AffineExpr o : e.out) {
    if (auto add = dyn_cast<AffineBinaryOpExpr>(o)) {
      info.iterative = cast<AffineDimExpr>(add.getLHS()).getPosition();
      info.ranks.push_back(info.iterative);
      continue;
    }
    info.ranks.push_back(cast<AffineDimExpr>(o).getPosition());
  }
  return info;
}

/// Every rank whose value an Einsum uses (output ranks first, then the
/// others in global order).
SmallVector<unsigned> iteratedRanks(GlobalCascade &gc, const GEinsum &e) {
  llvm::SetVector<unsigned> out;
  for (unsigned r : outInfo(e).ranks)
    out.insert(r);
  llvm::SmallBitVector used(gc.numRanks());
  auto note = [&](ExprAttr x) {
    if (!x)
      return;
    walkExpr(x, [&](ExprAttr n) {
      if (n.getKind() == ExprKind::Index)
        n.getIndex().walk([&](AffineExpr s) {
          if (auto d = dyn_cast<AffineDimExpr>(s))
            used.set(d.getPosition());
        });
    });
  };
  note(e.expr);
  note(e.cond);
  for (unsigned g = 0; g < gc.numRanks(); ++g)
    if (used.test(g))
      out.insert(g);
  return SmallVector<unsigned>(out.begin(), out.end());
}

KeyLoop findKeyLoop(GlobalCascade &gc) {
  KeyLoop key;
  CascadeOp cascade = gc.getCascade();
  for (unsigned id : gc.body()) {
    int it = outInfo(gc.einsum(id)).iterative;
    if (it < 0)
      continue;
    for (auto part : cascade.getPartitions().getAsRange<PartitionAttr>()) {
      if (*gc.rankId(part.getOuter().getValue()) != unsigned(it))
        continue;
      key.rank = *gc.rankId(part.getRank().getValue());
      key.outer = it;
      key.inner = *gc.rankId(part.getInner().getValue());
      key.tile = part.getTile();
      key.ragged = part.getRagged();
      return key;
    }
  }
  return key;
}

/// Calls `fn` on every load of a cascade argument (a tensor, not an Einsum
/// result) in the map expression and the condition of `e`.
static bool loadUses(ExprAttr load, unsigned g);

void forEachTensorLoad(GlobalCascade &gc, const GEinsum &e,
                       function_ref<void(ExprAttr)> fn) {
  for (ExprAttr x : {e.expr, e.cond}) {
    if (!x)
      continue;
    walkExpr(x, [&](ExprAttr n) {
      if (n.getKind() == ExprKind::Load && n.getInput() >= 0 &&
          !gc.isEinsum(n.getInput()))
        fn(n);
    });
  }
}

/// True if a load index of any operand reading `keyRanks` also uses `g`.
bool indexesKeyOperands(GlobalCascade &gc, unsigned g,
                        ArrayRef<unsigned> keyRanks) {
  bool found = false;
  for (unsigned id : gc.body())
    forEachTensorLoad(gc, gc.einsum(id), [&](ExprAttr n) {
      bool key = false, uses = false;
      for (ExprAttr ix : n.getArgs()) {
        for (unsigned k : keyRanks)
          key |= usesRank(ix, k);
        uses |= usesRank(ix, g);
      }
      found |= key && uses;
    });
  return found;
}

FailureOr<CpuTaskPlan> planTasks(GlobalCascade &gc,
                                 const CpuLowerOptions &options,
                                 std::string &why) {
  CascadeOp cascade = gc.getCascade();
  unsigned declared = cascade.getRanks().size();
  CpuTaskPlan plan;
  if (gc.yields().empty()) {
    why = "the cascade yields nothing";
    return failure();
  }
  // Linear attention: one task per head (passes/LowerCPULinear.inc).
  std::string linearWhy;
  if (auto lp = matchLinearAttention(gc, linearWhy)) {
    plan.taskRanks = linearTaskRanks(*lp);
    return plan;
  }
  if (hasFeatureMap(cascade)) {
    why = "linear attention not in a form attn-reassociate writes (the "
          "quadratic form has no kernel): " + linearWhy;
    return failure();
  }
  // Task ranks: the dynamic ranks every result has.
  for (unsigned g = 0; g < declared; ++g) {
    if (gc.staticSize(g))
      continue;
    bool inAll = true;
    for (unsigned y : gc.yields()) {
      auto ranks = gc.valueRanks(y);
      inAll &= llvm::is_contained(ranks, g);
    }
    if (inAll)
      plan.taskRanks.push_back(g);
  }
  // The row rank: a task rank that indexes no operand the key ranks index
  // (the queries, not the heads or the batch); the last such in the first
  // result's order.
  KeyLoop key = findKeyLoop(gc);
  SmallVector<unsigned> keyRanks;
  if (key.rank >= 0)
    keyRanks = {unsigned(key.rank), unsigned(key.outer), unsigned(key.inner)};
  for (unsigned r : gc.valueRanks(gc.yields().front())) {
    if (!llvm::is_contained(plan.taskRanks, int(r)))
      continue;
    if (!keyRanks.empty() && indexesKeyOperands(gc, r, keyRanks))
      continue;
    plan.rowRank = r;
  }
  plan.rowTile = plan.rowRank >= 0 ? std::max<int64_t>(1, options.rowTile) : 1;
  return plan;
}

//===----------------------------------------------------------------------===//
// Code generation
//===----------------------------------------------------------------------===//

struct Buffer {
  Place place = Place::Pre;
  /// Global ranks of the buffer's dimensions (after the slot dimension of an
  /// iterative Einsum).
  SmallVector<unsigned> dims;
  SmallVector<int64_t> extents;
  bool iterative = false;
  Value mem;
};

class CpuLowering {
public:
  CpuLowering(CascadeOp cascade, const CpuLowerOptions &options)
      : cascade(cascade), gc(cascade), options(options),
        b(cascade->getContext()), loc(cascade.getLoc()) {}

  FailureOr<func::FuncOp> run();

private:
  // Planning.
  LogicalResult place();
  void findMask();
  bool isTaskFixed(unsigned g) const {
    return llvm::is_contained(plan.taskRanks, int(g)) && int(g) != plan.rowRank;
  }
  std::optional<int64_t> localExtent(unsigned g) const;

  // Helpers.
  Value cIndex(int64_t v) { return arith::ConstantIndexOp::create(b, loc, v); }
  Value cF32(double v) {
    return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(float(v)));
  }
  Value minIndex(Value a, Value c) { return arith::MinSIOp::create(b, loc, a, c); }
  /// NaN-propagating max/min as the interpreter computes them; the sign of
  /// a zero result is not specified (nsz: 3 AVX-512 instructions instead
  /// of 6).
  Value maxF(Value x, Value y) {
    return arith::MaximumFOp::create(b, loc, x, y, arith::FastMathFlags::nsz);
  }
  Value minF(Value x, Value y) {
    return arith::MinimumFOp::create(b, loc, x, y, arith::FastMathFlags::nsz);
  }
  Type shaped(Type elem, Value like);
  Value like(Value scalar, Value other);
  void unify(Value &x, Value &y);
  Value toF32(Value v);
  Value fromF32(Value v, Type t);
  Value asBool(Value v);
  Value asFloat(Value v);

  // Index and expression evaluation at the current point.
  Value emitAffine(AffineExpr e);
  Value emitIndexExpr(ExprAttr ix);
  Value emitExpr(ExprAttr e);
  Value emitLoad(ExprAttr load);
  /// The loaded element in its storage type.
  Value emitLoadRaw(ExprAttr load);
  /// A gathered index (`%t[.., %idx[..], ..]`): the value `ix` loads,
  /// clamped into dimension `pos` of `mem`.
  Value emitGatherIndex(ExprAttr ix, Value mem, unsigned pos);
  Value combine(Reducer r, Value acc, Value v);
  double identity(Reducer r) const;

  // Loop nests.
  void forRanks(ArrayRef<unsigned> ranks, function_ref<void()> body);
  SmallVector<Value> reduceOver(ArrayRef<unsigned> ranks, ValueRange init,
                                function_ref<SmallVector<Value>(ValueRange)> body);
  struct LoopRange {
    Value ub;
    Value base; // global value = base + iv (null: iv)
  };
  LoopRange rangeOf(unsigned g);

  void emitEinsum(unsigned id);
  bool vectorizable(unsigned id);
  /// True if vectors of `vector-width` rows tile the row tile.
  bool rowLanes() const {
    return options.vectorize && plan.rowRank >= 0 && options.vectorWidth >= 2 &&
           plan.rowTile % options.vectorWidth == 0;
  }
  void withLanes(function_ref<void()> body);
  void setLanes(Value base);
  void clearLanes();

  /// A sum over one rank k of A * B * scale into a buffer [i, row]: B is
  /// read as vectors along the row rank (a buffer [k, row], or a tensor
  /// packed per task into one), A as scalars; conditions free of k apply
  /// after the sum.
  struct Contraction {
    ExprAttr a, b, post;
    double scale = 1.0;
    unsigned i = 0, k = 0;
    int pack = -1;
    /// BF16 pair dot products: B is read from a bf16 buffer [k / 2, 2 *
    /// row] holding B[2 kp, row] and B[2 kp + 1, row] side by side: the
    /// pack, or (B an Einsum's buffer) pairBuffers[pairBuf].
    bool pairs = false;
    int pairBuf = -1;
    /// A (a bf16 tensor whose pairs along k are not adjacent, V in P V)
    /// copied per contraction into aPairBuffers[aPairBuf]: [k / 2, 2 * i]
    /// bf16, A[2 kp, i] and A[2 kp + 1, i] side by side, so that a pair is
    /// one 32-bit load. Done when A's innermost stride is 1 (run time).
    int aPairBuf = -1;
    /// INT8 dot products (vpdpbusd): A and B int8 tensors, B packed as
    /// quads [k / 4, 4 * row] with the sum of each row's values.
    bool quads = false;
  };
  struct APairBuffer {
    int64_t kExtent, iExtent;
    Value mem;
  };
  SmallVector<APairBuffer> aPairBuffers;
  struct Pack {
    unsigned einsum;
    ExprAttr load;
    unsigned k;
    Value mem;
    /// The contraction's constant factor, applied once here.
    double scale = 1.0;
    /// Stored as bf16 pairs along k (Contraction::pairs).
    bool pairs = false;
    /// Stored as int8 quads along k, and `sum` [row] (i32) of each row's
    /// values (Contraction::quads).
    bool quads = false;
    Value sum;
  };
  /// The bf16 pair copy of an Einsum's buffer [k, row], refilled before
  /// each contraction that reads it.
  struct PairBuffer {
    unsigned src;
    int64_t kExtent;
    Value mem;
  };
  SmallVector<PairBuffer> pairBuffers;
  bool pairable(const Contraction &c);
  bool quadable(const Contraction &c);
  void emitPairCopy(const Contraction &c, Value kExt);
  Value pairWideGuard(const Contraction &c);
  Value pairLoadWide(ExprAttr load, int64_t w);
  SmallVector<Value> argIndices(ExprAttr load);
  void emitAPairCopy(const Contraction &c, Value kExt);
  void emitPairLoop(Value kExt, Value jEnd, int64_t jStep,
                    function_ref<Value(Value, Value)> row,
                    function_ref<void(Value, Value, Value)> store);
  std::optional<Contraction> matchContraction(unsigned id);
  void emitContraction(unsigned id, const Contraction &c);

  // Fusions (docs/codegen.md, "Fusion"): an Einsum emitted inside the loop
  // nest of another instead of as a pass of its own.
  void matchFusions();
  /// A reduction over the rows of its producer's buffer [k, row], computed
  /// while the producer is: consumer -> producer.
  llvm::DenseMap<unsigned, unsigned> reductionOf;
  /// Running state R[p1 + 1] = R[p1] * C + L with L a contraction: the
  /// micro-kernel of L starts from R[p1] * C and stores into R[p1 + 1].
  struct Accumulate {
    unsigned state;
    ExprAttr old, corr;
  };
  llvm::DenseMap<unsigned, Accumulate> accumulates; // keyed by L
  /// Einsums emitted by another one's loop nest.
  llvm::DenseSet<unsigned> fused;
  /// The consumer fused into producer `id`, or -1.
  int fusedReduction(unsigned id) const {
    for (auto [c, p] : reductionOf)
      if (p == id)
        return int(c);
    return -1;
  }
  /// The value of a reducer-free Einsum at the current point (vector lanes
  /// or scalar): the condition selects the else value.
  Value emitMapValue(const GEinsum &e, bool vec);
  void emitFusedReduction(unsigned producer, unsigned consumer);
  void emitPack(Pack &p);
  llvm::DenseMap<unsigned, Contraction> contractions;
  SmallVector<Pack> packs;
  void emitInitState(unsigned id);
  void emitCopyOut(unsigned result, Value present);
  Value slotIndex(Value step);

  bool fail(Location l, const Twine &msg) {
    if (!hadError)
      emitError(l) << msg;
    hadError = true;
    return false;
  }

  CascadeOp cascade;
  GlobalCascade gc;
  CpuLowerOptions options;
  OpBuilder b;
  Location loc;
  CpuTaskPlan plan;
  KeyLoop key;
  bool hadError = false;

  llvm::DenseMap<unsigned, Buffer> buffers;
  SmallVector<unsigned> pre, loop, post;

  // Values during code generation.
  SmallVector<Value> rankSize;         // per global rank
  llvm::DenseMap<unsigned, Value> rankValue; // global value of a rank
  llvm::DenseMap<unsigned, Value> rankLocal; // index within the buffer
  SmallVector<Value> argMems;
  /// bf16 arguments: the memref recast with a static unit innermost stride,
  /// and whether the argument's innermost stride is 1 (the recast is used
  /// only where it is; see pairLoadWide).
  llvm::DenseMap<unsigned, std::pair<Value, Value>> argUnitInner;
  Value rowBase, rowValid, keyValid, keyStep, keyBegin, keyEnd;
  /// Key tiles [fullBegin, fullEnd) that the mask keeps entirely for every
  /// row of the task (the mask is not evaluated there), and whether the
  /// current key tile is partial (null: no such mask).
  Value fullBegin, fullEnd, keyPartial;
  /// The Einsum whose masked points (else -inf) every Einsum over the key
  /// tile depends on: key tiles it masks entirely are skipped. -1: none.
  int maskId = -1;
  std::pair<Value, Value> keyTileRange();

  // Masks from runtime metadata (docs/codegen.md, "Masks per tile").
  /// The conjuncts of the mask's condition as classified by classifyMask
  /// (and attn-sparsify's `attn.tiles`, which may keep any per element).
  SmallVector<MaskConjunct> maskConjuncts;
  /// Segment-id conjuncts: their index in maskConjuncts and the range
  /// [min, max] of the row side over the rows of the task.
  struct SegmentRange {
    unsigned conjunct;
    Value lo, hi;
  };
  SmallVector<SegmentRange> segments;
  /// Power2 conjuncts (PowerAttention): a key tile is visited only when the
  /// distances from the task's rows to its keys include 0 or a power of two.
  SmallVector<unsigned> power2s;
  /// Classifies the current key tile from the key sides of the segment-id
  /// conjuncts and the distances of the power2 ones: (kept, full).
  std::pair<Value, Value> classifyKeyTile();
  /// [min, max] of `side` over the rank's values in the tile, as f32.
  SmallVector<Value> rangeOver(unsigned rank, ExprAttr side);
  /// Argument loads along the rows in the mask (a query's segment id): copied
  /// once per task into a buffer of row-tile entries, so that the
  /// micro-kernel's masked epilogue reads them as vectors.
  struct RowPack {
    ExprAttr load;
    unsigned einsum;
    Value mem;
  };
  SmallVector<RowPack> rowPacks;
  bool rowPackable(ExprAttr load) const;
  Value rowPackedLoad(ExprAttr load);
  void emitRowPacks();
  /// Einsums over the key tile that only the mask's condition reads (a key's
  /// sequence id): computed only in partial tiles.
  llvm::DenseSet<unsigned> maskOnly;
  /// Emits the Einsums of the key loop for the tile `tile`, with `step` the
  /// running-state step (the tile itself, or the count of tiles processed).
  void emitKeyTile(Value tile, Value step, Value notFull = Value());
  unsigned currentId = 0;
  /// Vector lanes along the row rank in the Einsum being emitted (0: scalar).
  int64_t lanes = 0;

  // Linear attention (passes/LowerCPULinear.inc, docs/codegen.md "Linear
  // attention"): one task per head, states shared by its rows.
  std::shared_ptr<LinearPlan> linear;
  /// Values that loads of these Einsums read instead of their buffers.
  llvm::DenseMap<unsigned, Value> loadOverride;
  void emitLinear(Value begin, Value end, ArrayRef<Value> present);
  Value emitLinearSource(const LinearSource &s);
  /// C[i, :] (+)= sum_k A(i, k) B[k, :] for i < mExt, k < kExt over the n
  /// columns of C and B (a multiple of the vector width).
  void emitLinearGemm(Value cMem, Value bMem, int64_t n, Value mExt, Value kExt,
                      bool accumulate, function_ref<Value(Value, Value)> aAt,
                      function_ref<Value(Value, Value, Value)> epilogue = {});
};

std::optional<int64_t> CpuLowering::localExtent(unsigned g) const {
  if (int(g) == plan.rowRank)
    return plan.rowTile;
  if (int(g) == key.inner)
    return key.tile;
  if (auto s = gc.staticSize(g))
    return *s;
  return std::nullopt;
}

LogicalResult CpuLowering::place() {
  std::string why;
  auto p = planTasks(gc, options, why);
  if (failed(p))
    return emitError(loc) << "attn-lower-cpu: " << why;
  plan = *p;
  std::string linearWhy;
  if ((linear = matchLinearAttention(gc, linearWhy)))
    return success();
  key = findKeyLoop(gc);

  for (unsigned id : gc.body()) {
    GEinsum &e = gc.einsum(id);
    OutInfo out = outInfo(e);
    Buffer buf;
    buf.iterative = out.iterative >= 0;
    if (buf.iterative && out.iterative != key.outer)
      return emitError(e.loc) << "attn-lower-cpu: '" << e.name
                              << "' iterates a rank that is not the key tile "
                                 "loop of a partition";
    bool inLoop = key.outer >= 0 && llvm::is_contained(out.ranks, key.outer);
    bool readsLoop = false, readsFinal = false, readsPost = false;
    auto visit = [&](ExprAttr x) {
      if (!x)
        return;
      walkExpr(x, [&](ExprAttr n) {
        if (n.getKind() != ExprKind::Load || n.getInput() < 0 ||
            !gc.isEinsum(n.getInput()))
          return;
        const Buffer &src = buffers[n.getInput()];
        if (src.place == Place::Post)
          readsPost = true;
        if (src.place == Place::Loop) {
          readsLoop = true;
          if (src.iterative)
            for (ExprAttr ix : n.getArgs())
              if (ix.getKind() == ExprKind::Index &&
                  ix.getIndex() == gc.sym(key.outer))
                readsFinal = true;
        }
      });
    };
    visit(e.expr);
    visit(e.cond);
    if (inLoop)
      buf.place = Place::Loop;
    else if (readsFinal || readsPost)
      buf.place = Place::Post;
    else if (readsLoop)
      return emitError(e.loc)
             << "attn-lower-cpu: '" << e.name
             << "' reads a value of the key loop without iterating it";
    else
      buf.place = Place::Pre;

    for (unsigned r : out.ranks) {
      if (isTaskFixed(r) || int(r) == key.outer)
        continue;
      std::optional<int64_t> ext = localExtent(r);
      if (!ext)
        return emitError(e.loc)
               << "attn-lower-cpu: '" << e.name << "' has the rank "
               << gc.rankName(r)
               << " of dynamic size in its result but not among the task "
                  "ranks; not supported yet";
      if (int(r) == key.inner && buf.place != Place::Loop)
        return emitError(e.loc) << "attn-lower-cpu: '" << e.name
                                << "' iterates the key tile rank outside "
                                   "the key loop";
      buf.dims.push_back(r);
      buf.extents.push_back(*ext);
    }
    // The row rank is the innermost dimension of every buffer: vectors run
    // across query rows (docs/codegen.md).
    for (unsigned k = 0; k + 1 < buf.dims.size(); ++k)
      if (int(buf.dims[k]) == plan.rowRank) {
        buf.dims.push_back(buf.dims[k]);
        buf.extents.push_back(buf.extents[k]);
        buf.dims.erase(buf.dims.begin() + k);
        buf.extents.erase(buf.extents.begin() + k);
        break;
      }
    if (e.topk)
      return emitError(e.loc)
             << "attn-lower-cpu: top-k populate actions are not supported "
                "yet";
    // Gathers (an index loaded from a tensor or an Einsum) are supported
    // into cascade arguments, one level deep, on the scalar path.
    auto checkGathers = [&](ExprAttr x) -> bool {
      bool ok = true;
      if (x)
        walkExpr(x, [&](ExprAttr n) {
          if (n.getKind() != ExprKind::Load)
            return;
          bool intoArg = n.getInput() >= 0 && !gc.isEinsum(n.getInput());
          for (ExprAttr ix : n.getArgs()) {
            if (ix.getKind() == ExprKind::Index)
              continue;
            ok &= intoArg && ix.getKind() == ExprKind::Load &&
                  llvm::all_of(ix.getArgs(), [](ExprAttr a) {
                    return a.getKind() == ExprKind::Index;
                  });
          }
        });
      return ok;
    };
    if (!checkGathers(e.expr) || !checkGathers(e.cond))
      return emitError(e.loc) << "attn-lower-cpu: '" << e.name
                              << "' gathers from an Einsum's result or through "
                                 "a computed index; only gathers into "
                                 "arguments by a loaded index are supported";
    buffers[id] = buf;
    (buf.place == Place::Pre    ? pre
     : buf.place == Place::Loop ? loop
                                : post)
        .push_back(id);
  }
  for (unsigned y : gc.yields()) {
    if (!gc.isEinsum(y))
      return emitError(loc) << "attn-lower-cpu: a result that is an argument "
                               "is not supported";
    if (buffers[y].place == Place::Loop)
      return emitError(gc.einsum(y).loc)
             << "attn-lower-cpu: a result computed inside the key loop";
  }
  // Arguments read along the rows by vector loops (per-row scales and
  // terms of quantized scores: `dot * sq_m[b, h, m] + qk_smooth[b, h, m]`)
  // are packed per task, then read as vectors (vectorizable).
  if (rowLanes())
    for (unsigned id : gc.body()) {
      const Buffer &buf = buffers[id];
      if (buf.dims.empty() || int(buf.dims.back()) != plan.rowRank)
        continue;
      SmallVector<ExprAttr> along;
      bool other = false;
      forEachTensorLoad(gc, gc.einsum(id), [&](ExprAttr n) {
        if (!loadUses(n, plan.rowRank))
          return;
        if (rowPackable(n))
          along.push_back(n);
        else
          other = true;
      });
      if (other)
        continue;
      for (ExprAttr n : along)
        if (llvm::none_of(rowPacks,
                          [&](const RowPack &p) { return p.load == n; }))
          rowPacks.push_back({n, id, Value()});
    }
  for (unsigned id : gc.body())
    if (auto c = matchContraction(id))
      contractions[id] = *c;
  matchFusions();
  findMask();
  return success();
}

/// `load` reads Einsum `src` at its own ranks (the reader's point).
/// (For an iterative Einsum: the value before the step, `r[.., p1]`.)
/// A load of the reader's own running state has no input id: pass the
/// reader as `self`.
static bool readsAtOwnPoint(GlobalCascade &gc, ExprAttr load, unsigned src,
                            int self = -1) {
  if (load.getKind() != ExprKind::Load)
    return false;
  int64_t in = load.getInput() < 0 ? self : load.getInput();
  if (in != int64_t(src))
    return false;
  SmallVector<unsigned> ranks = gc.valueRanks(src);
  for (auto [ix, r] : llvm::zip(load.getArgs(), ranks)) {
    if (ix.getKind() != ExprKind::Index)
      return false;
    if (ix.getIndex() != gc.dim(r))
      return false;
  }
  return true;
}

void CpuLowering::matchFusions() {
  if (!rowLanes())
    return;
  unsigned row = plan.rowRank;
  // Readers of every Einsum (loads in expressions and conditions).
  llvm::DenseMap<unsigned, SmallVector<unsigned>> readers;
  for (unsigned id : gc.body())
    for (unsigned src : gc.operandsOf(id))
      if (gc.isEinsum(src))
        readers[src].push_back(id);
  auto position = [&](unsigned id) {
    auto it = llvm::find(loop, id);
    return it == loop.end() ? -1 : int(it - loop.begin());
  };

  // 1. R[p1 + 1] = R[p1] * C + L (any operand order), L a contraction read
  //    only here, C computed before L and free of L's ranks.
  for (unsigned id : loop) {
    const GEinsum &e = gc.einsum(id);
    const Buffer &buf = buffers[id];
    if (!buf.iterative || e.reducer != Reducer::None || e.cond ||
        e.expr.getKind() != ExprKind::Add)
      continue;
    for (int side = 0; side < 2; ++side) {
      ExprAttr l = e.expr.getArgs()[side], prod = e.expr.getArgs()[1 - side];
      if (l.getKind() != ExprKind::Load || l.getInput() < 0 ||
          !gc.isEinsum(l.getInput()) || prod.getKind() != ExprKind::Mul)
        continue;
      unsigned lid = l.getInput();
      auto c = contractions.find(lid);
      if (c == contractions.end() || c->second.scale != 1.0 || c->second.post ||
          c->second.quads ||
          accumulates.count(lid) || readers[lid].size() != 1 ||
          llvm::is_contained(gc.yields(), lid) ||
          buffers[lid].dims != buf.dims ||
          !readsAtOwnPoint(gc, l, lid))
        continue;
      for (int f = 0; f < 2; ++f) {
        ExprAttr old = prod.getArgs()[f], corr = prod.getArgs()[1 - f];
        if (!readsAtOwnPoint(gc, old, id, int(id)))
          continue;
        bool ok = !usesRank(corr, c->second.i) && !usesRank(corr, c->second.k);
        walkExpr(corr, [&](ExprAttr n) {
          if (n.getKind() != ExprKind::Load)
            return;
          int64_t src = n.getInput() < 0 ? id : n.getInput();
          if (!gc.isEinsum(src))
            return;
          // Computed before L's micro-kernel runs, and not this state.
          if (src == id || (position(src) >= 0 && position(src) > position(lid)))
            ok = false;
          if (buffers[src].iterative)
            ok = false;
        });
        if (!ok)
          continue;
        accumulates[lid] = {id, old, corr};
        fused.insert(id);
        break;
      }
      if (fused.contains(id))
        break;
    }
  }

  // 2. Y[row] = reduce(k) X[k, row], X a contraction over (i = k) or a
  //    vector loop: Y is reduced while X is computed.
  for (unsigned id : loop) {
    const GEinsum &e = gc.einsum(id);
    const Buffer &buf = buffers[id];
    if (buf.iterative || e.cond || e.fill ||
        (e.reducer != Reducer::Max && e.reducer != Reducer::Sum) ||
        buf.dims.size() != 1 || buf.dims[0] != row ||
        e.expr.getKind() != ExprKind::Load || e.expr.getInput() < 0 ||
        !gc.isEinsum(e.expr.getInput()))
      continue;
    unsigned x = e.expr.getInput();
    const Buffer &xb = buffers[x];
    if (xb.place != Place::Loop || xb.iterative || xb.dims.size() != 2 ||
        xb.dims[1] != row || fusedReduction(x) >= 0 || accumulates.count(x) ||
        !readsAtOwnPoint(gc, e.expr, x))
      continue;
    unsigned k = xb.dims[0];
    if (auto c = contractions.find(x); c != contractions.end()) {
      if (c->second.i != k)
        continue;
    } else if (gc.einsum(x).reducer != Reducer::None || !vectorizable(x)) {
      continue;
    }
    reductionOf[id] = x;
    fused.insert(id);
  }
}

void CpuLowering::findMask() {
  if (key.inner < 0)
    return;
  // Einsums iterating the key tile rank, and what they depend on.
  llvm::DenseMap<unsigned, llvm::DenseSet<unsigned>> deps;
  SmallVector<unsigned> tiled;
  for (unsigned id : loop) {
    auto &d = deps[id];
    for (unsigned src : gc.operandsOf(id)) {
      d.insert(src);
      if (deps.count(src))
        d.insert(deps[src].begin(), deps[src].end());
    }
    if (llvm::is_contained(iteratedRanks(gc, gc.einsum(id)), unsigned(key.inner)))
      tiled.push_back(id);
  }
  for (unsigned m : tiled) {
    const GEinsum &e = gc.einsum(m);
    if (!e.cond || !e.fill || *e.fill != -INFINITY)
      continue;
    // Einsums the mask reads (a key's sequence id) may be skipped with it
    // when nothing else reads them.
    auto feedsOnlyMask = [&](unsigned id) {
      if (!deps[m].contains(id))
        return false;
      for (unsigned other : gc.body())
        if (other != m && !deps[m].contains(other) &&
            llvm::is_contained(gc.operandsOf(other), id))
          return false;
      return true;
    };
    bool all = llvm::all_of(tiled, [&](unsigned id) {
      return id == m || deps[id].contains(m) || feedsOnlyMask(id);
    });
    if (all) {
      maskId = m;
      break;
    }
  }
  if (maskId < 0 || plan.rowRank < 0)
    return;
  // Classify the conjuncts of the mask (include/attn/Transforms/MaskTiles.h).
  const GEinsum &e = gc.einsum(maskId);
  auto fixed = [&](unsigned g) { return isTaskFixed(g); };
  MaskRanks ranks;
  ranks.row = plan.rowRank;
  ranks.key = {unsigned(key.rank), unsigned(key.outer), unsigned(key.inner)};
  ranks.fixed = fixed;
  maskConjuncts = classifyMask(gc, e.cond, ranks);
  // attn-sparsify's record: a conjunct it keeps per element stays so; any
  // other class must be the one read here.
  for (NamedAttribute a : e.attrs) {
    if (a.getName() != kTilesAttrName)
      continue;
    auto list = dyn_cast<ArrayAttr>(a.getValue());
    if (!list || list.size() != maskConjuncts.size()) {
      fail(e.loc, "attn-lower-cpu: '" + e.name + "' has an attn.tiles "
                  "annotation that does not list one class per conjunct");
      return;
    }
    for (auto [mc, attr] : llvm::zip(maskConjuncts, list)) {
      auto str = dyn_cast<StringAttr>(attr);
      std::optional<MaskConjunctKind> k =
          str ? symbolizeMaskConjunctKind(str.getValue()) : std::nullopt;
      if (k == MaskConjunctKind::Element) {
        mc.kind = MaskConjunctKind::Element;
        continue;
      }
      if (k != mc.kind) {
        fail(e.loc, "attn-lower-cpu: attn.tiles of '" + e.name + "' says " +
                        (str ? "'" + str.getValue().str() + "'" : "?") +
                        " for a conjunct the lowering reads as '" +
                        stringifyMaskConjunctKind(mc.kind).str() + "'");
        return;
      }
    }
  }
  // A segment-id conjunct needs per-tile ranges of its key side; a varlen
  // bound without its equality is evaluated per element.
  for (auto [i, mc] : llvm::enumerate(maskConjuncts)) {
    if (mc.kind == MaskConjunctKind::SegmentIds)
      segments.push_back({unsigned(i), Value(), Value()});
    if (mc.kind != MaskConjunctKind::Power2)
      continue;
    // The key position must be the tile's (p1 * T + p0) or the key rank.
    SmallVector<int64_t> co(gc.numRanks(), 0);
    bool known = linearDimCoefficients(mc.power2Key, 1, co) &&
                 ((co[key.inner] == 1 && co[key.outer] == key.tile &&
                   co[key.rank] == 0) ||
                  (co[key.rank] == 1 && co[key.inner] == 0 &&
                   co[key.outer] == 0));
    if (known)
      power2s.push_back(unsigned(i));
    else
      mc.kind = MaskConjunctKind::Element;
  }
  // Einsums of the key loop read only by the mask's condition, when the
  // mask is a contraction whose condition is evaluated in its epilogue.
  auto c = contractions.find(unsigned(maskId));
  if (c == contractions.end() || !c->second.post)
    return;
  for (unsigned id : loop) {
    if (id == unsigned(maskId) || buffers[id].iterative || fused.contains(id) ||
        contractions.count(id) || fusedReduction(id) >= 0 ||
        llvm::is_contained(gc.yields(), id))
      continue;
    bool onlyMask = true, read = false;
    for (unsigned other : gc.body()) {
      const GEinsum &o = gc.einsum(other);
      auto loads = [&](ExprAttr x) {
        bool found = false;
        if (x)
          walkExpr(x, [&](ExprAttr n) {
            found |= n.getKind() == ExprKind::Load && n.getInput() == int64_t(id);
          });
        return found;
      };
      if (other == unsigned(maskId)) {
        onlyMask &= !loads(o.expr);
        read |= loads(o.cond);
      } else {
        onlyMask &= !loads(o.expr) && !loads(o.cond);
      }
    }
    if (onlyMask && read)
      maskOnly.insert(id);
  }
}

bool CpuLowering::rowPackable(ExprAttr load) const {
  if (load.getInput() < 0 || gc.isEinsum(load.getInput()) || plan.rowRank < 0)
    return false;
  for (ExprAttr ix : load.getArgs()) {
    if (ix.getKind() != ExprKind::Index)
      return false;
    for (unsigned g = 0; g < gc.numRanks(); ++g)
      if (usesRank(ix, g) && int(g) != plan.rowRank && !isTaskFixed(g))
        return false;
  }
  return true;
}

Value CpuLowering::rowPackedLoad(ExprAttr load) {
  for (const RowPack &p : rowPacks) {
    if (p.load != load || !p.mem)
      continue;
    Type elem = cast<MemRefType>(p.mem.getType()).getElementType();
    return vector::LoadOp::create(b, loc, VectorType::get({lanes}, elem), p.mem,
                                  ValueRange{rankLocal.lookup(plan.rowRank)});
  }
  return Value();
}

void CpuLowering::emitRowPacks() {
  for (RowPack &p : rowPacks) {
    // Rows past the task's last valid row repeat it (read, never used).
    auto l = scf::ForOp::create(b, loc, cIndex(0), cIndex(plan.rowTile),
                                cIndex(1));
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(l.getBody());
    Value r = minIndex(l.getInductionVar(),
                       arith::SubIOp::create(b, loc, rowValid, cIndex(1)));
    rankValue[plan.rowRank] = arith::AddIOp::create(b, loc, rowBase, r);
    currentId = p.einsum;
    Value v = emitLoadRaw(p.load);
    memref::StoreOp::create(b, loc, v, p.mem,
                            ValueRange{l.getInductionVar()});
    rankValue.erase(plan.rowRank);
  }
}

SmallVector<Value> CpuLowering::rangeOver(unsigned rank, ExprAttr side) {
  // An integer argument (the ids themselves): min and max on the integers
  // (one instruction each), converted once; the conversion to f32 is
  // monotone, so this is the range of the values the mask compares.
  if (side.getKind() == ExprKind::Load && side.getInput() >= 0 &&
      !gc.isEinsum(side.getInput())) {
    Type elem =
        cast<MemRefType>(argMems[side.getInput()].getType()).getElementType();
    if (auto it = dyn_cast<IntegerType>(elem); it && it.getWidth() > 1) {
      unsigned w = it.getWidth();
      Value hi = arith::ConstantOp::create(
          b, loc, b.getIntegerAttr(it, APInt::getSignedMaxValue(w)));
      Value lo = arith::ConstantOp::create(
          b, loc, b.getIntegerAttr(it, APInt::getSignedMinValue(w)));
      SmallVector<Value> mm = reduceOver(
          {rank}, ValueRange{hi, lo}, [&](ValueRange acc) -> SmallVector<Value> {
            Value v = emitLoadRaw(side);
            return {arith::MinSIOp::create(b, loc, acc[0], v),
                    arith::MaxSIOp::create(b, loc, acc[1], v)};
          });
      return {toF32(mm[0]), toF32(mm[1])};
    }
  }
  return reduceOver({rank}, ValueRange{cF32(INFINITY), cF32(-INFINITY)},
                    [&](ValueRange acc) -> SmallVector<Value> {
                      Value v = asFloat(emitExpr(side));
                      return {minF(acc[0], v), maxF(acc[1], v)};
                    });
}

std::pair<Value, Value> CpuLowering::classifyKeyTile() {
  Value kept, full;
  auto andI = [&](Value x, Value y) {
    return x ? arith::AndIOp::create(b, loc, x, y).getResult() : y;
  };
  using P = arith::CmpFPredicate;
  for (SegmentRange &sr : segments) {
    const MaskConjunct &mc = maskConjuncts[sr.conjunct];
    // min and max of the key side over the valid keys of the tile.
    currentId = maskId;
    SmallVector<Value> mm = rangeOver(unsigned(key.inner), mc.keySide);
    // Empty when the ranges do not meet; full when both hold one value.
    Value meets = arith::AndIOp::create(
        b, loc, arith::CmpFOp::create(b, loc, P::OGE, mm[1], sr.lo),
        arith::CmpFOp::create(b, loc, P::OLE, mm[0], sr.hi));
    Value one = arith::AndIOp::create(
        b, loc,
        arith::AndIOp::create(
            b, loc, arith::CmpFOp::create(b, loc, P::OEQ, sr.lo, sr.hi),
            arith::CmpFOp::create(b, loc, P::OEQ, mm[0], mm[1])),
        arith::CmpFOp::create(b, loc, P::OEQ, sr.lo, mm[0]));
    kept = andI(kept, meets);
    full = andI(full, one);
  }
  if (!power2s.empty()) {
    // Distances D = row - key over the tile: [mLo - kHi, mHi - kLo]. Kept
    // if the range holds 0, or a power of two: the largest power of two
    // <= dHi, 1 << (63 - ctlz(dHi)), is >= max(dLo, 1).
    Value kLo = arith::MulIOp::create(b, loc, rankValue.lookup(key.outer),
                                      cIndex(key.tile));
    Value kHi = arith::SubIOp::create(
        b, loc, arith::AddIOp::create(b, loc, kLo, keyValid), cIndex(1));
    Value mHi = arith::SubIOp::create(
        b, loc, arith::AddIOp::create(b, loc, rowBase, rowValid), cIndex(1));
    Value dLo = arith::SubIOp::create(b, loc, rowBase, kHi);
    Value dHi = arith::SubIOp::create(b, loc, mHi, kLo);
    using IP = arith::CmpIPredicate;
    Value zero = cIndex(0), one = cIndex(1);
    Value hasZero = arith::AndIOp::create(
        b, loc, arith::CmpIOp::create(b, loc, IP::sle, dLo, zero),
        arith::CmpIOp::create(b, loc, IP::sge, dHi, zero));
    Type i64 = b.getI64Type();
    Value hi64 = arith::IndexCastOp::create(
        b, loc, i64, arith::MaxSIOp::create(b, loc, dHi, one));
    Value lz = math::CountLeadingZerosOp::create(b, loc, hi64);
    Value shift = arith::SubIOp::create(
        b, loc, arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(63)), lz);
    Value pow2 = arith::IndexCastOp::create(
        b, loc, b.getIndexType(),
        arith::ShLIOp::create(
            b, loc, arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(1)),
            shift));
    Value hasPow = arith::AndIOp::create(
        b, loc, arith::CmpIOp::create(b, loc, IP::sge, dHi, one),
        arith::CmpIOp::create(b, loc, IP::sge, pow2,
                              arith::MaxSIOp::create(b, loc, dLo, one)));
    Value visit = arith::OrIOp::create(b, loc, hasZero, hasPow);
    for (size_t i = 0; i < power2s.size(); ++i)
      kept = andI(kept, visit);
    // Never full: the mask is evaluated in every tile visited.
    full = arith::ConstantOp::create(b, loc, b.getBoolAttr(false));
  }
  return {kept, full};
}

std::pair<Value, Value> CpuLowering::keyTileRange() {
  Value begin = cIndex(0), end = rankSize[key.outer];
  fullBegin = fullEnd = Value();
  if (maskId < 0 || plan.rowRank < 0)
    return {begin, end};
  // Tiles kept entirely: every conjunct holds for all keys of the tile and
  // all rows of the task. Any conjunct not understood: no tile is full.
  Value fBegin = cIndex(0), fEnd = rankSize[key.outer];
  size_t understood = 0;
  unsigned numDims = gc.numRanks();
  Value mLo = rowBase;
  Value mHi = arith::SubIOp::create(
      b, loc, arith::AddIOp::create(b, loc, rowBase, rowValid), cIndex(1));
  Value tileC = cIndex(key.tile);
  // Varlen: the rows of the task belong to the sequences sq[first row] ..
  // sq[last row] (nondecreasing: the runtime checks cu_seqlens), whose keys
  // are [cu_k[s_lo], cu_k[s_hi + 1]); with `sq[m] < |n| - 1` the padding
  // rows past the last boundary (s = |n| - 1) see nothing. The key tiles
  // outside are never visited; inside, a tile is full if the task's rows
  // are one sequence and the tile lies within its keys.
  auto varlenRange = [&](const MaskConjunct &mc) {
    const SequenceId &rs = *mc.rowSeq, &ks = *mc.keySeq;
    AffineExpr keyPos = gc.dim(key.outer) * key.tile + gc.dim(key.inner);
    const Buffer &sqBuf = buffers[rs.einsum];
    if ((ks.pos != keyPos && ks.pos != gc.dim(key.rank)) ||
        sqBuf.place != Place::Pre || sqBuf.dims.size() != 1 ||
        int(sqBuf.dims[0]) != plan.rowRank)
      return false;
    bool bounded = llvm::any_of(maskConjuncts, [&](const MaskConjunct &o) {
      return o.kind == MaskConjunctKind::VarlenBound &&
             o.rowSeq->einsum == rs.einsum;
    });
    auto asIndex = [&](Value v) -> Value {
      if (!v.getType().isIndex())
        v = arith::IndexCastOp::create(b, loc, b.getIndexType(), v);
      return v;
    };
    Value sLo = asIndex(memref::LoadOp::create(b, loc, sqBuf.mem,
                                               ValueRange{cIndex(0)}));
    Value sHi = asIndex(memref::LoadOp::create(
        b, loc, sqBuf.mem,
        ValueRange{arith::SubIOp::create(b, loc, rowValid, cIndex(1))}));
    Value last = arith::SubIOp::create(b, loc, rankSize[rs.n], cIndex(1));
    Value sHiEff =
        bounded ? minIndex(sHi, arith::SubIOp::create(b, loc, last, cIndex(1)))
                : sHi;
    auto cuK = [&](Value s) {
      return asIndex(memref::LoadOp::create(b, loc, argMems[ks.cu],
                                            ValueRange{minIndex(s, last)}));
    };
    using P = arith::CmpIPredicate;
    Value keyLo = cuK(sLo);
    Value next = arith::AddIOp::create(b, loc, sHiEff, cIndex(1));
    Value keyHi = arith::SelectOp::create(
        b, loc, arith::CmpIOp::create(b, loc, P::sle, next, last), cuK(next),
        rankSize[key.rank]);
    Value nonEmpty = arith::AndIOp::create(
        b, loc, arith::CmpIOp::create(b, loc, P::sle, sLo, sHiEff),
        arith::CmpIOp::create(b, loc, P::slt, keyLo, keyHi));
    begin = arith::MaxSIOp::create(
        b, loc, begin, arith::FloorDivSIOp::create(b, loc, keyLo, tileC));
    end = arith::MinSIOp::create(
        b, loc, end,
        arith::SelectOp::create(
            b, loc, nonEmpty, arith::CeilDivSIOp::create(b, loc, keyHi, tileC),
            cIndex(0)));
    Value single = arith::AndIOp::create(
        b, loc, arith::CmpIOp::create(b, loc, P::eq, sLo, sHiEff),
        arith::CmpIOp::create(b, loc, P::eq, sHi, sHiEff));
    fBegin = arith::MaxSIOp::create(
        b, loc, fBegin, arith::CeilDivSIOp::create(b, loc, keyLo, tileC));
    fEnd = arith::MinSIOp::create(
        b, loc, fEnd,
        arith::SelectOp::create(
            b, loc, single, arith::FloorDivSIOp::create(b, loc, keyHi, tileC),
            cIndex(0)));
    return true;
  };
  bool varlenDone = false;
  for (const MaskConjunct &mc : maskConjuncts)
    if (mc.kind == MaskConjunctKind::Varlen && varlenRange(mc)) {
      ++understood;
      varlenDone = true;
    }
  // Prefix: an `or` of upper bounds key <= X_i - strict_i. The keys a row
  // sees are [0, max_i (X_i - strict_i)], nondecreasing in the row: the loop
  // ends after the tile of the last row's bound, and tiles up to the first
  // row's bound are full.
  auto prefixRange = [&](const MaskConjunct &mc) {
    for (const MaskConjunct::UpperBound &u : mc.upper) {
      SmallVector<int64_t> co(numDims, 0);
      if (!linearDimCoefficients(u.key, 1, co))
        return false;
      bool tiled = co[key.inner] == 1 && co[key.outer] == key.tile &&
                   co[key.rank] == 0;
      bool plain = co[key.rank] == 1 && co[key.inner] == 0 &&
                   co[key.outer] == 0;
      if (!tiled && !plain)
        return false;
      // Loads in the bound (a length, `seq_lens[b]`) must be integers.
      bool intLoads = true;
      walkExpr(u.bound, [&](ExprAttr n) {
        if (n.getKind() != ExprKind::Load)
          return;
        Type elem = cast<MemRefType>(argMems[n.getInput()].getType())
                        .getElementType();
        intLoads &= isa<IntegerType>(elem) && elem.getIntOrFloatBitWidth() >= 2;
      });
      if (!intLoads)
        return false;
    }
    // The bound as an index: affine parts, integer loads (at fixed task
    // ranks), their sums and differences (what classifyMask accepts).
    std::function<Value(ExprAttr)> boundValue = [&](ExprAttr x) -> Value {
      switch (x.getKind()) {
      case ExprKind::Index:
        return emitAffine(x.getIndex());
      case ExprKind::Load: {
        Value v = emitLoadRaw(x);
        if (v.getType().getIntOrFloatBitWidth() < 64)
          v = arith::ExtSIOp::create(b, loc, b.getI64Type(), v);
        return arith::IndexCastOp::create(b, loc, b.getIndexType(), v);
      }
      case ExprKind::Add:
        return arith::AddIOp::create(b, loc, boundValue(x.getArgs()[0]),
                                     boundValue(x.getArgs()[1]));
      case ExprKind::Sub:
        return arith::SubIOp::create(b, loc, boundValue(x.getArgs()[0]),
                                     boundValue(x.getArgs()[1]));
      default: // Neg
        return arith::SubIOp::create(b, loc, cIndex(0),
                                     boundValue(x.getArgs()[0]));
      }
    };
    auto boundAt = [&](Value m) {
      Value ub;
      for (const MaskConjunct::UpperBound &u : mc.upper) {
        rankValue[plan.rowRank] = m;
        currentId = maskId;
        Value v = boundValue(u.bound);
        rankValue.erase(plan.rowRank);
        v = arith::SubIOp::create(b, loc, v, cIndex(u.strict));
        ub = ub ? arith::MaxSIOp::create(b, loc, ub, v).getResult() : v;
      }
      return ub;
    };
    Value hi = boundAt(mHi), lo = boundAt(mLo);
    end = arith::MinSIOp::create(
        b, loc, end,
        arith::AddIOp::create(b, loc,
                              arith::FloorDivSIOp::create(b, loc, hi, tileC),
                              cIndex(1)));
    fEnd = arith::MinSIOp::create(
        b, loc, fEnd,
        arith::FloorDivSIOp::create(
            b, loc, arith::AddIOp::create(b, loc, lo, cIndex(1)), tileC));
    return true;
  };
  for (const MaskConjunct &mc : maskConjuncts)
    if (mc.kind == MaskConjunctKind::Prefix && prefixRange(mc))
      ++understood;
  for (const MaskConjunct &mc : maskConjuncts) {
    if (mc.kind == MaskConjunctKind::SegmentIds ||
        (mc.kind == MaskConjunctKind::VarlenBound && varlenDone))
      ++understood;
    if (mc.kind != MaskConjunctKind::Affine)
      continue;
    // d + strict <= 0.
    std::optional<AffineLeZero> le = mc.affine;
    if (!le)
      continue;
    AffineExpr d = le->d;
    int64_t strict = le->strict;
    ArrayRef<int64_t> flat = le->coeffs;
    int64_t cp0 = flat[key.inner], cp1 = flat[key.outer],
            cm = flat[plan.rowRank];
    bool other = false;
    for (unsigned g = 0; g < numDims; ++g)
      if (flat[g] != 0 && int(g) != key.inner && int(g) != key.outer &&
          int(g) != plan.rowRank && !isTaskFixed(g))
        other = true;
    if (other || cp0 == 0 || cp1 != cp0 * key.tile)
      continue;
    ++understood;
    // rest = d at p = 0, m = 0 (task ranks and sizes as they are).
    Value saveM = rankValue.lookup(plan.rowRank);
    rankValue[key.outer] = cIndex(0);
    rankValue[key.inner] = cIndex(0);
    rankValue[plan.rowRank] = cIndex(0);
    Value rest = arith::AddIOp::create(b, loc, emitAffine(d), cIndex(strict));
    rankValue.erase(key.outer);
    rankValue.erase(key.inner);
    if (saveM)
      rankValue[plan.rowRank] = saveM;
    else
      rankValue.erase(plan.rowRank);
    // cp0 * p + cm * m + rest <= 0 at the extreme rows of the tile.
    auto bound = [&](Value m) {
      Value t = arith::AddIOp::create(
          b, loc, arith::MulIOp::create(b, loc, cIndex(cm), m), rest);
      return arith::SubIOp::create(b, loc, cIndex(0), t); // cp0 * p <= -t
    };
    Value rhsLo = bound(mLo), rhsHi = bound(mHi);
    if (cp0 > 0) {
      // p <= floor(rhs / cp0): the last key any row of the tile sees.
      Value pmax = arith::MaxSIOp::create(
          b, loc, arith::FloorDivSIOp::create(b, loc, rhsLo, cIndex(cp0)),
          arith::FloorDivSIOp::create(b, loc, rhsHi, cIndex(cp0)));
      Value tileEnd = arith::AddIOp::create(
          b, loc, arith::FloorDivSIOp::create(b, loc, pmax, cIndex(key.tile)),
          cIndex(1));
      end = arith::MinSIOp::create(b, loc, end, tileEnd);
      // Full while the tile's last key (p1 + 1) * T - 1 <= the last key
      // every row sees.
      Value pmin = arith::MinSIOp::create(
          b, loc, arith::FloorDivSIOp::create(b, loc, rhsLo, cIndex(cp0)),
          arith::FloorDivSIOp::create(b, loc, rhsHi, cIndex(cp0)));
      fEnd = arith::MinSIOp::create(
          b, loc, fEnd,
          arith::FloorDivSIOp::create(
              b, loc, arith::AddIOp::create(b, loc, pmin, cIndex(1)),
              cIndex(key.tile)));
    } else {
      // p >= ceil(-rhs / -cp0): the first key any row of the tile sees.
      Value c0 = cIndex(-cp0);
      Value pmin = arith::MinSIOp::create(
          b, loc, arith::CeilDivSIOp::create(
                      b, loc, arith::SubIOp::create(b, loc, cIndex(0), rhsLo), c0),
          arith::CeilDivSIOp::create(
              b, loc, arith::SubIOp::create(b, loc, cIndex(0), rhsHi), c0));
      Value tileBegin =
          arith::FloorDivSIOp::create(b, loc, pmin, cIndex(key.tile));
      begin = arith::MaxSIOp::create(b, loc, begin, tileBegin);
      // Full from the tile whose first key p1 * T >= the first key every
      // row needs.
      Value pmax = arith::MaxSIOp::create(
          b, loc, arith::CeilDivSIOp::create(
                      b, loc, arith::SubIOp::create(b, loc, cIndex(0), rhsLo), c0),
          arith::CeilDivSIOp::create(
              b, loc, arith::SubIOp::create(b, loc, cIndex(0), rhsHi), c0));
      fBegin = arith::MaxSIOp::create(
          b, loc, fBegin,
          arith::CeilDivSIOp::create(b, loc, pmax, cIndex(key.tile)));
    }
  }
  if (understood == maskConjuncts.size()) {
    fullBegin = fBegin;
    fullEnd = fEnd;
  }
  // Segment ids: the range of the row side over the rows of the task
  // (|row tile| loads; each key tile's range is taken in the key loop).
  for (SegmentRange &sr : segments) {
    currentId = maskId;
    const MaskConjunct &mc = maskConjuncts[sr.conjunct];
    SmallVector<Value> mm = rangeOver(unsigned(plan.rowRank), mc.rowSide);
    sr.lo = mm[0];
    sr.hi = mm[1];
  }
  // An empty range starts and ends at the same tile (the state slots).
  end = arith::MaxSIOp::create(b, loc, begin, end);
  return {begin, end};
}

//===----------------------------------------------------------------------===//

Type CpuLowering::shaped(Type elem, Value like) {
  if (auto vt = dyn_cast<VectorType>(like.getType()))
    return VectorType::get(vt.getShape(), elem);
  return elem;
}

Value CpuLowering::like(Value scalar, Value other) {
  if (auto vt = dyn_cast<VectorType>(other.getType());
      vt && !isa<VectorType>(scalar.getType()))
    return vector::BroadcastOp::create(
        b, loc, VectorType::get(vt.getShape(), scalar.getType()), scalar);
  return scalar;
}

void CpuLowering::unify(Value &x, Value &y) {
  x = like(x, y);
  y = like(y, x);
}

Value CpuLowering::toF32(Value v) {
  Type t = getElementTypeOrSelf(v.getType());
  Type f32 = shaped(b.getF32Type(), v);
  if (t.isF32())
    return v;
  if (isa<FloatType>(t)) {
    if (t.getIntOrFloatBitWidth() < 32)
      return arith::ExtFOp::create(b, loc, f32, v);
    return arith::TruncFOp::create(b, loc, f32, v);
  }
  if (t.isInteger(1))
    return arith::UIToFPOp::create(b, loc, f32, v);
  return arith::SIToFPOp::create(b, loc, f32, v);
}

Value CpuLowering::fromF32(Value v, Type t) {
  Type st = shaped(t, v);
  if (t.isF32())
    return v;
  if (isa<FloatType>(t)) {
    if (t.getIntOrFloatBitWidth() < 32)
      return arith::TruncFOp::create(b, loc, st, v);
    return arith::ExtFOp::create(b, loc, st, v);
  }
  // Integers: round to nearest even and saturate, as the interpreter does.
  unsigned bits = t.getIntOrFloatBitWidth();
  double lo = -std::ldexp(1.0, bits - 1), hi = std::ldexp(1.0, bits - 1) - 1;
  Value r = math::RoundEvenOp::create(b, loc, v);
  r = arith::MaximumFOp::create(b, loc, r, like(cF32(lo), r));
  r = arith::MinimumFOp::create(b, loc, r, like(cF32(hi), r));
  return arith::FPToSIOp::create(b, loc, st, r);
}

Value CpuLowering::asBool(Value v) {
  if (getElementTypeOrSelf(v.getType()).isInteger(1))
    return v;
  return arith::CmpFOp::create(b, loc, arith::CmpFPredicate::UNE, v,
                               like(cF32(0), v));
}

Value CpuLowering::asFloat(Value v) {
  if (getElementTypeOrSelf(v.getType()).isInteger(1))
    return arith::UIToFPOp::create(b, loc, shaped(b.getF32Type(), v), v);
  return v;
}

Value CpuLowering::emitAffine(AffineExpr e) {
  switch (e.getKind()) {
  case AffineExprKind::DimId: {
    unsigned g = cast<AffineDimExpr>(e).getPosition();
    Value v = rankValue.lookup(g);
    if (!v) {
      fail(gc.einsum(currentId).loc,
           "attn-lower-cpu: the value of rank " + gc.rankName(g) +
               " is not defined here");
      return cIndex(0);
    }
    return v;
  }
  case AffineExprKind::SymbolId:
    return rankSize[cast<AffineSymbolExpr>(e).getPosition()];
  case AffineExprKind::Constant:
    return cIndex(cast<AffineConstantExpr>(e).getValue());
  default:
    break;
  }
  auto bin = cast<AffineBinaryOpExpr>(e);
  Value l = emitAffine(bin.getLHS()), r = emitAffine(bin.getRHS());
  unify(l, r);
  switch (e.getKind()) {
  case AffineExprKind::Add:
    return arith::AddIOp::create(b, loc, l, r);
  case AffineExprKind::Mul:
    return arith::MulIOp::create(b, loc, l, r);
  case AffineExprKind::FloorDiv:
    return arith::FloorDivSIOp::create(b, loc, l, r);
  case AffineExprKind::CeilDiv:
    return arith::CeilDivSIOp::create(b, loc, l, r);
  case AffineExprKind::Mod: {
    Value rem = arith::RemSIOp::create(b, loc, l, r);
    Value neg = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, rem,
                                      like(cIndex(0), rem));
    return arith::SelectOp::create(b, loc, neg,
                                     arith::AddIOp::create(b, loc, rem, r), rem);
  }
  default:
    return cIndex(0);
  }
}

Value CpuLowering::emitIndexExpr(ExprAttr ix) {
  return emitAffine(ix.getIndex());
}

Value CpuLowering::slotIndex(Value step) {
  return arith::RemUIOp::create(b, loc, step, cIndex(2));
}

Value CpuLowering::emitLoad(ExprAttr load) { return toF32(emitLoadRaw(load)); }

Value CpuLowering::emitGatherIndex(ExprAttr ix, Value mem, unsigned pos) {
  // The loaded value as an index (floats truncate toward zero, as the
  // interpreter's integer conversion), clamped into the dimension: an index
  // out of range reads the nearest element instead of memory outside the
  // tensor (the interpreter reports an error there).
  Value raw = emitLoadRaw(ix);
  Type t = raw.getType();
  Value i64;
  if (isa<FloatType>(t))
    i64 = arith::FPToSIOp::create(b, loc, b.getI64Type(), raw);
  else if (t.getIntOrFloatBitWidth() < 64)
    i64 = arith::ExtSIOp::create(b, loc, b.getI64Type(), raw);
  else
    i64 = raw;
  Value v = arith::IndexCastOp::create(b, loc, b.getIndexType(), i64);
  Value last = arith::SubIOp::create(
      b, loc, memref::DimOp::create(b, loc, mem, cIndex(pos)), cIndex(1));
  return arith::MaxSIOp::create(b, loc, cIndex(0),
                                arith::MinSIOp::create(b, loc, v, last));
}

/// The indices of a load of an argument at the current point (gathered
/// ones clamped into their dimension, emitGatherIndex).
SmallVector<Value> CpuLowering::argIndices(ExprAttr load) {
  SmallVector<Value> idx;
  for (auto [pos, ix] : llvm::enumerate(load.getArgs()))
    idx.push_back(ix.getKind() == ExprKind::Load
                      ? emitGatherIndex(ix, argMems[load.getInput()], pos)
                      : emitIndexExpr(ix));
  return idx;
}

Value CpuLowering::emitLoadRaw(ExprAttr load) {
  int64_t id = load.getInput() < 0 ? currentId : load.getInput();
  if (Value v = loadOverride.lookup(id))
    return v;
  const GEinsum &self = gc.einsum(currentId);
  if (!gc.isEinsum(id)) {
    if (lanes)
      if (Value v = rowPackedLoad(load))
        return v;
    return memref::LoadOp::create(b, loc, argMems[id], argIndices(load));
  }
  const Buffer &buf = buffers[id];
  SmallVector<unsigned> ranks = gc.valueRanks(id);
  SmallVector<Value> idx;
  Value slot;
  auto unsupported = [&](unsigned r) {
    fail(self.loc, "attn-lower-cpu: '" + self.name + "' reads '" +
                       gc.valueName(id) + "' at another " + gc.rankName(r) +
                       " than its own; not supported yet");
    return cF32(0);
  };
  llvm::DenseMap<unsigned, Value> local;
  for (auto [ix, r] : llvm::zip(load.getArgs(), ranks)) {
    AffineExpr a = ix.getIndex();
    if (buf.iterative && int(r) == key.outer) {
      if (a == gc.dim(r))
        slot = slotIndex(keyStep);
      else if (a == gc.dim(r) + 1)
        slot = slotIndex(arith::AddIOp::create(b, loc, keyStep, cIndex(1)));
      else if (a == gc.sym(r))
        slot = slotIndex(keyEnd ? keyEnd : rankSize[r]);
      else
        return unsupported(r);
      continue;
    }
    if (isTaskFixed(r) || int(r) == key.outer) {
      // Dropped from the buffer: the reader must be at the same point.
      if (a != gc.dim(r) || !rankValue.count(r) || rankLocal.count(r))
        return unsupported(r);
      if (int(r) == key.outer && buffers[currentId].place != Place::Loop)
        return unsupported(r);
      continue;
    }
    if (int(r) == plan.rowRank) {
      if (a != gc.dim(r) || !rankLocal.count(r))
        return unsupported(r);
      local[r] = rankLocal.lookup(r);
      continue;
    }
    local[r] = emitIndexExpr(ix);
  }
  if (slot)
    idx.push_back(slot);
  for (unsigned r : buf.dims)
    idx.push_back(local.lookup(r));
  if (lanes && !buf.dims.empty() && int(buf.dims.back()) == plan.rowRank)
    return vector::LoadOp::create(
        b, loc, VectorType::get({lanes}, cast<MemRefType>(buf.mem.getType()).getElementType()),
        buf.mem, idx);
  return memref::LoadOp::create(b, loc, buf.mem, idx);
}

Value CpuLowering::emitExpr(ExprAttr e) {
  auto arg = [&](unsigned i) { return emitExpr(e.getArgs()[i]); };
  auto farg = [&](unsigned i) { return asFloat(arg(i)); };
  using P = arith::CmpFPredicate;
  auto cmp = [&](P p) -> Value {
    Value l = farg(0), r = farg(1);
    unify(l, r);
    return arith::CmpFOp::create(b, loc, p, l, r);
  };
  switch (e.getKind()) {
  case ExprKind::Const:
    return cF32(e.getConstValue());
  case ExprKind::Index: {
    Value i = emitAffine(e.getIndex());
    Value i64 = arith::IndexCastOp::create(b, loc, shaped(b.getI64Type(), i), i);
    return arith::SIToFPOp::create(b, loc, shaped(b.getF32Type(), i), i64);
  }
  case ExprKind::Load:
    return emitLoad(e);
  case ExprKind::Add: { Value l = farg(0), r = farg(1); unify(l, r); return arith::AddFOp::create(b, loc, l, r); }
  case ExprKind::Sub: { Value l = farg(0), r = farg(1); unify(l, r); return arith::SubFOp::create(b, loc, l, r); }
  case ExprKind::Mul: { Value l = farg(0), r = farg(1); unify(l, r); return arith::MulFOp::create(b, loc, l, r); }
  case ExprKind::Div: { Value l = farg(0), r = farg(1); unify(l, r); return arith::DivFOp::create(b, loc, l, r); }
  case ExprKind::Neg: return arith::NegFOp::create(b, loc, farg(0));
  case ExprKind::Max: { Value l = farg(0), r = farg(1); unify(l, r); return maxF(l, r); }
  case ExprKind::Min: { Value l = farg(0), r = farg(1); unify(l, r); return minF(l, r); }
  case ExprKind::FloorDiv: {
    Value l = farg(0), r = farg(1);
    unify(l, r);
    return math::FloorOp::create(b, loc, arith::DivFOp::create(b, loc, l, r));
  }
  case ExprKind::Mod: {
    Value l = farg(0), r = farg(1);
    unify(l, r);
    Value q = math::FloorOp::create(b, loc, arith::DivFOp::create(b, loc, l, r));
    return arith::SubFOp::create(b, loc, l, arith::MulFOp::create(b, loc, r, q));
  }
  case ExprKind::Exp: return math::ExpOp::create(b, loc, farg(0));
  case ExprKind::Exp2: return math::Exp2Op::create(b, loc, farg(0));
  case ExprKind::Log: return math::LogOp::create(b, loc, farg(0));
  case ExprKind::Log2: return math::Log2Op::create(b, loc, farg(0));
  case ExprKind::Tanh: return math::TanhOp::create(b, loc, farg(0));
  case ExprKind::Sigmoid: {
    Value x = farg(0);
    Value ex = math::ExpOp::create(b, loc, arith::NegFOp::create(b, loc, x));
    Value one = like(cF32(1), ex);
    return arith::DivFOp::create(b, loc, one,
                                 arith::AddFOp::create(b, loc, one, ex));
  }
  case ExprKind::Sqrt: return math::SqrtOp::create(b, loc, farg(0));
  case ExprKind::Abs: return math::AbsFOp::create(b, loc, farg(0));
  case ExprKind::Round: return math::RoundEvenOp::create(b, loc, farg(0));
  case ExprKind::Floor: return math::FloorOp::create(b, loc, farg(0));
  case ExprKind::Pow: { Value l = farg(0), r = farg(1); unify(l, r); return math::PowFOp::create(b, loc, l, r); }
  case ExprKind::Cast: {
    Type t = e.getCastType();
    return toF32(fromF32(farg(0), t));
  }
  case ExprKind::Select: {
    Value c = asBool(arg(0));
    Value t = farg(1), f = farg(2);
    unify(t, f);
    unify(c, t);
    unify(c, f);
    return arith::SelectOp::create(b, loc, c, t, f);
  }
  case ExprKind::Lt: return cmp(P::OLT);
  case ExprKind::Le: return cmp(P::OLE);
  case ExprKind::Gt: return cmp(P::OGT);
  case ExprKind::Ge: return cmp(P::OGE);
  case ExprKind::Eq: {
    // Equalities of rank values are integer compares. `pow(2,
    // floor(log2(X))) == X` of a rank value X (PowerAttention's "X is 0 or
    // a power of two": log2(0) = -inf gives 2^-inf = 0) is X >= 0 and X &
    // (X - 1) == 0, which the float form equals wherever it is exact.
    ExprAttr l = e.getArgs()[0], r = e.getArgs()[1];
    using IP = arith::CmpIPredicate;
    if (l.getKind() == ExprKind::Index && r.getKind() == ExprKind::Index) {
      Value a = emitAffine(l.getIndex()), c = emitAffine(r.getIndex());
      unify(a, c);
      return arith::CmpIOp::create(b, loc, IP::eq, a, c);
    }
    for (int side = 0; side < 2; ++side) {
      ExprAttr pw = e.getArgs()[side], x = e.getArgs()[1 - side];
      if (pw.getKind() != ExprKind::Pow || x.getKind() != ExprKind::Index)
        continue;
      ExprAttr base = pw.getArgs()[0], fl = pw.getArgs()[1];
      if (base.getKind() != ExprKind::Const || base.getConstValue() != 2.0 ||
          fl.getKind() != ExprKind::Floor ||
          fl.getArgs()[0].getKind() != ExprKind::Log2 ||
          fl.getArgs()[0].getArgs()[0].getKind() != ExprKind::Index ||
          fl.getArgs()[0].getArgs()[0].getIndex() != x.getIndex())
        continue;
      Value v = emitAffine(x.getIndex());
      Value zero = like(cIndex(0), v), one = like(cIndex(1), v);
      Value low = arith::AndIOp::create(
          b, loc, v, arith::SubIOp::create(b, loc, v, one));
      return arith::AndIOp::create(
          b, loc, arith::CmpIOp::create(b, loc, IP::sge, v, zero),
          arith::CmpIOp::create(b, loc, IP::eq, low, zero));
    }
    return cmp(P::OEQ);
  }
  case ExprKind::Ne: return cmp(P::UNE);
  case ExprKind::And: {
    Value l = asBool(arg(0)), r = asBool(arg(1));
    unify(l, r);
    return arith::AndIOp::create(b, loc, l, r);
  }
  case ExprKind::Or: {
    Value l = asBool(arg(0)), r = asBool(arg(1));
    unify(l, r);
    return arith::OrIOp::create(b, loc, l, r);
  }
  case ExprKind::Not: {
    Value x = asBool(arg(0));
    Value one = like(arith::ConstantOp::create(b, loc, b.getBoolAttr(true)), x);
    return arith::XOrIOp::create(b, loc, x, one);
  }
  }
  return cF32(0);
}

double CpuLowering::identity(Reducer r) const {
  switch (r) {
  case Reducer::Max: return -INFINITY;
  case Reducer::Min: return INFINITY;
  default: return 0.0;
  }
}

Value CpuLowering::combine(Reducer r, Value acc, Value v) {
  unify(acc, v);
  switch (r) {
  case Reducer::Max: return maxF(acc, v);
  case Reducer::Min: return minF(acc, v);
  default: return arith::AddFOp::create(b, loc, acc, v);
  }
}

CpuLowering::LoopRange CpuLowering::rangeOf(unsigned g) {
  if (int(g) == plan.rowRank && rowBase)
    return {rowValid, rowBase};
  if (int(g) == key.inner && keyValid)
    return {keyValid, Value()};
  return {rankSize[g], Value()};
}

void CpuLowering::forRanks(ArrayRef<unsigned> ranks, function_ref<void()> body) {
  if (ranks.empty())
    return body();
  unsigned g = ranks.front();
  LoopRange range = rangeOf(g);
  auto loopOp = scf::ForOp::create(b, loc, cIndex(0), range.ub, cIndex(1));
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(loopOp.getBody());
  Value iv = loopOp.getInductionVar();
  rankValue[g] = range.base ? arith::AddIOp::create(b, loc, range.base, iv) : iv;
  rankLocal[g] = iv;
  forRanks(ranks.drop_front(), body);
  rankValue.erase(g);
  rankLocal.erase(g);
}

SmallVector<Value> CpuLowering::reduceOver(
    ArrayRef<unsigned> ranks, ValueRange init,
    function_ref<SmallVector<Value>(ValueRange)> body) {
  if (ranks.empty())
    return body(init);
  unsigned g = ranks.front();
  LoopRange range = rangeOf(g);
  auto loopOp = scf::ForOp::create(b, loc, cIndex(0), range.ub, cIndex(1), init);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(loopOp.getBody());
    Value iv = loopOp.getInductionVar();
    rankValue[g] = range.base ? arith::AddIOp::create(b, loc, range.base, iv) : iv;
    // A reduced rank has no position in the reader's own buffer.
    SmallVector<Value> next =
        reduceOver(ranks.drop_front(), loopOp.getRegionIterArgs(), body);
    scf::YieldOp::create(b, loc, next);
    rankValue.erase(g);
  }
  return SmallVector<Value>(loopOp.getResults());
}

void CpuLowering::emitEinsum(unsigned id) {
  currentId = id;
  GEinsum &e = gc.einsum(id);
  Buffer &buf = buffers[id];
  OutInfo out = outInfo(e);
  SmallVector<unsigned> outLoops, redRanks;
  for (unsigned r : out.ranks)
    if (!isTaskFixed(r) && int(r) != key.outer)
      outLoops.push_back(r);
  for (unsigned r : iteratedRanks(gc, e))
    if (!llvm::is_contained(out.ranks, r))
      redRanks.push_back(r);
  for (unsigned r : redRanks)
    if (isTaskFixed(r) || int(r) == key.outer || int(r) == plan.rowRank) {
      fail(e.loc, "attn-lower-cpu: '" + e.name + "' reduces the rank " +
                      gc.rankName(r) + " across tasks; not supported yet");
      return;
    }
  if (fused.contains(id))
    return; // emitted with its producer
  if (auto it = contractions.find(id); it != contractions.end())
    return emitContraction(id, it->second);
  if (int y = fusedReduction(id); y >= 0)
    return emitFusedReduction(id, unsigned(y));

  bool vec = vectorizable(id);
  if (vec)
    llvm::erase(outLoops, unsigned(plan.rowRank));

  auto point = [&] {
    Value result;
    Value fillV = cF32(e.fill ? *e.fill : identity(e.reducer));
    if (e.reducer == Reducer::None) {
      result = emitMapValue(e, vec);
    } else {
      // Accumulator, and whether any point landed (only with an else value).
      bool track = e.fill.has_value();
      Value lanesLike = vec ? rankValue.lookup(plan.rowRank) : Value();
      auto splatIf = [&](Value v) { return lanesLike ? like(v, lanesLike) : v; };
      SmallVector<Value> init{splatIf(cF32(identity(e.reducer)))};
      if (track)
        init.push_back(
            splatIf(arith::ConstantOp::create(b, loc, b.getBoolAttr(false))));
      SmallVector<Value> res =
          reduceOver(redRanks, init, [&](ValueRange acc) -> SmallVector<Value> {
            if (vec) {
              Value c = e.cond ? asBool(emitExpr(e.cond)) : Value();
              Value v = asFloat(emitExpr(e.expr));
              Value next = combine(e.reducer, acc[0], v);
              SmallVector<Value> out;
              if (!c) {
                out.push_back(next);
                if (track)
                  out.push_back(splatIf(
                      arith::ConstantOp::create(b, loc, b.getBoolAttr(true))));
                return out;
              }
              c = splatIf(c);
              out.push_back(arith::SelectOp::create(b, loc, c, next, acc[0]));
              if (track)
                out.push_back(arith::OrIOp::create(b, loc, acc[1], c));
              return out;
            }
            auto step = [&]() -> SmallVector<Value> {
              SmallVector<Value> next{
                  combine(e.reducer, acc[0], asFloat(emitExpr(e.expr)))};
              if (track)
                next.push_back(
                    arith::ConstantOp::create(b, loc, b.getBoolAttr(true)));
              return next;
            };
            if (!e.cond)
              return step();
            Value c = asBool(emitExpr(e.cond));
            auto ifOp = scf::IfOp::create(b, loc, acc.getTypes(), c, true);
            OpBuilder::InsertionGuard guard(b);
            b.setInsertionPointToStart(&ifOp.getThenRegion().front());
            scf::YieldOp::create(b, loc, step());
            b.setInsertionPointToStart(&ifOp.getElseRegion().front());
            scf::YieldOp::create(b, loc, acc);
            return SmallVector<Value>(ifOp.getResults());
          });
      result = res[0];
      if (track) {
        Value f = like(fillV, result);
        result = arith::SelectOp::create(b, loc, res[1], result, f);
      }
    }
    SmallVector<Value> idx;
    if (buf.iterative)
      idx.push_back(slotIndex(arith::AddIOp::create(b, loc, keyStep, cIndex(1))));
    for (unsigned r : buf.dims)
      idx.push_back(rankLocal.lookup(r));
    if (vec) {
      result = like(result, rankValue.lookup(plan.rowRank));
      vector::StoreOp::create(b, loc, fromF32(result, e.elemType), buf.mem, idx);
    } else {
      memref::StoreOp::create(b, loc, fromF32(result, e.elemType), buf.mem, idx);
    }
  };

  forRanks(outLoops, [&] {
    if (!vec)
      return point();
    withLanes(point);
  });
}

Value CpuLowering::emitMapValue(const GEinsum &e, bool vec) {
  if (!e.cond)
    return asFloat(emitExpr(e.expr));
  Value fillV = cF32(e.fill ? *e.fill : identity(e.reducer));
  if (vec) {
    // All lanes are evaluated; the condition selects.
    Value c = asBool(emitExpr(e.cond));
    Value v = asFloat(emitExpr(e.expr));
    unify(v, fillV);
    unify(c, v);
    unify(c, fillV);
    return arith::SelectOp::create(b, loc, c, v, fillV);
  }
  Value c = asBool(emitExpr(e.cond));
  auto ifOp = scf::IfOp::create(b, loc, TypeRange{b.getF32Type()}, c,
                                /*withElse=*/true);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&ifOp.getThenRegion().front());
  scf::YieldOp::create(b, loc, asFloat(emitExpr(e.expr)));
  b.setInsertionPointToStart(&ifOp.getElseRegion().front());
  scf::YieldOp::create(b, loc, fillV);
  return ifOp.getResult(0);
}

void CpuLowering::emitFusedReduction(unsigned x, unsigned y) {
  const GEinsum &xe = gc.einsum(x), &ye = gc.einsum(y);
  const Buffer &xb = buffers[x], &yb = buffers[y];
  unsigned k = xb.dims[0], row = plan.rowRank;
  // Rows outside, k inside: X[k, row] is stored and reduced in one sweep.
  withLanes([&] {
    Value rows = rankValue.lookup(row);
    Value init = like(cF32(identity(ye.reducer)), rows);
    SmallVector<Value> res = reduceOver(
        {k}, ValueRange{init}, [&](ValueRange acc) -> SmallVector<Value> {
          currentId = x;
          rankLocal[k] = rankValue.lookup(k);
          Value v = like(emitMapValue(xe, true), rows);
          Value stored = fromF32(v, xe.elemType);
          vector::StoreOp::create(b, loc, stored, xb.mem,
                                  ValueRange{rankLocal.lookup(k),
                                             rankLocal.lookup(row)});
          rankLocal.erase(k);
          // The consumer reads the stored (rounded) value.
          return {combine(ye.reducer, acc[0], toF32(stored))};
        });
    vector::StoreOp::create(b, loc, fromF32(res[0], ye.elemType), yb.mem,
                            ValueRange{rankLocal.lookup(row)});
  });
}

void CpuLowering::withLanes(function_ref<void()> body) {
  int64_t w = options.vectorWidth;
  // The vectors of rows the task has (rows past |m| in the last row tile
  // are never computed, by any emitter).
  Value end = arith::MulIOp::create(
      b, loc, arith::CeilDivSIOp::create(b, loc, rowValid, cIndex(w)),
      cIndex(w));
  auto laneLoop = scf::ForOp::create(b, loc, cIndex(0), end, cIndex(w));
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(laneLoop.getBody());
  setLanes(laneLoop.getInductionVar());
  body();
  clearLanes();
}

void CpuLowering::setLanes(Value base) {
  int64_t w = options.vectorWidth;
  auto vt = VectorType::get({w}, b.getIndexType());
  SmallVector<APInt> iota;
  for (int64_t l = 0; l < w; ++l)
    iota.push_back(APInt(64, l));
  Value iotaV = arith::ConstantOp::create(
      b, loc, vt, DenseElementsAttr::get(vt, ArrayRef<APInt>(iota)));
  Value first = arith::AddIOp::create(b, loc, rowBase, base);
  rankLocal[plan.rowRank] = base;
  rankValue[plan.rowRank] =
      arith::AddIOp::create(b, loc, like(first, iotaV), iotaV);
  lanes = w;
}

void CpuLowering::clearLanes() {
  rankLocal.erase(plan.rowRank);
  rankValue.erase(plan.rowRank);
  lanes = 0;
}

bool CpuLowering::vectorizable(unsigned id) {
  if (!rowLanes())
    return false;
  const Buffer &buf = buffers[id];
  if (buf.dims.empty() || int(buf.dims.back()) != plan.rowRank)
    return false;
  bool ok = true;
  // A tensor read along the row rank would need a gather, and so would a
  // gathered index (the scalar path evaluates both), unless the argument
  // is packed per task (rowPacks: a load at the row and task ranks only).
  forEachTensorLoad(gc, gc.einsum(id), [&](ExprAttr n) {
    if (llvm::any_of(rowPacks, [&](const RowPack &p) { return p.load == n; }))
      return;
    for (ExprAttr ix : n.getArgs())
      ok &= ix.getKind() == ExprKind::Index && !usesRank(ix, plan.rowRank);
  });
  return ok;
}

/// The factors of a product: loads and constants.
/// The loads and the constant factor of a product. `cast(load : f32)` of a
/// value that f32 holds exactly (`exact`: integers up to 16 bits, bf16,
/// f16, f32) counts as the load: the micro-kernels read operands as f32.
static bool productFactors(ExprAttr x, SmallVectorImpl<ExprAttr> &loads,
                           double &scale,
                           function_ref<bool(ExprAttr)> exact) {
  switch (x.getKind()) {
  case ExprKind::Mul:
    return productFactors(x.getArgs()[0], loads, scale, exact) &&
           productFactors(x.getArgs()[1], loads, scale, exact);
  case ExprKind::Const:
    scale *= x.getConstValue();
    return true;
  case ExprKind::Load:
    loads.push_back(x);
    return true;
  case ExprKind::Cast:
    if (!x.getCastType().isF32() ||
        x.getArgs()[0].getKind() != ExprKind::Load || !exact(x.getArgs()[0]))
      return false;
    loads.push_back(x.getArgs()[0]);
    return true;
  default:
    return false;
  }
}

static bool loadUses(ExprAttr load, unsigned g) {
  for (ExprAttr ix : load.getArgs())
    if (usesRank(ix, g))
      return true;
  return false;
}

std::optional<CpuLowering::Contraction>
CpuLowering::matchContraction(unsigned id) {
  if (!rowLanes())
    return std::nullopt;
  const GEinsum &e = gc.einsum(id);
  const Buffer &buf = buffers[id];
  unsigned row = plan.rowRank;
  if (e.reducer != Reducer::Sum || buf.iterative || buf.dims.size() != 2 ||
      buf.dims[1] != row)
    return std::nullopt;
  OutInfo out = outInfo(e);
  SmallVector<unsigned> red;
  for (unsigned r : iteratedRanks(gc, e))
    if (!llvm::is_contained(out.ranks, r))
      red.push_back(r);
  if (red.size() != 1)
    return std::nullopt;
  Contraction c;
  c.i = buf.dims[0];
  c.k = red[0];
  if (!localExtent(c.k) || int(c.k) == plan.rowRank)
    return std::nullopt;
  SmallVector<ExprAttr> loads;
  c.scale = 1.0;
  auto exactInF32 = [&](ExprAttr load) {
    if (load.getInput() < 0 || gc.isEinsum(load.getInput()))
      return false;
    Type t = cast<NamedTensorType>(
                 cascade.getFunctionType().getInput(load.getInput()))
                 .getElementType();
    return t.isF32() || t.isBF16() || t.isF16() ||
           (t.isSignlessInteger() && t.getIntOrFloatBitWidth() <= 16);
  };
  if (!productFactors(e.expr, loads, c.scale, exactInF32) || loads.size() != 2)
    return std::nullopt;
  if (loadUses(loads[0], row))
    std::swap(loads[0], loads[1]);
  c.a = loads[0];
  c.b = loads[1];
  for (ExprAttr ix : c.b.getArgs())
    if (ix.getKind() != ExprKind::Index)
      return std::nullopt; // a gather: the scalar path
  // A gathers only through indices fixed within the micro-kernel (a paged
  // cache's page, block_table[b, p1], is one per key tile).
  for (ExprAttr ix : c.a.getArgs())
    if (ix.getKind() != ExprKind::Index &&
        (usesRank(ix, c.i) || usesRank(ix, c.k) || usesRank(ix, row)))
      return std::nullopt;
  if (c.a.getInput() < 0 || c.b.getInput() < 0 || loadUses(c.a, row) ||
      !loadUses(c.b, row) || loadUses(c.b, c.i) || !loadUses(c.a, c.i))
    return std::nullopt;
  // A condition over k that is the mask of the scores B was computed from:
  // B = exp(X - r) with X = ... if (cond) else -inf is 0 wherever cond
  // fails, so the condition adds nothing to the sum (for finite A; paged
  // KV repeats its mask here so that the interpreter never reads a block
  // table entry past a sequence's pages; gathers are clamped here anyway).
  ExprAttr cond = e.cond;
  if (cond && usesRank(cond, c.k) && gc.isEinsum(c.b.getInput())) {
    ExprAttr bx = gc.einsum(c.b.getInput()).expr;
    if (bx.getKind() == ExprKind::Exp &&
        bx.getArgs()[0].getKind() == ExprKind::Sub) {
      ExprAttr x = bx.getArgs()[0].getArgs()[0];
      if (x.getKind() == ExprKind::Load && x.getInput() >= 0 &&
          gc.isEinsum(x.getInput())) {
        const GEinsum &xe = gc.einsum(x.getInput());
        if (xe.cond == cond && xe.fill && std::isinf(*xe.fill) && *xe.fill < 0)
          cond = ExprAttr();
      }
    }
  }
  if (cond) {
    if (usesRank(cond, c.k))
      return std::nullopt;
    // Evaluated on vectors of rows: no tensor read along the rows.
    // Argument loads at the row alone (segment ids) are packed per task.
    bool gathers = false;
    SmallVector<ExprAttr> packed;
    walkExpr(e.cond, [&](ExprAttr n) {
      bool along = n.getKind() == ExprKind::Load &&
                   (n.getInput() < 0 || !gc.isEinsum(n.getInput())) &&
                   loadUses(n, row);
      if (along && rowPackable(n))
        packed.push_back(n);
      else
        gathers |= along;
    });
    if (gathers)
      return std::nullopt;
    for (ExprAttr n : packed)
      if (llvm::none_of(rowPacks, [&](const RowPack &p) { return p.load == n; }))
        rowPacks.push_back({n, id, Value()});
    c.post = e.cond;
  }
  unsigned bId = c.b.getInput();
  if (gc.isEinsum(bId)) {
    // A buffer laid out [k, row], read at (k, row).
    const Buffer &src = buffers[bId];
    if (src.iterative || src.dims.size() != 2 || src.dims[0] != c.k ||
        src.dims[1] != row)
      return std::nullopt;
    SmallVector<unsigned> ranks = gc.valueRanks(bId);
    for (auto [ix, r] : llvm::zip(c.b.getArgs(), ranks))
      if ((r == c.k || r == row) && ix.getIndex() != gc.dim(r))
        return std::nullopt;
    if (pairable(c) && gc.einsum(bId).elemType.isF32() &&
        localExtent(c.k)) {
      c.pairs = true;
      c.pairBuf = pairBuffers.size();
      pairBuffers.push_back({bId, *localExtent(c.k), Value()});
      // A read along its innermost dimension by i (V[.., p, f] with i = f):
      // copied in pairs when that dimension is contiguous.
      ArrayRef<ExprAttr> aArgs = c.a.getArgs();
      std::optional<int64_t> iExt = localExtent(c.i);
      if (iExt && *iExt % options.vectorWidth == 0 &&
          aArgs.back().getKind() == ExprKind::Index &&
          aArgs.back().getIndex() == gc.dim(c.i) &&
          llvm::none_of(aArgs.drop_back(),
                        [&](ExprAttr ix) { return usesRank(ix, c.i); })) {
        c.aPairBuf = aPairBuffers.size();
        aPairBuffers.push_back({*localExtent(c.k), *iExt, Value()});
      }
    }
    return c;
  }
  // A tensor: packed once per task as [k, row] (it must not depend on the
  // key loop, and k must have a static size).
  if (key.rank >= 0 && (loadUses(c.b, key.rank) || loadUses(c.b, key.outer) ||
                        loadUses(c.b, key.inner)))
    return std::nullopt;
  if (!gc.staticSize(c.k))
    return std::nullopt;
  c.pack = packs.size();
  c.quads = quadable(c);
  c.pairs = !c.quads && pairable(c);
  // int8 quads cannot carry the constant factor: the epilogue applies it.
  packs.push_back({id, c.b, c.k, Value(), c.quads ? 1.0 : c.scale, c.pairs,
                   c.quads, Value()});
  if (!c.quads)
    c.scale = 1.0;
  return c;
}

/// BF16 pair dot products apply when the target has them, A is a bf16
/// tensor (its values are exact in bf16) and the vectors are 16 f32 lanes.
bool CpuLowering::pairable(const Contraction &c) {
  if (!options.bf16Dot || options.vectorWidth != 16)
    return false;
  unsigned aId = c.a.getInput();
  if (gc.isEinsum(aId))
    return false;
  auto nt = cast<NamedTensorType>(cascade.getFunctionType().getInput(aId));
  return nt.getElementType().isBF16();
}

/// Whether A's pairs (k, k + 1) may be read as one 32-bit load: A's
/// innermost index is k itself (no other index uses it) and the k extent is
/// static and even (the last pair has no partner past the end). Returns the
/// run-time condition (A's innermost stride is 1), or null.
Value CpuLowering::pairWideGuard(const Contraction &c) {
  auto it = argUnitInner.find(c.a.getInput());
  if (c.aPairBuf >= 0)
    return it == argUnitInner.end() ? Value() : it->second.second;
  std::optional<int64_t> ext = localExtent(c.k);
  if (it == argUnitInner.end() || !ext || *ext % 2 != 0)
    return Value();
  ArrayRef<ExprAttr> args = c.a.getArgs();
  if (args.back().getKind() != ExprKind::Index ||
      args.back().getIndex() != gc.dim(c.k))
    return Value();
  for (ExprAttr ix : args.drop_back())
    if (usesRank(ix, c.k))
      return Value();
  return it->second.second;
}

/// A's pair at (k, k + 1) (k = rankValue[c.k]) as one 32-bit load from the
/// unit-stride view, broadcast to the 2w bf16 lanes of vdpbf16ps.
Value CpuLowering::pairLoadWide(ExprAttr load, int64_t w) {
  SmallVector<Value> idx = argIndices(load);
  Value pair = vector::LoadOp::create(
      b, loc, VectorType::get({2}, b.getBF16Type()),
      argUnitInner.lookup(load.getInput()).first, idx);
  Value word = vector::ExtractOp::create(
      b, loc,
      vector::BitCastOp::create(b, loc, VectorType::get({1}, b.getI32Type()),
                                pair),
      ArrayRef<int64_t>{0});
  Value v = vector::BroadcastOp::create(
      b, loc, VectorType::get({w}, b.getI32Type()), word);
  return vector::BitCastOp::create(
      b, loc, VectorType::get({2 * w}, b.getBF16Type()), v);
}

/// INT8 dot products apply when the target has AVX512-VNNI, A and B are
/// int8 tensors and the reduced extent is static and a multiple of 4 (a
/// quad of A is then never partial).
bool CpuLowering::quadable(const Contraction &c) {
  if (!options.vnni || options.vectorWidth != 16)
    return false;
  auto isI8 = [&](ExprAttr load) {
    unsigned id = load.getInput();
    if (gc.isEinsum(id))
      return false;
    return cast<NamedTensorType>(cascade.getFunctionType().getInput(id))
        .getElementType()
        .isInteger(8);
  };
  std::optional<int64_t> k = localExtent(c.k);
  return isI8(c.a) && isI8(c.b) && k && *k % 4 == 0;
}

void CpuLowering::emitPack(Pack &p) {
  currentId = p.einsum;
  unsigned row = plan.rowRank;
  SmallVector<unsigned> ranks{row, p.k};
  if (p.quads) {
    // [k / 4, 4 * row + k % 4] in i8 (the signed operand of vpdpbusd), and
    // per row the sum of its values (i32, for the unsigned operand's +128).
    auto zl = scf::ForOp::create(b, loc, cIndex(0), cIndex(plan.rowTile),
                                 cIndex(1));
    {
      OpBuilder::InsertionGuard g(b);
      b.setInsertionPointToStart(zl.getBody());
      memref::StoreOp::create(
          b, loc, arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(0)),
          p.sum, ValueRange{zl.getInductionVar()});
    }
    forRanks(ranks, [&] {
      Value v = emitLoadRaw(p.load);
      Value kk = rankLocal.lookup(p.k), rr = rankLocal.lookup(row);
      Value col = arith::AddIOp::create(
          b, loc, arith::MulIOp::create(b, loc, rr, cIndex(4)),
          arith::RemUIOp::create(b, loc, kk, cIndex(4)));
      memref::StoreOp::create(
          b, loc, v, p.mem,
          ValueRange{arith::DivUIOp::create(b, loc, kk, cIndex(4)), col});
      Value old = memref::LoadOp::create(b, loc, p.sum, ValueRange{rr});
      memref::StoreOp::create(
          b, loc,
          arith::AddIOp::create(
              b, loc, old, arith::ExtSIOp::create(b, loc, b.getI32Type(), v)),
          p.sum, ValueRange{rr});
    });
    return;
  }
  forRanks(ranks, [&] {
    Value v = emitLoad(p.load);
    if (p.scale != 1.0)
      v = arith::MulFOp::create(b, loc, v, cF32(p.scale));
    Value kk = rankLocal.lookup(p.k), rr = rankLocal.lookup(row);
    if (p.pairs) {
      // [k / 2, 2 * row + k % 2] in bf16.
      Value col = arith::AddIOp::create(
          b, loc, arith::MulIOp::create(b, loc, rr, cIndex(2)),
          arith::RemUIOp::create(b, loc, kk, cIndex(2)));
      memref::StoreOp::create(
          b, loc, arith::TruncFOp::create(b, loc, b.getBF16Type(), v), p.mem,
          ValueRange{arith::DivUIOp::create(b, loc, kk, cIndex(2)), col});
      return;
    }
    memref::StoreOp::create(b, loc, v, p.mem, ValueRange{kk, rr});
  });
}

void CpuLowering::emitContraction(unsigned id, const Contraction &c) {
  GEinsum &e = gc.einsum(id);
  int64_t w = options.vectorWidth;
  CpuRegisterTile tile = cpuRegisterTile(options);
  int64_t ib = tile.rows, jb = tile.cols;
  auto vt = VectorType::get({w}, b.getF32Type());
  Value iExt = rangeOf(c.i).ub, kExt = rangeOf(c.k).ub;
  Value bMem = c.pack >= 0 ? packs[c.pack].mem : buffers[c.b.getInput()].mem;
  auto pairT = VectorType::get({2 * w}, b.getBF16Type());
  if (c.pairs && c.pack < 0) {
    emitPairCopy(c, kExt);
    bMem = pairBuffers[c.pairBuf].mem;
  }
  Value aPairs;
  if (Value isUnit = c.aPairBuf >= 0 ? pairWideGuard(c) : Value()) {
    auto ifOp = scf::IfOp::create(b, loc, TypeRange{}, isUnit, false);
    OpBuilder::InsertionGuard g0(b);
    b.setInsertionPointToStart(&ifOp.getThenRegion().front());
    emitAPairCopy(c, kExt);
    aPairs = aPairBuffers[c.aPairBuf].mem;
  }
  // With pairs the k loop steps over pairs of k, with quads over quads.
  Value kSteps =
      c.quads   ? arith::DivUIOp::create(b, loc, kExt, cIndex(4)).getResult()
      : c.pairs ? arith::CeilDivSIOp::create(b, loc, kExt, cIndex(2)).getResult()
                : kExt;
  auto i32v = VectorType::get({w}, b.getI32Type());
  auto quadT = VectorType::get({4 * w}, b.getI8Type());
  auto pairBroadcast = [&](Value a0, Value a1) -> Value {
    Type i16 = b.getI16Type(), i32 = b.getI32Type();
    auto bits = [&](Value x) -> Value {
      return arith::ExtUIOp::create(b, loc, i32,
                                    arith::BitcastOp::create(b, loc, i16, x));
    };
    Value hi = arith::ShLIOp::create(
        b, loc, bits(a1),
        arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(16)));
    Value pr = arith::OrIOp::create(b, loc, bits(a0), hi);
    Value v = vector::BroadcastOp::create(b, loc, VectorType::get({w}, i32), pr);
    return vector::BitCastOp::create(b, loc, pairT, v);
  };
  Value fillV = cF32(e.fill ? *e.fill : 0.0);
  // Fused: the running state this sum is added to (R[p1 + 1] = R[p1] * C +
  // this), and a reduction over i of the result.
  auto accIt = accumulates.find(id);
  const Accumulate *acc = accIt == accumulates.end() ? nullptr : &accIt->second;
  int red = fusedReduction(id);
  unsigned outId = acc ? acc->state : id;
  Value outMem = buffers[outId].mem;
  Type outElem = gc.einsum(outId).elemType;
  Value newSlot =
      acc ? slotIndex(arith::AddIOp::create(b, loc, keyStep, cIndex(1)))
          : Value();

  // Only the vectors of rows the task has (fewer in a short last row tile
  // and in decode): blocks of jb vectors, then single vectors.
  Value nvec = arith::CeilDivSIOp::create(b, loc, rowValid, cIndex(w));
  Value nMain = arith::MulIOp::create(
      b, loc, arith::DivSIOp::create(b, loc, nvec, cIndex(jb)), cIndex(jb));
  auto columns = [&](Value lo, Value hi, int64_t jb) {
    auto jLoop = scf::ForOp::create(b, loc, lo, hi, cIndex(jb));
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(jLoop.getBody());
    Value jo = jLoop.getInductionVar();
    SmallVector<Value> cols;
    for (int64_t cc = 0; cc < jb; ++cc)
      cols.push_back(arith::MulIOp::create(
          b, loc, arith::AddIOp::create(b, loc, jo, cIndex(cc)), cIndex(w)));
    Value iMain = arith::MulIOp::create(
        b, loc, arith::DivUIOp::create(b, loc, iExt, cIndex(ib)), cIndex(ib));
    // The correction C of the running state, once per column vector.
    SmallVector<Value> corr;
    if (acc)
      for (Value col : cols) {
        currentId = outId;
        setLanes(col);
        corr.push_back(like(asFloat(emitExpr(acc->corr)), rankValue.lookup(plan.rowRank)));
        clearLanes();
        currentId = id;
      }
    auto index = [&](Value ii, Value col) {
      SmallVector<Value> idx;
      if (newSlot)
        idx.push_back(newSlot);
      idx.append({ii, col});
      return idx;
    };

    auto block = [&](int64_t rows, Value lo, Value hi,
                     ValueRange carried) -> SmallVector<Value> {
      auto iLoop = scf::ForOp::create(b, loc, lo, hi, cIndex(rows), carried);
      OpBuilder::InsertionGuard g2(b);
      b.setInsertionPointToStart(iLoop.getBody());
      Value i0 = iLoop.getInductionVar();
      SmallVector<Value> init;
      if (acc) {
        // Start from the old state times its correction.
        for (int64_t r = 0; r < rows; ++r) {
          rankValue[c.i] = arith::AddIOp::create(b, loc, i0, cIndex(r));
          for (int64_t cc = 0; cc < jb; ++cc) {
            currentId = outId;
            setLanes(cols[cc]);
            Value old = emitLoad(acc->old);
            clearLanes();
            currentId = id;
            init.push_back(arith::MulFOp::create(b, loc, old, corr[cc]));
          }
        }
        rankValue.erase(c.i);
      } else if (c.quads) {
        // vpdpbusd multiplies A + 128 (unsigned) by B: start from
        // -128 * (sum of B's column), so that the i32 sums are exact.
        Value m128 = arith::ConstantOp::create(
            b, loc, i32v, DenseElementsAttr::get(i32v, b.getI32IntegerAttr(-128)));
        SmallVector<Value> start;
        for (Value col : cols)
          start.push_back(arith::MulIOp::create(
              b, loc,
              vector::LoadOp::create(b, loc, i32v, packs[c.pack].sum,
                                     ValueRange{col}),
              m128));
        for (int64_t r = 0; r < rows; ++r)
          init.append(start);
      } else {
        Value zero = arith::ConstantOp::create(
            b, loc, vt, DenseElementsAttr::get(vt, b.getF32FloatAttr(0)));
        init.assign(rows * jb, zero);
      }
      // One register row of a dot-product instruction (vdpbf16ps,
      // vpdpbusd): acc[r, cc] = fn(acc[r, cc], a, bv[cc]).
      auto dotRow = [&](scf::ForOp kLoop, SmallVector<Value> &next, Type t,
                        StringAttr fn, Value a, ArrayRef<Value> bv,
                        int64_t r) {
        for (int64_t cc = 0; cc < jb; ++cc)
          next.push_back(LLVM::CallIntrinsicOp::create(
                             b, loc, t, fn,
                             ValueRange{kLoop.getRegionIterArgs()[r * jb + cc],
                                        a, bv[cc]})
                             .getResult(0));
      };
      // The k loop; `wide`: A's pairs read as one 32-bit load each.
      auto emitKLoop = [&](bool wide) -> scf::ForOp {
      auto kLoop = scf::ForOp::create(b, loc, cIndex(0), kSteps, cIndex(1), init);
      if (c.quads) {
        // vpdpbusd: acc[j] += sum_{t<4} (A[i, 4kq+t] + 128) B[4kq+t, j], A's
        // quad made unsigned by flipping each byte's sign bit.
        OpBuilder::InsertionGuard g3(b);
        b.setInsertionPointToStart(kLoop.getBody());
        Value kq = kLoop.getInductionVar();
        Value k0 = arith::MulIOp::create(b, loc, kq, cIndex(4));
        SmallVector<Value> bv;
        for (Value col : cols)
          bv.push_back(vector::LoadOp::create(
              b, loc, quadT, bMem,
              ValueRange{kq, arith::MulIOp::create(b, loc, col, cIndex(4))}));
        Value flip = arith::ConstantOp::create(
            b, loc, b.getI32IntegerAttr(int32_t(0x80808080u)));
        auto dot = b.getStringAttr("llvm.x86.avx512.vpdpbusd.512");
        SmallVector<Value> next;
        for (int64_t r = 0; r < rows; ++r) {
          rankValue[c.i] = arith::AddIOp::create(b, loc, i0, cIndex(r));
          Value word;
          if (wide) {
            rankValue[c.k] = k0;
            Value quad = vector::LoadOp::create(
                b, loc, VectorType::get({4}, b.getI8Type()),
                argUnitInner.lookup(c.a.getInput()).first, argIndices(c.a));
            word = vector::ExtractOp::create(
                b, loc,
                vector::BitCastOp::create(
                    b, loc, VectorType::get({1}, b.getI32Type()), quad),
                ArrayRef<int64_t>{0});
          } else {
            // Four byte loads, A[4kq + t] in byte t.
            word = arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(0));
            for (int64_t t = 0; t < 4; ++t) {
              rankValue[c.k] = arith::AddIOp::create(b, loc, k0, cIndex(t));
              Value byte = arith::ExtUIOp::create(b, loc, b.getI32Type(),
                                                  emitLoadRaw(c.a));
              word = arith::OrIOp::create(
                  b, loc, word,
                  arith::ShLIOp::create(
                      b, loc, byte,
                      arith::ConstantOp::create(b, loc,
                                                b.getI32IntegerAttr(8 * t))));
            }
          }
          word = arith::XOrIOp::create(b, loc, word, flip);
          Value a = vector::BitCastOp::create(
              b, loc, quadT, vector::BroadcastOp::create(b, loc, i32v, word));
          dotRow(kLoop, next, i32v, dot, a, bv, r);
        }
        scf::YieldOp::create(b, loc, next);
        rankValue.erase(c.k);
        rankValue.erase(c.i);
      } else if (c.pairs) {
        // vdpbf16ps: acc[j] += A[i, 2kp] B[2kp, j] + A[i, 2kp+1] B[2kp+1, j].
        // The partner of an odd last k is B = 0 and A read at k (in bounds).
        OpBuilder::InsertionGuard g3(b);
        b.setInsertionPointToStart(kLoop.getBody());
        Value kp = kLoop.getInductionVar();
        Value k0 = arith::MulIOp::create(b, loc, kp, cIndex(2));
        Value k1 = minIndex(arith::AddIOp::create(b, loc, k0, cIndex(1)),
                            arith::SubIOp::create(b, loc, kExt, cIndex(1)));
        SmallVector<Value> bv;
        for (Value col : cols)
          bv.push_back(vector::LoadOp::create(
              b, loc, pairT, bMem,
              ValueRange{kp, arith::MulIOp::create(b, loc, col, cIndex(2))}));
        auto dot = b.getStringAttr("llvm.x86.avx512bf16.dpbf16ps.512");
        SmallVector<Value> next;
        for (int64_t r = 0; r < rows; ++r) {
          rankValue[c.i] = arith::AddIOp::create(b, loc, i0, cIndex(r));
          rankValue[c.k] = k0;
          Value a;
          if (wide && aPairs) {
            // The pair (2 kp, 2 kp + 1) of row i of the copy, as one word.
            Value pair = vector::LoadOp::create(
                b, loc, VectorType::get({2}, b.getBF16Type()), aPairs,
                ValueRange{kp, arith::MulIOp::create(b, loc, rankValue[c.i],
                                                     cIndex(2))});
            Value word = vector::ExtractOp::create(
                b, loc,
                vector::BitCastOp::create(
                    b, loc, VectorType::get({1}, b.getI32Type()), pair),
                ArrayRef<int64_t>{0});
            a = vector::BitCastOp::create(
                b, loc, pairT,
                vector::BroadcastOp::create(
                    b, loc, VectorType::get({w}, b.getI32Type()), word));
          } else if (wide) {
            a = pairLoadWide(c.a, w);
          } else {
            Value a0 = emitLoadRaw(c.a);
            rankValue[c.k] = k1;
            Value a1 = emitLoadRaw(c.a);
            a = pairBroadcast(a0, a1);
          }
          dotRow(kLoop, next, vt, dot, a, bv, r);
        }
        scf::YieldOp::create(b, loc, next);
        rankValue.erase(c.k);
        rankValue.erase(c.i);
      } else {
        OpBuilder::InsertionGuard g3(b);
        b.setInsertionPointToStart(kLoop.getBody());
        Value kk = kLoop.getInductionVar();
        rankValue[c.k] = kk;
        SmallVector<Value> bv;
        for (Value col : cols)
          bv.push_back(vector::LoadOp::create(b, loc, vt, bMem,
                                              ValueRange{kk, col}));
        SmallVector<Value> next;
        for (int64_t r = 0; r < rows; ++r) {
          rankValue[c.i] = arith::AddIOp::create(b, loc, i0, cIndex(r));
          Value a = vector::BroadcastOp::create(b, loc, vt, emitLoad(c.a));
          for (int64_t cc = 0; cc < jb; ++cc)
            next.push_back(vector::FMAOp::create(
                b, loc, a, bv[cc], kLoop.getRegionIterArgs()[r * jb + cc]));
        }
        scf::YieldOp::create(b, loc, next);
        rankValue.erase(c.k);
        rankValue.erase(c.i);
      }
      return kLoop;
      };
      SmallVector<Value> kRes;
      if (Value isUnit = c.pairs || c.quads ? pairWideGuard(c) : Value()) {
        // Versioned on the innermost stride of A (known only at run time).
        auto ifOp = scf::IfOp::create(b, loc, ValueRange(init).getTypes(),
                                      isUnit, /*withElse=*/true);
        for (bool wide : {true, false}) {
          OpBuilder::InsertionGuard g3(b);
          b.setInsertionPointToStart(wide ? &ifOp.getThenRegion().front()
                                          : &ifOp.getElseRegion().front());
          scf::YieldOp::create(b, loc, emitKLoop(wide).getResults());
        }
        kRes.assign(ifOp.getResults().begin(), ifOp.getResults().end());
      } else {
        scf::ForOp kLoop = emitKLoop(false);
        kRes.assign(kLoop.getResults().begin(), kLoop.getResults().end());
      }
      if (c.quads) // exact i32 sums to f32 (exact below 2^24)
        for (Value &v : kRes)
          v = arith::SIToFPOp::create(b, loc, vt, v);
      // Scale, condition, store (and the fused reduction) of the tile.
      auto epilogue = [&](bool masked, SmallVector<Value> reduced) {
        for (int64_t r = 0; r < rows; ++r) {
          Value ii = arith::AddIOp::create(b, loc, i0, cIndex(r));
          rankValue[c.i] = ii;
          for (int64_t cc = 0; cc < jb; ++cc) {
            Value v = kRes[r * jb + cc];
            if (c.scale != 1.0)
              v = arith::MulFOp::create(b, loc, v, like(cF32(c.scale), v));
            if (masked) {
              setLanes(cols[cc]);
              Value cond = asBool(emitExpr(c.post));
              clearLanes();
              cond = like(cond, v);
              v = arith::SelectOp::create(b, loc, cond, v, like(fillV, v));
            }
            Value stored = fromF32(v, outElem);
            vector::StoreOp::create(b, loc, stored, outMem, index(ii, cols[cc]));
            if (red >= 0)
              reduced[cc] = combine(gc.einsum(red).reducer, reduced[cc],
                                    toF32(stored));
          }
          rankValue.erase(c.i);
        }
        return reduced;
      };
      SmallVector<Value> reduced(iLoop.getRegionIterArgs());
      if (c.post && keyPartial && int(id) == maskId) {
        // The mask is evaluated only in key tiles it does not keep entirely.
        auto ifOp = scf::IfOp::create(b, loc, ValueRange(reduced).getTypes(),
                                      keyPartial, /*withElse=*/true);
        for (bool masked : {true, false}) {
          OpBuilder::InsertionGuard g4(b);
          Block &blk = masked ? ifOp.getThenRegion().front()
                              : ifOp.getElseRegion().front();
          b.setInsertionPointToStart(&blk);
          SmallVector<Value> out = epilogue(masked, reduced);
          if (!out.empty())
            scf::YieldOp::create(b, loc, out);
        }
        reduced.assign(ifOp.getResults().begin(), ifOp.getResults().end());
      } else {
        reduced = epilogue(bool(c.post), reduced);
      }
      if (!reduced.empty())
        scf::YieldOp::create(b, loc, reduced);
      return SmallVector<Value>(iLoop.getResults());
    };
    SmallVector<Value> carried;
    if (red >= 0)
      carried.assign(jb, arith::ConstantOp::create(
                             b, loc, vt,
                             DenseElementsAttr::get(
                                 vt, b.getF32FloatAttr(float(
                                         identity(gc.einsum(red).reducer))))));
    carried = block(ib, cIndex(0), iMain, carried);
    carried = block(1, iMain, iExt, carried);
    if (red >= 0)
      for (int64_t cc = 0; cc < jb; ++cc)
        vector::StoreOp::create(b, loc,
                                fromF32(carried[cc], gc.einsum(red).elemType),
                                buffers[red].mem, ValueRange{cols[cc]});

  };
  columns(cIndex(0), nMain, jb);
  if (jb > 1)
    columns(nMain, nvec, 1);
}

/// Rounds the buffer [k, row] that `c` reads to bf16 pairs [k / 2, 2 * row]
/// (the valid rows, the partner of an odd last k zero).
void CpuLowering::emitPairCopy(const Contraction &c, Value kExt) {
  int64_t w = options.vectorWidth;
  PairBuffer &pb = pairBuffers[c.pairBuf];
  Value src = buffers[pb.src].mem;
  auto vt = VectorType::get({w}, b.getF32Type());
  auto ht = VectorType::get({w}, b.getBF16Type());
  Value nvec = arith::CeilDivSIOp::create(b, loc, rowValid, cIndex(w));
  emitPairLoop(
      kExt, nvec, 1,
      [&](Value k, Value v) -> Value {
        Value col = arith::MulIOp::create(b, loc, v, cIndex(w));
        return arith::TruncFOp::create(
            b, loc, ht, vector::LoadOp::create(b, loc, vt, src, ValueRange{k, col}));
      },
      [&](Value kp, Value v, Value mixed) {
        vector::StoreOp::create(
            b, loc, mixed, pb.mem,
            ValueRange{kp, arith::MulIOp::create(b, loc, v, cIndex(2 * w))});
      });
}

/// Copies A (a bf16 tensor with unit innermost stride along i) into bf16
/// pairs [k / 2, 2 * i] for the k extent `kExt` of this contraction: rows
/// 2 kp and 2 kp + 1 read as vectors and interleaved (the partner of an odd
/// last k is 0; rows past kExt are never read).
void CpuLowering::emitAPairCopy(const Contraction &c, Value kExt) {
  int64_t w = options.vectorWidth;
  APairBuffer &ab = aPairBuffers[c.aPairBuf];
  Value src = argUnitInner.lookup(c.a.getInput()).first;
  auto ht = VectorType::get({w}, b.getBF16Type());
  emitPairLoop(
      kExt, cIndex(ab.iExtent), w,
      [&](Value k, Value i) -> Value {
        rankValue[c.k] = k;
        rankValue[c.i] = i;
        SmallVector<Value> idx = argIndices(c.a);
        rankValue.erase(c.k);
        rankValue.erase(c.i);
        return vector::LoadOp::create(b, loc, ht, src, idx);
      },
      [&](Value kp, Value i, Value mixed) {
        vector::StoreOp::create(
            b, loc, mixed, ab.mem,
            ValueRange{kp, arith::MulIOp::create(b, loc, i, cIndex(2))});
      });
}

/// The loop both pair copies run: for each pair kp of the k extent `kExt`
/// and each j in [0, jEnd) by `jStep`, the bf16 rows `row(2 kp, j)` and
/// `row(2 kp + 1, j)` (the second clamped into kExt and zeroed past it: the
/// partner of an odd last k) interleaved lane by lane, `store(kp, j, ..)`.
void CpuLowering::emitPairLoop(
    Value kExt, Value jEnd, int64_t jStep,
    function_ref<Value(Value, Value)> row,
    function_ref<void(Value, Value, Value)> store) {
  int64_t w = options.vectorWidth;
  auto ht = VectorType::get({w}, b.getBF16Type());
  Value npair = arith::CeilDivSIOp::create(b, loc, kExt, cIndex(2));
  Value last = arith::SubIOp::create(b, loc, kExt, cIndex(1));
  SmallVector<int64_t> mix;
  for (int64_t j = 0; j < w; ++j)
    mix.append({j, j + w});
  auto kLoop = scf::ForOp::create(b, loc, cIndex(0), npair, cIndex(1));
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(kLoop.getBody());
  Value kp = kLoop.getInductionVar();
  Value k0 = arith::MulIOp::create(b, loc, kp, cIndex(2));
  Value k1 = arith::AddIOp::create(b, loc, k0, cIndex(1));
  Value has1 =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, k1, kExt);
  Value k1c = minIndex(k1, last);
  auto jLoop = scf::ForOp::create(b, loc, cIndex(0), jEnd, cIndex(jStep));
  b.setInsertionPointToStart(jLoop.getBody());
  Value j = jLoop.getInductionVar();
  Value lo = row(k0, j);
  Value hi = row(k1c, j);
  Value zero = arith::ConstantOp::create(
      b, loc, ht, DenseElementsAttr::get(ht, b.getFloatAttr(b.getBF16Type(), 0)));
  hi = arith::SelectOp::create(b, loc, has1, hi, zero);
  store(kp, j, vector::ShuffleOp::create(b, loc, lo, hi, mix));
}

void CpuLowering::emitInitState(unsigned id) {
  GEinsum &e = gc.einsum(id);
  Buffer &buf = buffers[id];
  forRanks(buf.dims, [&] {
    SmallVector<Value> idx{slotIndex(keyBegin)};
    for (unsigned r : buf.dims)
      idx.push_back(rankLocal.lookup(r));
    memref::StoreOp::create(b, loc, fromF32(cF32(e.init.value_or(0.0)), e.elemType),
                              buf.mem, idx);
  });
}

void CpuLowering::emitCopyOut(unsigned result, Value present) {
  unsigned id = gc.yields()[result];
  Buffer &buf = buffers[id];
  Value outMem = argMems[gc.numArgs() + result];
  auto ifOp = scf::IfOp::create(b, loc, present, /*withElse=*/false);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&ifOp.getThenRegion().front());
  forRanks(buf.dims, [&] {
    SmallVector<Value> src, dst;
    for (unsigned r : buf.dims)
      src.push_back(rankLocal.lookup(r));
    for (unsigned r : gc.valueRanks(id))
      dst.push_back(rankValue.lookup(r));
    Value v = memref::LoadOp::create(b, loc, buf.mem, src);
    Type outElem = cast<MemRefType>(outMem.getType()).getElementType();
    memref::StoreOp::create(b, loc, fromF32(toF32(v), outElem), outMem, dst);
  });
}

void CpuLowering::emitKeyTile(Value tile, Value step, Value notFull) {
  keyStep = step;
  rankValue[key.outer] = tile;
  Value start = arith::MulIOp::create(b, loc, tile, cIndex(key.tile));
  keyValid = key.ragged
                 ? minIndex(cIndex(key.tile),
                            arith::SubIOp::create(b, loc, rankSize[key.rank],
                                                  start))
                 : cIndex(key.tile);
  // Partial: outside the static full range, or not full by the metadata.
  if (fullBegin) {
    keyPartial = arith::OrIOp::create(
        b, loc,
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, tile,
                              fullBegin),
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, tile,
                              fullEnd));
    if (notFull)
      keyPartial = arith::OrIOp::create(b, loc, keyPartial, notFull);
  }
  for (unsigned id : loop) {
    if (!maskOnly.contains(id) || !keyPartial) {
      emitEinsum(id);
      continue;
    }
    // Read only by the mask, which full tiles do not evaluate.
    auto ifOp = scf::IfOp::create(b, loc, keyPartial, /*withElse=*/false);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&ifOp.getThenRegion().front());
    emitEinsum(id);
  }
  rankValue.erase(key.outer);
  keyValid = keyPartial = Value();
}

FailureOr<func::FuncOp> CpuLowering::run() {
  if (failed(place()))
    return failure();
  MLIRContext *ctx = cascade->getContext();
  b.setInsertionPoint(cascade);

  // Signature.
  auto dynMemref = [&](ArrayRef<int64_t> shapeRank, Type elem) {
    SmallVector<int64_t> shape(shapeRank.size(), ShapedType::kDynamic);
    auto layout = StridedLayoutAttr::get(
        ctx, ShapedType::kDynamic,
        SmallVector<int64_t>(shapeRank.size(), ShapedType::kDynamic));
    return MemRefType::get(shape, elem, layout);
  };
  SmallVector<Type> argTypes{
      MemRefType::get({ShapedType::kDynamic}, b.getI64Type())};
  FunctionType ft = cascade.getFunctionType();
  SmallVector<Type> tensorTypes(ft.getInputs());
  llvm::append_range(tensorTypes, ft.getResults());
  for (Type t : tensorTypes) {
    auto nt = cast<NamedTensorType>(t);
    SmallVector<int64_t> r(nt.getRanks().size(), 0);
    argTypes.push_back(dynMemref(r, nt.getElementType()));
  }
  argTypes.push_back(b.getIndexType());
  argTypes.push_back(b.getIndexType());
  auto func = func::FuncOp::create(b, loc, cpuTaskFunctionName(cascade),
                                     b.getFunctionType(argTypes, {}));
  func->setAttr("llvm.emit_c_interface", UnitAttr::get(ctx));
  Block *entry = func.addEntryBlock();
  b.setInsertionPointToStart(entry);
  Value sizes = entry->getArgument(0);
  for (unsigned i = 0; i < tensorTypes.size(); ++i)
    argMems.push_back(entry->getArgument(1 + i));
  for (unsigned i = 0; i < ft.getNumInputs(); ++i)
    if (auto mt = cast<MemRefType>(argMems[i].getType());
        mt.getRank() > 0 &&
        ((options.bf16Dot && mt.getElementType().isBF16()) ||
         (options.vnni && mt.getElementType().isInteger(8)))) {
      // The same view with the innermost stride declared 1: a bf16 pair
      // (k, k + 1) along the innermost dimension is then one 32-bit load.
      auto md = memref::ExtractStridedMetadataOp::create(b, loc, argMems[i]);
      SmallVector<OpFoldResult> sizesOf, stridesOf;
      for (Value v : md.getSizes())
        sizesOf.push_back(v);
      for (Value v : md.getStrides().drop_back())
        stridesOf.push_back(v);
      stridesOf.push_back(b.getIndexAttr(1));
      SmallVector<int64_t> st(mt.getRank(), ShapedType::kDynamic);
      st.back() = 1;
      auto unitT = MemRefType::get(
          mt.getShape(), mt.getElementType(),
          StridedLayoutAttr::get(ctx, ShapedType::kDynamic, st));
      Value unit = memref::ReinterpretCastOp::create(
          b, loc, unitT, argMems[i], md.getOffset(), sizesOf, stridesOf);
      Value isUnit = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                           md.getStrides().back(), cIndex(1));
      argUnitInner[i] = {unit, isUnit};
    }
  Value begin = entry->getArgument(argTypes.size() - 2);
  Value end = entry->getArgument(argTypes.size() - 1);

  // Rank sizes: declared ranks from %sizes (or static), partitions derived.
  unsigned declared = cascade.getRanks().size();
  rankSize.resize(gc.numRanks());
  for (unsigned g = 0; g < declared; ++g) {
    if (auto s = gc.staticSize(g)) {
      rankSize[g] = cIndex(*s);
      continue;
    }
    Value v = memref::LoadOp::create(b, loc, sizes, ValueRange{cIndex(g)});
    rankSize[g] = arith::IndexCastOp::create(b, loc, b.getIndexType(), v);
  }
  for (auto part : cascade.getPartitions().getAsRange<PartitionAttr>()) {
    unsigned r = *gc.rankId(part.getRank().getValue());
    unsigned o = *gc.rankId(part.getOuter().getValue());
    unsigned i = *gc.rankId(part.getInner().getValue());
    rankSize[i] = cIndex(part.getTile());
    rankSize[o] =
        arith::CeilDivSIOp::create(b, loc, rankSize[r], cIndex(part.getTile()));
  }
  SmallVector<Value> present;
  for (unsigned r = 0; r < ft.getNumResults(); ++r) {
    // After the declared ranks and the partition ranks arguments use.
    unsigned ranks = declared + cpuArgPartitionRanks(cascade).size();
    Value flag = memref::LoadOp::create(b, loc, sizes, ValueRange{cIndex(ranks + ft.getNumInputs() + r)});
    present.push_back(arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, flag,
        arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(0))));
  }

  if (linear) {
    emitLinear(begin, end, present);
    func::ReturnOp::create(b, loc);
    if (hadError) {
      func.erase();
      return failure();
    }
    return func;
  }

  // Per-call scratch: one buffer per Einsum.
  SmallVector<Value> allocs;
  for (unsigned id : gc.body()) {
    Buffer &buf = buffers[id];
    SmallVector<int64_t> shape;
    if (buf.iterative)
      shape.push_back(2);
    llvm::append_range(shape, buf.extents);
    auto type = MemRefType::get(shape, gc.einsum(id).elemType);
    buf.mem = memref::AllocOp::create(b, loc, type, b.getI64IntegerAttr(64));
    allocs.push_back(buf.mem);
  }

  // Packed operands of the contractions ([k, row], zero rows past the end).
  // In bf16 pairs: [ceil(k / 2), 2 * row], the odd row's partner zero.
  for (APairBuffer &ab : aPairBuffers) {
    auto type = MemRefType::get({(ab.kExtent + 1) / 2, 2 * ab.iExtent},
                                b.getBF16Type());
    ab.mem = memref::AllocOp::create(b, loc, type, b.getI64IntegerAttr(64));
    allocs.push_back(ab.mem);
  }
  for (PairBuffer &pb : pairBuffers) {
    auto type = MemRefType::get({(pb.kExtent + 1) / 2, 2 * plan.rowTile},
                                b.getBF16Type());
    pb.mem = memref::AllocOp::create(b, loc, type, b.getI64IntegerAttr(64));
    allocs.push_back(pb.mem);
  }
  for (Pack &p : packs) {
    int64_t kExt = *gc.staticSize(p.k);
    auto type = p.quads ? MemRefType::get({kExt / 4, 4 * plan.rowTile},
                                          b.getI8Type())
                : p.pairs ? MemRefType::get({(kExt + 1) / 2, 2 * plan.rowTile},
                                            b.getBF16Type())
                          : MemRefType::get({kExt, plan.rowTile}, b.getF32Type());
    p.mem = memref::AllocOp::create(b, loc, type, b.getI64IntegerAttr(64));
    allocs.push_back(p.mem);
    if (p.quads) {
      p.sum = memref::AllocOp::create(
          b, loc, MemRefType::get({plan.rowTile}, b.getI32Type()),
          b.getI64IntegerAttr(64));
      allocs.push_back(p.sum);
    }
    Value zero = p.quads ? arith::ConstantOp::create(b, loc, b.getI8Type(),
                                                     b.getI8IntegerAttr(0))
                               .getResult()
                 : p.pairs ? arith::ConstantOp::create(
                                 b, loc, b.getBF16Type(),
                                 b.getFloatAttr(b.getBF16Type(), 0.0))
                                 .getResult()
                           : cF32(0);
    int64_t d0 = type.getShape()[0], d1 = type.getShape()[1];
    auto l1 = scf::ForOp::create(b, loc, cIndex(0), cIndex(d0), cIndex(1));
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(l1.getBody());
    auto l2 = scf::ForOp::create(b, loc, cIndex(0), cIndex(d1), cIndex(1));
    b.setInsertionPointToStart(l2.getBody());
    memref::StoreOp::create(
        b, loc, zero, p.mem,
        ValueRange{l1.getInductionVar(), l2.getInductionVar()});
  }

  // Row-side metadata of the mask, packed per task ([row]).
  for (RowPack &p : rowPacks) {
    Type elem = cast<MemRefType>(argMems[p.load.getInput()].getType())
                    .getElementType();
    p.mem = memref::AllocOp::create(
        b, loc, MemRefType::get({plan.rowTile}, elem), b.getI64IntegerAttr(64));
    allocs.push_back(p.mem);
  }

  // The task loop.
  auto taskLoop = scf::ForOp::create(b, loc, begin, end, cIndex(1));
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(taskLoop.getBody());
    Value t = taskLoop.getInductionVar();
    for (int k = int(plan.taskRanks.size()) - 1; k >= 0; --k) {
      unsigned g = plan.taskRanks[k];
      Value count = rankSize[g];
      if (int(g) == plan.rowRank)
        count = arith::CeilDivSIOp::create(b, loc, count, cIndex(plan.rowTile));
      Value idx = arith::RemUIOp::create(b, loc, t, count);
      t = arith::DivUIOp::create(b, loc, t, count);
      if (int(g) == plan.rowRank) {
        rowBase = arith::MulIOp::create(b, loc, idx, cIndex(plan.rowTile));
        rowValid = minIndex(cIndex(plan.rowTile),
                            arith::SubIOp::create(b, loc, rankSize[g], rowBase));
      } else {
        rankValue[g] = idx;
      }
    }
    for (Pack &p : packs)
      emitPack(p);
    emitRowPacks();
    for (unsigned id : pre)
      emitEinsum(id);
    if (!loop.empty()) {
      auto [first, last] = keyTileRange();
      // With segment ids each key tile is classified in the loop, and the
      // running state advances only over the tiles kept: its step is the
      // count of tiles processed, not the tile index.
      bool counted = !segments.empty() || !power2s.empty();
      keyBegin = counted ? cIndex(0) : first;
      for (unsigned id : loop)
        if (buffers[id].iterative)
          emitInitState(id);
      SmallVector<Value> init;
      if (counted)
        init.push_back(cIndex(0));
      auto keyLoop = scf::ForOp::create(b, loc, first, last, cIndex(1), init);
      {
        OpBuilder::InsertionGuard inner(b);
        b.setInsertionPointToStart(keyLoop.getBody());
        Value tile = keyLoop.getInductionVar();
        if (!counted) {
          emitKeyTile(tile, tile);
        } else {
          rankValue[key.outer] = tile;
          Value start = arith::MulIOp::create(b, loc, tile, cIndex(key.tile));
          keyValid = key.ragged
                         ? minIndex(cIndex(key.tile),
                                    arith::SubIOp::create(
                                        b, loc, rankSize[key.rank], start))
                         : cIndex(key.tile);
          auto [kept, full] = classifyKeyTile();
          Value step = keyLoop.getRegionIterArgs()[0];
          auto ifOp = scf::IfOp::create(b, loc, TypeRange{b.getIndexType()},
                                        kept, /*withElse=*/true);
          {
            OpBuilder::InsertionGuard g2(b);
            b.setInsertionPointToStart(&ifOp.getThenRegion().front());
            Value notFull = arith::XOrIOp::create(
                b, loc, full,
                arith::ConstantOp::create(b, loc, b.getBoolAttr(true)));
            emitKeyTile(tile, step, notFull);
            scf::YieldOp::create(
                b, loc, ValueRange{arith::AddIOp::create(b, loc, step, cIndex(1))});
            b.setInsertionPointToStart(&ifOp.getElseRegion().front());
            scf::YieldOp::create(b, loc, ValueRange{step});
          }
          scf::YieldOp::create(b, loc, ifOp.getResults());
        }
      }
      keyEnd = counted ? keyLoop.getResult(0) : last;
    }
    for (unsigned id : post)
      emitEinsum(id);
    for (unsigned r = 0; r < gc.yields().size(); ++r)
      emitCopyOut(r, present[r]);
  }
  for (Value a : allocs)
    memref::DeallocOp::create(b, loc, a);
  func::ReturnOp::create(b, loc);
  if (hadError) {
    func.erase();
    return failure();
  }
  return func;
}

#include "LowerCPULinear.inc"

//===----------------------------------------------------------------------===//
// The pass
//===----------------------------------------------------------------------===//

struct AttnLowerCpuPass : impl::AttnLowerCpuPassBase<AttnLowerCpuPass> {
  using Base::Base;
  void runOnOperation() override {
    CpuLowerOptions opts;
    opts.rowTile = rowTile;
    opts.vectorize = vectorize;
    opts.vectorWidth = vectorWidth;
    opts.vectorRegisters = vectorRegisters;
    opts.bf16Dot = bf16Dot;
    opts.vnni = vnni;
    SmallVector<CascadeOp> cascades;
    getOperation().walk([&](CascadeOp c) { cascades.push_back(c); });
    for (CascadeOp c : cascades) {
      if (failed(lowerCascadeToCpu(c, opts)))
        return signalPassFailure();
      c.erase();
    }
  }
};

} // namespace

CpuRegisterTile cpuRegisterTile(const CpuLowerOptions &options) {
  CpuRegisterTile t;
  t.rows = 4;
  int64_t chunks = std::max<int64_t>(1, options.rowTile / options.vectorWidth);
  t.cols = 1;
  for (int64_t c : {4, 2})
    if (chunks % c == 0 && t.rows * c + c + 2 <= options.vectorRegisters) {
      t.cols = c;
      break;
    }
  return t;
}

SmallVector<CpuArgPartitionRank> cpuArgPartitionRanks(CascadeOp cascade) {
  llvm::StringSet<> used;
  FunctionType ft = cascade.getFunctionType();
  for (TypeRange types : {TypeRange(ft.getInputs()), TypeRange(ft.getResults())})
    for (Type t : types)
      if (auto nt = dyn_cast<NamedTensorType>(t))
        for (StringAttr r : nt.getRanks())
          used.insert(r.getValue());
  SmallVector<CpuArgPartitionRank> out;
  for (auto part : cascade.getPartitions().getAsRange<PartitionAttr>())
    for (bool outer : {true, false}) {
      StringRef n = outer ? part.getOuter().getValue() : part.getInner().getValue();
      if (used.contains(n))
        out.push_back({n.str(), outer ? int64_t(-1) : part.getTile(),
                       part.getRank().getValue().str(), part.getTile(), outer});
    }
  return out;
}

CpuTileQuery cpuTileQuery(CascadeOp cascade) {
  llvm::StringMap<int64_t> size;
  for (auto r : cascade.getRanks().getAsRange<RankAttr>())
    size[r.getName().getValue()] = r.getSize();
  auto isStatic = [&](StringRef r) {
    auto it = size.find(r);
    return it != size.end() && !ShapedType::isDynamic(it->second);
  };
  CpuTileQuery q;
  int64_t d = 0, dv = 0;
  for (EinsumOp op : cascade.getBodyBlock().getOps<EinsumOp>()) {
    if (ExprAttr cond = op.getCondAttr())
      cond.walk([&](ExprAttr x) {
        if (x.getKind() == ExprKind::Index)
          q.masked = true;
        if (x.getKind() == ExprKind::Load && x.getInput() >= 0 &&
            x.getInput() < int64_t(op->getNumOperands())) {
          Value v = op->getOperand(x.getInput());
          if (isa<BlockArgument>(v) &&
              isa<IntegerType>(cast<NamedTensorType>(v.getType())
                                   .getElementType()))
            q.masked = true;
        }
      });
    if (op.getReducer() != Reducer::Sum || op.getReduced().empty())
      continue;
    bool allStatic = true;
    int64_t reduced = 1;
    for (StringRef r : op.getReduced().getAsValueRange<StringAttr>()) {
      allStatic &= isStatic(r);
      if (isStatic(r))
        reduced *= size.lookup(r);
    }
    if (allStatic) {
      d = std::max(d, reduced);
      continue;
    }
    int64_t out = 1;
    for (StringAttr r : cast<NamedTensorType>(op.getType()).getRanks())
      if (isStatic(r.getValue()))
        out *= size.lookup(r.getValue());
    dv = std::max(dv, out);
  }
  if (d > 0)
    q.headDim = d;
  if (dv > 1)
    q.valueDim = dv;
  return q;
}

CpuTiles cpuTileModel(const CpuLowerOptions &options,
                      const CpuCacheSizes &caches, const CpuTileQuery &query) {
  CpuLowerOptions o = options;
  o.rowTile = 64;
  CpuRegisterTile reg = cpuRegisterTile(o);
  int64_t block = reg.cols * options.vectorWidth;
  int64_t dd = query.headDim + query.valueDim;
  CpuTiles t;
  std::string why;
  llvm::raw_string_ostream os(why);
  int64_t r = llvm::alignTo(64, block);
  while (r > block && r * dd * 4 > caches.l2 / 4)
    r = std::max(block, r / 2);
  os << "row tile " << r << ": Q pack + running output " << r * dd * 4 / 1024
     << " KiB (<= L2/4 = " << caches.l2 / 4 / 1024 << " KiB or the floor "
     << block << ")";
  int64_t k = 16;
  for (int64_t c : {128, 64, 32, 16}) {
    bool l1 = c * block * 4 <= 2 * caches.l1d / 3;
    bool l2 = c * dd * 4 <= caches.l2 / 4;
    bool mask = !query.masked || c <= r;
    if (l1 && l2 && mask) {
      k = c;
      break;
    }
  }
  os << "; key tile " << k << ": scores block " << k * block * 4 / 1024
     << " KiB (<= 2/3 L1d = " << 2 * caches.l1d / 3 / 1024
     << " KiB), K + V tiles " << k * dd * 4 / 1024 << " KiB (<= L2/4)"
     << (query.masked ? ", <= row tile (masked)" : "");
  t.rowTile = r;
  t.keyTile = k;
  t.reason = os.str();
  return t;
}

FailureOr<CpuTaskPlan> planCpuTasks(CascadeOp cascade,
                                    const CpuLowerOptions &options,
                                    std::string &why) {
  if (isQuantPrologue(cascade))
    return planPrologueTasks(cascade, why);
  GlobalCascade gc(cascade);
  return planTasks(gc, options, why);
}

std::string cpuTaskFunctionName(CascadeOp cascade) {
  return (cascade.getSymName() + "_tasks").str();
}

FailureOr<func::FuncOp> lowerCascadeToCpu(CascadeOp cascade,
                                          const CpuLowerOptions &options) {
  if (isQuantPrologue(cascade))
    return lowerPrologueToCpu(cascade);
  return CpuLowering(cascade, options).run();
}

namespace {
/// exp on f32 in 13 operations (upstream's approximation takes 26, and exp
/// dominates the softmax part of attention):
///   x = clamp(x, -127 ln2, 128 ln2)    -inf gives 0, +inf and NaN pass
///   k = roundeven(x log2 e)
///   r = x - k ln2                      (two FMAs: Cody-Waite, ln2 = C1 + C2)
///   p = e^r on [-ln2/2, ln2/2]         (degree-5 minimax, rel. error 9.2e-8)
///   result = p * 2^k                   (2^k built from k + 127 in the
///                                       exponent bits: 0 at k = -127)
/// Maximum relative error about 2e-7 in float. Departures from IEEE expf:
/// results below 2^-126.5 are flushed to 0, and x >= 88.38 gives +inf (the
/// true overflow is at 88.72). NaN gives NaN.
struct FastExpF32 : OpRewritePattern<math::ExpOp> {
  FastExpF32(MLIRContext *ctx) : OpRewritePattern(ctx, /*benefit=*/2) {}
  LogicalResult matchAndRewrite(math::ExpOp op,
                                PatternRewriter &rw) const override {
    Type t = op.getType();
    if (!getElementTypeOrSelf(t).isF32())
      return failure();
    Location loc = op.getLoc();
    auto vt = dyn_cast<VectorType>(t);
    Type it = vt ? Type(VectorType::get(vt.getShape(), rw.getI32Type()))
                 : Type(rw.getI32Type());
    auto f = [&](double v) -> Value {
      Attribute a = rw.getF32FloatAttr(float(v));
      if (vt)
        return arith::ConstantOp::create(rw, loc, vt,
                                         DenseElementsAttr::get(vt, a));
      return arith::ConstantOp::create(rw, loc, cast<TypedAttr>(a));
    };
    auto i = [&](int32_t v) -> Value {
      Attribute a = rw.getI32IntegerAttr(v);
      if (vt)
        return arith::ConstantOp::create(
            rw, loc, cast<ShapedType>(it), DenseElementsAttr::get(cast<ShapedType>(it), a));
      return arith::ConstantOp::create(rw, loc, cast<TypedAttr>(a));
    };
    using P = arith::CmpFPredicate;
    Value x = op.getOperand();
    Value lo = f(-127.0 * M_LN2), hi = f(128.0 * M_LN2);
    x = arith::SelectOp::create(
        rw, loc, arith::CmpFOp::create(rw, loc, P::OLT, x, lo), lo, x);
    x = arith::SelectOp::create(
        rw, loc, arith::CmpFOp::create(rw, loc, P::OGT, x, hi), hi, x);
    Value k = math::RoundEvenOp::create(
        rw, loc, arith::MulFOp::create(rw, loc, x, f(M_LOG2E)));
    // ln 2 = C1 + C2, C1 with 9 significant bits (exact k * C1).
    Value r = math::FmaOp::create(rw, loc, k, f(-0.693359375), x);
    r = math::FmaOp::create(rw, loc, k, f(2.12194440e-4), r);
    // Minimax for the relative error with c[0] = 1 (so exp(0) = 1).
    const double c[] = {1.0,             9.999997072e-01, 4.999914953e-01,
                        1.666763620e-01, 4.189792993e-02, 8.290314750e-03};
    Value p = f(c[5]);
    for (int d = 4; d >= 0; --d)
      p = math::FmaOp::create(rw, loc, p, r, f(c[d]));
    // k + 127 lands in the low mantissa bits of k + 127 + 1.5 * 2^23 (k is
    // an integer in [-127, 128]); shifted into the exponent field it is
    // 2^k. Integer operations keep NaN harmless (no float-to-int poison).
    Value n = arith::AddFOp::create(rw, loc, k, f(127.0 + 12582912.0));
    Value bits = arith::ShLIOp::create(
        rw, loc, arith::BitcastOp::create(rw, loc, it, n), i(23));
    Value scale = arith::BitcastOp::create(rw, loc, t, bits);
    rw.replaceOp(op, arith::MulFOp::create(rw, loc, p, scale));
    return success();
  }
};

/// Polynomial approximations of exp, log, tanh... on vectors (upstream's
/// patterns; the stock lowering would call libm once per lane).
struct CpuMathApproximationPass
    : PassWrapper<CpuMathApproximationPass, OperationPass<ModuleOp>> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(CpuMathApproximationPass)
  StringRef getArgument() const override { return "attn-cpu-math-approx"; }
  void getDependentDialects(DialectRegistry &registry) const override {
    registry.insert<vector::VectorDialect, arith::ArithDialect,
                    math::MathDialect>();
  }
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FastExpF32>(&getContext());
    populateMathPolynomialApproximationPatterns(patterns);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};
} // namespace

void buildCpuToLLVMPipeline(OpPassManager &pm) {
  pm.addPass(std::make_unique<CpuMathApproximationPass>());
  pm.addPass(arith::createArithExpandOpsPass());
  pm.addPass(createSCFToControlFlowPass());
  pm.addPass(createConvertVectorToLLVMPass());
  pm.addPass(createConvertMathToLLVMPass());
  pm.addPass(createConvertMathToLibmPass());
  pm.addPass(memref::createExpandStridedMetadataPass());
  pm.addPass(createFinalizeMemRefToLLVMConversionPass());
  pm.addPass(createArithToLLVMConversionPass());
  pm.addPass(createConvertFuncToLLVMPass());
  pm.addPass(createConvertControlFlowToLLVMPass());
  pm.addPass(createConvertIndexToLLVMPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
  pm.addPass(createCanonicalizerPass());
}

} // namespace mlir::attn
