// Speed of Sequence (whole sequences) and Stream (one step at a time), float.
//
//   lstm|gru / infer|train / T / B / I / H / threads     S1..S5, wall time per batch
//   lstm|gru / infer|train / spread ...                  V: S3 with lengths spread over 1..100
//   lnlstm / train / S3                                  LayerNormLSTMCell, S3 shape
//   lstm_vardrop|lstm_zoneout / train / S3               LSTM with variational dropout (x and
//                                                        h, 0.25 each) or zoneout (h, c 0.1)
//   lstm|gru / step / I / H                              one step of one sequence (Stream)
//   lstm|gru / step_fixed / I / H                        the same, sizes fixed at compile time
//   lstm|gru / infer_int8|infer_bf16 / T / B / I / H / threads   S3 and S4 in a reduced Precision
//   lstm|gru / step_int8|step_bf16 / I / H                       one step in a reduced Precision
//   lstm / step_int8|step_bf16 _float_input / I / H              the same, W_ih·x in float
//                                                                (setPrecision(p, Full))
//   pack / forward|backward / H                          packing an LSTM's 4H × H weight matrix
//                                                        for forward (W) or backward (Wᵀ), as
//                                                        every training call does: bytes/s of
//                                                        the matrix
//
// The step benchmarks report ns/step and RTF@48kHz, the fraction of real time one step per sample
// of 48 kHz audio uses (step time × 48000 / 1 s; below 1 keeps up).
//
// GFLOP/s counts the GEMM work the same way for every implementation (benchmarks/README.md):
// 2·T·B·G·H·(I + H) for a forward pass, three times that for forward + backward.
#include <recurrent/recurrent.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace {

using Lstm = recurrent::LSTMCell<float>;
using Gru = recurrent::GRUCell<float>;
using LnLstm = recurrent::LayerNormLSTMCell<float>;

double gemmFlops(double T, double B, double G, double I, double H) {
  return 2.0 * T * B * G * H * (I + H);
}

/// Packs a 4H × H matrix as packForward (W) or packBackward (Wᵀ) packs W_hh.
void pack(benchmark::State& state, bool transposed) {
  using namespace recurrent::detail;
  const auto H = static_cast<Eigen::Index>(state.range(0));
  const Eigen::MatrixXf w = Eigen::MatrixXf::Random(4 * H, H);
  PackedMatrix<float> packed;
  for (auto _ : state) {
    if (transposed) {
      packed.pack(transposedViewOf<const float>(w.data(), w.outerStride()), Blocks{1, H},
                  Blocks{4, H});
    } else {
      packed.pack(viewOf<const float>(w.data(), w.outerStride(), H), Blocks{1, 4 * H},
                  Blocks{1, H});
    }
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * w.size() * static_cast<std::int64_t>(sizeof(float)));
}

/// Lengths spread evenly over 1..T.
std::vector<int> spread(int T, int B) {
  std::vector<int> lengths(static_cast<std::size_t>(B));
  for (int b = 0; b < B; ++b) lengths[static_cast<std::size_t>(b)] = 1 + b * (T - 1) / (B - 1);
  return lengths;
}

