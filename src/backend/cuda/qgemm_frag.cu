// Matrix-matrix for a few dozen tokens (batched decode) over Q4_K / Q6_K weights: each lane dequantizes exactly
// the weights of its own tensor-core fragments, with no shared-memory weight tile to decode into and no barrier
// per K step (qgemm.cu decodes 64 x 64 tiles into shared memory and multiplies them with WMMA: latency-bound).
//
//   y[token][row] = sum over k of x[token][k] * w[row][k]      (x: f16 rows of Kp, prep_act_f16; y: f32)
//
// Block: 8 warps x 16 weight rows (128 rows) and 8 * NT tokens (NT = 2, 4, 8: 16, 32, 64 tokens); K advances
// one 256-element super-block at a time, and is split over gridDim.z blocks for small matrices. One launch may
// cover up to 3 matrices of one format and K over the same activations (segments: q/k/v, gate/up), their row
// blocks side by side in gridDim.x.
//   ring       the super-block's weights (128 rows, GGUF bytes) and activations ([8 NT tokens][256 k] f16) are
//              copied by cp.async into a ring of up to 4 stages in shared memory, S - 1 super-blocks ahead of
//              the one multiplied; one barrier a super-block. Consecutive threads copy consecutive 16-byte
//              units (of the block's weight rows, then of each token's activations), so a warp's copies are
//              contiguous: H100, 8B x64 6,381 -> 6,842 tok/s against each thread keeping one row and one token
//              (2026-12-07). (A first version kept one super-block of weights in flight in registers: it
//              waited on memory latency every super-block; 8B x64 5,793 vs 6,218 tok/s.)
//              Under programmatic dependent launch the first stages' weights are requested before waiting for
//              the previous kernel (only the activations depend on it).
//   weights    lane (group g, tig t) reads of rows g and g + 8 of its warp the quarter of the super-block that
//              unit t of the matvec layout names (formats.cuh: Q4_K elements 64t..64t+63; Q6_K elements
//              128n + 32c + 16e + 0..15 for c = 0..3, t = 2n + e) and dequantizes it to f16 pairs in registers.
//   tokens     activation rows in shared memory with their 16-byte units XOR-swizzled, so a quarter-warp's loads
//              hit 8 different bank groups.
//   product    mma.sync m16n8k16 (f16 in, f32 accumulation). The k order inside one product is free as long as A
//              and B agree: step s of lane t takes the 4 consecutive elements k0(s, t) .. k0 + 3 of its own
//              quarter (A: two f16 pairs per row; B: 8 bytes of the token's row), so every lane dequantizes only
//              what it read. Each 16-byte activation load feeds 2 products; each weight pair feeds NT products.
//   out        partial sums of a K split go to the scratch [splits][m][rows of all segments] that qgemm.cu's
//              reduce_segs adds in a fixed order (deterministic), else straight to each segment's y.
#include <algorithm>
#include <type_traits>

#include "backend/cuda/kernels.h"

