// recurrent — cells/layernorm_gru.hpp: the layer-normalised GRU cell and its gate math.
#pragma once

#include <recurrent/cells/activations.hpp>
#include <recurrent/cells/cell.hpp>
#include <recurrent/cells/layer_norm.hpp>
#include <recurrent/detail/chunks.hpp>

#include <Eigen/Core>

#include <cmath>

namespace recurrent {

/// LayerNormGRUCell<Scalar>: the GRU with layer normalisation, by the rule of the reference
/// LayerNormLSTMCell (cells/layernorm_lstm.hpp): each product is normalised over its 3H rows,
/// with its own γ and β, and PyTorch's reset-after GRU runs on the results. For one step, with x
/// the input (I) and h the state (H):
///
///     a_x = LN_i(W_ih x)            over 3H, γ_i and β_i     = [a_xr; a_xz; a_xn]
///     a_h = LN_h(W_hh h)            over 3H, γ_h and β_h     = [a_hr; a_hz; a_hn]
///     r  = σ(a_xr + a_hr),   z = σ(a_xz + a_hz)
///     n  = tanh(a_xn + r ⊙ a_hn)
///     h' = (1 − z) ⊙ n + z ⊙ h
///
/// with LN(v) = γ ⊙ (v − mean v) / sqrt(var v + 1e-5) + β, the variance biased. There is no
/// bias_ih or bias_hh: the β are the biases. Parameters: see LayerNormParameters (weight_ih,
/// weight_hh, layernorm_i.weight, layernorm_i.bias, layernorm_h.weight, layernorm_h.bias).
///
/// Backward (dh flows in from step t+1 and from the loss; LN⁻ᵀ(γ, dy) is the gradient through a
/// layer norm, cells/layer_norm.hpp):
///
///     dA_n = dh ⊙ (1 − z) ⊙ (1 − n²),   dA_z = dh ⊙ (h − n) ⊙ z(1 − z)
///     dA_r = dA_n ⊙ a_hn ⊙ r(1 − r)
///     da_x = [dA_r; dA_z; dA_n],        da_h = [dA_r; dA_z; dA_n ⊙ r]
///     dGx  = LN⁻ᵀ(γ_i, da_x),           dGh = LN⁻ᵀ(γ_h, da_h)
///     dh  ← W_hhᵀ dGh + dh ⊙ z
///
/// and after the time loop: dW_ih += dGx xᵀ, dW_hh += dGh hᵀ, dγ_i += da_x ⊙ v̂_x, dβ_i += da_x,
/// dγ_h += da_h ⊙ v̂_h, dβ_h += da_h over every step and sequence.
///
/// The tape: the driver keeps [r; z; n] and h'; the cell's extra rows keep v̂_x and v̂_h (3H each)
/// and the two r (6H + 2 per column), its backward tape da_x and da_h (6H).
///
/// Threads, initialisation and sizes as LayerNormLSTMCell: one thread runs the step
/// (kSingleThreadStep); weights from U(−1/√H, 1/√H), γ = 1, β = 0; run-time or compile-time I, H.
template <typename Scalar_, int InputSize = Eigen::Dynamic, int HiddenSize = Eigen::Dynamic>
class LayerNormGRUCell : public CellBase<LayerNormGRUParameters<Scalar_>, HiddenState<Scalar_>,
                                         InputSize, HiddenSize> {
  using Base =
      CellBase<LayerNormGRUParameters<Scalar_>, HiddenState<Scalar_>, InputSize, HiddenSize>;

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
  LayerNormGRUCell() = default;
  /// A cell for inputs of `inputSize` and a state of `hiddenSize`, parameters zero. Where a size
  /// is fixed at compile time, the argument must equal it.
  LayerNormGRUCell(Eigen::Index inputSize, Eigen::Index hiddenSize)
      : Base("LayerNormGRUCell", CellSizes{inputSize, hiddenSize, 0}) {}

  /// PyTorch's initialisation: the weights from U(−1/√H, 1/√H) drawn from `rng`, weight_ih then
  /// weight_hh; γ = 1, β = 0.
  template <typename Rng>
  void initialize(Rng& rng) {
    this->parameters().initialize(1.0 / std::sqrt(static_cast<double>(this->hiddenSize())), rng);
  }

  // ---- the gate math of one step (the cell contract: cells/cell.hpp, cells/step.hpp) ------

  /// Rows of the tape per column: v̂_x (3H), v̂_h (3H), then r_x, r_h.
  Eigen::Index extraRows() const { return 6 * this->hiddenSize() + 2; }
  /// No working memory.
  Eigen::Index scratchRows() const { return 0; }
  /// Rows of the backward tape per column: da_x (3H), da_h (3H).
  Eigen::Index gradientRows() const { return 6 * this->hiddenSize(); }

  /// No bias goes into W_ih x: the β come after the normalisation.
  template <typename Derived>
  void foldedBias(Eigen::MatrixBase<Derived>& bias) const {
    bias.setZero();
  }

  /// One step forward (all units: one thread): W_ih x (in s.gates) is kept in the tape, s.gates
  /// becomes W_hh h_prev, then the gate math of the class comment. Leaves [r; z; n] in s.gates,
  /// h' in s.h and v̂_x, v̂_h and the r in s.extra.
  void forwardStep(const StepContext<Scalar>& ctx, ForwardStep<Scalar>& s) const {
    const Eigen::Index H = this->hidden(), GH = 3 * H;
    eigen_assert(ctx.unitBegin() == 0 && ctx.unitEnd() == H);
    s.extra.topRows(GH) = s.gates;
    ctx.multiply(0, kGates, s.hPrev, s.gates, true);  // W_hh h
    const Parameters& p = this->parameters();
    const auto gi = p.layernorm_i_weight.array(), bi = p.layernorm_i_bias.array();
    const auto gh = p.layernorm_h_weight.array(), bh = p.layernorm_h_bias.array();
    for (Eigen::Index j = 0; j < s.gates.cols(); ++j) {
      Scalar* e = detail::column(s.extra, j);
      Scalar* a = detail::column(s.gates, j);
      e[2 * GH] = detail::layerNormForward(e, GH, e);           // v̂_x in place
      e[2 * GH + 1] = detail::layerNormForward(a, GH, e + GH);  // v̂_h
      const ConstArrayMap xh(e, GH), hh(e + GH, GH);
      ArrayMap A(a, GH);
      A.head(2 * H) = sigmoid(gi.head(2 * H) * xh.head(2 * H) + bi.head(2 * H) +
                              gh.head(2 * H) * hh.head(2 * H) + bh.head(2 * H));
      A.tail(H) = (gi.tail(H) * xh.tail(H) + bi.tail(H) +
                   A.head(H) * (gh.tail(H) * hh.tail(H) + bh.tail(H)))
                      .tanh();
      const ConstArrayMap hPrev(detail::column(s.hPrev, j), H);
      ArrayMap(detail::column(s.h, j), H) = A.tail(H) + A.segment(H, H) * (hPrev - A.tail(H));
    }
  }

  /// One step backward (all units): da_x, da_h into s.gradientTape, dGx = LN_i's gradient, dGh =
  /// LN_h's gradient, and dL/dh_{t-1} = W_hhᵀ dGh + dh ⊙ z into s.dhPrev.
  void backwardStep(const StepContext<Scalar>& ctx, BackwardStep<Scalar>& s) const {
    const Eigen::Index H = this->hidden(), GH = 3 * H;
    eigen_assert(ctx.unitBegin() == 0 && ctx.unitEnd() == H);
    const Parameters& p = this->parameters();
    const auto gh = p.layernorm_h_weight.array(), bh = p.layernorm_h_bias.array();
    for (Eigen::Index j = 0; j < s.gates.cols(); ++j) {
      const Scalar* a = detail::column(s.gates, j);
      const Scalar* e = detail::column(s.extra, j);
      const ConstArrayMap r(a, H), z(a + H, H), nn(a + 2 * H, H);
      const ConstArrayMap dh(detail::column(s.dh, j), H);
      const ConstArrayMap hPrev(detail::column(s.hPrev, j), H);
      Scalar* dax = detail::column(s.gradientTape, j);
      Scalar* dah = dax + GH;
      ArrayMap dAn(dax + 2 * H, H);
      dAn = dh * (Scalar(1) - z) * tanhGradFromOutput(nn);
      ArrayMap(dax + H, H) = dh * (hPrev - nn) * sigmoidGradFromOutput(z);
      // a_hn = γ_hn ⊙ v̂_hn + β_hn, recomputed from the tape
      ArrayMap(dax, H) = dAn * (gh.tail(H) * ConstArrayMap(e + GH + 2 * H, H) + bh.tail(H)) *
                         sigmoidGradFromOutput(r);
      ArrayMap(dah, 2 * H) = ConstArrayMap(dax, 2 * H);
      ArrayMap(dah + 2 * H, H) = dAn * r;
      detail::layerNormBackward(p.layernorm_i_weight.data(), dax, e, e[2 * GH], GH,
                                detail::column(s.dGx, j));
      detail::layerNormBackward(p.layernorm_h_weight.data(), dah, e + GH, e[2 * GH + 1], GH,
                                detail::column(s.dGh, j));
    }
    ctx.multiplyTransposed(0, kGates, s.dGh, s.dhPrev, true);
    for (Eigen::Index j = 0; j < s.gates.cols(); ++j) {
      ArrayMap(detail::column(s.dhPrev, j), H) += ConstArrayMap(detail::column(s.dh, j), H) *
                                                  ConstArrayMap(detail::column(s.gates, j) + H, H);
    }
  }

  /// After the backward time loop: dW_ih, dW_hh as one product each over every step, and the
  /// layer norms' γ and β as one pass over the tapes (added into `grads`).
  void accumulateGradients(const StepContext<Scalar>& ctx, const StepsGradients<Scalar>& steps,
                           Parameters& grads) const {
    const Eigen::Index GH = 3 * this->hidden();
    ctx.addProductTransposed(0, kGates, steps.dGx, steps.x, grads.weight_ih);
    ctx.addProductTransposed(0, kGates, steps.dGh, steps.hPrev, grads.weight_hh);
    const auto dax = steps.gradientTape.topRows(GH).array();
    const auto dah = steps.gradientTape.middleRows(GH, GH).array();
    grads.layernorm_i_weight.array() += (dax * steps.extra.topRows(GH).array()).rowwise().sum();
    grads.layernorm_h_weight.array() +=
        (dah * steps.extra.middleRows(GH, GH).array()).rowwise().sum();
    grads.layernorm_i_bias.array() += dax.rowwise().sum();
    grads.layernorm_h_bias.array() += dah.rowwise().sum();
  }

 private:
  using ArrayMap = Eigen::Map<Eigen::Array<Scalar, Eigen::Dynamic, 1>>;
  using ConstArrayMap = Eigen::Map<const Eigen::Array<Scalar, Eigen::Dynamic, 1>>;
};

}  // namespace recurrent
