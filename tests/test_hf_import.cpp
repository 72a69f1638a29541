// Hugging Face tokenizer.json import (src/tokenizer/hf_import.h) beyond the three fixture files:
//  - merges in both list formats ("a b" strings and ["a", "b"] pairs) give the same vocab and ids;
//  - SentencePiece-style BPE tokenizer.json (Llama 2 / Mistral / Phi-3 style), built here from the SPM vocab GGUFs
//    the way transformers' converter writes it, imports as the GGUF "llama" tokenizer and passes 100% of the vectors;
//  - added tokens (special and not, with lstrip/rstrip/normalized fields) are matched in text.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <unistd.h>
#include <unordered_map>
#include <vector>

#include "gguf/gguf.h"
#include "tokenizer/hf_import.h"
#include "tokenizer/tokenizer.h"

namespace fs = std::filesystem;
using namespace vireo;

namespace {

const fs::path kFix = fs::path(VIREO_FIXTURES);

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_file(const fs::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary);
  f << s;
}

struct Case {
  std::string text;
  std::vector<int32_t> ids;
};

std::vector<Case> load_cases(const std::string& name) {
  const fs::path inp = kFix / "vocab" / ("ggml-vocab-" + name + ".gguf.inp");
  const fs::path out = kFix / "vocab" / ("ggml-vocab-" + name + ".gguf.out");
  static const std::string kSep = "\n__ggml_vocab_test__\n";
  std::string a = slurp(inp), b = slurp(out);
  std::vector<std::string> texts;
  size_t pos = 0;
  for (size_t j; (j = a.find(kSep, pos)) != std::string::npos; pos = j + kSep.size()) texts.push_back(a.substr(pos, j - pos));
  if (pos < a.size()) texts.push_back(a.substr(pos));
  std::vector<Case> cases;
  std::istringstream lines(b);
  std::string line;
  for (size_t i = 0; i < texts.size() && std::getline(lines, line); ++i) {
    Case c{texts[i], {}};
    std::istringstream ls(line);
    int64_t v;
    while (ls >> v) c.ids.push_back(int32_t(v));
    cases.push_back(std::move(c));
  }
  return cases;
}

// Runs every vector; returns the number that pass (failures are reported).
size_t run_vectors(const Tokenizer& t, const std::vector<Case>& cases, const std::string& what) {
  size_t pass = 0;
  for (const Case& c : cases) {
    auto got = t.encode(c.text, false, false);
    if (got == c.ids) {
      ++pass;
    } else {
      std::string w, g;
      for (int32_t x : c.ids) w += " " + std::to_string(x);
      for (int32_t x : got) g += " " + std::to_string(x);
      ADD_FAILURE() << what << ": '" << c.text << "'\n  want:" << w << "\n  got: " << g;
    }
  }
  std::printf("[ hf       ] %-40s %zu/%zu cases pass\n", what.c_str(), pass, cases.size());
  return pass;
}

// A fresh directory under the temp dir, removed at scope exit.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& tag) {
    static int n = 0;
    path = fs::temp_directory_path() / ("vireo_hf_" + tag + "_" + std::to_string(getpid()) + "_" + std::to_string(++n));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// Length of the JSON string literal starting at s[i] == '"' (including both quotes).
size_t json_string_len(const std::string& s, size_t i) {
  size_t j = i + 1;
  while (j < s.size() && s[j] != '"') j += s[j] == '\\' ? 2 : 1;
  return j + 1 - i;
}

size_t skip_ws(const std::string& s, size_t i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')) ++i;
  return i;
}

