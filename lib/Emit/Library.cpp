//===- Library.cpp - kernel libraries: entry points, header, archive ------===//
//
// Implements attn/Emit/Library.h: the LLVM IR of each kernel's descriptor
// constant, packed task wrapper and public entry point; the C header of a
// library; the static archive of the kernels' objects plus the runtime
// object (embedded at build time, see RuntimeBlobs.cpp), or a shared library
// of the same objects linked by the system C compiler driver.
//
//===----------------------------------------------------------------------===//

#include "attn/Emit/Library.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/ADT/Twine.h"
#include "llvm/IR/Constants.h"
#include "llvm/IR/DerivedTypes.h"
#include "llvm/IR/Function.h"
#include "llvm/IR/GlobalVariable.h"
#include "llvm/IR/IRBuilder.h"
#include "llvm/IR/Module.h"
#include "llvm/Object/Archive.h"
#include "llvm/Object/ArchiveWriter.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/raw_ostream.h"

#include <set>

namespace attn::emit {

namespace {

// Limits of attn/runtime.h (repeated here so that this file does not need
// the C header; LibraryTest checks they agree).
constexpr int kMaxNdim = 8;
constexpr int kMaxArgs = 24;
constexpr int kMaxRanks = 24;
constexpr int kAbiVersion = 1;
constexpr int kDeviceCpu = 1;
constexpr int kDeviceCuda = 2;

llvm::Error err(const llvm::Twine &msg) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), msg);
}

bool isCKeyword(llvm::StringRef s) {
  static const std::set<std::string> kw = {
      "auto",       "break",     "case",           "char",
      "const",      "continue",  "default",        "do",
      "double",     "else",      "enum",           "extern",
      "float",      "for",       "goto",           "if",
      "inline",     "int",       "long",           "register",
      "restrict",   "return",    "short",          "signed",
      "sizeof",     "static",    "struct",         "switch",
      "typedef",    "union",     "unsigned",       "void",
      "volatile",   "while",     "_Alignas",       "_Alignof",
      "_Atomic",    "_Bool",     "_Complex",       "_Generic",
      "_Imaginary", "_Noreturn", "_Static_assert", "_Thread_local",
      "bool",       "true",      "false",          "nullptr",
      "alignas",    "alignof",   "static_assert",  "thread_local",
      "typeof",     "constexpr", "class",          "private",
      "public",     "protected", "template",       "this",
      "new",        "delete",    "operator",       "namespace",
      "virtual",    "friend",    "mutable",        "explicit",
      "export",     "using",     "typename",       "try",
      "catch",      "throw",     "noexcept",       "decltype"};
  return kw.count(s.str()) != 0;
}

bool isCIdentifier(llvm::StringRef s) {
  if (s.empty() || llvm::isDigit(s.front()))
    return false;
  for (char c : s)
    if (!(llvm::isAlnum(c) || c == '_'))
      return false;
  return !isCKeyword(s);
}

//===----------------------------------------------------------------------===//
// LP64 C struct layout as explicit packed LLVM structs
//===----------------------------------------------------------------------===//

/// Builds a packed struct type and constant whose byte layout is that of a
/// C struct on an LP64 target: fields at their natural alignment, padding
/// as explicit zero [n x i8] fields.
class CStruct {
public:
  explicit CStruct(llvm::LLVMContext &ctx) : ctx(ctx) {}

  void add(llvm::Constant *c, unsigned size, unsigned align) {
    padTo(align);
    types.push_back(c->getType());
    values.push_back(c);
    offset += size;
    maxAlign = std::max(maxAlign, align);
  }
  void i8(uint64_t v) { add(llvm::ConstantInt::get(ty(8), v), 1, 1); }
  void i16(uint64_t v) { add(llvm::ConstantInt::get(ty(16), v), 2, 2); }
  void i32(int64_t v) {
    add(llvm::ConstantInt::getSigned(ty(32), v), 4, 4);
  }
  void i64(int64_t v) {
    add(llvm::ConstantInt::getSigned(ty(64), v), 8, 8);
  }
  void ptr(llvm::Constant *p) { add(p, 8, 8); }
  void i32Array(llvm::ArrayRef<int32_t> vs) {
    auto *at = llvm::ArrayType::get(ty(32), vs.size());
    llvm::SmallVector<llvm::Constant *> cs;
    for (int32_t v : vs)
      cs.push_back(llvm::ConstantInt::getSigned(ty(32), v));
    add(llvm::ConstantArray::get(at, cs), 4 * vs.size(), 4);
  }

  /// Pads the tail to the struct's alignment and returns the constant.
  llvm::Constant *finish() {
    padTo(maxAlign);
    auto *st = llvm::StructType::get(ctx, types, /*isPacked=*/true);
    return llvm::ConstantStruct::get(st, values);
  }
  uint64_t size() const { return offset; }

private:
  llvm::IntegerType *ty(unsigned bits) {
    return llvm::IntegerType::get(ctx, bits);
  }
  void padTo(unsigned align) {
    uint64_t pad = (align - offset % align) % align;
    if (pad == 0)
      return;
    auto *at = llvm::ArrayType::get(ty(8), pad);
    types.push_back(at);
    values.push_back(llvm::ConstantAggregateZero::get(at));
    offset += pad;
  }

