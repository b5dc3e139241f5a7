// Must not compile: a type that is no cell at all. The first error is the contract's message
// about the first missing member, Scalar (tests/CMakeLists.txt checks it).
#include <recurrent/recurrent.hpp>

struct NotACell {};

int main() {
  const NotACell thing;
  recurrent::Stream<NotACell> stream(thing);
}
