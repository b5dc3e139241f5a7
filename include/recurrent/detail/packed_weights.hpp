// recurrent — detail/packed_weights.hpp: a cell's weights, packed for the batched kernel.
//
// Sequence packs them once per call, Stream once when it is made and at refresh(); a step then
// multiplies by them through its StepContext (cells/step.hpp) without packing anything but its
// state. Forward needs W_ih and W_hh, backward their transposes; an LSTM that projects its h
// also has W_hr (P × H), or its transpose.
#pragma once

#include <recurrent/detail/packed_matrix.hpp>
#include <recurrent/detail/reduced_matrix.hpp>
#include <recurrent/precision.hpp>

#include <Eigen/Core>

#include <type_traits>
#include <utility>

namespace recurrent {
namespace detail {

/// Whether a cell's parameters include a projection W_hr (an LSTM's proj_size).
template <typename Parameters, typename = void>
struct HasProjection : std::false_type {};
template <typename Parameters>
struct HasProjection<Parameters, std::void_t<decltype(std::declval<Parameters&>().weight_hr)>>
    : std::true_type {};

template <typename Scalar>
struct PackedWeights {
  PackedMatrix<Scalar> ih, hh, hr;     ///< forward: W_ih, W_hh, W_hr (packed only if it projects)
  PackedMatrix<Scalar> ihT, hhT, hrT;  ///< backward: their transposes
  /// Inference in int8 or bf16: W_ih and W_hh in that precision (W_hr stays in `hr`).
  ReducedMatrix ihReduced, hhReduced;
  /// The precisions of the last packForward: of W_hh·h (Full uses hh, the others hhReduced) and
  /// of W_ih·x (Full uses ih, the others ihReduced).
  Precision precision = Precision::Full, inputPrecision = Precision::Full;

  /// Packs W_ih and W_hh (and W_hr) for forward. The gate blocks are packed apart, so that a
  /// thread's units are whole panels in every gate; with `dense` (one thread, and a cell whose
  /// every recurrent product covers all gates) all gates are one block, and no panel is padded at
  /// a gate's end.
  /// `hhOverride` replaces the cell's W_hh where given (weight drop: M ⊙ W_hh, the same shape).
  ///
  /// With a reduced `reduced` precision, W_hh is packed in it instead, always by gate blocks
  /// (reduced_matrix.hpp), and W_ih in `input` (Full or `reduced`); W_hr as above.
  template <typename Cell, typename Matrix = typename Cell::Matrix>
  void packForward(const Cell& cell, bool dense, Precision reduced = Precision::Full,
                   Precision input = Precision::Full, const Matrix* hhOverride = nullptr) {
    const auto& p = cell.parameters();
    const Matrix& whh = hhOverride != nullptr ? *hhOverride : p.weight_hh;
    const Index G = Cell::kGates, H = cell.hiddenSize();
    precision = reduced;
    inputPrecision = input;
    const auto wih = viewOf<const Scalar>(p.weight_ih.data(), p.weight_ih.outerStride(), H);
    const auto whhView = viewOf<const Scalar>(whh.data(), whh.outerStride(), H);
    const Blocks gated = dense ? Blocks{1, G * H} : Blocks{G, H};
    if (input != Precision::Full) {
      ihReduced.pack(wih, Blocks{G, H}, cell.inputSize(), input);
    } else {
      ih.pack(wih, gated, Blocks{1, cell.inputSize()});
    }
    if (reduced != Precision::Full) {
      hhReduced.pack(whhView, Blocks{G, H}, whh.cols(), reduced);
    } else {
      hh.pack(whhView, gated, Blocks{1, whh.cols()});
    }
    if constexpr (HasProjection<typename Cell::Parameters>::value) {
      const auto& w = p.weight_hr;
      if (cell.outputSize() != cell.hiddenSize()) {
        hr.pack(viewOf<const Scalar>(w.data(), w.outerStride()), Blocks{1, w.rows()},
                Blocks{1, w.cols()});
      }
    }
  }

  /// Packs W_ihᵀ and W_hhᵀ (and W_hrᵀ) for backward. Their depth is cut at the gates whatever the
  /// threads: the depth's chunks set the order of each sum.
  /// `hhOverride` replaces the cell's W_hh where given, as in packForward().
  template <typename Cell, typename Matrix = typename Cell::Matrix>
  void packBackward(const Cell& cell, const Matrix* hhOverride = nullptr) {
    const auto& p = cell.parameters();
    const Matrix& whh = hhOverride != nullptr ? *hhOverride : p.weight_hh;
    const Blocks gated{Cell::kGates, cell.hiddenSize()};
    ihT.pack(transposedViewOf<const Scalar>(p.weight_ih.data(), p.weight_ih.outerStride()),
             Blocks{1, cell.inputSize()}, gated);
    hhT.pack(transposedViewOf<const Scalar>(whh.data(), whh.outerStride()), Blocks{1, whh.cols()},
             gated);
    if constexpr (HasProjection<typename Cell::Parameters>::value) {
      const auto& w = p.weight_hr;
      if (cell.outputSize() != cell.hiddenSize()) {
        hrT.pack(transposedViewOf<const Scalar>(w.data(), w.outerStride()), Blocks{1, w.cols()},
                 Blocks{1, w.rows()});
      }
    }
  }
};

}  // namespace detail
}  // namespace recurrent
