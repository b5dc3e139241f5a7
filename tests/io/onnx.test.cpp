// ONNX models: graphs exported by torch.onnx.export and graphs written by hand (peepholes, layout
// 1, direction "reverse"; tests/generate_onnx_fixtures.py) load and reproduce the reference
// outputs; every refused attribute and every kind of bad file is an OnnxError with its message,
// and so is a chain of nodes of different directions; a Stack (a reverse one too) saved with
// saveOnnx passes the ONNX checker, loads back unchanged, and gives our outputs in ONNX Runtime
// (tests/io/run_onnx.js, where node and onnxruntime-node are installed).
#include "catch.hpp"
#include "support.hpp"

#include <recurrent/io/onnx.hpp>
#include <recurrent/recurrent.hpp>

#include <onnx/checker.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>

using namespace test;
using recurrent::OnnxError;

/// `expr` throws an OnnxError whose message contains `text`.
#define REQUIRE_ONNX_ERROR(expr, text)                          \
  do {                                                          \
    REQUIRE_THROWS_AS(expr, OnnxError);                         \
    REQUIRE_THROWS_WITH(expr, Catch::Matchers::Contains(text)); \
  } while (false)

namespace {

std::string dataPath(const std::string& name) {
  return std::string(RECURRENT_TEST_DATA_DIR) + "/" + name;
}

std::string readText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

onnx::ModelProto readModel(const std::string& name) {
  onnx::ModelProto m;
  const std::string bytes = readText(dataPath(name));
  REQUIRE(m.ParseFromString(bytes));
  return m;
}

template <typename Cell>
recurrent::OnnxModel<Cell> loadModel(const onnx::ModelProto& m) {
  const std::string bytes = m.SerializeAsString();
  return recurrent::loadOnnx<Cell>(reinterpret_cast<const std::uint8_t*>(bytes.data()),
                                   bytes.size(), "test model");
}

/// Runs the fixture's x through the loaded model; the error against its y.
template <typename Cell>
double fixtureError(recurrent::OnnxModel<Cell>& model, const std::string& name) {
  const Fixture f(name);
  const Mat<float> x = f.columns("x").cast<float>();
  Mat<float> y = model.stack.infer(x, f.lengths());
  if (model.linear) {
    Mat<float> out;
    model.linear->forward(y, out);
    y = out;
  }
  return errorAgainst(y, f.columns("y"));
}

template <typename Cell>
void requireRefused(const onnx::ModelProto& m, const std::string& message) {
  REQUIRE_ONNX_ERROR(loadModel<Cell>(m), (message));
}

onnx::AttributeProto* addAttribute(onnx::NodeProto* node, const std::string& name) {
  onnx::AttributeProto* a = node->add_attribute();
  a->set_name(name);
  return a;
}

onnx::NodeProto* firstNode(onnx::ModelProto& m, const std::string& op) {
  for (onnx::NodeProto& n : *m.mutable_graph()->mutable_node()) {
    if (n.op_type() == op) return &n;
  }
  FAIL("no " << op << " node");
  return nullptr;
}

}  // namespace

TEST_CASE("ONNX: one-layer models exported by PyTorch load and reproduce its outputs", "[onnx]") {
  SECTION("LSTM") {
    auto m = recurrent::loadOnnx<recurrent::LSTMCell<float>>(dataPath("onnx_lstm.onnx"));
    CHECK(m.info.op == "LSTM");
    CHECK(m.info.input == "x");
    CHECK_FALSE(m.info.batchFirst);
    CHECK_FALSE(m.linear.has_value());
    CHECK(fixtureError(m, "onnx_lstm") < 1e-5);
  }
  SECTION("GRU") {
    auto m = recurrent::loadOnnx<recurrent::GRUCell<float>>(dataPath("onnx_gru.onnx"));
    CHECK(m.info.resetAfter);
    CHECK(fixtureError(m, "onnx_gru") < 1e-5);
  }
  SECTION("RNN, tanh and relu") {
    auto tanh = recurrent::loadOnnx<recurrent::RNNCell<float>>(dataPath("onnx_rnn.onnx"));
    CHECK(tanh.stack.cell(0).nonlinearity() == recurrent::Nonlinearity::Tanh);
    CHECK(fixtureError(tanh, "onnx_rnn") < 1e-5);
    auto relu = recurrent::loadOnnx<recurrent::RNNCell<float>>(dataPath("onnx_rnn_relu.onnx"));
    CHECK(relu.stack.cell(0).nonlinearity() == recurrent::Nonlinearity::Relu);
    CHECK(fixtureError(relu, "onnx_rnn_relu") < 1e-5);
  }
}

