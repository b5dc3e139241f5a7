// SGD against torch.optim.SGD, step for step.
#include "catch.hpp"
#include "optim_support.hpp"

using namespace test;
using recurrent::SGD;
using recurrent::SGDOptions;

TEMPLATE_TEST_CASE("SGD matches torch.optim.SGD over 5 steps", "[optim][sgd][torch]", float,
                   double) {
  using S = TestType;
  const double tol = optimizerTolerance<S>();
  CHECK(optimizerDifference<S>("optim_sgd",
                               [](const auto& p) { return SGD<S>(p, SGDOptions(0.1)); }) <= tol);
  CHECK(optimizerDifference<S>("optim_sgd_momentum", [](const auto& p) {
          return SGD<S>(p, SGDOptions(0.05).momentum(0.9).dampening(0.1));
        }) <= tol);
  CHECK(optimizerDifference<S>("optim_sgd_nesterov", [](const auto& p) {
          return SGD<S>(p, SGDOptions(0.05).momentum(0.8).nesterov(true).weightDecay(0.01));
        }) <= tol);
}

TEST_CASE("SGD: maximize climbs, and a fixture can fail", "[optim][sgd]") {
  // The same run with another momentum must not match PyTorch's: the comparison is live.
  CHECK(optimizerDifference<double>("optim_sgd_momentum", [](const auto& p) {
          return SGD<double>(p, SGDOptions(0.05).momentum(0.8).dampening(0.1));
        }) > 1e-3);
  recurrent::LinearParameters<double> params(1, 1), grads(1, 1);
  params.weight(0, 0) = 1;
  grads.weight(0, 0) = 2;
  recurrent::ParameterList<double> list;
  list.add(params, grads);
  SGD<double> sgd(list, SGDOptions(0.5).maximize(true));
  sgd.step();
  CHECK(params.weight(0, 0) == 2.0);
  CHECK(sgd.steps() == 1);
}

TEST_CASE("SGD argument errors", "[optim][sgd][errors]") {
  recurrent::LinearParameters<float> params(3, 2), grads(3, 2);
  recurrent::ParameterList<float> list;
  list.add(params, grads);
  CHECK_THROWS_WITH(SGD<float>(list, SGDOptions(-1)), Contains("SGD: lr must be >= 0, got -1"));
  CHECK_THROWS_WITH(SGD<float>(list, SGDOptions(0.1).momentum(-0.5)),
                    Contains("momentum must be >= 0, got -0.5"));
  CHECK_THROWS_WITH(SGD<float>(list, SGDOptions(0.1).nesterov(true)),
                    Contains("nesterov needs momentum > 0 and dampening = 0"));
  CHECK_THROWS_WITH(SGD<float>(list, SGDOptions(0.1).weightDecay(-1)),
                    Contains("weight_decay must be >= 0, got -1"));
  SGD<float> sgd(list, SGDOptions(0.1).momentum(0.9));
  params.weight.setOnes();
  grads.weight.setOnes();
  grads.bias.resize(3);  // no longer shaped like the parameter
  CHECK_THROWS_WITH(sgd.step(), Contains("SGD::step: the gradient of bias must be 2 x 1 like the "
                                         "parameter, got 3 x 1"));
  CHECK(params.weight.isOnes(0.0));  // nothing moved
  grads.bias.resize(2);
  params.bias.resize(2);
  sgd.options().lr(std::nan(""));
  CHECK_THROWS_WITH(sgd.step(), Contains("lr must be >= 0, got nan"));
  CHECK(sgd.steps() == 0);
}