  llvm::LLVMContext &ctx;
  llvm::SmallVector<llvm::Type *> types;
  llvm::SmallVector<llvm::Constant *> values;
  uint64_t offset = 0;
  unsigned maxAlign = 1;
};

llvm::Constant *privateString(llvm::Module &m, llvm::StringRef s,
                              const llvm::Twine &name) {
  llvm::Constant *init =
      llvm::ConstantDataArray::getString(m.getContext(), s, /*AddNull=*/true);
  auto *gv = new llvm::GlobalVariable(m, init->getType(), /*isConstant=*/true,
                                      llvm::GlobalValue::PrivateLinkage, init,
                                      name);
  gv->setUnnamedAddr(llvm::GlobalValue::UnnamedAddr::Global);
  gv->setAlignment(llvm::Align(1));
  return gv;
}

/// A private constant array of packed structs (all of one type), or null.
llvm::Constant *privateArray(llvm::Module &m,
                             llvm::ArrayRef<llvm::Constant *> elems,
                             const llvm::Twine &name) {
  auto *ptrTy = llvm::PointerType::getUnqual(m.getContext());
  if (elems.empty())
    return llvm::ConstantPointerNull::get(ptrTy);
  auto *at = llvm::ArrayType::get(elems.front()->getType(), elems.size());
  auto *init = llvm::ConstantArray::get(at, elems);
  auto *gv = new llvm::GlobalVariable(m, at, /*isConstant=*/true,
                                      llvm::GlobalValue::PrivateLinkage, init,
                                      name);
  gv->setAlignment(llvm::Align(8));
  return gv;
}

//===----------------------------------------------------------------------===//
// Header text
//===----------------------------------------------------------------------===//

std::string macroName(llvm::StringRef lib) {
  std::string out;
  for (char c : lib)
    out += llvm::isAlnum(c) ? llvm::toUpper(c) : '_';
  if (out.empty() || llvm::isDigit(out.front()))
    out = "_" + out;
  return out;
}

/// Text safe inside a /* */ comment, each line prefixed with " * ".
std::string commentBlock(llvm::StringRef text) {
  std::string out;
  llvm::SmallVector<llvm::StringRef> lines;
  text.rtrim("\n").split(lines, '\n');
  for (llvm::StringRef line : lines) {
    std::string l = line.rtrim().str();
    size_t pos;
    while ((pos = l.find("*/")) != std::string::npos)
      l.replace(pos, 2, "* /");
    while ((pos = l.find("/*")) != std::string::npos)
      l.replace(pos, 2, "/ *");
    out += l.empty() ? " *\n" : " *   " + l + "\n";
  }
  return out;
}

std::string dtypeName(const ArgSpec &a) {
  std::string base;
  switch (a.dtypeCode) {
  case 0: base = "int"; break;
  case 1: base = "uint"; break;
  case 2: base = "float"; break;
  case 4: base = "bfloat"; break;
  default:
    return "dtype(code " + std::to_string(a.dtypeCode) + ", bits " +
           std::to_string(a.dtypeBits) + ")";
  }
  return base + std::to_string(a.dtypeBits);
}

std::string shapeText(const KernelSpec &k, const ArgSpec &a) {
  std::string s = "[";
  for (size_t i = 0; i < a.dims.size(); ++i) {
    const RankSpec &r = k.ranks[a.dims[i]];
    if (i)
      s += ", ";
    s += r.name;
    if (r.staticSize >= 0)
      s += "=" + std::to_string(r.staticSize);
  }
  return s + "]";
}

const char *roleText(ArgSpec::Role r) {
  switch (r) {
  case ArgSpec::Input: return "input";
  case ArgSpec::Output: return "output";
  case ArgSpec::OptionalOutput: return "optional output";
  }
  return "?";
}

std::string argSummary(const KernelSpec &k, const ArgSpec &a) {
  std::string s = std::string(roleText(a.role)) + ", " + dtypeName(a) + " " +
                  shapeText(k, a);
  if (a.unitInnerStride)
    s += ", innermost stride 1";
  if (a.metadataKind == 1)
    s += ", cu_seqlens: [0] = 0, nondecreasing, last <= |" +
         k.ranks[a.metadataBoundRank].name + "|";
  if (a.metadataKind == 2)
    s += ", indices: every value in [0, |" +
         k.ranks[a.metadataBoundRank].name + "|)";
  if (a.role == ArgSpec::OptionalOutput)
    s += "; may be NULL (then not computed)";
  return s;
}

