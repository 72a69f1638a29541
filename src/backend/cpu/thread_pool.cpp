#include "backend/cpu/thread_pool.h"

#include <algorithm>
#include <cstdlib>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define VIREO_PAUSE() _mm_pause()
#else
#define VIREO_PAUSE() ((void)0)
#endif

namespace vireo::cpu {
namespace {

// Flush denormals to zero on every compute thread: random or badly scaled weights can drive activations into
// the denormal range, where each float operation takes a microcode assist (measured: decode 20x slower).
void enable_flush_to_zero() {
#if defined(__x86_64__) || defined(_M_X64)
  constexpr unsigned kFtzDaz = 0x8040;  // MXCSR flush-to-zero (bit 15) | denormals-are-zero (bit 6)
  const unsigned csr = _mm_getcsr();
  if ((csr & kFtzDaz) != kFtzDaz) _mm_setcsr(csr | kFtzDaz);
#endif
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads <= 0) n_threads = static_cast<int>(std::thread::hardware_concurrency());
  if (n_threads <= 0) n_threads = 1;
#if defined(__EMSCRIPTEN__) && !defined(__EMSCRIPTEN_PTHREADS__)
  n_threads = 1;  // a WASM build without -pthread cannot start threads
#endif
  n_threads_ = n_threads;
  // One slot per thread is fastest on an idle machine (measured: TinyLlama Q4_K_M decode 43.5-44.0 tok/s vs
  // 42.3-42.5 with 4); more slots per thread degrade more gently when other processes compete for the cores
  // (12.8 vs 19.2 tok/s with one busy process). VIREO_SLOTS_PER_THREAD chooses.
  int per_thread = 1;
  if (const char* e = std::getenv("VIREO_SLOTS_PER_THREAD")) per_thread = std::max(1, std::min(16, std::atoi(e)));
  n_slots_ = n_threads == 1 ? 1 : per_thread * n_threads;
  for (int i = 1; i < n_threads_; ++i) threads_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  {
    std::lock_guard<std::mutex> lk(mu_);
    generation_.fetch_add(1);
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

// Work is handed out as slots 0..n-1 of a region (fn(slot, n)). The caller runs slot 0 and then claims any slot
// no worker has claimed yet, so a worker the OS has descheduled (2-core machines shared with other jobs) costs
// the region at most one slot's time, never a scheduler time slice. A claim is a CAS on (region tag, next slot),
// so a worker that wakes late can never claim a slot of a region it did not see start.
bool ThreadPool::claim(uint64_t tag, int* slot) {
  uint64_t w = claim_word_.load(std::memory_order_acquire);
  for (;;) {
    if ((w >> 32) != (tag & 0xffffffffu)) return false;
    const int next = static_cast<int>(w & 0xffffffffu);
    if (next >= n_slots_) return false;
    if (claim_word_.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel)) {
      *slot = next;
      return true;
    }
  }
}

void ThreadPool::worker(int) {
  enable_flush_to_zero();
  uint64_t seen = 0;
  for (;;) {
    // Spin for a while (regions follow each other closely during decode), then sleep.
    int spins = 0;
    while (generation_.load(std::memory_order_acquire) == seen) {
      if (++spins < 200000) {
        VIREO_PAUSE();
        continue;
      }
      std::unique_lock<std::mutex> lk(mu_);
      sleepers_.fetch_add(1);
      cv_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      sleepers_.fetch_sub(1);
      break;
    }
    seen = generation_.load(std::memory_order_acquire);
    if (stop_.load()) return;
    int slot;
    while (claim(seen, &slot)) {
      (*job_)(slot, n_slots_);  // job_ stays valid: the region cannot end before this slot is done
      done_.fetch_add(1, std::memory_order_acq_rel);
    }
  }
}

void ThreadPool::run(const std::function<void(int, int)>& fn) {
  enable_flush_to_zero();  // the caller computes too
  if (n_threads_ == 1) {
    fn(0, 1);
    return;
  }
  job_ = &fn;
  done_.store(0, std::memory_order_relaxed);
  const uint64_t tag = generation_.load(std::memory_order_relaxed) + 1;
  claim_word_.store(((tag & 0xffffffffu) << 32) | 1u, std::memory_order_release);  // slot 0 is the caller's
  {
    // Publishing under the mutex pairs with the sleepers' predicate check, so no wake-up is lost.
    std::lock_guard<std::mutex> lk(mu_);
    generation_.store(tag, std::memory_order_release);
  }
  if (sleepers_.load() > 0) cv_.notify_all();
  fn(0, n_slots_);
  int slot, mine = 0;
  while (claim(tag, &slot)) {
    fn(slot, n_slots_);
    ++mine;
  }
  while (done_.load(std::memory_order_acquire) + mine != n_slots_ - 1) VIREO_PAUSE();
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  if (n_threads_ == 1 || n <= grain) {
    fn(0, n);
    return;
  }
  run([&](int i, int t) {
    int64_t b, e;
    split_range(n, i, t, grain, &b, &e);
    if (b < e) fn(b, e);
  });
}

}  // namespace vireo::cpu
