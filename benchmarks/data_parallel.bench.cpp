// Data-parallel training over MPI (train/distributed.hpp): run it under mpirun with 1 and with 2
// processes, one thread each, and compare the times of one global step.
//
//   OMP_NUM_THREADS=1 mpirun -np 1 build/benchmarks/data_parallel
//   OMP_NUM_THREADS=1 mpirun -np 2 build/benchmarks/data_parallel
//
//   lstm|gru / train_step / T / B / I / H / processes   one training step of the global batch B:
//       each process runs forward and backward on its B / processes sequences, the gradients
//       are averaged (DataParallel::averageGradients), every process takes the Adam step.
//       Wall time of the slowest process. items/s: sequences of the global batch per second;
//       `average ms`: the averaging's share of the step on rank 0 (its wait for the slower
//       process included).
//   lstm|gru / train_step_messages / ...                 the same with Transport::Messages: the
//       gradients travel as messages even where the processes share this machine's memory.
//   lstm|gru / train_local / ...                         the same without the averaging: what the
//       processes' shares cost alone, the step's time less its communication.
//   average / MB / processes                             DataParallel::averageGradients over that
//       many MB of float gradients (tensors of 1 MB, buckets of 4 MB): the averaging alone.
//   average_messages / MB / processes                    the same with Transport::Messages.
//   allreduce / MB / processes                           MPI_Allreduce of as many floats in place,
//       for comparison. bytes_per_second: of the gradients averaged or reduced.
//
// Every process runs the same fixed iterations (Google Benchmark's own iteration count is not
// used, since the processes must call the collectives together), after one untimed iteration
// (the first touch of every buffer's pages is not what a training run's steps cost); rank 0
// reports.
#include <recurrent/recurrent.hpp>
#include <recurrent/train/distributed.hpp>

#include <benchmark/benchmark.h>
#include <mpi.h>

#include <random>
#include <string>
#include <vector>

