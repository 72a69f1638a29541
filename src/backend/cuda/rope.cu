// Rotary position embedding, in place, at each token's position (read from device memory). The per-pair inverse
// frequencies (base^(-2i/d), divided by the model's frequency factors) are computed once on the host, with the
// same float arithmetic as the CPU backend.
#include "backend/cuda/kernels.h"

namespace vireo::VIREO_CUDA_NS {
namespace {

constexpr int kThreads = 256;

// Rotates pair i (< half) of the head at r by position p, in place; returns the indices of the pair in *a, *b.
VDEV void rotate_pair(float* r, int i, int half, int neox, float p, const float* __restrict__ inv_freq, int* a,
                      int* b) {
  const float angle = p * inv_freq[i];
  float sn, cs;
  sin_cos(angle, &sn, &cs);
  *a = neox ? i : 2 * i;
  *b = neox ? i + half : 2 * i + 1;
  const float x0 = r[*a], x1 = r[*b];
  r[*a] = x0 * cs - x1 * sn;
  r[*b] = x0 * sn + x1 * cs;
}

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
    const int h = idx / half;
    int a, b;
    rotate_pair(xr + static_cast<int64_t>(h) * head_dim, idx % half, half, neox, p, inv_freq, &a, &b);
  }
}

// Batched steps: RoPE of q and k and the store of k and v into the cache in one kernel (block per token). The
// thread that rotates a pair of k also stores it; k elements past rope_dim and all of v are stored as they are.
// Same rotation as rope_kernel and the same stores as kv_store_kernel.
template <bool F16>
__global__ void __launch_bounds__(kThreads)
    rope_store_kernel(float* __restrict__ q, int64_t ldq, float* __restrict__ k, int64_t ldk,
                      const float* __restrict__ v, int64_t ldv, const int32_t* __restrict__ pos,
                      const int32_t* __restrict__ slot, const float* __restrict__ inv_freq, int nq_heads,
                      int nk_heads, int head_dim, int half, int neox, void* kc, void* vc, int n_ctx) {
  pdl_wait();
  pdl_trigger();
  const int64_t t = blockIdx.x;
  const float p = static_cast<float>(pos[t]);
  const int kv_dim = nk_heads * head_dim;
  const int64_t crow = (static_cast<int64_t>(slot[t]) * n_ctx + pos[t]) * kv_dim;
  auto put = [&](void* cache, int e, float val) {
    if constexpr (F16) static_cast<uint16_t*>(cache)[crow + e] = f2h(val);
    else static_cast<float*>(cache)[crow + e] = val;
  };
  for (int idx = static_cast<int>(threadIdx.x); idx < (nq_heads + nk_heads) * half;
       idx += static_cast<int>(blockDim.x)) {
    const bool is_k = idx >= nq_heads * half;
    const int hi = is_k ? idx - nq_heads * half : idx;
    const int h = hi / half;
    float* r = (is_k ? k + t * ldk : q + t * ldq) + static_cast<int64_t>(h) * head_dim;
    int a, b;
    rotate_pair(r, hi % half, half, neox, p, inv_freq, &a, &b);
    if (is_k) {
      put(kc, h * head_dim + a, r[a]);
      put(kc, h * head_dim + b, r[b]);
    }
  }
  const float* kr = k + t * ldk;
  const float* vr = v + t * ldv;
  for (int e = static_cast<int>(threadIdx.x); e < kv_dim; e += static_cast<int>(blockDim.x)) {
    if (e % head_dim >= 2 * half) put(kc, e, kr[e]);  // not rotated
    put(vc, e, vr[e]);
  }
}

}  // namespace

void rope_store(float* q, int64_t ldq, float* k, int64_t ldk, const float* v, int64_t ldv, int n, const int32_t* pos,
                const int32_t* slot, const float* inv_freq, int nq_heads, int nk_heads, int head_dim, int rope_dim,
                bool neox, void* kc, void* vc, bool f16, int n_ctx, cudaStream_t s) {
  if (n <= 0) return;
  if (f16) {
    auto* kern = &rope_store_kernel<true>;
    VLAUNCH_PDL(kern, dim3(static_cast<unsigned>(n)), dim3(kThreads), 0, s, q, ldq, k, ldk, v, ldv, pos, slot,
                inv_freq, nq_heads, nk_heads, head_dim, rope_dim / 2, neox ? 1 : 0, kc, vc, n_ctx);
  } else {
    auto* kern = &rope_store_kernel<false>;
    VLAUNCH_PDL(kern, dim3(static_cast<unsigned>(n)), dim3(kThreads), 0, s, q, ldq, k, ldk, v, ldv, pos, slot,
                inv_freq, nq_heads, nk_heads, head_dim, rope_dim / 2, neox ? 1 : 0, kc, vc, n_ctx);
  }
  VCHECK_LAUNCH("rope + kv_store");
}

void rope(float* x, int64_t ldx, int n, const int32_t* pos, const float* inv_freq, int n_heads, int head_dim,
          int rope_dim, bool neox, cudaStream_t s) {
  if (n <= 0) return;
  auto* k = &rope_kernel;
  VLAUNCH_PDL(k, dim3(static_cast<unsigned>(n)), dim3(kThreads), 0, s, x, ldx, pos, inv_freq, n_heads, head_dim,
          rope_dim / 2, neox ? 1 : 0);
  VCHECK_LAUNCH("rope");
}

}  // namespace vireo::VIREO_CUDA_NS
