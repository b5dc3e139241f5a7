// Five training steps of nn.LSTM + nn.Linear in PyTorch — MSE on a padded batch,
// clip_grad_norm_, Adam — and the same five here: the losses, gradient norms and every
// parameter after every step agree.
#include "catch.hpp"
#include "optim_support.hpp"

using namespace test;

TEMPLATE_TEST_CASE("five steps of LSTM + Linear + MSE + clipping + Adam match PyTorch",
                   "[train][torch]", float, double) {
  using S = TestType;
  using Cell = recurrent::LSTMCell<S>;
  const double tol = sizeof(S) == 4 ? 1e-5 : 1e-10;
  const Fixture f("train_lstm");
  const std::vector<int> lengths = f.lengths();
  const MatrixXd weightIh = f.torch2d("weight_ih_l0");
  Cell cell(weightIh.cols(), f.torch2d("weight_hh_l0").cols());
  recurrent::Linear<S> fc(cell.hiddenSize(), f.torch2d("fc.weight").rows());
  auto load = [&](const std::string& suffix) {
    cell.parameters().weight_ih = f.torch2d("weight_ih_l0" + suffix).cast<S>();
    cell.parameters().weight_hh = f.torch2d("weight_hh_l0" + suffix).cast<S>();
    cell.parameters().bias_ih = f.torch2d("bias_ih_l0" + suffix).cast<S>();
    cell.parameters().bias_hh = f.torch2d("bias_hh_l0" + suffix).cast<S>();
    fc.parameters().weight = f.torch2d("fc.weight" + suffix).cast<S>();
    fc.parameters().bias = f.torch2d("fc.bias" + suffix).cast<S>();
  };
  load("");
  auto cellGrads = cell.zeroGradients();
  auto fcGrads = fc.zeroGradients();
  recurrent::ParameterList<S> params;
  params.add(cell.parameters(), cellGrads, "rnn.").add(fc.parameters(), fcGrads, "fc.");
  recurrent::Adam<S> adam(params, recurrent::AdamOptions(0.05));
  recurrent::Sequence<Cell> seq(cell);
  const Mat<S> x = f.columns("x").cast<S>();
  const Mat<S> target = f.columns("target").cast<S>();
  Mat<S> y, dy, dh;

  double worst = 0;
  for (int k = 1; k <= 5; ++k) {
    const std::string s = std::to_string(k);
    params.zeroGradients();
    seq.forward(x, lengths);
    fc.forward(seq.output(), y);
    const S loss = recurrent::mseLoss(y, target, lengths, dy);
    fc.backward(seq.output(), dy, fcGrads, dh);
    seq.backward(dh, cellGrads);
    const S norm = recurrent::clipGradNorm(params, 0.5);
    adam.step();

    Cell expected(cell.inputSize(), cell.hiddenSize());
    const std::vector<std::pair<std::string, double>> diffs = {
        {"loss", differenceTo(Mat<S>::Constant(1, 1, loss), f.torch2d("loss" + s))},
        {"norm", differenceTo(Mat<S>::Constant(1, 1, norm), f.torch2d("norm" + s))},
        {"weight_ih", differenceTo(cell.parameters().weight_ih, f.torch2d("weight_ih_l0_" + s))},
        {"weight_hh", differenceTo(cell.parameters().weight_hh, f.torch2d("weight_hh_l0_" + s))},
        {"bias_ih", differenceTo(cell.parameters().bias_ih, f.torch2d("bias_ih_l0_" + s))},
        {"bias_hh", differenceTo(cell.parameters().bias_hh, f.torch2d("bias_hh_l0_" + s))},
        {"fc.weight", differenceTo(fc.parameters().weight, f.torch2d("fc.weight_" + s))},
        {"fc.bias", differenceTo(fc.parameters().bias, f.torch2d("fc.bias_" + s))}};
    for (const auto& [name, d] : diffs) {
      INFO("step " << k << " " << name << ": " << d);
      CHECK(d <= tol);
      worst = std::max(worst, d);
    }
  }
  std::cout << "train_lstm (" << (sizeof(S) == 4 ? "float" : "double")
            << "): worst difference to PyTorch over 5 steps " << worst << "\n";
  // The parameters moved: the comparison is not of the start against itself.
  CHECK(differenceTo(fc.parameters().weight, f.torch2d("fc.weight")) > 1e-2);
}
