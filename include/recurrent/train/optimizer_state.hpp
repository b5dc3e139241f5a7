// recurrent — train/optimizer_state.hpp: per-parameter buffers of an optimizer (SGD, Adam).
#pragma once

#include <recurrent/detail/errors.hpp>
#include <recurrent/train/parameter_list.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <array>
#include <cstddef>
#include <vector>

namespace recurrent {
namespace detail {

/// Entries an optimizer updates at a time. Its update is several passes over a tensor (the
/// moments, then the parameter); chunk by chunk, every pass after the first finds the chunk's
/// parameter, gradient, buffers and scratch in L1 (five arrays of 4 KB in float: 20 KB, within
/// the 32 KB data cache of the smaller x86 cores), where whole tensors would go back to L2 or
/// memory between passes. A multiple of every SIMD packet, so that a chunk that starts aligned
/// ends aligned: each entry is computed by the same (packet or scalar) operations as in one pass
/// over the whole tensor.
constexpr Eigen::Index kOptimizerChunk = 1024;

/// Calls f(begin, n) for the chunks [begin, begin + n) of [0, size), in order: kOptimizerChunk
/// entries each, the last the rest.
template <typename F>
void inChunks(Eigen::Index size, F&& f) {
  for (Eigen::Index begin = 0; begin < size; begin += kOptimizerChunk) {
    f(begin, std::min(kOptimizerChunk, size - begin));
  }
}

/// N buffers per parameter tensor, each a flat array of the tensor's size (zero at first), a
/// scratch array of one chunk (kOptimizerChunk), and the number of steps taken. Sized once: a
/// step allocates nothing.
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
    m_scratch = Array::Zero(kOptimizerChunk);
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
  /// kOptimizerChunk entries of scratch, for a chunk's intermediate values.
  Array& scratch() { return m_scratch; }
  long steps() const { return m_steps; }
  void countStep() { ++m_steps; }

 private:
  std::vector<std::array<Array, N>> m_buffers;
  Array m_scratch;
  long m_steps = 0;
};

}  // namespace detail
}  // namespace recurrent
