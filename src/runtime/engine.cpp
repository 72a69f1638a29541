// Engine: a model, its tokenizer and the generation loop for one sequence (slot 0).
#include <algorithm>
#include <chrono>
#include <stdexcept>

#include "backend/cpu/cpu_backend.h"
#ifdef VIREO_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif
#include "model/model.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"
#include "vireo/vireo.h"

namespace vireo {

std::unique_ptr<Backend> make_backend(const std::string& device, int threads);

struct Engine::Impl {
  std::shared_ptr<const GgufFile> file;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Model> model;
  std::vector<int32_t> cached;  // tokens whose keys/values are in slot 0, in order
  std::vector<float> logits;    // one row of n_vocab (prefill and decode read back only the last token's row)
  Batch batch;                  // reused every step
};

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

std::unique_ptr<Engine> Engine::load(const std::string& path, const EngineOptions& opts, const ProgressFn& progress) {
  auto impl = std::make_unique<Impl>();
  impl->file = std::make_shared<GgufFile>(GgufFile::open(path));
  impl->tokenizer = Tokenizer::from_gguf(*impl->file);
  RunOptions ro;
  ro.n_ctx = opts.n_ctx;
  ro.n_slots = opts.n_slots;
  ro.max_batch = opts.max_batch;
  ro.max_logit_rows = 0;
  ro.kv_type = opts.kv_f32 ? DType::F32 : DType::F16;
  impl->model = std::make_unique<Model>(impl->file, make_backend(opts.device, opts.threads), ro, progress);
  if (impl->tokenizer->n_vocab() > impl->model->config().n_vocab)
    throw std::runtime_error("tokenizer has more tokens than the model's embedding table");
  impl->logits.resize(static_cast<size_t>(impl->model->config().n_vocab));
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

std::unique_ptr<Backend> make_backend(const std::string& device, int threads) {
  if (device == "cpu") return make_cpu_backend(threads);
#ifdef VIREO_HAVE_CUDA
  if (device == "cuda" || device.rfind("cuda:", 0) == 0) {
    int index = 0;
    if (device.size() > 5) {
      try {
        index = std::stoi(device.substr(5));
      } catch (const std::exception&) {
        throw std::runtime_error("bad device '" + device + "' (use cuda or cuda:N)");
      }
    }
    std::string why;
    if (!cuda_available(&why)) throw std::runtime_error("device '" + device + "' is not available: " + why);
    return make_cuda_backend(index);
  }
  throw std::runtime_error("unknown device '" + device + "' (this build has: cpu, cuda[:N])");
#else
  throw std::runtime_error("unknown or unavailable device '" + device + "' (this build has: cpu; CUDA needs nvcc at build time)");
#endif
}

std::vector<int32_t> Engine::tokenize(std::string_view text, bool add_bos) const {
  return impl_->tokenizer->encode(text, add_bos);
}

std::string Engine::detokenize(const std::vector<int32_t>& ids) const { return impl_->tokenizer->decode(ids); }

int32_t Engine::n_vocab() const { return impl_->model->config().n_vocab; }
int32_t Engine::n_ctx() const { return impl_->model->n_ctx(); }
std::string Engine::architecture() const { return impl_->model->config().arch; }
int64_t Engine::weight_bytes_per_token() const { return impl_->model->weight_bytes_per_token(); }
int64_t Engine::memory_bytes() const { return impl_->model->backend().memory_bytes(); }

std::vector<float> Engine::logits_all(const std::vector<int32_t>& tokens) {
  Impl& m = *impl_;
  if (static_cast<int32_t>(tokens.size()) > n_ctx()) throw std::runtime_error("sequence longer than the context");
  const int32_t V = n_vocab(), chunk = std::min(m.model->max_batch(), m.model->max_logit_rows());
  std::vector<float> out(tokens.size() * V);
  for (size_t s = 0; s < tokens.size(); s += chunk) {
    m.batch.clear();
    for (size_t i = s; i < tokens.size() && i < s + chunk; ++i)
      m.batch.add(tokens[i], static_cast<int32_t>(i), 0, true);
    m.model->forward(m.batch, std::span<float>(out.data() + s * V, m.batch.size() * size_t(V)));
  }
  m.cached = tokens;
  return out;
}

GenerateStats Engine::generate(const std::string& prompt, const GenerateOptions& opts, const TextFn& on_text) {
  std::vector<int32_t> ids = impl_->tokenizer->encode(prompt, opts.add_bos && impl_->tokenizer->add_bos_default());
  if (ids.empty()) ids.push_back(impl_->tokenizer->bos());  // an empty prompt starts from BOS
  return generate_tokens(ids, opts, on_text);
}

GenerateStats Engine::generate_tokens(const std::vector<int32_t>& prompt, const GenerateOptions& opts,
                                      const TextFn& on_text, const std::function<void(int32_t)>& on_token) {
  using clock = std::chrono::steady_clock;
  Impl& m = *impl_;
  const Tokenizer& tok = *m.tokenizer;
  GenerateStats st;
  st.prompt_tokens = static_cast<int32_t>(prompt.size());
  if (prompt.empty()) throw std::runtime_error("empty prompt (no tokens)");
  const int32_t n_ctx = m.model->n_ctx();
  if (st.prompt_tokens >= n_ctx)
    throw std::runtime_error("prompt is " + std::to_string(st.prompt_tokens) + " tokens, the context holds " +
                             std::to_string(n_ctx) + " (use --ctx to raise it)");
  for (int32_t t : prompt)
    if (t < 0 || t >= n_vocab()) throw std::runtime_error("token id " + std::to_string(t) + " out of range");

  const auto t0 = clock::now();
  // Reuse the part of the prompt already in the cache; always recompute at least the last prompt token so its
  // logits are fresh.
  size_t keep = 0;
  if (opts.reuse_cache)
    while (keep < m.cached.size() && keep + 1 < prompt.size() && m.cached[keep] == prompt[keep]) ++keep;
  m.model->backend().kv_truncate(0, static_cast<int32_t>(keep));
  m.cached.assign(prompt.begin(), prompt.begin() + static_cast<std::ptrdiff_t>(keep));
  st.prompt_computed = st.prompt_tokens - static_cast<int32_t>(keep);

  const int32_t chunk = m.model->max_batch();
  for (size_t s = keep; s < prompt.size(); s += chunk) {
    m.batch.clear();
    const size_t e = std::min(prompt.size(), s + chunk);
    for (size_t i = s; i < e; ++i) m.batch.add(prompt[i], static_cast<int32_t>(i), 0, i + 1 == prompt.size());
    m.model->forward(m.batch, m.logits);
    m.cached.insert(m.cached.end(), prompt.begin() + static_cast<std::ptrdiff_t>(s),
                    prompt.begin() + static_cast<std::ptrdiff_t>(e));
  }
  const auto t_prefill = clock::now();
  st.prompt_seconds = std::chrono::duration<double>(t_prefill - t0).count();

  Sampler sampler(opts.sampling, n_vocab());
  StreamDecoder decoder(tok);
  // Prime the decoder with the last prompt token (its text is not emitted): it then knows whether output starts
  // a text (after BOS: SPM drops the dummy-prefix space) or continues one, and holds any split UTF-8 sequence.
  decoder.push(prompt.back());
  StopMatcher stops(opts.stop);
  std::vector<int32_t>& history = m.cached;
  clock::time_point t_first{};
  st.stop_reason = "length";
  for (int32_t i = 0; i < opts.max_tokens; ++i) {
    const int32_t next = sampler.sample(m.logits, history);
    if (i == 0) {
      t_first = clock::now();
      st.ttft_seconds = std::chrono::duration<double>(t_first - t0).count();
    }
    if (on_token) on_token(next);
    if (!opts.ignore_eos && tok.is_eog(next)) {
      st.stop_reason = "eos";
      break;
    }
    ++st.generated_tokens;
    bool stopped = false;
    const std::string text = stops.push(decoder.push(next), &stopped);
    if (!text.empty() && on_text && !on_text(text)) {
      st.stop_reason = "cancelled";
      stopped = true;
    }
    if (stopped) {
      if (st.stop_reason != "cancelled") st.stop_reason = "stop";
      break;
    }
    if (static_cast<int32_t>(history.size()) >= n_ctx) {
      st.stop_reason = "context";
      break;
    }
    if (i + 1 == opts.max_tokens) break;  // the last token needs no forward pass
    m.batch.clear();
    m.batch.add(next, static_cast<int32_t>(history.size()), 0, true);
    m.model->forward(m.batch, m.logits);
    history.push_back(next);
  }
  if (st.stop_reason == "length" || st.stop_reason == "eos" || st.stop_reason == "context") {
    bool ignored = false;
    std::string rest = stops.push(decoder.flush(), &ignored);
    rest += stops.flush();
    if (!rest.empty() && on_text) on_text(rest);
  }
  if (st.generated_tokens > 0)
    st.decode_seconds = std::chrono::duration<double>(clock::now() - t_first).count();
  return st;
}

}  // namespace vireo
