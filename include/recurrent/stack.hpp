// recurrent — stack.hpp: recurrent layers stacked, each run in one or both directions, with
// dropout between them (torch.nn.LSTM / nn.GRU / nn.RNN with num_layers, bidirectional and
// dropout; oneDNN's bidirectional_concat and bidirectional_sum).
#pragma once

#include <recurrent/detail/errors.hpp>
#include <recurrent/dropout.hpp>
#include <recurrent/init.hpp>
#include <recurrent/sequence.hpp>
#include <recurrent/state_dict.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace recurrent {

/// How a bidirectional layer combines the outputs of its two directions at each step.
enum class Merge {
  Concat,  ///< [y_forward; y_reverse], 2·H rows: PyTorch, oneDNN's bidirectional_concat
  Sum,     ///< y_forward + y_reverse, H rows: oneDNN's bidirectional_sum
};

/// Options of a Stack, set in a chain: `StackOptions().numLayers(2).bidirectional().dropout(0.2)`.
class StackOptions {
 public:
  /// Layers, each taking the previous one's output as input (PyTorch's num_layers). Default 1.
  StackOptions& numLayers(Eigen::Index layers) {
    m_numLayers = layers;
    return *this;
  }
  /// Each layer runs a second cell over every sequence in reverse (PyTorch's bidirectional).
  StackOptions& bidirectional(bool on = true) {
    m_bidirectional = on;
    return *this;
  }
  /// How the two directions' outputs are combined (bidirectional only). Default Concat.
  StackOptions& merge(Merge merge) {
    m_merge = merge;
    return *this;
  }
  /// Dropout probability on the output of every layer but the last, in training forward only
  /// (PyTorch's dropout). Default 0.
  StackOptions& dropout(double p) {
    m_dropout = p;
    return *this;
  }
  /// The seed of the dropout masks. Default 0.
  StackOptions& seed(std::uint64_t seed) {
    m_seed = seed;
    return *this;
  }

  Eigen::Index numLayers() const { return m_numLayers; }
  bool bidirectional() const { return m_bidirectional; }
  Merge merge() const { return m_merge; }
  double dropout() const { return m_dropout; }
  std::uint64_t seed() const { return m_seed; }

 private:
  Eigen::Index m_numLayers = 1;
  bool m_bidirectional = false;
  Merge m_merge = Merge::Concat;
  double m_dropout = 0.0;
  std::uint64_t m_seed = 0;
};

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

/// Calls f(name, tensor) for every tensor of `count` cells' parameters, cell k being layer
/// k / directions in direction k % directions, with PyTorch's multi-layer names.
template <typename Get, typename F>
void forEachStackTensor(Eigen::Index count, Eigen::Index directions, Get&& parametersOf, F&& f) {
  for (Eigen::Index k = 0; k < count; ++k) {
    const Eigen::Index layer = k / directions;
    const bool reverse = k % directions == 1;
    parametersOf(k).forEach([&](const char* name, auto& tensor) {
      const std::string full = layerTensorName(name, layer, reverse);
      f(full.c_str(), tensor);
    });
  }
}

/// Runs a() and b(), at the same time on two threads if `together` (and OpenMP is on), else one
/// after the other. An exception thrown by either is rethrown on the calling thread.
template <typename A, typename B>
void runBoth(bool together, A&& a, B&& b) {
#ifdef _OPENMP
  if (together) {
    std::exception_ptr errors[2];
#pragma omp parallel num_threads(2)
    {
      const int rank = omp_get_thread_num();
      try {
        if (omp_get_num_threads() == 1) {
          a();
          b();
        } else if (rank == 0) {
          a();
        } else {
          b();
        }
      } catch (...) {
        errors[rank] = std::current_exception();
      }
    }
    for (const std::exception_ptr& e : errors) {
      if (e) std::rethrow_exception(e);
    }
    return;
  }
#endif
  (void)together;
  a();
  b();
}

/// Whether a parallel region opened inside one more region would get more than one thread
/// (OpenMP's nested parallelism is on and has a level to spare).
inline bool nestedParallelism() {
#ifdef _OPENMP
  return omp_get_max_active_levels() > omp_get_active_level() + 1;
#else
  return false;
#endif
}

inline const char* directionName(Eigen::Index direction) {
  return direction == 0 ? "forward" : "reverse";
}

}  // namespace detail

