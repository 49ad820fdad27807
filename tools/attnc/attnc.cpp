//===- attnc.cpp - the attention compiler driver ----------------------------===//
//
//   attnc variants.mlir -o build/flash        # build/libflash.a + build/flash.h
//   attnc variants.mlir -o build/flash --emit=shared   # build/libflash.so + .h
//   attnc variants.mlir -o build/flash --target=sm_80,sm_90a --storage=bf16
//                                        # GPU: cubins embedded, CUDA launch
//
// For every attn.cascade of the input: attn-reassociate where feature maps
// (#attn.lowrank<feature_map>: linear attention) ask for it, attn-derive-online (the 1-pass form),
// attn-lower-cpu (task function on memrefs), the CPU-to-LLVM pipeline,
// translation to LLVM IR, the kernel's descriptor and entry point
// (lib/Emit), LLVM's O3 pipeline and code generation for the target CPU;
// then one static library holding the object and the runtime (or, with
// --emit=shared, a shared library linked by the system C compiler driver),
// and one C header. No C source is generated at any step.
//
// With --target=sm_XX[,sm_YY...] (docs/gpu.md): attn-derive-online,
// attn-lower-gpu (a gpu.module per cascade), per chip the NVVM pipeline,
// PTX (LLVM NVPTX) and a cubin (ptxas); then a host LLVM module for this
// machine holding the cubins as constants, each kernel's descriptor and an
// entry point that calls the runtime's CUDA launcher (lib/Emit,
// lib/Runtime), compiled and archived like the CPU libraries.
//
//===----------------------------------------------------------------------===//

#include "attn/CodeGen/CPU.h"
#include "attn/CodeGen/GPU.h"
#include "attn/Dialect.h"
#include "attn/Emit/Library.h"
#include "attn/Passes.h"
#include "attn/Transforms/MaskTiles.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Support/Timing.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Export.h"

#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/IR/Verifier.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Passes/PassBuilder.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/Target/TargetOptions.h"
#include "llvm/TargetParser/Host.h"
#include "llvm/TargetParser/SubtargetFeature.h"

#include <chrono>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

using namespace mlir;
namespace cl = llvm::cl;

static cl::OptionCategory category("attnc options");

static cl::opt<std::string> inputFile(cl::Positional, cl::desc("<input.mlir>"),
                                      cl::Required, cl::cat(category));
static cl::opt<std::string> output(
    "o",
    cl::desc("Output prefix DIR/NAME: writes DIR/libNAME.a (DIR/libNAME.so "
             "with --emit=shared) and DIR/NAME.h (NAME is also the prefix of "
             "every entry point)"),
    cl::value_desc("prefix"), cl::Required, cl::cat(category));
static cl::opt<std::string> target(
    "target",
    cl::desc("Target: host (default: this machine's CPU), x86_64-avx512 "
             "(AVX-512F/BW/VL/DQ + FMA), x86_64-avx2 (AVX2 + FMA), or a "
             "comma list of NVIDIA GPU archs (sm_80,sm_90a: one cubin each, "
             "launched through the CUDA driver API; needs ptxas)"),
    cl::init("host"), cl::cat(category));
static cl::opt<std::string> mcpu(
    "mcpu", cl::desc("Override the CPU name given to LLVM (e.g. znver5)"),
    cl::init(""), cl::cat(category));
static cl::opt<std::string> emit(
    "emit",
    cl::desc("What to write: lib (default: archive + header), shared "
             "(DIR/libNAME.so + header, linked with --cc; for dlopen/ctypes), "
             "obj (DIR/NAME.o), mlir (after attn-lower-cpu), llvm-mlir (LLVM "
             "dialect), llvm (LLVM IR after O3), asm"),
    cl::init("lib"), cl::cat(category));
static cl::opt<std::string> cc(
    "cc",
    cl::desc("C compiler driver that links --emit=shared, a name on PATH "
             "or a path: <driver> -shared -Wl,-Bsymbolic -o DIR/libNAME.so "
             "NAME.o attn_runtime.o -lpthread -lm (default: cc)"),
    cl::value_desc("driver"), cl::init("cc"), cl::cat(category));
static cl::opt<std::string> storage(
    "storage",
    cl::desc("GPU targets: element type in memory of f32 inputs and of o "
             "(bf16 or f16; default: the declared types, which must then be "
             "bf16 or f16)"),
    cl::init(""), cl::cat(category));
static cl::opt<std::string> ptxasPath(
    "ptxas",
    cl::desc("GPU targets: the ptxas to assemble cubins with (default: "
             "$ATTN_PTXAS, $CUDA_HOME/bin/ptxas, the one found when attnc was "
             "built, ptxas on PATH)"),
    cl::init(""), cl::cat(category));
static cl::opt<int64_t> rowTile(
    "row-tile",
    cl::desc("Query rows per task (default 0: chosen by the tile model from "
             "the cache sizes, see -v)"),
    cl::init(0), cl::cat(category));
static cl::opt<int64_t> keyTile(
    "key-tile",
    cl::desc("Keys per tile of the 1-pass form (default 0: chosen by the "
             "tile model)"),
    cl::init(0), cl::cat(category));
static cl::opt<int64_t> l1dCache(
    "l1d-cache",
    cl::desc("L1 data cache per core in KiB for the tile model (default: "
             "read from CPUID for --target=host, else 48)"),
    cl::value_desc("KiB"), cl::init(0), cl::cat(category));
static cl::opt<int64_t> l2Cache(
    "l2-cache",
    cl::desc("L2 cache per core in KiB for the tile model (default: read "
             "from CPUID for --target=host, else 1024 for AVX-512 and 256 "
             "for AVX2)"),
    cl::value_desc("KiB"), cl::init(0), cl::cat(category));
static cl::list<std::string> rankSizes(
    "rank-size",
    cl::desc("Set the static size of a rank before compiling, e.g. "
             "--rank-size=e=128,f=128 (one variant file, several head dims)"),
    cl::CommaSeparated, cl::value_desc("rank=size"), cl::cat(category));
static cl::opt<bool> noDerive(
    "no-derive",
    cl::desc("Do not run attn-derive-online (the input is already in the "
             "form to lower)"),
    cl::init(false), cl::cat(category));
static cl::opt<bool> noReassociate(
    "no-reassociate",
    cl::desc("Do not run attn-reassociate on cascades with feature maps "
             "(#attn.lowrank<feature_map>: linear attention)"),
    cl::init(false), cl::cat(category));
