// recurrent — detail/reduced_buffer.hpp: a thread's scratch for the int8 and bf16 products.
#pragma once

#include <recurrent/detail/kernel.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace recurrent {
namespace detail {

/// A vector whose data Eigen's allocator aligns (to a 64-byte line with AVX-512).
template <typename T>
using AlignedVector = std::vector<T, Eigen::aligned_allocator<T>>;

/// The inputs of a reduced product, quantized column by column (bytes for int8, halves for bf16)
/// in tiles of the kernel's columns, each tile's columns interleaved group by group, or, for the
/// AMX tiles, each column's codes contiguous (reduced_kernel.hpp), padded with zeros; int8 keeps
/// each column's scale and zero point. One per thread; reserve() allocates only when it grows.
struct ReducedBuffer {
  /// Columns quantized at a time: a product over more columns runs in blocks of this many.
  static constexpr Index kColumns = 192;

  AlignedVector<std::uint8_t> int8;
  AlignedVector<std::uint16_t> bf16;
  AlignedVector<float> scale;
  AlignedVector<std::int32_t> zero;

  /// Room for kColumns columns of `depth` (any precision's padding).
  void reserve(Index depth) {
    const auto size = static_cast<std::size_t>(roundUp(std::max<Index>(depth, 1), 4) * kColumns);
    if (int8.size() < size) int8.resize(size);
    if (bf16.size() < size) bf16.resize(size);
    if (scale.size() < std::size_t(kColumns)) scale.resize(std::size_t(kColumns));
    if (zero.size() < std::size_t(kColumns)) zero.resize(std::size_t(kColumns));
  }
};

}  // namespace detail
}  // namespace recurrent
