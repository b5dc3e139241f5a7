// The compiled mode (recurrent/compiled.hpp): the LSTM in float and double, with its Sequence,
// Stack and Stream.
#include <recurrent/compiled.hpp>

RECURRENT_CELL_SPECIALIZATIONS(, recurrent::LSTMCell<float>);
RECURRENT_CELL_SPECIALIZATIONS(, recurrent::LSTMCell<double>);
