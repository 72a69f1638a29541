// The WebGPU backend against the references: every kernel on random inputs (matmul against the reference
// dequantizer and double-precision products; the other ops against the CPU backend), then end to end on
// stories260K against the golden text and the CPU path. Runs on any WebGPU adapter (in CI: Mesa's lavapipe,
// Vulkan on the CPU); skips, saying why, when the build has no WebGPU backend or no adapter is found.
//
// Error bounds (f32 arithmetic on both sides; the WebGPU kernels dequantize weights exactly to f32):
//   matmul: |y - ref| <= 3e-6 * sum_k |w_k x_k| + 1e-6, element by element (f32 sums of up to 4096 products);
//   rmsnorm / rope / swiglu / add: 2e-6 relative (same f32 formulas; sqrt/exp/sin/cos may differ by an ulp);
//   attention over the f16 cache: 2e-5 relative to the largest |output| (same f16 keys/values; exp and summation
//   order differ); end-to-end logits: 2e-4 absolute on stories260K (f32 KV) and the same greedy text.
// NaN or inf anywhere fails.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>

#include "backend/cpu/cpu_backend.h"
#include "fixture_files.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "model/synth.h"
#include "quant/quant.h"
#include "runtime/backend.h"
#include "runtime/sampler.h"
#include "chain_cases.h"
#include "sampling_cases.h"
#include "vireo/vireo.h"
#ifdef VIREO_HAVE_WEBGPU
#include "backend/webgpu/webgpu_backend.h"
#endif

namespace vireo {
namespace {

const std::string kFixtures = VIREO_FIXTURES;

#ifdef VIREO_HAVE_WEBGPU
bool adapter_ok(std::string* why) {
  static std::string reason;
  static const bool ok = webgpu_available(&reason);
  *why = reason;
  return ok;
}
#define REQUIRE_WEBGPU()                                                                      \
  do {                                                                                        \
    std::string why_;                                                                         \
    if (!adapter_ok(&why_)) GTEST_SKIP() << "no WebGPU adapter here (" << why_ << ")";        \
  } while (0)
#else
#define REQUIRE_WEBGPU() GTEST_SKIP() << "built without the WebGPU backend (wgpu-native not found at configure time)"
#endif

std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng) * scale;
  return v;
}

void expect_finite(const std::vector<float>& v, const char* what) {
  for (size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i])) {
      ADD_FAILURE() << what << ": non-finite value at " << i;
      return;
    }
}

void expect_close_rel(const std::vector<float>& got, const std::vector<float>& want, float rel, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  expect_finite(got, what);
  float scale = 0;
  for (float w : want) scale = std::max(scale, std::fabs(w));
  int bad = 0;
  for (size_t i = 0; i < got.size() && bad < 5; ++i)
    if (!(std::fabs(got[i] - want[i]) <= rel * scale + 1e-7f)) {
      ADD_FAILURE() << what << "[" << i << "]: " << got[i] << " vs " << want[i] << " (scale " << scale << ")";
      ++bad;
    }
}

Batch batch_of(int n, int slot = 0, int pos0 = 0) {
  Batch b;
  for (int i = 0; i < n; ++i) b.add(0, pos0 + i, slot, false);
  return b;
}

#ifdef VIREO_HAVE_WEBGPU
using webgpu_testing::prefill_in_f16;
using webgpu_testing::read_act;
using webgpu_testing::write_act;

// Sets (or with nullptr unsets) an environment variable for one scope, restoring the old value after.
struct ScopedEnv {
  ScopedEnv(const char* name, const char* value) : name_(name) {
    const char* old = std::getenv(name);
    had_ = old != nullptr;
    if (had_) old_ = old;
    if (value) setenv(name, value, 1);
    else unsetenv(name);
  }
  ~ScopedEnv() {
    if (had_) setenv(name_.c_str(), old_.c_str(), 1);
    else unsetenv(name_.c_str());
  }
  std::string name_, old_;
  bool had_ = false;
};

std::vector<float> read_cpu(Act a, int64_t rows) {
  const float* p = static_cast<const float*>(a.data);
  return std::vector<float>(p, p + rows * a.cols);
}
void write_cpu(Act a, const std::vector<float>& v) { std::copy(v.begin(), v.end(), static_cast<float*>(a.data)); }

// A weight of `rows` x `k` random values, quantized to `type`: the GGUF bytes and their exact f32 values.
struct TestWeight {
  std::vector<uint8_t> bytes;
  std::vector<float> values;
};
TestWeight make_weight(DType type, int64_t rows, int64_t k, uint32_t seed) {
  TestWeight w;
  const std::vector<float> src = randn(static_cast<size_t>(rows * k), seed, 0.5f);
  const int64_t rb = row_bytes(type, k);
  w.bytes.resize(static_cast<size_t>(rows * rb));
  w.values.resize(src.size());
  for (int64_t r = 0; r < rows; ++r) {
    quantize_row_ref(type, src.data() + r * k, w.bytes.data() + r * rb, k);
    dequantize_row(type, w.bytes.data() + r * rb, w.values.data() + r * k, k);
  }
  return w;
}

// One-token Q4_K / Q6_K products run over int8 activations (natively wgpu-native always has packed 4x8-bit dot
// products): s = max|x| / 127 per 32 elements, q = round(x / s), as wgsl/matvec_int8.wgsl's quantize_x does.
bool int8_path(DType type, int n, bool int8_decode) {
  const char* env = std::getenv("VIREO_WEBGPU_INT8");
  return int8_decode && n == 1 && (type == DType::Q4_K || type == DType::Q6_K) && !(env && std::string(env) == "0");
}
std::vector<float> int8_activations(const std::vector<float>& x) {
  std::vector<float> q(x.size());
  for (size_t b = 0; b + 32 <= x.size(); b += 32) {
    float amax = 0;
    for (size_t i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[b + i]));
    const float s = amax / 127.f, inv = amax > 0 ? 127.f / amax : 0.f;
    for (size_t i = 0; i < 32; ++i) q[b + i] = std::nearbyint(x[b + i] * inv) * s;
  }
  return q;
}

// A one-token int8 product read back from the GPU (one value per row of w) against the double-precision sum of
// w's exact values times x's int8 activations, within 1e-5 of sum |w xq| per row.
void expect_int8_product(const std::vector<float>& got, const TestWeight& w, const std::vector<float>& x) {
  const std::vector<float> xq = int8_activations(x);
  const int64_t k = static_cast<int64_t>(xq.size());
  for (size_t r = 0; r < got.size(); ++r) {
    double ref = 0, mag = 0;
    for (int64_t i = 0; i < k; ++i) ref += double(w.values[r * k + i]) * xq[i], mag += std::fabs(w.values[r * k + i] * xq[i]);
    ASSERT_NEAR(got[r], ref, 1e-5 * mag + 1e-6) << "row " << r;
  }
}

