// The decode matmul (a few tokens) in one launch for up to kMvMaxSegs weight matrices that read the same
// activations, with the epilogues of the ops that follow them in a Llama layer fused in:
//   plain     y = W x;
//   rope      y = rope(W x) at each token's position (pairs of rows rotated together), for q and k;
//   + cache   the result also stored as f16/f32 into the KV cache row at (slot, pos), for k and v;
//   glu       two matrices (gate, up) with the same row count: h = silu(gate x) * (up x), and the int8
//             activations of h for the next matmul (each group of 32 rows quantized by the warp that completes
//             it: every warp counts its finished row on an atomic counter of the group, the 32nd quantizes).
//
// Work split: a warp owns an item of two dot products (two rows of one matrix, the two rows of a rotated pair,
// or the gate and up rows of a glu row); the lanes walk the units of the row (formats.cuh), two units per trip
// with both units' 16-byte loads issued before the products. The first two units are loaded before pdl_wait(), so
// under programmatic dependent launch they stream in while the previous kernel (which writes the activations)
// finishes. Partial sums are reduced across the warp; lane t stores token t.
// (A version that staged weights through shared memory with cp.async rings ran at 1.7 TB/s against 3.0 TB/s for
// plain register loads on the 128256-row output matrix: see docs/CUDA-NOTES.md.)
#include "backend/cuda/mv.h"

