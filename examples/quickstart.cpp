// Train an LSTM to predict the next value of a sine wave from the current one.
#include <recurrent/recurrent.hpp>

#include <cmath>
#include <iostream>
#include <random>

int main() {
  using Cell = recurrent::LSTMCell<float>;
  const int T = 40, B = 4;  // 4 sequences of up to 40 steps
  Cell cell(/*inputSize=*/1, /*hiddenSize=*/16);
  std::mt19937 rng(42);
  cell.initialize(rng);  // PyTorch's U(-1/sqrt(H), 1/sqrt(H))
  recurrent::Sequence<Cell> sequence(cell);

  // Inputs are time-major: step t of sequence b is column t*B + b.
  Eigen::MatrixXf x(1, T * B), target(1, T * B);
  for (int t = 0; t < T; ++t)
    for (int b = 0; b < B; ++b) {
      x(0, t * B + b) = std::sin(0.3f * float(t + 5 * b));
      target(0, t * B + b) = std::sin(0.3f * float(t + 1 + 5 * b));
    }
  const std::vector<int> lengths = {40, 25, 33, 40};  // any order

  Cell::Parameters grads = cell.zeroGradients();
  for (int epoch = 0; epoch <= 300; ++epoch) {
    const Eigen::MatrixXf& y = sequence.forward(x, lengths);  // 16 x (T*B), keeps the tape
    // Loss: mean squared error of hidden unit 0 against the target, over the real steps.
    Eigen::MatrixXf dy = Eigen::MatrixXf::Zero(16, T * B);
    float loss = 0;
    int count = 0;
    for (int t = 0; t < T; ++t)
      for (int b = 0; b < B; ++b)
        if (t < lengths[b]) {
          const float e = y(0, t * B + b) - target(0, t * B + b);
          loss += e * e;
          dy(0, t * B + b) = 2 * e;
          ++count;
        }
    dy /= float(count);
    grads.setZero();
    sequence.backward(dy, grads);  // adds dL/dθ into grads
    // Plain gradient descent on every parameter tensor.
    cell.parameters().weight_ih -= 0.5f * grads.weight_ih;
    cell.parameters().weight_hh -= 0.5f * grads.weight_hh;
    cell.parameters().bias_ih -= 0.5f * grads.bias_ih;
    cell.parameters().bias_hh -= 0.5f * grads.bias_hh;
    if (epoch % 100 == 0) std::cout << "epoch " << epoch << "  mse " << loss / float(count) << "\n";
  }
}
