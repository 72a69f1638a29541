// Tests of the CUDA backend against the CPU reference (quant_ref dequantizers, the CPU backend, double-precision
// products). Every test runs twice:
//   Cuda/...  on the GPU (real shapes: 4096x4096, 14336x4096, 4096x14336 ...); skipped, saying so, without a GPU;
//   Emu/...   the same backend source compiled for the CPU emulator (src/backend/cuda/emu), on small shapes, so the
//             kernels' indexing, synchronization, graph logic and the cuBLAS call are checked on any machine.
//
// Error bounds. Matmul outputs are checked element by element against a bound derived from the arithmetic:
//   int8 activations (quantized weights, <= 8 tokens): |err| <= sum_k |w_k| * amax(block of k) / 254 (the
//       activation rounding) + 1e-5 * (sum |w x| + max|w| * sum|x|) (f32 rounding);
//   float weights, <= 8 tokens (f32 activations): 4e-5 * sum |w x|;
//   types stored as f16 (Q4_1, Q5_0, Q5_1, Q2_K, Q3_K): 2^-11 weight rounding on top: 6e-4 * sum |w x| + 3e-8 * sum|x|;
//   > 8 tokens (f16 tensor cores): 1.5e-3 * sum |w x| + 3e-8 * (sum|x| + sum|w|);
// and the relative L2 error ||y - ref|| / ||ref|| is bounded per path: int8 2e-2, float 1e-4, f16-stored 1e-3,
// tensor cores 3e-3. Outputs are poisoned with NaN before every run; a NaN or inf anywhere fails.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/matmul.h"
#include "backend/cuda/cuda_backend.h"
#include "core/dtype.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "model/synth.h"
#include "runtime/sampler.h"
#include "vireo/vireo.h"
#include "quant/blocks.h"
#include "quant/quant.h"
#include "../chain_cases.h"
#include "../sampling_cases.h"

namespace vireo::cuda_emu {
std::unique_ptr<Backend> make_backend(const CudaOptions& opts);
}

namespace vireo {
namespace {

enum class Dev { Cuda, Emu };

int device_index() {
  const char* d = std::getenv("VIREO_CUDA_DEVICE");
  return d ? std::atoi(d) : 0;
}

std::unique_ptr<Backend> make_dev(Dev d, const CudaOptions& o) {
  return d == Dev::Cuda ? make_cuda_backend(device_index(), o) : cuda_emu::make_backend(o);
}

unsigned n_threads() { return std::max(1u, std::min(32u, std::thread::hardware_concurrency())); }

// Runs f(i) for i in [0, n) on all cores.
void parallel_for(int64_t n, const std::function<void(int64_t)>& f) {
  const unsigned nt = std::max<unsigned>(1, std::min<int64_t>(n_threads(), n));
  std::vector<std::thread> ts;
  for (unsigned t = 0; t < nt; ++t)
    ts.emplace_back([&, t] {
      for (int64_t i = t; i < n; i += nt) f(i);
    });
  for (auto& t : ts) t.join();
}

// ---- activation buffers on any backend (device memory for CUDA backends, host memory for the CPU) ----
CudaBackendExt* ext_of(Backend& be) { return dynamic_cast<CudaBackendExt*>(&be); }

void put(Backend& be, Act a, const std::vector<float>& v) {
  ASSERT_LE(v.size(), static_cast<size_t>(a.rows * a.cols));
  if (auto* e = ext_of(be))
    e->copy_to_device(a.data, v.data(), v.size() * sizeof(float));
  else
    std::memcpy(a.data, v.data(), v.size() * sizeof(float));
}

std::vector<float> get(Backend& be, Act a, int64_t rows) {
  std::vector<float> v(static_cast<size_t>(rows * a.cols));
  if (auto* e = ext_of(be))
    e->copy_to_host(v.data(), a.data, v.size() * sizeof(float));
  else
    std::memcpy(v.data(), a.data, v.size() * sizeof(float));
  return v;
}

void poison(Backend& be, Act a) {  // every f32 becomes NaN
  const size_t bytes = static_cast<size_t>(a.rows * a.cols) * sizeof(float);
  if (auto* e = ext_of(be))
    e->fill_bytes(a.data, 0xff, bytes);
  else
    std::memset(a.data, 0xff, bytes);
}

template <class F>
void step(Backend& be, const Batch& b, F&& ops) {
  be.begin_step(b);
  ops();
  be.end_step(Act{}, std::span<float>());
}

Batch plain_batch(int n) {
  Batch b;
  for (int i = 0; i < n; ++i) b.add(0, i, 0, false);
  return b;
}

std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng) * scale;
  return v;
}

// Activations like a model's: normal, with a few outliers.
std::vector<float> make_acts(int64_t rows, int64_t cols, uint32_t seed) {
  std::vector<float> v = randn(static_cast<size_t>(rows * cols), seed);
  std::mt19937 rng(seed ^ 0x5a5a);
  std::uniform_int_distribution<int64_t> pick(0, rows * cols - 1);
  for (int64_t i = 0; i < rows * cols / 100; ++i) v[pick(rng)] *= 8.f;
  return v;
}

