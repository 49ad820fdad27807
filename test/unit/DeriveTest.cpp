//===- DeriveTest.cpp - the derived cascades equal the plain ones ----------===//
//
// Property tests of attn-derive-online and attn-split-kv: every example the
// passes rewrite is run in the reference interpreter before and after the
// rewrite, on random inputs with ordinary and with large logits (|s| up to
// ~1e4), with lengths that tiles do not divide, rows whose keys are all
// masked, and several tile sizes, in the 1-pass and the 2-pass form, split
// in (O, LSE) form and in (max, sum) form. Integer metadata is valid:
// monotone cu_seqlens starting at 0 (varlen), a shuffled block table whose
// pages are shared between sequences (paged KV), CSR block lists with empty
// rows (block-sparse). The outputs must agree within 1e-12 (relative to
// max(1, |value|)), with infinities and NaNs in the same places. The
// rewrite must also be certified: the pass analysis of the result gives the
// requested pass count.
//
//===----------------------------------------------------------------------===//

#include "HandReference.h"
#include "attn/Analysis.h"
#include "attn/Interpreter.h"
#include "attn/Passes.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/raw_ostream.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <numeric>
#include <random>
#include <set>

using namespace mlir;
namespace handref = ::attn::handref;

namespace {

struct Loaded {
  MLIRContext ctx;
  OwningOpRef<ModuleOp> module;
  explicit Loaded(const std::string &path) {
    ctx.loadDialect<mlir::attn::AttnDialect>();
    module = parseSourceFile<ModuleOp>(path, &ctx);
    REQUIRE(module);
  }
  mlir::attn::CascadeOp cascade() {
    return *module->getOps<mlir::attn::CascadeOp>().begin();
  }
};

using Rng = std::mt19937_64;

/// Integer metadata of an argument, by name: filled in by the caller's
/// generator (valid cu_seqlens, block tables, CSR lists); none: segment ids
/// in {0, 1, 2} (rows whose segment has no key are empty).
using MetadataMaker = std::function<bool(const std::string &name,
                                         const llvm::StringMap<int64_t> &sizes,
                                         Rng &rng, mlir::attn::Tensor &t)>;

/// Inputs for `cascade`: floats uniform in [-amplitude, amplitude] (values
/// uniform in [-1, 1]), integers from `metadata` or segment ids.
std::vector<mlir::attn::Tensor> makeInputs(mlir::attn::CascadeOp cascade,
                                           const llvm::StringMap<int64_t> &sizes,
                                           uint64_t seed, double amplitude,
                                           const MetadataMaker &metadata) {
  Rng rng(seed);
  auto uniform = [&](double lo, double hi) {
    return lo + (hi - lo) * ((double)(rng() >> 11) * 0x1.0p-53);
  };
  std::vector<mlir::attn::Tensor> inputs;
  for (unsigned i = 0; i < cascade.getFunctionType().getNumInputs(); ++i) {
    auto type = cast<mlir::attn::NamedTensorType>(cascade.getFunctionType().getInput(i));
    mlir::attn::Tensor t;
    t.shape = mlir::attn::shapeOf(type, sizes);
    t.data.resize(t.numElements());
    std::string name = cast<StringAttr>(cascade.getArgNames()[i]).str();
    if (isa<IntegerType>(type.getElementType())) {
      if (!metadata || !metadata(name, sizes, rng, t))
        for (double &v : t.data)
          v = (double)(rng() % 3);
    } else {
      double a = name.rfind("v", 0) == 0 ? 1.0 : amplitude;
      for (double &v : t.data)
        v = uniform(-a, a);
    }
    inputs.push_back(std::move(t));
  }
  return inputs;
}

void requireSame(const mlir::attn::Tensor &got, const mlir::attn::Tensor &want) {
  REQUIRE(got.shape == want.shape);
  double worst = 0;
  for (size_t i = 0; i < got.data.size(); ++i) {
    double g = got.data[i], w = want.data[i];
    if (std::isnan(w) || std::isnan(g)) {
      REQUIRE(std::isnan(g) == std::isnan(w));
      continue;
    }
    if (std::isinf(w) || std::isinf(g)) {
      REQUIRE(g == w);
      continue;
    }
    worst = std::max(worst, std::fabs(g - w) / std::max(1.0, std::fabs(w)));
  }
  INFO("worst relative error " << worst);
  REQUIRE(worst <= 1e-12);
}

/// A rewrite: attn-derive-online (tile, two-pass, rank p), attn-split-kv
/// (split size, merge, detected ranks), or a textual pipeline.
struct Rewrite {
  enum Kind { Derive, Split, Pipeline } kind = Derive;
  int64_t tile = 64;
  bool twoPass = false;
  std::string merge = "lse";
  std::function<void(PassManager &)> pipeline;
  /// The ranks whose pass count must be certified (derivations only).
  std::vector<std::string> certify = {"p"};
};

Rewrite derive(int64_t tile, bool twoPass = false) {
  Rewrite r;
  r.tile = tile;
  r.twoPass = twoPass;
  return r;
}
Rewrite split(int64_t size, std::string merge = "lse") {
  Rewrite r;
  r.kind = Rewrite::Split;
  r.tile = size;
  r.merge = std::move(merge);
  r.certify.clear();
  return r;
}

std::string print(Operation *op) {
  std::string s;
  llvm::raw_string_ostream os(s);
  op->print(os);
  return s;
}

/// Rewrites `path` and compares on the given sizes. Returns false if the
/// pass left the cascade unchanged.
bool rewriteAndCompare(const std::string &path, const Rewrite &rw,
                       const std::vector<llvm::StringMap<int64_t>> &sizeSets,
                       const MetadataMaker &metadata = {}) {
  Loaded plain(path), derived(path);
  {
    PassManager pm(&derived.ctx);
    if (rw.kind == Rewrite::Split) {
      mlir::attn::AttnSplitKVPassOptions options;
      options.splitSize = rw.tile;
      options.merge = rw.merge;
      pm.addPass(mlir::attn::createAttnSplitKVPass(options));
    } else if (rw.kind == Rewrite::Derive) {
      mlir::attn::AttnDeriveOnlinePassOptions options;
      options.tile = rw.tile;
      options.twoPass = rw.twoPass;
      options.rank = "p";
      pm.addPass(mlir::attn::createAttnDeriveOnlinePass(options));
    } else {
      rw.pipeline(pm);
    }
    // Remarks (refusals) are not failures; silence them.
    ScopedDiagnosticHandler quiet(&derived.ctx, [](Diagnostic &d) {
      return success(d.getSeverity() == DiagnosticSeverity::Remark);
    });
    REQUIRE(succeeded(pm.run(*derived.module)));
  }
  mlir::attn::CascadeOp before = plain.cascade(), after = derived.cascade();
  if (print(before) == print(after))
    return false;
  mlir::attn::PassAnalysis analysis(after);
  for (const std::string &r : rw.certify) {
    INFO("certificate over " << r);
    REQUIRE(analysis.getPassCount(r) == (rw.twoPass ? 2u : 1u));
  }

  uint64_t seed = 7;
  for (const auto &given : sizeSets) {
    for (double amplitude : {1.0, 40.0}) {
      llvm::StringMap<int64_t> sizes;
      std::string err = mlir::attn::resolveRankSizes(before, {}, given, sizes);
      INFO(err);
      REQUIRE(err.empty());
      auto inputs = makeInputs(before, sizes, ++seed, amplitude, metadata);
      mlir::attn::InterpretOptions options;
      options.sizes = given;
      options.roundToTypes = false;
      mlir::attn::InterpretResult want = mlir::attn::interpret(before, inputs, options);
      mlir::attn::InterpretResult got = mlir::attn::interpret(after, inputs, options);
      std::string sizeText;
      for (const auto &kv : given)
        sizeText += " " + kv.getKey().str() + "=" + std::to_string(kv.getValue());
      INFO(path << (rw.kind == Rewrite::Split ? " split " : " tile ") << rw.tile
                << (rw.twoPass ? " two-pass" : "") << " merge " << rw.merge
                << " amplitude " << amplitude << sizeText);
      INFO(want.error << got.error);
      REQUIRE(want.ok());
      REQUIRE(got.ok());
      REQUIRE(got.outputs.size() == want.outputs.size());
      for (size_t i = 0; i < got.outputs.size(); ++i)
        requireSame(got.outputs[i], want.outputs[i]);
    }
  }
  return true;
}

/// Lengths (m, p): single query and key, tiles that do not divide p, more
/// queries than keys (empty rows for bottom-right causal masks).
std::vector<llvm::StringMap<int64_t>>
sizesFor(const std::string &name,
         std::initializer_list<std::pair<int64_t, int64_t>> lengths) {
  std::vector<llvm::StringMap<int64_t>> sets;
  for (auto [m, p] : lengths) {
    llvm::StringMap<int64_t> s;
    s["b"] = 1;
    s["h"] = name == "gqa" ? 4 : name == "decode-split-kv" ? 8 : 1;
    s["m"] = m;
    s["p"] = p;
    sets.push_back(s);
  }
  return sets;
}

std::string examplePath(const std::string &name) {
  return std::string(ATTN_SOURCE_DIR) + "/examples/" + name + ".mlir";
}

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/// `parts` nonnegative integers summing to at most `total` (some zero).
std::vector<int64_t> randomLengths(Rng &rng, int64_t total, int64_t parts) {
  std::vector<int64_t> cuts = {0, total};
  for (int64_t i = 0; i + 1 < parts; ++i)
    cuts.push_back((int64_t)(rng() % (total + 1)));
  std::sort(cuts.begin(), cuts.end());
  std::vector<int64_t> lengths;
  for (int64_t i = 0; i < parts; ++i)
    lengths.push_back(cuts[i + 1] - cuts[i]);
  // An empty sequence, and padding at the end: shorten the last one.
  if (parts > 2)
    lengths[1] = 0;
  if (lengths.back() > 0)
    lengths.back() -= (int64_t)(rng() % (lengths.back() + 1)) / 2;
  return lengths;
}

/// varlen: cu_seqlens_q and cu_seqlens_k, |n| = S + 1 boundaries, monotone
/// from 0; sequence 1 has no tokens, padding follows the last one.
bool varlenMetadata(const std::string &name, const llvm::StringMap<int64_t> &sizes,
                    Rng &rng, mlir::attn::Tensor &t) {
  int64_t total = sizes.lookup(name == "cu_seqlens_q" ? "m" : "p");
  std::vector<int64_t> lengths = randomLengths(rng, total, sizes.lookup("n") - 1);
  t.data[0] = 0;
  for (size_t s = 0; s < lengths.size(); ++s)
    t.data[s + 1] = t.data[s] + (double)lengths[s];
  return true;
}

/// paged-kv: |b| sequences over a pool of |n| pages of 16 tokens. Every
/// sequence starts with the same `shared` pages (a common prompt), then has
/// its own; the pool is shuffled. seq_lens: sequence 0 has |p| tokens, the
/// others fewer, the last none (an idle slot). Unused table entries are -1
/// (reading one is an error).
struct PagedLayout {
  int64_t pagesPerSeq, shared;
  std::vector<double> table, lens;
  PagedLayout(const llvm::StringMap<int64_t> &sizes, Rng &rng) {
    int64_t b = sizes.lookup("b"), p = sizes.lookup("p"), n = sizes.lookup("n");
    pagesPerSeq = ceilDiv(p, 16);
    shared = std::min<int64_t>(pagesPerSeq, 2);
    std::vector<int64_t> pool(n);
    std::iota(pool.begin(), pool.end(), 0);
    std::shuffle(pool.begin(), pool.end(), rng);
    size_t next = shared;
    for (int64_t s = 0; s < b; ++s) {
      int64_t len = s == 0 ? p : s == b - 1 ? 0 : (int64_t)(rng() % (p + 1));
      lens.push_back((double)len);
      for (int64_t j = 0; j < pagesPerSeq; ++j) {
        if (j * 16 >= len)
          table.push_back(-1);
        else if (j < shared)
          table.push_back((double)pool[j]);
        else
          table.push_back((double)pool[next++]);
      }
    }
  }
  static int64_t poolSize(int64_t b, int64_t p) {
    int64_t pages = ceilDiv(p, 16);
    return std::min<int64_t>(pages, 2) + b * pages + 1;
  }
};

MetadataMaker pagedMetadata() {
  auto layout = std::make_shared<std::unique_ptr<PagedLayout>>();
  return [layout](const std::string &name, const llvm::StringMap<int64_t> &sizes,
                  Rng &rng, mlir::attn::Tensor &t) {
    if (name == "block_table")
      *layout = std::make_unique<PagedLayout>(sizes, rng);
    if (!*layout)
      return false;
    t.data = name == "block_table" ? (*layout)->table : (*layout)->lens;
    return true;
  };
}

/// block-sparse: CSR lists of key blocks per query block of 32, per batch
/// entry and head, with empty rows (query block 1 lists nothing) and the
/// last, clamped row empty; |l| = the longest list, the rest -1.
MetadataMaker blockSparseMetadata() {
  auto lists = std::make_shared<std::vector<std::vector<std::vector<int64_t>>>>();
  return [lists](const std::string &name, const llvm::StringMap<int64_t> &sizes,
                 Rng &rng, mlir::attn::Tensor &t) {
    int64_t bh = sizes.lookup("b") * sizes.lookup("h");
    int64_t rows = sizes.lookup("n") - 1, cols = ceilDiv(sizes.lookup("p"), 32);
    int64_t l = sizes.lookup("l");
    if (name == "block_offsets") {
      lists->assign(bh, {});
      for (int64_t x = 0; x < bh; ++x) {
        int64_t offset = 0;
        for (int64_t i = 0; i <= rows; ++i) {
          t.data[x * (rows + 1) + i] = (double)offset;
          if (i == rows)
            break;
          std::vector<int64_t> row;
          for (int64_t j = 0; j < cols; ++j)
            if (i != 1 && rng() % 3 != 0 && offset + (int64_t)row.size() < l)
              row.push_back(j);
          std::shuffle(row.begin(), row.end(), rng);
          offset += row.size();
          (*lists)[x].push_back(row);
        }
      }
      return true;
    }
    if (name == "block_indices") {
      std::fill(t.data.begin(), t.data.end(), -1.0);
      for (int64_t x = 0; x < bh; ++x) {
        int64_t k = 0;
        for (const auto &row : (*lists)[x])
          for (int64_t j : row)
            t.data[x * l + k++] = (double)j;
      }
      return true;
    }
    return false;
  };
}

const char *const kSoftmax[] = {
    "mha", "causal", "causal-bottom-right", "sliding-window", "gqa",
    "alibi", "softcap", "fp8", "prefix-lm", "power-attention",
    "relative-position-bias", "lowrank-bias", "document-mask",
    "decode-split-kv", "mla"};

} // namespace

