// Matrix-matrix for a few to a few dozen tokens (batched decode of many sequences, short prompt chunks):
// quantized weights are dequantized tile by tile into shared memory as f16 and multiplied on tensor cores
// (WMMA 16x16x16, f32 accumulation). Every weight byte is read from memory once per step (for up to 64 tokens),
// where the prefill path (gemm.cu) first writes an f16 copy of the whole matrix to global memory and reads it back.
//
// Block: 8 warps own 128 weight rows (16 each) and BN tokens (16, 32 or 64); K advances 64 at a time through a
// kStages-deep ring of asynchronous copies (cp.async), so that several K steps of weights are in flight per block:
//   raw      [stage][128 rows][Raw<F>::kBytes]  the quantized bytes of each row's 64 weights, as stored
//   xs       [stage][BN][64 k]                  f16 activations (prep_act_f16), column-major B
//   ws       [128 rows][64 k]                   the current step decoded to f16 (two threads per row, 32 weights
//                                               each), row-major A
// Split-K: block z of a tile covers a K range and writes its partial sums to its own slice of `part`; the last
// block of the tile to finish (an atomic counter per tile, reset by that block) adds the slices in order z = 0, 1,
// ... (deterministic) and writes y. No second kernel.
#include <algorithm>

#include "backend/cuda/kernels.h"
#if !defined(VIREO_CUDA_EMU)
#include <mma.h>  // the emulator declares its own wmma (src/backend/cuda/emu/emu_runtime.h)
#endif

