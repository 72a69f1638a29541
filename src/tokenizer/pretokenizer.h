// Regex pre-tokenizer for byte-level BPE vocabs: a sequence of PCRE2 patterns, each splitting every piece produced
// by the previous one into its matches and the text between them (both kept).
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace vireo {

struct Span {
  size_t begin, end;
};

class Pretokenizer {
 public:
  // Patterns for a `tokenizer.ggml.pre` value; throws std::runtime_error for an unknown one.
  static std::vector<std::string> patterns_for(const std::string& pre);
  // Compiles with PCRE2_UTF | PCRE2_UCP and JIT; throws std::runtime_error naming the pattern on failure.
  explicit Pretokenizer(const std::vector<std::string>& patterns);
  ~Pretokenizer();
  Pretokenizer(const Pretokenizer&) = delete;
  Pretokenizer& operator=(const Pretokenizer&) = delete;

  // Splits `text` (must be valid UTF-8) into pieces, appended to `out` as byte ranges of `text`, in order.
  void split(std::string_view text, std::vector<Span>& out) const;
  size_t n_patterns() const { return codes_.size(); }

 private:
  std::vector<void*> codes_;  // pcre2_code_8*
  std::vector<bool> jit_;     // JIT-compiled
};

}  // namespace vireo