TEST_CASE("ONNX: two-layer bidirectional stacks and LSTM + Linear from PyTorch", "[onnx]") {
  SECTION("LSTM, unequal lengths") {
    auto m = recurrent::loadOnnx<recurrent::LSTMCell<float>>(dataPath("onnx_stack_lstm_bi.onnx"));
    CHECK(m.stack.numLayers() == 2);
    CHECK(m.stack.bidirectional());
    CHECK(fixtureError(m, "onnx_stack_lstm_bi") < 1e-5);
  }
  SECTION("GRU, unequal lengths") {
    auto m = recurrent::loadOnnx<recurrent::GRUCell<float>>(dataPath("onnx_stack_gru_bi.onnx"));
    CHECK(m.stack.numLayers() == 2);
    CHECK(fixtureError(m, "onnx_stack_gru_bi") < 1e-5);
  }
  SECTION("batch-first two-layer LSTM and a Linear (Transpose, Squeeze, MatMul, Add)") {
    const auto info = recurrent::inspectOnnx(dataPath("onnx_lstm_linear.onnx"));
    CHECK(info.numLayers() == 2);
    CHECK(info.batchFirst);
    CHECK(info.linearOutput == 2);
    auto m = recurrent::loadOnnx<recurrent::LSTMCell<double>>(dataPath("onnx_lstm_linear.onnx"));
    REQUIRE(m.linear.has_value());
    const Fixture f("onnx_lstm_linear");
    Mat<double> y;
    m.linear->forward(m.stack.infer(f.columns("x"), f.lengths()), y);
    CHECK(errorAgainst(y, f.columns("y")) < 1e-5);  // float weights, float reference
  }
}

TEST_CASE("ONNX: hand-written graphs: peepholes, layout 1, linear_before_reset 0", "[onnx]") {
  SECTION("a peephole LSTM loads into PeepholeLSTMCell") {
    auto m =
        recurrent::loadOnnx<recurrent::PeepholeLSTMCell<float>>(dataPath("onnx_peephole.onnx"));
    CHECK(m.info.peephole);
    CHECK(m.info.sequenceLens == "seq");
    CHECK(fixtureError(m, "onnx_peephole") < 1e-5);
    REQUIRE_ONNX_ERROR(
        recurrent::loadOnnx<recurrent::LSTMCell<float>>(dataPath("onnx_peephole.onnx")),
        ("LSTM nodes load into PeepholeLSTMCell, not LSTMCell"));
  }
  SECTION("a bidirectional batch-first GRU with linear_before_reset 0") {
    auto m = recurrent::loadOnnx<recurrent::ResetBeforeGRUCell<float>>(
        dataPath("onnx_gru_layout1.onnx"));
    CHECK(m.info.batchFirst);
    CHECK_FALSE(m.info.resetAfter);
    CHECK(m.info.stateInputs.empty());  // h0 is an all-zero initializer
    CHECK(fixtureError(m, "onnx_gru_layout1") < 1e-5);
    REQUIRE_ONNX_ERROR(
        recurrent::loadOnnx<recurrent::GRUCell<float>>(dataPath("onnx_gru_layout1.onnx")),
        ("load into ResetBeforeGRUCell, not GRUCell"));
  }
}

