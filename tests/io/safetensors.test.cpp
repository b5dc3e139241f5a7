// Weight files: models saved from PyTorch load here and reproduce PyTorch's outputs; a model
// saved here is the committed file PyTorch was checked against (tests/generate_training_
// fixtures.py); round trips; and every kind of bad file is refused without touching the model.
#include "catch.hpp"
#include "support.hpp"

#include <recurrent/io/safetensors.hpp>
#include <recurrent/recurrent.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>

using namespace test;
using recurrent::Dtype;
using recurrent::SafetensorsError;
using recurrent::StateDict;

namespace {

/// Every tensor of a state dict, copied: to check that a failed load changed nothing.
template <typename S>
std::vector<Mat<S>> snapshotOf(const StateDict<S>& dict) {
  std::vector<Mat<S>> out;
  for (const auto& e : dict)
    out.push_back(Eigen::Map<const Mat<S>>(e.tensor.data(), e.tensor.rows(), e.tensor.cols()));
  return out;
}

std::string dataPath(const std::string& name) {
  return std::string(RECURRENT_TEST_DATA_DIR) + "/" + name;
}

std::vector<std::uint8_t> readBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(in), {});
}

/// A recurrent layer and an output layer, named rnn.* (or bare) and fc.* as in the fixtures.
template <typename Cell>
struct Model {
  using S = typename Cell::Scalar;
  Cell cell;
  recurrent::Linear<S> fc;
  StateDict<S> dict;
  Model(Index I, Index H, Index O, const std::string& rnnPrefix = "rnn.") : cell(I, H), fc(H, O) {
    dict.add(rnnPrefix, cell).add("fc.", fc);
  }
  Mat<S> run(const Mat<S>& x, const std::vector<int>& lengths) const {
    recurrent::Sequence<Cell> seq(cell);
    seq.infer(x, lengths);
    Mat<S> y;
    fc.forward(seq.output(), y);
    return y;
  }
  /// Every parameter, to check that a failed load changed nothing.
  std::vector<Mat<S>> snapshot() const { return snapshotOf<S>(dict); }
};

template <typename Cell>
double outputsAgainstTorch(const std::string& file, const std::string& io,
                           const std::string& rnnPrefix = "rnn.") {
  using S = typename Cell::Scalar;
  Model<Cell> m(3, 5, 2, rnnPrefix);
  recurrent::loadSafetensors(dataPath(file), m.dict);
  const Fixture f(io);
  const double d = errorAgainst(m.run(f.columns("x").cast<S>(), f.lengths()), f.columns("y"));
  std::cout << "safetensors " << file << " -> " << (sizeof(S) == 4 ? "float" : "double")
            << " model: outputs differ from PyTorch's by " << d << "\n";
  return d;
}

}  // namespace

TEST_CASE("models saved from PyTorch load and reproduce PyTorch's outputs",
          "[safetensors][torch]") {
  using recurrent::GRUCell;
  using recurrent::LSTMCell;
  using recurrent::RNNCell;
  // F32 files into float models.
  CHECK(outputsAgainstTorch<LSTMCell<float>>("torch_lstm_f32.safetensors", "torch_lstm_f32") <=
        1e-5);
  CHECK(outputsAgainstTorch<GRUCell<float>>("torch_gru_f32.safetensors", "torch_gru_f32", "") <=
        1e-5);
  CHECK(outputsAgainstTorch<RNNCell<float>>("torch_rnn_f32.safetensors", "torch_rnn_f32") <= 1e-5);
  // F64 files into double models.
  CHECK(outputsAgainstTorch<LSTMCell<double>>("torch_lstm_f64.safetensors", "torch_lstm_f64") <=
        1e-12);
  CHECK(outputsAgainstTorch<GRUCell<double>>("torch_gru_f64.safetensors", "torch_gru_f64", "") <=
        1e-12);
  CHECK(outputsAgainstTorch<RNNCell<double>>("torch_rnn_f64.safetensors", "torch_rnn_f64") <=
        1e-12);
  // F32 files into double models: the f64 fixtures ran PyTorch in double on the same weights.
  CHECK(outputsAgainstTorch<LSTMCell<double>>("torch_lstm_f32.safetensors", "torch_lstm_f64") <=
        1e-12);
  CHECK(outputsAgainstTorch<GRUCell<double>>("torch_gru_f32.safetensors", "torch_gru_f64", "") <=
        1e-12);
  // And an F64 file into a float model.
  CHECK(outputsAgainstTorch<LSTMCell<float>>("torch_lstm_f64.safetensors", "torch_lstm_f64") <=
        1e-5);
}

