// Sampling on the GPU's side. Greedy rows need only the index of the largest logit (argmax_rows: slices of the row
// reduced by many blocks, then one block per row), and the step reads back 4 bytes a row instead of the whole
// vocabulary. Sampled rows are drawn here too (sample_rows: one id a row crosses to the host), or, for the host's
// sampler, reduced to the tokens that can still be drawn (within a margin of the largest logit).
#include "backend/cuda/kernels.h"
#include "runtime/backend.h"

namespace vireo::VIREO_CUDA_NS {
namespace {

constexpr int kThreads = 256;

// Same choice as the host's argmax (src/runtime/sampler.cpp): NaN never wins, ties go to the lowest id, a row of
// only NaN gives 0.
VDEV bool better(float v, int i, float bv, int bi) { return bi < 0 || v > bv || (v == bv && i < bi); }

// Block-wide best (value, id) by better() over NT threads; every thread gets the result.
template <int NT>
VDEV void block_best(float* sv, int* si, float& bv, int& bi) {
  const int tid = static_cast<int>(threadIdx.x);
  sv[tid] = bv;
  si[tid] = bi;
  __syncthreads();
  for (int step = NT / 2; step > 0; step /= 2) {
    if (tid < step) {
      const float v = sv[tid + step];
      const int i = si[tid + step];
      if (i >= 0 && better(v, i, sv[tid], si[tid])) sv[tid] = v, si[tid] = i;
    }
    __syncthreads();
  }
  bv = sv[0];
  bi = si[0];
}

// This thread's best (value, id) over row[c] for c = c0, c0 + stride, ... < c1, NaN skipped.
VDEV void row_best(const float* row, int64_t c0, int64_t c1, int stride, float& bv, int& bi) {
  for (int64_t c = c0; c < c1; c += stride) {
    const float v = row[c];
    if (v == v && better(v, static_cast<int>(c), bv, bi)) bv = v, bi = static_cast<int>(c);
  }
}

// counts[tid] = n for each of the NT threads; afterwards counts[] holds the exclusive prefix sums (a Hillis-Steele
// scan). Returns the total (the same in every thread).
template <int NT>
VDEV int scan_counts(int* counts, int tid, int n) {
  counts[tid] = n;
  __syncthreads();
  for (int off = 1; off < NT; off *= 2) {
    const int add = tid >= off ? counts[tid - off] : 0;
    __syncthreads();
    counts[tid] += add;
    __syncthreads();
  }
  const int total = counts[NT - 1];
  const int excl = counts[tid] - n;
  __syncthreads();
  counts[tid] = excl;
  __syncthreads();
  return total;
}

// Argmax in two launches, so that a 128K-entry row is read by many multiprocessors instead of one (one block per
// row cost ~60 us a decode step on an H100): block (b, row) reduces slice b of the row to part[row][b]; then one block per row
// reduces the slices.
constexpr int64_t kArgmaxSlice = 4096;  // columns per block of the first pass

__global__ void __launch_bounds__(kThreads) argmax_slices_kernel(const float* __restrict__ x, int64_t ldx,
                                                                 int64_t cols, ArgmaxPart* __restrict__ part) {
  VSHARED(float, sv, kThreads);
  VSHARED(int, si, kThreads);
  const float* row = x + static_cast<int64_t>(blockIdx.y) * ldx;
  const int64_t c0 = static_cast<int64_t>(blockIdx.x) * kArgmaxSlice;
  const int64_t c1 = c0 + kArgmaxSlice < cols ? c0 + kArgmaxSlice : cols;
  float bv = 0.f;
  int bi = -1;
  row_best(row, c0 + threadIdx.x, c1, kThreads, bv, bi);
  block_best<kThreads>(sv, si, bv, bi);
  if (threadIdx.x == 0) part[static_cast<int64_t>(blockIdx.y) * gridDim.x + blockIdx.x] = {bv, bi};
}

__global__ void __launch_bounds__(kThreads) argmax_finish_kernel(const ArgmaxPart* __restrict__ part, int slices,
                                                                 int32_t* __restrict__ out) {
  VSHARED(float, sv, kThreads);
  VSHARED(int, si, kThreads);
  float bv = 0.f;
  int bi = -1;
  for (int b = static_cast<int>(threadIdx.x); b < slices; b += kThreads) {
    const ArgmaxPart p = part[static_cast<int64_t>(blockIdx.x) * slices + b];
    if (p.i >= 0 && better(p.v, p.i, bv, bi)) bv = p.v, bi = p.i;
  }
  block_best<kThreads>(sv, si, bv, bi);
  if (threadIdx.x == 0) out[blockIdx.x] = bi < 0 ? 0 : bi;  // a row of only NaN gives 0
}

// The tokens within margins[row] of the row's largest logit, in ascending id order (the host sampler's candidate
// list). Each thread owns a contiguous run of ids, so a prefix sum of the per-thread counts gives every candidate
// its place. counts[row] = -1 when there are more than `cap` (or none).
__global__ void __launch_bounds__(kThreads)
    candidates_kernel(const float* __restrict__ x, int64_t ldx, int64_t cols, const float* __restrict__ margins,
                      int cap, float* __restrict__ vals, int32_t* __restrict__ ids, int32_t* __restrict__ counts) {
  VSHARED(float, sv, kThreads);
  VSHARED(int, sc, kThreads);
  const float* row = x + static_cast<int64_t>(blockIdx.x) * ldx;
  const int tid = static_cast<int>(threadIdx.x);
  float top = -INFINITY;
  for (int64_t c = tid; c < cols; c += kThreads)
    if (row[c] > top) top = row[c];  // NaN never compares greater
  sv[tid] = top;
  __syncthreads();
  for (int step = kThreads / 2; step > 0; step /= 2) {
    if (tid < step && sv[tid + step] > sv[tid]) sv[tid] = sv[tid + step];
    __syncthreads();
  }
  const float floor_l = sv[0] - margins[blockIdx.x];
  const int64_t per = (cols + kThreads - 1) / kThreads;
  const int64_t c0 = tid * per, c1 = c0 + per < cols ? c0 + per : cols;
  int mine = 0;
  for (int64_t c = c0; c < c1; ++c) mine += row[c] >= floor_l ? 1 : 0;
  const int total = scan_counts<kThreads>(sc, tid, mine);
  if (total == 0 || total > cap) {
    if (tid == 0) counts[blockIdx.x] = -1;
    return;
  }
  int at = sc[tid];
  float* v = vals + static_cast<int64_t>(blockIdx.x) * cap;
  int32_t* id = ids + static_cast<int64_t>(blockIdx.x) * cap;
  for (int64_t c = c0; c < c1; ++c)
    if (row[c] >= floor_l) v[at] = row[c], id[at] = static_cast<int32_t>(c), ++at;
  if (tid == 0) counts[blockIdx.x] = total;
}

// ---- drawing a token on the GPU: Sampler::sample_candidates's rule (src/runtime/sampler.cpp) ----
// The candidates are the tokens within `margin` of the row's largest logit; then top-k (largest first, ties to the
// lower id), softmax at the temperature, min-p, top-p over the sorted set, and the draw at the host's uniform. The
// host sums in double where this kernel sums in f32, so a draw within rounding of a boundary may take the
// neighbour. One block per row; candidates live in shared memory (kSampleCap of them): a row with more gets -1
// unless a top-k of at most kSampleCap cuts them (a radix select over the values' bits finds the k-th largest).
constexpr int kSampleCap = 1024;
constexpr int kSampleThreads = 1024;  // each pass over a 128K-entry row: ~128 loads per thread
constexpr uint32_t kNone = 0xffffffffu;

// a before b: larger value first, then the lower id (the host's order)
VDEV bool before(float av, uint32_t ai, float bv, uint32_t bi) { return av > bv || (av == bv && ai < bi); }

VDEV uint32_t f32_bits(float v) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(v);
#else
  uint32_t b;
  std::memcpy(&b, &v, 4);
  return b;
#endif
}
// An order-preserving key of a non-NaN float (-0 and +0 equal, as the comparisons see them).
VDEV uint32_t key_of(float v) {
  const uint32_t b = v == 0.f ? 0u : f32_bits(v);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// Sorts v/id[0, n) by before(): bitonic over the next power of two, padded past the end with -inf.
VDEV void sort_candidates(float* v, uint32_t* id, int tid, int n) {
  int n2 = 1;
  while (n2 < n) n2 <<= 1;
  for (int i = n + tid; i < n2; i += kSampleThreads) v[i] = -INFINITY, id[i] = kNone;
  __syncthreads();
  for (int k = 2; k <= n2; k <<= 1) {
    for (int j = k >> 1; j > 0; j >>= 1) {
      for (int i = tid; i < n2; i += kSampleThreads) {
        const int l = i ^ j;
        if (l > i) {
          const bool up = (i & k) == 0;  // this half sorts in before() order, the other half reversed
          const bool swap = up ? before(v[l], id[l], v[i], id[i]) : before(v[i], id[i], v[l], id[l]);
          if (swap) {
            const float tv = v[i];
            const uint32_t ti = id[i];
            v[i] = v[l], id[i] = id[l];
            v[l] = tv, id[l] = ti;
          }
        }
      }
      __syncthreads();
    }
  }
}

__global__ void __launch_bounds__(kSampleThreads) sample_rows_kernel(const float* __restrict__ x, int64_t ldx, int64_t cols,
                                                               const DeviceSampleRow* __restrict__ rows,
                                                               int32_t* __restrict__ out) {
  VSHARED(float, cand_v, kSampleCap);  // candidate logits, then their probabilities
  VSHARED(uint32_t, cand_i, kSampleCap);
  VSHARED(int, counts, kSampleThreads);
  VSHARED(int, hist, 256);
  VSHARED(float, sv, kSampleThreads);
  VSHARED(int, si, kSampleThreads);
  VSHARED(int, pub, 2);  // values thread 0 hands to the block
  const int tid = static_cast<int>(threadIdx.x);
  const DeviceSampleRow rp = rows[blockIdx.x];
  const float* row = x + static_cast<int64_t>(blockIdx.x) * ldx;

  // ---- the largest logit (lowest id on ties, NaN skipped) ----
  float bv = 0.f;
  int bi = -1;
  row_best(row, tid, cols, kSampleThreads, bv, bi);
  block_best<kSampleThreads>(sv, si, bv, bi);
  const float top_v = bv;
  const int top_i = bi;
  // Greedy, every logit NaN (0: the host's argmax), or a largest logit of -inf (the host then takes its first
  // candidate: the lowest id that is not NaN, which is the argmax here).
  if (rp.temperature <= 0.f || top_i < 0 || top_v == -INFINITY) {
    if (tid == 0) out[blockIdx.x] = top_i < 0 ? 0 : top_i;
    return;
  }

  // ---- candidates: each thread owns a contiguous stretch of ids, so prefix sums keep them in id order ----
  const float floor_l = top_v - rp.margin;
  const int64_t chunk = (cols + kSampleThreads - 1) / kSampleThreads;
  const int64_t c0 = tid * chunk < cols ? tid * chunk : cols, c1 = c0 + chunk < cols ? c0 + chunk : cols;
  int mine = 0;
  for (int64_t c = c0; c < c1; ++c) mine += row[c] >= floor_l ? 1 : 0;
  const int found = scan_counts<kSampleThreads>(counts, tid, mine);
  const int k = rp.top_k > 0 ? rp.top_k : 0;
  int n = found;
  bool sorted = false;
  if (found <= kSampleCap) {
    int o = counts[tid];
    for (int64_t c = c0; c < c1; ++c) {
      const float v = row[c];
      if (v >= floor_l) cand_v[o] = v, cand_i[o] = static_cast<uint32_t>(c), ++o;
    }
    __syncthreads();
    if ((k > 0 && k < found) || rp.top_p < 1.f) {
      sort_candidates(cand_v, cand_i, tid, found);
      sorted = true;
      if (k > 0 && k < found) n = k;
    }
  } else if (k > 0 && k <= kSampleCap) {
    // ---- radix select, 8 bits at a time from the top: the key of the k-th largest candidate ----
    uint32_t prefix = 0;
    int want = k;  // how many of the candidates whose key starts with `prefix` are still to be taken
    for (int d = 0; d < 4; ++d) {
      const int shift = 24 - 8 * d;
      const uint32_t high = d == 0 ? 0u : 0xffffffffu << (shift + 8);  // the digits already fixed
      if (tid < 256) hist[tid] = 0;
      __syncthreads();
      for (int64_t c = tid; c < cols; c += kSampleThreads) {
        const float v = row[c];
        if (v >= floor_l) {
          const uint32_t key = key_of(v);
          if ((key & high) == prefix) atomicAdd(&hist[(key >> shift) & 0xffu], 1);
        }
      }
      __syncthreads();
      if (tid == 0) {
        int above = 0, b = 255;
        for (;;) {
          const int h = hist[b];
          if (above + h >= want || b == 0) break;
          above += h;
          --b;
        }
        pub[0] = static_cast<int>(prefix | (static_cast<uint32_t>(b) << shift));
        pub[1] = want - above;
      }
      __syncthreads();
      prefix = static_cast<uint32_t>(pub[0]);
      want = pub[1];
      __syncthreads();
    }
    // Everything above the k-th key, and the lowest-id `want` of the candidates equal to it.
    int equal = 0;
    for (int64_t c = c0; c < c1; ++c) {
      const float v = row[c];
      if (v >= floor_l && key_of(v) == prefix) ++equal;
    }
    if (tid == 0) hist[0] = 0;  // the fill counter (the histogram is done)
    scan_counts<kSampleThreads>(counts, tid, equal);
    int e = counts[tid];
    for (int64_t c = c0; c < c1; ++c) {
      const float v = row[c];
      if (v >= floor_l) {
        const uint32_t key = key_of(v);
        bool take = key > prefix;
        if (key == prefix) take = e++ < want;
        if (take) {
          const int o = atomicAdd(&hist[0], 1);
          cand_v[o] = v;
          cand_i[o] = static_cast<uint32_t>(c);
        }
      }
    }
    __syncthreads();
    n = k;
    sort_candidates(cand_v, cand_i, tid, n);
    sorted = true;
  } else {
    if (tid == 0) out[blockIdx.x] = -1;  // the host reads the row and draws it
    return;
  }

  // ---- softmax at the temperature (unnormalized: the largest is 1) ----
  const float inv_t = 1.f / rp.temperature;
  for (int i = tid; i < n; i += kSampleThreads) cand_v[i] = expf((cand_v[i] - top_v) * inv_t);
  __syncthreads();
  if (tid != 0) return;

  // ---- min-p, top-p and the draw: short sequential passes in the host's order ----
  if (rp.min_p > 0.f) {  // drop p < min_p (order kept); if that drops all, keep the most likely
    int w = 0;
    for (int i = 0; i < n; ++i)
      if (!(cand_v[i] < rp.min_p)) cand_v[w] = cand_v[i], cand_i[w] = cand_i[i], ++w;
    if (w == 0) {
      for (int i = 0; i < n; ++i)
        if (cand_v[i] == 1.f) {
          cand_v[0] = 1.f, cand_i[0] = cand_i[i];
          break;
        }
      w = 1;
    }
    n = w;
  }
  if (rp.top_p < 1.f && sorted) {  // the smallest prefix holding top_p of the mass
    float total = 0.f;
    for (int i = 0; i < n; ++i) total += cand_v[i];
    const float goal = rp.top_p * total;
    float cum = 0.f;
    int keep = n;
    for (int i = 0; i < n; ++i) {
      cum += cand_v[i];
      if (cum >= goal) {
        keep = i + 1;
        break;
      }
    }
    n = keep > 1 ? keep : 1;
  }
  if (n == 0) {  // no candidate (a negative margin): the argmax
    out[blockIdx.x] = top_i;
    return;
  }
  float total = 0.f;
  for (int i = 0; i < n; ++i) total += cand_v[i];
  const float xu = rp.uniform * total;
  float cum = 0.f;
  int pick = -1;
  for (int i = 0; i < n; ++i) {
    cum += cand_v[i];
    if (xu < cum) {
      pick = i;
      break;
    }
  }
  if (pick < 0)  // rounding left the draw past the last boundary: the last candidate with nonzero probability
    for (int i = n; i > 0; --i)
      if (cand_v[i - 1] > 0.f) {
        pick = i - 1;
        break;
      }
  out[blockIdx.x] = static_cast<int32_t>(cand_i[pick < 0 ? 0 : pick]);
}

// One thread per token of a chained decode step (kernels.h: chain_next_step).
// A row the device could not draw (-1) is dropped by the host; token 0 keeps the embedding lookup in bounds.
__global__ void chain_next_step_kernel(int32_t* __restrict__ tokens, int32_t* __restrict__ positions,
                                       int32_t* __restrict__ safe, const int32_t* __restrict__ ids, int n) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i >= n) return;
  tokens[i] = ids[i] < 0 ? 0 : ids[i];
  positions[i] += 1;
  safe[i] += 1;
}

}  // namespace

