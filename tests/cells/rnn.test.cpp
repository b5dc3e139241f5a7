// RNNCell: the recurrence in closed form, and the vanishing gradient the LSTM was made to fix.
#include "catch.hpp"
#include "support.hpp"

#include <recurrent/recurrent.hpp>

#include <cmath>

using namespace test;
using Cell = recurrent::RNNCell<double>;

namespace {
const Eigen::MatrixXd kX = (Eigen::MatrixXd(1, 6) << 0.3, -1.2, 0.8, 2.0, -0.4, 1.1).finished();
}

TEST_CASE("RNN: h' = φ(w x + u h + b_ih + b_hh)", "[rnn][gates]") {
  const double w = 0.8, u = -1.3, bi = 0.2, bh = -0.45;
  for (auto nl : {recurrent::Nonlinearity::Tanh, recurrent::Nonlinearity::Relu}) {
    Cell cell(1, 1, nl);
    cell.parameters().weight_ih(0, 0) = w;
    cell.parameters().weight_hh(0, 0) = u;
    cell.parameters().bias_ih(0) = bi;
    cell.parameters().bias_hh(0) = bh;
    recurrent::Sequence<Cell> seq(cell);
    seq.infer(kX, {6}, Cell::State{Eigen::MatrixXd::Constant(1, 1, 0.5)});
    double h = 0.5;
    for (Eigen::Index t = 0; t < kX.cols(); ++t) {
      const double a = w * kX(0, t) + u * h + bi + bh;
      h = nl == recurrent::Nonlinearity::Tanh ? std::tanh(a) : std::max(a, 0.0);
      CHECK(seq.output()(0, t) == Approx(h).epsilon(1e-14).margin(1e-15));
    }
  }
}

TEST_CASE("RNN: the gradient through T steps is Π u (1 − h_t²), and it vanishes",
          "[rnn][bptt][gates]") {
  const double u = 0.9;
  Cell cell(1, 1);
  cell.parameters().weight_hh(0, 0) = u;
  cell.parameters().weight_ih(0, 0) = 1.0;
  const Eigen::MatrixXd x = Eigen::MatrixXd::Constant(1, 50, 0.5);
  recurrent::Sequence<Cell> seq(cell);
  seq.forward(x, {50});
  auto grads = cell.zeroGradients();
  seq.backward(Cell::State{Eigen::MatrixXd::Ones(1, 1)}, grads);  // L = h_T
  double product = 1.0;
  for (Eigen::Index t = 0; t < 50; ++t) {
    const double h = seq.output()(0, t);
    product *= u * (1.0 - h * h);
  }
  CHECK(seq.initialStateGradient().h(0, 0) == Approx(product).epsilon(1e-12));
  CHECK(std::abs(product) < 1e-8);  // the LSTM's forget-gate path keeps ≈ 0.08 (lstm.test.cpp)
}
