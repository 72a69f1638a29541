// The CUDA backend (see cuda_backend.h).
//
// Steps and graphs. The model calls the ops of a step between begin_step and end_step. Here an op call only
// validates its arguments, makes sure scratch memory exists and appends a record to the step's op log; nothing is
// launched. end_step then either
//   - replays the CUDA graph cached for the step's shape (token count n, logit rows r) when the log equals the
//     log the graph was captured from (same ops, same buffers, same parameters: everything that may differ between
//     two steps of one shape lives in device memory, written by begin_step), or
//   - captures the log into a new graph (stream capture) and launches it, or runs it eagerly (shapes seen for the
//     first time above CudaOptions::graph_first_use_max_tokens, graphs disabled).
// A log that differs from the cached one for its shape is re-captured, so a replay can never run stale
// arguments. The values of a step (tokens, positions, slots, logit rows, and per token the smallest position the
// step writes into its slot) are copied to device memory with one asynchronous copy in begin_step, ordered before
// the graph on the same stream.
//
// Fusion (decode-sized steps, CudaOptions::fuse). run_log walks the op log and runs known sequences of a Llama
// layer as one kernel each (run_fused): a norm whose output feeds a matmul with int8 activations also writes those
// activations (norm_q8); q/k/v matmuls of one input, followed by RoPE of q and k and the KV store, are one mv.cu
// launch; gate/up + SwiGLU are one launch that also emits the int8 activations of the down projection; the decode
// attention emits the int8 activations of the o-projection. Every buffer the unfused ops would write is still
// written, so later ops (and graphs compared by op log) see the same state. The int8 activations live in two
// buffers, so that a kernel can read one and write the other; q8c_ records which Act each holds. Batched steps
// (9-64 tokens) group up to three qgemm_frag.cu matmuls of one input into one launch (run_frag_group), and a
// norm, SwiGLU or decode attention feeding a matmul on the f16 paths writes the f16 activations too
// (run_with_f16; f16_cache_), and RoPE of q and k plus the cache store run as one kernel (run_rope_store).
#include "backend/cuda/cuda_backend.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/cuda/kernels.h"
#include "backend/cuda/mv.h"
#include "backend/cuda/repack.cuh"
#include "quant/quant.h"

namespace vireo::VIREO_CUDA_NS {
namespace {

struct CudaWeight : Weight {
  bool is_vec = false;
  // matrices (and embedding tables)
  PackPlan plan;
  MatView view;
  const uint16_t* f16 = nullptr;  // f16 copy for prefill (CudaOptions::f16_weights), rows of view.Kp
  // 1-D tensors (norm gains, biases, rope factors): f32 on the device, and a host copy
  float* vec = nullptr;
  std::vector<float> host_vec;
};

enum class OpKind : uint8_t { Embed, RmsNorm, AddRmsNorm, Matmul, AddBias, Rope, KvStore, Attention, Swiglu, Add, Gather };

const char* op_name(OpKind k) {
  switch (k) {
    case OpKind::Embed: return "embed";
    case OpKind::RmsNorm: return "rmsnorm";
    case OpKind::AddRmsNorm: return "add_rmsnorm";
    case OpKind::Matmul: return "matmul";
    case OpKind::AddBias: return "add_bias";
    case OpKind::Rope: return "rope";
    case OpKind::KvStore: return "kv_store";
    case OpKind::Attention: return "attention";
    case OpKind::Swiglu: return "swiglu";
    case OpKind::Add: return "add";
    case OpKind::Gather: return "gather_logit_rows";
  }
  return "?";
}

struct Op {
  OpKind kind = OpKind::Add;
  const Weight* w = nullptr;
  Act a, b, c;
  float eps = 0.f;
  RopeParams rope;
  AttentionParams attn;
  int32_t layer = 0;
  // Derived at record time from the arguments above (part of the comparison all the same).
  const float* rope_table = nullptr;
  int splits = 1, chunk = 0;
  bool decode = false;   // attention: the split-KV decode kernel
  bool prefill = false;  // attention: the tensor-core prefill kernel
};

bool same_act(const Act& x, const Act& y) { return x.data == y.data && x.cols == y.cols && x.rows == y.rows; }
bool same_bits(float x, float y) { return std::memcmp(&x, &y, sizeof x) == 0; }

bool same_op(const Op& x, const Op& y) {
  return x.kind == y.kind && x.w == y.w && same_act(x.a, y.a) && same_act(x.b, y.b) && same_act(x.c, y.c) &&
         same_bits(x.eps, y.eps) && x.rope.n_heads == y.rope.n_heads && x.rope.head_dim == y.rope.head_dim &&
         x.rope.rope_dim == y.rope.rope_dim && same_bits(x.rope.freq_base, y.rope.freq_base) &&
         x.rope.mode == y.rope.mode && x.rope.freq_factors == y.rope.freq_factors &&
         x.attn.layer == y.attn.layer && x.attn.n_heads == y.attn.n_heads &&
         x.attn.n_kv_heads == y.attn.n_kv_heads && x.attn.head_dim == y.attn.head_dim &&
         same_bits(x.attn.scale, y.attn.scale) && x.layer == y.layer && x.rope_table == y.rope_table &&
         x.splits == y.splits && x.chunk == y.chunk && x.decode == y.decode &&
         x.prefill == y.prefill;
}

bool same_log(const std::vector<Op>& x, const std::vector<Op>& y) {
  if (x.size() != y.size()) return false;
  for (size_t i = 0; i < x.size(); ++i)
    if (!same_op(x[i], y[i])) return false;
  return true;
}

const CudaWeight* cw(const Weight* w) { return static_cast<const CudaWeight*>(w); }
float* f(const Act& a) { return static_cast<float*>(a.data); }

// Do two activation views share memory?
bool overlaps(const Act& x, const Act& y) {
  const char* a = static_cast<const char*>(x.data);
  const char* b = static_cast<const char*>(y.data);
  const int64_t na = x.rows * x.cols * 4, nb = y.rows * y.cols * 4;
  return a < b + nb && b < a + na;
}

// Number of step-value arrays in device memory: tokens, positions, slots, logit rows, safe positions.
constexpr int kStepArrays = 5;

class CudaBackend final : public Backend, public CudaBackendExt {
 public:
  CudaBackend(int device, const CudaOptions& opts) : device_(device), opts_(opts) {
    int count = 0;
    VCUDA(cudaGetDeviceCount(&count), "device query");
    if (device < 0 || device >= count)
      throw std::runtime_error("CUDA backend: no device " + std::to_string(device) + " (found " +
                               std::to_string(count) + ")");
    VCUDA(cudaSetDevice(device_), "select device");
    cudaDeviceProp prop;
    VCUDA(cudaGetDeviceProperties(&prop, device_), "device properties");
    device_name_ = prop.name;
    sms_ = prop.multiProcessorCount;
    if (prop.major < 8)
      throw std::runtime_error("CUDA backend: device '" + device_name_ + "' has compute capability " +
                               std::to_string(prop.major) + "." + std::to_string(prop.minor) +
                               "; this build needs 8.0 or newer");
    VCUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "stream");
    attention_init();
    attention_prefill_init(prop.sharedMemPerBlockOptin);
    qgemm_frag_init(prop.sharedMemPerBlockOptin);
    if (cublasCreate(&cublas_) != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("CUDA backend: cublasCreate failed");
    if (cublasSetStream(cublas_, stream_) != CUBLAS_STATUS_SUCCESS)
      throw std::runtime_error("CUDA backend: cublasSetStream failed");
    // A workspace of our own, so that cuBLAS allocates nothing while a graph is being captured.
    cublas_ws_bytes_ = size_t(32) << 20;
    cublas_ws_ = dev_alloc(cublas_ws_bytes_, "cuBLAS workspace");
    if (cublasSetWorkspace(cublas_, cublas_ws_, cublas_ws_bytes_) != CUBLAS_STATUS_SUCCESS)
      throw std::runtime_error("CUDA backend: cublasSetWorkspace failed");
    if (opts_.sync_each_op || opts_.profile) opts_.graphs = 0;
    pdl_ = opts_.pdl != 0 && prop.major >= 9;
  }

