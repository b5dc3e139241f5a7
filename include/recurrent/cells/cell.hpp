// recurrent — cells/cell.hpp: what a cell is, and what a new one must provide.
//
// A cell owns its parameters and knows the gate math of ONE time step, forward and backward. It
// keeps nothing per sequence and is never modified while it runs, so one cell can serve several
// drivers on several threads. The drivers — Sequence (a layer over a packed batch, with BPTT),
// Stack (layers and directions), Stream (one step at a time) — and the parts that visit
// parameters (StateDict, ParameterList and the optimizers, initialize) use a cell only through
// the members below. CellContract<Cell> checks them at compile time, with one message per
// missing member.
//
// What every cell has, from CellBase (a cell derives from it and so writes none of it):
//
//   Scalar, Matrix, Vector   float or double, and its dynamic Eigen matrix and vector
//   Parameters               its tensors by PyTorch's names (a TensorSet, cells/parameters.hpp),
//                            weight_ih and weight_hh among them
//   State                    LSTMState (h, c) or HiddenState (h) (cells/state.hpp)
//   kGates                   G: gate blocks of H rows in W_ih, W_hh and a step's gates buffer
//   kHasCellState            whether State has c besides h
//   kInputSize, kHiddenSize  the compile-time sizes, or Eigen::Dynamic
//   sizes(), inputSize(), hiddenSize(), outputSize()     I, H, and R (rows of h: H, or P)
//   parameters(), zeroGradients(), zeroState(B)         tensors; zero gradients; a zero state
//   initialize(rng)          PyTorch's U(−1/√H, 1/√H) on every tensor, in state_dict order
//   checkParameters(where), checkGradients(grads, where)  std::invalid_argument on a bad shape
//   a default constructor where both sizes are fixed at compile time
//
// What a cell writes, its gate math (cells/step.hpp has the views and the context):
//
//   extraRows(), scratchRows()   rows per column of its own tape and of its working memory
//   gradientRows()           rows per column of its backward tape (CellBase: 0), which
//                            backwardStep() writes and accumulateGradients() reads
//   foldedBias(bias)             the biases the driver adds to W_ih·x before the step
//   forwardStep(ctx, s) const    gates += W_hh·h, then the gate math: h', c', activations, tape
//   backwardStep(ctx, s) const   the pre-activation gradients dG, then dh_{t−1} (and dc_{t−1})
//   accumulateGradients(ctx, steps, grads) const   every weight and bias gradient, over all
//                                steps at once, ADDED into grads
//
// The traits the drivers branch on; CellBase gives the defaults, a cell redeclares what differs:
//
//   kSeparateRecurrentGradient   false: the recurrent side's dG is dGx itself. True (GRU
//                                reset-after): the step writes a separate dGh
//   kCellStatesInGradients       false. True (peephole LSTM): accumulateGradients reads c_{t−1}
//   kFullGateProducts            true: every recurrent product of a step covers all gates, so one
//                                thread may pack W_hh densely. False (GRU reset-before)
//   kSingleThreadStep            false. True (layer-normalised cells): a step reads every unit's
//                                values between its products, so the drivers run it on one thread
//   FusedProduct                 void: no fused step. A layout of detail/fused_product.hpp: a
//                                Stream of one sequence runs the whole step as one product over
//                                [x; h] (detail/fused_step.hpp), then the cell's
//                                fusedGates(a, hPrev, cPrev, h, c) const
//
// A cell whose Parameters have weight_hr (the LSTM) may project h to P < H rows: the drivers then
// pack W_hr, run it on one thread and keep dL/dh of every step for its gradient. Stack(I, H)
// makes its cells as Cell(input, H); a cell without that constructor stacks through a factory
// (Stack(I, options, makeCell)).
#pragma once

#include <recurrent/cells/parameters.hpp>
#include <recurrent/cells/state.hpp>
#include <recurrent/cells/step.hpp>
#include <recurrent/detail/errors.hpp>
#include <recurrent/detail/random.hpp>

#include <Eigen/Core>

#include <cmath>
#include <random>
#include <type_traits>
#include <utility>

