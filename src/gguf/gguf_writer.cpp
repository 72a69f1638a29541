#include <cstdio>
#include <cstring>
#include <memory>

#include "gguf/gguf.h"

namespace vireo {
namespace {

class Sink {
 public:
  virtual ~Sink() = default;
  virtual void put(const void* p, size_t n) = 0;
  virtual uint64_t pos() const = 0;
  template <class T>
  void pod(T v) { put(&v, sizeof v); }
  void str(const std::string& s) {
    pod<uint64_t>(s.size());
    put(s.data(), s.size());
  }
  void pad_to(uint64_t align) {
    static const uint8_t zeros[64] = {};
    uint64_t n = (align - pos() % align) % align;
    while (n > 0) {
      uint64_t k = std::min<uint64_t>(n, sizeof zeros);
      put(zeros, k);
      n -= k;
    }
  }
};

class MemorySink : public Sink {
 public:
  std::vector<uint8_t> buf;
  void put(const void* p, size_t n) override {
    auto b = static_cast<const uint8_t*>(p);
    buf.insert(buf.end(), b, b + n);
  }
  uint64_t pos() const override { return buf.size(); }
};

class FileSink : public Sink {
 public:
  explicit FileSink(const std::string& path) : path_(path), f_(std::fopen(path.c_str(), "wb")) {
    if (!f_) throw GgufError("cannot create '" + path + "'");
  }
  ~FileSink() override {
    if (f_) std::fclose(f_);
  }
  void put(const void* p, size_t n) override {
    if (n && std::fwrite(p, 1, n, f_) != n) throw GgufError("write to '" + path_ + "' failed (disk full?)");
    pos_ += n;
  }
  uint64_t pos() const override { return pos_; }
  void close() {
    if (std::fclose(f_) != 0) {
      f_ = nullptr;
      throw GgufError("closing '" + path_ + "' failed");
    }
    f_ = nullptr;
  }

 private:
  std::string path_;
  FILE* f_;
  uint64_t pos_ = 0;
};

void write_value(Sink& s, const GgufValue& v) {
  switch (v.type) {
    case GgufType::U8: s.pod<uint8_t>(static_cast<uint8_t>(v.as_uint())); break;
    case GgufType::I8: s.pod<int8_t>(static_cast<int8_t>(v.as_int())); break;
    case GgufType::U16: s.pod<uint16_t>(static_cast<uint16_t>(v.as_uint())); break;
    case GgufType::I16: s.pod<int16_t>(static_cast<int16_t>(v.as_int())); break;
    case GgufType::U32: s.pod<uint32_t>(static_cast<uint32_t>(v.as_uint())); break;
    case GgufType::I32: s.pod<int32_t>(static_cast<int32_t>(v.as_int())); break;
    case GgufType::U64: s.pod<uint64_t>(v.as_uint()); break;
    case GgufType::I64: s.pod<int64_t>(v.as_int()); break;
    case GgufType::F32: s.pod<float>(static_cast<float>(v.as_float())); break;
    case GgufType::F64: s.pod<double>(v.as_float()); break;
    case GgufType::BOOL: s.pod<uint8_t>(v.as_bool() ? 1 : 0); break;
    case GgufType::STRING: s.str(v.as_string()); break;
    case GgufType::ARRAY: {
      const GgufArray& a = v.as_array();
      s.pod<uint32_t>(static_cast<uint32_t>(a.elem_type));
      s.pod<uint64_t>(a.items.size());
      for (const GgufValue& item : a.items) {
        if (item.type != a.elem_type) throw GgufError("array item type differs from the array's element type");
        write_value(s, item);
      }
      break;
    }
  }
}

}  // namespace

void GgufWriter::set(std::string key, GgufValue value) {
  for (auto& kv : kv_)
    if (kv.first == key) {
      kv.second = std::move(value);
      return;
    }
  kv_.emplace_back(std::move(key), std::move(value));
}

void GgufWriter::set_alignment(uint32_t a) {
  if (a == 0 || (a & (a - 1)) != 0) throw GgufError("alignment must be a power of two");
  alignment_ = a;
  set_u32("general.alignment", a);
}

void GgufWriter::add_tensor(std::string name, DType type, std::vector<int64_t> shape) {
  if (shape.empty() || shape.size() > 4) throw GgufError("tensor '" + name + "' must have 1 to 4 dimensions");
  if (shape[0] % dtype_info(type).block_elems != 0)
    throw GgufError("tensor '" + name + "': row length is not a multiple of the block size");
  uint64_t offset = 0;
  if (!tensors_.empty()) {
    const GgufTensorInfo& last = tensors_.back();
    offset = (last.offset + static_cast<uint64_t>(last.n_bytes()) + alignment_ - 1) / alignment_ * alignment_;
  }
  tensors_.push_back({std::move(name), type, std::move(shape), offset});
}

static void write_all(Sink& s, const std::vector<std::pair<std::string, GgufValue>>& kv,
                      const std::vector<GgufTensorInfo>& tensors, uint32_t alignment,
                      const std::function<void(size_t, std::vector<uint8_t>&)>& fill) {
  s.pod<uint32_t>(0x46554747);
  s.pod<uint32_t>(3);
  s.pod<uint64_t>(tensors.size());
  s.pod<uint64_t>(kv.size());
  for (const auto& [k, v] : kv) {
    s.str(k);
    s.pod<uint32_t>(static_cast<uint32_t>(v.type));
    write_value(s, v);
  }
  for (const auto& t : tensors) {
    s.str(t.name);
    s.pod<uint32_t>(static_cast<uint32_t>(t.shape.size()));
    for (int64_t d : t.shape) s.pod<uint64_t>(static_cast<uint64_t>(d));
    s.pod<uint32_t>(static_cast<uint32_t>(t.type));
    s.pod<uint64_t>(t.offset);
  }
  s.pad_to(alignment);
  const uint64_t base = s.pos();
  std::vector<uint8_t> buf;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const uint64_t want = base + tensors[i].offset;
    while (s.pos() < want) s.pod<uint8_t>(0);
    buf.clear();
    fill(i, buf);
    if (buf.size() != static_cast<size_t>(tensors[i].n_bytes()))
      throw GgufError("tensor '" + tensors[i].name + "': writer got " + std::to_string(buf.size()) +
                      " bytes, expected " + std::to_string(tensors[i].n_bytes()));
    s.put(buf.data(), buf.size());
  }
}

void GgufWriter::write(const std::string& path,
                       const std::function<void(size_t, std::vector<uint8_t>&)>& fill) const {
  FileSink s(path);
  write_all(s, kv_, tensors_, alignment_, fill);
  s.close();
}

std::vector<uint8_t> GgufWriter::write_to_memory(
    const std::function<void(size_t, std::vector<uint8_t>&)>& fill) const {
  MemorySink s;
  write_all(s, kv_, tensors_, alignment_, fill);
  return std::move(s.buf);
}

}  // namespace vireo