  ~CudaBackend() override {
    cudaSetDevice(device_);
    if (stream_) cudaStreamSynchronize(stream_);
    prof_report();
    for (cudaEvent_t e : prof_ev_) cudaEventDestroy(e);
    for (cudaEvent_t e : chain_ev_) cudaEventDestroy(e);
    for (auto& [key, g] : graphs_)
      if (g.exec) cudaGraphExecDestroy(g.exec);
    for (void* p : allocations_) cudaFree(p);
    if (h_step_) cudaFreeHost(h_step_);
    if (h_logits_) cudaFreeHost(h_logits_);
    if (cublas_) cublasDestroy(cublas_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  std::string name() const override { return "cuda:" + std::to_string(device_); }
  bool copies_weights() const override { return true; }

  // ---------------------------------------------------------------------------------------------------------
  // load / plan time
  // ---------------------------------------------------------------------------------------------------------
  const Weight* upload_weight(const std::string& name, DType type, const std::vector<int64_t>& shape,
                              std::span<const uint8_t> bytes) override {
    VCUDA(cudaSetDevice(device_), "select device");
    auto w = std::make_unique<CudaWeight>();
    w->type = type;
    w->shape = shape;
    if (shape.empty()) throw std::runtime_error("tensor '" + name + "': no shape");
    const std::string what = "upload '" + name + "'";
    if (shape.size() == 1) {
      w->is_vec = true;
      if (!can_dequantize(type))
        throw std::runtime_error("tensor '" + name + "': cannot read type " + std::string(dtype_name(type)));
      if (static_cast<int64_t>(bytes.size()) < row_bytes(type, shape[0]))
        throw std::runtime_error("tensor '" + name + "': data too short");
      w->host_vec.resize(static_cast<size_t>(shape[0]));
      dequantize_row(type, bytes.data(), w->host_vec.data(), shape[0]);
      w->vec = static_cast<float*>(dev_alloc(w->host_vec.size() * sizeof(float), what.c_str()));
      h2d(w->vec, w->host_vec.data(), w->host_vec.size() * sizeof(float), what.c_str());
    } else {
      int64_t rows = 1;
      for (size_t i = 1; i < shape.size(); ++i) rows *= shape[i];
      std::string why;
      if (!plan_matrix(type, rows, shape[0], &w->plan, &why)) throw std::runtime_error("tensor '" + name + "': " + why);
      const PackPlan& p = w->plan;
      const int64_t src_row = row_bytes(type, p.K);
      if (static_cast<int64_t>(bytes.size()) < rows * src_row)
        throw std::runtime_error("tensor '" + name + "': data too short");
      uint8_t* mem = static_cast<uint8_t*>(dev_alloc(static_cast<size_t>(p.total_bytes), what.c_str()));
      w->view = view_of(p, mem);
      if (p.verbatim) {
        h2d(mem, bytes.data(), static_cast<size_t>(rows * p.row_bytes), what.c_str());
      } else {
        // Repack in slices of about 64 MiB.
        const int64_t slice = std::max<int64_t>(1, (int64_t(64) << 20) / std::max<int64_t>(p.row_bytes, 1));
        std::vector<uint8_t> q_host;
        std::vector<uint16_t> aux_host;
        for (int64_t r0 = 0; r0 < rows; r0 += slice) {
          const int64_t r1 = std::min(rows, r0 + slice);
          q_host.resize(static_cast<size_t>((r1 - r0) * p.row_bytes));
          aux_host.resize(p.aux_offset ? static_cast<size_t>((r1 - r0) * p.nb) : 0);
          pack_rows(p, bytes.data() + r0 * src_row, r0, r1, q_host.data(), p.aux_offset ? aux_host.data() : nullptr);
          h2d(mem + r0 * p.row_bytes, q_host.data(), q_host.size(), what.c_str());
          if (p.aux_offset) h2d(mem + p.aux_offset + r0 * p.nb * 2, aux_host.data(), aux_host.size() * 2, what.c_str());
        }
      }
    }
    if (opts_.f16_weights && !w->is_vec && !wfmt_is_float(w->view.fmt) && name.rfind("blk.", 0) == 0) {
      auto* f16 = static_cast<uint16_t*>(
          dev_alloc(static_cast<size_t>(w->view.rows * w->view.Kp) * 2, ("f16 copy of " + name).c_str()));
      dequant_f16(w->view, 0, w->view.rows, f16, stream_);
      VCUDA(cudaStreamSynchronize(stream_), what.c_str());
      w->f16 = f16;
    }
    weights_.push_back(std::move(w));
    return weights_.back().get();
  }

  Act alloc_act(int64_t max_rows, int64_t cols) override {
    VCUDA(cudaSetDevice(device_), "select device");
    const size_t bytes = static_cast<size_t>(max_rows * cols) * sizeof(float);
    void* p = dev_alloc(bytes, "activation buffer");
    memset_sync(p, 0, bytes, "activation buffer");
    max_act_rows_ = std::max(max_act_rows_, max_rows);
    return {p, cols, max_rows};
  }

  void alloc_kv(const KvCacheConfig& cfg) override {
    VCUDA(cudaSetDevice(device_), "select device");
    if (cfg.type != DType::F32 && cfg.type != DType::F16)
      throw std::runtime_error("CUDA KV cache supports f16 and f32");
    if (kv_ready_) {  // planned again: the old cache goes, and every graph that reads it
      VCUDA(cudaStreamSynchronize(stream_), "KV cache");
      const size_t old = static_cast<size_t>(kv_.n_slots) * kv_.n_ctx * kv_.kv_dim * (kv_.type == DType::F32 ? 4 : 2);
      for (size_t l = 0; l < k_cache_.size(); ++l) {
        dev_free(k_cache_[l], old);
        dev_free(v_cache_[l], old);
      }
      kv_ready_ = false;
    }
    drop_graphs();
    kv_ = cfg;
    const size_t elem = cfg.type == DType::F32 ? 4 : 2;
    const size_t per_layer = static_cast<size_t>(cfg.n_slots) * cfg.n_ctx * cfg.kv_dim * elem;
    k_cache_.assign(cfg.n_layers, nullptr);
    v_cache_.assign(cfg.n_layers, nullptr);
    for (int l = 0; l < cfg.n_layers; ++l) {
      k_cache_[l] = dev_alloc(per_layer, "KV cache");
      v_cache_[l] = dev_alloc(per_layer, "KV cache");
      memset_sync(k_cache_[l], 0, per_layer, "KV cache");
      memset_sync(v_cache_[l], 0, per_layer, "KV cache");
    }
    kv_ready_ = true;
  }

  int64_t memory_bytes() const override { return memory_; }

  // ---------------------------------------------------------------------------------------------------------
  // one step
  // ---------------------------------------------------------------------------------------------------------
  void begin_step(const Batch& batch) override {
    VCUDA(cudaSetDevice(device_), "select device");
    if (in_step_) VCUDA(cudaStreamSynchronize(stream_), "begin_step");  // a step left unfinished
    in_step_ = false;
    const int32_t n = batch.size();
    if (n <= 0) throw std::runtime_error("empty batch");
    if (batch.positions.size() != static_cast<size_t>(n) || batch.slots.size() != static_cast<size_t>(n))
      throw std::runtime_error("batch: tokens, positions and slots differ in length");
    for (int32_t i = 0; i < n; ++i) {
      const int32_t pos = batch.positions[i], slot = batch.slots[i];
      if (kv_ready_ && (pos < 0 || pos >= kv_.n_ctx || slot < 0 || slot >= kv_.n_slots))
        throw std::runtime_error("position or slot outside the KV cache");
    }
    for (int32_t row : batch.logit_rows)
      if (row < 0 || row >= n) throw std::runtime_error("logit row outside the batch");
    ensure_step_capacity(n);
    int32_t* h = h_step_;
    std::memcpy(h, batch.tokens.data(), n * sizeof(int32_t));
    std::memcpy(h + step_cap_, batch.positions.data(), n * sizeof(int32_t));
    std::memcpy(h + 2 * step_cap_, batch.slots.data(), n * sizeof(int32_t));
    if (!batch.logit_rows.empty())
      std::memcpy(h + 3 * step_cap_, batch.logit_rows.data(), batch.logit_rows.size() * sizeof(int32_t));
    // Safe positions: the keys of a token's slot below the smallest position this step writes into that slot
    // are older than the step (the decode attention may read them before the KV store of the step finishes).
    {
      int32_t* safe = h + 4 * step_cap_;
      if (kv_ready_) {
        slot_min_.assign(static_cast<size_t>(kv_.n_slots), INT32_MAX);
        for (int32_t i = 0; i < n; ++i)
          slot_min_[batch.slots[i]] = std::min(slot_min_[batch.slots[i]], batch.positions[i]);
        for (int32_t i = 0; i < n; ++i) safe[i] = slot_min_[batch.slots[i]];
      } else {
        std::memset(safe, 0, static_cast<size_t>(n) * sizeof(int32_t));
      }
    }
    VCUDA(cudaMemcpyAsync(d_step_, h_step_, kStepArrays * step_cap_ * sizeof(int32_t), cudaMemcpyHostToDevice,
                          stream_),
          "begin_step (copy step values)");
    batch_ = &batch;
    n_ = n;
    r_ = static_cast<int32_t>(batch.logit_rows.size());
    log_.clear();
    in_step_ = true;
  }

  // The end_step_* entry points: a step must be open.
  void close_step() {
    if (!in_step_) throw std::runtime_error("end_step without begin_step");
    in_step_ = false;
  }
  // Pinned host staging of at least `bytes` for what a step reads back.
  void ensure_staging(size_t bytes) {
    if (bytes <= h_logits_bytes_) return;
    if (h_logits_) VCUDA(cudaFreeHost(h_logits_), "end_step (free staging)");
    h_logits_ = nullptr;
    VCUDA(cudaMallocHost(reinterpret_cast<void**>(&h_logits_), bytes), "end_step (staging)");
    h_logits_bytes_ = bytes;
  }
  // Waits for the step and its read-back; a fault inside a kernel surfaces here.
  void finish_step() {
    const cudaError_t e = cudaStreamSynchronize(stream_);
    if (e != cudaSuccess)
      cuda_fail("step failed (an error inside a kernel; VIREO_CUDA_SYNC=1 names the op)", cudaGetErrorString(e),
                __FILE__, __LINE__);
  }

  void end_step(Act logits, std::span<float> host) override {
    close_step();
    const size_t count = static_cast<size_t>(r_) * static_cast<size_t>(logits.cols);
    if (host.size() < count) throw std::runtime_error("logits buffer too small");
    ensure_staging(count * sizeof(float));
    run_step();
    if (count)
      VCUDA(cudaMemcpyAsync(h_logits_, logits.data, count * sizeof(float), cudaMemcpyDeviceToHost, stream_),
            "end_step (copy logits)");
    finish_step();
    if (count) std::memcpy(host.data(), h_logits_, count * sizeof(float));
    batch_ = nullptr;
  }

  void end_step_argmax(Act logits, std::span<int32_t> host) override {
    close_step();
    if (host.size() < static_cast<size_t>(r_)) throw std::runtime_error("ids buffer too small");
    ensure(d_ids_, static_cast<size_t>(std::max(r_, 1)) * sizeof(int32_t), "argmax ids");
    ensure(d_argmax_part_, static_cast<size_t>(std::max(r_, 1)) * argmax_slices(logits.cols) * sizeof(ArgmaxPart),
           "argmax slices");
    const size_t bytes = static_cast<size_t>(r_) * sizeof(int32_t);
    ensure_staging(bytes);
    run_step();
    if (r_ > 0) {
      argmax_rows(static_cast<const float*>(logits.data), logits.cols, r_, logits.cols,
                  static_cast<ArgmaxPart*>(d_argmax_part_.p), static_cast<int32_t*>(d_ids_.p), stream_);
      VCUDA(cudaMemcpyAsync(h_logits_, d_ids_.p, bytes, cudaMemcpyDeviceToHost, stream_), "end_step (copy ids)");
    }
    finish_step();
    if (r_ > 0) std::memcpy(host.data(), h_logits_, bytes);
    batch_ = nullptr;
  }

  bool samples_on_device() const override { return opts_.device_sampling != 0; }

  // Draws each logit row's token on the GPU (sample.cu) and reads back one id per row.
  void end_step_sample(Act logits, std::span<const DeviceSampleRow> rows, std::span<int32_t> ids) override {
    close_step();
    const size_t r = static_cast<size_t>(r_);
    if (rows.size() < r || ids.size() < r) throw std::runtime_error("sampling buffers too small");
    // device: [rows r][ids r]; the same layout in pinned host staging
    const size_t bytes = r * (sizeof(DeviceSampleRow) + sizeof(int32_t));
    ensure(d_cand_, std::max<size_t>(bytes, 4), "sampling rows");
    ensure_staging(bytes);
    auto* h = reinterpret_cast<uint8_t*>(h_logits_);
    auto* d = static_cast<uint8_t*>(d_cand_.p);
    const size_t ids_at = r * sizeof(DeviceSampleRow);
    if (r > 0) std::memcpy(h, rows.data(), ids_at);
    run_step();
    if (r > 0) {
      VCUDA(cudaMemcpyAsync(d, h, ids_at, cudaMemcpyHostToDevice, stream_), "end_step (sampling rows)");
      sample_rows(static_cast<const float*>(logits.data), logits.cols, r_, logits.cols,
                  reinterpret_cast<const DeviceSampleRow*>(d), reinterpret_cast<int32_t*>(d + ids_at), stream_);
      VCUDA(cudaMemcpyAsync(h + ids_at, d + ids_at, r * sizeof(int32_t), cudaMemcpyDeviceToHost, stream_),
            "end_step (copy ids)");
    }
    finish_step();
    if (r > 0) std::memcpy(ids.data(), h + ids_at, r * sizeof(int32_t));
    batch_ = nullptr;
  }

  bool chains_steps() const override { return true; }

  // Runs the decode step `steps` times: graph launch (or the eager log), argmax or draw into run s's ids, and
  // chain_next_step turning those ids into the next run's tokens; the ids come back run by run when there is a
  // `progress` to hear them (which may stop the chain), else in one copy at the end.
  int32_t end_step_chain(Act logits, int32_t steps, std::span<const DeviceSampleRow> rows, std::span<int32_t> ids,
                         const ChainProgress& progress) override {
    close_step();
    const size_t r = static_cast<size_t>(r_);
    int64_t embed_rows = INT64_MAX;  // an id fed back must be a row of the embedding table
    for (const Op& op : log_)
      if (op.kind == OpKind::Embed) embed_rows = std::min(embed_rows, cw(op.w)->view.rows);
    check_decode_chain(*batch_, steps, kv_ready_ ? kv_.n_ctx : 0, logits.cols, embed_rows);
    const bool sampled = !rows.empty();
    const size_t total = static_cast<size_t>(steps) * r;
    if (ids.size() < total || (sampled && rows.size() < total))
      throw std::runtime_error("decode chain: buffers too small");
    // device: [sampling rows, steps x r][ids, steps x r]; the same layout in pinned host staging
    const size_t ids_at = sampled ? total * sizeof(DeviceSampleRow) : 0;
    const size_t bytes = ids_at + total * sizeof(int32_t);
    ensure(d_cand_, bytes, "decode chain");
    ensure(d_argmax_part_, r * argmax_slices(logits.cols) * sizeof(ArgmaxPart), "argmax slices");
    ensure_staging(bytes);
    auto* h = reinterpret_cast<uint8_t*>(h_logits_);
    auto* d = static_cast<uint8_t*>(d_cand_.p);
    auto* d_ids = reinterpret_cast<int32_t*>(d + ids_at);
    if (sampled) {
      std::memcpy(h, rows.data(), ids_at);
      VCUDA(cudaMemcpyAsync(d, h, ids_at, cudaMemcpyHostToDevice, stream_), "decode chain (sampling rows)");
    }
    const auto* x = static_cast<const float*>(logits.data);
    // With `progress`, each run's ids come back on their own (a copy and an event after the run) while the GPU
    // works up to kChainAhead runs further: the host hears of a stop within that many runs and launches no more.
    const int32_t ahead = progress ? kChainAhead : steps;
    if (progress)
      while (static_cast<int32_t>(chain_ev_.size()) < ahead + 1) {
        cudaEvent_t e = nullptr;
        VCUDA(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "decode chain (event)");
        chain_ev_.push_back(e);
      }
    const size_t row_bytes = r * sizeof(int32_t);
    int32_t issued = 0, reported = 0;
    bool go = true;
    auto report = [&](bool wait) {  // the next run's ids to the caller
      if (wait) VCUDA(cudaEventSynchronize(chain_ev_[static_cast<size_t>(reported) % chain_ev_.size()]), "decode chain (wait)");
      std::memcpy(ids.data() + static_cast<size_t>(reported) * r, h + ids_at + static_cast<size_t>(reported) * row_bytes, row_bytes);
      ++reported;
      if (!progress(reported)) go = false;
    };
    for (int32_t s = 0; s < steps && go; ++s) {
      run_step();
      int32_t* out = d_ids + static_cast<size_t>(s) * r;
      if (sampled)
        sample_rows(x, logits.cols, r_, logits.cols,
                    reinterpret_cast<const DeviceSampleRow*>(d) + static_cast<size_t>(s) * r, out, stream_);
      else
        argmax_rows(x, logits.cols, r_, logits.cols, static_cast<ArgmaxPart*>(d_argmax_part_.p), out, stream_);
      if (s + 1 < steps) chain_next_step(d_tokens(), d_pos(), d_safe(), out, n_, stream_);
      issued = s + 1;
      if (!progress) continue;
      VCUDA(cudaMemcpyAsync(h + ids_at + static_cast<size_t>(s) * row_bytes, out, row_bytes, cudaMemcpyDeviceToHost,
                            stream_), "decode chain (copy ids)");
      VCUDA(cudaEventRecord(chain_ev_[static_cast<size_t>(s) % chain_ev_.size()], stream_), "decode chain (event)");
      if (issued - reported > ahead) report(true);
    }
    if (!progress)
      VCUDA(cudaMemcpyAsync(h + ids_at, d_ids, total * sizeof(int32_t), cudaMemcpyDeviceToHost, stream_),
            "decode chain (copy ids)");
    finish_step();
    if (progress) {
      while (reported < issued) report(false);
    } else {
      std::memcpy(ids.data(), h + ids_at, total * sizeof(int32_t));
    }
    batch_ = nullptr;
    return issued;
  }

  void end_step_candidates(Act logits, std::span<const float> margins, int32_t cap, std::span<float> values,
                           std::span<int32_t> ids, std::span<int32_t> counts) override {
    close_step();
    const size_t r = static_cast<size_t>(r_), c = static_cast<size_t>(std::max(cap, 1));
    if (counts.size() < r || margins.size() < r || values.size() < r * c || ids.size() < r * c)
      throw std::runtime_error("candidate buffers too small");
    // device: [margins r][counts r][vals r*c][ids r*c]; the same layout in pinned host staging
    const size_t bytes = (2 * r + 2 * r * c) * 4;
    ensure(d_cand_, std::max<size_t>(bytes, 4), "sampling candidates");
    ensure_staging(bytes);
    auto* h = reinterpret_cast<uint8_t*>(h_logits_);
    auto* d = static_cast<uint8_t*>(d_cand_.p);
    if (r > 0) std::memcpy(h, margins.data(), r * 4);
    run_step();
    if (r > 0) {
      VCUDA(cudaMemcpyAsync(d, h, r * 4, cudaMemcpyHostToDevice, stream_), "end_step (margins)");
      logit_candidates(static_cast<const float*>(logits.data), logits.cols, r_, logits.cols,
                       reinterpret_cast<const float*>(d), cap, reinterpret_cast<float*>(d + 8 * r),
                       reinterpret_cast<int32_t*>(d + 8 * r + 4 * r * c), reinterpret_cast<int32_t*>(d + 4 * r),
                       stream_);
      VCUDA(cudaMemcpyAsync(h + 4 * r, d + 4 * r, bytes - 4 * r, cudaMemcpyDeviceToHost, stream_),
            "end_step (copy candidates)");
    }
    finish_step();
    for (size_t i = 0; i < r; ++i) {
      const int32_t n = reinterpret_cast<const int32_t*>(h + 4 * r)[i];
      counts[i] = n;
      if (n > 0) {
        std::memcpy(values.data() + i * c, h + 8 * r + 4 * i * c, static_cast<size_t>(n) * 4);
        std::memcpy(ids.data() + i * c, h + 8 * r + 4 * r * c + 4 * i * c, static_cast<size_t>(n) * 4);
      }
    }
    batch_ = nullptr;
  }

  void read_logit_rows(Act logits, std::span<const int32_t> rows, std::span<float> host) override {
    if (host.size() < rows.size() * logits.cols) throw std::runtime_error("logits buffer too small");
    bool leading = true;  // rows 0..k-1: one copy
    for (size_t i = 0; i < rows.size(); ++i) leading = leading && rows[i] == static_cast<int32_t>(i);
    if (leading && !rows.empty()) {
      VCUDA(cudaMemcpy(host.data(), logits.data, rows.size() * logits.cols * sizeof(float), cudaMemcpyDeviceToHost),
            "read_logit_rows");
      return;
    }
    for (size_t i = 0; i < rows.size(); ++i)
      VCUDA(cudaMemcpyAsync(host.data() + i * logits.cols, static_cast<const float*>(logits.data) + rows[i] * logits.cols,
                            logits.cols * sizeof(float), cudaMemcpyDeviceToHost, stream_),
            "read_logit_rows");
    VCUDA(cudaStreamSynchronize(stream_), "read_logit_rows");
  }

  // ---------------------------------------------------------------------------------------------------------
  // ops: validate, prepare scratch, record
  // ---------------------------------------------------------------------------------------------------------
  void embed(const Weight* table, Act out) override {
    need_step("embed");
    const CudaWeight* w = cw(table);
    if (w->is_vec) throw std::runtime_error("embed: table is not a matrix");
    for (int32_t t = 0; t < n_; ++t) {
      const int32_t tok = batch_->tokens[t];
      if (tok < 0 || tok >= w->view.rows) throw std::runtime_error("token id out of range");
    }
    if (out.cols != w->view.K) throw std::runtime_error("embed: output width differs from the table's rows");
    Op op;
    op.kind = OpKind::Embed;
    op.w = table;
    op.a = out;
    log_.push_back(op);
  }

  void rmsnorm(Act x, const Weight* w, float eps, Act out) override {
    need_step("rmsnorm");
    check_vec(w, x.cols, "rmsnorm");
    Op op;
    op.kind = OpKind::RmsNorm;
    op.w = w;
    op.a = x;
    op.b = out;
    op.eps = eps;
    log_.push_back(op);
  }

  void add_rmsnorm(Act x, Act y, const Weight* w, float eps, Act out) override {
    need_step("add_rmsnorm");
    check_vec(w, x.cols, "add_rmsnorm");
    Op op;
    op.kind = OpKind::AddRmsNorm;
    op.w = w;
    op.a = x;
    op.b = y;
    op.c = out;
    op.eps = eps;
    log_.push_back(op);
  }

  void matmul(const Weight* w, Act x, Act out) override {
    need_step("matmul");
    const CudaWeight* m = cw(w);
    if (m->is_vec) throw std::runtime_error("matmul: weight is not a matrix");
    const MatView& v = m->view;
    if (x.cols != v.K)
      throw std::runtime_error("matmul: input has " + std::to_string(x.cols) + " columns, weight rows have " +
                               std::to_string(v.K));
    if (out.cols < v.rows) throw std::runtime_error("matmul: output narrower than the weight's rows");
    const int64_t m_tok = x.rows;
    if (m_tok <= 0) return;
    if (m_tok <= mv_max_tokens(v.fmt)) {
      // fused gate/up launches and folded norms count finished rows per group of 32 (one int each, kept zero
      // between launches; a folded norm also counts the finished groups), and folded norms keep each group's sum
      // of squares
      ensure_zeroed(glu_cnt_, static_cast<size_t>(v.rows / 32 + 1) * sizeof(int), "matmul scratch");
      ensure_zeroed(chain_sync_, kChainSyncInts * sizeof(int), "matmul scratch");
      ensure(norm_ssq_, static_cast<size_t>(m_tok * (v.rows / 32 + 1)) * sizeof(float), "matmul scratch");
      if (wfmt_uses_q8(v.fmt)) {
        ensure_q8(m_tok, std::max(v.K, v.rows));
      } else {
        ensure(f32x_, static_cast<size_t>(m_tok * v.Kp) * sizeof(float), "matmul scratch");
      }
    } else {
      ensure(f16x_, static_cast<size_t>(m_tok * v.Kp) * 2, "matmul scratch");
      if (use_qgemm(v, m_tok)) {
        const int splits = qgemm_splits_for(v, m_tok);
        if (splits > 1) ensure(qgemm_part_, static_cast<size_t>(splits * m_tok * v.rows) * sizeof(float), "matmul scratch (split-K)");
      }
      if (v.fmt != WFmt::F16 && !use_qgemm(v, m_tok) && !m->f16) {
        const int64_t slice = gemm_slice_rows(v);
        ensure(f16w_, static_cast<size_t>(std::min(slice, v.rows) * v.Kp) * 2, "matmul scratch (f16 weights)");
      }
    }
    Op op;
    op.kind = OpKind::Matmul;
    op.w = w;
    op.a = x;
    op.b = out;
    log_.push_back(op);
    ensure_frag_groups();
  }

  // Matmuls of one input that run as one qgemm_frag.cu launch (batched steps): ops i .. i + k - 1, up to
  // kFragMaxSegs of one format and K, outputs apart from the input and from each other. 0 or 1: no group.
  size_t frag_group(size_t i) const {
    const Op& m0 = log_[i];
    if (!opts_.fuse || !opts_.qfrag_multi || m0.kind != OpKind::Matmul) return 0;
    const MatView& v0 = view(m0);
    const int64_t m = m0.a.rows;
    auto takes_frag = [&](const MatView& v) { return m > mv_max_tokens(v.fmt) && use_qfrag(v, m); };
    if (!takes_frag(v0) || overlaps(m0.b, m0.a)) return 0;
    size_t k = 1;
    while (k < static_cast<size_t>(kFragMaxSegs) && i + k < log_.size()) {
      const Op& o = log_[i + k];
      if (o.kind != OpKind::Matmul || !same_act(o.a, m0.a)) break;
      const MatView& v = view(o);
      if (v.fmt != v0.fmt || v.nb != v0.nb || v.K != v0.K || !takes_frag(v) || overlaps(o.b, m0.a)) break;
      bool clash = false;
      for (size_t q = 0; q < k; ++q) clash = clash || overlaps(o.b, log_[i + q].b);
      if (clash) break;
      ++k;
    }
    return k;
  }
  // The launch view of group i .. i + k - 1 (rows: the sum of the row blocks), for its split count.
  MatView frag_group_view(size_t i, size_t k) const {
    MatView ws[kFragMaxSegs];
    for (size_t j = 0; j < k; ++j) ws[j] = view(log_[i + j]);
    return frag_launch_view(ws, static_cast<int>(k));
  }
  // At record time: the split-K scratch of the group the newest matmul belongs to (groups are formed greedily
  // from the first of a run of matmuls of one input, as run_log forms them).
  void ensure_frag_groups() {
    size_t s = log_.size() - 1;
    while (s > 0 && log_[s - 1].kind == OpKind::Matmul && same_act(log_[s - 1].a, log_.back().a)) --s;
    for (size_t i = s; i < log_.size();) {
      const size_t k = std::max<size_t>(frag_group(i), 1);
      if (k > 1) {
        const MatView v = frag_group_view(i, k);
        const int64_t m = log_[i].a.rows;
        const int splits = qgemm_frag_splits(v, static_cast<int>(m), sms_, qfrag_config());
        if (splits > 1)
          ensure(qgemm_part_, static_cast<size_t>(splits * m * v.rows) * sizeof(float), "matmul scratch (split-K)");
      }
      i += k;
    }
  }
  // Batched steps: a norm, SwiGLU or decode attention whose output the next op multiplies on the f16 paths (more
  // tokens than the matvec kernels take) also writes the f16 activations that prep_act_f16 would make from it.
  size_t run_with_f16(size_t i) {
    const Op& op = log_[i];
    if (!opts_.qfrag_f16_out || i + 1 >= log_.size()) return 0;
    const Op& nx = log_[i + 1];
    const Act out = op.kind == OpKind::RmsNorm || op.kind == OpKind::Attention ? op.b : op.c;  // others write c
    const bool attn = op.kind == OpKind::Attention && op.decode;
    if ((op.kind != OpKind::RmsNorm && op.kind != OpKind::AddRmsNorm && op.kind != OpKind::Swiglu && !attn) ||
        nx.kind != OpKind::Matmul || !same_act(nx.a, out))
      return 0;
    const MatView& v = view(nx);
    if (out.rows <= mv_max_tokens(v.fmt) || v.K != out.cols || v.Kp != out.cols) return 0;
    uint16_t* xh = static_cast<uint16_t*>(f16x_.p);
    const int rows = static_cast<int>(out.rows);
    switch (op.kind) {
      case OpKind::RmsNorm:
        VIREO_CUDA_NS::rmsnorm(f(op.a), op.a.cols, cw(op.w)->vec, op.eps, rows, op.a.cols, f(op.b), op.b.cols,
                               stream_, xh);
        break;
      case OpKind::AddRmsNorm:
        VIREO_CUDA_NS::add_rmsnorm(f(op.a), op.a.cols, f(op.b), op.b.cols, cw(op.w)->vec, op.eps, rows, op.a.cols,
                                   f(op.c), op.c.cols, stream_, xh);
        wrote(op.a.data);
        break;
      case OpKind::Swiglu:
        VIREO_CUDA_NS::swiglu(f(op.a), op.a.cols, f(op.b), op.b.cols, f(op.c), op.c.cols, rows, op.c.cols, stream_,
                              xh);
        break;
      default:
        run_attention(op, nullptr, nullptr, xh);
        break;
    }
    wrote(out.data);
    f16_cache_ = {out.data, out.rows, out.cols};
    return 1;
  }

  // Batched steps: RoPE of q, RoPE of k and the cache store of k and v as one kernel (rope_store).
  size_t run_rope_store(size_t i) {
    if (!opts_.rope_store || i + 2 >= log_.size()) return 0;
    const Op &rq = log_[i], &rk = log_[i + 1], &st = log_[i + 2];
    if (rk.kind != OpKind::Rope || st.kind != OpKind::KvStore || !same_act(st.a, rk.a) || rq.a.rows != n_ ||
        rk.a.rows != n_ || st.b.rows != n_ || rq.rope.head_dim != rk.rope.head_dim ||
        rq.rope.rope_dim != rk.rope.rope_dim || rq.rope.mode != rk.rope.mode || rq.rope_table != rk.rope_table ||
        int64_t(rk.rope.n_heads) * rk.rope.head_dim != kv_.kv_dim || overlaps(rq.a, rk.a) || overlaps(rq.a, st.b) ||
        overlaps(rk.a, st.b))
      return 0;
    rope_store(f(rq.a), rq.a.cols, f(rk.a), rk.a.cols, f(st.b), st.b.cols, n_, d_pos(), d_slots(), rq.rope_table,
               rq.rope.n_heads, rk.rope.n_heads, rq.rope.head_dim, rq.rope.rope_dim, rq.rope.mode == RopeMode::Neox,
               k_cache_[st.layer], v_cache_[st.layer], kv_.type == DType::F16, kv_.n_ctx, stream_);
    wrote(rq.a.data);
    wrote(rk.a.data);
    return 3;
  }

  // Runs group i (frag_group) as one launch; returns how many ops it ran (0: none).
  size_t run_frag_group(size_t i) {
    const size_t k = frag_group(i);
    if (k < 2) return 0;
    const Op& m0 = log_[i];
    const int64_t m = m0.a.rows;
    const MatView v = frag_group_view(i, k);
    const int splits = qgemm_frag_splits(v, static_cast<int>(m), sms_, qfrag_config());
    // the scratch was sized at record time for this grouping; never overrun it
    if (splits > 1 && static_cast<size_t>(splits * m * v.rows) * sizeof(float) > qgemm_part_.bytes) return 0;
    const Act x = m0.a;
    uint16_t* xh = static_cast<uint16_t*>(f16x_.p);
    if (!f16_cache_.matches(x)) {
      prep_act_f16(f(x), x.cols, static_cast<int>(m), v.K, v.Kp, xh, stream_);
      f16_cache_ = {x.data, x.rows, x.cols};
    }
    FragOut outs[kFragMaxSegs];
    for (size_t j = 0; j < k; ++j) {
      const Op& o = log_[i + j];
      outs[j] = {view(o), f(o.b), o.b.cols};
    }
    qgemm_frag_multi(outs, static_cast<int>(k), xh, static_cast<int>(m), static_cast<float*>(qgemm_part_.p), splits,
                     qfrag_config(), stream_);
    for (size_t j = 0; j < k; ++j) wrote(log_[i + j].b.data);
    return k;
  }

  void add_bias(Act x, const Weight* b) override {
    need_step("add_bias");
    check_vec(b, x.cols, "add_bias");
    Op op;
    op.kind = OpKind::AddBias;
    op.w = b;
    op.a = x;
    log_.push_back(op);
  }

  void rope(Act x, const RopeParams& p) override {
    need_step("rope");
    if (p.rope_dim <= 0 || p.rope_dim % 2 != 0 || p.rope_dim > p.head_dim || p.n_heads * p.head_dim > x.cols)
      throw std::runtime_error("rope: bad parameters");
    if (p.freq_factors) check_vec(p.freq_factors, p.rope_dim / 2, "rope (frequency factors)");
    Op op;
    op.kind = OpKind::Rope;
    op.a = x;
    op.rope = p;
    op.rope_table = rope_table(p);
    log_.push_back(op);
  }

  void kv_store(int32_t layer, Act k, Act v) override {
    need_step("kv_store");
    if (!kv_ready_) throw std::runtime_error("kv_store: no KV cache (alloc_kv first)");
    if (layer < 0 || layer >= kv_.n_layers) throw std::runtime_error("kv_store: layer out of range");
    if (k.cols != kv_.kv_dim || v.cols != kv_.kv_dim) throw std::runtime_error("kv_store: rows are not kv_dim wide");
    Op op;
    op.kind = OpKind::KvStore;
    op.layer = layer;
    op.a = k;
    op.b = v;
    log_.push_back(op);
  }

  void attention(Act q, Act out, const AttentionParams& p) override {
    need_step("attention");
    if (!kv_ready_) throw std::runtime_error("attention: no KV cache (alloc_kv first)");
    if (p.layer < 0 || p.layer >= kv_.n_layers) throw std::runtime_error("attention: layer out of range");
    if (p.n_kv_heads <= 0 || p.n_heads % p.n_kv_heads != 0 || p.n_kv_heads * p.head_dim != kv_.kv_dim ||
        p.n_heads * p.head_dim > q.cols || p.n_heads * p.head_dim > out.cols)
      throw std::runtime_error("attention: head layout does not match the KV cache or the buffers");
    if (p.head_dim > kAttnMaxHeadDim)
      throw std::runtime_error("attention: head_dim " + std::to_string(p.head_dim) + " is above " +
                               std::to_string(kAttnMaxHeadDim));
    AttnArgs a;
    a.n = n_;
    a.n_ctx = kv_.n_ctx;
    a.n_heads = p.n_heads;
    a.n_kv_heads = p.n_kv_heads;
    Op op;  // one of three kernels: split-KV decode, tensor-core prefill, the general one
    op.kind = OpKind::Attention;
    op.a = q;
    op.b = out;
    op.attn = p;
    if (opts_.attn_decode && attn_decode_supported(kv_.type == DType::F16, p.head_dim, p.n_heads, p.n_kv_heads, n_)) {
      a.min_chunk = std::max(1, opts_.attn_min_chunk);
      attn_decode_plan(a, opts_.attn_blocks_per_sm * sms_);
      const size_t rows = static_cast<size_t>(n_) * p.n_heads * a.splits;
      ensure(attn_o_, rows * p.head_dim * sizeof(float), "attention scratch");
      ensure(attn_ml_, rows * sizeof(float2), "attention scratch");
      ensure_zeroed(attn_cnt_, static_cast<size_t>(n_) * p.n_heads * sizeof(int), "attention scratch");
      ensure_q8(n_, out.cols);
      op.splits = a.splits;
      op.chunk = a.min_chunk;
      op.decode = true;
    } else if (opts_.attn_prefill && attn_prefill_supported(kv_.type == DType::F16, p.head_dim, q.cols, out.cols, n_)) {
      op.prefill = true;
    } else {
      attn_plan(a, sms_);
      if (a.splits > 1) {
        const size_t rows = static_cast<size_t>(n_) * p.n_heads * a.splits;
        ensure(attn_o_, rows * p.head_dim * sizeof(float), "attention scratch");
        ensure(attn_ml_, rows * sizeof(float2), "attention scratch");
      }
      op.splits = a.splits;
      op.chunk = a.chunk;
    }
    log_.push_back(op);
  }

  void swiglu(Act gate, Act up, Act out) override {
    need_step("swiglu");
    if (gate.cols < out.cols || up.cols < out.cols) throw std::runtime_error("swiglu: inputs narrower than output");
    Op op;
    op.kind = OpKind::Swiglu;
    op.a = gate;
    op.b = up;
    op.c = out;
    log_.push_back(op);
  }

  void add(Act x, Act y) override {
    need_step("add");
    Op op;
    op.kind = OpKind::Add;
    op.a = x;
    op.b = y;
    log_.push_back(op);
  }

  void gather_logit_rows(Act x, Act out) override {
    need_step("gather_logit_rows");
    if (out.cols < x.cols) throw std::runtime_error("gather_logit_rows: output narrower than input");
    Op op;
    op.kind = OpKind::Gather;
    op.a = x;
    op.b = out;
    log_.push_back(op);
  }

  void kv_truncate(int32_t, int32_t) override {}  // slotted cache: later positions are overwritten before use

  // Device-to-device copies on the step stream: ordered after the last step and before the next.
  void kv_copy(int32_t src, int32_t dst, int32_t n) override {
    if (!kv_ready_ || src < 0 || src >= kv_.n_slots || dst < 0 || dst >= kv_.n_slots || n < 0 || n > kv_.n_ctx)
      throw std::runtime_error("kv_copy: slot or length outside the KV cache");
    if (src == dst || n == 0) return;
    VCUDA(cudaSetDevice(device_), "select device");
    const size_t elem = kv_.type == DType::F32 ? 4 : 2;
    const size_t slot_bytes = static_cast<size_t>(kv_.n_ctx) * kv_.kv_dim * elem;
    const size_t bytes = static_cast<size_t>(n) * kv_.kv_dim * elem;
    for (size_t l = 0; l < k_cache_.size(); ++l) {
      auto* k = static_cast<uint8_t*>(k_cache_[l]);
      auto* v = static_cast<uint8_t*>(v_cache_[l]);
      VCUDA(cudaMemcpyAsync(k + dst * slot_bytes, k + src * slot_bytes, bytes, cudaMemcpyDeviceToDevice, stream_),
            "kv_copy");
      VCUDA(cudaMemcpyAsync(v + dst * slot_bytes, v + src * slot_bytes, bytes, cudaMemcpyDeviceToDevice, stream_),
            "kv_copy");
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // CudaBackendExt
  // ---------------------------------------------------------------------------------------------------------
  void copy_to_device(void* dst, const void* src, size_t bytes) override {
    VCUDA(cudaSetDevice(device_), "select device");
    VCUDA(cudaStreamSynchronize(stream_), "copy_to_device");
    h2d(dst, src, bytes, "copy_to_device");
  }
  void copy_to_host(void* dst, const void* src, size_t bytes) override {
    VCUDA(cudaSetDevice(device_), "select device");
    VCUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_), "copy_to_host");
    VCUDA(cudaStreamSynchronize(stream_), "copy_to_host");
  }
  void fill_bytes(void* dst, int byte, size_t bytes) override {
    VCUDA(cudaSetDevice(device_), "select device");
    memset_sync(dst, byte, bytes, "fill_bytes");
  }
  void synchronize() override { VCUDA(cudaStreamSynchronize(stream_), "synchronize"); }
  GraphStats graph_stats() const override { return stats_; }
  std::string device_name() const override { return device_name_; }

 private:
  struct DevBuf {
    void* p = nullptr;
    size_t bytes = 0;
  };
  struct GraphEntry {
    cudaGraphExec_t exec = nullptr;
    std::vector<Op> ops;
    uint64_t last_use = 0;
  };
  struct RopeTable {
    int32_t rope_dim;
    float base;
    const Weight* factors;
    float* table;
  };
  struct PrepCache {
    const void* src = nullptr;
    int64_t rows = 0, cols = 0;
    bool matches(const Act& x) const { return src == x.data && rows == x.rows && cols == x.cols; }
  };

  // Copies and fills go through our stream, then wait for it: a plain cudaMemcpy runs on the legacy default
  // stream, which is not ordered with a non-blocking stream.
  void h2d(void* dst, const void* src, size_t bytes, const char* what) {
    VCUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_), what);
    VCUDA(cudaStreamSynchronize(stream_), what);
  }
  void memset_sync(void* dst, int byte, size_t bytes, const char* what) {
    VCUDA(cudaMemsetAsync(dst, byte, bytes, stream_), what);
    VCUDA(cudaStreamSynchronize(stream_), what);
  }

