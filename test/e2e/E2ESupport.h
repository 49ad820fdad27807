//===- E2ESupport.h - shared by the e2e tests and attn-examples -*- C++ -*-===//
//
// The kernels attnc compiled at build time (Kernels.inc), the example
// cascade each was compiled from, with the same --rank-size overrides, and
// the sizes of its dynamic ranks for given query and key lengths.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_TEST_E2E_SUPPORT_H
#define ATTN_TEST_E2E_SUPPORT_H

#include "attn/Dialect.h"
#include "attn/Interpreter.h"
#include "attn/runtime.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace e2e {

using EntryFn = attn_status (*)(const void *, const attn_launch *);
struct E2EKernel {
  /// The example's stem, attnc's flags, and the file attnc compiled (the
  /// example, or its bf16-storage rewrite in the build tree).
  const char *id, *example, *flags, *source;
  EntryFn entry;
};
/// A kernel compiled from a cascade quantized on the fly: attnc split it
/// into a quantization prologue (`prologue`, run first) and the attention
/// kernel (`kernel`) that reads the prologue's results (attn-split-quant).
struct E2EPrologueKernel {
  const char *id, *example, *flags, *source;
  EntryFn prologue, kernel;
};
#include "Kernels.inc"

/// Parses the file k was compiled from into `module` and returns its cascade
/// with k's --rank-size overrides applied (null if it does not parse).
inline mlir::attn::CascadeOp
loadVariant(const E2EKernel &k, mlir::MLIRContext &ctx,
            mlir::OwningOpRef<mlir::ModuleOp> &module) {
  ctx.loadDialect<mlir::attn::AttnDialect>();
  module = mlir::parseSourceFile<mlir::ModuleOp>(k.source, &ctx);
  if (!module)
    return {};
  auto cascade = *module->getOps<mlir::attn::CascadeOp>().begin();
  llvm::StringRef flags = k.flags;
  if (flags.consume_front("--rank-size=")) {
    llvm::SmallVector<llvm::StringRef> items;
    flags.split(items, ',');
    llvm::SmallVector<mlir::Attribute> ranks;
    for (auto r : cascade.getRanks().getAsRange<mlir::attn::RankAttr>()) {
      for (llvm::StringRef item : items) {
        auto [name, value] = item.split('=');
        if (r.getName().getValue() == name)
          r = mlir::attn::RankAttr::get(&ctx, r.getName(),
                                        std::stoll(value.str()));
      }
      ranks.push_back(r);
    }
    cascade.setRanksAttr(mlir::ArrayAttr::get(&ctx, ranks));
  }
  return cascade;
}

/// Sizes for the dynamic ranks of a variant: queries m, keys p, `batch` for
/// b and `heads` for any other; ranks fixed by a relation are left to it.
inline llvm::StringMap<int64_t> sizesFor(mlir::attn::CascadeOp c, int64_t m,
                                         int64_t p, int64_t heads,
                                         int64_t batch) {
  llvm::StringMap<int64_t> s;
  llvm::StringSet<> derived;
  for (auto rel : c.getRelations().getAsRange<mlir::attn::RelationAttr>())
    derived.insert(rel.getLhs().getValue());
  for (auto r : c.getRanks().getAsRange<mlir::attn::RankAttr>()) {
    llvm::StringRef n = r.getName().getValue();
    if (!mlir::ShapedType::isDynamic(r.getSize()) || derived.contains(n))
      continue;
    s[n] = n == "m" ? m : n == "p" ? p : n == "b" ? batch : heads;
  }
  return s;
}

