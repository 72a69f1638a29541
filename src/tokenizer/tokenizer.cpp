#include "tokenizer/tokenizer.h"
#include "tokenizer/normalize.h"

#include <algorithm>
#include <cstdio>
#include <stdexcept>

#include "gguf/gguf.h"
#include "tokenizer/tokenizer_impl.h"

namespace vireo {

// ---------------------------------------------------------------------------------------------------------------
// UTF-8 and byte-level helpers

void append_utf8(std::string& s, uint32_t cp) {
  if (cp < 0x80) {
    s += char(cp);
  } else if (cp < 0x800) {
    s += char(0xC0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += char(0xE0 | (cp >> 12));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  } else {
    s += char(0xF0 | (cp >> 18));
    s += char(0x80 | ((cp >> 12) & 0x3F));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  }
}

size_t utf8_valid_len(std::string_view s, size_t i) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data()) + i;
  const size_t left = s.size() - i;
  const unsigned char c = p[0];
  if (c < 0x80) return 1;
  size_t n;
  uint32_t cp;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (left < n) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((p[k] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (p[k] & 0x3F);
  }
  if (n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) return 0;
  if (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) return 0;
  return n;
}

bool is_valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    size_t n = utf8_valid_len(s, i);
    if (!n) return false;
    i += n;
  }
  return true;
}

namespace {

struct ByteMap {
  uint32_t to_cp[256];
  int16_t from_cp[324];  // mapped code points are all below 324
  ByteMap() {
    for (auto& v : from_cp) v = -1;
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      to_cp[b] = printable ? uint32_t(b) : next++;
      from_cp[to_cp[b]] = int16_t(b);
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

uint32_t decode_cp(std::string_view s, size_t& i) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = utf8_valid_len(s, i);
  if (n == 0) return 0xFFFFFFFFu;  // invalid byte; caller copies it
  uint32_t cp = n == 1 ? p[i] : n == 2 ? (p[i] & 0x1F) : n == 3 ? (p[i] & 0x0F) : (p[i] & 0x07);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (p[i + k] & 0x3F);
  i += n;
  return cp;
}

int parse_byte_token(std::string_view t) {  // "<0xAB>" -> 0xAB, else -1
  if (t.size() != 6 || t[0] != '<' || t[1] != '0' || t[2] != 'x' || t[5] != '>') return -1;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  int h = hex(t[3]), l = hex(t[4]);
  return h < 0 || l < 0 ? -1 : h * 16 + l;
}

const std::string kSpmSpace = "\xE2\x96\x81";  // U+2581

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  std::string r;
  r.reserve(s.size());
  size_t i = 0;
  while (true) {
    size_t j = s.find(from, i);
    if (j == std::string_view::npos) break;
    r.append(s.substr(i, j - i));
    r.append(to);
    i = j + from.size();
  }
  r.append(s.substr(i));
  return r;
}

}  // namespace

uint32_t gpt2_byte_to_cp(uint8_t b) { return byte_map().to_cp[b]; }
int gpt2_cp_to_byte(uint32_t cp) { return cp < 324 ? byte_map().from_cp[cp] : -1; }

// ---------------------------------------------------------------------------------------------------------------
// Special-token trie

void SpecialTrie::add(std::string_view text, int32_t id) {
  if (text.empty()) return;
  int32_t node = root_[static_cast<unsigned char>(text[0])];
  if (node < 0) {
    node = static_cast<int32_t>(nodes_.size());
    nodes_.emplace_back();
    root_[static_cast<unsigned char>(text[0])] = node;
  }
  for (size_t i = 1; i < text.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    int32_t k = child(nodes_[size_t(node)], c);
    if (k < 0) {
      k = static_cast<int32_t>(nodes_.size());
      nodes_.emplace_back();
      nodes_[size_t(node)].kids.push_back({c, k});
    }
    node = k;
  }
  nodes_[size_t(node)].token = id;  // a later duplicate replaces an earlier one
}

// ---------------------------------------------------------------------------------------------------------------
// Loading

Tokenizer::Tokenizer() : impl_(std::make_unique<Impl>()) {}
Tokenizer::~Tokenizer() = default;

