// The layer-normalised cells (cells/layer_norm.hpp, layernorm_lstm.hpp, layernorm_gru.hpp):
// against PyTorch's reference definitions (tests/generate_layernorm_fixtures.py: outputs and every
// gradient by autograd, unequal unsorted lengths), against central differences, and in every
// driver: Stack (layers, directions), Stream, StateDict, ParameterList and SGD, initialize.
#include "catch.hpp"
#include "support.hpp"
#include "torch_errors.hpp"

#include <recurrent/recurrent.hpp>

#include <algorithm>
#include <iostream>
#include <map>
#include <string>

using namespace test;

namespace {

template <typename S>
struct LayerNormLSTM {
  using Cell = recurrent::LayerNormLSTMCell<S>;
  static Cell make(Index I, Index H) { return Cell(I, H); }
};
template <typename S>
struct LayerNormGRU {
  using Cell = recurrent::LayerNormGRUCell<S>;
  static Cell make(Index I, Index H) { return Cell(I, H); }
};

static_assert(recurrent::CellContract<recurrent::LayerNormLSTMCell<float>>::value);
static_assert(recurrent::CellContract<recurrent::LayerNormGRUCell<double, 3, 5>>::value);

/// The fixture's tensors into `cell`, by their PyTorch names.
template <typename Cell>
void loadFixture(const Fixture& f, Cell& cell) {
  using S = typename Cell::Scalar;
  cell.parameters().forEach([&](const char* name, auto& tensor) {
    const MatrixXd t = f.torch2d(name);
    tensor = t.cast<S>();
  });
}

template <typename Case>
void compareWithTorch(const std::string& fixtureName) {
  using Cell = typename Case::Cell;
  using S = typename Cell::Scalar;
  const Fixture f(fixtureName);
  const std::vector<int> lengths = f.lengths();
  const MatrixXd weightIh = f.torch2d("weight_ih");
  Cell cell = Case::make(weightIh.cols(), weightIh.rows() / Cell::kGates);
  loadFixture(f, cell);

  typename Cell::State h0, wFinal;
  h0.h = f.columns("h0").cast<S>();
  wFinal.h = f.columns("wh").cast<S>();
  if constexpr (Cell::kHasCellState) {
    h0.c = f.columns("c0").cast<S>();
    wFinal.c = f.columns("wc").cast<S>();
  }
  const Mat<S> x = f.columns("x").cast<S>();
  const Mat<S> wy = f.columns("wy").cast<S>();

  recurrent::Sequence<Cell> seq(cell);
  seq.setThreads(2, recurrent::ThreadLimit::Exactly);  // the cell still runs on one thread
  seq.forward(x, lengths, h0);
  auto grads = cell.zeroGradients();
  seq.backward(wy, wFinal, grads);

  std::vector<std::pair<std::string, double>> errors = {
      {"output", errorAgainst(seq.output(), f.columns("y"))},
      {"h_n", errorAgainst(seq.finalState().h, f.columns("h_n"))},
      {"grad x", errorAgainst(seq.inputGradient(), f.columns("grad_x"))},
      {"grad h0", errorAgainst(seq.initialStateGradient().h, f.columns("grad_h0"))},
  };
  int tensors = 0;
  grads.forEach([&](const char* name, const auto& g) {
    errors.emplace_back(std::string("grad ") + name,
                        errorAgainst(g, f.torch2d(std::string("grad_") + name)));
    ++tensors;
  });
  CHECK(tensors == (Cell::kHasCellState ? 8 : 6));
  if constexpr (Cell::kHasCellState) {
    errors.emplace_back("c_n", errorAgainst(seq.finalState().c, f.columns("c_n")));
    errors.emplace_back("grad c0",
                        errorAgainst(seq.initialStateGradient().c, f.columns("grad_c0")));
  }
  recurrent::Sequence<Cell> inference(cell);
  inference.infer(x, lengths, h0);
  errors.emplace_back("infer output", errorAgainst(inference.output(), f.columns("y")));
  checkTorchErrors<S>(fixtureName, errors);
}

/// Every parameter, x and the initial state against central differences, double, unequal
/// unsorted lengths.
template <typename Case>
void checkAgainstCentralDifferences(unsigned seed) {
  using Cell = typename Case::Cell;
  std::mt19937 rng(seed);
  const std::vector<int> lengths = {3, 5, 1, 4};
  const Index T = 5, B = 4;
  Cell cell = Case::make(3, 4);
  randomize(cell, rng);
  const Mat<double> x = uniform<double>(3, T * B, rng);
  Mat<double> xs = x;
  typename Cell::State h0 = randomState(cell, B, rng);
  const LinearLoss<Cell> loss = randomLoss(cell, T, B, rng);

  recurrent::Sequence<Cell> seq(cell);
  seq.forward(x, lengths, h0);
  typename Cell::Parameters grads = cell.zeroGradients();
  seq.backward(loss.wy, loss.wFinal, grads);
  const auto lossOf = [&] {
    recurrent::Sequence<Cell> s(cell);
    s.infer(xs, lengths, h0);
    return loss(s.output(), s.finalState());
  };
  std::map<std::string, MatrixXd> analytic;
  grads.forEach([&](const char* name, const auto& g) { analytic[name] = g; });
  cell.parameters().forEach([&](const char* name, auto& tensor) {
    const MatrixXd numeric = numericGradient(tensor, lossOf);
    INFO(name);
    CHECK(numeric.cwiseAbs().maxCoeff() > 1e-3);
    CHECK(relativeError(analytic.at(name), numeric) <= 1e-6);
  });
  CHECK(relativeError(seq.inputGradient(), numericGradient(xs, lossOf)) <= 1e-6);
  CHECK(relativeError(seq.initialStateGradient().h, numericGradient(h0.h, lossOf)) <= 1e-6);
  if constexpr (Cell::kHasCellState) {
    CHECK(relativeError(seq.initialStateGradient().c, numericGradient(h0.c, lossOf)) <= 1e-6);
  }
}

}  // namespace

