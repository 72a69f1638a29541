// AVX-512 (F/BW/VL/DQ + VNNI) matmul kernels: one zmm lane per weight row (16-row groups), vpdpbusd for the
// int8 dot products, vpdpwssd for the k-quant mins. Compiled with the AVX-512 flags (see CMakeLists.txt) and
// only called when best_cpu_path() says the CPU has them.
// GCC 12's AVX-512 headers trip -W(maybe-)uninitialized on their own _mm512_undefined_* placeholders.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include "backend/cpu/kernels_internal.h"

namespace vireo::cpu::kern::avx512 {

struct I {
  static constexpr int L = 16;
  static constexpr int kQ8Offset = 128;  // Q8_0 codes are q+128 (unsigned operand of vpdpbusd)
  using V = __m512i;
  using F = __m512;

  static inline V load(const uint8_t* p) { return _mm512_loadu_si512(p); }
  static inline V c8(int v) { return _mm512_set1_epi8(static_cast<char>(v)); }
  static inline V and_(V a, V b) { return _mm512_and_si512(a, b); }
  static inline V or_masked(V a, V b, V m) { return _mm512_ternarylogic_epi32(a, b, m, 0xF8); }  // a | (b & m)
  template <int N>
  static inline V srl16(V a) {
    if constexpr (N == 0) return a;
    else return _mm512_srli_epi16(a, N);
  }
  template <int N>
  static inline V sll16(V a) {
    if constexpr (N == 0) return a;
    else return _mm512_slli_epi16(a, N);
  }
  template <int N>
  static inline V shift16(V a) {
    if constexpr (N > 0) return sll16<N>(a);
    else return srl16<-N>(a);
  }
  static inline V bcast32(const uint8_t* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
  }
  static inline V dp(V acc, V u, V s) { return _mm512_dpbusd_epi32(acc, u, s); }
  static constexpr bool kInt16Sums = false;  // vpdpbusd: one instruction per dot product
  static inline void pin(V&) {}
  static inline V maddubs(V u, V s) { return _mm512_maddubs_epi16(u, s); }
  static inline V add16(V a, V b) { return _mm512_add_epi16(a, b); }
  static inline V widen_add(V acc, V h) { return _mm512_add_epi32(acc, _mm512_madd_epi16(h, _mm512_set1_epi16(1))); }
  static inline V dp_q8(V acc, V u, V s) { return _mm512_dpbusd_epi32(acc, u, s); }
  static inline V dpw(V acc, V a, V b) { return _mm512_dpwssd_epi32(acc, a, b); }
  static inline V addi(V a, V b) { return _mm512_add_epi32(a, b); }
  template <int N>
  static inline V srai32(V a) { return _mm512_srai_epi32(a, N); }
  static inline F cvt(V a) { return _mm512_cvtepi32_ps(a); }
  static inline F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static inline F add(F a, F b) { return _mm512_add_ps(a, b); }
  static inline F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static inline F fnmadd(F a, F b, F c) { return _mm512_fnmadd_ps(a, b, c); }
  static inline F bcastf(float v) { return _mm512_set1_ps(v); }
  static inline F zerof() { return _mm512_setzero_ps(); }
  static inline V zeroi() { return _mm512_setzero_si512(); }
  static inline F load_f16(const uint8_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static inline F load_bf16(const uint8_t* p) {
    const V w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
  }
  static inline F load_f32(const uint8_t* p) { return _mm512_loadu_ps(p); }
  static inline F loadf(const float* p) { return _mm512_load_ps(p); }
  static inline void storef(float* p, F v) { _mm512_store_ps(p, v); }
  static inline V u8_to_i32(__m128i v) { return _mm512_cvtepu8_epi32(v); }
  static inline V i8_to_i32(__m128i v) { return _mm512_cvtepi8_epi32(v); }
  static inline V pairs_u8(__m128i m0, __m128i m1) {
    const __m128i lo = _mm_unpacklo_epi8(m0, m1), hi = _mm_unpackhi_epi8(m0, m1);
    return _mm512_cvtepu8_epi16(_mm256_set_m128i(hi, lo));
  }
  static inline void prefetch(const uint8_t* p) { _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0); }
  static inline void store(float* p, F v, int n) {
    if (n >= 16)
      _mm512_storeu_ps(p, v);
    else
      _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1), v);
  }

  // Activation quantization helpers.
  static inline float absmax32(const float* x) {
    const F a = _mm512_abs_ps(_mm512_loadu_ps(x)), b = _mm512_abs_ps(_mm512_loadu_ps(x + 16));
    return _mm512_reduce_max_ps(_mm512_max_ps(a, b));
  }
  static inline int quantize32(const float* x, float id, int8_t* q) {
    const F s = _mm512_set1_ps(id);
    const V a = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x), s));
    const V b = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 16), s));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q), _mm512_cvtsepi32_epi8(a));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16), _mm512_cvtsepi32_epi8(b));
    return _mm512_reduce_add_epi32(_mm512_add_epi32(a, b));
  }
  static inline void quantize256(const float* x, float id, int8_t* q, int s16[16]) {
    const F s = _mm512_set1_ps(id);
    V v[16];
    for (int j = 0; j < 16; ++j) {
      v[j] = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 16 * j), s));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16 * j), _mm512_cvtsepi32_epi8(v[j]));
    }
    // 16 horizontal sums at once: transpose-and-add tree.
    // Step 1: pairs (j, j+8): add 256-bit halves crosswise.
    V t[8];
    for (int j = 0; j < 8; ++j) {
      const V lo = _mm512_shuffle_i64x2(v[j], v[j + 8], 0x44);  // v[j].lo256, v[j+8].lo256
      const V hi = _mm512_shuffle_i64x2(v[j], v[j + 8], 0xEE);  // v[j].hi256, v[j+8].hi256
      t[j] = _mm512_add_epi32(lo, hi);  // 128-bit lanes: [j: 0,1 | j+8: 0,1] sums of 8
    }
    V u[4];
    for (int j = 0; j < 4; ++j) {
      const V lo = _mm512_shuffle_i64x2(t[j], t[j + 4], 0x88);  // lanes 0,2 of t[j], lanes 0,2 of t[j+4]
      const V hi = _mm512_shuffle_i64x2(t[j], t[j + 4], 0xDD);  // lanes 1,3
      u[j] = _mm512_add_epi32(lo, hi);  // 128-bit lanes: j, j+8, j+4, j+12 (4 partial sums each)
    }
    // Now each 128-bit lane holds 4 partial sums of one row; reduce within lanes across u[0..3].
    const V a01 = _mm512_add_epi32(_mm512_unpacklo_epi32(u[0], u[1]), _mm512_unpackhi_epi32(u[0], u[1]));
    const V a23 = _mm512_add_epi32(_mm512_unpacklo_epi32(u[2], u[3]), _mm512_unpackhi_epi32(u[2], u[3]));
    const V r = _mm512_add_epi32(_mm512_unpacklo_epi64(a01, a23), _mm512_unpackhi_epi64(a01, a23));
    // r lane (4*c + e), c = 128-bit lane, e = index into u: sum of row (c-th of {j, j+8, j+4, j+12}) for j = e.
    alignas(64) int32_t out[16];
    _mm512_store_si512(out, r);
    static constexpr int kRowBase[4] = {0, 8, 4, 12};
    for (int c = 0; c < 4; ++c)
      for (int e = 0; e < 4; ++e) s16[kRowBase[c] + e] = out[4 * c + e];
  }
};

}  // namespace vireo::cpu::kern::avx512