namespace vireo::VIREO_CUDA_NS {
namespace {

constexpr int kBM = 128;  // rows a block: 8 warps of one 16-row tile
constexpr int kSB = 256;          // K of one super-block (Q4_K / Q6_K block)
constexpr int kTokBytes = 2 * kSB;  // one token's activations of a super-block in shared memory

// One matrix of a launch: its row blocks end at block_end (counted over the launch), its outputs go to y + z *
// z_stride (row stride ldy) for K split z.
struct FragSeg {
  MatView w;
  float* y;
  int64_t ldy, z_stride;
  int block_end;
};
struct FragLaunch {
  FragSeg seg[kFragMaxSegs];  // unused segments repeat the last one (never selected: their blocks are empty)
};

// Per format: how a row's super-block is copied to shared memory (copy_unit), what a lane reads of it (Raw), the
// f16 scales it derives (Scales), the two f16 pairs of step s (elements k0 .. k0 + 3 of the super-block,
// k0 = 4 * (16-byte unit) + 4 * (s & 1)), and the swizzle of the activation units that keeps a quarter-warp's
// loads of step s on 8 distinct bank groups.
template <WFmt F>
struct Frag;

// Q4_K, lane t: elements 64t + 32h + 4i + (0..3) (h = nibble, i = word of the lane's 32 qs bytes) are step
// s = 8h + i; sub-block 2t + h; 16-byte unit 8t + 4h + i/2.
template <>
struct Frag<WFmt::Q4_K> {
  struct Raw {
    uint4 head, q0, q1;
  };
  struct Scales {
    uint32_t s2[2], nm2[2];  // per nibble h: (d * scale) and -(dmin * min) in both halves
  };
  // A row's super-block in shared memory is the 144-byte block as it is (a stride of 144 puts
  // a quarter-warp's 16-byte loads on 8 different bank groups).
  static constexpr int kRowBytes = 144, kUnits = 9;
  // wrow: the row's bytes, arow: its first aux index (row * nb).
  VDEV static void copy_unit(uint8_t* dst_row, const MatView&, const uint8_t* wrow, int64_t, int64_t sb, int u) {
    cp_async16(dst_row + 16 * u, wrow + sb * 144 + 16 * u, true);
  }
  VDEV static Raw load_smem(const uint8_t* p, int t, int) {
    return {*reinterpret_cast<const uint4*>(p), *reinterpret_cast<const uint4*>(p + 16 + 32 * t),
            *reinterpret_cast<const uint4*>(p + 32 + 32 * t)};
  }
  VDEV static Scales scales(const Raw& r, int t) {
    const float d = h2f(static_cast<uint16_t>(r.head.x & 0xffff)), dmin = h2f(static_cast<uint16_t>(r.head.x >> 16));
    Scales s;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      int sc, mn;
      k4_scale_min_words(r.head.y, r.head.z, r.head.w, 2 * t + h, &sc, &mn);
      const float dd = d * static_cast<float>(sc), mm = dmin * static_cast<float>(mn);
      s.s2[h] = pack_f16x2(dd, dd);
      s.nm2[h] = pack_f16x2(-mm, -mm);
    }
    return s;
  }
  template <int S>
  VDEV static void pairs(const Raw& r, const Scales& sc, uint32_t& p0, uint32_t& p1) {
    constexpr int h = S >> 3, i = S & 7;
    const uint32_t word = word_of(i < 4 ? r.q0 : r.q1, i % 4);
    p0 = q4k_f16_pair(word, 0, 4 * h, sc.s2[h], sc.nm2[h]);
    p1 = q4k_f16_pair(word, 1, 4 * h, sc.s2[h], sc.nm2[h]);
  }
  template <int S>
  VDEV static int unit(int t) {
    return 8 * t + 4 * (S >> 3) + (S & 7) / 2;
  }
  // A quarter-warp (groups g, g + 1; t = 0..3) reads units 8t + c: XOR t and the token's parity into bits 0..2.
  VDEV static int swizzle(int u, int tok) { return u ^ ((u >> 3) & 3) ^ ((tok & 1) << 2); }
};

// Q6_K (ql[128] | qh[64] | scales[16], d in aux), lane t = 2n + e: elements 128n + 32c + 16e + 4i + (0..3)
// (i = word of the lane's 16 bytes of ql / qh, c = which nibble of ql and which 2 bits of qh) are step s = 4c + i;
// scale 8n + 2c + e; 16-byte unit 16n + 4c + 2e + i/2.
template <>
struct Frag<WFmt::Q6_K> {
  struct Raw {
    uint4 la, lb, qh;  // ql[64n + 16e ..], ql[64n + 32 + 16e ..], qh[32n + 16e ..]
    uint2 sc8;         // scales[8n .. 8n + 7]
    uint32_t d;        // f16 bits
  };
  struct Scales {
    uint32_t s2[4];  // per c: d * scale in both halves
  };
  // In shared memory: the 208-byte body, then at 208 the aligned 4-byte word of aux that holds d (repack.cuh
  // leaves spare bytes after aux), padded to 224 (a quarter-warp's loads on 8 different bank groups).
  static constexpr int kRowBytes = 224, kUnits = 14;
  VDEV static void copy_unit(uint8_t* dst_row, const MatView& w, const uint8_t* wrow, int64_t arow, int64_t sb,
                            int u) {
    if (u < 13) cp_async16(dst_row + 16 * u, wrow + sb * 208 + 16 * u, true);
    else cp_async4(dst_row + 208, w.aux + ((arow + sb) & ~int64_t{1}));
  }
  // parity: of the aux index of d (which half of the copied word holds it).
  VDEV static Raw load_smem(const uint8_t* p, int t, int parity) {
    const int n = t >> 1, e = t & 1;
    Raw r;
    r.la = *reinterpret_cast<const uint4*>(p + 64 * n + 16 * e);
    r.lb = *reinterpret_cast<const uint4*>(p + 64 * n + 32 + 16 * e);
    r.qh = *reinterpret_cast<const uint4*>(p + 128 + 32 * n + 16 * e);
    r.sc8 = *reinterpret_cast<const uint2*>(p + 192 + 8 * n);
    r.d = *reinterpret_cast<const uint32_t*>(p + 208) >> (16 * parity) & 0xffffu;
    return r;
  }
  VDEV static Scales scales(const Raw& r, int t) {
    const int e = t & 1;
    const float d = h2f(static_cast<uint16_t>(r.d));
    Scales s;
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const int b = e + 2 * c;  // byte of sc8
      const uint32_t word = b < 4 ? r.sc8.x : r.sc8.y;
      const float v = d * static_cast<float>(static_cast<int8_t>((word >> (8 * (b & 3))) & 0xff));
      s.s2[c] = pack_f16x2(v, v);
    }
    return s;
  }
  template <int S>
  VDEV static void pairs(const Raw& r, const Scales& sc, uint32_t& p0, uint32_t& p1) {
    constexpr int c = S >> 2, i = S & 3, lshift = c >= 2 ? 4 : 0, hshift = 2 * c;
    const uint32_t lw = word_of((c & 1) ? r.lb : r.la, i), hw = word_of(r.qh, i);
    p0 = q6k_f16_pair(lw, hw, 0, lshift, hshift, sc.s2[c]);
    p1 = q6k_f16_pair(lw, hw, 1, lshift, hshift, sc.s2[c]);
  }
  template <int S>
  VDEV static int unit(int t) {
    return 16 * (t >> 1) + 4 * (S >> 2) + 2 * (t & 1) + (S & 3) / 2;
  }
  // A quarter-warp reads units 16n + 2e + c: XOR n into bit 0 and the token's parity into bit 2.
  VDEV static int swizzle(int u, int tok) { return u ^ ((u >> 4) & 1) ^ ((tok & 1) << 2); }
};

