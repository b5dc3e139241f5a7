// recurrent — detail/reduced_amx.hpp: the int8 and bf16 products on AMX tiles (a batch's, and
// the bf16 step's of one column).
//
// Where the compiler targets AMX (AMX-TILE, -INT8 and -BF16, with AVX-512 VNNI and BF16: Intel
// Xeon from Sapphire Rapids on) and the operating system grants the tiles' state to the process,
// a batch's int8 and bf16 products run on the tile unit: one tdpbusd multiplies 16 columns × 64
// depth rows of u8 codes by 64 depth rows × 16 weight rows of s8 (16 384 multiply-adds), one
// tdpbf16ps 16 × 32 bf16 by 32 × 16 (8 192), against 64 and 32 for vpdpbusd and vdpbf16ps.
//
// The operands need no layout of their own. A ReducedMatrix's panel is already what a tile's
// second operand reads: int8 [k/4][row][k mod 4] and bf16 [k/2][row][k mod 2] are, 16 groups at
// a time, 16 lines of 64 bytes, one a group. The first operand is 16 input columns, each column's
// codes contiguous (reduced_kernel.hpp's amxGemm quantizes them so), read with the buffer's
// stride. A tile of sums holds 16 columns × one panel's 16 rows, int32 (int8) or float (bf16).
// For one column (columnSums, the reduced fused step's bf16 products) the input and sums tiles
// are configured one row high.
//
// The depth runs in whole chunks of 16 groups here; the groups left over (paddedDepth not a
// multiple of 64 int8 or 32 bf16 depth rows) are added by the caller with vpdpbusd / vdpbf16ps.
// int8 sums are exact, so they equal every other kernel's to the bit; bf16 sums are added in the
// tile unit's order (each group's even depth row, then its odd one, in one chain over the depth),
// which differs from the vector kernels' four sets: results agree to float rounding.
#pragma once

#include <recurrent/detail/kernel.hpp>

#if defined(__AMX_TILE__) && defined(__AMX_INT8__) && defined(__AMX_BF16__) && \
    defined(__AVX512VNNI__) && defined(__AVX512BF16__) && defined(__linux__)
#define RECURRENT_AMX 1
#endif

#if defined(RECURRENT_AMX)
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>

