// recurrent — cells/layernorm_lstm.hpp: the layer-normalised LSTM cell and its gate math.
#pragma once

#include <recurrent/cells/activations.hpp>
#include <recurrent/cells/cell.hpp>
#include <recurrent/cells/layer_norm.hpp>
#include <recurrent/detail/chunks.hpp>

#include <Eigen/Core>

#include <cmath>

namespace recurrent {

/// LayerNormLSTMCell<Scalar>: the LSTM with layer normalisation (Ba, Kiros & Hinton 2016) exactly
/// as PyTorch's reference LayerNormLSTMCell (the custom_lstms.py of its RNN benchmarks) defines
/// it, so that a model written that way in PyTorch loads and matches. For one step, with x the
/// input (I) and h, c the state (H each):
///
///     a_x = LN_i(W_ih x)            over 4H, γ_i and β_i
///     a_h = LN_h(W_hh h)            over 4H, γ_h and β_h
///     [A_i; A_f; A_g; A_o] = a_x + a_h
///     i, f, o = σ(A_i, A_f, A_o),   g = tanh(A_g)
///     c' = LN_c(f ⊙ c + i ⊙ g)      over H, γ_c and β_c: the cell state carried on
///     h' = o ⊙ tanh(c')
///
/// with LN(v) = γ ⊙ (v − mean v) / sqrt(var v + 1e-5) + β, the variance biased
/// (torch.nn.LayerNorm). There is no bias_ih or bias_hh: the β are the biases. Parameters: see
/// LayerNormParameters (weight_ih, weight_hh, layernorm_i.weight, layernorm_i.bias,
/// layernorm_h.weight, layernorm_h.bias, layernorm_c.weight, layernorm_c.bias).
///
/// Backward (dh, dc flow in from step t+1 and from the loss; v̂ are the normalised values kept
/// on the tape and r their 1/sqrt(var + ε); LN⁻ᵀ(γ, dy) is the gradient through a layer norm,
/// cells/layer_norm.hpp):
///
///     dA_o  = dh ⊙ tanh(c') ⊙ o(1 − o)
///     dc'   = dc + dh ⊙ o ⊙ (1 − tanh²c')              total gradient on c'
///     dc̃    = LN⁻ᵀ(γ_c, dc')                           on c̃ = f ⊙ c + i ⊙ g
///     dA_i  = dc̃ ⊙ g ⊙ i(1 − i),  dA_f = dc̃ ⊙ c ⊙ f(1 − f),  dA_g = dc̃ ⊙ i ⊙ (1 − g²)
///     dGx   = LN⁻ᵀ(γ_i, dA)  (on W_ih x),   dGh = LN⁻ᵀ(γ_h, dA)  (on W_hh h)
///     dc    ← dc̃ ⊙ f,   dh ← W_hhᵀ dGh                 (previous state)
///
/// and after the time loop, as sums over every step and sequence: dW_ih += dGx xᵀ, dW_hh += dGh
/// hᵀ, dγ_i += dA ⊙ v̂_x, dγ_h += dA ⊙ v̂_h, dβ_i = dβ_h += dA, dγ_c += dc' ⊙ ĉ, dβ_c += dc'.
///
/// The tape: the driver keeps [i; f; g; o], c' and h'; the cell's extra rows keep v̂_x, v̂_h (4H
/// each), ĉ (H) and the three r (9H + 3 per column), and its backward tape keeps dA and dc' (5H).
///
/// Threads: the statistics of each layer norm are over all the units of a column, between the
/// recurrent product and the gate math, so the step does not split into shares of the units:
/// the cell sets kSingleThreadStep and the drivers run it on one thread.
///
/// Initialisation (initialize()): weight_ih and weight_hh from U(−1/√H, 1/√H), as nn.LSTM's; every
/// γ = 1 and β = 0, as nn.LayerNorm's.
///
/// Sizes: `LayerNormLSTMCell<float>` takes I and H at run time, `LayerNormLSTMCell<float, 8, 16>`
/// fixes them at compile time (a default constructor; the tensors stay dynamic, as LSTMCell's).
/// No projection. The cell keeps no per-sequence state: it is const while a driver runs it.
template <typename Scalar_, int InputSize = Eigen::Dynamic, int HiddenSize = Eigen::Dynamic>
class LayerNormLSTMCell
    : public CellBase<LayerNormLSTMParameters<Scalar_>, LSTMState<Scalar_>, InputSize, HiddenSize> {
  using Base =
      CellBase<LayerNormLSTMParameters<Scalar_>, LSTMState<Scalar_>, InputSize, HiddenSize>;

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

  /// The recurrent side's dG is LN_h's gradient, not LN_i's: dGh is its own buffer.
  static constexpr bool kSeparateRecurrentGradient = true;
  /// The layer norms' statistics are over every unit: one thread runs the step.
  static constexpr bool kSingleThreadStep = true;

  /// A cell of the compile-time sizes, parameters zero (both sizes fixed only).
  LayerNormLSTMCell() = default;
  /// A cell for inputs of `inputSize` and a state of `hiddenSize`, parameters zero. Where a size
  /// is fixed at compile time, the argument must equal it.
  LayerNormLSTMCell(Eigen::Index inputSize, Eigen::Index hiddenSize)
      : Base("LayerNormLSTMCell", CellSizes{inputSize, hiddenSize, 0}) {}

  /// PyTorch's initialisation (see the class comment): the weights from U(−1/√H, 1/√H) drawn
  /// from `rng`, weight_ih then weight_hh; γ = 1, β = 0.
  template <typename Rng>
  void initialize(Rng& rng) {
    this->parameters().initialize(1.0 / std::sqrt(static_cast<double>(this->hiddenSize())), rng);
  }

  // ---- the gate math of one step (the cell contract: cells/cell.hpp, cells/step.hpp) ------

  /// Rows of the tape per column: v̂_x (4H), v̂_h (4H), ĉ (H), then r_x, r_h, r_c.
  Eigen::Index extraRows() const { return 9 * this->hiddenSize() + 3; }
  /// No working memory.
  Eigen::Index scratchRows() const { return 0; }
  /// Rows of the backward tape per column: dA (4H), dc' (H).
  Eigen::Index gradientRows() const { return 5 * this->hiddenSize(); }

  /// No bias goes into W_ih x: the β come after the normalisation.
  template <typename Derived>
  void foldedBias(Eigen::MatrixBase<Derived>& bias) const {
    bias.setZero();
  }

  /// One step forward (all units: one thread): W_ih x (in s.gates) is kept in the tape, s.gates
  /// becomes W_hh h_prev, then the gate math of the class comment. Leaves [i; f; g; o] in
  /// s.gates, c' in s.c, h' in s.h and v̂_x, v̂_h, ĉ and the r in s.extra.
  void forwardStep(const StepContext<Scalar>& ctx, ForwardStep<Scalar>& s) const {
    const Eigen::Index H = this->hidden(), GH = 4 * H;
    eigen_assert(ctx.unitBegin() == 0 && ctx.unitEnd() == H);
    s.extra.topRows(GH) = s.gates;
    ctx.multiply(0, kGates, s.hPrev, s.gates, true);  // W_hh h
    const Parameters& p = this->parameters();
    const auto gi = p.layernorm_i_weight.array(), bi = p.layernorm_i_bias.array();
    const auto gh = p.layernorm_h_weight.array(), bh = p.layernorm_h_bias.array();
    const auto gc = p.layernorm_c_weight.array(), bc = p.layernorm_c_bias.array();
    for (Eigen::Index j = 0; j < s.gates.cols(); ++j) {
      Scalar* e = detail::column(s.extra, j);
      Scalar* a = detail::column(s.gates, j);
      Scalar* stats = e + 9 * H;
      stats[0] = detail::layerNormForward(e, GH, e);       // v̂_x in place
      stats[1] = detail::layerNormForward(a, GH, e + GH);  // v̂_h
      ArrayMap A(a, GH);
      A = gi * ConstArrayMap(e, GH) + bi + gh * ConstArrayMap(e + GH, GH) + bh;
      A.head(H) = sigmoid(A.head(H));
      A.segment(H, H) = sigmoid(A.segment(H, H));
      A.segment(2 * H, H) = A.segment(2 * H, H).tanh();
      A.tail(H) = sigmoid(A.tail(H));
      ArrayMap cHat(e + 2 * GH, H);
      cHat = A.segment(H, H) * ConstArrayMap(detail::column(s.cPrev, j), H) +
             A.head(H) * A.segment(2 * H, H);
      stats[2] = detail::layerNormForward(cHat.data(), H, cHat.data());  // ĉ in place
      ArrayMap c(detail::column(s.c, j), H);
      c = gc * cHat + bc;
      ArrayMap(detail::column(s.h, j), H) = A.tail(H) * c.tanh();
    }
  }

  /// One step backward (all units): dA and dc' into s.gradientTape, dGx = LN_i's gradient,
  /// dGh = LN_h's gradient, dL/dc_{t-1} into s.dcPrev and dL/dh_{t-1} = W_hhᵀ dGh into s.dhPrev.
  void backwardStep(const StepContext<Scalar>& ctx, BackwardStep<Scalar>& s) const {
    const Eigen::Index H = this->hidden(), GH = 4 * H;
    eigen_assert(ctx.unitBegin() == 0 && ctx.unitEnd() == H);
    const Parameters& p = this->parameters();
    for (Eigen::Index j = 0; j < s.gates.cols(); ++j) {
      const Scalar* a = detail::column(s.gates, j);
      const Scalar* e = detail::column(s.extra, j);
      const ConstArrayMap i(a, H), f(a + H, H), g(a + 2 * H, H), o(a + 3 * H, H);
      const ConstArrayMap dh(detail::column(s.dh, j), H);
      const ConstArrayMap tc = ConstArrayMap(detail::column(s.c, j), H);
      Scalar* dA = detail::column(s.gradientTape, j);
      ArrayMap dcTotal(dA + GH, H);
      ArrayMap dcOut(detail::column(s.dcPrev, j), H);
      // tanh(c') is recomputed here rather than kept: one more tape row per unit costs more.
      const auto t = tc.tanh();
      ArrayMap(dA + 3 * H, H) = dh * t * sigmoidGradFromOutput(o);
      dcTotal = ConstArrayMap(detail::column(s.dc, j), H) + dh * o * tanhGradFromOutput(t);
      detail::layerNormBackward(p.layernorm_c_weight.data(), dcTotal.data(), e + 2 * GH,
                                e[9 * H + 2], H, dcOut.data());  // dc̃
      ArrayMap(dA, H) = dcOut * g * sigmoidGradFromOutput(i);
      ArrayMap(dA + H, H) =
          dcOut * ConstArrayMap(detail::column(s.cPrev, j), H) * sigmoidGradFromOutput(f);
      ArrayMap(dA + 2 * H, H) = dcOut * i * tanhGradFromOutput(g);
      dcOut *= f;
      detail::layerNormBackward(p.layernorm_i_weight.data(), dA, e, e[9 * H], GH,
                                detail::column(s.dGx, j));
      detail::layerNormBackward(p.layernorm_h_weight.data(), dA, e + GH, e[9 * H + 1], GH,
                                detail::column(s.dGh, j));
    }
    ctx.multiplyTransposed(0, kGates, s.dGh, s.dhPrev, true);
  }

  /// After the backward time loop: dW_ih, dW_hh as one product each over every step, and the
  /// layer norms' γ and β as one pass over the tapes (added into `grads`).
  void accumulateGradients(const StepContext<Scalar>& ctx, const StepsGradients<Scalar>& steps,
                           Parameters& grads) const {
    const Eigen::Index H = this->hidden(), GH = 4 * H;
    ctx.addProductTransposed(0, kGates, steps.dGx, steps.x, grads.weight_ih);
    ctx.addProductTransposed(0, kGates, steps.dGh, steps.hPrev, grads.weight_hh);
    const auto dA = steps.gradientTape.topRows(GH).array();
    const auto dc = steps.gradientTape.middleRows(GH, H).array();
    grads.layernorm_i_weight.array() += (dA * steps.extra.topRows(GH).array()).rowwise().sum();
    grads.layernorm_h_weight.array() +=
        (dA * steps.extra.middleRows(GH, GH).array()).rowwise().sum();
    grads.layernorm_c_weight.array() +=
        (dc * steps.extra.middleRows(2 * GH, H).array()).rowwise().sum();
    grads.layernorm_i_bias.array() += dA.rowwise().sum();
    grads.layernorm_h_bias.array() += dA.rowwise().sum();
    grads.layernorm_c_bias.array() += dc.rowwise().sum();
  }

 private:
  using ArrayMap = Eigen::Map<Eigen::Array<Scalar, Eigen::Dynamic, 1>>;
  using ConstArrayMap = Eigen::Map<const Eigen::Array<Scalar, Eigen::Dynamic, 1>>;
};

}  // namespace recurrent
