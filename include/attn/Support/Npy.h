//===- Npy.h - Reading and writing NumPy .npy files -------------*- C++ -*-===//
//
// This file declares a small, dependency-free reader and writer for NumPy's
// .npy array format (versions 1.0, 2.0 and 3.0). Element values are exchanged
// as float64 regardless of the on-disk dtype.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_SUPPORT_NPY_H
#define ATTN_SUPPORT_NPY_H

#include <cstdint>
#include <string>
#include <vector>

namespace attn {

/// An n-dimensional array loaded from (or destined for) a .npy file.
struct NpyArray {
  /// Dimension sizes; empty for a 0-d (scalar) array.
  std::vector<int64_t> shape;
  /// Elements in row-major (C) order, converted to double.
  std::vector<double> data;
  /// The numpy dtype descriptor exactly as read from the header, e.g. "<f4".
  std::string dtype;
};

/// Reads the .npy file at \p path into \p out.
///
/// Supported: format versions 1.0, 2.0 and 3.0; C order only
/// (fortran_order False); little-endian dtypes <f8 <f4 <f2 <i8 <i4 <i2 |i1
/// <u8 <u4 <u2 |u1 |b1. Returns an empty string on success, otherwise a
/// human-readable error message naming the file. Never throws, aborts or
/// prints. On failure \p out is left unchanged.
std::string readNpy(const std::string &path, NpyArray &out);

/// Writes \p data with \p shape to the .npy file at \p path using dtype
/// \p dtype, which must be one of "<f8", "<f4", "<i4", "<i8".
///
/// For integer dtypes every value must be an integer representable in the
/// target type. Writes a version 1.0 header when possible (2.0 otherwise),
/// padded so that the data starts at a multiple of 64 bytes. Returns an
/// empty string on success, otherwise a human-readable error message naming
/// the file. Never throws, aborts or prints.
std::string writeNpy(const std::string &path, const std::vector<int64_t> &shape,
                     const std::vector<double> &data,
                     const std::string &dtype = "<f8");

} // namespace attn

#endif // ATTN_SUPPORT_NPY_H
