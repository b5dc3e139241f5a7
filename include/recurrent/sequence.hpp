// recurrent — sequence.hpp: a cell unrolled over a batch of variable-length sequences,
// with backpropagation through time.
#pragma once

#include <recurrent/detail/errors.hpp>
#include <recurrent/detail/gemm.hpp>
#include <recurrent/detail/team.hpp>
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
///     output   y  R × (T·B)   the same layout; zero where t ≥ lengths[b]
///     state       R × B       one column per sequence (LSTM: h R × B and c H × B)
///
/// R = cell.outputSize(): H, or P for an LSTM with a projection (proj_size).
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
/// Threads: built with OpenMP, one call runs on up to setThreads() threads (default: OpenMP's
/// default), which split the hidden units of every step between them; a shape too small to
/// share runs on one. Results are the same to the last bit for any number of threads.
/// An LSTM with a projection always runs on one thread: its per-step product W_hr·m is a second
/// recurrent product, which the threads' split of the hidden units does not cover.
///
/// The Sequence refers to its cell, which must outlive it; the cell is only read, so one
/// cell can be shared by many Sequences on many threads. Each Sequence is used by one
/// thread at a time.
/// How Sequence::setThreads counts: at most n threads (one where a step is too small to be
/// worth sharing), or exactly n (at most one per panel of hidden units) whatever the size.
enum class ThreadLimit { AtMost, Exactly };

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

  /// Threads for the following calls: up to `threads`, 0 (the default) meaning OpenMP's
  /// default number. A call whose steps are too small to be worth sharing runs on one thread,
  /// unless `limit` is ThreadLimit::Exactly: forward() and infer() below 1.2·10⁶ flops in a
  /// step's recurrent product (2·G·H·H·B), backward() below 2·10⁵ (its products over all
  /// steps share well at smaller steps). Never more than one thread per panel of hidden units.
  /// Without OpenMP every call runs on the calling thread.
  void setThreads(int threads, ThreadLimit limit = ThreadLimit::AtMost) {
    if (threads < 0) detail::fail("Sequence::setThreads: threads must be >= 0, got ", threads);
    m_threads = threads;
    m_exactThreads = limit == ThreadLimit::Exactly;
  }
  int threads() const { return m_threads; }

  Eigen::Index steps() const { return m_T; }
  Eigen::Index batchSize() const { return m_B; }
  /// Scalars the training tape keeps per sequence and step: the copy of the input (I), the gate
  /// activations (G·H), h (R), c (H, LSTM only) and the cell's extra rows (H for GRU and for
  /// an LSTM's projection).
  /// Bytes: multiply by sizeof(Scalar); the schedule adds one Eigen::Index per step. infer()
  /// keeps no tape: its memory besides the output does not depend on T.
  static Eigen::Index tapeScalarsPerStep(const Cell& cell) {
    return cell.inputSize() + Cell::kGates * cell.hiddenSize() + cell.outputSize() +
           (Cell::kHasCellState ? cell.hiddenSize() : 0) + cell.extraRows();
  }

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
    detail::checkBatch(where, x.rows(), x.cols(), cell.inputSize(), "the cell's input_size",
                       lengths);
    const Index B = static_cast<Index>(lengths.size());
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
    cell.checkGradients(grads, where);
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

  /// Orders the batch by length (longest first, ties in batch order; an in-place sort, no
  /// allocation after the first call). Training also lists each step's packed offset; inference
  /// keeps nothing per step, so its memory does not grow with T.
  void schedule(const std::vector<int>& lengths, Index T, bool training) {
    const Index B = static_cast<Index>(lengths.size());
    m_T = T;
    m_B = B;
    m_order.resize(static_cast<std::size_t>(B));
    for (Index b = 0; b < B; ++b) m_order[static_cast<std::size_t>(b)] = b;
    std::sort(m_order.begin(), m_order.end(), [&lengths](Index a, Index b) {
      const int la = lengths[static_cast<std::size_t>(a)],
                lb = lengths[static_cast<std::size_t>(b)];
      return la != lb ? la > lb : a < b;
    });
    m_sortedLengths.resize(static_cast<std::size_t>(B));
    m_N = 0;
    for (Index j = 0; j < B; ++j) {
      m_sortedLengths[static_cast<std::size_t>(j)] = lengths[static_cast<std::size_t>(order(j))];
      m_N += m_sortedLengths[static_cast<std::size_t>(j)];
    }
    m_full = (m_N == T * B);
    if (training) {
      m_offset.resize(static_cast<std::size_t>(T + 1));
      m_offset[0] = 0;
      for (Index t = 0; t < T; ++t) {
        m_offset[static_cast<std::size_t>(t + 1)] =
            m_offset[static_cast<std::size_t>(t)] + active(t);
      }
    }
  }

  /// n_t: the sequences still running at step t, the first n_t sorted columns.
  Index active(Index t) const {
    return std::partition_point(m_sortedLengths.begin(), m_sortedLengths.end(),
                                [t](int len) { return len > t; }) -
           m_sortedLengths.begin();
  }
  /// The first packed column of step t (training).
  Index offset(Index t) const { return m_offset[static_cast<std::size_t>(t)]; }
  Index order(Index j) const { return m_order[static_cast<std::size_t>(j)]; }

  /// The number of threads for steps of `B` columns: never more than there are panels of
  /// units; automatically, one where a step's recurrent product is too small to be worth a
  /// barrier (measured on 2 cores: at H = 128 and B = 8, 10⁶ flops and about 10 µs a step, two
  /// threads ran forward no faster than one and inference up to 1.2× slower, while backward
  /// ran 1.2× faster; at B = 16 forward gained 1.1–1.2×).
  int threadsFor(Index B, bool backward) const {
    if (projects()) return 1;  // the projection W_hr·m is a second recurrent product per step
    const Index H = m_cell->hiddenSize();
    const Index panels = (H + detail::GemmTraits<Scalar>::MR - 1) / detail::GemmTraits<Scalar>::MR;
    const double stepFlops = 2.0 * double(Cell::kGates) * double(H) * double(H) * double(B);
    const double minFlops = backward ? kMinStepFlopsToShareBackward : kMinStepFlopsToShare;
    if (!m_exactThreads && stepFlops < minFlops) return 1;
    const int requested = m_threads > 0 ? m_threads : detail::defaultThreads();
    return static_cast<int>(std::max<Index>(1, std::min<Index>(requested, panels)));
  }

  /// True for a cell whose h is projected to other rows than its units (an LSTM with
  /// proj_size): such a cell runs on one thread, and backward keeps dL/dh of every step.
  bool projects() const { return m_cell->outputSize() != m_cell->hiddenSize(); }

  /// This thread's rows of h-shaped matrices: its units, or all of h with a projection (one
  /// thread).
  void outputRowsOf(Index u0, Index u1, Index& r0, Index& r1) const {
    r0 = projects() ? 0 : u0;
    r1 = projects() ? m_cell->outputSize() : u1;
  }

  /// Packs W_ih (and W_hh) for the forward products, W_ihᵀ and W_hhᵀ for backward. With
  /// threads the gate blocks are packed apart, so that each thread's units are whole panels in
  /// every gate; one thread packs all gates as one block (no panel padded at a gate's end).
  void packWeights(bool backward, int threads) {
    const Cell& cell = *m_cell;
    const Parameters& p = cell.parameters();
    const Index G = Cell::kGates, H = cell.hiddenSize();
    const bool dense = threads == 1 && Cell::kFullGateProducts;
    const detail::Blocks gated = dense ? detail::Blocks{1, G * H} : detail::Blocks{G, H};
    if (!backward) {
      m_packedIh.pack(
          detail::viewOf<const Scalar>(p.weight_ih.data(), p.weight_ih.outerStride(), H), gated,
          detail::Blocks{1, cell.inputSize()});
      m_packedHh.pack(
          detail::viewOf<const Scalar>(p.weight_hh.data(), p.weight_hh.outerStride(), H), gated,
          detail::Blocks{1, p.weight_hh.cols()});
      detail::packProjection(cell, false, m_packedHr);
    } else {
      // The transposes keep their depth cut at the gates, whatever the threads: the depth's
      // chunks set the order of each sum.
      const detail::View<const Scalar> ihT{p.weight_ih.data(), p.weight_ih.outerStride(), 0, true};
      const detail::View<const Scalar> hhT{p.weight_hh.data(), p.weight_hh.outerStride(), 0, true};
      m_packedIhT.pack(ihT, detail::Blocks{1, cell.inputSize()}, detail::Blocks{G, H});
      m_packedHhT.pack(hhT, detail::Blocks{1, p.weight_hh.cols()}, detail::Blocks{G, H});
      detail::packProjection(cell, true, m_packedHrT);
    }
  }

  /// One packing buffer per thread, each with room for the widest product it will see.
  void reserveBuffers(int threads, Index widest) {
    if (m_buffers.size() < static_cast<std::size_t>(threads)) {
      m_buffers.resize(static_cast<std::size_t>(threads));
    }
    for (int k = 0; k < threads; ++k) m_buffers[static_cast<std::size_t>(k)].reserve(widest);
  }

  /// This thread's hidden units, in whole kernel panels.
  static void unitsOf(const detail::Team& team, Index H, Index& u0, Index& u1) {
    team.share(H, detail::GemmTraits<Scalar>::MR, u0, u1);
  }

  /// Copies the active columns of steps [t0, t1) of x into `packed`, columns [c0, c1) of the
  /// packed range only.
  void gather(const Eigen::Ref<const Matrix>& x, Index t0, Index t1, Index c0, Index c1,
              Matrix& packed) const {
    Index col = 0;
    for (Index t = t0; t < t1 && col < c1; ++t) {
      for (Index j = 0; j < active(t); ++j, ++col) {
        if (col >= c0 && col < c1) packed.col(col) = x.col(t * m_B + order(j));
      }
    }
  }

  /// gates(:, c0:c1) = W_ih · x(:, c0:c1) + folded bias, written in one pass by the kernel.
  void projectInput(const Eigen::Ref<const Matrix>& x, Index c0, Index c1,
                    detail::GemmBuffer<Scalar>& buffer) {
    if (c1 <= c0) return;
    detail::gemmColumns(
        m_packedIh, detail::viewOf<const Scalar>(x.data(), x.outerStride()),
        detail::viewOf<Scalar>(m_gates.data(), m_gates.outerStride(), m_cell->hiddenSize()), c0, c1,
        true, buffer, m_bias.data());
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
    schedule(lengths, T, training);

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
    const int threads = threadsFor(B, false);
    packWeights(false, threads);
    reserveBuffers(threads, std::max({detail::GemmTraits<Scalar>::NC, B, H, C, cell.inputSize()}));

    if (training) {
      runTraining(x, threads);
      m_hasTape = true;
    } else {
      runInference(x, threads);
    }
  }

  /// Training: every step's columns packed side by side, kept as the tape.
  ///   m_x      I × N      inputs
  ///   m_gates  G·H × N    gate activations
  ///   hp       H × N      h_t (the output itself when no sequence is padded)
  ///   m_cp     H × N      c_t (LSTM)
  ///   m_extra  extra × N  the cell's extra tape
  void runTraining(const Eigen::Ref<const Matrix>& x, int threads) {
    const Cell& cell = *m_cell;
    const Index H = cell.outputSize();
    const Index N = m_N;
    reserve(m_x, cell.inputSize(), N);
    reserve(m_gates, Cell::kGates * cell.hiddenSize(), N);
    if (!m_full) reserve(m_hp, H, N);
    if constexpr (Cell::kHasCellState) reserve(m_cp, cell.hiddenSize(), N);
    reserve(m_extra, cell.extraRows(), N);
    Matrix& hp = packedOutput();

    detail::parallel(threads, [&](const detail::Team& team) {
      detail::GemmBuffer<Scalar>& buffer = m_buffers[static_cast<std::size_t>(team.rank)];
      Index c0, c1, u0, u1;
      team.share(N, kColumnGrain, c0, c1);
      if (m_full) {
        m_x.middleCols(c0, c1 - c0) = x.middleCols(c0, c1 - c0);
      } else {
        gather(x, 0, m_T, c0, c1, m_x);
      }
      projectInput(m_x, c0, c1, buffer);
      team.barrier();

      unitsOf(team, cell.hiddenSize(), u0, u1);
      const StepContext<Scalar> ctx(team, Cell::kGates, cell.hiddenSize(), u0, u1, &m_packedHh,
                                    nullptr, buffer, &m_packedHr);
      for (Index t = 0; t < m_T; ++t) {
        const Index n = active(t);
        const Index off = offset(t);
        ForwardStep<Scalar> s{
            m_gates.middleCols(off, n), t == 0 ? m_h0.leftCols(n) : hp.middleCols(offset(t - 1), n),
            cellStatePrev(t, n),        hp.middleCols(off, n),
            cellStateAt(off, n),        m_extra.middleCols(off, n),
            m_scratch.leftCols(n)};
        cell.forwardStep(ctx, s);
        team.barrier();
      }

      // Final states and the output in the caller's order: this thread's rows.
      Index r0, r1;
      outputRowsOf(u0, u1, r0, r1);
      const Index rows = r1 - r0;
      for (Index j = 0; j < m_B; ++j) {
        const Index col = offset(m_sortedLengths[static_cast<std::size_t>(j)] - 1) + j;
        m_final.h.col(order(j)).segment(r0, rows) = hp.col(col).segment(r0, rows);
        if constexpr (Cell::kHasCellState) {
          m_final.c.col(order(j)).segment(u0, u1 - u0) = m_cp.col(col).segment(u0, u1 - u0);
        }
      }
      if (!m_full) {
        for (Index t = 0; t < m_T; ++t) {
          for (Index j = 0; j < active(t); ++j) {
            m_output.col(t * m_B + order(j)).segment(r0, rows) =
                hp.col(offset(t) + j).segment(r0, rows);
          }
        }
      }
    });
  }

  /// Inference: the input projection in blocks of about kInferenceChunkColumns columns, the
  /// state in two ping-pong buffers (or, with no padding, read back from the output itself).
  void runInference(const Eigen::Ref<const Matrix>& x, int threads) {
    const Cell& cell = *m_cell;
    const Index H = cell.outputSize();
    const Index C = cell.hiddenSize();
    // Whole column blocks for every thread: the input projection of a block is split between
    // the threads in blocks of kColumnGrain, and 256 columns would give one thread 192, the
    // other 64.
    const Index capacity =
        std::max(detail::roundUp(kInferenceChunkColumns, kColumnGrain * threads), m_B);
    reserve(m_gates, Cell::kGates * cell.hiddenSize(), capacity);
    if (!m_full) {
      reserve(m_x, cell.inputSize(), capacity);
      for (Matrix& buffer : m_hBuffer) reserve(buffer, H, m_B);
    }
    if constexpr (Cell::kHasCellState) {
      for (Matrix& buffer : m_cBuffer) reserve(buffer, C, m_B);
    }
    reserve(m_extra, cell.extraRows(), m_B);

    detail::parallel(threads, [&](const detail::Team& team) {
      detail::GemmBuffer<Scalar>& buffer = m_buffers[static_cast<std::size_t>(team.rank)];
      Index u0, u1;
      unitsOf(team, cell.hiddenSize(), u0, u1);
      const StepContext<Scalar> ctx(team, Cell::kGates, cell.hiddenSize(), u0, u1, &m_packedHh,
                                    nullptr, buffer, &m_packedHr);
      Index t0 = 0;
      while (t0 < m_T) {
        // Steps [t0, t1) whose columns fit the block (at least one step).
        Index t1 = t0 + 1, cols = active(t0);
        while (t1 < m_T && cols + active(t1) <= capacity) cols += active(t1++);
        Index c0, c1;
        team.share(cols, kColumnGrain, c0, c1);
        if (m_full) {
          // The projection reads x in place; gates column k is x column t0·B + k.
          projectInput(x.middleCols(t0 * m_B, cols), c0, c1, buffer);
        } else {
          gather(x, t0, t1, c0, c1, m_x);
          projectInput(m_x, c0, c1, buffer);
        }
        team.barrier();
        for (Index t = t0, gateCol = 0; t < t1; gateCol += active(t++)) {
          inferStep(ctx, t, gateCol, u0, u1);
          team.barrier();
        }
        t0 = t1;
      }
    });
  }

  void inferStep(const StepContext<Scalar>& ctx, Index t, Index gateCol, Index u0, Index u1) {
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
    m_cell->forwardStep(ctx, s);
    Index r0, r1;
    outputRowsOf(u0, u1, r0, r1);
    const Index rows = r1 - r0;
    if (!m_full) {
      for (Index j = 0; j < n; ++j) {
        m_output.col(t * m_B + order(j)).segment(r0, rows) = hNext.col(j).segment(r0, rows);
      }
    }
    // Sequences whose last step this is: columns [n_{t+1}, n_t).
    const Index ending = t + 1 < m_T ? active(t + 1) : 0;
    for (Index j = ending; j < n; ++j) {
      m_final.h.col(order(j)).segment(r0, rows) = hNext.col(j).segment(r0, rows);
      if constexpr (Cell::kHasCellState) {
        m_final.c.col(order(j)).segment(u0, u1 - u0) = m_cBuffer[t & 1].col(j).segment(u0, u1 - u0);
      }
    }
  }

  Matrix& packedOutput() { return m_full ? m_output : m_hp; }

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
    setSize(m_dInitial.h, H, B);
    if constexpr (Cell::kHasCellState) setSize(m_dInitial.c, C, B);
    reserve(m_hPrev, H, N);
    if constexpr (Cell::kCellStatesInGradients) reserve(m_cPrev, C, N);
    if (projects()) reserve(m_dhSteps, H, N);
    reserve(m_scratch, cell.scratchRows(), B);
    setSize(m_dx, cell.inputSize(), m_T * B);
    if (!m_full) {
      reserve(m_dxPacked, cell.inputSize(), N);
      m_dx.setZero();
    }
    Matrix& dxPacked = m_full ? m_dx : m_dxPacked;
    const int threads = threadsFor(B, true);
    packWeights(true, threads);
    reserveBuffers(threads, std::max({detail::GemmTraits<Scalar>::NC, B, H, C, cell.inputSize()}));

    detail::parallel(threads, [&](const detail::Team& team) {
      detail::GemmBuffer<Scalar>& buffer = m_buffers[static_cast<std::size_t>(team.rank)];
      Index u0, u1;
      unitsOf(team, C, u0, u1);
      const Index rows = u1 - u0;
      Index r0, r1;  // this thread's rows of h (all of them with a projection)
      outputRowsOf(u0, u1, r0, r1);
      const Index hRows = r1 - r0;
      const StepContext<Scalar> ctx(team, Cell::kGates, C, u0, u1, nullptr, &m_packedHhT, buffer,
                                    nullptr, &m_packedHrT);

      // Both ping-pong buffers start as dL/d(final state): a sequence's column is first read at
      // its own last step and untouched before, whichever buffer is current then.
      for (int k = 0; k < 2; ++k) {
        for (Index j = 0; j < B; ++j) {
          if (dFinal != nullptr) {
            m_dh[k].col(j).segment(r0, hRows) = dFinal->h.col(order(j)).segment(r0, hRows);
            if constexpr (Cell::kHasCellState) {
              m_dc[k].col(j).segment(u0, rows) = dFinal->c.col(order(j)).segment(u0, rows);
            }
          } else {
            m_dh[k].col(j).segment(r0, hRows).setZero();
            if constexpr (Cell::kHasCellState) m_dc[k].col(j).segment(u0, rows).setZero();
          }
        }
      }

      int cur = 0;
      for (Index t = m_T - 1; t >= 0; --t) {
        const Index n = active(t);
        const Index off = offset(t);
        Block dh = m_dh[cur].leftCols(n);
        if (dOutput != nullptr) {
          for (Index j = 0; j < n; ++j) {
            dh.col(j).segment(r0, hRows) += dOutput->col(t * B + order(j)).segment(r0, hRows);
          }
        }
        if (projects()) m_dhSteps.middleCols(off, n) = dh;  // for dW_hr (one thread)
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
        cell.backwardStep(ctx, s);
        cur = 1 - cur;
      }
      for (Index j = 0; j < B; ++j) {
        m_dInitial.h.col(order(j)).segment(r0, hRows) = m_dh[cur].col(j).segment(r0, hRows);
        if constexpr (Cell::kHasCellState) {
          m_dInitial.c.col(order(j)).segment(u0, rows) = m_dc[cur].col(j).segment(u0, rows);
        }
      }

      // h_{t-1} of every step, packed like the tape, for dW_hh = dGh · H_prevᵀ (and c_{t-1}
      // for the cells that need it).
      Index c0, c1;
      team.share(N, kColumnGrain, c0, c1);
      for (Index t = 0; t < m_T; ++t) {
        const Index b0 = std::max(c0, offset(t)), b1 = std::min(c1, offset(t) + active(t));
        for (Index col = b0; col < b1; ++col) {
          const Index j = col - offset(t);
          m_hPrev.col(col) = t == 0 ? m_h0.col(j) : hp.col(offset(t - 1) + j);
          if constexpr (Cell::kCellStatesInGradients) {
            m_cPrev.col(col) = t == 0 ? m_c0.col(j) : m_cp.col(offset(t - 1) + j);
          }
        }
      }
      team.barrier();  // every dGx and H_prev column is complete

      StepsGradients<Scalar> steps{
          m_x.leftCols(N),
          m_hPrev.leftCols(N),
          m_extra.leftCols(N),
          m_dGx.leftCols(N),
          dGh.leftCols(N),
          Cell::kHasCellState ? m_cp.leftCols(N) : m_none.leftCols(0),
          Cell::kCellStatesInGradients ? m_cPrev.leftCols(N) : m_none.leftCols(0),
          projects() ? m_dhSteps.leftCols(N) : m_none.leftCols(0)};
      cell.accumulateGradients(ctx, steps, grads);
      // dX = W_ihᵀ · dGx, split by columns.
      detail::gemmColumns(
          m_packedIhT, detail::viewOf<const Scalar>(m_dGx.data(), m_dGx.outerStride(), C),
          detail::viewOf<Scalar>(dxPacked.data(), dxPacked.outerStride()), c0, c1, true, buffer);
      if (!m_full) {
        for (Index t = 0; t < m_T; ++t) {
          const Index b0 = std::max(c0, offset(t)), b1 = std::min(c1, offset(t) + active(t));
          for (Index col = b0; col < b1; ++col) {
            m_dx.col(t * B + order(col - offset(t))) = m_dxPacked.col(col);
          }
        }
      }
    });
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

  /// Threads split the columns of the large products in whole blocks of the kernel, so that
  /// every column is computed the same way whatever the number of threads.
  static constexpr Index kColumnGrain = detail::GemmTraits<Scalar>::NC;
  /// A forward step's recurrent product below this many flops runs on one thread; in
  /// backward, below the second (there the weight-gradient and dX products over all steps,
  /// which share well, are a larger part of the call).
  static constexpr double kMinStepFlopsToShare = 1.2e6;
  static constexpr double kMinStepFlopsToShareBackward = 2.0e5;

  const Cell* m_cell;
  int m_threads = 0;
  bool m_exactThreads = false;

  // Schedule of the last forward.
  Index m_T = 0, m_B = 0, m_N = 0;
  bool m_full = false;
  bool m_hasTape = false;
  std::vector<Index> m_order, m_offset;
  std::vector<int> m_sortedLengths;

  // Forward results and tape (see runTraining / runInference).
  Vector m_bias;
  Matrix m_x, m_gates, m_hp, m_cp, m_extra, m_scratch, m_h0, m_c0;
  Matrix m_hBuffer[2], m_cBuffer[2];
  Matrix m_output;
  State m_final;
  Matrix m_none;

  // The weights packed for the kernel, and one packing buffer per thread.
  detail::PackedMatrix<Scalar> m_packedIh, m_packedHh, m_packedIhT, m_packedHhT;
  // The LSTM's projection W_hr and W_hrᵀ, packed only for a cell that projects.
  detail::PackedMatrix<Scalar> m_packedHr, m_packedHrT;
  std::vector<detail::GemmBuffer<Scalar>> m_buffers;

  // Backward workspaces and results.
  Matrix m_dGx, m_dGh, m_dh[2], m_dc[2], m_hPrev, m_cPrev, m_dhSteps, m_dxPacked, m_dx;
  State m_dInitial;
};

}  // namespace recurrent