TEMPLATE_TEST_CASE("an nn.LSTM with proj_size saved from PyTorch loads and reproduces its outputs",
                   "[safetensors][torch][projection]", float, double) {
  using S = TestType;
  using Cell = recurrent::LSTMCell<S>;
  for (const char* code : {"f32", "f64"}) {
    // nn.LSTM(3, 5, proj_size=3) + nn.Linear(3, 2): rnn.weight_hr_l0 is 3 x 5.
    Cell cell(3, 5, 3);
    recurrent::Linear<S> fc(3, 2);
    StateDict<S> dict;
    dict.add("rnn.", cell).add("fc.", fc);
    CHECK(dict.find("rnn.weight_hr_l0") != nullptr);
    recurrent::loadSafetensors(dataPath(std::string("torch_lstm_proj_") + code + ".safetensors"),
                               dict);
    CHECK(cell.parameters().weight_hr.cwiseAbs().maxCoeff() > S(0.01));
    const Fixture f(std::string("torch_lstm_proj_") + code);
    recurrent::Sequence<Cell> seq(cell);
    seq.infer(f.columns("x").cast<S>(), f.lengths());
    Mat<S> y;
    fc.forward(seq.output(), y);
    const double d = errorAgainst(y, f.columns("y"));
    std::cout << "safetensors torch_lstm_proj_" << code << " -> "
              << (sizeof(S) == 4 ? "float" : "double")
              << " model: outputs differ from PyTorch's by " << d << "\n";
    // An f32 file into a double model reproduces the f32 run to float rounding only.
    CHECK(d <= (sizeof(S) == 4 || std::string(code) == "f32" ? 1e-5 : 1e-12));
    // A model without the projection has no weight_hr_l0: the file does not load into it.
    recurrent::LSTMCell<S> plain(3, 5);
    recurrent::Linear<S> fc5(5, 2);
    StateDict<S> plainDict;
    plainDict.add("rnn.", plain).add("fc.", fc5);
    CHECK_THROWS_AS(
        recurrent::loadSafetensors(
            dataPath(std::string("torch_lstm_proj_") + code + ".safetensors"), plainDict),
        std::invalid_argument);
  }
}

TEST_CASE("peephole weights are saved and loaded by their own names", "[safetensors][peephole]") {
  recurrent::PeepholeLSTMCell<double> a(2, 3), b(2, 3);
  std::mt19937 rng(4);
  randomize(a, rng);
  StateDict<double> da, db;
  da.add("rnn.", a);
  db.add("rnn.", b);
  CHECK(da.find("rnn.peephole_i_l0") != nullptr);
  CHECK(da.find("rnn.peephole_o_l0")->tensor.rank() == 1);
  const std::vector<std::uint8_t> bytes = recurrent::serializeSafetensors(da);
  recurrent::loadSafetensors(bytes.data(), bytes.size(), db);
  CHECK(b.parameters().peephole_i == a.parameters().peephole_i);
  CHECK(b.parameters().peephole_f == a.parameters().peephole_f);
  CHECK(b.parameters().peephole_o == a.parameters().peephole_o);
  CHECK(b.parameters().weight_hh == a.parameters().weight_hh);
}

