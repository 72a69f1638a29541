// Prefill matmul (many tokens): weight slices are dequantized to f16 and multiplied on tensor cores by cuBLAS
// (f16 inputs, f32 accumulation and output). The activations are converted to f16 once per distinct input.
#include "backend/cuda/kernels.h"

namespace vireo::VIREO_CUDA_NS {
namespace {

constexpr int kThreads = 256;

template <WFmt F>
__global__ void __launch_bounds__(kThreads)
    dequant_f16_kernel(MatView w, int64_t row0, int64_t nrows, uint16_t* __restrict__ out) {
  const int64_t per_row = w.Kp / 8;
  const int64_t total = nrows * per_row;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / per_row, c = i % per_row;
    float v[8];
    decode8<F>(w, row0 + r, 8 * c, v);
    uint4 packed;
    packed.x = static_cast<uint32_t>(f2h(v[0])) | static_cast<uint32_t>(f2h(v[1])) << 16;
    packed.y = static_cast<uint32_t>(f2h(v[2])) | static_cast<uint32_t>(f2h(v[3])) << 16;
    packed.z = static_cast<uint32_t>(f2h(v[4])) | static_cast<uint32_t>(f2h(v[5])) << 16;
    packed.w = static_cast<uint32_t>(f2h(v[6])) | static_cast<uint32_t>(f2h(v[7])) << 16;
    st16(out + r * w.Kp + 8 * c, packed);
  }
}

template <WFmt F>
void dequant_go(const MatView& w, int64_t row0, int64_t nrows, uint16_t* out, cudaStream_t s) {
  auto* k = &dequant_f16_kernel<F>;
  const int64_t blocks = std::min<int64_t>(ceil_div(nrows * (w.Kp / 8), kThreads), 8192);
  VLAUNCH(k, dim3(static_cast<unsigned>(std::max<int64_t>(blocks, 1))), dim3(kThreads), 0, s, w, row0, nrows, out);
  VCHECK_LAUNCH("matmul (dequantize weights to f16)");
}

const char* cublas_status_text(cublasStatus_t st) { return cublasGetStatusString(st); }

}  // namespace

void dequant_f16(const MatView& w, int64_t row0, int64_t nrows, uint16_t* out, cudaStream_t s) {
  switch (w.fmt) {
    case WFmt::F32: dequant_go<WFmt::F32>(w, row0, nrows, out, s); break;
    case WFmt::F16: dequant_go<WFmt::F16>(w, row0, nrows, out, s); break;
    case WFmt::BF16: dequant_go<WFmt::BF16>(w, row0, nrows, out, s); break;
    case WFmt::Q8_0: dequant_go<WFmt::Q8_0>(w, row0, nrows, out, s); break;
    case WFmt::Q4_0: dequant_go<WFmt::Q4_0>(w, row0, nrows, out, s); break;
    case WFmt::Q4_K: dequant_go<WFmt::Q4_K>(w, row0, nrows, out, s); break;
    case WFmt::Q5_K: dequant_go<WFmt::Q5_K>(w, row0, nrows, out, s); break;
    case WFmt::Q6_K: dequant_go<WFmt::Q6_K>(w, row0, nrows, out, s); break;
    default: throw std::runtime_error("CUDA backend: dequant_f16: unknown weight layout");
  }
}

void gemm_f16(cublasHandle_t h, const uint16_t* W, int64_t rows, const uint16_t* X, int n, int64_t Kp, float* y,
              int64_t ldy) {
  // Column-major view: C (rows x n, ldc = ldy) = op(A) * B with A = W stored K x rows (lda = Kp), op = T,
  // and B = X stored K x n (ldb = Kp).
  const float alpha = 1.f, beta = 0.f;
  const cublasStatus_t st =
      cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(rows), n, static_cast<int>(Kp), &alpha, W,
                   CUDA_R_16F, static_cast<int>(Kp), X, CUDA_R_16F, static_cast<int>(Kp), &beta, y, CUDA_R_32F,
                   static_cast<int>(ldy), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  if (st != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string("CUDA backend: matmul (cublasGemmEx): ") + cublas_status_text(st));
}

}  // namespace vireo::VIREO_CUDA_NS
