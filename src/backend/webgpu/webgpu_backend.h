// The WebGPU backend: the Llama-family ops as WGSL compute shaders (src/backend/webgpu/wgsl), run natively
// through wgpu-native (built when CMake finds it; see CMakeLists.txt). A step is recorded as a list of
// dispatches and submitted once, with one command buffer; the dispatch list (bind groups, parameters) is built
// the first time a step shape is seen and reused after that.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "runtime/backend.h"

namespace vireo {

struct WebGpuOptions {
  // Largest storage-buffer binding to use (0: the adapter's limit). Weights larger than this are split into
  // row chunks; tests lower it to exercise the split.
  uint64_t max_binding_bytes = 0;
  // Called after each compute pipeline is created at load (done, total): every pipeline is compiled up front,
  // none on first use, so a progress bar can cover it.
  std::function<void(int64_t done, int64_t total)> on_compile;
  // One-token Q4_K / Q6_K products over int8 activations (wgsl/matvec_int8.wgsl) where the WGSL implementation
  // has packed 4x8-bit dot products; false (or VIREO_WEBGPU_INT8=0) keeps the f32-activation kernels.
  bool int8_decode = true;
  // Prefill products in f16 arithmetic (wgsl/matmul_f16.wgsl) where the adapter has "shader-f16"; false (or
  // VIREO_WEBGPU_F16=0) keeps them in f32.
  bool f16_matmul = true;
};

// True when a WebGPU adapter can be opened; otherwise `why` says what is missing.
bool webgpu_available(std::string* why);
// Opens the adapter and device; throws std::runtime_error saying what is missing when there is none.
std::unique_ptr<Backend> make_webgpu_backend(const WebGpuOptions& opts = {});

// For tests: activation contents in and out (outside a step), and counters.
namespace webgpu_testing {
void write_act(Backend& be, Act a, const std::vector<float>& v);
std::vector<float> read_act(Backend& be, Act a, int64_t rows);
int64_t submits(Backend& be);  // queue submits of steps so far
size_t plans(Backend& be);     // step shapes seen (cached dispatch lists)
// Whether products of more than 8 tokens of weights of type t run in the f16 tiles (shader-f16 present, not
// turned off, and the type's prefill tiled).
bool prefill_in_f16(Backend& be, DType t);
}  // namespace webgpu_testing

}  // namespace vireo
