// ONNX models: graphs exported by torch.onnx.export and graphs written by hand (peepholes, layout
// 1, direction "reverse"; tests/generate_onnx_fixtures.py) load and reproduce the reference
// outputs; a Gemm, or a MatMul and its Add, after RNN nodes (graphs written here) loads into a
// Linear with its tensors, and one that is not exactly a Linear is refused; every refused
// attribute and every kind of bad file is an OnnxError with its message, and so is
// a chain of nodes of different directions, kinds or sequence_lens; a Stack (a reverse one too)
// saved with saveOnnx passes the ONNX checker, loads back unchanged, and gives our outputs in ONNX
// Runtime (tests/io/run_onnx.js, where node and onnxruntime-node are installed).
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

// ---- graphs written here: RNN nodes, then a Gemm ------------------------------------------------

void addGraphInput(onnx::GraphProto& g, const std::string& name, onnx::TensorProto::DataType type) {
  onnx::ValueInfoProto* v = g.add_input();
  v->set_name(name);
  v->mutable_type()->mutable_tensor_type()->set_elem_type(type);
}

/// A FLOAT initializer: `values` in row-major order of `dims`.
void addFloats(onnx::GraphProto& g, const std::string& name, const std::vector<std::int64_t>& dims,
               const std::vector<float>& values) {
  onnx::TensorProto* t = g.add_initializer();
  t->set_name(name);
  t->set_data_type(onnx::TensorProto::FLOAT);
  for (const std::int64_t d : dims) t->add_dims(d);
  for (const float v : values) t->add_float_data(v);
}

/// A one-dimensional INT64 initializer (axes, a shape).
void addInt64s(onnx::GraphProto& g, const std::string& name,
               const std::vector<std::int64_t>& values) {
  onnx::TensorProto* t = g.add_initializer();
  t->set_name(name);
  t->set_data_type(onnx::TensorProto::INT64);
  t->add_dims(static_cast<std::int64_t>(values.size()));
  for (const std::int64_t v : values) t->add_int64_data(v);
}

onnx::NodeProto* addNode(onnx::GraphProto& g, const std::string& op, const std::string& name,
                         const std::vector<std::string>& inputs, const std::string& output) {
  onnx::NodeProto* n = g.add_node();
  n->set_op_type(op);
  n->set_name(name);
  for (const std::string& in : inputs) n->add_input(in);
  n->add_output(output);
  return n;
}

