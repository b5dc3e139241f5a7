// recurrent — sequence.hpp: a cell unrolled over a batch of variable-length sequences,
// with backpropagation through time.
#pragma once

#include <recurrent/detail/errors.hpp>
#include <recurrent/step.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cstddef>
#include <type_traits>
#include <vector>

namespace recurrent {

/// Sequence<Cell> runs a cell over T steps of a batch of B sequences of lengths 1..T.
///
/// Layout (legend: I input size, H hidden size, G gates, T steps, B sequences):
///
///     input    x  I × (T·B)   time-major: step t is the columns [t·B, (t+1)·B)
///     output   y  H × (T·B)   the same layout; zero where t ≥ lengths[b]
///     state       H × B       one column per sequence (LSTM: h and c)
///
/// Sequence b contributes the steps t < lengths[b]; its final state is the state after its
/// own last step (PyTorch's packed-sequence semantics), and nothing of its padding (the
/// input there, or a gradient given there) has any effect.
///
/// How it runs (see docs/design.md): the batch is ordered by length once, so that the
/// sequences active at step t are the first n_t columns; internally every step's columns are
/// packed side by side (N = Σ lengths columns in all), so the work is proportional to the
/// real length. The input projection W_ih·x of all steps is ONE GEMM; each step then runs
/// the cell's fused recurrent GEMM on its n_t active columns and the gate math. Backward
/// mirrors it and computes every weight gradient as one GEMM over all steps. Workspaces
/// are kept between calls, so repeated calls of one shape allocate nothing.
///
/// Modes:
///   forward()  training: keeps the tape (O(N·(G+2)·H) scalars) for backward()
///   infer()    inference: no tape; memory besides the output does not grow with T
///
/// The Sequence refers to its cell, which must outlive it; the cell is only read, so one
/// cell can be shared by many Sequences on many threads. Each Sequence is used by one
/// thread at a time.
template <typename Cell>
class Sequence {
 public:
  using Scalar = typename Cell::Scalar;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  using State = typename Cell::State;
  using Parameters = typename Cell::Parameters;

  explicit Sequence(const Cell& cell) : m_cell(&cell) {}
  /// A Sequence refers to its cell: a temporary cell would dangle.
  explicit Sequence(const Cell&& cell) = delete;

  const Cell& cell() const { return *m_cell; }

  // ---- forward ---------------------------------------------------------------------------

  /// Training forward from a zero state. Returns the output (H × T·B); keeps the tape.
  const Matrix& forward(const Eigen::Ref<const Matrix>& x, const std::vector<int>& lengths) {
    run(x, lengths, nullptr, true, "Sequence::forward");
    return m_output;
  }
  /// Training forward from `initial` (H × B each). Passing the finalState() of the previous
  /// chunk carries the state over (truncated BPTT): no gradient flows back into that chunk.
  const Matrix& forward(const Eigen::Ref<const Matrix>& x, const std::vector<int>& lengths,
                        const State& initial) {
    run(x, lengths, &initial, true, "Sequence::forward");
    return m_output;
  }
  /// Inference forward from a zero state: no tape, discards any tape kept before.
  const Matrix& infer(const Eigen::Ref<const Matrix>& x, const std::vector<int>& lengths) {
    run(x, lengths, nullptr, false, "Sequence::infer");
    return m_output;
  }
  const Matrix& infer(const Eigen::Ref<const Matrix>& x, const std::vector<int>& lengths,
                      const State& initial) {
    run(x, lengths, &initial, false, "Sequence::infer");
    return m_output;
  }

  /// The output of the last forward or infer call, H × (T·B).
  const Matrix& output() const { return m_output; }
  /// Each sequence's state after its own last step (H × B each).
  const State& finalState() const { return m_final; }

  Eigen::Index steps() const { return m_T; }
  Eigen::Index batchSize() const { return m_B; }
  /// True after forward() and until the next infer(): backward() can run.
  bool hasTape() const { return m_hasTape; }

  // ---- backward --------------------------------------------------------------------------

