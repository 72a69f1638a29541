// vireo run: stream a completion of a prompt to stdout; a one-line summary goes to stderr.
#include <cstdio>
#include <iostream>
#include <iterator>

#include "common.h"

namespace vireo::cli {

void add_run_command(CLI::App& app) {
  struct Args {
    LoadArgs load;
    std::string prompt;
    std::string prompt_file;
    int n = 128;
    GenerateOptions gen;
    std::vector<std::string> stop;
    bool ignore_eos = false;
    bool no_bos = false;
    bool show_special = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("run", "generate text from a prompt");
  args->load.add_to(cmd);
  cmd->add_option("-p,--prompt", args->prompt, "prompt text (empty: start from BOS)");
  cmd->add_option("-f,--file", args->prompt_file, "read the prompt from a file ('-' for stdin)");
  cmd->add_option("-n,--n-predict", args->n, "new tokens at most");
  SamplingParams& s = args->gen.sampling;
  cmd->add_option("--temp", s.temperature, "temperature (0: greedy)");
  cmd->add_option("--top-k", s.top_k, "top-k (0: off)");
  cmd->add_option("--top-p", s.top_p, "top-p (1: off)");
  cmd->add_option("--min-p", s.min_p, "min-p (0: off)");
  cmd->add_option("--repeat-penalty", s.repeat_penalty, "repetition penalty (1: off)");
  cmd->add_option("--presence-penalty", s.presence_penalty, "presence penalty");
  cmd->add_option("--frequency-penalty", s.frequency_penalty, "frequency penalty");
  cmd->add_option("--repeat-last-n", s.penalty_last_n, "tokens the penalties look back over");
  cmd->add_option("--seed", s.seed, "random seed");
  cmd->add_option("--stop", args->stop, "stop string (repeatable)");
  cmd->add_flag("--ignore-eos", args->ignore_eos, "keep generating after end-of-sequence");
  cmd->add_flag("--no-bos", args->no_bos, "do not add BOS to the prompt");
  cmd->add_flag("--show-special", args->show_special, "print the text of control tokens (e.g. </s>) too");
  cmd->callback([args] {
    std::string prompt = args->prompt;
    if (!args->prompt_file.empty()) {
      if (args->prompt_file == "-") {
        prompt.assign(std::istreambuf_iterator<char>(std::cin), {});
      } else {
        FILE* f = std::fopen(args->prompt_file.c_str(), "rb");
        if (!f) throw std::runtime_error("cannot open prompt file '" + args->prompt_file + "'");
        char buf[65536];
        size_t k;
        while ((k = std::fread(buf, 1, sizeof buf, f)) > 0) prompt.append(buf, k);
        std::fclose(f);
      }
    }
    auto engine = load_engine(args->load);
    GenerateOptions g = args->gen;
    g.max_tokens = args->n;
    g.stop = args->stop;
    g.ignore_eos = args->ignore_eos;
    g.add_bos = !args->no_bos;
    g.show_special = args->show_special;
    GenerateStats st = engine->generate(prompt, g, [](std::string_view piece) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      return true;
    });
    std::fputc('\n', stdout);
    std::fflush(stdout);
    const double pp = st.prompt_seconds > 0 ? st.prompt_computed / st.prompt_seconds : 0;
    const double tg = st.decode_seconds > 0 ? (st.generated_tokens - 1) / st.decode_seconds : 0;
    std::fprintf(stderr,
                 "prompt: %d tokens, %.1f tok/s | decode: %d tokens, %.1f tok/s | time to first token: %.1f ms | "
                 "stop: %s\n",
                 st.prompt_tokens, pp, st.generated_tokens, tg, st.ttft_seconds * 1e3, st.stop_reason.c_str());
  });
}

}  // namespace vireo::cli