void sample_rows(const float* x, int64_t ldx, int rows, int64_t cols, const DeviceSampleRow* params, int32_t* out,
                 cudaStream_t s) {
  if (rows <= 0) return;
  auto* k = &sample_rows_kernel;
  VLAUNCH(k, dim3(static_cast<unsigned>(rows)), dim3(kSampleThreads), 0, s, x, ldx, cols, params, out);
  VCHECK_LAUNCH("sampling of the logits rows");
}

void logit_candidates(const float* x, int64_t ldx, int rows, int64_t cols, const float* margins, int cap,
                      float* vals, int32_t* ids, int32_t* counts, cudaStream_t s) {
  if (rows <= 0) return;
  auto* k = &candidates_kernel;
  VLAUNCH(k, dim3(static_cast<unsigned>(rows)), dim3(kThreads), 0, s, x, ldx, cols, margins, cap, vals, ids, counts);
  VCHECK_LAUNCH("candidates of the logits rows");
}

int argmax_slices(int64_t cols) { return static_cast<int>(std::max<int64_t>(1, ceil_div(cols, kArgmaxSlice))); }

void argmax_rows(const float* x, int64_t ldx, int rows, int64_t cols, ArgmaxPart* part, int32_t* out,
                 cudaStream_t s) {
  if (rows <= 0) return;
  const int slices = argmax_slices(cols);
  auto* k1 = &argmax_slices_kernel;
  VLAUNCH(k1, dim3(static_cast<unsigned>(slices), static_cast<unsigned>(rows)), dim3(kThreads), 0, s, x, ldx, cols,
          part);
  VCHECK_LAUNCH("argmax of the logits rows (slices)");
  auto* k2 = &argmax_finish_kernel;
  VLAUNCH(k2, dim3(static_cast<unsigned>(rows)), dim3(kThreads), 0, s, part, slices, out);
  VCHECK_LAUNCH("argmax of the logits rows");
}

void chain_next_step(int32_t* tokens, int32_t* positions, int32_t* safe, const int32_t* ids, int n, cudaStream_t s) {
  if (n <= 0) return;
  auto* k = &chain_next_step_kernel;
  VLAUNCH(k, dim3(static_cast<unsigned>(ceil_div(n, kThreads))), dim3(kThreads), 0, s, tokens, positions, safe, ids,
          n);
  VCHECK_LAUNCH("next step of a decode chain");
}

}  // namespace vireo::VIREO_CUDA_NS
