// Cells with compile-time sizes: construction, and everything a run-time-sized cell works with
// (Sequence, ParameterList and the optimizers, StateDict and weight files, initialize()).
#include "catch.hpp"
#include "support.hpp"

#include <recurrent/io/safetensors.hpp>
#include <recurrent/recurrent.hpp>

#include <cstdio>
#include <string>
#include <vector>

using namespace test;
using recurrent::GRUCell;
using recurrent::GRUVariant;
using recurrent::LSTMCell;
using recurrent::ResetBeforeGRUCell;
using recurrent::RNNCell;

TEST_CASE("a fixed-size cell has its sizes and a default constructor", "[fixed]") {
  const LSTMCell<float, 3, 5> lstm;
  CHECK(lstm.inputSize() == 3);
  CHECK(lstm.hiddenSize() == 5);
  CHECK(lstm.parameters().weight_ih.rows() == 20);
  CHECK(lstm.parameters().weight_hh.cols() == 5);
  CHECK(lstm.parameters().bias_hh.isZero(0.0));
  const GRUCell<double, 1, 8, GRUVariant::ResetBefore> gru;
  CHECK(gru.parameters().weight_ih.rows() == 24);
  CHECK(gru.parameters().weight_ih.cols() == 1);
  const RNNCell<float, 2, 4> rnn(recurrent::Nonlinearity::Relu);
  CHECK(rnn.nonlinearity() == recurrent::Nonlinearity::Relu);
  CHECK(RNNCell<float, 2, 4>().nonlinearity() == recurrent::Nonlinearity::Tanh);
  // The run-time-size constructor accepts the compile-time sizes.
  CHECK(LSTMCell<float, 3, 5>(3, 5).hiddenSize() == 5);
  // A cell with one size fixed takes the other at run time.
  CHECK(LSTMCell<float, 3>(3, 9).hiddenSize() == 9);
  static_assert(std::is_default_constructible<LSTMCell<float, 3, 5>>::value);
  static_assert(!std::is_default_constructible<LSTMCell<float>>::value);
  static_assert(!std::is_default_constructible<LSTMCell<float, 3>>::value);
  static_assert(std::is_same<LSTMCell<float>, LSTMCell<float, Eigen::Dynamic, Eigen::Dynamic,
                                                       recurrent::LSTMVariant::Standard>>::value);
}

TEST_CASE("a fixed-size cell refuses other sizes", "[fixed][errors]") {
  using Lstm = LSTMCell<float, 3, 5>;
  CHECK_THROWS_AS(Lstm(4, 5), std::invalid_argument);
  CHECK_THROWS_WITH(Lstm(4, 5),
                    Contains("LSTMCell: input_size must be 3 (the compile-time size), got 4"));
  CHECK_THROWS_WITH(Lstm(3, 6),
                    Contains("LSTMCell: hidden_size must be 5 (the compile-time size), got 6"));
  CHECK_THROWS_WITH((GRUCell<float, 1, 8, GRUVariant::ResetAfter>(1, 16)),
                    Contains("GRUCell: hidden_size must be 8 (the compile-time size), got 16"));
  CHECK_THROWS_WITH((RNNCell<double, 2, 4>(1, 4)),
                    Contains("RNNCell: input_size must be 2 (the compile-time size), got 1"));
  CHECK_THROWS_WITH((LSTMCell<float, 3>(3, 0)),
                    Contains("LSTMCell: hidden_size must be at least 1, got 0"));
}

