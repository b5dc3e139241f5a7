// recurrent — io/onnx_chain.hpp: the chain of recurrent nodes of an ONNX graph, followed from the
// graph's input x through every recurrent node to the Linear (Gemm, or MatMul and Add) after them.
//
// The last node's output may end the graph or go on to operators that are not loaded (the caller
// applies them); but a Gemm or MatMul that reads it is the Linear, and is loaded exactly or
// refused: one whose scale factors, operands or stored tensors a Linear cannot hold would
// otherwise be dropped without a word, and the model loaded would be another one.
//
// Between two recurrent nodes only shape operators may stand (Squeeze, Transpose, Reshape,
// Identity: what torch.onnx.export writes), and they must turn the output Y of one node, (T, D,
// B, H) or with layout 1 (B, T, D, H), into the input X of the next, (T, B, D·H) or (B, T, D·H),
// with the directions concatenated as a Stack concatenates them. The axes are followed by name
// through every such operator, so a Transpose that would mix time and features is refused
// rather than loaded wrongly.
#pragma once

#include <recurrent/io/onnx_read.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace recurrent {
namespace detail {

/// The axes of a tensor between recurrent nodes: time, batch, direction, hidden, the directions'
/// outputs merged (D·H), time and batch merged (for a Gemm).
enum class OnnxAxis { T, B, D, H, DH, TB };

/// Where following the output of a recurrent node ended.
struct OnnxWalk {
  int next = -1;               ///< the next recurrent node, or -1
  int stop = -1;               ///< the node the walk could not follow, or -1 (the value ends there)
  int linear = -1;             ///< the MatMul or Gemm that reads the output, or -1
  std::string value;           ///< with `linear`: the value of the output it reads
  std::vector<OnnxAxis> axes;  ///< with `linear`: the axes of that value
};

inline std::string axesString(const std::vector<OnnxAxis>& axes) {
  static const char* const names[] = {"T", "B", "D", "H", "D·H", "T·B"};
  std::string s = "(";
  for (std::size_t k = 0; k < axes.size(); ++k) {
    s += (k ? ", " : "") + std::string(names[static_cast<int>(axes[k])]);
  }
  return s + ")";
}

/// The axes node `n` reads as "features" must be: its X is (T, B, F) or with layout 1 (B, T, F).
inline bool isRecurrentInput(const std::vector<OnnxAxis>& axes, std::int64_t layout) {
  if (axes.size() != 3 || (axes[2] != OnnxAxis::DH && axes[2] != OnnxAxis::H)) return false;
  return layout == 0 ? (axes[0] == OnnxAxis::T && axes[1] == OnnxAxis::B)
                     : (axes[0] == OnnxAxis::B && axes[1] == OnnxAxis::T);
}

/// The integer input `k` of node `n` (axes, a shape), which must be a constant.
inline std::vector<std::int64_t> constantIntegers(const OnnxGraph& g, int n, int k,
                                                  const char* what) {
  const onnx::TensorProto* t = g.constant(g.input(n, k));
  if (t == nullptr) g.fail("node ", g.describe(n), ": ", what, " must be a constant");
  return g.integers(*t, std::string(what) + " of node " + g.describe(n));
}

/// Applies the shape operator `n` (Squeeze, Transpose, Reshape, Identity) to `axes`, D
/// directions of H each. Returns false if `n` is another operator; throws if it is one of these
/// but does not do what a chain of layers needs.
inline bool applyShapeOp(const OnnxGraph& g, int n, std::vector<OnnxAxis>& axes, std::int64_t D,
                         std::int64_t H) {
  const std::string& op = g.node(n).op_type();
  const auto rank = static_cast<std::int64_t>(axes.size());
  if (op == "Identity") return true;
  if (op == "Squeeze") {
    bool present = false;
    std::vector<std::int64_t> squeezed = g.intsAttribute(n, "axes", present);
    if (!present && !g.input(n, 1).empty()) squeezed = constantIntegers(g, n, 1, "axes");
    if (squeezed.empty()) g.fail("node ", g.describe(n), ": a Squeeze without axes is ambiguous");
    std::vector<bool> drop(axes.size(), false);
    for (std::int64_t a : squeezed) {
      if (a < 0) a += rank;
      if (a < 0 || a >= rank || axes[static_cast<std::size_t>(a)] != OnnxAxis::D || D != 1) {
        g.fail("node ", g.describe(n), ": Squeeze of axes ", dimsString(squeezed), " of ",
               axesString(axes), ": only the direction axis of a one-direction layer may go");
      }
      drop[static_cast<std::size_t>(a)] = true;
    }
    std::vector<OnnxAxis> kept;
    for (std::size_t k = 0; k < axes.size(); ++k) {
      if (!drop[k]) kept.push_back(axes[k]);
    }
    axes = kept;
    return true;
  }
  if (op == "Transpose") {
    bool present = false;
    std::vector<std::int64_t> perm = g.intsAttribute(n, "perm", present);
    if (!present) {
      for (std::int64_t k = rank - 1; k >= 0; --k) perm.push_back(k);
    }
    std::vector<bool> seen(axes.size(), false);
    std::vector<OnnxAxis> out;
    for (const std::int64_t p : perm) {
      if (p < 0 || p >= rank || seen[static_cast<std::size_t>(p)]) {
        g.fail("node ", g.describe(n), ": perm ", dimsString(perm), " is not a permutation of ",
               rank, " axes");
      }
      seen[static_cast<std::size_t>(p)] = true;
      out.push_back(axes[static_cast<std::size_t>(p)]);
    }
    if (out.size() != axes.size()) {
      g.fail("node ", g.describe(n), ": perm ", dimsString(perm), " is not a permutation of ", rank,
             " axes");
    }
    axes = out;
    return true;
  }
  if (op == "Reshape") {
    const std::vector<std::int64_t> shape = constantIntegers(g, n, 1, "shape");
    // (a, b, D, H) → (a, b, D·H): the directions' outputs side by side, as a Stack concatenates.
    if (rank == 4 && axes[2] == OnnxAxis::D && axes[3] == OnnxAxis::H && shape.size() == 3 &&
        shape[0] == 0 && shape[1] == 0 && (shape[2] == -1 || shape[2] == D * H)) {
      axes = {axes[0], axes[1], OnnxAxis::DH};
      return true;
    }
    // (T, B, F) or (B, T, F) → (T·B, F): every step and sequence a row, for a Gemm.
    if (rank == 3 && (axes[2] == OnnxAxis::DH || (axes[2] == OnnxAxis::H && D == 1)) &&
        shape.size() == 2 && shape[0] == -1 && shape[1] == D * H) {
      axes = {OnnxAxis::TB, axes[2]};
      return true;
    }
    g.fail("node ", g.describe(n), ": Reshape of ", axesString(axes), " to ", dimsString(shape),
           " is not a merge of the directions' outputs");
  }
  return false;
}

/// The consumers of `value` that read more than its shape (Shape nodes are left out).
inline std::vector<int> dataConsumers(const OnnxGraph& g, const std::string& value) {
  std::vector<int> out;
  for (const int c : g.consumers(value)) {
    if (g.node(c).op_type() != "Shape") out.push_back(c);
  }
  return out;
}

/// Follows the output Y of recurrent node `n` (D directions of H) forward.
inline OnnxWalk followOutput(const OnnxGraph& g, int n, std::int64_t layout, std::int64_t D,
                             std::int64_t H) {
  OnnxWalk walk;
  std::string value = g.node(n).output_size() > 0 ? g.node(n).output(0) : std::string();
  if (value.empty()) return walk;
  std::vector<OnnxAxis> axes =
      layout == 0 ? std::vector<OnnxAxis>{OnnxAxis::T, OnnxAxis::D, OnnxAxis::B, OnnxAxis::H}
                  : std::vector<OnnxAxis>{OnnxAxis::B, OnnxAxis::T, OnnxAxis::D, OnnxAxis::H};
  for (int step = 0; step <= g.graph().node_size(); ++step) {
    const std::vector<int> next = dataConsumers(g, value);
    if (next.empty()) return walk;
    const int c = next.front();
    if (next.size() > 1) {
      walk.stop = c;  // a branch
      return walk;
    }
    const std::string& op = g.node(c).op_type();
    if (op == "MatMul" || op == "Gemm") {  // whichever input reads it: readLinear checks
      walk.linear = c;
      walk.value = value;
      walk.axes = axes;
      return walk;
    }
    if (g.input(c, 0) != value) {
      walk.stop = c;  // the value is not what the node works on
      return walk;
    }
    if (isRecurrentOp(g.node(c))) {
      const std::int64_t nextLayout = g.intAttribute(c, "layout", 0);
      if (!isRecurrentInput(axes, nextLayout) || (axes[2] == OnnxAxis::H && D != 1)) {
        g.fail("node ", g.describe(c), ": its input X is ", axesString(axes),
               " of the output of node ", g.describe(n), ", it needs ",
               nextLayout == 0 ? "(T, B, D·H)" : "(B, T, D·H)");
      }
      walk.next = c;
      return walk;
    }
    if (!applyShapeOp(g, c, axes, D, H)) {
      walk.stop = c;
      return walk;
    }
    if (g.node(c).output_size() < 1) return walk;
    value = g.node(c).output(0);
  }
  g.fail("the output of node ", g.describe(n), " runs in a cycle");
}

/// The Linear at node walk.linear (a Gemm, or a MatMul and the Add of its bias) on the F features
/// of the output of recurrent node `from` (D directions): its weight as O × F row-major and its
/// bias. Throws if the node is not exactly weight · x + bias of stored tensors on those features.
inline void readLinear(const OnnxGraph& g, const OnnxWalk& walk, int from, std::int64_t D,
                       std::int64_t F, OnnxChain& chain) {
  const int n = walk.linear;
  const std::string desc = g.describe(n);
  const bool gemm = g.node(n).op_type() == "Gemm";
  static const char* const kInputs[] = {"A", "B", "C"};
  // The recurrent output is A (the rows it multiplies); as B or C it is a weight or a bias of
  // another product, which a Linear is not.
  if (g.input(n, 0) != walk.value) {
    int k = 1;
    while (k < g.node(n).input_size() && g.input(n, k) != walk.value) ++k;
    const std::string input = k < 3 ? std::string(kInputs[k]) : "#" + std::to_string(k);
    g.fail("node ", desc, ": its input ", input, " ('", walk.value, "') is the output of node ",
           g.describe(from), "; a Linear after the recurrent nodes reads it as input A");
  }
  // A MatMul multiplies the last axis of A, whatever leads it; a Gemm takes A as a matrix, every
  // step of every sequence a row. Either way the features must be that axis: the directions'
  // outputs side by side (D·H), or H of one direction.
  const std::vector<OnnxAxis>& axes = walk.axes;
  const bool features =
      !axes.empty() && (axes.back() == OnnxAxis::DH || (axes.back() == OnnxAxis::H && D == 1));
  if (!features || (gemm && axes.size() != 2)) {
    g.fail("node ", desc, ": its input A is ", axesString(axes), " of the output of node ",
           g.describe(from),
           gemm ? "; a Gemm after the recurrent nodes needs (T·B, D·H)"
                : "; a MatMul after the recurrent nodes needs the features (D·H) last");
  }
  bool transB = false;
  if (gemm) {  // Y = alpha · A' · B' + beta · C; a Linear is W · x + b
    for (const onnx::AttributeProto& a : g.node(n).attribute()) {
      if (a.name() != "alpha" && a.name() != "beta" && a.name() != "transA" &&
          a.name() != "transB") {
        g.fail("node ", desc, ": attribute ", a.name(), " is not supported");
      }
    }
    const float alpha = g.floatAttribute(n, "alpha", 1.0f);
    if (alpha != 1.0f) {
      g.fail("node ", desc, ": attribute alpha = ", alpha,
             " is not supported (only 1: a Linear does not scale its product)");
    }
    const float beta = g.floatAttribute(n, "beta", 1.0f);
    if (beta != 1.0f && !g.input(n, 2).empty()) {  // without C, beta scales nothing
      g.fail("node ", desc, ": attribute beta = ", beta,
             " is not supported (only 1: a Linear adds its bias unscaled)");
    }
    const std::int64_t transA = g.intAttribute(n, "transA", 0);
    if (transA != 0) {
      g.fail("node ", desc, ": attribute transA = ", transA,
             " is not supported (only 0: a Linear reads each step as a row)");
    }
    transB = g.intAttribute(n, "transB", 0) != 0;
  } else if (g.node(n).attribute_size() > 0) {
    g.fail("node ", desc, ": attribute ", g.node(n).attribute(0).name(), " is not supported");
  }
  const std::string weightName = g.input(n, 1);
  if (weightName.empty()) g.fail("node ", desc, ": input B is missing");
  const onnx::TensorProto* w = g.constant(weightName);
  if (w == nullptr) {
    g.fail("node ", desc, ": input B ('", weightName,
           "') must be an initializer or a Constant (the weight of a Linear is loaded, not "
           "computed)");
  }
  if (w->dims_size() != 2) {
    g.fail("node ", desc, ": input B has dims ", dimsString({w->dims().begin(), w->dims().end()}),
           "; the weight of a Linear is a matrix");
  }
  const onnx::TensorProto* bias = nullptr;
  if (gemm) {
    const std::string c = g.input(n, 2);
    if (!c.empty() && (bias = g.constant(c)) == nullptr) {
      g.fail("node ", desc, ": input C ('", c,
             "') must be an initializer or a Constant (the bias of a Linear is loaded, not "
             "computed)");
    }
  } else {
    // The bias is the constant that one Add adds to the product, in either order. A product that
    // goes nowhere further is a Linear without bias (nn.Linear(bias=False) exports as a MatMul
    // alone); one that goes to any other node may be biased in a way not read here.
    const std::string product = g.node(n).output_size() > 0 ? g.node(n).output(0) : std::string();
    const std::vector<int> after = product.empty() ? std::vector<int>() : dataConsumers(g, product);
    if (after.size() == 1 && g.node(after[0]).op_type() == "Add") {
      const int add = after[0];
      const int k = g.input(add, 0) == product ? 1 : 0;
      const std::string other = g.input(add, k);
      if ((bias = g.constant(other)) == nullptr) {
        g.fail("node ", g.describe(add), ": input ", kInputs[k], " ('", other,
               "') must be an initializer or a Constant (the bias of the Linear of node ", desc,
               " is loaded, not computed)");
      }
    } else if (!after.empty()) {
      g.fail("node ", desc, ": its product goes to ",
             after.size() == 1 ? "node " + g.describe(after[0])
                               : std::to_string(after.size()) + " nodes",
             "; a Linear's goes to one Add of its bias, or nowhere further");
    }
  }
  const OnnxTensor weight = g.floats(*w, "the weight of node " + desc);
  const std::int64_t O = transB ? weight.dims[0] : weight.dims[1];
  if ((transB ? weight.dims[1] : weight.dims[0]) != F || O < 1) {
    g.fail("node ", desc, ": its weight has dims ", dimsString(weight.dims), " for ", F,
           " features");
  }
  chain.linearWeight.assign(static_cast<std::size_t>(O * F), 0.0);
  for (std::int64_t o = 0; o < O; ++o) {
    for (std::int64_t f = 0; f < F; ++f) {
      chain.linearWeight[static_cast<std::size_t>(o * F + f)] =
          weight.values[static_cast<std::size_t>(transB ? o * F + f : f * O + o)];
    }
  }
  chain.linearBias.assign(static_cast<std::size_t>(O), 0.0);
  if (bias != nullptr) {
    const OnnxTensor b = g.floats(*bias, "the bias of node " + desc);
    if (static_cast<std::int64_t>(b.values.size()) != O || b.dims.empty() || b.dims.back() != O) {
      g.fail("node ", desc, ": its bias has dims ", dimsString(b.dims), " for ", O, " outputs");
    }
    chain.linearBias = b.values;
  }
  chain.info.linearOutput = O;
}

/// The graph input that X of node `n` comes from, through Transposes and Identities only, and
/// whether the two leading axes were swapped on the way.
inline std::string traceInput(const OnnxGraph& g, int n, bool& swapped) {
  std::string value = g.input(n, 0);
  swapped = false;
  for (int step = 0; step <= g.graph().node_size(); ++step) {
    if (g.isGraphInput(value)) return value;
    const int p = g.producer(value);
    if (p < 0) break;
    const std::string& op = g.node(p).op_type();
    if (op == "Transpose") {
      bool present = false;
      const std::vector<std::int64_t> perm = g.intsAttribute(p, "perm", present);
      if (perm != std::vector<std::int64_t>{1, 0, 2}) {
        g.fail("node ", g.describe(p), ": a Transpose of perm ", dimsString(perm),
               " before the first recurrent node (only (1, 0, 2), batch-first input, is read)");
      }
      swapped = !swapped;
    } else if (op != "Identity") {
      g.fail("input X of node ", g.describe(n), " is computed by node ", g.describe(p),
             "; the first layer must read an input of the graph");
    }
    value = g.input(p, 0);
  }
  g.fail("input X of node ", g.describe(n), " ('", g.input(n, 0),
         "') is not an input of the graph");
}

/// The recurrent layers of graph `g`, in order, and the Linear after them.
inline OnnxChain readOnnxChain(const OnnxGraph& g) {
  std::vector<int> recurrent;
  for (int n = 0; n < g.graph().node_size(); ++n) {
    if (isRecurrentOp(g.node(n))) recurrent.push_back(n);
  }
  if (recurrent.empty()) g.fail("the graph has no LSTM, GRU or RNN node");
  // Every node's attributes first: what cannot be represented is reported as such, before any
  // question of how the nodes are joined. One stack reads all its layers in one direction
  // (forward, reverse or both ways), so the nodes' directions must agree.
  const std::string direction = g.stringAttribute(recurrent[0], "direction", "forward");
  std::vector<std::int64_t> hidden(static_cast<std::size_t>(g.graph().node_size()), 0);
  for (const int n : recurrent) {
    OnnxInfo scratch;
    std::int64_t layout = 0;
    readRecurrentAttributes(g, n, true, scratch, layout, hidden[static_cast<std::size_t>(n)]);
    const std::string own = g.stringAttribute(n, "direction", "forward");
    if (own != direction) {
      g.fail("node ", g.describe(n), ": attribute direction = ", own, ", node ",
             g.describe(recurrent[0]), " has ", direction,
             ": one stack reads every layer in one direction");
    }
  }
  // The first layer is the one no other recurrent node leads to.
  std::vector<bool> led(static_cast<std::size_t>(g.graph().node_size()), false);
  std::vector<OnnxWalk> walks(led.size());
  for (const int n : recurrent) {
    const std::int64_t D = g.stringAttribute(n, "direction", "forward") == "bidirectional" ? 2 : 1;
    walks[static_cast<std::size_t>(n)] =
        followOutput(g, n, g.intAttribute(n, "layout", 0), D, hidden[static_cast<std::size_t>(n)]);
    const int next = walks[static_cast<std::size_t>(n)].next;
    if (next >= 0) {
      if (led[static_cast<std::size_t>(next)]) {
        g.fail("node ", g.describe(next), " reads the output of two recurrent nodes");
      }
      led[static_cast<std::size_t>(next)] = true;
    }
  }
  std::vector<int> firsts;
  for (const int n : recurrent) {
    if (!led[static_cast<std::size_t>(n)]) firsts.push_back(n);
  }
  if (firsts.size() > 1) {  // a chain broken by an operator that is not a shape operator
    for (const int n : recurrent) {
      const OnnxWalk& walk = walks[static_cast<std::size_t>(n)];
      const int at = walk.stop >= 0 ? walk.stop : walk.linear;
      if (walk.next < 0 && at >= 0) {
        g.fail("node ", g.describe(at), " stands between recurrent nodes ", g.describe(n),
               " and the next: only Squeeze, Transpose, Reshape and Identity may");
      }
    }
  }
  if (firsts.size() != 1) {
    g.fail("the recurrent nodes form ", firsts.size(), " chains (",
           firsts.empty() ? "a cycle" : "layers not joined one to the next",
           "); one stack is one chain");
  }

  OnnxChain chain;
  bool swapped = false;
  chain.info.input = traceInput(g, firsts[0], swapped);
  std::int64_t inputSize = -1;
  const onnx::TensorProto* w = g.constant(g.input(firsts[0], 1));
  if (w == nullptr) {
    recurrentTensor(g, firsts[0], 1, "W", {}, false);  // throws: W is computed, not stored
  } else if (w->dims_size() == 3) {
    inputSize = w->dims(2);
  }
  if (inputSize < 1) g.fail("node ", g.describe(firsts[0]), ": input W must have dims [D, G·H, I]");
  chain.info.inputSize = inputSize;

  int n = firsts[0];
  for (std::size_t count = 0; n >= 0; ++count) {
    if (count >= recurrent.size()) g.fail("the recurrent nodes form a cycle");
    std::int64_t layout = 0;
    chain.layers.push_back(readRecurrentNode(g, n, count == 0, inputSize, chain.info, layout));
    if (count == 0) chain.info.batchFirst = (layout == 1) != swapped;
    // A Stack gives every layer the lengths of the call; a node without sequence_lens runs all T
    // steps of every sequence (the operator's definition), so either every node has them or none.
    const std::string lens = g.input(n, 4);
    const std::string firstLens = g.input(firsts[0], 4);
    if (lens.empty() != firstLens.empty()) {
      g.fail("node ", g.describe(n), ": input sequence_lens ",
             lens.empty() ? "is omitted" : "is '" + lens + "'", ", node ", g.describe(firsts[0]),
             lens.empty() ? " has '" + firstLens + "'" : std::string(" has none"),
             ": one stack gives every layer the same lengths (a layer without sequence_lens runs "
             "all T steps)");
    }
    const std::int64_t D = chain.info.bidirectional ? 2 : 1;
    const std::int64_t H = chain.info.hiddenSizes.back();
    inputSize = D * H;
    const OnnxWalk& walk = walks[static_cast<std::size_t>(n)];
    if (walk.next < 0 && chain.layers.size() < recurrent.size()) {
      if (walk.stop >= 0 || walk.linear >= 0) {
        const int at = walk.stop >= 0 ? walk.stop : walk.linear;
        g.fail("node ", g.describe(at), " stands between recurrent nodes ", g.describe(n),
               " and the next: only Squeeze, Transpose, Reshape and Identity may");
      }
      g.fail("the output of node ", g.describe(n), " leads to no further recurrent node, but ",
             recurrent.size() - chain.layers.size(), " are left");
    }
    if (walk.next < 0 && walk.linear >= 0) readLinear(g, walk, n, D, inputSize, chain);
    n = walk.next;
  }
  return chain;
}

}  // namespace detail
}  // namespace recurrent
