// Sequence<Cell>: BPTT against finite differences, training vs inference, invariances,
// truncated BPTT, sharing a cell between threads, and every argument error.
#include "catch.hpp"
#include "support.hpp"

#include <recurrent/recurrent.hpp>

#include <iostream>
#include <map>
#include <string>
#include <thread>

using namespace test;
using recurrent::Sequence;

namespace {

/// The worst gradient-check error seen by any test, printed at the end of each check.
double g_worstGradError = 0.0;

template <typename Cell>
struct Problem {
  using S = typename Cell::Scalar;
  using State = typename Cell::State;
  Cell cell;
  Mat<S> x;
  std::vector<int> lengths;
  State h0;
  LinearLoss<Cell> loss;
};

template <typename Case>
Problem<typename Case::Cell> makeProblem(std::vector<int> lengths, Index T, unsigned seed,
                                         Index I = 3, Index H = 4) {
  using Cell = typename Case::Cell;
  using S = typename Cell::Scalar;
  std::mt19937 rng(seed);
  Cell cell = Case::make(I, H);
  randomize(cell, rng);
  const Index B = static_cast<Index>(lengths.size());
  Mat<S> x = uniform<S>(I, T * B, rng);
  typename Cell::State h0 = randomState(cell, B, rng);
  LinearLoss<Cell> loss = randomLoss(cell, T, B, rng);
  return Problem<Cell>{std::move(cell), std::move(x), std::move(lengths), std::move(h0),
                       std::move(loss)};
}

template <typename Tensor>
void checkGradient(const char* cellName, const char* tensorName, Tensor& tensor,
                   const MatrixXd& analytic, const std::function<double()>& loss) {
  const MatrixXd numeric = numericGradient(tensor, loss);
  const double err = relativeError(analytic, numeric);
  g_worstGradError = std::max(g_worstGradError, err);
  INFO(cellName << " " << tensorName << ": relative error " << err);
  std::cout << "gradcheck " << cellName << " " << tensorName << ": relative error " << err
            << " (worst so far " << g_worstGradError << ")\n";
  CHECK(numeric.cwiseAbs().maxCoeff() > 1e-3);  // the check is not vacuous
  CHECK(err <= 1e-6);
}

template <typename Case>
void gradientCheck(std::vector<int> lengths, Index T) {
  using Cell = typename Case::Cell;
  Problem<Cell> p = makeProblem<Case>(std::move(lengths), T, 7);
  Sequence<Cell> seq(p.cell);
  seq.forward(p.x, p.lengths, p.h0);
  typename Cell::Parameters grads = p.cell.zeroGradients();
  seq.backward(p.loss.wy, p.loss.wFinal, grads);

  auto loss = [&] {
    Sequence<Cell> s(p.cell);
    s.infer(p.x, p.lengths, p.h0);
    return p.loss(s.output(), s.finalState());
  };
  // Every parameter tensor the cell has (forEach), by name.
  std::map<std::string, MatrixXd> analytic;
  grads.forEach(
      [&](const char* name, const auto& g) { analytic[name] = g.template cast<double>(); });
  int checked = 0;
  p.cell.parameters().forEach([&](const char* name, auto& tensor) {
    checkGradient(Case::kName, name, tensor, analytic.at(name), loss);
    ++checked;
  });
  CHECK(checked == static_cast<int>(analytic.size()));
  CHECK(checked >= 4);
  checkGradient(Case::kName, "input", p.x, seq.inputGradient(), loss);
  checkGradient(Case::kName, "h0", p.h0.h, seq.initialStateGradient().h, loss);
  if constexpr (Cell::kHasCellState) {
    checkGradient(Case::kName, "c0", p.h0.c, seq.initialStateGradient().c, loss);
  }
}

/// Max |a − b| / max(1, max |b|).
template <typename A, typename B>
double maxDiff(const A& a, const B& b) {
  const double scale = std::max(1.0, static_cast<double>(b.cwiseAbs().maxCoeff()));
  return static_cast<double>((a - b).cwiseAbs().maxCoeff()) / scale;
}

}  // namespace