namespace recurrent {

/// CellBase<Parameters, State, InputSize, HiddenSize>: everything a cell has that is not its gate
/// math (see the list above). InputSize and HiddenSize are compile-time sizes or Eigen::Dynamic.
template <typename Parameters_, typename State_, int InputSize, int HiddenSize>
class CellBase {
  static_assert(
      InputSize == Eigen::Dynamic || InputSize >= 1,
      "recurrent: a cell's compile-time input size must be at least 1 (or Eigen::Dynamic)");
  static_assert(
      HiddenSize == Eigen::Dynamic || HiddenSize >= 1,
      "recurrent: a cell's compile-time hidden size must be at least 1 (or Eigen::Dynamic)");

 public:
  /// The cell's tensors by PyTorch's names (a TensorSet); the same type holds gradients.
  using Parameters = Parameters_;
  using State = State_;                        ///< LSTMState (h, c) or HiddenState (h)
  using Scalar = typename Parameters::Scalar;  ///< float or double
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;  ///< dynamic matrix
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;               ///< dynamic vector

  /// G: the gate blocks of H rows in W_ih, W_hh and a step's gates buffer (4 LSTM, 3 GRU, 1 RNN).
  static constexpr Eigen::Index kGates = Parameters::kGates;
  static constexpr bool kHasCellState = State::kHasCellState;  ///< whether State has c besides h
  static constexpr int kInputSize = InputSize;    ///< I fixed at compile time, or Eigen::Dynamic
  static constexpr int kHiddenSize = HiddenSize;  ///< H fixed at compile time, or Eigen::Dynamic
  /// false: the recurrent side's dG is dGx itself. A cell that sets it true (GRU reset-after)
  /// writes a separate dGh in backwardStep().
  static constexpr bool kSeparateRecurrentGradient = false;
  /// false. A cell that sets it true (peephole LSTM) gets c_t and c_{t−1} of every step in
  /// accumulateGradients() (StepsGradients::c, StepsGradients::cPrev).
  static constexpr bool kCellStatesInGradients = false;
  /// true: every recurrent product of a step covers all gates, so one thread may pack W_hh
  /// densely. False for a cell with a product of its own over some gates (GRU reset-before).
  static constexpr bool kFullGateProducts = true;
  /// false: a step computes only this thread's units [u0, u1). A cell that sets it true (the
  /// layer-normalised cells, whose statistics are over every unit) runs on one thread: the
  /// drivers then give its step u0 = 0, u1 = H.
  static constexpr bool kSingleThreadStep = false;
  /// void: no fused step. A cell that has one names its layout (detail/fused_product.hpp) and
  /// provides fusedGates(a, hPrev, cPrev, h, c) const; a Stream of one sequence then runs it.
  using FusedProduct = void;

  /// The sizes the cell was made with; they never change but by assigning another cell.
  const CellSizes& sizes() const { return m_sizes; }
  /// Rows of each input step x (I).
  Eigen::Index inputSize() const { return m_sizes.input; }
  /// Rows of each gate (and of an LSTM's cell state c).
  Eigen::Index hiddenSize() const { return m_sizes.hidden; }
  /// Rows of h and of each output step: the projection size P for an LSTM with one, else H.
  Eigen::Index outputSize() const { return m_sizes.output(); }

  /// The cell's tensors, to read, assign, load or train. An assignment must keep each tensor's
  /// shape: the drivers check it (checkParameters()) and throw std::invalid_argument otherwise.
  Parameters& parameters() { return m_params; }
  /// The same, read-only.
  const Parameters& parameters() const { return m_params; }

  /// Zero tensors shaped like the parameters, to accumulate gradients into.
  Parameters zeroGradients() const { return Parameters(m_sizes); }

  /// Rows per column of the backward step's own tape (BackwardStep::gradientTape, read again by
  /// accumulateGradients() as StepsGradients::gradientTape): 0, none. A cell that needs one
  /// redeclares it.
  Eigen::Index gradientRows() const { return 0; }

  /// A zero state for a batch of `batch` sequences.
  State zeroState(Eigen::Index batch) const { return detail::zeroState<State>(m_sizes, batch); }

