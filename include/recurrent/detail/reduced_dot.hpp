// recurrent — detail/reduced_dot.hpp: the register kernels of the int8 and bf16 products.
//
// A kernel keeps NP panels (16 rows each) × NC columns of sums in registers over the depth:
//
//   int8  AVX-512 VNNI: per group of 4 depth rows, one 64-byte load of each panel and one
//         broadcast of each column's 4 input bytes, vpdpbusd (u8 × s8, exact int32 sums)
//   bf16  AVX-512 BF16: per pair of depth rows, vdpbf16ps (two bf16 products into a float sum)
//
// Elsewhere the same loops in plain C++ compute the same sums: int8's are exact integers, so
// every build gives the same int32 sums to the bit; bf16's products are exact in float and are
// added in vdpbf16ps's order (the odd depth row, then the even one, into the same sets of sums),
// so builds differ at most in the treatment of subnormal numbers (vdpbf16ps flushes them).
//
// Several columns share each load of a panel (NC > 1); one column (NC = 1) reads each panel as one
// sequential stream, its groups dealt to four sets of sums, or, where the reduced fused step's
// weights fit in L1 (reduced_step.hpp), two panels share each broadcast (fourSetsOf<2>).
#pragma once

#include <recurrent/detail/kernel.hpp>
#include <recurrent/detail/reduced_matrix.hpp>

#include <Eigen/Core>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <cstdint>
#include <cstring>

