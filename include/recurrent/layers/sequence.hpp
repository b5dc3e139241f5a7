// recurrent — layers/sequence.hpp: a cell unrolled over a batch of variable-length sequences,
// with backpropagation through time.
#pragma once

#include <recurrent/cells/cell.hpp>
#include <recurrent/detail/errors.hpp>
#include <recurrent/detail/fused_step.hpp>
#include <recurrent/detail/gemm.hpp>
#include <recurrent/detail/packed_weights.hpp>
#include <recurrent/detail/reduced_kernel.hpp>
#include <recurrent/detail/schedule.hpp>
#include <recurrent/detail/team.hpp>
#include <recurrent/layers/regularization.hpp>
#include <recurrent/precision.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cstddef>
#include <vector>

namespace recurrent {

/// How Sequence::setThreads counts: at most n threads (one where a step is too small to be
/// worth sharing), or exactly n (at most one per panel of hidden units) whatever the size.
enum class ThreadLimit { AtMost, Exactly };

/// Sequence<Cell> runs a cell over T steps of a batch of B sequences of lengths 1..T.
///
/// Layout (legend: I input size, H hidden size, R rows of h, G gates, T steps, B sequences):
///
///     input    x  I × (T·B)   time-major: step t is the columns [t·B, (t+1)·B)
///     output   y  R × (T·B)   the same layout; zero where t ≥ lengths[b]
///     state       R × B       one column per sequence (LSTM: h R × B and c H × B)
///
/// R = cell.outputSize(): H, or P for an LSTM with a projection (proj_size).
///
/// Sequence b contributes the steps t < lengths[b]; its final state is the state after its own
/// last step (PyTorch's packed-sequence semantics), and nothing of its padding (the input there,
/// or a gradient given there) has any effect.
///
/// How it runs (docs/design.md): the batch is ordered by length once, so that the sequences
/// active at step t are the first n_t columns; internally every step's columns are packed side by
/// side (N = Σ lengths columns in all), so the work is proportional to the real length. The
/// input projection W_ih·x of all steps is ONE GEMM; each step then runs the cell's fused
/// recurrent GEMM on its n_t active columns and the gate math. Backward mirrors it and computes
/// every weight gradient as one GEMM over all steps. Workspaces are kept between calls, so
/// repeated calls of one shape allocate nothing.
///
/// Modes:
///   forward()  training: keeps the tape (tapeScalarsPerStep() per sequence and step)
///   infer()    inference: no tape; memory besides the output does not grow with T
///
/// Initial states are optional: a default-constructed State (every matrix empty) starts from zero.
///
/// Threads: built with OpenMP, one call runs on up to setThreads() threads (default: OpenMP's
/// default), which split the hidden units of every step between them; a shape too small to share
/// runs on one. Results are the same to the last bit for any number of threads. An LSTM with a
/// projection always runs on one thread: its per-step product W_hr·m is a second recurrent
/// product, which the threads' split of the hidden units does not cover. So does a cell with
/// Cell::kSingleThreadStep (the layer-normalised cells: their statistics are over every unit).
///
/// The Sequence refers to its cell, which must outlive it; the cell is only read, so one cell can
/// be shared by many Sequences on many threads. Each Sequence is used by one thread at a time.
template <typename Cell>
class Sequence {
  static_assert(CellContract<Cell>::value,
                "recurrent: Sequence<Cell> needs a type that meets the cell contract "
                "(cells/cell.hpp; see the messages above)");

 public:
  using Scalar = typename Cell::Scalar;                                  ///< float or double
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;  ///< dynamic matrix
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;               ///< dynamic vector
  using State = typename Cell::State;            ///< the cell's LSTMState or HiddenState
  using Parameters = typename Cell::Parameters;  ///< the cell's tensors; also its gradients

  /// A Sequence that runs `cell`, which must outlive it.
  explicit Sequence(const Cell& cell) : m_cell(&cell) {}
  /// A Sequence refers to its cell: a temporary cell would dangle.
  explicit Sequence(const Cell&& cell) = delete;

  /// The cell this Sequence runs.
  const Cell& cell() const { return *m_cell; }

  // ---- forward ---------------------------------------------------------------------------

