// Weight layouts on the GPU and the code that reads them (host and device alike).
//
// Matrices are stored row by row (a row is one output feature, K input elements). Layouts, chosen so that every
// thread of a matrix-vector kernel reads its weights with aligned 16-byte loads and a warp reads whole sectors:
//   F32 / F16 / BF16  rows of Kp = round_up(K, 8) elements, zero padded.
//   Q4_K  GGUF blocks as they are (144 bytes, a multiple of 16): d, dmin | 12 scale bytes | qs[128].
//   Q5_K  GGUF blocks as they are (176 bytes): d, dmin | 12 scale bytes | qh[32] | qs[128].
//   Q6_K  208-byte bodies ql[128] | qh[64] | scales[16]; the f16 d of every block in a separate array (aux).
//   Q8_0  the int8 quants of a row contiguous (K bytes); d in aux.
//   Q4_0  the 16 quant bytes of each block contiguous (K/2 bytes a row); d in aux.
// aux arrays are [rows][blocks per row] f16.
//
// The matrix-vector kernels split a row into "units": the work of one thread in one step.
//   Q4_K, Q5_K: 4 units a block, unit p = elements 64p..64p+63 (sub-blocks 2p and 2p+1).
//   Q6_K: 4 units a block, unit p = (n = p/2, h = p%2): elements 128n + 32k + 16h + (0..15) for k = 0..3.
//   Q8_0, Q4_0: one unit a block (32 elements).   F16/BF16/F32: 8 elements a unit.
// Quantized weights are multiplied with activations quantized to int8 per 32 elements (ActQ8: q, and per block
// {d, d * sum(q)}); float weights with f32 activations (ActF32). Both are padded and 16-byte aligned.
#pragma once
#include <cstdint>

#include "backend/cuda/compat.cuh"