namespace vireo::VIREO_CUDA_NS {
namespace {

using namespace nvcuda;

constexpr int kBM = 128, kBK = 64, kThreads = 256, kStages = 3, kMaxSplits = 16;
static_assert(kBM * kBK / 32 == kThreads, "one 32-weight run per thread per K step");
constexpr int kLd = kBK + 8;    // f16 tile row stride (halves): a multiple of 8 (WMMA) that staggers banks
constexpr int kCsLd = kBM + 4;  // output staging stride (floats)

VDEV uint32_t pack2(float a, float b) { return static_cast<uint32_t>(f2h(a)) | static_cast<uint32_t>(f2h(b)) << 16; }
VDEV uint4 sld16(const uint8_t* p) { return *reinterpret_cast<const uint4*>(p); }
// Dequantizing straight to f16 pairs: 0x6400 | u is the f16 1024 + u for u < 1024, so (0x6400 | u) - 1024 is u
// exactly (one f16x2 subtract for two weights, no integer-to-float conversions), then one f16x2 fma/mul applies
// the scale (and the Q4_K minimum): a single f16 rounding, as in the f32-then-round decode it replaces.
constexpr uint32_t kMagic = 0x64006400u;

// Raw<F>: what one row's K step (64 weights from k0, k0 % 64 == 0) needs, copied into kBytes of shared memory by
// the row's two threads (issue, `half` 0/1), and the decode of its 32-weight run `run` (0/1) into 16 f16 pairs.
// Layouts without a staged form decode straight from global memory (decode8): correct, not tuned.
template <WFmt F>
struct Raw {
  static constexpr int kBytes = 0;
  static VDEV void issue(uint8_t*, const MatView&, int64_t, int64_t, int) {}
  static VDEV void decode(const uint8_t*, const MatView& w, int64_t row, int64_t k0, int run, uint32_t out[16]) {
#pragma unroll
    for (int g = 0; g < 4; ++g) {
      float v[8];
      decode8<F>(w, row, k0 + 32 * run + 8 * g, v);
#pragma unroll
      for (int i = 0; i < 4; ++i) out[4 * g + i] = pack2(v[2 * i], v[2 * i + 1]);
    }
  }
};

// Q4_K (144-byte blocks of 256: d, dmin, 12 scale bytes, 128 bytes of nibbles). The 64 weights of a K step are
// sub-blocks 2c and 2c+1: the low and high nibbles of the same 32 bytes. Staged: head 16 | nibbles 32.
template <>
struct Raw<WFmt::Q4_K> {
  static constexpr int kBytes = 48;
  static VDEV void issue(uint8_t* dst, const MatView& w, int64_t row, int64_t k0, int half) {
    const int c = static_cast<int>(k0 % 256) / 64;
    const uint8_t* blk = w.q + row * w.row_bytes + (k0 / 256) * 144;
    if (half == 0) {
      cp_async16(dst, blk);
      cp_async16(dst + 16, blk + 16 + 32 * c);
    } else {
      cp_async16(dst + 32, blk + 32 + 32 * c);
    }
  }
  static VDEV void decode(const uint8_t* src, const MatView&, int64_t, int64_t k0, int run, uint32_t out[16]) {
    const uint4 head = sld16(src), q0 = sld16(src + 16), q1 = sld16(src + 32);
    const int sub = static_cast<int>(k0 % 256) / 32 + run;
    const float d = h2f(static_cast<uint16_t>(head.x & 0xffff)), dmin = h2f(static_cast<uint16_t>(head.x >> 16));
    int sc, mn;
    k4_scale_min_words(head.y, head.z, head.w, sub, &sc, &mn);
    const uint32_t dd = f2h(d * static_cast<float>(sc)), nm = f2h(-dmin * static_cast<float>(mn));
    const uint32_t dd2 = dd | dd << 16, nm2 = nm | nm << 16;
    const int shift = 4 * run;
#pragma unroll
    for (int i = 0; i < 8; ++i) {  // word i: weights 4i .. 4i+3 of the run
      const uint32_t word = word_of(i < 4 ? q0 : q1, i % 4);
      const uint32_t lo = byte_perm(word, 0, 0x4140), hi = byte_perm(word, 0, 0x4342);  // [b0, b1], [b2, b3]
      out[2 * i] = hfma2_bits(hsub2_bits(((lo >> shift) & 0x000F000Fu) | kMagic, kMagic), dd2, nm2);
      out[2 * i + 1] = hfma2_bits(hsub2_bits(((hi >> shift) & 0x000F000Fu) | kMagic, kMagic), dd2, nm2);
    }
  }
};

// Q6_K (repacked: 208-byte bodies ql 128 | qh 64 | scales 16, d in aux). The K step's 64 weights are sub-runs
// k, k+1 (k = 0 or 2) of one 128-weight half n: ql bytes [64n, 64n+64) (low nibbles for k < 2, high for k >= 2),
// qh bytes [32n, 32n+32) (2 bits at 2k), 4 scale bytes. Staged: ql 64 | qh 32 | scales 4 | pad.
template <>
struct Raw<WFmt::Q6_K> {
  static constexpr int kBytes = 112;
  static VDEV void issue(uint8_t* dst, const MatView& w, int64_t row, int64_t k0, int half) {
    const int e = static_cast<int>(k0 % 256), n = e / 128;
    const uint8_t* body = w.q + row * w.row_bytes + (k0 / 256) * 208;
    if (half == 0) {
      cp_async16(dst, body + 64 * n);
      cp_async16(dst + 16, body + 64 * n + 16);
      cp_async16(dst + 64, body + 128 + 32 * n);
      cp_async4(dst + 96, body + 192 + e / 16);
    } else {
      cp_async16(dst + 32, body + 64 * n + 32);
      cp_async16(dst + 48, body + 64 * n + 48);
      cp_async16(dst + 80, body + 128 + 32 * n + 16);
    }
  }
  static VDEV void decode(const uint8_t* src, const MatView& w, int64_t row, int64_t k0, int run, uint32_t out[16]) {
    const int k = static_cast<int>(k0 % 128) / 32 + run;
    const uint4 l0 = sld16(src + 32 * run), l1 = sld16(src + 32 * run + 16), h0 = sld16(src + 64),
                h1 = sld16(src + 80);
    const float d = h2f(w.aux[row * w.nb + k0 / 256]);
    const uint32_t s0 = f2h(d * static_cast<float>(static_cast<int8_t>(src[96 + 2 * run])));
    const uint32_t s1 = f2h(d * static_cast<float>(static_cast<int8_t>(src[96 + 2 * run + 1])));
    const uint32_t s0_2 = s0 | s0 << 16, s1_2 = s1 | s1 << 16;
    constexpr uint32_t kBias = 0x64206420u;  // 1056 = 1024 + 32 in both halves
    const int lshift = k < 2 ? 0 : 4, hshift = 2 * k;
#pragma unroll
    for (int i = 0; i < 8; ++i) {  // word i: weights 4i .. 4i+3 of the run (the first 16 scaled by s0)
      const uint32_t lw = word_of(i < 4 ? l0 : l1, i % 4), hw = word_of(i < 4 ? h0 : h1, i % 4);
#pragma unroll
      for (int p = 0; p < 2; ++p) {
        const uint32_t sel = p == 0 ? 0x4140 : 0x4342;
        const uint32_t lo = byte_perm(lw, 0, sel), hb = byte_perm(hw, 0, sel);
        const uint32_t u = ((lo >> lshift) & 0x000F000Fu) | (((hb >> hshift) & 0x00030003u) << 4) | kMagic;
        out[2 * i + p] = hmul2_bits(hsub2_bits(u, kBias), i < 4 ? s0_2 : s1_2);
      }
    }
  }
};

// Q8_0 (repacked: rows of int8, one f16 scale per 32 in aux). Staged: q 64 | the two scales 4 | pad.
template <>
struct Raw<WFmt::Q8_0> {
  static constexpr int kBytes = 80;
  static VDEV void issue(uint8_t* dst, const MatView& w, int64_t row, int64_t k0, int half) {
    const uint8_t* r = w.q + row * w.row_bytes + k0;
    if (half == 0) {
      cp_async16(dst, r);
      cp_async16(dst + 16, r + 16);
      cp_async4(dst + 64, w.aux + row * w.nb + k0 / 32);  // nb and k0 / 32 are even: 4-byte aligned
    } else {
      cp_async16(dst + 32, r + 32);
      cp_async16(dst + 48, r + 48);
    }
  }
  static VDEV void decode(const uint8_t* src, const MatView&, int64_t, int64_t, int run, uint32_t out[16]) {
    const uint4 a = sld16(src + 32 * run), b = sld16(src + 32 * run + 16);
    uint16_t dh;
    std::memcpy(&dh, src + 64 + 2 * run, 2);
    const uint32_t d2 = static_cast<uint32_t>(dh) | static_cast<uint32_t>(dh) << 16;
    constexpr uint32_t kBias = 0x64806480u;  // 1152 = 1024 + 128 in both halves
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const uint32_t word = word_of(i < 4 ? a : b, i % 4);
#pragma unroll
      for (int p = 0; p < 2; ++p) {
        // int8 q -> the byte q + 128 (sign bit flipped) under the f16 exponent of 1024: 1152 + q, exactly
        const uint32_t v = (byte_perm(word, 0, p == 0 ? 0x4140 : 0x4342) ^ 0x00800080u) | kMagic;
        out[2 * i + p] = hmul2_bits(hsub2_bits(v, kBias), d2);
      }
    }
  }
};

// Dynamic shared memory of one block (bytes; every region 128-byte aligned for WMMA).
template <WFmt F, int BN>
struct Smem {
  static constexpr int raw = 0;
  static constexpr int raw_stage = kBM * Raw<F>::kBytes;
  static constexpr int xs = raw + kStages * raw_stage;
  static constexpr int xs_stage = BN * kLd * 2;
  static constexpr int ws = xs + kStages * xs_stage;
  static constexpr int main_bytes = ws + kBM * kLd * 2;
  static constexpr int cs_bytes = BN * kCsLd * 4;  // the output tile, staged over the rings at the end
  static constexpr int bytes = main_bytes > cs_bytes ? main_bytes : cs_bytes;
  static_assert(raw_stage % 128 == 0 && xs_stage % 128 == 0, "aligned regions");
};

template <WFmt F, int BN>
__global__ void __launch_bounds__(kThreads, 2)
    qgemm_kernel(MatView w, const uint16_t* __restrict__ x, int m, float* __restrict__ y, int64_t ldy,
                 float* __restrict__ part, int* __restrict__ counters, int64_t k_per_split) {
  using L = Smem<F, BN>;
  using R = Raw<F>;
#if defined(VIREO_CUDA_EMU)
  VDYN_SHARED(unsigned char, smem);
#else
  extern __shared__ __align__(128) unsigned char smem[];
#endif
  VSHARED(int, last_flag, 1);
  __half* ws = reinterpret_cast<__half*>(smem + L::ws);
  const int tid = static_cast<int>(threadIdx.x), warp = tid / 32;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kBM;
  const int t0 = static_cast<int>(blockIdx.y) * BN;
  const int r_own = tid / 2, half = tid % 2;  // this thread's row of the tile and its 32-weight run of a K step
  const bool row_ok = row0 + r_own < w.rows;
  const int m_here = m - t0 < BN ? m - t0 : BN;

  const int64_t k_begin = static_cast<int64_t>(blockIdx.z) * k_per_split;
  const int64_t k_end = k_begin + k_per_split < w.Kp ? k_begin + k_per_split : w.Kp;
  const int steps = k_begin < k_end ? static_cast<int>((k_end - k_begin) / kBK) : 0;

  // Token columns past m stay zero in every stage (never copied).
  for (int i = tid; i < kStages * (BN - m_here) * kLd; i += kThreads) {
    const int s = i / ((BN - m_here) * kLd), j = i % ((BN - m_here) * kLd);
    reinterpret_cast<uint16_t*>(smem + L::xs + s * L::xs_stage)[m_here * kLd + j] = 0;
  }
  auto issue = [&](int step) {
    const int stage = step % kStages;
    const int64_t k0 = k_begin + static_cast<int64_t>(step) * kBK;
    if (R::kBytes > 0 && row_ok) R::issue(smem + L::raw + stage * L::raw_stage + r_own * R::kBytes, w, row0 + r_own, k0, half);
    uint8_t* xs = smem + L::xs + stage * L::xs_stage;
    for (int g = tid; g < m_here * (kBK / 8); g += kThreads) {
      const int t = g / (kBK / 8), c = g % (kBK / 8);
      cp_async16(xs + (t * kLd + 8 * c) * 2, x + static_cast<int64_t>(t0 + t) * w.Kp + k0 + 8 * c);
    }
  };
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < steps) issue(s);
    cp_async_commit();
  }

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[BN / 16];
#pragma unroll
  for (int j = 0; j < BN / 16; ++j) wmma::fill_fragment(acc[j], 0.f);

  for (int it = 0; it < steps; ++it) {
    cp_async_wait<kStages - 2>();  // this thread's copies of step `it` have landed ...
    __syncthreads();               // ... and everyone's; every warp is past the MMAs of step it - 1
    const int stage = it % kStages;
    {
      uint32_t v[16];
      if (row_ok) {
        R::decode(smem + L::raw + stage * L::raw_stage + r_own * R::kBytes, w, row0 + r_own,
                  k_begin + static_cast<int64_t>(it) * kBK, half, v);
      } else {
#pragma unroll
        for (int i = 0; i < 16; ++i) v[i] = 0;
      }
      uint4* dst = reinterpret_cast<uint4*>(ws + r_own * kLd + 32 * half);
#pragma unroll
      for (int i = 0; i < 4; ++i) dst[i] = make_uint4(v[4 * i], v[4 * i + 1], v[4 * i + 2], v[4 * i + 3]);
    }
    // Refill the stage of step it - 1 (its raw bytes were decoded and its activations multiplied before the
    // barrier above).
    if (it + kStages - 1 < steps) issue(it + kStages - 1);
    cp_async_commit();
    __syncthreads();  // ws holds step `it`
    const __half* xs = reinterpret_cast<const __half*>(smem + L::xs + stage * L::xs_stage);
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
  }
  cp_async_wait<0>();
  __syncthreads();  // the rings are free: stage the output tile over them
  // cs[t][r]: the accumulator tile (rows r of this warp, tokens t of fragment j) stored column-major.
  float* cs = reinterpret_cast<float*>(smem);