// Rewrites the model's "merges" array of a tokenizer.json text into the other list format: "a b" strings become
// ["a","b"] pairs and pairs become strings. Returns the number of merges rewritten (0: not found).
size_t flip_merges_format(std::string& json) {
  // The merges key is the one followed by an array ("merges" can also be a vocab entry, followed by a number).
  size_t at = std::string::npos;
  for (size_t p = json.find("\"merges\""); p != std::string::npos; p = json.find("\"merges\"", p + 1)) {
    size_t q = skip_ws(json, p + 8);
    if (q < json.size() && json[q] == ':' && json[skip_ws(json, q + 1)] == '[') at = skip_ws(json, q + 1);
  }
  if (at == std::string::npos) return 0;
  std::string out = json.substr(0, at + 1);
  size_t i = at + 1, n = 0;
  while (true) {
    i = skip_ws(json, i);
    if (json[i] == ']') break;
    if (json[i] == '"') {  // "a b" -> ["a","b"]
      const size_t len = json_string_len(json, i);
      std::string lit = json.substr(i, len);
      const size_t sp = lit.find(' ');
      if (sp == std::string::npos) return 0;
      out += "[" + lit.substr(0, sp) + "\",\"" + lit.substr(sp + 1) + "]";
      i += len;
    } else if (json[i] == '[') {  // ["a","b"] -> "a b"
      i = skip_ws(json, i + 1);
      const size_t la = json_string_len(json, i);
      std::string a = json.substr(i, la);
      i = skip_ws(json, i + la);
      if (json[i] != ',') return 0;
      i = skip_ws(json, i + 1);
      const size_t lb = json_string_len(json, i);
      std::string b = json.substr(i, lb);
      i = skip_ws(json, i + lb);
      if (json[i] != ']') return 0;
      ++i;
      out += a.substr(0, a.size() - 1) + " " + b.substr(1);
    } else {
      return 0;
    }
    ++n;
    i = skip_ws(json, i);
    if (json[i] == ',') {
      out += ',';
      ++i;
    }
  }
  out += json.substr(i);
  json = std::move(out);
  return n;
}

std::string json_str(const std::string& s) {
  std::string r = "\"";
  for (unsigned char c : s) {
    if (c == '"') r += "\\\"";
    else if (c == '\\') r += "\\\\";
    else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      r += buf;
    } else r += char(c);
  }
  return r + "\"";
}

size_t n_chars(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// Merges of a SentencePiece BPE vocabulary as transformers' converter derives them (generate_merges in
// convert_slow_tokenizer.py): for each piece, in id order, every split at a character boundary into two pieces that
// are both in the vocab is a merge; the splits of one piece are ordered by (id of left, id of right); then all merges
// are stably sorted by (score of the piece, length of left, length of right) in decreasing order.
std::vector<std::pair<std::string, std::string>> spm_merges(const std::vector<std::string>& tokens,
                                                             const std::vector<float>& scores) {
  std::unordered_map<std::string, int32_t> id;
  for (size_t i = 0; i < tokens.size(); ++i) id.emplace(tokens[i], int32_t(i));
  struct M {
    int32_t l, r;
    float score;
    size_t ll, lr;
  };
  std::vector<M> all;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string& p = tokens[i];
    std::vector<M> local;
    for (size_t k = 1; k < p.size(); ++k) {
      if ((static_cast<unsigned char>(p[k]) & 0xC0) == 0x80) continue;  // not a character boundary
      auto a = id.find(p.substr(0, k)), b = id.find(p.substr(k));
      if (a != id.end() && b != id.end())
        local.push_back({a->second, b->second, scores[i], n_chars(a->first), n_chars(b->first)});
    }
    std::sort(local.begin(), local.end(), [](const M& x, const M& y) { return std::pair(x.l, x.r) < std::pair(y.l, y.r); });
    all.insert(all.end(), local.begin(), local.end());
  }
  std::stable_sort(all.begin(), all.end(), [](const M& x, const M& y) {
    return std::tuple(x.score, x.ll, x.lr) > std::tuple(y.score, y.ll, y.lr);
  });
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(all.size());
  for (const M& m : all) out.emplace_back(tokens[size_t(m.l)], tokens[size_t(m.r)]);
  return out;
}