  void* dev_alloc(size_t bytes, const char* what) {
    void* p = nullptr;
    if (bytes == 0) bytes = 16;
    const cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      throw std::runtime_error(std::string("CUDA backend: ") + what + ": cannot allocate " +
                               std::to_string(bytes >> 20) + " MiB (" + cudaGetErrorString(e) + "; " +
                               std::to_string(free_b >> 20) + " MiB free of " + std::to_string(total_b >> 20) +
                               ", " + std::to_string(memory_ >> 20) + " MiB used by this backend)");
    }
    allocations_.push_back(p);
    memory_ += static_cast<int64_t>(bytes);
    return p;
  }
  void dev_free(void* p, size_t bytes) {
    if (!p) return;
    VCUDA(cudaFree(p), "free");
    allocations_.erase(std::find(allocations_.begin(), allocations_.end(), p));
    memory_ -= static_cast<int64_t>(bytes);
  }

  // Grows a scratch buffer (recording time: nothing runs). Graphs hold the old address, so they go.
  void ensure(DevBuf& b, size_t bytes, const char* what) {
    if (b.bytes >= bytes) return;
    VCUDA(cudaStreamSynchronize(stream_), what);
    const size_t want = std::max(bytes, b.bytes + b.bytes / 4);
    dev_free(b.p, b.bytes);
    b = {};
    b.p = dev_alloc(want, what);
    b.bytes = want;
    drop_graphs();
  }

