// recurrent — step.hpp: the views one time step of a cell reads and writes.
//
// A cell's forwardStep() and backwardStep() are the gate math of ONE time step on a
// batch of n sequences (one column each). They work on views into buffers that the
// caller (usually Sequence) owns, so a step allocates nothing. Legend:
//
//   n    columns: the sequences active at this step
//   G·H  rows of the stacked gates (G = 4 LSTM, 3 GRU, 1 RNN)
//   H    hidden size
//
// The input projection is done by the caller for every step at once, so a step starts
// from `gates` = W_ih·x + (the biases the cell folds in, see Cell::foldedBias()).
#pragma once

#include <Eigen/Core>

namespace recurrent {

/// What forwardStep() reads and writes. Views may be 0 × n where a cell does not use them.
template <typename Scalar>
struct ForwardStep {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  Eigen::Ref<Matrix> gates;        ///< G·H × n   in: W_ih·x + folded bias; out: gate activations
  Eigen::Ref<const Matrix> hPrev;  ///< H × n     h_{t-1}
  Eigen::Ref<const Matrix> cPrev;  ///< H × n     c_{t-1} (LSTM only)
  Eigen::Ref<Matrix> h;            ///< H × n     out: h_t
  Eigen::Ref<Matrix> c;            ///< H × n     out: c_t (LSTM only)
  Eigen::Ref<Matrix> extra;        ///< E × n     out: the cell's own tape (E = extraRows())
  Eigen::Ref<Matrix> scratch;      ///< S × n     working memory (S = scratchRows())
};

/// What backwardStep() reads and writes: the tape of the step, the gradients flowing
/// into it, and the gradients it produces.
template <typename Scalar>
struct BackwardStep {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  Eigen::Ref<const Matrix> gates;  ///< G·H × n   gate activations of the forward step
  Eigen::Ref<const Matrix> extra;  ///< E × n     the forward step's `extra`
  Eigen::Ref<const Matrix> hPrev;  ///< H × n     h_{t-1}
  Eigen::Ref<const Matrix> cPrev;  ///< H × n     c_{t-1} (LSTM only)
  Eigen::Ref<const Matrix> h;      ///< H × n     h_t
  Eigen::Ref<const Matrix> c;      ///< H × n     c_t (LSTM only)
  Eigen::Ref<const Matrix> dh;     ///< H × n     dL/dh_t, from the output and from step t+1
  Eigen::Ref<const Matrix> dc;     ///< H × n     dL/dc_t from step t+1 (LSTM only)
  Eigen::Ref<Matrix> dGx;          ///< G·H × n   out: dL/d(W_ih·x + b_ih)
  Eigen::Ref<Matrix> dGh;          ///< G·H × n   out: dL/d(W_hh·h + b_hh), may be dGx itself
  Eigen::Ref<Matrix> dhPrev;       ///< H × n     out: dL/dh_{t-1}
  Eigen::Ref<Matrix> dcPrev;       ///< H × n     out: dL/dc_{t-1} (LSTM only)
  Eigen::Ref<Matrix> scratch;      ///< S × n     working memory
};

}  // namespace recurrent

namespace recurrent {

/// What a cell's accumulateGradients() reads after the backward time loop: every
/// step's values side by side in packed columns (N = the sum of the sequence lengths).
template <typename Scalar>
struct StepsGradients {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  Eigen::Ref<const Matrix> x;      ///< I × N         the inputs x_t
  Eigen::Ref<const Matrix> hPrev;  ///< H × N         h_{t-1} of each step
  Eigen::Ref<const Matrix> extra;  ///< extraRows × N  each step's `extra`
  Eigen::Ref<const Matrix> dGx;    ///< G·H × N       each step's dGx
  Eigen::Ref<const Matrix> dGh;    ///< G·H × N       each step's dGh
};

namespace detail {

/// The weight-gradient GEMMs shared by every cell, one product over all steps each:
///   dW_ih += dGx · Xᵀ    db_ih += Σ_cols dGx    dX = W_ihᵀ · dGx
template <typename Scalar, typename Parameters>
void accumulateInputGradients(
    const Parameters& params, const StepsGradients<Scalar>& steps, Parameters& grads,
    Eigen::Ref<Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>> dx) {
  grads.weight_ih.noalias() += steps.dGx * steps.x.transpose();
  grads.bias_ih.noalias() += steps.dGx.rowwise().sum();
  dx.noalias() = params.weight_ih.transpose() * steps.dGx;
}

/// dW_hh += dGh · H_prevᵀ    db_hh += Σ_cols dGh
template <typename Scalar, typename Parameters>
void accumulateRecurrentGradients(const StepsGradients<Scalar>& steps, Parameters& grads) {
  grads.weight_hh.noalias() += steps.dGh * steps.hPrev.transpose();
  grads.bias_hh.noalias() += steps.dGh.rowwise().sum();
}

}  // namespace detail
}  // namespace recurrent
