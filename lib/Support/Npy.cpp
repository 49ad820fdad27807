//===- Npy.cpp - Reading and writing NumPy .npy files ---------------------===//
//
// This file implements readNpy and writeNpy: a strict parser for the .npy
// header (a Python dict literal) plus conversion of little-endian element
// bytes to and from double. All failures are reported as error strings.
//
//===----------------------------------------------------------------------===//

#include "attn/Support/Npy.h"

#include <cmath>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <system_error>

namespace attn {
namespace {

static_assert(std::numeric_limits<double>::is_iec559 &&
                  std::numeric_limits<float>::is_iec559,
              "IEEE 754 float and double are required");

/// The 6-byte magic string that starts every .npy file.
constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;

/// How the bytes of one element are interpreted.
enum class ElemKind { Float, SignedInt, UnsignedInt, Bool };

/// A supported on-disk element type.
struct DtypeInfo {
  ElemKind kind;
  unsigned size; // bytes per element
};

/// Looks up \p descr among the supported dtypes. Returns false and sets
/// \p err to a reason if it is not supported.
bool lookupDtype(const std::string &descr, DtypeInfo &info, std::string &err) {
  struct Entry {
    const char *name;
    DtypeInfo info;
  };
  static const Entry kTable[] = {
      {"<f8", {ElemKind::Float, 8}},       {"<f4", {ElemKind::Float, 4}},
      {"<f2", {ElemKind::Float, 2}},       {"<i8", {ElemKind::SignedInt, 8}},
      {"<i4", {ElemKind::SignedInt, 4}},   {"<i2", {ElemKind::SignedInt, 2}},
      {"|i1", {ElemKind::SignedInt, 1}},   {"<u8", {ElemKind::UnsignedInt, 8}},
      {"<u4", {ElemKind::UnsignedInt, 4}}, {"<u2", {ElemKind::UnsignedInt, 2}},
      {"|u1", {ElemKind::UnsignedInt, 1}}, {"|b1", {ElemKind::Bool, 1}},
  };
  for (const Entry &e : kTable) {
    if (descr == e.name) {
      info = e.info;
      return true;
    }
  }
  if (!descr.empty() && descr[0] == '>')
    err = "unsupported dtype '" + descr + "': big-endian data is not supported";
  else
    err = "unsupported dtype '" + descr +
          "' (supported: <f8 <f4 <f2 <i8 <i4 <i2 |i1 <u8 <u4 <u2 |u1 |b1)";
  return false;
}

/// Assembles an unsigned little-endian integer from \p n bytes at \p p.
uint64_t loadLittleEndian(const unsigned char *p, unsigned n) {
  uint64_t v = 0;
  for (unsigned i = 0; i < n; ++i)
    v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

/// Stores the low \p n bytes of \p v at \p p in little-endian order.
void storeLittleEndian(uint64_t v, unsigned n, unsigned char *p) {
  for (unsigned i = 0; i < n; ++i)
    p[i] = static_cast<unsigned char>((v >> (8 * i)) & 0xff);
}

/// Converts IEEE 754 binary16 bits to double (exactly; handles subnormals,
/// infinities and NaN).
double halfToDouble(uint16_t h) {
  bool negative = (h >> 15) & 1;
  int exponent = (h >> 10) & 0x1f;
  int mantissa = h & 0x3ff;
  double magnitude;
  if (exponent == 0) // zero or subnormal: mantissa * 2^-24
    magnitude = std::ldexp(static_cast<double>(mantissa), -24);
  else if (exponent == 31) // infinity or NaN
    magnitude = mantissa == 0 ? std::numeric_limits<double>::infinity()
                              : std::numeric_limits<double>::quiet_NaN();
  else // normal: (1024 + mantissa) * 2^(exponent - 15 - 10)
    magnitude = std::ldexp(static_cast<double>(1024 + mantissa), exponent - 25);
  return negative ? -magnitude : magnitude;
}

/// Decodes one element of type \p info from \p p.
double decodeElement(const unsigned char *p, const DtypeInfo &info) {
  uint64_t bits = loadLittleEndian(p, info.size);
  switch (info.kind) {
  case ElemKind::Bool:
    return bits != 0 ? 1.0 : 0.0;
  case ElemKind::UnsignedInt:
    return static_cast<double>(bits);
  case ElemKind::SignedInt: {
    // Sign-extend from info.size bytes.
    unsigned shift = 64 - 8 * info.size;
    int64_t value = static_cast<int64_t>(bits << shift) >> shift;
    return static_cast<double>(value);
  }
  case ElemKind::Float:
    if (info.size == 2)
      return halfToDouble(static_cast<uint16_t>(bits));
    if (info.size == 4) {
      uint32_t b32 = static_cast<uint32_t>(bits);
      float f;
      std::memcpy(&f, &b32, sizeof(f));
      return static_cast<double>(f);
    }
    double d;
    std::memcpy(&d, &bits, sizeof(d));
    return d;
  }
  return 0.0;
}

/// A recursive-descent parser for the restricted Python dict literal used as
/// the .npy header, e.g. {'descr': '<f4', 'fortran_order': False,
/// 'shape': (2, 3), }.
class HeaderParser {
public:
  explicit HeaderParser(const std::string &text) : text(text) {}

  /// Parses the whole header. Returns an empty string on success.
  std::string parse(std::string &descr, bool &fortranOrder,
                    std::vector<int64_t> &shape) {
    bool haveDescr = false, haveFortran = false, haveShape = false;
    skipSpace();
    if (!consume('{'))
      return error("expected '{' at the start of the header dict");
    skipSpace();
    while (!consume('}')) {
      std::string key;
      if (!parseString(key))
        return error("expected a quoted key");
      skipSpace();
      if (!consume(':'))
        return error("expected ':' after key '" + key + "'");
      skipSpace();
      if (key == "descr") {
        if (haveDescr)
          return error("duplicate key 'descr'");
        haveDescr = true;
        if (peek() == '[')
          return error("structured dtypes (descr is a list) are not supported");
        if (!parseString(descr))
          return error("expected a quoted string for 'descr'");
      } else if (key == "fortran_order") {
        if (haveFortran)
          return error("duplicate key 'fortran_order'");
        haveFortran = true;
        if (!parseBool(fortranOrder))
          return error("expected True or False for 'fortran_order'");
      } else if (key == "shape") {
        if (haveShape)
          return error("duplicate key 'shape'");
        haveShape = true;
        std::string err = parseShape(shape);
        if (!err.empty())
          return err;
      } else {
        return error("unexpected key '" + key + "'");
      }
      skipSpace();
      if (consume(',')) {
        skipSpace();
        continue;
      }
      skipSpace();
      if (!consume('}'))
        return error("expected ',' or '}' after the value of '" + key + "'");
      break;
    }
    skipSpace();
    if (pos != text.size())
      return error("unexpected trailing characters after the header dict");
    if (!haveDescr)
      return error("missing key 'descr'");
    if (!haveFortran)
      return error("missing key 'fortran_order'");
    if (!haveShape)
      return error("missing key 'shape'");
    return "";
  }

private:
  const std::string &text;
  size_t pos = 0;

  std::string error(const std::string &msg) const {
    return "header parse error at offset " + std::to_string(pos) + ": " + msg;
  }

  char peek() const { return pos < text.size() ? text[pos] : '\0'; }

  bool consume(char c) {
    if (peek() != c || pos >= text.size())
      return false;
    ++pos;
    return true;
  }

  void skipSpace() {
    while (pos < text.size() && (text[pos] == ' ' || text[pos] == '\t' ||
                                 text[pos] == '\n' || text[pos] == '\r'))
      ++pos;
  }

  /// Parses a single- or double-quoted string (backslash escapes the next
  /// character).
  bool parseString(std::string &out) {
    char quote = peek();
    if (quote != '\'' && quote != '"')
      return false;
    size_t p = pos + 1;
    std::string value;
    while (p < text.size() && text[p] != quote) {
      if (text[p] == '\\') {
        if (++p >= text.size())
          return false;
      }
      value += text[p++];
    }
    if (p >= text.size())
      return false; // unterminated
    pos = p + 1;
    out = value;
    return true;
  }

  bool parseBool(bool &out) {
    if (text.compare(pos, 4, "True") == 0) {
      pos += 4;
      out = true;
      return true;
    }
    if (text.compare(pos, 5, "False") == 0) {
      pos += 5;
      out = false;
      return true;
    }
    return false;
  }

  /// Parses a tuple of non-negative integers such as (), (3,) or (2, 3).
  /// Accepts an optional Python 2 'L' suffix on each integer.
  std::string parseShape(std::vector<int64_t> &shape) {
    shape.clear();
    if (!consume('('))
      return error("expected a tuple for 'shape'");
    skipSpace();
    size_t count = 0;
    bool trailingComma = false;
    while (!consume(')')) {
      if (peek() == '-')
        return error("negative dimension in 'shape'");
      if (peek() < '0' || peek() > '9')
        return error("expected a non-negative integer in 'shape'");
      int64_t dim = 0;
      while (peek() >= '0' && peek() <= '9') {
        int digit = peek() - '0';
        if (dim > (std::numeric_limits<int64_t>::max() - digit) / 10)
          return error("dimension in 'shape' is too large");
        dim = dim * 10 + digit;
        ++pos;
      }
      consume('L');
      shape.push_back(dim);
      ++count;
      skipSpace();
      trailingComma = consume(',');
      skipSpace();
      if (!trailingComma) {
        if (!consume(')'))
          return error("expected ',' or ')' in 'shape'");
        break;
      }
    }
    // In Python "(3)" is an int, not a tuple.
    if (count == 1 && !trailingComma)
      return error("'shape' must be a tuple; a 1-d shape needs a trailing "
                   "comma, e.g. (3,)");
    return "";
  }
};

/// Returns the product of \p shape, or -1 if it (times \p itemSize)
/// overflows int64_t.
int64_t checkedNumElements(const std::vector<int64_t> &shape,
                           int64_t itemSize) {
  const int64_t limit = std::numeric_limits<int64_t>::max() / itemSize;
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0)
      return -1;
    if (d == 0)
      return 0; // a zero dimension makes the array empty, whatever follows
    if (n > limit / d)
      n = -2; // remember the overflow but keep looking for a zero dim
    else if (n >= 0)
      n *= d;
  }
  return n < 0 ? -1 : n;
}

/// Formats \p shape as a Python tuple: (), (3,), (2, 3).
std::string formatShape(const std::vector<int64_t> &shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i)
      s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1)
    s += ",";
  return s + ")";
}

