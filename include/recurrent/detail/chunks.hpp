// recurrent — detail/chunks.hpp: the gate math as one pass over packet-sized chunks.
//
// A cell's gate math reads a few rows of each gate for one column and writes a few others.
// Written as whole-column Eigen expressions it makes one pass over memory per statement; here
// the range is cut into chunks of one SIMD packet (two with AVX-512), each chunk's values are
// loaded into fixed-size arrays (registers), combined, and stored once. The last, shorter chunk
// is padded to a whole packet, so σ and tanh always run vectorised, even for H smaller than a
// packet.
#pragma once

#include <recurrent/detail/kernel.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <type_traits>

/// On a chunk's lambda: inline everything it calls. Eigen's packet code for σ and tanh is marked
/// `inline` only, and in a large translation unit GCC may leave it as an out-of-line call that
/// takes and returns its packets through memory; flattened, the gate math of a chunk is one
/// straight run of vector instructions (what it gains: benchmarks/README.md). The same operations
/// either way; the bit-for-bit tests (fixed against run-time sizes, zero peepholes against the
/// standard LSTM) hold under -march=native.
#if defined(__GNUC__) || defined(__clang__)
#define RECURRENT_FLATTEN __attribute__((flatten))
#else
#define RECURRENT_FLATTEN
#endif

namespace recurrent {
namespace detail {

/// The values of one chunk: W scalars, one SIMD packet, two, or a fraction of one.
template <typename Scalar, int W = GemmTraits<Scalar>::P>
using Chunk = Eigen::Array<Scalar, W, 1>;

/// Loads n ≤ W values from p; a short chunk is padded with zeros, so the gate math always runs
/// on whole packets (σ and tanh of the padding are harmless and never stored).
template <typename Scalar, int W>
inline Chunk<Scalar, W> load(const Scalar* p, Index n, std::integral_constant<int, W>) {
  if (n == W) return Eigen::Map<const Chunk<Scalar, W>>(p);
  Chunk<Scalar, W> v = Chunk<Scalar, W>::Zero();
  for (Index r = 0; r < n; ++r) v[r] = p[r];
  return v;
}

/// Stores the first n values of the chunk v to p.
template <typename Scalar, typename Derived>
inline void store(Scalar* p, Index n, const Eigen::ArrayBase<Derived>& v) {
  constexpr int W = Derived::SizeAtCompileTime;
  if (n == W) {
    Eigen::Map<Chunk<Scalar, W>> out(p);
    out = v;
  } else {
    const Chunk<Scalar, W> w = v;
    for (Index r = 0; r < n; ++r) p[r] = w[r];
  }
}

/// a·b + c lane by lane, rounded once where the target has fused multiply-add, else twice.
/// Written out where two code paths must agree to the last bit: left as `a * b + c`, the
/// compiler may or may not fuse it, and may decide differently in two instantiations.
template <typename Scalar, int W>
inline Chunk<Scalar, W> madd(const Chunk<Scalar, W>& a, const Chunk<Scalar, W>& b,
                             const Chunk<Scalar, W>& c) {
#ifdef __FMA__
  Chunk<Scalar, W> r;
  for (int i = 0; i < W; ++i) r[i] = std::fma(a[i], b[i], c[i]);
  return r;
#else
  return a * b + c;
#endif
}

/// Column j of a column-major matrix or view.
template <typename M>
inline auto column(M& m, Index j) {
  return m.data() + j * m.outerStride();
}

template <typename Scalar, int W, typename F>
inline void forEachChunkOf(Index begin, Index end, F&& f) {
  for (Index k = begin; k < end; k += W)
    f(k, std::min<Index>(W, end - k), std::integral_constant<int, W>());
}

/// Calls f(k, n, w) for the chunks [k, k + n) of [begin, end), a range of units of gates of H
/// units. The width w (a std::integral_constant) is a whole packet where H is a multiple of
/// one, else the half or quarter packet that divides H (H = 8 with 16-float packets runs on
/// 8-float ones), else a whole packet with a padded last chunk; n = w but for a last chunk.
/// With AVX-512 (32 vector registers), whole packets go two at a time while two fit the range: σ
/// and tanh are chains of dependent multiply-adds and a division, and two independent packets in
/// one chunk fill each other's latency, where one chunk after another would wait at every step of
/// the chain when the range is short (one step of a small cell). Every operation is lane by lane,
/// so the values do not depend on the width.
template <typename Scalar, typename F>
inline void forEachChunk(Index begin, Index end, Index H, F&& f) {
  constexpr int P = GemmTraits<Scalar>::P;
  if constexpr (P >= 4) {
    if (H % P != 0 && H % (P / 2) == 0) return forEachChunkOf<Scalar, P / 2>(begin, end, f);
    if (H % P != 0 && H % (P / 4) == 0) return forEachChunkOf<Scalar, P / 4>(begin, end, f);
  }
#ifdef EIGEN_VECTORIZE_AVX512
  constexpr Index kTwo = 2 * Index(P);
  for (; begin + kTwo <= end; begin += kTwo) f(begin, kTwo, std::integral_constant<int, 2 * P>());
#endif
  forEachChunkOf<Scalar, P>(begin, end, f);
}

}  // namespace detail
}  // namespace recurrent
