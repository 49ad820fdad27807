//===- NpyTest.cpp - Tests for the .npy reader and writer -----------------===//
//
// This file implements unit tests for attn::readNpy and attn::writeNpy:
// round trips of every writable dtype, hand-crafted files for each readable
// dtype and header version, and every error path.
//
//===----------------------------------------------------------------------===//

#include "attn/Support/Npy.h"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

/// A uniquely named directory under the system temp dir, removed on
/// destruction.
class TempDir {
public:
  TempDir() {
    static std::atomic<unsigned> counter{0};
    std::random_device rd;
    auto stamp = std::chrono::steady_clock::now().time_since_epoch().count();
    for (int attempt = 0; attempt < 100; ++attempt) {
      fs::path candidate =
          fs::temp_directory_path() /
          ("attn-npy-test-" + std::to_string(stamp) + "-" +
           std::to_string(rd()) + "-" + std::to_string(counter++));
      std::error_code ec;
      if (fs::create_directory(candidate, ec)) {
        dir = candidate;
        return;
      }
    }
    FAIL("could not create a temporary directory");
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  TempDir(const TempDir &) = delete;
  TempDir &operator=(const TempDir &) = delete;

  /// Returns the path of \p name inside the directory.
  std::string file(const std::string &name) const {
    return (dir / name).string();
  }

private:
  fs::path dir;
};

/// Writes \p bytes verbatim to \p path.
void writeBytes(const std::string &path, const std::vector<uint8_t> &bytes) {
  std::ofstream os(path, std::ios::binary | std::ios::trunc);
  REQUIRE(os.is_open());
  os.write(reinterpret_cast<const char *>(bytes.data()),
           static_cast<std::streamsize>(bytes.size()));
  REQUIRE(os.good());
}

/// Reads all bytes of \p path.
std::vector<uint8_t> readBytes(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.is_open());
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

/// Builds a .npy file image by hand: magic, version \p major.0, header length
/// (2 bytes for 1.0, 4 bytes otherwise), \p dict padded with spaces plus a
/// newline to a 64-byte boundary, then \p payload.
std::vector<uint8_t> makeNpy(unsigned major, const std::string &dict,
                             const std::vector<uint8_t> &payload) {
  size_t prefix = major == 1 ? 10 : 12;
  size_t total = (prefix + dict.size() + 1 + 63) / 64 * 64;
  std::string header =
      dict + std::string(total - prefix - dict.size() - 1, ' ') + "\n";
  std::vector<uint8_t> bytes = {
      0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<uint8_t>(major), 0};
  size_t len = header.size();
  bytes.push_back(static_cast<uint8_t>(len & 0xff));
  bytes.push_back(static_cast<uint8_t>((len >> 8) & 0xff));
  if (major != 1) {
    bytes.push_back(static_cast<uint8_t>((len >> 16) & 0xff));
    bytes.push_back(static_cast<uint8_t>((len >> 24) & 0xff));
  }
  bytes.insert(bytes.end(), header.begin(), header.end());
  bytes.insert(bytes.end(), payload.begin(), payload.end());
  return bytes;
}

/// Little-endian bytes of the low \p n bytes of \p v.
std::vector<uint8_t> le(uint64_t v, unsigned n) {
  std::vector<uint8_t> out;
  for (unsigned i = 0; i < n; ++i)
    out.push_back(static_cast<uint8_t>((v >> (8 * i)) & 0xff));
  return out;
}

/// Concatenates little-endian encodings of \p values, \p n bytes each.
std::vector<uint8_t> leAll(const std::vector<uint64_t> &values, unsigned n) {
  std::vector<uint8_t> out;
  for (uint64_t v : values) {
    std::vector<uint8_t> b = le(v, n);
    out.insert(out.end(), b.begin(), b.end());
  }
  return out;
}

/// Writes with writeNpy, reads back with readNpy and checks shape, dtype and
/// that every value comes back as \p expected.
void checkRoundTrip(const TempDir &tmp, const std::vector<int64_t> &shape,
                    const std::vector<double> &data, const std::string &dtype,
                    const std::vector<double> &expected) {
  std::string path = tmp.file("rt.npy");
  REQUIRE(attn::writeNpy(path, shape, data, dtype) == "");
  attn::NpyArray arr;
  REQUIRE(attn::readNpy(path, arr) == "");
  CHECK(arr.shape == shape);
  CHECK(arr.dtype == dtype);
  REQUIRE(arr.data.size() == expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    INFO("index " << i);
    CHECK(arr.data[i] == expected[i]);
  }
}

/// Returns the values 0.5 * i - 7 for i in [0, n), exactly representable in
/// float32.
std::vector<double> ramp(size_t n) {
  std::vector<double> v(n);
  for (size_t i = 0; i < n; ++i)
    v[i] = 0.5 * static_cast<double>(i) - 7.0;
  return v;
}

/// Returns the integers 3 * i - 40 for i in [0, n).
std::vector<double> intRamp(size_t n) {
  std::vector<double> v(n);
  for (size_t i = 0; i < n; ++i)
    v[i] = 3.0 * static_cast<double>(i) - 40.0;
  return v;
}

} // namespace

