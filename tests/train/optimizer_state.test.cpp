// The optimizers step chunk by chunk (train/optimizer_state.hpp): the parameters must be the bits
// that one pass of each operation over whole tensors gives, at sizes around the chunk's.
#include "catch.hpp"
#include "support.hpp"

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

using recurrent::detail::optimizerChunk;
using test::Index;

template <typename S>
using Array = Eigen::Array<S, Eigen::Dynamic, 1>;

/// torch.optim.Adam's and AdamW's single-tensor update written as whole-tensor passes (what the
/// library did before it stepped in chunks).
struct AdamSettings {
  double lr, beta1, beta2, eps, decay;
  bool decoupled, amsgrad, maximize;
};

template <typename S>
struct WholeAdam : AdamSettings {
  explicit WholeAdam(const AdamSettings& settings) : AdamSettings(settings) {}
  std::vector<Array<S>> m, v, vMax;
  long steps = 0;

  void step(std::vector<Array<S>>& params, const std::vector<Array<S>>& grads) {
    if (m.empty()) {
      for (const auto& p : params) {
        m.push_back(Array<S>::Zero(p.size()));
        v.push_back(Array<S>::Zero(p.size()));
        vMax.push_back(Array<S>::Zero(p.size()));
      }
    }
    const double t = static_cast<double>(++steps);
    const auto b1 = static_cast<S>(beta1), b2 = static_cast<S>(beta2);
    const auto stepSize = static_cast<S>(lr / (1.0 - std::pow(beta1, t)));
    const auto c2 = static_cast<S>(std::sqrt(1.0 - std::pow(beta2, t)));
    const auto e = static_cast<S>(eps);
    for (std::size_t k = 0; k < params.size(); ++k) {
      Array<S>& p = params[k];
      Array<S> g = maximize ? Array<S>(-grads[k]) : grads[k];
      if (decay != 0) {
        if (decoupled) {
          p *= static_cast<S>(1.0 - lr * decay);
        } else {
          g += static_cast<S>(decay) * p;
        }
      }
      m[k] = m[k] * b1 + (S(1) - b1) * g;
      v[k] = v[k] * b2 + (S(1) - b2) * g * g;
      if (amsgrad) {
        vMax[k] = vMax[k].max(v[k]);
        p -= stepSize * (m[k] / (vMax[k].sqrt() / c2 + e));
      } else {
        p -= stepSize * (m[k] / (v[k].sqrt() / c2 + e));
      }
    }
  }
};

/// torch.optim.SGD's single-tensor update as whole-tensor passes.
struct SGDSettings {
  double lr, momentum, dampening, decay;
  bool nesterov, maximize;
};

template <typename S>
struct WholeSGD : SGDSettings {
  explicit WholeSGD(const SGDSettings& settings) : SGDSettings(settings) {}
  std::vector<Array<S>> b;
  long steps = 0;

  void step(std::vector<Array<S>>& params, const std::vector<Array<S>>& grads) {
    if (b.empty()) {
      for (const auto& p : params) b.push_back(Array<S>::Zero(p.size()));
    }
    const auto mu = static_cast<S>(momentum), damp = static_cast<S>(1.0 - dampening);
    for (std::size_t k = 0; k < params.size(); ++k) {
      Array<S>& p = params[k];
      Array<S> d = maximize ? Array<S>(-grads[k]) : grads[k];
      if (decay != 0) d += static_cast<S>(decay) * p;
      if (momentum != 0) {
        if (steps == 0) {
          b[k] = d;
        } else {
          b[k] = mu * b[k] + damp * d;
        }
        if (nesterov) {
          d += mu * b[k];
        } else {
          d = b[k];
        }
      }
      p -= static_cast<S>(lr) * d;
    }
    ++steps;
  }
};

/// Tensors of the sizes around a chunk: none, one entry, a chunk less one, a chunk, a chunk and
/// one, two chunks and an odd rest.
template <typename S>
std::vector<Index> sizesAroundChunk() {
  const Index c = optimizerChunk<S>();
  return {0, 1, c - 1, c, c + 1, 2 * c + 13};
}

/// Vectors as the tensors of a ParameterList, named t0, t1, ...
template <typename S>
struct Tensors {
  std::vector<Eigen::Matrix<S, Eigen::Dynamic, 1>> v;
  std::vector<std::string> names;

  explicit Tensors(const std::vector<Index>& sizes) {
    for (std::size_t k = 0; k < sizes.size(); ++k) {
      v.emplace_back(Eigen::Matrix<S, Eigen::Dynamic, 1>::Zero(sizes[k]));
      names.push_back("t" + std::to_string(k));
    }
  }
  template <typename F>
  void forEach(F&& f) {
    for (std::size_t k = 0; k < v.size(); ++k) f(names[k].c_str(), v[k]);
  }
};

