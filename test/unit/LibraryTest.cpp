//===- LibraryTest.cpp - Tests for the kernel library emitter ------------===//
//
// Unit tests for attn/Emit/Library.h: the IR that addKernelEntry adds
// (verified, and its descriptor constant laid out byte for byte as the C
// structs of attn/runtime.h), spec verification, the header text, the
// archive (members and symbol table) and, when `cc` exists, an end-to-end
// run: the module compiled for the host, archived with the runtime, linked
// into a C program that defines the task functions and calls the entries.
//
//===----------------------------------------------------------------------===//

#include "attn/Emit/Library.h"
#include "attn/runtime.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/IR/Constants.h"
#include "llvm/IR/DataLayout.h"
#include "llvm/IR/Function.h"
#include "llvm/IR/GlobalVariable.h"
#include "llvm/IR/Instructions.h"
#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/IR/Verifier.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Object/Archive.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/Target/TargetOptions.h"
#include "llvm/TargetParser/Host.h"
#include "llvm/TargetParser/Triple.h"

#include <catch2/catch.hpp>

#include <cstddef>
#include <fstream>
#include <functional>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

using Catch::Matchers::Contains;
using namespace attn::emit;

namespace {

const char *kX86DataLayout =
    "e-m:e-p270:32:32-p271:32:32-p272:64:64-i64:64-i128:128-f80:128-n8:16:32:"
    "64-S128";

std::string errText(llvm::Error e) {
  return e ? llvm::toString(std::move(e)) : std::string();
}

/// lt_scale: o = x + y[h / 2], s = sum_e o (optional); GQA h = 2 * g.
KernelSpec scaleSpec() {
  KernelSpec k;
  k.name = "lt_scale";
  k.cifaceSymbol = "_mlir_ciface_lt_scale_tasks";
  k.doc = "O[b,h,n,e] = X[b,h,n,e] + Y[b,h/2,n,e]\nS[b,h,n] = O[b,h,n,e] "
          "sum(e)  /* a comment */";
  k.ranks = {{"b", -1}, {"h", -1}, {"g", -1}, {"n", -1}, {"e", 4}};
  k.relations = {{1, 2, 2}};
  ArgSpec x;
  x.name = "x";
  x.dims = {0, 1, 3, 4};
  x.unitInnerStride = true;
  ArgSpec y;
  y.name = "y";
  y.dims = {0, 2, 3, 4};
  ArgSpec o;
  o.name = "o";
  o.role = ArgSpec::Output;
  o.dims = {0, 1, 3, 4};
  ArgSpec s;
  s.name = "s";
  s.role = ArgSpec::OptionalOutput;
  s.dims = {0, 1, 3};
  k.args = {x, y, o, s};
  k.taskRanks = {0, 1, 3};
  k.tiledRank = 3;
  k.tile = 2;
  return k;
}

/// lt_copy: o = x for int32 vectors, with a cu_seqlens input and an ISA.
KernelSpec copySpec() {
  KernelSpec k;
  k.name = "lt_copy";
  k.cifaceSymbol = "_mlir_ciface_lt_copy_tasks";
  k.ranks = {{"n", -1}, {"c", -1}};
  ArgSpec x;
  x.name = "x";
  x.dtypeCode = 0;
  x.dtypeBits = 32;
  x.dims = {0};
  ArgSpec cu;
  cu.name = "cu_seqlens";
  cu.dtypeCode = 0;
  cu.dtypeBits = 32;
  cu.dims = {1};
  cu.metadataKind = ATTN_RT_META_CU_SEQLENS;
  cu.metadataBoundRank = 0;
  ArgSpec o = x;
  o.name = "o";
  o.role = ArgSpec::Output;
  k.args = {x, cu, o};
  k.taskRanks = {0};
  k.tiledRank = 0;
  k.tile = 16;
  k.requiredIsa = 1;
  return k;
}

/// Declares (or, with `define`, defines as an empty function) the ciface.
llvm::Function *addCiface(llvm::Module &m, const KernelSpec &k,
                          bool define) {
  llvm::LLVMContext &ctx = m.getContext();
  auto *ptr = llvm::PointerType::getUnqual(ctx);
  std::vector<llvm::Type *> params(1 + k.args.size(), ptr);
  params.push_back(llvm::Type::getInt64Ty(ctx));
  params.push_back(llvm::Type::getInt64Ty(ctx));
  auto *fty =
      llvm::FunctionType::get(llvm::Type::getVoidTy(ctx), params, false);
  llvm::Function *f = llvm::Function::Create(
      fty, llvm::GlobalValue::ExternalLinkage, k.cifaceSymbol, m);
  if (define) {
    auto *bb = llvm::BasicBlock::Create(ctx, "entry", f);
    llvm::ReturnInst::Create(ctx, bb);
  }
  return f;
}

std::unique_ptr<llvm::Module> makeModule(llvm::LLVMContext &ctx,
                                         bool define) {
  auto m = std::make_unique<llvm::Module>("kernels", ctx);
  m->setDataLayout(kX86DataLayout);
  addCiface(*m, scaleSpec(), define);
  addCiface(*m, copySpec(), define);
  return m;
}

/// The element of a struct constant that starts at byte `offset`.
llvm::Constant *elementAt(llvm::Constant *c, const llvm::DataLayout &dl,
                          uint64_t offset) {
  auto *st = llvm::cast<llvm::StructType>(c->getType());
  const llvm::StructLayout *sl = dl.getStructLayout(st);
  for (unsigned i = 0; i < st->getNumElements(); ++i) {
    if (sl->getElementOffset(i) != offset)
      continue;
    // Skip padding: the emitter writes it as i8 arrays.
    auto *at = llvm::dyn_cast<llvm::ArrayType>(st->getElementType(i));
    if (at && at->getElementType()->isIntegerTy(8))
      continue;
    return c->getAggregateElement(i);
  }
  return nullptr;
}

int64_t intAt(llvm::Constant *c, const llvm::DataLayout &dl,
              uint64_t offset) {
  auto *e = llvm::dyn_cast_or_null<llvm::ConstantInt>(elementAt(c, dl, offset));
  REQUIRE(e);
  return e->getSExtValue();
}

/// A unique directory removed on destruction.
struct TempDir {
  llvm::SmallString<128> path;
  TempDir() {
    REQUIRE(!llvm::sys::fs::createUniqueDirectory("attn-library-test", path));
  }
  ~TempDir() { llvm::sys::fs::remove_directories(path); }
  std::string file(llvm::StringRef name) const {
    llvm::SmallString<128> p(path);
    llvm::sys::path::append(p, name);
    return std::string(p);
  }
};

void writeFile(const std::string &path, llvm::StringRef text) {
  std::ofstream out(path, std::ios::binary);
  out << text.str();
  REQUIRE(out.good());
}

std::string readFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// Compiles the module for the host (x86-64) into an object file.
std::unique_ptr<llvm::MemoryBuffer> emitObject(llvm::Module &m) {
  llvm::InitializeNativeTarget();
  llvm::InitializeNativeTargetAsmPrinter();
  llvm::Triple triple(llvm::sys::getDefaultTargetTriple());
  std::string error;
  const llvm::Target *target = llvm::TargetRegistry::lookupTarget(triple, error);
  INFO(error);
  REQUIRE(target);
  llvm::TargetOptions options;
  std::unique_ptr<llvm::TargetMachine> tm(target->createTargetMachine(
      triple, "x86-64", "", options, llvm::Reloc::PIC_));
  REQUIRE(tm);
  m.setTargetTriple(triple);
  m.setDataLayout(tm->createDataLayout());
  llvm::SmallVector<char, 0> bytes;
  llvm::raw_svector_ostream os(bytes);
  llvm::legacy::PassManager pm;
  REQUIRE(!tm->addPassesToEmitFile(pm, os, nullptr,
                                   llvm::CodeGenFileType::ObjectFile));
  pm.run(m);
  return llvm::MemoryBuffer::getMemBufferCopy(
      llvm::StringRef(bytes.data(), bytes.size()), "kernels.o");
}

bool hostIsX86_64() {
  return llvm::Triple(llvm::sys::getDefaultTargetTriple()).getArch() ==
         llvm::Triple::x86_64;
}

/// Runs a program, its output into `log`; returns the exit code.
int run(const std::string &program, std::vector<std::string> args,
        const std::string &log) {
  std::vector<llvm::StringRef> argv;
  for (const std::string &a : args)
    argv.push_back(a);
  std::optional<llvm::StringRef> redirects[3] = {std::nullopt,
                                                 llvm::StringRef(log),
                                                 llvm::StringRef(log)};
  std::string err;
  int rc = llvm::sys::ExecuteAndWait(program, argv, std::nullopt, redirects,
                                     /*SecondsToWait=*/120, 0, &err);
  if (rc < 0)
    WARN("could not run " << program << ": " << err);
  return rc;
}

} // namespace

