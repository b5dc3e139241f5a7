// recurrent — io/onnx_graph.hpp: reading an ONNX graph (protobuf classes of the onnx package):
// the error type, tensors as numbers, attributes, and who produces and consumes each value.
//
// Included by onnx.hpp. Every access to the model treats it as untrusted: a tensor's element count
// is checked against its dims before a value is read, and a missing or ill-typed attribute or
// tensor is an OnnxError naming the node, never an out-of-range read.
#pragma once

#include <onnx/onnx_pb.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace recurrent {

/// What loadOnnx and saveOnnx throw for a file they cannot read or a model they cannot represent:
/// a std::invalid_argument whose message names the entry point, the file, and the node, the
/// attribute and the value at fault.
class OnnxError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

namespace detail {

/// Throws OnnxError "recurrent: <where>: <source>: <parts...>".
template <typename... Parts>
[[noreturn]] void onnxError(const char* where, const std::string& source, const Parts&... parts) {
  std::ostringstream message;
  message << "recurrent: " << where << ": " << source << ": ";
  (message << ... << parts);
  throw OnnxError(message.str());
}

/// A tensor read from the graph: its dims and its values as doubles, row-major.
struct OnnxTensor {
  std::vector<std::int64_t> dims;
  std::vector<double> values;
  bool empty() const { return dims.empty() && values.empty(); }
};

/// "[d0, d1, ...]" for messages.
inline std::string dimsString(const std::vector<std::int64_t>& dims) {
  std::string s = "[";
  for (std::size_t k = 0; k < dims.size(); ++k) s += (k ? ", " : "") + std::to_string(dims[k]);
  return s + "]";
}

/// The graph of a model with its values indexed: initializers, Constant nodes, graph inputs, and
/// the producer and consumers of every value. Node references are indices into graph.node().
class OnnxGraph {
 public:
  OnnxGraph(const onnx::GraphProto& graph, const char* where, std::string source)
      : m_graph(graph), m_where(where), m_source(std::move(source)) {
    for (const onnx::TensorProto& t : graph.initializer()) m_initializers[t.name()] = &t;
    for (const onnx::ValueInfoProto& v : graph.input()) {
      if (m_initializers.count(v.name()) == 0) m_inputs.insert({v.name(), &v});
    }
    for (int n = 0; n < graph.node_size(); ++n) {
      const onnx::NodeProto& node = graph.node(n);
      for (const std::string& out : node.output()) {
        if (out.empty()) continue;
        if (!m_producer.insert({out, n}).second || m_initializers.count(out) != 0) {
          fail("value '", out, "' is produced twice (node ", describe(n), ")");
        }
      }
      for (const std::string& in : node.input()) {
        if (!in.empty()) m_consumers[in].push_back(n);
      }
    }
  }

  const onnx::GraphProto& graph() const { return m_graph; }
  const onnx::NodeProto& node(int n) const { return m_graph.node(n); }
  const char* where() const { return m_where; }
  const std::string& source() const { return m_source; }

  /// "'name' (Op)", or "#index (Op)" for a node without a name.
  std::string describe(int n) const {
    const onnx::NodeProto& nd = m_graph.node(n);
    const std::string name = nd.name().empty() ? "#" + std::to_string(n) : "'" + nd.name() + "'";
    return name + " (" + nd.op_type() + ")";
  }

  template <typename... Parts>
  [[noreturn]] void fail(const Parts&... parts) const {
    onnxError(m_where, m_source, parts...);
  }

  /// Input `k` of node `n`, or "" if the node has fewer inputs (an omitted optional input).
  std::string input(int n, int k) const {
    const onnx::NodeProto& nd = m_graph.node(n);
    return k < nd.input_size() ? nd.input(k) : std::string();
  }

  /// The node that produces `value`, or -1 (a graph input, an initializer, or nothing).
  int producer(const std::string& value) const {
    const auto it = m_producer.find(value);
    return it == m_producer.end() ? -1 : it->second;
  }
  /// The nodes that read `value`.
  std::vector<int> consumers(const std::string& value) const {
    const auto it = m_consumers.find(value);
    return it == m_consumers.end() ? std::vector<int>() : it->second;
  }
  /// Whether `value` is an input of the graph that is not an initializer.
  bool isGraphInput(const std::string& value) const { return m_inputs.count(value) != 0; }
  /// Whether `value` is an output of the graph.
  bool isGraphOutput(const std::string& value) const {
    for (const onnx::ValueInfoProto& v : m_graph.output()) {
      if (v.name() == value) return true;
    }
    return false;
  }

