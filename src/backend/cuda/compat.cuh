// What every file of the CUDA backend includes: the CUDA headers (or, in the CPU emulation build used by the tests
// on machines without a GPU, the emulator that stands in for them), error checks, and small device helpers that
// also compile as host code (so the emulator runs the very same kernel source).
//
// Conventions for kernel source, so it builds both ways:
//  - launch with VLAUNCH(fn, grid, block, smem, stream, args...) where fn is a plain name (take a template
//    instance's address first: `auto* k = &kern<A, B>;`);
//  - shared memory through VSHARED(T, name, count) and VDYN_SHARED(T, name);
//  - 16/8-byte global loads through ld16/ld8 (checked for alignment in the emulator);
//  - f16/bf16 values are kept as raw uint16_t bits and converted with h2f/f2h/bf2f.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "core/dtype.h"

#if defined(VIREO_CUDA_EMU)
#include "backend/cuda/emu/emu_runtime.h"
#define VIREO_CUDA_NS cuda_emu
#define VLAUNCH(kernel, grid, block, smem, stream, ...) \
  ::emu::launch((grid), (block), (smem), (stream), [=]() { kernel(__VA_ARGS__); })
#define VSHARED(T, name, count) T* name = static_cast<T*>(::emu::shared_static(sizeof(T) * (count), alignof(T)))
#define VSHARED_ALIGNED(T, name, count, align) \
  T* name = static_cast<T*>(::emu::shared_static(sizeof(T) * (count), (align)))
#define VDYN_SHARED(T, name) T* name = static_cast<T*>(::emu::shared_dynamic())
// Programmatic dependent launch does not exist in the emulator: streams run work in order anyway.
#define VLAUNCH_PDL(kernel, grid, block, smem, stream, ...) \
  ::emu::launch((grid), (block), (smem), (stream), [=]() { kernel(__VA_ARGS__); })
#else
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#define VIREO_CUDA_NS cuda
#define VLAUNCH(kernel, grid, block, smem, stream, ...) kernel<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__)
#define VSHARED(T, name, count) __shared__ T name[count]
#define VSHARED_ALIGNED(T, name, count, align) __shared__ __align__(align) T name[count]
#define VDYN_SHARED(T, name)                                       \
  extern __shared__ __align__(16) unsigned char vireo_dyn_smem[]; \
  T* name = reinterpret_cast<T*>(vireo_dyn_smem)
