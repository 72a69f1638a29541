// Sampling on the GPU. Greedy rows need only the index of the largest logit: one block per logits row reduces
// it, and the step reads back 4 bytes a row instead of the whole vocabulary.
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

}  // namespace

void argmax_rows(const float* x, int64_t ldx, int rows, int64_t cols, int32_t* out, cudaStream_t s) {
  if (rows <= 0) return;
  auto* k = &argmax_rows_kernel;
  VLAUNCH(k, dim3(static_cast<unsigned>(rows)), dim3(kThreads), 0, s, x, ldx, cols, out);
  VCHECK_LAUNCH("argmax of the logits rows");
}

}  // namespace vireo::VIREO_CUDA_NS
