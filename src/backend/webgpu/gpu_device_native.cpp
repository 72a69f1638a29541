// gpu::Device over wgpu-native's webgpu.h (the native `--device webgpu`). Callbacks are collected with
// wgpuInstanceProcessEvents / wgpuDevicePoll; errors reported through them are thrown at the next check().
#include <webgpu.h>
#include <wgpu.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>

#include "backend/webgpu/gpu_device.h"

namespace vireo::gpu {
namespace {

WGPUStringView sv(const char* s) { return {s, WGPU_STRLEN}; }
std::string str(WGPUStringView v) {
  return v.data ? std::string(v.data, v.length == WGPU_STRLEN ? std::strlen(v.data) : v.length) : std::string();
}

WGPUBufferUsage usage_flags(uint32_t u) {
  WGPUBufferUsage f = WGPUBufferUsage_None;
  if (u & kStorage) f |= WGPUBufferUsage_Storage;
  if (u & kUniform) f |= WGPUBufferUsage_Uniform;
  if (u & kCopySrc) f |= WGPUBufferUsage_CopySrc;
  if (u & kCopyDst) f |= WGPUBufferUsage_CopyDst;
  if (u & kMapRead) f |= WGPUBufferUsage_MapRead;
  return f;
}

struct Pipeline {
  WGPUComputePipeline pipeline;
  WGPUBindGroupLayout layout;
};

WGPUBuffer B(Handle h) { return reinterpret_cast<WGPUBuffer>(static_cast<uintptr_t>(h)); }
Handle H(const void* p) { return static_cast<Handle>(reinterpret_cast<uintptr_t>(p)); }

class NativeDevice final : public Device {
 public:
  NativeDevice() {
    instance_ = wgpuCreateInstance(nullptr);
    if (!instance_) throw std::runtime_error("WebGPU: cannot create an instance");
    WGPURequestAdapterOptions opts = {};
    opts.powerPreference = WGPUPowerPreference_HighPerformance;
    WGPURequestAdapterCallbackInfo cb = {};
    cb.mode = WGPUCallbackMode_AllowProcessEvents;
    cb.callback = [](WGPURequestAdapterStatus s, WGPUAdapter a, WGPUStringView msg, void* self, void*) {
      auto* d = static_cast<NativeDevice*>(self);
      if (s == WGPURequestAdapterStatus_Success) d->adapter_ = a;
      else d->error_ = "no WebGPU adapter: " + str(msg);
      d->done_ = true;
    };
    cb.userdata1 = this;
    done_ = false;
    wgpuInstanceRequestAdapter(instance_, &opts, cb);
    wait_done();
    if (!adapter_) throw std::runtime_error(error_.empty() ? "no WebGPU adapter (is a Vulkan driver installed?)" : error_);
    error_.clear();

    WGPUAdapterInfo info = {};
    if (wgpuAdapterGetInfo(adapter_, &info) == WGPUStatus_Success) {
      limits_.adapter = str(info.device) + " (" + str(info.description) + ")";
      wgpuAdapterInfoFreeMembers(info);
    }
    WGPULimits alimits = {};
    wgpuAdapterGetLimits(adapter_, &alimits);
    WGPUDeviceDescriptor dd = {};
    dd.label = sv("vireo");
    // Timestamps, where the adapter has them: only the profiling mode (VIREO_WEBGPU_PROFILE) writes any; and the
    // optional shader features the kernels have variants for.
    // wgpu-native offers subgroups as its own feature (WGPUNativeFeature_Subgroup), not the standard one.
    std::vector<WGPUFeatureName> features;
    for (WGPUFeatureName f : {WGPUFeatureName_TimestampQuery, WGPUFeatureName_ShaderF16, WGPUFeatureName_Subgroups,
                              static_cast<WGPUFeatureName>(WGPUNativeFeature_Subgroup)})
      if (wgpuAdapterHasFeature(adapter_, f)) features.push_back(f);
    dd.requiredFeatureCount = features.size();
    dd.requiredFeatures = features.data();
    WGPULimits want = alimits;  // everything the adapter offers (default limits are much lower)
    want.nextInChain = nullptr;
    dd.requiredLimits = &want;
    dd.uncapturedErrorCallbackInfo.callback = [](const WGPUDevice*, WGPUErrorType, WGPUStringView msg, void* self,
                                                void*) {
      auto* d = static_cast<NativeDevice*>(self);
      std::lock_guard<std::mutex> lock(d->mu_);
      if (d->error_.empty()) d->error_ = str(msg);
    };
    dd.uncapturedErrorCallbackInfo.userdata1 = this;
    dd.deviceLostCallbackInfo.mode = WGPUCallbackMode_AllowProcessEvents;
    dd.deviceLostCallbackInfo.callback = [](const WGPUDevice*, WGPUDeviceLostReason r, WGPUStringView msg,
                                           void* self, void*) {
      auto* d = static_cast<NativeDevice*>(self);
      std::lock_guard<std::mutex> lock(d->mu_);
      if (r != WGPUDeviceLostReason_Destroyed && r != WGPUDeviceLostReason_CallbackCancelled && d->error_.empty())
        d->error_ = "device lost: " + str(msg);
    };
    dd.deviceLostCallbackInfo.userdata1 = this;
    WGPURequestDeviceCallbackInfo dcb = {};
    dcb.mode = WGPUCallbackMode_AllowProcessEvents;
    dcb.callback = [](WGPURequestDeviceStatus s, WGPUDevice dev, WGPUStringView msg, void* self, void*) {
      auto* d = static_cast<NativeDevice*>(self);
      if (s == WGPURequestDeviceStatus_Success) d->device_ = dev;
      else d->error_ = "cannot open the WebGPU device: " + str(msg);
      d->done_ = true;
    };
    dcb.userdata1 = this;
    done_ = false;
    wgpuAdapterRequestDevice(adapter_, &dd, dcb);
    wait_done();
    if (!device_) throw std::runtime_error(error_);
    queue_ = wgpuDeviceGetQueue(device_);
    has_timestamps_ = wgpuDeviceHasFeature(device_, WGPUFeatureName_TimestampQuery);
    limits_.shader_f16 = wgpuDeviceHasFeature(device_, WGPUFeatureName_ShaderF16);
    limits_.subgroups = wgpuDeviceHasFeature(device_, WGPUFeatureName_Subgroups) ||
                        wgpuDeviceHasFeature(device_, static_cast<WGPUFeatureName>(WGPUNativeFeature_Subgroup));
    limits_.packed_dot = true;  // naga translates dot4I8Packed for every backend (SPIR-V: OpSDot or a polyfill)
    // Our kernels are trusted code tested against the CPU reference: natively they are compiled without naga's
    // added bounds checks and loop counters (which cost the decode kernels registers and unrolling).
    // VIREO_WEBGPU_CHECKS=1 keeps them (for hunting an out-of-bounds access).
    const char* checks = std::getenv("VIREO_WEBGPU_CHECKS");
    runtime_checks_ = checks && *checks && std::string(checks) != "0";
    WGPULimits got = {};
    wgpuDeviceGetLimits(device_, &got);
    limits_.max_storage_binding = got.maxStorageBufferBindingSize;
    limits_.max_buffer = got.maxBufferSize;
    limits_.uniform_offset_alignment = got.minUniformBufferOffsetAlignment;
  }