void writeKernel(llvm::raw_ostream &os, const KernelSpec &k) {
  os << "/*===- " << k.name << " ";
  for (size_t i = k.name.size(); i < 62; ++i)
    os << '-';
  os << "===*\n *\n";
  if (!k.note.empty()) {
    llvm::SmallVector<llvm::StringRef> lines;
    llvm::StringRef(k.note).rtrim("\n").split(lines, '\n');
    for (llvm::StringRef line : lines)
      os << (line.empty() ? " *" : " * " + line.str()) << "\n";
    os << " *\n";
  }
  if (!llvm::StringRef(k.doc).trim().empty())
    os << commentBlock(k.doc) << " *\n";
  os << " * Ranks: ";
  for (size_t i = 0; i < k.ranks.size(); ++i) {
    os << (i ? ", " : "") << k.ranks[i].name;
    if (k.ranks[i].staticSize >= 0)
      os << " = " << k.ranks[i].staticSize;
  }
  os << "\n";
  if (!k.relations.empty()) {
    os << " * Relations: ";
    for (size_t i = 0; i < k.relations.size(); ++i) {
      const RelationSpec &r = k.relations[i];
      os << (i ? ", " : "") << "|" << k.ranks[r.lhs].name << "| = "
         << r.factor << " * |" << k.ranks[r.rhs].name << "|";
    }
    os << "\n";
  }
  os << " * Arguments (a rank has one size in every tensor):\n";
  for (const ArgSpec &a : k.args)
    os << " *   " << a.name << ": " << argSummary(k, a) << "\n";
  if (!k.tensorDoc.empty()) {
    llvm::SmallVector<llvm::StringRef> lines;
    llvm::StringRef(k.tensorDoc).rtrim("\n").split(lines, '\n');
    for (llvm::StringRef line : lines)
      os << " * " << line << "\n";
  } else {
    os << " * Tensors: CPU memory; strides in elements, >= 0 (NULL: compact\n"
          " * row-major); outputs must not overlap; data + byte_offset aligned "
          "to\n * the element size.\n";
  }
  if (k.requiredIsa == 1)
    os << " * Needs a CPU with AVX2 and FMA (else ATTN_ERR_NO_KERNEL).\n";
  else if (k.requiredIsa == 2)
    os << " * Needs a CPU with AVX-512F (else ATTN_ERR_NO_KERNEL).\n";
  os << " * Returns ATTN_OK, or a status and attn_last_error(); on failure no\n"
        " * output is written.\n */\n";
  os << "typedef struct " << k.name << "_args {\n";
  for (const ArgSpec &a : k.args)
    os << "  const attn_tensor *" << a.name << "; /* " << roleText(a.role)
       << ", " << dtypeName(a) << " " << shapeText(k, a) << " */\n";
  os << "} " << k.name << "_args;\n\n";
  os << "attn_status " << k.name << "(const " << k.name
     << "_args *args, const attn_launch *launch);\n\n";
}

} // namespace

//===----------------------------------------------------------------------===//
// verifyKernelSpec
//===----------------------------------------------------------------------===//

