// recurrent — layers/stream.hpp: a cell run one step at a time, for real-time inference.
#pragma once

#include <recurrent/cells/cell.hpp>
#include <recurrent/detail/errors.hpp>
#include <recurrent/detail/fused_step.hpp>
#include <recurrent/detail/gemm.hpp>
#include <recurrent/detail/packed_weights.hpp>
#include <recurrent/detail/reduced_kernel.hpp>
#include <recurrent/detail/reduced_step.hpp>
#include <recurrent/detail/team.hpp>
#include <recurrent/layers/regularization.hpp>
#include <recurrent/precision.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <type_traits>
#include <utility>

namespace recurrent {

/// Stream<Cell> runs a cell one time step per call on a batch of B sequences (often B = 1),
/// keeping the state between calls: the shape of real-time audio, control and streaming
/// inference, where each input arrives after the previous output is needed.
///
///     recurrent::Stream<recurrent::LSTMCell<float>> stream(cell);   // B = 1
///     for (;;) {
///       const Eigen::MatrixXf& h = stream.step(x);   // x: I × 1, h: H × 1
///     }
///
/// The state carried from step to step starts at zero, or at the state given to reset();
/// finalState() is the state after the last step. The cell's weights are packed for the kernel
/// when the Stream is made: call refresh() after changing the cell's parameters. A step allocates
/// nothing and runs on the calling thread. The Stream refers to its cell, which must outlive it.
///
/// A batch of one (LSTM, GRU-ResetAfter, RNN) runs the fused step: every gate as one product
/// over [x; h] with the accumulators in registers (detail/fused_step.hpp). With compile-time
/// sizes (`LSTMCell<float, 1, 16>`) its loops are constants and unroll; with run-time sizes the
/// same kernel reads its bounds from the layout, and the two give the same sums. Its results agree
/// with Sequence's batched kernel to float rounding (the products sum in another order). In int8
/// and bf16 a batch of one of the same cells runs the reduced fused step
/// (detail/reduced_step.hpp), unless the input product is kept in float (setPrecision(p,
/// Precision::Full)). Larger batches, GRU-ResetBefore and the layer-normalised cells use
/// the batched kernel, which reads the weights once for all sequences.
///
/// A model trained with regularisation (Sequence::setRegularization) steps here as
/// Sequence::infer runs it once given the same options (setRegularization): dropout and weight
/// drop are off, zoneout takes its expectation.
template <typename Cell>
class Stream {
  static_assert(CellContract<Cell>::value,
                "recurrent: Stream<Cell> needs a type that meets the cell contract "
                "(cells/cell.hpp; see the messages above)");

 public:
  using Scalar = typename Cell::Scalar;                                  ///< float or double
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;  ///< dynamic matrix
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;               ///< dynamic vector
  using State = typename Cell::State;  ///< the cell's LSTMState or HiddenState
  /// Whether a batch of one runs the fused step kernel.
  static constexpr bool kFusedStep = detail::hasFusedStep<Cell>();
  /// Whether that kernel is specialised on compile-time sizes.
  static constexpr bool kFixedSizes = detail::fixedSizes<Cell>();

  /// A stream of `batch` sequences from a zero state.
  explicit Stream(const Cell& cell, Eigen::Index batch = 1)
      : m_cell(&cell), m_batch(detail::checkPositive("Stream", "batch", batch)) {
    refresh();  // sizes the state and sets it to zero
  }
  /// A Stream refers to its cell: a temporary cell would dangle.
  explicit Stream(const Cell&& cell, Eigen::Index batch = 1) = delete;

  /// Packs the cell's current parameters (after an optimizer step, a load, ...). If the cell's
  /// sizes changed (it was assigned another cell), the state is also set to zero, at the new
  /// sizes. Should it fail (an invalid parameter, std::bad_alloc), the Stream refuses to step
  /// until a refresh() succeeds.
  void refresh();

  /// The precision of the step's products (Precision; default Full), packed at once from the
  /// cell's current parameters (as refresh(), which keeps it; should that fail, the precision is
  /// set but the Stream refuses to step until a refresh() succeeds). In Int8 a step equals
  /// Sequence::infer's at the same precision; in BF16 it agrees to float rounding (a batch of one
  /// sums each product's depth in four interleaved sets, Sequence's input projection over all
  /// steps in one).
  void setPrecision(Precision precision) { setPrecision(precision, precision); }
  /// The same, with the input product W_ih·x in `input`: `precision` or Precision::Full (the
  /// others throw std::invalid_argument, and nothing changes). A batch of one then runs the
  /// batched kernel's two products, not the reduced fused step.
  void setPrecision(Precision precision, Precision input) {
    detail::checkInputPrecision("Stream::setPrecision", precision, input);
    m_precision = precision;
    m_inputPrecision = input;
    refresh();
  }
  /// The precision given to setPrecision() (Precision::Full by default).
  Precision precision() const { return m_precision; }
  /// The input product's precision given to setPrecision() (by default precision()).
  Precision inputPrecision() const { return m_inputPrecision; }