TEMPLATE_TEST_CASE("BPTT gradients match central differences", "[sequence][bptt][gradcheck]",
                   LSTM<double>, PeepholeLSTM<double>, ProjLSTM<double>, PeepholeProjLSTM<double>,
                   GRU<double>, GRUResetBefore<double>, RNNTanh<double>, RNNRelu<double>) {
  SECTION("unequal, unsorted lengths") { gradientCheck<TestType>({4, 6, 1, 3}, 6); }
  SECTION("equal lengths") { gradientCheck<TestType>({5, 5}, 5); }
  SECTION("one sequence") { gradientCheck<TestType>({4}, 4); }
}

TEMPLATE_TEST_CASE("training and inference forward agree", "[sequence]", LSTM<double>, GRU<double>,
                   GRUResetBefore<double>, RNNTanh<double>, LSTM<float>, GRU<float>,
                   PeepholeLSTM<float>, PeepholeLSTM<double>, ProjLSTM<float>, ProjLSTM<double>) {
  using Cell = typename TestType::Cell;
  using S = typename Cell::Scalar;
  // T = 300 makes infer() run its input projection in several blocks.
  const Index T = 300;
  for (const std::vector<int>& lengths :
       {std::vector<int>{300, 120, 299, 1}, std::vector<int>{300, 300}}) {
    Problem<Cell> p = makeProblem<TestType>(lengths, T, 3, 5, 6);
    Sequence<Cell> train(p.cell), infer(p.cell);
    train.forward(p.x, p.lengths, p.h0);
    infer.infer(p.x, p.lengths, p.h0);
    const double tol = std::is_same<S, float>::value ? 1e-6 : 1e-13;
    CHECK(maxDiff(infer.output(), train.output()) <= tol);
    CHECK(maxDiff(infer.finalState().h, train.finalState().h) <= tol);
    if constexpr (Cell::kHasCellState) {
      CHECK(maxDiff(infer.finalState().c, train.finalState().c) <= tol);
    }
  }
}