llvm::Error verifyKernelSpec(const KernelSpec &k) {
  if (!isCIdentifier(k.name))
    return err("kernel name '" + k.name + "' is not a C identifier");
  auto ctx = [&]() { return "kernel " + k.name + ": "; };
  if (k.deviceType != 1 && k.deviceType != 2)
    return err(ctx() + "unknown device type " + std::to_string(k.deviceType));
  if (k.deviceType == 1 && k.cifaceSymbol.empty())
    return err(ctx() + "no ciface symbol");
  int numRanks = static_cast<int>(k.ranks.size());
  if (numRanks > kMaxRanks)
    return err(ctx() + std::to_string(numRanks) + " ranks (at most " +
               std::to_string(kMaxRanks) + ")");
  llvm::StringSet<> seen;
  for (const RankSpec &r : k.ranks) {
    if (r.name.empty())
      return err(ctx() + "a rank has no name");
    if (!seen.insert(r.name).second)
      return err(ctx() + "rank '" + r.name + "' appears twice");
    if (r.staticSize < -1)
      return err(ctx() + "rank '" + r.name + "' has static size " +
                 std::to_string(r.staticSize));
  }
  auto rankOk = [&](int r) { return r >= 0 && r < numRanks; };
  for (const RelationSpec &r : k.relations)
    if (!rankOk(r.lhs) || !rankOk(r.rhs) || r.factor < 1)
      return err(ctx() + "bad relation (lhs " + std::to_string(r.lhs) +
                 ", factor " + std::to_string(r.factor) + ", rhs " +
                 std::to_string(r.rhs) + ")");
  if (k.args.size() > static_cast<size_t>(kMaxArgs))
    return err(ctx() + std::to_string(k.args.size()) +
               " arguments (at most " + std::to_string(kMaxArgs) + ")");
  bool anyOutput = false;
  seen.clear();
  for (const ArgSpec &a : k.args) {
    if (!isCIdentifier(a.name))
      return err(ctx() + "argument name '" + a.name +
                 "' is not a C identifier");
    if (!seen.insert(a.name).second)
      return err(ctx() + "argument '" + a.name + "' appears twice");
    auto actx = ctx() + "argument " + a.name + ": ";
    if (a.role != ArgSpec::Input && a.role != ArgSpec::Output &&
        a.role != ArgSpec::OptionalOutput)
      return err(actx + "bad role");
    anyOutput |= a.role != ArgSpec::Input;
    if (a.dims.size() > static_cast<size_t>(kMaxNdim))
      return err(actx + std::to_string(a.dims.size()) +
                 " dimensions (at most " + std::to_string(kMaxNdim) + ")");
    for (int d : a.dims)
      if (!rankOk(d))
        return err(actx + "rank index " + std::to_string(d) +
                   " out of range");
    if (a.dtypeBits != 8 && a.dtypeBits != 16 && a.dtypeBits != 32 &&
        a.dtypeBits != 64)
      return err(actx + std::to_string(a.dtypeBits) +
                 "-bit elements are not supported");
    if (a.metadataKind == 1) {
      if (a.role != ArgSpec::Input || a.dims.size() != 1 ||
          a.dtypeCode != 0 || a.dtypeBits != 32 ||
          !rankOk(a.metadataBoundRank))
        return err(actx + "cu_seqlens must be a 1-D int32 input with a bound "
                          "rank");
    } else if (a.metadataKind == 2) {
      if (a.role != ArgSpec::Input || a.dtypeCode != 0 || a.dtypeBits != 32 ||
          !rankOk(a.metadataBoundRank))
        return err(actx + "indices must be an int32 input with a bound rank");
    } else if (a.metadataKind != 0) {
      return err(actx + "unknown metadata kind " +
                 std::to_string(a.metadataKind));
    }
  }
  if (!anyOutput)
    return err(ctx() + "no output");
  if (k.taskRanks.size() > static_cast<size_t>(kMaxRanks))
    return err(ctx() + "too many task ranks");
  for (int r : k.taskRanks)
    if (!rankOk(r))
      return err(ctx() + "task rank index " + std::to_string(r) +
                 " out of range");
  if (k.tiledRank != -1) {
    if (!llvm::is_contained(k.taskRanks, k.tiledRank))
      return err(ctx() + "the tiled rank is not a task rank");
    if (k.tile < 1)
      return err(ctx() + "tile " + std::to_string(k.tile) + " < 1");
  }
  if (k.requiredIsa < 0 || k.requiredIsa > 2)
    return err(ctx() + "unknown required ISA " +
               std::to_string(k.requiredIsa));
  return llvm::Error::success();
}

//===----------------------------------------------------------------------===//
// addKernelEntry, addCudaKernelEntry
//===----------------------------------------------------------------------===//

namespace {
/// Appends the fields of attn_rt_kernel for `k` to `kd` (its strings and
/// arrays as private globals of `m`); `tasks` is the task function or null.
void addBaseDescriptor(llvm::Module &m, const KernelSpec &k, CStruct &kd,
                       llvm::Constant *tasks) {
  llvm::LLVMContext &ctx = m.getContext();
  // The descriptor: attn_rt_kernel and its arrays, laid out as in LP64 C.
  llvm::SmallVector<llvm::Constant *> ranks, relations, args;
  for (size_t r = 0; r < k.ranks.size(); ++r) {
    CStruct s(ctx); // attn_rt_rank
    s.ptr(privateString(m, k.ranks[r].name,
                        k.name + ".rank." + k.ranks[r].name));
    s.i64(k.ranks[r].staticSize);
    ranks.push_back(s.finish());
  }
  for (const RelationSpec &rel : k.relations) {
    CStruct s(ctx); // attn_rt_relation
    s.i32(rel.lhs);
    s.i64(rel.factor);
    s.i32(rel.rhs);
    relations.push_back(s.finish());
  }
  for (const ArgSpec &a : k.args) {
    CStruct s(ctx); // attn_rt_arg
    s.ptr(privateString(m, a.name, k.name + ".arg." + a.name));
    s.i32(a.role);
    s.i8(a.dtypeCode); // attn_dtype {code, bits, lanes}
    s.i8(a.dtypeBits);
    s.i16(1);
    s.i32(static_cast<int32_t>(a.dims.size()));
    llvm::SmallVector<int32_t, kMaxNdim> dims(kMaxNdim, 0);
    for (size_t i = 0; i < a.dims.size(); ++i)
      dims[i] = a.dims[i];
    s.i32Array(dims);
    s.i32(a.unitInnerStride ? 1 : 0);
    s.i32(a.metadataKind);
    s.i32(a.metadataBoundRank);
    args.push_back(s.finish());
  }

  kd.ptr(privateString(m, k.name, k.name + ".name"));
  kd.i32(kAbiVersion);
  kd.i32(k.deviceType);
  kd.i32(static_cast<int32_t>(k.ranks.size()));
  kd.ptr(privateArray(m, ranks, k.name + ".ranks"));
  kd.i32(static_cast<int32_t>(k.relations.size()));
  kd.ptr(privateArray(m, relations, k.name + ".relations"));
  kd.i32(static_cast<int32_t>(k.args.size()));
  kd.ptr(privateArray(m, args, k.name + ".args"));
  kd.i32(static_cast<int32_t>(k.taskRanks.size()));
  llvm::SmallVector<int32_t, kMaxRanks> taskRanks(kMaxRanks, 0);
  for (size_t i = 0; i < k.taskRanks.size(); ++i)
    taskRanks[i] = k.taskRanks[i];
  kd.i32Array(taskRanks);
  kd.i32(k.tiledRank);
  kd.i64(k.tiledRank >= 0 ? k.tile : 1);
  kd.ptr(tasks);
  kd.i32(k.requiredIsa);
}

} // namespace


