// recurrent — errors.hpp: the one way this library reports caller errors.
#pragma once

#include <Eigen/Core>

#include <sstream>
#include <stdexcept>
#include <string>

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

/// Throws unless `rows x cols` equals `expectedRows x expectedCols`.
/// `where` names the entry point, `what` the argument.
inline void checkShape(const char* where, const char* what, Eigen::Index rows, Eigen::Index cols,
                       Eigen::Index expectedRows, Eigen::Index expectedCols) {
  if (rows != expectedRows || cols != expectedCols) {
    fail(where, ": ", what, " must be ", expectedRows, " x ", expectedCols, ", got ", rows, " x ",
         cols);
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

}  // namespace detail
}  // namespace recurrent
