// recurrent — detail/reduced_kernel.hpp: the products of inference in int8 and bf16.
//
//   reducedGemm   C (+)= A · B with A a ReducedMatrix (reduced_matrix.hpp): B's columns are
//                 quantized (int8) or rounded (bf16) in blocks of ReducedBuffer::kColumns, then
//                 multiplied; the result is scaled back to C's Scalar, the bias added when
//                 overwriting. Any part of A's row blocks and units, like gemm (gemm.hpp).
//
// The kernel keeps NP panels (16 rows each) × NC columns of sums in registers over the depth:
//
//   int8  AVX-512 VNNI: per group of 4 depth rows, one 64-byte load of each panel and one
//         broadcast of each column's 4 input bytes, vpdpbusd (u8 × s8, exact int32 sums)
//   bf16  AVX-512 BF16: per pair of depth rows, vdpbf16ps (two bf16 products into a float sum)
//
// Elsewhere the same loops in plain C++ compute the same sums: int8's are exact integers, so
// every build gives the same int32 sums to the bit; bf16's products are exact in float and are
// added in vdpbf16ps's order (the odd depth row, then the even one), so builds differ at most in
// the treatment of subnormal numbers (vdpbf16ps flushes them).
//
// Several columns (a batch) run tiles of kTilePanels × kTileColumns; one column (one sequence)
// runs up to kGemvPanels panels at once, which share each broadcast of the column.
#pragma once

#include <recurrent/detail/gemm.hpp>
#include <recurrent/detail/kernel.hpp>
#include <recurrent/detail/reduced_matrix.hpp>

