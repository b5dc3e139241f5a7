// recurrent — detail/reduced_kernel.hpp: the products of inference in int8 and bf16.
//
//   reducedGemm   C (+)= A · B with A a ReducedMatrix (reduced_matrix.hpp): B's columns are
//                 quantized (int8) or rounded (bf16) in blocks of ReducedBuffer::kColumns, then
//                 multiplied; the result is scaled back to C's Scalar, the bias added when
//                 overwriting. Any part of A's row blocks and units, like gemm (gemm.hpp).
//
// The sums come from the register kernels of reduced_dot.hpp. Several columns (a batch) run tiles
// of kTilePanels panels × up to kTileColumns columns. One column (a step of one sequence) runs its
// panels one at a time where AVX-512 is targeted (oneColumn: the sums scaled and written from the
// register), else in groups of up to kGemvPanels, through the tiles' code. columnPanels is
// oneColumn's body for NP panels, which the reduced fused step (reduced_step.hpp) shares. Where
// AMX is targeted and granted, float batches of 2 columns or more whose depth fills a tile chunk
// run on the tile unit instead (amxGemm, with reduced_amx.hpp's tile products).
#pragma once

#include <recurrent/detail/gemm.hpp>
#include <recurrent/detail/kernel.hpp>
#include <recurrent/detail/reduced_amx.hpp>
#include <recurrent/detail/reduced_dot.hpp>
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
constexpr int kGemvPanels = 8;  ///< panels of one column's tiles, without AVX-512

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
  /// B was just written and is in cache (a step's h): its columns are not prefetched.
  ReducedProduct& inputInCache() {
    prefetchInput = false;
    return *this;
  }

  const ReducedMatrix& a;
  View<const Scalar> b;  ///< not transposed: column j is `depth` consecutive scalars
  View<Scalar> c;
  Index columns;
  const Scalar* bias = nullptr;
  bool prefetchInput = true;  ///< whether reducedGemm prefetches B's columns ahead
};

namespace reduced {

/// One panel of a tile: its block, its first unit, and its rows [first, last) that are written.
struct Panel {
  Index block, unit, first, last;
};

/// A row's int8 sum of one column in float: s_r · s · (Σ − z · Σ_k w_q), the operations of the
/// vector form below, in its order.
inline float dequantize(std::int32_t sum, std::int32_t zero, std::int32_t rowSum, float rowScale,
                        float columnScale) {
  return rowScale * columnScale * static_cast<float>(sum - zero * rowSum);
}

#if defined(__AVX512F__)
/// A panel's int8 sums of one column in float: s_r · s · (Σ − z · Σ_k w_q), with the rows' scales
/// s_r and sums Σ_k w_q, and the column's scale s and zero point z broadcast.
EIGEN_ALWAYS_INLINE __m512 dequantize(__m512i sums, __m512i zero, __m512i rowSum, __m512 rowScale,
                                      __m512 columnScale) {
  const __m512i s = _mm512_sub_epi32(sums, _mm512_mullo_epi32(zero, rowSum));
  return _mm512_mul_ps(_mm512_mul_ps(rowScale, columnScale), _mm512_cvtepi32_ps(s));
}

/// Writes a panel's values v of one column to out, the rows in `rows` only: added to the old
/// values, or, when overwriting, to the bias where there is one.
EIGEN_ALWAYS_INLINE void writePanel(__m512 v, float* out, bool overwriting, bool addBias,
                                    __m512 bias, __mmask16 rows) {
  if (!overwriting) {
    v = _mm512_add_ps(_mm512_maskz_loadu_ps(rows, out), v);
  } else if (addBias) {
    v = _mm512_add_ps(bias, v);
  }
  _mm512_mask_storeu_ps(out, rows, v);
}
#endif

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
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<Scalar, float>) {
    bool whole = true;
    for (int q = 0; q < NP; ++q)
      whole = whole && panels[q].first == 0 && panels[q].last == kPanelRows;
    if (whole) {
      // Whole panels of float rows: the operations of the loop below, a panel's 16 rows in one
      // register. What the stores could alias (the intrinsics' stores alias anything) is read
      // into locals first, so that the unrolled loop keeps it in registers.
      const View<float> c = p.c;
      const bool overwriting = p.overwriting;
      const float* const biasAll = p.bias;
      const float* const columnScale = buffer.scale.data();
      const std::int32_t* const columnZero = buffer.zero.data();
      __m512 rowScale[std::size_t(NP)], bias[std::size_t(NP)];
      __m512i rowSum[std::size_t(NP)];
      RECURRENT_UNROLL
      for (int q = 0; q < NP; ++q) {
        const Panel& panel = panels[q];
        rowScale[q] =
            int8 ? _mm512_loadu_ps(a.scales(panel.block, panel.unit)) : _mm512_setzero_ps();
        rowSum[q] =
            int8 ? _mm512_loadu_si512(a.rowSums(panel.block, panel.unit)) : _mm512_setzero_si512();
        bias[q] = biasAll != nullptr
                      ? _mm512_loadu_ps(biasAll + panel.block * c.blockStride + panel.unit)
                      : _mm512_setzero_ps();
      }
      RECURRENT_UNROLL
      for (int k = 0; k < NC; ++k) {
        const auto column = static_cast<std::size_t>(j + k);
        const __m512i zero = _mm512_set1_epi32(int8 ? columnZero[column] : 0);
        const __m512 scale = _mm512_set1_ps(int8 ? columnScale[column] : 0.0f);
        RECURRENT_UNROLL
        for (int q = 0; q < NP; ++q) {
          const std::size_t at = std::size_t(q * NC + k) * kPanelRows;
          const __m512 v =
              int8 ? dequantize(_mm512_load_si512(sums + at), zero, rowSum[q], rowScale[q], scale)
                   : _mm512_load_ps(floats + at);
          writePanel(v, c.at(panels[q].block, panels[q].unit, j0 + k), overwriting,
                     biasAll != nullptr, bias[q], __mmask16(0xffff));
        }
      }
      return;
    }
  }
