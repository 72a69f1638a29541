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
// or the gate and up rows of a glu row); the lanes walk the units of the row (formats.cuh), kTripUnits units per
// trip (Q8_0 4, others 2) with all their 16-byte loads issued before the products. The first trip is loaded before
// pdl_wait(), so under programmatic dependent launch it streams in while the previous kernel (which writes the
// activations) finishes. Partial sums are reduced across the warp; lane t stores token t.
// (A version that staged weights through shared memory with cp.async rings ran at 1.7 TB/s against 3.0 TB/s for
// plain register loads on the 128256-row output matrix: see docs/CUDA-NOTES.md.)
// From a few tokens on, dp4a products cost more instructions than the weights take to stream; Q4_K/Q6_K launches
// then run on int8 tensor-core tiles (mv_tile_kernel below: 8 items of one segment per block, the same epilogues).
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

// The results v0, v1 (rows r0, r1) of one token t of one item: stores and the per-token epilogue of the mode.
VDEV void mv_store(const MvArgs& a, const MvSeg& s, int64_t r0, int64_t r1, int t, float v0, float v1) {
  if (s.mode == kMvGlu) {
    const float h = v0 / (1.f + expf(-v0)) * v1;
    if (s.y) s.y[t * s.ldy + r0] = v0;
    if (s.y2) s.y2[t * s.ldy2 + r0] = v1;
    s.h[t * s.ldh + r0] = h;
    return;
  }
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
  if (a.resid) {  // the folded block boundary (plain launches only): x += y
    float* x = a.resid + t * a.ld_resid;
    x[r0] += v0;
    if (two) x[r1] += v1;
  }
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

// Whether this warp's `count` (after its writes, made visible first) completes `total` on the counter; the warp that
// does may then read what the others wrote (warp-collective).
VDEV bool warp_completes(int* counter, int count, int total, int lane) {
  __threadfence();
  __syncwarp();
  int prev = 0;
  if (lane == 0) prev = atomicAdd(counter, count);
  prev = warp_max_int(lane == 0 ? prev : -1);
  if (prev + count != total) return false;
  __threadfence();
  return true;
}

// A phase of a chained launch has finished one more piece of its output (after the warp's writes); the warp that
// finishes the last raises the phase's done flags, one per lane (warp-collective).
VDEV void chain_signal(const MvArgs& a, int lane) {
  if (!a.done || !warp_completes(a.done, 1, a.done_target, lane)) return;
  st_release(a.done_flags + lane * 32, 1);
}

// glu with int8 output activations: the warp has finished `count` rows of group g (32 rows) and counts them on the
// group's atomic counter; the warp that completes the group quantizes it for every token (warp-collective).
template <int N>
VDEV void mv_glu_count(const MvArgs& a, const MvSeg& s, int64_t g, int count, int lane) {
  if (!a.oq || !warp_completes(a.counters + g, count, 32, lane)) return;
  VUNROLL for (int tt = 0; tt < N; ++tt) {
    const float v = ld_cg(s.h + tt * s.ldh + g * 32 + lane);
    quant_warp32(v, lane, a.oq + tt * a.oq_stride + g * 32, a.ods + tt * a.ods_stride + g);
  }
  if (lane == 0) a.counters[g] = 0;  // ready for the next launch
  chain_signal(a, lane);
}

// The folded residual + RMSNorm (MvArgs::resid): the warp has added its `count` rows of group g into the residual;
// the warp that completes the group quantizes x * norm_w of it and stores its sum of squares, and the warp that
// completes the last group applies the norm's scale to every group's ds (warp-collective).
template <int N>
VDEV void mv_resid_count(const MvArgs& a, int64_t g, int count, int lane) {
  if (!warp_completes(a.counters + g, count, 32, lane)) return;
  const int64_t groups = a.ods_stride;
  const float w = a.norm_w[g * 32 + lane];
  VUNROLL for (int tt = 0; tt < N; ++tt) {
    const float x = ld_cg(a.resid + tt * a.ld_resid + g * 32 + lane);
    quant_warp32(x * w, lane, a.oq + tt * a.oq_stride + g * 32, a.ods + tt * a.ods_stride + g);
    const float ss = warp_sum(x * x);
    if (lane == 0) a.ssq[tt * groups + g] = ss;
  }
  if (lane == 0) a.counters[g] = 0;  // ready for the next launch
  if (!warp_completes(a.counters + groups, 1, static_cast<int>(groups), lane)) return;
  VUNROLL for (int tt = 0; tt < N; ++tt) {
    float ss = 0.f;
    for (int64_t j = lane; j < groups; j += 32) ss += ld_cg(a.ssq + tt * groups + j);
    ss = warp_sum(ss);
    const float scale = 1.f / sqrtf(ss / static_cast<float>(groups * 32) + a.norm_eps);
    for (int64_t j = lane; j < groups; j += 32) {
      float2* d = a.ods + tt * a.ods_stride + j;
      const float dx = ld_cg(&d->x), dy = ld_cg(&d->y);
      *d = make_float2(dx * scale, dy * scale);
    }
  }
  if (lane == 0) a.counters[groups] = 0;
  chain_signal(a, lane);
}

template <int N>
VDEV void mv_epilogue(const MvArgs& a, const MvSeg& s, int64_t r0, int64_t r1, int lane, float (&acc)[2][N]) {
  float v0 = 0.f, v1 = 0.f;
  VUNROLL for (int t = 0; t < N; ++t) {
    const float x0 = warp_sum(acc[0][t]), x1 = warp_sum(acc[1][t]);
    if (lane == t) v0 = x0, v1 = x1;
  }
  if (lane < N) mv_store(a, s, r0, r1, lane, v0, v1);
  if (s.mode == kMvGlu) mv_glu_count<N>(a, s, r0 / 32, 1, lane);
  if (a.resid) mv_resid_count<N>(a, r0 / 32, 2, lane);  // rows r0, r0 + 1: one group (rows % 32 == 0)
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

// Units a lane loads per trip (both rows' weights of each, all issued before the products). More bytes in flight
// per warp cost registers, so fewer warps: on an H100 (8B decode, 2026-12-07) 4 units a trip were slower than 2
// for Q4_K (289 vs 334 tok/s) and F16 (146 vs 153) and faster for Q8_0 (265 vs 256).
template <WFmt F>
constexpr int kTripUnits = 2;
template <>
constexpr int kTripUnits<WFmt::Q8_0> = 4;

// One warp's sums for the two rows of an item: lanes walk units u = lane + 32 P kslice, then on by 32 P KS (the KS
// warps of a split item take turns over K), P = kTripUnits at a time (the loads of all first, then the products).
// The first trip's weights are loaded before pdl_wait(): they stream in while the previous kernel finishes.
// What a warp does between its first weight loads and its first products: wait for the kernel before (programmatic
// dependent launch) and let the next one start launching.
struct PdlWait {
  VDEV void operator()() const {
    pdl_wait();
    pdl_trigger();
  }
};

template <WFmt F, int N, int KS, class Wait = PdlWait>
VDEV void mv_sums(const MvArgs& a, const MvSeg& s, int64_t r0, int64_t r1, int lane, int kslice, float (&acc)[2][N],
                  const Wait& wait = Wait{}) {
  using U = Unit<F>;
  constexpr int P = kTripUnits<F>;
  const int nu = static_cast<int>(a.units);
  VUNROLL for (int t = 0; t < N; ++t) acc[0][t] = acc[1][t] = 0.f;
  typename U::W wa[P], wb[P];
  bool h[P];
  int u = lane + 32 * P * kslice;
  VUNROLL for (int p = 0; p < P; ++p) {
    h[p] = u + 32 * p < nu;
    if (h[p]) {
      U::load_w(s.wa, r0, u + 32 * p, wa[p]);
      U::load_w(s.wb, r1, u + 32 * p, wb[p]);
    }
  }
  wait();  // the activations come from the previous kernel (or phase)
  for (;;) {
    VUNROLL for (int p = 0; p < P; ++p)
      if (h[p]) mv_unit<F, N>(a, wa[p], wb[p], u + 32 * p, acc);
    u += 32 * P * KS;
    if (u >= nu) break;
    VUNROLL for (int p = 0; p < P; ++p) {
      h[p] = u + 32 * p < nu;
      if (h[p]) {
        U::load_w(s.wa, r0, u + 32 * p, wa[p]);
        U::load_w(s.wb, r1, u + 32 * p, wb[p]);
      }
    }
  }
}

// One item, one warp.
template <WFmt F, int N, class Wait = PdlWait>
VDEV void mv_item(const MvArgs& a, const MvSeg& s, int64_t i, int lane, const Wait& wait = Wait{}) {
  int64_t r0, r1;
  mv_rows(s, i, &r0, &r1);
  float acc[2][N];
  mv_sums<F, N, 1>(a, s, r0, r1, lane, 0, acc, wait);
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

// ---- few items, one token: K split over the warps of a block (CudaOptions::mv_ksplit: float weights by default) ----
// A launch of few items leaves most warp slots empty (a 4096-row matrix is 2,048 warps, under a quarter of an
// H100's; Nsight Compute on 8B F16: 24% achieved occupancy and 53-63% of the bandwidth, where 14336-row launches
// reach 85%). Here a block of kWarps warps takes one item, each warp every kWarps-th trip of units; the warps meet
// in shared memory and the first runs the epilogue. A separate kernel, so the common one keeps its code (folding
// the split into it cost 2-14% on an H100).
template <WFmt F0, WFmt F1>
__global__ void __launch_bounds__(kWarps * 32) mv_split_kernel(const __grid_constant__ MvArgs a) {
  VSHARED(float, part, kWarps * 2);
  const int lane = static_cast<int>(threadIdx.x & 31), warp = static_cast<int>(threadIdx.x >> 5);
  int64_t i;
  const MvSeg& sg = a.seg[mv_seg_of(a, blockIdx.x, &i)];
  int64_t r0, r1;
  mv_rows(sg, i, &r0, &r1);
  float acc[2][1];
  if (F0 == F1 || sg.wa.fmt == F0)
    mv_sums<F0, 1, kWarps>(a, sg, r0, r1, lane, warp, acc);
  else
    mv_sums<F1, 1, kWarps>(a, sg, r0, r1, lane, warp, acc);
  const float x0 = warp_sum(acc[0][0]), x1 = warp_sum(acc[1][0]);
  if (lane == 0) part[2 * warp] = x0, part[2 * warp + 1] = x1;
  __syncthreads();
  if (warp != 0) return;
  float v0 = 0.f, v1 = 0.f;
  for (int w = 0; w < kWarps; ++w) v0 += part[2 * w], v1 += part[2 * w + 1];
  if (lane == 0) mv_store(a, sg, r0, r1, 0, v0, v1);
  if (sg.mode == kMvGlu) mv_glu_count<1>(a, sg, r0 / 32, 1, lane);
}

// ---- chained launches (mv_chain_launch): phases in one grid, ordered by block ----
// Blocks first[p] .. first[p + 1] - 1 run phase p, one item a warp. A block of phase p > 0 loads its first weights
// like any matvec block, then waits until phase p - 1 has raised its done flag (thread 0 polls one of the flag's
// copies, the block meets at a barrier), so the phase's weight stream starts while the phase before drains instead
// of after a kernel boundary. Forward progress: a block waits only on blocks of lower index, which the hardware
// dispatches first, so they are running or done. The last block to finish resets the flags for the next launch.
struct MvChainArgs {
  MvArgs ph[kMvChainMax];
  int64_t first[kMvChainMax + 1] = {};
  int nph = 0;
  int* exited = nullptr;  // blocks finished
};
static_assert(sizeof(MvChainArgs) <= 4000, "a chained launch's arguments must fit the kernel parameter space");

VDEV void chain_wait(const int* flags) {
  if (threadIdx.x == 0) {
    const int* f = flags + (blockIdx.x % kChainFlags) * 32;
    while (ld_acquire(f) == 0) sleep_ns(100);
  }
  block_barrier_any();  // reached from the item paths of each format and from warps without an item
}

// The phase of this block.
VDEV int chain_phase(const MvChainArgs& c) {
  int p = 0;
  while (p + 1 < c.nph && static_cast<int64_t>(blockIdx.x) >= c.first[p + 1]) ++p;
  return p;
}

// A chained block's wait: the kernel before (PDL), then for a later phase the done flag of the phase before.
struct ChainWait {
  const int* flags;  // null in phase 0
  VDEV void operator()() const {
    pdl_wait();
    if (flags) chain_wait(flags);
    pdl_trigger();
  }
};

VDEV void chain_exit(const MvChainArgs& c) {
  __syncthreads();
  if (threadIdx.x != 0) return;
  __threadfence();
  if (atomicAdd(c.exited, 1) != static_cast<int>(gridDim.x) - 1) return;
  for (int p = 0; p < c.nph; ++p) {
    if (!c.ph[p].done) continue;
    *c.ph[p].done = 0;
    for (int j = 0; j < kChainFlags; ++j) c.ph[p].done_flags[j * 32] = 0;
  }
  *c.exited = 0;
}

template <WFmt F0, WFmt F1>
__global__ void __launch_bounds__(kWarps * 32) mv_chain_kernel(const __grid_constant__ MvChainArgs c) {
  const int lane = static_cast<int>(threadIdx.x & 31);
  const int p = chain_phase(c);
  const MvArgs& a = c.ph[p];
  const int64_t it = (static_cast<int64_t>(blockIdx.x) - c.first[p]) * kWarps + (threadIdx.x >> 5);
  const ChainWait wait{a.wait};
  if (it < a.seg[0].items + a.seg[1].items + a.seg[2].items) {
    int64_t i;
    const MvSeg& sg = a.seg[mv_seg_of(a, it, &i)];
    if (F0 == F1 || sg.wa.fmt == F0)
      mv_item<F0, 1>(a, sg, i, lane, wait);
    else
      mv_item<F1, 1>(a, sg, i, lane, wait);
  } else {
    wait();  // every warp meets the block's barrier once
  }
  chain_exit(c);
}

// ---- tensor-core tiles: a block of kTileWarps warps computes 8 items (16 rows) for up to 8 tokens ----
// The 16 rows of an m16n8 int8 product are the two rows of 8 items (A row g = r0 of item g, row g + 8 = r1), the 8
// columns are the tokens (token g's activations come from lane group g; tokens >= N read zeros). Each warp takes
// every kTileWarps-th 256-element block of K; the warps' partial sums meet in shared memory and warp 0 runs the
// epilogue: lane (g, tig) holds both rows of item g for tokens 2 tig and 2 tig + 1. Weights go straight from
// global memory into the fragment registers (no shared-memory staging, no barrier in the K loop); the next
// block's weights are loaded before the current block's products. Small integers (scales, the int32 products)
// become floats through small_int_to_float: conversions run at a quarter of the rate and would bound the loop.
constexpr int kTileWarps = 8;
constexpr int kTileItems = 8;

template <WFmt F>
struct TileW;

// Q4_K: lane tig holds bytes 8 tig .. 8 tig + 7 of each 32-byte chunk c of qs: the low nibbles are elements
// 8 tig .. 8 tig + 7 of sub-block 2c, the high nibbles the same elements of sub-block 2c + 1. One m16n8k32
// product per sub-block: fragment k = 4 tig + i is element 8 tig + i, k = 16 + 4 tig + i is element 8 tig + 4 + i,
// so one 8-byte load of the activations at 32 s + 8 tig is the B fragment.
template <>
struct TileW<WFmt::Q4_K> {
  uint4 meta;
  uint2 q[4];
  static VDEV void load(const MatView& m, int64_t row, int64_t b, int tig, TileW& w) {
    const uint8_t* blk = m.q + row * m.row_bytes + b * 144;
    w.meta = ld16(blk);
    VUNROLL for (int c = 0; c < 4; ++c) w.q[c] = ld8(blk + 16 + 32 * c + 8 * tig);
  }
  template <int NT>
  static VDEV void step(const TileW (&w)[2], const ActQ8& act, int64_t b, int g, int tig, int n,
                        float (&acc)[NT][2][2]) {
    float d[2], dmin[2];
    VUNROLL for (int r = 0; r < 2; ++r) {
      d[r] = h2f(static_cast<uint16_t>(w[r].meta.x & 0xffffu));
      dmin[r] = h2f(static_cast<uint16_t>(w[r].meta.x >> 16));
    }
    VUNROLL for (int sb = 0; sb < 8; ++sb) {
      const int c = sb >> 1, sh = 4 * (sb & 1);
      const uint32_t a0 = (w[0].q[c].x >> sh) & 0x0f0f0f0fu, a1 = (w[1].q[c].x >> sh) & 0x0f0f0f0fu;
      const uint32_t a2 = (w[0].q[c].y >> sh) & 0x0f0f0f0fu, a3 = (w[1].q[c].y >> sh) & 0x0f0f0f0fu;
      float fs[2], fm[2];
      VUNROLL for (int r = 0; r < 2; ++r) {
        int sc, mn;
        k4_scale_min_words(w[r].meta.y, w[r].meta.z, w[r].meta.w, sb, &sc, &mn);
        fs[r] = d[r] * small_int_to_float(sc), fm[r] = dmin[r] * small_int_to_float(mn);
      }
      VUNROLL for (int nt = 0; nt < NT; ++nt) {  // the same weight fragments for every 8 tokens
        const int t = 8 * nt + g;
        const uint2 x = t < n ? ld8(act.q + t * act.q_stride + 256 * b + 8 * tig + 32 * sb) : make_uint2(0u, 0u);
        int p[4];
        mma_s8_k32(p, a0, a1, a2, a3, x.x, x.y);
        const float2 x0 = act.ds[imin(8 * nt + 2 * tig, n - 1) * act.ds_stride + 8 * b + sb];
        const float2 x1 = act.ds[imin(8 * nt + 2 * tig + 1, n - 1) * act.ds_stride + 8 * b + sb];
        VUNROLL for (int r = 0; r < 2; ++r) {
          acc[nt][r][0] += fs[r] * x0.x * small_int_to_float(p[2 * r]) - fm[r] * x0.y;
          acc[nt][r][1] += fs[r] * x1.x * small_int_to_float(p[2 * r + 1]) - fm[r] * x1.y;
        }
      }
    }
  }
};

// Q6_K: 16-element scale groups, so one m16n8k16 product per group. Group G = 8n + 2k + hh covers elements
// e = 128n + 32k + 16hh + (0..15); lane tig holds e + 4 tig .. e + 4 tig + 3: their low bits are bytes
// 4 tig .. of ql[64n + 32(k & 1) + 16hh ..] (nibble k >> 1), their high bits bits 2k of qh[32n + 16hh + 4 tig ..].
template <>
struct TileW<WFmt::Q6_K> {
  uint32_t l0[2][2], l1[2][2], h[2][2];  // [n][hh]
  uint4 sc;
  float d;
  static VDEV void load(const MatView& m, int64_t row, int64_t b, int tig, TileW& w) {
    const uint8_t* body = m.q + row * m.row_bytes + b * 208;
    VUNROLL for (int n = 0; n < 2; ++n) {
      VUNROLL for (int hh = 0; hh < 2; ++hh) {
        w.l0[n][hh] = ld4(body + 64 * n + 16 * hh + 4 * tig);
        w.l1[n][hh] = ld4(body + 64 * n + 32 + 16 * hh + 4 * tig);
        w.h[n][hh] = ld4(body + 128 + 32 * n + 16 * hh + 4 * tig);
      }
    }
    w.sc = ld16(body + 192);
    w.d = h2f(m.aux[row * m.nb + b]);
  }
  template <int NT>
  static VDEV void step(const TileW (&w)[2], const ActQ8& act, int64_t b, int g, int tig, int n,
                        float (&acc)[NT][2][2]) {
    VUNROLL for (int h = 0; h < 2; ++h) {  // the superblock's halves (ql/qh index n of the layout above)
      VUNROLL for (int k = 0; k < 4; ++k) {
        VUNROLL for (int hh = 0; hh < 2; ++hh) {
          const int G = 8 * h + 2 * k + hh, sh = 4 * (k >> 1);
          uint32_t q[2];
          float fs[2];
          VUNROLL for (int r = 0; r < 2; ++r) {
            const uint32_t L = (k & 1) ? w[r].l1[h][hh] : w[r].l0[h][hh];
            const uint32_t v = ((L >> sh) & 0x0f0f0f0fu) | (((w[r].h[h][hh] >> (2 * k)) & 0x03030303u) << 4);
            q[r] = vsub4(v, 0x20202020u);
            const uint32_t scw = word_of(w[r].sc, G >> 2);
            fs[r] = w[r].d * small_int_to_float(static_cast<int8_t>((scw >> (8 * (G & 3))) & 0xffu));
          }
          VUNROLL for (int nt = 0; nt < NT; ++nt) {  // the same weight fragments for every 8 tokens
            const int t = 8 * nt + g;
            const uint32_t x =
                t < n ? ld4(act.q + t * act.q_stride + 256 * b + 4 * tig + 128 * h + 32 * k + 16 * hh) : 0u;
            int p[4];
            mma_s8_k16(p, q[0], q[1], x);
            const float da0 = act.ds[imin(8 * nt + 2 * tig, n - 1) * act.ds_stride + 8 * b + 4 * h + k].x;
            const float da1 = act.ds[imin(8 * nt + 2 * tig + 1, n - 1) * act.ds_stride + 8 * b + 4 * h + k].x;
            VUNROLL for (int r = 0; r < 2; ++r) {
              acc[nt][r][0] += fs[r] * da0 * small_int_to_float(p[2 * r]);
              acc[nt][r][1] += fs[r] * da1 * small_int_to_float(p[2 * r + 1]);
            }
          }
        }
      }
    }
  }
};

// This warp's share of K for rows r0 (of wa) and r1 (of wb): blocks first, first + stride, ..., for n tokens in
// NT tiles of 8.
template <WFmt F, int NT, class Wait = PdlWait>
VDEV void tile_rows(const MvArgs& a, const MvSeg& s, int64_t r0, int64_t r1, int first, int stride, int lane, int n,
                    float (&acc)[NT][2][2], const Wait& wait = Wait{}) {
  const int g = lane >> 2, tig = lane & 3;
  const int64_t nb = s.wa.nb;
  TileW<F> cur[2], nxt[2];
  int64_t b = first;
  if (b < nb) {
    TileW<F>::load(s.wa, r0, b, tig, nxt[0]);
    TileW<F>::load(s.wb, r1, b, tig, nxt[1]);
  }
  wait();  // the activations come from the previous kernel (or phase)
  for (; b < nb; b += stride) {
    cur[0] = nxt[0];
    cur[1] = nxt[1];
    if (b + stride < nb) {
      TileW<F>::load(s.wa, r0, b + stride, tig, nxt[0]);
      TileW<F>::load(s.wb, r1, b + stride, tig, nxt[1]);
    }
    TileW<F>::template step<NT>(cur, a.aq, b, g, tig, n, acc);
  }
}

VHD int64_t mv_tiles(const MvSeg& s) { return (s.items + kTileItems - 1) / kTileItems; }

// Block `tile` of a tile launch (every warp calls wait once).
template <WFmt F0, WFmt F1, int N, class Wait>
VDEV void mv_tile_block(const MvArgs& a, int64_t tile, const Wait& wait) {
  VSHARED(float, part, kTileWarps * 4 * 32);
  const int warp = static_cast<int>(threadIdx.x >> 5), lane = static_cast<int>(threadIdx.x & 31);
  int si = 0;
  while (si + 1 < kMvMaxSegs && tile >= mv_tiles(a.seg[si])) tile -= mv_tiles(a.seg[si++]);
  const MvSeg& s = a.seg[si];
  const int64_t i0 = tile * kTileItems;
  const int g = lane >> 2, tig = lane & 3;
  const int64_t item = i0 + g < s.items ? i0 + g : s.items - 1;  // a short last tile repeats its last item
  int64_t r0, r1;
  mv_rows(s, item, &r0, &r1);
  float acc[1][2][2] = {{{0.f, 0.f}, {0.f, 0.f}}};
  if (F0 == F1 || s.wa.fmt == F0)
    tile_rows<F0, 1>(a, s, r0, r1, warp, kTileWarps, lane, N, acc, wait);
  else
    tile_rows<F1, 1>(a, s, r0, r1, warp, kTileWarps, lane, N, acc, wait);
  VUNROLL for (int j = 0; j < 4; ++j) part[(warp * 4 + j) * 32 + lane] = acc[0][j >> 1][j & 1];
  __syncthreads();
  if (warp != 0) return;
  float v[4];
  VUNROLL for (int j = 0; j < 4; ++j) {
    float x = 0.f;
    for (int w = 0; w < kTileWarps; ++w) x += part[(w * 4 + j) * 32 + lane];
    v[j] = x;
  }
  if (i0 + g < s.items) {
    VUNROLL for (int j = 0; j < 2; ++j)
      if (2 * tig + j < N) mv_store(a, s, r0, r1, 2 * tig + j, v[j], v[2 + j]);
  }
  if (s.mode == kMvGlu) {
    const int64_t left = s.items - i0;
    mv_glu_count<N>(a, s, i0 / 32, static_cast<int>(left < kTileItems ? left : kTileItems), lane);
  }
  if (a.resid) mv_resid_count<N>(a, 2 * i0 / 32, 2 * kTileItems, lane);  // rows 2 i0 .. + 15: one group
}

template <WFmt F0, WFmt F1, int N>
__global__ void __launch_bounds__(kTileWarps * 32) mv_tile_kernel(const __grid_constant__ MvArgs a) {
  mv_tile_block<F0, F1, N>(a, blockIdx.x, PdlWait{});
}

// Chained phases on tiles (3-8 tokens): a block a tile, as mv_chain_kernel.
template <WFmt F0, WFmt F1, int N>
__global__ void __launch_bounds__(kTileWarps * 32) mv_tile_chain_kernel(const __grid_constant__ MvChainArgs c) {
  const int p = chain_phase(c);
  const MvArgs& a = c.ph[p];
  mv_tile_block<F0, F1, N>(a, static_cast<int64_t>(blockIdx.x) - c.first[p], ChainWait{a.wait});
  chain_exit(c);
}

// ---- wide tiles: plain products of kMatvecMaxN + 1 .. kTileMaxN tokens (continuous batching) ----
// The same fragments, for NT tiles of 8 tokens: every weight fragment a lane loads feeds NT products. The block's
// warps form rg row groups of 8 items (rg = 1, 2, 4, 8: as many as still leave two blocks per multiprocessor);
// the kTileWarps / rg warps of a group split K and meet in shared memory. More groups per block read the same
// activations, which then come from L1 rather than L2 (at 64 tokens they are 7x the weights' bytes per block).
template <WFmt F, int NT>
__global__ void __launch_bounds__(kTileWarps * 32) mv_wide_kernel(const __grid_constant__ MvArgs a, int n, int rg) {
  VSHARED(float, part, kTileWarps * NT * 4 * 32);
  const int warp = static_cast<int>(threadIdx.x >> 5), lane = static_cast<int>(threadIdx.x & 31);
  const int ks = kTileWarps / rg, grp = warp / ks, kslice = warp % ks;
  const MvSeg& s = a.seg[0];
  const int64_t i0 = (static_cast<int64_t>(blockIdx.x) * rg + grp) * kTileItems;
  const int g = lane >> 2, tig = lane & 3;
  float acc[NT][2][2];
  VUNROLL for (int nt = 0; nt < NT; ++nt) acc[nt][0][0] = acc[nt][0][1] = acc[nt][1][0] = acc[nt][1][1] = 0.f;
  int64_t r0 = 0, r1 = 0;
  if (i0 < s.items) {
    const int64_t item = i0 + g < s.items ? i0 + g : s.items - 1;  // a short last tile repeats its last item
    mv_rows(s, item, &r0, &r1);
    tile_rows<F, NT>(a, s, r0, r1, kslice, ks, lane, n, acc);
  } else {  // a group past the last item (last block): nothing to read
    pdl_wait();
    pdl_trigger();
  }
  VUNROLL for (int nt = 0; nt < NT; ++nt)
    VUNROLL for (int j = 0; j < 4; ++j) part[((warp * NT + nt) * 4 + j) * 32 + lane] = acc[nt][j >> 1][j & 1];
  __syncthreads();
  if (kslice != 0 || i0 + g >= s.items) return;
  VUNROLL for (int nt = 0; nt < NT; ++nt) {
    float v[4];
    VUNROLL for (int j = 0; j < 4; ++j) {
      float x = 0.f;
      for (int w = 0; w < ks; ++w) x += part[(((grp * ks + w) * NT + nt) * 4 + j) * 32 + lane];
      v[j] = x;
    }
    VUNROLL for (int j = 0; j < 2; ++j) {
      const int t = 8 * nt + 2 * tig + j;
      if (t < n) mv_store(a, s, r0, r1, t, v[j], v[2 + j]);
    }
  }
}

template <WFmt F, int NT>
void mv_wide_go(const MvArgs& a, int n, cudaStream_t s) {
  const int64_t groups = ceil_div(a.seg[0].items, kTileItems);
  int rg = kTileWarps;
  while (rg > 1 && ceil_div(groups, rg) < 2 * std::max(a.sms, 1)) rg /= 2;
  auto* k = &mv_wide_kernel<F, NT>;
  VLAUNCH_PDL(k, dim3(static_cast<unsigned>(ceil_div(groups, rg))), dim3(kTileWarps * 32), 0, s, a, n, rg);
  VCHECK_LAUNCH("matmul (tensor-core tiles, many tokens)");
}

template <WFmt F>
void mv_wide(const MvArgs& a, int n, cudaStream_t s) {
  if (a.nseg != 1 || a.seg[0].mode != kMvPlain || a.seg[0].cache)
    throw std::runtime_error("CUDA backend: tiles for more than " + std::to_string(kMatvecMaxN) +
                             " tokens take plain products only");
  switch ((n + 7) / 8) {
    case 2: return mv_wide_go<F, 2>(a, n, s);
    case 3: return mv_wide_go<F, 3>(a, n, s);
    case 4: return mv_wide_go<F, 4>(a, n, s);
    case 5: return mv_wide_go<F, 5>(a, n, s);
    case 6: return mv_wide_go<F, 6>(a, n, s);
    case 7: return mv_wide_go<F, 7>(a, n, s);
    case 8: return mv_wide_go<F, 8>(a, n, s);
    default: throw std::runtime_error("CUDA backend: tiles called with " + std::to_string(n) + " tokens");
  }
}

template <WFmt F0, WFmt F1, int N>
void mv_tile_go(const MvArgs& a, cudaStream_t s) {
  int64_t tiles = 0;
  for (int i = 0; i < a.nseg; ++i) tiles += mv_tiles(a.seg[i]);
  auto* k = &mv_tile_kernel<F0, F1, N>;
  VLAUNCH_PDL(k, dim3(static_cast<unsigned>(tiles)), dim3(kTileWarps * 32), 0, s, a);
  VCHECK_LAUNCH("matmul (fused matvec, tensor-core tiles)");
}

template <WFmt F0, WFmt F1, int N>
void mv_go(const MvArgs& a, int64_t blocks, cudaStream_t s) {
  auto* k = &mv_kernel<F0, F1, N>;
  VLAUNCH_PDL(k, dim3(static_cast<unsigned>(blocks)), dim3(kWarps * 32), 0, s, a);
  VCHECK_LAUNCH("matmul (fused matvec)");
}

template <WFmt F0, WFmt F1, int N>
void mv_pick(const MvArgs& a, bool tiles, bool split, int64_t blocks, cudaStream_t s) {
  if constexpr (mv_tile_format(F0) && mv_tile_format(F1)) {
    if (tiles) return mv_tile_go<F0, F1, N>(a, s);
  }
  if constexpr (N == 1) {
    if (split) {  // one block per item
      VLAUNCH_PDL((&mv_split_kernel<F0, F1>), dim3(static_cast<unsigned>(blocks)), dim3(kWarps * 32), 0, s, a);
      VCHECK_LAUNCH("matmul (fused matvec, K split over a block)");
      return;
    }
  }
  mv_go<F0, F1, N>(a, blocks, s);
}

template <WFmt F0, WFmt F1>
void mv_n(const MvArgs& a, int n, bool tiles, bool split, int64_t blocks, cudaStream_t s) {
  switch (n) {
    case 1: mv_pick<F0, F1, 1>(a, tiles, split, blocks, s); break;
    case 2: mv_pick<F0, F1, 2>(a, tiles, split, blocks, s); break;
    case 3: mv_pick<F0, F1, 3>(a, tiles, split, blocks, s); break;
    case 4: mv_pick<F0, F1, 4>(a, tiles, split, blocks, s); break;
    case 5: mv_pick<F0, F1, 5>(a, tiles, split, blocks, s); break;
    case 6: mv_pick<F0, F1, 6>(a, tiles, split, blocks, s); break;
    case 7: mv_pick<F0, F1, 7>(a, tiles, split, blocks, s); break;
    case 8: mv_pick<F0, F1, 8>(a, tiles, split, blocks, s); break;
    default:
      if constexpr (F0 == F1 && mv_tile_format(F0)) {
        if (tiles && n <= kTileMaxN) return mv_wide<F0>(a, n, s);
      }
      throw std::runtime_error("CUDA backend: fused matvec called with " + std::to_string(n) + " tokens");
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

// Items per segment, unused segments cleared, units per row; the launch's items. Throws on inconsistent segments.
static int64_t mv_prepare(MvArgs& a) {
  if (a.nseg < 1 || a.nseg > kMvMaxSegs) throw std::runtime_error("CUDA backend: fused matvec: bad segment count");
  int64_t items = 0;
  for (int i = 0; i < a.nseg; ++i) {
    a.seg[i].items = mv_items(a.seg[i]);
    items += a.seg[i].items;
  }
  for (int i = a.nseg; i < kMvMaxSegs; ++i) a.seg[i] = MvSeg{};
  a.units = a.seg[0].wa.fmt == WFmt::Q8_0 || a.seg[0].wa.fmt == WFmt::Q4_0 ? a.seg[0].wa.nb
            : wfmt_is_float(a.seg[0].wa.fmt)                                ? a.seg[0].wa.Kp / 8
                                                                             : a.seg[0].wa.nb * 4;
  for (int i = 0; i < a.nseg; ++i)
    if (a.seg[i].wa.K != a.seg[0].wa.K || a.seg[i].wb.K != a.seg[0].wa.K || a.seg[i].wb.fmt != a.seg[i].wa.fmt)
      throw std::runtime_error("CUDA backend: fused matvec: segments differ in row length or format");
  return items;
}

// The (at most two) weight formats of phases ph[0 .. nph - 1], f0 == f1 for one; false for more than two.
static bool mv_format_pair(const MvArgs* ph, int nph, WFmt* f0, WFmt* f1) {
  *f0 = *f1 = ph[0].seg[0].wa.fmt;
  for (int p = 0; p < nph; ++p)
    for (int i = 0; i < ph[p].nseg; ++i) {
      const WFmt f = ph[p].seg[i].wa.fmt;
      if (f == *f0 || f == *f1) continue;
      if (*f1 != *f0) return false;
      *f1 = f;
    }
  // the order the launchers instantiate: Q4_K first, Q5_K before Q6_K
  if (*f1 == WFmt::Q4_K && *f0 != WFmt::Q4_K) std::swap(*f0, *f1);
  if (*f1 == WFmt::Q5_K && *f0 == WFmt::Q6_K) std::swap(*f0, *f1);
  return true;
}

void mv_launch(MvArgs a, int n, int max_blocks, int tile_min_n, int split_few, cudaStream_t s) {
  a.wait = nullptr;
  a.done = a.done_flags = nullptr;
  const int64_t items = mv_prepare(a);
  if (items <= 0) return;
  int64_t blocks = ceil_div(items, kWarps);
  if (max_blocks > 0) blocks = std::min<int64_t>(blocks, max_blocks);
  WFmt f0, f1;
  if (!mv_format_pair(&a, 1, &f0, &f1))
    throw std::runtime_error("CUDA backend: fused matvec: more than two formats in one launch");
  // One token, few items (fewer warps than 32 per multiprocessor) and enough units for every lane of kWarps warps:
  // one block per item with K split over its warps, where enabled (by default for float weights only: on an H100
  // it took 8B F16 decode from 155 to 164 tok/s and Q8_0 from 262 down to 235).
  const bool split_format = split_few >= 2 || (split_few == 1 && wfmt_is_float(f0) && wfmt_is_float(f1));
  bool split = split_format && n == 1 && max_blocks <= 0 && items < 32LL * std::max(a.sms, 1) &&
                     a.units >= 32LL * kWarps;
  if (a.resid) split = false;  // the residual epilogue is in the warp-per-item and tile kernels only
  if (split) blocks = items;
  if (!mv_formats_supported(f0, f1)) throw std::runtime_error("CUDA backend: fused matvec: unsupported formats");
  if (a.resid && (a.nseg != 1 || a.seg[0].mode != kMvPlain || a.seg[0].wa.rows % 32 != 0 || !a.oq || !a.ssq ||
                  !a.counters || a.ods_stride * 32 != a.seg[0].wa.rows || n > kMatvecMaxN))
    throw std::runtime_error("CUDA backend: fused matvec: bad residual + norm epilogue");
  const bool tiles = mv_tiles_take(f0, n, tile_min_n) && mv_tiles_take(f1, n, tile_min_n);
  if (f0 == f1) {
    switch (f0) {
      case WFmt::Q4_K: mv_n<WFmt::Q4_K, WFmt::Q4_K>(a, n, tiles, split, blocks, s); break;
      case WFmt::Q5_K: mv_n<WFmt::Q5_K, WFmt::Q5_K>(a, n, tiles, split, blocks, s); break;
      case WFmt::Q6_K: mv_n<WFmt::Q6_K, WFmt::Q6_K>(a, n, tiles, split, blocks, s); break;
      case WFmt::Q8_0: mv_n<WFmt::Q8_0, WFmt::Q8_0>(a, n, tiles, split, blocks, s); break;
      case WFmt::Q4_0: mv_n<WFmt::Q4_0, WFmt::Q4_0>(a, n, tiles, split, blocks, s); break;
      case WFmt::F16: mv_n<WFmt::F16, WFmt::F16>(a, n, tiles, split, blocks, s); break;
      case WFmt::BF16: mv_n<WFmt::BF16, WFmt::BF16>(a, n, tiles, split, blocks, s); break;
      case WFmt::F32: mv_n<WFmt::F32, WFmt::F32>(a, n, tiles, split, blocks, s); break;
      default: throw std::runtime_error("CUDA backend: fused matvec: unsupported format");
    }
  } else if (f0 == WFmt::Q4_K && f1 == WFmt::Q6_K) {
    mv_n<WFmt::Q4_K, WFmt::Q6_K>(a, n, tiles, split, blocks, s);
  } else if (f0 == WFmt::Q5_K && f1 == WFmt::Q6_K) {
    mv_n<WFmt::Q5_K, WFmt::Q6_K>(a, n, tiles, split, blocks, s);
  } else {
    mv_n<WFmt::Q4_K, WFmt::Q5_K>(a, n, tiles, split, blocks, s);
  }
}

// Whether phases ph[0 .. nph - 1] of n tokens can run as one chained launch (mv_chain_launch).
bool mv_chain_supported(const MvArgs* ph, int nph, int n, int tile_min_n) {
  if (nph < 2 || nph > kMvChainMax || n < 1 || n > kMatvecMaxN) return false;
  WFmt f0, f1;
  if (!mv_format_pair(ph, nph, &f0, &f1) || !mv_formats_supported(f0, f1) || !wfmt_uses_q8(f0) || !wfmt_uses_q8(f1))
    return false;
  // one token on the warp-per-item kernel, or 3-8 on the tiles (both formats tiled)
  const bool tiles = mv_tiles_take(f0, n, tile_min_n) && mv_tiles_take(f1, n, tile_min_n);
  if (tiles ? n < 3 : (n != 1 || mv_tiles_take(f0, n, tile_min_n) || mv_tiles_take(f1, n, tile_min_n))) return false;
  for (int p = 0; p < nph; ++p) {
    const MvArgs& a = ph[p];
    if (a.nseg < 1 || a.nseg > kMvMaxSegs) return false;
    if (p + 1 == nph) break;
    // the phase after reads this one's int8 output, complete when the glu groups or the folded boundary are
    const bool glu = a.nseg == 1 && a.seg[0].mode == kMvGlu && a.oq && a.seg[0].wa.rows % 32 == 0;
    if (!(glu || (a.resid && a.oq))) return false;
    if (ph[p + 1].aq.q != a.oq || ph[p + 1].aq.ds != a.ods) return false;
  }
  return true;
}

template <WFmt F0, WFmt F1>
static void mv_chain_go(const MvChainArgs& c, cudaStream_t s) {
  auto* k = &mv_chain_kernel<F0, F1>;
  VLAUNCH_PDL(k, dim3(static_cast<unsigned>(c.first[c.nph])), dim3(kWarps * 32), 0, s, c);
  VCHECK_LAUNCH("matmul (chained matvec phases)");
}

template <WFmt F0, WFmt F1>
static void mv_tile_chain_go(const MvChainArgs& c, int n, cudaStream_t s) {
  void (*k)(MvChainArgs) = nullptr;
  switch (n) {
    case 3: k = &mv_tile_chain_kernel<F0, F1, 3>; break;
    case 4: k = &mv_tile_chain_kernel<F0, F1, 4>; break;
    case 5: k = &mv_tile_chain_kernel<F0, F1, 5>; break;
    case 6: k = &mv_tile_chain_kernel<F0, F1, 6>; break;
    case 7: k = &mv_tile_chain_kernel<F0, F1, 7>; break;
    case 8: k = &mv_tile_chain_kernel<F0, F1, 8>; break;
    default: throw std::runtime_error("CUDA backend: chained tiles called with " + std::to_string(n) + " tokens");
  }
  VLAUNCH_PDL(k, dim3(static_cast<unsigned>(c.first[c.nph])), dim3(kTileWarps * 32), 0, s, c);
  VCHECK_LAUNCH("matmul (chained matvec phases, tensor-core tiles)");
}

void mv_chain_launch(const MvArgs* ph, int nph, int n, int tile_min_n, int* sync, cudaStream_t s) {
  if (!mv_chain_supported(ph, nph, n, tile_min_n))
    throw std::runtime_error("CUDA backend: chained matvec: unsupported phases");
  const bool tiles = n > 1;  // mv_chain_supported: more than one token only on the tiles
  MvChainArgs c;
  c.nph = nph;
  c.exited = sync;
  for (int p = 0; p < nph; ++p) {
    MvArgs& a = c.ph[p];
    a = ph[p];
    const int64_t items = mv_prepare(a);
    if (items <= 0) throw std::runtime_error("CUDA backend: chained matvec: an empty phase");
    int64_t blocks = ceil_div(items, kWarps);
    if (tiles) {
      blocks = 0;
      for (int i = 0; i < a.nseg; ++i) blocks += mv_tiles(a.seg[i]);
    }
    c.first[p + 1] = c.first[p] + blocks;
    a.wait = p > 0 ? c.ph[p - 1].done_flags : nullptr;
    a.done = a.done_flags = nullptr;
    a.done_target = 0;
    if (p + 1 < nph) {
      a.done = sync + 1 + p;
      a.done_flags = sync + 8 + p * kChainFlags * 32;
      a.done_target = a.seg[0].mode == kMvGlu ? static_cast<int>(a.seg[0].wa.rows / 32) : 1;
    }
  }
  if (c.first[nph] > 0x7fffffff) throw std::runtime_error("CUDA backend: chained matvec: grid too large");
  WFmt f0, f1;
  mv_format_pair(ph, nph, &f0, &f1);
  if (tiles) {
    if (f0 == WFmt::Q4_K && f1 == WFmt::Q4_K) return mv_tile_chain_go<WFmt::Q4_K, WFmt::Q4_K>(c, n, s);
    if (f0 == WFmt::Q6_K && f1 == WFmt::Q6_K) return mv_tile_chain_go<WFmt::Q6_K, WFmt::Q6_K>(c, n, s);
    return mv_tile_chain_go<WFmt::Q4_K, WFmt::Q6_K>(c, n, s);
  }
  if (f0 == f1) {
    switch (f0) {
      case WFmt::Q4_K: return mv_chain_go<WFmt::Q4_K, WFmt::Q4_K>(c, s);
      case WFmt::Q5_K: return mv_chain_go<WFmt::Q5_K, WFmt::Q5_K>(c, s);
      case WFmt::Q6_K: return mv_chain_go<WFmt::Q6_K, WFmt::Q6_K>(c, s);
      case WFmt::Q8_0: return mv_chain_go<WFmt::Q8_0, WFmt::Q8_0>(c, s);
      case WFmt::Q4_0: return mv_chain_go<WFmt::Q4_0, WFmt::Q4_0>(c, s);
      default: throw std::runtime_error("CUDA backend: chained matvec: unsupported format");
    }
  } else if (f0 == WFmt::Q4_K && f1 == WFmt::Q6_K) {
    mv_chain_go<WFmt::Q4_K, WFmt::Q6_K>(c, s);
  } else if (f0 == WFmt::Q5_K && f1 == WFmt::Q6_K) {
    mv_chain_go<WFmt::Q5_K, WFmt::Q6_K>(c, s);
  } else {
    mv_chain_go<WFmt::Q4_K, WFmt::Q5_K>(c, s);
  }
}

bool mv_formats_supported(WFmt f0, WFmt f1) {
  if (f0 == f1) return f0 != WFmt::Count;
  auto is = [&](WFmt x, WFmt y) { return (f0 == x && f1 == y) || (f0 == y && f1 == x); };
  return is(WFmt::Q4_K, WFmt::Q6_K) || is(WFmt::Q5_K, WFmt::Q6_K) || is(WFmt::Q4_K, WFmt::Q5_K);
}

}  // namespace vireo::VIREO_CUDA_NS
