// Matrix-matrix for a few to a few dozen tokens (batched decode of many sequences, short prompt chunks):
// quantized weights are dequantized tile by tile into shared memory as f16 and multiplied on tensor cores
// (WMMA 16x16x16, f32 accumulation). Every weight byte is read from memory once per step (for up to 64 tokens),
// where the prefill path (gemm.cu) first writes an f16 copy of the whole matrix to global memory and reads it back.
//
// Block: 4 warps own 64 weight rows (16 each) and BN tokens (16, 32 or 64); K advances 64 at a time:
//   weights  [64 rows][64 k]  decoded with decode8<F> (formats.cuh) -> f16 in shared memory (A, row-major)
//   tokens   [BN][64 k]       f16 activations (prep_act_f16)      -> shared memory (B, column-major)
//   out      [BN][64 rows]    staged in shared memory, written row by row (coalesced over weight rows)
#include <algorithm>

#include "backend/cuda/kernels.h"
#if !defined(VIREO_CUDA_EMU)
#include <mma.h>  // the emulator declares its own wmma (src/backend/cuda/emu/emu_runtime.h)
#endif

namespace vireo::VIREO_CUDA_NS {
namespace {

using namespace nvcuda;

constexpr int kBM = 64, kBK = 64, kThreads = 128;  // one 32-weight run per thread per K step
static_assert(kBM * kBK / 32 == kThreads, "the weight tile is one 32-weight run per thread");
constexpr int kLd = kBK + 8;  // shared-memory row stride in halves: a multiple of 8 (WMMA) that staggers banks

// 32 consecutive weights (k0 a multiple of 32) of one row, in two halves so the K loop can overlap them:
// load() issues the 16-byte loads of the run (Q4_K: 3; Q6_K: 4 + its 2 scale bytes; Q8_0: 2 — where decode8 reads
// byte by byte), decode() turns the registers into 16 f16 pairs. Other layouts decode in decode() with decode8.
template <WFmt F>
struct Run32 {
  const MatView* w;
  int64_t row, k0;
  __device__ __forceinline__ void load(const MatView& m, int64_t r, int64_t k) { w = &m, row = r, k0 = k; }
  __device__ __forceinline__ void decode(uint32_t out[16]) const {
#pragma unroll
    for (int g = 0; g < 4; ++g) {
      float v[8];
      decode8<F>(*w, row, k0 + 8 * g, v);
#pragma unroll
      for (int i = 0; i < 4; ++i)
        out[4 * g + i] = pack_f16x2(v[2 * i], v[2 * i + 1]);
    }
  }
};

// Q4_K, Q6_K and Q8_0 dequantize straight to f16 pairs (formats.cuh: kF16Magic, q4k_f16_pair, q6k_f16_pair).

template <>
struct Run32<WFmt::Q4_K> {
  uint4 head, q0, q1;
  int sub;  // sub-block 0..7 of the 256-weight block
  __device__ __forceinline__ void load(const MatView& w, int64_t row, int64_t k0) {
    const int e = static_cast<int>(k0 % 256), c = e / 64;
    sub = e / 32;
    const uint8_t* blk = w.q + row * w.row_bytes + (k0 / 256) * 144;
    head = ld16(blk);
    q0 = ld16(blk + 16 + 32 * c);
    q1 = ld16(blk + 32 + 32 * c);
  }
  __device__ __forceinline__ void decode(uint32_t out[16]) const {
    const float d = h2f(static_cast<uint16_t>(head.x & 0xffff)), dmin = h2f(static_cast<uint16_t>(head.x >> 16));
    int sc, mn;
    k4_scale_min_words(head.y, head.z, head.w, sub, &sc, &mn);
    const float dd = d * static_cast<float>(sc), mm = dmin * static_cast<float>(mn);
    const uint32_t dd2 = pack_f16x2(dd, dd), nm2 = pack_f16x2(-mm, -mm);
    const int shift = 4 * (sub & 1);
#pragma unroll
    for (int i = 0; i < 8; ++i) {  // word i: weights 4i .. 4i+3 of the run
      const uint32_t word = word_of(i < 4 ? q0 : q1, i % 4);
#pragma unroll
      for (int p = 0; p < 2; ++p) {
        out[2 * i + p] = q4k_f16_pair(word, p, shift, dd2, nm2);
      }
    }
  }
};

template <>
struct Run32<WFmt::Q6_K> {
  uint4 l0, l1, h0, h1;
  float s0, s1;
  int k;  // which 2 bits of qh / nibble of ql
  __device__ __forceinline__ void load(const MatView& w, int64_t row, int64_t k0) {
    const int64_t b = k0 / 256;
    const int e = static_cast<int>(k0 % 256), n = e / 128;
    k = (e % 128) / 32;
    const uint8_t* body = w.q + row * w.row_bytes + b * 208;
    const float d = h2f(w.aux[row * w.nb + b]);
    s0 = d * static_cast<float>(static_cast<int8_t>(body[192 + e / 16]));
    s1 = d * static_cast<float>(static_cast<int8_t>(body[192 + e / 16 + 1]));
    l0 = ld16(body + 64 * n + 32 * (k & 1));
    l1 = ld16(body + 64 * n + 32 * (k & 1) + 16);
    h0 = ld16(body + 128 + 32 * n);
    h1 = ld16(body + 128 + 32 * n + 16);
  }
  __device__ __forceinline__ void decode(uint32_t out[16]) const {
    const int lshift = k < 2 ? 0 : 4, hshift = 2 * k;
    const uint32_t s0_2 = pack_f16x2(s0, s0), s1_2 = pack_f16x2(s1, s1);
#pragma unroll
    for (int i = 0; i < 8; ++i) {  // word i: weights 4i .. 4i+3 of the run (the first 16 scaled by s0)
      const uint32_t lw = word_of(i < 4 ? l0 : l1, i % 4), hw = word_of(i < 4 ? h0 : h1, i % 4);
#pragma unroll
      for (int p = 0; p < 2; ++p) out[2 * i + p] = q6k_f16_pair(lw, hw, p, lshift, hshift, i < 4 ? s0_2 : s1_2);
    }
  }
};

template <>
struct Run32<WFmt::Q8_0> {
  int4 a, b;
  float d;
  __device__ __forceinline__ void load(const MatView& w, int64_t row, int64_t k0) {
    const uint8_t* r = w.q + row * w.row_bytes;
    d = h2f(w.aux[row * w.nb + k0 / 32]);
    a = ld16i(r + k0);
    b = ld16i(r + k0 + 16);
  }
  __device__ __forceinline__ void decode(uint32_t out[16]) const {
    const uint32_t d2 = pack_f16x2(d, d);
    constexpr uint32_t kBias = 0x64806480u;  // 1152 = 1024 + 128 in both halves
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const uint32_t word = static_cast<uint32_t>(iword_of(i < 4 ? a : b, i % 4));
#pragma unroll
      for (int p = 0; p < 2; ++p) {
        // int8 q -> the byte q + 128 (sign bit flipped) under the f16 exponent of 1024: 1152 + q, exactly
        const uint32_t v = (byte_pair(word, p) ^ 0x00800080u) | kF16Magic;
        out[2 * i + p] = hmul2_bits(hsub2_bits(v, kBias), d2);
      }
    }
  }
};

template <WFmt F, int BN>
__global__ void __launch_bounds__(kThreads)
    qgemm_kernel(MatView w, const uint16_t* __restrict__ x, int m, float* __restrict__ y, int64_t ldy,
                 int64_t k_per_split) {
  VSHARED_ALIGNED(__half, ws, kBM * kLd, 32);
  VSHARED_ALIGNED(__half, xs, BN * kLd, 32);
  VSHARED_ALIGNED(float, cs, BN * (kBM + 4), 32);
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kBM;
  const int t0 = static_cast<int>(blockIdx.y) * BN;

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[BN / 16];
  for (int j = 0; j < BN / 16; ++j) wmma::fill_fragment(acc[j], 0.f);

  // Split-K: block z covers K range [z * k_per_split, ...) and writes its partial sums to its own slice of y
  // (then y is the scratch [splits][m][rows], summed in a fixed order by reduce_segs_kernel: deterministic).
  const int64_t k_begin = static_cast<int64_t>(blockIdx.z) * k_per_split;
  const int64_t k_end = k_begin + k_per_split < w.Kp ? k_begin + k_per_split : w.Kp;
  if (gridDim.z > 1) y += static_cast<int64_t>(blockIdx.z) * m * ldy;
  // Software pipeline: the loads of tile k+1 (weights and activations, into registers) are in flight while the
  // tensor cores work on tile k from shared memory.
  const int r_own = static_cast<int>(threadIdx.x) / 2, c_own = static_cast<int>(threadIdx.x) % 2;
  const bool row_ok = row0 + r_own < w.rows;
  constexpr int kXLoads = BN * kBK / 8 / kThreads;  // 16-byte activation loads per thread per tile
  Run32<F> run;
  uint4 xr[kXLoads];
  auto fetch = [&](int64_t k0) {
    if (row_ok) run.load(w, row0 + r_own, k0 + 32 * c_own);
#pragma unroll
    for (int i = 0; i < kXLoads; ++i) {
      const int g = static_cast<int>(threadIdx.x) + i * kThreads;
      const int t = g / (kBK / 8), c = g % (kBK / 8);
      xr[i] = t0 + t < m ? *reinterpret_cast<const uint4*>(x + static_cast<int64_t>(t0 + t) * w.Kp + k0 + 8 * c)
                         : make_uint4(0, 0, 0, 0);
    }
  };
  if (k_begin < k_end) fetch(k_begin);
  for (int64_t k0 = k_begin; k0 < k_end; k0 += kBK) {
    {
      uint32_t v[16];
      if (row_ok) {
        run.decode(v);
      } else {
#pragma unroll
        for (int i = 0; i < 16; ++i) v[i] = 0;
      }
      uint4* dst = reinterpret_cast<uint4*>(ws + r_own * kLd + 32 * c_own);
#pragma unroll
      for (int i = 0; i < 4; ++i) dst[i] = make_uint4(v[4 * i], v[4 * i + 1], v[4 * i + 2], v[4 * i + 3]);
#pragma unroll
      for (int i = 0; i < kXLoads; ++i) {
        const int g = static_cast<int>(threadIdx.x) + i * kThreads;
        *reinterpret_cast<uint4*>(xs + (g / (kBK / 8)) * kLd + 8 * (g % (kBK / 8))) = xr[i];
      }
    }
    __syncthreads();
    if (k0 + kBK < k_end) fetch(k0 + kBK);
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
      wmma::load_matrix_sync(a, ws + warp * 16 * kLd + kk, kLd);
#pragma unroll
      for (int j = 0; j < BN / 16; ++j) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> b;
        wmma::load_matrix_sync(b, xs + j * 16 * kLd + kk, kLd);
        wmma::mma_sync(acc[j], a, b, acc[j]);
      }
    }
    __syncthreads();
  }
  // cs[t][r]: the accumulator tile (rows r of this warp, tokens t of fragment j) stored column-major.
  for (int j = 0; j < BN / 16; ++j)
    wmma::store_matrix_sync(cs + j * 16 * (kBM + 4) + warp * 16, acc[j], kBM + 4, wmma::mem_col_major);
  __syncthreads();
  for (int i = static_cast<int>(threadIdx.x); i < BN * kBM; i += kThreads) {
    const int t = i / kBM, r = i % kBM;
    if (t0 + t < m && row0 + r < w.rows) y[static_cast<int64_t>(t0 + t) * ldy + row0 + r] = cs[t * (kBM + 4) + r];
  }
}

