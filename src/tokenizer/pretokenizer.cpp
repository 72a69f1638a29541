#include "tokenizer/pretokenizer.h"

#if !defined(VIREO_NO_PCRE2)
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#endif

#include <stdexcept>

namespace vireo {
namespace {

// The split expressions below are the published pre-tokenizer regexes of each model family, written in PCRE2
// syntax (\x{...} for code points outside ASCII).

// GPT-2: contractions, optional-space words / numbers / other runs, whitespace.
constexpr const char* kGpt2 =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Llama 3 (tiktoken cl100k style): case-insensitive contractions, numbers in groups of up to three.
constexpr const char* kLlama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|)"
    R"(\s*[\r\n]+|\s+(?!\S)|\s+)";

// Qwen2: as Llama 3 but single digits.
constexpr const char* kQwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|)"
    R"(\s*[\r\n]+|\s+(?!\S)|\s+)";

// GPT-4o / o200k.
constexpr const char* kGpt4o =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|)"
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|)"
    R"(\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Mistral Tekken.
constexpr const char* kTekken =
    R"([^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|)"
    R"([^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|)"
    R"(\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// BLOOM / Poro / GPT-3 Finnish.
constexpr const char* kBloom = R"( ?[^(\s|.,!?\x{2026}\x{3002}\x{FF0C}\x{3001}\x{0964}\x{06D4}\x{060C})]+)";

// CJK ideographs, the U+0800..U+4E00 block range and Hangul (DeepSeek).
constexpr const char* kDeepseekCjk = R"([\x{4E00}-\x{9FA5}\x{0800}-\x{4E00}\x{AC00}-\x{D7FF}]+)";

// DeepSeek LLM: cased letters (Unicode LC) run with optional leading space.
constexpr const char* kDeepseekLlmLetters =
    R"(\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293}\x{295}-\x{2AF})"
    R"(\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\x{388}-\x{38A}\x{38C}\x{38E}-\x{3A1})"
    R"(\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556}\x{10A0}-\x{10C5}\x{13A0}-\x{13F5})"
    R"(\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF}\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A})"
    R"(\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D}\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B})"
    R"(\x{1F5D}\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}\x{1FC6}-\x{1FCC})"
    R"(\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}\x{1FF6}-\x{1FFC}\x{2102}\x{2107})"
    R"(\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134})"
    R"(\x{2139}\x{213C}-\x{213F}\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184}\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4})"
    R"(\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D}\x{A680}-\x{A69B}\x{A722}-\x{A76F}\x{A771}-\x{A787})"
    R"(\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A})"
    R"(\x{10400}-\x{1044F}\x{104B0}-\x{104D3}\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2})"
    R"(\x{118A0}-\x{118DF}\x{1E900}-\x{1E943}]+)";
constexpr const char* kDeepseekLlmPunct =
    R"(\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+)";

// DeepSeek V3 main expression.
constexpr const char* kDeepseek3 =
    R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+|)"
    R"( ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

#if !defined(VIREO_NO_PCRE2)
std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof(buf));
  return reinterpret_cast<const char*>(buf);
}

// Per-thread match scratch: match data and a JIT stack big enough for long whitespace runs.
struct MatchScratch {
  pcre2_match_data* md = nullptr;
  pcre2_match_context* mctx = nullptr;
  pcre2_jit_stack* stack = nullptr;
  MatchScratch() {
    md = pcre2_match_data_create(32, nullptr);
    mctx = pcre2_match_context_create(nullptr);
    stack = pcre2_jit_stack_create(64 * 1024, 8 * 1024 * 1024, nullptr);
    if (mctx && stack) pcre2_jit_stack_assign(mctx, nullptr, stack);
    if (!md || !mctx) throw std::runtime_error("tokenizer: out of memory creating PCRE2 match data");
  }
  ~MatchScratch() {
    if (stack) pcre2_jit_stack_free(stack);
    if (mctx) pcre2_match_context_free(mctx);
    if (md) pcre2_match_data_free(md);
  }
};

MatchScratch& scratch() {
  thread_local MatchScratch s;
  return s;
}
#endif  // !VIREO_NO_PCRE2

}  // namespace