// The product on the GPU against a double-precision reference over the exact weights: f32 activations within
// 3e-6 of sum |w x|; the int8 path (one token, Q4_K / Q6_K) against the same sum over its quantized activations
// within 1e-5 (f32 sums of exact integer products; a rounding tie decided differently moves one element).
void check_matmul(DType type, int64_t rows, int64_t k, int n, uint64_t max_binding = 0, bool int8_decode = true,
                  bool f16_prefill = true) {
  SCOPED_TRACE(std::string(dtype_name(type)) + " " + std::to_string(rows) + "x" + std::to_string(k) + " n=" +
               std::to_string(n) + (int8_path(type, n, int8_decode) ? " (int8 activations)" : ""));
  WebGpuOptions o;
  o.max_binding_bytes = max_binding;
  o.int8_decode = int8_decode;
  o.f16_matmul = f16_prefill;
  auto be = make_webgpu_backend(o);
  const TestWeight w = make_weight(type, rows, k, 7 + static_cast<uint32_t>(type));
  const Weight* wt = be->upload_weight("w", type, {k, rows}, w.bytes);
  Act x = be->alloc_act(n, k), y = be->alloc_act(n, rows);
  const std::vector<float> xv = randn(static_cast<size_t>(n * k), 99);
  write_act(*be, x, xv);
  write_act(*be, y, std::vector<float>(static_cast<size_t>(n * rows), NAN));
  Batch b = batch_of(n);
  be->begin_step(b);
  be->matmul(wt, x.with_rows(n), y.with_rows(n));
  be->end_step(Act{}, {});
  const std::vector<float> got = read_act(*be, y, n);
  const bool int8 = int8_path(type, n, int8_decode);
  const std::vector<float> xr = int8 ? int8_activations(xv) : xv;
  // Prefill tiles in f16 arithmetic (more than 8 tokens, shader-f16; Q4_K / Q6_K only with their tiles on): x and w
  // rounded to halves and f16 sums over 32 elements, within 2e-3 of sum |w x| (8 half-precision units; the
  // sums' rounding grows like sqrt(32) units for random signs; 5e-4 seen on lavapipe).
  const bool f16 = n > 8 && prefill_in_f16(*be, type);
  const double tol = int8 ? 1e-5 : f16 ? 2e-3 : 3e-6;
  double worst = 0;
  int bad = 0;
  for (int t = 0; t < n; ++t)
    for (int64_t r = 0; r < rows && bad < 5; ++r) {
      double ref = 0, mag = 0;
      for (int64_t i = 0; i < k; ++i) {
        const double p = double(w.values[r * k + i]) * xr[t * k + i];
        ref += p;
        mag += std::fabs(p);
      }
      const float g = got[t * rows + r];
      worst = std::max(worst, std::fabs(g - ref) / (mag + 1e-30));
      if (!(std::fabs(g - ref) <= tol * mag + 1e-6)) {
        ADD_FAILURE() << "y[" << t << "," << r << "] = " << g << ", reference " << ref << " (sum |wx| " << mag << ")";
        ++bad;
      }
    }
  if (std::getenv("VIREO_TEST_VERBOSE")) std::fprintf(stderr, "  worst |y - ref| / sum |wx| %.3g%s\n", worst, f16 ? " (f16)" : "");
}

TEST(WebGpu, PipelinesCompileUpFrontWithProgress) {
  REQUIRE_WEBGPU();
  std::vector<std::pair<int64_t, int64_t>> calls;
  WebGpuOptions o;
  o.on_compile = [&](int64_t done, int64_t total) { calls.emplace_back(done, total); };
  auto be = make_webgpu_backend(o);
  ASSERT_GE(calls.size(), 20u);  // matmul/matvec/embed per weight type, norms, rope, attention, sampling
  for (size_t i = 0; i < calls.size(); ++i) {
    EXPECT_EQ(calls[i].first, static_cast<int64_t>(i + 1));
    EXPECT_EQ(calls[i].second, calls.back().first);
  }
}

TEST(WebGpu, MatmulEveryWeightType) {
  REQUIRE_WEBGPU();
  // Types with kernels, then types dequantized to f32 at upload (Q5_0, Q5_K, BF16).
  for (DType t : {DType::F32, DType::F16, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K, DType::Q5_0,
                  DType::Q5_K, DType::BF16})
    for (int n : {1, 3, 9}) check_matmul(t, 72, 512, n);
}

TEST(WebGpu, MatmulRealShapes) {
  REQUIRE_WEBGPU();
  // TinyLlama's K/V projection (2048 -> 256) and a down projection row length (5632), one and 8 tokens.
  check_matmul(DType::Q4_K, 256, 2048, 1);
  check_matmul(DType::Q6_K, 256, 2048, 8);
  check_matmul(DType::Q8_0, 64, 5632, 2);
  check_matmul(DType::F32, 48, 172, 3);  // stories260K's FFN: rows that end in a partial 32-element block
  // Long rows: decode lanes take items in pairs, with a single one left over on some lanes (17 superblocks).
  check_matmul(DType::Q4_K, 24, 4352, 1);
  check_matmul(DType::Q6_K, 24, 4352, 1);
  check_matmul(DType::Q4_K, 24, 4352, 1, 0, false);  // the f32-activation kernels, where int8 is not in use
  check_matmul(DType::Q6_K, 24, 4352, 1, 0, false);
  // Prefill tiles (64 rows x 32 tokens): partial row and token tiles, several of each, a partial last sub-block.
  check_matmul(DType::Q4_K, 130, 512, 70);
  check_matmul(DType::Q6_K, 64, 256, 33);
  {
    ScopedEnv tiles("VIREO_WEBGPU_KQ_TILES", "1");  // Q4_K / Q6_K prefill in the tiles as well
    check_matmul(DType::Q4_K, 130, 512, 70);
    check_matmul(DType::Q6_K, 64, 256, 33);
  }
  check_matmul(DType::F32, 100, 172, 40);
  check_matmul(DType::Q8_0, 192, 2048, 40);
  check_matmul(DType::Q8_0, 70, 544, 40);  // an odd number of sub-blocks (the f16 tiles take two per stage)
  check_matmul(DType::F16, 64, 5632, 12);
  check_matmul(DType::F32, 100, 172, 40, 0, true, false);  // f32 arithmetic where f16 is turned off
}

