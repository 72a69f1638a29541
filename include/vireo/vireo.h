// vireo: run large language models from GGUF files.
//
//   auto engine = vireo::Engine::load("model.gguf", {});
//   engine->generate("Once upon a time", {}, [](std::string_view piece) { std::cout << piece; return true; });
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace vireo {

class GgufFile;  // src/gguf/gguf.h

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
  // Read the weights tensor by tensor instead of keeping the file in memory (the browser: models larger than
  // the WASM heap). Needs a backend that copies weights to its device (webgpu, cuda).
  bool stream_weights = false;
  // Greedy and device-sampled decoding, on a backend that can chain steps (cuda): up to this many decode steps run
  // back to back on the device, each step's tokens chosen there and fed to the next, ids read back once per chain.
  // A sequence that stops inside a chain wastes the chain's later steps. 1: a host round trip per token.
  int decode_chain = 8;
  // ... and at most about this long (from the measured step time), so that text still streams smoothly where
  // steps are slow. 0: no limit.
  double decode_chain_ms = 50;
  // WebGPU: called as each compute pipeline is compiled during load (done of total), since shader compilation
  // can take seconds in a browser.
  std::function<void(int64_t done, int64_t total)> on_compile;
};

struct GenerateOptions {
  SamplingParams sampling;
  int32_t max_tokens = 128;        // new tokens; stops earlier at EOS, a stop string or the context end
  std::vector<std::string> stop;   // stop strings (not included in the output)
  bool add_bos = true;             // prepend BOS when the tokenizer asks for it
  bool ignore_eos = false;
  bool reuse_cache = true;         // skip the prompt prefix already in the KV cache
  bool show_special = false;       // include the text of control tokens in the output
  int32_t logprobs = -1;           // -1: none; 0: the chosen token's log-probability; k > 0: also the top k
};

struct GenerateStats {
  int32_t prompt_tokens = 0;     // tokens in the prompt
  int32_t prompt_computed = 0;   // prompt tokens actually run (the rest came from the cache)
  int32_t generated_tokens = 0;
  double prompt_seconds = 0;     // prefill
  double decode_seconds = 0;     // all tokens after the first
  double ttft_seconds = 0;       // start to first token
  std::string stop_reason;       // "eos", "stop", "length", "context", "cancelled", "error"
  std::string error;             // what went wrong, when stop_reason is "error"
};

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0;  // natural log of the model's probability (softmax of the raw logits)
};

// What a running request reports, once per sampled token and once at the end.
struct StreamEvent {
  std::string_view text;             // text that became final with this event (may be empty)
  int32_t token = -1;                // the sampled id (-1 on the final event)
  TokenLogprob chosen;               // when GenerateOptions::logprobs >= 0
  std::vector<TokenLogprob> top;     // the `logprobs` most likely tokens, most likely first
  bool done = false;                 // last event of the request
  const GenerateStats* stats = nullptr;  // on the final event
};
// Return false to cancel the request (its slot is freed at once).
using EventFn = std::function<bool(const StreamEvent&)>;

struct GenerateRequest {
  std::vector<int32_t> prompt;  // token ids, used as given
  GenerateOptions opts;
  EventFn on_event;             // called on the thread that runs the scheduler; keep it short
};

// Counters since load (for /metrics and benchmarks).
struct SchedulerMetrics {
  int64_t requests = 0, finished = 0, cancelled = 0, failed = 0;
  int64_t prompt_tokens = 0, prompt_computed = 0, prompt_from_cache = 0, generated = 0;
  int64_t steps = 0, step_tokens = 0;
  int64_t chains = 0;         // decode chains run on the device (EngineOptions::decode_chain); their steps count in steps
  double busy_seconds = 0;    // time spent in forward passes and sampling
  int32_t queued = 0, active = 0;
};

class QueueFullError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Continuous batching over the engine's KV slots. Requests join and leave the running batch at token
// granularity: each step is one forward pass over every active sequence (decode tokens first, then prompt chunks
// within the step budget). A new request starts in the free slot sharing the longest prefix with its prompt, or
// copies the longest shared prefix from any slot (prefix caching across users).
// submit() and cancel() may be called from any thread; step()/run_until_idle()/serve() from one thread at a time.
class Scheduler {
 public:
  // Throws std::invalid_argument for a request that can never run (empty, longer than the context, bad ids) and
  // QueueFullError when `max_queue` requests already wait.
  uint64_t submit(GenerateRequest req);
  void cancel(uint64_t id);
  // Admits waiting requests and runs one forward pass; false when there was nothing to do.
  bool step();
  void run_until_idle();
  // Runs steps until `stop` becomes true, sleeping while idle. On stop, unfinished requests are cancelled.
  void serve(const std::atomic<bool>& stop);
  SchedulerMetrics metrics() const;
  int32_t n_slots() const;
  void set_max_queue(int32_t n);
  // Tokens per step (decode tokens + prompt chunks), and the most prompt tokens one step may carry while other
  // sequences decode (bounds the pause decoding users see when a long prompt arrives).
  void set_step_budget(int32_t step_tokens, int32_t prefill_chunk);
  // serve() sleeps this long after each step (tests and demos: emulates a slower model).
  void set_step_delay_ms(int32_t ms);
  // Most decode steps chained on the device without a host round trip, and the longest chain in milliseconds
  // (EngineOptions::decode_chain, decode_chain_ms).
  void set_decode_chain(int32_t steps, double max_ms = 50);

  struct Impl;
  explicit Scheduler(Impl* impl) : impl_(impl) {}

 private:
  Impl* impl_;
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

  // The continuous-batching scheduler over this engine's slots (EngineOptions::n_slots). generate() runs
  // through it too, so do not call generate() while another thread serves requests.
  Scheduler& scheduler();

  int32_t n_vocab() const;
  int32_t n_ctx() const;
  int32_t n_slots() const;
  bool is_eog(int32_t token) const;
  bool adds_bos() const;  // the tokenizer's convention: prompts start with BOS
  std::string token_text(int32_t token) const;  // the bytes one token decodes to
  std::string architecture() const;
  // The device the model runs on, as the backend describes it ("cpu", "webgpu: <adapter>", ...).
  std::string device_description() const;
  // The model file's metadata and tensor table (chat templates, tools).
  const GgufFile& gguf() const;
  int64_t weight_bytes_per_token() const;
  int64_t memory_bytes() const;
  // Forward steps, queue submits and kernel dispatches the device has run since load (zeros on the CPU).
  struct DeviceCounters {
    int64_t steps = 0, submits = 0, dispatches = 0;
    double encode_seconds = 0, wait_seconds = 0;  // host time submitting steps / waiting for their results
  };
  DeviceCounters device_counters() const;

  struct Impl;

 private:
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace vireo
