// recurrent — maps.hpp: contiguous views of one column's gate blocks.
#pragma once

#include <Eigen/Core>

#include <type_traits>

namespace recurrent {
namespace detail {

template <typename Scalar>
using ArrayMap = Eigen::Map<Eigen::Array<Scalar, Eigen::Dynamic, 1>>;
template <typename Scalar>
using ConstArrayMap = Eigen::Map<const Eigen::Array<Scalar, Eigen::Dynamic, 1>>;

/// Rows [row, row + length) of column `col` of `m`, as an array (column-major: contiguous).
template <typename Derived, typename = std::enable_if_t<(Eigen::internal::traits<Derived>::Flags &
                                                         Eigen::LvalueBit) != 0>>
ArrayMap<typename Derived::Scalar> segment(Eigen::MatrixBase<Derived>& m, Eigen::Index row,
                                           Eigen::Index length, Eigen::Index col) {
  return ArrayMap<typename Derived::Scalar>(&m.derived().coeffRef(row, col), length);
}

/// The same, read-only.
template <typename Derived>
ConstArrayMap<typename Derived::Scalar> csegment(const Eigen::MatrixBase<Derived>& m,
                                                 Eigen::Index row, Eigen::Index length,
                                                 Eigen::Index col) {
  return ConstArrayMap<typename Derived::Scalar>(
      m.derived().data() + col * m.derived().outerStride() + row, length);
}

/// Read-only views of read-only matrices (such as Eigen::Ref<const Matrix>).
template <typename Derived>
ConstArrayMap<typename Derived::Scalar> segment(const Eigen::MatrixBase<Derived>& m,
                                                Eigen::Index row, Eigen::Index length,
                                                Eigen::Index col) {
  return csegment(m, row, length, col);
}

}  // namespace detail
}  // namespace recurrent