// Consecutive one-token products of the same activation share one int8 copy of it (q/k/v, gate/up); a write
// to the activation in between, or another activation, makes a fresh one. Each product against its reference.
TEST(WebGpu, Int8ActivationsFollowWrites) {
  REQUIRE_WEBGPU();
  const int64_t k = 512, rows = 40;
  auto be = make_webgpu_backend();
  const TestWeight wa = make_weight(DType::Q4_K, rows, k, 11), wb = make_weight(DType::Q6_K, rows, k, 12);
  const Weight* ta = be->upload_weight("a", DType::Q4_K, {k, rows}, wa.bytes);
  const Weight* tb = be->upload_weight("b", DType::Q6_K, {k, rows}, wb.bytes);
  Act x = be->alloc_act(1, k), z = be->alloc_act(1, k), x2 = be->alloc_act(1, k);
  Act y1 = be->alloc_act(1, rows), y2 = be->alloc_act(1, rows), y3 = be->alloc_act(1, rows), y4 = be->alloc_act(1, rows);
  const std::vector<float> xv = randn(k, 1), zv = randn(k, 2), x2v = randn(k, 3);
  write_act(*be, x, xv);
  write_act(*be, z, zv);
  write_act(*be, x2, x2v);
  Batch b = batch_of(1);
  be->begin_step(b);
  be->matmul(ta, x, y1);
  be->matmul(tb, x, y2);  // shares y1's int8 copy of x
  be->add(x, z);          // x += z: the next product must quantize again
  be->matmul(ta, x, y3);
  be->matmul(tb, x2, y4);  // another activation
  be->end_step(Act{}, {});
  std::vector<float> xz(xv);
  for (int64_t i = 0; i < k; ++i) xz[i] += zv[i];
  auto expect = [&](Act y, const TestWeight& w, const std::vector<float>& xin, const char* what) {
    SCOPED_TRACE(what);
    expect_int8_product(read_act(*be, y, 1), w, xin);
  };
  if (!int8_path(DType::Q4_K, 1, true)) GTEST_SKIP() << "int8 products off (VIREO_WEBGPU_INT8=0)";
  expect(y1, wa, xv, "q4_k of x");
  expect(y2, wb, xv, "q6_k of x, sharing the int8 copy");
  expect(y3, wa, xz, "q4_k of x + z");
  expect(y4, wb, x2v, "q6_k of another activation");
}

// Consecutive one-token products of one activation run three to a dispatch (matvec_multi_i8, mixed Q4_K and
// Q6_K, any row counts): four products are a quantize dispatch, a fused dispatch of three and a single one.
TEST(WebGpu, Int8ProductsOfOneActivationShareADispatch) {
  REQUIRE_WEBGPU();
  if (!int8_path(DType::Q4_K, 1, true)) GTEST_SKIP() << "int8 products off (VIREO_WEBGPU_INT8=0)";
  const int64_t k = 768;
  const DType types[4] = {DType::Q4_K, DType::Q6_K, DType::Q4_K, DType::Q6_K};
  const int64_t rows[4] = {72, 17, 40, 9};
  auto be = make_webgpu_backend();
  std::vector<TestWeight> ws;
  std::vector<const Weight*> ts;
  std::vector<Act> ys;
  for (int m = 0; m < 4; ++m) {
    ws.push_back(make_weight(types[m], rows[m], k, 31 + m));
    ts.push_back(be->upload_weight("w" + std::to_string(m), types[m], {k, rows[m]}, ws.back().bytes));
    ys.push_back(be->alloc_act(1, rows[m]));
  }
  Act x = be->alloc_act(1, k);
  const std::vector<float> xv = randn(k, 7);
  write_act(*be, x, xv);
  Batch b = batch_of(1);
  const int64_t before = be->counters().dispatches;
  be->begin_step(b);
  for (int m = 0; m < 4; ++m) be->matmul(ts[m], x, ys[m]);
  be->end_step(Act{}, {});
  EXPECT_EQ(be->counters().dispatches - before, 3);
  for (int m = 0; m < 4; ++m) {
    SCOPED_TRACE("product " + std::to_string(m));
    expect_int8_product(read_act(*be, ys[m], 1), ws[m], xv);
  }
}

TEST(WebGpu, WeightsSplitAcrossBindings) {
  REQUIRE_WEBGPU();
  // 4 KiB bindings: a 300-row Q4_K matrix becomes 11 chunks, each its own dispatch.
  check_matmul(DType::Q4_K, 300, 256, 2, 4096);
  check_matmul(DType::Q4_K, 300, 256, 1, 4096);  // one token: an int8 product dispatch per chunk
  check_matmul(DType::F16, 130, 96, 1, 1024);
  check_matmul(DType::Q8_0, 200, 128, 20, 4096);  // prefill tiles over row chunks (col0)
}

TEST(WebGpu, EmbedEveryTypeAndSplitTable) {
  REQUIRE_WEBGPU();
  for (DType t : {DType::F32, DType::F16, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K, DType::Q5_K})
    for (uint64_t limit : {uint64_t(0), uint64_t(2048)}) {
      SCOPED_TRACE(std::string(dtype_name(t)) + " binding limit " + std::to_string(limit));
      WebGpuOptions o;
      o.max_binding_bytes = limit;
      auto be = make_webgpu_backend(o);
      const int64_t rows = 40, k = 256;
      const TestWeight w = make_weight(t, rows, k, 3);
      const Weight* table = be->upload_weight("emb", t, {k, rows}, w.bytes);
      Act out = be->alloc_act(4, k);
      Batch b;
      for (int32_t tok : {39, 0, 17, 39}) b.add(tok, static_cast<int32_t>(b.size()), 0, false);
      be->begin_step(b);
      be->embed(table, out.with_rows(4));
      be->end_step(Act{}, {});
      const std::vector<float> got = read_act(*be, out, 4);
      for (int i = 0; i < 4; ++i)
        for (int64_t j = 0; j < k; ++j)
          ASSERT_EQ(got[i * k + j], w.values[b.tokens[i] * k + j]) << "token " << b.tokens[i] << " element " << j;
    }
}

// Runs the same ops on the CPU backend and the WebGPU backend from the same inputs; returns both outputs.
struct Pair {
  std::unique_ptr<Backend> cpu = make_cpu_backend(1);
  std::unique_ptr<Backend> gpu = make_webgpu_backend();
};

