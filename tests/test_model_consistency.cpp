// Forward-pass invariants on synthetic models of both supported architectures (Llama with Llama-3 RoPE frequency
// factors; Qwen2 with q/k/v biases, NeoX RoPE and tied output): whatever way the tokens are batched, the logits
// are the same, and the f16 KV cache stays close to the f32 one.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>

#include "model/synth.h"
#include "vireo/vireo.h"

namespace {

std::string synth(const std::string& preset, const std::string& type) {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("vireo_consistency_" + preset + "_" + type + ".gguf")).string();
  vireo::write_synthetic_gguf(preset, type, path, "", 7, {});
  return path;
}

std::vector<float> logits(const std::string& path, const std::vector<int32_t>& toks, int batch, bool kv_f32) {
  vireo::EngineOptions eo;
  eo.threads = 2;
  eo.max_batch = batch;
  eo.kv_f32 = kv_f32;
  eo.n_ctx = 128;
  return vireo::Engine::load(path, eo)->logits_all(toks);
}

double max_rel(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0, worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return INFINITY;
    num += (a[i] - b[i]) * double(a[i] - b[i]);
    den += double(b[i]) * b[i];
    worst = std::max(worst, std::fabs(double(a[i]) - b[i]));
  }
  return std::sqrt(num / den);
}

}  // namespace

class Consistency : public ::testing::TestWithParam<std::pair<std::string, std::string>> {};

TEST_P(Consistency, BatchingDoesNotChangeLogitsAndF16KvStaysClose) {
  const auto& [preset, type] = GetParam();
  const std::string path = synth(preset, type);
  std::mt19937 rng(3);
  std::vector<int32_t> toks(40);
  for (auto& t : toks) t = static_cast<int32_t>(rng() % 200 + 3);

  const auto whole = logits(path, toks, 64, true);
  const auto one_by_one = logits(path, toks, 1, true);
  const auto chunks = logits(path, toks, 7, true);
  ASSERT_EQ(whole.size(), one_by_one.size());
  // Different batch sizes take different kernel paths (matrix-matrix vs matrix-vector) and accumulate in a
  // different order; the activation quantization is per row, so results agree to rounding.
  EXPECT_LT(max_rel(whole, one_by_one), 1e-4) << preset << " " << type;
  EXPECT_LT(max_rel(whole, chunks), 1e-4) << preset << " " << type;
  if (type == "f32") {
    // With f32 weights the KV cache is the only f16 rounding. (With quantized weights the int8 re-quantization
    // of activations turns that rounding into occasional one-step flips, so the bound would measure those.)
    const auto f16kv = logits(path, toks, 64, false);
    EXPECT_LT(max_rel(f16kv, whole), 5e-3) << preset << " " << type;
  }
  std::filesystem::remove(path);
}

INSTANTIATE_TEST_SUITE_P(Synthetic, Consistency,
                         ::testing::Values(std::pair<std::string, std::string>{"test-tiny", "f32"},
                                           std::pair<std::string, std::string>{"test-tiny", "q4_k_m"},
                                           std::pair<std::string, std::string>{"test-tiny-qwen2", "f32"},
                                           std::pair<std::string, std::string>{"test-tiny-qwen2", "q8_0"}),
                         [](const auto& info) {
                           std::string s = info.param.first + "_" + info.param.second;
                           for (char& c : s)
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return s;
                         });

// The vectorized CPU kernels (matmul tiles, f16 attention) against the scalar reference path, end to end.
#include "backend/cpu/matmul.h"

TEST(CpuPaths, SimdMatchesScalarEndToEnd) {
  std::vector<int32_t> toks(48);
  for (size_t i = 0; i < toks.size(); ++i) toks[i] = static_cast<int32_t>((i * 37) % 200 + 3);
  const vireo::cpu::CpuPath best = vireo::cpu::best_cpu_path();
  // f32 weights: activations stay f32, so only the summation order differs. Quantized weights: activations are
  // re-quantized to int8 per layer, where order-level differences flip an occasional rounding step.
  for (const auto& [type, bound] : {std::pair<std::string, double>{"f32", 1e-4}, {"q4_k_m", 2e-2}}) {
    const std::string path = synth("test-tiny", type);
    vireo::cpu::force_cpu_path(vireo::cpu::CpuPath::Scalar);
    const auto scalar = logits(path, toks, 64, false);
    vireo::cpu::force_cpu_path(best);
    const auto simd = logits(path, toks, 64, false);
    EXPECT_LT(max_rel(simd, scalar), bound) << type << " " << vireo::cpu::cpu_path_name(best);
    std::filesystem::remove(path);
  }
}