  /// Backward from dL/dy (H × T·B; entries in padding are ignored). ADDS the parameter
  /// gradients into `grads`; dL/dx and dL/d(initial state) are then available.
  void backward(const Eigen::Ref<const Matrix>& dOutput, Parameters& grads) {
    runBackward(&dOutput, nullptr, grads);
  }
  /// Backward from dL/dy and dL/d(final state).
  void backward(const Eigen::Ref<const Matrix>& dOutput, const State& dFinal, Parameters& grads) {
    runBackward(&dOutput, &dFinal, grads);
  }
  /// Backward from dL/d(final state) alone.
  void backward(const State& dFinal, Parameters& grads) { runBackward(nullptr, &dFinal, grads); }

  /// dL/dx of the last backward, I × (T·B), zero in padding.
  const Matrix& inputGradient() const { return m_dx; }
  /// dL/d(initial state) of the last backward, H × B each.
  const State& initialStateGradient() const { return m_dInitial; }

 private:
  static constexpr Eigen::Index kInferenceChunkColumns =
      256;  ///< input-projection block in infer()

  using Index = Eigen::Index;
  using Block = Eigen::Block<Matrix, Eigen::Dynamic, Eigen::Dynamic, true>;

  // ---- argument checks (before anything changes) ------------------------------------------

  void checkForward(const Eigen::Ref<const Matrix>& x, const std::vector<int>& lengths,
                    const State* initial, const char* where) const {
    const Cell& cell = *m_cell;
    cell.checkParameters(where);
    if (lengths.empty()) {
      detail::fail(where, ": lengths must hold one length per sequence (B >= 1), got none");
    }
    const Index B = static_cast<Index>(lengths.size());
    if (x.rows() != cell.inputSize()) {
      detail::fail(where, ": input must have ", cell.inputSize(),
                   " rows (the cell's input_size), got ", x.rows());
    }
    if (x.cols() == 0 || x.cols() % B != 0) {
      detail::fail(where, ": input must have T·B columns with T >= 1 and B = ", B,
                   " (lengths.size()), got ", x.cols(), " columns");
    }
    const Index T = x.cols() / B;
    for (std::size_t b = 0; b < lengths.size(); ++b) {
      if (lengths[b] < 1 || lengths[b] > T) {
        detail::fail(where, ": lengths[", b, "] must be in 1..", T,
                     " (T = input columns / B), got ", lengths[b]);
      }
    }
    if (initial != nullptr) {
      detail::checkShape(where, "initial state h", initial->h.rows(), initial->h.cols(),
                         cell.outputSize(), B);
      if constexpr (Cell::kHasCellState) {
        detail::checkShape(where, "initial state c", initial->c.rows(), initial->c.cols(),
                           cell.hiddenSize(), B);
      }
    }
  }

  void checkBackward(const Eigen::Ref<const Matrix>* dOutput, const State* dFinal,
                     const Parameters& grads) const {
    const char* where = "Sequence::backward";
    if (!m_hasTape) {
      detail::fail(
          where, ": needs the tape of a training forward(); ",
          m_T == 0 ? "no forward() has run" : "the last call was infer(), which keeps none");
    }
    const Cell& cell = *m_cell;
    cell.checkParameters(where);
    if (cell.inputSize() != m_x.rows() || cell.outputSize() != m_h0.rows()) {
      detail::fail(where, ": the cell's sizes changed since forward()");
    }
    grads.checkShape(Cell::kGates, cell.inputSize(), cell.hiddenSize(), where, "gradient");
    if (dOutput != nullptr) {
      detail::checkShape(where, "output gradient", dOutput->rows(), dOutput->cols(),
                         cell.outputSize(), m_T * m_B);
    }
    if (dFinal != nullptr) {
      detail::checkShape(where, "final-state gradient h", dFinal->h.rows(), dFinal->h.cols(),
                         cell.outputSize(), m_B);
      if constexpr (Cell::kHasCellState) {
        detail::checkShape(where, "final-state gradient c", dFinal->c.rows(), dFinal->c.cols(),
                           cell.hiddenSize(), m_B);
      }
    }
  }

  // ---- workspace helpers ----------------------------------------------------------------