namespace {

template <typename Cell>
void savedHereLoadsInTorch(const std::string& kind) {
  // A model made here from a seed: saved, it must be the committed file byte for byte, and
  // PyTorch's outputs for that file (recurrent_<kind>_torch.txt) must be ours.
  Model<Cell> m(3, 4, 2);
  std::mt19937 rng(2024);
  recurrent::InitOptions options;
  if constexpr (Cell::kHasCellState) options.forgetGateBias(1.0);
  recurrent::initialize(m.cell, rng, options);
  recurrent::initialize(m.fc, rng);
  const std::string file = dataPath("recurrent_" + kind + "_f32.safetensors");
  const std::vector<std::uint8_t> bytes = recurrent::serializeSafetensors(m.dict);
  if (std::getenv("RECURRENT_UPDATE_FIXTURES") != nullptr) {
    recurrent::saveSafetensors(file, m.dict);
    std::cout << "wrote " << file << "\n";
  }
  const bool sameBytes = bytes == readBytes(file);
  CHECK(sameBytes);
  const Fixture f("recurrent_" + kind + "_torch");
  const double d = errorAgainst(m.run(f.columns("x").cast<float>(), f.lengths()), f.columns("y"));
  std::cout << "safetensors " << file << " -> PyTorch: outputs differ by " << d << "\n";
  CHECK(d <= 1e-5);
}

}  // namespace

TEST_CASE("a model saved here loads in PyTorch and gives the same outputs",
          "[safetensors][torch]") {
  savedHereLoadsInTorch<recurrent::LSTMCell<float>>("lstm");
  savedHereLoadsInTorch<recurrent::GRUCell<float>>("gru");
}

TEST_CASE("save and load round trips", "[safetensors]") {
  std::mt19937 rng(5);
  Model<recurrent::LSTMCell<double>> a(2, 3, 1), b(2, 3, 1);
  recurrent::initialize(a.cell, rng);
  recurrent::initialize(a.fc, rng);
  const std::string path = "roundtrip_test.safetensors";
  recurrent::saveSafetensors(path, a.dict);  // F64: exact
  recurrent::loadSafetensors(path, b.dict);
  CHECK(b.snapshot() == a.snapshot());

  // Written in F32 from a double model, read into a float model: the float rounding of each.
  recurrent::saveSafetensors(path, a.dict, Dtype::F32);
  Model<recurrent::LSTMCell<float>> c(2, 3, 1);
  recurrent::loadSafetensors(path, c.dict);
  CHECK(c.cell.parameters().weight_hh == a.cell.parameters().weight_hh.cast<float>());
  CHECK(c.fc.parameters().bias == a.fc.parameters().bias.cast<float>());

  const recurrent::SafetensorsInfo info = recurrent::inspectSafetensors(path);
  REQUIRE(info.tensors.size() == 6);
  CHECK(info.metadata.at("format") == "pt");
  CHECK(info.tensors[0].name == "fc.bias");  // sorted by name
  CHECK(info.tensors[0].dtype == "F32");
  CHECK(info.tensors[0].shape == std::vector<std::uint64_t>{1});
  CHECK(info.tensors[5].name == "rnn.weight_ih_l0");
  CHECK(info.tensors[5].shape == std::vector<std::uint64_t>{12, 2});
  // The header is padded to 8 bytes and the data of each tensor is row-major.
  const std::vector<std::uint8_t> bytes = readBytes(path);
  CHECK(recurrent::detail::readLE(bytes.data(), 8) % 8 == 0);
  std::remove(path.c_str());

  CHECK_THROWS_WITH(recurrent::serializeSafetensors(a.dict, Dtype::F16),
                    Contains("files are written in F32 or F64, got F16"));
  CHECK_THROWS_AS(recurrent::saveSafetensors("no/such/directory/x.safetensors", a.dict),
                  SafetensorsError);
  CHECK_THROWS_WITH(recurrent::saveSafetensors("no/such/directory/x.safetensors", a.dict),
                    Contains("no/such/directory/x.safetensors") && Contains("cannot open"));
}

namespace {

/// A file from a header and data written by hand.
std::vector<std::uint8_t> makeFile(const std::string& header,
                                   const std::vector<std::uint8_t>& data = {}) {
  std::vector<std::uint8_t> out(8 + header.size() + data.size());
  recurrent::detail::writeLE(out.data(), header.size(), 8);
  std::copy(header.begin(), header.end(), out.begin() + 8);
  std::copy(data.begin(), data.end(), out.begin() + 8 + static_cast<std::ptrdiff_t>(header.size()));
  return out;
}

}  // namespace

