// The seam between model code and compute backends.
//
// A model's forward pass (src/model/<arch>.cpp) is written once, as a sequence of calls on a Backend. The
// backend decides what a call means: the CPU backend computes at once; a GPU backend records a kernel launch,
// so a whole step can be captured once (CUDA graph, one WebGPU command buffer) and replayed. Therefore:
//  - every buffer (weights, activations, KV cache) is created at load/plan time; ops take handles, not data;
//  - the values of a step (token ids, positions, sequence slots) reach the backend through begin_step() and
//    are read by the kernels from backend memory, never baked into a recorded op; only the token count is
//    part of the op shapes;
//  - only what the host needs back (logits of the tokens that asked for them) is read after the step.
#pragma once
#include <cmath>
#include <cstdint>
#include <functional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace vireo {

// An activation buffer: `rows` tokens of `cols` f32 values, laid out row-major in backend memory.
// Created once at plan time for the largest step; ops see `rows` = tokens in the current step.
struct Act {
  void* data = nullptr;
  int64_t cols = 0;
  int64_t rows = 0;
  Act with_rows(int64_t r) const { return {data, cols, r}; }
};

// A weight tensor in the backend's preferred layout (opaque; owned by the backend).
struct Weight {
  virtual ~Weight() = default;
  DType type;
  std::vector<int64_t> shape;  // GGUF order: shape[0] is the row length
};

// The tokens of one forward step. Tokens of several sequences may share a step; each sequence owns a KV slot.
// Reused across steps: clear() keeps the capacity, so steps allocate nothing.
struct Batch {
  std::vector<int32_t> tokens;
  std::vector<int32_t> positions;  // position of each token in its sequence
  std::vector<int32_t> slots;      // KV-cache slot (sequence) of each token
  std::vector<int32_t> logit_rows; // indices of the tokens whose logits are wanted, ascending
  int32_t size() const { return static_cast<int32_t>(tokens.size()); }
  void clear() { tokens.clear(); positions.clear(); slots.clear(); logit_rows.clear(); }
  void add(int32_t tok, int32_t pos, int32_t slot, bool want_logits) {
    if (want_logits) logit_rows.push_back(size());
    tokens.push_back(tok);
    positions.push_back(pos);
    slots.push_back(slot);
  }
};

struct KvCacheConfig {
  int32_t n_layers = 0;
  int32_t n_slots = 1;    // sequences that can be live at once
  int32_t n_ctx = 0;      // positions per slot
  int32_t kv_dim = 0;     // n_kv_heads * head_dim
  DType type = DType::F16;
};

enum class RopeMode { Normal, Neox };  // rotate adjacent pairs (2i, 2i+1) vs halves (i, i + d/2)

struct RopeParams {
  int32_t n_heads = 0, head_dim = 0, rope_dim = 0;
  float freq_base = 10000.f;
  RopeMode mode = RopeMode::Normal;
  const Weight* freq_factors = nullptr;  // Llama-3 style per-frequency divisors (rope_freqs.weight), or null
};

// Rotation frequency i (< rope_dim/2) of RoPE: base^(-2i/rope_dim), divided by the Llama-3 factor when given.
// Every backend computes it this way (GPU backends once on the host), so angles agree bit for bit.
inline float rope_frequency(const RopeParams& p, int i, const float* factors) {
  float freq = std::pow(p.freq_base, -2.0f * static_cast<float>(i) / static_cast<float>(p.rope_dim));
  return factors ? freq / factors[i] : freq;
}

struct AttentionParams {
  int32_t layer = 0;
  int32_t n_heads = 0, n_kv_heads = 0, head_dim = 0;
  float scale = 1.f;  // usually 1/sqrt(head_dim)
};

// One logits row's sampling, for a backend that draws tokens on the device (Backend::end_step_sample); made by
// Sampler::device_row(). The 32-byte layout is what the GPU kernels read.
struct DeviceSampleRow {
  float temperature = 0;  // <= 0: the argmax
  float top_p = 1, min_p = 0;
  float margin = 0;       // candidates are the tokens within `margin` of the row's largest logit
  int32_t top_k = 0;      // <= 0: off
  float uniform = 0;      // the draw, in [0, 1)
  int32_t pad[2] = {0, 0};
};
static_assert(sizeof(DeviceSampleRow) == 32);

