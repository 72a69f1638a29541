// PackedMatrix against a double-precision reference built from the reference dequantizer, on every weight type
// and every instruction-set path this CPU offers.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/cpu/matmul.h"
#include "backend/cpu/thread_pool.h"
#include "core/dtype.h"
#include "quant/quant.h"

namespace vireo::cpu {
namespace {

const DType kTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,
                        DType::Q8_0, DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K};

// Relative error bound ||y - ref|| / ||ref|| over all products of one matrix (85 activation rows): float weights
// see only f32 rounding; quantized weights also see the activations' 8-bit quantization, ~0.5% with a scale per 32
// (Q8_0-style) and ~0.8% with a scale per 256 (Q8_K-style, the k-quants). A single m is checked against 3x the
// bound: with few outputs (m = 1, 5 rows) the ratio itself is noisy.
double error_bound(DType t) {
  if (t == DType::F32) return 1e-5;
  if (t == DType::F16 || t == DType::BF16) return 1e-3;
  if (t == DType::Q2_K || t == DType::Q3_K || t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K) return 1.2e-2;
  return 1e-2;
}

std::vector<CpuPath> available_paths() {
  std::vector<CpuPath> p = {CpuPath::Scalar};
  if (best_cpu_path() >= CpuPath::Avx2) p.push_back(CpuPath::Avx2);
  if (best_cpu_path() >= CpuPath::Avx512) p.push_back(CpuPath::Avx512);
  return p;
}

struct PathGuard {
  CpuPath saved = active_cpu_path();
  ~PathGuard() { force_cpu_path(saved); }
};

// Rows of varying magnitude (weights of real models differ row to row), quantized by the reference quantizer.
std::vector<uint8_t> make_weights(DType t, int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::uniform_real_distribution<float> scale(0.02f, 2.0f);
  const int64_t rb = row_bytes(t, cols);
  std::vector<uint8_t> out(static_cast<size_t>(rows * rb));
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    const float s = scale(rng);
    for (auto& v : row) v = nd(rng) * s;
    if (t == DType::F32) {
      std::memcpy(out.data() + r * rb, row.data(), static_cast<size_t>(rb));
    } else if (t == DType::F16) {
      for (int64_t c = 0; c < cols; ++c) {
        const uint16_t h = fp32_to_fp16(row[c]);
        std::memcpy(out.data() + r * rb + 2 * c, &h, 2);
      }
    } else if (t == DType::BF16) {
      for (int64_t c = 0; c < cols; ++c) {
        const uint16_t h = fp32_to_bf16(row[c]);
        std::memcpy(out.data() + r * rb + 2 * c, &h, 2);
      }
    } else {
      quantize_row_ref(t, row.data(), out.data() + r * rb, cols);
    }
  }
  return out;
}