llvm::Error addKernelEntry(llvm::Module &m, const KernelSpec &k) {
  if (llvm::Error e = verifyKernelSpec(k))
    return e;
  if (k.deviceType != kDeviceCpu)
    return err("kernel " + k.name + ": not a CPU kernel (addCudaKernelEntry)");
  llvm::LLVMContext &ctx = m.getContext();
  const llvm::DataLayout &dl = m.getDataLayout();
  if (dl.getPointerSizeInBits(0) != 64)
    return err("kernel " + k.name +
               ": the module's data layout has " +
               std::to_string(dl.getPointerSizeInBits(0)) +
               "-bit pointers; the runtime ABI needs 64-bit pointers");

  const std::string kernelName = k.name + "_kernel";
  const std::string packedName = k.name + "_tasks_packed";
  for (const std::string &n : {k.name, kernelName, packedName})
    if (m.getNamedValue(n))
      return err("kernel " + k.name + ": symbol '" + n +
                 "' already exists in the module");

  auto *ptrTy = llvm::PointerType::getUnqual(ctx);
  auto *i32 = llvm::Type::getInt32Ty(ctx);
  auto *i64 = llvm::Type::getInt64Ty(ctx);
  auto *voidTy = llvm::Type::getVoidTy(ctx);

  // The ciface: void(ptr sizes, ptr arg0, ..., i64 begin, i64 end).
  const unsigned numDescs = 1 + k.args.size();
  llvm::Function *ciface = m.getFunction(k.cifaceSymbol);
  if (!ciface)
    return err("kernel " + k.name + ": the module has no function '" +
               k.cifaceSymbol + "'");
  llvm::FunctionType *cty = ciface->getFunctionType();
  bool typeOk = !cty->isVarArg() && cty->getReturnType()->isVoidTy() &&
                cty->getNumParams() == numDescs + 2;
  for (unsigned i = 0; typeOk && i < numDescs; ++i)
    typeOk = cty->getParamType(i)->isPointerTy();
  if (typeOk)
    typeOk = cty->getParamType(numDescs)->isIntegerTy(64) &&
             cty->getParamType(numDescs + 1)->isIntegerTy(64);
  if (!typeOk) {
    std::string got;
    llvm::raw_string_ostream os(got);
    cty->print(os);
    return err("kernel " + k.name + ": '" + k.cifaceSymbol + "' has type " +
               got + ", but the runtime needs void(" +
               std::to_string(numDescs) + " x ptr, i64, i64)");
  }

  // The runtime entry.
  auto *runTy = llvm::FunctionType::get(i32, {ptrTy, ptrTy, ptrTy}, false);
  llvm::Function *run = m.getFunction("attn_rt_v1_run");
  if (!run) {
    run = llvm::Function::Create(runTy, llvm::GlobalValue::ExternalLinkage,
                                 "attn_rt_v1_run", m);
  } else if (run->getFunctionType() != runTy) {
    return err("kernel " + k.name +
               ": the module declares attn_rt_v1_run with a different type");
  }

  // The packed wrapper.
  auto *packedTy =
      llvm::FunctionType::get(voidTy, {ptrTy, i64, i64}, /*isVarArg=*/false);
  llvm::Function *packed = llvm::Function::Create(
      packedTy, llvm::GlobalValue::InternalLinkage, packedName, m);
  packed->addFnAttr(llvm::Attribute::NoUnwind);
  {
    llvm::IRBuilder<> b(llvm::BasicBlock::Create(ctx, "entry", packed));
    llvm::Value *descs = packed->getArg(0);
    descs->setName("descs");
    packed->getArg(1)->setName("begin");
    packed->getArg(2)->setName("end");
    llvm::SmallVector<llvm::Value *> callArgs;
    for (unsigned i = 0; i < numDescs; ++i) {
      llvm::Value *slot =
          i == 0 ? descs : b.CreateConstInBoundsGEP1_64(ptrTy, descs, i);
      callArgs.push_back(b.CreateAlignedLoad(ptrTy, slot, llvm::Align(8),
                                             "desc" + llvm::Twine(i)));
    }
    callArgs.push_back(packed->getArg(1));
    callArgs.push_back(packed->getArg(2));
    b.CreateCall(ciface, callArgs);
    b.CreateRetVoid();
  }

  // The descriptor: attn_rt_kernel and its arrays, laid out as in LP64 C.
  CStruct kd(ctx); // attn_rt_kernel
  addBaseDescriptor(m, k, kd, packed);
  llvm::Constant *kernelInit = kd.finish();
  auto *kernel = new llvm::GlobalVariable(
      m, kernelInit->getType(), /*isConstant=*/true,
      llvm::GlobalValue::InternalLinkage, kernelInit, kernelName);
  kernel->setAlignment(llvm::Align(8));

  // The entry: attn_status <name>(const <name>_args *, const attn_launch *).
  auto *entryTy = llvm::FunctionType::get(i32, {ptrTy, ptrTy}, false);
  llvm::Function *entry = llvm::Function::Create(
      entryTy, llvm::GlobalValue::ExternalLinkage, k.name, m);
  entry->addFnAttr(llvm::Attribute::NoUnwind);
  {
    llvm::IRBuilder<> b(llvm::BasicBlock::Create(ctx, "entry", entry));
    entry->getArg(0)->setName("args");
    entry->getArg(1)->setName("launch");
    llvm::Value *status =
        b.CreateCall(run, {kernel, entry->getArg(0), entry->getArg(1)});
    b.CreateRet(status);
  }
  return llvm::Error::success();
}