TEMPLATE_TEST_CASE("LayerNormLSTMCell matches PyTorch's reference LayerNormLSTMCell",
                   "[layernorm][torch]", float, double) {
  compareWithTorch<LayerNormLSTM<TestType>>("layernorm_lstm_packed");
}

TEMPLATE_TEST_CASE("LayerNormGRUCell matches its PyTorch definition", "[layernorm][torch]", float,
                   double) {
  compareWithTorch<LayerNormGRU<TestType>>("layernorm_gru_packed");
}

TEST_CASE("layer-normalised cells: BPTT matches central differences",
          "[layernorm][bptt][gradcheck]") {
  checkAgainstCentralDifferences<LayerNormLSTM<double>>(11);
  checkAgainstCentralDifferences<LayerNormGRU<double>>(12);
}

TEST_CASE("layer norm of one column: zero mean, unit biased variance, and ε", "[layernorm]") {
  const Eigen::VectorXd v = (Eigen::VectorXd(4) << 1.0, 2.0, 4.0, 9.0).finished();
  Eigen::VectorXd out(4);
  const double r = recurrent::detail::layerNormForward(v.data(), 4, out.data());
  const double mean = 4.0, variance = (9.0 + 4.0 + 0.0 + 25.0) / 4.0;  // biased
  CHECK(r == Approx(1.0 / std::sqrt(variance + 1e-5)).epsilon(1e-14));
  for (Index k = 0; k < 4; ++k) CHECK(out(k) == Approx((v(k) - mean) * r).epsilon(1e-14));
  // A constant column normalises to zero (ε keeps r finite).
  const Eigen::VectorXd flat = Eigen::VectorXd::Constant(4, 3.0);
  CHECK(recurrent::detail::layerNormForward(flat.data(), 4, out.data()) ==
        Approx(1.0 / std::sqrt(1e-5)));
  CHECK(out.cwiseAbs().maxCoeff() == 0.0);
}

TEST_CASE("layer-normalised cells: initialize draws the weights as LSTMCell and sets γ = 1, β = 0",
          "[layernorm][init]") {
  std::mt19937 a(7), b(7), c(7);
  recurrent::LayerNormLSTMCell<double> ln(3, 5);
  recurrent::LSTMCell<double> lstm(3, 5);
  recurrent::initialize(ln, a);
  recurrent::initialize(lstm, b);
  CHECK(ln.parameters().weight_ih == lstm.parameters().weight_ih);
  CHECK(ln.parameters().weight_hh == lstm.parameters().weight_hh);
  CHECK(ln.parameters().layernorm_i_weight.isOnes());
  CHECK(ln.parameters().layernorm_h_weight.isOnes());
  CHECK(ln.parameters().layernorm_c_weight.isOnes());
  CHECK(ln.parameters().layernorm_i_bias.isZero());
  CHECK(ln.parameters().layernorm_h_bias.isZero());
  CHECK(ln.parameters().layernorm_c_bias.isZero());
  recurrent::LayerNormGRUCell<double> gru(3, 5);
  recurrent::initialize(gru, c);
  CHECK(gru.parameters().weight_ih.cwiseAbs().maxCoeff() <= 1.0 / std::sqrt(5.0));
  CHECK(gru.parameters().layernorm_h_weight.isOnes());
  CHECK(gru.parameters().layernorm_h_bias.isZero());
}

