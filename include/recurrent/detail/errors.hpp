// recurrent — detail/errors.hpp: the one way this library reports caller errors.
#pragma once

#include <recurrent/precision.hpp>

#include <Eigen/Core>

#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace recurrent {
namespace detail {

/// Throws std::invalid_argument whose message is the concatenation of `parts`.
template <typename... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  std::ostringstream message;
  message << "recurrent: ";
  (message << ... << parts);
  throw std::invalid_argument(message.str());
}

/// Throws unless `precision` is Precision::Full: training (forward with a tape, backward) runs in
/// the cell's Scalar only.
inline void checkTrainingPrecision(const char* where, Precision precision) {
  if (precision != Precision::Full) {
    fail(where, ": trains in full precision only, but the precision is ", precisionName(precision),
         " (setPrecision(Precision::Full) to train; ", precisionName(precision),
         " is for infer() and Stream)");
  }
}

/// Throws unless `input`, the precision of the input product W_ih·x, is `precision` (that of the
/// other products) or Precision::Full.
inline void checkInputPrecision(const char* where, Precision precision, Precision input) {
  if (input == precision || input == Precision::Full) return;
  if (precision == Precision::Full) {
    fail(where, ": the input product's precision must be full, as the other products' are, got ",
         precisionName(input));
  }
  fail(where, ": the input product's precision must be full or ", precisionName(precision),
       " (that of the other products), got ", precisionName(input));
}

/// Throws unless `rows x cols` equals `expectedRows x expectedCols`.
/// `where` names the entry point, `what` the argument.
inline void checkShape(const char* where, const char* what, Eigen::Index rows, Eigen::Index cols,
                       Eigen::Index expectedRows, Eigen::Index expectedCols) {
  if (rows != expectedRows || cols != expectedCols) {
    fail(where, ": ", what, " must be ", expectedRows, " x ", expectedCols, ", got ", rows, " x ",
         cols);
  }
}

/// Throws unless tensor `name` of `what` (a cell parameter, a gradient, ...) is rows × cols.
template <typename Tensor>
void checkTensorShape(const char* where, const char* what, const char* name, const Tensor& t,
                      Eigen::Index rows, Eigen::Index cols) {
  if (t.rows() != rows || t.cols() != cols) {
    fail(where, ": ", what, " ", name, " must be ", rows, " x ", cols, ", got ", t.rows(), " x ",
         t.cols());
  }
}

/// Returns `size` if it is at least 1, else throws naming the class and the argument.
inline Eigen::Index checkPositive(const char* where, const char* name, Eigen::Index size) {
  if (size < 1) fail(where, ": ", name, " must be at least 1, got ", size);
  return size;
}

/// The size argument of a cell with a compile-time size `fixed` (Eigen::Dynamic: none): returns
/// `size` if it is at least 1 and equals `fixed`, else throws naming both.
inline Eigen::Index checkSize(const char* where, const char* name, int fixed, Eigen::Index size) {
  if (fixed != Eigen::Dynamic && size != fixed) {
    fail(where, ": ", name, " must be ", fixed, " (the compile-time size), got ", size);
  }
  return checkPositive(where, name, size);
}

/// Checks the columns of a matrix `what` in the Sequence layout against `lengths`: T·B columns,
/// B = lengths.size() >= 1, every length in 1..T. Returns T.
inline Eigen::Index checkColumns(const char* where, const char* what, Eigen::Index cols,
                                 const std::vector<int>& lengths) {
  if (lengths.empty()) {
    fail(where, ": lengths must hold one length per sequence (B >= 1), got none");
  }
  const auto B = static_cast<Eigen::Index>(lengths.size());
  if (cols == 0 || cols % B != 0) {
    fail(where, ": ", what, " must have T·B columns with T >= 1 and B = ", B,
         " (lengths.size()), got ", cols, " columns");
  }
  const Eigen::Index T = cols / B;
  for (std::size_t b = 0; b < lengths.size(); ++b) {
    if (lengths[b] < 1 || lengths[b] > T) {
      fail(where, ": lengths[", b, "] must be in 1..", T, " (T = ", what, " columns / B), got ",
           lengths[b]);
    }
  }
  return T;
}

/// Checks an input batch in the Sequence layout: `inputSize` rows (`inputName` says whose size
/// that is) and the columns as checkColumns does. Returns T.
inline Eigen::Index checkBatch(const char* where, Eigen::Index rows, Eigen::Index cols,
                               Eigen::Index inputSize, const char* inputName,
                               const std::vector<int>& lengths) {
  if (rows != inputSize) {
    fail(where, ": input must have ", inputSize, " rows (", inputName, "), got ", rows);
  }
  return checkColumns(where, "input", cols, lengths);
}

}  // namespace detail
}  // namespace recurrent
