//===- attn-opt.cpp - the attn optimizer driver ----------------------------===//
//
// This file implements attn-opt: MlirOptMain with the attn dialect and
// passes, plus the upstream dialects and passes the pipeline lowers through.
//
//===----------------------------------------------------------------------===//

#include "attn/Dialect.h"
#include "attn/CodeGen/CPU.h"
#include "attn/CodeGen/GPU.h"
#include "attn/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/Bufferization/Transforms/Passes.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/Dialect/Linalg/Passes.h"
#include "mlir/Dialect/SCF/Transforms/Passes.h"
#include "mlir/Dialect/Vector/Transforms/Passes.h"
#include "mlir/Transforms/Passes.h"

namespace {
struct GpuToNVVMOptions : mlir::PassPipelineOptions<GpuToNVVMOptions> {
  Option<std::string> chip{*this, "chip",
                           llvm::cl::desc("Target chip: sm_80, sm_90a, ..."),
                           llvm::cl::init("sm_80")};
};
} // namespace

int main(int argc, char **argv) {
  mlir::DialectRegistry registry;
  registry.insert<mlir::attn::AttnDialect, mlir::func::FuncDialect,
                  mlir::arith::ArithDialect, mlir::math::MathDialect,
                  mlir::linalg::LinalgDialect, mlir::tensor::TensorDialect,
                  mlir::memref::MemRefDialect,
                  mlir::bufferization::BufferizationDialect,
                  mlir::scf::SCFDialect, mlir::vector::VectorDialect,
                  mlir::LLVM::LLVMDialect, mlir::gpu::GPUDialect,
                  mlir::nvgpu::NVGPUDialect, mlir::NVVM::NVVMDialect>();
  mlir::attn::registerGpuCodeGenInterfaces(registry);
  mlir::registerTransformsPasses();
  mlir::registerConversionPasses();
  mlir::registerLinalgPasses();
  mlir::registerSCFPasses();
  mlir::vector::registerVectorPasses();
  mlir::bufferization::registerBufferizationPasses();
  mlir::registerGPUPasses();
  mlir::attn::registerAttnPasses();
  mlir::PassPipelineRegistration<>(
      "attn-cpu-to-llvm",
      "Lower the output of attn-lower-cpu to the LLVM dialect (the pipeline "
      "attnc runs)",
      [](mlir::OpPassManager &pm) { mlir::attn::buildCpuToLLVMPipeline(pm); });
  mlir::PassPipelineRegistration<GpuToNVVMOptions>(
      "attn-gpu-to-nvvm",
      "Lower the gpu.module of attn-lower-gpu to the LLVM/NVVM dialects for "
      "one chip (gpu-module-to-binary{format=isa} then gives PTX)",
      [](mlir::OpPassManager &pm, const GpuToNVVMOptions &o) {
        mlir::attn::buildGpuToNVVMPipeline(pm, o.chip);
      });
  return mlir::asMainReturnCode(mlir::MlirOptMain(
      argc, argv, "attn-opt: the attention compiler's optimizer driver\n",
      registry));
}
