#include "tokenizer/hf_import.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <unordered_map>

#include "gguf/gguf.h"
#include "tokenizer/tokenizer_impl.h"

namespace vireo {
namespace {

// A small pull parser for JSON: the caller walks the document and skips what it does not need, so a 30 MB
// tokenizer.json is read without building a tree.
class JsonReader {
 public:
  explicit JsonReader(std::string_view s) : s_(s) {}

  char peek() {
    ws();
    if (i_ >= s_.size()) fail("unexpected end of input");
    return s_[i_];
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++i_;
  }
  std::string string() {
    expect('"');
    std::string out;
    while (true) {
      if (i_ >= s_.size()) fail("unterminated string");
      char c = s_[i_++];
      if (c == '"') break;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) fail("unterminated escape");
      char e = s_[i_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF && i_ + 1 < s_.size() && s_[i_] == '\\' && s_[i_ + 1] == 'u') {
            size_t save = i_;
            i_ += 2;
            uint32_t lo = hex4();
            if (lo >= 0xDC00 && lo <= 0xDFFF)
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            else
              i_ = save;
          }
          if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;  // lone surrogate
          append_utf8(out, cp);
          break;
        }
        default: fail("bad escape");
      }
    }
    return out;
  }
  double number() {
    ws();
    size_t b = i_;
    while (i_ < s_.size() && std::strchr("+-0123456789.eE", s_[i_]) && s_[i_] != '\0') ++i_;
    if (b == i_) fail("expected a number");
    std::string tmp(s_.substr(b, i_ - b));
    return std::strtod(tmp.c_str(), nullptr);
  }
  bool boolean() {
    ws();
    if (s_.compare(i_, 4, "true") == 0) {
      i_ += 4;
      return true;
    }
    if (s_.compare(i_, 5, "false") == 0) {
      i_ += 5;
      return false;
    }
    fail("expected a boolean");
  }
  bool null() {
    ws();
    if (s_.compare(i_, 4, "null") == 0) {
      i_ += 4;
      return true;
    }
    return false;
  }
  // f(key) must consume the value.
  template <class F>
  void object(F&& f) {
    expect('{');
    if (peek() == '}') {
      ++i_;
      return;
    }
    while (true) {
      std::string key = string();
      expect(':');
      f(key);
      char c = peek();
      ++i_;
      if (c == '}') return;
      if (c != ',') fail("expected ',' or '}'");
    }
  }
  // f() must consume one value.
  template <class F>
  void array(F&& f) {
    expect('[');
    if (peek() == ']') {
      ++i_;
      return;
    }
    while (true) {
      f();
      char c = peek();
      ++i_;
      if (c == ']') return;
      if (c != ',') fail("expected ',' or ']'");
    }
  }
  void skip() {
    char c = peek();
    if (c == '{') {
      object([&](const std::string&) { skip(); });
    } else if (c == '[') {
      array([&] { skip(); });
    } else if (c == '"') {
      string();
    } else if (c == 't' || c == 'f') {
      boolean();
    } else if (c == 'n') {
      if (!null()) fail("bad literal");
    } else {
      number();
    }
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error("tokenizer.json: " + what + " at byte " + std::to_string(i_));
  }

 private:
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
  }
  uint32_t hex4() {
    if (i_ + 4 > s_.size()) fail("bad \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      char c = s_[i_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= uint32_t(c - '0');
      else if (c >= 'a' && c <= 'f') v |= uint32_t(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= uint32_t(c - 'A' + 10);
      else fail("bad \\u escape");
    }
    return v;
  }
  std::string_view s_;
  size_t i_ = 0;
};

std::string read_all(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + p.string());
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

GgufValue string_array(const std::vector<std::string>& v) {
  GgufArray a{GgufType::STRING, {}};
  a.items.reserve(v.size());
  for (const auto& s : v) a.items.push_back({GgufType::STRING, s});
  return {GgufType::ARRAY, std::move(a)};
}

