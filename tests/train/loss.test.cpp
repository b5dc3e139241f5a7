// Losses: values and gradients against torch.nn.functional on packed sequences, central
// differences, and padding that has no effect.
#include "catch.hpp"
#include "support.hpp"

#include <recurrent/recurrent.hpp>

using namespace test;
using recurrent::Reduction;

namespace {

std::vector<int> classesOf(const Fixture& f) {
  const MatrixXd c = f.torch2d("classes");  // T x B
  std::vector<int> targets;
  for (Index t = 0; t < c.rows(); ++t) {
    for (Index b = 0; b < c.cols(); ++b) targets.push_back(static_cast<int>(c(t, b)));
  }
  return targets;
}

}  // namespace

TEMPLATE_TEST_CASE("mseLoss matches F.mse_loss on the packed sequence", "[loss][torch]", float,
                   double) {
  using S = TestType;
  const double tol = std::is_same<S, float>::value ? 1e-6 : 1e-13;
  const Fixture f("loss");
  const std::vector<int> lengths = f.lengths();
  const Mat<S> y = f.columns("y").cast<S>();
  const Mat<S> target = f.columns("target").cast<S>();
  Mat<S> grad;
  const double value = recurrent::mseLoss(y, target, lengths, grad);
  CHECK(std::abs(value - f.torch2d("mse")(0, 0)) <= tol * std::abs(f.torch2d("mse")(0, 0)));
  CHECK(relativeError(grad.template cast<double>(), f.columns("grad_y")) <= tol);
  const double sum = recurrent::mseLoss(y, target, lengths, Reduction::Sum);
  CHECK(std::abs(sum - f.torch2d("mse_sum")(0, 0)) <= tol * std::abs(f.torch2d("mse_sum")(0, 0)));
}

TEMPLATE_TEST_CASE("crossEntropyLoss matches F.cross_entropy on the packed sequence",
                   "[loss][torch]", float, double) {
  using S = TestType;
  const double tol = std::is_same<S, float>::value ? 1e-6 : 1e-13;
  const Fixture f("loss");
  const std::vector<int> lengths = f.lengths();
  const Mat<S> z = f.columns("z").cast<S>();
  const std::vector<int> targets = classesOf(f);
  Mat<S> grad;
  const double value = recurrent::crossEntropyLoss(z, targets, lengths, grad);
  CHECK(std::abs(value - f.torch2d("ce")(0, 0)) <= tol * std::abs(f.torch2d("ce")(0, 0)));
  CHECK(relativeError(grad.template cast<double>(), f.columns("grad_z")) <= tol);
  const double sum = recurrent::crossEntropyLoss(z, targets, lengths, Reduction::Sum);
  CHECK(std::abs(sum - f.torch2d("ce_sum")(0, 0)) <= tol * std::abs(f.torch2d("ce_sum")(0, 0)));
}

TEST_CASE("loss gradients match central differences", "[loss][gradcheck]") {
  std::mt19937 rng(2);
  const std::vector<int> lengths = {3, 1, 4};
  MatrixXd y = uniform<double>(2, 12, rng);
  const MatrixXd target = uniform<double>(2, 12, rng);
  MatrixXd grad;
  recurrent::mseLoss(y, target, lengths, grad);
  CHECK(relativeError(grad, numericGradient(y, [&] {
                        return double(recurrent::mseLoss(y, target, lengths));
                      })) < 1e-8);

  MatrixXd z = uniform<double>(5, 12, rng, -3, 3);
  std::vector<int> targets = {0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1};
  recurrent::crossEntropyLoss(z, targets, lengths, grad, Reduction::Sum);
  CHECK(relativeError(grad, numericGradient(z, [&] {
                        return double(
                            recurrent::crossEntropyLoss(z, targets, lengths, Reduction::Sum));
                      })) < 1e-8);
}