namespace {

const GgufArray& get_array(const GgufFile& f, const char* key, bool required, bool& present) {
  static const GgufArray kEmpty{GgufType::U8, {}};
  const GgufValue* v = f.find(key);
  present = v != nullptr;
  if (!v) {
    if (required) throw std::runtime_error(std::string("tokenizer: missing metadata key '") + key + "'");
    return kEmpty;
  }
  if (v->type != GgufType::ARRAY)
    throw std::runtime_error(std::string("tokenizer: metadata key '") + key + "' is not an array");
  return v->as_array();
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const GgufFile& f) {
  const GgufValue* mv = f.find("tokenizer.ggml.model");
  if (!mv)
    throw std::runtime_error(
        "tokenizer: the GGUF has no tokenizer metadata (key 'tokenizer.ggml.model' is missing)");
  if (mv->type != GgufType::STRING) throw std::runtime_error("tokenizer: 'tokenizer.ggml.model' is not a string");
  const std::string model = mv->as_string();

  std::unique_ptr<Tokenizer> t(new Tokenizer());
  Impl& im = *t->impl_;
  if (model == "llama") {
    t->model_ = TokenizerModel::Spm;
  } else if (model == "gpt2") {
    t->model_ = TokenizerModel::Bpe;
  } else if (model == "gemma4") {
    t->model_ = TokenizerModel::Gemma4;
  } else if (model == "no_vocab" || model == "none") {
    throw std::runtime_error("tokenizer: the GGUF has no vocabulary (tokenizer.ggml.model = '" + model + "')");
  } else {
    throw std::runtime_error("tokenizer: unsupported tokenizer model '" + model +
                             "' (supported: 'llama', 'gpt2', 'gemma4')");
  }

  try {
    bool present = false;
    const GgufArray& toks = get_array(f, "tokenizer.ggml.tokens", true, present);
    if (toks.items.empty()) throw std::runtime_error("tokenizer: 'tokenizer.ggml.tokens' is empty");
    if (toks.items.size() > size_t(INT32_MAX / 2))
      throw std::runtime_error("tokenizer: 'tokenizer.ggml.tokens' is too large");
    const size_t n = toks.items.size();
    t->tokens_.reserve(n);
    for (const auto& v : toks.items) {
      if (v.type != GgufType::STRING)
        throw std::runtime_error("tokenizer: 'tokenizer.ggml.tokens' must be an array of strings");
      t->tokens_.push_back(v.as_string());
    }

    const GgufArray& sc = get_array(f, "tokenizer.ggml.scores", false, present);
    if (present && sc.items.size() != n)
      throw std::runtime_error("tokenizer: 'tokenizer.ggml.scores' has " + std::to_string(sc.items.size()) +
                               " entries but there are " + std::to_string(n) + " tokens");
    t->scores_.assign(n, 0.0f);
    for (size_t i = 0; i < sc.items.size(); ++i) t->scores_[i] = static_cast<float>(sc.items[i].as_float());

    const GgufArray& ty = get_array(f, "tokenizer.ggml.token_type", false, present);
    if (present && ty.items.size() != n)
      throw std::runtime_error("tokenizer: 'tokenizer.ggml.token_type' has " + std::to_string(ty.items.size()) +
                               " entries but there are " + std::to_string(n) + " tokens");
    t->types_.assign(n, uint8_t(TokenType::Normal));
    for (size_t i = 0; i < ty.items.size(); ++i) {
      int64_t v = ty.items[i].as_int();
      t->types_[i] = (v >= 0 && v <= 6) ? uint8_t(v) : uint8_t(TokenType::Undefined);
    }

    t->pre_ = f.get_string("tokenizer.ggml.pre", "default");
    // Written by hf_import for tokenizer.json files with an NFC normalizer (llama.cpp's GGUFs have no such key).
    const std::string norm = f.get_string("tokenizer.vireo.normalizer", "");
    if (norm == "NFC") {
      if (!nfc_available())
        throw std::runtime_error("tokenizer: NFC normalization needs ICU, which this build does not have");
      t->nfc_ = true;
    } else if (!norm.empty()) {
      throw std::runtime_error("tokenizer: unsupported normalizer '" + norm + "' (tokenizer.vireo.normalizer)");
    }
    im.index.init(&t->tokens_);

    // Special ids. Defaults follow the SentencePiece convention for "llama" vocabs.
    const bool spm = t->model_ == TokenizerModel::Spm;
    auto special_id = [&](const char* key, int32_t fallback, bool strict) -> int32_t {
      const GgufValue* v = f.find(std::string("tokenizer.ggml.") + key);
      int64_t id = fallback;
      if (v) {
        if (v->type == GgufType::STRING || v->type == GgufType::ARRAY)
          throw std::runtime_error(std::string("tokenizer: 'tokenizer.ggml.") + key + "' is not an integer");
        id = v->as_int();
      }
      if (id < 0 || id >= int64_t(n)) {
        if (v && strict)
          throw std::runtime_error(std::string("tokenizer: 'tokenizer.ggml.") + key + "' = " + std::to_string(id) +
                                   " is out of range (vocab has " + std::to_string(n) + " tokens)");
        return -1;
      }
      return static_cast<int32_t>(id);
    };
    t->bos_ = special_id("bos_token_id", spm ? 1 : -1, true);
    t->eos_ = special_id("eos_token_id", spm ? 2 : -1, true);
    t->unk_ = special_id("unknown_token_id", spm ? 0 : -1, false);
    t->pad_ = special_id("padding_token_id", -1, false);
    t->eot_ = special_id("eot_token_id", -1, false);
    t->eom_ = special_id("eom_token_id", -1, false);
    if (t->model_ == TokenizerModel::Gemma4 && t->bos_ < 0) t->bos_ = im.index.find("<bos>");

    auto get_bool = [&](const char* key, bool fallback) {
      const GgufValue* v = f.find(key);
      return v ? v->as_bool() : fallback;
    };
    const std::vector<std::string> pats =
        t->model_ == TokenizerModel::Bpe ? Pretokenizer::patterns_for(t->pre_) : std::vector<std::string>{};
    const bool llama3_like = pats.size() == 1 && pats[0] == Pretokenizer::patterns_for("llama3")[0];
    t->add_bos_ = get_bool("tokenizer.ggml.add_bos_token", spm || llama3_like);
    t->add_eos_ = get_bool("tokenizer.ggml.add_eos_token", false);
    t->add_space_prefix_ = spm && get_bool("tokenizer.ggml.add_space_prefix", true);
    if (t->model_ == TokenizerModel::Gemma4) t->add_bos_ = true;  // Gemma 4 always starts with <bos>
    if (t->add_bos_ && t->bos_ < 0) t->add_bos_ = false;
    if (t->add_eos_ && t->eos_ < 0) t->add_eos_ = false;

    // Byte tokens.
    im.byte_tok.fill(-1);
    im.byte_sym.fill(-1);
    for (size_t i = 0; i < n; ++i) {
      if (t->types_[i] != uint8_t(TokenType::Byte)) continue;
      int b = parse_byte_token(t->tokens_[i]);
      if (b >= 0 && im.byte_tok[size_t(b)] < 0) im.byte_tok[size_t(b)] = static_cast<int32_t>(i);
    }
    for (int b = 0; b < 256; ++b) {
      if (im.byte_tok[size_t(b)] >= 0) continue;
      char buf[8];
      std::snprintf(buf, sizeof buf, "<0x%02X>", b);
      int32_t id = im.index.find(buf);
      if (id < 0) id = im.index.find(std::string(1, char(b)));
      im.byte_tok[size_t(b)] = id;
    }

    if (t->model_ != TokenizerModel::Spm) {
      const GgufArray& merges = get_array(f, "tokenizer.ggml.merges", true, present);
      if (t->model_ == TokenizerModel::Bpe) {
        for (int b = 0; b < 256; ++b) {
          im.byte_chr[size_t(b)].clear();
          append_utf8(im.byte_chr[size_t(b)], gpt2_byte_to_cp(uint8_t(b)));
          im.byte_sym[size_t(b)] = im.index.intern(im.byte_chr[size_t(b)]);
        }
      }
      im.merges.reserve(merges.items.size());
      std::string joined;
      for (size_t r = 0; r < merges.items.size(); ++r) {
        const GgufValue& mvv = merges.items[r];
        if (mvv.type != GgufType::STRING)
          throw std::runtime_error("tokenizer: 'tokenizer.ggml.merges' must be an array of strings");
        const std::string& m = mvv.as_string();
        size_t sp = m.size() > 1 ? m.find(' ', 1) : std::string::npos;
        if (sp == std::string::npos || sp + 1 >= m.size())
          throw std::runtime_error("tokenizer: bad merge #" + std::to_string(r) + " '" + m + "' (want 'left right')");
        std::string_view l(m.data(), sp), rr(m.data() + sp + 1, m.size() - sp - 1);
        joined.assign(l);
        joined.append(rr);
        int32_t lid = im.index.intern(l), rid = im.index.intern(rr), res = im.index.intern(joined);
        im.merges.insert(lid, rid, {static_cast<int32_t>(r), res});
      }
      if (t->model_ == TokenizerModel::Bpe) {
        im.pretok = std::make_unique<Pretokenizer>(pats);
        im.ignore_merges = llama3_like;
      }
    }

    if (t->model_ != TokenizerModel::Bpe) {
      auto scan = [&](const std::string& x) {
        for (size_t p = x.find(kSpmSpace, 1); p != std::string::npos; p = x.find(kSpmSpace, p + 1)) {
          size_t c = p;  // start of the character before the U+2581
          while (c > 0 && (static_cast<unsigned char>(x[c - 1]) & 0xC0) == 0x80) --c;
          if (c > 0) --c;
          std::string ch = x.substr(c, p - c);
          if (ch == kSpmSpace) continue;
          auto& j = im.join_before_space;
          if (std::find(j.begin(), j.end(), ch) == j.end()) j.push_back(ch);
        }
      };
      for (size_t i = 0; i < n; ++i) scan(t->tokens_[i]);
      for (const auto& x : im.index.extra()) scan(x);
      im.split_words = im.join_before_space.size() <= 16;
    }

    // Special-token trie: control, user-defined and unknown tokens with non-empty text.
    for (size_t i = 0; i < n; ++i) {
      uint8_t ty8 = t->types_[i];
      if (ty8 == uint8_t(TokenType::Control) || ty8 == uint8_t(TokenType::UserDefined) ||
          ty8 == uint8_t(TokenType::Unknown))
        im.specials.add(t->tokens_[i], static_cast<int32_t>(i));
    }

    // End-of-turn / end-of-message detection by text, as for models whose GGUF lacks the ids.
    auto is_special_type = [&](int32_t id) {
      uint8_t ty8 = t->types_[size_t(id)];
      return ty8 == uint8_t(TokenType::Control) || ty8 == uint8_t(TokenType::UserDefined);
    };
    if (t->eot_ < 0) {
      for (const char* s : {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<turn|>", "<|endoftext|>",
                            "<EOT>", "_<EOT>", "<｜end▁of▁sentence｜>",
                            "<end_of_utterance>"}) {
        int32_t id = im.index.find(s);
        if (id >= 0 && is_special_type(id)) {
          t->eot_ = id;
          break;
        }
      }
    }
    if (t->eom_ < 0) {
      int32_t id = im.index.find("<|eom_id|>");
      if (id >= 0 && is_special_type(id)) t->eom_ = id;
    }
    t->eog_.assign(n, 0);
    for (int32_t id : {t->eos_, t->eot_, t->eom_})
      if (id >= 0) t->eog_[size_t(id)] = 1;
    for (const char* s : {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<end_of_turn>",
                          "<turn|>", "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>", "<end_of_utterance>"}) {
      int32_t id = im.index.find(s);
      if (id >= 0 && is_special_type(id)) t->eog_[size_t(id)] = 1;
    }
    if (t->model_ == TokenizerModel::Gemma4) {
      int32_t id = im.index.find("<|tool_response>");
      if (id >= 0) t->eog_[size_t(id)] = 1;
    }

    // Decoded bytes of every token.
    t->pieces_.resize(n);
    for (size_t i = 0; i < n; ++i) {
      const std::string& tx = t->tokens_[i];
      const auto ty8 = TokenType(t->types_[i]);
      std::string& out = t->pieces_[i];
      if (ty8 == TokenType::Byte) {
        int b = parse_byte_token(tx);
        out = b >= 0 ? std::string(1, char(b)) : tx;
      } else if (ty8 == TokenType::Control || ty8 == TokenType::Unused || ty8 == TokenType::Undefined) {
        out = tx;
      } else if (t->model_ == TokenizerModel::Bpe) {
        if (ty8 == TokenType::Normal) {
          out.reserve(tx.size());
          for (size_t k = 0; k < tx.size();) {
            size_t k0 = k;
            uint32_t cp = decode_cp(tx, k);
            if (cp == 0xFFFFFFFFu) {
              out += tx[k0];
              k = k0 + 1;
              continue;
            }
            int b = gpt2_cp_to_byte(cp);
            if (b >= 0)
              out += char(b);
            else
              out.append(tx, k0, k - k0);
          }
        } else {
          out = tx;  // user-defined (raw text) and unknown
        }
      } else if (ty8 == TokenType::Unknown && t->model_ == TokenizerModel::Spm) {
        out = "\xE2\x96\x85";  // U+2585, as SentencePiece renders an unknown piece
      } else {
        out = replace_all(tx, kSpmSpace, " ");
      }
    }
  } catch (const GgufError& e) {
    throw std::runtime_error(std::string("tokenizer: bad vocab metadata: ") + e.what());
  }
  return t;
}

// ---------------------------------------------------------------------------------------------------------------
// Accessors

const std::string& Tokenizer::token_text(int32_t id) const {
  if (id < 0 || id >= n_vocab()) throw std::out_of_range("token id " + std::to_string(id) + " out of range");
  return tokens_[size_t(id)];
}

TokenType Tokenizer::token_type(int32_t id) const {
  if (id < 0 || id >= n_vocab()) return TokenType::Undefined;
  return TokenType(types_[size_t(id)]);
}

bool Tokenizer::is_eog(int32_t id) const { return id >= 0 && id < n_vocab() && eog_[size_t(id)]; }
bool Tokenizer::is_control(int32_t id) const { return token_type(id) == TokenType::Control; }
bool Tokenizer::is_byte(int32_t id) const { return token_type(id) == TokenType::Byte; }
int32_t Tokenizer::find_token(std::string_view text) const {
  int32_t id = impl_->index.find(text);
  return id < n_vocab() ? id : -1;
}

std::string Tokenizer::token_bytes(int32_t id, bool show_special) const {
  if (id < 0 || id >= n_vocab()) throw std::out_of_range("token id " + std::to_string(id) + " out of range");
  const auto ty = TokenType(types_[size_t(id)]);
  const bool hidden = ty == TokenType::Control || ty == TokenType::Unused || ty == TokenType::Undefined ||
                      (ty == TokenType::Unknown && model_ != TokenizerModel::Spm);
  if (hidden && !show_special) return {};
  return pieces_[size_t(id)];
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool show_special) const {
  std::string out;
  bool strip = strips_leading_space();
  for (int32_t id : ids) {
    std::string piece = token_bytes(id, show_special);
    if (piece.empty()) continue;
    if (strip && piece[0] == ' ') piece.erase(0, 1);
    strip = false;
    out += piece;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Encoding: special-token partition and dispatch

void Tokenizer::Impl::partition(const Tokenizer& t, std::string_view text, bool parse_special,
                                std::vector<Fragment>& out) const {
  struct Occ {
    size_t len, pos;
    int32_t id;
  };
  std::vector<Occ> occ;
  if (!specials.empty()) {
    for (size_t pos = 0; pos < text.size(); ++pos) {
      specials.match_at(text, pos, [&](size_t len, int32_t id) {
        if (!parse_special && t.types_[size_t(id)] != uint8_t(TokenType::UserDefined)) return;
        occ.push_back({len, pos, id});
      });
    }
  }
  if (occ.empty()) {
    out.push_back({-1, 0, text.size()});
    return;
  }
  // Longer tokens are carved out first; a token's occurrences left to right; overlaps with carved spans lose.
  std::sort(occ.begin(), occ.end(), [](const Occ& a, const Occ& b) {
    if (a.len != b.len) return a.len > b.len;
    if (a.id != b.id) return a.id < b.id;
    return a.pos < b.pos;
  });
  std::vector<uint8_t> taken(text.size(), 0);
  std::vector<Occ> keep;
  for (const Occ& o : occ) {
    bool free = true;
    for (size_t k = o.pos; k < o.pos + o.len; ++k)
      if (taken[k]) {
        free = false;
        break;
      }
    if (!free) continue;
    std::fill(taken.begin() + std::ptrdiff_t(o.pos), taken.begin() + std::ptrdiff_t(o.pos + o.len), 1);
    keep.push_back(o);
  }
  std::sort(keep.begin(), keep.end(), [](const Occ& a, const Occ& b) { return a.pos < b.pos; });
  size_t cur = 0;
  for (const Occ& o : keep) {
    if (o.pos > cur) out.push_back({-1, cur, o.pos});
    out.push_back({o.id, o.pos, o.pos + o.len});
    cur = o.pos + o.len;
  }
  if (cur < text.size()) out.push_back({-1, cur, text.size()});
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (add_bos && bos_ >= 0) out.push_back(bos_);
  if (!text.empty()) {
    std::vector<Impl::Fragment> frags;
    impl_->partition(*this, text, parse_special, frags);
    bool prev_special = true;  // SPM: the dummy prefix goes before the first text and after special tokens
    std::string buf;
    for (const auto& fr : frags) {
      if (fr.token >= 0) {
        out.push_back(fr.token);
        prev_special = true;
        continue;
      }
      std::string_view piece = text.substr(fr.begin, fr.end - fr.begin);
      std::string normalized;
      if (nfc_) {
        normalized = to_nfc(piece);
        piece = normalized;
      }
      switch (model_) {
        case TokenizerModel::Spm:
          buf.clear();
          if (add_space_prefix_ && prev_special) buf += kSpmSpace;
          buf += replace_all(piece, " ", kSpmSpace);
          impl_->encode_spm(*this, buf, out);
          break;
        case TokenizerModel::Bpe:
          impl_->encode_bpe(*this, piece, out);
          break;
        case TokenizerModel::Gemma4:
          impl_->encode_gemma4(*this, replace_all(piece, " ", kSpmSpace), out);
          break;
      }
      prev_special = false;
    }
  }
  if (add_bos && add_eos_ && eos_ >= 0) out.push_back(eos_);
  return out;
}

void Tokenizer::Impl::push_byte_fallback(const Tokenizer& t, std::string_view bytes,
                                         std::vector<int32_t>& out) const {
  for (unsigned char c : bytes) {
    int32_t id = byte_tok[c];
    if (id >= 0)
      out.push_back(id);
    else if (t.unk_ >= 0)
      out.push_back(t.unk_);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Streaming decode

StreamDecoder::StreamDecoder(const Tokenizer& tok, bool show_special) : tok_(tok), show_special_(show_special) {}

std::string StreamDecoder::push(int32_t id) {
  std::string piece = tok_.token_bytes(id, show_special_);
  if (piece.empty()) return {};
  if (!any_text_ && tok_.strips_leading_space() && piece[0] == ' ') piece.erase(0, 1);
  any_text_ = true;
  pending_ += piece;
  return drain(false);
}

std::string StreamDecoder::flush() {
  std::string r = drain(true);
  any_text_ = false;
  return r;
}

std::string StreamDecoder::drain(bool final) {
  static const char kReplacement[] = "\xEF\xBF\xBD";
  std::string out;
  size_t i = 0;
  while (i < pending_.size()) {
    size_t n = utf8_valid_len(pending_, i);
    if (n) {
      out.append(pending_, i, n);
      i += n;
      continue;
    }
    // Not valid here: either an incomplete sequence at the end (wait for more) or garbage (replace).
    const auto c = static_cast<unsigned char>(pending_[i]);
    size_t want = utf8_len_lead(c);
    size_t have = pending_.size() - i;
    if (!final && c >= 0xC2 && c <= 0xF4 && have < want) {
      bool prefix_ok = true;
      for (size_t k = 1; k < have; ++k)
        if ((static_cast<unsigned char>(pending_[i + k]) & 0xC0) != 0x80) prefix_ok = false;
      // Reject prefixes that can never complete to a valid character (overlong / surrogate / too large).
      if (prefix_ok && have >= 2) {
        auto c1 = static_cast<unsigned char>(pending_[i + 1]);
        if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 > 0x9F) || (c == 0xF0 && c1 < 0x90) ||
            (c == 0xF4 && c1 > 0x8F))
          prefix_ok = false;
      }
      if (prefix_ok) break;
    }
    out += kReplacement;
    ++i;
    // Skip the continuation bytes of this broken sequence.
    while (i < pending_.size() && (static_cast<unsigned char>(pending_[i]) & 0xC0) == 0x80 &&
           utf8_valid_len(pending_, i) == 0)
      ++i;
  }
  pending_.erase(0, i);
  return out;
}

}  // namespace vireo
