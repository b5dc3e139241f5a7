// The report of a comparison with a PyTorch fixture: every quantity's error against the
// tolerance, and the worst one printed.
#pragma once

#include "catch.hpp"
#include "support.hpp"

#include <algorithm>
#include <iostream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace test {

/// Checks every (name, error) of `errors` against torchTolerance<S>() and prints the worst as
/// "torch <label> float|double: worst difference <e>".
template <typename S, typename Name>
void checkTorchErrors(const std::string& label,
                      const std::vector<std::pair<Name, double>>& errors) {
  const char* precision = std::is_same<S, float>::value ? "float" : "double";
  double worst = 0;
  for (const auto& [name, err] : errors) {
    INFO(label << " (" << precision << ") " << name << ": " << err);
    CHECK(err <= torchTolerance<S>());
    worst = std::max(worst, err);
  }
  std::cout << "torch " << label << " " << precision << ": worst difference " << worst << "\n";
}

}  // namespace test