#pragma unroll
  for (int j = 0; j < BN / 16; ++j)
    wmma::store_matrix_sync(cs + j * 16 * kCsLd + warp * 16, acc[j], kCsLd, wmma::mem_col_major);
  __syncthreads();
  if (gridDim.z == 1) {
    for (int i = tid; i < m_here * kBM; i += kThreads) {
      const int t = i / kBM, r = i % kBM;
      if (row0 + r < w.rows) y[static_cast<int64_t>(t0 + t) * ldy + row0 + r] = cs[t * kCsLd + r];
    }
    return;
  }
  // Split-K: partial sums to part[z][t][row] (rows w.rows long), then the tile's last block adds them up.
  const int64_t slice = static_cast<int64_t>(m) * w.rows;
  float* mine = part + static_cast<int64_t>(blockIdx.z) * slice;
  const bool vec = w.rows % 4 == 0;  // float4 granules (row0 is a multiple of 128)
  if (vec) {
    for (int i = tid; i < m_here * kBM / 4; i += kThreads) {
      const int t = i / (kBM / 4), r = 4 * (i % (kBM / 4));
      if (row0 + r < w.rows)
        *reinterpret_cast<float4*>(mine + static_cast<int64_t>(t0 + t) * w.rows + row0 + r) =
            *reinterpret_cast<const float4*>(cs + t * kCsLd + r);
    }
  } else {
    for (int i = tid; i < m_here * kBM; i += kThreads) {
      const int t = i / kBM, r = i % kBM;
      if (row0 + r < w.rows) mine[static_cast<int64_t>(t0 + t) * w.rows + row0 + r] = cs[t * kCsLd + r];
    }
  }
  __threadfence();
  __syncthreads();
  const int tile = static_cast<int>(blockIdx.y * gridDim.x + blockIdx.x);
  if (tid == 0) *last_flag = atomicAdd(&counters[tile], 1) == static_cast<int>(gridDim.z) - 1;
  __syncthreads();
  if (!*last_flag) return;
  __threadfence();
  const int splits = static_cast<int>(gridDim.z);  // <= kMaxSplits
  if (vec) {
    for (int i = tid; i < m_here * kBM / 4; i += kThreads) {
      const int t = i / (kBM / 4), r = 4 * (i % (kBM / 4));
      if (row0 + r >= w.rows) continue;
      const int64_t at = static_cast<int64_t>(t0 + t) * w.rows + row0 + r;
      float4 v[kMaxSplits];  // every split's granule in flight at once, then added in order z = 0, 1, ...
#pragma unroll
      for (int z = 0; z < kMaxSplits; ++z)
        if (z < splits) v[z] = ld_cg4(part + z * slice + at);
      float4 sum = v[0];
#pragma unroll
      for (int z = 1; z < kMaxSplits; ++z)
        if (z < splits) sum.x += v[z].x, sum.y += v[z].y, sum.z += v[z].z, sum.w += v[z].w;
      float* out = y + static_cast<int64_t>(t0 + t) * ldy + row0 + r;
      out[0] = sum.x, out[1] = sum.y, out[2] = sum.z, out[3] = sum.w;
    }
  } else {
    for (int i = tid; i < m_here * kBM; i += kThreads) {
      const int t = i / kBM, r = i % kBM;
      if (row0 + r >= w.rows) continue;
      const int64_t at = static_cast<int64_t>(t0 + t) * w.rows + row0 + r;
      float sum = 0.f;
      for (int z = 0; z < splits; ++z) sum += ld_cg(part + z * slice + at);
      y[static_cast<int64_t>(t0 + t) * ldy + row0 + r] = sum;
    }
  }
  if (tid == 0) counters[tile] = 0;  // ready for the next launch (and graph replay)
}

