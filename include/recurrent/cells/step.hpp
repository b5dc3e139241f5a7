// recurrent — cells/step.hpp: what one time step of a cell reads, writes and may call.
//
// A cell's forwardStep() and backwardStep() are the gate math of ONE time step on a batch of n
// sequences (one column each). They work on views into buffers that the driver (Sequence,
// Stream) owns, so a step allocates nothing, and they multiply by the recurrent weights through
// a StepContext, which also tells the step which hidden units are this thread's. Legend:
//
//   n    columns: the sequences active at this step (N: the columns of every step, side by side)
//   G·H  rows of the stacked gates (G = Cell::kGates: 4 LSTM, 3 GRU, 1 RNN)
//   H    hidden size (rows of each gate and of an LSTM's c)
//   R    rows of h: H, or P for an LSTM with a projection
//   E, S the cell's extraRows() and scratchRows()
//
// The driver computes the input projection for every step at once, so a step starts from
// `gates` = W_ih·x + (the biases the cell folds in, Cell::foldedBias()).
#pragma once

#include <recurrent/detail/gemm.hpp>
#include <recurrent/detail/packed_weights.hpp>
#include <recurrent/detail/reduced_kernel.hpp>
#include <recurrent/detail/team.hpp>

#include <Eigen/Core>

namespace recurrent {

/// What a step may use besides its views: the recurrent weights packed for the kernel, and this
/// thread's share of the hidden units. A step computes the rows [g·H + u0, g·H + u1) of every
/// gate g for all n columns, and calls barrier() where it needs the other threads' rows.
template <typename Scalar>
class StepContext {
 public:
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;  ///< dynamic matrix
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;               ///< dynamic vector

  /// `gates` G blocks of H units, of which this thread owns [u0, u1); `weights` packed for
  /// forward (forwardStep) or for backward (backwardStep, accumulateGradients). A cell that
  /// projects its h runs on one thread (u0 = 0, u1 = H).
  StepContext(const detail::Team& team, const detail::PackedWeights<Scalar>& weights,
              detail::Blocks gates, Eigen::Index u0, Eigen::Index u1,
              detail::GemmBuffer<Scalar>& buffer)
      : m_team(team), m_weights(weights), m_gates(gates), m_u0(u0), m_u1(u1), m_buffer(buffer) {}

  Eigen::Index unitBegin() const { return m_u0; }     ///< u0, this thread's first unit
  Eigen::Index unitEnd() const { return m_u1; }       ///< u1, one past this thread's last unit
  Eigen::Index units() const { return m_u1 - m_u0; }  ///< u1 − u0, this thread's units

  /// Waits for every thread of the team.
  void barrier() const { m_team.barrier(); }

  /// Variational dropout of h as the gates read it (Sequence's Regularization::recurrentDropout):
  /// from now on multiply() reads m ⊙ h instead of h and multiplyTransposed() multiplies the rows
  /// it writes by m. `mask` (R × at least n, one column per sequence in the step's order) and
  /// `buffer` (R × at least n, this thread's own) must outlive the context.
  void dropRecurrent(const Matrix* mask, Matrix* buffer) {
    m_hMask = mask;
    m_hMasked = buffer;
  }

