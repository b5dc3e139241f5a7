// recurrent — layers/stack_options.hpp: how a Stack is shaped: layers, directions, merge, dropout.
#pragma once

#include <Eigen/Core>

#include <cstdint>

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
  /// Each layer runs its one cell over every sequence reversed in time, from the sequence's own
  /// last step, as the reverse direction of a bidirectional layer does (ONNX's direction
  /// "reverse"); the output stays in the caller's time order. Not with bidirectional().
  StackOptions& reverse(bool on = true) {
    m_reverse = on;
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

  Eigen::Index numLayers() const { return m_numLayers; }  ///< the number of layers, L
  bool bidirectional() const { return m_bidirectional; }  ///< whether each layer runs both ways
  bool reverse() const { return m_reverse; }              ///< whether the one direction is reverse
  Merge merge() const { return m_merge; }                 ///< how the two directions combine
  double dropout() const { return m_dropout; }            ///< the dropout probability p
  std::uint64_t seed() const { return m_seed; }           ///< the seed of the dropout masks

 private:
  Eigen::Index m_numLayers = 1;
  bool m_bidirectional = false;
  bool m_reverse = false;
  Merge m_merge = Merge::Concat;
  double m_dropout = 0.0;
  std::uint64_t m_seed = 0;
};

}  // namespace recurrent
