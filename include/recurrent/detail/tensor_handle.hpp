// recurrent — tensor_handle.hpp: a reference to one parameter tensor, matrix or vector.
#pragma once

#include <Eigen/Core>

namespace recurrent {
namespace detail {

/// Refers to a Matrix (2-D tensor) or a Vector (1-D tensor) of a layer. It keeps the address
/// of the Eigen object, not of its data, so it stays valid when the object is assigned to
/// (even moved into), and reads the current shape on every use.
template <typename Scalar>
class TensorHandle {
 public:
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  using Map = Eigen::Map<Eigen::Array<Scalar, Eigen::Dynamic, 1>>;

  explicit TensorHandle(Matrix& m) : m_matrix(&m) {}
  explicit TensorHandle(Vector& v) : m_vector(&v) {}

  /// 2 for a matrix, 1 for a vector (the rank of the PyTorch tensor).
  int rank() const { return m_matrix != nullptr ? 2 : 1; }
  Eigen::Index rows() const { return m_matrix != nullptr ? m_matrix->rows() : m_vector->rows(); }
  Eigen::Index cols() const { return m_matrix != nullptr ? m_matrix->cols() : 1; }
  Eigen::Index size() const { return rows() * cols(); }
  Scalar* data() const { return m_matrix != nullptr ? m_matrix->data() : m_vector->data(); }
  /// All entries as one array (column-major order for a matrix).
  Map array() const { return Map(data(), size()); }

  Matrix* matrix() const { return m_matrix; }
  Vector* vector() const { return m_vector; }
  bool sameObject(const TensorHandle& other) const {
    return m_matrix == other.m_matrix && m_vector == other.m_vector;
  }

 private:
  Matrix* m_matrix = nullptr;
  Vector* m_vector = nullptr;
};

}  // namespace detail
}  // namespace recurrent
