// vireo_gpu_bench: timings of the CUDA backend.
//
//   vireo_gpu_bench --kernels                 matvec per weight type (GB/s against the device's copy bandwidth),
//                                             the tensor-core matmul of a 512-token prefill, attention
//                                             (--types Q4_K,Q6_K and --tokens 16,64: only those matmuls, no
//                                             attention; --new-only: not the old kernels beside them)
//   vireo_gpu_bench --model X.gguf [...]      a model: prefill of --prefill tokens (tok/s), decode steps of 1, 4
//                                             and 8 sequences (tok/s, graph replays), weight bandwidth of decode
//
// Every timed step is a full backend step (begin_step ... end_step, graph replay after the first steps); kernel
// timings put R identical ops in one step and subtract the time of an empty step. Results also go out as lines
// "RESULT<TAB>name<TAB>value<TAB>unit" for scripts (tests/gpu/run_all.sh collects them).
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "core/dtype.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "quant/blocks.h"

using namespace vireo;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

void result(const std::string& name, double value, const char* unit) {
  std::printf("RESULT\t%s\t%.6g\t%s\n", name.c_str(), value, unit);
}

// Random blocks: any byte pattern is a valid quantized block; only the f16 scales are set to sane values.
std::vector<uint8_t> random_weights(DType t, int64_t rows, int64_t K, uint32_t seed) {
  const int64_t rb = row_bytes(t, K);
  std::vector<uint8_t> w(static_cast<size_t>(rows * rb));
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i + 8 <= w.size(); i += 8) {
    const uint64_t r = rng();
    std::memcpy(w.data() + i, &r, 8);
  }
  const DTypeInfo& info = dtype_info(t);
  auto set_f16 = [&](size_t off, float v) {
    const uint16_t h = fp32_to_fp16(v);
    std::memcpy(w.data() + off, &h, 2);
  };
  if (t == DType::F16 || t == DType::BF16) {
    std::normal_distribution<float> nd(0.f, 0.02f);
    for (int64_t i = 0; i < rows * K; ++i) {
      const uint16_t h = t == DType::F16 ? fp32_to_fp16(nd(rng)) : fp32_to_bf16(nd(rng));
      std::memcpy(w.data() + 2 * i, &h, 2);
    }
    return w;
  }
  if (t == DType::F32) {
    std::normal_distribution<float> nd(0.f, 0.02f);
    for (int64_t i = 0; i < rows * K; ++i) {
      const float v = nd(rng);
      std::memcpy(w.data() + 4 * i, &v, 4);
    }
    return w;
  }
  const int64_t blocks = rows * K / info.block_elems;
  for (int64_t b = 0; b < blocks; ++b) {
    const size_t base = static_cast<size_t>(b * info.block_bytes);
    switch (t) {
      case DType::Q4_K: set_f16(base + offsetof(BlockQ4_K, d), 1e-3f), set_f16(base + offsetof(BlockQ4_K, dmin), 1e-3f); break;
      case DType::Q5_K: set_f16(base + offsetof(BlockQ5_K, d), 1e-3f), set_f16(base + offsetof(BlockQ5_K, dmin), 1e-3f); break;
      case DType::Q6_K: set_f16(base + offsetof(BlockQ6_K, d), 1e-3f); break;
      case DType::Q8_0: set_f16(base + offsetof(BlockQ8_0, d), 1e-3f); break;
      case DType::Q4_0: set_f16(base + offsetof(BlockQ4_0, d), 1e-3f); break;
      default: break;
    }
  }
  return w;
}

struct Bench {
  std::unique_ptr<Backend> be;
  CudaBackendExt* ext = nullptr;
  explicit Bench(int dev) : be(make_cuda_backend(dev)), ext(dynamic_cast<CudaBackendExt*>(be.get())) {}
  Bench(int dev, const CudaOptions& o) : be(make_cuda_backend(dev, o)), ext(dynamic_cast<CudaBackendExt*>(be.get())) {}

  // Median seconds of one step running `ops` (after warm-up steps that capture the graph).
  template <class F>
  double time_step(const Batch& b, F&& ops, int reps = 15) {
    std::vector<double> t;
    for (int i = 0; i < reps + 3; ++i) {
      const auto t0 = Clock::now();
      be->begin_step(b);
      ops();
      be->end_step(Act{}, std::span<float>());
      if (i >= 3) t.push_back(seconds_since(t0));
    }
    return median(t);
  }
};

Batch tokens_batch(int n, int pos0 = 0) {
  Batch b;
  for (int i = 0; i < n; ++i) b.add(1, pos0 + i, 0, false);
  return b;
}

