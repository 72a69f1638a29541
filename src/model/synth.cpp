#include "model/synth.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <stdexcept>
#include <unordered_set>

#include "gguf/gguf.h"
#include "quant/quant.h"

namespace vireo {
namespace {

// ---- presets ----

SynthPreset llama3(std::string name, std::string display, int64_t dim, int64_t layers, int64_t heads, int64_t ffn,
                   bool tied, float rope_factor) {
  SynthPreset p;
  p.name = std::move(name), p.arch = "llama", p.display_name = std::move(display);
  p.dim = dim, p.n_layers = layers, p.n_heads = heads, p.n_kv_heads = 8, p.ffn_dim = ffn, p.n_vocab = 128256;
  p.ctx = 131072, p.rope_theta = 500000.0, p.norm_eps = 1e-5f, p.tied_embeddings = tied;
  p.rope_scale_factor = rope_factor, p.rope_low_freq_factor = 1, p.rope_high_freq_factor = 4, p.rope_orig_ctx = 8192;
  p.tokenizer_pre = "llama-bpe", p.bos_id = 128000, p.eos_id = 128009, p.add_bos = true;
  return p;
}

const std::vector<SynthPreset>& presets() {
  static const std::vector<SynthPreset> all = [] {
    std::vector<SynthPreset> v;
    v.push_back(llama3("llama3.1-8b", "Llama 3.1 8B (synthetic)", 4096, 32, 32, 14336, false, 8));
    v.push_back(llama3("llama3.2-1b", "Llama 3.2 1B (synthetic)", 2048, 16, 32, 8192, true, 32));
    v.push_back(llama3("llama3.2-3b", "Llama 3.2 3B (synthetic)", 3072, 28, 24, 8192, true, 32));
    {
      SynthPreset p;
      p.name = "tinyllama-1.1b", p.arch = "llama", p.display_name = "TinyLlama 1.1B (synthetic)";
      p.dim = 2048, p.n_layers = 22, p.n_heads = 32, p.n_kv_heads = 4, p.ffn_dim = 5632, p.n_vocab = 32000;
      p.ctx = 2048, p.rope_theta = 10000.0, p.norm_eps = 1e-5f, p.tied_embeddings = false;
      p.tokenizer_pre = "default", p.bos_id = 1, p.eos_id = 2, p.add_bos = true;
      v.push_back(p);
    }
    {
      SynthPreset p;
      p.name = "qwen2.5-0.5b", p.arch = "qwen2", p.display_name = "Qwen2.5 0.5B (synthetic)";
      p.dim = 896, p.n_layers = 24, p.n_heads = 14, p.n_kv_heads = 2, p.ffn_dim = 4864, p.n_vocab = 151936;
      p.ctx = 32768, p.rope_theta = 1000000.0, p.norm_eps = 1e-6f, p.tied_embeddings = true, p.qkv_bias = true;
      p.tokenizer_pre = "qwen2", p.bos_id = 151643, p.eos_id = 151645, p.add_bos = false;
      v.push_back(p);
    }
    {  // k-quant friendly rows (256), 8 layers so the "more bits" layer rule has all its cases
      SynthPreset p;
      p.name = "test-tiny", p.arch = "llama", p.display_name = "vireo test tiny (synthetic)";
      p.dim = 256, p.n_layers = 8, p.n_heads = 4, p.n_kv_heads = 2, p.ffn_dim = 512, p.n_vocab = 512;
      p.ctx = 512, p.rope_theta = 500000.0, p.norm_eps = 1e-5f, p.tied_embeddings = false;
      p.rope_scale_factor = 8, p.rope_low_freq_factor = 1, p.rope_high_freq_factor = 4, p.rope_orig_ctx = 64;
      p.tokenizer_pre = "llama-bpe", p.bos_id = 510, p.eos_id = 511, p.add_bos = true, p.hidden = true;
      v.push_back(p);
    }
    {  // Qwen2-shaped, tied, with rows (128) that force the k-quant fallbacks
      SynthPreset p;
      p.name = "test-tiny-qwen2", p.arch = "qwen2", p.display_name = "vireo test tiny qwen2 (synthetic)";
      p.dim = 128, p.n_layers = 3, p.n_heads = 4, p.n_kv_heads = 1, p.ffn_dim = 256, p.n_vocab = 300;
      p.ctx = 256, p.rope_theta = 1000000.0, p.norm_eps = 1e-6f, p.tied_embeddings = true, p.qkv_bias = true;
      p.tokenizer_pre = "qwen2", p.bos_id = 298, p.eos_id = 299, p.add_bos = false, p.hidden = true;
      v.push_back(p);
    }
    return v;
  }();
  return all;
}

// ---- file types and the quantization mix (the rules of llama.cpp's quantize tool) ----

struct FileTypeEntry {
  const char* name;
  uint32_t ftype;
  DType base;
};
const FileTypeEntry kFileTypes[] = {
    {"f32", 0, DType::F32},     {"f16", 1, DType::F16},     {"bf16", 32, DType::BF16},
    {"q4_0", 2, DType::Q4_0},   {"q4_1", 3, DType::Q4_1},   {"q5_0", 8, DType::Q5_0},
    {"q5_1", 9, DType::Q5_1},   {"q8_0", 7, DType::Q8_0},   {"q2_k", 10, DType::Q2_K},
    {"q3_k_s", 11, DType::Q3_K}, {"q3_k_m", 12, DType::Q3_K}, {"q3_k_l", 13, DType::Q3_K},
    {"q4_k_s", 14, DType::Q4_K}, {"q4_k_m", 15, DType::Q4_K}, {"q5_k_s", 16, DType::Q5_K},
    {"q5_k_m", 17, DType::Q5_K}, {"q6_k", 18, DType::Q6_K},
};

int64_t blk(DType t) { return dtype_info(t).block_elems; }

// The "more bits" layer pattern of the _M mixes: the first and last eighth of the layers, and every third one
// in between.
bool use_more_bits(int64_t i, int64_t n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

// Type of a 2-D weight. `kind` is the tensor name without "blk.N." and ".weight"; ne0 is its row length.
DType mix_type(const SynthFileType& ft, const SynthPreset& p, const std::string& kind, int64_t layer, int64_t ne0) {
  DType t = ft.base;
  if (!dtype_info(t).quantized) return t;  // f32 / f16 / bf16 files keep every matrix in that type
  const std::string& f = ft.name;
  const int64_t n = p.n_layers;
  const int64_t n_gqa = p.n_heads / p.n_kv_heads;
  if (kind == "output" || (p.tied_embeddings && kind == "token_embd")) {
    // The output projection (or the embedding standing in for it) gets 6 bits unless the file is Q8_0.
    if (ne0 % blk(t) != 0) t = DType::Q8_0;
    else if (t != DType::Q8_0) t = DType::Q6_K;
  } else if (kind == "token_embd") {
    // stays at the base type
  } else if (kind == "attn_v") {
    if (f == "q2_k") t = n_gqa >= 4 ? DType::Q4_K : DType::Q3_K;
    else if (f == "q3_k_m") t = layer < 2 ? DType::Q5_K : DType::Q4_K;
    else if (f == "q3_k_l") t = DType::Q5_K;
    else if ((f == "q4_k_m" || f == "q5_k_m") && use_more_bits(layer, n)) t = DType::Q6_K;
    else if (f == "q4_k_s" && layer < 4) t = DType::Q5_K;
  } else if (kind == "ffn_down") {
    if (f == "q2_k") t = DType::Q3_K;
    else if (f == "q3_k_m") t = layer < n / 16 ? DType::Q5_K : DType::Q4_K;
    else if (f == "q3_k_l") t = DType::Q5_K;
    else if ((f == "q4_k_m" || f == "q5_k_m") && use_more_bits(layer, n)) t = DType::Q6_K;
    else if (f == "q4_k_s" && layer < n / 8) t = DType::Q5_K;
  } else if (kind == "attn_output") {
    if (f == "q2_k") t = DType::Q3_K;
    else if (f == "q3_k_m") t = DType::Q4_K;
    else if (f == "q3_k_l") t = DType::Q5_K;
  }
  // Rows that do not fill whole blocks fall back to a 32-block type, and to F16 if even that does not fit.
  // (llama.cpp now falls back from Q2_K/Q3_K to IQ4_NL, which vireo does not implement; Q4_0 is used instead.)
  if (ne0 % blk(t) != 0) {
    switch (t) {
      case DType::Q2_K: case DType::Q3_K: t = DType::Q4_0; break;
      case DType::Q4_K: t = DType::Q5_0; break;
      case DType::Q5_K: t = DType::Q5_1; break;
      case DType::Q6_K: t = DType::Q8_0; break;
      default: break;
    }
    if (ne0 % blk(t) != 0) t = DType::F16;
  }
  return t;
}

// ---- random numbers (splitmix64: small, fast, and the same on every platform) ----

class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)
  uint64_t below(uint64_t n) { return n ? next() % n : 0; }
  float normal() {  // Box-Muller
    const double u1 = 1.0 - uniform(), u2 = uniform();
    return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  }

