// The char model's text handling (examples/char_model/text.hpp): the vocabulary, one-hot
// columns, and sampling from a softmax with a temperature.
#include "char_model/text.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <string>
#include <vector>

TEST_CASE("the vocabulary is the text's distinct bytes in increasing order", "[example]") {
  const example::Vocabulary v(std::string("banana\n\xff", 8));
  REQUIRE(v.size() == 5);
  CHECK(v.byte(0) == '\n');
  CHECK(v.index('a') == 1);
  CHECK(v.index('b') == 2);
  CHECK(v.index('n') == 3);
  CHECK(v.index('\xff') == 4);
  CHECK(v.index('z') == -1);
  CHECK(v.codes() == "10,97,98,110,255");
  Eigen::MatrixXf x = Eigen::MatrixXf::Constant(5, 2, 7);
  example::setOneHot(x, 1, 3);
  CHECK(x.col(1) == Eigen::Vector<float, 5>(0, 0, 0, 1, 0));
  CHECK(x.col(0) == Eigen::Vector<float, 5>::Constant(7));
}

TEST_CASE("sampling draws each class with softmax(logits / temperature)", "[example]") {
  const Eigen::Vector3f logits(0.0F, 1.0F, 2.0F);
  std::mt19937_64 rng(5);
  for (const double temperature : {1.0, 0.5}) {
    std::vector<double> p(3);
    double total = 0;
    for (int k = 0; k < 3; ++k) total += p[static_cast<std::size_t>(k)] = std::exp(k / temperature);
    const int draws = 40000;
    std::vector<int> count(3);
    for (int n = 0; n < draws; ++n) {
      ++count[static_cast<std::size_t>(example::sampleSoftmax(logits, temperature, rng))];
    }
    for (std::size_t k = 0; k < 3; ++k) {
      const double expected = p[k] / total;
      const double sigma = std::sqrt(expected * (1 - expected) / draws);
      CHECK(std::abs(count[k] / static_cast<double>(draws) - expected) < 5 * sigma);
    }
  }
  // A low temperature picks the largest logit.
  for (int n = 0; n < 100; ++n) CHECK(example::sampleSoftmax(logits, 0.01, rng) == 2);
}
