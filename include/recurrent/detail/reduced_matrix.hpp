// recurrent — detail/reduced_matrix.hpp: weights and inputs in int8 or bfloat16 (Precision).
//
// A ReducedMatrix is A (G blocks of H rows × K depth) stored for the reduced-precision kernels
// (reduced_kernel.hpp) in panels of kPanelRows = 16 rows, each block's rows padded to whole
// panels, the depth padded to whole groups (4 for int8, 2 for bf16):
//
//     int8   panel bytes [k/4][row][k mod 4]      one 64-byte line per group of 4 depth rows:
//                                                 what AVX-512 VNNI's vpdpbusd multiplies with
//                                                 one broadcast group of 4 input bytes
//     bf16   panel halves [k/2][row][k mod 2]     one 64-byte line per pair: vdpbf16ps's operand
//
// Padding rows and depth are zero. The layout does not depend on the instructions the build
// targets: the portable kernel reads the same bytes, so a library and a program compiled for
// different instruction sets agree on it.
//
// Int8 (PyTorch's dynamic quantization): row r is w_q = round(w / s_r) with s_r = max|w_r| / 127
// (symmetric; s_r = 1 for a zero row), and keeps Σ_k w_q[r, k] for the zero-point correction. An
// input column x is quantized when it is multiplied: q = clamp(round(x / s) + z, 0, 255) with
// s = (max(x, 0) − min(x, 0)) / 255 and z = round(−min(x, 0) / s), so that 0 is exact. Then
//
//     (A·x)_r ≈ s_r · s · (Σ_k w_q[r, k] · q_k − z · Σ_k w_q[r, k])
//
// where the sum is exact in int32 (|w_q| ≤ 127, q ≤ 255: exact for K < 66 000).
#pragma once