TEST(WebGpu, NormsAndElementwiseMatchCpu) {
  REQUIRE_WEBGPU();
  Pair p;
  const int n = 5, d = 2048, f = 700;
  const std::vector<float> xv = randn(n * d, 1), yv = randn(n * d, 2), gv = randn(d, 3), bv = randn(f, 4);
  const std::vector<float> av = randn(n * f, 5, 3.f), cv = randn(n * f, 6);
  std::vector<uint8_t> gbytes(d * 4), bbytes(f * 4);
  std::memcpy(gbytes.data(), gv.data(), gbytes.size());
  std::memcpy(bbytes.data(), bv.data(), bbytes.size());
  struct Out { std::vector<float> norm, add_norm, x_after, swiglu, swiglu_in, added, biased; };
  auto run = [&](Backend& be, bool gpu) {
    auto put = [&](Act a, const std::vector<float>& v) { gpu ? write_act(be, a, v) : write_cpu(a, v); };
    auto get = [&](Act a, int64_t rows) { return gpu ? read_act(be, a, rows) : read_cpu(a, rows); };
    const Weight* g = be.upload_weight("g", DType::F32, {d}, gbytes);
    const Weight* bias = be.upload_weight("b", DType::F32, {f}, bbytes);
    Act x = be.alloc_act(n, d), y = be.alloc_act(n, d), o = be.alloc_act(n, d), o2 = be.alloc_act(n, d);
    Act a = be.alloc_act(n, f), c = be.alloc_act(n, f), s = be.alloc_act(n, f), a2 = be.alloc_act(n, f);
    put(x, xv), put(y, yv), put(a, av), put(c, cv), put(a2, av);
    Batch b = batch_of(n);
    be.begin_step(b);
    be.rmsnorm(x.with_rows(n), g, 1e-5f, o.with_rows(n));
    be.add_rmsnorm(x.with_rows(n), y.with_rows(n), g, 1e-6f, o2.with_rows(n));
    be.swiglu(a.with_rows(n), c.with_rows(n), s.with_rows(n));
    be.swiglu(a2.with_rows(n), c.with_rows(n), a2.with_rows(n));  // in place, as the Llama step does
    be.add(c.with_rows(n), a.with_rows(n));
    be.add_bias(a.with_rows(n), bias);
    be.end_step(Act{}, {});
    return Out{get(o, n), get(o2, n), get(x, n), get(s, n), get(a2, n), get(c, n), get(a, n)};
  };
  const Out want = run(*p.cpu, false), got = run(*p.gpu, true);
  expect_close_rel(got.norm, want.norm, 2e-6f, "rmsnorm");
  expect_close_rel(got.add_norm, want.add_norm, 2e-6f, "add_rmsnorm");
  expect_close_rel(got.x_after, want.x_after, 2e-6f, "residual after add_rmsnorm");
  expect_close_rel(got.swiglu, want.swiglu, 2e-6f, "swiglu");
  expect_close_rel(got.swiglu_in, want.swiglu_in, 2e-6f, "swiglu in place");
  expect_close_rel(got.added, want.added, 2e-6f, "add");
  expect_close_rel(got.biased, want.biased, 2e-6f, "add_bias");
}

// One-token steps: a norm or SwiGLU followed by an int8 product writes the int8 copy itself (no quantize
// dispatch): each f32 output against the CPU backend, each product against its int8 reference, and the count
// of dispatches (4 producers + 4 products).
TEST(WebGpu, Int8ProducersFuseTheQuantization) {
  REQUIRE_WEBGPU();
  if (!int8_path(DType::Q4_K, 1, true)) GTEST_SKIP() << "int8 products off (VIREO_WEBGPU_INT8=0)";
  Pair p;
  const int d = 512, f = 768, rows = 48;
  const std::vector<float> xv = randn(d, 1), yv = randn(d, 2), gv = randn(d, 3), av = randn(f, 5, 3.f), cv = randn(f, 6);
  std::vector<uint8_t> gbytes(d * 4);
  std::memcpy(gbytes.data(), gv.data(), gbytes.size());
  const TestWeight w4 = make_weight(DType::Q4_K, rows, d, 21), w6 = make_weight(DType::Q6_K, rows, d, 22);
  const TestWeight f4 = make_weight(DType::Q4_K, rows, f, 23), f6 = make_weight(DType::Q6_K, rows, f, 24);
  struct Out { std::vector<float> norm, add_norm, x_after, glu_in, glu, y[4]; int64_t dispatches; };
  auto run = [&](Backend& be, bool gpu) {
    auto put = [&](Act a, const std::vector<float>& v) { gpu ? write_act(be, a, v) : write_cpu(a, v); };
    auto get = [&](Act a) { return gpu ? read_act(be, a, 1) : read_cpu(a, 1); };
    const Weight* g = be.upload_weight("g", DType::F32, {d}, gbytes);
    const Weight* tw4 = be.upload_weight("w4", DType::Q4_K, {d, rows}, w4.bytes);
    const Weight* tw6 = be.upload_weight("w6", DType::Q6_K, {d, rows}, w6.bytes);
    const Weight* tf4 = be.upload_weight("f4", DType::Q4_K, {f, rows}, f4.bytes);
    const Weight* tf6 = be.upload_weight("f6", DType::Q6_K, {f, rows}, f6.bytes);
    Act x = be.alloc_act(1, d), y = be.alloc_act(1, d), o = be.alloc_act(1, d), o2 = be.alloc_act(1, d);
    Act a = be.alloc_act(1, f), c = be.alloc_act(1, f), s = be.alloc_act(1, f), a2 = be.alloc_act(1, f);
    Act ys[4] = {be.alloc_act(1, rows), be.alloc_act(1, rows), be.alloc_act(1, rows), be.alloc_act(1, rows)};
    put(x, xv), put(y, yv), put(a, av), put(c, cv), put(a2, av);
    Batch b = batch_of(1);
    const int64_t before = be.counters().dispatches;
    be.begin_step(b);
    be.rmsnorm(x, g, 1e-5f, o);
    be.matmul(tw4, o, ys[0]);
    be.add_rmsnorm(x, y, g, 1e-6f, o2);
    be.matmul(tw6, o2, ys[1]);
    be.swiglu(a2, c, a2);  // in place, as the Llama step does
    be.matmul(tf4, a2, ys[2]);
    be.swiglu(a, c, s);
    be.matmul(tf6, s, ys[3]);
    be.end_step(Act{}, {});
    Out r{get(o), get(o2), get(x), get(a2), get(s), {get(ys[0]), get(ys[1]), get(ys[2]), get(ys[3])}, 0};
    r.dispatches = be.counters().dispatches - before;
    return r;
  };
  const Out want = run(*p.cpu, false), got = run(*p.gpu, true);
  expect_close_rel(got.norm, want.norm, 2e-6f, "rmsnorm_q8");
  expect_close_rel(got.add_norm, want.add_norm, 2e-6f, "add_rmsnorm_q8");
  expect_close_rel(got.x_after, want.x_after, 2e-6f, "residual after add_rmsnorm_q8");
  expect_close_rel(got.glu_in, want.glu_in, 2e-6f, "swiglu_inplace_q8");
  expect_close_rel(got.glu, want.glu, 2e-6f, "swiglu_q8");
  EXPECT_EQ(got.dispatches, 8);
  const std::vector<float>* ins[4] = {&got.norm, &got.add_norm, &got.glu_in, &got.glu};
  const TestWeight* ws[4] = {&w4, &w6, &f4, &f6};
  for (int m = 0; m < 4; ++m) {
    SCOPED_TRACE("product " + std::to_string(m));
    expect_int8_product(got.y[m], *ws[m], *ins[m]);
  }
}

