// Tokenizer built from GGUF metadata (tokenizer.ggml.*).
//
// Supported `tokenizer.ggml.model` values:
//   "llama"  SentencePiece BPE-by-score: optional dummy-prefix space, ' ' -> U+2581, merges of adjacent pieces by the
//            highest score, <0xNN> byte fallback for pieces that are not in the vocab.
//   "gpt2"   Byte-level BPE: the text is split by the pre-tokenizer regexes named by `tokenizer.ggml.pre`, each piece
//            is mapped byte-by-byte to the GPT-2 printable alphabet and merged by `tokenizer.ggml.merges` rank.
//   "gemma4" BPE with merges over U+2581-escaped text (no byte-level alphabet) with <0xNN> byte fallback; newline
//            runs are split off first.
// Anything else ("bert", "t5", "rwkv", ...) makes from_gguf throw "unsupported tokenizer model '<name>'".
//
// Special tokens: before the model runs, the input is partitioned on the literal text of special tokens.
// USER_DEFINED tokens are always matched; CONTROL and UNKNOWN tokens only when `parse_special` is true. Longer
// tokens win (each token's occurrences are carved out in order of decreasing length).
//
// Decoding: token_bytes() gives the raw bytes of one token. decode() concatenates them; for "llama" vocabs that add
// a dummy prefix space, one leading space is stripped from the first piece when nothing was emitted before it
// (a hidden BOS emits nothing, so decode(encode(x, add_bos)) == x; with show_special the shown "<s>" keeps the
// space after it, as in llama.cpp). decode() does no other clean-up (no removal of spaces before punctuation).
//
// Exactness: encode() reproduces llama.cpp's tokenizer on the fixture vectors (fixtures/vocab/*.inp/.out).
// Not implemented: per-model LSTRIP/RSTRIP attributes of special tokens (llama.cpp sets them by model name for
// e.g. phi-3 and jina), text normalizers other than NFC (which tokenizer.json imports may ask for), and the
// "bert"/"t5"/"rwkv"/"plamo2" models.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace vireo {

class GgufFile;

enum class TokenType : uint8_t {
  Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6,
};

enum class TokenizerModel : uint8_t { Spm, Bpe, Gemma4 };

class Tokenizer {
 public:
  // Throws std::runtime_error with a clear message on missing, bad or unsupported vocab metadata.
  static std::unique_ptr<Tokenizer> from_gguf(const GgufFile& f);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // add_bos: prepend BOS (when the vocab has one) and, when the vocab sets add_eos_token, append EOS. Pass
  // add_bos_default() for the model's own convention.
  // parse_special: match CONTROL/UNKNOWN token texts in `text` (USER_DEFINED tokens are always matched).
  // Thread-safe (const; scratch state is per call / per thread).
  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special = true) const;

  const std::string& token_text(int32_t id) const;  // vocab string as stored; throws std::out_of_range
  // Raw bytes this token decodes to: <0xAB> byte tokens -> that byte, SPM U+2581 -> ' ', gpt2 byte-level alphabet
  // -> bytes, user-defined tokens -> their text. Control tokens give "" unless show_special (then their text).
  std::string token_bytes(int32_t id, bool show_special = false) const;
  std::string decode(const std::vector<int32_t>& ids, bool show_special = false) const;

  int32_t n_vocab() const { return static_cast<int32_t>(tokens_.size()); }
  int32_t bos() const { return bos_; }
  int32_t eos() const { return eos_; }
  int32_t eot() const { return eot_; }
  int32_t eom() const { return eom_; }
  int32_t unk() const { return unk_; }
  int32_t pad() const { return pad_; }
  bool add_bos_default() const { return add_bos_; }
  bool add_eos_default() const { return add_eos_; }
  bool add_space_prefix() const { return add_space_prefix_; }
  TokenizerModel model() const { return model_; }
  const std::string& pre() const { return pre_; }

  TokenType token_type(int32_t id) const;
  bool is_eog(int32_t id) const;      // end of generation: eos, eot, eom and known end-of-turn tokens
  bool is_control(int32_t id) const;  // CONTROL type
  bool is_byte(int32_t id) const;
  // Looks a token up by its exact vocab text; -1 when absent.
  int32_t find_token(std::string_view text) const;

  struct Impl;  // internal (hash tables, merges, regexes); defined in tokenizer_impl.h

 private:
  Tokenizer();
  friend struct Impl;
  friend class StreamDecoder;

  bool strips_leading_space() const { return model_ == TokenizerModel::Spm && add_space_prefix_; }

  TokenizerModel model_ = TokenizerModel::Spm;
  std::string pre_;
  std::vector<std::string> tokens_;
  std::vector<float> scores_;
  std::vector<uint8_t> types_;
  std::vector<std::string> pieces_;  // decoded bytes of each token (control tokens: their text)
  std::vector<uint8_t> eog_;         // per-token flag
  int32_t bos_ = -1, eos_ = -1, eot_ = -1, eom_ = -1, unk_ = -1, pad_ = -1;
  bool add_bos_ = false, add_eos_ = false, add_space_prefix_ = false;
  bool nfc_ = false;  // normalize text to NFC before splitting (tokenizer.vireo.normalizer = "NFC")
  std::unique_ptr<Impl> impl_;
};

// Streaming decode: feed ids one at a time; returns only complete, valid UTF-8. Bytes of a character split across
// tokens are held back until the character is complete; invalid sequences come out as U+FFFD.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool show_special = false);
  std::string push(int32_t id);
  // Emits whatever is held back (an incomplete trailing sequence becomes U+FFFD) and resets the state.
  std::string flush();

 private:
  std::string drain(bool final);
  const Tokenizer& tok_;
  bool show_special_;
  bool any_text_ = false;
  std::string pending_;
};

// True when `s` is well-formed UTF-8 (no overlongs, surrogates or code points above U+10FFFF).
bool is_valid_utf8(std::string_view s);

}  // namespace vireo
