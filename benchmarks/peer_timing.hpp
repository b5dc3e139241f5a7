// Command line and timing shared by the programs that benchmarks/compare runs beside
// bench_sequence (onednn_rnn, sgemm_limit): the same options, the same way of timing.
//
//   --cells lstm,gru  --modes infer,train[,step]  --shapes T:B:I:H,...  --step-sizes I:H,...
//   --threads N  --repetitions R  --min-time S (per repetition)  --max-time S (per measurement)
//
// measure(): after a warm-up, each repetition runs the call as many times as fit in min-time
// seconds (at least once) and records the mean; the result is the median over the
// repetitions. A call slower than min-time is warmed up once and then timed call by call, and
// one so slow that the repetitions would exceed max-time gets fewer of them (at least one).
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace peer {

struct Shape {
  long long T, B, I, H;
};

struct Options {
  std::vector<std::string> cells{"lstm", "gru"};
  std::vector<std::string> modes{"infer", "train"};
  std::vector<Shape> shapes{{100, 1, 32, 32},
                            {100, 16, 128, 128},
                            {100, 64, 256, 256},
                            {50, 32, 512, 512},
                            {1000, 8, 64, 128}};
  /// One step of one sequence: T = B = 1, (I, H).
  std::vector<Shape> stepSizes{{1, 1, 8, 8},     {1, 1, 16, 16}, {1, 1, 32, 32}, {1, 1, 64, 64},
                               {1, 1, 128, 128}, {1, 1, 1, 8},   {1, 1, 1, 16},  {1, 1, 1, 32},
                               {1, 1, 1, 64},    {1, 1, 1, 128}};
  int threads = 1;
  int repetitions = 5;
  double minTime = 0.2;
  double maxTime = 10;
};

inline std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::stringstream in(text);
  std::string part;
  while (std::getline(in, part, separator)) {
    if (!part.empty()) parts.push_back(part);
  }
  return parts;
}

inline std::vector<Shape> parseShapes(const std::string& text, std::size_t fields) {
  std::vector<Shape> shapes;
  for (const std::string& item : split(text, ',')) {
    std::vector<long long> v;
    for (const std::string& n : split(item, ':')) v.push_back(std::stoll(n));
    if (v.size() != fields) {
      throw std::invalid_argument("expected " + std::string(fields == 4 ? "T:B:I:H" : "I:H") +
                                  ", got " + item);
    }
    shapes.push_back(fields == 4 ? Shape{v[0], v[1], v[2], v[3]} : Shape{1, 1, v[0], v[1]});
  }
  return shapes;
}

/// Parses the options; throws std::invalid_argument on anything it does not know.
inline Options parse(int argc, char** argv) {
  Options o;
  for (int k = 1; k < argc; ++k) {
    const std::string arg = argv[k];
    if (k + 1 >= argc) throw std::invalid_argument(arg + ": unknown, or missing its value");
    const std::string value = argv[++k];
    if (arg == "--cells") {
      o.cells = split(value, ',');
    } else if (arg == "--modes") {
      o.modes = split(value, ',');
    } else if (arg == "--shapes") {
      o.shapes = parseShapes(value, 4);
    } else if (arg == "--step-sizes") {
      o.stepSizes = parseShapes(value, 2);
    } else if (arg == "--threads") {
      o.threads = std::stoi(value);
    } else if (arg == "--repetitions") {
      o.repetitions = std::stoi(value);
    } else if (arg == "--min-time") {
      o.minTime = std::stod(value);
    } else if (arg == "--max-time") {
      o.maxTime = std::stod(value);
    } else {
      throw std::invalid_argument("unknown option " + arg +
                                  " (--cells --modes --shapes --step-sizes --threads "
                                  "--repetitions --min-time --max-time)");
    }
  }
  if (o.threads < 1 || o.repetitions < 1) {
    throw std::invalid_argument("--threads and --repetitions must be at least 1");
  }
  return o;
}

struct Timing {
  double medianMs;
  long iterations;  ///< calls per repetition
  int repetitions;
};

inline double seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

/// The median over repetitions of the mean wall time of one call.
inline Timing measure(const std::function<void()>& call, const Options& o) {
  call();  // first touch of every buffer, thread start
  double start = seconds();
  call();
  const double once = std::max(seconds() - start, 1e-9);
  std::vector<double> samples;
  if (once < o.minTime) {  // warm up a little longer
    start = seconds();
    while (seconds() - start < std::min(o.minTime, 0.2)) call();
  } else {
    samples.push_back(once * 1e3);  // a slow call: the second one is already a sample
  }
  const long iterations = std::max(1L, static_cast<long>(o.minTime / once));
  const double perRepetition = once * static_cast<double>(iterations);
  const int repetitions =
      std::max(1, std::min(o.repetitions, static_cast<int>(o.maxTime / perRepetition)));
  for (int r = static_cast<int>(samples.size()); r < repetitions; ++r) {
    start = seconds();
    for (long k = 0; k < iterations; ++k) call();
    samples.push_back((seconds() - start) / static_cast<double>(iterations) * 1e3);
  }
  std::sort(samples.begin(), samples.end());
  const std::size_t n = samples.size();
  const double median = n % 2 ? samples[n / 2] : 0.5 * (samples[n / 2 - 1] + samples[n / 2]);
  return {median, iterations, repetitions};
}

}  // namespace peer
