// GGUF reader/writer: round trips, the real fixtures, and a corruption suite (truncation at every length,
// hand-made malformed headers, seeded random mutations). Every malformed input must give vireo::GgufError with
// an informative message: never a crash, a hang, another exception type, or an accepted file whose tensors do
// not fit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include "gguf/gguf.h"

namespace fs = std::filesystem;
using namespace vireo;
using Bytes = std::vector<uint8_t>;

namespace {

constexpr uint32_t kMagic = 0x46554747;
constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();

// A ByteSource over bytes the test owns: one buffer can be mutated and re-parsed without copying it.
class SpanSource : public ByteSource {
 public:
  explicit SpanSource(std::span<const uint8_t> b) : b_(b) {}
  std::span<const uint8_t> bytes() const override { return b_; }

 private:
  std::span<const uint8_t> b_;
};

// Touches everything a caller may touch after a successful open: each tensor's span (which must lie inside
// the source's bytes) and every metadata string. Returns a checksum so the reads are not optimized away.
uint64_t touch_value(const GgufValue& v) {
  uint64_t h = static_cast<uint64_t>(v.type);
  if (auto s = std::get_if<std::string>(&v.v)) {
    for (char c : *s) h = h * 31 + static_cast<uint8_t>(c);
  } else if (auto a = std::get_if<GgufArray>(&v.v)) {
    for (const GgufValue& x : a->items) {
      EXPECT_EQ(x.type, a->elem_type);
      h = h * 31 + touch_value(x);
    }
  }
  return h;
}

uint64_t touch(const GgufFile& f, std::span<const uint8_t> bytes, bool every_byte) {
  uint64_t h = 0;
  for (const auto& [k, v] : f.metadata()) h += k.size() + touch_value(v);
  EXPECT_EQ(f.data_offset() % f.alignment(), 0u);
  for (const GgufTensorInfo& t : f.tensors()) {
    EXPECT_EQ(t.offset % f.alignment(), 0u) << t.name;
    const std::span<const uint8_t> d = f.data(t);
    EXPECT_EQ(d.size(), static_cast<size_t>(t.n_bytes()));
    EXPECT_GE(d.data(), bytes.data()) << t.name;
    EXPECT_LE(d.data() + d.size(), bytes.data() + bytes.size()) << t.name;
    if (d.empty()) continue;
    if (every_byte)
      for (uint8_t b : d) h += b;
    else
      h += d.front() + d.back();
  }
  return h;
}

// Parses `b`. Returns std::nullopt on success (after touching the result) or the GgufError message.
// `copy`: parse an exact-size copy (so a sanitizer sees any read past the end) instead of the span itself.
std::optional<std::string> try_parse(std::span<const uint8_t> b, bool copy = true, bool every_byte = false) {
  try {
    if (copy) {
      auto src = ByteSource::from_buffer(Bytes(b.begin(), b.end()));
      const std::span<const uint8_t> own = src->bytes();
      GgufFile f(std::move(src));
      touch(f, own, every_byte);
    } else {
      GgufFile f(std::make_unique<SpanSource>(b));
      touch(f, b, every_byte);
    }
    return std::nullopt;
  } catch (const GgufError& e) {
    return std::string(e.what());
  }
  // Any other exception propagates and fails the test.
}

// Expects a GgufError whose message contains `needle`.
#define EXPECT_GGUF_ERROR(bytes, needle)                                                  \
  do {                                                                                    \
    const std::optional<std::string> err_ = try_parse(bytes);                             \
    if (!err_) {                                                                          \
      ADD_FAILURE() << "accepted a malformed file; expected an error about '" << (needle) \
                    << "'";                                                               \
    } else {                                                                              \
      EXPECT_NE(err_->find(needle), std::string::npos) << "message: " << *err_;           \
    }                                                                                     \
  } while (0)

// ---- a raw little-endian GGUF builder for hand-made (possibly malformed) files ----

struct W {
  Bytes b;
  template <class T>
  W& pod(T v) {
    uint8_t tmp[sizeof(T)];
    std::memcpy(tmp, &v, sizeof(T));
    b.insert(b.end(), tmp, tmp + sizeof(T));
    return *this;
  }
  W& u8(uint8_t v) { return pod(v); }
  W& u32(uint32_t v) { return pod(v); }
  W& u64(uint64_t v) { return pod(v); }
  W& str(std::string_view s) {
    u64(s.size());
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  W& raw(const Bytes& r) {
    b.insert(b.end(), r.begin(), r.end());
    return *this;
  }
};

Bytes p_u32(uint32_t v) { return W().u32(v).b; }
Bytes p_str(std::string_view s) { return W().str(s).b; }
// Array payload: element type, count, then the raw items.
Bytes p_arr(uint32_t elem_type, uint64_t count, const Bytes& items = {}) {
  return W().u32(elem_type).u64(count).raw(items).b;
}

struct RawKv {
  std::string key;
  uint32_t type;
  Bytes payload;
};
struct RawTensor {
  std::string name;
  std::vector<uint64_t> dims;
  uint32_t type;
  uint64_t offset;
};
struct RawFile {
  uint32_t magic = kMagic;
  uint32_t version = 3;
  std::optional<uint64_t> n_tensors, n_kv;  // override the real counts
  std::vector<RawKv> kv;
  std::vector<RawTensor> tensors;
  uint64_t align = 32;      // padding before the data section (must match general.alignment if set)
  uint64_t data_size = 0;   // bytes in the data section

