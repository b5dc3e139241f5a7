// recurrent — io/onnx_write.hpp: a Stack (and a Linear) as an ONNX model: saveOnnx.
//
// Included by onnx.hpp. The model imports opset 14 of the default domain (IR version 7) and
// reads
//
//     input          (T, B, I)   float or double, as the Stack's Scalar; T and B symbolic
//     sequence_lens  (B)         int32: the length of each sequence (1..T)
//
// and writes `output` (T, B, D·H), or (T, B, O) through the Linear: one LSTM, GRU or RNN node per
// layer with the weights in the operator's gate order (see onnx.hpp for the mapping), the
// directions of a bidirectional layer merged by Transpose (0, 2, 1, 3) and Reshape (0, 0, -1)
// (a one-direction layer's axis removed by Squeeze; a reverse stack's nodes have direction
// "reverse"), the Linear as MatMul and Add. Outputs in padding are zero (the Linear's: its bias),
// as the Stack's are. What ONNX has no operator for is refused: a projected LSTM, Merge::Sum.
#pragma once

#include <recurrent/cells/gru.hpp>
#include <recurrent/cells/lstm.hpp>
#include <recurrent/cells/rnn.hpp>
#include <recurrent/io/onnx_graph.hpp>
#include <recurrent/layers/stack.hpp>
#include <recurrent/train/linear.hpp>

#include <Eigen/Core>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <type_traits>
#include <vector>

