// recurrent — detail/kernel.hpp: the register kernels every product of the library runs.
//
// Two kernels, each keeping a block of the result in vector registers over the depth k:
//
//   microKernel   C(MR × NR) (+)= A_panel · B_tile   for products with several columns (a batch):
//                 one panel of A is reused for NR columns of B, one broadcast per column and k
//   gemv          c(rows) (+)= A_panels · x          for a single column (one sequence): there is
//                 no tile of B to reuse, so several panels of A share each broadcast of x[k]
//
// Both read A packed k-major in panels of whole SIMD packets of rows (one depth step of a panel
// is a few aligned vector loads) and are written on Eigen's packet primitives, so they compile
// to AVX-512, AVX2, SSE or NEON as the build allows. The blocked products built on them are in
// gemm.hpp; the one-sequence step of Stream runs gemv on its own layout (fused_step.hpp).
//
// Legend: P scalars per packet, MR rows per panel of the blocked product, NR columns per tile,
// KU independent sets of accumulators interleaving the depth.
#pragma once

#include <Eigen/Core>

#include <array>
#include <cstddef>
#include <utility>

/// Fully unrolls the small loops over a kernel's registers (bounds known at compile time), so
/// that the accumulators live in registers: -O3 does it unasked, -O2 (CMake's RelWithDebInfo)
/// does not, and then keeps the accumulators in memory.
#if defined(__clang__)
#define RECURRENT_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define RECURRENT_UNROLL _Pragma("GCC unroll 16")
#else
#define RECURRENT_UNROLL
#endif