double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const double d = double(a[i]) - b[i];
    num += d * d, den += double(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

bool all_finite(const std::vector<float>& v) {
  for (float x : v)
    if (!std::isfinite(x)) return false;
  return true;
}

// ---- weights in GGUF layout ----
const DType kAllTypes[] = {DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_0, DType::Q4_0, DType::F16, DType::BF16,
                           DType::F32,  DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q2_K, DType::Q3_K};

bool native_quant(DType t) {
  return t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K || t == DType::Q8_0 || t == DType::Q4_0;
}
bool native_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

// Byte offsets of the f16 scale fields of one block (scaling them all scales the block's values).
std::vector<size_t> f16_fields(DType t) {
  switch (t) {
    case DType::Q4_0: return {offsetof(BlockQ4_0, d)};
    case DType::Q4_1: return {offsetof(BlockQ4_1, d), offsetof(BlockQ4_1, m)};
    case DType::Q5_0: return {offsetof(BlockQ5_0, d)};
    case DType::Q5_1: return {offsetof(BlockQ5_1, d), offsetof(BlockQ5_1, m)};
    case DType::Q8_0: return {offsetof(BlockQ8_0, d)};
    case DType::Q2_K: return {offsetof(BlockQ2_K, d), offsetof(BlockQ2_K, dmin)};
    case DType::Q3_K: return {offsetof(BlockQ3_K, d)};
    case DType::Q4_K: return {offsetof(BlockQ4_K, d), offsetof(BlockQ4_K, dmin)};
    case DType::Q5_K: return {offsetof(BlockQ5_K, d), offsetof(BlockQ5_K, dmin)};
    case DType::Q6_K: return {offsetof(BlockQ6_K, d)};
    default: return {};
  }
}

// rows x K weights. Float types: normal values with a per-row scale. Quantized types: rows quantized by the
// reference quantizer from normal data; for large matrices a pool of 256 quantized rows is reused, each copy with
// its own scale (its f16 scale fields multiplied by a per-row factor), so every row still differs.
std::vector<uint8_t> make_weights(DType t, int64_t rows, int64_t K, uint32_t seed) {
  const int64_t rb = row_bytes(t, K);
  std::vector<uint8_t> out(static_cast<size_t>(rows * rb));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> scale(0.25f, 2.0f);
  std::vector<float> row_scale(static_cast<size_t>(rows));
  for (auto& s : row_scale) s = scale(rng);
  if (native_float(t)) {
    parallel_for(rows, [&](int64_t r) {
      const std::vector<float> v = randn(static_cast<size_t>(K), seed * 7919u + static_cast<uint32_t>(r), 0.05f * row_scale[r]);
      uint8_t* dst = out.data() + r * rb;
      for (int64_t k = 0; k < K; ++k) {
        if (t == DType::F32) {
          std::memcpy(dst + 4 * k, &v[k], 4);
        } else {
          const uint16_t h = t == DType::F16 ? fp32_to_fp16(v[k]) : fp32_to_bf16(v[k]);
          std::memcpy(dst + 2 * k, &h, 2);
        }
      }
    });
    return out;
  }
  const int64_t pool = std::min<int64_t>(rows, 256);
  std::vector<uint8_t> pool_rows(static_cast<size_t>(pool * rb));
  parallel_for(pool, [&](int64_t r) {
    const std::vector<float> v = randn(static_cast<size_t>(K), seed * 104729u + static_cast<uint32_t>(r), 0.05f);
    quantize_row_ref(t, v.data(), pool_rows.data() + r * rb, K);
  });
  const int64_t bs = dtype_info(t).block_bytes, nb = K / dtype_info(t).block_elems;
  const std::vector<size_t> fields = f16_fields(t);
  std::uniform_int_distribution<int64_t> pick(0, pool - 1);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t src = rows == pool ? r : pick(rng);
    uint8_t* dst = out.data() + r * rb;
    std::memcpy(dst, pool_rows.data() + src * rb, static_cast<size_t>(rb));
    for (int64_t b = 0; b < nb; ++b)
      for (size_t off : fields) {
        uint16_t h;
        std::memcpy(&h, dst + b * bs + off, 2);
        h = fp32_to_fp16(fp16_to_fp32(h) * row_scale[r]);
        std::memcpy(dst + b * bs + off, &h, 2);
      }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// The fixture: one instance per device kind.
// ---------------------------------------------------------------------------------------------------------------
class Gpu : public ::testing::TestWithParam<Dev> {
 protected:
  void SetUp() override {
    if (GetParam() == Dev::Cuda) {
      std::string why;
      if (!cuda_available(&why))
        GTEST_SKIP() << "no CUDA GPU on this machine (" << why
                     << "); the CUDA backend tests need one. The Emu/ variants run the same code on the CPU.";
    }
  }
  bool emu() const { return GetParam() == Dev::Emu; }
  // Default options come from the environment (VIREO_CUDA_PDL=0 etc. switch parts of the decode path off).
  std::unique_ptr<Backend> make(const CudaOptions& o = CudaOptions::from_env()) { return make_dev(GetParam(), o); }
};

std::string dev_name(const ::testing::TestParamInfo<Dev>& i) { return i.param == Dev::Cuda ? "Cuda" : "Emu"; }

// ---------------------------------------------------------------------------------------------------------------
// matmul
// ---------------------------------------------------------------------------------------------------------------
struct MatmulResult {
  double rel_l2 = 0, worst_ratio = 0;
};

// Tokens up to which the backend with options o multiplies a matrix of type t on the int8 matrix-vector path
// (CudaBackend::mv_max_tokens): Q4_K and Q6_K stay there up to kMatvecMaxN tokens when tensor-core tiles take over.
int matvec_tokens(DType t, const CudaOptions& o) {
  constexpr int kMatvecMaxN = 8;  // kernels.h
  const int base = std::min(o.matvec_max_tokens, kMatvecMaxN);
  const bool tiles = o.mv && o.mv_tiles > 0 && o.mv_tiles <= base + 1 && (t == DType::Q4_K || t == DType::Q6_K);
  return tiles ? std::clamp(o.tile_max_tokens, kMatvecMaxN, 64) : base;
}

void check_matmul(Backend& be, DType t, int64_t rows, int64_t K, const std::vector<int>& ns, uint32_t seed,
                  const CudaOptions& opts = CudaOptions{}) {
  const int matvec_max = matvec_tokens(t, opts);
  SCOPED_TRACE(std::string(dtype_name(t)) + " " + std::to_string(rows) + "x" + std::to_string(K));
  const std::vector<uint8_t> wb = make_weights(t, rows, K, seed);
  const int maxn = *std::max_element(ns.begin(), ns.end());
  const std::vector<float> xs = make_acts(maxn, K, seed + 1);

  // Reference and bound terms for every (token, row).
  const size_t cells = static_cast<size_t>(maxn * rows);
  std::vector<double> ref(cells), s_wx(cells), s_q(cells), s_x(cells), s_w(cells), max_w(cells);
  std::vector<float> amax(static_cast<size_t>(maxn * (K / 32 + 1)));
  for (int tk = 0; tk < maxn; ++tk)
    for (int64_t b = 0; b * 32 < K; ++b) {
      float m = 0;
      for (int64_t k = b * 32; k < std::min(K, b * 32 + 32); ++k) m = std::max(m, std::fabs(xs[tk * K + k]));
      amax[tk * (K / 32 + 1) + b] = m;
    }
  parallel_for(rows, [&](int64_t r) {
    std::vector<float> w(static_cast<size_t>(K));
    dequantize_row(t, wb.data() + r * row_bytes(t, K), w.data(), K);
    double sw = 0, mw = 0;
    for (float v : w) sw += std::fabs(v), mw = std::max<double>(mw, std::fabs(v));
    for (int tk = 0; tk < maxn; ++tk) {
      const float* x = xs.data() + tk * K;
      double acc = 0, awx = 0, aq = 0, ax = 0;
      for (int64_t k = 0; k < K; ++k) {
        acc += double(w[k]) * x[k];
        awx += std::fabs(double(w[k]) * x[k]);
        aq += std::fabs(w[k]) * double(amax[tk * (K / 32 + 1) + k / 32]) / 254.0;
        ax += std::fabs(x[k]);
      }
      const size_t c = static_cast<size_t>(tk * rows + r);
      ref[c] = acc, s_wx[c] = awx, s_q[c] = aq, s_x[c] = ax, s_w[c] = sw, max_w[c] = mw;
    }
  });

  const Weight* w = be.upload_weight("test.weight", t, {K, rows}, wb);
  Act x = be.alloc_act(maxn, K);
  Act y = be.alloc_act(maxn, rows);
  put(be, x, xs);
  for (int n : ns) {
    SCOPED_TRACE("tokens=" + std::to_string(n));
    poison(be, y);
    const Batch b = plain_batch(n);
    step(be, b, [&] { be.matmul(w, x.with_rows(n), y.with_rows(n)); });
    const std::vector<float> out = get(be, y, n);
    ASSERT_TRUE(all_finite(out)) << "non-finite output (NaN poison left or overflow)";
    const bool gemm = n > matvec_max;
    double num = 0, den = 0, worst = 0;
    int64_t worst_at = -1;
    for (int tk = 0; tk < n; ++tk)
      for (int64_t r = 0; r < rows; ++r) {
        const size_t c = static_cast<size_t>(tk * rows + r);
        const double err = std::fabs(double(out[tk * rows + r]) - ref[c]);
        double bound;
        if (gemm)
          bound = 1.5e-3 * s_wx[c] + 3e-8 * (s_x[c] + s_w[c]);
        else if (native_quant(t))
          bound = 1.02 * s_q[c] + 1e-5 * (s_wx[c] + max_w[c] * s_x[c]);
        else if (native_float(t))
          bound = 4e-5 * s_wx[c];
        else
          bound = 6e-4 * s_wx[c] + 3e-8 * s_x[c];
        bound += 1e-30;
        num += err * err;
        den += ref[c] * ref[c];
        if (err / bound > worst) worst = err / bound, worst_at = static_cast<int64_t>(c);
      }
    const double rel = std::sqrt(num / std::max(den, 1e-300));
    const double l2_bound = gemm ? 3e-3 : native_quant(t) ? 2e-2 : native_float(t) ? 1e-4 : 1e-3;
    EXPECT_LE(worst, 1.0) << "element " << worst_at % rows << " of token " << worst_at / rows << ": got "
                          << out[worst_at] << ", reference " << ref[worst_at] << " (" << (gemm ? "tensor-core" : "matvec")
                          << " path)";
    EXPECT_LE(rel, l2_bound) << (gemm ? "tensor-core" : "matvec") << " path";
  }
}

TEST_P(Gpu, MatmulEveryTypeEveryTokenCount) {
  // Every type, every matvec token count (1..4), the qgemm/tensor-core paths (5..33); partial warps/blocks.
  for (DType t : kAllTypes) {
    auto be = make();
    const bool k = dtype_info(t).block_elems == 256;
    const bool f = native_float(t);
    int64_t rows, K;
    if (emu()) {
      rows = 37;
      K = k ? 512 : (f ? 172 : 96);
    } else {
      rows = 4096;
      K = k ? 4096 : (f ? 4100 : 4096);
    }
    check_matmul(*be, t, rows, K, {1, 2, 3, 4, 5, 6, 7, 8, 9, 33}, 11u + static_cast<uint32_t>(t));
  }
}

TEST_P(Gpu, MatmulRealShapes) {
  // The Llama-3-8B projections: 4096x4096 (q, o), 14336x4096 (gate, up), 4096x14336 (down), 1024x4096 (k, v).
  struct Shape {
    int64_t rows, K;
  };
  // (On the emulator: {6, 8192}, few rows with long K: several trips of units per lane in every format.)
  const std::vector<Shape> shapes = emu() ? std::vector<Shape>{{20, 1280}, {70, 256}, {6, 8192}}
                                          : std::vector<Shape>{{4096, 4096}, {14336, 4096}, {4096, 14336}, {1024, 4096}};
  const std::vector<int> ns = emu() ? std::vector<int>{1, 4, 12} : std::vector<int>{1, 2, 8, 64};
  for (DType t : {DType::Q4_K, DType::Q6_K, DType::Q5_K, DType::Q8_0, DType::Q4_0, DType::F16, DType::BF16})
    for (const Shape& s : shapes) {
      auto be = make();
      check_matmul(*be, t, s.rows, s.K, ns, 1000u + static_cast<uint32_t>(t) * 7u + static_cast<uint32_t>(s.rows));
    }
  // One token with each item's K split over a block's warps (CudaOptions::mv_ksplit; launches of few items with
  // long rows: {6, 8192} on the emulator, the 4096-row ones on an H100).
  CudaOptions split = CudaOptions::from_env();
  split.mv_ksplit = 2;
  for (DType t : {DType::Q4_K, DType::Q6_K, DType::Q5_K, DType::Q8_0, DType::Q4_0, DType::F16, DType::BF16})
    for (const Shape& s : shapes) {
      auto be = make(split);
      check_matmul(*be, t, s.rows, s.K, {1}, 2000u + static_cast<uint32_t>(t) * 7u + static_cast<uint32_t>(s.rows));
    }
}

TEST_P(Gpu, MatmulTensorCorePathInSlices) {
  // A tiny f16 scratch forces the prefill path to dequantize and multiply the weights in many slices.
  CudaOptions o;
  o.gemm_scratch_elems = emu() ? 5 * 512 : 1000 * 4096;
  o.qgemm_max_tokens = 0;  // this test is about the cuBLAS path
  auto be = make(o);
  check_matmul(*be, DType::Q4_K, emu() ? 23 : 4096, emu() ? 512 : 4096, {9, 17}, 77);
  auto be2 = make(o);
  check_matmul(*be2, DType::F32, emu() ? 23 : 4096, emu() ? 172 : 4096, {10}, 78);
}

TEST_P(Gpu, MatmulQgemmPartialTiles) {
  // qgemm.cu: row counts that are not a multiple of its 64-row tiles, token counts that fill 16/32/64-token tiles
  // partly, and 65 tokens (beyond qgemm_max_tokens: the cuBLAS path) for comparison.
  // Q4_K and Q6_K go to qgemm_frag.cu by default: here they run on qgemm.cu (MatmulQgemmFragments tests the other).
  CudaOptions o = CudaOptions::from_env();
  o.qgemm_frag = 0;
  for (DType t : {DType::Q4_K, DType::Q6_K, DType::Q5_K, DType::Q8_0, DType::Q4_0, DType::BF16}) {
    auto be = make(o);
    check_matmul(*be, t, emu() ? 70 : 1000, emu() ? 256 : 2048, {10, 16, 31, 47, 64, 65}, 500u + static_cast<uint32_t>(t), o);
  }
}

TEST_P(Gpu, MatmulQgemmFragments) {
  // qgemm_frag.cu (Q4_K/Q6_K weights straight into tensor-core fragments): row counts that leave a partial
  // 128-row block and a partial warp, token counts that fill 16/32/64-token tiles partly, and K split over
  // several blocks (qgemm_frag_splits: 2 splits of 2 super-blocks on the emulator's 4 multiprocessors, 6 of 2
  // on an H100 with the earlier rule, 12 of 1 with the cost model, the default) or not (one super-block).
  CudaOptions o = CudaOptions::from_env();
  o.qgemm_frag = 1;
  for (DType t : {DType::Q4_K, DType::Q6_K}) {
    auto be = make(o);
    check_matmul(*be, t, emu() ? 200 : 1100, emu() ? 1024 : 3072, {9, 16, 17, 32, 40, 64}, 700u + static_cast<uint32_t>(t), o);
    check_matmul(*be, t, emu() ? 20 : 4096, emu() ? 256 : 4096, {12, 64}, 760u + static_cast<uint32_t>(t), o);
  }
}

TEST_P(Gpu, MatmulQgemmFragmentVariants) {
  // qgemm_frag.cu with 64 tokens in blocks of at most 4 or 2 token tiles (several token blocks a row block).
  for (int variant = 0; variant < 2; ++variant) {
    SCOPED_TRACE("variant " + std::to_string(variant));
    CudaOptions o = CudaOptions::from_env();
    o.qgemm_frag = 1;
    o.qfrag_max_nt = variant == 0 ? 4 : 2;
    for (DType t : {DType::Q4_K, DType::Q6_K}) {
      auto be = make(o);
      check_matmul(*be, t, emu() ? 136 : 1100, emu() ? 512 : 3072, {17, 40, 64}, 720u + 10u * variant + static_cast<uint32_t>(t), o);
    }
  }
}

TEST_P(Gpu, GroupedMatmulsMatchOneLaunchEach) {
  // Batched steps run up to 3 matmuls of one input, format and K as one qgemm_frag.cu launch (q/k/v, gate/up):
  // here q, k (Q4_K) and v (Q6_K: a group of its own) of one input, then gate/up (Q4_K) of another, at token counts
  // with and without a split K, against the same ops one launch each, and grouped in blocks of 16 tokens (more
  // token blocks a row block). Only the order of the f32 split sums may differ.
  const int64_t dim = emu() ? 512 : 4096, kv = emu() ? 128 : 1024, ffn = emu() ? 384 : 14336;
  struct Mat {
    DType t;
    int64_t rows, K;
  };
  const Mat mats[5] = {{DType::Q4_K, dim, dim}, {DType::Q4_K, kv, dim}, {DType::Q6_K, kv, dim},
                       {DType::Q4_K, ffn, dim}, {DType::Q4_K, ffn, dim}};
  const int maxn = 40;
  std::vector<std::unique_ptr<Backend>> bes;
  std::vector<std::vector<float>> outs[3];
  for (int variant = 0; variant < 3; ++variant) {  // one launch each, grouped, grouped in 16-token blocks
    const bool grouped = variant > 0;
    CudaOptions o = CudaOptions::from_env();
    o.qgemm_frag = 1;
    o.qfrag_multi = grouped;
    o.qfrag_max_nt = variant == 2 ? 2 : 8;
    auto be = make(o);
    const Weight* w[5];
    for (int i = 0; i < 5; ++i)
      w[i] = be->upload_weight("w", mats[i].t, {mats[i].K, mats[i].rows},
                               make_weights(mats[i].t, mats[i].rows, mats[i].K, 300u + static_cast<uint32_t>(i)));
    Act x1 = be->alloc_act(maxn, dim), x2 = be->alloc_act(maxn, dim);
    put(*be, x1, make_acts(maxn, dim, 11));
    put(*be, x2, make_acts(maxn, dim, 12));
    Act y[5];
    for (int i = 0; i < 5; ++i) y[i] = be->alloc_act(maxn, mats[i].rows);
    for (int n : {24, 40, 17}) {
      for (int i = 0; i < 5; ++i) poison(*be, y[i]);
      step(*be, plain_batch(n), [&] {
        for (int i = 0; i < 5; ++i) be->matmul(w[i], (i < 3 ? x1 : x2).with_rows(n), y[i].with_rows(n));
      });
      for (int i = 0; i < 5; ++i) outs[variant].push_back(get(*be, y[i], n));
    }
    const auto st = ext_of(*be)->graph_stats();
    if (grouped) EXPECT_GT(st.fused, 0) << "no grouped launch ran";
    else EXPECT_EQ(st.fused, 0);
    bes.push_back(std::move(be));
  }
  for (int v = 1; v < 3; ++v)
    for (size_t i = 0; i < outs[0].size(); ++i) {
      SCOPED_TRACE("variant " + std::to_string(v) + " step " + std::to_string(i / 5) + " matrix " + std::to_string(i % 5));
      ASSERT_TRUE(all_finite(outs[v][i])) << "an output left unwritten";
      EXPECT_LE(rel_l2(outs[v][i], outs[0][i]), 1e-5);
    }
}

TEST_P(Gpu, MatmulQgemmSplitK) {
  // Few row tiles and a long K: the K range is split over several blocks per tile (qgemm_splits; the emulator
  // has 4 multiprocessors) and the partial sums are added in a fixed order. Run twice on one backend, with
  // different token counts: the split-K scratch is reused.
  for (DType t : {DType::Q4_K, DType::Q6_K, DType::Q8_0, DType::Q5_K}) {
    auto be = make();
    const int64_t rows = emu() ? 200 : 1100, K = emu() ? 2048 : 14336;
    check_matmul(*be, t, rows, K, {40}, 900u + static_cast<uint32_t>(t));
    check_matmul(*be, t, rows, K, emu() ? std::vector<int>{40} : std::vector<int>{17, 40}, 950u + static_cast<uint32_t>(t));
  }
}

TEST_P(Gpu, MatmulMatvecOnlyUpToOneToken) {
  // matvec_max_tokens = 1: two tokens already take the tensor-core path.
  CudaOptions o;
  o.matvec_max_tokens = 1;
  auto be = make(o);
  check_matmul(*be, DType::Q6_K, emu() ? 9 : 2048, emu() ? 256 : 4096, {1, 2}, 91, o);
}

TEST_P(Gpu, MatmulTensorCoreTilesEveryTokenCount) {
  // mv.cu's int8 tensor-core tiles from one token on: row counts that leave a short last tile, K with fewer
  // 256-blocks than the block's warps (emulator) or a count that is not a multiple of them (14336 = 56 blocks).
  CudaOptions o;
  o.mv_tiles = 1;
  for (DType t : {DType::Q4_K, DType::Q6_K}) {
    auto be = make(o);
    check_matmul(*be, t, emu() ? 37 : 1003, emu() ? 512 : 4096, {1, 2, 3, 4, 5, 6, 7, 8}, 60u + static_cast<uint32_t>(t), o);
    check_matmul(*be, t, emu() ? 21 : 4096, emu() ? 2304 : 14336, {1, 3, 8}, 70u + static_cast<uint32_t>(t), o);
  }
}

TEST_P(Gpu, MatmulWideTilesUpTo64Tokens) {
  // 9..64 tokens on the tiles (CudaOptions::tile_max_tokens): every count of 8-token tiles, short last token
  // tiles, row counts that leave a short last row group, blocks of one, two, four and eight row groups, K not a
  // multiple of the warps of a group.
  CudaOptions o;
  o.tile_max_tokens = 64;
  for (DType t : {DType::Q4_K, DType::Q6_K}) {
    auto be = make(o);
    check_matmul(*be, t, emu() ? 37 : 1003, emu() ? 512 : 4096, {9, 16, 17, 31, 40, 64}, 80u + static_cast<uint32_t>(t), o);
    check_matmul(*be, t, emu() ? 600 : 14336, emu() ? 768 : 4096, {12, 33}, 90u + static_cast<uint32_t>(t), o);
    if (emu()) {  // the emulator's 4 multiprocessors: 250 rows take 2 row groups a block, 2048 rows 8
      check_matmul(*be, t, 250, 512, {10}, 100u + static_cast<uint32_t>(t), o);
      check_matmul(*be, t, 2048, 256, {9, 64}, 110u + static_cast<uint32_t>(t), o);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// elementwise ops against the CPU backend
// ---------------------------------------------------------------------------------------------------------------
void expect_close(const std::vector<float>& got, const std::vector<float>& want, double rel, double abs,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  ASSERT_TRUE(all_finite(got)) << what << ": non-finite output";
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs(double(got[i]) - want[i]) <= rel * std::fabs(want[i]) + abs)) {
      if (bad++ == 0) first = i;
    }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " elements off, first at " << first << ": " << got[first] << " vs "
                     << want[first];
}

double max_abs(const std::vector<float>& v) {
  double m = 0;
  for (float x : v) m = std::max(m, double(std::fabs(x)));
  return m;
}

const Weight* upload_vec(Backend& be, const std::string& name, const std::vector<float>& v) {
  std::vector<uint8_t> bytes(v.size() * 4);
  std::memcpy(bytes.data(), v.data(), bytes.size());
  return be.upload_weight(name, DType::F32, {static_cast<int64_t>(v.size())}, bytes);
}

TEST_P(Gpu, NormsMatchCpu) {
  const int n = 5;
  const int64_t cols = emu() ? 96 : 4096;
  auto be = make();
  auto cpu = make_cpu_backend(4);
  const std::vector<float> xs = make_acts(n, cols, 1), ys = make_acts(n, cols, 2);
  std::vector<float> g = randn(static_cast<size_t>(cols), 3);
  for (auto& v : g) v = 1.f + 0.2f * v;
  std::vector<float> out_be, out_cpu, x_be, x_cpu;
  for (Backend* b : {be.get(), cpu.get()}) {
    const Weight* gw = upload_vec(*b, "norm", g);
    Act x = b->alloc_act(n, cols), y = b->alloc_act(n, cols), o = b->alloc_act(n, cols), o2 = b->alloc_act(n, cols);
    put(*b, x, xs);
    put(*b, y, ys);
    poison(*b, o);
    poison(*b, o2);
    step(*b, plain_batch(n), [&] {
      b->rmsnorm(x, gw, 1e-5f, o);
      b->add_rmsnorm(x, y, gw, 1e-5f, o2);
    });
    std::vector<float> r = get(*b, o, n);
    const std::vector<float> r2 = get(*b, o2, n);
    r.insert(r.end(), r2.begin(), r2.end());
    (b == be.get() ? out_be : out_cpu) = r;
    (b == be.get() ? x_be : x_cpu) = get(*b, x, n);
  }
  expect_close(out_be, out_cpu, 2e-5, 1e-6, "rmsnorm / add_rmsnorm output");
  expect_close(x_be, x_cpu, 0, 0, "add_rmsnorm residual (x += y)");
}

TEST_P(Gpu, RopeMatchesCpu) {
  struct Case {
    int heads, head_dim, rope_dim;
    RopeMode mode;
    bool factors;
  };
  const std::vector<Case> cases = {{32, 128, 128, RopeMode::Normal, true},
                                   {8, 128, 128, RopeMode::Neox, false},
                                   {4, 64, 32, RopeMode::Normal, false},
                                   {14, 64, 64, RopeMode::Neox, true},
                                   {8, 8, 8, RopeMode::Normal, false}};
  for (const Case& c : cases) {
    SCOPED_TRACE("heads=" + std::to_string(c.heads) + " head_dim=" + std::to_string(c.head_dim) +
                 " rope_dim=" + std::to_string(c.rope_dim) + (c.mode == RopeMode::Neox ? " neox" : " normal"));
    const int n = 7;
    const int64_t cols = int64_t(c.heads) * c.head_dim;
    Batch b;
    const int32_t positions[n] = {0, 1, 17, 511, 4095, 8191, 3};
    for (int i = 0; i < n; ++i) b.add(i, positions[i], 0, false);
    const std::vector<float> xs = make_acts(n, cols, 5);
    std::vector<float> fac(static_cast<size_t>(c.rope_dim / 2));
    for (size_t i = 0; i < fac.size(); ++i) fac[i] = 1.f + static_cast<float>(i % 5);
    std::vector<float> res[2];
    auto be = make();
    auto cpu = make_cpu_backend(2);
    int k = 0;
    for (Backend* bk : {be.get(), cpu.get()}) {
      const Weight* fw = c.factors ? upload_vec(*bk, "rope_freqs.weight", fac) : nullptr;
      Act x = bk->alloc_act(n, cols);
      put(*bk, x, xs);
      RopeParams p{c.heads, c.head_dim, c.rope_dim, 500000.f, c.mode, fw};
      step(*bk, b, [&] { bk->rope(x, p); });
      res[k++] = get(*bk, x, n);
    }
    expect_close(res[0], res[1], 0, 2e-5 * max_abs(xs), "rope");
  }
}

TEST_P(Gpu, ElementwiseMatchCpu) {
  const int n = 6;
  const int64_t cols = emu() ? 172 : 14336;
  const std::vector<float> a = make_acts(n, cols, 7), bb = make_acts(n, cols, 8);
  const std::vector<float> bias = randn(static_cast<size_t>(cols), 9);
  std::vector<float> res[2];
  auto be = make();
  auto cpu = make_cpu_backend(2);
  int k = 0;
  for (Backend* b : {be.get(), cpu.get()}) {
    const Weight* bw = upload_vec(*b, "bias", bias);
    Act x = b->alloc_act(n, cols), y = b->alloc_act(n, cols), o = b->alloc_act(n, cols), z = b->alloc_act(n, cols);
    put(*b, x, a);
    put(*b, y, bb);
    put(*b, z, a);
    poison(*b, o);
    step(*b, plain_batch(n), [&] {
      b->swiglu(x, y, o);  // o = silu(x) * y
      b->add_bias(x, bw);  // x += bias
      b->add(y, x);        // y += x
      b->swiglu(z, y, z);  // in place, as the model does
    });
    std::vector<float> r = get(*b, o, n);
    for (Act t : {x, y, z}) {
      const std::vector<float> v = get(*b, t, n);
      r.insert(r.end(), v.begin(), v.end());
    }
    res[k++] = r;
  }
  expect_close(res[0], res[1], 2e-6, 1e-7, "swiglu / add_bias / add");
}

TEST_P(Gpu, EmbedEveryType) {
  for (DType t : kAllTypes) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    const bool k = dtype_info(t).block_elems == 256;
    const int64_t dim = emu() ? (k ? 256 : (native_float(t) ? 100 : 64)) : (k ? 4096 : (native_float(t) ? 4100 : 4096));
    const int64_t vocab = emu() ? 50 : 1000;
    const std::vector<uint8_t> tb = make_weights(t, vocab, dim, 21);
    auto be = make();
    const Weight* w = be->upload_weight("token_embd.weight", t, {dim, vocab}, tb);
    const int n = 9;
    Batch b;
    std::vector<int32_t> toks = {0, 1, int32_t(vocab - 1), 7, 7, 13, 42 % int32_t(vocab), 3, int32_t(vocab / 2)};
    for (int i = 0; i < n; ++i) b.add(toks[i], i, 0, false);
    Act out = be->alloc_act(n, dim);
    poison(*be, out);
    step(*be, b, [&] { be->embed(w, out); });
    const std::vector<float> got = get(*be, out, n);
    std::vector<float> want(static_cast<size_t>(n * dim));
    for (int i = 0; i < n; ++i) dequantize_row(t, tb.data() + toks[i] * row_bytes(t, dim), want.data() + i * dim, dim);
    const bool f16_stored = !native_quant(t) && !native_float(t);
    expect_close(got, want, f16_stored ? 1e-3 : 1e-6, (f16_stored ? 1e-7 : 2e-6) * max_abs(want), "embed");
  }
}

TEST_P(Gpu, EmbedRejectsBadTokens) {
  auto be = make();
  const std::vector<uint8_t> tb = make_weights(DType::F16, 10, 64, 1);
  const Weight* w = be->upload_weight("token_embd.weight", DType::F16, {64, 10}, tb);
  Act out = be->alloc_act(2, 64);
  Batch b;
  b.add(3, 0, 0, false);
  b.add(10, 1, 0, false);
  be->begin_step(b);
  EXPECT_THROW(be->embed(w, out), std::runtime_error);
}

TEST_P(Gpu, GatherLogitRows) {
  const int n = 6;
  const int64_t cols = 300;
  const std::vector<float> xs = make_acts(n, cols, 4);
  auto be = make();
  Act x = be->alloc_act(n, cols), o = be->alloc_act(n, cols);
  put(*be, x, xs);
  poison(*be, o);
  Batch b;
  for (int i = 0; i < n; ++i) b.add(i, i, 0, i == 1 || i == 4 || i == 5);
  step(*be, b, [&] { be->gather_logit_rows(x, o.with_rows(3)); });
  const std::vector<float> got = get(*be, o, 3);
  std::vector<float> want;
  for (int r : {1, 4, 5}) want.insert(want.end(), xs.begin() + r * cols, xs.begin() + (r + 1) * cols);
  expect_close(got, want, 0, 0, "gather_logit_rows");
}

// ---------------------------------------------------------------------------------------------------------------
// attention (with kv_store) against the CPU backend
// ---------------------------------------------------------------------------------------------------------------
struct AttnCase {
  int heads, kv_heads, head_dim;
  DType kv;
};

// Fills the caches of both backends with the same keys/values, then runs steps of several kinds (one decode
// token, tokens of different slots, tokens of one slot in one step, a long prefill) and compares the outputs.
void check_attention(Backend& be, Backend& cpu, const AttnCase& c, int n_ctx, int max_batch, uint32_t seed) {
  SCOPED_TRACE("heads=" + std::to_string(c.heads) + "/" + std::to_string(c.kv_heads) +
               " head_dim=" + std::to_string(c.head_dim) + " kv=" + std::string(dtype_name(c.kv)) +
               " n_ctx=" + std::to_string(n_ctx));
  const int kv_dim = c.kv_heads * c.head_dim, qd = c.heads * c.head_dim;
  const KvCacheConfig cfg{2, 3, n_ctx, kv_dim, c.kv};
  Backend* bes[2] = {&be, &cpu};
  Act q[2], k[2], v[2], o[2];
  for (int i = 0; i < 2; ++i) {
    bes[i]->alloc_kv(cfg);
    q[i] = bes[i]->alloc_act(max_batch, qd);
    k[i] = bes[i]->alloc_act(max_batch, kv_dim);
    v[i] = bes[i]->alloc_act(max_batch, kv_dim);
    o[i] = bes[i]->alloc_act(max_batch, qd);
  }
  // Fill positions [0, len[s]) of each slot in layer 1.
  const int len[3] = {n_ctx - 3, n_ctx / 2 + 5, 0};
  uint32_t sd = seed;
  for (int s = 0; s < 3; ++s)
    for (int p0 = 0; p0 < len[s]; p0 += max_batch) {
      const int n = std::min(max_batch, len[s] - p0);
      Batch b;
      for (int i = 0; i < n; ++i) b.add(0, p0 + i, s, false);
      const std::vector<float> ks = randn(static_cast<size_t>(n * kv_dim), ++sd), vs = randn(static_cast<size_t>(n * kv_dim), ++sd);
      for (int i = 0; i < 2; ++i) {
        put(*bes[i], k[i], ks);
        put(*bes[i], v[i], vs);
        step(*bes[i], b, [&] { bes[i]->kv_store(1, k[i].with_rows(n), v[i].with_rows(n)); });
      }
    }
  const float scale = 1.f / std::sqrt(static_cast<float>(c.head_dim));
  auto run = [&](const Batch& b, const std::string& what) {
    SCOPED_TRACE(what);
    const int n = b.size();
    const std::vector<float> qs = randn(static_cast<size_t>(n * qd), ++sd);
    const std::vector<float> ks = randn(static_cast<size_t>(n * kv_dim), ++sd), vs = randn(static_cast<size_t>(n * kv_dim), ++sd);
    std::vector<float> res[2];
    for (int i = 0; i < 2; ++i) {
      put(*bes[i], q[i], qs);
      put(*bes[i], k[i], ks);
      put(*bes[i], v[i], vs);
      poison(*bes[i], o[i]);
      step(*bes[i], b, [&] {
        bes[i]->kv_store(1, k[i].with_rows(n), v[i].with_rows(n));
        bes[i]->attention(q[i].with_rows(n), o[i].with_rows(n), {1, c.heads, c.kv_heads, c.head_dim, scale});
      });
      res[i] = get(*bes[i], o[i], n);
    }
    // Steps above 64 tokens with an f16 cache and head_dim 64/128 run on tensor cores (attention_prefill.cu), which
    // round the scaled queries and the probabilities to f16: ~1e-3 of the output there, 2e-5 elsewhere.
    const bool tensor_cores = c.kv == DType::F16 && (c.head_dim == 64 || c.head_dim == 128) && n > 64;
    if (tensor_cores)
      expect_close(res[0], res[1], 4e-3, 4e-3, "attention output (tensor cores)");
    else
      expect_close(res[0], res[1], 1e-4, 2e-5, "attention output");
  };
  {
    Batch b;
    b.add(0, len[0], 0, true);  // one decode token at the end of slot 0 (all splits busy)
    run(b, "decode, long context");
  }
  {
    Batch b;
    b.add(0, 5, 2, true);  // a short context: most splits empty
    run(b, "decode, short context");
  }
  {
    Batch b;  // tokens of three slots, two of them in slot 1 (the second sees the first)
    b.add(0, len[1], 1, true);
    b.add(0, len[1] + 1, 1, true);
    b.add(0, 6, 2, true);
    b.add(0, 0, 2, false);  // overwrites position 0 of slot 2 and attends to it alone
    run(b, "several slots");
  }
  {
    Batch b;  // prefill: causal within the step
    for (int i = 0; i < max_batch; ++i) b.add(0, i, 2, i == max_batch - 1);
    run(b, "prefill");
  }
  {
    // prefill chunks of several sequences in one step: a new prompt in slot 2, a continued prompt deep into
    // slot 1, the end of slot 0 (query tiles of 64 tokens then hold runs of two slots)
    Batch b;
    const int n2 = max_batch / 2 + 1, n1 = max_batch / 3;
    for (int i = 0; i < n2; ++i) b.add(0, i, 2, false);
    for (int i = 0; i < n1; ++i) b.add(0, len[1] + i, 1, false);
    for (int i = 0; i < 3; ++i) b.add(0, n_ctx - 3 + i, 0, i == 2);
    run(b, "prefill chunks of three slots");
  }
}

TEST_P(Gpu, AttentionMatchesCpu) {
  const std::vector<AttnCase> cases = {{32, 8, 128, DType::F16},  // Llama-3 8B
                                       {8, 4, 8, DType::F16},     // stories260K
                                       {14, 2, 64, DType::F16},   // group of 7 (Qwen2.5-0.5B)
                                       {4, 4, 256, DType::F16},   // MHA, largest head
                                       {32, 8, 128, DType::F32},  // f32 cache
                                       {16, 1, 64, DType::F16},   // MQA: 16 heads on one KV head (2 blocks of 8)
                                       {4, 2, 12, DType::F16}};   // head_dim not a multiple of 8 (scalar loads)
  for (const AttnCase& c : cases) {
    auto be = make();
    auto cpu = make_cpu_backend(static_cast<int>(n_threads()));
    if (emu())
      check_attention(*be, *cpu, c, 160, 80, 3);
    else
      check_attention(*be, *cpu, c, 4096, 512, 3);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// CUDA graphs
// ---------------------------------------------------------------------------------------------------------------
// A decode-like step: embed, norm, matmul, rope, kv_store, attention, matmul, gather.
struct MiniModel {
  const Weight *emb, *g, *wq, *wk, *wv, *wo;
  Act x, xb, q, k, v, att, out, sel;
  int dim = 64, heads = 4, kv_heads = 2, hd = 16;
  void build(Backend& be) {
    const int64_t vocab = 40;
    emb = be.upload_weight("token_embd.weight", DType::F16, {dim, vocab}, make_weights(DType::F16, vocab, dim, 1));
    std::vector<float> gv(static_cast<size_t>(dim), 1.f);
    g = upload_vec(be, "norm", gv);
    wq = be.upload_weight("wq", DType::Q8_0, {dim, heads * hd}, make_weights(DType::Q8_0, heads * hd, dim, 2));
    wk = be.upload_weight("wk", DType::Q8_0, {dim, kv_heads * hd}, make_weights(DType::Q8_0, kv_heads * hd, dim, 3));
    wv = be.upload_weight("wv", DType::Q4_0, {dim, kv_heads * hd}, make_weights(DType::Q4_0, kv_heads * hd, dim, 4));
    wo = be.upload_weight("wo", DType::F16, {heads * hd, dim}, make_weights(DType::F16, dim, heads * hd, 5));
    const int m = 32;
    x = be.alloc_act(m, dim), xb = be.alloc_act(m, dim), q = be.alloc_act(m, heads * hd);
    k = be.alloc_act(m, kv_heads * hd), v = be.alloc_act(m, kv_heads * hd), att = be.alloc_act(m, heads * hd);
    out = be.alloc_act(m, dim), sel = be.alloc_act(m, dim);
    be.alloc_kv({1, 2, 64, kv_heads * hd, DType::F16});
  }
  std::vector<float> run(Backend& be, const Batch& b, bool alt = false) {
    const int n = b.size(), r = static_cast<int>(b.logit_rows.size());
    Act X = x.with_rows(n), XB = xb.with_rows(n), Q = q.with_rows(n), K = k.with_rows(n), V = v.with_rows(n);
    Act A = att.with_rows(n), O = out.with_rows(n);
    RopeParams rp{heads, hd, hd, 10000.f, RopeMode::Normal, nullptr};
    RopeParams rk = rp;
    rk.n_heads = kv_heads;
    be.begin_step(b);
    be.embed(emb, X);
    be.rmsnorm(X, g, 1e-5f, XB);
    be.matmul(wq, XB, Q);
    be.matmul(wk, XB, K);
    be.matmul(wv, XB, V);
    be.rope(Q, rp);
    be.rope(K, rk);
    be.kv_store(0, K, V);
    be.attention(Q, A, {0, heads, kv_heads, hd, 0.25f});
    be.matmul(wo, A, O);
    be.add(O, X);
    if (alt) be.add(O, X);  // a different op list for the same shape
    be.gather_logit_rows(O, sel.with_rows(r));
    std::vector<float> logits(static_cast<size_t>(r * dim));
    be.end_step(sel.with_rows(r), logits);
    return logits;
  }
};

TEST_P(Gpu, GraphReplayEqualsEagerRun) {
  CudaOptions eager;
  eager.graphs = 0;
  auto bg = make();
  auto be = make(eager);
  MiniModel mg, me;
  mg.build(*bg);
  me.build(*be);
  uint32_t seed = 1;
  for (int stepi = 0; stepi < 6; ++stepi) {
    Batch b;  // two sequences decoding: same shape every step, new tokens/positions/slots
    b.add(static_cast<int32_t>((seed * 7) % 40), stepi, 0, true);
    b.add(static_cast<int32_t>((seed * 13) % 40), 2 * stepi, 1, true);
    ++seed;
    const std::vector<float> a = mg.run(*bg, b), c = me.run(*be, b);
    ASSERT_TRUE(all_finite(a));
    EXPECT_EQ(a, c) << "graph replay differs from the eager run at step " << stepi;
  }
  const auto sg = ext_of(*bg)->graph_stats(), se = ext_of(*be)->graph_stats();
  EXPECT_EQ(sg.captures, 1);
  EXPECT_EQ(sg.replays, 5);
  EXPECT_EQ(se.captures, 0);
  EXPECT_EQ(se.eager_steps, 6);

  // Same shape, different ops: captured again, and right.
  Batch b;
  b.add(3, 6, 0, true);
  b.add(4, 12, 1, true);
  const std::vector<float> a = mg.run(*bg, b, true), c = me.run(*be, b, true);
  EXPECT_EQ(a, c);
  EXPECT_EQ(ext_of(*bg)->graph_stats().recaptures, 1);

  // A large step: eager the first time, captured the second, replayed the third.
  for (int rep = 0; rep < 3; ++rep) {
    Batch big;
    for (int i = 0; i < 20; ++i) big.add(i % 40, i, 1, i == 19);
    const std::vector<float> x = mg.run(*bg, big), y = me.run(*be, big);
    EXPECT_EQ(x, y);
  }
  const auto s2 = ext_of(*bg)->graph_stats();
  EXPECT_EQ(s2.captures, 3);  // the decode shape twice, the large shape once
  EXPECT_EQ(s2.replays, 6);
  EXPECT_EQ(s2.eager_steps, 1);
}

// The per-op profile (VIREO_CUDA_PROFILE=1): same results as the eager run, and a table naming the kernel groups
// of the steps it ran, printed when the backend goes away.
TEST_P(Gpu, ProfileReportsEveryKernelGroup) {
  CudaOptions eager, prof;
  eager.graphs = 0;
  prof.profile = true;
  auto be = make(eager);
  auto bp = make(prof);
  MiniModel me, mp;
  me.build(*be);
  mp.build(*bp);
  for (int stepi = 0; stepi < 3; ++stepi) {
    Batch b;
    b.add(5 + stepi, stepi, 0, true);
    b.add(9 + stepi, stepi, 1, true);
    EXPECT_EQ(me.run(*be, b), mp.run(*bp, b)) << "step " << stepi;
  }
  EXPECT_EQ(ext_of(*bp)->graph_stats().captures, 0);
  testing::internal::CaptureStderr();
  bp.reset();
  const std::string report = testing::internal::GetCapturedStderr();
  EXPECT_NE(report.find("steps of 2 tokens: 3"), std::string::npos) << report;
  EXPECT_NE(report.find("n=2 embed"), std::string::npos) << report;
  EXPECT_NE(report.find("matmul"), std::string::npos) << report;
  EXPECT_NE(report.find("attention"), std::string::npos) << report;
  EXPECT_NE(report.find("gather_logit_rows"), std::string::npos) << report;
}

// ---------------------------------------------------------------------------------------------------------------
// fused decode kernels: the ops of Llama layers in the model's order, on the fused backend (defaults), on the
// backend with every decode-path option off (one kernel per op, register matvec, flash attention), and on the CPU
// ---------------------------------------------------------------------------------------------------------------
struct LayerCase {
  int dim, heads, kv_heads, hd, ffn, vocab, rope_dim;
  RopeMode mode;
  DType wqk, wv, wo, wgu, wdown, wout;
  bool factors;
};

struct LayerNet {
  struct L {
    const Weight *an, *fn, *wq, *wk, *wv, *wo, *wg, *wu, *wd;
  };
  LayerCase c;
  std::vector<L> layers;
  std::deque<std::vector<uint8_t>> bytes;  // the CPU backend may keep pointers into uploaded tensors (mmap-style)
  const Weight *emb, *onorm, *out, *freqs = nullptr;
  Act x, xb, q, k, v, att, hb, hb2, fo, sel, logits;
  void build(Backend& be, const LayerCase& cs, int n_layers, int max_batch, int n_ctx, int slots) {
    c = cs;
    uint32_t seed = 100;
    auto mat = [&](const char* name, DType t, int64_t rows, int64_t K) {
      bytes.push_back(make_weights(t, rows, K, ++seed));
      return be.upload_weight(name, t, {K, rows}, bytes.back());
    };
    auto gain = [&](const char* name, int64_t n) {
      std::vector<float> g = randn(static_cast<size_t>(n), ++seed, 0.1f);
      for (auto& v : g) v += 1.f;
      return upload_vec(be, name, g);
    };
    bytes.push_back(make_weights(DType::F16, c.vocab, c.dim, ++seed));
    emb = be.upload_weight("token_embd.weight", DType::F16, {c.dim, c.vocab}, bytes.back());
    const int qd = c.heads * c.hd, kvd = c.kv_heads * c.hd;
    for (int l = 0; l < n_layers; ++l)
      layers.push_back({gain("an", c.dim), gain("fn", c.dim), mat("wq", c.wqk, qd, c.dim), mat("wk", c.wqk, kvd, c.dim),
                        mat("wv", c.wv, kvd, c.dim), mat("wo", c.wo, c.dim, qd), mat("wg", c.wgu, c.ffn, c.dim),
                        mat("wu", c.wgu, c.ffn, c.dim), mat("wd", c.wdown, c.dim, c.ffn)});
    onorm = gain("on", c.dim);
    out = mat("output.weight", c.wout, c.vocab, c.dim);
    if (c.factors) {
      std::vector<float> fac(static_cast<size_t>(c.rope_dim / 2));
      for (size_t i = 0; i < fac.size(); ++i) fac[i] = 1.f + static_cast<float>(i % 3);
      freqs = upload_vec(be, "rope_freqs.weight", fac);
    }
    x = be.alloc_act(max_batch, c.dim), xb = be.alloc_act(max_batch, c.dim), q = be.alloc_act(max_batch, qd);
    k = be.alloc_act(max_batch, kvd), v = be.alloc_act(max_batch, kvd), att = be.alloc_act(max_batch, qd);
    hb = be.alloc_act(max_batch, c.ffn), hb2 = be.alloc_act(max_batch, c.ffn), fo = be.alloc_act(max_batch, c.dim);
    sel = be.alloc_act(max_batch, c.dim), logits = be.alloc_act(max_batch, c.vocab);
    be.alloc_kv({n_layers, slots, n_ctx, kvd, DType::F16});
  }
  // The ops of vireo::Model::build_step (src/model/llama.cpp), in its order.
  std::vector<float> run(Backend& be, const Batch& b) {
    const int n = b.size(), r = static_cast<int>(b.logit_rows.size());
    Act X = x.with_rows(n), XB = xb.with_rows(n), Q = q.with_rows(n), K = k.with_rows(n), V = v.with_rows(n);
    Act A = att.with_rows(n), H = hb.with_rows(n), H2 = hb2.with_rows(n), O = fo.with_rows(n);
    RopeParams rq{c.heads, c.hd, c.rope_dim, 10000.f, c.mode, freqs};
    RopeParams rk = rq;
    rk.n_heads = c.kv_heads;
    if (auto* e = ext_of(be)) {  // poison every intermediate: a fused kernel must write all it replaces
      for (Act a : {X, XB, Q, K, V, A, H, H2, O}) e->fill_bytes(a.data, 0xff, static_cast<size_t>(a.rows * a.cols) * 4);
    }
    be.begin_step(b);
    be.embed(emb, X);
    for (size_t l = 0; l < layers.size(); ++l) {
      const L& w = layers[l];
      if (l == 0)
        be.rmsnorm(X, w.an, 1e-5f, XB);
      else
        be.add_rmsnorm(X, O, w.an, 1e-5f, XB);
      be.matmul(w.wq, XB, Q);
      be.matmul(w.wk, XB, K);
      be.matmul(w.wv, XB, V);
      be.rope(Q, rq);
      be.rope(K, rk);
      be.kv_store(static_cast<int32_t>(l), K, V);
      be.attention(Q, A, {static_cast<int32_t>(l), c.heads, c.kv_heads, c.hd, 1.0f / std::sqrt(float(c.hd))});
      be.matmul(w.wo, A, O);
      be.add_rmsnorm(X, O, w.fn, 1e-5f, XB);
      be.matmul(w.wg, XB, H);
      be.matmul(w.wu, XB, H2);
      be.swiglu(H, H2, H);
      be.matmul(w.wd, H, O);
    }
    be.add_rmsnorm(X, O, onorm, 1e-5f, XB);
    be.gather_logit_rows(XB, sel.with_rows(r));
    be.matmul(out, sel.with_rows(r), logits.with_rows(r));
    std::vector<float> res(static_cast<size_t>(r) * c.vocab);
    be.end_step(logits.with_rows(r), res);
    // the residual stream and the last layer's intermediates too (every row of the step)
    for (Act a : {X, Q, K, V, A, H, H2}) {
      const std::vector<float> t = get(be, a, n);
      res.insert(res.end(), t.begin(), t.end());
    }
    return res;
  }
};

TEST_P(Gpu, BatchedLayersMatchUnfused) {
  // Steps of 17-40 tokens (batched decode and prefill chunks) through two Llama layers: the batched fusions (q/k/v
  // and gate/up grouped into one qgemm_frag.cu launch each, norms, SwiGLU and the decode attention writing the f16
  // activations of the next matmul, RoPE of q and k with the cache store in one kernel) against one kernel per op,
  // and both against the CPU backend. Same arithmetic apart from the order of split-K sums, so the two CUDA paths
  // agree closely.
  // (The emulator's case rotates part of each head, NeoX-style: the fused RoPE + cache store's other path.)
  const LayerCase c = emu() ? LayerCase{256, 4, 2, 64, 512, 96, 32, RopeMode::Neox, DType::Q4_K, DType::Q6_K,
                                        DType::Q4_K, DType::Q4_K, DType::Q6_K, DType::Q6_K, false}
                            : LayerCase{2048, 32, 8, 64, 8192, 1000, 64, RopeMode::Normal, DType::Q4_K, DType::Q4_K,
                                        DType::Q4_K, DType::Q4_K, DType::Q6_K, DType::Q6_K, false};
  const int n_layers = 2, slots = 2, n_ctx = 128;
  CudaOptions plain;
  plain.fuse = plain.pdl = 0;
  auto fused = make();
  auto ref = make(plain);
  auto cpu = make_cpu_backend(static_cast<int>(n_threads()));
  Backend* bes[3] = {fused.get(), ref.get(), cpu.get()};
  LayerNet nets[3];
  for (int i = 0; i < 3; ++i) nets[i].build(*bes[i], c, n_layers, 40, n_ctx, slots);
  int pos[slots] = {0, 0};
  const int shapes[3][2] = {{40, 0}, {0, 24}, {8, 9}};  // tokens of slot 0 and slot 1 in each step
  for (int stepi = 0; stepi < 3; ++stepi) {
    SCOPED_TRACE("step " + std::to_string(stepi));
    Batch b;
    for (int sl = 0; sl < slots; ++sl)
      for (int j = 0; j < shapes[stepi][sl]; ++j)
        b.add((stepi * 7 + sl * 13 + j * 3) % c.vocab, pos[sl]++, sl, j == shapes[stepi][sl] - 1);
    std::vector<float> res[3];
    for (int i = 0; i < 3; ++i) res[i] = nets[i].run(*bes[i], b);
    ASSERT_TRUE(all_finite(res[0])) << "fused backend: non-finite output (an intermediate left unwritten?)";
    EXPECT_LE(rel_l2(res[0], res[1]), 1e-3) << "batched fusions vs one kernel per op";
    EXPECT_LE(rel_l2(res[0], res[2]), 0.1) << "fused vs CPU";
    EXPECT_LE(rel_l2(res[1], res[2]), 0.1) << "one kernel per op vs CPU";
  }
  EXPECT_GT(ext_of(*fused)->graph_stats().fused, 0) << "no fused kernel ran";
  EXPECT_EQ(ext_of(*ref)->graph_stats().fused, 0);
}

TEST_P(Gpu, FusedDecodeLayersMatchUnfused) {
  std::vector<LayerCase> cases;
  if (emu()) {
    cases = {{256, 4, 2, 64, 256, 96, 64, RopeMode::Normal, DType::Q4_K, DType::Q6_K, DType::Q4_K, DType::Q4_K,
              DType::Q6_K, DType::Q6_K, true},
             {256, 8, 2, 32, 256, 64, 16, RopeMode::Neox, DType::Q8_0, DType::Q8_0, DType::Q4_0, DType::Q5_K,
              DType::Q4_K, DType::Q8_0, false},
             {128, 2, 1, 64, 256, 50, 64, RopeMode::Normal, DType::F16, DType::F16, DType::BF16, DType::F16,
              DType::F32, DType::F16, false}};
  } else {
    cases = {{2048, 32, 8, 64, 8192, 1000, 64, RopeMode::Normal, DType::Q4_K, DType::Q6_K, DType::Q4_K, DType::Q4_K,
              DType::Q6_K, DType::Q6_K, true},
             {4096, 32, 8, 128, 14336, 1000, 128, RopeMode::Normal, DType::Q4_K, DType::Q4_K, DType::Q4_K,
              DType::Q4_K, DType::Q4_K, DType::Q6_K, true},
             {1024, 16, 2, 64, 2816, 1000, 32, RopeMode::Neox, DType::Q8_0, DType::Q8_0, DType::Q5_K, DType::Q5_K,
              DType::Q6_K, DType::Q8_0, false},
             {2048, 16, 4, 128, 5632, 512, 128, RopeMode::Normal, DType::F16, DType::F16, DType::F16, DType::F16,
              DType::F16, DType::F16, false}};
  }
  for (const LayerCase& c : cases) {
    SCOPED_TRACE("dim=" + std::to_string(c.dim) + " heads=" + std::to_string(c.heads) + "/" +
                 std::to_string(c.kv_heads) + " hd=" + std::to_string(c.hd) + " wq=" + std::string(dtype_name(c.wqk)));
    // two layers where launches chain (the down projection's phase then feeds the next layer's q/k/v); the
    // emulator's float case keeps one (its cache-filling steps alternate layers, so no graph would replay)
    const int n_layers = emu() && !native_quant(c.wqk) ? 1 : 2, slots = 3, prompt = emu() ? 70 : 700,
              n_ctx = emu() ? 96 : 1024;
    CudaOptions plain;
    plain.fuse = plain.pdl = plain.mv = plain.attn_decode = 0;
    CudaOptions small_chunks;  // several splits even at short context: the merge path
    small_chunks.attn_min_chunk = 16;
    small_chunks.mv_ksplit = 2;  // and one-token launches of few items split over a block (rope/cache epilogues)
    small_chunks.norm_fold = 1;  // and the block boundaries folded into the o and down projections
    // Both run the int8 matrix-vector kernels for every step size tested here (up to 8 tokens), so the
    // comparison isolates the fusion (by default 5+ tokens take qgemm.cu's f16 tensor-core path).
    plain.matvec_max_tokens = small_chunks.matvec_max_tokens = 8;
    CudaOptions chained;  // the defaults, with one-token matvec launches chained (o, gate/up, down, next q/k/v)
    chained.mv_chain = 1;
    chained.matvec_max_tokens = 8;
    auto fused = make(small_chunks);
    auto ref = make(plain);
    auto cpu = make_cpu_backend(static_cast<int>(n_threads()));
    auto chain = make(chained);
    Backend* bes[4] = {fused.get(), ref.get(), cpu.get(), chain.get()};
    LayerNet nets[4];
    for (int i = 0; i < 4; ++i) nets[i].build(*bes[i], c, n_layers, 8, n_ctx, slots);
    // the caches of slots 0 and 1 hold `prompt` and `prompt - 7` positions of random keys and values
    uint32_t sd = 7;
    const int kvd = c.kv_heads * c.hd;
    for (int s = 0; s < 2; ++s)
      for (int p0 = 0; p0 < prompt - 7 * s; p0 += 8) {
        const int n = std::min(8, prompt - 7 * s - p0);
        Batch b;
        for (int i = 0; i < n; ++i) b.add(0, p0 + i, s, false);
        for (int l = 0; l < n_layers; ++l) {
          const std::vector<float> ks = randn(static_cast<size_t>(n * kvd), ++sd), vs = randn(static_cast<size_t>(n * kvd), ++sd);
          for (int i = 0; i < 4; ++i) {
            put(*bes[i], nets[i].k, ks);
            put(*bes[i], nets[i].v, vs);
            step(*bes[i], b, [&] { bes[i]->kv_store(l, nets[i].k.with_rows(n), nets[i].v.with_rows(n)); });
          }
        }
      }
    int pos[slots] = {prompt, prompt - 7, 0};
    for (int stepi = 0; stepi < (emu() ? 4 : 8); ++stepi) {
      SCOPED_TRACE("decode step " + std::to_string(stepi));
      Batch b;
      const int kind = (stepi + 2) % 3;  // the largest step first: scratch grows once, later shapes replay
      if (kind == 0) {
        b.add((stepi * 5) % c.vocab, pos[0]++, 0, true);
      } else if (kind == 1) {
        for (int s = 0; s < 3; ++s) b.add((stepi * 3 + s) % c.vocab, pos[s]++, s, true);
      } else {  // 8 tokens: 4 of slot 2 (a short prompt) and one each for the others
        for (int j = 0; j < 4; ++j) b.add((stepi + j) % c.vocab, pos[2]++, 2, j == 3);
        for (int j = 0; j < 4; ++j) b.add((stepi * 11 + j) % c.vocab, pos[j % 2]++, j % 2, true);
      }
      std::vector<float> res[4];
      for (int i = 0; i < 4; ++i) res[i] = nets[i].run(*bes[i], b);
      const bool quant = native_quant(c.wqk);
      // The two CUDA paths differ by the order of float sums (most of all the tensor-core tiles of 3+ tokens, which
      // add per 32-element sub-block), which can flip the rounding of int8 activations: ~1% apart over two random
      // layers (H100, 2026-12-06: 0.006-0.012), while each is ~5% from the CPU backend, which quantizes
      // activations its own way. So: close to each other, and the fused path no farther from the CPU than the
      // unfused one (an error of the fused kernels would show there as 0.2 and more).
      EXPECT_LE(rel_l2(res[0], res[1]), quant ? 2e-2 : 2e-4) << "fused vs one kernel per op";
      EXPECT_LE(rel_l2(res[3], res[1]), quant ? 2e-2 : 2e-4) << "chained vs one kernel per op";
      ASSERT_TRUE(all_finite(res[3])) << "chained backend: non-finite output";
      if (quant)
        EXPECT_LE(rel_l2(res[0], res[2]), 1.1 * rel_l2(res[1], res[2]) + 1e-3) << "fused vs CPU, against unfused vs CPU";
      if (std::getenv("VIREO_TEST_DEBUG")) {  // relative L2 per buffer
        const int n = b.size(), r = static_cast<int>(b.logit_rows.size());
        const int qd = c.heads * c.hd, kvd = c.kv_heads * c.hd;
        const int64_t sizes[8] = {int64_t(r) * c.vocab, int64_t(n) * c.dim, int64_t(n) * qd, int64_t(n) * kvd,
                                  int64_t(n) * kvd, int64_t(n) * qd, int64_t(n) * c.ffn, int64_t(n) * c.ffn};
        const char* names[8] = {"logits", "x", "q", "k", "v", "att", "hb", "hb2"};
        size_t off = 0;
        for (int j = 0; j < 8; ++j) {
          std::vector<float> a(res[0].begin() + off, res[0].begin() + off + sizes[j]);
          std::vector<float> bb(res[1].begin() + off, res[1].begin() + off + sizes[j]);
          std::vector<float> cc(res[2].begin() + off, res[2].begin() + off + sizes[j]);
          std::printf("%s: fused/ref %.3g fused/cpu %.3g ref/cpu %.3g cpu finite %d\n", names[j], rel_l2(a, bb),
                      rel_l2(a, cc), rel_l2(bb, cc), int(all_finite(cc)));
          off += static_cast<size_t>(sizes[j]);
        }
      }
      ASSERT_TRUE(all_finite(res[0])) << "fused backend: non-finite output (an intermediate left unwritten?)";
      ASSERT_TRUE(all_finite(res[1]));
      EXPECT_LE(rel_l2(res[0], res[2]), quant ? 0.15 : 2e-3) << "fused vs CPU";
      EXPECT_LE(rel_l2(res[1], res[2]), quant ? 0.15 : 2e-3) << "one kernel per op vs CPU";
    }
    const auto st = ext_of(*fused)->graph_stats();
    EXPECT_GT(st.fused, 0) << "no fused kernel ran";
    EXPECT_GT(st.replays, 0);
    // int8 activations everywhere: the block boundaries after the o and down projections fold into them
    if (native_quant(c.wqk) && c.wo != DType::F16) EXPECT_GT(st.folded_norms, 0) << "no norm was folded";
    EXPECT_EQ(ext_of(*ref)->graph_stats().fused, 0);
    // one-token steps of int8 matvec layers whose weights are one format or a supported pair chain their launches
    if (c.wqk == DType::Q4_K && c.wv == DType::Q6_K)
      EXPECT_GT(ext_of(*chain)->graph_stats().chained, 0) << "no launch was chained";
  }
}

// ---------------------------------------------------------------------------------------------------------------
// end to end: vireo::Model on the stories260K fixtures, CUDA backend against the CPU backend
// ---------------------------------------------------------------------------------------------------------------
std::filesystem::path fixtures_models() {
  if (const char* d = std::getenv("VIREO_FIXTURES_DIR")) {
    std::filesystem::path p(d);
    if (std::filesystem::exists(p / "models")) return p / "models";
    return p;  // the stories260K files directly in it
  }
  return std::filesystem::path(VIREO_FIXTURES) / "models";
}

int argmax(const float* v, int n) { return static_cast<int>(std::max_element(v, v + n) - v); }

TEST_P(Gpu, EndToEndStories260K) {
  // VIREO_TEST_CPU_PATH=scalar|avx2|avx512 picks the CPU reference's kernels (the default: the best this CPU has).
  if (const char* p = std::getenv("VIREO_TEST_CPU_PATH")) {
    const std::string v = p;
    cpu::force_cpu_path(v == "scalar" ? cpu::CpuPath::Scalar : v == "avx2" ? cpu::CpuPath::Avx2 : cpu::CpuPath::Avx512);
  }
  const std::filesystem::path dir = fixtures_models();
  std::vector<std::filesystem::path> files;
  if (std::filesystem::exists(dir))
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      const std::string name = e.path().filename().string();
      if (name.rfind("stories260K", 0) == 0 && e.path().extension() == ".gguf") files.push_back(e.path());
    }
  if (files.empty())
    GTEST_SKIP() << "no stories260K-*.gguf in " << dir << " (set VIREO_FIXTURES_DIR to the fixtures folder)";
  std::sort(files.begin(), files.end());
  for (const auto& path : files) {
    const std::string name = path.filename().string();
    if (emu() && name.find("f32") != std::string::npos) continue;  // the emulator is slow; three files suffice
    SCOPED_TRACE(name);
    auto file = std::make_shared<const GgufFile>(GgufFile::open(path.string()));
    RunOptions ro;
    ro.n_ctx = 128;
    ro.max_batch = 32;
    Model cpu(file, make_cpu_backend(2), ro);
    Model gpu(file, make(), ro);
    const int V = cpu.config().n_vocab;
    const bool quantized = name.find("f16") == std::string::npos && name.find("f32") == std::string::npos;
    const double tol = quantized ? 3e-2 : 1e-2;  // relative L2 of the logits

    std::vector<int32_t> prompt = {1, 403, 407, 261, 378, 429, 285, 370, 263, 354, 280, 411};  // 12 > 8: tensor cores
    std::vector<float> lc(static_cast<size_t>(V)), lg(static_cast<size_t>(V));
    Batch b;
    for (size_t i = 0; i < prompt.size(); ++i) b.add(prompt[i], static_cast<int32_t>(i), 0, i + 1 == prompt.size());
    const int decode_steps = emu() ? 6 : 40;
    int pos = static_cast<int>(prompt.size());
    for (int s = 0; s <= decode_steps; ++s) {
      SCOPED_TRACE("step " + std::to_string(s));
      std::fill(lg.begin(), lg.end(), NAN);
      cpu.forward(b, lc);
      gpu.forward(b, lg);
      ASSERT_TRUE(all_finite(lg));
      double num = 0, den = 0, maxd = 0;
      for (int i = 0; i < V; ++i) {
        const double d = double(lg[i]) - lc[i];
        num += d * d, den += double(lc[i]) * lc[i], maxd = std::max(maxd, std::fabs(d));
      }
      const double rel = std::sqrt(num / den);
      EXPECT_LE(rel, tol);
      // Greedy tokens agree unless the CPU's best two are closer than the two backends are to each other.
      const int tc = argmax(lc.data(), V), tg = argmax(lg.data(), V);
      if (tc != tg) EXPECT_LE(lc[tc] - lc[tg], 2 * maxd) << "greedy token differs: cpu " << tc << ", cuda " << tg;
      b.clear();
      b.add(tc, pos++, 0, true);  // teacher forcing with the CPU's token
    }
    const auto st = ext_of(gpu.backend())->graph_stats();
    if (std::getenv("VIREO_TEST_DEBUG"))
      std::printf("%s: %lld captures, %lld replays, %lld recaptures, %lld eager, %lld fused\n", name.c_str(),
                  (long long)st.captures, (long long)st.replays, (long long)st.recaptures, (long long)st.eager_steps,
                  (long long)st.fused);
    EXPECT_GE(st.replays, decode_steps - 1) << "decode steps should replay a graph";
  }
}


// Synthetic Llama-3.2-1B (random weights, F16 and the Q4_K_M mix): the logits of every position of a 256-token
// prompt (one prefill step: the tensor-core path) and of 16 decode steps after it (the graph path), CUDA against
// the CPU backend. Tolerances (relative L2 per row): F16 1e-2; Q4_K_M 0.12 - there both backends round the
// activations to 8 bits for the K-quant dot products (in different groupings), and over 16 layers of random
// weights that rounding noise grows to a few percent (measured on an H100: see the printed summary).
TEST_P(Gpu, EndToEndSyntheticLlama1BLogits) {
  if (emu()) GTEST_SKIP() << "too large for the CPU emulator";
  for (const std::string type : {"f16", "q4_k_m"}) {
    SCOPED_TRACE(type);
    const double tol = type == "f16" ? 1e-2 : 0.12;
    const std::string path = (std::filesystem::temp_directory_path() / ("vireo-test-llama3.2-1b-" + type + ".gguf")).string();
    if (!std::filesystem::exists(path)) write_synthetic_gguf("llama3.2-1b", type, path, "", 7);
    auto file = std::make_shared<const GgufFile>(GgufFile::open(path));
    RunOptions ro;
    ro.n_ctx = 320;
    ro.max_batch = 256;
    Model cpu(file, make_cpu_backend(0), ro);
    // The prefill step also runs with the f16 weight copies (CudaOptions::f16_weights) and must agree with both.
    CudaOptions with_f16;
    with_f16.f16_weights = 1;
    Model gpu(file, make(), ro), gpu16(file, make(with_f16), ro);
    const int V = cpu.config().n_vocab;
    std::mt19937 rng(11);
    std::uniform_int_distribution<int32_t> tok(0, V - 1);
    Batch b;
    for (int i = 0; i < 256; ++i) b.add(tok(rng), i, 0, true);
    std::vector<float> lc(static_cast<size_t>(V) * 256), lg(lc.size(), NAN);
    cpu.forward(b, lc);
    {
      std::vector<float> l16(lc.size(), NAN);
      gpu16.forward(b, l16);
      gpu.forward(b, lg);
      ASSERT_TRUE(all_finite(l16));
      double num = 0, den = 0;
      for (size_t i = 0; i < lg.size(); ++i) num += (double(l16[i]) - lg[i]) * (double(l16[i]) - lg[i]), den += double(lg[i]) * lg[i];
      // Same f16 weights either way (dequantized once at load vs per step): only the summation order may differ.
      EXPECT_LE(std::sqrt(num / den), 1e-3) << "prefill with f16 weight copies vs dequantized per step";
    }
    ASSERT_TRUE(all_finite(lg));
    std::vector<double> rels;
    int disagree = 0, failures = 0;
    auto compare = [&](const float* c, const float* g, const std::string& where) {
      double num = 0, den = 0, maxd = 0;
      for (int i = 0; i < V; ++i) {
        const double d = double(g[i]) - c[i];
        num += d * d, den += double(c[i]) * c[i], maxd = std::max(maxd, std::fabs(d));
      }
      const double rel = std::sqrt(num / den);
      rels.push_back(rel);
      if (!(rel <= tol) && ++failures <= 5) ADD_FAILURE() << where << ": relative L2 " << rel << " > " << tol;
      const int tc = argmax(c, V), tg = argmax(g, V);
      if (tc != tg) {
        ++disagree;
        EXPECT_LE(c[tc] - c[tg], 2 * maxd) << where << ": greedy token differs: cpu " << tc << ", cuda " << tg;
      }
    };
    for (int r = 0; r < 256; ++r) compare(&lc[size_t(r) * V], &lg[size_t(r) * V], "prompt row " + std::to_string(r));
    int32_t next = argmax(&lc[size_t(255) * V], V);
    for (int s = 0; s < 16; ++s) {
      b.clear();
      b.add(next, 256 + s, 0, true);
      cpu.forward(b, std::span<float>(lc.data(), size_t(V)));
      gpu.forward(b, std::span<float>(lg.data(), size_t(V)));
      compare(lc.data(), lg.data(), "decode step " + std::to_string(s));
      next = argmax(lc.data(), V);
    }
    EXPECT_EQ(failures, 0);
    std::sort(rels.begin(), rels.end());
    std::printf("synthetic Llama-3.2-1B %s: relative L2 of the logits over 272 positions: median %.4g, max %.4g "
                "(tolerance %.3g); greedy tokens differ at %d positions\n",
                type.c_str(), rels[rels.size() / 2], rels.back(), tol, disagree);
    std::fflush(stdout);
  }
}

// Continuous batching on the GPU: requests batched together (and a prefix copied between slots) produce the same
// greedy tokens as each request alone.
TEST_P(Gpu, SchedulerBatchedEqualsSingleSequence) {
  if (emu()) GTEST_SKIP() << "the engine picks the real CUDA backend";
  const auto path = fixtures_models() / "stories260K-f32.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "no " << path;
  EngineOptions eo;
  eo.device = "cuda";
  eo.n_ctx = 256;
  eo.n_slots = 1;
  auto single = Engine::load(path.string(), eo);
  eo.n_slots = 4;
  auto batched = Engine::load(path.string(), eo);
  const std::vector<std::string> prompts = {"Once upon a time", "The little dog", "Lily and Tom went to the park.",
                                            "One day, a bird", "Sam had a red ball. He", "Once upon a time, Lily"};
  GenerateOptions g;
  g.sampling.temperature = 0;
  g.ignore_eos = true;
  g.max_tokens = 40;
  g.reuse_cache = false;
  std::vector<std::vector<int32_t>> ref(prompts.size()), got(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i)
    single->generate_tokens(single->tokenize(prompts[i], true), g, {}, [&](int32_t t) { ref[i].push_back(t); });
  g.reuse_cache = true;
  Scheduler& s = batched->scheduler();
  for (size_t i = 0; i < prompts.size(); ++i) {
    GenerateRequest r;
    r.prompt = batched->tokenize(prompts[i], true);
    r.opts = g;
    r.on_event = [&got, i](const StreamEvent& ev) {
      if (!ev.done) got[i].push_back(ev.token);
      return true;
    };
    s.submit(std::move(r));
    if (i == 4) s.step();  // the last request arrives while the first ones decode and shares a prefix with #0
  }
  s.run_until_idle();
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(got[i], ref[i]) << "request " << i << ": " << prompts[i];
  EXPECT_GT(s.metrics().prompt_from_cache, 0);
}


// Greedy steps read back only the argmax of each logits row (sample.cu): it must be exactly the host's argmax of
// the same logits, and a decode step on it must give the tokens the full-logits path gives.
TEST_P(Gpu, ArgmaxStepEqualsHostArgmax) {
  const auto path = fixtures_models() / "stories260K-f32.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "no " << path;
  auto file = std::make_shared<const GgufFile>(GgufFile::open(path.string()));
  RunOptions ro;
  ro.n_ctx = 64;
  ro.max_batch = 32;
  ro.n_slots = 2;
  Model gpu(file, make(), ro);
  const int V = gpu.config().n_vocab;
  Batch b;
  const std::vector<int32_t> prompt = {1, 403, 407, 261, 378, 429, 285, 370, 263, 354, 280, 411};
  for (int slot = 0; slot < 2; ++slot)
    for (size_t i = 0; i < prompt.size(); ++i) b.add(prompt[i] + slot, static_cast<int32_t>(i), slot, true);
  std::vector<float> logits(static_cast<size_t>(b.size()) * V);
  std::vector<int32_t> ids(static_cast<size_t>(b.size()), -1);
  gpu.forward(b, logits);
  gpu.forward_argmax(b, ids);
  for (int r = 0; r < b.size(); ++r)
    EXPECT_EQ(ids[r], vireo::argmax(std::span<const float>(logits.data() + size_t(r) * V, size_t(V)))) << "row " << r;
}


// The argmax of rows wider than one slice of the two-pass kernel: ties across slices go to the lowest id, NaN never
// wins, a row of NaN gives 0, a row of -inf its first id; exactly the host's argmax.
TEST_P(Gpu, ArgmaxOfWideRows) {
  auto be = make();
  const int cols = 20000, n = 7;
  std::vector<float> xv(size_t(n) * cols);
  for (int i = 0; i < n; ++i) {
    const std::vector<float> g = randn(cols, 300 + i, 3.f);
    std::copy(g.begin(), g.end(), xv.begin() + size_t(i) * cols);
  }
  auto row = [&](int i) { return xv.data() + size_t(i) * cols; };
  row(1)[19999] = 50.f;                                  // the last column
  row(2)[8191] = row(2)[8192] = row(2)[4000] = 50.f;     // ties in two slices: the lowest id
  row(3)[0] = NAN, row(3)[12345] = 60.f, row(3)[12346] = NAN;
  for (int c = 0; c < cols; ++c) row(4)[c] = NAN;        // all NaN: 0
  for (int c = 0; c < cols; ++c) row(5)[c] = -INFINITY;  // all -inf: the first
  row(6)[5] = INFINITY;
  Act x = be->alloc_act(n, cols);
  put(*be, x, xv);
  Batch b;
  for (int i = 0; i < n; ++i) b.add(0, i, 0, true);
  std::vector<int32_t> ids(n, -2);
  be->begin_step(b);
  be->end_step_argmax(x.with_rows(n), ids);
  for (int i = 0; i < n; ++i)
    EXPECT_EQ(ids[i], vireo::argmax(std::span<const float>(row(i), cols))) << "row " << i;
  EXPECT_EQ(ids[1], 19999);
  EXPECT_EQ(ids[2], 4000);
  EXPECT_EQ(ids[3], 12345);
  EXPECT_EQ(ids[4], 0);
  EXPECT_EQ(ids[5], 0);
  EXPECT_EQ(ids[6], 5);
}

// Candidates for the host's sampler picked on the GPU (end_step_candidates, the VIREO_CUDA_SAMPLE=0 path) equal the
// host's selection (tests/sampling_cases.h).
TEST_P(Gpu, CandidatesMatchHostSelection) {
  auto be = make();
  sampling_cases::check_candidates(*be, [&](Act x, const std::vector<float>& v) { put(*be, x, v); });
}

// Tokens drawn on the GPU (end_step_sample, sample.cu) equal the host Sampler's at the same uniform, on the rows of
// tests/sampling_cases.h (ties, NaN, -inf, flat rows, top-k beyond the 1,024 candidates a block keeps, ...).
TEST_P(Gpu, SamplingMatchesHostSampler) {
  auto be = make();
  ASSERT_TRUE(be->samples_on_device());
  const sampling_cases::Cases c = sampling_cases::make(emu() ? 3000 : 5000, emu() ? 24 : 64);
  Act x = be->alloc_act(c.n, c.vocab);
  put(*be, x, c.logits);
  sampling_cases::run_and_check(*be, c, x);
}

// Sampled steps draw on the GPU (sample.cu), or with VIREO_CUDA_SAMPLE=0 read back only the tokens near the top of
// each row for the host's sampler: either way the same seeded draws as sampling from the full logits (a request
// with logprobs takes that path).
TEST_P(Gpu, SampledOnGpuEqualsFullLogits) {
  if (emu()) GTEST_SKIP() << "the engine picks the real CUDA backend";
  const auto path = fixtures_models() / "stories260K-f32.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "no " << path;
  for (const char* device_sampling : {"1", "0"}) {
    SCOPED_TRACE(std::string("VIREO_CUDA_SAMPLE=") + device_sampling);
    ::setenv("VIREO_CUDA_SAMPLE", device_sampling, 1);
    EngineOptions eo;
    eo.device = "cuda";
    eo.n_ctx = 256;
    eo.n_slots = 4;
    auto eng = Engine::load(path.string(), eo);
    ::unsetenv("VIREO_CUDA_SAMPLE");
    sampling_cases::check_engine_draws_equal_full_logits(*eng, 48);
  }
}

// Decode chains (end_step_chain) against step-by-step runs: tests/chain_cases.h.
TEST_P(Gpu, DecodeChainEqualsStepByStep) {
  const auto path = fixtures_models() / "stories260K-f16.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "no " << path;
  chain_cases::chain_equals_steps(path, [&] { return make(); }, /*runs_stream=*/true);
}

TEST_P(Gpu, DecodeChainInTheSchedulerEqualsOneStepAtATime) {
  const auto path = fixtures_models() / "stories260K-f16.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "no " << path;
  chain_cases::scheduler_with_chains_equals_without(path, [&] { return make(); });
}

INSTANTIATE_TEST_SUITE_P(All, Gpu, ::testing::Values(Dev::Cuda, Dev::Emu), dev_name);

}  // namespace
}  // namespace vireo
