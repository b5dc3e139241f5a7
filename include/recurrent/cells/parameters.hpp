// recurrent — cells/parameters.hpp: named tensors, and the four every recurrent cell has.
//
// A layer's parameters are a struct of Eigen matrices and vectors named as PyTorch names them
// (weight_ih, weight_hh, bias_ih, bias_hh, ...), so that a state_dict carries over unchanged. The
// same type holds gradients: a gradient object is "shaped like the parameters". Every such struct
// lists its tensors once, in a static visit(self, sizes, f) that calls f(name, tensor, rows, cols)
// in state_dict order; TensorSet turns that list into everything else — forEach (what StateDict,
// ParameterList, the optimizers and initialize() use), setZero, the zero-filled tensors of a
// given size, and the shape check with the name of the first tensor that does not fit.
#pragma once

#include <recurrent/detail/errors.hpp>

#include <Eigen/Core>

namespace recurrent {

/// The sizes a cell is made with, which the shapes of its parameters and states follow.
struct CellSizes {
  Eigen::Index input = 0;       ///< I, the rows of x
  Eigen::Index hidden = 0;      ///< H, the rows of each gate (and of an LSTM's c)
  Eigen::Index projection = 0;  ///< P, the rows of an LSTM's projected h; 0 without projection
  /// R, the rows of h and of every output step: P with a projection, else H.
  Eigen::Index output() const { return projection > 0 ? projection : hidden; }

  /// Whether I, H and P are all equal.
  friend bool operator==(const CellSizes& a, const CellSizes& b) {
    return a.input == b.input && a.hidden == b.hidden && a.projection == b.projection;
  }
  /// Whether I, H or P differ.
  friend bool operator!=(const CellSizes& a, const CellSizes& b) { return !(a == b); }
};

/// TensorSet<Derived, Sizes>: the named tensors of a layer, listed once by Derived:
///
///     template <typename Self, typename F>
///     static void visit(Self& self, const Sizes& sizes, F&& f);   // f(name, tensor, rows, cols)
///
/// with Self = Derived or const Derived, the tensors in PyTorch's state_dict order and each with
/// the shape it has in a layer of `sizes`. A TensorSet remembers the sizes it was made for; its
/// forEach visits the tensors a layer of those sizes has.
template <typename Derived, typename Sizes_>
class TensorSet {
 public:
  using Sizes = Sizes_;  ///< the sizes that fix the shapes (CellSizes, LinearSizes)

  /// The sizes these tensors were made for (default-constructed: all zero).
  const Sizes& sizes() const { return m_sizes; }

  /// Calls f(name, tensor) for each tensor, in PyTorch's state_dict order.
  template <typename F>
  void forEach(F&& f) {
    Derived::visit(
        derived(), m_sizes,
        [&](const char* name, auto& tensor, Eigen::Index, Eigen::Index) { f(name, tensor); });
  }
  /// The same, read-only: f(name, const tensor).
  template <typename F>
  void forEach(F&& f) const {
    Derived::visit(
        derived(), m_sizes,
        [&](const char* name, auto& tensor, Eigen::Index, Eigen::Index) { f(name, tensor); });
  }

  /// Sets every tensor to zero, keeping the shapes (the "zero the gradients" call).
  void setZero() {
    forEach([](const char*, auto& tensor) { tensor.setZero(); });
  }

  /// Throws std::invalid_argument naming the first tensor (`what name must be r x c, got ...`)
  /// that is not shaped for a layer of `sizes`. Allocates nothing.
  void checkShape(const Sizes& sizes, const char* where, const char* what) const {
    Derived::visit(derived(), sizes,
                   [&](const char* name, const auto& tensor, Eigen::Index rows, Eigen::Index cols) {
                     detail::checkTensorShape(where, what, name, tensor, rows, cols);
                   });
  }

 protected:
  TensorSet() = default;
  /// Remembers `sizes`; the tensors stay empty until allocate().
  explicit TensorSet(const Sizes& sizes) : m_sizes(sizes) {}

  /// Gives every tensor zeros of its shape: the sizing constructor of Derived calls it once its
  /// tensors exist.
  void allocate() {
    Derived::visit(derived(), m_sizes,
                   [](const char*, auto& tensor, Eigen::Index rows, Eigen::Index cols) {
                     tensor.setZero(rows, cols);
                   });
  }

 private:
  Derived& derived() { return static_cast<Derived&>(*this); }
  const Derived& derived() const { return static_cast<const Derived&>(*this); }

