// GGUF v2/v3 reader and writer.
//
// The reader works on a byte range it does not own (a memory map on native, a heap buffer in WASM) and checks
// every size and offset against that range: a corrupt file gives a GgufError with one clear message, never a
// crash or an out-of-range read. Tensor data is not touched at open; callers read it through `data()`.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/dtype.h"

namespace vireo {

struct GgufError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// GGUF metadata value types (ids as in the file).
enum class GgufType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7, STRING = 8, ARRAY = 9,
  U64 = 10, I64 = 11, F64 = 12,
};

struct GgufValue;
struct GgufArray {
  GgufType elem_type;
  std::vector<GgufValue> items;
};
struct GgufValue {
  GgufType type;
  std::variant<uint64_t, int64_t, double, bool, std::string, GgufArray> v;

  // Numeric views (any integer/float/bool type converts; throws GgufError on strings/arrays).
  int64_t as_int() const;
  uint64_t as_uint() const;
  double as_float() const;
  bool as_bool() const;
  const std::string& as_string() const;
  const GgufArray& as_array() const;
};

struct GgufTensorInfo {
  std::string name;
  DType type;
  std::vector<int64_t> shape;  // ne[0] is the contiguous (row) dimension
  uint64_t offset;             // relative to the data section
  int64_t n_elements() const;
  int64_t n_bytes() const;
};

// Bytes of a file the reader may look at: a memory map, an owned buffer, or (streamed) the file's first part
// in memory and the rest read on demand.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // The bytes in memory: the whole file, or a streamed file's first part.
  virtual std::span<const uint8_t> bytes() const = 0;
  // The file's size.
  virtual uint64_t size() const { return bytes().size(); }
  // Copies `n` bytes at `offset` (bounds-checked against size()) to `dst`.
  virtual void read(uint64_t offset, void* dst, size_t n) const;
  bool resident() const { return bytes().size() == size(); }
  // Memory-maps `path` read-only (falls back to reading it whole where mmap is missing, e.g. WASM).
  static std::unique_ptr<ByteSource> open_file(const std::string& path);
  static std::unique_ptr<ByteSource> from_buffer(std::vector<uint8_t> data);
  // Keeps the first `prefix` bytes of `path` in memory and reads the rest when asked (WASM: models larger
  // than the 4 GB heap, for backends that copy the weights to their device).
  static std::unique_ptr<ByteSource> open_streamed(const std::string& path, uint64_t prefix);
};

class GgufFile {
 public:
  // Parses header, metadata and tensor infos; validates every tensor's extent against the file.
  explicit GgufFile(std::unique_ptr<ByteSource> src);
  static GgufFile open(const std::string& path) { return GgufFile(ByteSource::open_file(path)); }
  // Parses the header from the file's first bytes (first_prefix, grown until the header fits) and reads tensor
  // data only through tensor_bytes(), one tensor at a time.
  static GgufFile open_streamed(const std::string& path, uint64_t first_prefix = uint64_t(256) << 10);

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  uint64_t file_size() const { return src_->size(); }
  // Whether the whole file is in memory (data() works); false for open_streamed().
  bool resident() const { return src_->resident(); }

  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const GgufValue* find(std::string_view key) const;
  // Typed getters: throw GgufError naming the key when missing or of the wrong kind.
  const GgufValue& get(std::string_view key) const;
  std::string get_string(std::string_view key, std::string_view fallback) const;
  int64_t get_int(std::string_view key, int64_t fallback) const;
  double get_float(std::string_view key, double fallback) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(std::string_view name) const;
  // Raw bytes of a tensor (already bounds-checked at open); needs a resident file.
  std::span<const uint8_t> data(const GgufTensorInfo& t) const;
  // Raw bytes of a tensor: data(t) when resident, else read into `scratch` (valid until its next use).
  std::span<const uint8_t> tensor_bytes(const GgufTensorInfo& t, std::vector<uint8_t>& scratch) const;

 private:
  std::unique_ptr<ByteSource> src_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> kv_index_, tensor_index_;
};

// Writes a GGUF v3 file. Metadata and tensor infos are collected first; tensor data is streamed in order.
class GgufWriter {
 public:
  void set(std::string key, GgufValue value);
  void set_u32(std::string key, uint32_t v) { set(std::move(key), {GgufType::U32, uint64_t(v)}); }
  void set_i32(std::string key, int32_t v) { set(std::move(key), {GgufType::I32, int64_t(v)}); }
  void set_f32(std::string key, float v) { set(std::move(key), {GgufType::F32, double(v)}); }
  void set_bool(std::string key, bool v) { set(std::move(key), {GgufType::BOOL, v}); }
  void set_string(std::string key, std::string v) { set(std::move(key), {GgufType::STRING, std::move(v)}); }
  void set_alignment(uint32_t a);
  // Declares a tensor; `bytes` must equal row_bytes(type, ...) of the shape.
  void add_tensor(std::string name, DType type, std::vector<int64_t> shape);

  // Writes header, metadata and tensor infos, then calls `fill(i, out)` for each tensor in order;
  // `fill` must append exactly the tensor's byte size to `out` (it may be called with a reused buffer).
  void write(const std::string& path,
             const std::function<void(size_t index, std::vector<uint8_t>& out)>& fill) const;
  // Same, to memory (tests, fuzz seeds).
  std::vector<uint8_t> write_to_memory(
      const std::function<void(size_t index, std::vector<uint8_t>& out)>& fill) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }

 private:
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<GgufTensorInfo> tensors_;
  uint32_t alignment_ = 32;
};

std::string gguf_type_name(GgufType t);
// Human-readable value (arrays abbreviated), for `vireo info`.
std::string gguf_value_to_string(const GgufValue& v, size_t max_items = 8);

}  // namespace vireo