TEST_CASE("npy round trip <f8", "[npy]") {
  TempDir tmp;
  checkRoundTrip(tmp, {}, {3.141592653589793}, "<f8", {3.141592653589793});
  checkRoundTrip(tmp, {0, 3}, {}, "<f8", {});
  std::vector<double> v = ramp(30);
  v[1] = 0.1;
  v[2] = -1e300;
  v[3] = std::numeric_limits<double>::denorm_min();
  v[4] = std::numeric_limits<double>::infinity();
  checkRoundTrip(tmp, {2, 3, 5}, v, "<f8", v);
  checkRoundTrip(tmp, {7}, ramp(7), "<f8", ramp(7));
  // The default dtype is <f8.
  std::string path = tmp.file("default.npy");
  REQUIRE(attn::writeNpy(path, {2}, {1.5, 2.5}) == "");
  attn::NpyArray arr;
  REQUIRE(attn::readNpy(path, arr) == "");
  CHECK(arr.dtype == "<f8");
}

TEST_CASE("npy round trip <f4", "[npy]") {
  TempDir tmp;
  checkRoundTrip(tmp, {}, {-2.25}, "<f4", {-2.25});
  checkRoundTrip(tmp, {0, 3}, {}, "<f4", {});
  checkRoundTrip(tmp, {2, 3, 5}, ramp(30), "<f4", ramp(30));
  // Values are rounded to float32 on write.
  checkRoundTrip(tmp, {2}, {0.1, 1.0 / 3.0}, "<f4",
                 {static_cast<double>(0.1f), static_cast<double>(1.0f / 3.0f)});
}

TEST_CASE("npy round trip <i4", "[npy]") {
  TempDir tmp;
  checkRoundTrip(tmp, {}, {-17}, "<i4", {-17});
  checkRoundTrip(tmp, {0, 3}, {}, "<i4", {});
  checkRoundTrip(tmp, {2, 3, 5}, intRamp(30), "<i4", intRamp(30));
  checkRoundTrip(tmp, {2}, {-2147483648.0, 2147483647.0}, "<i4",
                 {-2147483648.0, 2147483647.0});
}

TEST_CASE("npy round trip <i8", "[npy]") {
  TempDir tmp;
  checkRoundTrip(tmp, {}, {123456789012.0}, "<i8", {123456789012.0});
  checkRoundTrip(tmp, {0, 3}, {}, "<i8", {});
  checkRoundTrip(tmp, {2, 3, 5}, intRamp(30), "<i8", intRamp(30));
  double big = std::ldexp(1.0, 62);
  checkRoundTrip(tmp, {3}, {-std::ldexp(1.0, 63), big, 9007199254740993.0},
                 "<i8", {-std::ldexp(1.0, 63), big, 9007199254740993.0});
}