TEMPLATE_TEST_CASE("a sequence's result does not depend on the rest of its batch",
                   "[sequence][invariance]", LSTM<double>, GRU<double>, GRUResetBefore<double>,
                   RNNTanh<double>, PeepholeLSTM<double>, ProjLSTM<double>) {
  using Cell = typename TestType::Cell;
  const Index T = 6;
  Problem<Cell> p = makeProblem<TestType>({4, 6, 1, 3}, T, 11);
  const Index B = 4;
  Sequence<Cell> batch(p.cell);
  batch.forward(p.x, p.lengths, p.h0);
  auto grads = p.cell.zeroGradients();
  batch.backward(p.loss.wy, p.loss.wFinal, grads);

  SECTION("alone in its batch") {
    for (Index b = 0; b < B; ++b) {
      const int len = p.lengths[static_cast<std::size_t>(b)];
      const MatrixXd x = sequenceOf(p.x, b, B, len), wy = sequenceOf(p.loss.wy, b, B, len);
      const typename Cell::State h0 = stateColumn<Cell>(p.h0, b);
      const typename Cell::State wFinal = stateColumn<Cell>(p.loss.wFinal, b);
      Sequence<Cell> one(p.cell);
      one.forward(x, {len}, h0);
      auto g = p.cell.zeroGradients();
      one.backward(wy, wFinal, g);
      for (Index t = 0; t < len; ++t) {
        CHECK(maxDiff(one.output().col(t), batch.output().col(t * B + b)) <= 1e-14);
        CHECK(maxDiff(one.inputGradient().col(t), batch.inputGradient().col(t * B + b)) <= 1e-13);
      }
      CHECK(maxDiff(one.finalState().h, batch.finalState().h.col(b)) <= 1e-14);
      CHECK(maxDiff(one.initialStateGradient().h, batch.initialStateGradient().h.col(b)) <= 1e-13);
    }
  }

  SECTION("in any batch order") {
    const std::vector<Index> perm = {2, 0, 3, 1};  // new position k holds old sequence perm[k]
    MatrixXd x(p.x.rows(), p.x.cols()), wy(p.loss.wy.rows(), p.loss.wy.cols());
    typename Cell::State h0 = p.h0, wFinal = p.loss.wFinal;
    std::vector<int> lengths(4);
    for (Index k = 0; k < B; ++k) {
      const Index b = perm[static_cast<std::size_t>(k)];
      lengths[static_cast<std::size_t>(k)] = p.lengths[static_cast<std::size_t>(b)];
      for (Index t = 0; t < T; ++t) {
        x.col(t * B + k) = p.x.col(t * B + b);
        wy.col(t * B + k) = p.loss.wy.col(t * B + b);
      }
      h0.h.col(k) = p.h0.h.col(b);
      wFinal.h.col(k) = p.loss.wFinal.h.col(b);
      if constexpr (Cell::kHasCellState) {
        h0.c.col(k) = p.h0.c.col(b);
        wFinal.c.col(k) = p.loss.wFinal.c.col(b);
      }
    }
    Sequence<Cell> permuted(p.cell);
    permuted.forward(x, lengths, h0);
    auto g = p.cell.zeroGradients();
    permuted.backward(wy, wFinal, g);
    for (Index k = 0; k < B; ++k) {
      const Index b = perm[static_cast<std::size_t>(k)];
      for (Index t = 0; t < T; ++t) {
        CHECK(maxDiff(permuted.output().col(t * B + k), batch.output().col(t * B + b)) <= 1e-14);
        CHECK(maxDiff(permuted.inputGradient().col(t * B + k),
                      batch.inputGradient().col(t * B + b)) <= 1e-13);
      }
      CHECK(maxDiff(permuted.finalState().h.col(k), batch.finalState().h.col(b)) <= 1e-14);
    }
    CHECK(maxDiff(g.weight_hh, grads.weight_hh) <= 1e-13);
    CHECK(maxDiff(g.weight_ih, grads.weight_ih) <= 1e-13);
  }

  SECTION("whatever its padding holds") {
    MatrixXd x = p.x, wy = p.loss.wy;
    for (Index b = 0; b < B; ++b) {
      for (Index t = p.lengths[static_cast<std::size_t>(b)]; t < T; ++t) {
        x.col(t * B + b).setConstant(1e6);
        wy.col(t * B + b).setConstant(-3e5);
      }
    }
    Sequence<Cell> padded(p.cell);
    padded.forward(x, p.lengths, p.h0);
    auto g = p.cell.zeroGradients();
    padded.backward(wy, p.loss.wFinal, g);
    CHECK(padded.output() == batch.output());
    CHECK(padded.finalState().h == batch.finalState().h);
    CHECK(padded.inputGradient() == batch.inputGradient());
    CHECK(g.weight_ih == grads.weight_ih);
    CHECK(g.weight_hh == grads.weight_hh);
    CHECK(g.bias_hh == grads.bias_hh);
    // Outputs and input gradients are exactly zero in padding.
    for (Index b = 0; b < B; ++b) {
      for (Index t = p.lengths[static_cast<std::size_t>(b)]; t < T; ++t) {
        CHECK(padded.output().col(t * B + b).isZero(0.0));
        CHECK(padded.inputGradient().col(t * B + b).isZero(0.0));
      }
    }
  }
}

// The products cut a batch's columns into tiles of the micro-kernel's width (NR = 12 with
// AVX-512, 6 with AVX2), and the last two tiles share their columns where the last would be
// narrow (detail::tileWidth): every width from 1 to 30 meets each layout, in the input
// projection and the steps (B or T·B columns) and in the weight gradients (I = 13 and H = 16
// columns of dWᵀ). Each sequence must get what it gets alone, and the weight gradients must be
// the sum of the sequences' own.
TEMPLATE_TEST_CASE("every batch width gives each sequence its own result", "[sequence][invariance]",
                   LSTM<double>, GRU<double>, ProjLSTM<double>) {
  using Cell = typename TestType::Cell;
  const Index T = 3;
  for (Index B = 1; B <= 30; ++B) {
    std::vector<int> lengths(static_cast<std::size_t>(B));
    for (Index b = 0; b < B; ++b) lengths[static_cast<std::size_t>(b)] = int(1 + (b * 7) % T);
    Problem<Cell> p = makeProblem<TestType>(lengths, T, 100 + unsigned(B), 13, 16);
    Sequence<Cell> batch(p.cell);
    batch.forward(p.x, p.lengths, p.h0);
    auto grads = p.cell.zeroGradients();
    batch.backward(p.loss.wy, p.loss.wFinal, grads);
    auto sum = p.cell.zeroGradients();
    for (Index b = 0; b < B; ++b) {
      INFO("B = " << B << ", sequence " << b);
      const int len = lengths[static_cast<std::size_t>(b)];
      const MatrixXd x = sequenceOf(p.x, b, B, len), wy = sequenceOf(p.loss.wy, b, B, len);
      Sequence<Cell> one(p.cell);
      one.forward(x, {len}, stateColumn<Cell>(p.h0, b));
      one.backward(wy, stateColumn<Cell>(p.loss.wFinal, b), sum);
      for (Index t = 0; t < len; ++t) {
        CHECK(maxDiff(one.output().col(t), batch.output().col(t * B + b)) <= 1e-14);
        CHECK(maxDiff(one.inputGradient().col(t), batch.inputGradient().col(t * B + b)) <= 1e-13);
      }
      CHECK(maxDiff(one.initialStateGradient().h, batch.initialStateGradient().h.col(b)) <= 1e-13);
    }
    INFO("B = " << B);
    CHECK(maxDiff(sum.weight_ih, grads.weight_ih) <= 1e-12);
    CHECK(maxDiff(sum.weight_hh, grads.weight_hh) <= 1e-12);
    CHECK(maxDiff(sum.bias_ih, grads.bias_ih) <= 1e-12);
  }
}