#include <recurrent/detail/packed_matrix.hpp>
#include <recurrent/precision.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace recurrent {
namespace detail {

constexpr int kPanelRows = 16;  ///< rows per panel of a ReducedMatrix: one 512-bit register

/// Depth rows per group of the layout: 4 for int8, 2 for bf16 (1 for Full, unused).
inline Index depthGroup(Precision p) {
  return p == Precision::Int8 ? 4 : p == Precision::BF16 ? 2 : 1;
}

/// x rounded to bfloat16, to nearest with ties to even (a NaN stays a NaN).
inline std::uint16_t toBF16(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}
/// The float a bfloat16 stands for (exact).
inline float fromBF16(std::uint16_t b) {
  const std::uint32_t u = std::uint32_t(b) << 16;
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

/// A weight matrix in int8 or bf16, in panels of kPanelRows rows (see the file comment). Packing
/// allocates only when the shape grows.
class ReducedMatrix {
 public:
  /// Packs the logical A(block·m.size + r, k) = source element (block, r, k), k < depth.
  template <typename Scalar>
  void pack(const View<const Scalar>& source, Blocks m, Index depth, Precision precision) {
    m_precision = precision;
    m_m = m;
    m_depth = depth;
    m_paddedDepth = roundUp(std::max<Index>(depth, 1), depthGroup(precision));
    m_blockRows = roundUp(m.size, kPanelRows);
    const Index rows = m.count * m_blockRows;
    const auto size = static_cast<std::size_t>(rows * m_paddedDepth);
    if (precision == Precision::Int8) {
      m_int8.assign(size, 0);
      m_scale.assign(static_cast<std::size_t>(rows), 0.0f);
      m_rowSum.assign(static_cast<std::size_t>(rows), 0);
    } else {
      m_bf16.assign(size, 0);
    }
    for (Index block = 0; block < m.count; ++block) {
      for (Index u0 = 0; u0 < m.size; u0 += kPanelRows) {
        const Index rowsHere = std::min<Index>(kPanelRows, m.size - u0);
        if (precision == Precision::Int8) {
          packInt8Panel(source, block, u0, rowsHere);
        } else {
          packBF16Panel(source, block, u0, rowsHere);
        }
      }
    }
  }

  Precision precision() const { return m_precision; }
  const Blocks& rowBlocks() const { return m_m; }
  Index depth() const { return m_depth; }              ///< K
  Index paddedDepth() const { return m_paddedDepth; }  ///< K rounded up to a whole group
  Index packedBlockRows() const { return m_blockRows; }

  /// The panel whose first row is unit u0 (a multiple of kPanelRows) of `block`.
  const std::int8_t* int8Panel(Index block, Index u0) const {
    return m_int8.data() + (block * m_blockRows + u0) * m_paddedDepth;
  }
  const std::uint16_t* bf16Panel(Index block, Index u0) const {
    return m_bf16.data() + (block * m_blockRows + u0) * m_paddedDepth;
  }
  /// Int8: the scales s_r and the sums Σ_k w_q[r, k] of the panel's rows.
  const float* scales(Index block, Index u0) const {
    return m_scale.data() + block * m_blockRows + u0;
  }
  const std::int32_t* rowSums(Index block, Index u0) const {
    return m_rowSum.data() + block * m_blockRows + u0;
  }

  /// Bytes of the packed data: weights, scales and row sums, padding included.
  static Index bytes(Precision precision, Blocks m, Index depth) {
    const Index rows = m.count * roundUp(m.size, kPanelRows);
    const Index paddedDepth = roundUp(std::max<Index>(depth, 1), depthGroup(precision));
    if (precision == Precision::Int8) {
      return rows * (paddedDepth + Index(sizeof(float) + sizeof(std::int32_t)));
    }
    return rows * paddedDepth * Index(sizeof(std::uint16_t));
  }

 private:
  /// Rows [u0, u0 + rows) of `block`, rows ≤ kPanelRows: the panel of unit u0.
  template <typename Scalar>
  void packInt8Panel(const View<const Scalar>& source, Index block, Index u0, Index rows) {
    eigen_assert(!source.transposed);
    const Index first = block * m_blockRows + u0;
    float maxAbs[kPanelRows] = {}, scales[kPanelRows];
    for (Index k = 0; k < m_depth; ++k) {
      const Scalar* w = source.at(block, u0, k);
      for (Index r = 0; r < rows; ++r) {
        maxAbs[r] = std::max(maxAbs[r], std::abs(static_cast<float>(w[r])));
      }
    }
    for (Index r = 0; r < rows; ++r) {
      const float scale = maxAbs[r] > 0.0f ? maxAbs[r] / 127.0f : 1.0f;
      m_scale[static_cast<std::size_t>(first + r)] = scale;
      scales[r] = scale;
    }
    std::int32_t sums[kPanelRows] = {};
    std::int8_t* panel = m_int8.data() + first * m_paddedDepth;
    for (Index k = 0; k < m_depth; ++k) {
      const Scalar* w = source.at(block, u0, k);
      std::int8_t* dst = panel + (k / 4) * (4 * kPanelRows) + k % 4;
      for (Index r = 0; r < rows; ++r) {
        const float q = std::nearbyint(static_cast<float>(w[r]) / scales[r]);
        const auto v = static_cast<std::int8_t>(std::min(127.0f, std::max(-127.0f, q)));
        dst[4 * r] = v;
        sums[r] += v;
      }
    }
    for (Index r = 0; r < rows; ++r) m_rowSum[static_cast<std::size_t>(first + r)] = sums[r];
  }

  template <typename Scalar>
  void packBF16Panel(const View<const Scalar>& source, Index block, Index u0, Index rows) {
    eigen_assert(!source.transposed);
    std::uint16_t* panel = m_bf16.data() + (block * m_blockRows + u0) * m_paddedDepth;
    for (Index k = 0; k < m_depth; ++k) {
      const Scalar* w = source.at(block, u0, k);
      std::uint16_t* dst = panel + (k / 2) * (2 * kPanelRows) + k % 2;
      for (Index r = 0; r < rows; ++r) dst[2 * r] = toBF16(static_cast<float>(w[r]));
    }
  }

  Precision m_precision = Precision::Full;
  Blocks m_m;
  Index m_depth = 0, m_paddedDepth = 0, m_blockRows = 0;
  AlignedVector<std::int8_t> m_int8;
  AlignedVector<std::uint16_t> m_bf16;
  AlignedVector<float> m_scale;
  AlignedVector<std::int32_t> m_rowSum;
};

/// quantizeColumn's int8 values, group g of 4 at dst + g·groupStride.
template <typename Scalar>
inline void quantizeGroups(const Scalar* src, Index depth, Index paddedDepth, float inverse,
                           float zero, std::uint8_t* dst, Index groupStride) {
  constexpr Index G = 4;
  for (Index g = 0; g * G < paddedDepth; ++g) {
    for (Index i = 0; i < G; ++i) {
      const Index k = g * G + i;
      const float q =
          k < depth ? std::nearbyint(static_cast<float>(src[k]) * inverse) + zero : 0.0f;
      dst[g * groupStride + i] = static_cast<std::uint8_t>(std::min(255.0f, std::max(0.0f, q)));
    }
  }
}

/// Quantizes column `src` (depth values; int8, see the file comment) or rounds it (bf16) into
/// the buffer, where its depth group g (4 or 2 values) lies at offset + g·groupStride, padded with
/// zeros to paddedDepth; int8 keeps the column's scale and zero point at index j.
template <typename Scalar>
inline void quantizeColumn(const Scalar* src, Index depth, Index paddedDepth, Precision precision,
                           ReducedBuffer& buffer, Index j, Index offset, Index groupStride) {
  const Index G = depthGroup(precision);
  if (precision == Precision::BF16) {
    std::uint16_t* dst = buffer.bf16.data() + offset;
    if (groupStride == G) {  // one column alone: contiguous
      for (Index k = 0; k < depth; ++k) dst[k] = toBF16(static_cast<float>(src[k]));
      for (Index k = depth; k < paddedDepth; ++k) dst[k] = 0;
      return;
    }
    for (Index g = 0; g * G < paddedDepth; ++g) {
      for (Index i = 0; i < G; ++i) {
        const Index k = g * G + i;
        dst[g * groupStride + i] = k < depth ? toBF16(static_cast<float>(src[k])) : 0;
      }
    }
    return;
  }
  const Eigen::Map<const Eigen::Matrix<Scalar, Eigen::Dynamic, 1>> column(src, depth);
  const float lo = std::min(0.0f, static_cast<float>(column.minCoeff()));
  const float hi = std::max(0.0f, static_cast<float>(column.maxCoeff()));
  const float scale = hi > lo ? (hi - lo) / 255.0f : 1.0f;
  const float inverse = 1.0f / scale;
  const float zero = std::min(255.0f, std::max(0.0f, std::nearbyint(-lo * inverse)));
  std::uint8_t* dst = buffer.int8.data() + offset;
  if (groupStride == G) {  // one column alone: contiguous
    for (Index k = 0; k < depth; ++k) {
      const float q = std::nearbyint(static_cast<float>(src[k]) * inverse) + zero;
      dst[k] = static_cast<std::uint8_t>(std::min(255.0f, std::max(0.0f, q)));
    }
    for (Index k = depth; k < paddedDepth; ++k) dst[k] = 0;
  } else {
    quantizeGroups(src, depth, paddedDepth, inverse, zero, dst, groupStride);
  }
  buffer.scale[static_cast<std::size_t>(j)] = scale;
  buffer.zero[static_cast<std::size_t>(j)] = static_cast<std::int32_t>(zero);
}

}  // namespace detail
}  // namespace recurrent