TEST_CASE("npy writer layout", "[npy]") {
  TempDir tmp;
  std::string path = tmp.file("layout.npy");
  REQUIRE(attn::writeNpy(path, {2, 3}, ramp(6), "<f4") == "");
  std::vector<uint8_t> bytes = readBytes(path);
  REQUIRE(bytes.size() > 10);
  CHECK(bytes[0] == 0x93);
  CHECK(std::string(bytes.begin() + 1, bytes.begin() + 6) == "NUMPY");
  CHECK(bytes[6] == 1);
  CHECK(bytes[7] == 0);
  size_t headerLen = bytes[8] | (bytes[9] << 8);
  CHECK((10 + headerLen) % 64 == 0);
  CHECK(bytes.size() == 10 + headerLen + 6 * 4);
  std::string header(bytes.begin() + 10, bytes.begin() + 10 + headerLen);
  CHECK(header.back() == '\n');
  CHECK_THAT(header, Contains("'descr': '<f4'"));
  CHECK_THAT(header, Contains("'fortran_order': False"));
  CHECK_THAT(header, Contains("'shape': (2, 3)"));

  // 1-d shapes are written with a trailing comma, 0-d as ().
  REQUIRE(attn::writeNpy(path, {4}, ramp(4)) == "");
  bytes = readBytes(path);
  CHECK_THAT(std::string(bytes.begin(), bytes.end()), Contains("(4,)"));
  REQUIRE(attn::writeNpy(path, {}, {1.0}) == "");
  bytes = readBytes(path);
  CHECK_THAT(std::string(bytes.begin(), bytes.end()), Contains("'shape': ()"));
}

TEST_CASE("npy read hand-crafted v1.0 <f2", "[npy]") {
  TempDir tmp;
  std::string path = tmp.file("half.npy");
  // 1.0, -2.0, 0.5, 65504 (max), 2^-24 (min subnormal), -0.0, +inf, NaN.
  writeBytes(path, makeNpy(1,
                           "{'descr': '<f2', 'fortran_order': False, "
                           "'shape': (2, 4), }",
                           leAll({0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001,
                                  0x8000, 0x7c00, 0x7e00},
                                 2)));
  attn::NpyArray arr;
  REQUIRE(attn::readNpy(path, arr) == "");
  CHECK(arr.dtype == "<f2");
  CHECK(arr.shape == std::vector<int64_t>{2, 4});
  REQUIRE(arr.data.size() == 8);
  CHECK(arr.data[0] == 1.0);
  CHECK(arr.data[1] == -2.0);
  CHECK(arr.data[2] == 0.5);
  CHECK(arr.data[3] == 65504.0);
  CHECK(arr.data[4] == std::ldexp(1.0, -24));
  CHECK(arr.data[5] == 0.0);
  CHECK(std::signbit(arr.data[5]));
  CHECK(arr.data[6] == std::numeric_limits<double>::infinity());
  CHECK(std::isnan(arr.data[7]));
}

TEST_CASE("npy read hand-crafted v2.0 |i1", "[npy]") {
  TempDir tmp;
  std::string path = tmp.file("i1.npy");
  writeBytes(path, makeNpy(2,
                           "{'descr': '|i1', 'fortran_order': False, "
                           "'shape': (2, 2), }",
                           {0x80, 0xff, 0x00, 0x7f}));
  attn::NpyArray arr;
  REQUIRE(attn::readNpy(path, arr) == "");
  CHECK(arr.dtype == "|i1");
  CHECK(arr.shape == std::vector<int64_t>{2, 2});
  CHECK(arr.data == std::vector<double>{-128, -1, 0, 127});
}

