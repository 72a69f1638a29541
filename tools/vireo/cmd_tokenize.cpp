// vireo tokenize: ids of stdin's text on one line (no BOS unless asked). The vocabulary comes from a GGUF (-m) or
// from a Hugging Face tokenizer.json (--tokenizer; its kind is auto-detected, see tokenizer/hf_import.h).
#include <iostream>
#include <iterator>
#include <memory>

#include "common.h"
#include "gguf/gguf.h"
#include "tokenizer/hf_import.h"
#include "tokenizer/tokenizer.h"

namespace vireo::cli {

void add_tokenize_command(CLI::App& app) {
  struct Args {
    std::string model;
    std::string tokenizer_json;
    bool ids = false;
    bool bos = false;
    bool no_special = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("tokenize", "tokenize stdin and print the token ids");
  CLI::Option* m = cmd->add_option("-m,--model", args->model, "GGUF file with a vocabulary (a model or vocab-only)")
                       ->check(CLI::ExistingFile);
  CLI::Option* t =
      cmd->add_option("--tokenizer", args->tokenizer_json,
                      "Hugging Face tokenizer.json instead of -m (bos/eos from tokenizer_config.json beside it)")
          ->check(CLI::ExistingFile);
  m->excludes(t);
  t->excludes(m);
  cmd->add_flag("--ids", args->ids, "print ids only (the default); without it nothing else is printed either");
  cmd->add_flag("--bos", args->bos, "prepend BOS");
  cmd->add_flag("--no-special", args->no_special, "treat special-token text as plain text");
  cmd->callback([args, m, t] {
    if (m->count() + t->count() != 1) throw CLI::RequiredError("tokenize: exactly one of -m/--model, --tokenizer");
    std::unique_ptr<GgufFile> f = args->tokenizer_json.empty()
                                      ? std::make_unique<GgufFile>(ByteSource::open_file(args->model))
                                      : open_hf_tokenizer_as_gguf(args->tokenizer_json);
    auto tok = Tokenizer::from_gguf(*f);
    std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    std::vector<int32_t> ids = tok->encode(text, args->bos, !args->no_special);
    std::string line;
    for (size_t i = 0; i < ids.size(); ++i) line += (i ? " " : "") + std::to_string(ids[i]);
    std::printf("%s\n", line.c_str());
  });
}

}  // namespace vireo::cli
