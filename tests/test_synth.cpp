// Tests of the synthetic model writer (src/model/synth.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include "gguf/gguf.h"
#include "model/synth.h"
#include "quant/quant.h"

using namespace vireo;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("vireo_synth_test_" + std::to_string(::getpid()) + "_" +
                                        std::to_string(reinterpret_cast<uintptr_t>(this)));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

// llama.cpp's "more bits" layers of the _M mixes, written out for n layers.
bool more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

std::vector<float> dequant(const GgufFile& f, const GgufTensorInfo& t) {
  std::vector<float> y(static_cast<size_t>(t.n_elements()));
  dequantize_row(t.type, f.data(t).data(), y.data(), t.n_elements());
  return y;
}

int64_t total_bytes(const std::vector<SynthTensor>& plan) {
  int64_t s = 0;
  for (const SynthTensor& t : plan) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    s += row_bytes(t.type, n);
  }
  return s;
}

std::map<std::string, DType> types_of(const std::vector<SynthTensor>& plan) {
  std::map<std::string, DType> m;
  for (const SynthTensor& t : plan) m[t.name] = t.type;
  return m;
}

}  // namespace

TEST(Synth, PresetsHaveRealShapes) {
  const std::vector<std::string> names = synth_preset_names();
  for (const char* n : {"llama3.1-8b", "llama3.2-1b", "llama3.2-3b", "tinyllama-1.1b", "qwen2.5-0.5b"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
    ASSERT_NE(find_synth_preset(n), nullptr) << n;
  }
  EXPECT_EQ(std::find(names.begin(), names.end(), "test-tiny"), names.end());  // hidden
  const SynthPreset& l8 = *find_synth_preset("llama3.1-8b");
  EXPECT_EQ(l8.dim, 4096);
  EXPECT_EQ(l8.n_layers, 32);
  EXPECT_EQ(l8.n_kv_heads, 8);
  EXPECT_EQ(l8.ffn_dim, 14336);
  EXPECT_EQ(l8.n_vocab, 128256);
  EXPECT_EQ(find_synth_preset("qwen2.5-0.5b")->arch, "qwen2");
  EXPECT_EQ(find_synth_preset("LLAMA3.2-1B"), find_synth_preset("llama3.2-1b"));
  EXPECT_EQ(find_synth_preset("gpt-5"), nullptr);
  SynthFileType ft;
  EXPECT_TRUE(parse_synth_file_type("Q4_K_M", &ft));
  EXPECT_EQ(ft.ftype, 15u);
  EXPECT_EQ(ft.base, DType::Q4_K);
  EXPECT_FALSE(parse_synth_file_type("q4_k_xl", &ft));
}

TEST(Synth, Llama31_8B_Q4_K_M_Plan) {
  const SynthPreset& p = *find_synth_preset("llama3.1-8b");
  const auto plan = plan_synthetic_tensors(p, "q4_k_m", p.n_vocab);
  EXPECT_EQ(plan.size(), 1u + 1 + 32 * 9 + 2);  // rope_freqs, token_embd, 9 per layer, output_norm, output
  auto ty = types_of(plan);
  EXPECT_EQ(ty["token_embd.weight"], DType::Q4_K);
  EXPECT_EQ(ty["output.weight"], DType::Q6_K);
  EXPECT_EQ(ty["rope_freqs.weight"], DType::F32);
  int six = 0;
  for (int i = 0; i < 32; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    const DType want = more_bits(i, 32) ? DType::Q6_K : DType::Q4_K;
    EXPECT_EQ(ty[b + "attn_v.weight"], want) << i;
    EXPECT_EQ(ty[b + "ffn_down.weight"], want) << i;
    EXPECT_EQ(ty[b + "attn_q.weight"], DType::Q4_K);
    EXPECT_EQ(ty[b + "ffn_gate.weight"], DType::Q4_K);
    EXPECT_EQ(ty[b + "attn_norm.weight"], DType::F32);
    six += want == DType::Q6_K;
  }
  EXPECT_EQ(six, 4 + 4 + 8);  // layers 0-3, 28-31, and 6, 9, ..., 27
  for (const SynthTensor& t : plan)
    if (t.name == "blk.0.attn_k.weight") EXPECT_EQ(t.shape, (std::vector<int64_t>{4096, 1024}));
    else if (t.name == "blk.0.ffn_down.weight") EXPECT_EQ(t.shape, (std::vector<int64_t>{14336, 4096}));
    else if (t.name == "token_embd.weight") EXPECT_EQ(t.shape, (std::vector<int64_t>{4096, 128256}));
    else if (t.name == "rope_freqs.weight") EXPECT_EQ(t.shape, (std::vector<int64_t>{64}));
  // Llama 3.1 8B Q4_K_M files from llama.cpp are about 4.92 GB (4.58 GiB) of which ~all is tensor data.
  const double gb = static_cast<double>(total_bytes(plan)) / 1e9;
  EXPECT_GT(gb, 4.85);
  EXPECT_LT(gb, 4.95);
}

TEST(Synth, TiedAndFallbackPlans) {
  {  // Llama 3.2 1B: tied, so token_embd takes the output's Q6_K and there is no output.weight
    const SynthPreset& p = *find_synth_preset("llama3.2-1b");
    auto ty = types_of(plan_synthetic_tensors(p, "q4_k_m", p.n_vocab));
    EXPECT_EQ(ty.count("output.weight"), 0u);
    EXPECT_EQ(ty["token_embd.weight"], DType::Q6_K);
  }
  {  // Qwen2.5 0.5B: 896-wide rows do not fill 256-blocks: Q4_K -> Q5_0, Q6_K -> Q8_0; biases; tied
    const SynthPreset& p = *find_synth_preset("qwen2.5-0.5b");
    auto ty = types_of(plan_synthetic_tensors(p, "q4_k_m", p.n_vocab));
    EXPECT_EQ(ty["token_embd.weight"], DType::Q8_0);
    EXPECT_EQ(ty["blk.0.attn_q.bias"], DType::F32);
    EXPECT_EQ(ty["blk.5.attn_q.weight"], DType::Q5_0);
    EXPECT_EQ(ty["blk.0.attn_v.weight"], DType::Q8_0);  // Q6_K (more bits) -> Q8_0
    EXPECT_EQ(ty["blk.4.attn_v.weight"], DType::Q5_0);  // Q4_K -> Q5_0
    EXPECT_EQ(ty["blk.0.ffn_down.weight"], DType::Q6_K);  // 4864 = 19 * 256
    EXPECT_EQ(ty["blk.4.ffn_down.weight"], DType::Q4_K);
    EXPECT_EQ(ty.count("rope_freqs.weight"), 0u);
  }
  {  // plain types keep every matrix in that type; q8_0 keeps output at Q8_0; q4_0 gives output Q6_K
    const SynthPreset& p = *find_synth_preset("tinyllama-1.1b");
    auto f16 = types_of(plan_synthetic_tensors(p, "f16", p.n_vocab));
    EXPECT_EQ(f16["output.weight"], DType::F16);
    EXPECT_EQ(f16["output_norm.weight"], DType::F32);
    EXPECT_EQ(types_of(plan_synthetic_tensors(p, "q8_0", p.n_vocab))["output.weight"], DType::Q8_0);
    auto q40 = types_of(plan_synthetic_tensors(p, "q4_0", p.n_vocab));
    EXPECT_EQ(q40["output.weight"], DType::Q6_K);
    EXPECT_EQ(q40["token_embd.weight"], DType::Q4_0);
    auto q3m = types_of(plan_synthetic_tensors(p, "q3_k_m", p.n_vocab));
    EXPECT_EQ(q3m["blk.0.attn_v.weight"], DType::Q5_K);
    EXPECT_EQ(q3m["blk.2.attn_v.weight"], DType::Q4_K);
    EXPECT_EQ(q3m["blk.3.attn_output.weight"], DType::Q4_K);
    EXPECT_EQ(q3m["blk.3.attn_q.weight"], DType::Q3_K);
  }
}

TEST(Synth, WritesTinyModelInSeveralTypes) {
  TempDir dir;
  const SynthPreset& p = *find_synth_preset("test-tiny");
  for (const char* type : {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k", "q3_k_m", "q2_k"}) {
    SCOPED_TRACE(type);
    const std::string path = dir.file(std::string("tiny-") + type + ".gguf");
    int64_t last_done = -1, last_total = -1;
    int calls = 0;
    write_synthetic_gguf("test-tiny", type, path, "", 7, [&](int64_t d, int64_t t) {
      EXPECT_GE(d, last_done);
      last_done = d, last_total = t, ++calls;
    });
    EXPECT_EQ(last_done, last_total);
    EXPECT_GT(calls, 10);

    const GgufFile f = GgufFile::open(path);
    SynthFileType ft;
    ASSERT_TRUE(parse_synth_file_type(type, &ft));
    EXPECT_EQ(f.get_string("general.architecture", ""), "llama");
    EXPECT_EQ(f.get_int("general.file_type", -1), static_cast<int64_t>(ft.ftype));
    EXPECT_EQ(f.get_int("llama.embedding_length", 0), 256);
    EXPECT_EQ(f.get_int("llama.block_count", 0), 8);
    EXPECT_EQ(f.get_int("llama.feed_forward_length", 0), 512);
    EXPECT_EQ(f.get_int("llama.attention.head_count", 0), 4);
    EXPECT_EQ(f.get_int("llama.attention.head_count_kv", 0), 2);
    EXPECT_EQ(f.get_int("llama.context_length", 0), 512);
    EXPECT_EQ(f.get_int("llama.rope.dimension_count", 0), 64);
    EXPECT_EQ(f.get_int("llama.vocab_size", 0), 512);
    EXPECT_FLOAT_EQ(static_cast<float>(f.get_float("llama.rope.freq_base", 0)), 500000.0f);
    EXPECT_FLOAT_EQ(static_cast<float>(f.get_float("llama.attention.layer_norm_rms_epsilon", 0)), 1e-5f);
    EXPECT_EQ(f.get("general.file_type").type, GgufType::U32);
    EXPECT_EQ(f.get_string("tokenizer.ggml.model", ""), "gpt2");
    EXPECT_EQ(f.get("tokenizer.ggml.tokens").as_array().items.size(), 512u);
    EXPECT_EQ(f.get_int("tokenizer.ggml.bos_token_id", -1), 510);
    EXPECT_EQ(f.get_int("tokenizer.ggml.eos_token_id", -1), 511);
    EXPECT_EQ(f.find("general.quantization_version") != nullptr, dtype_info(ft.base).quantized);

    ASSERT_EQ(f.tensors().size(), 1u + 1 + 8 * 9 + 2);
    for (const GgufTensorInfo& t : f.tensors()) {
      SCOPED_TRACE(t.name);
      // shapes
      const std::string& n = t.name;
      auto ends = [&](const char* s) { return n.size() >= std::strlen(s) && n.compare(n.size() - std::strlen(s), std::string::npos, s) == 0; };
      if (ends("norm.weight")) EXPECT_EQ(t.shape, (std::vector<int64_t>{256}));
      else if (ends("attn_q.weight") || ends("attn_output.weight")) EXPECT_EQ(t.shape, (std::vector<int64_t>{256, 256}));
      else if (ends("attn_k.weight") || ends("attn_v.weight")) EXPECT_EQ(t.shape, (std::vector<int64_t>{256, 128}));
      else if (ends("ffn_gate.weight") || ends("ffn_up.weight")) EXPECT_EQ(t.shape, (std::vector<int64_t>{256, 512}));
      else if (ends("ffn_down.weight")) EXPECT_EQ(t.shape, (std::vector<int64_t>{512, 256}));
      else if (n == "token_embd.weight" || n == "output.weight") EXPECT_EQ(t.shape, (std::vector<int64_t>{256, 512}));
      else if (n == "rope_freqs.weight") EXPECT_EQ(t.shape, (std::vector<int64_t>{32}));
      else ADD_FAILURE() << "unexpected tensor";
      // types: 1-D always F32
      if (t.shape.size() == 1) EXPECT_EQ(t.type, DType::F32);
      // values: finite, weights ~N(0, 0.02), norms ~1
      const std::vector<float> y = dequant(f, t);
      double s = 0, s2 = 0;
      for (float v : y) {
        ASSERT_TRUE(std::isfinite(v));
        s += v, s2 += double(v) * v;
      }
      const double mean = s / y.size(), sd = std::sqrt(std::max(0.0, s2 / y.size() - mean * mean));
      if (ends("norm.weight")) {
        EXPECT_NEAR(mean, 1.0, 0.02);
        EXPECT_LT(sd, 0.1);
      } else if (t.shape.size() == 2) {
        EXPECT_NEAR(mean, 0.0, 0.002);
        EXPECT_NEAR(sd, 0.02, dtype_info(t.type).quantized && t.type == DType::Q2_K ? 0.006 : 0.003);
      }
    }
    // The Q4_K_M / Q5_K_M mix.
    const std::string ty = type;
    if (ty == "q4_k_m" || ty == "q5_k_m") {
      const DType base = ty == "q4_k_m" ? DType::Q4_K : DType::Q5_K;
      EXPECT_EQ(f.find_tensor("token_embd.weight")->type, base);
      EXPECT_EQ(f.find_tensor("output.weight")->type, DType::Q6_K);
      for (int i = 0; i < 8; ++i) {
        const std::string b = "blk." + std::to_string(i) + ".";
        const DType want = more_bits(i, 8) ? DType::Q6_K : base;  // layers 0, 3, 6, 7
        EXPECT_EQ(f.find_tensor(b + "attn_v.weight")->type, want) << i;
        EXPECT_EQ(f.find_tensor(b + "ffn_down.weight")->type, want) << i;
        EXPECT_EQ(f.find_tensor(b + "attn_q.weight")->type, base) << i;
        EXPECT_EQ(f.find_tensor(b + "ffn_up.weight")->type, base) << i;
      }
    }
    if (ty == "q6_k" || ty == "q8_0" || ty == "f16")
      for (const GgufTensorInfo& t : f.tensors())
        if (t.shape.size() == 2) EXPECT_EQ(t.type, ty == "q6_k" ? DType::Q6_K : ty == "q8_0" ? DType::Q8_0 : DType::F16);
  }
}

TEST(Synth, RowsAreNotAllIdenticalAndSeedMatters) {
  TempDir dir;
  write_synthetic_gguf("test-tiny", "q4_k_m", dir.file("a.gguf"), "", 1);
  write_synthetic_gguf("test-tiny", "q4_k_m", dir.file("b.gguf"), "", 1);
  write_synthetic_gguf("test-tiny", "q4_k_m", dir.file("c.gguf"), "", 2);
  auto slurp = [](const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::vector<char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  EXPECT_EQ(slurp(dir.file("a.gguf")), slurp(dir.file("b.gguf")));
  EXPECT_NE(slurp(dir.file("a.gguf")), slurp(dir.file("c.gguf")));
  const GgufFile f = GgufFile::open(dir.file("a.gguf"));
  const GgufTensorInfo& emb = *f.find_tensor("token_embd.weight");
  const auto bytes = f.data(emb);
  const size_t rb = static_cast<size_t>(row_bytes(emb.type, emb.shape[0]));
  std::set<std::string> rows;
  for (int64_t r = 0; r < emb.shape[1]; ++r)
    rows.insert(std::string(reinterpret_cast<const char*>(bytes.data()) + r * rb, rb));
  EXPECT_GT(rows.size(), static_cast<size_t>(emb.shape[1]) * 3 / 4);
  // Different tensors of the same type differ too.
  const auto q0 = f.data(*f.find_tensor("blk.1.attn_q.weight")), q1 = f.data(*f.find_tensor("blk.2.attn_q.weight"));
  EXPECT_FALSE(std::equal(q0.begin(), q0.end(), q1.begin(), q1.end()));
}

TEST(Synth, RopeFreqFactors) {
  TempDir dir;
  write_synthetic_gguf("test-tiny", "f32", dir.file("r.gguf"), "", 3);
  const GgufFile f = GgufFile::open(dir.file("r.gguf"));
  const std::vector<float> r = dequant(f, *f.find_tensor("rope_freqs.weight"));
  // head_dim 64, theta 5e5, factor 8, original context 64, low/high freq factors 1/4: wavelengths below 16
  // are kept (factor 1), above 64 scaled by 8, and blended in between.
  ASSERT_EQ(r.size(), 32u);
  EXPECT_EQ(r.front(), 1.0f);
  EXPECT_EQ(r.back(), 8.0f);
  for (size_t i = 1; i < r.size(); ++i) EXPECT_GE(r[i], r[i - 1]);
  for (size_t i = 0; i < r.size(); ++i) {
    const double wavelen = 2 * M_PI * std::pow(500000.0, 2.0 * i / 64.0);
    if (wavelen < 16) EXPECT_EQ(r[i], 1.0f) << i;
    else if (wavelen > 64) EXPECT_EQ(r[i], 8.0f) << i;
    else {
      const double smooth = (64 / wavelen - 1) / 3;
      EXPECT_NEAR(r[i], 1 / ((1 - smooth) / 8 + smooth), 1e-5) << i;
    }
  }
  // Llama 3.1 8B: head_dim 128, original context 8192: the first (highest) frequencies keep factor 1,
  // the last are scaled by 8, with a blend between.
  const SynthPreset& p = *find_synth_preset("llama3.1-8b");
  EXPECT_EQ(p.rope_scale_factor, 8.0f);
  EXPECT_EQ(find_synth_preset("llama3.2-1b")->rope_scale_factor, 32.0f);
  EXPECT_EQ(find_synth_preset("tinyllama-1.1b")->rope_scale_factor, 0.0f);
}

TEST(Synth, QwenTinyHasBiasesTiedOutputAndFallbacks) {
  TempDir dir;
  write_synthetic_gguf("test-tiny-qwen2", "q4_k_m", dir.file("q.gguf"), "", 5);
  const GgufFile f = GgufFile::open(dir.file("q.gguf"));
  EXPECT_EQ(f.get_string("general.architecture", ""), "qwen2");
  EXPECT_EQ(f.get_int("qwen2.embedding_length", 0), 128);
  EXPECT_EQ(f.find_tensor("output.weight"), nullptr);
  EXPECT_EQ(f.find_tensor("rope_freqs.weight"), nullptr);
  EXPECT_EQ(f.find_tensor("token_embd.weight")->type, DType::Q8_0);  // output rule, 128 % 256 != 0
  for (int i = 0; i < 3; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    const GgufTensorInfo* bq = f.find_tensor(b + "attn_q.bias");
    const GgufTensorInfo* bk = f.find_tensor(b + "attn_k.bias");
    const GgufTensorInfo* bv = f.find_tensor(b + "attn_v.bias");
    ASSERT_TRUE(bq && bk && bv);
    EXPECT_EQ(bq->shape, (std::vector<int64_t>{128}));
    EXPECT_EQ(bk->shape, (std::vector<int64_t>{32}));
    EXPECT_EQ(bv->type, DType::F32);
    EXPECT_EQ(f.find_tensor(b + "attn_q.weight")->type, DType::Q5_0);
    EXPECT_EQ(f.find_tensor(b + "attn_v.weight")->type, i == 2 ? DType::Q8_0 : DType::Q5_0);
    EXPECT_EQ(f.find_tensor(b + "ffn_down.weight")->type, i == 2 ? DType::Q6_K : DType::Q4_K);  // rows of 256
  }
  for (const GgufTensorInfo& t : f.tensors())
    for (float v : dequant(f, t)) ASSERT_TRUE(std::isfinite(v)) << t.name;
}

TEST(Synth, GeneratedVocabularyIsConsistent) {
  TempDir dir;
  write_synthetic_gguf("test-tiny", "q8_0", dir.file("v.gguf"), "", 11);
  const GgufFile f = GgufFile::open(dir.file("v.gguf"));
  const auto& toks = f.get("tokenizer.ggml.tokens").as_array().items;
  const auto& types = f.get("tokenizer.ggml.token_type").as_array().items;
  const auto& merges = f.get("tokenizer.ggml.merges").as_array().items;
  ASSERT_EQ(toks.size(), 512u);
  ASSERT_EQ(types.size(), 512u);
  std::set<std::string> all;
  for (const GgufValue& t : toks) all.insert(t.as_string());
  EXPECT_EQ(all.size(), toks.size());  // unique
  EXPECT_EQ(toks[510].as_string(), "<|bos|>");
  EXPECT_EQ(types[510].as_int(), 3);
  EXPECT_EQ(types[0].as_int(), 1);
  EXPECT_EQ(toks[65].as_string(), "A");         // byte-level alphabet: printable bytes stand for themselves
  EXPECT_EQ(toks[32].as_string(), "\xC4\xA0");  // space -> U+0120
  EXPECT_EQ(toks[0].as_string(), "\xC4\x80");  // byte 0 -> U+0100
  EXPECT_EQ(merges.size(), 512u - 2 - 256);
  for (const GgufValue& m : merges) {
    const std::string s = m.as_string();
    const size_t sp = s.find(' ');
    ASSERT_NE(sp, std::string::npos);
    EXPECT_TRUE(all.count(s.substr(0, sp)) && all.count(s.substr(sp + 1))) << s;
    EXPECT_TRUE(all.count(s.substr(0, sp) + s.substr(sp + 1))) << s;
  }
}

TEST(Synth, CopiesVocabularyAndPads) {
  TempDir dir;
  // A small vocab-only GGUF (100 tokens) is padded up to the preset's 512.
  {
    GgufWriter w;
    w.set_string("general.architecture", "llama");
    w.set_string("tokenizer.ggml.model", "gpt2");
    std::vector<GgufValue> toks, types;
    for (int i = 0; i < 100; ++i) {
      toks.push_back({GgufType::STRING, std::string("tok") + std::to_string(i)});
      types.push_back({GgufType::I32, int64_t(1)});
    }
    w.set("tokenizer.ggml.tokens", {GgufType::ARRAY, GgufArray{GgufType::STRING, toks}});
    w.set("tokenizer.ggml.token_type", {GgufType::ARRAY, GgufArray{GgufType::I32, types}});
    w.set_u32("tokenizer.ggml.bos_token_id", 7);
    w.write(dir.file("vocab.gguf"), [](size_t, std::vector<uint8_t>&) {});
  }
  write_synthetic_gguf("test-tiny", "q4_0", dir.file("m.gguf"), dir.file("vocab.gguf"), 1);
  {
    const GgufFile f = GgufFile::open(dir.file("m.gguf"));
    const auto& toks = f.get("tokenizer.ggml.tokens").as_array().items;
    ASSERT_EQ(toks.size(), 512u);
    EXPECT_EQ(toks[99].as_string(), "tok99");
    EXPECT_EQ(toks[100].as_string(), "[PAD100]");
    EXPECT_EQ(f.get("tokenizer.ggml.token_type").as_array().items[300].as_int(), 5);
    EXPECT_EQ(f.get_int("tokenizer.ggml.bos_token_id", -1), 7);
    EXPECT_EQ(f.get_string("general.architecture", ""), "llama");
    EXPECT_EQ(f.find_tensor("token_embd.weight")->shape[1], 512);
  }
  // A real vocabulary larger than the preset's sets the model's vocabulary size.
  const std::string gpt2 = std::string(VIREO_FIXTURES) + "/vocab/ggml-vocab-gpt-2.gguf";
  if (!fs::exists(gpt2)) GTEST_SKIP() << gpt2 << " not present";
  write_synthetic_gguf("test-tiny", "q4_k_m", dir.file("g.gguf"), gpt2, 1);
  const GgufFile src = GgufFile::open(gpt2), f = GgufFile::open(dir.file("g.gguf"));
  const size_t n = src.get("tokenizer.ggml.tokens").as_array().items.size();
  EXPECT_EQ(f.get("tokenizer.ggml.tokens").as_array().items.size(), n);
  EXPECT_EQ(f.find_tensor("token_embd.weight")->shape[1], static_cast<int64_t>(n));
  EXPECT_EQ(f.find_tensor("output.weight")->shape[1], static_cast<int64_t>(n));
  EXPECT_EQ(f.get_int("llama.vocab_size", 0), static_cast<int64_t>(n));
  for (const auto& [k, v] : src.metadata())
    if (k.rfind("tokenizer.", 0) == 0) {
      ASSERT_NE(f.find(k), nullptr) << k;
      EXPECT_EQ(gguf_value_to_string(*f.find(k), 4), gguf_value_to_string(v, 4)) << k;
    }
}

TEST(Synth, RejectsUnknownPresetAndType) {
  TempDir dir;
  EXPECT_THROW(write_synthetic_gguf("nope", "q4_k_m", dir.file("x.gguf"), "", 1), std::invalid_argument);
  EXPECT_THROW(write_synthetic_gguf("test-tiny", "q9_k", dir.file("x.gguf"), "", 1), std::invalid_argument);
}
