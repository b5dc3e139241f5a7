// clipGradNorm against torch.nn.utils.clip_grad_norm_.
#include "catch.hpp"
#include "optim_support.hpp"

#include <limits>

using namespace test;

TEMPLATE_TEST_CASE("clipGradNorm matches clip_grad_norm_", "[optim][clip][torch]", float, double) {
  using S = TestType;
  const double tol = optimizerTolerance<S>();
  const Fixture f("clip");
  const double inf = std::numeric_limits<double>::infinity();
  for (const auto& [name, normType, maxNorm] :
       {std::tuple<std::string, double, double>{"l2", 2.0, 1.5},
        {"inf", inf, 0.7},
        {"l3", 3.0, 2.0},
        {"l2_small", 2.0, 100.0}}) {
    recurrent::LinearParameters<S> params(5, 3), grads(5, 3);
    grads.weight = f.torch2d(name + "_gw").template cast<S>();
    grads.bias = f.torch2d(name + "_gb").template cast<S>();
    recurrent::ParameterList<S> list;
    list.add(params, grads);
    const S total = recurrent::clipGradNorm(list, maxNorm, normType);
    INFO(name);
    CHECK(differenceTo(Mat<S>::Constant(1, 1, total), f.torch2d(name + "_total")) <= tol);
    CHECK(differenceTo(grads.weight, f.torch2d(name + "_gw_clipped")) <= tol);
    CHECK(differenceTo(grads.bias, f.torch2d(name + "_gb_clipped")) <= tol);
    if (name != "l2_small") {  // it clipped: the new norm is max_norm (to 1e-6)
      CHECK(differenceTo(grads.weight, f.torch2d(name + "_gw")) > 1e-3);
    }
  }
}

TEST_CASE("clipGradNorm over several layers, and its errors", "[optim][clip][errors]") {
  recurrent::LSTMCell<double> cell(2, 3);
  recurrent::Linear<double> linear(3, 1);
  auto cellGrads = cell.zeroGradients();
  auto linearGrads = linear.zeroGradients();
  recurrent::ParameterList<double> list;
  list.add(cell.parameters(), cellGrads, "rnn.").add(linear.parameters(), linearGrads, "fc.");
  cellGrads.weight_hh(0, 0) = 3;
  linearGrads.bias(0) = 4;
  CHECK(recurrent::clipGradNorm(list, 1.0) == Approx(5.0));
  CHECK(cellGrads.weight_hh(0, 0) == Approx(0.6).epsilon(1e-6));
  CHECK(linearGrads.bias(0) == Approx(0.8).epsilon(1e-6));

  CHECK_THROWS_WITH(recurrent::clipGradNorm(list, -1.0), Contains("max_norm must be >= 0, got -1"));
  CHECK_THROWS_WITH(recurrent::clipGradNorm(list, 1.0, 0.0), Contains("norm_type must be > 0"));
  linearGrads.bias(0) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH(recurrent::clipGradNorm(list, 1.0, 2.0, true),
                    Contains("the total norm of order 2 of the gradients is not finite"));
  CHECK(cellGrads.weight_hh(0, 0) == Approx(0.6).epsilon(1e-6));  // untouched
  // PyTorch's default scales by the NaN coefficient.
  recurrent::clipGradNorm(list, 1.0);
  CHECK(std::isnan(cellGrads.weight_hh(0, 0)));
}
