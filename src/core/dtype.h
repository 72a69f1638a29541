// Tensor element types as numbered by the GGUF format, and their storage layout.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace vireo {

// Values match GGUF's ggml_type ids, so they can be read straight from a file.
enum class DType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, BF16 = 30,
};

struct DTypeInfo {
  std::string_view name;
  int64_t block_elems;  // elements per block (1 for plain types)
  int64_t block_bytes;  // bytes per block
  bool quantized;
};

// Returns nullptr for ids this build does not know.
const DTypeInfo* dtype_info(uint32_t id);
const DTypeInfo& dtype_info(DType t);
inline std::string_view dtype_name(DType t) { return dtype_info(t).name; }
// Parse "q4_k_m"-style names are handled by the synth tool; this takes plain type names ("Q4_K", "f16").
bool dtype_from_name(std::string_view name, DType* out);

// Bytes for `n` elements of type t; n must be a multiple of the block size (checked by callers).
inline int64_t row_bytes(DType t, int64_t n) {
  const DTypeInfo& i = dtype_info(t);
  return n / i.block_elems * i.block_bytes;
}

// IEEE half and bfloat16 conversions (scalar; fast paths use F16C/AVX-512 where present).
float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);
inline float bf16_to_fp32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}
uint16_t fp32_to_bf16(float f);  // round to nearest even, NaN stays NaN

}  // namespace vireo
