// recurrent — layers/stack_impl.hpp: the checks and the layer loops of Stack (included by
// stack.hpp).
#pragma once

#include <recurrent/layers/stack.hpp>

namespace recurrent {

template <typename Cell>
void Stack<Cell>::checkCells(const char* where) const {
  for (Index k = 0; k < count(); ++k) {
    const CellSizes& made = m_sizes[static_cast<std::size_t>(k)];
    const CellSizes& now = m_cells[static_cast<std::size_t>(k)].sizes();
    if (now != made) {
      detail::fail(
          where, ": the cell of layer ", k / m_directions, " (", detail::directionName(reversed(k)),
          ") must keep the sizes the stack made "
          "it with (input ",
          made.input, ", hidden ", made.hidden, ", projection ", made.projection, "), got input ",
          now.input, ", hidden ", now.hidden, ", projection ", now.projection);
    }
    checkTensors(where, "parameter", m_cells[static_cast<std::size_t>(k)].parameters(), k);
  }
}

template <typename Cell>
void Stack<Cell>::checkTensors(const char* where, const char* what, const CellParameters& params,
                               Index k) const {
  const Index l = k / m_directions;
  const bool reverse = reversed(k);
  CellParameters::visit(params, m_sizes[static_cast<std::size_t>(k)],
                        [&](const char* name, const auto& tensor, Index rows, Index cols) {
                          if (tensor.rows() != rows || tensor.cols() != cols) {
                            detail::fail(where, ": ", what, " ", layerTensorName(name, l, reverse),
                                         " must be ", rows, " x ", cols, ", got ", tensor.rows(),
                                         " x ", tensor.cols());
                          }
                        });
}

template <typename Cell>
void Stack<Cell>::checkStates(const char* where, const char* what, const std::vector<State>& states,
                              Index B) const {
  if (states.empty()) return;  // zero, or none
  if (static_cast<Index>(states.size()) != count()) {
    detail::fail(where, ": ", what, " must hold ", count(),
                 " states (num_layers · num_directions = ", m_numLayers, " · ", m_directions,
                 "), got ", states.size());
  }
  for (Index k = 0; k < count(); ++k) {
    const State& state = states[static_cast<std::size_t>(k)];
    if (detail::isEmpty(state)) continue;  // this one zero, or none
    State::visit(state, m_sizes[static_cast<std::size_t>(k)],
                 [&](const char* name, const auto& m, Index rows) {
                   if (m.rows() != rows || m.cols() != B) {
                     detail::fail(where, ": ", what, "[", k, "] (layer ", k / m_directions, ", ",
                                  detail::directionName(reversed(k)), ") ", name, " must be ", rows,
                                  " x ", B, ", got ", m.rows(), " x ", m.cols());
                   }
                 });
  }
}

template <typename Cell>
void Stack<Cell>::checkForward(const Eigen::Ref<const Matrix>& x, const std::vector<int>& lengths,
                               const std::vector<State>& initial, const char* where) const {
  checkCells(where);
  detail::checkBatch(where, x.rows(), x.cols(), inputSize(), "the stack's input_size", lengths);
  checkStates(where, "initial", initial, static_cast<Index>(lengths.size()));
}

template <typename Cell>
void Stack<Cell>::checkBackward(const Eigen::Ref<const Matrix>* dOutput,
                                const std::vector<State>& dFinal, const Gradients& grads) const {
  const char* where = "Stack::backward";
  detail::checkTrainingPrecision(where, m_precision);
  if (!m_hasTape) {
    detail::fail(where, ": needs the tape of a training forward(); ",
                 m_T == 0 ? "no forward() has run" : "the last call was infer(), which keeps none");
  }
  checkCells(where);
  if (grads.numLayers() != m_numLayers || grads.numDirections() != m_directions ||
      grads.reverse() != m_reverse) {
    detail::fail(where, ": gradients must be for ", m_numLayers, " layers and ", m_directions,
                 m_reverse ? " reverse" : "", " direction(s) (zeroGradients()), got ",
                 grads.numLayers(), " and ", grads.numDirections(),
                 grads.reverse() ? " reverse" : "");
  }
  for (Index k = 0; k < count(); ++k) {
    checkTensors(where, "gradient", grads(k / m_directions, k % m_directions), k);
  }
  if (dOutput != nullptr) {
    detail::checkShape(where, "output gradient", dOutput->rows(), dOutput->cols(), outputSize(),
                       m_T * m_B);
  }
  checkStates(where, "final-state gradient", dFinal, m_B);
}

template <typename Cell>
bool Stack<Cell>::assignThreads() {
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
  for (detail::StackLayer<Cell>& layer : m_layers) layer.setThreads(each);
  return together;
}

template <typename Cell>
void Stack<Cell>::run(const Eigen::Ref<const Matrix>& x, const std::vector<int>& lengths,
                      const std::vector<State>& initial, bool training, const char* where) {
  if (training) detail::checkTrainingPrecision(where, m_precision);
  checkForward(x, lengths, initial, where);
  // Nothing below throws (but for memory): the object changes only now.
  m_hasTape = false;
  m_lengths = lengths;
  m_B = static_cast<Index>(lengths.size());
  m_T = x.cols() / m_B;
  m_dropped = training && m_dropout > 0 && m_numLayers > 1;
  m_together = assignThreads();
  m_final.resize(m_cells.size());
  for (Index l = 0; l < m_numLayers; ++l) {
    const auto lu = static_cast<std::size_t>(l);
    if (l == 0) {
      runLayer(0, x, initial, training);
    } else {
      runLayer(l, m_dropped ? m_dropouts[lu - 1].output() : m_layers[lu - 1].output(), initial,
               training);
    }
    if (m_dropped && l + 1 < m_numLayers) m_dropouts[lu].forward(m_layers[lu].output());
  }
  m_hasTape = training;
}

template <typename Cell>
void Stack<Cell>::runLayer(Index l, const Eigen::Ref<const Matrix>& in,
                           const std::vector<State>& initial, bool training) {
  const Index D = m_directions;
  detail::StackLayer<Cell>& layer = m_layers[static_cast<std::size_t>(l)];
  layer.run(in, m_lengths, stateOf(initial, l * D), stateOf(initial, l * D + D - 1), training,
            m_together);
  for (Index d = 0; d < D; ++d) {
    m_final[static_cast<std::size_t>(l * D + d)] = layer.direction(d).finalState();
  }
}

template <typename Cell>
void Stack<Cell>::runBackward(const Eigen::Ref<const Matrix>* dOutput,
                              const std::vector<State>& dFinal, Gradients& grads) {
  checkBackward(dOutput, dFinal, grads);
  m_together = assignThreads();
  m_dInitial.resize(m_cells.size());
  const Index D = m_directions;
  for (Index l = m_numLayers - 1; l >= 0; --l) {
    const auto lu = static_cast<std::size_t>(l);
    detail::StackLayer<Cell>& layer = m_layers[lu];
    if (l == m_numLayers - 1) {
      layer.backward(dOutput, m_lengths, stateOf(dFinal, l * D), stateOf(dFinal, l * D + D - 1),
                     grads(l, 0), grads(l, D - 1), m_together);
    } else {
      // dL/d(output of layer l) = dL/d(input of layer l+1), through the dropout mask if any.
      const Matrix& dx = m_layers[lu + 1].inputGradient();
      const Eigen::Ref<const Matrix> dy(m_dropped ? m_dropouts[lu].backward(dx) : dx);
      layer.backward(&dy, m_lengths, stateOf(dFinal, l * D), stateOf(dFinal, l * D + D - 1),
                     grads(l, 0), grads(l, D - 1), m_together);
    }
    for (Index d = 0; d < D; ++d) {
      m_dInitial[static_cast<std::size_t>(l * D + d)] = layer.direction(d).initialStateGradient();
    }
    if (m_onLayerGradients) m_onLayerGradients(l);
  }
}

}  // namespace recurrent
