#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <mutex>

#include "gguf/gguf.h"

#if !defined(__EMSCRIPTEN__)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

namespace vireo {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as little-endian u32
constexpr int kMaxDims = 4;
constexpr int kMaxArrayDepth = 8;
constexpr uint64_t kMaxStringLen = uint64_t(1) << 30;

[[noreturn]] void fail(const std::string& msg) { throw GgufError("invalid GGUF: " + msg); }

// Cursor over the file bytes; every read is checked against the end.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> b) : b_(b) {}
  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return b_.size() - pos_; }

  void need(uint64_t n, const char* what) const {
    if (n > remaining())
      fail("file truncated while reading " + std::string(what) + " at byte " + std::to_string(pos_) + " (need " +
           std::to_string(n) + " bytes, " + std::to_string(remaining()) + " left)");
  }
  template <class T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const char* what) {
    uint64_t n = read<uint64_t>(what);
    if (n > kMaxStringLen) fail(std::string(what) + " has absurd length " + std::to_string(n));
    need(n, what);
    std::string s(reinterpret_cast<const char*>(b_.data() + pos_), n);
    pos_ += n;
    return s;
  }

 private:
  std::span<const uint8_t> b_;
  uint64_t pos_ = 0;

 public:
  // Array items held in memory so far (each costs ~48 bytes, whatever its size in the file).
  uint64_t array_items = 0;
};

// Smallest number of bytes one value of a type occupies in the file (bounds absurd array counts).
uint64_t min_value_bytes(GgufType t) {
  switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::BOOL: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    case GgufType::U64: case GgufType::I64: case GgufType::F64: case GgufType::STRING: return 8;
    case GgufType::ARRAY: return 12;
  }
  return 1;
}

bool valid_type(uint32_t t) { return t <= 12; }

GgufValue read_value(Reader& r, GgufType t, int depth, const std::string& key) {
  switch (t) {
    case GgufType::U8: return {t, uint64_t(r.read<uint8_t>("u8 value"))};
    case GgufType::I8: return {t, int64_t(r.read<int8_t>("i8 value"))};
    case GgufType::U16: return {t, uint64_t(r.read<uint16_t>("u16 value"))};
    case GgufType::I16: return {t, int64_t(r.read<int16_t>("i16 value"))};
    case GgufType::U32: return {t, uint64_t(r.read<uint32_t>("u32 value"))};
    case GgufType::I32: return {t, int64_t(r.read<int32_t>("i32 value"))};
    case GgufType::U64: return {t, r.read<uint64_t>("u64 value")};
    case GgufType::I64: return {t, r.read<int64_t>("i64 value")};
    case GgufType::F32: return {t, double(r.read<float>("f32 value"))};
    case GgufType::F64: return {t, r.read<double>("f64 value")};
    case GgufType::BOOL: {
      uint8_t b = r.read<uint8_t>("bool value");
      if (b > 1) fail("key '" + key + "': bool value " + std::to_string(b) + " is not 0 or 1");
      return {t, b != 0};
    }
    case GgufType::STRING: return {t, r.read_string("string value")};
    case GgufType::ARRAY: {
      if (depth >= kMaxArrayDepth) fail("key '" + key + "': arrays nested deeper than " + std::to_string(kMaxArrayDepth));
      uint32_t et = r.read<uint32_t>("array element type");
      if (!valid_type(et)) fail("key '" + key + "': unknown array element type " + std::to_string(et));
      uint64_t n = r.read<uint64_t>("array length");
      GgufType elem = static_cast<GgufType>(et);
      if (n > r.remaining() / min_value_bytes(elem))
        fail("key '" + key + "': array length " + std::to_string(n) + " exceeds the file");
      GgufArray arr{elem, {}};
      // A u8 array costs ~48x its file size once parsed: bound the total so a hostile file gets an error,
      // not an allocation failure. Real vocabularies hold well under a million items per array.
      constexpr uint64_t kMaxArrayItems = uint64_t(1) << 25;
      r.array_items += n;
      if (r.array_items > kMaxArrayItems)
        fail("key '" + key + "': metadata arrays hold more than " + std::to_string(kMaxArrayItems) + " items");
      arr.items.reserve(n);
      for (uint64_t i = 0; i < n; ++i) arr.items.push_back(read_value(r, elem, depth + 1, key));
      return {t, std::move(arr)};
    }
  }
  fail("key '" + key + "': unknown value type " + std::to_string(uint32_t(t)));
}