/// Runs `optimizer` (made on a list of the tensors) and `whole` side by side for 5 steps of random
/// gradients (some entries tiny, so that ε matters) from the same random start, and returns how
/// many entries of the parameters differ in their bits at the end.
template <typename S, typename Make, typename Whole>
long differingEntries(Make make, Whole whole) {
  const std::vector<Index> sizes = sizesAroundChunk<S>();
  Tensors<S> params(sizes), grads(sizes);
  std::mt19937 rng(3);
  std::normal_distribution<double> normal;
  for (auto& p : params.v)
    for (Index i = 0; i < p.size(); ++i) p[i] = static_cast<S>(normal(rng));
  recurrent::ParameterList<S> list;
  list.add(params, grads);
  auto optimizer = make(list);
  std::vector<Array<S>> wholeParams, wholeGrads(sizes.size());
  for (const auto& p : params.v) wholeParams.emplace_back(p.array());
  for (int step = 0; step < 5; ++step) {
    for (std::size_t k = 0; k < sizes.size(); ++k) {
      for (Index i = 0; i < sizes[k]; ++i) {
        grads.v[k][i] = static_cast<S>(normal(rng) * (i % 5 == 0 ? 1e-7 : 1.0));
      }
      wholeGrads[k] = grads.v[k].array();
    }
    optimizer.step();
    whole.step(wholeParams, wholeGrads);
  }
  long differing = 0;
  for (std::size_t k = 0; k < sizes.size(); ++k) {
    for (Index i = 0; i < sizes[k]; ++i) {
      differing += std::memcmp(&params.v[k][i], &wholeParams[k][i], sizeof(S)) != 0 ? 1 : 0;
    }
  }
  return differing;
}

}  // namespace

TEMPLATE_TEST_CASE("Adam and AdamW step in chunks to the bits of whole-tensor passes",
                   "[optim][adam]", float, double) {
  using S = TestType;
  using recurrent::Adam;
  using recurrent::AdamOptions;
  using recurrent::AdamW;
  using recurrent::AdamWOptions;
  CHECK(differingEntries<S>(
            [](const auto& l) { return Adam<S>(l, AdamOptions(0.01)); },
            WholeAdam<S>(AdamSettings{0.01, 0.9, 0.999, 1e-8, 0, false, false, false})) == 0);
  CHECK(differingEntries<S>(
            [](const auto& l) {
              return Adam<S>(l, AdamOptions(0.02)
                                    .betas(0.8, 0.99)
                                    .eps(1e-6)
                                    .weightDecay(0.1)
                                    .amsgrad(true)
                                    .maximize(true));
            },
            WholeAdam<S>(AdamSettings{0.02, 0.8, 0.99, 1e-6, 0.1, false, true, true})) == 0);
  CHECK(differingEntries<S>(
            [](const auto& l) { return AdamW<S>(l, AdamWOptions(0.01).weightDecay(0.3)); },
            WholeAdam<S>(AdamSettings{0.01, 0.9, 0.999, 1e-8, 0.3, true, false, false})) == 0);
  // The comparison can fail: another ε is other bits.
  CHECK(differingEntries<S>(
            [](const auto& l) { return Adam<S>(l, AdamOptions(0.01)); },
            WholeAdam<S>(AdamSettings{0.01, 0.9, 0.999, 2e-8, 0, false, false, false})) > 0);
}

TEMPLATE_TEST_CASE("SGD steps in chunks to the bits of whole-tensor passes", "[optim][sgd]", float,
                   double) {
  using S = TestType;
  using recurrent::SGD;
  using recurrent::SGDOptions;
  CHECK(differingEntries<S>([](const auto& l) { return SGD<S>(l, SGDOptions(0.1)); },
                            WholeSGD<S>(SGDSettings{0.1, 0, 0, 0, false, false})) == 0);
  CHECK(differingEntries<S>(
            [](const auto& l) {
              return SGD<S>(l, SGDOptions(0.1).momentum(0.9).dampening(0.2).weightDecay(0.01));
            },
            WholeSGD<S>(SGDSettings{0.1, 0.9, 0.2, 0.01, false, false})) == 0);
  CHECK(differingEntries<S>(
            [](const auto& l) {
              return SGD<S>(l, SGDOptions(0.1).momentum(0.9).nesterov(true).maximize(true));
            },
            WholeSGD<S>(SGDSettings{0.1, 0.9, 0, 0, true, true})) == 0);
  CHECK(differingEntries<S>([](const auto& l) { return SGD<S>(l, SGDOptions(0.1)); },
                            WholeSGD<S>(SGDSettings{0.1, 0.5, 0, 0, false, false})) > 0);
}
