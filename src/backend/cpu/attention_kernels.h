// Vectorized attention and element-wise loops for the CPU backend (chosen at run time; see cpu_backend.cpp).
#pragma once
#include <cstdint>

namespace vireo::cpu {

// out[0..head_dim) = softmax(q · k_j * scale over j < n_pos) weighted sum of v_j, for one query head over an f16
// cache whose rows are `row_stride` elements apart. `scores` holds n_pos floats of scratch.
void attend_head_f16_avx512(const float* q, const uint16_t* k, const uint16_t* v, int64_t row_stride, int n_pos,
                            int head_dim, float scale, float* scores, float* out);

// The same for AVX2 + FMA + F16C (head_dim a multiple of 8).
void attend_head_f16_avx2(const float* q, const uint16_t* k, const uint16_t* v, int64_t row_stride, int n_pos,
                          int head_dim, float scale, float* scores, float* out);

// The same for WebAssembly SIMD128 (head_dim a multiple of 4; WASM builds only).
void attend_head_f16_simd128(const float* q, const uint16_t* k, const uint16_t* v, int64_t row_stride, int n_pos,
                             int head_dim, float scale, float* scores, float* out);

// out = silu(gate) * up, element-wise (out may alias gate).
void swiglu_avx512(const float* gate, const float* up, float* out, int64_t n);
void swiglu_avx2(const float* gate, const float* up, float* out, int64_t n);
void swiglu_simd128(const float* gate, const float* up, float* out, int64_t n);

}  // namespace vireo::cpu
