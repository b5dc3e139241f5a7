// recurrent — lstm_cell.hpp: the long short-term memory cell.
#pragma once

#include <recurrent/activations.hpp>
#include <recurrent/detail/chunks.hpp>
#include <recurrent/detail/errors.hpp>
#include <recurrent/parameters.hpp>
#include <recurrent/state.hpp>
#include <recurrent/step.hpp>

#include <Eigen/Core>

namespace recurrent {

/// LSTMCell<Scalar>: the LSTM of Hochreiter & Schmidhuber (1997) with the forget gate of
/// Gers, Schmidhuber & Cummins (2000), in PyTorch's conventions (torch.nn.LSTM, one layer).
///
/// For one step, with x the input (I) and h, c the state (H each):
///
///     i  = σ(W_ii x + b_ii + W_hi h + b_hi)      input gate
///     f  = σ(W_if x + b_if + W_hf h + b_hf)      forget gate
///     g  = tanh(W_ig x + b_ig + W_hg h + b_hg)   candidate cell state
///     o  = σ(W_io x + b_io + W_ho h + b_ho)      output gate
///     c' = f ⊙ c + i ⊙ g                         cell state update
///     h' = o ⊙ tanh(c')                          hidden state
///
/// Parameters (see CellParameters), gate blocks stacked by rows in the order i, f, g, o:
///
///     weight_ih  4H × I    = [W_ii; W_if; W_ig; W_io]
///     weight_hh  4H × H    = [W_hi; W_hf; W_hg; W_ho]
///     bias_ih, bias_hh  4H
///
/// Backward (dh, dc flow in from step t+1 and from the loss; A_* are pre-activations):
///
///     dc_t  = dc + dh ⊙ o ⊙ (1 − tanh²c')        total gradient on c'
///     dA_o  = dh ⊙ tanh(c') ⊙ o(1 − o)
///     dA_i  = dc_t ⊙ g ⊙ i(1 − i)
///     dA_f  = dc_t ⊙ c ⊙ f(1 − f)
///     dA_g  = dc_t ⊙ i ⊙ (1 − g²)
///     dc    ← dc_t ⊙ f,   dh ← W_hhᵀ dA          gradients on the previous state
///
/// The cell owns its parameters and keeps no per-sequence state: it is const while a
/// Sequence runs it, so one cell can serve several Sequences on several threads.
template <typename Scalar_>
class LSTMCell {
 public:
  using Scalar = Scalar_;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  using Parameters = CellParameters<Scalar>;
  using State = LSTMState<Scalar>;

  static constexpr Eigen::Index kGates = 4;                  ///< i, f, g, o
  static constexpr bool kHasCellState = true;                ///< the state has c besides h
  static constexpr bool kSeparateRecurrentGradient = false;  ///< dGh is dGx
  /// Every recurrent product of a step covers all gates at once (so one thread may pack the
  /// weights densely; see StepContext::multiply).
  static constexpr bool kFullGateProducts = true;

  /// A cell for inputs of `inputSize` and a state of `hiddenSize`, parameters zero.
  LSTMCell(Eigen::Index inputSize, Eigen::Index hiddenSize)
      : m_inputSize(detail::checkPositive("LSTMCell", "input_size", inputSize)),
        m_hiddenSize(detail::checkPositive("LSTMCell", "hidden_size", hiddenSize)),
        m_params(kGates, inputSize, hiddenSize) {}

  Eigen::Index inputSize() const { return m_inputSize; }
  Eigen::Index hiddenSize() const { return m_hiddenSize; }
  /// Rows of h (and of each output step).
  Eigen::Index outputSize() const { return m_hiddenSize; }

  Parameters& parameters() { return m_params; }
  const Parameters& parameters() const { return m_params; }

  /// Zero tensors shaped like the parameters, to accumulate gradients into.
  Parameters zeroGradients() const { return Parameters(kGates, m_inputSize, m_hiddenSize); }

  /// A zero state for a batch of `batch` sequences.
  State zeroState(Eigen::Index batch) const {
    return State{Matrix::Zero(m_hiddenSize, batch), Matrix::Zero(m_hiddenSize, batch)};
  }

  /// PyTorch's initialisation: every parameter from U(-1/√H, 1/√H), drawn from `rng`.
  template <typename Rng>
  void initialize(Rng& rng) {
    detail::initializeUniform(m_params, m_hiddenSize, rng);
  }

  /// Throws std::invalid_argument if a parameter tensor no longer has the cell's shape.
  void checkParameters(const char* where) const {
    m_params.checkShape(kGates, m_inputSize, m_hiddenSize, where, "cell parameter");
  }

  // ---- the step API (used by Sequence; see step.hpp) -------------------------------------

  /// Rows of ForwardStep::extra / BackwardStep::extra and of the scratch buffer.
  Eigen::Index extraRows() const { return 0; }
  Eigen::Index scratchRows() const { return 0; }

