#include <cstdio>
#include <exception>

#include "common.h"

int main(int argc, char** argv) {
  CLI::App app{"vireo: run large language models from GGUF files"};
  app.require_subcommand(1);
  vireo::cli::add_run_command(app);
  vireo::cli::add_tokenize_command(app);
  vireo::cli::add_info_command(app);
  vireo::cli::add_bench_command(app);
  vireo::cli::add_synth_command(app);
  vireo::cli::add_serve_command(app);
  vireo::cli::add_chat_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
