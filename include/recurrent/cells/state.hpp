// recurrent — cells/state.hpp: the recurrent state a cell carries from one step to the next.
//
// Every state matrix has one column per sequence of the batch. A state lists its matrices once,
// in a static visit(self, sizes, f) that calls f(name, matrix, rows); the checks and zero states
// of the drivers come from that list. A default-constructed state (every matrix empty) is how a
// caller says "start from zero" where an initial state is optional.
#pragma once

#include <recurrent/cells/parameters.hpp>
#include <recurrent/detail/errors.hpp>

#include <Eigen/Core>

namespace recurrent {

/// The state of an LSTM: hidden state h and cell state c.
template <typename Scalar>
struct LSTMState {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;  ///< dynamic matrix
  static constexpr bool kHasCellState = true;                            ///< c besides h

  Matrix h;  ///< hidden state, R × B (R = P with a projection, else H)
  Matrix c;  ///< cell state, H × B

  /// Calls f(name, matrix, rows) for h and c of a cell of `sizes`.
  template <typename Self, typename F>
  static void visit(Self& self, const CellSizes& sizes, F&& f) {
    f("h", self.h, sizes.output());
    f("c", self.c, sizes.hidden);
  }
};

/// The state of a GRU or a plain RNN: the hidden state h alone.
template <typename Scalar>
struct HiddenState {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;  ///< dynamic matrix
  static constexpr bool kHasCellState = false;                           ///< h alone

  Matrix h;  ///< hidden state, H × B

  /// Calls f(name, matrix, rows) for h of a cell of `sizes`.
  template <typename Self, typename F>
  static void visit(Self& self, const CellSizes& sizes, F&& f) {
    f("h", self.h, sizes.output());
  }
};

namespace detail {

/// A zero state for `batch` sequences of a cell of `sizes`.
template <typename State>
State zeroState(const CellSizes& sizes, Eigen::Index batch) {
  State state;
  State::visit(state, sizes,
               [batch](const char*, auto& m, Eigen::Index rows) { m.setZero(rows, batch); });
  return state;
}

/// Whether every matrix of `state` is empty: a default-constructed state, "start from zero".
template <typename State>
bool isEmpty(const State& state) {
  bool empty = true;
  State::visit(state, CellSizes{}, [&empty](const char*, const auto& m, Eigen::Index) {
    empty = empty && m.size() == 0;
  });
  return empty;
}

/// Throws std::invalid_argument (`what h must be R x B, got ...`) unless every matrix of `state`
/// has the rows of a cell of `sizes` and `batch` columns.
template <typename State>
void checkState(const char* where, const char* what, const State& state, const CellSizes& sizes,
                Eigen::Index batch) {
  State::visit(state, sizes, [&](const char* name, const auto& m, Eigen::Index rows) {
    checkTensorShape(where, what, name, m, rows, batch);
  });
}

}  // namespace detail
}  // namespace recurrent
