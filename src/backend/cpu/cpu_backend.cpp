#include "backend/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>
#include <stdexcept>

#include "backend/cpu/attention_kernels.h"
#include "backend/cpu/matmul.h"
#include "backend/cpu/thread_pool.h"
#include "quant/quant.h"
#include "runtime/sampler.h"

namespace vireo {
namespace {

using cpu::PackedMatrix;
using cpu::ThreadPool;

struct CpuWeight : Weight {
  // Matrices (and embedding tables) go through PackedMatrix; small f32 vectors (norms, biases, rope factors)
  // are kept as f32.
  std::unique_ptr<PackedMatrix> matrix;
  std::vector<float> vec;
};

// f16 -> f32 through a table: the portable build has no F16C, and the table is 256 KiB, shared.
const float* fp16_table() {
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (uint32_t i = 0; i < 65536; ++i) t[i] = fp16_to_fp32(static_cast<uint16_t>(i));
    return t;
  }();
  return table.data();
}

float* f(Act a) { return static_cast<float*>(a.data); }

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int n_threads) : pool_(n_threads), h2f_(fp16_table()) {
#if defined(__x86_64__) && !defined(VIREO_NO_X86)
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("f16c") &&
        cpu::active_cpu_path() == cpu::CpuPath::Avx512)
      simd_attention_ = 512;
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c") &&
             cpu::active_cpu_path() == cpu::CpuPath::Avx2)
      simd_attention_ = 256;
#endif
#if defined(__wasm_simd128__)
    if (cpu::active_cpu_path() == cpu::CpuPath::Simd128) simd_attention_ = 128;