llvm::Error addCudaKernelEntry(llvm::Module &m, const KernelSpec &k,
                               const CudaKernelSpec &c) {
  if (llvm::Error e = verifyKernelSpec(k))
    return e;
  auto bad = [&](const llvm::Twine &why) {
    return err("kernel " + k.name + ": " + why);
  };
  if (k.deviceType != kDeviceCuda)
    return bad("not a CUDA kernel (addKernelEntry)");
  if (c.function.empty())
    return bad("no CUDA function name");
  if (c.cubins.empty())
    return bad("no cubin");
  for (const CubinSpec &cb : c.cubins)
    if (cb.image.empty() || cb.arch.empty() || cb.major < 1 || cb.minor < 0)
      return bad("cubin '" + cb.arch + "' is empty or has no capability");
  if (c.alignBytes.size() != k.args.size() ||
      c.strideMultiple.size() != k.args.size())
    return bad("CUDA alignment and stride rules must have one entry per "
               "argument");
  for (size_t i = 0; i < k.args.size(); ++i)
    if (c.alignBytes[i] < 1 || c.strideMultiple[i] < 1)
      return bad("CUDA alignment and stride multiples must be >= 1");
  if (c.block[0] < 1 || c.block[1] < 1 || c.block[2] < 1 ||
      c.dynamicSharedBytes < 0 || c.maxRankSize < 1 || c.maxGridY < 1)
    return bad("bad CUDA launch configuration");
  if (k.tiledRank < 0)
    return bad("a CUDA kernel needs a tiled rank (grid x)");
  for (const ArgSpec &a : k.args)
    if (a.metadataKind != 0)
      return bad("CUDA kernels take no metadata arguments yet");
  llvm::LLVMContext &ctx = m.getContext();
  const llvm::DataLayout &dl = m.getDataLayout();
  if (dl.getPointerSizeInBits(0) != 64)
    return bad("the runtime ABI needs 64-bit pointers");
  const std::string kernelName = k.name + "_kernel";
  for (const std::string &n : {k.name, kernelName})
    if (m.getNamedValue(n))
      return bad("symbol '" + n + "' already exists in the module");

  auto *ptrTy = llvm::PointerType::getUnqual(ctx);
  auto *i32 = llvm::Type::getInt32Ty(ctx);
  auto *runTy = llvm::FunctionType::get(i32, {ptrTy, ptrTy, ptrTy}, false);
  llvm::Function *run = m.getFunction("attn_rt_v1_run_cuda");
  if (!run)
    run = llvm::Function::Create(runTy, llvm::GlobalValue::ExternalLinkage,
                                 "attn_rt_v1_run_cuda", m);
  else if (run->getFunctionType() != runTy)
    return bad("the module declares attn_rt_v1_run_cuda with a different "
               "type");

  // The cubins: ELF images as private constants.
  llvm::SmallVector<llvm::Constant *> cubins;
  for (const CubinSpec &cb : c.cubins) {
    llvm::Constant *bytes = llvm::ConstantDataArray::getRaw(
        cb.image, cb.image.size(), llvm::Type::getInt8Ty(ctx));
    auto *gv = new llvm::GlobalVariable(m, bytes->getType(), /*isConstant=*/true,
                                        llvm::GlobalValue::PrivateLinkage,
                                        bytes, k.name + ".cubin." + cb.arch);
    gv->setAlignment(llvm::Align(16));
    CStruct s(ctx); // attn_rt_cubin
    s.ptr(privateString(m, cb.arch, k.name + ".arch." + cb.arch));
    s.i32(cb.major);
    s.i32(cb.minor);
    s.i32(cb.archSpecific ? 1 : 0);
    s.ptr(gv);
    s.i64(static_cast<int64_t>(cb.image.size()));
    cubins.push_back(s.finish());
  }

  CStruct kd(ctx); // attn_rt_cuda_kernel
  addBaseDescriptor(m, k, kd, llvm::ConstantPointerNull::get(ptrTy));
  kd.ptr(privateString(m, c.function, k.name + ".function"));
  kd.i32(static_cast<int32_t>(c.cubins.size()));
  kd.ptr(privateArray(m, cubins, k.name + ".cubins"));
  kd.i32Array({c.block[0], c.block[1], c.block[2]});
  kd.i32(c.dynamicSharedBytes);
  llvm::SmallVector<int32_t, kMaxArgs> align(kMaxArgs, 1), stride(kMaxArgs, 1);
  for (size_t i = 0; i < k.args.size(); ++i) {
    align[i] = c.alignBytes[i];
    stride[i] = c.strideMultiple[i];
  }
  kd.i32Array(align);
  kd.i32Array(stride);
  kd.i64(c.maxRankSize);
  kd.i64(c.maxGridY);
  llvm::Constant *init = kd.finish();
  auto *kernel = new llvm::GlobalVariable(m, init->getType(), /*isConstant=*/true,
                                          llvm::GlobalValue::InternalLinkage,
                                          init, kernelName);
  kernel->setAlignment(llvm::Align(8));

  auto *entryTy = llvm::FunctionType::get(i32, {ptrTy, ptrTy}, false);
  llvm::Function *entry = llvm::Function::Create(
      entryTy, llvm::GlobalValue::ExternalLinkage, k.name, m);
  entry->addFnAttr(llvm::Attribute::NoUnwind);
  llvm::IRBuilder<> b(llvm::BasicBlock::Create(ctx, "entry", entry));
  entry->getArg(0)->setName("args");
  entry->getArg(1)->setName("launch");
  b.CreateRet(b.CreateCall(run, {kernel, entry->getArg(0), entry->getArg(1)}));
  return llvm::Error::success();
}

