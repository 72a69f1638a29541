// Sampling on the GPU's side. Greedy rows need only the index of the largest logit: one block per logits row
// reduces it, and the step reads back 4 bytes a row instead of the whole vocabulary. Sampled rows need only the
// tokens that can still be drawn (within a margin of the largest logit), which the host then samples from.
#include "backend/cuda/kernels.h"

namespace vireo::VIREO_CUDA_NS {
namespace {

constexpr int kThreads = 256;

// Same choice as the host's argmax (src/runtime/sampler.cpp): NaN never wins, ties go to the lowest id, a row of
// only NaN gives 0.
VDEV bool better(float v, int i, float bv, int bi) { return bi < 0 || v > bv || (v == bv && i < bi); }

__global__ void __launch_bounds__(kThreads) argmax_rows_kernel(const float* __restrict__ x, int64_t ldx, int64_t cols,
                                                               int32_t* __restrict__ out) {
  VSHARED(float, sv, kThreads);
  VSHARED(int, si, kThreads);
  const float* row = x + static_cast<int64_t>(blockIdx.x) * ldx;
  float bv = 0.f;
  int bi = -1;
  for (int64_t c = threadIdx.x; c < cols; c += kThreads) {
    const float v = row[c];
    if (v == v && better(v, static_cast<int>(c), bv, bi)) bv = v, bi = static_cast<int>(c);
  }
  sv[threadIdx.x] = bv;
  si[threadIdx.x] = bi;
  __syncthreads();
  for (int step = kThreads / 2; step > 0; step /= 2) {
    if (static_cast<int>(threadIdx.x) < step) {
      const float v = sv[threadIdx.x + step];
      const int i = si[threadIdx.x + step];
      if (i >= 0 && better(v, i, sv[threadIdx.x], si[threadIdx.x])) sv[threadIdx.x] = v, si[threadIdx.x] = i;
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = si[0] < 0 ? 0 : si[0];
}

// The tokens within margins[row] of the row's largest logit, in ascending id order (the host sampler's candidate
// list). Each thread owns a contiguous run of ids, so a prefix sum of the per-thread counts gives every candidate
// its place. counts[row] = -1 when there are more than `cap` (or none).
__global__ void __launch_bounds__(kThreads)
    candidates_kernel(const float* __restrict__ x, int64_t ldx, int64_t cols, const float* __restrict__ margins,
                      int cap, float* __restrict__ vals, int32_t* __restrict__ ids, int32_t* __restrict__ counts) {
  VSHARED(float, sv, kThreads);
  VSHARED(int, sc, kThreads);
  const float* row = x + static_cast<int64_t>(blockIdx.x) * ldx;
  const int tid = static_cast<int>(threadIdx.x);
  float top = -INFINITY;
  for (int64_t c = tid; c < cols; c += kThreads)
    if (row[c] > top) top = row[c];  // NaN never compares greater
  sv[tid] = top;
  __syncthreads();
  for (int step = kThreads / 2; step > 0; step /= 2) {
    if (tid < step && sv[tid + step] > sv[tid]) sv[tid] = sv[tid + step];
    __syncthreads();
  }
  const float floor_l = sv[0] - margins[blockIdx.x];
  const int64_t per = (cols + kThreads - 1) / kThreads;
  const int64_t c0 = tid * per, c1 = c0 + per < cols ? c0 + per : cols;
  int mine = 0;
  for (int64_t c = c0; c < c1; ++c) mine += row[c] >= floor_l ? 1 : 0;
  sc[tid] = mine;
  __syncthreads();
  // inclusive scan (Hillis-Steele) of the per-thread counts
  for (int off = 1; off < kThreads; off *= 2) {
    const int add = tid >= off ? sc[tid - off] : 0;
    __syncthreads();
    sc[tid] += add;
    __syncthreads();
  }
  const int total = sc[kThreads - 1];
  if (total == 0 || total > cap) {
    if (tid == 0) counts[blockIdx.x] = -1;
    return;
  }
  int at = sc[tid] - mine;
  float* v = vals + static_cast<int64_t>(blockIdx.x) * cap;
  int32_t* id = ids + static_cast<int64_t>(blockIdx.x) * cap;
  for (int64_t c = c0; c < c1; ++c)
    if (row[c] >= floor_l) v[at] = row[c], id[at] = static_cast<int32_t>(c), ++at;
  if (tid == 0) counts[blockIdx.x] = total;
}

}  // namespace

void logit_candidates(const float* x, int64_t ldx, int rows, int64_t cols, const float* margins, int cap,
                      float* vals, int32_t* ids, int32_t* counts, cudaStream_t s) {
  if (rows <= 0) return;
  auto* k = &candidates_kernel;
  VLAUNCH(k, dim3(static_cast<unsigned>(rows)), dim3(kThreads), 0, s, x, ldx, cols, margins, cap, vals, ids, counts);
  VCHECK_LAUNCH("candidates of the logits rows");
}

void argmax_rows(const float* x, int64_t ldx, int rows, int64_t cols, int32_t* out, cudaStream_t s) {
  if (rows <= 0) return;
  auto* k = &argmax_rows_kernel;
  VLAUNCH(k, dim3(static_cast<unsigned>(rows)), dim3(kThreads), 0, s, x, ldx, cols, out);
  VCHECK_LAUNCH("argmax of the logits rows");
}

}  // namespace vireo::VIREO_CUDA_NS
