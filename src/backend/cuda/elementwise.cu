// Small memory-bound kernels: activation preparation for the matmul paths, embedding rows, biases, residual adds,
// SwiGLU, logit-row gathering and KV-cache stores.
#include <algorithm>
#include <atomic>
#include <vector>

#include "backend/cuda/kernels.h"

namespace vireo::VIREO_CUDA_NS {
namespace {

constexpr int kThreads = 256;

// Grid-stride element loop helpers: grids are capped so that huge sizes still launch.
inline unsigned grid_for(int64_t elems, int threads = kThreads) {
  const int64_t b = ceil_div(elems, threads);
  return static_cast<unsigned>(b < 65536 ? (b > 0 ? b : 1) : 65536);
}

// One warp per 32-element block: d = max|x| / 127, q = round(x / d), ds = {d, d * sum q}. A NaN or infinite
// input makes d infinite, so the matmul result is not finite either (never silently finite).
__global__ void __launch_bounds__(kThreads)
    quant_q8_kernel(const float* __restrict__ x, int64_t ldx, int64_t K, int8_t* __restrict__ q,
                    float2* __restrict__ ds) {
  pdl_wait();
  pdl_trigger();
  const int64_t t = blockIdx.y;
  const int64_t blk = static_cast<int64_t>(blockIdx.x) * (kThreads / 32) + (threadIdx.x >> 5);
  const int lane = static_cast<int>(threadIdx.x & 31);
  if (blk >= K / 32) return;  // whole warp
  const int64_t k = blk * 32 + lane;
  const float v = x[t * ldx + k];
  float a = fabsf(v);
  if (!(a <= 3.0e38f)) a = INFINITY;  // NaN and inf
  const float amax = warp_max(a);
  const float d = amax / 127.f;
  int qi = 0;
  if (d > 0.f && d < INFINITY) {
    qi = round_to_int(v / d);
    qi = qi > 127 ? 127 : (qi < -127 ? -127 : qi);
  }
  q[t * K + k] = static_cast<int8_t>(qi);
  const int sum = warp_sum_int(qi);
  if (lane == 0) ds[t * (K / 32) + blk] = make_float2(d, d * static_cast<float>(sum));
}

__global__ void __launch_bounds__(kThreads)
    prep_f32_kernel(const float* __restrict__ x, int64_t ldx, int64_t n, int64_t K, int64_t Kp,
                    float* __restrict__ out) {
  pdl_wait();
  pdl_trigger();
  const int64_t total = n * Kp;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / Kp, k = i % Kp;
    out[i] = k < K ? x[t * ldx + k] : 0.f;
  }
}

__global__ void __launch_bounds__(kThreads)
    prep_f16_kernel(const float* __restrict__ x, int64_t ldx, int64_t n, int64_t K, int64_t Kp,
                    uint16_t* __restrict__ out) {
  pdl_wait();
  pdl_trigger();
  const int64_t total = n * Kp;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / Kp, k = i % Kp;
    out[i] = k < K ? f2h(x[t * ldx + k]) : static_cast<uint16_t>(0);
  }
}

// Block (x: chunk of 8-element groups, y: token). Token ids were range-checked on the host; clamped again here
// so that a bad id can never read outside the table.
__global__ void __launch_bounds__(128)
    embed_kernel(MatView table, const int32_t* __restrict__ tokens, float* __restrict__ out, int64_t ldo) {
  pdl_wait();
  pdl_trigger();
  const int64_t t = blockIdx.y;
  const int64_t k0 = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * 8;
  if (k0 >= table.K) return;
  int64_t tok = tokens[t];
  tok = tok < 0 ? 0 : (tok >= table.rows ? table.rows - 1 : tok);
  float v[8];
  decode8_any(table, tok, k0, v);
  float* o = out + t * ldo + k0;
  for (int i = 0; i < 8; ++i)
    if (k0 + i < table.K) o[i] = v[i];
}

__global__ void __launch_bounds__(kThreads)
    add_bias_kernel(float* __restrict__ x, int64_t ldx, const float* __restrict__ b, int64_t rows, int64_t cols) {
  pdl_wait();
  pdl_trigger();
  const int64_t total = rows * cols;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / cols, c = i % cols;
    x[t * ldx + c] += b[c];
  }
}

__global__ void __launch_bounds__(kThreads)
    add_kernel(float* __restrict__ x, int64_t ldx, const float* __restrict__ y, int64_t ldy, int64_t rows,
               int64_t cols) {
  pdl_wait();
  pdl_trigger();
  const int64_t total = rows * cols;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / cols, c = i % cols;
    x[t * ldx + c] += y[t * ldy + c];
  }
}