//===----------------------------------------------------------------------===//
// writeHeader
//===----------------------------------------------------------------------===//

std::string writeHeader(llvm::StringRef libName,
                        llvm::ArrayRef<KernelSpec> kernels) {
  std::string out;
  llvm::raw_string_ostream os(out);
  const std::string macro = macroName(libName);
  os << "/* " << libName
     << ".h - generated by attnc; do not edit.\n"
        " *\n"
        " * Kernels:";
  for (const KernelSpec &k : kernels)
    os << " " << k.name;
  os << "\n";
  for (const KernelSpec &k : kernels)
    if (!k.note.empty())
      os << " *   " << k.name << ": "
         << llvm::StringRef(k.note).split('\n').first << "\n";
  os << ""
        " * Link with the library and -lpthread -lm; it carries its runtime "
        "and\n"
        " * needs nothing else. Each entry point validates its arguments; "
        "see the\n"
        " * ABI below and each kernel's comment.\n"
        " */\n\n"
     << "#ifndef " << macro << "_H_INCLUDED\n"
     << "#define " << macro << "_H_INCLUDED\n\n";
  os << runtimeHeader();
  if (!runtimeHeader().ends_with("\n"))
    os << "\n";
  os << "\n#if ATTN_RUNTIME_ABI_VERSION != " << kAbiVersion << "\n"
     << "#error \"" << libName << ".h needs attn runtime ABI version "
     << kAbiVersion << "; another header defined ATTN_RUNTIME_H first\"\n"
     << "#endif\n\n"
     << "#define " << macro << "_ABI_VERSION " << kAbiVersion << "\n\n"
     << "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n";
  for (const KernelSpec &k : kernels)
    writeKernel(os, k);
  os << "#ifdef __cplusplus\n}\n#endif\n\n"
     << "#endif /* " << macro << "_H_INCLUDED */\n";
  return out;
}

//===----------------------------------------------------------------------===//
// writeStaticLibrary
//===----------------------------------------------------------------------===//

llvm::StringRef runtimeMemberName() { return "attn_runtime.o"; }

llvm::Error writeStaticLibrary(
    llvm::StringRef path,
    llvm::ArrayRef<std::pair<std::string, std::unique_ptr<llvm::MemoryBuffer>>>
        objects) {
  std::vector<llvm::NewArchiveMember> members;
  llvm::StringSet<> names;
  for (const auto &[name, buffer] : objects) {
    if (name.empty() || !buffer)
      return err("writeStaticLibrary: an object has no name or contents");
    if (name == runtimeMemberName())
      return err("writeStaticLibrary: the member name '" + name +
                 "' is reserved for the runtime");
    if (!names.insert(name).second)
      return err("writeStaticLibrary: member '" + name + "' appears twice");
    llvm::NewArchiveMember member(
        llvm::MemoryBufferRef(buffer->getBuffer(), name));
    members.push_back(std::move(member));
  }
  llvm::StringRef rt = runtimeObject();
  if (rt.empty())
    return err("writeStaticLibrary: attnc was built without the runtime "
               "object");
  members.emplace_back(llvm::MemoryBufferRef(rt, runtimeMemberName()));

  std::string warnings;
  llvm::Error e = llvm::writeArchive(
      path, members, llvm::SymtabWritingMode::NormalSymtab,
      llvm::object::Archive::K_GNU, /*Deterministic=*/true, /*Thin=*/false,
      /*OldArchiveBuf=*/nullptr, /*IsEC=*/std::nullopt,
      [&](llvm::Error w) {
        warnings += (warnings.empty() ? "" : "; ") + llvm::toString(std::move(w));
      });
  if (e)
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "writing " + path + ": " +
                                       llvm::toString(std::move(e)));
  if (!warnings.empty())
    return err("writing " + path + ": " + warnings);
  return llvm::Error::success();
}