  /// The TensorProto of a constant value: an initializer or a Constant node's `value`; null if
  /// `value` is computed or a graph input.
  const onnx::TensorProto* constant(const std::string& value) const {
    const auto it = m_initializers.find(value);
    if (it != m_initializers.end()) return it->second;
    const int n = producer(value);
    if (n < 0 || m_graph.node(n).op_type() != "Constant") return nullptr;
    for (const onnx::AttributeProto& a : m_graph.node(n).attribute()) {
      if (a.name() == "value" && a.type() == onnx::AttributeProto::TENSOR) return &a.t();
    }
    return nullptr;
  }

  /// The values of a float or double constant (`what` names it in messages).
  OnnxTensor floats(const onnx::TensorProto& t, const std::string& what) const {
    OnnxTensor out;
    const std::size_t count = elements(t, what);
    out.dims.assign(t.dims().begin(), t.dims().end());
    // The data is checked against the dims before anything is allocated for it.
    if (t.data_type() == onnx::TensorProto::FLOAT) {
      if (t.has_raw_data()) {
        checkRaw(t, count, 4, what);
        out.values.resize(count);
        for (std::size_t k = 0; k < count; ++k) {
          float v;
          std::memcpy(&v, t.raw_data().data() + 4 * k, 4);
          out.values[k] = static_cast<double>(v);
        }
      } else {
        checkCount(static_cast<std::size_t>(t.float_data_size()), count, what);
        out.values.resize(count);
        for (std::size_t k = 0; k < count; ++k) {
          out.values[k] = static_cast<double>(t.float_data(static_cast<int>(k)));
        }
      }
    } else if (t.data_type() == onnx::TensorProto::DOUBLE) {
      if (t.has_raw_data()) {
        checkRaw(t, count, 8, what);
        out.values.resize(count);
        for (std::size_t k = 0; k < count; ++k) {
          std::memcpy(&out.values[k], t.raw_data().data() + 8 * k, 8);
        }
      } else {
        checkCount(static_cast<std::size_t>(t.double_data_size()), count, what);
        out.values.resize(count);
        for (std::size_t k = 0; k < count; ++k) out.values[k] = t.double_data(static_cast<int>(k));
      }
    } else {
      fail(what, " has element type ", onnx::TensorProto::DataType_Name(dataType(t)),
           "; weights load from FLOAT or DOUBLE");
    }
    return out;
  }

  /// The values of an integer constant (INT64 or INT32), e.g. axes or a shape.
  std::vector<std::int64_t> integers(const onnx::TensorProto& t, const std::string& what) const {
    const std::size_t count = elements(t, what);
    std::vector<std::int64_t> out;
    if (t.data_type() == onnx::TensorProto::INT64) {
      if (t.has_raw_data()) {
        checkRaw(t, count, 8, what);
        out.resize(count);
        for (std::size_t k = 0; k < count; ++k)
          std::memcpy(&out[k], t.raw_data().data() + 8 * k, 8);
      } else {
        checkCount(static_cast<std::size_t>(t.int64_data_size()), count, what);
        out.resize(count);
        for (std::size_t k = 0; k < count; ++k) out[k] = t.int64_data(static_cast<int>(k));
      }
    } else if (t.data_type() == onnx::TensorProto::INT32) {
      if (t.has_raw_data()) {
        checkRaw(t, count, 4, what);
        out.resize(count);
        for (std::size_t k = 0; k < count; ++k) {
          std::int32_t v;
          std::memcpy(&v, t.raw_data().data() + 4 * k, 4);
          out[k] = v;
        }
      } else {
        checkCount(static_cast<std::size_t>(t.int32_data_size()), count, what);
        out.resize(count);
        for (std::size_t k = 0; k < count; ++k) out[k] = t.int32_data(static_cast<int>(k));
      }
    } else {
      fail(what, " has element type ", onnx::TensorProto::DataType_Name(dataType(t)),
           ", expected INT64 or INT32");
    }
    return out;
  }