#define VIREO_SIMD_NS avx512
#include "backend/cpu/kernels_simd.h"

namespace vireo::cpu::kern {
namespace {

// Tile shapes (activation rows x 16-row groups) per family, and the number of groups a decode (m = 1) tile streams
// at once. Tuned on Sapphire Rapids; overridable for experiments. K-quant decode streams one group a tile: on Zen 5
// (2 threads, alternating builds) Q4_K 32000x2048 ~930 -> ~670 us, Q6_K ~1210 -> ~1000 us, TinyLlama Q4_K_M decode
// 75.2 -> 81.8 tok/s against two groups a tile.
#ifndef VIREO_TILE_K
#define VIREO_TILE_K 8, 1, 1
#endif
#ifndef VIREO_TILE_32
#define VIREO_TILE_32 6, 2, 4
#endif
#ifndef VIREO_TILE_F
#define VIREO_TILE_F 8, 2, 4
#endif
Kernels make_avx512() {
  namespace K = avx512;
  return K::kernel_table<K::Tile<VIREO_TILE_F>, K::Tile<VIREO_TILE_32>, K::Tile<VIREO_TILE_K>>();
}

}  // namespace

const Kernels& avx512_kernels() {
  static const Kernels k = make_avx512();
  return k;
}

}  // namespace vireo::cpu::kern
