// recurrent — layers/stack.hpp: recurrent layers stacked, each run in one or both directions,
// with dropout between them (torch.nn.LSTM / nn.GRU / nn.RNN with num_layers, bidirectional and
// dropout; oneDNN's bidirectional_concat and bidirectional_sum; ONNX's direction "reverse").
#pragma once

#include <recurrent/detail/errors.hpp>
#include <recurrent/detail/team.hpp>
#include <recurrent/layers/sequence.hpp>
#include <recurrent/layers/stack_layer.hpp>
#include <recurrent/layers/stack_options.hpp>
#include <recurrent/layers/stack_parameters.hpp>
#include <recurrent/train/dropout.hpp>
#include <recurrent/train/init.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace recurrent {

namespace detail {
inline const char* directionName(bool reverse) { return reverse ? "reverse" : "forward"; }
}  // namespace detail

/// Stack<Cell>: L recurrent layers, each running one cell over every sequence (or, if
/// bidirectional, a second cell over every sequence in reverse), with dropout between layers —
/// torch.nn.LSTM / nn.GRU / nn.RNN with num_layers, bidirectional and dropout.
/// A reverse stack (StackOptions::reverse(), ONNX's direction "reverse") has one direction per
/// layer, the reverse one alone: y^l_t = ←h_{n−1−t}, its final state ←h after reading x_0.
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
///     reverse stack: D = 1, direction 0 runs as ←h above, h0[l] its start, y^l_t = ←h_{n−1−t}
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
/// rnn.bias_hh_l1_reverse, so a state_dict saved from the PyTorch module loads as it is. A
/// reverse stack's tensors all carry the suffix _reverse (weight_ih_l0_reverse, ...), so that a
/// file says which way its layers read and never loads into a forward stack.
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
  static_assert(CellContract<Cell>::value,
                "recurrent: Stack<Cell> needs a type that meets the cell contract "
                "(cells/cell.hpp; see the messages above)");

 public:
  using Scalar = typename Cell::Scalar;                                  ///< float or double
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;  ///< dynamic matrix
  using State = typename Cell::State;                ///< the state of one layer and direction
  using CellParameters = typename Cell::Parameters;  ///< the tensors of one cell
  /// What backward() adds into: one CellParameters per layer and direction.
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
        m_reverse(options.reverse()),
        m_merge(options.merge()),
        m_dropout(detail::checkProbability("Stack", options.dropout())) {
    detail::checkPositive("Stack", "input_size", inputSize);
    detail::checkPositive("Stack", "num_layers", m_numLayers);
    if (!options.bidirectional() && options.merge() != Merge::Concat) {
      detail::fail("Stack: merge applies to a bidirectional stack; set bidirectional() too");
    }
    if (options.bidirectional() && options.reverse()) {
      detail::fail(
          "Stack: reverse applies to a one-direction stack (a bidirectional one already "
          "reads in reverse); set bidirectional() or reverse(), not both");
    }
    // The cells never move after this loop (the vector is sized once): the layers' Sequences
    // refer to them.
    m_cells.reserve(static_cast<std::size_t>(count()));
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
    for (const Cell& cell : m_cells) m_sizes.push_back(cell.sizes());
    m_layers.reserve(static_cast<std::size_t>(m_numLayers));
    for (Eigen::Index l = 0; l < m_numLayers; ++l) {
      m_layers.emplace_back(&m_cells[static_cast<std::size_t>(l * m_directions)], m_directions,
                            m_merge, m_reverse);
    }
    m_dropouts.reserve(static_cast<std::size_t>(m_numLayers - 1));
    for (Eigen::Index l = 0; l + 1 < m_numLayers; ++l) m_dropouts.emplace_back(m_dropout);
    seed(options.seed());
  }

  Stack(const Stack&) = delete;
  Stack& operator=(const Stack&) = delete;
  /// Moving keeps the cells where they are (in the vector's storage): the Sequences stay valid.
  Stack(Stack&&) noexcept = default;
  /// As the move constructor: the cells keep their place, so the Sequences stay valid.
  Stack& operator=(Stack&&) noexcept = default;
  ~Stack() = default;

  // ---- shape ------------------------------------------------------------------------------

  /// L, the number of layers.
  Eigen::Index numLayers() const { return m_numLayers; }
  /// 2 for a bidirectional stack, else 1.
  Eigen::Index numDirections() const { return m_directions; }
  /// Whether each layer also runs a cell over every sequence in reverse.
  bool bidirectional() const { return m_directions == 2; }
  /// Whether each layer's one direction reads every sequence in reverse (StackOptions::reverse).
  bool reverse() const { return m_reverse; }
  /// How a bidirectional layer combines its two directions (Concat with one direction).
  Merge merge() const { return m_merge; }
  /// Rows of the input x.
  Eigen::Index inputSize() const { return m_cells.front().inputSize(); }
  /// Rows of the output y: D·H (Concat) or H (Sum, or one direction), H = the last layer's
  /// cells' outputSize().
  Eigen::Index outputSize() const { return layerOutputRows(m_numLayers - 1); }

  /// The cell of one layer and direction (0 forward, 1 reverse; a reverse stack's one direction
  /// is 0). Throws std::invalid_argument if either is out of range.
  Cell& cell(Eigen::Index layer, Eigen::Index direction = 0) {
    return m_cells[cellIndex(layer, direction, "Stack::cell")];
  }
  /// The same, read-only.
  const Cell& cell(Eigen::Index layer, Eigen::Index direction = 0) const {
    return m_cells[cellIndex(layer, direction, "Stack::cell")];
  }

  // ---- parameters ---------------------------------------------------------------------------

  /// Every cell's parameters by PyTorch's names (a view: see StackParameters).
  StackParameters<Cell> parameters() { return {m_cells.data(), count(), m_directions, m_reverse}; }
  /// The same, read-only.
  StackParameters<const Cell> parameters() const {
    return {m_cells.data(), count(), m_directions, m_reverse};
  }

  /// Zero tensors shaped like the parameters, to accumulate gradients into.
  Gradients zeroGradients() const {
    std::vector<CellParameters> cells;
    cells.reserve(m_cells.size());
    for (const Cell& c : m_cells) cells.push_back(c.zeroGradients());
    return Gradients(m_numLayers, m_directions, std::move(cells), m_reverse);
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

  /// The dropout probability between layers (0: none).
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
    // The recurrent regularisation of cell k = layer·D + direction: stream L + k.
    for (Eigen::Index k = 0; k < count(); ++k) {
      m_layers[static_cast<std::size_t>(k / m_directions)].seedDirection(
          k % m_directions, detail::streamSeed(seed, static_cast<std::uint64_t>(m_numLayers + k)));
    }
  }

  /// Regularisation inside every layer and direction (layers/regularization.hpp: variational
  /// dropout of x and h, zoneout, weight drop), with masks of their own per layer and direction
  /// (seeded by seed()); it combines with the dropout between layers. Throws as
  /// Sequence::setRegularization does.
  void setRegularization(const Regularization& options) {
    for (auto& layer : m_layers) layer.setRegularization(options);
  }
  /// The regularisation masks of the last training forward() of layer `layer`, direction
  /// `direction` (Sequence::masks(); the reverse direction's in its own, time-reversed order).
  const RecurrentMasks<Scalar>& masks(Eigen::Index layer, Eigen::Index direction = 0) const {
    const std::size_t k = cellIndex(layer, direction, "Stack::masks");
    return m_layers[k / static_cast<std::size_t>(m_directions)]
        .direction(static_cast<Eigen::Index>(k) % m_directions)
        .masks();
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

  /// Training forward from `initial` (L·D states, index layer·D + direction; an empty vector,
  /// the default, or a default-constructed state in it, starts from zero):
  /// keeps the tape, applies dropout between layers. Returns the output (outputSize() × T·B).
  /// Passing finalState() carries the state over (truncated BPTT).
  const Matrix& forward(const Eigen::Ref<const Matrix>& x, const std::vector<int>& lengths,
                        const std::vector<State>& initial = {}) {
    run(x, lengths, initial, true, "Stack::forward");
    return output();
  }
  /// Inference forward from `initial` (default: zero): no tape, no dropout.
  const Matrix& infer(const Eigen::Ref<const Matrix>& x, const std::vector<int>& lengths,
                      const std::vector<State>& initial = {}) {
    run(x, lengths, initial, false, "Stack::infer");
    return output();
  }

  /// The output of the last forward or infer, outputSize() × (T·B), zero in padding.
  const Matrix& output() const { return m_layers.back().output(); }
  /// The final state of every layer and direction after the last forward or infer, index
  /// layer·D + direction; the reverse direction's is its state after reading step 0.
  const std::vector<State>& finalState() const { return m_final; }
  /// True after forward() and until the next infer(): backward() can run.
  bool hasTape() const { return m_hasTape; }

  // ---- backward ----------------------------------------------------------------------------

  /// Backward from dL/dy (outputSize() × T·B; padding ignored). ADDS every parameter gradient
  /// into `grads`; dL/dx and dL/d(initial states) are then available.
  void backward(const Eigen::Ref<const Matrix>& dOutput, Gradients& grads) {
    runBackward(&dOutput, {}, grads);
  }
  /// Backward from dL/dy and dL/d(final states) (L·D states, index layer·D + direction; an empty
  /// vector: none).
  void backward(const Eigen::Ref<const Matrix>& dOutput, const std::vector<State>& dFinal,
                Gradients& grads) {
    runBackward(&dOutput, dFinal, grads);
  }
  /// Backward from dL/d(final states) alone.
  void backward(const std::vector<State>& dFinal, Gradients& grads) {
    runBackward(nullptr, dFinal, grads);
  }

  /// Calls `f(layer)` during every following backward as soon as the gradients of `layer` (both
  /// directions) are complete, from the last layer to the first — so that they can be sent
  /// elsewhere (DataParallel::connect) while the layers below are computed. nullptr removes it.
  /// If `f` throws, backward stops there: the layers below have added nothing to the gradients.
  void onLayerGradients(std::function<void(Eigen::Index)> f) { m_onLayerGradients = std::move(f); }

  /// dL/dx of the last backward, I × (T·B), zero in padding.
  const Matrix& inputGradient() const { return m_layers.front().inputGradient(); }
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
  /// The `threads` given to setThreads() (0, the default: automatic).
  int threads() const { return m_threads; }

  /// The precision of infer()'s products in every layer from the next call on (see Precision
  /// and Sequence::setPrecision); forward() and backward() refuse any but Precision::Full.
  void setPrecision(Precision precision) { setPrecision(precision, precision); }
  /// The same, with the first layer's input product W_ih·x (the model's input) in `input`:
  /// `precision` or Precision::Full (the others throw std::invalid_argument, and nothing
  /// changes). The layers above take their input products in `precision`.
  void setPrecision(Precision precision, Precision input) {
    detail::checkInputPrecision("Stack::setPrecision", precision, input);
    m_precision = precision;
    m_inputPrecision = input;
    for (std::size_t l = 0; l < m_layers.size(); ++l) {
      m_layers[l].setPrecision(precision, l == 0 ? input : precision);
    }
  }
  /// The precision given to setPrecision() (Precision::Full by default).
  Precision precision() const { return m_precision; }
  /// The first layer's input product's precision given to setPrecision() (by default
  /// precision()).
  Precision inputPrecision() const { return m_inputPrecision; }

 private:
  using Index = Eigen::Index;

  /// A direction with less work than this many flops runs on the calling thread when the threads
  /// are automatic: about the cost of waking a second thread and joining it.
  static constexpr double kMinDirectionFlopsToShare = 1.0e6;

  Index count() const { return m_numLayers * m_directions; }
  /// Whether cell k (index layer·D + direction) runs in reverse.
  bool reversed(Index k) const { return m_reverse || k % m_directions == 1; }

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

  /// State k of `states`, or the empty state (zero, none) if `states` is empty.
  const State& stateOf(const std::vector<State>& states, Index k) const {
    return states.empty() ? m_noState : states[static_cast<std::size_t>(k)];
  }

  // ---- argument checks (before anything changes) --------------------------------------------

  /// Throws unless every cell still has the sizes the stack made it with, and its parameters
  /// their shapes (a cell can be assigned another through cell()).
  void checkCells(const char* where) const;
  /// Throws unless every tensor of `params` (cell k's parameters or gradients) has the shape of
  /// cell k's tensors; the message names the tensor as PyTorch does (weight_hh_l1_reverse).
  void checkTensors(const char* where, const char* what, const CellParameters& params,
                    Index k) const;

  void checkStates(const char* where, const char* what, const std::vector<State>& states,
                   Index B) const;

  void checkForward(const Eigen::Ref<const Matrix>& x, const std::vector<int>& lengths,
                    const std::vector<State>& initial, const char* where) const;

  void checkBackward(const Eigen::Ref<const Matrix>* dOutput, const std::vector<State>& dFinal,
                     const Gradients& grads) const;

  // ---- threads -----------------------------------------------------------------------------

  /// Whether the two directions of a layer run at the same time, and each Sequence's threads.
  /// Automatically (0 threads) only where a direction of the first layer has enough work to
  /// pay for starting a thread. Running together, a Sequence gets half the threads only where
  /// a nested region would get them; else one, so that it opens no nested region (which costs
  /// a team each call).
  bool assignThreads();

  // ---- the layers, first to last and back ---------------------------------------------------

  void run(const Eigen::Ref<const Matrix>& x, const std::vector<int>& lengths,
           const std::vector<State>& initial, bool training, const char* where);

  void runLayer(Index l, const Eigen::Ref<const Matrix>& in, const std::vector<State>& initial,
                bool training);

  void runBackward(const Eigen::Ref<const Matrix>* dOutput, const std::vector<State>& dFinal,
                   Gradients& grads);

  Index m_numLayers;
  Index m_directions;
  bool m_reverse;  ///< the one direction of every layer reads in reverse
  Merge m_merge;
  double m_dropout;
  int m_threads = 0;
  Precision m_precision = Precision::Full, m_inputPrecision = Precision::Full;

  std::vector<Cell> m_cells;                       ///< index layer·D + direction
  std::vector<CellSizes> m_sizes;                  ///< each cell's sizes, as the stack made it
  std::vector<detail::StackLayer<Cell>> m_layers;  ///< their Sequences refer to m_cells
  std::vector<Dropout<Scalar>> m_dropouts;         ///< after layers 0..L−2

  // The last forward: lengths, shape, whether dropout was applied and a tape kept.
  std::vector<int> m_lengths;
  Index m_T = 0, m_B = 0;
  bool m_dropped = false;
  bool m_hasTape = false;
  bool m_together = false;                               ///< the directions run at the same time
  std::function<void(Eigen::Index)> m_onLayerGradients;  ///< see onLayerGradients()
  std::vector<State> m_final, m_dInitial;
  State m_noState;  ///< empty: a zero initial state, no final-state gradient
};

}  // namespace recurrent

#include <recurrent/layers/stack_impl.hpp>
