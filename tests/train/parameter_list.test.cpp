// ParameterList: names, pairing with gradients, zeroing, errors.
#include "catch.hpp"
#include "support.hpp"

#include <recurrent/recurrent.hpp>

TEST_CASE("ParameterList pairs every tensor with its gradient", "[optim][parameters]") {
  recurrent::GRUCell<float> cell(3, 4);
  recurrent::Linear<float> linear(4, 2);
  auto cellGrads = cell.zeroGradients();
  auto linearGrads = linear.zeroGradients();
  recurrent::ParameterList<float> list;
  list.add(cell.parameters(), cellGrads, "rnn.").add(linear.parameters(), linearGrads, "fc.");
  REQUIRE(list.size() == 6);
  CHECK(list[0].name == "rnn.weight_ih");
  CHECK(list[3].name == "rnn.bias_hh");
  CHECK(list[4].name == "fc.weight");
  CHECK(list[5].name == "fc.bias");
  CHECK(list.numel() == 12 * 3 + 12 * 4 + 12 + 12 + 8 + 2);
  CHECK(list[1].value.data() == cell.parameters().weight_hh.data());
  CHECK(list[1].gradient.data() == cellGrads.weight_hh.data());
  CHECK(list[5].value.rank() == 1);

  cellGrads.weight_hh.setOnes();
  linearGrads.bias.setOnes();
  list.zeroGradients();
  CHECK(cellGrads.weight_hh.isZero(0.0));
  CHECK(linearGrads.bias.isZero(0.0));

  // The list follows the tensor objects, even when they are assigned anew.
  cell.parameters().weight_hh = Eigen::MatrixXf::Ones(12, 4);
  CHECK(list[1].value.array().sum() == 48.0f);
}

TEST_CASE("ParameterList errors leave the list as it was", "[optim][parameters][errors]") {
  recurrent::RNNCell<double> cell(2, 3);
  auto grads = cell.zeroGradients();
  recurrent::ParameterList<double> list;
  list.add(cell.parameters(), grads);
  CHECK_THROWS_WITH(list.add(cell.parameters(), grads, "again."),
                    Contains("again.weight_ih is already in the list (as weight_ih)"));
  CHECK(list.size() == 4);
  recurrent::RNNCell<double> other(2, 3);
  auto bad = other.zeroGradients();
  bad.bias_hh.resize(2);
  CHECK_THROWS_WITH(list.add(other.parameters(), bad, "other."),
                    Contains("the gradient of other.bias_hh must be 3 x 1 like the parameter, "
                             "got 2 x 1"));
  CHECK_THROWS_WITH(list.add(other.parameters(), other.parameters(), "same."),
                    Contains("no gradient tensor for same.weight_ih"));
  CHECK(list.size() == 4);
}
