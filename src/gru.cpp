// The compiled mode (recurrent/compiled.hpp): the GRU (reset after) in float and double, with its
// Sequence, Stack and Stream.
#include <recurrent/compiled.hpp>

RECURRENT_CELL_SPECIALIZATIONS(, recurrent::GRUCell<float>);
RECURRENT_CELL_SPECIALIZATIONS(, recurrent::GRUCell<double>);
