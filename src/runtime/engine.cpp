// Engine: a model, its tokenizer and the scheduler that runs generation over its KV slots.
#include <algorithm>
#include <chrono>
#include <stdexcept>

#include "backend/cpu/cpu_backend.h"
#ifdef VIREO_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif
#ifdef VIREO_HAVE_WEBGPU
#include "backend/webgpu/webgpu_backend.h"
#endif
#include "model/model.h"
#include "runtime/sampler.h"
#include "runtime/scheduler_impl.h"
#include "tokenizer/tokenizer.h"
#include "vireo/vireo.h"

namespace vireo {

std::unique_ptr<Backend> make_backend(const EngineOptions& opts);

struct Engine::Impl {
  std::shared_ptr<const GgufFile> file;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Model> model;
  std::unique_ptr<Scheduler::Impl> sched;  // continuous batching over the slots; generate() runs through it
  Scheduler scheduler{nullptr};
  Batch batch;  // logits_all's steps
};

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

std::unique_ptr<Engine> Engine::load(const std::string& path, const EngineOptions& opts, const ProgressFn& progress) {
  auto impl = std::make_unique<Impl>();
  impl->file = std::make_shared<GgufFile>(opts.stream_weights ? GgufFile::open_streamed(path) : GgufFile::open(path));
  impl->tokenizer = Tokenizer::from_gguf(*impl->file);
  RunOptions ro;
  ro.n_ctx = opts.n_ctx;
  ro.n_slots = opts.n_slots;
  ro.max_batch = opts.max_batch;
  ro.max_logit_rows = 0;
  ro.kv_type = opts.kv_f32 ? DType::F32 : DType::F16;
  impl->model = std::make_unique<Model>(impl->file, make_backend(opts), ro, progress);
  if (impl->tokenizer->n_vocab() > impl->model->config().n_vocab)
    throw std::runtime_error("tokenizer has more tokens than the model's embedding table");
  impl->sched = std::make_unique<Scheduler::Impl>(*impl->model, *impl->tokenizer);
  impl->scheduler = Scheduler(impl->sched.get());
  impl->scheduler.set_decode_chain(opts.decode_chain, opts.decode_chain_ms);
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

std::unique_ptr<Backend> make_backend(const EngineOptions& opts) {
  const std::string& device = opts.device;
  const int threads = opts.threads;
  std::string have = "cpu";
#ifdef VIREO_HAVE_CUDA
  have += ", cuda[:N]";
#endif
#ifdef VIREO_HAVE_WEBGPU
  have += ", webgpu";
#endif
  if (device == "cpu") return make_cpu_backend(threads);
  if (device == "cuda" || device.rfind("cuda:", 0) == 0) {
#ifdef VIREO_HAVE_CUDA
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
#else
    throw std::runtime_error("device '" + device + "' is not in this build (CUDA needs nvcc at build time; this build has: " + have + ")");
#endif
  }
  if (device == "webgpu") {
#ifdef VIREO_HAVE_WEBGPU
    try {  // opening the device is the availability check (no second device just to ask)
      WebGpuOptions wo;
      wo.on_compile = opts.on_compile;
      return make_webgpu_backend(wo);
    } catch (const std::exception& e) {
      throw std::runtime_error(std::string("device 'webgpu': ") + e.what());
    }
#else
    throw std::runtime_error("device 'webgpu' is not in this build (it needs wgpu-native: scripts/install-deps.sh; this build has: " + have + ")");
#endif
  }
  throw std::runtime_error("unknown device '" + device + "' (this build has: " + have + ")");
}

std::vector<int32_t> Engine::tokenize(std::string_view text, bool add_bos) const {
  return impl_->tokenizer->encode(text, add_bos);
}

std::string Engine::detokenize(const std::vector<int32_t>& ids) const { return impl_->tokenizer->decode(ids); }

int32_t Engine::n_vocab() const { return impl_->model->config().n_vocab; }
int32_t Engine::n_ctx() const { return impl_->model->n_ctx(); }
int32_t Engine::n_slots() const { return impl_->model->n_slots(); }
bool Engine::adds_bos() const { return impl_->tokenizer->add_bos_default() && impl_->tokenizer->bos() >= 0; }
bool Engine::is_eog(int32_t token) const { return impl_->tokenizer->is_eog(token); }
std::string Engine::token_text(int32_t token) const { return impl_->tokenizer->token_bytes(token); }
Scheduler& Engine::scheduler() { return impl_->scheduler; }
std::string Engine::architecture() const { return impl_->model->config().arch; }
std::string Engine::device_description() const { return impl_->model->backend().description(); }
const GgufFile& Engine::gguf() const { return *impl_->file; }
int64_t Engine::weight_bytes_per_token() const { return impl_->model->weight_bytes_per_token(); }
int64_t Engine::memory_bytes() const { return impl_->model->backend().memory_bytes(); }

Engine::DeviceCounters Engine::device_counters() const {
  const BackendCounters c = impl_->model->backend().counters();
  return {c.steps, c.submits, c.dispatches, c.encode_seconds, c.wait_seconds};
}

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
  m.sched->reset_slot(0, tokens);
  return out;
}

GenerateStats Engine::generate(const std::string& prompt, const GenerateOptions& opts, const TextFn& on_text) {
  std::vector<int32_t> ids = impl_->tokenizer->encode(prompt, opts.add_bos && impl_->tokenizer->add_bos_default());
  if (ids.empty()) ids.push_back(impl_->tokenizer->bos());  // an empty prompt starts from BOS
  return generate_tokens(ids, opts, on_text);
}

GenerateStats Engine::generate_tokens(const std::vector<int32_t>& prompt, const GenerateOptions& opts,
                                      const TextFn& on_text, const std::function<void(int32_t)>& on_token) {
  if (prompt.empty()) throw std::runtime_error("empty prompt (no tokens)");
  GenerateRequest req;
  req.prompt = prompt;
  req.opts = opts;
  GenerateStats stats;
  req.on_event = [&](const StreamEvent& ev) {
    if (ev.done) {
      if (!ev.text.empty() && on_text) on_text(ev.text);
      stats = *ev.stats;
      return true;
    }
    if (on_token) on_token(ev.token);
    if (!ev.text.empty() && on_text) return on_text(ev.text);
    return true;
  };
  uint64_t id = 0;
  try {
    id = scheduler().submit(std::move(req));
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(e.what());
  }
  (void)id;
  impl_->scheduler.run_until_idle();
  if (stats.stop_reason == "error") throw std::runtime_error(stats.error);
  return stats;
}

}  // namespace vireo
