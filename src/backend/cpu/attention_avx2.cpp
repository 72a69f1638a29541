// Decode/prefill attention of one (token, head) over an f16 KV cache, AVX2 + FMA + F16C (the AVX-512 file's
// counterpart for CPUs without AVX-512). The scalar version in cpu_backend.cpp is the reference; tests compare.
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "backend/cpu/attention_kernels.h"

namespace vireo::cpu {

namespace {

inline __m256 load_f16(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

}  // namespace

void attend_head_f16_avx2(const float* q, const uint16_t* k, const uint16_t* v, int64_t row_stride, int n_pos,
                          int head_dim, float scale, float* scores, float* out) {
  // head_dim is a multiple of 8 and at most 256 here (checked by the caller).
  const int nv = head_dim / 8;
  float mx = -INFINITY;
  for (int j = 0; j < n_pos; ++j) {
    const uint16_t* kr = k + static_cast<int64_t>(j) * row_stride;
    __m256 a0 = _mm256_mul_ps(_mm256_loadu_ps(q), load_f16(kr)), a1 = _mm256_setzero_ps();
    int i = 1;
    for (; i + 1 < nv; i += 2) {
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + 8 * i), load_f16(kr + 8 * i), a1);
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + 8 * i + 8), load_f16(kr + 8 * i + 8), a0);
    }
    if (i < nv) a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + 8 * i), load_f16(kr + 8 * i), a1);
    const float s = hsum(_mm256_add_ps(a0, a1)) * scale;
    scores[j] = s;
    mx = s > mx ? s : mx;
  }
  float sum = 0.f;
  for (int j = 0; j < n_pos; ++j) {
    scores[j] = std::exp(scores[j] - mx);
    sum += scores[j];
  }
  const float inv = 1.f / sum;
  // The output in registers, 8 vectors (64 dims) at a time.
  for (int i0 = 0; i0 < nv; i0 += 8) {
    const int nc = nv - i0 < 8 ? nv - i0 : 8;
    __m256 o[8];
    for (int i = 0; i < nc; ++i) o[i] = _mm256_setzero_ps();
    for (int j = 0; j < n_pos; ++j) {
      const uint16_t* vr = v + static_cast<int64_t>(j) * row_stride + 8 * i0;
      const __m256 w = _mm256_set1_ps(scores[j] * inv);
      for (int i = 0; i < nc; ++i) o[i] = _mm256_fmadd_ps(w, load_f16(vr + 8 * i), o[i]);
    }
    for (int i = 0; i < nc; ++i) _mm256_storeu_ps(out + 8 * (i0 + i), o[i]);
  }
}

}  // namespace vireo::cpu
