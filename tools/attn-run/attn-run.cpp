//===- attn-run.cpp - run a cascade with the reference interpreter ---------===//
//
// This file implements attn-run: parse a cascade, read its inputs from .npy
// files or generate seeded random ones, execute it in float64 with the
// reference interpreter and write the outputs as .npy files.
//
//===----------------------------------------------------------------------===//

#include "attn/Dialect.h"
#include "attn/Interpreter.h"
#include "attn/Support/Npy.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include <cmath>
#include <random>

using namespace mlir;
namespace cl = llvm::cl;

static cl::OptionCategory category("attn-run options");
static cl::opt<std::string> inputFile(cl::Positional, cl::desc("<cascade.mlir>"),
                                      cl::Required, cl::cat(category));
static cl::opt<std::string>
    cascadeName("cascade", cl::desc("Cascade to run (default: the first one)"),
                cl::value_desc("name"), cl::cat(category));
static cl::list<std::string>
    inputs("input", cl::desc("Read argument <name> from a .npy file"),
           cl::value_desc("name=file.npy"), cl::cat(category));
static cl::list<std::string>
    sizes("size", cl::desc("Size of a dynamic rank (repeatable)"),
          cl::value_desc("rank=N"), cl::cat(category));
static cl::opt<uint64_t> seed("seed",
                              cl::desc("Seed of the random inputs (uniform in "
                                       "[-1, 1) for float arguments not given "
                                       "with --input)"),
                              cl::init(0), cl::cat(category));
static cl::opt<std::string>
    outputDir("output-dir", cl::desc("Write each result as <dir>/<name>.npy"),
              cl::value_desc("dir"), cl::cat(category));
static cl::opt<bool> printValues("print", cl::desc("Print every output value"),
                                 cl::cat(category));

static bool splitAssignment(StringRef text, StringRef &key, StringRef &value) {
  std::tie(key, value) = text.split('=');
  return !key.empty() && !value.empty();
}

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  cl::HideUnrelatedOptions(category);
  cl::ParseCommandLineOptions(
      argc, argv,
      "attn-run: execute an attention cascade in float64 (the reference "
      "interpreter)\n\nExample:\n  attn-run examples/mha.mlir --size b=1 "
      "--size h=2 --size m=113 --size p=113 --output-dir out/\n");

  MLIRContext ctx;
  ctx.loadDialect<mlir::attn::AttnDialect>();
  llvm::SourceMgr sourceMgr;
  std::string errorMessage;
  auto file = openInputFile(inputFile, &errorMessage);
  if (!file) {
    llvm::errs() << "attn-run: " << errorMessage << "\n";
    return 1;
  }
  sourceMgr.AddNewSourceBuffer(std::move(file), llvm::SMLoc());
  SourceMgrDiagnosticHandler handler(sourceMgr, &ctx);
  OwningOpRef<ModuleOp> module = parseSourceFile<ModuleOp>(sourceMgr, &ctx);
  if (!module)
    return 1;

  mlir::attn::CascadeOp cascade;
  for (auto c : module->getOps<mlir::attn::CascadeOp>())
    if (cascadeName.empty() || c.getSymName() == cascadeName) {
      cascade = c;
      break;
    }
  if (!cascade) {
    llvm::errs() << "attn-run: no cascade"
                 << (cascadeName.empty() ? "" : " named '" + cascadeName + "'")
                 << " in " << inputFile << "\n";
    return 1;
  }

  mlir::attn::InterpretOptions options;
  for (StringRef s : sizes) {
    StringRef key, value;
    int64_t n;
    if (!splitAssignment(s, key, value) || value.getAsInteger(10, n)) {
      llvm::errs() << "attn-run: --size expects rank=N, got '" << s << "'\n";
      return 1;
    }
    options.sizes[key] = n;
  }

  // Inputs from files, then the shapes they imply.
  unsigned numArgs = cascade.getFunctionType().getNumInputs();
  std::vector<mlir::attn::Tensor> tensors(numArgs);
  std::vector<bool> given(numArgs, false);
  auto argIndex = [&](StringRef name) -> int {
    for (unsigned i = 0; i < numArgs; ++i)
      if (cast<StringAttr>(cascade.getArgNames()[i]).getValue() == name)
        return i;
    return -1;
  };
  for (StringRef s : inputs) {
    StringRef key, path;
    if (!splitAssignment(s, key, path)) {
      llvm::errs() << "attn-run: --input expects name=file.npy, got '" << s
                   << "'\n";
      return 1;
    }
    int i = argIndex(key);
    if (i < 0) {
      llvm::errs() << "attn-run: the cascade has no argument '" << key << "'\n";
      return 1;
    }
    ::attn::NpyArray array;
    if (std::string err = ::attn::readNpy(path.str(), array); !err.empty()) {
      llvm::errs() << "attn-run: " << err << "\n";
      return 1;
    }
    tensors[i] = {array.shape, array.data};
    given[i] = true;
  }
  std::vector<std::vector<int64_t>> shapes;
  for (unsigned i = 0; i < numArgs; ++i)
    shapes.push_back(given[i] ? tensors[i].shape : std::vector<int64_t>());
  llvm::StringMap<int64_t> resolved;
  if (std::string err =
          mlir::attn::resolveRankSizes(cascade, shapes, options.sizes, resolved);
      !err.empty()) {
    llvm::errs() << "attn-run: " << err << "\n";
    return 1;
  }

  // Random inputs for the others.
  std::mt19937_64 rng(seed);
  for (unsigned i = 0; i < numArgs; ++i) {
    if (given[i])
      continue;
    auto type = cast<mlir::attn::NamedTensorType>(cascade.getFunctionType().getInput(i));
    StringRef name = cast<StringAttr>(cascade.getArgNames()[i]).getValue();
    if (isa<IntegerType>(type.getElementType())) {
      llvm::errs() << "attn-run: argument '" << name
                   << "' is an integer tensor (metadata or indices); give it "
                      "with --input "
                   << name << "=FILE.npy\n";
      return 1;
    }
    tensors[i].shape = mlir::attn::shapeOf(type, resolved);
    tensors[i].data.resize(tensors[i].numElements());
    for (double &v : tensors[i].data)
      v = (double)(rng() >> 11) * 0x1.0p-52 - 1.0; // uniform in [-1, 1)
  }

  mlir::attn::InterpretResult result = mlir::attn::interpret(cascade, tensors, options);
  if (!result.ok()) {
    llvm::errs() << "attn-run: " << result.error << "\n";
    return 1;
  }
  for (auto [i, out] : llvm::enumerate(result.outputs)) {
    StringRef name = cast<StringAttr>(cascade.getResultNames()[i]).getValue();
    double lo = INFINITY, hi = -INFINITY, sum = 0;
    int64_t nans = 0;
    for (double v : out.data) {
      if (std::isnan(v)) {
        ++nans;
        continue;
      }
      lo = std::min(lo, v);
      hi = std::max(hi, v);
      sum += v;
    }
    llvm::outs() << name << ": shape [";
    llvm::interleaveComma(out.shape, llvm::outs());
    llvm::outs() << "] min " << lo << " max " << hi << " sum " << sum
                 << " nan " << nans << "\n";
    if (printValues) {
      for (double v : out.data)
        llvm::outs() << "  " << v << "\n";
    }
    if (!outputDir.empty()) {
      std::string path = outputDir + "/" + name.str() + ".npy";
      if (std::string err = ::attn::writeNpy(path, out.shape, out.data);
          !err.empty()) {
        llvm::errs() << "attn-run: " << err << "\n";
        return 1;
      }
    }
  }
  return 0;
}
