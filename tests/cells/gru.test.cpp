// GRUCell, both variants: gate isolation. All weights but one path are zero, so each step has a
// closed form worked out by hand (σ(0) = 1/2, tanh(0) = 0); I = H = 1, one sequence, double.
#include "catch.hpp"
#include "support.hpp"

#include <recurrent/recurrent.hpp>

#include <cmath>

using namespace test;
using recurrent::GRUVariant;

namespace {

double sigma(double x) { return 1.0 / (1.0 + std::exp(-x)); }

enum Gate { R = 0, Z = 1, N = 2 };

const Eigen::MatrixXd kX = (Eigen::MatrixXd(1, 6) << 0.3, -1.2, 0.8, 2.0, -0.4, 1.1).finished();

template <typename Cell>
Eigen::MatrixXd run(const Cell& cell, double h0, Eigen::MatrixXd* dh0 = nullptr) {
  recurrent::Sequence<Cell> seq(cell);
  typename Cell::State s0{Eigen::MatrixXd::Constant(1, 1, h0)};
  seq.forward(kX, {static_cast<int>(kX.cols())}, s0);
  if (dh0 != nullptr) {
    auto grads = cell.zeroGradients();
    seq.backward(typename Cell::State{Eigen::MatrixXd::Ones(1, 1)}, grads);
    *dh0 = seq.initialStateGradient().h;
  }
  return seq.output();
}

}  // namespace

TEMPLATE_TEST_CASE_SIG("GRU gate isolation", "[gru][gates]", ((GRUVariant V), V),
                       GRUVariant::ResetAfter, GRUVariant::ResetBefore) {
  using Cell = recurrent::GRUCell<double, Eigen::Dynamic, Eigen::Dynamic, V>;
  Cell cell(1, 1);
  auto& p = cell.parameters();

  SECTION("every weight zero: h' = (1 − z) n + z h with z = 1/2, n = 0") {
    Eigen::MatrixXd dh0;
    const Eigen::MatrixXd y = run(cell, 0.8, &dh0);
    for (Eigen::Index t = 0; t < kX.cols(); ++t) {
      CHECK(y(0, t) == Approx(0.8 * std::pow(0.5, static_cast<double>(t + 1))).epsilon(1e-14));
    }
    CHECK(dh0(0, 0) == Approx(std::pow(0.5, 6)).epsilon(1e-14));  // dh_T/dh_0 = Π z
  }

  SECTION("the update gate's bias b_iz: h' = σ(a) h") {
    const double a = 1.5;
    p.bias_ih(Z) = a;
    Eigen::MatrixXd dh0;
    const Eigen::MatrixXd y = run(cell, 0.8, &dh0);
    for (Eigen::Index t = 0; t < kX.cols(); ++t) {
      CHECK(y(0, t) == Approx(0.8 * std::pow(sigma(a), static_cast<double>(t + 1))).epsilon(1e-14));
    }
    CHECK(dh0(0, 0) == Approx(std::pow(sigma(a), 6)).epsilon(1e-13));
  }

  SECTION("the candidate path W_in: n = tanh(w x)") {
    const double w = 0.9;
    p.weight_ih(N, 0) = w;
    const Eigen::MatrixXd y = run(cell, 0.0);
    double h = 0.0;
    for (Eigen::Index t = 0; t < kX.cols(); ++t) {
      h = 0.5 * std::tanh(w * kX(0, t)) + 0.5 * h;
      CHECK(y(0, t) == Approx(h).epsilon(1e-14));
    }
  }

  SECTION("the reset gate and b_hn: where the two variants differ") {
    const double a = -0.7, beta = 1.9;
    p.bias_ih(R) = a;     // r = σ(a)
    p.bias_hh(N) = beta;  // inside the reset product for ResetAfter only
    const Eigen::MatrixXd y = run(cell, 0.1);
    const double n = V == GRUVariant::ResetAfter ? std::tanh(sigma(a) * beta) : std::tanh(beta);
    double h = 0.1;
    for (Eigen::Index t = 0; t < kX.cols(); ++t) {
      h = 0.5 * n + 0.5 * h;
      CHECK(y(0, t) == Approx(h).epsilon(1e-14));
    }
  }

  SECTION("the reset gate on the recurrent path W_hn: n = tanh(σ(a) u h)") {
    const double a = 0.6, u = 2.5;
    p.bias_hh(R) = a;
    p.weight_hh(N, 0) = u;
    const Eigen::MatrixXd y = run(cell, 0.7);
    double h = 0.7;
    for (Eigen::Index t = 0; t < kX.cols(); ++t) {
      h = 0.5 * std::tanh(sigma(a) * u * h) + 0.5 * h;
      CHECK(y(0, t) == Approx(h).epsilon(1e-14));
    }
  }
}
