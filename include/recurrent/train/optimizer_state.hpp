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

/// Entries an optimizer updates at a time: 4 KB of each array. Its update is several passes over
/// a tensor (Adam: the gradient used, the two moments, the parameter); chunk by chunk, what one
/// pass wrote or read is still in L1 when the next reads it (Adam's parameter, gradient, moments,
/// scratch and AMSGrad's maximum: at most 24 KB, within the 32 KB data cache of the smaller x86
/// cores), where whole tensors would go back to L2 or memory between passes. 4 KB is a multiple
/// of every SIMD packet: a chunk of an array whose data is aligned to its packet (as Eigen
/// allocates it) starts and ends aligned, so that each entry is computed by the same packet or
/// scalar operations as in one pass over the whole array.
template <typename Scalar>
constexpr Eigen::Index optimizerChunk() {
  return Eigen::Index(4096 / sizeof(Scalar));
}

/// N buffers per parameter tensor, each a flat array of the tensor's size (zero at first), a
/// scratch array of one chunk (optimizerChunk), and the number of steps taken; forEachChunk walks
/// a step. Sized once: a step allocates nothing.
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
    m_scratch = Array::Zero(optimizerChunk<Scalar>());
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

  /// The walk of a step: for each tensor k of `params` and each of its chunks [begin, begin + n)
  /// of optimizerChunk() entries (the last the rest), in order, the chunk's gradient used — the
  /// gradient, negated when `maximize` — written to the scratch, then f(k, begin, p, g) with p
  /// the parameter's chunk and g the scratch's (Eigen blocks, both writable). f's passes then
  /// read what the last one left in L1.
  template <typename F>
  void forEachChunk(const ParameterList<Scalar>& params, bool maximize, F&& f) {
    constexpr Eigen::Index kChunk = optimizerChunk<Scalar>();
    for (std::size_t k = 0; k < params.size(); ++k) {
      auto value = params[k].value.array();
      const auto gradient = params[k].gradient.array();
      for (Eigen::Index begin = 0; begin < value.size(); begin += kChunk) {
        const Eigen::Index n = std::min(kChunk, value.size() - begin);
        auto g = m_scratch.head(n);
        if (maximize) {
          g = -gradient.segment(begin, n);
        } else {
          g = gradient.segment(begin, n);
        }
        f(k, begin, value.segment(begin, n), g);
      }
    }
  }
  long steps() const { return m_steps; }
  void countStep() { ++m_steps; }

 private:
  std::vector<std::array<Array, N>> m_buffers;
  Array m_scratch;
  long m_steps = 0;
};

}  // namespace detail
}  // namespace recurrent