  Bytes build() const {
    W w;
    w.u32(magic).u32(version).u64(n_tensors.value_or(tensors.size())).u64(n_kv.value_or(kv.size()));
    for (const RawKv& k : kv) w.str(k.key).u32(k.type).raw(k.payload);
    for (const RawTensor& t : tensors) {
      w.str(t.name).u32(static_cast<uint32_t>(t.dims.size()));
      for (uint64_t d : t.dims) w.u64(d);
      w.u32(t.type).u64(t.offset);
    }
    while (w.b.size() % align) w.u8(0);
    for (uint64_t i = 0; i < data_size; ++i) w.u8(static_cast<uint8_t>(i * 7 + 1));
    return w.b;
  }
};

// A small valid file: one string key, tensors "a" (F32 8x2, 64 bytes at 0) and "b" (F32 4, 16 bytes at 64).
RawFile baseline() {
  RawFile f;
  f.kv.push_back({"general.architecture", 8, p_str("llama")});
  f.tensors.push_back({"a", {8, 2}, 0, 0});
  f.tensors.push_back({"b", {4}, 0, 64});
  f.data_size = 80;
  return f;
}

Bytes pattern(size_t n, uint32_t seed) {
  Bytes b(n);
  std::mt19937 g(seed);
  for (auto& x : b) x = static_cast<uint8_t>(g());
  return b;
}

GgufValue U(GgufType t, uint64_t v) { return {t, v}; }
GgufValue I(GgufType t, int64_t v) { return {t, v}; }
GgufValue S(std::string s) { return {GgufType::STRING, std::move(s)}; }
GgufValue A(GgufType elem, std::vector<GgufValue> items) { return {GgufType::ARRAY, GgufArray{elem, std::move(items)}}; }

// A writer exercising every metadata type, nested/empty arrays, alignment 64 and tensors of several types.
struct Sample {
  GgufWriter w;
  std::vector<Bytes> data;
  Bytes bytes;
};

Sample make_sample() {
  Sample s;
  GgufWriter& w = s.w;
  w.set_string("general.architecture", "llama");
  w.set_alignment(64);
  w.set("t.u8", U(GgufType::U8, 250));
  w.set("t.i8", I(GgufType::I8, -128));
  w.set("t.u16", U(GgufType::U16, 65535));
  w.set("t.i16", I(GgufType::I16, -32768));
  w.set_u32("t.u32", 4000000000u);
  w.set_i32("t.i32", -2000000000);
  w.set("t.u64", U(GgufType::U64, kU64Max));
  w.set("t.i64", I(GgufType::I64, std::numeric_limits<int64_t>::min()));
  w.set_f32("t.f32", 0.15625f);
  w.set("t.f64", GgufValue{GgufType::F64, 3.141592653589793});
  w.set_bool("t.true", true);
  w.set_bool("t.false", false);
  w.set_string("t.empty_string", "");
  w.set_string("t.binary_string", std::string("a\0b\n\xc3\xa9", 6));
  w.set("t.strings", A(GgufType::STRING, {S("<unk>"), S(""), S("hello world"), S("\xe2\x96\x81the")}));
  w.set("t.nested", A(GgufType::ARRAY, {A(GgufType::I32, {I(GgufType::I32, 1), I(GgufType::I32, -2)}),
                                        A(GgufType::I32, {}),
                                        A(GgufType::I32, {I(GgufType::I32, 3)})}));
  w.set("t.nested_strings", A(GgufType::ARRAY, {A(GgufType::STRING, {S("x"), S("yz")}),
                                                A(GgufType::STRING, {})}));
  w.set("t.deep", A(GgufType::ARRAY, {A(GgufType::ARRAY, {A(GgufType::U8, {U(GgufType::U8, 7)})})}));
  w.set("t.empty_u8", A(GgufType::U8, {}));
  w.set("t.empty_strings", A(GgufType::STRING, {}));
  w.set("t.empty_arrays", A(GgufType::ARRAY, {}));
  w.set("t.bools", A(GgufType::BOOL, {GgufValue{GgufType::BOOL, true}, GgufValue{GgufType::BOOL, false}}));
  w.set("t.f64s", A(GgufType::F64, {GgufValue{GgufType::F64, -0.5}, GgufValue{GgufType::F64, 1e300}}));
  w.set("t.u64s", A(GgufType::U64, {U(GgufType::U64, 0), U(GgufType::U64, kU64Max)}));

  w.add_tensor("f32.matrix", DType::F32, {7, 3});
  w.add_tensor("f16.vector", DType::F16, {5});
  w.add_tensor("q8_0.matrix", DType::Q8_0, {64, 2});
  w.add_tensor("q4_k.3d", DType::Q4_K, {256, 1, 2});
  w.add_tensor("i32.4d", DType::I32, {3, 1, 2, 2});
  w.add_tensor("bf16.one", DType::BF16, {1});
  for (size_t i = 0; i < w.tensors().size(); ++i)
    s.data.push_back(pattern(static_cast<size_t>(w.tensors()[i].n_bytes()), 100 + static_cast<uint32_t>(i)));
  s.bytes = w.write_to_memory([&](size_t i, Bytes& out) { out.insert(out.end(), s.data[i].begin(), s.data[i].end()); });
  return s;
}

// Byte position just past the last tensor (a file may carry padding after it).
uint64_t data_end(const GgufFile& f) {
  uint64_t end = f.data_offset();
  for (const auto& t : f.tensors()) end = std::max(end, f.data_offset() + t.offset + static_cast<uint64_t>(t.n_bytes()));
  return end;
}

fs::path fixtures_dir() { return fs::path(VIREO_FIXTURES) / "models"; }

#define REQUIRE_FIXTURE(path)                                                                          \
  if (!fs::exists(path)) GTEST_SKIP() << "fixture " << (path) << " not found (set up ../shared/fixtures)"

Bytes read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return Bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// A cut file is reported as truncated, too small, or as a count/length that "exceeds the file".
bool is_truncation_message(const std::string& m) {
  return m.find("truncated") != std::string::npos || m.find("too small") != std::string::npos ||
         m.find("exceeds the file") != std::string::npos;
}

}  // namespace

// =====================================================================================================
// (a) writer -> reader round trip
// =====================================================================================================

TEST(GgufRoundTrip, EveryValueTypeAndTensor) {
  const Sample s = make_sample();
  const GgufFile f(ByteSource::from_buffer(s.bytes));
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.data_offset() % 64, 0u);
  EXPECT_EQ(f.file_size(), s.bytes.size());

  // Metadata keeps the writer's order.
  ASSERT_EQ(f.metadata().size(), 26u);
  EXPECT_EQ(f.metadata()[0].first, "general.architecture");
  EXPECT_EQ(f.metadata()[1].first, "general.alignment");
  EXPECT_EQ(f.metadata().back().first, "t.u64s");

  EXPECT_EQ(f.get("general.alignment").type, GgufType::U32);
  EXPECT_EQ(f.get("t.u8").type, GgufType::U8);
  EXPECT_EQ(f.get("t.u8").as_uint(), 250u);
  EXPECT_EQ(f.get("t.i8").as_int(), -128);
  EXPECT_EQ(f.get("t.u16").as_uint(), 65535u);
  EXPECT_EQ(f.get("t.i16").as_int(), -32768);
  EXPECT_EQ(f.get("t.u32").as_uint(), 4000000000u);
  EXPECT_EQ(f.get("t.i32").as_int(), -2000000000);
  EXPECT_EQ(f.get("t.u64").as_uint(), kU64Max);
  EXPECT_THROW(f.get("t.u64").as_int(), GgufError);  // does not fit
  EXPECT_EQ(f.get("t.i64").as_int(), std::numeric_limits<int64_t>::min());
  EXPECT_THROW(f.get("t.i64").as_uint(), GgufError);
  EXPECT_EQ(f.get("t.f32").type, GgufType::F32);
  EXPECT_EQ(f.get("t.f32").as_float(), 0.15625);
  EXPECT_EQ(f.get("t.f64").as_float(), 3.141592653589793);
  EXPECT_EQ(f.get("t.true").type, GgufType::BOOL);
  EXPECT_TRUE(f.get("t.true").as_bool());
  EXPECT_FALSE(f.get("t.false").as_bool());
  EXPECT_EQ(f.get("t.empty_string").as_string(), "");
  EXPECT_EQ(f.get("t.binary_string").as_string(), std::string("a\0b\n\xc3\xa9", 6));