TEST(WebGpu, RopeMatchesCpu) {
  REQUIRE_WEBGPU();
  for (RopeMode mode : {RopeMode::Normal, RopeMode::Neox})
    for (bool factors : {false, true}) {
      SCOPED_TRACE(std::string(mode == RopeMode::Neox ? "neox" : "normal") + (factors ? " with factors" : ""));
      Pair p;
      const int n = 6, heads = 4, hd = 64;
      const std::vector<float> xv = randn(n * heads * hd, 11);
      std::vector<float> fv(hd / 2);
      for (int i = 0; i < hd / 2; ++i) fv[i] = 1.f + 0.25f * i;
      std::vector<uint8_t> fbytes(fv.size() * 4);
      std::memcpy(fbytes.data(), fv.data(), fbytes.size());
      Batch b;
      for (int32_t pos : {0, 1, 7, 300, 4095, 131000}) b.add(0, pos, 0, false);
      auto run = [&](Backend& be, bool gpu) {
        const Weight* fw = factors ? be.upload_weight("rope_freqs", DType::F32, {hd / 2}, fbytes) : nullptr;
        Act x = be.alloc_act(n, heads * hd);
        gpu ? write_act(be, x, xv) : write_cpu(x, xv);
        be.begin_step(b);
        be.rope(x.with_rows(n), {heads, hd, hd, 500000.f, mode, fw});
        be.end_step(Act{}, {});
        return gpu ? read_act(be, x, n) : read_cpu(x, n);
      };
      const std::vector<float> want = run(*p.cpu, false), got = run(*p.gpu, true);
      // sin/cos of angles up to 1.3e5 rad: the reduction to [-pi, pi] loses ~|angle| * 2^-24 of the angle.
      expect_close_rel(got, want, 2e-5f, "rope");
    }
}

// rope(q), rope(k), kv_store(k, v) recorded in a row (the Llama layer's order, normal rotation) run as one
// dispatch (wgsl/rope_kv.wgsl): q and k after it, and attention over what it stored, against the CPU; partial
// rotation (rope_dim < head_dim) and both cache types, a prompt and a decode step in other slots.
TEST(WebGpu, RopeAndKvStoreFusedMatchCpu) {
  REQUIRE_WEBGPU();
  for (DType kv : {DType::F16, DType::F32})
    for (int rope_dim : {64, 32}) {
      SCOPED_TRACE(std::string(kv == DType::F16 ? "f16 cache" : "f32 cache") + " rope_dim " + std::to_string(rope_dim));
      Pair p;
      const int heads = 8, kv_heads = 2, hd = 64, ctx = 64, np = 20;
      Batch prompt = batch_of(np, 1), dec;
      dec.add(0, np, 1, false);
      dec.add(0, 3, 0, false);
      struct Out { std::vector<float> q, k, att; int64_t dispatches = 0; };
      auto run = [&](Backend& be, bool gpu) {
        auto put = [&](Act a, const std::vector<float>& v) { gpu ? write_act(be, a, v) : write_cpu(a, v); };
        auto get = [&](Act a, int64_t rows) { return gpu ? read_act(be, a, rows) : read_cpu(a, rows); };
        Act q = be.alloc_act(np, heads * hd), k = be.alloc_act(np, kv_heads * hd), v = be.alloc_act(np, kv_heads * hd);
        Act out = be.alloc_act(np, heads * hd);
        be.alloc_kv({1, 2, ctx, kv_heads * hd, kv});
        const AttentionParams ap{0, heads, kv_heads, hd, 1.0f / std::sqrt(float(hd))};
        Out o;
        for (const Batch* b : {&prompt, &dec}) {
          const int n = b->size();
          put(q, randn(n * heads * hd, 41 + n)), put(k, randn(n * kv_heads * hd, 42 + n)), put(v, randn(n * kv_heads * hd, 43 + n));
          const int64_t before = be.counters().dispatches;
          be.begin_step(*b);
          be.rope(q.with_rows(n), {heads, hd, rope_dim, 10000.f, RopeMode::Normal, nullptr});
          be.rope(k.with_rows(n), {kv_heads, hd, rope_dim, 10000.f, RopeMode::Normal, nullptr});
          be.kv_store(0, k.with_rows(n), v.with_rows(n));
          be.attention(q.with_rows(n), out.with_rows(n), ap);
          be.end_step(Act{}, {});
          o.dispatches += be.counters().dispatches - before;
          for (auto [dst, a, rows] : {std::tuple{&o.q, q, n}, std::tuple{&o.k, k, n}, std::tuple{&o.att, out, n}}) {
            const std::vector<float> r = get(a, rows);
            dst->insert(dst->end(), r.begin(), r.end());
          }
        }
        return o;
      };
      const Out want = run(*p.cpu, false), got = run(*p.gpu, true);
      expect_close_rel(got.q, want.q, 2e-5f, "q");
      expect_close_rel(got.k, want.k, 2e-5f, "k");
      expect_close_rel(got.att, want.att, 2e-5f, "attention");
      EXPECT_EQ(got.dispatches, 1 + 1 + 1 + 2);  // fused rope/store, then attention (prompt: 1; decode: split + merge)
    }
}

