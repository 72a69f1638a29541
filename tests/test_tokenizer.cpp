// Tokenizer behaviour beyond the fixture vectors: errors, special tokens, decoding, streaming, round trips.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "fixture_files.h"
#include "gguf/gguf.h"
#include "tokenizer/hf_import.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer.h"

namespace fs = std::filesystem;
using namespace vireo;

namespace {

const fs::path kFix = fs::path(VIREO_FIXTURES);

// Loaded vocabularies, shared by the tests of this file. Returns nullptr when the fixture is absent.
const Tokenizer* vocab(const std::string& name) {
  struct Entry {
    std::unique_ptr<GgufFile> f;
    std::unique_ptr<Tokenizer> t;
  };
  static std::map<std::string, Entry> cache;
  auto it = cache.find(name);
  if (it != cache.end()) return it->second.t.get();
  Entry e;
  fs::path g = kFix / "vocab" / ("ggml-vocab-" + name + ".gguf");
  static const std::map<std::string, std::array<const char*, 3>> hf = {
      {"llama-bpe", {"llama3", "gpt2", "llama-bpe"}},
      {"qwen2", {"qwen3", "gpt2", "qwen2"}},
      {"gemma-4", {"gemma3", "gemma4", ""}},
  };
  if (fs::exists(g)) {
    e.f = std::make_unique<GgufFile>(GgufFile::open(g.string()));
  } else if (auto h = hf.find(name); h != hf.end()) {
    fs::path j = kFix / "tokenizers" / h->second[0] / "tokenizer.json";
    if (fs::exists(j)) e.f = open_hf_tokenizer_as_gguf(j.string(), h->second[1], h->second[2]);
  }
  if (e.f) e.t = Tokenizer::from_gguf(*e.f);
  const Tokenizer* r = e.t.get();
  cache.emplace(name, std::move(e));
  return r;
}

#define VOCAB_OR_SKIP(var, name)                                          \
  const Tokenizer* var = vocab(name);                                     \
  if (!var) GTEST_SKIP() << "vocab fixture " << (name) << " not available"

std::vector<std::string> vector_inputs(const std::string& name) {
  fs::path p = kFix / "vocab" / ("ggml-vocab-" + name + ".gguf.inp");
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  std::string a = ss.str();
  static const std::string kSep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> out;
  size_t pos = 0;
  for (size_t j; (j = a.find(kSep, pos)) != std::string::npos; pos = j + kSep.size()) out.push_back(a.substr(pos, j - pos));
  if (pos < a.size()) out.push_back(a.substr(pos));
  return out;
}

const std::vector<std::string> kAllVocabs = {"llama-spm", "phi-3",     "gpt-2", "starcoder", "deepseek-coder",
                                             "llama-bpe", "qwen2",     "gemma-4", "gpt-neox"};

// Extra texts for round trips: multi-byte characters that need byte fallback, odd whitespace, long runs.
const std::vector<std::string> kExtraTexts = {
    "🦙🦙 llama",  "\xE2\x80\x8B zero width",  "tab\tand\r\nCRLF", "日本語のテキストです。", "  leading and trailing  ",
    "a\n\n\n\nb",   "x" + std::string(300, ' ') + "y", "Ünïcödé façade naïve", "emoji 👩‍👩‍👧‍👦 family", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math"};

GgufFile gguf_from(GgufWriter& w) {
  return GgufFile(ByteSource::from_buffer(w.write_to_memory([](size_t, std::vector<uint8_t>&) {})));
}

GgufValue str_array(std::vector<std::string> v) {
  GgufArray a{GgufType::STRING, {}};
  for (auto& s : v) a.items.push_back({GgufType::STRING, std::move(s)});
  return {GgufType::ARRAY, std::move(a)};
}

std::string error_of(const GgufFile& f) {
  try {
    Tokenizer::from_gguf(f);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "<no error>";
}

}  // namespace

// ---- errors ----

TEST(Tokenizer, ErrorWithoutTokenizerMetadata) {
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_u32("llama.block_count", 2);
  GgufFile f = gguf_from(w);
  std::string msg = error_of(f);
  EXPECT_NE(msg.find("no tokenizer metadata"), std::string::npos) << msg;
  EXPECT_NE(msg.find("tokenizer.ggml.model"), std::string::npos) << msg;
}

TEST(Tokenizer, ErrorOnUnsupportedModel) {
  for (const char* m : {"bert", "t5", "rwkv", "something"}) {
    GgufWriter w;
    w.set_string("tokenizer.ggml.model", m);
    w.set("tokenizer.ggml.tokens", str_array({"a", "b"}));
    GgufFile f = gguf_from(w);
    std::string msg = error_of(f);
    EXPECT_NE(msg.find(std::string("unsupported tokenizer model '") + m + "'"), std::string::npos) << msg;
  }
}

TEST(Tokenizer, ErrorOnBadVocab) {
  {
    GgufWriter w;  // no tokens
    w.set_string("tokenizer.ggml.model", "llama");
    GgufFile f = gguf_from(w);
    EXPECT_NE(error_of(f).find("tokenizer.ggml.tokens"), std::string::npos) << error_of(f);
  }
  {
    GgufWriter w;  // scores of the wrong length
    w.set_string("tokenizer.ggml.model", "llama");
    w.set("tokenizer.ggml.tokens", str_array({"<unk>", "<s>", "</s>", "a"}));
    GgufArray sc{GgufType::F32, {{GgufType::F32, 0.0}}};
    w.set("tokenizer.ggml.scores", {GgufType::ARRAY, sc});
    GgufFile f = gguf_from(w);
    EXPECT_NE(error_of(f).find("scores"), std::string::npos) << error_of(f);
  }
  {
    GgufWriter w;  // gpt2 without merges
    w.set_string("tokenizer.ggml.model", "gpt2");
    w.set("tokenizer.ggml.tokens", str_array({"a", "b"}));
    GgufFile f = gguf_from(w);
    EXPECT_NE(error_of(f).find("tokenizer.ggml.merges"), std::string::npos) << error_of(f);
  }
  {
    GgufWriter w;  // unknown pre-tokenizer
    w.set_string("tokenizer.ggml.model", "gpt2");
    w.set_string("tokenizer.ggml.pre", "no-such-pre");
    w.set("tokenizer.ggml.tokens", str_array({"a", "b", "ab"}));
    w.set("tokenizer.ggml.merges", str_array({"a b"}));
    GgufFile f = gguf_from(w);
    EXPECT_NE(error_of(f).find("unsupported pre-tokenizer 'no-such-pre'"), std::string::npos) << error_of(f);
  }
  {
    GgufWriter w;  // bos out of range
    w.set_string("tokenizer.ggml.model", "llama");
    w.set("tokenizer.ggml.tokens", str_array({"<unk>", "<s>", "</s>"}));
    w.set_u32("tokenizer.ggml.bos_token_id", 99);
    GgufFile f = gguf_from(w);
    EXPECT_NE(error_of(f).find("out of range"), std::string::npos) << error_of(f);
  }
}

TEST(Tokenizer, AllPreTokenizersCompileAndCoverText) {
  const std::string text =
      "Hello World's 12345 it's   spaced\n\n\tTabs 🦙 ÄÖÜ café 日本語 한국어 !!?? x=a+b; CamelCaseWord 3.14159\r\n end ";
  for (const char* pre : {"default", "llama3", "llama-bpe", "qwen2", "gpt-2", "starcoder", "falcon", "deepseek-coder",
                          "deepseek-llm", "deepseek-v3", "gpt-4o", "tekken", "refact", "command-r", "smollm", "olmo",
                          "bloom", "viking", "phi-2", "mpt", "stablelm2", "chatglm-bpe", "dbrx", "exaone"}) {
    SCOPED_TRACE(pre);
    Pretokenizer p(Pretokenizer::patterns_for(pre));
    std::vector<Span> pieces;
    p.split(text, pieces);
    std::string joined;
    size_t last = 0;
    for (const Span& s : pieces) {
      EXPECT_EQ(s.begin, last);
      EXPECT_LT(s.begin, s.end);
      joined += text.substr(s.begin, s.end - s.begin);
      last = s.end;
    }
    EXPECT_EQ(joined, text);
  }
}

TEST(Tokenizer, PreTokenizerSplits) {
  auto split = [](const char* pre, const std::string& text) {
    Pretokenizer p(Pretokenizer::patterns_for(pre));
    std::vector<Span> pieces;
    p.split(text, pieces);
    std::vector<std::string> r;
    for (const Span& s : pieces) r.push_back(text.substr(s.begin, s.end - s.begin));
    return r;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(split("gpt-2", "Hello world's  end"), (V{"Hello", " world", "'s", " ", " end"}));
  EXPECT_EQ(split("llama3", "I'M 12345 ok\n\n x"), (V{"I", "'M", " ", "123", "45", " ok", "\n\n", " x"}));
  EXPECT_EQ(split("qwen2", "a 123"), (V{"a", " ", "1", "2", "3"}));
  EXPECT_EQ(split("starcoder", "x 42"), (V{"x", " ", "4", "2"}));
  EXPECT_EQ(split("deepseek-coder", "ab, 12\ncd"), (V{"ab", ",", " ", "1", "2", "\n", "cd"}));
  EXPECT_EQ(split("gpt-4o", "HelloWorld's"), (V{"Hello", "World's"}));
}

// ---- encoding details ----

TEST(Tokenizer, SpmBasics) {
  VOCAB_OR_SKIP(t, "llama-spm");
  EXPECT_EQ(t->model(), TokenizerModel::Spm);
  EXPECT_EQ(t->bos(), 1);
  EXPECT_EQ(t->eos(), 2);
  EXPECT_TRUE(t->add_bos_default());
  EXPECT_TRUE(t->add_space_prefix());
  EXPECT_EQ(t->encode("Hello world", true, false), (std::vector<int32_t>{1, 15043, 3186}));
  EXPECT_EQ(t->token_text(15043), "\xE2\x96\x81Hello");
  EXPECT_EQ(t->token_bytes(15043), " Hello");
  EXPECT_EQ(t->token_bytes(t->find_token("<0x41>")), "A");
  EXPECT_TRUE(t->is_byte(t->find_token("<0x41>")));
  EXPECT_EQ(t->token_bytes(1), "");
  EXPECT_EQ(t->token_bytes(1, true), "<s>");
  EXPECT_TRUE(t->is_control(1));
  EXPECT_TRUE(t->is_eog(2));
  EXPECT_FALSE(t->is_eog(15043));
  EXPECT_EQ(t->decode({1, 15043, 3186, 2}), "Hello world");
  // The dummy-prefix space is only dropped when nothing was emitted before it (as llama.cpp does).
  EXPECT_EQ(t->decode({1, 15043, 3186, 2}, true), "<s> Hello world</s>");
}

TEST(Tokenizer, SpmSpecialTokenParsing) {
  VOCAB_OR_SKIP(t, "llama-spm");
  // Control tokens are matched only with parse_special; the dummy prefix follows a special token.
  auto a = t->encode("<s>Hello", false, true);
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(a[0], 1);
  EXPECT_EQ(std::vector<int32_t>(a.begin() + 1, a.end()), t->encode("Hello", false, false));
  auto b = t->encode("<s>Hello", false, false);
  EXPECT_EQ(std::count(b.begin(), b.end(), 1), 0);
  EXPECT_EQ(t->decode(b), "<s>Hello");
}

TEST(Tokenizer, BpeSpecialTokens) {
  VOCAB_OR_SKIP(t, "qwen2");
  const int32_t im_start = t->find_token("<|im_start|>"), im_end = t->find_token("<|im_end|>");
  const int32_t think = t->find_token("<think>");
  ASSERT_GE(im_start, 0);
  ASSERT_GE(im_end, 0);
  ASSERT_GE(think, 0);
  EXPECT_TRUE(t->is_control(im_start));
  EXPECT_TRUE(t->is_eog(im_end));
  EXPECT_FALSE(t->is_eog(im_start));
  auto ids = t->encode("<|im_start|>user\nhi<|im_end|>", false, true);
  EXPECT_EQ(ids.front(), im_start);
  EXPECT_EQ(ids.back(), im_end);
  auto plain = t->encode("<|im_start|>user", false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), im_start), 0);
  EXPECT_EQ(t->decode(plain), "<|im_start|>user");
  // User-defined tokens are matched even without parse_special, and decode to their text.
  auto th = t->encode("a<think>b", false, false);
  EXPECT_EQ(std::count(th.begin(), th.end(), think), 1);
  EXPECT_EQ(t->decode(th), "a<think>b");
  EXPECT_EQ(t->decode(ids), "user\nhi");
  EXPECT_EQ(t->decode(ids, true), "<|im_start|>user\nhi<|im_end|>");
}

TEST(Tokenizer, Gpt2ByteLevel) {
  VOCAB_OR_SKIP(t, "gpt-2");
  EXPECT_EQ(t->model(), TokenizerModel::Bpe);
  const int32_t hello = t->find_token("\xC4\xA0hello");  // "Ġhello"
  ASSERT_GE(hello, 0);
  EXPECT_EQ(t->token_bytes(hello), " hello");
  EXPECT_TRUE(t->is_eog(50256));
  EXPECT_FALSE(t->add_bos_default());
  // Bytes that are not UTF-8 still round-trip through the byte-level alphabet.
  const std::string bad = "ok \xFF\xFE\xC3 end\x80";
  EXPECT_EQ(t->decode(t->encode(bad, false, false)), bad);
}

TEST(Tokenizer, Gemma4Basics) {
  VOCAB_OR_SKIP(t, "gemma-4");
  EXPECT_EQ(t->model(), TokenizerModel::Gemma4);
  EXPECT_TRUE(t->add_bos_default());
  EXPECT_EQ(t->bos(), 2);
  EXPECT_EQ(t->encode("Hello world", true, false), (std::vector<int32_t>{2, 9259, 1902}));
  EXPECT_TRUE(t->is_eog(t->find_token("<end_of_turn>")));
  auto ids = t->encode("<start_of_turn>user\nHi<end_of_turn>", false, true);
  EXPECT_EQ(ids.front(), 105);
  EXPECT_EQ(ids.back(), 106);
  // A character outside the vocab falls back to <0xNN> byte tokens and decodes back.
  const std::string rare = "\xF0\x9F\xAA\xBF\xF3\xA0\x80\x81";  // U+1FABF, U+E0001
  auto r = t->encode(rare, false, false);
  EXPECT_EQ(t->decode(r), rare);
}

TEST(Tokenizer, LlamaBpeEndOfTurn) {
  VOCAB_OR_SKIP(t, "llama-bpe");
  EXPECT_EQ(t->bos(), 128000);
  EXPECT_TRUE(t->add_bos_default());
  EXPECT_TRUE(t->is_eog(t->find_token("<|eot_id|>")));
  EXPECT_TRUE(t->is_eog(t->find_token("<|end_of_text|>")));
  EXPECT_EQ(t->encode("Hello", true, false), (std::vector<int32_t>{128000, 9906}));
}

// ---- round trips and streaming over every vocab ----

TEST(Tokenizer, DecodeEncodeRoundTrip) {
  int vocabs = 0;
  for (const std::string& name : kAllVocabs) {
    const Tokenizer* t = vocab(name);
    if (!t) continue;
    ++vocabs;
    std::vector<std::string> texts = vector_inputs(name);
    texts.insert(texts.end(), kExtraTexts.begin(), kExtraTexts.end());
    for (const std::string& x : texts) {
      EXPECT_EQ(t->decode(t->encode(x, false, false)), x) << name << ": '" << x << "'";
      EXPECT_EQ(t->decode(t->encode(x, true, false)), x) << name << " (with BOS): '" << x << "'";
    }
  }
  if (vocabs == 0) GTEST_SKIP() << "no vocab fixtures found (../shared/fixtures)";
}

TEST(Tokenizer, StreamDecoderEmitsOnlyValidUtf8) {
  int vocabs = 0;
  for (const std::string& name : kAllVocabs) {
    const Tokenizer* t = vocab(name);
    if (!t) continue;
    ++vocabs;
    std::vector<std::string> texts = vector_inputs(name);
    texts.insert(texts.end(), kExtraTexts.begin(), kExtraTexts.end());
    for (const std::string& x : texts) {
      auto ids = t->encode(x, true, false);
      StreamDecoder sd(*t);
      std::string all;
      for (int32_t id : ids) {
        std::string piece = sd.push(id);
        EXPECT_TRUE(is_valid_utf8(piece)) << name << ": token " << id << " of '" << x << "'";
        all += piece;
      }
      std::string rest = sd.flush();
      EXPECT_TRUE(is_valid_utf8(rest));
      all += rest;
      EXPECT_EQ(all, t->decode(ids)) << name << ": '" << x << "'";
    }
  }
  if (vocabs == 0) GTEST_SKIP() << "no vocab fixtures found (../shared/fixtures)";
}

// A control token in the middle of a stream: shown (its text) or hidden as asked, and every piece stays valid
// UTF-8 around multi-byte characters (byte fallback and byte-level vocabs alike).
TEST(Tokenizer, StreamDecoderShowsOrHidesControlTokens) {
  int vocabs = 0;
  for (const std::string& name : kAllVocabs) {
    const Tokenizer* t = vocab(name);
    if (!t) continue;
    int32_t ctl = t->eos() >= 0 && t->is_control(t->eos()) ? t->eos() : -1;
    for (int32_t i = 0; ctl < 0 && i < t->n_vocab(); ++i)
      if (t->is_control(i) && !t->token_text(i).empty()) ctl = i;
    if (ctl < 0) continue;
    ++vocabs;
    const std::string ctl_text = t->token_text(ctl);
    std::vector<int32_t> ids = t->encode("Hello ð¦ cafÃ©", false, false);
    ids.push_back(ctl);
    for (int32_t x : t->encode("æ¥æ¬èª ð©âð§ end", false, false))
      ids.push_back(x);
    for (bool show : {false, true}) {
      StreamDecoder sd(*t, show);
      std::string all;
      for (int32_t id : ids) {
        std::string piece = sd.push(id);
        EXPECT_TRUE(is_valid_utf8(piece)) << name << ": token " << id;
        all += piece;
      }
      all += sd.flush();
      EXPECT_EQ(all, t->decode(ids, show)) << name << " show_special=" << show;
      EXPECT_EQ(all.find(ctl_text) != std::string::npos, show) << name << " show_special=" << show << ": " << all;
      EXPECT_NE(all.find("ð¦"), std::string::npos) << name;
      EXPECT_NE(all.find("æ¥æ¬èª"), std::string::npos) << name;
    }
  }
  if (vocabs == 0) GTEST_SKIP() << "no vocab fixtures with a control token found";
}

TEST(Tokenizer, StreamDecoderHoldsSplitCharacters) {
  VOCAB_OR_SKIP(t, "llama-spm");
  // The llama emoji is not in this vocab: it is four <0xNN> byte tokens.
  auto ids = t->encode("\xF0\x9F\xA6\x99", false, false);
  ASSERT_GE(ids.size(), 4u);
  StreamDecoder sd(*t);
  std::vector<std::string> outs;
  for (int32_t id : ids) outs.push_back(sd.push(id));
  for (size_t i = 0; i + 1 < outs.size(); ++i)
    EXPECT_TRUE(outs[i].empty() || is_valid_utf8(outs[i])) << i;
  EXPECT_EQ(outs.back(), "\xF0\x9F\xA6\x99");
  EXPECT_EQ(sd.flush(), "");

  // Broken sequences come out as U+FFFD, never as raw invalid bytes.
  StreamDecoder bad(*t);
  std::string got = bad.push(t->find_token("<0xF0>"));
  EXPECT_EQ(got, "");
  got += bad.push(t->find_token("<0x41>"));  // 'A' cannot continue the sequence
  got += bad.flush();
  EXPECT_EQ(got, "\xEF\xBF\xBD" "A");
  StreamDecoder tail(*t);
  EXPECT_EQ(tail.push(t->find_token("<0xE2>")), "");
  EXPECT_EQ(tail.flush(), "\xEF\xBF\xBD");
}

TEST(Tokenizer, ConcurrentEncodeIsDeterministic) {
  VOCAB_OR_SKIP(t, "gpt-2");
  std::string text;
  for (int i = 0; i < 200; ++i) text += "The quick brown fox " + std::to_string(i) + " jumps over the lazy dog.\n";
  const auto want = t->encode(text, false, false);
  std::vector<std::vector<int32_t>> got(4);
  std::vector<std::thread> th;
  for (int k = 0; k < 4; ++k)
    th.emplace_back([&, k] {
      for (int r = 0; r < 5; ++r) got[size_t(k)] = t->encode(text, false, false);
    });
  for (auto& x : th) x.join();
  for (const auto& g : got) EXPECT_EQ(g, want);
}

TEST(Tokenizer, LongInputMatchesPiecewiseEncoding) {
  // The per-call word cache and word splitting must not change results: a long text encodes to the
  // concatenation of its lines' encodings when every line starts a new word.
  for (const char* name : {"llama-spm", "gpt-2", "gemma-4"}) {
    const Tokenizer* t = vocab(name);
    if (!t) continue;
    std::string line = " the cat sat on the mat, and the dog (a big one) sat too. ";
    std::string text;
    std::vector<int32_t> want;
    for (int i = 0; i < 100; ++i) {
      std::string l = line + std::to_string(i) + "\n";
      text += l;
      // With a dummy prefix, encode(" x") of a later line is what encode("x") gives alone.
      auto ids = t->encode(i > 0 && t->add_space_prefix() ? l.substr(1) : l, false, false);
      want.insert(want.end(), ids.begin(), ids.end());
    }
    EXPECT_EQ(t->encode(text, false, false), want) << name;
  }
}

TEST(Tokenizer, HfImportErrors) {
  EXPECT_THROW(hf_tokenizer_to_gguf("/nonexistent/tokenizer.json", "gpt2", "llama3"), std::runtime_error);
  fs::path j = kFix / "tokenizers" / "llama3" / "tokenizer.json";
  if (fs::exists(j)) EXPECT_THROW(hf_tokenizer_to_gguf(j.string(), "bert", ""), std::runtime_error);
}

TEST(Tokenizer, Stories260KGolden) {
  fs::path g = kFix / "models" / "stories260K-f32.gguf";
  fs::path toks = kFix / "golden" / "stories260K_once_upon_a_time_64.tokens.txt";
  fs::path text = kFix / "golden" / "llamacpp_stories260K-f32_once_upon_a_time_n64.txt";
  if (!fs::exists(g) || !fs::exists(toks)) GTEST_SKIP() << "stories260K fixtures not available";
  GgufFile f = GgufFile::open(g.string());
  auto t = Tokenizer::from_gguf(f);
  EXPECT_EQ(t->n_vocab(), 512);
  EXPECT_EQ(t->pad(), -1);  // stored as 0xFFFFFFFF: "none"
  EXPECT_EQ(t->encode("Once upon a time", t->add_bos_default()), (std::vector<int32_t>{1, 403, 407, 261, 378}));

  const std::vector<int32_t> seq = test_files::read_token_sequence(toks.string());
  ASSERT_FALSE(seq.empty());
  const std::string dec = t->decode(seq);
  EXPECT_EQ(dec.rfind("Once upon a time, there was a little girl named Lily.", 0), 0u) << dec;
  if (fs::exists(text)) {
    std::ifstream tf(text, std::ios::binary);
    std::stringstream ss;
    ss << tf.rdbuf();
    std::string want = ss.str();
    while (!want.empty() && want.back() == '\n') want.pop_back();
    // llama.cpp printed "<s> Once ..." (specials shown) for a longer run: our text is a prefix of it.
    const std::string shown = t->decode(seq, true);
    EXPECT_EQ(want.rfind(shown, 0), 0u) << shown;
    EXPECT_GT(shown.size(), 150u);
  }
  // Streaming gives the same text.
  StreamDecoder sd(*t);
  std::string streamed;
  for (int32_t id : seq) streamed += sd.push(id);
  streamed += sd.flush();
  EXPECT_EQ(streamed, dec);
}
