//===- PtxasCheck.cpp - assemble the sm_80 kernels with ptxas -------------===//
//
// For each example variant (mha and causal at d = 64 and 128 in bf16, mha at
// d = 64 in f16, causal-bottom-right, sliding-window, GQA, soft-capping and ALiBi at d = 64
// in bf16): attn-derive-online, attn-lower-gpu, the NVVM pipeline, PTX
// by LLVM's NVPTX back end, then `ptxas -v` for sm_80 and sm_90a. Prints one
// line per kernel (registers, spill bytes, shared memory) and fails if ptxas
// rejects a kernel, reports a spill, or the PTX lacks the instructions the
// design relies on (mma.sync m16n8k16, cp.async, ldmatrix, ex2.approx).
//
//===----------------------------------------------------------------------===//

#include "attn/CodeGen/GPU.h"
#include "attn/Dialect.h"
#include "attn/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"

#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/raw_ostream.h"

#include <string>

using namespace mlir;

namespace {
struct Variant {
  const char *example;
  int64_t d;
  const char *storage;
};
} // namespace

static OwningOpRef<ModuleOp> lower(MLIRContext &ctx, const Variant &v) {
  std::string path =
      std::string(ATTN_SOURCE_DIR) + "/examples/" + v.example + ".mlir";
  OwningOpRef<ModuleOp> module = parseSourceFile<ModuleOp>(path, &ctx);
  if (!module)
    return {};
  for (auto c : module->getOps<attn::CascadeOp>()) {
    SmallVector<Attribute> ranks;
    for (auto r : c.getRanks().getAsRange<attn::RankAttr>()) {
      StringRef n = r.getName().getValue();
      if (n == "e" || n == "f")
        r = attn::RankAttr::get(&ctx, r.getName(), v.d);
      ranks.push_back(r);
    }
    c.setRanksAttr(ArrayAttr::get(&ctx, ranks));
  }
  PassManager pm = PassManager::on<ModuleOp>(&ctx);
  pm.addPass(attn::createAttnDeriveOnlinePass());
  attn::AttnLowerGpuPassOptions options;
  options.storage = v.storage;
  pm.addPass(attn::createAttnLowerGpuPass(options));
  if (failed(pm.run(*module)))
    return {};
  return module;
}

int main() {
  DialectRegistry registry;
  registry.insert<attn::AttnDialect, arith::ArithDialect, func::FuncDialect,
                  gpu::GPUDialect, LLVM::LLVMDialect, NVVM::NVVMDialect,
                  nvgpu::NVGPUDialect, math::MathDialect, memref::MemRefDialect,
                  scf::SCFDialect, vector::VectorDialect>();
  attn::registerGpuCodeGenInterfaces(registry);
  MLIRContext ctx(registry);
  ctx.loadAllAvailableDialects();
  // Remarks of attn-derive-online are not failures.
  ScopedDiagnosticHandler quiet(&ctx, [](Diagnostic &d) {
    if (d.getSeverity() == DiagnosticSeverity::Remark)
      return success();
    return failure();
  });

  const Variant variants[] = {{"mha", 64, "bf16"},    {"causal", 64, "bf16"},
                              {"mha", 128, "bf16"},   {"causal", 128, "bf16"},
                              {"mha", 64, "f16"},
                              {"causal-bottom-right", 64, "bf16"},
                              {"sliding-window", 64, "bf16"},
                              {"gqa", 64, "bf16"},
                              {"softcap", 64, "bf16"},
                              {"alibi", 64, "bf16"}};
  int failures = 0;
  llvm::outs() << "variant                      chip    regs  spill(st/ld)  smem\n";
  for (const Variant &v : variants) {
    OwningOpRef<ModuleOp> module = lower(ctx, v);
    std::string name = llvm::formatv("{0}-d{1}-{2}", v.example, v.d, v.storage);
    if (!module) {
      llvm::errs() << name << ": lowering failed\n";
      ++failures;
      continue;
    }
    for (StringRef chip : {"sm_80", "sm_90a"}) {
      auto bins = attn::compileGpuKernels(*module, chip, ATTN_PTXAS);
      if (failed(bins) || bins->size() != 1) {
        llvm::errs() << name << " " << chip << ": compilation failed\n";
        ++failures;
        continue;
      }
      const attn::GpuKernelBinary &b = bins->front();
      llvm::outs() << llvm::formatv("{0,-28} {1,-7} {2,4}  {3,5}/{4,-5}  {5,6}\n",
                                    name, chip, b.registers, b.spillStores,
                                    b.spillLoads, b.sharedBytes);
      StringRef ptx = b.ptx;
      std::string mma = std::string("mma.sync.aligned.m16n8k16.row.col.f32.") +
                        v.storage + "." + v.storage + ".f32";
      for (StringRef needle : {StringRef(mma), StringRef("cp.async.cg.shared.global"),
                               StringRef("ldmatrix.sync.aligned.m8n8.x4"),
                               StringRef("ldmatrix.sync.aligned.m8n8.x2.trans"),
                               StringRef("ex2.approx.ftz.f32"),
                               StringRef("shfl.sync.bfly")})
        if (!ptx.contains(needle)) {
          llvm::errs() << name << " " << chip << ": PTX lacks " << needle << "\n";
          ++failures;
        }
      if (b.spillStores != 0 || b.spillLoads != 0) {
        llvm::errs() << name << " " << chip << ": spills\n" << b.ptxasLog;
        ++failures;
      }
      if (b.cubin.empty()) {
        llvm::errs() << name << " " << chip << ": no cubin\n";
        ++failures;
      }
    }
  }
  if (failures)
    llvm::errs() << failures << " failure(s)\n";
  return failures ? 1 : 0;
}
