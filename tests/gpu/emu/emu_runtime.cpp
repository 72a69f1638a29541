// CPU emulator of the CUDA runtime/cuBLAS subset declared in src/backend/cuda/emu/emu_runtime.h.
//
// Kernel threads are fibers on the calling thread, scheduled round-robin; a fiber runs until it waits at a barrier
// (__syncthreads: all live threads of the block; a warp shuffle: the 32 lanes of its warp) or ends. This gives
// CUDA's meaning to the synchronization the kernels use, deterministically, on one core. On x86-64 a fiber switch
// is a few instructions (emu_switch_stack below); elsewhere, and under AddressSanitizer, ucontext's swapcontext,
// which also saves the signal mask with a system call per switch (most of the emulator's time on x86-64).
#include "backend/cuda/emu/emu_runtime.h"

#include <ucontext.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "core/dtype.h"

namespace emu {
namespace {

constexpr size_t kStackBytes = 256 * 1024;
constexpr size_t kStaticSharedBytes = 48 * 1024;

struct Barrier {
  int arrived = 0;
  unsigned gen = 0;
};

#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define EMU_FAST_SWITCH 1
// Saves the callee-saved registers and the stack pointer (into *save), switches to the stack `to` and restores
// what was saved there. x87 and SSE control words are left as they are: kernels do not change them.
extern "C" void emu_switch_stack(void** save, void* to);
asm(R"(
.text
.p2align 4
.type emu_switch_stack,@function
emu_switch_stack:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size emu_switch_stack, .-emu_switch_stack
)");
#else
#define EMU_FAST_SWITCH 0
#endif

struct Fiber {
  ucontext_t ctx;
  void* sp = nullptr;  // EMU_FAST_SWITCH: the fiber's saved stack pointer
  std::unique_ptr<char[]> stack;
  dim3 tid;
  int linear = 0;
  bool done = false;
  int shared_calls = 0;
};

struct Block {
  dim3 bid, bdim, gdim;
  std::vector<Fiber*> fibers;
  int live = 0;
  Barrier block_barrier;
  std::vector<Barrier> warp_barriers;
  std::vector<int> warp_live;
  std::vector<uint32_t> shfl_slots;
  std::vector<unsigned char> static_smem, dyn_smem;
  std::vector<std::pair<size_t, size_t>> static_allocs;  // (offset, bytes) in declaration order
  size_t static_used = 0;
};

struct Scheduler {
  ucontext_t main_ctx;
  void* main_sp = nullptr;  // EMU_FAST_SWITCH: the scheduler's saved stack pointer
  std::vector<std::unique_ptr<Fiber>> pool;
  Block* block = nullptr;
  Fiber* current = nullptr;
  const std::function<void()>* body = nullptr;
};

Scheduler& sched() {
  static thread_local Scheduler s;
  return s;
}

Stats g_stats;

void yield_to_scheduler() {
  Scheduler& s = sched();
#if EMU_FAST_SWITCH
  emu_switch_stack(&s.current->sp, s.main_sp);
#else
  swapcontext(&s.current->ctx, &s.main_ctx);
#endif
}

void wait_at(Barrier& b, int expected) {
  const unsigned gen = b.gen;
  if (++b.arrived >= expected) {
    b.arrived = 0;
    ++b.gen;
    return;
  }
  while (b.gen == gen) yield_to_scheduler();
}

void fiber_entry() {
  Scheduler& s = sched();
  (*s.body)();
  Fiber* f = s.current;
  f->done = true;
  Block& b = *s.block;
  --b.live;
  --b.warp_live[f->linear / 32];
  // A barrier may now be complete without this thread (exited threads do not count, as on the hardware).
  if (b.block_barrier.arrived > 0 && b.block_barrier.arrived >= b.live) {
    b.block_barrier.arrived = 0;
    ++b.block_barrier.gen;
  }
  Barrier& wb = b.warp_barriers[f->linear / 32];
  if (wb.arrived > 0 && wb.arrived >= b.warp_live[f->linear / 32]) {
    wb.arrived = 0;
    ++wb.gen;
  }
  // returning resumes uc_link (the scheduler)
}

#if EMU_FAST_SWITCH
// A fast-switch fiber starts here (the first switch to it "returns" into it) and never returns: once the body is
// done it switches back to the scheduler, which does not resume a finished fiber.
[[noreturn]] void fiber_start() {
  fiber_entry();
  Scheduler& s = sched();
  emu_switch_stack(&s.current->sp, s.main_sp);
  fatal("a finished fiber was resumed");
  std::abort();
}

// The initial stack of a fiber: the six registers emu_switch_stack pops, then fiber_start as the return address
// (above it a dummy slot, so that fiber_start sees the stack alignment of a called function).
void* initial_stack(char* stack, size_t bytes) {
  auto top = reinterpret_cast<uintptr_t>(stack + bytes) & ~uintptr_t(15);
  void** sp = reinterpret_cast<void**>(top);
  *--sp = nullptr;
  *--sp = reinterpret_cast<void*>(&fiber_start);
  for (int i = 0; i < 6; ++i) *--sp = nullptr;
  return sp;
}
#endif

void run_block(Block& b, const std::function<void()>& body) {
  Scheduler& s = sched();
  const int n = static_cast<int>(b.bdim.x * b.bdim.y * b.bdim.z);
  while (static_cast<int>(s.pool.size()) < n) {
    auto f = std::make_unique<Fiber>();
    f->stack.reset(new char[kStackBytes]);
    s.pool.push_back(std::move(f));
  }
  b.fibers.clear();
  for (int i = 0; i < n; ++i) {
    Fiber* f = s.pool[i].get();
    f->done = false;
    f->linear = i;
    f->shared_calls = 0;
    f->tid = dim3(i % b.bdim.x, (i / b.bdim.x) % b.bdim.y, i / (b.bdim.x * b.bdim.y));
#if EMU_FAST_SWITCH
    f->sp = initial_stack(f->stack.get(), kStackBytes);
#else
    getcontext(&f->ctx);
    f->ctx.uc_stack.ss_sp = f->stack.get();
    f->ctx.uc_stack.ss_size = kStackBytes;
    f->ctx.uc_link = &s.main_ctx;
    makecontext(&f->ctx, fiber_entry, 0);
#endif
    b.fibers.push_back(f);
  }
  const int warps = (n + 31) / 32;
  b.live = n;
  b.block_barrier = {};
  b.warp_barriers.assign(warps, Barrier{});
  b.warp_live.assign(warps, 0);
  for (int i = 0; i < n; ++i) ++b.warp_live[i / 32];
  b.shfl_slots.assign(static_cast<size_t>(warps) * 32, 0);
  b.static_allocs.clear();
  b.static_used = 0;
  std::fill(b.static_smem.begin(), b.static_smem.end(), 0xA5);  // garbage, as shared memory is
  std::fill(b.dyn_smem.begin(), b.dyn_smem.end(), 0xA5);
  s.block = &b;
  s.body = &body;
  int remaining = n;
  long long rounds = 0;
  while (remaining > 0) {
    for (Fiber* f : b.fibers) {
      if (f->done) continue;
      s.current = f;
#if EMU_FAST_SWITCH
      emu_switch_stack(&s.main_sp, f->sp);
#else
      swapcontext(&s.main_ctx, &f->ctx);
#endif
      if (f->done) --remaining;
    }
    if (++rounds > 100000000LL) fatal("kernel does not finish (deadlock at a barrier?)");
  }
  s.current = nullptr;
}

struct Capture {
  bool active = false;
  std::vector<std::function<void()>> work;
};

}  // namespace

struct StreamImpl {
  Capture capture;
};

struct GraphImpl {
  std::vector<std::function<void()>> work;
};

struct CublasImpl {
  StreamImpl* stream = nullptr;
};

const dim3& thread_idx() { return sched().current->tid; }
const dim3& block_idx() { return sched().block->bid; }
const dim3& block_dim() { return sched().block->bdim; }
const dim3& grid_dim() { return sched().block->gdim; }

void syncthreads() {
  Block& b = *sched().block;
  wait_at(b.block_barrier, b.live);
}

// Every lane of a (complete) warp posts v, then read(slots, lane) runs once all have posted; the second barrier
// keeps the slots until every lane has read them.
template <class Read>
void warp_exchange(uint32_t v, const char* what, Read read) {
  Scheduler& s = sched();
  Block& b = *s.block;
  const int linear = s.current->linear;
  const int warp = linear / 32, lane = linear % 32;
  if (b.warp_live[warp] != 32) fatal(what);
  uint32_t* slots = b.shfl_slots.data() + static_cast<size_t>(warp) * 32;
  slots[lane] = v;
  wait_at(b.warp_barriers[warp], b.warp_live[warp]);
  read(slots, lane);
  wait_at(b.warp_barriers[warp], b.warp_live[warp]);
}

uint32_t shfl_xor_bits(uint32_t v, int lane_mask) {
  uint32_t r = 0;
  warp_exchange(v, "warp shuffle in a warp that is not complete",
                [&](const uint32_t* slots, int lane) { r = slots[lane ^ lane_mask]; });
  return r;
}

void warp_gather_bits(uint32_t v, uint32_t* all) {
  warp_exchange(v, "warp matrix operation in a warp that is not complete", [&](const uint32_t* slots, int) {
    for (int i = 0; i < 32; ++i) all[i] = slots[i];
  });
}

// The static shared window starts 128-byte aligned (as on the GPU), so alignments up to 128 hold in absolute
// addresses (WMMA tiles need 32).
unsigned char* static_base(Block& b) {
  const uintptr_t at = reinterpret_cast<uintptr_t>(b.static_smem.data());
  return b.static_smem.data() + (128 - at % 128) % 128;
}

void* shared_static(size_t bytes, size_t align) {
  Scheduler& s = sched();
  Block& b = *s.block;
  const int k = s.current->shared_calls++;
  if (k < static_cast<int>(b.static_allocs.size())) {
    if (b.static_allocs[k].second != bytes) fatal("__shared__ declarations differ between threads");
    return static_base(b) + b.static_allocs[k].first;
  }
  size_t off = (b.static_used + align - 1) / align * align;
  if (off + bytes > kStaticSharedBytes) fatal("static shared memory above 48 KiB");
  b.static_allocs.emplace_back(off, bytes);
  b.static_used = off + bytes;
  return static_base(b) + off;
}

void* shared_dynamic() {
  Block& b = *sched().block;
  if (b.dyn_smem.empty()) return nullptr;
  const uintptr_t at = reinterpret_cast<uintptr_t>(b.dyn_smem.data());
  return b.dyn_smem.data() + (128 - at % 128) % 128;  // 128-byte aligned, like the GPU's shared window
}

float half_to_float(uint16_t h) { return vireo::fp16_to_fp32(h); }

void check_aligned(const void* p, size_t align) {
  if (reinterpret_cast<uintptr_t>(p) % align != 0) {
    std::fprintf(stderr, "emu: misaligned %zu-byte access at %p\n", align, p);
    fatal("misaligned vector access");
  }
}

void fatal(const char* msg) {
  std::fprintf(stderr, "CUDA emulator: %s\n", msg);
  std::abort();
}

namespace {
void run_kernel(dim3 grid, dim3 block, size_t dyn_smem, const std::function<void()>& body) {
  if (block.x * block.y * block.z == 0 || block.x * block.y * block.z > 1024) fatal("bad block size");
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) fatal("empty grid");
  if (grid.y > 65535 || grid.z > 65535) fatal("grid y/z above 65535");
  if (dyn_smem > 227 * 1024) fatal("dynamic shared memory above 227 KiB");
  Block b;
  b.bdim = block;
  b.gdim = grid;
  b.static_smem.resize(kStaticSharedBytes + 128);
  b.dyn_smem.resize(dyn_smem ? dyn_smem + 128 : 0);  // room to align the start to 128 bytes
  // Blocks run in reverse order when EMU_REVERSE_BLOCKS is set (a kernel must not depend on the order), and each
  // starts with poisoned shared memory (a kernel must not read what an earlier block left there).
  static const bool reverse = std::getenv("EMU_REVERSE_BLOCKS") != nullptr;
  const unsigned long long n = static_cast<unsigned long long>(grid.x) * grid.y * grid.z;
  for (unsigned long long i = 0; i < n; ++i) {
    const unsigned long long k = reverse ? n - 1 - i : i;
    b.bid = dim3(static_cast<unsigned>(k % grid.x), static_cast<unsigned>(k / grid.x % grid.y),
                 static_cast<unsigned>(k / grid.x / grid.y));
    std::fill(b.static_smem.begin(), b.static_smem.end(), static_cast<unsigned char>(0xCD));
    std::fill(b.dyn_smem.begin(), b.dyn_smem.end(), static_cast<unsigned char>(0xCD));
    run_block(b, body);
    ++g_stats.blocks;
  }
  ++g_stats.launches;
}
}  // namespace

