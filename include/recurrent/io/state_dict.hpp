// recurrent — io/state_dict.hpp: a model's tensors by PyTorch's state_dict names.
#pragma once

#include <recurrent/cells/parameters.hpp>
#include <recurrent/detail/errors.hpp>
#include <recurrent/layers/stack_parameters.hpp>

#include <Eigen/Core>

#include <cstddef>
#include <string>
#include <type_traits>
#include <vector>

namespace recurrent {

/// How a cell's tensors are named in a state_dict.
enum class CellNaming {
  /// As a one-layer torch.nn.LSTM / nn.GRU / nn.RNN names them: weight_ih_l0, weight_hh_l0,
  /// bias_ih_l0, bias_hh_l0.
  Layer,
  /// As torch.nn.LSTMCell / nn.GRUCell / nn.RNNCell name them: weight_ih, weight_hh, bias_ih,
  /// bias_hh.
  Cell,
};

namespace detail {
template <typename T, typename = void>
struct IsCell : std::false_type {};
template <typename T>
struct IsCell<T, std::void_t<decltype(T::kGates)>> : std::true_type {};
}  // namespace detail

/// StateDict<Scalar>: named references to the tensors of a model, with the names and shapes
/// PyTorch's state_dict() gives them — what a weight file (safetensors.hpp) is read into and
/// written from.
///
///     class Model(torch.nn.Module):             recurrent::StateDict<float> dict;
///         def __init__(self):                   dict.add("rnn.", cell);   // rnn.weight_ih_l0, ...
///             self.rnn = torch.nn.LSTM(1, 32)   dict.add("fc.", linear);  // fc.weight, fc.bias
///             self.fc = torch.nn.Linear(32, 1)
///
/// A Matrix is a 2-D tensor [rows, cols] and a Vector a 1-D tensor [size]. The dictionary
/// refers to the layers (it copies nothing): they must outlive it.
template <typename Scalar_>
class StateDict {
 public:
  using Scalar = Scalar_;                                                ///< float or double
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;  ///< a 2-D tensor
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;               ///< a 1-D tensor
  /// A reference to one Matrix or Vector tensor (see TensorHandle).
  using Handle = TensorHandle<Scalar>;

  /// One tensor of the dictionary.
  struct Entry {
    std::string name;  ///< prefix + the tensor's PyTorch name
    Handle tensor;     ///< the tensor, referred to
  };

  /// Adds every parameter tensor of `layer` as prefix + its PyTorch name: a cell's names follow
  /// `naming` (weight_ih_l0 or weight_ih); a Stack's are those of a multi-layer module
  /// (weight_ih_l0, ..., weight_hh_l1_reverse, see layerTensorName()); a Linear's weight and
  /// bias. Throws std::invalid_argument on a name already present, and then adds nothing.
  template <typename Layer>
  StateDict& add(const std::string& prefix, Layer& layer, CellNaming naming = CellNaming::Layer) {
    const bool layerNames = detail::IsCell<Layer>::value && naming == CellNaming::Layer;
    std::vector<Entry> entries;
    layer.parameters().forEach([&](const char* name, auto& tensor) {
      entries.push_back(Entry{prefix + (layerNames ? layerTensorName(name, 0) : std::string(name)),
                              Handle(tensor)});
    });
    for (const Entry& e : entries) checkNew(e.name);
    m_entries.insert(m_entries.end(), entries.begin(), entries.end());
    return *this;
  }

  /// Adds one 2-D tensor under `name`. Throws std::invalid_argument if `name` is empty,
  /// "__metadata__" or already present.
  StateDict& addTensor(const std::string& name, Matrix& tensor) {
    checkNew(name);
    m_entries.push_back(Entry{name, Handle(tensor)});
    return *this;
  }
  /// Adds one 1-D tensor under `name`; throws as the 2-D one does.
  StateDict& addTensor(const std::string& name, Vector& tensor) {
    checkNew(name);
    m_entries.push_back(Entry{name, Handle(tensor)});
    return *this;
  }

  /// Number of tensors.
  std::size_t size() const { return m_entries.size(); }
  /// Entry k (0 <= k < size()), in the order added; unchecked.
  const Entry& operator[](std::size_t k) const { return m_entries[k]; }
  /// The first entry, for range-for over the entries in the order added.
  auto begin() const { return m_entries.begin(); }
  /// Past the last entry.
  auto end() const { return m_entries.end(); }

  /// The entry named `name`, or nullptr.
  const Entry* find(const std::string& name) const {
    for (const Entry& e : m_entries) {
      if (e.name == name) return &e;
    }
    return nullptr;
  }

 private:
  void checkNew(const std::string& name) const {
    if (name.empty()) detail::fail("StateDict::add: a tensor name must not be empty");
    if (name == "__metadata__") {
      detail::fail("StateDict::add: \"__metadata__\" is reserved by the file format");
    }
    if (find(name) != nullptr) detail::fail("StateDict::add: the name ", name, " is already used");
  }

  std::vector<Entry> m_entries;
};

}  // namespace recurrent