double copy_bandwidth(int dev) {
  cudaSetDevice(dev);
  const size_t bytes = size_t(1) << 30;
  void *a = nullptr, *b = nullptr;
  if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess) return 0;
  cudaMemset(a, 1, bytes);
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
  cudaEventRecord(e0);
  const int reps = 10;
  for (int i = 0; i < reps; ++i) cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
  cudaEventRecord(e1);
  cudaEventSynchronize(e1);
  float ms = 0;
  cudaEventElapsedTime(&ms, e0, e1);
  cudaFree(a);
  cudaFree(b);
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return 2.0 * bytes * reps / (ms * 1e-3) / 1e9;  // read + write
}

// Kernel timings run one op kind per step (no fusion across the repeated ops); "old" is the previous engineer's
// path (register matvec, flash attention, no programmatic dependent launch) for before/after tables.
CudaOptions kernel_opts(bool old) {
  CudaOptions o = CudaOptions::from_env();
  o.fuse = 0;
  if (old) o.mv = o.pdl = o.attn_decode = o.attn_prefill = 0;
  return o;
}

// Which matmuls --kernels times: weight types and token counts (empty: all), and whether the old kernels run too.
struct KernelFilter {
  std::vector<std::string> types;
  std::vector<int> tokens;
  bool with_old = true;
  bool attention = true;  // off once --types narrows the run to matmuls
  bool type_ok(DType t) const {
    return types.empty() || std::find(types.begin(), types.end(), dtype_name(t)) != types.end();
  }
  bool tokens_ok(int n) const { return tokens.empty() || std::find(tokens.begin(), tokens.end(), n) != tokens.end(); }
};