TEMPLATE_TEST_CASE("backward accumulates into the gradients", "[sequence][bptt]", LSTM<double>,
                   GRU<double>, ProjLSTM<double>) {
  using Cell = typename TestType::Cell;
  Problem<Cell> p = makeProblem<TestType>({3, 2}, 3, 5);
  Sequence<Cell> seq(p.cell);
  seq.forward(p.x, p.lengths, p.h0);
  auto once = p.cell.zeroGradients();
  seq.backward(p.loss.wy, p.loss.wFinal, once);
  auto twice = p.cell.zeroGradients();
  seq.backward(p.loss.wy, p.loss.wFinal, twice);
  seq.backward(p.loss.wy, p.loss.wFinal, twice);
  CHECK(maxDiff(twice.weight_ih, 2.0 * once.weight_ih) <= 1e-15);
  CHECK(maxDiff(twice.weight_hh, 2.0 * once.weight_hh) <= 1e-15);
  CHECK(maxDiff(twice.bias_ih, 2.0 * once.bias_ih) <= 1e-15);
  twice.setZero();
  CHECK(twice.weight_hh.isZero(0.0));
  CHECK(twice.weight_hh.rows() == once.weight_hh.rows());
}

TEMPLATE_TEST_CASE("backward from the output alone or the final state alone", "[sequence][bptt]",
                   LSTM<double>, GRU<double>, RNNTanh<double>, ProjLSTM<double>) {
  using Cell = typename TestType::Cell;
  Problem<Cell> p = makeProblem<TestType>({3, 1, 2}, 3, 9);
  Sequence<Cell> seq(p.cell);
  seq.forward(p.x, p.lengths, p.h0);
  auto both = p.cell.zeroGradients();
  seq.backward(p.loss.wy, p.loss.wFinal, both);
  const MatrixXd dxBoth = seq.inputGradient();
  auto split = p.cell.zeroGradients();
  seq.backward(p.loss.wy, split);
  const MatrixXd dxOutput = seq.inputGradient();
  seq.backward(p.loss.wFinal, split);
  CHECK(maxDiff(split.weight_hh, both.weight_hh) <= 1e-14);
  CHECK(maxDiff(split.bias_ih, both.bias_ih) <= 1e-14);
  CHECK(maxDiff(dxOutput + seq.inputGradient(), dxBoth) <= 1e-14);
  CHECK(seq.inputGradient().cwiseAbs().maxCoeff() > 1e-3);
  CHECK(dxOutput.cwiseAbs().maxCoeff() > 1e-3);
}

