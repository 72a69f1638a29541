// Matmul kernels on TinyLlama-1.1B shapes with 2 threads.
//
//   BM_ReadBandwidth           the machine's DRAM read roofline (2 threads streaming 1 GiB)
//   BM_Decode/<type>/<shape>   m = 1; rotates over enough copies of the matrix (>= 1 GiB) that every call streams
//                              its weights from DRAM, as decoding a whole model does. Counter GB/s = weight bytes.
//   BM_Prefill/<type>/<shape>  m = 64 (compute bound). Counters GFLOP/s and tok/s-equivalent.
//   BM_TinyLlama/<type>        every matmul of one decode step (22 layers + output) for m = 1 and m = 64:
//                              the matmul-only bound on tokens per second.
// Shapes are rows x cols: 2048x2048 (q/o), 256x2048 (k/v), 5632x2048 (gate/up), 2048x5632 (down), 32000x2048 (out).
// Environment: VIREO_BENCH_PATH=scalar|avx2|avx512 forces a path; VIREO_BENCH_THREADS overrides 2.
#include <benchmark/benchmark.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/matmul.h"
#include "backend/cpu/thread_pool.h"
#include "core/dtype.h"
#include "quant/quant.h"

namespace {

using vireo::DType;
using vireo::cpu::PackedMatrix;
using vireo::cpu::ThreadPool;

int bench_threads() {
  const char* e = std::getenv("VIREO_BENCH_THREADS");
  return e ? std::max(1, std::atoi(e)) : 2;
}

ThreadPool& pool() {
  static ThreadPool p(bench_threads());
  static bool path_set = [] {
    if (const char* e = std::getenv("VIREO_BENCH_PATH")) {
      const std::string s(e);
      if (s == "scalar") vireo::cpu::force_cpu_path(vireo::cpu::CpuPath::Scalar);
      if (s == "avx2") vireo::cpu::force_cpu_path(vireo::cpu::CpuPath::Avx2);
      if (s == "avx512") vireo::cpu::force_cpu_path(vireo::cpu::CpuPath::Avx512);
    }
    return true;
  }();
  (void)path_set;
  return p;
}

// GGUF bytes for a rows x cols matrix: 32 distinct rows quantized by the reference quantizer, repeated (the speed
// of a kernel does not depend on the values; the reference k-quant quantizers are too slow for 65M elements).
std::vector<uint8_t> make_gguf(DType t, int64_t rows, int64_t cols) {
  const int64_t rb = vireo::row_bytes(t, cols);
  constexpr int kDistinct = 32;
  std::vector<uint8_t> distinct(static_cast<size_t>(kDistinct * rb));
  std::mt19937 rng(42);
  std::normal_distribution<float> nd(0.f, 0.02f);
  std::vector<float> row(static_cast<size_t>(cols));
  for (int r = 0; r < kDistinct; ++r) {
    for (auto& v : row) v = nd(rng);
    uint8_t* dst = distinct.data() + r * rb;
    if (t == DType::F32) {
      std::memcpy(dst, row.data(), static_cast<size_t>(rb));
    } else if (t == DType::F16 || t == DType::BF16) {
      for (int64_t c = 0; c < cols; ++c) {
        const uint16_t h = t == DType::F16 ? vireo::fp32_to_fp16(row[c]) : vireo::fp32_to_bf16(row[c]);
        std::memcpy(dst + 2 * c, &h, 2);
      }
    } else {
      vireo::quantize_row_ref(t, row.data(), dst, cols);
    }
  }
  std::vector<uint8_t> out(static_cast<size_t>(rows * rb));
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(out.data() + r * rb, distinct.data() + (r % kDistinct) * rb, static_cast<size_t>(rb));
  return out;
}

struct Shape {
  int64_t rows, cols;
};
const Shape kShapes[] = {{2048, 2048}, {256, 2048}, {5632, 2048}, {2048, 5632}, {32000, 2048}};
const DType kTypes[] = {DType::Q4_K, DType::Q6_K, DType::Q8_0, DType::F16,  DType::Q4_0, DType::Q4_1, DType::Q5_0,
                        DType::Q5_1, DType::Q2_K, DType::Q3_K, DType::Q5_K, DType::BF16, DType::F32};

// Names without dtype_name(): registration runs during static initialisation, possibly before dtype.cpp's table.
const char* type_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::Q4_0: return "Q4_0";
    case DType::Q4_1: return "Q4_1";
    case DType::Q5_0: return "Q5_0";
    case DType::Q5_1: return "Q5_1";
    case DType::Q8_0: return "Q8_0";
    case DType::Q2_K: return "Q2_K";
    case DType::Q3_K: return "Q3_K";
    case DType::Q4_K: return "Q4_K";
    case DType::Q5_K: return "Q5_K";
    case DType::Q6_K: return "Q6_K";
    default: return "?";
  }
}