void check_product(DType t, int64_t rows, int64_t cols, CpuPath path, ThreadPool& pool, uint32_t seed,
                   std::initializer_list<int64_t> ms = {1, 3, 17, 64}) {
  SCOPED_TRACE(std::string(dtype_name(t)) + " rows=" + std::to_string(rows) + " cols=" + std::to_string(cols) +
               " path=" + cpu_path_name(path) + " threads=" + std::to_string(pool.size()));
  const std::vector<uint8_t> w = make_weights(t, rows, cols, seed);
  PackedMatrix pm(t, w.data(), rows, cols);
  ASSERT_EQ(pm.rows(), rows);
  ASSERT_EQ(pm.cols(), cols);
  ASSERT_EQ(pm.type(), t);
  ASSERT_GE(pm.bytes(), row_bytes(t, cols) * rows);

  // Reference rows, and dequantize_row must match the reference dequantizer bit for bit.
  std::vector<double> wd(static_cast<size_t>(rows * cols));
  std::vector<float> ref_row(static_cast<size_t>(cols)), got_row(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    dequantize_row(t, w.data() + r * row_bytes(t, cols), ref_row.data(), cols);
    std::fill(got_row.begin(), got_row.end(), std::numeric_limits<float>::quiet_NaN());
    pm.dequantize_row(r, got_row.data());
    ASSERT_EQ(0, std::memcmp(ref_row.data(), got_row.data(), static_cast<size_t>(cols) * 4)) << "row " << r;
    for (int64_t c = 0; c < cols; ++c) wd[r * cols + c] = ref_row[c];
  }

  std::mt19937 rng(seed * 7 + 1);
  std::normal_distribution<float> nd(0.f, 1.f);
  double all_err2 = 0, all_ref2 = 0;
  for (int64_t m : ms) {
    const int64_t ldx = cols + 5, ldy = rows + 3;
    std::vector<float> x(static_cast<size_t>(m * ldx));
    for (auto& v : x) v = nd(rng);
    // Poison: every element must be written, and nothing past `rows` in a row of y.
    std::vector<float> y(static_cast<size_t>(m * ldy), std::numeric_limits<float>::quiet_NaN());
    pm.matmul(x.data(), m, ldx, y.data(), ldy, pool);
    double err2 = 0, ref2 = 0;
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t r = 0; r < rows; ++r) {
        double ref = 0;
        for (int64_t c = 0; c < cols; ++c) ref += wd[r * cols + c] * static_cast<double>(x[i * ldx + c]);
        const float got = y[i * ldy + r];
        ASSERT_TRUE(std::isfinite(got)) << "y[" << i << "][" << r << "] not written or not finite, m=" << m;
        err2 += (got - ref) * (got - ref);
        ref2 += ref * ref;
      }
      for (int64_t r = rows; r < ldy; ++r)
        ASSERT_TRUE(std::isnan(y[i * ldy + r])) << "wrote past the last row, m=" << m << " i=" << i;
    }
    const double rel = std::sqrt(err2 / ref2);
    EXPECT_LT(rel, 3 * error_bound(t)) << "m=" << m;
    EXPECT_FALSE(std::isnan(rel));
    all_err2 += err2;
    all_ref2 += ref2;
  }
  const double rel = std::sqrt(all_err2 / all_ref2);
  EXPECT_LT(rel, error_bound(t));
  if (std::getenv("VIREO_TEST_VERBOSE")) std::printf("  %-5s %4lld x %-5lld %-7s rel err %.3g\n", std::string(dtype_name(t)).c_str(), (long long)rows, (long long)cols, cpu_path_name(path), rel);
}

class MatmulTypes : public ::testing::TestWithParam<DType> {};