 private:
  uint64_t s_;
};

uint64_t hash_name(const std::string& s) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// ---- weight data ----

constexpr float kWeightStd = 0.02f;

// Random values of one type, quantized once; matrix rows are windows of it at random block offsets.
struct Pool {
  DType type;
  int64_t units = 0;  // blocks (or elements for plain types)
  std::vector<uint8_t> bytes;
};

// `total_units`: how many blocks of this type the whole file holds (small models get small pools).
Pool make_pool(DType t, int64_t max_row_units, int64_t total_units, uint64_t seed) {
  const DTypeInfo& info = dtype_info(t);
  const int64_t extra = std::clamp<int64_t>(total_units / 8, 64,
                                            !info.quantized ? 65536 : info.block_elems >= 256 ? 1024 : 4096);
  Pool p;
  p.type = t;
  p.units = max_row_units + extra;
  const int64_t n = p.units * info.block_elems;
  std::vector<float> x(static_cast<size_t>(n));
  Rng rng(seed);
  for (float& v : x) v = kWeightStd * rng.normal();
  p.bytes.resize(static_cast<size_t>(p.units * info.block_bytes));
  // Quantize in rows of up to 64K elements (the reference quantizer is row-based; any multiple of the block works).
  const int64_t chunk = std::max<int64_t>(info.block_elems, 65536 / info.block_elems * info.block_elems);
  for (int64_t off = 0; off < n; off += chunk) {
    const int64_t len = std::min(chunk, n - off);
    quantize_row_ref(t, x.data() + off, p.bytes.data() + off / info.block_elems * info.block_bytes, len);
  }
  return p;
}

void fill_from_pool(const Pool& pool, int64_t ne0, int64_t rows, Rng& rng, std::vector<uint8_t>& out) {
  const DTypeInfo& info = dtype_info(pool.type);
  const int64_t row_units = ne0 / info.block_elems, rb = row_units * info.block_bytes;
  const size_t base = out.size();
  out.resize(base + static_cast<size_t>(rb * rows));
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t off = static_cast<int64_t>(rng.below(static_cast<uint64_t>(pool.units - row_units + 1)));
    std::memcpy(out.data() + base + r * rb, pool.bytes.data() + off * info.block_bytes, static_cast<size_t>(rb));
  }
}

