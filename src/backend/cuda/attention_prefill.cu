// Causal attention for prefill steps (many tokens) on tensor cores, in the flash-attention manner (FlashAttention-2:
// query tiles in shared memory, key/value tiles streamed past them, online softmax), over an f16 KV cache.
//
// Grid: x = tile of kQ consecutive tokens of the step (heaviest tiles, the last ones, first), y = query head.
// A tile may hold tokens of several slots (continuous batching puts each sequence's tokens next to each other):
// the tile is walked once per run of tokens that share a slot, and the rows outside the run are masked.
// Row r may see key j of its slot when j <= pos[r].
//
// Per key tile of kK positions, each of the 4 warps owns 16 query rows:
//   S  [16][kK]  = Q_w (f16, scale folded in) . K^T        WMMA 16x16x16, f32 accumulation -> shared memory
//   m, l         online max and sum per row (two lanes per row); P = exp(S - m) as f16, written over S
//   O  [16][D]   = O * alpha + P . V                        O lives in shared memory (f32): the rescale by alpha
//                                                             is per row, and WMMA fragments hide their layout
// Precision: Q and P are rounded to f16 (K and V are f16 already); the tests state the tolerance.
#include "backend/cuda/kernels.h"
#if !defined(VIREO_CUDA_EMU)
#include <mma.h>  // the emulator declares its own wmma (src/backend/cuda/emu/emu_runtime.h)
#endif