  /// PyTorch's initialisation: every parameter from U(−1/√H, 1/√H), drawn from `rng` (any
  /// uniform random bit generator) in the parameters' forEach order; the same draw on every
  /// platform.
  template <typename Rng>
  void initialize(Rng& rng) {
    detail::fillUniform(m_params, 1.0 / std::sqrt(static_cast<double>(m_sizes.hidden)), rng);
  }

  /// Throws std::invalid_argument if a parameter tensor no longer has the cell's shape.
  void checkParameters(const char* where) const {
    m_params.checkShape(m_sizes, where, "cell parameter");
  }
  /// Throws std::invalid_argument if `grads` is not shaped like the parameters.
  void checkGradients(const Parameters& grads, const char* where) const {
    grads.checkShape(m_sizes, where, "gradient");
  }

 protected:
  /// A cell of the compile-time sizes, parameters zero (both sizes fixed only).
  template <bool Fixed = InputSize != Eigen::Dynamic&& HiddenSize != Eigen::Dynamic,
            std::enable_if_t<Fixed, int> = 0>
  CellBase() : m_sizes{InputSize, HiddenSize, 0}, m_params(m_sizes) {}

  /// A cell of `sizes`, parameters zero. Throws std::invalid_argument naming `name` and the size
  /// unless I, H >= 1, each equals its compile-time size where there is one, and 0 <= P < H.
  CellBase(const char* name, const CellSizes& sizes)
      : m_sizes(checked(name, sizes)), m_params(m_sizes) {}

  /// H, a constant where it is fixed at compile time (so that the gate math's loops unroll).
  Eigen::Index hidden() const {
    if constexpr (HiddenSize != Eigen::Dynamic) {
      return HiddenSize;
    } else {
      return m_sizes.hidden;
    }
  }

 private:
  static CellSizes checked(const char* name, const CellSizes& sizes) {
    detail::checkSize(name, "input_size", InputSize, sizes.input);
    detail::checkSize(name, "hidden_size", HiddenSize, sizes.hidden);
    if (sizes.projection < 0 || (sizes.projection > 0 && sizes.projection >= sizes.hidden)) {
      detail::fail(name, ": proj_size must be >= 0 and less than hidden_size = ", sizes.hidden,
                   " (0: no projection), got ", sizes.projection);
    }
    return sizes;
  }

