// The WebGPU backend (natively through wgpu-native, in browsers through navigator.gpu: see gpu_device.h).
//
// Shape of a step: begin_step writes the token ids, positions, slots and logit rows into one storage buffer
// (STEP); each op appends a Dispatch record (pipeline, buffers, parameters, grid) to the step's log; the
// end_step variants look the log up among the plans seen before (a plan holds the bind groups and a uniform
// buffer with every dispatch's parameters), build it on a miss, encode all dispatches into one compute pass,
// add the copy of what the host reads back, and submit once. Nothing is allocated per token once a step shape
// has been seen.
#include "backend/webgpu/webgpu_backend.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <unordered_map>

#include "backend/webgpu/gpu_device.h"
#include "backend/webgpu/wgsl_sources.h"
#include "quant/quant.h"
#include "runtime/sampler.h"

namespace vireo {
namespace {

using gpu::Handle;

// Weight formats the kernels read (WEIGHT_TYPE in wgsl/quant.wgsl). Other GGUF types are dequantized to F32
// at upload (exact, at the cost of memory).
enum WeightKind : uint32_t { kF32 = 0, kF16 = 1, kQ8_0 = 2, kQ4_0 = 3, kQ4_K = 4, kQ6_K = 5, kKinds = 6 };

WeightKind kind_for(DType t) {
  switch (t) {
    case DType::F32: return kF32;
    case DType::F16: return kF16;
    case DType::Q8_0: return kQ8_0;
    case DType::Q4_0: return kQ4_0;
    case DType::Q4_K: return kQ4_K;
    case DType::Q6_K: return kQ6_K;
    default: return kF32;
  }
}

// u32 words per row of k elements in the repacked layout.
uint32_t row_words(WeightKind kind, int64_t k) {
  switch (kind) {
    case kF32: return static_cast<uint32_t>((k + 31) / 32 * 32);  // float rows padded to whole sub-blocks
    case kF16: return static_cast<uint32_t>((k + 31) / 32 * 16);
    case kQ8_0: return static_cast<uint32_t>(k / 32 * 9);
    case kQ4_0: return static_cast<uint32_t>(k / 32 * 5);
    case kQ4_K: return static_cast<uint32_t>(k / 256 * 36);
    default: return static_cast<uint32_t>(k / 256 * 56);
  }
}

// One GGUF row (k elements of type t at src) into the kernels' layout at dst (row_words(kind, k) words): blocks
// padded to whole words (Q8_0 34 -> 36 bytes and Q4_0 18 -> 20 with the f16 scale alone in the first word,
// Q6_K 210 -> 224, so that its blocks are whole 16-byte vectors), or dequantized to f32 for types without a
// kernel.
void repack_row(DType t, WeightKind kind, const uint8_t* src, int64_t k, uint8_t* dst, std::vector<float>& tmp) {
  switch (kind) {
    case kF32:
      if (t == DType::F32) {
        std::memcpy(dst, src, static_cast<size_t>(k) * 4);
      } else {
        tmp.resize(static_cast<size_t>(k));
        dequantize_row(t, src, tmp.data(), k);
        std::memcpy(dst, tmp.data(), static_cast<size_t>(k) * 4);
      }
      std::memset(dst + k * 4, 0, static_cast<size_t>(row_words(kF32, k) - k) * 4);
      return;
    case kF16:
      std::memcpy(dst, src, static_cast<size_t>(k) * 2);
      std::memset(dst + k * 2, 0, static_cast<size_t>(row_words(kF16, k)) * 4 - k * 2);
      return;
    case kQ4_K: std::memcpy(dst, src, static_cast<size_t>(k / 256) * 144); return;
    case kQ8_0: case kQ4_0: {
      const size_t in = kind == kQ8_0 ? 34 : 18, out = in + 2;
      for (int64_t b = 0; b < k / 32; ++b) {
        uint8_t* o = dst + b * out;
        const uint8_t* i = src + b * in;
        o[0] = i[0], o[1] = i[1], o[2] = 0, o[3] = 0;
        std::memcpy(o + 4, i + 2, in - 2);
      }
      return;
    }
    default:
      for (int64_t b = 0; b < k / 256; ++b) {
        std::memcpy(dst + b * 224, src + b * 210, 210);
        std::memset(dst + b * 224 + 210, 0, 14);
      }
      return;
  }
}

struct GpuBuffer {
  Handle buf = 0;
  uint64_t size = 0;
};

struct WgWeight : Weight {
  WeightKind kind = kF32;
  int64_t k = 0, rows = 0;
  uint32_t words_per_row = 0;
  struct Chunk {
    Handle buf;
    int64_t row0, rows;
  };
  std::vector<Chunk> chunks;   // matrices: row chunks, each within the binding limit
  GpuBuffer vec;               // 1-D tensors (norm weights, biases, rope factors) as f32
  std::vector<float> host;     // ... and their values on the host (rope factors feed the frequency table)
};

// Steps of up to this many tokens run the split-KV decode attention (more tokens have parallelism enough in one
// workgroup per token and head).
constexpr int32_t kSplitAttentionTokens = 16;

// Pipelines are named by an index into this table: (module, entry point).
enum PipeId : uint32_t {
  kMatmul0 = 0,                     // + WeightKind
  kMatvec0 = kMatmul0 + kKinds,     // + WeightKind: steps of at most kMatvecTokens tokens
  kEmbed0 = kMatvec0 + kKinds,      // + WeightKind
  kRmsnorm = kEmbed0 + kKinds, kAddRmsnorm, kSwiglu, kSwigluInplace, kAdd, kAddBias, kGatherRows, kRope,
  kKvStore, kAttention, kAttentionSplit, kAttentionMerge, kKvCopy, kArgmax, kArgmaxPartial, kArgmaxFinal, kCandidates, kMatvecQ4K, kMatvecQ6K,
  kSample, kChainNext,
  kRopeKvStore,  // rope(q), rope(k) and kv_store in one (created with the KV-cache pipelines)
  // only where the WGSL implementation has packed 4x8-bit dot products:
  kQuantizeX, kMatvecMultiI8, kRmsnormQ8, kAddRmsnormQ8, kSwigluQ8, kSwigluInplaceQ8,
  kAttentionMergeQ8,  // (with the KV-cache pipelines)
  kPipes
};

// One dispatch of a step: what the plan needs to build its bind group, and what a later step is compared with.
// Plain data, zeroed padding included (WebGpuBackend::push), so that dispatches compare and hash bytewise.
struct Dispatch {
  uint32_t pipe;
  uint32_t n_bind;
  struct Bind {
    uint32_t binding;
    uint32_t pad;
    Handle buf;
    uint64_t size;  // bytes bound from offset 0
  } bind[8];
  uint32_t params[16];
  uint32_t grid[3];
  bool operator==(const Dispatch& o) const { return std::memcmp(this, &o, sizeof(Dispatch)) == 0; }
};

struct Plan {
  std::vector<Dispatch> log;
  std::vector<gpu::DispatchCmd> cmds;  // pipeline, bind group and grid of each dispatch
  std::vector<Handle> groups;
  Handle uniforms = 0;
};

// FNV-1a over the log's 64-bit words (a Dispatch is a whole number of them).
uint64_t hash_log(const std::vector<Dispatch>& log) {
  static_assert(sizeof(Dispatch) % 8 == 0 && std::is_trivially_copyable_v<Dispatch>);
  uint64_t h = 1469598103934665603ull;
  for (const Dispatch& d : log)
    for (size_t i = 0; i < sizeof(Dispatch); i += 8) {
      uint64_t w;
      std::memcpy(&w, reinterpret_cast<const unsigned char*>(&d) + i, 8);
      h = (h ^ w) * 1099511628211ull;
    }
  return h;
}


uint32_t f2u(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// Whether environment variable `name` is set to "on" (anything but empty or "0") when `on` is true, or to "0"
// when it is false: the switches below turn a default off with 0 or an experiment on with 1.
bool env_is(const char* name, bool on) {
  const char* v = std::getenv(name);
  if (!v) return false;
  const std::string s(v);
  return on ? !s.empty() && s != "0" : s == "0";
}

class WebGpuBackend final : public Backend {
 public:
  explicit WebGpuBackend(const WebGpuOptions& opts) : dev_(gpu::open_device()), on_compile_(opts.on_compile) {
    max_binding_ = dev_->limits().max_storage_binding;
    weight_chunk_bytes_ = max_binding_;
    if (opts.max_binding_bytes > 0) weight_chunk_bytes_ = std::min<uint64_t>(max_binding_, opts.max_binding_bytes);
    uniform_stride_ = std::max<uint32_t>(256, dev_->limits().uniform_offset_alignment);
    // VIREO_WEBGPU_PROFILE=1: every step's dispatches run in passes of their own with GPU timestamps, and the
    // GPU time per kernel is printed to stderr at the end (slower; for finding where a step's time goes).
    profile_ = env_is("VIREO_WEBGPU_PROFILE", true);
    int8_decode_ = opts.int8_decode && dev_->limits().packed_dot && !env_is("VIREO_WEBGPU_INT8", false);
    n_pipes_ = int8_decode_ ? kPipes : kQuantizeX;
    // Rows per 256-invocation workgroup of the int8 products (8: 32 lanes per row; VIREO_WEBGPU_MV_ROWS=16: 16).
    const char* mv_rows = std::getenv("VIREO_WEBGPU_MV_ROWS");
    if (mv_rows && std::atoi(mv_rows) == 16) i8_rows_ = 16;
    subgroup_rows_ = dev_->limits().subgroups && !env_is("VIREO_WEBGPU_SUBGROUPS", false);
    f16_matmul_ = opts.f16_matmul && dev_->limits().shader_f16 && !env_is("VIREO_WEBGPU_F16", false);
    k_quant_tiles_ = env_is("VIREO_WEBGPU_KQ_TILES", true);
    create_pipelines();
    create_kv_pipelines(true);  // the f16 cache's (an f32 cache recompiles them in alloc_kv)
  }

  ~WebGpuBackend() override {
    print_profile();
    clear_plans();
    for (auto& p : pipes_) {
      if (p.pipeline) dev_->destroy_pipeline(p.pipeline);
    }
    for (Handle b : owned_) dev_->destroy_buffer(b);
  }

  std::string name() const override { return "webgpu"; }
  bool copies_weights() const override { return true; }
  std::string description() const override {
    const gpu::Limits& l = dev_->limits();
    std::string d = l.adapter.empty() ? name() : name() + ": " + l.adapter;
    if (l.shader_f16 || l.subgroups)
      d += std::string(" [") + (l.shader_f16 ? "shader-f16" : "") + (l.shader_f16 && l.subgroups ? ", " : "") +
           (l.subgroups ? "subgroups" : "") + "]";
    return d;
  }
  BackendCounters counters() const override {
    return {steps_, submits_, dispatches_, encode_seconds_, wait_seconds_};
  }

  // ---- load / plan ----

  const Weight* upload_weight(const std::string& name, DType type, const std::vector<int64_t>& shape,
                              std::span<const uint8_t> bytes) override {
    auto w = std::make_unique<WgWeight>();
    w->type = type;
    w->shape = shape;
    if (!can_dequantize(type))
      throw std::runtime_error("tensor '" + name + "': cannot read type " + std::string(dtype_name(type)));
    if (shape.size() == 1) {
      w->host.resize(static_cast<size_t>(shape[0]));
      dequantize_row(type, bytes.data(), w->host.data(), shape[0]);
      w->vec.size = w->host.size() * 4;
      w->vec.buf = upload(w->host.data(), w->vec.size, name.c_str());
      memory_ += static_cast<int64_t>(w->vec.size);
    } else {
      w->k = shape[0];
      w->rows = 1;
      for (size_t i = 1; i < shape.size(); ++i) w->rows *= shape[i];
      w->kind = kind_for(type);
      if (w->k % dtype_info(type).block_elems != 0)
        throw std::runtime_error("tensor '" + name + "': rows of " + std::to_string(w->k) +
                                 " elements are not whole blocks of " + std::string(dtype_name(type)));
      w->words_per_row = row_words(w->kind, w->k);
      const uint64_t row_bytes_out = uint64_t(w->words_per_row) * 4;
      const int64_t per_chunk = std::max<int64_t>(1, static_cast<int64_t>(weight_chunk_bytes_ / row_bytes_out));
      const int64_t in_row = row_bytes(type, w->k);
      std::vector<float> tmp;
      for (int64_t r0 = 0; r0 < w->rows; r0 += per_chunk) {
        const int64_t nr = std::min(per_chunk, w->rows - r0);
        if (uint64_t(nr) * row_bytes_out > max_binding_)
          throw std::runtime_error("tensor '" + name + "': one row is larger than the adapter's storage binding");
        const Handle b = dev_->create_buffer_init(
            uint64_t(nr) * row_bytes_out, gpu::kStorage | gpu::kCopyDst, name.c_str(), [&](uint8_t* dst) {
              for (int64_t r = 0; r < nr; ++r)
                repack_row(type, w->kind, bytes.data() + (r0 + r) * in_row, w->k, dst + r * row_bytes_out, tmp);
            });
        owned_.push_back(b);
        w->chunks.push_back({b, r0, nr});
        memory_ += static_cast<int64_t>(nr * row_bytes_out);
      }
    }
    weights_.push_back(std::move(w));
    return weights_.back().get();
  }

  Act alloc_act(int64_t max_rows, int64_t cols) override {
    auto& b = acts_.emplace_back();
    b.size = static_cast<uint64_t>(max_rows * cols) * 4;
    b.buf = dev_->create_buffer(b.size, gpu::kStorage | gpu::kCopySrc | gpu::kCopyDst, "activation");
    owned_.push_back(b.buf);
    memory_ += static_cast<int64_t>(b.size);
    max_rows_ = std::max(max_rows_, max_rows);
    return {&b, cols, max_rows};
  }

  void alloc_kv(const KvCacheConfig& cfg) override {
    if (cfg.type != DType::F16 && cfg.type != DType::F32) throw std::runtime_error("WebGPU KV cache supports f16 and f32");
    if (cfg.kv_dim % 2 != 0) throw std::runtime_error("WebGPU KV cache needs an even kv_dim");
    kv_ = cfg;
    const uint64_t elem = cfg.type == DType::F32 ? 4 : 2;
    const uint64_t bytes = uint64_t(cfg.n_slots) * cfg.n_ctx * cfg.kv_dim * elem;
    if (bytes > max_binding_)
      throw std::runtime_error("WebGPU: one layer's KV cache (" + std::to_string(bytes >> 20) +
                               " MiB) exceeds the adapter's largest storage binding (" +
                               std::to_string(max_binding_ >> 20) + " MiB): lower the context or the parallel slots");
    for (int32_t l = 0; l < cfg.n_layers; ++l) {
      for (auto* v : {&k_cache_, &v_cache_}) {
        const Handle b = dev_->create_buffer(bytes, gpu::kStorage, "kv cache");
        owned_.push_back(b);
        v->push_back({b, bytes});
        memory_ += static_cast<int64_t>(bytes);
      }
    }
    if (kv_pipes_f16_ != (cfg.type == DType::F16)) create_kv_pipelines(cfg.type == DType::F16);
    ensure_step_buffer();
  }

  int64_t memory_bytes() const override { return memory_; }

  // ---- one step ----

  void begin_step(const Batch& batch) override {
    ensure_step_buffer();
    const int32_t n = batch.size();
    if (n <= 0 || n > cap_) throw std::runtime_error("WebGPU: step of " + std::to_string(n) + " tokens exceeds the plan");
    if (batch.logit_rows.size() > size_t(cap_)) throw std::runtime_error("WebGPU: too many logit rows");
    for (int32_t i = 0; i < n; ++i)
      if (kv_.n_layers > 0 && (batch.positions[i] < 0 || batch.positions[i] >= kv_.n_ctx || batch.slots[i] < 0 ||
                               batch.slots[i] >= kv_.n_slots))
        throw std::runtime_error("position or slot outside the KV cache");
    batch_ = &batch;
    n_ = n;
    std::fill(step_host_.begin(), step_host_.end(), 0);
    std::copy(batch.tokens.begin(), batch.tokens.end(), step_host_.begin());
    std::copy(batch.positions.begin(), batch.positions.end(), step_host_.begin() + cap_);
    std::copy(batch.slots.begin(), batch.slots.end(), step_host_.begin() + 2 * cap_);
    std::copy(batch.logit_rows.begin(), batch.logit_rows.end(), step_host_.begin() + 3 * cap_);
    dev_->write_buffer(step_.buf, 0, step_host_.data(), step_host_.size() * 4);
    log_.clear();
    quantized_x_ = 0;
    step_embed_rows_ = INT64_MAX;
  }

  void end_step(Act logits, std::span<float> host) override {
    const size_t r = batch_->logit_rows.size();
    const size_t bytes = r * logits.cols * 4;
    if (host.size() < r * logits.cols) throw std::runtime_error("logits buffer too small");
    submit(bytes ? buf(logits) : 0, bytes);
    if (bytes) read_result(host.data(), bytes);
    batch_ = nullptr;
  }

  void ensure_ids() {
    if (ids_.buf) return;
    ids_.size = uint64_t(cap_) * 4;
    ids_.buf = dev_->create_buffer(ids_.size, gpu::kStorage | gpu::kCopySrc, "sampled ids");
    owned_.push_back(ids_.buf);
  }

  void end_step_argmax(Act logits, std::span<int32_t> ids) override {
    const size_t r = batch_->logit_rows.size();
    if (ids.size() < r) throw std::runtime_error("ids buffer too small");
    ensure_ids();
    record_argmax(logits, r);
    submit(ids_.buf, r * 4);
    if (r) read_result(ids.data(), r * 4);
    batch_ = nullptr;
  }

  // Appends the argmax of the step's r logit rows into ids_.
  void record_argmax(Act logits, size_t r) {
    // Long rows (vocabularies) are split over many workgroups, then merged; short ones take one per row.
    const uint32_t chunk_cols = 2048;
    const uint32_t chunks = static_cast<uint32_t>((logits.cols + chunk_cols - 1) / chunk_cols);
    if (r > 0 && chunks > 2) {
      if (argmax_part_.size < uint64_t(cap_) * chunks * 8) {
        if (argmax_part_.buf) {
          dev_->destroy_buffer(argmax_part_.buf);
          owned_.erase(std::find(owned_.begin(), owned_.end(), argmax_part_.buf));
          clear_plans();
        }
        argmax_part_.size = uint64_t(cap_) * chunks * 8;
        argmax_part_.buf = dev_->create_buffer(argmax_part_.size, gpu::kStorage, "argmax partials");
        owned_.push_back(argmax_part_.buf);
      }
      for (uint32_t pipe : {uint32_t(kArgmaxPartial), uint32_t(kArgmaxFinal)}) {
        Dispatch& d = push(pipe);
        if (pipe == kArgmaxPartial) bind(d, 0, buf(logits), r * logits.cols * 4);
        else bind(d, 1, ids_.buf, r * 4);
        bind(d, 7, argmax_part_.buf, argmax_part_.size);
        set(d, {u(logits.cols), u(r), chunks, chunk_cols});
        d.grid[0] = pipe == kArgmaxPartial ? chunks : u(r);
        d.grid[1] = pipe == kArgmaxPartial ? u(r) : 1;
      }
    } else if (r > 0) {
      Dispatch& d = push(kArgmax);
      bind(d, 0, buf(logits), r * logits.cols * 4);
      bind(d, 1, ids_.buf, r * 4);
      d.params[0] = static_cast<uint32_t>(logits.cols);
      d.params[1] = static_cast<uint32_t>(r);
      d.grid[0] = static_cast<uint32_t>(r);
    }
  }

  bool samples_on_device() const override { return true; }

  // Draws each row's token on the GPU (wgsl/sample.wgsl) and reads back one id per row.
  void end_step_sample(Act logits, std::span<const DeviceSampleRow> rows, std::span<int32_t> ids) override {
    const size_t r = batch_->logit_rows.size();
    if (rows.size() < r || ids.size() < r) throw std::runtime_error("sampling buffers too small");
    ensure_ids();
    if (!sample_rows_.buf) {
      sample_rows_.size = uint64_t(cap_) * sizeof(DeviceSampleRow);
      sample_rows_.buf = dev_->create_buffer(sample_rows_.size, gpu::kStorage | gpu::kCopyDst, "sampling rows");
      owned_.push_back(sample_rows_.buf);
    }
    if (r > 0) {
      dev_->write_buffer(sample_rows_.buf, 0, rows.data(), r * sizeof(DeviceSampleRow));
      record_sample(logits, r, sample_rows_, 0);
    }
    submit(ids_.buf, r * 4);
    if (r) read_result(ids.data(), r * 4);
    batch_ = nullptr;
  }

  // Appends the draw of the step's r logit rows into ids_ (wgsl/sample.wgsl), row i with rows_buf's row first_row + i.
  void record_sample(Act logits, size_t r, const GpuBuffer& rows_buf, size_t first_row) {
    Dispatch& d = push(kSample);
    bind(d, 0, buf(logits), r * logits.cols * 4);
    bind(d, 1, rows_buf.buf, rows_buf.size);
    bind(d, 2, ids_.buf, r * 4);
    set(d, {u(logits.cols), u(r), u(first_row)});
    d.grid[0] = u(r);
  }

  bool chains_steps() const override { return true; }

  // The step's dispatches recorded `steps` times in one submit, each time followed by the choice of every row's id
  // (argmax, or sample.wgsl at that run's rows) and chain_next (chain.wgsl), which keeps the ids and makes them the
  // next run's tokens; one read-back of every id at the end.
  // The whole chain is one submit and one read-back (a WebGPU queue has no cheap per-run completion to wait on
  // while more work is queued behind it), so `progress` hears of every run at the end.
  int32_t end_step_chain(Act logits, int32_t steps, std::span<const DeviceSampleRow> rows, std::span<int32_t> ids,
                         const ChainProgress& progress) override {
    const size_t r = batch_->logit_rows.size();
    check_decode_chain(*batch_, steps, kv_.n_layers > 0 ? kv_.n_ctx : 0, logits.cols, step_embed_rows_);
    const bool sampled = !rows.empty();
    const size_t total = size_t(steps) * r;
    if (ids.size() < total || (sampled && rows.size() < total))
      throw std::runtime_error("decode chain: buffers too small");
    ensure_ids();
    ensure_scratch(chain_ids_, total * 4, "chain ids", gpu::kStorage | gpu::kCopySrc);
    if (sampled) {
      ensure_scratch(chain_rows_, total * sizeof(DeviceSampleRow), "chain sampling rows", gpu::kStorage | gpu::kCopyDst);
      dev_->write_buffer(chain_rows_.buf, 0, rows.data(), total * sizeof(DeviceSampleRow));
    }
    chain_step_.assign(log_.begin(), log_.end());
    for (int32_t s = 0; s < steps; ++s) {
      if (s > 0) log_.insert(log_.end(), chain_step_.begin(), chain_step_.end());
      if (sampled)
        record_sample(logits, r, chain_rows_, size_t(s) * r);
      else
        record_argmax(logits, r);
      Dispatch& d = push(kChainNext);
      bind(d, 0, step_.buf, step_.size);
      bind(d, 1, ids_.buf, r * 4);
      bind(d, 2, chain_ids_.buf, chain_ids_.size);
      set(d, {u(r), u(s), u(cap_)});
      d.grid[0] = u((r + 63) / 64);
    }
    submit(chain_ids_.buf, total * 4, steps);
    read_result(ids.data(), total * 4);
    batch_ = nullptr;
    if (progress)
      for (int32_t s = 1; s <= steps; ++s) progress(s);
    return steps;
  }

  // Picks each row's candidates on the GPU (the same rule as select_candidates() on the host) and reads back
  // only them: (1 + 2 cap) words per row instead of the whole row.
  void end_step_candidates(Act logits, std::span<const float> margins, int32_t cap, std::span<float> values,
                           std::span<int32_t> ids, std::span<int32_t> counts) override {
    const size_t r = batch_->logit_rows.size();
    if (counts.size() < r || margins.size() < r || values.size() < r * cap || ids.size() < r * cap)
      throw std::runtime_error("candidate buffers too small");
    const uint64_t row_words = 1 + 2 * uint64_t(cap);
    if (margins_.size < uint64_t(cap_) * 4) {
      margins_.size = uint64_t(cap_) * 4;
      margins_.buf = dev_->create_buffer(margins_.size, gpu::kStorage | gpu::kCopyDst, "candidate margins");
      owned_.push_back(margins_.buf);
    }
    if (candidates_.size < r * row_words * 4) {
      if (candidates_.buf) {
        dev_->destroy_buffer(candidates_.buf);
        owned_.erase(std::find(owned_.begin(), owned_.end(), candidates_.buf));
        clear_plans();  // they may bind the old buffer
      }
      candidates_.size = std::max<uint64_t>(r, 1) * row_words * 4;
      candidates_.buf = dev_->create_buffer(candidates_.size, gpu::kStorage | gpu::kCopySrc, "candidates");
      owned_.push_back(candidates_.buf);
    }
    if (r > 0) {
      dev_->write_buffer(margins_.buf, 0, margins.data(), r * 4);
      Dispatch& d = push(kCandidates);
      bind(d, 3, buf(logits), r * logits.cols * 4);
      bind(d, 4, candidates_.buf, r * row_words * 4);
      bind(d, 5, margins_.buf, margins_.size);
      d.params[0] = static_cast<uint32_t>(logits.cols);
      d.params[1] = static_cast<uint32_t>(r);
      d.params[2] = static_cast<uint32_t>(cap);
      d.grid[0] = static_cast<uint32_t>(r);
    }
    submit(candidates_.buf, r * row_words * 4);
    cand_host_.resize(r * row_words);
    if (r) read_result(cand_host_.data(), r * row_words * 4);
    for (size_t i = 0; i < r; ++i) {
      const uint32_t* row = cand_host_.data() + i * row_words;
      const int32_t n = static_cast<int32_t>(row[0]);
      counts[i] = n;
      for (int32_t j = 0; j < n; ++j) {
        std::memcpy(&values[i * cap + j], &row[1 + j], 4);
        ids[i * cap + j] = static_cast<int32_t>(row[1 + cap + j]);
      }
    }
    batch_ = nullptr;
  }

  // Rows of the last step's logits, which stay in their buffer until the next step (the rare path: rows with
  // too many candidates, log-probabilities).
  void read_logit_rows(Act logits, std::span<const int32_t> rows, std::span<float> host) override {
    if (host.size() < rows.size() * logits.cols) throw std::runtime_error("logits buffer too small");
    int32_t last = 0;
    for (int32_t row : rows) last = std::max(last, row + 1);
    if (int64_t(last) * logits.cols * 4 > static_cast<int64_t>(gb(logits).size) || rows.empty()) {
      if (rows.empty()) return;
      throw std::runtime_error("read_logit_rows: no such row in the last step");
    }
    last_logits_.resize(static_cast<size_t>(last * logits.cols));
    ensure_readback(last_logits_.size() * 4);
    dev_->submit({}, buf(logits), readback_.buf, last_logits_.size() * 4);
    dev_->read(readback_.buf, last_logits_.data(), last_logits_.size() * 4);
    for (size_t i = 0; i < rows.size(); ++i)
      std::memcpy(host.data() + i * logits.cols, last_logits_.data() + rows[i] * logits.cols, logits.cols * 4);
  }

  // ---- for tests: activations in and out, outside any step ----
  void write_act(Act a, const float* data, size_t n) {
    if (n * 4 > gb(a).size) throw std::runtime_error("write_act: too many values");
    dev_->write_buffer(buf(a), 0, data, n * 4);
  }
  void read_act(Act a, float* data, size_t n) {
    if (n * 4 > gb(a).size) throw std::runtime_error("read_act: too many values");
    ensure_readback(n * 4);
    dev_->submit({}, buf(a), readback_.buf, n * 4);
    dev_->read(readback_.buf, data, n * 4);
  }
  int64_t submits() const { return submits_; }
  size_t plans() const { return plans_.size(); }
  // Whether products of more than 8 tokens of this kind run in the tiled kernel (else in matvec slices).
  bool tiled_prefill(WeightKind kind) const { return k_quant_tiles_ || (kind != kQ4_K && kind != kQ6_K); }
  bool tiles_in_f16(DType t) const { return f16_matmul_ && tiled_prefill(kind_for(t)); }

  // ---- ops: each appends dispatches to the step's log ----

  void embed(const Weight* table, Act out) override {
    const auto* w = static_cast<const WgWeight*>(table);
    for (int32_t t = 0; t < n_; ++t)
      if (batch_->tokens[t] < 0 || batch_->tokens[t] >= w->rows) throw std::runtime_error("token id out of range");
    step_embed_rows_ = std::min<int64_t>(step_embed_rows_, w->rows);
    for (const auto& c : w->chunks) {
      Dispatch& d = push(kEmbed0 + uint32_t(w->kind));
      bind(d, 0, c.buf, uint64_t(c.rows) * w->words_per_row * 4);
      bind(d, 1, step_.buf, step_.size);
      bind(d, 2, buf(out), act_bytes(out, n_));
      set(d, {u(w->k), u(c.rows), u(n_), w->words_per_row, u(c.row0)});
      d.grid[0] = u((w->k / 32 + 63) / 64);
      d.grid[1] = u(n_);
    }
  }

  void rmsnorm(Act x, const Weight* w, float eps, Act out) override {
    Dispatch& d = push(kRmsnorm);
    bind(d, 0, buf(x), act_bytes(x, x.rows));
    bind(d, 2, vec(w), vec_bytes(w));
    bind(d, 3, buf(out), act_bytes(out, x.rows));
    set(d, {u(x.cols), u(x.rows), f2u(eps)});
    d.grid[0] = u(x.rows);
  }

  void add_rmsnorm(Act x, Act y, const Weight* w, float eps, Act out) override {
    Dispatch& d = push(kAddRmsnorm);
    bind(d, 0, buf(x), act_bytes(x, x.rows));
    bind(d, 1, buf(y), act_bytes(y, x.rows));
    bind(d, 2, vec(w), vec_bytes(w));
    bind(d, 3, buf(out), act_bytes(out, x.rows));
    set(d, {u(x.cols), u(x.rows), f2u(eps)});
    d.grid[0] = u(x.rows);
  }

  void matmul(const Weight* weight, Act x, Act out) override {
    const auto* w = static_cast<const WgWeight*>(weight);
    if (x.cols != w->k) throw std::runtime_error("WebGPU matmul: activation width does not match the weight");
    // Q4_K / Q6_K: the fused matvec kernels for every step, 8 tokens per z slice (measured on an H200: faster
    // than the f32 tiled kernel even at 512 tokens, and far faster for short prompts; VIREO_WEBGPU_KQ_TILES=1
    // sends their prefill to the tiles too, to measure the f16 tiles against them). Other types: matvec for
    // decode, the tiled matmul for prefill.
    const bool few = x.rows <= 8 || !tiled_prefill(w->kind);
    // One token, Q4_K / Q6_K: the int8-activation kernels, after the activations are quantized (once for the
    // consecutive products that read the same x: q/k/v, gate/up).
    if (int8_decode_ && x.rows == 1 && (w->kind == kQ4_K || w->kind == kQ6_K)) {
      quantize_x(x);
      for (size_t i = fuse_products(*w, out) ? w->chunks.size() : 0; i < w->chunks.size(); ++i) {
        Dispatch& d = push(kMatvecMultiI8);
        // The entry point uses every binding: weights not there (yet) read a small dummy buffer, their outputs
        // write another.
        ensure_scratch(dummy_read_, 256, "unused weight binding");
        ensure_scratch(dummy_write_, 256, "unused output binding");
        for (uint32_t b : {0u, 8u, 9u}) bind(d, b, dummy_read_.buf, 256);
        for (uint32_t b : {2u, 10u, 11u}) bind(d, b, dummy_write_.buf, 256);
        bind(d, 1, xq_.buf, uint64_t(x.cols));
        bind(d, 4, xs_.buf, uint64_t(x.cols / 32) * 16);
        d.params[0] = u(w->k);
        add_product(d, *w, w->chunks[i], out);
      }
      if (buf(out) == quantized_x_) quantized_x_ = 0;
      return;
    }
    for (const auto& c : w->chunks) {
      // Q4_K decode: the fused kernel with 16-byte loads (its activations are read as vec4: k % 256 == 0).
      const uint32_t pipe = few && w->kind == kQ4_K   ? uint32_t(kMatvecQ4K)
                            : few && w->kind == kQ6_K ? uint32_t(kMatvecQ6K)
                                                      : (few ? kMatvec0 : kMatmul0) + uint32_t(w->kind);
      Dispatch& d = push(pipe);
      bind(d, 0, c.buf, uint64_t(c.rows) * w->words_per_row * 4);
      bind(d, 1, buf(x), act_bytes(x, x.rows));
      bind(d, 2, buf(out), act_bytes(out, x.rows));
      // matvec: 8 rows x up to 8 tokens per workgroup; matmul: 64-row x 32-token tiles (wgsl/matmul.wgsl).
      const uint32_t gx = spread(d, few ? u((c.rows + 7) / 8) : u((c.rows + 63) / 64));
      set(d, {u(w->k), u(c.rows), u(x.rows), w->words_per_row, u(out.cols), u(c.row0), gx});
      d.grid[2] = few ? u((x.rows + 7) / 8) : u((x.rows + 31) / 32);
    }
  }

  void add_bias(Act x, const Weight* b) override { elementwise(kAddBias, x, x.rows, &b, nullptr); }

  void rope(Act x, const RopeParams& p) override {
    const GpuBuffer& freq = freq_table(p);
    Dispatch& d = push(kRope);
    bind(d, 0, buf(x), act_bytes(x, n_));
    bind(d, 1, freq.buf, freq.size);
    bind(d, 2, step_.buf, step_.size);
    const uint64_t threads = uint64_t(n_) * p.n_heads * (p.rope_dim / 2);
    const uint32_t gx = spread(d, (threads + 255) / 256);
    set(d, {u(x.cols), u(n_), u(p.n_heads), u(p.head_dim), u(p.rope_dim / 2), p.mode == RopeMode::Neox ? 1u : 0u,
            gx, u(cap_)});
  }

  void kv_store(int32_t layer, Act k, Act v) override {
    // rope(q), rope(k), kv_store(k, v) as the Llama layer records them: one dispatch (wgsl/rope_kv.wgsl).
    if (log_.size() >= 2 && log_.back().pipe == kRope && log_[log_.size() - 2].pipe == kRope) {
      const Dispatch rq = log_[log_.size() - 2], rk = log_.back();
      // rope params: cols, n, n_heads, head_dim, half, neox, grid_x, cap; bindings 0 X, 1 FREQ, 2 STEP
      if (rk.bind[0].buf == buf(k) && rq.bind[0].buf != buf(k) && rq.bind[0].buf != buf(v) &&
          rq.params[5] == 0 && rk.params[5] == 0 && rq.params[1] == u(n_) && rk.params[1] == u(n_) &&
          rq.params[3] == rk.params[3] && rq.params[4] == rk.params[4] && rq.bind[1].buf == rk.bind[1].buf &&
          rk.params[0] == u(kv_.kv_dim) && rk.params[3] % 2 == 0) {
        log_.resize(log_.size() - 2);
        Dispatch& d = push_kv_store(kRopeKvStore, layer, k, v);
        bind(d, 8, rq.bind[0].buf, rq.bind[0].size);
        bind(d, 13, rq.bind[1].buf, rq.bind[1].size);
        const uint64_t threads = uint64_t(n_) * (uint64_t(rq.params[2]) * rq.params[4] + kv_.kv_dim / 2);
        const uint32_t gx = spread(d, (threads + 255) / 256);
        set(d, {u(kv_.kv_dim), u(n_), u(kv_.n_ctx), u(cap_), rq.params[2], rk.params[2], rq.params[3], 0,
                rq.params[0], gx, 0, rq.params[4]});  // KvParams (wgsl/attention.wgsl)
        return;
      }
    }
    Dispatch& d = push_kv_store(kKvStore, layer, k, v);
    const uint32_t gx = spread(d, (uint64_t(n_) * kv_.kv_dim / 2 + 255) / 256);
    set(d, {u(kv_.kv_dim), u(n_), u(kv_.n_ctx), u(cap_), 0, 0, 0, 0, 0, gx});
  }

  // A dispatch that stores this step's k, v into layer's cache (kv_store, rope_kv_store): its first bindings.
  Dispatch& push_kv_store(uint32_t pipe, int32_t layer, Act k, Act v) {
    Dispatch& d = push(pipe);
    bind(d, 0, k_cache_[layer].buf, k_cache_[layer].size);
    bind(d, 1, v_cache_[layer].buf, v_cache_[layer].size);
    bind(d, 2, buf(k), act_bytes(k, n_));
    bind(d, 3, buf(v), act_bytes(v, n_));
    bind(d, 4, step_.buf, step_.size);
    return d;
  }

  void attention(Act q, Act out, const AttentionParams& p) override {
    if (p.head_dim > 256) throw std::runtime_error("WebGPU attention supports head_dim up to 256");
    if (p.n_kv_heads <= 0 || p.n_heads % p.n_kv_heads != 0)
      throw std::runtime_error("WebGPU attention: query heads are not a multiple of the KV heads");
    // Decode steps (few tokens): split over the KV length, then merge (wgsl/attention.wgsl). The split count
    // depends on the cache length only, so a recorded step is right at every position.
    const int32_t group = p.n_heads / p.n_kv_heads;
    if (n_ <= kSplitAttentionTokens && group <= 8 && p.head_dim % 2 == 0) {
      const uint32_t splits = u(std::clamp<int64_t>((kv_.n_ctx + 63) / 64, 1, 32));
      const uint64_t rows = uint64_t(n_) * p.n_heads * splits;
      ensure_scratch(attn_po_, rows * p.head_dim * 4, "attention partial outputs");
      ensure_scratch(attn_pml_, rows * 2 * 4, "attention partial max/sum");
      const std::initializer_list<uint32_t> params = {u(kv_.kv_dim), u(n_), u(kv_.n_ctx), u(cap_), u(p.n_heads),
                                                      u(p.n_kv_heads), u(p.head_dim), f2u(p.scale), u(q.cols), 0,
                                                      splits};
      Dispatch& d = push(kAttentionSplit);
      bind(d, 4, step_.buf, step_.size);
      bind(d, 6, k_cache_[p.layer].buf, k_cache_[p.layer].size);
      bind(d, 7, v_cache_[p.layer].buf, v_cache_[p.layer].size);
      bind(d, 8, buf(q), act_bytes(q, n_));
      bind(d, 11, attn_po_.buf, rows * p.head_dim * 4);
      bind(d, 12, attn_pml_.buf, rows * 2 * 4);
      set(d, params);
      d.grid[0] = splits, d.grid[1] = u(p.n_kv_heads), d.grid[2] = u(n_);
      Dispatch& m = push(kAttentionMerge);
      bind(m, 4, step_.buf, step_.size);
      bind(m, 9, buf(out), act_bytes(out, n_));
      bind(m, 11, attn_po_.buf, rows * p.head_dim * 4);
      bind(m, 12, attn_pml_.buf, rows * 2 * 4);
      set(m, params);
      m.grid[0] = u(p.n_heads), m.grid[1] = u(n_);
      return;
    }
    Dispatch& d = push(kAttention);
    bind(d, 4, step_.buf, step_.size);
    bind(d, 6, k_cache_[p.layer].buf, k_cache_[p.layer].size);
    bind(d, 7, v_cache_[p.layer].buf, v_cache_[p.layer].size);
    bind(d, 8, buf(q), act_bytes(q, n_));
    bind(d, 9, buf(out), act_bytes(out, n_));
    set(d, {u(kv_.kv_dim), u(n_), u(kv_.n_ctx), u(cap_), u(p.n_heads), u(p.n_kv_heads), u(p.head_dim),
            f2u(p.scale), u(q.cols), 0});
    d.grid[0] = u(n_), d.grid[1] = u(p.n_heads);
  }

  void swiglu(Act gate, Act up, Act out) override {
    if (gate.data == out.data) elementwise(kSwigluInplace, gate, out.rows, nullptr, &up);
    else elementwise(kSwiglu, gate, out.rows, nullptr, &up, &out);
  }

  void add(Act x, Act y) override { elementwise(kAdd, x, x.rows, nullptr, &y); }

  void gather_logit_rows(Act x, Act out) override {
    const int64_t r = static_cast<int64_t>(batch_->logit_rows.size());
    if (r == 0) return;
    Dispatch& d = push(kGatherRows);
    bind(d, 1, buf(x), act_bytes(x, n_));
    bind(d, 2, buf(out), act_bytes(out, r));
    bind(d, 4, step_.buf, step_.size);
    const uint32_t gx = spread(d, (uint64_t(r) * x.cols + 255) / 256);
    set(d, {u(x.cols), u(r), gx, u(cap_)});
  }

  void kv_truncate(int32_t, int32_t) override {}  // slotted cache: later positions are overwritten before use

  void kv_copy(int32_t src, int32_t dst, int32_t n) override {
    if (src < 0 || src >= kv_.n_slots || dst < 0 || dst >= kv_.n_slots || n < 0 || n > kv_.n_ctx)
      throw std::runtime_error("kv_copy: slot or length outside the KV cache");
    if (src == dst || n == 0) return;
    const uint64_t words_per_pos = kv_.type == DType::F32 ? kv_.kv_dim : kv_.kv_dim / 2;
    const uint64_t slot_words = words_per_pos * kv_.n_ctx;
    std::vector<Dispatch> saved;
    saved.swap(log_);
    for (int32_t l = 0; l < kv_.n_layers; ++l) {
      Dispatch& d = push(kKvCopy);
      bind(d, 0, k_cache_[l].buf, k_cache_[l].size);
      bind(d, 1, v_cache_[l].buf, v_cache_[l].size);
      const uint32_t gx = spread(d, (words_per_pos * n + 255) / 256);
      set(d, {u(words_per_pos * n), u(src * slot_words), u(dst * slot_words), gx});
    }
    submit(0, 0);
    log_.swap(saved);
  }

 private:
  static uint32_t u(int64_t v) { return static_cast<uint32_t>(v); }
  static GpuBuffer& gb(Act a) { return *static_cast<GpuBuffer*>(a.data); }
  static Handle buf(Act a) { return gb(a).buf; }
  static uint64_t act_bytes(Act a, int64_t rows) { return uint64_t(std::max<int64_t>(rows, 1)) * a.cols * 4; }
  static Handle vec(const Weight* w) { return static_cast<const WgWeight*>(w)->vec.buf; }
  static uint64_t vec_bytes(const Weight* w) { return static_cast<const WgWeight*>(w)->vec.size; }

  Dispatch& push(uint32_t pipe) {
    // The int8 copy of an activation stays valid only across the products that read it.
    if (pipe != kMatvecMultiI8) quantized_x_ = 0;
    Dispatch& d = log_.emplace_back();
    std::memset(&d, 0, sizeof(Dispatch));
    d.pipe = pipe;
    d.grid[0] = d.grid[1] = d.grid[2] = 1;
    return d;
  }
  void bind(Dispatch& d, uint32_t binding, Handle b, uint64_t size) {
    if (size > max_binding_)
      throw std::runtime_error("WebGPU: a binding of " + std::to_string(size >> 20) +
                               " MiB exceeds the adapter's largest storage binding (" +
                               std::to_string(max_binding_ >> 20) + " MiB); use a smaller batch");
    d.bind[d.n_bind++] = {binding, 0, b, size};
  }
  static void set(Dispatch& d, std::initializer_list<uint32_t> v) { std::copy(v.begin(), v.end(), d.params); }
  // Spreads `groups` workgroups over the dispatch's x and y (each at most 65535); returns the x count, which the
  // kernels need to rebuild the linear workgroup index.
  static uint32_t spread(Dispatch& d, uint64_t groups) {
    const uint64_t x = std::min<uint64_t>(std::max<uint64_t>(groups, 1), 32768);
    const uint64_t y = std::max<uint64_t>((groups + x - 1) / x, 1);
    if (y > 65535) throw std::runtime_error("WebGPU: dispatch of " + std::to_string(groups) + " workgroups is too large");
    d.grid[0] = static_cast<uint32_t>(x), d.grid[1] = static_cast<uint32_t>(y);
    return d.grid[0];
  }

  // x (binding 0, read-write) with an optional vector weight or activation (binding 1) and output (binding 2).
  void elementwise(uint32_t pipe, Act a, int64_t rows, const Weight* const* wb, const Act* b, const Act* c = nullptr) {
    Dispatch& d = push(pipe);
    bind(d, 0, buf(a), act_bytes(a, rows));
    if (wb) bind(d, 1, vec(*wb), vec_bytes(*wb));
    if (b) bind(d, 1, buf(*b), act_bytes(*b, rows));
    if (c) bind(d, 2, buf(*c), act_bytes(*c, rows));
    const uint32_t gx = spread(d, (uint64_t(rows) * a.cols + 255) / 256);
    set(d, {u(a.cols), u(rows), gx, u(cap_)});
  }

  // Adds the one-token int8 product of w into out to the previous dispatch when that is an int8 product of the
  // same activation with room for another weight (matvec_multi_i8: up to three, each in one binding).
  bool fuse_products(const WgWeight& w, Act out) {
    if (log_.empty() || w.chunks.size() != 1) return false;
    Dispatch& d = log_.back();
    if (d.pipe != kMatvecMultiI8 || d.params[2] >= 3 || d.params[0] != u(w.k)) return false;
    for (uint32_t j = 0; j < d.n_bind; ++j)
      if (d.bind[j].buf == buf(out)) return false;  // would write a buffer the dispatch already writes or reads
    add_product(d, w, w.chunks[0], out);
    return true;
  }

  // Makes the product of one chunk of w into out the next of the matvec_multi_i8 dispatch d's weights (its
  // bindings and MultiParams: k, rows0, segments, row_words0, kinds, col0_0, grid_x, rows1, row_words1, col0_1,
  // rows2, row_words2, col0_2), and sizes the grid for all of them.
  void add_product(Dispatch& d, const WgWeight& w, const WgWeight::Chunk& c, Act out) {
    static constexpr uint32_t kWeightBinding[3] = {0, 8, 9}, kOutBinding[3] = {2, 10, 11};
    static constexpr uint32_t kRowsParam[3] = {1, 7, 10}, kRowWordsParam[3] = {3, 8, 11}, kCol0Param[3] = {5, 9, 12};
    const uint32_t seg = d.params[2];
    for (uint32_t j = 0; j < d.n_bind; ++j) {
      if (d.bind[j].binding == kWeightBinding[seg]) d.bind[j].buf = c.buf, d.bind[j].size = uint64_t(c.rows) * w.words_per_row * 4;
      if (d.bind[j].binding == kOutBinding[seg]) d.bind[j].buf = buf(out), d.bind[j].size = act_bytes(out, 1);
    }
    d.params[kRowsParam[seg]] = u(c.rows);
    d.params[kRowWordsParam[seg]] = w.words_per_row;
    d.params[kCol0Param[seg]] = u(c.row0);
    if (w.kind == kQ6_K) d.params[4] |= 1u << seg;
    d.params[2] = seg + 1;
    uint64_t groups = 0;
    for (uint32_t i = 0; i <= seg; ++i) groups += (d.params[kRowsParam[i]] + i8_rows_ - 1) / i8_rows_;
    d.params[6] = spread(d, groups);
  }

  // Records the int8 quantization of the one-token activation x into xq_ / xs_ (wgsl/matvec_int8.wgsl), unless
  // the dispatches since the last one only read it.
  void quantize_x(Act x) {
    if (x.cols % 256 != 0) throw std::runtime_error("WebGPU: int8 products need rows of whole 256-element blocks");
    if (quantized_x_ == buf(x) && quantized_cols_ == x.cols) return;
    ensure_scratch(xq_, uint64_t(x.cols), "int8 activations");
    ensure_scratch(xs_, uint64_t(x.cols / 32) * 16, "int8 activation scales");
    quantized_x_ = buf(x);
    quantized_cols_ = x.cols;
    // The kernel that just wrote x (a norm, SwiGLU, the attention merge) writes the int8 copy too: one dispatch
    // fewer. Each producer's q8 variant, the binding of its output, and whether this step's shape suits it
    // (one row of x.cols; the norm keeps a block per invocation: cols <= 8192; the merge a head in workgroup
    // memory: head_dim (param 6) a multiple of 32, at most 256).
    if (!log_.empty()) {
      Dispatch& last = log_.back();
      const uint32_t* p = last.params;
      struct Producer { uint32_t pipe, q8_pipe, out_binding; bool fits; };
      const Producer producers[] = {
          {kRmsnorm, kRmsnormQ8, 3, p[0] == u(x.cols) && p[1] == 1 && x.cols <= 8192},
          {kAddRmsnorm, kAddRmsnormQ8, 3, p[0] == u(x.cols) && p[1] == 1 && x.cols <= 8192},
          {kSwiglu, kSwigluQ8, 2, p[0] == u(x.cols) && p[1] == 1},
          {kSwigluInplace, kSwigluInplaceQ8, 0, p[0] == u(x.cols) && p[1] == 1},
          {kAttentionMerge, kAttentionMergeQ8, 9, p[1] == 1 && p[6] % 32 == 0 && p[6] <= 256 && p[8] == u(x.cols)},
      };
      for (const Producer& pr : producers) {
        if (last.pipe != pr.pipe || !pr.fits) continue;
        bool writes_x = false;
        for (uint32_t j = 0; j < last.n_bind; ++j)
          writes_x |= last.bind[j].binding == pr.out_binding && last.bind[j].buf == buf(x);
        if (!writes_x) break;
        last.pipe = pr.q8_pipe;
        bind(last, 6, xq_.buf, uint64_t(x.cols));
        bind(last, 7, xs_.buf, uint64_t(x.cols / 32) * 16);
        // SwiGLU's q8 variant: an invocation per 32-element block, 64 to a workgroup
        if (pr.pipe == kSwiglu || pr.pipe == kSwigluInplace) last.grid[0] = u((x.cols / 32 + 63) / 64), last.grid[1] = 1;
        return;
      }
    }
    Dispatch& d = push(kQuantizeX);
    bind(d, 5, buf(x), act_bytes(x, 1));
    bind(d, 6, xq_.buf, uint64_t(x.cols));
    bind(d, 7, xs_.buf, uint64_t(x.cols / 32) * 16);
    set(d, {u(x.cols), 0, 1});
    d.grid[0] = u((x.cols / 32 + 255) / 256);
    quantized_x_ = buf(x);  // push() cleared it
  }

  void ensure_step_buffer() {
    if (step_.buf) return;
    cap_ = static_cast<int32_t>(std::max<int64_t>(max_rows_, 1));
    step_host_.assign(static_cast<size_t>(cap_) * 4, 0);
    step_.size = step_host_.size() * 4;
    step_.buf = dev_->create_buffer(step_.size, gpu::kStorage | gpu::kCopyDst, "step");
    owned_.push_back(step_.buf);
  }

  // The rotation frequencies (rope_frequency, as on the CPU), uploaded once per RopeParams.
  const GpuBuffer& freq_table(const RopeParams& p) {
    const auto key = std::make_tuple(p.rope_dim, p.freq_base, p.freq_factors);
    auto it = freqs_.find(key);
    if (it != freqs_.end()) return it->second;
    const float* factors = p.freq_factors ? static_cast<const WgWeight*>(p.freq_factors)->host.data() : nullptr;
    std::vector<float> f(static_cast<size_t>(std::max(1, p.rope_dim / 2)));
    for (int i = 0; i < p.rope_dim / 2; ++i) f[i] = rope_frequency(p, i, factors);
    GpuBuffer b{upload(f.data(), f.size() * 4, "rope frequencies"), f.size() * 4};
    return freqs_.emplace(key, b).first->second;
  }

  Handle upload(const void* data, uint64_t bytes, const char* label) {
    const Handle b = dev_->create_buffer_init(bytes, gpu::kStorage | gpu::kCopyDst, label,
                                              [&](uint8_t* dst) { std::memcpy(dst, data, bytes); });
    owned_.push_back(b);
    return b;
  }

  // Finds or builds the plan for the step's log, encodes it with a copy of `result_bytes` of `result` into the
  // read-back buffer, and submits it.
  void submit(Handle result, uint64_t result_bytes, int32_t steps = 1) {
    const auto t0 = std::chrono::steady_clock::now();
    const Plan& plan = plan_for_log();
    dispatches_ += static_cast<int64_t>(plan.log.size());
    if (batch_) steps_ += steps;
    if (result && result_bytes) ensure_readback(result_bytes);
    else result_bytes = 0;
    const std::vector<double> times = profile_ && batch_ ? dev_->submit_timed(plan.cmds) : std::vector<double>();
    if (!times.empty()) {
      for (size_t i = 0; i < times.size(); ++i) {
        auto& p = profile_by_pipe_[plan.log[i].pipe];
        p.first += times[i];
        p.second += 1;
      }
      ++profiled_steps_;
      dev_->submit({}, result, readback_.buf, result_bytes);
    } else {
      dev_->submit(plan.cmds, result, readback_.buf, result_bytes);
    }
    ++submits_;
    dev_->check("a step");
    encode_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  // Reads the step's result back (waiting for the GPU), timed.
  void read_result(void* host, uint64_t bytes) {
    const auto t0 = std::chrono::steady_clock::now();
    dev_->read(readback_.buf, host, bytes);
    wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  // A scratch buffer of at least `bytes`; a larger one replaces it (recorded steps keep the old one, which stays
  // alive in owned_ until the backend goes).
  void ensure_scratch(GpuBuffer& b, uint64_t bytes, const char* label, uint32_t usage = gpu::kStorage) {
    if (b.size >= bytes) return;
    b.size = std::max<uint64_t>(bytes, 256);
    b.buf = dev_->create_buffer(b.size, usage, label);
    owned_.push_back(b.buf);
  }

  void ensure_readback(uint64_t bytes) {
    bytes = (bytes + 3) & ~3ull;
    if (readback_.size >= bytes) return;
    if (readback_.buf) {
      dev_->destroy_buffer(readback_.buf);
      owned_.erase(std::find(owned_.begin(), owned_.end(), readback_.buf));
    }
    readback_.size = std::max<uint64_t>(bytes, 1 << 16);
    readback_.buf = dev_->create_buffer(readback_.size, gpu::kMapRead | gpu::kCopyDst, "read-back");
    owned_.push_back(readback_.buf);
  }

  const Plan& plan_for_log() {
    const uint64_t h = hash_log(log_);
    auto it = plans_.find(h);
    if (it != plans_.end() && it->second.log == log_) return it->second;
    if (plans_.size() >= 64) clear_plans();  // step shapes come and go (prompt lengths): keep the cache bounded
    if (it != plans_.end()) {
      release_plan(it->second);
      plans_.erase(it);
    }
    Plan p;
    p.log = log_;
    const uint64_t ubytes = std::max<uint64_t>(log_.size(), 1) * uniform_stride_;
    p.uniforms = dev_->create_buffer(ubytes, gpu::kUniform | gpu::kCopyDst, "step parameters");
    std::vector<uint8_t> udata(ubytes, 0);
    for (size_t i = 0; i < log_.size(); ++i) std::memcpy(udata.data() + i * uniform_stride_, log_[i].params, 64);
    dev_->write_buffer(p.uniforms, 0, udata.data(), udata.size());
    p.groups.reserve(log_.size());
    for (size_t i = 0; i < log_.size(); ++i) {
      const Dispatch& d = log_[i];
      gpu::BindEntry e[9] = {};
      for (uint32_t j = 0; j < d.n_bind; ++j) e[j] = {d.bind[j].binding, 0, d.bind[j].buf, 0, d.bind[j].size};
      e[d.n_bind] = {pipes_[d.pipe].uniform_binding, 0, p.uniforms, i * uniform_stride_, 64};
      const Handle pipeline = pipes_[d.pipe].pipeline;
      p.groups.push_back(dev_->create_bind_group(pipeline, std::span<const gpu::BindEntry>(e, d.n_bind + 1)));
      p.cmds.push_back({pipeline, p.groups.back(), d.grid[0], d.grid[1], d.grid[2], 0});
    }
    dev_->check("building a step plan");
    return plans_.emplace(h, std::move(p)).first->second;
  }

  void release_plan(Plan& p) {
    for (Handle g : p.groups) dev_->destroy_bind_group(g);
    if (p.uniforms) dev_->destroy_buffer(p.uniforms);
    p.groups.clear();
    p.cmds.clear();
    p.uniforms = 0;
  }
  void clear_plans() {
    for (auto& [h, p] : plans_) release_plan(p);
    plans_.clear();
  }

  struct Pipe {
    Handle pipeline = 0;
    std::string label;
    uint32_t uniform_binding = 0;
  };

  // Compiles `source` and creates the pipeline `id` for its entry point; the entry point's parameters are the
  // uniform buffer at `uniform_binding`.
  void make_pipeline(uint32_t id, const std::string& source, const char* entry, uint32_t uniform_binding) {
    Pipe& p = pipes_[id];
    if (p.pipeline) dev_->destroy_pipeline(p.pipeline);
    p.pipeline = 0;
    p.pipeline = dev_->create_pipeline(source, entry);
    p.label = entry;
    if (on_compile_) {  // every pipeline once, in the constructor
      on_compile_(++compiled_, n_pipes_);
      if (compiled_ >= n_pipes_) on_compile_ = nullptr;
    }
    if (id < kEmbed0) {
      static const char* kKindNames[kKinds] = {"f32", "f16", "q8_0", "q4_0", "q4_k", "q6_k"};
      p.label += std::string(".") + kKindNames[(id - kMatmul0) % kKinds];
    }
    p.uniform_binding = uniform_binding;
  }

  // Every pipeline but the KV-cache ones, which depend on the cache's type (alloc_kv creates them).
  void create_pipelines() {
    pipes_.resize(kPipes);
    const std::string mv_reductions = reductions(false);  // prepended to every module built from matmul.wgsl
    auto matmul_module = [&](uint32_t kind) {
      return mv_reductions + "const WEIGHT_TYPE: u32 = " + std::to_string(kind) + "u;\n" + wgsl::quant +
             wgsl::q4k_scales + wgsl::matmul;
    };
    for (uint32_t kind = 0; kind < kKinds; ++kind) {
      const std::string prefix = "const WEIGHT_TYPE: u32 = " + std::to_string(kind) + "u;\n";
      const std::string mm = matmul_module(kind);
      if (f16_matmul_)  // `enable f16;` must open the module, before reductions()'s `enable subgroups;`
        make_pipeline(kMatmul0 + kind, "enable f16;\n" + mm + wgsl::matmul_f16, "matmul_f16", 3);
      else
        make_pipeline(kMatmul0 + kind, mm, "matmul", 3);
      make_pipeline(kMatvec0 + kind, mm, "matvec", 3);
      make_pipeline(kEmbed0 + kind, prefix + wgsl::quant + wgsl::embed, "embed", 3);
    }
    make_pipeline(kRmsnorm, wgsl::norm, "rmsnorm", 4);
    make_pipeline(kAddRmsnorm, wgsl::norm, "add_rmsnorm", 4);
    make_pipeline(kSwiglu, wgsl::elementwise, "swiglu", 3);
    make_pipeline(kSwigluInplace, wgsl::elementwise, "swiglu_inplace", 3);
    make_pipeline(kAdd, wgsl::elementwise, "add", 3);
    make_pipeline(kAddBias, wgsl::elementwise, "add_bias", 3);
    make_pipeline(kGatherRows, wgsl::elementwise, "gather_rows", 3);
    make_pipeline(kRope, std::string(wgsl::rope_angle) + wgsl::rope, "rope", 3);
    const std::string argmax = std::string(wgsl::reduce) + wgsl::argmax;  // reduce.wgsl: shared with sample
    make_pipeline(kArgmax, argmax, "argmax", 2);
    make_pipeline(kCandidates, argmax, "candidates", 6);
    make_pipeline(kArgmaxPartial, argmax, "argmax_partial", 8);
    make_pipeline(kMatvecQ4K, matmul_module(kQ4_K), "matvec_q4k", 3);
    make_pipeline(kMatvecQ6K, matmul_module(kQ6_K), "matvec_q6k", 3);
    make_pipeline(kArgmaxFinal, argmax, "argmax_final", 8);
    make_pipeline(kSample, std::string(wgsl::reduce) + wgsl::sample, "sample", 3);
    make_pipeline(kChainNext, wgsl::chain, "chain_next", 3);
    if (int8_decode_) {
      std::string mv = with_weight_binding_copies(reductions(true) + wgsl::q8 + wgsl::q4k_scales + wgsl::matvec_int8);
      const std::string geometry = "const ROWS: u32 = 8u;\nconst LANES: u32 = 32u;";
      if (i8_rows_ != 8 && mv.find(geometry) != std::string::npos)
        mv.replace(mv.find(geometry), geometry.size(),
                   "const ROWS: u32 = " + std::to_string(i8_rows_) + "u;\nconst LANES: u32 = " + std::to_string(256 / i8_rows_) + "u;");
      const std::string norm = std::string(wgsl::q8) + wgsl::norm + wgsl::norm_q8,
                        ew = std::string(wgsl::q8) + wgsl::elementwise + wgsl::elementwise_q8;
      make_pipeline(kQuantizeX, mv, "quantize_x", 3);
      make_pipeline(kMatvecMultiI8, mv, "matvec_multi_i8", 3);
      make_pipeline(kRmsnormQ8, norm, "rmsnorm_q8", 4);
      make_pipeline(kAddRmsnormQ8, norm, "add_rmsnorm_q8", 4);
      make_pipeline(kSwigluQ8, ew, "swiglu_q8", 3);
      make_pipeline(kSwigluInplaceQ8, ew, "swiglu_inplace_q8", 3);
    }
  }

  // The matrix-vector kernels' row reductions (row_sum for matvec_int8, matvec_finish for matmul.wgsl's) with
  // their entry points' inputs: subgroup shuffles where the device has subgroups (VIREO_WEBGPU_SUBGROUPS=0 turns
  // them off), else workgroup memory. The `enable` directive must open the module, so this goes first.
  std::string reductions(bool int8_rows) const {
    if (subgroup_rows_)
      return std::string(dev_->limits().subgroups_enable ? "enable subgroups;\n" : "") + wgsl::ids_subgroup +
             (int8_rows ? wgsl::row_sum_subgroup : wgsl::matvec_finish_subgroup);
    return std::string(wgsl::ids) + (int8_rows ? wgsl::row_sum : wgsl::matvec_finish);
  }

  // matvec_multi_i8 reads three weight bindings with the same row functions: the source's marked section is
  // appended twice more, for W4_1 and W4_2 (WGSL functions cannot take a storage binding as a parameter).
  static std::string with_weight_binding_copies(const std::string& src) {
    const std::string begin = "// @weight-binding-functions begin", end = "// @weight-binding-functions end";
    const size_t b = src.find(begin), e = src.find(end);
    if (b == std::string::npos || e == std::string::npos) throw std::logic_error("matvec_int8.wgsl: no weight-binding section");
    std::string out = src;
    for (const char* suffix : {"_1", "_2"}) {
      std::string part = src.substr(b, e - b);
      for (const std::string from : {"W4[", "_lane_W4("}) {
        const std::string to = from.substr(0, from.size() - 1) + suffix + from.back();
        for (size_t i = part.find(from); i != std::string::npos; i = part.find(from, i + to.size()))
          part.replace(i, from.size(), to);
      }
      out += "\n" + part;
    }
    return out;
  }

  void create_kv_pipelines(bool f16) {
    kv_pipes_f16_ = f16;
    const std::string src = std::string("const KV_F16: bool = ") + (f16 ? "true" : "false") + ";\n" + wgsl::attention;
    make_pipeline(kKvStore, src, "kv_store", 5);
    make_pipeline(kAttention, src, "attention", 5);
    make_pipeline(kAttentionSplit, src, "attention_split", 5);
    make_pipeline(kAttentionMerge, src, "attention_merge", 5);
    make_pipeline(kKvCopy, src, "kv_copy", 10);
    make_pipeline(kRopeKvStore, src + wgsl::rope_angle + wgsl::rope_kv, "rope_kv_store", 5);
    if (int8_decode_) make_pipeline(kAttentionMergeQ8, wgsl::q8 + src + wgsl::attention_q8, "attention_merge_q8", 5);
  }

  std::unique_ptr<gpu::Device> dev_;
  std::function<void(int64_t, int64_t)> on_compile_;
  int64_t compiled_ = 0;
  bool kv_pipes_f16_ = false;  // the cache type the KV-cache pipelines were compiled for (the constructor: f16)
  uint64_t max_binding_ = 0;         // the adapter's largest storage binding
  uint64_t weight_chunk_bytes_ = 0;  // the largest weight chunk (WebGpuOptions::max_binding_bytes lowers it)
  uint32_t uniform_stride_ = 256;
  std::vector<Pipe> pipes_;
  std::deque<std::unique_ptr<WgWeight>> weights_;
  std::deque<GpuBuffer> acts_;
  std::vector<Handle> owned_;
  std::vector<GpuBuffer> k_cache_, v_cache_;
  std::map<std::tuple<int32_t, float, const Weight*>, GpuBuffer> freqs_;
  KvCacheConfig kv_;
  GpuBuffer step_, ids_, readback_, margins_, candidates_, sample_rows_, argmax_part_, attn_po_, attn_pml_;
  GpuBuffer chain_ids_, chain_rows_;  // a decode chain's ids and sampling rows (steps x rows)
  std::vector<Dispatch> chain_step_;  // the dispatches of the step a chain repeats
  int64_t step_embed_rows_ = INT64_MAX;  // rows of the embedding table the step reads (ids fed back must fit)
  GpuBuffer xq_, xs_;              // a one-token activation as int8 (packed) and its per-32 scales and sums
  GpuBuffer dummy_read_, dummy_write_;  // bound to matvec_multi_i8's unused weight / output bindings
  bool int8_decode_ = false;       // the int8-activation decode products are in use
  bool subgroup_rows_ = false;     // matrix-vector row sums by subgroup shuffles (reductions())
  bool f16_matmul_ = false;        // prefill products in f16 arithmetic (matmul_f16.wgsl)
  bool k_quant_tiles_ = false;     // Q4_K / Q6_K prefill in the tiled kernel too (VIREO_WEBGPU_KQ_TILES=1)
  uint32_t n_pipes_ = kPipes;      // pipelines created up front
  uint32_t i8_rows_ = 8;           // rows per workgroup of the int8 products (ROWS in matvec_int8.wgsl)
  Handle quantized_x_ = 0;         // the activation xq_ holds, while the dispatches since only read it
  int64_t quantized_cols_ = 0;
  std::vector<uint32_t> cand_host_;
  std::vector<int32_t> step_host_;
  int32_t cap_ = 0;
  int64_t max_rows_ = 0;
  std::vector<Dispatch> log_;
  std::unordered_map<uint64_t, Plan> plans_;
  std::vector<float> last_logits_;
  const Batch* batch_ = nullptr;
  int32_t n_ = 0;
  int64_t memory_ = 0;
  int64_t submits_ = 0, dispatches_ = 0, steps_ = 0;
  bool profile_ = false;
  int64_t profiled_steps_ = 0;
  std::map<uint32_t, std::pair<double, int64_t>> profile_by_pipe_;  // pipe -> (GPU seconds, dispatches)

  void print_profile() const {
    if (profile_by_pipe_.empty()) return;
    std::vector<std::pair<uint32_t, std::pair<double, int64_t>>> rows(profile_by_pipe_.begin(), profile_by_pipe_.end());
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.first > b.second.first; });
    double total = 0;
    for (const auto& r : rows) total += r.second.first;
    std::fprintf(stderr, "WebGPU profile: GPU time of %lld steps (%.3f ms per step), by kernel:\n",
                 static_cast<long long>(profiled_steps_), 1e3 * total / std::max<int64_t>(profiled_steps_, 1));
    std::fprintf(stderr, "  %-22s %10s %12s %10s %7s\n", "kernel", "dispatches", "total ms", "mean us", "share");
    for (const auto& [pipe, v] : rows)
      std::fprintf(stderr, "  %-22s %10lld %12.3f %10.2f %6.1f%%\n", pipes_[pipe].label.c_str(),
                   static_cast<long long>(v.second), 1e3 * v.first, 1e6 * v.first / std::max<int64_t>(v.second, 1),
                   100 * v.first / std::max(total, 1e-12));
  }
  double encode_seconds_ = 0, wait_seconds_ = 0;
};

}  // namespace

bool webgpu_available(std::string* why) {
  try {
    gpu::open_device();
    return true;
  } catch (const std::exception& e) {
    if (why) *why = e.what();
    return false;
  }
}

std::unique_ptr<Backend> make_webgpu_backend(const WebGpuOptions& opts) {
  return std::make_unique<WebGpuBackend>(opts);
}

namespace webgpu_testing {
WebGpuBackend& cast(Backend& be) {
  auto* w = dynamic_cast<WebGpuBackend*>(&be);
  if (!w) throw std::invalid_argument("not a WebGPU backend");
  return *w;
}
void write_act(Backend& be, Act a, const std::vector<float>& v) { cast(be).write_act(a, v.data(), v.size()); }
std::vector<float> read_act(Backend& be, Act a, int64_t rows) {
  std::vector<float> v(static_cast<size_t>(rows * a.cols));
  cast(be).read_act(a, v.data(), v.size());
  return v;
}
int64_t submits(Backend& be) { return cast(be).submits(); }
size_t plans(Backend& be) { return cast(be).plans(); }
bool prefill_in_f16(Backend& be, DType t) { return cast(be).tiles_in_f16(t); }
}  // namespace webgpu_testing

}  // namespace vireo
