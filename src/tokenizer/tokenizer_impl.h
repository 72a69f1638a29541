// Internal data structures of the tokenizer (not part of the public API).
#pragma once
#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer.h"

namespace vireo {

inline uint64_t tok_hash(const char* p, size_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t(n) * 0xFF51AFD7ED558CCDull);
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    h = (h ^ v) * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 31;
    p += 8;
    n -= 8;
  }
  uint64_t v = 0;
  std::memcpy(&v, p, n);
  h = (h ^ v ^ (uint64_t(n) << 56)) * 0x94D049BB133111EBull;
  h ^= h >> 29;
  h *= 0xBF58476D1CE4E5B9ull;
  h ^= h >> 32;
  return h;
}

inline uint64_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xFF51AFD7ED558CCDull;
  x ^= x >> 33;
  x *= 0xC4CEB9FE1A85EC53ull;
  x ^= x >> 33;
  return x;
}

// String -> id, open addressing. Ids below vocab->size() name vocab strings; larger ids name `extra` strings
// (merge operands/results that are not tokens themselves).
class StrIndex {
 public:
  void init(const std::vector<std::string>* vocab) {
    vocab_ = vocab;
    size_t cap = 16;
    while (cap < vocab->size() * 2 + 16) cap <<= 1;
    slots_.assign(cap, -1);
    used_ = 0;
    // Insert in order; a later duplicate replaces an earlier one.
    for (size_t i = 0; i < vocab->size(); ++i) put(static_cast<int32_t>(i));
  }
  const std::vector<std::string>& extra() const { return extra_; }
  const std::string& str(int32_t id) const {
    size_t n = vocab_->size();
    return size_t(id) < n ? (*vocab_)[size_t(id)] : extra_[size_t(id) - n];
  }
  int32_t find(std::string_view s) const {
    size_t mask = slots_.size() - 1;
    for (size_t i = tok_hash(s.data(), s.size()) & mask;; i = (i + 1) & mask) {
      int32_t id = slots_[i];
      if (id < 0) return -1;
      if (str(id) == s) return id;
    }
  }
  // Id for `s`, adding it as an extra string when absent.
  int32_t intern(std::string_view s) {
    int32_t id = find(s);
    if (id >= 0) return id;
    extra_.emplace_back(s);
    id = static_cast<int32_t>(vocab_->size() + extra_.size() - 1);
    put(id);
    return id;
  }

 private:
  void put(int32_t id) {
    if ((used_ + 1) * 2 > slots_.size()) grow();
    const std::string& s = str(id);
    size_t mask = slots_.size() - 1;
    for (size_t i = tok_hash(s.data(), s.size()) & mask;; i = (i + 1) & mask) {
      if (slots_[i] < 0) {
        slots_[i] = id;
        ++used_;
        return;
      }
      if (str(slots_[i]) == s) {
        slots_[i] = id;
        return;
      }
    }
  }
  void grow() {
    std::vector<int32_t> old;
    old.swap(slots_);
    slots_.assign(old.size() * 2, -1);
    used_ = 0;
    for (int32_t id : old)
      if (id >= 0) put(id);
  }
  const std::vector<std::string>* vocab_ = nullptr;
  std::vector<std::string> extra_;
  std::vector<int32_t> slots_;
  size_t used_ = 0;
};