TEST_CASE("npy read every supported dtype", "[npy]") {
  TempDir tmp;
  std::string path = tmp.file("dtype.npy");
  struct Case {
    std::string descr;
    std::vector<uint8_t> payload;
    std::vector<double> expected;
  };
  std::vector<Case> cases = {
      {"<f8",
       leAll({0x3ff0000000000000ull, 0xc004000000000000ull}, 8),
       {1.0, -2.5}},
      {"<f4", leAll({0x3f800000u, 0xc0200000u}, 4), {1.0, -2.5}},
      {"<f2", leAll({0x3c00, 0xc100}, 2), {1.0, -2.5}},
      {"<i8",
       leAll({0xfffffffffffffffeull, 0x7fffffffffffffffull}, 8),
       {-2.0, 9223372036854775807.0}},
      {"<i4",
       leAll({0x80000000u, 0x7fffffffu}, 4),
       {-2147483648.0, 2147483647.0}},
      {"<i2", leAll({0x8000, 0x7fff}, 2), {-32768.0, 32767.0}},
      {"|i1", {0xfe, 0x05}, {-2.0, 5.0}},
      {"<u8",
       leAll({0xffffffffffffffffull, 3}, 8),
       {18446744073709551615.0, 3.0}},
      {"<u4", leAll({0xffffffffu, 7}, 4), {4294967295.0, 7.0}},
      {"<u2", leAll({0xffff, 9}, 2), {65535.0, 9.0}},
      {"|u1", {0xff, 0x01}, {255.0, 1.0}},
      {"|b1", {0x01, 0x00}, {1.0, 0.0}},
  };
  for (const Case &c : cases) {
    INFO("dtype " << c.descr);
    for (unsigned major : {1u, 2u, 3u}) {
      INFO("version " << major << ".0");
      writeBytes(path, makeNpy(major,
                               "{'descr': '" + c.descr +
                                   "', 'fortran_order': False, "
                                   "'shape': (2,), }",
                               c.payload));
      attn::NpyArray arr;
      REQUIRE(attn::readNpy(path, arr) == "");
      CHECK(arr.dtype == c.descr);
      CHECK(arr.shape == std::vector<int64_t>{2});
      CHECK(arr.data == c.expected);
    }
  }
}

TEST_CASE("npy header syntax variants", "[npy]") {
  TempDir tmp;
  std::string path = tmp.file("variants.npy");
  std::vector<uint8_t> payload = leAll({1, 2, 3}, 4);
  const std::vector<std::string> dicts = {
      // Double quotes, keys in another order, no trailing comma.
      "{\"shape\": (3,), \"fortran_order\": False, \"descr\": \"<i4\"}",
      // Python 2 long suffix and extra spaces.
      "{ 'descr' : '<i4' , 'fortran_order' : False , 'shape' : ( 3L , ) , }",
      // Tight spacing.
      "{'descr':'<i4','fortran_order':False,'shape':(3,)}",
  };
  for (const std::string &dict : dicts) {
    INFO(dict);
    writeBytes(path, makeNpy(1, dict, payload));
    attn::NpyArray arr;
    REQUIRE(attn::readNpy(path, arr) == "");
    CHECK(arr.shape == std::vector<int64_t>{3});
    CHECK(arr.data == std::vector<double>{1, 2, 3});
  }
}

TEST_CASE("npy read 0-d and zero-size arrays", "[npy]") {
  TempDir tmp;
  std::string path = tmp.file("small.npy");
  writeBytes(path, makeNpy(1,
                           "{'descr': '<i2', 'fortran_order': False, "
                           "'shape': (), }",
                           le(0xfff9, 2)));
  attn::NpyArray arr;
  REQUIRE(attn::readNpy(path, arr) == "");
  CHECK(arr.shape.empty());
  CHECK(arr.data == std::vector<double>{-7.0});

  writeBytes(path, makeNpy(1,
                           "{'descr': '<f8', 'fortran_order': False, "
                           "'shape': (3, 0, 4), }",
                           {}));
  REQUIRE(attn::readNpy(path, arr) == "");
  CHECK(arr.shape == std::vector<int64_t>{3, 0, 4});
  CHECK(arr.data.empty());
}

