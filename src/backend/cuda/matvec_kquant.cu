// Decode matmul for the k-quants (Q4_K, Q5_K, Q6_K) with int8 activations (dp4a).
#include "backend/cuda/matvec.cuh"

namespace vireo::VIREO_CUDA_NS {

void matvec_kquant(const MatView& w, const ActQ8& a, int n, float* y, int64_t ldy, cudaStream_t s) {
  switch (w.fmt) {
    case WFmt::Q4_K: matvec_dispatch<WFmt::Q4_K>(w, a, n, y, ldy, s); break;
    case WFmt::Q5_K: matvec_dispatch<WFmt::Q5_K>(w, a, n, y, ldy, s); break;
    case WFmt::Q6_K: matvec_dispatch<WFmt::Q6_K>(w, a, n, y, ldy, s); break;
    default: throw std::runtime_error(std::string("CUDA backend: matvec_kquant got ") + wfmt_name(w.fmt));
  }
}

}  // namespace vireo::VIREO_CUDA_NS
