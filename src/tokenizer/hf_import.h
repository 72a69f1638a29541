// Builds GGUF tokenizer metadata from a Hugging Face tokenizer.json, for vocabularies that come without a GGUF
// (tests, benchmarks, tools). Only the BPE-with-merges models are supported:
//   model "gpt2"   byte-level BPE (set `pre` to the pre-tokenizer name, e.g. "llama-bpe", "qwen2")
//   model "gemma4" U+2581 BPE with byte fallback (Gemma 3/4 style tokenizer.json)
// Token types: added tokens marked special -> CONTROL; other added tokens -> USER_DEFINED ("gpt2") or NORMAL
// ("gemma4"); <0xNN> pieces of a byte-fallback model -> BYTE. bos/eos ids come from tokenizer_config.json beside
// tokenizer.json when it names them.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace vireo {

class GgufFile;

// Returns a complete GGUF file image (metadata only, no tensors). Throws std::runtime_error on unreadable or
// unsupported input.
std::vector<uint8_t> hf_tokenizer_to_gguf(const std::string& tokenizer_json_path, const std::string& model,
                                          const std::string& pre);
// Same, opened as a GgufFile.
std::unique_ptr<GgufFile> open_hf_tokenizer_as_gguf(const std::string& tokenizer_json_path, const std::string& model,
                                                    const std::string& pre);

}  // namespace vireo