void launch(dim3 grid, dim3 block, size_t dyn_smem, StreamImpl* stream, std::function<void()> body) {
  auto work = [grid, block, dyn_smem, body = std::move(body)]() { run_kernel(grid, block, dyn_smem, body); };
  if (stream && stream->capture.active)
    stream->capture.work.push_back(std::move(work));
  else
    work();
}

Stats stats() { return g_stats; }

}  // namespace emu

// ---------------------------------------------------------------------------------------------------------------
// runtime API
// ---------------------------------------------------------------------------------------------------------------
namespace {
std::map<void*, size_t>& allocations() {
  static std::map<void*, size_t> m;
  return m;
}
cudaError_t g_last = cudaSuccess;

void enqueue(cudaStream_t s, std::function<void()> work) {
  if (s && s->capture.active)
    s->capture.work.push_back(std::move(work));
  else
    work();
}
}  // namespace

cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cudaErrorInvalidValue; }
cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int) {
  std::memset(p, 0, sizeof *p);
  std::snprintf(p->name, sizeof p->name, "CPU emulator");
  p->totalGlobalMem = size_t(16) << 30;
  p->multiProcessorCount = 4;
  p->major = 9;
  p->minor = 0;
  p->sharedMemPerBlockOptin = 227 * 1024;
  p->memoryBusWidth = 64;
  return cudaSuccess;
}
cudaError_t cudaMalloc(void** p, size_t bytes) {
  const size_t rounded = (bytes + 255) / 256 * 256;
  *p = std::aligned_alloc(256, rounded ? rounded : 256);
  if (!*p) return g_last = cudaErrorMemoryAllocation;
  std::memset(*p, 0xCD, rounded ? rounded : 256);  // not zero, as fresh device memory need not be
  allocations()[*p] = bytes;
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  auto it = allocations().find(p);
  if (it == allocations().end()) return g_last = cudaErrorInvalidValue;
  allocations().erase(it);
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMallocHost(void** p, size_t bytes) {
  *p = std::aligned_alloc(256, (bytes + 255) / 256 * 256 + 256);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFreeHost(void* p) {
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s) {
  if (s && s->capture.active && kind != cudaMemcpyDeviceToDevice) {
    // Host memory in a captured copy would be read at replay time; the backend never does this.
    emu::fatal("host<->device copy inside a stream capture");
  }
  enqueue(s, [=] { std::memmove(dst, src, bytes); });
  return cudaSuccess;
}
cudaError_t cudaMemset(void* dst, int v, size_t bytes) {
  std::memset(dst, v, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* dst, int v, size_t bytes, cudaStream_t s) {
  enqueue(s, [=] { std::memset(dst, v, bytes); });
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  *s = new emu::StreamImpl;
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  delete s;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  if (s && s->capture.active) return g_last = cudaErrorStreamCaptureInvalidated;
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaGetLastError() {
  const cudaError_t e = g_last;
  g_last = cudaSuccess;
  return e;
}
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorStreamCaptureInvalidated: return "operation not permitted when stream is capturing";
    default: return "unknown error";
  }
}
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode) {
  if (!s || s->capture.active) return g_last = cudaErrorInvalidValue;
  s->capture.active = true;
  s->capture.work.clear();
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* g) {
  if (!s || !s->capture.active) return g_last = cudaErrorInvalidValue;
  s->capture.active = false;
  auto* graph = new emu::GraphImpl;
  graph->work = std::move(s->capture.work);
  s->capture.work.clear();
  *g = graph;
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* e, cudaGraph_t g, unsigned long long) {
  auto* exec = new emu::GraphImpl;
  exec->work = g->work;
  *e = exec;
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s) {
  if (s && s->capture.active) return g_last = cudaErrorInvalidValue;
  for (auto& w : e->work) w();
  ++emu::g_stats.graph_launches;
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) {
  delete g;
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) {
  delete e;
  return cudaSuccess;
}
namespace emu {
struct EventImpl {
  std::chrono::steady_clock::time_point t{};
};
}  // namespace emu
cudaError_t cudaEventCreate(cudaEvent_t* e) {
  *e = new emu::EventImpl;
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) { return cudaEventCreate(e); }
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  enqueue(s, [e] { e->t = std::chrono::steady_clock::now(); });
  return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  *ms = std::chrono::duration<float, std::milli>(end->t - start->t).count();
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  *free_bytes = size_t(8) << 30;
  *total_bytes = size_t(16) << 30;
  return cudaSuccess;
}