TEST_CASE("F16 and BF16 tensors load into float and double models", "[safetensors]") {
  Eigen::VectorXd v(5);
  Eigen::VectorXf w(2);
  StateDict<double> dict;
  dict.addTensor("h", v);
  // 1, -2, 0.5, 65504 (the largest half), 2^-24 (the smallest subnormal)
  const std::vector<std::uint8_t> half = {0x00, 0x3c, 0x00, 0xc0, 0x00,
                                          0x38, 0xff, 0x7b, 0x01, 0x00};
  const std::vector<std::uint8_t> halfFile =
      makeFile(R"({"h":{"dtype":"F16","shape":[5],"data_offsets":[0,10]}})", half);
  recurrent::loadSafetensors(halfFile.data(), halfFile.size(), dict, "half", true);
  CHECK(v(0) == 1.0);
  CHECK(v(1) == -2.0);
  CHECK(v(2) == 0.5);
  CHECK(v(3) == 65504.0);
  CHECK(v(4) == std::ldexp(1.0, -24));
  StateDict<float> dict2;
  dict2.addTensor("b", w);
  const std::vector<std::uint8_t> bf16 = {0x80, 0x3f, 0x20, 0xc0};  // 1, -2.5
  const std::vector<std::uint8_t> file =
      makeFile(R"({"b":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}})", bf16);
  recurrent::loadSafetensors(file.data(), file.size(), dict2);
  CHECK(w(0) == 1.0f);
  CHECK(w(1) == -2.5f);
}

namespace {

struct BadFile {
  std::string what;
  std::vector<std::uint8_t> bytes;
  std::string message;
};

std::vector<std::uint8_t> withHeaderLength(std::vector<std::uint8_t> bytes, std::uint64_t n) {
  recurrent::detail::writeLE(bytes.data(), n, 8);
  return bytes;
}

}  // namespace