TEST_CASE("padding contributes nothing to a loss", "[loss]") {
  std::mt19937 rng(4);
  const std::vector<int> lengths = {2, 3};  // T = 3, B = 2: column 4 (t = 2, b = 0) is padding
  MatrixXd y = uniform<double>(2, 6, rng);
  MatrixXd target = uniform<double>(2, 6, rng);
  MatrixXd grad;
  const double before = recurrent::mseLoss(y, target, lengths, grad);
  CHECK(grad.col(4).isZero(0.0));
  y.col(4).setConstant(1e6);
  target.col(4).setConstant(-7);
  MatrixXd grad2;
  CHECK(recurrent::mseLoss(y, target, lengths, grad2) == before);
  CHECK(grad2 == grad);
  CHECK(recurrent::mseLoss(y, target, lengths) == before);
  // The mean is over the 2 · 5 real entries.
  const MatrixXd d = y - target;
  double expected = 0;
  for (Index c : {0, 1, 2, 3, 5}) expected += d.col(c).squaredNorm();
  CHECK(before == Approx(expected / 10).epsilon(1e-14));

  MatrixXd z = uniform<double>(3, 6, rng);
  std::vector<int> targets = {0, 1, 2, 0, -1, 2};  // the padding target is ignored
  const double ce = recurrent::crossEntropyLoss(z, targets, lengths, grad);
  CHECK(grad.col(4).isZero(0.0));
  z.col(4).setConstant(1e6);
  CHECK(recurrent::crossEntropyLoss(z, targets, lengths) == ce);
}

TEST_CASE("crossEntropyLoss is stable for large logits", "[loss]") {
  Eigen::MatrixXf z(2, 1);
  z << 1000.0f, 0.0f;
  Eigen::MatrixXf grad;
  CHECK(recurrent::crossEntropyLoss(z, {0}, {1}, grad) == Approx(0.0f).margin(1e-6));
  CHECK(recurrent::crossEntropyLoss(z, {1}, {1}, grad) == Approx(1000.0f));
  CHECK(grad(0, 0) == Approx(1.0f));
  CHECK(grad(1, 0) == Approx(-1.0f));
}

TEST_CASE("loss argument errors", "[loss][errors]") {
  const MatrixXd y = MatrixXd::Zero(2, 6);
  MatrixXd grad = MatrixXd::Constant(1, 1, 5.0);
  CHECK_THROWS_WITH(recurrent::mseLoss(y, MatrixXd::Zero(2, 5), {3, 3}, grad),
                    Contains("mseLoss: target must be 2 x 6, got 2 x 5"));
  CHECK(grad.size() == 1);  // untouched
  CHECK_THROWS_WITH(recurrent::mseLoss(y, y, {}),
                    Contains("lengths must hold one length per sequence"));
  CHECK_THROWS_WITH(recurrent::mseLoss(y, y, {1, 1, 1, 1}),
                    Contains("B = 4") && Contains("got 6 columns"));
  CHECK_THROWS_WITH(recurrent::mseLoss(y, y, {3, 4}),
                    Contains("lengths[1] must be in 1..3") && Contains("got 4"));
  CHECK_THROWS_WITH(recurrent::crossEntropyLoss(y, {0, 1}, {3, 3}),
                    Contains("targets must hold one class per column (6), got 2"));
  CHECK_THROWS_WITH(recurrent::crossEntropyLoss(y, {0, 1, 0, 2, 0, 1}, {3, 3}),
                    Contains("targets[3] must be a class in 0..1") && Contains("got 2"));
  CHECK_THROWS_WITH(recurrent::mseLoss(MatrixXd(0, 6), MatrixXd(0, 6), {3, 3}),
                    Contains("mseLoss: prediction must have at least 1 row, got 0"));
  CHECK_THROWS_WITH(recurrent::crossEntropyLoss(MatrixXd(0, 2), {0, 0}, {1, 1}),
                    Contains("crossEntropyLoss: prediction must have at least 1 row"));
  // A bad target in padding is fine.
  CHECK_NOTHROW(recurrent::crossEntropyLoss(y, {0, 1, 0, 1, 0, 7}, {3, 2}));
}