namespace vireo::VIREO_CUDA_NS {
namespace {

constexpr int kWarps = 4;


// Rows of the two dot products of item i.
VDEV void mv_rows(const MvSeg& s, int64_t i, int64_t* r0, int64_t* r1) {
  if (s.mode == kMvRopeNeox) {
    const int pairs = s.head_dim / 2, half = s.rope_dim / 2;
    const int64_t h = i / pairs;
    const int j = static_cast<int>(i % pairs);
    if (j < half) {
      *r0 = h * s.head_dim + j;
      *r1 = *r0 + half;
    } else {
      *r0 = h * s.head_dim + s.rope_dim + 2 * (j - half);
      *r1 = *r0 + 1;
    }
  } else if (s.mode == kMvGlu) {
    *r0 = i;
    *r1 = i;
  } else {
    *r0 = 2 * i;
    *r1 = 2 * i + 1 < s.wa.rows ? 2 * i + 1 : 2 * i;  // an odd last row: computed twice, stored once
  }
}

template <int N>
VDEV void mv_epilogue(const MvArgs& a, const MvSeg& s, int64_t r0, int64_t r1, int lane, float (&acc)[2][N]) {
  float v0 = 0.f, v1 = 0.f;
  VUNROLL for (int t = 0; t < N; ++t) {
    const float x0 = warp_sum(acc[0][t]), x1 = warp_sum(acc[1][t]);
    if (lane == t) v0 = x0, v1 = x1;
  }
  const int t = lane;
  if (s.mode == kMvGlu) {
    if (t < N) {
      const float h = v0 / (1.f + expf(-v0)) * v1;
      if (s.y) s.y[t * s.ldy + r0] = v0;
      if (s.y2) s.y2[t * s.ldy2 + r0] = v1;
      s.h[t * s.ldh + r0] = h;
    }
    if (!a.oq) return;
    // Count this row in its group of 32; the warp that completes the group quantizes it for every token.
    __threadfence();
    __syncwarp();
    const int64_t g = r0 / 32;
    int prev = 0;
    if (lane == 0) prev = atomicAdd(a.counters + g, 1);
    prev = warp_max_int(lane == 0 ? prev : -1);
    if (prev != 31) return;
    __threadfence();
    VUNROLL for (int tt = 0; tt < N; ++tt) {
      const float v = ld_cg(s.h + tt * s.ldh + g * 32 + lane);
      quant_warp32(v, lane, a.oq + tt * a.oq_stride + g * 32, a.ods + tt * a.ods_stride + g);
    }
    if (lane == 0) a.counters[g] = 0;  // ready for the next launch
    return;
  }
  if (t >= N) return;
  if (s.mode == kMvRopeNormal || s.mode == kMvRopeNeox) {
    const int j = static_cast<int>(r0 % s.head_dim);
    const bool rotated = s.mode == kMvRopeNeox ? j < s.rope_dim / 2 : j < s.rope_dim;
    if (rotated) {
      const float p = static_cast<float>(a.pos[t]);
      const float angle = p * s.inv_freq[s.mode == kMvRopeNeox ? j : j / 2];
      float sn, cs;
      sin_cos(angle, &sn, &cs);
      const float x0 = v0, x1 = v1;
      v0 = x0 * cs - x1 * sn;
      v1 = x0 * sn + x1 * cs;
    }
  }
  const bool two = r1 != r0;
  s.y[t * s.ldy + r0] = v0;
  if (two) s.y[t * s.ldy + r1] = v1;
  if (s.cache) {
    const int64_t row = (static_cast<int64_t>(a.slot[t]) * a.n_ctx + a.pos[t]) * a.kv_dim;
    if (s.cache_f16) {
      uint16_t* c = static_cast<uint16_t*>(s.cache) + row;
      c[r0] = f2h(v0);
      if (two) c[r1] = f2h(v1);
    } else {
      float* c = static_cast<float*>(s.cache) + row;
      c[r0] = v0;
      if (two) c[r1] = v1;
    }
  }
}

VDEV int mv_seg_of(const MvArgs& a, int64_t it, int64_t* i) {
  if (it < a.seg[0].items) {
    *i = it;
    return 0;
  }
  it -= a.seg[0].items;
  if (it < a.seg[1].items) {
    *i = it;
    return 1;
  }
  *i = it - a.seg[1].items;
  return 2;
}

template <WFmt F, int N>
VDEV void mv_unit(const MvArgs& a, const typename Unit<F>::W& w0, const typename Unit<F>::W& w1, int u,
                  float (&acc)[2][N]) {
  using U = Unit<F>;
  VUNROLL for (int t = 0; t < N; ++t) {
    typename U::A x;
    if constexpr (F == WFmt::F32 || F == WFmt::F16 || F == WFmt::BF16)
      U::load_a(a.af, t, u, x);
    else
      U::load_a(a.aq, t, u, x);
    acc[0][t] += U::dot(w0, x, u);
    acc[1][t] += U::dot(w1, x, u);
  }
}

// One item: lanes walk units u = lane, lane + 32, ... two at a time (the loads of both first, then the products).
// The first two units' weights are loaded before pdl_wait(): they stream in while the previous kernel finishes.
template <WFmt F, int N>
VDEV void mv_item(const MvArgs& a, const MvSeg& s, int64_t i, int lane) {
  using U = Unit<F>;
  int64_t r0, r1;
  mv_rows(s, i, &r0, &r1);
  const int nu = static_cast<int>(a.units);
  float acc[2][N];
  VUNROLL for (int t = 0; t < N; ++t) acc[0][t] = acc[1][t] = 0.f;
  typename U::W wa0, wb0, wa1, wb1;
  int u = lane;
  bool h0 = u < nu, h1 = u + 32 < nu;
  if (h0) {
    U::load_w(s.wa, r0, u, wa0);
    U::load_w(s.wb, r1, u, wb0);
  }
  if (h1) {
    U::load_w(s.wa, r0, u + 32, wa1);
    U::load_w(s.wb, r1, u + 32, wb1);
  }
  pdl_wait();  // the activations come from the previous kernel
  pdl_trigger();
  for (;;) {
    if (h0) mv_unit<F, N>(a, wa0, wb0, u, acc);
    if (h1) mv_unit<F, N>(a, wa1, wb1, u + 32, acc);
    u += 64;
    if (u >= nu) break;
    h0 = true;
    h1 = u + 32 < nu;
    U::load_w(s.wa, r0, u, wa0);
    U::load_w(s.wb, r1, u, wb0);
    if (h1) {
      U::load_w(s.wa, r0, u + 32, wa1);
      U::load_w(s.wb, r1, u + 32, wb1);
    }
  }
  mv_epilogue<N>(a, s, r0, r1, lane, acc);
}

// Warp per item (items of all segments in a row); with a capped grid, warps loop over items.
template <WFmt F0, WFmt F1, int N>
__global__ void __launch_bounds__(kWarps * 32) mv_kernel(const __grid_constant__ MvArgs a) {
  const int lane = static_cast<int>(threadIdx.x & 31);
  const int64_t T = a.seg[0].items + a.seg[1].items + a.seg[2].items;
  const int64_t W = static_cast<int64_t>(gridDim.x) * kWarps;
  for (int64_t it = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5); it < T; it += W) {
    int64_t i;
    const MvSeg& sg = a.seg[mv_seg_of(a, it, &i)];
    if (F0 == F1 || sg.wa.fmt == F0)
      mv_item<F0, N>(a, sg, i, lane);
    else
      mv_item<F1, N>(a, sg, i, lane);
  }
}

template <WFmt F0, WFmt F1, int N>
void mv_go(const MvArgs& a, int64_t blocks, cudaStream_t s) {
  auto* k = &mv_kernel<F0, F1, N>;
  VLAUNCH_PDL(k, dim3(static_cast<unsigned>(blocks)), dim3(kWarps * 32), 0, s, a);
  VCHECK_LAUNCH("matmul (fused matvec)");
}

template <WFmt F0, WFmt F1>
void mv_n(const MvArgs& a, int n, int64_t blocks, cudaStream_t s) {
  switch (n) {
    case 1: mv_go<F0, F1, 1>(a, blocks, s); break;
    case 2: mv_go<F0, F1, 2>(a, blocks, s); break;
    case 3: mv_go<F0, F1, 3>(a, blocks, s); break;
    case 4: mv_go<F0, F1, 4>(a, blocks, s); break;
    case 5: mv_go<F0, F1, 5>(a, blocks, s); break;
    case 6: mv_go<F0, F1, 6>(a, blocks, s); break;
    case 7: mv_go<F0, F1, 7>(a, blocks, s); break;
    case 8: mv_go<F0, F1, 8>(a, blocks, s); break;
    default: throw std::runtime_error("CUDA backend: fused matvec called with " + std::to_string(n) + " tokens");
  }
}

}  // namespace