namespace vireo::VIREO_CUDA_NS {

enum class WFmt : int { F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, Count };

inline const char* wfmt_name(WFmt f) {
  switch (f) {
    case WFmt::F32: return "F32";
    case WFmt::F16: return "F16";
    case WFmt::BF16: return "BF16";
    case WFmt::Q8_0: return "Q8_0";
    case WFmt::Q4_0: return "Q4_0";
    case WFmt::Q4_K: return "Q4_K";
    case WFmt::Q5_K: return "Q5_K";
    case WFmt::Q6_K: return "Q6_K";
    default: return "?";
  }
}

VHD bool wfmt_is_float(WFmt f) { return f == WFmt::F32 || f == WFmt::F16 || f == WFmt::BF16; }

// A matrix in device memory (or, for host-side checks, host memory).
struct MatView {
  WFmt fmt = WFmt::F32;
  int64_t rows = 0;
  int64_t K = 0;          // logical row length
  int64_t Kp = 0;         // stored row length: round_up(K, 8) for float types, K otherwise
  int64_t row_bytes = 0;  // bytes of one row in q
  int64_t nb = 0;         // blocks per row (quantized types)
  const uint8_t* q = nullptr;
  const uint16_t* aux = nullptr;  // per-block f16 scales (Q8_0, Q4_0, Q6_K)
};

// Quantized activations: `rows` rows of K int8 (stride q_stride bytes) and per 32 elements {d, d * sum q}.
struct ActQ8 {
  const int8_t* q = nullptr;
  const float2* ds = nullptr;
  int64_t q_stride = 0;   // bytes
  int64_t ds_stride = 0;  // float2 elements
};
// f32 activations, rows padded with zeros to a multiple of 8 elements.
struct ActF32 {
  const float* x = nullptr;
  int64_t stride = 0;  // elements
};

// ---------------------------------------------------------------------------------------------------------------
// Element access: 8 consecutive elements k0..k0+7 (k0 a multiple of 8, k0 < Kp) of one row.
// ---------------------------------------------------------------------------------------------------------------

// 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes of a Q4_K/Q5_K block (GGUF packing).
VHD void k4_scale_min(const uint8_t* s, int j, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
    *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

template <WFmt F>
VHD void decode8(const MatView& m, int64_t row, int64_t k0, float* out) {
  const uint8_t* r = m.q + row * m.row_bytes;
  if constexpr (F == WFmt::F32) {
    const float* p = reinterpret_cast<const float*>(r) + k0;
    for (int i = 0; i < 8; ++i) out[i] = p[i];
  } else if constexpr (F == WFmt::F16) {
    const uint16_t* p = reinterpret_cast<const uint16_t*>(r) + k0;
    for (int i = 0; i < 8; ++i) out[i] = h2f(p[i]);
  } else if constexpr (F == WFmt::BF16) {
    const uint16_t* p = reinterpret_cast<const uint16_t*>(r) + k0;
    for (int i = 0; i < 8; ++i) out[i] = bf2f(p[i]);
  } else if constexpr (F == WFmt::Q8_0) {
    const float d = h2f(m.aux[row * m.nb + k0 / 32]);
    const int8_t* p = reinterpret_cast<const int8_t*>(r) + k0;
    for (int i = 0; i < 8; ++i) out[i] = d * static_cast<float>(p[i]);
  } else if constexpr (F == WFmt::Q4_0) {
    const int64_t b = k0 / 32;
    const int e = static_cast<int>(k0 % 32);
    const float d = h2f(m.aux[row * m.nb + b]);
    const uint8_t* qs = r + b * 16;
    for (int i = 0; i < 8; ++i) {
      const int q = e < 16 ? (qs[e + i] & 15) : (qs[e - 16 + i] >> 4);
      out[i] = d * static_cast<float>(q - 8);
    }
  } else if constexpr (F == WFmt::Q4_K || F == WFmt::Q5_K) {
    const int64_t b = k0 / 256;
    const int e = static_cast<int>(k0 % 256);
    const int c = e / 64, rr = e % 64, hi = rr >= 32 ? 1 : 0, l = rr % 32;
    const uint8_t* blk = r + b * (F == WFmt::Q4_K ? 144 : 176);
    const float d = h2f(static_cast<uint16_t>(blk[0] | blk[1] << 8));
    const float dmin = h2f(static_cast<uint16_t>(blk[2] | blk[3] << 8));
    int sc, mn;
    k4_scale_min(blk + 4, 2 * c + hi, &sc, &mn);
    const float dd = d * static_cast<float>(sc), mm = dmin * static_cast<float>(mn);
    const uint8_t* qs = blk + (F == WFmt::Q4_K ? 16 : 48) + 32 * c + l;
    for (int i = 0; i < 8; ++i) {
      int q = hi ? (qs[i] >> 4) : (qs[i] & 15);
      if constexpr (F == WFmt::Q5_K) q |= ((blk[16 + l + i] >> (2 * c + hi)) & 1) << 4;
      out[i] = dd * static_cast<float>(q) - mm;
    }
  } else if constexpr (F == WFmt::Q6_K) {
    const int64_t b = k0 / 256;
    const int e = static_cast<int>(k0 % 256);
    const int n = e / 128, k = (e % 128) / 32, l = e % 32;
    const uint8_t* body = r + b * 208;
    const float d = h2f(m.aux[row * m.nb + b]);
    const float ds = d * static_cast<float>(static_cast<int8_t>(body[192 + e / 16]));
    const uint8_t* ql = body + 64 * n + 32 * (k & 1) + l;
    const uint8_t* qh = body + 128 + 32 * n + l;
    for (int i = 0; i < 8; ++i) {
      const int lo = k < 2 ? (ql[i] & 15) : (ql[i] >> 4);
      const int h = (qh[i] >> (2 * k)) & 3;
      out[i] = ds * static_cast<float>((lo | h << 4) - 32);
    }
  }
}

// Runtime-dispatched version (embedding rows, host-side checks).
VHD void decode8_any(const MatView& m, int64_t row, int64_t k0, float* out) {
  switch (m.fmt) {
    case WFmt::F32: decode8<WFmt::F32>(m, row, k0, out); break;
    case WFmt::F16: decode8<WFmt::F16>(m, row, k0, out); break;
    case WFmt::BF16: decode8<WFmt::BF16>(m, row, k0, out); break;
    case WFmt::Q8_0: decode8<WFmt::Q8_0>(m, row, k0, out); break;
    case WFmt::Q4_0: decode8<WFmt::Q4_0>(m, row, k0, out); break;
    case WFmt::Q4_K: decode8<WFmt::Q4_K>(m, row, k0, out); break;
    case WFmt::Q5_K: decode8<WFmt::Q5_K>(m, row, k0, out); break;
    case WFmt::Q6_K: decode8<WFmt::Q6_K>(m, row, k0, out); break;
    default: for (int i = 0; i < 8; ++i) out[i] = 0.f;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Matrix-vector units. For each format: Weights (registers of one unit of one row), Act (registers of the
// matching activations of one token), and load_w / load_a / dot. units(m) is the number of units in a row.
// ---------------------------------------------------------------------------------------------------------------

template <WFmt F>
struct Unit;

VHD uint32_t byte_of(uint32_t w0, uint32_t w1, uint32_t w2, int i) {
  const uint32_t w = i < 4 ? w0 : (i < 8 ? w1 : w2);
  return (w >> (8 * (i & 3))) & 0xffu;
}

// 6-bit scale/min of sub-block j from the scale words of a Q4_K/Q5_K block (bytes 4..15 of the block).
VHD void k4_scale_min_words(uint32_t s0, uint32_t s1, uint32_t s2, int j, int* sc, int* m) {
  if (j < 4) {
    *sc = static_cast<int>(byte_of(s0, s1, s2, j) & 63);
    *m = static_cast<int>(byte_of(s0, s1, s2, j + 4) & 63);
  } else {
    *sc = static_cast<int>((byte_of(s0, s1, s2, j + 4) & 15) | ((byte_of(s0, s1, s2, j - 4) >> 6) << 4));
    *m = static_cast<int>((byte_of(s0, s1, s2, j + 4) >> 4) | ((byte_of(s0, s1, s2, j) >> 6) << 4));
  }
}

VHD uint32_t word_of(const uint4& v, int k) { return k == 0 ? v.x : (k == 1 ? v.y : (k == 2 ? v.z : v.w)); }
VHD int iword_of(const int4& v, int k) { return k == 0 ? v.x : (k == 1 ? v.y : (k == 2 ? v.z : v.w)); }

// ---- weights dequantized straight to f16 pairs (the tensor-core matmuls qgemm.cu and qgemm_frag.cu) ----
// 0x6400 | u is the f16 1024 + u for u < 1024, so (0x6400 | u) - 1024 is u exactly: one f16x2 subtract for two
// weights and no integer-to-float conversions (a quarter of the FMA rate); one f16x2 fma/mul then applies the
// scale (and the Q4_K minimum).
constexpr uint32_t kF16Magic = 0x64006400u;
VHD uint32_t pack_f16x2(float a, float b) {  // a in the low half
  return static_cast<uint32_t>(f2h(a)) | static_cast<uint32_t>(f2h(b)) << 16;
}
// Bytes 2p and 2p+1 of `word` in the low byte of each 16-bit half.
VHD uint32_t byte_pair(uint32_t word, int p) { return byte_perm(word, 0, p == 0 ? 0x4140 : 0x4342); }
// Q4_K: the nibbles at `shift` (0 or 4) of bytes 2p and 2p+1 of qs word `word`, as scale2 * q + neg_min2.
VHD uint32_t q4k_f16_pair(uint32_t word, int p, int shift, uint32_t scale2, uint32_t neg_min2) {
  const uint32_t u = ((byte_pair(word, p) >> shift) & 0x000F000Fu) | kF16Magic;
  return hfma2_bits(hsub2_bits(u, kF16Magic), scale2, neg_min2);
}
// Q6_K: for bytes 2p and 2p+1, the ql nibble at `lshift` (0 or 4) with the 2 qh bits at `hshift` above it, minus 32,
// times scale2.
VHD uint32_t q6k_f16_pair(uint32_t ql_word, uint32_t qh_word, int p, int lshift, int hshift, uint32_t scale2) {
  constexpr uint32_t kBias = 0x64206420u;  // 1056 = 1024 + 32 in both halves
  const uint32_t u = ((byte_pair(ql_word, p) >> lshift) & 0x000F000Fu) |
                     (((byte_pair(qh_word, p) >> hshift) & 0x00030003u) << 4) | kF16Magic;
  return hmul2_bits(hsub2_bits(u, kBias), scale2);
}

// 64 int8 activations (elements 64u .. 64u+63) with the {d, d*sum} of their two 32-blocks.
struct Act64 {
  int4 a[4];
  float2 ds[2];
};
VHD void load_act64(const ActQ8& act, int t, int64_t u, Act64& a) {
  const int8_t* p = act.q + t * act.q_stride + 64 * u;
  for (int i = 0; i < 4; ++i) a.a[i] = ld16i_act(p + 16 * i);
  const float2* ds = act.ds + t * act.ds_stride + 2 * u;
  a.ds[0] = ds[0];
  a.ds[1] = ds[1];
}

template <>
struct Unit<WFmt::Q4_K> {
  struct W {
    uint4 meta, q0, q1;
  };
  using A = Act64;
  using ActT = ActQ8;
  static VHD int64_t units(const MatView& m) { return m.nb * 4; }
  static VHD void load_w(const MatView& m, int64_t row, int64_t u, W& w) {
    const uint8_t* blk = m.q + row * m.row_bytes + (u >> 2) * 144;
    const int p = static_cast<int>(u & 3);
    w.meta = ld16(blk);
    w.q0 = ld16(blk + 16 + 32 * p);
    w.q1 = ld16(blk + 32 + 32 * p);
  }
  static VHD void load_a(const ActQ8& act, int t, int64_t u, A& a) { load_act64(act, t, u, a); }
  static VHD float dot(const W& w, const A& a, int64_t u) {
    const int p = static_cast<int>(u & 3);
    int sc0, m0, sc1, m1;
    k4_scale_min_words(w.meta.y, w.meta.z, w.meta.w, 2 * p, &sc0, &m0);
    k4_scale_min_words(w.meta.y, w.meta.z, w.meta.w, 2 * p + 1, &sc1, &m1);
    const float d = h2f(static_cast<uint16_t>(w.meta.x & 0xffffu));
    const float dmin = h2f(static_cast<uint16_t>(w.meta.x >> 16));
    int lo = 0, hi = 0;
    for (int k = 0; k < 4; ++k) {
      const uint32_t x0 = word_of(w.q0, k), x1 = word_of(w.q1, k);
      lo = dp4a(static_cast<int>(x0 & 0x0f0f0f0fu), iword_of(a.a[0], k), lo);
      lo = dp4a(static_cast<int>(x1 & 0x0f0f0f0fu), iword_of(a.a[1], k), lo);
      hi = dp4a(static_cast<int>((x0 >> 4) & 0x0f0f0f0fu), iword_of(a.a[2], k), hi);
      hi = dp4a(static_cast<int>((x1 >> 4) & 0x0f0f0f0fu), iword_of(a.a[3], k), hi);
    }
    return d * (static_cast<float>(sc0) * a.ds[0].x * static_cast<float>(lo) +
                static_cast<float>(sc1) * a.ds[1].x * static_cast<float>(hi)) -
           dmin * (static_cast<float>(m0) * a.ds[0].y + static_cast<float>(m1) * a.ds[1].y);
  }
};

template <>
struct Unit<WFmt::Q5_K> {
  struct W {
    uint4 meta, h0, h1, q0, q1;
  };
  using A = Act64;
  using ActT = ActQ8;
  static VHD int64_t units(const MatView& m) { return m.nb * 4; }
  static VHD void load_w(const MatView& m, int64_t row, int64_t u, W& w) {
    const uint8_t* blk = m.q + row * m.row_bytes + (u >> 2) * 176;
    const int p = static_cast<int>(u & 3);
    w.meta = ld16(blk);
    w.h0 = ld16(blk + 16);
    w.h1 = ld16(blk + 32);
    w.q0 = ld16(blk + 48 + 32 * p);
    w.q1 = ld16(blk + 64 + 32 * p);
  }
  static VHD void load_a(const ActQ8& act, int t, int64_t u, A& a) { load_act64(act, t, u, a); }
  static VHD float dot(const W& w, const A& a, int64_t u) {
    const int p = static_cast<int>(u & 3);
    int sc0, m0, sc1, m1;
    k4_scale_min_words(w.meta.y, w.meta.z, w.meta.w, 2 * p, &sc0, &m0);
    k4_scale_min_words(w.meta.y, w.meta.z, w.meta.w, 2 * p + 1, &sc1, &m1);
    const float d = h2f(static_cast<uint16_t>(w.meta.x & 0xffffu));
    const float dmin = h2f(static_cast<uint16_t>(w.meta.x >> 16));
    int lo = 0, hi = 0;
    for (int k = 0; k < 4; ++k) {
      const uint32_t x0 = word_of(w.q0, k), x1 = word_of(w.q1, k);  // quant bytes l = 4k.., 16 + 4k..
      const uint32_t g0 = word_of(w.h0, k), g1 = word_of(w.h1, k);  // qh bytes with the same l
      const uint32_t v0l = (x0 & 0x0f0f0f0fu) | (((g0 >> (2 * p)) & 0x01010101u) << 4);
      const uint32_t v1l = (x1 & 0x0f0f0f0fu) | (((g1 >> (2 * p)) & 0x01010101u) << 4);
      const uint32_t v0h = ((x0 >> 4) & 0x0f0f0f0fu) | (((g0 >> (2 * p + 1)) & 0x01010101u) << 4);
      const uint32_t v1h = ((x1 >> 4) & 0x0f0f0f0fu) | (((g1 >> (2 * p + 1)) & 0x01010101u) << 4);
      lo = dp4a(static_cast<int>(v0l), iword_of(a.a[0], k), lo);
      lo = dp4a(static_cast<int>(v1l), iword_of(a.a[1], k), lo);
      hi = dp4a(static_cast<int>(v0h), iword_of(a.a[2], k), hi);
      hi = dp4a(static_cast<int>(v1h), iword_of(a.a[3], k), hi);
    }
    return d * (static_cast<float>(sc0) * a.ds[0].x * static_cast<float>(lo) +
                static_cast<float>(sc1) * a.ds[1].x * static_cast<float>(hi)) -
           dmin * (static_cast<float>(m0) * a.ds[0].y + static_cast<float>(m1) * a.ds[1].y);
  }
};

template <>
struct Unit<WFmt::Q6_K> {
  struct W {
    uint4 l0, l1, h;
    uint2 sc;
    float d;
  };
  struct A {
    int4 a[4];
    float da[4];
  };
  using ActT = ActQ8;
  static VHD int64_t units(const MatView& m) { return m.nb * 4; }
  static VHD void load_w(const MatView& m, int64_t row, int64_t u, W& w) {
    const int64_t b = u >> 2;
    const int p = static_cast<int>(u & 3), n = p >> 1, lh = p & 1;
    const uint8_t* body = m.q + row * m.row_bytes + b * 208;
    w.l0 = ld16(body + 64 * n + 16 * lh);
    w.l1 = ld16(body + 64 * n + 32 + 16 * lh);
    w.h = ld16(body + 128 + 32 * n + 16 * lh);
    w.sc = ld8(body + 192 + 8 * n);
    w.d = h2f(m.aux[row * m.nb + b]);
  }
  static VHD void load_a(const ActQ8& act, int t, int64_t u, A& a) {
    const int64_t b = u >> 2;
    const int p = static_cast<int>(u & 3), n = p >> 1, lh = p & 1;
    const int8_t* base = act.q + t * act.q_stride + 256 * b + 128 * n + 16 * lh;
    const float2* ds = act.ds + t * act.ds_stride + 8 * b + 4 * n;
    for (int k = 0; k < 4; ++k) {
      a.a[k] = ld16i_act(base + 32 * k);
      a.da[k] = ds[k].x;
    }
  }
  static VHD float dot(const W& w, const A& a, int64_t u) {
    const int lh = static_cast<int>(u & 1);
    float sum = 0.f;
    for (int k = 0; k < 4; ++k) {
      const uint4& L = (k & 1) ? w.l1 : w.l0;
      const int shift = k >= 2 ? 4 : 0;
      const int sb = 2 * k + lh;  // scale byte within scales[8n .. 8n+7]
      const uint32_t scw = sb < 4 ? w.sc.x : w.sc.y;
      const int sc = static_cast<int>(static_cast<int8_t>((scw >> (8 * (sb & 3))) & 0xffu));
      int dk = 0;
      for (int mm = 0; mm < 4; ++mm) {
        const uint32_t lo = (word_of(L, mm) >> shift) & 0x0f0f0f0fu;
        const uint32_t hi = ((word_of(w.h, mm) >> (2 * k)) & 0x03030303u) << 4;
        dk = dp4a(static_cast<int>(vsub4(lo | hi, 0x20202020u)), iword_of(a.a[k], mm), dk);
      }
      sum += static_cast<float>(sc) * a.da[k] * static_cast<float>(dk);
    }
    return w.d * sum;
  }
};

template <>
struct Unit<WFmt::Q8_0> {
  struct W {
    uint4 q0, q1;
    float d;
  };
  struct A {
    int4 a0, a1;
    float d;
  };
  using ActT = ActQ8;
  static VHD int64_t units(const MatView& m) { return m.nb; }
  static VHD void load_w(const MatView& m, int64_t row, int64_t u, W& w) {
    const uint8_t* p = m.q + row * m.row_bytes + 32 * u;
    w.q0 = ld16(p);
    w.q1 = ld16(p + 16);
    w.d = h2f(m.aux[row * m.nb + u]);
  }
  static VHD void load_a(const ActQ8& act, int t, int64_t u, A& a) {
    const int8_t* p = act.q + t * act.q_stride + 32 * u;
    a.a0 = ld16i_act(p);
    a.a1 = ld16i_act(p + 16);
    a.d = act.ds[t * act.ds_stride + u].x;
  }
  static VHD float dot(const W& w, const A& a, int64_t) {
    int s = 0;
    for (int k = 0; k < 4; ++k) {
      s = dp4a(static_cast<int>(word_of(w.q0, k)), iword_of(a.a0, k), s);
      s = dp4a(static_cast<int>(word_of(w.q1, k)), iword_of(a.a1, k), s);
    }
    return w.d * a.d * static_cast<float>(s);
  }
};

template <>
struct Unit<WFmt::Q4_0> {
  struct W {
    uint4 q;
    float d;
  };
  struct A {
    int4 a0, a1;
    float2 ds;
  };
  using ActT = ActQ8;
  static VHD int64_t units(const MatView& m) { return m.nb; }
  static VHD void load_w(const MatView& m, int64_t row, int64_t u, W& w) {
    w.q = ld16(m.q + row * m.row_bytes + 16 * u);
    w.d = h2f(m.aux[row * m.nb + u]);
  }
  static VHD void load_a(const ActQ8& act, int t, int64_t u, A& a) {
    const int8_t* p = act.q + t * act.q_stride + 32 * u;
    a.a0 = ld16i_act(p);
    a.a1 = ld16i_act(p + 16);
    a.ds = act.ds[t * act.ds_stride + u];
  }
  static VHD float dot(const W& w, const A& a, int64_t) {
    int s = 0;
    for (int k = 0; k < 4; ++k) {
      const uint32_t x = word_of(w.q, k);
      s = dp4a(static_cast<int>(x & 0x0f0f0f0fu), iword_of(a.a0, k), s);
      s = dp4a(static_cast<int>((x >> 4) & 0x0f0f0f0fu), iword_of(a.a1, k), s);
    }
    // x = d * (q - 8): sum x*a = d * (da * sum(q*qa) - 8 * da * sum(qa))
    return w.d * (a.ds.x * static_cast<float>(s) - 8.f * a.ds.y);
  }
};

// Float weights: 8 elements a unit, f32 activations.
struct ActF8 {
  float4 a0, a1;
};
VHD void load_actf8(const ActF32& act, int t, int64_t u, ActF8& a) {
  const float* p = act.x + t * act.stride + 8 * u;
  a.a0 = ld16f(p);
  a.a1 = ld16f(p + 4);
}
VHD float dot8(const float* w, const ActF8& a) {
  return w[0] * a.a0.x + w[1] * a.a0.y + w[2] * a.a0.z + w[3] * a.a0.w + w[4] * a.a1.x + w[5] * a.a1.y +
         w[6] * a.a1.z + w[7] * a.a1.w;
}

template <>
struct Unit<WFmt::F16> {
  struct W {
    uint4 q;
  };
  using A = ActF8;
  using ActT = ActF32;
  static VHD int64_t units(const MatView& m) { return m.Kp / 8; }
  static VHD void load_w(const MatView& m, int64_t row, int64_t u, W& w) { w.q = ld16(m.q + row * m.row_bytes + 16 * u); }
  static VHD void load_a(const ActF32& act, int t, int64_t u, A& a) { load_actf8(act, t, u, a); }
  static VHD float dot(const W& w, const A& a, int64_t) {
    float v[8];
    for (int k = 0; k < 4; ++k) {
      const uint32_t x = word_of(w.q, k);
      v[2 * k] = h2f(static_cast<uint16_t>(x & 0xffffu));
      v[2 * k + 1] = h2f(static_cast<uint16_t>(x >> 16));
    }
    return dot8(v, a);
  }
};

template <>
struct Unit<WFmt::BF16> {
  struct W {
    uint4 q;
  };
  using A = ActF8;
  using ActT = ActF32;
  static VHD int64_t units(const MatView& m) { return m.Kp / 8; }
  static VHD void load_w(const MatView& m, int64_t row, int64_t u, W& w) { w.q = ld16(m.q + row * m.row_bytes + 16 * u); }
  static VHD void load_a(const ActF32& act, int t, int64_t u, A& a) { load_actf8(act, t, u, a); }
  static VHD float dot(const W& w, const A& a, int64_t) {
    float v[8];
    for (int k = 0; k < 4; ++k) {
      const uint32_t x = word_of(w.q, k);
      v[2 * k] = bf2f(static_cast<uint16_t>(x & 0xffffu));
      v[2 * k + 1] = bf2f(static_cast<uint16_t>(x >> 16));
    }
    return dot8(v, a);
  }
};

template <>
struct Unit<WFmt::F32> {
  struct W {
    float4 w0, w1;
  };
  using A = ActF8;
  using ActT = ActF32;
  static VHD int64_t units(const MatView& m) { return m.Kp / 8; }
  static VHD void load_w(const MatView& m, int64_t row, int64_t u, W& w) {
    const uint8_t* p = m.q + row * m.row_bytes + 32 * u;
    w.w0 = ld16f(p);
    w.w1 = ld16f(p + 16);
  }
  static VHD void load_a(const ActF32& act, int t, int64_t u, A& a) { load_actf8(act, t, u, a); }
  static VHD float dot(const W& w, const A& a, int64_t) {
    const float v[8] = {w.w0.x, w.w0.y, w.w0.z, w.w0.w, w.w1.x, w.w1.y, w.w1.z, w.w1.w};
    return dot8(v, a);
  }
};

}  // namespace vireo::VIREO_CUDA_NS
