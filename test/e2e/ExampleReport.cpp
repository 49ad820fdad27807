//===- ExampleReport.cpp - attn-examples: run every compiled example --------===//
//
// The README's main command ends here: every example kernel that attnc
// compiled at build time (test/e2e/CMakeLists.txt) is run on random data,
// compared with the reference interpreter, and timed on a larger shape.
// Prints one table row per kernel: the error against float64 and the speed.
//
//   attn-examples [--threads N] [--n N] [--heads H]
//
//===----------------------------------------------------------------------===//

#include "E2ESupport.h"
#include "attn/Interpreter.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "llvm/ADT/StringSet.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

using e2e::E2EKernel;
using e2e::kKernels;

struct Case {
  std::vector<e2e::Buffer> args;
  std::vector<mlir::attn::Tensor> inputs;
  unsigned numInputs = 0;
};

/// Random inputs (and zeroed outputs) for the dynamic sizes `given`.
bool makeCase(mlir::attn::CascadeOp c, const llvm::StringMap<int64_t> &given,
              Case &out, llvm::StringMap<int64_t> &sizes) {
  if (!mlir::attn::resolveRankSizes(c, {}, given, sizes).empty())
    return false;
  out.numInputs = c.getFunctionType().getNumInputs();
  // Inputs uniform in [-1, 1): MLA's K = C Wk sums 128 products, and with
  // wider inputs its scores grow to where float32 rounding of K alone
  // exceeds the 1e-4 bound below (test/e2e checks it at [-0.5, 0.5)).
  e2e::makeArgs(c, sizes, 42, 1.0, 0.0f, out.args, out.inputs);
  return true;
}

double run(const E2EKernel &k, Case &c, int threads, attn_status &st) {
  std::vector<const attn_tensor *> ptrs;
  for (e2e::Buffer &t : c.args) {
    t.describe();
    ptrs.push_back(&t.t);
  }
  attn_launch launch{};
  launch.num_threads = threads;
  auto t0 = std::chrono::steady_clock::now();
  st = k.entry(ptrs.data(), &launch);
  auto t1 = std::chrono::steady_clock::now();
  for (e2e::Buffer &t : c.args)
    t.sync();
  return std::chrono::duration<double, std::milli>(t1 - t0).count();
}

} // namespace

int main(int argc, char **argv) {
  int threads = 2;
  int64_t n = 2048, heads = 8;
  for (int a = 1; a < argc; ++a) {
    std::string s = argv[a];
    if (s == "--threads" && a + 1 < argc)
      threads = std::atoi(argv[++a]);
    else if (s == "--n" && a + 1 < argc)
      n = std::atoll(argv[++a]);
    else if (s == "--heads" && a + 1 < argc)
      heads = std::atoll(argv[++a]);
    else {
      std::printf("usage: attn-examples [--threads N] [--n N] [--heads H]\n"
                  "Runs every example kernel compiled by attnc at build time:\n"
                  "max error against the float64 interpreter (b=1, 2 heads,\n"
                  "113 queries x 200 keys) and the time at n x n with H heads.\n");
      return s == "--help" ? 0 : 1;
    }
  }
  std::printf("%-22s %-22s %12s %10s %10s %10s\n", "kernel", "attnc flags",
              "max error", "ms", "GFLOP/s", "shape");
  int failures = 0;
  for (const E2EKernel &k : kKernels) {
    mlir::MLIRContext ctx;
    mlir::OwningOpRef<mlir::ModuleOp> module;
    mlir::attn::CascadeOp c = e2e::loadVariant(k, ctx, module);
    if (!c) {
      std::printf("%s: cannot parse %s\n", k.id, k.source);
      ++failures;
      continue;
    }

    // Correctness at a small odd shape.
    Case small;
    llvm::StringMap<int64_t> sizes;
    makeCase(c, e2e::sizesFor(c, 113, 200, 2, 1), small, sizes);
    attn_status st;
    run(k, small, threads, st);
    mlir::attn::InterpretOptions opts;
    opts.sizes = sizes; // a rank no tensor shows (paged KV's p) too
    auto want = mlir::attn::interpret(c, small.inputs, opts);
    double err = 0;
    bool ok = st == ATTN_OK && want.ok();
    for (size_t r = 0; ok && r < want.outputs.size(); ++r) {
      const auto &w = want.outputs[r].data;
      const auto &g = small.args[small.numInputs + r].data;
      for (size_t j = 0; j < w.size(); ++j) {
        if (std::isinf(w[j])) {
          if (g[j] != w[j])
            err = INFINITY;
          continue;
        }
        err = std::max(err, std::fabs(g[j] - w[j]) / (1.0 + std::fabs(w[j])));
      }
    }
    // Speed at n x n.
    Case big;
    llvm::StringMap<int64_t> bigSizes;
    makeCase(c, e2e::sizesFor(c, n, n, heads, 1), big, bigSizes);
    run(k, big, threads, st); // warm-up
    double best = 1e30;
    for (int rep = 0; rep < 3; ++rep)
      best = std::min(best, run(k, big, threads, st));
    // Ranks a variant lacks (varlen has no b) count as 1.
    auto size = [&](llvm::StringRef r) {
      return bigSizes.count(r) ? bigSizes.lookup(r) : int64_t(1);
    };
    int64_t e = size("e"), bh = size("b") * size("h");
    double flops = 4.0 * bh * double(n) * double(n) * double(e);
    char shape[64];
    std::snprintf(shape, sizeof shape, "bh=%lld n=%lld d=%lld",
                  (long long)bh, (long long)n, (long long)e);
    // bf16 results carry a rounding of 2^-9 relative (the float64
    // reference's outputs are rounded to bf16 too).
    double bound = e2e::storesBF16(c) ? 2e-2 : 1e-4;
    if (!ok || err > bound)
      ++failures;
    std::string verdict =
        !ok ? std::string("  FAILED: ") + attn_last_error()
            : err > bound ? "  FAILED: error above " + std::to_string(bound)
                          : std::string();
    std::printf("%-22s %-22s %12.2e %10.2f %10.1f  %s%s\n", k.id,
                k.flags[0] ? k.flags : "-", ok ? err : INFINITY, best,
                flops / best / 1e6, shape, verdict.c_str());
  }
  std::printf("GFLOP/s counts 4*bh*n*n*d for every kernel (masked kernels "
              "skip work, so their rate is not useful work); %d thread(s).\n",
              threads);
  return failures ? 1 : 0;
}
