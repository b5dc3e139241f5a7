// The compiled mode (recurrent/compiled.hpp): the int8 and bf16 products, for float and double
// inputs. Every cell's inference in a reduced precision calls these; compiled here once.
#include <recurrent/compiled.hpp>

RECURRENT_REDUCED_SPECIALIZATIONS(, float);
RECURRENT_REDUCED_SPECIALIZATIONS(, double);
