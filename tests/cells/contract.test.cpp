// The cell contract (cells/cell.hpp): a cell written from the contract alone — its parameters and
// its gate math, nothing else — runs in every driver and trains with exact gradients.
#include "catch.hpp"
#include "support.hpp"

#include <recurrent/recurrent.hpp>

#include <cmath>
#include <map>
#include <string>

using namespace test;

namespace {

/// A leaky RNN, h' = (1 − α) h + α tanh(W_ih x + b_ih + W_hh h + b_hh) with α = 1/2, written
/// against the contract only: CellBase gives it sizes, parameters (GateParameters: PyTorch's four
/// tensors, one gate), states, initialisation and checks; it adds its gate math.
///
/// Backward: with t = tanh(A) kept in the gates buffer,
///     dA = dh ⊙ α (1 − t²)        dh_prev = W_hhᵀ dA + (1 − α) dh
template <typename Scalar_>
class LeakyRNNCell
    : public recurrent::CellBase<recurrent::GateParameters<Scalar_, 1>,
                                 recurrent::HiddenState<Scalar_>, Eigen::Dynamic, Eigen::Dynamic> {
  using Base = recurrent::CellBase<recurrent::GateParameters<Scalar_, 1>,
                                   recurrent::HiddenState<Scalar_>, Eigen::Dynamic, Eigen::Dynamic>;

 public:
  using typename Base::Parameters;
  using typename Base::Scalar;
  static constexpr Scalar kAlpha = Scalar(0.5);

  LeakyRNNCell(Index inputSize, Index hiddenSize)
      : Base("LeakyRNNCell", recurrent::CellSizes{inputSize, hiddenSize, 0}) {}

  Index extraRows() const { return 0; }
  Index scratchRows() const { return 0; }

  template <typename Derived>
  void foldedBias(Eigen::MatrixBase<Derived>& bias) const {
    bias = this->parameters().bias_ih + this->parameters().bias_hh;
  }

  void forwardStep(const recurrent::StepContext<Scalar>& ctx,
                   recurrent::ForwardStep<Scalar>& s) const {
    ctx.multiply(0, 1, s.hPrev, s.gates, false);  // A += W_hh h
    const Index u0 = ctx.unitBegin(), n = ctx.units();
    for (Index j = 0; j < s.gates.cols(); ++j) {  // this thread's units of every sequence
      s.gates.col(j).segment(u0, n) = s.gates.col(j).segment(u0, n).array().tanh().matrix();
      s.h.col(j).segment(u0, n) =
          (1 - kAlpha) * s.hPrev.col(j).segment(u0, n) + kAlpha * s.gates.col(j).segment(u0, n);
    }
  }

  void backwardStep(const recurrent::StepContext<Scalar>& ctx,
                    recurrent::BackwardStep<Scalar>& s) const {
    const Index u0 = ctx.unitBegin(), n = ctx.units();
    for (Index j = 0; j < s.gates.cols(); ++j) {  // t = tanh(A) is in the gates buffer
      s.dGx.col(j).segment(u0, n).array() = s.dh.col(j).segment(u0, n).array() * kAlpha *
                                            (1 - s.gates.col(j).segment(u0, n).array().square());
    }
    ctx.barrier();  // W_hhᵀ dA needs every unit's dA
    ctx.multiplyTransposed(0, 1, s.dGx, s.dhPrev, true);
    for (Index j = 0; j < s.gates.cols(); ++j) {
      s.dhPrev.col(j).segment(u0, n) += (1 - kAlpha) * s.dh.col(j).segment(u0, n);
    }
  }

  void accumulateGradients(const recurrent::StepContext<Scalar>& ctx,
                           const recurrent::StepsGradients<Scalar>& steps,
                           Parameters& grads) const {
    ctx.addProductTransposed(0, 1, steps.dGx, steps.x, grads.weight_ih, grads.bias_ih);
    ctx.addProductTransposed(0, 1, steps.dGx, steps.hPrev, grads.weight_hh, grads.bias_hh);
  }
};

static_assert(recurrent::CellContract<LeakyRNNCell<double>>::value);
static_assert(recurrent::CellContract<recurrent::LSTMCell<float>>::value);
static_assert(recurrent::CellContract<recurrent::PeepholeLSTMCell<double, 3, 5>>::value);
static_assert(recurrent::CellContract<recurrent::ResetBeforeGRUCell<float>>::value);
static_assert(recurrent::CellContract<recurrent::RNNCell<double, 1, 8>>::value);

template <typename S>
struct Leaky {
  using Cell = LeakyRNNCell<S>;
  static Cell make(Index I, Index H) { return Cell(I, H); }
};

}  // namespace