  /// Makes `m` at least rows × cols (same rows), keeping its capacity between calls.
  static void reserve(Matrix& m, Index rows, Index cols) {
    if (m.rows() != rows || m.cols() < cols) m.resize(rows, std::max(cols, Index(1)));
  }
  static void setSize(Matrix& m, Index rows, Index cols) {
    if (m.rows() != rows || m.cols() != cols) m.resize(rows, cols);
  }

  /// Orders the batch by length (descending, stable; a counting sort, no allocation after the
  /// first call) and derives n_t (active sequences at step t) and each step's packed offset.
  void schedule(const std::vector<int>& lengths, Index T) {
    const Index B = static_cast<Index>(lengths.size());
    m_T = T;
    m_B = B;
    m_count.assign(static_cast<std::size_t>(T + 2), 0);
    for (int len : lengths) ++m_count[static_cast<std::size_t>(len)];
    // m_count[len] becomes the first sorted position of length len (longest first).
    Index position = 0;
    for (Index len = T; len >= 1; --len) {
      const Index c = m_count[static_cast<std::size_t>(len)];
      m_count[static_cast<std::size_t>(len)] = position;
      position += c;
    }
    m_order.resize(static_cast<std::size_t>(B));
    m_sortedLengths.resize(static_cast<std::size_t>(B));
    for (Index b = 0; b < B; ++b) {
      const int len = lengths[static_cast<std::size_t>(b)];
      const Index j = m_count[static_cast<std::size_t>(len)]++;
      m_order[static_cast<std::size_t>(j)] = b;
      m_sortedLengths[static_cast<std::size_t>(j)] = len;
    }
    m_active.resize(static_cast<std::size_t>(T));
    m_offset.resize(static_cast<std::size_t>(T + 1));
    Index n = B;
    m_offset[0] = 0;
    for (Index t = 0; t < T; ++t) {
      while (n > 0 && m_sortedLengths[static_cast<std::size_t>(n - 1)] <= t) --n;
      m_active[static_cast<std::size_t>(t)] = n;
      m_offset[static_cast<std::size_t>(t + 1)] = m_offset[static_cast<std::size_t>(t)] + n;
    }
    m_N = m_offset[static_cast<std::size_t>(T)];
    m_full = (m_N == T * B);
  }

  Index active(Index t) const { return m_active[static_cast<std::size_t>(t)]; }
  Index offset(Index t) const { return m_offset[static_cast<std::size_t>(t)]; }
  Index order(Index j) const { return m_order[static_cast<std::size_t>(j)]; }

  /// Copies the active columns of steps [t0, t1) of x into `packed` (I × columns).
  void gather(const Eigen::Ref<const Matrix>& x, Index t0, Index t1, Matrix& packed) const {
    Index col = 0;
    for (Index t = t0; t < t1; ++t) {
      for (Index j = 0; j < active(t); ++j) packed.col(col++) = x.col(t * m_B + order(j));
    }
  }

  /// gates(:, 0:cols) = W_ih · x + folded bias, the bias written first so the GEMM adds into it.
  template <typename XBlock>
  void projectInput(const XBlock& x, Index cols) {
    Block gates = m_gates.leftCols(cols);
    for (Index j = 0; j < cols; ++j) gates.col(j) = m_bias;
    gates.noalias() += m_cell->parameters().weight_ih * x;
  }

  // ---- the forward time loop ----------------------------------------------------------------

  void run(const Eigen::Ref<const Matrix>& x, const std::vector<int>& lengths, const State* initial,
           bool training, const char* where) {
    checkForward(x, lengths, initial, where);
    const Cell& cell = *m_cell;
    const Index B = static_cast<Index>(lengths.size());
    const Index T = x.cols() / B;
    const Index H = cell.outputSize();
    const Index C = cell.hiddenSize();  // rows of the cell state c
    const Index GH = Cell::kGates * cell.hiddenSize();
    m_hasTape = false;
    schedule(lengths, T);

    // The initial state, in sorted order (copied first: `initial` may be our own finalState()).
    setSize(m_h0, H, B);
    if constexpr (Cell::kHasCellState) setSize(m_c0, C, B);
    if (initial != nullptr) {
      for (Index j = 0; j < B; ++j) {
        m_h0.col(j) = initial->h.col(order(j));
        if constexpr (Cell::kHasCellState) m_c0.col(j) = initial->c.col(order(j));
      }
    } else {
      m_h0.setZero();
      if constexpr (Cell::kHasCellState) m_c0.setZero();
    }
    setSize(m_final.h, H, B);
    if constexpr (Cell::kHasCellState) setSize(m_final.c, C, B);
    setSize(m_output, H, T * B);
    if (!m_full) m_output.setZero();
    m_bias.resize(GH);
    cell.foldedBias(m_bias);
    reserve(m_scratch, cell.scratchRows(), B);

    if (training) {
      runTraining(x);
      m_hasTape = true;
    } else {
      runInference(x);
    }
  }

