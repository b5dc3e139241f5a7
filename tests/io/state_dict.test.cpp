// StateDict: PyTorch's state_dict names for cells and Linear layers.
#include "catch.hpp"
#include "support.hpp"

#include <recurrent/recurrent.hpp>

namespace {
std::vector<std::string> namesOf(const recurrent::StateDict<float>& dict) {
  std::vector<std::string> names;
  for (const auto& e : dict) names.push_back(e.name);
  return names;
}
}  // namespace

TEST_CASE("StateDict names tensors as PyTorch's state_dict does", "[state_dict]") {
  recurrent::LSTMCell<float> lstm(3, 4);
  recurrent::GRUCell<float> cell(3, 4);
  recurrent::Linear<float> fc(4, 2);
  Eigen::VectorXf extra(5);
  recurrent::StateDict<float> dict;
  dict.add("rnn.", lstm).add("fc.", fc);
  dict.add("cell.", cell, recurrent::CellNaming::Cell).addTensor("scale", extra);
  CHECK(namesOf(dict) == std::vector<std::string>{"rnn.weight_ih_l0", "rnn.weight_hh_l0",
                                                  "rnn.bias_ih_l0", "rnn.bias_hh_l0", "fc.weight",
                                                  "fc.bias", "cell.weight_ih", "cell.weight_hh",
                                                  "cell.bias_ih", "cell.bias_hh", "scale"});
  REQUIRE(dict.find("rnn.weight_hh_l0") != nullptr);
  CHECK(dict.find("rnn.weight_hh_l0")->tensor.data() == lstm.parameters().weight_hh.data());
  CHECK(dict.find("fc.bias")->tensor.rank() == 1);
  CHECK(dict.find("fc.weight")->tensor.rank() == 2);
  CHECK(dict.find("nothing") == nullptr);
}

TEST_CASE("StateDict errors", "[state_dict][errors]") {
  recurrent::RNNCell<float> cell(3, 4);
  recurrent::StateDict<float> dict;
  dict.add("", cell);
  CHECK_THROWS_WITH(dict.add("", cell), Contains("the name weight_ih_l0 is already used"));
  CHECK(dict.size() == 4);
  Eigen::MatrixXf m;
  CHECK_THROWS_WITH(dict.addTensor("__metadata__", m), Contains("reserved"));
  CHECK_THROWS_WITH(dict.addTensor("", m), Contains("must not be empty"));
}

TEST_CASE("layerTensorName gives PyTorch's multi-layer names", "[state_dict][stack]") {
  CHECK(recurrent::layerTensorName("weight_ih", 0) == "weight_ih_l0");
  CHECK(recurrent::layerTensorName("bias_hh", 3) == "bias_hh_l3");
  CHECK(recurrent::layerTensorName("weight_hr", 0, true) == "weight_hr_l0_reverse");
  CHECK(recurrent::layerTensorName("weight_hh", 12, true) == "weight_hh_l12_reverse");
}

TEST_CASE("a Stack and its gradients are named alike", "[state_dict][stack]") {
  recurrent::Stack<recurrent::GRUCell<float>> stack(2, 3, recurrent::StackOptions().numLayers(2));
  auto grads = stack.zeroGradients();
  std::vector<std::string> names, gradNames;
  stack.parameters().forEach([&](const char* name, const auto&) { names.push_back(name); });
  grads.forEach([&](const char* name, const auto&) { gradNames.push_back(name); });
  CHECK(names == std::vector<std::string>{"weight_ih_l0", "weight_hh_l0", "bias_ih_l0",
                                          "bias_hh_l0", "weight_ih_l1", "weight_hh_l1",
                                          "bias_ih_l1", "bias_hh_l1"});
  CHECK(gradNames == names);
  // Adding a stack under a name already used adds nothing.
  recurrent::StateDict<float> dict;
  dict.add("rnn.", stack);
  CHECK_THROWS_WITH(dict.add("rnn.", stack), Contains("the name rnn.weight_ih_l0 is already used"));
  CHECK(dict.size() == 8);
}
