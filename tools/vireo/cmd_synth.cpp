// vireo synth: a random-weight GGUF with the exact shapes (and quantization mix) of a real model.
#include "common.h"
#include "model/synth.h"

namespace vireo::cli {

void add_synth_command(CLI::App& app) {
  struct Args {
    std::string preset, type = "q4_k_m", out, vocab;
    uint64_t seed = 42;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("synth", "write a random-weight GGUF with a real model's shapes");
  cmd->add_option("--preset", args->preset, "llama3.1-8b, llama3.2-1b, llama3.2-3b, tinyllama-1.1b, qwen2.5-0.5b")
      ->required();
  cmd->add_option("--type", args->type, "f32, f16, bf16, q8_0, q4_0, q4_k_m, q5_k_m, q6_k, ...");
  cmd->add_option("-o,--output", args->out, "output GGUF path")->required();
  cmd->add_option("--vocab", args->vocab, "take the vocabulary from this GGUF (else one is generated)");
  cmd->add_option("--seed", args->seed, "random seed");
  cmd->callback([args] {
    ProgressBar bar("writing " + args->out);
    write_synthetic_gguf(args->preset, args->type, args->out, args->vocab, args->seed,
                         [&](int64_t d, int64_t t) { bar.update(d, t); });
    bar.finish();
  });
}

}  // namespace vireo::cli
