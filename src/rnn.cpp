// The compiled mode (recurrent/compiled.hpp): the RNN in float and double, with its Sequence,
// Stack and Stream.
#include <recurrent/compiled.hpp>

RECURRENT_CELL_SPECIALIZATIONS(, recurrent::RNNCell<float>);
RECURRENT_CELL_SPECIALIZATIONS(, recurrent::RNNCell<double>);
