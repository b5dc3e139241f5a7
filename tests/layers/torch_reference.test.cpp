// Against PyTorch: nn.LSTM (also with proj_size), nn.GRU and nn.RNN (tanh, relu), one layer, on a
// batch of unequal, unsorted lengths through pack_padded_sequence(enforce_sorted=False), and on a
// full batch. The fixtures are written in float64 by tests/generate_fixtures.py; float runs are
// compared within 1e-5 and double runs within 1e-10, each relative to max(1, |reference|).
#include "catch.hpp"
#include "support.hpp"
#include "torch_errors.hpp"

#include <recurrent/recurrent.hpp>

#include <iostream>

using namespace test;
using recurrent::Sequence;

namespace {

using test::errorAgainst;
using test::torchTolerance;

template <typename Case>
void compareWithTorch(const std::string& fixtureName) {
  using Cell = typename Case::Cell;
  using S = typename Cell::Scalar;
  const Fixture f(fixtureName);
  const std::vector<int> lengths = f.lengths();
  const MatrixXd weightIh = f.torch2d("weight_ih");
  const Index I = weightIh.cols(), H = weightIh.rows() / Cell::kGates;
  const Index P = f.has("weight_hr") ? f.torch2d("weight_hr").rows() : 0;  // nn.LSTM's proj_size
  Cell cell = [&] {
    if constexpr (Cell::kHasCellState) {
      if (P > 0) return Cell(I, H, P);
    }
    return Case::make(I, H);
  }();
  auto& params = cell.parameters();
  params.weight_ih = weightIh.cast<S>();
  params.weight_hh = f.torch2d("weight_hh").cast<S>();
  params.bias_ih = f.torch2d("bias_ih").cast<S>();
  params.bias_hh = f.torch2d("bias_hh").cast<S>();
  if constexpr (Cell::kHasCellState) {
    if (P > 0) params.weight_hr = f.torch2d("weight_hr").cast<S>();
  }

  typename Cell::State h0, wFinal;
  h0.h = f.columns("h0").cast<S>();
  wFinal.h = f.columns("wh").cast<S>();
  if constexpr (Cell::kHasCellState) {
    h0.c = f.columns("c0").cast<S>();
    wFinal.c = f.columns("wc").cast<S>();
  }
  const Mat<S> x = f.columns("x").cast<S>();
  const Mat<S> wy = f.columns("wy").cast<S>();

  Sequence<Cell> seq(cell);
  seq.forward(x, lengths, h0);
  auto grads = cell.zeroGradients();
  seq.backward(wy, wFinal, grads);

  std::vector<std::pair<const char*, double>> errors = {
      {"output", errorAgainst(seq.output(), f.columns("y"))},
      {"h_n", errorAgainst(seq.finalState().h, f.columns("h_n"))},
      {"grad weight_ih", errorAgainst(grads.weight_ih, f.torch2d("grad_weight_ih"))},
      {"grad weight_hh", errorAgainst(grads.weight_hh, f.torch2d("grad_weight_hh"))},
      {"grad bias_ih", errorAgainst(grads.bias_ih, f.torch2d("grad_bias_ih"))},
      {"grad bias_hh", errorAgainst(grads.bias_hh, f.torch2d("grad_bias_hh"))},
      {"grad x", errorAgainst(seq.inputGradient(), f.columns("grad_x"))},
      {"grad h0", errorAgainst(seq.initialStateGradient().h, f.columns("grad_h0"))},
  };
  if constexpr (Cell::kHasCellState) {
    errors.emplace_back("c_n", errorAgainst(seq.finalState().c, f.columns("c_n")));
    errors.emplace_back("grad c0",
                        errorAgainst(seq.initialStateGradient().c, f.columns("grad_c0")));
    if (P > 0) {
      errors.emplace_back("grad weight_hr",
                          errorAgainst(grads.weight_hr, f.torch2d("grad_weight_hr")));
    }
  }
  // Inference gives the same outputs.
  Sequence<Cell> inference(cell);
  inference.infer(x, lengths, h0);
  errors.emplace_back("infer output", errorAgainst(inference.output(), f.columns("y")));

  checkTorchErrors<S>(fixtureName, errors);
}

}  // namespace

TEMPLATE_TEST_CASE("LSTM matches torch.nn.LSTM", "[lstm][torch]", float, double) {
  compareWithTorch<LSTM<TestType>>("lstm_packed");
  compareWithTorch<LSTM<TestType>>("lstm_full");
}

TEMPLATE_TEST_CASE("LSTM with a projection matches torch.nn.LSTM(proj_size=3)",
                   "[lstm][torch][projection]", float, double) {
  compareWithTorch<LSTM<TestType>>("lstm_proj_packed");
  compareWithTorch<LSTM<TestType>>("lstm_proj_full");
}

TEMPLATE_TEST_CASE("GRU matches torch.nn.GRU", "[gru][torch]", float, double) {
  compareWithTorch<GRU<TestType>>("gru_packed");
  compareWithTorch<GRU<TestType>>("gru_full");
}

TEMPLATE_TEST_CASE("RNN matches torch.nn.RNN", "[rnn][torch]", float, double) {
  compareWithTorch<RNNTanh<TestType>>("rnn_tanh_packed");
  compareWithTorch<RNNTanh<TestType>>("rnn_tanh_full");
  compareWithTorch<RNNRelu<TestType>>("rnn_relu_packed");
  compareWithTorch<RNNRelu<TestType>>("rnn_relu_full");
}