  const GgufArray& strs = f.get("t.strings").as_array();
  EXPECT_EQ(strs.elem_type, GgufType::STRING);
  ASSERT_EQ(strs.items.size(), 4u);
  EXPECT_EQ(strs.items[0].as_string(), "<unk>");
  EXPECT_EQ(strs.items[1].as_string(), "");
  EXPECT_EQ(strs.items[3].as_string(), "\xe2\x96\x81the");

  const GgufArray& nested = f.get("t.nested").as_array();
  EXPECT_EQ(nested.elem_type, GgufType::ARRAY);
  ASSERT_EQ(nested.items.size(), 3u);
  ASSERT_EQ(nested.items[0].as_array().items.size(), 2u);
  EXPECT_EQ(nested.items[0].as_array().elem_type, GgufType::I32);
  EXPECT_EQ(nested.items[0].as_array().items[1].as_int(), -2);
  EXPECT_TRUE(nested.items[1].as_array().items.empty());
  EXPECT_EQ(nested.items[1].as_array().elem_type, GgufType::I32);
  EXPECT_EQ(nested.items[2].as_array().items[0].as_int(), 3);

  const GgufArray& ns = f.get("t.nested_strings").as_array();
  ASSERT_EQ(ns.items.size(), 2u);
  EXPECT_EQ(ns.items[0].as_array().items[1].as_string(), "yz");
  EXPECT_EQ(ns.items[1].as_array().elem_type, GgufType::STRING);
  EXPECT_TRUE(ns.items[1].as_array().items.empty());

  const GgufArray& deep = f.get("t.deep").as_array();
  EXPECT_EQ(deep.items.at(0).as_array().items.at(0).as_array().items.at(0).as_uint(), 7u);

  for (const char* k : {"t.empty_u8", "t.empty_strings", "t.empty_arrays"})
    EXPECT_TRUE(f.get(k).as_array().items.empty()) << k;
  EXPECT_EQ(f.get("t.empty_u8").as_array().elem_type, GgufType::U8);
  EXPECT_EQ(f.get("t.empty_arrays").as_array().elem_type, GgufType::ARRAY);
  EXPECT_TRUE(f.get("t.bools").as_array().items[0].as_bool());
  EXPECT_FALSE(f.get("t.bools").as_array().items[1].as_bool());
  EXPECT_EQ(f.get("t.f64s").as_array().items[1].as_float(), 1e300);
  EXPECT_EQ(f.get("t.u64s").as_array().items[1].as_uint(), kU64Max);

  // Tensors: names, types, shapes, aligned offsets, exact bytes.
  ASSERT_EQ(f.tensors().size(), s.w.tensors().size());
  for (size_t i = 0; i < f.tensors().size(); ++i) {
    const GgufTensorInfo& t = f.tensors()[i];
    const GgufTensorInfo& want = s.w.tensors()[i];
    EXPECT_EQ(t.name, want.name);
    EXPECT_EQ(t.type, want.type);
    EXPECT_EQ(t.shape, want.shape);
    EXPECT_EQ(t.offset, want.offset);
    EXPECT_EQ(t.offset % 64, 0u) << t.name;
    EXPECT_EQ((f.data_offset() + t.offset) % 64, 0u) << t.name;
    const auto d = f.data(t);
    EXPECT_EQ(Bytes(d.begin(), d.end()), s.data[i]) << t.name;
    EXPECT_EQ(f.find_tensor(t.name), &t);
  }
  EXPECT_EQ(f.find_tensor("q4_k.3d")->n_bytes(), 2 * 144);
  EXPECT_EQ(f.find_tensor("q8_0.matrix")->n_elements(), 128);
  EXPECT_EQ(f.find_tensor("i32.4d")->shape, (std::vector<int64_t>{3, 1, 2, 2}));
  EXPECT_EQ(f.find_tensor("nope"), nullptr);
  // Nothing after the last tensor.
  EXPECT_EQ(data_end(f), s.bytes.size());
}

TEST(GgufRoundTrip, TypedGettersAndConversions) {
  const Sample s = make_sample();
  const GgufFile f(ByteSource::from_buffer(s.bytes));
  EXPECT_EQ(f.get_string("general.architecture", "x"), "llama");
  EXPECT_EQ(f.get_string("missing.key", "fallback"), "fallback");
  EXPECT_EQ(f.get_int("t.u32", -1), 4000000000);
  EXPECT_EQ(f.get_int("missing.key", -7), -7);
  EXPECT_DOUBLE_EQ(f.get_float("t.i32", 0), -2000000000.0);
  EXPECT_DOUBLE_EQ(f.get_float("missing.key", 2.5), 2.5);
  EXPECT_EQ(f.find("missing.key"), nullptr);
  try {
    f.get("missing.key");
    ADD_FAILURE() << "no throw";
  } catch (const GgufError& e) {
    EXPECT_NE(std::string(e.what()).find("missing.key"), std::string::npos) << e.what();
  }
  EXPECT_THROW(f.get_int("general.architecture", 0), GgufError);
  EXPECT_THROW(f.get_string("t.u8", ""), GgufError);
  EXPECT_THROW(f.get("t.strings").as_string(), GgufError);
  EXPECT_THROW(f.get("t.u8").as_array(), GgufError);
  // Floats that do not fit an integer are an error, not undefined behaviour.
  EXPECT_THROW(f.get("t.f64s").as_array().items[1].as_int(), GgufError);
  EXPECT_THROW((GgufValue{GgufType::F32, std::nan("")}.as_int()), GgufError);
  EXPECT_EQ((GgufValue{GgufType::F32, -3.75}.as_int()), -3);
  EXPECT_EQ(gguf_type_name(GgufType::ARRAY), "array");
  EXPECT_EQ(gguf_value_to_string(f.get("t.strings")), "[string x 4] \"<unk>\", \"\", \"hello world\", \"\xe2\x96\x81the\"");
}