// What Backend::end_step_chain asks of the step (throws otherwise): steps >= 1, every token a logit row of its own
// slot, positions + steps - 1 inside n_ctx (0: unchecked), ids that fit the embedding table (vocab <= embed_rows).
inline void check_decode_chain(const Batch& b, int32_t steps, int32_t n_ctx, int64_t vocab, int64_t embed_rows) {
  const int32_t n = b.size();
  if (steps < 1) throw std::runtime_error("decode chain: no steps");
  if (b.logit_rows.size() != static_cast<size_t>(n))
    throw std::runtime_error("decode chain: every token of the step must be a logit row");
  for (int32_t i = 0; i < n; ++i) {
    if (b.logit_rows[i] != i) throw std::runtime_error("decode chain: every token of the step must be a logit row");
    if (n_ctx > 0 && b.positions[i] + steps > n_ctx) throw std::runtime_error("decode chain: past the context");
    for (int32_t j = 0; j < i; ++j)
      if (b.slots[j] == b.slots[i]) throw std::runtime_error("decode chain: two tokens of one slot");
  }
  if (vocab > embed_rows) throw std::runtime_error("decode chain: more logits than embedding rows");
}

// Work a backend has issued since load, for reports (vireo bench): forward steps, queue submits and kernel
// dispatches. Backends that compute on the host report zeros.
struct BackendCounters {
  int64_t steps = 0, submits = 0, dispatches = 0;
  double encode_seconds = 0;  // host time recording and submitting steps
  double wait_seconds = 0;    // host time waiting for the device's results
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  // name() and, where there is one, the device it runs on (adapter, GPU model).
  virtual std::string description() const { return name(); }
  // True when upload_weight copies the bytes to the device (they may be freed after the call); false when the
  // backend keeps pointing at them (the CPU reads the memory-mapped file).
  virtual bool copies_weights() const { return false; }
  virtual BackendCounters counters() const { return {}; }

  // ---- load / plan time ----
  // `bytes` is the tensor in GGUF layout (usually memory-mapped); the backend copies or repacks it.
  virtual const Weight* upload_weight(const std::string& name, DType type, const std::vector<int64_t>& shape,
                                      std::span<const uint8_t> bytes) = 0;
  virtual Act alloc_act(int64_t max_rows, int64_t cols) = 0;
  virtual void alloc_kv(const KvCacheConfig& cfg) = 0;
  // Device memory used so far (weights + activations + KV), for reports.
  virtual int64_t memory_bytes() const = 0;

