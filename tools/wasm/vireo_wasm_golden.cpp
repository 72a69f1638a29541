// Golden checks of the core (GGUF reader, tokenizer, CPU forward pass, sampling) for the WebAssembly build, run
// under Node (scripts/test-wasm.sh):
//
//   node vireo_wasm_golden.js <fixtures_dir>
//   node vireo_wasm_golden.js --bench <model.gguf> [prompt_tokens] [decode_tokens]
//
// The cases mirror tests/test_model_golden.cpp (stories260K against run.c and llama.cpp) plus the SentencePiece
// tokenizer vectors. Prints "PASS <name>" / "FAIL <name> ..." per case and a last line "N passed, M failed"; exits
// non-zero on any failure. Without the fixtures it prints a skip message and "0 passed, 0 failed" and exits 0.
// Linked with NODERAWFS, so paths are the host's. Also works as a native program (it only uses the public API and
// the tokenizer/GGUF headers).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "backend/cpu/matmul.h"
#include "backend/cpu/thread_pool.h"
#include "core/dtype.h"
#include "gguf/gguf.h"
#include "quant/quant.h"
#include "tokenizer/tokenizer.h"
#include "vireo/vireo.h"

namespace fs = std::filesystem;

namespace {

std::string g_fix;  // fixtures directory
int g_passed = 0, g_failed = 0;

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string rstrip_newlines(std::string s) {
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

// One line, at most `max` bytes, newlines escaped: for FAIL messages.
std::string brief(const std::string& s, size_t max = 160) {
  std::string r;
  for (char c : s.substr(0, max)) r += c == '\n' ? std::string("\\n") : std::string(1, c);
  if (s.size() > max) r += "...";
  return r;
}

// Where two strings first differ, for FAIL messages.
std::string diff_msg(const std::string& got, const std::string& want) {
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  const size_t from = i > 20 ? i - 20 : 0;
  return "first difference at byte " + std::to_string(i) + " (got " + std::to_string(got.size()) + " bytes, want " +
         std::to_string(want.size()) + "): got '" + brief(got.substr(from), 80) + "' want '" +
         brief(want.substr(from), 80) + "'";
}

// A case returns "" on success, else the failure message; exceptions fail it too.
void run_case(const std::string& name, const std::function<std::string()>& fn) {
  std::string err;
  try {
    err = fn();
  } catch (const std::exception& e) {
    err = std::string("exception: ") + e.what();
  } catch (...) {
    err = "unknown exception";
  }
  if (err.empty()) {
    ++g_passed;
    std::printf("PASS %s\n", name.c_str());
  } else {
    ++g_failed;
    std::printf("FAIL %s: %s\n", name.c_str(), err.c_str());
  }
  std::fflush(stdout);
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Greedy generation as the native golden tests run it (single thread: this build has no threads).
std::string generate(const std::string& model, const std::string& prompt, int n, const std::string& label) {
  vireo::EngineOptions eo;
  eo.threads = 1;
  eo.n_ctx = 256;  // the GGUF says 128; run.c's reference ran 200 positions
  const double t0 = now_s();
  auto engine = vireo::Engine::load(model, eo);
  const double t_load = now_s() - t0;
  vireo::GenerateOptions g;
  g.sampling.temperature = 0;
  g.max_tokens = n;
  g.ignore_eos = true;
  std::string out;
  const double t1 = now_s();
  vireo::GenerateStats st = engine->generate(prompt, g, [&](std::string_view p) {
    out += p;
    return true;
  });
  const double t_gen = now_s() - t1;
  // Informational only: decode speed (tokens after the first over their time) and the whole call.
  const double decode_tps = st.decode_seconds > 0 ? (st.generated_tokens - 1) / st.decode_seconds : 0;
  std::printf("  %-28s load %.3f s, prompt %d tok, %d new tok in %.3f s: %.1f tok/s overall, %.1f tok/s decode\n",
              label.c_str(), t_load, st.prompt_tokens, st.generated_tokens, t_gen,
              t_gen > 0 ? st.generated_tokens / t_gen : 0, decode_tps);
  return out;
}

std::string case_runc_greedy() {
  const std::string want = rstrip_newlines(read_file(g_fix + "/golden/stories260K_runc_t0_n200.txt"));
  std::string got = generate(g_fix + "/models/stories260K-f32.gguf", "", 200, "stories260K-f32 from BOS");
  if (!got.empty() && got[0] == ' ') got.erase(0, 1);  // run.c drops the leading space of the first piece
  got = rstrip_newlines(got);
  return got == want ? "" : diff_msg(got, want);
}

std::string case_logits() {
  std::istringstream in(read_file(g_fix + "/golden/stories260K_once_upon_a_time_64.tokens.txt"));
  std::string line;
  std::vector<int32_t> seq;
  while (std::getline(in, line))
    if (line.rfind("sequence:", 0) == 0) {
      std::istringstream ls(line.substr(9));
      int32_t t;
      while (ls >> t) seq.push_back(t);
    }
  if (seq.size() < 64) return "token file has " + std::to_string(seq.size()) + " tokens, want >= 64";
  seq.resize(64);
  const std::string raw = read_file(g_fix + "/golden/stories260K_once_upon_a_time_64.logits.f32");
  if (raw.size() != 64u * 512u * 4u) return "logits file has " + std::to_string(raw.size()) + " bytes";
  std::vector<float> want(64u * 512u);
  std::memcpy(want.data(), raw.data(), raw.size());
  vireo::EngineOptions eo;
  eo.kv_f32 = true;
  eo.threads = 1;
  for (int batch : {64, 1, 7}) {
    eo.max_batch = batch;
    auto engine = vireo::Engine::load(g_fix + "/models/stories260K-f32.gguf", eo);
    std::vector<float> got = engine->logits_all(seq);
    if (got.size() != want.size()) return "batch " + std::to_string(batch) + ": " + std::to_string(got.size()) + " logits";
    double max_err = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      if (std::isnan(got[i])) return "batch " + std::to_string(batch) + ": NaN at " + std::to_string(i);
      max_err = std::max(max_err, std::fabs(double(got[i]) - want[i]));
    }
    if (!(max_err < 1e-4)) return "batch " + std::to_string(batch) + ": max |err| " + std::to_string(max_err);
  }
  return "";
}

// The whole forward pass on the SIMD path (matmul, attention over the f16 cache, SwiGLU) against the scalar path:
// 64 positions of stories260K. f16 weights keep activations in f32, so only float rounding and the vectorized exp
// differ: 1e-3 of the largest |logit|. Q4_K_M re-quantizes activations to int8 per layer, where such differences
// flip an occasional rounding step: 2e-2 (the native CpuPaths test's bound).
std::string case_simd_path_end_to_end() {
  namespace cpu = vireo::cpu;
  const cpu::CpuPath best = cpu::best_cpu_path();
  if (best == cpu::CpuPath::Scalar) return "";
  std::vector<int32_t> seq;
  for (int i = 0; i < 64; ++i) seq.push_back(1 + (i * 37) % 500);
  for (const auto& [m, bound] : {std::pair<const char*, double>{"stories260K-f16", 1e-3},
                                 {"stories260K-Q4_K_M-fallback", 2e-2}}) {
    const std::string path = g_fix + "/models/" + m + ".gguf";
    if (!fs::exists(path)) continue;
    vireo::EngineOptions eo;
    eo.threads = 1;
    std::vector<float> got[2];
    for (int pass = 0; pass < 2; ++pass) {
      cpu::force_cpu_path(pass == 0 ? best : cpu::CpuPath::Scalar);  // the backend picks its kernels at load
      got[pass] = vireo::Engine::load(path, eo)->logits_all(seq);
    }
    cpu::force_cpu_path(best);
    double max_abs = 1, max_err = 0;
    for (size_t i = 0; i < got[1].size(); ++i) {
      max_abs = std::max(max_abs, std::fabs(double(got[1][i])));
      max_err = std::max(max_err, std::fabs(double(got[0][i]) - got[1][i]));
      if (std::isnan(got[0][i])) return std::string(m) + ": NaN";
    }
    if (got[0].size() != got[1].size() || !(max_err <= bound * max_abs))
      return std::string(m) + ": max |simd - scalar| " + std::to_string(max_err) + " (largest |logit| " +
             std::to_string(max_abs) + ")";
  }
  return "";
}

std::string case_llamacpp(const std::string& name) {
  const std::string want_file = g_fix + "/golden/llamacpp_" + name + "_once_upon_a_time_n64.txt";
  std::string want = rstrip_newlines(read_file(want_file));
  const std::string prefix = "<s> Once upon a time";
  if (want.rfind(prefix, 0) != 0) return want_file + " does not start with '" + prefix + "'";
  want = want.substr(prefix.size());
  const std::string got = rstrip_newlines(generate(g_fix + "/models/" + name + ".gguf", "Once upon a time", 64, name));
  return got == want ? "" : diff_msg(got, want);
}

// ggml-vocab-*.gguf.inp / .out: texts separated by "\n__ggml_vocab_test__\n", one line of ids per text.
std::string case_vocab_vectors(const std::string& name) {
  const std::string base = g_fix + "/vocab/ggml-vocab-" + name + ".gguf";
  static const std::string kSep = "\n__ggml_vocab_test__\n";
  const std::string a = read_file(base + ".inp"), b = read_file(base + ".out");
  std::vector<std::string> texts;
  for (size_t pos = 0;;) {
    size_t j = a.find(kSep, pos);
    if (j == std::string::npos) {
      if (pos < a.size()) texts.push_back(a.substr(pos));
      break;
    }
    texts.push_back(a.substr(pos, j - pos));
    pos = j + kSep.size();
  }
  std::vector<std::vector<int32_t>> want;
  std::istringstream bs(b);
  std::string line;
  while (std::getline(bs, line)) {
    std::istringstream ls(line);
    std::vector<int32_t> ids;
    long long v;
    while (ls >> v) ids.push_back(static_cast<int32_t>(v));
    want.push_back(std::move(ids));
  }
  if (texts.empty() || texts.size() != want.size())
    return std::to_string(texts.size()) + " inputs but " + std::to_string(want.size()) + " outputs";
  vireo::GgufFile f = vireo::GgufFile::open(base);
  auto tok = vireo::Tokenizer::from_gguf(f);
  size_t bad = 0;
  std::string first;
  for (size_t i = 0; i < texts.size(); ++i)
    if (tok->encode(texts[i], false, false) != want[i] && bad++ == 0) first = "'" + brief(texts[i], 60) + "'";
  std::printf("  vocab %-22s %zu/%zu cases pass\n", name.c_str(), texts.size() - bad, texts.size());
  return bad == 0 ? "" : std::to_string(bad) + " of " + std::to_string(texts.size()) + " cases differ, first " + first;
}

// Without PCRE2 a byte-level BPE vocab must fail to load with a message that says why.
[[maybe_unused]] std::string case_bpe_needs_pcre2(const std::string& name) {
  vireo::GgufFile f = vireo::GgufFile::open(g_fix + "/vocab/ggml-vocab-" + name + ".gguf");
  try {
    auto tok = vireo::Tokenizer::from_gguf(f);
  } catch (const std::exception& e) {
    const std::string msg = e.what();
    return msg.find("PCRE2") != std::string::npos ? "" : "unclear error: " + msg;
  }
  return "loaded a byte-level BPE vocab without PCRE2";
}

// ggml-vocab-<name>.gguf files that have .inp/.out vectors next to them, sorted.
std::vector<std::string> vocabs_with_vectors() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& de : fs::directory_iterator(g_fix + "/vocab", ec)) {
    const std::string fn = de.path().filename().string();
    if (fn.rfind("ggml-vocab-", 0) != 0 || fn.size() < 16 || fn.compare(fn.size() - 5, 5, ".gguf") != 0) continue;
    if (fs::exists(de.path().string() + ".inp") && fs::exists(de.path().string() + ".out"))
      names.push_back(fn.substr(11, fn.size() - 16));
  }
  std::sort(names.begin(), names.end());
  return names;
}