enum class SpmStyle { LegacyNormalizer, MetaspaceFirst };

struct SpmVocab {
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
  bool add_space_prefix = true;
};

SpmVocab read_spm_gguf(const fs::path& p) {
  GgufFile f = GgufFile::open(p.string());
  SpmVocab v;
  for (const auto& x : f.find("tokenizer.ggml.tokens")->as_array().items) v.tokens.push_back(x.as_string());
  for (const auto& x : f.find("tokenizer.ggml.scores")->as_array().items) v.scores.push_back(float(x.as_float()));
  for (const auto& x : f.find("tokenizer.ggml.token_type")->as_array().items) v.types.push_back(int32_t(x.as_int()));
  if (const GgufValue* a = f.find("tokenizer.ggml.add_space_prefix")) v.add_space_prefix = a->as_bool();
  return v;
}

// A tokenizer.json in the form transformers writes for Llama 2 / Mistral / Phi-3 (LlamaConverter): model BPE with
// byte_fallback over the whole SentencePiece vocab, CONTROL/UNKNOWN pieces as special added tokens, USER_DEFINED as
// non-special ones; legacy normalizer Prepend+Replace or (legacy=false) a Metaspace pre-tokenizer.
std::string spm_tokenizer_json(const SpmVocab& v, SpmStyle style, bool list_merges,
                               const std::string& extra_added = "") {
  std::string j = "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [";
  bool first = true;
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    const int32_t t = v.types[i];
    if (t != 2 && t != 3 && t != 4) continue;
    j += first ? "\n    " : ",\n    ";
    first = false;
    j += "{\"id\": " + std::to_string(i) + ", \"content\": " + json_str(v.tokens[i]) +
         ", \"single_word\": false, \"lstrip\": false, \"rstrip\": " + (t == 4 ? "true" : "false") +
         ", \"normalized\": false, \"special\": " + (t == 4 ? "false" : "true") + "}";
  }
  j += extra_added;
  j += "\n  ],\n";
  const std::string sp = json_str("\xE2\x96\x81");
  if (style == SpmStyle::LegacyNormalizer) {
    j += "  \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [";
    if (v.add_space_prefix) j += "{\"type\": \"Prepend\", \"prepend\": " + sp + "}, ";
    j += "{\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": " + sp + "}]},\n";
    j += "  \"pre_tokenizer\": null,\n";
  } else {
    j += "  \"normalizer\": null,\n";
    j += "  \"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": " + sp + ", \"prepend_scheme\": \"" +
         (v.add_space_prefix ? "first" : "never") + "\", \"split\": false},\n";
  }
  j += "  \"post_processor\": null,\n";
  j += "  \"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", \"pattern\": {\"String\": " + sp +
       "}, \"content\": \" \"}, {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}, {\"type\": \"Strip\", \"content\": "
       "\" \", \"start\": 1, \"stop\": 0}]},\n";
  j += "  \"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": \"<unk>\", \"continuing_subword_prefix\": "
       "null, \"end_of_word_suffix\": null, \"fuse_unk\": true, \"byte_fallback\": true, \"ignore_merges\": false,\n"
       "    \"vocab\": {";
  for (size_t i = 0; i < v.tokens.size(); ++i)
    j += (i ? ",\n      " : "\n      ") + json_str(v.tokens[i]) + ": " + std::to_string(i);
  j += "\n    },\n    \"merges\": [";
  const auto merges = spm_merges(v.tokens, v.scores);
  for (size_t i = 0; i < merges.size(); ++i) {
    j += i ? ",\n      " : "\n      ";
    if (list_merges) j += "[" + json_str(merges[i].first) + ", " + json_str(merges[i].second) + "]";
    else j += json_str(merges[i].first + " " + merges[i].second);
  }
  j += "\n    ]\n  }\n}\n";
  return j;
}

}  // namespace

// ---- 1. merges in both list formats ----

