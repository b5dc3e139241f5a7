// The data of the sequence predictor: the Mackey–Glass series, or a column of a CSV file.
#pragma once

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace example {

/// The Mackey–Glass delay differential equation (Mackey & Glass, "Oscillation and chaos in
/// physiological control systems", Science 1977):
///
///     dx/dt = β x(t − τ) / (1 + x(t − τ)ⁿ) − γ x(t),   β = 0.2, γ = 0.1, n = 10
///
/// chaotic for τ = 17, the classic benchmark of time-series prediction. Integrated with RK4 at
/// dt = 0.1 from x = 1.2 (history constant), the delayed value at half steps interpolated
/// linearly; sampled every time unit after `discard` units of transient.
inline std::vector<double> mackeyGlass(int samples, double tau = 17.0, int discard = 500) {
  const double dt = 0.1;
  const int perSample = 10;  // 1 time unit / dt
  const auto history = static_cast<int>(std::lround(tau / dt));
  const auto f = [](double x, double delayed) {
    return 0.2 * delayed / (1.0 + std::pow(delayed, 10.0)) - 0.1 * x;
  };
  const std::size_t total =
      static_cast<std::size_t>(samples + discard) * perSample + static_cast<std::size_t>(history);
  std::vector<double> x(total + 1, 1.2);
  for (std::size_t k = static_cast<std::size_t>(history); k < total; ++k) {
    const double d0 = x[k - static_cast<std::size_t>(history)];
    const double d1 = x[k - static_cast<std::size_t>(history) + 1];
    const double dm = 0.5 * (d0 + d1);
    const double k1 = f(x[k], d0);
    const double k2 = f(x[k] + 0.5 * dt * k1, dm);
    const double k3 = f(x[k] + 0.5 * dt * k2, dm);
    const double k4 = f(x[k] + dt * k3, d1);
    x[k + 1] = x[k] + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4);
  }
  std::vector<double> out(static_cast<std::size_t>(samples));
  for (int s = 0; s < samples; ++s) {
    out[static_cast<std::size_t>(s)] =
        x[static_cast<std::size_t>(history + (discard + s) * perSample)];
  }
  return out;
}

namespace detail {

inline std::string trim(const std::string& s) {
  const auto begin = s.find_first_not_of(" \t\r");
  if (begin == std::string::npos) return "";
  const auto end = s.find_last_not_of(" \t\r");
  std::string t = s.substr(begin, end - begin + 1);
  if (t.size() >= 2 && t.front() == '"' && t.back() == '"') t = t.substr(1, t.size() - 2);
  return t;
}

inline std::vector<std::string> splitFields(const std::string& line) {
  std::vector<std::string> fields;
  std::string::size_type start = 0;
  while (true) {
    const auto comma = line.find(',', start);
    fields.push_back(
        trim(line.substr(start, comma == std::string::npos ? std::string::npos : comma - start)));
    if (comma == std::string::npos) return fields;
    start = comma + 1;
  }
}

}  // namespace detail

/// The values of column `column` of the CSV file `path` (a header line of names, then one
/// record a line; blank lines are skipped). Throws std::runtime_error with the file, the line
/// number and the problem for anything else.
inline std::vector<double> readCsvColumn(const std::string& path, const std::string& column) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot open the file");
  std::string line;
  int lineNumber = 0;
  std::vector<std::string> names;
  while (names.empty() && std::getline(in, line)) {
    ++lineNumber;
    if (!detail::trim(line).empty()) names = detail::splitFields(line);
  }
  if (names.empty()) throw std::runtime_error(path + ": the file is empty (no header line)");
  std::size_t index = names.size();
  for (std::size_t k = 0; k < names.size(); ++k) {
    if (names[k] == column) index = k;
  }
  if (index == names.size()) {
    std::string list;
    for (const auto& n : names) list += (list.empty() ? "" : ", ") + ("'" + n + "'");
    throw std::runtime_error(path + ":" + std::to_string(lineNumber) + ": no column '" + column +
                             "' in the header (it has " + list + ")");
  }
  std::vector<double> values;
  while (std::getline(in, line)) {
    ++lineNumber;
    if (detail::trim(line).empty()) continue;
    const std::vector<std::string> fields = detail::splitFields(line);
    const std::string where = path + ":" + std::to_string(lineNumber) + ": ";
    if (fields.size() != names.size()) {
      throw std::runtime_error(where + "expected " + std::to_string(names.size()) +
                               " fields as in the header, got " + std::to_string(fields.size()));
    }
    const std::string& field = fields[index];
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(field.c_str(), &end);
    if (field.empty() || end != field.c_str() + field.size() || errno == ERANGE ||
        !std::isfinite(v)) {
      throw std::runtime_error(where + "column '" + column + "' holds '" + field +
                               "', not a finite number");
    }
    values.push_back(v);
  }
  return values;
}

}  // namespace example
