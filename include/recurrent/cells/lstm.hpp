// recurrent — cells/lstm.hpp: the long short-term memory cell, its parameters and its gate math.
#pragma once

#include <recurrent/cells/activations.hpp>
#include <recurrent/cells/cell.hpp>
#include <recurrent/detail/chunks.hpp>
#include <recurrent/detail/fused_product.hpp>

#include <Eigen/Core>

#include <type_traits>

namespace recurrent {

/// Which LSTM: chosen at compile time (LSTMCell's fourth template parameter).
enum class LSTMVariant {
  /// The gates see x and h only: PyTorch's nn.LSTM, cuDNN, ONNX without P.
  Standard,
  /// Peephole connections (Gers & Schmidhuber 2000): i and f also see c_{t-1}, o sees c_t,
  /// each through a diagonal weight — ONNX's P = [p_i; p_o; p_f], oneDNN's peephole weights.
  Peephole,
};

namespace detail {
/// The peephole weights of LSTMParameters: none for the standard LSTM.
template <typename Scalar, bool Peephole>
struct LSTMPeepholes {};
template <typename Scalar>
struct LSTMPeepholes<Scalar, true> {
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  Vector peephole_i;  ///< H   p_i: c_{t-1} into the input gate
  Vector peephole_f;  ///< H   p_f: c_{t-1} into the forget gate
  Vector peephole_o;  ///< H   p_o: c_t into the output gate
};
}  // namespace detail

/// LSTMParameters<Scalar, Variant>: the tensors of an LSTMCell, in the order forEach visits
/// them (PyTorch's state_dict order, then the tensors PyTorch has no name for):
///
///     weight_ih   4H × I   [W_ii; W_if; W_ig; W_io]
///     weight_hh   4H × R   [W_hi; W_hf; W_hg; W_ho]   (R = P with a projection, else H)
///     bias_ih     4H
///     bias_hh     4H
///     weight_hr   P × H    the projection W_hr (proj_size P > 0; else 0 × 0 and not visited)
///     peephole_i, peephole_f, peephole_o   H each   (LSTMVariant::Peephole only)
///
/// The standard LSTM without projection has exactly the four tensors of GateParameters. The same
/// type holds gradients.
template <typename Scalar_, LSTMVariant Variant = LSTMVariant::Standard>
struct LSTMParameters : TensorSet<LSTMParameters<Scalar_, Variant>, CellSizes>,
                        detail::LSTMPeepholes<Scalar_, Variant == LSTMVariant::Peephole> {
  using Scalar = Scalar_;                                                ///< float or double
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;  ///< dynamic matrix
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;               ///< dynamic vector
  static constexpr Eigen::Index kGates = 4;                              ///< G: i, f, g, o
  /// Whether the peephole tensors are present (LSTMVariant::Peephole).
  static constexpr bool kPeephole = (Variant == LSTMVariant::Peephole);

  Matrix weight_ih;  ///< 4H × I
  Matrix weight_hh;  ///< 4H × R
  Vector bias_ih;    ///< 4H
  Vector bias_hh;    ///< 4H
  Matrix weight_hr;  ///< P × H, or 0 × 0 without projection

  LSTMParameters() = default;
  /// Zero tensors for a cell of `sizes` (sizes.projection = P, 0: none).
  explicit LSTMParameters(const CellSizes& sizes)
      : TensorSet<LSTMParameters<Scalar_, Variant>, CellSizes>(sizes) {
    this->allocate();
  }

  /// The tensor list of TensorSet.
  template <typename Self, typename F>
  static void visit(Self& self, const CellSizes& sizes, F&& f) {
    detail::visitGateTensors<4>(self, sizes, f);
    // Visited with a projection, and wherever it holds something: a weight_hr given to a cell
    // without a projection is then reported by the shape check (it must be 0 × 0) instead of
    // being skipped.
    if (sizes.projection > 0 || self.weight_hr.size() != 0) {
      f("weight_hr", self.weight_hr, sizes.projection, sizes.projection > 0 ? sizes.hidden : 0);
    }
    if constexpr (kPeephole) {
      f("peephole_i", self.peephole_i, sizes.hidden, Eigen::Index(1));
      f("peephole_f", self.peephole_f, sizes.hidden, Eigen::Index(1));
      f("peephole_o", self.peephole_o, sizes.hidden, Eigen::Index(1));
    }
  }
};

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
/// With LSTMVariant::Peephole (PeepholeLSTMCell; Gers & Schmidhuber 2000, as ONNX and oneDNN
/// define it) the gates also see the cell state through diagonal weights p_i, p_f, p_o (H each):
/// i and f the previous one, o the new one:
///
///     i  = σ(W_ii x + b_ii + W_hi h + b_hi + p_i ⊙ c)
///     f  = σ(W_if x + b_if + W_hf h + b_hf + p_f ⊙ c)
///     o  = σ(W_io x + b_io + W_ho h + b_ho + p_o ⊙ c')
///
/// With a projection (constructor argument proj_size = P, 0 < P < H; PyTorch's nn.LSTM(...,
/// proj_size=P), the LSTMP of Sak et al. 2014) the hidden state is projected to P rows, and that
/// is what the gates see at the next step and what the cell outputs; c keeps H rows:
///
///     m  = o ⊙ tanh(c')                          (H)
///     h' = W_hr m                                (P)
///
/// Peepholes and projection combine: the peepholes see c, the projection acts on h only.
///
/// Parameters (see LSTMParameters), gate blocks stacked by rows in the order i, f, g, o; R = P
/// with a projection, else H:
///
///     weight_ih  4H × I    = [W_ii; W_if; W_ig; W_io]
///     weight_hh  4H × R    = [W_hi; W_hf; W_hg; W_ho]
///     bias_ih, bias_hh  4H
///     weight_hr  P × H     (projection only)
///     peephole_i, peephole_f, peephole_o  H each   (Peephole only; no PyTorch equivalent)
///
/// The state is h (R × B) and c (H × B); outputs have R rows.
///
/// Backward (dh, dc flow in from step t+1 and from the loss; A_* are pre-activations). With a
/// projection, dh is first taken back through it, dh ← W_hrᵀ dh (H rows), and dW_hr += dh mᵀ
/// is summed over every step after the time loop; then:
///
///     dA_o  = dh ⊙ tanh(c') ⊙ o(1 − o)
///     dc_t  = dc + dh ⊙ o ⊙ (1 − tanh²c')        total gradient on c'
///               [+ dA_o ⊙ p_o]                     (Peephole: o sees c')
///     dA_i  = dc_t ⊙ g ⊙ i(1 − i)
///     dA_f  = dc_t ⊙ c ⊙ f(1 − f)
///     dA_g  = dc_t ⊙ i ⊙ (1 − g²)
///     dc    ← dc_t ⊙ f [+ dA_i ⊙ p_i + dA_f ⊙ p_f],   dh ← W_hhᵀ dA     (previous state)
///
/// and, after the time loop, as sums over every step and sequence (Peephole):
///
///     dp_i += Σ dA_i ⊙ c,   dp_f += Σ dA_f ⊙ c,   dp_o += Σ dA_o ⊙ c'
///
/// A projection's product W_hr m is a recurrent one (h' feeds the next step): with a projection,
/// Sequence runs every call on one thread.
///
/// The cell owns its parameters and keeps no per-sequence state: it is const while a
/// Sequence runs it, so one cell can serve several Sequences on several threads.
///
/// Sizes: `LSTMCell<float>` takes I and H at run time. `LSTMCell<float, 8, 16>` fixes them at
/// compile time, for the small cells of real-time audio and control: it has a default
/// constructor, and Stream runs it with a step kernel specialised on the sizes
/// (detail/fused_step.hpp). Its parameters stay in the same dynamic tensors as a run-time-sized
/// cell's (a 4H × H matrix is 256 KB at H = 128, beyond what belongs on a stack), so it works
/// wherever a run-time-sized cell does: Sequence, ParameterList and the optimizers, StateDict
/// and weight files, initialize(). The fused step covers the standard LSTM without projection;
/// a peephole or projecting LSTM runs Stream's batched step.
template <typename Scalar_, int InputSize = Eigen::Dynamic, int HiddenSize = Eigen::Dynamic,
          LSTMVariant Variant = LSTMVariant::Standard>
class LSTMCell
    : public CellBase<LSTMParameters<Scalar_, Variant>, LSTMState<Scalar_>, InputSize, HiddenSize> {
  using Base =
      CellBase<LSTMParameters<Scalar_, Variant>, LSTMState<Scalar_>, InputSize, HiddenSize>;

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

  static constexpr LSTMVariant kVariant = Variant;  ///< the fourth template parameter
  /// Whether this is the peephole LSTM (PeepholeLSTMCell).
  static constexpr bool kPeephole = (Variant == LSTMVariant::Peephole);
  /// accumulateGradients() reads c_t and c_{t-1} of every step (the peephole gradients).
  static constexpr bool kCellStatesInGradients = kPeephole;
  /// The standard LSTM's step is one product over [x; h]: A = [W_ih W_hh]·[x; h] + b_ih + b_hh.
  using FusedProduct = std::conditional_t<kPeephole, void, detail::fused::Concatenated<4>>;

  /// A cell of the compile-time sizes, parameters zero (both sizes fixed only).
  LSTMCell() = default;

  /// A cell for inputs of `inputSize` and a cell state of `hiddenSize`, parameters zero; with
  /// `projSize` P > 0 (it must be less than hiddenSize), h is projected to P rows. Where a size
  /// is fixed at compile time, the argument must equal it.
  LSTMCell(Eigen::Index inputSize, Eigen::Index hiddenSize, Eigen::Index projSize = 0)
      : Base("LSTMCell", CellSizes{inputSize, hiddenSize, projSize}) {}

  /// P, the rows of the projected h; 0 without projection.
  Eigen::Index projSize() const { return this->sizes().projection; }

  // ---- the gate math of one step (the cell contract: cells/cell.hpp, cells/step.hpp) ------

  /// Rows of ForwardStep::extra / BackwardStep::extra and of the scratch buffer. A projection
  /// keeps m = o ⊙ tanh(c') in extra (the input of W_hr, for dW_hr) and takes dh back through
  /// W_hr into scratch; the plain LSTM needs neither.
  Eigen::Index extraRows() const { return this->projSize() > 0 ? this->hiddenSize() : 0; }
  /// Rows of the scratch buffer: H with a projection (dL/dm = W_hrᵀ dh), else 0.
  Eigen::Index scratchRows() const { return this->projSize() > 0 ? this->hiddenSize() : 0; }

  /// The bias the caller adds to W_ih·x before forwardStep(): b_ih + b_hh (4H).
  template <typename Derived>
  void foldedBias(Eigen::MatrixBase<Derived>& bias) const {
    bias = this->parameters().bias_ih + this->parameters().bias_hh;
  }

  /// One step forward, for this thread's units u0..u1: gates += W_hh·h_prev, then the gate
  /// math of the class comment. Leaves [i; f; g; o] in s.gates, c' in s.c and h' in s.h (with a
  /// projection, m in s.extra and then h' = W_hr m in s.h).
  void forwardStep(const StepContext<Scalar>& ctx, ForwardStep<Scalar>& s) const {
    const bool project = this->projSize() > 0;
    ctx.multiply(0, kGates, s.hPrev, s.gates, false);  // [A_i; A_f; A_g; A_o] += W_hh h
    for (Eigen::Index j = 0; j < s.gates.cols(); ++j) {
      Scalar* a = detail::column(s.gates, j);
      const Scalar* cPrev = detail::column(s.cPrev, j);
      Scalar* cOut = detail::column(s.c, j);
      Scalar* hOut = project ? detail::column(s.extra, j) : detail::column(s.h, j);  // h or m
      gateMath(ctx.unitBegin(), ctx.unitEnd(), a, cPrev, cOut, hOut);
    }
    if (project) {
      ctx.barrier();              // W_hr m needs every unit of m
      ctx.project(s.extra, s.h);  // h' = W_hr m
    }
  }

  /// One step backward: the pre-activation gradients dA = [dA_i; dA_f; dA_g; dA_o] into
  /// s.dGx (= s.dGh), dL/dc_{t-1} into s.dcPrev and dL/dh_{t-1} = W_hhᵀ dA into s.dhPrev.
  void backwardStep(const StepContext<Scalar>& ctx, BackwardStep<Scalar>& s) const {
    const Eigen::Index H = this->hiddenSize();
    const bool project = this->projSize() > 0;
    if (project) ctx.projectTransposed(s.dh, s.scratch);  // dL/dm = W_hrᵀ dh
    for (Eigen::Index j = 0; j < s.gates.cols(); ++j) {
      const Scalar* a = detail::column(s.gates, j);
      const Scalar* cNow = detail::column(s.c, j);
      const Scalar* cPrev = detail::column(s.cPrev, j);
      const Scalar* dhIn = project ? detail::column(s.scratch, j) : detail::column(s.dh, j);
      const Scalar* dcIn = detail::column(s.dc, j);
      Scalar* dA = detail::column(s.dGx, j);
      Scalar* dcOut = detail::column(s.dcPrev, j);
      detail::forEachChunk<Scalar>(
          ctx.unitBegin(), ctx.unitEnd(), this->hiddenSize(),
          [&](Eigen::Index k, Eigen::Index n, auto w) RECURRENT_FLATTEN {
            using A = detail::Chunk<Scalar, decltype(w)::value>;
            const A i = detail::load(a + k, n, w);
            const A f = detail::load(a + H + k, n, w);
            const A g = detail::load(a + 2 * H + k, n, w);
            const A o = detail::load(a + 3 * H + k, n, w);
            const A dh = detail::load(dhIn + k, n, w);
            const A tc = detail::load(cNow + k, n, w).tanh();
            const A dAo = dh * tc * sigmoidGradFromOutput(o);
            // dc_t; fused explicitly, so that zero peepholes give the standard LSTM exactly
            const A dho = dh * o;
            const A tg = tanhGradFromOutput(tc);
            A dc = detail::madd<Scalar>(dho, tg, detail::load(dcIn + k, n, w));
            if constexpr (kPeephole)
              dc = detail::madd<Scalar>(dAo, peephole(this->parameters().peephole_o, k, n, w), dc);
            const A dAi = dc * g * sigmoidGradFromOutput(i);
            const A dAf = dc * detail::load(cPrev + k, n, w) * sigmoidGradFromOutput(f);
            detail::store(dA + k, n, dAi);
            detail::store(dA + H + k, n, dAf);
            detail::store(dA + 2 * H + k, n, dc * i * tanhGradFromOutput(g));
            detail::store(dA + 3 * H + k, n, dAo);
            if constexpr (kPeephole) {
              detail::store(dcOut + k, n,
                            dc * f + dAi * peephole(this->parameters().peephole_i, k, n, w) +
                                dAf * peephole(this->parameters().peephole_f, k, n, w));
            } else {
              detail::store(dcOut + k, n, dc * f);
            }
          });
    }
    ctx.barrier();  // W_hhᵀ dA needs every unit's dA
    ctx.multiplyTransposed(0, kGates, s.dGx, s.dhPrev, true);
  }

  /// After the backward time loop: every weight and bias gradient as one product over all
  /// steps, for this thread's units; the peephole gradients as one pass over every step.
  void accumulateGradients(const StepContext<Scalar>& ctx, const StepsGradients<Scalar>& steps,
                           Parameters& grads) const {
    detail::accumulateInputGradients(ctx, kGates, steps, grads);
    detail::accumulateRecurrentGradients(ctx, kGates, steps, grads);
    if constexpr (kPeephole) accumulatePeepholeGradients(ctx, steps, grads);
    if (this->projSize() > 0) ctx.addProjectionGradient(steps.dh, steps.extra, grads.weight_hr);
  }

  // ---- the fused step (a Stream of one sequence; FusedProduct, detail/fused_step.hpp) -------

  /// The gate math of the class comment on A (4H, overwritten), for one sequence.
  void fusedGates(Scalar* a, const Scalar* hPrev, const Scalar* cPrev, Scalar* h, Scalar* c) const {
    (void)hPrev;
    gateMath(0, this->hidden(), a, cPrev, c, h);
  }

 private:
  /// The gate math of one column for units [u0, u1): A = [A_i; A_f; A_g; A_o] in `a` becomes
  /// [i; f; g; o]; c' and h' are written.
  void gateMath(Eigen::Index u0, Eigen::Index u1, Scalar* a, const Scalar* cPrev, Scalar* cOut,
                Scalar* hOut) const {
    const Eigen::Index H = this->hidden();
    detail::forEachChunk<Scalar>(
        u0, u1, H, [&](Eigen::Index k, Eigen::Index n, auto w) RECURRENT_FLATTEN {
          using A = detail::Chunk<Scalar, decltype(w)::value>;
          const A cp = detail::load(cPrev + k, n, w);
          A ai = detail::load(a + k, n, w);
          A af = detail::load(a + H + k, n, w);
          A ao = detail::load(a + 3 * H + k, n, w);
          if constexpr (kPeephole) {  // i and f see c_{t-1}
            ai += peephole(this->parameters().peephole_i, k, n, w) * cp;
            af += peephole(this->parameters().peephole_f, k, n, w) * cp;
          }
          const A i = sigmoid(ai);
          const A f = sigmoid(af);
          const A g = detail::load(a + 2 * H + k, n, w).tanh();
          const A c = f * cp + i * g;
          if constexpr (kPeephole)
            ao += peephole(this->parameters().peephole_o, k, n, w) * c;  // o sees c_t
          const A o = sigmoid(ao);
          detail::store(a + k, n, i);
          detail::store(a + H + k, n, f);
          detail::store(a + 2 * H + k, n, g);
          detail::store(a + 3 * H + k, n, o);
          detail::store(cOut + k, n, c);
          detail::store(hOut + k, n, o * c.tanh());
        });
  }

  /// The chunk [k, k + n) of a peephole weight.
  template <int W>
  static detail::Chunk<Scalar, W> peephole(const Vector& p, Eigen::Index k, Eigen::Index n,
                                           std::integral_constant<int, W> w) {
    return detail::load(p.data() + k, n, w);
  }

  /// dp_i += Σ dA_i ⊙ c_{t-1}, dp_f += Σ dA_f ⊙ c_{t-1}, dp_o += Σ dA_o ⊙ c_t over every packed
  /// column, in column order, for this thread's units (so the sums do not depend on threads).
  /// A template, so that only the peephole LSTM instantiates it.
  template <bool Peephole = kPeephole, std::enable_if_t<Peephole, int> = 0>
  void accumulatePeepholeGradients(const StepContext<Scalar>& ctx,
                                   const StepsGradients<Scalar>& steps, Parameters& grads) const {
    const Eigen::Index H = this->hiddenSize();
    Scalar* dpi = grads.peephole_i.data();
    Scalar* dpf = grads.peephole_f.data();
    Scalar* dpo = grads.peephole_o.data();
    for (Eigen::Index j = 0; j < steps.dGx.cols(); ++j) {
      const Scalar* dA = detail::column(steps.dGx, j);
      const Scalar* cPrev = detail::column(steps.cPrev, j);
      const Scalar* cNow = detail::column(steps.c, j);
      detail::forEachChunk<Scalar>(
          ctx.unitBegin(), ctx.unitEnd(), H,
          [&](Eigen::Index k, Eigen::Index n, auto w) RECURRENT_FLATTEN {
            using A = detail::Chunk<Scalar, decltype(w)::value>;
            const A cp = detail::load(cPrev + k, n, w);
            detail::store(dpi + k, n,
                          detail::load(dpi + k, n, w) + detail::load(dA + k, n, w) * cp);
            detail::store(dpf + k, n,
                          detail::load(dpf + k, n, w) + detail::load(dA + H + k, n, w) * cp);
            detail::store(dpo + k, n,
                          detail::load(dpo + k, n, w) +
                              detail::load(dA + 3 * H + k, n, w) * detail::load(cNow + k, n, w));
          });
    }
  }
};

/// The LSTM with peephole connections (see LSTMCell, LSTMVariant::Peephole).
template <typename Scalar, int I = Eigen::Dynamic, int H = Eigen::Dynamic>
using PeepholeLSTMCell = LSTMCell<Scalar, I, H, LSTMVariant::Peephole>;

}  // namespace recurrent
