// Must not compile: a cell that names a fused product but has no fusedGates (the gate math of the
// fused step). tests/CMakeLists.txt checks the contract's message.
#include <recurrent/recurrent.hpp>

template <typename Scalar_>
class NoFusedGatesCell : public recurrent::RNNCell<Scalar_> {
 public:
  using recurrent::RNNCell<Scalar_>::RNNCell;
  // Names a fused product, but hides RNNCell's fusedGates behind one of another signature.
  void fusedGates(int) const {}
};

int main() {
  NoFusedGatesCell<float> cell(2, 3);
  recurrent::Stream<NoFusedGatesCell<float>> stream(cell);
}