TEST(GgufRoundTrip, RewriteIsByteIdentical) {
  const Sample s = make_sample();
  const GgufFile f(ByteSource::from_buffer(s.bytes));
  GgufWriter w;
  for (const auto& [k, v] : f.metadata()) {
    if (k == "general.alignment") w.set_alignment(static_cast<uint32_t>(v.as_uint()));
    w.set(k, v);
  }
  for (const auto& t : f.tensors()) w.add_tensor(t.name, t.type, t.shape);
  const Bytes again = w.write_to_memory([&](size_t i, Bytes& out) {
    const auto d = f.data(f.tensors()[i]);
    out.insert(out.end(), d.begin(), d.end());
  });
  EXPECT_EQ(again, s.bytes);
}

TEST(GgufRoundTrip, VersionTwoReadsTheSame) {
  Sample s = make_sample();
  s.bytes[4] = 2;
  const GgufFile f(ByteSource::from_buffer(s.bytes));
  EXPECT_EQ(f.version(), 2u);
  EXPECT_EQ(f.tensors().size(), 6u);
  EXPECT_EQ(f.get("t.nested").as_array().items.size(), 3u);
}

TEST(GgufRoundTrip, NoTensorsAndNoMetadata) {
  GgufWriter w;
  const Bytes b = w.write_to_memory([](size_t, Bytes&) {});
  const GgufFile f(ByteSource::from_buffer(b));
  EXPECT_TRUE(f.metadata().empty());
  EXPECT_TRUE(f.tensors().empty());
  EXPECT_EQ(b.size(), 32u);  // 24-byte header padded to 32
}

TEST(GgufRoundTrip, ThroughAFileAndMemoryMap) {
  const Sample s = make_sample();
  const fs::path p = fs::path(testing::TempDir()) / ("vireo_gguf_roundtrip_" + std::to_string(::getpid()) + ".gguf");
  s.w.write(p.string(), [&](size_t i, Bytes& out) { out.insert(out.end(), s.data[i].begin(), s.data[i].end()); });
  EXPECT_EQ(read_file(p), s.bytes);
  {
    const GgufFile f = GgufFile::open(p.string());
    EXPECT_EQ(f.file_size(), s.bytes.size());
    const auto d = f.data(*f.find_tensor("q4_k.3d"));
    EXPECT_EQ(Bytes(d.begin(), d.end()), s.data[3]);
  }
  fs::remove(p);
}

TEST(GgufRoundTrip, WriterRejectsBadInput) {
  GgufWriter w;
  EXPECT_THROW(w.set_alignment(48), GgufError);
  EXPECT_THROW(w.set_alignment(0), GgufError);
  EXPECT_THROW(w.add_tensor("x", DType::F32, {}), GgufError);
  EXPECT_THROW(w.add_tensor("x", DType::F32, {1, 1, 1, 1, 1}), GgufError);
  EXPECT_THROW(w.add_tensor("x", DType::Q4_0, {33}), GgufError);
  w.add_tensor("x", DType::F32, {4});
  EXPECT_THROW(w.write_to_memory([](size_t, Bytes& out) { out.resize(15); }), GgufError);
  GgufWriter w2;
  w2.set("bad", A(GgufType::U8, {I(GgufType::I8, 1)}));
  EXPECT_THROW(w2.write_to_memory([](size_t, Bytes&) {}), GgufError);
}

TEST(GgufOpen, MissingEmptyAndDirectory) {
  try {
    GgufFile::open("/nonexistent/dir/model.gguf");
    ADD_FAILURE() << "no throw";
  } catch (const GgufError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot open"), std::string::npos) << e.what();
  }
  const fs::path p = fs::path(testing::TempDir()) / ("vireo_gguf_empty_" + std::to_string(::getpid()) + ".gguf");
  { std::ofstream(p, std::ios::binary); }
  EXPECT_THROW(GgufFile::open(p.string()), GgufError);
  fs::remove(p);
  EXPECT_THROW(GgufFile::open(testing::TempDir()), GgufError);
}

// =====================================================================================================
// (b) the real fixtures
// =====================================================================================================

TEST(GgufFixtures, AllModelsParseAndTensorsLieInTheFile) {
  const fs::path dir = fixtures_dir();
  REQUIRE_FIXTURE(dir);
  int n_files = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".gguf") continue;
    ++n_files;
    SCOPED_TRACE(e.path().filename().string());
    const GgufFile f = GgufFile::open(e.path().string());
    EXPECT_TRUE(f.version() == 2 || f.version() == 3);
    EXPECT_EQ(f.get_string("general.architecture", ""), "llama");
    EXPECT_EQ(f.get_int("llama.block_count", 0), 5);
    EXPECT_EQ(f.get_int("llama.embedding_length", 0), 64);
    EXPECT_EQ(f.tensors().size(), 48u);  // 5 layers x 9 + token_embd + output_norm + output
    EXPECT_EQ(f.file_size(), fs::file_size(e.path()));
    const GgufArray& toks = f.get("tokenizer.ggml.tokens").as_array();
    EXPECT_EQ(toks.elem_type, GgufType::STRING);
    EXPECT_EQ(toks.items.size(), 512u);
    EXPECT_EQ(toks.items[1].as_string(), "<s>");
    const GgufTensorInfo* emb = f.find_tensor("token_embd.weight");
    ASSERT_NE(emb, nullptr);
    EXPECT_EQ(emb->shape, (std::vector<int64_t>{64, 512}));
    std::set<std::string> names;
    for (const GgufTensorInfo& t : f.tensors()) {
      EXPECT_TRUE(names.insert(t.name).second) << t.name;
      EXPECT_EQ(t.offset % f.alignment(), 0u) << t.name;
      EXPECT_LE(f.data_offset() + t.offset + static_cast<uint64_t>(t.n_bytes()), f.file_size()) << t.name;
      EXPECT_EQ(f.data(t).size(), static_cast<size_t>(t.n_bytes()));
    }
    EXPECT_LE(data_end(f), f.file_size());
    EXPECT_LT(f.file_size() - data_end(f), f.alignment());  // at most padding after the last tensor
  }
  EXPECT_GE(n_files, 1);
}

