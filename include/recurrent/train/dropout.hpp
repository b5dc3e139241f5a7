// recurrent — train/dropout.hpp: inverted dropout with a seeded, portable generator.
#pragma once

#include <recurrent/detail/errors.hpp>

#include <Eigen/Core>

#include <cmath>
#include <cstdint>
#include <random>

namespace recurrent {

namespace detail {

/// The generator of every dropout mask: std::mt19937_64, whose sequence the C++ standard fixes,
/// so that a seed gives the same masks on every platform and compiler.
using DropoutGenerator = std::mt19937_64;

/// SplitMix64 (Steele, Lea & Flood, "Fast splittable pseudorandom number generators", OOPSLA
/// 2014): a 64-bit mixing function, used to derive independent seeds from one.
inline std::uint64_t splitMix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/// The seed of stream `stream` (0, 1, ...) derived from `seed`.
inline std::uint64_t streamSeed(std::uint64_t seed, std::uint64_t stream) {
  return splitMix64(seed ^ splitMix64(stream));
}

/// A uniform number in [0, 1) with 53 random bits: the top bits of one 64-bit draw.
inline double uniform53(DropoutGenerator& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

/// Throws unless p is a probability (0 <= p <= 1, not NaN).
inline double checkProbability(const char* where, double p) {
  if (!(p >= 0.0 && p <= 1.0)) {
    fail(where, ": dropout probability must be in [0, 1], got ", p);
  }
  return p;
}

/// Fills `mask` with a fresh draw: each entry, in column-major order, is 1/(1 − p) with
/// probability 1 − p and 0 with probability p (u < p drops, for u uniform in [0, 1)).
template <typename Derived>
void drawDropoutMask(DropoutGenerator& rng, double p, Eigen::MatrixBase<Derived>& mask) {
  using Scalar = typename Derived::Scalar;
  const Scalar keep = p < 1.0 ? static_cast<Scalar>(1.0 / (1.0 - p)) : Scalar(0);
  for (Eigen::Index j = 0; j < mask.cols(); ++j) {
    for (Eigen::Index i = 0; i < mask.rows(); ++i) {
      mask(i, j) = uniform53(rng) < p ? Scalar(0) : keep;
    }
  }
}

}  // namespace detail

/// Dropout<Scalar>: inverted dropout, as torch.nn.Dropout in training mode (Srivastava et al.,
/// "Dropout: a simple way to prevent neural networks from overfitting", JMLR 2014).
///
///     forward:   y = m ⊙ x,     m_k = 1/(1 − p) with probability 1 − p, else 0
///     backward:  dx = m ⊙ dy    (the mask of the last forward)
///
/// The scaling by 1/(1 − p) during training keeps the expectation of y equal to x, so that
/// inference uses x unchanged: at inference simply do not call forward(). p = 1 drops
/// everything (y = 0), p = 0 keeps everything (y = x).
///
/// Masks come from the layer's own std::mt19937_64, seeded in the constructor or by seed(): the
/// same seed gives the same sequence of masks on every platform. Each forward() draws a new
/// mask (one draw per entry, column-major). Works on any matrix; repeated calls with one shape
/// allocate nothing.
template <typename Scalar_>
class Dropout {
 public:
  using Scalar = Scalar_;                                                ///< float or double
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;  ///< dynamic matrix

  /// Dropout with probability `p` of zeroing each entry, masks drawn from `seed`.
  explicit Dropout(double p = 0.5, std::uint64_t seed = 0)
      : m_p(detail::checkProbability("Dropout", p)), m_generator(seed) {}

  /// p, the probability of zeroing an entry.
  double probability() const { return m_p; }
  /// Sets p for the following forwards; throws std::invalid_argument unless 0 <= p <= 1.
  void setProbability(double p) { m_p = detail::checkProbability("Dropout::setProbability", p); }
  /// Restarts the generator: the following masks are those of a Dropout made with `seed`.
  void seed(std::uint64_t seed) { m_generator.seed(seed); }

  /// Training forward: draws a new mask shaped like x and returns y = m ⊙ x.
  const Matrix& forward(const Eigen::Ref<const Matrix>& x) {
    if (m_mask.rows() != x.rows() || m_mask.cols() != x.cols()) {
      m_mask.resize(x.rows(), x.cols());
      m_output.resize(x.rows(), x.cols());
    }
    detail::drawDropoutMask(m_generator, m_p, m_mask);
    m_hasMask = true;
    m_output.array() = x.array() * m_mask.array();
    return m_output;
  }

  /// Backward: dx = m ⊙ dy, with the mask of the last forward().
  const Matrix& backward(const Eigen::Ref<const Matrix>& dOutput) {
    if (!m_hasMask) {
      detail::fail("Dropout::backward: needs the mask of a forward(); no forward() has run");
    }
    detail::checkShape("Dropout::backward", "output gradient", dOutput.rows(), dOutput.cols(),
                       m_mask.rows(), m_mask.cols());
    if (m_dx.rows() != m_mask.rows() || m_dx.cols() != m_mask.cols()) {
      m_dx.resize(m_mask.rows(), m_mask.cols());
    }
    m_dx.array() = dOutput.array() * m_mask.array();
    return m_dx;
  }

  /// y of the last forward().
  const Matrix& output() const { return m_output; }
  /// The mask of the last forward(): entries 0 or 1/(1 − p).
  const Matrix& mask() const { return m_mask; }
  /// dx of the last backward().
  const Matrix& inputGradient() const { return m_dx; }

 private:
  double m_p;
  detail::DropoutGenerator m_generator;
  Matrix m_mask, m_output, m_dx;
  bool m_hasMask = false;
};

}  // namespace recurrent
