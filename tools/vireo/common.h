// Shared pieces of the vireo command-line tool.
#pragma once
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <string>

#include "vireo/vireo.h"

namespace vireo {
class ChatTemplate;
}

namespace vireo::cli {

// Options every command that loads a model takes.
struct LoadArgs {
  std::string model;
  std::string device = "cpu";
  int threads = 0;
  int ctx = 0;
  bool kv_f32 = false;
  int batch = 512;
  int slots = 1;  // sequences kept at once (serve --parallel, bench --parallel)
  int chain = EngineOptions{}.decode_chain;
  double chain_ms = EngineOptions{}.decode_chain_ms;
  void add_to(CLI::App* app);
  EngineOptions engine_options() const;
};

// A progress bar on stderr (only when stderr is a terminal; otherwise one line at the end).
class ProgressBar {
 public:
  // bytes: show done/total as sizes (loading); otherwise as counts (pipelines compiled)
  explicit ProgressBar(std::string label, bool bytes = true);
  void update(int64_t done, int64_t total);
  void finish();
  void restart() { start_ = std::chrono::steady_clock::now(); }  // the clock starts again (time shown by finish)

 private:
  std::string label_;
  bool tty_;
  bool bytes_;
  int last_pct_ = -1;
  std::chrono::steady_clock::time_point start_;
};

std::unique_ptr<Engine> load_engine(const LoadArgs& a, bool quiet = false);
std::string human_bytes(double b);

void add_run_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_info_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_synth_command(CLI::App& app);
void add_serve_command(CLI::App& app);
void add_chat_command(CLI::App& app);

// The chat template (cmd_serve.cpp): `override_path` (a Jinja file or a tokenizer_config.json) when given, else
// the model's, else a plain "User:/Assistant:" fallback (with a note on stderr unless `quiet`).
std::shared_ptr<ChatTemplate> load_chat_template(const std::string& model_path, const std::string& override_path,
                                                 bool quiet);

}  // namespace vireo::cli
