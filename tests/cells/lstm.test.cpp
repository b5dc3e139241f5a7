// LSTMCell: gate isolation. All weights but one path are zero, so each step has a closed form
// worked out by hand (σ(0) = 1/2, tanh(0) = 0); I = H = 1, one sequence, double. The same for
// each peephole weight, and zero peepholes against the standard LSTM.
#include "catch.hpp"
#include "support.hpp"

#include <recurrent/recurrent.hpp>

#include <cmath>
#include <string>
#include <vector>

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

// ---- peepholes ----------------------------------------------------------------------------------

namespace {

using Peep = recurrent::PeepholeLSTMCell<double>;

struct PeepRun {
  Eigen::MatrixXd y;
  Peep::State final;
  Peep::State dInitial;
  Peep::Parameters grads;
};

/// Runs one sequence x (1 × T) from (h0, c0); backward from dL/dh_T = dhT and dL/dc_T = dcT.
PeepRun run(const Peep& cell, const Eigen::MatrixXd& x, double h0, double c0, double dhT,
            double dcT) {
  recurrent::Sequence<Peep> seq(cell);
  Peep::State s0{Eigen::MatrixXd::Constant(1, 1, h0), Eigen::MatrixXd::Constant(1, 1, c0)};
  seq.forward(x, {static_cast<int>(x.cols())}, s0);
  Peep::Parameters grads = cell.zeroGradients();
  Peep::State dFinal{Eigen::MatrixXd::Constant(1, 1, dhT), Eigen::MatrixXd::Constant(1, 1, dcT)};
  seq.backward(dFinal, grads);
  return PeepRun{seq.output(), seq.finalState(), seq.initialStateGradient(), grads};
}

}  // namespace

TEST_CASE("peephole gate isolation: p_f alone, c' = σ(p_f c) c", "[lstm][peephole][gates]") {
  Peep cell(1, 1);
  const double u = 1.3;
  cell.parameters().peephole_f(0) = u;
  const PeepRun r = run(cell, kX, 0.4, 1.5, 0.0, 1.0);
  // Forward: i ⊙ g = σ(0) tanh(0) = 0, o = σ(0).
  std::vector<double> c = {1.5};
  for (Eigen::Index t = 0; t < kX.cols(); ++t) {
    c.push_back(sigma(u * c.back()) * c.back());
    CHECK(r.y(0, t) == Approx(0.5 * std::tanh(c.back())).epsilon(1e-14));
  }
  CHECK(r.final.c(0, 0) == Approx(c.back()).epsilon(1e-14));
  // Backward from dL/dc_T = 1: dA_f = dc_t c_{t-1} f (1 − f), dc_{t-1} = dc_t f + dA_f p_f,
  // dp_f = Σ dA_f c_{t-1}.
  double dc = 1.0, dpf = 0.0;
  for (Eigen::Index t = kX.cols(); t >= 1; --t) {
    const double cp = c[static_cast<std::size_t>(t - 1)], f = sigma(u * cp);
    dpf += (dc * cp * f * (1 - f)) * cp;  // dA_f ⊙ c_{t-1}
    dc *= f + u * cp * f * (1 - f);
  }
  CHECK(r.dInitial.c(0, 0) == Approx(dc).epsilon(1e-13));
  CHECK(r.grads.peephole_f(0) == Approx(dpf).epsilon(1e-13));
  CHECK(r.grads.peephole_i(0) == 0.0);  // g = 0: the input gate has no effect
  CHECK(r.grads.peephole_o(0) == 0.0);  // no loss on h
  CHECK(r.dInitial.h(0, 0) == 0.0);
}

