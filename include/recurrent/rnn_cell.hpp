// recurrent — rnn_cell.hpp: the plain (Elman) recurrent cell, the LSTM's baseline.
#pragma once

#include <recurrent/activations.hpp>
#include <recurrent/detail/chunks.hpp>
#include <recurrent/detail/errors.hpp>
#include <recurrent/parameters.hpp>
#include <recurrent/state.hpp>
#include <recurrent/step.hpp>

#include <Eigen/Core>

#include <type_traits>

namespace recurrent {

/// The nonlinearity of an RNNCell (PyTorch's `nonlinearity` argument of nn.RNN).
enum class Nonlinearity { Tanh, Relu };

/// RNNCell<Scalar, InputSize, HiddenSize>: the plain recurrent cell of Elman (1990), as
/// torch.nn.RNN (one layer).
///
///     h' = φ(W_ih x + b_ih + W_hh h + b_hh),   φ = tanh (default) or relu
///
/// Parameters: weight_ih H × I, weight_hh H × H, bias_ih, bias_hh H (one "gate").
///
/// Backward: dA = dh ⊙ φ'(A) and dh ← W_hhᵀ dA. Through T steps the gradient is multiplied
/// T times by W_hhᵀ diag(φ'): it vanishes (or explodes) geometrically — the problem the LSTM's
/// additive cell state was invented to solve (Hochreiter & Schmidhuber 1997).
///
/// Sizes: `RNNCell<float>` takes I and H at run time; `RNNCell<float, 1, 16>` fixes them at
/// compile time (a default constructor, and Stream's step kernel specialised on the sizes; see
/// LSTMCell and detail/fused_step.hpp).
template <typename Scalar_, int InputSize = Eigen::Dynamic, int HiddenSize = Eigen::Dynamic>
class RNNCell {
  static_assert(InputSize == Eigen::Dynamic || InputSize >= 1,
                "RNNCell: the compile-time input size must be at least 1 (or Eigen::Dynamic)");
  static_assert(HiddenSize == Eigen::Dynamic || HiddenSize >= 1,
                "RNNCell: the compile-time hidden size must be at least 1 (or Eigen::Dynamic)");

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
  /// The compile-time sizes (Eigen::Dynamic where a size is given at run time).
  static constexpr int kInputSize = InputSize;
  static constexpr int kHiddenSize = HiddenSize;

  /// A cell of the compile-time sizes, parameters zero (fixed-size cells only).
  template <bool Fixed = InputSize != Eigen::Dynamic&& HiddenSize != Eigen::Dynamic,
            std::enable_if_t<Fixed, int> = 0>
  explicit RNNCell(Nonlinearity nonlinearity = Nonlinearity::Tanh)
      : RNNCell(InputSize, HiddenSize, nonlinearity) {}

  /// Where a size is fixed at compile time, the argument must equal it.
  RNNCell(Eigen::Index inputSize, Eigen::Index hiddenSize,
          Nonlinearity nonlinearity = Nonlinearity::Tanh)
      : m_inputSize(detail::checkSize("RNNCell", "input_size", InputSize, inputSize)),
        m_hiddenSize(detail::checkSize("RNNCell", "hidden_size", HiddenSize, hiddenSize)),
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
    for (Eigen::Index j = 0; j < s.gates.cols(); ++j) {
      gateMath(ctx.unitBegin(), ctx.unitEnd(), detail::column(s.gates, j), detail::column(s.h, j));
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
                                   [&](Eigen::Index k, Eigen::Index n, auto w) RECURRENT_FLATTEN {
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

  // ---- the fused one-column step (Stream of a fixed-size cell; see detail/fused_step.hpp) --

  /// The step as one product over [x; h]: A = F·[x; h] + b_F, F = [W_ih W_hh], b_F = b_ih + b_hh.
  static constexpr bool kFusedStep = true;
  static constexpr int kFusedBlocks = 1;
  static constexpr int fusedDepthBegin(int /*block*/, int /*I*/) { return 0; }
  static constexpr int fusedDepthEnd(int /*block*/, int I, int H) { return I + H; }

  void fusedProduct(Matrix& f, Vector& b) const {
    f.resize(m_hiddenSize, m_inputSize + m_hiddenSize);
    f << m_params.weight_ih, m_params.weight_hh;
    b = m_params.bias_ih + m_params.bias_hh;
  }

  /// h' = φ(A) from A (H, overwritten with h'), for one sequence.
  void fusedGates(Scalar* a, const Scalar* /*hPrev*/, const Scalar* /*cPrev*/, Scalar* hOut,
                  Scalar* /*cOut*/) const {
    gateMath(0, hidden(), a, hOut);
  }

 private:
  /// H, a constant where it is fixed at compile time.
  Eigen::Index hidden() const {
    if constexpr (HiddenSize != Eigen::Dynamic) {
      return HiddenSize;
    } else {
      return m_hiddenSize;
    }
  }

  /// h' = φ(A) for units [u0, u1) of one column; A in `a` becomes h' too.
  void gateMath(Eigen::Index u0, Eigen::Index u1, Scalar* a, Scalar* hOut) const {
    const bool useTanh = m_nonlinearity == Nonlinearity::Tanh;
    detail::forEachChunk<Scalar>(u0, u1, hidden(),
                                 [&](Eigen::Index k, Eigen::Index n, auto w) RECURRENT_FLATTEN {
                                   using A = detail::Chunk<Scalar, decltype(w)::value>;
                                   const A pre = detail::load(a + k, n, w);
                                   const A h = useTanh ? A(pre.tanh()) : A(relu(pre));
                                   detail::store(a + k, n, h);
                                   detail::store(hOut + k, n, h);
                                 });
  }

  Eigen::Index m_inputSize;
  Eigen::Index m_hiddenSize;
  Nonlinearity m_nonlinearity;
  Parameters m_params;
};

}  // namespace recurrent
