// recurrent — io/onnx.hpp: ONNX models in and out: the LSTM, GRU and RNN operators (any opset from
// 7 on) of a model file load into a Stack and the Linear after them, and saveOnnx writes a Stack
// (and a Linear) as a model that ONNX Runtime runs.
//
// Needs the ONNX protobuf classes (Debian: libonnx-dev and libprotobuf-dev; CMake:
// find_package(ONNX) and the target onnx_proto), which is why the umbrella header recurrent.hpp
// does not include this one.
//
// The operators' conventions, mapped exactly:
//
//     LSTM   W, R, B = [Wb; Rb] in gate order i, o, f, c    → weight_ih, weight_hh, bias_ih,
//            bias_hh in gate order i, f, g, o; P = [p_i; p_o; p_f] → PeepholeLSTMCell's
//            peephole_i, peephole_o, peephole_f
//     GRU    z, r, h                                         → r, z, n; linear_before_reset 1 →
//            GRUVariant::ResetAfter (PyTorch's GRU), 0 → GRUVariant::ResetBefore
//     RNN    activations Tanh (default) or Relu               → RNNCell's Nonlinearity
//     direction forward / reverse / bidirectional → a Stack of one direction, a reverse Stack
//     (StackOptions::reverse), or two directions (outputs concatenated, Merge::Concat), the same
//     in every node; layout 0 / 1 → OnnxInfo::batchFirst; sequence_lens → the lengths of each
//     call; initial_h / initial_c → zero, or graph inputs given at each call.
//
// After the last recurrent node, a Gemm (A' · B' + C), or a MatMul and the Add of a constant bias
// (a MatMul alone: no bias), on the features of its output loads into a Linear; an output that
// ends the graph or goes on to other operators loads without one (they are the caller's).
//
// Refused with an OnnxError naming the node, the attribute (or input) and its value: clip,
// input_forget = 1, activations other than the defaults (and Relu for RNN), activation_alpha /
// _beta, nodes of different directions in one chain, an operator other than Squeeze, Transpose,
// Reshape, Identity between recurrent nodes, weights that are computed rather than stored, a
// non-zero constant initial state, sequence_lens on some nodes of a chain but not on others; and
// a Gemm or MatMul after the nodes that is not exactly a Linear: alpha, or beta with a C, other
// than 1, transA 1, a weight or bias computed rather than stored, a weight that is not a matrix,
// the nodes' output as its B or C, a MatMul whose product goes on to anything but one Add of a
// constant. A malformed or truncated file is an OnnxError too (the file is parsed by protobuf,
// then every tensor's size is checked against its dims before it is read;
// tests/fuzz/onnx.fuzz.cpp).
#pragma once

#include <recurrent/cells/gru.hpp>
#include <recurrent/cells/lstm.hpp>
#include <recurrent/cells/rnn.hpp>
#include <recurrent/io/onnx_chain.hpp>
#include <recurrent/io/onnx_write.hpp>
#include <recurrent/layers/stack.hpp>
#include <recurrent/train/linear.hpp>

#include <Eigen/Core>

#include <climits>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace recurrent {

/// What loadOnnx returns: the recurrent layers as a Stack, the Linear after them if the graph
/// has one, and what the graph says about its inputs (OnnxInfo).
template <typename Cell>
struct OnnxModel {
  using Scalar = typename Cell::Scalar;  ///< float or double
  Stack<Cell> stack;                     ///< the recurrent nodes, in order
  std::optional<Linear<Scalar>> linear;  ///< the Gemm, or MatMul (and Add), after them
  OnnxInfo info;                         ///< the operator, sizes and inputs of the graph
};