void append_f32(std::vector<uint8_t>& out, const std::vector<float>& v) {
  const size_t base = out.size();
  out.resize(base + v.size() * 4);
  std::memcpy(out.data() + base, v.data(), v.size() * 4);
}

// Llama 3.1 frequency scaling, as the factors by which each rotary frequency's wavelength is stretched:
// 1 for short wavelengths (< orig_ctx / high_freq_factor), `factor` for long ones (> orig_ctx / low_freq_factor),
// and a smooth blend in between.
std::vector<float> rope_freq_factors(const SynthPreset& p) {
  const int64_t half = p.head_dim() / 2;
  std::vector<float> f(static_cast<size_t>(half));
  const double low_wavelen = p.rope_orig_ctx / p.rope_low_freq_factor;
  const double high_wavelen = p.rope_orig_ctx / p.rope_high_freq_factor;
  for (int64_t i = 0; i < half; ++i) {
    const double freq = 1.0 / std::pow(p.rope_theta, 2.0 * i / static_cast<double>(p.head_dim()));
    const double wavelen = 2.0 * M_PI / freq;
    double factor;
    if (wavelen < high_wavelen) {
      factor = 1.0;
    } else if (wavelen > low_wavelen) {
      factor = p.rope_scale_factor;
    } else {
      const double smooth = (p.rope_orig_ctx / wavelen - p.rope_low_freq_factor) /
                            (p.rope_high_freq_factor - p.rope_low_freq_factor);
      factor = 1.0 / ((1.0 - smooth) / p.rope_scale_factor + smooth);
    }
    f[static_cast<size_t>(i)] = static_cast<float>(factor);
  }
  return f;
}

