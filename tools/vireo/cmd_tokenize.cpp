// vireo tokenize: ids of stdin's text on one line (no BOS unless asked).
#include <iostream>
#include <iterator>

#include "common.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

namespace vireo::cli {

void add_tokenize_command(CLI::App& app) {
  struct Args {
    std::string model;
    bool ids = false;
    bool bos = false;
    bool no_special = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("tokenize", "tokenize stdin and print the token ids");
  cmd->add_option("-m,--model", args->model, "GGUF file with a vocabulary (a model or vocab-only)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_flag("--ids", args->ids, "print ids only (the default); without it nothing else is printed either");
  cmd->add_flag("--bos", args->bos, "prepend BOS");
  cmd->add_flag("--no-special", args->no_special, "treat special-token text as plain text");
  cmd->callback([args] {
    GgufFile f = GgufFile::open(args->model);
    auto tok = Tokenizer::from_gguf(f);
    std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    std::vector<int32_t> ids = tok->encode(text, args->bos, !args->no_special);
    std::string line;
    for (size_t i = 0; i < ids.size(); ++i) line += (i ? " " : "") + std::to_string(ids[i]);
    std::printf("%s\n", line.c_str());
  });
}

}  // namespace vireo::cli