  /// Training: every step's columns packed side by side, kept as the tape.
  ///   m_x      I × N      inputs
  ///   m_gates  G·H × N    gate activations
  ///   hp       H × N      h_t (the output itself when no sequence is padded)
  ///   m_cp     H × N      c_t (LSTM)
  ///   m_extra  extra × N  the cell's extra tape
  void runTraining(const Eigen::Ref<const Matrix>& x) {
    const Cell& cell = *m_cell;
    const Index H = cell.outputSize();
    const Index N = m_N;
    reserve(m_x, cell.inputSize(), N);
    if (m_full) {
      m_x.leftCols(N) = x;
    } else {
      gather(x, 0, m_T, m_x);
    }
    reserve(m_gates, Cell::kGates * cell.hiddenSize(), N);
    projectInput(m_x.leftCols(N), N);
    if (!m_full) reserve(m_hp, H, N);
    Matrix& hp = packedOutput();
    if constexpr (Cell::kHasCellState) reserve(m_cp, cell.hiddenSize(), N);
    reserve(m_extra, cell.extraRows(), N);

    for (Index t = 0; t < m_T; ++t) {
      const Index n = active(t);
      const Index off = offset(t);
      ForwardStep<Scalar> s{
          m_gates.middleCols(off, n), t == 0 ? m_h0.leftCols(n) : hp.middleCols(offset(t - 1), n),
          cellStatePrev(t, n),        hp.middleCols(off, n),
          cellStateAt(off, n),        m_extra.middleCols(off, n),
          m_scratch.leftCols(n)};
      cell.forwardStep(s);
    }

    for (Index j = 0; j < m_B; ++j) {
      const Index col = offset(m_sortedLengths[static_cast<std::size_t>(j)] - 1) + j;
      m_final.h.col(order(j)) = hp.col(col);
      if constexpr (Cell::kHasCellState) m_final.c.col(order(j)) = m_cp.col(col);
    }
    if (!m_full) {
      for (Index t = 0; t < m_T; ++t) {
        for (Index j = 0; j < active(t); ++j) {
          m_output.col(t * m_B + order(j)) = hp.col(offset(t) + j);
        }
      }
    }
  }

  /// Inference: the input projection in blocks of about kInferenceChunkColumns columns, the
  /// state in two ping-pong buffers (or, with no padding, read back from the output itself).
  void runInference(const Eigen::Ref<const Matrix>& x) {
    const Cell& cell = *m_cell;
    const Index H = cell.outputSize();
    const Index C = cell.hiddenSize();
    const Index capacity = std::max(kInferenceChunkColumns, m_B);
    reserve(m_gates, Cell::kGates * cell.hiddenSize(), capacity);
    if (!m_full) {
      reserve(m_x, cell.inputSize(), capacity);
      for (Matrix& buffer : m_hBuffer) reserve(buffer, H, m_B);
    }
    if constexpr (Cell::kHasCellState) {
      for (Matrix& buffer : m_cBuffer) reserve(buffer, C, m_B);
    }
    reserve(m_extra, cell.extraRows(), m_B);

    Index t0 = 0;
    while (t0 < m_T) {
      // Steps [t0, t1) whose columns fit the block (at least one step).
      Index t1 = t0 + 1;
      while (t1 < m_T && offset(t1 + 1) - offset(t0) <= capacity) ++t1;
      const Index cols = offset(t1) - offset(t0);
      if (m_full) {
        projectInput(x.middleCols(t0 * m_B, cols), cols);
      } else {
        gather(x, t0, t1, m_x);
        projectInput(m_x.leftCols(cols), cols);
      }
      for (Index t = t0; t < t1; ++t) inferStep(t, offset(t) - offset(t0));
      t0 = t1;
    }
  }

