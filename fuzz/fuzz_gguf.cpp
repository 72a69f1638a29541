// libFuzzer target for the GGUF reader (build: scripts/fuzz.sh).
//
// Any input must either parse or throw vireo::GgufError. When it parses, everything a caller may touch is
// touched (every byte of every tensor, every metadata string and value view), and the file is written back
// through GgufWriter and parsed again: the second parse must give the same metadata, tensors and bytes.
// Anything else (a crash, a sanitizer report, another exception type, a round-trip mismatch) is a finding.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "gguf/gguf.h"

namespace {

using vireo::GgufArray;
using vireo::GgufError;
using vireo::GgufFile;
using vireo::GgufTensorInfo;
using vireo::GgufType;
using vireo::GgufValue;

[[noreturn]] void finding(const char* what) {
  std::fprintf(stderr, "fuzz_gguf: %s\n", what);
  std::abort();
}

volatile uint64_t g_sink;

uint64_t touch_value(const GgufValue& v) {
  uint64_t h = static_cast<uint64_t>(v.type);
  // Every numeric view either works or throws GgufError (never undefined behaviour).
  try { h += static_cast<uint64_t>(v.as_int()); } catch (const GgufError&) {}
  try { h += v.as_uint(); } catch (const GgufError&) {}
  try { h += static_cast<uint64_t>(v.as_float() != 0.0); } catch (const GgufError&) {}
  try { h += v.as_bool(); } catch (const GgufError&) {}
  h += vireo::gguf_value_to_string(v, 4).size();
  if (const auto* s = std::get_if<std::string>(&v.v)) {
    for (char c : *s) h = h * 131 + static_cast<uint8_t>(c);
  } else if (const auto* a = std::get_if<GgufArray>(&v.v)) {
    for (const GgufValue& x : a->items) {
      if (x.type != a->elem_type) finding("array item type differs from the element type");
      h = h * 31 + touch_value(x);
    }
  }
  return h;
}

uint64_t touch(const GgufFile& f, const uint8_t* base, size_t size) {
  uint64_t h = f.version() + f.alignment() + f.data_offset();
  for (const auto& [k, v] : f.metadata()) {
    for (char c : k) h = h * 131 + static_cast<uint8_t>(c);
    h += touch_value(v);
    if (f.find(k) != &v) finding("find() does not return the metadata entry");
  }
  h += f.get_string("general.architecture", "").size() == 0;
  try { h += static_cast<uint64_t>(f.get_int("general.alignment", 0)); } catch (const GgufError&) {}
  for (const GgufTensorInfo& t : f.tensors()) {
    if (f.find_tensor(t.name) != &t) finding("find_tensor() does not return the tensor");
    const std::span<const uint8_t> d = f.data(t);
    if (d.size() != static_cast<size_t>(t.n_bytes())) finding("tensor span has the wrong size");
    if (d.data() < base || d.data() + d.size() > base + size) finding("tensor span outside the file");
    for (uint8_t b : d) h += b;
  }
  return h;
}

bool same_value(const GgufValue& a, const GgufValue& b) {
  if (a.type != b.type || a.v.index() != b.v.index()) return false;
  if (const auto* x = std::get_if<double>(&a.v)) {
    const double y = std::get<double>(b.v);
    return std::memcmp(x, &y, sizeof y) == 0 || (*x != *x && y != y);
  }
  if (const auto* x = std::get_if<GgufArray>(&a.v)) {
    const GgufArray& y = std::get<GgufArray>(b.v);
    if (x->elem_type != y.elem_type || x->items.size() != y.items.size()) return false;
    for (size_t i = 0; i < x->items.size(); ++i)
      if (!same_value(x->items[i], y.items[i])) return false;
    return true;
  }
  if (const auto* x = std::get_if<uint64_t>(&a.v)) return *x == std::get<uint64_t>(b.v);
  if (const auto* x = std::get_if<int64_t>(&a.v)) return *x == std::get<int64_t>(b.v);
  if (const auto* x = std::get_if<bool>(&a.v)) return *x == std::get<bool>(b.v);
  return std::get<std::string>(a.v) == std::get<std::string>(b.v);
}

// Writes `f` back with GgufWriter and checks that reading the result gives the same file content.
void round_trip(const GgufFile& f) {
  vireo::GgufWriter w;
  for (const auto& [k, v] : f.metadata()) {
    if (k == "general.alignment") w.set_alignment(static_cast<uint32_t>(f.alignment()));
    w.set(k, v);  // keeps the original value type
  }
  for (const GgufTensorInfo& t : f.tensors()) w.add_tensor(t.name, t.type, t.shape);
  std::vector<uint8_t> out = w.write_to_memory([&](size_t i, std::vector<uint8_t>& buf) {
    const auto d = f.data(f.tensors()[i]);
    buf.insert(buf.end(), d.begin(), d.end());
  });
  const GgufFile g(vireo::ByteSource::from_buffer(std::move(out)));  // must not throw
  if (g.alignment() != f.alignment()) finding("round trip changed the alignment");
  if (g.metadata().size() != f.metadata().size()) finding("round trip changed the metadata count");
  for (size_t i = 0; i < f.metadata().size(); ++i) {
    if (g.metadata()[i].first != f.metadata()[i].first) finding("round trip changed a key");
    if (!same_value(g.metadata()[i].second, f.metadata()[i].second)) finding("round trip changed a value");
  }
  if (g.tensors().size() != f.tensors().size()) finding("round trip changed the tensor count");
  for (size_t i = 0; i < f.tensors().size(); ++i) {
    const GgufTensorInfo &a = f.tensors()[i], &b = g.tensors()[i];
    if (a.name != b.name || a.type != b.type || a.shape != b.shape) finding("round trip changed a tensor");
    const auto da = f.data(a), db = g.data(b);
    if (da.size() != db.size() || !std::equal(da.begin(), da.end(), db.begin()))
      finding("round trip changed tensor data");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::unique_ptr<vireo::ByteSource> src = vireo::ByteSource::from_buffer(std::vector<uint8_t>(data, data + size));
  const std::span<const uint8_t> bytes = src->bytes();
  try {
    const GgufFile f(std::move(src));
    g_sink = touch(f, bytes.data(), bytes.size());
    try {
      round_trip(f);
    } catch (const GgufError& e) {
      std::fprintf(stderr, "fuzz_gguf: round trip of an accepted file threw: %s\n", e.what());
      std::abort();
    }
  } catch (const GgufError&) {
    // Rejected: fine. Any other exception escapes and libFuzzer reports it.
  }
  return 0;
}
