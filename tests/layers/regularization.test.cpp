// Recurrent regularisation of Sequence (layers/regularization.hpp): input and recurrent
// variational dropout, zoneout, weight drop. Against PyTorch autograd with the masks fixed
// (tests/generate_layernorm_fixtures.py, every option at once, unequal unsorted lengths), against
// central differences option by option, and zoneout's inference against its expectation.
#include "catch.hpp"
#include "support.hpp"
#include "torch_errors.hpp"

#include <recurrent/recurrent.hpp>

#include <algorithm>
#include <iostream>
#include <map>
#include <string>

using namespace test;
using recurrent::Regularization;
using recurrent::Sequence;

namespace {

template <typename Cell>
void compareRegularised(const std::string& fixtureName) {
  using S = typename Cell::Scalar;
  const Fixture f(fixtureName);
  const std::vector<int> lengths = f.lengths();
  const MatrixXd weightIh = f.torch2d("weight_ih");
  Cell cell(weightIh.cols(), weightIh.rows() / Cell::kGates);
  cell.parameters().forEach([&](const char* name, auto& tensor) {
    const MatrixXd t = f.torch2d(name);
    tensor = t.cast<S>();
  });
  recurrent::RecurrentMasks<S> masks;
  masks.input = f.columns("mask_input").cast<S>();
  masks.recurrent = f.columns("mask_recurrent").cast<S>();
  masks.weight = f.torch2d("mask_weight").cast<S>();
  masks.zoneoutH = f.columns("mask_zoneout_h").cast<S>();
  typename Cell::State h0, wFinal;
  h0.h = f.columns("h0").cast<S>();
  wFinal.h = f.columns("wh").cast<S>();
  if constexpr (Cell::kHasCellState) {
    masks.zoneoutC = f.columns("mask_zoneout_c").cast<S>();
    h0.c = f.columns("c0").cast<S>();
    wFinal.c = f.columns("wc").cast<S>();
  }
  const Mat<S> x = f.columns("x").cast<S>();
  const Mat<S> wy = f.columns("wy").cast<S>();

  Sequence<Cell> seq(cell);
  seq.setMasks(masks);
  seq.forward(x, lengths, h0);
  auto grads = cell.zeroGradients();
  seq.backward(wy, wFinal, grads);

  std::vector<std::pair<std::string, double>> errors = {
      {"output", errorAgainst(seq.output(), f.columns("y"))},
      {"h_n", errorAgainst(seq.finalState().h, f.columns("h_n"))},
      {"grad x", errorAgainst(seq.inputGradient(), f.columns("grad_x"))},
      {"grad h0", errorAgainst(seq.initialStateGradient().h, f.columns("grad_h0"))},
  };
  grads.forEach([&](const char* name, const auto& g) {
    errors.emplace_back(std::string("grad ") + name,
                        errorAgainst(g, f.torch2d(std::string("grad_") + name)));
  });
  if constexpr (Cell::kHasCellState) {
    errors.emplace_back("c_n", errorAgainst(seq.finalState().c, f.columns("c_n")));
    errors.emplace_back("grad c0",
                        errorAgainst(seq.initialStateGradient().c, f.columns("grad_c0")));
  }
  CHECK(errors.size() >= 8);
  checkTorchErrors<S>(std::string("regularised ") + fixtureName, errors);
}

/// One option's masks, drawn by a forward with `options`, then fixed: BPTT against central
/// differences of the same masked forward, for every parameter, x and the initial state.
template <typename Cell>
void gradcheck(const Regularization& options, unsigned seed, int threads) {
  std::mt19937 rng(seed);
  const std::vector<int> lengths = {3, 5, 1, 4};
  const Index T = 5, B = 4;
  Cell cell(3, 4);
  randomize(cell, rng);
  Mat<double> x = uniform<double>(3, T * B, rng);
  typename Cell::State h0 = randomState(cell, B, rng);
  const LinearLoss<Cell> loss = randomLoss(cell, T, B, rng);

  Sequence<Cell> seq(cell);
  seq.setRegularization(options);
  seq.seed(seed);
  seq.setThreads(threads, recurrent::ThreadLimit::Exactly);
  seq.forward(x, lengths, h0);
  const recurrent::RecurrentMasks<double> masks = seq.masks();
  auto grads = cell.zeroGradients();
  seq.backward(loss.wy, loss.wFinal, grads);

  Sequence<Cell> s(cell);
  s.setMasks(masks);
  const auto lossOf = [&] {
    s.forward(x, lengths, h0);
    return loss(s.output(), s.finalState());
  };
  // A step of 1e-6: where dropout leaves a column of x one small entry, a layer norm over W_ih x
  // is close to its ε and curves sharply, and the differences' truncation error (∝ step²) at
  // 1e-5 reaches 2e-6 of the gradient (BPTT itself agrees with autograd to 1e-10 above).
  const double step = 1e-6;
  std::map<std::string, MatrixXd> analytic;
  grads.forEach([&](const char* name, const auto& g) { analytic[name] = g; });
  cell.parameters().forEach([&](const char* name, auto& tensor) {
    INFO(name);
    CHECK(relativeError(analytic.at(name), numericGradient(tensor, lossOf, step)) <= 1e-6);
  });
  CHECK(relativeError(seq.inputGradient(), numericGradient(x, lossOf, step)) <= 1e-6);
  CHECK(relativeError(seq.initialStateGradient().h, numericGradient(h0.h, lossOf, step)) <= 1e-6);
  if constexpr (Cell::kHasCellState) {
    CHECK(relativeError(seq.initialStateGradient().c, numericGradient(h0.c, lossOf, step)) <= 1e-6);
  }
}

template <typename Cell>
void gradcheckEachOption(unsigned seed) {
  SECTION("input dropout") { gradcheck<Cell>(Regularization().inputDropout(0.4), seed, 1); }
  SECTION("recurrent dropout, two threads") {
    gradcheck<Cell>(Regularization().recurrentDropout(0.4), seed, 2);
  }
  SECTION("zoneout") { gradcheck<Cell>(Regularization().zoneout(0.4, 0.3), seed, 2); }
  SECTION("weight drop") { gradcheck<Cell>(Regularization().weightDrop(0.4), seed, 1); }
}

}  // namespace

