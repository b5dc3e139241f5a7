// Stream<Cell>: one step at a time gives what Sequence gives for the whole sequence.
#include "catch.hpp"
#include "support.hpp"

#include <recurrent/recurrent.hpp>

#include <limits>
#include <type_traits>
#include <vector>

using namespace test;

namespace {
/// max |a − b| / max(1, max |b|): relu outputs grow without bound.
template <typename A, typename B>
double relDiff(const A& a, const B& b) {
  const double scale = std::max(1.0, static_cast<double>(b.cwiseAbs().maxCoeff()));
  return static_cast<double>((a - b).cwiseAbs().maxCoeff()) / scale;
}

/// Whether Sequence::infer of one sequence of `cell` runs the fused step (full precision, one
/// thread, no zoneout): the cell names a fused product, h is its hidden state, and the packed F
/// fits in this machine's L1 data cache.
template <typename Cell>
bool fusedInL1(const Cell& cell) {
  if constexpr (recurrent::Stream<Cell>::kFusedStep) {
    const recurrent::detail::fused::Layout<Cell> layout{static_cast<int>(cell.inputSize()),
                                                        static_cast<int>(cell.hiddenSize())};
    return cell.outputSize() == cell.hiddenSize() &&
           long(layout.offset(layout.panels())) * long(sizeof(typename Cell::Scalar)) <=
               recurrent::detail::l1DataCacheBytes();
  } else {
    (void)cell;
    return false;
  }
}

/// Sequence::infer of one sequence against a Stream's steps from the same state (h0, or zero
/// where it is empty), with lengths T and 5: within `tol`, and zero past the length.
template <typename Cell>
void checkOneSequence(const Cell& cell, const Mat<typename Cell::Scalar>& x,
                      const typename Cell::State& h0, double tol) {
  const Index T = x.cols();
  recurrent::Stream<Cell> stream(cell, 1);
  recurrent::Sequence<Cell> seq(cell);
  for (int length : {static_cast<int>(T), 5}) {
    seq.infer(x, {length}, h0);
    if (h0.h.size() != 0) {
      stream.reset(h0);
    } else {
      stream.reset();
    }
    INFO("length " << length << (h0.h.size() != 0 ? ", initial state given" : ", zero state"));
    for (Index t = 0; t < length; ++t) {
      INFO("t = " << t);
      CHECK(relDiff(stream.step(x.col(t)), seq.output().col(t)) <= tol);
    }
    CHECK(seq.output().rightCols(T - length).isZero(0.0));
    CHECK(relDiff(stream.finalState().h, seq.finalState().h) <= tol);
    if constexpr (Cell::kHasCellState) {
      CHECK(relDiff(stream.finalState().c, seq.finalState().c) <= tol);
    }
  }
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
    CHECK(relDiff(stream.finalState().h, seq.finalState().h) <= tol);
    if constexpr (Cell::kHasCellState) {
      CHECK(relDiff(stream.finalState().c, seq.finalState().c) <= tol);
    }
    stream.reset();
    CHECK(stream.finalState().h.isZero(0.0));
  }
}

