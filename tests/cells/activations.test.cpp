// The vectorised σ and tanh the cells use (Eigen's approximations in float) against the exact
// functions evaluated in double, on the packet-sized chunks of the gate math.
#include "catch.hpp"

#include <recurrent/detail/chunks.hpp>
#include <recurrent/recurrent.hpp>

#include <cmath>
#include <iostream>

namespace {

template <typename Scalar>
void checkActivations(double tanhBound, double sigmoidBound) {
  using Chunk = recurrent::detail::Chunk<Scalar>;
  constexpr int W = recurrent::detail::GemmTraits<Scalar>::P;
  double worstTanh = 0, worstSigmoid = 0;
  for (int step = -300000; step < 300000; step += W) {  // x = step · 1e-4 over [-30, 30)
    Chunk x;
    for (int i = 0; i < W; ++i) x[i] = static_cast<Scalar>((step + i) * 1e-4);
    const Chunk t = x.tanh();
    const Chunk s = recurrent::sigmoid(x);
    for (int i = 0; i < W; ++i) {
      const double xd = static_cast<double>(x[i]);
      worstTanh = std::max(worstTanh, std::abs(static_cast<double>(t[i]) - std::tanh(xd)));
      worstSigmoid =
          std::max(worstSigmoid, std::abs(static_cast<double>(s[i]) - 1.0 / (1.0 + std::exp(-xd))));
    }
  }
  std::cout << (sizeof(Scalar) == 4 ? "float" : "double")
            << ": max |tanh - std::tanh| = " << worstTanh
            << ", max |sigmoid - 1/(1+exp(-x))| = " << worstSigmoid << " on [-30, 30]\n";
  CHECK(worstTanh <= tanhBound);
  CHECK(worstSigmoid <= sigmoidBound);
  // Saturation is exact, and the derivatives from the outputs stay in range.
  Chunk big = Chunk::Constant(Scalar(1e4));
  CHECK((big.tanh() == Scalar(1)).all());
  CHECK((recurrent::sigmoid(big) == Scalar(1)).all());
  CHECK((recurrent::sigmoid(Chunk(-big)) >= Scalar(0)).all());
  CHECK((recurrent::tanhGradFromOutput(Chunk(big.tanh())) >= Scalar(0)).all());
}

}  // namespace

TEST_CASE("vectorised tanh and sigmoid are within a few ulp of the exact functions",
          "[activations]") {
  // Measured on x86-64 (SSE2 and AVX-512): float tanh 3.3e-7, sigmoid 1.7e-7 (|y| <= 1, so a
  // few ulp); double 2e-16. The bounds leave a margin, not room for a worse approximation.
  checkActivations<float>(5e-7, 3e-7);
  checkActivations<double>(1e-14, 1e-14);
}