// ---- vocabulary ----

GgufValue str_value(std::string s) { return {GgufType::STRING, std::move(s)}; }

// GPT-2's byte-level alphabet: printable bytes stand for themselves, the others for code points from 256 on.
std::vector<std::string> byte_tokens() {
  auto utf8 = [](uint32_t cp) {
    std::string s;
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else if (cp < 0x800) {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      s += static_cast<char>(0xE0 | (cp >> 12));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    return s;
  };
  std::vector<std::string> out(256);
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    out[b] = utf8(printable ? b : next++);
  }
  return out;
}

enum TokenType : int32_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5 };

// Special tokens of a preset's family, by id.
std::map<int64_t, std::pair<std::string, int32_t>> special_tokens(const SynthPreset& p) {
  std::map<int64_t, std::pair<std::string, int32_t>> s;
  if (p.n_vocab == 128256) {  // Llama 3
    for (int64_t id = 128000; id < 128256; ++id)
      s[id] = {"<|reserved_special_token_" + std::to_string(id - 128002) + "|>", kControl};
    s[128000] = {"<|begin_of_text|>", kControl};
    s[128001] = {"<|end_of_text|>", kControl};
    s[128006] = {"<|start_header_id|>", kControl};
    s[128007] = {"<|end_header_id|>", kControl};
    s[128008] = {"<|eom_id|>", kControl};
    s[128009] = {"<|eot_id|>", kControl};
  } else if (p.n_vocab == 151936) {  // Qwen2.5: 22 specials, then padding rows of the embedding
    for (int64_t id = 151643; id < 151665; ++id) s[id] = {"<|special_" + std::to_string(id) + "|>", kControl};
    s[151643] = {"<|endoftext|>", kControl};
    s[151644] = {"<|im_start|>", kControl};
    s[151645] = {"<|im_end|>", kControl};
    for (int64_t id = 151665; id < 151936; ++id) s[id] = {"[PAD" + std::to_string(id) + "]", kUnused};
  } else if (p.bos_id == 1 && p.eos_id == 2) {  // SentencePiece-style ids (TinyLlama)
    s[0] = {"<unk>", kUnknown};
    s[1] = {"<s>", kControl};
    s[2] = {"</s>", kControl};
  }
  if (p.bos_id >= 0 && !s.count(p.bos_id)) s[p.bos_id] = {"<|bos|>", kControl};
  if (p.eos_id >= 0 && !s.count(p.eos_id)) s[p.eos_id] = {"<|eos|>", kControl};
  return s;
}

struct VocabKv {
  std::vector<std::pair<std::string, GgufValue>> kv;
  int64_t n_tokens = 0;
};

