// recurrent — layers/stack_parameters.hpp: the tensors of a Stack, by PyTorch's names.
//
// A multi-layer torch.nn.LSTM / nn.GRU / nn.RNN names its tensors by the cell's own name, the
// layer and the direction: weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0, then the same with
// _l0_reverse, then _l1, ... StackParameters (the cells' tensors, by reference) and
// StackGradients (tensors shaped like them) visit their tensors under those names, so that a
// StateDict or ParameterList holds them as PyTorch's state_dict() does.
#pragma once

#include <recurrent/detail/errors.hpp>

#include <Eigen/Core>

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace recurrent {

/// PyTorch's name of a tensor of layer `layer` of a recurrent module (nn.LSTM, nn.GRU, nn.RNN):
/// the cell's own name, then "_l" and the layer, then "_reverse" for the reverse direction of
/// a bidirectional layer or of a reverse stack — weight_ih_l0, weight_hh_l1, bias_ih_l0_reverse,
/// weight_hr_l2_reverse.
inline std::string layerTensorName(const std::string& name, Eigen::Index layer,
                                   bool reverse = false) {
  return name + "_l" + std::to_string(layer) + (reverse ? "_reverse" : "");
}

namespace detail {

/// Calls f(name, tensor) for every tensor of `count` cells' parameters, cell k being layer
/// k / directions in direction k % directions (every one reverse in a reverse stack), with
/// PyTorch's multi-layer names.
template <typename Get, typename F>
void forEachStackTensor(Eigen::Index count, Eigen::Index directions, bool reverseStack,
                        Get&& parametersOf, F&& f) {
  for (Eigen::Index k = 0; k < count; ++k) {
    const Eigen::Index layer = k / directions;
    const bool reverse = reverseStack || k % directions == 1;
    parametersOf(k).forEach([&](const char* name, auto& tensor) {
      const std::string full = layerTensorName(name, layer, reverse);
      f(full.c_str(), tensor);
    });
  }
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
  /// `cells` holds numLayers · numDirections parameter objects, layer by layer, forward first;
  /// `reverse`: those of a reverse stack (one direction, named _reverse).
  StackGradients(Eigen::Index numLayers, Eigen::Index numDirections, std::vector<Params> cells,
                 bool reverse = false)
      : m_layers(numLayers),
        m_directions(numDirections),
        m_reverse(reverse),
        m_cells(std::move(cells)) {
    if (numLayers < 0 || numDirections < 1 || numDirections > 2 ||
        static_cast<Eigen::Index>(m_cells.size()) != numLayers * numDirections) {
      detail::fail("StackGradients: needs numLayers · numDirections (", numLayers, " · ",
                   numDirections, ") parameter objects and 1 or 2 directions, got ",
                   m_cells.size());
    }
    if (reverse && numDirections != 1) {
      detail::fail("StackGradients: a reverse stack has 1 direction, got ", numDirections);
    }
  }

  Eigen::Index numLayers() const { return m_layers; }          ///< L, the number of layers
  Eigen::Index numDirections() const { return m_directions; }  ///< D: 1, or 2 if bidirectional
  bool reverse() const { return m_reverse; }  ///< for a reverse stack (Stack::reverse())

  /// The tensors of one layer and direction (0 forward, 1 reverse). Throws
  /// std::invalid_argument if either is out of range.
  Params& operator()(Eigen::Index layer, Eigen::Index direction = 0) {
    return m_cells[index(layer, direction)];
  }
  /// The same, read-only.
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
        m_layers * m_directions, m_directions, m_reverse,
        [this](Eigen::Index k) -> Params& { return m_cells[static_cast<std::size_t>(k)]; }, f);
  }
  /// The same, read-only.
  template <typename F>
  void forEach(F&& f) const {
    detail::forEachStackTensor(
        m_layers * m_directions, m_directions, m_reverse,
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
  bool m_reverse = false;
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
  /// A view of the `count` cells at `cells`, layer by layer with `directions` (1 or 2) cells
  /// per layer, forward first; `reverse`: a reverse stack's (every cell named _reverse).
  StackParameters(CellT* cells, Eigen::Index count, Eigen::Index directions, bool reverse = false)
      : m_cells(cells), m_count(count), m_directions(directions), m_reverse(reverse) {}

  /// Calls f(name, tensor) for each tensor of every cell, in PyTorch's state_dict order and
  /// names.
  template <typename F>
  void forEach(F&& f) const {
    detail::forEachStackTensor(
        m_count, m_directions,
        m_reverse, [this](Eigen::Index k) -> auto& { return m_cells[k].parameters(); }, f);
  }

 private:
  CellT* m_cells;
  Eigen::Index m_count;
  Eigen::Index m_directions;
  bool m_reverse;
};

}  // namespace recurrent