  // Like ensure, for buffers that must start zeroed (counters of the fused kernels).
  void ensure_zeroed(DevBuf& b, size_t bytes, const char* what) {
    if (b.bytes >= bytes) return;
    ensure(b, bytes, what);
    memset_sync(b.p, 0, b.bytes, what);
  }

  // Both int8 activation buffers for m rows of up to K elements.
  void ensure_q8(int64_t m, int64_t K) {
    const int64_t k = round_up(std::max<int64_t>(K, 32), 32);
    for (int i = 0; i < 2; ++i) {
      ensure(q8_[i], static_cast<size_t>(m * k), "matmul scratch");
      ensure(q8ds_[i], static_cast<size_t>(m * (k / 32)) * sizeof(float2), "matmul scratch");
    }
  }

  void drop_graphs() {
    for (auto& [key, g] : graphs_)
      if (g.exec) cudaGraphExecDestroy(g.exec);
    graphs_.clear();
  }

  void ensure_step_capacity(int32_t n) {
    const int64_t want = std::max<int64_t>(n, max_act_rows_);
    if (want <= step_cap_) return;
    if (d_step_) {
      VCUDA(cudaStreamSynchronize(stream_), "step buffers");
      dev_free(d_step_, static_cast<size_t>(kStepArrays * step_cap_) * sizeof(int32_t));
      VCUDA(cudaFreeHost(h_step_), "step buffers");
      h_step_ = nullptr;
      d_step_ = nullptr;
    }
    step_cap_ = want;
    const size_t bytes = static_cast<size_t>(kStepArrays * step_cap_) * sizeof(int32_t);
    d_step_ = static_cast<int32_t*>(dev_alloc(bytes, "step buffers"));
    memset_sync(d_step_, 0, bytes, "step buffers");
    VCUDA(cudaMallocHost(reinterpret_cast<void**>(&h_step_), bytes), "step buffers");
    std::memset(h_step_, 0, bytes);
    drop_graphs();
  }

