// recurrent — train/parameter_list.hpp: the parameters of a model and their gradients, as one list.
#pragma once

#include <recurrent/cells/parameters.hpp>
#include <recurrent/detail/errors.hpp>

#include <Eigen/Core>

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace recurrent {

/// ParameterList<Scalar>: every trainable tensor of a set of layers, each paired with the
/// tensor its gradient accumulates in — what torch's `model.parameters()` hands an optimizer.
///
///     recurrent::ParameterList<float> params;
///     params.add(cell.parameters(), cellGrads, "rnn.");   // rnn.weight_ih, rnn.weight_hh, ...
///     params.add(linear.parameters(), linearGrads, "fc.");
///     recurrent::Adam<float> adam(params);
///
/// The list refers to the layers' tensors (it does not copy them): the layers and gradient
/// objects must outlive it and everything made from it. Assigning new values to a tensor is
/// fine; giving it a new shape makes the next optimizer step throw.
template <typename Scalar_>
class ParameterList {
 public:
  using Scalar = Scalar_;  ///< float or double
  /// A reference to one Matrix or Vector tensor (see TensorHandle).
  using Handle = TensorHandle<Scalar>;

  /// One tensor of the list, with its gradient.
  struct Entry {
    std::string name;  ///< prefix + the tensor's name
    Handle value;      ///< the parameter
    Handle gradient;   ///< its gradient, the same shape
  };

  ParameterList() = default;

  /// Adds every tensor of `params` (CellParameters, LinearParameters, a Stack's parameters() or
  /// anything with a forEach(name, tensor)) with the tensor of the same name in `grads`, named
  /// prefix + name. `params` may be a view returned by value (Stack::parameters()); `grads`
  /// is the object the gradients accumulate in (zeroGradients()). Throws
  /// std::invalid_argument if the two are not shaped alike or a tensor is already in the list;
  /// the list is unchanged then.
  template <typename Params, typename Grads>
  ParameterList& add(Params&& params, Grads& grads, const std::string& prefix = "") {
    std::vector<Entry> entries;
    params.forEach([&](const char* name, auto& tensor) {
      entries.push_back(Entry{prefix + name, Handle(tensor), Handle(tensor)});
    });
    std::size_t k = 0;
    grads.forEach([&](const char* name, auto& tensor) {
      if (k >= entries.size() || entries[k].name != prefix + name) {
        detail::fail("ParameterList::add: gradients must have the parameters' tensors, got ",
                     prefix + name);
      }
      entries[k++].gradient = Handle(tensor);
    });
    for (const Entry& e : entries) {
      if (e.gradient.sameObject(e.value)) {
        detail::fail("ParameterList::add: no gradient tensor for ", e.name);
      }
      checkPair(e, "ParameterList::add");
      for (const Entry& old : m_entries) {
        if (old.value.sameObject(e.value) || old.gradient.sameObject(e.gradient)) {
          detail::fail("ParameterList::add: ", e.name, " is already in the list (as ", old.name,
                       ")");
        }
      }
    }
    m_entries.insert(m_entries.end(), entries.begin(), entries.end());
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

  /// Number of scalars in all parameters.
  Eigen::Index numel() const {
    Eigen::Index n = 0;
    for (const Entry& e : m_entries) n += e.value.size();
    return n;
  }

  /// Sets every gradient to zero (torch's optimizer.zero_grad(set_to_none=False)).
  void zeroGradients() const {
    for (const Entry& e : m_entries) e.gradient.array().setZero();
  }

  /// Throws std::invalid_argument if a parameter and its gradient no longer have one shape.
  void checkShapes(const char* where) const {
    for (const Entry& e : m_entries) checkPair(e, where);
  }

 private:
  static void checkPair(const Entry& e, const char* where) {
    if (e.value.rows() != e.gradient.rows() || e.value.cols() != e.gradient.cols()) {
      detail::fail(where, ": the gradient of ", e.name, " must be ", e.value.rows(), " x ",
                   e.value.cols(), " like the parameter, got ", e.gradient.rows(), " x ",
                   e.gradient.cols());
    }
  }

  std::vector<Entry> m_entries;
};

}  // namespace recurrent
