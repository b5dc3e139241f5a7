// recurrent — train/loss.hpp: losses over the Sequence layout that honour sequence lengths.
#pragma once

#include <recurrent/detail/errors.hpp>

#include <Eigen/Core>

#include <cmath>
#include <cstddef>
#include <vector>

namespace recurrent {

/// How a loss combines its terms (PyTorch's `reduction`).
enum class Reduction {
  Mean,  ///< the sum divided by the number of terms (PyTorch's default)
  Sum,   ///< the sum
};

namespace detail {

/// Checks a (rows × T·B) prediction against B lengths and returns T.
inline Eigen::Index checkLengths(const char* where, Eigen::Index rows, Eigen::Index cols,
                                 const std::vector<int>& lengths) {
  if (rows < 1) fail(where, ": prediction must have at least 1 row, got 0");
  return checkColumns(where, "prediction", cols, lengths);
}

/// Calls f(column) for every real (not padding) column of the T·B layout: step t of
/// sequence b is column t·B + b and is real when t < lengths[b].
template <typename F>
void forEachRealColumn(Eigen::Index T, const std::vector<int>& lengths, F&& f) {
  const auto B = static_cast<Eigen::Index>(lengths.size());
  for (Eigen::Index t = 0; t < T; ++t) {
    for (Eigen::Index b = 0; b < B; ++b) {
      if (t < lengths[static_cast<std::size_t>(b)]) f(t * B + b);
    }
  }
}

inline Eigen::Index realColumns(const std::vector<int>& lengths) {
  Eigen::Index n = 0;
  for (int len : lengths) n += len;
  return n;
}

template <typename DerivedP, typename DerivedT, typename Matrix>
typename DerivedP::Scalar mse(const Eigen::MatrixBase<DerivedP>& prediction,
                              const Eigen::MatrixBase<DerivedT>& target,
                              const std::vector<int>& lengths, Reduction reduction,
                              Matrix* gradient) {
  using Scalar = typename DerivedP::Scalar;
  const char* where = "mseLoss";
  const Eigen::Index T = checkLengths(where, prediction.rows(), prediction.cols(), lengths);
  checkShape(where, "target", target.rows(), target.cols(), prediction.rows(), prediction.cols());
  const double count = static_cast<double>(prediction.rows() * realColumns(lengths));
  const double scale = reduction == Reduction::Mean ? 1.0 / count : 1.0;
  // The sum and the gradient are separate passes, so the value is computed by the same code
  // (and rounded the same way) whether or not a gradient is asked for.
  double sum = 0;
  forEachRealColumn(T, lengths, [&](Eigen::Index col) {
    for (Eigen::Index r = 0; r < prediction.rows(); ++r) {
      const double e =
          static_cast<double>(prediction(r, col)) - static_cast<double>(target(r, col));
      sum += e * e;
    }
  });
  if (gradient != nullptr) {
    gradient->setZero(prediction.rows(), prediction.cols());
    forEachRealColumn(T, lengths, [&](Eigen::Index col) {
      for (Eigen::Index r = 0; r < prediction.rows(); ++r) {
        const double e =
            static_cast<double>(prediction(r, col)) - static_cast<double>(target(r, col));
        (*gradient)(r, col) = static_cast<Scalar>(2.0 * scale * e);
      }
    });
  }
  return static_cast<Scalar>(sum * scale);
}

template <typename Derived, typename Matrix>
typename Derived::Scalar crossEntropy(const Eigen::MatrixBase<Derived>& logits,
                                      const std::vector<int>& targets,
                                      const std::vector<int>& lengths, Reduction reduction,
                                      Matrix* gradient) {
  using Scalar = typename Derived::Scalar;
  const char* where = "crossEntropyLoss";
  const Eigen::Index T = checkLengths(where, logits.rows(), logits.cols(), lengths);
  const Eigen::Index C = logits.rows();
  if (static_cast<Eigen::Index>(targets.size()) != logits.cols()) {
    fail(where, ": targets must hold one class per column (", logits.cols(), "), got ",
         targets.size());
  }
  forEachRealColumn(T, lengths, [&](Eigen::Index col) {
    const int k = targets[static_cast<std::size_t>(col)];
    if (k < 0 || k >= C) {
      fail(where, ": targets[", col, "] must be a class in 0..", C - 1, " (logits rows - 1), got ",
           k);
    }
  });
  const double count = static_cast<double>(realColumns(lengths));
  const double scale = reduction == Reduction::Mean ? 1.0 / count : 1.0;
  // -log softmax(z)_k = logsumexp(z) - z_k, with the maximum taken out for stability.
  const auto logSumExp = [&](Eigen::Index col) {
    const double zMax = static_cast<double>(logits.col(col).maxCoeff());
    double sumExp = 0;
    for (Eigen::Index r = 0; r < C; ++r) {
      sumExp += std::exp(static_cast<double>(logits(r, col)) - zMax);
    }
    return zMax + std::log(sumExp);
  };
  const auto classOf = [&](Eigen::Index col) {
    return static_cast<Eigen::Index>(targets[static_cast<std::size_t>(col)]);
  };
  // The value and the gradient are separate passes, so the value is computed by the same code
  // whether or not a gradient is asked for.
  double sum = 0;
  forEachRealColumn(T, lengths, [&](Eigen::Index col) {
    sum += logSumExp(col) - static_cast<double>(logits(classOf(col), col));
  });
  if (gradient != nullptr) {
    gradient->setZero(C, logits.cols());
    forEachRealColumn(T, lengths, [&](Eigen::Index col) {
      const double lse = logSumExp(col);
      const Eigen::Index k = classOf(col);
      for (Eigen::Index r = 0; r < C; ++r) {
        const double p = std::exp(static_cast<double>(logits(r, col)) - lse);
        (*gradient)(r, col) = static_cast<Scalar>(scale * (p - (r == k ? 1.0 : 0.0)));
      }
    });
  }
  return static_cast<Scalar>(sum * scale);
}

}  // namespace detail

/// Mean squared error over the real steps of a batch in the Sequence layout
/// (torch.nn.functional.mse_loss on the packed sequence):
///
///     L = (1/M) Σ_{b, t < lengths[b], r} (y_{r,tB+b} − target_{r,tB+b})²,   M = rows · Σ lengths
///
/// (M = 1 with Reduction::Sum). `prediction` and `target` are R × (T·B); padding (t ≥
/// lengths[b]) contributes nothing, whatever it holds. Sums in double.
template <typename DerivedP, typename DerivedT>
typename DerivedP::Scalar mseLoss(const Eigen::MatrixBase<DerivedP>& prediction,
                                  const Eigen::MatrixBase<DerivedT>& target,
                                  const std::vector<int>& lengths,
                                  Reduction reduction = Reduction::Mean) {
  using Matrix = Eigen::Matrix<typename DerivedP::Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  return detail::mse(prediction, target, lengths, reduction, static_cast<Matrix*>(nullptr));
}

/// The same, and writes dL/dprediction = (2/M)(y − target) into `gradient` (resized to the
/// prediction's shape; exactly zero in padding).
template <typename DerivedP, typename DerivedT>
typename DerivedP::Scalar mseLoss(
    const Eigen::MatrixBase<DerivedP>& prediction, const Eigen::MatrixBase<DerivedT>& target,
    const std::vector<int>& lengths,
    Eigen::Matrix<typename DerivedP::Scalar, Eigen::Dynamic, Eigen::Dynamic>& gradient,
    Reduction reduction = Reduction::Mean) {
  return detail::mse(prediction, target, lengths, reduction, &gradient);
}

/// Softmax cross-entropy over integer class targets, over the real steps of a batch in the
/// Sequence layout (torch.nn.functional.cross_entropy on the packed sequence):
///
///     L = (1/N) Σ_{b, t < lengths[b]} [ log Σ_r exp z_{r,c} − z_{k_c, c} ],  c = tB + b,
///     N = Σ lengths (N = 1 with Reduction::Sum)
///
/// `logits` is C × (T·B) (C classes), `targets` holds one class in 0..C−1 per column; the
/// targets of padding columns are ignored (any value, e.g. −1). Computed with the maximum
/// taken out of the exponent, in double.
template <typename Derived>
typename Derived::Scalar crossEntropyLoss(const Eigen::MatrixBase<Derived>& logits,
                                          const std::vector<int>& targets,
                                          const std::vector<int>& lengths,
                                          Reduction reduction = Reduction::Mean) {
  using Matrix = Eigen::Matrix<typename Derived::Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  return detail::crossEntropy(logits, targets, lengths, reduction, static_cast<Matrix*>(nullptr));
}

/// The same, and writes dL/dz = (softmax(z) − onehot(k)) / N into `gradient` (resized to C ×
/// (T·B); exactly zero in padding).
template <typename Derived>
typename Derived::Scalar crossEntropyLoss(
    const Eigen::MatrixBase<Derived>& logits, const std::vector<int>& targets,
    const std::vector<int>& lengths,
    Eigen::Matrix<typename Derived::Scalar, Eigen::Dynamic, Eigen::Dynamic>& gradient,
    Reduction reduction = Reduction::Mean) {
  return detail::crossEntropy(logits, targets, lengths, reduction, &gradient);
}

}  // namespace recurrent
