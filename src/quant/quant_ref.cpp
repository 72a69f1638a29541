// Reference quantizers and dequantizers for the GGUF block formats.
//
// Layout facts (see quant/blocks.h for the structs). Element indices are within one block.
//   Q4_0/Q4_1  (32): element e<16 is the low nibble of qs[e], e>=16 the high nibble of qs[e-16].
//   Q5_0/Q5_1  (32): as Q4_x for the low 4 bits; bit 4 of element e is bit e of qh (read as little-endian u32).
//   Q8_0/Q8_1  (32): qs[e]. Q8_1 also stores s = d * sum(qs).
//   Q2_K (256): 16 sub-blocks of 16 elements; element e = 128*n + 32*j + l (n<2, j<4, l<32) has its 2 bits in
//               qs[32*n + l] at bit 2*j. Sub-block e/16 has scale scales[e/16] & 15 and min scales[e/16] >> 4;
//               x = d * sc * q - dmin * m.
//   Q3_K (256): same 2-bit placement as Q2_K; the third bit of element e is bit (4*n + j) of hmask[l];
//               q3 = q2 + 4*hbit - 4 in [-4, 3]. 16 6-bit scales s (stored biased by 32): low 4 bits of scale i
//               in scales[i % 8] (low nibble for i < 8, high nibble for i >= 8), high 2 bits in
//               scales[8 + i % 4] at bit 2*(i / 4). x = d * (s - 32) * q3.
//   Q4_K (256): 8 sub-blocks of 32; element e = 64*c + r: r < 32 is the low nibble of qs[32*c + r] (sub-block 2c),
//               r >= 32 the high nibble of qs[32*c + r - 32] (sub-block 2c+1). 6-bit scale/min of sub-block j:
//               j < 4: sc = scales[j] & 63, m = scales[j+4] & 63;
//               j >= 4: sc = (scales[j+4] & 15) | (scales[j-4] >> 6) << 4, m = (scales[j+4] >> 4) | (scales[j] >> 6) << 4.
//               x = d * sc * q - dmin * m.
//   Q5_K (256): as Q4_K plus a fifth bit: element 64*c + r takes bit (2c + (r >= 32)) of qh[r % 32].
//   Q6_K (256): element e = 128*n + 32*k + l: low 4 bits in ql[64*n + 32*(k & 1) + l] (low nibble for k < 2,
//               high nibble for k >= 2), high 2 bits in qh[32*n + l] at bit 2*k; q6 = value - 32;
//               x = d * scales[e/16] * q6 (int8 scales).
//   Q8_K (256): x = d * qs[e] with f32 d; bsums[i] = sum of qs[16i .. 16i+15].
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "quant/blocks.h"
#include "quant/quant.h"

namespace vireo {
namespace {

inline float h2f(f16_t h) { return fp16_to_fp32(h); }
inline f16_t f2h(float f) { return fp32_to_fp16(f); }
// Value a float takes after being stored as fp16 (what the dequantizer will see).
inline float via_f16(float f) { return h2f(f2h(f)); }

inline int round_int(float x) { return static_cast<int>(std::nearbyint(x)); }
inline int clampi(int v, int lo, int hi) { return std::min(hi, std::max(lo, v)); }

// ---------------------------------------------------------------------------------------------------------------
// Dequantizers
// ---------------------------------------------------------------------------------------------------------------

void dq_q4_0(const BlockQ4_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK4_0) {
    const float d = h2f(b[i].d);
    for (int j = 0; j < QK4_0 / 2; ++j) {
      y[j] = d * static_cast<float>((b[i].qs[j] & 15) - 8);
      y[j + QK4_0 / 2] = d * static_cast<float>((b[i].qs[j] >> 4) - 8);
    }
  }
}

void dq_q4_1(const BlockQ4_1* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK4_1) {
    const float d = h2f(b[i].d), m = h2f(b[i].m);
    for (int j = 0; j < QK4_1 / 2; ++j) {
      y[j] = d * static_cast<float>(b[i].qs[j] & 15) + m;
      y[j + QK4_1 / 2] = d * static_cast<float>(b[i].qs[j] >> 4) + m;
    }
  }
}

inline uint32_t load_u32le(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

void dq_q5_0(const BlockQ5_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK5_0) {
    const float d = h2f(b[i].d);
    const uint32_t qh = load_u32le(b[i].qh);
    for (int j = 0; j < QK5_0 / 2; ++j) {
      const int lo = (b[i].qs[j] & 15) | int((qh >> j) & 1) << 4;
      const int hi = (b[i].qs[j] >> 4) | int((qh >> (j + 16)) & 1) << 4;
      y[j] = d * static_cast<float>(lo - 16);
      y[j + QK5_0 / 2] = d * static_cast<float>(hi - 16);
    }
  }
}

void dq_q5_1(const BlockQ5_1* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK5_1) {
    const float d = h2f(b[i].d), m = h2f(b[i].m);
    const uint32_t qh = load_u32le(b[i].qh);
    for (int j = 0; j < QK5_1 / 2; ++j) {
      const int lo = (b[i].qs[j] & 15) | int((qh >> j) & 1) << 4;
      const int hi = (b[i].qs[j] >> 4) | int((qh >> (j + 16)) & 1) << 4;
      y[j] = d * static_cast<float>(lo) + m;
      y[j + QK5_1 / 2] = d * static_cast<float>(hi) + m;
    }
  }
}

