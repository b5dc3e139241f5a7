// sequence_predictor: train an LSTM or GRU to predict the next value of a time series, keep
// the best model by validation loss, save it as safetensors, load it back, and compare its
// test error with the persistence baseline (predicting the last value seen).
//
//   sequence_predictor [--cell lstm|gru] [--csv FILE --column NAME [--inputs A,B,...]]
//                      [--horizon N] [--fill linear|previous|drop] [--metrics FILE] ...
//   mpirun -np 2 sequence_predictor --distributed ...   (built with MPI: the streams split over
//                                                        the processes, data-parallel)
//
// The default series is Mackey–Glass with τ = 17 (series.hpp). `--help` lists every flag.
#include "../common/flags.hpp"
#include "../common/world.hpp"
#include "plot.hpp"
#include "series.hpp"

#include <recurrent/io/safetensors.hpp>
#include <recurrent/recurrent.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace {

struct Options {
  std::string cell = "lstm";
  int hidden = 32;
  int epochs = 300;
  double lr = 0.01;
  int batch = 8;                           // parallel streams of the training series
  int bptt = 32;                           // steps per truncated-BPTT chunk
  bool batchSet = false, bpttSet = false;  // given on the command line: never adapted
  double clip = 1.0;
  int samples = 6000;
  unsigned seed = 1;
  std::string csv, column;
  std::vector<std::string> inputs;  // the model's input columns; empty: the predicted column
  int horizon = 1;                  // predict the value this many steps ahead
  example::Fill fill = example::Fill::None;
  std::string out = "sequence_predictor_out";
  std::string metrics;
  bool distributed = false;
  std::vector<std::string> precisions;  // also evaluate the saved model in these (--precision)
};

const char* kUsage = R"(usage: sequence_predictor [options]

Trains an LSTM or GRU to predict a time series N steps ahead (Adam, truncated BPTT on
mini-batches, gradient clipping), keeps the model with the best validation loss, saves it as
safetensors, loads it back and reports its test RMSE next to the persistence baseline (the
last value seen, N steps before).

  --cell lstm|gru     the recurrent cell (lstm)
  --hidden N          hidden size (32)
  --epochs N          passes over the training part of the series (300)
  --lr X              Adam's learning rate, cosine-annealed to 1% of it (0.01)
  --batch N           parallel streams the training series is cut into (8; on a short
                      series, where 8 x 32 steps do not fit twice into the training part,
                      --batch and --bptt are halved in turn until they do, and said so)
  --bptt N            steps per truncated-BPTT chunk (32)
  --clip X            clip the global gradient norm to X (1.0)
  --samples N         length of the generated Mackey-Glass series (6000)
  --csv FILE          train on a column of a CSV file (a header line of names) instead
  --column NAME       ... the column to predict, by its name in the header
  --inputs A,B,...    ... the columns the model reads (default: the predicted column alone)
  --fill MODE         ... how to treat gaps (empty, NA, N/A, NaN, null): linear
                      (interpolate), previous (repeat the last value) or drop (leave the
                      record out); without it a gap is an error
  --horizon N         predict the value N steps ahead (1)
  --seed N            seed of the initialisation and of the chunk offsets (1)
  --out DIR           where model.safetensors, predictions.csv and predictions.svg go
                      (sequence_predictor_out)
  --metrics FILE      write the final figures as JSON
  --quick             a short run (3 epochs) to check that everything works
  --precision P       also evaluate the saved model with int8 or bf16 products (P = int8, bf16
                      or both, int8,bf16): both products reduced, then W_hh h alone (the
                      input product in f32)
  --distributed       under mpirun: the streams are split over the processes, the gradients
                      averaged over them (data parallelism); rank 0 prints and writes the
                      files (needs a build with MPI)
)";

