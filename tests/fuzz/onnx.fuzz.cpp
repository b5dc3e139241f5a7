// Fuzz target: the ONNX loader on arbitrary bytes (libFuzzer; see .ci/run).
//
// Whatever the bytes, loading must either succeed or throw OnnxError. Anything else — a crash, a
// sanitizer report, another exception (std::bad_alloc from a size the file does not back) — is a
// finding.
#include <recurrent/io/onnx.hpp>
#include <recurrent/recurrent.hpp>

#include <cstddef>
#include <cstdint>

namespace {

template <typename Cell>
void loadAs(const std::uint8_t* data, std::size_t size) {
  try {
    auto model = recurrent::loadOnnx<Cell>(data, size, "fuzz input");
    (void)model;
  } catch (const recurrent::OnnxError&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  loadAs<recurrent::LSTMCell<float>>(data, size);
  loadAs<recurrent::PeepholeLSTMCell<double>>(data, size);
  loadAs<recurrent::GRUCell<float>>(data, size);
  loadAs<recurrent::ResetBeforeGRUCell<float>>(data, size);
  loadAs<recurrent::RNNCell<float>>(data, size);
  return 0;
}