TEMPLATE_TEST_CASE("truncated BPTT: two chunks with carry-over equal one call",
                   "[sequence][bptt][truncated]", LSTM<double>, GRU<double>, GRUResetBefore<double>,
                   RNNTanh<double>, LSTM<float>, PeepholeLSTM<double>, ProjLSTM<double>) {
  using Cell = typename TestType::Cell;
  using S = typename Cell::Scalar;
  const Index T = 9, T1 = 4, T2 = T - T1, B = 3;
  Problem<Cell> p = makeProblem<TestType>({9, 6, 8}, T, 13);
  Sequence<Cell> whole(p.cell);
  whole.forward(p.x, p.lengths, p.h0);

  Sequence<Cell> chunked(p.cell);
  chunked.forward(p.x.leftCols(T1 * B), {4, 4, 4}, p.h0);
  Mat<S> first = chunked.output();
  const typename Cell::State carried = chunked.finalState();
  // The second chunk starts from the first chunk's final state; passing finalState() itself works.
  chunked.forward(p.x.rightCols(T2 * B), {5, 2, 4}, chunked.finalState());
  const double tol = std::is_same<S, float>::value ? 1e-6 : 1e-14;
  CHECK(maxDiff(first, whole.output().leftCols(T1 * B)) <= tol);
  CHECK(maxDiff(chunked.output(), whole.output().rightCols(T2 * B)) <= tol);
  CHECK(maxDiff(chunked.finalState().h, whole.finalState().h) <= tol);

  // No gradient crosses the boundary: chunk 2's backward is that of a fresh run from the
  // carried state taken as a constant.
  auto chunkGrads = p.cell.zeroGradients();
  chunked.backward(p.loss.wy.rightCols(T2 * B), p.loss.wFinal, chunkGrads);
  Sequence<Cell> fresh(p.cell);
  fresh.forward(p.x.rightCols(T2 * B), {5, 2, 4}, carried);
  auto freshGrads = p.cell.zeroGradients();
  fresh.backward(p.loss.wy.rightCols(T2 * B), p.loss.wFinal, freshGrads);
  CHECK(chunkGrads.weight_hh == freshGrads.weight_hh);
  CHECK(chunkGrads.weight_ih == freshGrads.weight_ih);
  CHECK(chunked.initialStateGradient().h == fresh.initialStateGradient().h);
}

TEMPLATE_TEST_CASE("one const cell shared by two Sequences on two threads", "[sequence][threads]",
                   LSTM<float>, GRU<double>) {
  using Cell = typename TestType::Cell;
  using S = typename Cell::Scalar;
  Problem<Cell> a = makeProblem<TestType>({40, 17, 33}, 40, 21, 16, 32);
  Problem<Cell> b = makeProblem<TestType>({25, 25}, 25, 22, 16, 32);
  const Cell& cell = a.cell;

  auto run = [&cell](const Problem<Cell>& p, Mat<S>& y, typename Cell::Parameters& g) {
    for (int repeat = 0; repeat < 20; ++repeat) {
      Sequence<Cell> seq(cell);
      seq.forward(p.x, p.lengths, p.h0);
      g = cell.zeroGradients();
      seq.backward(p.loss.wy, p.loss.wFinal, g);
      y = seq.output();
    }
  };
  Mat<S> yaSerial, ybSerial, yaThread, ybThread;
  auto gaSerial = cell.zeroGradients(), gbSerial = gaSerial, gaThread = gaSerial,
       gbThread = gaSerial;
  run(a, yaSerial, gaSerial);
  run(b, ybSerial, gbSerial);
  std::thread ta([&] { run(a, yaThread, gaThread); });
  std::thread tb([&] { run(b, ybThread, gbThread); });
  ta.join();
  tb.join();
  CHECK(yaThread == yaSerial);
  CHECK(ybThread == ybSerial);
  CHECK(gaThread.weight_hh == gaSerial.weight_hh);
  CHECK(gbThread.weight_ih == gbSerial.weight_ih);
}

// ---- errors
// ---------------------------------------------------------------------------------------