  void inferStep(Index t, Index gateCol) {
    const Index n = active(t);
    Block hNext = m_full ? m_output.middleCols(t * m_B, m_B) : m_hBuffer[t & 1].leftCols(n);
    Block hPrev = t == 0 ? m_h0.leftCols(n)
                         : (m_full ? m_output.middleCols((t - 1) * m_B, m_B)
                                   : m_hBuffer[(t - 1) & 1].leftCols(n));
    ForwardStep<Scalar> s{m_gates.middleCols(gateCol, n),
                          hPrev,
                          inferCellPrev(t, n),
                          hNext,
                          inferCellNext(t, n),
                          m_extra.leftCols(n),
                          m_scratch.leftCols(n)};
    m_cell->forwardStep(s);
    if (!m_full) {
      for (Index j = 0; j < n; ++j) m_output.col(t * m_B + order(j)) = hNext.col(j);
    }
    // Sequences whose last step this is: columns [n_{t+1}, n_t).
    const Index ending = t + 1 < m_T ? active(t + 1) : 0;
    for (Index j = ending; j < n; ++j) {
      m_final.h.col(order(j)) = hNext.col(j);
      if constexpr (Cell::kHasCellState) m_final.c.col(order(j)) = m_cBuffer[t & 1].col(j);
    }
  }

  Matrix& packedOutput() { return m_full ? m_output : m_hp; }
  const Matrix& packedOutput() const { return m_full ? m_output : m_hp; }

  // Views of the cell state; 0-row views for cells without one.
  Block cellStatePrev(Index t, Index n) {
    if constexpr (Cell::kHasCellState) {
      return t == 0 ? m_c0.leftCols(n) : m_cp.middleCols(offset(t - 1), n);
    } else {
      (void)t;
      (void)n;
      return m_none.leftCols(0);
    }
  }
  Block cellStateAt(Index off, Index n) {
    if constexpr (Cell::kHasCellState) {
      return m_cp.middleCols(off, n);
    } else {
      (void)off;
      (void)n;
      return m_none.leftCols(0);
    }
  }
  Block inferCellPrev(Index t, Index n) {
    if constexpr (Cell::kHasCellState) {
      return t == 0 ? m_c0.leftCols(n) : m_cBuffer[(t - 1) & 1].leftCols(n);
    } else {
      (void)t;
      (void)n;
      return m_none.leftCols(0);
    }
  }
  Block inferCellNext(Index t, Index n) {
    if constexpr (Cell::kHasCellState) {
      return m_cBuffer[t & 1].leftCols(n);
    } else {
      (void)t;
      (void)n;
      return m_none.leftCols(0);
    }
  }

  // ---- the backward time loop ---------------------------------------------------------------

