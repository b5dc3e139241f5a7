// Fuzz target: the safetensors loader on arbitrary bytes (libFuzzer; see .ci/run).
//
// Whatever the bytes, loading must either succeed or throw SafetensorsError, and a failed
// load must leave the model exactly as it was. Anything else — a crash, a sanitizer report,
// another exception, a half-loaded model — is a finding.
#include <recurrent/io/safetensors.hpp>
#include <recurrent/recurrent.hpp>

#include <cstddef>
#include <cstdint>

namespace {

template <typename Scalar>
struct Model {
  recurrent::LSTMCell<Scalar> cell{2, 3};
  recurrent::Linear<Scalar> fc{3, 1};
  recurrent::StateDict<Scalar> dict;
  Model() {
    dict.add("rnn.", cell).add("fc.", fc);
    Scalar v = 0;
    for (const auto& e : dict) {
      for (Eigen::Index k = 0; k < e.tensor.size(); ++k) e.tensor.data()[k] = v += Scalar(0.25);
    }
  }
  bool same(const Model& other) const {
    for (std::size_t k = 0; k < dict.size(); ++k) {
      if (dict[k].tensor.array().matrix() != other.dict[k].tensor.array().matrix()) return false;
    }
    return true;
  }
};

template <typename Scalar>
void loadInto(const std::uint8_t* data, std::size_t size, bool strict) {
  Model<Scalar> model;
  const Model<Scalar> untouched;
  try {
    recurrent::loadSafetensors(data, size, model.dict, "fuzz input", strict);
  } catch (const recurrent::SafetensorsError&) {
    if (!model.same(untouched)) __builtin_trap();  // a failed load changed the model
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  loadInto<float>(data, size, true);
  loadInto<double>(data, size, false);
  return 0;
}
