// The smallest consumer: include the library, run a forward pass, check the output's shape.
#include <recurrent/recurrent.hpp>

#include <iostream>
#include <random>

int main() {
  std::mt19937 rng(0);
  recurrent::LSTMCell<float> cell(4, 8);
  cell.initialize(rng);
  recurrent::Sequence<recurrent::LSTMCell<float>> sequence(cell);
  const Eigen::MatrixXf x = Eigen::MatrixXf::Ones(4, 5 * 2);  // T = 5 steps, B = 2 sequences
  const Eigen::MatrixXf& y = sequence.infer(x, {5, 3});
  std::cout << "output " << y.rows() << " x " << y.cols() << ", |y| = " << y.norm() << "\n";
  return (y.rows() == 8 && y.cols() == 10 && y.norm() > 0) ? 0 : 1;
}