template <typename Cell>
void run(benchmark::State& state, bool training, bool spreadLengths,
         const recurrent::Regularization& regularization,
         recurrent::Precision precision = recurrent::Precision::Full) {
  const int T = static_cast<int>(state.range(0)), B = static_cast<int>(state.range(1));
  const int I = static_cast<int>(state.range(2)), H = static_cast<int>(state.range(3));
  const int threads = static_cast<int>(state.range(4));
  Cell cell(I, H);
  std::mt19937 rng(1);
  cell.initialize(rng);
  recurrent::Sequence<Cell> seq(cell);
  seq.setThreads(threads);
  seq.setRegularization(regularization);
  seq.setPrecision(precision);
  const Eigen::MatrixXf x = Eigen::MatrixXf::Random(I, T * B);
  const Eigen::MatrixXf dy = Eigen::MatrixXf::Ones(H, T * B);  // a gradient of ones on every output
  const std::vector<int> lengths =
      spreadLengths ? spread(T, B) : std::vector<int>(static_cast<std::size_t>(B), T);
  double steps = 0;  // sequence-steps of real work
  for (int len : lengths) steps += len;
  auto grads = cell.zeroGradients();
  // One untimed call sizes the workspaces (and faults their pages in), as every peer warms up:
  // what is measured is the steady state of a Sequence reused batch after batch.
  if (training) {
    seq.forward(x, lengths);
    seq.backward(dy, grads);
  } else {
    seq.infer(x, lengths);
  }
  for (auto _ : state) {
    if (training) {
      seq.forward(x, lengths);
      seq.backward(dy, grads);
    } else {
      seq.infer(x, lengths);
    }
    benchmark::DoNotOptimize(seq.output().data());
    benchmark::ClobberMemory();
  }
  const double flops = gemmFlops(steps, 1, double(Cell::kGates), I, H) * (training ? 3 : 1);
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

template <typename Cell>
void sequence(benchmark::State& state, bool training, bool spreadLengths) {
  run<Cell>(state, training, spreadLengths, recurrent::Regularization());
}

/// Inference of full-length sequences in `precision`.
template <typename Cell>
void reduced(benchmark::State& state, recurrent::Precision precision) {
  run<Cell>(state, false, false, recurrent::Regularization(), precision);
}

/// Training of full-length sequences with `regularization`.
template <typename Cell>
void regularised(benchmark::State& state, recurrent::Regularization regularization) {
  run<Cell>(state, true, false, regularization);
}

/// One step of one sequence of `cell` per iteration.
template <typename Cell>
void stepOf(benchmark::State& state, Cell& cell,
            recurrent::Precision precision = recurrent::Precision::Full,
            recurrent::Precision input = recurrent::Precision::Full) {
  const Eigen::Index I = cell.inputSize();
  std::mt19937 rng(1);
  cell.initialize(rng);
  recurrent::Stream<Cell> stream(cell);
  stream.setPrecision(precision, input);
  const Eigen::MatrixXf x = Eigen::MatrixXf::Random(I, 1);
  stream.step(x);  // untimed, as above
  for (auto _ : state) {
    benchmark::DoNotOptimize(stream.step(x).data());
  }
  state.counters["ns/step"] = benchmark::Counter(
      1e-9, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  // Real-time factor at 48 kHz: the fraction of real time used, step time × 48000 / 1 s.
  state.counters["RTF@48kHz"] = benchmark::Counter(
      1.0 / 48000.0, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

template <typename Cell>
void step(benchmark::State& state) {
  Cell cell(state.range(0), state.range(1));
  stepOf(state, cell);
}

/// One step in `precision`, the input product in `input` (`precision` or Full).
template <typename Cell>
void stepReduced(benchmark::State& state, recurrent::Precision precision,
                 recurrent::Precision input) {
  Cell cell(state.range(0), state.range(1));
  stepOf(state, cell, precision, input);
}

template <typename Cell>
void stepFixed(benchmark::State& state) {
  Cell cell;
  stepOf(state, cell);
}

/// lstm/step_fixed/I:i/H:h and gru/step_fixed/I:i/H:h for one (I, H).
template <int I, int H>
void registerFixed() {
  const std::string shape = "/I:" + std::to_string(I) + "/H:" + std::to_string(H);
  benchmark::RegisterBenchmark(("lstm/step_fixed" + shape).c_str(),
                               stepFixed<recurrent::LSTMCell<float, I, H>>)
      ->Unit(benchmark::kNanosecond);
  benchmark::RegisterBenchmark(
      ("gru/step_fixed" + shape).c_str(),
      stepFixed<recurrent::GRUCell<float, I, H, recurrent::GRUVariant::ResetAfter>>)
      ->Unit(benchmark::kNanosecond);
}

// (T, B, I, H) of S1..S5, each at 1 and 2 threads.
void shapes(benchmark::internal::Benchmark* b) {
  const std::vector<std::vector<int64_t>> sizes = {{100, 1, 32, 32},
                                                   {100, 16, 128, 128},
                                                   {100, 64, 256, 256},
                                                   {50, 32, 512, 512},
                                                   {1000, 8, 64, 128}};
  for (int threads : {1, 2}) {
    for (std::vector<int64_t> s : sizes) {
      s.push_back(threads);
      b->Args(s);
    }
  }
  b->ArgNames({"T", "B", "I", "H", "threads"})->UseRealTime()->Unit(benchmark::kMillisecond);
}
void spreadShapes(benchmark::internal::Benchmark* b) {
  b->Args({100, 64, 256, 256, 1})->Args({100, 64, 256, 256, 2});
  b->ArgNames({"T", "B", "I", "H", "threads"})->UseRealTime()->Unit(benchmark::kMillisecond);
}
// S3 alone, 1 and 2 threads: the layer-normalised cell and the regularisation options.
void s3Shape(benchmark::internal::Benchmark* b) {
  b->Args({100, 64, 256, 256, 1})->Args({100, 64, 256, 256, 2});
  b->ArgNames({"T", "B", "I", "H", "threads"})->UseRealTime()->Unit(benchmark::kMillisecond);
}
// S3 and S4 at one thread, for the reduced precisions.
void reducedShapes(benchmark::internal::Benchmark* b) {
  b->Args({100, 64, 256, 256, 1})->Args({50, 32, 512, 512, 1});
  b->ArgNames({"T", "B", "I", "H", "threads"})->UseRealTime()->Unit(benchmark::kMillisecond);
}
void reducedStepShapes(benchmark::internal::Benchmark* b) {
  b->Args({1, 32})->Args({1, 128})->Args({64, 64})->Args({128, 128});
  b->ArgNames({"I", "H"})->Unit(benchmark::kNanosecond);
}
void stepShapes(benchmark::internal::Benchmark* b) {
  for (int h : {8, 16, 32, 64, 128}) b->Args({h, h});
  for (int h : {8, 16, 32, 64, 128}) b->Args({1, h});
  b->ArgNames({"I", "H"})->Unit(benchmark::kNanosecond);
}

}  // namespace

int main(int argc, char** argv) {
  for (bool training : {false, true}) {
    const char* mode = training ? "/train" : "/infer";
    benchmark::RegisterBenchmark((std::string("lstm") + mode).c_str(), sequence<Lstm>, training,
                                 false)
        ->Apply(shapes);
    benchmark::RegisterBenchmark((std::string("gru") + mode).c_str(), sequence<Gru>, training,
                                 false)
        ->Apply(shapes);
    benchmark::RegisterBenchmark((std::string("lstm") + mode + "/spread").c_str(), sequence<Lstm>,
                                 training, true)
        ->Apply(spreadShapes);
    benchmark::RegisterBenchmark((std::string("gru") + mode + "/spread").c_str(), sequence<Gru>,
                                 training, true)
        ->Apply(spreadShapes);
  }
  benchmark::RegisterBenchmark("lnlstm/train", sequence<LnLstm>, true, false)->Apply(s3Shape);
  benchmark::RegisterBenchmark(
      "lstm_vardrop/train", regularised<Lstm>,
      recurrent::Regularization().inputDropout(0.25).recurrentDropout(0.25))
      ->Apply(s3Shape);
  benchmark::RegisterBenchmark("lstm_zoneout/train", regularised<Lstm>,
                               recurrent::Regularization().zoneout(0.1, 0.1))
      ->Apply(s3Shape);
  for (const recurrent::Precision p : {recurrent::Precision::Int8, recurrent::Precision::BF16}) {
    const std::string name = recurrent::precisionName(p);
    benchmark::RegisterBenchmark(("lstm/infer_" + name).c_str(), reduced<Lstm>, p)
        ->Apply(reducedShapes);
    benchmark::RegisterBenchmark(("gru/infer_" + name).c_str(), reduced<Gru>, p)
        ->Apply(reducedShapes);
    benchmark::RegisterBenchmark(("lstm/step_" + name).c_str(), stepReduced<Lstm>, p, p)
        ->Apply(reducedStepShapes);
    benchmark::RegisterBenchmark(("gru/step_" + name).c_str(), stepReduced<Gru>, p, p)
        ->Apply(reducedStepShapes);
    benchmark::RegisterBenchmark(("lstm/step_" + name + "_float_input").c_str(), stepReduced<Lstm>,
                                 p, recurrent::Precision::Full)
        ->Apply(reducedStepShapes);
  }
  for (bool transposed : {false, true}) {
    benchmark::RegisterBenchmark(transposed ? "pack/backward" : "pack/forward", pack, transposed)
        ->ArgName("H")
        ->Arg(128)
        ->Arg(256)
        ->Arg(512);
  }
  benchmark::RegisterBenchmark("lstm/step", step<Lstm>)->Apply(stepShapes);
  benchmark::RegisterBenchmark("gru/step", step<Gru>)->Apply(stepShapes);
  registerFixed<8, 8>();
  registerFixed<16, 16>();
  registerFixed<32, 32>();
  registerFixed<64, 64>();
  registerFixed<128, 128>();
  registerFixed<1, 8>();
  registerFixed<1, 16>();
  registerFixed<1, 32>();
  registerFixed<1, 64>();
  registerFixed<1, 128>();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
