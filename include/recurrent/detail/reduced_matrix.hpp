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

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
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

/// The int8 code of input value x (see the file comment): clamp(round(x / s) + z, 0, 255), with
/// the division done as a product by 1/s, rounding to nearest even; NaN gives 0.
inline std::uint8_t int8Code(float x, float inverse, float zero) {
  const float q = std::nearbyint(x * inverse) + zero;
  return static_cast<std::uint8_t>(std::min(255.0f, std::max(0.0f, q)));
}

#if defined(__AVX512F__)
namespace codes {

/// The lanes of depth rows [k0, k0 + 16) that are below depth.
inline __mmask16 lanes(Index k0, Index depth) {
  const Index valid = std::min<Index>(16, std::max<Index>(0, depth - k0));
  return static_cast<__mmask16>((1u << valid) - 1u);
}

/// int8Code of src[k0, k0 + 16), 0 past depth: the same operations, sixteen lanes at once
/// (vmaxps returns its second operand for a NaN, as std::max(0, NaN) returns 0).
inline __m128i int8(const float* src, Index k0, Index depth, __m512 inverse, __m512 zero) {
  const __mmask16 m = lanes(k0, depth);
  const __m512 x = _mm512_maskz_loadu_ps(m, src + k0);
  __m512 q = _mm512_roundscale_ps(_mm512_mul_ps(x, inverse),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  q = _mm512_min_ps(_mm512_set1_ps(255.0f),
                    _mm512_max_ps(_mm512_add_ps(q, zero), _mm512_setzero_ps()));
  return _mm512_maskz_cvtepi32_epi8(m, _mm512_cvttps_epi32(q));
}

/// toBF16 of src[k0, k0 + 16), 0 past depth: the same integer rounding, sixteen lanes at once.
inline __m256i bf16(const float* src, Index k0, Index depth) {
  const __m512i u = _mm512_maskz_loadu_epi32(lanes(k0, depth), src + k0);
  const __m512i high = _mm512_srli_epi32(u, 16);
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                                _mm512_set1_epi32(0x7f800000));
  const __m512i odd = _mm512_and_si512(high, _mm512_set1_epi32(1));
  const __m512i rounded =
      _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), odd)), 16);
  const __m512i quiet = _mm512_or_si512(high, _mm512_set1_epi32(0x40));
  return _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(nan, rounded, quiet));
}

}  // namespace codes
#endif

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
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<Scalar, float>) {
      if (m.size % kPanelRows == 0) {  // whole panels, every byte written: no zeros first
        if (precision == Precision::Int8) {
          m_int8.resize(size);
          m_scale.resize(static_cast<std::size_t>(rows));
          m_rowSum.resize(static_cast<std::size_t>(rows));
          packInt8Whole(source);
        } else {
          m_bf16.resize(size);
          packBF16Whole(source);
        }
        return;
      }
    }
#endif
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