TEST_CASE("peephole gate isolation: p_o peeks at the new cell state", "[lstm][peephole][gates]") {
  Peep cell(1, 1);
  const double u = -2.1;
  cell.parameters().peephole_o(0) = u;
  const PeepRun r = run(cell, kX, 0.0, 1.6, 1.0, 0.0);
  double c = 1.6;
  for (Eigen::Index t = 0; t < kX.cols(); ++t) {
    c = 0.5 * c;                    // f = σ(0), i ⊙ g = 0
    const double o = sigma(u * c);  // c_t, not c_{t-1}
    CHECK(r.y(0, t) == Approx(o * std::tanh(c)).epsilon(1e-14));
  }
  // dL/dh_T = 1 at the last step only: dA_o = tanh(c_T) o(1 − o), dc_T = o (1 − tanh² c_T) +
  // dA_o p_o, then halved at every earlier step.
  const double o = sigma(u * c), tc = std::tanh(c);
  const double dAo = tc * o * (1 - o);
  const double dcT = o * (1 - tc * tc) + dAo * u;
  CHECK(r.grads.peephole_o(0) == Approx(dAo * c).epsilon(1e-13));
  CHECK(r.dInitial.c(0, 0) == Approx(dcT * std::pow(0.5, 6)).epsilon(1e-13));
  CHECK(r.grads.bias_ih(3) == Approx(dAo).epsilon(1e-13));  // the o block
}

TEST_CASE("peephole gate isolation: p_i with a constant candidate", "[lstm][peephole][gates]") {
  Peep cell(1, 1);
  const double u = 0.9, b = 0.7;
  cell.parameters().peephole_i(0) = u;
  cell.parameters().bias_hh(G) = b;  // g = tanh(b)
  const PeepRun r = run(cell, kX, 0.0, -0.8, 0.0, 1.0);
  std::vector<double> c = {-0.8};
  for (Eigen::Index t = 0; t < kX.cols(); ++t) {
    c.push_back(0.5 * c.back() + sigma(u * c.back()) * std::tanh(b));
    CHECK(r.y(0, t) == Approx(0.5 * std::tanh(c.back())).epsilon(1e-14));
  }
  double dc = 1.0, dpi = 0.0;
  for (Eigen::Index t = kX.cols(); t >= 1; --t) {
    const double cp = c[static_cast<std::size_t>(t - 1)], i = sigma(u * cp);
    dpi += dc * std::tanh(b) * i * (1 - i) * cp;
    dc *= 0.5 + u * i * (1 - i) * std::tanh(b);
  }
  CHECK(r.dInitial.c(0, 0) == Approx(dc).epsilon(1e-13));
  CHECK(r.grads.peephole_i(0) == Approx(dpi).epsilon(1e-13));
}

TEMPLATE_TEST_CASE("zero peepholes give the standard LSTM, bit for bit", "[lstm][peephole]", float,
                   double) {
  using S = TestType;
  using Standard = recurrent::LSTMCell<S>;
  using Peephole = recurrent::PeepholeLSTMCell<S>;
  for (Index H : {13, 70}) {
    std::mt19937 rng(static_cast<unsigned>(H));
    const Index I = 5, T = 7, B = 4;
    Standard standard(I, H);
    randomize(standard, rng);
    Peephole peephole(I, H);
    peephole.parameters().weight_ih = standard.parameters().weight_ih;
    peephole.parameters().weight_hh = standard.parameters().weight_hh;
    peephole.parameters().bias_ih = standard.parameters().bias_ih;
    peephole.parameters().bias_hh = standard.parameters().bias_hh;
    const Mat<S> x = uniform<S>(I, T * B, rng);
    const Mat<S> dy = uniform<S>(H, T * B, rng);
    const typename Standard::State h0 = randomState(standard, B, rng);
    const typename Standard::State dFinal = randomState(standard, B, rng);
    const std::vector<int> lengths = {5, 7, 1, 6};
    for (int threads : {1, 2}) {
      recurrent::Sequence<Standard> a(standard);
      recurrent::Sequence<Peephole> b(peephole);
      a.setThreads(threads);
      b.setThreads(threads);
      a.forward(x, lengths, h0);
      b.forward(x, lengths, h0);
      auto ga = standard.zeroGradients();
      auto gb = peephole.zeroGradients();
      a.backward(dy, dFinal, ga);
      b.backward(dy, dFinal, gb);
      INFO("H = " << H << ", threads = " << threads);
      CHECK(b.output() == a.output());
      CHECK(b.finalState().h == a.finalState().h);
      CHECK(b.finalState().c == a.finalState().c);
      CHECK(b.inputGradient() == a.inputGradient());
      CHECK(b.initialStateGradient().h == a.initialStateGradient().h);
      CHECK(b.initialStateGradient().c == a.initialStateGradient().c);
      CHECK(gb.weight_ih == ga.weight_ih);
      CHECK(gb.weight_hh == ga.weight_hh);
      CHECK(gb.bias_ih == ga.bias_ih);
      CHECK(gb.bias_hh == ga.bias_hh);
      // The peephole weights are zero, their gradients are not.
      CHECK(gb.peephole_i.cwiseAbs().maxCoeff() > S(1e-3));
      CHECK(gb.peephole_f.cwiseAbs().maxCoeff() > S(1e-3));
      CHECK(gb.peephole_o.cwiseAbs().maxCoeff() > S(1e-3));
      a.infer(x, lengths, h0);
      b.infer(x, lengths, h0);
      CHECK(b.output() == a.output());
    }
    // And a nonzero peephole changes the result.
    peephole.parameters().peephole_o.setConstant(S(0.5));
    recurrent::Sequence<Standard> a(standard);
    recurrent::Sequence<Peephole> b(peephole);
    CHECK(b.infer(x, lengths, h0) != a.infer(x, lengths, h0));
  }
}