TEMPLATE_TEST_CASE(
    "regularised LSTM, GRU, RNN and layer-normalised cells match PyTorch autograd "
    "with the masks fixed",
    "[regularization][torch]", float, double) {
  compareRegularised<recurrent::LSTMCell<TestType>>("regularised_lstm");
  compareRegularised<recurrent::GRUCell<TestType>>("regularised_gru");
  compareRegularised<recurrent::RNNCell<TestType>>("regularised_rnn_tanh");
  compareRegularised<recurrent::LayerNormLSTMCell<TestType>>("regularised_layernorm_lstm");
  compareRegularised<recurrent::LayerNormGRUCell<TestType>>("regularised_layernorm_gru");
}

TEST_CASE("regularisation: BPTT against central differences, option by option (LSTM)",
          "[regularization][gradcheck]") {
  gradcheckEachOption<recurrent::LSTMCell<double>>(21);
}
TEST_CASE("regularisation: BPTT against central differences, option by option (GRU)",
          "[regularization][gradcheck]") {
  gradcheckEachOption<recurrent::GRUCell<double>>(22);
}
TEST_CASE("regularisation: BPTT against central differences, option by option (LayerNorm LSTM)",
          "[regularization][gradcheck]") {
  gradcheckEachOption<recurrent::LayerNormLSTMCell<double>>(23);
}

TEST_CASE("zoneout in inference is its expectation h = z h_prev + (1 − z) h~",
          "[regularization][zoneout]") {
  using Cell = recurrent::LSTMCell<double>;
  std::mt19937 rng(31);
  Cell cell(2, 3);
  randomize(cell, rng);
  const Index T = 4, B = 2;
  const Mat<double> x = uniform<double>(2, T * B, rng);
  const double zh = 0.3, zc = 0.2;
  Sequence<Cell> zoned(cell);
  zoned.setRegularization(Regularization().zoneout(zh, zc));
  zoned.infer(x, {T, 3});
  // By hand: one plain step at a time, then the expectation.
  Sequence<Cell> plain(cell);
  for (Index b = 0; b < B; ++b) {
    Cell::State state = cell.zeroState(1);
    for (Index t = 0; t < (b == 0 ? T : 3); ++t) {
      plain.infer(x.col(t * B + b), {1}, state);
      state.h = zh * state.h + (1 - zh) * plain.finalState().h;
      state.c = zc * state.c + (1 - zc) * plain.finalState().c;
      CHECK(relativeError(zoned.output().col(t * B + b), state.h) <= 1e-14);
    }
    CHECK(relativeError(zoned.finalState().h.col(b), state.h) <= 1e-14);
    CHECK(relativeError(zoned.finalState().c.col(b), state.c) <= 1e-14);
  }
}