  /// C (+)= W_hh[g0:g1] · h for gate blocks [g0, g1) and this thread's units. C is addressed
  /// like a gates buffer: block g starts at row g·H of `c`.
  ///
  /// In a reduced precision (forward inference only) the product is reducedGemm's: h is
  /// quantized (or rounded) column by column at every call.
  ///
  /// One thread may have W_hh packed densely, all gates as one block (no panel is then padded
  /// at a gate's end); the product is then over every gate at once (g0 = 0, g1 = G).
  void multiply(Eigen::Index g0, Eigen::Index g1, const Eigen::Ref<const Matrix>& h,
                Eigen::Ref<Matrix> c, bool overwrite) const {
    const detail::PackedMatrix<Scalar>& w = m_weights.hh;
    if (m_hMask != nullptr) {  // every row of m ⊙ h: the product reads all of them
      m_hMasked->leftCols(h.cols()) = h.cwiseProduct(m_hMask->leftCols(h.cols()));
    }
    const Scalar* hData = m_hMask != nullptr ? m_hMasked->data() : h.data();
    const Eigen::Index hStride = m_hMask != nullptr ? m_hMasked->outerStride() : h.outerStride();
    const auto in = detail::viewOf<const Scalar>(hData, hStride);
    if (m_weights.precision != Precision::Full) {  // int8 or bf16 (inference only)
      const auto out = detail::viewOf<Scalar>(c.data(), c.outerStride(), m_gates.size);
      detail::reducedGemm(detail::ReducedProduct<Scalar>(m_weights.hhReduced, in, out, h.cols())
                              .blocks(g0, g1)
                              .units(m_u0, m_u1)
                              .overwrite(overwrite)
                              .inputInCache(),
                          m_buffer.reduced);
      return;
    }
    if (w.rowBlocks().count == 1 && m_gates.count > 1) {  // dense: every gate as one block
      eigen_assert(g0 == 0 && g1 == m_gates.count && m_u0 == 0 && m_u1 == m_gates.size);
      const auto out = detail::viewOf<Scalar>(c.data(), c.outerStride());
      detail::gemm(detail::Product<Scalar>(w, in, out, h.cols()).overwrite(overwrite), m_buffer);
    } else {
      const auto out = detail::viewOf<Scalar>(c.data(), c.outerStride(), m_gates.size);
      detail::gemm(detail::Product<Scalar>(w, in, out, h.cols())
                       .blocks(g0, g1)
                       .units(m_u0, m_u1)
                       .overwrite(overwrite),
                   m_buffer);
    }
  }

  /// C (+)= W_hh[g0:g1]ᵀ · dA for this thread's units (the rows of C, H × n; with a projection
  /// all P rows of C, P × n); dA is addressed like a gates buffer and only its blocks [g0, g1)
  /// are read.
  void multiplyTransposed(Eigen::Index g0, Eigen::Index g1, const Eigen::Ref<const Matrix>& dA,
                          Eigen::Ref<Matrix> c, bool overwrite) const {
    const bool projected = c.rows() != m_gates.size;  // h has P rows: one thread, all of them
    const auto in = detail::viewOf<const Scalar>(dA.data(), dA.outerStride(), m_gates.size);
    const auto out = detail::viewOf<Scalar>(c.data(), c.outerStride());
    detail::gemm(detail::Product<Scalar>(m_weights.hhT, in, out, dA.cols())
                     .units(projected ? 0 : m_u0, projected ? c.rows() : m_u1)
                     .depthBlocks(g0, g1)
                     .overwrite(overwrite),
                 m_buffer);
    if (m_hMask != nullptr) {  // d(m ⊙ h)/dh = m, on the rows this product wrote
      eigen_assert(overwrite);
      const Eigen::Index r0 = projected ? 0 : m_u0, r1 = projected ? c.rows() : m_u1;
      c.middleRows(r0, r1 - r0).array() *= m_hMask->block(r0, 0, r1 - r0, c.cols()).array();
    }
  }

  /// dW[g0:g1] += dG[g0:g1] · inᵀ over all columns, for this thread's units: a weight gradient
  /// without a bias (the layer-normalised cells, whose biases come after the normalisation).
  void addProductTransposed(Eigen::Index g0, Eigen::Index g1, const Eigen::Ref<const Matrix>& dG,
                            const Eigen::Ref<const Matrix>& in, Eigen::Ref<Matrix> dW) const {
    const auto a = detail::viewOf<const Scalar>(dG.data(), dG.outerStride(), m_gates.size);
    const auto b = detail::transposedViewOf<const Scalar>(in.data(), in.outerStride());
    const auto out = detail::viewOf<Scalar>(dW.data(), dW.outerStride(), m_gates.size);
    detail::gemmUnpacked(detail::UnpackedProduct<Scalar>(a, m_gates, dG.cols(), b, out, in.rows())
                             .blocks(g0, g1)
                             .units(m_u0, m_u1),
                         m_buffer);
  }