std::vector<std::string> Pretokenizer::patterns_for(const std::string& pre) {
  auto is = [&](std::initializer_list<const char*> names) {
    for (const char* n : names)
      if (pre == n) return true;
    return false;
  };
  if (pre.empty() || pre == "default")
    return {R"([\p{P}\$\+<=>\^~\|]+)", kGpt2, R"(\p{N}+)", R"([0-9][0-9][0-9])"};
  if (is({"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "dbrx",
          "smaug-bpe", "chatglm-bpe"}))
    return {kLlama3};
  if (is({"qwen2", "deepseek-r1-qwen", "megrez", "stablelm2", "hunyuan"})) return {kQwen2};
  if (is({"gpt-2", "gpt2", "phi-2", "jina-es", "jina-de", "jina-v1-en", "jina-v2-es", "jina-v2-de",
          "jina-v2-code", "roberta-bpe", "gigachat", "mpt", "olmo", "jais", "trillion"}))
    return {kGpt2};
  if (is({"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"}))
    return {R"(\p{N})", kGpt2};
  if (pre == "falcon") return {R"([\p{P}\$\+<=>\^~\|`]+)", kGpt2, R"([0-9][0-9][0-9])"};
  if (pre == "deepseek-coder")
    return {R"([\r\n])", R"(\s?\p{L}+)", R"(\s?\p{P}+)", kDeepseekCjk, R"(\p{N})"};
  if (pre == "deepseek-llm")
    return {R"([\r\n])", kDeepseekLlmLetters, kDeepseekLlmPunct, R"(\s+$)", kDeepseekCjk, R"(\p{N}+)"};
  if (is({"deepseek-v3", "hunyuan-dense"}))
    return {R"(\p{N}{1,3})", R"([\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+)", kDeepseek3};
  if (is({"gpt-4o", "llama4"})) return {kGpt4o};
  if (pre == "tekken") return {kTekken};
  if (is({"poro-chat", "bloom", "gpt3-finnish"})) return {kBloom};
  if (pre == "viking") return {kBloom, R"(\p{N})"};
  throw std::runtime_error("unsupported pre-tokenizer '" + pre + "' (tokenizer.ggml.pre)");
}

#if defined(VIREO_NO_PCRE2)
// Builds without PCRE2 (the WASM build): SentencePiece vocabs need no regex; byte-level BPE ones cannot load.
Pretokenizer::Pretokenizer(const std::vector<std::string>&) {
  throw std::runtime_error("tokenizer: byte-level BPE tokenizers need PCRE2, which this WASM build lacks");
}
Pretokenizer::~Pretokenizer() = default;
void Pretokenizer::split(std::string_view, std::vector<Span>&) const {
  throw std::runtime_error("tokenizer: byte-level BPE tokenizers need PCRE2, which this WASM build lacks");
}
#else
Pretokenizer::Pretokenizer(const std::vector<std::string>& patterns) {
  for (const auto& p : patterns) {
    int err = 0;
    PCRE2_SIZE off = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(p.data()), p.size(),
                                     PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &err, &off, nullptr);
    if (!code) {
      for (void* c : codes_) pcre2_code_free(static_cast<pcre2_code*>(c));
      throw std::runtime_error("tokenizer: bad pre-tokenizer regex at offset " + std::to_string(off) + " (" +
                               pcre2_message(err) + "): " + p);
    }
    // Falls back to the interpreter where JIT is unavailable.
    jit_.push_back(pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0);
    codes_.push_back(code);
  }
}

Pretokenizer::~Pretokenizer() {
  for (void* c : codes_) pcre2_code_free(static_cast<pcre2_code*>(c));
}

void Pretokenizer::split(std::string_view text, std::vector<Span>& out) const {
  MatchScratch& ms = scratch();
  if (text.empty()) return;
  std::vector<Span> cur, next;
  cur.push_back({0, text.size()});
  for (size_t pi = 0; pi < codes_.size(); ++pi) {
    auto* code = static_cast<pcre2_code*>(codes_[pi]);
    next.clear();
    for (const Span& sp : cur) {
      const auto* subj = reinterpret_cast<PCRE2_SPTR>(text.data() + sp.begin);
      const size_t len = sp.end - sp.begin;
      size_t pos = 0, last = 0;
      while (pos < len) {
        int rc = jit_[pi] ? pcre2_jit_match(code, subj, len, pos, 0, ms.md, ms.mctx)
                          : pcre2_match(code, subj, len, pos, PCRE2_NO_UTF_CHECK, ms.md, ms.mctx);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0 && rc != 0)
          throw std::runtime_error("tokenizer: pre-tokenizer regex match failed (" + pcre2_message(rc) + ")");
        PCRE2_SIZE* ov = pcre2_get_ovector_pointer(ms.md);
        size_t m0 = ov[0], m1 = ov[1];
        if (m1 <= m0) {  // empty match: skip one character
          pos = m0 + 1;
          while (pos < len && (static_cast<unsigned char>(subj[pos]) & 0xC0) == 0x80) ++pos;
          continue;
        }
        if (m0 > last) next.push_back({sp.begin + last, sp.begin + m0});
        next.push_back({sp.begin + m0, sp.begin + m1});
        last = pos = m1;
      }
      if (last < len) next.push_back({sp.begin + last, sp.end});
    }
    cur.swap(next);
  }
  out.insert(out.end(), cur.begin(), cur.end());
}
#endif  // VIREO_NO_PCRE2

}  // namespace vireo