void dq_q8_0(const BlockQ8_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK8_0) {
    const float d = h2f(b[i].d);
    for (int j = 0; j < QK8_0; ++j) y[j] = d * static_cast<float>(b[i].qs[j]);
  }
}

void dq_q8_1(const BlockQ8_1* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK8_1) {
    const float d = h2f(b[i].d);
    for (int j = 0; j < QK8_1; ++j) y[j] = d * static_cast<float>(b[i].qs[j]);
  }
}

void dq_q2_k(const BlockQ2_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK_K) {
    const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
    for (int e = 0; e < QK_K; ++e) {
      const int n = e / 128, j = (e % 128) / 32, l = e % 32;
      const int q = (b[i].qs[32 * n + l] >> (2 * j)) & 3;
      const uint8_t sm = b[i].scales[e / 16];
      y[e] = d * static_cast<float>(sm & 15) * static_cast<float>(q) - dmin * static_cast<float>(sm >> 4);
    }
  }
}

// The 16 biased 6-bit scales of a Q3_K block (0..63; subtract 32 for the signed scale).
void q3k_unpack_scales(const uint8_t* s, int out[16]) {
  for (int i = 0; i < 16; ++i) {
    const int low = i < 8 ? (s[i] & 15) : (s[i - 8] >> 4);
    const int high = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
    out[i] = low | high << 4;
  }
}

void dq_q3_k(const BlockQ3_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK_K) {
    const float d = h2f(b[i].d);
    int sc[16];
    q3k_unpack_scales(b[i].scales, sc);
    for (int e = 0; e < QK_K; ++e) {
      const int n = e / 128, j = (e % 128) / 32, l = e % 32;
      const int q2 = (b[i].qs[32 * n + l] >> (2 * j)) & 3;
      const int hbit = (b[i].hmask[l] >> (4 * n + j)) & 1;
      const int q = q2 + 4 * hbit - 4;
      y[e] = d * static_cast<float>(sc[e / 16] - 32) * static_cast<float>(q);
    }
  }
}

// 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block.
inline void k4_scale_min(const uint8_t* s, int j, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4;
    *m = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
  }
}

void k4_pack_scale_min(uint8_t* s, const int sc[8], const int m[8]) {
  std::memset(s, 0, K_SCALE_SIZE);
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      s[j] |= static_cast<uint8_t>(sc[j] & 63);
      s[j + 4] |= static_cast<uint8_t>(m[j] & 63);
    } else {
      s[j + 4] |= static_cast<uint8_t>((sc[j] & 15) | (m[j] & 15) << 4);
      s[j - 4] |= static_cast<uint8_t>((sc[j] >> 4) << 6);
      s[j] |= static_cast<uint8_t>((m[j] >> 4) << 6);
    }
  }
}

void dq_q4_k(const BlockQ4_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK_K) {
    const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
    for (int c = 0; c < 4; ++c) {
      int sc0, m0, sc1, m1;
      k4_scale_min(b[i].scales, 2 * c, &sc0, &m0);
      k4_scale_min(b[i].scales, 2 * c + 1, &sc1, &m1);
      const float d0 = d * static_cast<float>(sc0), mm0 = dmin * static_cast<float>(m0);
      const float d1 = d * static_cast<float>(sc1), mm1 = dmin * static_cast<float>(m1);
      const uint8_t* q = b[i].qs + 32 * c;
      for (int l = 0; l < 32; ++l) {
        y[64 * c + l] = d0 * static_cast<float>(q[l] & 15) - mm0;
        y[64 * c + 32 + l] = d1 * static_cast<float>(q[l] >> 4) - mm1;
      }
    }
  }
}

void dq_q5_k(const BlockQ5_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK_K) {
    const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
    for (int c = 0; c < 4; ++c) {
      int sc0, m0, sc1, m1;
      k4_scale_min(b[i].scales, 2 * c, &sc0, &m0);
      k4_scale_min(b[i].scales, 2 * c + 1, &sc1, &m1);
      const float d0 = d * static_cast<float>(sc0), mm0 = dmin * static_cast<float>(m0);
      const float d1 = d * static_cast<float>(sc1), mm1 = dmin * static_cast<float>(m1);
      const uint8_t* q = b[i].qs + 32 * c;
      for (int l = 0; l < 32; ++l) {
        const int lo = (q[l] & 15) | ((b[i].qh[l] >> (2 * c)) & 1) << 4;
        const int hi = (q[l] >> 4) | ((b[i].qh[l] >> (2 * c + 1)) & 1) << 4;
        y[64 * c + l] = d0 * static_cast<float>(lo) - mm0;
        y[64 * c + 32 + l] = d1 * static_cast<float>(hi) - mm1;
      }
    }
  }
}

void dq_q6_k(const BlockQ6_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK_K) {
    const float d = h2f(b[i].d);
    for (int e = 0; e < QK_K; ++e) {
      const int n = e / 128, k = (e % 128) / 32, l = e % 32;
      const uint8_t qlb = b[i].ql[64 * n + 32 * (k & 1) + l];
      const int lo = k < 2 ? (qlb & 15) : (qlb >> 4);
      const int hi = (b[i].qh[32 * n + l] >> (2 * k)) & 3;
      const int q = (lo | hi << 4) - 32;
      y[e] = d * static_cast<float>(b[i].scales[e / 16]) * static_cast<float>(q);
    }
  }
}