TEST(GgufFixtures, F16FileMatchesF32File) {
  const fs::path p32 = fixtures_dir() / "stories260K-f32.gguf", p16 = fixtures_dir() / "stories260K-f16.gguf";
  REQUIRE_FIXTURE(p32);
  REQUIRE_FIXTURE(p16);
  const GgufFile a = GgufFile::open(p32.string()), b = GgufFile::open(p16.string());
  ASSERT_EQ(a.tensors().size(), b.tensors().size());
  int compared = 0;
  for (const GgufTensorInfo& t16 : b.tensors()) {
    const GgufTensorInfo* t32 = a.find_tensor(t16.name);
    ASSERT_NE(t32, nullptr) << t16.name;
    EXPECT_EQ(t32->shape, t16.shape) << t16.name;
    EXPECT_EQ(t32->type, DType::F32);
    if (t16.type != DType::F16) continue;
    const auto d16 = b.data(t16), d32 = a.data(*t32);
    for (int64_t i = 0; i < t16.n_elements(); ++i) {
      uint16_t h;
      float x;
      std::memcpy(&h, d16.data() + 2 * i, 2);
      std::memcpy(&x, d32.data() + 4 * i, 4);
      const float y = fp16_to_fp32(h);
      ASSERT_LE(std::fabs(y - x), std::ldexp(std::fabs(x), -10) + std::ldexp(1.0f, -24))
          << t16.name << "[" << i << "]";
    }
    ++compared;
  }
  EXPECT_GT(compared, 0);
}

TEST(GgufFixtures, F32FileRewritesByteIdentical) {
  const fs::path p = fixtures_dir() / "stories260K-f32.gguf";
  REQUIRE_FIXTURE(p);
  const GgufFile f = GgufFile::open(p.string());
  GgufWriter w;
  for (const auto& [k, v] : f.metadata()) w.set(k, v);
  for (const auto& t : f.tensors()) w.add_tensor(t.name, t.type, t.shape);
  for (size_t i = 0; i < f.tensors().size(); ++i) EXPECT_EQ(w.tensors()[i].offset, f.tensors()[i].offset);
  const Bytes again = w.write_to_memory([&](size_t i, Bytes& out) {
    const auto d = f.data(f.tensors()[i]);
    out.insert(out.end(), d.begin(), d.end());
  });
  EXPECT_TRUE(again == read_file(p));
}

// =====================================================================================================
// (c) corruption
// =====================================================================================================

// Every truncation that cuts into the header, metadata, tensor infos or any tensor fails with a GgufError
// that says so; cutting only trailing padding is fine.
void check_truncations(const Bytes& full, size_t data_sample_step) {
  const GgufFile whole(std::make_unique<SpanSource>(full));
  const uint64_t must_have = data_end(whole);
  const uint64_t dense_until = std::min<uint64_t>(full.size(), whole.data_offset() + 4 * whole.alignment());
  std::vector<size_t> lengths;
  for (size_t n = 0; n < dense_until; ++n) lengths.push_back(n);
  for (size_t n = dense_until; n < full.size(); n += data_sample_step) lengths.push_back(n);
  for (size_t k = 1; k <= 64 && k <= full.size(); ++k) lengths.push_back(full.size() - k);
  int errors = 0;
  for (size_t n : lengths) {
    const std::optional<std::string> err = try_parse(std::span(full.data(), n));
    if (n < must_have) {
      if (!err) {
        ADD_FAILURE() << "accepted a file truncated to " << n << " of " << full.size() << " bytes";
        continue;
      }
      ++errors;
      EXPECT_TRUE(is_truncation_message(*err)) << "length " << n << ": " << *err;
    } else {
      EXPECT_FALSE(err) << "length " << n << ": " << err.value_or("");
    }
  }
  EXPECT_GT(errors, 0);
  EXPECT_FALSE(try_parse(full));
}

TEST(GgufCorrupt, TruncationWriterFileEveryLength) {
  const Sample s = make_sample();
  check_truncations(s.bytes, 1);
}

TEST(GgufCorrupt, TruncationFixtureDenseHeaderSampledData) {
  const fs::path p = fixtures_dir() / "stories260K-f32.gguf";
  REQUIRE_FIXTURE(p);
  check_truncations(read_file(p), 1021);
}

TEST(GgufCorrupt, TruncationFixtureWithTrailingPadding) {
  const fs::path p = fixtures_dir() / "stories260K-Q4_K_M-fallback.gguf";
  REQUIRE_FIXTURE(p);
  const Bytes full = read_file(p);
  const GgufFile f(std::make_unique<SpanSource>(full));
  ASSERT_LT(data_end(f), full.size());  // this file carries padding after its last tensor
  check_truncations(full, 4099);
}

TEST(GgufCorrupt, BaselineIsValid) {
  const Bytes b = baseline().build();
  const GgufFile f(ByteSource::from_buffer(b));
  EXPECT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.data_offset() + 80, b.size());
}

TEST(GgufCorrupt, BadMagic) {
  RawFile f = baseline();
  f.magic = 0x4C4D4747;  // "GGML"
  EXPECT_GGUF_ERROR(f.build(), "magic");
  f.magic = 0x47475546;  // "FUGG": big-endian GGUF
  EXPECT_GGUF_ERROR(f.build(), "magic");
  EXPECT_GGUF_ERROR(Bytes({'G', 'G', 'U', 'F'}), "truncated");
  EXPECT_GGUF_ERROR(Bytes({'G', 'G', 'U'}), "too small");
  EXPECT_GGUF_ERROR(Bytes(), "too small");
  EXPECT_GGUF_ERROR(Bytes(4096, 0), "magic");
  // An ASCII text file.
  const std::string text = "hello, this is not a model file at all\n";
  EXPECT_GGUF_ERROR(Bytes(text.begin(), text.end()), "magic");
}

TEST(GgufCorrupt, UnsupportedVersions) {
  for (uint32_t v : {0u, 1u, 4u, 0x03000000u, 0xFFFFFFFFu}) {
    RawFile f = baseline();
    f.version = v;
    EXPECT_GGUF_ERROR(f.build(), "version");
    EXPECT_GGUF_ERROR(f.build(), std::to_string(v));
  }
}

TEST(GgufCorrupt, AbsurdCounts) {
  for (uint64_t n : {uint64_t(1) << 63, kU64Max, uint64_t(1) << 40}) {
    RawFile f = baseline();
    f.n_tensors = n;
    EXPECT_GGUF_ERROR(f.build(), "tensor count");
    f = baseline();
    f.n_kv = n;
    EXPECT_GGUF_ERROR(f.build(), "metadata count");
  }
  // Plausible but wrong counts run into the data.
  RawFile f = baseline();
  f.n_kv = 3;
  EXPECT_FALSE(try_parse(f.build()).value_or("").empty());
  f = baseline();
  f.n_tensors = 3;
  EXPECT_FALSE(try_parse(f.build()).value_or("").empty());
}