/// Formats \p v for error messages with full precision.
std::string formatDouble(double v) {
  std::ostringstream os;
  os.precision(17);
  os << v;
  return os.str();
}

std::string readNpyImpl(const std::string &path, NpyArray &out) {
  auto fail = [&](const std::string &msg) {
    return "npy file '" + path + "': " + msg;
  };

  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    return fail("is a directory, not a file");
  std::ifstream in(path, std::ios::binary);
  if (!in.is_open())
    return fail("cannot open for reading (missing file or no permission)");
  std::vector<unsigned char> bytes;
  {
    char chunk[1 << 16];
    while (in.read(chunk, sizeof(chunk)) || in.gcount() > 0) {
      bytes.insert(bytes.end(), chunk, chunk + in.gcount());
      if (in.eof())
        break;
    }
    if (in.bad())
      return fail("I/O error while reading");
  }

  // Magic string and version.
  if (bytes.size() < kMagicLen + 2) {
    if (bytes.size() < kMagicLen ||
        std::memcmp(bytes.data(), kMagic, kMagicLen) != 0)
      return fail("bad magic: not a .npy file (file is only " +
                  std::to_string(bytes.size()) + " bytes)");
    return fail("truncated: file ends inside the version field");
  }
  if (std::memcmp(bytes.data(), kMagic, kMagicLen) != 0)
    return fail("bad magic: not a .npy file (expected \\x93NUMPY)");
  unsigned major = bytes[6], minor = bytes[7];
  if (!((major == 1 || major == 2 || major == 3) && minor == 0))
    return fail("unsupported format version " + std::to_string(major) + "." +
                std::to_string(minor) + " (supported: 1.0, 2.0, 3.0)");

  // Header length: uint16 for 1.0, uint32 for 2.0 and 3.0.
  size_t lenBytes = major == 1 ? 2 : 4;
  size_t prefix = kMagicLen + 2 + lenBytes;
  if (bytes.size() < prefix)
    return fail("truncated: file ends inside the header length field");
  uint64_t headerLen = loadLittleEndian(bytes.data() + kMagicLen + 2,
                                        static_cast<unsigned>(lenBytes));
  if (headerLen > bytes.size() - prefix)
    return fail("truncated: header declares " + std::to_string(headerLen) +
                " bytes but only " + std::to_string(bytes.size() - prefix) +
                " remain");
  std::string header(reinterpret_cast<const char *>(bytes.data()) + prefix,
                     static_cast<size_t>(headerLen));

  std::string descr;
  bool fortranOrder = false;
  std::vector<int64_t> shape;
  std::string err = HeaderParser(header).parse(descr, fortranOrder, shape);
  if (!err.empty())
    return fail(err);
  if (fortranOrder)
    return fail("fortran_order True (column-major) arrays are not supported");
  DtypeInfo info;
  if (!lookupDtype(descr, info, err))
    return fail(err);

  int64_t numElements = checkedNumElements(shape, info.size);
  if (numElements < 0)
    return fail("shape " + formatShape(shape) + " is too large");
  uint64_t dataBytes = static_cast<uint64_t>(numElements) * info.size;
  uint64_t available = bytes.size() - prefix - headerLen;
  if (available < dataBytes)
    return fail("truncated data: shape " + formatShape(shape) + " of " + descr +
                " needs " + std::to_string(dataBytes) + " bytes but only " +
                std::to_string(available) + " remain");
  if (available > dataBytes)
    return fail("data size mismatch: shape " + formatShape(shape) + " of " +
                descr + " needs " + std::to_string(dataBytes) + " bytes but " +
                std::to_string(available) + " follow the header");

  std::vector<double> data(static_cast<size_t>(numElements));
  const unsigned char *p = bytes.data() + prefix + headerLen;
  for (size_t i = 0; i < data.size(); ++i, p += info.size)
    data[i] = decodeElement(p, info);

  out.shape = std::move(shape);
  out.data = std::move(data);
  out.dtype = std::move(descr);
  return "";
}