TEST_CASE("npy read errors", "[npy]") {
  TempDir tmp;
  std::string path = tmp.file("bad.npy");
  const std::string goodDict =
      "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }";
  const std::vector<uint8_t> goodPayload = leAll({0, 0}, 8);

  // Reads \p bytes from a file and returns the error, checking that it names
  // the file and that the output array is untouched.
  auto readError = [&](const std::vector<uint8_t> &bytes) {
    writeBytes(path, bytes);
    attn::NpyArray arr;
    arr.dtype = "sentinel";
    std::string err = attn::readNpy(path, arr);
    CHECK_THAT(err, Contains(path));
    CHECK(arr.dtype == "sentinel");
    CHECK(arr.shape.empty());
    CHECK(arr.data.empty());
    return err;
  };

  SECTION("missing file") {
    attn::NpyArray arr;
    std::string missing = tmp.file("does-not-exist.npy");
    std::string err = attn::readNpy(missing, arr);
    CHECK_THAT(err, Contains("cannot open"));
    CHECK_THAT(err, Contains(missing));
  }
  SECTION("directory") {
    attn::NpyArray arr;
    std::string dir = tmp.file("subdir");
    fs::create_directory(dir);
    CHECK_THAT(attn::readNpy(dir, arr), Contains("directory"));
  }
  SECTION("empty file") { CHECK_THAT(readError({}), Contains("magic")); }
  SECTION("bad magic") {
    std::vector<uint8_t> bytes = makeNpy(1, goodDict, goodPayload);
    bytes[1] = 'X';
    CHECK_THAT(readError(bytes), Contains("magic"));
  }
  SECTION("truncated version") {
    CHECK_THAT(readError({0x93, 'N', 'U', 'M', 'P', 'Y', 1}),
               Contains("truncated"));
  }
  SECTION("unsupported version") {
    std::vector<uint8_t> bytes = makeNpy(2, goodDict, goodPayload);
    bytes[6] = 4;
    CHECK_THAT(readError(bytes), Contains("version 4.0"));
    bytes[6] = 1;
    bytes[7] = 1;
    CHECK_THAT(readError(bytes), Contains("version 1.1"));
  }
  SECTION("truncated header length") {
    CHECK_THAT(readError({0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0, 0x40, 0}),
               Contains("truncated"));
  }
  SECTION("truncated header") {
    std::vector<uint8_t> bytes = makeNpy(1, goodDict, {});
    bytes.resize(bytes.size() - 5);
    CHECK_THAT(readError(bytes), Contains("truncated"));
  }
  SECTION("truncated data") {
    std::vector<uint8_t> bytes = makeNpy(1, goodDict, goodPayload);
    bytes.pop_back();
    std::string err = readError(bytes);
    CHECK_THAT(err, Contains("truncated"));
    CHECK_THAT(err, Contains("16 bytes"));
  }
  SECTION("trailing data") {
    std::vector<uint8_t> payload = goodPayload;
    payload.push_back(0);
    CHECK_THAT(readError(makeNpy(1, goodDict, payload)), Contains("mismatch"));
  }
  SECTION("fortran order") {
    CHECK_THAT(readError(makeNpy(1,
                                 "{'descr': '<f8', 'fortran_order': True, "
                                 "'shape': (2,), }",
                                 goodPayload)),
               Contains("fortran"));
  }
  SECTION("unsupported dtype") {
    std::string err = readError(
        makeNpy(1, "{'descr': '<c16', 'fortran_order': False, 'shape': (2,), }",
                leAll({0, 0, 0, 0}, 8)));
    CHECK_THAT(err, Contains("unsupported dtype"));
    CHECK_THAT(err, Contains("<c16"));
  }
  SECTION("big-endian dtype") {
    CHECK_THAT(readError(makeNpy(1,
                                 "{'descr': '>f8', 'fortran_order': False, "
                                 "'shape': (2,), }",
                                 goodPayload)),
               Contains("big-endian"));
  }
  SECTION("structured dtype") {
    CHECK_THAT(readError(makeNpy(1,
                                 "{'descr': [('a', '<f8')], "
                                 "'fortran_order': False, 'shape': (2,), }",
                                 goodPayload)),
               Contains("structured"));
  }
  SECTION("header parse errors") {
    const std::vector<std::string> badDicts = {
        "not a dict",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2,)",
        "{'descr': '<f8' 'fortran_order': False, 'shape': (2,)}",
        "{'descr': <f8, 'fortran_order': False, 'shape': (2,)}",
        "{'descr': '<f8, 'fortran_order': False, 'shape': (2,)}",
        "{'descr': '<f8', 'fortran_order': false, 'shape': (2,)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': [2]}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (-2,)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2.0,)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2,)} junk",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), 'x': 1}",
        "{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, "
        "'shape': (2,)}",
        "{'descr': '<f8', 'fortran_order': False, "
        "'shape': (99999999999999999999,)}",
    };
    for (const std::string &dict : badDicts) {
      INFO(dict);
      CHECK_THAT(readError(makeNpy(1, dict, goodPayload)),
                 Contains("header parse error"));
    }
  }
  SECTION("missing keys") {
    CHECK_THAT(readError(makeNpy(1, "{'descr': '<f8', 'fortran_order': False}",
                                 goodPayload)),
               Contains("missing key 'shape'"));
    CHECK_THAT(
        readError(makeNpy(1, "{'descr': '<f8', 'shape': (2,)}", goodPayload)),
        Contains("missing key 'fortran_order'"));
    CHECK_THAT(readError(makeNpy(1, "{'fortran_order': False, 'shape': (2,)}",
                                 goodPayload)),
               Contains("missing key 'descr'"));
  }
  SECTION("shape too large") {
    CHECK_THAT(readError(makeNpy(1,
                                 "{'descr': '<f8', 'fortran_order': False, "
                                 "'shape': (4294967296, 4294967296), }",
                                 goodPayload)),
               Contains("too large"));
  }
}

