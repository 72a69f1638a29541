// WebAssembly SIMD128 matmul kernels (the browser's CPU path): one i32x4/f32x4 lane per weight row, so a 16-row
// group is four lane groups of 4. SIMD128 has no u8 x s8 multiply-add; the 4-byte dot product of each lane is two
// i32x4.dot_i16x8_s over the even and the odd bytes widened to i16 (exact in int32, no saturation), so codes of
// any width and Q8_0's signed codes take the same route. There is no f16 conversion either (simd128_util.h).
// Compiled only for WASM (-msimd128; the SSE2 intrinsics the shared K-quant scale decoding uses are Emscripten's
// SIMD128 equivalents).
#include <emmintrin.h>
#include <wasm_simd128.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include "backend/cpu/kernels_internal.h"
#include "backend/cpu/simd128_util.h"

namespace vireo::cpu::kern::simd128 {

struct I {
  static constexpr int L = 4;
  static constexpr int kQ8Offset = 0;  // dp_q8 recovers the signed codes itself
  using V = v128_t;
  using F = v128_t;

  static inline V load(const uint8_t* p) { return wasm_v128_load(p); }
  static inline V c8(int v) { return wasm_i8x16_splat(static_cast<int8_t>(v)); }
  static inline V and_(V a, V b) { return wasm_v128_and(a, b); }
  static inline V or_masked(V a, V b, V m) { return wasm_v128_or(a, wasm_v128_and(b, m)); }
  template <int N>
  static inline V srl16(V a) {
    if constexpr (N == 0) return a;
    else return wasm_u16x8_shr(a, N);
  }
  template <int N>
  static inline V sll16(V a) {
    if constexpr (N == 0) return a;
    else return wasm_i16x8_shl(a, N);
  }
  template <int N>
  static inline V shift16(V a) {
    if constexpr (N > 0) return sll16<N>(a);
    else return srl16<-N>(a);
  }
  static inline V bcast32(const uint8_t* p) { return wasm_v128_load32_splat(p); }

  // The even and odd bytes of each 16-bit lane, widened to i16: unsigned and signed.
  static inline V even_u(V a) { return wasm_v128_and(a, wasm_i16x8_splat(0x00FF)); }
  static inline V odd_u(V a) { return wasm_u16x8_shr(a, 8); }
  static inline V even_s(V a) { return wasm_i16x8_shr(wasm_i16x8_shl(a, 8), 8); }
  static inline V odd_s(V a) { return wasm_i16x8_shr(a, 8); }
  // int32 lane += sum of its 4 byte products (u unsigned, s signed).
  static inline V dp(V acc, V u, V s) {
    const V e = wasm_i32x4_dot_i16x8(even_u(u), even_s(s)), o = wasm_i32x4_dot_i16x8(odd_u(u), odd_s(s));
    return wasm_i32x4_add(acc, wasm_i32x4_add(e, o));
  }
  static inline V dp_q8(V acc, V w, V x) {
    const V ws = wasm_v128_xor(w, wasm_i8x16_splat(static_cast<int8_t>(0x80)));  // back to signed codes
    const V e = wasm_i32x4_dot_i16x8(even_s(ws), even_s(x)), o = wasm_i32x4_dot_i16x8(odd_s(ws), odd_s(x));
    return wasm_i32x4_add(acc, wasm_i32x4_add(e, o));
  }
  static inline V dpw(V acc, V a, V b) { return wasm_i32x4_add(acc, wasm_i32x4_dot_i16x8(a, b)); }
  // The int16 pair-sum route is for x86 without VNNI; here dp() is already exact and as short.
  static constexpr bool kInt16Sums = false;
  static inline void pin(V&) {}
  static inline V maddubs(V u, V s) {
    return wasm_i16x8_add(wasm_i16x8_mul(even_u(u), even_s(s)), wasm_i16x8_mul(odd_u(u), odd_s(s)));
  }
  static inline V add16(V a, V b) { return wasm_i16x8_add(a, b); }
  static inline V widen_add(V acc, V h) { return dpw(acc, h, wasm_i16x8_splat(1)); }
  static inline V addi(V a, V b) { return wasm_i32x4_add(a, b); }
  template <int N>
  static inline V srai32(V a) { return wasm_i32x4_shr(a, N); }
  static inline F cvt(V a) { return wasm_f32x4_convert_i32x4(a); }
  static inline F mul(F a, F b) { return wasm_f32x4_mul(a, b); }
  static inline F add(F a, F b) { return wasm_f32x4_add(a, b); }
  static inline F fmadd(F a, F b, F c) { return wasm_f32x4_add(wasm_f32x4_mul(a, b), c); }
  static inline F fnmadd(F a, F b, F c) { return wasm_f32x4_sub(c, wasm_f32x4_mul(a, b)); }
  static inline F bcastf(float v) { return wasm_f32x4_splat(v); }
  static inline F zerof() { return wasm_f32x4_splat(0.f); }
  static inline V zeroi() { return wasm_i32x4_splat(0); }
  static inline F load_f16(const uint8_t* p) { return simd128_util::load_f16x4(p); }
  static inline F load_bf16(const uint8_t* p) { return wasm_i32x4_shl(wasm_u32x4_load16x4(p), 16); }
  static inline F load_f32(const uint8_t* p) { return wasm_v128_load(p); }
  static inline F loadf(const float* p) { return wasm_v128_load(p); }
  static inline void storef(float* p, F v) { wasm_v128_store(p, v); }
  static inline V u8_to_i32(__m128i v) { return wasm_u32x4_extend_low_u16x8(wasm_u16x8_extend_low_u8x16(v)); }
  static inline V i8_to_i32(__m128i v) { return wasm_i32x4_extend_low_i16x8(wasm_i16x8_extend_low_i8x16(v)); }
  static inline V pairs_u8(__m128i m0, __m128i m1) {
    return wasm_u16x8_extend_low_u8x16(wasm_i8x16_shuffle(m0, m1, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23));
  }
  static inline void prefetch(const uint8_t*) {}
  static inline void store(float* p, F v, int n) {
    if (n >= 4) {
      wasm_v128_store(p, v);
    } else {
      alignas(16) float t[4];
      wasm_v128_store(t, v);
      for (int i = 0; i < n; ++i) p[i] = t[i];
    }
  }

