// Decode/prefill attention of one (token, head) over an f16 KV cache, AVX-512 + F16C.
// The scalar version in cpu_backend.cpp is the reference; tests compare the two.
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "backend/cpu/attention_kernels.h"

namespace vireo::cpu {

namespace {

inline __m512 load_f16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

}  // namespace

void attend_head_f16_avx512(const float* q, const uint16_t* k, const uint16_t* v, int64_t row_stride, int n_pos,
                            int head_dim, float scale, float* scores, float* out) {
  // head_dim is a multiple of 16 here (checked by the caller).
  const int nv = head_dim / 16;
  __m512 qv[16];  // head_dim <= 256
  for (int i = 0; i < nv; ++i) qv[i] = _mm512_loadu_ps(q + 16 * i);
  float mx = -INFINITY;
  for (int j = 0; j < n_pos; ++j) {
    const uint16_t* kr = k + static_cast<int64_t>(j) * row_stride;
    __m512 acc = _mm512_mul_ps(qv[0], load_f16(kr));
    for (int i = 1; i < nv; ++i) acc = _mm512_fmadd_ps(qv[i], load_f16(kr + 16 * i), acc);
    const float s = _mm512_reduce_add_ps(acc) * scale;
    scores[j] = s;
    mx = s > mx ? s : mx;
  }
  float sum = 0.f;
  for (int j = 0; j < n_pos; ++j) {
    scores[j] = std::exp(scores[j] - mx);
    sum += scores[j];
  }
  const float inv = 1.f / sum;
  __m512 o[16];
  for (int i = 0; i < nv; ++i) o[i] = _mm512_setzero_ps();
  for (int j = 0; j < n_pos; ++j) {
    const uint16_t* vr = v + static_cast<int64_t>(j) * row_stride;
    const __m512 w = _mm512_set1_ps(scores[j] * inv);
    for (int i = 0; i < nv; ++i) o[i] = _mm512_fmadd_ps(w, load_f16(vr + 16 * i), o[i]);
  }
  for (int i = 0; i < nv; ++i) _mm512_storeu_ps(out + 16 * i, o[i]);
}

}  // namespace vireo::cpu
