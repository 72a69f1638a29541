// The SIMD matmul kernels, written once over an instruction-set wrapper `I` (see matmul_avx2.cpp and
// matmul_avx512.cpp, which define it and include this header inside their own namespace, so the two builds of
// these templates never meet). Included only from those two files.
//
// A "lane group" is I::L consecutive rows of a 16-row group (AVX-512: the whole group, AVX2: one half); one vector
// holds one int32/f32 lane per row. A tile is MR activation rows x NR lane groups: each weight vector, unpacked
// once, feeds MR dot products; each broadcast activation word feeds NR.
//
// Requires: kernels_internal.h, and I with
//   L, V (int vector), F (f32 vector), load(p) (4L bytes), c8(v) (bytes = v), and_, or_masked(a, b, m) = a|(b&m),
//   srl16<N>, sll16<N>, bcast32(p), dp(acc, u8, s8) (int32 += 4-byte dots), dpw(acc, a, b) (int32 += int16 pairs),
//   dp_q8(acc, w, x) (Q8_0 weights stored as q+128) and kQ8Offset (the activation offset that dp_q8 needs),
//   cvt, mul, fmadd(a,b,c)=a*b+c, fnmadd(a,b,c)=c-a*b, bcastf, zerof, zeroi, load_f16(p), load_bf16(p), load_f32(p),
//   u8_to_i32(__m128i), i8_to_i32(__m128i), pairs_u8(m0, m1) (int16 pairs (m0[r], m1[r]) per lane),
//   store(p, F, n) (first n lanes), prefetch(p); kInt16Sums: dot products through int16 pair sums (no VNNI), with
//   maddubs(u8, s8) (int16 pair sums), add16, widen_add(acc, int16 pairs) (int32 += pair sums).

