// Attention for decode steps (a few tokens, each attending to its own slot's cache): split-KV flash decoding.
//
// Grid: x = a group of hg query heads that share one KV head (GQA: K/V are read once for the group), y = split of
// the token's positions, z = token. The split size is chosen at run time from the token's position (read from
// device memory, so a captured graph stays right at any position): positions [0, pos] are cut into at most
// gridDim.y chunks of at least min_chunk positions; blocks past the last chunk exit at once.
//
// Inside a block (8 warps; 4 for head groups above 4) a lane owns 8 elements (one 16-byte f16 load) of one key/value row: LPK = head_dim / 8
// lanes share a key, a warp covers KPW = 32 / LPK keys at a time, and every lane group keeps its own online-softmax
// state (max, sum, 8 outputs for each of the hg heads). Two keys are processed per iteration and the next two are
// loaded meanwhile. The first keys are loaded before pdl_wait() when they were written before this step.
// The lane groups' states are merged through shared memory; with more than one chunk, each block writes its
// partial (o, max, sum), counts itself on an atomic counter, and the last block of the (token, head group)
// merges all chunks (a warp per head for the max/sum, 4-element granules with 8 chunk loads in flight per thread for
// the outputs) and, if asked, quantizes the output rows to int8 for the next matmul.
#include "backend/cuda/kernels.h"