[[maybe_unused]] bool is_byte_level_bpe(const std::string& name) {
  vireo::GgufFile f = vireo::GgufFile::open(g_fix + "/vocab/ggml-vocab-" + name + ".gguf");
  const vireo::GgufValue* v = f.find("tokenizer.ggml.model");
  return v && v->as_string() == "gpt2";
}

// The active matmul path (SIMD128 in a -msimd128 build) against the scalar path on every weight type: random rows
// of varying scale, a partial 16-row group, 1 / 5 / 70 activation rows (decode and prefill tiles, with remainders).
// The paths share the activation quantization and exact integer sums, so they differ only in float rounding:
// |y - y_scalar| <= 2e-5 * sum |w x| + 1e-6 per element.
std::string case_matmul_paths() {
  using vireo::DType;
  namespace cpu = vireo::cpu;
  const DType types[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,
                         DType::Q8_0, DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K};
  const cpu::CpuPath best = cpu::best_cpu_path();
  if (best == cpu::CpuPath::Scalar) return "";  // nothing to compare (a build without SIMD kernels)
  cpu::ThreadPool pool(1);
  const int64_t rows = 37, cols = 512;
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::uniform_real_distribution<float> scale(0.02f, 2.0f);
  for (DType t : types) {
    const int64_t rb = vireo::row_bytes(t, cols);
    std::vector<uint8_t> w(static_cast<size_t>(rows * rb));
    std::vector<float> row(cols);
    for (int64_t r = 0; r < rows; ++r) {
      const float sc = scale(rng);
      for (auto& v : row) v = nd(rng) * sc;
      if (t == DType::F32) {
        std::memcpy(w.data() + r * rb, row.data(), static_cast<size_t>(rb));
      } else if (t == DType::F16 || t == DType::BF16) {
        for (int64_t c = 0; c < cols; ++c) {
          const uint16_t h = t == DType::F16 ? vireo::fp32_to_fp16(row[c]) : vireo::fp32_to_bf16(row[c]);
          std::memcpy(w.data() + r * rb + 2 * c, &h, 2);
        }
      } else {
        vireo::quantize_row_ref(t, row.data(), w.data() + r * rb, cols);
      }
    }
    cpu::PackedMatrix pm(t, w.data(), rows, cols);
    std::vector<float> wd(static_cast<size_t>(rows * cols));
    for (int64_t r = 0; r < rows; ++r) pm.dequantize_row(r, wd.data() + r * cols);
    for (int64_t m : {1, 5, 70}) {
      std::vector<float> x(static_cast<size_t>(m * cols)), y(static_cast<size_t>(m * rows)), ys(y.size());
      for (auto& v : x) v = nd(rng);
      cpu::force_cpu_path(best);
      pm.matmul(x.data(), m, cols, y.data(), rows, pool);
      cpu::force_cpu_path(cpu::CpuPath::Scalar);
      pm.matmul(x.data(), m, cols, ys.data(), rows, pool);
      cpu::force_cpu_path(best);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t r = 0; r < rows; ++r) {
          double mag = 0;
          for (int64_t c = 0; c < cols; ++c) mag += std::fabs(double(wd[r * cols + c]) * x[i * cols + c]);
          const double got = y[i * rows + r], want = ys[i * rows + r];
          if (!(std::fabs(got - want) <= 2e-5 * mag + 1e-6))
            return std::string(vireo::dtype_name(t)) + " m=" + std::to_string(m) + " y[" + std::to_string(i) + "][" +
                   std::to_string(r) + "]: " + cpu::cpu_path_name(best) + " " + std::to_string(got) + " vs scalar " +
                   std::to_string(want);
        }
    }
  }
  return "";
}