namespace recurrent {
namespace detail {

template <typename Cell>
struct AlwaysFalse : std::false_type {};

/// Which ONNX operator a cell type is, and how to make one for a layer. Only the cells of ONNX's
/// LSTM, GRU and RNN operators have one.
template <typename Cell>
struct OnnxCell {
  static_assert(AlwaysFalse<Cell>::value,
                "recurrent: ONNX reads and writes LSTMCell, PeepholeLSTMCell, GRUCell, "
                "ResetBeforeGRUCell and RNNCell only (ONNX has no layer-normalised cell)");
};
template <typename S, int I, int H, LSTMVariant V>
struct OnnxCell<LSTMCell<S, I, H, V>> {
  static constexpr const char* kOp = "LSTM";
  static constexpr const char* kName = V == LSTMVariant::Peephole ? "PeepholeLSTMCell" : "LSTMCell";
  static constexpr bool kPeephole = V == LSTMVariant::Peephole;
  template <typename Info>
  static bool matches(const Info& info) {
    return info.op == kOp && info.peephole == kPeephole;
  }
  template <typename Info>
  static LSTMCell<S, I, H, V> make(Eigen::Index in, Eigen::Index hidden, const Info&) {
    return LSTMCell<S, I, H, V>(in, hidden);
  }
  static void attributes(const LSTMCell<S, I, H, V>&, std::int64_t, onnx::NodeProto&) {}
};
template <typename S, int I, int H, GRUVariant V>
struct OnnxCell<GRUCell<S, I, H, V>> {
  static constexpr const char* kOp = "GRU";
  static constexpr const char* kName =
      V == GRUVariant::ResetAfter ? "GRUCell (ResetAfter)" : "ResetBeforeGRUCell";
  static constexpr bool kPeephole = false;
  template <typename Info>
  static bool matches(const Info& info) {
    return info.op == kOp && info.resetAfter == (V == GRUVariant::ResetAfter);
  }
  template <typename Info>
  static GRUCell<S, I, H, V> make(Eigen::Index in, Eigen::Index hidden, const Info&) {
    return GRUCell<S, I, H, V>(in, hidden);
  }
  static void attributes(const GRUCell<S, I, H, V>&, std::int64_t, onnx::NodeProto& node) {
    onnx::AttributeProto* a = node.add_attribute();
    a->set_name("linear_before_reset");
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(V == GRUVariant::ResetAfter ? 1 : 0);
  }
};
template <typename S, int I, int H>
struct OnnxCell<RNNCell<S, I, H>> {
  static constexpr const char* kOp = "RNN";
  static constexpr const char* kName = "RNNCell";
  static constexpr bool kPeephole = false;
  template <typename Info>
  static bool matches(const Info& info) {
    return info.op == kOp;
  }
  template <typename Info>
  static RNNCell<S, I, H> make(Eigen::Index in, Eigen::Index hidden, const Info& info) {
    return RNNCell<S, I, H>(in, hidden, info.relu ? Nonlinearity::Relu : Nonlinearity::Tanh);
  }
  /// Relu once per direction (Tanh, the default, is not written).
  static void attributes(const RNNCell<S, I, H>& cell, std::int64_t directions,
                         onnx::NodeProto& node) {
    if (cell.nonlinearity() != Nonlinearity::Relu) return;
    onnx::AttributeProto* a = node.add_attribute();
    a->set_name("activations");
    a->set_type(onnx::AttributeProto::STRINGS);
    for (std::int64_t d = 0; d < directions; ++d) a->add_strings("Relu");
  }
};

/// The ONNX gate block that holds gate `k` of this library's order.
inline std::int64_t onnxGateOf(const std::string& op, std::int64_t k) {
  static const std::int64_t lstm[] = {0, 2, 3, 1};  // ours i, f, g, o ↔ ONNX i, o, f, c
  static const std::int64_t gru[] = {1, 0, 2};      // ours r, z, n ↔ ONNX z, r, h
  return op == "LSTM" ? lstm[k] : op == "GRU" ? gru[k] : 0;
}

/// Adds an initializer `name` of `dims` holding `values` (row-major) as FLOAT or DOUBLE.
template <typename Scalar>
void addInitializer(onnx::GraphProto& graph, const std::string& name,
                    const std::vector<std::int64_t>& dims, const std::vector<Scalar>& values) {
  onnx::TensorProto* t = graph.add_initializer();
  t->set_name(name);
  for (const std::int64_t d : dims) t->add_dims(d);
  if constexpr (std::is_same<Scalar, float>::value) {
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (const float v : values) t->add_float_data(v);
  } else {
    t->set_data_type(onnx::TensorProto::DOUBLE);
    for (const double v : values) t->add_double_data(v);
  }
}

inline void addIntegers(onnx::GraphProto& graph, const std::string& name,
                        const std::vector<std::int64_t>& values) {
  onnx::TensorProto* t = graph.add_initializer();
  t->set_name(name);
  t->add_dims(static_cast<std::int64_t>(values.size()));
  t->set_data_type(onnx::TensorProto::INT64);
  for (const std::int64_t v : values) t->add_int64_data(v);
}

/// A value of the graph's inputs or outputs: `elementType` with dims, symbolic where `names`
/// has a name.
inline void addValueInfo(google::protobuf::RepeatedPtrField<onnx::ValueInfoProto>* list,
                         const std::string& name, int elementType,
                         const std::vector<std::string>& names,
                         const std::vector<std::int64_t>& dims) {
  onnx::ValueInfoProto* v = list->Add();
  v->set_name(name);
  onnx::TypeProto_Tensor* t = v->mutable_type()->mutable_tensor_type();
  t->set_elem_type(elementType);
  for (std::size_t k = 0; k < dims.size(); ++k) {
    onnx::TensorShapeProto_Dimension* d = t->mutable_shape()->add_dim();
    if (!names[k].empty()) {
      d->set_dim_param(names[k]);
    } else {
      d->set_dim_value(dims[k]);
    }
  }
}

inline onnx::NodeProto* addNode(onnx::GraphProto& graph, const std::string& op,
                                const std::string& name, const std::vector<std::string>& inputs,
                                const std::vector<std::string>& outputs) {
  onnx::NodeProto* n = graph.add_node();
  n->set_op_type(op);
  n->set_name(name);
  for (const std::string& s : inputs) n->add_input(s);
  for (const std::string& s : outputs) n->add_output(s);
  return n;
}

}  // namespace detail

/// The ONNX model of `stack` and, if not null, the Linear after it (see the top of this file).
/// Throws OnnxError for what ONNX cannot represent (a projected LSTM, Merge::Sum) and
/// std::invalid_argument if the Linear does not take the stack's outputs.
template <typename Cell>
onnx::ModelProto onnxModel(const Stack<Cell>& stack,
                           const Linear<typename Cell::Scalar>* linear = nullptr) {
  using Scalar = typename Cell::Scalar;
  using Traits = detail::OnnxCell<Cell>;
  const char* where = "saveOnnx";
  const std::string op = Traits::kOp;
  if (stack.bidirectional() && stack.merge() != Merge::Concat) {
    detail::onnxError(where, "stack",
                      "ONNX's bidirectional layers concatenate their directions; "
                      "Merge::Sum is not represented");
  }
  if (linear != nullptr && linear->inputSize() != stack.outputSize()) {
    detail::fail(where, ": the Linear takes ", linear->inputSize(), " inputs, the stack gives ",
                 stack.outputSize());
  }
  const int elementType =
      std::is_same<Scalar, float>::value ? onnx::TensorProto::FLOAT : onnx::TensorProto::DOUBLE;
  onnx::ModelProto model;
  model.set_ir_version(7);
  model.set_producer_name("recurrent");
  onnx::OperatorSetIdProto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(14);
  onnx::GraphProto& graph = *model.mutable_graph();
  graph.set_name("recurrent_stack");
  detail::addValueInfo(graph.mutable_input(), "input", elementType, {"T", "B", ""},
                       {0, 0, stack.inputSize()});
  detail::addValueInfo(graph.mutable_input(), "sequence_lens", onnx::TensorProto::INT32, {"B"},
                       {0});
  const std::int64_t D = stack.numDirections();
  const std::int64_t G = std::decay_t<decltype(stack.cell(0).parameters())>::kGates;
  std::string x = "input";
  for (Eigen::Index l = 0; l < stack.numLayers(); ++l) {
    const std::string s = std::to_string(l);
    const std::int64_t H = stack.cell(l).hiddenSize();
    const std::int64_t I = stack.cell(l).inputSize();
    if (stack.cell(l).sizes().projection > 0) {
      detail::onnxError(where, "stack", "layer ", l,
                        " is an LSTM with a projection, which ONNX's "
                        "LSTM does not have");
    }
    std::vector<Scalar> W, R, B, P;
    for (std::int64_t d = 0; d < D; ++d) {
      const auto& p = stack.cell(l, d).parameters();
      for (std::int64_t block = 0; block < G; ++block) {  // ONNX's order: find our gate for it
        std::int64_t k = 0;
        while (detail::onnxGateOf(op, k) != block) ++k;
        for (std::int64_t r = k * H; r < (k + 1) * H; ++r) {
          for (std::int64_t c = 0; c < I; ++c) W.push_back(p.weight_ih(r, c));
          for (std::int64_t c = 0; c < H; ++c) R.push_back(p.weight_hh(r, c));
        }
      }
      for (int side = 0; side < 2; ++side) {
        for (std::int64_t block = 0; block < G; ++block) {
          std::int64_t k = 0;
          while (detail::onnxGateOf(op, k) != block) ++k;
          for (std::int64_t r = k * H; r < (k + 1) * H; ++r) {
            B.push_back(side == 0 ? p.bias_ih(r) : p.bias_hh(r));
          }
        }
      }
      if constexpr (Traits::kPeephole) {
        for (const auto* v : {&p.peephole_i, &p.peephole_o, &p.peephole_f}) {
          for (std::int64_t r = 0; r < H; ++r) P.push_back((*v)(r));
        }
      }
    }
    detail::addInitializer(graph, "W" + s, {D, G * H, I}, W);
    detail::addInitializer(graph, "R" + s, {D, G * H, H}, R);
    detail::addInitializer(graph, "B" + s, {D, 2 * G * H}, B);
    std::vector<std::string> inputs = {x, "W" + s, "R" + s, "B" + s, "sequence_lens"};
    if constexpr (Traits::kPeephole) {
      detail::addInitializer(graph, "P" + s, {D, 3 * H}, P);
      inputs.insert(inputs.end(), {"", "", "P" + s});
    }
    onnx::NodeProto* node =
        detail::addNode(graph, op, std::string(op).append("_").append(s), inputs, {"Y" + s});
    onnx::AttributeProto* a = node->add_attribute();
    a->set_name("hidden_size");
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(H);
    if (D == 2 || stack.reverse()) {
      a = node->add_attribute();
      a->set_name("direction");
      a->set_type(onnx::AttributeProto::STRING);
      a->set_s(D == 2 ? "bidirectional" : "reverse");
    }
    Traits::attributes(stack.cell(l), D, *node);
    // Y (T, D, B, H) → (T, B, D·H): the next layer's X, or the output.
    const bool last = l + 1 == stack.numLayers();
    const std::string merged = last && linear == nullptr ? "output" : "X" + std::to_string(l + 1);
    if (D == 1) {
      if (l == 0) detail::addIntegers(graph, "axis_1", {1});
      detail::addNode(graph, "Squeeze", "squeeze_" + s, {"Y" + s, "axis_1"}, {merged});
    } else {
      if (l == 0) detail::addIntegers(graph, "merged_shape", {0, 0, -1});
      onnx::NodeProto* t =
          detail::addNode(graph, "Transpose", "transpose_" + s, {"Y" + s}, {"Yt" + s});
      a = t->add_attribute();
      a->set_name("perm");
      a->set_type(onnx::AttributeProto::INTS);
      for (const std::int64_t v : {0, 2, 1, 3}) a->add_ints(v);
      detail::addNode(graph, "Reshape", "merge_" + s, {"Yt" + s, "merged_shape"}, {merged});
    }
    x = merged;
  }
  std::int64_t outputs = stack.outputSize();
  if (linear != nullptr) {
    const auto& p = linear->parameters();
    const std::int64_t F = linear->inputSize();
    const std::int64_t O = linear->outputSize();
    std::vector<Scalar> Wt, b;
    for (std::int64_t f = 0; f < F; ++f) {
      for (std::int64_t o = 0; o < O; ++o) Wt.push_back(p.weight(o, f));
    }
    for (std::int64_t o = 0; o < O; ++o) b.push_back(p.bias(o));
    detail::addInitializer(graph, "linear_weight_t", {F, O}, Wt);
    detail::addInitializer(graph, "linear_bias", {O}, b);
    detail::addNode(graph, "MatMul", "linear_matmul", {x, "linear_weight_t"}, {"linear_product"});
    detail::addNode(graph, "Add", "linear_add", {"linear_product", "linear_bias"}, {"output"});
    outputs = O;
  }
  detail::addValueInfo(graph.mutable_output(), "output", elementType, {"T", "B", ""},
                       {0, 0, outputs});
  return model;
}

/// Writes `stack` (and `linear`, if not null) as the ONNX model file `path` (see onnxModel). The
/// file is written beside `path` first and renamed over it at the end, so a failed save leaves
/// any previous file whole. Throws OnnxError if the file cannot be written.
template <typename Cell>
void saveOnnx(const std::string& path, const Stack<Cell>& stack,
              const Linear<typename Cell::Scalar>* linear = nullptr) {
  const char* where = "saveOnnx";
  const std::string bytes = onnxModel(stack, linear).SerializeAsString();
  const std::string temporary = path + ".partial";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out) detail::onnxError(where, path, "cannot open ", temporary, " for writing");
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) {
      std::remove(temporary.c_str());
      detail::onnxError(where, path, "cannot write ", temporary);
    }
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    std::remove(temporary.c_str());
    detail::onnxError(where, path, "cannot rename ", temporary, " to it");
  }
}

/// The same with the Linear after the stack.
template <typename Cell>
void saveOnnx(const std::string& path, const Stack<Cell>& stack,
              const Linear<typename Cell::Scalar>& linear) {
  saveOnnx(path, stack, &linear);
}

}  // namespace recurrent