TEST_CASE("npy write errors", "[npy]") {
  TempDir tmp;
  std::string path = tmp.file("out.npy");

  // Returns the error of writeNpy, checking that it names the file and that
  // no file was created.
  auto writeError = [&](const std::vector<int64_t> &shape,
                        const std::vector<double> &data,
                        const std::string &dtype) {
    std::string err = attn::writeNpy(path, shape, data, dtype);
    CHECK_THAT(err, Contains(path));
    CHECK_FALSE(fs::exists(path));
    return err;
  };

  CHECK_THAT(writeError({2}, {1, 2}, "<f2"), Contains("unsupported dtype"));
  CHECK_THAT(writeError({2}, {1, 2}, ">f8"), Contains("unsupported dtype"));
  CHECK_THAT(writeError({2, 3}, {1, 2}, "<f8"), Contains("mismatch"));
  CHECK_THAT(writeError({}, {}, "<f8"), Contains("mismatch"));
  CHECK_THAT(writeError({-1}, {}, "<f8"), Contains("negative"));
  CHECK_THAT(writeError({2}, {1, 2.5}, "<i4"), Contains("not representable"));
  CHECK_THAT(writeError({1}, {2147483648.0}, "<i4"),
             Contains("not representable"));
  CHECK_THAT(writeError({1}, {std::ldexp(1.0, 63)}, "<i8"),
             Contains("not representable"));
  CHECK_THAT(writeError({1}, {std::nan("")}, "<i8"),
             Contains("not representable"));

  std::string unwritable = tmp.file("no-such-dir/out.npy");
  std::string err = attn::writeNpy(unwritable, {1}, {1.0});
  CHECK_THAT(err, Contains("cannot open"));
  CHECK_THAT(err, Contains(unwritable));
}