// A one-token step's attention output feeding an int8 product (the o projection): the merge writes the int8
// copy (attention_merge_q8), no quantize dispatch. Attention against the CPU, the product against its int8
// reference, for head sizes 64 and 128.
TEST(WebGpu, AttentionMergeWritesInt8ForTheNextProduct) {
  REQUIRE_WEBGPU();
  if (!int8_path(DType::Q4_K, 1, true)) GTEST_SKIP() << "int8 products off (VIREO_WEBGPU_INT8=0)";
  for (int hd : {64, 128}) {
    SCOPED_TRACE("head_dim " + std::to_string(hd));
    Pair p;
    const int heads = 4, kv_heads = 2, ctx = 96, rows = 24, dq = heads * hd;
    const TestWeight wo = make_weight(DType::Q4_K, rows, dq, 51);
    Batch prompt = batch_of(70, 0), dec = batch_of(1, 0, 70);
    struct Out { std::vector<float> att, y; int64_t dispatches = 0; };
    auto run = [&](Backend& be, bool gpu) {
      auto put = [&](Act a, const std::vector<float>& v) { gpu ? write_act(be, a, v) : write_cpu(a, v); };
      auto get = [&](Act a, int64_t r) { return gpu ? read_act(be, a, r) : read_cpu(a, r); };
      const Weight* tw = be.upload_weight("wo", DType::Q4_K, {dq, rows}, wo.bytes);
      Act q = be.alloc_act(70, dq), k = be.alloc_act(70, kv_heads * hd), v = be.alloc_act(70, kv_heads * hd);
      Act att = be.alloc_act(70, dq), y = be.alloc_act(1, rows);
      be.alloc_kv({1, 1, ctx, kv_heads * hd, DType::F16});
      const AttentionParams ap{0, heads, kv_heads, hd, 1.0f / std::sqrt(float(hd))};
      Out o;
      for (const Batch* b : {&prompt, &dec}) {
        const int n = b->size();
        put(q, randn(n * dq, 61 + n)), put(k, randn(n * kv_heads * hd, 62 + n)), put(v, randn(n * kv_heads * hd, 63 + n));
        const int64_t before = be.counters().dispatches;
        be.begin_step(*b);
        be.kv_store(0, k.with_rows(n), v.with_rows(n));
        be.attention(q.with_rows(n), att.with_rows(n), ap);
        if (n == 1) be.matmul(tw, att.with_rows(1), y);
        be.end_step(Act{}, {});
        o.dispatches = be.counters().dispatches - before;
      }
      o.att = get(att, 1), o.y = get(y, 1);
      return o;
    };
    const Out want = run(*p.cpu, false), got = run(*p.gpu, true);
    expect_close_rel(got.att, want.att, 2e-5f, "attention");
    EXPECT_EQ(got.dispatches, 4);  // kv_store, attention_split, attention_merge_q8, the product
    expect_int8_product(got.y, wo, got.att);
  }
}

TEST(WebGpu, AttentionOverSlotsMatchesCpu) {
  REQUIRE_WEBGPU();
  struct Case {
    int heads, kv_heads, hd, ctx, prompt;
  };
  // Prompt steps run one workgroup per (token, head); decode steps (<= 16 tokens) the split-KV kernel and its
  // merge, with 4 or 8 query heads per KV head and decode positions in the first, a middle and the last chunk.
  const Case cases[] = {{8, 2, 64, 160, 150}, {32, 4, 64, 700, 600}, {8, 2, 128, 300, 290}};
  for (const Case& c : cases)
    for (DType kv : {DType::F16, DType::F32}) {
      SCOPED_TRACE(std::string(kv == DType::F16 ? "f16 cache" : "f32 cache") + " heads " + std::to_string(c.heads) +
                   "/" + std::to_string(c.kv_heads) + " hd " + std::to_string(c.hd) + " ctx " + std::to_string(c.ctx));
      Pair p;
      const int heads = c.heads, kv_heads = c.kv_heads, hd = c.hd, ctx = c.ctx, np = c.prompt;
      // Step 1: a prompt in slot 1. Step 2: three decode tokens from slots 0, 1 and 2 (slot 0 has a copy of slot
      // 1's first 100 positions, as prefix caching makes), one of them continuing at the end of the prompt.
      Batch prompt = batch_of(np, 1);
      Batch dec;
      dec.add(0, 100, 0, false);
      dec.add(0, np, 1, false);
      dec.add(0, 0, 2, false);
      auto run = [&](Backend& be, bool gpu) {
        auto put = [&](Act a, const std::vector<float>& v) { gpu ? write_act(be, a, v) : write_cpu(a, v); };
        Act q = be.alloc_act(np, heads * hd), k = be.alloc_act(np, kv_heads * hd), v = be.alloc_act(np, kv_heads * hd);
        Act out = be.alloc_act(np, heads * hd);
        be.alloc_kv({1, 3, ctx, kv_heads * hd, kv});
        put(q, randn(np * heads * hd, 21)), put(k, randn(np * kv_heads * hd, 22)), put(v, randn(np * kv_heads * hd, 23));
        const AttentionParams ap{0, heads, kv_heads, hd, 1.0f / std::sqrt(float(hd))};
        be.begin_step(prompt);
        be.kv_store(0, k.with_rows(np), v.with_rows(np));
        be.attention(q.with_rows(np), out.with_rows(np), ap);
        be.end_step(Act{}, {});
        std::vector<float> r1 = gpu ? read_act(be, out, np) : read_cpu(out, np);
        be.kv_copy(1, 0, 100);
        put(q, randn(3 * heads * hd, 31)), put(k, randn(3 * kv_heads * hd, 32)), put(v, randn(3 * kv_heads * hd, 33));
        be.begin_step(dec);
        be.kv_store(0, k.with_rows(3), v.with_rows(3));
        be.attention(q.with_rows(3), out.with_rows(3), ap);
        be.end_step(Act{}, {});
        std::vector<float> r2 = gpu ? read_act(be, out, 3) : read_cpu(out, 3);
        r1.insert(r1.end(), r2.begin(), r2.end());
        return r1;
      };
      const std::vector<float> want = run(*p.cpu, false), got = run(*p.gpu, true);
      expect_close_rel(got, want, 2e-5f, "attention");
    }
}

TEST(WebGpu, ArgmaxAndGatherMatchHost) {
  REQUIRE_WEBGPU();
  auto be = make_webgpu_backend();
  const int n = 4, vocab = 5000;
  std::vector<float> xv = randn(n * vocab, 41);
  xv[0 * vocab + 4999] = 100.f;                           // the last id
  xv[2 * vocab + 17] = xv[2 * vocab + 4000] = 50.f;       // a tie: the lowest id wins
  xv[3 * vocab + 5] = NAN;                                // NaN never wins
  Act x = be->alloc_act(n, vocab), sel = be->alloc_act(n, vocab);
  write_act(*be, x, xv);
  Batch b;
  for (int i = 0; i < n; ++i) b.add(0, i, 0, i != 1);  // rows 0, 2, 3 want logits
  std::vector<int32_t> ids(3);
  be->begin_step(b);
  be->gather_logit_rows(x.with_rows(n), sel.with_rows(3));
  be->end_step_argmax(sel.with_rows(3), ids);
  for (int i = 0; i < 3; ++i) {
    const int row = b.logit_rows[i];
    EXPECT_EQ(ids[i], argmax(std::span<const float>(xv.data() + row * vocab, vocab))) << "row " << row;
  }
  EXPECT_EQ(ids[0], 4999);
  EXPECT_EQ(ids[1], 17);
  // The same step shape again reuses its plan: one more submit, no new plan.
  const size_t plans = webgpu_testing::plans(*be);
  const int64_t submits = webgpu_testing::submits(*be);
  be->begin_step(b);
  be->gather_logit_rows(x.with_rows(n), sel.with_rows(3));
  be->end_step_argmax(sel.with_rows(3), ids);
  EXPECT_EQ(webgpu_testing::plans(*be), plans);
  EXPECT_EQ(webgpu_testing::submits(*be), submits + 1);
}

