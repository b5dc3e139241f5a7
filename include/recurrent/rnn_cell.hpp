// recurrent — rnn_cell.hpp: the plain (Elman) recurrent cell, the LSTM's baseline.
#pragma once

#include <recurrent/activations.hpp>
#include <recurrent/detail/chunks.hpp>
#include <recurrent/detail/errors.hpp>
#include <recurrent/parameters.hpp>
#include <recurrent/state.hpp>
#include <recurrent/step.hpp>

#include <Eigen/Core>

namespace recurrent {

/// The nonlinearity of an RNNCell (PyTorch's `nonlinearity` argument of nn.RNN).
enum class Nonlinearity { Tanh, Relu };

/// RNNCell<Scalar>: the plain recurrent cell of Elman (1990), as torch.nn.RNN (one layer).
///
///     h' = φ(W_ih x + b_ih + W_hh h + b_hh),   φ = tanh (default) or relu
///
/// Parameters: weight_ih H × I, weight_hh H × H, bias_ih, bias_hh H (one "gate").
///
/// Backward: dA = dh ⊙ φ'(A) and dh ← W_hhᵀ dA. Through T steps the gradient is multiplied
/// T times by W_hhᵀ diag(φ'): it vanishes (or explodes) geometrically — the problem the LSTM's
/// additive cell state was invented to solve (Hochreiter & Schmidhuber 1997).
template <typename Scalar_>
class RNNCell {
 public:
  using Scalar = Scalar_;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  using Parameters = CellParameters<Scalar>;
  using State = HiddenState<Scalar>;

  static constexpr Eigen::Index kGates = 1;
  static constexpr bool kHasCellState = false;
  static constexpr bool kCellStatesInGradients = false;
  static constexpr bool kSeparateRecurrentGradient = false;
  /// Every recurrent product of a step covers all gates at once (so one thread may pack the
  /// weights densely; see StepContext::multiply).
  static constexpr bool kFullGateProducts = true;

  RNNCell(Eigen::Index inputSize, Eigen::Index hiddenSize,
          Nonlinearity nonlinearity = Nonlinearity::Tanh)
      : m_inputSize(detail::checkPositive("RNNCell", "input_size", inputSize)),
        m_hiddenSize(detail::checkPositive("RNNCell", "hidden_size", hiddenSize)),
        m_nonlinearity(nonlinearity),
        m_params(kGates, inputSize, hiddenSize) {}

  Eigen::Index inputSize() const { return m_inputSize; }
  Eigen::Index hiddenSize() const { return m_hiddenSize; }
  Eigen::Index outputSize() const { return m_hiddenSize; }
  Nonlinearity nonlinearity() const { return m_nonlinearity; }

  Parameters& parameters() { return m_params; }
  const Parameters& parameters() const { return m_params; }
  Parameters zeroGradients() const { return Parameters(kGates, m_inputSize, m_hiddenSize); }
  State zeroState(Eigen::Index batch) const { return State{Matrix::Zero(m_hiddenSize, batch)}; }

  /// PyTorch's initialisation: every parameter from U(-1/√H, 1/√H), drawn from `rng`.
  template <typename Rng>
  void initialize(Rng& rng) {
    detail::initializeUniform(m_params, m_hiddenSize, rng);
  }

  void checkParameters(const char* where) const {
    m_params.checkShape(kGates, m_inputSize, m_hiddenSize, where, "cell parameter");
  }
  void checkGradients(const Parameters& grads, const char* where) const {
    grads.checkShape(kGates, m_inputSize, m_hiddenSize, where, "gradient");
  }

  // ---- the step API (used by Sequence; see step.hpp) -------------------------------------

  Eigen::Index extraRows() const { return 0; }
  Eigen::Index scratchRows() const { return 0; }

  template <typename Derived>
  void foldedBias(Eigen::MatrixBase<Derived>& bias) const {
    bias = m_params.bias_ih + m_params.bias_hh;
  }

  /// gates += W_hh h; gates = φ(gates) = h'.
  void forwardStep(const StepContext<Scalar>& ctx, ForwardStep<Scalar>& s) const {
    ctx.multiply(0, kGates, s.hPrev, s.gates, false);
    const bool useTanh = m_nonlinearity == Nonlinearity::Tanh;
    for (Eigen::Index j = 0; j < s.gates.cols(); ++j) {
      Scalar* a = detail::column(s.gates, j);
      Scalar* hOut = detail::column(s.h, j);
      detail::forEachChunk<Scalar>(ctx.unitBegin(), ctx.unitEnd(), m_hiddenSize,
                                   [&](Eigen::Index k, Eigen::Index n, auto w) {
                                     using A = detail::Chunk<Scalar, decltype(w)::value>;
                                     const A pre = detail::load(a + k, n, w);
                                     const A h = useTanh ? A(pre.tanh()) : A(relu(pre));
                                     detail::store(a + k, n, h);
                                     detail::store(hOut + k, n, h);
                                   });
    }
  }

  /// dA = dh ⊙ φ'(A), dh_prev = W_hhᵀ dA.
  void backwardStep(const StepContext<Scalar>& ctx, BackwardStep<Scalar>& s) const {
    const bool useTanh = m_nonlinearity == Nonlinearity::Tanh;
    for (Eigen::Index j = 0; j < s.gates.cols(); ++j) {
      const Scalar* a = detail::column(s.gates, j);
      const Scalar* dhIn = detail::column(s.dh, j);
      Scalar* dA = detail::column(s.dGx, j);
      detail::forEachChunk<Scalar>(ctx.unitBegin(), ctx.unitEnd(), m_hiddenSize,
                                   [&](Eigen::Index k, Eigen::Index n, auto w) {
                                     using A = detail::Chunk<Scalar, decltype(w)::value>;
                                     const A h = detail::load(a + k, n, w);
                                     const A grad = useTanh ? A(tanhGradFromOutput(h))
                                                            : A(reluGradFromOutput(h));
                                     detail::store(dA + k, n, detail::load(dhIn + k, n, w) * grad);
                                   });
    }
    ctx.barrier();
    ctx.multiplyTransposed(0, kGates, s.dGx, s.dhPrev, true);
  }

  void accumulateGradients(const StepContext<Scalar>& ctx, const StepsGradients<Scalar>& steps,
                           Parameters& grads) const {
    detail::accumulateInputGradients(ctx, kGates, steps, grads);
    detail::accumulateRecurrentGradients(ctx, kGates, steps, grads);
  }

 private:
  Eigen::Index m_inputSize;
  Eigen::Index m_hiddenSize;
  Nonlinearity m_nonlinearity;
  Parameters m_params;
};

}  // namespace recurrent
