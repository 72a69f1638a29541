// vireo: run large language models from GGUF files.
//
//   auto engine = vireo::Engine::load("model.gguf", {});
//   engine->generate("Once upon a time", {}, [](std::string_view piece) { std::cout << piece; return true; });
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace vireo {

struct SamplingParams {
  float temperature = 0.8f;        // <= 0: greedy
  int32_t top_k = 40;              // <= 0: off
  float top_p = 0.95f;             // >= 1: off
  float min_p = 0.05f;             // <= 0: off (relative to the most likely token)
  float repeat_penalty = 1.0f;     // 1: off; divides positive logits / multiplies negative ones
  float presence_penalty = 0.0f;   // subtracted once if the token occurred in the window
  float frequency_penalty = 0.0f;  // subtracted per occurrence in the window
  int32_t penalty_last_n = 64;     // window of recent tokens the penalties look at (-1: all, 0: off)
  uint64_t seed = 0xC0FFEE;        // same seed, same output
};

struct EngineOptions {
  std::string device = "cpu";
  int threads = 0;        // 0: all cores
  int n_ctx = 0;          // 0: the model's training context, capped at 4096
  bool kv_f32 = false;    // f16 KV cache by default
  int max_batch = 512;    // tokens per prefill step
  int n_slots = 1;        // sequences kept at once
};

struct GenerateOptions {
  SamplingParams sampling;
  int32_t max_tokens = 128;        // new tokens; stops earlier at EOS, a stop string or the context end
  std::vector<std::string> stop;   // stop strings (not included in the output)
  bool add_bos = true;             // prepend BOS when the tokenizer asks for it
  bool ignore_eos = false;
  bool reuse_cache = true;         // skip the prompt prefix already in the KV cache
};

struct GenerateStats {
  int32_t prompt_tokens = 0;     // tokens in the prompt
  int32_t prompt_computed = 0;   // prompt tokens actually run (the rest came from the cache)
  int32_t generated_tokens = 0;
  double prompt_seconds = 0;     // prefill
  double decode_seconds = 0;     // all tokens after the first
  double ttft_seconds = 0;       // start to first token
  std::string stop_reason;       // "eos", "stop", "length", "context", "cancelled"
};

using ProgressFn = std::function<void(int64_t done, int64_t total)>;
// Return false to stop generating.
using TextFn = std::function<bool(std::string_view piece)>;

class Engine {
 public:
  static std::unique_ptr<Engine> load(const std::string& gguf_path, const EngineOptions& opts,
                                      const ProgressFn& progress = {});
  ~Engine();

  // Tokenizes `prompt`, runs it, samples until a stop condition, streaming text through `on_text`.
  // Throws std::runtime_error when the prompt does not fit in the context.
  GenerateStats generate(const std::string& prompt, const GenerateOptions& opts, const TextFn& on_text);
  // Same from token ids (the prompt is used as given; no BOS is added). `on_token` sees every sampled id.
  GenerateStats generate_tokens(const std::vector<int32_t>& prompt, const GenerateOptions& opts,
                                const TextFn& on_text, const std::function<void(int32_t)>& on_token = {});

  std::vector<int32_t> tokenize(std::string_view text, bool add_bos) const;
  std::string detokenize(const std::vector<int32_t>& ids) const;
  // Logits of every position of `tokens` run from an empty cache (tests, perplexity).
  std::vector<float> logits_all(const std::vector<int32_t>& tokens);

  int32_t n_vocab() const;
  int32_t n_ctx() const;
  std::string architecture() const;
  int64_t weight_bytes_per_token() const;
  int64_t memory_bytes() const;

  struct Impl;

 private:
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace vireo
