// Linear: y = W h + b over the Sequence layout; gradients against central differences.
#include "catch.hpp"
#include "support.hpp"

#include <recurrent/recurrent.hpp>

using namespace test;
using recurrent::Linear;

TEST_CASE("Linear forward is W h + b in every column", "[linear]") {
  std::mt19937 rng(3);
  Linear<double> layer(4, 3);
  layer.initialize(rng);
  const MatrixXd h = uniform<double>(4, 10, rng);
  MatrixXd y;
  layer.forward(h, y);
  REQUIRE(y.rows() == 3);
  REQUIRE(y.cols() == 10);
  for (Index j = 0; j < 10; ++j) {
    const Eigen::VectorXd expected = layer.parameters().weight * h.col(j) + layer.parameters().bias;
    CHECK((y.col(j) - expected).cwiseAbs().maxCoeff() < 1e-14);
  }
  // A zero column (padding) gives the bias.
  layer.forward(MatrixXd::Zero(4, 2), y);
  CHECK(y.col(1) == layer.parameters().bias);
}

TEST_CASE("Linear initialisation: U(-1/sqrt(I), 1/sqrt(I)), reproducible from the seed",
          "[linear][init]") {
  Linear<float> a(16, 200), b(16, 200);
  std::mt19937 r1(5), r2(5);
  a.initialize(r1);
  b.initialize(r2);
  CHECK(a.parameters().weight == b.parameters().weight);
  CHECK(a.parameters().bias == b.parameters().bias);
  const float bound = 0.25f;
  CHECK(a.parameters().weight.cwiseAbs().maxCoeff() <= bound);
  CHECK(a.parameters().weight.cwiseAbs().maxCoeff() > 0.95f * bound);  // fills the range
  CHECK(std::abs(a.parameters().weight.mean()) < 0.01f);
  CHECK(a.parameters().bias.cwiseAbs().maxCoeff() <= bound);
}

TEST_CASE("Linear backward matches central differences", "[linear][gradcheck]") {
  std::mt19937 rng(11);
  Linear<double> layer(5, 3);
  layer.initialize(rng);
  MatrixXd h = uniform<double>(5, 7, rng);
  const MatrixXd w = uniform<double>(3, 7, rng);  // L = Σ w ⊙ tanh(y): a nonlinear loss
  auto loss = [&] {
    MatrixXd y;
    layer.forward(h, y);
    return (w.array() * y.array().tanh()).sum();
  };
  MatrixXd y, dh;
  layer.forward(h, y);
  const MatrixXd dy = (w.array() * (1.0 - y.array().tanh().square())).matrix();
  auto grads = layer.zeroGradients();
  layer.backward(h, dy, grads, dh);

  CHECK(relativeError(grads.weight, numericGradient(layer.parameters().weight, loss)) < 1e-8);
  CHECK(relativeError(grads.bias, numericGradient(layer.parameters().bias, loss)) < 1e-8);
  CHECK(relativeError(dh, numericGradient(h, loss)) < 1e-8);

  // Backward accumulates.
  layer.backward(h, dy, grads);
  auto once = layer.zeroGradients();
  layer.backward(h, dy, once);
  CHECK((grads.weight - 2 * once.weight).cwiseAbs().maxCoeff() < 1e-14);
  CHECK((grads.bias - 2 * once.bias).cwiseAbs().maxCoeff() < 1e-14);
}

TEST_CASE("Linear argument errors", "[linear][errors]") {
  Linear<float> layer(4, 2);
  Eigen::MatrixXf y, dh;
  CHECK_THROWS_WITH(Linear<float>(0, 2), Contains("Linear: in_features must be at least 1, got 0"));
  CHECK_THROWS_WITH(Linear<float>(2, -3), Contains("out_features must be at least 1, got -3"));
  CHECK_THROWS_WITH(layer.forward(Eigen::MatrixXf::Zero(3, 5), y),
                    Contains("Linear::forward: input must have 4 rows") && Contains("got 3"));
  auto grads = layer.zeroGradients();
  CHECK_THROWS_WITH(layer.backward(Eigen::MatrixXf::Zero(4, 5), Eigen::MatrixXf::Zero(2, 4), grads),
                    Contains("output gradient must be 2 x 5, got 2 x 4"));
  grads.weight.resize(2, 3);
  CHECK_THROWS_WITH(layer.backward(Eigen::MatrixXf::Zero(4, 5), Eigen::MatrixXf::Zero(2, 5), grads),
                    Contains("gradient weight must be 2 x 4, got 2 x 3"));
  layer.parameters().bias.resize(3);
  CHECK_THROWS_WITH(layer.forward(Eigen::MatrixXf::Zero(4, 5), y),
                    Contains("parameter bias must be 2 x 1, got 3 x 1"));
}
