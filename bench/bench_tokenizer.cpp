// Tokenizer encode throughput (MB/s of input text) on English-like text.
//   llama-bpe: fixtures/vocab/ggml-vocab-llama-bpe.gguf, or built from fixtures/tokenizers/llama3/tokenizer.json
//   llama-spm: fixtures/vocab/ggml-vocab-llama-spm.gguf
//   gemma-4:   fixtures/vocab/ggml-vocab-gemma-4.gguf, or built from fixtures/tokenizers/gemma3/tokenizer.json
//   llama3 json: always built from fixtures/tokenizers/llama3/tokenizer.json, encoding 4 MB of English text (the
//                English cases of the llama-bpe test inputs plus generated prose, repeated) - the issue-4 target
// Fixtures are found through $VIREO_FIXTURES or ../shared/fixtures beside the source tree.
#include <benchmark/benchmark.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>

#include "gguf/gguf.h"
#include "tokenizer/hf_import.h"
#include "tokenizer/tokenizer.h"

namespace fs = std::filesystem;
using vireo::GgufFile;
using vireo::Tokenizer;

namespace {

fs::path fixtures() {
  if (const char* e = std::getenv("VIREO_FIXTURES")) return e;
  return fs::path(__FILE__).parent_path().parent_path().parent_path() / "shared" / "fixtures";
}

// Deterministic English-like prose: common words, capitalised sentences, punctuation, numbers, paragraphs.
std::string english_text(size_t bytes) {
  static const char* kWords[] = {
      "the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on", "not",
      "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "had", "they", "you", "were",
      "their", "one", "all", "we", "can", "her", "has", "there", "been", "if", "more", "when", "will", "would",
      "who", "so", "no", "time", "people", "year", "way", "day", "man", "thing", "woman", "life", "child", "world",
      "school", "state", "family", "student", "group", "country", "problem", "hand", "part", "place", "case",
      "week", "company", "system", "program", "question", "work", "government", "number", "night", "point",
      "home", "water", "room", "mother", "area", "money", "story", "fact", "month", "lot", "right", "study",
      "book", "eye", "job", "word", "business", "issue", "side", "kind", "head", "house", "service", "friend",
      "father", "power", "hour", "game", "line", "end", "member", "law", "car", "city", "community", "name",
      "president", "team", "minute", "idea", "kid", "body", "information", "back", "parent", "face", "others",
      "level", "office", "door", "health", "person", "art", "war", "history", "party", "result", "change",
      "morning", "reason", "research", "girl", "guy", "moment", "air", "teacher", "force", "education",
      "understanding", "developed", "important", "beautiful", "unexpectedly", "tokenization", "performance",
      "measured", "between", "through", "because", "although", "however", "therefore", "quickly", "carefully",
      "don't", "it's", "we'll", "they're", "I'm", "couldn't", "river", "mountain", "forest", "library", "engine"};
  constexpr size_t kN = sizeof(kWords) / sizeof(kWords[0]);
  std::mt19937 rng(1234);
  std::string s;
  s.reserve(bytes + 64);
  bool cap = true;
  while (s.size() < bytes) {
    std::string w = kWords[rng() % kN];
    if (cap) w[0] = char(std::toupper(static_cast<unsigned char>(w[0])));
    cap = false;
    s += w;
    unsigned r = rng() % 100;
    if (r < 6) {
      s += ". ";
      cap = true;
    } else if (r < 10) {
      s += ", ";
    } else if (r < 11) {
      s += " " + std::to_string(rng() % 100000) + " ";
    } else if (r < 12) {
      s += ".\n\n";
      cap = true;
    } else {
      s += ' ';
    }
  }
  s.resize(bytes);
  return s;
}

const Tokenizer* llama_bpe() {
  static std::unique_ptr<GgufFile> f;
  static std::unique_ptr<Tokenizer> t;
  static bool tried = false;
  if (!tried) {
    tried = true;
    try {
      fs::path g = fixtures() / "vocab" / "ggml-vocab-llama-bpe.gguf";
      fs::path j = fixtures() / "tokenizers" / "llama3" / "tokenizer.json";
      if (fs::exists(g))
        f = std::make_unique<GgufFile>(GgufFile::open(g.string()));
      else if (fs::exists(j))
        f = vireo::open_hf_tokenizer_as_gguf(j.string(), "gpt2", "llama-bpe");
      if (f) t = Tokenizer::from_gguf(*f);
    } catch (...) {
      t.reset();
    }
  }
  return t.get();
}

const Tokenizer* llama_spm() {
  static std::unique_ptr<GgufFile> f;
  static std::unique_ptr<Tokenizer> t;
  static bool tried = false;
  if (!tried) {
    tried = true;
    try {
      fs::path g = fixtures() / "vocab" / "ggml-vocab-llama-spm.gguf";
      if (fs::exists(g)) {
        f = std::make_unique<GgufFile>(GgufFile::open(g.string()));
        t = Tokenizer::from_gguf(*f);
      }
    } catch (...) {
      t.reset();
    }
  }
  return t.get();
}

const Tokenizer* gemma4() {
  static std::unique_ptr<GgufFile> f;
  static std::unique_ptr<Tokenizer> t;
  static bool tried = false;
  if (!tried) {
    tried = true;
    try {
      fs::path g = fixtures() / "vocab" / "ggml-vocab-gemma-4.gguf";
      fs::path j = fixtures() / "tokenizers" / "gemma3" / "tokenizer.json";
      if (fs::exists(g))
        f = std::make_unique<GgufFile>(GgufFile::open(g.string()));
      else if (fs::exists(j))
        f = vireo::open_hf_tokenizer_as_gguf(j.string(), "gemma4", "");
      if (f) t = Tokenizer::from_gguf(*f);
    } catch (...) {
      t.reset();
    }
  }
  return t.get();
}

void run_encode(benchmark::State& state, const Tokenizer* tok) {
  if (!tok) {
    state.SkipWithError("vocab fixture not found");
    return;
  }
  const std::string text = english_text(size_t(state.range(0)));
  size_t n_tokens = 0;
  for (auto _ : state) {
    auto ids = tok->encode(text, false, false);
    n_tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(text.size()));
  state.counters["tokens"] = double(n_tokens);
  state.counters["bytes/token"] = n_tokens ? double(text.size()) / double(n_tokens) : 0.0;
}

// The Llama 3 tokenizer as imported from fixtures/tokenizers/llama3/tokenizer.json (never the GGUF).
const Tokenizer* llama3_json() {
  static std::unique_ptr<GgufFile> f;
  static std::unique_ptr<Tokenizer> t;
  static bool tried = false;
  if (!tried) {
    tried = true;
    try {
      fs::path j = fixtures() / "tokenizers" / "llama3" / "tokenizer.json";
      if (fs::exists(j)) {
        f = vireo::open_hf_tokenizer_as_gguf(j.string(), "gpt2", "llama-bpe");
        t = Tokenizer::from_gguf(*f);
      }
    } catch (...) {
      t.reset();
    }
  }
  return t.get();
}

// English text of `bytes` bytes: the English test inputs of fixtures/vocab/ggml-vocab-llama-bpe.gguf.inp (cases
// that are mostly ASCII letters), repeated; english_text() when the file is absent.
std::string fixture_english_text(size_t bytes) {
  std::string a;
  {
    std::FILE* fp = std::fopen((fixtures() / "vocab" / "ggml-vocab-llama-bpe.gguf.inp").string().c_str(), "rb");
    if (fp) {
      char buf[65536];
      size_t k;
      while ((k = std::fread(buf, 1, sizeof buf, fp)) > 0) a.append(buf, k);
      std::fclose(fp);
    }
  }
  static const std::string kSep = "\n__ggml_vocab_test__\n";
  std::string unit;
  size_t pos = 0;
  while (pos < a.size()) {
    size_t j = a.find(kSep, pos);
    if (j == std::string::npos) j = a.size();
    std::string c = a.substr(pos, j - pos);
    pos = j + kSep.size();
    size_t letters = 0;
    for (unsigned char ch : c) letters += std::isalpha(ch) || ch == ' ';
    if (c.size() >= 8 && letters * 10 >= c.size() * 8) unit += c + "\n";
  }
  if (unit.size() < 256) return english_text(bytes);
  // Mix in generated prose so the text is not one short loop.
  unit += english_text(64 << 10);
  std::string s;
  s.reserve(bytes + unit.size());
  while (s.size() < bytes) s += unit;
  s.resize(bytes);
  return s;
}

void BM_TokenizerEncode_Llama3Json(benchmark::State& state) {
  const Tokenizer* tok = llama3_json();
  if (!tok) {
    state.SkipWithError("fixtures/tokenizers/llama3/tokenizer.json not found");
    return;
  }
  const std::string text = fixture_english_text(size_t(state.range(0)));
  size_t n_tokens = 0;
  for (auto _ : state) {
    auto ids = tok->encode(text, false, false);
    n_tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(text.size()));
  state.counters["tokens"] = double(n_tokens);
  state.counters["bytes/token"] = n_tokens ? double(text.size()) / double(n_tokens) : 0.0;
}

void BM_TokenizerEncode_LlamaBpe(benchmark::State& state) { run_encode(state, llama_bpe()); }
void BM_TokenizerEncode_LlamaSpm(benchmark::State& state) { run_encode(state, llama_spm()); }
void BM_TokenizerEncode_Gemma4(benchmark::State& state) { run_encode(state, gemma4()); }

void BM_TokenizerDecode_LlamaBpe(benchmark::State& state) {
  const Tokenizer* tok = llama_bpe();
  if (!tok) {
    state.SkipWithError("vocab fixture not found");
    return;
  }
  const std::string text = english_text(size_t(state.range(0)));
  const auto ids = tok->encode(text, false, false);
  for (auto _ : state) {
    std::string s = tok->decode(ids);
    benchmark::DoNotOptimize(s.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(text.size()));
}

}  // namespace

BENCHMARK(BM_TokenizerEncode_LlamaBpe)->Arg(4 << 10)->Arg(1 << 20)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_TokenizerEncode_LlamaSpm)->Arg(4 << 10)->Arg(1 << 20)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_TokenizerEncode_Gemma4)->Arg(4 << 10)->Arg(1 << 20)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_TokenizerEncode_Llama3Json)->Arg(4 << 20)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_TokenizerDecode_LlamaBpe)->Arg(1 << 20)->Unit(benchmark::kMicrosecond);
