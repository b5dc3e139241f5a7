// recurrent — io/onnx_read.hpp: finding the recurrent layers of an ONNX graph and what follows
// them, by following the graph's values from node to node (never by the names of tensors).
//
// Included by onnx.hpp. The result is the ONNX tensors of every layer, in the operators' own
// gate order; onnx.hpp maps them into cells.
#pragma once

#include <recurrent/io/onnx_graph.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace recurrent {

/// What the recurrent part of an ONNX model is, as loadOnnx reads it (inspectOnnx returns it).
struct OnnxInfo {
  std::string op;                         ///< "LSTM", "GRU" or "RNN"
  bool peephole = false;                  ///< LSTM with P: load into PeepholeLSTMCell
  bool resetAfter = true;                 ///< GRU: linear_before_reset 1 (ResetAfter), else 0
  bool relu = false;                      ///< RNN with activations Relu (else Tanh)
  Eigen::Index inputSize = 0;             ///< I, the features of x
  std::vector<Eigen::Index> hiddenSizes;  ///< hidden_size of each layer
  bool bidirectional = false;             ///< direction "bidirectional"
  bool reverse = false;                   ///< direction "reverse" (neither: "forward")
  bool batchFirst = false;                ///< the graph's x is (B, T, I), else (T, B, I)
  std::string input;                      ///< the graph input x
  std::string sequenceLens;               ///< the graph input given as sequence_lens, or ""
  std::vector<std::string> stateInputs;   ///< graph inputs given as initial_h / initial_c
  Eigen::Index linearOutput = 0;          ///< out_features of the Linear after the layers, or 0
  /// The number of layers (recurrent nodes).
  Eigen::Index numLayers() const { return static_cast<Eigen::Index>(hiddenSizes.size()); }
};