#if !defined(__EMSCRIPTEN__)
class MappedFile : public ByteSource {
 public:
  explicit MappedFile(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) throw GgufError("cannot open '" + path + "': " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      ::close(fd);
      throw GgufError("cannot stat '" + path + "'");
    }
    size_ = static_cast<size_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
      if (p == MAP_FAILED) {
        ::close(fd);
        throw GgufError("cannot map '" + path + "': " + std::strerror(errno));
      }
      data_ = static_cast<const uint8_t*>(p);
    }
    ::close(fd);
  }
  ~MappedFile() override {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
  }
  std::span<const uint8_t> bytes() const override { return {data_, size_}; }

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};
#endif

class BufferSource : public ByteSource {
 public:
  explicit BufferSource(std::vector<uint8_t> d) : d_(std::move(d)) {}
  std::span<const uint8_t> bytes() const override { return {d_.data(), d_.size()}; }

 private:
  std::vector<uint8_t> d_;
};

}  // namespace

std::unique_ptr<ByteSource> ByteSource::open_file(const std::string& path) {
#if !defined(__EMSCRIPTEN__)
  return std::make_unique<MappedFile>(path);
#else
  // Sized once and read in large pieces: in the browser every read is a call into JavaScript (WORKERFS), so
  // byte-wise stream iteration took minutes for a 640 MB model.
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw GgufError("cannot open '" + path + "'");
  std::vector<uint8_t> d;
  try {
    if (fseeko(f, 0, SEEK_END) != 0) throw GgufError("cannot seek in '" + path + "'");
    d.resize(static_cast<size_t>(ftello(f)));
    fseeko(f, 0, SEEK_SET);
    for (size_t at = 0; at < d.size();) {
      const size_t got = std::fread(d.data() + at, 1, std::min<size_t>(d.size() - at, size_t(64) << 20), f);
      if (got == 0) throw GgufError("cannot read '" + path + "'");
      at += got;
    }
  } catch (...) {
    std::fclose(f);
    throw;
  }
  std::fclose(f);
  return from_buffer(std::move(d));
#endif
}

std::unique_ptr<ByteSource> ByteSource::from_buffer(std::vector<uint8_t> data) {
  return std::make_unique<BufferSource>(std::move(data));
}

void ByteSource::read(uint64_t offset, void* dst, size_t n) const {
  const auto b = bytes();
  if (offset > b.size() || n > b.size() - offset) throw GgufError("read past the end of the file");
  std::memcpy(dst, b.data() + offset, n);
}

namespace {
class StreamedFile : public ByteSource {
 public:
  StreamedFile(const std::string& path, uint64_t prefix) : path_(path) {
    f_ = std::fopen(path.c_str(), "rb");
    if (!f_) throw GgufError("cannot open '" + path + "': " + std::strerror(errno));
    if (fseeko(f_, 0, SEEK_END) != 0) {
      std::fclose(f_);
      throw GgufError("cannot seek in '" + path + "'");
    }
    size_ = static_cast<uint64_t>(ftello(f_));
    prefix_.resize(static_cast<size_t>(std::min(prefix, size_)));
    read(0, prefix_.data(), prefix_.size());
  }
  ~StreamedFile() override { std::fclose(f_); }
  std::span<const uint8_t> bytes() const override { return {prefix_.data(), prefix_.size()}; }
  uint64_t size() const override { return size_; }
  void read(uint64_t offset, void* dst, size_t n) const override {
    if (offset > size_ || n > size_ - offset) throw GgufError("read past the end of '" + path_ + "'");
    std::lock_guard<std::mutex> lock(mu_);
    if (fseeko(f_, static_cast<off_t>(offset), SEEK_SET) != 0 || std::fread(dst, 1, n, f_) != n)
      throw GgufError("cannot read " + std::to_string(n) + " bytes at offset " + std::to_string(offset) + " of '" +
                      path_ + "'");
  }

