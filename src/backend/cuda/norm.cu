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

// out = x * scale * g for one row (the block's), and its f16 copy in row blockIdx.x of outh when asked.
VDEV void store_normed(const float* xr, float scale, const float* __restrict__ g, int64_t cols, float* o,
                       uint16_t* __restrict__ outh) {
  uint16_t* oh = outh ? outh + static_cast<int64_t>(blockIdx.x) * cols : nullptr;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
    const float v = xr[i] * scale * g[i];
    o[i] = v;
    if (oh) oh[i] = f2h(v);
  }
}

__global__ void __launch_bounds__(kThreads)
    rmsnorm_kernel(const float* __restrict__ x, int64_t ldx, const float* __restrict__ g, float eps, int64_t cols,
                   float* __restrict__ out, int64_t ldo, uint16_t* __restrict__ outh) {
  VSHARED(float, red, 32);
  pdl_wait();
  pdl_trigger();
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * ldx;
  float* o = out + static_cast<int64_t>(blockIdx.x) * ldo;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) ss += xr[i] * xr[i];
  const float total = block_sum(ss, red);
  store_normed(xr, 1.f / sqrtf(total / static_cast<float>(cols) + eps), g, cols, o, outh);
}

// x and out may be the same buffer: every element is handled by one thread only.
__global__ void __launch_bounds__(kThreads)
    add_rmsnorm_kernel(float* x, int64_t ldx, const float* __restrict__ y, int64_t ldy, const float* __restrict__ g,
                       float eps, int64_t cols, float* out, int64_t ldo, uint16_t* __restrict__ outh) {
  VSHARED(float, red, 32);
  pdl_wait();
  pdl_trigger();
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
  store_normed(xr, 1.f / sqrtf(total / static_cast<float>(cols) + eps), g, cols, o, outh);
}

// The block boundary of a decode step in one kernel: x += y (y may be null), out = rmsnorm(x) * g, and the int8
// activations of out for the next matmul (quantize_act_q8's layout and arithmetic). Block per row, kNormQ8Ept
// elements per thread kept in registers; thread i owns elements i + k * blockDim.x, so a warp owns whole groups
// of 32.
constexpr int kNormQ8Ept = 8;

__global__ void __launch_bounds__(1024)
    norm_q8_kernel(float* x, int64_t ldx, const float* __restrict__ y, int64_t ldy, const float* __restrict__ g,
                   float eps, int64_t cols, float* out, int64_t ldo, int8_t* __restrict__ q, float2* __restrict__ ds,
                   int64_t q_stride, int64_t ds_stride) {
  VSHARED(float, red, 32);
  const int tid = static_cast<int>(threadIdx.x), nt = static_cast<int>(blockDim.x);
  const int warp = tid >> 5, lane = tid & 31;
  float gv[kNormQ8Ept], v[kNormQ8Ept];
  VUNROLL for (int k = 0; k < kNormQ8Ept; ++k) {
    const int64_t i = tid + static_cast<int64_t>(k) * nt;
    gv[k] = i < cols ? g[i] : 0.f;  // weights: before the wait
  }
  pdl_wait();
  pdl_trigger();
  const int64_t r = blockIdx.x;
  float* xr = x + r * ldx;
  float ss = 0.f;
  VUNROLL for (int k = 0; k < kNormQ8Ept; ++k) {
    const int64_t i = tid + static_cast<int64_t>(k) * nt;
    float val = 0.f;
    if (i < cols) {
      val = xr[i];
      if (y) {
        val += y[r * ldy + i];
        xr[i] = val;
      }
    }
    v[k] = val;
    ss += val * val;
  }
  const float total = block_sum(ss, red);
  const float scale = 1.f / sqrtf(total / static_cast<float>(cols) + eps);
  VUNROLL for (int k = 0; k < kNormQ8Ept; ++k) {
    const int64_t i = tid + static_cast<int64_t>(k) * nt;
    const float o = v[k] * scale * gv[k];
    if (i < cols) out[r * ldo + i] = o;
    const int64_t b0 = static_cast<int64_t>(k) * nt + warp * 32;
    if (b0 < cols) quant_warp32(o, lane, q + r * q_stride + b0, ds + r * ds_stride + b0 / 32);
  }
}

}  // namespace

bool norm_q8_supported(int64_t cols) { return cols > 0 && cols % 32 == 0 && cols <= 1024 * kNormQ8Ept; }

void norm_q8(float* x, int64_t ldx, const float* y, int64_t ldy, const float* g, float eps, int rows, int64_t cols,
             float* out, int64_t ldo, int8_t* q, float2* ds, int64_t q_stride, int64_t ds_stride, cudaStream_t s) {
  if (rows <= 0) return;
  if (!norm_q8_supported(cols)) throw std::runtime_error("CUDA backend: norm_q8: unsupported width");
  const int threads = static_cast<int>(round_up(ceil_div(cols, kNormQ8Ept), 32));
  auto* k = &norm_q8_kernel;
  VLAUNCH_PDL(k, dim3(static_cast<unsigned>(rows)), dim3(threads), 0, s, x, ldx, y, ldy, g, eps, cols, out, ldo, q, ds,
              q_stride, ds_stride);
  VCHECK_LAUNCH("rmsnorm (with int8 activations)");
}

void rmsnorm(const float* x, int64_t ldx, const float* g, float eps, int rows, int64_t cols, float* out,
             int64_t ldo, cudaStream_t s, uint16_t* outh) {
  if (rows <= 0) return;
  auto* k = &rmsnorm_kernel;
  VLAUNCH_PDL(k, dim3(static_cast<unsigned>(rows)), dim3(kThreads), 0, s, x, ldx, g, eps, cols, out, ldo, outh);
  VCHECK_LAUNCH("rmsnorm");
}

void add_rmsnorm(float* x, int64_t ldx, const float* y, int64_t ldy, const float* g, float eps, int rows,
                 int64_t cols, float* out, int64_t ldo, cudaStream_t s, uint16_t* outh) {
  if (rows <= 0) return;
  auto* k = &add_rmsnorm_kernel;
  VLAUNCH_PDL(k, dim3(static_cast<unsigned>(rows)), dim3(kThreads), 0, s, x, ldx, y, ldy, g, eps, cols, out, ldo, outh);
  VCHECK_LAUNCH("add_rmsnorm");
}

}  // namespace vireo::VIREO_CUDA_NS