// out may alias g (the model computes hb = silu(hb) * hb2 in place): each element is read before it is written
// by the same thread.
__global__ void __launch_bounds__(kThreads)
    swiglu_kernel(const float* g, int64_t ldg, const float* u, int64_t ldu, float* out, int64_t ldo, int64_t rows,
                  int64_t cols, uint16_t* outh) {
  pdl_wait();
  pdl_trigger();
  const int64_t total = rows * cols;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / cols, c = i % cols;
    const float gv = g[t * ldg + c];
    const float v = gv / (1.f + expf(-gv)) * u[t * ldu + c];
    out[t * ldo + c] = v;
    if (outh) outh[i] = f2h(v);
  }
}

__global__ void __launch_bounds__(kThreads)
    gather_kernel(const float* __restrict__ x, int64_t ldx, const int32_t* __restrict__ idx, int64_t cols,
                  float* __restrict__ out, int64_t ldo) {
  pdl_wait();
  pdl_trigger();
  const int64_t i = blockIdx.y;
  const int64_t src = idx[i];
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < cols;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i * ldo + c] = x[src * ldx + c];
}

template <bool F16>
__global__ void __launch_bounds__(kThreads)
    kv_store_kernel(const float* __restrict__ k, int64_t ldk, const float* __restrict__ v, int64_t ldv,
                    const int32_t* __restrict__ pos, const int32_t* __restrict__ slot, void* kc, void* vc,
                    int n_ctx, int kv_dim) {
  pdl_wait();
  pdl_trigger();
  const int64_t t = blockIdx.y;
  const int64_t row = (static_cast<int64_t>(slot[t]) * n_ctx + pos[t]) * kv_dim;
  for (int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x); i < kv_dim;
       i += static_cast<int>(gridDim.x * blockDim.x)) {
    const float kv = k[t * ldk + i], vv = v[t * ldv + i];
    if constexpr (F16) {
      static_cast<uint16_t*>(kc)[row + i] = f2h(kv);
      static_cast<uint16_t*>(vc)[row + i] = f2h(vv);
    } else {
      static_cast<float*>(kc)[row + i] = kv;
      static_cast<float*>(vc)[row + i] = vv;
    }
  }
}

thread_local bool g_pdl = false;  // set by the backend before it launches a step (launches come from its thread)

// Reads n 16-byte words (grid-stride, 4 loads in flight per thread) and keeps a checksum, so that nothing is
// optimized away.
__global__ void __launch_bounds__(256) read_kernel(const uint4* __restrict__ p, int64_t n, unsigned* sink) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  unsigned acc = 0;
  int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; i + 3 * stride < n; i += 4 * stride) {
    const uint4 a = ld16(p + i), b = ld16(p + i + stride), c = ld16(p + i + 2 * stride), d = ld16(p + i + 3 * stride);
    acc ^= a.x ^ a.w ^ b.y ^ b.z ^ c.x ^ c.w ^ d.y ^ d.z;
  }
  for (; i < n; i += stride) acc ^= ld16(p + i).x;
  if (acc == 0x9e3779b9u) *sink = acc;
}

}  // namespace

#if !defined(VIREO_CUDA_EMU)
double read_bandwidth(double bytes) {
  int dev = 0, sms = 1;
  VCUDA(cudaGetDevice(&dev), "bandwidth probe");
  VCUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), "bandwidth probe");
  const size_t size = static_cast<size_t>(std::max(bytes, double(size_t(256) << 20))) & ~size_t(4095);
  void* buf = nullptr;
  VCUDA(cudaMalloc(&buf, size + 64), "bandwidth probe");
  unsigned* sink = reinterpret_cast<unsigned*>(static_cast<char*>(buf) + size);
  cudaStream_t s = nullptr;
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  double best = 0;
  try {
    VCUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "bandwidth probe");
    VCUDA(cudaMemsetAsync(buf, 1, size, s), "bandwidth probe");
    VCUDA(cudaEventCreate(&e0), "bandwidth probe");
    VCUDA(cudaEventCreate(&e1), "bandwidth probe");
    const int64_t n = static_cast<int64_t>(size / 16);
    std::vector<double> runs;
    for (int r = 0; r < 6; ++r) {
      VCUDA(cudaEventRecord(e0, s), "bandwidth probe");
      read_kernel<<<sms * 8, 256, 0, s>>>(static_cast<const uint4*>(buf), n, sink);
      VCUDA(cudaGetLastError(), "bandwidth probe");
      VCUDA(cudaEventRecord(e1, s), "bandwidth probe");
      VCUDA(cudaEventSynchronize(e1), "bandwidth probe");
      float ms = 0;
      VCUDA(cudaEventElapsedTime(&ms, e0, e1), "bandwidth probe");
      if (r > 0) runs.push_back(static_cast<double>(size) / (ms * 1e-3));
    }
    std::sort(runs.begin(), runs.end());
    best = runs[runs.size() / 2];
  } catch (...) {
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    if (s) cudaStreamDestroy(s);
    cudaFree(buf);
    throw;
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaStreamDestroy(s);
  cudaFree(buf);
  return best;
}
#endif