  void need_step(const char* op) const {
    if (!in_step_ || !batch_) throw std::runtime_error(std::string(op) + " called outside a step");
  }

  void check_vec(const Weight* w, int64_t n, const char* op) const {
    const CudaWeight* v = cw(w);
    if (!v || !v->is_vec || static_cast<int64_t>(v->host_vec.size()) < n)
      throw std::runtime_error(std::string(op) + ": vector weight missing or too short");
  }

  bool use_qfrag(const MatView& v, int64_t m) const {
    return opts_.qgemm_frag && m <= opts_.qgemm_max_tokens && qgemm_frag_supported(v, static_cast<int>(m));
  }
  int qgemm_splits_for(const MatView& v, int64_t m) const {
    return use_qfrag(v, m) ? qgemm_frag_splits(v, static_cast<int>(m), sms_, qfrag_config())
                           : qgemm_splits(v, static_cast<int>(m), sms_);
  }
  QfragConfig qfrag_config() const {
    QfragConfig c;
    c.cost_model = opts_.qfrag_split_model != 0;
    c.max_nt = opts_.qfrag_max_nt;
    c.pdl = opts_.qfrag_pdl != 0;
    return c;
  }
  bool use_qgemm(const MatView& v, int64_t m) const {
    return use_qfrag(v, m) || (m <= opts_.qgemm_max_tokens && qgemm_supported(v));
  }

  int64_t gemm_slice_rows(const MatView& v) const {
    return std::max<int64_t>(1, opts_.gemm_scratch_elems / std::max<int64_t>(v.Kp, 1));
  }

  // Inverse frequencies of one RoPE configuration, computed like the CPU backend does, uploaded once.
  const float* rope_table(const RopeParams& p) {
    for (const RopeTable& t : rope_tables_)
      if (t.rope_dim == p.rope_dim && same_bits(t.base, p.freq_base) && t.factors == p.freq_factors) return t.table;
    const int half = p.rope_dim / 2;
    std::vector<float> host(static_cast<size_t>(half));
    const float* factors = p.freq_factors ? cw(p.freq_factors)->host_vec.data() : nullptr;
    for (int i = 0; i < half; ++i) host[i] = rope_frequency(p, i, factors);
    float* d = static_cast<float*>(dev_alloc(host.size() * sizeof(float), "rope table"));
    h2d(d, host.data(), host.size() * sizeof(float), "rope table");
    rope_tables_.push_back({p.rope_dim, p.freq_base, p.freq_factors, d});
    return d;
  }

  // ---------------------------------------------------------------------------------------------------------
  // execution
  // ---------------------------------------------------------------------------------------------------------
  void run_step() {
    set_pdl_enabled(pdl_);
    if (opts_.graphs == 0 || graphs_broken_) {
      run_log();
      ++stats_.eager_steps;
      return;
    }
    const std::pair<int32_t, int32_t> key{n_, r_};
    ++clock_;
    auto it = graphs_.find(key);
    if (it != graphs_.end()) {
      if (same_log(it->second.ops, log_)) {
        it->second.last_use = clock_;
        VCUDA(cudaGraphLaunch(it->second.exec, stream_), "graph launch");
        ++stats_.replays;
        return;
      }
      cudaGraphExecDestroy(it->second.exec);
      graphs_.erase(it);
      ++stats_.recaptures;
    }
    const bool now = n_ <= opts_.graph_first_use_max_tokens || ++seen_[key] >= 2;
    if (!now) {
      run_log();
      ++stats_.eager_steps;
      return;
    }
    if (static_cast<int>(graphs_.size()) >= std::max(1, opts_.max_graphs)) {  // evict the least recently used
      auto lru = graphs_.begin();
      for (auto g = graphs_.begin(); g != graphs_.end(); ++g)
        if (g->second.last_use < lru->second.last_use) lru = g;
      cudaGraphExecDestroy(lru->second.exec);
      graphs_.erase(lru);
    }
    cudaGraph_t graph = nullptr;
    VCUDA(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed), "graph capture (begin)");
    try {
      run_log();
    } catch (...) {
      cudaStreamEndCapture(stream_, &graph);
      if (graph) cudaGraphDestroy(graph);
      cudaGetLastError();
      throw;
    }
    cudaError_t e = cudaStreamEndCapture(stream_, &graph);
    cudaGraphExec_t exec = nullptr;
    if (e == cudaSuccess) {
      e = cudaGraphInstantiate(&exec, graph, 0);
      cudaGraphDestroy(graph);
    }
    if (e != cudaSuccess) {  // capture is an optimization: report once, run eagerly from now on
      cudaGetLastError();
      std::fprintf(stderr, "vireo: CUDA graph capture failed (%s); running without graphs\n", cudaGetErrorString(e));
      graphs_broken_ = true;
      run_log();
      ++stats_.eager_steps;
      return;
    }
    GraphEntry& g = graphs_[key];
    g.exec = exec;
    g.ops = log_;
    g.last_use = clock_;
    ++stats_.captures;
    VCUDA(cudaGraphLaunch(exec, stream_), "graph launch");
  }

  void run_log() {
    q8c_[0] = q8c_[1] = {};
    f32_cache_ = {};
    f16_cache_ = {};
    size_t groups = 0;
    if (opts_.profile) prof_mark(groups);
    for (size_t i = 0; i < log_.size();) {
      skip_launch_ = opts_.skip_mask != 0 && (opts_.skip_mask & skip_kind(i)) != 0;
      size_t used = run_fused(i);
      skip_launch_ = false;
      if (used > 0) ++stats_.fused;
      if (used == 0) {
        run_op(log_[i]);
        used = 1;
      }
      if (opts_.sync_each_op) {
        const cudaError_t e = cudaStreamSynchronize(stream_);
        if (e != cudaSuccess) cuda_fail(op_name(log_[i].kind), cudaGetErrorString(e), __FILE__, __LINE__);
      }
      if (opts_.profile) {
        prof_label_.resize(std::max(prof_label_.size(), groups + 1));
        prof_label_[groups] = prof_label(i, used);
        prof_mark(++groups);
      }
      i += used;
    }
    if (opts_.profile) prof_collect(groups);
  }