// acc += this lane's share of one super-block over its warp's 16 rows (cur: rows g, g + 8) and NT token tiles of
// 8 (activations xst, [8 NT][kTokBytes]). (Warps of 32 rows x half the tokens, which halve the shared-memory
// reads of activations for twice the dequantization, lost on an H100: 8B x64 5,650 vs 6,381 tok/s. Issuing a
// step pair's two products on one token tile NT products away from each other instead of back to back made no
// difference on an H100: ptxas interleaves them anyway.)
template <class Fr, int NT>
VDEV void multiply_sb(const typename Fr::Raw (&cur)[2], int t, int g, const uint8_t* xst, float (&acc)[NT][4]) {
  const typename Fr::Scales sc0 = Fr::scales(cur[0], t), sc1 = Fr::scales(cur[1], t);
  // Steps 2p and 2p + 1 share one 16-byte activation unit per token.
  auto step_pair = [&](auto pc) {
    constexpr int S = decltype(pc)::value;
    uint32_t a[2][4];  // [step][fragment register]
    Fr::template pairs<S>(cur[0], sc0, a[0][0], a[0][2]);
    Fr::template pairs<S>(cur[1], sc1, a[0][1], a[0][3]);
    Fr::template pairs<S + 1>(cur[0], sc0, a[1][0], a[1][2]);
    Fr::template pairs<S + 1>(cur[1], sc1, a[1][1], a[1][3]);
    const int u = Fr::template unit<S>(t);
#pragma unroll
    for (int j = 0; j < NT; ++j) {
      const int tok = 8 * j + g;
      const uint4 b = *reinterpret_cast<const uint4*>(xst + tok * kTokBytes + 16 * Fr::swizzle(u, tok));
      mma_f16_k16(acc[j], a[0][0], a[0][1], a[0][2], a[0][3], b.x, b.y);
      mma_f16_k16(acc[j], a[1][0], a[1][1], a[1][2], a[1][3], b.z, b.w);
    }
  };
  step_pair(std::integral_constant<int, 0>{});
  step_pair(std::integral_constant<int, 2>{});
  step_pair(std::integral_constant<int, 4>{});
  step_pair(std::integral_constant<int, 6>{});
  step_pair(std::integral_constant<int, 8>{});
  step_pair(std::integral_constant<int, 10>{});
  step_pair(std::integral_constant<int, 12>{});
  step_pair(std::integral_constant<int, 14>{});
}

