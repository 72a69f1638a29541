// The fused decode matmul of mv.cu: arguments and host entry point.
#pragma once
#include "backend/cuda/kernels.h"

namespace vireo::VIREO_CUDA_NS {

constexpr int kMvMaxSegs = 3;
// Tokens up to which Q4_K/Q6_K plain products can run on the int8 tensor-core tiles (CudaOptions::tile_max_tokens).
constexpr int kTileMaxN = 64;
enum MvMode : int { kMvPlain = 0, kMvRopeNormal = 1, kMvRopeNeox = 2, kMvGlu = 3 };

// One weight matrix of a launch (two for glu) and what happens to its results.
struct MvSeg {
  MatView wa, wb;  // wb: the up matrix of a glu segment (same rows, K and format as wa); otherwise wa
  int mode = kMvPlain;
  int64_t items = 0;  // set by mv_launch
  float* y = nullptr;  // plain/rope: the output rows (row stride ldy); glu: gate output (may be null)
  int64_t ldy = 0;
  float* y2 = nullptr;  // glu: up output (may be null)
  int64_t ldy2 = 0;
  float* h = nullptr;  // glu: silu(gate) * up
  int64_t ldh = 0;
  // rope: inverse frequencies (rope_dim / 2), head layout of the rows
  const float* inv_freq = nullptr;
  int head_dim = 0, rope_dim = 0;
  // cache: the layer's K or V cache; row (slot, pos) gets the (rotated) results
  void* cache = nullptr;
  int cache_f16 = 1;
};

struct MvArgs {
  MvSeg seg[kMvMaxSegs];
  int nseg = 0;
  ActQ8 aq;  // activations of quantized formats
  ActF32 af; // activations of float formats (rows padded to Kp, 16-byte aligned)
  const int32_t* pos = nullptr;
  const int32_t* slot = nullptr;
  int n_ctx = 0, kv_dim = 0;
  // glu: int8 activations of h (q stride oq_stride bytes, ds stride ods_stride), and one zeroed counter per
  // group of 32 rows (left zeroed again)
  int8_t* oq = nullptr;
  float2* ods = nullptr;
  int64_t oq_stride = 0, ods_stride = 0;
  int* counters = nullptr;
  // The residual add + RMSNorm that follows a plain one-segment launch, folded into it (a block boundary of a
  // decode step without a norm kernel): x[t] += y[t] (resid, row stride ld_resid); each group of 32 rows is
  // quantized into oq/ods by the warp that completes it (counters as for glu) as v = x * norm_w, before the norm's
  // scale, which is not known until every group's sum of squares (ssq[t * groups + group]) is in; the warp that
  // completes the last group (counters[groups] counts them) multiplies every group's ds by 1 / rms(x[t]).
  // Int8 values are scale-free, so the result is the int8 activations of rmsnorm(x) * norm_w.
  float* resid = nullptr;
  int64_t ld_resid = 0;
  const float* norm_w = nullptr;
  float norm_eps = 0.f;
  float* ssq = nullptr;
  int64_t units = 0;  // units per row (set by mv_launch)
  int sms = 0;        // the device's multiprocessors (grid sizes)
  // A phase of a chained launch (mv_chain_launch), set there: `wait` is the done flags of the phase before (a block
  // reads flag (block % kChainFlags) before its first product); `done` counts this phase's finished output (glu:
  // quantized groups, resid: 1 for the whole boundary) up to done_target, when the completing warp raises every flag
  // of done_flags.
  const int* wait = nullptr;
  int* done = nullptr;
  int* done_flags = nullptr;
  int done_target = 0;
};

int64_t mv_items(const MvSeg& s);
// The format pairs one launch can mix (any single format; Q4_K/Q5_K with Q6_K, Q4_K with Q5_K).
bool mv_formats_supported(WFmt f0, WFmt f1);
// n tokens (1..kMatvecMaxN; up to kTileMaxN for one plain Q4_K or Q6_K segment on tiles); max_blocks > 0 caps the grid (warps then loop over items). From tile_min_n tokens
// on (0: never), launches whose formats all have tensor-core tiles (Q4_K, Q6_K) run on them (grid never capped).
// split_few: one-token launches of few items split each item's K over a block's warps (mv_split_kernel):
// 0 never, 1 for float weights only, 2 for every format.
void mv_launch(MvArgs a, int n, int max_blocks, int tile_min_n, int split_few, cudaStream_t s);
// Phases of a chained launch: matvec launches that would run one after another (the o projection with its folded
// block boundary, gate/up + SwiGLU, down with its boundary, the next layer's q/k/v), as one grid whose blocks are
// ordered by phase; a block of phase p > 0 loads its first weights, then waits for phase p - 1's done flag instead of
// a kernel boundary. Every phase but the last must end in int8 output the next reads (glu with oq, or resid).
// One token on the warp-per-item kernel, or 3-8 tokens on the int8 tiles (Q4_K/Q6_K; tile_min_n as for mv_launch);
// `sync` is kChainSyncInts zeroed ints (left zeroed).
constexpr int kMvChainMax = 4;
constexpr int kChainFlags = 32;         // copies of a done flag, 128 bytes apart (waiting blocks spread over them)
constexpr int kChainSyncInts = 8 + kMvChainMax * kChainFlags * 32;
bool mv_chain_supported(const MvArgs* ph, int nph, int n, int tile_min_n);
void mv_chain_launch(const MvArgs* ph, int nph, int n, int tile_min_n, int* sync, cudaStream_t s);
// The formats with tensor-core tiles, and whether n tokens of format f run on them from tile_min_n tokens on.
VHD constexpr bool mv_tile_format(WFmt f) { return f == WFmt::Q4_K || f == WFmt::Q6_K; }
VHD constexpr bool mv_tiles_take(WFmt f, int64_t n, int tile_min_n) {
  return tile_min_n > 0 && n >= tile_min_n && mv_tile_format(f);
}

}  // namespace vireo::VIREO_CUDA_NS