TEST_CASE("peephole parameters: names, shapes, initialisation", "[lstm][peephole]") {
  recurrent::PeepholeLSTMCell<float> cell(3, 4);
  std::vector<std::string> names;
  cell.parameters().forEach([&](const char* name, const auto& t) {
    names.push_back(name);
    CHECK(t.isZero(0.0));
  });
  CHECK(names == std::vector<std::string>{"weight_ih", "weight_hh", "bias_ih", "bias_hh",
                                          "peephole_i", "peephole_f", "peephole_o"});
  CHECK(cell.parameters().peephole_f.size() == 4);
  std::vector<std::string> standardNames;
  recurrent::LSTMCell<float>(3, 4).parameters().forEach(
      [&](const char* name, const auto&) { standardNames.push_back(name); });
  CHECK(standardNames == std::vector<std::string>{"weight_ih", "weight_hh", "bias_ih", "bias_hh"});
  std::mt19937 rng(1);
  recurrent::initialize(cell, rng, recurrent::InitOptions().forgetGateBias(1.0));
  for (const auto* p : {&cell.parameters().peephole_i, &cell.parameters().peephole_f,
                        &cell.parameters().peephole_o}) {
    CHECK(p->cwiseAbs().maxCoeff() <= 0.5f);  // U(±1/√H)
    CHECK(p->cwiseAbs().maxCoeff() > 0.1f);
  }
  CHECK(cell.parameters().bias_ih(4) == 1.0f);
  // A peephole of the wrong size is refused, naming it.
  cell.parameters().peephole_o.resize(3);
  recurrent::Sequence<recurrent::PeepholeLSTMCell<float>> seq(cell);
  CHECK_THROWS_WITH(seq.infer(Eigen::MatrixXf::Zero(3, 2), {2}),
                    Contains("cell parameter peephole_o must be 4 x 1, got 3 x 1"));
  auto grads = recurrent::PeepholeLSTMCell<float>(3, 4).zeroGradients();
  recurrent::PeepholeLSTMCell<float> good(3, 4);
  recurrent::Sequence<recurrent::PeepholeLSTMCell<float>> ok(good);
  ok.forward(Eigen::MatrixXf::Zero(3, 2), {2});
  grads.peephole_i.resize(5);
  CHECK_THROWS_WITH(ok.backward(Eigen::MatrixXf::Zero(4, 2), grads),
                    Contains("gradient peephole_i must be 4 x 1, got 5 x 1"));
}