/// Tensors shaped like the parameters of a Stack, one `Params` (a cell's parameter type) per
/// layer and direction: what Stack::zeroGradients() returns and Stack::backward() adds into.
/// `grads(layer, direction).weight_ih` is one tensor; forEach() names them as PyTorch does
/// (weight_ih_l0, ..., bias_hh_l1_reverse), so a ParameterList or StateDict can hold them.
template <typename Params>
class StackGradients {
 public:
  StackGradients() = default;
  /// `cells` holds numLayers · numDirections parameter objects, layer by layer, forward first.
  StackGradients(Eigen::Index numLayers, Eigen::Index numDirections, std::vector<Params> cells)
      : m_layers(numLayers), m_directions(numDirections), m_cells(std::move(cells)) {
    if (numLayers < 0 || numDirections < 1 || numDirections > 2 ||
        static_cast<Eigen::Index>(m_cells.size()) != numLayers * numDirections) {
      detail::fail("StackGradients: needs numLayers · numDirections (", numLayers, " · ",
                   numDirections, ") parameter objects and 1 or 2 directions, got ",
                   m_cells.size());
    }
  }

  Eigen::Index numLayers() const { return m_layers; }
  Eigen::Index numDirections() const { return m_directions; }

  /// The tensors of one layer and direction (0 forward, 1 reverse).
  Params& operator()(Eigen::Index layer, Eigen::Index direction = 0) {
    return m_cells[index(layer, direction)];
  }
  const Params& operator()(Eigen::Index layer, Eigen::Index direction = 0) const {
    return m_cells[index(layer, direction)];
  }

  /// Sets every tensor to zero, keeping the shapes.
  void setZero() {
    for (Params& p : m_cells) p.setZero();
  }

  /// Calls f(name, tensor) for each tensor, in PyTorch's state_dict order and names.
  template <typename F>
  void forEach(F&& f) {
    detail::forEachStackTensor(
        m_layers * m_directions, m_directions,
        [this](Eigen::Index k) -> Params& { return m_cells[static_cast<std::size_t>(k)]; }, f);
  }
  template <typename F>
  void forEach(F&& f) const {
    detail::forEachStackTensor(
        m_layers * m_directions, m_directions,
        [this](Eigen::Index k) -> const Params& { return m_cells[static_cast<std::size_t>(k)]; },
        f);
  }

 private:
  std::size_t index(Eigen::Index layer, Eigen::Index direction) const {
    if (layer < 0 || layer >= m_layers || direction < 0 || direction >= m_directions) {
      detail::fail("StackGradients: layer ", layer, " direction ", direction,
                   " is outside the stack's ", m_layers, " layers and ", m_directions,
                   " direction(s)");
    }
    return static_cast<std::size_t>(layer * m_directions + direction);
  }

  Eigen::Index m_layers = 0;
  Eigen::Index m_directions = 1;
  std::vector<Params> m_cells;
};

/// The parameters of a Stack's cells, by reference (what Stack::parameters() returns, a view
/// that must not outlive the Stack). forEach() names the tensors as PyTorch's state_dict()
/// does for a multi-layer module: weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0, then
/// the same with _l0_reverse, then _l1, ... — whatever tensors the cell's parameters hold,
/// each with the suffix of its layer and direction.
template <typename CellT>  // Cell, or const Cell for a const Stack
class StackParameters {
 public:
  StackParameters(CellT* cells, Eigen::Index count, Eigen::Index directions)
      : m_cells(cells), m_count(count), m_directions(directions) {}

  template <typename F>
  void forEach(F&& f) const {
    detail::forEachStackTensor(
        m_count, m_directions, [this](Eigen::Index k) -> auto& { return m_cells[k].parameters(); },
        f);
  }

 private:
  CellT* m_cells;
  Eigen::Index m_count;
  Eigen::Index m_directions;
};