namespace vireo::cpu::kern::VIREO_SIMD_NS {

using V = I::V;
using F = I::F;
constexpr int L = I::L;
constexpr int kLaneGroupsPerGroup = kGroupRows / L;

// ---------------------------------------------------------------------------------------------------------------
// Weight-type traits. unpack(blk, h, u, p, w0, w1): unsigned codes of k4-groups 2p and 2p+1 of unit u, lane group h.
// prep(blk, h, st): per-block scale data. NU units of UK elements per block of BK; the unit's int32 sums are scaled
// by st.sv[u] (d * sub-scale), the block total by the activation scale.

struct Hoff {
  int b64, f16, u8;  // byte offsets of lane group h in a 64-byte chunk, a f16[16] array, a u8[16] array
  explicit Hoff(int h) : b64(4 * L * h), f16(2 * L * h), u8(L * h) {}
};

template <WType T>
struct Traits;

// Common state: f32 sub-scales per unit, and for types with mins/offsets the extra vectors.
template <int NU>
struct ScaleState {
  alignas(64) float sv[NU][L];
};

template <>
struct Traits<WType::Q8_0> {
  static constexpr int BK = 32, UK = 32, NU = 1;
  static constexpr bool kCorr = I::kQ8Offset != 0, kDsum = false;
  static constexpr int kMins = 0;
  struct St : ScaleState<1> {};
  static inline void prep(const uint8_t* blk, Hoff o, St& s) { I::storef(s.sv[0], I::load_f16(blk + o.f16)); }
  static inline void unpack(const uint8_t* blk, Hoff o, int, int p, V& w0, V& w1) {
    w0 = I::load(blk + 32 + 128 * p + o.b64);
    w1 = I::load(blk + 32 + 128 * p + 64 + o.b64);
  }
  static constexpr bool kQ8 = true, kScale16 = false;
  static constexpr int kMaxCode = 255;
};

template <int QS_OFF, int QH_OFF, bool DSUM>
struct Traits32Nibble {
  static constexpr int BK = 32, UK = 32, NU = 1;
  static constexpr bool kCorr = !DSUM, kDsum = DSUM;
  static constexpr int kMins = 0;
  static constexpr bool kQ8 = false, kScale16 = false;
  static constexpr int kMaxCode = QH_OFF >= 0 ? 31 : 15;
  struct St : ScaleState<1> {
    F mv;
  };
  static inline void prep(const uint8_t* blk, Hoff o, St& s) {
    I::storef(s.sv[0], I::load_f16(blk + o.f16));
    if constexpr (DSUM) s.mv = I::load_f16(blk + 32 + o.f16);
  }
  template <int P>
  static inline void unpack_p(const uint8_t* blk, Hoff o, V& w0, V& w1) {
    const V v = I::load(blk + QS_OFF + 64 * P + o.b64);
    const V m4 = I::c8(0x0F);
    w0 = I::and_(v, m4);
    w1 = I::and_(I::template srl16<4>(v), m4);
    if constexpr (QH_OFF >= 0) {
      const V qh = I::load(blk + QH_OFF + o.b64);
      const V m10 = I::c8(0x10);
      // bit 2P -> bit 4 and bit 2P+1 -> bit 4
      w0 = I::or_masked(w0, I::template shift16<4 - 2 * P>(qh), m10);
      w1 = I::or_masked(w1, I::template shift16<3 - 2 * P>(qh), m10);
    }
  }
  static inline void unpack(const uint8_t* blk, Hoff o, int, int p, V& w0, V& w1) {
    switch (p) {
      case 0: unpack_p<0>(blk, o, w0, w1); break;
      case 1: unpack_p<1>(blk, o, w0, w1); break;
      case 2: unpack_p<2>(blk, o, w0, w1); break;
      default: unpack_p<3>(blk, o, w0, w1); break;
    }
  }
};

template <> struct Traits<WType::Q4_0> : Traits32Nibble<32, -1, false> {};
template <> struct Traits<WType::Q4_1> : Traits32Nibble<64, -1, true> {};
template <> struct Traits<WType::Q5_0> : Traits32Nibble<96, 32, false> {};
template <> struct Traits<WType::Q5_1> : Traits32Nibble<128, 64, true> {};

// Q4_K / Q5_K: 6-bit scales and mins from the 12 planes, decoded 16 rows at a time with 128-bit ops.
// kScale16 (int16 sums, i.e. AVX2): the unsigned 6-bit sub-block scales multiply the int16 pair sums in the
// widening vpmaddwd itself (sc16: the row's scale in both halves of its lane), so a block's units add up exactly in
// int32 and convert to f32 once per block instead of once per unit.
// kHi16 (Q4_K, exact int32 dot products): the high nibbles are read in place (v & 0xF0, 16x their value) into their
// own accumulator, shifted back once per unit: one instruction less per 64 bytes (one-thread Q4_K from DRAM ~5% faster).
template <bool Q5>
struct TraitsK4 {
  static constexpr int BK = 256, UK = 32, NU = 8;
  static constexpr bool kCorr = false, kDsum = false, kQ8 = false, kScale16 = I::kInt16Sums;
  static constexpr bool kHi16 = !Q5 && !I::kInt16Sums;
  static constexpr int kMins = 32;
  static constexpr int kMaxCode = Q5 ? 31 : 15;
  static constexpr int QS = Q5 ? 768 : 256;
  struct St : ScaleState<8> {
    F dmin, d;
    V mp[4];
    V sc16[8];
  };
  static inline void prep(const uint8_t* blk, Hoff o, St& s) {
    const F d = I::load_f16(blk + o.f16);
    s.dmin = I::load_f16(blk + 32 + o.f16);
    __m128i P[12];
    for (int p = 0; p < 12; ++p) P[p] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 64 + 16 * p + o.u8));
    const __m128i m63 = _mm_set1_epi8(63), m15 = _mm_set1_epi8(15), m30 = _mm_set1_epi8(0x30);
    __m128i sc[8], mn[8];
    for (int j = 0; j < 4; ++j) {
      sc[j] = _mm_and_si128(P[j], m63);
      mn[j] = _mm_and_si128(P[j + 4], m63);
    }
    for (int j = 4; j < 8; ++j) {
      sc[j] = _mm_or_si128(_mm_and_si128(P[j + 4], m15), _mm_and_si128(_mm_srli_epi16(P[j - 4], 2), m30));
      mn[j] = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(P[j + 4], 4), m15),
                           _mm_and_si128(_mm_srli_epi16(P[j], 2), m30));
    }
    if constexpr (kScale16) {
      s.d = d;
      for (int j = 0; j < 8; ++j) s.sc16[j] = I::pairs_u8(sc[j], sc[j]);
    } else {
      for (int j = 0; j < 8; ++j) I::storef(s.sv[j], I::mul(d, I::cvt(I::u8_to_i32(sc[j]))));
    }
    for (int q = 0; q < 4; ++q) s.mp[q] = I::pairs_u8(mn[2 * q], mn[2 * q + 1]);
  }
  template <int P, bool Hi16 = false>
  static inline void unpack_p(const uint8_t* blk, Hoff o, int u, V& w0, V& w1) {
    const V v = I::load(blk + QS + 64 * (4 * u + P) + o.b64);
    // Decode streams blocks from DRAM: each 64 bytes read prefetch the same bytes of the next block (and the first
    // unit, its header), which keeps more misses in flight than the hardware prefetcher alone.
    constexpr int64_t kNext = group_block_bytes(Q5 ? WType::Q5_K : WType::Q4_K);
    I::prefetch(blk + QS + 64 * (4 * u + P) + o.b64 + kNext);
    if (u == 0) I::prefetch(blk + 64 * P + kNext);
    const V m4 = I::c8(0x0F);
    w0 = I::and_(v, m4);
    if constexpr (Hi16) {
      w1 = I::and_(v, I::c8(0xF0));
      return;
    }
    w1 = I::and_(I::template srl16<4>(v), m4);
    if constexpr (Q5) {
      const V qh = I::load(blk + 256 + 64 * u + o.b64);
      const V m10 = I::c8(0x10);
      w0 = I::or_masked(w0, I::template shift16<4 - 2 * P>(qh), m10);
      w1 = I::or_masked(w1, I::template shift16<3 - 2 * P>(qh), m10);
    }
  }
  template <bool Hi16 = false>
  static inline void unpack(const uint8_t* blk, Hoff o, int u, int p, V& w0, V& w1) {
    switch (p) {
      case 0: unpack_p<0, Hi16>(blk, o, u, w0, w1); break;
      case 1: unpack_p<1, Hi16>(blk, o, u, w0, w1); break;
      case 2: unpack_p<2, Hi16>(blk, o, u, w0, w1); break;
      default: unpack_p<3, Hi16>(blk, o, u, w0, w1); break;
    }
  }
};
template <> struct Traits<WType::Q4_K> : TraitsK4<false> {};
template <> struct Traits<WType::Q5_K> : TraitsK4<true> {};