  /// The regularisation the cell was trained with, as given to Sequence::setRegularization. A
  /// Stream infers: dropout and weight drop are off, and zoneout takes its expectation after
  /// every step, h_t = z_h h_{t−1} + (1 − z_h) h̃_t and c_t = z_c c_{t−1} + (1 − z_c) c̃_t, as
  /// Sequence::infer does. Default: none.
  void setRegularization(const Regularization& options) { m_regularization = options; }
  /// The regularisation given to setRegularization() (default: none).
  const Regularization& regularization() const { return m_regularization; }

  /// The next step starts from `initial` (R × B, and c H × B; default-constructed: zero).
  void reset(const State& initial = State()) {
    const bool zero = detail::isEmpty(initial);
    if (!zero) detail::checkState("Stream::reset", "state", initial, m_cell->sizes(), m_batch);
    // Copied before anything changes: `initial` may be this Stream's own finalState().
    State start = zero ? m_cell->zeroState(m_batch) : initial;
    m_state[1] = m_cell->zeroState(m_batch);
    m_state[0] = std::move(start);
    m_current = 0;
  }

  /// One step: x is I × B; returns h (R × B: H, or P for an LSTM with a projection), which
  /// stays valid until the next call.
  const Matrix& step(const Eigen::Ref<const Matrix>& x);

  /// The state after the last step (R × B, and c H × B).
  const State& finalState() const { return m_state[m_current]; }
  /// B, fixed when the Stream is made.
  Eigen::Index batchSize() const { return m_batch; }

 private:
  /// Packs the weights for the batched kernel (B > 1, or a cell without the fused step).
  void packBatched(const Cell& cell) {
    const Eigen::Index G = Cell::kGates, H = cell.hiddenSize();
    // One thread: all gates as one block where the cell allows it (see StepContext::multiply).
    m_weights.packForward(cell, Cell::kFullGateProducts, m_precision, m_inputPrecision);
    m_bias.resize(G * H);
    cell.foldedBias(m_bias);
    m_gates.resize(G * H, m_batch);
    m_extra.resize(cell.extraRows(), m_batch);
    m_scratch.resize(cell.scratchRows(), m_batch);
    m_buffer.reserve(std::max({m_batch, cell.inputSize(), H}));
    if (m_precision != Precision::Full) {
      m_buffer.reduced.reserve(std::max(cell.inputSize(), cell.outputSize()));
    }
  }

  /// A batch of one of a cell that has the fused step and whose h is its hidden state (not an
  /// LSTM's projection) runs the fused step: in float, or in the reduced precision where the
  /// input product is in it too.
  bool fusedShape() const {
    return kFusedStep && m_batch == 1 && m_cell->outputSize() == m_cell->hiddenSize();
  }
  bool fusedApplies() const { return fusedShape() && m_precision == Precision::Full; }
  bool reducedFusedApplies() const {
    return fusedShape() && m_precision != Precision::Full && m_inputPrecision == m_precision;
  }

  /// Zoneout's expectation on the step just made (prev → next), where a rate is set.
  void expectZoneout(const State& prev, State& next) const {
    const auto zh = static_cast<Scalar>(m_regularization.zoneoutH());
    if (zh > 0) next.h = zh * prev.h + (Scalar(1) - zh) * next.h;
    if constexpr (Cell::kHasCellState) {
      const auto zc = static_cast<Scalar>(m_regularization.zoneoutC());
      if (zc > 0) next.c = zc * prev.c + (Scalar(1) - zc) * next.c;
    }
  }

  static Scalar* cellData(State& s) {
    if constexpr (Cell::kHasCellState) {
      return s.c.data();
    } else {
      (void)s;
      return nullptr;
    }
  }

  Eigen::Ref<Matrix> cellState(State& s) {
    if constexpr (Cell::kHasCellState) {
      return s.c;
    } else {
      (void)s;
      return m_none;
    }
  }