#if defined(__AVX512F__)
  // The panel loops' values for float weights in whole panels (H a multiple of 16), sixteen rows in
  // a register, read column by column as the weights lie in memory (a panel's rows of one depth
  // row are 64 bytes, and its next depth row is a whole column further): every panel's group of
  // depth rows k0.. is written before the next group, a 64-byte line each.

  void packInt8Whole(const View<const float>& source) {
    const Blocks m = m_m;
    // The rows' largest |w| (vmaxps returns its second operand for a NaN: a NaN weight is passed
    // over, as std::max does), then their scales, in m_scale.
    std::fill(m_scale.begin(), m_scale.end(), 0.0f);
    for (Index block = 0; block < m.count; ++block) {
      for (Index k = 0; k < m_depth; ++k) {
        const float* w = source.at(block, 0, k);
        float* maxAbs = m_scale.data() + block * m_blockRows;
        for (Index u = 0; u < m.size; u += kPanelRows) {
          const __m512 v = _mm512_abs_ps(_mm512_loadu_ps(w + u));
          _mm512_storeu_ps(maxAbs + u, _mm512_max_ps(v, _mm512_loadu_ps(maxAbs + u)));
        }
      }
    }
    for (std::size_t r = 0; r < m_scale.size(); r += kPanelRows) {
      const __m512 maxAbs = _mm512_loadu_ps(m_scale.data() + r);
      const __mmask16 nonzero = _mm512_cmp_ps_mask(maxAbs, _mm512_setzero_ps(), _CMP_GT_OQ);
      _mm512_storeu_ps(m_scale.data() + r, _mm512_mask_div_ps(_mm512_set1_ps(1.0f), nonzero, maxAbs,
                                                              _mm512_set1_ps(127.0f)));
    }
    std::fill(m_rowSum.begin(), m_rowSum.end(), 0);
    const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    for (Index k0 = 0; k0 < m_paddedDepth; k0 += 4) {
      for (Index block = 0; block < m.count; ++block) {
        for (Index u0 = 0; u0 < m.size; u0 += kPanelRows) {
          const Index first = block * m_blockRows + u0;
          const __m512 scales = _mm512_loadu_ps(m_scale.data() + first);
          __m512i sums = _mm512_loadu_si512(m_rowSum.data() + first);
          __m128i bytes[4];  // depth row k0 + i: the 16 rows' codes, row r in byte r
          for (Index i = 0; i < 4; ++i) {
            if (k0 + i >= m_depth) {
              bytes[i] = _mm_setzero_si128();
              continue;
            }
            const __m512 q = _mm512_roundscale_ps(
                _mm512_div_ps(_mm512_loadu_ps(source.at(block, u0, k0 + i)), scales),
                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            const __m512i v = _mm512_cvttps_epi32(_mm512_min_ps(hi, _mm512_max_ps(q, lo)));
            sums = _mm512_add_epi32(sums, v);
            bytes[i] = _mm512_cvtepi32_epi8(v);
          }
          _mm512_storeu_si512(m_rowSum.data() + first, sums);
          // [row][i] from [i][row]: bytes, then byte pairs, interleaved.
          const __m128i lo01 = _mm_unpacklo_epi8(bytes[0], bytes[1]);
          const __m128i hi01 = _mm_unpackhi_epi8(bytes[0], bytes[1]);
          const __m128i lo23 = _mm_unpacklo_epi8(bytes[2], bytes[3]);
          const __m128i hi23 = _mm_unpackhi_epi8(bytes[2], bytes[3]);
          auto* line =
              reinterpret_cast<__m128i*>(m_int8.data() + first * m_paddedDepth + k0 * kPanelRows);
          _mm_storeu_si128(line, _mm_unpacklo_epi16(lo01, lo23));
          _mm_storeu_si128(line + 1, _mm_unpackhi_epi16(lo01, lo23));
          _mm_storeu_si128(line + 2, _mm_unpacklo_epi16(hi01, hi23));
          _mm_storeu_si128(line + 3, _mm_unpackhi_epi16(hi01, hi23));
        }
      }
    }
  }

  void packBF16Whole(const View<const float>& source) {
    for (Index k0 = 0; k0 < m_paddedDepth; k0 += 2) {
      for (Index block = 0; block < m_m.count; ++block) {
        for (Index u0 = 0; u0 < m_m.size; u0 += kPanelRows) {
          // Depth rows k0 and k0 + 1 (zeros past the depth), rounded; then [row][k mod 2]:
          // halves interleaved within each 128-bit lane, the lanes put back in row order.
          const __m256i even = codes::bf16(source.at(block, u0, k0), 0, kPanelRows);
          const __m256i odd = k0 + 1 < m_depth
                                  ? codes::bf16(source.at(block, u0, k0 + 1), 0, kPanelRows)
                                  : _mm256_setzero_si256();
          const __m256i lo = _mm256_unpacklo_epi16(even, odd),
                        hi = _mm256_unpackhi_epi16(even, odd);
          auto* line = reinterpret_cast<__m256i*>(
              m_bf16.data() + (block * m_blockRows + u0) * m_paddedDepth + k0 * kPanelRows);
          _mm256_storeu_si256(line, _mm256_permute2x128_si256(lo, hi, 0x20));
          _mm256_storeu_si256(line + 1, _mm256_permute2x128_si256(lo, hi, 0x31));
        }
      }
    }
  }
#endif

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

/// lo = min(0, min_k src[k]) and hi = max(0, max_k src[k]): the range an int8 column is
/// quantized over.
template <typename Scalar>
inline void columnRange(const Scalar* src, Index depth, float& lo, float& hi) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<Scalar, float>) {
    // Starting from zeros, and with the lanes past depth loaded as zeros, the range includes 0
    // as asked. Exact: min and max round nothing.
    __m512 low = _mm512_setzero_ps(), high = _mm512_setzero_ps();
    for (Index k0 = 0; k0 < depth; k0 += 16) {
      const __m512 x = _mm512_maskz_loadu_ps(codes::lanes(k0, depth), src + k0);
      low = _mm512_min_ps(x, low);
      high = _mm512_max_ps(x, high);
    }
    lo = _mm512_reduce_min_ps(low);
    hi = _mm512_reduce_max_ps(high);
    return;
  }