  void runBackward(const Eigen::Ref<const Matrix>* dOutput, const State* dFinal,
                   Parameters& grads) {
    checkBackward(dOutput, dFinal, grads);
    const Cell& cell = *m_cell;
    const Index H = cell.outputSize();
    const Index C = cell.hiddenSize();
    const Index GH = Cell::kGates * cell.hiddenSize();
    const Index N = m_N;
    const Index B = m_B;
    Matrix& hp = packedOutput();

    reserve(m_dGx, GH, N);
    if constexpr (Cell::kSeparateRecurrentGradient) reserve(m_dGh, GH, N);
    Matrix& dGh = Cell::kSeparateRecurrentGradient ? m_dGh : m_dGx;
    for (Matrix& buffer : m_dh) setSize(buffer, H, B);
    if constexpr (Cell::kHasCellState) {
      for (Matrix& buffer : m_dc) setSize(buffer, C, B);
    }
    // Both ping-pong buffers start as dL/d(final state): a sequence's column is first read at
    // its own last step and untouched before, whichever buffer is current then.
    for (int k = 0; k < 2; ++k) {
      if (dFinal != nullptr) {
        for (Index j = 0; j < B; ++j) {
          m_dh[k].col(j) = dFinal->h.col(order(j));
          if constexpr (Cell::kHasCellState) m_dc[k].col(j) = dFinal->c.col(order(j));
        }
      } else {
        m_dh[k].setZero();
        if constexpr (Cell::kHasCellState) m_dc[k].setZero();
      }
    }

    int cur = 0;
    for (Index t = m_T - 1; t >= 0; --t) {
      const Index n = active(t);
      const Index off = offset(t);
      Block dh = m_dh[cur].leftCols(n);
      if (dOutput != nullptr) {
        for (Index j = 0; j < n; ++j) dh.col(j) += dOutput->col(t * B + order(j));
      }
      BackwardStep<Scalar> s{m_gates.middleCols(off, n),
                             m_extra.middleCols(off, n),
                             t == 0 ? m_h0.leftCols(n) : hp.middleCols(offset(t - 1), n),
                             cellStatePrev(t, n),
                             hp.middleCols(off, n),
                             cellStateAt(off, n),
                             dh,
                             dcView(cur, n),
                             m_dGx.middleCols(off, n),
                             dGh.middleCols(off, n),
                             m_dh[1 - cur].leftCols(n),
                             dcView(1 - cur, n),
                             m_scratch.leftCols(n)};
      cell.backwardStep(s);
      cur = 1 - cur;
    }

    setSize(m_dInitial.h, H, B);
    if constexpr (Cell::kHasCellState) setSize(m_dInitial.c, C, B);
    for (Index j = 0; j < B; ++j) {
      m_dInitial.h.col(order(j)) = m_dh[cur].col(j);
      if constexpr (Cell::kHasCellState) m_dInitial.c.col(order(j)) = m_dc[cur].col(j);
    }

    // h_{t-1} of every step, packed like the tape, for dW_hh = dGh · H_prevᵀ.
    reserve(m_hPrev, H, N);
    m_hPrev.leftCols(B) = m_h0;
    for (Index t = 1; t < m_T; ++t) {
      m_hPrev.middleCols(offset(t), active(t)) = hp.middleCols(offset(t - 1), active(t));
    }
    setSize(m_dx, cell.inputSize(), m_T * B);
    if (!m_full) reserve(m_dxPacked, cell.inputSize(), N);
    Matrix& dxPacked = m_full ? m_dx : m_dxPacked;
    StepsGradients<Scalar> steps{m_x.leftCols(N), m_hPrev.leftCols(N), m_extra.leftCols(N),
                                 m_dGx.leftCols(N), dGh.leftCols(N)};
    cell.accumulateGradients(steps, grads, dxPacked.leftCols(N));
    if (!m_full) {
      m_dx.setZero();
      for (Index t = 0; t < m_T; ++t) {
        for (Index j = 0; j < active(t); ++j) {
          m_dx.col(t * B + order(j)) = m_dxPacked.col(offset(t) + j);
        }
      }
    }
  }

  Block dcView(int k, Index n) {
    if constexpr (Cell::kHasCellState) {
      return m_dc[k].leftCols(n);
    } else {
      (void)k;
      (void)n;
      return m_none.leftCols(0);
    }
  }

  const Cell* m_cell;

  // Schedule of the last forward.
  Index m_T = 0, m_B = 0, m_N = 0;
  bool m_full = false;
  bool m_hasTape = false;
  std::vector<Index> m_count, m_order, m_active, m_offset;
  std::vector<int> m_sortedLengths;

  // Forward results and tape (see runTraining / runInference).
  Vector m_bias;
  Matrix m_x, m_gates, m_hp, m_cp, m_extra, m_scratch, m_h0, m_c0;
  Matrix m_hBuffer[2], m_cBuffer[2];
  Matrix m_output;
  State m_final;
  Matrix m_none;

  // Backward workspaces and results.
  Matrix m_dGx, m_dGh, m_dh[2], m_dc[2], m_hPrev, m_dxPacked, m_dx;
  State m_dInitial;
};

}  // namespace recurrent