int bn_for(int m) { return m <= 16 ? 16 : (m <= 32 ? 32 : 64); }

bool g_qgemm_ok = false;  // the device grants the shared memory (qgemm_init)

template <WFmt F, int BN>
bool init_one(size_t smem_optin) {
  if (smem_optin < static_cast<size_t>(Smem<F, BN>::bytes)) return false;
  auto* k = &qgemm_kernel<F, BN>;
  constexpr int smem = Smem<F, BN>::bytes;
  VCUDA(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, smem),
        "matmul (tensor-core tiles): shared memory");
  return true;
}
template <WFmt F>
bool init_fmt(size_t smem_optin) {
  return init_one<F, 16>(smem_optin) && init_one<F, 32>(smem_optin) && init_one<F, 64>(smem_optin);
}

template <WFmt F, int BN>
void go(const MatView& w, const uint16_t* x, int m, float* y, int64_t ldy, float* part, int* counters, int splits,
        cudaStream_t s) {
  auto* k = &qgemm_kernel<F, BN>;
  const int64_t steps = w.Kp / kBK;
  const int64_t k_per_split = ceil_div(steps, splits) * kBK;
  const dim3 grid(static_cast<unsigned>(ceil_div(w.rows, kBM)), static_cast<unsigned>(ceil_div(m, BN)),
                  static_cast<unsigned>(ceil_div(w.Kp, k_per_split)));
  constexpr int smem = Smem<F, BN>::bytes;
  VLAUNCH(k, grid, dim3(kThreads), smem, s, w, x, m, y, ldy, part, counters, k_per_split);
  VCHECK_LAUNCH("matmul (tensor-core tiles of dequantized weights)");
}