/// Stack<Cell>: L recurrent layers, each running one cell over every sequence (or, if
/// bidirectional, a second cell over every sequence in reverse), with dropout between layers —
/// torch.nn.LSTM / nn.GRU / nn.RNN with num_layers, bidirectional and dropout.
///
///     x⁰ = x                                              I × (T·B)
///     for layer l = 0 … L−1, for each sequence b of length n:
///       →h_t = cell(l, 0)(x^l_t, →h_{t−1})                t = 0 … n−1, →h_{−1} = h0[l·D]
///       ←h_s = cell(l, 1)(x^l_{n−1−s}, ←h_{s−1})          s = 0 … n−1, ←h_{−1} = h0[l·D+1]
///       y^l_t = [→h_t; ←h_{n−1−t}]  (Concat)   or   →h_t + ←h_{n−1−t}  (Sum)
///       x^{l+1} = m^l ⊙ y^l    in training forward with dropout p > 0, for l < L−1
///       x^{l+1} = y^l          otherwise (inference, p = 0; never after the last layer)
///     output y = y^{L−1}, zero in padding
///     final state of layer l, direction d: index l·D + d (PyTorch's h_n, c_n order)
///
/// The reverse direction starts at each sequence's own last step n−1, not at the padded end T−1
/// (PyTorch's packed sequences): its final state is the state after reading x_0. Dropout is
/// inverted dropout (m = 1/(1−p) with probability 1−p, else 0; see dropout.hpp), drawn anew
/// by each training forward() from a generator seeded by StackOptions::seed() or seed():
/// the same seed and the same calls give the same masks on every platform.
///
/// Layout (legend: I input size, H a cell's output size, D directions, L layers):
///
///     input    x   I × (T·B)      time-major: step t of sequence b is column t·B + b
///     output   y   D·H × (T·B)    Concat: the forward direction's rows first; Sum: H rows
///     states       L·D of Cell::State, each H × B (and c, hiddenSize × B, for LSTM)
///
/// Layer l > 0 takes D·H (Concat) or H (Sum) inputs, where H is the output size of layer
/// l−1's cells (cell.outputSize(): the hidden size, or the projection size of a projected
/// LSTM). Cells are made by `makeCell(inputSize)`, so a cell with more constructor options
/// stacks as well; the two directions of a layer must have one output and hidden size.
///
/// Parameter names are PyTorch's: `dict.add("rnn.", stack)` (StateDict) and
/// `params.add(stack.parameters(), grads, "rnn.")` (ParameterList) give rnn.weight_ih_l0, ...,
/// rnn.bias_hh_l1_reverse, so a state_dict saved from the PyTorch module loads as it is.
///
/// Backward takes dL/dy (and optionally dL/d(final states)), ADDS every parameter gradient
/// into a StackGradients, and leaves dL/dx and dL/d(initial states) to read. Every entry point
/// checks its arguments first and throws std::invalid_argument without changing anything.
/// Repeated calls with one shape allocate nothing. Each layer and direction is one Sequence; the
/// two directions of a layer run at the same time when there are threads for both (setThreads).
///
/// A Stack owns its cells; it can be moved but not copied.
template <typename Cell>
class Stack {
 public:
  using Scalar = typename Cell::Scalar;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using State = typename Cell::State;
  using CellParameters = typename Cell::Parameters;
  using Gradients = StackGradients<CellParameters>;

  /// A stack of Cell(inputSize, hiddenSize) cells (layer l > 0: Cell(D·H or H, hiddenSize)),
  /// parameters zero; call initialize() or load a file.
  Stack(Eigen::Index inputSize, Eigen::Index hiddenSize,
        const StackOptions& options = StackOptions())
      : Stack(inputSize, options,
              [hiddenSize](Eigen::Index cellInput) { return Cell(cellInput, hiddenSize); }) {}

  /// A stack whose cells are made by `makeCell(cellInputSize)`, which must return a Cell of
  /// that input size: layer 0's cells get `inputSize`, layer l's the size of layer l−1's output.
  /// E.g. `[](Eigen::Index in) { return RNNCell<float>(in, 64, Nonlinearity::Relu); }`.
  template <typename MakeCell,
            typename = std::enable_if_t<std::is_invocable_r_v<Cell, MakeCell&, Eigen::Index>>>
  Stack(Eigen::Index inputSize, const StackOptions& options, MakeCell&& makeCell)
      : m_numLayers(options.numLayers()),
        m_directions(options.bidirectional() ? 2 : 1),
        m_merge(options.merge()),
        m_dropout(detail::checkProbability("Stack", options.dropout())) {
    detail::checkPositive("Stack", "input_size", inputSize);
    detail::checkPositive("Stack", "num_layers", m_numLayers);
    if (!options.bidirectional() && options.merge() != Merge::Concat) {
      detail::fail("Stack: merge applies to a bidirectional stack; set bidirectional() too");
    }
    const Eigen::Index count = m_numLayers * m_directions;
    m_cells.reserve(static_cast<std::size_t>(count));
    Eigen::Index cellInput = inputSize;
    for (Eigen::Index l = 0; l < m_numLayers; ++l) {
      for (Eigen::Index d = 0; d < m_directions; ++d) {
        m_cells.push_back(makeCell(cellInput));
        const Cell& cell = m_cells.back();
        if (cell.inputSize() != cellInput) {
          detail::fail("Stack: makeCell(", cellInput, ") must return a cell of input size ",
                       cellInput, " (layer ", l, "), got ", cell.inputSize());
        }
        const Cell& first = m_cells[static_cast<std::size_t>(l * m_directions)];
        if (cell.outputSize() != first.outputSize() || cell.hiddenSize() != first.hiddenSize()) {
          detail::fail("Stack: the two directions of layer ", l,
                       " must have one output size and hidden size, got ", first.outputSize(),
                       " and ", first.hiddenSize(), " forward, ", cell.outputSize(), " and ",
                       cell.hiddenSize(), " reverse");
        }
      }
      cellInput = layerOutputRows(l);
    }
    // The shape of every parameter tensor, against which calls check the cells and gradients.
    m_shapes.resize(m_cells.size());
    for (std::size_t k = 0; k < m_cells.size(); ++k) {
      m_cells[k].zeroGradients().forEach([&](const char*, const auto& tensor) {
        m_shapes[k].push_back(Shape{tensor.rows(), tensor.cols()});
      });
    }
    m_sequences.reserve(m_cells.size());
    for (const Cell& cell : m_cells) m_sequences.emplace_back(cell);
    m_dropouts.reserve(static_cast<std::size_t>(m_numLayers - 1));
    for (Eigen::Index l = 0; l + 1 < m_numLayers; ++l) m_dropouts.emplace_back(m_dropout);
    m_work.resize(static_cast<std::size_t>(m_numLayers));
    seed(options.seed());
  }

