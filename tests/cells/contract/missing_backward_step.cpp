// Must not compile: a cell without backwardStep. The compiler's first error is the contract's
// message naming the missing member (tests/CMakeLists.txt checks it).
#include <recurrent/recurrent.hpp>

template <typename Scalar_>
class NoBackwardCell
    : public recurrent::CellBase<recurrent::GateParameters<Scalar_, 1>,
                                 recurrent::HiddenState<Scalar_>, Eigen::Dynamic, Eigen::Dynamic> {
  using Base = recurrent::CellBase<recurrent::GateParameters<Scalar_, 1>,
                                   recurrent::HiddenState<Scalar_>, Eigen::Dynamic, Eigen::Dynamic>;

 public:
  using typename Base::Parameters;
  using typename Base::Scalar;
  NoBackwardCell(Eigen::Index I, Eigen::Index H)
      : Base("NoBackwardCell", recurrent::CellSizes{I, H, 0}) {}
  Eigen::Index extraRows() const { return 0; }
  Eigen::Index scratchRows() const { return 0; }
  template <typename Derived>
  void foldedBias(Eigen::MatrixBase<Derived>& bias) const {
    bias.setZero();
  }
  void forwardStep(const recurrent::StepContext<Scalar>&, recurrent::ForwardStep<Scalar>&) const {}
  void accumulateGradients(const recurrent::StepContext<Scalar>&,
                           const recurrent::StepsGradients<Scalar>&, Parameters&) const {}
};

int main() {
  NoBackwardCell<float> cell(2, 3);
  recurrent::Sequence<NoBackwardCell<float>> sequence(cell);
}
