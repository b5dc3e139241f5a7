// recurrent — layers/regularization.hpp: dropout across time, zoneout and weight drop, the
// options of Sequence (and, through it, of Stack) that regularise a recurrent layer in training.
//
// A cell keeps nothing per run, so the masks belong to the driver: Sequence draws them at each
// training forward() from its own seeded generator, keeps them for backward() and shows them
// (Sequence::masks()); a test can give them instead (Sequence::setMasks()). infer() uses none:
// dropout and weight drop are off, zoneout takes its expectation.
#pragma once

#include <recurrent/detail/errors.hpp>
#include <recurrent/detail/schedule.hpp>
#include <recurrent/train/dropout.hpp>

#include <Eigen/Core>

#include <cmath>
#include <cstdint>

namespace recurrent {

/// The regularisation of a recurrent layer, set in a chain:
/// `Regularization().inputDropout(0.2).recurrentDropout(0.3).zoneout(0.1, 0.05).weightDrop(0.5)`.
/// Every rate is a probability in [0, 1); 0 (the default) is off.
///
///   inputDropout p_x      variational dropout on x (Gal & Ghahramani 2016; Keras's `dropout`):
///                         x_t ← m_x ⊙ x_t, one inverted-dropout mask m_x (I × B) per sequence
///                         for the whole call
///   recurrentDropout p_h  variational dropout on h_{t−1} as the gates read it (Keras's
///                         `recurrent_dropout`): every recurrent product W_hh h_{t−1} becomes
///                         W_hh (m_h ⊙ h_{t−1}), one mask m_h (R × B) per sequence for the call;
///                         the rest of the step (a GRU's z ⊙ h_{t−1}) sees h_{t−1} itself
///   zoneout z_h, z_c      zoneout (Krueger et al. 2017): h_t = d ⊙ h_{t−1} + (1 − d) ⊙ h̃_t with
///                         d ∈ {0, 1} drawn afresh every step, 1 with probability z_h (in
///                         steps of 2⁻³²; the same for c with z_c), h̃_t the cell's own
///                         step. Inference uses the
///                         expectation h_t = z_h h_{t−1} + (1 − z_h) h̃_t
///   weightDrop p_w        DropConnect on W_hh (Merity et al. 2017): W_hh ← M ⊙ W_hh with one
///                         inverted-dropout mask M per forward call
///
/// The dropout masks hold 0 or 1/(1 − p), so that their expectation is 1 and inference uses
/// none.
class Regularization {
 public:
  /// Sets p_x, the dropout rate of the input.
  Regularization& inputDropout(double p) {
    m_input = checked("Regularization::inputDropout", p);
    return *this;
  }
  /// Sets p_h, the dropout rate of h_{t−1} as the gates read it.
  Regularization& recurrentDropout(double p) {
    m_recurrent = checked("Regularization::recurrentDropout", p);
    return *this;
  }
  /// Sets z_h and z_c, the zoneout rates of h and of c (an LSTM's; ignored without one).
  Regularization& zoneout(double h, double c = 0.0) {
    m_zoneoutH = checked("Regularization::zoneout", h);
    m_zoneoutC = checked("Regularization::zoneout", c);
    return *this;
  }
  /// Sets p_w, the DropConnect rate of W_hh.
  Regularization& weightDrop(double p) {
    m_weight = checked("Regularization::weightDrop", p);
    return *this;
  }

  double inputDropout() const { return m_input; }          ///< p_x
  double recurrentDropout() const { return m_recurrent; }  ///< p_h
  double zoneoutH() const { return m_zoneoutH; }           ///< z_h
  double zoneoutC() const { return m_zoneoutC; }           ///< z_c
  double weightDrop() const { return m_weight; }           ///< p_w
  /// Whether any rate is above zero.
  bool any() const {
    return m_input > 0 || m_recurrent > 0 || m_zoneoutH > 0 || m_zoneoutC > 0 || m_weight > 0;
  }