  /// Training forward from `initial` (R × B, and c H × B; default: zero). Returns the output
  /// (R × T·B) and keeps the tape. Passing the finalState() of the previous chunk carries the
  /// state over (truncated BPTT): no gradient flows back into that chunk.
  const Matrix& forward(const Eigen::Ref<const Matrix>& x, const std::vector<int>& lengths,
                        const State& initial = State()) {
    run(x, lengths, initial, true, "Sequence::forward");
    return m_output;
  }
  /// Inference forward from `initial` (default: zero): no tape, discards any tape kept before.
  const Matrix& infer(const Eigen::Ref<const Matrix>& x, const std::vector<int>& lengths,
                      const State& initial = State()) {
    run(x, lengths, initial, false, "Sequence::infer");
    return m_output;
  }

  /// The output of the last forward or infer call, R × (T·B).
  const Matrix& output() const { return m_output; }
  /// Each sequence's state after its own last step (R × B, and c H × B).
  const State& finalState() const { return m_final; }

  /// Threads for the following calls: up to `threads`, 0 (the default) meaning OpenMP's default
  /// number. A call whose steps are too small to be worth sharing runs on one thread, unless
  /// `limit` is ThreadLimit::Exactly: forward() and infer() below 1.2·10⁶ flops in a step's
  /// recurrent product (2·G·H·H·B), backward() below 2·10⁵ (its products over all steps share
  /// well at smaller steps). Never more than one thread per panel of hidden units. Without OpenMP
  /// every call runs on the calling thread.
  void setThreads(int threads, ThreadLimit limit = ThreadLimit::AtMost) {
    if (threads < 0) detail::fail("Sequence::setThreads: threads must be >= 0, got ", threads);
    m_threads = threads;
    m_exactThreads = limit == ThreadLimit::Exactly;
  }
  /// The `threads` given to setThreads() (0, the default: OpenMP's default number).
  int threads() const { return m_threads; }

  /// Regularisation of the following training calls (layers/regularization.hpp): variational
  /// dropout of x and of h_{t−1}, zoneout of h and c, weight drop of W_hh. infer() uses no mask
  /// and zoneout's expectation. Throws std::invalid_argument for recurrent dropout or weight drop
  /// on a cell whose recurrent products do not all read h_{t−1} (GRU reset-before).
  void setRegularization(const Regularization& options) {
    if (!Cell::kFullGateProducts && (options.recurrentDropout() > 0 || options.weightDrop() > 0)) {
      detail::fail(
          "Sequence::setRegularization: recurrent dropout and weight drop need a cell "
          "whose every recurrent product reads h_{t-1} (not GRU reset-before)");
    }
    m_reg.options = options;
  }
  /// The regularisation set by setRegularization() (default: none).
  const Regularization& regularization() const { return m_reg.options; }
  /// Restarts the masks' generator (std::mt19937_64): the same seed gives the same masks.
  void seed(std::uint64_t seed) { m_reg.generator.seed(seed); }
  /// The masks of the last training forward() (drawn, or given by setMasks()); a mask that was
  /// off is 0 × 0.
  const RecurrentMasks<Scalar>& masks() const { return m_reg.masks; }
  /// The following forward() calls use `masks` instead of drawing them, until clearMasks(). Each
  /// non-empty mask must have the shape of RecurrentMasks (checked by forward()).
  void setMasks(RecurrentMasks<Scalar> masks) {
    m_reg.masks = std::move(masks);
    m_reg.given = true;
  }
  /// Back to drawing the masks from the options and the generator.
  void clearMasks() { m_reg.given = false; }

  /// The precision of infer()'s products from the next call on (Precision: Full, the default;
  /// Int8; BF16). forward() and backward() train in Full only and refuse the others.
  void setPrecision(Precision precision) { setPrecision(precision, precision); }
  /// The same, with the input product W_ih·x in `input`: `precision` or Precision::Full (the
  /// others throw std::invalid_argument, and nothing changes).
  void setPrecision(Precision precision, Precision input) {
    detail::checkInputPrecision("Sequence::setPrecision", precision, input);
    m_precision = precision;
    m_inputPrecision = input;
  }
  /// The precision given to setPrecision() (Precision::Full by default).
  Precision precision() const { return m_precision; }
  /// The input product's precision given to setPrecision() (by default precision()).
  Precision inputPrecision() const { return m_inputPrecision; }

