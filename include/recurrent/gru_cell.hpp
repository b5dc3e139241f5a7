// recurrent — gru_cell.hpp: the gated recurrent unit, in both of its published variants.
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

/// Where the reset gate acts in the GRU's candidate state n.
enum class GRUVariant {
  /// n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)): the reset gate scales the recurrent
  /// product. PyTorch's nn.GRU, cuDNN, ONNX (linear_before_reset = 1), Keras reset_after=True.
  ResetAfter,
  /// n = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn): the reset gate scales h before the
  /// product. Cho et al. (2014), Keras reset_after=False.
  ResetBefore,
};

/// GRUCell<Scalar, Variant, InputSize, HiddenSize>: the gated recurrent unit of Cho et al. (2014),
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
/// Parameters (see CellParameters), gate blocks stacked by rows in the order r, z, n:
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
/// Sizes: `GRUCell<float>` takes I and H at run time; `GRUCell<float, GRUVariant::ResetAfter,
/// 1, 16>` fixes them at compile time (a default constructor, and Stream's step kernel
/// specialised on the sizes for ResetAfter; see LSTMCell and detail/fused_step.hpp).
template <typename Scalar_, GRUVariant Variant = GRUVariant::ResetAfter,
          int InputSize = Eigen::Dynamic, int HiddenSize = Eigen::Dynamic>
class GRUCell {
  static_assert(InputSize == Eigen::Dynamic || InputSize >= 1,
                "GRUCell: the compile-time input size must be at least 1 (or Eigen::Dynamic)");
  static_assert(HiddenSize == Eigen::Dynamic || HiddenSize >= 1,
                "GRUCell: the compile-time hidden size must be at least 1 (or Eigen::Dynamic)");

 public:
  using Scalar = Scalar_;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  using Parameters = CellParameters<Scalar>;
  using State = HiddenState<Scalar>;

  static constexpr GRUVariant kVariant = Variant;
  static constexpr Eigen::Index kGates = 3;  ///< r, z, n
  static constexpr bool kHasCellState = false;
  static constexpr bool kCellStatesInGradients = false;
  /// ResetAfter: the recurrent side of n gets dA_n ⊙ r, not dA_n, so dGh is its own buffer.
  static constexpr bool kSeparateRecurrentGradient = (Variant == GRUVariant::ResetAfter);
  /// Every recurrent product of a step covers all gates at once (so one thread may pack the
  /// weights densely; see StepContext::multiply).
  static constexpr bool kFullGateProducts = (Variant == GRUVariant::ResetAfter);
  /// The compile-time sizes (Eigen::Dynamic where a size is given at run time).
  static constexpr int kInputSize = InputSize;
  static constexpr int kHiddenSize = HiddenSize;

  /// A cell of the compile-time sizes, parameters zero (fixed-size cells only).
  template <bool Fixed = InputSize != Eigen::Dynamic&& HiddenSize != Eigen::Dynamic,
            std::enable_if_t<Fixed, int> = 0>
  GRUCell() : GRUCell(InputSize, HiddenSize) {}

  /// Where a size is fixed at compile time, the argument must equal it.
  GRUCell(Eigen::Index inputSize, Eigen::Index hiddenSize)
      : m_inputSize(detail::checkSize("GRUCell", "input_size", InputSize, inputSize)),
        m_hiddenSize(detail::checkSize("GRUCell", "hidden_size", HiddenSize, hiddenSize)),
        m_params(kGates, inputSize, hiddenSize) {}

  Eigen::Index inputSize() const { return m_inputSize; }
  Eigen::Index hiddenSize() const { return m_hiddenSize; }
  Eigen::Index outputSize() const { return m_hiddenSize; }

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

  /// extra: ResetAfter keeps m = W_hn h + b_hn, ResetBefore keeps r ⊙ h (H rows each).
  Eigen::Index extraRows() const { return m_hiddenSize; }
  /// scratch: ResetAfter needs W_hh h (3H); ResetBefore needs W_hnᵀ dA_n in backward (H).
  Eigen::Index scratchRows() const {
    return Variant == GRUVariant::ResetAfter ? kGates * m_hiddenSize : m_hiddenSize;
  }

  /// The bias added to W_ih·x before forwardStep(): b_ih plus the part of b_hh that is not
  /// inside the reset product (all of it for ResetBefore; b_hr and b_hz for ResetAfter).
  template <typename Derived>
  void foldedBias(Eigen::MatrixBase<Derived>& bias) const {
    bias = m_params.bias_ih + m_params.bias_hh;
    if (Variant == GRUVariant::ResetAfter) {
      bias.tail(m_hiddenSize) = m_params.bias_ih.tail(m_hiddenSize);
    }
  }

  void forwardStep(const StepContext<Scalar>& ctx, ForwardStep<Scalar>& s) const {
    if constexpr (Variant == GRUVariant::ResetAfter) {
      forwardResetAfter(ctx, s);
    } else {
      forwardResetBefore(ctx, s);
    }
  }

  void backwardStep(const StepContext<Scalar>& ctx, BackwardStep<Scalar>& s) const {
    if constexpr (Variant == GRUVariant::ResetAfter) {
      backwardResetAfter(ctx, s);
    } else {
      backwardResetBefore(ctx, s);
    }
  }

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

