// RMSNorm, and the fused residual add + RMSNorm of the transformer block boundaries. One block per row.
#include "backend/cuda/kernels.h"

namespace vireo::VIREO_CUDA_NS {
namespace {

constexpr int kThreads = 256;

// Sum over the block; every thread gets the same value (each adds the per-warp sums in the same order).
VDEV float block_sum(float v, float* red) {
  v = warp_sum(v);
  const int warp = static_cast<int>(threadIdx.x >> 5), lane = static_cast<int>(threadIdx.x & 31);
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float total = 0.f;
  const int nw = static_cast<int>(blockDim.x >> 5);
  for (int i = 0; i < nw; ++i) total += red[i];
  return total;
}

__global__ void __launch_bounds__(kThreads)
    rmsnorm_kernel(const float* __restrict__ x, int64_t ldx, const float* __restrict__ g, float eps, int64_t cols,
                   float* __restrict__ out, int64_t ldo) {
  VSHARED(float, red, 32);
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * ldx;
  float* o = out + static_cast<int64_t>(blockIdx.x) * ldo;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) ss += xr[i] * xr[i];
  const float total = block_sum(ss, red);
  const float scale = 1.f / sqrtf(total / static_cast<float>(cols) + eps);
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) o[i] = xr[i] * scale * g[i];
}

// x and out may be the same buffer: every element is handled by one thread only.
__global__ void __launch_bounds__(kThreads)
    add_rmsnorm_kernel(float* x, int64_t ldx, const float* __restrict__ y, int64_t ldy, const float* __restrict__ g,
                       float eps, int64_t cols, float* out, int64_t ldo) {
  VSHARED(float, red, 32);
  float* xr = x + static_cast<int64_t>(blockIdx.x) * ldx;
  const float* yr = y + static_cast<int64_t>(blockIdx.x) * ldy;
  float* o = out + static_cast<int64_t>(blockIdx.x) * ldo;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
    const float v = xr[i] + yr[i];
    xr[i] = v;
    ss += v * v;
  }
  const float total = block_sum(ss, red);
  const float scale = 1.f / sqrtf(total / static_cast<float>(cols) + eps);
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) o[i] = xr[i] * scale * g[i];
}

}  // namespace

void rmsnorm(const float* x, int64_t ldx, const float* g, float eps, int rows, int64_t cols, float* out,
             int64_t ldo, cudaStream_t s) {
  if (rows <= 0) return;
  auto* k = &rmsnorm_kernel;
  VLAUNCH(k, dim3(static_cast<unsigned>(rows)), dim3(kThreads), 0, s, x, ldx, g, eps, cols, out, ldo);
  VCHECK_LAUNCH("rmsnorm");
}

void add_rmsnorm(float* x, int64_t ldx, const float* y, int64_t ldy, const float* g, float eps, int rows,
                 int64_t cols, float* out, int64_t ldo, cudaStream_t s) {
  if (rows <= 0) return;
  auto* k = &add_rmsnorm_kernel;
  VLAUNCH(k, dim3(static_cast<unsigned>(rows)), dim3(kThreads), 0, s, x, ldx, y, ldy, g, eps, cols, out, ldo);
  VCHECK_LAUNCH("add_rmsnorm");
}

}  // namespace vireo::VIREO_CUDA_NS
