// Helpers shared by the WebAssembly SIMD128 kernels (WASM builds with -msimd128 only).
#pragma once
#include <wasm_simd128.h>

#include <cstdint>

namespace vireo::cpu::simd128_util {

// Four f16 (in the low halves of u32 lanes) to f32, exactly: SIMD128 has no f16 conversion. The exponent and
// mantissa are moved into place and scaled by 2^112 (which also turns f16 subnormals into f32 normals); inf/NaN
// get the f32 all-ones exponent.
inline v128_t f16x4_to_f32(v128_t h) {
  const v128_t em = wasm_v128_and(h, wasm_i32x4_splat(0x7fff));
  const v128_t sign = wasm_i32x4_shl(wasm_v128_and(h, wasm_i32x4_splat(0x8000)), 16);
  const v128_t bits = wasm_i32x4_shl(em, 13);
  const v128_t finite = wasm_f32x4_mul(bits, wasm_f32x4_splat(0x1p112f));
  const v128_t special = wasm_i32x4_gt(em, wasm_i32x4_splat(0x7bff));
  const v128_t v = wasm_v128_bitselect(wasm_v128_or(bits, wasm_i32x4_splat(0x7f800000)), finite, special);
  return wasm_v128_or(v, sign);
}

inline v128_t load_f16x4(const void* p) { return f16x4_to_f32(wasm_u32x4_load16x4(p)); }

}  // namespace vireo::cpu::simd128_util
