// The compiled mode (recurrent/compiled.hpp): the peephole LSTM in float and double, with its
// Sequence, Stack and Stream.
#include <recurrent/compiled.hpp>

RECURRENT_CELL_SPECIALIZATIONS(
    , recurrent::LSTMCell<float, Eigen::Dynamic, Eigen::Dynamic, recurrent::LSTMVariant::Peephole>);
RECURRENT_CELL_SPECIALIZATIONS(
    ,
    recurrent::LSTMCell<double, Eigen::Dynamic, Eigen::Dynamic, recurrent::LSTMVariant::Peephole>);
