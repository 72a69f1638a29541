// Attention of one (token, head) over an f16 KV cache and SwiGLU with WebAssembly SIMD128 (the browser's CPU
// path; the AVX2 file's counterpart). The scalar loops in cpu_backend.cpp are the reference.
#include <wasm_simd128.h>

#include <cmath>
#include <cstdint>

#include "backend/cpu/attention_kernels.h"
#include "backend/cpu/simd128_util.h"

namespace vireo::cpu {
namespace {

using simd128_util::load_f16x4;

inline float hsum(v128_t v) {
  return (wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1)) +
         (wasm_f32x4_extract_lane(v, 2) + wasm_f32x4_extract_lane(v, 3));
}

inline v128_t fmadd(v128_t a, v128_t b, v128_t c) { return wasm_f32x4_add(wasm_f32x4_mul(a, b), c); }

// e^x as in elementwise_avx2.cpp: x·log2(e) = n + f, 2^f by a degree-6 polynomial in f·ln2, 2^n from the exponent
// bits; inputs below -87 flush to ~0, above 88 clamp.
inline v128_t exp4(v128_t x) {
  x = wasm_f32x4_max(wasm_f32x4_min(x, wasm_f32x4_splat(88.0f)), wasm_f32x4_splat(-87.0f));
  const v128_t t = wasm_f32x4_mul(x, wasm_f32x4_splat(1.44269504088896341f));
  const v128_t n = wasm_f32x4_nearest(t);
  const v128_t y = wasm_f32x4_mul(wasm_f32x4_sub(t, n), wasm_f32x4_splat(0.693147180559945309f));
  v128_t p = wasm_f32x4_splat(1.0f / 720);
  p = fmadd(p, y, wasm_f32x4_splat(1.0f / 120));
  p = fmadd(p, y, wasm_f32x4_splat(1.0f / 24));
  p = fmadd(p, y, wasm_f32x4_splat(1.0f / 6));
  p = fmadd(p, y, wasm_f32x4_splat(0.5f));
  p = fmadd(p, y, wasm_f32x4_splat(1.0f));
  p = fmadd(p, y, wasm_f32x4_splat(1.0f));
  const v128_t e = wasm_i32x4_shl(wasm_i32x4_add(wasm_i32x4_trunc_sat_f32x4(n), wasm_i32x4_splat(127)), 23);
  return wasm_f32x4_mul(p, e);
}

}  // namespace

void attend_head_f16_simd128(const float* q, const uint16_t* k, const uint16_t* v, int64_t row_stride, int n_pos,
                             int head_dim, float scale, float* scores, float* out) {
  // head_dim is a multiple of 4 and at most 256 here (checked by the caller).
  const int nv = head_dim / 4;
  float mx = -INFINITY;
  for (int j = 0; j < n_pos; ++j) {
    const uint16_t* kr = k + static_cast<int64_t>(j) * row_stride;
    v128_t a0 = wasm_f32x4_splat(0.f), a1 = wasm_f32x4_splat(0.f);
    int i = 0;
    for (; i + 1 < nv; i += 2) {
      a0 = fmadd(wasm_v128_load(q + 4 * i), load_f16x4(kr + 4 * i), a0);
      a1 = fmadd(wasm_v128_load(q + 4 * i + 4), load_f16x4(kr + 4 * i + 4), a1);
    }
    if (i < nv) a0 = fmadd(wasm_v128_load(q + 4 * i), load_f16x4(kr + 4 * i), a0);
    const float s = hsum(wasm_f32x4_add(a0, a1)) * scale;
    scores[j] = s;
    mx = s > mx ? s : mx;
  }
  float sum = 0.f;
  for (int j = 0; j < n_pos; ++j) {
    scores[j] = std::exp(scores[j] - mx);
    sum += scores[j];
  }
  const float inv = 1.f / sum;
  // The output in registers, 8 vectors (32 dims) at a time.
  for (int i0 = 0; i0 < nv; i0 += 8) {
    const int nc = nv - i0 < 8 ? nv - i0 : 8;
    v128_t o[8];
    for (int i = 0; i < nc; ++i) o[i] = wasm_f32x4_splat(0.f);
    for (int j = 0; j < n_pos; ++j) {
      const uint16_t* vr = v + static_cast<int64_t>(j) * row_stride + 4 * i0;
      const v128_t w = wasm_f32x4_splat(scores[j] * inv);
      for (int i = 0; i < nc; ++i) o[i] = fmadd(w, load_f16x4(vr + 4 * i), o[i]);
    }
    for (int i = 0; i < nc; ++i) wasm_v128_store(out + 4 * (i0 + i), o[i]);
  }
}

void swiglu_simd128(const float* gate, const float* up, float* out, int64_t n) {
  int64_t i = 0;
  const v128_t one = wasm_f32x4_splat(1.0f);
  for (; i + 4 <= n; i += 4) {
    const v128_t g = wasm_v128_load(gate + i);
    const v128_t sig = wasm_f32x4_div(one, wasm_f32x4_add(one, exp4(wasm_f32x4_neg(g))));
    wasm_v128_store(out + i, wasm_f32x4_mul(wasm_f32x4_mul(g, sig), wasm_v128_load(up + i)));
  }
  for (; i < n; ++i) out[i] = gate[i] / (1.f + std::exp(-gate[i])) * up[i];
}

}  // namespace vireo::cpu
