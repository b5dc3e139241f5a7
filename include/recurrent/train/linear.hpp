// recurrent — train/linear.hpp: the output layer y = W h + b.
#pragma once

#include <recurrent/cells/parameters.hpp>
#include <recurrent/detail/errors.hpp>
#include <recurrent/detail/random.hpp>

#include <Eigen/Core>

#include <cmath>

namespace recurrent {

/// The sizes of a Linear layer: in_features I and out_features O.
struct LinearSizes {
  Eigen::Index input = 0;   ///< I
  Eigen::Index output = 0;  ///< O
};

/// The parameter tensors of a Linear layer, named as torch.nn.Linear names them:
///
///   weight   O × I
///   bias     O
///
/// The same type holds gradients ("shaped like the parameters").
template <typename Scalar_>
struct LinearParameters : TensorSet<LinearParameters<Scalar_>, LinearSizes> {
  using Scalar = Scalar_;                                                ///< float or double
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;  ///< dynamic matrix
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;               ///< dynamic vector

  Matrix weight;  ///< O × I
  Vector bias;    ///< O

  LinearParameters() = default;
  /// Zero tensors for input size I and output size O.
  LinearParameters(Eigen::Index inputSize, Eigen::Index outputSize)
      : TensorSet<LinearParameters<Scalar_>, LinearSizes>(LinearSizes{inputSize, outputSize}) {
    this->allocate();
  }

  /// The tensor list of TensorSet.
  template <typename Self, typename F>
  static void visit(Self& self, const LinearSizes& sizes, F&& f) {
    f("weight", self.weight, sizes.output, sizes.input);
    f("bias", self.bias, sizes.output, Eigen::Index(1));
  }
};

/// Linear<Scalar>: the affine output layer of torch.nn.Linear, applied to every column.
///
///     y = W h + b          W: O × I,  b: O
///
/// It works over the layout of a Sequence's output: h is I × (T·B), one column per step and
/// sequence, and y is O × (T·B) in the same layout. Every column is independent, so padding
/// columns (h = 0) simply give y = b there; the losses (loss.hpp) ignore them.
///
/// Backward, from dL/dy (O × N):
///
///     dW += dy · hᵀ        db += Σ_columns dy        dh = Wᵀ · dy
///
/// Like a cell, the layer owns its parameters and keeps nothing per call: forward() and
/// backward() are const, and the caller keeps the input h (a Sequence's output() already is
/// that buffer) for backward().
template <typename Scalar_>
class Linear {
 public:
  using Scalar = Scalar_;                                                ///< float or double
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;  ///< dynamic matrix
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;               ///< dynamic vector
  using Parameters = LinearParameters<Scalar>;  ///< weight and bias; also their gradients

  /// A layer from `inputSize` features to `outputSize`, parameters zero. Throws
  /// std::invalid_argument unless both are at least 1.
  Linear(Eigen::Index inputSize, Eigen::Index outputSize)
      : m_inputSize(detail::checkPositive("Linear", "in_features", inputSize)),
        m_outputSize(detail::checkPositive("Linear", "out_features", outputSize)),
        m_params(inputSize, outputSize) {}

  Eigen::Index inputSize() const { return m_inputSize; }    ///< I, in_features
  Eigen::Index outputSize() const { return m_outputSize; }  ///< O, out_features

  /// The layer's weight and bias, to read, assign, load or train; they must keep their shapes
  /// (checkParameters()).
  Parameters& parameters() { return m_params; }
  /// The same, read-only.
  const Parameters& parameters() const { return m_params; }
  /// Zero tensors shaped like the parameters, to accumulate gradients into.
  Parameters zeroGradients() const { return Parameters(m_inputSize, m_outputSize); }

  /// PyTorch's initialisation of nn.Linear: weight and bias from U(-1/√I, 1/√I) (the
  /// weight's kaiming_uniform_ with a = √5 reduces to this bound), drawn from `rng`.
  template <typename Rng>
  void initialize(Rng& rng) {
    detail::fillUniform(m_params, 1.0 / std::sqrt(static_cast<double>(m_inputSize)), rng);
  }

  /// y = W h + b for every column of h (I × N); y is resized to O × N.
  template <typename Derived>
  void forward(const Eigen::MatrixBase<Derived>& h, Matrix& y) const {
    checkParameters("Linear::forward");
    checkInput("Linear::forward", "input", h.rows());
    if (y.rows() != m_outputSize || y.cols() != h.cols()) y.resize(m_outputSize, h.cols());
    for (Eigen::Index j = 0; j < y.cols(); ++j) y.col(j) = m_params.bias;
    y.noalias() += m_params.weight * h;
  }

  /// Backward from dL/dy (O × N) for the input h (I × N) of forward: ADDS dW and db into
  /// `grads`.
  template <typename DerivedH, typename DerivedDy>
  void backward(const Eigen::MatrixBase<DerivedH>& h, const Eigen::MatrixBase<DerivedDy>& dy,
                Parameters& grads) const {
    checkBackward(h, dy, grads);
    accumulate(h, dy, grads);
  }

  /// The same, and writes dL/dh = Wᵀ dy into `dh` (resized to I × N).
  template <typename DerivedH, typename DerivedDy>
  void backward(const Eigen::MatrixBase<DerivedH>& h, const Eigen::MatrixBase<DerivedDy>& dy,
                Parameters& grads, Matrix& dh) const {
    checkBackward(h, dy, grads);
    accumulate(h, dy, grads);
    if (dh.rows() != m_inputSize || dh.cols() != dy.cols()) dh.resize(m_inputSize, dy.cols());
    dh.noalias() = m_params.weight.transpose() * dy;
  }

  /// Throws std::invalid_argument if a parameter tensor no longer has the layer's shape.
  void checkParameters(const char* where) const {
    m_params.checkShape(LinearSizes{m_inputSize, m_outputSize}, where, "parameter");
  }

 private:
  void checkInput(const char* where, const char* what, Eigen::Index rows) const {
    if (rows != m_inputSize) {
      detail::fail(where, ": ", what, " must have ", m_inputSize, " rows (in_features), got ",
                   rows);
    }
  }

  template <typename DerivedH, typename DerivedDy>
  void checkBackward(const Eigen::MatrixBase<DerivedH>& h, const Eigen::MatrixBase<DerivedDy>& dy,
                     const Parameters& grads) const {
    const char* where = "Linear::backward";
    checkParameters(where);
    checkInput(where, "input", h.rows());
    detail::checkShape(where, "output gradient", dy.rows(), dy.cols(), m_outputSize, h.cols());
    grads.checkShape(LinearSizes{m_inputSize, m_outputSize}, where, "gradient");
  }

  template <typename DerivedH, typename DerivedDy>
  void accumulate(const Eigen::MatrixBase<DerivedH>& h, const Eigen::MatrixBase<DerivedDy>& dy,
                  Parameters& grads) const {
    grads.weight.noalias() += dy * h.transpose();
    grads.bias.noalias() += dy.rowwise().sum();
  }

  Eigen::Index m_inputSize;
  Eigen::Index m_outputSize;
  Parameters m_params;
};

}  // namespace recurrent