TEST_CASE("derive-online, split-kv: the 1-pass, 2-pass and split forms of every "
          "softmax example equal the plain one",
          "[derive]") {
  for (const std::string name : kSoftmax) {
    DYNAMIC_SECTION(name) {
      std::string path = examplePath(name);
      // Lengths 1, 33 and 70 (not multiples of the tiles), more queries
      // than keys; the full 113 x 113 and a 200-key row for MHA only (the
      // interpreter is slow).
      auto small = sizesFor(name, {{1, 1}, {9, 70}, {40, 33}});
      REQUIRE(rewriteAndCompare(path, derive(1), small));
      REQUIRE(rewriteAndCompare(path, derive(16), small));
      REQUIRE(rewriteAndCompare(path, derive(64), small));
      if (name == "mha")
        REQUIRE(rewriteAndCompare(path, derive(64),
                                  sizesFor(name, {{113, 113}, {3, 200}})));
      REQUIRE(rewriteAndCompare(path, derive(32, true), small));
      // attn-split-kv: splits of 1 and 16 keys, partial (O, LSE) merged by
      // log-sum-exp; the (max, sum) state merge once.
      REQUIRE(rewriteAndCompare(path, split(1), small));
      REQUIRE(rewriteAndCompare(path, split(16), small));
      REQUIRE(rewriteAndCompare(path, split(16, "state"), sizesFor(name, {{9, 70}})));
    }
  }
}