void dq_q8_k(const BlockQ8_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK_K)
    for (int j = 0; j < QK_K; ++j) y[j] = b[i].d * static_cast<float>(b[i].qs[j]);
}

// ---------------------------------------------------------------------------------------------------------------
// Quantizers of the 32-element types: the scale follows from the block's extreme values, as the formats intend.
// ---------------------------------------------------------------------------------------------------------------

// Element of largest magnitude, keeping its sign (the first one on ties).
float signed_absmax(const float* x, int n) {
  float amax = 0, m = 0;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      m = x[i];
    }
  return m;
}

void q_q4_0(const float* x, BlockQ4_0* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK4_0) {
    // The extreme element maps to q = 0 (value -8*d), using the extra negative level for the larger side.
    const float max = signed_absmax(x, QK4_0);
    const float d = max / -8.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    b[i].d = f2h(d);
    for (int j = 0; j < QK4_0 / 2; ++j) {
      const int q0 = std::min(15, static_cast<int>(x[j] * id + 8.5f));
      const int q1 = std::min(15, static_cast<int>(x[j + QK4_0 / 2] * id + 8.5f));
      b[i].qs[j] = static_cast<uint8_t>(q0 | q1 << 4);
    }
  }
}

void q_q4_1(const float* x, BlockQ4_1* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK4_1) {
    float lo = x[0], hi = x[0];
    for (int j = 1; j < QK4_1; ++j) lo = std::min(lo, x[j]), hi = std::max(hi, x[j]);
    const float d = (hi - lo) / 15.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    b[i].d = f2h(d);
    b[i].m = f2h(lo);
    for (int j = 0; j < QK4_1 / 2; ++j) {
      const int q0 = std::min(15, static_cast<int>((x[j] - lo) * id + 0.5f));
      const int q1 = std::min(15, static_cast<int>((x[j + QK4_1 / 2] - lo) * id + 0.5f));
      b[i].qs[j] = static_cast<uint8_t>(q0 | q1 << 4);
    }
  }
}

void q_q5_0(const float* x, BlockQ5_0* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK5_0) {
    const float max = signed_absmax(x, QK5_0);
    const float d = max / -16.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    b[i].d = f2h(d);
    uint32_t qh = 0;
    for (int j = 0; j < QK5_0 / 2; ++j) {
      const int q0 = std::min(31, static_cast<int>(x[j] * id + 16.5f));
      const int q1 = std::min(31, static_cast<int>(x[j + QK5_0 / 2] * id + 16.5f));
      b[i].qs[j] = static_cast<uint8_t>((q0 & 15) | (q1 & 15) << 4);
      qh |= uint32_t(q0 >> 4) << j;
      qh |= uint32_t(q1 >> 4) << (j + QK5_0 / 2);
    }
    for (int k = 0; k < 4; ++k) b[i].qh[k] = static_cast<uint8_t>(qh >> (8 * k));
  }
}

void q_q5_1(const float* x, BlockQ5_1* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK5_1) {
    float lo = x[0], hi = x[0];
    for (int j = 1; j < QK5_1; ++j) lo = std::min(lo, x[j]), hi = std::max(hi, x[j]);
    const float d = (hi - lo) / 31.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    b[i].d = f2h(d);
    b[i].m = f2h(lo);
    uint32_t qh = 0;
    for (int j = 0; j < QK5_1 / 2; ++j) {
      const int q0 = std::min(31, static_cast<int>((x[j] - lo) * id + 0.5f));
      const int q1 = std::min(31, static_cast<int>((x[j + QK5_1 / 2] - lo) * id + 0.5f));
      b[i].qs[j] = static_cast<uint8_t>((q0 & 15) | (q1 & 15) << 4);
      qh |= uint32_t(q0 >> 4) << j;
      qh |= uint32_t(q1 >> 4) << (j + QK5_1 / 2);
    }
    for (int k = 0; k < 4; ++k) b[i].qh[k] = static_cast<uint8_t>(qh >> (8 * k));
  }
}

// Q8_0 / Q8_1 are also the activation formats of the dot products; d = max|x| / 127 and q = round(x / d)
// (half away from zero), the same rule GGUF producers use, so activations quantize identically.
void q_q8_0(const float* x, BlockQ8_0* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK8_0) {
    float amax = 0;
    for (int j = 0; j < QK8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    b[i].d = f2h(d);
    for (int j = 0; j < QK8_0; ++j) b[i].qs[j] = static_cast<int8_t>(std::round(x[j] * id));
  }
}

void q_q8_1(const float* x, BlockQ8_1* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK8_1) {
    float amax = 0;
    for (int j = 0; j < QK8_1; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    b[i].d = f2h(d);
    int sum = 0;
    for (int j = 0; j < QK8_1; ++j) {
      b[i].qs[j] = static_cast<int8_t>(std::round(x[j] * id));
      sum += b[i].qs[j];
    }
    b[i].s = f2h(static_cast<float>(sum) * d);
  }
}

