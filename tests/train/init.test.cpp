// initialize(): PyTorch's uniform initialisation from a seeded generator, and the LSTM's
// forget-gate bias.
#include "catch.hpp"
#include "support.hpp"

#include <recurrent/recurrent.hpp>

TEST_CASE("initialize draws U(-1/sqrt(H), 1/sqrt(H)), the same for the same seed", "[init]") {
  recurrent::LSTMCell<double> a(3, 25), b(3, 25);
  std::mt19937 r1(7), r2(7), r3(8);
  recurrent::initialize(a, r1);
  recurrent::initialize(b, r2);
  CHECK(a.parameters().weight_hh == b.parameters().weight_hh);
  CHECK(a.parameters().bias_ih == b.parameters().bias_ih);
  recurrent::initialize(b, r3);
  CHECK(a.parameters().weight_hh != b.parameters().weight_hh);
  const double bound = 0.2;  // 1/sqrt(25)
  a.parameters().forEach([&](const char* name, const auto& t) {
    INFO(name);
    CHECK(t.cwiseAbs().maxCoeff() <= bound);
  });
  // 2500 draws of U(-0.2, 0.2): mean 0 (sd 0.0023), variance 0.04/3.
  const auto& w = a.parameters().weight_hh;
  CHECK(std::abs(w.mean()) < 0.01);
  CHECK((w.array().square().mean()) == Approx(0.04 / 3).epsilon(0.08));
  CHECK(w.cwiseAbs().maxCoeff() > 0.19);
}

TEST_CASE("the forget-gate bias option", "[init][lstm]") {
  recurrent::LSTMCell<float> cell(2, 4);
  std::mt19937 rng(1);
  recurrent::initialize(cell, rng, recurrent::InitOptions().forgetGateBias(1.0));
  const auto& p = cell.parameters();
  CHECK(p.bias_ih.segment(4, 4).isConstant(1.0f, 0.0f));
  CHECK(p.bias_hh.segment(4, 4).isZero(0.0f));
  CHECK((p.bias_ih + p.bias_hh).segment(4, 4).isConstant(1.0f, 0.0f));  // the gate's bias
  CHECK(p.bias_ih.head(4).cwiseAbs().maxCoeff() > 0.0f);                // others are drawn
  CHECK(p.bias_hh.tail(8).cwiseAbs().maxCoeff() > 0.0f);

  // The gate with that bias: all weights zero, c0 = 1, so c' = f c0 + i g = σ(1) (g = tanh 0).
  recurrent::LSTMCell<double> zero(1, 2);
  recurrent::setForgetGateBias(zero, 1.0);
  recurrent::Sequence<recurrent::LSTMCell<double>> seq(zero);
  recurrent::LSTMCell<double>::State initial = zero.zeroState(1);
  initial.c.setOnes();
  seq.infer(Eigen::MatrixXd::Zero(1, 1), {1}, initial);
  CHECK(seq.finalState().c(0, 0) == Approx(1.0 / (1.0 + std::exp(-1.0))).epsilon(1e-15));
  CHECK(seq.finalState().c(1, 0) == Approx(1.0 / (1.0 + std::exp(-1.0))).epsilon(1e-15));

  recurrent::GRUCell<float> gru(2, 4);
  CHECK_THROWS_WITH(recurrent::initialize(gru, rng, recurrent::InitOptions().forgetGateBias(1.0)),
                    Contains("forget_gate_bias applies to LSTMCell only"));
  CHECK(gru.parameters().weight_ih.isZero(0.0f));  // nothing drawn
}