Options parse(int argc, char** argv) {
  Options o;
  const auto value = [&](int& i) { return example::flagValue(argc, argv, i); };
  const auto positive = [&](int& i) { return example::flagWhole(argc, argv, i); };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      std::exit(0);
    } else if (a == "--cell") {
      o.cell = value(i);
      if (o.cell != "lstm" && o.cell != "gru") {
        throw std::invalid_argument("--cell must be lstm or gru, got '" + o.cell + "'");
      }
    } else if (a == "--hidden") {
      o.hidden = positive(i);
    } else if (a == "--epochs") {
      o.epochs = positive(i);
    } else if (a == "--lr") {
      o.lr = example::flagNumber(argc, argv, i, 1e-9, 10);
    } else if (a == "--batch") {
      o.batch = positive(i);
      o.batchSet = true;
    } else if (a == "--bptt") {
      o.bptt = positive(i);
      o.bpttSet = true;
    } else if (a == "--clip") {
      o.clip = example::flagNumber(argc, argv, i, 1e-9, 1e9);
    } else if (a == "--samples") {
      o.samples = positive(i);
    } else if (a == "--seed") {
      o.seed = static_cast<unsigned>(positive(i));
    } else if (a == "--csv") {
      o.csv = value(i);
    } else if (a == "--column") {
      o.column = value(i);
    } else if (a == "--inputs") {
      const std::string list = value(i);
      o.inputs.clear();
      std::string::size_type start = 0;
      while (true) {
        const auto comma = list.find(',', start);
        o.inputs.push_back(list.substr(start, comma == std::string::npos ? comma : comma - start));
        if (o.inputs.back().empty()) {
          throw std::invalid_argument("--inputs needs column names separated by commas, got '" +
                                      list + "'");
        }
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
    } else if (a == "--fill") {
      o.fill = example::parseFill(value(i));
    } else if (a == "--horizon") {
      o.horizon = positive(i);
    } else if (a == "--out") {
      o.out = value(i);
    } else if (a == "--metrics") {
      o.metrics = value(i);
    } else if (a == "--precision") {
      const std::string list = value(i);
      o.precisions.clear();
      for (std::size_t at = 0; at <= list.size();) {
        const std::size_t comma = std::min(list.find(',', at), list.size());
        const std::string p = list.substr(at, comma - at);
        if (p != "int8" && p != "bf16") {
          throw std::invalid_argument("--precision must be int8, bf16 or int8,bf16, got '" + list +
                                      "'");
        }
        if (std::find(o.precisions.begin(), o.precisions.end(), p) == o.precisions.end()) {
          o.precisions.push_back(p);
        }
        at = comma + 1;
      }
    } else if (a == "--quick") {
      o.epochs = 3;
    } else if (a == "--distributed") {
      example::requireMpi(a);
      o.distributed = true;
    } else {
      throw std::invalid_argument("unknown option '" + a + "' (see --help)");
    }
  }
  if (o.csv.empty() != o.column.empty()) {
    throw std::invalid_argument("--csv and --column go together");
  }
  if (o.csv.empty() && (!o.inputs.empty() || o.fill != example::Fill::None)) {
    throw std::invalid_argument("--inputs and --fill read a CSV file: give --csv and --column");
  }
  if (o.inputs.empty()) o.inputs = {o.column.empty() ? "x" : o.column};
  return o;
}

using Matrix = Eigen::MatrixXf;

using example::World;

/// The model over the whole series: prediction[t] is its value for the predicted column at
/// t + horizon after reading the inputs (one row each) at 0..t. Inference only (no tape), one
/// sequence.
template <typename Cell>
std::vector<double> predictAll(const Cell& cell, const recurrent::Linear<float>& fc,
                               const Matrix& x,
                               recurrent::Precision precision = recurrent::Precision::Full,
                               recurrent::Precision input = recurrent::Precision::Full) {
  const auto T = x.cols();
  recurrent::Sequence<Cell> seq(cell);
  seq.setPrecision(precision, input);
  seq.infer(x, {static_cast<int>(T)});
  Matrix y;
  fc.forward(seq.output(), y);
  return std::vector<double>(y.data(), y.data() + y.size());
}