  // ---- per-op profile (CudaOptions::profile): an event after every kernel group of an eager step ----
  void prof_mark(size_t k) {
    while (prof_ev_.size() <= k) {
      cudaEvent_t e = nullptr;
      VCUDA(cudaEventCreate(&e), "profile event");
      prof_ev_.push_back(e);
    }
    VCUDA(cudaEventRecord(prof_ev_[k], stream_), "profile event");
  }
  // "n=64 matmul qgemm q4_k 4096x4096", "n=1 matmul+matmul+matmul+rope+rope+kv_store mv q4_k 6144x4096", ...
  std::string prof_label(size_t i, size_t used) const {
    std::string s = "n=" + std::to_string(n_) + " ";
    for (size_t j = i; j < i + used; ++j) s += (j > i ? "+" : "") + std::string(op_name(log_[j].kind));
    const Op& op = log_[i];
    if (op.kind == OpKind::Matmul) {
      const MatView& w = view(op);
      const int64_t m = op.a.rows;
      const bool tiles = opts_.mv && mv_tiles_take(w.fmt, m, opts_.mv_tiles);
      const char* path = m <= mv_max_tokens(w.fmt) ? (!opts_.mv ? "matvec" : tiles ? "mv-tiles" : "mv")
                         : w.fmt == WFmt::F16 || cw(op.w)->f16 ? "cublas"
                         : use_qfrag(w, m)                     ? "qfrag"
                         : use_qgemm(w, m)                     ? "qgemm"
                                                               : "dequant+cublas";
      s += std::string(" ") + path + " " + wfmt_name(w.fmt) + " " + std::to_string(w.rows) + "x" + std::to_string(w.K);
    } else if (op.kind == OpKind::Attention) {
      s += op.decode ? " split-kv" : op.prefill ? " tensor-core" : " plain";
    }
    return s;
  }
  void prof_collect(size_t groups) {
    VCUDA(cudaStreamSynchronize(stream_), "profile");
    for (size_t g = 0; g < groups; ++g) {
      float ms = 0.f;
      VCUDA(cudaEventElapsedTime(&ms, prof_ev_[g], prof_ev_[g + 1]), "profile");
      ProfEntry& e = prof_[prof_label_[g]];
      ++e.calls;
      e.ms += ms;
    }
    ++prof_steps_[n_];
  }
  void prof_report() const {
    if (prof_.empty()) return;
    std::vector<std::pair<std::string, ProfEntry>> rows(prof_.begin(), prof_.end());
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
    double total = 0;
    for (const auto& r : rows) total += r.second.ms;
    std::fprintf(stderr, "vireo: CUDA profile (eager steps, an event after every kernel group; VIREO_CUDA_PROFILE=1)\n");
    for (const auto& [n, steps] : prof_steps_) std::fprintf(stderr, "  steps of %d tokens: %d\n", n, steps);
    std::fprintf(stderr, "  %10s %8s %10s %6s  %s\n", "total ms", "calls", "mean us", "share", "kernel group");
    for (const auto& [label, e] : rows)
      std::fprintf(stderr, "  %10.3f %8d %10.2f %5.1f%%  %s\n", e.ms, e.calls, 1000.0 * e.ms / e.calls,
                   100.0 * e.ms / total, label.c_str());
  }

  void wrote(const void* p) {
    for (PrepCache& c : q8c_)
      if (c.src == p) c = {};
    if (f32_cache_.src == p) f32_cache_ = {};
    if (f16_cache_.src == p) f16_cache_ = {};
  }

  // ---- int8 activations: two buffers, so that a kernel can read one and write the other ----
  int q8_find(const Act& x) const {
    for (int b = 0; b < 2; ++b)
      if (q8c_[b].matches(x)) return b;
    return -1;
  }
  // A buffer to write, never `keep` (the one the writing kernel reads); otherwise the one written longer ago.
  int q8_pick(int keep) {
    const int b = keep >= 0 ? 1 - keep : (q8_stamp_[0] <= q8_stamp_[1] ? 0 : 1);
    q8_stamp_[b] = ++q8_clock_;
    return b;
  }
  void q8_set(int b, const Act& x) { q8c_[b] = {x.data, x.rows, x.cols}; }
  int8_t* q8q(int b) { return static_cast<int8_t*>(q8_[b].p); }
  float2* q8d(int b) { return static_cast<float2*>(q8ds_[b].p); }
  ActQ8 q8_act(int b, int64_t K) {
    ActQ8 a;
    a.q = q8q(b);
    a.ds = q8d(b);
    a.q_stride = K;
    a.ds_stride = K / 32;
    return a;
  }
  // The int8 activations of x (K = x.cols), quantized now unless a buffer holds them already.
  int q8_of(const Act& x, int64_t K) {
    int b = q8_find(x);
    if (b >= 0) return b;
    b = q8_pick(-1);
    quantize_act_q8(f(x), x.cols, static_cast<int>(x.rows), K, q8q(b), q8d(b), stream_);
    q8_set(b, x);
    return b;
  }

  bool on_matvec_path(const Op& op) const {
    return op.kind == OpKind::Matmul && op.a.rows >= 1 && op.a.rows <= mv_max_tokens(view(op).fmt);
  }
  // Tokens up to which a matrix of format f takes the matvec path (above: qgemm / cuBLAS).
  int mv_max_tokens(WFmt f) const {
    const int base = std::min(opts_.matvec_max_tokens, kMatvecMaxN);
    const bool tiles = opts_.mv && opts_.mv_tiles > 0 && opts_.mv_tiles <= base + 1 && mv_tile_format(f);
    return tiles ? std::clamp(opts_.tile_max_tokens, kMatvecMaxN, kTileMaxN) : base;
  }
  static const MatView& view(const Op& op) { return cw(op.w)->view; }

  // The activations of a fused matvec launch over input x: int8 (quantized unless cached) or f32 (x itself
  // when its rows need no padding).
  void mv_inputs(MvArgs& a, const Act& x, const MatView& w) {
    if (wfmt_uses_q8(w.fmt)) {
      a.aq = q8_act(q8_of(x, w.K), w.K);
    } else if (w.Kp == w.K && x.cols == w.K) {
      a.af.x = f(x);
      a.af.stride = x.cols;
    } else {
      float* xp = static_cast<float*>(f32x_.p);
      if (!f32_cache_.matches(x)) {
        prep_act_f32(f(x), x.cols, static_cast<int>(x.rows), w.K, w.Kp, xp, stream_);
        f32_cache_ = {x.data, x.rows, x.cols};
      }
      a.af.x = xp;
      a.af.stride = w.Kp;
    }
    a.pos = d_pos();
    a.slot = d_slots();
    a.n_ctx = kv_.n_ctx;
    a.kv_dim = kv_.kv_dim;
    a.sms = sms_;
  }
  // The VIREO_CUDA_SKIP kind of the matvec-step group that starts at op i (0: none).
  int skip_kind(size_t i) const {
    if (n_ > kMatvecMaxN) return 0;
    const Op& op = log_[i];
    switch (op.kind) {
      case OpKind::RmsNorm:
      case OpKind::AddRmsNorm:
        return 1;
      case OpKind::Attention:
        return 2;
      case OpKind::Matmul: {
        const MatView& w = view(op);
        if (i + 2 < log_.size() && log_[i + 2].kind == OpKind::Swiglu) return 16;
        if (i + 1 < log_.size() && log_[i + 1].kind == OpKind::Matmul && same_act(log_[i + 1].a, op.a)) return 4;
        if (w.rows == w.K) return 8;
        if (w.rows < w.K) return 32;
        return 0;
      }
      default:
        return 0;
    }
  }
  void mv_run(const MvArgs& a, int64_t rows) {
    if (skip_launch_) return;
    mv_launch(a, static_cast<int>(rows), opts_.mv_blocks_per_sm > 0 ? opts_.mv_blocks_per_sm * sms_ : 0, opts_.mv_tiles,
              opts_.mv_ksplit, stream_);
  }
  static MvSeg plain_seg(const MatView& w, const Act& out) {
    MvSeg g;
    g.wa = g.wb = w;
    g.mode = kMvPlain;
    g.y = f(out);
    g.ldy = out.cols;
    return g;
  }

  // Runs ops i, i+1, ... as one fused kernel when they form a known pattern; returns how many ops it ran
  // (0: none, run op i alone). The patterns are those of a Llama layer: for matvec-sized steps the mv.cu
  // fusions below, for batched steps grouped qgemm_frag.cu launches and f16 side outputs.
  size_t run_fused(size_t i) {
    if (opts_.fuse && n_ > kMatvecMaxN) {
      if (log_[i].kind == OpKind::Matmul) return run_frag_group(i);
      if (log_[i].kind == OpKind::Rope) return run_rope_store(i);
      return run_with_f16(i);
    }
    if (!opts_.fuse || n_ > kMatvecMaxN) return 0;
    const Op& op = log_[i];
    const Op* nx = i + 1 < log_.size() ? &log_[i + 1] : nullptr;
    switch (op.kind) {
      case OpKind::RmsNorm:
      case OpKind::AddRmsNorm: {  // norm + the int8 activations of the matmul that reads its output
        const bool add = op.kind == OpKind::AddRmsNorm;
        const Act out = add ? op.c : op.b;
        if (!nx || !on_matvec_path(*nx) || !same_act(nx->a, out) || !wfmt_uses_q8(view(*nx).fmt) ||
            !norm_q8_supported(out.cols) || view(*nx).K != out.cols)
          return 0;
        const int b = q8_pick(-1);
        if (!skip_launch_)
          norm_q8(f(op.a), op.a.cols, add ? f(op.b) : nullptr, add ? op.b.cols : 0, cw(op.w)->vec, op.eps,
                static_cast<int>(op.a.rows), op.a.cols, f(out), out.cols, q8q(b), q8d(b), out.cols, out.cols / 32,
                stream_);
        if (add) wrote(op.a.data);
        wrote(out.data);
        q8_set(b, out);
        return 1;
      }
      case OpKind::Attention: {  // decode attention + the int8 activations of its output
        if (!op.decode || !nx || !on_matvec_path(*nx) || !same_act(nx->a, op.b) || !wfmt_uses_q8(view(*nx).fmt) ||
            op.attn.head_dim % 32 != 0 || int64_t(op.attn.n_heads) * op.attn.head_dim != op.b.cols ||
            view(*nx).K != op.b.cols)
          return 0;
        const int b = q8_pick(-1);
        run_attention(op, q8q(b), q8d(b));
        q8_set(b, op.b);
        return 1;
      }
      case OpKind::Matmul:
        if (!opts_.mv || !on_matvec_path(op)) return 0;
        return run_matvecs(i);
      default:
        return 0;
    }
  }

  // Which activations an op reads and writes (its Act arguments; caches and weights aside).
  static bool op_reads(const Op& op, const Act& x) {
    switch (op.kind) {
      case OpKind::Embed: return false;
      case OpKind::AddRmsNorm:
      case OpKind::KvStore:
      case OpKind::Swiglu:
      case OpKind::Add: return overlaps(op.a, x) || overlaps(op.b, x);
      default: return overlaps(op.a, x);
    }
  }
  static bool op_writes(const Op& op, const Act& x) {
    switch (op.kind) {
      case OpKind::RmsNorm:
      case OpKind::Matmul:
      case OpKind::Attention:
      case OpKind::Gather: return overlaps(op.b, x);
      case OpKind::AddRmsNorm: return overlaps(op.a, x) || overlaps(op.c, x);
      case OpKind::Swiglu: return overlaps(op.c, x);
      case OpKind::KvStore: return false;
      default: return overlaps(op.a, x);
    }
  }

  // The matvec launches from op i on: each pattern below (plan_*) fills the arguments of one launch; with
  // CudaOptions::mv_chain, one-token launches that read the int8 output of the one before (o + boundary, gate/up +
  // SwiGLU, down + boundary, the next q/k/v) go out as one chained launch (mv_chain_launch). Planning launches
  // nothing after the first phase: a later phase's activations are the int8 output the phase before wrote.
  size_t run_matvecs(size_t i) {
    MvArgs ph[kMvChainMax];
    int64_t rows[kMvChainMax];
    int nph = 0;
    size_t j = i;
    const bool chain = opts_.mv_chain && n_ <= kMatvecMaxN && opts_.mv_blocks_per_sm <= 0 && opts_.skip_mask == 0 && !opts_.profile;
    for (;;) {
      if (nph > 0) {  // does the group at j read the int8 output of the phase before, complete at its end?
        const MvArgs& prev = ph[nph - 1];
        if (!chain || nph == kMvChainMax || j >= log_.size() || !on_matvec_path(log_[j]) ||
            log_[j].a.rows != rows[0] || !wfmt_uses_q8(view(log_[j]).fmt) || !prev.oq)
          break;
        const int b = q8_find(log_[j].a);
        if (b < 0 || q8q(b) != prev.oq) break;
      }
      MvArgs& a = ph[nph];
      rows[nph] = log_[j].a.rows;  // every pattern's tokens: its first matmul's
      size_t k = plan_resid_norm(j, a);
      if (!k) k = plan_glu(j, a);
      if (!k) k = plan_multi(j, a);
      ++nph;
      j += k;
      if (nph >= 2 && !mv_chain_supported(ph, nph, static_cast<int>(rows[0]), opts_.mv_tiles)) {  // the last phase cannot join
        run_phases(ph, rows, nph - 1);
        run_phases(ph + nph - 1, rows + nph - 1, 1);
        return j - i;
      }
    }
    run_phases(ph, rows, nph);
    return j - i;
  }
  void run_phases(const MvArgs* ph, const int64_t* rows, int nph) {
    if (nph == 1) return mv_run(ph[0], rows[0]);
    if (skip_launch_) return;
    mv_chain_launch(ph, nph, static_cast<int>(rows[0]), opts_.mv_tiles, static_cast<int*>(chain_sync_.p), stream_);
    ++stats_.chained;
  }