// (left id, right id) -> (rank, merged id), open addressing. The first insertion of a pair wins.
class PairMap {
 public:
  struct Val {
    int32_t rank, result;
  };
  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < n * 2 + 16) cap <<= 1;
    keys_.assign(cap, kEmpty);
    vals_.assign(cap, {0, 0});
  }
  bool insert(int32_t l, int32_t r, Val v) {
    uint64_t k = key(l, r);
    size_t mask = keys_.size() - 1;
    for (size_t i = mix64(k) & mask;; i = (i + 1) & mask) {
      if (keys_[i] == kEmpty) {
        keys_[i] = k;
        vals_[i] = v;
        return true;
      }
      if (keys_[i] == k) return false;
    }
  }
  const Val* find(int32_t l, int32_t r) const {
    uint64_t k = key(l, r);
    size_t mask = keys_.size() - 1;
    for (size_t i = mix64(k) & mask;; i = (i + 1) & mask) {
      if (keys_[i] == k) return &vals_[i];
      if (keys_[i] == kEmpty) return nullptr;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t(0);
  static uint64_t key(int32_t l, int32_t r) { return (uint64_t(uint32_t(l)) << 32) | uint32_t(r); }
  std::vector<uint64_t> keys_;
  std::vector<Val> vals_;
};

// Trie over the texts of special tokens, for the special-token partition of the input.
class SpecialTrie {
 public:
  void add(std::string_view text, int32_t id);
  // Calls f(length, id) for every special token whose text starts at text[pos].
  template <class F>
  void match_at(std::string_view text, size_t pos, F&& f) const {
    int32_t node = root_[static_cast<unsigned char>(text[pos])];
    size_t len = 1;
    while (node >= 0) {
      const Node& n = nodes_[size_t(node)];
      if (n.token >= 0) f(len, n.token);
      if (pos + len >= text.size()) break;
      node = child(n, static_cast<unsigned char>(text[pos + len]));
      ++len;
    }
  }
  bool empty() const { return nodes_.empty(); }

 private:
  struct Node {
    int32_t token = -1;
    std::vector<std::pair<unsigned char, int32_t>> kids;
  };
  static int32_t child(const Node& n, unsigned char c) {
    for (const auto& k : n.kids)
      if (k.first == c) return k.second;
    return -1;
  }
  std::array<int32_t, 256> root_ = [] {
    std::array<int32_t, 256> a{};
    a.fill(-1);
    return a;
  }();
  std::vector<Node> nodes_;
};

struct Tokenizer::Impl {
  StrIndex index;
  PairMap merges;
  std::unique_ptr<Pretokenizer> pretok;
  bool ignore_merges = false;
  std::array<int32_t, 256> byte_sym{};    // gpt2: id of the byte-level character of each byte (-1 if absent)
  std::array<std::string, 256> byte_chr;  // gpt2: UTF-8 of the byte-level character of each byte
  std::array<int32_t, 256> byte_tok{};    // llama/gemma4: id of <0xXX> (or of the 1-byte text) (-1 if absent)
  SpecialTrie specials;
  // llama/gemma4: merges never cross the point before a U+2581 that follows a character c, unless some token (or
  // merge intermediate) contains c followed by U+2581 past its start. The text is merged word by word, split at
  // those points; `join_before_space` lists the characters c for which the split is not safe.
  bool split_words = false;
  std::vector<std::string> join_before_space;

  struct Fragment {
    int32_t token;  // >= 0: a special token; -1: raw text [begin, end)
    size_t begin, end;
  };
  void partition(const Tokenizer& t, std::string_view text, bool parse_special, std::vector<Fragment>& out) const;

  void encode_spm(const Tokenizer& t, std::string_view text, std::vector<int32_t>& out) const;
  void encode_bpe(const Tokenizer& t, std::string_view text, std::vector<int32_t>& out) const;
  void encode_gemma4(const Tokenizer& t, std::string_view text, std::vector<int32_t>& out) const;
  void spm_word(const Tokenizer& t, std::string_view text, std::vector<int32_t>& out) const;
  void bpe_word(const Tokenizer& t, std::string_view word, std::vector<int32_t>& out) const;
  void merge_word(const Tokenizer& t, std::string_view text, std::vector<int32_t>& out) const;
  void push_byte_fallback(const Tokenizer& t, std::string_view bytes, std::vector<int32_t>& out) const;
};

// GPT-2 byte <-> printable code point mapping.
uint32_t gpt2_byte_to_cp(uint8_t b);
int gpt2_cp_to_byte(uint32_t cp);  // -1 when cp is not in the mapping
// UTF-8 helpers.
inline size_t utf8_len_lead(unsigned char c) {
  static constexpr uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLen[c >> 4];
}
void append_utf8(std::string& s, uint32_t cp);
// Length of the valid UTF-8 sequence at s[i], or 0 when the bytes there are not valid UTF-8.
size_t utf8_valid_len(std::string_view s, size_t i);

}  // namespace vireo
