// A line plot of truth against prediction, as a standalone SVG file.
#pragma once

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace example {

struct Line {
  std::string label;
  std::string color;
  double width;
  const std::vector<double>* values;
};

/// Writes `lines` (all of one length, plotted against their index) to `path`.
inline void writeSvgPlot(const std::string& path, const std::string& title,
                         const std::string& xLabel, const std::vector<Line>& lines) {
  const double width = 960, height = 360, left = 60, right = 20, top = 40, bottom = 45;
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
    std::snprintf(buffer, sizeof buffer, "%.3g", v);
    return std::string(buffer);
  };

  std::ofstream out(path);
  if (!out) throw std::runtime_error(path + ": cannot open for writing");
  out << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" viewBox=\"0 0 " << width << " " << height
      << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << left << "\" y=\"22\" font-size=\"15\">" << title << "</text>\n";
  // Axes, and horizontal grid lines with their values.
  out << "<g stroke=\"#ccc\">\n";
  for (int k = 0; k <= 4; ++k) {
    const double v = lo + (hi - lo) * k / 4.0;
    out << "<line x1=\"" << left << "\" x2=\"" << width - right << "\" y1=\"" << fmt(py(v))
        << "\" y2=\"" << fmt(py(v)) << "\"/>\n";
  }
  out << "</g>\n";
  for (int k = 0; k <= 4; ++k) {
    const double v = lo + (hi - lo) * k / 4.0;
    out << "<text x=\"" << left - 6 << "\" y=\"" << fmt(py(v) + 4) << "\" text-anchor=\"end\">"
        << tick(v) << "</text>\n";
  }
  for (int k = 0; k <= 5; ++k) {
    const auto i = static_cast<std::size_t>(static_cast<double>(n - 1) * k / 5.0);
    out << "<text x=\"" << fmt(px(i)) << "\" y=\"" << height - bottom + 16
        << "\" text-anchor=\"middle\">" << i << "</text>\n";
  }
  out << "<text x=\"" << (left + width - right) / 2 << "\" y=\"" << height - 8
      << "\" text-anchor=\"middle\">" << xLabel << "</text>\n";
  // The lines and the legend.
  double legendX = width - right - 10;
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
    out << "<text x=\"" << legendX << "\" y=\"22\" text-anchor=\"end\" fill=\"" << it->color
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