double rmse(const std::vector<double>& a, const std::vector<double>& b) {
  double sum = 0;
  for (std::size_t k = 0; k < a.size(); ++k) sum += (a[k] - b[k]) * (a[k] - b[k]);
  return std::sqrt(sum / static_cast<double>(a.size()));
}

template <typename Cell>
int run(const Options& o, const World& world) {
  const auto start = std::chrono::steady_clock::now();
  const auto seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };

  // ---- the data: split in time order 70 / 15 / 15, each column normalised by its training part
  // The predicted column first, then the inputs (read once each; the predicted one may be
  // among them).
  std::vector<std::string> columns{o.column.empty() ? "x" : o.column};
  for (const std::string& name : o.inputs) {
    if (std::find(columns.begin(), columns.end(), name) == columns.end()) columns.push_back(name);
  }
  const std::vector<std::vector<double>> table =
      o.csv.empty() ? std::vector<std::vector<double>>{example::mackeyGlass(o.samples)}
                    : example::readCsvColumns(o.csv, columns, o.fill);
  const std::vector<double>& series = table[0];
  const std::string fileName =
      o.csv.empty() ? "" : std::filesystem::path(o.csv).filename().string();
  const std::string source =
      o.csv.empty() ? "Mackey-Glass (tau = 17)" : fileName + ", column '" + o.column + "'";
  const auto N = static_cast<int>(series.size());
  const int trainEnd = static_cast<int>(0.70 * N);
  const int valEnd = static_cast<int>(0.85 * N);
  const int h = o.horizon;
  // Training pairs: the inputs at k, the target at k + h, both inside the training part.
  const int trainPairs = trainEnd - h;
  const example::Chunks chunking =
      example::fitChunks(trainPairs, {o.batch, o.bptt}, o.batchSet, o.bpttSet, world.size);
  if (trainPairs < chunking.streams * chunking.steps || valEnd - trainEnd < 1 || N - valEnd < 2) {
    throw std::invalid_argument(
        source + ": " + std::to_string(N) + " values are too few: the training part (70%, " +
        std::to_string(trainEnd) + " values) must hold --batch x --bptt = " +
        std::to_string(chunking.streams * chunking.steps) + " steps and the horizon (" +
        std::to_string(h) + "); give smaller --batch and --bptt");
  }
  const auto normalised = [&](const std::vector<double>& v, double& mean, double& scale) {
    mean = 0;
    double var = 0;
    for (int t = 0; t < trainEnd; ++t) mean += v[static_cast<std::size_t>(t)];
    mean /= trainEnd;
    for (int t = 0; t < trainEnd; ++t) {
      var += (v[static_cast<std::size_t>(t)] - mean) * (v[static_cast<std::size_t>(t)] - mean);
    }
    scale = var > 0 ? std::sqrt(var / trainEnd) : 1.0;
    std::vector<float> z(v.size());
    for (std::size_t t = 0; t < v.size(); ++t) z[t] = static_cast<float>((v[t] - mean) / scale);
    return z;
  };
  double mean = 0, scale = 1;
  const std::vector<float> z = normalised(series, mean, scale);
  const auto I = static_cast<int>(o.inputs.size());
  Matrix inputs(I, N);  // the model's inputs, normalised, one row per input column
  for (int i = 0; i < I; ++i) {
    const auto c = static_cast<std::size_t>(
        std::find(columns.begin(), columns.end(), o.inputs[static_cast<std::size_t>(i)]) -
        columns.begin());
    double m = 0, sd = 1;
    const std::vector<float> zi = normalised(table[c], m, sd);
    inputs.row(i) = Eigen::Map<const Eigen::RowVectorXf>(zi.data(), N);
  }
  std::cout << (o.csv.empty() ? source : o.csv + ", column '" + o.column + "'") << ": " << N
            << " values; train " << trainEnd << ", validation " << valEnd - trainEnd << ", test "
            << N - valEnd << "\n";
  if (chunking.streams != o.batch || chunking.steps != o.bptt) {
    std::cout << "a short series: " << chunking.streams << " streams x chunks of " << chunking.steps
              << " steps (--batch " << chunking.streams << " --bptt " << chunking.steps
              << ") instead of " << o.batch << " x " << o.bptt
              << ", so that the training part holds each stream at least twice\n";
  }

  // ---- the model: cell → Linear, PyTorch's initialisation (LSTM forget-gate bias 1) -------------
  std::mt19937 rng(o.seed);
  Cell cell(I, o.hidden);
  recurrent::Linear<float> fc(o.hidden, 1);
  recurrent::InitOptions init;
  if constexpr (Cell::kHasCellState) init.forgetGateBias(1.0);
  recurrent::initialize(cell, rng, init);
  recurrent::initialize(fc, rng);
  auto cellGrads = cell.zeroGradients();
  auto fcGrads = fc.zeroGradients();
  recurrent::ParameterList<float> params;
  params.add(cell.parameters(), cellGrads, "rnn.").add(fc.parameters(), fcGrads, "fc.");
  recurrent::Adam<float> adam(params, recurrent::AdamOptions(o.lr));
  // The streams this process trains: all of them, or its share under --distributed, where every
  // process starts from rank 0's model and the gradients are averaged over the processes,
  // weighted by their steps, into the whole batch's.
  example::StreamShare share(world, params, chunking.streams, chunking.steps);
  const std::vector<int>& mine = share.streams();
  std::cout << o.cell << ", hidden " << o.hidden << ", " << I << (I == 1 ? " input" : " inputs")
            << ", " << h << (h == 1 ? " step" : " steps") << " ahead: " << params.numel()
            << " parameters; " << o.epochs << " epochs of " << chunking.streams
            << " streams x chunks of " << chunking.steps << " steps"
            << (world.size > 1 ? " on " + std::to_string(world.size) + " processes" : "") << "\n";

  // ---- training: truncated BPTT over B parallel streams, the state carried chunk to chunk ----
  recurrent::Sequence<Cell> seq(cell);
  const int B = static_cast<int>(mine.size()), T = chunking.steps;  // this process's streams
  const std::vector<int> lengths(static_cast<std::size_t>(B), T);
  Matrix x(I, T * B), target(1, T * B), y, dy, dh;
  auto bestCell = cell.parameters();
  auto bestFc = fc.parameters();
  double bestVal = 1e300;
  int bestEpoch = 0;
  for (int epoch = 1; epoch <= o.epochs; ++epoch) {
    // Cosine annealing of the learning rate, from lr to lr / 100.
    const double progress = o.epochs > 1 ? (epoch - 1.0) / (o.epochs - 1.0) : 0.0;
    adam.options().lr(o.lr * (0.01 + 0.99 * 0.5 * (1 + std::cos(3.141592653589793 * progress))));
    // Stream b covers the inputs [offset + b·L, offset + (b+1)·L) and their targets h steps
    // later; the offset moves the chunk boundaries from epoch to epoch.
    // (The check above leaves room for at least one chunk per stream at any offset taken here.)
    const int slack = std::min(T - 1, trainPairs - chunking.streams * T);
    const int offset = static_cast<int>(rng() % static_cast<unsigned>(slack + 1));
    const int L = (trainPairs - offset) / chunking.streams;
    const int chunks = L / T;
    typename Cell::State state = cell.zeroState(B);
    double trainLoss = 0;
    for (int c = 0; c < chunks; ++c) {
      for (int t = 0; t < T; ++t) {
        for (int b = 0; b < B; ++b) {
          const int k = offset + mine[static_cast<std::size_t>(b)] * L + c * T + t;
          x.col(t * B + b) = inputs.col(k);
          const int ahead = k + h;
          target(0, t * B + b) = z[static_cast<std::size_t>(ahead)];
        }
      }
      params.zeroGradients();
      seq.forward(x, lengths, state);  // from the previous chunk's final state
      fc.forward(seq.output(), y);
      trainLoss += recurrent::mseLoss(y, target, lengths, dy);
      fc.backward(seq.output(), dy, fcGrads, dh);
      seq.backward(dh, cellGrads);  // stops at the chunk's start: truncated BPTT
      share.average(T * B);
      recurrent::clipGradNorm(params, o.clip);
      adam.step();
      state = seq.finalState();
    }
    trainLoss = world.sum(trainLoss * B) / chunking.streams / std::max(chunks, 1);
    if (!world.root()) continue;  // the other processes only train

    // Validation: the whole series through the model, error on the validation part.
    const std::vector<double> p = predictAll(cell, fc, inputs);
    double val = 0;
    for (int t = trainEnd; t < valEnd; ++t) {
      const double e = p[static_cast<std::size_t>(t - h)] - z[static_cast<std::size_t>(t)];
      val += e * e;
    }
    val /= valEnd - trainEnd;
    const bool best = val < bestVal;
    if (best) {
      bestVal = val;
      bestEpoch = epoch;
      bestCell = cell.parameters();
      bestFc = fc.parameters();
    }
    std::printf("epoch %3d/%d  train %.3e  val %.3e  %6.1f s%s\n", epoch, o.epochs, trainLoss, val,
                seconds(), best ? "  *" : "");
    std::fflush(stdout);
  }

  if (!world.root()) return 0;

  // ---- keep the best model, save it, and load it back into a new one ----------------------
  cell.parameters() = bestCell;
  fc.parameters() = bestFc;
  std::filesystem::create_directories(o.out);
  const std::string modelPath = o.out + "/model.safetensors";
  recurrent::StateDict<float> dict;
  dict.add("rnn.", cell).add("fc.", fc);
  std::string inputList;
  for (const std::string& name : o.inputs) inputList += (inputList.empty() ? "" : ",") + name;
  recurrent::saveSafetensors(
      modelPath, dict, recurrent::Dtype::F32,
      {{"format", "pt"}, {"cell", o.cell}, {"inputs", inputList}, {"horizon", std::to_string(h)}});
  Cell loadedCell(I, o.hidden);
  recurrent::Linear<float> loadedFc(o.hidden, 1);
  recurrent::StateDict<float> loadedDict;
  loadedDict.add("rnn.", loadedCell).add("fc.", loadedFc);
  recurrent::loadSafetensors(modelPath, loadedDict);
  std::cout << "best epoch " << bestEpoch << " (validation loss " << bestVal << "), saved to "
            << modelPath << " and loaded back\n";

  // ---- test: the loaded model against persistence, in the series' own units -----------------
  const std::vector<double> p = predictAll(loadedCell, loadedFc, inputs);
  std::vector<double> truth, prediction, persistence;
  for (int t = valEnd; t < N; ++t) {
    truth.push_back(series[static_cast<std::size_t>(t)]);
    prediction.push_back(p[static_cast<std::size_t>(t - h)] * scale + mean);
    persistence.push_back(series[static_cast<std::size_t>(t - h)]);
  }
  const double testRmse = rmse(prediction, truth);
  const double persistenceRmse = rmse(persistence, truth);
  const double elapsed = seconds();
  std::printf("test RMSE %.5f   persistence RMSE %.5f   (%.1fx better)   %.1f s\n", testRmse,
              persistenceRmse, persistenceRmse / testRmse, elapsed);
  // The same model with int8 or bf16 products (the gate math stays float): both products
  // reduced, then W_hh·h alone (the input product W_ih·x in float).
  std::vector<std::pair<std::string, double>> reducedRmses;
  for (const std::string& name : o.precisions) {
    const recurrent::Precision reducedPrecision =
        name == "int8" ? recurrent::Precision::Int8 : recurrent::Precision::BF16;
    for (const recurrent::Precision input : {reducedPrecision, recurrent::Precision::Full}) {
      const std::vector<double> r =
          predictAll(loadedCell, loadedFc, inputs, reducedPrecision, input);
      std::vector<double> reduced;
      for (int t = valEnd; t < N; ++t) {
        reduced.push_back(r[static_cast<std::size_t>(t - h)] * scale + mean);
      }
      const double reducedRmse = rmse(reduced, truth);
      const bool floatInput = input == recurrent::Precision::Full;
      reducedRmses.emplace_back(floatInput ? name + "_float_input" : name, reducedRmse);
      std::printf("test RMSE in %s%s %.5f   (f32 %.5f, %.2fx; %.1fx better than persistence)\n",
                  name.c_str(), floatInput ? ", input product in f32" : "", reducedRmse, testRmse,
                  reducedRmse / testRmse, persistenceRmse / reducedRmse);
    }
  }

  const std::string csvPath = o.out + "/predictions.csv";
  std::ofstream csv(csvPath);
  csv << "t,truth,prediction,persistence\n";
  csv.precision(9);
  for (std::size_t k = 0; k < truth.size(); ++k) {
    csv << valEnd + static_cast<int>(k) << "," << truth[k] << "," << prediction[k] << ","
        << persistence[k] << "\n";
  }
  // The plot shows the first 300 steps of the test part, where a line can still be followed.
  const std::string svgPath = o.out + "/predictions.svg";
  const auto shown = static_cast<std::ptrdiff_t>(std::min<std::size_t>(truth.size(), 300));
  const std::vector<double> truthShown(truth.begin(), truth.begin() + shown);
  const std::vector<double> predictionShown(prediction.begin(), prediction.begin() + shown);
  char title[300];
  std::snprintf(title, sizeof title, "%s, test part: %s RMSE %.4f, persistence %.4f",
                source.c_str(), o.cell == "lstm" ? "LSTM" : "GRU", testRmse, persistenceRmse);
  example::writeSvgPlot(
      svgPath, title,
      h == 1 ? std::string("step of the test part (one step ahead)")
             : "step of the test part (" + std::to_string(h) + " steps ahead)",
      {{"truth", "#9e9e9e", 5.0, &truthShown}, {"prediction", "#d62728", 1.5, &predictionShown}});
  std::cout << "wrote " << csvPath << " and " << svgPath << "\n";

  if (!o.metrics.empty()) {
    nlohmann::ordered_json metrics = {{"cell", o.cell},
                                      {"hidden", o.hidden},
                                      {"data", source},
                                      {"inputs", o.inputs},
                                      {"horizon", h},
                                      {"batch", chunking.streams},
                                      {"bptt", chunking.steps},
                                      {"epochs", o.epochs},
                                      {"best_epoch", bestEpoch},
                                      {"validation_loss", bestVal},
                                      {"test_rmse", testRmse},
                                      {"persistence_rmse", persistenceRmse},
                                      {"ratio", persistenceRmse / testRmse},
                                      {"seconds", elapsed}};
    for (const auto& [name, value] : reducedRmses) metrics["test_rmse_" + name] = value;
    std::ofstream(o.metrics) << metrics.dump(2) << "\n";
    std::cout << "wrote " << o.metrics << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    const World world = World::start(o.distributed, argc, argv);
    const int status = o.cell == "lstm" ? run<recurrent::LSTMCell<float>>(o, world)
                                        : run<recurrent::GRUCell<float>>(o, world);
    world.finish();
    return status;
  } catch (const std::exception& e) {
    std::cerr << "sequence_predictor: " << e.what() << "\n";
    World::abortAll();  // the other processes would wait forever
    return 1;
  }
}