namespace vireo::VIREO_CUDA_NS {
namespace {

using namespace nvcuda;

constexpr int kQ = 64, kK = 64, kThreads = 128;

VDEV const __half* as_half(const uint16_t* p) { return reinterpret_cast<const __half*>(p); }

template <int D>
struct PrefillSmem {
  static constexpr int ldh = D + 8;    // halves per row of Q, K, V (a multiple of 8 that staggers banks)
  static constexpr int lds = kK + 4;   // floats per row of S (P: f16 over the same bytes, 2 * lds halves)
  static constexpr int ldo = D + 4;    // floats per row of O
  static constexpr int q = 0;
  static constexpr int k = q + kQ * ldh * 2;
  static constexpr int v = k + kK * ldh * 2;
  static constexpr int s = v + kK * ldh * 2;
  static constexpr int o = s + kQ * lds * 4;
  static constexpr int m = o + kQ * ldo * 4;
  static constexpr int l = m + kQ * 4;
  static constexpr int pos = l + kQ * 4;
  static constexpr int slot = pos + kQ * 4;
  static constexpr int bytes = slot + kQ * 4;
  static_assert(k % 32 == 0 && v % 32 == 0 && s % 32 == 0 && o % 32 == 0, "WMMA needs 32-byte aligned tiles");
};

template <int D>
__global__ void __launch_bounds__(kThreads, 2) attn_prefill_kernel(const __grid_constant__ AttnArgs a) {
  using L = PrefillSmem<D>;
  constexpr int ldh = L::ldh, lds = L::lds, ldo = L::ldo, ldp = 2 * L::lds;
#if defined(VIREO_CUDA_EMU)
  VDYN_SHARED(unsigned char, smem);
#else
  extern __shared__ __align__(128) unsigned char smem[];
#endif
  // f16 tiles are kept as raw bits (uint16_t) and handed to WMMA as __half
  uint16_t* q_s = reinterpret_cast<uint16_t*>(smem + L::q);  // [kQ][ldh]
  uint16_t* k_s = reinterpret_cast<uint16_t*>(smem + L::k);  // [kK][ldh]
  uint16_t* v_s = reinterpret_cast<uint16_t*>(smem + L::v);  // [kK][ldh]
  float* s_s = reinterpret_cast<float*>(smem + L::s);        // [kQ][lds]
  uint16_t* p_s = reinterpret_cast<uint16_t*>(smem + L::s);  // [kQ][ldp], over S
  float* o_s = reinterpret_cast<float*>(smem + L::o);    // [kQ][ldo]
  float* m_s = reinterpret_cast<float*>(smem + L::m);
  float* l_s = reinterpret_cast<float*>(smem + L::l);
  int* pos_s = reinterpret_cast<int*>(smem + L::pos);
  int* slot_s = reinterpret_cast<int*>(smem + L::slot);

  const int tid = static_cast<int>(threadIdx.x), warp = tid >> 5, lane = tid & 31;
  const int tile = static_cast<int>(gridDim.x - 1 - blockIdx.x);
  const int h = static_cast<int>(blockIdx.y);
  const int kvh = h / (a.n_heads / a.n_kv_heads);
  const int t0 = tile * kQ;
  const int nt = imin(kQ, a.n - t0);

  pdl_wait();
  pdl_trigger();
  if (tid < kQ) {
    pos_s[tid] = tid < nt ? a.pos[t0 + tid] : -1;
    slot_s[tid] = tid < nt ? a.slot[t0 + tid] : -1;
    m_s[tid] = -INFINITY;
    l_s[tid] = 0.f;
  }
  // Q rows of the tile, times the softmax scale, as f16 (rows past the step: zero)
  for (int i = tid; i < kQ * (D / 4); i += kThreads) {
    const int r = i / (D / 4), d = (i % (D / 4)) * 4;
    float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
    if (r < nt) x = *reinterpret_cast<const float4*>(a.q + static_cast<int64_t>(t0 + r) * a.ldq + h * D + d);
    uint16_t* dst = q_s + r * ldh + d;
    dst[0] = f2h(x.x * a.scale);
    dst[1] = f2h(x.y * a.scale);
    dst[2] = f2h(x.z * a.scale);
    dst[3] = f2h(x.w * a.scale);
  }
  for (int i = tid; i < kQ * D; i += kThreads) o_s[(i / D) * ldo + i % D] = 0.f;
  __syncthreads();

  const uint16_t* kc = static_cast<const uint16_t*>(a.k_cache);
  const uint16_t* vc = static_cast<const uint16_t*>(a.v_cache);
  const int my_row = warp * 16 + (lane >> 1), my_half = lane & 1;  // softmax: two lanes per row

  for (int r0 = 0; r0 < nt;) {
    // the run of rows [r0, r1) in one slot, and the last key any of them sees
    const int slot = slot_s[r0];
    int r1 = r0, last = -1;
    while (r1 < nt && slot_s[r1] == slot) last = imax(last, pos_s[r1++]);
    const int64_t base = static_cast<int64_t>(slot) * a.n_ctx * a.kv_dim + static_cast<int64_t>(kvh) * D;
    // does this warp have rows in the run?
    const int wr = warp * 16 + (lane & 15);
    const bool mine = wr >= r0 && wr < r1;
    const int warp_last = warp_max_int(mine ? pos_s[wr] : -1);
    const bool in_run = my_row >= r0 && my_row < r1;
    const int row_pos = in_run ? pos_s[my_row] : -1;

    for (int j0 = 0; j0 <= last; j0 += kK) {
      const int jn = imin(kK, last + 1 - j0);
      // K and V tiles, 16-byte loads (keys past the run's last: zero, so 0 * V stays finite)
      for (int i = tid; i < kK * (D / 8); i += kThreads) {
        const int j = i / (D / 8), d = (i % (D / 8)) * 8;
        uint4 kv = make_uint4(0, 0, 0, 0), vv = kv;
        if (j < jn) {
          const int64_t off = base + static_cast<int64_t>(j0 + j) * a.kv_dim + d;
          kv = ld16(kc + off);
          vv = ld16(vc + off);
        }
        *reinterpret_cast<uint4*>(k_s + j * ldh + d) = kv;
        *reinterpret_cast<uint4*>(v_s + j * ldh + d) = vv;
      }
      __syncthreads();
      if (warp_last >= j0) {  // some row of this warp sees a key of the tile
        // S = Q K^T for the warp's 16 rows
        VUNROLL for (int nb = 0; nb < kK / 16; ++nb) {
          wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
          wmma::fill_fragment(acc, 0.f);
          VUNROLL for (int kk = 0; kk < D / 16; ++kk) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> qa;
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> kb;
            wmma::load_matrix_sync(qa, as_half(q_s + warp * 16 * ldh + kk * 16), ldh);
            wmma::load_matrix_sync(kb, as_half(k_s + nb * 16 * ldh + kk * 16), ldh);
            wmma::mma_sync(acc, qa, kb, acc);
          }
          wmma::store_matrix_sync(s_s + warp * 16 * lds + nb * 16, acc, lds, wmma::mem_row_major);
        }
        __syncwarp();
        // online softmax: lanes 2i and 2i+1 share row i of the warp, 32 keys each
        float sv[kK / 2];
        float mx = -INFINITY;
        VUNROLL for (int c = 0; c < kK / 2; ++c) {
          const int j = my_half * (kK / 2) + c;
          const bool ok = j0 + j <= row_pos;
          sv[c] = ok ? s_s[my_row * lds + j] : -INFINITY;
          mx = fmaxf(mx, sv[c]);
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        const float m_old = m_s[my_row];
        const float m_new = fmaxf(m_old, mx);
        const float alpha = m_new == -INFINITY ? 1.f : expf(m_old - m_new);
        float sum = 0.f;
        __syncwarp();  // every lane has read its S values before P overwrites them
        VUNROLL for (int c = 0; c < kK / 2; c += 2) {
          const uint16_t p0 = f2h(sv[c] == -INFINITY ? 0.f : expf(sv[c] - m_new));
          const uint16_t p1 = f2h(sv[c + 1] == -INFINITY ? 0.f : expf(sv[c + 1] - m_new));
          sum += h2f(p0) + h2f(p1);  // the sum of what the product uses
          *reinterpret_cast<uint32_t*>(p_s + my_row * ldp + my_half * (kK / 2) + c) =
              static_cast<uint32_t>(p0) | static_cast<uint32_t>(p1) << 16;
        }
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        if (alpha != 1.f) {
          float* orow = o_s + my_row * ldo + my_half * (D / 2);
          VUNROLL for (int d = 0; d < D / 2; ++d) orow[d] *= alpha;
        }
        if (my_half == 0) {
          m_s[my_row] = m_new;
          l_s[my_row] = l_s[my_row] * alpha + sum;
        }
        __syncwarp();
        // O += P V for the warp's 16 rows
        VUNROLL for (int db = 0; db < D / 16; ++db) {
          wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
          wmma::load_matrix_sync(acc, o_s + warp * 16 * ldo + db * 16, ldo, wmma::mem_row_major);
          VUNROLL for (int kb = 0; kb < kK / 16; ++kb) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> pa;
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> vb;
            wmma::load_matrix_sync(pa, as_half(p_s + warp * 16 * ldp + kb * 16), ldp);
            wmma::load_matrix_sync(vb, as_half(v_s + kb * 16 * ldh + db * 16), ldh);
            wmma::mma_sync(acc, pa, vb, acc);
          }
          wmma::store_matrix_sync(o_s + warp * 16 * ldo + db * 16, acc, ldo, wmma::mem_row_major);
        }
      }
      __syncthreads();  // K/V tiles are overwritten next
    }
    r0 = r1;
  }

