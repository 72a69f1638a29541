// Block layouts of the GGUF quantized types (the on-disk format; facts from the GGUF spec).
// Each block holds a fixed number of elements; the structs are packed exactly as in the file.
#pragma once
#include <cstdint>

namespace vireo {

constexpr int QK4_0 = 32, QK4_1 = 32, QK5_0 = 32, QK5_1 = 32, QK8_0 = 32, QK8_1 = 32;
constexpr int QK_K = 256;         // super-block size of the k-quants
constexpr int K_SCALE_SIZE = 12;  // packed 6-bit scales/mins of Q4_K and Q5_K

using f16_t = uint16_t;  // IEEE half stored as bits

struct BlockQ4_0 { f16_t d; uint8_t qs[QK4_0 / 2]; };                        // x = (q-8)*d
struct BlockQ4_1 { f16_t d, m; uint8_t qs[QK4_1 / 2]; };                     // x = q*d + m
struct BlockQ5_0 { f16_t d; uint8_t qh[4]; uint8_t qs[QK5_0 / 2]; };         // x = (q-16)*d
struct BlockQ5_1 { f16_t d, m; uint8_t qh[4]; uint8_t qs[QK5_1 / 2]; };      // x = q*d + m
struct BlockQ8_0 { f16_t d; int8_t qs[QK8_0]; };                              // x = q*d
struct BlockQ8_1 { f16_t d, s; int8_t qs[QK8_1]; };                           // s = d*sum(q)

struct BlockQ2_K { uint8_t scales[QK_K / 16]; uint8_t qs[QK_K / 4]; f16_t d, dmin; };
struct BlockQ3_K { uint8_t hmask[QK_K / 8]; uint8_t qs[QK_K / 4]; uint8_t scales[12]; f16_t d; };
struct BlockQ4_K { f16_t d, dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qs[QK_K / 2]; };
struct BlockQ5_K { f16_t d, dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; };
struct BlockQ6_K { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; f16_t d; };
struct BlockQ8_K { float d; int8_t qs[QK_K]; int16_t bsums[QK_K / 16]; };  // activations only

static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22 && sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ8_1) == 36);
static_assert(sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110);
static_assert(sizeof(BlockQ4_K) == 144 && sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210 && sizeof(BlockQ8_K) == 292);

}  // namespace vireo
