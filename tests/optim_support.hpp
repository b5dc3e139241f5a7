// Shared by the optimizer tests: runs an optimizer on the tensors of an optim_*.txt fixture
// (tests/generate_training_fixtures.py) for its 5 steps and compares every step with PyTorch's.
#pragma once

#include "support.hpp"

#include <recurrent/recurrent.hpp>

#include <algorithm>
#include <iostream>
#include <string>

namespace test {

/// Max over entries of |ours − ref| / max(1, |ref|).
template <typename Ours>
double differenceTo(const Ours& ours, const MatrixXd& ref) {
  if (ours.rows() != ref.rows() || ours.cols() != ref.cols()) return 1e300;
  const MatrixXd o = ours.template cast<double>();
  return ((o - ref).array().abs() / ref.array().abs().max(1.0)).maxCoeff();
}

/// The worst difference to PyTorch over the 5 steps of fixture `name`; `make(list)` builds the
/// optimizer. The fixture's tensors are a 4 × 3 weight and a 4-vector bias.
template <typename S, typename Make>
double optimizerDifference(const std::string& name, Make make) {
  const Fixture f(name);
  recurrent::LinearParameters<S> params(3, 4), grads(3, 4);
  params.weight = f.torch2d("w0").cast<S>();
  params.bias = f.torch2d("b0").cast<S>();
  recurrent::ParameterList<S> list;
  list.add(params, grads);
  auto optimizer = make(list);
  double worst = 0;
  for (int k = 1; k <= 5; ++k) {
    const std::string s = std::to_string(k);
    grads.weight = f.torch2d("gw" + s).cast<S>();
    grads.bias = f.torch2d("gb" + s).cast<S>();
    optimizer.step();
    worst = std::max({worst, differenceTo(params.weight, f.torch2d("w" + s)),
                      differenceTo(params.bias, f.torch2d("b" + s))});
  }
  std::cout << "torch.optim " << name << " (" << (sizeof(S) == 4 ? "float" : "double")
            << "): worst difference over 5 steps " << worst << "\n";
  return worst;
}

template <typename S>
double optimizerTolerance() {
  return sizeof(S) == 4 ? 1e-6 : 1e-12;
}

}  // namespace test