namespace recurrent {
namespace detail {

/// An empty statement that may change v, so that the compiler cannot take two zeros for one
/// value: GCC otherwise keeps a second set of sums, started equal to the first, in registers it
/// copies at every iteration of the loop.
template <typename V>
EIGEN_ALWAYS_INLINE void distinctRegister(V& v) {
#if defined(__GNUC__) || defined(__clang__)
  __asm__("" : "+v"(v));
#else
  (void)v;
#endif
}

#if defined(__AVX512F__)
/// A column's group g (4 bytes at x + 4g) in every lane.
template <typename Code>
EIGEN_ALWAYS_INLINE __m512i broadcastGroup(const Code* x, Index g) {
  std::int32_t four;
  std::memcpy(&four, x + g * Index(4 / sizeof(Code)), sizeof four);
  return _mm512_set1_epi32(four);
}

/// The sums of NP panels for one column: each panel's groups dealt to four sets of sums, four
/// independent chains per panel that hide the instruction's latency — the groups past a multiple of
/// four to sets 0, 1, 2 first, then group head + 4i + u to set u — added as (s0 + s1) + (s2 + s3),
/// so that a panel's sums do not depend on NP. dot(s, q, g, b) adds group g's products of panel q
/// to s, b = broadcast(g) being the column's group, shared by the NP panels. One panel is read as
/// one sequential stream, which the prefetchers follow better than several interleaved panels
/// where the weights come from L2; where they sit in L1, two panels share each broadcast and run
/// eight chains. The odd groups come before the loop
/// so that the loop is the last to write the sums: GCC otherwise copies them between registers at
/// every iteration.
template <int NP, typename V, typename Broadcast, typename Dot, typename Add>
EIGEN_ALWAYS_INLINE void fourSetsOf(Index groups, V zero, Broadcast&& broadcast, Dot&& dot,
                                    Add&& add, V* out) {
  V sum[std::size_t(NP)][4];
  RECURRENT_UNROLL
  for (int q = 0; q < NP; ++q) RECURRENT_UNROLL
  for (int u = 0; u < 4; ++u) {
    sum[q][u] = zero;
    distinctRegister(sum[q][u]);
  }
  const Index head = groups % 4;
  RECURRENT_UNROLL
  for (int u = 0; u < 3; ++u) {
    if (u < head) {
      const auto b = broadcast(Index(u));
      RECURRENT_UNROLL
      for (int q = 0; q < NP; ++q) sum[q][u] = dot(sum[q][u], q, Index(u), b);
    }
  }
  for (Index g = head; g < groups; g += 4) {
    RECURRENT_UNROLL
    for (int u = 0; u < 4; ++u) {
      const auto b = broadcast(g + u);
      RECURRENT_UNROLL
      for (int q = 0; q < NP; ++q) sum[q][u] = dot(sum[q][u], q, g + u, b);
    }
  }
  RECURRENT_UNROLL
  for (int q = 0; q < NP; ++q) out[q] = add(add(sum[q][0], sum[q][1]), add(sum[q][2], sum[q][3]));
}

/// The sums of NP panels × NC columns, kept in registers over the depth: per group, one 64-byte
/// load of each panel shared by the NC columns and one broadcast of each column's 4-byte group
/// shared by the NP panels. dot(sum, panel, column) adds one group's products; the sums of panel
/// p and column j are stored by store(p, j, sum).
template <int NP, int NC, typename T, typename U, typename V, typename Dot, typename Store>
EIGEN_ALWAYS_INLINE void tileSums(Index groups, const T* const* a, const U* x, V zero, Dot&& dot,
                                  Store&& store) {
  static_assert(sizeof(T) == sizeof(U) && 4 % sizeof(T) == 0, "a group is 4 bytes of a column");
  constexpr Index kPerGroup = 4 / Index(sizeof(T));  // a column's values per group
  V acc[std::size_t(NP)][std::size_t(NC)];
  RECURRENT_UNROLL
  for (int p = 0; p < NP; ++p) RECURRENT_UNROLL
  for (int j = 0; j < NC; ++j) acc[p][j] = zero;
  for (Index g = 0; g < groups; ++g) {
    __m512i w[std::size_t(NP)];
    RECURRENT_UNROLL
    for (int p = 0; p < NP; ++p) w[p] = _mm512_loadu_si512(a[p] + g * 16 * kPerGroup);
    RECURRENT_UNROLL
    for (int j = 0; j < NC; ++j) {
      const __m512i xb = broadcastGroup(x, g * NC + j);
      RECURRENT_UNROLL
      for (int p = 0; p < NP; ++p) acc[p][j] = dot(acc[p][j], w[p], xb);
    }
  }
  RECURRENT_UNROLL
  for (int p = 0; p < NP; ++p) RECURRENT_UNROLL
  for (int j = 0; j < NC; ++j) store(p, j, acc[p][j]);
}
#endif

#if defined(__AVX512VNNI__)
/// NP panels (w[q]) times one column (x, its groups of 4 bytes in order): int8Kernel<1, 1>'s
/// sums of each.
template <int NP>
EIGEN_ALWAYS_INLINE void int8ColumnSums(const std::int8_t* const* w, const std::uint8_t* x,
                                        Index groups, __m512i* out) {
  fourSetsOf<NP>(
      groups, _mm512_setzero_si512(), [x](Index g) { return broadcastGroup(x, g); },
      [w](__m512i sum, int q, Index g, __m512i v) {
        return _mm512_dpbusd_epi32(sum, v, _mm512_loadu_si512(w[q] + g * 64));
      },
      [](__m512i l, __m512i r) { return _mm512_add_epi32(l, r); }, out);
}
#endif

#if defined(__AVX512BF16__)
/// NP panels (w[q]) times one column (x, its pairs in order): bf16Kernel<1, 1>'s sums of each.
template <int NP>
EIGEN_ALWAYS_INLINE void bf16ColumnSums(const std::uint16_t* const* w, const std::uint16_t* x,
                                        Index groups, __m512* out) {
  fourSetsOf<NP>(
      groups, _mm512_setzero_ps(), [x](Index g) { return broadcastGroup(x, g); },
      [w](__m512 sum, int q, Index g, __m512i v) {
        const __m512i a = _mm512_loadu_si512(w[q] + g * 32);
        return _mm512_dpbf16_ps(sum, reinterpret_cast<const __m512bh&>(a),
                                reinterpret_cast<const __m512bh&>(v));
      },
      [](__m512 l, __m512 r) { return _mm512_add_ps(l, r); }, out);
}
#endif

/// The reduced-precision sums of NP panels × NC columns over `groups` groups of the depth: int32
/// for int8, float for bf16; out[(p·NC + j)·16 + r] for row r of panel p, column j. x holds the
/// NC columns' groups side by side: group g of column j at x + (g·NC + j)·4 bytes.
template <int NP, int NC>
inline void int8Kernel(Index groups, const std::int8_t* const* a, const std::uint8_t* x,
                       std::int32_t* out) {
#if defined(__AVX512VNNI__)
  if constexpr (NC == 1) {  // one column: each panel alone, one sequential stream (fourSetsOf)
    RECURRENT_UNROLL
    for (int p = 0; p < NP; ++p) {
      __m512i sums;
      int8ColumnSums<1>(a + p, x, groups, &sums);
      _mm512_storeu_si512(out + p * 16, sums);
    }
    return;
  }
  tileSums<NP, NC>(
      groups, a, x, _mm512_setzero_si512(),
      [](__m512i sum, __m512i w, __m512i v) { return _mm512_dpbusd_epi32(sum, v, w); },
      [out](int p, int j, __m512i sum) { _mm512_storeu_si512(out + (p * NC + j) * 16, sum); });
#else
  std::int32_t acc[std::size_t(NP)][std::size_t(NC)][std::size_t(kPanelRows)] = {};
  for (Index g = 0; g < groups; ++g) {
    for (int p = 0; p < NP; ++p) {
      const std::int8_t* w = a[p] + g * 64;
      for (int j = 0; j < NC; ++j) {
        const std::uint8_t* v = x + (g * NC + j) * 4;
        const std::int32_t v0 = v[0], v1 = v[1], v2 = v[2], v3 = v[3];
        for (int r = 0; r < kPanelRows; ++r) {
          acc[p][j][r] += w[4 * r] * v0 + w[4 * r + 1] * v1 + w[4 * r + 2] * v2 + w[4 * r + 3] * v3;
        }
      }
    }
  }
  for (int p = 0; p < NP; ++p)
    for (int j = 0; j < NC; ++j) std::memcpy(out + (p * NC + j) * 16, acc[p][j], sizeof acc[p][j]);
#endif
}

/// int8Kernel's sums in bf16: float sums of the exact products of bfloat16 pairs.
template <int NP, int NC>
inline void bf16Kernel(Index groups, const std::uint16_t* const* a, const std::uint16_t* x,
                       float* out) {
#if defined(__AVX512BF16__)
  if constexpr (NC == 1) {  // one column: each panel alone, one sequential stream (fourSetsOf)
    RECURRENT_UNROLL
    for (int p = 0; p < NP; ++p) {
      __m512 sums;
      bf16ColumnSums<1>(a + p, x, groups, &sums);
      _mm512_storeu_ps(out + p * 16, sums);
    }
    return;
  }
  tileSums<NP, NC>(
      groups, a, x, _mm512_setzero_ps(),
      [](__m512 sum, __m512i w, __m512i v) {
        return _mm512_dpbf16_ps(sum, reinterpret_cast<const __m512bh&>(w),
                                reinterpret_cast<const __m512bh&>(v));
      },
      [out](int p, int j, __m512 sum) { _mm512_storeu_ps(out + (p * NC + j) * 16, sum); });
#else
  if constexpr (NC == 1) {  // fourSetsOf's order
    const Index head = groups % 4;
    for (int p = 0; p < NP; ++p) {
      float sum[4][std::size_t(kPanelRows)] = {};
      for (Index g = 0; g < groups; ++g) {
        float* s = sum[g < head ? g : (g - head) % 4];
        const std::uint16_t* w = a[p] + g * 32;
        const float v0 = fromBF16(x[2 * g]), v1 = fromBF16(x[2 * g + 1]);
        for (int r = 0; r < kPanelRows; ++r) {
          s[r] += fromBF16(w[2 * r + 1]) * v1;
          s[r] += fromBF16(w[2 * r]) * v0;
        }
      }
      for (int r = 0; r < kPanelRows; ++r)
        out[p * 16 + r] = (sum[0][r] + sum[1][r]) + (sum[2][r] + sum[3][r]);
    }
    return;
  }
  float acc[std::size_t(NP)][std::size_t(NC)][std::size_t(kPanelRows)] = {};
  for (Index g = 0; g < groups; ++g) {
    for (int p = 0; p < NP; ++p) {
      const std::uint16_t* w = a[p] + g * 32;
      for (int j = 0; j < NC; ++j) {
        const std::uint16_t* v = x + (g * NC + j) * 2;
        const float v0 = fromBF16(v[0]), v1 = fromBF16(v[1]);
        for (int r = 0; r < kPanelRows; ++r) {
          // Each product is exact in float: the order of the two additions is all that matters.
          acc[p][j][r] += fromBF16(w[2 * r + 1]) * v1;
          acc[p][j][r] += fromBF16(w[2 * r]) * v0;
        }
      }
    }
  }
  for (int p = 0; p < NP; ++p)
    for (int j = 0; j < NC; ++j) std::memcpy(out + (p * NC + j) * 16, acc[p][j], sizeof acc[p][j]);
#endif
}

}  // namespace detail
}  // namespace recurrent
