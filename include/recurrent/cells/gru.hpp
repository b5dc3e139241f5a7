// recurrent — cells/gru.hpp: the gated recurrent unit, in both of its published variants.
#pragma once

#include <recurrent/cells/activations.hpp>
#include <recurrent/cells/cell.hpp>
#include <recurrent/detail/chunks.hpp>
#include <recurrent/detail/fused_product.hpp>

#include <Eigen/Core>

#include <type_traits>

namespace recurrent {

/// Where the reset gate acts in the GRU's candidate state n.
enum class GRUVariant {
  /// n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)): the reset gate scales the recurrent
  /// product. PyTorch's nn.GRU, cuDNN, ONNX (linear_before_reset = 1), Keras reset_after=True.
  ResetAfter,
  /// n = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn): the reset gate scales h before the
  /// product. Cho et al. (2014), Keras reset_after=False.
  ResetBefore,
};

/// GRUCell<Scalar, InputSize, HiddenSize, Variant>: the gated recurrent unit of Cho et al. (2014),
/// in PyTorch's conventions (torch.nn.GRU, one layer) and, with GRUVariant::ResetBefore, as first
/// published.
///
/// For one step, with x the input (I) and h the state (H):
///
///     r  = σ(W_ir x + b_ir + W_hr h + b_hr)                 reset gate
///     z  = σ(W_iz x + b_iz + W_hz h + b_hz)                 update gate
///     n  = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))        candidate (ResetAfter, default)
///     n  = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn)        candidate (ResetBefore)
///     h' = (1 − z) ⊙ n + z ⊙ h                              hidden state
///
/// Parameters (GateParameters<Scalar, 3>), gate blocks stacked by rows in the order r, z, n:
///
///     weight_ih  3H × I    = [W_ir; W_iz; W_in]
///     weight_hh  3H × H    = [W_hr; W_hz; W_hn]
///     bias_ih, bias_hh  3H
///
/// Backward (dh flows in from step t+1 and from the loss; A_* are pre-activations):
///
///     dA_n = dh ⊙ (1 − z) ⊙ (1 − n²)
///     dA_z = dh ⊙ (h − n) ⊙ z(1 − z)
///     ResetAfter:  with m = W_hn h + b_hn,
///         dA_r = dA_n ⊙ m ⊙ r(1 − r);  the recurrent side of n sees dA_n ⊙ r
///         dh  ← W_hhᵀ [dA_r; dA_z; dA_n ⊙ r] + dh ⊙ z
///     ResetBefore: with d(rh) = W_hnᵀ dA_n,
///         dA_r = d(rh) ⊙ h ⊙ r(1 − r)
///         dh  ← [W_hr; W_hz]ᵀ [dA_r; dA_z] + d(rh) ⊙ r + dh ⊙ z
///
/// Sizes: `GRUCell<float>` takes I and H at run time; `GRUCell<float, 1, 16>` fixes them at
/// compile time (a default constructor, and Stream's step kernel specialised on the sizes for
/// ResetAfter; see LSTMCell and detail/fused_step.hpp). `ResetBeforeGRUCell<float>` is
/// `GRUCell<float, Eigen::Dynamic, Eigen::Dynamic, GRUVariant::ResetBefore>`.
template <typename Scalar_, int InputSize = Eigen::Dynamic, int HiddenSize = Eigen::Dynamic,
          GRUVariant Variant = GRUVariant::ResetAfter>
class GRUCell
    : public CellBase<GateParameters<Scalar_, 3>, HiddenState<Scalar_>, InputSize, HiddenSize> {
  using Base = CellBase<GateParameters<Scalar_, 3>, HiddenState<Scalar_>, InputSize, HiddenSize>;

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

  static constexpr GRUVariant kVariant = Variant;  ///< the fourth template parameter
  /// ResetAfter: the recurrent side of n gets dA_n ⊙ r, not dA_n, so dGh is its own buffer.
  static constexpr bool kSeparateRecurrentGradient = (Variant == GRUVariant::ResetAfter);
  /// ResetBefore multiplies W_hn by r ⊙ h, a product of its own after r: not every recurrent
  /// product covers all gates.
  static constexpr bool kFullGateProducts = (Variant == GRUVariant::ResetAfter);
  /// ResetAfter's step is one product over [x; h], the candidate's halves kept apart.
  using FusedProduct =
      std::conditional_t<Variant == GRUVariant::ResetAfter, detail::fused::SplitCandidate, void>;

  /// A cell of the compile-time sizes, parameters zero (both sizes fixed only).
  GRUCell() = default;

  /// Where a size is fixed at compile time, the argument must equal it.
  GRUCell(Eigen::Index inputSize, Eigen::Index hiddenSize)
      : Base("GRUCell", CellSizes{inputSize, hiddenSize, 0}) {}

  // ---- the gate math of one step (the cell contract: cells/cell.hpp, cells/step.hpp) ------

  /// extra: ResetAfter keeps m = W_hn h + b_hn, ResetBefore keeps r ⊙ h (H rows each).
  Eigen::Index extraRows() const { return this->hiddenSize(); }
  /// scratch: ResetAfter needs W_hh h (3H); ResetBefore needs W_hnᵀ dA_n in backward (H).
  Eigen::Index scratchRows() const {
    return Variant == GRUVariant::ResetAfter ? kGates * this->hiddenSize() : this->hiddenSize();
  }

  /// The bias added to W_ih·x before forwardStep(): b_ih plus the part of b_hh that is not
  /// inside the reset product (all of it for ResetBefore; b_hr and b_hz for ResetAfter).
  template <typename Derived>
  void foldedBias(Eigen::MatrixBase<Derived>& bias) const {
    bias = this->parameters().bias_ih + this->parameters().bias_hh;
    if (Variant == GRUVariant::ResetAfter) {
      bias.tail(this->hiddenSize()) = this->parameters().bias_ih.tail(this->hiddenSize());
    }
  }

  /// One step forward, for this thread's units: the gate math of the class comment. Leaves
  /// [r; z; n] in s.gates and h' in s.h, and keeps in s.extra m = W_hn h + b_hn (ResetAfter,
  /// with W_hh h in s.scratch) or r ⊙ h (ResetBefore).
  void forwardStep(const StepContext<Scalar>& ctx, ForwardStep<Scalar>& s) const {
    if constexpr (Variant == GRUVariant::ResetAfter) {
      forwardResetAfter(ctx, s);
    } else {
      forwardResetBefore(ctx, s);
    }
  }

  /// One step backward: dA = [dA_r; dA_z; dA_n] into s.dGx and dL/dh_{t-1} into s.dhPrev, as
  /// in the class comment. ResetAfter writes the recurrent side's [dA_r; dA_z; dA_n ⊙ r] into
  /// s.dGh; ResetBefore keeps d(rh) = W_hnᵀ dA_n in s.scratch.
  void backwardStep(const StepContext<Scalar>& ctx, BackwardStep<Scalar>& s) const {
    if constexpr (Variant == GRUVariant::ResetAfter) {
      backwardResetAfter(ctx, s);
    } else {
      backwardResetBefore(ctx, s);
    }
  }

  /// After the backward time loop: every weight and bias gradient as one product over all
  /// steps, for this thread's units, ADDED into `grads`. ResetBefore takes n's block of dW_hh
  /// against r ⊙ h (steps.extra), r's and z's against h.
  void accumulateGradients(const StepContext<Scalar>& ctx, const StepsGradients<Scalar>& steps,
                           Parameters& grads) const {
    detail::accumulateInputGradients(ctx, kGates, steps, grads);
    if constexpr (Variant == GRUVariant::ResetAfter) {
      detail::accumulateRecurrentGradients(ctx, kGates, steps, grads);
    } else {
      // r and z see h, n sees r ⊙ h (kept in `extra`).
      ctx.addProductTransposed(0, 2, steps.dGh, steps.hPrev, grads.weight_hh, grads.bias_hh);
      ctx.addProductTransposed(2, 3, steps.dGh, steps.extra, grads.weight_hh, grads.bias_hh);
    }
  }

  // ---- the fused step (a Stream of one sequence; FusedProduct, detail/fused_step.hpp) -------

  /// r, z, n and h' from A (4H, its first 3H overwritten with r, z, n), for one sequence.
  void fusedGates(Scalar* a, const Scalar* hPrev, const Scalar* /*cPrev*/, Scalar* hOut,
                  Scalar* /*cOut*/) const {
    const Eigen::Index H = this->hidden();
    detail::forEachChunk<Scalar>(
        0, H, H, [&](Eigen::Index k, Eigen::Index n, auto w) RECURRENT_FLATTEN {
          using A = detail::Chunk<Scalar, decltype(w)::value>;
          const A r = sigmoid(detail::load(a + k, n, w));
          const A z = sigmoid(detail::load(a + H + k, n, w));
          const A nn =
              (detail::load(a + 2 * H + k, n, w) + r * detail::load(a + 3 * H + k, n, w)).tanh();
          detail::store(a + k, n, r);
          detail::store(a + H + k, n, z);
          detail::store(a + 2 * H + k, n, nn);
          detail::store(hOut + k, n, nn + z * (detail::load(hPrev + k, n, w) - nn));
        });
  }

 private:
  // ResetAfter forward: scratch = W_hh h = [W_hr h; W_hz h; W_hn h], one product; then
  // r, z, m = W_hn h + b_hn (kept in extra), n, h'.
  void forwardResetAfter(const StepContext<Scalar>& ctx, ForwardStep<Scalar>& s) const {
    const Eigen::Index H = this->hiddenSize();
    ctx.multiply(0, kGates, s.hPrev, s.scratch, true);
    const Scalar* bn = this->parameters().bias_hh.data() + 2 * H;
    for (Eigen::Index j = 0; j < s.gates.cols(); ++j) {
      Scalar* a = detail::column(s.gates, j);
      const Scalar* q = detail::column(s.scratch, j);
      const Scalar* hPrev = detail::column(s.hPrev, j);
      Scalar* mOut = detail::column(s.extra, j);
      Scalar* hOut = detail::column(s.h, j);
      detail::forEachChunk<Scalar>(
          ctx.unitBegin(), ctx.unitEnd(), this->hiddenSize(),
          [&](Eigen::Index k, Eigen::Index n, auto w) RECURRENT_FLATTEN {
            using A = detail::Chunk<Scalar, decltype(w)::value>;
            const A r = sigmoid(detail::load(a + k, n, w) + detail::load(q + k, n, w));
            const A z = sigmoid(detail::load(a + H + k, n, w) + detail::load(q + H + k, n, w));
            const A m = detail::load(q + 2 * H + k, n, w) + detail::load(bn + k, n, w);
            const A nn = (detail::load(a + 2 * H + k, n, w) + r * m).tanh();
            detail::store(a + k, n, r);
            detail::store(a + H + k, n, z);
            detail::store(a + 2 * H + k, n, nn);
            detail::store(mOut + k, n, m);
            detail::store(hOut + k, n, nn + z * (detail::load(hPrev + k, n, w) - nn));
          });
    }
  }

  void backwardResetAfter(const StepContext<Scalar>& ctx, BackwardStep<Scalar>& s) const {
    const Eigen::Index H = this->hiddenSize();
    for (Eigen::Index j = 0; j < s.gates.cols(); ++j) {
      const Scalar* a = detail::column(s.gates, j);
      const Scalar* mIn = detail::column(s.extra, j);
      const Scalar* hPrev = detail::column(s.hPrev, j);
      const Scalar* dhIn = detail::column(s.dh, j);
      Scalar* dx = detail::column(s.dGx, j);
      Scalar* dr = detail::column(s.dGh, j);
      detail::forEachChunk<Scalar>(
          ctx.unitBegin(), ctx.unitEnd(), this->hiddenSize(),
          [&](Eigen::Index k, Eigen::Index n, auto w) RECURRENT_FLATTEN {
            using A = detail::Chunk<Scalar, decltype(w)::value>;
            const A r = detail::load(a + k, n, w);
            const A z = detail::load(a + H + k, n, w);
            const A nn = detail::load(a + 2 * H + k, n, w);
            const A dh = detail::load(dhIn + k, n, w);
            const A dAn = dh * (Scalar(1) - z) * tanhGradFromOutput(nn);
            const A dAz = dh * (detail::load(hPrev + k, n, w) - nn) * sigmoidGradFromOutput(z);
            const A dAr = dAn * detail::load(mIn + k, n, w) * sigmoidGradFromOutput(r);
            detail::store(dx + k, n, dAr);
            detail::store(dx + H + k, n, dAz);
            detail::store(dx + 2 * H + k, n, dAn);
            detail::store(dr + k, n, dAr);
            detail::store(dr + H + k, n, dAz);
            detail::store(dr + 2 * H + k, n, dAn * r);
          });
    }
    ctx.barrier();
    ctx.multiplyTransposed(0, kGates, s.dGh, s.dhPrev, true);
    for (Eigen::Index j = 0; j < s.gates.cols(); ++j) {
      const Scalar* z = detail::column(s.gates, j) + H;
      const Scalar* dhIn = detail::column(s.dh, j);
      Scalar* dhOut = detail::column(s.dhPrev, j);
      detail::forEachChunk<Scalar>(
          ctx.unitBegin(), ctx.unitEnd(), this->hiddenSize(),
          [&](Eigen::Index k, Eigen::Index n, auto w) RECURRENT_FLATTEN {
            detail::store(dhOut + k, n,
                          detail::load(dhOut + k, n, w) +
                              (detail::load(dhIn + k, n, w) * detail::load(z + k, n, w)));
          });
    }
  }

  // ResetBefore forward: [A_r; A_z] += [W_hr; W_hz] h; r, z; rh = r ⊙ h (kept in extra);
  // A_n += W_hn rh; n, h'.
  void forwardResetBefore(const StepContext<Scalar>& ctx, ForwardStep<Scalar>& s) const {
    const Eigen::Index H = this->hiddenSize();
    ctx.multiply(0, 2, s.hPrev, s.gates, false);
    for (Eigen::Index j = 0; j < s.gates.cols(); ++j) {
      Scalar* a = detail::column(s.gates, j);
      const Scalar* hPrev = detail::column(s.hPrev, j);
      Scalar* rhOut = detail::column(s.extra, j);
      detail::forEachChunk<Scalar>(ctx.unitBegin(), ctx.unitEnd(), this->hiddenSize(),
                                   [&](Eigen::Index k, Eigen::Index n, auto w) RECURRENT_FLATTEN {
                                     using A = detail::Chunk<Scalar, decltype(w)::value>;
                                     const A r = sigmoid(detail::load(a + k, n, w));
                                     detail::store(a + k, n, r);
                                     detail::store(a + H + k, n,
                                                   sigmoid(detail::load(a + H + k, n, w)));
                                     detail::store(rhOut + k, n, r * detail::load(hPrev + k, n, w));
                                   });
    }
    ctx.barrier();  // W_hn (r ⊙ h) needs every unit of r ⊙ h
    ctx.multiply(2, 3, s.extra, s.gates, false);
    for (Eigen::Index j = 0; j < s.gates.cols(); ++j) {
      Scalar* a = detail::column(s.gates, j);
      const Scalar* hPrev = detail::column(s.hPrev, j);
      Scalar* hOut = detail::column(s.h, j);
      detail::forEachChunk<Scalar>(ctx.unitBegin(), ctx.unitEnd(), this->hiddenSize(),
                                   [&](Eigen::Index k, Eigen::Index n, auto w) RECURRENT_FLATTEN {
                                     using A = detail::Chunk<Scalar, decltype(w)::value>;
                                     const A nn = detail::load(a + 2 * H + k, n, w).tanh();
                                     detail::store(a + 2 * H + k, n, nn);
                                     detail::store(hOut + k, n,
                                                   nn + detail::load(a + H + k, n, w) *
                                                            (detail::load(hPrev + k, n, w) - nn));
                                   });
    }
  }

  void backwardResetBefore(const StepContext<Scalar>& ctx, BackwardStep<Scalar>& s) const {
    const Eigen::Index H = this->hiddenSize();
    for (Eigen::Index j = 0; j < s.gates.cols(); ++j) {
      const Scalar* a = detail::column(s.gates, j);
      const Scalar* hPrev = detail::column(s.hPrev, j);
      const Scalar* dhIn = detail::column(s.dh, j);
      Scalar* dA = detail::column(s.dGx, j);
      detail::forEachChunk<Scalar>(
          ctx.unitBegin(), ctx.unitEnd(), this->hiddenSize(),
          [&](Eigen::Index k, Eigen::Index n, auto w) RECURRENT_FLATTEN {
            using A = detail::Chunk<Scalar, decltype(w)::value>;
            const A z = detail::load(a + H + k, n, w);
            const A nn = detail::load(a + 2 * H + k, n, w);
            const A dh = detail::load(dhIn + k, n, w);
            detail::store(dA + 2 * H + k, n, dh * (Scalar(1) - z) * tanhGradFromOutput(nn));
            detail::store(dA + H + k, n,
                          dh * (detail::load(hPrev + k, n, w) - nn) * sigmoidGradFromOutput(z));
          });
    }
    ctx.barrier();
    ctx.multiplyTransposed(2, 3, s.dGx, s.scratch, true);  // d(rh) = W_hnᵀ dA_n
    for (Eigen::Index j = 0; j < s.gates.cols(); ++j) {
      const Scalar* a = detail::column(s.gates, j);
      const Scalar* hPrev = detail::column(s.hPrev, j);
      const Scalar* dRh = detail::column(s.scratch, j);
      Scalar* dA = detail::column(s.dGx, j);
      detail::forEachChunk<Scalar>(
          ctx.unitBegin(), ctx.unitEnd(), this->hiddenSize(),
          [&](Eigen::Index k, Eigen::Index n, auto w) RECURRENT_FLATTEN {
            detail::store(dA + k, n,
                          detail::load(dRh + k, n, w) * detail::load(hPrev + k, n, w) *
                              sigmoidGradFromOutput(detail::load(a + k, n, w)));
          });
    }
    ctx.barrier();
    ctx.multiplyTransposed(0, 2, s.dGx, s.dhPrev, true);
    for (Eigen::Index j = 0; j < s.gates.cols(); ++j) {
      const Scalar* a = detail::column(s.gates, j);
      const Scalar* dRh = detail::column(s.scratch, j);
      const Scalar* dhIn = detail::column(s.dh, j);
      Scalar* dhOut = detail::column(s.dhPrev, j);
      detail::forEachChunk<Scalar>(
          ctx.unitBegin(), ctx.unitEnd(), this->hiddenSize(),
          [&](Eigen::Index k, Eigen::Index n, auto w) RECURRENT_FLATTEN {
            detail::store(dhOut + k, n,
                          detail::load(dhOut + k, n, w) +
                              (detail::load(dRh + k, n, w) * detail::load(a + k, n, w) +
                               detail::load(dhIn + k, n, w) * detail::load(a + H + k, n, w)));
          });
    }
  }
};

/// The GRU of Cho et al. (2014): the reset gate scales h before the product
/// (GRUVariant::ResetBefore).
template <typename Scalar, int I = Eigen::Dynamic, int H = Eigen::Dynamic>
using ResetBeforeGRUCell = GRUCell<Scalar, I, H, GRUVariant::ResetBefore>;

}  // namespace recurrent
