// A CPU stand-in for the small part of the CUDA runtime and cuBLAS that the CUDA backend uses, so that the
// backend's own source (host code and kernels alike) can be compiled by the host compiler and run in tests on
// machines without a GPU. Not a general emulator: it implements what src/backend/cuda uses and checks what it can.
//
// Kernels run block by block; the threads of a block are cooperative fibers, so __syncthreads and warp shuffles
// have their real meaning (a shuffle waits for the 32 lanes of its warp). "Device memory" is host memory from an
// aligned allocator; streams run work at once, except while capturing, when work is recorded into a graph that
// cudaGraphLaunch replays. cublasGemmEx is computed on the host from the documented column-major definition.
//
// The implementation lives in tests/gpu/emu/emu_runtime.cpp (only the emulation test build links it).
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>

// ---- CUDA vector types and launch geometry ----
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(8) float2 { float x, y; };
inline float2 make_float2(float a, float b) { return {a, b}; }
inline uint2 make_uint2(unsigned a, unsigned b) { return {a, b}; }
inline float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }
inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return {a, b, c, d}; }

namespace emu {
struct StreamImpl;
struct GraphImpl;
struct EventImpl;
struct CublasImpl;

const dim3& thread_idx();
const dim3& block_idx();
const dim3& block_dim();
const dim3& grid_dim();
void syncthreads();
uint32_t shfl_xor_bits(uint32_t v, int lane_mask);
// Every lane of the warp gets the 32 lanes' values (all[i] = lane i's v): the emulator's mma.sync is built on it.
void warp_gather_bits(uint32_t v, uint32_t* all);
void* shared_static(size_t bytes, size_t align);
void* shared_dynamic();
void check_aligned(const void* p, size_t align);
[[noreturn]] void fatal(const char* msg);
// Runs body once per thread of every block of the grid (or records it when the stream is capturing).
void launch(dim3 grid, dim3 block, size_t dyn_smem, StreamImpl* stream, std::function<void()> body);

template <class T>
T shfl_xor(T v, int lane_mask) {
  static_assert(sizeof(T) == 4, "32-bit shuffles only");
  uint32_t b;
  std::memcpy(&b, &v, 4);
  b = shfl_xor_bits(b, lane_mask);
  T r;
  std::memcpy(&r, &b, 4);
  return r;
}
}  // namespace emu

#define threadIdx (::emu::thread_idx())
#define blockIdx (::emu::block_idx())
#define blockDim (::emu::block_dim())
#define gridDim (::emu::grid_dim())
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __grid_constant__
#define __align__(n) alignas(n)
inline void __syncthreads() { ::emu::syncthreads(); }
template <class T>
inline T __shfl_xor_sync(unsigned /*mask*/, T v, int lane_mask) {
  return ::emu::shfl_xor(v, lane_mask);
}
// Blocks run one after another and a block's threads are fibers on one core: atomics are plain read-modify-writes
// and fences have nothing to order.
inline int atomicAdd(int* p, int v) {
  const int old = *p;
  *p = old + v;
  return old;
}
inline void __threadfence() {}
inline void __syncwarp() { (void)::emu::shfl_xor_bits(0u, 0); }

// ---- f16 storage and warp matrix operations (nvcuda::wmma, 16x16x16 tiles) ----
// __half is only a 16-bit storage type here (the kernels convert with h2f/f2h). A WMMA fragment holds its whole
// tile in every lane (real hardware spreads it over the lanes in an unspecified layout, which kernels must not
// rely on); every operation starts at a warp barrier, as the real ones are warp-collective. Pointers must be
// 32-byte aligned and leading dimensions multiples of 16 bytes, as on the GPU.
struct __half {
  uint16_t bits;
};
namespace emu {
float half_to_float(uint16_t h);
}  // namespace emu
namespace nvcuda::wmma {
struct row_major {};
struct col_major {};
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
enum layout_t { mem_row_major, mem_col_major };
template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static_assert(M == 16 && N == 16 && K == 16, "the emulator has 16x16x16 tiles only");
  static constexpr int num_elements = 256;
  float x[256];  // [row][col] of the tile (A: M x K, B: K x N, accumulator: M x N)
};
namespace detail {
inline void enter(const void* p, unsigned ld, size_t elem) {
  ::emu::shfl_xor_bits(0u, 0);  // warp barrier
  ::emu::check_aligned(p, 32);
  if ((ld * elem) % 16 != 0) ::emu::fatal("wmma: leading dimension not a multiple of 16 bytes");
}
inline bool row_layout(row_major) { return true; }
inline bool row_layout(col_major) { return false; }
}  // namespace detail
template <class Use, class Layout>
void load_matrix_sync(fragment<Use, 16, 16, 16, __half, Layout>& f, const __half* p, unsigned ld) {
  detail::enter(p, ld, 2);
  const bool row = detail::row_layout(Layout{});
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) f.x[r * 16 + c] = ::emu::half_to_float((row ? p[r * ld + c] : p[c * ld + r]).bits);
}
inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float>& f, const float* p, unsigned ld, layout_t l) {
  detail::enter(p, ld, 4);
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) f.x[r * 16 + c] = l == mem_row_major ? p[r * ld + c] : p[c * ld + r];
}
inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& f, unsigned ld, layout_t l) {
  detail::enter(p, ld, 4);
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) (l == mem_row_major ? p[r * ld + c] : p[c * ld + r]) = f.x[r * 16 + c];
}
template <class Use, class T, class Layout>
void fill_fragment(fragment<Use, 16, 16, 16, T, Layout>& f, float v) {
  ::emu::shfl_xor_bits(0u, 0);
  for (float& e : f.x) e = v;
}
template <class LA, class LB>
void mma_sync(fragment<accumulator, 16, 16, 16, float>& d, const fragment<matrix_a, 16, 16, 16, __half, LA>& a,
              const fragment<matrix_b, 16, 16, 16, __half, LB>& b, const fragment<accumulator, 16, 16, 16, float>& c) {
  ::emu::shfl_xor_bits(0u, 0);
  float out[256];
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 16; ++n) {
      float acc = c.x[m * 16 + n];
      for (int k = 0; k < 16; ++k) acc += a.x[m * 16 + k] * b.x[k * 16 + n];
      out[m * 16 + n] = acc;
    }
  for (int i = 0; i < 256; ++i) d.x[i] = out[i];
}
}  // namespace nvcuda::wmma