TEST_P(MatmulTypes, MatchesReferenceOnEveryPath) {
  const DType t = GetParam();
  PathGuard guard;
  static ThreadPool pool2(2);
  static ThreadPool pool3(3);
  uint32_t seed = 1234 + static_cast<uint32_t>(t) * 17;
  for (CpuPath p : available_paths()) {
    force_cpu_path(p);
    ASSERT_EQ(active_cpu_path(), p);
    for (int64_t cols : {256, 2048}) {
      check_product(t, 67, cols, p, pool2, seed++);
      if (HasFatalFailure()) return;
    }
    // Uneven thread split, a single partial group, and a larger row count.
    check_product(t, 5, 512, p, pool3, seed++);
    if (HasFatalFailure()) return;
    check_product(t, 200, 768, p, pool3, seed++);
    if (HasFatalFailure()) return;
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, MatmulTypes, ::testing::ValuesIn(kTypes),
                         [](const ::testing::TestParamInfo<DType>& i) { return std::string(dtype_name(i.param)); });

TEST(Matmul, FloatTypesTakeAnyColumnCount) {
  PathGuard guard;
  ThreadPool pool(2);
  for (CpuPath p : available_paths()) {
    force_cpu_path(p);
    for (DType t : {DType::F32, DType::F16, DType::BF16}) check_product(t, 19, 37, p, pool, 99);
  }
}

TEST(Matmul, PathsAgree) {
  // Integer parts are exact, so the paths differ only by float rounding: much tighter than the error bound.
  PathGuard guard;
  ThreadPool pool(2);
  const int64_t rows = 48, cols = 1024, m = 5;
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> x(static_cast<size_t>(m * cols));
  for (auto& v : x) v = nd(rng);
  for (DType t : kTypes) {
    const std::vector<uint8_t> w = make_weights(t, rows, cols, 77);
    PackedMatrix pm(t, w.data(), rows, cols);
    std::vector<float> y0(static_cast<size_t>(m * rows));
    force_cpu_path(CpuPath::Scalar);
    pm.matmul(x.data(), m, cols, y0.data(), rows, pool);
    for (CpuPath p : available_paths()) {
      force_cpu_path(p);
      std::vector<float> y(static_cast<size_t>(m * rows));
      pm.matmul(x.data(), m, cols, y.data(), rows, pool);
      double e2 = 0, r2 = 0;
      for (size_t i = 0; i < y.size(); ++i) {
        e2 += (double(y[i]) - y0[i]) * (double(y[i]) - y0[i]);
        r2 += double(y0[i]) * y0[i];
      }
      EXPECT_LT(std::sqrt(e2 / r2), 1e-5) << dtype_name(t) << " " << cpu_path_name(p);
    }
  }
}

TEST(Matmul, PathsAgreeAtExtremeCodes) {
  // Weights at the top of their code range and activations at +-127 everywhere: the largest integer sums any
  // kernel can meet (the AVX2 kernels add several vpmaddubsw pair sums in int16 before widening; an overflow
  // there would be far off the scalar result).
  PathGuard guard;
  ThreadPool pool(2);
  const int64_t rows = 32, cols = 1024, m = 3;
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t c = 0; c < cols; ++c) row[c] = c % 16 == 15 ? -1.f : 1.f;  // +1 takes the largest code
  for (DType t : kTypes) {
    if (t == DType::F32 || t == DType::F16 || t == DType::BF16) continue;
    std::vector<uint8_t> w(static_cast<size_t>(rows * row_bytes(t, cols)));
    for (int64_t r = 0; r < rows; ++r) quantize_row_ref(t, row.data(), w.data() + r * row_bytes(t, cols), cols);
    PackedMatrix pm(t, w.data(), rows, cols);
    for (float sign : {1.f, -1.f}) {
      std::vector<float> x(static_cast<size_t>(m * cols), sign);
      std::vector<float> y0(static_cast<size_t>(m * rows));
      force_cpu_path(CpuPath::Scalar);
      pm.matmul(x.data(), m, cols, y0.data(), rows, pool);
      for (CpuPath p : available_paths()) {
        force_cpu_path(p);
        for (int64_t mm : {int64_t(1), m}) {
          std::vector<float> y(static_cast<size_t>(mm * rows));
          pm.matmul(x.data(), mm, cols, y.data(), rows, pool);
          for (size_t i = 0; i < y.size(); ++i)
            ASSERT_NEAR(y[i], y0[i], 1e-4 * std::fabs(y0[i]) + 1e-3)
                << dtype_name(t) << " " << cpu_path_name(p) << " m=" << mm << " sign " << sign << " at " << i;
        }
      }
    }
  }
}

TEST(Matmul, ManyActivationRows) {
  // Past the kernels' 64-row activation blocks, with remainders of every tile height.
  PathGuard guard;
  ThreadPool pool(2);
  for (CpuPath p : available_paths()) {
    force_cpu_path(p);
    for (DType t : {DType::Q4_K, DType::Q6_K, DType::Q8_0, DType::Q4_1, DType::F16})
      check_product(t, 40, 512, p, pool, 11, {130, 71});
  }
}