namespace recurrent {
namespace detail {

using Index = Eigen::Index;

/// Kernel geometry for a scalar type.
///
/// KC bounds the depth a packed panel covers. A panel of A is MR × KC (32 KB with AVX-512, in
/// float or double: MR is two packets) and is read once per tile of NR columns; B's tile is KC × NR
/// (12 KB in float). Neither needs to stay in a 32 KB or a 48 KB L1 cache for the kernel to run at
/// its peak: per depth step the kernel loads MP packets of A and NR scalars of B for MP · NR FMAs
/// (24 with AVX-512), so even when A streams from L2 it needs 2 × 64 bytes per 24 FMAs — a fraction
/// of the L2's 64 bytes a cycle on one FMA unit or two. The geometry therefore holds on every x86
/// core with AVX-512 or AVX2, whatever its L1 size.
template <typename Scalar>
struct GemmTraits {
  using Packet = typename Eigen::internal::packet_traits<Scalar>::type;
  static constexpr int P = Eigen::internal::unpacket_traits<Packet>::size;  ///< scalars per packet
  static constexpr int MP = 2;                                              ///< packets per panel
  static constexpr int MR = MP * P;                                         ///< rows per panel
  /// Columns per tile: MP·NR accumulators + MP + 1 registers must fit the register file.
  static constexpr int NR = EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS >= 32 ? 12 : 6;
  static constexpr Index KC = 256;  ///< depth of one packed block
  static constexpr Index NC = 192;  ///< columns of B packed at once in the large products
};

inline Index roundUp(Index x, Index m) { return (x + m - 1) / m * m; }

/// Calls f(std::integral_constant<int, N>()) for the N in 1..Max that equals n: a run-time count
/// turned into a compile-time one, for every value it can take and no other.
template <int Max, typename F, int... N>
EIGEN_ALWAYS_INLINE void withCount(int n, F&& f, std::integer_sequence<int, N...>) {
  eigen_assert(n >= 1 && n <= Max);
  (void)((n == N + 1 ? (f(std::integral_constant<int, N + 1>()), true) : false) || ...);
}
template <int Max, typename F>
EIGEN_ALWAYS_INLINE void withCount(int n, F&& f) {
  withCount<Max>(n, f, std::make_integer_sequence<int, Max>());
}

// ---- several columns: the micro-kernel -------------------------------------------------------

/// C(rows × NR) (+)= A_panel(MP·P × kc) · B_tile(kc × NR), A and B packed k-major.
/// KU independent sets of accumulators hide the FMA latency when the tile is narrow. KU depends
/// on the tile's width only, never on the panel's height, so every row of C is summed in the same
/// order however A was cut into panels (and so whatever the number of threads).
/// When overwriting, `bias` (one value per row, or null) is added to every column: the
/// input projection W_ih·x + b is written in one pass.
template <typename Scalar, int MP, int NR>
inline void microKernel(Index kc, const Scalar* a, const Scalar* b, Scalar* c, Index ldc,
                        Index rows, bool overwrite, const Scalar* bias) {
  using Traits = GemmTraits<Scalar>;
  using Packet = typename Traits::Packet;
  constexpr int P = Traits::P;
  constexpr int KU = NR >= 4 ? 1 : (4 + NR - 1) / NR;
  constexpr std::size_t kU = KU, kM = MP, kN = NR;  // array bounds
  Packet acc[kU][kM][kN];
  RECURRENT_UNROLL
  for (int u = 0; u < KU; ++u) RECURRENT_UNROLL
  for (int i = 0; i < MP; ++i) RECURRENT_UNROLL
  for (int j = 0; j < NR; ++j) acc[u][i][j] = Eigen::internal::pset1<Packet>(Scalar(0));
  Index k = 0;
  for (; k + KU <= kc; k += KU) {
    RECURRENT_UNROLL
    for (int u = 0; u < KU; ++u) {
      const Scalar* ak = a + (k + u) * MP * P;
      const Scalar* bk = b + (k + u) * NR;
      Packet av[kM];
      RECURRENT_UNROLL
      for (int i = 0; i < MP; ++i) av[i] = Eigen::internal::pload<Packet>(ak + i * P);
      RECURRENT_UNROLL
      for (int j = 0; j < NR; ++j) {
        const Packet bv = Eigen::internal::pset1<Packet>(bk[j]);
        RECURRENT_UNROLL
        for (int i = 0; i < MP; ++i) acc[u][i][j] = Eigen::internal::pmadd(av[i], bv, acc[u][i][j]);
      }
    }
  }
  for (; k < kc; ++k) {
    const Scalar* ak = a + k * MP * P;
    const Scalar* bk = b + k * NR;
    RECURRENT_UNROLL
    for (int j = 0; j < NR; ++j) {
      const Packet bv = Eigen::internal::pset1<Packet>(bk[j]);
      RECURRENT_UNROLL
      for (int i = 0; i < MP; ++i) {
        acc[0][i][j] =
            Eigen::internal::pmadd(Eigen::internal::pload<Packet>(ak + i * P), bv, acc[0][i][j]);
      }
    }
  }
  RECURRENT_UNROLL
  for (int u = 1; u < KU; ++u) RECURRENT_UNROLL
  for (int i = 0; i < MP; ++i) RECURRENT_UNROLL
  for (int j = 0; j < NR; ++j) acc[0][i][j] = Eigen::internal::padd(acc[0][i][j], acc[u][i][j]);
  if (overwrite && bias != nullptr) {
    alignas(64) Scalar padded[kM * std::size_t(P)] = {};
    for (Index r = 0; r < rows; ++r) padded[r] = bias[r];
    RECURRENT_UNROLL
    for (int i = 0; i < MP; ++i) {
      const Packet bv = Eigen::internal::pload<Packet>(padded + i * P);
      RECURRENT_UNROLL
      for (int j = 0; j < NR; ++j) acc[0][i][j] = Eigen::internal::padd(acc[0][i][j], bv);
    }
  }

  if (rows == MP * P) {
    RECURRENT_UNROLL
    for (int j = 0; j < NR; ++j) {
      RECURRENT_UNROLL
      for (int i = 0; i < MP; ++i) {
        Scalar* p = c + j * ldc + i * P;
        const Packet v =
            overwrite ? acc[0][i][j]
                      : Eigen::internal::padd(Eigen::internal::ploadu<Packet>(p), acc[0][i][j]);
        Eigen::internal::pstoreu(p, v);
      }
    }
  } else {  // the last panel of a block: only `rows` rows exist in C
    alignas(64) Scalar tile[kM * std::size_t(P)];
    RECURRENT_UNROLL
    for (int j = 0; j < NR; ++j) {
      RECURRENT_UNROLL
      for (int i = 0; i < MP; ++i) Eigen::internal::pstore(tile + i * P, acc[0][i][j]);
      Scalar* p = c + j * ldc;
      for (Index r = 0; r < rows; ++r) p[r] = overwrite ? tile[r] : p[r] + tile[r];
    }
  }
}

/// Every compiled micro-kernel, [packets of the panel − 1][tile width − 1]: panels of 1..MP
/// packets of rows, tiles of 1..NR columns, each the kernel compiled for it.
template <typename Scalar>
struct KernelTable {
  using Fn = void (*)(Index, const Scalar*, const Scalar*, Scalar*, Index, Index, bool,
                      const Scalar*);
  static constexpr int MP = GemmTraits<Scalar>::MP;
  static constexpr int NR = GemmTraits<Scalar>::NR;
  using Row = std::array<Fn, std::size_t(NR)>;