// ---- runtime API subset ----
typedef int cudaError_t;
enum : int {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorNoDevice = 100,
  cudaErrorStreamCaptureInvalidated = 901,
};
typedef emu::StreamImpl* cudaStream_t;
typedef emu::GraphImpl* cudaGraph_t;
typedef emu::GraphImpl* cudaGraphExec_t;
typedef emu::EventImpl* cudaEvent_t;  // records the host clock when the stream reaches it
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4
};
enum cudaStreamCaptureMode {
  cudaStreamCaptureModeGlobal = 0,
  cudaStreamCaptureModeThreadLocal = 1,
  cudaStreamCaptureModeRelaxed = 2
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
constexpr unsigned cudaStreamNonBlocking = 1;
struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  int multiProcessorCount;
  int major, minor;
  size_t sharedMemPerBlockOptin;
  int memoryBusWidth;
};

cudaError_t cudaGetDeviceCount(int* n);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDevice(int* d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d);
cudaError_t cudaMalloc(void** p, size_t bytes);
cudaError_t cudaFree(void* p);
cudaError_t cudaMallocHost(void** p, size_t bytes);
cudaError_t cudaFreeHost(void* p);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s);
cudaError_t cudaMemset(void* dst, int v, size_t bytes);
cudaError_t cudaMemsetAsync(void* dst, int v, size_t bytes, cudaStream_t s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaGetLastError();
const char* cudaGetErrorString(cudaError_t e);
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* g);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* e, cudaGraph_t g, unsigned long long flags);
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s);
cudaError_t cudaGraphDestroy(cudaGraph_t g);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e);
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);
cudaError_t cudaEventCreate(cudaEvent_t* e);
constexpr unsigned cudaEventDisableTiming = 2;
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags);
cudaError_t cudaEventSynchronize(cudaEvent_t e);  // work runs as it is enqueued: nothing to wait for
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);
template <class F>
cudaError_t cudaFuncSetAttribute(F, cudaFuncAttribute, int) {
  return cudaSuccess;
}

// ---- cuBLAS subset ----
typedef emu::CublasImpl* cublasHandle_t;
typedef int cublasStatus_t;
enum : int { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_INVALID_VALUE = 7, CUBLAS_STATUS_NOT_SUPPORTED = 15 };
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUDA_R_32F = 0, CUDA_R_16F = 2, CUDA_R_16BF = 14 } cudaDataType;
typedef enum { CUBLAS_COMPUTE_32F = 68 } cublasComputeType_t;
typedef enum { CUBLAS_GEMM_DEFAULT = -1 } cublasGemmAlgo_t;
cublasStatus_t cublasCreate(cublasHandle_t* h);
cublasStatus_t cublasDestroy(cublasHandle_t h);
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s);
cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void* ws, size_t bytes);
const char* cublasGetStatusString(cublasStatus_t s);
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void* alpha, const void* A, cudaDataType at, int lda, const void* B,
                            cudaDataType bt, int ldb, const void* beta, void* C, cudaDataType ct, int ldc,
                            cublasComputeType_t compute, cublasGemmAlgo_t algo);

namespace emu {
// Counters for tests of the emulator itself.
struct Stats {
  long long launches = 0, blocks = 0, graph_launches = 0, bytes_allocated = 0;
};
Stats stats();
}  // namespace emu