// Q8_K is an activation format only: the element of largest magnitude maps to -127 (scale 1/(-127/max)),
// values round to nearest (ties to even), and bsums hold the sums of each 16 quants.
void q_q8_k(const float* x, BlockQ8_K* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    const float max = signed_absmax(x, QK_K);
    if (max == 0) {
      b[i].d = 0;
      std::memset(b[i].qs, 0, sizeof b[i].qs);
      std::memset(b[i].bsums, 0, sizeof b[i].bsums);
      continue;
    }
    const float iscale = -127.0f / max;
    for (int j = 0; j < QK_K; ++j) b[i].qs[j] = static_cast<int8_t>(std::min(127, round_int(iscale * x[j])));
    for (int g = 0; g < QK_K / 16; ++g) {
      int sum = 0;
      for (int j = 0; j < 16; ++j) sum += b[i].qs[16 * g + j];
      b[i].bsums[g] = static_cast<int16_t>(sum);
    }
    b[i].d = 1.0f / iscale;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// k-quant scale search.
//
// Each sub-block is first fitted on its own (a real-valued scale, and for the asymmetric types a real-valued
// offset): several candidate scales around the range-based one are tried, each rounding gives integer quants,
// and for those quants the least-squares scale (and offset) follows in closed form; a few alternations of
// "round with this scale" / "refit the scale for these quants" polish the best candidate. The sub-block scales
// are then quantized to the format's few bits against a super-block fp16 scale, the super-block scale(s) are
// refitted by least squares for those integer sub-scales, and the quants are recomputed with the values the
// dequantizer will actually use.
// ---------------------------------------------------------------------------------------------------------------

// Asymmetric fit x ≈ s*q - m, q in [0, nmax], s >= 0, m >= 0 (the formats store an unsigned min that is
// subtracted, so the lowest representable value is never above 0).
struct AsymFit {
  float s, m;
};

float asym_error(const float* x, int n, int nmax, float s, float m) {
  float err = 0;
  const float is = s > 0 ? 1.0f / s : 0.0f;
  for (int i = 0; i < n; ++i) {
    const int q = clampi(round_int((x[i] + m) * is), 0, nmax);
    const float diff = s * static_cast<float>(q) - m - x[i];
    err += diff * diff;
  }
  return err;
}

// Least-squares (s, m) for given quants q; keeps m >= 0 and s >= 0.
AsymFit asym_refit(const float* x, const uint8_t* q, int n) {
  double sq = 0, sq2 = 0, sx = 0, sqx = 0;
  for (int i = 0; i < n; ++i) {
    sq += q[i];
    sq2 += double(q[i]) * q[i];
    sx += x[i];
    sqx += double(q[i]) * x[i];
  }
  const double det = n * sq2 - sq * sq;
  double s = 0, off = 0;  // x ≈ s*q + off
  if (det > 0) {
    s = (n * sqx - sq * sx) / det;
    off = (sq2 * sx - sq * sqx) / det;
  }
  if (det <= 0 || off > 0 || s < 0) {  // constrain offset to <= 0 (stored min is unsigned)
    off = std::min(0.0, sx / n);
    s = sq2 > 0 ? std::max(0.0, (sqx - off * sq) / sq2) : 0.0;
  }
  return {static_cast<float>(s), static_cast<float>(-off)};
}

AsymFit fit_asym(const float* x, int n, int nmax) {
  float lo = x[0], hi = x[0];
  for (int i = 1; i < n; ++i) lo = std::min(lo, x[i]), hi = std::max(hi, x[i]);
  if (lo > 0) lo = 0;
  if (hi <= lo) return {0.0f, -lo};  // constant block (<= 0): only the min is needed
  uint8_t q[32];
  AsymFit best{(hi - lo) / nmax, -lo};
  float best_err = asym_error(x, n, nmax, best.s, best.m);
  // Candidate steps, each refitted by least squares: the range spread over nmax + k/10 levels, k in [-10, 10]
  // (k > 0 clips the extremes a little, k < 0 leaves headroom), and over every whole number of levels below
  // nmax (so an input that is already exactly representable, e.g. dequantized data, is found again).
  auto try_levels = [&](float levels) {
    const float iscale = levels / (hi - lo);
    for (int i = 0; i < n; ++i) q[i] = static_cast<uint8_t>(clampi(round_int(iscale * (x[i] - lo)), 0, nmax));
    const AsymFit f = asym_refit(x, q, n);
    const float err = asym_error(x, n, nmax, f.s, f.m);
    if (err < best_err) best_err = err, best = f;
  };
  for (int k = -10; k <= 10; ++k) try_levels(static_cast<float>(nmax) + 0.1f * static_cast<float>(k));
  for (int l = 1; l < nmax; ++l) try_levels(static_cast<float>(l));
  // Lloyd-style polish of the best candidate.
  for (int it = 0; it < 4 && best.s > 0; ++it) {
    const float is = 1.0f / best.s;
    for (int i = 0; i < n; ++i) q[i] = static_cast<uint8_t>(clampi(round_int((x[i] + best.m) * is), 0, nmax));
    const AsymFit f = asym_refit(x, q, n);
    const float err = asym_error(x, n, nmax, f.s, f.m);
    if (!(err < best_err)) break;
    best_err = err, best = f;
  }
  return best;
}

// Symmetric fit x ≈ s*q, q in [-nmax, nmax-1]; s may be negative (the extreme element maps to -nmax).
float sym_error(const float* x, int n, int nmax, float s) {
  float err = 0;
  const float is = s != 0 ? 1.0f / s : 0.0f;
  for (int i = 0; i < n; ++i) {
    const int q = clampi(round_int(x[i] * is), -nmax, nmax - 1);
    const float diff = s * static_cast<float>(q) - x[i];
    err += diff * diff;
  }
  return err;
}

float fit_sym(const float* x, int n, int nmax) {
  const float max = signed_absmax(x, n);
  if (max == 0) return 0.0f;
  float best = max / -static_cast<float>(nmax);
  float best_err = sym_error(x, n, nmax, best);
  auto refit = [&](float iscale) {
    double sqx = 0, sq2 = 0;
    for (int i = 0; i < n; ++i) {
      const int q = clampi(round_int(iscale * x[i]), -nmax, nmax - 1);
      sqx += double(q) * x[i];
      sq2 += double(q) * q;
    }
    return sq2 > 0 ? static_cast<float>(sqx / sq2) : 0.0f;
  };
  // Candidates as in fit_asym: the extreme element at level nmax + k/10, and at every whole level below nmax.
  auto try_level = [&](float level) {
    const float s = refit(-level / max);
    const float err = sym_error(x, n, nmax, s);
    if (err < best_err) best_err = err, best = s;
  };
  for (int k = -10; k <= 10; ++k) try_level(static_cast<float>(nmax) + 0.1f * static_cast<float>(k));
  for (int l = 1; l < nmax; ++l) try_level(static_cast<float>(l));
  for (int it = 0; it < 4 && best != 0; ++it) {
    const float s = refit(1.0f / best);
    const float err = sym_error(x, n, nmax, s);
    if (!(err < best_err)) break;
    best_err = err, best = s;
  }
  return best;
}

// Picks super-scale candidates d = via_f16(vmax / L) for levels L in [lo, hi]: out[0] is L = hi, out[1] and out[2]
// the two levels whose grid fits the values v[j] best (error of v[j] against its nearest grid point relative to
// v[j], weighted by w[j], the energy of the sub-block it scales; where alt is given, v[j] or alt[j], whichever
// fits better). Signs of v are ignored.
void grid_candidates(const float* v, const float* alt, const float* w, int n, float vmax, int lo, int hi,
                     float out[3]) {
  out[0] = out[1] = out[2] = via_f16(vmax / static_cast<float>(hi));
  float best1 = std::numeric_limits<float>::infinity(), best2 = best1;
  for (int L = std::max(1, lo); L <= hi && vmax > 0; ++L) {
    const float d = via_f16(vmax / static_cast<float>(L));
    if (!(d > 0)) continue;
    float score = 0;
    for (int j = 0; j < n; ++j) {
      const float a = std::fabs(v[j]);
      if (a == 0) continue;
      const float r = std::min(static_cast<float>(hi), std::nearbyint(a / d));
      float e = (d * r - a) * (d * r - a) / (a * a);
      if (alt) {
        const float b = std::fabs(alt[j]), rb = std::min(static_cast<float>(hi), std::nearbyint(b / d));
        e = std::min(e, (d * rb - b) * (d * rb - b) / (a * a));
      }
      score += w[j] * e;
    }
    if (score < best1) {
      best2 = best1, out[2] = out[1];
      best1 = score, out[1] = d;
    } else if (score < best2) {
      best2 = score, out[2] = d;
    }
  }
}

// Error of sub-block x[0..len) quantized with scale s and min m (asymmetric types); writes the quants.
float asym_sub_error(const float* x, int len, int nmax, float s, float m, uint8_t* q) {
  const float is = s > 0 ? 1.0f / s : 0.0f;
  float err = 0;
  for (int i = 0; i < len; ++i) {
    q[i] = static_cast<uint8_t>(clampi(round_int((x[i] + m) * is), 0, nmax));
    const float diff = s * static_cast<float>(q[i]) - m - x[i];
    err += diff * diff;
  }
  return err;
}

// One super-block of an asymmetric k-quant: integer sub-scales ls and sub-mins lm in [0, scale_max] against
// fp16 super-scales d and dmin, and the quants.
struct AsymSuper {
  f16_t d, dmin;
  int ls[16], lm[16];
  uint8_t q[QK_K];
};

void quantize_asym_super(const float* x, int n_sub, int sub_len, int nmax, int scale_max, AsymSuper* out) {
  AsymFit fits[16];
  float max_s = 0, max_m = 0;
  for (int j = 0; j < n_sub; ++j) {
    fits[j] = fit_asym(x + j * sub_len, sub_len, nmax);
    max_s = std::max(max_s, fits[j].s);
    max_m = std::max(max_m, fits[j].m);
  }
  // For given d and dmin, each sub-block takes the best of the integer scale/min pairs next to its real-valued
  // fit (the quants are recomputed for each pair). The min is also tried one quant step higher (the fit puts the
  // lowest element at q = 0; the best rounded min may put it at q = 1). Returns the total squared error.
  int ls[16], lm[16];
  uint8_t q[QK_K], qt[32];
  auto choose = [&](float d, float dmin) {
    float total = 0;
    for (int j = 0; j < n_sub; ++j) {
      const float* xj = x + j * sub_len;
      const int rs = d > 0 ? round_int(fits[j].s / d) : 0;
      const int rm0 = dmin > 0 ? round_int(fits[j].m / dmin) : 0;
      const int rm1 = dmin > 0 ? round_int((fits[j].m + fits[j].s) / dmin) : 0;
      const int cs[6] = {rm0 - 1, rm0, rm0 + 1, rm1 - 1, rm1, rm1 + 1};
      float best = std::numeric_limits<float>::infinity();
      for (int a = rs - 1; a <= rs + 1; ++a)
        for (int ci = 0; ci < (rm1 > rm0 + 2 ? 6 : 3); ++ci) {
          const int c = cs[ci];
          const int sa = clampi(a, 0, scale_max), mc = clampi(c, 0, scale_max);
          if (sa != a || mc != c) continue;  // out of range: its clamped twin is tried as well
          const float err = asym_sub_error(xj, sub_len, nmax, d * static_cast<float>(sa),
                                           dmin * static_cast<float>(mc), qt);
          if (err < best) {
            best = err, ls[j] = sa, lm[j] = mc;
            std::memcpy(q + j * sub_len, qt, static_cast<size_t>(sub_len));
          }
        }
      total += best;
    }
    return total;
  };
  auto keep = [&](float dd, float dm) {
    out->d = f2h(dd), out->dmin = f2h(dm);
    std::memcpy(out->ls, ls, sizeof ls), std::memcpy(out->lm, lm, sizeof lm), std::memcpy(out->q, q, sizeof q);
  };
  // Super-scale candidates put the largest sub-scale (sub-min) at level L, scale_max/2 <= L <= scale_max; the two
  // on whose grid the real-valued sub-scales (sub-mins) fall most closely, plus L = scale_max, are tried in all
  // pairings. (An input that is exactly representable, e.g. dequantized data, lies exactly on its grid.)
  float sv[16], mv[16], mv1[16], w[16];
  for (int j = 0; j < n_sub; ++j) {
    sv[j] = fits[j].s, mv[j] = fits[j].m, mv1[j] = fits[j].m + fits[j].s, w[j] = 0;
    for (int i = 0; i < sub_len; ++i) w[j] += x[j * sub_len + i] * x[j * sub_len + i];
  }
  float dc[3], mc[3];
  grid_candidates(sv, nullptr, w, n_sub, max_s, scale_max / 2, scale_max, dc);
  grid_candidates(mv, mv1, w, n_sub, max_m, scale_max / 2, scale_max, mc);
  float best_err = std::numeric_limits<float>::infinity();
  for (float d : dc)
    for (float dmin : mc) {
      const float err = choose(d, dmin);
      if (err < best_err) best_err = err, keep(d, dmin);
    }
  // Refit d and dmin jointly by least squares for the chosen integers (x ≈ d*(ls*q) - dmin*lm), then choose the
  // integers again for the new super-scales; keep whatever lowers the error.
  for (int it = 0; it < 2; ++it) {
    double a2 = 0, b2 = 0, ab = 0, ax = 0, bx = 0;
    for (int j = 0; j < n_sub; ++j)
      for (int i = j * sub_len; i < (j + 1) * sub_len; ++i) {
        const double a = double(out->ls[j]) * out->q[i], bb = -double(out->lm[j]);
        a2 += a * a, b2 += bb * bb, ab += a * bb, ax += a * x[i], bx += bb * x[i];
      }
    const double det = a2 * b2 - ab * ab;
    float nd, nm;
    if (det > 0) {
      nd = via_f16(static_cast<float>((ax * b2 - bx * ab) / det));
      nm = via_f16(static_cast<float>((a2 * bx - ab * ax) / det));
    } else if (a2 > 0 && b2 == 0) {  // no mins in use
      nd = via_f16(static_cast<float>(ax / a2));
      nm = h2f(out->dmin);
    } else {
      break;
    }
    if (!(nd > 0) || nm < 0 || !std::isfinite(nd) || !std::isfinite(nm)) break;
    const float err = choose(nd, nm);
    if (!(err < best_err)) break;
    best_err = err;
    keep(nd, nm);
  }
}

// Error of a 16-element sub-block quantized symmetrically with scale s; writes the quants.
float sym_sub_error(const float* x, int nmax, float s, int* q) {
  const float is = s != 0 ? 1.0f / s : 0.0f;
  float err = 0;
  for (int i = 0; i < 16; ++i) {
    q[i] = clampi(round_int(x[i] * is), -nmax, nmax - 1);
    const float diff = s * static_cast<float>(q[i]) - x[i];
    err += diff * diff;
  }
  return err;
}

// One super-block of a symmetric k-quant (16 sub-blocks of 16): signed integer sub-scales in [lmin, lmax]
// against an fp16 super-scale d, and signed quants in [-nmax, nmax-1].
struct SymSuper {
  f16_t d;
  int ls[16];
  int q[QK_K];
};

void quantize_sym_super(const float* x, int nmax, int lmin, int lmax, SymSuper* out) {
  float s[16];
  float max_abs = 0;
  for (int j = 0; j < 16; ++j) {
    s[j] = fit_sym(x + 16 * j, 16, nmax);
    max_abs = std::max(max_abs, std::fabs(s[j]));
  }
  // For a given d, each sub-block takes the best integer scale next to s/d or next to -s/d (a sub-block's sign
  // is free: negating scale and quants gives the same values, except that only one side has the extra level).
  int ls[16], q[QK_K], qt[16];
  auto choose = [&](float d) {
    float total = 0;
    for (int j = 0; j < 16; ++j) {
      const int r = d != 0 ? round_int(s[j] / d) : 0;
      float best = std::numeric_limits<float>::infinity();
      for (int sign = 1; sign >= -1; sign -= 2)
        for (int a = sign * r - 1; a <= sign * r + 1; ++a) {
          if (a < lmin || a > lmax) continue;
          const float err = sym_sub_error(x + 16 * j, nmax, d * static_cast<float>(a), qt);
          if (err < best) {
            best = err, ls[j] = a;
            std::memcpy(q + 16 * j, qt, sizeof qt);
          }
        }
      if (!std::isfinite(best)) {  // nothing in range (only when d == 0)
        ls[j] = 0;
        best = sym_sub_error(x + 16 * j, nmax, 0.0f, q + 16 * j);
      }
      total += best;
    }
    return total;
  };
  auto keep = [&](float d) {
    out->d = f2h(d);
    std::memcpy(out->ls, ls, sizeof ls), std::memcpy(out->q, q, sizeof q);
  };
  // The sub-scale of largest magnitude maps to one of the top few levels of the side with the extra level
  // (lmin) or, with d negated, of the other side.
  // Candidates as in quantize_asym_super, for either sign of d.
  float w[16];
  for (int j = 0; j < 16; ++j) {
    w[j] = 0;
    for (int i = 0; i < 16; ++i) w[j] += x[16 * j + i] * x[16 * j + i];
  }
  float dc[3];
  grid_candidates(s, nullptr, w, 16, max_abs, -lmin / 2, -lmin, dc);
  float best_err = std::numeric_limits<float>::infinity();
  for (float d0 : dc)
    for (int sign = 1; sign >= -1; sign -= 2) {
      const float d = static_cast<float>(sign) * d0;
      const float err = choose(d);
      if (err < best_err) best_err = err, keep(d);
    }
  // Least-squares refit of d for the chosen integers (x ≈ d*(ls*q)), then new integers; keep improvements.
  for (int it = 0; it < 2; ++it) {
    double a2 = 0, ax = 0;
    for (int j = 0; j < 16; ++j)
      for (int i = 16 * j; i < 16 * j + 16; ++i) {
        const double a = double(out->ls[j]) * out->q[i];
        a2 += a * a, ax += a * x[i];
      }
    if (!(a2 > 0)) break;
    const float nd = via_f16(static_cast<float>(ax / a2));
    if (nd == 0 || !std::isfinite(nd)) break;
    const float err = choose(nd);
    if (!(err < best_err)) break;
    best_err = err;
    keep(nd);
  }
}

void q_q2_k(const float* x, BlockQ2_K* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    AsymSuper s;
    quantize_asym_super(x, 16, 16, 3, 15, &s);
    b[i].d = s.d;
    b[i].dmin = s.dmin;
    for (int j = 0; j < 16; ++j) b[i].scales[j] = static_cast<uint8_t>(s.ls[j] | s.lm[j] << 4);
    std::memset(b[i].qs, 0, sizeof b[i].qs);
    for (int e = 0; e < QK_K; ++e) {
      const int n = e / 128, j = (e % 128) / 32, l = e % 32;
      b[i].qs[32 * n + l] |= static_cast<uint8_t>(s.q[e] << (2 * j));
    }
  }
}

