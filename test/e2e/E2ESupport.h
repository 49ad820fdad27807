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
#include "attn/runtime.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"

#include <string>

namespace e2e {

using EntryFn = attn_status (*)(const void *, const attn_launch *);
struct E2EKernel {
  const char *id, *example, *flags;
  EntryFn entry;
};
#include "Kernels.inc"

/// Parses examples/<k.example>.mlir into `module` and returns its cascade
/// with k's --rank-size overrides applied (null if it does not parse).
inline mlir::attn::CascadeOp
loadVariant(const E2EKernel &k, mlir::MLIRContext &ctx,
            mlir::OwningOpRef<mlir::ModuleOp> &module) {
  ctx.loadDialect<mlir::attn::AttnDialect>();
  std::string path =
      std::string(ATTN_SOURCE_DIR) + "/examples/" + k.example + ".mlir";
  module = mlir::parseSourceFile<mlir::ModuleOp>(path, &ctx);
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

} // namespace e2e

#endif // ATTN_TEST_E2E_SUPPORT_H
