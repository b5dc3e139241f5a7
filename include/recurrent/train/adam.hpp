// recurrent — train/adam.hpp: Adam (Kingma & Ba 2015) and AdamW (Loshchilov & Hutter 2019).
#pragma once

#include <recurrent/detail/errors.hpp>
#include <recurrent/train/optimizer_state.hpp>
#include <recurrent/train/parameter_list.hpp>

#include <Eigen/Core>

#include <cmath>
#include <cstddef>

namespace recurrent {

/// The hyper-parameters shared by AdamOptions and AdamWOptions, named as torch.optim names
/// them; each setter returns the derived type, so that a chain keeps it. The values are checked
/// when an optimizer is made and at every step, not when they are set.
template <typename Derived>
class AdamOptionsBase {
 public:
  /// The learning rate.
  double lr() const { return m_lr; }
  /// Sets the learning rate (>= 0).
  Derived& lr(double value) {
    m_lr = value;
    return self();
  }
  /// The decay rate of the first moment.
  double beta1() const { return m_beta1; }
  /// The decay rate of the second moment.
  double beta2() const { return m_beta2; }
  /// Sets both decay rates (each in [0, 1)). Default (0.9, 0.999).
  Derived& betas(double beta1, double beta2) {
    m_beta1 = beta1;
    m_beta2 = beta2;
    return self();
  }
  /// The term added to √v̂ in the denominator.
  double eps() const { return m_eps; }
  /// Sets eps (>= 0). Default 1e-8.
  Derived& eps(double value) {
    m_eps = value;
    return self();
  }
  /// Adam: an L2 penalty λ p added to the gradient. AdamW: the decoupled decay p ← p(1 − lr·λ).
  double weightDecay() const { return m_weightDecay; }
  /// Sets the weight decay λ (>= 0).
  Derived& weightDecay(double value) {
    m_weightDecay = value;
    return self();
  }
  /// Whether the update uses the running maximum of v (AMSGrad, Reddi et al. 2018).
  bool amsgrad() const { return m_amsgrad; }
  /// Turns AMSGrad on or off. Default off.
  Derived& amsgrad(bool value) {
    m_amsgrad = value;
    return self();
  }
  /// Whether the optimizer maximises its objective (it steps along +g).
  bool maximize() const { return m_maximize; }
  /// Turns maximising on or off. Default off: minimise.
  Derived& maximize(bool value) {
    m_maximize = value;
    return self();
  }

  /// Throws std::invalid_argument for the values torch.optim.Adam rejects.
  void check(const char* where) const {
    if (!(m_lr >= 0)) detail::fail(where, ": lr must be >= 0, got ", m_lr);
    if (!(m_eps >= 0)) detail::fail(where, ": eps must be >= 0, got ", m_eps);
    if (!(m_beta1 >= 0 && m_beta1 < 1)) {
      detail::fail(where, ": beta1 must be in [0, 1), got ", m_beta1);
    }
    if (!(m_beta2 >= 0 && m_beta2 < 1)) {
      detail::fail(where, ": beta2 must be in [0, 1), got ", m_beta2);
    }
    if (!(m_weightDecay >= 0)) {
      detail::fail(where, ": weight_decay must be >= 0, got ", m_weightDecay);
    }
  }

 protected:
  /// The defaults of torch.optim with this learning rate and weight decay.
  AdamOptionsBase(double lr, double weightDecay) : m_lr(lr), m_weightDecay(weightDecay) {}

 private:
  Derived& self() { return static_cast<Derived&>(*this); }

  double m_lr;
  double m_beta1 = 0.9;
  double m_beta2 = 0.999;
  double m_eps = 1e-8;
  double m_weightDecay;
  bool m_amsgrad = false;
  bool m_maximize = false;
};

/// Hyper-parameters of Adam, set in a chain as in libtorch:
/// `AdamOptions(1e-3).betas(0.9, 0.999).eps(1e-8)`. PyTorch's defaults; weight decay 0.
class AdamOptions : public AdamOptionsBase<AdamOptions> {
 public:
  /// Learning rate `lr`; betas (0.9, 0.999), eps 1e-8, weight decay 0, no AMSGrad, minimise.
  explicit AdamOptions(double lr = 1e-3) : AdamOptionsBase(lr, 0.0) {}
};

/// Hyper-parameters of AdamW: as AdamOptions, but weight decay starts at 0.01 (PyTorch's
/// default for AdamW).
class AdamWOptions : public AdamOptionsBase<AdamWOptions> {
 public:
  /// Learning rate `lr`; betas (0.9, 0.999), eps 1e-8, weight decay 0.01, no AMSGrad, minimise.
  explicit AdamWOptions(double lr = 1e-3) : AdamOptionsBase(lr, 0.01) {}
};

/// The update shared by Adam and AdamW. For each parameter p with gradient g, at step t ≥ 1:
///
///     g ← −g                                   (maximize)
///     p ← p (1 − lr λ)                         (AdamW: decoupled weight decay)
///     g ← g + λ p                              (Adam: L2 weight decay)
///     m ← β1 m + (1 − β1) g                    first moment
///     v ← β2 v + (1 − β2) g²                   second moment
///     v̂ ← max(v̂, v) (AMSGrad) or v
///     p ← p − (lr / (1 − β1ᵗ)) · m / (√v̂ / √(1 − β2ᵗ) + ε)
///
/// written in the order of torch.optim's single-tensor implementation, so that float runs
/// agree with PyTorch to rounding.
template <typename Scalar, bool Decoupled, typename Options>
class AdamBase {
 public:
  /// The hyper-parameters, to read or change between steps (a step checks them again).
  Options& options() { return m_options; }
  /// The same, read-only.
  const Options& options() const { return m_options; }
  /// The tensors the optimizer steps.
  const ParameterList<Scalar>& parameters() const { return m_params; }
  /// The steps taken so far (t of the bias corrections is steps() + 1 at the next step).
  long steps() const { return m_state.steps(); }