// Shared memory: S stages of [weights kBM rows x kRowBytes | activations 8 NT tokens x kTokBytes], S <= 4,
// within what one block may use (227 KB): one block (8 warps, up to 255 registers) a multiprocessor. (Two blocks
// a multiprocessor, with 128 registers and a ring in half the shared memory, lost on an H100: 8B x64 +0.3%, 1B
// x64 -14%.)
constexpr int kSmemMax = 227 * 1024;
template <WFmt F, int NT>
VHD constexpr int ring_stage_bytes() {
  return kBM * Frag<F>::kRowBytes + 8 * NT * kTokBytes;
}
template <WFmt F, int NT>
VHD constexpr int ring_stages() {
  return kSmemMax / ring_stage_bytes<F, NT>() >= 4 ? 4 : kSmemMax / ring_stage_bytes<F, NT>();
}
template <WFmt F, int NT>
VHD constexpr int ring_smem() {
  return ring_stages<F, NT>() * ring_stage_bytes<F, NT>();
}

template <WFmt F, int NT>
__global__ void __launch_bounds__(256, 1)
    qgemm_frag_kernel(FragLaunch L, const uint16_t* __restrict__ x, int m, int64_t sb_per_split) {
  using Fr = Frag<F>;
  constexpr int S = ring_stages<F, NT>(), kTok = 8 * NT;
  constexpr int kWBytes = kBM * Fr::kRowBytes, kStage = ring_stage_bytes<F, NT>();
  static_assert(S >= 2, "a ring needs two stages");
  VDYN_SHARED(uint8_t, sm);  // [S stages][weights kBM x kRowBytes | activations kTok x kTokBytes]
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int g = lane >> 2, t = lane & 3;
  // The segment (matrix) of this row block: blocks [first, block_end) of segment s; the compiler keeps the
  // selects in registers (a dynamic index into the parameters would go through local memory).
  const int bx = static_cast<int>(blockIdx.x);
  const int si = bx < L.seg[0].block_end ? 0 : (bx < L.seg[1].block_end ? 1 : 2);
  const FragSeg& sg = si == 0 ? L.seg[0] : (si == 1 ? L.seg[1] : L.seg[2]);
  const MatView w = sg.w;
  float* __restrict__ y = sg.y + static_cast<int64_t>(blockIdx.z) * sg.z_stride;
  const int64_t ldy = sg.ldy;
  const int64_t brow0 = static_cast<int64_t>(bx - (si == 0 ? 0 : (si == 1 ? L.seg[0].block_end : L.seg[1].block_end))) * kBM;
  const int wr0 = warp * 16;  // the warp's first row within the block
  const int tok0 = static_cast<int>(blockIdx.y) * kTok;
  const int64_t sb_begin = static_cast<int64_t>(blockIdx.z) * sb_per_split;
  const int64_t sb_end = sb_begin + sb_per_split < w.nb ? sb_begin + sb_per_split : w.nb;

  // Copies: consecutive threads take consecutive 16-byte units (row and unit computed per copy).
  auto issue_weights = [&](int64_t sb, int slot) {
    if (sb < sb_end) {
      uint8_t* st = sm + slot * kStage;
      for (int q = static_cast<int>(threadIdx.x); q < kBM * Fr::kUnits; q += 256) {
        const int r = q / Fr::kUnits, u = q % Fr::kUnits;
        const int64_t row = brow0 + r < w.rows ? brow0 + r : w.rows - 1;
        Fr::copy_unit(st + r * Fr::kRowBytes, w, w.q + row * w.row_bytes, row * w.nb, sb, u);
      }
    }
  };
  auto issue_tokens = [&](int64_t sb, int slot) {
    if (sb < sb_end) {
      uint8_t* xs = sm + slot * kStage + kWBytes;
#pragma unroll
      for (int i = 0; i < kTok * (kTokBytes / 16) / 256; ++i) {
        const int q = static_cast<int>(threadIdx.x) + i * 256;
        const int tok = q / (kTokBytes / 16), u = q % (kTokBytes / 16);
        const bool ok = tok0 + tok < m;
        const uint16_t* src = ok ? x + static_cast<int64_t>(tok0 + tok) * w.Kp + sb * kSB + 8 * u : x;
        cp_async16(xs + tok * kTokBytes + 16 * Fr::swizzle(u, tok), src, ok);
      }
    }
    cp_async_commit();  // an empty group past the end keeps the count that cp_async_wait relies on
  };

  float acc[NT][4];
#pragma unroll
  for (int j = 0; j < NT; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[j][e] = 0.f;

  // The first stages' weights are copied before waiting for the previous kernel (programmatic dependent launch:
  // weights are never written by a step), into the first commit group; the activations it wrote come after.
#pragma unroll
  for (int i = 0; i < S - 1; ++i) issue_weights(sb_begin + i, i);
  pdl_wait();
  pdl_trigger();
#pragma unroll
  for (int i = 0; i < S - 1; ++i) issue_tokens(sb_begin + i, i);
  int slot = 0;
  for (int64_t sb = sb_begin; sb < sb_end; ++sb) {
    cp_async_wait<S - 2>();  // this thread's copies of super-block sb have landed
    __syncthreads();         // everyone's have, and everyone is done with the slot refilled next
    issue_weights(sb + S - 1, slot == 0 ? S - 1 : slot - 1);
    issue_tokens(sb + S - 1, slot == 0 ? S - 1 : slot - 1);
    const uint8_t* st = sm + slot * kStage;
    typename Fr::Raw cur[2];
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int r = wr0 + g + 8 * j;
      const int64_t row = brow0 + r < w.rows ? brow0 + r : w.rows - 1;
      cur[j] = Fr::load_smem(st + r * Fr::kRowBytes, t, static_cast<int>((row * w.nb + sb) & 1));
    }
    multiply_sb<Fr, NT>(cur, t, g, st + kWBytes, acc);
    slot = slot == S - 1 ? 0 : slot + 1;
  }

#pragma unroll
  for (int j = 0; j < NT; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int64_t row = brow0 + wr0 + g + 8 * (e >> 1);
      const int tok = tok0 + 8 * j + 2 * t + (e & 1);
      if (row < w.rows && tok < m) y[static_cast<int64_t>(tok) * ldy + row] = acc[j][e];
    }
}

