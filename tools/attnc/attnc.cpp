//===- attnc.cpp - the attention compiler driver ----------------------------===//
//
//   attnc variants.mlir -o build/flash        # build/libflash.a + build/flash.h
//   attnc variants.mlir -o build/flash --emit=shared   # build/libflash.so + .h
//
// For every attn.cascade of the input: attn-derive-online (the 1-pass form),
// attn-lower-cpu (task function on memrefs), the CPU-to-LLVM pipeline,
// translation to LLVM IR, the kernel's descriptor and entry point
// (lib/Emit), LLVM's O3 pipeline and code generation for the target CPU;
// then one static library holding the object and the runtime (or, with
// --emit=shared, a shared library linked by the system C compiler driver),
// and one C header. No C source is generated at any step.
//
//===----------------------------------------------------------------------===//

#include "attn/CodeGen/CPU.h"
#include "attn/Dialect.h"
#include "attn/Emit/Library.h"
#include "attn/Passes.h"
#include "attn/Transforms/MaskTiles.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
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
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/Target/TargetOptions.h"
#include "llvm/TargetParser/Host.h"
#include "llvm/TargetParser/SubtargetFeature.h"

#include <chrono>

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
             "(AVX-512F/BW/VL/DQ + FMA), x86_64-avx2 (AVX2 + FMA)"),
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
static cl::opt<int64_t> rowTile("row-tile",
                                cl::desc("Query rows per task (default 64)"),
                                cl::init(64), cl::cat(category));
static cl::opt<int64_t> keyTile(
    "key-tile", cl::desc("Keys per tile of the 1-pass form (default 64)"),
    cl::init(64), cl::cat(category));
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
static cl::opt<bool> scalar(
    "scalar", cl::desc("Plain scalar loops (no micro-kernels, for debugging)"),
    cl::init(false), cl::cat(category));
static cl::opt<bool> timing("timing",
                            cl::desc("Print the time of every stage"),
                            cl::init(false), cl::cat(category));
static cl::opt<bool> verbose("v",
                             cl::desc("Show progress and the derivation "
                                      "remarks"),
                             cl::init(false), cl::cat(category));

namespace {

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
                      r++ == 0 ? ::attn::emit::ArgSpec::Output
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
  std::string why;
  auto plan = mlir::attn::planCpuTasks(lowered, opts, why);
  if (failed(plan))
    return original.emitError() << "attnc: " << why;
  spec.taskRanks.assign(plan->taskRanks.begin(), plan->taskRanks.end());
  spec.tiledRank = plan->rowRank;
  spec.tile = plan->rowTile;
  spec.requiredIsa = isa;
  return spec;
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
  if (target == "host") {
    for (auto &f : llvm::sys::getHostCPUFeatures())
      features.AddFeature(f.first(), f.second);
    llvm::StringMap<bool> host = llvm::sys::getHostCPUFeatures();
    isa = host.lookup("avx512f") ? 2 : (host.lookup("avx2") && host.lookup("fma") ? 1 : 0);
  } else if (target == "x86_64-avx512") {
    cpu = "x86-64-v4";
    isa = 2;
  } else if (target == "x86_64-avx2") {
    cpu = "x86-64-v3";
    isa = 1;
  } else {
    return fail("unknown --target '" + target +
                "' (host, x86_64-avx512, x86_64-avx2)");
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
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
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

  // Keep the cascades as written for the header and the descriptors.
  SmallVector<mlir::attn::CascadeOp> originals;
  module->walk([&](mlir::attn::CascadeOp c) { originals.push_back(c); });
  if (originals.empty())
    return fail("no attn.cascade in " + inputFile);
  OwningOpRef<ModuleOp> written = cast<ModuleOp>(module->clone());
  SmallVector<mlir::attn::CascadeOp> writtenCascades;
  written->walk([&](mlir::attn::CascadeOp c) { writtenCascades.push_back(c); });

  // 1. Derivation.
  if (!noDerive) {
    PassManager pm(&context);
    mlir::attn::AttnDeriveOnlinePassOptions o;
    o.tile = keyTile;
    pm.addPass(mlir::attn::createAttnDeriveOnlinePass(o));
    if (failed(pm.run(*module)))
      return fail("attn-derive-online failed");
  }
  timer.stage("attn-derive-online");

  // 2. Lowering of every cascade to its task function.
  mlir::attn::CpuLowerOptions opts;
  opts.rowTile = rowTile;
  opts.vectorize = !scalar;
  opts.vectorWidth = isa == 2 ? 16 : 8;
  opts.vectorRegisters = isa == 2 ? 32 : 16;
  SmallVector<::attn::emit::KernelSpec> specs;
  SmallVector<mlir::attn::CascadeOp> derived;
  module->walk([&](mlir::attn::CascadeOp c) { derived.push_back(c); });
  for (auto [orig, c] : llvm::zip(writtenCascades, derived)) {
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
  llvm::LLVMContext llvmContext;
  std::unique_ptr<llvm::Module> llvmModule =
      translateModuleToLLVMIR(*module, llvmContext, libName);
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
                 << (specs.size() == 1 ? "" : "s") << ", " << cpu << ")\n";
  if (timing)
    timer.print();
  return 0;
}