// Candidates for sampling picked on the GPU equal the host's selection (tests/sampling_cases.h).
TEST(WebGpu, CandidatesMatchHostSelection) {
  REQUIRE_WEBGPU();
  auto be = make_webgpu_backend();
  sampling_cases::check_candidates(*be, [&](Act x, const std::vector<float>& v) { write_act(*be, x, v); });
}

// Tokens drawn on the GPU (end_step_sample) equal the host Sampler's at the same uniform, on the rows of
// tests/sampling_cases.h (ties, NaN, -inf, flat rows, top-k beyond the 1,024 candidates a workgroup keeps, ...).
TEST(WebGpu, SamplingMatchesHostSampler) {
  REQUIRE_WEBGPU();
  auto be = make_webgpu_backend();
  const sampling_cases::Cases c = sampling_cases::make(5000, 64);
  Act x = be->alloc_act(c.n, c.vocab);
  write_act(*be, x, c.logits);
  sampling_cases::run_and_check(*be, c, x);
}

// A synthetic TinyLlama-1.1B (random weights, llama.cpp's Q4_K_M mix: Q4_K, Q6_K and the f32 fallback path for
// its Q5_0-free layers) on both backends: an 8-token prompt and 3 decode steps. The CPU backend multiplies
// quantized weights with int8-quantized activations and the WebGPU kernels with f32 ones, and random weights
// amplify such differences through 22 layers: the bound is the relative L2 error of each logits row, 0.12 (as
// the CUDA test states for its int8 path); a greedy pick may differ only between near-equal logits.
TEST(WebGpuEndToEnd, SyntheticTinyLlamaLogitsMatchCpu) {
  REQUIRE_WEBGPU();
  const std::string path = (std::filesystem::temp_directory_path() / "vireo-test-tinyllama-q4_k_m.gguf").string();
  if (!std::filesystem::exists(path)) write_synthetic_gguf("tinyllama-1.1b", "q4_k_m", path, "", 5);
  auto file = std::make_shared<const GgufFile>(GgufFile::open(path));
  RunOptions ro;
  ro.n_ctx = 64;
  ro.max_batch = 16;
  Model cpu(file, make_cpu_backend(0), ro);
  Model gpu(file, make_webgpu_backend(), ro);
  const int V = cpu.config().n_vocab;
  std::mt19937 rng(3);
  std::uniform_int_distribution<int32_t> tok(0, V - 1);
  Batch b;
  for (int i = 0; i < 8; ++i) b.add(tok(rng), i, 0, true);
  std::vector<float> lc(static_cast<size_t>(V) * 8), lg(lc.size(), NAN);
  cpu.forward(b, lc);
  gpu.forward(b, lg);
  auto compare = [&](const float* c, const float* g, const std::string& where) {
    double num = 0, den = 0, maxd = 0;
    for (int i = 0; i < V; ++i) {
      ASSERT_TRUE(std::isfinite(g[i])) << where << " logit " << i;
      const double d = double(g[i]) - c[i];
      num += d * d, den += double(c[i]) * c[i], maxd = std::max(maxd, std::fabs(d));
    }
    EXPECT_LE(std::sqrt(num / den), 0.12) << where;
    const int tc = argmax(std::span<const float>(c, V)), tg = argmax(std::span<const float>(g, V));
    if (tc != tg) EXPECT_LE(c[tc] - c[tg], 2 * maxd) << where << ": greedy token differs: cpu " << tc << ", webgpu " << tg;
  };
  for (int r = 0; r < 8; ++r) compare(&lc[size_t(r) * V], &lg[size_t(r) * V], "prompt row " + std::to_string(r));
  int32_t next = argmax(std::span<const float>(&lc[size_t(7) * V], V));
  for (int s = 0; s < 3; ++s) {
    b.clear();
    b.add(next, 8 + s, 0, true);
    cpu.forward(b, std::span<float>(lc.data(), size_t(V)));
    gpu.forward(b, std::span<float>(lg.data(), size_t(V)));
    compare(lc.data(), lg.data(), "decode step " + std::to_string(s));
    next = argmax(std::span<const float>(lc.data(), V));
  }
}
#endif

// ---- end to end on stories260K ----

bool have_fixtures() { return std::filesystem::exists(kFixtures + "/models/stories260K-f32.gguf"); }
#define REQUIRE_FIXTURES() \
  if (!have_fixtures()) GTEST_SKIP() << "fixtures not found at " << kFixtures << " (../shared/fixtures)"

using test_files::read_file;
using test_files::read_token_sequence;
using test_files::rstrip_newlines;

std::string greedy(const std::string& model, const std::string& device, const std::string& prompt, int n,
                   int slots = 1, bool stream_weights = false) {
  EngineOptions eo;
  eo.device = device;
  eo.stream_weights = stream_weights;
  eo.threads = 1;
  eo.n_ctx = 256;
  eo.n_slots = slots;
  auto engine = Engine::load(model, eo);
  GenerateOptions g;
  g.sampling.temperature = 0;
  g.max_tokens = n;
  g.ignore_eos = true;
  std::string out;
  engine->generate(prompt, g, [&](std::string_view piece) {
    out += piece;
    return true;
  });
  return out;
}

TEST(WebGpuEndToEnd, Stories260KGreedyFromBosMatchesRunC) {
  REQUIRE_WEBGPU();
  REQUIRE_FIXTURES();
  const std::string want = rstrip_newlines(read_file(kFixtures + "/golden/stories260K_runc_t0_n200.txt"));
  std::string got = greedy(kFixtures + "/models/stories260K-f32.gguf", "webgpu", "", 200);
  if (!got.empty() && got[0] == ' ') got.erase(0, 1);  // run.c drops the first piece's leading space
  EXPECT_EQ(rstrip_newlines(got), want);
}