#endif
  }

  std::string name() const override { return "cpu"; }

  const Weight* upload_weight(const std::string& name, DType type, const std::vector<int64_t>& shape,
                              std::span<const uint8_t> bytes) override {
    auto w = std::make_unique<CpuWeight>();
    w->type = type;
    w->shape = shape;
    if (shape.size() == 1) {
      w->vec.resize(static_cast<size_t>(shape[0]));
      if (!can_dequantize(type)) throw std::runtime_error("tensor '" + name + "': cannot read type " +
                                                          std::string(dtype_name(type)));
      dequantize_row(type, bytes.data(), w->vec.data(), shape[0]);
      memory_ += static_cast<int64_t>(w->vec.size() * sizeof(float));
    } else {
      int64_t rows = 1;
      for (size_t i = 1; i < shape.size(); ++i) rows *= shape[i];
      w->matrix = std::make_unique<PackedMatrix>(type, bytes.data(), rows, shape[0], &pool_);
      memory_ += w->matrix->bytes();
    }
    weights_.push_back(std::move(w));
    return weights_.back().get();
  }

  Act alloc_act(int64_t max_rows, int64_t cols) override {
    acts_.emplace_back(static_cast<size_t>(max_rows * cols), 0.f);
    memory_ += max_rows * cols * 4;
    return {acts_.back().data(), cols, max_rows};
  }

  void alloc_kv(const KvCacheConfig& cfg) override {
    kv_ = cfg;
    const size_t elem = cfg.type == DType::F32 ? 4 : 2;
    if (cfg.type != DType::F32 && cfg.type != DType::F16)
      throw std::runtime_error("CPU KV cache supports f16 and f32");
    const size_t per_layer = static_cast<size_t>(cfg.n_slots) * cfg.n_ctx * cfg.kv_dim * elem;
    k_cache_.assign(cfg.n_layers, std::vector<uint8_t>(per_layer));
    v_cache_.assign(cfg.n_layers, std::vector<uint8_t>(per_layer));
    memory_ += static_cast<int64_t>(2 * per_layer * cfg.n_layers);
    scores_.assign(static_cast<size_t>(pool_.slots()) * cfg.n_ctx, 0.f);
  }

  int64_t memory_bytes() const override { return memory_; }

  void begin_step(const Batch& batch) override {
    batch_ = &batch;
    n_ = batch.size();
  }

  void end_step(Act logits, std::span<float> host) override {
    const size_t n = static_cast<size_t>(batch_->logit_rows.size() * logits.cols);
    if (host.size() < n) throw std::runtime_error("logits buffer too small");
    std::memcpy(host.data(), logits.data, n * sizeof(float));
    batch_ = nullptr;
  }

  void end_step_argmax(Act logits, std::span<int32_t> ids) override {
    const size_t r = batch_->logit_rows.size();
    if (ids.size() < r) throw std::runtime_error("ids buffer too small");
    for (size_t i = 0; i < r; ++i)
      ids[i] = argmax(std::span<const float>(f(logits) + i * logits.cols, static_cast<size_t>(logits.cols)));
    batch_ = nullptr;
  }

  void end_step_candidates(Act logits, std::span<const float> margins, int32_t cap, std::span<float> values,
                           std::span<int32_t> ids, std::span<int32_t> counts) override {
    const size_t r = batch_->logit_rows.size();
    if (counts.size() < r || margins.size() < r || values.size() < r * cap || ids.size() < r * cap)
      throw std::runtime_error("candidate buffers too small");
    for (size_t i = 0; i < r; ++i)
      counts[i] = select_candidates(std::span<const float>(f(logits) + i * logits.cols, logits.cols), margins[i],
                                    cap, values.data() + i * cap, ids.data() + i * cap);
    batch_ = nullptr;
  }

  void read_logit_rows(Act logits, std::span<const int32_t> rows, std::span<float> host) override {
    if (host.size() < rows.size() * logits.cols) throw std::runtime_error("logits buffer too small");
    for (size_t i = 0; i < rows.size(); ++i)
      std::memcpy(host.data() + i * logits.cols, f(logits) + rows[i] * logits.cols, logits.cols * sizeof(float));
  }

  void embed(const Weight* table, Act out) override {
    const auto* w = static_cast<const CpuWeight*>(table);
    for (int t = 0; t < n_; ++t) {
      const int32_t tok = batch_->tokens[t];
      if (tok < 0 || tok >= w->matrix->rows()) throw std::runtime_error("token id out of range");
      w->matrix->dequantize_row(tok, f(out) + t * out.cols);
    }
  }

  void rmsnorm(Act x, const Weight* w, float eps, Act out) override {
    const float* g = static_cast<const CpuWeight*>(w)->vec.data();
    for (int t = 0; t < x.rows; ++t) rmsnorm_row(f(x) + t * x.cols, g, eps, x.cols, f(out) + t * out.cols);
  }

  void add_rmsnorm(Act x, Act y, const Weight* w, float eps, Act out) override {
    const float* g = static_cast<const CpuWeight*>(w)->vec.data();
    for (int t = 0; t < x.rows; ++t) {
      float* xr = f(x) + t * x.cols;
      const float* yr = f(y) + t * y.cols;
      for (int64_t i = 0; i < x.cols; ++i) xr[i] += yr[i];
      rmsnorm_row(xr, g, eps, x.cols, f(out) + t * out.cols);
    }
  }

  void matmul(const Weight* w, Act x, Act out) override {
    const PackedMatrix& m = *static_cast<const CpuWeight*>(w)->matrix;
    m.matmul(f(x), x.rows, x.cols, f(out), out.cols, pool_);
  }

  void matmuls(Act x, std::span<const MatmulTarget> targets) override {
    if (targets.size() > cpu::kMaxSharedInput) return Backend::matmuls(x, targets);
    cpu::MatmulOut outs[cpu::kMaxSharedInput];
    for (size_t j = 0; j < targets.size(); ++j)
      outs[j] = {static_cast<const CpuWeight*>(targets[j].w)->matrix.get(), f(targets[j].out), targets[j].out.cols};
    cpu::matmul_shared_input(f(x), x.rows, x.cols, std::span<const cpu::MatmulOut>(outs, targets.size()), pool_);
  }

  void add_bias(Act x, const Weight* b) override {
    const float* bv = static_cast<const CpuWeight*>(b)->vec.data();
    for (int t = 0; t < x.rows; ++t)
      for (int64_t i = 0; i < x.cols; ++i) f(x)[t * x.cols + i] += bv[i];
  }

  void rope(Act x, const RopeParams& p) override {
    const float* factors = p.freq_factors ? static_cast<const CpuWeight*>(p.freq_factors)->vec.data() : nullptr;
    const int half = p.rope_dim / 2;
    for (int i = 0; i < half; ++i) {
      // theta_i = pos * base^(-2i/d) / factor_i; the frequency is the same for every token of the step
      const float freq = rope_frequency(p, i, factors);
      const int a = p.mode == RopeMode::Normal ? 2 * i : i;
      const int b = p.mode == RopeMode::Normal ? 2 * i + 1 : i + half;
      for (int t = 0; t < n_; ++t) {
        const float angle = static_cast<float>(batch_->positions[t]) * freq;
        const float c = std::cos(angle), s = std::sin(angle);
        for (int h = 0; h < p.n_heads; ++h) {
          float* v = f(x) + t * x.cols + h * p.head_dim;
          const float x0 = v[a], x1 = v[b];
          v[a] = x0 * c - x1 * s;
          v[b] = x0 * s + x1 * c;
        }
      }
    }
  }

  void kv_store(int32_t layer, Act k, Act v) override {
    for (int t = 0; t < n_; ++t) {
      const int32_t pos = batch_->positions[t], slot = batch_->slots[t];
      if (pos < 0 || pos >= kv_.n_ctx || slot < 0 || slot >= kv_.n_slots)
        throw std::runtime_error("position or slot outside the KV cache");
      const size_t row = (static_cast<size_t>(slot) * kv_.n_ctx + pos) * kv_.kv_dim;
      store_row(k_cache_[layer], row, f(k) + t * k.cols);
      store_row(v_cache_[layer], row, f(v) + t * v.cols);
    }
  }

  void attention(Act q, Act out, const AttentionParams& p) override {
    const int group = p.n_heads / p.n_kv_heads;
    const int64_t tasks = static_cast<int64_t>(n_) * p.n_heads;
    pool_.run([&](int ti, int tn) {
      int64_t b, e;
      cpu::split_range(tasks, ti, tn, 1, &b, &e);
      float* scores = scores_.data() + static_cast<size_t>(ti) * kv_.n_ctx;
      for (int64_t task = b; task < e; ++task) {
        const int t = static_cast<int>(task / p.n_heads), h = static_cast<int>(task % p.n_heads);
        const int kvh = h / group;
        const int32_t pos = batch_->positions[t], slot = batch_->slots[t];
        const float* qv = f(q) + t * q.cols + h * p.head_dim;
        const size_t base = static_cast<size_t>(slot) * kv_.n_ctx * kv_.kv_dim + kvh * p.head_dim;
#if defined(__x86_64__) && !defined(VIREO_NO_X86)
        if (simd_attention_ && kv_.type == DType::F16 && p.head_dim % (simd_attention_ / 16) == 0 &&
            p.head_dim <= 256) {
          const auto* kc = reinterpret_cast<const uint16_t*>(k_cache_[p.layer].data()) + base;
          const auto* vc = reinterpret_cast<const uint16_t*>(v_cache_[p.layer].data()) + base;
          float* o = f(out) + t * out.cols + h * p.head_dim;
          if (simd_attention_ == 512)
            cpu::attend_head_f16_avx512(qv, kc, vc, kv_.kv_dim, pos + 1, p.head_dim, p.scale, scores, o);
          else
            cpu::attend_head_f16_avx2(qv, kc, vc, kv_.kv_dim, pos + 1, p.head_dim, p.scale, scores, o);
          continue;
        }
#endif
#if defined(__wasm_simd128__)
        if (simd_attention_ && kv_.type == DType::F16 && p.head_dim % 4 == 0 && p.head_dim <= 256) {
          const auto* kc = reinterpret_cast<const uint16_t*>(k_cache_[p.layer].data()) + base;
          const auto* vc = reinterpret_cast<const uint16_t*>(v_cache_[p.layer].data()) + base;
          cpu::attend_head_f16_simd128(qv, kc, vc, kv_.kv_dim, pos + 1, p.head_dim, p.scale, scores,
                                       f(out) + t * out.cols + h * p.head_dim);
          continue;
        }
#endif
        // scores[j] = q · k_j * scale for the positions 0..pos of this sequence (causal)
        float mx = -INFINITY;
        for (int j = 0; j <= pos; ++j) {
          float s = dot_cache(k_cache_[p.layer], base + static_cast<size_t>(j) * kv_.kv_dim, qv, p.head_dim);
          s *= p.scale;
          scores[j] = s;
          mx = std::max(mx, s);
        }
        float sum = 0.f;
        for (int j = 0; j <= pos; ++j) {
          scores[j] = std::exp(scores[j] - mx);
          sum += scores[j];
        }
        const float inv = 1.f / sum;
        float* o = f(out) + t * out.cols + h * p.head_dim;
        std::fill(o, o + p.head_dim, 0.f);
        for (int j = 0; j <= pos; ++j)
          axpy_cache(v_cache_[p.layer], base + static_cast<size_t>(j) * kv_.kv_dim, scores[j] * inv, o,
                     p.head_dim);
      }
    });
  }

  void swiglu(Act gate, Act up, Act out) override {
    for (int t = 0; t < out.rows; ++t) {
      const float* g = f(gate) + t * gate.cols;
      const float* u = f(up) + t * up.cols;
      float* o = f(out) + t * out.cols;
#if defined(__x86_64__) && !defined(VIREO_NO_X86)
      if (simd_attention_) {
        (simd_attention_ == 512 ? cpu::swiglu_avx512 : cpu::swiglu_avx2)(g, u, o, out.cols);
        continue;
      }
#endif
#if defined(__wasm_simd128__)
      if (simd_attention_) {
        cpu::swiglu_simd128(g, u, o, out.cols);
        continue;
      }
#endif
      for (int64_t i = 0; i < out.cols; ++i) o[i] = g[i] / (1.f + std::exp(-g[i])) * u[i];
    }
  }

  void add(Act x, Act y) override {
    for (int t = 0; t < x.rows; ++t)
      for (int64_t i = 0; i < x.cols; ++i) f(x)[t * x.cols + i] += f(y)[t * y.cols + i];
  }

  void gather_logit_rows(Act x, Act out) override {
    for (size_t i = 0; i < batch_->logit_rows.size(); ++i)
      std::memmove(f(out) + i * out.cols, f(x) + batch_->logit_rows[i] * x.cols, x.cols * sizeof(float));
  }

  void kv_truncate(int32_t, int32_t) override {}  // slotted cache: later positions are overwritten before use

  void kv_copy(int32_t src, int32_t dst, int32_t n) override {
    if (src < 0 || src >= kv_.n_slots || dst < 0 || dst >= kv_.n_slots || n < 0 || n > kv_.n_ctx)
      throw std::runtime_error("kv_copy: slot or length outside the KV cache");
    if (src == dst || n == 0) return;
    const size_t elem = kv_.type == DType::F32 ? 4 : 2;
    const size_t slot_bytes = static_cast<size_t>(kv_.n_ctx) * kv_.kv_dim * elem;
    const size_t bytes = static_cast<size_t>(n) * kv_.kv_dim * elem;
    for (int32_t l = 0; l < kv_.n_layers; ++l) {
      std::memcpy(k_cache_[l].data() + dst * slot_bytes, k_cache_[l].data() + src * slot_bytes, bytes);
      std::memcpy(v_cache_[l].data() + dst * slot_bytes, v_cache_[l].data() + src * slot_bytes, bytes);
    }
  }

 private:
  static void rmsnorm_row(const float* x, const float* g, float eps, int64_t n, float* out) {
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
    const float scale = 1.f / std::sqrt(static_cast<float>(ss / n) + eps);
    for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * g[i];
  }

  void store_row(std::vector<uint8_t>& cache, size_t row, const float* src) {
    if (kv_.type == DType::F32) {
      std::memcpy(cache.data() + row * 4, src, kv_.kv_dim * sizeof(float));
    } else {
      auto* dst = reinterpret_cast<uint16_t*>(cache.data()) + row;
      for (int i = 0; i < kv_.kv_dim; ++i) dst[i] = fp32_to_fp16(src[i]);
    }
  }

  float dot_cache(const std::vector<uint8_t>& cache, size_t off, const float* q, int n) const {
    float s = 0.f;
    if (kv_.type == DType::F32) {
      const float* k = reinterpret_cast<const float*>(cache.data()) + off;
      for (int i = 0; i < n; ++i) s += q[i] * k[i];
    } else {
      const uint16_t* k = reinterpret_cast<const uint16_t*>(cache.data()) + off;
      for (int i = 0; i < n; ++i) s += q[i] * h2f_[k[i]];
    }
    return s;
  }

  void axpy_cache(const std::vector<uint8_t>& cache, size_t off, float a, float* o, int n) const {
    if (kv_.type == DType::F32) {
      const float* v = reinterpret_cast<const float*>(cache.data()) + off;
      for (int i = 0; i < n; ++i) o[i] += a * v[i];
    } else {
      const uint16_t* v = reinterpret_cast<const uint16_t*>(cache.data()) + off;
      for (int i = 0; i < n; ++i) o[i] += a * h2f_[v[i]];
    }
  }

  ThreadPool pool_;
  const float* h2f_;
  // 512 / 256 / 128: AVX-512 / AVX2 / SIMD128 attention and SwiGLU (the scalar loops are the reference).
  int simd_attention_ = 0;
  std::deque<std::unique_ptr<CpuWeight>> weights_;
  std::deque<std::vector<float>> acts_;
  KvCacheConfig kv_;
  std::vector<std::vector<uint8_t>> k_cache_, v_cache_;
  std::vector<float> scores_;
  const Batch* batch_ = nullptr;
  int n_ = 0;
  int64_t memory_ = 0;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int n_threads) { return std::make_unique<CpuBackend>(n_threads); }

}  // namespace vireo