/// bf16 <-> f32 (round to nearest even; NaN kept quiet).
inline uint16_t toBF16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
inline float fromBF16(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

/// A tensor argument and its DLPack descriptor: f32, bf16 or i32 storage.
struct Buffer {
  std::vector<int64_t> shape, strides;
  std::vector<float> data;    // the values (for bf16: those the bits hold)
  std::vector<uint16_t> bits; // bf16 storage
  std::vector<int32_t> idata; // i32 storage (metadata)
  std::vector<int8_t> i8data; // i8 storage (quantized Q, K)
  attn_tensor t{};
  void describe() {
    t.data = !idata.empty()    ? (void *)idata.data()
             : !i8data.empty() ? (void *)i8data.data()
             : !bits.empty()   ? (void *)bits.data()
                               : (void *)data.data();
    t.device = {ATTN_DEVICE_CPU, 0};
    t.ndim = int32_t(shape.size());
    t.dtype = !idata.empty()    ? attn_dtype{ATTN_DTYPE_INT, 32, 1}
              : !i8data.empty() ? attn_dtype{ATTN_DTYPE_INT, 8, 1}
              : !bits.empty()   ? attn_dtype{ATTN_DTYPE_BFLOAT, 16, 1}
                                : attn_dtype{ATTN_DTYPE_FLOAT, 32, 1};
    t.shape = shape.data();
    t.strides = strides.empty() ? nullptr : strides.data();
    t.byte_offset = 0;
  }
  /// After a call: the values of bf16 storage.
  void sync() {
    for (size_t j = 0; j < bits.size(); ++j)
      data[j] = fromBF16(bits[j]);
  }
};

/// Arguments of `c` at `sizes`: inputs uniform in [-amplitude, amplitude)
/// rounded to their storage type (i32 metadata uniform in [0, |p| + 1]),
/// outputs filled with `sentinel`; `inputs` gets the same input values for
/// the interpreter.
/// The size of the dimension that argument `arg` indexes when it is read as
/// a gather index (`%x[%arg[..], ..]`), or 0.
inline int64_t indexedSize(mlir::attn::CascadeOp c, unsigned arg,
                           const llvm::StringMap<int64_t> &sizes) {
  int64_t found = 0;
  for (auto op : c.getBodyBlock().getOps<mlir::attn::EinsumOp>())
    op.getExpr().walk([&](mlir::attn::ExprAttr n) {
      if (found || n.getKind() != mlir::attn::ExprKind::Load ||
          n.getInput() < 0)
        return;
      auto outer = mlir::dyn_cast<mlir::BlockArgument>(op.getInputs()[n.getInput()]);
      if (!outer)
        return;
      auto nt = mlir::cast<mlir::attn::NamedTensorType>(
          c.getFunctionType().getInput(outer.getArgNumber()));
      for (auto [pos, ix] : llvm::enumerate(n.getArgs())) {
        if (ix.getKind() != mlir::attn::ExprKind::Load || ix.getInput() < 0)
          continue;
        auto idx = mlir::dyn_cast<mlir::BlockArgument>(op.getInputs()[ix.getInput()]);
        if (idx && idx.getArgNumber() == arg)
          found = sizes.lookup(nt.getRanks()[pos].getValue());
      }
    });
  return found;
}

inline void makeArgs(mlir::attn::CascadeOp c,
                     const llvm::StringMap<int64_t> &sizes, uint64_t seed,
                     double amplitude, float sentinel,
                     std::vector<Buffer> &args,
                     std::vector<mlir::attn::Tensor> &inputs) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  auto ft = c.getFunctionType();
  unsigned numInputs = ft.getNumInputs();
  for (unsigned k = 0; k < numInputs + ft.getNumResults(); ++k) {
    bool input = k < numInputs;
    auto type = mlir::cast<mlir::attn::NamedTensorType>(
        input ? ft.getInput(k) : ft.getResult(k - numInputs));
    mlir::Type elem = type.getElementType();
    Buffer b;
    b.shape = mlir::attn::shapeOf(type, sizes);
    int64_t n = 1;
    for (int64_t s : b.shape)
      n *= s;
    mlir::attn::Tensor t;
    t.shape = b.shape;
    t.data.resize(n);
    if (elem.isInteger(32)) {
      b.idata.resize(n);
      int64_t bound = sizes.lookup("p") + 2;
      for (int64_t j = 0; j < n; ++j)
        b.idata[j] = input ? int32_t(rng() % bound) : 0;
      // cu_seqlens must be valid (the entry point checks it): [0] = 0,
      // nondecreasing, within both token ranks.
      mlir::attn::SparseAttr sparse;
      if (mlir::ArrayAttr all = c.getArgAttrsAttr(); input && all)
        if (auto dict = mlir::dyn_cast<mlir::DictionaryAttr>(all[k]))
          sparse = mlir::dyn_cast_or_null<mlir::attn::SparseAttr>(
              dict.get(mlir::attn::kSparseAttrName));
      if (sparse && sparse.getKind() == mlir::attn::SparseKind::CuSeqlens) {
        int64_t last = std::min(sizes.lookup("m"), sizes.lookup("p"));
        for (int32_t &x : b.idata)
          x = int32_t(int64_t(x) % (last + 1));
        std::sort(b.idata.begin(), b.idata.end());
        if (!b.idata.empty())
          b.idata[0] = 0;
      }
      // Block tables index a dimension of another argument (a paged cache's
      // page rank): values below its size (the entry point checks them).
      // Sequence lengths within the keys (|p| may be rounded up to whole
      // pages by the kernel, never by the interpreter).
      if (sparse && sparse.getKind() == mlir::attn::SparseKind::SeqLens &&
          sizes.count("p"))
        for (int32_t &x : b.idata)
          x = int32_t(int64_t(x) % (sizes.lookup("p") + 1));
      if (sparse && (sparse.getKind() == mlir::attn::SparseKind::BlockTable ||
                     sparse.getKind() == mlir::attn::SparseKind::KeyIndices))
        if (int64_t bound = indexedSize(c, k, sizes); bound > 0)
          for (int32_t &x : b.idata)
            x = int32_t(int64_t(x) % bound);
      for (int64_t j = 0; j < n; ++j)
        t.data[j] = b.idata[j];
    } else if (elem.isInteger(8)) {
      // Quantized values: uniform in [-127, 127].
      b.i8data.resize(n);
      for (int64_t j = 0; j < n; ++j) {
        b.i8data[j] = input ? int8_t(int64_t(rng() % 255) - 127) : 0;
        t.data[j] = b.i8data[j];
      }
    } else {
      b.data.resize(n);
      if (elem.isBF16())
        b.bits.resize(n);
      for (int64_t j = 0; j < n; ++j) {
        float v = input ? float(amplitude) * uni(rng) : sentinel;
        if (elem.isBF16()) {
          b.bits[j] = toBF16(v);
          v = fromBF16(b.bits[j]);
        }
        b.data[j] = v;
        t.data[j] = v;
      }
    }
    if (input)
      inputs.push_back(std::move(t));
    args.push_back(std::move(b));
  }
}

/// True if the kernel's results are stored in bf16.
inline bool storesBF16(mlir::attn::CascadeOp c) {
  for (mlir::Type t : c.getFunctionType().getResults())
    if (mlir::cast<mlir::attn::NamedTensorType>(t).getElementType().isBF16())
      return true;
  return false;
}

} // namespace e2e

#endif // ATTN_TEST_E2E_SUPPORT_H