namespace vireo::VIREO_CUDA_NS {
namespace {

constexpr float kLog2e = 1.4426950408889634f;

VDEV void f16x8(const uint4& v, float* out) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
  VUNROLL for (int k = 0; k < 4; ++k) {
    out[2 * k] = h2f(static_cast<uint16_t>(w[k] & 0xffffu));
    out[2 * k + 1] = h2f(static_cast<uint16_t>(w[k] >> 16));
  }
}

VHD int round_up_i(int a, int b) { return (a + b - 1) / b * b; }

// The decode chunk of a token at position pos: at least min_chunk (a multiple of the keys of one block
// iteration), at most S chunks.
VHD int decode_chunk(int pos, int S, int min_chunk, int step) {
  int c = round_up_i((pos + 1 + S - 1) / S, step);
  return c < min_chunk ? min_chunk : c;
}

template <int LPK, int GM, int NW>
__global__ void __launch_bounds__(NW * 32) attn_decode_kernel(const __grid_constant__ AttnArgs a, int hg) {
  constexpr int D = 8 * LPK, KPW = 32 / LPK, P = NW * KPW, NT = NW * 32;
  VSHARED(float, s_acc, P * GM * D);
  VSHARED(float, s_m, P * GM);
  VSHARED(float, s_l, P * GM);
  VSHARED(float, s_f, (P > kAttnDecodeMaxSplits ? P : kAttnDecodeMaxSplits) * GM);  // partials', then chunks' factors
  VSHARED(float, s_ml, 2 * GM);
  VSHARED(int, s_last, 1);
  const int tid = static_cast<int>(threadIdx.x), warp = tid >> 5, lane = tid & 31;
  const int kk = lane / LPK, part = lane % LPK;
  const int t = static_cast<int>(blockIdx.z), split = static_cast<int>(blockIdx.y);
  const int h0 = static_cast<int>(blockIdx.x) * hg;
  const int kvh = h0 / (a.n_heads / a.n_kv_heads);
  const int pos = a.pos[t], slot = a.slot[t];
  const int L = pos + 1;
  const int S = static_cast<int>(gridDim.y);
  const int chunk = decode_chunk(pos, S, a.min_chunk, 2 * P);
  const int active = (L + chunk - 1) / chunk;
  const int start = split * chunk;
  if (start >= L) return;
  const int end = imin(L, start + chunk);

  const int64_t ld = a.kv_dim;
  const int64_t base = static_cast<int64_t>(slot) * a.n_ctx * ld + static_cast<int64_t>(kvh) * D + part * 8;
  const uint16_t* kc = static_cast<const uint16_t*>(a.k_cache) + base;
  const uint16_t* vc = static_cast<const uint16_t*>(a.v_cache) + base;
  const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
  auto load = [&](int j, uint4& kr, uint4& vr) {
    if (j < end) {
      kr = ld16(kc + j * ld);
      vr = ld16(vc + j * ld);
    } else {
      kr = zero;
      vr = zero;
    }
  };
  const int j0 = start + warp * KPW + kk;
  uint4 k0, v0, k1, v1;
  const bool early = a.safe && start + 2 * P <= a.safe[t];  // the first keys are older than this step
  if (early) {
    load(j0, k0, v0);
    load(j0 + P, k1, v1);
  }
  pdl_wait();
  pdl_trigger();
  if (!early) {
    load(j0, k0, v0);
    load(j0 + P, k1, v1);
  }

  float q[GM][8];
  const float qs = a.scale * kLog2e;  // scores in log2 units: softmax with exp2
  VUNROLL for (int g = 0; g < GM; ++g) {
    if (g < hg) {
      const float* qp = a.q + static_cast<int64_t>(t) * a.ldq + static_cast<int64_t>(h0 + g) * D + part * 8;
      const float4 x0 = ld16f(qp), x1 = ld16f(qp + 4);
      q[g][0] = x0.x * qs, q[g][1] = x0.y * qs, q[g][2] = x0.z * qs, q[g][3] = x0.w * qs;
      q[g][4] = x1.x * qs, q[g][5] = x1.y * qs, q[g][6] = x1.z * qs, q[g][7] = x1.w * qs;
    } else {
      VUNROLL for (int e = 0; e < 8; ++e) q[g][e] = 0.f;
    }
  }
  float m[GM], l[GM], acc[GM][8];
  VUNROLL for (int g = 0; g < GM; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.f;
    VUNROLL for (int e = 0; e < 8; ++e) acc[g][e] = 0.f;
  }

  for (int jb = start; jb < end; jb += 2 * P) {
    const int ja = jb + warp * KPW + kk, jc = ja + P;
    uint4 nk0, nv0, nk1, nv1;
    load(ja + 2 * P, nk0, nv0);
    load(jc + 2 * P, nk1, nv1);
    float kf0[8], kf1[8];
    f16x8(k0, kf0);
    f16x8(k1, kf1);
    float s0[GM], s1[GM];
    VUNROLL for (int g = 0; g < GM; ++g) {
      float x = 0.f, y = 0.f;
      VUNROLL for (int e = 0; e < 8; ++e) {
        x += q[g][e] * kf0[e];
        y += q[g][e] * kf1[e];
      }
      s0[g] = x;
      s1[g] = y;
    }
    VUNROLL for (int o = 1; o < LPK; o <<= 1) {
      VUNROLL for (int g = 0; g < GM; ++g) {
        s0[g] += __shfl_xor_sync(0xffffffffu, s0[g], o);
        s1[g] += __shfl_xor_sync(0xffffffffu, s1[g], o);
      }
    }
    float vf0[8], vf1[8];
    f16x8(v0, vf0);
    f16x8(v1, vf1);
    const bool ok0 = ja < end, ok1 = jc < end;
    VUNROLL for (int g = 0; g < GM; ++g) {
      const float a0 = ok0 ? s0[g] : -INFINITY, a1 = ok1 ? s1[g] : -INFINITY;
      const float mn = fmaxf(m[g], fmaxf(a0, a1));
      if (mn != -INFINITY) {
        const float c = exp2f(m[g] - mn);
        const float p0 = exp2f(a0 - mn), p1 = exp2f(a1 - mn);
        l[g] = l[g] * c + p0 + p1;
        VUNROLL for (int e = 0; e < 8; ++e) acc[g][e] = acc[g][e] * c + p0 * vf0[e] + p1 * vf1[e];
        m[g] = mn;
      }
    }
    k0 = nk0, v0 = nv0, k1 = nk1, v1 = nv1;
  }

  // ---- merge the lane groups of the block ----
  const int pi = warp * KPW + kk;
  VUNROLL for (int g = 0; g < GM; ++g) {
    VUNROLL for (int e = 0; e < 8; ++e) s_acc[(pi * GM + g) * D + part * 8 + e] = acc[g][e];
    if (part == 0) {
      s_m[pi * GM + g] = m[g];
      s_l[pi * GM + g] = l[g];
    }
  }
  __syncthreads();
  if (tid < hg) {
    float M = -INFINITY;
    for (int p = 0; p < P; ++p) M = fmaxf(M, s_m[p * GM + tid]);
    float sum = 0.f;
    for (int p = 0; p < P; ++p) {
      const float mm = s_m[p * GM + tid];
      if (mm != -INFINITY) sum += s_l[p * GM + tid] * exp2f(mm - M);
    }
    s_ml[tid] = M;
    s_ml[GM + tid] = sum;
  }
  __syncthreads();
  for (int i = tid; i < P * hg; i += NT) {
    const int p = i / hg, g = i % hg;
    const float mm = s_m[p * GM + g];
    s_f[p * GM + g] = mm == -INFINITY ? 0.f : exp2f(mm - s_ml[g]);
  }
  __syncthreads();

  const int nout = hg * D;
  const int64_t orow = static_cast<int64_t>(t) * a.ldo + static_cast<int64_t>(h0) * D;
  float* s_out = s_acc;  // the block's outputs, once the partials in s_acc are consumed
  // Stores s_out (all threads) and, if asked, its int8 activations (a warp quantizes whole groups of 32) or its
  // f16 copy.
  auto emit = [&]() {
    for (int b0 = 0; b0 < nout; b0 += NT) {
      const int idx = b0 + tid;
      const float val = idx < nout ? s_out[idx] : 0.f;
      if (idx < nout) {
        a.out[orow + idx] = val;
        if (a.oh) a.oh[static_cast<int64_t>(t) * a.ldo + static_cast<int64_t>(h0) * D + idx] = f2h(val);
      }
      if (a.oq && b0 + warp * 32 < nout) {
        const int64_t e0 = static_cast<int64_t>(h0) * D + b0 + warp * 32;
        quant_warp32(val, lane, a.oq + t * a.oq_stride + e0, a.ods + t * a.ods_stride + e0 / 32);
      }
    }
  };
  // o[g][d] of this block (relative to its max s_ml[g]), from the lane-group partials
  float ov[(GM * D + NT - 1) / NT];
  VUNROLL for (int k = 0; k < (GM * D + NT - 1) / NT; ++k) {
    const int idx = tid + k * NT;
    float o = 0.f;
    if (idx < nout) {
      const int g = idx / D, d = idx % D;
      for (int p = 0; p < P; ++p) o += s_acc[(p * GM + g) * D + d] * s_f[p * GM + g];
    }
    ov[k] = o;
  }
  __syncthreads();  // s_acc becomes s_out

  if (active == 1) {
    VUNROLL for (int k = 0; k < (GM * D + NT - 1) / NT; ++k) {
      const int idx = tid + k * NT;
      if (idx < nout) s_out[idx] = ov[k] / s_ml[GM + idx / D];
    }
    __syncthreads();
    emit();
    return;
  }

  // ---- several chunks: write this one's partial; the last block of the head group merges them all ----
  const int64_t prow = (static_cast<int64_t>(t) * a.n_heads + h0) * S;  // row of (head h0, split 0)
  VUNROLL for (int k = 0; k < (GM * D + NT - 1) / NT; ++k) {
    const int idx = tid + k * NT;
    if (idx < nout) a.part_o[(prow + static_cast<int64_t>(idx / D) * S + split) * D + idx % D] = ov[k];
  }
  if (tid < hg) a.part_ml[prow + static_cast<int64_t>(tid) * S + split] = make_float2(s_ml[tid], s_ml[GM + tid]);
  __threadfence();
  __syncthreads();
  int* counter = a.counters + static_cast<int64_t>(t) * gridDim.x + blockIdx.x;
  if (tid == 0) s_last[0] = atomicAdd(counter, 1) == active - 1 ? 1 : 0;
  __syncthreads();
  if (!s_last[0]) return;
  __threadfence();
  // max and sum over the chunks: a warp per head, lanes over chunks
  for (int g = warp; g < hg; g += NW) {
    const float* ml = reinterpret_cast<const float*>(a.part_ml + prow + static_cast<int64_t>(g) * S);
    float mx = -INFINITY;
    for (int c = lane; c < active; c += 32) mx = fmaxf(mx, ld_cg(ml + 2 * c));
    const float M = warp_max(mx);
    float sum = 0.f;
    for (int c = lane; c < active; c += 32) {
      const float f = exp2f(ld_cg(ml + 2 * c) - M);
      s_f[c * GM + g] = f;
      sum += ld_cg(ml + 2 * c + 1) * f;
    }
    sum = warp_sum(sum);
    if (lane == 0) {
      s_ml[g] = M;
      s_ml[GM + g] = sum;
    }
  }
  __syncthreads();
  // outputs in 4-element granules; the chunks' loads are independent (8 in flight per thread)
  for (int gi = tid; gi < nout / 4; gi += NT) {
    const int g = (gi * 4) / D, d = (gi * 4) % D;
    const float* po = a.part_o + (prow + static_cast<int64_t>(g) * S) * D + d;
    float4 o = make_float4(0.f, 0.f, 0.f, 0.f);
    int c = 0;
    for (; c + 8 <= active; c += 8) {
      float4 v[8];
      VUNROLL for (int j = 0; j < 8; ++j) v[j] = ld_cg4(po + static_cast<int64_t>(c + j) * D);
      VUNROLL for (int j = 0; j < 8; ++j) {
        const float f = s_f[(c + j) * GM + g];
        o.x += v[j].x * f, o.y += v[j].y * f, o.z += v[j].z * f, o.w += v[j].w * f;
      }
    }
    for (; c < active; ++c) {
      const float4 v = ld_cg4(po + static_cast<int64_t>(c) * D);
      const float f = s_f[c * GM + g];
      o.x += v.x * f, o.y += v.y * f, o.z += v.z * f, o.w += v.w * f;
    }
    const float inv = 1.f / s_ml[GM + g];
    s_out[gi * 4] = o.x * inv, s_out[gi * 4 + 1] = o.y * inv, s_out[gi * 4 + 2] = o.z * inv;
    s_out[gi * 4 + 3] = o.w * inv;
  }
  __syncthreads();
  emit();
  if (tid == 0) *counter = 0;  // ready for the next launch
}

// Head groups of up to 4: 8 warps a block; up to 8: 4 warps (the lane-group partials fill 32 KB of shared memory).
template <int LPK>
void decode_go(const AttnArgs& a, int hg, cudaStream_t s) {
  const dim3 grid(static_cast<unsigned>(a.n_heads / hg), static_cast<unsigned>(a.splits), static_cast<unsigned>(a.n));
  if (hg <= 4) {
    auto* k = &attn_decode_kernel<LPK, 4, 8>;
    VLAUNCH_PDL(k, grid, dim3(8 * 32), 0, s, a, hg);
  } else {
    auto* k = &attn_decode_kernel<LPK, 8, 4>;
    VLAUNCH_PDL(k, grid, dim3(4 * 32), 0, s, a, hg);
  }
  VCHECK_LAUNCH("attention (decode)");
}

}  // namespace