// A byte-level BPE vocabulary: the 256 byte tokens, then tokens made by merging two earlier tokens (each with
// its merge rule, so the merges are consistent with the vocabulary), and the special tokens at their ids.
VocabKv generate_vocab(const SynthPreset& p, uint64_t seed) {
  const auto specials = special_tokens(p);
  const int64_t n = p.n_vocab;
  const int64_t n_normal = n - static_cast<int64_t>(specials.size());
  if (n_normal < 256) throw std::invalid_argument("preset vocabulary too small for a byte-level vocabulary");
  std::vector<std::string> normal = byte_tokens();
  std::unordered_set<std::string> seen(normal.begin(), normal.end());
  for (const auto& [id, tok] : specials) seen.insert(tok.first);
  std::vector<GgufValue> merges;
  Rng rng(seed ^ 0x5eed0cab);
  while (static_cast<int64_t>(normal.size()) < n_normal) {
    // Prefer recent, short pieces a little: pick one side from the whole list, the other from the bytes often.
    const std::string& a = normal[rng.below(normal.size())];
    const std::string& b = rng.below(2) ? normal[rng.below(256)] : normal[rng.below(normal.size())];
    std::string m = a + b;
    if (m.size() > 16 || seen.count(m)) continue;
    merges.push_back(str_value(a + " " + b));
    seen.insert(m);
    normal.push_back(std::move(m));
  }
  std::vector<GgufValue> tokens, types;
  tokens.reserve(static_cast<size_t>(n)), types.reserve(static_cast<size_t>(n));
  size_t next_normal = 0;
  for (int64_t id = 0; id < n; ++id) {
    auto it = specials.find(id);
    if (it != specials.end()) {
      tokens.push_back(str_value(it->second.first));
      types.push_back({GgufType::I32, int64_t(it->second.second)});
    } else {
      tokens.push_back(str_value(normal[next_normal++]));
      types.push_back({GgufType::I32, int64_t(kNormal)});
    }
  }
  VocabKv v;
  v.n_tokens = n;
  v.kv.emplace_back("tokenizer.ggml.model", str_value("gpt2"));
  v.kv.emplace_back("tokenizer.ggml.pre", str_value(p.tokenizer_pre.empty() ? "default" : p.tokenizer_pre));
  v.kv.emplace_back("tokenizer.ggml.tokens", GgufValue{GgufType::ARRAY, GgufArray{GgufType::STRING, std::move(tokens)}});
  v.kv.emplace_back("tokenizer.ggml.token_type", GgufValue{GgufType::ARRAY, GgufArray{GgufType::I32, std::move(types)}});
  v.kv.emplace_back("tokenizer.ggml.merges", GgufValue{GgufType::ARRAY, GgufArray{GgufType::STRING, std::move(merges)}});
  if (p.bos_id >= 0) v.kv.emplace_back("tokenizer.ggml.bos_token_id", GgufValue{GgufType::U32, uint64_t(p.bos_id)});
  if (p.eos_id >= 0) v.kv.emplace_back("tokenizer.ggml.eos_token_id", GgufValue{GgufType::U32, uint64_t(p.eos_id)});
  v.kv.emplace_back("tokenizer.ggml.add_bos_token", GgufValue{GgufType::BOOL, p.add_bos});
  return v;
}