//===----------------------------------------------------------------------===//
// The IR
//===----------------------------------------------------------------------===//

TEST_CASE("emit: addKernelEntry gives verified IR", "[emit]") {
  llvm::LLVMContext ctx;
  auto m = makeModule(ctx, /*define=*/true);
  REQUIRE(errText(addKernelEntry(*m, scaleSpec())) == "");
  REQUIRE(errText(addKernelEntry(*m, copySpec())) == "");
  std::string problems;
  llvm::raw_string_ostream os(problems);
  INFO(problems);
  REQUIRE(!llvm::verifyModule(*m, &os));

  // The entry: external, attn_status(ptr, ptr), calling attn_rt_v1_run.
  llvm::Function *entry = m->getFunction("lt_scale");
  REQUIRE(entry);
  REQUIRE(entry->hasExternalLinkage());
  REQUIRE(entry->getReturnType()->isIntegerTy(32));
  REQUIRE(entry->arg_size() == 2);
  llvm::Function *run = m->getFunction("attn_rt_v1_run");
  REQUIRE(run);
  REQUIRE(run->isDeclaration());
  REQUIRE(run->getNumUses() == 2); // one call per kernel
  // The wrapper and the descriptor stay inside the object.
  llvm::Function *packed = m->getFunction("lt_scale_tasks_packed");
  REQUIRE(packed);
  REQUIRE(packed->hasInternalLinkage());
  REQUIRE(packed->arg_size() == 3);
  llvm::GlobalVariable *kernel =
      m->getGlobalVariable("lt_scale_kernel", /*AllowInternal=*/true);
  REQUIRE(kernel);
  REQUIRE(kernel->hasInternalLinkage());
  REQUIRE(kernel->isConstant());
  // The wrapper calls the ciface with 1 + 4 descriptors and begin, end.
  bool calls = false;
  for (llvm::BasicBlock &bb : *packed)
    for (llvm::Instruction &inst : bb)
      if (auto *call = llvm::dyn_cast<llvm::CallInst>(&inst))
        calls |= call->getCalledFunction() ==
                     m->getFunction("_mlir_ciface_lt_scale_tasks") &&
                 call->arg_size() == 7;
  REQUIRE(calls);
}

