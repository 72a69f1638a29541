// Portable kernels on the 16-row group layout (kernels_internal.h): the fallback path and the readable statement
// of what the SIMD paths compute. Integer parts are exact, so the paths differ only in float rounding.
#include <cmath>
#include <cstring>

#include "backend/cpu/kernels_internal.h"

namespace vireo::cpu::kern {
namespace {

inline float h2f(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_fp32(h);
}
inline float bf2f(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return bf16_to_fp32(h);
}
template <class T>
inline T ld(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

inline int clamp127(int v) { return v > 127 ? 127 : (v < -127 ? -127 : v); }

void quant32_scalar(const float* x, uint8_t* dst, const ActLayout& al, int offset) {
  int8_t* qs = reinterpret_cast<int8_t*>(dst);
  for (int64_t b = 0; b < al.nb; ++b) {
    const float* xb = x + b * 32;
    float amax = 0.f;
    for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(xb[j]));
    const float d = amax / 127.f;
    const float id = amax > 0.f ? 127.f / amax : 0.f;
    int sum = 0;
    for (int j = 0; j < 32; ++j) {
      const int q = clamp127(static_cast<int>(std::nearbyint(xb[j] * id)));
      qs[b * 32 + j] = static_cast<int8_t>(q);
      sum += q;
    }
    const int32_t corr = -offset * sum;
    const float dsum = d * static_cast<float>(sum);
    std::memcpy(dst + al.off_d + 4 * b, &d, 4);
    std::memcpy(dst + al.off_corr + 4 * b, &corr, 4);
    std::memcpy(dst + al.off_dsum + 4 * b, &dsum, 4);
  }
}

void quant256_scalar(const float* x, uint8_t* dst, const ActLayout& al, int offset) {
  int8_t* qs = reinterpret_cast<int8_t*>(dst);
  for (int64_t b = 0; b < al.nb; ++b) {
    const float* xb = x + b * 256;
    float amax = 0.f;
    for (int j = 0; j < 256; ++j) amax = std::fmax(amax, std::fabs(xb[j]));
    const float d = amax / 127.f;
    const float id = amax > 0.f ? 127.f / amax : 0.f;
    int s16[16] = {};
    for (int j = 0; j < 256; ++j) {
      const int q = clamp127(static_cast<int>(std::nearbyint(xb[j] * id)));
      qs[b * 256 + j] = static_cast<int8_t>(q);
      s16[j / 16] += q;
    }
    std::memcpy(dst + al.off_d + 4 * b, &d, 4);
    for (int j = 0; j < 16; ++j) {
      const int32_t corr = -offset * s16[j];
      const int16_t bs = static_cast<int16_t>(s16[j]);
      std::memcpy(dst + al.off_corr + 4 * (b * 16 + j), &corr, 4);
      std::memcpy(dst + al.off_bs16 + 2 * (b * 16 + j), &bs, 2);
    }
    for (int j = 0; j < 8; ++j) {
      const int16_t bs = static_cast<int16_t>(s16[2 * j] + s16[2 * j + 1]);
      std::memcpy(dst + al.off_bs32 + 2 * (b * 8 + j), &bs, 2);
    }
  }
}

// Unsigned code of row rr, element k (within the block) of a group block.
template <WType T>
inline int code(const uint8_t* blk, int rr, int k) {
  const int jj = k & 3;
  if constexpr (T == WType::Q8_0) {
    return blk[32 + 64 * (k / 4) + rr * 4 + jj];
  } else if constexpr (T == WType::Q4_0 || T == WType::Q4_1 || T == WType::Q5_0 || T == WType::Q5_1) {
    const int c = k / 8, h = (k / 4) & 1;
    int off = (T == WType::Q4_0) ? 32 : (T == WType::Q4_1 || T == WType::Q5_0) ? 64 : 96;
    if (T == WType::Q5_0 || T == WType::Q5_1) off += 32;
    const uint8_t b = blk[off + 64 * c + rr * 4 + jj];
    int u = h ? (b >> 4) : (b & 15);
    if constexpr (T == WType::Q5_0 || T == WType::Q5_1) {
      const int qh_off = T == WType::Q5_0 ? 32 : 64;
      u |= ((blk[qh_off + rr * 4 + jj] >> (2 * c + h)) & 1) << 4;
    }
    return u;
  } else if constexpr (T == WType::Q2_K) {
    const int j = k / 16, g = (k / 4) & 3;
    return (blk[320 + 64 * j + rr * 4 + jj] >> (2 * g)) & 3;
  } else if constexpr (T == WType::Q3_K) {
    const int j = k / 16, g = (k / 4) & 3;
    const int lo = (blk[288 + 64 * j + rr * 4 + jj] >> (2 * g)) & 3;
    const int hb = (blk[1312 + 64 * (j / 2) + rr * 4 + jj] >> (g + 4 * (j & 1))) & 1;
    return lo + 4 * hb;
  } else if constexpr (T == WType::Q4_K || T == WType::Q5_K) {
    const int j = k / 32, c = (k / 8) & 3, h = (k / 4) & 1;
    const int off = T == WType::Q4_K ? 256 : 768;
    const uint8_t b = blk[off + 64 * (4 * j + c) + rr * 4 + jj];
    int u = h ? (b >> 4) : (b & 15);
    if constexpr (T == WType::Q5_K) u |= ((blk[256 + 64 * j + rr * 4 + jj] >> (2 * c + h)) & 1) << 4;
    return u;
  } else {  // Q6_K
    const int j = k / 16, c = (k / 8) & 1, h = (k / 4) & 1, g = (k / 4) & 3;
    const uint8_t* base = blk + 288 + 192 * j;
    const uint8_t b = base[64 * c + rr * 4 + jj];
    const int lo = h ? (b >> 4) : (b & 15);
    const int hi = (base[128 + rr * 4 + jj] >> (2 * g)) & 3;
    return lo | (hi << 4);
  }
}

// 6-bit scale and min j of a Q4_K/Q5_K row from the 12 scale planes.
inline void k4_scale_min(const uint8_t* blk, int rr, int j, int* sc, int* m) {
  auto P = [&](int p) { return static_cast<int>(blk[64 + 16 * p + rr]); };
  if (j < 4) {
    *sc = P(j) & 63;
    *m = P(j + 4) & 63;
  } else {
    *sc = (P(j + 4) & 15) | ((P(j - 4) >> 6) << 4);
    *m = (P(j + 4) >> 4) | ((P(j) >> 6) << 4);
  }
}

template <WType T>
void gemm_quant(const GemmArgs& a) {
  const int64_t nb = a.al.nb;
  const int64_t gbb = group_block_bytes(T);
  for (int64_t g = a.g0; g < a.g1; ++g) {
    const uint8_t* gw = a.w + g * a.group_bytes;
    for (int rr = 0; rr < kGroupRows; ++rr) {
      const int64_t r = g * kGroupRows + rr;
      if (r >= a.rows) break;
      for (int64_t i = 0; i < a.m; ++i) {
        const uint8_t* act = a.act + i * a.al.stride;
        const int8_t* qs = reinterpret_cast<const int8_t*>(act);
        double acc = 0.0;
        for (int64_t b = 0; b < nb; ++b) {
          const uint8_t* blk = gw + b * gbb;
          const float dx = ld<float>(act + a.al.off_d + 4 * b);
          if constexpr (T == WType::Q8_0 || T == WType::Q4_0 || T == WType::Q4_1 || T == WType::Q5_0 ||
                        T == WType::Q5_1) {
            int32_t s = ld<int32_t>(act + a.al.off_corr + 4 * b);
            for (int k = 0; k < 32; ++k) s += code<T>(blk, rr, k) * qs[b * 32 + k];
            float v = h2f(blk + 2 * rr) * dx * static_cast<float>(s);
            if constexpr (T == WType::Q4_1 || T == WType::Q5_1)
              v += h2f(blk + 32 + 2 * rr) * ld<float>(act + a.al.off_dsum + 4 * b);
            acc += v;
          } else {
            const int unit = (T == WType::Q4_K || T == WType::Q5_K) ? 32 : 16;
            const int nunits = 256 / unit;
            int64_t sumi = 0, mins = 0;
            for (int j = 0; j < nunits; ++j) {
              int32_t s = 0;
              if constexpr (T == WType::Q3_K || T == WType::Q6_K) s = ld<int32_t>(act + a.al.off_corr + 4 * (b * 16 + j));
              for (int k = j * unit; k < (j + 1) * unit; ++k) s += code<T>(blk, rr, k) * qs[b * 256 + k];
              int sc = 0, mn = 0;
              if constexpr (T == WType::Q2_K) {
                sc = blk[64 + 16 * j + rr] & 15;
                mn = blk[64 + 16 * j + rr] >> 4;
                mins += static_cast<int64_t>(mn) * ld<int16_t>(act + a.al.off_bs16 + 2 * (b * 16 + j));
              } else if constexpr (T == WType::Q3_K || T == WType::Q6_K) {
                sc = static_cast<int8_t>(blk[32 + 16 * j + rr]);
              } else {
                k4_scale_min(blk, rr, j, &sc, &mn);
                mins += static_cast<int64_t>(mn) * ld<int16_t>(act + a.al.off_bs32 + 2 * (b * 8 + j));
              }
              sumi += static_cast<int64_t>(sc) * s;
            }
            float v = h2f(blk + 2 * rr) * static_cast<float>(sumi);
            if constexpr (T == WType::Q2_K || T == WType::Q4_K || T == WType::Q5_K)
              v -= h2f(blk + 32 + 2 * rr) * static_cast<float>(mins);
            acc += static_cast<double>(dx) * v;
          }
        }
        a.y[i * a.ldy + r] = static_cast<float>(acc);
      }
    }
  }
}

template <WType T>
void gemm_float(const GemmArgs& a) {
  const int es = T == WType::F32 ? 4 : 2;
  for (int64_t g = a.g0; g < a.g1; ++g) {
    const uint8_t* gw = a.w + g * a.group_bytes;
    for (int rr = 0; rr < kGroupRows; ++rr) {
      const int64_t r = g * kGroupRows + rr;
      if (r >= a.rows) break;
      for (int64_t i = 0; i < a.m; ++i) {
        const float* x = a.x + i * a.ldx;
        float acc = 0.f;
        for (int64_t k = 0; k < a.K; ++k) {
          const uint8_t* p = gw + (k * kGroupRows + rr) * es;
          float w;
          if constexpr (T == WType::F32) w = ld<float>(p);
          else if constexpr (T == WType::F16) w = h2f(p);
          else w = bf2f(p);
          acc += w * x[k];
        }
        a.y[i * a.ldy + r] = acc;
      }
    }
  }
}

Kernels make_scalar() {
  Kernels k;
  k.gemm[int(WType::F32)] = gemm_float<WType::F32>;
  k.gemm[int(WType::F16)] = gemm_float<WType::F16>;
  k.gemm[int(WType::BF16)] = gemm_float<WType::BF16>;
  k.gemm[int(WType::Q4_0)] = gemm_quant<WType::Q4_0>;
  k.gemm[int(WType::Q4_1)] = gemm_quant<WType::Q4_1>;
  k.gemm[int(WType::Q5_0)] = gemm_quant<WType::Q5_0>;
  k.gemm[int(WType::Q5_1)] = gemm_quant<WType::Q5_1>;
  k.gemm[int(WType::Q8_0)] = gemm_quant<WType::Q8_0>;
  k.gemm[int(WType::Q2_K)] = gemm_quant<WType::Q2_K>;
  k.gemm[int(WType::Q3_K)] = gemm_quant<WType::Q3_K>;
  k.gemm[int(WType::Q4_K)] = gemm_quant<WType::Q4_K>;
  k.gemm[int(WType::Q5_K)] = gemm_quant<WType::Q5_K>;
  k.gemm[int(WType::Q6_K)] = gemm_quant<WType::Q6_K>;
  k.act_offset[int(WType::Q8_0)] = 128;
  k.act_offset[int(WType::Q4_0)] = 8;
  k.act_offset[int(WType::Q5_0)] = 16;
  k.act_offset[int(WType::Q3_K)] = 4;
  k.act_offset[int(WType::Q6_K)] = 32;
  k.quant32 = quant32_scalar;
  k.quant256 = quant256_scalar;
  return k;
}

}  // namespace

const Kernels& scalar_kernels() {
  static const Kernels k = make_scalar();
  return k;
}

}  // namespace vireo::cpu::kern