void q_q3_k(const float* x, BlockQ3_K* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    SymSuper s;
    quantize_sym_super(x, 4, -32, 31, &s);
    b[i].d = s.d;
    std::memset(b[i].scales, 0, sizeof b[i].scales);
    for (int k = 0; k < 16; ++k) {
      const int v = s.ls[k] + 32;  // 0..63
      if (k < 8)
        b[i].scales[k] |= static_cast<uint8_t>(v & 15);
      else
        b[i].scales[k - 8] |= static_cast<uint8_t>((v & 15) << 4);
      b[i].scales[8 + k % 4] |= static_cast<uint8_t>((v >> 4) << (2 * (k / 4)));
    }
    std::memset(b[i].qs, 0, sizeof b[i].qs);
    std::memset(b[i].hmask, 0, sizeof b[i].hmask);
    for (int e = 0; e < QK_K; ++e) {
      const int n = e / 128, j = (e % 128) / 32, l = e % 32;
      const int u = s.q[e] + 4;  // 0..7
      b[i].qs[32 * n + l] |= static_cast<uint8_t>((u & 3) << (2 * j));
      b[i].hmask[l] |= static_cast<uint8_t>((u >> 2) << (4 * n + j));
    }
  }
}

void q_q4_k(const float* x, BlockQ4_K* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    AsymSuper s;
    quantize_asym_super(x, 8, 32, 15, 63, &s);
    b[i].d = s.d;
    b[i].dmin = s.dmin;
    k4_pack_scale_min(b[i].scales, s.ls, s.lm);
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l)
        b[i].qs[32 * c + l] = static_cast<uint8_t>(s.q[64 * c + l] | s.q[64 * c + 32 + l] << 4);
  }
}

