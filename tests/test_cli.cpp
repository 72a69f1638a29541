// The vireo command-line tool, run as a user would: stdout carries only the generated text / ids, stderr the rest.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "fixture_files.h"

namespace {

const std::string kFixtures = VIREO_FIXTURES;
const std::string kCli = VIREO_CLI_PATH;

struct Result {
  int status = -1;
  std::string out, err;
};

// Runs `args` through the shell with stdout and stderr captured separately.
Result run_cli(const std::string& args, const std::string& stdin_text = "") {
  // ctest runs tests in parallel processes: every call gets files of its own.
  static int calls = 0;
  const auto dir = std::filesystem::temp_directory_path();
  const std::string tag = std::to_string(getpid()) + "_" + std::to_string(++calls);
  const std::string out = (dir / ("vireo_cli_out_" + tag)).string(), err = (dir / ("vireo_cli_err_" + tag)).string(),
                    in = (dir / ("vireo_cli_in_" + tag)).string();
  std::ofstream(in) << stdin_text;
  const std::string cmd = kCli + " " + args + " <" + in + " >" + out + " 2>" + err;
  Result r;
  const int rc = std::system(cmd.c_str());
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  std::stringstream a, b;
  a << std::ifstream(out).rdbuf();
  b << std::ifstream(err).rdbuf();
  r.out = a.str();
  r.err = b.str();
  std::filesystem::remove(out);
  std::filesystem::remove(err);
  std::filesystem::remove(in);
  return r;
}

using vireo::test_files::read_file;

#define REQUIRE_FIXTURES()                                                       \
  if (!std::filesystem::exists(kFixtures + "/models/stories260K-f32.gguf"))      \
  GTEST_SKIP() << "fixtures not found at " << kFixtures << " (../shared/fixtures)"

}  // namespace