// Informational: decode speed once the engine is warm (the first run above includes the Wasm tier-up).
void report_speed() {
  try {
    vireo::EngineOptions eo;
    eo.threads = 1;
    eo.n_ctx = 256;
    for (const char* m : {"stories260K-f32", "stories260K-Q4_K_M-fallback"}) {
      const std::string path = g_fix + "/models/" + m + ".gguf";
      if (!fs::exists(path)) continue;
      auto engine = vireo::Engine::load(path, eo);
      vireo::GenerateOptions g;
      g.sampling.temperature = 0;
      g.max_tokens = 200;
      g.ignore_eos = true;
      g.reuse_cache = false;
      double best = 0;
      for (int rep = 0; rep < 3; ++rep) {
        vireo::GenerateStats st = engine->generate("", g, [](std::string_view) { return true; });
        if (st.decode_seconds > 0) best = std::max(best, (st.generated_tokens - 1) / st.decode_seconds);
      }
      std::printf("  speed %-28s %.1f tok/s decode (best of 3 x 200 tokens, 1 thread)\n", m, best);
    }
  } catch (const std::exception& e) {
    std::printf("  speed: not measured (%s)\n", e.what());
  }
}

}  // namespace

// --bench MODEL [PROMPT_TOKENS [DECODE_TOKENS]]: prefill and decode speed of one model, one thread (a synthetic
// TinyLlama from `vireo synth` shows what the browser's CPU path does with a real shape).
int bench(const std::string& path, int prompt_tokens, int decode_tokens) {
  vireo::EngineOptions eo;
  eo.threads = 1;
  eo.n_ctx = prompt_tokens + decode_tokens + 8;
  auto engine = vireo::Engine::load(path, eo);
  std::vector<int32_t> prompt(static_cast<size_t>(prompt_tokens));
  for (int i = 0; i < prompt_tokens; ++i) prompt[i] = 100 + (i * 7) % 1000;
  vireo::GenerateOptions g;
  g.sampling.temperature = 0;
  g.max_tokens = decode_tokens;
  g.ignore_eos = true;
  g.reuse_cache = false;
  for (int rep = 0; rep < 2; ++rep) {  // the first run includes the Wasm tier-up
    const vireo::GenerateStats st = engine->generate_tokens(prompt, g, [](std::string_view) { return true; });
    std::printf("%s: pp%d %.2f tok/s, tg%d %.2f tok/s (1 thread, %s)\n", rep ? "run" : "warm-up", prompt_tokens,
                st.prompt_computed / std::max(st.prompt_seconds, 1e-9), decode_tokens,
                (st.generated_tokens - 1) / std::max(st.decode_seconds, 1e-9),
                vireo::cpu::cpu_path_name(vireo::cpu::best_cpu_path()));
  }
  return 0;
}