TEMPLATE_TEST_CASE("Stream::reset restores a state it reported, its own finalState() included",
                   "[stream]", LSTM<double>, GRU<float>) {
  using Cell = typename TestType::Cell;
  using S = typename Cell::Scalar;
  std::mt19937 rng(11);
  Cell cell = TestType::make(3, 6);
  randomize(cell, rng);
  for (Index B : {1, 2}) {  // the fused step and the batched one
    const Mat<S> x = uniform<S>(3, 6 * B, rng);
    recurrent::Stream<Cell> stream(cell, B);
    for (Index t = 0; t < 3; ++t) stream.step(x.middleCols(t * B, B));
    const typename Cell::State checkpoint = stream.finalState();
    CHECK_FALSE(checkpoint.h.isZero(0.0));
    stream.reset(stream.finalState());  // refers to the state it replaces
    CHECK(stream.finalState().h == checkpoint.h);
    // Stepping on from the restored state is stepping on from the checkpoint.
    recurrent::Stream<Cell> fresh(cell, B);
    fresh.reset(checkpoint);
    for (Index t = 3; t < 6; ++t) {
      const Mat<S> a = stream.step(x.middleCols(t * B, B));
      const Mat<S>& b = fresh.step(x.middleCols(t * B, B));
      CHECK(a == b);
    }
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

TEMPLATE_TEST_CASE("a Stream whose cell was given other sizes steps only after refresh()",
                   "[stream][errors]", LSTM<float>, GRU<float>, GRUResetBefore<double>,
                   ProjLSTM<double>) {
  using Cell = typename TestType::Cell;
  using S = typename Cell::Scalar;
  // Small to large (one fused-step panel to several, whose order alternates) and back; B = 1
  // runs the fused step where the cell has one, B = 2 the batched kernel.
  for (Index B : {1, 2}) {
    std::mt19937 rng(static_cast<unsigned>(B));
    Cell cell = TestType::make(2, 4);
    randomize(cell, rng);
    recurrent::Stream<Cell> stream(cell, B);
    stream.step(uniform<S>(2, B, rng));
    for (const auto& [I, H] : {std::pair<Index, Index>{3, 40}, {2, 6}}) {
      cell = TestType::make(I, H);
      randomize(cell, rng);
      CHECK_THROWS_WITH(stream.step(uniform<S>(I, B, rng)),
                        Contains("Stream::step: the cell's sizes changed; call refresh()"));
      stream.refresh();  // repacks and sets the state to zero at the new sizes
      CHECK(stream.finalState().h.rows() == cell.outputSize());
      CHECK(stream.finalState().h.isZero(0.0));
      recurrent::Stream<Cell> fresh(cell, B);
      for (int t = 0; t < 5; ++t) {
        const Mat<S> x = uniform<S>(I, B, rng);
        const Mat<S> h = stream.step(x);
        CHECK(h == fresh.step(x));  // the same kernel on the same packing: the same bits
      }
    }
  }
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

// ---- cells with compile-time sizes ----------------------------------------------------------

namespace {

/// A cell with compile-time sizes and the run-time-sized cell of the same kind.
template <typename FixedCell, typename DynamicCell,
          recurrent::Nonlinearity Phi = recurrent::Nonlinearity::Tanh>
struct FixedCase {
  using Fixed = FixedCell;
  using Dynamic = DynamicCell;
  static Fixed makeFixed() {
    if constexpr (std::is_constructible<Fixed, recurrent::Nonlinearity>::value) {
      return Fixed(Phi);
    } else {
      return Fixed();
    }
  }
  static Dynamic makeDynamic(Index I, Index H) {
    if constexpr (std::is_constructible<Dynamic, Index, Index, recurrent::Nonlinearity>::value) {
      return Dynamic(I, H, Phi);
    } else {
      return Dynamic(I, H);
    }
  }
};

using recurrent::GRUCell;
using recurrent::GRUVariant;
using recurrent::LSTMCell;
using recurrent::ResetBeforeGRUCell;
using recurrent::RNNCell;

}  // namespace

static_assert(recurrent::Stream<LSTMCell<float, 1, 8>>::kFusedStep);
// In these cases of the test below the fused step alternates its panels' order (every other step
// last to first) on every core with an L1 data cache of 32 KB or more, so each check of two
// consecutive steps covers both orders.
constexpr long kSmallestL1 = 32 * 1024;
static_assert(
    recurrent::detail::fused::Layout<LSTMCell<float, 32, 32>>{32, 32}.alternates(kSmallestL1));
static_assert(
    recurrent::detail::fused::Layout<LSTMCell<double, 3, 40>>{3, 40}.alternates(kSmallestL1));
static_assert(recurrent::detail::fused::Layout<GRUCell<float>>{1, 24}.alternates(kSmallestL1));
static_assert(recurrent::Stream<GRUCell<float, 4, 8, GRUVariant::ResetAfter>>::kFusedStep);
static_assert(recurrent::Stream<RNNCell<double, 4, 8>>::kFusedStep);
static_assert(recurrent::Stream<LSTMCell<float>>::kFusedStep);
TEMPLATE_TEST_CASE("Sequence::infer of one sequence gives a Stream's steps to the bit",
                   "[sequence][stream]", LSTM<float>, LSTM<double>, GRU<float>,
                   GRUResetBefore<float>, RNNTanh<float>, RNNRelu<double>, PeepholeLSTM<float>,
                   ProjLSTM<double>) {
  using Cell = typename TestType::Cell;
  using S = typename Cell::Scalar;
  for (Index H : {5, 24, 80}) {
    std::mt19937 rng(static_cast<unsigned>(H + 1));
    Cell cell = TestType::make(7, H);
    randomize(cell, rng);
    // Where the fused step's packed weights fit in L1 (I = 7, H ≤ 24: at most 24 KB), both run
    // it and agree exactly; at H = 80 the LSTM's and GRU's (at least 111 KB) take Sequence's
    // batched path, whose sums round differently (the bound of the test above), while the RNN's
    // (27 KB in float) may still fit. Cells without a fused step (GRU reset-before) or whose h is
    // a projection run the batched kernel in both (a projection in double only, as in the test
    // above: in float the two batched paths may differ by more than 1e-5 without being wrong).
    // Over these 12 steps the batched paths' different summation orders were measured at up to
    // 3.7e-6 in float and 1.5e-13 in double (the projected LSTM at H = 80, -march=native): the
    // bounds are 1e-5 and 1e-12; a wrong path differs by ~1e-2.
    const bool exact = fusedInL1(cell);
    const double tol = exact ? 0.0 : std::is_same<S, float>::value ? 1e-5 : 1e-12;
    INFO("H = " << H << (exact ? ", exact" : ""));
    const Mat<S> x = uniform<S>(7, 12, rng);
    checkOneSequence(cell, x, randomState(cell, 1, rng), tol);
    checkOneSequence(cell, x, typename Cell::State{}, tol);
  }
}

static_assert(!recurrent::Stream<LSTMCell<float>>::kFixedSizes);
static_assert(recurrent::Stream<LSTMCell<float, 1, 8>>::kFixedSizes);
static_assert(!recurrent::Stream<LSTMCell<float, 4>>::kFixedSizes);
static_assert(!recurrent::Stream<GRUCell<float, 4, 8, GRUVariant::ResetBefore>>::kFusedStep);

TEMPLATE_TEST_CASE(
    "a fixed-size cell streams as the run-time-sized cell does", "[stream][fixed]",
    (FixedCase<LSTMCell<float, 7, 5>, LSTMCell<float>>),
    (FixedCase<LSTMCell<float, 1, 16>, LSTMCell<float>>),
    (FixedCase<LSTMCell<float, 32, 32>, LSTMCell<float>>),
    (FixedCase<LSTMCell<double, 3, 40>, LSTMCell<double>>),
    (FixedCase<GRUCell<float, 7, 5, GRUVariant::ResetAfter>, GRUCell<float>>),
    (FixedCase<GRUCell<float, 1, 24, GRUVariant::ResetAfter>, GRUCell<float>>),
    (FixedCase<GRUCell<double, 16, 16, GRUVariant::ResetAfter>, GRUCell<double>>),
    (FixedCase<GRUCell<float, 4, 8, GRUVariant::ResetBefore>, ResetBeforeGRUCell<float>>),
    (FixedCase<RNNCell<float, 3, 24>, RNNCell<float>>),
    (FixedCase<RNNCell<double, 1, 8>, RNNCell<double>, recurrent::Nonlinearity::Relu>)) {
  using Fixed = typename TestType::Fixed;
  using Dynamic = typename TestType::Dynamic;
  using S = typename Fixed::Scalar;
  Fixed fixed = TestType::makeFixed();
  const Index I = fixed.inputSize(), H = fixed.hiddenSize();
  REQUIRE(I == Fixed::kInputSize);
  REQUIRE(H == Fixed::kHiddenSize);
  Dynamic dynamic = TestType::makeDynamic(I, H);
  std::mt19937 rng(static_cast<unsigned>(I * 100 + H));
  randomize(dynamic, rng);
  fixed.parameters() = dynamic.parameters();
  // Reference: the batched kernel (Sequence, one step from the fixed Stream's state). The fused
  // kernel (B = 1) sums each row of [W_ih W_hh]·[x; h] in one pass, the batched one sums W_ih·x
  // and W_hh·h apart: the same numbers rounded differently. One step: measured at most 5.5 units
  // of rounding (eps) relative to max(1, |h|) over these cases (K = I + H ≤ 64 terms of size ~1
  // that partly cancel); allowed 16 eps. A mispacked weight or a dropped term would differ by
  // ~1e-2. Over 40 steps the recurrence may amplify those differences: 1e-5 / 1e-13 as above.
  // The run-time-sized Stream runs the same fused kernel with run-time bounds: the same sums
  // (measured: identical), held here to the same bounds.
  const double eps = static_cast<double>(std::numeric_limits<S>::epsilon());
  const double trajectoryTol = std::is_same<S, float>::value ? 1e-5 : 1e-13;
  // Sequence::infer of one sequence runs the fused step itself; the reference runs each column
  // twice (a batch of two), which takes the batched kernel.
  recurrent::Sequence<Dynamic> reference(dynamic);
  const auto twice = [](const auto& m) {
    Mat<S> both(m.rows(), 2 * m.cols());
    both << m, m;
    return both;
  };
  for (Index B : {1, 3}) {
    const Index T = 40, RB = B == 1 ? 2 : B;
    const std::vector<int> one(static_cast<std::size_t>(RB), 1);
    const Mat<S> x = uniform<S>(I, T * B, rng);
    const typename Fixed::State h0 = randomState(fixed, B, rng);
    recurrent::Stream<Fixed> fixedStream(fixed, B);
    recurrent::Stream<Dynamic> dynamicStream(dynamic, B);
    fixedStream.reset(h0);
    dynamicStream.reset(h0);
    double stepWorst = 0, dynamicWorst = 0;
    for (Index t = 0; t < T; ++t) {
      typename Fixed::State state = fixedStream.finalState();
      Mat<S> xt = x.middleCols(t * B, B);
      if (B == 1) {
        xt = twice(xt);
        state.h = twice(state.h);
        if constexpr (Fixed::kHasCellState) state.c = twice(state.c);
      }
      reference.infer(xt, one, state);
      const Mat<S>& a = fixedStream.step(x.middleCols(t * B, B));
      const Mat<S>& d = dynamicStream.step(x.middleCols(t * B, B));
      stepWorst = std::max(stepWorst, relDiff(a, reference.output().leftCols(B)));
      dynamicWorst = std::max(dynamicWorst, relDiff(a, d));
      if constexpr (Fixed::kHasCellState) {
        stepWorst = std::max(
            stepWorst, relDiff(fixedStream.finalState().c, reference.finalState().c.leftCols(B)));
        dynamicWorst = std::max(dynamicWorst,
                                relDiff(fixedStream.finalState().c, dynamicStream.finalState().c));
      }
    }
    INFO("B = " << B << ": one step vs the batched kernel " << stepWorst / eps
                << " eps; 40 steps vs the run-time-sized Stream " << dynamicWorst / eps << " eps");
    CHECK(stepWorst <= 16 * eps);
    CHECK(dynamicWorst <= 16 * eps);
    // And the whole sequence through Sequence with the fixed-size cell: for B = 1 the fused step
    // where it fits in L1 (exact against the Stream: the test below), for B = 3 the batched
    // kernel.
    recurrent::Sequence<Fixed> seq(fixed);
    seq.infer(x, std::vector<int>(static_cast<std::size_t>(B), static_cast<int>(T)), h0);
    CHECK(relDiff(fixedStream.finalState().h, seq.finalState().h) <= trajectoryTol);
  }
}

TEMPLATE_TEST_CASE(
    "Sequence::infer of one sequence of a fixed-size cell gives its Stream's steps to the bit",
    "[sequence][stream][fixed]", (FixedCase<LSTMCell<float, 7, 5>, LSTMCell<float>>),
    (FixedCase<LSTMCell<float, 32, 32>, LSTMCell<float>>),
    (FixedCase<LSTMCell<double, 3, 40>, LSTMCell<double>>),
    (FixedCase<GRUCell<float, 7, 5, GRUVariant::ResetAfter>, GRUCell<float>>),
    (FixedCase<RNNCell<double, 1, 8>, RNNCell<double>, recurrent::Nonlinearity::Relu>)) {
  using Fixed = typename TestType::Fixed;
  using S = typename Fixed::Scalar;
  Fixed fixed = TestType::makeFixed();
  const Index I = fixed.inputSize(), H = fixed.hiddenSize();
  typename TestType::Dynamic dynamic = TestType::makeDynamic(I, H);
  std::mt19937 rng(static_cast<unsigned>(I * 100 + H + 7));
  randomize(dynamic, rng);
  fixed.parameters() = dynamic.parameters();
  // FusedStep in both where F fits in L1 (every case here but the double LSTM of 40 units,
  // 55 KB); there the batched path, to float rounding.
  const bool exact = fusedInL1(fixed);
  const double tol = exact ? 0.0 : std::is_same<S, float>::value ? 1e-5 : 1e-13;
  INFO((exact ? "exact" : "batched"));
  const Mat<S> x = uniform<S>(I, 12, rng);
  checkOneSequence(fixed, x, randomState(fixed, 1, rng), tol);
  checkOneSequence(fixed, x, typename Fixed::State{}, tol);
}

TEST_CASE("the fused step follows the cell only after refresh()", "[stream][fixed]") {
  using Cell = recurrent::LSTMCell<float, 2, 4>;
  std::mt19937 rng(3);
  Cell cell;
  randomize(cell, rng);
  recurrent::Stream<Cell> stream(cell);
  const Eigen::MatrixXf x = Eigen::MatrixXf::Ones(2, 1);
  const Eigen::MatrixXf before = stream.step(x);
  cell.parameters().weight_hh *= 2.0F;
  stream.reset();
  CHECK(stream.step(x) == before);  // h = 0: W_hh plays no part in the first step
  const Eigen::MatrixXf second = stream.step(x);
  stream.refresh();
  stream.reset();
  CHECK(stream.step(x) == before);
  CHECK(stream.step(x) != second);
  CHECK_THROWS_WITH(stream.step(Eigen::MatrixXf::Zero(3, 1)),
                    Contains("Stream::step: input must be 2 x 1, got 3 x 1"));
}