  // out = O / l
  for (int i = tid; i < nt * (D / 4); i += kThreads) {
    const int r = i / (D / 4), d = (i % (D / 4)) * 4;
    const float inv = l_s[r] > 0.f ? 1.f / l_s[r] : 0.f;
    const float* o = o_s + r * ldo + d;
    *reinterpret_cast<float4*>(a.out + static_cast<int64_t>(t0 + r) * a.ldo + h * D + d) =
        make_float4(o[0] * inv, o[1] * inv, o[2] * inv, o[3] * inv);
  }
}

template <int D>
void prefill_go(const AttnArgs& a, cudaStream_t s) {
  auto* k = &attn_prefill_kernel<D>;
  const dim3 grid(static_cast<unsigned>(ceil_div(a.n, kQ)), static_cast<unsigned>(a.n_heads));
  VLAUNCH_PDL(k, grid, dim3(kThreads), PrefillSmem<D>::bytes, s, a);
  VCHECK_LAUNCH("attention (tensor-core prefill)");
}

}  // namespace

namespace {
// Head sizes whose shared memory the device grants (set by attention_prefill_init).
bool g_prefill_d64 = false, g_prefill_d128 = false;
}  // namespace

bool attn_prefill_supported(bool f16, int head_dim, int64_t ldq, int64_t ldo, int n_tokens) {
  const bool d_ok = (head_dim == 64 && g_prefill_d64) || (head_dim == 128 && g_prefill_d128);
  return f16 && d_ok && ldq % 4 == 0 && ldo % 4 == 0 && n_tokens > kAttnPrefillMinTokens;
}

void attention_prefill_init(size_t smem_optin) {
  // 57 KB (head_dim 64) and 104 KB (128) per block: the second is above what some consumer GPUs grant (99 KB);
  // there, those steps keep the CUDA-core kernel of attention.cu.
  g_prefill_d64 = smem_optin >= PrefillSmem<64>::bytes;
  g_prefill_d128 = smem_optin >= PrefillSmem<128>::bytes;
  if (g_prefill_d64) {
    auto* k = &attn_prefill_kernel<64>;
    VCUDA(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, PrefillSmem<64>::bytes),
          "attention prefill (shared memory)");
  }
  if (g_prefill_d128) {
    auto* k = &attn_prefill_kernel<128>;
    VCUDA(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, PrefillSmem<128>::bytes),
          "attention prefill (shared memory)");
  }
}

void attention_prefill(const AttnArgs& a, cudaStream_t s) {
  if (a.n <= 0) return;
  if (!attn_prefill_supported(a.f16, a.head_dim, a.ldq, a.ldo, a.n))
    throw std::runtime_error("CUDA backend: tensor-core prefill attention: unsupported layout");
  if (a.head_dim == 64)
    prefill_go<64>(a, s);
  else
    prefill_go<128>(a, s);
}

}  // namespace vireo::VIREO_CUDA_NS