  ~NativeDevice() override {
    if (queries_) wgpuQuerySetRelease(queries_);
    for (WGPUBuffer b : {query_resolve_, query_read_})
      if (b) wgpuBufferRelease(b);
    if (queue_) wgpuQueueRelease(queue_);
    if (device_) {
      wgpuDeviceDestroy(device_);
      wgpuDeviceRelease(device_);
    }
    if (adapter_) wgpuAdapterRelease(adapter_);
    if (instance_) wgpuInstanceRelease(instance_);
  }

  const Limits& limits() const override { return limits_; }

  Handle create_buffer(uint64_t size, uint32_t usage, const char* label) override {
    return H(make_buffer(size, usage, label, false));
  }

  Handle create_buffer_init(uint64_t size, uint32_t usage, const char* label,
                            const std::function<void(uint8_t*)>& fill) override {
    WGPUBuffer b = make_buffer(size, usage, label, true);
    auto* dst = static_cast<uint8_t*>(wgpuBufferGetMappedRange(b, 0, padded(size)));
    if (!dst) throw std::runtime_error(std::string("WebGPU: cannot map the new buffer '") + label + "'");
    std::memset(dst + size, 0, padded(size) - size);
    fill(dst);
    wgpuBufferUnmap(b);
    return H(b);
  }