  Stack(const Stack&) = delete;
  Stack& operator=(const Stack&) = delete;
  // Moving keeps the cells where they are (in the vector's storage): the Sequences stay valid.
  Stack(Stack&&) noexcept = default;
  Stack& operator=(Stack&&) noexcept = default;
  ~Stack() = default;

  // ---- shape ------------------------------------------------------------------------------

  Eigen::Index numLayers() const { return m_numLayers; }
  /// 2 for a bidirectional stack, else 1.
  Eigen::Index numDirections() const { return m_directions; }
  bool bidirectional() const { return m_directions == 2; }
  Merge merge() const { return m_merge; }
  /// Rows of the input x.
  Eigen::Index inputSize() const { return m_cells.front().inputSize(); }
  /// Rows of the output y: D·H (Concat) or H (Sum, or one direction), H = the last layer's
  /// cells' outputSize().
  Eigen::Index outputSize() const { return layerOutputRows(m_numLayers - 1); }

  /// The cell of one layer and direction (0 forward, 1 reverse).
  Cell& cell(Eigen::Index layer, Eigen::Index direction = 0) {
    return m_cells[cellIndex(layer, direction, "Stack::cell")];
  }
  const Cell& cell(Eigen::Index layer, Eigen::Index direction = 0) const {
    return m_cells[cellIndex(layer, direction, "Stack::cell")];
  }

  // ---- parameters ---------------------------------------------------------------------------

  /// Every cell's parameters by PyTorch's names (a view: see StackParameters).
  StackParameters<Cell> parameters() { return {m_cells.data(), count(), m_directions}; }
  StackParameters<const Cell> parameters() const { return {m_cells.data(), count(), m_directions}; }

  /// Zero tensors shaped like the parameters, to accumulate gradients into.
  Gradients zeroGradients() const {
    std::vector<CellParameters> cells;
    cells.reserve(m_cells.size());
    for (const Cell& c : m_cells) cells.push_back(c.zeroGradients());
    return Gradients(m_numLayers, m_directions, std::move(cells));
  }

  /// Zero initial states for a batch of `batch` sequences: L·D states, index layer·D + direction.
  std::vector<State> zeroState(Eigen::Index batch) const {
    std::vector<State> states;
    states.reserve(m_cells.size());
    for (const Cell& c : m_cells) states.push_back(c.zeroState(batch));
    return states;
  }

  /// PyTorch's initialisation of every cell, layer by layer and forward before reverse (the
  /// order of the module's parameters()), with `options` applied to each cell (see init.hpp).
  /// Throws before drawing anything if an option does not apply to the cell.
  template <typename Rng>
  void initialize(Rng& rng, const InitOptions& options = InitOptions()) {
    for (Cell& c : m_cells) recurrent::initialize(c, rng, options);
  }

  // ---- dropout ---------------------------------------------------------------------------

  double dropout() const { return m_dropout; }
  /// Sets the dropout probability for the following training forwards (0 turns it off).
  void setDropout(double p) {
    m_dropout = detail::checkProbability("Stack::setDropout", p);
    for (Dropout<Scalar>& d : m_dropouts) d.setProbability(p);
  }
  /// Restarts the dropout masks: the following training forwards draw the masks that a Stack
  /// made with this seed would draw. Layer l's masks come from their own generator, seeded
  /// from `seed` and l.
  void seed(std::uint64_t seed) {
    for (std::size_t l = 0; l < m_dropouts.size(); ++l) {
      m_dropouts[l].seed(detail::streamSeed(seed, static_cast<std::uint64_t>(l)));
    }
  }
  /// The mask the last forward() applied to the output of layer `layer` (0 ≤ layer < L−1):
  /// entries 0 or 1/(1−p), shaped like that output. Throws if the last call applied none
  /// (infer(), or dropout 0).
  const Matrix& dropoutMask(Eigen::Index layer) const {
    if (layer < 0 || layer + 1 >= m_numLayers) {
      detail::fail("Stack::dropoutMask: dropout follows layers 0..", m_numLayers - 2, ", got ",
                   layer);
    }
    if (!m_dropped) {
      detail::fail("Stack::dropoutMask: the last call applied no dropout (",
                   m_hasTape ? "dropout is 0" : "it was not a training forward()", ")");
    }
    return m_dropouts[static_cast<std::size_t>(layer)].mask();
  }

