// recurrent — train/sgd.hpp: stochastic gradient descent with momentum, Nesterov and weight decay.
#pragma once

#include <recurrent/detail/errors.hpp>
#include <recurrent/train/optimizer_state.hpp>
#include <recurrent/train/parameter_list.hpp>

#include <Eigen/Core>

#include <cstddef>
#include <vector>

namespace recurrent {

/// Hyper-parameters of SGD, set in a chain as in libtorch:
/// `SGDOptions(0.1).momentum(0.9).nesterov(true)`.
class SGDOptions {
 public:
  /// Learning rate `lr`; momentum, dampening and weight decay 0, no Nesterov, minimise.
  explicit SGDOptions(double lr) : m_lr(lr) {}

  /// The learning rate.
  double lr() const { return m_lr; }
  /// Sets the learning rate (>= 0).
  SGDOptions& lr(double value) {
    m_lr = value;
    return *this;
  }
  /// The momentum factor μ (0: none).
  double momentum() const { return m_momentum; }
  /// Sets μ (>= 0).
  SGDOptions& momentum(double value) {
    m_momentum = value;
    return *this;
  }
  /// The dampening τ of the momentum.
  double dampening() const { return m_dampening; }
  /// Sets τ (0 with Nesterov).
  SGDOptions& dampening(double value) {
    m_dampening = value;
    return *this;
  }
  /// The weight decay λ, an L2 penalty λ p added to the gradient.
  double weightDecay() const { return m_weightDecay; }
  /// Sets λ (>= 0).
  SGDOptions& weightDecay(double value) {
    m_weightDecay = value;
    return *this;
  }
  /// Whether the momentum is Nesterov's.
  bool nesterov() const { return m_nesterov; }
  /// Turns Nesterov momentum on or off (on needs μ > 0 and τ = 0).
  SGDOptions& nesterov(bool value) {
    m_nesterov = value;
    return *this;
  }
  /// Whether the step ascends the gradient (maximises the objective).
  bool maximize() const { return m_maximize; }
  /// Sets whether the step ascends the gradient (true: maximise).
  SGDOptions& maximize(bool value) {
    m_maximize = value;
    return *this;
  }

  /// Throws std::invalid_argument for the values torch.optim.SGD rejects.
  void check(const char* where) const {
    if (!(m_lr >= 0)) detail::fail(where, ": lr must be >= 0, got ", m_lr);
    if (!(m_momentum >= 0)) detail::fail(where, ": momentum must be >= 0, got ", m_momentum);
    if (!(m_weightDecay >= 0)) {
      detail::fail(where, ": weight_decay must be >= 0, got ", m_weightDecay);
    }
    if (m_nesterov && (m_momentum <= 0 || m_dampening != 0)) {
      detail::fail(where, ": nesterov needs momentum > 0 and dampening = 0, got momentum ",
                   m_momentum, " and dampening ", m_dampening);
    }
  }

 private:
  double m_lr;
  double m_momentum = 0;
  double m_dampening = 0;
  double m_weightDecay = 0;
  bool m_nesterov = false;
  bool m_maximize = false;
};

/// SGD<Scalar>: torch.optim.SGD, step for step. For each parameter p with gradient g:
///
///     g ← −g                                  (maximize)
///     g ← g + λ p                             (weight decay λ)
///     b ← g  at the first step,  b ← μ b + (1 − τ) g  after      (momentum μ, dampening τ)
///     g ← g + μ b  (Nesterov)   or   g ← b
///     p ← p − lr · g
///
/// Nesterov momentum in this form is Sutskever et al. (2013), as PyTorch writes it.
template <typename Scalar_>
class SGD {
 public:
  using Scalar = Scalar_;  ///< float or double

  /// An optimizer of the tensors of `params` (which it refers to, as the list does), momentum
  /// buffers zero. Throws std::invalid_argument for an option torch.optim.SGD rejects.
  SGD(const ParameterList<Scalar>& params, const SGDOptions& options)
      : m_params(params), m_options(options) {
    m_options.check("SGD");
    m_state.resize(params);
  }

  /// The hyper-parameters, which may be changed between steps (step() checks them).
  SGDOptions& options() { return m_options; }
  /// The same, read-only.
  const SGDOptions& options() const { return m_options; }
  /// The tensors it updates.
  const ParameterList<Scalar>& parameters() const { return m_params; }

  /// One step on every parameter from its current gradient. Checks every shape and option
  /// first: when it throws, no parameter has changed.
  void step() {
    const char* where = "SGD::step";
    m_options.check(where);
    m_state.check(m_params, where);
    const Scalar lr = static_cast<Scalar>(m_options.lr());
    const Scalar mu = static_cast<Scalar>(m_options.momentum());
    const Scalar dampening = static_cast<Scalar>(1.0 - m_options.dampening());
    const Scalar decay = static_cast<Scalar>(m_options.weightDecay());
    const bool first = m_state.steps() == 0;
    // One chunk at a time, each pass reading what the last left in L1 (OptimizerState); d is
    // the step direction.
    m_state.forEachChunk(m_params, m_options.maximize(),
                         [&](std::size_t k, Eigen::Index begin, auto p, auto d) {
                           if (m_options.weightDecay() != 0) d += decay * p;
                           if (m_options.momentum() != 0) {
                             auto b = m_state.buffer(k, 0).segment(begin, p.size());
                             if (first) {
                               b = d;
                             } else {
                               b = mu * b + dampening * d;
                             }
                             if (m_options.nesterov()) {
                               d += mu * b;
                             } else {
                               d = b;
                             }
                           }
                           p -= lr * d;
                         });
    m_state.countStep();
  }

  /// Steps taken so far.
  long steps() const { return m_state.steps(); }

 private:
  ParameterList<Scalar> m_params;
  SGDOptions m_options;
  detail::OptimizerState<Scalar, 1> m_state;  // momentum buffer
};

}  // namespace recurrent
