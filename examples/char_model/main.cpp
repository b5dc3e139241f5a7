// char_model: a character-level language model. A Stack of LSTM, GRU or layer-normalised LSTM
// or GRU layers reads a text one byte at a time (one-hot) and a Linear layer predicts the next
// byte (softmax cross-entropy); trained with truncated BPTT on parallel streams and, if asked,
// recurrent regularisation; the best model by validation bits per character saved as
// safetensors, loaded back, and sampled with a temperature.
//
//   char_model [--text FILE] [--cell lstm|gru|lnlstm|lngru] [--layers N] [--hidden N]
//              [--dropout P] [--input-dropout P] [--recurrent-dropout P] [--zoneout P]
//              [--weight-drop P] [--sample N --temperature T] [--metrics FILE] ...
//   mpirun -np 2 char_model --distributed ...   (built with MPI: the streams split over the
//                                                processes, data-parallel)
//
// The default text is the GNU GPL version 3, which every Debian system ships
// (/usr/share/common-licenses/GPL-3), so that the example runs with no download.
#include "../common/flags.hpp"
#include "../common/world.hpp"
#include "text.hpp"

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
#include <vector>

namespace {

using Matrix = Eigen::MatrixXf;

struct Options {
  std::string text = "/usr/share/common-licenses/GPL-3";
  std::string cell = "lstm";
  int layers = 2;
  int hidden = 128;
  double dropout = 0.0;                      // between layers
  recurrent::Regularization regularization;  // inside every layer
  int epochs = 20;
  int batch = 16;  // parallel streams of the training text
  int bptt = 32;   // steps per truncated-BPTT chunk
  double lr = 0.005;
  double clip = 1.0;
  double validation = 0.1;  // the share of the text held out, at its end
  int sample = 400;
  double temperature = 0.7;
  std::string prime = "\n";
  unsigned seed = 1;
  std::string out = "char_model_out";
  std::string metrics;
  std::size_t limit = 0;  // use only the first `limit` bytes of the text (0: all)
  bool distributed = false;
};

const char* kUsage = R"(usage: char_model [options]

Trains a character-level language model on a text file: a Stack of recurrent layers reading
one-hot bytes and a Linear layer predicting the next byte (cross-entropy). Adam with a cosine-
annealed learning rate, truncated BPTT on parallel streams with the state carried across
chunks, gradients clipped. Prints an epoch line with train and validation bits per character,
keeps the best model by validation, saves it as safetensors, loads it back and samples text.
The regularisation options act in training only; validation and sampling run without them
(zoneout as its expectation).

  --text FILE         the text to learn (/usr/share/common-licenses/GPL-3)
  --cell C            the recurrent cell: lstm, gru, lnlstm or lngru (layer-normalised) (lstm)
  --layers N          stacked layers (2)
  --hidden N          hidden size of every layer (128)
  --dropout P         dropout between layers (0)
  --input-dropout P   variational dropout of each layer's input, one mask per stream (0)
  --recurrent-dropout P  variational dropout of h as the gates read it (0)
  --zoneout P         zoneout of h and c: each unit keeps its value with probability P (0)
  --weight-drop P     DropConnect on the recurrent weights, one mask per chunk (0)
  --epochs N          passes over the training part (20)
  --batch N           parallel streams the training part is cut into (16)
  --bptt N            steps per truncated-BPTT chunk (32)
  --lr X              Adam's learning rate, cosine-annealed to 1% of it (0.005)
  --clip X            clip the global gradient norm to X (1.0)
  --validation F      the share of the text held out for validation, at its end (0.1)
  --sample N          characters to sample from the best model at the end (400; 0: none)
  --temperature T     sampling temperature: lower is more conservative (0.7)
  --prime TEXT        the text the sample starts from (a newline)
  --seed N            seed of the initialisation, the chunk offsets and the sample (1)
  --out DIR           where model.safetensors and sample.txt go (char_model_out)
  --metrics FILE      write the run's figures as JSON
  --quick             a short run (the first 6000 bytes, 2 epochs, hidden 32) to check that
                      everything works
  --distributed       under mpirun: the streams are split over the processes, the gradients
                      averaged over them (data parallelism); each process draws its own dropout
                      masks (seed + rank); rank 0 prints and writes the files. Needs a build
                      with MPI
)";