TEST(Cli, RunStreamsTextToStdoutAndSummaryToStderr) {
  REQUIRE_FIXTURES();
  Result r = run_cli("run -m " + kFixtures + "/models/stories260K-f16.gguf -p 'Once upon a time' -n 64 --temp 0 -t 2");
  ASSERT_EQ(r.status, 0) << r.err;
  std::string want = read_file(kFixtures + "/golden/llamacpp_stories260K-f16_once_upon_a_time_n64.txt");
  want = want.substr(std::string("<s> Once upon a time").size());
  while (!want.empty() && want.back() == '\n') want.pop_back();
  EXPECT_EQ(r.out, want + "\n");
  EXPECT_NE(r.err.find("decode:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("tok/s"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("time to first token"), std::string::npos) << r.err;
}

TEST(Cli, RunShowSpecialFlag) {
  REQUIRE_FIXTURES();
  // stories260K emits no control token in these 64 greedy tokens, so --show-special must not change the text;
  // shown/hidden control tokens in a stream are tested at the StreamDecoder level (test_tokenizer.cpp).
  const std::string base = "run -m " + kFixtures + "/models/stories260K-f32.gguf -p 'Once upon a time' -n 64 --temp 0";
  Result a = run_cli(base), b = run_cli(base + " --show-special");
  ASSERT_EQ(a.status, 0) << a.err;
  ASSERT_EQ(b.status, 0) << b.err;
  EXPECT_EQ(a.out, b.out);
  Result h = run_cli("run --help");
  EXPECT_NE((h.out + h.err).find("--show-special"), std::string::npos);
}

TEST(Cli, SameSeedSameText) {
  REQUIRE_FIXTURES();
  const std::string args = "run -m " + kFixtures + "/models/stories260K-f32.gguf -p 'Once' -n 40 --temp 1 --seed 7";
  Result a = run_cli(args), b = run_cli(args);
  ASSERT_EQ(a.status, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  Result c = run_cli("run -m " + kFixtures + "/models/stories260K-f32.gguf -p 'Once' -n 40 --temp 1 --seed 8");
  EXPECT_NE(a.out, c.out);
}

TEST(Cli, TokenizeMatchesVocabVectors) {
  REQUIRE_FIXTURES();
  const std::string vocab = kFixtures + "/vocab/ggml-vocab-llama-spm.gguf";
  const std::string inp = read_file(vocab + ".inp"), outp = read_file(vocab + ".out");
  const std::string sep = "\n__ggml_vocab_test__\n";
  const std::string first_case = inp.substr(0, inp.find(sep));
  const std::string first_ids = outp.substr(0, outp.find('\n'));
  Result r = run_cli("tokenize -m " + vocab + " --ids", first_case);
  ASSERT_EQ(r.status, 0) << r.err;
  auto trim = [](std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    while (!s.empty() && s.front() == ' ') s.erase(0, 1);
    return s;
  };
  EXPECT_EQ(trim(r.out), trim(first_ids));
  Result b = run_cli("tokenize -m " + vocab + " --ids --bos", first_case);
  EXPECT_EQ(trim(b.out), "1 " + trim(first_ids));
}

TEST(Cli, InfoShowsArchitectureTensorsAndMemory) {
  REQUIRE_FIXTURES();
  Result r = run_cli("info " + kFixtures + "/models/stories260K-Q4_K_M-fallback.gguf -c 256");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("arch:        llama"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("blk.0.attn_q.weight"), std::string::npos);
  EXPECT_NE(r.out.find("memory:      at ctx 256"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Q4_K"), std::string::npos);
}

TEST(Cli, CorruptFileGivesOneClearErrorAndExitCode1) {
  REQUIRE_FIXTURES();
  const std::string bytes = read_file(kFixtures + "/models/stories260K-f32.gguf");
  const std::string path =
      (std::filesystem::temp_directory_path() / ("vireo_truncated_" + std::to_string(getpid()) + ".gguf")).string();
  std::ofstream(path, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  Result r = run_cli("run -m " + path + " -p hi -n 4");
  std::filesystem::remove(path);
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(r.out.empty());
  EXPECT_NE(r.err.find("error: invalid GGUF"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("truncated"), std::string::npos) << r.err;
}

TEST(Cli, PromptLongerThanContextIsRejected) {
  REQUIRE_FIXTURES();
  std::string long_prompt;
  for (int i = 0; i < 100; ++i) long_prompt += "Once upon a time ";
  Result r = run_cli("run -m " + kFixtures + "/models/stories260K-f32.gguf -c 64 -f -", long_prompt);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("context"), std::string::npos) << r.err;
}

TEST(Cli, UnknownArchitectureIsAClearError) {
  REQUIRE_FIXTURES();
  // A vocab-only GGUF has no weights: loading it as a model must fail cleanly.
  Result r = run_cli("run -m " + kFixtures + "/vocab/ggml-vocab-gpt-2.gguf -p hi");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("error:"), std::string::npos) << r.err;
}

// ---- vireo tokenize --tokenizer tokenizer.json ----

namespace {
// The i-th text of a vocab vector file and its expected ids as the .out line has them.
bool vocab_case(const std::string& name, size_t i, std::string& text, std::string& ids) {
  const std::string base = kFixtures + "/vocab/ggml-vocab-" + name + ".gguf";
  if (!std::filesystem::exists(base + ".inp") || !std::filesystem::exists(base + ".out")) return false;
  const std::string inp = read_file(base + ".inp"), sep = "\n__ggml_vocab_test__\n";
  size_t pos = 0;
  for (size_t k = 0; k < i; ++k) {
    pos = inp.find(sep, pos);
    if (pos == std::string::npos) return false;
    pos += sep.size();
  }
  const size_t end = inp.find(sep, pos);
  text = inp.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
  std::istringstream out(read_file(base + ".out"));
  for (size_t k = 0; k <= i; ++k)
    if (!std::getline(out, ids)) return false;
  while (!ids.empty() && ids.front() == ' ') ids.erase(0, 1);
  return true;
}
}  // namespace

TEST(Cli, TokenizeWithHfTokenizerJsonPrintsTheVectorIds) {
  const std::string json = kFixtures + "/tokenizers/llama3/tokenizer.json";
  std::string text, ids;
  if (!std::filesystem::exists(json) || !vocab_case("llama-bpe", 0, text, ids))
    GTEST_SKIP() << "llama3 tokenizer.json or ggml-vocab-llama-bpe.gguf.inp/.out not found under " << kFixtures;
  // Case 0 ("ied 4 ½ months") and case 32 (punctuation, an emoji, CJK, digits).
  for (size_t i : {size_t(0), size_t(32)}) {
    ASSERT_TRUE(vocab_case("llama-bpe", i, text, ids)) << i;
    Result r = run_cli("tokenize --tokenizer " + json + " --ids", text);
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, ids + "\n") << "case " << i << ": '" << text << "'";
  }
  // --bos prepends <|begin_of_text|> (128000, named by tokenizer_config.json beside the file).
  ASSERT_TRUE(vocab_case("llama-bpe", 0, text, ids));
  Result b = run_cli("tokenize --tokenizer " + json + " --bos", text);
  ASSERT_EQ(b.status, 0) << b.err;
  if (std::filesystem::exists(kFixtures + "/tokenizers/llama3/tokenizer_config.json"))
    EXPECT_EQ(b.out, "128000 " + ids + "\n");
}

TEST(Cli, TokenizeNeedsExactlyOneOfModelAndTokenizer) {
  Result none = run_cli("tokenize --ids", "hi");
  EXPECT_NE(none.status, 0);
  EXPECT_TRUE(none.out.empty()) << none.out;
  EXPECT_NE(none.err.find("--tokenizer"), std::string::npos) << none.err;
  const std::string json = kFixtures + "/tokenizers/llama3/tokenizer.json";
  const std::string gguf = kFixtures + "/vocab/ggml-vocab-gpt-2.gguf";
  if (!std::filesystem::exists(json) || !std::filesystem::exists(gguf)) GTEST_SKIP() << "fixtures not found";
  Result both = run_cli("tokenize -m " + gguf + " --tokenizer " + json, "hi");
  EXPECT_NE(both.status, 0);
  EXPECT_TRUE(both.out.empty()) << both.out;
}

TEST(Cli, BenchParallelReportsTheWeightStreamPerDecodeStep) {
  REQUIRE_FIXTURES();
  // Batched decode reads the weights once per step for all sequences: the figure is steps/s (decode tok/s over the
  // sequence count) x weight bytes / bandwidth, here against a given bandwidth.
  Result r = run_cli("bench -m " + kFixtures + "/models/stories260K-f32.gguf -p 8 -n 12 -r 1 -t 1 --bandwidth 10 "
                     "--parallel 1,3 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_DOUBLE_EQ(j.at("bandwidth_gb_s").get<double>(), 10.0);
  const double bytes = j.at("weight_bytes_per_token").get<double>();
  EXPECT_GT(bytes, 900e3);  // stories260K in f32: ~1 MB of weights read per step
  ASSERT_EQ(j.at("parallel").size(), 2u);
  for (const auto& row : j.at("parallel")) {
    const int seqs = row.at("sequences").get<int>();
    const double decode = row.at("decode_tok_s").get<double>();
    EXPECT_GT(decode, 0.0) << seqs;
    EXPECT_GE(row.at("steps").get<double>(), 12.0) << seqs;
    EXPECT_NEAR(row.at("weight_stream_pct").get<double>(), decode / seqs * bytes / 10e9 * 100, 1e-9 * decode) << seqs;
  }
}
