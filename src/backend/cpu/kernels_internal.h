// Internal contract between PackedMatrix (matmul.cpp) and the per-instruction-set kernels
// (matmul_scalar.cpp, matmul_avx2.cpp, matmul_avx512.cpp, matmul_simd128.cpp). Not a public header.
//
// Weight layout ("row groups"): rows are taken 16 at a time; a group's data is contiguous and, for every block of
// the weight type, holds the 16 rows' block data interleaved so that one 64-byte load carries 4 consecutive
// k-values of each of the 16 rows (byte rr*4 + jj = row rr, k = k0 + jj). The int8 dot product then leaves one
// int32 lane per row (vpdpbusd with the activation's 4 bytes broadcast), so no horizontal sums are needed and one
// weight load serves every activation row of a tile. The last group is padded with zero rows. Every path reads the
// same layout, so the path can change after a matrix is built.
//
// Per-block layouts inside a group (rr = row in group, all 16-row arrays are indexed by rr):
//   F32   per k: f32[16]                          F16 / BF16  per k: u16[16]
//   Q8_0  (32)  d f16[16] | 8 x 64B: u8 = q + 128 (k4 group t = k 4t..4t+3)
//   Q4_0  (32)  d f16[16] | 4 x 64B chunks c: low nibble k = 8c+jj, high nibble k = 8c+4+jj          (q 0..15)
//   Q4_1  (32)  d f16[16] | m f16[16] | 4 chunks as Q4_0
//   Q5_0  (32)  d f16[16] | qh 64B: bit 2c of byte rr*4+jj = bit 4 of q(8c+jj), bit 2c+1 = of q(8c+4+jj) | 4 chunks
//   Q5_1  (32)  d f16[16] | m f16[16] | qh 64B | 4 chunks
//   Q2_K  (256) d f16[16] | dmin f16[16] | scales u8[16 sub][16] (as in GGUF: sc | m<<4) |
//               16 sub-blocks x 64B: bits 2g..2g+1 of byte rr*4+jj = q(16j + 4g + jj)
//   Q3_K  (256) d f16[16] | scales i8[16 sub][16] (decoded, sc-32) | 16 x 64B low 2 bits as Q2_K |
//               8 x 64B high bits: for sub-block j, bit g + 4*(j&1) of byte rr*4+jj of vector j/2 = bit 2 of
//               u(16j + 4g + jj), where u = q + 4 is 0..7
//   Q4_K  (256) d f16[16] | dmin f16[16] | 12 scale planes x 16 (plane p byte rr = GGUF scales[p] of row rr) |
//               8 sub-blocks j x 4 chunks c x 64B: low nibble k = 32j+8c+jj, high nibble k = 32j+8c+4+jj
//   Q5_K  (256) d | dmin | 12 planes | 8 x qh 64B (per sub-block j, bits as Q5_0 with c) | 8x4 chunks as Q4_K
//   Q6_K  (256) d f16[16] | scales i8[16 sub][16] | 16 sub-blocks j x { 2 chunks c x 64B: low 4 bits,
//               low nibble k = 16j+8c+jj, high nibble k = 16j+8c+4+jj; 64B: bits 2g..2g+1 = high 2 bits of
//               q(16j+4g+jj) }                                                                     (q 0..63)
// Every quantized layout has exactly 16x the GGUF bytes per block except Q3_K (scales stored decoded: 1824 vs
// 1760 per 16 rows).
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace vireo::cpu::kern {

constexpr int kGroupRows = 16;

enum class WType : int { F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Count };
constexpr int kNumWTypes = static_cast<int>(WType::Count);

// Activation formats. F32: the caller's x is used as is.
// Q8B32: per 32 elements one f32 scale d; q = round(x / d) in [-127, 127].
// Q8B256: per 256 elements one f32 scale; plus 16- and 32-element sums of q.
enum class ActKind { F32, Q8B32, Q8B256 };

// Byte layout of one quantized activation row of K elements. All offsets are 64-byte aligned.
//   Q8B32 : qs i8[K] | d f32[nb] | corr i32[nb] (= -offset * sum q) | dsum f32[nb] (= d * sum q)
//   Q8B256: qs i8[K] | d f32[nb] | corr16 i32[nb*16] (= -offset * 16-sum) | bs16 i16[nb*16] | bs32 i16[nb*8]
struct ActLayout {
  ActKind kind = ActKind::F32;
  int64_t K = 0, nb = 0;
  int64_t off_d = 0, off_corr = 0, off_dsum = 0, off_bs16 = 0, off_bs32 = 0, stride = 0;
};

inline int64_t align64(int64_t v) { return (v + 63) & ~int64_t(63); }

inline ActLayout make_act_layout(ActKind kind, int64_t K) {
  ActLayout a;
  a.kind = kind;
  a.K = K;
  if (kind == ActKind::F32) return a;
  int64_t o = align64(K);
  if (kind == ActKind::Q8B32) {
    a.nb = K / 32;
    a.off_d = o;
    o = align64(o + a.nb * 4);
    a.off_corr = o;
    o = align64(o + a.nb * 4);
    a.off_dsum = o;
    o = align64(o + a.nb * 4);
  } else {
    a.nb = K / 256;
    a.off_d = o;
    o = align64(o + a.nb * 4);
    a.off_corr = o;
    o = align64(o + a.nb * 16 * 4);
    a.off_bs16 = o;
    o = align64(o + a.nb * 16 * 2);
    a.off_bs32 = o;
    o = align64(o + a.nb * 8 * 2);
  }
  a.stride = o;
  return a;
}

// One parallel piece of a product: row groups [g0, g1) for all m activation rows.
struct GemmArgs {
  const uint8_t* w = nullptr;  // repacked weights, group 0
  int64_t group_bytes = 0;     // bytes of one 16-row group
  int64_t K = 0;               // columns
  int64_t rows = 0;            // real rows (the last group may be partial)
  const uint8_t* act = nullptr;  // quantized activations (m rows of al.stride bytes)
  ActLayout al;
  const float* x = nullptr;  // f32 activations for ActKind::F32
  int64_t ldx = 0;
  int64_t m = 0;
  float* y = nullptr;
  int64_t ldy = 0;
  int64_t g0 = 0, g1 = 0;
};

using GemmFn = void (*)(const GemmArgs&);
// Quantizes one activation row x[0..K) into dst (layout al); offset is the weight's zero point (see Kernels).
using QuantFn = void (*)(const float* x, uint8_t* dst, const ActLayout& al, int offset);

struct Kernels {
  GemmFn gemm[kNumWTypes] = {};
  int act_offset[kNumWTypes] = {};  // the `offset` each weight type's kernel wants in its activations
  QuantFn quant32 = nullptr;
  QuantFn quant256 = nullptr;
};

const Kernels& scalar_kernels();
#if !defined(VIREO_NO_X86) && (defined(__x86_64__) || defined(_M_X64))
#define VIREO_HAVE_X86_KERNELS 1
const Kernels& avx2_kernels();
const Kernels& avx512_kernels();
#endif
#if defined(__wasm_simd128__)
#define VIREO_HAVE_SIMD128_KERNELS 1
const Kernels& simd128_kernels();
#endif

// Facts about the weight types in the repacked layout.
constexpr ActKind act_kind(WType t) {
  switch (t) {
    case WType::F32:
    case WType::F16:
    case WType::BF16:
      return ActKind::F32;
    case WType::Q4_0:
    case WType::Q4_1:
    case WType::Q5_0:
    case WType::Q5_1:
    case WType::Q8_0:
      return ActKind::Q8B32;
    default:
      return ActKind::Q8B256;
  }
}

// Elements per block (1 for the float types) and repacked bytes per block of one 16-row group.
constexpr int64_t block_elems(WType t) {
  switch (act_kind(t)) {
    case ActKind::F32: return 1;
    case ActKind::Q8B32: return 32;
    default: return 256;
  }
}
constexpr int64_t group_block_bytes(WType t) {
  switch (t) {
    case WType::F32: return 64;
    case WType::F16: return 32;
    case WType::BF16: return 32;
    case WType::Q8_0: return 544;
    case WType::Q4_0: return 288;
    case WType::Q4_1: return 320;
    case WType::Q5_0: return 352;
    case WType::Q5_1: return 384;
    case WType::Q2_K: return 1344;
    case WType::Q3_K: return 1824;
    case WType::Q4_K: return 2304;
    case WType::Q5_K: return 2816;
    case WType::Q6_K: return 3360;
    default: return 0;
  }
}

}  // namespace vireo::cpu::kern
