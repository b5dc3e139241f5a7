// Dropout<Scalar>: the mask's values and rate, its backward, its seed, and its errors.
#include "catch.hpp"
#include "support.hpp"

#include <recurrent/recurrent.hpp>

using namespace test;

TEST_CASE("dropout keeps 1 − p of the entries, scaled by 1/(1 − p)", "[dropout]") {
  for (double p : {0.1, 0.3, 0.5, 0.8}) {
    recurrent::Dropout<double> dropout(p, 5);
    std::mt19937 rng(1);
    const Mat<double> x = uniform<double>(100, 1000, rng, 0.5, 1.5);
    const Mat<double>& y = dropout.forward(x);
    const Mat<double>& m = dropout.mask();
    const double keep = 1.0 / (1.0 - p);
    CHECK(((m.array() == 0) || (m.array() == keep)).all());
    CHECK(y == x.cwiseProduct(m));
    // 10^5 Bernoulli draws: the dropped fraction is within 5 standard deviations of p.
    const double dropped = (m.array() == 0).cast<double>().mean();
    const double sd = std::sqrt(p * (1 - p) / 1e5);
    INFO("p = " << p << ": dropped " << dropped);
    CHECK(std::abs(dropped - p) < 5 * sd);
    // E[y] = x: the mean of y / x is 1 within 5 standard deviations (sd = sqrt(p / (1 − p) / n)).
    const double ratio = (y.array() / x.array()).mean();
    CHECK(std::abs(ratio - 1.0) < 5 * std::sqrt(p / (1 - p) / 1e5));
    // Neighbouring entries are independent: P(both dropped) = p².
    const double both =
        (m.topRows(99).array() == 0 && m.bottomRows(99).array() == 0).cast<double>().mean();
    CHECK(std::abs(both - p * p) < 5 * std::sqrt(p * p * (1 - p * p) / 99e3));
  }
}

TEST_CASE("dropout backward multiplies by the forward's mask", "[dropout]") {
  recurrent::Dropout<float> dropout(0.4, 3);
  std::mt19937 rng(2);
  const Mat<float> x = uniform<float>(7, 9, rng);
  const Mat<float> dy = uniform<float>(7, 9, rng);
  dropout.forward(x);
  CHECK(dropout.backward(dy) == dy.cwiseProduct(dropout.mask()));
  CHECK(dropout.inputGradient() == dy.cwiseProduct(dropout.mask()));
  // The gradient of sum(w ⊙ y) is w ⊙ m, exactly: y is linear in x for a fixed mask.
  const double loss = (dy.array() * dropout.output().array()).cast<double>().sum();
  const double viaGradient = (dropout.inputGradient().array() * x.array()).cast<double>().sum();
  CHECK(std::abs(loss - viaGradient) < 1e-5);
}

TEST_CASE("dropout p = 0 keeps everything, p = 1 drops everything", "[dropout]") {
  std::mt19937 rng(3);
  const Mat<double> x = uniform<double>(5, 6, rng);
  recurrent::Dropout<double> none(0.0), all(1.0);
  CHECK(none.forward(x) == x);
  CHECK(all.forward(x).isZero(0));
  CHECK(all.backward(x).isZero(0));
}

TEST_CASE("dropout masks are reproducible from the seed", "[dropout]") {
  const Mat<double> x = Mat<double>::Ones(8, 8);
  recurrent::Dropout<double> a(0.5, 42), b(0.5, 42), c(0.5, 43);
  const Mat<double> first = a.forward(x);
  CHECK(b.forward(x) == first);
  CHECK(c.forward(x) != first);
  CHECK(a.forward(x) != first);  // each forward draws a new mask
  a.seed(42);
  CHECK(a.forward(x) == first);
  // Pinned: std::mt19937_64 is fixed by the standard, so are these masks. With p = 0.5 an entry is
  // kept when the top bit of its draw is 1: the top bits of the first 16 draws of seed 2024,
  // computed independently from the standard's definition of the generator.
  recurrent::Dropout<float> pinned(0.5, 2024);
  pinned.forward(Eigen::MatrixXf::Ones(4, 4));
  std::string pattern;
  for (Index k = 0; k < 16; ++k) pattern += pinned.mask().data()[k] == 0 ? '0' : '1';
  CHECK(pattern == "1100001101111100");
}

TEST_CASE("Dropout argument errors", "[dropout][errors]") {
  CHECK_THROWS_WITH(recurrent::Dropout<float>(1.5),
                    Contains("Dropout: dropout probability must be in [0, 1], got 1.5"));
  CHECK_THROWS_WITH(recurrent::Dropout<float>(std::nan("")),
                    Contains("dropout probability must be in [0, 1], got nan"));
  recurrent::Dropout<float> d(0.5);
  CHECK_THROWS_WITH(d.backward(Eigen::MatrixXf::Ones(2, 2)),
                    Contains("Dropout::backward: needs the mask of a forward(); no forward() has "
                             "run"));
  CHECK_THROWS_WITH(d.setProbability(-1),
                    Contains("Dropout::setProbability: dropout probability must be in [0, 1]"));
  CHECK(d.probability() == 0.5);
  d.forward(Eigen::MatrixXf::Ones(2, 3));
  CHECK_THROWS_WITH(d.backward(Eigen::MatrixXf::Ones(3, 2)),
                    Contains("Dropout::backward: output gradient must be 2 x 3, got 3 x 2"));
}
