// Speed of the optimizers' step over a model's parameters, float, one thread.
//
//   adam|adamw|sgd_momentum / step / I / H   one step over the parameters of an LSTM layer
//       (I inputs, H units) and a Linear(H, 1): the S2, S3 and S4 models of bench_sequence.
//       items/s: parameters stepped per second; `min GB/s`: the bytes a step must move at least
//       (Adam: the parameter, gradient and two moments read, the parameter and moments written,
//       7 floats an entry; SGD with momentum: 5) per second.
#include <recurrent/recurrent.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>

namespace {

/// A model's parameters and gradients (random, as after a backward pass) and its list.
struct Model {
  recurrent::LSTMCell<float> cell;
  recurrent::Linear<float> fc;
  recurrent::LSTMCell<float>::Parameters cellGrads;
  recurrent::LinearParameters<float> fcGrads;
  recurrent::ParameterList<float> params;

  Model(int I, int H) : cell(I, H), fc(H, 1) {
    std::mt19937 rng(1);
    recurrent::initialize(cell, rng);
    recurrent::initialize(fc, rng);
    cellGrads = cell.zeroGradients();
    fcGrads = fc.zeroGradients();
    params.add(cell.parameters(), cellGrads, "rnn.").add(fc.parameters(), fcGrads, "fc.");
    for (const auto& e : params) e.gradient.array().setRandom();
  }
  // Made in place (the list refers to its members), never copied or moved.
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
};

template <typename Optimizer>
void step(benchmark::State& state, Optimizer& optimizer, const Model& model, int floatsPerEntry) {
  for (auto _ : state) {
    optimizer.step();
    benchmark::ClobberMemory();
  }
  const auto entries = static_cast<std::int64_t>(model.params.numel());
  state.SetItemsProcessed(state.iterations() * entries);
  state.counters["min GB/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * static_cast<double>(entries) *
                             floatsPerEntry * sizeof(float) / 1e9,
                         benchmark::Counter::kIsRate);
}

void adam(benchmark::State& state) {
  Model model(static_cast<int>(state.range(0)), static_cast<int>(state.range(1)));
  recurrent::Adam<float> optimizer(model.params);
  step(state, optimizer, model, 7);
}

void adamw(benchmark::State& state) {
  Model model(static_cast<int>(state.range(0)), static_cast<int>(state.range(1)));
  recurrent::AdamW<float> optimizer(model.params);
  step(state, optimizer, model, 7);
}

void sgdMomentum(benchmark::State& state) {
  Model model(static_cast<int>(state.range(0)), static_cast<int>(state.range(1)));
  recurrent::SGD<float> optimizer(model.params, recurrent::SGDOptions(0.01).momentum(0.9));
  step(state, optimizer, model, 5);
}

void models(benchmark::internal::Benchmark* b) {
  b->ArgNames({"I", "H"})->Args({128, 128})->Args({256, 256})->Args({512, 512});
  b->Unit(benchmark::kMicrosecond);
}

}  // namespace

BENCHMARK(adam)->Name("adam/step")->Apply(models);
BENCHMARK(adamw)->Name("adamw/step")->Apply(models);
BENCHMARK(sgdMomentum)->Name("sgd_momentum/step")->Apply(models);

BENCHMARK_MAIN();
