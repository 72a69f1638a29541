#include "common.h"

#include <unistd.h>

namespace vireo::cli {

void LoadArgs::add_to(CLI::App* app) {
  app->add_option("-m,--model", model, "GGUF model file")->required()->check(CLI::ExistingFile);
  app->add_option("--device", device, "cpu (default), cuda[:N] when built with CUDA, webgpu when built with wgpu-native");
  app->add_option("-t,--threads", threads, "CPU threads (0: all cores)");
  app->add_option("-c,--ctx", ctx, "context length (0: the model's, capped at 4096)");
  app->add_flag("--kv-f32", kv_f32, "keep the KV cache in f32 instead of f16");
  app->add_option("-b,--batch", batch, "tokens per prefill step");
  app->add_option("--chain", chain, "decode steps chained on the GPU between host round trips (cuda, webgpu; 1: off)")
      ->check(CLI::Range(1, 256));
  app->add_option("--chain-ms", chain_ms, "a decode chain lasts at most about this long, so text streams smoothly (0: no limit)")
      ->check(CLI::NonNegativeNumber);
}

EngineOptions LoadArgs::engine_options() const {
  EngineOptions o;
  o.device = device;
  o.threads = threads;
  o.n_ctx = ctx;
  o.kv_f32 = kv_f32;
  o.max_batch = batch;
  o.n_slots = slots;
  o.decode_chain = chain;
  o.decode_chain_ms = chain_ms;
  return o;
}

ProgressBar::ProgressBar(std::string label, bool bytes)
    : label_(std::move(label)), tty_(isatty(2) != 0), bytes_(bytes), start_(std::chrono::steady_clock::now()) {}

void ProgressBar::update(int64_t done, int64_t total) {
  if (!tty_ || total <= 0) return;
  const int pct = static_cast<int>(100 * done / total);
  if (pct == last_pct_) return;
  last_pct_ = pct;
  const int width = 30, fill = pct * width / 100;
  const std::string d = bytes_ ? human_bytes(double(done)) : std::to_string(done);
  const std::string t = bytes_ ? human_bytes(double(total)) : std::to_string(total);
  std::fprintf(stderr, "\r%s [%.*s%*s] %3d%% %s / %s", label_.c_str(), fill, "##############################",
               width - fill, "", pct, d.c_str(), t.c_str());
  std::fflush(stderr);
}

void ProgressBar::finish() {
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  if (tty_) std::fprintf(stderr, "\r\033[K");
  std::fprintf(stderr, "%s done in %.2f s\n", label_.c_str(), s);
}

std::unique_ptr<Engine> load_engine(const LoadArgs& a, bool quiet) {
  // WebGPU compiles every compute pipeline first (seconds on some drivers), then the weights load.
  std::unique_ptr<ProgressBar> compile;
  EngineOptions eo = a.engine_options();
  ProgressBar bar("loading " + a.model);
  if (eo.device == "webgpu")
    eo.on_compile = [&](int64_t d, int64_t t) {
      if (!compile) compile = std::make_unique<ProgressBar>("compiling WebGPU kernels", false);
      compile->update(d, t);
      if (d == t) {
        if (!quiet) compile->finish();
        bar.restart();  // the loading time that follows is the weights' alone
      }
    };
  auto engine = Engine::load(a.model, eo, [&](int64_t d, int64_t t) { bar.update(d, t); });
  if (!quiet) {
    bar.finish();
    if (eo.device != "cpu") std::fprintf(stderr, "device: %s\n", engine->device_description().c_str());
  }
  return engine;
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", b, units[u]);
  return buf;
}

}  // namespace vireo::cli