TEST(GgufCorrupt, AbsurdStringLengths) {
  for (uint64_t n : {uint64_t(1) << 63, kU64Max, uint64_t(1) << 31}) {
    RawFile f = baseline();
    f.kv[0].payload = W().u64(n).raw(p_str("llama")).b;  // string value with an absurd length
    EXPECT_GGUF_ERROR(f.build(), "absurd length");
    f = baseline();
    f.kv.insert(f.kv.begin(), {"", 4, p_u32(1)});
    Bytes b = f.build();
    std::memcpy(b.data() + 24, &n, 8);  // the first key's length
    EXPECT_GGUF_ERROR(b, "absurd length");
  }
  // A length that is plausible but points past the end of the file.
  RawFile f = baseline();
  f.kv[0].payload = W().u64(100000).raw(p_str("llama")).b;
  EXPECT_GGUF_ERROR(f.build(), "truncated");
  f = baseline();
  f.tensors[1].name = "b";
  Bytes b = f.build();
  // Find tensor "b"'s name length (the second tensor info) and make it huge.
  const std::string needle = std::string("\x01\0\0\0\0\0\0\0b", 9);
  auto it = std::search(b.begin(), b.end(), needle.begin(), needle.end());
  ASSERT_NE(it, b.end());
  const uint64_t big = uint64_t(1) << 62;
  std::memcpy(&*it, &big, 8);
  EXPECT_GGUF_ERROR(b, "absurd length");
}

TEST(GgufCorrupt, AbsurdArrayLengths) {
  for (uint32_t elem : {0u, 4u, 8u, 9u, 10u}) {
    for (uint64_t n : {uint64_t(1) << 62, kU64Max, uint64_t(1) << 20}) {
      RawFile f = baseline();
      f.kv.push_back({"arr", 9, p_arr(elem, n)});
      EXPECT_GGUF_ERROR(f.build(), "array length");
    }
  }
  // An array of strings claiming more items than present.
  RawFile f = baseline();
  f.kv.push_back({"arr", 9, p_arr(8, 3, W().str("a long first string").str("and a second one").b)});
  f.tensors.clear();
  f.data_size = 0;
  f.align = 1;  // no zero padding after the header (it would read as a third, empty string)
  EXPECT_GGUF_ERROR(f.build(), "truncated");
}

TEST(GgufCorrupt, UnknownValueTypes) {
  for (uint32_t t : {13u, 14u, 255u, 0x80000000u, 0xFFFFFFFFu}) {
    RawFile f = baseline();
    f.kv.push_back({"weird", t, p_u32(0)});
    EXPECT_GGUF_ERROR(f.build(), "unknown value type");
    EXPECT_GGUF_ERROR(f.build(), "weird");
    f = baseline();
    f.kv.push_back({"weird_arr", 9, p_arr(t, 1, p_u32(0))});
    EXPECT_GGUF_ERROR(f.build(), "unknown array element type");
    // Nested: an array of arrays whose inner element type is unknown.
    f = baseline();
    f.kv.push_back({"weird_nested", 9, p_arr(9, 1, p_arr(t, 0))});
    EXPECT_GGUF_ERROR(f.build(), "unknown array element type");
  }
}

TEST(GgufCorrupt, BoolMustBeZeroOrOne) {
  for (uint8_t v : {2, 3, 128, 255}) {
    RawFile f = baseline();
    f.kv.push_back({"flag", 7, W().u8(v).b});
    EXPECT_GGUF_ERROR(f.build(), "bool");
    f = baseline();
    f.kv.push_back({"flags", 9, p_arr(7, 3, W().u8(1).u8(0).u8(v).b)});
    EXPECT_GGUF_ERROR(f.build(), "bool");
  }
}

TEST(GgufCorrupt, ArrayNesting) {
  // Modest nesting is fine; very deep nesting is refused (and does not overflow the stack).
  auto nest = [](int depth) {
    W w;
    for (int d = 1; d < depth; ++d) w.u32(9).u64(1);  // array of one array of ...
    return w.raw(p_arr(4, 1, p_u32(5))).b;            // ... one u32
  };
  RawFile ok = baseline();
  ok.kv.push_back({"nested", 9, nest(4)});
  EXPECT_FALSE(try_parse(ok.build()));
  for (int depth : {64, 100000}) {
    RawFile f = baseline();
    f.kv.push_back({"nested", 9, nest(depth)});
    EXPECT_GGUF_ERROR(f.build(), "nested");
  }
}

TEST(GgufCorrupt, DuplicateKeysAndTensorNames) {
  RawFile f = baseline();
  f.kv.push_back({"general.architecture", 8, p_str("gpt2")});
  EXPECT_GGUF_ERROR(f.build(), "duplicate metadata key 'general.architecture'");
  f = baseline();
  f.tensors[1].name = "a";
  EXPECT_GGUF_ERROR(f.build(), "duplicate tensor name 'a'");
}

TEST(GgufCorrupt, UnknownTensorType) {
  for (uint32_t t : {4u, 5u, 16u, 29u, 31u, 99u, 0xFFFFFFFFu}) {
    RawFile f = baseline();
    f.tensors[1].type = t;
    EXPECT_GGUF_ERROR(f.build(), "unknown type id " + std::to_string(t));
  }
}

TEST(GgufCorrupt, DimensionCounts) {
  for (std::vector<uint64_t> dims : {std::vector<uint64_t>{}, std::vector<uint64_t>{4, 1, 1, 1, 1},
                                     std::vector<uint64_t>(64, 1)}) {
    RawFile f = baseline();
    f.tensors[1].dims = dims;
    EXPECT_GGUF_ERROR(f.build(), "dimensions");
  }
  // A 2^32 dimension count (no attempt to read that many dims).
  RawFile f = baseline();
  Bytes b = f.build();
  const std::string needle = std::string("\x01\0\0\0\0\0\0\0b\x01\0\0\0", 13);
  auto it = std::search(b.begin(), b.end(), needle.begin(), needle.end());
  ASSERT_NE(it, b.end());
  std::fill(it + 9, it + 13, uint8_t(0xFF));
  EXPECT_GGUF_ERROR(b, "dimensions");
}

TEST(GgufCorrupt, ZeroAndHugeDimensions) {
  for (std::vector<uint64_t> dims : {std::vector<uint64_t>{0}, std::vector<uint64_t>{4, 0},
                                     std::vector<uint64_t>{4, 1, 1, 0}, std::vector<uint64_t>{kU64Max},
                                     std::vector<uint64_t>{uint64_t(1) << 63}, std::vector<uint64_t>{4, kU64Max}}) {
    RawFile f = baseline();
    f.tensors[1].dims = dims;
    EXPECT_GGUF_ERROR(f.build(), "dimension");
  }
}

