// Host entry points of the kernels (one family per .cu file). Every function enqueues work on `s` and checks the
// launch; shapes are the op's shapes (row-major activations, `ld` = elements between rows). Values of a step
// (tokens, positions, slots, logit rows) are passed as device pointers, so a launch can be captured in a graph
// and replayed with new values.
#pragma once
#include <cstdint>

#include "backend/cuda/formats.cuh"

namespace vireo {
struct DeviceSampleRow;  // runtime/backend.h: one row's sampling settings and uniform
}

namespace vireo::VIREO_CUDA_NS {

// ---- matvec_*.cu: y[t][row] = dot(W[row], x[t]) for t < n (n <= kMatvecMaxN) ----
constexpr int kMatvecMaxN = 8;
void matvec_kquant(const MatView& w, const ActQ8& a, int n, float* y, int64_t ldy, cudaStream_t s);  // Q4_K/Q5_K/Q6_K
void matvec_q32(const MatView& w, const ActQ8& a, int n, float* y, int64_t ldy, cudaStream_t s);     // Q8_0/Q4_0
void matvec_float(const MatView& w, const ActF32& a, int n, float* y, int64_t ldy, cudaStream_t s);  // F32/F16/BF16
inline bool wfmt_uses_q8(WFmt f) { return !wfmt_is_float(f); }

// ---- sample.cu: out[r] = argmax of row r (ties: lowest id; NaN never wins), through argmax_slices(cols) partial
// results per row in `part` ----
struct ArgmaxPart {
  float v;
  int i;
};
int argmax_slices(int64_t cols);
void argmax_rows(const float* x, int64_t ldx, int rows, int64_t cols, ArgmaxPart* part, int32_t* out,
                 cudaStream_t s);
// Per row: the tokens with logit >= max - margins[row], ids ascending, into vals/ids[row * cap ...];
// counts[row] = their number, or -1 when more than cap or none.
void logit_candidates(const float* x, int64_t ldx, int rows, int64_t cols, const float* margins, int cap,
                      float* vals, int32_t* ids, int32_t* counts, cudaStream_t s);

// out[r] = the token drawn from row r as Sampler::sample_candidates draws it at rows[r].uniform (argmax for
// temperature <= 0), or -1 when the row has more than 1024 candidates and no top-k of at most 1024 cuts them.
void sample_rows(const float* x, int64_t ldx, int rows, int64_t cols, const DeviceSampleRow* params, int32_t* out,
                 cudaStream_t s);

// Chained decode steps: the step values of a decode step of n tokens become the next one's: tokens[i] =
// max(ids[i], 0), positions[i] and safe[i] (the smallest position the step writes in the token's slot) + 1.
void chain_next_step(int32_t* tokens, int32_t* positions, int32_t* safe, const int32_t* ids, int n, cudaStream_t s);

// ---- qgemm.cu: the same for a few dozen tokens: weights dequantized tile by tile to f16 in shared memory and
// multiplied on tensor cores; x is f16 with rows of w.Kp (prep_act_f16).
// K is split over `splits` blocks (qgemm_splits) whose partial sums go to `part` (splits * m * rows floats) and
// are then added in a fixed order.
bool qgemm_supported(const MatView& w);
int qgemm_splits(const MatView& w, int m, int sms);
void qgemm_f16(const MatView& w, const uint16_t* x, int m, float* y, int64_t ldy, float* part, int splits,
               cudaStream_t s);
// y[t][r] = sum over z < splits of part[z][t][r] (part rows are `rows` long), in that order.
void qgemm_reduce(const float* part, int splits, int m, int64_t rows, float* y, int64_t ldy, cudaStream_t s);
// The same over a scratch whose rows are those of up to 3 matrices side by side: rows [row_end[i - 1],
// row_end[i]) go to y[i] (row stride ldy[i]).
struct ReduceSegs {
  int64_t row_end[3] = {0, 0, 0};
  float* y[3] = {nullptr, nullptr, nullptr};
  int64_t ldy[3] = {0, 0, 0};
  int nseg = 1;
};
void qgemm_reduce_segs(const float* part, int splits, int m, const ReduceSegs& r, cudaStream_t s);

// ---- qgemm_frag.cu: the same for Q4_K / Q6_K and up to 64 tokens, each lane dequantizing the weights of its own
// tensor-core fragments from raw super-blocks staged by cp.async (no dequantized tile in shared memory). Same x,
// y, part and split-K contract as qgemm_f16.
void qgemm_frag_init(size_t smem_optin);  // once per device: the shared memory the kernels need, where granted
bool qgemm_frag_supported(const MatView& w, int m);
struct QfragConfig {
  // false: the earlier split rule (about two blocks a multiprocessor), for comparison (qfrag_split_model).
  bool cost_model = true;
  // Token tiles of 8 a block at most: 2, 4 or 8 (qfrag_max_nt).
  int max_nt = 8;
  // Launched with programmatic dependent launch (where on): the first super-blocks' weights are copied while the
  // previous kernel finishes (qfrag_pdl).
  bool pdl = true;
};
// The split count for one launch; for several matrices in one launch (qgemm_frag_multi), w with rows = the sum
// of their rows rounded up to 128 each (frag_launch_view).
int qgemm_frag_splits(const MatView& w, int m, int sms, const QfragConfig& c);
MatView frag_launch_view(const MatView* ws, int n);
void qgemm_frag(const MatView& w, const uint16_t* x, int m, float* y, int64_t ldy, float* part, int splits,
                const QfragConfig& c, cudaStream_t s);
// Up to kFragMaxSegs matrices of one format and K over the same activations x in one launch (q/k/v, gate/up),
// each into its own y; part must hold splits x m x (sum of rows) floats when splits > 1.
constexpr int kFragMaxSegs = 3;
struct FragOut {
  MatView w;
  float* y;
  int64_t ldy;
};
void qgemm_frag_multi(const FragOut* outs, int nseg, const uint16_t* x, int m, float* part, int splits,
                      const QfragConfig& c, cudaStream_t s);

// ---- elementwise.cu ----
// Device read bandwidth in bytes/s on the current device (a streaming read of about `bytes`; median of 5 runs).
double read_bandwidth(double bytes);
// Activations for the matvec kernels: int8 per 32 elements (q stride K bytes, ds stride K/32), K % 32 == 0.
void quantize_act_q8(const float* x, int64_t ldx, int n, int64_t K, int8_t* q, float2* ds, cudaStream_t s);
// f32 copy with rows padded to Kp (zeros after K).
void prep_act_f32(const float* x, int64_t ldx, int n, int64_t K, int64_t Kp, float* out, cudaStream_t s);
// f16 copy with rows padded to Kp (zeros after K), for the tensor-core path.
void prep_act_f16(const float* x, int64_t ldx, int n, int64_t K, int64_t Kp, uint16_t* out, cudaStream_t s);
void embed_rows(const MatView& table, const int32_t* tokens, int n, float* out, int64_t ldo, cudaStream_t s);
void add_bias(float* x, int64_t ldx, const float* b, int rows, int64_t cols, cudaStream_t s);
void add_inplace(float* x, int64_t ldx, const float* y, int64_t ldy, int rows, int64_t cols, cudaStream_t s);
// outh (optional): also f16 copies of out, rows of cols (prep_act_f16's layout for Kp == cols).
void swiglu(const float* g, int64_t ldg, const float* u, int64_t ldu, float* out, int64_t ldo, int rows,
            int64_t cols, cudaStream_t s, uint16_t* outh = nullptr);
void gather_rows(const float* x, int64_t ldx, const int32_t* idx, int r, int64_t cols, float* out, int64_t ldo,
                 cudaStream_t s);
// k/v rows of n tokens into the cache of one layer at (slot[t], pos[t]); cache rows are kv_dim elements.
void kv_store(const float* k, int64_t ldk, const float* v, int64_t ldv, int n, const int32_t* pos,
              const int32_t* slot, void* kc, void* vc, bool f16, int n_ctx, int kv_dim, cudaStream_t s);

// ---- norm.cu ----
// outh (optional): also f16 copies of out, rows of cols (prep_act_f16's layout for Kp == cols), for the batched
// matmul that reads out.
void rmsnorm(const float* x, int64_t ldx, const float* g, float eps, int rows, int64_t cols, float* out,
             int64_t ldo, cudaStream_t s, uint16_t* outh = nullptr);
// x += y (in place), out = rmsnorm(x) * g
void add_rmsnorm(float* x, int64_t ldx, const float* y, int64_t ldy, const float* g, float eps, int rows,
                 int64_t cols, float* out, int64_t ldo, cudaStream_t s, uint16_t* outh = nullptr);

// Fused x += y (y may be null: plain rmsnorm), out = rmsnorm(x) * g, and int8 activations of out (q stride
// q_stride bytes, ds stride ds_stride), for widths norm_q8_supported accepts.
bool norm_q8_supported(int64_t cols);
void norm_q8(float* x, int64_t ldx, const float* y, int64_t ldy, const float* g, float eps, int rows, int64_t cols,
             float* out, int64_t ldo, int8_t* q, float2* ds, int64_t q_stride, int64_t ds_stride, cudaStream_t s);

// ---- rope.cu ----
// In place; inv_freq[i] (i < rope_dim/2) already includes the frequency factors.
void rope(float* x, int64_t ldx, int n, const int32_t* pos, const float* inv_freq, int n_heads, int head_dim,
          int rope_dim, bool neox, cudaStream_t s);
// RoPE of q (nq_heads) and k (nk_heads) in place, then k and v stored into the cache of one layer at (slot[t],
// pos[t]) (cache rows nk_heads * head_dim elements): rope + rope + kv_store of a batched step in one kernel.
void rope_store(float* q, int64_t ldq, float* k, int64_t ldk, const float* v, int64_t ldv, int n, const int32_t* pos,
                const int32_t* slot, const float* inv_freq, int nq_heads, int nk_heads, int head_dim, int rope_dim,
                bool neox, void* kc, void* vc, bool f16, int n_ctx, cudaStream_t s);

// ---- attention.cu ----
struct AttnArgs {
  const float* q = nullptr;
  int64_t ldq = 0;
  float* out = nullptr;
  int64_t ldo = 0;
  const void* k_cache = nullptr;  // layer base, [slot][pos][kv_dim]
  const void* v_cache = nullptr;
  bool f16 = true;
  const int32_t* pos = nullptr;
  const int32_t* slot = nullptr;
  int n = 0;  // tokens
  int n_ctx = 0, kv_dim = 0, head_dim = 0, n_heads = 0, n_kv_heads = 0;
  float scale = 1.f;
  // Split-KV (flash-decoding): the positions of a token are cut into chunks of `chunk` (a multiple of the tile);
  // with splits > 1 every chunk writes a partial result and a merge kernel combines them.
  int splits = 1, chunk = 0;
  float* part_o = nullptr;    // [n][n_heads][splits][head_dim]
  float2* part_ml = nullptr;  // [n][n_heads][splits] {max, sum}
  // Decode kernel (attention_decode): grid (n_heads / hg, splits, n); each token's positions are cut at run time
  // into at most `splits` chunks of at least min_chunk positions; the last block of a (token, head group) to finish
  // merges the partial results (counters: [n][n_heads / hg] ints, zero, left zero).
  int* counters = nullptr;
  int min_chunk = 64;
  // keys below safe[t] were written before this step and may be read before the previous kernel finishes
  const int32_t* safe = nullptr;
  // optional int8 activations of the output (for the next matmul), like quantize_act_q8 with K = ldo
  int8_t* oq = nullptr;
  float2* ods = nullptr;
  int64_t oq_stride = 0, ods_stride = 0;
  // optional f16 copy of the output (rows of ldo elements: prep_act_f16's layout), for a batched matmul
  uint16_t* oh = nullptr;
};
constexpr int kAttnTile = 32;       // positions per tile
constexpr int kAttnMaxHeadDim = 256;
constexpr int kAttnMaxGroup = 8;    // query heads sharing one block
// Heads per block: the largest divisor of n_heads / n_kv_heads that is at most kAttnMaxGroup.
int attn_heads_per_block(int n_heads, int n_kv_heads);
// Chooses splits/chunk for n tokens so that the grid fills `sms` multiprocessors; sets a.splits and a.chunk.
void attn_plan(AttnArgs& a, int sms);
void attention(const AttnArgs& a, cudaStream_t s);
// The decode kernel: f16 cache, head_dim 8 * 2^k up to 256, n <= kAttnDecodeMaxTokens tokens.
constexpr int kAttnDecodeMaxTokens = 64;
constexpr int kAttnDecodeMaxSplits = 128;
bool attn_decode_supported(bool f16, int head_dim, int n_heads, int n_kv_heads, int n);
// Sets a.splits (the grid's y) for the decode kernel: about target_blocks blocks for n tokens at full context.
void attn_decode_plan(AttnArgs& a, int target_blocks);
void attention_decode(const AttnArgs& a, cudaStream_t s);
// Once per process and device: opt in to the shared memory the kernels may need.
void attention_init();
// attention_prefill.cu: steps of more than kAttnPrefillMinTokens tokens on tensor cores (f16 cache, head_dim 64 or
// 128; Q and P rounded to f16); no split-KV, splits/chunk are ignored. Smaller steps keep the exact f32 kernels:
// a 64-token query tile would be mostly empty, and decode must not depend on the f16 rounding.
constexpr int kAttnPrefillMinTokens = 64;
bool attn_prefill_supported(bool f16, int head_dim, int64_t ldq, int64_t ldo, int n_tokens);
void attention_prefill(const AttnArgs& a, cudaStream_t s);
// Once per process and device, with the device's opt-in shared memory per block.
void attention_prefill_init(size_t smem_optin);

// ---- gemm.cu ----
// Dequantizes rows [row0, row0 + nrows) to f16, out[r][Kp].
void dequant_f16(const MatView& w, int64_t row0, int64_t nrows, uint16_t* out, cudaStream_t s);
// y[t][r] = sum_k W[r][k] * X[t][k] for r < rows, t < n: W [rows][Kp] and X [n][Kp] f16, y f32 (row stride ldy).
// On tensor cores through cuBLAS (f32 accumulation); the handle is bound to the backend's stream.
void gemm_f16(cublasHandle_t h, const uint16_t* W, int64_t rows, const uint16_t* X, int n, int64_t Kp, float* y,
              int64_t ldy);

}  // namespace vireo::VIREO_CUDA_NS
