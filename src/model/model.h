// A loaded model: hyper-parameters from GGUF metadata, weights on a backend, and its forward pass.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "runtime/backend.h"

namespace vireo {

struct ModelConfig {
  std::string arch;  // "llama", "qwen2"
  std::string name;
  int32_t n_vocab = 0;
  int32_t dim = 0;         // embedding length
  int32_t n_layers = 0;
  int32_t n_heads = 0;
  int32_t n_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t ffn_dim = 0;
  int32_t rope_dim = 0;
  float rope_base = 10000.f;
  RopeMode rope_mode = RopeMode::Normal;
  float norm_eps = 1e-5f;
  int32_t ctx_train = 0;
  bool tied_output = false;  // output projection shares token_embd
  bool qkv_bias = false;

  // Reads and validates `<arch>.*` keys; throws std::runtime_error naming what is wrong.
  static ModelConfig from_gguf(const GgufFile& f);
};

// Per-layer weights of the Llama family (Qwen2 adds the q/k/v biases).
struct LayerWeights {
  const Weight* attn_norm = nullptr;
  const Weight* wq = nullptr;
  const Weight* wk = nullptr;
  const Weight* wv = nullptr;
  const Weight* wo = nullptr;
  const Weight* bq = nullptr;
  const Weight* bk = nullptr;
  const Weight* bv = nullptr;
  const Weight* ffn_norm = nullptr;
  const Weight* w_gate = nullptr;
  const Weight* w_up = nullptr;
  const Weight* w_down = nullptr;
};

struct ModelWeights {
  const Weight* tok_embd = nullptr;
  const Weight* output_norm = nullptr;
  const Weight* output = nullptr;  // == tok_embd when tied
  const Weight* rope_freqs = nullptr;
  std::vector<LayerWeights> layers;
};

// Activation buffers of one step, sized for the largest step at plan time.
struct StepBuffers {
  Act x, xb, q, k, v, att, hb, hb2, ffn_out, logits_in, logits;
};

struct RunOptions {
  int32_t n_ctx = 0;        // 0: the model's training context (capped at 4096 to bound memory)
  int32_t n_slots = 1;      // sequences live at once
  int32_t max_batch = 512;  // tokens per step
  int32_t max_logit_rows = 0;  // 0: as many as max_batch
  DType kv_type = DType::F16;
};

using ProgressFn = std::function<void(int64_t done, int64_t total)>;

class Model {
 public:
  // Uploads every weight to `backend` (progress in bytes) and plans buffers and the KV cache.
  Model(std::shared_ptr<const GgufFile> file, std::unique_ptr<Backend> backend, const RunOptions& opts,
        const ProgressFn& progress = {});

  const ModelConfig& config() const { return cfg_; }
  const GgufFile& file() const { return *file_; }
  Backend& backend() { return *backend_; }
  int32_t n_ctx() const { return n_ctx_; }
  int32_t max_batch() const { return opts_.max_batch; }
  int32_t n_slots() const { return opts_.n_slots > 0 ? opts_.n_slots : 1; }
  int32_t max_logit_rows() const { return max_logit_rows_; }
  // Weight bytes one decode step reads (every matrix once, plus one embedding row).
  int64_t weight_bytes_per_token() const { return weight_bytes_; }

  // Runs the batch through the model; writes batch.logit_rows.size() x n_vocab logits to `logits`.
  void forward(const Batch& batch, std::span<float> logits);
  // The same, returning only the argmax id of each logits row (greedy decoding; the logits stay on the backend).
  void forward_argmax(const Batch& batch, std::span<int32_t> ids);
  // The same, returning per logits row the tokens within margins[row] of its largest logit (Backend::
  // end_step_candidates); rows with too many get count -1 and are read with read_logit_rows().
  void forward_candidates(const Batch& batch, std::span<const float> margins, int32_t cap, std::span<float> values,
                          std::span<int32_t> ids, std::span<int32_t> counts);
  // The same, with each row's token drawn on the device (Backend::end_step_sample; -1: read the row and sample
  // it on the host). Only where samples_on_device().
  void forward_sample(const Batch& batch, std::span<const DeviceSampleRow> rows, std::span<int32_t> ids);
  bool samples_on_device() const { return backend_->samples_on_device(); }
  // A decode step run `steps` times on the device, each run's chosen ids fed to the next (Backend::end_step_chain:
  // argmax when `rows` is empty, else drawn with rows[s * r + i]); ids[s * r + i] is run s's id of row i. Only
  // where chains_steps(). `progress` sees the runs as they finish and may end the chain early; returns the runs
  // done.
  int32_t forward_chain(const Batch& batch, int32_t steps, std::span<const DeviceSampleRow> rows,
                        std::span<int32_t> ids, const Backend::ChainProgress& progress = nullptr);
  bool chains_steps() const { return backend_->chains_steps(); }
  void read_logit_rows(std::span<const int32_t> rows, std::span<float> host);

 private:
  void build_step(int32_t n_tokens, int32_t n_logit_rows);  // the architecture's math, top to bottom
  int32_t run_step(const Batch& batch);  // begin_step + build_step; returns the logit rows (end_step_* follows)
  void check_batch(const Batch& batch) const;

  std::shared_ptr<const GgufFile> file_;
  std::unique_ptr<Backend> backend_;
  ModelConfig cfg_;
  RunOptions opts_;
  ModelWeights w_;
  StepBuffers b_;
  int32_t n_ctx_ = 0;
  int32_t max_logit_rows_ = 0;
  int32_t last_rows_ = 0;  // logit rows of the last step (read_logit_rows)
  int64_t weight_bytes_ = 0;
};

}  // namespace vireo
