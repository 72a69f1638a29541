// Reference (scalar, readable) quantizers and dequantizers for every supported type.
// These define the numbers; the fast kernels in backend/* are tested against them.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace vireo {

// True when the type can be converted to f32 by dequantize_row.
bool can_dequantize(DType t);
// True when quantize_row_ref can produce the type from f32.
bool can_quantize(DType t);

// n must be a multiple of the type's block size.
void dequantize_row(DType t, const void* src, float* dst, int64_t n);
// Writes row_bytes(t, n) bytes. Deterministic; chooses scales to minimise error like GGUF producers do.
void quantize_row_ref(DType t, const float* src, void* dst, int64_t n);

}  // namespace vireo
