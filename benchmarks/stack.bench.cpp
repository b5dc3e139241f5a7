// Speed of Stack (stacked and bidirectional layers), float, against the Sequences it runs.
//
//   lstm / infer|train / bidirectional / T / B / I / H / threads   one bidirectional layer
//   lstm / infer|train / two-sequences / T / B / I / H / threads   the same work as two plain
//                                                                  Sequences, one after another
//   lstm / train / stack-2x2 / ...                                 two bidirectional layers
//
// The difference between the first two is what the reversal of the batch, the merge of the
// outputs and running the directions at once cost or gain. GFLOP/s counts the GEMM work as
// bench_sequence does: 2·T·B·G·H·(I + H) per direction and layer for a forward pass, three times
// that for forward + backward.
#include <recurrent/recurrent.hpp>

#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

namespace {

using Lstm = recurrent::LSTMCell<float>;

double gemmFlops(double T, double B, double G, double I, double H) {
  return 2.0 * T * B * G * H * (I + H);
}

struct Shape {
  int T, B, I, H, threads;
  explicit Shape(const benchmark::State& state)
      : T(static_cast<int>(state.range(0))),
        B(static_cast<int>(state.range(1))),
        I(static_cast<int>(state.range(2))),
        H(static_cast<int>(state.range(3))),
        threads(static_cast<int>(state.range(4))) {}
  std::vector<int> lengths() const { return std::vector<int>(static_cast<std::size_t>(B), T); }
};

void stack(benchmark::State& state, bool training, int layers) {
  const Shape s(state);
  recurrent::Stack<Lstm> rnn(s.I, s.H, recurrent::StackOptions().numLayers(layers).bidirectional());
  std::mt19937 rng(1);
  rnn.initialize(rng);
  rnn.setThreads(s.threads);
  const Eigen::MatrixXf x = Eigen::MatrixXf::Random(s.I, s.T * s.B);
  const Eigen::MatrixXf dy = Eigen::MatrixXf::Ones(rnn.outputSize(), s.T * s.B);
  const std::vector<int> lengths = s.lengths();
  auto grads = rnn.zeroGradients();
  for (auto _ : state) {
    if (training) {
      rnn.forward(x, lengths);
      rnn.backward(dy, grads);
    } else {
      rnn.infer(x, lengths);
    }
    benchmark::DoNotOptimize(rnn.output().data());
    benchmark::ClobberMemory();
  }
  double flops = 0;
  for (int l = 0; l < layers; ++l) {
    flops += 2 * gemmFlops(s.T, s.B, 4, l == 0 ? s.I : 2 * s.H, s.H);
  }
  state.counters["GFLOP/s"] = benchmark::Counter(flops * (training ? 3 : 1) * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

void twoSequences(benchmark::State& state, bool training) {
  const Shape s(state);
  Lstm forwardCell(s.I, s.H), reverseCell(s.I, s.H);
  std::mt19937 rng(1);
  forwardCell.initialize(rng);
  reverseCell.initialize(rng);
  recurrent::Sequence<Lstm> forward(forwardCell), reverse(reverseCell);
  forward.setThreads(s.threads);
  reverse.setThreads(s.threads);
  const Eigen::MatrixXf x = Eigen::MatrixXf::Random(s.I, s.T * s.B);
  const Eigen::MatrixXf dy = Eigen::MatrixXf::Ones(s.H, s.T * s.B);
  const std::vector<int> lengths = s.lengths();
  auto forwardGrads = forwardCell.zeroGradients(), reverseGrads = reverseCell.zeroGradients();
  for (auto _ : state) {
    if (training) {
      forward.forward(x, lengths);
      forward.backward(dy, forwardGrads);
      reverse.forward(x, lengths);
      reverse.backward(dy, reverseGrads);
    } else {
      forward.infer(x, lengths);
      reverse.infer(x, lengths);
    }
    benchmark::DoNotOptimize(forward.output().data());
    benchmark::DoNotOptimize(reverse.output().data());
    benchmark::ClobberMemory();
  }
  const double flops = 2 * gemmFlops(s.T, s.B, 4, s.I, s.H) * (training ? 3 : 1);
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// (T, B, I, H): S1, S2, S3 of bench_sequence, each at 1 and 2 threads.
void shapes(benchmark::internal::Benchmark* b) {
  const std::vector<std::vector<int64_t>> sizes = {
      {100, 1, 32, 32}, {100, 16, 128, 128}, {100, 64, 256, 256}};
  for (int threads : {1, 2}) {
    for (std::vector<int64_t> s : sizes) {
      s.push_back(threads);
      b->Args(s);
    }
  }
  b->ArgNames({"T", "B", "I", "H", "threads"})->UseRealTime()->Unit(benchmark::kMillisecond);
}

}  // namespace

int main(int argc, char** argv) {
  for (bool training : {false, true}) {
    const std::string mode = training ? "lstm/train" : "lstm/infer";
    benchmark::RegisterBenchmark((mode + "/bidirectional").c_str(), stack, training, 1)
        ->Apply(shapes);
    benchmark::RegisterBenchmark((mode + "/two-sequences").c_str(), twoSequences, training)
        ->Apply(shapes);
  }
  benchmark::RegisterBenchmark("lstm/train/stack-2x2", stack, true, 2)->Apply(shapes);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