namespace detail {

/// One recurrent node: its tensors as stored (W [D, G·H, I], R [D, G·H, H], B [D, 2·G·H] or
/// empty, P [D, 3H] or empty).
struct OnnxLayer {
  int node = -1;
  OnnxTensor W, R, B, P;
};

/// The recurrent chain of a graph and the Linear after it (weight O × F row-major, bias O).
struct OnnxChain {
  OnnxInfo info;
  std::vector<OnnxLayer> layers;
  std::vector<double> linearWeight, linearBias;
};

inline bool isRecurrentOp(const onnx::NodeProto& n) {
  return (n.domain().empty() || n.domain() == "ai.onnx") &&
         (n.op_type() == "LSTM" || n.op_type() == "GRU" || n.op_type() == "RNN");
}

/// Whether `value` is all zeros: a constant of zeros, or a zero constant taken through the
/// shape-only operators torch.onnx.export uses to build a zero initial state (ConstantOfShape,
/// Expand, Slice, ...).
inline bool isZeroValue(const OnnxGraph& g, std::string value) {
  for (int step = 0; step <= g.graph().node_size(); ++step) {
    if (const onnx::TensorProto* t = g.constant(value)) {
      const bool floating =
          t->data_type() == onnx::TensorProto::FLOAT || t->data_type() == onnx::TensorProto::DOUBLE;
      const std::string what = "constant '" + value + "'";
      if (floating) {
        const OnnxTensor v = g.floats(*t, what);
        return std::all_of(v.values.begin(), v.values.end(), [](double x) { return x == 0; });
      }
      const std::vector<std::int64_t> v = g.integers(*t, what);
      return std::all_of(v.begin(), v.end(), [](std::int64_t x) { return x == 0; });
    }
    const int n = g.producer(value);
    if (n < 0) return false;
    const std::string& op = g.node(n).op_type();
    if (op == "ConstantOfShape") {
      const onnx::AttributeProto* a = g.attribute(n, "value");
      if (a == nullptr) return true;  // the default fill is 0
      if (a->type() != onnx::AttributeProto::TENSOR) return false;
      const OnnxTensor v = g.floats(a->t(), "the value of node " + g.describe(n));
      return std::all_of(v.values.begin(), v.values.end(), [](double x) { return x == 0; });
    }
    static const char* const kShapeOnly[] = {
        "Expand", "Slice", "Squeeze", "Unsqueeze", "Reshape", "Identity", "Gather", "Cast", "Tile"};
    if (std::find_if(std::begin(kShapeOnly), std::end(kShapeOnly),
                     [&](const char* s) { return op == s; }) == std::end(kShapeOnly)) {
      return false;
    }
    value = g.input(n, 0);
  }
  return false;  // a cycle: a malformed graph
}

// ---- the attributes and inputs of one recurrent node -------------------------------------------

inline std::string joined(const std::vector<std::string>& v) {
  std::string s = "[";
  for (std::size_t k = 0; k < v.size(); ++k) s += (k ? ", " : "") + v[k];
  return s + "]";
}

/// Checks node `n`'s attributes against what the library represents, into `info` (the first node
/// sets the variant, later ones must agree). Returns D; sets `layout` and `hidden`: hidden_size, or
/// where that optional attribute is absent the last dim of R [D, G·H, H]. Every reader of the node
/// takes H from here, so the shapes of its output are followed with the H its weights are read
/// with.
inline std::int64_t readRecurrentAttributes(const OnnxGraph& g, int n, bool first, OnnxInfo& info,
                                            std::int64_t& layout, std::int64_t& hidden) {
  const std::string& op = g.node(n).op_type();
  for (const onnx::AttributeProto& a : g.node(n).attribute()) {
    const std::string& name = a.name();
    if (name == "clip") {
      g.fail("node ", g.describe(n), ": attribute clip = ", a.f(),
             " is not supported (cell clipping is not represented)");
    }
    if (name == "activation_alpha" || name == "activation_beta") {
      std::vector<std::string> values;
      for (const float v : a.floats()) values.push_back(std::to_string(v));
      g.fail("node ", g.describe(n), ": attribute ", name, " = ", joined(values),
             " is not supported (only the default activations are represented)");
    }
    if (name != "activations" && name != "direction" && name != "hidden_size" && name != "layout" &&
        !(op == "LSTM" && name == "input_forget") &&
        !(op == "GRU" && name == "linear_before_reset")) {
      g.fail("node ", g.describe(n), ": attribute ", name, " is not supported");
    }
  }
  if (op == "LSTM" && g.intAttribute(n, "input_forget", 0) != 0) {
    g.fail("node ", g.describe(n),
           ": attribute input_forget = ", g.intAttribute(n, "input_forget", 0),
           " is not supported (coupled input and forget gates are not represented)");
  }
  const std::string direction = g.stringAttribute(n, "direction", "forward");
  if (direction != "forward" && direction != "reverse" && direction != "bidirectional") {
    g.fail("node ", g.describe(n), ": attribute direction = ", direction,
           " is not supported (a layer runs forward, reverse, or both ways)");
  }
  const std::int64_t D = direction == "bidirectional" ? 2 : 1;
  layout = g.intAttribute(n, "layout", 0);
  if (layout != 0 && layout != 1) {
    g.fail("node ", g.describe(n), ": attribute layout = ", layout, " must be 0 or 1");
  }
  // H from R [D, G·H, H] where hidden_size is absent: the weights say it (where both are given,
  // R's dims are checked against hidden_size when the weights are read).
  hidden = g.intAttribute(n, "hidden_size", -1);
  const onnx::TensorProto* r = g.constant(g.input(n, 2));
  if (r != nullptr && r->dims_size() == 3 && hidden < 0) hidden = r->dims(2);
  if (hidden == -1 && g.attribute(n, "hidden_size") == nullptr) {
    g.fail("node ", g.describe(n),
           ": attribute hidden_size is absent and input R is not a stored tensor of 3 dims to "
           "take H from");
  }
  if (hidden < 1 || hidden > (std::int64_t(1) << 24)) {
    g.fail("node ", g.describe(n), ": hidden_size = ", hidden, " must be in 1..",
           std::int64_t(1) << 24);
  }

  bool resetAfter = true;
  if (op == "GRU") {
    const std::int64_t lbr = g.intAttribute(n, "linear_before_reset", 0);
    if (lbr != 0 && lbr != 1) {
      g.fail("node ", g.describe(n), ": attribute linear_before_reset = ", lbr, " must be 0 or 1");
    }
    resetAfter = lbr == 1;
  }
  // The defaults, once per direction; an RNN may also use Relu (RNNCell's Nonlinearity::Relu).
  const std::vector<std::string> activations = g.stringsAttribute(n, "activations");
  bool relu = false;
  if (!activations.empty()) {
    std::vector<std::string> defaults;
    if (op == "LSTM") defaults = {"Sigmoid", "Tanh", "Tanh"};
    if (op == "GRU") defaults = {"Sigmoid", "Tanh"};
    if (op == "RNN") defaults = {activations.front() == "Relu" ? "Relu" : "Tanh"};
    relu = op == "RNN" && defaults.front() == "Relu";
    bool ok = activations.size() == defaults.size() * static_cast<std::size_t>(D);
    for (std::size_t k = 0; ok && k < activations.size(); ++k) {
      ok = activations[k] == defaults[k % defaults.size()];
    }
    if (!ok) {
      g.fail("node ", g.describe(n), ": attribute activations = ", joined(activations),
             " is not supported (only ", joined(defaults), " per direction",
             op == "RNN" ? ", or Relu," : "", " is represented)");
    }
  }

  if (first) {
    info.op = op;
    info.bidirectional = D == 2;
    info.reverse = direction == "reverse";
    info.resetAfter = resetAfter;
    info.relu = relu;
  } else if (op != info.op || resetAfter != info.resetAfter || relu != info.relu) {
    g.fail("node ", g.describe(n), " differs from the layers before it (operator, ",
           "linear_before_reset or activations): one stack has one kind of layer");
  }
  return D;
}

/// A constant tensor input of node `n` (`k`: its index, `what`: its name) with the dims
/// `expected` (as the operator defines them); an empty tensor if the input is omitted and
/// `optional`.
inline OnnxTensor recurrentTensor(const OnnxGraph& g, int n, int k, const char* what,
                                  const std::vector<std::int64_t>& expected, bool optional) {
  const std::string value = g.input(n, k);
  if (value.empty()) {
    if (optional) return {};
    g.fail("node ", g.describe(n), ": input ", what, " is missing");
  }
  const onnx::TensorProto* t = g.constant(value);
  if (t == nullptr) {
    g.fail("node ", g.describe(n), ": input ", what, " ('", value,
           "') must be an initializer or a Constant (weights are loaded, not computed)");
  }
  OnnxTensor out = g.floats(*t, "input " + std::string(what) + " of node " + g.describe(n));
  if (out.dims != expected) {
    g.fail("node ", g.describe(n), ": input ", what, " has dims ", dimsString(out.dims),
           ", expected ", dimsString(expected));
  }
  return out;
}

/// Reads recurrent node `n` into a layer: its attributes into `info`, its weights, and where its
/// sequence_lens and initial states come from. `inputSize` is what its X holds (the graph's I for
/// the first layer, D·H of the layer before). Sets `layout`.
inline OnnxLayer readRecurrentNode(const OnnxGraph& g, int n, bool first, std::int64_t inputSize,
                                   OnnxInfo& info, std::int64_t& layout) {
  std::int64_t hidden = -1;
  const std::int64_t D = readRecurrentAttributes(g, n, first, info, layout, hidden);
  const std::string& op = g.node(n).op_type();
  const std::int64_t G = op == "LSTM" ? 4 : op == "GRU" ? 3 : 1;
  if (g.node(n).input_size() > (op == "LSTM" ? 8 : 6)) {
    g.fail("node ", g.describe(n), " has ", g.node(n).input_size(),
           " inputs; the operator takes at most ", op == "LSTM" ? 8 : 6);
  }
  OnnxLayer layer;
  layer.node = n;
  layer.W = recurrentTensor(g, n, 1, "W", {D, G * hidden, inputSize}, false);
  layer.R = recurrentTensor(g, n, 2, "R", {D, G * hidden, hidden}, false);
  layer.B = recurrentTensor(g, n, 3, "B", {D, 2 * G * hidden}, true);
  if (op == "LSTM") {
    layer.P = recurrentTensor(g, n, 7, "P", {D, 3 * hidden}, true);
    if (!layer.P.empty()) info.peephole = true;
  }
  info.hiddenSizes.push_back(hidden);

  const std::string lens = g.input(n, 4);
  if (!lens.empty()) {
    if (!g.isGraphInput(lens)) {
      g.fail("node ", g.describe(n), ": input sequence_lens ('", lens,
             "') must be an input of the graph (the lengths are given at each call)");
    }
    if (!info.sequenceLens.empty() && info.sequenceLens != lens) {
      g.fail("node ", g.describe(n), ": input sequence_lens is '", lens, "', an earlier layer's '",
             info.sequenceLens, "' (one stack has one set of lengths)");
    }
    info.sequenceLens = lens;
  }
  const int states = op == "LSTM" ? 7 : 6;
  for (int k = 5; k < states; ++k) {
    const std::string value = g.input(n, k);
    if (value.empty() || isZeroValue(g, value)) continue;
    if (!g.isGraphInput(value)) {
      g.fail("node ", g.describe(n), ": input ", k == 5 ? "initial_h" : "initial_c", " ('", value,
             "') is neither zero nor an input of the graph");
    }
    info.stateInputs.push_back(value);
  }
  return layer;
}

}  // namespace detail
}  // namespace recurrent
