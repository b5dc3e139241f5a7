// recurrent — train/optimizer_state.hpp: per-parameter buffers of an optimizer (SGD, Adam).
#pragma once

#include <recurrent/detail/errors.hpp>
#include <recurrent/train/parameter_list.hpp>

#include <Eigen/Core>

#include <array>
#include <cstddef>
#include <vector>

namespace recurrent {
namespace detail {

/// N buffers per parameter tensor, each a flat array of the tensor's size (zero at first),
/// and the number of steps taken. Sized once: a step allocates nothing.
template <typename Scalar, std::size_t N>
class OptimizerState {
 public:
  using Array = Eigen::Array<Scalar, Eigen::Dynamic, 1>;

  void resize(const ParameterList<Scalar>& params) {
    m_buffers.clear();
    for (const auto& e : params) {
      std::array<Array, N> buffers;
      for (Array& b : buffers) b = Array::Zero(e.value.size());
      m_buffers.push_back(std::move(buffers));
    }
    m_steps = 0;
  }

  /// Throws unless every parameter and gradient still has the size it had at the start.
  void check(const ParameterList<Scalar>& params, const char* where) const {
    params.checkShapes(where);
    for (std::size_t k = 0; k < params.size(); ++k) {
      if (params[k].value.size() != m_buffers[k][0].size()) {
        fail(where, ": parameter ", params[k].name, " has ", params[k].value.size(),
             " entries now, ", m_buffers[k][0].size(), " when the optimizer was made");
      }
    }
  }

  Array& buffer(std::size_t k, std::size_t which) { return m_buffers[k][which]; }
  long steps() const { return m_steps; }
  void countStep() { ++m_steps; }

 private:
  std::vector<std::array<Array, N>> m_buffers;
  long m_steps = 0;
};

}  // namespace detail
}  // namespace recurrent