TEST_CASE("derive-online, split-kv: varlen, paged KV and block-sparse with valid "
          "metadata",
          "[derive]") {
  SECTION("varlen") {
    // 3 sequences (|n| = 4), sequence 1 empty, padding after the last.
    std::vector<llvm::StringMap<int64_t>> sizes;
    for (auto [m, p] : {std::pair<int64_t, int64_t>{9, 70}, {40, 33}, {5, 5}})
      sizes.push_back({{"h", 2}, {"m", m}, {"p", p}, {"n", 4}});
    std::string path = examplePath("varlen");
    REQUIRE(rewriteAndCompare(path, derive(16), sizes, varlenMetadata));
    REQUIRE(rewriteAndCompare(path, derive(32, true), sizes, varlenMetadata));
    REQUIRE(rewriteAndCompare(path, split(16), sizes, varlenMetadata));
  }
  SECTION("paged-kv") {
    // Derived over the existing partition: the page loop p1 is the
    // iterative rank, a page (16 slots) the tile; split-KV splits by page.
    std::vector<llvm::StringMap<int64_t>> sizes;
    for (auto [m, p] : {std::pair<int64_t, int64_t>{1, 70}, {5, 33}, {9, 16}})
      sizes.push_back({{"b", 3}, {"h", 4}, {"m", m}, {"p", p},
                       {"n", PagedLayout::poolSize(3, p)}});
    std::string path = examplePath("paged-kv");
    REQUIRE(rewriteAndCompare(path, derive(64), sizes, pagedMetadata()));
    REQUIRE(rewriteAndCompare(path, derive(64, true), sizes, pagedMetadata()));
    REQUIRE(rewriteAndCompare(path, split(64), sizes, pagedMetadata()));
  }
  SECTION("block-sparse") {
    std::vector<llvm::StringMap<int64_t>> sizes;
    for (auto [m, p] : {std::pair<int64_t, int64_t>{40, 70}, {70, 33}, {9, 9}})
      sizes.push_back({{"b", 1}, {"h", 2}, {"m", m}, {"p", p},
                       {"n", ceilDiv(m, 32) + 1},
                       {"l", ceilDiv(m, 32) * ceilDiv(p, 32)}});
    std::string path = examplePath("block-sparse");
    REQUIRE(rewriteAndCompare(path, derive(16), sizes, blockSparseMetadata()));
    REQUIRE(rewriteAndCompare(path, derive(32, true), sizes, blockSparseMetadata()));
    REQUIRE(rewriteAndCompare(path, split(16), sizes, blockSparseMetadata()));
  }
  SECTION("sparse-indices") {
    // The list rank l is the key rank: derived and split over it; key
    // indices in [0, |p|), repeats allowed.
    std::vector<llvm::StringMap<int64_t>> sizes;
    for (auto [m, l] : {std::pair<int64_t, int64_t>{9, 70}, {5, 33}, {1, 1}})
      sizes.push_back({{"b", 1}, {"h", 2}, {"m", m}, {"l", l}, {"p", 20}});
    MetadataMaker indices = [](const std::string &name,
                               const llvm::StringMap<int64_t> &sizes, Rng &rng,
                               mlir::attn::Tensor &t) {
      if (name != "key_indices")
        return false;
      for (double &x : t.data)
        x = double(rng() % sizes.lookup("p"));
      return true;
    };
    std::string path = examplePath("sparse-indices");
    for (auto [tile, twoPass] : {std::pair<int64_t, bool>{16, false}, {32, true}}) {
      Rewrite overL;
      overL.kind = Rewrite::Pipeline;
      overL.twoPass = twoPass;
      overL.certify = {"l"};
      overL.pipeline = [tile = tile, twoPass = twoPass](PassManager &pm) {
        mlir::attn::AttnDeriveOnlinePassOptions options;
        options.rank = "l";
        options.tile = tile;
        options.twoPass = twoPass;
        pm.addPass(mlir::attn::createAttnDeriveOnlinePass(options));
      };
      REQUIRE(rewriteAndCompare(path, overL, sizes, indices));
    }
    REQUIRE(rewriteAndCompare(path, split(16), sizes, indices));
  }
}