  // ---- forward -----------------------------------------------------------------------------

  /// Training forward from zero states: keeps the tape, applies dropout between layers.
  /// Returns the output (outputSize() × T·B).
  const Matrix& forward(const Eigen::Ref<const Matrix>& x, const std::vector<int>& lengths) {
    run(x, lengths, nullptr, true, "Stack::forward");
    return output();
  }
  /// Training forward from `initial` (L·D states, index layer·D + direction). Passing
  /// finalState() carries the state over (truncated BPTT).
  const Matrix& forward(const Eigen::Ref<const Matrix>& x, const std::vector<int>& lengths,
                        const std::vector<State>& initial) {
    run(x, lengths, &initial, true, "Stack::forward");
    return output();
  }
  /// Inference forward: no tape, no dropout.
  const Matrix& infer(const Eigen::Ref<const Matrix>& x, const std::vector<int>& lengths) {
    run(x, lengths, nullptr, false, "Stack::infer");
    return output();
  }
  const Matrix& infer(const Eigen::Ref<const Matrix>& x, const std::vector<int>& lengths,
                      const std::vector<State>& initial) {
    run(x, lengths, &initial, false, "Stack::infer");
    return output();
  }

  /// The output of the last forward or infer, outputSize() × (T·B), zero in padding.
  const Matrix& output() const { return layerOutput(m_numLayers - 1); }
  /// The final state of every layer and direction after the last forward or infer, index
  /// layer·D + direction; the reverse direction's is its state after reading step 0.
  const std::vector<State>& finalState() const { return m_final; }
  /// True after forward() and until the next infer(): backward() can run.
  bool hasTape() const { return m_hasTape; }

  // ---- backward ----------------------------------------------------------------------------

  /// Backward from dL/dy (outputSize() × T·B; padding ignored). ADDS every parameter gradient
  /// into `grads`; dL/dx and dL/d(initial states) are then available.
  void backward(const Eigen::Ref<const Matrix>& dOutput, Gradients& grads) {
    runBackward(&dOutput, nullptr, grads);
  }
  /// Backward from dL/dy and dL/d(final states) (L·D states, index layer·D + direction).
  void backward(const Eigen::Ref<const Matrix>& dOutput, const std::vector<State>& dFinal,
                Gradients& grads) {
    runBackward(&dOutput, &dFinal, grads);
  }
  /// Backward from dL/d(final states) alone.
  void backward(const std::vector<State>& dFinal, Gradients& grads) {
    runBackward(nullptr, &dFinal, grads);
  }

  /// dL/dx of the last backward, I × (T·B), zero in padding.
  const Matrix& inputGradient() const { return layerInputGradient(0); }
  /// dL/d(initial states) of the last backward, L·D states, index layer·D + direction.
  const std::vector<State>& initialStateGradient() const { return m_dInitial; }

  /// Threads for the following calls. 0 (the default) takes OpenMP's default number, and runs
  /// two directions at the same time only where a direction's work is worth a thread. A
  /// bidirectional layer given two or more runs its two directions at the same time, each on
  /// half of them (one each unless OpenMP's nested parallelism is on); otherwise each
  /// direction's Sequence gets them all (see Sequence::setThreads). Without OpenMP every call
  /// runs on the calling thread.
  void setThreads(int threads) {
    if (threads < 0) detail::fail("Stack::setThreads: threads must be >= 0, got ", threads);
    m_threads = threads;
  }
  int threads() const { return m_threads; }

 private:
  using Index = Eigen::Index;
  struct Shape {
    Index rows, cols;
  };
  /// A bidirectional layer's own buffers (a one-direction layer uses its Sequence's).
  struct LayerWork {
    Matrix xReversed;   ///< the layer's input, each sequence reversed in time
    Matrix output;      ///< the merged output, D·H or H × T·B
    Matrix dyReversed;  ///< the reverse direction's output gradient, reversed in time
    Matrix dx;          ///< dL/d(layer input): both directions' input gradients summed
  };

  Index count() const { return m_numLayers * m_directions; }

  std::size_t cellIndex(Index layer, Index direction, const char* where) const {
    if (layer < 0 || layer >= m_numLayers) {
      detail::fail(where, ": layer must be in 0..", m_numLayers - 1, ", got ", layer);
    }
    if (direction < 0 || direction >= m_directions) {
      detail::fail(where, ": direction must be in 0..", m_directions - 1, ", got ", direction);
    }
    return static_cast<std::size_t>(layer * m_directions + direction);
  }

  Index layerOutputRows(Index l) const {
    const Index H = m_cells[static_cast<std::size_t>(l * m_directions)].outputSize();
    return m_merge == Merge::Concat ? m_directions * H : H;
  }