void q_q5_k(const float* x, BlockQ5_K* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    AsymSuper s;
    quantize_asym_super(x, 8, 32, 31, 63, &s);
    b[i].d = s.d;
    b[i].dmin = s.dmin;
    k4_pack_scale_min(b[i].scales, s.ls, s.lm);
    std::memset(b[i].qh, 0, sizeof b[i].qh);
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l) {
        const int lo = s.q[64 * c + l], hi = s.q[64 * c + 32 + l];
        b[i].qs[32 * c + l] = static_cast<uint8_t>((lo & 15) | (hi & 15) << 4);
        b[i].qh[l] |= static_cast<uint8_t>((lo >> 4) << (2 * c) | (hi >> 4) << (2 * c + 1));
      }
  }
}

void q_q6_k(const float* x, BlockQ6_K* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    SymSuper s;
    quantize_sym_super(x, 32, -128, 127, &s);
    b[i].d = s.d;
    for (int j = 0; j < 16; ++j) b[i].scales[j] = static_cast<int8_t>(s.ls[j]);
    std::memset(b[i].ql, 0, sizeof b[i].ql);
    std::memset(b[i].qh, 0, sizeof b[i].qh);
    for (int e = 0; e < QK_K; ++e) {
      const int n = e / 128, k = (e % 128) / 32, l = e % 32;
      const int u = s.q[e] + 32;  // 0..63
      b[i].ql[64 * n + 32 * (k & 1) + l] |= static_cast<uint8_t>((u & 15) << (k < 2 ? 0 : 4));
      b[i].qh[32 * n + l] |= static_cast<uint8_t>((u >> 4) << (2 * k));
    }
  }
}

