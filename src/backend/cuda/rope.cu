// Rotary position embedding, in place, at each token's position (read from device memory). The per-pair inverse
// frequencies (base^(-2i/d), divided by the model's frequency factors) are computed once on the host, with the
// same float arithmetic as the CPU backend.
#include "backend/cuda/kernels.h"

namespace vireo::VIREO_CUDA_NS {
namespace {

constexpr int kThreads = 256;

// Block per token; thread per (head, pair).
__global__ void __launch_bounds__(kThreads)
    rope_kernel(float* __restrict__ x, int64_t ldx, const int32_t* __restrict__ pos,
                const float* __restrict__ inv_freq, int n_heads, int head_dim, int half, int neox) {
  pdl_wait();
  pdl_trigger();
  const int64_t t = blockIdx.x;
  const float p = static_cast<float>(pos[t]);
  float* xr = x + t * ldx;
  for (int idx = static_cast<int>(threadIdx.x); idx < n_heads * half; idx += static_cast<int>(blockDim.x)) {
    const int h = idx / half, i = idx % half;
    const float angle = p * inv_freq[i];
    float sn, cs;
    sin_cos(angle, &sn, &cs);
    float* v = xr + static_cast<int64_t>(h) * head_dim;
    const int a = neox ? i : 2 * i;
    const int b = neox ? i + half : 2 * i + 1;
    const float x0 = v[a], x1 = v[b];
    v[a] = x0 * cs - x1 * sn;
    v[b] = x0 * sn + x1 * cs;
  }
}

}  // namespace

void rope(float* x, int64_t ldx, int n, const int32_t* pos, const float* inv_freq, int n_heads, int head_dim,
          int rope_dim, bool neox, cudaStream_t s) {
  if (n <= 0) return;
  auto* k = &rope_kernel;
  VLAUNCH_PDL(k, dim3(static_cast<unsigned>(n)), dim3(kThreads), 0, s, x, ldx, pos, inv_freq, n_heads, head_dim,
          rope_dim / 2, neox ? 1 : 0);
  VCHECK_LAUNCH("rope");
}

}  // namespace vireo::VIREO_CUDA_NS