bool is_byte_piece(const std::string& t) {
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f'); };
  return t.size() == 6 && t.compare(0, 3, "<0x") == 0 && hex(t[3]) && hex(t[4]) && t[5] == '>';
}

// One normalizer / pre-tokenizer step, as far as the "llama" target needs it (nested Sequences are flattened).
struct Component {
  std::string type;            // "Prepend", "Replace", "Metaspace", "Split", "ByteLevel", "NFC", ...
  std::string prepend;         // Prepend.prepend
  std::string pattern;         // Replace/Split pattern ({"String": ...} or {"Regex": ...})
  bool pattern_is_regex = false;  // the pattern was {"Regex": ...}
  std::string behavior;        // Split.behavior
  bool invert = false;         // Split.invert
  std::optional<bool> use_regex;  // ByteLevel.use_regex (default true)
  std::string content;         // Replace.content
  std::string replacement;     // Metaspace.replacement
  std::string prepend_scheme;  // Metaspace.prepend_scheme ("first", "always", "never")
  std::optional<bool> add_prefix_space;  // Metaspace (older files) / ByteLevel
};

void read_components(JsonReader& r, std::vector<Component>& out) {
  if (r.null()) return;
  Component c;
  r.object([&](const std::string& k) {
    if (k == "type") {
      c.type = r.string();
    } else if (k == "normalizers" || k == "pretokenizers" || k == "decoders") {
      r.array([&] { read_components(r, out); });
    } else if (k == "prepend") {
      c.prepend = r.string();
    } else if (k == "content") {
      c.content = r.string();
    } else if (k == "replacement") {
      c.replacement = r.string();
    } else if (k == "prepend_scheme" && r.peek() == '"') {
      c.prepend_scheme = r.string();
    } else if (k == "add_prefix_space" && (r.peek() == 't' || r.peek() == 'f')) {
      c.add_prefix_space = r.boolean();
    } else if (k == "pattern" && r.peek() == '{') {
      r.object([&](const std::string& pk) {
        if (r.peek() == '"') {
          c.pattern = r.string();
          c.pattern_is_regex = pk == "Regex";
        } else {
          r.skip();
        }
      });
    } else if (k == "behavior" && r.peek() == '"') {
      c.behavior = r.string();
    } else if (k == "invert" && (r.peek() == 't' || r.peek() == 'f')) {
      c.invert = r.boolean();
    } else if (k == "use_regex" && (r.peek() == 't' || r.peek() == 'f')) {
      c.use_regex = r.boolean();
    } else {
      r.skip();
    }
  });
  if (c.type != "Sequence") out.push_back(std::move(c));
}

constexpr const char* kMeta = "\xE2\x96\x81";  // U+2581

