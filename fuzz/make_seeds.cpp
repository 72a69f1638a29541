// Writes a small seed corpus for fuzz_gguf (generated at run time; nothing is committed):
//   make_seeds OUT_DIR [model.gguf ...]
// For each model: the same metadata and tensor infos with every tensor cut to one row (so a seed is tens of KB,
// not MBs), and a variant whose arrays are cut to 16 items. Plus writer-made files covering every metadata
// type, nested and empty arrays, a custom alignment, several tensor types, a v2 header and an empty file.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "gguf/gguf.h"

using namespace vireo;
using Bytes = std::vector<uint8_t>;

namespace {

void fill_pattern(size_t index, size_t n, Bytes& out) {
  for (size_t i = 0; i < n; ++i) out.push_back(static_cast<uint8_t>((i * 37 + index * 11) & 0xFF));
}

GgufValue cut_arrays(const GgufValue& v, size_t max_items) {
  if (const auto* a = std::get_if<GgufArray>(&v.v)) {
    GgufArray c{a->elem_type, {}};
    for (size_t i = 0; i < a->items.size() && i < max_items; ++i) c.items.push_back(cut_arrays(a->items[i], max_items));
    return {v.type, std::move(c)};
  }
  return v;
}

Bytes shrink(const GgufFile& f, size_t max_items) {
  GgufWriter w;
  for (const auto& [k, v] : f.metadata()) {
    if (k == "general.alignment") w.set_alignment(static_cast<uint32_t>(f.alignment()));
    w.set(k, cut_arrays(v, max_items));
  }
  for (const GgufTensorInfo& t : f.tensors()) {
    std::vector<int64_t> shape = t.shape;
    std::fill(shape.begin() + 1, shape.end(), 1);  // one row, same number of dims
    w.add_tensor(t.name, t.type, shape);
  }
  return w.write_to_memory([&](size_t i, Bytes& out) {
    fill_pattern(i, static_cast<size_t>(w.tensors()[i].n_bytes()), out);
  });
}

GgufValue I(GgufType t, int64_t v) { return {t, v}; }
GgufValue U(GgufType t, uint64_t v) { return {t, v}; }
GgufValue S(std::string s) { return {GgufType::STRING, std::move(s)}; }
GgufValue A(GgufType e, std::vector<GgufValue> items) { return {GgufType::ARRAY, GgufArray{e, std::move(items)}}; }

Bytes every_type() {
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_alignment(64);
  w.set("u8", U(GgufType::U8, 200));
  w.set("i8", I(GgufType::I8, -5));
  w.set("u16", U(GgufType::U16, 60000));
  w.set("i16", I(GgufType::I16, -300));
  w.set_u32("llama.block_count", 2);
  w.set_i32("i32", -7);
  w.set("u64", U(GgufType::U64, 1ull << 40));
  w.set("i64", I(GgufType::I64, -(1ll << 40)));
  w.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.set("f64", GgufValue{GgufType::F64, 0.25});
  w.set_bool("bool", true);
  w.set("tokenizer.ggml.tokens", A(GgufType::STRING, {S("<unk>"), S("<s>"), S("</s>"), S("a"), S("b")}));
  w.set("tokenizer.ggml.scores", A(GgufType::F32, {GgufValue{GgufType::F32, 0.0}, GgufValue{GgufType::F32, -1.5}}));
  w.set("nested", A(GgufType::ARRAY, {A(GgufType::I32, {I(GgufType::I32, 1)}), A(GgufType::I32, {})}));
  w.set("empty", A(GgufType::STRING, {}));
  w.set("bools", A(GgufType::BOOL, {GgufValue{GgufType::BOOL, false}}));
  w.add_tensor("f32", DType::F32, {4, 2});
  w.add_tensor("f16", DType::F16, {3});
  w.add_tensor("q4_0", DType::Q4_0, {32});
  w.add_tensor("q8_0", DType::Q8_0, {32, 1, 2});
  w.add_tensor("q4_k", DType::Q4_K, {256});
  w.add_tensor("q6_k", DType::Q6_K, {256, 1, 1, 1});
  w.add_tensor("i8", DType::I8, {5});
  return w.write_to_memory([&](size_t i, Bytes& out) {
    fill_pattern(i, static_cast<size_t>(w.tensors()[i].n_bytes()), out);
  });
}

bool save(const std::string& path, const Bytes& b) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return false;
  const bool ok = std::fwrite(b.data(), 1, b.size(), f) == b.size();
  return std::fclose(f) == 0 && ok;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR [model.gguf ...]\n", argv[0]);
    return 2;
  }
  const std::string out = argv[1];
  int n = 0, failed = 0;
  auto emit = [&](const std::string& name, const Bytes& b) {
    try {
      GgufFile check(ByteSource::from_buffer(b));  // every seed is a valid file
    } catch (const std::exception& e) {
      std::fprintf(stderr, "seed %s does not parse: %s\n", name.c_str(), e.what());
      ++failed;
      return;
    }
    if (!save(out + "/" + name, b)) {
      std::fprintf(stderr, "cannot write %s/%s\n", out.c_str(), name.c_str());
      ++failed;
      return;
    }
    ++n;
  };
  for (int i = 2; i < argc; ++i) {
    std::string base = argv[i];
    base = base.substr(base.find_last_of('/') + 1);
    try {
      const GgufFile f = GgufFile::open(argv[i]);
      emit("model-" + base, shrink(f, size_t(-1)));
      emit("model-cut-" + base, shrink(f, 16));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "skipping %s: %s\n", argv[i], e.what());
    }
  }
  Bytes sample = every_type();
  emit("every-type.gguf", sample);
  sample[4] = 2;
  emit("every-type-v2.gguf", sample);
  emit("empty.gguf", GgufWriter().write_to_memory([](size_t, Bytes&) {}));
  std::printf("wrote %d seeds to %s\n", n, out.c_str());
  return failed ? 1 : 0;
}
