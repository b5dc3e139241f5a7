// recurrent — layers/sequence_impl.hpp: the time loops of Sequence (included by sequence.hpp).
//
// forward (training) and infer run one OpenMP region each, backward one more:
//
//     forward:  [copy or gather x, project it: by column blocks] barrier
//               for each step: [recurrent product + gate math: by units] barrier
//               [final states, output in the caller's order: by units]
//     infer:    for each block of steps: [gather, project: by column blocks] barrier
//                                        for each step: [step, output, final states] barrier
//     backward: for each step, last first: [gate gradients, W_hhᵀ·dA: by units]
//               [H_prev: by columns] barrier [weight gradients: by units] [dX: by column blocks]
//
// Legend: R rows of h, H hidden units, G gates, T steps, B sequences, N packed columns (Σ lengths).
#pragma once

#include <recurrent/layers/sequence.hpp>

namespace recurrent {

template <typename Cell>
void Sequence<Cell>::run(const Eigen::Ref<const Matrix>& x, const std::vector<int>& lengths,
                         const State& initial, bool training, const char* where) {
  if (training) detail::checkTrainingPrecision(where, m_precision);
  checkForward(x, lengths, initial, training, where);
  // Nothing below throws (but for memory): the object changes only now.
  const Cell& cell = *m_cell;
  const Index B = static_cast<Index>(lengths.size());
  const Index T = x.cols() / B;
  const Index R = cell.outputSize(), H = cell.hiddenSize();
  m_hasTape = false;
  m_schedule.plan(lengths, T, training);
  m_reg.active = training && (m_reg.given || m_reg.options.any());
  if (m_reg.active) {
    const auto& whh = cell.parameters().weight_hh;
    m_reg.draw(cell.inputSize(), R, H, whh.rows(), T, B, Cell::kHasCellState);
    m_reg.arrange(m_schedule);
    if (m_reg.dropsWeight()) m_reg.droppedWeight = whh.cwiseProduct(m_reg.masks.weight);
  }

  // The initial state, in sorted order (copied first: `initial` may be our own finalState()).
  setSize(m_h0, R, B);
  if constexpr (Cell::kHasCellState) setSize(m_c0, H, B);
  if (!detail::isEmpty(initial)) {
    for (Index j = 0; j < B; ++j) {
      m_h0.col(j) = initial.h.col(m_schedule.order(j));
      if constexpr (Cell::kHasCellState) m_c0.col(j) = initial.c.col(m_schedule.order(j));
    }
  } else {
    m_h0.setZero();
    if constexpr (Cell::kHasCellState) m_c0.setZero();
  }
  setSize(m_final.h, R, B);
  if constexpr (Cell::kHasCellState) setSize(m_final.c, H, B);
  setSize(m_output, R, T * B);
  if (!m_schedule.full()) m_output.setZero();
  m_bias.resize(Cell::kGates * H);
  cell.foldedBias(m_bias);
  reserve(m_scratch, cell.scratchRows(), B);
  const int threads = threadsFor(B, false);
  if (!training && fusedInference(threads)) {
    if constexpr (kFusedStep) m_fused.pack(cell, m_fusedF, m_fusedB);
    runFusedInference(x);
    return;
  }
  const bool dropWeight = m_reg.active && m_reg.dropsWeight();
  m_weights.packForward(
      cell, threads == 1 && Cell::kFullGateProducts, training ? Precision::Full : m_precision,
      training ? Precision::Full : m_inputPrecision, dropWeight ? &m_reg.droppedWeight : nullptr);
  reserveBuffers(threads);
  if (m_reg.active && m_reg.dropsRecurrent()) {
    if (m_maskedH.size() < static_cast<std::size_t>(threads)) {
      m_maskedH.resize(static_cast<std::size_t>(threads));
    }
    for (int k = 0; k < threads; ++k) reserve(m_maskedH[static_cast<std::size_t>(k)], R, B);
  }

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
///   hp       R × N      h_t (the output itself when no sequence is padded)
///   m_cp     H × N      c_t (LSTM)
///   m_extra  E × N      the cell's extra tape
template <typename Cell>
void Sequence<Cell>::runTraining(const Eigen::Ref<const Matrix>& x, int threads) {
  const Cell& cell = *m_cell;
  const detail::Schedule& plan = m_schedule;
  const Index N = plan.columns();
  reserve(m_x, cell.inputSize(), N);
  reserve(m_gates, Cell::kGates * cell.hiddenSize(), N);
  if (!plan.full()) reserve(m_hp, cell.outputSize(), N);
  if constexpr (Cell::kHasCellState) reserve(m_cp, cell.hiddenSize(), N);
  reserve(m_extra, cell.extraRows(), N);
  Matrix& hp = packedOutput();
  const bool zoneH = m_reg.active && m_reg.zonesH(), zoneC = m_reg.active && m_reg.zonesC();
  if (zoneH) reserve(m_hOwn, cell.outputSize(), N);  // the cell's own h̃, c̃: its backward's tape
  if (zoneC) reserve(m_cOwn, cell.hiddenSize(), N);

  detail::parallel(threads, [&](const detail::Team& team) {
    Index c0, c1;
    team.share(N, kColumnGrain, c0, c1);
    if (plan.full()) {
      m_x.middleCols(c0, c1 - c0) = x.middleCols(c0, c1 - c0);
    } else {
      plan.gather(x, 0, plan.steps(), c0, c1, m_x);
    }
    if (m_reg.active && m_reg.dropsInput())
      forPackedColumns(c0, c1, [&](Index col, Index j) {
        m_x.col(col).array() *= m_reg.inputSorted.col(j).array();
      });
    projectInput(m_x, c0, c1, m_buffers[static_cast<std::size_t>(team.rank)]);
    team.barrier();

    const Rows rows = rowsOf(team);
    const StepContext<Scalar> ctx = context(team, rows, true);
    for (Index t = 0; t < plan.steps(); ++t) {
      const Index n = plan.active(t), off = plan.offset(t);
      Block hPrev = t == 0 ? m_h0.leftCols(n) : hp.middleCols(plan.offset(t - 1), n);
      ForwardStep<Scalar> s{m_gates.middleCols(off, n),
                            hPrev,
                            cellStatePrev(t, n),
                            zoneH ? m_hOwn.middleCols(off, n) : hp.middleCols(off, n),
                            zoneC ? m_cOwn.middleCols(off, n) : cellStateAt(off, n),
                            m_extra.middleCols(off, n),
                            m_scratch.leftCols(n)};
      cell.forwardStep(ctx, s);
      if (zoneH) {
        zoneout(m_reg.zoneHPacked.middleCols(off, n), rows.r0, rows.r1, hPrev,
                m_hOwn.middleCols(off, n), hp.middleCols(off, n));
      }
      if constexpr (Cell::kHasCellState) {
        if (zoneC) {
          zoneout(m_reg.zoneCPacked.middleCols(off, n), rows.u0, rows.u1, cellStatePrev(t, n),
                  m_cOwn.middleCols(off, n), m_cp.middleCols(off, n));
        }
      }
      team.barrier();
    }

    // Final states and the output in the caller's order: this thread's rows.
    const Index hRows = rows.r1 - rows.r0, units = rows.u1 - rows.u0;
    for (Index j = 0; j < plan.batch(); ++j) {
      const Index col = plan.offset(plan.length(j) - 1) + j;
      m_final.h.col(plan.order(j)).segment(rows.r0, hRows) = hp.col(col).segment(rows.r0, hRows);
      if constexpr (Cell::kHasCellState) {
        m_final.c.col(plan.order(j)).segment(rows.u0, units) =
            m_cp.col(col).segment(rows.u0, units);
      }
    }
    if (!plan.full()) {
      for (Index t = 0; t < plan.steps(); ++t) {
        for (Index j = 0; j < plan.active(t); ++j) {
          m_output.col(t * plan.batch() + plan.order(j)).segment(rows.r0, hRows) =
              hp.col(plan.offset(t) + j).segment(rows.r0, hRows);
        }
      }
    }
  });
}

/// Inference: the input projection in blocks of steps of about kInferenceBlockColumns packed
/// columns, the state in two ping-pong buffers (or, with no padding, read back from the output
/// itself).
template <typename Cell>
void Sequence<Cell>::runInference(const Eigen::Ref<const Matrix>& x, int threads) {
  const Cell& cell = *m_cell;
  const detail::Schedule& plan = m_schedule;
  const Index B = plan.batch();
  // Whole column blocks for every thread: the input projection of a block is split between the
  // threads in blocks of kColumnGrain, and a block of 256 columns would give one thread 192, the
  // other 64.
  const Index capacity =
      std::max(detail::roundUp(kInferenceBlockColumns, kColumnGrain * threads), B);
  reserve(m_gates, Cell::kGates * cell.hiddenSize(), capacity);
  if (!plan.full()) {
    reserve(m_x, cell.inputSize(), capacity);
    for (Matrix& buffer : m_hBuffer) reserve(buffer, cell.outputSize(), B);
  }
  if constexpr (Cell::kHasCellState) {
    for (Matrix& buffer : m_cBuffer) reserve(buffer, cell.hiddenSize(), B);
  }
  reserve(m_extra, cell.extraRows(), B);

  detail::parallel(threads, [&](const detail::Team& team) {
    detail::GemmBuffer<Scalar>& buffer = m_buffers[static_cast<std::size_t>(team.rank)];
    const Rows rows = rowsOf(team);
    const StepContext<Scalar> ctx = context(team, rows);
    Index t0 = 0;
    while (t0 < plan.steps()) {
      // Steps [t0, t1) whose columns fit the block (at least one step).
      Index t1 = t0 + 1, cols = plan.active(t0);
      while (t1 < plan.steps() && cols + plan.active(t1) <= capacity) cols += plan.active(t1++);
      Index c0, c1;
      team.share(cols, kColumnGrain, c0, c1);
      if (plan.full()) {
        // The projection reads x in place; gates column k is x column t0·B + k.
        projectInput(x.middleCols(t0 * B, cols), c0, c1, buffer);
      } else {
        plan.gather(x, t0, t1, c0, c1, m_x);
        projectInput(m_x, c0, c1, buffer);
      }
      team.barrier();
      for (Index t = t0, gateCol = 0; t < t1; gateCol += plan.active(t++)) {
        inferStep(ctx, t, gateCol, rows);
        team.barrier();
      }
      t0 = t1;
    }
  });
}

/// Whether infer() runs the fused step of one sequence (detail/fused_step.hpp), as a Stream of
/// one sequence does: one product F·[x; h] a step with its sums in registers, for a cell that
/// names one, whose h is its hidden state, in full precision (float or double) on one thread,
/// without zoneout, and where
/// the packed F fits in the L1 data cache. There it saves the calls and passes over memory
/// around a product of one column; beyond L1 the batched path is faster, as it reads W_ih once
/// per block of steps where the fused step streams [W_ih W_hh] at every step (measured:
/// benchmarks/README.md, one sequence in Sequence::infer).
template <typename Cell>
bool Sequence<Cell>::fusedInference(int threads) const {
  if constexpr (kFusedStep) {
    if (m_schedule.batch() != 1 || threads != 1 || projects() || m_precision != Precision::Full ||
        m_reg.options.zoneoutH() != 0 || m_reg.options.zoneoutC() != 0) {
      return false;
    }
    const detail::fused::Layout<Cell> layout{static_cast<int>(m_cell->inputSize()),
                                             static_cast<int>(m_cell->hiddenSize())};
    const long bytes = long(layout.offset(layout.panels())) * long(sizeof(Scalar));
    return bytes <= detail::l1DataCacheBytes();
  } else {
    (void)threads;
    return false;
  }
}

/// infer() of one sequence on the fused step: the output columns are the steps' h, the cell
/// state alternates between the two buffers.
template <typename Cell>
void Sequence<Cell>::runFusedInference(const Eigen::Ref<const Matrix>& x) {
  if constexpr (kFusedStep) {
    const Cell& cell = *m_cell;
    const Index length = m_schedule.length(0);
    Scalar* c[2] = {nullptr, nullptr};
    const Scalar* cPrev = nullptr;
    if constexpr (Cell::kHasCellState) {
      for (Matrix& buffer : m_cBuffer) reserve(buffer, cell.hiddenSize(), 1);
      c[0] = m_cBuffer[0].data();
      c[1] = m_cBuffer[1].data();
      cPrev = m_c0.data();
    }
    const Scalar* hPrev = m_h0.data();
    for (Index t = 0; t < length; ++t) {
      Scalar* h = m_output.col(t).data();
      m_fused.step(cell, x.col(t).data(), hPrev, cPrev, h, c[t & 1]);
      hPrev = h;
      cPrev = c[t & 1];
    }
    m_final.h = m_output.col(length - 1);
    if constexpr (Cell::kHasCellState) m_final.c = m_cBuffer[(length - 1) & 1].col(0);
  } else {
    (void)x;
  }
}

/// One inference step: its gates start at packed column `gateCol` of the block.
template <typename Cell>
void Sequence<Cell>::inferStep(const StepContext<Scalar>& ctx, Index t, Index gateCol,
                               const Rows& rows) {
  const detail::Schedule& plan = m_schedule;
  const Index n = plan.active(t), B = plan.batch();
  const bool full = plan.full();
  Block hNext = full ? m_output.middleCols(t * B, B) : m_hBuffer[t & 1].leftCols(n);
  Block hPrev =
      t == 0 ? m_h0.leftCols(n)
             : (full ? m_output.middleCols((t - 1) * B, B) : m_hBuffer[(t - 1) & 1].leftCols(n));
  ForwardStep<Scalar> s{m_gates.middleCols(gateCol, n),
                        hPrev,
                        t == 0 ? cellStatePrev(0, n) : cellBuffer((t - 1) & 1, n),
                        hNext,
                        cellBuffer(t & 1, n),
                        m_extra.leftCols(n),
                        m_scratch.leftCols(n)};
  m_cell->forwardStep(ctx, s);
  // Zoneout in inference: its expectation, h = z h_{t−1} + (1 − z) h̃ (and c with its rate).
  if (m_reg.options.zoneoutH() > 0) {
    const auto z = static_cast<Scalar>(m_reg.options.zoneoutH());
    hNext.middleRows(rows.r0, rows.r1 - rows.r0) =
        z * hPrev.middleRows(rows.r0, rows.r1 - rows.r0) +
        (1 - z) * hNext.middleRows(rows.r0, rows.r1 - rows.r0);
  }
  if constexpr (Cell::kHasCellState) {
    if (m_reg.options.zoneoutC() > 0) {
      const auto z = static_cast<Scalar>(m_reg.options.zoneoutC());
      const Index u = rows.u1 - rows.u0;
      Block cNext = cellBuffer(t & 1, n);
      cNext.middleRows(rows.u0, u) =
          z * s.cPrev.middleRows(rows.u0, u) + (1 - z) * cNext.middleRows(rows.u0, u);
    }
  }
  const Index hRows = rows.r1 - rows.r0, units = rows.u1 - rows.u0;
  if (!full) {
    for (Index j = 0; j < n; ++j) {
      m_output.col(t * B + plan.order(j)).segment(rows.r0, hRows) =
          hNext.col(j).segment(rows.r0, hRows);
    }
  }
  // Sequences whose last step this is: columns [n_{t+1}, n_t).
  const Index ending = t + 1 < plan.steps() ? plan.active(t + 1) : 0;
  for (Index j = ending; j < n; ++j) {
    m_final.h.col(plan.order(j)).segment(rows.r0, hRows) = hNext.col(j).segment(rows.r0, hRows);
    if constexpr (Cell::kHasCellState) {
      m_final.c.col(plan.order(j)).segment(rows.u0, units) =
          m_cBuffer[t & 1].col(j).segment(rows.u0, units);
    }
  }
}

template <typename Cell>
void Sequence<Cell>::runBackward(const Eigen::Ref<const Matrix>* dOutput, const State& dFinal,
                                 Parameters& grads) {
  checkBackward(dOutput, dFinal, grads);
  const Cell& cell = *m_cell;
  const detail::Schedule& plan = m_schedule;
  const Index R = cell.outputSize(), H = cell.hiddenSize(), GH = Cell::kGates * H;
  const Index N = plan.columns(), B = plan.batch();
  Matrix& hp = packedOutput();

  reserve(m_dGx, GH, N);
  if constexpr (Cell::kSeparateRecurrentGradient) reserve(m_dGh, GH, N);
  Matrix& dGh = Cell::kSeparateRecurrentGradient ? m_dGh : m_dGx;
  for (Matrix& buffer : m_dh) setSize(buffer, R, B);
  setSize(m_dInitial.h, R, B);
  if constexpr (Cell::kHasCellState) {
    for (Matrix& buffer : m_dc) setSize(buffer, H, B);
    setSize(m_dInitial.c, H, B);
  }
  reserve(m_hPrev, R, N);
  if constexpr (Cell::kCellStatesInGradients) reserve(m_cPrev, H, N);
  if (projects()) reserve(m_dhSteps, R, N);
  reserve(m_gradientTape, cell.gradientRows(), N);
  reserve(m_scratch, cell.scratchRows(), B);
  setSize(m_dx, cell.inputSize(), plan.steps() * B);
  if (!plan.full()) {
    reserve(m_dxPacked, cell.inputSize(), N);
    m_dx.setZero();
  }
  Matrix& dxPacked = plan.full() ? m_dx : m_dxPacked;
  const int threads = threadsFor(B, true);
  const bool dropWeight = m_reg.active && m_reg.dropsWeight();
  m_weights.packBackward(cell, dropWeight ? &m_reg.droppedWeight : nullptr);
  reserveBuffers(threads);
  if (m_reg.active && m_reg.zonesH()) setSize(m_zoneDh, R, B);
  if (m_reg.active && m_reg.zonesC()) setSize(m_zoneDc, H, B);
  // Weight drop: the cell adds dL/d(M ⊙ W_hh) into a zero matrix, which is then added as
  // M ⊙ (that) into the caller's gradient (swapped out meanwhile, so nothing else changes).
  if (dropWeight) {
    m_reg.weightGrad.setZero(grads.weight_hh.rows(), grads.weight_hh.cols());
    grads.weight_hh.swap(m_reg.weightGrad);
  }

  detail::parallel(threads, [&](const detail::Team& team) {
    const Rows rows = rowsOf(team);
    backwardSteps(team, dOutput, dFinal, rows, dGh);

    // h_{t-1} of every step, packed like the tape, for dW_hh = dGh · H_prevᵀ (and c_{t-1} for
    // the cells that need it).
    Index c0, c1;
    team.share(N, kColumnGrain, c0, c1);
    for (Index t = 0; t < plan.steps(); ++t) {
      const Index off = plan.offset(t);
      for (Index col = std::max(c0, off); col < std::min(c1, off + plan.active(t)); ++col) {
        const Index j = col - off;
        m_hPrev.col(col) = t == 0 ? m_h0.col(j) : hp.col(plan.offset(t - 1) + j);
        if (m_reg.active && m_reg.dropsRecurrent()) {  // W_hh read m ⊙ h_{t-1}
          m_hPrev.col(col).array() *= m_reg.recurrentSorted.col(j).array();
        }
        if constexpr (Cell::kCellStatesInGradients) {
          m_cPrev.col(col) = t == 0 ? m_c0.col(j) : m_cp.col(plan.offset(t - 1) + j);
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
        projects() ? m_dhSteps.leftCols(N) : m_none.leftCols(0),
        m_gradientTape.leftCols(N)};
    cell.accumulateGradients(context(team, rows), steps, grads);
    // dX = W_ihᵀ · dGx, split by columns.
    const auto dA = detail::viewOf<const Scalar>(m_dGx.data(), m_dGx.outerStride(), H);
    const auto dX = detail::viewOf<Scalar>(dxPacked.data(), dxPacked.outerStride());
    detail::gemmColumns(detail::Product<Scalar>(m_weights.ihT, dA, dX, N).overwrite(), c0, c1,
                        m_buffers[static_cast<std::size_t>(team.rank)]);
    if (m_reg.active && m_reg.dropsInput())
      forPackedColumns(c0, c1, [&](Index col, Index j) {
        dxPacked.col(col).array() *= m_reg.inputSorted.col(j).array();
      });
    if (!plan.full()) {
      for (Index t = 0; t < plan.steps(); ++t) {
        const Index off = plan.offset(t);
        for (Index col = std::max(c0, off); col < std::min(c1, off + plan.active(t)); ++col) {
          m_dx.col(t * B + plan.order(col - off)) = m_dxPacked.col(col);
        }
      }
    }
  });
  if (dropWeight) {
    m_reg.weightGrad.array() += grads.weight_hh.array() * m_reg.masks.weight.array();
    grads.weight_hh.swap(m_reg.weightGrad);
  }
}

/// The backward time loop, last step first: each step's gate gradients into m_dGx (and dGh), and
/// dL/d(initial state) at the end, for this thread's rows.
template <typename Cell>
void Sequence<Cell>::backwardSteps(const detail::Team& team,
                                   const Eigen::Ref<const Matrix>* dOutput, const State& dFinal,
                                   const Rows& rows, Matrix& dGh) {
  const detail::Schedule& plan = m_schedule;
  const Index B = plan.batch();
  const Index hRows = rows.r1 - rows.r0, units = rows.u1 - rows.u0;
  const bool noFinal = detail::isEmpty(dFinal);
  Matrix& hp = packedOutput();
  const StepContext<Scalar> ctx = context(team, rows, true);
  const bool zoneH = m_reg.active && m_reg.zonesH(), zoneC = m_reg.active && m_reg.zonesC();

  // Both ping-pong buffers start as dL/d(final state): a sequence's column is first read at its
  // own last step and untouched before, whichever buffer is current then.
  for (int k = 0; k < 2; ++k) {
    for (Index j = 0; j < B; ++j) {
      if (noFinal) {
        m_dh[k].col(j).segment(rows.r0, hRows).setZero();
        if constexpr (Cell::kHasCellState) m_dc[k].col(j).segment(rows.u0, units).setZero();
      } else {
        m_dh[k].col(j).segment(rows.r0, hRows) =
            dFinal.h.col(plan.order(j)).segment(rows.r0, hRows);
        if constexpr (Cell::kHasCellState) {
          m_dc[k].col(j).segment(rows.u0, units) =
              dFinal.c.col(plan.order(j)).segment(rows.u0, units);
        }
      }
    }
  }

  int cur = 0;
  for (Index t = plan.steps() - 1; t >= 0; --t) {
    const Index n = plan.active(t), off = plan.offset(t);
    Block dh = m_dh[cur].leftCols(n);
    if (dOutput != nullptr) {
      for (Index j = 0; j < n; ++j) {
        dh.col(j).segment(rows.r0, hRows) +=
            dOutput->col(t * B + plan.order(j)).segment(rows.r0, hRows);
      }
    }
    // Zoneout: d ⊙ dh goes straight to h_{t-1}, (1 − d) ⊙ dh into the cell (and so for c).
    if (zoneH) splitZoneout(m_reg.zoneHPacked.middleCols(off, n), rows.r0, rows.r1, dh, m_zoneDh);
    if constexpr (Cell::kHasCellState) {
      if (zoneC) {
        splitZoneout(m_reg.zoneCPacked.middleCols(off, n), rows.u0, rows.u1, dcBuffer(cur, n),
                     m_zoneDc);
      }
    }
    if (projects()) m_dhSteps.middleCols(off, n) = dh;  // for dW_hr (one thread)
    BackwardStep<Scalar> s{m_gates.middleCols(off, n),
                           m_extra.middleCols(off, n),
                           t == 0 ? m_h0.leftCols(n) : hp.middleCols(plan.offset(t - 1), n),
                           cellStatePrev(t, n),
                           zoneH ? m_hOwn.middleCols(off, n) : hp.middleCols(off, n),
                           zoneC ? m_cOwn.middleCols(off, n) : cellStateAt(off, n),
                           dh,
                           dcBuffer(cur, n),
                           m_dGx.middleCols(off, n),
                           dGh.middleCols(off, n),
                           m_dh[1 - cur].leftCols(n),
                           dcBuffer(1 - cur, n),
                           m_scratch.leftCols(n),
                           m_gradientTape.middleCols(off, n)};
    m_cell->backwardStep(ctx, s);
    if (zoneH) {
      m_dh[1 - cur].block(rows.r0, 0, hRows, n) += m_zoneDh.block(rows.r0, 0, hRows, n);
    }
    if constexpr (Cell::kHasCellState) {
      if (zoneC) m_dc[1 - cur].block(rows.u0, 0, units, n) += m_zoneDc.block(rows.u0, 0, units, n);
    }
    cur = 1 - cur;
  }
  for (Index j = 0; j < B; ++j) {
    m_dInitial.h.col(plan.order(j)).segment(rows.r0, hRows) =
        m_dh[cur].col(j).segment(rows.r0, hRows);
    if constexpr (Cell::kHasCellState) {
      m_dInitial.c.col(plan.order(j)).segment(rows.u0, units) =
          m_dc[cur].col(j).segment(rows.u0, units);
    }
  }
}

}  // namespace recurrent