// Token tiles of 8 a block: as few as cover m, at most max_nt (QfragConfig::max_nt).
int nt_for(int m, int max_nt) { return m <= 16 || max_nt <= 2 ? 2 : (m <= 32 || max_nt <= 4 ? 4 : 8); }

// The launch of segments (up to 3 matrices of one format and K over the same activations) in one grid: row
// blocks of segment 0, then 1, then 2; a split K writes every segment's partial sums into one scratch
// [splits][m][sum of rows], added by one sum kernel.
template <WFmt F, int NT>
void go(const FragOut* outs, int nseg, const uint16_t* x, int m, float* part, int splits, bool pdl, cudaStream_t s) {
  auto* k = &qgemm_frag_kernel<F, NT>;
  int64_t rows = 0;  // of the scratch
  for (int i = 0; i < nseg; ++i) rows += outs[i].w.rows;
  FragLaunch L;
  ReduceSegs red;
  red.nseg = nseg;
  int blocks = 0;
  int64_t row0 = 0;  // the segment's first scratch row
  for (int i = 0; i < kFragMaxSegs; ++i) {
    const FragOut& o = outs[i < nseg ? i : nseg - 1];
    FragSeg& g = L.seg[i];
    g.w = o.w;
    if (i < nseg) {
      blocks += static_cast<int>(ceil_div(o.w.rows, kBM));
      red.y[i] = o.y, red.ldy[i] = o.ldy, red.row_end[i] = row0 + o.w.rows;
    }
    g.block_end = blocks;
    g.y = splits == 1 ? o.y : part + row0;
    g.ldy = splits == 1 ? o.ldy : rows;
    g.z_stride = splits == 1 ? 0 : static_cast<int64_t>(m) * rows;
    if (i < nseg) row0 += o.w.rows;
  }
  const int64_t sb_per_split = ceil_div(outs[0].w.nb, splits);
  const dim3 grid(static_cast<unsigned>(blocks), static_cast<unsigned>(ceil_div(m, 8 * NT)),
                  static_cast<unsigned>(splits));
  constexpr int smem = ring_smem<F, NT>();
  if (pdl) {
    VLAUNCH_PDL(k, grid, dim3(256), smem, s, L, x, m, sb_per_split);
  } else {
    VLAUNCH(k, grid, dim3(256), smem, s, L, x, m, sb_per_split);
  }
  VCHECK_LAUNCH("matmul (tensor-core fragments of quantized weights)");
  if (splits > 1) qgemm_reduce_segs(part, splits, m, red, s);
}

