// recurrent — compiled.hpp: the common specializations, compiled once (the compiled mode).
//
// The library is header-only: every translation unit that runs an LSTM instantiates and
// optimises its Sequence, kernels and all. In the compiled mode the common specializations —
// the LSTM (standard and peephole), GRU (both variants) and RNN cells in float and double, with
// their Sequence, Stack and Stream, and the batched products in float, int8 and bf16 — are
// compiled once into the library `recurrent::compiled` (CMake), and a program that links it is
// built with RECURRENT_EXTERN_TEMPLATES: <recurrent/recurrent.hpp> then includes this header, which
// declares those specializations `extern`, so that no translation unit of the program compiles
// them again. Every other specialization (a cell of compile-time sizes, say) stays header-only.
//
// The library must be built with the program's compiler, its -march and its Eigen configuration:
// the specializations are compiled there, not in the program. A program compiled for another SIMD
// configuration fails to link, with an undefined reference to recurrent_compiled_abi_... naming
// the configuration it expected (RECURRENT_COMPILED_ABI below).
#pragma once

#include <recurrent/cells/gru.hpp>
#include <recurrent/cells/lstm.hpp>
#include <recurrent/cells/rnn.hpp>
#include <recurrent/detail/gemm.hpp>
#include <recurrent/detail/reduced_kernel.hpp>
#include <recurrent/layers/sequence.hpp>
#include <recurrent/layers/stack.hpp>
#include <recurrent/layers/stream.hpp>
#include <recurrent/version.hpp>

/// The specializations of one cell type: `RECURRENT_CELL_SPECIALIZATIONS(extern, Cell)` declares
/// them, `RECURRENT_CELL_SPECIALIZATIONS(, Cell)` defines them (src/). The cell type is spelled out
/// (an alias template cannot name an explicit instantiation). EXTERN is a keyword or nothing, and
/// cannot be parenthesised.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define RECURRENT_CELL_SPECIALIZATIONS(EXTERN, ...)                 \
  EXTERN template class __VA_ARGS__;                                \
  EXTERN template class recurrent::Sequence<__VA_ARGS__>;           \
  EXTERN template class recurrent::detail::StackLayer<__VA_ARGS__>; \
  EXTERN template class recurrent::Stack<__VA_ARGS__>;              \
  EXTERN template class recurrent::Stream<__VA_ARGS__>

/// The cell types of the compiled mode, for one scalar type: X(Cell) for each.
#define RECURRENT_COMPILED_CELLS(X, Scalar)                                                        \
  X(recurrent::LSTMCell<Scalar>)                                                                   \
  X(recurrent::LSTMCell<Scalar, Eigen::Dynamic, Eigen::Dynamic, recurrent::LSTMVariant::Peephole>) \
  X(recurrent::GRUCell<Scalar>)                                                                    \
  X(recurrent::GRUCell<Scalar, Eigen::Dynamic, Eigen::Dynamic,                                     \
                       recurrent::GRUVariant::ResetBefore>)                                        \
  X(recurrent::RNNCell<Scalar>)

/// The batched products of one scalar type (detail/gemm.hpp).
#define RECURRENT_GEMM_SPECIALIZATIONS(EXTERN, Scalar)                                            \
  EXTERN template void recurrent::detail::gemm<Scalar>(const recurrent::detail::Product<Scalar>&, \
                                                       recurrent::detail::GemmBuffer<Scalar>&);   \
  EXTERN template void recurrent::detail::gemmColumns<Scalar>(                                    \
      const recurrent::detail::Product<Scalar>&, Eigen::Index, Eigen::Index,                      \
      recurrent::detail::GemmBuffer<Scalar>&);                                                    \
  EXTERN template void recurrent::detail::gemmUnpacked<Scalar>(                                   \
      const recurrent::detail::UnpackedProduct<Scalar>&, recurrent::detail::GemmBuffer<Scalar>&)

/// The int8 and bf16 products of one scalar type (detail/reduced_kernel.hpp): the same kernels
/// serve every cell, so they are compiled once, not once per cell's translation unit.
#define RECURRENT_REDUCED_SPECIALIZATIONS(EXTERN, Scalar)      \
  EXTERN template void recurrent::detail::reducedGemm<Scalar>( \
      const recurrent::detail::ReducedProduct<Scalar>&, recurrent::detail::ReducedBuffer&)

// NOLINTEND(bugprone-macro-parentheses)

// The configuration the specializations are compiled for, as the name of a symbol: the library's
// version, Eigen's largest alignment (16 with SSE, 32 with AVX, 64 with AVX-512) and whether it
// vectorises with FMA. The library defines it (src/gemm.cpp); every translation unit that
// declares the specializations extern refers to it, so a program and a library that disagree
// fail to link instead of mixing two layouts (and two allocators) of the same objects.
#ifdef EIGEN_VECTORIZE_FMA
#define RECURRENT_ABI_FMA fma
#else
#define RECURRENT_ABI_FMA nofma
#endif
#define RECURRENT_ABI_NAME_(major, minor, align, fma) \
  recurrent_compiled_abi_##major##_##minor##_align##align##_##fma
#define RECURRENT_ABI_NAME(major, minor, align, fma) RECURRENT_ABI_NAME_(major, minor, align, fma)
#define RECURRENT_COMPILED_ABI                                                                \
  RECURRENT_ABI_NAME(RECURRENT_VERSION_MAJOR, RECURRENT_VERSION_MINOR, EIGEN_MAX_ALIGN_BYTES, \
                     RECURRENT_ABI_FMA)
/// The library's configuration symbol (defined in src/gemm.cpp).
extern "C" const int RECURRENT_COMPILED_ABI;

#ifdef RECURRENT_EXTERN_TEMPLATES
#if defined(__GNUC__) || defined(__clang__)
namespace recurrent::detail {
/// Refers to the library's configuration symbol, kept by the compiler although nothing reads it.
[[gnu::used]] static const int* const kCompiledAbi = &RECURRENT_COMPILED_ABI;
}  // namespace recurrent::detail
#endif
#define RECURRENT_DECLARE_CELL(...) RECURRENT_CELL_SPECIALIZATIONS(extern, __VA_ARGS__);
RECURRENT_GEMM_SPECIALIZATIONS(extern, float);
RECURRENT_GEMM_SPECIALIZATIONS(extern, double);
RECURRENT_REDUCED_SPECIALIZATIONS(extern, float);
RECURRENT_REDUCED_SPECIALIZATIONS(extern, double);
RECURRENT_COMPILED_CELLS(RECURRENT_DECLARE_CELL, float)
RECURRENT_COMPILED_CELLS(RECURRENT_DECLARE_CELL, double)
#undef RECURRENT_DECLARE_CELL
#endif