  void write_buffer(Handle buf, uint64_t offset, const void* data, uint64_t bytes) override {
    wgpuQueueWriteBuffer(queue_, B(buf), offset, data, bytes);
  }

  void destroy_buffer(Handle buf) override {
    wgpuBufferDestroy(B(buf));
    wgpuBufferRelease(B(buf));
  }

  Handle create_pipeline(const std::string& source, const char* entry) override {
    WGPUShaderSourceWGSL wgsl = {};
    wgsl.chain.sType = WGPUSType_ShaderSourceWGSL;
    wgsl.code = {source.data(), source.size()};
    WGPUShaderModuleDescriptor md = {};
    md.nextInChain = &wgsl.chain;
    md.label = sv(entry);
    WGPUShaderModule mod = runtime_checks_ ? wgpuDeviceCreateShaderModule(device_, &md)
                                           : wgpuDeviceCreateShaderModuleTrusted(device_, &md, WGPUShaderRuntimeChecks_None);
    check((std::string("compiling WGSL for ") + entry).c_str());
    WGPUComputePipelineDescriptor pd = {};
    pd.label = sv(entry);
    pd.compute.module = mod;
    pd.compute.entryPoint = sv(entry);
    auto* p = new Pipeline{wgpuDeviceCreateComputePipeline(device_, &pd), nullptr};
    wgpuShaderModuleRelease(mod);
    try {
      check((std::string("creating the pipeline ") + entry).c_str());
    } catch (...) {
      if (p->pipeline) wgpuComputePipelineRelease(p->pipeline);
      delete p;
      throw;
    }
    p->layout = wgpuComputePipelineGetBindGroupLayout(p->pipeline, 0);
    return H(p);
  }

  void destroy_pipeline(Handle h) override {
    auto* p = reinterpret_cast<Pipeline*>(static_cast<uintptr_t>(h));
    wgpuBindGroupLayoutRelease(p->layout);
    wgpuComputePipelineRelease(p->pipeline);
    delete p;
  }

  Handle create_bind_group(Handle pipeline, std::span<const BindEntry> entries) override {
    WGPUBindGroupEntry e[16] = {};
    if (entries.size() > 16) throw std::runtime_error("WebGPU: too many bindings");
    for (size_t j = 0; j < entries.size(); ++j) {
      e[j].binding = entries[j].binding;
      e[j].buffer = B(entries[j].buffer);
      e[j].offset = entries[j].offset;
      e[j].size = entries[j].size;
    }
    WGPUBindGroupDescriptor bd = {};
    bd.layout = reinterpret_cast<Pipeline*>(static_cast<uintptr_t>(pipeline))->layout;
    bd.entryCount = entries.size();
    bd.entries = e;
    return H(wgpuDeviceCreateBindGroup(device_, &bd));
  }

  void destroy_bind_group(Handle g) override {
    wgpuBindGroupRelease(reinterpret_cast<WGPUBindGroup>(static_cast<uintptr_t>(g)));
  }