std::vector<float> random_x(int64_t n) {
  std::vector<float> x(static_cast<size_t>(n));
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (auto& v : x) v = nd(rng);
  return x;
}

// Sum of n uint64 words, loads only (the roofline read loop).
uint64_t read_words_portable(const uint64_t* p, int64_t n) {
  uint64_t s[8] = {};
  for (int64_t k = 0; k + 8 <= n; k += 8)
    for (int j = 0; j < 8; ++j) s[j] += p[k + j];
  uint64_t t = 0;
  for (uint64_t v : s) t += v;
  return t;
}
#if defined(__x86_64__)
__attribute__((target("avx512f"))) uint64_t read_words_avx512(const uint64_t* p, int64_t n) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t k = 0; k + 32 <= n; k += 32) {
    a0 = _mm512_add_epi64(a0, _mm512_load_si512(p + k));
    a1 = _mm512_add_epi64(a1, _mm512_load_si512(p + k + 8));
    a2 = _mm512_add_epi64(a2, _mm512_load_si512(p + k + 16));
    a3 = _mm512_add_epi64(a3, _mm512_load_si512(p + k + 24));
  }
  return static_cast<uint64_t>(_mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3))));
}
#endif

void BM_ReadBandwidth(benchmark::State& state) {
  ThreadPool& p = pool();
  const size_t bytes = size_t(1) << 30;
  // 2 MiB pages, as the weight arena uses.
  static uint64_t* buf = [] {
    auto* b = static_cast<uint64_t*>(std::aligned_alloc(size_t(2) << 20, size_t(1) << 30));
#if defined(__linux__)
    madvise(b, size_t(1) << 30, MADV_HUGEPAGE);
#endif
    std::memset(b, 1, size_t(1) << 30);
    return b;
  }();
  const int64_t n = static_cast<int64_t>(bytes / 8);
  auto reader = read_words_portable;
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx512f")) reader = read_words_avx512;
#endif
  std::atomic<uint64_t> sink{0};
  for (auto _ : state) {
    p.run([&](int i, int t) {
      int64_t b, e;
      vireo::cpu::split_range(n, i, t, 64, &b, &e);
      sink.fetch_add(reader(buf + b, e - b), std::memory_order_relaxed);
    });
  }
  benchmark::DoNotOptimize(sink.load());
  state.counters["GB/s"] =
      benchmark::Counter(static_cast<double>(bytes) * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ReadBandwidth)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);

void BM_Decode(benchmark::State& state, DType t, Shape s) {
  ThreadPool& p = pool();
  const std::vector<uint8_t> gguf = make_gguf(t, s.rows, s.cols);
  PackedMatrix first(t, gguf.data(), s.rows, s.cols);
  // >= 1 GiB of copies (VIREO_BENCH_DECODE_MIB overrides), so every call streams from DRAM.
  const char* mib = std::getenv("VIREO_BENCH_DECODE_MIB");
  const int64_t footprint = (mib ? std::atoll(mib) : 1024) << 20;
  const int64_t copies = std::max<int64_t>(1, (footprint + first.bytes() - 1) / first.bytes());
  std::vector<std::unique_ptr<PackedMatrix>> mats;
  for (int64_t c = 0; c < copies; ++c) mats.push_back(std::make_unique<PackedMatrix>(t, gguf.data(), s.rows, s.cols));
  const std::vector<float> x = random_x(s.cols);
  std::vector<float> y(static_cast<size_t>(s.rows));
  size_t next = 0;
  for (auto _ : state) {
    mats[next]->matmul(x.data(), 1, s.cols, y.data(), s.rows, p);
    if (++next == mats.size()) next = 0;
  }
  benchmark::DoNotOptimize(y.data());
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(first.bytes()) * state.iterations() / 1e9,
                                              benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * s.rows * s.cols * state.iterations() / 1e9,
                                                 benchmark::Counter::kIsRate);
}

void BM_Prefill(benchmark::State& state, DType t, Shape s, int64_t m) {
  ThreadPool& p = pool();
  const std::vector<uint8_t> gguf = make_gguf(t, s.rows, s.cols);
  PackedMatrix w(t, gguf.data(), s.rows, s.cols);
  const std::vector<float> x = random_x(m * s.cols);
  std::vector<float> y(static_cast<size_t>(m * s.rows));
  for (auto _ : state) w.matmul(x.data(), m, s.cols, y.data(), s.rows, p);
  benchmark::DoNotOptimize(y.data());
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * m * s.rows * s.cols * state.iterations() / 1e9,
                                                 benchmark::Counter::kIsRate);
  state.counters["rows/s"] = benchmark::Counter(static_cast<double>(m) * state.iterations(),
                                                benchmark::Counter::kIsRate);
}