TEST(HfImport, MergesInBothListFormatsGiveIdenticalVocabs) {
  struct Src {
    const char* dir;
    const char* model;
    const char* pre;
    const char* vectors;
  };
  int done = 0;
  for (const Src& s : {Src{"llama3", "gpt2", "llama-bpe", "llama-bpe"}, Src{"qwen3", "gpt2", "qwen2", "qwen2"}}) {
    const fs::path json = kFix / "tokenizers" / s.dir / "tokenizer.json";
    if (!fs::exists(json)) continue;
    ++done;
    std::string text = slurp(json);
    const size_t n = flip_merges_format(text);
    ASSERT_GT(n, 10000u) << s.dir << ": merges not found / not rewritten";
    TempDir dir(s.dir);
    write_file(dir.path / "tokenizer.json", text);
    const fs::path cfg = json.parent_path() / "tokenizer_config.json";
    if (fs::exists(cfg)) fs::copy_file(cfg, dir.path / "tokenizer_config.json");
    // The same GGUF image, byte for byte, whichever list format the merges come in.
    const auto a = hf_tokenizer_to_gguf(json.string(), s.model, s.pre);
    const auto b = hf_tokenizer_to_gguf((dir.path / "tokenizer.json").string(), s.model, s.pre);
    EXPECT_EQ(a.size(), b.size()) << s.dir;
    EXPECT_TRUE(a == b) << s.dir << ": the two merges formats give different vocabularies";
    auto f = open_hf_tokenizer_as_gguf((dir.path / "tokenizer.json").string(), s.model, s.pre);
    auto t = Tokenizer::from_gguf(*f);
    const auto cases = load_cases(s.vectors);
    ASSERT_FALSE(cases.empty());
    EXPECT_EQ(run_vectors(*t, cases, std::string(s.dir) + " (merges format flipped)"), cases.size());
  }
  if (!done) GTEST_SKIP() << "tokenizer fixtures not available";
}

TEST(HfImport, MergeOfWrongArityIsAnError) {
  TempDir dir("bad");
  write_file(dir.path / "tokenizer.json",
             R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a", "b", "c"]]}})");
  EXPECT_THROW(hf_tokenizer_to_gguf((dir.path / "tokenizer.json").string(), "gpt2", ""), std::runtime_error);
}

// ---- 2. SentencePiece-style BPE tokenizer.json ----

TEST(HfImport, SentencePieceStyleBpePassesSpmVectors) {
  int done = 0;
  for (const std::string name : {"llama-spm", "phi-3"}) {
    const fs::path g = kFix / "vocab" / ("ggml-vocab-" + name + ".gguf");
    if (!fs::exists(g)) continue;
    ++done;
    const SpmVocab v = read_spm_gguf(g);
    const auto cases = load_cases(name);
    ASSERT_FALSE(cases.empty());
    GgufFile orig_f = GgufFile::open(g.string());
    auto orig = Tokenizer::from_gguf(orig_f);
    for (SpmStyle style : {SpmStyle::LegacyNormalizer, SpmStyle::MetaspaceFirst}) {
      const bool legacy = style == SpmStyle::LegacyNormalizer;
      TempDir dir(name);
      const fs::path json = dir.path / "tokenizer.json";
      write_file(json, spm_tokenizer_json(v, style, /*list_merges=*/legacy));
      auto f = open_hf_tokenizer_as_gguf(json.string(), "llama", "");
      auto t = Tokenizer::from_gguf(*f);
      const std::string what = name + (legacy ? " (Prepend+Replace normalizer)" : " (Metaspace first)");
      EXPECT_EQ(t->model(), TokenizerModel::Spm) << what;
      EXPECT_EQ(t->n_vocab(), orig->n_vocab()) << what;
      EXPECT_EQ(t->add_space_prefix(), orig->add_space_prefix()) << what;
      EXPECT_EQ(t->unk(), orig->unk()) << what;
      int type_diffs = 0;
      // (phi-3's GGUF marks its padding pieces UNKNOWN and <unk> CONTROL; the import follows model.unk_token.)
      for (int32_t i = 0; i < t->n_vocab(); ++i)
        if (orig->token_type(i) != TokenType::Unknown && i != t->unk() &&
            t->token_type(i) != orig->token_type(i) && type_diffs++ < 3)
          ADD_FAILURE() << what << ": token " << i << " '" << t->token_text(i) << "' type " << int(t->token_type(i))
                        << ", GGUF has " << int(orig->token_type(i));
      EXPECT_EQ(type_diffs, 0) << what;
      EXPECT_EQ(run_vectors(*t, cases, what), cases.size());
      // Decoding agrees with the GGUF tokenizer too.
      for (const Case& c : cases) EXPECT_EQ(t->decode(c.ids), orig->decode(c.ids)) << what;
    }
  }
  if (!done) GTEST_SKIP() << "SPM vocab fixtures not available";
}