  // ---- one step ----
  virtual void begin_step(const Batch& batch) = 0;
  // Finishes the step and copies the logits of batch.logit_rows (n_logit_rows x n_vocab f32) to the host.
  virtual void end_step(Act logits, std::span<float> host_logits) = 0;
  // Finishes the step and copies only, for each of batch.logit_rows, the id of its largest logit (ties: the
  // lowest id; NaN never wins: the host's argmax()) - greedy decoding without reading the logits back.
  virtual void end_step_argmax(Act logits, std::span<int32_t> host_ids) = 0;
  // Finishes the step and copies, for each logit row i, the tokens whose logit is at least (row max -
  // margins[i]), ids ascending: counts[i] of them into values/ids[i * cap ...]. A row with more than `cap` such
  // tokens (or none) gets counts[i] = -1; read it with read_logit_rows. Sampling needs only these (Sampler::
  // sample_candidates), so a step reads back kilobytes instead of rows x n_vocab floats.
  virtual void end_step_candidates(Act logits, std::span<const float> margins, int32_t cap,
                                   std::span<float> values, std::span<int32_t> ids, std::span<int32_t> counts) = 0;
  // True when end_step_sample draws tokens on the device.
  virtual bool samples_on_device() const { return false; }
  // Finishes the step and draws each logit row's token on the device as Sampler::sample_candidates() would
  // (top-k, softmax at the temperature, min-p, top-p, the draw at rows[i].uniform; argmax for temperature <= 0),
  // reading back one id per row. A row with too many candidates for the device (a flat distribution that
  // top-k does not cut) gets ids[i] = -1: read it with read_logit_rows and sample it on the host.
  virtual void end_step_sample(Act, std::span<const DeviceSampleRow>, std::span<int32_t>) {
    throw std::logic_error(name() + " does not sample on the device");
  }
  // Chained decode: true when end_step_chain can run several decode steps back to back on the device.
  virtual bool chains_steps() const { return false; }
  // Called by end_step_chain on the calling thread once per run, in order, as the run's ids arrive: `done` runs'
  // ids are in ids[0 .. done * r). Returning false asks for no further runs (a row stopped, someone waits): the
  // chain ends after the runs already issued, which still report. Backends that read all ids back at once call it
  // for every run at the end.
  using ChainProgress = std::function<bool(int32_t done)>;
  // Finishes the step and runs it `steps` times back to back on the device, with no host round trip between: after
  // each run, every row's chosen id becomes that row's token of the next run, one position further. The step must
  // be a decode step: every token a logit row, one token per slot, positions + steps - 1 inside the context. A row
  // is chosen by argmax when `rows` is empty, else drawn as end_step_sample draws it with rows[s * r + i] in run s.
  // ids[s * r + i] gets run s's id of row i (-1: too many candidates to draw on the device; the runs after it
  // fed that row token 0 and are worthless to it). Keys/values written past what the caller keeps are overwritten
  // before they are read again, as after any step. Returns the runs done: `steps`, or fewer when `progress` asked
  // to stop.
  virtual int32_t end_step_chain(Act, int32_t, std::span<const DeviceSampleRow>, std::span<int32_t>,
                                 const ChainProgress& = nullptr) {
    throw std::logic_error(name() + " does not chain decode steps");
  }
  // After end_step_candidates or end_step_sample: copies logit rows `rows` (indices into the step's logit rows) of the last step.
  virtual void read_logit_rows(Act logits, std::span<const int32_t> rows, std::span<float> host) = 0;

  // ---- ops (the current step's token count is taken from begin_step) ----
  virtual void embed(const Weight* table, Act out) = 0;                         // out[t] = table[token[t]]
  virtual void rmsnorm(Act x, const Weight* w, float eps, Act out) = 0;        // out = x / rms(x) * w
  virtual void add_rmsnorm(Act x, Act y, const Weight* w, float eps, Act out) = 0;  // x += y; out = rmsnorm(x)
  virtual void matmul(const Weight* w, Act x, Act out) = 0;                    // out = x · wᵀ
  // t.out = x · t.wᵀ for every target: products that share their input (q/k/v, gate/up). A backend may run them as
  // one pass over x (the CPU backend: one parallel region); by default they run one by one.
  struct MatmulTarget {
    const Weight* w;
    Act out;
  };
  virtual void matmuls(Act x, std::span<const MatmulTarget> targets) {
    for (const MatmulTarget& t : targets) matmul(t.w, x, t.out);
  }
  virtual void add_bias(Act x, const Weight* b) = 0;                            // x[t] += b
  virtual void rope(Act x, const RopeParams& p) = 0;                            // in place, at each token's position
  virtual void kv_store(int32_t layer, Act k, Act v) = 0;                      // at each token's slot/position
  virtual void attention(Act q, Act out, const AttentionParams& p) = 0;        // causal over the token's slot
  virtual void swiglu(Act gate, Act up, Act out) = 0;                          // out = silu(gate) * up
  virtual void add(Act x, Act y) = 0;                                          // x += y
  virtual void gather_logit_rows(Act x, Act out) = 0;                          // out[i] = x[logit_rows[i]]

  // ---- KV-cache bookkeeping ----
  // Forget positions >= from in a slot (a new prompt reusing a prefix, /reset, a finished request).
  virtual void kv_truncate(int32_t slot, int32_t from) = 0;
  // Copy positions [0, n) of every layer's keys and values from one slot to another (a prompt prefix that another
  // sequence already computed: prefix caching across users). Ordered after the previous step, before the next.
  virtual void kv_copy(int32_t src_slot, int32_t dst_slot, int32_t n) = 0;
};

}  // namespace vireo