template <WFmt F>
void pick(const MatView& w, const uint16_t* x, int m, float* y, int64_t ldy, float* part, int* counters, int splits,
          cudaStream_t s) {
  if (m <= 16) go<F, 16>(w, x, m, y, ldy, part, counters, splits, s);
  else if (m <= 32) go<F, 32>(w, x, m, y, ldy, part, counters, splits, s);
  else go<F, 64>(w, x, m, y, ldy, part, counters, splits, s);
}

}  // namespace

void qgemm_init(size_t smem_optin) {
  g_qgemm_ok = init_fmt<WFmt::Q8_0>(smem_optin) && init_fmt<WFmt::Q4_0>(smem_optin) &&
               init_fmt<WFmt::Q4_K>(smem_optin) && init_fmt<WFmt::Q5_K>(smem_optin) &&
               init_fmt<WFmt::Q6_K>(smem_optin) && init_fmt<WFmt::BF16>(smem_optin);
}

bool qgemm_supported(const MatView& w) {
  if (!g_qgemm_ok || w.Kp % kBK != 0) return false;
  switch (w.fmt) {
    case WFmt::Q8_0: case WFmt::Q4_0: case WFmt::Q4_K: case WFmt::Q5_K: case WFmt::Q6_K: case WFmt::BF16: return true;
    default: return false;  // F16 goes straight to cuBLAS; F32 keeps its precision on the f32 paths
  }
}