  // ---- the fused one-column step (Stream of a fixed-size cell; see detail/fused_step.hpp) --
  // ResetAfter only: A = F·[x; h] + b_F with the candidate's two halves kept apart,
  //
  //     A = [A_r; A_z; A_nx; m],   F = [W_ir W_hr]   b_F = [b_ir + b_hr]
  //                                    [W_iz W_hz]         [b_iz + b_hz]
  //                                    [W_in  0  ]         [b_in       ]
  //                                    [ 0   W_hn]         [b_hn       ]
  //
  // so that n = tanh(A_nx + r ⊙ m). The zero blocks are never multiplied (fusedDepth*).

  static constexpr bool kFusedStep = (Variant == GRUVariant::ResetAfter);
  static constexpr int kFusedBlocks = 4;
  /// Block b reads the depth [fusedDepthBegin, fusedDepthEnd) of [x; h].
  static constexpr int fusedDepthBegin(int block, int I) { return block == 3 ? I : 0; }
  static constexpr int fusedDepthEnd(int block, int I, int H) { return block == 2 ? I : I + H; }

  void fusedProduct(Matrix& f, Vector& b) const {
    const Eigen::Index I = m_inputSize, H = m_hiddenSize;
    const Parameters& p = m_params;
    f.setZero(kFusedBlocks * H, I + H);
    f.topLeftCorner(3 * H, I) = p.weight_ih;
    f.block(0, I, 2 * H, H) = p.weight_hh.topRows(2 * H);
    f.block(3 * H, I, H, H) = p.weight_hh.bottomRows(H);
    b.resize(kFusedBlocks * H);
    b.head(2 * H) = p.bias_ih.head(2 * H) + p.bias_hh.head(2 * H);
    b.segment(2 * H, H) = p.bias_ih.tail(H);
    b.tail(H) = p.bias_hh.tail(H);
  }

  /// r, z, n and h' from A (4H, its first 3H overwritten with r, z, n), for one sequence.
  void fusedGates(Scalar* a, const Scalar* hPrev, const Scalar* /*cPrev*/, Scalar* hOut,
                  Scalar* /*cOut*/) const {
    const Eigen::Index H = hidden();
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
    const Eigen::Index H = m_hiddenSize;
    ctx.multiply(0, kGates, s.hPrev, s.scratch, true);
    const Scalar* bn = m_params.bias_hh.data() + 2 * H;
    for (Eigen::Index j = 0; j < s.gates.cols(); ++j) {
      Scalar* a = detail::column(s.gates, j);
      const Scalar* q = detail::column(s.scratch, j);
      const Scalar* hPrev = detail::column(s.hPrev, j);
      Scalar* mOut = detail::column(s.extra, j);
      Scalar* hOut = detail::column(s.h, j);
      detail::forEachChunk<Scalar>(
          ctx.unitBegin(), ctx.unitEnd(), m_hiddenSize,
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
    const Eigen::Index H = m_hiddenSize;
    for (Eigen::Index j = 0; j < s.gates.cols(); ++j) {
      const Scalar* a = detail::column(s.gates, j);
      const Scalar* mIn = detail::column(s.extra, j);
      const Scalar* hPrev = detail::column(s.hPrev, j);
      const Scalar* dhIn = detail::column(s.dh, j);
      Scalar* dx = detail::column(s.dGx, j);
      Scalar* dr = detail::column(s.dGh, j);
      detail::forEachChunk<Scalar>(
          ctx.unitBegin(), ctx.unitEnd(), m_hiddenSize,
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
          ctx.unitBegin(), ctx.unitEnd(), m_hiddenSize,
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
    const Eigen::Index H = m_hiddenSize;
    ctx.multiply(0, 2, s.hPrev, s.gates, false);
    for (Eigen::Index j = 0; j < s.gates.cols(); ++j) {
      Scalar* a = detail::column(s.gates, j);
      const Scalar* hPrev = detail::column(s.hPrev, j);
      Scalar* rhOut = detail::column(s.extra, j);
      detail::forEachChunk<Scalar>(ctx.unitBegin(), ctx.unitEnd(), m_hiddenSize,
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
      detail::forEachChunk<Scalar>(ctx.unitBegin(), ctx.unitEnd(), m_hiddenSize,
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
    const Eigen::Index H = m_hiddenSize;
    for (Eigen::Index j = 0; j < s.gates.cols(); ++j) {
      const Scalar* a = detail::column(s.gates, j);
      const Scalar* hPrev = detail::column(s.hPrev, j);
      const Scalar* dhIn = detail::column(s.dh, j);
      Scalar* dA = detail::column(s.dGx, j);
      detail::forEachChunk<Scalar>(
          ctx.unitBegin(), ctx.unitEnd(), m_hiddenSize,
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
          ctx.unitBegin(), ctx.unitEnd(), m_hiddenSize,
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
          ctx.unitBegin(), ctx.unitEnd(), m_hiddenSize,
          [&](Eigen::Index k, Eigen::Index n, auto w) RECURRENT_FLATTEN {
            detail::store(dhOut + k, n,
                          detail::load(dhOut + k, n, w) +
                              (detail::load(dRh + k, n, w) * detail::load(a + k, n, w) +
                               detail::load(dhIn + k, n, w) * detail::load(a + H + k, n, w)));
          });
    }
  }

  /// H, a constant where it is fixed at compile time.
  Eigen::Index hidden() const {
    if constexpr (HiddenSize != Eigen::Dynamic) {
      return HiddenSize;
    } else {
      return m_hiddenSize;
    }
  }

  Eigen::Index m_inputSize;
  Eigen::Index m_hiddenSize;
  Parameters m_params;
};

}  // namespace recurrent
