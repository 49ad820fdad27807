//===- GPU.cpp - from attn-lower-gpu's gpu.module to PTX and cubins -------===//
//
// The pipeline after attn-lower-gpu (include/attn/CodeGen/GPU.h):
//
//   nvvm-attach-target{chip, +ptx80, O3}
//   gpu.module(convert-nvgpu-to-nvvm, scf-to-cf, arith-expand,
//              convert-gpu-to-nvvm, convert-nvvm-to-llvm, canonicalize, cse,
//              reconcile-unrealized-casts)
//   gpu-module-to-binary{format=isa}   LLVM IR -> NVPTX back end -> PTX
//   ptxas -v -arch=<chip>              PTX -> cubin (+ registers, spills)
//
//===----------------------------------------------------------------------===//

#include "attn/CodeGen/GPU.h"

#include "mlir/Conversion/ArithToLLVM/ArithToLLVM.h"
#include "mlir/Conversion/ControlFlowToLLVM/ControlFlowToLLVM.h"
#include "mlir/Conversion/IndexToLLVM/IndexToLLVM.h"
#include "mlir/Conversion/MathToLLVM/MathToLLVM.h"
#include "mlir/Conversion/MemRefToLLVM/MemRefToLLVM.h"
#include "mlir/Conversion/NVVMToLLVM/NVVMToLLVM.h"
#include "mlir/Conversion/Passes.h"
#include "mlir/Conversion/UBToLLVM/UBToLLVM.h"
#include "mlir/Conversion/VectorToLLVM/ConvertVectorToLLVM.h"
#include "mlir/Dialect/Arith/Transforms/Passes.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVM/NVVM/Target.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/GPU/GPUToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/NVVM/NVVMToLLVMIRTranslation.h"
#include "mlir/Transforms/Passes.h"

#include "llvm/ADT/ScopeExit.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/Regex.h"

