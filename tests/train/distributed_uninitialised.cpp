// DataParallel made before MPI_Init: std::invalid_argument naming what is missing, not an abort.
#include <recurrent/recurrent.hpp>
#include <recurrent/train/distributed.hpp>

#include <cstdio>
#include <stdexcept>
#include <string>

int main() {
  recurrent::Linear<float> fc(3, 2);
  auto grads = fc.zeroGradients();
  recurrent::ParameterList<float> params;
  params.add(fc.parameters(), grads, "fc.");
  const std::string expected =
      "recurrent: DataParallel: MPI is not initialised (call MPI_Init first), or already "
      "finalised";
  try {
    recurrent::DataParallel<float> dp(params);
  } catch (const std::invalid_argument& e) {
    if (e.what() == expected) {
      std::puts("refused as expected");
      return 0;
    }
    std::printf("wrong message: %s\n", e.what());
    return 1;
  }
  std::puts("not refused");
  return 1;
}