bool pdl_enabled() { return g_pdl; }
void set_pdl_enabled(bool on) { g_pdl = on; }

void quantize_act_q8(const float* x, int64_t ldx, int n, int64_t K, int8_t* q, float2* ds, cudaStream_t s) {
  if (K % 32 != 0) throw std::runtime_error("CUDA backend: quantize_act_q8 needs K % 32 == 0");
  auto* k = &quant_q8_kernel;
  const dim3 grid(static_cast<unsigned>(ceil_div(K / 32, kThreads / 32)), static_cast<unsigned>(n));
  VLAUNCH_PDL(k, grid, dim3(kThreads), 0, s, x, ldx, K, q, ds);
  VCHECK_LAUNCH("matmul (quantize activations)");
}

void prep_act_f32(const float* x, int64_t ldx, int n, int64_t K, int64_t Kp, float* out, cudaStream_t s) {
  auto* k = &prep_f32_kernel;
  VLAUNCH_PDL(k, dim3(grid_for(n * Kp)), dim3(kThreads), 0, s, x, ldx, int64_t(n), K, Kp, out);
  VCHECK_LAUNCH("matmul (f32 activations)");
}

void prep_act_f16(const float* x, int64_t ldx, int n, int64_t K, int64_t Kp, uint16_t* out, cudaStream_t s) {
  auto* k = &prep_f16_kernel;
  VLAUNCH_PDL(k, dim3(grid_for(n * Kp)), dim3(kThreads), 0, s, x, ldx, int64_t(n), K, Kp, out);
  VCHECK_LAUNCH("matmul (f16 activations)");
}

void embed_rows(const MatView& table, const int32_t* tokens, int n, float* out, int64_t ldo, cudaStream_t s) {
  auto* k = &embed_kernel;
  const dim3 grid(static_cast<unsigned>(ceil_div(ceil_div(table.K, 8), 128)), static_cast<unsigned>(n));
  VLAUNCH_PDL(k, grid, dim3(128), 0, s, table, tokens, out, ldo);
  VCHECK_LAUNCH("embed");
}

void add_bias(float* x, int64_t ldx, const float* b, int rows, int64_t cols, cudaStream_t s) {
  auto* k = &add_bias_kernel;
  VLAUNCH_PDL(k, dim3(grid_for(rows * cols)), dim3(kThreads), 0, s, x, ldx, b, int64_t(rows), cols);
  VCHECK_LAUNCH("add_bias");
}

void add_inplace(float* x, int64_t ldx, const float* y, int64_t ldy, int rows, int64_t cols, cudaStream_t s) {
  auto* k = &add_kernel;
  VLAUNCH_PDL(k, dim3(grid_for(rows * cols)), dim3(kThreads), 0, s, x, ldx, y, ldy, int64_t(rows), cols);
  VCHECK_LAUNCH("add");
}

void swiglu(const float* g, int64_t ldg, const float* u, int64_t ldu, float* out, int64_t ldo, int rows,
            int64_t cols, cudaStream_t s, uint16_t* outh) {
  auto* k = &swiglu_kernel;
  VLAUNCH_PDL(k, dim3(grid_for(rows * cols)), dim3(kThreads), 0, s, g, ldg, u, ldu, out, ldo, int64_t(rows), cols,
              outh);
  VCHECK_LAUNCH("swiglu");
}

void gather_rows(const float* x, int64_t ldx, const int32_t* idx, int r, int64_t cols, float* out, int64_t ldo,
                 cudaStream_t s) {
  if (r <= 0) return;
  auto* k = &gather_kernel;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(ceil_div(cols, kThreads), 64)), static_cast<unsigned>(r));
  VLAUNCH_PDL(k, grid, dim3(kThreads), 0, s, x, ldx, idx, cols, out, ldo);
  VCHECK_LAUNCH("gather_logit_rows");
}

void kv_store(const float* k, int64_t ldk, const float* v, int64_t ldv, int n, const int32_t* pos,
              const int32_t* slot, void* kc, void* vc, bool f16, int n_ctx, int kv_dim, cudaStream_t s) {
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(ceil_div(kv_dim, kThreads), 16)), static_cast<unsigned>(n));
  if (f16) {
    auto* kern = &kv_store_kernel<true>;
    VLAUNCH_PDL(kern, grid, dim3(kThreads), 0, s, k, ldk, v, ldv, pos, slot, kc, vc, n_ctx, kv_dim);
  } else {
    auto* kern = &kv_store_kernel<false>;
    VLAUNCH_PDL(kern, grid, dim3(kThreads), 0, s, k, ldk, v, ldv, pos, slot, kc, vc, n_ctx, kv_dim);
  }
  VCHECK_LAUNCH("kv_store");
}

}  // namespace vireo::VIREO_CUDA_NS