// One decode (or prefill) step's matmuls of TinyLlama-1.1B: 22 layers x {q, k, v, o, gate, up, down} + output.
// For Q4_K the output matrix is Q6_K, as in Q4_K_M files.
void BM_TinyLlama(benchmark::State& state, DType t, int64_t m) {
  ThreadPool& p = pool();
  const DType out_t = t == DType::Q4_K ? DType::Q6_K : t;
  struct Layer {
    std::unique_ptr<PackedMatrix> q, k, v, o, gate, up, down;
  };
  const std::vector<uint8_t> a = make_gguf(t, 2048, 2048), b = make_gguf(t, 256, 2048),
                             c = make_gguf(t, 5632, 2048), d = make_gguf(t, 2048, 5632),
                             e = make_gguf(out_t, 32000, 2048);
  std::vector<Layer> layers(22);
  for (auto& L : layers) {
    L.q = std::make_unique<PackedMatrix>(t, a.data(), 2048, 2048);
    L.k = std::make_unique<PackedMatrix>(t, b.data(), 256, 2048);
    L.v = std::make_unique<PackedMatrix>(t, b.data(), 256, 2048);
    L.o = std::make_unique<PackedMatrix>(t, a.data(), 2048, 2048);
    L.gate = std::make_unique<PackedMatrix>(t, c.data(), 5632, 2048);
    L.up = std::make_unique<PackedMatrix>(t, c.data(), 5632, 2048);
    L.down = std::make_unique<PackedMatrix>(t, d.data(), 2048, 5632);
  }
  PackedMatrix out(out_t, e.data(), 32000, 2048);
  int64_t bytes = out.bytes();
  for (auto& L : layers)
    bytes += L.q->bytes() + L.k->bytes() + L.v->bytes() + L.o->bytes() + L.gate->bytes() + L.up->bytes() +
             L.down->bytes();
  const std::vector<float> x = random_x(m * 5632);
  std::vector<float> y(static_cast<size_t>(m * 32000));
  for (auto _ : state) {
    for (auto& L : layers) {
      L.q->matmul(x.data(), m, 2048, y.data(), 2048, p);
      L.k->matmul(x.data(), m, 2048, y.data(), 256, p);
      L.v->matmul(x.data(), m, 2048, y.data(), 256, p);
      L.o->matmul(x.data(), m, 2048, y.data(), 2048, p);
      L.gate->matmul(x.data(), m, 2048, y.data(), 5632, p);
      L.up->matmul(x.data(), m, 2048, y.data(), 5632, p);
      L.down->matmul(x.data(), m, 5632, y.data(), 2048, p);
    }
    out.matmul(x.data(), 1, 2048, y.data(), 32000, p);  // logits of the last row only
  }
  benchmark::DoNotOptimize(y.data());
  state.counters["tok/s"] = benchmark::Counter(static_cast<double>(m) * state.iterations(),
                                               benchmark::Counter::kIsRate);
  if (m == 1)
    state.counters["GB/s"] = benchmark::Counter(static_cast<double>(bytes) * state.iterations() / 1e9,
                                                benchmark::Counter::kIsRate);
}

const int registered = [] {
  for (DType t : kTypes) {
    const std::string tn(type_name(t));
    for (const Shape& s : kShapes) {
      const std::string sn = std::to_string(s.rows) + "x" + std::to_string(s.cols);
      benchmark::RegisterBenchmark(("BM_Decode/" + tn + "/" + sn).c_str(), BM_Decode, t, s)
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime();
      benchmark::RegisterBenchmark(("BM_Prefill64/" + tn + "/" + sn).c_str(), BM_Prefill, t, s, int64_t(64))
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime();
    }
  }
  for (DType t : {DType::Q4_K, DType::Q8_0}) {
    const std::string tn(type_name(t));
    benchmark::RegisterBenchmark(("BM_TinyLlama/" + tn + "/decode").c_str(), BM_TinyLlama, t, int64_t(1))
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime()
        ->MinTime(2.0);
    benchmark::RegisterBenchmark(("BM_TinyLlama/" + tn + "/prefill64").c_str(), BM_TinyLlama, t, int64_t(64))
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime()
        ->MinTime(2.0);
  }
  return 0;
}();

}  // namespace