  Sequence<Cell>& sequence(Index l, Index d) {
    return m_sequences[static_cast<std::size_t>(l * m_directions + d)];
  }
  const Matrix& layerOutput(Index l) const {
    return m_directions == 1 ? m_sequences[static_cast<std::size_t>(l)].output()
                             : m_work[static_cast<std::size_t>(l)].output;
  }
  const Matrix& layerInputGradient(Index l) const {
    return m_directions == 1 ? m_sequences[static_cast<std::size_t>(l)].inputGradient()
                             : m_work[static_cast<std::size_t>(l)].dx;
  }

  static void setSize(Matrix& m, Index rows, Index cols) {
    if (m.rows() != rows || m.cols() != cols) m.resize(rows, cols);
  }
  template <typename T>
  static void setCount(std::vector<T>& v, std::size_t n) {
    if (v.size() != n) v.resize(n);
  }

  // ---- argument checks (before anything changes) --------------------------------------------

  /// Every parameter tensor of every cell still has the shape it was made with.
  void checkCells(const char* where) const {
    for (std::size_t k = 0; k < m_cells.size(); ++k) {
      checkTensors(where, "parameter", m_cells[k].parameters(), k);
    }
  }

  template <typename Params>
  void checkTensors(const char* where, const char* what, const Params& params,
                    std::size_t k) const {
    const std::vector<Shape>& shapes = m_shapes[k];
    std::size_t i = 0;
    params.forEach([&](const char* name, const auto& tensor) {
      const Index l = static_cast<Index>(k) / m_directions;
      const bool reverse = static_cast<Index>(k) % m_directions == 1;
      if (i >= shapes.size()) {
        detail::fail(where, ": ", what, " ", layerTensorName(name, l, reverse),
                     " is not a tensor of the stack's cells");
      }
      if (tensor.rows() != shapes[i].rows || tensor.cols() != shapes[i].cols) {
        detail::fail(where, ": ", what, " ", layerTensorName(name, l, reverse), " must be ",
                     shapes[i].rows, " x ", shapes[i].cols, ", got ", tensor.rows(), " x ",
                     tensor.cols());
      }
      ++i;
    });
    if (i != shapes.size()) {
      detail::fail(where, ": ", what, "s of layer ", static_cast<Index>(k) / m_directions,
                   " must be ", shapes.size(), " tensors, got ", i);
    }
  }

  void checkStates(const char* where, const char* what, const std::vector<State>& states,
                   Index B) const {
    if (static_cast<Index>(states.size()) != count()) {
      detail::fail(where, ": ", what, " must hold ", count(),
                   " states (num_layers · num_directions = ", m_numLayers, " · ", m_directions,
                   "), got ", states.size());
    }
    for (Index k = 0; k < count(); ++k) {
      const Cell& c = m_cells[static_cast<std::size_t>(k)];
      const State& s = states[static_cast<std::size_t>(k)];
      if (s.h.rows() != c.outputSize() || s.h.cols() != B) {
        detail::fail(where, ": ", what, "[", k, "] (layer ", k / m_directions, ", ",
                     detail::directionName(k % m_directions), ") h must be ", c.outputSize(), " x ",
                     B, ", got ", s.h.rows(), " x ", s.h.cols());
      }
      if constexpr (Cell::kHasCellState) {
        if (s.c.rows() != c.hiddenSize() || s.c.cols() != B) {
          detail::fail(where, ": ", what, "[", k, "] (layer ", k / m_directions, ", ",
                       detail::directionName(k % m_directions), ") c must be ", c.hiddenSize(),
                       " x ", B, ", got ", s.c.rows(), " x ", s.c.cols());
        }
      }
    }
  }

  void checkForward(const Eigen::Ref<const Matrix>& x, const std::vector<int>& lengths,
                    const std::vector<State>* initial, const char* where) const {
    checkCells(where);
    detail::checkBatch(where, x.rows(), x.cols(), inputSize(), "the stack's input_size", lengths);
    const auto B = static_cast<Index>(lengths.size());
    if (initial != nullptr) checkStates(where, "initial", *initial, B);
  }

  void checkBackward(const Eigen::Ref<const Matrix>* dOutput, const std::vector<State>* dFinal,
                     const Gradients& grads) const {
    const char* where = "Stack::backward";
    if (!m_hasTape) {
      detail::fail(
          where, ": needs the tape of a training forward(); ",
          m_T == 0 ? "no forward() has run" : "the last call was infer(), which keeps none");
    }
    checkCells(where);
    if (grads.numLayers() != m_numLayers || grads.numDirections() != m_directions) {
      detail::fail(where, ": gradients must be for ", m_numLayers, " layers and ", m_directions,
                   " direction(s) (zeroGradients()), got ", grads.numLayers(), " and ",
                   grads.numDirections());
    }
    for (Index k = 0; k < count(); ++k) {
      checkTensors(where, "gradient", grads(k / m_directions, k % m_directions),
                   static_cast<std::size_t>(k));
    }
    if (dOutput != nullptr) {
      detail::checkShape(where, "output gradient", dOutput->rows(), dOutput->cols(), outputSize(),
                         m_T * m_B);
    }
    if (dFinal != nullptr) checkStates(where, "final-state gradient", *dFinal, m_B);
  }