void check_row(DType t, int64_t n, const char* what) {
  const DTypeInfo* info = dtype_info(static_cast<uint32_t>(t));
  if (!info) throw std::invalid_argument(std::string(what) + ": unknown type");
  if (n < 0 || n % info->block_elems != 0)
    throw std::invalid_argument(std::string(what) + ": row length " + std::to_string(n) +
                                " is not a multiple of the " + std::string(info->name) + " block size");
}

}  // namespace

bool can_dequantize(DType t) {
  switch (t) {
    case DType::F32: case DType::F16: case DType::BF16:
    case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: case DType::Q8_0: case DType::Q8_1:
    case DType::Q2_K: case DType::Q3_K: case DType::Q4_K: case DType::Q5_K: case DType::Q6_K: case DType::Q8_K:
      return true;
    default:
      return false;
  }
}

bool can_quantize(DType t) { return can_dequantize(t); }

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
  check_row(t, n, "dequantize_row");
  const int64_t nb = n / dtype_info(t).block_elems;
  switch (t) {
    case DType::F32: std::memcpy(dst, src, static_cast<size_t>(n) * 4); return;
    case DType::F16: {
      const auto* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(h[i]);
      return;
    }
    case DType::BF16: {
      const auto* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(h[i]);
      return;
    }
    case DType::Q4_0: dq_q4_0(static_cast<const BlockQ4_0*>(src), dst, nb); return;
    case DType::Q4_1: dq_q4_1(static_cast<const BlockQ4_1*>(src), dst, nb); return;
    case DType::Q5_0: dq_q5_0(static_cast<const BlockQ5_0*>(src), dst, nb); return;
    case DType::Q5_1: dq_q5_1(static_cast<const BlockQ5_1*>(src), dst, nb); return;
    case DType::Q8_0: dq_q8_0(static_cast<const BlockQ8_0*>(src), dst, nb); return;
    case DType::Q8_1: dq_q8_1(static_cast<const BlockQ8_1*>(src), dst, nb); return;
    case DType::Q2_K: dq_q2_k(static_cast<const BlockQ2_K*>(src), dst, nb); return;
    case DType::Q3_K: dq_q3_k(static_cast<const BlockQ3_K*>(src), dst, nb); return;
    case DType::Q4_K: dq_q4_k(static_cast<const BlockQ4_K*>(src), dst, nb); return;
    case DType::Q5_K: dq_q5_k(static_cast<const BlockQ5_K*>(src), dst, nb); return;
    case DType::Q6_K: dq_q6_k(static_cast<const BlockQ6_K*>(src), dst, nb); return;
    case DType::Q8_K: dq_q8_k(static_cast<const BlockQ8_K*>(src), dst, nb); return;
    default: break;
  }
  throw std::invalid_argument("dequantize_row: cannot dequantize " + std::string(dtype_name(t)));
}