#endif
  for (int q = 0; q < NP; ++q) {
    const Panel& panel = panels[q];
    const float* scale = int8 ? a.scales(panel.block, panel.unit) : nullptr;
    const std::int32_t* rowSum = int8 ? a.rowSums(panel.block, panel.unit) : nullptr;
    const Scalar* bias =
        p.bias == nullptr ? nullptr : p.bias + panel.block * p.c.blockStride + panel.unit;
    for (int k = 0; k < NC; ++k) {
      const auto column = static_cast<std::size_t>(j + k);
      const std::size_t at = std::size_t(q * NC + k) * kPanelRows;
      // The panel's 16 values of this column, in float; then the rows that exist, written.
      alignas(64) float v[std::size_t(kPanelRows)];
      if (int8) {
        const std::int32_t zero = buffer.zero[column];
        const float columnScale = buffer.scale[column];
        for (int r = 0; r < kPanelRows; ++r) {
          v[r] = dequantize(sums[at + std::size_t(r)], zero, rowSum[r], scale[r], columnScale);
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

/// The tiles of n columns: ⌈n / kTileColumns⌉ of them (one column alone for n = 1), their widths
/// differing by one at most, the wider first — 64 columns are 6 tiles of 11 or 10, not 5 of 12
/// and a narrow one of 4, whose few sums per load would leave the multiply units idle.
struct ColumnTiles {
  explicit ColumnTiles(Index n)
      : count((n + kTileColumns - 1) / kTileColumns), base(n / count), wider(n % count) {}
  Index first(Index t) const { return t * base + std::min(t, wider); }
  Index width(Index t) const { return base + (t < wider ? 1 : 0); }

  Index count, base, wider;
};

/// The panels of block `block` that hold units [u0, u1), in order, to f(Panel).
template <typename F>
void forEachPanel(Index block, Index u0, Index u1, F&& f) {
  for (Index unit = u0 / kPanelRows * kPanelRows; unit < u1; unit += kPanelRows) {
    f(Panel{block, unit, std::max(u0, unit) - unit, std::min(u1, unit + kPanelRows) - unit});
  }
}

}  // namespace reduced

#if defined(__AVX512F__)
namespace reduced {

/// The mask of a panel's rows [first, last).
inline __mmask16 rowMask(const Panel& panel) {
  return static_cast<__mmask16>(((1u << panel.last) - 1u) & ~((1u << panel.first) - 1u));
}

/// The 16 float values of each of NP panels of A times one buffer column whose codes start at
/// `codes` (its groups contiguous), int8 with that column's zero point and scale broadcast: the
/// kernels' one-column sums, dequantized as tile() does, so that the values are tile's to the
/// bit. A panel's rows outside [first, last) read nothing and are zero.
template <int NP>
EIGEN_ALWAYS_INLINE void columnPanels(const ReducedMatrix& a, const Panel* panels,
                                      const ReducedBuffer& buffer, Index codes, __m512i zero,
                                      __m512 columnScale, __m512* v) {
  const Index ld = a.paddedDepth();
  if (a.precision() == Precision::Int8) {
    const std::int8_t* w[std::size_t(NP)];
    RECURRENT_UNROLL
    for (int q = 0; q < NP; ++q) w[q] = a.int8Panel(panels[q].block, panels[q].unit);
    const std::uint8_t* x = buffer.int8.data() + codes;
    __m512i sums[std::size_t(NP)];
#if defined(__AVX512VNNI__)
    int8ColumnSums<NP>(w, x, ld / 4, sums);
#else
    alignas(64) std::int32_t sumsOut[std::size_t(NP * kPanelRows)];
    int8Kernel<NP, 1>(ld / 4, w, x, sumsOut);
    RECURRENT_UNROLL
    for (int q = 0; q < NP; ++q) sums[q] = _mm512_load_si512(sumsOut + q * kPanelRows);
#endif
    RECURRENT_UNROLL
    for (int q = 0; q < NP; ++q) {
      const Panel& p = panels[q];
      const __mmask16 rows = rowMask(p);
      v[q] = dequantize(sums[q], zero, _mm512_maskz_loadu_epi32(rows, a.rowSums(p.block, p.unit)),
                        _mm512_maskz_loadu_ps(rows, a.scales(p.block, p.unit)), columnScale);
    }
    return;
  }
  const std::uint16_t* w[std::size_t(NP)];
  RECURRENT_UNROLL
  for (int q = 0; q < NP; ++q) w[q] = a.bf16Panel(panels[q].block, panels[q].unit);
  const std::uint16_t* x = buffer.bf16.data() + codes;
#if defined(__AVX512BF16__)
  bf16ColumnSums<NP>(w, x, ld / 2, v);
#else
  alignas(64) float sumsOut[std::size_t(NP * kPanelRows)];
  bf16Kernel<NP, 1>(ld / 2, w, x, sumsOut);
  RECURRENT_UNROLL
  for (int q = 0; q < NP; ++q) v[q] = _mm512_load_ps(sumsOut + q * kPanelRows);
#endif
  RECURRENT_UNROLL
  for (int q = 0; q < NP; ++q) v[q] = _mm512_maskz_mov_ps(rowMask(panels[q]), v[q]);
}

}  // namespace reduced

/// One float column (a step of one sequence): each panel's values by columnPanels, written from
/// the register by tile's operations (a partial panel through a mask), so that the result is
/// tile's to the bit, without its tiles, groups and buffers of sums.
inline void oneColumn(const ReducedProduct<float>& p, ReducedBuffer& buffer, Index u0, Index u1) {
  const ReducedMatrix& a = p.a;
  const bool int8 = a.precision() == Precision::Int8;
  quantizeColumn(p.b.data, a.depth(), a.paddedDepth(), a.precision(), buffer, 0, 0,
                 depthGroup(a.precision()));
  const __m512 columnScale = _mm512_set1_ps(int8 ? buffer.scale[0] : 0.0f);
  const __m512i zero = _mm512_set1_epi32(int8 ? buffer.zero[0] : 0);
  const View<float> c = p.c;
  const bool overwriting = p.overwriting;
  const float* const biasAll = p.bias;
  for (Index block = p.selectedBlocks.begin; block < p.selectedBlocks.end; ++block) {
    reduced::forEachPanel(block, u0, u1, [&](const reduced::Panel& panel) {
      const __mmask16 rows = reduced::rowMask(panel);
      __m512 v;
      reduced::columnPanels<1>(a, &panel, buffer, 0, zero, columnScale, &v);
      const __m512 bias =
          biasAll != nullptr
              ? _mm512_maskz_loadu_ps(rows, biasAll + block * c.blockStride + panel.unit)
              : _mm512_setzero_ps();
      reduced::writePanel(v, c.at(block, panel.unit, 0), overwriting, biasAll != nullptr, bias,
                          rows);
    });
  }
}
#endif

/// How many columns ahead reducedGemm asks for the input's lines.
constexpr Index kPrefetchColumns = 4;

/// Asks for the lines holding the n scalars from p, into the first-level cache, without waiting
/// for them: one address in each 64 bytes, and the last byte, for a range that does not start on
/// a line.
template <typename Scalar>
inline void prefetch(const Scalar* p, Index n) {
#if defined(__GNUC__) || defined(__clang__)
  if (n <= 0) return;
  const auto* bytes = reinterpret_cast<const char*>(p);
  const Index size = n * Index(sizeof(Scalar));
  for (Index b = 0; b < size; b += 64) __builtin_prefetch(bytes + b, 0, 3);
  __builtin_prefetch(bytes + size - 1, 0, 3);
#else
  (void)p;
  (void)n;
#endif
}

#if defined(RECURRENT_AMX)
/// A batch of at least this many columns runs on the AMX tiles where they are granted.
constexpr Index kAmxColumns = 2;

namespace reduced {

/// tileSums for up to 32 columns (one or two tiles) and one or two panels.
inline void amxSums(bool int8, Index columns, int panels, const void* x, Index stride,
                    const void* const* w, Index chunks, void* out) {
  const bool two = columns > amx::kTileColumns;
  if (int8) {
    if (two) {
      panels == 2 ? amx::tileSums<true, 2, 2>(x, stride, w, chunks, out)
                  : amx::tileSums<true, 2, 1>(x, stride, w, chunks, out);
    } else {
      panels == 2 ? amx::tileSums<true, 1, 2>(x, stride, w, chunks, out)
                  : amx::tileSums<true, 1, 1>(x, stride, w, chunks, out);
    }
  } else if (two) {
    panels == 2 ? amx::tileSums<false, 2, 2>(x, stride, w, chunks, out)
                : amx::tileSums<false, 2, 1>(x, stride, w, chunks, out);
  } else {
    panels == 2 ? amx::tileSums<false, 1, 2>(x, stride, w, chunks, out)
                : amx::tileSums<false, 1, 1>(x, stride, w, chunks, out);
  }
}

/// One job of amxGemm: up to two panels × the buffer's columns [first, first + columns), at most
/// two tiles of them.
struct AmxJob {
  Panel panels[2];
  int count;
  Index first, columns;
};

/// The values of one panel for the column whose codes start at `x` (its zero point and scale
/// in buffer column j for int8), from the tile's sums of it at `sums`: the depth groups from
/// `group` on (past the tiles' whole chunks) added by the vector instruction, then scaled back
/// (int8, with the panel's row scales and sums) as tile() does. Rows outside the panel's
/// [first, last) come out of masked row scales (int8) or are masked by the caller.
EIGEN_ALWAYS_INLINE __m512 amxValues(const ReducedMatrix& a, const Panel& panel,
                                     const ReducedBuffer& buffer, const void* x, Index j,
                                     const std::uint8_t* sums, Index group, __m512 rowScale,
                                     __m512i rowSum) {
  const Index ld = a.paddedDepth();
  if (a.precision() == Precision::Int8) {
    const std::int8_t* w = a.int8Panel(panel.block, panel.unit);
    const auto* codes = static_cast<const std::uint8_t*>(x);
    __m512i s = _mm512_load_si512(sums);
    for (Index g = group; g < ld / 4; ++g) {
      s = _mm512_dpbusd_epi32(s, broadcastGroup(codes, g), _mm512_loadu_si512(w + g * 64));
    }
    return dequantize(s, _mm512_set1_epi32(buffer.zero[std::size_t(j)]), rowSum, rowScale,
                      _mm512_set1_ps(buffer.scale[std::size_t(j)]));
  }
  const std::uint16_t* w = a.bf16Panel(panel.block, panel.unit);
  const auto* codes = static_cast<const std::uint16_t*>(x);
  __m512 s = _mm512_load_ps(reinterpret_cast<const float*>(sums));
  for (Index g = group; g < ld / 2; ++g) {
    const __m512i v = broadcastGroup(codes, g), b = _mm512_loadu_si512(w + g * 32);
    s = _mm512_dpbf16_ps(s, reinterpret_cast<const __m512bh&>(b),
                         reinterpret_cast<const __m512bh&>(v));
  }
  return _mm512_maskz_mov_ps(rowMask(panel), s);
}

/// Int8: a panel's row scales and row sums, zero outside its rows [first, last).
EIGEN_ALWAYS_INLINE void panelScales(const ReducedMatrix& a, const Panel& panel, __m512& rowScale,
                                     __m512i& rowSum) {
  const __mmask16 rows = rowMask(panel);
  const bool int8 = a.precision() == Precision::Int8;
  rowScale =
      int8 ? _mm512_maskz_loadu_ps(rows, a.scales(panel.block, panel.unit)) : _mm512_setzero_ps();
  rowSum = int8 ? _mm512_maskz_loadu_epi32(rows, a.rowSums(panel.block, panel.unit))
                : _mm512_setzero_si512();
}

/// Writes a job's values from its tile sums (`sums`, tileSums's order) by amxValues, as tile()
/// writes.
inline void amxWrite(const ReducedProduct<float>& p, const ReducedBuffer& buffer, const AmxJob& job,
                     Index j0, const std::uint8_t* sums, Index group) {
  const ReducedMatrix& a = p.a;
  const Index ld = a.paddedDepth();
  const View<float> c = p.c;
  const bool addBias = p.bias != nullptr;
  const bool int8 = a.precision() == Precision::Int8;
  for (int q = 0; q < job.count; ++q) {
    const Panel& panel = job.panels[q];
    const __mmask16 rows = rowMask(panel);
    const __m512 bias =
        addBias ? _mm512_maskz_loadu_ps(rows, p.bias + panel.block * c.blockStride + panel.unit)
                : _mm512_setzero_ps();
    __m512 rowScale;
    __m512i rowSum;
    panelScales(a, panel, rowScale, rowSum);
    for (Index k = 0; k < job.columns; ++k) {
      const Index j = job.first + k;
      // The sums of column k: line k mod 16 of the tile of column tile k / 16 and panel q.
      const std::uint8_t* line =
          sums + (k / amx::kTileColumns * job.count + q) * 1024 + k % amx::kTileColumns * 64;
      const void* x = int8 ? static_cast<const void*>(buffer.int8.data() + j * ld)
                           : static_cast<const void*>(buffer.bf16.data() + j * ld);
      const __m512 v = amxValues(a, panel, buffer, x, j, line, group, rowScale, rowSum);
      writePanel(v, c.at(panel.block, panel.unit, j0 + j), p.overwriting, addBias, bias, rows);
    }
  }
}

}  // namespace reduced

/// A batch on the AMX tiles (reduced_amx.hpp): the input columns quantized each into contiguous
/// codes, then jobs of two panels × up to 32 columns, their sums over the depth's whole chunks by
/// the tile unit, the rest of the depth, the scaling and the writing by amxWrite. The jobs are
/// pipelined: a job's sums are stored to one of two buffers while the previous job's are written
/// from the other, so that the tile unit and the vector units work side by side (the vector
/// loads of a tile's stored sums would otherwise wait for the stores).
inline void amxGemm(const ReducedProduct<float>& p, ReducedBuffer& buffer, Index u0, Index u1) {
  const ReducedMatrix& a = p.a;
  const bool int8 = a.precision() == Precision::Int8;
  const Index depth = a.depth(), ld = a.paddedDepth(), G = depthGroup(a.precision());
  const Index chunks = ld / G / amx::kChunkGroups, stride = int8 ? ld : 2 * ld;
  const auto* codes =
      int8 ? buffer.int8.data() : reinterpret_cast<const std::uint8_t*>(buffer.bf16.data());
  // A job's two tiles of columns start at a multiple of 32: their rows stay in the buffer.
  static_assert(ReducedBuffer::kColumns % (2 * amx::kTileColumns) == 0);
  const amx::Configuration configuration;
  alignas(64) std::uint8_t sums[2][4 * 1024];
  for (Index j0 = 0; j0 < p.columns; j0 += ReducedBuffer::kColumns) {
    const Index n = std::min(ReducedBuffer::kColumns, p.columns - j0);
    for (Index j = 0; j < n; ++j) {
      if (p.prefetchInput && j0 + j + kPrefetchColumns < p.columns)
        prefetch(p.b.data + (j0 + j + kPrefetchColumns) * p.b.ld, depth);
      quantizeColumn(p.b.data + (j0 + j) * p.b.ld, depth, ld, a.precision(), buffer, j, j * ld, G);
    }
    reduced::AmxJob job{}, pending{};
    bool hasPending = false;
    int slot = 0;
    const auto run = [&] {
      const void* w[2];
      for (int q = 0; q < job.count; ++q) {
        const reduced::Panel& panel = job.panels[q];
        w[q] = int8 ? static_cast<const void*>(a.int8Panel(panel.block, panel.unit))
                    : static_cast<const void*>(a.bf16Panel(panel.block, panel.unit));
      }
      // The buffer holds kColumns = 6 · 32 columns: a tile's rows past n are read in bounds, and
      // their sums are not used.
      for (job.first = 0; job.first < n; job.first += 2 * amx::kTileColumns) {
        job.columns = std::min(2 * amx::kTileColumns, n - job.first);
        reduced::amxSums(int8, job.columns, job.count, codes + job.first * stride, stride, w,
                         chunks, sums[slot]);
        if (hasPending) {
          reduced::amxWrite(p, buffer, pending, j0, sums[1 - slot], chunks * amx::kChunkGroups);
        }
        pending = job;
        hasPending = true;
        slot = 1 - slot;
      }
      job.count = 0;
    };
    for (Index block = p.selectedBlocks.begin; block < p.selectedBlocks.end; ++block) {
      reduced::forEachPanel(block, u0, u1, [&](const reduced::Panel& panel) {
        job.panels[job.count++] = panel;
        if (job.count == 2) run();
      });
    }
    if (job.count > 0) run();
    if (hasPending) {
      reduced::amxWrite(p, buffer, pending, j0, sums[1 - slot], chunks * amx::kChunkGroups);
    }
  }
}
#endif

/// Computes the ReducedProduct; `buffer` must hold ReducedBuffer::kColumns columns of A's depth.
template <typename Scalar>
void reducedGemm(const ReducedProduct<Scalar>& p, ReducedBuffer& buffer) {
  const ReducedMatrix& a = p.a;
  const Index H = a.rowBlocks().size, depth = a.depth(), ld = a.paddedDepth();
  const Index u0 = p.selectedUnits.begin, u1 = std::min(p.selectedUnits.end, H);
  if (p.columns == 0 || u0 >= u1) return;
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<Scalar, float>) {
    if (p.columns == 1) return oneColumn(p, buffer, u0, u1);
#if defined(RECURRENT_AMX)
    if (p.columns >= kAmxColumns && ld / depthGroup(a.precision()) >= amx::kChunkGroups &&
        amx::available()) {
      return amxGemm(p, buffer, u0, u1);
    }
#endif
  }
#endif
  for (Index j0 = 0; j0 < p.columns; j0 += ReducedBuffer::kColumns) {
    const Index n = std::min(ReducedBuffer::kColumns, p.columns - j0);
    const reduced::ColumnTiles tiles(n);
    const Index G = depthGroup(a.precision());
    for (Index t = 0; t < tiles.count; ++t) {
      // The tile's columns side by side within each depth group, so that a kernel reads the
      // group of every column of its tile from one line.
      const Index first = tiles.first(t), w = tiles.width(t);
      for (Index j = first; j < first + w; ++j) {
        // The input's columns are read once each (a projection's input comes from memory), and a
        // column's quantizing is too short a loop for the hardware prefetchers to get ahead of
        // it: its first pass waited on every line. The lines of a column a few ahead are asked
        // for while this one is quantized (not for a step's h, just written: inputInCache()).
        if (p.prefetchInput && j0 + j + kPrefetchColumns < p.columns)
          prefetch(p.b.data + (j0 + j + kPrefetchColumns) * p.b.ld, depth);
        quantizeColumn(p.b.data + (j0 + j) * p.b.ld, depth, ld, a.precision(), buffer, j,
                       first * ld + (j - first) * G, w * G);
      }
    }
    // Panels in groups of `most`, across the blocks' boundaries (a gate of 64 units is 4 panels:
    // one column's 4 gates run as 2 groups of 8, not 4 of 4). Each row's sum is its own, whatever
    // group its panel is in.
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
          for (Index t = 0; t < tiles.count; ++t) {
            const Index j = tiles.first(t);
            withCount<kTileColumns>(static_cast<int>(tiles.width(t)), [&](auto nc) {
              reduced::tile<decltype(np)::value, decltype(nc)::value>(p, group, j0 + j, j, buffer);
            });
          }
        });
      }
      count = 0;
    };
    const int most = n == 1 ? kGemvPanels : kTilePanels;
    for (Index block = p.selectedBlocks.begin; block < p.selectedBlocks.end; ++block) {
      reduced::forEachPanel(block, u0, u1, [&](const reduced::Panel& panel) {
        group[count++] = panel;
        if (count == most) flush();
      });
    }
    flush();
  }
}

}  // namespace detail
}  // namespace recurrent