  /// The bytes of `cell`'s weights as infer() packs them in `precision` (W_ih in `input`,
  /// by default the same): W_ih and W_hh (and an LSTM's W_hr, which stays in Scalar) with their
  /// padding, and int8's row scales and row sums.
  static Eigen::Index packedWeightBytes(const Cell& cell, Precision precision) {
    return packedWeightBytes(cell, precision, precision);
  }
  /// The same with W_ih in `input` (`precision` or Precision::Full; the others throw
  /// std::invalid_argument), as setPrecision(precision, input) packs them.
  static Eigen::Index packedWeightBytes(const Cell& cell, Precision precision, Precision input) {
    detail::checkInputPrecision("Sequence::packedWeightBytes", precision, input);
    const Index G = Cell::kGates, H = cell.hiddenSize(), I = cell.inputSize();
    const Index R = cell.outputSize();
    const Index P = detail::GemmTraits<Scalar>::P;
    const Index scalar = sizeof(Scalar);
    const Index projection = R != H ? detail::roundUp(R, P) * H * scalar : 0;
    const auto bytes = [&](Precision p, Index depth) {
      return p == Precision::Full ? G * detail::roundUp(H, P) * depth * scalar
                                  : detail::ReducedMatrix::bytes(p, detail::Blocks{G, H}, depth);
    };
    return bytes(input, I) + bytes(precision, R) + projection;
  }

  /// T, the steps of the last forward or infer call.
  Eigen::Index steps() const { return m_schedule.steps(); }
  /// B, the sequences of the last forward or infer call.
  Eigen::Index batchSize() const { return m_schedule.batch(); }

  /// Scalars the training tape keeps per sequence and step: the copy of the input (I), the gate
  /// activations (G·H), h (R), c (H, LSTM only) and the cell's extra rows (H for GRU and for an
  /// LSTM's projection). Bytes: multiply by sizeof(Scalar); the schedule adds one Eigen::Index
  /// per step. infer() keeps no tape: its memory besides the output does not depend on T.
  /// Regularisation (setRegularization) keeps its masks besides: zoneout's grow with T, R + H
  /// scalars per sequence and step (H only with a cell state) in each of two layouts; the
  /// dropout masks are per sequence, and weight drop keeps two W_hh-sized matrices.
  static Eigen::Index tapeScalarsPerStep(const Cell& cell) {
    return cell.inputSize() + Cell::kGates * cell.hiddenSize() + cell.outputSize() +
           (Cell::kHasCellState ? cell.hiddenSize() : 0) + cell.extraRows();
  }

  /// True after forward() and until the next infer(): backward() can run.
  bool hasTape() const { return m_hasTape; }

  // ---- backward --------------------------------------------------------------------------

  /// Backward from dL/dy (R × T·B; entries in padding are ignored). ADDS the parameter gradients
  /// into `grads`; dL/dx and dL/d(initial state) are then available.
  void backward(const Eigen::Ref<const Matrix>& dOutput, Parameters& grads) {
    runBackward(&dOutput, State(), grads);
  }
  /// Backward from dL/dy and dL/d(final state) (default-constructed: none).
  void backward(const Eigen::Ref<const Matrix>& dOutput, const State& dFinal, Parameters& grads) {
    runBackward(&dOutput, dFinal, grads);
  }
  /// Backward from dL/d(final state) alone.
  void backward(const State& dFinal, Parameters& grads) { runBackward(nullptr, dFinal, grads); }

  /// dL/dx of the last backward, I × (T·B), zero in padding.
  const Matrix& inputGradient() const { return m_dx; }
  /// dL/d(initial state) of the last backward, R × B (and c H × B).
  const State& initialStateGradient() const { return m_dInitial; }

 private:
  using Index = Eigen::Index;
  using Block = Eigen::Block<Matrix, Eigen::Dynamic, Eigen::Dynamic, true>;

  /// Packed columns of the input projection per block of steps in infer() (rounded up to whole
  /// kColumnGrain blocks per thread).
  static constexpr Index kInferenceBlockColumns = 256;
  /// Threads split the columns of the large products in whole blocks of the kernel, so that every
  /// column is computed the same way whatever the number of threads.
  static constexpr Index kColumnGrain = detail::GemmTraits<Scalar>::NC;
  /// A forward step's recurrent product below this many flops runs on one thread; in backward,
  /// below the second (there the weight-gradient and dX products over all steps, which share
  /// well, are a larger part of the call). The measurements behind both: benchmarks/README.md.
  static constexpr double kMinStepFlopsToShare = 1.2e6;
  static constexpr double kMinStepFlopsToShareBackward = 2.0e5;

  // ---- argument checks (before anything changes) ------------------------------------------