TEST_CASE("emit: the descriptor constant matches the C structs", "[emit]") {
  llvm::LLVMContext ctx;
  auto m = makeModule(ctx, /*define=*/false);
  KernelSpec spec = scaleSpec();
  REQUIRE(errText(addKernelEntry(*m, spec)) == "");
  REQUIRE(errText(addKernelEntry(*m, copySpec())) == "");
  llvm::DataLayout dl(kX86DataLayout);
  llvm::GlobalVariable *gv =
      m->getGlobalVariable("lt_scale_kernel", /*AllowInternal=*/true);
  REQUIRE(gv);
  llvm::Constant *k = gv->getInitializer();
  REQUIRE(dl.getTypeAllocSize(k->getType()) == sizeof(attn_rt_kernel));
  REQUIRE(gv->getAlign().valueOrOne().value() >= alignof(attn_rt_kernel));

  REQUIRE(intAt(k, dl, offsetof(attn_rt_kernel, abi_version)) ==
          ATTN_RUNTIME_ABI_VERSION);
  REQUIRE(intAt(k, dl, offsetof(attn_rt_kernel, device_type)) ==
          ATTN_DEVICE_CPU);
  REQUIRE(intAt(k, dl, offsetof(attn_rt_kernel, num_ranks)) == 5);
  REQUIRE(intAt(k, dl, offsetof(attn_rt_kernel, num_relations)) == 1);
  REQUIRE(intAt(k, dl, offsetof(attn_rt_kernel, num_args)) == 4);
  REQUIRE(intAt(k, dl, offsetof(attn_rt_kernel, num_task_ranks)) == 3);
  REQUIRE(intAt(k, dl, offsetof(attn_rt_kernel, tiled_rank)) == 3);
  REQUIRE(intAt(k, dl, offsetof(attn_rt_kernel, tile)) == 2);
  REQUIRE(intAt(k, dl, offsetof(attn_rt_kernel, required_isa)) == 0);
  REQUIRE(elementAt(k, dl, offsetof(attn_rt_kernel, tasks)) ==
          m->getFunction("lt_scale_tasks_packed"));
  llvm::Constant *tasks =
      elementAt(k, dl, offsetof(attn_rt_kernel, task_ranks));
  REQUIRE(tasks);
  REQUIRE(dl.getTypeAllocSize(tasks->getType()) ==
          sizeof(((attn_rt_kernel *)nullptr)->task_ranks));
  REQUIRE(llvm::cast<llvm::ConstantInt>(tasks->getAggregateElement(2u))
              ->getSExtValue() == 3);

  auto arrayAt = [&](size_t offset) {
    auto *g = llvm::dyn_cast_or_null<llvm::GlobalVariable>(
        elementAt(k, dl, offset));
    REQUIRE(g);
    REQUIRE(g->hasPrivateLinkage());
    return g->getInitializer();
  };
  llvm::Constant *name = elementAt(k, dl, offsetof(attn_rt_kernel, name));
  REQUIRE(llvm::isa<llvm::GlobalVariable>(name));
  REQUIRE(llvm::cast<llvm::ConstantDataArray>(
              llvm::cast<llvm::GlobalVariable>(name)->getInitializer())
              ->getAsCString() == "lt_scale");

  llvm::Constant *ranks = arrayAt(offsetof(attn_rt_kernel, ranks));
  llvm::Type *rankTy =
      llvm::cast<llvm::ArrayType>(ranks->getType())->getElementType();
  REQUIRE(dl.getTypeAllocSize(rankTy) == sizeof(attn_rt_rank));
  llvm::Constant *e = ranks->getAggregateElement(4u);
  REQUIRE(intAt(e, dl, offsetof(attn_rt_rank, static_size)) == 4);

  llvm::Constant *rels = arrayAt(offsetof(attn_rt_kernel, relations));
  llvm::Constant *rel = rels->getAggregateElement(0u);
  REQUIRE(dl.getTypeAllocSize(rel->getType()) == sizeof(attn_rt_relation));
  REQUIRE(intAt(rel, dl, offsetof(attn_rt_relation, lhs)) == 1);
  REQUIRE(intAt(rel, dl, offsetof(attn_rt_relation, factor)) == 2);
  REQUIRE(intAt(rel, dl, offsetof(attn_rt_relation, rhs)) == 2);

  llvm::Constant *args = arrayAt(offsetof(attn_rt_kernel, args));
  llvm::Constant *x = args->getAggregateElement(0u);
  llvm::Constant *s = args->getAggregateElement(3u);
  REQUIRE(dl.getTypeAllocSize(x->getType()) == sizeof(attn_rt_arg));
  REQUIRE(intAt(s, dl, offsetof(attn_rt_arg, role)) ==
          ATTN_RT_OPTIONAL_OUTPUT);
  REQUIRE(intAt(x, dl, offsetof(attn_rt_arg, dtype)) == ATTN_DTYPE_FLOAT);
  REQUIRE(intAt(x, dl, offsetof(attn_rt_arg, dtype) + 1) == 32);
  REQUIRE(intAt(x, dl, offsetof(attn_rt_arg, dtype) + 2) == 1);
  REQUIRE(intAt(x, dl, offsetof(attn_rt_arg, ndim)) == 4);
  REQUIRE(intAt(s, dl, offsetof(attn_rt_arg, ndim)) == 3);
  REQUIRE(intAt(x, dl, offsetof(attn_rt_arg, unit_inner_stride)) == 1);
  REQUIRE(intAt(x, dl, offsetof(attn_rt_arg, metadata_kind)) == 0);
  REQUIRE(intAt(x, dl, offsetof(attn_rt_arg, metadata_bound_rank)) == -1);
  llvm::Constant *dims = elementAt(x, dl, offsetof(attn_rt_arg, dims));
  REQUIRE(dims);
  REQUIRE(llvm::cast<llvm::ConstantInt>(dims->getAggregateElement(2u))
              ->getSExtValue() == 3);

  // lt_copy: its cu_seqlens metadata and its ISA.
  llvm::Constant *ck =
      m->getGlobalVariable("lt_copy_kernel", true)->getInitializer();
  REQUIRE(intAt(ck, dl, offsetof(attn_rt_kernel, required_isa)) ==
          ATTN_RT_ISA_AVX2_FMA);
  REQUIRE(intAt(ck, dl, offsetof(attn_rt_kernel, num_relations)) == 0);
  REQUIRE(llvm::isa<llvm::ConstantPointerNull>(
      elementAt(ck, dl, offsetof(attn_rt_kernel, relations))));
  auto *cargs = llvm::cast<llvm::GlobalVariable>(
                    elementAt(ck, dl, offsetof(attn_rt_kernel, args)))
                    ->getInitializer();
  llvm::Constant *cu = cargs->getAggregateElement(1u);
  REQUIRE(intAt(cu, dl, offsetof(attn_rt_arg, metadata_kind)) ==
          ATTN_RT_META_CU_SEQLENS);
  REQUIRE(intAt(cu, dl, offsetof(attn_rt_arg, metadata_bound_rank)) == 0);
}