// Q6_K and Q3_K: 16 units of 16, int8 scales (stored decoded), codes offset by the activation correction.
template <WType T>
struct TraitsK16 {
  static constexpr int BK = 256, UK = 16, NU = 16;
  static constexpr bool kCorr = T != WType::Q2_K, kDsum = false, kQ8 = false, kScale16 = false;
  static constexpr int kMins = T == WType::Q2_K ? 16 : 0;
  static constexpr int kMaxCode = T == WType::Q2_K ? 3 : (T == WType::Q3_K ? 7 : 63);
  struct St : ScaleState<16> {
    F dmin;
    V mp[8];
  };
  static inline void prep(const uint8_t* blk, Hoff o, St& s) {
    const F d = I::load_f16(blk + o.f16);
    if constexpr (T == WType::Q2_K) {
      s.dmin = I::load_f16(blk + 32 + o.f16);
      const __m128i m15 = _mm_set1_epi8(15);
      __m128i mn[16];
      for (int j = 0; j < 16; ++j) {
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 64 + 16 * j + o.u8));
        I::storef(s.sv[j], I::mul(d, I::cvt(I::u8_to_i32(_mm_and_si128(b, m15)))));
        mn[j] = _mm_and_si128(_mm_srli_epi16(b, 4), m15);
      }
      for (int q = 0; q < 8; ++q) s.mp[q] = I::pairs_u8(mn[2 * q], mn[2 * q + 1]);
    } else {
      for (int j = 0; j < 16; ++j) {
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 32 + 16 * j + o.u8));
        I::storef(s.sv[j], I::mul(d, I::cvt(I::i8_to_i32(b))));
      }
    }
  }
  template <int P>
  static inline void unpack_p(const uint8_t* blk, Hoff o, int u, V& w0, V& w1) {
    if constexpr (T == WType::Q6_K) {
      const uint8_t* base = blk + 288 + 192 * u;
      const V v = I::load(base + 64 * P + o.b64);
      const V qh = I::load(base + 128 + o.b64);
      // as for Q4_K: the same bytes of the next block, and its header with the first unit
      constexpr int64_t kNext = group_block_bytes(T);
      I::prefetch(base + 64 * P + o.b64 + kNext);
      if constexpr (P == 0) I::prefetch(base + 128 + o.b64 + kNext);
      if (u == 0) {
        I::prefetch(blk + 64 * P + kNext), I::prefetch(blk + 128 + 64 * P + kNext);
        if constexpr (P == 0) I::prefetch(blk + 256 + kNext);
      }
      const V m4 = I::c8(0x0F), m30 = I::c8(0x30);
      // k4-group g = 2P takes qh bits 2g..2g+1 to bits 4..5, g = 2P+1 likewise.
      w0 = I::or_masked(I::and_(v, m4), I::template shift16<4 - 4 * P>(qh), m30);
      w1 = I::or_masked(I::and_(I::template srl16<4>(v), m4), I::template shift16<2 - 4 * P>(qh), m30);
    } else {
      const int qs_off = T == WType::Q2_K ? 320 : 288;
      const V v = I::load(blk + qs_off + 64 * u + o.b64);
      const V m3 = I::c8(0x03);
      w0 = I::and_(I::template srl16<4 * P>(v), m3);
      w1 = I::and_(I::template srl16<4 * P + 2>(v), m3);
      if constexpr (T == WType::Q3_K) {
        const V hb = I::load(blk + 1312 + 64 * (u / 2) + o.b64);
        const V m04 = I::c8(0x04);
        // bit (g + 4*(u&1)) -> bit 2, for g = 2P and 2P+1
        if (u & 1) {
          w0 = I::or_masked(w0, I::template shift16<2 - (2 * P + 4)>(hb), m04);
          w1 = I::or_masked(w1, I::template shift16<2 - (2 * P + 5)>(hb), m04);
        } else {
          w0 = I::or_masked(w0, I::template shift16<2 - 2 * P>(hb), m04);
          w1 = I::or_masked(w1, I::template shift16<1 - 2 * P>(hb), m04);
        }
      }
    }
  }
  static inline void unpack(const uint8_t* blk, Hoff o, int u, int p, V& w0, V& w1) {
    if (p == 0)
      unpack_p<0>(blk, o, u, w0, w1);
    else
      unpack_p<1>(blk, o, u, w0, w1);
  }
};
template <> struct Traits<WType::Q2_K> : TraitsK16<WType::Q2_K> {};
template <> struct Traits<WType::Q3_K> : TraitsK16<WType::Q3_K> {};
template <> struct Traits<WType::Q6_K> : TraitsK16<WType::Q6_K> {};

