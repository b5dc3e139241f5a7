// The data of the sequence predictor: the Mackey–Glass series, or a column of a CSV file.
#pragma once

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
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

/// How readCsvColumns treats a gap — an empty field, or NA, N/A, NaN or null in any case.
enum class Fill {
  None,      ///< a gap is an error that names the line, the column and this option
  Linear,    ///< interpolated between the values on either side (the nearest at either end)
  Previous,  ///< the last value before it (the first one after it, for a gap at the start)
  Drop,      ///< the record is left out (every column read loses it)
};

/// `linear`, `previous` or `drop` as a Fill; anything else is an error naming --fill.
inline Fill parseFill(const std::string& name) {
  if (name == "linear") return Fill::Linear;
  if (name == "previous") return Fill::Previous;
  if (name == "drop") return Fill::Drop;
  throw std::invalid_argument("--fill must be linear, previous or drop, got '" + name + "'");
}

namespace detail {

inline bool isGap(const std::string& field) {
  std::string lower;
  for (const char c : field)
    lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower.empty() || lower == "na" || lower == "n/a" || lower == "nan" || lower == "null";
}

/// Fills the NaNs of `v` (the gaps) by `fill` (Linear or Previous).
inline void fillGaps(std::vector<double>& v, Fill fill, const std::string& what) {
  std::size_t firstValue = v.size();
  for (std::size_t k = 0; k < v.size(); ++k) {
    if (!std::isnan(v[k])) {
      firstValue = k;
      break;
    }
  }
  if (firstValue == v.size()) throw std::runtime_error(what + " has no values, only gaps");
  for (std::size_t k = 0; k < firstValue; ++k) v[k] = v[firstValue];
  std::size_t last = firstValue;  // the last value before the gap being filled
  for (std::size_t k = firstValue + 1; k < v.size(); ++k) {
    if (!std::isnan(v[k])) {
      last = k;
      continue;
    }
    std::size_t next = k;
    while (next < v.size() && std::isnan(v[next])) ++next;
    for (std::size_t j = k; j < next; ++j) {
      if (fill == Fill::Previous || next == v.size()) {
        v[j] = v[last];
      } else {
        const double w = static_cast<double>(j - last) / static_cast<double>(next - last);
        v[j] = (1 - w) * v[last] + w * v[next];
      }
    }
    k = next - 1;
  }
}

}  // namespace detail

/// The values of the columns `columns` of the CSV file `path` (a header line of names, then one
/// record a line; blank lines are skipped), one vector per column in the order asked, all of
/// one length. Gaps are treated as `fill` says. Throws std::runtime_error with the file, the
/// line number and the problem for anything else.
inline std::vector<std::vector<double>> readCsvColumns(const std::string& path,
                                                       const std::vector<std::string>& columns,
                                                       Fill fill = Fill::None) {
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
  std::vector<std::size_t> index;
  for (const std::string& column : columns) {
    const auto found = std::find(names.begin(), names.end(), column);
    if (found == names.end()) {
      std::string list;
      for (const auto& n : names) list += (list.empty() ? "" : ", ") + ("'" + n + "'");
      throw std::runtime_error(path + ":" + std::to_string(lineNumber) + ": no column '" + column +
                               "' in the header (it has " + list + ")");
    }
    index.push_back(static_cast<std::size_t>(found - names.begin()));
  }
  std::vector<std::vector<double>> values(columns.size());
  while (std::getline(in, line)) {
    ++lineNumber;
    if (detail::trim(line).empty()) continue;
    const std::vector<std::string> fields = detail::splitFields(line);
    const std::string where = path + ":" + std::to_string(lineNumber) + ": ";
    if (fields.size() != names.size()) {
      throw std::runtime_error(where + "expected " + std::to_string(names.size()) +
                               " fields as in the header, got " + std::to_string(fields.size()));
    }
    std::vector<double> record;
    for (std::size_t c = 0; c < columns.size(); ++c) {
      const std::string& field = fields[index[c]];
      if (detail::isGap(field)) {
        if (fill == Fill::None) {
          throw std::runtime_error(where + "column '" + columns[c] + "' has a gap ('" + field +
                                   "'); fill gaps with --fill linear|previous|drop");
        }
        record.push_back(std::numeric_limits<double>::quiet_NaN());
        continue;
      }
      char* end = nullptr;
      errno = 0;
      const double v = std::strtod(field.c_str(), &end);
      if (end != field.c_str() + field.size() || errno == ERANGE || !std::isfinite(v)) {
        throw std::runtime_error(where + "column '" + columns[c] + "' holds '" + field +
                                 "', not a finite number");
      }
      record.push_back(v);
    }
    const bool gap =
        std::any_of(record.begin(), record.end(), [](double v) { return std::isnan(v); });
    if (gap && fill == Fill::Drop) continue;
    for (std::size_t c = 0; c < columns.size(); ++c) values[c].push_back(record[c]);
  }
  if (fill == Fill::Linear || fill == Fill::Previous) {
    for (std::size_t c = 0; c < columns.size(); ++c) {
      detail::fillGaps(values[c], fill, path + ": column '" + columns[c] + "'");
    }
  }
  return values;
}

/// The training chunks: `streams` parallel streams of `steps` steps each.
struct Chunks {
  int streams;
  int steps;
};

/// The chunk layout for a training part of `available` steps. Where `asked` does not fit at
/// least twice into it and the caller did not set it, streams and steps are halved in turn
/// (steps first, to no fewer than 4; streams to no fewer than `minStreams`) until it does; a
/// layout the caller set, or one that cannot shrink further, is returned as it is and checked
/// by the caller.
inline Chunks fitChunks(int available, Chunks asked, bool streamsSet, bool stepsSet,
                        int minStreams = 1) {
  Chunks c = asked;
  bool stepsTurn = true;
  while (2 * c.streams * c.steps > available) {
    const bool canSteps = !stepsSet && c.steps / 2 >= 4;
    const bool canStreams = !streamsSet && c.streams / 2 >= minStreams;
    if (!canSteps && !canStreams) break;
    if ((stepsTurn && canSteps) || !canStreams) {
      c.steps /= 2;
    } else {
      c.streams /= 2;
    }
    stepsTurn = !stepsTurn;
  }
  return c;
}

}  // namespace example