namespace detail {

/// The cell type that loads `info`, for messages.
inline std::string onnxCellName(const OnnxInfo& info) {
  if (info.op == "LSTM") return info.peephole ? "PeepholeLSTMCell" : "LSTMCell";
  if (info.op == "GRU") return info.resetAfter ? "GRUCell" : "ResetBeforeGRUCell";
  return "RNNCell";
}

/// Parses and follows the model `bytes` (checks the opset: the default domain from 7 on).
inline OnnxChain readOnnxBytes(const std::uint8_t* bytes, std::size_t size,
                               const std::string& source, const char* where) {
  if (size > static_cast<std::size_t>(INT_MAX)) {
    onnxError(where, source, "file of ", size, " bytes is over protobuf's limit of 2 GB");
  }
  onnx::ModelProto model;
  if (!model.ParseFromArray(bytes, static_cast<int>(size))) {
    onnxError(where, source,
              "not an ONNX model (protobuf could not parse it: the file is "
              "truncated, corrupt or of another format)");
  }
  if (!model.has_graph()) onnxError(where, source, "the model has no graph");
  std::int64_t opset = -1;
  for (const onnx::OperatorSetIdProto& o : model.opset_import()) {
    if (o.domain().empty() || o.domain() == "ai.onnx") opset = o.version();
  }
  if (opset < 7) {
    onnxError(where, source, "the model imports opset ", opset,
              " of the default domain; the recurrent operators are read from opset 7 on");
  }
  const OnnxGraph graph(model.graph(), where, source);
  return readOnnxChain(graph);
}

inline std::vector<std::uint8_t> readOnnxFile(const std::string& path, const char* where) {
  std::ifstream in(path, std::ios::binary);
  if (!in) onnxError(where, path, "cannot open the file");
  std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                  std::istreambuf_iterator<char>());
  if (in.bad()) onnxError(where, path, "cannot read the file");
  return bytes;
}

/// Rows `block` (of `count` blocks of H) of direction d of a [D, G·H, C] tensor, as an H × C
/// matrix into rows `to`·H of `out`.
template <typename Matrix>
void copyGateBlock(const OnnxTensor& t, std::int64_t d, std::int64_t block, std::int64_t H,
                   Matrix& out, std::int64_t to) {
  const std::int64_t rows = t.dims[1];
  const std::int64_t C = t.dims[2];
  for (std::int64_t r = 0; r < H; ++r) {
    for (std::int64_t c = 0; c < C; ++c) {
      out(to * H + r, c) = static_cast<typename Matrix::Scalar>(
          t.values[static_cast<std::size_t>((d * rows + block * H + r) * C + c)]);
    }
  }
}

/// Entries [offset + block·H, offset + (block+1)·H) of direction d of a [D, N] tensor into
/// entries to·H... of `out`.
template <typename Vector>
void copyBiasBlock(const OnnxTensor& t, std::int64_t d, std::int64_t offset, std::int64_t block,
                   std::int64_t H, Vector& out, std::int64_t to) {
  if (t.empty()) return;  // B and P are optional: zero
  const std::int64_t N = t.dims[1];
  for (std::int64_t r = 0; r < H; ++r) {
    out(to * H + r) = static_cast<typename Vector::Scalar>(
        t.values[static_cast<std::size_t>(d * N + offset + block * H + r)]);
  }
}

/// Layer `layer`'s tensors of direction d into `cell`.
template <typename Cell>
void loadOnnxCell(const OnnxLayer& layer, const OnnxInfo& info, std::int64_t d, Cell& cell) {
  auto& p = cell.parameters();
  const std::int64_t G = info.op == "LSTM" ? 4 : info.op == "GRU" ? 3 : 1;
  const std::int64_t H = layer.R.dims[2];
  for (std::int64_t k = 0; k < G; ++k) {
    const std::int64_t from = onnxGateOf(info.op, k);
    copyGateBlock(layer.W, d, from, H, p.weight_ih, k);
    copyGateBlock(layer.R, d, from, H, p.weight_hh, k);
    copyBiasBlock(layer.B, d, 0, from, H, p.bias_ih, k);
    copyBiasBlock(layer.B, d, G * H, from, H, p.bias_hh, k);
  }
  if constexpr (OnnxCell<Cell>::kPeephole) {
    copyBiasBlock(layer.P, d, 0, 0, H, p.peephole_i, 0);
    copyBiasBlock(layer.P, d, 0, 1, H, p.peephole_o, 0);
    copyBiasBlock(layer.P, d, 0, 2, H, p.peephole_f, 0);
  }
}

}  // namespace detail