void bench_kernels(int dev, bool quick, const KernelFilter& filter) {
  const double bw = copy_bandwidth(dev);
  const double rbw = cuda_read_bandwidth(dev, double(size_t(2) << 30)) / 1e9;
  {
    Bench b(dev);
    std::printf("\n== kernels on %s ==\n", b.ext->device_name().c_str());
  }
  std::printf("device-to-device copy: %.0f GB/s (read + write); streaming read: %.0f GB/s\n", bw, rbw);
  result("copy_bandwidth", bw, "GB/s");
  result("read_bandwidth", rbw, "GB/s");
  std::printf("\n%-38s %12s %10s %9s %7s\n", "matmul", "shape", "us/op", "GB/s", "%read");
  struct Shape {
    int64_t rows, K;
  };
  const Shape shapes[] = {{4096, 4096}, {14336, 4096}, {4096, 14336}, {1024, 4096}, {2048, 2048}, {8192, 2048},
                          {128256, 4096}};
  std::vector<DType> types = {DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_0, DType::Q4_0, DType::F16, DType::BF16};
  if (quick) types = {DType::Q4_K, DType::Q6_K, DType::Q8_0, DType::F16};
  for (DType t : types)
    for (const Shape& s : shapes) {
      if (s.rows == 128256 && t != DType::Q6_K && t != DType::Q4_K) continue;
      if (!filter.type_ok(t)) continue;
      const std::vector<uint8_t> wb = random_weights(t, s.rows, s.K, 7);
      for (int old = 0; old < (filter.with_old ? 2 : 1); ++old) {
      Bench b(dev, kernel_opts(old));
      // Copies of the matrix, used in turn, so that the repeated ops stream from memory rather than from the
      // 50 MB L2 cache (at least 200 MB in all).
      const double mbytes = double(s.rows) * row_bytes(t, s.K);
      const int copies = static_cast<int>(std::min(20.0, std::ceil(200e6 / mbytes)));
      std::vector<const Weight*> ws;
      for (int c = 0; c < copies; ++c) ws.push_back(b.be->upload_weight("w", t, {s.K, s.rows}, wb));
      Act x = b.be->alloc_act(512, s.K), y = b.be->alloc_act(512, s.rows);
      std::vector<float> xs(static_cast<size_t>(512 * s.K));
      std::mt19937 rng(1);
      std::normal_distribution<float> nd;
      for (auto& v : xs) v = nd(rng);
      b.ext->copy_to_device(x.data, xs.data(), xs.size() * 4);
      const double empty = b.time_step(tokens_batch(1), [] {});
      for (int n : {1, 4, 8, 16, 32, 64, 512}) {
        if (n == 512 && (s.rows == 128256 || t == DType::BF16 || old || quick)) continue;
        if (quick && n == 4) continue;
        if (!filter.tokens_ok(n)) continue;
        const int R = n == 512 ? 3 : 20;
        const double ts = b.time_step(tokens_batch(std::min(n, 512)), [&] {
          for (int i = 0; i < R; ++i) b.be->matmul(ws[i % copies], x.with_rows(n), y.with_rows(n));
        });
        const double per = std::max(ts - empty, 1e-9) / R;
        const double bytes = double(s.rows) * row_bytes(t, s.K);
        const std::string name =
            "matmul " + std::string(dtype_name(t)) + " n=" + std::to_string(n) + (old ? " old" : "");
        const std::string shape = std::to_string(s.rows) + "x" + std::to_string(s.K);
        if (n == 512) {
          const double tflops = 2.0 * n * s.rows * s.K / per / 1e12;
          std::printf("%-38s %12s %10.1f %9s %7s   %.0f TFLOP/s\n", name.c_str(), shape.c_str(), per * 1e6, "-", "-",
                      tflops);
          result(name + " " + shape, tflops, "TFLOP/s");
        } else {
          const double gbs = bytes / per / 1e9;
          std::printf("%-38s %12s %10.1f %9.0f %6.0f%%\n", name.c_str(), shape.c_str(), per * 1e6, gbs,
                      rbw > 0 ? 100.0 * gbs / rbw : 0.0);
          result(name + " " + shape, gbs, "GB/s");
        }
      }
      }
    }

  if (!filter.attention) return;
  std::printf("\n%-38s %12s %10s %9s\n", "attention (32 q / 8 kv heads, d 128)", "tokens@pos", "us/op", "KV GB/s");
  for (const auto& [n, pos] : std::vector<std::pair<int, int>>{
           {1, 511}, {1, 4095}, {1, 16383}, {1, 32767}, {4, 4095}, {8, 4095}, {8, 16383}, {512, 0}, {512, 3584}})
    for (int old = 0; old < 2; ++old) {
    Bench b(dev, kernel_opts(old));
    const int ctx = std::max(4096, pos + n);
    const int slots = n == 8 ? 8 : 1;
    b.be->alloc_kv({1, slots, ctx, 8 * 128, DType::F16});
    Act q = b.be->alloc_act(512, 32 * 128), o = b.be->alloc_act(512, 32 * 128);
    Batch bt;
    for (int i = 0; i < n; ++i) bt.add(1, n == 8 ? pos : pos + i, n == 8 ? i : 0, false);
    const double empty = b.time_step(bt, [] {});
    const int R = 16;
    const double ts = b.time_step(bt, [&] {
      for (int i = 0; i < R; ++i)
        b.be->attention(q.with_rows(n), o.with_rows(n), {0, 32, 8, 128, 0.088f});
    });
    const double per = std::max(ts - empty, 1e-9) / R;
    const std::string where = std::to_string(n) + "@" + std::to_string(pos) + (n == 512 ? " (causal)" : "");
    const double kv_bytes = n == 512 ? 0 : double(n) * (pos + 1) * 8 * 128 * 2 * 2;
    std::printf("%-38s %12s %10.1f %9.0f\n", old ? "attention old" : "attention", where.c_str(), per * 1e6,
                kv_bytes / per / 1e9);
    result(std::string(old ? "attention old " : "attention ") + where, per * 1e6, "us");
  }
}