TEMPLATE_TEST_CASE("layer-normalised cells in a Stack, a Stream, a StateDict and SGD",
                   "[layernorm][stack][stream]", recurrent::LayerNormLSTMCell<double>,
                   recurrent::LayerNormGRUCell<double>) {
  using Cell = TestType;
  std::mt19937 rng(5);
  const std::vector<int> lengths = {3, 4, 2};
  const Index T = 4, B = 3;
  recurrent::Stack<Cell> stack(2, 4, recurrent::StackOptions().numLayers(2).bidirectional());
  stack.initialize(rng);
  for (Index k = 0; k < 4; ++k) randomize(stack.cell(k / 2, k % 2), rng);
  Mat<double> x = uniform<double>(2, T * B, rng);
  const Mat<double> wy = uniform<double>(8, T * B, rng);
  stack.forward(x, lengths);
  auto grads = stack.zeroGradients();
  stack.backward(wy, grads);
  const Mat<double> dx = stack.inputGradient();
  const auto lossOf = [&] { return (wy.array() * stack.infer(x, lengths).array()).sum(); };
  // Through both layers and directions: dL/dx and the first layer's reverse γ_h.
  CHECK(relativeError(dx, numericGradient(x, lossOf)) <= 1e-6);
  const MatrixXd numeric =
      numericGradient(stack.cell(0, 1).parameters().layernorm_h_weight, lossOf);
  CHECK(relativeError(grads(0, 1).layernorm_h_weight, numeric) <= 1e-6);

  // The forward direction of layer 0 is a Sequence of its cell; a Stream matches it step by step.
  recurrent::Sequence<Cell> first(stack.cell(0, 0));
  first.infer(x, lengths);
  recurrent::Stream<Cell> stream(stack.cell(0, 0), B);
  for (Index t = 0; t < 2; ++t) {  // every sequence is active at steps 0 and 1
    const Mat<double> h = stream.step(x.middleCols(t * B, B));
    CHECK(h.isApprox(first.output().middleCols(t * B, B), 1e-12));
  }

  // The state_dict names of PyTorch's reference cell, and a round trip through them.
  recurrent::StateDict<double> dict;
  dict.add("cell.", stack.cell(1, 0), recurrent::CellNaming::Cell);
  CHECK(dict.size() == (Cell::kHasCellState ? 8u : 6u));
  CHECK(dict[0].name == "cell.weight_ih");
  CHECK(dict[2].name == "cell.layernorm_i.weight");
  CHECK(dict[5].name == "cell.layernorm_h.bias");
  if constexpr (Cell::kHasCellState) CHECK(dict[7].name == "cell.layernorm_c.bias");
  Cell copy(stack.cell(1, 0).inputSize(), 4);
  recurrent::StateDict<double> target;
  target.add("cell.", copy, recurrent::CellNaming::Cell);
  for (std::size_t k = 0; k < dict.size(); ++k) {
    target[k].tensor.array() = dict[k].tensor.array();
  }
  copy.parameters().forEach([&](const char* name, const auto& tensor) {
    const auto* e = dict.find(std::string("cell.") + name);
    REQUIRE(e != nullptr);
    CHECK(Eigen::Map<const Mat<double>>(e->tensor.data(), tensor.rows(), tensor.cols()) == tensor);
  });

  // ParameterList and SGD see every tensor: one step moves each by −lr · gradient.
  recurrent::ParameterList<double> params;
  params.add(stack.parameters(), grads);
  std::size_t count = 0;
  stack.parameters().forEach([&](const std::string&, auto&) { ++count; });
  CHECK(count == 4 * (Cell::kHasCellState ? 8u : 6u));
  const double before = stack.cell(1, 1).parameters().layernorm_i_bias(0);
  recurrent::SGD<double> sgd(params, recurrent::SGDOptions(0.5));
  sgd.step();
  CHECK(stack.cell(1, 1).parameters().layernorm_i_bias(0) ==
        Approx(before - 0.5 * grads(1, 1).layernorm_i_bias(0)).epsilon(1e-14));
}

TEST_CASE("layer-normalised cells with sizes fixed at compile time run as the run-time ones",
          "[layernorm][fixed]") {
  std::mt19937 rng(61);
  recurrent::LayerNormLSTMCell<double> dynamicLstm(3, 4);
  recurrent::LayerNormLSTMCell<double, 3, 4> fixedLstm;
  recurrent::LayerNormGRUCell<double> dynamicGru(3, 4);
  recurrent::LayerNormGRUCell<double, 3, 4> fixedGru;
  randomize(dynamicLstm, rng);
  randomize(dynamicGru, rng);
  fixedLstm.parameters() = dynamicLstm.parameters();
  fixedGru.parameters() = dynamicGru.parameters();
  const Mat<double> x = uniform<double>(3, 4 * 2, rng);
  const std::vector<int> lengths = {4, 3};
  recurrent::Sequence<recurrent::LayerNormLSTMCell<double>> a(dynamicLstm);
  recurrent::Sequence<recurrent::LayerNormLSTMCell<double, 3, 4>> b(fixedLstm);
  CHECK(relativeError(a.infer(x, lengths), b.infer(x, lengths)) <= 1e-14);
  recurrent::Sequence<recurrent::LayerNormGRUCell<double>> c(dynamicGru);
  recurrent::Sequence<recurrent::LayerNormGRUCell<double, 3, 4>> d(fixedGru);
  CHECK(relativeError(c.infer(x, lengths), d.infer(x, lengths)) <= 1e-14);
  CHECK_THROWS_AS(recurrent::LayerNormLSTMCell<double>(0, 4), std::invalid_argument);
  CHECK_THROWS_AS((recurrent::LayerNormGRUCell<double, 3, 4>(2, 4)), std::invalid_argument);
}
