// Tokenizer test vectors: every fixtures/vocab/ggml-vocab-*.gguf that has .inp/.out files next to it is run case by
// case (encode with add_bos=false, parse_special=false, as the reference harness does) and must pass 100%.
// Vocab GGUFs without vectors are only loaded. Vector pairs whose GGUF is absent are run against a vocab built in
// memory from the matching Hugging Face tokenizer.json under fixtures/tokenizers/ (when one is known), the way a
// converter would write it.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "tokenizer/hf_import.h"
#include "tokenizer/tokenizer.h"


namespace fs = std::filesystem;
using vireo::GgufFile;
using vireo::Tokenizer;

namespace {

std::string vocab_dir() { return std::string(VIREO_FIXTURES) + "/vocab"; }

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct Case {
  std::string text;
  std::vector<int32_t> ids;
};

std::vector<Case> load_cases(const fs::path& inp, const fs::path& out) {
  static const std::string kSep = "\n__ggml_vocab_test__\n";
  std::string a = slurp(inp), b = slurp(out);
  std::vector<std::string> texts;
  size_t pos = 0;
  while (true) {
    size_t j = a.find(kSep, pos);
    if (j == std::string::npos) {
      if (pos < a.size()) texts.push_back(a.substr(pos));
      break;
    }
    texts.push_back(a.substr(pos, j - pos));
    pos = j + kSep.size();
  }
  std::vector<std::string> lines;
  pos = 0;
  while (pos < b.size()) {
    size_t j = b.find('\n', pos);
    if (j == std::string::npos) j = b.size();
    lines.push_back(b.substr(pos, j - pos));
    pos = j + 1;
  }
  std::vector<Case> cases;
  for (size_t i = 0; i < texts.size() && i < lines.size(); ++i) {
    Case c;
    c.text = texts[i];
    std::istringstream ls(lines[i]);
    int64_t v;
    while (ls >> v) c.ids.push_back(static_cast<int32_t>(v));
    cases.push_back(std::move(c));
  }
  EXPECT_EQ(texts.size(), lines.size()) << inp << ": input and output counts differ";
  return cases;
}

std::string ids_str(const std::vector<int32_t>& v) {
  std::string s;
  for (int32_t x : v) s += " " + std::to_string(x);
  return s;
}

std::string escaped(const std::string& s) {
  std::string r;
  for (unsigned char c : s) {
    if (c == '\n') r += "\\n";
    else if (c == '\t') r += "\\t";
    else r += char(c);
  }
  return r;
}

// ---- vocab built from a Hugging Face tokenizer.json ----

struct HfSource {
  const char* dir;    // under fixtures/tokenizers
  const char* model;  // tokenizer.ggml.model
  const char* pre;    // tokenizer.ggml.pre ("" for none)
};
// Vector name (ggml-vocab-<name>.gguf) -> the tokenizer.json of the same vocabulary.
const std::map<std::string, HfSource>& hf_sources() {
  static const std::map<std::string, HfSource> m = {
      {"llama-bpe", {"llama3", "gpt2", "llama-bpe"}},
      {"qwen2", {"qwen3", "gpt2", "qwen2"}},
      {"gemma-4", {"gemma3", "gemma4", ""}},
  };
  return m;
}

std::unique_ptr<GgufFile> gguf_from_hf(const HfSource& src) {
  const fs::path json = fs::path(VIREO_FIXTURES) / "tokenizers" / src.dir / "tokenizer.json";
  if (!fs::exists(json)) return nullptr;
  return vireo::open_hf_tokenizer_as_gguf(json.string(), src.model, src.pre);
}

struct VocabEntry {
  std::string name;  // e.g. "llama-spm"
  fs::path gguf;     // empty when built from tokenizer.json
  fs::path inp, out;
};

std::vector<VocabEntry> list_vocabs() {
  std::vector<VocabEntry> v;
  std::error_code ec;
  std::map<std::string, VocabEntry> by_name;
  for (const auto& de : fs::directory_iterator(vocab_dir(), ec)) {
    std::string fn = de.path().filename().string();
    if (fn.rfind("ggml-vocab-", 0) != 0) continue;
    size_t g = fn.find(".gguf");
    if (g == std::string::npos) continue;
    std::string name = fn.substr(11, g - 11);
    VocabEntry& e = by_name[name];
    e.name = name;
    std::string rest = fn.substr(g);
    if (rest == ".gguf") e.gguf = de.path();
    else if (rest == ".gguf.inp") e.inp = de.path();
    else if (rest == ".gguf.out") e.out = de.path();
  }
  for (auto& [n, e] : by_name) v.push_back(e);
  return v;
}

std::string safe_name(const std::string& s) {
  std::string r;
  for (char c : s) r += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return r;
}

class TokenizerVectors : public ::testing::TestWithParam<VocabEntry> {};

}  // namespace

TEST_P(TokenizerVectors, AllCasesPass) {
  const VocabEntry& e = GetParam();
  std::unique_ptr<GgufFile> f;
  std::string origin;
  if (!e.gguf.empty()) {
    f = std::make_unique<GgufFile>(GgufFile::open(e.gguf.string()));
    origin = e.gguf.filename().string();
  } else {
    auto it = hf_sources().find(e.name);
    if (it == hf_sources().end()) GTEST_SKIP() << "no GGUF and no known tokenizer.json for " << e.name;
    f = gguf_from_hf(it->second);
    if (!f) GTEST_SKIP() << "no GGUF and no tokenizers/" << it->second.dir << "/tokenizer.json for " << e.name;
    origin = std::string("tokenizers/") + it->second.dir + "/tokenizer.json";
  }
  auto tok = Tokenizer::from_gguf(*f);
  ASSERT_GT(tok->n_vocab(), 0);
  if (e.inp.empty() || e.out.empty()) {
    // Load-only vocab: a smoke check that encoding plain text works.
    auto ids = tok->encode("Hello world", false, false);
    EXPECT_FALSE(ids.empty());
    std::printf("[ vocab    ] %-16s loaded (%d tokens), no test vectors\n", e.name.c_str(), tok->n_vocab());
    return;
  }
  auto cases = load_cases(e.inp, e.out);
  ASSERT_FALSE(cases.empty());
  size_t pass = 0;
  for (const Case& c : cases) {
    auto got = tok->encode(c.text, false, false);
    if (got == c.ids) {
      ++pass;
    } else {
      ADD_FAILURE() << e.name << ": '" << escaped(c.text) << "'\n  want:" << ids_str(c.ids)
                    << "\n  got: " << ids_str(got);
    }
  }
  std::printf("[ vocab    ] %-16s %zu/%zu cases pass (%s)\n", e.name.c_str(), pass, cases.size(), origin.c_str());
  EXPECT_EQ(pass, cases.size());
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TokenizerVectors, ::testing::ValuesIn(list_vocabs()),
                         [](const ::testing::TestParamInfo<VocabEntry>& i) { return safe_name(i.param.name); });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(TokenizerVectors);