TEST_CASE("ONNX: reverse nodes (hand-written) load into a reverse Stack", "[onnx]") {
  SECTION("two reverse LSTM layers, unequal unsorted lengths") {
    const auto info = recurrent::inspectOnnx(dataPath("onnx_lstm_reverse.onnx"));
    CHECK(info.reverse);
    CHECK_FALSE(info.bidirectional);
    CHECK(info.numLayers() == 2);
    auto m = recurrent::loadOnnx<recurrent::LSTMCell<float>>(dataPath("onnx_lstm_reverse.onnx"));
    CHECK(m.stack.reverse());
    CHECK(m.stack.numDirections() == 1);
    CHECK(fixtureError(m, "onnx_lstm_reverse") < 1e-5);
  }
  SECTION("a reverse batch-first GRU with linear_before_reset 0") {
    auto m = recurrent::loadOnnx<recurrent::ResetBeforeGRUCell<float>>(
        dataPath("onnx_gru_reverse.onnx"));
    CHECK(m.info.reverse);
    CHECK(m.info.batchFirst);
    CHECK(m.stack.reverse());
    CHECK(fixtureError(m, "onnx_gru_reverse") < 1e-5);
  }
}

TEST_CASE("ONNX: what cannot be represented is refused, naming node, attribute and value",
          "[onnx]") {
  using LSTM = recurrent::LSTMCell<float>;
  onnx::ModelProto m = readModel("onnx_lstm.onnx");
  onnx::NodeProto* node = firstNode(m, "LSTM");
  node->set_name("lstm0");
  SECTION("clip") {
    onnx::AttributeProto* a = addAttribute(node, "clip");
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(3.0f);
    requireRefused<LSTM>(m, "node 'lstm0' (LSTM): attribute clip = 3 is not supported");
  }
  SECTION("input_forget") {
    onnx::AttributeProto* a = addAttribute(node, "input_forget");
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(1);
    requireRefused<LSTM>(m, "node 'lstm0' (LSTM): attribute input_forget = 1 is not supported");
  }
  SECTION("activations other than the defaults") {
    onnx::AttributeProto* a = addAttribute(node, "activations");
    a->set_type(onnx::AttributeProto::STRINGS);
    for (const char* s : {"Sigmoid", "Relu", "Tanh"}) a->add_strings(s);
    requireRefused<LSTM>(m,
                         "node 'lstm0' (LSTM): attribute activations = [Sigmoid, Relu, Tanh] is "
                         "not supported");
  }
  SECTION("activation_alpha") {
    onnx::AttributeProto* a = addAttribute(node, "activation_alpha");
    a->set_type(onnx::AttributeProto::FLOATS);
    a->add_floats(0.5f);
    requireRefused<LSTM>(
        m, "node 'lstm0' (LSTM): attribute activation_alpha = [0.500000] is not supported");
  }
  SECTION("a chain of forward and reverse nodes") {
    onnx::ModelProto mixed = readModel("onnx_lstm_reverse.onnx");
    for (onnx::NodeProto& n : *mixed.mutable_graph()->mutable_node()) {
      for (onnx::AttributeProto& a : *n.mutable_attribute()) {
        if (n.name() == "lstm_1" && a.name() == "direction") a.set_s("forward");
      }
    }
    requireRefused<LSTM>(mixed,
                         "node 'lstm_1' (LSTM): attribute direction = forward, node 'lstm_0' "
                         "(LSTM) has reverse: one stack reads every layer in one direction");
  }
  SECTION("a direction ONNX does not define") {
    onnx::AttributeProto* a = addAttribute(node, "direction");
    a->set_type(onnx::AttributeProto::STRING);
    a->set_s("backward");
    requireRefused<LSTM>(m, "node 'lstm0' (LSTM): attribute direction = backward is not supported");
  }
  SECTION("layout other than 0 and 1") {
    onnx::AttributeProto* a = addAttribute(node, "layout");
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(2);
    requireRefused<LSTM>(m, "node 'lstm0' (LSTM): attribute layout = 2 must be 0 or 1");
  }
  SECTION("an attribute the operator does not define") {
    addAttribute(node, "linear_before_reset")->set_type(onnx::AttributeProto::INT);
    requireRefused<LSTM>(m, "node 'lstm0' (LSTM): attribute linear_before_reset is not supported");
  }
  SECTION("an RNN activation other than Tanh and Relu") {
    onnx::ModelProto rnn = readModel("onnx_rnn.onnx");
    onnx::NodeProto* r = firstNode(rnn, "RNN");
    r->set_name("rnn0");
    for (onnx::AttributeProto& a : *r->mutable_attribute()) {
      if (a.name() == "activations") a.set_strings(0, "Sigmoid");  // the export's [Tanh]
    }
    requireRefused<recurrent::RNNCell<float>>(
        rnn, "node 'rnn0' (RNN): attribute activations = [Sigmoid] is not supported");
  }
  SECTION("an unknown operator between recurrent nodes") {
    onnx::ModelProto stack = readModel("onnx_stack_lstm_bi.onnx");
    onnx::NodeProto* t = firstNode(stack, "Transpose");
    t->set_op_type("Relu");
    t->clear_attribute();
    t->set_name("between");
    requireRefused<LSTM>(stack, "node 'between' (Relu) stands between recurrent nodes");
  }
  SECTION("weights computed by a node") {
    onnx::NodeProto* neg = m.mutable_graph()->add_node();
    neg->set_op_type("Neg");
    neg->set_name("negate");
    neg->add_input(node->input(1));
    neg->add_output("computed_W");
    node->set_input(1, "computed_W");
    requireRefused<LSTM>(m, "node 'lstm0' (LSTM): input W ('computed_W') must be an initializer");
  }
  SECTION("a non-zero initial state") {
    onnx::TensorProto* h0 = m.mutable_graph()->add_initializer();
    h0->set_name("h0");
    h0->set_data_type(onnx::TensorProto::FLOAT);
    for (const std::int64_t d : {1, 3, 4}) h0->add_dims(d);
    for (int k = 0; k < 12; ++k) h0->add_float_data(0.5f);
    node->set_input(5, "h0");
    requireRefused<LSTM>(m, "input initial_h ('h0') is neither zero nor an input of the graph");
  }
  SECTION("a cell of the wrong kind") {
    requireRefused<recurrent::GRUCell<float>>(m, "LSTM nodes load into LSTMCell, not GRUCell");
  }
}

