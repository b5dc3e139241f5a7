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