TEST_CASE("split-kv: Hydragen's shared prefix, one part per key rank merged by "
          "log-sum-exp",
          "[derive]") {
  std::string path = examplePath("shared-prefix");
  // Two sequences; a prefix of 1, 7 and 33 keys; suffixes shorter than the
  // queries (rows whose suffix part is empty: LSE_p = -inf).
  std::vector<llvm::StringMap<int64_t>> sizes;
  for (auto [m, s, p] : {std::tuple<int64_t, int64_t, int64_t>{1, 7, 9},
                         {5, 1, 3},
                         {4, 33, 20}})
    sizes.push_back({{"b", 2}, {"h", 1}, {"m", m}, {"s", s}, {"p", p}});
  // The ranks detected (s, p), then each part derived in its 1-pass form.
  Rewrite parts = split(64);
  REQUIRE(rewriteAndCompare(path, parts, sizes));
  Rewrite online;
  online.kind = Rewrite::Pipeline;
  online.pipeline = [](PassManager &pm) {
    mlir::attn::AttnSplitKVPassOptions parts;
    parts.rank = {"s", "p"};
    pm.addPass(mlir::attn::createAttnSplitKVPass(parts));
    for (auto [rank, tile] : {std::pair<const char *, int64_t>{"s", 4}, {"p", 2}}) {
      mlir::attn::AttnDeriveOnlinePassOptions options;
      options.rank = rank;
      options.tile = tile;
      pm.addPass(mlir::attn::createAttnDeriveOnlinePass(options));
    }
  };
  online.certify = {"s", "p"};
  REQUIRE(rewriteAndCompare(path, online, sizes));
}