//===----------------------------------------------------------------------===//
// writeSharedLibrary
//===----------------------------------------------------------------------===//

namespace {
/// Removes a temporary directory and the files written into it.
struct TempDir {
  llvm::SmallString<128> path;
  std::vector<std::string> files;
  ~TempDir() {
    for (const std::string &f : files)
      llvm::sys::fs::remove(f);
    if (!path.empty())
      llvm::sys::fs::remove(path);
  }
  llvm::Error write(llvm::StringRef name, llvm::StringRef bytes,
                    std::string &out) {
    llvm::SmallString<256> p(path);
    llvm::sys::path::append(p, name);
    std::error_code ec;
    llvm::raw_fd_ostream os(p, ec);
    if (ec)
      return err("cannot write " + p + ": " + ec.message());
    files.push_back(std::string(p));
    os << bytes;
    os.close();
    if (os.has_error())
      return err("cannot write " + p + ": " + os.error().message());
    out = std::string(p);
    return llvm::Error::success();
  }
};
} // namespace

llvm::Error writeSharedLibrary(
    llvm::StringRef path,
    llvm::ArrayRef<std::pair<std::string, std::unique_ptr<llvm::MemoryBuffer>>>
        objects,
    llvm::StringRef compiler) {
  llvm::StringSet<> names;
  for (const auto &[name, buffer] : objects) {
    if (name.empty() || !buffer)
      return err("writeSharedLibrary: an object has no name or contents");
    if (name == runtimeMemberName())
      return err("writeSharedLibrary: the object name '" + name +
                 "' is reserved for the runtime");
    if (!names.insert(name).second)
      return err("writeSharedLibrary: object '" + name + "' appears twice");
  }
  if (runtimeObject().empty())
    return err("writeSharedLibrary: attnc was built without the runtime "
               "object");
  if (compiler.empty())
    return err("writeSharedLibrary: no C compiler driver given");

  // The driver: a path as given, else a program on PATH.
  std::string driver = compiler.str();
  if (!compiler.contains('/')) {
    auto found = llvm::sys::findProgramByName(compiler);
    if (!found)
      return err("cannot find the C compiler driver '" + compiler +
                 "' on PATH (needed to link a shared library; see --cc)");
    driver = *found;
  }

  TempDir tmp;
  if (std::error_code ec =
          llvm::sys::fs::createUniqueDirectory("attnc-shared", tmp.path))
    return err("cannot create a temporary directory: " + ec.message());
  std::vector<std::string> args = {driver, "-shared", "-Wl,-Bsymbolic", "-o",
                                   path.str()};
  for (const auto &[name, buffer] : objects) {
    std::string file;
    if (llvm::Error e = tmp.write(name, buffer->getBuffer(), file))
      return e;
    args.push_back(file);
  }
  std::string runtimeFile;
  if (llvm::Error e =
          tmp.write(runtimeMemberName(), runtimeObject(), runtimeFile))
    return e;
  args.push_back(runtimeFile);
  args.push_back("-lpthread");
  args.push_back("-lm");
  std::string logFile;
  if (llvm::Error e = tmp.write("link.log", "", logFile))
    return e;

  llvm::SmallVector<llvm::StringRef> argRefs(args.begin(), args.end());
  std::optional<llvm::StringRef> redirects[] = {
      std::nullopt, llvm::StringRef(logFile), llvm::StringRef(logFile)};
  std::string execError;
  int rc = llvm::sys::ExecuteAndWait(driver, argRefs, /*Env=*/std::nullopt,
                                     redirects, /*SecondsToWait=*/0,
                                     /*MemoryLimit=*/0, &execError);
  if (rc != 0) {
    std::string command = llvm::join(args, " ");
    std::string log;
    if (auto buf = llvm::MemoryBuffer::getFile(logFile))
      log = (*buf)->getBuffer().trim().str();
    return err("linking " + path + " failed (" +
               (execError.empty() ? "exit status " + std::to_string(rc)
                                  : execError) +
               "): " + command + (log.empty() ? "" : "\n" + log));
  }
  return llvm::Error::success();
}

} // namespace attn::emit