namespace {

int worldSize() {
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

/// Runs `work` once untimed, then once per iteration, timed on every process; the iteration's
/// time is the slowest process's. `warmedUp` runs between the two.
template <typename Work, typename WarmedUp = void (*)()>
void timeCollectively(
    benchmark::State& state, Work&& work, WarmedUp warmedUp = [] {}) {
  work();
  warmedUp();
  for (auto _ : state) {
    MPI_Barrier(MPI_COMM_WORLD);
    const double start = MPI_Wtime();
    work();
    double elapsed = MPI_Wtime() - start;
    MPI_Allreduce(MPI_IN_PLACE, &elapsed, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    state.SetIterationTime(elapsed);
  }
}

/// How a step averages: not at all (what the shares cost alone), or with a transport.
enum class Averaging { None, Automatic, Messages };

template <typename Cell, Averaging kAverage>
void trainStep(benchmark::State& state, int T, int B, int I, int H) {
  Cell cell(I, H);
  recurrent::Linear<float> fc(H, 1);
  std::mt19937 rng(1);
  recurrent::initialize(cell, rng);
  recurrent::initialize(fc, rng);
  auto cellGrads = cell.zeroGradients();
  auto fcGrads = fc.zeroGradients();
  recurrent::ParameterList<float> params;
  params.add(cell.parameters(), cellGrads, "rnn.").add(fc.parameters(), fcGrads, "fc.");
  recurrent::DataParallel<float> dp(
      params, MPI_COMM_WORLD, recurrent::DataParallel<float>::kDefaultBucketBytes,
      kAverage == Averaging::Messages ? recurrent::Transport::Messages
                                      : recurrent::Transport::Automatic);
  recurrent::Adam<float> adam(params);
  const std::vector<int> global(static_cast<std::size_t>(B), T);
  const std::vector<int> mine = recurrent::shareOfBatch(global, dp.rank(), dp.size());
  const std::vector<int> lengths = recurrent::selectLengths(global, mine);
  const auto b = static_cast<Eigen::Index>(mine.size());
  const Eigen::MatrixXf x = Eigen::MatrixXf::Random(I, T * b);
  const Eigen::MatrixXf target = Eigen::MatrixXf::Random(1, T * b);
  recurrent::Sequence<Cell> seq(cell);
  seq.setThreads(1);
  Eigen::MatrixXf y, dy, dh;
  double averaging = 0;
  const auto step = [&] {
    params.zeroGradients();
    seq.forward(x, lengths);
    fc.forward(seq.output(), y);
    recurrent::mseLoss(y, target, lengths, dy);
    fc.backward(seq.output(), dy, fcGrads, dh);
    seq.backward(dh, cellGrads);
    if (kAverage != Averaging::None) {
      const double start = MPI_Wtime();
      dp.averageGradients(static_cast<double>(T) * static_cast<double>(b));
      averaging += MPI_Wtime() - start;
    }
    adam.step();
  };
  timeCollectively(state, step, [&] { averaging = 0; });
  state.SetItemsProcessed(state.iterations() * B);
  state.counters["average ms"] = 1e3 * averaging / static_cast<double>(state.iterations());
  state.counters["MB reduced"] = static_cast<double>(params.numel()) * sizeof(float) / 1e6;
}

/// A list entry of one vector: a model's list holds many tensors.
struct OneTensor {
  Eigen::VectorXf* v;
  template <typename F>
  void forEach(F&& f) const {
    f("t", *v);
  }
};

template <recurrent::Transport kTransport>
void average(benchmark::State& state, int mb) {
  const auto n = static_cast<Eigen::Index>(1000000 / sizeof(float));
  std::vector<Eigen::VectorXf> tensors(static_cast<std::size_t>(mb), Eigen::VectorXf::Zero(n));
  std::vector<Eigen::VectorXf> grads(tensors.size(), Eigen::VectorXf::Ones(n));
  recurrent::ParameterList<float> params;
  for (std::size_t k = 0; k < tensors.size(); ++k) {
    OneTensor gradient{&grads[k]};
    params.add(OneTensor{&tensors[k]}, gradient, "t" + std::to_string(k) + ".");
  }
  recurrent::DataParallel<float> dp(
      params, MPI_COMM_WORLD, recurrent::DataParallel<float>::kDefaultBucketBytes, kTransport);
  timeCollectively(state, [&] { dp.averageGradients(); });
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(mb) * 1000000);
}

void allreduce(benchmark::State& state, int mb) {
  const auto n = static_cast<std::size_t>(mb) * 1000000 / sizeof(float);
  std::vector<float> buffer(n, 1.0f);
  timeCollectively(state, [&] {
    MPI_Allreduce(MPI_IN_PLACE, buffer.data(), static_cast<int>(n), MPI_FLOAT, MPI_SUM,
                  MPI_COMM_WORLD);
  });
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(n * sizeof(float)));
}

/// Reports nothing: the processes other than rank 0.
class Silent : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>&) override {}
};

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const std::string processes = "/processes:" + std::to_string(worldSize());
  // S3 and S4 of benchmarks/compare.
  const std::vector<std::vector<int>> shapes{{100, 64, 256, 256}, {50, 32, 512, 512}};
  for (const auto& s : shapes) {
    const std::string shape = "/T:" + std::to_string(s[0]) + "/B:" + std::to_string(s[1]) +
                              "/I:" + std::to_string(s[2]) + "/H:" + std::to_string(s[3]);
    using Step = void (*)(benchmark::State&, int, int, int, int);
    const std::pair<const char*, Step> steps[] = {
        {"lstm/train_step", trainStep<recurrent::LSTMCell<float>, Averaging::Automatic>},
        {"lstm/train_step_messages", trainStep<recurrent::LSTMCell<float>, Averaging::Messages>},
        {"lstm/train_local", trainStep<recurrent::LSTMCell<float>, Averaging::None>},
        {"gru/train_step", trainStep<recurrent::GRUCell<float>, Averaging::Automatic>},
        {"gru/train_step_messages", trainStep<recurrent::GRUCell<float>, Averaging::Messages>},
        {"gru/train_local", trainStep<recurrent::GRUCell<float>, Averaging::None>}};
    for (const auto& [name, fn] : steps) {
      std::string label = name;
      label += shape;
      label += processes;
      benchmark::RegisterBenchmark(
          label.c_str(),
          [fn = fn, s](benchmark::State& state) { fn(state, s[0], s[1], s[2], s[3]); })
          ->Iterations(5)
          ->Repetitions(5)
          ->ReportAggregatesOnly()
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond);
    }
  }
  for (int mb : {1, 4, 16, 64}) {
    using Reduce = void (*)(benchmark::State&, int);
    const std::pair<const char*, Reduce> reductions[] = {
        {"average", average<recurrent::Transport::Automatic>},
        {"average_messages", average<recurrent::Transport::Messages>},
        {"allreduce", allreduce}};
    for (const auto& [name, fn] : reductions) {
      std::string label = name;
      label += "/MB:" + std::to_string(mb);
      label += processes;
      benchmark::RegisterBenchmark(label.c_str(),
                                   [fn = fn, mb](benchmark::State& state) { fn(state, mb); })
          ->Iterations(20)
          ->Repetitions(5)
          ->ReportAggregatesOnly()
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond);
    }
  }
  benchmark::Initialize(&argc, argv);
  Silent silent;
  if (rank == 0) {
    benchmark::RunSpecifiedBenchmarks();
  } else {
    benchmark::RunSpecifiedBenchmarks(&silent);
  }
  benchmark::Shutdown();
  MPI_Finalize();
  return 0;
}
