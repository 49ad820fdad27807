//===- Analyze.cpp - attn-analyze ------------------------------------------===//
//
// This file implements the attn-analyze pass: it runs PassAnalysis and
// CostAnalysis (include/attn/Analysis.h) on every cascade and reports the
// results as remarks, one line each:
//
//   passes(p) = 3; pass 1: qk, gm; pass 2: sn, sd (re-reads qk); pass 3: o (re-reads sn)
//   flops = 387*b*h*m*p + b*h*m; special = b*h*m*p + b*h*m
//   bytes: fused = ...; unfused = ...
//   buffer: largest = qk, 4*b*h*m*p bytes; peak = ... bytes at sn (live: qk, gm, sn)
//
// and, with per-einsum, one remark per Einsum with its levels and costs.
// Remarks go to the operation's location without the operation itself (which
// attn-opt would otherwise print under every remark).
//
//===----------------------------------------------------------------------===//

#include "attn/Analysis.h"
#include "attn/Dialect.h"
#include "attn/Passes.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "llvm/Support/Format.h"

namespace mlir::attn {
#define GEN_PASS_DEF_ATTNANALYZEPASS
#include "passes/Passes.h.inc"

namespace {

/// Prints a count; a large number gets its order of magnitude too
/// (`1585152 (~1.59e6)`).
std::string formatCount(const Poly &value, bool exact = true) {
  std::string s;
  llvm::raw_string_ostream os(s);
  os << Bound{value, exact};
  if (std::optional<Rational> c = value.getConstant()) {
    double v = c->toDouble();
    if (std::abs(v) >= 1e6)
      os << " (~" << llvm::format("%.3g", v) << ")";
  }
  return s;
}

std::string formatCount(const Bound &b) { return formatCount(b.value, b.exact); }

std::string joinNames(ArrayRef<Value> values) {
  std::string s;
  llvm::raw_string_ostream os(s);
  llvm::interleaveComma(values, os, [&](Value v) { os << getValueName(v); });
  return s;
}

void reportPasses(CascadeOp cascade, const PassAnalysis &passes) {
  if (passes.getRanks().empty()) {
    mlir::emitRemark(cascade.getLoc()) << "passes: no reduced rank";
    return;
  }
  for (StringRef rank : passes.getRanks()) {
    unsigned count = passes.getPassCount(rank);
    InFlightDiagnostic diag = mlir::emitRemark(cascade.getLoc());
    diag << "passes(" << rank << ") = " << count;
    for (unsigned pass = 1; pass <= count; ++pass) {
      SmallVector<Value> members;
      for (EinsumOp op : passes.getPassEinsums(rank, pass))
        members.push_back(op.getResult());
      diag << "; pass " << pass << ": " << joinNames(members);
      SmallVector<Value> reReads = passes.getReReads(rank, pass);
      if (!reReads.empty())
        diag << " (re-reads " << joinNames(reReads) << ")";
    }
  }
}

void reportCosts(CascadeOp cascade, const CostAnalysis &costs) {
  mlir::emitRemark(cascade.getLoc()) << "flops = " << formatCount(costs.getFlops())
                       << "; special = " << formatCount(costs.getSpecial());
  mlir::emitRemark(cascade.getLoc()) << "bytes: fused = "
                       << formatCount(costs.getFusedBytes())
                       << "; unfused = "
                       << formatCount(costs.getUnfusedBytes());
  const BufferInfo &buffer = costs.getBuffer();
  if (!buffer.largest) {
    mlir::emitRemark(cascade.getLoc()) << "buffer: no intermediate";
    return;
  }
  auto peakAt = cast<EinsumOp>(buffer.peakAt);
  mlir::emitRemark(cascade.getLoc()) << "buffer: largest = " << getValueName(buffer.largest)
                       << ", " << formatCount(buffer.largestBytes)
                       << " bytes; peak = " << formatCount(buffer.peakBytes)
                       << " bytes at " << getValueName(peakAt.getResult())
                       << " (live: " << joinNames(buffer.peakLive) << ")";
}

void reportEinsum(EinsumOp op, const PassAnalysis &passes,
                  const CostAnalysis &costs) {
  InFlightDiagnostic diag = mlir::emitRemark(op.getLoc());
  diag << "einsum " << getValueName(op.getResult()) << ":";
  bool any = false;
  for (StringRef rank : passes.getRanks()) {
    unsigned level = passes.getLevel(op, rank);
    if (level == 0)
      continue;
    diag << (any ? ", " : " ") << "level(" << rank << ") = " << level;
    any = true;
  }
  const EinsumCost &cost = costs.getCost(op);
  diag << (any ? "; " : " ") << "points = " << formatCount(cost.points)
       << "; flops = " << formatCount(cost.flops) << " ("
       << cost.ops.arithmetic + cost.combines << " per point)";
  if (cost.ops.special)
    diag << "; special = " << formatCount(cost.special) << " ("
         << cost.ops.special << " per point)";
}

struct AttnAnalyzePass : impl::AttnAnalyzePassBase<AttnAnalyzePass> {
  using AttnAnalyzePassBase::AttnAnalyzePassBase;

  void runOnOperation() override {
    getOperation().walk([&](CascadeOp cascade) {
      PassAnalysis passes(cascade);
      CostAnalysis costs(cascade, passes);
      reportPasses(cascade, passes);
      reportCosts(cascade, costs);
      if (perEinsum)
        for (EinsumOp op : cascade.getBodyBlock().getOps<EinsumOp>())
          reportEinsum(op, passes, costs);
    });
    markAllAnalysesPreserved();
  }
};
} // namespace
} // namespace mlir::attn
