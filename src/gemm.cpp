// The compiled mode (recurrent/compiled.hpp): the batched products in float and double.
#include <recurrent/compiled.hpp>

// The configuration this library is compiled for (compiled.hpp).
extern "C" const int RECURRENT_COMPILED_ABI = 1;

RECURRENT_GEMM_SPECIALIZATIONS(, float);
RECURRENT_GEMM_SPECIALIZATIONS(, double);