  // A plain matmul y = W·a followed by the block boundary x += y, xb = rmsnorm(x), when xb is read only as int8
  // activations by the matvec launch(es) right after: one launch whose epilogue adds y into x and quantizes xb
  // (MvArgs::resid), no norm kernel. xb itself (f32) is then never written, so nothing may read it.
  size_t plan_resid_norm(size_t i, MvArgs& a) {
    if (!opts_.norm_fold || i + 2 >= log_.size()) return 0;
    const Op &m = log_[i], &nm = log_[i + 1];
    if (nm.kind != OpKind::AddRmsNorm || !same_act(nm.b, m.b)) return 0;
    const MatView& w = view(m);
    const Act x = nm.a, y = m.b, xb = nm.c;
    const int64_t n = m.a.rows;
    if (x.rows != n || y.rows != n || xb.rows != n || y.cols != w.rows || x.cols != w.rows || xb.cols != w.rows ||
        !norm_q8_supported(w.rows) || !mv_formats_supported(w.fmt, w.fmt))
      return 0;
    if (overlaps(m.a, x) || overlaps(m.a, y) || overlaps(m.a, xb) || overlaps(x, y) || overlaps(xb, x) ||
        overlaps(xb, y))
      return 0;
    if (n > kMatvecMaxN) return 0;  // the wide tiles have no residual epilogue
    // the readers of xb until it is written again: at most kMvMaxSegs int8 matvec matmuls right after the norm;
    // nothing reads y again before it is rewritten
    size_t readers = 0;
    bool xb_open = true, y_open = true;
    for (size_t j = i + 2; j < log_.size() && (xb_open || y_open); ++j) {
      const Op& o = log_[j];
      if (y_open && op_reads(o, y)) return 0;
      if (xb_open && op_reads(o, xb)) {
        if (j != i + 2 + readers || o.kind != OpKind::Matmul || !on_matvec_path(o) || !same_act(o.a, xb) ||
            !wfmt_uses_q8(view(o).fmt) || view(o).K != xb.cols || ++readers > static_cast<size_t>(kMvMaxSegs))
          return 0;
      }
      if (op_writes(o, xb)) xb_open = false;
      if (op_writes(o, y)) y_open = false;
    }
    if (readers == 0) return 0;
    a = MvArgs{};
    mv_inputs(a, m.a, w);
    a.seg[0] = plain_seg(w, y);
    a.nseg = 1;
    const int qb = q8_pick(wfmt_uses_q8(w.fmt) ? q8_find(m.a) : -1);
    a.resid = f(x);
    a.ld_resid = x.cols;
    a.norm_w = cw(nm.w)->vec;
    a.norm_eps = nm.eps;
    a.ssq = static_cast<float*>(norm_ssq_.p);
    a.oq = q8q(qb);
    a.ods = q8d(qb);
    a.oq_stride = xb.cols;
    a.ods_stride = xb.cols / 32;
    a.counters = static_cast<int*>(glu_cnt_.p);
    wrote(y.data);
    wrote(x.data);
    wrote(xb.data);
    q8_set(qb, xb);
    ++stats_.folded_norms;
    return 2;
  }

  // gate/up matmuls + SwiGLU (+ the int8 activations of the next matmul, which reads the SwiGLU output).
  size_t plan_glu(size_t i, MvArgs& a) {
    if (i + 2 >= log_.size()) return 0;
    const Op &g = log_[i], &u = log_[i + 1], &sw = log_[i + 2];
    if (!on_matvec_path(u) || sw.kind != OpKind::Swiglu || !same_act(u.a, g.a)) return 0;
    const MatView &wg = view(g), &wu = view(u);
    if (wg.fmt != wu.fmt || wg.rows != wu.rows || wg.K != wu.K || !mv_formats_supported(wg.fmt, wg.fmt)) return 0;
    if (!same_act(sw.a, g.b) || !same_act(sw.b, u.b) || sw.c.cols != wg.rows || sw.c.rows != g.a.rows ||
        g.b.cols != wg.rows || u.b.cols != wg.rows)
      return 0;
    const Act x = g.a;
    if (overlaps(g.b, x) || overlaps(u.b, x) || overlaps(sw.c, x) || overlaps(g.b, u.b) || overlaps(u.b, sw.c) ||
        (overlaps(g.b, sw.c) && g.b.data != sw.c.data))
      return 0;
    a = MvArgs{};
    mv_inputs(a, x, wg);
    MvSeg sg;
    sg.wa = wg;
    sg.wb = wu;
    sg.mode = kMvGlu;
    sg.y = g.b.data == sw.c.data ? nullptr : f(g.b);  // SwiGLU in place overwrites the gate output anyway
    sg.ldy = g.b.cols;
    sg.y2 = f(u.b);
    sg.ldy2 = u.b.cols;
    sg.h = f(sw.c);
    sg.ldh = sw.c.cols;
    a.seg[0] = sg;
    a.nseg = 1;
    int qb = -1;
    const Op* nx = i + 3 < log_.size() ? &log_[i + 3] : nullptr;
    if (wfmt_uses_q8(wg.fmt) && nx && on_matvec_path(*nx) && same_act(nx->a, sw.c) && wfmt_uses_q8(view(*nx).fmt) &&
        view(*nx).K == sw.c.cols && wg.rows % 32 == 0) {
      qb = q8_pick(q8_find(x));
      a.oq = q8q(qb);
      a.ods = q8d(qb);
      a.oq_stride = sw.c.cols;
      a.ods_stride = sw.c.cols / 32;
      a.counters = static_cast<int*>(glu_cnt_.p);
    }
    wrote(g.b.data);
    wrote(u.b.data);
    wrote(sw.c.data);
    if (qb >= 0) q8_set(qb, sw.c);
    return 3;
  }

  // Up to three matmuls of one input in one launch; q/k/v followed by RoPE of q and k and the KV store take
  // those in too.
  size_t plan_multi(size_t i, MvArgs& a) {
    const Op& m0 = log_[i];
    const Act x = m0.a;
    size_t k = 1;
    while (k < static_cast<size_t>(kMvMaxSegs) && i + k < log_.size() && on_matvec_path(log_[i + k]) &&
           same_act(log_[i + k].a, x))
      ++k;
    // formats: one launch holds one format or a supported pair, and one kind of activations
    auto fits = [&](size_t cnt) {
      WFmt f0 = view(m0).fmt, f1 = f0;
      for (size_t j = 1; j < cnt; ++j) {
        const WFmt fj = view(log_[i + j]).fmt;
        if (fj == f0 || fj == f1) continue;
        if (f1 != f0) return false;
        f1 = fj;
      }
      if (!mv_formats_supported(f0, f1) || wfmt_uses_q8(f0) != wfmt_uses_q8(f1)) return false;
      for (size_t j = 0; j < cnt; ++j) {
        const Op& o = log_[i + j];
        if (view(o).K != view(m0).K || overlaps(o.b, x)) return false;
        for (size_t q = 0; q < j; ++q)
          if (overlaps(o.b, log_[i + q].b)) return false;
      }
      return true;
    };
    while (k > 1 && !fits(k)) --k;
    a = MvArgs{};
    mv_inputs(a, x, view(m0));
    for (size_t j = 0; j < k; ++j) a.seg[j] = plain_seg(view(log_[i + j]), log_[i + j].b);
    a.nseg = static_cast<int>(k);
    size_t used = k;
    if (k == 3 && i + 5 < log_.size() && x.rows == n_) {  // q, k, v, rope(q), rope(k), kv_store(k, v)
      const Op &rq = log_[i + 3], &rk = log_[i + 4], &st = log_[i + 5];
      const Op &oq = log_[i], &ok = log_[i + 1], &ov = log_[i + 2];
      auto rope_fits = [&](const Op& r, const Op& m) {
        return r.kind == OpKind::Rope && same_act(r.a, m.b) &&
               int64_t(r.rope.n_heads) * r.rope.head_dim == view(m).rows && r.rope.head_dim % 2 == 0;
      };
      if (rope_fits(rq, oq) && rope_fits(rk, ok) && st.kind == OpKind::KvStore && same_act(st.a, ok.b) &&
          same_act(st.b, ov.b) && view(ok).rows == kv_.kv_dim && view(ov).rows == kv_.kv_dim) {
        for (int j = 0; j < 2; ++j) {
          const Op& r = j == 0 ? rq : rk;
          MvSeg& g = a.seg[j];
          g.mode = r.rope.mode == RopeMode::Neox ? kMvRopeNeox : kMvRopeNormal;
          g.inv_freq = r.rope_table;
          g.head_dim = r.rope.head_dim;
          g.rope_dim = r.rope.rope_dim;
        }
        a.seg[1].cache = k_cache_[st.layer];
        a.seg[2].cache = v_cache_[st.layer];
        a.seg[1].cache_f16 = a.seg[2].cache_f16 = kv_.type == DType::F16 ? 1 : 0;
        used = 6;
      }
    }
    for (size_t j = 0; j < k; ++j) wrote(log_[i + j].b.data);
    return used;
  }

  void run_attention(const Op& op, int8_t* oq, float2* ods, uint16_t* oh = nullptr) {
    if (skip_launch_) return;
    AttnArgs a;
    a.q = f(op.a);
    a.ldq = op.a.cols;
    a.out = f(op.b);
    a.ldo = op.b.cols;
    a.k_cache = k_cache_[op.attn.layer];
    a.v_cache = v_cache_[op.attn.layer];
    a.f16 = kv_.type == DType::F16;
    a.pos = d_pos();
    a.slot = d_slots();
    a.n = n_;
    a.n_ctx = kv_.n_ctx;
    a.kv_dim = kv_.kv_dim;
    a.head_dim = op.attn.head_dim;
    a.n_heads = op.attn.n_heads;
    a.n_kv_heads = op.attn.n_kv_heads;
    a.scale = op.attn.scale;
    a.splits = op.splits;
    a.chunk = op.chunk;
    a.part_o = static_cast<float*>(attn_o_.p);
    a.part_ml = static_cast<float2*>(attn_ml_.p);
    if (op.decode) {
      a.min_chunk = op.chunk;
      a.counters = static_cast<int*>(attn_cnt_.p);
      a.safe = d_safe();
      a.oq = oq;
      a.ods = ods;
      a.oq_stride = op.b.cols;
      a.ods_stride = op.b.cols / 32;
      a.oh = oh;
      attention_decode(a, stream_);
    } else if (op.prefill) {
      attention_prefill(a, stream_);
    } else {
      VIREO_CUDA_NS::attention(a, stream_);
    }
    wrote(op.b.data);
  }

  // The step values in device memory (begin_step writes them; a decode chain advances tokens, positions, safe).
  int32_t* d_tokens() const { return d_step_; }
  int32_t* d_pos() const { return d_step_ + step_cap_; }
  const int32_t* d_slots() const { return d_step_ + 2 * step_cap_; }
  const int32_t* d_rows() const { return d_step_ + 3 * step_cap_; }
  int32_t* d_safe() const { return d_step_ + 4 * step_cap_; }