// y[t][r] = sum over z of part[z][t][r], in that order; the scratch rows are those of up to 3 matrices side by side
// (one for qgemm.cu, the segments of a qgemm_frag_multi launch), each summed into its own y.
__global__ void __launch_bounds__(256) reduce_segs_kernel(const float* __restrict__ part, int splits, int m, ReduceSegs r) {
  pdl_wait();
  pdl_trigger();
  const int64_t rows = r.row_end[r.nseg - 1];
  const int64_t total = static_cast<int64_t>(m) * rows;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float acc = 0.f;
    for (int z = 0; z < splits; ++z) acc += part[z * total + i];
    const int64_t t = i / rows, c = i % rows;
    const int s = c < r.row_end[0] ? 0 : (c < r.row_end[1] ? 1 : 2);
    const int64_t c0 = s == 0 ? 0 : (s == 1 ? r.row_end[0] : r.row_end[1]);
    float* y = s == 0 ? r.y[0] : (s == 1 ? r.y[1] : r.y[2]);
    const int64_t ldy = s == 0 ? r.ldy[0] : (s == 1 ? r.ldy[1] : r.ldy[2]);
    y[t * ldy + (c - c0)] = acc;
  }
}

int bn_for(int m) { return m <= 16 ? 16 : (m <= 32 ? 32 : 64); }

}  // namespace