TEST_CASE("a cell written from the contract: h' = (1 − α) h + α tanh(A), in closed form",
          "[contract]") {
  LeakyRNNCell<double> cell(1, 1);
  cell.parameters().weight_ih(0, 0) = 0.7;
  cell.parameters().weight_hh(0, 0) = -1.1;
  cell.parameters().bias_ih(0) = 0.1;
  cell.parameters().bias_hh(0) = -0.3;
  const Eigen::MatrixXd x = (Eigen::MatrixXd(1, 5) << 0.4, -1.0, 2.0, 0.3, -0.6).finished();
  recurrent::Sequence<LeakyRNNCell<double>> seq(cell);
  seq.infer(x, {5}, recurrent::HiddenState<double>{Eigen::MatrixXd::Constant(1, 1, 0.25)});
  double h = 0.25;
  for (Index t = 0; t < 5; ++t) {
    h = 0.5 * h + 0.5 * std::tanh(0.7 * x(0, t) - 1.1 * h + 0.1 - 0.3);
    CHECK(seq.output()(0, t) == Approx(h).epsilon(1e-14));
  }
}

TEST_CASE("a cell written from the contract trains with BPTT that matches central differences",
          "[contract][bptt][gradcheck]") {
  using Cell = LeakyRNNCell<double>;
  std::mt19937 rng(3);
  const std::vector<int> lengths = {4, 6, 1, 3};
  const Index T = 6, B = 4;
  Cell cell(3, 5);
  randomize(cell, rng);
  Mat<double> x = uniform<double>(3, T * B, rng);
  Cell::State h0 = randomState(cell, B, rng);
  const LinearLoss<Cell> loss = randomLoss(cell, T, B, rng);

  recurrent::Sequence<Cell> seq(cell);
  seq.setThreads(2, recurrent::ThreadLimit::Exactly);  // the contract's barriers are exercised
  seq.forward(x, lengths, h0);
  Cell::Parameters grads = cell.zeroGradients();
  seq.backward(loss.wy, loss.wFinal, grads);
  const auto lossOf = [&] {
    recurrent::Sequence<Cell> s(cell);
    s.infer(x, lengths, h0);
    return loss(s.output(), s.finalState());
  };
  std::map<std::string, MatrixXd> analytic;
  grads.forEach([&](const char* name, const auto& g) { analytic[name] = g; });
  cell.parameters().forEach([&](const char* name, auto& tensor) {
    const MatrixXd numeric = numericGradient(tensor, lossOf);
    INFO(name);
    CHECK(numeric.cwiseAbs().maxCoeff() > 1e-3);
    CHECK(relativeError(analytic.at(name), numeric) <= 1e-6);
  });
  CHECK(analytic.size() == 4);
  CHECK(relativeError(seq.inputGradient(), numericGradient(x, lossOf)) <= 1e-6);
  CHECK(relativeError(seq.initialStateGradient().h, numericGradient(h0.h, lossOf)) <= 1e-6);
}

TEST_CASE("a cell written from the contract runs in a Stack, a Stream and a state_dict",
          "[contract][stack][stream]") {
  using Cell = LeakyRNNCell<float>;
  std::mt19937 rng(5);
  recurrent::Stack<Cell> stack(2, 4, recurrent::StackOptions().numLayers(2).bidirectional());
  stack.initialize(rng);
  const std::vector<int> lengths = {3, 2};
  const Mat<float> x = uniform<float>(2, 3 * 2, rng);
  const Mat<float> y = stack.infer(x, lengths);
  CHECK(y.rows() == 8);
  // Layer 0's forward direction is a Sequence of the same cell.
  recurrent::Sequence<Cell> first(stack.cell(0, 0));
  first.infer(x, lengths);
  recurrent::Stack<Cell> one(2, 4);
  one.cell(0, 0).parameters() = stack.cell(0, 0).parameters();
  CHECK(one.infer(x, lengths).isApprox(first.output(), 0.0f));

  // A Stream of the cell (no fused product: the batched step) matches the Sequence step by step.
  recurrent::Stream<Cell> stream(stack.cell(0, 0));
  for (Index t = 0; t < 2; ++t) {
    const Mat<float> step = x.col(t * 2);
    const Mat<float> h = stream.step(step);
    CHECK(h.isApprox(first.output().col(t * 2), 1e-6f));
  }

  recurrent::StateDict<float> dict;
  dict.add("rnn.", stack);
  CHECK(dict.size() == 16);
  CHECK(dict.find("rnn.weight_hh_l1_reverse") != nullptr);
}
