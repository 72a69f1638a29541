// Builds GGUF tokenizer metadata from a Hugging Face tokenizer.json, for vocabularies that come without a GGUF
// (tests, benchmarks, tools). Only the BPE-with-merges models are supported:
//   model "gpt2"   byte-level BPE (set `pre` to the pre-tokenizer name, e.g. "llama-bpe", "qwen2")
//   model "gemma4" U+2581 BPE with byte fallback (Gemma 3/4 style tokenizer.json)
//   model "llama"  SentencePiece-style BPE (Llama 2, Mistral, Phi-3 style tokenizer.json: a Replace(' ', U+2581)
//                  normalizer, optionally after Prepend(U+2581), or a Metaspace pre-tokenizer; byte_fallback). It
//                  becomes the GGUF "llama" (SentencePiece) tokenizer: each piece gets score -rank of the first
//                  merge that makes it, add_space_prefix comes from Prepend / Metaspace prepend_scheme
//                  ("first"/"always" -> true, "never" -> false), model.unk_token becomes UNKNOWN. Not modelled:
//                  Metaspace split=true (treated like split=false) and the first/always difference after special
//                  tokens (the GGUF tokenizer prefixes a space after special tokens in both cases, as llama.cpp does).
//   model "auto"   (the default of the one-argument overloads) picks one of the above from the file itself:
//                  - byte-level BPE (a ByteLevel pre-tokenizer, decoder or normalizer) -> "gpt2", with `pre` from the
//                    pre-tokenizer's one Isolated Split regex: the Llama 3 regex -> "llama-bpe", the Qwen2 regex ->
//                    "qwen2", the GPT-2 regex (or no Split and ByteLevel use_regex=true) -> "gpt2". Any other regex
//                    is an error that quotes it (the GGUF tokenizer cannot carry a custom regex).
//                  - BPE with byte_fallback and a Metaspace pre-tokenizer or a Prepend(U+2581) normalizer -> "llama".
//                  - BPE with byte_fallback, a Replace(' ', U+2581) normalizer, no Prepend, no Metaspace (Gemma 3
//                    style) -> "gemma4".
//                  - anything else (WordPiece, Unigram, WordLevel, BPE of another shape) -> std::runtime_error.
//                  The result is byte for byte the image the explicit model/pre would give. With "auto", `pre` must
//                  be empty.
// Merges may be given as "a b" strings or as ["a", "b"] pairs.
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

// The target model/pre that model "auto" picks for a tokenizer.json (throws std::runtime_error when none fits).
struct HfTokenizerTarget {
  std::string model;  // "gpt2", "llama" or "gemma4"
  std::string pre;    // tokenizer.ggml.pre ("" for none)
};
HfTokenizerTarget detect_hf_tokenizer(const std::string& tokenizer_json_path);

// Returns a complete GGUF file image (metadata only, no tensors). Throws std::runtime_error on unreadable or
// unsupported input.
std::vector<uint8_t> hf_tokenizer_to_gguf(const std::string& tokenizer_json_path, const std::string& model,
                                          const std::string& pre);
std::vector<uint8_t> hf_tokenizer_to_gguf(const std::string& tokenizer_json_path);  // model "auto"
// Same, opened as a GgufFile.
std::unique_ptr<GgufFile> open_hf_tokenizer_as_gguf(const std::string& tokenizer_json_path, const std::string& model,
                                                    const std::string& pre);
std::unique_ptr<GgufFile> open_hf_tokenizer_as_gguf(const std::string& tokenizer_json_path);  // model "auto"

}  // namespace vireo