TEST(GgufCorrupt, DimensionProductOverflow) {
  const uint64_t big = uint64_t(1) << 32;
  for (std::vector<uint64_t> dims : {std::vector<uint64_t>{big, big}, std::vector<uint64_t>{big, big, big, big},
                                     std::vector<uint64_t>{uint64_t(1) << 40, uint64_t(1) << 40},
                                     std::vector<uint64_t>{65536, 65536, 65536, 65536},
                                     std::vector<uint64_t>{3, 6148914691236517206ull}}) {
    RawFile f = baseline();
    f.tensors[1].dims = dims;
    const std::optional<std::string> err = try_parse(f.build());
    ASSERT_TRUE(err.has_value());
    EXPECT_TRUE(err->find("too many elements") != std::string::npos || err->find("absurd dimension") != std::string::npos)
        << *err;
  }
  // Large but representable: refused because the data is not in the file.
  RawFile f = baseline();
  f.tensors[1].dims = {uint64_t(1) << 20, uint64_t(1) << 20};
  EXPECT_GGUF_ERROR(f.build(), "extends past the end");
}

TEST(GgufCorrupt, BlockSizeMismatch) {
  RawFile f = baseline();
  f.tensors[1].type = static_cast<uint32_t>(DType::Q4_0);
  f.tensors[1].dims = {33};
  EXPECT_GGUF_ERROR(f.build(), "block size");
}

TEST(GgufCorrupt, MisalignedOffsets) {
  for (uint64_t off : {1u, 16u, 65u, 72u}) {
    RawFile f = baseline();
    f.tensors[1].offset = off;
    f.data_size = 200;
    EXPECT_GGUF_ERROR(f.build(), "not aligned");
  }
  // With general.alignment = 64, a 32-aligned offset is misaligned.
  RawFile f = baseline();
  f.kv.push_back({"general.alignment", 4, p_u32(64)});
  f.align = 64;
  f.tensors[1].offset = 96;
  f.data_size = 200;
  EXPECT_GGUF_ERROR(f.build(), "not aligned to 64");
  f.tensors[1].offset = 128;
  EXPECT_FALSE(try_parse(f.build()));
}

TEST(GgufCorrupt, OverlappingTensors) {
  RawFile f = baseline();
  f.tensors[1].offset = 32;  // "a" spans [0, 64)
  EXPECT_GGUF_ERROR(f.build(), "overlap");
  f = baseline();
  f.tensors[1].offset = 0;
  EXPECT_GGUF_ERROR(f.build(), "overlap");
  // Out of order in the file but disjoint: fine.
  f = baseline();
  f.tensors[0].offset = 32;
  f.tensors[1].offset = 0;
  f.data_size = 96;
  EXPECT_FALSE(try_parse(f.build()));
  // Three tensors where only the first and the last overlap through a middle one.
  f = baseline();
  f.tensors = {{"a", {64}, 0, 0}, {"b", {4}, 0, 64}, {"c", {4}, 0, 128}};
  f.tensors[0].dims = {48};  // [0, 192) covers b and c
  f.data_size = 256;
  EXPECT_GGUF_ERROR(f.build(), "overlap");
}

TEST(GgufCorrupt, TensorBeyondEndOfFile) {
  for (uint64_t off : {uint64_t(96), uint64_t(1) << 40, uint64_t(1) << 63, kU64Max - 31}) {
    RawFile f = baseline();
    f.tensors[1].offset = off;
    EXPECT_GGUF_ERROR(f.build(), "extends past the end");
  }
  RawFile f = baseline();
  f.data_size = 79;  // last tensor one byte short
  EXPECT_GGUF_ERROR(f.build(), "truncated");
  f.data_size = 0;  // file ends at the padded header
  EXPECT_GGUF_ERROR(f.build(), "truncated");
}

TEST(GgufCorrupt, BadAlignment) {
  for (uint32_t a : {0u, 3u, 48u, 100u, 1u << 21, 0x80000000u}) {
    RawFile f = baseline();
    f.kv.push_back({"general.alignment", 4, p_u32(a)});
    EXPECT_GGUF_ERROR(f.build(), "general.alignment");
  }
  for (uint64_t a : {uint64_t(1) << 63, kU64Max, uint64_t(48)}) {
    RawFile f = baseline();
    f.kv.push_back({"general.alignment", 10, W().u64(a).b});  // u64
    EXPECT_GGUF_ERROR(f.build(), "general.alignment");
  }
  RawFile f = baseline();
  f.kv.push_back({"general.alignment", 5, W().pod<int32_t>(-64).b});  // i32, negative
  EXPECT_GGUF_ERROR(f.build(), "general.alignment");
  f = baseline();
  f.kv.push_back({"general.alignment", 8, p_str("32")});
  EXPECT_GGUF_ERROR(f.build(), "general.alignment");
  // Valid small alignments work (1 = packed).
  f = baseline();
  f.kv.push_back({"general.alignment", 4, p_u32(1)});
  f.align = 1;
  EXPECT_FALSE(try_parse(f.build()));
}

// Seeded random mutations of the header region: each must parse or throw GgufError, nothing else.
struct MutationStats {
  int parsed = 0, rejected = 0;
};

MutationStats mutate_and_parse(Bytes buf, uint64_t header_end, uint64_t tensor_info_begin, int iterations,
                               uint32_t seed, bool copy) {
  const Bytes orig = buf;
  std::mt19937_64 g(seed);
  static const uint64_t interesting[] = {0, 1, 2, 3, 4, 7, 8, 9, 12, 13, 31, 32, 255, 256, 0x7FFFFFFF,
                                         0x80000000, 0xFFFFFFFF, uint64_t(1) << 32, uint64_t(1) << 62,
                                         uint64_t(1) << 63, kU64Max};
  MutationStats st;
  for (int it = 0; it < iterations; ++it) {
    std::vector<size_t> touched;
    const int n_mut = 1 + static_cast<int>(g() % 4);
    for (int m = 0; m < n_mut; ++m) {
      // Aim a third of the mutations at the fixed header, a third at the tensor infos, the rest anywhere.
      size_t pos;
      switch (g() % 3) {
        case 0: pos = g() % std::min<uint64_t>(64, header_end); break;
        case 1: pos = tensor_info_begin + g() % (header_end - tensor_info_begin); break;
        default: pos = g() % header_end; break;
      }
      switch (g() % 4) {
        case 0: buf[pos] ^= static_cast<uint8_t>(1u << (g() % 8)); touched.push_back(pos); break;
        case 1: buf[pos] = static_cast<uint8_t>(g()); touched.push_back(pos); break;
        case 2: {
          const uint64_t v = interesting[g() % std::size(interesting)];
          const size_t width = (g() & 1) ? 8 : 4;
          for (size_t k = 0; k < width && pos + k < buf.size(); ++k) {
            buf[pos + k] = static_cast<uint8_t>(v >> (8 * k));
            touched.push_back(pos + k);
          }
          break;
        }
        default: buf[pos] = (g() & 1) ? 0x00 : 0xFF; touched.push_back(pos); break;
      }
    }
    const std::optional<std::string> err = try_parse(buf, copy);
    if (err) {
      ++st.rejected;
      EXPECT_NE(err->find("GGUF"), std::string::npos) << *err;  // reader errors name the format
    } else {
      ++st.parsed;
    }
    for (size_t p : touched) buf[p] = orig[p];
    if (::testing::Test::HasFailure()) break;  // one reproducible failure is enough
  }
  EXPECT_EQ(buf, orig);
  return st;
}

