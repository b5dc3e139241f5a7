// recurrent — state.hpp: the recurrent state a cell carries from one step to the next.
//
// Every state matrix has one column per sequence of the batch (H × B).
#pragma once

#include <Eigen/Core>

namespace recurrent {

/// The state of an LSTM: hidden state h and cell state c, each H × B.
template <typename Scalar>
struct LSTMState {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  Matrix h;  ///< hidden state, H × B
  Matrix c;  ///< cell state, H × B
};

/// The state of a GRU or a plain RNN: the hidden state h alone, H × B.
template <typename Scalar>
struct HiddenState {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  Matrix h;  ///< hidden state, H × B
};

}  // namespace recurrent