TEST(HfImport, LlamaTargetRejectsByteLevelTokenizers) {
  const fs::path json = kFix / "tokenizers" / "llama3" / "tokenizer.json";
  if (!fs::exists(json)) GTEST_SKIP() << "llama3 tokenizer.json not available";
  try {
    hf_tokenizer_to_gguf(json.string(), "llama", "");
    ADD_FAILURE() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("not SentencePiece-style"), std::string::npos) << e.what();
  }
}

// ---- 3. added tokens ----

TEST(HfImport, AddedTokensSpecialAndNotAreMatchedInText) {
  const fs::path g = kFix / "vocab" / "ggml-vocab-llama-spm.gguf";
  if (!fs::exists(g)) GTEST_SKIP() << "llama-spm fixture not available";
  SpmVocab v = read_spm_gguf(g);
  const int32_t n = int32_t(v.tokens.size());
  // Two tokens added after the vocab, with the fields newer files carry.
  const std::string extra =
      ",\n    {\"id\": " + std::to_string(n) +
      ", \"content\": \"<|tool|>\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": "
      "false, \"special\": false}" +
      ",\n    {\"id\": " + std::to_string(n + 1) +
      ", \"content\": \"<|turn|>\", \"single_word\": false, \"lstrip\": true, \"rstrip\": true, \"normalized\": "
      "false, \"special\": true}";
  TempDir dir("added");
  const fs::path json = dir.path / "tokenizer.json";
  write_file(json, spm_tokenizer_json(v, SpmStyle::LegacyNormalizer, true, extra));
  auto f = open_hf_tokenizer_as_gguf(json.string(), "llama", "");
  auto t = Tokenizer::from_gguf(*f);
  ASSERT_EQ(t->n_vocab(), n + 2);
  const int32_t tool = n, turn = n + 1;
  EXPECT_EQ(t->find_token("<|tool|>"), tool);
  EXPECT_EQ(t->find_token("<|turn|>"), turn);
  EXPECT_EQ(t->token_type(tool), TokenType::UserDefined);
  EXPECT_EQ(t->token_type(turn), TokenType::Control);
  EXPECT_EQ(t->token_type(1), TokenType::Control);  // <s>
  EXPECT_EQ(t->token_type(0), TokenType::Unknown);  // <unk>

  auto has = [](const std::vector<int32_t>& ids, int32_t id) { return std::find(ids.begin(), ids.end(), id) != ids.end(); };
  // Non-special added tokens are always matched; special ones only when parsing special tokens.
  EXPECT_TRUE(has(t->encode("call<|tool|>now", false, false), tool));
  EXPECT_TRUE(has(t->encode("call<|tool|>now", false, true), tool));
  EXPECT_TRUE(has(t->encode("a<|turn|>b", false, true), turn));
  EXPECT_FALSE(has(t->encode("a<|turn|>b", false, false), turn));
  EXPECT_TRUE(has(t->encode("x</s>y", false, true), 2));
  EXPECT_FALSE(has(t->encode("x</s>y", false, false), 2));
  // Text before them is tokenized as without them.
  const auto ids = t->encode("Hello<|tool|>world", false, false);
  const auto hello = t->encode("Hello", false, false);
  ASSERT_GT(ids.size(), hello.size());
  EXPECT_TRUE(std::equal(hello.begin(), hello.end(), ids.begin()));
  EXPECT_EQ(ids[hello.size()], tool);
  // Decoding: non-special added tokens are text; special ones are shown only on request.
  // (As in llama.cpp, the SPM tokenizer starts the text after an added token with a dummy-prefix space.)
  EXPECT_NE(t->decode(t->encode("a<|tool|>b", false, false)).find("a<|tool|>"), std::string::npos);
  EXPECT_EQ(t->decode(t->encode("a<|turn|>b", false, true)).find("<|turn|>"), std::string::npos);
  EXPECT_NE(t->decode(t->encode("a<|turn|>b", false, true), true).find("<|turn|>"), std::string::npos);
}