  template <int Packets, int... N>
  static constexpr Row row(std::integer_sequence<int, N...>) {
    return {&microKernel<Scalar, Packets, N + 1>...};
  }
  template <int... M>
  static constexpr std::array<Row, std::size_t(MP)> rows(std::integer_sequence<int, M...>) {
    return {row<M + 1>(std::make_integer_sequence<int, NR>())...};
  }
  static constexpr std::array<Row, std::size_t(MP)> kKernels =
      rows(std::make_integer_sequence<int, MP>());
};

/// The micro-kernel for a panel of `height` rows (a whole number of packets, at most MR) and a
/// tile `nr` wide (1..NR).
template <typename Scalar>
inline void kernel(Index height, Index nr, Index kc, const Scalar* a, const Scalar* b, Scalar* c,
                   Index ldc, Index rows, bool overwrite, const Scalar* bias = nullptr) {
  constexpr int P = GemmTraits<Scalar>::P;
  eigen_assert(height % P == 0 && height >= P && height <= GemmTraits<Scalar>::MR);
  eigen_assert(nr >= 1 && nr <= GemmTraits<Scalar>::NR);
  const auto& row = KernelTable<Scalar>::kKernels[static_cast<std::size_t>(height / P - 1)];
  row[static_cast<std::size_t>(nr - 1)](kc, a, b, c, ldc, rows, overwrite, bias);
}

// ---- one column: gemv ---------------------------------------------------------------------------

/// One panel of a one-column product: its packed rows (k-major, MP packets per k), where its
/// result goes, how many of its rows exist there (the rest is padding), and its bias (or null).
template <typename Scalar>
struct PanelJob {
  const Scalar* a;
  Scalar* c;
  Index rows;
  const Scalar* bias;
};

/// c (+)= A · x for NP panels of MP packets each, over `depth`, all panels sharing each broadcast
/// of x[k]. KU sets of accumulators interleave the depth (k, k + 1, ... go to different sets) to
/// hide the FMA latency; the sets are summed in order, then the bias is added when overwriting.
/// A row's sum therefore depends on KU and the depth only, not on NP or on which panels ran
/// together. Where a panel's rows all exist, whole packets are stored (unaligned); else only the
/// rows that exist.
template <typename Scalar, int NP, int MP, int KU>
EIGEN_ALWAYS_INLINE void gemv(Index depth, const PanelJob<Scalar>* jobs, const Scalar* x,
                              bool overwrite) {
  using Packet = typename GemmTraits<Scalar>::Packet;
  constexpr int P = GemmTraits<Scalar>::P;
  constexpr std::size_t kU = KU, kP = NP, kM = MP;
  Packet acc[kU][kP][kM];
  RECURRENT_UNROLL
  for (int u = 0; u < KU; ++u) RECURRENT_UNROLL
  for (int p = 0; p < NP; ++p) RECURRENT_UNROLL
  for (int i = 0; i < MP; ++i) acc[u][p][i] = Eigen::internal::pset1<Packet>(Scalar(0));
  const Index main = depth / KU * KU;  // the depth in whole groups of KU
  for (Index k = 0; k < main; k += KU) {
    RECURRENT_UNROLL
    for (int u = 0; u < KU; ++u) {
      const Packet xv = Eigen::internal::pset1<Packet>(x[k + u]);
      RECURRENT_UNROLL
      for (int p = 0; p < NP; ++p) {
        const Scalar* ak = jobs[p].a + (k + u) * MP * P;
        RECURRENT_UNROLL
        for (int i = 0; i < MP; ++i) {
          acc[u][p][i] =
              Eigen::internal::pmadd(Eigen::internal::pload<Packet>(ak + i * P), xv, acc[u][p][i]);
        }
      }
    }
  }
  for (Index k = main; k < depth; ++k) {
    const Packet xv = Eigen::internal::pset1<Packet>(x[k]);
    RECURRENT_UNROLL
    for (int p = 0; p < NP; ++p) {
      RECURRENT_UNROLL
      for (int i = 0; i < MP; ++i) {
        acc[0][p][i] = Eigen::internal::pmadd(
            Eigen::internal::pload<Packet>(jobs[p].a + k * MP * P + i * P), xv, acc[0][p][i]);
      }
    }
  }
  RECURRENT_UNROLL
  for (int p = 0; p < NP; ++p) {
    Scalar* c = jobs[p].c;
    const Scalar* bias = jobs[p].bias;
    const bool full = jobs[p].rows == MP * P;
    alignas(64) Scalar column[kM * std::size_t(P)];
    RECURRENT_UNROLL
    for (int i = 0; i < MP; ++i) {
      Packet v = acc[0][p][i];
      RECURRENT_UNROLL
      for (int u = 1; u < KU; ++u) v = Eigen::internal::padd(v, acc[u][p][i]);
      if (full) {  // whole packets straight to C
        Scalar* ci = c + i * P;
        if (overwrite) {
          if (bias != nullptr)
            v = Eigen::internal::padd(v, Eigen::internal::ploadu<Packet>(bias + i * P));
        } else {
          v = Eigen::internal::padd(v, Eigen::internal::ploadu<Packet>(ci));
        }
        Eigen::internal::pstoreu(ci, v);
      } else {
        Eigen::internal::pstore(column + i * P, v);
      }
    }
    if (!full) {  // the last panel of a block: only `rows` rows exist
      for (Index r = 0; r < jobs[p].rows; ++r) {
        c[r] = overwrite ? column[r] + (bias == nullptr ? Scalar(0) : bias[r]) : c[r] + column[r];
      }
    }
  }
}

}  // namespace detail
}  // namespace recurrent