TEST_CASE("every argument error throws std::invalid_argument naming what was expected",
          "[sequence][errors]") {
  using Cell = recurrent::LSTMCell<double>;
  Problem<Cell> p = makeProblem<LSTM<double>>({3, 2}, 3, 1);  // I = 3, H = 4, T = 3, B = 2
  Sequence<Cell> seq(p.cell);
  const Eigen::MatrixXd yBefore = seq.forward(p.x, p.lengths, p.h0);
  const Eigen::MatrixXd hBefore = seq.finalState().h;

  SECTION("forward") {
    using Catch::Matchers::Contains;
    CHECK_THROWS_AS(seq.forward(Eigen::MatrixXd::Zero(2, 6), {3, 2}), std::invalid_argument);
    CHECK_THROWS_WITH(seq.forward(Eigen::MatrixXd::Zero(2, 6), {3, 2}),
                      Contains("input must have 3 rows") && Contains("got 2"));
    CHECK_THROWS_WITH(seq.forward(Eigen::MatrixXd::Zero(3, 7), {3, 2}),
                      Contains("T·B columns") && Contains("B = 2") && Contains("got 7"));
    CHECK_THROWS_WITH(seq.forward(Eigen::MatrixXd::Zero(3, 0), {3, 2}), Contains("got 0 columns"));
    CHECK_THROWS_WITH(seq.forward(p.x, {}), Contains("lengths must hold one length per sequence"));
    CHECK_THROWS_WITH(seq.forward(p.x, {3, 0}),
                      Contains("lengths[1] must be in 1..3") && Contains("got 0"));
    CHECK_THROWS_WITH(seq.infer(p.x, {4, 1}),
                      Contains("lengths[0] must be in 1..3") && Contains("got 4"));
    CHECK_THROWS_WITH(seq.forward(p.x, {1, 1, 1, 1}),
                      Contains("B = 4") && Contains("got 6 columns"));
    Cell::State bad = p.h0;
    bad.h.resize(4, 3);
    CHECK_THROWS_WITH(seq.forward(p.x, p.lengths, bad),
                      Contains("initial state h must be 4 x 2, got 4 x 3"));
    bad = p.h0;
    bad.c.resize(5, 2);
    CHECK_THROWS_WITH(seq.infer(p.x, p.lengths, bad),
                      Contains("Sequence::infer: initial state c must be 4 x 2, got 5 x 2"));
    // Nothing changed, and the tape still serves backward.
    CHECK(seq.output() == yBefore);
    CHECK(seq.finalState().h == hBefore);
    CHECK(seq.hasTape());
    auto g = p.cell.zeroGradients();
    CHECK_NOTHROW(seq.backward(p.loss.wy, g));
  }

  SECTION("backward") {
    auto g = p.cell.zeroGradients();
    CHECK_THROWS_WITH(seq.backward(Eigen::MatrixXd::Zero(4, 5), g),
                      Contains("output gradient must be 4 x 6, got 4 x 5"));
    Cell::State badFinal = p.loss.wFinal;
    badFinal.c.resize(4, 1);
    CHECK_THROWS_WITH(seq.backward(p.loss.wy, badFinal, g),
                      Contains("final-state gradient c must be 4 x 2, got 4 x 1"));
    badFinal = p.loss.wFinal;
    badFinal.h.resize(3, 2);
    CHECK_THROWS_WITH(seq.backward(badFinal, g),
                      Contains("final-state gradient h must be 4 x 2, got 3 x 2"));
    auto badGrads = g;
    badGrads.weight_hh.resize(16, 3);
    CHECK_THROWS_WITH(seq.backward(p.loss.wy, badGrads),
                      Contains("gradient weight_hh must be 16 x 4, got 16 x 3"));
    badGrads = g;
    badGrads.bias_ih.resize(15);
    CHECK_THROWS_WITH(seq.backward(p.loss.wy, badGrads),
                      Contains("gradient bias_ih must be 16 x 1, got 15 x 1"));
    // A failed backward leaves the gradients as they were.
    CHECK(g.weight_hh.isZero(0.0));
    CHECK(g.bias_ih.isZero(0.0));
  }

  SECTION("backward needs a training forward") {
    auto g = p.cell.zeroGradients();
    Sequence<Cell> fresh(p.cell);
    CHECK_THROWS_AS(fresh.backward(p.loss.wy, g), std::invalid_argument);
    CHECK_THROWS_WITH(
        fresh.backward(p.loss.wy, g),
        Contains("needs the tape of a training forward()") && Contains("no forward() has run"));
    seq.infer(p.x, p.lengths);
    CHECK_FALSE(seq.hasTape());
    CHECK_THROWS_WITH(seq.backward(p.loss.wy, g), Contains("the last call was infer()"));
  }

  SECTION("parameters of the wrong shape") {
    Cell cell(3, 4);
    Sequence<Cell> s(cell);
    cell.parameters().weight_ih.resize(16, 2);
    CHECK_THROWS_WITH(s.forward(p.x, p.lengths),
                      Contains("cell parameter weight_ih must be 16 x 3, got 16 x 2"));
  }

  SECTION("cell sizes") {
    CHECK_THROWS_WITH(Cell(0, 4), Contains("LSTMCell: input_size must be at least 1, got 0"));
    CHECK_THROWS_WITH(recurrent::GRUCell<float>(3, -1),
                      Contains("GRUCell: hidden_size must be at least 1, got -1"));
    CHECK_THROWS_AS(recurrent::RNNCell<float>(0, 1), std::invalid_argument);
  }
}