  void checkForward(const Eigen::Ref<const Matrix>& x, const std::vector<int>& lengths,
                    const State& initial, bool training, const char* where) const {
    const Cell& cell = *m_cell;
    cell.checkParameters(where);
    detail::checkBatch(where, x.rows(), x.cols(), cell.inputSize(), "the cell's input_size",
                       lengths);
    if (!detail::isEmpty(initial)) {
      detail::checkState(where, "initial state", initial, cell.sizes(),
                         static_cast<Index>(lengths.size()));
    }
    if (training && m_reg.given) {
      const Index B = static_cast<Index>(lengths.size()), TB = x.cols();
      const RecurrentMasks<Scalar>& m = m_reg.masks;
      const auto check = [&](const char* what, const Matrix& mask, Index rows, Index cols) {
        if (mask.size() != 0) detail::checkShape(where, what, mask.rows(), mask.cols(), rows, cols);
      };
      check("input mask", m.input, cell.inputSize(), B);
      check("recurrent mask", m.recurrent, cell.outputSize(), B);
      check("zoneout mask of h", m.zoneoutH, cell.outputSize(), TB);
      check("zoneout mask of c", m.zoneoutC, Cell::kHasCellState ? cell.hiddenSize() : 0, TB);
      check("weight mask", m.weight, cell.parameters().weight_hh.rows(),
            cell.parameters().weight_hh.cols());
      if (!Cell::kFullGateProducts && (m.recurrent.size() != 0 || m.weight.size() != 0)) {
        detail::fail(where,
                     ": recurrent dropout and weight drop need a cell whose every "
                     "recurrent product reads h_{t-1} (not GRU reset-before)");
      }
    }
  }

  void checkBackward(const Eigen::Ref<const Matrix>* dOutput, const State& dFinal,
                     const Parameters& grads) const {
    const char* where = "Sequence::backward";
    detail::checkTrainingPrecision(where, m_precision);
    if (!m_hasTape) {
      detail::fail(
          where, ": needs the tape of a training forward(); ",
          steps() == 0 ? "no forward() has run" : "the last call was infer(), which keeps none");
    }
    const Cell& cell = *m_cell;
    cell.checkParameters(where);
    if (cell.inputSize() != m_x.rows() || cell.outputSize() != m_h0.rows()) {
      detail::fail(where, ": the cell's sizes changed since forward()");
    }
    cell.checkGradients(grads, where);
    if (dOutput != nullptr) {
      detail::checkShape(where, "output gradient", dOutput->rows(), dOutput->cols(),
                         cell.outputSize(), steps() * batchSize());
    }
    if (!detail::isEmpty(dFinal)) {
      detail::checkState(where, "final-state gradient", dFinal, cell.sizes(), batchSize());
    }
  }

  // ---- workspaces and threads ---------------------------------------------------------------

  /// Makes `m` at least rows × cols (same rows), keeping its capacity between calls.
  static void reserve(Matrix& m, Index rows, Index cols) {
    if (m.rows() != rows || m.cols() < cols) m.resize(rows, std::max(cols, Index(1)));
  }
  static void setSize(Matrix& m, Index rows, Index cols) {
    if (m.rows() != rows || m.cols() != cols) m.resize(rows, cols);
  }

  /// True for a cell whose h is projected to other rows than its units (an LSTM with proj_size):
  /// such a cell runs on one thread, and backward keeps dL/dh of every step.
  bool projects() const { return m_cell->outputSize() != m_cell->hiddenSize(); }

  /// The number of threads for steps of `B` columns: never more than there are panels of units;
  /// automatically, one where a step's recurrent product is too small to be worth a barrier.
  int threadsFor(Index B, bool backward) const {
    if (projects()) return 1;  // the projection W_hr·m is a second recurrent product per step
    if (Cell::kSingleThreadStep) return 1;  // the step reads every unit (layer normalisation)
    const Index H = m_cell->hiddenSize();
    const Index panels = (H + detail::GemmTraits<Scalar>::MR - 1) / detail::GemmTraits<Scalar>::MR;
    const double stepFlops = 2.0 * double(Cell::kGates) * double(H) * double(H) * double(B);
    const double minFlops = backward ? kMinStepFlopsToShareBackward : kMinStepFlopsToShare;
    if (!m_exactThreads && stepFlops < minFlops) return 1;
    const int requested = m_threads > 0 ? m_threads : detail::defaultThreads();
    return static_cast<int>(std::max<Index>(1, std::min<Index>(requested, panels)));
  }

