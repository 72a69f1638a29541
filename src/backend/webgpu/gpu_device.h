// The few WebGPU operations the WebGPU backend needs, behind one interface with two implementations:
// gpu_device_native.cpp (wgpu-native's webgpu.h, for `--device webgpu` and the tests) and
// gpu_device_browser.cpp (the browser's navigator.gpu, reached from WASM through web/src/webgpu_bridge.js).
// Objects are named by opaque 64-bit handles (0: none), so the backend's step log is plain data on both.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace vireo::gpu {

using Handle = uint64_t;

enum Usage : uint32_t { kStorage = 1, kUniform = 2, kCopySrc = 4, kCopyDst = 8, kMapRead = 16 };

struct Limits {
  uint64_t max_storage_binding = 0;  // maxStorageBufferBindingSize
  uint64_t max_buffer = 0;           // maxBufferSize
  uint32_t uniform_offset_alignment = 256;
  std::string adapter;               // what the adapter calls itself (vendor, architecture, driver)
  // Optional features, enabled on the device when the adapter has them.
  bool shader_f16 = false;           // "shader-f16": f16 arithmetic and storage in WGSL
  bool subgroups = false;            // "subgroups": subgroup reductions and shuffles in WGSL
  bool subgroups_enable = false;     // WGSL using subgroups must open with `enable subgroups;` (browsers; naga
                                     // rejects the directive and allows the functions without it)
  // WGSL language extension "packed_4x8_integer_dot_product" (dot4I8Packed): part of the language, not a device
  // feature, so it is asked of the implementation (wgpu-native's naga has it; browsers list it in
  // navigator.gpu.wgslLanguageFeatures).
  bool packed_dot = false;
};

struct BindEntry {
  uint32_t binding = 0;
  uint32_t pad = 0;
  Handle buffer = 0;
  uint64_t offset = 0, size = 0;
};

struct DispatchCmd {
  Handle pipeline = 0, bind_group = 0;
  uint32_t x = 1, y = 1, z = 1, pad = 0;
};

class Device {
 public:
  virtual ~Device() = default;
  virtual const Limits& limits() const = 0;

  virtual Handle create_buffer(uint64_t size, uint32_t usage, const char* label) = 0;
  // A buffer whose first `size` bytes `fill` writes before the GPU sees it (weights at load).
  virtual Handle create_buffer_init(uint64_t size, uint32_t usage, const char* label,
                                    const std::function<void(uint8_t*)>& fill) = 0;
  virtual void write_buffer(Handle buf, uint64_t offset, const void* data, uint64_t bytes) = 0;
  virtual void destroy_buffer(Handle buf) = 0;

  // Compiles `wgsl` and creates the compute pipeline of its entry point `entry` (layout from the shader).
  virtual Handle create_pipeline(const std::string& wgsl, const char* entry) = 0;
  virtual void destroy_pipeline(Handle pipeline) = 0;
  virtual Handle create_bind_group(Handle pipeline, std::span<const BindEntry> entries) = 0;
  virtual void destroy_bind_group(Handle group) = 0;

  // Encodes `cmds` into one compute pass, then (when copy_bytes > 0) copies copy_bytes of copy_src into
  // copy_dst, and submits it all as one command buffer.
  virtual void submit(std::span<const DispatchCmd> cmds, Handle copy_src, Handle copy_dst, uint64_t copy_bytes) = 0;
  // Profiling (adapters with timestamp queries): runs each of `cmds` in its own compute pass with GPU
  // timestamps, waits, and returns the GPU seconds of each. Empty when the adapter cannot time passes.
  virtual std::vector<double> submit_timed(std::span<const DispatchCmd> cmds) { (void)cmds; return {}; }
  // Waits for the GPU, maps `buf` (a kMapRead buffer) and copies its first `bytes` to `host`.
  virtual void read(Handle buf, void* host, uint64_t bytes) = 0;
  // Throws std::runtime_error with the first error the implementation reported since the last check.
  virtual void check(const char* what) = 0;
};

// Opens the first high-performance adapter and its device with every limit the adapter offers; throws
// std::runtime_error saying what is missing when there is none.
std::unique_ptr<Device> open_device();

}  // namespace vireo::gpu