namespace {
/// A CUDA kernel spec over scaleSpec's ranks and arguments (no relation).
std::pair<KernelSpec, CudaKernelSpec> cudaSpec() {
  KernelSpec k = scaleSpec();
  k.name = "lt_gpu";
  k.cifaceSymbol.clear();
  k.deviceType = 2;
  k.relations.clear();
  CudaKernelSpec c;
  c.function = "lt_gpu_fn";
  c.cubins = {{"sm_80", 8, 0, false, std::string("\x7f" "ELF-80", 7)},
              {"sm_90a", 9, 0, true, std::string("\x7f" "ELF-90a", 8)}};
  c.block[0] = 128;
  c.dynamicSharedBytes = 4096;
  c.alignBytes = {16, 16, 4, 4};
  c.strideMultiple = {8, 8, 2, 1};
  return {k, c};
}
} // namespace

TEST_CASE("emit: the CUDA descriptor matches attn_rt_cuda_kernel", "[emit]") {
  llvm::LLVMContext ctx;
  auto m = makeModule(ctx, /*define=*/false);
  auto [k, c] = cudaSpec();
  REQUIRE(errText(addCudaKernelEntry(*m, k, c)) == "");
  REQUIRE(!llvm::verifyModule(*m, &llvm::errs()));
  llvm::DataLayout dl(kX86DataLayout);
  llvm::GlobalVariable *gv = m->getGlobalVariable("lt_gpu_kernel", true);
  REQUIRE(gv);
  llvm::Constant *d = gv->getInitializer();
  REQUIRE(dl.getTypeAllocSize(d->getType()) == sizeof(attn_rt_cuda_kernel));
  using K = attn_rt_cuda_kernel;
  REQUIRE(intAt(d, dl, offsetof(K, base.abi_version)) ==
          ATTN_RUNTIME_ABI_VERSION);
  REQUIRE(intAt(d, dl, offsetof(K, base.device_type)) == ATTN_DEVICE_CUDA);
  REQUIRE(intAt(d, dl, offsetof(K, base.num_args)) == 4);
  REQUIRE(intAt(d, dl, offsetof(K, base.tiled_rank)) == 3);
  REQUIRE(intAt(d, dl, offsetof(K, base.tile)) == 2);
  REQUIRE(llvm::isa<llvm::ConstantPointerNull>(
      elementAt(d, dl, offsetof(K, base.tasks))));
  REQUIRE(intAt(d, dl, offsetof(K, num_cubins)) == 2);
  llvm::Constant *blk = elementAt(d, dl, offsetof(K, block));
  REQUIRE(llvm::cast<llvm::ConstantInt>(blk->getAggregateElement(0u))
              ->getSExtValue() == 128);
  REQUIRE(llvm::cast<llvm::ConstantInt>(blk->getAggregateElement(2u))
              ->getSExtValue() == 1);
  REQUIRE(intAt(d, dl, offsetof(K, dynamic_shared_bytes)) == 4096);
  llvm::Constant *al = elementAt(d, dl, offsetof(K, align_bytes));
  REQUIRE(dl.getTypeAllocSize(al->getType()) == sizeof(K::align_bytes));
  REQUIRE(llvm::cast<llvm::ConstantInt>(al->getAggregateElement(2u))
              ->getSExtValue() == 4);
  llvm::Constant *sm = elementAt(d, dl, offsetof(K, stride_multiple));
  REQUIRE(llvm::cast<llvm::ConstantInt>(sm->getAggregateElement(0u))
              ->getSExtValue() == 8);
  REQUIRE(intAt(d, dl, offsetof(K, max_rank_size)) == 0x7fffffff);
  REQUIRE(intAt(d, dl, offsetof(K, max_grid_y)) == 65535);
  auto *fn = llvm::cast<llvm::GlobalVariable>(
      elementAt(d, dl, offsetof(K, function)));
  REQUIRE(llvm::cast<llvm::ConstantDataArray>(fn->getInitializer())
              ->getAsCString() == "lt_gpu_fn");
  auto *cubins = llvm::cast<llvm::GlobalVariable>(
                     elementAt(d, dl, offsetof(K, cubins)))
                     ->getInitializer();
  llvm::Constant *c1 = cubins->getAggregateElement(1u);
  REQUIRE(dl.getTypeAllocSize(c1->getType()) == sizeof(attn_rt_cubin));
  REQUIRE(intAt(c1, dl, offsetof(attn_rt_cubin, major)) == 9);
  REQUIRE(intAt(c1, dl, offsetof(attn_rt_cubin, minor)) == 0);
  REQUIRE(intAt(c1, dl, offsetof(attn_rt_cubin, arch_specific)) == 1);
  REQUIRE(intAt(c1, dl, offsetof(attn_rt_cubin, size)) == 8);
  auto *img = llvm::cast<llvm::GlobalVariable>(
      elementAt(c1, dl, offsetof(attn_rt_cubin, image)));
  REQUIRE(img->getName() == "lt_gpu.cubin.sm_90a");
  REQUIRE(img->getAlign().valueOrOne().value() == 16);
  REQUIRE(llvm::cast<llvm::ConstantDataArray>(img->getInitializer())
              ->getRawDataValues() == llvm::StringRef("\x7f" "ELF-90a", 8));
  // The entry point calls the CUDA launcher with the descriptor.
  llvm::Function *entry = m->getFunction("lt_gpu");
  REQUIRE(entry);
  auto *call = llvm::cast<llvm::CallInst>(&entry->getEntryBlock().front());
  REQUIRE(call->getCalledFunction()->getName() == "attn_rt_v1_run_cuda");
  REQUIRE(call->getArgOperand(0) == gv);
}