// Bytes one metadata value occupies in the file.
uint64_t value_bytes(const GgufValue& v) {
  switch (v.type) {
    case GgufType::U8: case GgufType::I8: case GgufType::BOOL: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    case GgufType::U64: case GgufType::I64: case GgufType::F64: return 8;
    case GgufType::STRING: return 8 + v.as_string().size();
    case GgufType::ARRAY: {
      uint64_t n = 12;
      for (const GgufValue& x : v.as_array().items) n += value_bytes(x);
      return n;
    }
  }
  return 0;
}

// Offset where the tensor infos begin (after the 24-byte header and the metadata).
uint64_t tensor_info_begin(const GgufFile& f) {
  uint64_t pos = 24;
  for (const auto& [k, v] : f.metadata()) pos += 8 + k.size() + 4 + value_bytes(v);
  return pos;
}

TEST(GgufCorrupt, RandomHeaderMutationsWriterFile) {
  const Sample s = make_sample();
  const GgufFile f(ByteSource::from_buffer(s.bytes));
  const MutationStats st = mutate_and_parse(s.bytes, f.data_offset(), tensor_info_begin(f), 4000, 12345, true);
  EXPECT_GT(st.rejected, 0);
  EXPECT_GT(st.parsed, 0);
  RecordProperty("parsed", st.parsed);
  RecordProperty("rejected", st.rejected);
}

TEST(GgufCorrupt, RandomHeaderMutationsFixture) {
  const fs::path p = fixtures_dir() / "stories260K-f32.gguf";
  REQUIRE_FIXTURE(p);
  const Bytes b = read_file(p);
  const GgufFile f(std::make_unique<SpanSource>(b));
  const MutationStats st = mutate_and_parse(b, f.data_offset(), tensor_info_begin(f), 3000, 777, false);
  EXPECT_GT(st.rejected, 0);
  EXPECT_GT(st.parsed, 0);
}

TEST(GgufCorrupt, RandomMutationsOfSmallFileEveryByte) {
  // The baseline is small enough to mutate every byte with every interesting value.
  const Bytes orig = baseline().build();
  for (size_t pos = 0; pos < orig.size() - 80; ++pos) {
    for (int v : {0x00, 0x01, 0x02, 0x09, 0x0D, 0x1F, 0x20, 0x40, 0x7F, 0x80, 0xFE, 0xFF}) {
      Bytes b = orig;
      b[pos] = static_cast<uint8_t>(v);
      const std::optional<std::string> err = try_parse(b);
      if (err) {
        EXPECT_NE(err->find("GGUF"), std::string::npos) << *err;
      }
    }
  }
}

// ---- streamed files: the header from the first bytes, tensors read one at a time ----

TEST(GgufStreamed, SameMetadataAndTensorBytesAsMapped) {
  const fs::path dir = fixtures_dir();
  REQUIRE_FIXTURE(dir);
  int n_files = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".gguf") continue;
    ++n_files;
    const GgufFile mapped = GgufFile::open(e.path().string());
    const GgufFile streamed = GgufFile::open_streamed(e.path().string(), 64);  // forces the prefix to grow
    EXPECT_TRUE(mapped.resident());
    EXPECT_FALSE(streamed.resident()) << e.path();
    EXPECT_EQ(streamed.file_size(), mapped.file_size());
    EXPECT_EQ(streamed.data_offset(), mapped.data_offset());
    ASSERT_EQ(streamed.metadata().size(), mapped.metadata().size());
    for (size_t i = 0; i < mapped.metadata().size(); ++i) {
      EXPECT_EQ(streamed.metadata()[i].first, mapped.metadata()[i].first);
      EXPECT_EQ(touch_value(streamed.metadata()[i].second), touch_value(mapped.metadata()[i].second));
    }
    ASSERT_EQ(streamed.tensors().size(), mapped.tensors().size());
    std::vector<uint8_t> scratch, unused;
    for (size_t i = 0; i < mapped.tensors().size(); ++i) {
      const GgufTensorInfo& t = streamed.tensors()[i];
      EXPECT_EQ(t.name, mapped.tensors()[i].name);
      const auto got = streamed.tensor_bytes(t, scratch);
      const auto want = mapped.tensor_bytes(mapped.tensors()[i], unused);
      ASSERT_EQ(got.size(), want.size()) << t.name;
      EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size()), 0) << t.name;
    }
    EXPECT_TRUE(unused.empty());  // resident files hand out spans, no copies
    EXPECT_THROW(streamed.data(streamed.tensors()[0]), GgufError);
  }
  EXPECT_GT(n_files, 0);
}

TEST(GgufStreamed, TruncatedFileGivesTheSameErrorAsOpen) {
  const fs::path p = fixtures_dir() / "stories260K-f32.gguf";
  REQUIRE_FIXTURE(p);
  const Bytes full = read_file(p);
  const fs::path tmp = fs::temp_directory_path() / ("vireo-streamed-" + std::to_string(::getpid()) + ".gguf");
  for (const size_t keep : {size_t(3), size_t(100), size_t(5000), full.size() / 2, full.size() - 1}) {
    {
      std::ofstream o(tmp, std::ios::binary);
      o.write(reinterpret_cast<const char*>(full.data()), static_cast<std::streamsize>(keep));
    }
    std::string mapped_error, streamed_error;
    try {
      GgufFile::open(tmp.string());
    } catch (const GgufError& e) {
      mapped_error = e.what();
    }
    try {
      GgufFile::open_streamed(tmp.string(), 64);
    } catch (const GgufError& e) {
      streamed_error = e.what();
    }
    EXPECT_FALSE(mapped_error.empty()) << keep;
    EXPECT_EQ(streamed_error, mapped_error) << keep;
  }
  fs::remove(tmp);
  EXPECT_THROW(GgufFile::open_streamed("/nonexistent/model.gguf"), GgufError);
}
