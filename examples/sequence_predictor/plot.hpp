// A line plot of truth against prediction, as a standalone SVG file.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace example {

/// Round values for an axis from `lo` to `hi`: the multiples of a step of 1, 2 or 5 × 10^k
/// that lie in [lo, hi], with the smallest such step that gives at most `most` of them.
inline std::vector<double> niceTicks(double lo, double hi, int most = 7) {
  if (!(hi > lo) || most < 2) return {lo};
  const auto count = [&](double step) {
    return std::floor(hi / step + 1e-9) - std::ceil(lo / step - 1e-9) + 1;
  };
  double decade = std::pow(10.0, std::floor(std::log10((hi - lo) / most)));
  double step = decade;
  for (int k = 0; count(step) > most; ++k) {
    if (k % 3 == 0) step = 2 * decade;
    if (k % 3 == 1) step = 5 * decade;
    if (k % 3 == 2) step = decade *= 10;
  }
  std::vector<double> ticks;
  for (double k = std::ceil(lo / step - 1e-9); k * step <= hi + 1e-9 * step; k += 1) {
    ticks.push_back(k == 0 ? 0.0 : k * step);  // no "-0"
  }
  return ticks;
}

/// `title` cut to `limit` characters, with "..." where it was cut, and escaped for XML.
inline std::string fitTitle(const std::string& title, std::size_t limit) {
  const std::string cut =
      title.size() <= limit || limit < 4 ? title : title.substr(0, limit - 3) + "...";
  std::string escaped;
  for (const char c : cut) {
    if (c == '&') {
      escaped += "&amp;";
    } else if (c == '<') {
      escaped += "&lt;";
    } else if (c == '>') {
      escaped += "&gt;";
    } else {
      escaped += c;
    }
  }
  return escaped;
}

struct Line {
  std::string label;
  std::string color;
  double width;
  const std::vector<double>* values;
};

/// Writes `lines` (all of one length, plotted against their index) to `path`.
inline void writeSvgPlot(const std::string& path, const std::string& title,
                         const std::string& xLabel, const std::vector<Line>& lines) {
  const double width = 960, height = 380, left = 60, right = 20, top = 60, bottom = 45;
  double lo = 1e300, hi = -1e300;
  std::size_t n = 0;
  for (const Line& l : lines) {
    for (double v : *l.values) {
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    n = std::max(n, l.values->size());
  }
  if (n < 2 || !(hi > lo)) {
    lo -= 1;
    hi += 1;
    n = std::max<std::size_t>(n, 2);
  }
  const double pad = 0.05 * (hi - lo);
  lo -= pad;
  hi += pad;
  const std::vector<double> ticks = niceTicks(lo, hi);
  const auto px = [&](std::size_t i) {
    return left + (width - left - right) * static_cast<double>(i) / static_cast<double>(n - 1);
  };
  const auto py = [&](double v) { return top + (height - top - bottom) * (hi - v) / (hi - lo); };
  const auto fmt = [](double v) {
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%.1f", v);
    return std::string(buffer);
  };
  const auto tick = [](double v) {
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%.6g", v);
    return std::string(buffer);
  };

  std::ofstream out(path);
  if (!out) throw std::runtime_error(path + ": cannot open for writing");
  out << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" viewBox=\"0 0 " << width << " " << height
      << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << left
      << "\" y=\"22\" font-size=\"15\">"
      // About 8 pixels a character at 15 px: the title stays on its line, above the legend.
      << fitTitle(title, static_cast<std::size_t>((width - left - right) / 8)) << "</text>\n";
  // Axes, and horizontal grid lines with their values.
  out << "<g stroke=\"#ccc\">\n";
  for (const double v : ticks) {
    out << "<line x1=\"" << left << "\" x2=\"" << width - right << "\" y1=\"" << fmt(py(v))
        << "\" y2=\"" << fmt(py(v)) << "\"/>\n";
  }
  out << "</g>\n";
  for (const double v : ticks) {
    out << "<text x=\"" << left - 6 << "\" y=\"" << fmt(py(v) + 4) << "\" text-anchor=\"end\">"
        << tick(v) << "</text>\n";
  }
  for (const double value : niceTicks(0, static_cast<double>(n - 1), 7)) {
    if (value != std::round(value)) continue;  // steps are whole: a short axis gets fewer ticks
    const auto i = static_cast<std::size_t>(std::lround(value));
    out << "<text x=\"" << fmt(px(i)) << "\" y=\"" << height - bottom + 16
        << "\" text-anchor=\"middle\">" << i << "</text>\n";
  }
  out << "<text x=\"" << (left + width - right) / 2 << "\" y=\"" << height - 8
      << "\" text-anchor=\"middle\">" << xLabel << "</text>\n";
  // The lines, and the legend on its own line under the title, right-aligned.
  double legendX = width - right - 10;
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
    out << "<text x=\"" << legendX << "\" y=\"44\" text-anchor=\"end\" fill=\"" << it->color
        << "\">— " << it->label << "</text>\n";
    legendX -= 14 + 8.0 * static_cast<double>(it->label.size());
  }
  for (const Line& l : lines) {
    out << "<polyline fill=\"none\" stroke=\"" << l.color << "\" stroke-width=\"" << l.width
        << "\" stroke-linejoin=\"round\" points=\"";
    for (std::size_t i = 0; i < l.values->size(); ++i) {
      out << fmt(px(i)) << "," << fmt(py((*l.values)[i])) << " ";
    }
    out << "\"/>\n";
  }
  out << "</svg>\n";
}

}  // namespace example
