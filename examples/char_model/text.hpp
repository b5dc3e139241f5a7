// The char model's text: its bytes, their vocabulary, one-hot columns, and sampling from a
// softmax with a temperature.
#pragma once

#include <Eigen/Core>

#include <array>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace example {

/// The distinct bytes of a text in increasing order, and each byte's index among them.
class Vocabulary {
 public:
  explicit Vocabulary(const std::string& text) {
    m_index.fill(-1);
    std::array<bool, 256> seen{};
    for (const char c : text) seen[static_cast<unsigned char>(c)] = true;
    for (int b = 0; b < 256; ++b) {
      if (seen[static_cast<std::size_t>(b)]) {
        m_index[static_cast<std::size_t>(b)] = static_cast<int>(m_bytes.size());
        m_bytes.push_back(static_cast<unsigned char>(b));
      }
    }
  }
  /// The number of distinct bytes.
  int size() const { return static_cast<int>(m_bytes.size()); }
  /// The index of byte `c`, or −1 if the text does not hold it.
  int index(char c) const { return m_index[static_cast<unsigned char>(c)]; }
  /// The byte of index `k`.
  char byte(int k) const { return static_cast<char>(m_bytes[static_cast<std::size_t>(k)]); }
  /// The bytes' values joined by commas ("10,32,33,..."): the vocabulary in a weight file's
  /// metadata, which must be valid UTF-8 whatever the text holds.
  std::string codes() const {
    std::string s;
    for (const unsigned char b : m_bytes) s += (s.empty() ? "" : ",") + std::to_string(b);
    return s;
  }

 private:
  std::vector<unsigned char> m_bytes;
  std::array<int, 256> m_index;  ///< −1 for a byte the text does not hold
};

/// The whole file at `path`; an error naming it if it cannot be read or holds fewer than
/// `least` bytes.
inline std::string readText(const std::string& path, std::size_t least) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open the file");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.size() < least) {
    throw std::runtime_error(path + ": " + std::to_string(text.size()) +
                             " bytes are too few: the model needs at least " +
                             std::to_string(least) + " (for its training and validation parts)");
  }
  return text;
}

/// Column `col` of `x` set to the one-hot vector of `k` (the rest of the column zero).
template <typename Matrix>
void setOneHot(Matrix& x, Eigen::Index col, int k) {
  x.col(col).setZero();
  x(k, col) = 1;
}

/// A class drawn from softmax(logits / temperature); temperature → 0 approaches the argmax.
/// Draws with 53 bits of `rng`, so a seed gives the same text on every platform.
template <typename Vector>
int sampleSoftmax(const Vector& logits, double temperature, std::mt19937_64& rng) {
  const double top = static_cast<double>(logits.maxCoeff());
  std::vector<double> weights(static_cast<std::size_t>(logits.size()));
  double total = 0;
  for (Eigen::Index r = 0; r < logits.size(); ++r) {
    weights[static_cast<std::size_t>(r)] =
        std::exp((static_cast<double>(logits(r)) - top) / temperature);
    total += weights[static_cast<std::size_t>(r)];
  }
  double u = static_cast<double>(rng() >> 11) * 0x1.0p-53 * total;
  for (std::size_t r = 0; r < weights.size(); ++r) {
    u -= weights[r];
    if (u < 0) return static_cast<int>(r);
  }
  return static_cast<int>(weights.size()) - 1;  // u within rounding of the total
}

}  // namespace example
