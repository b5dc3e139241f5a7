// The compiled mode (recurrent/compiled.hpp): the batched products in float and double.
#include <recurrent/compiled.hpp>

RECURRENT_GEMM_SPECIALIZATIONS(, float);
RECURRENT_GEMM_SPECIALIZATIONS(, double);