bool attn_decode_supported(bool f16, int head_dim, int n_heads, int n_kv_heads, int n) {
  if (!f16 || n <= 0 || n > kAttnDecodeMaxTokens || n_kv_heads <= 0 || n_heads % n_kv_heads != 0) return false;
  return head_dim == 8 || head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 128 || head_dim == 256;
}

void attn_decode_plan(AttnArgs& a, int target_blocks) {
  const int hg = attn_heads_per_block(a.n_heads, a.n_kv_heads);
  const int64_t per_split = int64_t(a.n) * (a.n_heads / hg);
  int64_t s = ceil_div(std::max(target_blocks, 1), std::max<int64_t>(per_split, 1));
  s = std::min<int64_t>(s, ceil_div(a.n_ctx, std::max(a.min_chunk, 1)));
  a.splits = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(s, kAttnDecodeMaxSplits)));
}

void attention_decode(const AttnArgs& a, cudaStream_t s) {
  if (a.n <= 0) return;
  if (!attn_decode_supported(a.f16, a.head_dim, a.n_heads, a.n_kv_heads, a.n))
    throw std::runtime_error("CUDA backend: attention (decode): unsupported shape");
  if (a.splits > 1 && (!a.counters || !a.part_o || !a.part_ml))
    throw std::runtime_error("CUDA backend: attention (decode): no scratch for split results");
  const int hg = attn_heads_per_block(a.n_heads, a.n_kv_heads);
  switch (a.head_dim) {
    case 8: decode_go<1>(a, hg, s); break;
    case 16: decode_go<2>(a, hg, s); break;
    case 32: decode_go<4>(a, hg, s); break;
    case 64: decode_go<8>(a, hg, s); break;
    case 128: decode_go<16>(a, hg, s); break;
    default: decode_go<32>(a, hg, s); break;
  }
}

}  // namespace vireo::VIREO_CUDA_NS
