// LSTMCell: gate isolation. All weights but one path are zero, so each step has a closed form
// worked out by hand (σ(0) = 1/2, tanh(0) = 0); I = H = 1, one sequence, double.
#include "catch.hpp"
#include "support.hpp"

#include <recurrent/recurrent.hpp>

#include <cmath>

using namespace test;
using Cell = recurrent::LSTMCell<double>;

namespace {

double sigma(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// Gate rows in weight_ih / weight_hh / biases (H = 1): i, f, g, o.
enum Gate { I = 0, F = 1, G = 2, O = 3 };

struct Run {
  Eigen::MatrixXd y;
  Cell::State final;
  Cell::State dInitial;
};

/// Runs one sequence x (1 × T) from (h0, c0); backward from dL/dc_T = 1.
Run run(const Cell& cell, const Eigen::MatrixXd& x, double h0, double c0) {
  recurrent::Sequence<Cell> seq(cell);
  Cell::State s0{Eigen::MatrixXd::Constant(1, 1, h0), Eigen::MatrixXd::Constant(1, 1, c0)};
  seq.forward(x, {static_cast<int>(x.cols())}, s0);
  auto grads = cell.zeroGradients();
  Cell::State dFinal{Eigen::MatrixXd::Zero(1, 1), Eigen::MatrixXd::Ones(1, 1)};
  seq.backward(dFinal, grads);
  return Run{seq.output(), seq.finalState(), seq.initialStateGradient()};
}

const Eigen::MatrixXd kX = (Eigen::MatrixXd(1, 6) << 0.3, -1.2, 0.8, 2.0, -0.4, 1.1).finished();

}  // namespace

TEST_CASE("LSTM gate isolation: every weight zero, the forget gate halves c", "[lstm][gates]") {
  Cell cell(1, 1);
  const Run r = run(cell, kX, 0.4, 1.2);
  double c = 1.2;
  for (Eigen::Index t = 0; t < kX.cols(); ++t) {
    c = 0.5 * c;  // f = σ(0), i ⊙ g = σ(0) tanh(0) = 0
    CHECK(r.y(0, t) == Approx(0.5 * std::tanh(c)).epsilon(1e-14));  // o = σ(0)
  }
  CHECK(r.final.c(0, 0) == Approx(1.2 * std::pow(0.5, 6)).epsilon(1e-14));
  // dc_T/dc_0 = Π f = 2^-T: the cell state is a linear path scaled only by the forget gate.
  CHECK(r.dInitial.c(0, 0) == Approx(std::pow(0.5, 6)).epsilon(1e-14));
  CHECK(r.dInitial.h(0, 0) == 0.0);  // h reaches nothing while W_hh = 0
}

TEST_CASE("LSTM gate isolation: the forget-gate bias keeps the gradient alive",
          "[lstm][gates][bptt]") {
  Cell cell(1, 1);
  cell.parameters().bias_hh(F) = 3.0;
  const Eigen::MatrixXd x = Eigen::MatrixXd::Zero(1, 50);
  const Run r = run(cell, x, 0.0, 1.0);
  CHECK(r.final.c(0, 0) == Approx(std::pow(sigma(3.0), 50)).epsilon(1e-12));
  CHECK(r.dInitial.c(0, 0) ==
        Approx(std::pow(sigma(3.0), 50)).epsilon(1e-12));  // ≈ 0.08, not 2^-50
}

TEST_CASE("LSTM gate isolation: the candidate path W_ig", "[lstm][gates]") {
  Cell cell(1, 1);
  const double w = 0.7;
  cell.parameters().weight_ih(G, 0) = w;
  const Run r = run(cell, kX, 0.0, 0.0);
  double c = 0.0;
  for (Eigen::Index t = 0; t < kX.cols(); ++t) {
    c = 0.5 * c + 0.5 * std::tanh(w * kX(0, t));  // c' = f c + i g, f = i = 1/2
    CHECK(r.y(0, t) == Approx(0.5 * std::tanh(c)).epsilon(1e-14));
  }
}

TEST_CASE("LSTM gate isolation: the input gate's biases", "[lstm][gates]") {
  Cell cell(1, 1);
  const double a = -0.9, b = 1.3;
  cell.parameters().bias_ih(I) = a;  // i = σ(a)
  cell.parameters().bias_hh(G) = b;  // g = tanh(b)
  const Run r = run(cell, kX, 0.0, 0.2);
  double c = 0.2;
  for (Eigen::Index t = 0; t < kX.cols(); ++t) {
    c = 0.5 * c + sigma(a) * std::tanh(b);
    CHECK(r.y(0, t) == Approx(0.5 * std::tanh(c)).epsilon(1e-14));
  }
}

TEST_CASE("LSTM gate isolation: the forget gate's recurrent path W_hf", "[lstm][gates]") {
  Cell cell(1, 1);
  const double u = 1.7;
  cell.parameters().weight_hh(F, 0) = u;
  const Run r = run(cell, kX, 0.9, 1.0);
  double h = 0.9, c = 1.0;
  for (Eigen::Index t = 0; t < kX.cols(); ++t) {
    c = sigma(u * h) * c;  // i ⊙ g = 0
    h = 0.5 * std::tanh(c);
    CHECK(r.y(0, t) == Approx(h).epsilon(1e-14));
  }
}

TEST_CASE("LSTM gate isolation: the output gate W_io", "[lstm][gates]") {
  Cell cell(1, 1);
  const double w = -1.4;
  cell.parameters().weight_ih(O, 0) = w;
  const Run r = run(cell, kX, 0.0, 2.0);
  double c = 2.0;
  for (Eigen::Index t = 0; t < kX.cols(); ++t) {
    c = 0.5 * c;
    CHECK(r.y(0, t) == Approx(sigma(w * kX(0, t)) * std::tanh(c)).epsilon(1e-14));
  }
}

TEST_CASE("LSTM gate isolation: units do not mix when the weights are diagonal", "[lstm][gates]") {
  // H = I = 3 with W_ig = diag(w): each unit is the one-unit candidate path on its own input.
  Cell cell(3, 3);
  const Eigen::Vector3d w(0.5, -1.0, 2.0);
  cell.parameters().weight_ih.block(2 * 3, 0, 3, 3) = w.asDiagonal();
  const Eigen::MatrixXd x = (Eigen::MatrixXd(3, 4) << 0.1, 0.2, 0.3, 0.4,  //
                             -1, 1, -1, 1,                                 //
                             0.5, 0.5, -0.5, 0.25)
                                .finished();
  recurrent::Sequence<Cell> seq(cell);
  seq.infer(x, {4});
  for (int k = 0; k < 3; ++k) {
    double c = 0.0;
    for (int t = 0; t < 4; ++t) {
      c = 0.5 * c + 0.5 * std::tanh(w(k) * x(k, t));
      CHECK(seq.output()(k, t) == Approx(0.5 * std::tanh(c)).epsilon(1e-14));
    }
  }
}