void qgemm_reduce(const float* part, int splits, int m, int64_t rows, float* y, int64_t ldy, cudaStream_t s) {
  ReduceSegs r;
  r.row_end[0] = rows, r.y[0] = y, r.ldy[0] = ldy;
  qgemm_reduce_segs(part, splits, m, r, s);
}

void qgemm_reduce_segs(const float* part, int splits, int m, const ReduceSegs& r, cudaStream_t s) {
  const int64_t blocks = std::min<int64_t>(ceil_div(static_cast<int64_t>(m) * r.row_end[r.nseg - 1], 256), 4096);
  VLAUNCH_PDL(reduce_segs_kernel, dim3(static_cast<unsigned>(blocks)), dim3(256), 0, s, part, splits, m, r);
  VCHECK_LAUNCH("matmul (split-K sum)");
}

namespace {

template <WFmt F, int BN>
void go(const MatView& w, const uint16_t* x, int m, float* y, int64_t ldy, float* part, int splits, cudaStream_t s) {
  auto* k = &qgemm_kernel<F, BN>;
  const int64_t tiles = ceil_div(w.Kp, kBK);
  const int64_t k_per_split = ceil_div(tiles, splits) * kBK;
  const dim3 grid(static_cast<unsigned>(ceil_div(w.rows, kBM)), static_cast<unsigned>(ceil_div(m, BN)),
                  static_cast<unsigned>(splits));
  if (splits == 1) {
    VLAUNCH(k, grid, dim3(kThreads), 0, s, w, x, m, y, ldy, k_per_split);
  } else {
    VLAUNCH(k, grid, dim3(kThreads), 0, s, w, x, m, part, static_cast<int64_t>(w.rows), k_per_split);
  }
  VCHECK_LAUNCH("matmul (tensor-core tiles of dequantized weights)");
  if (splits > 1) qgemm_reduce(part, splits, m, w.rows, y, ldy, s);
}

template <WFmt F>
void pick(const MatView& w, const uint16_t* x, int m, float* y, int64_t ldy, float* part, int splits, cudaStream_t s) {
  if (m <= 16) go<F, 16>(w, x, m, y, ldy, part, splits, s);
  else if (m <= 32) go<F, 32>(w, x, m, y, ldy, part, splits, s);
  else go<F, 64>(w, x, m, y, ldy, part, splits, s);
}

}  // namespace

