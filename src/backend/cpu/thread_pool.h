// A persistent pool of worker threads for the CPU backend.
//
// Decode runs a few hundred small parallel regions per token, so workers spin briefly on an atomic generation
// counter before sleeping; a region costs about a microsecond, not a futex round trip. Nothing is allocated
// per region.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace vireo::cpu {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);  // n_threads includes the calling thread; <= 0 means hardware count
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }
  // Slots a region is split into: several per thread, so a thread the OS preempts holds back only a small
  // share of the work (the others claim the rest). Per-slot scratch must be sized by this, not size().
  int slots() const { return n_slots_; }

  // Calls fn(slot, slots()) once for every slot in [0, slots()) and waits for all. The caller runs slot 0
  // and any slot no worker claimed in time, so a slot is not tied to an OS thread: per-slot scratch is indexed
  // by slot, and fn must split the work by slot itself; see split_range.
  void run(const std::function<void(int, int)>& fn);

  // Runs fn(begin, end) over [0, n) in chunks of `grain` (rounded up), spread over the threads.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void worker(int index);
  bool claim(uint64_t tag, int* slot);

  int n_threads_;
  int n_slots_;
  std::vector<std::thread> threads_;
  const std::function<void(int, int)>* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<uint64_t> claim_word_{0};  // (region tag << 32) | next unclaimed slot
  std::atomic<int> done_{0};             // slots finished by workers in the current region
  std::atomic<bool> stop_{false};
  std::atomic<int> sleepers_{0};
  std::mutex mu_;
  std::condition_variable cv_;
};

// The contiguous part [begin, end) of [0, n) owned by thread i of t, in multiples of `align`.
inline void split_range(int64_t n, int i, int t, int64_t align, int64_t* begin, int64_t* end) {
  int64_t chunks = (n + align - 1) / align;
  int64_t per = chunks / t, extra = chunks % t;
  int64_t cb = i * per + (i < extra ? i : extra);
  int64_t ce = cb + per + (i < extra ? 1 : 0);
  *begin = cb * align < n ? cb * align : n;
  *end = ce * align < n ? ce * align : n;
}

}  // namespace vireo::cpu