TEST(HfImport, FixtureAddedTokensAreControlAndMatched) {
  const fs::path json = kFix / "tokenizers" / "llama3" / "tokenizer.json";
  if (!fs::exists(json)) GTEST_SKIP() << "llama3 tokenizer.json not available";
  auto f = open_hf_tokenizer_as_gguf(json.string(), "gpt2", "llama-bpe");
  auto t = Tokenizer::from_gguf(*f);
  const int32_t eot = t->find_token("<|eot_id|>");
  ASSERT_EQ(eot, 128009);
  EXPECT_EQ(t->token_type(eot), TokenType::Control);
  EXPECT_EQ(t->token_type(128255), TokenType::Control);  // <|reserved_special_token_247|>
  EXPECT_EQ(t->bos(), 128000);                            // from tokenizer_config.json
  const auto with = t->encode("Hi<|eot_id|>", false, true);
  ASSERT_EQ(with.size(), 2u);
  EXPECT_EQ(with[1], eot);
  const auto without = t->encode("Hi<|eot_id|>", false, false);
  EXPECT_GT(without.size(), 2u);
  EXPECT_EQ(std::count(without.begin(), without.end(), eot), 0);
}

// ---- 4. model "auto" ----

TEST(HfImport, AutoDetectGivesTheSameImageAsTheExplicitTarget) {
  struct Src {
    const char* dir;
    const char* model;
    const char* pre;
  };
  int done = 0;
  for (const Src& s : {Src{"llama3", "gpt2", "llama-bpe"}, Src{"qwen3", "gpt2", "qwen2"}, Src{"gemma3", "gemma4", ""}}) {
    const fs::path json = kFix / "tokenizers" / s.dir / "tokenizer.json";
    if (!fs::exists(json)) continue;
    ++done;
    const HfTokenizerTarget t = detect_hf_tokenizer(json.string());
    EXPECT_EQ(t.model, s.model) << s.dir;
    EXPECT_EQ(t.pre, s.pre) << s.dir;
    const auto want = hf_tokenizer_to_gguf(json.string(), s.model, s.pre);
    EXPECT_TRUE(hf_tokenizer_to_gguf(json.string()) == want) << s.dir << ": auto differs from the explicit target";
    EXPECT_TRUE(hf_tokenizer_to_gguf(json.string(), "auto", "") == want) << s.dir;
    auto f = open_hf_tokenizer_as_gguf(json.string());
    EXPECT_EQ(f->get_string("tokenizer.ggml.model", ""), s.model) << s.dir;
  }
  if (!done) GTEST_SKIP() << "tokenizer fixtures not available";
}