std::string writeNpyImpl(const std::string &path,
                         const std::vector<int64_t> &shape,
                         const std::vector<double> &data,
                         const std::string &dtype) {
  auto fail = [&](const std::string &msg) {
    return "npy file '" + path + "': " + msg;
  };

  unsigned itemSize;
  if (dtype == "<f8" || dtype == "<i8")
    itemSize = 8;
  else if (dtype == "<f4" || dtype == "<i4")
    itemSize = 4;
  else
    return fail("unsupported dtype '" + dtype +
                "' for writing (supported: <f8 <f4 <i4 <i8)");

  for (size_t i = 0; i < shape.size(); ++i)
    if (shape[i] < 0)
      return fail("negative dimension " + std::to_string(shape[i]) +
                  " at index " + std::to_string(i) + " of shape");
  int64_t numElements = checkedNumElements(shape, itemSize);
  if (numElements < 0)
    return fail("shape " + formatShape(shape) + " is too large");
  if (static_cast<uint64_t>(numElements) != data.size())
    return fail("data size mismatch: shape " + formatShape(shape) + " has " +
                std::to_string(numElements) + " elements but " +
                std::to_string(data.size()) + " values were given");

  // Encode the elements first so that invalid values leave no file behind.
  std::vector<unsigned char> payload(data.size() * itemSize);
  bool isInt = dtype[1] == 'i';
  for (size_t i = 0; i < data.size(); ++i) {
    double v = data[i];
    uint64_t bits;
    if (isInt) {
      // The range is [-2^(w-1), 2^(w-1)), both bounds exact in double.
      double bound = std::ldexp(1.0, 8 * itemSize - 1);
      if (!std::isfinite(v) || v != std::trunc(v) || v < -bound || v >= bound)
        return fail("value " + formatDouble(v) + " at index " +
                    std::to_string(i) + " is not representable as " + dtype);
      bits = static_cast<uint64_t>(static_cast<int64_t>(v));
    } else if (itemSize == 4) {
      float f = static_cast<float>(v);
      uint32_t b32;
      std::memcpy(&b32, &f, sizeof(f));
      bits = b32;
    } else {
      std::memcpy(&bits, &v, sizeof(v));
    }
    storeLittleEndian(bits, itemSize, payload.data() + i * itemSize);
  }

  // Header dict, padded with spaces and terminated by '\n' so that the data
  // starts at a multiple of 64 bytes.
  std::string dict =
      "{'descr': '" + dtype +
      "', 'fortran_order': False, 'shape': " + formatShape(shape) + ", }";
  unsigned major = 1;
  size_t prefix = kMagicLen + 2 + 2;
  auto paddedLen = [&](size_t pre) {
    size_t total = pre + dict.size() + 1;
    return (total + 63) / 64 * 64 - pre;
  };
  size_t headerLen = paddedLen(prefix);
  if (headerLen > 0xffff) {
    major = 2;
    prefix = kMagicLen + 2 + 4;
    headerLen = paddedLen(prefix);
    if (headerLen > 0xffffffffu)
      return fail("header is too large");
  }
  std::string header = dict;
  header.append(headerLen - dict.size() - 1, ' ');
  header += '\n';

  std::vector<unsigned char> head(prefix);
  std::memcpy(head.data(), kMagic, kMagicLen);
  head[6] = static_cast<unsigned char>(major);
  head[7] = 0;
  storeLittleEndian(headerLen, major == 1 ? 2 : 4, head.data() + 8);

  std::ofstream os(path, std::ios::binary | std::ios::trunc);
  if (!os.is_open())
    return fail("cannot open for writing");
  os.write(reinterpret_cast<const char *>(head.data()),
           static_cast<std::streamsize>(head.size()));
  os.write(header.data(), static_cast<std::streamsize>(header.size()));
  os.write(reinterpret_cast<const char *>(payload.data()),
           static_cast<std::streamsize>(payload.size()));
  os.close();
  if (os.fail())
    return fail("I/O error while writing");
  return "";
}

} // namespace

std::string readNpy(const std::string &path, NpyArray &out) {
  try {
    return readNpyImpl(path, out);
  } catch (const std::exception &e) {
    return "npy file '" + path + "': unexpected error: " + e.what();
  } catch (...) {
    return "npy file '" + path + "': unexpected unknown error";
  }
}

std::string writeNpy(const std::string &path, const std::vector<int64_t> &shape,
                     const std::vector<double> &data,
                     const std::string &dtype) {
  try {
    return writeNpyImpl(path, shape, data, dtype);
  } catch (const std::exception &e) {
    return "npy file '" + path + "': unexpected error: " + e.what();
  } catch (...) {
    return "npy file '" + path + "': unexpected unknown error";
  }
}

} // namespace attn
