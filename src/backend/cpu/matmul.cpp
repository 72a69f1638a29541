// PackedMatrix: repacks GGUF weights into 16-row groups (see kernels_internal.h), quantizes activations once per
// call, and runs the kernels of the selected instruction-set path on the thread pool.
#include "backend/cpu/matmul.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "backend/cpu/kernels_internal.h"
#include "quant/blocks.h"
#include "quant/quant.h"

namespace vireo::cpu {

using kern::ActKind;
using kern::ActLayout;
using kern::GemmArgs;
using kern::Kernels;
using kern::WType;

namespace {

// ---------------------------------------------------------------------------------------------------------------
// Path selection.

CpuPath detect_best_path() {
#if defined(VIREO_HAVE_X86_KERNELS)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("f16c") && __builtin_cpu_supports("bmi2"))
    return CpuPath::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c") &&
      __builtin_cpu_supports("bmi2"))
    return CpuPath::Avx2;
#endif
#if defined(VIREO_HAVE_SIMD128_KERNELS)
  return CpuPath::Simd128;
#endif
  return CpuPath::Scalar;
}

// VIREO_CPU_PATH=scalar|avx2|avx512 starts on a lower path than the best one (never a higher one): to measure an
// AVX2-only machine's kernels on an AVX-512 box.
CpuPath initial_path(CpuPath best) {
  const char* e = std::getenv("VIREO_CPU_PATH");
  if (!e) return best;
  const std::string v = e;
  CpuPath p = best;
  if (v == "scalar") p = CpuPath::Scalar;
  else if (v == "avx2") p = CpuPath::Avx2;
  else if (v == "avx512") p = CpuPath::Avx512;
  if (best == CpuPath::Simd128 || static_cast<int>(p) > static_cast<int>(best)) p = best;
  return p;
}

CpuPath g_best = detect_best_path();
std::atomic<int> g_active{static_cast<int>(initial_path(g_best))};

const Kernels& kernels_for(CpuPath p) {
#if defined(VIREO_HAVE_X86_KERNELS)
  if (p == CpuPath::Avx512) return kern::avx512_kernels();
  if (p == CpuPath::Avx2) return kern::avx2_kernels();
#endif
#if defined(VIREO_HAVE_SIMD128_KERNELS)
  if (p == CpuPath::Simd128) return kern::simd128_kernels();
#endif
  (void)p;
  return kern::scalar_kernels();
}

bool to_wtype(DType t, WType* out) {
  switch (t) {
    case DType::F32: *out = WType::F32; return true;
    case DType::F16: *out = WType::F16; return true;
    case DType::BF16: *out = WType::BF16; return true;
    case DType::Q4_0: *out = WType::Q4_0; return true;
    case DType::Q4_1: *out = WType::Q4_1; return true;
    case DType::Q5_0: *out = WType::Q5_0; return true;
    case DType::Q5_1: *out = WType::Q5_1; return true;
    case DType::Q8_0: *out = WType::Q8_0; return true;
    case DType::Q2_K: *out = WType::Q2_K; return true;
    case DType::Q3_K: *out = WType::Q3_K; return true;
    case DType::Q4_K: *out = WType::Q4_K; return true;
    case DType::Q5_K: *out = WType::Q5_K; return true;
    case DType::Q6_K: *out = WType::Q6_K; return true;
    default: return false;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Memory. Weights live in 2 MiB-aligned chunks asked for transparent huge pages (streaming them then costs no TLB
// misses, worth ~10% of decode bandwidth); matrices share chunks so small ones do not each round up to 2 MiB.

constexpr size_t kHugePage = size_t(2) << 20;
constexpr size_t kChunkBytes = size_t(32) << 20;

uint8_t* huge_alloc(size_t bytes, size_t* rounded) {
  const size_t sz = (bytes + kHugePage - 1) & ~(kHugePage - 1);
  auto* p = static_cast<uint8_t*>(std::aligned_alloc(kHugePage, sz));
  if (!p) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE) && !defined(VIREO_NO_HUGE)
  madvise(p, sz, MADV_HUGEPAGE);
#endif
  *rounded = sz;
  return p;
}

struct ArenaChunk {
  uint8_t* base;
  size_t size, used;
  int live;
};

struct Arena {
  std::mutex mu;
  std::vector<ArenaChunk*> chunks;
};
Arena& arena() {
  static Arena* a = new Arena;  // never destroyed: matrices may outlive static destructors
  return *a;
}

// A weight buffer carved from the arena (not zeroed: the repack writes every byte).
class WeightBuf {
 public:
  WeightBuf() = default;
  WeightBuf(const WeightBuf&) = delete;
  WeightBuf& operator=(const WeightBuf&) = delete;
  ~WeightBuf() { release(); }

  uint8_t* data() const { return p_; }

  void allocate(size_t bytes) {
    release();
    const size_t need = (bytes + 4095) & ~size_t(4095);
    Arena& A = arena();
    {
      std::lock_guard<std::mutex> lk(A.mu);
      for (ArenaChunk* c : A.chunks)
        if (c->size - c->used >= need) {
          p_ = c->base + c->used;
          c->used += need;
          ++c->live;
          chunk_ = c;
          break;
        }
      if (!p_) {
        auto* c = new ArenaChunk{nullptr, 0, need, 1};
        c->base = huge_alloc(std::max(need, kChunkBytes), &c->size);
        A.chunks.push_back(c);
        p_ = c->base;
        chunk_ = c;
      }
    }
  }

 private:
  void release() {
    if (!chunk_) return;
    Arena& A = arena();
    std::lock_guard<std::mutex> lk(A.mu);
    if (--chunk_->live == 0) {
      std::free(chunk_->base);
      A.chunks.erase(std::find(A.chunks.begin(), A.chunks.end(), chunk_));
      delete chunk_;
    }
    chunk_ = nullptr;
    p_ = nullptr;
  }

  uint8_t* p_ = nullptr;
  ArenaChunk* chunk_ = nullptr;
};

// Per-thread activation buffer: grows, never shrinks; contents are not preserved.
struct ActBuf {
  uint8_t* p = nullptr;
  int64_t n = 0;
  ActBuf() = default;
  ActBuf(const ActBuf&) = delete;
  ActBuf& operator=(const ActBuf&) = delete;
  ~ActBuf() { std::free(p); }
  void reserve(int64_t bytes) {
    if (bytes <= n) return;
    std::free(p);
    p = nullptr;
    n = 0;
    size_t sz = 0;
    p = huge_alloc(static_cast<size_t>(bytes), &sz);
    n = static_cast<int64_t>(sz);
  }
};

// ---------------------------------------------------------------------------------------------------------------
// Repacking: GGUF blocks -> 16-row groups. Each GGUF block is first decoded to its integer codes and raw scales.

inline uint16_t rd16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline void wr16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }

// The k-quant and 32-block codes, unsigned (what the kernels multiply), for one block of one row.
struct Decoded {
  uint8_t q[256];
  uint16_t d = 0, dmin = 0;   // f16 bits
  uint8_t raw_scales[16];     // Q2_K: 16 bytes as stored; Q4_K/Q5_K: 12 bytes as stored
  int8_t sc[16];              // Q3_K (decoded, -32..31), Q6_K (as stored)
};

void decode_block(WType t, const uint8_t* s, Decoded& o) {
  switch (t) {
    case WType::Q8_0: {
      o.d = rd16(s);
      for (int j = 0; j < 32; ++j) o.q[j] = static_cast<uint8_t>(static_cast<int8_t>(s[2 + j]) + 128);
      break;
    }
    case WType::Q4_0:
    case WType::Q4_1: {
      const int hdr = t == WType::Q4_0 ? 2 : 4;
      o.d = rd16(s);
      if (t == WType::Q4_1) o.dmin = rd16(s + 2);
      for (int j = 0; j < 16; ++j) {
        o.q[j] = s[hdr + j] & 15;
        o.q[j + 16] = s[hdr + j] >> 4;
      }
      break;
    }
    case WType::Q5_0:
    case WType::Q5_1: {
      const int hdr = t == WType::Q5_0 ? 2 : 4;
      o.d = rd16(s);
      if (t == WType::Q5_1) o.dmin = rd16(s + 2);
      uint32_t qh;
      std::memcpy(&qh, s + hdr, 4);
      for (int j = 0; j < 16; ++j) {
        o.q[j] = static_cast<uint8_t>((s[hdr + 4 + j] & 15) | (((qh >> j) & 1) << 4));
        o.q[j + 16] = static_cast<uint8_t>((s[hdr + 4 + j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
      }
      break;
    }
    case WType::Q2_K: {
      const uint8_t* scales = s;
      const uint8_t* qs = s + 16;
      o.d = rd16(s + 80);
      o.dmin = rd16(s + 82);
      std::memcpy(o.raw_scales, scales, 16);
      for (int h = 0; h < 2; ++h)
        for (int g = 0; g < 4; ++g)
          for (int l = 0; l < 32; ++l) o.q[128 * h + 32 * g + l] = (qs[32 * h + l] >> (2 * g)) & 3;
      break;
    }
    case WType::Q3_K: {
      const uint8_t* hmask = s;
      const uint8_t* qs = s + 32;
      const uint8_t* sc = s + 96;
      o.d = rd16(s + 108);
      for (int j = 0; j < 16; ++j) {
        const int lo = j < 8 ? (sc[j] & 15) : (sc[j - 8] >> 4);
        const int hi = (sc[8 + (j % 4)] >> (2 * (j / 4))) & 3;
        o.sc[j] = static_cast<int8_t>((lo | (hi << 4)) - 32);
      }
      for (int h = 0; h < 2; ++h)
        for (int g = 0; g < 4; ++g)
          for (int l = 0; l < 32; ++l) {
            const int q2 = (qs[32 * h + l] >> (2 * g)) & 3;
            const int hb = (hmask[l] >> (4 * h + g)) & 1;
            o.q[128 * h + 32 * g + l] = static_cast<uint8_t>(q2 + 4 * hb);  // value = u - 4
          }
      break;
    }
    case WType::Q4_K:
    case WType::Q5_K: {
      o.d = rd16(s);
      o.dmin = rd16(s + 2);
      std::memcpy(o.raw_scales, s + 4, 12);
      const uint8_t* qh = s + 16;
      const uint8_t* qs = t == WType::Q4_K ? s + 16 : s + 48;
      for (int c = 0; c < 4; ++c)
        for (int l = 0; l < 32; ++l) {
          int lo = qs[32 * c + l] & 15, hi = qs[32 * c + l] >> 4;
          if (t == WType::Q5_K) {
            lo |= ((qh[l] >> (2 * c)) & 1) << 4;
            hi |= ((qh[l] >> (2 * c + 1)) & 1) << 4;
          }
          o.q[64 * c + l] = static_cast<uint8_t>(lo);
          o.q[64 * c + 32 + l] = static_cast<uint8_t>(hi);
        }
      break;
    }
    case WType::Q6_K: {
      const uint8_t* ql = s;
      const uint8_t* qh = s + 128;
      std::memcpy(o.sc, s + 192, 16);
      o.d = rd16(s + 208);
      for (int h = 0; h < 2; ++h)
        for (int l = 0; l < 32; ++l) {
          const uint8_t a = ql[64 * h + l], b = ql[64 * h + l + 32], c = qh[32 * h + l];
          o.q[128 * h + l] = static_cast<uint8_t>((a & 15) | ((c & 3) << 4));
          o.q[128 * h + l + 32] = static_cast<uint8_t>((b & 15) | (((c >> 2) & 3) << 4));
          o.q[128 * h + l + 64] = static_cast<uint8_t>((a >> 4) | (((c >> 4) & 3) << 4));
          o.q[128 * h + l + 96] = static_cast<uint8_t>((b >> 4) | (((c >> 6) & 3) << 4));
        }
      break;
    }
    default:
      break;
  }
}

// Writes row rr's block (decoded) into a group block at `blk`.
void write_block(WType t, const Decoded& o, int rr, uint8_t* blk) {
  const uint8_t* q = o.q;
  switch (t) {
    case WType::Q8_0:
      wr16(blk + 2 * rr, o.d);
      for (int t4 = 0; t4 < 8; ++t4)
        for (int jj = 0; jj < 4; ++jj) blk[32 + 64 * t4 + rr * 4 + jj] = q[4 * t4 + jj];
      break;
    case WType::Q4_0:
    case WType::Q4_1:
    case WType::Q5_0:
    case WType::Q5_1: {
      wr16(blk + 2 * rr, o.d);
      int off = 32;
      if (t == WType::Q4_1 || t == WType::Q5_1) {
        wr16(blk + 32 + 2 * rr, o.dmin);
        off = 64;
      }
      if (t == WType::Q5_0 || t == WType::Q5_1) {
        for (int c = 0; c < 4; ++c)
          for (int jj = 0; jj < 4; ++jj) {
            uint8_t& b = blk[off + rr * 4 + jj];
            b |= static_cast<uint8_t>(((q[8 * c + jj] >> 4) & 1) << (2 * c));
            b |= static_cast<uint8_t>(((q[8 * c + 4 + jj] >> 4) & 1) << (2 * c + 1));
          }
        off += 64;
      }
      for (int c = 0; c < 4; ++c)
        for (int jj = 0; jj < 4; ++jj)
          blk[off + 64 * c + rr * 4 + jj] =
              static_cast<uint8_t>((q[8 * c + jj] & 15) | ((q[8 * c + 4 + jj] & 15) << 4));
      break;
    }
    case WType::Q2_K: {
      wr16(blk + 2 * rr, o.d);
      wr16(blk + 32 + 2 * rr, o.dmin);
      for (int j = 0; j < 16; ++j) blk[64 + 16 * j + rr] = o.raw_scales[j];
      for (int j = 0; j < 16; ++j)
        for (int g = 0; g < 4; ++g)
          for (int jj = 0; jj < 4; ++jj)
            blk[320 + 64 * j + rr * 4 + jj] |= static_cast<uint8_t>((q[16 * j + 4 * g + jj] & 3) << (2 * g));
      break;
    }
    case WType::Q3_K: {
      wr16(blk + 2 * rr, o.d);
      for (int j = 0; j < 16; ++j) blk[32 + 16 * j + rr] = static_cast<uint8_t>(o.sc[j]);
      for (int j = 0; j < 16; ++j)
        for (int g = 0; g < 4; ++g)
          for (int jj = 0; jj < 4; ++jj) {
            const int u = q[16 * j + 4 * g + jj];
            blk[288 + 64 * j + rr * 4 + jj] |= static_cast<uint8_t>((u & 3) << (2 * g));
            blk[1312 + 64 * (j / 2) + rr * 4 + jj] |= static_cast<uint8_t>(((u >> 2) & 1) << (g + 4 * (j & 1)));
          }
      break;
    }
    case WType::Q4_K:
    case WType::Q5_K: {
      wr16(blk + 2 * rr, o.d);
      wr16(blk + 32 + 2 * rr, o.dmin);
      for (int p = 0; p < 12; ++p) blk[64 + 16 * p + rr] = o.raw_scales[p];
      int off = 256;
      if (t == WType::Q5_K) {
        for (int j = 0; j < 8; ++j)
          for (int c = 0; c < 4; ++c)
            for (int jj = 0; jj < 4; ++jj) {
              uint8_t& b = blk[off + 64 * j + rr * 4 + jj];
              b |= static_cast<uint8_t>(((q[32 * j + 8 * c + jj] >> 4) & 1) << (2 * c));
              b |= static_cast<uint8_t>(((q[32 * j + 8 * c + 4 + jj] >> 4) & 1) << (2 * c + 1));
            }
        off += 512;
      }
      for (int j = 0; j < 8; ++j)
        for (int c = 0; c < 4; ++c)
          for (int jj = 0; jj < 4; ++jj)
            blk[off + 64 * (4 * j + c) + rr * 4 + jj] = static_cast<uint8_t>(
                (q[32 * j + 8 * c + jj] & 15) | ((q[32 * j + 8 * c + 4 + jj] & 15) << 4));
      break;
    }
    case WType::Q6_K: {
      wr16(blk + 2 * rr, o.d);
      for (int j = 0; j < 16; ++j) blk[32 + 16 * j + rr] = static_cast<uint8_t>(o.sc[j]);
      for (int j = 0; j < 16; ++j) {
        uint8_t* base = blk + 288 + 192 * j;
        for (int c = 0; c < 2; ++c)
          for (int jj = 0; jj < 4; ++jj)
            base[64 * c + rr * 4 + jj] = static_cast<uint8_t>((q[16 * j + 8 * c + jj] & 15) |
                                                             ((q[16 * j + 8 * c + 4 + jj] & 15) << 4));
        for (int g = 0; g < 4; ++g)
          for (int jj = 0; jj < 4; ++jj)
            base[128 + rr * 4 + jj] |= static_cast<uint8_t>(((q[16 * j + 4 * g + jj] >> 4) & 3) << (2 * g));
      }
      break;
    }
    default:
      break;
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------

struct PackedMatrix::Impl {
  DType type;
  WType wt;
  int64_t rows = 0, cols = 0;
  const uint8_t* src = nullptr;  // GGUF data (for dequantize_row)
  int64_t src_row_bytes = 0;
  WeightBuf packed;
  int64_t n_groups = 0, group_bytes = 0;
};

PackedMatrix::PackedMatrix(DType type, const void* data, int64_t rows, int64_t cols, ThreadPool* pool)
    : impl_(new Impl) {
  Impl& I = *impl_;
  I.type = type;
  if (!to_wtype(type, &I.wt))
    throw std::runtime_error("PackedMatrix: unsupported weight type " + std::string(dtype_name(type)));
  if (rows <= 0 || cols <= 0) throw std::runtime_error("PackedMatrix: empty matrix");
  const int64_t be = kern::block_elems(I.wt);
  if (cols % be != 0)
    throw std::runtime_error("PackedMatrix: " + std::string(dtype_name(type)) + " needs cols to be a multiple of " +
                             std::to_string(be) + ", got " + std::to_string(cols));
  I.rows = rows;
  I.cols = cols;
  I.src = static_cast<const uint8_t*>(data);
  I.src_row_bytes = row_bytes(type, cols);
  I.n_groups = (rows + kern::kGroupRows - 1) / kern::kGroupRows;
  const int64_t nb = cols / be;
  const int64_t gbb = kern::group_block_bytes(I.wt);
  I.group_bytes = nb * gbb;
  I.packed.allocate(static_cast<size_t>(I.n_groups * I.group_bytes));

  // Groups are repacked in parallel: on a fresh allocation the cost is mostly the kernel providing zeroed pages at
  // first touch (two thirds of a TinyLlama load in a VM), which the touching threads then share.
  const WType wt = I.wt;
  auto repack = [&](int64_t g0, int64_t g1) {
    // Zeroed first: the padding rows of the last group stay zero.
    std::memset(I.packed.data() + g0 * I.group_bytes, 0, static_cast<size_t>((g1 - g0) * I.group_bytes));
    for (int64_t g = g0; g < g1; ++g) {
      uint8_t* gdst = I.packed.data() + g * I.group_bytes;
      const int nr = static_cast<int>(std::min<int64_t>(kern::kGroupRows, rows - g * kern::kGroupRows));
      if (wt == WType::F32 || wt == WType::F16 || wt == WType::BF16) {
        // Transpose 16 rows into k-major order, 16 columns at a time (each source line is read whole once).
        const uint8_t* s0 = I.src + g * kern::kGroupRows * I.src_row_bytes;
        auto transpose = [&](auto zero) {
          using E = decltype(zero);
          E* d = reinterpret_cast<E*>(gdst);
          E tile[16][16];
          for (int64_t kb = 0; kb < cols; kb += 16) {
            const int kn = static_cast<int>(std::min<int64_t>(16, cols - kb));
            for (int rr = 0; rr < nr; ++rr) std::memcpy(tile[rr], s0 + rr * I.src_row_bytes + kb * sizeof(E), kn * sizeof(E));
            for (int j = 0; j < kn; ++j)
              for (int rr = 0; rr < nr; ++rr) d[(kb + j) * 16 + rr] = tile[rr][j];
          }
        };
        if (wt == WType::F32)
          transpose(uint32_t{0});
        else
          transpose(uint16_t{0});
        continue;
      }
      for (int rr = 0; rr < nr; ++rr) {
        const int64_t r = g * kern::kGroupRows + rr;
        const uint8_t* srow = I.src + r * I.src_row_bytes;
        const int64_t sbb = dtype_info(type).block_bytes;
        Decoded dec;
        for (int64_t b = 0; b < nb; ++b) {
          decode_block(wt, srow + b * sbb, dec);
          write_block(wt, dec, rr, gdst + b * gbb);
        }
      }
    }
  };
  if (pool)
    pool->parallel_for(I.n_groups, std::max<int64_t>(1, (int64_t(1) << 20) / std::max<int64_t>(I.group_bytes, 1)), repack);
  else
    repack(0, I.n_groups);
}

PackedMatrix::~PackedMatrix() = default;
PackedMatrix::PackedMatrix(PackedMatrix&&) noexcept = default;
PackedMatrix& PackedMatrix::operator=(PackedMatrix&&) noexcept = default;

DType PackedMatrix::type() const { return impl_->type; }
int64_t PackedMatrix::rows() const { return impl_->rows; }
int64_t PackedMatrix::cols() const { return impl_->cols; }
int64_t PackedMatrix::bytes() const { return impl_->n_groups * impl_->group_bytes; }

void PackedMatrix::dequantize_row(int64_t r, float* out) const {
  const Impl& I = *impl_;
  if (r < 0 || r >= I.rows) throw std::out_of_range("PackedMatrix::dequantize_row: row out of range");
  vireo::dequantize_row(I.type, I.src + r * I.src_row_bytes, out, I.cols);
}

void PackedMatrix::matmul(const float* x, int64_t m, int64_t ldx, float* y, int64_t ldy, ThreadPool& pool) const {
  const MatmulOut out{this, y, ldy};
  matmul_shared_input(x, m, ldx, std::span<const MatmulOut>(&out, 1), pool);
}

void matmul_shared_input(const float* x, int64_t m, int64_t ldx, std::span<const MatmulOut> outs, ThreadPool& pool) {
  if (m <= 0 || outs.empty()) return;
  if (outs.size() > kMaxSharedInput) throw std::invalid_argument("matmul_shared_input: too many matrices");
  const Kernels& K = kernels_for(active_cpu_path());
  const int nt = pool.size();
  const int n_mats = static_cast<int>(outs.size());

  // Per matrix: its kernel arguments; the activations are quantized once per format (kind, offset, length) and
  // shared by the matrices that read that format. The buffers belong to the calling thread and only grow.
  static thread_local ActBuf act_bufs[kMaxSharedInput];
  GemmArgs args[kMaxSharedInput];
  kern::GemmFn fns[kMaxSharedInput];
  int64_t first_group[kMaxSharedInput + 1];
  int64_t align[kMaxSharedInput];
  int64_t total_groups = 0;
  for (int j = 0; j < n_mats; ++j) {
    const PackedMatrix::Impl& I = *outs[j].w->impl_;
    const int wi = static_cast<int>(I.wt);
    GemmArgs& a = args[j];
    a.w = I.packed.data();
    a.group_bytes = I.group_bytes;
    a.K = I.cols;
    a.rows = I.rows;
    a.m = m;
    a.y = outs[j].y;
    a.ldy = outs[j].ldy;
    a.x = x;
    a.ldx = ldx;
    a.al = kern::make_act_layout(kern::act_kind(I.wt), I.cols);
    a.g0 = 0;
    a.g1 = I.n_groups;
    fns[j] = K.gemm[wi];
    first_group[j] = total_groups;
    total_groups += I.n_groups;
    align[j] = I.n_groups >= 8 * nt ? 4 : I.n_groups >= 4 * nt ? 2 : 1;
    if (a.al.kind == ActKind::F32) continue;
    const int off = K.act_offset[wi];
    int same = -1;
    for (int i = 0; i < j && same < 0; ++i) {
      const PackedMatrix::Impl& P = *outs[i].w->impl_;
      if (args[i].al.kind == a.al.kind && P.cols == I.cols && K.act_offset[static_cast<int>(P.wt)] == off) same = i;
    }
    if (same >= 0) {
      a.act = args[same].act;
      continue;
    }
    act_bufs[j].reserve(m * a.al.stride);
    a.act = act_bufs[j].p;
    const kern::QuantFn qf = a.al.kind == ActKind::Q8B32 ? K.quant32 : K.quant256;
    uint8_t* dst = act_bufs[j].p;
    const ActLayout al = a.al;
    if (m == 1 || nt == 1) {
      for (int64_t i = 0; i < m; ++i) qf(x + i * ldx, dst + i * al.stride, al, off);
    } else {
      // One reference captured: std::function keeps it inline (no allocation per call).
      struct QJob {
        kern::QuantFn qf;
        const float* x;
        int64_t ldx, m;
        uint8_t* dst;
        const ActLayout* al;
        int off;
      } job{qf, x, ldx, m, dst, &al, off};
      pool.run([&job](int ti, int tn) {
        int64_t b, e;
        split_range(job.m, ti, tn, 1, &b, &e);
        for (int64_t i = b; i < e; ++i) job.qf(job.x + i * job.ldx, job.dst + i * job.al->stride, *job.al, job.off);
      });
    }
  }
  first_group[n_mats] = total_groups;

  if (nt == 1 || total_groups == 1) {
    for (int j = 0; j < n_mats; ++j) fns[j](args[j]);
    return;
  }
  // The matrices' row groups, one after another, are handed out in shrinking chunks (guided self-scheduling): each
  // claim takes half of a thread's share of what is left, never less than the matrix's `align` groups, and never
  // across two matrices. The two cores of a small machine stream at different rates from minute to minute, and
  // equal halves left the faster one spinning for ~19 us a matmul (measured: 11% of decode time in the pool's wait
  // loops with TinyLlama Q4_K_M); one region for q/k/v and one for gate/up also save two ramps and tails a layer.
  // Multiples of 4 (or 2) keep the kernels' multi-group decode tiles whole where counts allow. Which thread
  // computes a row never changes its result.
  struct alignas(64) GJob {
    const GemmArgs* args;
    const kern::GemmFn* fns;
    const int64_t* first_group;  // matrix j's groups are [first_group[j], first_group[j + 1])
    const int64_t* align;
    int64_t total, divisor;
    alignas(64) std::atomic<int64_t> next{0};
  } job{args, fns, first_group, align, total_groups, 2 * static_cast<int64_t>(nt)};
  pool.run([&job](int, int) {
    int64_t g = job.next.load(std::memory_order_relaxed);
    for (;;) {
      if (g >= job.total) return;
      int j = 0;
      while (g >= job.first_group[j + 1]) ++j;
      const int64_t al = job.align[j];
      const int64_t chunk = std::min(std::max(al, ((job.total - g) / job.divisor + al - 1) / al * al),
                                     job.first_group[j + 1] - g);
      if (!job.next.compare_exchange_weak(g, g + chunk, std::memory_order_relaxed)) continue;
      GemmArgs t = job.args[j];
      t.g0 = g - job.first_group[j];
      t.g1 = t.g0 + chunk;
      job.fns[j](t);
      g = job.next.load(std::memory_order_relaxed);
    }
  });
}

CpuPath best_cpu_path() { return g_best; }

void force_cpu_path(CpuPath p) {
  if (static_cast<int>(p) > static_cast<int>(g_best)) p = g_best;
  g_active.store(static_cast<int>(p));
}

CpuPath active_cpu_path() { return static_cast<CpuPath>(g_active.load(std::memory_order_relaxed)); }

const char* cpu_path_name(CpuPath p) {
  switch (p) {
    case CpuPath::Scalar: return "scalar";
    case CpuPath::Avx2: return "avx2";
    case CpuPath::Avx512: return "avx512";
    case CpuPath::Simd128: return "simd128";
  }
  return "?";
}

}  // namespace vireo::cpu