TEST(WebGpuEndToEnd, Stories260KEveryFixtureEqualsCpuText) {
  REQUIRE_WEBGPU();
  REQUIRE_FIXTURES();
  for (const char* m : {"stories260K-f32", "stories260K-f16", "stories260K-Q4_K_M-fallback", "stories260K-Q6_K-fallback"}) {
    const std::string path = kFixtures + "/models/" + m + ".gguf";
    if (!std::filesystem::exists(path)) continue;
    EXPECT_EQ(greedy(path, "webgpu", "Once upon a time", 64), greedy(path, "cpu", "Once upon a time", 64)) << m;
  }
}

// Sampled generation draws its tokens on the GPU (end_step_sample); the same requests through the full-logits
// path (asking for log-probabilities, sampled on the host) sample the same tokens.
TEST(WebGpuEndToEnd, SampledOnGpuEqualsHostSampling) {
  REQUIRE_WEBGPU();
  REQUIRE_FIXTURES();
  EngineOptions eo;
  eo.device = "webgpu";
  eo.n_ctx = 256;
  eo.n_slots = 4;
  auto eng = Engine::load(kFixtures + "/models/stories260K-f32.gguf", eo);
  sampling_cases::check_engine_draws_equal_full_logits(*eng, 40);
}

// Weights read tensor by tensor from a streamed file (what the browser does) give the same text; the CPU
// backend, which reads weights in place, refuses a streamed file with a clear error.
TEST(WebGpuEndToEnd, StreamedWeightsGiveTheSameText) {
  REQUIRE_WEBGPU();
  REQUIRE_FIXTURES();
  const std::string path = kFixtures + "/models/stories260K-f16.gguf";  // larger than the first 256 KiB read
  ASSERT_FALSE(GgufFile::open_streamed(path).resident());
  EXPECT_EQ(greedy(path, "webgpu", "Once upon a time", 32, 1, true), greedy(path, "cpu", "Once upon a time", 32));
  try {
    greedy(path, "cpu", "Once upon a time", 4, 1, true);
    ADD_FAILURE() << "the CPU backend accepted a streamed file";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("whole file in memory"), std::string::npos) << e.what();
  }
}

// With f32 arithmetic (VIREO_WEBGPU_F16=0) within 2e-4 of run.c's logits; with the f16 prefill products (where
// the adapter has shader-f16) within 0.1, and the same greedy token wherever run.c's best two differ by 0.2.
TEST(WebGpuEndToEnd, Stories260KLogitsMatchRunC) {
  REQUIRE_WEBGPU();
  REQUIRE_FIXTURES();
  std::vector<int32_t> seq = read_token_sequence(kFixtures + "/golden/stories260K_once_upon_a_time_64.tokens.txt");
  ASSERT_GE(seq.size(), 64u);
  seq.resize(64);
  const std::string raw = read_file(kFixtures + "/golden/stories260K_once_upon_a_time_64.logits.f32");
  ASSERT_EQ(raw.size(), 64u * 512u * 4u);
  const float* want = reinterpret_cast<const float*>(raw.data());
  const bool has_f16 = prefill_in_f16(*make_webgpu_backend(), DType::F32);
  for (bool f16 : {false, true}) {
    if (f16 && !has_f16) {
      std::fprintf(stderr, "  (no shader-f16 on this adapter: the f16 products are not tested)\n");
      continue;
    }
    SCOPED_TRACE(f16 ? "f16 prefill products" : "f32 arithmetic");
    ScopedEnv arithmetic("VIREO_WEBGPU_F16", f16 ? nullptr : "0");
    EngineOptions eo;
    eo.device = "webgpu";
    eo.kv_f32 = true;
    eo.n_ctx = 256;
    auto engine = Engine::load(kFixtures + "/models/stories260K-f32.gguf", eo);
    const std::vector<float> got = engine->logits_all(seq);
    ASSERT_EQ(got.size(), 64u * 512u);
    float worst = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_TRUE(std::isfinite(got[i])) << i;
      worst = std::max(worst, std::fabs(got[i] - want[i]));
    }
    EXPECT_LE(worst, f16 ? 0.1f : 2e-4f);
    for (int r = 0; r < 64 && f16; ++r) {
      std::vector<float> row(want + r * 512, want + (r + 1) * 512);
      const int best = argmax(std::span<const float>(row));
      std::vector<float> sorted = row;
      std::nth_element(sorted.begin(), sorted.begin() + 1, sorted.end(), std::greater<float>());
      if (sorted[0] - sorted[1] > 0.2f) EXPECT_EQ(argmax(std::span<const float>(&got[size_t(r) * 512], 512)), best) << "row " << r;
    }
  }
}

TEST(WebGpuEndToEnd, BatchedSlotsEqualSingleSequence) {
  REQUIRE_WEBGPU();
  REQUIRE_FIXTURES();
  const std::string path = kFixtures + "/models/stories260K-f32.gguf";
  EngineOptions eo;
  eo.device = "webgpu";
  eo.threads = 1;
  eo.n_ctx = 128;
  eo.n_slots = 3;
  auto engine = Engine::load(path, eo);
  const std::vector<std::string> prompts = {"Once upon a time", "Once upon a time there was", "Tim and Sam"};
  std::vector<std::string> out(prompts.size());
  Scheduler& s = engine->scheduler();
  auto submit = [&](size_t i) {
    GenerateRequest r;
    r.prompt = engine->tokenize(prompts[i], true);
    r.opts.sampling.temperature = 0;
    r.opts.max_tokens = 40;
    r.opts.ignore_eos = true;
    r.on_event = [&out, i](const StreamEvent& e) {
      out[i] += e.text;
      return true;
    };
    s.submit(std::move(r));
  };
  submit(0);
  s.step();  // the first prompt is in its slot: the second copies the shared prefix from it (kv_copy)
  submit(1);
  submit(2);
  s.run_until_idle();
  EXPECT_GT(s.metrics().prompt_from_cache, 0);
  for (size_t i = 0; i < prompts.size(); ++i)
    EXPECT_EQ(out[i], greedy(path, "cpu", prompts[i], 40)) << prompts[i];
}

// Decode chains (end_step_chain: one submit for several decode steps) against step-by-step runs:
// tests/chain_cases.h.
TEST(WebGpuEndToEnd, DecodeChainEqualsStepByStep) {
  REQUIRE_WEBGPU();
  REQUIRE_FIXTURES();
  chain_cases::chain_equals_steps(kFixtures + "/models/stories260K-f16.gguf", [] { return make_webgpu_backend(); });
}

TEST(WebGpuEndToEnd, DecodeChainInTheSchedulerEqualsOneStepAtATime) {
  REQUIRE_WEBGPU();
  REQUIRE_FIXTURES();
  chain_cases::scheduler_with_chains_equals_without(kFixtures + "/models/stories260K-f16.gguf",
                                                    [] { return make_webgpu_backend(); });
}

}  // namespace
}  // namespace vireo