  /// One step on every parameter from its current gradient. Checks every shape and option
  /// first: when it throws, no parameter has changed.
  void step() {
    m_options.check(m_stepName);
    m_state.check(m_params, m_stepName);
    const double t = static_cast<double>(m_state.steps() + 1);
    const double lr = m_options.lr();
    const double decay = m_options.weightDecay();
    const auto beta1 = static_cast<Scalar>(m_options.beta1());
    const auto beta2 = static_cast<Scalar>(m_options.beta2());
    const double correction1 = 1.0 - std::pow(m_options.beta1(), t);
    const double correction2 = 1.0 - std::pow(m_options.beta2(), t);
    const auto stepSize = static_cast<Scalar>(lr / correction1);
    const auto correction2Sqrt = static_cast<Scalar>(std::sqrt(correction2));
    const auto eps = static_cast<Scalar>(m_options.eps());
    // One chunk at a time, each pass reading what the last left in L1 (OptimizerState).
    m_state.forEachChunk(m_params, m_options.maximize(),
                         [&](std::size_t k, Eigen::Index begin, auto p, auto g) {
                           const Eigen::Index n = p.size();
                           auto m = m_state.buffer(k, 0).segment(begin, n);
                           auto v = m_state.buffer(k, 1).segment(begin, n);
                           if (decay != 0) {
                             if constexpr (Decoupled) {
                               p *= static_cast<Scalar>(1.0 - lr * decay);
                             } else {
                               g += static_cast<Scalar>(decay) * p;
                             }
                           }
                           m = m * beta1 + (Scalar(1) - beta1) * g;
                           v = v * beta2 + (Scalar(1) - beta2) * g * g;
                           if (m_options.amsgrad()) {
                             auto vMax = m_state.buffer(k, 2).segment(begin, n);
                             vMax = vMax.max(v);
                             p -= stepSize * (m / (vMax.sqrt() / correction2Sqrt + eps));
                           } else {
                             p -= stepSize * (m / (v.sqrt() / correction2Sqrt + eps));
                           }
                         });
    m_state.countStep();
  }

 protected:
  /// An optimizer of `params`, moments zero; `name` and `stepName` name the entry points in
  /// error messages. Throws std::invalid_argument for an option torch.optim rejects.
  AdamBase(const ParameterList<Scalar>& params, const Options& options, const char* name,
           const char* stepName)
      : m_params(params), m_options(options), m_stepName(stepName) {
    m_options.check(name);
    m_state.resize(params);
  }

 private:
  ParameterList<Scalar> m_params;
  Options m_options;
  const char* m_stepName;
  detail::OptimizerState<Scalar, 3> m_state;  // m, v, max v (AMSGrad)
};

/// Adam<Scalar>: torch.optim.Adam, step for step (Kingma & Ba, "Adam: A Method for Stochastic
/// Optimization", ICLR 2015). Weight decay, if set, is an L2 penalty added to the gradient.
/// See AdamBase for the update.
template <typename Scalar>
class Adam : public AdamBase<Scalar, false, AdamOptions> {
 public:
  /// An optimizer of the tensors of `params` (which it refers to, as the list does), moments
  /// zero. Throws std::invalid_argument for an option torch.optim.Adam rejects.
  explicit Adam(const ParameterList<Scalar>& params, const AdamOptions& options = AdamOptions())
      : AdamBase<Scalar, false, AdamOptions>(params, options, "Adam", "Adam::step") {}
};

/// AdamW<Scalar>: torch.optim.AdamW, step for step (Loshchilov & Hutter, "Decoupled Weight
/// Decay Regularization", ICLR 2019): the decay p ← p(1 − lr·λ) acts on the parameter, not
/// through the gradient. Weight decay defaults to 0.01, as in PyTorch.
template <typename Scalar>
class AdamW : public AdamBase<Scalar, true, AdamWOptions> {
 public:
  /// An optimizer of the tensors of `params` (which it refers to, as the list does), moments
  /// zero. Throws std::invalid_argument for an option torch.optim.AdamW rejects.
  explicit AdamW(const ParameterList<Scalar>& params, const AdamWOptions& options = AdamWOptions())
      : AdamBase<Scalar, true, AdamWOptions>(params, options, "AdamW", "AdamW::step") {}
};

}  // namespace recurrent
