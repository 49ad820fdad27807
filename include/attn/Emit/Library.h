//===- Library.h - kernel libraries: entry points, header, archive -*- C++ -*-===//
//
// The last stage of `attnc`: given the LLVM module of the lowered kernels,
// add for each kernel its descriptor constant (attn_rt_kernel of
// attn/runtime.h), the packed task wrapper the runtime calls and the public
// entry point; write the C header; write the static library (the kernels'
// object plus the runtime object, which attnc carries inside itself) or a
// shared library of the same objects (attnc --emit=shared).
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_EMIT_LIBRARY_H
#define ATTN_EMIT_LIBRARY_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/MemoryBuffer.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace llvm {
class Module;
} // namespace llvm

namespace attn::emit {

struct RankSpec {
  std::string name;
  int64_t staticSize = -1; // -1: dynamic
};

struct RelationSpec {
  int lhs = 0;
  int64_t factor = 1;
  int rhs = 0;
};

struct ArgSpec {
  enum Role { Input = 0, Output = 1, OptionalOutput = 2 };
  std::string name; // C parameter name
  Role role = Input;
  uint8_t dtypeCode = 2; // DLPack code (2 float, 4 bfloat, 0 int, 1 uint)
  uint8_t dtypeBits = 32;
  std::vector<int> dims; // rank index per dimension
  bool unitInnerStride = false;
  int metadataKind = 0; // ATTN_RT_META_*
  int metadataBoundRank = -1;
};

/// Everything the runtime and the header need to know about one kernel.
struct KernelSpec {
  /// The C name of the entry point, e.g. "flash_mha".
  std::string name;
  /// The MLIR-generated task function's C interface symbol:
  /// void (memref-descriptor pointers: sizes, then one per argument,
  /// int64_t begin, int64_t end). Usually "_mlir_ciface_<name>_tasks".
  std::string cifaceSymbol;
  /// The cascade as the user wrote it, for the header's doc comment.
  std::string doc;
  /// If not empty: prose for the doc comment, before the cascade (lines
  /// separated by '\n'); its first line is also listed at the top of the
  /// header (the call order of a quantization prologue and its kernel).
  std::string note;
  std::vector<RankSpec> ranks;
  std::vector<RelationSpec> relations;
  std::vector<ArgSpec> args;
  std::vector<int> taskRanks;
  int tiledRank = -1;
  int64_t tile = 1;
  int requiredIsa = 0; // 0 none, 1 AVX2+FMA, 2 AVX-512F
  /// 1: CPU (attn_rt_kernel, addKernelEntry); 2: CUDA (attn_rt_cuda_kernel,
  /// addCudaKernelEntry; cifaceSymbol unused).
  int deviceType = 1;
  /// If not empty: the header's paragraph on tensors (memory, strides,
  /// alignment) instead of the CPU one, one line per '\n'.
  std::string tensorDoc;
};

/// One cubin to embed (attn_rt_cubin).
struct CubinSpec {
  std::string arch; ///< "sm_80", "sm_90a"
  int major = 0, minor = 0;
  bool archSpecific = false; ///< the "a" archs: exactly major.minor only
  std::string image;         ///< the ELF bytes from ptxas
};

/// What a CUDA kernel adds to KernelSpec (attn_rt_cuda_kernel).
struct CudaKernelSpec {
  std::string function; ///< the entry's name in every cubin
  std::vector<CubinSpec> cubins;
  int block[3] = {1, 1, 1};
  int dynamicSharedBytes = 0;
  std::vector<int> alignBytes;     ///< per argument, >= 1
  std::vector<int> strideMultiple; ///< per argument, >= 1
  int64_t maxRankSize = 0x7fffffff;
  int64_t maxGridY = 65535;
};

/// Checks a spec against the limits and rules of attn/runtime.h: C
/// identifiers (not C keywords; rank and argument names distinct), at most
/// ATTN_RT_MAX_RANKS ranks and task ranks, ATTN_RT_MAX_ARGS arguments (at
/// least one output), ATTN_RT_MAX_NDIM dimensions, rank indices in range,
/// static sizes >= -1, relation factors >= 1, tiledRank -1 or one of
/// taskRanks with tile >= 1, metadata (cu_seqlens: a 1-D int32 input with a
/// bound rank), dtype bits in {8, 16, 32, 64}, requiredIsa in 0..2.
/// addKernelEntry calls it; writeHeader expects specs that pass it.
llvm::Error verifyKernelSpec(const KernelSpec &spec);

/// Adds to `module` (which holds spec.cifaceSymbol) the packed wrapper
/// `<name>_tasks_packed(void **descs, int64_t begin, int64_t end)` (internal),
/// the constant `<name>_kernel` of type attn_rt_kernel (internal; its strings
/// and arrays are private globals; laid out for LP64 as explicit packed
/// structs, so it does not depend on the module's data layout, which must
/// have 64-bit pointers if set) and the external entry
/// `attn_status <name>(const <name>_args *args, const attn_launch *launch)`
/// that calls attn_rt_v1_run (declared if missing). Returns an error if the
/// spec fails verifyKernelSpec, if the ciface symbol is missing or its type
/// is not void(ptr x (1 + args), i64, i64), or if one of the three names is
/// already taken.
llvm::Error addKernelEntry(llvm::Module &module, const KernelSpec &spec);

/// Adds to `module` the CUDA kernel `spec` (deviceType 2): one private
/// constant per cubin (`<name>.cubin.<arch>`, the ptxas ELF image, 16-byte
/// aligned), the descriptor `<name>_kernel` (attn_rt_cuda_kernel: the
/// attn_rt_kernel fields with tasks NULL, then the CUDA fields; laid out for
/// LP64 like addKernelEntry's) and the external entry
/// `attn_status <name>(const <name>_args *, const attn_launch *)` calling
/// attn_rt_v1_run_cuda (declared if missing). The task ranks of `spec` are
/// the grid: tiledRank (tile = rows per block) is x, the others multiply
/// to y. Fails like addKernelEntry, or if the CUDA fields are inconsistent
/// (no function name, no cubin, empty images, per-argument vectors of
/// the wrong length, values < 1, no tiled rank).
llvm::Error addCudaKernelEntry(llvm::Module &module, const KernelSpec &spec,
                               const CudaKernelSpec &cuda);

/// The C header of a library: the runtime ABI (attn/runtime.h, guarded),
/// `#define <LIB>_ABI_VERSION` (<LIB>: libName upper-cased, other characters
/// than [A-Z0-9_] as '_'), and for each kernel its args struct
/// `typedef struct <name>_args { const attn_tensor *<arg>; ... } <name>_args;`
/// and entry point with a doc comment (the cascade text, ranks, relations,
/// each tensor's role, dtype, shape and stride rules, metadata, the ISA).
std::string writeHeader(llvm::StringRef libName,
                        llvm::ArrayRef<KernelSpec> kernels);

/// Writes a GNU static archive at `path` (with a symbol table,
/// deterministic) holding the given object files (name, contents) followed
/// by the runtime object as member runtimeMemberName(). Fails if a name is
/// empty, repeated or equal to runtimeMemberName(), or if the file cannot be
/// written.
llvm::Error writeStaticLibrary(
    llvm::StringRef path,
    llvm::ArrayRef<std::pair<std::string, std::unique_ptr<llvm::MemoryBuffer>>>
        objects);

/// Links a shared library at `path` from the given object files (name,
/// contents; position-independent code) and the runtime object with the C
/// compiler driver `compiler` (a name looked up on PATH, or a path):
///   <compiler> -shared -Wl,-Bsymbolic -o <path> <objects> attn_runtime.o
///              -lpthread -lm
/// The objects are written to a fresh temporary directory, removed
/// afterwards. Fails (with the driver's output) if the driver is not found
/// or fails, or for the same names writeStaticLibrary rejects.
llvm::Error writeSharedLibrary(
    llvm::StringRef path,
    llvm::ArrayRef<std::pair<std::string, std::unique_ptr<llvm::MemoryBuffer>>>
        objects,
    llvm::StringRef compiler);

/// The runtime object compiled into attnc (lib/Runtime/runtime.c).
llvm::StringRef runtimeObject();
/// The archive member name of the runtime object: "attn_runtime.o".
llvm::StringRef runtimeMemberName();
/// The text of attn/runtime.h compiled into attnc.
llvm::StringRef runtimeHeader();

} // namespace attn::emit

#endif // ATTN_EMIT_LIBRARY_H
