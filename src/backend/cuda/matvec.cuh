// The matrix-vector kernel for decode steps (a few tokens): one warp per R rows, each lane walks the units of
// the row (formats.cuh) with 16-byte loads, the activations of a unit are loaded once and used for the R rows,
// and the partial sums are reduced across the warp at the end. Bandwidth comes from many independent warps:
// 4 warps a block, one block per 4R rows, so a 4096-row matrix puts 1024 warps' loads in flight.
#pragma once
#include "backend/cuda/formats.cuh"
#include "backend/cuda/kernels.h"

namespace vireo::VIREO_CUDA_NS {

constexpr int kMatvecWarps = 4;

template <WFmt F, int N, int R>
__global__ void __launch_bounds__(kMatvecWarps * 32)
    matvec_kernel(MatView w, typename Unit<F>::ActT act, float* __restrict__ y, int64_t ldy) {
  using U = Unit<F>;
  const int lane = static_cast<int>(threadIdx.x & 31);
  const int64_t row0 = (static_cast<int64_t>(blockIdx.x) * kMatvecWarps + (threadIdx.x >> 5)) * R;
  if (row0 >= w.rows) return;  // the whole warp leaves
  int64_t rows[R];
  VUNROLL for (int r = 0; r < R; ++r) rows[r] = row0 + r < w.rows ? row0 + r : w.rows - 1;
  float acc[R][N];
  VUNROLL for (int r = 0; r < R; ++r) {
    VUNROLL for (int t = 0; t < N; ++t) acc[r][t] = 0.f;
  }

  const int64_t nu = U::units(w);
#if defined(__CUDACC__)
#pragma unroll 2
#endif
  for (int64_t u = lane; u < nu; u += 32) {
    typename U::W wt[R];
    VUNROLL for (int r = 0; r < R; ++r) U::load_w(w, rows[r], u, wt[r]);
    VUNROLL for (int t = 0; t < N; ++t) {
      typename U::A a;
      U::load_a(act, t, u, a);
      VUNROLL for (int r = 0; r < R; ++r) acc[r][t] += U::dot(wt[r], a, u);
    }
  }
  VUNROLL for (int r = 0; r < R; ++r) {
    VUNROLL for (int t = 0; t < N; ++t) {
      const float v = warp_sum(acc[r][t]);
      if (lane == 0 && row0 + r < w.rows) y[t * ldy + row0 + r] = v;
    }
  }
}

template <WFmt F, int N, int R>
void matvec_go(const MatView& w, const typename Unit<F>::ActT& a, float* y, int64_t ldy, cudaStream_t s) {
  auto* k = &matvec_kernel<F, N, R>;
  const int64_t blocks = ceil_div(w.rows, int64_t(kMatvecWarps) * R);
  VLAUNCH(k, dim3(static_cast<unsigned>(blocks)), dim3(kMatvecWarps * 32), 0, s, w, a, y, ldy);
  VCHECK_LAUNCH("matmul (matvec kernel)");
}

// Rows per warp: one row for one or two tokens; two rows from three tokens on, so each activation load serves
// two rows (the activations' share of cache traffic grows with the token count).
template <WFmt F>
void matvec_dispatch(const MatView& w, const typename Unit<F>::ActT& a, int n, float* y, int64_t ldy,
                     cudaStream_t s) {
  switch (n) {
    case 1: matvec_go<F, 1, 1>(w, a, y, ldy, s); break;
    case 2: matvec_go<F, 2, 1>(w, a, y, ldy, s); break;
    case 3: matvec_go<F, 3, 2>(w, a, y, ldy, s); break;
    case 4: matvec_go<F, 4, 2>(w, a, y, ldy, s); break;
    case 5: matvec_go<F, 5, 2>(w, a, y, ldy, s); break;
    case 6: matvec_go<F, 6, 2>(w, a, y, ldy, s); break;
    case 7: matvec_go<F, 7, 2>(w, a, y, ldy, s); break;
    case 8: matvec_go<F, 8, 2>(w, a, y, ldy, s); break;
    default: throw std::runtime_error("CUDA backend: matvec called with " + std::to_string(n) + " tokens");
  }
}

}  // namespace vireo::VIREO_CUDA_NS
