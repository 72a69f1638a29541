// The CUDA backend: weights resident on one NVIDIA GPU, every op a kernel launch on one stream, a whole step
// replayed as a CUDA graph once its shape (token count, logit rows) has been seen.
//
// This header is plain C++ (no CUDA types), so the engine can include it; it exists in builds where
// VIREO_HAVE_CUDA is defined (CMake finds nvcc).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "runtime/backend.h"

namespace vireo {

struct CudaOptions {
  // Tokens per matmul up to which the quantized matrix-vector kernels run; above it, weights are dequantized to
  // f16 tiles and multiplied on tensor cores (cuBLAS).
  int matvec_max_tokens = 4;  // H100: from 5 tokens on, qgemm.cu is faster for formats without tiles (mv_tiles)
  // Up to this many tokens (and above matvec_max_tokens), quantized weights go through qgemm.cu (dequantized per
  // tile in shared memory, tensor cores) instead of an f16 copy in global memory + cuBLAS. 0: never.
  int qgemm_max_tokens = 64;
  // Q4_K/Q6_K matmuls of qgemm's token counts run on qgemm_frag.cu (each lane dequantizes the weights of its own
  // tensor-core fragments) instead of qgemm.cu's dequantized shared-memory tiles (VIREO_CUDA_QFRAG=0 keeps qgemm.cu).
  int qgemm_frag = 1;
  // qgemm_frag.cu's split-K count: 1 = a cost model of waves, start-up and the split sum (qgemm_frag_splits;
  // H100: 8B x64 5,260 -> 6,065 tok/s, 1B x64 20,715 -> 25,168), 0 = about two blocks a multiprocessor
  // (VIREO_CUDA_QFRAG_MODEL).
  int qfrag_split_model = 1;
  // qgemm_frag.cu: at most this many token tiles of 8 a block (VIREO_CUDA_QFRAG_NT: 2, 4, 8).
  int qfrag_max_nt = 8;
  // qgemm_frag.cu launched with programmatic dependent launch (when pdl is on): its first weights stream while the
  // previous kernel finishes (VIREO_CUDA_QFRAG_PDL=0 turns it off).
  int qfrag_pdl = 1;
  // Batched steps (fuse on): up to 3 matmuls of one input, one format and one K (q/k/v, gate/up) in one
  // qgemm_frag.cu launch with one split-K sum (VIREO_CUDA_QFRAG_MULTI=0: a launch each).
  int qfrag_multi = 1;
  // Batched steps (fuse on): norms, SwiGLU and the decode attention whose output feeds a matmul on the f16 paths
  // write its f16 activations too, instead of a separate conversion kernel (VIREO_CUDA_F16_OUT=0 turns it off).
  int qfrag_f16_out = 1;
  // Batched steps (fuse on): RoPE of q and k and the cache store of k and v in one kernel (VIREO_CUDA_ROPE_STORE=0:
  // three).
  int rope_store = 1;
  // Keep an f16 copy of every quantized layer matrix (blk.*) on the GPU, made once at load: prefill steps then
  // multiply it with cuBLAS directly instead of dequantizing each matrix on every step. Costs 2 bytes per weight
  // of extra memory (16 GB for an 8B model), so it is off unless asked for (VIREO_CUDA_F16_WEIGHTS=1).
  int f16_weights = 0;
  // f16 scratch for one dequantized weight slice of the prefill path (elements); larger matrices go in slices
  // (VIREO_CUDA_GEMM_SLICE_MI: in units of 2^20 elements).
  int64_t gemm_scratch_elems = int64_t(64) << 20;
  // CUDA graphs: 0 = never (every op launches eagerly), 1 = capture a step shape on first use (shapes of up to
  // graph_first_use_max_tokens tokens) or second use (larger ones), replay after.
  int graphs = 1;
  int graph_first_use_max_tokens = 16;
  int max_graphs = 64;
  // Synchronize after every op and report the op that failed (debugging; disables graphs).
  bool sync_each_op = false;
  // Time every kernel group of every step (eager, an event after each) and print a table per group kind to stderr
  // when the backend is destroyed (VIREO_CUDA_PROFILE=1; disables graphs, so totals include launch gaps).
  bool profile = false;
  // Decode-path kernels (each can be switched off for comparisons):
  //  fuse: ops of a layer in fewer kernels (norm + int8 activations; q/k/v matmuls + RoPE + KV store; gate/up +
  //        SwiGLU + int8 activations; attention + int8 activations of its output);
  //  pdl: programmatic dependent launch (Hopper and newer): a kernel starts streaming its weights while the previous
  //       one finishes. Kernels trigger their dependents only after their own wait (docs/CUDA-NOTES.md, v3: an
  //       earlier trigger-at-start version failed the stories260K end-to-end test on an H100; this one passes it
  //       and the whole GPU suite there, 2026-12-06);
  //  mv: the fused-epilogue matvec (mv.cu) instead of the previous one (matvec.cuh);
  //  attn_decode: the split-KV decode attention kernel for steps of up to 64 tokens with an f16 cache.
  //  attn_prefill: steps the decode kernel does not take (above 64 tokens) run on tensor cores
  //                (attention_prefill.cu) when the cache is f16 and head_dim is 64 or 128.
  int fuse = 1, pdl = 1, mv = 1, attn_decode = 1, attn_prefill = 1;
  int mv_blocks_per_sm = 0;   // > 0: cap the matvec grid (warps loop over their items)
  // A block boundary's residual add + RMSNorm folded into the matvec launch before it when only int8 matvec
  // launches read the norm's output (mv.h, MvArgs::resid): a decode layer without norm kernels
  // (VIREO_CUDA_NORM_FOLD=0 keeps them). H100, -p 512 -n 128 (2026-12-07): 8B 328 -> 361 tok/s, 1B 1,125 -> 1,190.
  int norm_fold = 1;
  // One-token matvec launches that read each other's int8 output (the o projection and its folded boundary, gate/up
  // + SwiGLU, down and its boundary, the next layer's q/k/v) run as one chained launch whose phases wait on flags,
  // not on kernel boundaries (mv.h, mv_chain_launch; VIREO_CUDA_CHAIN).
  int mv_chain = 0;
  // Timing experiments only (results are wrong): matvec-step kernels of these kinds are not launched, so a
  // graph-replayed step shows what each kind costs in place (VIREO_CUDA_SKIP, a bit mask): 1 norms, 2 decode
  // attention, 4 q/k/v launches, 8 the o projection (a square matrix), 16 gate/up, 32 the down projection.
  int skip_mask = 0;
  // One-token matvec launches of few items (fewer than 32 warps per multiprocessor) run one block per item with K
  // split over its 4 warps (mv.cu, mv_split_kernel): 0 never, 1 float weights only (F16/BF16/F32), 2 every format
  // (VIREO_CUDA_MV_KSPLIT). H100, 8B decode (2026-12-07): F16 154.6 -> 163.7 tok/s, Q8_0 262 -> 235, Q4_K_M even.
  int mv_ksplit = 1;
  // From this many tokens on, fused matvec launches of Q4_K/Q6_K matrices run on int8 tensor-core tiles (mv.cu),
  // and those matrices stay on the matvec path up to kMatvecMaxN tokens instead of going to qgemm above
  // matvec_max_tokens (when mv_tiles <= matvec_max_tokens + 1). 0: never.
  int mv_tiles = 3;
  // Tiled Q4_K/Q6_K matmuls (mv_tiles on) take up to this many tokens (at most 64; from 9 tokens on as plain
  // products, every weight fragment feeding several 8-token tiles) before qgemm.cu does. 8: qgemm from 9 on.
  int tile_max_tokens = 8;
  // Sampled rows are drawn on the GPU (sample.cu; one id a row crosses to the host) instead of reading back the
  // candidates for the host's sampler (VIREO_CUDA_SAMPLE=0).
  int device_sampling = 1;
  int attn_min_chunk = 64;    // positions per split at least
  int attn_blocks_per_sm = 2; // split target: this many blocks per multiprocessor at full context
  // Reads VIREO_CUDA_GRAPHS=0/1, VIREO_CUDA_SYNC=1, VIREO_CUDA_PROFILE=1, VIREO_CUDA_QGEMM_MAX / _MATVEC_MAX (tokens), VIREO_CUDA_F16_WEIGHTS, VIREO_CUDA_FUSE, _PDL, _MV, _ATTN, _FA (0/1), VIREO_CUDA_MV_BPS, _MV_TILES, _TILE_MAX,
  // _ATTN_CHUNK, _ATTN_BPS, _SAMPLE, _MV_KSPLIT, _CHAIN, _QFRAG, _QFRAG_MODEL,
  // _QFRAG_NT, _QFRAG_PDL, _QFRAG_MULTI, _F16_OUT, _ROPE_STORE, _GEMM_SLICE_MI from the environment over the defaults.
  static CudaOptions from_env();
};

// Read bandwidth of a device in bytes/s (a streaming read kernel over a buffer of about `bytes`, median of a few
// runs), for roofline reports; 0 if it cannot be measured.
double cuda_read_bandwidth(int device_index, double bytes);

// True when a CUDA device can be used; otherwise `why` (if given) says what is missing.
bool cuda_available(std::string* why = nullptr);

// A backend on device `device_index` (0-based). Throws std::runtime_error when the device cannot be used.
std::unique_ptr<Backend> make_cuda_backend(int device_index);
std::unique_ptr<Backend> make_cuda_backend(int device_index, const CudaOptions& opts);

// Extra entry points of CUDA backends for tests and benchmarks (Act::data of such a backend is device memory).
// Every backend returned by make_cuda_backend implements it: dynamic_cast<CudaBackendExt*>(backend).
class CudaBackendExt {
 public:
  virtual ~CudaBackendExt() = default;
  virtual void copy_to_device(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy_to_host(void* dst, const void* src, size_t bytes) = 0;
  virtual void fill_bytes(void* dst, int byte, size_t bytes) = 0;  // e.g. 0xff: every f32 becomes NaN
  virtual void synchronize() = 0;
  struct GraphStats {
    int64_t captures = 0, replays = 0, eager_steps = 0, recaptures = 0;
    int64_t fused = 0;  // fused kernels run (eager runs and captures; a replay runs what its capture ran)
    int64_t folded_norms = 0;  // of those, matvec launches with a block boundary's add + RMSNorm folded in
    int64_t chained = 0;       // chained matvec launches (CudaOptions::mv_chain), each of 2+ phases
  };
  virtual GraphStats graph_stats() const = 0;
  virtual std::string device_name() const = 0;
};

}  // namespace vireo