TEST_CASE("bad files throw naming the file and the problem, and leave the model as it was",
          "[safetensors][errors]") {
  using M = Model<recurrent::GRUCell<float>>;
  M source(2, 3, 1);
  std::mt19937 rng(9);
  recurrent::initialize(source.cell, rng);
  recurrent::initialize(source.fc, rng);
  const std::vector<std::uint8_t> good = recurrent::serializeSafetensors(source.dict);
  const auto goodHeaderLength = recurrent::detail::readLE(good.data(), 8);
  const std::vector<std::uint8_t> data(
      good.begin() + 8 + static_cast<std::ptrdiff_t>(goodHeaderLength), good.end());

  // A tensor list by hand, the data of `good` behind it (4 bytes a float; 9·2 + 9·3 + 9 + 9 + 3 +
  // 1).
  auto header = [&](const std::string& fcBias) {
    return std::string(
               R"({"rnn.weight_ih_l0":{"dtype":"F32","shape":[9,2],"data_offsets":[0,72]},)") +
           R"("rnn.weight_hh_l0":{"dtype":"F32","shape":[9,3],"data_offsets":[72,180]},)" +
           R"("rnn.bias_ih_l0":{"dtype":"F32","shape":[9],"data_offsets":[180,216]},)" +
           R"("rnn.bias_hh_l0":{"dtype":"F32","shape":[9],"data_offsets":[216,252]},)" +
           R"("fc.weight":{"dtype":"F32","shape":[1,3],"data_offsets":[252,264]},)" + fcBias + "}";
  };
  const std::string okBias = R"("fc.bias":{"dtype":"F32","shape":[1],"data_offsets":[264,268]})";
  REQUIRE(data.size() == 268);
  {
    M m(2, 3, 1);  // the hand-made header is right
    const auto bytes = makeFile(header(okBias), data);
    recurrent::loadSafetensors(bytes.data(), bytes.size(), m.dict);
    CHECK(m.snapshot() == source.snapshot());
  }

  const std::vector<BadFile> cases = {
      {"truncated", std::vector<std::uint8_t>(good.begin(), good.begin() + 5),
       "file is truncated: 5 bytes, too short for the 8-byte header length"},
      {"truncated data", std::vector<std::uint8_t>(good.begin(), good.end() - 3),
       "lie outside the data (265 bytes)"},
      {"header past the end", withHeaderLength(good, good.size()), "runs past the end of the file"},
      {"header over the limit", withHeaderLength(good, 200ull * 1024 * 1024),
       "header length 209715200 bytes is over the limit of 104857600 bytes (100 MB)"},
      {"not JSON", makeFile("{\"rnn.weight_ih_l0\": {\"dtype\": ", data),
       "header is not valid JSON"},
      {"not an object", makeFile("[1, 2, 3]", data), "header is not a JSON object"},
      {"missing tensor",
       makeFile(header(R"("x":{"dtype":"F32","shape":[1],"data_offsets":[264,268]})"), data),
       "missing tensor 'fc.bias' (the file holds: fc.weight, rnn.bias_hh_l0"},
      {"wrong shape",
       makeFile(header(R"("fc.bias":{"dtype":"F32","shape":[1,1],"data_offsets":[264,268]})"),
                data),
       "tensor 'fc.bias' has shape [1, 1], the model needs [1]"},
      {"wrong dtype",
       makeFile(header(R"("fc.bias":{"dtype":"I32","shape":[1],"data_offsets":[264,268]})"), data),
       "tensor 'fc.bias' has dtype I32; a model loads F32, F64, F16 or BF16"},
      {"unknown dtype",
       makeFile(header(R"("fc.bias":{"dtype":"F31","shape":[1],"data_offsets":[264,268]})"), data),
       "tensor 'fc.bias': unknown dtype F31"},
      {"offsets overlap",
       makeFile(header(R"("fc.bias":{"dtype":"F32","shape":[1],"data_offsets":[260,264]})"), data),
       "tensors 'fc.weight' and 'fc.bias' overlap in the data"},
      {"offsets outside",
       makeFile(header(R"("fc.bias":{"dtype":"F32","shape":[1],"data_offsets":[268,272]})"), data),
       "tensor 'fc.bias': data_offsets [268, 272] lie outside the data (268 bytes)"},
      {"offsets reversed",
       makeFile(header(R"("fc.bias":{"dtype":"F32","shape":[1],"data_offsets":[268,264]})"), data),
       "data_offsets [268, 264] end before they begin"},
      {"size mismatch",
       makeFile(header(R"("fc.bias":{"dtype":"F64","shape":[1],"data_offsets":[264,268]})"), data),
       "hold 4 bytes, but F64 of shape [1] needs 8"},
      {"shape too big",
       makeFile(
           header(
               R"("fc.bias":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[264,268]})"),
           data),
       "needs more than the whole data"},
      {"negative shape",
       makeFile(header(R"("fc.bias":{"dtype":"F32","shape":[-1],"data_offsets":[264,268]})"), data),
       "shape must hold non-negative integers, got a number"},
      {"fields missing", makeFile(header(R"("fc.bias":{"dtype":"F32","shape":[1]})"), data),
       "tensor 'fc.bias' needs dtype, shape and data_offsets"},
      {"unexpected tensor",
       makeFile(header(okBias + R"(,"extra":{"dtype":"F32","shape":[0],"data_offsets":[0,0]})"),
                data),
       "unexpected tensor 'extra'"},
      {"duplicate name",
       makeFile(
           header(okBias + R"(,"fc.bias":{"dtype":"F32","shape":[1],"data_offsets":[264,268]})"),
           data),
       "header names 'fc.bias' twice"},
      {"bad metadata", makeFile(header(okBias + R"(,"__metadata__":{"format":1})"), data),
       "__metadata__ value of 'format' must be a string"},
  };
  for (const BadFile& c : cases) {
    M m(2, 3, 1);
    recurrent::initialize(m.cell, rng);
    const auto before = m.snapshot();
    INFO(c.what);
    CHECK_THROWS_AS(
        recurrent::loadSafetensors(c.bytes.data(), c.bytes.size(), m.dict, "bad.safetensors"),
        SafetensorsError);
    CHECK_THROWS_WITH(
        recurrent::loadSafetensors(c.bytes.data(), c.bytes.size(), m.dict, "bad.safetensors"),
        Contains("recurrent: loadSafetensors: bad.safetensors: ") && Contains(c.message));
    CHECK(m.snapshot() == before);
  }

  // An unexpected tensor is fine when not strict.
  M m(2, 3, 1);
  const auto extra = makeFile(
      header(okBias + R"(,"extra":{"dtype":"F32","shape":[0],"data_offsets":[0,0]})"), data);
  CHECK_NOTHROW(recurrent::loadSafetensors(extra.data(), extra.size(), m.dict, "extra", false));
  CHECK(m.snapshot() == source.snapshot());

  // Files that cannot be read at all.
  CHECK_THROWS_WITH(recurrent::loadSafetensors("no_such_file.safetensors", m.dict),
                    Contains("no_such_file.safetensors: cannot open the file"));
  CHECK_THROWS_WITH(recurrent::loadSafetensors(std::string(RECURRENT_TEST_DATA_DIR), m.dict),
                    Contains(RECURRENT_TEST_DATA_DIR) && Contains("is not a regular file"));
  // Failed loads from files name them too.
  std::ofstream("truncated_test.safetensors", std::ios::binary).write("\x10\x00\x00", 3);
  CHECK_THROWS_WITH(
      recurrent::loadSafetensors("truncated_test.safetensors", m.dict),
      Contains("loadSafetensors: truncated_test.safetensors: file is truncated: 3 bytes"));
  std::remove("truncated_test.safetensors");
  CHECK(m.snapshot() == source.snapshot());
}