 private:
  std::string path_;
  std::FILE* f_ = nullptr;
  uint64_t size_ = 0;
  std::vector<uint8_t> prefix_;
  mutable std::mutex mu_;
};
}  // namespace

std::unique_ptr<ByteSource> ByteSource::open_streamed(const std::string& path, uint64_t prefix) {
  return std::make_unique<StreamedFile>(path, prefix);
}

GgufFile GgufFile::open_streamed(const std::string& path, uint64_t first_prefix) {
  // Headers are small next to the weights (most well under 256 KiB; a 262K-token vocabulary ~10 MB): grow the
  // prefix 4x until the header fits (a failed try costs at most its prefix); a whole-file prefix gives the same
  // errors as open().
  for (uint64_t prefix = std::max<uint64_t>(first_prefix, 64);; prefix *= 4) {
    auto src = ByteSource::open_streamed(path, prefix);
    const bool whole = src->resident();
    try {
      return GgufFile(std::move(src));
    } catch (const GgufError&) {
      if (whole) throw;
    }
  }
}

int64_t GgufTensorInfo::n_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}
int64_t GgufTensorInfo::n_bytes() const { return n_elements() / shape[0] * row_bytes(type, shape[0]); }

GgufFile::GgufFile(std::unique_ptr<ByteSource> src) : src_(std::move(src)) {
  const std::span<const uint8_t> bytes = src_->bytes();
  Reader r(bytes);
  if (bytes.size() < 4) fail("file too small (" + std::to_string(bytes.size()) + " bytes) to be GGUF");
  uint32_t magic = r.read<uint32_t>("magic");
  if (magic != kMagic) fail("bad magic (not a GGUF file)");
  version_ = r.read<uint32_t>("version");
  if (version_ != 2 && version_ != 3)
    fail("unsupported version " + std::to_string(version_) + " (vireo reads GGUF v2 and v3)");
  uint64_t n_tensors = r.read<uint64_t>("tensor count");
  uint64_t n_kv = r.read<uint64_t>("metadata count");
  // Each key-value pair needs at least 8 (key length) + 4 (type) + 1 bytes; each tensor info at least 8+4+8+4+8.
  if (n_kv > r.remaining() / 13) fail("metadata count " + std::to_string(n_kv) + " exceeds the file");
  if (n_tensors > r.remaining() / 32) fail("tensor count " + std::to_string(n_tensors) + " exceeds the file");

  kv_.reserve(n_kv);
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = r.read_string("metadata key");
    uint32_t t = r.read<uint32_t>("metadata value type");
    if (!valid_type(t)) fail("key '" + key + "': unknown value type " + std::to_string(t));
    GgufValue v = read_value(r, static_cast<GgufType>(t), 0, key);
    if (!kv_index_.emplace(key, kv_.size()).second) fail("duplicate metadata key '" + key + "'");
    kv_.emplace_back(std::move(key), std::move(v));
  }

  if (const GgufValue* a = find("general.alignment")) {
    if (a->type != GgufType::U32 && a->type != GgufType::I32 && a->type != GgufType::U64)
      fail("general.alignment must be an integer");
    // Read the raw value (a huge u64 must give this message, not as_int()'s range error).
    uint64_t al = 0;
    if (auto u = std::get_if<uint64_t>(&a->v)) al = *u;
    else if (auto i = std::get_if<int64_t>(&a->v)) al = *i < 0 ? 0 : static_cast<uint64_t>(*i);
    if (al == 0 || al > (1u << 20) || (al & (al - 1)) != 0)
      fail("general.alignment " + gguf_value_to_string(*a) + " is not a power of two in [1, 1 MiB]");
    alignment_ = al;
  }

  tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo ti;
    ti.name = r.read_string("tensor name");
    uint32_t n_dims = r.read<uint32_t>("tensor dimension count");
    if (n_dims == 0 || n_dims > kMaxDims)
      fail("tensor '" + ti.name + "' has " + std::to_string(n_dims) + " dimensions (1 to 4 allowed)");
    int64_t n_elem = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t dim = r.read<uint64_t>("tensor dimension");
      if (dim == 0 || dim > (uint64_t(1) << 40))
        fail("tensor '" + ti.name + "' has absurd dimension " + std::to_string(dim));
      if (n_elem > (int64_t(1) << 50) / static_cast<int64_t>(dim))
        fail("tensor '" + ti.name + "' has too many elements");
      n_elem *= static_cast<int64_t>(dim);
      ti.shape.push_back(static_cast<int64_t>(dim));
    }
    uint32_t type = r.read<uint32_t>("tensor type");
    const DTypeInfo* info = dtype_info(type);
    if (!info) fail("tensor '" + ti.name + "' has unknown type id " + std::to_string(type));
    ti.type = static_cast<DType>(type);
    if (ti.shape[0] % info->block_elems != 0)
      fail("tensor '" + ti.name + "': row length " + std::to_string(ti.shape[0]) + " is not a multiple of the " +
           std::string(info->name) + " block size " + std::to_string(info->block_elems));
    ti.offset = r.read<uint64_t>("tensor offset");
    if (ti.offset % alignment_ != 0)
      fail("tensor '" + ti.name + "' offset " + std::to_string(ti.offset) + " is not aligned to " +
           std::to_string(alignment_));
    if (!tensor_index_.emplace(ti.name, tensors_.size()).second) fail("duplicate tensor name '" + ti.name + "'");
    tensors_.push_back(std::move(ti));
  }

  data_offset_ = (r.pos() + alignment_ - 1) / alignment_ * alignment_;
  const uint64_t file_size = src_->size();
  if (n_tensors > 0 && data_offset_ > file_size) fail("file truncated before the tensor data section");
  const uint64_t data_size = file_size > data_offset_ ? file_size - data_offset_ : 0;

  // Every tensor lies inside the data section and no two overlap.
  std::vector<const GgufTensorInfo*> by_offset;
  for (const auto& t : tensors_) {
    uint64_t nb = static_cast<uint64_t>(t.n_bytes());
    if (t.offset > data_size || nb > data_size - t.offset)
      fail("tensor '" + t.name + "' (" + std::to_string(nb) + " bytes at offset " + std::to_string(t.offset) +
           ") extends past the end of the file (data section is " + std::to_string(data_size) +
           " bytes): file truncated?");
    by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const GgufTensorInfo* a, const GgufTensorInfo* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const GgufTensorInfo& a = *by_offset[i - 1];
    if (a.offset + static_cast<uint64_t>(a.n_bytes()) > by_offset[i]->offset)
      fail("tensors '" + a.name + "' and '" + by_offset[i]->name + "' overlap");
  }
}

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const GgufValue& GgufFile::get(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) throw GgufError("missing metadata key '" + std::string(key) + "'");
  return *v;
}