void setInt(onnx::NodeProto* node, const std::string& name, std::int64_t value) {
  onnx::AttributeProto* a = addAttribute(node, name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(value);
}

void setFloat(onnx::NodeProto* node, const std::string& name, float value) {
  onnx::AttributeProto* a = addAttribute(node, name);
  a->set_type(onnx::AttributeProto::FLOAT);
  a->set_f(value);
}

onnx::TensorProto* initializer(onnx::ModelProto& m, const std::string& name) {
  for (onnx::TensorProto& t : *m.mutable_graph()->mutable_initializer()) {
    if (t.name() == name) return &t;
  }
  FAIL("no initializer " << name);
  return nullptr;
}

onnx::NodeProto* namedNode(onnx::ModelProto& m, const std::string& name) {
  for (onnx::NodeProto& n : *m.mutable_graph()->mutable_node()) {
    if (n.name() == name) return &n;
  }
  FAIL("no node " << name);
  return nullptr;
}

/// Makes input `k` of node `name` the output 'computed_<what>' of a Neg node of what it read: the
/// same numbers, computed rather than stored.
void computeInput(onnx::ModelProto& m, const std::string& name, int k, const std::string& what) {
  onnx::NodeProto* node = namedNode(m, name);
  const std::string stored = node->input(k);
  node->set_input(k, "computed_" + what);
  addNode(*m.mutable_graph(), "Neg", "negate", {stored}, "computed_" + what);
}

constexpr std::int64_t kChainInputs = 3;  // I of the graphs written here
constexpr std::int64_t kChainHidden = 4;  // H of their RNN nodes

/// `layers` RNN nodes 'rnn_0', 'rnn_1', ... (I = 3, H = 4, both directions if `bidirectional`,
/// weights from `rng`, lengths from the graph input 'seq') on the graph input 'x', joined as
/// torch.onnx.export joins layers: a Squeeze of the direction axis, or for two directions a
/// Transpose to (T, B, 2, H) and a Reshape to (T, B, 2·H). The last one's output, so joined, is
/// the value 'features'.
onnx::ModelProto rnnChain(int layers, bool bidirectional, std::mt19937& rng) {
  onnx::ModelProto model;
  model.set_ir_version(7);
  model.add_opset_import()->set_version(14);
  onnx::GraphProto& g = *model.mutable_graph();
  g.set_name("rnn_chain");
  addGraphInput(g, "x", onnx::TensorProto::FLOAT);
  addGraphInput(g, "seq", onnx::TensorProto::INT32);
  addInt64s(g, "axis1", {1});
  addInt64s(g, "merge", {0, 0, -1});
  const std::int64_t D = bidirectional ? 2 : 1;
  const std::int64_t H = kChainHidden;
  const auto random = [&](std::int64_t count) {
    const Mat<float> v = uniform<float>(count, 1, rng, -0.6, 0.6);
    return std::vector<float>(v.data(), v.data() + v.size());
  };
  std::string x = "x";
  for (int l = 0; l < layers; ++l) {
    const std::string s = std::to_string(l);
    const std::int64_t in = l == 0 ? kChainInputs : D * H;
    addFloats(g, "W" + s, {D, H, in}, random(D * H * in));
    addFloats(g, "R" + s, {D, H, H}, random(D * H * H));
    addFloats(g, "B" + s, {D, 2 * H}, random(D * 2 * H));
    onnx::NodeProto* n =
        addNode(g, "RNN", "rnn_" + s, {x, "W" + s, "R" + s, "B" + s, "seq"}, "Y" + s);
    setInt(n, "hidden_size", H);
    if (bidirectional) {
      onnx::AttributeProto* a = addAttribute(n, "direction");
      a->set_type(onnx::AttributeProto::STRING);
      a->set_s("bidirectional");
    }
    const std::string out = l + 1 < layers ? "X" + std::to_string(l + 1) : "features";
    if (bidirectional) {
      onnx::NodeProto* t = addNode(g, "Transpose", "transpose_" + s, {"Y" + s}, "Yt" + s);
      onnx::AttributeProto* perm = addAttribute(t, "perm");
      perm->set_type(onnx::AttributeProto::INTS);
      for (const std::int64_t p : {0, 2, 1, 3}) perm->add_ints(p);
      addNode(g, "Reshape", "reshape_" + s, {"Yt" + s, "merge"}, out);
    } else {
      addNode(g, "Squeeze", "squeeze_" + s, {"Y" + s, "axis1"}, out);
    }
    x = out;
  }
  return model;
}

/// Appends to `model` a Linear on its value 'features' (F of them) as torch.onnx.export writes one
/// on flattened steps: a Reshape to (T·B, F) and a Gemm 'fc' of `weight` (O × F), stored as it is
/// with transB 1 or transposed (F × O) with transB 0, and of `bias` as C (none if null).
void appendGemm(onnx::ModelProto& model, std::int64_t F, const Mat<float>& weight,
                const Mat<float>* bias, bool transB) {
  onnx::GraphProto& g = *model.mutable_graph();
  addInt64s(g, "rows_shape", {-1, F});
  addNode(g, "Reshape", "flatten", {"features", "rows_shape"}, "rows");
  std::vector<float> values;
  for (Index a = 0; a < (transB ? weight.rows() : weight.cols()); ++a) {
    for (Index b = 0; b < (transB ? weight.cols() : weight.rows()); ++b) {
      values.push_back(transB ? weight(a, b) : weight(b, a));
    }
  }
  if (transB) {
    addFloats(g, "fc_weight", {weight.rows(), weight.cols()}, values);
  } else {
    addFloats(g, "fc_weight", {weight.cols(), weight.rows()}, values);
  }
  std::vector<std::string> inputs = {"rows", "fc_weight"};
  if (bias != nullptr) {
    addFloats(g, "fc_bias", {bias->rows()},
              std::vector<float>(bias->data(), bias->data() + bias->size()));
    inputs.push_back("fc_bias");
  }
  setInt(addNode(g, "Gemm", "fc", inputs, "y"), "transB", transB ? 1 : 0);
}

/// Appends to `model` a Linear on its value 'features' (F of them) as a MatMul 'fc' of `weight`
/// (O × F) stored transposed (F × O), on (T, B, F) or, if `flatten`, on the rows (T·B, F) of a
/// Reshape; then, unless `bias` is null, the Add 'fc_add' of `bias` and the product, in that order.
void appendMatMul(onnx::ModelProto& model, std::int64_t F, const Mat<float>& weight,
                  const Mat<float>* bias, bool flatten) {
  onnx::GraphProto& g = *model.mutable_graph();
  std::string rows = "features";
  if (flatten) {
    addInt64s(g, "rows_shape", {-1, F});
    addNode(g, "Reshape", "flatten", {"features", "rows_shape"}, "rows");
    rows = "rows";
  }
  std::vector<float> values;
  for (Index f = 0; f < weight.cols(); ++f) {
    for (Index o = 0; o < weight.rows(); ++o) values.push_back(weight(o, f));
  }
  addFloats(g, "fc_weight", {weight.cols(), weight.rows()}, values);
  addNode(g, "MatMul", "fc", {rows, "fc_weight"}, bias != nullptr ? "product" : "y");
  if (bias != nullptr) {
    addFloats(g, "fc_bias", {bias->rows()},
              std::vector<float>(bias->data(), bias->data() + bias->size()));
    addNode(g, "Add", "fc_add", {"fc_bias", "product"}, "y");
  }
}

/// Loads `model` (RNN nodes and the Linear of appendGemm or appendMatMul) in double: the Linear
/// holds the Gemm's or MatMul's tensors exactly, and on an input it computes weight · h + bias of
/// the Stack's output h.
void requireGemmLinear(const onnx::ModelProto& model, const Mat<float>& weight,
                       const Mat<float>& bias) {
  auto m = loadModel<recurrent::RNNCell<double>>(model);
  CHECK(m.info.sequenceLens == "seq");
  CHECK(m.info.linearOutput == weight.rows());
  REQUIRE(m.linear.has_value());
  CHECK(m.linear->parameters().weight == weight.cast<double>());
  CHECK(m.linear->parameters().bias == bias.col(0).cast<double>());
  std::mt19937 rng(31);
  const std::vector<int> lengths = {5, 2, 4};
  const Mat<double> x = uniform<double>(kChainInputs, 5 * 3, rng);
  const Mat<double> h = m.stack.infer(x, lengths);
  REQUIRE(h.rows() == weight.cols());
  CHECK(h.cwiseAbs().maxCoeff() > 0.1);
  Mat<double> y;
  m.linear->forward(h, y);
  Mat<double> expected = weight.cast<double>() * h;
  expected.colwise() += bias.col(0).cast<double>();
  REQUIRE(y.rows() == expected.rows());
  REQUIRE(y.cols() == expected.cols());
  CHECK((y - expected).cwiseAbs().maxCoeff() <= 1e-12);
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

TEST_CASE("ONNX: a Gemm after the recurrent nodes (hand-written) loads into a Linear", "[onnx]") {
  std::mt19937 rng(23);
  constexpr std::int64_t O = 2;
  SECTION("one direction (Squeeze, Reshape), the weight O × F with transB 1") {
    const std::int64_t F = kChainHidden;
    Mat<float> weight(O, F);
    for (Index k = 0; k < weight.size(); ++k) weight.data()[k] = static_cast<float>(k - 3) / 8;
    Mat<float> bias(O, 1);
    bias << 0.5f, -0.25f;
    onnx::ModelProto model = rnnChain(1, false, rng);
    appendGemm(model, F, weight, &bias, true);
    requireGemmLinear(model, weight, bias);
  }
  SECTION("two layers of two directions (Transpose, Reshape), the weight F × O with transB 0") {
    const std::int64_t F = 2 * kChainHidden;
    Mat<float> weight(O, F);
    for (Index k = 0; k < weight.size(); ++k) weight.data()[k] = static_cast<float>(7 - k) / 16;
    Mat<float> bias(O, 1);
    bias << -0.75f, 1.5f;
    onnx::ModelProto model = rnnChain(2, true, rng);
    appendGemm(model, F, weight, &bias, false);
    onnx::NodeProto* gemm = firstNode(model, "Gemm");
    for (const char* name : {"alpha", "beta"}) {  // the defaults, written out
      onnx::AttributeProto* a = addAttribute(gemm, name);
      a->set_type(onnx::AttributeProto::FLOAT);
      a->set_f(1.0f);
    }
    setInt(gemm, "transA", 0);
    requireGemmLinear(model, weight, bias);
  }
  SECTION("a Gemm without C: a zero bias") {
    Mat<float> weight(O, kChainHidden);
    for (Index k = 0; k < weight.size(); ++k) weight.data()[k] = static_cast<float>(k + 1) / 4;
    onnx::ModelProto model = rnnChain(1, false, rng);
    appendGemm(model, kChainHidden, weight, nullptr, true);
    requireGemmLinear(model, weight, Mat<float>::Zero(O, 1));
  }
  SECTION("a weight that does not fit the features") {
    onnx::ModelProto model = rnnChain(1, false, rng);
    const Mat<float> bias = Mat<float>::Zero(O, 1);
    appendGemm(model, kChainHidden, Mat<float>::Ones(O, kChainHidden + 1), &bias, true);
    requireRefused<recurrent::RNNCell<float>>(
        model, "node 'fc' (Gemm): its weight has dims [2, 5] for 4 features");
  }
  SECTION("a bias that does not fit the outputs") {
    onnx::ModelProto model = rnnChain(1, false, rng);
    const Mat<float> bias = Mat<float>::Zero(O + 1, 1);
    appendGemm(model, kChainHidden, Mat<float>::Ones(O, kChainHidden), &bias, true);
    requireRefused<recurrent::RNNCell<float>>(
        model, "node 'fc' (Gemm): its bias has dims [3] for 2 outputs");
  }
  SECTION("nodes without hidden_size (H from R), a Reshape to [-1, D·H] and a Gemm") {
    const std::int64_t F = 2 * kChainHidden;
    Mat<float> weight(O, F);
    for (Index k = 0; k < weight.size(); ++k) weight.data()[k] = static_cast<float>(k % 5) / 4;
    Mat<float> bias(O, 1);
    bias << 0.125f, -1.0f;
    onnx::ModelProto model = rnnChain(2, true, rng);
    for (onnx::NodeProto& n : *model.mutable_graph()->mutable_node()) {
      auto& attributes = *n.mutable_attribute();
      for (int k = attributes.size() - 1; k >= 0; --k) {
        if (attributes.Get(k).name() == "hidden_size") attributes.DeleteSubrange(k, 1);
      }
    }
    appendGemm(model, F, weight, &bias, true);
    CHECK(loadModel<recurrent::RNNCell<float>>(model).info.hiddenSizes ==
          std::vector<Index>{kChainHidden, kChainHidden});
    requireGemmLinear(model, weight, bias);
  }
  SECTION("a Gemm without C and a beta other than 1: there is no bias to scale") {
    Mat<float> weight(O, kChainHidden);
    for (Index k = 0; k < weight.size(); ++k) weight.data()[k] = static_cast<float>(2 - k) / 8;
    onnx::ModelProto model = rnnChain(1, false, rng);
    appendGemm(model, kChainHidden, weight, nullptr, true);
    setFloat(firstNode(model, "Gemm"), "beta", 0.5f);
    requireGemmLinear(model, weight, Mat<float>::Zero(O, 1));
  }
  SECTION("a MatMul on the rows (T·B, D·H) and an Add of the bias") {
    const std::int64_t F = 2 * kChainHidden;
    Mat<float> weight(O, F);
    for (Index k = 0; k < weight.size(); ++k) weight.data()[k] = static_cast<float>(k - 6) / 16;
    Mat<float> bias(O, 1);
    bias << 0.25f, 0.75f;
    onnx::ModelProto model = rnnChain(1, true, rng);
    appendMatMul(model, F, weight, &bias, true);
    requireGemmLinear(model, weight, bias);
  }
  SECTION("a MatMul on (T, B, H) that ends the graph: a Linear without bias") {
    Mat<float> weight(O, kChainHidden);
    for (Index k = 0; k < weight.size(); ++k) weight.data()[k] = static_cast<float>(k + 2) / 8;
    onnx::ModelProto model = rnnChain(2, false, rng);
    appendMatMul(model, kChainHidden, weight, nullptr, false);
    requireGemmLinear(model, weight, Mat<float>::Zero(O, 1));
  }
}

TEST_CASE("ONNX: a Gemm or MatMul after the recurrent nodes that is not a Linear is refused",
          "[onnx]") {
  using RNN = recurrent::RNNCell<float>;
  std::mt19937 rng(29);
  constexpr std::int64_t O = 2;
  const Mat<float> weight = Mat<float>::Ones(O, kChainHidden);
  const Mat<float> bias = Mat<float>::Ones(O, 1);
  onnx::ModelProto model = rnnChain(1, false, rng);
  SECTION("Gemm: alpha other than 1") {
    appendGemm(model, kChainHidden, weight, &bias, true);
    setFloat(firstNode(model, "Gemm"), "alpha", 2.0f);
    requireRefused<RNN>(model,
                        "node 'fc' (Gemm): attribute alpha = 2 is not supported (only 1: a Linear "
                        "does not scale its product)");
  }
  SECTION("Gemm: beta other than 1, with a bias C") {
    appendGemm(model, kChainHidden, weight, &bias, true);
    setFloat(firstNode(model, "Gemm"), "beta", 0.5f);
    requireRefused<RNN>(model,
                        "node 'fc' (Gemm): attribute beta = 0.5 is not supported (only 1: a Linear "
                        "adds its bias unscaled)");
  }
  SECTION("Gemm: transA 1") {
    appendGemm(model, kChainHidden, weight, &bias, true);
    setInt(firstNode(model, "Gemm"), "transA", 1);
    requireRefused<RNN>(model,
                        "node 'fc' (Gemm): attribute transA = 1 is not supported (only 0: a Linear "
                        "reads each step as a row)");
  }
  SECTION("Gemm: an attribute the operator does not define") {
    appendGemm(model, kChainHidden, weight, &bias, true);
    setInt(firstNode(model, "Gemm"), "broadcast", 1);
    requireRefused<RNN>(model, "node 'fc' (Gemm): attribute broadcast is not supported");
  }
  SECTION("Gemm: alpha of another type than FLOAT") {
    appendGemm(model, kChainHidden, weight, &bias, true);
    setInt(firstNode(model, "Gemm"), "alpha", 1);
    requireRefused<RNN>(model, "node 'fc' (Gemm): attribute alpha must be of type FLOAT");
  }
  SECTION("Gemm: a bias C computed by a node") {
    appendGemm(model, kChainHidden, weight, &bias, true);
    computeInput(model, "fc", 2, "C");
    requireRefused<RNN>(model,
                        "node 'fc' (Gemm): input C ('computed_C') must be an initializer or a "
                        "Constant (the bias of a Linear is loaded, not computed)");
  }
  SECTION("Gemm: a bias C that is an input of the graph") {
    appendGemm(model, kChainHidden, weight, &bias, true);
    addGraphInput(*model.mutable_graph(), "given_C", onnx::TensorProto::FLOAT);
    namedNode(model, "fc")->set_input(2, "given_C");
    requireRefused<RNN>(model, "node 'fc' (Gemm): input C ('given_C') must be an initializer");
  }
  SECTION("Gemm: a weight computed by a node") {
    appendGemm(model, kChainHidden, weight, &bias, true);
    computeInput(model, "fc", 1, "B");
    requireRefused<RNN>(model,
                        "node 'fc' (Gemm): input B ('computed_B') must be an initializer or a "
                        "Constant (the weight of a Linear is loaded, not computed)");
  }
  SECTION("Gemm: a weight of three dims") {
    appendGemm(model, kChainHidden, weight, &bias, true);
    onnx::TensorProto* w = initializer(model, "fc_weight");
    w->clear_dims();
    for (const std::int64_t d : {std::int64_t(1), O, kChainHidden}) w->add_dims(d);
    requireRefused<RNN>(
        model, "node 'fc' (Gemm): input B has dims [1, 2, 4]; the weight of a Linear is a matrix");
  }
  SECTION("Gemm: the recurrent output as C, not A") {
    appendGemm(model, kChainHidden, weight, nullptr, true);
    addGraphInput(*model.mutable_graph(), "other", onnx::TensorProto::FLOAT);
    onnx::NodeProto* gemm = namedNode(model, "fc");
    gemm->set_input(0, "other");
    gemm->add_input("rows");
    requireRefused<RNN>(model,
                        "node 'fc' (Gemm): its input C ('rows') is the output of node 'rnn_0' "
                        "(RNN); a Linear after the recurrent nodes reads it as input A");
  }
  SECTION("Gemm: on (T, B, H), not on the rows (T·B, H)") {
    addFloats(*model.mutable_graph(), "fc_weight", {O, kChainHidden},
              std::vector<float>(static_cast<std::size_t>(O * kChainHidden), 1.0f));
    setInt(addNode(*model.mutable_graph(), "Gemm", "fc", {"features", "fc_weight"}, "y"), "transB",
           1);
    requireRefused<RNN>(model,
                        "node 'fc' (Gemm): its input A is (T, B, H) of the output of node 'rnn_0' "
                        "(RNN); a Gemm after the recurrent nodes needs (T·B, D·H)");
  }
  SECTION("MatMul: its product to another operator than an Add") {
    appendMatMul(model, kChainHidden, weight, nullptr, false);
    addNode(*model.mutable_graph(), "Relu", "relu", {"y"}, "relu_y");
    requireRefused<RNN>(model,
                        "node 'fc' (MatMul): its product goes to node 'relu' (Relu); a Linear's "
                        "goes to one Add of its bias, or nowhere further");
  }
  SECTION("MatMul: an Add of a bias computed by a node") {
    appendMatMul(model, kChainHidden, weight, &bias, false);
    computeInput(model, "fc_add", 0, "bias");
    requireRefused<RNN>(model,
                        "node 'fc_add' (Add): input A ('computed_bias') must be an initializer or "
                        "a Constant (the bias of the Linear of node 'fc' (MatMul) is loaded, not "
                        "computed)");
  }
  SECTION("MatMul: a weight computed by a node") {
    appendMatMul(model, kChainHidden, weight, &bias, false);
    computeInput(model, "fc", 1, "B");
    requireRefused<RNN>(model,
                        "node 'fc' (MatMul): input B ('computed_B') must be an initializer or a "
                        "Constant (the weight of a Linear is loaded, not computed)");
  }
  SECTION("MatMul: its product to two nodes") {
    appendMatMul(model, kChainHidden, weight, &bias, false);
    addNode(*model.mutable_graph(), "Relu", "relu", {"product"}, "relu_y");
    requireRefused<RNN>(model,
                        "node 'fc' (MatMul): its product goes to 2 nodes; a Linear's goes to one "
                        "Add of its bias, or nowhere further");
  }
  SECTION("MatMul: an attribute") {
    appendMatMul(model, kChainHidden, weight, &bias, false);
    setInt(namedNode(model, "fc"), "transB", 1);
    requireRefused<RNN>(model, "node 'fc' (MatMul): attribute transB is not supported");
  }
  SECTION("hidden_size 0") {
    for (onnx::AttributeProto& a : *namedNode(model, "rnn_0")->mutable_attribute()) {
      if (a.name() == "hidden_size") a.set_i(0);
    }
    requireRefused<RNN>(model, "node 'rnn_0' (RNN): hidden_size = 0 must be in 1..16777216");
  }
  SECTION("no hidden_size, and R computed by a node") {
    auto& attributes = *namedNode(model, "rnn_0")->mutable_attribute();
    for (int k = attributes.size() - 1; k >= 0; --k) {
      if (attributes.Get(k).name() == "hidden_size") attributes.DeleteSubrange(k, 1);
    }
    computeInput(model, "rnn_0", 2, "R");
    requireRefused<RNN>(model,
                        "node 'rnn_0' (RNN): attribute hidden_size is absent and input R is not a "
                        "stored tensor of 3 dims to take H from");
  }
  SECTION("Gemm: no input B") {
    appendGemm(model, kChainHidden, weight, &bias, true);
    namedNode(model, "fc")->set_input(1, "");
    requireRefused<RNN>(model, "node 'fc' (Gemm): input B is missing");
  }
  SECTION("Gemm: the recurrent output as B, not A") {
    appendGemm(model, kChainHidden, weight, nullptr, true);
    addGraphInput(*model.mutable_graph(), "other", onnx::TensorProto::FLOAT);
    onnx::NodeProto* gemm = namedNode(model, "fc");
    gemm->set_input(1, gemm->input(0));
    gemm->set_input(0, "other");
    requireRefused<RNN>(model,
                        "node 'fc' (Gemm): its input B ('rows') is the output of node 'rnn_0' "
                        "(RNN); a Linear after the recurrent nodes reads it as input A");
  }
  SECTION("MatMul: on (T, B, D, H) of two directions, each direction's H on its own") {
    onnx::ModelProto bi = rnnChain(1, true, rng);
    bi.mutable_graph()->mutable_node()->RemoveLast();  // the Reshape to (T, B, 2·H)
    addFloats(*bi.mutable_graph(), "fc_weight", {kChainHidden, O},
              std::vector<float>(static_cast<std::size_t>(O * kChainHidden), 1.0f));
    addNode(*bi.mutable_graph(), "MatMul", "fc", {"Yt0", "fc_weight"}, "y");
    requireRefused<RNN>(bi,
                        "node 'fc' (MatMul): its input A is (T, B, D, H) of the output of node "
                        "'rnn_0' (RNN); a MatMul after the recurrent nodes needs the features "
                        "(D·H) last");
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
  SECTION("activation_beta") {
    onnx::AttributeProto* a = addAttribute(node, "activation_beta");
    a->set_type(onnx::AttributeProto::FLOATS);
    a->add_floats(0.25f);
    a->add_floats(2.0f);
    requireRefused<LSTM>(m,
                         "node 'lstm0' (LSTM): attribute activation_beta = [0.250000, 2.000000] is "
                         "not supported (only the default activations are represented)");
  }
  SECTION("a GRU linear_before_reset other than 0 and 1") {
    onnx::ModelProto gru = readModel("onnx_gru.onnx");
    onnx::NodeProto* r = firstNode(gru, "GRU");
    r->set_name("gru0");
    bool found = false;
    for (onnx::AttributeProto& a : *r->mutable_attribute()) {
      if (a.name() == "linear_before_reset") {
        a.set_i(2);  // the export's 1
        found = true;
      }
    }
    REQUIRE(found);
    requireRefused<recurrent::GRUCell<float>>(
        gru, "node 'gru0' (GRU): attribute linear_before_reset = 2 must be 0 or 1");
  }
  SECTION("GRU layers with linear_before_reset 1 and 0 in one chain") {
    onnx::ModelProto stack = readModel("onnx_stack_gru_bi.onnx");
    int count = 0;
    for (onnx::NodeProto& n : *stack.mutable_graph()->mutable_node()) {
      if (n.op_type() != "GRU") continue;
      n.set_name("gru_" + std::to_string(count++));
      for (onnx::AttributeProto& a : *n.mutable_attribute()) {
        if (n.name() == "gru_1" && a.name() == "linear_before_reset") a.set_i(0);
      }
    }
    REQUIRE(count == 2);
    requireRefused<recurrent::GRUCell<float>>(
        stack,
        "node 'gru_1' (GRU) differs from the layers before it (operator, linear_before_reset or "
        "activations): one stack has one kind of layer");
  }
  SECTION("an LSTM layer and a GRU layer in one chain") {
    onnx::ModelProto mixed = readModel("onnx_lstm_reverse.onnx");
    for (onnx::NodeProto& n : *mixed.mutable_graph()->mutable_node()) {
      if (n.name() == "lstm_1") n.set_op_type("GRU");
    }
    requireRefused<LSTM>(mixed,
                         "node 'lstm_1' (GRU) differs from the layers before it (operator, "
                         "linear_before_reset or activations): one stack has one kind of layer");
  }
  SECTION("RNN layers of Tanh and of Relu in one chain") {
    std::mt19937 rng(19);
    onnx::ModelProto rnn = rnnChain(2, false, rng);
    for (onnx::NodeProto& n : *rnn.mutable_graph()->mutable_node()) {
      if (n.name() != "rnn_1") continue;
      onnx::AttributeProto* a = addAttribute(&n, "activations");
      a->set_type(onnx::AttributeProto::STRINGS);
      a->add_strings("Relu");
    }
    requireRefused<recurrent::RNNCell<float>>(
        rnn,
        "node 'rnn_1' (RNN) differs from the layers before it (operator, linear_before_reset or "
        "activations): one stack has one kind of layer");
  }
  SECTION("sequence_lens that is not an input of the graph") {
    onnx::ModelProto reverse = readModel("onnx_lstm_reverse.onnx");
    onnx::TensorProto* lens = reverse.mutable_graph()->add_initializer();
    lens->set_name("fixed_lengths");
    lens->set_data_type(onnx::TensorProto::INT32);
    lens->add_dims(4);
    for (const int n : {4, 6, 1, 3}) lens->add_int32_data(n);
    for (onnx::NodeProto& n : *reverse.mutable_graph()->mutable_node()) {
      if (n.op_type() == "LSTM") n.set_input(4, "fixed_lengths");
    }
    requireRefused<LSTM>(reverse,
                         "node 'lstm_0' (LSTM): input sequence_lens ('fixed_lengths') must be an "
                         "input of the graph (the lengths are given at each call)");
  }
  SECTION("layers with sequence_lens from different inputs of the graph") {
    onnx::ModelProto reverse = readModel("onnx_lstm_reverse.onnx");
    addGraphInput(*reverse.mutable_graph(), "seq2", onnx::TensorProto::INT32);
    for (onnx::NodeProto& n : *reverse.mutable_graph()->mutable_node()) {
      if (n.name() == "lstm_1") n.set_input(4, "seq2");
    }
    requireRefused<LSTM>(reverse,
                         "node 'lstm_1' (LSTM): input sequence_lens is 'seq2', an earlier "
                         "layer's 'seq' (one stack has one set of lengths)");
  }
  SECTION("sequence_lens on the first layer only") {
    onnx::ModelProto reverse = readModel("onnx_lstm_reverse.onnx");
    namedNode(reverse, "lstm_1")->set_input(4, "");
    requireRefused<LSTM>(reverse,
                         "node 'lstm_1' (LSTM): input sequence_lens is omitted, node 'lstm_0' "
                         "(LSTM) has 'seq': one stack gives every layer the same lengths (a layer "
                         "without sequence_lens runs all T steps)");
  }
  SECTION("sequence_lens on a later layer only") {
    std::mt19937 rng(37);
    onnx::ModelProto rnn = rnnChain(2, false, rng);
    namedNode(rnn, "rnn_0")->set_input(4, "");
    requireRefused<recurrent::RNNCell<float>>(
        rnn,
        "node 'rnn_1' (RNN): input sequence_lens is 'seq', node 'rnn_0' (RNN) has none: one stack "
        "gives every layer the same lengths (a layer without sequence_lens runs all T steps)");
  }
  SECTION("more inputs than the operator defines") {
    while (node->input_size() < 9) node->add_input("");
    requireRefused<LSTM>(m, "node 'lstm0' (LSTM) has 9 inputs; the operator takes at most 8");
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