// ---- stacks: multi-layer and bidirectional modules
// ------------------------------------------------

namespace {

/// A Stack and an output layer, named rnn.* and fc.* as in tests/generate_stack_fixtures.py.
template <typename Cell>
struct StackModel {
  using S = typename Cell::Scalar;
  recurrent::Stack<Cell> rnn;
  recurrent::Linear<S> fc;
  StateDict<S> dict;
  explicit StackModel(const recurrent::StackOptions& options)
      : rnn(/*inputSize=*/3, /*hiddenSize=*/4, options), fc(rnn.outputSize(), 2) {
    dict.add("rnn.", rnn).add("fc.", fc);
  }
  Mat<S> run(const Mat<S>& x, const std::vector<int>& lengths) {
    rnn.infer(x, lengths);
    Mat<S> y;
    fc.forward(rnn.output(), y);
    return y;
  }
  std::vector<Mat<S>> snapshot() const { return snapshotOf<S>(dict); }
};

/// Loads a stack + Linear saved from PyTorch and compares outputs and every gradient of the
/// loss sum(fc(y) ⊙ w) with PyTorch's.
template <typename Cell>
double stackFileAgainstTorch(const std::string& name, const recurrent::StackOptions& options) {
  using S = typename Cell::Scalar;
  StackModel<Cell> m(options);
  recurrent::loadSafetensors(dataPath(name + ".safetensors"), m.dict);
  const Fixture f(name);
  const std::vector<int> lengths = f.lengths();
  const Mat<S> x = f.columns("x").cast<S>();
  double worst = errorAgainst(m.run(x, lengths), f.columns("y"));
  // PyTorch ran in eval() mode: no dropout in the training forward either.
  m.rnn.setDropout(0.0);
  m.rnn.forward(x, lengths);
  Mat<S> y, dh;
  m.fc.forward(m.rnn.output(), y);
  worst = std::max(worst, errorAgainst(y, f.columns("y")));
  auto fcGrads = m.fc.zeroGradients();
  auto rnnGrads = m.rnn.zeroGradients();
  m.fc.backward(m.rnn.output(), f.columns("w").cast<S>(), fcGrads, dh);
  m.rnn.backward(dh, rnnGrads);
  int tensors = 0;
  auto compare = [&](const std::string& prefix) {
    return [&, prefix](const char* tensor, const auto& g) {
      const double d = errorAgainst(g, f.torch2d("grad." + prefix + tensor));
      INFO(name << ": gradient of " << prefix << tensor << " differs by " << d);
      CHECK(d <= (sizeof(S) == 4 ? 1e-5 : 1e-10));
      worst = std::max(worst, d);
      ++tensors;
    };
  };
  rnnGrads.forEach(compare("rnn."));
  fcGrads.forEach(compare("fc."));
  CHECK(tensors == int(recurrent::StateDict<S>().add("", m.rnn).add("fc.", m.fc).size()));
  worst = std::max(worst, errorAgainst(m.rnn.inputGradient(), f.columns("grad_x")));
  std::cout << "safetensors " << name << ".safetensors -> " << (sizeof(S) == 4 ? "float" : "double")
            << " stack: outputs and gradients differ from PyTorch's by " << worst << "\n";
  return worst;
}

}  // namespace