int64_t mv_items(const MvSeg& s) {
  switch (s.mode) {
    case kMvRopeNormal: return s.wa.rows / 2;
    case kMvRopeNeox: return s.wa.rows / 2;
    case kMvGlu: return s.wa.rows;
    default: return ceil_div(s.wa.rows, 2);
  }
}

void mv_launch(MvArgs a, int n, int max_blocks, cudaStream_t s) {
  if (a.nseg < 1 || a.nseg > kMvMaxSegs) throw std::runtime_error("CUDA backend: fused matvec: bad segment count");
  int64_t items = 0;
  for (int i = 0; i < a.nseg; ++i) {
    a.seg[i].items = mv_items(a.seg[i]);
    items += a.seg[i].items;
  }
  for (int i = a.nseg; i < kMvMaxSegs; ++i) a.seg[i] = MvSeg{};
  if (items <= 0) return;
  a.units = a.seg[0].wa.fmt == WFmt::Q8_0 || a.seg[0].wa.fmt == WFmt::Q4_0 ? a.seg[0].wa.nb
            : wfmt_is_float(a.seg[0].wa.fmt)                                ? a.seg[0].wa.Kp / 8
                                                                             : a.seg[0].wa.nb * 4;
  for (int i = 0; i < a.nseg; ++i)
    if (a.seg[i].wa.K != a.seg[0].wa.K || a.seg[i].wb.K != a.seg[0].wa.K || a.seg[i].wb.fmt != a.seg[i].wa.fmt)
      throw std::runtime_error("CUDA backend: fused matvec: segments differ in row length or format");
  int64_t blocks = ceil_div(items, kWarps);
  if (max_blocks > 0) blocks = std::min<int64_t>(blocks, max_blocks);
  WFmt f0 = a.seg[0].wa.fmt, f1 = f0;
  for (int i = 1; i < a.nseg; ++i)
    if (a.seg[i].wa.fmt != f0) f1 = a.seg[i].wa.fmt;
  for (int i = 0; i < a.nseg; ++i)
    if (a.seg[i].wa.fmt != f0 && a.seg[i].wa.fmt != f1)
      throw std::runtime_error("CUDA backend: fused matvec: more than two formats in one launch");
  if (!mv_formats_supported(f0, f1)) throw std::runtime_error("CUDA backend: fused matvec: unsupported formats");
  if (f1 == WFmt::Q4_K && f0 != WFmt::Q4_K) std::swap(f0, f1);
  if (f1 == WFmt::Q5_K && f0 == WFmt::Q6_K) std::swap(f0, f1);
  if (f0 == f1) {
    switch (f0) {
      case WFmt::Q4_K: mv_n<WFmt::Q4_K, WFmt::Q4_K>(a, n, blocks, s); break;
      case WFmt::Q5_K: mv_n<WFmt::Q5_K, WFmt::Q5_K>(a, n, blocks, s); break;
      case WFmt::Q6_K: mv_n<WFmt::Q6_K, WFmt::Q6_K>(a, n, blocks, s); break;
      case WFmt::Q8_0: mv_n<WFmt::Q8_0, WFmt::Q8_0>(a, n, blocks, s); break;
      case WFmt::Q4_0: mv_n<WFmt::Q4_0, WFmt::Q4_0>(a, n, blocks, s); break;
      case WFmt::F16: mv_n<WFmt::F16, WFmt::F16>(a, n, blocks, s); break;
      case WFmt::BF16: mv_n<WFmt::BF16, WFmt::BF16>(a, n, blocks, s); break;
      case WFmt::F32: mv_n<WFmt::F32, WFmt::F32>(a, n, blocks, s); break;
      default: throw std::runtime_error("CUDA backend: fused matvec: unsupported format");
    }
  } else if (f0 == WFmt::Q4_K && f1 == WFmt::Q6_K) {
    mv_n<WFmt::Q4_K, WFmt::Q6_K>(a, n, blocks, s);
  } else if (f0 == WFmt::Q5_K && f1 == WFmt::Q6_K) {
    mv_n<WFmt::Q5_K, WFmt::Q6_K>(a, n, blocks, s);
  } else {
    mv_n<WFmt::Q4_K, WFmt::Q5_K>(a, n, blocks, s);
  }
}

bool mv_formats_supported(WFmt f0, WFmt f1) {
  if (f0 == f1) return f0 != WFmt::Count;
  auto is = [&](WFmt x, WFmt y) { return (f0 == x && f1 == y) || (f0 == y && f1 == x); };
  return is(WFmt::Q4_K, WFmt::Q6_K) || is(WFmt::Q5_K, WFmt::Q6_K) || is(WFmt::Q4_K, WFmt::Q5_K);
}

}  // namespace vireo::VIREO_CUDA_NS
