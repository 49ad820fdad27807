//===- Analyze.cpp - attn-analyze ------------------------------------------===//
//
// This file implements the attn-analyze pass (being written).
//
//===----------------------------------------------------------------------===//

#include "attn/Dialect.h"
#include "attn/Passes.h"

namespace mlir::attn {
#define GEN_PASS_DEF_ATTNANALYZEPASS
#include "passes/Passes.h.inc"

namespace {
struct AttnAnalyzePass : impl::AttnAnalyzePassBase<AttnAnalyzePass> {
  using AttnAnalyzePassBase::AttnAnalyzePassBase;
  void runOnOperation() override {}
};
} // namespace
} // namespace mlir::attn