// Launch with programmatic dependent launch allowed (Hopper+, when pdl_enabled()): the kernel may start while the
// previous kernel of the stream is still running; it must call pdl_wait() before it reads anything that kernel
// wrote (or writes anything the previous kernel reads), and it calls pdl_trigger() to let the next kernel start
// early in turn. Work before pdl_wait() may only read memory no kernel of the step writes (weights, step values).
// pdl_trigger() comes after pdl_wait(): at most two kernels overlap (the running one and the next, which streams
// its weights), and a kernel never starts before the one two back has finished, so nothing it reads can sit stale
// in an L1 cache filled by an older kernel.
#define VLAUNCH_PDL(kern_, grid_, block_, smem_, stream_, ...)                                   \
  do {                                                                                        \
    cudaLaunchConfig_t vireo_cfg_ = {};                                                       \
    vireo_cfg_.gridDim = (grid_);                                                              \
    vireo_cfg_.blockDim = (block_);                                                            \
    vireo_cfg_.dynamicSmemBytes = (smem_);                                                     \
    vireo_cfg_.stream = (stream_);                                                             \
    cudaLaunchAttribute vireo_attr_[1];                                                       \
    vireo_attr_[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;                   \
    vireo_attr_[0].val.programmaticStreamSerializationAllowed = 1;                            \
    vireo_cfg_.attrs = vireo_attr_;                                                           \
    vireo_cfg_.numAttrs = ::vireo::VIREO_CUDA_NS::pdl_enabled() ? 1 : 0;                      \
    VCUDA(cudaLaunchKernelEx(&vireo_cfg_, kern_, __VA_ARGS__), "kernel launch");            \
  } while (0)
#endif

#define VHD __host__ __device__ __forceinline__
#if defined(__CUDACC__)
#define VUNROLL _Pragma("unroll")
#else
#define VUNROLL
#endif
#define VDEV __device__ __forceinline__

namespace vireo::VIREO_CUDA_NS {

// Programmatic dependent launch on (process-wide switch, set by the backend from the device and its options).
bool pdl_enabled();
void set_pdl_enabled(bool on);

// ---- errors: every CUDA call and launch is checked; the message names the op ----
[[noreturn]] inline void cuda_fail(const char* what, const char* err, const char* file, int line) {
  throw std::runtime_error(std::string("CUDA backend: ") + what + ": " + err + " (" + file + ":" +
                           std::to_string(line) + ")");
}
#define VCUDA(call, what)                                                                 \
  do {                                                                                    \
    const cudaError_t vireo_e_ = (call);                                                  \
    if (vireo_e_ != cudaSuccess) cuda_fail((what), cudaGetErrorString(vireo_e_), __FILE__, __LINE__); \
  } while (0)
// After a launch: configuration errors show at once; faults inside kernels show at the next synchronization.
#define VCHECK_LAUNCH(what) VCUDA(cudaGetLastError(), (what))

// ---- portable device helpers ----
// A read-only global load of a T at p (aligned to sizeof(T): checked in the emulator), through the texture path.
template <class T>
VHD T ld_ro(const void* p) {
#if defined(__CUDA_ARCH__)
  return __ldg(reinterpret_cast<const T*>(p));
#else
#if defined(VIREO_CUDA_EMU)
  ::emu::check_aligned(p, sizeof(T));
#endif
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
#endif
}
VHD uint4 ld16(const void* p) { return ld_ro<uint4>(p); }
// Activations: a plain (coherent, L1-cached) load, not the read-only path, because a chained matvec launch
// (mv_chain_launch) reads activations that earlier blocks of the same grid wrote.
VHD int4 ld16i_act(const void* p) {
#if defined(__CUDA_ARCH__)
  return *reinterpret_cast<const int4*>(p);
#else
  return ld_ro<int4>(p);
#endif
}
VHD int4 ld16i(const void* p) { return ld_ro<int4>(p); }
VHD float4 ld16f(const void* p) { return ld_ro<float4>(p); }
VHD uint2 ld8(const void* p) { return ld_ro<uint2>(p); }
VHD uint32_t ld4(const void* p) { return ld_ro<unsigned int>(p); }

VHD void st16(void* p, uint4 v) {
#if defined(__CUDA_ARCH__)
  *reinterpret_cast<uint4*>(p) = v;
#else
#if defined(VIREO_CUDA_EMU)
  ::emu::check_aligned(p, 16);
#endif
  std::memcpy(p, &v, 16);
#endif
}

// ---- two f16 values packed in 32 bits (low half = first), for dequantizing straight to f16 pairs ----
// byte_perm: result byte i = byte (s >> 4i) & 7 of the 8 bytes {x, y} (CUDA's __byte_perm, without its sign modes).
VHD uint32_t byte_perm(uint32_t x, uint32_t y, uint32_t s) {
#if defined(__CUDA_ARCH__)
  return __byte_perm(x, y, s);
#else
  const uint64_t xy = static_cast<uint64_t>(y) << 32 | x;
  uint32_t r = 0;
  for (int i = 0; i < 4; ++i) r |= static_cast<uint32_t>((xy >> (8 * ((s >> (4 * i)) & 7))) & 0xff) << (8 * i);
  return r;
#endif
}
#if !defined(__CUDA_ARCH__)
namespace f16x2_detail {
inline double lo(uint32_t a) { return vireo::fp16_to_fp32(static_cast<uint16_t>(a & 0xffff)); }
inline double hi(uint32_t a) { return vireo::fp16_to_fp32(static_cast<uint16_t>(a >> 16)); }
inline uint32_t pack(double l, double h) {  // one rounding to f16 (through float: exact for these operands)
  return static_cast<uint32_t>(vireo::fp32_to_fp16(static_cast<float>(l))) |
         static_cast<uint32_t>(vireo::fp32_to_fp16(static_cast<float>(h))) << 16;
}
}  // namespace f16x2_detail
#endif
VHD uint32_t hsub2_bits(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
  uint32_t r;
  asm("sub.rn.f16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
  return r;
#else
  using namespace f16x2_detail;
  return pack(lo(a) - lo(b), hi(a) - hi(b));
#endif
}
VHD uint32_t hmul2_bits(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
  uint32_t r;
  asm("mul.rn.f16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
  return r;
#else
  using namespace f16x2_detail;
  return pack(lo(a) * lo(b), hi(a) * hi(b));
#endif
}
VHD uint32_t hfma2_bits(uint32_t a, uint32_t b, uint32_t c) {
#if defined(__CUDA_ARCH__)
  uint32_t r;
  asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
  return r;
#else
  using namespace f16x2_detail;
  return pack(lo(a) * lo(b) + lo(c), hi(a) * hi(b) + hi(c));
#endif
}

VHD float h2f(uint16_t h) {
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(h));
#else
  return vireo::fp16_to_fp32(h);
#endif
}

VHD uint16_t f2h(float f) {
#if defined(__CUDA_ARCH__)
  return __half_as_ushort(__float2half_rn(f));
#else
  return vireo::fp32_to_fp16(f);
#endif
}

VHD float bf2f(uint16_t h) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(static_cast<uint32_t>(h) << 16);
#else
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

// Sum of the four signed byte products of a and b, plus c.
VHD int dp4a(int a, int b, int c) {
#if defined(__CUDA_ARCH__)
  return __dp4a(a, b, c);
#else
  for (int i = 0; i < 4; ++i)
    c += static_cast<int>(static_cast<int8_t>(a >> (8 * i))) * static_cast<int>(static_cast<int8_t>(b >> (8 * i)));
  return c;
#endif
}

// Per-byte a - b, modulo 256 (no borrow between bytes).
VHD uint32_t vsub4(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __vsub4(a, b);
#else
  uint32_t r = 0;
  for (int i = 0; i < 4; ++i) r |= ((((a >> (8 * i)) & 0xffu) - ((b >> (8 * i)) & 0xffu)) & 0xffu) << (8 * i);
  return r;
#endif
}

VHD int round_to_int(float x) {
#if defined(__CUDA_ARCH__)
  return __float2int_rn(x);
#else
  return static_cast<int>(std::nearbyint(x));
#endif
}

VHD void sin_cos(float x, float* s, float* c) {
#if defined(__CUDA_ARCH__)
  sincosf(x, s, c);
#else
  *s = std::sin(x);
  *c = std::cos(x);
#endif
}

// Butterfly reductions over the 32 lanes of a warp (every lane must take part).
VDEV float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
VDEV int warp_sum_int(int v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
VDEV float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

VHD int imin(int a, int b) { return a < b ? a : b; }
VHD int imax(int a, int b) { return a > b ? a : b; }

// ---- programmatic dependent launch (no-ops where it does not exist; see VLAUNCH_PDL) ----
VDEV void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
VDEV void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

// A flag between blocks of one grid: an acquire load (later loads of this thread, and of its block after a barrier,
// see what the releasing thread wrote before; it also drops stale L1 lines) and a release store.
VDEV int ld_acquire(const int* p) {
#if defined(__CUDA_ARCH__)
  int v;
  asm volatile("ld.acquire.gpu.global.s32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
#else
  return *p;
#endif
}
VDEV void st_release(int* p, int v) {
#if defined(__CUDA_ARCH__)
  asm volatile("st.release.gpu.global.s32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
#else
  *p = v;
#endif
}
// A block barrier that warps may reach from different places in the code (__syncthreads is bar.sync, which requires
// every warp to execute the same instruction; barrier.sync without .aligned does not).
VDEV void block_barrier_any() {
#if defined(__CUDA_ARCH__)
  asm volatile("barrier.sync 0;" ::: "memory");
#else
  __syncthreads();
#endif
}
VDEV void sleep_ns(unsigned ns) {
#if defined(__CUDA_ARCH__)
  __nanosleep(ns);
#else
  (void)ns;
#endif
}

// A load that bypasses L1 (data written by other blocks of the same grid, after a fence and an atomic).
VDEV float ld_cg(const float* p) {
#if defined(__CUDA_ARCH__)
  return __ldcg(p);
#else
  return *p;
#endif
}

VDEV float4 ld_cg4(const float* p) {
#if defined(__CUDA_ARCH__)
  return __ldcg(reinterpret_cast<const float4*>(p));
#else
#if defined(VIREO_CUDA_EMU)
  ::emu::check_aligned(p, 16);
#endif
  float4 v;
  std::memcpy(&v, p, 16);
  return v;
#endif
}

VDEV int warp_max_int(int v) {
  for (int o = 16; o > 0; o >>= 1) {
    const int w = __shfl_xor_sync(0xffffffffu, v, o);
    v = w > v ? w : v;
  }
  return v;
}

// Quantizes the 32 values of a warp (one per lane) to int8 like quantize_act_q8: d = max|v| / 127,
// q = round(v / d); lane 0 writes {d, d * sum q}. A NaN or infinite value makes d infinite.
VDEV void quant_warp32(float v, int lane, int8_t* q, float2* ds) {
  float a = fabsf(v);
  if (!(a <= 3.0e38f)) a = INFINITY;
  const float amax = warp_max(a);
  const float d = amax / 127.f;
  int qi = 0;
  if (d > 0.f && d < INFINITY) {
    qi = round_to_int(v / d);
    qi = qi > 127 ? 127 : (qi < -127 ? -127 : qi);
  }
  q[lane] = static_cast<int8_t>(qi);
  const int sum = warp_sum_int(qi);
  if (lane == 0) *ds = make_float2(d, d * static_cast<float>(sum));
}

// float(x) for |x| < 2^22 with an integer add and a float subtract (both full rate) instead of a conversion
// (a quarter of the rate on recent GPUs): 2^23 + 2^22 + x has x in its low mantissa bits. Exact.
VHD float small_int_to_float(int x) {
  uint32_t b = 0x4B400000u + static_cast<uint32_t>(x);
  float f;
#if defined(__CUDA_ARCH__)
  f = __uint_as_float(b);
#else
  std::memcpy(&f, &b, 4);
#endif
  return f - 12582912.0f;
}

// ---- int8 tensor-core products of one warp (mma.sync, sm_80+), with int32 results started from zero ----
// Fragments (lane = 4 * group + tig; bytes of a register are consecutive k):
//   m16n8k32: a[0] = A[group][4 tig ..], a[1] = A[group + 8][4 tig ..], a[2] = A[group][16 + 4 tig ..],
//             a[3] = A[group + 8][16 + 4 tig ..];  b[0] = B[4 tig ..][group], b[1] = B[16 + 4 tig ..][group];
//   m16n8k16: a[0] = A[group][4 tig ..], a[1] = A[group + 8][4 tig ..];  b = B[4 tig ..][group];
//   c[0], c[1] = C[group][2 tig], C[group][2 tig + 1];  c[2], c[3] = the same columns of row group + 8.
#if defined(VIREO_CUDA_EMU)
namespace mma_detail {
inline int8_t byte_at(uint32_t w, int i) { return static_cast<int8_t>((w >> (8 * i)) & 0xffu); }
// C fragment of this lane from the gathered A (16 x K: K / 8 registers a lane) and B (K x 8: K / 16) registers.
template <int K>
void products(const uint32_t (*a)[32], const uint32_t (*b)[32], int (&c)[4]) {
  int A[16][K], B[K][8];
  for (int l = 0; l < 32; ++l) {
    const int g = l >> 2, t = l & 3;
    for (int r = 0; r < K / 8; ++r)
      for (int i = 0; i < 4; ++i) A[g + 8 * (r & 1)][16 * (r >> 1) + 4 * t + i] = byte_at(a[r][l], i);
    for (int r = 0; r < K / 16; ++r)
      for (int i = 0; i < 4; ++i) B[16 * r + 4 * t + i][g] = byte_at(b[r][l], i);
  }
  const int lane = static_cast<int>(threadIdx.x & 31), g = lane >> 2, t = lane & 3;
  for (int j = 0; j < 4; ++j) {
    const int row = g + 8 * (j >> 1), col = 2 * t + (j & 1);
    int s = 0;
    for (int k = 0; k < K; ++k) s += A[row][k] * B[k][col];
    c[j] = s;
  }
}
}  // namespace mma_detail
#endif
VDEV void mma_s8_k32(int (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__)
  asm(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%10,%10,%10};"
      : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "r"(0));
#elif defined(VIREO_CUDA_EMU)
  uint32_t a[4][32], b[2][32];
  const uint32_t av[4] = {a0, a1, a2, a3}, bv[2] = {b0, b1};
  for (int r = 0; r < 4; ++r) ::emu::warp_gather_bits(av[r], a[r]);
  for (int r = 0; r < 2; ++r) ::emu::warp_gather_bits(bv[r], b[r]);
  mma_detail::products<32>(a, b, c);
#endif
}
VDEV void mma_s8_k16(int (&c)[4], uint32_t a0, uint32_t a1, uint32_t b0) {
#if defined(__CUDA_ARCH__)
  asm(
      "mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%7,%7,%7,%7};"
      : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
      : "r"(a0), "r"(a1), "r"(b0), "r"(0));
#elif defined(VIREO_CUDA_EMU)
  uint32_t a[2][32], b[1][32];
  ::emu::warp_gather_bits(a0, a[0]);
  ::emu::warp_gather_bits(a1, a[1]);
  ::emu::warp_gather_bits(b0, b[0]);
  mma_detail::products<16>(a, b, c);
#endif
}

// ---- f16 tensor-core product of one warp, f32 accumulation: c += A (16 x 16) * B (16 x 8) ----
// Fragments (lane = 4 * group + tig; the low half of a register is the lower k / column):
//   a[0] = A[group][2 tig, 2 tig + 1], a[1] = A[group + 8][2 tig, ..], a[2] = A[group][2 tig + 8, 2 tig + 9],
//   a[3] = A[group + 8][2 tig + 8, ..];  b[0] = B[2 tig, 2 tig + 1][group], b[1] = B[2 tig + 8, 2 tig + 9][group];
//   c as for the int8 products above.
VDEV void mma_f16_k16(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__)
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#elif defined(VIREO_CUDA_EMU)
  uint32_t a[4][32], b[2][32];
  const uint32_t av[4] = {a0, a1, a2, a3}, bv[2] = {b0, b1};
  for (int r = 0; r < 4; ++r) ::emu::warp_gather_bits(av[r], a[r]);
  for (int r = 0; r < 2; ++r) ::emu::warp_gather_bits(bv[r], b[r]);
  float A[16][16], B[16][8];
  for (int l = 0; l < 32; ++l) {
    const int g = l >> 2, t = l & 3;
    for (int r = 0; r < 4; ++r)
      for (int h = 0; h < 2; ++h)
        A[g + 8 * (r & 1)][2 * t + 8 * (r >> 1) + h] = h2f(static_cast<uint16_t>(a[r][l] >> (16 * h)));
    for (int r = 0; r < 2; ++r)
      for (int h = 0; h < 2; ++h) B[2 * t + 8 * r + h][g] = h2f(static_cast<uint16_t>(b[r][l] >> (16 * h)));
  }
  const int lane = static_cast<int>(threadIdx.x & 31), g = lane >> 2, t = lane & 3;
  for (int j = 0; j < 4; ++j) {
    const int row = g + 8 * (j >> 1), col = 2 * t + (j & 1);
    double s = 0;
    for (int k = 0; k < 16; ++k) s += static_cast<double>(A[row][k]) * B[k][col];
    c[j] = static_cast<float>(c[j] + s);
  }
#endif
}

// ---- asynchronous 16-byte copies global -> shared (cp.async, sm_80+; the emulator copies at once) ----
// valid = false fills the 16 shared bytes with zeros (src is not read).
VDEV void cp_async16(void* smem_dst, const void* src, bool valid) {
#if defined(__CUDA_ARCH__)
  const uint32_t d = static_cast<uint32_t>(__cvta_generic_to_shared(smem_dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(src), "r"(valid ? 16 : 0) : "memory");
#else
#if defined(VIREO_CUDA_EMU)
  ::emu::check_aligned(smem_dst, 16);
  if (valid) ::emu::check_aligned(src, 16);
#endif
  if (valid) std::memcpy(smem_dst, src, 16);
  else std::memset(smem_dst, 0, 16);
#endif
}
VDEV void cp_async4(void* smem_dst, const void* src) {
#if defined(__CUDA_ARCH__)
  const uint32_t d = static_cast<uint32_t>(__cvta_generic_to_shared(smem_dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(d), "l"(src) : "memory");
#else
#if defined(VIREO_CUDA_EMU)
  ::emu::check_aligned(smem_dst, 4);
  ::emu::check_aligned(src, 4);
#endif
  std::memcpy(smem_dst, src, 4);
#endif
}
VDEV void cp_async_commit() {
#if defined(__CUDA_ARCH__)
  asm volatile("cp.async.commit_group;" ::: "memory");
#endif
}
// Waits until at most `pending` of this thread's committed groups are still in flight.
template <int pending>
VDEV void cp_async_wait() {
#if defined(__CUDA_ARCH__)
  asm volatile("cp.async.wait_group %0;" ::"n"(pending) : "memory");
#endif
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

}  // namespace vireo::VIREO_CUDA_NS