  void submit(std::span<const DispatchCmd> cmds, Handle copy_src, Handle copy_dst, uint64_t copy_bytes) override {
    WGPUCommandEncoder enc = wgpuDeviceCreateCommandEncoder(device_, nullptr);
    if (!cmds.empty()) {
      WGPUComputePassEncoder pass = wgpuCommandEncoderBeginComputePass(enc, nullptr);
      Handle last = 0;
      for (const DispatchCmd& c : cmds) {
        if (c.pipeline != last) {
          wgpuComputePassEncoderSetPipeline(pass, reinterpret_cast<Pipeline*>(static_cast<uintptr_t>(c.pipeline))->pipeline);
          last = c.pipeline;
        }
        wgpuComputePassEncoderSetBindGroup(pass, 0, reinterpret_cast<WGPUBindGroup>(static_cast<uintptr_t>(c.bind_group)),
                                           0, nullptr);
        wgpuComputePassEncoderDispatchWorkgroups(pass, c.x, c.y, c.z);
      }
      wgpuComputePassEncoderEnd(pass);
      wgpuComputePassEncoderRelease(pass);
    }
    if (copy_bytes) wgpuCommandEncoderCopyBufferToBuffer(enc, B(copy_src), 0, B(copy_dst), 0, padded(copy_bytes));
    WGPUCommandBuffer cmd = wgpuCommandEncoderFinish(enc, nullptr);
    wgpuQueueSubmit(queue_, 1, &cmd);
    wgpuCommandBufferRelease(cmd);
    wgpuCommandEncoderRelease(enc);
  }

  std::vector<double> submit_timed(std::span<const DispatchCmd> cmds) override {
    if (!has_timestamps_ || cmds.empty()) return {};
    const uint32_t n = static_cast<uint32_t>(cmds.size());
    if (query_count_ < 2 * n) {
      if (queries_) wgpuQuerySetRelease(queries_);
      for (WGPUBuffer* b : {&query_resolve_, &query_read_})
        if (*b) wgpuBufferRelease(*b), *b = nullptr;
      WGPUQuerySetDescriptor qd = {};
      qd.type = WGPUQueryType_Timestamp;
      qd.count = 2 * n;
      queries_ = wgpuDeviceCreateQuerySet(device_, &qd);
      query_resolve_ = make_buffer(16ull * n, 0, "timestamps", false, WGPUBufferUsage_QueryResolve | WGPUBufferUsage_CopySrc);
      query_read_ = make_buffer(16ull * n, kMapRead | kCopyDst, "timestamps read-back", false);
      query_count_ = 2 * n;
    }
    WGPUCommandEncoder enc = wgpuDeviceCreateCommandEncoder(device_, nullptr);
    for (uint32_t i = 0; i < n; ++i) {
      WGPUPassTimestampWrites tw = {};
      tw.querySet = queries_;
      tw.beginningOfPassWriteIndex = 2 * i;
      tw.endOfPassWriteIndex = 2 * i + 1;
      WGPUComputePassDescriptor pd = {};
      pd.timestampWrites = &tw;
      WGPUComputePassEncoder pass = wgpuCommandEncoderBeginComputePass(enc, &pd);
      wgpuComputePassEncoderSetPipeline(pass, reinterpret_cast<Pipeline*>(static_cast<uintptr_t>(cmds[i].pipeline))->pipeline);
      wgpuComputePassEncoderSetBindGroup(pass, 0, reinterpret_cast<WGPUBindGroup>(static_cast<uintptr_t>(cmds[i].bind_group)),
                                         0, nullptr);
      wgpuComputePassEncoderDispatchWorkgroups(pass, cmds[i].x, cmds[i].y, cmds[i].z);
      wgpuComputePassEncoderEnd(pass);
      wgpuComputePassEncoderRelease(pass);
    }
    wgpuCommandEncoderResolveQuerySet(enc, queries_, 0, 2 * n, query_resolve_, 0);
    wgpuCommandEncoderCopyBufferToBuffer(enc, query_resolve_, 0, query_read_, 0, 16ull * n);
    WGPUCommandBuffer cmd = wgpuCommandEncoderFinish(enc, nullptr);
    wgpuQueueSubmit(queue_, 1, &cmd);
    wgpuCommandBufferRelease(cmd);
    wgpuCommandEncoderRelease(enc);
    std::vector<uint64_t> ticks(2 * n);
    read(H(query_read_), ticks.data(), 16ull * n);
    std::vector<double> seconds(n);
    for (uint32_t i = 0; i < n; ++i)  // WebGPU timestamps are nanoseconds
      seconds[i] = ticks[2 * i + 1] > ticks[2 * i] ? double(ticks[2 * i + 1] - ticks[2 * i]) * 1e-9 : 0.0;
    return seconds;
  }