TEST(HfImport, AutoDetectsSentencePieceStyleAsLlama) {
  int done = 0;
  for (const std::string name : {"llama-spm", "phi-3"}) {
    const fs::path g = kFix / "vocab" / ("ggml-vocab-" + name + ".gguf");
    if (!fs::exists(g)) continue;
    ++done;
    const SpmVocab v = read_spm_gguf(g);
    for (SpmStyle style : {SpmStyle::LegacyNormalizer, SpmStyle::MetaspaceFirst}) {
      const bool legacy = style == SpmStyle::LegacyNormalizer;
      const std::string what = name + (legacy ? " (Prepend+Replace normalizer)" : " (Metaspace first)");
      TempDir dir(name);
      const fs::path json = dir.path / "tokenizer.json";
      write_file(json, spm_tokenizer_json(v, style, /*list_merges=*/legacy));
      const HfTokenizerTarget t = detect_hf_tokenizer(json.string());
      EXPECT_EQ(t.model, "llama") << what;
      EXPECT_EQ(t.pre, "") << what;
      EXPECT_TRUE(hf_tokenizer_to_gguf(json.string()) == hf_tokenizer_to_gguf(json.string(), "llama", "")) << what;
    }
  }
  if (!done) GTEST_SKIP() << "SPM vocab fixtures not available";
}

TEST(HfImport, AutoDetectSmallFiles) {
  TempDir dir("auto");
  const fs::path json = dir.path / "tokenizer.json";
  const std::string vocab = R"("vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"])";
  auto detect = [&](const std::string& body) {
    write_file(json, body);
    return detect_hf_tokenizer(json.string());
  };
  // GPT-2's own file: a ByteLevel pre-tokenizer that applies its built-in regex.
  HfTokenizerTarget t = detect(R"({"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
      "use_regex": true}, "decoder": {"type": "ByteLevel"}, "model": {"type": "BPE", )" + vocab + "}}");
  EXPECT_EQ(t.model, "gpt2");
  EXPECT_EQ(t.pre, "gpt2");
  EXPECT_EQ(open_hf_tokenizer_as_gguf(json.string())->get_string("tokenizer.ggml.pre", ""), "gpt2");
  // The GPT-2 regex as an explicit Split.
  t = detect(R"({"pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex":
      "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated",
      "invert": false}, {"type": "ByteLevel", "use_regex": false}]}, "model": {"type": "BPE", )" + vocab + "}}");
  EXPECT_EQ(t.pre, "gpt2");
  // Gemma 3 style: Replace(' ', U+2581) without Prepend, byte_fallback.
  t = detect(R"({"normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
      "pre_tokenizer": {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious", "invert": false},
      "model": {"type": "BPE", "byte_fallback": true, )" + vocab + "}}");
  EXPECT_EQ(t.model, "gemma4");
  EXPECT_EQ(t.pre, "");
}

