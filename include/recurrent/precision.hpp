// recurrent — precision.hpp: the arithmetic of inference's matrix products.
#pragma once

namespace recurrent {

/// The precision of the matrix products of inference (Sequence::infer, Stack::infer,
/// Stream::step), chosen once with setPrecision(). The gate math, the cell state and every
/// output stay in the cell's Scalar; only the products W_ih·x and W_hh·h change. The cell's
/// parameters remain the source of truth: the reduced copy is made from them whenever the
/// weights are packed (each infer() call; Stream's constructor and refresh()).
///
///   Full   the cell's own Scalar (float or double): the default, and the only precision that
///          trains (forward() and backward() refuse the others).
///   Int8   PyTorch's dynamic quantization: each row of a weight matrix is quantized to int8
///          with its own scale (symmetric, max |w| ↦ 127); each column of the product's input
///          (x, and h at every step) to uint8 with a scale and a zero point taken from its own
///          minimum and maximum (0 included) at the time of the product; the products are summed
///          exactly in int32 and scaled back.
///   BF16   weights and the product's inputs rounded to bfloat16 (to nearest, ties to even),
///          products summed in float.
///
/// The projection of an LSTM with proj_size (W_hr) stays in the cell's Scalar.
///
/// setPrecision's optional second argument keeps the input product W_ih·x in Full while W_hh·h
/// is reduced (in a Stack, the first layer's: where the model's input enters). Rounding x costs
/// accuracy wherever the model follows its input closely (a one-step-ahead predictor of a
/// smooth series, whose error is below x's bf16 rounding); where I is small beside H, W_ih·x is
/// a small share of the multiply-adds (I/(I + R) of a step's, R = H without a projection).
enum class Precision {
  Full,  ///< the cell's Scalar: the default, the only one that trains
  Int8,  ///< int8 weights per row, uint8 inputs per column, exact int32 sums
  BF16   ///< bfloat16 weights and inputs, float sums
};

/// "full", "int8" or "bf16".
inline const char* precisionName(Precision p) {
  switch (p) {
    case Precision::Int8:
      return "int8";
    case Precision::BF16:
      return "bf16";
    case Precision::Full:
      break;
  }
  return "full";
}

}  // namespace recurrent