TEST_CASE("emit: addCudaKernelEntry errors", "[emit]") {
  llvm::LLVMContext ctx;
  auto m = makeModule(ctx, /*define=*/false);
  auto [k, c] = cudaSpec();
  SECTION("a CPU spec, or a CUDA spec to addKernelEntry") {
    KernelSpec cpu = k;
    cpu.deviceType = 1;
    cpu.cifaceSymbol = "_mlir_ciface_lt_scale_tasks";
    REQUIRE_THAT(errText(addCudaKernelEntry(*m, cpu, c)),
                 Contains("not a CUDA kernel"));
    REQUIRE_THAT(errText(addKernelEntry(*m, k)), Contains("not a CPU kernel"));
  }
  SECTION("no cubin, empty image, no function") {
    CudaKernelSpec c2 = c;
    c2.cubins.clear();
    REQUIRE_THAT(errText(addCudaKernelEntry(*m, k, c2)), Contains("no cubin"));
    c2 = c;
    c2.cubins[0].image.clear();
    REQUIRE_THAT(errText(addCudaKernelEntry(*m, k, c2)), Contains("is empty"));
    c2 = c;
    c2.function.clear();
    REQUIRE_THAT(errText(addCudaKernelEntry(*m, k, c2)),
                 Contains("no CUDA function name"));
  }
  SECTION("per-argument rules and the launch") {
    CudaKernelSpec c2 = c;
    c2.alignBytes.pop_back();
    REQUIRE_THAT(errText(addCudaKernelEntry(*m, k, c2)),
                 Contains("one entry per argument"));
    c2 = c;
    c2.strideMultiple[1] = 0;
    REQUIRE_THAT(errText(addCudaKernelEntry(*m, k, c2)), Contains(">= 1"));
    c2 = c;
    c2.block[1] = 0;
    REQUIRE_THAT(errText(addCudaKernelEntry(*m, k, c2)),
                 Contains("bad CUDA launch configuration"));
    KernelSpec k2 = k;
    k2.tiledRank = -1;
    REQUIRE_THAT(errText(addCudaKernelEntry(*m, k2, c)),
                 Contains("needs a tiled rank"));
  }
  SECTION("a name taken") {
    REQUIRE(errText(addCudaKernelEntry(*m, k, c)) == "");
    REQUIRE_THAT(errText(addCudaKernelEntry(*m, k, c)),
                 Contains("already exists"));
  }
}

TEST_CASE("emit: addKernelEntry and verifyKernelSpec errors", "[emit]") {
  llvm::LLVMContext ctx;
  {
    auto m = std::make_unique<llvm::Module>("empty", ctx);
    REQUIRE_THAT(errText(addKernelEntry(*m, scaleSpec())),
                 Contains("the module has no function "
                          "'_mlir_ciface_lt_scale_tasks'"));
  }
  {
    auto m = std::make_unique<llvm::Module>("wrong", ctx);
    KernelSpec small = scaleSpec();
    small.args.pop_back(); // the ciface gets 1 + 3 descriptors
    addCiface(*m, small, true);
    REQUIRE_THAT(errText(addKernelEntry(*m, scaleSpec())),
                 Contains("but the runtime needs void(5 x ptr, i64, i64)"));
  }
  {
    auto m = makeModule(ctx, true);
    REQUIRE(errText(addKernelEntry(*m, scaleSpec())) == "");
    REQUIRE_THAT(errText(addKernelEntry(*m, scaleSpec())),
                 Contains("symbol 'lt_scale' already exists"));
  }
  {
    auto m = makeModule(ctx, true);
    m->setDataLayout("e-p:32:32");
    REQUIRE_THAT(errText(addKernelEntry(*m, scaleSpec())),
                 Contains("32-bit pointers"));
  }
  auto bad = [](std::function<void(KernelSpec &)> edit) {
    KernelSpec k = scaleSpec();
    edit(k);
    return errText(verifyKernelSpec(k));
  };
  REQUIRE(bad([](KernelSpec &) {}) == "");
  REQUIRE_THAT(bad([](KernelSpec &k) { k.name = "int"; }),
               Contains("kernel name 'int' is not a C identifier"));
  REQUIRE_THAT(bad([](KernelSpec &k) { k.name = "9lives"; }),
               Contains("is not a C identifier"));
  REQUIRE_THAT(bad([](KernelSpec &k) { k.args[1].name = "x"; }),
               Contains("argument 'x' appears twice"));
  REQUIRE_THAT(bad([](KernelSpec &k) { k.args[1].name = "my-y"; }),
               Contains("argument name 'my-y' is not a C identifier"));
  REQUIRE_THAT(bad([](KernelSpec &k) { k.args[0].dims.assign(9, 0); }),
               Contains("argument x: 9 dimensions (at most 8)"));
  REQUIRE_THAT(bad([](KernelSpec &k) { k.args[0].dims[0] = 5; }),
               Contains("argument x: rank index 5 out of range"));
  REQUIRE_THAT(bad([](KernelSpec &k) { k.args[0].dtypeBits = 4; }),
               Contains("4-bit elements are not supported"));
  REQUIRE_THAT(bad([](KernelSpec &k) { k.relations[0].factor = 0; }),
               Contains("bad relation"));
  REQUIRE_THAT(bad([](KernelSpec &k) { k.tiledRank = 4; }),
               Contains("the tiled rank is not a task rank"));
  REQUIRE_THAT(bad([](KernelSpec &k) { k.tile = 0; }),
               Contains("tile 0 < 1"));
  REQUIRE_THAT(bad([](KernelSpec &k) { k.requiredIsa = 3; }),
               Contains("unknown required ISA 3"));
  REQUIRE_THAT(bad([](KernelSpec &k) { k.ranks[1].name = "b"; }),
               Contains("rank 'b' appears twice"));
  REQUIRE_THAT(bad([](KernelSpec &k) {
                 k.args[2].role = ArgSpec::Input;
                 k.args[3].role = ArgSpec::Input;
               }),
               Contains("no output"));
  REQUIRE_THAT(bad([](KernelSpec &k) {
                 k.args[1].metadataKind = ATTN_RT_META_CU_SEQLENS;
                 k.args[1].metadataBoundRank = 3;
               }),
               Contains("cu_seqlens must be a 1-D int32 input"));
  REQUIRE_THAT(bad([](KernelSpec &k) {
                 while (k.ranks.size() <= ATTN_RT_MAX_RANKS)
                   k.ranks.push_back({"r" + std::to_string(k.ranks.size()),
                                      -1});
               }),
               Contains("25 ranks (at most 24)"));
  REQUIRE_THAT(bad([](KernelSpec &k) {
                 while (k.args.size() <= ATTN_RT_MAX_ARGS) {
                   ArgSpec a = k.args[0];
                   a.name = "a" + std::to_string(k.args.size());
                   k.args.push_back(a);
                 }
               }),
               Contains("25 arguments (at most 24)"));
}

