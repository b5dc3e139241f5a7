// Stream<Cell>: one step at a time gives what Sequence gives for the whole sequence.
#include "catch.hpp"
#include "support.hpp"

#include <recurrent/recurrent.hpp>

using namespace test;

namespace {
/// max |a − b| / max(1, max |b|): relu outputs grow without bound.
template <typename A, typename B>
double relDiff(const A& a, const B& b) {
  const double scale = std::max(1.0, static_cast<double>(b.cwiseAbs().maxCoeff()));
  return static_cast<double>((a - b).cwiseAbs().maxCoeff()) / scale;
}
}  // namespace

TEMPLATE_TEST_CASE("Stream steps reproduce Sequence::infer", "[stream]", LSTM<float>, LSTM<double>,
                   GRU<float>, GRUResetBefore<double>, RNNTanh<double>, RNNRelu<float>,
                   PeepholeLSTM<float>, PeepholeLSTM<double>, ProjLSTM<double>) {
  using Cell = typename TestType::Cell;
  using S = typename Cell::Scalar;
  // The two sum the input projection in different orders (the kernel's tiles differ with the
  // number of columns): rounding of K = 7..70 terms over 9 steps. A projection is checked in
  // double only: in float at H = 70, P = 35 (outputs up to 4.5) each path is itself ~1.8e-5 from
  // the double result, so the two differ by more than 1e-5 (1.4e-5) without being wrong.
  const double tol = std::is_same<S, float>::value ? 1e-5 : 1e-13;
  for (Index H : {5, 32, 70}) {
    std::mt19937 rng(static_cast<unsigned>(H));
    Cell cell = TestType::make(7, H);
    randomize(cell, rng);
    const Index T = 9, B = 3;
    const Mat<S> x = uniform<S>(7, T * B, rng);
    const typename Cell::State h0 = randomState(cell, B, rng);
    recurrent::Sequence<Cell> seq(cell);
    seq.infer(x, {9, 9, 9}, h0);

    recurrent::Stream<Cell> stream(cell, B);
    stream.reset(h0);
    for (Index t = 0; t < T; ++t) {
      const Mat<S>& h = stream.step(x.middleCols(t * B, B));
      INFO("H = " << H << ", t = " << t);
      CHECK(relDiff(h, seq.output().middleCols(t * B, B)) <= tol);
    }
    CHECK(relDiff(stream.state().h, seq.finalState().h) <= tol);
    if constexpr (Cell::kHasCellState) {
      CHECK(relDiff(stream.state().c, seq.finalState().c) <= tol);
    }
    stream.reset();
    CHECK(stream.state().h.isZero(0.0));
  }
}

TEST_CASE("Stream follows the cell only after refresh()", "[stream]") {
  using Cell = recurrent::LSTMCell<double>;
  std::mt19937 rng(3);
  Cell cell(2, 4);
  randomize(cell, rng);
  recurrent::Stream<Cell> stream(cell);
  const Eigen::MatrixXd x = Eigen::MatrixXd::Ones(2, 1);
  const Eigen::MatrixXd before = stream.step(x);
  cell.parameters().weight_ih *= 2.0;
  stream.reset();
  CHECK(stream.step(x) == before);  // still the packed weights
  stream.refresh();
  stream.reset();
  CHECK(stream.step(x) != before);
}

TEST_CASE("Stream argument errors", "[stream][errors]") {
  using Cell = recurrent::GRUCell<float>;
  Cell cell(3, 4);
  recurrent::Stream<Cell> stream(cell, 2);
  CHECK_THROWS_WITH(stream.step(Eigen::MatrixXf::Zero(3, 1)),
                    Contains("Stream::step: input must be 3 x 2, got 3 x 1"));
  CHECK_THROWS_WITH(stream.step(Eigen::MatrixXf::Zero(2, 2)),
                    Contains("input must be 3 x 2, got 2 x 2"));
  CHECK_THROWS_WITH(stream.reset(Cell::State{Eigen::MatrixXf::Zero(4, 3)}),
                    Contains("Stream::reset: state h must be 4 x 2, got 4 x 3"));
  CHECK_THROWS_WITH(recurrent::Stream<Cell>(cell, 0),
                    Contains("Stream: batch must be at least 1, got 0"));
  cell.parameters().bias_hh.resize(5);
  CHECK_THROWS_WITH(stream.step(Eigen::MatrixXf::Zero(3, 2)),
                    Contains("Stream::step: cell parameter bias_hh must be 12 x 1, got 5 x 1"));
}