// ---------------------------------------------------------------------------------------------------------------
// Quantized tile: MR activation rows x NR lane groups starting at lane group lg0.

// Per-thread scratch that only grows (decoded block scales shared by the tiles of one lane-group column).
inline uint8_t* scratch(size_t bytes) {
  struct Buf {
    uint8_t* p = nullptr;
    size_t n = 0;
    ~Buf() { std::free(p); }
  };
  static thread_local Buf b;
  if (bytes > b.n) {
    std::free(b.p);
    b.n = (bytes + 4095) & ~size_t(4095);
    b.p = static_cast<uint8_t*>(std::aligned_alloc(64, b.n));
    if (!b.p) throw std::bad_alloc();
  }
  return b.p;
}

// Decodes the block scales of lane groups lg0 .. lg0+NR-1 for every block into pre[b * NR + n].
template <WType T, int NR>
void prep_column(const GemmArgs& a, int64_t lg0, typename Traits<T>::St* pre) {
  constexpr int64_t gbb = group_block_bytes(T);
  for (int n = 0; n < NR; ++n) {
    const int64_t lg = lg0 + n;
    const uint8_t* base = a.w + (lg / kLaneGroupsPerGroup) * a.group_bytes;
    const Hoff o(static_cast<int>(lg % kLaneGroupsPerGroup));
    for (int64_t b = 0; b < a.al.nb; ++b) Traits<T>::prep(base + b * gbb, o, pre[b * NR + n]);
  }
}