  /// The bias the caller adds to W_ih·x before forwardStep(): b_ih + b_hh (4H).
  template <typename Derived>
  void foldedBias(Eigen::MatrixBase<Derived>& bias) const {
    bias = m_params.bias_ih + m_params.bias_hh;
  }

  /// One step forward, for this thread's units u0..u1: gates += W_hh·h_prev, then the gate
  /// math of the class comment. Leaves [i; f; g; o] in s.gates, c' in s.c and h' in s.h.
  void forwardStep(const StepContext<Scalar>& ctx, ForwardStep<Scalar>& s) const {
    const Eigen::Index H = m_hiddenSize;
    ctx.multiply(0, kGates, s.hPrev, s.gates, false);  // [A_i; A_f; A_g; A_o] += W_hh h
    for (Eigen::Index j = 0; j < s.gates.cols(); ++j) {
      Scalar* a = detail::column(s.gates, j);
      const Scalar* cPrev = detail::column(s.cPrev, j);
      Scalar* cOut = detail::column(s.c, j);
      Scalar* hOut = detail::column(s.h, j);
      detail::forEachChunk<Scalar>(ctx.unitBegin(), ctx.unitEnd(), m_hiddenSize,
                                   [&](Eigen::Index k, Eigen::Index n, auto w) {
                                     using A = detail::Chunk<Scalar, decltype(w)::value>;
                                     const A i = sigmoid(detail::load(a + k, n, w));
                                     const A f = sigmoid(detail::load(a + H + k, n, w));
                                     const A g = detail::load(a + 2 * H + k, n, w).tanh();
                                     const A o = sigmoid(detail::load(a + 3 * H + k, n, w));
                                     const A c = f * detail::load(cPrev + k, n, w) + i * g;
                                     detail::store(a + k, n, i);
                                     detail::store(a + H + k, n, f);
                                     detail::store(a + 2 * H + k, n, g);
                                     detail::store(a + 3 * H + k, n, o);
                                     detail::store(cOut + k, n, c);
                                     detail::store(hOut + k, n, o * c.tanh());
                                   });
    }
  }

  /// One step backward: the pre-activation gradients dA = [dA_i; dA_f; dA_g; dA_o] into
  /// s.dGx (= s.dGh), dL/dc_{t-1} into s.dcPrev and dL/dh_{t-1} = W_hhᵀ dA into s.dhPrev.
  void backwardStep(const StepContext<Scalar>& ctx, BackwardStep<Scalar>& s) const {
    const Eigen::Index H = m_hiddenSize;
    for (Eigen::Index j = 0; j < s.gates.cols(); ++j) {
      const Scalar* a = detail::column(s.gates, j);
      const Scalar* cNow = detail::column(s.c, j);
      const Scalar* cPrev = detail::column(s.cPrev, j);
      const Scalar* dhIn = detail::column(s.dh, j);
      const Scalar* dcIn = detail::column(s.dc, j);
      Scalar* dA = detail::column(s.dGx, j);
      Scalar* dcOut = detail::column(s.dcPrev, j);
      detail::forEachChunk<Scalar>(
          ctx.unitBegin(), ctx.unitEnd(), m_hiddenSize,
          [&](Eigen::Index k, Eigen::Index n, auto w) {
            using A = detail::Chunk<Scalar, decltype(w)::value>;
            const A i = detail::load(a + k, n, w);
            const A f = detail::load(a + H + k, n, w);
            const A g = detail::load(a + 2 * H + k, n, w);
            const A o = detail::load(a + 3 * H + k, n, w);
            const A dh = detail::load(dhIn + k, n, w);
            const A tc = detail::load(cNow + k, n, w).tanh();
            const A dc = detail::load(dcIn + k, n, w) + dh * o * tanhGradFromOutput(tc);  // dc_t
            detail::store(dA + k, n, dc * g * sigmoidGradFromOutput(i));
            detail::store(dA + H + k, n,
                          dc * detail::load(cPrev + k, n, w) * sigmoidGradFromOutput(f));
            detail::store(dA + 2 * H + k, n, dc * i * tanhGradFromOutput(g));
            detail::store(dA + 3 * H + k, n, dh * tc * sigmoidGradFromOutput(o));
            detail::store(dcOut + k, n, dc * f);
          });
    }
    ctx.barrier();  // W_hhᵀ dA needs every unit's dA
    ctx.multiplyTransposed(0, kGates, s.dGx, s.dhPrev, true);
  }

  /// After the backward time loop: every weight and bias gradient as one product over all
  /// steps, for this thread's units.
  void accumulateGradients(const StepContext<Scalar>& ctx, const StepsGradients<Scalar>& steps,
                           Parameters& grads) const {
    detail::accumulateInputGradients(ctx, kGates, steps, grads);
    detail::accumulateRecurrentGradients(ctx, kGates, steps, grads);
  }

 private:
  Eigen::Index m_inputSize;
  Eigen::Index m_hiddenSize;
  Parameters m_params;
};

}  // namespace recurrent