TEMPLATE_TEST_CASE("two threads give the results of one", "[sequence][threads]", LSTM<float>,
                   LSTM<double>, GRU<float>, GRUResetBefore<double>, RNNTanh<float>,
                   PeepholeLSTM<float>, PeepholeLSTM<double>, ProjLSTM<float>) {
  using Cell = typename TestType::Cell;
  using S = typename Cell::Scalar;
  // H = 70: several kernel panels of units, the last one partial.
  for (const std::vector<int>& lengths :
       {std::vector<int>{12, 5, 9, 12, 1}, std::vector<int>{8, 8, 8}}) {
    const Index T = lengths[0];
    Problem<Cell> p = makeProblem<TestType>(lengths, T, 31, 9, 70);
    Sequence<Cell> one(p.cell), two(p.cell);
    one.setThreads(1);
    two.setThreads(2, recurrent::ThreadLimit::Exactly);
    auto g1 = p.cell.zeroGradients(), g2 = p.cell.zeroGradients();
    for (bool training : {true, false}) {
      if (training) {
        one.forward(p.x, p.lengths, p.h0);
        two.forward(p.x, p.lengths, p.h0);
        one.backward(p.loss.wy, p.loss.wFinal, g1);
        two.backward(p.loss.wy, p.loss.wFinal, g2);
      } else {
        one.infer(p.x, p.lengths, p.h0);
        two.infer(p.x, p.lengths, p.h0);
      }
      // Each unit's arithmetic is the same on any thread: results agree to the last bit.
      CHECK(two.output() == one.output());
      CHECK(two.finalState().h == one.finalState().h);
    }
    CHECK(two.inputGradient() == one.inputGradient());
    CHECK(two.initialStateGradient().h == one.initialStateGradient().h);
    CHECK(g2.weight_ih == g1.weight_ih);
    CHECK(g2.weight_hh == g1.weight_hh);
    CHECK(g2.bias_ih == g1.bias_ih);
    CHECK(g2.bias_hh == g1.bias_hh);
    if constexpr (HasPeepholes<Cell>::value) {
      CHECK(g2.peephole_i == g1.peephole_i);
      CHECK(g2.peephole_f == g1.peephole_f);
      CHECK(g2.peephole_o == g1.peephole_o);
      CHECK(g1.peephole_o.cwiseAbs().maxCoeff() > S(1e-3));
    }
    if constexpr (Cell::kHasCellState) {
      CHECK(two.finalState().c == one.finalState().c);
      CHECK(two.initialStateGradient().c == one.initialStateGradient().c);
    }
    CHECK(g1.weight_hh.cwiseAbs().maxCoeff() > S(1e-3));
  }
  Problem<Cell> q = makeProblem<TestType>({1}, 1, 1);
  Sequence<Cell> seq(q.cell);
  CHECK_THROWS_WITH(seq.setThreads(-1), Contains("threads must be >= 0, got -1"));
}

