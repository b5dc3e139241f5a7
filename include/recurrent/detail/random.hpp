// recurrent — detail/random.hpp: uniform draws that are the same on every platform.
#pragma once

#include <Eigen/Core>

#include <cmath>
#include <type_traits>

namespace recurrent {
namespace detail {

/// A uniform number in [0, 1) from any uniform random bit generator, computed the same way on
/// every platform (std::uniform_real_distribution is not portable).
template <typename Rng>
double uniform01(Rng& rng) {
  const double range = static_cast<double>(Rng::max() - Rng::min()) + 1.0;
  return static_cast<double>(rng() - Rng::min()) / range;
}

/// Fills every tensor of `tensors` (anything with forEach(name, tensor)), in forEach order and
/// each in storage order, with U(-bound, bound): PyTorch's initialisation of its recurrent layers
/// (bound = 1/√H) and of nn.Linear (bound = 1/√I).
template <typename Tensors, typename Rng>
void fillUniform(Tensors& tensors, double bound, Rng& rng) {
  tensors.forEach([&](const char*, auto& tensor) {
    using Scalar = typename std::decay_t<decltype(tensor)>::Scalar;
    for (Eigen::Index k = 0; k < tensor.size(); ++k) {
      tensor.data()[k] = static_cast<Scalar>(-bound + 2.0 * bound * uniform01(rng));
    }
  });
}

}  // namespace detail
}  // namespace recurrent
