// The translation unit of benchmarks/README.md's *Build time*: what a program that uses the
// library compiles — one LSTM Sequence trained for a step, one GRU Stack run for inference.
// benchmarks/build_time compiles it header-only, in the compiled mode
// (RECURRENT_EXTERN_TEMPLATES) and with Eigen alone (BUILD_TIME_EIGEN_ONLY: the same matrices,
// one product), and prints the times.
#ifdef BUILD_TIME_EIGEN_ONLY
#include <Eigen/Core>
#else
#include <recurrent/recurrent.hpp>
#endif

#include <iostream>
#include <random>
#include <vector>

int main() {
  const Eigen::MatrixXf x = Eigen::MatrixXf::Random(8, 5 * 3);  // T = 5, B = 3
#ifdef BUILD_TIME_EIGEN_ONLY
  const Eigen::MatrixXf w = Eigen::MatrixXf::Random(16, 8);
  const Eigen::MatrixXf y = w * x;
  std::cout << y.norm() << "\n";
#else
  std::mt19937 rng(1);
  const std::vector<int> lengths = {5, 3, 4};

  recurrent::LSTMCell<float> lstm(8, 16);
  lstm.initialize(rng);
  recurrent::Sequence<recurrent::LSTMCell<float> > sequence(lstm);
  const Eigen::MatrixXf& y = sequence.forward(x, lengths);
  auto grads = lstm.zeroGradients();
  sequence.backward(Eigen::MatrixXf::Ones(y.rows(), y.cols()), grads);

  recurrent::Stack<recurrent::GRUCell<float> > stack(
      8, 16, recurrent::StackOptions().numLayers(2).bidirectional());
  stack.initialize(rng);
  const Eigen::MatrixXf& z = stack.infer(x, lengths);
  std::cout << y.norm() + z.norm() + grads.weight_hh.norm() << "\n";
#endif
}