  CellSizes m_sizes;
  Parameters m_params;
};

namespace detail {

// One detector per member of the contract: true where the expression is valid.
#define RECURRENT_DETECT(Name, ...)      \
  template <typename C, typename = void> \
  struct Name : std::false_type {};      \
  template <typename C>                  \
  struct Name<C, std::void_t<__VA_ARGS__>> : std::true_type {}

template <typename C, typename = void>
struct ScalarOf {
  using type = float;  // lets the other checks run (and fail one by one) when Scalar is missing
};
template <typename C>
struct ScalarOf<C, std::void_t<typename C::Scalar>> {
  using type = typename C::Scalar;
};
template <typename C>
using S_ = typename ScalarOf<C>::type;
template <typename C>
using M_ = Eigen::Matrix<S_<C>, Eigen::Dynamic, 1>;

RECURRENT_DETECT(HasScalar, typename C::Scalar);
RECURRENT_DETECT(HasParameters, typename C::Parameters);
RECURRENT_DETECT(HasState, typename C::State);
RECURRENT_DETECT(HasTraits, decltype(C::kGates), decltype(C::kHasCellState),
                 decltype(C::kInputSize), decltype(C::kHiddenSize),
                 decltype(C::kSeparateRecurrentGradient), decltype(C::kCellStatesInGradients),
                 decltype(C::kFullGateProducts), decltype(C::kSingleThreadStep),
                 typename C::FusedProduct);
RECURRENT_DETECT(HasSizes, decltype(std::declval<const C&>().inputSize()),
                 decltype(std::declval<const C&>().hiddenSize()),
                 decltype(std::declval<const C&>().outputSize()),
                 decltype(std::declval<const C&>().sizes()));
/// Stands in for a visitor of the parameters' forEach.
struct AnyTensor {
  template <typename Tensor>
  void operator()(const char*, Tensor&) const {}
};

RECURRENT_DETECT(HasParameterAccess, decltype(std::declval<C&>().parameters().forEach(AnyTensor())),
                 decltype(std::declval<const C&>().zeroGradients()),
                 decltype(std::declval<const C&>().zeroState(Eigen::Index(1))),
                 decltype(std::declval<C&>().initialize(std::declval<std::mt19937&>())),
                 decltype(std::declval<const C&>().checkParameters("")),
                 decltype(std::declval<const C&>().checkGradients(
                     std::declval<const typename C::Parameters&>(), "")));
/// Stands in for a visitor of a TensorSet's tensor list.
struct AnyShapedTensor {
  template <typename Tensor>
  void operator()(const char*, Tensor&, Eigen::Index, Eigen::Index) const {}
};
/// Stands in for a visitor of a state's matrices.
struct AnyStateMatrix {
  template <typename Matrix>
  void operator()(const char*, Matrix&, Eigen::Index) const {}
};

RECURRENT_DETECT(HasTensorList,
                 decltype(C::Parameters::visit(std::declval<typename C::Parameters&>(),
                                               std::declval<const CellSizes&>(),
                                               AnyShapedTensor())),
                 decltype(std::declval<typename C::Parameters&>().weight_ih),
                 decltype(std::declval<typename C::Parameters&>().weight_hh), typename C::Matrix,
                 typename C::Vector);
RECURRENT_DETECT(HasStateList,
                 decltype(C::State::visit(std::declval<typename C::State&>(),
                                          std::declval<const CellSizes&>(), AnyStateMatrix())),
                 decltype(std::declval<typename C::State&>().h));
RECURRENT_DETECT(HasTapeRows, decltype(std::declval<const C&>().extraRows()),
                 decltype(std::declval<const C&>().scratchRows()),
                 decltype(std::declval<const C&>().gradientRows()));
RECURRENT_DETECT(HasFoldedBias,
                 decltype(std::declval<const C&>().foldedBias(std::declval<M_<C>&>())));
RECURRENT_DETECT(HasForwardStep, decltype(std::declval<const C&>().forwardStep(
                                     std::declval<const StepContext<S_<C>>&>(),
                                     std::declval<ForwardStep<S_<C>>&>())));
RECURRENT_DETECT(HasBackwardStep, decltype(std::declval<const C&>().backwardStep(
                                      std::declval<const StepContext<S_<C>>&>(),
                                      std::declval<BackwardStep<S_<C>>&>())));
RECURRENT_DETECT(HasAccumulateGradients, decltype(std::declval<const C&>().accumulateGradients(
                                             std::declval<const StepContext<S_<C>>&>(),
                                             std::declval<const StepsGradients<S_<C>>&>(),
                                             std::declval<typename C::Parameters&>())));
RECURRENT_DETECT(HasFusedGates, decltype(std::declval<const C&>().fusedGates(
                                    std::declval<S_<C>*>(), std::declval<const S_<C>*>(),
                                    std::declval<const S_<C>*>(), std::declval<S_<C>*>(),
                                    std::declval<S_<C>*>())));
#undef RECURRENT_DETECT

template <typename C, bool = HasTraits<C>::value>
struct NeedsFusedGates : std::false_type {};
template <typename C>
struct NeedsFusedGates<C, true> : std::bool_constant<!std::is_void_v<typename C::FusedProduct>> {};

}  // namespace detail

/// CellContract<Cell>::value: whether Cell provides every member the drivers use (the list at
/// the top of this file). Instantiating it on a type that does not fails to compile with one
/// message per missing member; Sequence, Stack and Stream instantiate it first.
template <typename Cell>
struct CellContract {
  static_assert(detail::HasScalar<Cell>::value,
                "recurrent cell contract: missing `using Scalar = float;` (or double), the number "
                "type of the cell's parameters and states");
  static_assert(
      detail::HasParameters<Cell>::value,
      "recurrent cell contract: missing `using Parameters = ...;`, the type of the cell's "
      "tensors (a TensorSet; derive the cell from recurrent::CellBase)");
  static_assert(detail::HasState<Cell>::value,
                "recurrent cell contract: missing `using State = ...;` (LSTMState or HiddenState)");
  static_assert(detail::HasTraits<Cell>::value,
                "recurrent cell contract: missing a trait: kGates, kHasCellState, kInputSize, "
                "kHiddenSize, kSeparateRecurrentGradient, kCellStatesInGradients, "
                "kFullGateProducts, kSingleThreadStep or FusedProduct (derive the cell from "
                "recurrent::CellBase)");
  static_assert(detail::HasSizes<Cell>::value,
                "recurrent cell contract: missing sizes(), inputSize(), hiddenSize() or "
                "outputSize() const (derive the cell from recurrent::CellBase)");
  static_assert(detail::HasParameterAccess<Cell>::value,
                "recurrent cell contract: missing parameters(), zeroGradients(), zeroState(batch), "
                "initialize(rng), checkParameters(where) or checkGradients(grads, where) (derive "
                "the cell from recurrent::CellBase)");
  static_assert(detail::HasTensorList<Cell>::value,
                "recurrent cell contract: Parameters must list its tensors (a static visit(self, "
                "sizes, f), as a TensorSet does) and have PyTorch's weight_ih and weight_hh; "
                "Matrix and Vector must name the cell's Eigen types");
  static_assert(detail::HasStateList<Cell>::value,
                "recurrent cell contract: State must list its matrices (a static visit(self, "
                "sizes, f)) and have h: LSTMState or HiddenState");
  static_assert(detail::HasTapeRows<Cell>::value,
                "recurrent cell contract: missing `Eigen::Index extraRows() const`, "
                "`Eigen::Index scratchRows() const` or `Eigen::Index gradientRows() const`, the "
                "rows of the cell's own tapes and working memory per column");
  static_assert(
      detail::HasFoldedBias<Cell>::value,
      "recurrent cell contract: missing `void foldedBias(Vector& bias) const`, the biases "
      "added to W_ih·x before a step");
  static_assert(detail::HasForwardStep<Cell>::value,
                "recurrent cell contract: missing `void forwardStep(const StepContext<Scalar>&, "
                "ForwardStep<Scalar>&) const`, the forward gate math of one step");
  static_assert(detail::HasBackwardStep<Cell>::value,
                "recurrent cell contract: missing `void backwardStep(const StepContext<Scalar>&, "
                "BackwardStep<Scalar>&) const`, the backward gate math of one step");
  static_assert(detail::HasAccumulateGradients<Cell>::value,
                "recurrent cell contract: missing `void accumulateGradients(const "
                "StepContext<Scalar>&, const StepsGradients<Scalar>&, Parameters&) const`, the "
                "parameter gradients over every step");
  static_assert(!detail::NeedsFusedGates<Cell>::value || detail::HasFusedGates<Cell>::value,
                "recurrent cell contract: a cell whose FusedProduct is not void needs `void "
                "fusedGates(Scalar* a, const Scalar* hPrev, const Scalar* cPrev, Scalar* h, "
                "Scalar* c) const`, the gate math of its fused step");

  /// True: reading it instantiates the checks above, and a cell that fails one of them does
  /// not compile.
  static constexpr bool value =
      detail::HasScalar<Cell>::value && detail::HasParameters<Cell>::value &&
      detail::HasState<Cell>::value && detail::HasTraits<Cell>::value &&
      detail::HasSizes<Cell>::value && detail::HasParameterAccess<Cell>::value &&
      detail::HasTensorList<Cell>::value && detail::HasStateList<Cell>::value &&
      detail::HasTapeRows<Cell>::value && detail::HasFoldedBias<Cell>::value &&
      detail::HasForwardStep<Cell>::value && detail::HasBackwardStep<Cell>::value &&
      detail::HasAccumulateGradients<Cell>::value &&
      (!detail::NeedsFusedGates<Cell>::value || detail::HasFusedGates<Cell>::value);
};

}  // namespace recurrent