// A Stream given the training options steps as Sequence::infer runs: zoneout's expectation after
// every step, in the fused kernel (a batch of one) and the batched one, in any precision.
template <typename Cell>
void streamZoneout(Index B, recurrent::Precision precision = recurrent::Precision::Full) {
  std::mt19937 rng(37);
  Cell cell(3, 4);
  randomize(cell, rng);
  const Index T = 5;
  const Mat<double> x = uniform<double>(3, T * B, rng);
  const Regularization options = Regularization().zoneout(0.3, 0.2).recurrentDropout(0.4);
  Sequence<Cell> sequence(cell);
  sequence.setRegularization(options);
  sequence.setPrecision(precision);
  sequence.infer(x, std::vector<int>(static_cast<std::size_t>(B), static_cast<int>(T)));
  recurrent::Stream<Cell> stream(cell, B);
  stream.setRegularization(options);
  stream.setPrecision(precision);
  // bf16 sums a batch of one's depth in four sets, Sequence's input projection in one.
  const double tolerance = precision == recurrent::Precision::BF16 ? 1e-6 : 1e-13;
  INFO(recurrent::precisionName(precision) << ", B = " << B);
  for (Index t = 0; t < T; ++t) {
    const Mat<double> h = stream.step(x.middleCols(t * B, B));
    CHECK(relativeError(h, sequence.output().middleCols(t * B, B)) <= tolerance);
  }
  if constexpr (Cell::kHasCellState) {
    CHECK(relativeError(stream.finalState().c, sequence.finalState().c) <= tolerance);
  }
  // Without the options, the Stream runs the cell alone: another result.
  recurrent::Stream<Cell> plain(cell, B);
  Mat<double> h;
  for (Index t = 0; t < T; ++t) h = plain.step(x.middleCols(t * B, B));
  CHECK(relativeError(h, sequence.finalState().h) > 1e-3);
}

TEST_CASE("a Stream given the regularisation steps with zoneout's expectation, as infer runs",
          "[regularization][zoneout][stream]") {
  streamZoneout<recurrent::LSTMCell<double>>(1);
  streamZoneout<recurrent::LSTMCell<double>>(3);
  streamZoneout<recurrent::GRUCell<double>>(1);
  streamZoneout<recurrent::GRUCell<double>>(2);
  streamZoneout<recurrent::LayerNormLSTMCell<double>>(1);
  // int8 and bf16: the reduced fused step (B = 1) and the batched kernel.
  streamZoneout<recurrent::LSTMCell<double>>(1, recurrent::Precision::Int8);
  streamZoneout<recurrent::GRUCell<double>>(1, recurrent::Precision::BF16);
  streamZoneout<recurrent::GRUCell<double>>(2, recurrent::Precision::Int8);
}