  void run_op(const Op& op) {
    switch (op.kind) {
      case OpKind::Embed:
        embed_rows(cw(op.w)->view, d_tokens(), n_, f(op.a), op.a.cols, stream_);
        wrote(op.a.data);
        break;
      case OpKind::RmsNorm:
        VIREO_CUDA_NS::rmsnorm(f(op.a), op.a.cols, cw(op.w)->vec, op.eps, static_cast<int>(op.a.rows), op.a.cols,
                               f(op.b), op.b.cols, stream_);
        wrote(op.b.data);
        break;
      case OpKind::AddRmsNorm:
        VIREO_CUDA_NS::add_rmsnorm(f(op.a), op.a.cols, f(op.b), op.b.cols, cw(op.w)->vec, op.eps,
                                   static_cast<int>(op.a.rows), op.a.cols, f(op.c), op.c.cols, stream_);
        wrote(op.a.data);
        wrote(op.c.data);
        break;
      case OpKind::Matmul:
        run_matmul(cw(op.w)->view, op.a, op.b, cw(op.w)->f16);
        wrote(op.b.data);
        break;
      case OpKind::AddBias:
        VIREO_CUDA_NS::add_bias(f(op.a), op.a.cols, cw(op.w)->vec, static_cast<int>(op.a.rows), op.a.cols, stream_);
        wrote(op.a.data);
        break;
      case OpKind::Rope:
        VIREO_CUDA_NS::rope(f(op.a), op.a.cols, n_, d_pos(), op.rope_table, op.rope.n_heads, op.rope.head_dim,
                            op.rope.rope_dim, op.rope.mode == RopeMode::Neox, stream_);
        wrote(op.a.data);
        break;
      case OpKind::KvStore:
        VIREO_CUDA_NS::kv_store(f(op.a), op.a.cols, f(op.b), op.b.cols, n_, d_pos(), d_slots(), k_cache_[op.layer],
                                v_cache_[op.layer], kv_.type == DType::F16, kv_.n_ctx, kv_.kv_dim, stream_);
        break;
      case OpKind::Attention:
        run_attention(op, nullptr, nullptr);
        break;
      case OpKind::Swiglu:
        VIREO_CUDA_NS::swiglu(f(op.a), op.a.cols, f(op.b), op.b.cols, f(op.c), op.c.cols, static_cast<int>(op.c.rows),
                              op.c.cols, stream_);
        wrote(op.c.data);
        break;
      case OpKind::Add:
        add_inplace(f(op.a), op.a.cols, f(op.b), op.b.cols, static_cast<int>(op.a.rows), op.a.cols, stream_);
        wrote(op.a.data);
        break;
      case OpKind::Gather:
        gather_rows(f(op.a), op.a.cols, d_rows(), r_, op.a.cols, f(op.b), op.b.cols, stream_);
        wrote(op.b.data);
        break;
    }
  }

  void run_matmul(const MatView& w, const Act& x, const Act& out, const uint16_t* w_f16 = nullptr) {
    const int m = static_cast<int>(x.rows);
    if (m <= 0) return;
    if (m <= mv_max_tokens(w.fmt)) {
      if (opts_.mv) {
        MvArgs a;
        mv_inputs(a, x, w);
        a.seg[0] = plain_seg(w, out);
        a.nseg = 1;
        mv_run(a, m);
        return;
      }
      if (wfmt_uses_q8(w.fmt)) {
        const ActQ8 a = q8_act(q8_of(x, w.K), w.K);
        if (w.fmt == WFmt::Q8_0 || w.fmt == WFmt::Q4_0)
          matvec_q32(w, a, m, f(out), out.cols, stream_);
        else
          matvec_kquant(w, a, m, f(out), out.cols, stream_);
      } else {
        float* xp = static_cast<float*>(f32x_.p);
        if (!f32_cache_.matches(x)) {
          prep_act_f32(f(x), x.cols, m, w.K, w.Kp, xp, stream_);
          f32_cache_ = {x.data, x.rows, x.cols};
        }
        ActF32 a;
        a.x = xp;
        a.stride = w.Kp;
        matvec_float(w, a, m, f(out), out.cols, stream_);
      }
      return;
    }
    uint16_t* xh = static_cast<uint16_t*>(f16x_.p);
    if (!f16_cache_.matches(x)) {
      prep_act_f16(f(x), x.cols, m, w.K, w.Kp, xh, stream_);
      f16_cache_ = {x.data, x.rows, x.cols};
    }
    if (w.fmt == WFmt::F16 || (w_f16 && !use_qgemm(w, m))) {
      gemm_f16(cublas_, w_f16 ? w_f16 : reinterpret_cast<const uint16_t*>(w.q), w.rows, xh, m, w.Kp, f(out), out.cols);
      return;
    }
    if (use_qfrag(w, m)) {
      qgemm_frag(w, xh, static_cast<int>(m), f(out), out.cols, static_cast<float*>(qgemm_part_.p),
                 qgemm_splits_for(w, m), qfrag_config(), stream_);
      return;
    }
    if (use_qgemm(w, m)) {
      qgemm_f16(w, xh, static_cast<int>(m), f(out), out.cols, static_cast<float*>(qgemm_part_.p),
                qgemm_splits_for(w, m), stream_);
      return;
    }
    const int64_t slice = gemm_slice_rows(w);
    uint16_t* wh = static_cast<uint16_t*>(f16w_.p);
    for (int64_t r0 = 0; r0 < w.rows; r0 += slice) {
      const int64_t rc = std::min(slice, w.rows - r0);
      dequant_f16(w, r0, rc, wh, stream_);
      gemm_f16(cublas_, wh, rc, xh, m, w.Kp, f(out) + r0, out.cols);
    }
  }

  int device_ = 0;
  CudaOptions opts_;
  std::string device_name_;
  int sms_ = 1;
  bool pdl_ = false;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  void* cublas_ws_ = nullptr;
  size_t cublas_ws_bytes_ = 0;

  std::deque<std::unique_ptr<CudaWeight>> weights_;
  std::vector<void*> allocations_;
  int64_t memory_ = 0;
  int64_t max_act_rows_ = 0;

  KvCacheConfig kv_;
  bool kv_ready_ = false;
  std::vector<void*> k_cache_, v_cache_;

  // step values: [tokens | positions | slots | logit rows], step_cap_ each
  int64_t step_cap_ = 0;
  int32_t* d_step_ = nullptr;
  int32_t* h_step_ = nullptr;
  float* h_logits_ = nullptr;
  size_t h_logits_bytes_ = 0;

  const Batch* batch_ = nullptr;
  int32_t n_ = 0, r_ = 0;
  bool in_step_ = false;
  std::vector<Op> log_;

  DevBuf q8_[2], q8ds_[2], f32x_, f16x_, f16w_, qgemm_part_, d_ids_, d_argmax_part_, d_cand_, attn_o_, attn_ml_, glu_cnt_, attn_cnt_, norm_ssq_, chain_sync_;
  PrepCache q8c_[2], f32_cache_, f16_cache_;
  uint64_t q8_stamp_[2] = {0, 0}, q8_clock_ = 0;
  std::vector<int32_t> slot_min_;
  std::vector<RopeTable> rope_tables_;

  std::map<std::pair<int32_t, int32_t>, GraphEntry> graphs_;
  std::map<std::pair<int32_t, int32_t>, int> seen_;
  uint64_t clock_ = 0;
  bool graphs_broken_ = false;
  bool skip_launch_ = false;  // CudaOptions::skip_mask: the current group is not launched
  GraphStats stats_;

  struct ProfEntry {
    int calls = 0;
    double ms = 0;
  };
  std::vector<cudaEvent_t> prof_ev_;
  std::vector<cudaEvent_t> chain_ev_;  // a decode chain's runs in flight (end_step_chain with progress)
  static constexpr int32_t kChainAhead = 2;
  std::vector<std::string> prof_label_;
  std::map<std::string, ProfEntry> prof_;
  std::map<int32_t, int> prof_steps_;
};

}  // namespace

#if defined(VIREO_CUDA_EMU)
std::unique_ptr<Backend> make_backend(const CudaOptions& opts) { return std::make_unique<CudaBackend>(0, opts); }
#endif

}  // namespace vireo::VIREO_CUDA_NS

#if !defined(VIREO_CUDA_EMU)
namespace vireo {

CudaOptions CudaOptions::from_env() {
  CudaOptions o;
  if (const char* g = std::getenv("VIREO_CUDA_GRAPHS")) o.graphs = std::atoi(g) != 0 ? 1 : 0;
  if (const char* s = std::getenv("VIREO_CUDA_SYNC")) o.sync_each_op = std::atoi(s) != 0;
  if (const char* p = std::getenv("VIREO_CUDA_PROFILE")) o.profile = std::atoi(p) != 0;
  auto env_int = [](const char* name, int* v) {
    if (const char* e = std::getenv(name)) *v = std::atoi(e);
  };
  env_int("VIREO_CUDA_FUSE", &o.fuse);
  env_int("VIREO_CUDA_PDL", &o.pdl);
  env_int("VIREO_CUDA_MV", &o.mv);
  env_int("VIREO_CUDA_ATTN", &o.attn_decode);
  env_int("VIREO_CUDA_FA", &o.attn_prefill);
  env_int("VIREO_CUDA_MV_BPS", &o.mv_blocks_per_sm);
  env_int("VIREO_CUDA_SKIP", &o.skip_mask);
  env_int("VIREO_CUDA_NORM_FOLD", &o.norm_fold);
  env_int("VIREO_CUDA_CHAIN", &o.mv_chain);
  env_int("VIREO_CUDA_MV_KSPLIT", &o.mv_ksplit);
  env_int("VIREO_CUDA_MV_TILES", &o.mv_tiles);
  env_int("VIREO_CUDA_QGEMM_MAX", &o.qgemm_max_tokens);
  env_int("VIREO_CUDA_QFRAG", &o.qgemm_frag);
  env_int("VIREO_CUDA_QFRAG_MODEL", &o.qfrag_split_model);
  env_int("VIREO_CUDA_QFRAG_NT", &o.qfrag_max_nt);
  env_int("VIREO_CUDA_QFRAG_PDL", &o.qfrag_pdl);
  env_int("VIREO_CUDA_QFRAG_MULTI", &o.qfrag_multi);
  env_int("VIREO_CUDA_F16_OUT", &o.qfrag_f16_out);
  env_int("VIREO_CUDA_ROPE_STORE", &o.rope_store);
  env_int("VIREO_CUDA_MATVEC_MAX", &o.matvec_max_tokens);
  env_int("VIREO_CUDA_TILE_MAX", &o.tile_max_tokens);
  env_int("VIREO_CUDA_F16_WEIGHTS", &o.f16_weights);
  env_int("VIREO_CUDA_ATTN_CHUNK", &o.attn_min_chunk);
  env_int("VIREO_CUDA_ATTN_BPS", &o.attn_blocks_per_sm);
  env_int("VIREO_CUDA_SAMPLE", &o.device_sampling);
  if (const char* e = std::getenv("VIREO_CUDA_GEMM_SLICE_MI")) o.gemm_scratch_elems = int64_t(std::max(1, std::atoi(e))) << 20;
  return o;
}

double cuda_read_bandwidth(int device_index, double bytes) {
  if (cudaSetDevice(device_index) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  try {
    return cuda::read_bandwidth(bytes);
  } catch (const std::exception&) {
    cudaGetLastError();
    return 0;
  }
}

bool cuda_available(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    if (why) *why = std::string("no usable CUDA device: ") + cudaGetErrorString(e);
    return false;
  }
  if (n <= 0) {
    if (why) *why = "no CUDA device found";
    return false;
  }
  return true;
}

std::unique_ptr<Backend> make_cuda_backend(int device_index) {
  return make_cuda_backend(device_index, CudaOptions::from_env());
}

std::unique_ptr<Backend> make_cuda_backend(int device_index, const CudaOptions& opts) {
  return std::make_unique<cuda::CudaBackend>(device_index, opts);
}

}  // namespace vireo
#endif