  // ---- threads -----------------------------------------------------------------------------

  /// Whether the two directions of a layer run at the same time, and each Sequence's threads.
  /// Automatically (0 threads) only where a direction of the first layer has enough work to
  /// pay for starting a thread. Running together, a Sequence gets half the threads only where
  /// a nested region would get them; else one, so that it opens no nested region (which costs
  /// a team each call).
  bool assignThreads() {
    const int total = m_threads > 0 ? m_threads : detail::defaultThreads();
    bool together = m_directions == 2 && total >= 2;
    if (together && m_threads == 0) {
      const Cell& c = m_cells.front();
      double steps = 0;
      for (int length : m_lengths) steps += length;
      const double flops = 2.0 * steps * double(Cell::kGates) * double(c.hiddenSize()) *
                           double(c.inputSize() + c.hiddenSize());
      together = flops >= kMinDirectionFlopsToShare;
    }
    const int each =
        !together ? m_threads : (detail::nestedParallelism() ? std::max(1, total / 2) : 1);
    for (Sequence<Cell>& s : m_sequences) s.setThreads(each);
    return together;
  }

  // ---- forward -----------------------------------------------------------------------------

  void run(const Eigen::Ref<const Matrix>& x, const std::vector<int>& lengths,
           const std::vector<State>* initial, bool training, const char* where) {
    checkForward(x, lengths, initial, where);
    // Nothing below throws (but for memory): the object changes only now.
    m_hasTape = false;
    m_lengths = lengths;
    m_B = static_cast<Index>(lengths.size());
    m_T = x.cols() / m_B;
    m_dropped = training && m_dropout > 0 && m_numLayers > 1;
    m_together = assignThreads();
    setCount(m_final, m_cells.size());
    for (Index l = 0; l < m_numLayers; ++l) {
      if (l == 0) {
        forwardLayer(0, x, initial, training);
      } else {
        forwardLayer(
            l,
            m_dropped ? m_dropouts[static_cast<std::size_t>(l - 1)].output() : layerOutput(l - 1),
            initial, training);
      }
      if (m_dropped && l + 1 < m_numLayers) {
        m_dropouts[static_cast<std::size_t>(l)].forward(layerOutput(l));
      }
    }
    m_hasTape = training;
  }

  static void runSequence(Sequence<Cell>& s, const Eigen::Ref<const Matrix>& x,
                          const std::vector<int>& lengths, const State* initial, bool training) {
    if (training) {
      if (initial != nullptr) {
        s.forward(x, lengths, *initial);
      } else {
        s.forward(x, lengths);
      }
    } else {
      if (initial != nullptr) {
        s.infer(x, lengths, *initial);
      } else {
        s.infer(x, lengths);
      }
    }
  }

  /// Layer l on its input `in`: the forward direction on `in`, the reverse direction on `in`
  /// reversed in time, and their outputs merged.
  void forwardLayer(Index l, const Eigen::Ref<const Matrix>& in, const std::vector<State>* initial,
                    bool training) {
    const Index D = m_directions;
    const auto first = static_cast<std::size_t>(l * D);
    Sequence<Cell>& f = sequence(l, 0);
    if (D == 1) {
      runSequence(f, in, m_lengths, initial != nullptr ? &(*initial)[first] : nullptr, training);
      m_final[first] = f.finalState();
      return;
    }

    // Both directions at once when there are threads for them; each writes its own rows.
    LayerWork& w = m_work[static_cast<std::size_t>(l)];
    Sequence<Cell>& r = sequence(l, 1);
    const Index columns = m_T * m_B;
    const Index H = f.cell().outputSize();
    const bool concat = m_merge == Merge::Concat;
    setSize(w.xReversed, in.rows(), columns);
    setSize(w.output, concat ? 2 * H : H, columns);
    detail::runBoth(
        m_together,
        [&] {
          runSequence(f, in, m_lengths, initial != nullptr ? &(*initial)[first] : nullptr,
                      training);
          w.output.topRows(H) = f.output();
        },
        [&] {
          detail::reverseInTime<Scalar>(in, m_lengths, w.xReversed, false);
          runSequence(r, w.xReversed, m_lengths,
                      initial != nullptr ? &(*initial)[first + 1] : nullptr, training);
          if (concat) {
            detail::reverseInTime<Scalar>(r.output(), m_lengths, w.output.bottomRows(H), false);
          }
        });
    if (!concat) detail::reverseInTime<Scalar>(r.output(), m_lengths, w.output, true);
    m_final[first] = f.finalState();
    m_final[first + 1] = r.finalState();
  }

