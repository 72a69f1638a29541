// AVX2 + FMA + F16C matmul kernels: one ymm lane per weight row (a 16-row group is two lane groups of 8). The
// int8 dot product is vpmaddubsw + vpmaddwd (no VNNI): the weight codes are at most 6 bits, so the int16 pair sums
// cannot saturate; Q8_0 uses the sign trick (|w| x sign(x, w)) instead of unsigned codes. Compiled with the AVX2
// flags (see CMakeLists.txt) and only called when best_cpu_path() allows it.
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

namespace vireo::cpu::kern::avx2 {

struct I {
  static constexpr int L = 8;
  static constexpr int kQ8Offset = 0;  // dp_q8 recovers the signed codes itself
  using V = __m256i;
  using F = __m256;

  static inline V load(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static inline V c8(int v) { return _mm256_set1_epi8(static_cast<char>(v)); }
  static inline V and_(V a, V b) { return _mm256_and_si256(a, b); }
  static inline V or_masked(V a, V b, V m) { return _mm256_or_si256(a, _mm256_and_si256(b, m)); }
  template <int N>
  static inline V srl16(V a) {
    if constexpr (N == 0) return a;
    else return _mm256_srli_epi16(a, N);
  }
  template <int N>
  static inline V sll16(V a) {
    if constexpr (N == 0) return a;
    else return _mm256_slli_epi16(a, N);
  }
  template <int N>
  static inline V shift16(V a) {
    if constexpr (N > 0) return sll16<N>(a);
    else return srl16<-N>(a);
  }
  static inline V bcast32(const uint8_t* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
  }
  static inline V dp(V acc, V u, V s) { return widen_add(acc, maddubs(u, s)); }
  static inline V dp_q8(V acc, V w, V x) {
    const V ws = _mm256_xor_si256(w, _mm256_set1_epi8(static_cast<char>(0x80)));  // back to signed codes
    return widen_add(acc, maddubs(_mm256_abs_epi8(ws), _mm256_sign_epi8(x, ws)));
  }
  static inline V dpw(V acc, V a, V b) { return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b)); }
  static constexpr bool kInt16Sums = true;
  // Keeps the int16 sums in order: without it GCC computes a whole unit's products first and adds them as a tree,
  // which spills most of them to the stack (16 ymm registers).
  static inline void pin(V& v) { asm("" : "+x"(v)); }
  static inline V maddubs(V u, V s) { return _mm256_maddubs_epi16(u, s); }
  static inline V add16(V a, V b) { return _mm256_add_epi16(a, b); }
  static inline V widen_add(V acc, V h) { return dpw(acc, h, _mm256_set1_epi16(1)); }  // int32 += int16 pair sums
  static inline V addi(V a, V b) { return _mm256_add_epi32(a, b); }
  template <int N>
  static inline V srai32(V a) { return _mm256_srai_epi32(a, N); }
  static inline F cvt(V a) { return _mm256_cvtepi32_ps(a); }
  static inline F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static inline F add(F a, F b) { return _mm256_add_ps(a, b); }
  static inline F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static inline F fnmadd(F a, F b, F c) { return _mm256_fnmadd_ps(a, b, c); }
  static inline F bcastf(float v) { return _mm256_set1_ps(v); }
  static inline F zerof() { return _mm256_setzero_ps(); }
  static inline V zeroi() { return _mm256_setzero_si256(); }
  static inline F load_f16(const uint8_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static inline F load_bf16(const uint8_t* p) {
    const V w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
  }
  static inline F load_f32(const uint8_t* p) { return _mm256_loadu_ps(reinterpret_cast<const float*>(p)); }
  static inline F loadf(const float* p) { return _mm256_load_ps(p); }
  static inline void storef(float* p, F v) { _mm256_store_ps(p, v); }
  static inline V u8_to_i32(__m128i v) { return _mm256_cvtepu8_epi32(v); }
  static inline V i8_to_i32(__m128i v) { return _mm256_cvtepi8_epi32(v); }
  static inline V pairs_u8(__m128i m0, __m128i m1) { return _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m0, m1)); }
  static inline void prefetch(const uint8_t* p) { _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0); }
  static inline void store(float* p, F v, int n) {
    if (n >= 8) {
      _mm256_storeu_ps(p, v);
    } else {
      const V mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
      _mm256_maskstore_ps(p, mask, v);
    }
  }

  // Activation quantization helpers.
  static inline int hsum(V v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
  }
  static inline float absmax32(const float* x) {
    const F sign = _mm256_set1_ps(-0.f);
    F m = _mm256_andnot_ps(sign, _mm256_loadu_ps(x));
    for (int j = 1; j < 4; ++j) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * j)));
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  // 32 values -> int8 (in order); returns the four 8-element int32 vectors' sums of the two halves.
  static inline void quant32_core(const float* x, float id, int8_t* q, int* s_lo, int* s_hi) {
    const F s = _mm256_set1_ps(id);
    V v[4];
    for (int j = 0; j < 4; ++j) v[j] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * j), s));
    const V p01 = _mm256_packs_epi32(v[0], v[1]), p23 = _mm256_packs_epi32(v[2], v[3]);
    V b = _mm256_packs_epi16(p01, p23);
    b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), b);
    *s_lo = hsum(_mm256_add_epi32(v[0], v[1]));
    *s_hi = hsum(_mm256_add_epi32(v[2], v[3]));
  }
  static inline int quantize32(const float* x, float id, int8_t* q) {
    int a, b;
    quant32_core(x, id, q, &a, &b);
    return a + b;
  }
  static inline void quantize256(const float* x, float id, int8_t* q, int s16[16]) {
    for (int c = 0; c < 8; ++c) quant32_core(x + 32 * c, id, q + 32 * c, &s16[2 * c], &s16[2 * c + 1]);
  }
};

}  // namespace vireo::cpu::kern::avx2

#define VIREO_SIMD_NS avx2
#include "backend/cpu/kernels_simd.h"

namespace vireo::cpu::kern {
namespace {

// Tile shapes (activation rows x 8-row lane groups) and decode lane groups per family; 16 ymm registers hold the
// MR x NR int and f32 accumulators plus the unpacked weights. Overridable for experiments.
#ifndef VIREO_TILE2_K
#define VIREO_TILE2_K 4, 1, 2
#endif
#ifndef VIREO_TILE2_32
#define VIREO_TILE2_32 4, 1, 4
#endif
#ifndef VIREO_TILE2_F
#define VIREO_TILE2_F 4, 2, 4
#endif
Kernels make_avx2() {
  namespace K = avx2;
  return K::kernel_table<K::Tile<VIREO_TILE2_F>, K::Tile<VIREO_TILE2_32>, K::Tile<VIREO_TILE2_K>>();
}

}  // namespace

const Kernels& avx2_kernels() {
  static const Kernels k = make_avx2();
  return k;
}

}  // namespace vireo::cpu::kern