  Sizes m_sizes{};
};

/// TensorHandle<Scalar>: a reference to one tensor of a layer, a Matrix (2-D tensor) or a Vector
/// (1-D tensor) — what StateDict and ParameterList hold. It keeps the address of the Eigen
/// object, not of its data, so it stays valid when the object is assigned to (even moved into),
/// and reads the current shape on every use. The object must outlive the handle.
template <typename Scalar>
class TensorHandle {
 public:
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;  ///< a 2-D tensor
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;               ///< a 1-D tensor
  using Map = Eigen::Map<Eigen::Array<Scalar, Eigen::Dynamic, 1>>;       ///< all entries, flat

  /// Refers to a 2-D tensor.
  explicit TensorHandle(Matrix& m) : m_matrix(&m) {}
  /// Refers to a 1-D tensor.
  explicit TensorHandle(Vector& v) : m_vector(&v) {}

  /// 2 for a matrix, 1 for a vector (the rank of the PyTorch tensor).
  int rank() const { return m_matrix != nullptr ? 2 : 1; }
  /// Rows now (the size of a vector).
  Eigen::Index rows() const { return m_matrix != nullptr ? m_matrix->rows() : m_vector->rows(); }
  /// Columns now (1 for a vector).
  Eigen::Index cols() const { return m_matrix != nullptr ? m_matrix->cols() : 1; }
  /// Entries now.
  Eigen::Index size() const { return rows() * cols(); }
  /// The entries, column-major.
  Scalar* data() const { return m_matrix != nullptr ? m_matrix->data() : m_vector->data(); }
  /// All entries as one array (column-major order for a matrix).
  Map array() const { return Map(data(), size()); }

  /// The matrix referred to, or null for a vector.
  Matrix* matrix() const { return m_matrix; }
  /// The vector referred to, or null for a matrix.
  Vector* vector() const { return m_vector; }
  /// Whether both refer to the same Eigen object.
  bool sameObject(const TensorHandle& other) const {
    return m_matrix == other.m_matrix && m_vector == other.m_vector;
  }

 private:
  Matrix* m_matrix = nullptr;
  Vector* m_vector = nullptr;
};

namespace detail {
/// The four tensors of every recurrent cell with G gate blocks, in PyTorch's order:
///
///     weight_ih   G·H × I    input-to-hidden weights, gate blocks stacked by rows
///     weight_hh   G·H × R    hidden-to-hidden weights, the same gate order (R = sizes.output())
///     bias_ih     G·H        input-to-hidden bias
///     bias_hh     G·H        hidden-to-hidden bias
template <int G, typename Self, typename F>
void visitGateTensors(Self& p, const CellSizes& s, F& f) {
  const Eigen::Index rows = G * s.hidden;
  f("weight_ih", p.weight_ih, rows, s.input);
  f("weight_hh", p.weight_hh, rows, s.output());
  f("bias_ih", p.bias_ih, rows, Eigen::Index(1));
  f("bias_hh", p.bias_hh, rows, Eigen::Index(1));
}
}  // namespace detail

/// GateParameters<Scalar, G>: the parameters of a cell that has exactly the four tensors of a
/// one-layer torch.nn.GRU (G = 3: r, z, n) or nn.RNN (G = 1):
///
///     weight_ih   G·H × I    weight_hh   G·H × H    bias_ih, bias_hh   G·H
template <typename Scalar_, int Gates>
struct GateParameters : TensorSet<GateParameters<Scalar_, Gates>, CellSizes> {
  using Scalar = Scalar_;                                                ///< float or double
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;  ///< dynamic matrix
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;               ///< dynamic vector
  static constexpr Eigen::Index kGates = Gates;                          ///< G: 3 GRU, 1 RNN

  Matrix weight_ih;  ///< G·H × I
  Matrix weight_hh;  ///< G·H × H
  Vector bias_ih;    ///< G·H
  Vector bias_hh;    ///< G·H

  GateParameters() = default;
  /// Zero tensors for a cell of `sizes`.
  explicit GateParameters(const CellSizes& sizes)
      : TensorSet<GateParameters<Scalar_, Gates>, CellSizes>(sizes) {
    this->allocate();
  }

  /// The tensor list of TensorSet.
  template <typename Self, typename F>
  static void visit(Self& self, const CellSizes& sizes, F&& f) {
    detail::visitGateTensors<Gates>(self, sizes, f);
  }
};

}  // namespace recurrent