int main(int argc, char** argv) {
  if (argc > 2 && std::string(argv[1]) == "--bench")
    return bench(argv[2], argc > 3 ? std::atoi(argv[3]) : 32, argc > 4 ? std::atoi(argv[4]) : 16);
  g_fix = argc > 1 ? argv[1] : "../shared/fixtures";
  if (!fs::exists(g_fix + "/models/stories260K-f32.gguf")) {
    std::printf("SKIP: fixtures not found at %s (want models/stories260K-f32.gguf there)\n", g_fix.c_str());
    std::printf("0 passed, 0 failed\n");
    return 0;
  }
#if defined(__EMSCRIPTEN__)
  std::printf("vireo WASM golden tests (wasm32%s, %s), fixtures %s\n",
#if defined(__wasm_simd128__)
              ", simd128",
#else
              "",
#endif
#if defined(VIREO_NO_PCRE2)
              "no PCRE2: SentencePiece vocabs only",
#else
              "PCRE2 interpreter",
#endif
              g_fix.c_str());
#else
  std::printf("vireo golden tests (native build), fixtures %s\n", g_fix.c_str());
#endif

  run_case(std::string("matmul_") + vireo::cpu::cpu_path_name(vireo::cpu::best_cpu_path()) + "_matches_scalar",
           case_matmul_paths);
  run_case(std::string("forward_") + vireo::cpu::cpu_path_name(vireo::cpu::best_cpu_path()) + "_matches_scalar",
           case_simd_path_end_to_end);
  run_case("stories260K_greedy_from_bos_matches_runc", case_runc_greedy);
  run_case("stories260K_logits_match_runc", case_logits);
  for (const char* m : {"stories260K-f32", "stories260K-f16", "stories260K-Q4_K_M-fallback", "stories260K-Q6_K-fallback"}) {
    const std::string name = m;
    if (!fs::exists(g_fix + "/models/" + name + ".gguf")) {
      std::printf("SKIP llamacpp_%s (model absent)\n", m);
      continue;
    }
    run_case("llamacpp_once_upon_a_time_" + name, [&] { return case_llamacpp(name); });
  }
  // Tokenizer vectors (encode without BOS or special-token parsing, as the native vector tests do). Without PCRE2
  // the byte-level BPE vocabs must instead be refused with a clear error.
  for (const std::string& name : vocabs_with_vectors()) {
    bool bpe = false;
#if defined(VIREO_NO_PCRE2)
    try {
      bpe = is_byte_level_bpe(name);
    } catch (const std::exception&) {
    }
#endif
    if (bpe)
      run_case("vocab_" + name + "_without_pcre2_is_a_clear_error", [&] { return case_bpe_needs_pcre2(name); });
    else
      run_case("vocab_" + name + "_vectors", [&] { return case_vocab_vectors(name); });
  }

  report_speed();
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
