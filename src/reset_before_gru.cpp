// The compiled mode (recurrent/compiled.hpp): the GRU (reset before) in float and double, with its
// Sequence, Stack and Stream.
#include <recurrent/compiled.hpp>

RECURRENT_CELL_SPECIALIZATIONS(
    ,
    recurrent::GRUCell<float, Eigen::Dynamic, Eigen::Dynamic, recurrent::GRUVariant::ResetBefore>);
RECURRENT_CELL_SPECIALIZATIONS(
    ,
    recurrent::GRUCell<double, Eigen::Dynamic, Eigen::Dynamic, recurrent::GRUVariant::ResetBefore>);