#include <Eigen/Core>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace recurrent {
namespace detail {

constexpr int kTilePanels = 2;  ///< panels of a tile of several columns
/// Columns of a tile: kTilePanels · kTileColumns accumulators must fit the register file.
constexpr int kTileColumns = EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS >= 32 ? 12 : 4;
constexpr int kGemvPanels = 8;  ///< panels that share one column's broadcasts

/// The reduced-precision sums of NP panels × NC columns over `groups` groups of the depth: int32
/// for int8, float for bf16; out[(p·NC + j)·16 + r] for row r of panel p, column j. x holds the
/// NC columns' groups side by side: group g of column j at x + (g·NC + j)·4 bytes.
template <int NP, int NC>
inline void int8Kernel(Index groups, const std::int8_t* const* a, const std::uint8_t* x,
                       std::int32_t* out) {
#if defined(__AVX512VNNI__)
  if constexpr (NC == 1) {
    // One column: two sets of accumulators take alternate groups, so that 2·NP independent
    // sums hide vpdpbusd's latency; integer sums do not depend on the order.
    __m512i acc[2][std::size_t(NP)];
    RECURRENT_UNROLL
    for (int u = 0; u < 2; ++u) RECURRENT_UNROLL
    for (int p = 0; p < NP; ++p) acc[u][p] = _mm512_setzero_si512();
    Index g = 0;
    for (; g + 2 <= groups; g += 2) {
      RECURRENT_UNROLL
      for (int u = 0; u < 2; ++u) {
        std::int32_t four;
        std::memcpy(&four, x + (g + u) * 4, sizeof four);
        const __m512i xb = _mm512_set1_epi32(four);
        RECURRENT_UNROLL
        for (int p = 0; p < NP; ++p) {
          acc[u][p] = _mm512_dpbusd_epi32(acc[u][p], xb, _mm512_loadu_si512(a[p] + (g + u) * 64));
        }
      }
    }
    if (g < groups) {
      std::int32_t four;
      std::memcpy(&four, x + g * 4, sizeof four);
      const __m512i xb = _mm512_set1_epi32(four);
      RECURRENT_UNROLL
      for (int p = 0; p < NP; ++p) {
        acc[0][p] = _mm512_dpbusd_epi32(acc[0][p], xb, _mm512_loadu_si512(a[p] + g * 64));
      }
    }
    RECURRENT_UNROLL
    for (int p = 0; p < NP; ++p) {
      _mm512_storeu_si512(out + p * 16, _mm512_add_epi32(acc[0][p], acc[1][p]));
    }
    return;
  }
  __m512i acc[std::size_t(NP)][std::size_t(NC)];
  RECURRENT_UNROLL
  for (int p = 0; p < NP; ++p) RECURRENT_UNROLL
  for (int j = 0; j < NC; ++j) acc[p][j] = _mm512_setzero_si512();
  for (Index g = 0; g < groups; ++g) {
    __m512i w[std::size_t(NP)];
    RECURRENT_UNROLL
    for (int p = 0; p < NP; ++p) w[p] = _mm512_loadu_si512(a[p] + g * 64);
    RECURRENT_UNROLL
    for (int j = 0; j < NC; ++j) {
      std::int32_t four;
      std::memcpy(&four, x + (g * NC + j) * 4, sizeof four);
      const __m512i xb = _mm512_set1_epi32(four);
      RECURRENT_UNROLL
      for (int p = 0; p < NP; ++p) acc[p][j] = _mm512_dpbusd_epi32(acc[p][j], xb, w[p]);
    }
  }
  RECURRENT_UNROLL
  for (int p = 0; p < NP; ++p) RECURRENT_UNROLL
  for (int j = 0; j < NC; ++j) _mm512_storeu_si512(out + (p * NC + j) * 16, acc[p][j]);
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

template <int NP, int NC>
inline void bf16Kernel(Index groups, const std::uint16_t* const* a, const std::uint16_t* x,
                       float* out) {
#if defined(__AVX512BF16__)
  __m512 acc[std::size_t(NP)][std::size_t(NC)];
  RECURRENT_UNROLL
  for (int p = 0; p < NP; ++p) RECURRENT_UNROLL
  for (int j = 0; j < NC; ++j) acc[p][j] = _mm512_setzero_ps();
  for (Index g = 0; g < groups; ++g) {
    __m512i w[std::size_t(NP)];
    RECURRENT_UNROLL
    for (int p = 0; p < NP; ++p) w[p] = _mm512_loadu_si512(a[p] + g * 32);
    RECURRENT_UNROLL
    for (int j = 0; j < NC; ++j) {
      std::int32_t pair;
      std::memcpy(&pair, x + (g * NC + j) * 2, sizeof pair);
      const __m512i xb = _mm512_set1_epi32(pair);
      RECURRENT_UNROLL
      for (int p = 0; p < NP; ++p) {
        acc[p][j] = _mm512_dpbf16_ps(acc[p][j], reinterpret_cast<const __m512bh&>(w[p]),
                                     reinterpret_cast<const __m512bh&>(xb));
      }
    }
  }
  RECURRENT_UNROLL
  for (int p = 0; p < NP; ++p) RECURRENT_UNROLL
  for (int j = 0; j < NC; ++j) _mm512_storeu_ps(out + (p * NC + j) * 16, acc[p][j]);
#else
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

/// C (+)= A · B with A a ReducedMatrix: B's and C's first `columns` columns.
template <typename Scalar>
struct ReducedProduct : RowSelection<ReducedProduct<Scalar>> {
  ReducedProduct(const ReducedMatrix& a_, const View<const Scalar>& b_, const View<Scalar>& c_,
                 Index columns_)
      : a(a_), b(b_), c(c_), columns(columns_) {
    this->selectedBlocks = Range{0, a_.rowBlocks().count};
    this->selectedUnits = Range{0, a_.rowBlocks().size};
  }
  /// With overwrite(): C = A·B + bias, `bias` addressed like the rows of C.
  ReducedProduct& plusBias(const Scalar* b_) {
    bias = b_;
    return *this;
  }

  const ReducedMatrix& a;
  View<const Scalar> b;  ///< not transposed: column j is `depth` consecutive scalars
  View<Scalar> c;
  Index columns;
  const Scalar* bias = nullptr;
};

namespace reduced {

/// One panel of a tile: its block, its first unit, and its rows [first, last) that are written.
struct Panel {
  Index block, unit, first, last;
};

/// Runs NP panels × NC columns (from column j0 of C, column j of the buffer) and writes them.
template <int NP, int NC, typename Scalar>
void tile(const ReducedProduct<Scalar>& p, const Panel* panels, Index j0, Index j,
          const ReducedBuffer& buffer) {
  const ReducedMatrix& a = p.a;
  const Index ld = a.paddedDepth();
  const bool int8 = a.precision() == Precision::Int8;
  alignas(64) std::int32_t sums[std::size_t(NP * NC * kPanelRows)];
  alignas(64) float floats[std::size_t(NP * NC * kPanelRows)];
  if (int8) {
    const std::int8_t* w[std::size_t(NP)];
    for (int q = 0; q < NP; ++q) w[q] = a.int8Panel(panels[q].block, panels[q].unit);
    int8Kernel<NP, NC>(ld / 4, w, buffer.int8.data() + j * ld, sums);
  } else {
    const std::uint16_t* w[std::size_t(NP)];
    for (int q = 0; q < NP; ++q) w[q] = a.bf16Panel(panels[q].block, panels[q].unit);
    bf16Kernel<NP, NC>(ld / 2, w, buffer.bf16.data() + j * ld, floats);
  }
  for (int q = 0; q < NP; ++q) {
    const Panel& panel = panels[q];
    const float* scale = int8 ? a.scales(panel.block, panel.unit) : nullptr;
    const std::int32_t* rowSum = int8 ? a.rowSums(panel.block, panel.unit) : nullptr;
    const Scalar* bias =
        p.bias == nullptr ? nullptr : p.bias + panel.block * p.c.blockStride + panel.unit;
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<Scalar, float>) {
      // A whole panel of float rows: the same operations, in one register each.
      if (panel.first == 0 && panel.last == kPanelRows) {
        const __m512 rowScale = int8 ? _mm512_loadu_ps(scale) : _mm512_setzero_ps();
        const __m512i sum = int8 ? _mm512_loadu_si512(rowSum) : _mm512_setzero_si512();
        const __m512 b = bias != nullptr ? _mm512_loadu_ps(bias) : _mm512_setzero_ps();
        for (int k = 0; k < NC; ++k) {
          const auto column = static_cast<std::size_t>(j + k);
          const std::size_t at = std::size_t(q * NC + k) * kPanelRows;
          __m512 v;
          if (int8) {
            const __m512i s =
                _mm512_sub_epi32(_mm512_load_si512(sums + at),
                                 _mm512_mullo_epi32(_mm512_set1_epi32(buffer.zero[column]), sum));
            v = _mm512_mul_ps(_mm512_mul_ps(rowScale, _mm512_set1_ps(buffer.scale[column])),
                              _mm512_cvtepi32_ps(s));
          } else {
            v = _mm512_load_ps(floats + at);
          }
          float* out = p.c.at(panel.block, panel.unit, j0 + k);
          if (!p.overwriting) {
            v = _mm512_add_ps(_mm512_loadu_ps(out), v);
          } else if (bias != nullptr) {
            v = _mm512_add_ps(b, v);
          }
          _mm512_storeu_ps(out, v);
        }
        continue;
      }
    }
#endif
    for (int k = 0; k < NC; ++k) {
      const auto column = static_cast<std::size_t>(j + k);
      const std::size_t at = std::size_t(q * NC + k) * kPanelRows;
      // The panel's 16 values of this column, in float; then the rows that exist, written.
      alignas(64) float v[std::size_t(kPanelRows)];
      if (int8) {
        const std::int32_t zero = buffer.zero[column];
        const float columnScale = buffer.scale[column];
        for (int r = 0; r < kPanelRows; ++r) {
          v[r] = scale[r] * columnScale *
                 static_cast<float>(sums[at + std::size_t(r)] - zero * rowSum[r]);
        }
      } else {
        for (int r = 0; r < kPanelRows; ++r) v[r] = floats[at + std::size_t(r)];
      }
      Scalar* out = p.c.at(panel.block, panel.unit, j0 + k);
      const Index first = panel.first, last = panel.last;
      if (!p.overwriting) {
        for (Index r = first; r < last; ++r) out[r] += static_cast<Scalar>(v[r]);
      } else if (bias == nullptr) {
        for (Index r = first; r < last; ++r) out[r] = static_cast<Scalar>(v[r]);
      } else {
        for (Index r = first; r < last; ++r) out[r] = bias[r] + static_cast<Scalar>(v[r]);
      }
    }
  }
}

/// The panels of block `block` that hold units [u0, u1), in order, to f(Panel).
template <typename F>
void forEachPanel(Index block, Index u0, Index u1, F&& f) {
  for (Index unit = u0 / kPanelRows * kPanelRows; unit < u1; unit += kPanelRows) {
    f(Panel{block, unit, std::max(u0, unit) - unit, std::min(u1, unit + kPanelRows) - unit});
  }
}

}  // namespace reduced

/// Computes the ReducedProduct; `buffer` must hold ReducedBuffer::kColumns columns of A's depth.
template <typename Scalar>
void reducedGemm(const ReducedProduct<Scalar>& p, ReducedBuffer& buffer) {
  const ReducedMatrix& a = p.a;
  const Index H = a.rowBlocks().size, depth = a.depth(), ld = a.paddedDepth();
  const Index u0 = p.selectedUnits.begin, u1 = std::min(p.selectedUnits.end, H);
  if (p.columns == 0 || u0 >= u1) return;
  for (Index j0 = 0; j0 < p.columns; j0 += ReducedBuffer::kColumns) {
    const Index n = std::min(ReducedBuffer::kColumns, p.columns - j0);
    for (Index j = 0; j < n; ++j) {
      // Tiles of kTileColumns columns (one column alone for n = 1): the tile's columns
      // side by side within each depth group, so that a kernel reads the group of every column
      // of its tile from one line.
      const Index width = n == 1 ? 1 : kTileColumns;
      const Index tile = j / width * width, w = std::min(width, n - tile);
      const Index G = depthGroup(a.precision());
      quantizeColumn(p.b.data + (j0 + j) * p.b.ld, depth, ld, a.precision(), buffer, j,
                     tile * ld + (j - tile) * G, w * G);
    }
    for (Index block = p.selectedBlocks.begin; block < p.selectedBlocks.end; ++block) {
      reduced::Panel group[std::size_t(kGemvPanels)];
      int count = 0;
      const auto flush = [&] {
        if (count == 0) return;
        if (n == 1) {
          withCount<kGemvPanels>(count, [&](auto np) {
            reduced::tile<decltype(np)::value, 1>(p, group, j0, 0, buffer);
          });
        } else {
          withCount<kTilePanels>(count, [&](auto np) {
            for (Index j = 0; j < n; j += kTileColumns) {
              withCount<kTileColumns>(static_cast<int>(std::min<Index>(kTileColumns, n - j)),
                                      [&](auto nc) {
                                        reduced::tile<decltype(np)::value, decltype(nc)::value>(
                                            p, group, j0 + j, j, buffer);
                                      });
            }
          });
        }
        count = 0;
      };
      const int most = n == 1 ? kGemvPanels : kTilePanels;
      reduced::forEachPanel(block, u0, u1, [&](const reduced::Panel& panel) {
        group[count++] = panel;
        if (count == most) flush();
      });
      flush();
    }
  }
}

}  // namespace detail
}  // namespace recurrent