// ---------------------------------------------------------------------------------------------------------------
// cuBLAS: C = alpha * op(A) * op(B) + beta * C, column-major, as documented.
// ---------------------------------------------------------------------------------------------------------------
cublasStatus_t cublasCreate(cublasHandle_t* h) {
  *h = new emu::CublasImpl;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t h) {
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
  h->stream = s;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetWorkspace(cublasHandle_t, void*, size_t) { return CUBLAS_STATUS_SUCCESS; }
const char* cublasGetStatusString(cublasStatus_t s) {
  return s == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS" : "CUBLAS_STATUS_ERROR";
}

namespace {
float load_elem(const void* p, cudaDataType t, size_t i) {
  if (t == CUDA_R_32F) return static_cast<const float*>(p)[i];
  if (t == CUDA_R_16F) return vireo::fp16_to_fp32(static_cast<const uint16_t*>(p)[i]);
  return vireo::bf16_to_fp32(static_cast<const uint16_t*>(p)[i]);
}
}  // namespace

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void* alpha, const void* A, cudaDataType at, int lda, const void* B,
                            cudaDataType bt, int ldb, const void* beta, void* C, cudaDataType ct, int ldc,
                            cublasComputeType_t, cublasGemmAlgo_t) {
  if (ct != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (m < 0 || n < 0 || k < 0) return CUBLAS_STATUS_INVALID_VALUE;
  if (lda < (ta == CUBLAS_OP_N ? m : k) || ldb < (tb == CUBLAS_OP_N ? k : n) || ldc < m)
    return CUBLAS_STATUS_INVALID_VALUE;
  const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  enqueue(h->stream, [=] {
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        double s = 0;
        for (int l = 0; l < k; ++l) {
          // op(A)[i][l], op(B)[l][j]; element (r, c) of a column-major matrix is at r + c * ld
          const float a = ta == CUBLAS_OP_N ? load_elem(A, at, size_t(i) + size_t(l) * lda)
                                            : load_elem(A, at, size_t(l) + size_t(i) * lda);
          const float b = tb == CUBLAS_OP_N ? load_elem(B, bt, size_t(l) + size_t(j) * ldb)
                                            : load_elem(B, bt, size_t(j) + size_t(l) * ldb);
          s += double(a) * b;
        }
        float* c = static_cast<float*>(C) + size_t(i) + size_t(j) * ldc;
        *c = be == 0.f ? al * static_cast<float>(s) : al * static_cast<float>(s) + be * *c;
      }
  });
  return CUBLAS_STATUS_SUCCESS;
}
