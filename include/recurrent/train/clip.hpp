// recurrent — train/clip.hpp: gradient clipping by the global norm.
#pragma once

#include <recurrent/detail/errors.hpp>
#include <recurrent/train/parameter_list.hpp>

#include <algorithm>
#include <cmath>
#include <limits>

namespace recurrent {

/// Scales every gradient of `params` so that their global norm is at most `maxNorm`, as
/// torch.nn.utils.clip_grad_norm_ does (Pascanu, Mikolov & Bengio, "On the difficulty of
/// training recurrent neural networks", ICML 2013):
///
///     n = ‖ (‖g_1‖_p, …, ‖g_K‖_p) ‖_p        (p = ∞: the largest |entry|)
///     c = min(1, maxNorm / (n + 1e−6))
///     g_k ← c · g_k
///
/// and returns n, the norm before clipping. With `errorIfNonfinite`, a NaN or infinite norm
/// throws std::invalid_argument and leaves the gradients untouched; without it (PyTorch's
/// default) the gradients are scaled by the non-finite factor as PyTorch scales them.
template <typename Scalar>
Scalar clipGradNorm(const ParameterList<Scalar>& params, double maxNorm, double normType = 2.0,
                    bool errorIfNonfinite = false) {
  const char* where = "clipGradNorm";
  if (!(maxNorm >= 0)) detail::fail(where, ": max_norm must be >= 0, got ", maxNorm);
  if (!(normType > 0)) detail::fail(where, ": norm_type must be > 0 (or infinity), got ", normType);
  params.checkShapes(where);
  if (params.size() == 0) return Scalar(0);
  const bool inf = std::isinf(normType);
  // Each tensor's norm in Scalar, as PyTorch computes it, then the norm of those norms.
  double total = 0;
  for (const auto& e : params) {
    const auto g = e.gradient.array();
    Scalar n;
    if (inf) {
      n = g.size() > 0 ? g.abs().maxCoeff() : Scalar(0);
      total = std::max(total, static_cast<double>(n));
    } else if (normType == 2.0) {
      n = g.matrix().norm();
      total += static_cast<double>(n) * static_cast<double>(n);
    } else {
      n = static_cast<Scalar>(std::pow(g.abs().pow(static_cast<Scalar>(normType)).sum(),
                                       static_cast<Scalar>(1.0 / normType)));
      total += std::pow(static_cast<double>(n), normType);
    }
  }
  if (!inf) total = normType == 2.0 ? std::sqrt(total) : std::pow(total, 1.0 / normType);
  const auto norm = static_cast<Scalar>(total);
  if (errorIfNonfinite && !std::isfinite(norm)) {
    detail::fail(where, ": the total norm of order ", normType, " of the gradients is not finite (",
                 norm, "), so it cannot be clipped");
  }
  // min(1, c) written so that a NaN c stays NaN, as torch.clamp(c, max=1) keeps it.
  const double c = maxNorm / (static_cast<double>(norm) + 1e-6);
  const auto coefficient = static_cast<Scalar>(c > 1.0 ? 1.0 : c);
  for (const auto& e : params) e.gradient.array() *= coefficient;
  return norm;
}

}  // namespace recurrent