  /// dW[g0:g1] += dG[g0:g1] · inᵀ and db[g0:g1] += Σ_columns dG[g0:g1] over all columns, for
  /// this thread's units: a weight gradient and its bias as one product over every step. dG,
  /// dW and db are addressed like gates buffers.
  void addProductTransposed(Eigen::Index g0, Eigen::Index g1, const Eigen::Ref<const Matrix>& dG,
                            const Eigen::Ref<const Matrix>& in, Eigen::Ref<Matrix> dW,
                            Eigen::Ref<Vector> db) const {
    const auto a = detail::viewOf<const Scalar>(dG.data(), dG.outerStride(), m_gates.size);
    const auto b = detail::transposedViewOf<const Scalar>(in.data(), in.outerStride());
    const auto out = detail::viewOf<Scalar>(dW.data(), dW.outerStride(), m_gates.size);
    detail::gemmUnpacked(detail::UnpackedProduct<Scalar>(a, m_gates, dG.cols(), b, out, in.rows())
                             .blocks(g0, g1)
                             .units(m_u0, m_u1)
                             .sumRowsInto(db.data()),
                         m_buffer);
  }

  /// h = W_hr · m (P × n from H × n): the projection of a step, all rows (one thread).
  void project(const Eigen::Ref<const Matrix>& m, Eigen::Ref<Matrix> h) const {
    eigen_assert(m_u0 == 0 && m_u1 == m_gates.size);
    const auto in = detail::viewOf<const Scalar>(m.data(), m.outerStride());
    const auto out = detail::viewOf<Scalar>(h.data(), h.outerStride());
    detail::gemm(detail::Product<Scalar>(m_weights.hr, in, out, m.cols()).overwrite(), m_buffer);
  }

  /// dm = W_hrᵀ · dh (H × n from P × n): a step's gradient back through the projection.
  void projectTransposed(const Eigen::Ref<const Matrix>& dh, Eigen::Ref<Matrix> dm) const {
    eigen_assert(m_u0 == 0 && m_u1 == m_gates.size);
    const auto in = detail::viewOf<const Scalar>(dh.data(), dh.outerStride());
    const auto out = detail::viewOf<Scalar>(dm.data(), dm.outerStride());
    detail::gemm(detail::Product<Scalar>(m_weights.hrT, in, out, dh.cols()).overwrite(), m_buffer);
  }

  /// dW_hr += dH · Mᵀ over all columns (P × H): the projection's gradient as one product.
  void addProjectionGradient(const Eigen::Ref<const Matrix>& dH, const Eigen::Ref<const Matrix>& m,
                             Eigen::Ref<Matrix> dW) const {
    eigen_assert(m_u0 == 0 && m_u1 == m_gates.size);
    const auto a = detail::viewOf<const Scalar>(dH.data(), dH.outerStride());
    const auto b = detail::transposedViewOf<const Scalar>(m.data(), m.outerStride());
    const auto out = detail::viewOf<Scalar>(dW.data(), dW.outerStride());
    detail::gemmUnpacked(detail::UnpackedProduct<Scalar>(a, detail::Blocks{1, dH.rows()}, dH.cols(),
                                                         b, out, m.rows()),
                         m_buffer);
  }