// pre: the lane groups' decoded scales (prep_column), or null to decode them here (decode: one tile per column).
template <WType T, int MR, int NR>
__attribute__((always_inline)) inline void qtile(const GemmArgs& a, int64_t i0, int64_t lg0,
                                                 const typename Traits<T>::St* pre) {
  using Tr = Traits<T>;
  constexpr int BK = Tr::BK, UK = Tr::UK, NU = Tr::NU, NP = UK / 8;
  constexpr int64_t gbb = group_block_bytes(T);
  const ActLayout& al = a.al;
  const uint8_t* base[NR];
  int hh[NR];
#pragma GCC unroll 16
  for (int n = 0; n < NR; ++n) {
    const int64_t lg = lg0 + n;
    base[n] = a.w + (lg / kLaneGroupsPerGroup) * a.group_bytes;
    hh[n] = static_cast<int>(lg % kLaneGroupsPerGroup);
  }
  const uint8_t* act[MR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) act[i] = a.act + (i0 + i) * al.stride;

  F acc[MR][NR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 16
    for (int n = 0; n < NR; ++n) acc[i][n] = I::zerof();

  typename Tr::St local[NR];
  const int64_t nb = al.nb;
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk[NR];
    const typename Tr::St* st[NR];
#pragma GCC unroll 16
    for (int n = 0; n < NR; ++n) {
      blk[n] = base[n] + b * gbb;
      if (pre) {
        st[n] = pre + b * NR + n;
      } else {
        Tr::prep(blk[n], Hoff(hh[n]), local[n]);
        st[n] = &local[n];
      }
    }
    F fb[MR][NR];
    V sb[MR][NR];  // kScale16: the block's scaled int32 sums
    if constexpr (Tr::kScale16) {
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i)
#pragma GCC unroll 16
        for (int n = 0; n < NR; ++n) sb[i][n] = I::zeroi();
    }
#pragma GCC unroll 16
    for (int u = 0; u < NU; ++u) {
      V s[MR][NR];
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        if constexpr (Tr::kCorr) {
          const V c = I::bcast32(act[i] + al.off_corr + 4 * (b * NU + u));
#pragma GCC unroll 16
          for (int n = 0; n < NR; ++n) s[i][n] = c;
        } else {
#pragma GCC unroll 16
          for (int n = 0; n < NR; ++n) s[i][n] = I::zeroi();
        }
      }
      // With one activation row, a second accumulator per lane group halves the vpdpbusd dependency chain.
#ifndef VIREO_TWO_MAX
#define VIREO_TWO_MAX 2
#endif
      constexpr bool kTwo = MR == 1 && NR <= VIREO_TWO_MAX;
      // kHi16 needs kTwo's second accumulator: it holds the high nibbles' sums, 16x too large until the unit ends.
      constexpr bool kHi16 = kTwo && [] {
        if constexpr (requires { Tr::kHi16; }) return Tr::kHi16;
        else return false;
      }();
      V s2[NR];
      if constexpr (kTwo) {
#pragma GCC unroll 16
        for (int n = 0; n < NR; ++n) s2[n] = I::zeroi();
      }
      if constexpr (I::kInt16Sums && !Tr::kQ8) {
        // No VNNI (AVX2): a dot product is vpmaddubsw (int16 pair sums) + vpmaddwd (to int32) + add. Codes of at
        // most kMaxCode let several pair sums add up in int16 first (|sum| <= 2 * kMaxCode * 127 each), so the
        // widening runs once per group of PG k4-pairs instead of once per product.
        constexpr int kSums = 32767 / (2 * Tr::kMaxCode * 127);
        static_assert(kSums >= 2, "a k4-pair (two products) must fit in int16");
        constexpr int PG = kSums / 2 > NP ? NP : kSums / 2;
        static_assert(NP % PG == 0, "groups of k4-pairs divide the unit");
#pragma GCC unroll 4
        for (int p0 = 0; p0 < NP; p0 += PG) {
          V h[MR][NR];
#pragma GCC unroll 4
          for (int p = p0; p < p0 + PG; ++p) {
            V w0[NR], w1[NR];
#pragma GCC unroll 16
            for (int n = 0; n < NR; ++n) Tr::unpack(blk[n], Hoff(hh[n]), u, p, w0[n], w1[n]);
#pragma GCC unroll 16
            for (int i = 0; i < MR; ++i) {
              const uint8_t* q = act[i] + b * BK + u * UK + 8 * p;
              const V x0 = I::bcast32(q), x1 = I::bcast32(q + 4);
#pragma GCC unroll 16
              for (int n = 0; n < NR; ++n) {
                const V pr = I::add16(I::maddubs(w0[n], x0), I::maddubs(w1[n], x1));
                h[i][n] = p == p0 ? pr : I::add16(h[i][n], pr);
                I::pin(h[i][n]);
              }
            }
          }
#pragma GCC unroll 16
          for (int i = 0; i < MR; ++i)
#pragma GCC unroll 16
            for (int n = 0; n < NR; ++n) {
              if constexpr (Tr::kScale16) sb[i][n] = I::dpw(sb[i][n], h[i][n], st[n]->sc16[u]);
              else s[i][n] = I::widen_add(s[i][n], h[i][n]);
            }
        }
      } else
#pragma GCC unroll 4
      for (int p = 0; p < NP; ++p) {
        V w0[NR], w1[NR];
#pragma GCC unroll 16
        for (int n = 0; n < NR; ++n) {
          if constexpr (kHi16) Tr::template unpack<true>(blk[n], Hoff(hh[n]), u, p, w0[n], w1[n]);
          else Tr::unpack(blk[n], Hoff(hh[n]), u, p, w0[n], w1[n]);
        }
#pragma GCC unroll 16
        for (int i = 0; i < MR; ++i) {
          const uint8_t* q = act[i] + b * BK + u * UK + 8 * p;
          const V x0 = I::bcast32(q), x1 = I::bcast32(q + 4);
#pragma GCC unroll 16
          for (int n = 0; n < NR; ++n) {
            V& t = kTwo ? s2[n] : s[i][n];
            if constexpr (Tr::kQ8) {
              s[i][n] = I::dp_q8(s[i][n], w0[n], x0);
              t = I::dp_q8(t, w1[n], x1);
              I::pin(s[i][n]);
              I::pin(t);
            } else {
              s[i][n] = I::dp(s[i][n], w0[n], x0);
              t = I::dp(t, w1[n], x1);
            }
          }
        }
      }
      if constexpr (kTwo) {
#pragma GCC unroll 16
        for (int n = 0; n < NR; ++n) s[0][n] = I::addi(s[0][n], kHi16 ? I::template srai32<4>(s2[n]) : s2[n]);
      }
      if constexpr (!Tr::kScale16) {
#pragma GCC unroll 16
        for (int n = 0; n < NR; ++n) {
          const F sv = I::loadf(st[n]->sv[u]);
#pragma GCC unroll 16
          for (int i = 0; i < MR; ++i)
            fb[i][n] = u == 0 ? I::mul(I::cvt(s[i][n]), sv) : I::fmadd(I::cvt(s[i][n]), sv, fb[i][n]);
        }
      }
    }
    if constexpr (Tr::kScale16) {
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i)
#pragma GCC unroll 16
        for (int n = 0; n < NR; ++n) fb[i][n] = I::mul(I::cvt(sb[i][n]), st[n]->d);
    }
    // Block epilogue: mins, activation scale.
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const F dx = I::bcastf(reinterpret_cast<const float*>(act[i] + al.off_d)[b]);
      if constexpr (Tr::kMins == 32) {
        const uint8_t* bs = act[i] + al.off_bs32 + 16 * b;
        const V b0 = I::bcast32(bs), b1 = I::bcast32(bs + 4), b2 = I::bcast32(bs + 8), b3 = I::bcast32(bs + 12);
#pragma GCC unroll 16
        for (int n = 0; n < NR; ++n) {
          V mi = I::dpw(I::zeroi(), st[n]->mp[0], b0);
          mi = I::dpw(mi, st[n]->mp[1], b1);
          mi = I::dpw(mi, st[n]->mp[2], b2);
          mi = I::dpw(mi, st[n]->mp[3], b3);
          fb[i][n] = I::fnmadd(I::cvt(mi), st[n]->dmin, fb[i][n]);
        }
      } else if constexpr (Tr::kMins == 16) {
        const uint8_t* bs = act[i] + al.off_bs16 + 32 * b;
#pragma GCC unroll 16
        for (int n = 0; n < NR; ++n) {
          V mi = I::zeroi();
#pragma GCC unroll 16
          for (int q = 0; q < 8; ++q) mi = I::dpw(mi, st[n]->mp[q], I::bcast32(bs + 4 * q));
          fb[i][n] = I::fnmadd(I::cvt(mi), st[n]->dmin, fb[i][n]);
        }
      }
