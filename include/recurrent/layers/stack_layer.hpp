// recurrent — layers/stack_layer.hpp: one layer of a Stack, in one direction or both.
//
// A bidirectional layer runs a second Sequence over every sequence reversed in time, from the
// sequence's own last step (PyTorch's packed sequences), and merges the two outputs step by
// step; a reverse layer runs that reverse direction alone. The two directions are independent for
// the whole sequence, so with threads for both they run at the same time (one OpenMP region per
// layer and call), each writing its own rows.
#pragma once

#include <recurrent/detail/team.hpp>
#include <recurrent/layers/sequence.hpp>
#include <recurrent/layers/stack_options.hpp>

#include <Eigen/Core>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace recurrent {

namespace detail {

/// Reverses every sequence of a batch in time, within its own length:
///
///     out(:, t·B + b) = in(:, (len_b − 1 − t)·B + b)     for t < len_b
///     out(:, t·B + b) = 0                                for t ≥ len_b (padding)
///
/// or, with `accumulate`, adds the first line into `out` and leaves its padding alone. The
/// operation is its own inverse. `in` and `out` must not overlap.
template <typename Scalar>
void reverseInTime(
    const Eigen::Ref<const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>>& in,
    const std::vector<int>& lengths,
    Eigen::Ref<Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>> out, bool accumulate) {
  const auto B = static_cast<Eigen::Index>(lengths.size());
  const Eigen::Index T = in.cols() / B;
  for (Eigen::Index b = 0; b < B; ++b) {
    const Eigen::Index length = lengths[static_cast<std::size_t>(b)];
    for (Eigen::Index t = 0; t < length; ++t) {
      if (accumulate) {
        out.col(t * B + b) += in.col((length - 1 - t) * B + b);
      } else {
        out.col(t * B + b) = in.col((length - 1 - t) * B + b);
      }
    }
    if (!accumulate) {
      for (Eigen::Index t = length; t < T; ++t) out.col(t * B + b).setZero();
    }
  }
}

/// One layer of a Stack: the forward direction's Sequence on the layer's input and, if
/// bidirectional, the reverse direction's on the input reversed in time, with their outputs
/// merged; or, in a reverse stack, the reverse direction's alone. A forward one-direction layer's
/// output and input gradient are its Sequence's own; a reverse layer's are its Sequence's put
/// back in the caller's time order, by the same code as the reverse half of a bidirectional
/// layer.
template <typename Cell>
class StackLayer {
 public:
  using Scalar = typename Cell::Scalar;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using State = typename Cell::State;
  using Parameters = typename Cell::Parameters;

  /// `cells` points at the layer's one or two cells (forward, then reverse), which must outlive
  /// it. With `reverse` (one direction only), the one cell is a reverse direction.
  StackLayer(const Cell* cells, Eigen::Index directions, Merge merge, bool reverse)
      : m_merge(merge), m_reverse(reverse) {
    for (Eigen::Index d = 0; d < directions; ++d) m_sequences.emplace_back(cells[d]);
  }

  Eigen::Index directions() const { return static_cast<Eigen::Index>(m_sequences.size()); }
  const Sequence<Cell>& direction(Eigen::Index d) const {
    return m_sequences[static_cast<std::size_t>(d)];
  }
  void setThreads(int threads) {
    for (Sequence<Cell>& s : m_sequences) s.setThreads(threads);
  }
  /// The regularisation of both directions (Sequence::setRegularization).
  void setRegularization(const Regularization& options) {
    for (Sequence<Cell>& s : m_sequences) s.setRegularization(options);
  }
  /// Restarts the masks' generator of direction d (Sequence::seed).
  void seedDirection(Eigen::Index d, std::uint64_t seed) {
    m_sequences[static_cast<std::size_t>(d)].seed(seed);
  }
  /// Every direction's precisions (Sequence::setPrecision).
  void setPrecision(Precision precision, Precision input) {
    for (Sequence<Cell>& s : m_sequences) s.setPrecision(precision, input);
  }

  /// The merged output of the last forward, and dL/d(input) of the last backward.
  const Matrix& output() const { return ownBuffers() ? m_output : m_sequences[0].output(); }
  const Matrix& inputGradient() const {
    return ownBuffers() ? m_dx : m_sequences[0].inputGradient();
  }

  /// The layer on `in`, from an initial state per direction (default-constructed: zero; a
  /// one-direction layer reads the one of its direction); with `together`, both directions at
  /// once.
  void run(const Eigen::Ref<const Matrix>& in, const std::vector<int>& lengths,
           const State& initialForward, const State& initialReverse, bool training, bool together);

  /// Backward from dL/d(output) (null: none) and a dL/d(final state) per direction
  /// (default-constructed: none), ADDING into a gradient object per direction (a one-direction
  /// layer uses those of its direction).
  void backward(const Eigen::Ref<const Matrix>* dOutput, const std::vector<int>& lengths,
                const State& dFinalForward, const State& dFinalReverse, Parameters& gradsForward,
                Parameters& gradsReverse, bool together);

