#include "backend/cpu/membw.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#if !defined(__EMSCRIPTEN__)
#include <sys/mman.h>
#endif

#include "backend/cpu/thread_pool.h"

#if defined(__x86_64__) && !defined(VIREO_NO_X86)
#include <immintrin.h>
#endif

namespace vireo::cpu {
namespace {

#if defined(__x86_64__) && !defined(VIREO_NO_X86)
__attribute__((target("avx512f"))) uint64_t sum_avx512(const uint8_t* p, size_t n) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 256 <= n; i += 256) {
    a0 = _mm512_xor_si512(a0, _mm512_load_si512(p + i));
    a1 = _mm512_xor_si512(a1, _mm512_load_si512(p + i + 64));
    a2 = _mm512_xor_si512(a2, _mm512_load_si512(p + i + 128));
    a3 = _mm512_xor_si512(a3, _mm512_load_si512(p + i + 192));
  }
  a0 = _mm512_xor_si512(_mm512_xor_si512(a0, a1), _mm512_xor_si512(a2, a3));
  return static_cast<uint64_t>(_mm512_reduce_add_epi64(a0));
}
#endif

uint64_t sum_plain(const uint8_t* p, size_t n) {
  const uint64_t* q = reinterpret_cast<const uint64_t*>(p);
  uint64_t a = 0, b = 0, c = 0, d = 0;
  for (size_t i = 0; i + 4 <= n / 8; i += 4) {
    a ^= q[i];
    b ^= q[i + 1];
    c ^= q[i + 2];
    d ^= q[i + 3];
  }
  return a ^ b ^ c ^ d;
}

}  // namespace

double measure_read_bandwidth(int threads, double buffer_bytes) {
  constexpr size_t kHuge = size_t(2) << 20;
  const size_t n = std::max(kHuge, static_cast<size_t>(buffer_bytes) / kHuge * kHuge);
  auto* buf = static_cast<uint8_t*>(std::aligned_alloc(kHuge, n));
  if (!buf) return 0;
#if defined(MADV_HUGEPAGE)
  madvise(buf, n, MADV_HUGEPAGE);
#endif
  ThreadPool pool(threads);
  // Touch every page from the threads that will read it.
  pool.run([&](int i, int t) {
    int64_t b, e;
    split_range(static_cast<int64_t>(n), i, t, 4096, &b, &e);
    std::memset(buf + b, i + 1, static_cast<size_t>(e - b));
  });
#if defined(__x86_64__) && !defined(VIREO_NO_X86)
  const bool avx512 = __builtin_cpu_supports("avx512f");
#endif
  double best = 0;
  volatile uint64_t sink = 0;
  for (int rep = 0; rep < 4; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.run([&](int i, int t) {
      int64_t b, e;
      split_range(static_cast<int64_t>(n), i, t, 4096, &b, &e);
      uint64_t s;
#if defined(__x86_64__) && !defined(VIREO_NO_X86)
      s = avx512 ? sum_avx512(buf + b, static_cast<size_t>(e - b)) : sum_plain(buf + b, static_cast<size_t>(e - b));
#else
      s = sum_plain(buf + b, static_cast<size_t>(e - b));
#endif
      sink = sink + s;
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, static_cast<double>(n) / s);
  }
  std::free(buf);
  return best;
}

}  // namespace vireo::cpu