//===----------------------------------------------------------------------===//
// The header
//===----------------------------------------------------------------------===//

TEST_CASE("emit: the header", "[emit]") {
  std::string h = writeHeader("my-lib", {scaleSpec(), copySpec()});
  // The runtime ABI, guarded, then the library's version.
  REQUIRE_THAT(h, Contains("#ifndef MY_LIB_H_INCLUDED"));
  REQUIRE_THAT(h, Contains("#ifndef ATTN_RUNTIME_H"));
  REQUIRE_THAT(h, Contains(runtimeHeader().str()));
  REQUIRE_THAT(h, Contains("#define MY_LIB_ABI_VERSION 1"));
  REQUIRE_THAT(h, Contains("#if ATTN_RUNTIME_ABI_VERSION != 1"));
  REQUIRE_THAT(h, Contains("extern \"C\" {"));
  // The doc comment: the cascade (with its "*/" defused), ranks, relations,
  // every argument.
  REQUIRE_THAT(h, Contains(" *   O[b,h,n,e] = X[b,h,n,e] + Y[b,h/2,n,e]"));
  REQUIRE_THAT(h, Contains("sum(e)  / * a comment * /"));
  REQUIRE_THAT(h, Contains(" * Ranks: b, h, g, n, e = 4"));
  REQUIRE_THAT(h, Contains(" * Relations: |h| = 2 * |g|"));
  REQUIRE_THAT(h, Contains(" *   x: input, float32 [b, h, n, e=4], innermost "
                           "stride 1"));
  REQUIRE_THAT(h, Contains(" *   y: input, float32 [b, g, n, e=4]\n"));
  REQUIRE_THAT(h, Contains(" *   o: output, float32 [b, h, n, e=4]\n"));
  REQUIRE_THAT(h, Contains(" *   s: optional output, float32 [b, h, n]; may "
                           "be NULL (then not computed)"));
  REQUIRE_THAT(h, Contains(" *   cu_seqlens: input, int32 [c], cu_seqlens: "
                           "[0] = 0, nondecreasing, last <= |n|"));
  REQUIRE_THAT(h, Contains("Needs a CPU with AVX2 and FMA"));
  // The args structs and prototypes.
  REQUIRE_THAT(h, Contains("typedef struct lt_scale_args {\n"
                           "  const attn_tensor *x; /* input, float32 [b, h, "
                           "n, e=4] */\n"
                           "  const attn_tensor *y;"));
  REQUIRE_THAT(h, Contains("  const attn_tensor *s; /* optional output, "
                           "float32 [b, h, n] */\n} lt_scale_args;"));
  REQUIRE_THAT(h, Contains("attn_status lt_scale(const lt_scale_args *args, "
                           "const attn_launch *launch);"));
  REQUIRE_THAT(h, Contains("attn_status lt_copy(const lt_copy_args *args, "
                           "const attn_launch *launch);"));
  // No comment closes early: every "*/" ends a comment we opened.
  size_t opens = 0, closes = 0;
  for (size_t p = h.find("/*"); p != std::string::npos; p = h.find("/*", p + 2))
    ++opens;
  for (size_t p = h.find("*/"); p != std::string::npos; p = h.find("*/", p + 2))
    ++closes;
  REQUIRE(opens == closes);
}

TEST_CASE("emit: the embedded runtime", "[emit]") {
  llvm::StringRef obj = runtimeObject();
  REQUIRE(obj.size() > 1000);
  REQUIRE(obj.starts_with("\x7f"
                          "ELF"));
  REQUIRE(runtimeHeader() ==
          readFile(std::string(ATTN_SOURCE_DIR) + "/include/attn/runtime.h"));
  REQUIRE(runtimeMemberName() == "attn_runtime.o");
}

//===----------------------------------------------------------------------===//
// The archive, and a C program linked against it
//===----------------------------------------------------------------------===//

TEST_CASE("emit: writeStaticLibrary", "[emit]") {
  if (!hostIsX86_64()) {
    WARN("skipped: the host is not x86-64");
    return;
  }
  llvm::LLVMContext ctx;
  auto m = makeModule(ctx, /*define=*/true);
  REQUIRE(errText(addKernelEntry(*m, scaleSpec())) == "");
  REQUIRE(errText(addKernelEntry(*m, copySpec())) == "");
  TempDir dir;
  std::vector<std::pair<std::string, std::unique_ptr<llvm::MemoryBuffer>>>
      objects;
  objects.emplace_back("kernels.o", emitObject(*m));
  const std::string path = dir.file("libmylib.a");
  REQUIRE(errText(writeStaticLibrary(path, objects)) == "");

  auto buf = llvm::MemoryBuffer::getFile(path);
  REQUIRE(buf);
  auto archive = llvm::object::Archive::create((*buf)->getMemBufferRef());
  REQUIRE(errText(archive.takeError()) == "");
  REQUIRE((*archive)->kind() == llvm::object::Archive::K_GNU);
  std::vector<std::string> members;
  llvm::Error err = llvm::Error::success();
  for (const llvm::object::Archive::Child &c : (*archive)->children(err)) {
    auto name = c.getName();
    REQUIRE(errText(name.takeError()) == "");
    members.push_back(name->str());
  }
  REQUIRE(errText(std::move(err)) == "");
  REQUIRE(members == std::vector<std::string>{"kernels.o", "attn_runtime.o"});
  REQUIRE((*archive)->hasSymbolTable());
  std::set<std::string> symbols;
  for (const llvm::object::Archive::Symbol &s : (*archive)->symbols())
    symbols.insert(s.getName().str());
  for (const char *want : {"lt_scale", "lt_copy", "attn_rt_v1_run",
                           "attn_status_string", "attn_last_error"})
    REQUIRE(symbols.count(want));
  // Internal things stay out of the symbol table.
  REQUIRE(!symbols.count("lt_scale_kernel"));
  REQUIRE(!symbols.count("lt_scale_tasks_packed"));

  // Names: reserved, repeated; an unwritable path.
  std::vector<std::pair<std::string, std::unique_ptr<llvm::MemoryBuffer>>>
      clash;
  clash.emplace_back("attn_runtime.o",
                     llvm::MemoryBuffer::getMemBufferCopy("x", "a"));
  REQUIRE_THAT(errText(writeStaticLibrary(dir.file("x.a"), clash)),
               Contains("reserved for the runtime"));
  clash.clear();
  clash.emplace_back("a.o", llvm::MemoryBuffer::getMemBufferCopy("x", "a"));
  clash.emplace_back("a.o", llvm::MemoryBuffer::getMemBufferCopy("x", "a"));
  REQUIRE_THAT(errText(writeStaticLibrary(dir.file("x.a"), clash)),
               Contains("member 'a.o' appears twice"));
  REQUIRE_THAT(errText(writeStaticLibrary(dir.file("no/such/dir/x.a"),
                                          objects)),
               Contains("no/such/dir/x.a"));
}

