// recurrent — cells/activations.hpp: the gate nonlinearities and their derivatives.
//
// Every function takes and returns Eigen array expressions, so the gate math of a
// cell reads like its equations and still compiles to one vectorised loop.
// The derivatives are written in terms of the activation's OUTPUT, which is what a
// cell's forward pass keeps on the tape:
//
//   σ(x)  = 1 / (1 + e^{-x})      σ'  = σ (1 − σ)
//   tanh  (Eigen's x.tanh())       tanh' = 1 − tanh²
//   relu  = max(x, 0)              relu' = [relu > 0]
#pragma once

#include <Eigen/Core>

namespace recurrent {

/// Logistic sigmoid σ(x) = 1 / (1 + e^{-x}), vectorised (Eigen's logistic()).
template <typename Derived>
inline auto sigmoid(const Eigen::ArrayBase<Derived>& x) {
  return x.logistic();
}

/// σ'(x) from s = σ(x): s (1 − s).
template <typename Derived>
inline auto sigmoidGradFromOutput(const Eigen::ArrayBase<Derived>& s) {
  using Scalar = typename Derived::Scalar;
  return s * (Scalar(1) - s);
}

/// tanh'(x) from t = tanh(x): 1 − t².
template <typename Derived>
inline auto tanhGradFromOutput(const Eigen::ArrayBase<Derived>& t) {
  using Scalar = typename Derived::Scalar;
  return Scalar(1) - t.square();
}

/// relu(x) = max(x, 0).
template <typename Derived>
inline auto relu(const Eigen::ArrayBase<Derived>& x) {
  using Scalar = typename Derived::Scalar;
  return x.max(Scalar(0));
}

/// relu'(x) from r = relu(x): 1 where r > 0, else 0 (0 at x = 0, as PyTorch).
template <typename Derived>
inline auto reluGradFromOutput(const Eigen::ArrayBase<Derived>& r) {
  using Scalar = typename Derived::Scalar;
  return (r > Scalar(0)).template cast<Scalar>();
}

}  // namespace recurrent