 private:
  const detail::Team& m_team;
  const detail::PackedWeights<Scalar>& m_weights;
  detail::Blocks m_gates;
  Eigen::Index m_u0, m_u1;
  detail::GemmBuffer<Scalar>& m_buffer;
  const Matrix* m_hMask = nullptr;  // recurrent dropout: m (sorted columns), or none
  Matrix* m_hMasked = nullptr;      // m ⊙ h of the step, this thread's buffer
};

/// What forwardStep() reads and writes. Views may be 0 × n where a cell does not use them.
template <typename Scalar>
struct ForwardStep {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;  ///< dynamic matrix
  Eigen::Ref<Matrix> gates;        ///< G·H × n   in: W_ih·x + folded bias; out: gate activations
  Eigen::Ref<const Matrix> hPrev;  ///< R × n     h_{t-1}
  Eigen::Ref<const Matrix> cPrev;  ///< H × n     c_{t-1} (LSTM only)
  Eigen::Ref<Matrix> h;            ///< R × n     out: h_t
  Eigen::Ref<Matrix> c;            ///< H × n     out: c_t (LSTM only)
  Eigen::Ref<Matrix> extra;        ///< E × n     out: the cell's own tape
  Eigen::Ref<Matrix> scratch;      ///< S × n     working memory
};

/// What backwardStep() reads and writes: the tape of the step, the gradients flowing
/// into it, and the gradients it produces.
template <typename Scalar>
struct BackwardStep {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;  ///< dynamic matrix
  Eigen::Ref<const Matrix> gates;  ///< G·H × n   gate activations of the forward step
  Eigen::Ref<const Matrix> extra;  ///< E × n     the forward step's `extra`
  Eigen::Ref<const Matrix> hPrev;  ///< R × n     h_{t-1}
  Eigen::Ref<const Matrix> cPrev;  ///< H × n     c_{t-1} (LSTM only)
  Eigen::Ref<const Matrix> h;      ///< R × n     h_t
  Eigen::Ref<const Matrix> c;      ///< H × n     c_t (LSTM only)
  Eigen::Ref<const Matrix> dh;     ///< R × n     dL/dh_t, from the output and from step t+1
  Eigen::Ref<const Matrix> dc;     ///< H × n     dL/dc_t from step t+1 (LSTM only)
  Eigen::Ref<Matrix> dGx;          ///< G·H × n   out: dL/d(W_ih·x + b_ih)
  Eigen::Ref<Matrix> dGh;          ///< G·H × n   out: dL/d(W_hh·h + b_hh), may be dGx itself
  Eigen::Ref<Matrix> dhPrev;       ///< R × n     out: dL/dh_{t-1}
  Eigen::Ref<Matrix> dcPrev;       ///< H × n     out: dL/dc_{t-1} (LSTM only)
  Eigen::Ref<Matrix> scratch;      ///< S × n     working memory
  /// D × n   out: the cell's backward tape (D = gradientRows(), 0 for most cells), kept for
  /// accumulateGradients()
  Eigen::Ref<Matrix> gradientTape;
};

/// What a cell's accumulateGradients() reads after the backward time loop: every step's values
/// side by side in packed columns (N = the sum of the sequence lengths).
template <typename Scalar>
struct StepsGradients {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;  ///< dynamic matrix
  Eigen::Ref<const Matrix> x;      ///< I × N     the inputs x_t
  Eigen::Ref<const Matrix> hPrev;  ///< R × N     h_{t-1} of each step
  Eigen::Ref<const Matrix> extra;  ///< E × N     each step's `extra`
  Eigen::Ref<const Matrix> dGx;    ///< G·H × N   each step's dGx
  Eigen::Ref<const Matrix> dGh;    ///< G·H × N   each step's dGh
  Eigen::Ref<const Matrix> c;      ///< H × N     c_t of each step (LSTM; else 0 rows)
  /// H × N c_{t-1} of each step, for cells with kCellStatesInGradients; else 0 × 0.
  Eigen::Ref<const Matrix> cPrev;
  /// R × N dL/dh_t of each step (all of it: from the output and from step t+1), for a cell
  /// whose h is projected (outputSize() != hiddenSize()); else 0 × 0.
  Eigen::Ref<const Matrix> dh;
  /// D × N every step's gradientTape (D = gradientRows(); 0 rows for most cells).
  Eigen::Ref<const Matrix> gradientTape;
};

namespace detail {

/// The input side of every cell's parameter gradients, for this thread's units:
///   dW_ih += dGx · Xᵀ    db_ih += Σ_columns dGx   (one pass over dGx)
template <typename Scalar, typename Parameters>
void accumulateInputGradients(const StepContext<Scalar>& ctx, Eigen::Index gates,
                              const StepsGradients<Scalar>& steps, Parameters& grads) {
  ctx.addProductTransposed(0, gates, steps.dGx, steps.x, grads.weight_ih, grads.bias_ih);
}

/// The recurrent side, where every gate sees h_{t-1}:
///   dW_hh += dGh · H_prevᵀ    db_hh += Σ_columns dGh
template <typename Scalar, typename Parameters>
void accumulateRecurrentGradients(const StepContext<Scalar>& ctx, Eigen::Index gates,
                                  const StepsGradients<Scalar>& steps, Parameters& grads) {
  ctx.addProductTransposed(0, gates, steps.dGh, steps.hPrev, grads.weight_hh, grads.bias_hh);
}

}  // namespace detail
}  // namespace recurrent