bool qgemm_supported(const MatView& w) {
  if (w.Kp % kBK != 0) return false;
  switch (w.fmt) {
    case WFmt::Q8_0: case WFmt::Q4_0: case WFmt::Q4_K: case WFmt::Q5_K: case WFmt::Q6_K: case WFmt::BF16: return true;
    default: return false;  // F16 goes straight to cuBLAS; F32 keeps its precision on the f32 paths
  }
}

// Enough blocks to fill the GPU (the K loop of one block is a chain of dependent loads: latency, not bandwidth,
// limits a block), but at least 4 K tiles per block.
int qgemm_splits(const MatView& w, int m, int sms) {
  const int64_t blocks = ceil_div(w.rows, kBM) * ceil_div(m, bn_for(m));
  const int64_t tiles = ceil_div(w.Kp, kBK);
  int64_t splits = ceil_div(4 * static_cast<int64_t>(sms), blocks);
  splits = std::min<int64_t>(splits, std::max<int64_t>(1, tiles / 4));
  return static_cast<int>(std::clamp<int64_t>(splits, 1, 16));
}

void qgemm_f16(const MatView& w, const uint16_t* x, int m, float* y, int64_t ldy, float* part, int splits,
               cudaStream_t s) {
  switch (w.fmt) {
    case WFmt::Q8_0: pick<WFmt::Q8_0>(w, x, m, y, ldy, part, splits, s); break;
    case WFmt::Q4_0: pick<WFmt::Q4_0>(w, x, m, y, ldy, part, splits, s); break;
    case WFmt::Q4_K: pick<WFmt::Q4_K>(w, x, m, y, ldy, part, splits, s); break;
    case WFmt::Q5_K: pick<WFmt::Q5_K>(w, x, m, y, ldy, part, splits, s); break;
    case WFmt::Q6_K: pick<WFmt::Q6_K>(w, x, m, y, ldy, part, splits, s); break;
    case WFmt::BF16: pick<WFmt::BF16>(w, x, m, y, ldy, part, splits, s); break;
    default: throw std::runtime_error("CUDA backend: qgemm: unsupported weight layout");
  }
}

}  // namespace vireo::VIREO_CUDA_NS
