// Weight matrices prepared for the CPU kernels, and the matrix products the forward pass runs on them.
//
// A weight W has `rows` output features of `cols` inputs each (GGUF shape [cols, rows]: ne0 = cols).
// y = x · Wᵀ for m activation rows: y[i][r] = sum_c W[r][c] * x[i][c].
// The fast path quantizes x on the fly to the activation format the weight's dot product wants
// (Q8_K for k-quants, Q8_0/Q8_1 for the 32-blocks) and dispatches to AVX-512 VNNI / AVX2 / scalar at run time.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "backend/cpu/thread_pool.h"
#include "core/dtype.h"

namespace vireo::cpu {

struct MatmulOut;

class PackedMatrix {
 public:
  // `data` holds rows * row_bytes(type, cols) bytes in GGUF layout and must outlive this object
  // (it is usually the memory map); an implementation may instead keep a repacked copy of its own.
  // With a pool, the repacking is spread over its threads.
  PackedMatrix(DType type, const void* data, int64_t rows, int64_t cols, ThreadPool* pool = nullptr);
  ~PackedMatrix();
  PackedMatrix(PackedMatrix&&) noexcept;
  PackedMatrix& operator=(PackedMatrix&&) noexcept;

  DType type() const;
  int64_t rows() const;
  int64_t cols() const;
  // Weight bytes one full product streams from memory (for roofline figures).
  int64_t bytes() const;

  // y[i*ldy + r] = sum_c W[r][c] * x[i*ldx + c] for i in [0, m), r in [0, rows). Uses all pool threads.
  void matmul(const float* x, int64_t m, int64_t ldx, float* y, int64_t ldy, ThreadPool& pool) const;
  // Row r as f32 (embedding lookup).
  void dequantize_row(int64_t r, float* out) const;

  struct Impl;

 private:
  friend void matmul_shared_input(const float*, int64_t, int64_t, std::span<const MatmulOut>, ThreadPool&);
  std::unique_ptr<Impl> impl_;
};

// Products that share their input: outs[j].y = x · outs[j].wᵀ (as PackedMatrix::matmul) for every j, as one parallel
// region (a layer's q/k/v or gate/up), with x quantized once per activation format.
struct MatmulOut {
  const PackedMatrix* w;
  float* y;
  int64_t ldy;
};
constexpr size_t kMaxSharedInput = 4;
void matmul_shared_input(const float* x, int64_t m, int64_t ldx, std::span<const MatmulOut> outs, ThreadPool& pool);

// Which instruction-set paths this CPU supports, and a way to force a lower one (tests compare the paths).
enum class CpuPath { Scalar = 0, Avx2 = 1, Avx512 = 2, Simd128 = 3 };  // Simd128: WebAssembly builds only
CpuPath best_cpu_path();
void force_cpu_path(CpuPath p);  // for tests/benchmarks; never above best_cpu_path()
CpuPath active_cpu_path();
const char* cpu_path_name(CpuPath p);

}  // namespace vireo::cpu