TEST(Matmul, SharedInputMatchesSeparateProducts) {
  // q/k/v- and gate/up-like groups of mixed types (Q4_K and Q5_K share an activation format, Q6_K and Q8_0 and
  // F16 want others) in one region: each output equals its own product bit for bit (same activation
  // quantization, same kernels; only the work split differs), on every path and pool size, and nothing past a
  // matrix's rows is written.
  PathGuard guard;
  struct Spec {
    DType t;
    int64_t rows;
  };
  const std::vector<std::vector<Spec>> sets = {
      {{DType::Q4_K, 200}, {DType::Q4_K, 40}, {DType::Q6_K, 40}},
      {{DType::Q4_K, 176}, {DType::Q5_K, 176}},
      {{DType::Q8_0, 33}, {DType::F16, 17}, {DType::Q6_K, 64}, {DType::Q4_K, 5}},
  };
  const int64_t cols = 512;
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (CpuPath p : available_paths()) {
      force_cpu_path(p);
      for (const auto& set : sets) {
        std::vector<std::vector<uint8_t>> bytes;
        std::vector<PackedMatrix> mats;
        for (size_t j = 0; j < set.size(); ++j) {
          bytes.push_back(make_weights(set[j].t, set[j].rows, cols, static_cast<uint32_t>(50 + j)));
          mats.emplace_back(set[j].t, bytes.back().data(), set[j].rows, cols);
        }
        for (int64_t m : {1, 3, 9}) {
          SCOPED_TRACE(std::string(cpu_path_name(p)) + " threads=" + std::to_string(threads) +
                       " m=" + std::to_string(m) + " first=" + std::string(dtype_name(set[0].t)));
          const int64_t ldx = cols + 3;
          std::mt19937 rng(static_cast<uint32_t>(m * 31 + threads));
          std::normal_distribution<float> nd(0.f, 1.f);
          std::vector<float> x(static_cast<size_t>(m * ldx));
          for (auto& v : x) v = nd(rng);
          std::vector<std::vector<float>> shared(set.size()), separate(set.size());
          std::vector<MatmulOut> outs;
          for (size_t j = 0; j < set.size(); ++j) {
            const int64_t ldy = set[j].rows + 2;
            shared[j].assign(static_cast<size_t>(m * ldy), std::numeric_limits<float>::quiet_NaN());
            separate[j].assign(static_cast<size_t>(m * ldy), std::numeric_limits<float>::quiet_NaN());
            mats[j].matmul(x.data(), m, ldx, separate[j].data(), ldy, pool);
            outs.push_back({&mats[j], shared[j].data(), ldy});
          }
          matmul_shared_input(x.data(), m, ldx, outs, pool);
          for (size_t j = 0; j < set.size(); ++j) {
            const int64_t ldy = set[j].rows + 2;
            for (int64_t i = 0; i < m; ++i) {
              for (int64_t r = 0; r < set[j].rows; ++r)
                ASSERT_EQ(separate[j][i * ldy + r], shared[j][i * ldy + r]) << "matrix " << j << " y[" << i << "][" << r << "]";
              for (int64_t r = set[j].rows; r < ldy; ++r)
                ASSERT_TRUE(std::isnan(shared[j][i * ldy + r])) << "matrix " << j << " wrote past its rows";
            }
          }
        }
      }
    }
  }
}

TEST(Matmul, SingleThreadPool) {
  PathGuard guard;
  ThreadPool pool(1);
  for (CpuPath p : available_paths()) {
    force_cpu_path(p);
    check_product(DType::Q4_K, 33, 512, p, pool, 3);
    check_product(DType::Q8_0, 33, 512, p, pool, 4);
  }
}

TEST(Matmul, UnsupportedTypeNamesIt) {
  std::vector<uint8_t> w(4096);
  try {
    PackedMatrix pm(DType::Q8_K, w.data(), 2, 256);
    FAIL() << "expected an exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("Q8_K"), std::string::npos) << e.what();
  }
  EXPECT_THROW(PackedMatrix(DType::I32, w.data(), 2, 8), std::runtime_error);
}

TEST(Matmul, ForceNeverAboveBest) {
  PathGuard guard;
  force_cpu_path(CpuPath::Avx512);
  EXPECT_LE(active_cpu_path(), best_cpu_path());
  force_cpu_path(CpuPath::Scalar);
  EXPECT_EQ(active_cpu_path(), CpuPath::Scalar);
}

}  // namespace
}  // namespace vireo::cpu
