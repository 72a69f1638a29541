// Placeholder: the avx512 kernels follow; until then the path runs the scalar kernels.
#include "backend/cpu/kernels_internal.h"

namespace vireo::cpu::kern {
const Kernels& avx512_kernels() { return scalar_kernels(); }
}  // namespace vireo::cpu::kern