TEST_CASE("regularisation: seeded masks, 0 or 1/(1 − p), off in infer, checked arguments",
          "[regularization]") {
  using Cell = recurrent::LSTMCell<double>;
  std::mt19937 rng(41);
  Cell cell(3, 8);
  randomize(cell, rng);
  const Index T = 6, B = 5;
  const Mat<double> x = uniform<double>(3, T * B, rng);
  const std::vector<int> lengths = {6, 2, 5, 6, 1};
  const Regularization options =
      Regularization().inputDropout(0.25).recurrentDropout(0.5).zoneout(0.2, 0.1).weightDrop(0.5);
  Sequence<Cell> a(cell), b(cell), none(cell);
  a.setRegularization(options);
  b.setRegularization(options);
  a.seed(9);
  b.seed(9);
  a.forward(x, lengths);
  b.forward(x, lengths);
  CHECK(a.output() == b.output());
  CHECK(a.masks().weight == b.masks().weight);
  CHECK(a.masks().input.rows() == 3);
  CHECK(a.masks().input.cols() == B);
  CHECK(a.masks().recurrent.rows() == 8);
  CHECK(a.masks().zoneoutH.cols() == T * B);
  CHECK(a.masks().weight.rows() == 32);
  for (double v : std::vector<double>(a.masks().recurrent.data(),
                                      a.masks().recurrent.data() + a.masks().recurrent.size())) {
    CHECK((v == 0.0 || v == 2.0));
  }
  const double kept = (a.masks().weight.array() > 0).cast<double>().mean();
  CHECK(kept > 0.3);
  CHECK(kept < 0.7);
  none.forward(x, lengths);
  CHECK((a.output() - none.output()).norm() > 1e-3);
  // A second forward draws new masks.
  a.forward(x, lengths);
  CHECK(a.masks().weight != b.masks().weight);
  // infer: no dropout; without zoneout it is the plain cell.
  Sequence<Cell> dropOnly(cell);
  dropOnly.setRegularization(
      Regularization().inputDropout(0.5).recurrentDropout(0.5).weightDrop(0.5));
  CHECK(dropOnly.infer(x, lengths) == none.infer(x, lengths));

  CHECK_THROWS_AS(Regularization().inputDropout(1.0), std::invalid_argument);
  CHECK_THROWS_AS(Regularization().zoneout(-0.1), std::invalid_argument);
  const recurrent::ResetBeforeGRUCell<double> resetBefore(3, 4);
  Sequence<recurrent::ResetBeforeGRUCell<double>> before(resetBefore);
  CHECK_THROWS_AS(before.setRegularization(Regularization().recurrentDropout(0.2)),
                  std::invalid_argument);
  recurrent::RecurrentMasks<double> wrong;
  wrong.input = Mat<double>::Ones(2, B);  // I is 3
  Sequence<Cell> given(cell);
  given.setMasks(wrong);
  CHECK_THROWS_AS(given.forward(x, lengths), std::invalid_argument);
}

TEST_CASE("regularisation in a Stack: every layer and direction, with dropout between layers",
          "[regularization][stack]") {
  using Cell = recurrent::LayerNormLSTMCell<double>;
  std::mt19937 rng(51);
  const std::vector<int> lengths = {3, 4, 2};
  const Index T = 4, B = 3;
  recurrent::Stack<Cell> stack(2, 3, recurrent::StackOptions().numLayers(2).bidirectional());
  stack.initialize(rng);
  for (Index k = 0; k < 4; ++k) randomize(stack.cell(k / 2, k % 2), rng);
  stack.setDropout(0.3);
  stack.setRegularization(
      Regularization().inputDropout(0.3).recurrentDropout(0.3).zoneout(0.2, 0.2).weightDrop(0.3));
  Mat<double> x = uniform<double>(2, T * B, rng);
  const Mat<double> wy = uniform<double>(6, T * B, rng);
  stack.seed(3);
  stack.forward(x, lengths);
  CHECK(stack.masks(1, 1).recurrent.rows() == 3);
  CHECK(stack.masks(0, 0).input.rows() == 2);
  CHECK(stack.masks(1, 0).input.rows() == 6);
  CHECK(stack.masks(0, 1).weight != stack.masks(0, 0).weight);
  auto grads = stack.zeroGradients();
  stack.backward(wy, grads);
  const Mat<double> dx = stack.inputGradient();
  const auto lossOf = [&] {  // the same seed: the same masks at every forward
    stack.seed(3);
    return (wy.array() * stack.forward(x, lengths).array()).sum();
  };
  CHECK(relativeError(dx, numericGradient(x, lossOf, 1e-6)) <= 1e-6);
  Mat<double>& w = stack.cell(0, 1).parameters().weight_hh;
  CHECK(relativeError(grads(0, 1).weight_hh, numericGradient(w, lossOf, 1e-6)) <= 1e-6);
  // Off in infer: the zoneout expectation only.
  recurrent::Stack<Cell> plain(2, 3, recurrent::StackOptions().numLayers(2).bidirectional());
  for (Index k = 0; k < 4; ++k) {
    plain.cell(k / 2, k % 2).parameters() = stack.cell(k / 2, k % 2).parameters();
  }
  plain.setRegularization(Regularization().zoneout(0.2, 0.2));
  CHECK(plain.infer(x, lengths) == stack.infer(x, lengths));
  CHECK_THROWS_AS(stack.masks(2, 0), std::invalid_argument);
}
