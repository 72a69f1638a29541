// Placeholder: the avx2 kernels follow; until then the path runs the scalar kernels.
#include "backend/cpu/kernels_internal.h"

namespace vireo::cpu::kern {
const Kernels& avx2_kernels() { return scalar_kernels(); }
}  // namespace vireo::cpu::kern