Options parse(int argc, char** argv) {
  Options o;
  using example::flagNumber;
  using example::flagValue;
  using example::flagWhole;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      std::exit(0);
    } else if (a == "--text") {
      o.text = flagValue(argc, argv, i);
    } else if (a == "--cell") {
      o.cell = flagValue(argc, argv, i);
      if (o.cell != "lstm" && o.cell != "gru" && o.cell != "lnlstm" && o.cell != "lngru") {
        throw std::invalid_argument("--cell must be lstm, gru, lnlstm or lngru, got '" + o.cell +
                                    "'");
      }
    } else if (a == "--layers") {
      o.layers = flagWhole(argc, argv, i, 1, 16);
    } else if (a == "--hidden") {
      o.hidden = flagWhole(argc, argv, i, 1, 65536);
    } else if (a == "--dropout") {
      o.dropout = flagNumber(argc, argv, i, 0, 0.95);
    } else if (a == "--input-dropout") {
      o.regularization.inputDropout(flagNumber(argc, argv, i, 0, 0.95));
    } else if (a == "--recurrent-dropout") {
      o.regularization.recurrentDropout(flagNumber(argc, argv, i, 0, 0.95));
    } else if (a == "--zoneout") {
      const double z = flagNumber(argc, argv, i, 0, 0.95);
      o.regularization.zoneout(z, z);
    } else if (a == "--weight-drop") {
      o.regularization.weightDrop(flagNumber(argc, argv, i, 0, 0.95));
    } else if (a == "--epochs") {
      o.epochs = flagWhole(argc, argv, i);
    } else if (a == "--batch") {
      o.batch = flagWhole(argc, argv, i);
    } else if (a == "--bptt") {
      o.bptt = flagWhole(argc, argv, i);
    } else if (a == "--lr") {
      o.lr = flagNumber(argc, argv, i, 1e-9, 10);
    } else if (a == "--clip") {
      o.clip = flagNumber(argc, argv, i, 1e-9, 1e9);
    } else if (a == "--validation") {
      o.validation = flagNumber(argc, argv, i, 0.01, 0.5);
    } else if (a == "--sample") {
      o.sample = flagWhole(argc, argv, i, 0);
    } else if (a == "--temperature") {
      o.temperature = flagNumber(argc, argv, i, 0.01, 10);
    } else if (a == "--prime") {
      o.prime = flagValue(argc, argv, i);
    } else if (a == "--seed") {
      o.seed = static_cast<unsigned>(flagWhole(argc, argv, i));
    } else if (a == "--out") {
      o.out = flagValue(argc, argv, i);
    } else if (a == "--metrics") {
      o.metrics = flagValue(argc, argv, i);
    } else if (a == "--distributed") {
      example::requireMpi(a);
      o.distributed = true;
    } else if (a == "--quick") {
      o.limit = 6000;
      o.epochs = 2;
      o.hidden = 32;
      o.batch = 8;
      o.bptt = 32;
      o.sample = 80;
    } else {
      throw std::invalid_argument("unknown option '" + a + "' (see --help)");
    }
  }
  return o;
}

constexpr double kLn2 = 0.6931471805599453;

/// "1 m 05 s" style durations for the epoch line.
std::string duration(double seconds) {
  char buffer[32];
  const auto s = static_cast<long>(std::lround(seconds));
  if (s < 60) {
    std::snprintf(buffer, sizeof buffer, "%ld s", s);
  } else if (s < 3600) {
    std::snprintf(buffer, sizeof buffer, "%ld m %02ld s", s / 60, s % 60);
  } else {
    std::snprintf(buffer, sizeof buffer, "%ld h %02ld m", s / 3600, s / 60 % 60);
  }
  return buffer;
}

/// The regularisation asked for, as ", dropout 0.2, zoneout 0.1" (empty for none).
std::string regularizationText(const Options& o) {
  const recurrent::Regularization& r = o.regularization;
  std::string s;
  const auto add = [&](const char* name, double p) {
    if (p > 0) s += std::string(", ") + name + " " + example::shortNumber(p);
  };
  add("dropout", o.dropout);
  add("input dropout", r.inputDropout());
  add("recurrent dropout", r.recurrentDropout());
  add("zoneout", r.zoneoutH());
  add("weight drop", r.weightDrop());
  return s;
}