namespace recurrent {
namespace detail {
namespace amx {

/// Depth groups (of 4 int8 or 2 bf16 depth rows) a tile product covers: 16 lines of 64 bytes.
constexpr Index kChunkGroups = 16;
/// Input columns a tile holds.
constexpr Index kTileColumns = 16;

/// Whether this process may use the tiles. Linux gives AMX's register state to a process only on
/// request (arch_prctl ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA, Linux 5.16 and later); the
/// request is made once, and where it is refused the vector kernels run instead.
inline bool available() {
  static const bool granted = [] {
    constexpr long kRequestPermission = 0x1023;  // ARCH_REQ_XCOMP_PERM
    constexpr long kTileData = 18;               // XFEATURE_XTILEDATA
    return syscall(SYS_arch_prctl, kRequestPermission, kTileData) == 0;
  }();
  return granted;
}

/// The tiles' configuration for a product: 8 tiles of 64 bytes a row. Tiles 0–3 hold sums
/// (tileSums: column tile t, panel q: tile 2t + q; columnSums: panel q), 4–5 the input columns
/// (a row per column), 6–7 the panels, 16 rows each. `columns` is the rows of the sums and input
/// tiles: 16 for a batch, 1 for a single column (a tile product then takes fewer cycles).
/// Loading it zeroes the tiles; it holds for the calling thread until the destructor releases
/// them.
struct Configuration {
  explicit Configuration(int columns = int(kTileColumns)) {
    alignas(64) std::uint8_t config[64] = {};
    config[0] = 1;  // palette 1
    for (int t = 0; t < 8; ++t) {
      config[16 + 2 * t] = 64;                                           // bytes a row (16 bits)
      config[48 + t] = static_cast<std::uint8_t>(t < 6 ? columns : 16);  // rows
    }
    _tile_loadconfig(config);
  }
  ~Configuration() { _tile_release(); }
  Configuration(const Configuration&) = delete;
  Configuration& operator=(const Configuration&) = delete;
};

/// Sums of NT tiles of 16 input columns × NP panels over `chunks` chunks of kChunkGroups groups,
/// written to out[(t · NP + q) · 256 + column · 16 + row] (int32 for Int8, float for BF16).
/// `columns` points at the first column's codes, `stride` bytes apart; panel q's lines start at
/// panels[q], 64 bytes apart. A Configuration must be loaded on this thread.
template <bool kInt8, int NT, int NP>
void tileSums(const void* columns, Index stride, const void* const* panels, Index chunks,
              void* out) {
  static_assert(NT >= 1 && NT <= 2 && NP >= 1 && NP <= 2, "two tiles of sums a side at most");
  // The tile loads are asm statements that do not say they read memory: nothing the caller
  // stored (the quantized columns) may be moved past them, nor may a read of `out` move before
  // the stores below.
  std::atomic_signal_fence(std::memory_order_seq_cst);
  const auto* a = static_cast<const std::uint8_t*>(columns);
  const auto* w0 = static_cast<const std::uint8_t*>(panels[0]);
  const auto* w1 = static_cast<const std::uint8_t*>(panels[NP - 1]);
  _tile_zero(0);
  if constexpr (NP == 2) _tile_zero(1);
  if constexpr (NT == 2) _tile_zero(2);
  if constexpr (NT == 2 && NP == 2) _tile_zero(3);
  const Index chunkBytes = kChunkGroups * 64;
  for (Index c = 0; c < chunks; ++c) {
    _tile_loadd(4, a + c * 64, stride);
    if constexpr (NT == 2) _tile_loadd(5, a + kTileColumns * stride + c * 64, stride);
    _tile_loadd(6, w0 + c * chunkBytes, 64);
    if constexpr (NP == 2) _tile_loadd(7, w1 + c * chunkBytes, 64);
    if constexpr (kInt8) {
      _tile_dpbusd(0, 4, 6);
      if constexpr (NP == 2) _tile_dpbusd(1, 4, 7);
      if constexpr (NT == 2) _tile_dpbusd(2, 5, 6);
      if constexpr (NT == 2 && NP == 2) _tile_dpbusd(3, 5, 7);
    } else {
      _tile_dpbf16ps(0, 4, 6);
      if constexpr (NP == 2) _tile_dpbf16ps(1, 4, 7);
      if constexpr (NT == 2) _tile_dpbf16ps(2, 5, 6);
      if constexpr (NT == 2 && NP == 2) _tile_dpbf16ps(3, 5, 7);
    }
  }
  auto* o = static_cast<std::uint8_t*>(out);
  constexpr Index kTileBytes = 16 * 64;
  _tile_stored(0, o, 64);
  if constexpr (NP == 2) _tile_stored(1, o + kTileBytes, 64);
  if constexpr (NT == 2) _tile_stored(2, o + NP * kTileBytes, 64);
  if constexpr (NT == 2 && NP == 2) _tile_stored(3, o + 3 * kTileBytes, 64);
  std::atomic_signal_fence(std::memory_order_seq_cst);
}

/// bf16 sums of one input column (a Configuration of 1 column) × NP ≤ 4 panels over `chunks`
/// chunks, written to out[q · 16 + row] as floats. The column's codes start at `column`,
/// contiguous; panel q's lines at panels[q]. (The reduced fused step takes it for bf16 only: in
/// int8 one column runs faster on vpdpbusd.)
template <int NP>
void columnSums(const void* column, const void* const* panels, Index chunks, void* out) {
  static_assert(NP >= 1 && NP <= 4, "four tiles of sums");
  std::atomic_signal_fence(std::memory_order_seq_cst);
  const auto* a = static_cast<const std::uint8_t*>(column);
  const std::uint8_t* w[4];
  for (int q = 0; q < 4; ++q) w[q] = static_cast<const std::uint8_t*>(panels[q < NP ? q : 0]);
  _tile_zero(0);
  if constexpr (NP > 1) _tile_zero(1);
  if constexpr (NP > 2) _tile_zero(2);
  if constexpr (NP > 3) _tile_zero(3);
  const Index chunkBytes = kChunkGroups * 64;
  // The intrinsics take the tiles' numbers as literal tokens (they are pasted into the asm).
  for (Index c = 0; c < chunks; ++c) {
    _tile_loadd(4, a + c * 64, 64);
    _tile_loadd(6, w[0] + c * chunkBytes, 64);
    _tile_dpbf16ps(0, 4, 6);
    if constexpr (NP > 1) {
      _tile_loadd(7, w[1] + c * chunkBytes, 64);
      _tile_dpbf16ps(1, 4, 7);
    }
    if constexpr (NP > 2) {
      _tile_loadd(6, w[2] + c * chunkBytes, 64);
      _tile_dpbf16ps(2, 4, 6);
    }
    if constexpr (NP > 3) {
      _tile_loadd(7, w[3] + c * chunkBytes, 64);
      _tile_dpbf16ps(3, 4, 7);
    }
  }
  auto* o = static_cast<std::uint8_t*>(out);
  _tile_stored(0, o, 64);
  if constexpr (NP > 1) _tile_stored(1, o + 64, 64);
  if constexpr (NP > 2) _tile_stored(2, o + 128, 64);
  if constexpr (NP > 3) _tile_stored(3, o + 192, 64);
  std::atomic_signal_fence(std::memory_order_seq_cst);
}

}  // namespace amx
}  // namespace detail
}  // namespace recurrent
#endif