TEST_CASE("projection: sizes, shapes and every argument error", "[sequence][errors][projection]") {
  using Cell = recurrent::LSTMCell<double>;
  CHECK_THROWS_AS(Cell(3, 4, 4), std::invalid_argument);
  CHECK_THROWS_WITH(Cell(3, 4, 4), Contains("LSTMCell: proj_size must be >= 0 and less than "
                                            "hidden_size = 4 (0: no projection), got 4"));
  CHECK_THROWS_WITH(Cell(3, 4, 9), Contains("got 9"));
  CHECK_THROWS_WITH(Cell(3, 4, -1), Contains("got -1"));
  CHECK_THROWS_WITH(Cell(3, 1, 1), Contains("less than hidden_size = 1"));

  Cell plain(3, 4);
  CHECK(plain.projSize() == 0);
  CHECK(plain.outputSize() == 4);
  CHECK(plain.parameters().weight_hr.size() == 0);
  Cell cell(3, 4, 2);
  CHECK(cell.projSize() == 2);
  CHECK(cell.outputSize() == 2);
  CHECK(cell.hiddenSize() == 4);
  std::vector<std::string> names;
  cell.parameters().forEach([&](const char* name, const auto& t) {
    names.push_back(name + (" " + std::to_string(t.rows()) + "x" + std::to_string(t.cols())));
  });
  CHECK(names == std::vector<std::string>{"weight_ih 16x3", "weight_hh 16x2", "bias_ih 16x1",
                                          "bias_hh 16x1", "weight_hr 2x4"});
  const Cell::State zero = cell.zeroState(3);
  CHECK((zero.h.rows() == 2 && zero.h.cols() == 3 && zero.c.rows() == 4 && zero.c.cols() == 3));

  Problem<Cell> p = makeProblem<ProjLSTM<double>>({3, 2}, 3, 1);  // I = 3, H = 4, P = 2, B = 2
  Sequence<Cell> seq(p.cell);
  seq.setThreads(2);  // runs on one thread all the same
  const Eigen::MatrixXd yBefore = seq.forward(p.x, p.lengths, p.h0);
  CHECK((yBefore.rows() == 2 && yBefore.cols() == 6));
  CHECK((seq.finalState().h.rows() == 2 && seq.finalState().c.rows() == 4));

  Cell::State bad = p.h0;
  bad.h = Eigen::MatrixXd::Zero(4, 2);
  CHECK_THROWS_WITH(seq.forward(p.x, p.lengths, bad),
                    Contains("initial state h must be 2 x 2, got 4 x 2"));
  bad = p.h0;
  bad.c = Eigen::MatrixXd::Zero(2, 2);
  CHECK_THROWS_WITH(seq.infer(p.x, p.lengths, bad),
                    Contains("initial state c must be 4 x 2, got 2 x 2"));
  auto g = p.cell.zeroGradients();
  CHECK_THROWS_WITH(seq.backward(Eigen::MatrixXd::Zero(4, 6), g),
                    Contains("output gradient must be 2 x 6, got 4 x 6"));
  Cell::State badFinal = p.loss.wFinal;
  badFinal.h = Eigen::MatrixXd::Zero(4, 2);
  CHECK_THROWS_WITH(seq.backward(badFinal, g),
                    Contains("final-state gradient h must be 2 x 2, got 4 x 2"));
  auto plainGrads = plain.zeroGradients();
  CHECK_THROWS_WITH(seq.backward(p.loss.wy, plainGrads),
                    Contains("gradient weight_hh must be 16 x 2, got 16 x 4"));
  auto badGrads = g;
  badGrads.weight_hr.resize(4, 2);
  CHECK_THROWS_WITH(seq.backward(p.loss.wy, badGrads),
                    Contains("gradient weight_hr must be 2 x 4, got 4 x 2"));
  CHECK(g.weight_hr.isZero(0.0));
  CHECK(seq.output() == yBefore);
  CHECK_NOTHROW(seq.backward(p.loss.wy, g));
  CHECK(g.weight_hr.cwiseAbs().maxCoeff() > 1e-3);

  Cell broken = p.cell;
  broken.parameters().weight_hr.resize(2, 3);
  Sequence<Cell> s(broken);
  CHECK_THROWS_WITH(s.infer(p.x, p.lengths),
                    Contains("cell parameter weight_hr must be 2 x 4, got 2 x 3"));
  CHECK_THROWS_WITH(recurrent::Stream<Cell>(broken, 2),
                    Contains("Stream::refresh: cell parameter weight_hr must be 2 x 4"));

  recurrent::Stream<Cell> stream(p.cell, 2);
  CHECK(stream.step(p.x.leftCols(2)).rows() == 2);
  CHECK_THROWS_WITH(
      stream.reset(Cell::State{Eigen::MatrixXd::Zero(4, 2), Eigen::MatrixXd::Zero(4, 2)}),
      Contains("Stream::reset: state h must be 2 x 2, got 4 x 2"));
  CHECK_THROWS_WITH(
      stream.reset(Cell::State{Eigen::MatrixXd::Zero(2, 2), Eigen::MatrixXd::Zero(2, 2)}),
      Contains("Stream::reset: state c must be 4 x 2, got 2 x 2"));
}
