// The examples' command-line values: a flag's value, read and checked, with an error that names
// the flag and what it got.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdio>
#include <stdexcept>
#include <string>

namespace example {

/// `v` as printf's %g writes it: 0.5, 1e+08.
inline std::string shortNumber(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%g", v);
  return buffer;
}

/// The value after flag argv[i] (advancing i past it); an error if there is none.
inline std::string flagValue(int argc, char** argv, int& i) {
  if (i + 1 >= argc) throw std::invalid_argument(std::string(argv[i]) + " needs a value");
  return argv[++i];
}

/// `text`, the value of `flag`, as a finite number in [lo, hi].
inline double parseNumber(const std::string& flag, const std::string& text, double lo, double hi) {
  std::size_t used = 0;
  double d = 0;
  try {
    d = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || !std::isfinite(d) || d < lo || d > hi) {
    throw std::invalid_argument(flag + " needs a number in [" + shortNumber(lo) + ", " +
                                shortNumber(hi) + "], got '" + text + "'");
  }
  return d;
}

/// `text`, the value of `flag`, as a whole number in [lo, hi].
inline int parseWhole(const std::string& flag, const std::string& text, int lo = 1,
                      int hi = 100000000) {
  std::size_t used = 0;
  long n = 0;
  try {
    n = std::stol(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || n < lo || n > hi) {
    throw std::invalid_argument(flag + " needs a whole number in [" + std::to_string(lo) + ", " +
                                std::to_string(hi) + "], got '" + text + "'");
  }
  return static_cast<int>(n);
}

/// The value after flag argv[i] as a finite number in [lo, hi].
inline double flagNumber(int argc, char** argv, int& i, double lo, double hi) {
  const std::string flag = argv[i];
  return parseNumber(flag, flagValue(argc, argv, i), lo, hi);
}

/// The value after flag argv[i] as a whole number in [lo, hi].
inline int flagWhole(int argc, char** argv, int& i, int lo = 1, int hi = 100000000) {
  const std::string flag = argv[i];
  return parseWhole(flag, flagValue(argc, argv, i), lo, hi);
}

}  // namespace example