TEST_CASE("ONNX: malformed, truncated and foreign files are errors", "[onnx]") {
  using LSTM = recurrent::LSTMCell<float>;
  const std::string bytes = readText(dataPath("onnx_stack_lstm_bi.onnx"));
  const auto* data = reinterpret_cast<const std::uint8_t*>(bytes.data());
  // Every prefix: parsing fails, or the graph lacks what loading needs; never a crash.
  for (std::size_t size = 0; size < bytes.size(); size += 97) {
    CHECK_THROWS_AS(recurrent::loadOnnx<LSTM>(data, size, "prefix"), OnnxError);
  }
  const std::string text = "this is not an ONNX model";
  REQUIRE_ONNX_ERROR(
      recurrent::loadOnnx<LSTM>(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()),
      ("not an ONNX model"));
  REQUIRE_ONNX_ERROR(recurrent::loadOnnx<LSTM>(dataPath("no_such_file.onnx")),
                     ("cannot open the file"));

  onnx::ModelProto m = readModel("onnx_lstm.onnx");
  SECTION("an opset before 7") {
    m.mutable_opset_import(0)->set_version(6);
    requireRefused<LSTM>(m, "the model imports opset 6");
  }
  SECTION("a weight shorter than its dims") {
    for (onnx::TensorProto& t : *m.mutable_graph()->mutable_initializer()) {
      if (t.dims_size() == 3) t.mutable_raw_data()->resize(t.raw_data().size() - 4);
    }
    requireRefused<LSTM>(m, "bytes of data, its dims");
  }
  SECTION("no recurrent node") {
    firstNode(m, "LSTM")->set_op_type("Relu");
    requireRefused<LSTM>(m, "the graph has no LSTM, GRU or RNN node");
  }
}

// ---- saveOnnx ----------------------------------------------------------------------------------

