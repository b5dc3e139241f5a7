// Adam and AdamW against torch.optim.Adam and torch.optim.AdamW, step for step.
#include "catch.hpp"
#include "optim_support.hpp"

using namespace test;
using recurrent::Adam;
using recurrent::AdamOptions;
using recurrent::AdamW;
using recurrent::AdamWOptions;

TEMPLATE_TEST_CASE("Adam and AdamW match torch.optim over 5 steps", "[optim][adam][torch]", float,
                   double) {
  using S = TestType;
  const double tol = optimizerTolerance<S>();
  CHECK(optimizerDifference<S>("optim_adam",
                               [](const auto& p) { return Adam<S>(p, AdamOptions(0.01)); }) <= tol);
  CHECK(optimizerDifference<S>("optim_adam_decay_amsgrad", [](const auto& p) {
          return Adam<S>(
              p, AdamOptions(0.02).betas(0.8, 0.99).eps(1e-6).weightDecay(0.1).amsgrad(true));
        }) <= tol);
  CHECK(optimizerDifference<S>("optim_adamw", [](const auto& p) {
          return AdamW<S>(p, AdamWOptions(0.01).weightDecay(0.1));
        }) <= tol);
  // PyTorch's defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, AdamW weight decay 0.01.
  CHECK(optimizerDifference<S>("optim_adamw_default", [](const auto& p) { return AdamW<S>(p); }) <=
        tol);
}

TEST_CASE("Adam: the comparison is live, and AdamW's decay is not Adam's", "[optim][adam]") {
  CHECK(optimizerDifference<double>("optim_adamw", [](const auto& p) {
          return Adam<double>(p, AdamOptions(0.01).weightDecay(0.1));
        }) > 1e-4);
  CHECK(optimizerDifference<double>("optim_adam", [](const auto& p) {
          return Adam<double>(p, AdamOptions(0.01).betas(0.9, 0.99));
        }) > 1e-6);
  CHECK(AdamOptions().weightDecay() == 0.0);
  CHECK(AdamWOptions().weightDecay() == 0.01);
  CHECK(AdamWOptions(0.5).lr() == 0.5);
}

TEST_CASE("Adam argument errors", "[optim][adam][errors]") {
  recurrent::LinearParameters<double> params(2, 2), grads(2, 2);
  recurrent::ParameterList<double> list;
  list.add(params, grads);
  CHECK_THROWS_WITH(Adam<double>(list, AdamOptions(-0.1)), Contains("Adam: lr must be >= 0"));
  CHECK_THROWS_WITH(Adam<double>(list, AdamOptions().betas(1.0, 0.9)),
                    Contains("beta1 must be in [0, 1), got 1"));
  CHECK_THROWS_WITH(AdamW<double>(list, AdamWOptions().betas(0.9, -0.1)),
                    Contains("AdamW: beta2 must be in [0, 1), got -0.1"));
  CHECK_THROWS_WITH(Adam<double>(list, AdamOptions().eps(-1)), Contains("eps must be >= 0"));
  CHECK_THROWS_WITH(AdamW<double>(list, AdamWOptions().weightDecay(-1)),
                    Contains("weight_decay must be >= 0"));
  Adam<double> adam(list);
  params.weight.setOnes();
  grads.weight.setOnes();
  params.weight.resize(3, 2);  // the parameter changed shape since the optimizer was made
  grads.weight.resize(3, 2);
  CHECK_THROWS_WITH(adam.step(),
                    Contains("Adam::step: parameter weight has 6 entries now, 4 when"));
  CHECK(adam.steps() == 0);
}