namespace mlir::attn {

void buildGpuToNVVMPipeline(OpPassManager &pm, llvm::StringRef chip) {
  GpuNVVMAttachTargetOptions target;
  target.chip = chip.str();
  target.features = "+ptx80";
  target.optLevel = 3;
  pm.addPass(createGpuNVVMAttachTarget(target));
  OpPassManager &g = pm.nest<gpu::GPUModuleOp>();
  g.addPass(createConvertNVGPUToNVVMPass());
  g.addPass(createSCFToControlFlowPass());
  g.addPass(arith::createArithExpandOpsPass());
  g.addPass(createConvertGpuOpsToNVVMOps());
  g.addPass(createConvertNVVMToLLVMPass());
  g.addPass(createCanonicalizerPass());
  g.addPass(createCSEPass());
  g.addPass(createReconcileUnrealizedCastsPass());
}

void registerGpuCodeGenInterfaces(DialectRegistry &registry) {
  arith::registerConvertArithToLLVMInterface(registry);
  cf::registerConvertControlFlowToLLVMInterface(registry);
  index::registerConvertIndexToLLVMInterface(registry);
  registerConvertMathToLLVMInterface(registry);
  registerConvertMemRefToLLVMInterface(registry);
  registerConvertNVVMToLLVMInterface(registry);
  ub::registerConvertUBToLLVMInterface(registry);
  vector::registerConvertVectorToLLVMInterface(registry);
  NVVM::registerNVVMTargetInterfaceExternalModels(registry);
  registerBuiltinDialectTranslation(registry);
  registerGPUDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  registerNVVMDialectTranslation(registry);
}

bool parsePtxasReport(llvm::StringRef log, GpuKernelBinary &bin) {
  // ptxas info    : Compiling entry function 'k' for 'sm_80'
  // ptxas info    : Function properties for k
  //     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
  // ptxas info    : Used 96 registers, used 1 barriers, 34816 bytes smem, ...
  size_t at = log.find("Compiling entry function '" + bin.kernel + "'");
  if (at == llvm::StringRef::npos)
    return false;
  llvm::StringRef rest = log.drop_front(at);
  size_t next = rest.find("Compiling entry function", 10);
  rest = rest.take_front(next);
  llvm::SmallVector<llvm::StringRef> m;
  if (llvm::Regex("([0-9]+) bytes spill stores, ([0-9]+) bytes spill loads")
          .match(rest, &m)) {
    m[1].getAsInteger(10, bin.spillStores);
    m[2].getAsInteger(10, bin.spillLoads);
  }
  if (llvm::Regex("Used ([0-9]+) registers").match(rest, &m))
    m[1].getAsInteger(10, bin.registers);
  if (llvm::Regex("([0-9]+) bytes smem").match(rest, &m))
    m[1].getAsInteger(10, bin.sharedBytes);
  return bin.registers >= 0 && bin.spillStores >= 0;
}

/// Runs `ptxas -v -arch=<chip>` on bin.ptx; fills cubin and the report.
static LogicalResult assemble(Operation *at, llvm::StringRef ptxas,
                              GpuKernelBinary &bin) {
  llvm::SmallString<128> ptxPath, cubinPath, logPath;
  if (llvm::sys::fs::createTemporaryFile("attn-gpu", "ptx", ptxPath) ||
      llvm::sys::fs::createTemporaryFile("attn-gpu", "cubin", cubinPath) ||
      llvm::sys::fs::createTemporaryFile("attn-gpu", "log", logPath))
    return at->emitError("cannot create temporary files for ptxas");
  llvm::scope_exit cleanup([&] {
    llvm::sys::fs::remove(ptxPath);
    llvm::sys::fs::remove(cubinPath);
    llvm::sys::fs::remove(logPath);
  });
  {
    std::error_code ec;
    llvm::raw_fd_ostream os(ptxPath, ec);
    if (ec)
      return at->emitError("cannot write ") << ptxPath;
    os << bin.ptx;
  }
  std::string arch = "-arch=" + bin.chip;
  llvm::SmallVector<llvm::StringRef> args = {ptxas, "-v", arch, "-o",
                                             cubinPath, ptxPath};
  std::optional<llvm::StringRef> redirects[] = {std::nullopt,
                                               llvm::StringRef(logPath),
                                               llvm::StringRef(logPath)};
  std::string err;
  int rc = llvm::sys::ExecuteAndWait(ptxas, args, std::nullopt, redirects, 0,
                                     0, &err);
  if (auto log = llvm::MemoryBuffer::getFile(logPath))
    bin.ptxasLog = (*log)->getBuffer().str();
  if (rc != 0)
    return at->emitError("ptxas failed for ")
           << bin.chip << " (" << rc << (err.empty() ? "" : ", " + err)
           << "):\n"
           << bin.ptxasLog;
  auto cubin = llvm::MemoryBuffer::getFile(cubinPath, /*IsText=*/false);
  if (!cubin)
    return at->emitError("ptxas wrote no cubin");
  bin.cubin = (*cubin)->getBuffer().str();
  if (!parsePtxasReport(bin.ptxasLog, bin))
    return at->emitError("cannot read the ptxas -v report of ")
           << bin.kernel << ":\n"
           << bin.ptxasLog;
  return success();
}

FailureOr<std::vector<GpuKernelBinary>>
compileGpuKernels(ModuleOp module, llvm::StringRef chip, llvm::StringRef ptxas) {
  MLIRContext *ctx = module.getContext();
  OwningOpRef<ModuleOp> clone = module.clone();
  // Kernel names per gpu.module, before lowering.
  llvm::StringMap<std::vector<std::string>> kernels;
  clone->walk([&](gpu::GPUFuncOp f) {
    if (f.isKernel())
      kernels[f->getParentOfType<gpu::GPUModuleOp>().getName()].push_back(
          f.getName().str());
  });
  PassManager pm = PassManager::on<ModuleOp>(ctx);
  buildGpuToNVVMPipeline(pm, chip);
  GpuModuleToBinaryPassOptions toBinary;
  toBinary.compilationTarget = "isa";
  pm.addPass(createGpuModuleToBinaryPass(toBinary));
  if (failed(pm.run(*clone)))
    return module.emitError("lowering the GPU kernels for ") << chip
                                                            << " failed";
  std::vector<GpuKernelBinary> out;
  for (auto binary : clone->getOps<gpu::BinaryOp>()) {
    auto object = cast<gpu::ObjectAttr>(binary.getObjects()[0]);
    for (const std::string &k : kernels[binary.getName()]) {
      GpuKernelBinary bin;
      bin.chip = chip.str();
      bin.kernel = k;
      bin.ptx = object.getObject().getValue().str();
      if (!ptxas.empty() && failed(assemble(module, ptxas, bin)))
        return failure();
      out.push_back(std::move(bin));
    }
  }
  return out;
}

} // namespace mlir::attn