namespace {

const std::vector<int> kLengths = {5, 2, 4};
constexpr Index kT = 5;

/// A stack of `Cell`s (I = 3, H = 4) with random weights.
template <typename Cell, typename... Args>
recurrent::Stack<Cell> randomStack(const recurrent::StackOptions& options, std::mt19937& rng,
                                   Args... args) {
  recurrent::Stack<Cell> stack(3, options, [&](Index in) { return Cell(in, 4, args...); });
  for (Index l = 0; l < stack.numLayers(); ++l) {
    for (Index d = 0; d < stack.numDirections(); ++d) randomize(stack.cell(l, d), rng);
  }
  return stack;
}

/// The stack's (and Linear's) output for x, zero-padded as ONNX Runtime pads.
template <typename Cell>
Mat<float> ourOutput(recurrent::Stack<Cell>& stack, const recurrent::Linear<float>* linear,
                     const Mat<float>& x) {
  Mat<float> y = stack.infer(x, kLengths);
  if (linear == nullptr) return y;
  Mat<float> out;
  linear->forward(y, out);
  return out;
}

/// Runs the model file `path` in ONNX Runtime on x (I × T·B) and kLengths; false (and a message
/// that ctest reads as a skip) where node or onnxruntime-node is not installed.
bool runInOnnxRuntime(const std::string& path, const Mat<float>& x, Mat<float>& y) {
  const std::string node = RECURRENT_NODE_EXECUTABLE;
  if (node.empty()) {
    std::cout << "ONNX Runtime round trip skipped: node was not found when configuring\n";
    return false;
  }
  const std::string inputs = path + ".inputs.txt";
  const std::string outputs = path + ".outputs.txt";
  {
    std::ofstream out(inputs);
    out.precision(9);
    out << "input float32 " << kT << " " << kLengths.size() << " " << x.rows() << "\n";
    for (Index k = 0; k < x.size(); ++k) out << x.data()[k] << " ";
    out << "\nsequence_lens int32 " << kLengths.size() << "\n";
    for (int n : kLengths) out << n << " ";
    out << "\n";
  }
  const std::string command = "NODE_PATH='" + std::string(RECURRENT_NODE_PATH) + "' '" + node +
                              "' '" + RECURRENT_RUN_ONNX_JS + "' '" + path + "' '" + inputs +
                              "' > '" + outputs + "' 2> '" + outputs + ".err'";
  const int status = std::system(command.c_str());
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (code == 3) {
    std::cout << "ONNX Runtime round trip skipped: " << readText(outputs + ".err");
    return false;
  }
  INFO(readText(outputs + ".err"));
  REQUIRE(code == 0);
  std::istringstream in(readText(outputs));
  std::string name, type;
  Index T = 0, B = 0, F = 0;
  in >> name >> type >> T >> B >> F;
  REQUIRE(T == kT);
  REQUIRE(B == static_cast<Index>(kLengths.size()));
  y.resize(F, T * B);
  for (Index k = 0; k < y.size(); ++k) in >> y.data()[k];
  REQUIRE(in);
  return true;
}

/// Saves, checks with the ONNX checker, loads back (the same tensors), and where ONNX Runtime is
/// installed compares its outputs with ours.
template <typename Cell>
void roundTrip(recurrent::Stack<Cell>& stack, const recurrent::Linear<float>* linear,
               const std::string& name, std::mt19937& rng, bool runtime) {
  const std::string path = std::string(RECURRENT_TEST_SCRATCH_DIR) + "/saved_" +
                           (runtime ? "ort_" : "") + name + ".onnx";
  recurrent::saveOnnx(path, stack, linear);
  onnx::ModelProto model;
  REQUIRE(model.ParseFromString(readText(path)));
  REQUIRE_NOTHROW(onnx::checker::check_model(model));

  auto loaded = recurrent::loadOnnx<Cell>(path);
  CHECK(loaded.info.sequenceLens == "sequence_lens");
  REQUIRE(loaded.stack.numLayers() == stack.numLayers());
  CHECK(loaded.stack.bidirectional() == stack.bidirectional());
  CHECK(loaded.stack.reverse() == stack.reverse());
  for (Index l = 0; l < stack.numLayers(); ++l) {
    for (Index d = 0; d < stack.numDirections(); ++d) {
      stack.cell(l, d).parameters().forEach([&](const char* tensor, const auto& ours) {
        loaded.stack.cell(l, d).parameters().forEach([&](const char* other, const auto& theirs) {
          if (std::string(tensor) == other) {
            INFO(name << " layer " << l << " direction " << d << " " << tensor);
            CHECK(Mat<float>(ours) == Mat<float>(theirs));
          }
        });
      });
    }
  }
  REQUIRE(loaded.linear.has_value() == (linear != nullptr));
  if (linear != nullptr) {
    CHECK(loaded.linear->parameters().weight == linear->parameters().weight);
    CHECK(loaded.linear->parameters().bias == linear->parameters().bias);
  }
  if (!runtime) return;
  const Mat<float> x = uniform<float>(3, kT * static_cast<Index>(kLengths.size()), rng);
  Mat<float> theirs;
  if (!runInOnnxRuntime(path, x, theirs)) return;
  const Mat<float> ours = ourOutput(stack, linear, x);
  INFO(name);
  CHECK(errorAgainst(theirs, ours.cast<double>()) < 1e-5);
}

template <typename Check>
void forEachSavedStack(Check&& check) {
  using recurrent::StackOptions;
  std::mt19937 rng(13);
  auto lstm =
      randomStack<recurrent::LSTMCell<float>>(StackOptions().numLayers(2).bidirectional(), rng);
  recurrent::Linear<float> linear(lstm.outputSize(), 2);
  linear.parameters().weight = uniform<float>(2, lstm.outputSize(), rng);
  linear.parameters().bias = uniform<float>(2, 1, rng);
  check(lstm, &linear, "lstm_bi_linear", rng);
  auto peephole = randomStack<recurrent::PeepholeLSTMCell<float>>(StackOptions(), rng);
  check(peephole, nullptr, "peephole", rng);
  auto gru = randomStack<recurrent::GRUCell<float>>(StackOptions().numLayers(2), rng);
  check(gru, nullptr, "gru", rng);
  auto before =
      randomStack<recurrent::ResetBeforeGRUCell<float>>(StackOptions().bidirectional(), rng);
  check(before, nullptr, "gru_reset_before", rng);
  auto rnn = randomStack<recurrent::RNNCell<float>>(StackOptions().bidirectional(), rng,
                                                    recurrent::Nonlinearity::Relu);
  check(rnn, nullptr, "rnn_relu", rng);
  auto lstmReverse =
      randomStack<recurrent::LSTMCell<float>>(StackOptions().numLayers(2).reverse(), rng);
  recurrent::Linear<float> linearReverse(lstmReverse.outputSize(), 2);
  linearReverse.parameters().weight = uniform<float>(2, lstmReverse.outputSize(), rng);
  linearReverse.parameters().bias = uniform<float>(2, 1, rng);
  check(lstmReverse, &linearReverse, "lstm_reverse_linear", rng);
  auto gruReverse = randomStack<recurrent::GRUCell<float>>(StackOptions().reverse(), rng);
  check(gruReverse, nullptr, "gru_reverse", rng);
}

}  // namespace

