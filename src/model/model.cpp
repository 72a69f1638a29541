#include <algorithm>
#include <stdexcept>

#include "model/model.h"

namespace vireo {

Model::Model(std::shared_ptr<const GgufFile> file, std::unique_ptr<Backend> backend, const RunOptions& opts,
             const ProgressFn& progress)
    : file_(std::move(file)), backend_(std::move(backend)), opts_(opts) {
  cfg_ = ModelConfig::from_gguf(*file_);
  const ModelConfig& c = cfg_;

  int64_t total = 0, done = 0;
  for (const auto& t : file_->tensors()) total += t.n_bytes();
  if (!file_->resident() && !backend_->copies_weights())
    throw std::runtime_error("the " + backend_->name() + " backend reads weights in place: it needs the whole file "
                             "in memory, not streamed");
  std::vector<uint8_t> scratch;  // a streamed file's tensor, one at a time
  auto load = [&](const std::string& name, std::vector<int64_t> want, bool optional = false) -> const Weight* {
    const GgufTensorInfo* t = file_->find_tensor(name);
    if (!t) {
      if (optional) return nullptr;
      throw std::runtime_error("missing tensor '" + name + "'");
    }
    if (t->shape != want) {
      std::string got, exp;
      for (auto d : t->shape) got += (got.empty() ? "" : "x") + std::to_string(d);
      for (auto d : want) exp += (exp.empty() ? "" : "x") + std::to_string(d);
      throw std::runtime_error("tensor '" + name + "' has shape " + got + ", expected " + exp);
    }
    const Weight* w = backend_->upload_weight(name, t->type, t->shape, file_->tensor_bytes(*t, scratch));
    done += t->n_bytes();
    if (progress) progress(done, total);
    if (t->shape.size() > 1 && name != "token_embd.weight") weight_bytes_ += t->n_bytes();
    return w;
  };

  const int64_t d = c.dim, qd = int64_t(c.n_heads) * c.head_dim, kvd = int64_t(c.n_kv_heads) * c.head_dim;
  w_.tok_embd = load("token_embd.weight", {d, c.n_vocab});
  w_.output_norm = load("output_norm.weight", {d});
  w_.output = c.tied_output ? w_.tok_embd : load("output.weight", {d, c.n_vocab});
  if (c.tied_output) weight_bytes_ += file_->find_tensor("token_embd.weight")->n_bytes();
  weight_bytes_ += row_bytes(file_->find_tensor("token_embd.weight")->type, d);  // one embedding row
  w_.rope_freqs = load("rope_freqs.weight", {c.rope_dim / 2}, /*optional=*/true);
  w_.layers.resize(c.n_layers);
  for (int32_t l = 0; l < c.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    LayerWeights& L = w_.layers[l];
    L.attn_norm = load(p + "attn_norm.weight", {d});
    L.wq = load(p + "attn_q.weight", {d, qd});
    L.wk = load(p + "attn_k.weight", {d, kvd});
    L.wv = load(p + "attn_v.weight", {d, kvd});
    L.wo = load(p + "attn_output.weight", {qd, d});
    if (c.qkv_bias) {
      L.bq = load(p + "attn_q.bias", {qd});
      L.bk = load(p + "attn_k.bias", {kvd});
      L.bv = load(p + "attn_v.bias", {kvd});
    }
    L.ffn_norm = load(p + "ffn_norm.weight", {d});
    L.w_gate = load(p + "ffn_gate.weight", {d, c.ffn_dim});
    L.w_up = load(p + "ffn_up.weight", {d, c.ffn_dim});
    L.w_down = load(p + "ffn_down.weight", {c.ffn_dim, d});
  }

  n_ctx_ = opts.n_ctx > 0 ? opts.n_ctx : std::min(c.ctx_train > 0 ? c.ctx_train : 2048, 4096);
  if (opts_.max_batch <= 0) opts_.max_batch = 512;
  opts_.max_batch = std::min(opts_.max_batch, n_ctx_ * std::max(1, opts.n_slots));
  max_logit_rows_ = opts.max_logit_rows > 0 ? std::min(opts.max_logit_rows, opts_.max_batch) : opts_.max_batch;
  const int64_t m = opts_.max_batch;
  b_.x = backend_->alloc_act(m, d);
  b_.xb = backend_->alloc_act(m, d);
  b_.q = backend_->alloc_act(m, qd);
  b_.k = backend_->alloc_act(m, kvd);
  b_.v = backend_->alloc_act(m, kvd);
  b_.att = backend_->alloc_act(m, qd);
  b_.hb = backend_->alloc_act(m, c.ffn_dim);
  b_.hb2 = backend_->alloc_act(m, c.ffn_dim);
  b_.ffn_out = backend_->alloc_act(m, d);
  b_.logits_in = backend_->alloc_act(max_logit_rows_, d);
  b_.logits = backend_->alloc_act(max_logit_rows_, c.n_vocab);
  backend_->alloc_kv({c.n_layers, std::max(1, opts.n_slots), n_ctx_, static_cast<int32_t>(kvd), opts.kv_type});
}

void Model::check_batch(const Batch& batch) const {
  const int32_t n = batch.size();
  const int32_t r = static_cast<int32_t>(batch.logit_rows.size());
  if (n <= 0 || n > opts_.max_batch) throw std::runtime_error("batch of " + std::to_string(n) + " tokens exceeds the planned maximum " + std::to_string(opts_.max_batch));
  if (r > max_logit_rows_) throw std::runtime_error("too many logit rows in one step");
  for (int32_t i = 0; i < n; ++i)
    if (batch.positions[i] < 0 || batch.positions[i] >= n_ctx_)
      throw std::runtime_error("position " + std::to_string(batch.positions[i]) + " is outside the context of " +
                               std::to_string(n_ctx_) + " tokens");
}

int32_t Model::run_step(const Batch& batch) {
  const int32_t r = static_cast<int32_t>(batch.logit_rows.size());
  backend_->begin_step(batch);
  build_step(batch.size(), r);
  last_rows_ = r;
  return r;
}

void Model::forward(const Batch& batch, std::span<float> logits) {
  check_batch(batch);
  if (logits.size() < batch.logit_rows.size() * cfg_.n_vocab) throw std::runtime_error("logits buffer too small");
  const int32_t r = run_step(batch);
  backend_->end_step(b_.logits.with_rows(r), logits);
}

void Model::forward_argmax(const Batch& batch, std::span<int32_t> ids) {
  check_batch(batch);
  if (ids.size() < batch.logit_rows.size()) throw std::runtime_error("ids buffer too small");
  const int32_t r = run_step(batch);
  backend_->end_step_argmax(b_.logits.with_rows(r), ids);
}

void Model::forward_candidates(const Batch& batch, std::span<const float> margins, int32_t cap,
                               std::span<float> values, std::span<int32_t> ids, std::span<int32_t> counts) {
  check_batch(batch);
  const int32_t r = run_step(batch);
  backend_->end_step_candidates(b_.logits.with_rows(r), margins, cap, values, ids, counts);
}

void Model::forward_sample(const Batch& batch, std::span<const DeviceSampleRow> rows, std::span<int32_t> ids) {
  check_batch(batch);
  const int32_t r = run_step(batch);
  backend_->end_step_sample(b_.logits.with_rows(r), rows, ids);
}

int32_t Model::forward_chain(const Batch& batch, int32_t steps, std::span<const DeviceSampleRow> rows,
                             std::span<int32_t> ids, const Backend::ChainProgress& progress) {
  check_batch(batch);
  for (int32_t pos : batch.positions)
    if (pos + steps > n_ctx_)
      throw std::runtime_error("a decode chain of " + std::to_string(steps) + " steps from position " +
                               std::to_string(pos) + " leaves the context of " + std::to_string(n_ctx_) + " tokens");
  const int32_t r = run_step(batch);
  const int32_t done = backend_->end_step_chain(b_.logits.with_rows(r), steps, rows, ids, progress);
  last_rows_ = 0;  // the logits are those of the last run
  return done;
}

void Model::read_logit_rows(std::span<const int32_t> rows, std::span<float> host) {
  for (int32_t row : rows)
    if (row < 0 || row >= last_rows_) throw std::runtime_error("read_logit_rows: no such row in the last step");
  backend_->read_logit_rows(b_.logits.with_rows(last_rows_), rows, host);
}

}  // namespace vireo