template <typename Cell>
struct Model {
  recurrent::Stack<Cell> stack;
  recurrent::Linear<float> fc;
  /// `seed`: of the dropout and regularisation masks.
  Model(int vocab, const Options& o, unsigned seed)
      : stack(vocab, o.hidden,
              recurrent::StackOptions().numLayers(o.layers).dropout(o.dropout).seed(seed)),
        fc(o.hidden, vocab) {
    // Training uses its masks; validation and sampling, the model loaded back included, run
    // zoneout as its expectation.
    stack.setRegularization(o.regularization);
  }
  recurrent::StateDict<float> dict() {
    recurrent::StateDict<float> d;
    d.add("rnn.", stack).add("fc.", fc);
    return d;
  }
};

/// Bits per character of the model on `text[begin, end)`, cut into up to 16 streams of equal
/// length, each read from a zero state. Inference only.
template <typename Cell>
double bitsPerCharacter(Model<Cell>& m, const example::Vocabulary& vocab, const std::string& text,
                        std::size_t begin, std::size_t end) {
  const int B = static_cast<int>(std::min<std::size_t>(16, (end - begin - 1) / 64 + 1));
  const int T = static_cast<int>((end - begin - 1) / static_cast<std::size_t>(B));
  Matrix x(vocab.size(), static_cast<Eigen::Index>(T) * B), logits;
  std::vector<int> targets(static_cast<std::size_t>(T) * static_cast<std::size_t>(B));
  for (int t = 0; t < T; ++t) {
    for (int b = 0; b < B; ++b) {
      const std::size_t k = begin + static_cast<std::size_t>(b) * static_cast<std::size_t>(T) +
                            static_cast<std::size_t>(t);
      const int col = t * B + b;
      example::setOneHot(x, col, vocab.index(text[k]));
      targets[static_cast<std::size_t>(col)] = vocab.index(text[k + 1]);
    }
  }
  const std::vector<int> lengths(static_cast<std::size_t>(B), T);
  m.stack.infer(x, lengths);
  m.fc.forward(m.stack.output(), logits);
  return recurrent::crossEntropyLoss(logits, targets, lengths) / kLn2;
}

/// `count` bytes drawn from the model one at a time, after it has read `prime`.
template <typename Cell>
std::string sampleText(Model<Cell>& m, const example::Vocabulary& vocab, const std::string& prime,
                       int count, double temperature, std::mt19937_64& rng) {
  Matrix x(vocab.size(), 1), logits;
  std::vector<typename Cell::State> state;  // empty: zero
  const std::vector<int> one{1};
  std::string out;
  int next = -1;
  const auto read = [&](int k) {
    example::setOneHot(x, 0, k);
    m.stack.infer(x, one, state);
    state = m.stack.finalState();
    m.fc.forward(m.stack.output(), logits);
  };
  for (const char c : prime) read(vocab.index(c));
  for (int n = 0; n < count; ++n) {
    next = example::sampleSoftmax(logits.col(0), temperature, rng);
    out += vocab.byte(next);
    read(next);
  }
  return out;
}