 private:
  static double checked(const char* where, double p) {
    if (!(p >= 0.0 && p < 1.0)) detail::fail(where, ": a rate must be in [0, 1), got ", p);
    return p;
  }
  double m_input = 0, m_recurrent = 0, m_zoneoutH = 0, m_zoneoutC = 0, m_weight = 0;
};

/// The masks of one training forward, in the caller's layout (B sequences, T steps, columns
/// time-major as x and y). A mask that is off is 0 × 0.
template <typename Scalar>
struct RecurrentMasks {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;  ///< dynamic matrix
  Matrix input;      ///< I × B       m_x: 0 or 1/(1 − p_x)
  Matrix recurrent;  ///< R × B       m_h: 0 or 1/(1 − p_h)
  Matrix zoneoutH;   ///< R × (T·B)   d of h: 1 keeps h_{t−1}, 0 takes the cell's h̃_t
  Matrix zoneoutC;   ///< H × (T·B)   d of c (cells with a cell state)
  Matrix weight;     ///< G·H × R     M: 0 or 1/(1 − p_w), the shape of weight_hh
};

namespace detail {

/// What Sequence keeps for its regularisation: the options, the generator, the masks of the last
/// training forward (the caller's layout), the same in sorted order, and W_hh with its mask.
template <typename Scalar>
struct Regularizer {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using Index = Eigen::Index;

  Regularization options;
  DropoutGenerator generator{0};
  RecurrentMasks<Scalar> masks;
  bool given = false;                   // masks were set by the caller: use, do not draw
  Matrix inputSorted, recurrentSorted;  // I × B, R × B in length order
  Matrix zoneHPacked, zoneCPacked;      // R × N, H × N in packed columns
  Matrix droppedWeight;                 // M ⊙ W_hh for the call
  Matrix weightGrad;                    // the caller's dW_hh while the cell adds dL/d(M ⊙ W_hh)
  bool active = false;                  // the last forward was a training one with masks

  bool dropsInput() const { return masks.input.size() != 0; }
  bool dropsRecurrent() const { return masks.recurrent.size() != 0; }
  bool zonesH() const { return masks.zoneoutH.size() != 0; }
  bool zonesC() const { return masks.zoneoutC.size() != 0; }
  bool dropsWeight() const { return masks.weight.size() != 0; }

  /// Draws the masks of a training call (unless given), in the order weight, input, recurrent,
  /// zoneout of h, zoneout of c, each column-major.
  void draw(Index I, Index R, Index H, Index GH, Index T, Index B, bool cellState) {
    if (given) return;
    auto drawOne = [&](Matrix& m, double p, Index rows, Index cols) {
      if (p <= 0) {
        m.resize(0, 0);
        return;
      }
      m.resize(rows, cols);
      drawDropoutMask(generator, p, m);
    };
    drawOne(masks.weight, options.weightDrop(), GH, R);
    drawOne(masks.input, options.inputDropout(), I, B);
    drawOne(masks.recurrent, options.recurrentDropout(), R, B);
    auto drawZone = [&](Matrix& m, double p, Index rows) {
      if (p <= 0) {
        m.resize(0, 0);
        return;
      }
      // Two entries per 64-bit draw, each from 32 of its bits (d = 1 where bits < p · 2^32): the
      // mask of every step is by far the largest draw of a call.
      m.resize(rows, T * B);
      const auto threshold = static_cast<std::uint64_t>(std::ldexp(p, 32));
      Scalar* d = m.data();
      const Index size = m.size();
      for (Index k = 0; k < size; k += 2) {
        const std::uint64_t bits = generator();
        d[k] = (bits >> 32) < threshold ? Scalar(1) : Scalar(0);
        if (k + 1 < size) d[k + 1] = (bits & 0xffffffffull) < threshold ? Scalar(1) : Scalar(0);
      }
    };
    drawZone(masks.zoneoutH, options.zoneoutH(), R);
    drawZone(masks.zoneoutC, cellState ? options.zoneoutC() : 0.0, H);
  }

  /// The masks in the order of a schedule: per sequence sorted by length, per step packed.
  void arrange(const Schedule& plan) {
    const Index B = plan.batch();
    auto sortColumns = [&](const Matrix& in, Matrix& out) {
      if (in.size() == 0) return;
      out.resize(in.rows(), B);
      for (Index j = 0; j < B; ++j) out.col(j) = in.col(plan.order(j));
    };
    sortColumns(masks.input, inputSorted);
    sortColumns(masks.recurrent, recurrentSorted);
    auto pack = [&](const Matrix& in, Matrix& out) {
      if (in.size() == 0) return;
      out.resize(in.rows(), plan.columns());
      for (Index t = 0; t < plan.steps(); ++t) {
        for (Index j = 0; j < plan.active(t); ++j) {
          out.col(plan.offset(t) + j) = in.col(t * B + plan.order(j));
        }
      }
    };
    pack(masks.zoneoutH, zoneHPacked);
    pack(masks.zoneoutC, zoneCPacked);
  }
};

}  // namespace detail
}  // namespace recurrent
