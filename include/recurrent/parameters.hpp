// recurrent — parameters.hpp: the parameter tensors of one recurrent cell.
//
// Named and laid out exactly as PyTorch's nn.LSTM / nn.GRU / nn.RNN name them for
// one layer, so that a state_dict carries over unchanged:
//
//   weight_ih   G·H × I    input-to-hidden weights, gate blocks stacked by rows
//   weight_hh   G·H × H    hidden-to-hidden weights, same gate order
//   bias_ih     G·H        input-to-hidden bias
//   bias_hh     G·H        hidden-to-hidden bias
//
// G is the number of gates: 4 for LSTM (i, f, g, o), 3 for GRU (r, z, n), 1 for RNN.
// The same type holds gradients: a gradient object is "shaped like the parameters".
#pragma once

#include <recurrent/detail/errors.hpp>

#include <Eigen/Core>

#include <cmath>
#include <cstdint>

namespace recurrent {

namespace detail {
/// Throws std::invalid_argument unless tensor `name` of `what` is rows × cols.
template <typename A>
void checkTensorShape(const char* where, const char* what, const char* name, const A& a,
                      Eigen::Index rows, Eigen::Index cols) {
  if (a.rows() != rows || a.cols() != cols) {
    fail(where, ": ", what, " ", name, " must be ", rows, " x ", cols, ", got ", a.rows(), " x ",
         a.cols());
  }
}
}  // namespace detail

template <typename Scalar_>
struct CellParameters {
  using Scalar = Scalar_;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

  Matrix weight_ih;  ///< G·H × I
  Matrix weight_hh;  ///< G·H × H
  Vector bias_ih;    ///< G·H
  Vector bias_hh;    ///< G·H

  CellParameters() = default;

  /// Zero tensors of the shapes of a cell with G gates, input size I, hidden size H.
  CellParameters(Eigen::Index gates, Eigen::Index inputSize, Eigen::Index hiddenSize)
      : weight_ih(Matrix::Zero(gates * hiddenSize, inputSize)),
        weight_hh(Matrix::Zero(gates * hiddenSize, hiddenSize)),
        bias_ih(Vector::Zero(gates * hiddenSize)),
        bias_hh(Vector::Zero(gates * hiddenSize)) {}

  /// Sets every tensor to zero, keeping the shapes (the "zero the gradients" call).
  void setZero() {
    forEach([](const char*, auto& tensor) { tensor.setZero(); });
  }

  /// Calls f(name, tensor) for each tensor, in PyTorch's state_dict order.
  template <typename F>
  void forEach(F&& f) {
    f("weight_ih", weight_ih);
    f("weight_hh", weight_hh);
    f("bias_ih", bias_ih);
    f("bias_hh", bias_hh);
  }
  template <typename F>
  void forEach(F&& f) const {
    f("weight_ih", weight_ih);
    f("weight_hh", weight_hh);
    f("bias_ih", bias_ih);
    f("bias_hh", bias_hh);
  }

  /// Throws std::invalid_argument naming the first tensor that is not shaped for G gates,
  /// input size I and hidden size H. Allocates nothing.
  void checkShape(Eigen::Index gates, Eigen::Index inputSize, Eigen::Index hiddenSize,
                  const char* where, const char* what) const {
    const Eigen::Index rows = gates * hiddenSize;
    detail::checkTensorShape(where, what, "weight_ih", weight_ih, rows, inputSize);
    detail::checkTensorShape(where, what, "weight_hh", weight_hh, rows, hiddenSize);
    detail::checkTensorShape(where, what, "bias_ih", bias_ih, rows, 1);
    detail::checkTensorShape(where, what, "bias_hh", bias_hh, rows, 1);
  }
};

namespace detail {

/// A uniform number in [0, 1) from any uniform random bit generator, computed the same
/// way on every platform (std::uniform_real_distribution is not portable).
template <typename Rng>
double uniform01(Rng& rng) {
  const double range = static_cast<double>(Rng::max() - Rng::min()) + 1.0;
  return static_cast<double>(rng() - Rng::min()) / range;
}

/// Fills every parameter tensor (of CellParameters, LSTMParameters, ...: anything with a
/// forEach) with U(-1/√H, 1/√H), PyTorch's default for recurrent layers, in forEach order.
template <typename Parameters, typename Rng>
void initializeUniform(Parameters& params, Eigen::Index hiddenSize, Rng& rng) {
  using Scalar = typename Parameters::Scalar;
  const double bound = 1.0 / std::sqrt(static_cast<double>(hiddenSize));
  params.forEach([&](const char*, auto& tensor) {
    for (Eigen::Index k = 0; k < tensor.size(); ++k) {
      tensor.data()[k] = static_cast<Scalar>(-bound + 2.0 * bound * uniform01(rng));
    }
  });
}

}  // namespace detail
}  // namespace recurrent