int qgemm_tiles(const MatView& w, int m) {
  return static_cast<int>(ceil_div(w.rows, kBM) * ceil_div(m, bn_for(m)));
}

// As many K splits as keep about `blocks_per_sm` blocks resident per multiprocessor without a second wave (the K
// loop of one block is latency-bound: fill the GPU), but at least `min_steps` K steps per block.
int qgemm_splits(const MatView& w, int m, int sms, int blocks_per_sm, int min_steps) {
  const int64_t blocks = qgemm_tiles(w, m);
  const int64_t steps = w.Kp / kBK;
  int64_t splits = (std::max(1, blocks_per_sm) * static_cast<int64_t>(sms)) / std::max<int64_t>(blocks, 1);
  splits = std::min<int64_t>(splits, std::max<int64_t>(1, steps / std::max(1, min_steps)));
  return static_cast<int>(std::clamp<int64_t>(splits, 1, kMaxSplits));
}

void qgemm_f16(const MatView& w, const uint16_t* x, int m, float* y, int64_t ldy, float* part, int* counters,
               int splits, cudaStream_t s) {
  switch (w.fmt) {
    case WFmt::Q8_0: pick<WFmt::Q8_0>(w, x, m, y, ldy, part, counters, splits, s); break;
    case WFmt::Q4_0: pick<WFmt::Q4_0>(w, x, m, y, ldy, part, counters, splits, s); break;
    case WFmt::Q4_K: pick<WFmt::Q4_K>(w, x, m, y, ldy, part, counters, splits, s); break;
    case WFmt::Q5_K: pick<WFmt::Q5_K>(w, x, m, y, ldy, part, counters, splits, s); break;
    case WFmt::Q6_K: pick<WFmt::Q6_K>(w, x, m, y, ldy, part, counters, splits, s); break;
    case WFmt::BF16: pick<WFmt::BF16>(w, x, m, y, ldy, part, counters, splits, s); break;
    default: throw std::runtime_error("CUDA backend: qgemm: unsupported weight layout");
  }
}

}  // namespace vireo::VIREO_CUDA_NS