 private:
  bool bidirectional() const { return m_sequences.size() == 2; }
  /// Whether output() and inputGradient() are the layer's own buffers: a bidirectional layer
  /// merges two directions, a reverse layer puts its direction's back in time order.
  bool ownBuffers() const { return bidirectional() || m_reverse; }
  static void setSize(Matrix& m, Eigen::Index rows, Eigen::Index cols) {
    if (m.rows() != rows || m.cols() != cols) m.resize(rows, cols);
  }
  static void runSequence(Sequence<Cell>& s, const Eigen::Ref<const Matrix>& x,
                          const std::vector<int>& lengths, const State& start, bool training) {
    if (training) {
      s.forward(x, lengths, start);
    } else {
      s.infer(x, lengths, start);
    }
  }
  static void backSequence(Sequence<Cell>& s, const Eigen::Ref<const Matrix>* dy, const State& dEnd,
                           Parameters& g) {
    if (dy != nullptr) {
      s.backward(*dy, dEnd, g);
    } else {
      s.backward(dEnd, g);
    }
  }

  Merge m_merge;
  bool m_reverse;                           ///< a one-direction layer that reads in reverse
  std::vector<Sequence<Cell>> m_sequences;  ///< forward, then reverse; they refer to the cells
  // A bidirectional or reverse layer's own buffers (a forward layer uses its Sequence's).
  Matrix m_xReversed;   ///< the layer's input, each sequence reversed in time
  Matrix m_output;      ///< the output in time order: merged, D·R or R × T·B, or the reverse R
  Matrix m_dyReversed;  ///< the reverse direction's output gradient, reversed in time
  Matrix m_dx;          ///< dL/d(layer input): the directions' input gradients in time order
};

template <typename Cell>
void StackLayer<Cell>::run(const Eigen::Ref<const Matrix>& in, const std::vector<int>& lengths,
                           const State& initialForward, const State& initialReverse, bool training,
                           bool together) {
  if (!ownBuffers()) return runSequence(m_sequences[0], in, lengths, initialForward, training);
  Sequence<Cell>& r = m_sequences.back();
  const Eigen::Index R = r.cell().outputSize(), columns = in.cols();  // R: rows of h
  // A reverse layer's merge is Concat, its output the R rows of its one direction.
  const bool concat = m_merge == Merge::Concat;
  setSize(m_xReversed, in.rows(), columns);
  setSize(m_output, bidirectional() && concat ? 2 * R : R, columns);
  // The reverse direction: its output, back in time order, into the bottom R rows (Concat), or
  // added to the forward's once both have run (Sum).
  const auto reverse = [&] {
    reverseInTime<Scalar>(in, lengths, m_xReversed, false);
    runSequence(r, m_xReversed, lengths, initialReverse, training);
    if (concat) reverseInTime<Scalar>(r.output(), lengths, m_output.bottomRows(R), false);
  };
  if (!bidirectional()) return reverse();
  Sequence<Cell>& f = m_sequences[0];
  runBoth(
      together,
      [&] {
        runSequence(f, in, lengths, initialForward, training);
        m_output.topRows(R) = f.output();
      },
      reverse);
  if (!concat) reverseInTime<Scalar>(r.output(), lengths, m_output, true);
}
template <typename Cell>
void StackLayer<Cell>::backward(const Eigen::Ref<const Matrix>* dOutput,
                                const std::vector<int>& lengths, const State& dFinalForward,
                                const State& dFinalReverse, Parameters& gradsForward,
                                Parameters& gradsReverse, bool together) {
  if (!ownBuffers()) return backSequence(m_sequences[0], dOutput, dFinalForward, gradsForward);
  Sequence<Cell>& r = m_sequences.back();
  const Eigen::Index R = r.cell().outputSize();  // rows of h
  const bool concat = m_merge == Merge::Concat;
  if (dOutput != nullptr) setSize(m_dyReversed, R, dOutput->cols());
  const auto reverse = [&] {
    if (dOutput == nullptr) return backSequence(r, nullptr, dFinalReverse, gradsReverse);
    reverseInTime<Scalar>(concat ? dOutput->bottomRows(R) : dOutput->topRows(R), lengths,
                          m_dyReversed, false);
    const Eigen::Ref<const Matrix> dyReverse(m_dyReversed);
    backSequence(r, &dyReverse, dFinalReverse, gradsReverse);
  };
  const Matrix& dxReversed = r.inputGradient();
  if (!bidirectional()) {
    reverse();
    setSize(m_dx, dxReversed.rows(), dxReversed.cols());
    reverseInTime<Scalar>(dxReversed, lengths, m_dx, false);
    return;
  }
  Sequence<Cell>& f = m_sequences[0];
  runBoth(
      together,
      [&] {
        if (dOutput != nullptr && concat) {
          const Eigen::Ref<const Matrix> dyForward = dOutput->topRows(R);
          backSequence(f, &dyForward, dFinalForward, gradsForward);
        } else {
          backSequence(f, dOutput, dFinalForward, gradsForward);
        }
      },
      reverse);
  setSize(m_dx, f.inputGradient().rows(), f.inputGradient().cols());
  m_dx = f.inputGradient();
  reverseInTime<Scalar>(dxReversed, lengths, m_dx, true);
}
}  // namespace detail
}  // namespace recurrent