template <typename Cell>
int run(const Options& o, const example::World& world) {
  const auto start = std::chrono::steady_clock::now();
  const auto seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };

  // ---- the text: the training part first, the validation part at its end ------------------
  std::string text = example::readText(o.text, 2000);
  if (o.limit > 0 && text.size() > o.limit) text.resize(o.limit);
  const example::Vocabulary vocab(text);
  for (const char c : o.prime) {
    if (vocab.index(c) < 0) {
      throw std::invalid_argument("--prime holds a character the text does not (byte " +
                                  std::to_string(static_cast<unsigned char>(c)) + ")");
    }
  }
  const auto trainEnd =
      static_cast<std::size_t>(std::lround(static_cast<double>(text.size()) * (1 - o.validation)));
  const int B = o.batch, T = o.bptt;
  if (trainEnd - 1 < 2 * static_cast<std::size_t>(B) * static_cast<std::size_t>(T)) {
    throw std::invalid_argument(
        o.text + ": the training part (" + std::to_string(trainEnd) +
        " bytes) must hold every stream at least twice: --batch x --bptt x 2 = " +
        std::to_string(2 * B * T) + "; give smaller --batch or --bptt");
  }
  std::cout << o.text << ": " << text.size() << " bytes, " << vocab.size() << " distinct; train "
            << trainEnd << ", validation " << text.size() - trainEnd << "\n";

  // ---- the model: Stack → Linear, PyTorch's initialisation --------------------------------
  // Every process draws the same initialisation and chunk offsets from `rng` (rank 0's
  // parameters are broadcast all the same), and its own masks from seed + rank.
  std::mt19937 rng(o.seed);
  Model<Cell> m(vocab.size(), o, o.seed + static_cast<unsigned>(world.rank));
  m.stack.initialize(rng);
  recurrent::initialize(m.fc, rng);
  auto grads = m.stack.zeroGradients();
  auto fcGrads = m.fc.zeroGradients();
  recurrent::ParameterList<float> params;
  params.add(m.stack.parameters(), grads, "rnn.").add(m.fc.parameters(), fcGrads, "fc.");
  recurrent::Adam<float> adam(params, recurrent::AdamOptions(o.lr));
  // Before the processes' first collective call: an error here ends them all at once.
  const std::string modelPath = o.out + "/model.safetensors";
  if (world.root()) std::filesystem::create_directories(o.out);
  // The streams this process trains: all of them, or its share under --distributed.
  example::StreamShare share(world, params, B, T);
  const std::vector<int>& mine = share.streams();
  const int Bm = static_cast<int>(mine.size());
  std::cout << o.layers << " x " << o.cell << " " << o.hidden << " -> linear " << vocab.size()
            << ": " << params.numel() << " parameters; " << o.epochs << " epochs of " << B
            << " streams x chunks of " << T << " steps" << regularizationText(o)
            << (world.size > 1 ? " on " + std::to_string(world.size) + " processes" : "") << "\n";

  // ---- training: truncated BPTT over B parallel streams, the state carried chunk to chunk ----
  const std::vector<int> lengths(static_cast<std::size_t>(Bm), T);
  Matrix x(vocab.size(), static_cast<Eigen::Index>(T) * Bm), logits, dLogits, dh;
  std::vector<int> targets(static_cast<std::size_t>(T) * static_cast<std::size_t>(Bm));
  double bestVal = 1e300;
  int bestEpoch = 0;
  std::vector<double> trainCurve, valCurve;
  for (int epoch = 1; epoch <= o.epochs; ++epoch) {
    const double progress = o.epochs > 1 ? (epoch - 1.0) / (o.epochs - 1.0) : 0.0;
    adam.options().lr(o.lr * (0.01 + 0.99 * 0.5 * (1 + std::cos(3.141592653589793 * progress))));
    // Stream b reads [offset + b·L, offset + (b+1)·L); the offset moves the chunk boundaries.
    const auto offset = static_cast<std::size_t>(rng() % static_cast<unsigned>(T));
    const std::size_t L = (trainEnd - 1 - offset) / static_cast<std::size_t>(B);
    const std::size_t chunks = L / static_cast<std::size_t>(T);
    std::vector<typename Cell::State> state;  // empty: zero
    double trainLoss = 0;
    for (std::size_t c = 0; c < chunks; ++c) {
      for (int t = 0; t < T; ++t) {
        for (int b = 0; b < Bm; ++b) {
          const std::size_t k = offset + static_cast<std::size_t>(mine[std::size_t(b)]) * L +
                                c * static_cast<std::size_t>(T) + static_cast<std::size_t>(t);
          const int col = t * Bm + b;
          example::setOneHot(x, col, vocab.index(text[k]));
          targets[static_cast<std::size_t>(col)] = vocab.index(text[k + 1]);
        }
      }
      params.zeroGradients();
      m.stack.forward(x, lengths, state);
      m.fc.forward(m.stack.output(), logits);
      trainLoss += recurrent::crossEntropyLoss(logits, targets, lengths, dLogits);
      m.fc.backward(m.stack.output(), dLogits, fcGrads, dh);
      m.stack.backward(dh, grads);
      share.average(static_cast<double>(T) * Bm);
      recurrent::clipGradNorm(params, o.clip);
      adam.step();
      state = m.stack.finalState();
    }
    // The mean over the streams of every process (each chunk's loss is its streams' mean).
    const double trainBpc = world.sum(trainLoss * Bm) / B / static_cast<double>(chunks) / kLn2;
    if (!world.root()) continue;  // the other processes only train
    const double valBpc = bitsPerCharacter(m, vocab, text, trainEnd, text.size());
    trainCurve.push_back(trainBpc);
    valCurve.push_back(valBpc);
    const bool best = valBpc < bestVal;
    if (best) {
      bestVal = valBpc;
      bestEpoch = epoch;
      recurrent::saveSafetensors(modelPath, m.dict(), recurrent::Dtype::F32,
                                 {{"format", "pt"},
                                  {"cell", o.cell},
                                  {"layers", std::to_string(o.layers)},
                                  {"vocabulary", vocab.codes()}});
    }
    const double elapsed = seconds();
    std::printf("epoch %3d/%d  train %.3f bpc  val %.3f bpc  %s elapsed, %s to go%s\n", epoch,
                o.epochs, trainBpc, valBpc, duration(elapsed).c_str(),
                duration(elapsed / epoch * (o.epochs - epoch)).c_str(), best ? "  *" : "");
    std::fflush(stdout);
  }

  if (!world.root()) return 0;

  // ---- the best model, loaded back from its file into a new one, and a sample of it ----------
  Model<Cell> loaded(vocab.size(), o, o.seed);
  recurrent::loadSafetensors(modelPath, loaded.dict());
  const double loadedVal = bitsPerCharacter(loaded, vocab, text, trainEnd, text.size());
  std::printf("best epoch %d: validation %.3f bpc; saved to %s and loaded back (%.3f bpc)\n",
              bestEpoch, bestVal, modelPath.c_str(), loadedVal);
  std::string sample;
  if (o.sample > 0) {
    std::mt19937_64 sampler(o.seed);
    sample = sampleText(loaded, vocab, o.prime, o.sample, o.temperature, sampler);
    std::ofstream(o.out + "/sample.txt") << o.prime << sample << "\n";
    std::cout << "sample (temperature " << example::shortNumber(o.temperature) << "):\n"
              << o.prime << sample << "\n";
  }
  const double elapsed = seconds();
  std::printf("%.1f s\n", elapsed);

  if (!o.metrics.empty()) {
    const nlohmann::ordered_json metrics = {
        {"text", o.text},
        {"bytes", text.size()},
        {"vocabulary", vocab.size()},
        {"cell", o.cell},
        {"layers", o.layers},
        {"hidden", o.hidden},
        {"dropout", o.dropout},
        {"input_dropout", o.regularization.inputDropout()},
        {"recurrent_dropout", o.regularization.recurrentDropout()},
        {"zoneout", o.regularization.zoneoutH()},
        {"weight_drop", o.regularization.weightDrop()},
        {"epochs", o.epochs},
        {"best_epoch", bestEpoch},
        {"validation_bpc", bestVal},
        {"loaded_validation_bpc", loadedVal},
        {"train_bpc_by_epoch", trainCurve},
        {"validation_bpc_by_epoch", valCurve},
        {"seconds", elapsed}};
    std::ofstream(o.metrics) << metrics.dump(2) << "\n";
    std::cout << "wrote " << o.metrics << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    const example::World world = example::World::start(o.distributed, argc, argv);
    int status = 0;
    if (o.cell == "gru") {
      status = run<recurrent::GRUCell<float>>(o, world);
    } else if (o.cell == "lnlstm") {
      status = run<recurrent::LayerNormLSTMCell<float>>(o, world);
    } else if (o.cell == "lngru") {
      status = run<recurrent::LayerNormGRUCell<float>>(o, world);
    } else {
      status = run<recurrent::LSTMCell<float>>(o, world);
    }
    world.finish();
    return status;
  } catch (const std::exception& e) {
    std::cerr << "char_model: " << e.what() << "\n";
    example::World::abortAll();  // the other processes would wait forever
    return 1;
  }
}
