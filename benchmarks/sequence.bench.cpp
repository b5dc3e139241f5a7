// Sequence forward (inference) and forward + backward (training) for LSTM and GRU, float.
#include <recurrent/recurrent.hpp>

#include <benchmark/benchmark.h>

#include <random>
#include <vector>

namespace {

// Shapes (T, B, I, H).
struct Shape {
  int T, B, I, H;
};

template <typename Cell>
void run(benchmark::State& state, bool training) {
  const Shape s{static_cast<int>(state.range(0)), static_cast<int>(state.range(1)),
                static_cast<int>(state.range(2)), static_cast<int>(state.range(3))};
  Cell cell(s.I, s.H);
  std::mt19937 rng(1);
  cell.initialize(rng);
  recurrent::Sequence<Cell> seq(cell);
  const Eigen::MatrixXf x = Eigen::MatrixXf::Random(s.I, s.T * s.B);
  const Eigen::MatrixXf dy = Eigen::MatrixXf::Ones(s.H, s.T * s.B);
  const std::vector<int> lengths(static_cast<std::size_t>(s.B), s.T);
  auto grads = cell.zeroGradients();
  for (auto _ : state) {
    if (training) {
      seq.forward(x, lengths);
      seq.backward(dy, grads);
    } else {
      seq.infer(x, lengths);
    }
    benchmark::DoNotOptimize(seq.output().data());
  }
  const double flops =
      2.0 * s.T * s.B * double(Cell::kGates) * s.H * (s.I + s.H) * (training ? 3 : 1);
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void shapes(benchmark::internal::Benchmark* b) {
  b->Args({100, 1, 32, 32})
      ->Args({100, 16, 128, 128})
      ->Args({100, 64, 256, 256})
      ->Unit(benchmark::kMillisecond);
}

void lstmInfer(benchmark::State& st) { run<recurrent::LSTMCell<float>>(st, false); }
void lstmTrain(benchmark::State& st) { run<recurrent::LSTMCell<float>>(st, true); }
void gruInfer(benchmark::State& st) { run<recurrent::GRUCell<float>>(st, false); }
void gruTrain(benchmark::State& st) { run<recurrent::GRUCell<float>>(st, true); }

}  // namespace

BENCHMARK(lstmInfer)->Apply(shapes);
BENCHMARK(lstmTrain)->Apply(shapes);
BENCHMARK(gruInfer)->Apply(shapes);
BENCHMARK(gruTrain)->Apply(shapes);

BENCHMARK_MAIN();
