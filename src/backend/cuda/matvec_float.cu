// Decode matmul for float weights (F16, BF16, F32) with f32 activations.
#include "backend/cuda/matvec.cuh"

namespace vireo::VIREO_CUDA_NS {

void matvec_float(const MatView& w, const ActF32& a, int n, float* y, int64_t ldy, cudaStream_t s) {
  switch (w.fmt) {
    case WFmt::F16: matvec_dispatch<WFmt::F16>(w, a, n, y, ldy, s); break;
    case WFmt::BF16: matvec_dispatch<WFmt::BF16>(w, a, n, y, ldy, s); break;
    case WFmt::F32: matvec_dispatch<WFmt::F32>(w, a, n, y, ldy, s); break;
    default: throw std::runtime_error(std::string("CUDA backend: matvec_float got ") + wfmt_name(w.fmt));
  }
}

}  // namespace vireo::VIREO_CUDA_NS