// The Split regexes of the byte-level pre-tokenizers the GGUF tokenizer knows, as tokenizer.json spells them.
struct KnownRegex {
  const char* pre;
  const char* what;
  const char* regex;
};
constexpr KnownRegex kKnownRegexes[] = {
    {"llama-bpe", "Llama 3",
     R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re"},
    {"qwen2", "Qwen2",
     R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re"},
    {"gpt2", "GPT-2", R"re('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)re"},
};

// The parts of a tokenizer.json that say what kind of tokenizer it is.
struct Shape {
  std::string model_type;
  bool byte_fallback = false;
  std::vector<Component> normalizers, pretokenizers, decoders;
};

HfTokenizerTarget detect(const Shape& s) {
  const std::string err = "hf_tokenizer_to_gguf: cannot auto-detect the tokenizer: ";
  if (s.model_type != "BPE")
    throw std::runtime_error(err + "model type '" + s.model_type +
                             "' is not supported (only BPE: byte-level, SentencePiece-style or Gemma-style)");
  auto has = [](const std::vector<Component>& v, const char* type) {
    return std::any_of(v.begin(), v.end(), [&](const Component& c) { return c.type == type; });
  };
  if (has(s.pretokenizers, "ByteLevel") || has(s.decoders, "ByteLevel") || has(s.normalizers, "ByteLevel")) {
    // Byte-level BPE: the pre-tokenizer's regex names the GGUF `pre`.
    std::vector<const Component*> splits;
    bool byte_level_regex = false;
    for (const Component& c : s.pretokenizers) {
      if (c.type == "Split") splits.push_back(&c);
      else if (c.type == "ByteLevel") byte_level_regex = byte_level_regex || c.use_regex.value_or(true);
      else throw std::runtime_error(err + "byte-level BPE with an unsupported pre-tokenizer '" + c.type + "'");
    }
    if (splits.empty()) {
      if (byte_level_regex) return {"gpt2", "gpt2"};  // ByteLevel(use_regex=true): the GPT-2 regex
      throw std::runtime_error(err + "byte-level BPE without a pre-tokenizer regex");
    }
    const Component& c = *splits[0];
    if (splits.size() > 1 || byte_level_regex || !c.pattern_is_regex || c.behavior != "Isolated" || c.invert)
      throw std::runtime_error(err + "byte-level BPE with an unrecognised pre-tokenizer (Split '" + c.pattern +
                               "' behavior '" + c.behavior + "'" + (splits.size() > 1 ? ", and more Splits" : "") +
                               (byte_level_regex ? ", and ByteLevel use_regex" : "") +
                               "); known: one Isolated Split with the Llama 3, Qwen2 or GPT-2 regex");
    for (const KnownRegex& k : kKnownRegexes)
      if (c.pattern == k.regex) return {"gpt2", k.pre};
    throw std::runtime_error(err + "unrecognised pre-tokenizer regex '" + c.pattern +
                             "' (known: the Llama 3, Qwen2 and GPT-2 regexes; a custom regex cannot be carried)");
  }
  if (!s.byte_fallback)
    throw std::runtime_error(err + "a BPE that is neither byte-level nor SentencePiece-style with byte_fallback");
  for (const Component& c : s.pretokenizers)
    if (c.type != "Metaspace" && !(c.type == "Split" && !c.pattern_is_regex && c.pattern == " "))
      throw std::runtime_error(err + "SentencePiece-style BPE with an unsupported pre-tokenizer '" + c.type + "'");
  bool prepend = false, replace = false;
  for (const Component& c : s.normalizers) {
    if (c.type == "Prepend" && c.prepend == kMeta) prepend = true;
    if (c.type == "Replace" && !c.pattern_is_regex && c.pattern == " " && c.content == kMeta) replace = true;
  }
  if (has(s.pretokenizers, "Metaspace") || prepend) return {"llama", ""};
  if (replace) return {"gemma4", ""};
  throw std::runtime_error(err + "BPE with byte_fallback but no Metaspace pre-tokenizer and no Replace(' ', U+2581) "
                                 "normalizer");
}

}  // namespace

HfTokenizerTarget detect_hf_tokenizer(const std::string& tokenizer_json_path) {
  const std::string text = read_all(tokenizer_json_path);
  JsonReader r(text);
  Shape s;
  r.object([&](const std::string& key) {
    if (key == "model") {
      r.object([&](const std::string& k) {
        if (k == "type") s.model_type = r.null() ? "" : r.string();
        else if (k == "byte_fallback") s.byte_fallback = r.null() ? false : r.boolean();
        else r.skip();
      });
    } else if (key == "normalizer") {
      read_components(r, s.normalizers);
    } else if (key == "pre_tokenizer") {
      read_components(r, s.pretokenizers);
    } else if (key == "decoder") {
      read_components(r, s.decoders);
    } else {
      r.skip();
    }
  });
  return detect(s);
}

std::vector<uint8_t> hf_tokenizer_to_gguf(const std::string& tokenizer_json_path) {
  return hf_tokenizer_to_gguf(tokenizer_json_path, "auto", "");
}

std::vector<uint8_t> hf_tokenizer_to_gguf(const std::string& tokenizer_json_path, const std::string& requested_model,
                                          const std::string& requested_pre) {
  if (requested_model != "auto" && requested_model != "gpt2" && requested_model != "gemma4" &&
      requested_model != "llama")
    throw std::runtime_error("hf_tokenizer_to_gguf: unsupported target model '" + requested_model +
                             "' (want auto, gpt2, gemma4 or llama)");
  if (requested_model == "auto" && !requested_pre.empty())
    throw std::runtime_error("hf_tokenizer_to_gguf: model 'auto' picks `pre` itself (got '" + requested_pre + "')");
  const std::string text = read_all(tokenizer_json_path);
  JsonReader r(text);
  Shape shape;

  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  std::vector<std::string> merges;
  std::string& model_type = shape.model_type;
  std::string unk_token;
  bool& byte_fallback = shape.byte_fallback;
  std::vector<Component>& normalizers = shape.normalizers;
  std::vector<Component>& pretokenizers = shape.pretokenizers;
  auto put = [&](size_t id, std::string t, int32_t type) {
    if (id > (1u << 26)) r.fail("token id too large");
    if (tokens.size() <= id) {
      tokens.resize(id + 1);
      types.resize(id + 1, -1);
    }
    tokens[id] = std::move(t);
    types[id] = type;
  };
  struct Added {
    size_t id;
    std::string content;
    bool special;
  };
  std::vector<Added> added;

  r.object([&](const std::string& key) {
    if (key == "model") {
      r.object([&](const std::string& k) {
        if (k == "type") {
          model_type = r.null() ? "" : r.string();
        } else if (k == "unk_token") {
          unk_token = r.null() ? "" : r.string();
        } else if (k == "byte_fallback") {
          byte_fallback = r.null() ? false : r.boolean();
        } else if (k == "vocab" && r.peek() != '{') {
          r.skip();  // not a BPE vocab (Unigram: a list of [piece, score]); the model type check below says so
        } else if (k == "vocab") {
          r.object([&](const std::string& tok) { put(size_t(r.number()), tok, 1); });
        } else if (k == "merges") {
          r.array([&] {
            if (r.peek() == '"') {
              merges.push_back(r.string());
            } else {
              std::string m;
              int n = 0;
              r.array([&] {
                if (n++) m += ' ';
                m += r.string();
              });
              if (n != 2) r.fail("a merge must have two parts");
              merges.push_back(std::move(m));
            }
          });
        } else {
          r.skip();
        }
      });
    } else if (key == "normalizer") {
      read_components(r, normalizers);
    } else if (key == "pre_tokenizer") {
      read_components(r, pretokenizers);
    } else if (key == "decoder") {
      read_components(r, shape.decoders);
    } else if (key == "added_tokens") {
      r.array([&] {
        Added a{0, {}, false};
        r.object([&](const std::string& k) {
          if (k == "id") a.id = size_t(r.number());
          else if (k == "content") a.content = r.string();
          else if (k == "special") a.special = r.boolean();
          else r.skip();
        });
        added.push_back(std::move(a));
      });
    } else {
      r.skip();
    }
  });
  HfTokenizerTarget target{requested_model, requested_pre};
  if (requested_model == "auto") target = detect(shape);
  const std::string& model = target.model;
  const std::string& pre = target.pre;
  if (model_type != "BPE") throw std::runtime_error("hf_tokenizer_to_gguf: model type '" + model_type + "' is not BPE");
  if (tokens.empty()) throw std::runtime_error("hf_tokenizer_to_gguf: empty vocab");
  const bool gemma = model == "gemma4";
  if (byte_fallback)
    for (size_t i = 0; i < tokens.size(); ++i)
      if (types[i] == 1 && is_byte_piece(tokens[i])) types[i] = 6;
  for (auto& a : added) {
    int32_t type = a.special ? 3 : (gemma ? 1 : 4);
    if (!a.special && a.id < types.size() && types[a.id] == 6) type = 6;
    put(a.id, std::move(a.content), type);
  }
  for (size_t i = 0; i < tokens.size(); ++i)
    if (types[i] < 0) {
      tokens[i] = "[PAD" + std::to_string(i) + "]";
      types[i] = 5;
    }

  // "llama" target: a SentencePiece-style BPE (Llama 2, Mistral, Phi-3 tokenizer.json). The GGUF "llama" tokenizer
  // merges by score, so each piece gets the score -rank of the first merge that makes it: the merge with the lowest
  // rank is the one with the highest score. Pieces no merge makes get a score below every merge (normal pieces) or 0
  // (control, unknown and byte pieces, as in SentencePiece models).
  std::vector<float> scores;
  std::optional<bool> add_space_prefix;
  if (model == "llama") {
    bool escapes_spaces = false, prefix = false;
    for (const Component& c : normalizers) {
      if (c.type == "Prepend" && c.prepend == "\xE2\x96\x81") prefix = true;
      if (c.type == "Replace" && c.pattern == " " && c.content == "\xE2\x96\x81") escapes_spaces = true;
      if (c.type == "Metaspace") throw std::runtime_error("hf_tokenizer_to_gguf: Metaspace as a normalizer");
    }
    for (const Component& c : pretokenizers) {
      if (c.type == "Metaspace") {
        if (c.replacement != "\xE2\x96\x81")
          throw std::runtime_error("hf_tokenizer_to_gguf: Metaspace replacement is not U+2581");
        escapes_spaces = true;
        if (c.prepend_scheme == "first" || c.prepend_scheme == "always" ||
            (c.prepend_scheme.empty() && c.add_prefix_space.value_or(true)))
          prefix = true;
      } else if (c.type == "ByteLevel" || c.type == "Split") {
        throw std::runtime_error("hf_tokenizer_to_gguf: pre-tokenizer '" + c.type +
                                 "' is not SentencePiece-style (use target gpt2 or gemma4)");
      }
    }
    if (!escapes_spaces)
      throw std::runtime_error(
          "hf_tokenizer_to_gguf: not a SentencePiece-style tokenizer.json (no Replace(' ', U+2581) normalizer and "
          "no Metaspace pre-tokenizer)");
    add_space_prefix = prefix;
    if (!unk_token.empty())
      for (size_t i = 0; i < tokens.size(); ++i)
        if (tokens[i] == unk_token && types[i] != 6) {
          types[i] = 2;
          break;
        }
    std::unordered_map<std::string_view, uint32_t> ids;
    ids.reserve(tokens.size());
    for (size_t i = 0; i < tokens.size(); ++i) ids.emplace(tokens[i], uint32_t(i));
    constexpr float kUnset = 1.0f;
    scores.assign(tokens.size(), kUnset);
    std::string joined;
    for (size_t rank = 0; rank < merges.size(); ++rank) {
      const std::string& m = merges[rank];
      const size_t sp = m.find(' ');
      if (sp == std::string::npos) continue;
      joined.assign(m, 0, sp);
      joined.append(m, sp + 1, std::string::npos);
      auto it = ids.find(joined);
      if (it != ids.end() && scores[it->second] == kUnset) scores[it->second] = -float(rank);
    }
    for (size_t i = 0; i < tokens.size(); ++i)
      if (scores[i] == kUnset) scores[i] = types[i] == 1 || types[i] == 4 ? -float(merges.size() + 1) : 0.0f;
  }

  GgufWriter w;
  w.set_string("general.architecture", "vocab");
  w.set_string("tokenizer.ggml.model", model);
  if (!pre.empty()) w.set_string("tokenizer.ggml.pre", pre);
  // Normalizers: NFC is carried to the tokenizer; Prepend / Replace are what the "llama" / "gemma4" models are;
  // anything else would silently tokenize differently from the reference, so it is an error.
  bool nfc = false;
  for (const Component& c : normalizers) {
    if (c.type == "NFC") nfc = true;
    else if ((c.type == "Prepend" || c.type == "Replace") && model != "gpt2") continue;
    else throw std::runtime_error("hf_tokenizer_to_gguf: unsupported normalizer '" + c.type + "' for model '" + model + "'");
  }
  if (nfc) w.set_string("tokenizer.vireo.normalizer", "NFC");
  w.set("tokenizer.ggml.tokens", string_array(tokens));
  {
    GgufArray a{GgufType::I32, {}};
    a.items.reserve(types.size());
    for (int32_t t : types) a.items.push_back({GgufType::I32, int64_t(t)});
    w.set("tokenizer.ggml.token_type", {GgufType::ARRAY, std::move(a)});
  }
  if (model == "llama") {
    GgufArray a{GgufType::F32, {}};
    a.items.reserve(scores.size());
    for (float x : scores) a.items.push_back({GgufType::F32, double(x)});
    w.set("tokenizer.ggml.scores", {GgufType::ARRAY, std::move(a)});
    w.set_bool("tokenizer.ggml.add_space_prefix", *add_space_prefix);
    if (!unk_token.empty())
      for (size_t i = 0; i < tokens.size(); ++i)
        if (tokens[i] == unk_token) {
          w.set_u32("tokenizer.ggml.unknown_token_id", uint32_t(i));
          break;
        }
  } else {
    w.set("tokenizer.ggml.merges", string_array(merges));
  }

  // bos / eos from tokenizer_config.json (a string or {"content": ...}).
  const auto cfg_path = std::filesystem::path(tokenizer_json_path).parent_path() / "tokenizer_config.json";
  if (std::filesystem::exists(cfg_path)) {
    const std::string cfg = read_all(cfg_path);
    JsonReader c(cfg);
    std::string bos, eos;
    std::optional<bool> add_bos, add_eos;
    auto token_name = [&]() -> std::string {
      char ch = c.peek();
      if (ch == '"') return c.string();
      if (ch == '{') {
        std::string content;
        c.object([&](const std::string& k) {
          if (k == "content") content = c.string();
          else c.skip();
        });
        return content;
      }
      c.skip();
      return {};
    };
    c.object([&](const std::string& k) {
      if (k == "bos_token") bos = token_name();
      else if (k == "eos_token") eos = token_name();
      else if (k == "add_bos_token" && (c.peek() == 't' || c.peek() == 'f')) add_bos = c.boolean();
      else if (k == "add_eos_token" && (c.peek() == 't' || c.peek() == 'f')) add_eos = c.boolean();
      else c.skip();
    });
    std::unordered_map<std::string_view, uint32_t> ids;
    for (size_t i = 0; i < tokens.size(); ++i) ids[tokens[i]] = uint32_t(i);
    if (auto it = ids.find(bos); !bos.empty() && it != ids.end()) w.set_u32("tokenizer.ggml.bos_token_id", it->second);
    if (auto it = ids.find(eos); !eos.empty() && it != ids.end()) w.set_u32("tokenizer.ggml.eos_token_id", it->second);
    if (add_bos) w.set_bool("tokenizer.ggml.add_bos_token", *add_bos);
    if (add_eos) w.set_bool("tokenizer.ggml.add_eos_token", *add_eos);
  }
  return w.write_to_memory([](size_t, std::vector<uint8_t>&) {});
}

std::unique_ptr<GgufFile> open_hf_tokenizer_as_gguf(const std::string& tokenizer_json_path, const std::string& model,
                                                    const std::string& pre) {
  return std::make_unique<GgufFile>(ByteSource::from_buffer(hf_tokenizer_to_gguf(tokenizer_json_path, model, pre)));
}

std::unique_ptr<GgufFile> open_hf_tokenizer_as_gguf(const std::string& tokenizer_json_path) {
  return open_hf_tokenizer_as_gguf(tokenizer_json_path, "auto", "");
}

}  // namespace vireo
