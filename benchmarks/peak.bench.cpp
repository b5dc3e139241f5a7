// The core's peak rate of multiply-adds for each precision's instruction, from registers alone:
// which of Precision::Int8 and BF16 can pay on this CPU before any memory is read.
//
//   peak / f32_fma      vfmadd231ps zmm      16 multiply-adds   (float, and the float kernels)
//   peak / bf16_dot     vdpbf16ps zmm        32 multiply-adds   (Precision::BF16's kernels)
//   peak / int8_dot     vpdpbusd zmm         64 multiply-adds   (Precision::Int8's kernels)
//   peak / bf16_amx     tdpbf16ps            8 192 multiply-adds (BF16 on AMX tiles, batches)
//   peak / int8_amx     tdpbusd              16 384 multiply-adds (Int8 on AMX tiles, batches)
//
// The vector rows run 16 independent chains of the instruction (more than latency × issue rate of
// any of them on the CPUs measured), and reports MAC/ns (multiply-adds a nanosecond) and ns a
// instruction. A batched product of a reduced precision is bound by its instruction's rate;
// the ratio of a row's MAC/ns to f32_fma's bounds what it can gain over float (benchmarks/
// README.md, *int8 and bf16*, has the measurements). The AMX rows run four tiles of sums, as the
// library's tile kernel does, on operands loaded once; where the operating system refuses the
// tiles they report an error. Only the rows the compiler targets exist.
#include <benchmark/benchmark.h>
#include <Eigen/Core>
#include <recurrent/detail/reduced_amx.hpp>

#include <cstddef>
#include <utility>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace {

constexpr std::size_t kChains = 16;

#if defined(__AVX512F__)
template <typename Acc>
EIGEN_ALWAYS_INLINE void opaque(Acc& v) {
  asm volatile("" : "+v"(v));
}

/// The timed loop over independent accumulators, each a parameter (a local the compiler keeps in
/// a register of its own; an array would stay in memory); the empty asm statements ("+v": in a
/// vector register) keep each one live and opaque, so that nothing is folded across iterations.
template <typename Step, typename... Acc>
void chains(benchmark::State& state, const Step& step, Acc... acc) {
  for (auto _ : state) {
    ((acc = step(acc)), ...);
    (opaque(acc), ...);
  }
}

template <typename Acc, typename Step, std::size_t... I>
void chainsOf(benchmark::State& state, Acc init, const Step& step, std::index_sequence<I...>) {
  chains(state, step, (static_cast<void>(I), init)...);
}

/// Runs `step` on kChains accumulators per iteration; macsPerInstruction names its work.
template <typename Acc, typename Step>
void peak(benchmark::State& state, Acc init, const Step& step, double macsPerInstruction) {
  chainsOf(state, init, step, std::make_index_sequence<kChains>());
  const auto instructions = static_cast<double>(state.iterations() * kChains);
  state.counters["MAC/ns"] =
      benchmark::Counter(instructions * macsPerInstruction * 1e-9, benchmark::Counter::kIsRate);
  state.counters["ns/instruction"] = benchmark::Counter(
      instructions * 1e-9, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void f32Fma(benchmark::State& state) {
  const __m512 b = _mm512_set1_ps(0.999F);
  const __m512 c = _mm512_set1_ps(1e-3F);
  peak(
      state, _mm512_set1_ps(1.0F), [&](__m512 a) { return _mm512_fmadd_ps(a, b, c); }, 16);
}
#endif

#if defined(__AVX512BF16__)
void bf16Dot(benchmark::State& state) {
  // bf16 0.5 (0x3F00) and 1.0 (0x3F80): the sums stay finite.
  const auto b = reinterpret_cast<__m512bh>(_mm512_set1_epi16(0x3F00));
  const auto c = reinterpret_cast<__m512bh>(_mm512_set1_epi16(0x3F80));
  peak(
      state, _mm512_setzero_ps(), [&](__m512 a) { return _mm512_dpbf16_ps(a, b, c); }, 32);
}
#endif

#if defined(__AVX512VNNI__)
void int8Dot(benchmark::State& state) {
  const __m512i b = _mm512_set1_epi8(1);
  const __m512i c = _mm512_set1_epi8(-1);
  peak(
      state, _mm512_setzero_si512(), [&](__m512i a) { return _mm512_dpbusd_epi32(a, b, c); }, 64);
}
#endif

#if defined(RECURRENT_AMX)
/// Four independent tiles of sums, each multiplied by the same two operand tiles per iteration.
template <bool kInt8>
void amxPeak(benchmark::State& state) {
  namespace amx = recurrent::detail::amx;
  if (!amx::available()) {
    state.SkipWithError("the operating system does not grant the AMX tiles");
    return;
  }
  const amx::Configuration configuration;
  // bf16 1.0 in every half (0x3F80): finite float sums; int8 ones: int32 sums that may wrap.
  alignas(64) std::uint16_t operand[16 * 32];
  for (std::uint16_t& v : operand) v = kInt8 ? 0x0101 : 0x3F80;
  _tile_loadd(4, operand, 64);
  _tile_loadd(6, operand, 64);
  for (auto _ : state) {
    if constexpr (kInt8) {
      _tile_dpbusd(0, 4, 6);
      _tile_dpbusd(1, 4, 6);
      _tile_dpbusd(2, 4, 6);
      _tile_dpbusd(3, 4, 6);
    } else {
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 6);
      _tile_dpbf16ps(2, 4, 6);
      _tile_dpbf16ps(3, 4, 6);
    }
  }
  alignas(64) float out[16 * 16];
  _tile_stored(0, out, 64);
  benchmark::DoNotOptimize(out);
  const auto instructions = static_cast<double>(state.iterations() * 4);
  const double macs = kInt8 ? 16.0 * 16 * 64 : 16.0 * 16 * 32;
  state.counters["MAC/ns"] =
      benchmark::Counter(instructions * macs * 1e-9, benchmark::Counter::kIsRate);
  state.counters["ns/instruction"] = benchmark::Counter(
      instructions * 1e-9, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
#endif

}  // namespace

#if defined(__AVX512F__)
BENCHMARK(f32Fma)->Name("peak/f32_fma");
#endif
#if defined(__AVX512BF16__)
BENCHMARK(bf16Dot)->Name("peak/bf16_dot");
#endif
#if defined(__AVX512VNNI__)
BENCHMARK(int8Dot)->Name("peak/int8_dot");
#endif

#if defined(RECURRENT_AMX)
BENCHMARK(amxPeak<false>)->Name("peak/bf16_amx");
BENCHMARK(amxPeak<true>)->Name("peak/int8_amx");
#endif

BENCHMARK_MAIN();