template <WFmt F>
void pick(const FragOut* outs, int nseg, const uint16_t* x, int m, float* part, int splits, const QfragConfig& c,
          cudaStream_t s) {
  switch (nt_for(m, c.max_nt)) {
    case 2: go<F, 2>(outs, nseg, x, m, part, splits, c.pdl, s); break;
    case 4: go<F, 4>(outs, nseg, x, m, part, splits, c.pdl, s); break;
    default: go<F, 8>(outs, nseg, x, m, part, splits, c.pdl, s); break;
  }
}

template <WFmt F, int NT>
void allow_smem() {
  VCUDA(cudaFuncSetAttribute(&qgemm_frag_kernel<F, NT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             ring_smem<F, NT>()),
        "matmul fragments (shared memory)");
}

bool g_frag_smem_ok = false;

}  // namespace

void qgemm_frag_init(size_t smem_optin) {
  g_frag_smem_ok = smem_optin >= static_cast<size_t>(kSmemMax);
  if (!g_frag_smem_ok) return;
  allow_smem<WFmt::Q4_K, 2>(), allow_smem<WFmt::Q4_K, 4>(), allow_smem<WFmt::Q4_K, 8>();
  allow_smem<WFmt::Q6_K, 2>(), allow_smem<WFmt::Q6_K, 4>(), allow_smem<WFmt::Q6_K, 8>();
}