namespace {

// The C program of the end-to-end test: it defines the two ciface functions
// (what MLIR would generate) and checks results, statuses and messages.
const char *kMainC = R"C(
#include "mylib.h"

#include <stdio.h>
#include <string.h>

#if MYLIB_ABI_VERSION != 1
#error "MYLIB_ABI_VERSION"
#endif

typedef struct { void *alloc, *aligned; int64_t offset, sizes[1], strides[1]; } m1;
typedef struct { void *alloc, *aligned; int64_t offset, sizes[3], strides[3]; } m3;
typedef struct { void *alloc, *aligned; int64_t offset, sizes[4], strides[4]; } m4;

void _mlir_ciface_lt_scale_tasks(m1 *sizes, m4 *x, m4 *y, m4 *o, m3 *s,
                                 int64_t begin, int64_t end) {
  const int64_t *sz = (const int64_t *)sizes->aligned;
  int64_t H = sz[1], N = sz[3], E = sz[4];
  int have_s = (int)sz[5 + 3];
  int64_t tiles = (N + 1) / 2;
  for (int64_t t = begin; t < end; ++t) {
    int64_t nt = t % tiles, h = (t / tiles) % H, b = t / (tiles * H);
    for (int64_t n = 2 * nt; n < N && n < 2 * nt + 2; ++n) {
      float sum = 0;
      for (int64_t e = 0; e < E; ++e) {
        float v = ((float *)x->aligned)[b * x->strides[0] + h * x->strides[1] +
                                        n * x->strides[2] + e * x->strides[3]] +
                  ((float *)y->aligned)[b * y->strides[0] +
                                        (h / 2) * y->strides[1] +
                                        n * y->strides[2] + e * y->strides[3]];
        ((float *)o->aligned)[b * o->strides[0] + h * o->strides[1] +
                              n * o->strides[2] + e * o->strides[3]] = v;
        sum += v;
      }
      if (have_s)
        ((float *)s->aligned)[b * s->strides[0] + h * s->strides[1] +
                              n * s->strides[2]] = sum;
    }
  }
}

void _mlir_ciface_lt_copy_tasks(m1 *sizes, m1 *x, m1 *cu, m1 *o,
                                int64_t begin, int64_t end) {
  (void)cu;
  int64_t n = ((const int64_t *)sizes->aligned)[0];
  for (int64_t t = begin; t < end; ++t)
    for (int64_t i = t * 16; i < n && i < t * 16 + 16; ++i)
      ((int32_t *)o->aligned)[i * o->strides[0]] =
          ((int32_t *)x->aligned)[i * x->strides[0]];
}

#define CHECK(c)                                                             \
  do {                                                                       \
    if (!(c)) {                                                              \
      printf("FAILED line %d: %s (last error: %s)\n", __LINE__, #c,          \
             attn_last_error());                                             \
      return 1;                                                              \
    }                                                                        \
  } while (0)

static attn_tensor tensor(void *data, int ndim, const int64_t *shape,
                          attn_dtype dtype) {
  attn_tensor t;
  memset(&t, 0, sizeof t);
  t.data = data;
  t.device.device_type = ATTN_DEVICE_CPU;
  t.ndim = ndim;
  t.dtype = dtype;
  t.shape = shape;
  return t;
}

enum { B = 2, H = 4, G = 2, N = 5, E = 4 };
static float X[B][H][N][E], Y[B][G][N][E], O[B][H][N][E], S[B][H][N];

static int check_scale(int with_s) {
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int n = 0; n < N; ++n) {
        float sum = 0;
        for (int e = 0; e < E; ++e) {
          float want = X[b][h][n][e] + Y[b][h / 2][n][e];
          if (O[b][h][n][e] != want)
            return 0;
          sum += want;
        }
        if (with_s && S[b][h][n] != sum)
          return 0;
        if (!with_s && S[b][h][n] != -1.0f)
          return 0;
      }
  return 1;
}