void quantize_row_ref(DType t, const float* src, void* dst, int64_t n) {
  check_row(t, n, "quantize_row_ref");
  const int64_t nb = n / dtype_info(t).block_elems;
  switch (t) {
    case DType::F32: std::memcpy(dst, src, static_cast<size_t>(n) * 4); return;
    case DType::F16: {
      auto* h = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) h[i] = fp32_to_fp16(src[i]);
      return;
    }
    case DType::BF16: {
      auto* h = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) h[i] = fp32_to_bf16(src[i]);
      return;
    }
    case DType::Q4_0: q_q4_0(src, static_cast<BlockQ4_0*>(dst), nb); return;
    case DType::Q4_1: q_q4_1(src, static_cast<BlockQ4_1*>(dst), nb); return;
    case DType::Q5_0: q_q5_0(src, static_cast<BlockQ5_0*>(dst), nb); return;
    case DType::Q5_1: q_q5_1(src, static_cast<BlockQ5_1*>(dst), nb); return;
    case DType::Q8_0: q_q8_0(src, static_cast<BlockQ8_0*>(dst), nb); return;
    case DType::Q8_1: q_q8_1(src, static_cast<BlockQ8_1*>(dst), nb); return;
    case DType::Q2_K: q_q2_k(src, static_cast<BlockQ2_K*>(dst), nb); return;
    case DType::Q3_K: q_q3_k(src, static_cast<BlockQ3_K*>(dst), nb); return;
    case DType::Q4_K: q_q4_k(src, static_cast<BlockQ4_K*>(dst), nb); return;
    case DType::Q5_K: q_q5_k(src, static_cast<BlockQ5_K*>(dst), nb); return;
    case DType::Q6_K: q_q6_k(src, static_cast<BlockQ6_K*>(dst), nb); return;
    case DType::Q8_K: q_q8_k(src, static_cast<BlockQ8_K*>(dst), nb); return;
    default: break;
  }
  throw std::invalid_argument("quantize_row_ref: cannot quantize to " + std::string(dtype_name(t)));
}

}  // namespace vireo
