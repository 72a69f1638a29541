// The CUDA backend: weights resident on one NVIDIA GPU, every op a kernel launch on one stream, a whole step
// replayed as a CUDA graph once its shape (token count, logit rows) has been seen.
//
// This header is plain C++ (no CUDA types), so the engine can include it; it exists in builds where
// VIREO_HAVE_CUDA is defined (CMake finds nvcc).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "runtime/backend.h"

namespace vireo {

struct CudaOptions {
  // Tokens per matmul up to which the quantized matrix-vector kernels run; above it, weights are dequantized to
  // f16 tiles and multiplied on tensor cores (cuBLAS).
  int matvec_max_tokens = 8;
  // f16 scratch for one dequantized weight slice of the prefill path (elements); larger matrices go in slices.
  int64_t gemm_scratch_elems = int64_t(64) << 20;
  // CUDA graphs: 0 = never (every op launches eagerly), 1 = capture a step shape on first use (shapes of up to
  // graph_first_use_max_tokens tokens) or second use (larger ones), replay after.
  int graphs = 1;
  int graph_first_use_max_tokens = 16;
  int max_graphs = 64;
  // Synchronize after every op and report the op that failed (debugging; disables graphs).
  bool sync_each_op = false;
  // Reads VIREO_CUDA_GRAPHS=0/1 and VIREO_CUDA_SYNC=1 from the environment over the defaults.
  static CudaOptions from_env();
};

// True when a CUDA device can be used; otherwise `why` (if given) says what is missing.
bool cuda_available(std::string* why = nullptr);

// A backend on device `device_index` (0-based). Throws std::runtime_error when the device cannot be used.
std::unique_ptr<Backend> make_cuda_backend(int device_index);
std::unique_ptr<Backend> make_cuda_backend(int device_index, const CudaOptions& opts);

// Extra entry points of CUDA backends for tests and benchmarks (Act::data of such a backend is device memory).
// Every backend returned by make_cuda_backend implements it: dynamic_cast<CudaBackendExt*>(backend).
class CudaBackendExt {
 public:
  virtual ~CudaBackendExt() = default;
  virtual void copy_to_device(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy_to_host(void* dst, const void* src, size_t bytes) = 0;
  virtual void fill_bytes(void* dst, int byte, size_t bytes) = 0;  // e.g. 0xff: every f32 becomes NaN
  virtual void synchronize() = 0;
  struct GraphStats {
    int64_t captures = 0, replays = 0, eager_steps = 0, recaptures = 0;
  };
  virtual GraphStats graph_stats() const = 0;
  virtual std::string device_name() const = 0;
};

}  // namespace vireo