static cl::opt<bool> scalar(
    "scalar", cl::desc("Plain scalar loops (no micro-kernels, for debugging)"),
    cl::init(false), cl::cat(category));
static cl::opt<bool> noBF16Dot(
    "no-bf16-dot",
    cl::desc("Do not use AVX512-BF16 dot products for bf16 inputs (used by "
             "default when the host CPU has them: B operands such as the "
             "softmax probabilities are then rounded to bf16)"),
    cl::init(false), cl::cat(category));
static cl::opt<bool> noVNNI(
    "no-vnni",
    cl::desc("Do not use AVX512-VNNI int8 dot products (used by default when "
             "the host CPU has them, for contractions of two int8 tensors)"),
    cl::init(false), cl::cat(category));
static cl::opt<bool> timing("timing",
                            cl::desc("Print the time of every stage"),
                            cl::init(false), cl::cat(category));
static cl::opt<bool> verbose("v",
                             cl::desc("Show progress and the derivation "
                                      "remarks"),
                             cl::init(false), cl::cat(category));

namespace {

/// The data cache sizes of the CPU attnc runs on, from CPUID: leaf 4 (Intel)
/// or leaves 0x80000005/6 (AMD); 0 where the CPU does not say.
mlir::attn::CpuCacheSizes hostCaches() {
  mlir::attn::CpuCacheSizes c{0, 0};
#if defined(__x86_64__) || defined(__i386__)
  unsigned a, b, cx, d;
  for (unsigned i = 0; i < 16 && __get_cpuid_count(4, i, &a, &b, &cx, &d);
       ++i) {
    unsigned type = a & 31, level = (a >> 5) & 7;
    if (type == 0)
      break;
    int64_t bytes = int64_t((b >> 22) + 1) * (((b >> 12) & 0x3ff) + 1) *
                    ((b & 0xfff) + 1) * (int64_t(cx) + 1);
    if (level == 1 && type == 1)
      c.l1d = bytes;
    if (level == 2 && type != 2)
      c.l2 = bytes;
  }
  if (__get_cpuid(0x80000000, &a, &b, &cx, &d) && a >= 0x80000006) {
    if (!c.l1d && __get_cpuid(0x80000005, &a, &b, &cx, &d))
      c.l1d = int64_t(cx >> 24) * 1024;
    if (!c.l2 && __get_cpuid(0x80000006, &a, &b, &cx, &d))
      c.l2 = int64_t(cx >> 16) * 1024;
  }
#endif
  return c;
}

using Clock = std::chrono::steady_clock;

struct StageTimer {
  std::vector<std::pair<std::string, double>> stages;
  Clock::time_point last = Clock::now();
  void stage(const std::string &name) {
    auto now = Clock::now();
    stages.push_back(
        {name, std::chrono::duration<double, std::milli>(now - last).count()});
    last = now;
  }
  void print() {
    double total = 0;
    llvm::errs() << "attnc: timing\n";
    for (auto &[n, ms] : stages) {
      llvm::errs() << llvm::format("  %8.1f ms  %s\n", ms, n.c_str());
      total += ms;
    }
    llvm::errs() << llvm::format("  %8.1f ms  total\n", total);
  }
};

int fail(const llvm::Twine &msg) {
  llvm::errs() << "attnc: error: " << msg << "\n";
  return 1;
}

std::optional<std::pair<uint8_t, uint8_t>> dlpackType(Type t) {
  if (t.isF32()) return std::make_pair<uint8_t, uint8_t>(2, 32);
  if (t.isF64()) return std::make_pair<uint8_t, uint8_t>(2, 64);
  if (t.isF16()) return std::make_pair<uint8_t, uint8_t>(2, 16);
  if (t.isBF16()) return std::make_pair<uint8_t, uint8_t>(4, 16);
  if (t.isInteger(8)) return std::make_pair<uint8_t, uint8_t>(0, 8);
  if (t.isInteger(32)) return std::make_pair<uint8_t, uint8_t>(0, 32);
  if (t.isInteger(64)) return std::make_pair<uint8_t, uint8_t>(0, 64);
  return std::nullopt;
}

/// The header's note on a cascade that attn-split-quant made (quantization
/// on the fly): the prologue runs first, the kernel reads its results.
/// Empty for other cascades.
std::string quantNote(mlir::attn::CascadeOp c, llvm::StringRef lib,
                      const mlir::attn::CpuTaskPlan &plan) {
  auto names = [](ArrayAttr a) {
    std::string s;
    for (Attribute n : a)
      s += (s.empty() ? "" : ", ") + cast<StringAttr>(n).str();
    return s;
  };
  std::string note;
  llvm::raw_string_ostream os(note);
  if (auto of = c->getAttrOfType<FlatSymbolRefAttr>(
          mlir::attn::kPrologueAttrName)) {
    std::string kernel = (lib + "_" + of.getValue()).str();
    std::string tasks;
    for (int r : plan.taskRanks)
      tasks += (tasks.empty() ? "" : ", ") +
               cast<mlir::attn::RankAttr>(c.getRanks()[r]).getName().str();
    os << "Quantization prologue: call it first, then " << kernel
       << " with its results.\n"
       << "It quantizes " << names(c.getArgNames())
       << " on the fly (attn-split-quant, docs/quantize.md):\n"
       << (tasks.empty()
               ? std::string("a single task (a scale spans several heads or "
                             "batches), on one thread.\n")
               : "one task per (" + tasks +
                     "), each reading its inputs a few times.\n")
       << "Pass its results (" << names(c.getResultNames())
       << ") unchanged to\n"
       << kernel << ", with the same rank sizes (it cannot check that\n"
       << "they come from the same call).\n";
    return note;
  }
  auto module = c->getParentOfType<ModuleOp>();
  if (!module)
    return note;
  for (auto p : module.getOps<mlir::attn::CascadeOp>()) {
    auto of =
        p->getAttrOfType<FlatSymbolRefAttr>(mlir::attn::kPrologueAttrName);
    if (!of || of.getValue() != c.getSymName())
      continue;
    std::string prologue = (lib + "_" + p.getSymName()).str();
    os << "Attention kernel: call " << prologue
       << " first; its results are inputs here.\n"
       << "Q and K are quantized on the fly: " << names(p.getResultNames())
       << "\n"
       << "are the results of " << prologue << " on this call's "
       << names(p.getArgNames()) << "\n"
       << "(attn-split-quant, docs/quantize.md).\n";
  }
  return note;
}

/// The kernel descriptor of a cascade (its arguments as the user wrote
/// them, the task plan of the lowering).
FailureOr<::attn::emit::KernelSpec>
kernelSpec(mlir::attn::CascadeOp original, mlir::attn::CascadeOp lowered,
           llvm::StringRef lib, const mlir::attn::CpuLowerOptions &opts, int isa) {
  ::attn::emit::KernelSpec spec;
  spec.name = (lib + "_" + original.getSymName()).str();
  spec.cifaceSymbol = "_mlir_ciface_" + spec.name + "_tasks";
  llvm::raw_string_ostream doc(spec.doc);
  original->print(doc);
  llvm::StringMap<int> rankIds;
  for (auto r : original.getRanks().getAsRange<mlir::attn::RankAttr>()) {
    rankIds[r.getName().getValue()] = spec.ranks.size();
    spec.ranks.push_back({r.getName().str(),
                          ShapedType::isDynamic(r.getSize()) ? -1
                                                             : r.getSize()});
  }
  for (auto rel : original.getRelations().getAsRange<mlir::attn::RelationAttr>())
    spec.relations.push_back({rankIds.lookup(rel.getLhs().getValue()),
                              rel.getFactor(),
                              rankIds.lookup(rel.getRhs().getValue())});
  FunctionType ft = original.getFunctionType();
  // Partition ranks in argument types (paged KV: the cache's page rank p0,
  // the block table's p1): ranks of the table after the declared ones, with
  // p = tile * p1 (p is then in no argument; cpuArgPartitionRanks).
  for (const mlir::attn::CpuArgPartitionRank &pr :
       mlir::attn::cpuArgPartitionRanks(original)) {
    rankIds[pr.name] = spec.ranks.size();
    spec.ranks.push_back({pr.name, pr.staticSize});
    if (pr.outer)
      spec.relations.push_back(
          {rankIds.lookup(pr.whole), pr.tile, rankIds.lookup(pr.name)});
  }
  if (!mlir::attn::cpuArgPartitionRanks(original).empty())
    for (Type t : llvm::concat<const Type>(ft.getInputs(), ft.getResults()))
      for (StringAttr r : cast<mlir::attn::NamedTensorType>(t).getRanks())
        for (const mlir::attn::CpuArgPartitionRank &pr :
             mlir::attn::cpuArgPartitionRanks(original))
          if (r.getValue() == pr.whole)
            return original.emitError()
                   << "attnc: an argument uses the rank " << pr.whole
                   << " and another its partition rank " << pr.name
                   << "; not supported yet (|" << pr.whole << "| = "
                   << pr.tile << " * |" << pr.name << "| is derived)";
  auto addArg = [&](Type t, llvm::StringRef name,
                    ::attn::emit::ArgSpec::Role role) -> LogicalResult {
    auto nt = cast<mlir::attn::NamedTensorType>(t);
    auto dl = dlpackType(nt.getElementType());
    if (!dl)
      return original.emitError() << "attnc: '" << name << "' has element type "
                                  << nt.getElementType()
                                  << ", which the C ABI does not carry yet";
    ::attn::emit::ArgSpec a;
    a.name = name.str();
    a.role = role;
    a.dtypeCode = dl->first;
    a.dtypeBits = dl->second;
    for (StringAttr r : nt.getRanks()) {
      if (!rankIds.count(r.getValue()))
        return original.emitError() << "attnc: '" << name
                                    << "' uses a partition rank";
      a.dims.push_back(rankIds.lookup(r.getValue()));
    }
    spec.args.push_back(std::move(a));
    return success();
  };
  for (auto [t, n] : llvm::zip(ft.getInputs(), original.getArgNames()))
    if (failed(addArg(t, cast<StringAttr>(n).getValue(),
                      ::attn::emit::ArgSpec::Input)))
      return failure();
  unsigned r = 0;
  for (auto [t, n] : llvm::zip(ft.getResults(), original.getResultNames()))
    if (failed(addArg(t, cast<StringAttr>(n).getValue(),
                      // A quantization prologue's results are all read
                      // by the kernel after it: none is optional.
                      r++ == 0 || original->hasAttr(
                                      mlir::attn::kPrologueAttrName)
                          ? ::attn::emit::ArgSpec::Output
                          : ::attn::emit::ArgSpec::OptionalOutput)))
      return failure();
  // cu_seqlens read as sequence boundaries of a token rank (varlen): the
  // entry point checks them ([0] = 0, nondecreasing, last <= the token
  // rank's size), which the tile bounds of attn-lower-cpu rely on.
  {
    mlir::attn::GlobalCascade gc(original);
    for (unsigned id : gc.body()) {
      auto seq = mlir::attn::matchSequenceId(gc, id);
      if (!seq || seq->cu >= ft.getNumInputs())
        continue;
      auto sparse = mlir::attn::argSparsity(original, seq->cu);
      auto d = dyn_cast<AffineDimExpr>(seq->pos);
      if (!sparse || sparse.getKind() != mlir::attn::SparseKind::CuSeqlens ||
          !d || !rankIds.count(gc.rankName(d.getPosition())))
        continue;
      spec.args[seq->cu].metadataKind = 1; // ATTN_RT_META_CU_SEQLENS
      spec.args[seq->cu].metadataBoundRank =
          rankIds.lookup(gc.rankName(d.getPosition()));
    }
  }
  // Index tensors gathered through (a paged KV cache's block table, marked
  // block_table; per-query key lists, marked key_indices): the entry point
  // checks every value against the size of the dimension it indexes, as the
  // lowering would otherwise clamp it.
  using mlir::attn::ExprAttr;
  using mlir::attn::ExprKind;
  for (mlir::attn::EinsumOp op :
       original.getBodyBlock().getOps<mlir::attn::EinsumOp>())
    for (std::optional<ExprAttr> root :
         {std::optional<ExprAttr>(op.getExpr()), op.getCond()})
      if (root)
        root->walk([&](ExprAttr n) {
          if (n.getKind() != ExprKind::Load || n.getInput() < 0)
            return;
          auto outer = dyn_cast<BlockArgument>(op.getInputs()[n.getInput()]);
          if (!outer)
            return;
          auto nt = cast<mlir::attn::NamedTensorType>(
              ft.getInput(outer.getArgNumber()));
          for (auto [pos, ix] : llvm::enumerate(n.getArgs())) {
            if (ix.getKind() != ExprKind::Load || ix.getInput() < 0)
              continue;
            auto idx = dyn_cast<BlockArgument>(op.getInputs()[ix.getInput()]);
            if (!idx)
              continue;
            auto sparse = mlir::attn::argSparsity(original, idx.getArgNumber());
            if (!sparse ||
                (sparse.getKind() != mlir::attn::SparseKind::BlockTable &&
                 sparse.getKind() != mlir::attn::SparseKind::KeyIndices))
              continue;
            StringRef dim = nt.getRanks()[pos].getValue();
            if (!rankIds.count(dim))
              continue;
            spec.args[idx.getArgNumber()].metadataKind = 2; // ATTN_RT_META_INDEX
            spec.args[idx.getArgNumber()].metadataBoundRank =
                rankIds.lookup(dim);
          }
        });
  std::string why;
  auto plan = mlir::attn::planCpuTasks(lowered, opts, why);
  if (failed(plan))
    return original.emitError() << "attnc: " << why;
  spec.taskRanks.assign(plan->taskRanks.begin(), plan->taskRanks.end());
  spec.tiledRank = plan->rowRank;
  spec.tile = plan->rowTile;
  spec.requiredIsa = isa;
  spec.note = quantNote(original, lib, *plan);
  return spec;
}

/// sm_80 -> (8, 0, false), sm_90a -> (9, 0, true), sm_120 -> (12, 0, false).
std::optional<::attn::emit::CubinSpec> parseChip(llvm::StringRef chip) {
  llvm::StringRef digits = chip;
  if (!digits.consume_front("sm_"))
    return std::nullopt;
  ::attn::emit::CubinSpec c;
  c.arch = chip.str();
  c.archSpecific = digits.consume_back("a");
  unsigned v;
  if (digits.size() < 2 || digits.getAsInteger(10, v) || v < 10)
    return std::nullopt;
  c.major = v / 10;
  c.minor = v % 10;
  return c;
}

/// The ptxas to run: --ptxas, $ATTN_PTXAS, $CUDA_HOME/bin/ptxas, the build's
/// (ATTN_DEFAULT_PTXAS), PATH.
std::string findPtxas() {
  if (!ptxasPath.empty())
    return ptxasPath;
  auto exists = [](const std::string &p) {
    return !p.empty() && llvm::sys::fs::can_execute(p);
  };
  if (const char *e = getenv("ATTN_PTXAS"); e && exists(e))
    return e;
  if (const char *h = getenv("CUDA_HOME")) {
    std::string p = std::string(h) + "/bin/ptxas";
    if (exists(p))
      return p;
  }
#ifdef ATTN_DEFAULT_PTXAS
  if (exists(ATTN_DEFAULT_PTXAS))
    return ATTN_DEFAULT_PTXAS;
#endif
  if (auto p = llvm::sys::findProgramByName("ptxas"))
    return *p;
  return "";
}

/// The ABI description of a GPU kernel: ranks and names from the cascade as
/// written, dtypes from the kernel's parameters, the grid from its
/// attn_launch attribute (attn-lower-gpu).
FailureOr<std::pair<::attn::emit::KernelSpec, ::attn::emit::CudaKernelSpec>>
gpuKernelSpec(mlir::attn::CascadeOp original, gpu::GPUFuncOp func,
              llvm::StringRef lib) {
  ::attn::emit::KernelSpec spec;
  ::attn::emit::CudaKernelSpec cuda;
  spec.name = (lib + "_" + original.getSymName()).str();
  spec.deviceType = 2;
  llvm::raw_string_ostream doc(spec.doc);
  original->print(doc);
  llvm::StringMap<int> rankIds;
  for (auto r : original.getRanks().getAsRange<mlir::attn::RankAttr>()) {
    rankIds[r.getName().getValue()] = spec.ranks.size();
    spec.ranks.push_back({r.getName().str(),
                          ShapedType::isDynamic(r.getSize()) ? -1
                                                             : r.getSize()});
  }
  for (auto rel :
       original.getRelations().getAsRange<mlir::attn::RelationAttr>())
    spec.relations.push_back({rankIds.lookup(rel.getLhs().getValue()),
                              rel.getFactor(),
                              rankIds.lookup(rel.getRhs().getValue())});
  auto launch = func->getAttrOfType<DictionaryAttr>(
      mlir::attn::kGpuLaunchAttrName);
  auto block = func.getKnownBlockSize();
  auto blockRows = launch ? launch.getAs<IntegerAttr>("block_rows") : nullptr;
  auto rowRank = launch ? launch.getAs<StringAttr>("row_rank") : nullptr;
  auto gridY = launch ? launch.getAs<ArrayAttr>("grid_y_ranks") : nullptr;
  auto smem = launch ? launch.getAs<IntegerAttr>("dynamic_shared_bytes")
                     : nullptr;
  auto align = launch ? launch.getAs<DenseI64ArrayAttr>("arg_align_bytes")
                      : nullptr;
  auto strideMul =
      launch ? launch.getAs<DenseI64ArrayAttr>("arg_stride_multiple") : nullptr;
  FunctionType ft = original.getFunctionType();
  unsigned numArgs = ft.getNumInputs() + ft.getNumResults();
  if (!block || block->size() != 3 || !blockRows || !rowRank || !gridY ||
      !smem || !align || !strideMul || align.size() != int64_t(numArgs) ||
      strideMul.size() != int64_t(numArgs) ||
      func.getNumArguments() != numArgs)
    return func.emitError("attnc: the kernel lacks a complete ")
           << mlir::attn::kGpuLaunchAttrName
           << " attribute or known_block_size";
  SmallVector<StringRef> names;
  for (Attribute n : original.getArgNames())
    names.push_back(cast<StringAttr>(n).getValue());
  for (Attribute n : original.getResultNames())
    names.push_back(cast<StringAttr>(n).getValue());
  SmallVector<Type> types(ft.getInputs());
  llvm::append_range(types, ft.getResults());
  for (unsigned i = 0; i < numArgs; ++i) {
    auto nt = cast<mlir::attn::NamedTensorType>(types[i]);
    Type elem = cast<MemRefType>(func.getArgumentTypes()[i]).getElementType();
    auto dl = dlpackType(elem);
    if (!dl)
      return original.emitError() << "attnc: '" << names[i]
                                  << "' has element type " << elem
                                  << ", which the C ABI does not carry yet";
    ::attn::emit::ArgSpec a;
    a.name = names[i].str();
    a.role = i < ft.getNumInputs() ? ::attn::emit::ArgSpec::Input
             : i == ft.getNumInputs() ? ::attn::emit::ArgSpec::Output
                                      : ::attn::emit::ArgSpec::OptionalOutput;
    a.dtypeCode = dl->first;
    a.dtypeBits = dl->second;
    a.unitInnerStride = true; // every parameter is strided<[?, .., 1]>
    for (StringAttr r : nt.getRanks())
      a.dims.push_back(rankIds.lookup(r.getValue()));
    spec.args.push_back(std::move(a));
    cuda.alignBytes.push_back(align[i]);
    cuda.strideMultiple.push_back(strideMul[i]);
  }
  for (Attribute r : gridY) {
    StringRef n = cast<StringAttr>(r).getValue();
    if (!rankIds.count(n))
      return func.emitError("attnc: grid rank ") << n << " is not a rank";
    spec.taskRanks.push_back(rankIds.lookup(n));
  }
  if (!rankIds.count(rowRank.getValue()))
    return func.emitError("attnc: row rank is not a rank");
  spec.tiledRank = rankIds.lookup(rowRank.getValue());
  spec.taskRanks.push_back(spec.tiledRank);
  spec.tile = blockRows.getInt();
  cuda.function = func.getName().str();
  cuda.block[0] = (*block)[0];
  cuda.block[1] = (*block)[1];
  cuda.block[2] = (*block)[2];
  cuda.dynamicSharedBytes = smem.getInt();
  return std::make_pair(std::move(spec), std::move(cuda));
}

/// The header paragraph on a GPU kernel's tensors and launch.
std::string gpuTensorDoc(const ::attn::emit::KernelSpec &k,
                         const ::attn::emit::CudaKernelSpec &c) {
  std::string out;
  llvm::raw_string_ostream os(out);
  os << "GPU kernel: tensors in CUDA device memory (data is a CUdeviceptr),\n"
        "device_type ATTN_DEVICE_CUDA, all on one device_id; strides in "
        "elements,\n>= 0, innermost 1; outputs must not overlap. Alignment "
        "of data + byte_offset\n(bytes) / multiple every other stride must "
        "be (elements):";
  for (size_t i = 0; i < k.args.size(); ++i)
    os << (i ? "," : "") << " " << k.args[i].name << " " << c.alignBytes[i]
       << "/" << c.strideMultiple[i];
  os << ".\nLaunch: on launch->stream (NULL: the default stream), grid ("
     << "ceil(|" << k.ranks[k.tiledRank].name << "| / " << k.tile << "), ";
  bool first = true;
  for (int r : k.taskRanks)
    if (r != k.tiledRank) {
      os << (first ? "" : " * ") << "|" << k.ranks[r].name << "|";
      first = false;
    }
  if (first)
    os << "1";
  os << " <= " << c.maxGridY << "), " << c.block[0] << " x " << c.block[1]
     << " x " << c.block[2] << " threads, " << c.dynamicSharedBytes
     << " bytes of dynamic shared memory;\nreturns once queued. Cubins:";
  for (const auto &cb : c.cubins)
    os << " " << cb.arch;
  os << " (another device: ATTN_ERR_NO_KERNEL;\nno libcuda.so.1 or no "
        "device: ATTN_ERR_NO_DEVICE; a failed driver call:\n"
        "ATTN_ERR_DRIVER).\n";
  return out;
}

} // namespace

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  cl::HideUnrelatedOptions(category);
  cl::ParseCommandLineOptions(
      argc, argv,
      "attnc: compiles attention cascades (attn dialect) to a static library "
      "and a C header\n\n"
      "  attnc variant.mlir -o build/flash   writes build/libflash.a and "
      "build/flash.h\n"
      "  attnc variant.mlir -o build/flash --emit=shared   writes "
      "build/libflash.so and build/flash.h\n"
      "  one entry point per cascade: attn_status flash_<cascade>(const "
      "flash_<cascade>_args *, const attn_launch *)\n");
  StageTimer timer;

  llvm::InitializeNativeTarget();
  llvm::InitializeNativeTargetAsmPrinter();

  // Target machine.
  std::string triple = llvm::sys::getDefaultTargetTriple();
  std::string cpu = llvm::sys::getHostCPUName().str();
  llvm::SubtargetFeatures features;
  int isa = 0;
  bool hostBF16 = false, hostVNNI = false;
  std::vector<::attn::emit::CubinSpec> gpuChips; // --target=sm_..
  if (target == "host") {
    for (auto &f : llvm::sys::getHostCPUFeatures())
      features.AddFeature(f.first(), f.second);
    llvm::StringMap<bool> host = llvm::sys::getHostCPUFeatures();
    isa = host.lookup("avx512f") ? 2 : (host.lookup("avx2") && host.lookup("fma") ? 1 : 0);
    hostBF16 = isa == 2 && host.lookup("avx512bf16");
    hostVNNI = isa == 2 && host.lookup("avx512vnni");
  } else if (target == "x86_64-avx512") {
    cpu = "x86-64-v4";
    isa = 2;
  } else if (target == "x86_64-avx2") {
    cpu = "x86-64-v3";
    isa = 1;
  } else if (llvm::StringRef(target).starts_with("sm_")) {
    // GPU archs; the host code is for this machine's CPU (generic x86-64
    // code: it only validates and calls the driver).
    llvm::SmallVector<llvm::StringRef> chips;
    llvm::StringRef(target).split(chips, ',', -1, /*KeepEmpty=*/false);
    for (llvm::StringRef chip : chips) {
      auto c = parseChip(chip.trim());
      if (!c)
        return fail("unknown GPU target '" + chip +
                    "' (expected sm_<major><minor>[a], e.g. sm_80, sm_90a)");
      for (const auto &prev : gpuChips)
        if (prev.arch == c->arch)
          return fail("GPU target " + c->arch + " is listed twice");
      gpuChips.push_back(*c);
    }
    cpu = "x86-64";
  } else {
    return fail("unknown --target '" + target +
                "' (host, x86_64-avx512, x86_64-avx2, or GPU archs such as "
                "sm_80,sm_90a; CPU and GPU targets cannot be mixed in one "
                "library)");
  }
  if (!mcpu.empty())
    cpu = mcpu;
  std::string error;
  const llvm::Target *llvmTarget =
      llvm::TargetRegistry::lookupTarget(llvm::Triple(triple), error);
  if (!llvmTarget)
    return fail("no LLVM target for " + triple + ": " + error);
  llvm::TargetOptions targetOptions;
  std::unique_ptr<llvm::TargetMachine> tm(llvmTarget->createTargetMachine(
      llvm::Triple(triple), cpu, features.getString(), targetOptions,
      llvm::Reloc::PIC_, std::nullopt, llvm::CodeGenOptLevel::Aggressive));
  if (!tm)
    return fail("cannot create a target machine for " + triple + " " + cpu);

  // Input.
  DialectRegistry registry;
  registry.insert<mlir::attn::AttnDialect, func::FuncDialect, arith::ArithDialect,
                  math::MathDialect, memref::MemRefDialect, scf::SCFDialect,
                  vector::VectorDialect, LLVM::LLVMDialect>();
  if (!gpuChips.empty()) {
    registry.insert<gpu::GPUDialect, NVVM::NVVMDialect, nvgpu::NVGPUDialect>();
    mlir::attn::registerGpuCodeGenInterfaces(registry);
  } else {
    registerBuiltinDialectTranslation(registry);
    registerLLVMDialectTranslation(registry);
  }
  MLIRContext context(registry);
  context.loadAllAvailableDialects();
  llvm::SourceMgr sourceMgr;
  SourceMgrDiagnosticHandler diagHandler(sourceMgr, &context);
  context.getDiagEngine().registerHandler([&](Diagnostic &d) {
    if (d.getSeverity() == DiagnosticSeverity::Remark && !verbose)
      return success();
    return failure(); // let the SourceMgr handler print it
  });
  std::string errorMessage;
  auto file = openInputFile(inputFile, &errorMessage);
  if (!file)
    return fail(errorMessage);
  sourceMgr.AddNewSourceBuffer(std::move(file), llvm::SMLoc());
  OwningOpRef<ModuleOp> module = parseSourceFile<ModuleOp>(sourceMgr, &context);
  if (!module)
    return 1;
  timer.stage("parse");

  llvm::StringRef prefix = output;
  std::string libName = llvm::sys::path::filename(prefix).str();
  std::string dir = llvm::sys::path::parent_path(prefix).str();
  if (libName.empty())
    return fail("-o needs DIR/NAME");
  for (char c : libName)
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '_'))
      return fail("NAME in -o DIR/NAME must be a C identifier: '" + libName +
                  "'");

  // --rank-size overrides.
  for (const std::string &rs : rankSizes) {
    auto [name, value] = llvm::StringRef(rs).split('=');
    int64_t size;
    if (value.getAsInteger(10, size) || size < 1)
      return fail("--rank-size expects rank=size with size >= 1, got '" + rs +
                  "'");
    bool found = false;
    module->walk([&](mlir::attn::CascadeOp c) {
      SmallVector<Attribute> ranks;
      for (auto r : c.getRanks().getAsRange<mlir::attn::RankAttr>()) {
        if (r.getName().getValue() == name) {
          found = true;
          r = mlir::attn::RankAttr::get(&context, r.getName(), size);
        }
        ranks.push_back(r);
      }
      c.setRanksAttr(ArrayAttr::get(&context, ranks));
    });
    if (!found)
      return fail("--rank-size: no rank named '" + name + "'");
  }
  if (failed(verify(*module)))
    return 1;

  // 0. Quantization annotations (docs/quantize.md): attn-quantize writes the
  // quantization out; a cascade quantized on the fly is then split into its
  // quantization kernel (@<name>_quant, run first) and the attention
  // kernel reading its results (attn-split-quant). Without annotations
  // asking for it (`to`, `scale`) both passes change nothing.
  {
    PassManager pm(&context);
    pm.addPass(mlir::attn::createAttnQuantizePass());
    pm.addPass(mlir::attn::createAttnSplitQuantPass());
    if (failed(pm.run(*module)))
      return fail("attn-quantize failed");
  }
  timer.stage("attn-quantize");

  // Keep the cascades as written for the header and the descriptors.
  SmallVector<mlir::attn::CascadeOp> originals;
  module->walk([&](mlir::attn::CascadeOp c) { originals.push_back(c); });
  if (originals.empty())
    return fail("no attn.cascade in " + inputFile);
  OwningOpRef<ModuleOp> written = cast<ModuleOp>(module->clone());
  SmallVector<mlir::attn::CascadeOp> writtenCascades;
  written->walk([&](mlir::attn::CascadeOp c) { writtenCascades.push_back(c); });

  // Tiles: the cache part of the cost model (cpuTileModel), per cascade,
  // unless --row-tile / --key-tile fix them.
  mlir::attn::CpuLowerOptions opts;
  opts.vectorize = !scalar;
  opts.vectorWidth = isa == 2 ? 16 : 8;
  opts.vectorRegisters = isa == 2 ? 32 : 16;
  opts.bf16Dot = hostBF16 && !noBF16Dot;
  opts.vnni = hostVNNI && !noVNNI;
  mlir::attn::CpuCacheSizes caches{isa == 2 ? 48 * 1024 : 32 * 1024,
                                   isa == 2 ? 1024 * 1024 : 256 * 1024};
  std::string cacheSource = "defaults for the target";
  if (target == "host") {
    mlir::attn::CpuCacheSizes host = hostCaches();
    if (host.l1d && host.l2) {
      caches = host;
      cacheSource = "CPUID";
    }
  }
  if (l1dCache > 0)
    caches.l1d = l1dCache * 1024;
  if (l2Cache > 0)
    caches.l2 = l2Cache * 1024;
  if (l1dCache > 0 && l2Cache > 0)
    cacheSource = "flags";
  else if (l1dCache > 0 || l2Cache > 0)
    cacheSource += " and flags";
  if (rowTile < 0 || keyTile < 0 || l1dCache < 0 || l2Cache < 0)
    return fail("--row-tile, --key-tile, --l1d-cache and --l2-cache take "
                "positive values (0: the model's choice)");
  if (verbose && gpuChips.empty())
    llvm::errs() << "attnc: caches L1d " << caches.l1d / 1024 << " KiB, L2 "
                 << caches.l2 / 1024 << " KiB (" << cacheSource << ")\n";
  SmallVector<mlir::attn::CpuTiles> tiles;
  for (auto c : writtenCascades) {
    mlir::attn::CpuTiles t;
    if (gpuChips.empty())
      t = mlir::attn::cpuTileModel(opts, caches,
                                   mlir::attn::cpuTileQuery(c));
    else
      t.reason = "the GPU kernel's key tile"; // 64 x 64 (attn-lower-gpu)
    if (rowTile > 0)
      t.rowTile = rowTile;
    if (keyTile > 0)
      t.keyTile = keyTile;
    if (verbose)
      llvm::errs() << "attnc: @" << c.getSymName() << " tiles " << t.rowTile
                   << " x " << t.keyTile << " (" << t.reason
                   << (rowTile > 0 || keyTile > 0 ? "; overridden by flags"
                                                  : "")
                   << ")\n";
    tiles.push_back(t);
  }

  // 1. Derivation, one cascade at a time (each with its key tile).
  if (!noDerive) {
    SmallVector<mlir::attn::CascadeOp> cascades;
    module->walk([&](mlir::attn::CascadeOp c) { cascades.push_back(c); });
    for (auto [c, t] : llvm::zip(cascades, tiles)) {
      OwningOpRef<ModuleOp> one = ModuleOp::create(c.getLoc());
      one->push_back(c->clone());
      PassManager pm(&context);
      // Linear attention (feature maps) has a kernel in its reassociated
      // form only: phi(Q) (phi(K)^T V), or causal chunks of the row tile.
      bool featureMaps = false;
      c.getBodyBlock().walk([&](mlir::attn::EinsumOp op) {
        if (auto lr = op->getAttrOfType<mlir::attn::LowRankAttr>("attn.lowrank"))
          featureMaps |= lr.getKind() == mlir::attn::LowRankKind::FeatureMap;
      });
      if (featureMaps && !noReassociate) {
        mlir::attn::AttnReassociatePassOptions ro;
        ro.chunk = t.rowTile;
        pm.addPass(mlir::attn::createAttnReassociatePass(ro));
      }
      mlir::attn::AttnDeriveOnlinePassOptions o;
      o.tile = t.keyTile;
      pm.addPass(mlir::attn::createAttnDeriveOnlinePass(o));
      if (failed(pm.run(*one)))
        return fail("attn-derive-online failed");
      OpBuilder ob(c);
      for (auto d : one->getOps<mlir::attn::CascadeOp>())
        ob.clone(*d);
      c.erase();
    }
  }
  timer.stage("attn-derive-online");

  std::vector<::attn::emit::KernelSpec> specs;
  llvm::LLVMContext llvmContext;
  std::unique_ptr<llvm::Module> llvmModule;
  if (!gpuChips.empty()) {
    // 2'. GPU: attn-lower-gpu, cubins, the host module.
    if (!storage.empty() && storage != "bf16" && storage != "f16")
      return fail("--storage must be bf16 or f16");
    mlir::attn::GpuLowerOptions gopts;
    gopts.storage = storage;
    SmallVector<mlir::attn::CascadeOp> derived;
    module->walk([&](mlir::attn::CascadeOp c) { derived.push_back(c); });
    SmallVector<::attn::emit::CudaKernelSpec> cudaSpecs;
    for (auto [orig, c] : llvm::zip(writtenCascades, derived)) {
      if (c->hasAttr(mlir::attn::kPrologueAttrName))
        return fail("@" + c.getSymName() +
                    " is the quantization prologue of INT8 on the fly "
                    "(attn-split-quant): lowered on the CPU only "
                    "(attn-lower-gpu has no INT8 path; docs/quantize.md)");
      if (verbose)
        llvm::errs() << "attnc: lowering @" << c.getSymName() << " (GPU)\n";
      auto gm = mlir::attn::lowerCascadeToGpu(c, gopts);
      if (failed(gm))
        return 1;
      gpu::GPUFuncOp func;
      gm->walk([&](gpu::GPUFuncOp f) {
        if (f.isKernel())
          func = f;
      });
      auto spec = gpuKernelSpec(orig, func, libName);
      if (failed(spec))
        return 1;
      specs.push_back(std::move(spec->first));
      cudaSpecs.push_back(std::move(spec->second));
      c.erase();
    }
    timer.stage("attn-lower-gpu");
    if (emit == "mlir") {
      module->print(llvm::outs());
      return 0;
    }
    if (emit == "llvm-mlir")
      return fail("--emit=llvm-mlir is for CPU targets (GPU: mlir, llvm, "
                  "asm, obj, lib, shared)");
    std::string ptxas = findPtxas();
    if (!ptxas.empty() && !llvm::sys::fs::can_execute(ptxas))
      return fail("cannot execute ptxas '" + ptxas + "'");
    if (ptxas.empty())
      return fail("GPU targets need ptxas (CUDA 12.x/13.x): give --ptxas, "
                  "set ATTN_PTXAS or CUDA_HOME, or put it on PATH");
    for (auto &chip : gpuChips) {
      auto bins = mlir::attn::compileGpuKernels(*module, chip.arch, ptxas);
      if (failed(bins))
        return 1;
      for (auto &cs : cudaSpecs) {
        auto it = llvm::find_if(*bins, [&](const auto &b) {
          return b.kernel == cs.function;
        });
        if (it == bins->end() || it->cubin.empty())
          return fail("no cubin for " + cs.function + " (" + chip.arch + ")");
        if (it->spillStores > 0 && verbose)
          llvm::errs() << "attnc: warning: " << cs.function << " spills "
                       << it->spillStores << " bytes on " << chip.arch << "\n";
        if (verbose)
          llvm::errs() << "attnc: " << cs.function << " " << chip.arch << ": "
                       << it->registers << " registers, " << it->sharedBytes
                       << " bytes shared memory, cubin " << it->cubin.size()
                       << " bytes\n";
        ::attn::emit::CubinSpec cb = chip;
        cb.image = std::move(it->cubin);
        cs.cubins.push_back(std::move(cb));
      }
      timer.stage("PTX + ptxas (" + chip.arch + ")");
    }
    llvmModule = std::make_unique<llvm::Module>(libName, llvmContext);
    llvmModule->setTargetTriple(llvm::Triple(triple));
    llvmModule->setDataLayout(tm->createDataLayout());
    for (auto [spec, cs] : llvm::zip(specs, cudaSpecs)) {
      spec.tensorDoc = gpuTensorDoc(spec, cs);
      if (auto err = ::attn::emit::addCudaKernelEntry(*llvmModule, spec, cs))
        return fail("entry point of " + spec.name + ": " +
                    llvm::toString(std::move(err)));
    }
    if (llvm::verifyModule(*llvmModule, &llvm::errs()))
      return fail("the generated LLVM module does not verify");
    timer.stage("host entry points");
    if (emit == "llvm") {
      llvmModule->print(llvm::outs(), nullptr);
      return 0;
    }
  } else {
  // 2. Lowering of every cascade to its task function.
  SmallVector<mlir::attn::CascadeOp> derived;
  module->walk([&](mlir::attn::CascadeOp c) { derived.push_back(c); });
  for (auto [orig, c, t] : llvm::zip(writtenCascades, derived, tiles)) {
    opts.rowTile = t.rowTile;
    if (verbose)
      llvm::errs() << "attnc: lowering @" << c.getSymName() << "\n";
    auto spec = kernelSpec(orig, c, libName, opts, isa);
    if (failed(spec))
      return 1;
    auto func = mlir::attn::lowerCascadeToCpu(c, opts);
    if (failed(func))
      return 1;
    func->setSymName(spec->name + "_tasks");
    specs.push_back(std::move(*spec));
    c.erase();
  }
  timer.stage("attn-lower-cpu");
  if (emit == "mlir") {
    module->print(llvm::outs());
    return 0;
  }

  // 3. To the LLVM dialect.
  {
    PassManager pm(&context);
    mlir::attn::buildCpuToLLVMPipeline(pm);
    if (failed(pm.run(*module)))
      return fail("lowering to the LLVM dialect failed");
  }
  timer.stage("to LLVM dialect");
  if (emit == "llvm-mlir") {
    module->print(llvm::outs());
    return 0;
  }

  // 4. LLVM IR, entry points, optimisation.
  llvmModule = translateModuleToLLVMIR(*module, llvmContext, libName);
  if (!llvmModule)
    return fail("translation to LLVM IR failed");
  llvmModule->setTargetTriple(llvm::Triple(triple));
  llvmModule->setDataLayout(tm->createDataLayout());
  for (auto &spec : specs)
    if (auto err = ::attn::emit::addKernelEntry(*llvmModule, spec))
      return fail("entry point of " + spec.name + ": " +
                  llvm::toString(std::move(err)));
  for (llvm::Function &f : *llvmModule)
    if (!f.isDeclaration()) {
      f.addFnAttr("target-cpu", cpu);
      f.addFnAttr("target-features", features.getString());
    }
  if (llvm::verifyModule(*llvmModule, &llvm::errs()))
    return fail("the generated LLVM module does not verify");
  timer.stage("to LLVM IR");
  {
    llvm::LoopAnalysisManager lam;
    llvm::FunctionAnalysisManager fam;
    llvm::CGSCCAnalysisManager cgam;
    llvm::ModuleAnalysisManager mam;
    llvm::PassBuilder pb(tm.get());
    pb.registerModuleAnalyses(mam);
    pb.registerCGSCCAnalyses(cgam);
    pb.registerFunctionAnalyses(fam);
    pb.registerLoopAnalyses(lam);
    pb.crossRegisterProxies(lam, fam, cgam, mam);
    llvm::ModulePassManager mpm =
        pb.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O3);
    mpm.run(*llvmModule, mam);
  }
  timer.stage("LLVM O3");
  if (emit == "llvm") {
    llvmModule->print(llvm::outs(), nullptr);
    return 0;
  }
  } // CPU

  // 5. Machine code.
  llvm::SmallString<0> objectBytes;
  {
    llvm::raw_svector_ostream os(objectBytes);
    llvm::legacy::PassManager cg;
    auto kind = emit == "asm" ? llvm::CodeGenFileType::AssemblyFile
                              : llvm::CodeGenFileType::ObjectFile;
    if (tm->addPassesToEmitFile(cg, os, nullptr, kind))
      return fail("the target cannot emit this file type");
    cg.run(*llvmModule);
  }
  timer.stage("LLVM codegen (" + cpu + ")");
  if (emit == "asm") {
    llvm::outs() << objectBytes;
    return 0;
  }

  if (!dir.empty())
    if (auto ec = llvm::sys::fs::create_directories(dir))
      return fail("cannot create " + dir + ": " + ec.message());
  auto joined = [&](llvm::StringRef file) {
    llvm::SmallString<256> p(dir);
    llvm::sys::path::append(p, file);
    return std::string(p);
  };
  if (emit == "obj") {
    std::error_code ec;
    llvm::raw_fd_ostream os(joined(libName + ".o"), ec);
    if (ec)
      return fail(ec.message());
    os << objectBytes;
    return 0;
  }
  if (emit != "lib" && emit != "shared")
    return fail("unknown --emit '" + emit + "'");

  std::vector<std::pair<std::string, std::unique_ptr<llvm::MemoryBuffer>>> objs;
  objs.emplace_back(libName + ".o", llvm::MemoryBuffer::getMemBufferCopy(
                                        objectBytes, libName + ".o"));
  std::string libPath;
  if (emit == "shared") {
    // The object is position-independent (Reloc::PIC_ above), as is the
    // runtime object (-fPIC).
    libPath = joined("lib" + libName + ".so");
    if (auto err = ::attn::emit::writeSharedLibrary(libPath, objs, cc))
      return fail(llvm::toString(std::move(err)));
  } else {
    libPath = joined("lib" + libName + ".a");
    if (auto err = ::attn::emit::writeStaticLibrary(libPath, objs))
      return fail("writing " + libPath + ": " +
                  llvm::toString(std::move(err)));
  }
  std::string headerPath = joined(libName + ".h");
  {
    std::error_code ec;
    llvm::raw_fd_ostream os(headerPath, ec);
    if (ec)
      return fail("writing " + headerPath + ": " + ec.message());
    os << ::attn::emit::writeHeader(libName, specs);
  }
  timer.stage("write library and header");
  if (verbose)
    llvm::errs() << "attnc: wrote " << libPath << " and " << headerPath
                 << " (" << specs.size() << " kernel"
                 << (specs.size() == 1 ? "" : "s") << ", "
                 << (gpuChips.empty() ? cpu : target.getValue()) << ")\n";
  if (timing)
    timer.print();
  return 0;
}