  /// One packing buffer per thread, each with room for the widest product it will see.
  void reserveBuffers(int threads) {
    const Index widest =
        std::max({detail::GemmTraits<Scalar>::NC, batchSize(), m_cell->outputSize(),
                  m_cell->hiddenSize(), m_cell->inputSize()});
    if (m_buffers.size() < static_cast<std::size_t>(threads)) {
      m_buffers.resize(static_cast<std::size_t>(threads));
    }
    for (int k = 0; k < threads; ++k) {
      detail::GemmBuffer<Scalar>& buffer = m_buffers[static_cast<std::size_t>(k)];
      buffer.reserve(widest);
      if (m_precision != Precision::Full) {
        buffer.reduced.reserve(std::max(m_cell->inputSize(), m_cell->outputSize()));
      }
    }
  }

  /// This thread's hidden units [u0, u1), in whole kernel panels, and its rows [r0, r1) of
  /// h-shaped matrices: its units, or all of h with a projection (one thread).
  struct Rows {
    Index u0, u1, r0, r1;
  };
  Rows rowsOf(const detail::Team& team) const {
    Rows rows{};
    team.share(m_cell->hiddenSize(), detail::GemmTraits<Scalar>::MR, rows.u0, rows.u1);
    rows.r0 = projects() ? 0 : rows.u0;
    rows.r1 = projects() ? m_cell->outputSize() : rows.u1;
    return rows;
  }

  /// The context of this thread's steps; with `masked`, it applies the recurrent dropout mask.
  StepContext<Scalar> context(const detail::Team& team, const Rows& rows, bool masked = false) {
    const auto k = static_cast<std::size_t>(team.rank);
    StepContext<Scalar> ctx(team, m_weights, detail::Blocks{Cell::kGates, m_cell->hiddenSize()},
                            rows.u0, rows.u1, m_buffers[k]);
    if (masked && m_reg.active && m_reg.dropsRecurrent()) {
      ctx.dropRecurrent(&m_reg.recurrentSorted, &m_maskedH[k]);
    }
    return ctx;
  }

  /// Calls f(col, j) for the packed columns [c0, c1): col is step t's j-th sorted sequence.
  template <typename F>
  void forPackedColumns(Index c0, Index c1, F&& f) const {
    const detail::Schedule& plan = m_schedule;
    for (Index t = 0; t < plan.steps(); ++t) {
      const Index off = plan.offset(t);
      for (Index col = std::max(c0, off); col < std::min(c1, off + plan.active(t)); ++col) {
        f(col, col - off);
      }
    }
  }

  /// Zoneout's backward on this thread's rows [r0, r1): `zoned` = d ⊙ g, g ← (1 − d) ⊙ g.
  template <typename D>
  static void splitZoneout(const D& d, Index r0, Index r1, Block g, Matrix& zoned) {
    const Index rows = r1 - r0;
    zoned.block(r0, 0, rows, g.cols()).array() =
        d.middleRows(r0, rows).array() * g.middleRows(r0, rows).array();
    g.middleRows(r0, rows).array() *= Scalar(1) - d.middleRows(r0, rows).array();
  }

  /// Zoneout of this thread's rows of one step: out = d ⊙ prev + (1 − d) ⊙ own (d ∈ {0, 1} per
  /// entry in training, the rate itself in inference).
  template <typename D>
  static void zoneout(const D& d, Index r0, Index r1, const Block& prev, const Block& own,
                      Block out) {
    for (Index j = 0; j < out.cols(); ++j) {
      const auto dj = d.col(j).segment(r0, r1 - r0).array();
      const auto p = prev.col(j).segment(r0, r1 - r0).array();
      out.col(j).segment(r0, r1 - r0).array() =
          p * dj + own.col(j).segment(r0, r1 - r0).array() * (Scalar(1) - dj);
    }
  }

  /// gates(:, c0:c1) = W_ih · x(:, c0:c1) + folded bias, written in one pass by the kernel.
  void projectInput(const Eigen::Ref<const Matrix>& x, Index c0, Index c1,
                    detail::GemmBuffer<Scalar>& buffer) {
    if (c1 <= c0) return;
    const auto in = detail::viewOf<const Scalar>(x.data(), x.outerStride());
    const auto out =
        detail::viewOf<Scalar>(m_gates.data(), m_gates.outerStride(), m_cell->hiddenSize());
    if (m_weights.inputPrecision != Precision::Full) {  // int8 or bf16: columns [c0, c1)
      auto inPart = in;
      auto outPart = out;
      inPart.data += c0 * in.ld;
      outPart.data += c0 * out.ld;
      detail::reducedGemm(
          detail::ReducedProduct<Scalar>(m_weights.ihReduced, inPart, outPart, c1 - c0)
              .overwrite()
              .plusBias(m_bias.data()),
          buffer.reduced);
      return;
    }
    detail::gemmColumns(
        detail::Product<Scalar>(m_weights.ih, in, out, c1).overwrite().plusBias(m_bias.data()), c0,
        c1, buffer);
  }

