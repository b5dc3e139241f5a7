// recurrent — cells/rnn.hpp: the plain (Elman) recurrent cell, the LSTM's baseline.
#pragma once

#include <recurrent/cells/activations.hpp>
#include <recurrent/cells/cell.hpp>
#include <recurrent/detail/chunks.hpp>
#include <recurrent/detail/fused_product.hpp>

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
class RNNCell
    : public CellBase<GateParameters<Scalar_, 1>, HiddenState<Scalar_>, InputSize, HiddenSize> {
  using Base = CellBase<GateParameters<Scalar_, 1>, HiddenState<Scalar_>, InputSize, HiddenSize>;

 public:
  /// \cond
  // CellBase's names, re-declared for the gate math (two-phase lookup); documented there.
  using Base::kGates;
  using typename Base::Matrix;
  using typename Base::Parameters;
  using typename Base::Scalar;
  using typename Base::State;
  using typename Base::Vector;
  /// \endcond

  /// The step is one product over [x; h]: A = [W_ih W_hh]·[x; h] + b_ih + b_hh.
  using FusedProduct = detail::fused::Concatenated<1>;

  /// A cell of the compile-time sizes, tanh, parameters zero (both sizes fixed only).
  RNNCell() = default;
  /// A cell of the compile-time sizes with the given nonlinearity (both sizes fixed only).
  template <bool Fixed = InputSize != Eigen::Dynamic&& HiddenSize != Eigen::Dynamic,
            std::enable_if_t<Fixed, int> = 0>
  explicit RNNCell(Nonlinearity nonlinearity) : m_nonlinearity(nonlinearity) {}

  /// Where a size is fixed at compile time, the argument must equal it.
  RNNCell(Eigen::Index inputSize, Eigen::Index hiddenSize,
          Nonlinearity nonlinearity = Nonlinearity::Tanh)
      : Base("RNNCell", CellSizes{inputSize, hiddenSize, 0}), m_nonlinearity(nonlinearity) {}

  /// φ, tanh or relu, as given to the constructor.
  Nonlinearity nonlinearity() const { return m_nonlinearity; }

  // ---- the gate math of one step (the cell contract: cells/cell.hpp, cells/step.hpp) ------

  /// Rows of ForwardStep::extra: 0, the step keeps no tape besides the gates (h' itself).
  Eigen::Index extraRows() const { return 0; }
  /// Rows of the scratch buffer: 0, the step needs none.
  Eigen::Index scratchRows() const { return 0; }

  /// The bias added to W_ih·x before forwardStep(): b_ih + b_hh (H).
  template <typename Derived>
  void foldedBias(Eigen::MatrixBase<Derived>& bias) const {
    bias = this->parameters().bias_ih + this->parameters().bias_hh;
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
      detail::forEachChunk<Scalar>(ctx.unitBegin(), ctx.unitEnd(), this->hiddenSize(),
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

  /// After the backward time loop: dW_ih and db_ih as one product over all steps, dW_hh and
  /// db_hh as another, for this thread's units, ADDED into `grads`.
  void accumulateGradients(const StepContext<Scalar>& ctx, const StepsGradients<Scalar>& steps,
                           Parameters& grads) const {
    detail::accumulateInputGradients(ctx, kGates, steps, grads);
    detail::accumulateRecurrentGradients(ctx, kGates, steps, grads);
  }

  // ---- the fused step (a Stream of one sequence; FusedProduct, detail/fused_step.hpp) -------

  /// h' = φ(A) from A (H, overwritten with h'), for one sequence.
  void fusedGates(Scalar* a, const Scalar* /*hPrev*/, const Scalar* /*cPrev*/, Scalar* hOut,
                  Scalar* /*cOut*/) const {
    gateMath(0, this->hidden(), a, hOut);
  }

 private:
  /// h' = φ(A) for units [u0, u1) of one column; A in `a` becomes h' too.
  void gateMath(Eigen::Index u0, Eigen::Index u1, Scalar* a, Scalar* hOut) const {
    const bool useTanh = m_nonlinearity == Nonlinearity::Tanh;
    detail::forEachChunk<Scalar>(u0, u1, this->hidden(),
                                 [&](Eigen::Index k, Eigen::Index n, auto w) RECURRENT_FLATTEN {
                                   using A = detail::Chunk<Scalar, decltype(w)::value>;
                                   const A pre = detail::load(a + k, n, w);
                                   const A h = useTanh ? A(pre.tanh()) : A(relu(pre));
                                   detail::store(a + k, n, h);
                                   detail::store(hOut + k, n, h);
                                 });
  }

  Nonlinearity m_nonlinearity = Nonlinearity::Tanh;
};

}  // namespace recurrent