std::string GgufFile::get_string(std::string_view key, std::string_view fallback) const {
  const GgufValue* v = find(key);
  return v ? v->as_string() : std::string(fallback);
}
int64_t GgufFile::get_int(std::string_view key, int64_t fallback) const {
  const GgufValue* v = find(key);
  return v ? v->as_int() : fallback;
}
double GgufFile::get_float(std::string_view key, double fallback) const {
  const GgufValue* v = find(key);
  return v ? v->as_float() : fallback;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::span<const uint8_t> GgufFile::data(const GgufTensorInfo& t) const {
  if (!src_->resident()) throw GgufError("tensor '" + t.name + "': the file is streamed, not in memory");
  return src_->bytes().subspan(data_offset_ + t.offset, static_cast<size_t>(t.n_bytes()));
}

std::span<const uint8_t> GgufFile::tensor_bytes(const GgufTensorInfo& t, std::vector<uint8_t>& scratch) const {
  if (src_->resident()) return data(t);
  scratch.resize(static_cast<size_t>(t.n_bytes()));
  src_->read(data_offset_ + t.offset, scratch.data(), scratch.size());
  return {scratch.data(), scratch.size()};
}

// ---- value accessors ----
int64_t GgufValue::as_int() const {
  if (auto p = std::get_if<int64_t>(&v)) return *p;
  if (auto p = std::get_if<uint64_t>(&v)) {
    if (*p > uint64_t(std::numeric_limits<int64_t>::max())) throw GgufError("integer value out of range");
    return static_cast<int64_t>(*p);
  }
  if (auto p = std::get_if<double>(&v)) {
    // Out-of-range (or NaN) float-to-integer conversion is undefined behaviour: refuse it.
    if (!(*p >= -9223372036854775808.0 && *p < 9223372036854775808.0))
      throw GgufError("metadata value " + gguf_value_to_string(*this) + " does not fit a 64-bit integer");
    return static_cast<int64_t>(*p);
  }
  if (auto p = std::get_if<bool>(&v)) return *p;
  throw GgufError("metadata value of type " + gguf_type_name(type) + " is not a number");
}
uint64_t GgufValue::as_uint() const {
  if (auto p = std::get_if<uint64_t>(&v)) return *p;
  int64_t i = as_int();
  if (i < 0) throw GgufError("negative value where an unsigned one is required");
  return static_cast<uint64_t>(i);
}
double GgufValue::as_float() const {
  if (auto p = std::get_if<double>(&v)) return *p;
  if (auto p = std::get_if<uint64_t>(&v)) return static_cast<double>(*p);
  return static_cast<double>(as_int());
}
bool GgufValue::as_bool() const {
  if (auto p = std::get_if<bool>(&v)) return *p;
  return as_int() != 0;
}
const std::string& GgufValue::as_string() const {
  if (auto p = std::get_if<std::string>(&v)) return *p;
  throw GgufError("metadata value of type " + gguf_type_name(type) + " is not a string");
}
const GgufArray& GgufValue::as_array() const {
  if (auto p = std::get_if<GgufArray>(&v)) return *p;
  throw GgufError("metadata value of type " + gguf_type_name(type) + " is not an array");
}

std::string gguf_type_name(GgufType t) {
  static const char* names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool",
                                "string", "array", "u64", "i64", "f64"};
  uint32_t i = static_cast<uint32_t>(t);
  return i < 13 ? names[i] : "type" + std::to_string(i);
}

std::string gguf_value_to_string(const GgufValue& v, size_t max_items) {
  if (auto p = std::get_if<uint64_t>(&v.v)) return std::to_string(*p);
  if (auto p = std::get_if<int64_t>(&v.v)) return std::to_string(*p);
  if (auto p = std::get_if<double>(&v.v)) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%g", *p);
    return buf;
  }
  if (auto p = std::get_if<bool>(&v.v)) return *p ? "true" : "false";
  if (auto p = std::get_if<std::string>(&v.v)) {
    std::string s = *p;
    if (s.size() > 80) s = s.substr(0, 77) + "...";
    std::string out = "\"";
    for (char c : s) out += (c == '\n') ? std::string("\\n") : std::string(1, c);
    return out + "\"";
  }
  const GgufArray& a = std::get<GgufArray>(v.v);
  std::string out = "[" + gguf_type_name(a.elem_type) + " x " + std::to_string(a.items.size()) + "]";
  if (!a.items.empty() && max_items > 0) {
    out += " ";
    for (size_t i = 0; i < a.items.size() && i < max_items; ++i)
      out += (i ? ", " : "") + gguf_value_to_string(a.items[i], 0);
    if (a.items.size() > max_items) out += ", ...";
  }
  return out;
}

}  // namespace vireo