#pragma GCC unroll 16
      for (int n = 0; n < NR; ++n) acc[i][n] = I::fmadd(fb[i][n], dx, acc[i][n]);
      if constexpr (Tr::kDsum) {
        const F ds = I::bcastf(reinterpret_cast<const float*>(act[i] + al.off_dsum)[b]);
#pragma GCC unroll 16
        for (int n = 0; n < NR; ++n) acc[i][n] = I::fmadd(st[n]->mv, ds, acc[i][n]);
      }
    }
  }

#pragma GCC unroll 16
  for (int n = 0; n < NR; ++n) {
    const int64_t r0 = (lg0 + n) * L;
    const int64_t valid = a.rows - r0 < L ? a.rows - r0 : L;
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) I::store(a.y + (i0 + i) * a.ldy + r0, acc[i][n], static_cast<int>(valid));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Float-weight tile (F32 / F16 / BF16): f32 FMAs, one broadcast x element per k feeding NR weight vectors.

template <WType T>
inline F load_wf(const uint8_t* p) {
  if constexpr (T == WType::F32) return I::load_f32(p);
  else if constexpr (T == WType::F16) return I::load_f16(p);
  else return I::load_bf16(p);
}

template <WType T, int MR, int NR>
__attribute__((always_inline)) inline void ftile(const GemmArgs& a, int64_t i0, int64_t lg0) {
  constexpr int es = T == WType::F32 ? 4 : 2;
  const uint8_t* base[NR];
#pragma GCC unroll 16
  for (int n = 0; n < NR; ++n) {
    const int64_t lg = lg0 + n;
    base[n] = a.w + (lg / kLaneGroupsPerGroup) * a.group_bytes + (lg % kLaneGroupsPerGroup) * L * es;
  }
  const float* x[MR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) x[i] = a.x + (i0 + i) * a.ldx;
  F acc[MR][NR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 16
    for (int n = 0; n < NR; ++n) acc[i][n] = I::zerof();
  // Two interleaved accumulator sets for m = 1 so the FMA latency is covered.
  F acc2[NR];
#pragma GCC unroll 16
  for (int n = 0; n < NR; ++n) acc2[n] = I::zerof();
  const int64_t K = a.K;
  int64_t k = 0;
  if constexpr (MR == 1) {
    for (; k + 2 <= K; k += 2) {
      const F x0 = I::bcastf(x[0][k]), x1 = I::bcastf(x[0][k + 1]);
#pragma GCC unroll 16
      for (int n = 0; n < NR; ++n) {
        acc[0][n] = I::fmadd(load_wf<T>(base[n] + k * kGroupRows * es), x0, acc[0][n]);
        acc2[n] = I::fmadd(load_wf<T>(base[n] + (k + 1) * kGroupRows * es), x1, acc2[n]);
      }
    }
  }
  for (; k < K; ++k) {
    F w[NR];
#pragma GCC unroll 16
    for (int n = 0; n < NR; ++n) w[n] = load_wf<T>(base[n] + k * kGroupRows * es);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const F xv = I::bcastf(x[i][k]);
#pragma GCC unroll 16
      for (int n = 0; n < NR; ++n) acc[i][n] = I::fmadd(w[n], xv, acc[i][n]);
    }
  }
  if constexpr (MR == 1) {
#pragma GCC unroll 16
    for (int n = 0; n < NR; ++n) acc[0][n] = I::add(acc[0][n], acc2[n]);
  }
#pragma GCC unroll 16
  for (int n = 0; n < NR; ++n) {
    const int64_t r0 = (lg0 + n) * L;
    const int64_t valid = a.rows - r0 < L ? a.rows - r0 : L;
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) I::store(a.y + (i0 + i) * a.ldy + r0, acc[i][n], static_cast<int>(valid));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Drivers. Decode (m = 1) runs 1 x NR1 tiles; prefill runs MR x NR tiles over blocks of activation rows, so a tile's
// weights stay in L1/L2 while the activation block (MC rows) stays in L2.

template <WType T>
struct PreOf {
  using type = typename Traits<T>::St;
};
template <>
struct PreOf<WType::F32> {
  using type = void;
};
template <>
struct PreOf<WType::F16> {
  using type = void;
};
template <>
struct PreOf<WType::BF16> {
  using type = void;
};
template <WType T>
using Pre = typename PreOf<T>::type;

template <WType T, int MR, int NR>
void tile_fn(const GemmArgs& a, int64_t i0, int64_t lg0, const Pre<T>* pre) {
  if constexpr (act_kind(T) == ActKind::F32)
    ftile<T, MR, NR>(a, i0, lg0);
  else
    qtile<T, MR, NR>(a, i0, lg0, pre);
}

template <WType T, int R, int NR>
inline void rem_tile(const GemmArgs& a, int64_t i, int64_t lg0, int64_t rem, const Pre<T>* pre) {
  if constexpr (R >= 1) {
    if (rem == R)
      tile_fn<T, R, NR>(a, i, lg0, pre);
    else
      rem_tile<T, R - 1, NR>(a, i, lg0, rem, pre);
  }
}

template <WType T, int MRMAX, int NR>
inline void row_tiles(const GemmArgs& a, int64_t i0, int64_t i1, int64_t lg0) {
  const Pre<T>* pre = nullptr;
  if constexpr (act_kind(T) != ActKind::F32) {
    auto* p = reinterpret_cast<Pre<T>*>(scratch(sizeof(Pre<T>) * static_cast<size_t>(a.al.nb * NR)));
    prep_column<T, NR>(a, lg0, p);
    pre = p;
  }
  int64_t i = i0;
  for (; i + MRMAX <= i1; i += MRMAX) tile_fn<T, MRMAX, NR>(a, i, lg0, pre);
  if (i < i1) rem_tile<T, MRMAX - 1, NR>(a, i, lg0, i1 - i, pre);
}

template <WType T, int MR, int NR, int NR1, int MC>
void gemm(const GemmArgs& a) {
  int64_t lg0 = a.g0 * kLaneGroupsPerGroup;
  int64_t lg1 = a.g1 * kLaneGroupsPerGroup;
  const int64_t lg_rows = (a.rows + L - 1) / L;  // lane groups that hold real rows
  if (lg1 > lg_rows) lg1 = lg_rows;
  if (a.m == 1) {
    int64_t lg = lg0;
    for (; lg + NR1 <= lg1; lg += NR1) tile_fn<T, 1, NR1>(a, 0, lg, nullptr);
    for (; lg < lg1; ++lg) tile_fn<T, 1, 1>(a, 0, lg, nullptr);
    return;
  }
  for (int64_t ib = 0; ib < a.m; ib += MC) {
    const int64_t ie = ib + MC < a.m ? ib + MC : a.m;
    int64_t lg = lg0;
    for (; lg + NR <= lg1; lg += NR) row_tiles<T, MR, NR>(a, ib, ie, lg);
    for (; lg < lg1; ++lg) row_tiles<T, MR, 1>(a, ib, ie, lg);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Activation quantizers (same rounding as the scalar ones: q = rne(x * (127 / amax))).

inline void quant32(const float* x, uint8_t* dst, const ActLayout& al, int offset) {
  for (int64_t b = 0; b < al.nb; ++b) {
    const float* xb = x + b * 32;
    const float amax = I::absmax32(xb);
    const float d = amax / 127.f;
    const float id = amax > 0.f ? 127.f / amax : 0.f;
    const int sum = I::quantize32(xb, id, reinterpret_cast<int8_t*>(dst) + b * 32);
    const int32_t corr = -offset * sum;
    const float dsum = d * static_cast<float>(sum);
    reinterpret_cast<float*>(dst + al.off_d)[b] = d;
    reinterpret_cast<int32_t*>(dst + al.off_corr)[b] = corr;
    reinterpret_cast<float*>(dst + al.off_dsum)[b] = dsum;
  }
}

inline void quant256(const float* x, uint8_t* dst, const ActLayout& al, int offset) {
  for (int64_t b = 0; b < al.nb; ++b) {
    const float* xb = x + b * 256;
    float amax = 0.f;
    for (int c = 0; c < 8; ++c) amax = std::fmax(amax, I::absmax32(xb + 32 * c));
    const float d = amax / 127.f;
    const float id = amax > 0.f ? 127.f / amax : 0.f;
    int s16[16];
    I::quantize256(xb, id, reinterpret_cast<int8_t*>(dst) + b * 256, s16);
    reinterpret_cast<float*>(dst + al.off_d)[b] = d;
    int32_t* corr = reinterpret_cast<int32_t*>(dst + al.off_corr) + b * 16;
    int16_t* bs16 = reinterpret_cast<int16_t*>(dst + al.off_bs16) + b * 16;
    int16_t* bs32 = reinterpret_cast<int16_t*>(dst + al.off_bs32) + b * 8;
    for (int j = 0; j < 16; ++j) {
      corr[j] = -offset * s16[j];
      bs16[j] = static_cast<int16_t>(s16[j]);
    }
    for (int j = 0; j < 8; ++j) bs32[j] = static_cast<int16_t>(s16[2 * j] + s16[2 * j + 1]);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The kernel table of this instruction set: tile shapes (MR activation rows x NR lane groups, NR1 lane groups for
// decode) for the float, 32-block and K-quant families.

template <int MR_, int NR_, int NR1_>
struct Tile {
  static constexpr int MR = MR_, NR = NR_, NR1 = NR1_;
};

template <class TF, class T32, class TK>
Kernels kernel_table() {
  Kernels k;
  k.gemm[int(WType::F32)] = gemm<WType::F32, TF::MR, TF::NR, TF::NR1, 64>;
  k.gemm[int(WType::F16)] = gemm<WType::F16, TF::MR, TF::NR, TF::NR1, 64>;
  k.gemm[int(WType::BF16)] = gemm<WType::BF16, TF::MR, TF::NR, TF::NR1, 64>;
  k.gemm[int(WType::Q4_0)] = gemm<WType::Q4_0, T32::MR, T32::NR, T32::NR1, 64>;
  k.gemm[int(WType::Q4_1)] = gemm<WType::Q4_1, T32::MR, T32::NR, T32::NR1, 64>;
  k.gemm[int(WType::Q5_0)] = gemm<WType::Q5_0, T32::MR, T32::NR, T32::NR1, 64>;
  k.gemm[int(WType::Q5_1)] = gemm<WType::Q5_1, T32::MR, T32::NR, T32::NR1, 64>;
  k.gemm[int(WType::Q8_0)] = gemm<WType::Q8_0, T32::MR, T32::NR, T32::NR1, 64>;
  k.gemm[int(WType::Q2_K)] = gemm<WType::Q2_K, TK::MR, TK::NR, TK::NR1, 64>;
  k.gemm[int(WType::Q3_K)] = gemm<WType::Q3_K, TK::MR, TK::NR, TK::NR1, 64>;
  k.gemm[int(WType::Q4_K)] = gemm<WType::Q4_K, TK::MR, TK::NR, TK::NR1, 64>;
  k.gemm[int(WType::Q5_K)] = gemm<WType::Q5_K, TK::MR, TK::NR, TK::NR1, 64>;
  k.gemm[int(WType::Q6_K)] = gemm<WType::Q6_K, TK::MR, TK::NR, TK::NR1, 64>;
  // The zero points the unsigned code layouts need in the activations (kernels_internal.h).
  k.act_offset[int(WType::Q8_0)] = I::kQ8Offset;
  k.act_offset[int(WType::Q4_0)] = 8;
  k.act_offset[int(WType::Q5_0)] = 16;
  k.act_offset[int(WType::Q3_K)] = 4;
  k.act_offset[int(WType::Q6_K)] = 32;
  k.quant32 = quant32;
  k.quant256 = quant256;
  return k;
}

}  // namespace vireo::cpu::kern::VIREO_SIMD_NS
