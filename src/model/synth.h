// Synthetic models: GGUF files with the exact tensor names, shapes, metadata and quantization mix of real models,
// filled with random weights. For benchmarks and end-to-end tests without downloading multi-GB checkpoints.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace vireo {

struct SynthPreset {
  std::string name;          // "llama3.1-8b"
  std::string arch;          // "llama" or "qwen2"
  std::string display_name;  // general.name
  int64_t dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, ffn_dim = 0, n_vocab = 0, ctx = 0;
  double rope_theta = 10000.0;
  float norm_eps = 1e-5f;
  bool tied_embeddings = false;  // no output.weight: the output projection reuses token_embd
  bool qkv_bias = false;         // attn_q/k/v.bias (Qwen2)
  // Llama-3.1-style rope frequency scaling, stored as a rope_freqs.weight tensor; factor 0 = none.
  float rope_scale_factor = 0, rope_low_freq_factor = 1, rope_high_freq_factor = 4;
  int64_t rope_orig_ctx = 8192;
  // Generated vocabulary (when no vocab GGUF is given).
  std::string tokenizer_pre;  // tokenizer.ggml.pre
  int64_t bos_id = -1, eos_id = -1;
  bool add_bos = true;
  bool hidden = false;  // test presets, not listed

  int64_t head_dim() const { return dim / n_heads; }
};

// Presets: llama3.1-8b, llama3.2-1b, llama3.2-3b, tinyllama-1.1b, qwen2.5-0.5b (and hidden test ones).
// Returns nullptr for unknown names.
const SynthPreset* find_synth_preset(const std::string& name);
std::vector<std::string> synth_preset_names();  // listed (non-hidden) presets

// A quantization choice as llama.cpp's `quantize` names them: "f32", "f16", "bf16", "q4_0", "q4_1", "q5_0",
// "q5_1", "q8_0", "q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m", "q6_k"
// (case-insensitive). Returns false for unknown names.
struct SynthFileType {
  std::string name;    // canonical lower-case name
  uint32_t ftype;      // general.file_type value (llama_ftype numbering)
  DType base;          // type of most 2-D weights
};
bool parse_synth_file_type(const std::string& name, SynthFileType* out);
std::vector<std::string> synth_file_type_names();

struct SynthTensor {
  std::string name;
  DType type;
  std::vector<int64_t> shape;  // GGUF order: shape[0] is the row length
};
// The tensors the file will hold, in order, with the types the quantization mix gives them.
// Throws std::invalid_argument for an unknown file type.
std::vector<SynthTensor> plan_synthetic_tensors(const SynthPreset& preset, const std::string& type,
                                                int64_t n_vocab);

using SynthProgressFn = std::function<void(int64_t done_bytes, int64_t total_bytes)>;

// Writes the synthetic model. `type` as for parse_synth_file_type. With a non-empty vocab_gguf_path, the
// tokenizer.* metadata is copied from that GGUF (the vocabulary size then follows its token count, padded with
// "[PADn]" tokens up to the preset's size); otherwise a byte-level BPE ("gpt2") vocabulary of the preset's size
// is generated. Deterministic for a given seed. Throws std::invalid_argument for an unknown preset or type and
// GgufError for I/O problems.
void write_synthetic_gguf(const std::string& preset, const std::string& type, const std::string& out_path,
                          const std::string& vocab_gguf_path, uint64_t seed, const SynthProgressFn& progress = {});

}  // namespace vireo