bool qgemm_frag_supported(const MatView& w, int m) {
  return g_frag_smem_ok && m >= 1 && m <= 64 && (w.fmt == WFmt::Q4_K || w.fmt == WFmt::Q6_K) && w.Kp == w.nb * kSB;
}

// The split count with the shortest predicted time, in units of one block's super-block step (~2 us at 64
// tokens on an H100): blocks run in waves of sms (one block a multiprocessor), each block
// pays ~1.5 steps of start-up latency, and a split K adds the sum kernel (~1 step) and its traffic (z partial
// rows written and read, ~2.5 TB/s: 5 MB a step). The previous rule (about two blocks a
// multiprocessor) ran 14336-row matrices in 3 waves of 336 blocks where 112 unsplit blocks fit in one.
int qgemm_frag_splits(const MatView& w, int m, int sms, const QfragConfig& c) {
  const int64_t tiles = ceil_div(w.rows, kBM) * ceil_div(m, 8 * nt_for(m, c.max_nt));
  if (!c.cost_model) {  // the previous rule: about two blocks a multiprocessor, at least 2 super-blocks each
    const int64_t z = std::min<int64_t>(ceil_div(2 * static_cast<int64_t>(std::max(sms, 1)), tiles),
                                        std::max<int64_t>(1, w.nb / 2));
    return static_cast<int>(std::clamp<int64_t>(z, 1, 16));
  }
  const int slots = std::max(sms, 1);
  double best = 0;
  int best_z = 1;
  for (int z = 1; z <= 16 && z <= w.nb; ++z) {
    const int64_t per = ceil_div(w.nb, z);
    if (ceil_div(w.nb, per) < z) continue;  // some splits would be empty: the same time as a smaller z
    const double waves = static_cast<double>(ceil_div(tiles * z, slots));
    const double sum = z > 1 ? 1.0 + static_cast<double>(z) * m * w.rows * 8.0 / 5e6 : 0.0;
    const double t = waves * (static_cast<double>(per) + 1.5) + sum;
    if (z == 1 || t < best - 1e-9) best = t, best_z = z;
  }
  return best_z;
}

MatView frag_launch_view(const MatView* ws, int n) {
  MatView v = ws[0];
  v.rows = 0;
  for (int i = 0; i < n; ++i) v.rows += ceil_div(ws[i].rows, kBM) * kBM;
  return v;
}

void qgemm_frag_multi(const FragOut* outs, int nseg, const uint16_t* x, int m, float* part, int splits,
                      const QfragConfig& c, cudaStream_t s) {
  if (nseg < 1 || nseg > kFragMaxSegs) throw std::runtime_error("CUDA backend: qgemm_frag: 1 to 3 matrices a launch");
  for (int i = 1; i < nseg; ++i)
    if (outs[i].w.fmt != outs[0].w.fmt || outs[i].w.nb != outs[0].w.nb)
      throw std::runtime_error("CUDA backend: qgemm_frag: the matrices of one launch differ in format or K");
  switch (outs[0].w.fmt) {
    case WFmt::Q4_K: pick<WFmt::Q4_K>(outs, nseg, x, m, part, splits, c, s); break;
    case WFmt::Q6_K: pick<WFmt::Q6_K>(outs, nseg, x, m, part, splits, c, s); break;
    default: throw std::runtime_error("CUDA backend: qgemm_frag: unsupported weight layout");
  }
}

void qgemm_frag(const MatView& w, const uint16_t* x, int m, float* y, int64_t ldy, float* part, int splits,
                const QfragConfig& c, cudaStream_t s) {
  const FragOut o{w, y, ldy};
  qgemm_frag_multi(&o, 1, x, m, part, splits, c, s);
}

}  // namespace vireo::VIREO_CUDA_NS