// tokenizer.* metadata of another GGUF; per-token arrays are padded with "[PADn]" entries up to `min_tokens`.
VocabKv copy_vocab(const std::string& path, int64_t min_tokens) {
  const GgufFile f = GgufFile::open(path);
  VocabKv v;
  const GgufValue* toks = f.find("tokenizer.ggml.tokens");
  if (!toks || toks->type != GgufType::ARRAY)
    throw std::invalid_argument("'" + path + "' has no tokenizer.ggml.tokens array");
  const int64_t have = static_cast<int64_t>(toks->as_array().items.size());
  v.n_tokens = std::max(have, min_tokens);
  for (const auto& [key, value] : f.metadata()) {
    if (key.rfind("tokenizer.", 0) != 0) continue;
    GgufValue val = value;
    if (val.type == GgufType::ARRAY && have < v.n_tokens &&
        static_cast<int64_t>(val.as_array().items.size()) == have &&
        (key == "tokenizer.ggml.tokens" || key == "tokenizer.ggml.token_type" || key == "tokenizer.ggml.scores")) {
      auto& arr = std::get<GgufArray>(val.v);
      for (int64_t id = have; id < v.n_tokens; ++id) {
        if (key == "tokenizer.ggml.tokens") arr.items.push_back(str_value("[PAD" + std::to_string(id) + "]"));
        else if (key == "tokenizer.ggml.token_type") arr.items.push_back({arr.elem_type, int64_t(kUnused)});
        else arr.items.push_back({arr.elem_type, 0.0});
      }
    }
    v.kv.emplace_back(key, std::move(val));
  }
  return v;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

const SynthPreset* find_synth_preset(const std::string& name) {
  for (const SynthPreset& p : presets())
    if (p.name == lower(name)) return &p;
  return nullptr;
}

std::vector<std::string> synth_preset_names() {
  std::vector<std::string> v;
  for (const SynthPreset& p : presets())
    if (!p.hidden) v.push_back(p.name);
  return v;
}

bool parse_synth_file_type(const std::string& name, SynthFileType* out) {
  const std::string n = lower(name);
  for (const FileTypeEntry& e : kFileTypes)
    if (n == e.name) {
      *out = {e.name, e.ftype, e.base};
      return true;
    }
  return false;
}

std::vector<std::string> synth_file_type_names() {
  std::vector<std::string> v;
  for (const FileTypeEntry& e : kFileTypes) v.push_back(e.name);
  return v;
}

std::vector<SynthTensor> plan_synthetic_tensors(const SynthPreset& p, const std::string& type, int64_t n_vocab) {
  SynthFileType ft;
  if (!parse_synth_file_type(type, &ft)) throw std::invalid_argument("unknown synth type '" + type + "'");
  const int64_t hd = p.head_dim(), q_dim = p.n_heads * hd, kv_dim = p.n_kv_heads * hd;
  std::vector<SynthTensor> t;
  auto mat = [&](std::string name, const std::string& kind, int64_t layer, int64_t ne0, int64_t ne1) {
    t.push_back({std::move(name), mix_type(ft, p, kind, layer, ne0), {ne0, ne1}});
  };
  auto vec = [&](std::string name, int64_t ne0) { t.push_back({std::move(name), DType::F32, {ne0}}); };
  if (p.rope_scale_factor > 0) vec("rope_freqs.weight", hd / 2);
  mat("token_embd.weight", "token_embd", -1, p.dim, n_vocab);
  for (int64_t i = 0; i < p.n_layers; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    vec(b + "attn_norm.weight", p.dim);
    mat(b + "attn_q.weight", "attn_q", i, p.dim, q_dim);
    if (p.qkv_bias) vec(b + "attn_q.bias", q_dim);
    mat(b + "attn_k.weight", "attn_k", i, p.dim, kv_dim);
    if (p.qkv_bias) vec(b + "attn_k.bias", kv_dim);
    mat(b + "attn_v.weight", "attn_v", i, p.dim, kv_dim);
    if (p.qkv_bias) vec(b + "attn_v.bias", kv_dim);
    mat(b + "attn_output.weight", "attn_output", i, q_dim, p.dim);
    vec(b + "ffn_norm.weight", p.dim);
    mat(b + "ffn_gate.weight", "ffn_gate", i, p.dim, p.ffn_dim);
    mat(b + "ffn_up.weight", "ffn_up", i, p.dim, p.ffn_dim);
    mat(b + "ffn_down.weight", "ffn_down", i, p.ffn_dim, p.dim);
  }
  vec("output_norm.weight", p.dim);
  if (!p.tied_embeddings) mat("output.weight", "output", -1, p.dim, n_vocab);
  return t;
}

void write_synthetic_gguf(const std::string& preset_name, const std::string& type, const std::string& out_path,
                          const std::string& vocab_gguf_path, uint64_t seed, const SynthProgressFn& progress) {
  const SynthPreset* pp = find_synth_preset(preset_name);
  if (!pp) {
    std::string names;
    for (const std::string& n : synth_preset_names()) names += (names.empty() ? "" : ", ") + n;
    throw std::invalid_argument("unknown preset '" + preset_name + "' (known: " + names + ")");
  }
  const SynthPreset& p = *pp;
  SynthFileType ft;
  if (!parse_synth_file_type(type, &ft)) {
    std::string names;
    for (const std::string& n : synth_file_type_names()) names += (names.empty() ? "" : ", ") + n;
    throw std::invalid_argument("unknown type '" + type + "' (known: " + names + ")");
  }

  VocabKv vocab = vocab_gguf_path.empty() ? generate_vocab(p, seed) : copy_vocab(vocab_gguf_path, p.n_vocab);
  const int64_t n_vocab = vocab.n_tokens;
  const std::vector<SynthTensor> plan = plan_synthetic_tensors(p, ft.name, n_vocab);

  GgufWriter w;
  const std::string a = p.arch + ".";
  w.set_string("general.architecture", p.arch);
  w.set_string("general.type", "model");
  w.set_string("general.name", p.display_name);
  w.set_string("general.description", "random weights with the shapes of " + p.name + " (vireo synth, seed " +
                                           std::to_string(seed) + ")");
  w.set_u32(a + "block_count", static_cast<uint32_t>(p.n_layers));
  w.set_u32(a + "context_length", static_cast<uint32_t>(p.ctx));
  w.set_u32(a + "embedding_length", static_cast<uint32_t>(p.dim));
  w.set_u32(a + "feed_forward_length", static_cast<uint32_t>(p.ffn_dim));
  w.set_u32(a + "attention.head_count", static_cast<uint32_t>(p.n_heads));
  w.set_u32(a + "attention.head_count_kv", static_cast<uint32_t>(p.n_kv_heads));
  w.set_f32(a + "rope.freq_base", static_cast<float>(p.rope_theta));
  w.set_f32(a + "attention.layer_norm_rms_epsilon", p.norm_eps);
  w.set_u32(a + "rope.dimension_count", static_cast<uint32_t>(p.head_dim()));
  w.set_u32(a + "vocab_size", static_cast<uint32_t>(n_vocab));
  w.set_u32("general.file_type", ft.ftype);
  for (auto& [k, v] : vocab.kv) w.set(k, std::move(v));
  vocab.kv.clear();
  if (dtype_info(ft.base).quantized) w.set_u32("general.quantization_version", 2);

  int64_t total = 0;
  for (const SynthTensor& t : plan) {
    w.add_tensor(t.name, t.type, t.shape);
    total += w.tensors().back().n_bytes();
  }

  // One pool per weight type, long enough for that type's longest row.
  std::map<DType, int64_t> max_units, total_units;
  for (const SynthTensor& t : plan)
    if (t.shape.size() == 2) {
      const int64_t row_units = t.shape[0] / dtype_info(t.type).block_elems;
      max_units[t.type] = std::max(max_units[t.type], row_units);
      total_units[t.type] += row_units * t.shape[1];
    }
  std::map<DType, std::unique_ptr<Pool>> pools;

  int64_t done = 0;
  if (progress) progress(0, total);
  w.write(out_path, [&](size_t i, std::vector<uint8_t>& out) {
    const SynthTensor& t = plan[i];
    Rng rng(seed ^ hash_name(t.name));
    if (t.shape.size() == 2) {
      auto& pool = pools[t.type];
      if (!pool)
        pool = std::make_unique<Pool>(
            make_pool(t.type, max_units[t.type], total_units[t.type], seed * 0x100000001b3ull + uint64_t(t.type)));
      fill_from_pool(*pool, t.shape[0], t.shape[1], rng, out);
    } else if (t.name == "rope_freqs.weight") {
      append_f32(out, rope_freq_factors(p));
    } else {
      const bool is_norm = t.name.find("norm") != std::string::npos;
      std::vector<float> v(static_cast<size_t>(t.shape[0]));
      for (float& x : v) x = is_norm ? 1.0f + 0.05f * rng.normal() : kWeightStd * rng.normal();
      append_f32(out, v);
    }
    done += static_cast<int64_t>(out.size());
    if (progress) progress(done, total);
  });
}

}  // namespace vireo