  void read(Handle h, void* host, uint64_t bytes) override {
    WGPUBuffer buf = B(h);
    WGPUBufferMapCallbackInfo cb = {};
    cb.mode = WGPUCallbackMode_AllowProcessEvents;
    cb.callback = [](WGPUMapAsyncStatus s, WGPUStringView msg, void* self, void*) {
      auto* d = static_cast<NativeDevice*>(self);
      if (s != WGPUMapAsyncStatus_Success) {
        std::lock_guard<std::mutex> lock(d->mu_);
        if (d->error_.empty()) d->error_ = "reading back: " + str(msg);
      }
      d->done_ = true;
    };
    cb.userdata1 = this;
    done_ = false;
    wgpuBufferMapAsync(buf, WGPUMapMode_Read, 0, padded(bytes), cb);
    wait_done();
    check("reading results back");
    const void* p = wgpuBufferGetConstMappedRange(buf, 0, padded(bytes));
    if (!p) throw std::runtime_error("WebGPU: cannot map the read-back buffer");
    std::memcpy(host, p, bytes);
    wgpuBufferUnmap(buf);
  }

  void check(const char* what) override {
    std::string e;
    {
      std::lock_guard<std::mutex> lock(mu_);
      e.swap(error_);
    }
    if (!e.empty()) throw std::runtime_error(std::string("WebGPU error in ") + what + ": " + e);
  }

 private:
  static uint64_t padded(uint64_t bytes) { return (bytes + 3) & ~uint64_t(3); }

  void wait_done() {
    const auto t0 = std::chrono::steady_clock::now();
    while (!done_) {
      wgpuInstanceProcessEvents(instance_);
      if (device_) wgpuDevicePoll(device_, true, nullptr);
      if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(120))
        throw std::runtime_error("WebGPU: timed out waiting for the device");
    }
  }

  WGPUBuffer make_buffer(uint64_t size, uint32_t usage, const char* label, bool mapped,
                         WGPUBufferUsage extra = WGPUBufferUsage_None) {
    WGPUBufferDescriptor d = {};
    d.label = sv(label);
    d.size = padded(std::max<uint64_t>(size, 4));
    d.usage = usage_flags(usage) | extra;
    d.mappedAtCreation = mapped;
    if (d.size > limits_.max_buffer)
      throw std::runtime_error(std::string("WebGPU: buffer '") + label + "' of " + std::to_string(d.size >> 20) +
                               " MiB exceeds the adapter's largest buffer (" + std::to_string(limits_.max_buffer >> 20) +
                               " MiB)");
    WGPUBuffer b = wgpuDeviceCreateBuffer(device_, &d);
    check(label);
    if (!b) throw std::runtime_error(std::string("WebGPU: out of memory creating '") + label + "'");
    return b;
  }

  WGPUInstance instance_ = nullptr;
  WGPUAdapter adapter_ = nullptr;
  WGPUDevice device_ = nullptr;
  WGPUQueue queue_ = nullptr;
  Limits limits_;
  bool has_timestamps_ = false;
  bool runtime_checks_ = false;  // naga's bounds checks and loop counters in our shaders (VIREO_WEBGPU_CHECKS)
  WGPUQuerySet queries_ = nullptr;
  WGPUBuffer query_resolve_ = nullptr, query_read_ = nullptr;
  uint32_t query_count_ = 0;
  std::mutex mu_;
  std::string error_;
  volatile bool done_ = false;
};

}  // namespace

std::unique_ptr<Device> open_device() { return std::make_unique<NativeDevice>(); }

}  // namespace vireo::gpu