  const Cell* m_cell;
  Eigen::Index m_batch;
  Eigen::Index m_inputSize = 0, m_hiddenSize = 0, m_outputSize = 0;  ///< as packed
  bool m_packed = false;                         ///< whether the last refresh() completed
  Precision m_precision = Precision::Full;       ///< of the products (setPrecision)
  Precision m_inputPrecision = Precision::Full;  ///< of W_ih·x (setPrecision)
  Regularization m_regularization;               ///< its zoneout rates (setRegularization)
  detail::PackedWeights<Scalar> m_weights;       ///< for the batched kernel
  detail::GemmBuffer<Scalar> m_buffer;
  Vector m_bias;
  Matrix m_gates, m_extra, m_scratch, m_none;
  State m_state[2];
  int m_current = 0;
  std::conditional_t<
      kFusedStep,
      std::conditional_t<kFixedSizes, detail::FusedStep<Cell>, detail::DynamicFusedStep<Cell>>,
      detail::NoFusedStep>
      m_fused;
  std::conditional_t<kFusedStep, detail::ReducedFusedStep<Cell>, detail::NoFusedStep>
      m_reducedFused;
};

template <typename Cell>
void Stream<Cell>::refresh() {
  const Cell& cell = *m_cell;
  // First: whatever fails below (an invalid parameter, std::bad_alloc), the weights packed before
  // may not be those of the current precision, so the Stream must not step on them.
  m_packed = false;
  cell.checkParameters("Stream::refresh");
  const bool resized = cell.inputSize() != m_inputSize || cell.hiddenSize() != m_hiddenSize ||
                       cell.outputSize() != m_outputSize;
  bool fused = false;
  if constexpr (kFusedStep) {
    if (fusedApplies()) {
      m_fused.pack(cell);
      fused = true;
    } else if (reducedFusedApplies()) {
      m_reducedFused.pack(cell, m_precision);
      fused = true;
    }
  }
  if (!fused) packBatched(cell);
  m_inputSize = cell.inputSize();
  m_hiddenSize = cell.hiddenSize();
  m_outputSize = cell.outputSize();
  if (resized) reset();
  m_packed = true;
}

template <typename Cell>
const typename Stream<Cell>::Matrix& Stream<Cell>::step(const Eigen::Ref<const Matrix>& x) {
  if (!m_packed) detail::fail("Stream::step: the last refresh() failed; call refresh()");
  if (m_cell->inputSize() != m_inputSize || m_cell->hiddenSize() != m_hiddenSize ||
      m_cell->outputSize() != m_outputSize) {
    detail::fail("Stream::step: the cell's sizes changed; call refresh()");
  }
  detail::checkShape("Stream::step", "input", x.rows(), x.cols(), m_inputSize, m_batch);
  m_cell->checkParameters("Stream::step");
  if constexpr (kFusedStep) {
    if (fusedApplies() || reducedFusedApplies()) {
      State& prev = m_state[m_current];
      State& next = m_state[1 - m_current];
      if (fusedApplies()) {
        m_fused.step(*m_cell, x.data(), prev.h.data(), cellData(prev), next.h.data(),
                     cellData(next));
      } else {
        m_reducedFused.step(*m_cell, x.data(), prev.h.data(), cellData(prev), next.h.data(),
                            cellData(next));
      }
      expectZoneout(prev, next);
      m_current = 1 - m_current;
      return next.h;
    }
  }
  const auto in = detail::viewOf<const Scalar>(x.data(), x.outerStride());
  const auto gates = detail::viewOf<Scalar>(m_gates.data(), m_gates.outerStride(), m_hiddenSize);
  if (m_inputPrecision != Precision::Full) {
    detail::reducedGemm(detail::ReducedProduct<Scalar>(m_weights.ihReduced, in, gates, m_batch)
                            .overwrite()
                            .plusBias(m_bias.data()),
                        m_buffer.reduced);
  } else {
    detail::gemm(detail::Product<Scalar>(m_weights.ih, in, gates, m_batch)
                     .overwrite()
                     .plusBias(m_bias.data()),
                 m_buffer);
  }
  State& prev = m_state[m_current];
  State& next = m_state[1 - m_current];
  const detail::Team team;
  const StepContext<Scalar> ctx(team, m_weights, detail::Blocks{Cell::kGates, m_hiddenSize}, 0,
                                m_hiddenSize, m_buffer);
  ForwardStep<Scalar> s{m_gates,         prev.h,  cellState(prev), next.h,
                        cellState(next), m_extra, m_scratch};
  m_cell->forwardStep(ctx, s);
  expectZoneout(prev, next);
  m_current = 1 - m_current;
  return next.h;
}

}  // namespace recurrent
