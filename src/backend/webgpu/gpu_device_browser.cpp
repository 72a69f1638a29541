// gpu::Device over the browser's WebGPU (navigator.gpu), for the Emscripten build. Every call goes to a
// function of web/src/wasm/library_vireo_gpu.js, which keeps the GPU objects in a table and names them by
// integer ids. Two of them wait on promises (pipeline creation and mapping a buffer for reading): the JS glue
// (web/src/wasm/pre.js) turns them into suspending imports with JavaScript Promise Integration, so this code stays
// synchronous. Sizes cross as doubles (exact below 2^53; wasm32 has no 64-bit integers on the JS boundary here).
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/webgpu/gpu_device.h"

extern "C" {
// Fills limits (max storage binding, max buffer, uniform offset alignment) and WGSL language features (bit 0:
// packed_4x8_integer_dot_product); 0 when no device was opened.
int vireo_gpu_open(double* max_binding, double* max_buffer, uint32_t* uniform_alignment, uint32_t* wgsl_features);
int vireo_gpu_adapter_info(char* out, int cap);
uint32_t vireo_gpu_create_buffer(double size, uint32_t usage, const char* label);
void vireo_gpu_write_buffer(uint32_t buf, double offset, const void* data, double bytes);
void vireo_gpu_destroy_buffer(uint32_t buf);
uint32_t vireo_gpu_create_pipeline(const char* wgsl, int wgsl_len, const char* entry);  // suspends
void vireo_gpu_destroy_pipeline(uint32_t pipeline);
// entries: {binding u32, pad u32, buffer u64, offset u64, size u64} x n (gpu::BindEntry).
uint32_t vireo_gpu_create_bind_group(uint32_t pipeline, const void* entries, int n);
void vireo_gpu_destroy_bind_group(uint32_t group);
// cmds: {pipeline u64, group u64, x, y, z, pad u32} x n (gpu::DispatchCmd).
void vireo_gpu_submit(const void* cmds, int n, uint32_t copy_src, uint32_t copy_dst, double copy_bytes);
int vireo_gpu_read(uint32_t buf, void* host, double bytes);  // suspends
int vireo_gpu_take_error(char* out, int cap);
}

namespace vireo::gpu {
namespace {

static_assert(sizeof(BindEntry) == 32 && sizeof(DispatchCmd) == 32, "the JS side reads these layouts");

uint32_t id(Handle h) { return static_cast<uint32_t>(h); }

class BrowserDevice final : public Device {
 public:
  BrowserDevice() {
    double binding = 0, buffer = 0;
    uint32_t align = 256, wgsl_features = 0;
    if (!vireo_gpu_open(&binding, &buffer, &align, &wgsl_features)) {
      check("opening the device");
      throw std::runtime_error("no WebGPU device (navigator.gpu has no adapter here)");
    }
    limits_.max_storage_binding = static_cast<uint64_t>(binding);
    limits_.max_buffer = static_cast<uint64_t>(buffer);
    limits_.uniform_offset_alignment = align;
    limits_.packed_dot = (wgsl_features & 1) != 0;
    limits_.subgroups = (wgsl_features & 2) != 0;
    limits_.shader_f16 = (wgsl_features & 4) != 0;
    limits_.subgroups_enable = true;  // browsers want `enable subgroups;` in WGSL that uses them
    char info[512];
    const int n = vireo_gpu_adapter_info(info, sizeof info);
    limits_.adapter.assign(info, n > 0 ? static_cast<size_t>(n) : 0);
  }

  const Limits& limits() const override { return limits_; }

  Handle create_buffer(uint64_t size, uint32_t usage, const char* label) override {
    const uint64_t padded = (std::max<uint64_t>(size, 4) + 3) & ~uint64_t(3);
    if (padded > limits_.max_buffer)
      throw std::runtime_error(std::string("WebGPU: buffer '") + label + "' of " + std::to_string(padded >> 20) +
                               " MiB exceeds the adapter's largest buffer (" + std::to_string(limits_.max_buffer >> 20) +
                               " MiB)");
    const uint32_t b = vireo_gpu_create_buffer(static_cast<double>(padded), usage, label);
    check(label);
    if (!b) throw std::runtime_error(std::string("WebGPU: out of memory creating '") + label + "'");
    return b;
  }

  // The browser copies written data on the queue's timeline, so the staging copy lives only for this call.
  Handle create_buffer_init(uint64_t size, uint32_t usage, const char* label,
                            const std::function<void(uint8_t*)>& fill) override {
    const Handle b = create_buffer(size, usage | kCopyDst, label);
    staging_.assign((size + 3) & ~uint64_t(3), 0);
    fill(staging_.data());
    vireo_gpu_write_buffer(id(b), 0, staging_.data(), static_cast<double>(staging_.size()));
    std::vector<uint8_t>().swap(staging_);
    check(label);
    return b;
  }

  void write_buffer(Handle buf, uint64_t offset, const void* data, uint64_t bytes) override {
    vireo_gpu_write_buffer(id(buf), static_cast<double>(offset), data, static_cast<double>(bytes));
  }

  void destroy_buffer(Handle buf) override { vireo_gpu_destroy_buffer(id(buf)); }

  Handle create_pipeline(const std::string& wgsl, const char* entry) override {
    const uint32_t p = vireo_gpu_create_pipeline(wgsl.data(), static_cast<int>(wgsl.size()), entry);
    check((std::string("creating the pipeline ") + entry).c_str());
    if (!p) throw std::runtime_error(std::string("WebGPU: cannot create the pipeline ") + entry);
    return p;
  }

  void destroy_pipeline(Handle p) override { vireo_gpu_destroy_pipeline(id(p)); }

  Handle create_bind_group(Handle pipeline, std::span<const BindEntry> entries) override {
    return vireo_gpu_create_bind_group(id(pipeline), entries.data(), static_cast<int>(entries.size()));
  }

  void destroy_bind_group(Handle g) override { vireo_gpu_destroy_bind_group(id(g)); }

  void submit(std::span<const DispatchCmd> cmds, Handle copy_src, Handle copy_dst, uint64_t copy_bytes) override {
    vireo_gpu_submit(cmds.data(), static_cast<int>(cmds.size()), id(copy_src), id(copy_dst),
                     static_cast<double>((copy_bytes + 3) & ~uint64_t(3)));
  }

  void read(Handle buf, void* host, uint64_t bytes) override {
    const bool ok = vireo_gpu_read(id(buf), host, static_cast<double>(bytes)) != 0;
    check("reading results back");
    if (!ok) throw std::runtime_error("WebGPU: mapping the read-back buffer failed");
  }

  void check(const char* what) override {
    char msg[2048];
    const int n = vireo_gpu_take_error(msg, sizeof msg);
    if (n > 0) throw std::runtime_error(std::string("WebGPU error in ") + what + ": " + std::string(msg, n));
  }

 private:
  Limits limits_;
  std::vector<uint8_t> staging_;
};

}  // namespace

std::unique_ptr<Device> open_device() { return std::make_unique<BrowserDevice>(); }

}  // namespace vireo::gpu
