// Decode matmul for the 32-element block types (Q8_0, Q4_0) with int8 activations (dp4a).
#include "backend/cuda/matvec.cuh"

namespace vireo::VIREO_CUDA_NS {

void matvec_q32(const MatView& w, const ActQ8& a, int n, float* y, int64_t ldy, cudaStream_t s) {
  switch (w.fmt) {
    case WFmt::Q8_0: matvec_dispatch<WFmt::Q8_0>(w, a, n, y, ldy, s); break;
    case WFmt::Q4_0: matvec_dispatch<WFmt::Q4_0>(w, a, n, y, ldy, s); break;
    default: throw std::runtime_error(std::string("CUDA backend: matvec_q32 got ") + wfmt_name(w.fmt));
  }
}

}  // namespace vireo::VIREO_CUDA_NS