TEST_CASE("saveOnnx: a Stack passes the ONNX checker and loads back unchanged", "[onnx]") {
  forEachSavedStack([](auto& stack, const recurrent::Linear<float>* linear, const char* name,
                       std::mt19937& rng) { roundTrip(stack, linear, name, rng, false); });
  std::mt19937 rng(5);
  auto sum = recurrent::Stack<recurrent::LSTMCell<float>>(
      3, 4, recurrent::StackOptions().bidirectional().merge(recurrent::Merge::Sum));
  REQUIRE_ONNX_ERROR(recurrent::onnxModel(sum), ("Merge::Sum is not represented"));
  recurrent::Stack<recurrent::LSTMCell<float>> projected(
      3, recurrent::StackOptions(), [](Index in) { return recurrent::LSTMCell<float>(in, 4, 2); });
  REQUIRE_ONNX_ERROR(recurrent::onnxModel(projected), ("layer 0 is an LSTM with a projection"));
}

// Registered on its own (tests/CMakeLists.txt), so that ctest reports it skipped where ONNX
// Runtime is absent.
TEST_CASE("saveOnnx: ONNX Runtime runs a saved Stack as the Stack does", "[.][onnxruntime]") {
  forEachSavedStack([](auto& stack, const recurrent::Linear<float>* linear, const char* name,
                       std::mt19937& rng) { roundTrip(stack, linear, name, rng, true); });
}