void bench_model(int dev, const std::string& path, int prefill, int decode, int decode_at) {
  auto file = std::make_shared<const GgufFile>(GgufFile::open(path));
  RunOptions ro;
  if (decode_at < 0) decode_at = prefill;
  ro.n_ctx = std::max(prefill, decode_at) + decode + 16;
  // Up to 64 sequences at short context; one at long context (64 slots of 16K positions would not fit).
  const int max_seqs = ro.n_ctx > 4096 ? 1 : 64;
  ro.n_slots = max_seqs;
  ro.max_batch = std::max(prefill, max_seqs);
  ro.max_logit_rows = max_seqs;
  const auto t_load = Clock::now();
  Model m(file, make_cuda_backend(dev), ro);
  const double load_s = seconds_since(t_load);
  auto* ext = dynamic_cast<CudaBackendExt*>(&m.backend());
  const ModelConfig& c = m.config();
  std::printf("\n== %s: %s, %d layers, dim %d, vocab %d on %s ==\n", path.c_str(), c.name.c_str(), c.n_layers, c.dim,
              c.n_vocab, ext->device_name().c_str());
  std::printf("loaded in %.1f s, device memory %.2f GiB, weights read per token %.2f GiB\n", load_s,
              m.backend().memory_bytes() / double(1 << 30), m.weight_bytes_per_token() / double(1 << 30));
  std::vector<float> logits(static_cast<size_t>(64) * c.n_vocab);
  std::mt19937 rng(5);
  std::uniform_int_distribution<int32_t> tok(0, c.n_vocab - 1);
  Batch b;
  // prefill
  std::vector<double> tp;
  for (int rep = 0; rep < 6; ++rep) {
    b.clear();
    for (int i = 0; i < prefill; ++i) b.add(tok(rng), i, 0, i == prefill - 1);
    const auto t0 = Clock::now();
    m.forward(b, logits);
    if (rep >= 2) tp.push_back(seconds_since(t0));  // after the eager run and the capture
  }
  const std::string base = path.substr(path.find_last_of('/') + 1);
  const double prefill_tps = prefill / median(tp);
  std::printf("prefill %d tokens: %.1f ms, %.0f tok/s\n", prefill, median(tp) * 1e3, prefill_tps);
  result(base + " prefill" + std::to_string(prefill), prefill_tps, "tok/s");
  // Median time of `decode` steps of `seqs` sequences (one new token each, after two warm-up steps); step() runs
  // the batch b.
  auto median_step = [&](int seqs, auto&& step) {
    std::vector<double> td;
    for (int s = 0; s < decode; ++s) {
      b.clear();
      for (int q = 0; q < seqs; ++q) b.add(tok(rng), decode_at + s, q, true);
      const auto t0 = Clock::now();
      step();
      if (s >= 2) td.push_back(seconds_since(t0));
    }
    return median(td);
  };
  // decode: 1 to 64 sequences, each at positions after the prompt
  for (int seqs : {1, 2, 4, 8, 16, 32, 64}) {
    if (seqs > max_seqs) break;
    const double t = median_step(seqs, [&] { m.forward(b, logits); });
    const double tps = seqs / t;
    const double gbs = m.weight_bytes_per_token() / t / 1e9;
    std::printf("decode %d seq @%d: %.3f ms/step, %.1f tok/s, weights at %.0f GB/s\n", seqs, decode_at, t * 1e3, tps,
                gbs);
    const std::string at = decode_at != prefill ? "@" + std::to_string(decode_at) : "";
    result(base + " decode x" + std::to_string(seqs) + at, tps, "tok/s");
    if (seqs == 1) result(base + " decode x1 weight bandwidth", gbs, "GB/s");
    if (seqs == 1) {  // greedy steps read back one id (end_step_argmax) instead of the logits row
      std::vector<int32_t> ids(1);
      const double tg = median_step(1, [&] { m.forward_argmax(b, ids); });
      std::printf("decode 1 seq @%d, argmax read back: %.3f ms/step, %.1f tok/s\n", decode_at, tg * 1e3, 1 / tg);
      result(base + " decode x1 argmax", 1 / tg, "tok/s");
    }
  }
  const auto st = ext->graph_stats();
  std::printf("graphs: %lld captured, %lld replays, %lld eager steps\n", static_cast<long long>(st.captures),
              static_cast<long long>(st.replays), static_cast<long long>(st.eager_steps));
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> models;
  bool kernels = false;
  int prefill = 512, decode = 64, dev = 0, decode_at = -1;
  bool quick = false;
  KernelFilter filter;
  auto split = [](const std::string& list) {
    std::vector<std::string> out;
    size_t p = 0;
    while (p <= list.size()) {
      const size_t c = std::min(list.find(',', p), list.size());
      if (c > p) out.push_back(list.substr(p, c - p));
      p = c + 1;
    }
    return out;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--model") models.push_back(next());
    else if (a == "--kernels") kernels = true;
    else if (a == "--quick") quick = true;
    else if (a == "--types") filter.types = split(next()), filter.attention = false;
    else if (a == "--tokens") {
      for (const std::string& n : split(next())) filter.tokens.push_back(std::atoi(n.c_str()));
    } else if (a == "--new-only") filter.with_old = false;
    else if (a == "--decode-at") decode_at = std::atoi(next().c_str());
    else if (a == "--prefill") prefill = std::atoi(next().c_str());
    else if (a == "--decode") decode = std::atoi(next().c_str());
    else if (a == "--device") dev = std::atoi(next().c_str());
    else {
      std::fprintf(stderr,
                   "usage: vireo_gpu_bench [--kernels [--quick] [--types Q4_K,Q6_K] [--tokens 16,64] [--new-only]] [--model X.gguf]... [--prefill 512] [--decode 64] "
                   "[--decode-at POS] [--device 0]\n");
      return 2;
    }
  }
  std::string why;
  if (!cuda_available(&why)) {
    std::fprintf(stderr, "vireo_gpu_bench: %s\n", why.c_str());
    return 1;
  }
  try {
    if (kernels) bench_kernels(dev, quick, filter);
    for (const std::string& m : models) bench_model(dev, m, prefill, decode, decode_at);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vireo_gpu_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
