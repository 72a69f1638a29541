// End-to-end checks of the CPU forward pass on the real stories260K model against reference outputs
// (llama2.c's run.c and llama.cpp), from ../shared/fixtures/golden.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "fixture_files.h"
#include "vireo/vireo.h"

namespace {

const std::string kFixtures = VIREO_FIXTURES;

using vireo::test_files::read_file;
using vireo::test_files::read_token_sequence;
using vireo::test_files::rstrip_newlines;

bool have_fixtures() { return std::filesystem::exists(kFixtures + "/models/stories260K-f32.gguf"); }

#define REQUIRE_FIXTURES() \
  if (!have_fixtures()) GTEST_SKIP() << "fixtures not found at " << kFixtures << " (../shared/fixtures)"

std::string generate(const std::string& model, const std::string& prompt, int n, bool kv_f32 = false,
                     int threads = 2) {
  vireo::EngineOptions eo;
  eo.threads = threads;
  eo.kv_f32 = kv_f32;
  eo.n_ctx = 256;  // the GGUF says 128 (llama2.c trained it at 512; run.c's reference ran 200 positions)
  auto engine = vireo::Engine::load(model, eo);
  vireo::GenerateOptions g;
  g.sampling.temperature = 0;
  g.max_tokens = n;
  g.ignore_eos = true;
  std::string out;
  engine->generate(prompt, g, [&](std::string_view p) {
    out += p;
    return true;
  });
  return out;
}

}  // namespace

// run.c -t 0 -n 200: 200 forward steps from BOS, each printing the token it samples (200 new tokens), f32 weights.
TEST(Golden, Stories260KGreedyFromBosMatchesRunC) {
  REQUIRE_FIXTURES();
  const std::string want = rstrip_newlines(read_file(kFixtures + "/golden/stories260K_runc_t0_n200.txt"));
  std::string got = generate(kFixtures + "/models/stories260K-f32.gguf", "", 200);
  // run.c drops the leading space of the first piece after BOS.
  if (!got.empty() && got[0] == ' ') got.erase(0, 1);
  EXPECT_EQ(rstrip_newlines(got), want);
}

// The logits of every position of a known 64-token sequence, with an f32 KV cache, within 1e-4 of run.c's.
TEST(Golden, Stories260KLogitsMatchRunC) {
  REQUIRE_FIXTURES();
  std::vector<int32_t> seq = read_token_sequence(kFixtures + "/golden/stories260K_once_upon_a_time_64.tokens.txt");
  ASSERT_GE(seq.size(), 64u);
  seq.resize(64);
  const std::string raw = read_file(kFixtures + "/golden/stories260K_once_upon_a_time_64.logits.f32");
  ASSERT_EQ(raw.size(), 64u * 512u * 4u);
  const float* want = reinterpret_cast<const float*>(raw.data());

  vireo::EngineOptions eo;
  eo.kv_f32 = true;
  eo.threads = 2;
  for (int batch : {64, 1, 7}) {  // whole-sequence prefill, token by token, and odd chunks agree
    eo.max_batch = batch;
    auto engine = vireo::Engine::load(kFixtures + "/models/stories260K-f32.gguf", eo);
    ASSERT_EQ(engine->n_vocab(), 512);
    std::vector<float> got = engine->logits_all(seq);
    ASSERT_EQ(got.size(), 64u * 512u);
    double max_err = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_FALSE(std::isnan(got[i])) << "NaN at " << i;
      max_err = std::max(max_err, std::fabs(double(got[i]) - want[i]));
    }
    EXPECT_LT(max_err, 1e-4) << "batch " << batch;
  }
}

// llama.cpp's greedy continuations of "Once upon a time" (64 new tokens) for the f16 and quantized files.
class GoldenLlamaCpp : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenLlamaCpp, ContinuesOnceUponATimeLikeLlamaCpp) {
  REQUIRE_FIXTURES();
  const std::string name = GetParam();
  const std::string want_file = kFixtures + "/golden/llamacpp_" + name + "_once_upon_a_time_n64.txt";
  std::string want = rstrip_newlines(read_file(want_file));
  const std::string prefix = "<s> Once upon a time";
  ASSERT_EQ(want.rfind(prefix, 0), 0u) << want_file;
  want = want.substr(prefix.size());
  const std::string got = generate(kFixtures + "/models/" + name + ".gguf", "Once upon a time", 64);
  EXPECT_EQ(rstrip_newlines(got), want);
}

INSTANTIATE_TEST_SUITE_P(Models, GoldenLlamaCpp,
                         ::testing::Values("stories260K-f32", "stories260K-f16", "stories260K-Q4_K_M-fallback",
                                           "stories260K-Q6_K-fallback"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& c : s)
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return s;
                         });

TEST(Golden, PromptLongerThanContextIsAClearError) {
  REQUIRE_FIXTURES();
  vireo::EngineOptions eo;
  eo.n_ctx = 16;
  auto engine = vireo::Engine::load(kFixtures + "/models/stories260K-f32.gguf", eo);
  vireo::GenerateOptions g;
  try {
    engine->generate(std::string(400, 'a'), g, {});
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("context"), std::string::npos) << e.what();
  }
}