int main(void) {
  const attn_dtype f32 = {ATTN_DTYPE_FLOAT, 32, 1};
  const attn_dtype i32 = {ATTN_DTYPE_INT, 32, 1};
  for (int i = 0; i < B * H * N * E; ++i)
    ((float *)X)[i] = (float)(i % 13);
  for (int i = 0; i < B * G * N * E; ++i)
    ((float *)Y)[i] = (float)(i % 7) * 0.5f;
  const int64_t xs[4] = {B, H, N, E}, ys[4] = {B, G, N, E}, ss[3] = {B, H, N};
  attn_tensor x = tensor(X, 4, xs, f32), y = tensor(Y, 4, ys, f32),
              o = tensor(O, 4, xs, f32), s = tensor(S, 3, ss, f32);
  lt_scale_args args = {&x, &y, &o, &s};

  /* The calling thread; then the pool without the optional output. */
  CHECK(lt_scale(&args, NULL) == ATTN_OK);
  CHECK(check_scale(1));
  memset(O, 0, sizeof O);
  for (int i = 0; i < B * H * N; ++i)
    ((float *)S)[i] = -1.0f;
  attn_launch launch;
  memset(&launch, 0, sizeof launch);
  launch.num_threads = 0;
  args.s = NULL;
  CHECK(lt_scale(&args, &launch) == ATTN_OK);
  CHECK(check_scale(0));

  /* Failures: statuses and messages. */
  const int64_t ybad[4] = {3, G, N, E};
  y.shape = ybad;
  CHECK(lt_scale(&args, &launch) == ATTN_ERR_SHAPE);
  CHECK(strstr(attn_last_error(),
               "lt_scale: y: dimension 0 (b) has size 3, but x has 2") != NULL);
  CHECK(strcmp(attn_status_string(ATTN_ERR_SHAPE), "shape mismatch") == 0);
  const int64_t ygqa[4] = {B, 3, N, E};
  y.shape = ygqa;
  CHECK(lt_scale(&args, &launch) == ATTN_ERR_SHAPE);
  CHECK(strstr(attn_last_error(), "is not 2 * g = 2 * 3") != NULL);
  y.shape = ys;
  x.dtype.bits = 16;
  CHECK(lt_scale(&args, NULL) == ATTN_ERR_DTYPE);
  CHECK(strstr(attn_last_error(), "x: dtype is float16") != NULL);
  x.dtype.bits = 32;
  const int64_t ebad[4] = {B, H, N, 5};
  x.shape = ebad;
  CHECK(lt_scale(&args, NULL) == ATTN_ERR_SHAPE);
  CHECK(strstr(attn_last_error(), "the kernel needs e = 4") != NULL);
  x.shape = xs;

  /* lt_copy: 100 int32 over 4 threads, with cu_seqlens. */
  static int32_t in[100], out[100];
  for (int i = 0; i < 100; ++i)
    in[i] = i * 3;
  int32_t cu[3] = {0, 40, 100};
  const int64_t n100[1] = {100}, n3[1] = {3};
  attn_tensor ct = tensor(in, 1, n100, i32), cc = tensor(cu, 1, n3, i32),
              co = tensor(out, 1, n100, i32);
  lt_copy_args cargs = {&ct, &cc, &co};
  launch.num_threads = 4;
  attn_status st = lt_copy(&cargs, &launch);
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    CHECK(st == ATTN_OK);
    for (int i = 0; i < 100; ++i)
      CHECK(out[i] == i * 3);
    cu[2] = 101;
    CHECK(lt_copy(&cargs, &launch) == ATTN_ERR_METADATA);
    CHECK(strstr(attn_last_error(),
                 "cu_seqlens: cu_seqlens[2] = 101 exceeds the size of n (100)")
          != NULL);
  } else {
    CHECK(st == ATTN_ERR_NO_KERNEL);
  }
  printf("ok\n");
  return 0;
}
)C";

} // namespace

TEST_CASE("emit: end to end with cc", "[emit]") {
  if (!hostIsX86_64()) {
    WARN("skipped: the host is not x86-64");
    return;
  }
  auto cc = llvm::sys::findProgramByName("cc");
  if (!cc) {
    WARN("skipped: no `cc` on PATH");
    return;
  }
  llvm::LLVMContext ctx;
  auto m = makeModule(ctx, /*define=*/false);
  std::vector<KernelSpec> specs = {scaleSpec(), copySpec()};
  for (const KernelSpec &k : specs)
    REQUIRE(errText(addKernelEntry(*m, k)) == "");
  TempDir dir;
  std::vector<std::pair<std::string, std::unique_ptr<llvm::MemoryBuffer>>>
      objects;
  objects.emplace_back("kernels.o", emitObject(*m));
  REQUIRE(errText(writeStaticLibrary(dir.file("libmylib.a"), objects)) == "");
  writeFile(dir.file("mylib.h"), writeHeader("mylib", specs));
  writeFile(dir.file("main.c"), kMainC);
  const std::string log = dir.file("log.txt");

  // The header alone is clean C99 (and C++, when there is a c++).
  writeFile(dir.file("only.c"), "#include \"mylib.h\"\nint main(void) { "
                                "return 0; }\n");
  int rc = run(*cc, {*cc, "-std=c99", "-Wall", "-Wextra", "-pedantic",
                     "-Werror", "-fsyntax-only", "-I" + std::string(dir.path),
                     dir.file("only.c")},
               log);
  INFO(readFile(log));
  REQUIRE(rc == 0);
  if (auto cxx = llvm::sys::findProgramByName("c++")) {
    rc = run(*cxx, {*cxx, "-std=c++17", "-Wall", "-Wextra", "-pedantic",
                    "-Werror", "-fsyntax-only", "-x", "c++",
                    "-I" + std::string(dir.path), dir.file("only.c")},
             log);
    INFO(readFile(log));
    REQUIRE(rc == 0);
  }

  const std::string exe = dir.file("main");
  rc = run(*cc, {*cc, "-std=c11", "-O1", "-Wall", "-I" + std::string(dir.path),
                 dir.file("main.c"), dir.file("libmylib.a"), "-lpthread",
                 "-lm", "-o", exe},
           log);
  INFO("cc: " << readFile(log));
  REQUIRE(rc == 0);
  rc = run(exe, {exe}, log);
  std::string out = readFile(log);
  INFO("main: " << out);
  REQUIRE(rc == 0);
  REQUIRE(out == "ok\n");

  // Two libraries, each with its runtime, linked whole into one program:
  // the runtime's global symbols are weak, so they do not clash.
  REQUIRE(errText(writeStaticLibrary(dir.file("libother.a"), {})) == "");
  rc = run(*cc, {*cc, "-std=c11", "-O1", "-I" + std::string(dir.path),
                 dir.file("main.c"), "-Wl,--whole-archive",
                 dir.file("libmylib.a"), dir.file("libother.a"),
                 "-Wl,--no-whole-archive", "-lpthread", "-lm", "-o", exe},
           log);
  INFO("cc --whole-archive: " << readFile(log));
  REQUIRE(rc == 0);
  rc = run(exe, {exe}, log);
  out = readFile(log);
  INFO("main (two runtimes): " << out);
  REQUIRE(rc == 0);
  REQUIRE(out == "ok\n");
}