  // ---- backward ----------------------------------------------------------------------------

  void runBackward(const Eigen::Ref<const Matrix>* dOutput, const std::vector<State>* dFinal,
                   Gradients& grads) {
    checkBackward(dOutput, dFinal, grads);
    m_together = assignThreads();
    setCount(m_dInitial, m_cells.size());
    backwardLayer(m_numLayers - 1, dOutput, dFinal, grads);
    for (Index l = m_numLayers - 2; l >= 0; --l) {
      // dL/d(output of layer l) = dL/d(input of layer l+1), through the dropout mask if any.
      const Matrix& dx = layerInputGradient(l + 1);
      const Eigen::Ref<const Matrix> dy(
          m_dropped ? m_dropouts[static_cast<std::size_t>(l)].backward(dx) : dx);
      backwardLayer(l, &dy, dFinal, grads);
    }
  }

  static void backwardSequence(Sequence<Cell>& s, const Eigen::Ref<const Matrix>* dOutput,
                               const State* dFinal, CellParameters& grads) {
    if (dOutput != nullptr && dFinal != nullptr) {
      s.backward(*dOutput, *dFinal, grads);
    } else if (dOutput != nullptr) {
      s.backward(*dOutput, grads);
    } else {
      s.backward(*dFinal, grads);
    }
  }

  void backwardLayer(Index l, const Eigen::Ref<const Matrix>* dOutput,
                     const std::vector<State>* dFinal, Gradients& grads) {
    const Index D = m_directions;
    const auto first = static_cast<std::size_t>(l * D);
    Sequence<Cell>& f = sequence(l, 0);
    const State* dFinalForward = dFinal != nullptr ? &(*dFinal)[first] : nullptr;
    if (D == 1) {
      backwardSequence(f, dOutput, dFinalForward, grads(l, 0));
      m_dInitial[first] = f.initialStateGradient();
      return;
    }

    LayerWork& w = m_work[static_cast<std::size_t>(l)];
    Sequence<Cell>& r = sequence(l, 1);
    const State* dFinalReverse = dFinal != nullptr ? &(*dFinal)[first + 1] : nullptr;
    const Index H = f.cell().outputSize();
    const Index columns = m_T * m_B;
    const bool concat = m_merge == Merge::Concat;
    if (dOutput != nullptr) setSize(w.dyReversed, H, columns);
    // Both directions at once when there are threads for them (see forwardLayer).
    detail::runBoth(
        m_together,
        [&] {
          if (dOutput == nullptr) {
            backwardSequence(f, nullptr, dFinalForward, grads(l, 0));
          } else if (concat) {
            const Eigen::Ref<const Matrix> dyForward = dOutput->topRows(H);
            backwardSequence(f, &dyForward, dFinalForward, grads(l, 0));
          } else {
            backwardSequence(f, dOutput, dFinalForward, grads(l, 0));
          }
        },
        [&] {
          if (dOutput == nullptr) {
            backwardSequence(r, nullptr, dFinalReverse, grads(l, 1));
            return;
          }
          detail::reverseInTime<Scalar>(concat ? dOutput->bottomRows(H) : dOutput->topRows(H),
                                        m_lengths, w.dyReversed, false);
          const Eigen::Ref<const Matrix> dyReverse(w.dyReversed);
          backwardSequence(r, &dyReverse, dFinalReverse, grads(l, 1));
        });
    setSize(w.dx, f.inputGradient().rows(), columns);
    w.dx = f.inputGradient();
    detail::reverseInTime<Scalar>(r.inputGradient(), m_lengths, w.dx, true);
    m_dInitial[first] = f.initialStateGradient();
    m_dInitial[first + 1] = r.initialStateGradient();
  }

  Index m_numLayers;
  Index m_directions;
  Merge m_merge;
  double m_dropout;
  int m_threads = 0;
  /// A direction with less work than this many flops runs on the calling thread when the
  /// threads are automatic: about the cost of waking a second thread and joining it.
  static constexpr double kMinDirectionFlopsToShare = 1.0e6;

  std::vector<Cell> m_cells;                 ///< index layer·D + direction
  std::vector<std::vector<Shape>> m_shapes;  ///< every cell's parameter shapes
  std::vector<Sequence<Cell>> m_sequences;   ///< one per cell; they refer to m_cells
  std::vector<Dropout<Scalar>> m_dropouts;   ///< after layers 0..L−2
  std::vector<LayerWork> m_work;             ///< per layer (bidirectional)

  // The last forward: lengths, shape, whether dropout was applied and a tape kept.
  std::vector<int> m_lengths;
  Index m_T = 0, m_B = 0;
  bool m_dropped = false;
  bool m_hasTape = false;
  bool m_together = false;  ///< the directions run at the same time
  std::vector<State> m_final, m_dInitial;
};

}  // namespace recurrent