namespace {

/// Forward, backward and inference of a Sequence with `Fixed` and with `Dynamic` (the same
/// parameters): the same batched code runs both, so the results are identical.
template <typename Fixed, typename Dynamic>
void checkSequenceMatches() {
  using S = typename Fixed::Scalar;
  Fixed fixed;
  const Index I = fixed.inputSize(), H = fixed.hiddenSize(), T = 6, B = 3;
  Dynamic dynamic(I, H);
  std::mt19937 rng(static_cast<unsigned>(11 * I + H));
  randomize(dynamic, rng);
  fixed.parameters() = dynamic.parameters();
  const Mat<S> x = uniform<S>(I, T * B, rng);
  const Mat<S> dy = uniform<S>(H, T * B, rng);
  const std::vector<int> lengths = {6, 2, 5};
  recurrent::Sequence<Fixed> a(fixed);
  recurrent::Sequence<Dynamic> b(dynamic);
  auto ga = fixed.zeroGradients();
  auto gb = dynamic.zeroGradients();
  a.forward(x, lengths);
  b.forward(x, lengths);
  CHECK(a.output() == b.output());
  a.backward(dy, ga);
  b.backward(dy, gb);
  CHECK(ga.weight_ih == gb.weight_ih);
  CHECK(ga.weight_hh == gb.weight_hh);
  CHECK(ga.bias_ih == gb.bias_ih);
  CHECK(ga.bias_hh == gb.bias_hh);
  CHECK(a.inputGradient() == b.inputGradient());
  a.infer(x, lengths);
  b.infer(x, lengths);
  CHECK(a.finalState().h == b.finalState().h);
}

}  // namespace

TEST_CASE("Sequence runs a fixed-size cell as the run-time-sized one", "[fixed][sequence]") {
  checkSequenceMatches<LSTMCell<float, 4, 8>, LSTMCell<float>>();
  checkSequenceMatches<LSTMCell<double, 1, 5>, LSTMCell<double>>();
  checkSequenceMatches<GRUCell<float, 3, 16, GRUVariant::ResetAfter>, GRUCell<float>>();
  checkSequenceMatches<GRUCell<double, 2, 7, GRUVariant::ResetBefore>,
                       ResetBeforeGRUCell<double>>();
  checkSequenceMatches<RNNCell<float, 5, 9>, RNNCell<float>>();
}

TEST_CASE("a fixed-size cell trains with ParameterList and an optimizer", "[fixed][training]") {
  using Cell = LSTMCell<float, 2, 4>;
  std::mt19937 rng(2);
  Cell cell;
  recurrent::initialize(cell, rng, recurrent::InitOptions().forgetGateBias(1.0));
  CHECK(cell.parameters().bias_ih.segment(4, 4).isConstant(1.0F));
  CHECK(cell.parameters().bias_hh.segment(4, 4).isZero(0.0));
  auto grads = cell.zeroGradients();
  grads.weight_hh.setConstant(0.5F);
  recurrent::ParameterList<float> params;
  params.add(cell.parameters(), grads, "rnn.");
  const Eigen::MatrixXf before = cell.parameters().weight_hh;
  recurrent::SGD<float> sgd(params, recurrent::SGDOptions(0.1));
  sgd.step();
  CHECK(cell.parameters().weight_hh.isApprox((before.array() - 0.05F).matrix(), 1e-6F));
  // The fused Stream kernel sees the new weights after refresh().
  recurrent::Stream<Cell> stream(cell);
  CHECK(stream.step(Eigen::MatrixXf::Ones(2, 1)).allFinite());
}

TEST_CASE("a fixed-size cell saves and loads its weights", "[fixed][safetensors]") {
  using Fixed = GRUCell<float, 1, 8, GRUVariant::ResetAfter>;
  std::mt19937 rng(4);
  Fixed a;
  a.initialize(rng);
  recurrent::StateDict<float> da;
  da.add("rnn.", a);
  const std::string path = "fixed_size_test.safetensors";
  recurrent::saveSafetensors(path, da);
  GRUCell<float> b(1, 8);  // a run-time-sized cell reads what the fixed one wrote, and back
  recurrent::StateDict<float> db;
  db.add("rnn.", b);
  recurrent::loadSafetensors(path, db);
  CHECK(b.parameters().weight_hh == a.parameters().weight_hh);
  CHECK(b.parameters().bias_ih == a.parameters().bias_ih);
  Fixed c;
  recurrent::StateDict<float> dc;
  dc.add("rnn.", c);
  recurrent::loadSafetensors(path, dc);
  CHECK(c.parameters().weight_ih == a.parameters().weight_ih);
  // A file of other sizes is refused, naming the tensor.
  LSTMCell<float, 1, 8> wrong;
  recurrent::StateDict<float> dw;
  dw.add("rnn.", wrong);
  CHECK_THROWS_AS(recurrent::loadSafetensors(path, dw), std::invalid_argument);
  std::remove(path.c_str());
}
