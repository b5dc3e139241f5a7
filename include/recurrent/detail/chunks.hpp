// recurrent — chunks.hpp: the gate math as one pass over packet-sized chunks.
//
// A cell's gate math reads a few rows of each gate for one column and writes a few others.
// Written as whole-column Eigen expressions it makes one pass over memory per statement; here
// the range is cut into chunks of one SIMD packet, each chunk's values are loaded into
// fixed-size arrays (registers), combined, and stored once. The last, shorter chunk is padded
// to a whole packet, so σ and tanh always run vectorised, even for H smaller than a packet.
#pragma once

#include <recurrent/detail/gemm.hpp>

#include <Eigen/Core>

#include <algorithm>

namespace recurrent {
namespace detail {

/// The values of one chunk: one SIMD packet.
template <typename Scalar>
using Chunk = Eigen::Array<Scalar, GemmTraits<Scalar>::P, 1>;

/// Loads n ≤ P values from p; a short chunk is padded with zeros, so the gate math always runs
/// on whole packets (σ and tanh of the padding are harmless and never stored).
template <typename Scalar>
inline Chunk<Scalar> load(const Scalar* p, Index n) {
  constexpr int W = GemmTraits<Scalar>::P;
  if (n == W) return Eigen::Map<const Chunk<Scalar>>(p);
  Chunk<Scalar> v = Chunk<Scalar>::Zero();
  for (Index r = 0; r < n; ++r) v[r] = p[r];
  return v;
}

/// Stores the first n ≤ P values of v to p.
template <typename Scalar, typename Derived>
inline void store(Scalar* p, Index n, const Eigen::ArrayBase<Derived>& v) {
  constexpr int W = GemmTraits<Scalar>::P;
  if (n == W) {
    Eigen::Map<Chunk<Scalar>> out(p);
    out = v;
  } else {
    const Chunk<Scalar> w = v;
    for (Index r = 0; r < n; ++r) p[r] = w[r];
  }
}

/// Column j of a column-major matrix or view.
template <typename M>
inline auto column(M& m, Index j) {
  return m.data() + j * m.outerStride();
}

/// Calls f(k, n) for the chunks [k, k + n) of [begin, end), n = P but for the last one.
template <typename Scalar, typename F>
inline void forEachChunk(Index begin, Index end, F&& f) {
  constexpr Index W = GemmTraits<Scalar>::P;
  for (Index k = begin; k < end; k += W) f(k, std::min(W, end - k));
}

}  // namespace detail
}  // namespace recurrent