namespace {
const char *const kRefused[] = {"topk", "linear", "linear-causal", "flash-1pass"};
/// Examples not in the property test, and why.
const char *const kNotCovered[] = {
    // Already 1-pass over the key and query ranks (the backward), or the
    // K smoothing and block absmax are full reductions over p (int8-sage).
    "backward-mha", "backward-causal", "int8-sage"};
} // namespace

TEST_CASE("derive-online: every example is classified", "[derive]") {
  // A new example must be added to the property test, to the refused list
  // or to the not-covered list with a reason.
  std::set<std::string> known(std::begin(kSoftmax), std::end(kSoftmax));
  known.insert({"varlen", "paged-kv", "block-sparse", "shared-prefix",
                "sparse-indices"});
  known.insert(std::begin(kRefused), std::end(kRefused));
  known.insert(std::begin(kNotCovered), std::end(kNotCovered));
  for (const auto &entry : std::filesystem::directory_iterator(
           std::string(ATTN_SOURCE_DIR) + "/examples")) {
    if (entry.path().extension() != ".mlir")
      continue;
    INFO(entry.path().stem().string());
    CHECK(known.count(entry.path().stem().string()) == 1);
  }
}

TEST_CASE("derive-online: cascades without an online form are left unchanged",
          "[derive]") {
  for (const char *name : kRefused) {
    DYNAMIC_SECTION(name) {
      REQUIRE_FALSE(rewriteAndCompare(examplePath(name), derive(64),
                                      sizesFor(name, {{9, 70}})));
    }
  }
}
