// Host side of the weight layouts of formats.cuh: which layout a GGUF tensor gets, and the conversion from GGUF
// bytes. Types without a kernel of their own (Q4_1, Q5_0, Q5_1, Q2_K, Q3_K) are dequantized with the reference
// dequantizer and stored as F16.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "backend/cuda/formats.cuh"
#include "quant/blocks.h"
#include "quant/quant.h"

namespace vireo::VIREO_CUDA_NS {

struct PackPlan {
  DType src = DType::F32;
  WFmt fmt = WFmt::F32;
  int64_t rows = 0, K = 0, Kp = 0, row_bytes = 0, nb = 0;
  int64_t aux_offset = 0;   // byte offset of the aux array (0: none)
  int64_t total_bytes = 0;  // q region + aux region
  bool verbatim = false;    // the GGUF bytes are the q region as they are
};

// Chooses the layout; returns false (with a reason) for types that cannot be used as a matrix.
inline bool plan_matrix(DType t, int64_t rows, int64_t K, PackPlan* p, std::string* why) {
  PackPlan r;
  r.src = t;
  r.rows = rows;
  r.K = K;
  const DTypeInfo& info = dtype_info(t);
  if (K <= 0 || rows <= 0 || K % info.block_elems != 0) {
    *why = "row length " + std::to_string(K) + " is not a multiple of the block size of " + std::string(info.name);
    return false;
  }
  switch (t) {
    case DType::F32: r.fmt = WFmt::F32; break;
    case DType::F16: r.fmt = WFmt::F16; break;
    case DType::BF16: r.fmt = WFmt::BF16; break;
    case DType::Q8_0: r.fmt = WFmt::Q8_0; break;
    case DType::Q4_0: r.fmt = WFmt::Q4_0; break;
    case DType::Q4_K: r.fmt = WFmt::Q4_K; break;
    case DType::Q5_K: r.fmt = WFmt::Q5_K; break;
    case DType::Q6_K: r.fmt = WFmt::Q6_K; break;
    default:
      if (!can_dequantize(t)) {
        *why = "type " + std::string(info.name) + " cannot be used as a weight matrix";
        return false;
      }
      r.fmt = WFmt::F16;  // fallback through the reference dequantizer
  }
  r.Kp = wfmt_is_float(r.fmt) ? round_up(K, 8) : K;
  switch (r.fmt) {
    case WFmt::F32: r.row_bytes = r.Kp * 4; break;
    case WFmt::F16:
    case WFmt::BF16: r.row_bytes = r.Kp * 2; break;
    case WFmt::Q8_0: r.nb = K / 32; r.row_bytes = K; break;
    case WFmt::Q4_0: r.nb = K / 32; r.row_bytes = K / 2; break;
    case WFmt::Q4_K: r.nb = K / 256; r.row_bytes = r.nb * 144; break;
    case WFmt::Q5_K: r.nb = K / 256; r.row_bytes = r.nb * 176; break;
    case WFmt::Q6_K: r.nb = K / 256; r.row_bytes = r.nb * 208; break;
    default: break;
  }
  const int64_t q_bytes = r.rows * r.row_bytes;
  const bool has_aux = r.fmt == WFmt::Q8_0 || r.fmt == WFmt::Q4_0 || r.fmt == WFmt::Q6_K;
  r.aux_offset = has_aux ? round_up(q_bytes, 256) : 0;
  // 16 spare bytes after aux: qgemm_frag.cu copies the aligned 4-byte word around a Q6_K d (cp.async of 4 bytes).
  r.total_bytes = has_aux ? r.aux_offset + r.rows * r.nb * 2 + 16 : q_bytes;
  r.verbatim = (t == DType::Q4_K || t == DType::Q5_K) ||
               ((t == DType::F32 || t == DType::F16 || t == DType::BF16) && r.Kp == K);
  *p = r;
  return true;
}

inline MatView view_of(const PackPlan& p, const uint8_t* base) {
  MatView m;
  m.fmt = p.fmt;
  m.rows = p.rows;
  m.K = p.K;
  m.Kp = p.Kp;
  m.row_bytes = p.row_bytes;
  m.nb = p.nb;
  m.q = base;
  m.aux = p.aux_offset ? reinterpret_cast<const uint16_t*>(base + p.aux_offset) : nullptr;
  return m;
}

// Converts GGUF rows [r0, r1) (src points at row r0) into q_dst (row r0 of the q region) and aux_dst (row r0 of
// the aux region, when the layout has one).
inline void pack_rows(const PackPlan& p, const uint8_t* src, int64_t r0, int64_t r1, uint8_t* q_dst,
                      uint16_t* aux_dst) {
  const int64_t src_row = row_bytes(p.src, p.K);
  std::vector<float> tmp;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* s = src + (r - r0) * src_row;
    uint8_t* q = q_dst + (r - r0) * p.row_bytes;
    uint16_t* aux = aux_dst ? aux_dst + (r - r0) * p.nb : nullptr;
    switch (p.fmt) {
      case WFmt::F32:
      case WFmt::F16:
      case WFmt::BF16:
        if (p.src == DType::F32 || p.src == DType::F16 || p.src == DType::BF16) {
          std::memcpy(q, s, static_cast<size_t>(src_row));
          std::memset(q + src_row, 0, static_cast<size_t>(p.row_bytes - src_row));
        } else {  // fallback: reference dequantizer, then f16
          tmp.resize(static_cast<size_t>(p.K));
          dequantize_row(p.src, s, tmp.data(), p.K);
          uint16_t* h = reinterpret_cast<uint16_t*>(q);
          for (int64_t k = 0; k < p.Kp; ++k) h[k] = k < p.K ? fp32_to_fp16(tmp[k]) : 0;
        }
        break;
      case WFmt::Q8_0:
        for (int64_t b = 0; b < p.nb; ++b) {
          BlockQ8_0 blk;
          std::memcpy(&blk, s + b * sizeof(BlockQ8_0), sizeof blk);
          std::memcpy(q + 32 * b, blk.qs, 32);
          aux[b] = blk.d;
        }
        break;
      case WFmt::Q4_0:
        for (int64_t b = 0; b < p.nb; ++b) {
          BlockQ4_0 blk;
          std::memcpy(&blk, s + b * sizeof(BlockQ4_0), sizeof blk);
          std::memcpy(q + 16 * b, blk.qs, 16);
          aux[b] = blk.d;
        }
        break;
      case WFmt::Q4_K:
      case WFmt::Q5_K:
        std::memcpy(q, s, static_cast<size_t>(p.row_bytes));
        break;
      case WFmt::Q6_K:
        for (int64_t b = 0; b < p.nb; ++b) {
          BlockQ6_K blk;
          std::memcpy(&blk, s + b * sizeof(BlockQ6_K), sizeof blk);
          uint8_t* body = q + 208 * b;
          std::memcpy(body, blk.ql, 128);
          std::memcpy(body + 128, blk.qh, 64);
          std::memcpy(body + 192, blk.scales, 16);
          aux[b] = blk.d;
        }
        break;
      default:
        break;
    }
  }
}

}  // namespace vireo::VIREO_CUDA_NS
