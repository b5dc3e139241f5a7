// recurrent — cells/layer_norm.hpp: layer normalisation of one column, forward and backward, and
// the parameters of the layer-normalised cells (cells/layernorm_lstm.hpp, layernorm_gru.hpp).
//
// LN(v) = γ ⊙ v̂ + β with v̂ = (v − mean v) · r and r = 1 / sqrt(var v + ε), the variance biased
// (divided by D) and ε = 1e-5: torch.nn.LayerNorm over the last dimension. With dy = dL/dLN(v):
//
//     dv = r · (γ⊙dy − mean(γ⊙dy) − v̂ · mean(γ⊙dy ⊙ v̂))
//     dγ += dy ⊙ v̂,   dβ += dy
#pragma once

#include <recurrent/cells/parameters.hpp>
#include <recurrent/detail/random.hpp>

#include <Eigen/Core>

#include <cmath>

namespace recurrent {

/// ε of the layer-normalised cells, torch.nn.LayerNorm's default.
inline constexpr double kLayerNormEpsilon = 1e-5;

namespace detail {

/// v̂ = (v − mean v) / sqrt(var v + ε) for the D entries of `v`, written to `vHat` (which may be
/// `v` itself). Returns r = 1 / sqrt(var v + ε), which the backward pass needs.
template <typename Scalar>
Scalar layerNormForward(const Scalar* v, Eigen::Index D, Scalar* vHat) {
  using Array = Eigen::Array<Scalar, Eigen::Dynamic, 1>;
  const Eigen::Map<const Array> in(v, D);
  Eigen::Map<Array> out(vHat, D);
  const Scalar mean = in.sum() / Scalar(D);
  const Scalar variance = (in - mean).square().sum() / Scalar(D);  // two passes: no cancellation
  const Scalar r = Scalar(1) / std::sqrt(variance + Scalar(kLayerNormEpsilon));
  out = (in - mean) * r;
  return r;
}

/// dv = r · (γ⊙dy − mean(γ⊙dy) − v̂ · mean(γ⊙dy ⊙ v̂)) for the D entries (the gradient through
/// LN(v) = γ ⊙ v̂ + β), written to `dv` (which must not be `dy`, `gamma` or `vHat`).
template <typename Scalar>
void layerNormBackward(const Scalar* gamma, const Scalar* dy, const Scalar* vHat, Scalar r,
                       Eigen::Index D, Scalar* dv) {
  using Array = Eigen::Array<Scalar, Eigen::Dynamic, 1>;
  const Eigen::Map<const Array> g(gamma, D), d(dy, D), x(vHat, D);
  const Scalar meanG = (g * d).sum() / Scalar(D);
  const Scalar meanGx = (g * d * x).sum() / Scalar(D);
  Eigen::Map<Array>(dv, D) = r * (g * d - meanG - x * meanGx);
}

/// The third layer norm of LayerNormParameters: over the cell state (the LSTM's LN_c).
template <typename Scalar, bool CellNorm>
struct CellStateNorm {};
template <typename Scalar>
struct CellStateNorm<Scalar, true> {
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  Vector layernorm_c_weight;  ///< H   γ_c
  Vector layernorm_c_bias;    ///< H   β_c
};

}  // namespace detail

/// LayerNormParameters<Scalar, G, CellNorm>: the tensors of a layer-normalised cell, in the
/// order of the state_dict of PyTorch's reference LayerNormLSTMCell:
///
///     weight_ih            G·H × I   gate blocks stacked by rows
///     weight_hh            G·H × H
///     layernorm_i.weight   G·H       γ_i    layernorm_i.bias   G·H   β_i   (over W_ih x)
///     layernorm_h.weight   G·H       γ_h    layernorm_h.bias   G·H   β_h   (over W_hh h)
///     layernorm_c.weight   H         γ_c    layernorm_c.bias   H     β_c   (CellNorm only)
///
/// There is no bias_ih or bias_hh: β_i and β_h are the biases. LayerNormLSTMParameters (G = 4,
/// with LN_c) and LayerNormGRUParameters (G = 3) name the two in use. The same type holds
/// gradients.
template <typename Scalar_, int Gates, bool CellNorm>
struct LayerNormParameters : TensorSet<LayerNormParameters<Scalar_, Gates, CellNorm>, CellSizes>,
                             detail::CellStateNorm<Scalar_, CellNorm> {
  using Scalar = Scalar_;                                                ///< float or double
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;  ///< dynamic matrix
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;               ///< dynamic vector
  static constexpr Eigen::Index kGates = Gates;                          ///< G: 4 (LSTM) or 3 (GRU)
  static constexpr bool kCellNorm = CellNorm;  ///< whether LN_c's tensors are present

  Matrix weight_ih;           ///< G·H × I
  Matrix weight_hh;           ///< G·H × H
  Vector layernorm_i_weight;  ///< G·H   γ_i
  Vector layernorm_i_bias;    ///< G·H   β_i
  Vector layernorm_h_weight;  ///< G·H   γ_h
  Vector layernorm_h_bias;    ///< G·H   β_h

  LayerNormParameters() = default;
  /// Zero tensors for a cell of `sizes` (no projection).
  explicit LayerNormParameters(const CellSizes& sizes)
      : TensorSet<LayerNormParameters<Scalar_, Gates, CellNorm>, CellSizes>(sizes) {
    this->allocate();
  }

  /// The tensor list of TensorSet.
  template <typename Self, typename F>
  static void visit(Self& self, const CellSizes& sizes, F&& f) {
    const Eigen::Index rows = Gates * sizes.hidden, one = 1;
    f("weight_ih", self.weight_ih, rows, sizes.input);
    f("weight_hh", self.weight_hh, rows, sizes.hidden);
    f("layernorm_i.weight", self.layernorm_i_weight, rows, one);
    f("layernorm_i.bias", self.layernorm_i_bias, rows, one);
    f("layernorm_h.weight", self.layernorm_h_weight, rows, one);
    f("layernorm_h.bias", self.layernorm_h_bias, rows, one);
    if constexpr (CellNorm) {
      f("layernorm_c.weight", self.layernorm_c_weight, sizes.hidden, one);
      f("layernorm_c.bias", self.layernorm_c_bias, sizes.hidden, one);
    }
  }

  /// PyTorch's initialisation of the reference cells with the weights of nn.LSTM: weight_ih, then
  /// weight_hh, from U(−bound, bound) drawn from `rng`; every γ = 1 and every β = 0 (what
  /// nn.LayerNorm starts from).
  template <typename Rng>
  void initialize(double bound, Rng& rng) {
    for (Matrix* w : {&weight_ih, &weight_hh}) {
      for (Eigen::Index k = 0; k < w->size(); ++k) {
        w->data()[k] = static_cast<Scalar>(-bound + 2.0 * bound * detail::uniform01(rng));
      }
    }
    layernorm_i_weight.setOnes();
    layernorm_i_bias.setZero();
    layernorm_h_weight.setOnes();
    layernorm_h_bias.setZero();
    if constexpr (CellNorm) {
      this->layernorm_c_weight.setOnes();
      this->layernorm_c_bias.setZero();
    }
  }
};

/// The tensors of LayerNormLSTMCell (G = 4, with LN_c).
template <typename Scalar>
using LayerNormLSTMParameters = LayerNormParameters<Scalar, 4, true>;
/// The tensors of LayerNormGRUCell (G = 3).
template <typename Scalar>
using LayerNormGRUParameters = LayerNormParameters<Scalar, 3, false>;

}  // namespace recurrent
