// Causal attention over the KV cache of each token's slot, in the flash-attention manner: keys and values are
// walked in tiles of kAttnTile positions kept in shared memory, with an online softmax (running max and sum), so
// nothing of size n_ctx is materialized.
//
// Grid: x = group of query heads sharing one KV head (GQA: the tile is loaded once for the group), y = split of
// the token's positions (flash-decoding: with few tokens the positions are cut into chunks that run in parallel
// and a merge kernel combines the partial results by their max/sum), z = token. Positions and slots are read from
// device memory, so the launch shape depends only on the token count. A block whose chunk lies entirely after
// the token's position exits at once; the merge reads only the chunks that exist for that position.
#include "backend/cuda/kernels.h"

namespace vireo::VIREO_CUDA_NS {
namespace {

constexpr int kThreads = 128;
constexpr int kMaxAcc = kAttnMaxGroup * kAttnMaxHeadDim / kThreads;  // outputs per thread

VDEV float kv_load(const uint16_t* p, int64_t i) { return h2f(p[i]); }
VDEV float kv_load(const float* p, int64_t i) { return p[i]; }

// Eight consecutive cache elements with 16-byte loads (element offset i a multiple of 8).
VDEV void kv_load8(const uint16_t* p, int64_t i, float* out) {
  const uint4 v = ld16(p + i);
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
  for (int k = 0; k < 4; ++k) {
    out[2 * k] = h2f(static_cast<uint16_t>(w[k] & 0xffffu));
    out[2 * k + 1] = h2f(static_cast<uint16_t>(w[k] >> 16));
  }
}
VDEV void kv_load8(const float* p, int64_t i, float* out) {
  const float4 a = ld16f(p + i), b = ld16f(p + i + 4);
  out[0] = a.x, out[1] = a.y, out[2] = a.z, out[3] = a.w;
  out[4] = b.x, out[5] = b.y, out[6] = b.z, out[7] = b.w;
}

inline int64_t attn_smem_floats(int hg, int D) {
  return int64_t(hg) * D + int64_t(kAttnTile) * (D + 1) + int64_t(kAttnTile) * D + int64_t(hg) * kAttnTile +
         3 * int64_t(hg);
}

template <class KV>
__global__ void __launch_bounds__(kThreads) attn_kernel(AttnArgs a, int hg) {
  pdl_wait();
  pdl_trigger();
  VDYN_SHARED(float, smem);
  constexpr int T = kAttnTile;
  const int D = a.head_dim;
  float* q_s = smem;              // [hg][D]
  float* k_s = q_s + hg * D;      // [T][D + 1]  (padded: conflict-free column reads)
  float* v_s = k_s + T * (D + 1); // [T][D]
  float* p_s = v_s + T * D;       // [hg][T]     scores, then probabilities
  float* m_s = p_s + hg * T;      // [hg]        running max
  float* l_s = m_s + hg;          // [hg]        running sum
  float* al_s = l_s + hg;         // [hg]        rescale factor of the current tile

  const int t = static_cast<int>(blockIdx.z);
  const int split = static_cast<int>(blockIdx.y);
  const int h0 = static_cast<int>(blockIdx.x) * hg;
  const int group = a.n_heads / a.n_kv_heads;
  const int kvh = h0 / group;
  const int pos = a.pos[t];
  const int slot = a.slot[t];
  const int start = split * a.chunk;
  const int end = imin(pos + 1, start + a.chunk);
  if (start >= end) return;  // the whole block: nothing of this token in this chunk

  const int tid = static_cast<int>(threadIdx.x);
  const int nthr = static_cast<int>(blockDim.x);
  for (int i = tid; i < hg * D; i += nthr) {
    const int g = i / D, d = i % D;
    q_s[i] = a.q[static_cast<int64_t>(t) * a.ldq + static_cast<int64_t>(h0 + g) * D + d];
  }
  if (tid < hg) {
    m_s[tid] = -INFINITY;
    l_s[tid] = 0.f;
  }
  float acc[kMaxAcc];
  for (int i = 0; i < kMaxAcc; ++i) acc[i] = 0.f;
  const KV* kc = static_cast<const KV*>(a.k_cache);
  const KV* vc = static_cast<const KV*>(a.v_cache);
  const int64_t base = static_cast<int64_t>(slot) * a.n_ctx * a.kv_dim + static_cast<int64_t>(kvh) * D;
  const bool vec8 = D % 8 == 0 && a.kv_dim % 8 == 0;  // rows start 16-byte aligned (cache base: cudaMalloc)
  __syncthreads();

  const int warp = tid >> 5, lane = tid & 31, nwarps = nthr >> 5;
  for (int j0 = start; j0 < end; j0 += T) {
    const int jn = imin(T, end - j0);
    if (vec8) {  // 16-byte loads: 8 elements of one row per thread and step
      const int D8 = D / 8;
      for (int i = tid; i < T * D8; i += nthr) {
        const int j = i / D8, d = (i % D8) * 8;
        float kv[8], vv[8];
        if (j < jn) {
          const int64_t off = base + static_cast<int64_t>(j0 + j) * a.kv_dim + d;
          kv_load8(kc, off, kv);
          kv_load8(vc, off, vv);
        } else {
          for (int e = 0; e < 8; ++e) kv[e] = vv[e] = 0.f;
        }
        for (int e = 0; e < 8; ++e) {
          k_s[j * (D + 1) + d + e] = kv[e];
          v_s[j * D + d + e] = vv[e];
        }
      }
    } else {
      for (int i = tid; i < T * D; i += nthr) {
        const int j = i / D, d = i % D;
        float kv = 0.f, vv = 0.f;
        if (j < jn) {
          const int64_t off = base + static_cast<int64_t>(j0 + j) * a.kv_dim + d;
          kv = kv_load(kc, off);
          vv = kv_load(vc, off);
        }
        k_s[j * (D + 1) + d] = kv;
        v_s[j * D + d] = vv;
      }
    }
    __syncthreads();
    // scores of this tile: s = (q . k) * scale; positions past the end are -inf
    for (int i = tid; i < hg * T; i += nthr) {
      const int g = i / T, j = i % T;
      float s = -INFINITY;
      if (j < jn) {
        const float* qq = q_s + g * D;
        const float* kk = k_s + j * (D + 1);
        float dot = 0.f;
        for (int d = 0; d < D; ++d) dot += qq[d] * kk[d];
        s = dot * a.scale;
      }
      p_s[i] = s;
    }
    __syncthreads();
    // online softmax, one warp per head (T == 32: one position per lane)
    for (int g = warp; g < hg; g += nwarps) {
      const float s = p_s[g * T + lane];
      const float mx = warp_max(s);
      const float m_old = m_s[g];
      const float m_new = fmaxf(m_old, mx);
      const float p = s == -INFINITY ? 0.f : expf(s - m_new);
      const float sum = warp_sum(p);
      p_s[g * T + lane] = p;
      if (lane == 0) {
        const float alpha = expf(m_old - m_new);  // 0 on the first tile (m_old = -inf)
        l_s[g] = l_s[g] * alpha + sum;
        m_s[g] = m_new;
        al_s[g] = alpha;
      }
    }
    __syncthreads();
    for (int i = 0; i < kMaxAcc; ++i) {
      const int idx = tid + i * nthr;
      if (idx < hg * D) {
        const int g = idx / D, d = idx % D;
        float o = acc[i] * al_s[g];
        const float* pp = p_s + g * T;
        for (int j = 0; j < jn; ++j) o += pp[j] * v_s[j * D + d];
        acc[i] = o;
      }
    }
    __syncthreads();
  }

  if (a.splits == 1) {
    for (int i = 0; i < kMaxAcc; ++i) {
      const int idx = tid + i * nthr;
      if (idx < hg * D) {
        const int g = idx / D, d = idx % D;
        a.out[static_cast<int64_t>(t) * a.ldo + static_cast<int64_t>(h0 + g) * D + d] = acc[i] / l_s[g];
      }
    }
  } else {
    for (int i = 0; i < kMaxAcc; ++i) {
      const int idx = tid + i * nthr;
      if (idx < hg * D) {
        const int g = idx / D, d = idx % D;
        const int64_t row = (static_cast<int64_t>(t) * a.n_heads + h0 + g) * a.splits + split;
        a.part_o[row * D + d] = acc[i];
      }
    }
    if (tid < hg) {
      const int64_t row = (static_cast<int64_t>(t) * a.n_heads + h0 + tid) * a.splits + split;
      a.part_ml[row] = make_float2(m_s[tid], l_s[tid]);
    }
  }
}

// Block per (head, token): out = sum_s o_s * e^(m_s - M) / sum_s l_s * e^(m_s - M) over the chunks that exist.
__global__ void __launch_bounds__(kThreads) attn_merge_kernel(AttnArgs a) {
  pdl_wait();
  pdl_trigger();
  const int h = static_cast<int>(blockIdx.x), t = static_cast<int>(blockIdx.y);
  const int D = a.head_dim;
  const int pos = a.pos[t];
  int ns = pos / a.chunk + 1;
  if (ns > a.splits) ns = a.splits;
  const int64_t row0 = (static_cast<int64_t>(t) * a.n_heads + h) * a.splits;
  const float2* ml = a.part_ml + row0;
  float M = -INFINITY;
  for (int s = 0; s < ns; ++s) M = fmaxf(M, ml[s].x);
  float L = 0.f;
  for (int s = 0; s < ns; ++s) L += ml[s].y * expf(ml[s].x - M);
  const float* po = a.part_o + row0 * D;
  for (int d = static_cast<int>(threadIdx.x); d < D; d += static_cast<int>(blockDim.x)) {
    float o = 0.f;
    for (int s = 0; s < ns; ++s) o += po[static_cast<int64_t>(s) * D + d] * expf(ml[s].x - M);
    a.out[static_cast<int64_t>(t) * a.ldo + static_cast<int64_t>(h) * D + d] = o / L;
  }
}

}  // namespace

int attn_heads_per_block(int n_heads, int n_kv_heads) {
  const int group = n_heads / n_kv_heads;
  int hg = 1;
  for (int c = 1; c <= kAttnMaxGroup && c <= group; ++c)
    if (group % c == 0) hg = c;
  return hg;
}

void attn_plan(AttnArgs& a, int sms) {
  const int hg = attn_heads_per_block(a.n_heads, a.n_kv_heads);
  const int64_t blocks_per_split = int64_t(a.n) * (a.n_heads / hg);
  const int64_t max_splits = std::min<int64_t>(ceil_div(a.n_ctx, kAttnTile), 64);
  int64_t s = ceil_div(int64_t(2) * std::max(sms, 1), std::max<int64_t>(blocks_per_split, 1));
  s = std::max<int64_t>(1, std::min(s, max_splits));
  if (s <= 1) {
    a.splits = 1;
    a.chunk = static_cast<int>(round_up(a.n_ctx, kAttnTile));
  } else {
    a.chunk = static_cast<int>(round_up(ceil_div(a.n_ctx, s), kAttnTile));
    a.splits = static_cast<int>(ceil_div(a.n_ctx, a.chunk));
  }
}

void attention_init() {
  const int bytes = static_cast<int>(attn_smem_floats(kAttnMaxGroup, kAttnMaxHeadDim) * 4);
  auto* k16 = &attn_kernel<uint16_t>;
  auto* k32 = &attn_kernel<float>;
  VCUDA(cudaFuncSetAttribute(k16, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes), "attention (shared memory)");
  VCUDA(cudaFuncSetAttribute(k32, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes), "attention (shared memory)");
}

void attention(const AttnArgs& a, cudaStream_t s) {
  if (a.n <= 0) return;
  if (a.head_dim > kAttnMaxHeadDim || a.head_dim <= 0)
    throw std::runtime_error("CUDA backend: attention: head_dim " + std::to_string(a.head_dim) + " is not supported");
  if (a.n_kv_heads <= 0 || a.n_heads % a.n_kv_heads != 0)
    throw std::runtime_error("CUDA backend: attention: head counts do not divide");
  const int hg = attn_heads_per_block(a.n_heads, a.n_kv_heads);
  const size_t smem = static_cast<size_t>(attn_smem_floats(hg, a.head_dim) * 4);
  const dim3 grid(static_cast<unsigned>(a.n_heads / hg), static_cast<unsigned>(a.splits), static_cast<unsigned>(a.n));
  if (a.f16) {
    auto* k = &attn_kernel<uint16_t>;
    VLAUNCH_PDL(k, grid, dim3(kThreads), smem, s, a, hg);
  } else {
    auto* k = &attn_kernel<float>;
    VLAUNCH_PDL(k, grid, dim3(kThreads), smem, s, a, hg);
  }
  VCHECK_LAUNCH("attention");
  if (a.splits > 1) {
    auto* k = &attn_merge_kernel;
    VLAUNCH_PDL(k, dim3(static_cast<unsigned>(a.n_heads), static_cast<unsigned>(a.n)), dim3(kThreads), 0, s, a);
    VCHECK_LAUNCH("attention (merge of split-KV partials)");
  }
}

}  // namespace vireo::VIREO_CUDA_NS