  // Views of the cell state (0-row views for cells without one): c_{t−1} of step t, c_t of the
  // step whose packed columns start at `off`, and the two ping-pong buffers of infer().
  Block cellStatePrev(Index t, Index n) {
    if (!Cell::kHasCellState) return m_none.leftCols(0);
    return t == 0 ? m_c0.leftCols(n) : m_cp.middleCols(m_schedule.offset(t - 1), n);
  }
  Block cellStateAt(Index off, Index n) {
    return Cell::kHasCellState ? m_cp.middleCols(off, n) : m_none.leftCols(0);
  }
  Block cellBuffer(int k, Index n) {
    return Cell::kHasCellState ? m_cBuffer[k].leftCols(n) : m_none.leftCols(0);
  }
  Block dcBuffer(int k, Index n) {
    return Cell::kHasCellState ? m_dc[k].leftCols(n) : m_none.leftCols(0);
  }
  Matrix& packedOutput() { return m_schedule.full() ? m_output : m_hp; }

  // ---- the time loops (sequence_impl.hpp) ---------------------------------------------------

  void run(const Eigen::Ref<const Matrix>& x, const std::vector<int>& lengths, const State& initial,
           bool training, const char* where);
  void runTraining(const Eigen::Ref<const Matrix>& x, int threads);
  void runInference(const Eigen::Ref<const Matrix>& x, int threads);
  bool fusedInference(int threads) const;
  void runFusedInference(const Eigen::Ref<const Matrix>& x);
  void inferStep(const StepContext<Scalar>& ctx, Index t, Index gateCol, const Rows& rows);
  void runBackward(const Eigen::Ref<const Matrix>* dOutput, const State& dFinal, Parameters& grads);
  void backwardSteps(const detail::Team& team, const Eigen::Ref<const Matrix>* dOutput,
                     const State& dFinal, const Rows& rows, Matrix& dGh);

  const Cell* m_cell;
  int m_threads = 0;
  Precision m_precision = Precision::Full, m_inputPrecision = Precision::Full;
  bool m_exactThreads = false;

  // The last forward: its schedule and whether it kept a tape.
  detail::Schedule m_schedule;
  bool m_hasTape = false;

  // Forward results and tape (see runTraining and runInference).
  Vector m_bias;
  Matrix m_x, m_gates, m_hp, m_cp, m_extra, m_scratch, m_h0, m_c0;
  Matrix m_hBuffer[2], m_cBuffer[2];
  Matrix m_output;
  State m_final;
  Matrix m_none;

  // The weights packed for the kernel, and one packing buffer per thread.
  detail::PackedWeights<Scalar> m_weights;
  std::vector<detail::GemmBuffer<Scalar>> m_buffers;

  // The fused step of infer() on one sequence (fusedInference), and its F and b_F as built.
  static constexpr bool kFusedStep = detail::hasFusedStep<Cell>();
  std::conditional_t<kFusedStep,
                     std::conditional_t<detail::fixedSizes<Cell>(), detail::FusedStep<Cell>,
                                        detail::DynamicFusedStep<Cell>>,
                     detail::NoFusedStep>
      m_fused;
  typename Cell::Matrix m_fusedF;
  typename Cell::Vector m_fusedB;

  // Backward workspaces and results.
  Matrix m_dGx, m_dGh, m_dh[2], m_dc[2], m_hPrev, m_cPrev, m_dhSteps, m_dxPacked, m_dx;
  Matrix m_gradientTape;

  // Regularisation: options, generator and masks; per thread m ⊙ h; the cell's own h̃, c̃ under
  // zoneout (the tape its backward reads), and the zoned-out part of dh, dc.
  detail::Regularizer<Scalar> m_reg;
  std::vector<Matrix> m_maskedH;
  Matrix m_hOwn, m_cOwn, m_zoneDh, m_zoneDc;
  State m_dInitial;
};

}  // namespace recurrent

#include <recurrent/layers/sequence_impl.hpp>