/// The operator, sizes and inputs of the recurrent part of the ONNX model `path`, checked as
/// loadOnnx checks them: tells which cell type loads it (OnnxInfo::op, peephole, resetAfter).
inline OnnxInfo inspectOnnx(const std::string& path) {
  const std::vector<std::uint8_t> bytes = detail::readOnnxFile(path, "inspectOnnx");
  return detail::readOnnxBytes(bytes.data(), bytes.size(), path, "inspectOnnx").info;
}

/// Loads the recurrent layers of an ONNX model already in memory (`source` names it in
/// messages) into a Stack<Cell> — LSTMCell, PeepholeLSTMCell, GRUCell, ResetBeforeGRUCell or
/// RNNCell, whichever the graph's operators are (inspectOnnx tells) — and the Gemm or MatMul and
/// Add after them into a Linear. Throws OnnxError for a malformed file, for what the library
/// cannot represent (see the top of this file), and if Cell is not the graph's cell.
template <typename Cell>
OnnxModel<Cell> loadOnnx(const std::uint8_t* bytes, std::size_t size,
                         const std::string& source = "<memory>") {
  const char* where = "loadOnnx";
  using Traits = detail::OnnxCell<Cell>;
  using Scalar = typename Cell::Scalar;
  const detail::OnnxChain chain = detail::readOnnxBytes(bytes, size, source, where);
  const OnnxInfo& info = chain.info;
  if (!Traits::matches(info)) {
    detail::onnxError(where, source, "the model's ", info.op, " nodes load into ",
                      detail::onnxCellName(info), ", not ", Traits::kName);
  }
  const Eigen::Index D = info.bidirectional ? 2 : 1;
  Eigen::Index made = 0;
  Stack<Cell> stack(info.inputSize,
                    StackOptions()
                        .numLayers(info.numLayers())
                        .bidirectional(info.bidirectional)
                        .reverse(info.reverse),
                    [&](Eigen::Index in) {
                      const auto layer = static_cast<std::size_t>(made++ / D);
                      return Traits::make(in, info.hiddenSizes[layer], info);
                    });
  for (Eigen::Index l = 0; l < info.numLayers(); ++l) {
    for (Eigen::Index d = 0; d < D; ++d) {
      detail::loadOnnxCell(chain.layers[static_cast<std::size_t>(l)], info, d, stack.cell(l, d));
    }
  }
  std::optional<Linear<Scalar>> linear;
  if (info.linearOutput > 0) {
    linear.emplace(stack.outputSize(), info.linearOutput);
    auto& p = linear->parameters();
    const Eigen::Index F = stack.outputSize();
    for (Eigen::Index o = 0; o < info.linearOutput; ++o) {
      p.bias(o) = static_cast<Scalar>(chain.linearBias[static_cast<std::size_t>(o)]);
      for (Eigen::Index f = 0; f < F; ++f) {
        p.weight(o, f) =
            static_cast<Scalar>(chain.linearWeight[static_cast<std::size_t>(o * F + f)]);
      }
    }
  }
  return OnnxModel<Cell>{std::move(stack), std::move(linear), info};
}

/// Loads the ONNX model file `path` (see above).
template <typename Cell>
OnnxModel<Cell> loadOnnx(const std::string& path) {
  const std::vector<std::uint8_t> bytes = detail::readOnnxFile(path, "loadOnnx");
  return loadOnnx<Cell>(bytes.data(), bytes.size(), path);
}

}  // namespace recurrent