  // Activation quantization helpers.
  static inline int hsum(V v) {
    return wasm_i32x4_extract_lane(v, 0) + wasm_i32x4_extract_lane(v, 1) + wasm_i32x4_extract_lane(v, 2) +
           wasm_i32x4_extract_lane(v, 3);
  }
  static inline float absmax32(const float* x) {
    F m = wasm_f32x4_abs(wasm_v128_load(x));
    for (int j = 1; j < 8; ++j) m = wasm_f32x4_max(m, wasm_f32x4_abs(wasm_v128_load(x + 4 * j)));
    return std::fmax(std::fmax(wasm_f32x4_extract_lane(m, 0), wasm_f32x4_extract_lane(m, 1)),
                     std::fmax(wasm_f32x4_extract_lane(m, 2), wasm_f32x4_extract_lane(m, 3)));
  }
  // 32 values -> int8 (round half to even, as the scalar quantizer's nearbyint); the sums of the two halves.
  static inline void quant32_core(const float* x, float id, int8_t* q, int* s_lo, int* s_hi) {
    const F s = wasm_f32x4_splat(id);
    V v[8];
    for (int j = 0; j < 8; ++j)
      v[j] = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(wasm_f32x4_mul(wasm_v128_load(x + 4 * j), s)));
    const V a = wasm_i8x16_narrow_i16x8(wasm_i16x8_narrow_i32x4(v[0], v[1]), wasm_i16x8_narrow_i32x4(v[2], v[3]));
    const V b = wasm_i8x16_narrow_i16x8(wasm_i16x8_narrow_i32x4(v[4], v[5]), wasm_i16x8_narrow_i32x4(v[6], v[7]));
    wasm_v128_store(q, a);
    wasm_v128_store(q + 16, b);
    *s_lo = hsum(wasm_i32x4_add(wasm_i32x4_add(v[0], v[1]), wasm_i32x4_add(v[2], v[3])));
    *s_hi = hsum(wasm_i32x4_add(wasm_i32x4_add(v[4], v[5]), wasm_i32x4_add(v[6], v[7])));
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

}  // namespace vireo::cpu::kern::simd128

#define VIREO_SIMD_NS simd128
#include "backend/cpu/kernels_simd.h"

namespace vireo::cpu::kern {
namespace {

// Tile shapes (activation rows x 4-row lane groups) and decode lane groups per family. Overridable for
// experiments.
#ifndef VIREO_TILE_WASM_K
#define VIREO_TILE_WASM_K 4, 2, 4
#endif
#ifndef VIREO_TILE_WASM_32
#define VIREO_TILE_WASM_32 4, 2, 4
#endif
#ifndef VIREO_TILE_WASM_F
#define VIREO_TILE_WASM_F 4, 2, 4
#endif
Kernels make_simd128() {
  namespace K = simd128;
  return K::kernel_table<K::Tile<VIREO_TILE_WASM_F>, K::Tile<VIREO_TILE_WASM_32>, K::Tile<VIREO_TILE_WASM_K>>();
}

}  // namespace

const Kernels& simd128_kernels() {
  static const Kernels k = make_simd128();
  return k;
}

}  // namespace vireo::cpu::kern