  /// The attribute `name` of node `n`, or null.
  const onnx::AttributeProto* attribute(int n, const char* name) const {
    for (const onnx::AttributeProto& a : m_graph.node(n).attribute()) {
      if (a.name() == name) return &a;
    }
    return nullptr;
  }
  /// An INT attribute, or `fallback` if absent.
  std::int64_t intAttribute(int n, const char* name, std::int64_t fallback) const {
    const onnx::AttributeProto* a = attribute(n, name);
    if (a == nullptr) return fallback;
    if (a->type() != onnx::AttributeProto::INT) wrongType(n, name, "INT");
    return a->i();
  }
  /// A FLOAT attribute, or `fallback` if absent.
  float floatAttribute(int n, const char* name, float fallback) const {
    const onnx::AttributeProto* a = attribute(n, name);
    if (a == nullptr) return fallback;
    if (a->type() != onnx::AttributeProto::FLOAT) wrongType(n, name, "FLOAT");
    return a->f();
  }
  /// A STRING attribute, or `fallback` if absent.
  std::string stringAttribute(int n, const char* name, const std::string& fallback) const {
    const onnx::AttributeProto* a = attribute(n, name);
    if (a == nullptr) return fallback;
    if (a->type() != onnx::AttributeProto::STRING) wrongType(n, name, "STRING");
    return a->s();
  }
  /// An INTS attribute; `present` tells whether it was there.
  std::vector<std::int64_t> intsAttribute(int n, const char* name, bool& present) const {
    const onnx::AttributeProto* a = attribute(n, name);
    present = a != nullptr;
    if (a == nullptr) return {};
    if (a->type() != onnx::AttributeProto::INTS) wrongType(n, name, "INTS");
    return std::vector<std::int64_t>(a->ints().begin(), a->ints().end());
  }
  /// A STRINGS attribute (empty if absent).
  std::vector<std::string> stringsAttribute(int n, const char* name) const {
    const onnx::AttributeProto* a = attribute(n, name);
    if (a == nullptr) return {};
    if (a->type() != onnx::AttributeProto::STRINGS) wrongType(n, name, "STRINGS");
    return std::vector<std::string>(a->strings().begin(), a->strings().end());
  }

 private:
  static onnx::TensorProto::DataType dataType(const onnx::TensorProto& t) {
    return onnx::TensorProto::DataType_IsValid(t.data_type())
               ? static_cast<onnx::TensorProto::DataType>(t.data_type())
               : onnx::TensorProto::UNDEFINED;
  }

  [[noreturn]] void wrongType(int n, const char* name, const char* type) const {
    fail("node ", describe(n), ": attribute ", name, " must be of type ", type);
  }

  /// The element count of `t` from its dims, checked: no negative dim, no overflow, at most
  /// 2^31 elements, and the data stored in the file (not external).
  std::size_t elements(const onnx::TensorProto& t, const std::string& what) const {
    if (t.data_location() == onnx::TensorProto::EXTERNAL) {
      fail(what,
           " is stored in an external file, which is not read; save the model with its "
           "tensors inside");
    }
    std::size_t count = 1;
    for (const std::int64_t d : t.dims()) {
      if (d < 0 || (d > 0 && count > (std::size_t(1) << 31) / static_cast<std::size_t>(d))) {
        fail(what, " has dims ", dimsString({t.dims().begin(), t.dims().end()}),
             ": negative, or over 2^31 elements");
      }
      count *= static_cast<std::size_t>(d);
    }
    return count;
  }
  void checkRaw(const onnx::TensorProto& t, std::size_t count, std::size_t bytes,
                const std::string& what) const {
    if (t.raw_data().size() != count * bytes) {
      fail(what, " holds ", t.raw_data().size(), " bytes of data, its dims ",
           dimsString({t.dims().begin(), t.dims().end()}), " need ", count * bytes);
    }
  }
  void checkCount(std::size_t have, std::size_t count, const std::string& what) const {
    if (have != count) fail(what, " holds ", have, " values, its dims need ", count);
  }

  const onnx::GraphProto& m_graph;
  const char* m_where;
  std::string m_source;
  std::map<std::string, const onnx::TensorProto*> m_initializers;
  std::map<std::string, const onnx::ValueInfoProto*> m_inputs;
  std::map<std::string, int> m_producer;
  std::map<std::string, std::vector<int>> m_consumers;
};

}  // namespace detail
}  // namespace recurrent