#endif
  const Eigen::Map<const Eigen::Matrix<Scalar, Eigen::Dynamic, 1>> column(src, depth);
  lo = std::min(0.0f, static_cast<float>(column.minCoeff()));
  hi = std::max(0.0f, static_cast<float>(column.maxCoeff()));
}

/// Writes the 16 codes of depth rows [k0, k0 + 16) to their places in a buffer column: group g of
/// G rows at dst + g·groupStride codes (groupStride = G: contiguous), below paddedDepth only.
template <Index G, typename Code>
inline void placeCodes(const Code* codes, Index k0, Index paddedDepth, Code* dst,
                       Index groupStride) {
  const Index count = std::min<Index>(16, paddedDepth - k0);
  const auto group = static_cast<std::size_t>(G) * sizeof(Code);
  if (groupStride == G) {
    std::memcpy(dst + k0, codes, static_cast<std::size_t>(count) * sizeof(Code));
  } else if (count == 16) {  // a constant trip count: unrolled into 16 / G moves
    for (Index i = 0; i < 16; i += G)
      std::memcpy(dst + (k0 + i) / G * groupStride, codes + i, group);
  } else {
    for (Index i = 0; i < count; i += G)
      std::memcpy(dst + (k0 + i) / G * groupStride, codes + i, group);
  }
}

/// Writes a column's codes into its place in the buffer (group g of G codes at dst + g·groupStride,
/// zeros from depth to paddedDepth), code(k) one at a time.
template <Index G, typename Code, typename One>
inline void writeCodes(Index depth, Index paddedDepth, Code* dst, Index groupStride, One&& code) {
  for (Index g = 0; g * G < paddedDepth; ++g) {
    for (Index i = 0; i < G; ++i) {
      const Index k = g * G + i;
      dst[g * groupStride + i] = k < depth ? code(k) : Code(0);
    }
  }
}

/// writeCodes sixteen at a time (AVX-512, float): chunk(k0) is an integer vector of the 16 codes
/// of depth rows k0.., zeros past depth.
template <Index G, typename Code, typename Chunk>
inline void writeChunks(Index paddedDepth, Code* dst, Index groupStride, Chunk&& chunk) {
  for (Index k0 = 0; k0 < paddedDepth; k0 += 16) {
    const auto v = chunk(k0);
    static_assert(sizeof v == 16 * sizeof(Code), "a chunk is sixteen codes");
    alignas(32) Code codes[16];
    std::memcpy(codes, &v, sizeof v);
    placeCodes<G>(codes, k0, paddedDepth, dst, groupStride);
  }
}

/// Quantizes column `src` (depth values; int8, see the file comment) or rounds it (bf16) into
/// the buffer, where its depth group g (4 or 2 values) lies at offset + g·groupStride, padded with
/// zeros to paddedDepth; int8 keeps the column's scale and zero point at index j. Every build
/// writes the same codes: the AVX-512 loops are the scalar ones, sixteen rows at a time.
template <typename Scalar>
inline void quantizeColumn(const Scalar* src, Index depth, Index paddedDepth, Precision precision,
                           ReducedBuffer& buffer, Index j, Index offset, Index groupStride) {
  if (precision == Precision::BF16) {
    std::uint16_t* dst = buffer.bf16.data() + offset;
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<Scalar, float>) {
      return writeChunks<2>(paddedDepth, dst, groupStride,
                            [src, depth](Index k0) { return codes::bf16(src, k0, depth); });
    }
#endif
    return writeCodes<2>(depth, paddedDepth, dst, groupStride,
                         [src](Index k) { return toBF16(static_cast<float>(src[k])); });
  }
  float lo, hi;  // min(0, min x), max(0, max x)
  columnRange(src, depth, lo, hi);
  const float scale = hi > lo ? (hi - lo) / 255.0f : 1.0f;
  const float inverse = 1.0f / scale;
  const float zero = std::min(255.0f, std::max(0.0f, std::nearbyint(-lo * inverse)));
  std::uint8_t* dst = buffer.int8.data() + offset;
  buffer.scale[static_cast<std::size_t>(j)] = scale;
  buffer.zero[static_cast<std::size_t>(j)] = static_cast<std::int32_t>(zero);
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<Scalar, float>) {
    const __m512 inverses = _mm512_set1_ps(inverse), zeros = _mm512_set1_ps(zero);
    return writeChunks<4>(paddedDepth, dst, groupStride,
                          [=](Index k0) { return codes::int8(src, k0, depth, inverses, zeros); });
  }
#endif
  writeCodes<4>(depth, paddedDepth, dst, groupStride, [src, inverse, zero](Index k) {
    return int8Code(static_cast<float>(src[k]), inverse, zero);
  });
}

}  // namespace detail
}  // namespace recurrent