TEST_CASE("stacks saved from PyTorch load and reproduce its outputs and gradients",
          "[safetensors][stack][torch]") {
  using recurrent::GRUCell;
  using recurrent::LSTMCell;
  using recurrent::StackOptions;
  const StackOptions lstm = StackOptions().numLayers(2).bidirectional();
  const StackOptions gru = StackOptions().numLayers(3).dropout(0.25);
  CHECK(stackFileAgainstTorch<LSTMCell<float>>("torch_stack_lstm_f32", lstm) <= 1e-5);
  CHECK(stackFileAgainstTorch<GRUCell<float>>("torch_stack_gru_f32", gru) <= 1e-5);
  CHECK(stackFileAgainstTorch<LSTMCell<double>>("torch_stack_lstm_f64", lstm) <= 1e-10);
  CHECK(stackFileAgainstTorch<GRUCell<double>>("torch_stack_gru_f64", gru) <= 1e-10);
}

TEST_CASE("a stack saved here loads in PyTorch and gives the same outputs",
          "[safetensors][stack][torch]") {
  StackModel<recurrent::LSTMCell<float>> m(recurrent::StackOptions().numLayers(2).bidirectional());
  std::mt19937 rng(2025);
  recurrent::initialize(m.rnn, rng, recurrent::InitOptions().forgetGateBias(1.0));
  recurrent::initialize(m.fc, rng);
  const std::string file = dataPath("recurrent_stack_lstm_f32.safetensors");
  const std::vector<std::uint8_t> bytes = recurrent::serializeSafetensors(m.dict);
  if (std::getenv("RECURRENT_UPDATE_FIXTURES") != nullptr) {
    recurrent::saveSafetensors(file, m.dict);
    std::cout << "wrote " << file << "\n";
  }
  const bool sameBytes = bytes == readBytes(file);
  CHECK(sameBytes);
  const Fixture f("recurrent_stack_lstm_torch");
  const double d = errorAgainst(m.run(f.columns("x").cast<float>(), f.lengths()), f.columns("y"));
  std::cout << "safetensors " << file << " -> PyTorch: outputs differ by " << d << "\n";
  CHECK(d <= 1e-5);
}

TEST_CASE("a stack round-trips, and a file of another stack is refused without a change",
          "[safetensors][stack][errors]") {
  using Cell = recurrent::GRUCell<double>;
  using recurrent::StackOptions;
  const StackOptions options = StackOptions().numLayers(2).bidirectional();
  StackModel<Cell> a(options), b(options);
  std::mt19937 rng(6);
  recurrent::initialize(a.rnn, rng);
  recurrent::initialize(a.fc, rng);
  const std::vector<std::uint8_t> bytes = recurrent::serializeSafetensors(a.dict);
  recurrent::loadSafetensors(bytes.data(), bytes.size(), b.dict);
  CHECK(b.snapshot() == a.snapshot());

  // The 3-layer, one-direction GRU of the PyTorch fixture into this 2-layer bidirectional one.
  const std::string three = dataPath("torch_stack_gru_f64.safetensors");
  const auto before = b.snapshot();
  CHECK_THROWS_WITH(recurrent::loadSafetensors(three, b.dict),
                    Contains("missing tensor 'rnn.weight_ih_l0_reverse'"));
  CHECK(b.snapshot() == before);
  // Into a 2-layer one-direction GRU: the tensors of the third layer are left over (strict).
  StackModel<Cell> two(StackOptions().numLayers(2));
  const auto twoBefore = two.snapshot();
  CHECK_THROWS_WITH(recurrent::loadSafetensors(three, two.dict),
                    Contains("unexpected tensor 'rnn.bias_hh_l2'"));
  CHECK(two.snapshot() == twoBefore);
  // Into a 3-layer one-direction GRU: it loads.
  StackModel<Cell> three3(StackOptions().numLayers(3));
  CHECK_NOTHROW(recurrent::loadSafetensors(three, three3.dict));
}