TEST(HfImport, AutoDetectRejectsUnsupportedFilesClearly) {
  TempDir dir("auto_bad");
  const fs::path json = dir.path / "tokenizer.json";
  auto error_of = [&](const std::string& body) -> std::string {
    write_file(json, body);
    try {
      hf_tokenizer_to_gguf(json.string());
    } catch (const std::runtime_error& e) {
      // detect_hf_tokenizer says the same.
      try {
        detect_hf_tokenizer(json.string());
        ADD_FAILURE() << "detect_hf_tokenizer accepted what the import rejects: " << e.what();
      } catch (const std::runtime_error&) {
      }
      return e.what();
    }
    ADD_FAILURE() << "no error for " << body;
    return {};
  };
  const std::string wordpiece = error_of(
      R"({"normalizer": {"type": "BertNormalizer", "lowercase": true}, "pre_tokenizer": {"type": "BertPreTokenizer"},
      "decoder": {"type": "WordPiece", "prefix": "##"}, "model": {"type": "WordPiece", "unk_token": "[UNK]",
      "continuing_subword_prefix": "##", "max_input_chars_per_word": 100, "vocab": {"[UNK]": 0, "a": 1, "##b": 2}}})");
  EXPECT_NE(wordpiece.find("model type 'WordPiece' is not supported"), std::string::npos) << wordpiece;
  const std::string unigram = error_of(
      R"({"pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always"},
      "model": {"type": "Unigram", "unk_id": 0, "vocab": [["<unk>", 0.0], ["\u2581a", -1.5]], "byte_fallback": false}})");
  EXPECT_NE(unigram.find("model type 'Unigram' is not supported"), std::string::npos) << unigram;
  // A byte-level BPE whose regex the GGUF tokenizer does not know: the error quotes it.
  const std::string regex = error_of(
      R"({"pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "\\p{L}+|\\d"},
      "behavior": "Isolated", "invert": false}, {"type": "ByteLevel", "use_regex": false}]},
      "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})");
  EXPECT_NE(regex.find("unrecognised pre-tokenizer regex '\\p{L}+|\\d'"), std::string::npos) << regex;
  // Neither byte-level nor byte_fallback.
  const std::string plain = error_of(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})");
  EXPECT_NE(plain.find("cannot auto-detect"), std::string::npos) << plain;
  // "auto" picks `pre` itself.
  EXPECT_THROW(hf_tokenizer_to_gguf(json.string(), "auto", "llama-bpe"), std::runtime_error);
}

namespace {
// Qwen3's tokenizer.json has an NFC normalizer: decomposed input ("e" + U+0301) must tokenize like the composed
// character, as HF tokenizers does. Llama 3's has none: there the two spellings stay different.
TEST(HfImport, NfcNormalizerIsApplied) {
  const fs::path qwen = kFix / "tokenizers" / "qwen3" / "tokenizer.json";
  const fs::path llama = kFix / "tokenizers" / "llama3" / "tokenizer.json";
  if (!fs::exists(qwen) || !fs::exists(llama)) GTEST_SKIP() << "fixtures not found at " << kFix;
  const std::string composed = "caf\xC3\xA9 na\xC3\xAFve", decomposed = "cafe\xCC\x81 nai\xCC\x88ve";
  auto fq = open_hf_tokenizer_as_gguf(qwen.string());
  EXPECT_EQ(fq->get_string("tokenizer.vireo.normalizer", ""), "NFC");
  auto tq = Tokenizer::from_gguf(*fq);
  EXPECT_EQ(tq->encode(decomposed, false), tq->encode(composed, false));
  // Special tokens are matched before normalization and survive it.
  EXPECT_EQ(tq->encode("<|im_start|>" + decomposed, false), tq->encode("<|im_start|>" + composed, false));
  auto fl = open_hf_tokenizer_as_gguf(llama.string());
  EXPECT_EQ(fl->get_string("tokenizer.vireo.normalizer", ""), "");
  auto tl = Tokenizer::from_gguf(*fl);
  EXPECT_NE(tl->encode(decomposed, false), tl->encode(composed, false));
}

TEST(HfImport, UnsupportedNormalizerIsAnError) {
  const fs::path llama = kFix / "tokenizers" / "llama3" / "tokenizer.json";
  if (!fs::exists(llama)) GTEST_SKIP() << "fixtures not found at " << kFix;
  std::string text = slurp(llama);
  const size_t at = text.find("\"normalizer\"");
  ASSERT_NE(at, std::string::npos);
  const size_t colon = text.find(':', at);
  const size_t end = text.find_first_of(",}", colon);  // llama3's normalizer is null
  text.replace(colon + 1, end - colon - 1, R"({"type": "NFKC"})");
  const fs::path dir = fs::temp_directory_path() / ("vireo-nfkc-" + std::to_string(getpid()));
  fs::create_directories(dir);
  write_file(dir / "tokenizer.json", text);
  try {
    open_hf_tokenizer_as_gguf((dir / "tokenizer.json").string());
    ADD_FAILURE() << "an NFKC normalizer was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("NFKC"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}
}  // namespace
