// recurrent — train/init.hpp: PyTorch's initialisation, with the LSTM forget-gate bias option.
#pragma once

#include <recurrent/cells/lstm.hpp>
#include <recurrent/detail/errors.hpp>

#include <Eigen/Core>

#include <optional>
#include <type_traits>
#include <utility>

namespace recurrent {

namespace detail {
/// Whether T is an LSTMCell of any sizes.
template <typename T>
struct IsLSTMCell : std::false_type {};
template <typename Scalar, int I, int H, LSTMVariant V>
struct IsLSTMCell<LSTMCell<Scalar, I, H, V>> : std::true_type {};
}  // namespace detail

/// Options of initialize(), set in a chain: `InitOptions().forgetGateBias(1.0)`.
class InitOptions {
 public:
  /// Sets the LSTM's forget-gate bias after the uniform draw: b_if = value and b_hf = 0, so
  /// that the forget gate starts at σ(value + W_f·[x; h]). A value of 1 keeps the cell
  /// state (and its gradient) alive early in training (Gers, Schmidhuber & Cummins 2000;
  /// Jozefowicz, Zaremba & Sutskever, "An Empirical Exploration of Recurrent Network
  /// Architectures", ICML 2015). LSTMCell only.
  InitOptions& forgetGateBias(double value) {
    m_forgetGateBias = value;
    return *this;
  }
  /// The forget-gate bias initialize() sets, if any (by default none).
  std::optional<double> forgetGateBias() const { return m_forgetGateBias; }

 private:
  std::optional<double> m_forgetGateBias;
};

namespace detail {
/// True for a layer with its own `initialize(rng, options)` (a Stack of cells).
template <typename Layer, typename Rng, typename = void>
struct TakesInitOptions : std::false_type {};
template <typename Layer, typename Rng>
struct TakesInitOptions<Layer, Rng,
                        std::void_t<decltype(std::declval<Layer&>().initialize(
                            std::declval<Rng&>(), std::declval<const InitOptions&>()))>>
    : std::true_type {};
}  // namespace detail

/// Sets the forget gate's bias of an LSTM: the f block (rows [H, 2H)) of bias_ih to `value`
/// and of bias_hh to 0, so that their sum, the bias the gate sees, is `value`.
template <typename Scalar, int I, int H, LSTMVariant Variant>
void setForgetGateBias(LSTMCell<Scalar, I, H, Variant>& cell, Scalar value) {
  const Eigen::Index hidden = cell.hiddenSize();
  cell.checkParameters("setForgetGateBias");
  cell.parameters().bias_ih.segment(hidden, hidden).setConstant(value);
  cell.parameters().bias_hh.segment(hidden, hidden).setZero();
}

/// PyTorch's initialisation of a layer from `rng` (any uniform random bit generator, e.g.
/// std::mt19937 seeded by the caller; the draw is the same on every platform):
///
///   cells (LSTM, GRU, RNN)  every parameter from U(−1/√H, 1/√H)     (nn.LSTM, nn.GRU, nn.RNN)
///   Linear                  weight and bias from U(−1/√I, 1/√I)     (nn.Linear)
///
/// then applies `options`. Throws std::invalid_argument, before drawing anything, if an
/// option does not apply to the layer (a forget-gate bias for anything but an LSTMCell).
///
/// A layer made of cells (Stack) takes the options itself, through its
/// `initialize(rng, options)`, and applies them to each of its cells.
template <typename Layer, typename Rng>
void initialize(Layer& layer, Rng& rng, const InitOptions& options = InitOptions()) {
  if constexpr (detail::TakesInitOptions<Layer, Rng>::value) {
    layer.initialize(rng, options);
  } else {
    constexpr bool isLstm = detail::IsLSTMCell<Layer>::value;
    if (options.forgetGateBias() && !isLstm) {
      detail::fail("initialize: forget_gate_bias applies to LSTMCell only");
    }
    layer.initialize(rng);
    if constexpr (isLstm) {
      if (options.forgetGateBias()) {
        setForgetGateBias(layer, static_cast<typename Layer::Scalar>(*options.forgetGateBias()));
      }
    }
  }
}

}  // namespace recurrent
