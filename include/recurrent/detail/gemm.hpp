// recurrent — gemm.hpp: the matrix products of the time loop, packed once and never allocating.
//
// Every product here is C (+)= A · B over "gated" matrices: the rows of A and C are G blocks
// of H rows (the gates i, f, g, o of an LSTM, r, z, n of a GRU, or one block), and so may be the
// rows of B (the depth K). A thread can then compute the rows of its own hidden units in every
// gate at once, and the cell's gate math for those units follows without waiting for the
// other threads.
//
// The kernel is the classic one of GotoBLAS and BLIS, written on Eigen's packet primitives so
// that it compiles to AVX-512, AVX2, SSE or NEON as the build allows:
//
//   - A is packed in panels of MR = 2 packets of rows × kc (k-major): one panel row of the
//     kernel is two aligned vector loads;
//   - B is packed in tiles of kc × NR columns (k-major): one broadcast per column;
//   - the kernel keeps an MR × NR tile of C in registers over kc steps of k.
//
// The weights W_ih, W_hh (and their transposes, for backward) are packed once per call of
// Sequence::forward / backward (PackedMatrix); each step then only packs its B, the state.
// Panels never straddle a gate block, so a panel's rows all belong to one gate.
//
// Legend: M rows of A and C, K depth, N columns of B and C; P scalars per packet.
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <array>
#include <cstddef>
#include <type_traits>
#include <utility>
#include <vector>

namespace recurrent {
namespace detail {

using Index = Eigen::Index;

/// Kernel geometry for a scalar type.
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

/// G blocks of `size` rows each: the gate structure of a dimension.
struct Blocks {
  Index count = 1;
  Index size = 0;
  Index total() const { return count * size; }
};

/// A column-major matrix whose rows are Blocks: block b, row r is data[col·ld + b·stride + r].
/// `transposed` reads the element (row, col) from data[row·ld + col] instead (the rows of the
/// logical matrix are then the columns of the stored one).
template <typename Scalar>
struct View {
  Scalar* data = nullptr;
  Index ld = 0;
  Index blockStride = 0;  ///< distance between row blocks (H for a G·H × N gates buffer)
  bool transposed = false;

  Scalar* at(Index block, Index row, Index col) const {
    const Index r = block * blockStride + row;
    return transposed ? data + r * ld + col : data + col * ld + r;
  }
};

template <typename Scalar>
View<Scalar> viewOf(Scalar* data, Index ld, Index blockStride = 0) {
  return View<Scalar>{data, ld, blockStride, false};
}

/// One k-chunk of a packed depth: at most KC consecutive rows of one K block.
struct KChunk {
  Index block;   ///< K block
  Index start;   ///< first row within the block
  Index depth;   ///< kc
  Index offset;  ///< where the chunk's packed data starts (in scalars)
};

// ---- the micro-kernel ------------------------------------------------------------------------

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
  for (int u = 0; u < KU; ++u)
    for (int i = 0; i < MP; ++i)
      for (int j = 0; j < NR; ++j) acc[u][i][j] = Eigen::internal::pset1<Packet>(Scalar(0));
  Index k = 0;
  for (; k + KU <= kc; k += KU) {
    for (int u = 0; u < KU; ++u) {
      const Scalar* ak = a + (k + u) * MP * P;
      const Scalar* bk = b + (k + u) * NR;
      Packet av[kM];
      for (int i = 0; i < MP; ++i) av[i] = Eigen::internal::pload<Packet>(ak + i * P);
      for (int j = 0; j < NR; ++j) {
        const Packet bv = Eigen::internal::pset1<Packet>(bk[j]);
        for (int i = 0; i < MP; ++i) acc[u][i][j] = Eigen::internal::pmadd(av[i], bv, acc[u][i][j]);
      }
    }
  }
  for (; k < kc; ++k) {
    const Scalar* ak = a + k * MP * P;
    const Scalar* bk = b + k * NR;
    for (int j = 0; j < NR; ++j) {
      const Packet bv = Eigen::internal::pset1<Packet>(bk[j]);
      for (int i = 0; i < MP; ++i) {
        acc[0][i][j] =
            Eigen::internal::pmadd(Eigen::internal::pload<Packet>(ak + i * P), bv, acc[0][i][j]);
      }
    }
  }
  for (int u = 1; u < KU; ++u)
    for (int i = 0; i < MP; ++i)
      for (int j = 0; j < NR; ++j) acc[0][i][j] = Eigen::internal::padd(acc[0][i][j], acc[u][i][j]);
  if (overwrite && bias != nullptr) {
    alignas(64) Scalar padded[kM * std::size_t(P)] = {};
    for (Index r = 0; r < rows; ++r) padded[r] = bias[r];
    for (int i = 0; i < MP; ++i) {
      const Packet bv = Eigen::internal::pload<Packet>(padded + i * P);
      for (int j = 0; j < NR; ++j) acc[0][i][j] = Eigen::internal::padd(acc[0][i][j], bv);
    }
  }

  if (rows == MP * P) {
    for (int j = 0; j < NR; ++j) {
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
    for (int j = 0; j < NR; ++j) {
      for (int i = 0; i < MP; ++i) Eigen::internal::pstore(tile + i * P, acc[0][i][j]);
      Scalar* p = c + j * ldc;
      for (Index r = 0; r < rows; ++r) p[r] = overwrite ? tile[r] : p[r] + tile[r];
    }
  }
}

/// Dispatches the tile width `nr` (1..NR) to its compiled kernel.
/// Every compiled kernel: [panel of one or two packets][tile width 1..NR].
template <typename Scalar>
struct KernelTable {
  using Fn = void (*)(Index, const Scalar*, const Scalar*, Scalar*, Index, Index, bool,
                      const Scalar*);
  template <int MP, int... N>
  static constexpr std::array<Fn, sizeof...(N) + 1> row(std::integer_sequence<int, N...>) {
    return {nullptr, &microKernel<Scalar, MP, N + 1>...};
  }
  static constexpr std::array<Fn, GemmTraits<Scalar>::NR + 1> kOne =
      row<1>(std::make_integer_sequence<int, GemmTraits<Scalar>::NR>());
  static constexpr std::array<Fn, GemmTraits<Scalar>::NR + 1> kTwo =
      row<GemmTraits<Scalar>::MP>(std::make_integer_sequence<int, GemmTraits<Scalar>::NR>());
};

/// The kernel for a panel of `height` rows (MR or one packet) and a tile `nr` wide.
template <typename Scalar>
inline void kernel(Index height, Index nr, Index kc, const Scalar* a, const Scalar* b, Scalar* c,
                   Index ldc, Index rows, bool overwrite, const Scalar* bias = nullptr) {
  const auto& table =
      height == GemmTraits<Scalar>::MR ? KernelTable<Scalar>::kTwo : KernelTable<Scalar>::kOne;
  table[static_cast<std::size_t>(nr)](kc, a, b, c, ldc, rows, overwrite, bias);
}

// ---- one column: the matrix-vector product of a single sequence's step
// ------------------------------

/// One panel of a matrix-vector product: its packed data, the C rows it writes and how many of
/// them exist, and its bias (or null).
template <typename Scalar>
struct PanelJob {
  const Scalar* a;
  Scalar* c;
  Index rows;
  const Scalar* bias;
};

/// y(panels) (+)= A_panels · x for NP panels of MP packets each, sharing each broadcast of x[k]:
/// with one column there is no tile of B to reuse, so the panels share the broadcast instead.
/// KU sets of accumulators (two where 32 vector registers hold them, else one) interleave the
/// depth; KU is the same for every group, so a row's sum does not depend on its panel.
template <typename Scalar, int NP, int MP>
inline void gemvPanels(Index kc, const PanelJob<Scalar>* jobs, const Scalar* x, bool overwrite) {
  using Packet = typename GemmTraits<Scalar>::Packet;
  constexpr int P = GemmTraits<Scalar>::P;
  constexpr int KU = EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS >= 32 ? 2 : 1;
  constexpr std::size_t kU = KU, kP = NP, kM = MP;
  Packet acc[kU][kP][kM];
  for (int u = 0; u < KU; ++u)
    for (int p = 0; p < NP; ++p)
      for (int i = 0; i < MP; ++i) acc[u][p][i] = Eigen::internal::pset1<Packet>(Scalar(0));
  Index k = 0;
  for (; k + KU <= kc; k += KU) {
    for (int u = 0; u < KU; ++u) {
      const Packet xv = Eigen::internal::pset1<Packet>(x[k + u]);
      for (int p = 0; p < NP; ++p) {
        const Scalar* ak = jobs[p].a + (k + u) * MP * P;
        for (int i = 0; i < MP; ++i) {
          acc[u][p][i] =
              Eigen::internal::pmadd(Eigen::internal::pload<Packet>(ak + i * P), xv, acc[u][p][i]);
        }
      }
    }
  }
  for (; k < kc; ++k) {
    const Packet xv = Eigen::internal::pset1<Packet>(x[k]);
    for (int p = 0; p < NP; ++p) {
      for (int i = 0; i < MP; ++i) {
        acc[0][p][i] = Eigen::internal::pmadd(
            Eigen::internal::pload<Packet>(jobs[p].a + k * MP * P + i * P), xv, acc[0][p][i]);
      }
    }
  }
  for (int p = 0; p < NP; ++p) {
    Scalar* c = jobs[p].c;
    const Scalar* bias = jobs[p].bias;
    const bool full = jobs[p].rows == MP * P;
    alignas(64) Scalar column[kM * std::size_t(P)];
    for (int i = 0; i < MP; ++i) {
      Packet v = acc[0][p][i];
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
    if (!full) {  // the last panel of a gate: only `rows` rows exist
      for (Index r = 0; r < jobs[p].rows; ++r) {
        c[r] = overwrite ? column[r] + (bias == nullptr ? Scalar(0) : bias[r]) : c[r] + column[r];
      }
    }
  }
}

/// Runs up to four panels of one height (MR or one packet) with their compiled product.
template <typename Scalar>
inline void gemvGroup(Index count, Index height, Index kc, const PanelJob<Scalar>* jobs,
                      const Scalar* x, bool overwrite) {
  constexpr int MP = GemmTraits<Scalar>::MP;
  const bool two = height == GemmTraits<Scalar>::MR;
  switch (count) {
    case 1:
      return two ? gemvPanels<Scalar, 1, MP>(kc, jobs, x, overwrite)
                 : gemvPanels<Scalar, 1, 1>(kc, jobs, x, overwrite);
    case 2:
      return two ? gemvPanels<Scalar, 2, MP>(kc, jobs, x, overwrite)
                 : gemvPanels<Scalar, 2, 1>(kc, jobs, x, overwrite);
    case 3:
      return two ? gemvPanels<Scalar, 3, MP>(kc, jobs, x, overwrite)
                 : gemvPanels<Scalar, 3, 1>(kc, jobs, x, overwrite);
    default:
      return two ? gemvPanels<Scalar, 4, MP>(kc, jobs, x, overwrite)
                 : gemvPanels<Scalar, 4, 1>(kc, jobs, x, overwrite);
  }
}

// ---- packing -----------------------------------------------------------------------------------

/// Rows of the panel that starts at row u0 of a block of H rows: its height in the packed
/// data (MR, or the rest rounded up to a packet) and how many rows are real.
template <typename Scalar>
inline Index panelHeight(Index u0, Index H) {
  return std::min<Index>(GemmTraits<Scalar>::MR, roundUp(H - u0, GemmTraits<Scalar>::P));
}

/// Packs rows [u0, u0 + height) of block `block` and depth [k0, k0 + kc) of K block `kb` of
/// the logical A into `dst` (k-major, `height` scalars per k), zero beyond the block's H rows.
/// Adds each row's sum over the depth to `rowSums[row]` if it is not null.
template <typename Scalar, typename SrcScalar>
inline void packPanel(const View<SrcScalar>& a, Index block, Index u0, Index H, Index height,
                      Index kb, Index kBlockStride, Index k0, Index kc, Scalar* dst,
                      Scalar* rowSums = nullptr) {
  const Index rows = std::min(height, H - u0);
  // The logical A(r, k) with r = block·H + row and k = kb·(K block) + depth, where the caller's
  // view addresses rows by block and the depth through the column index.
  for (Index k = 0; k < kc; ++k) {
    Scalar* d = dst + k * height;
    const Index col = kb * kBlockStride + k0 + k;
    if (!a.transposed) {
      const SrcScalar* s = a.at(block, u0, col);
      for (Index r = 0; r < rows; ++r) d[r] = static_cast<Scalar>(s[r]);
    } else {
      for (Index r = 0; r < rows; ++r) d[r] = static_cast<Scalar>(*a.at(block, u0 + r, col));
    }
    for (Index r = rows; r < height; ++r) d[r] = Scalar(0);
  }
  if (rowSums != nullptr) {
    for (Index k = 0; k < kc; ++k) {
      for (Index r = 0; r < rows; ++r) rowSums[r] += dst[k * height + r];
    }
  }
}

/// Packs depth [k0, k0 + kc) of K block `kb` and columns [n0, n0 + n) of B into NR-wide tiles
/// (the last one nr = n mod NR wide): tile t holds kc × nr scalars, k-major.
template <typename Scalar>
inline void packB(const View<const Scalar>& b, Index kb, Index k0, Index kc, Index n0, Index n,
                  Scalar* dst) {
  constexpr int NR = GemmTraits<Scalar>::NR;
  for (Index j0 = 0; j0 < n; j0 += NR) {
    const Index nr = std::min<Index>(NR, n - j0);
    if (!b.transposed) {
      for (Index j = 0; j < nr; ++j) {
        const Scalar* s = b.at(kb, k0, n0 + j0 + j);
        for (Index k = 0; k < kc; ++k) dst[k * nr + j] = s[k];
      }
    } else {
      for (Index k = 0; k < kc; ++k) {
        const Scalar* s = b.at(kb, k0 + k, n0 + j0);
        for (Index j = 0; j < nr; ++j) dst[k * nr + j] = s[j];
      }
    }
    dst += kc * nr;
  }
}

/// Splits K = kBlocks.count blocks of kBlocks.size rows into chunks of at most KC rows that
/// never straddle a block. Calls f(chunk) in order.
template <typename Scalar, typename F>
inline void forEachKChunk(const Blocks& k, Index mPacked, F&& f) {
  Index offset = 0;
  for (Index kb = 0; kb < k.count; ++kb) {
    for (Index k0 = 0; k0 < k.size; k0 += GemmTraits<Scalar>::KC) {
      const Index kc = std::min<Index>(GemmTraits<Scalar>::KC, k.size - k0);
      f(KChunk{kb, k0, kc, offset});
      offset += kc * mPacked;
    }
  }
}

// ---- a constant matrix, packed once ------------------------------------------------------------

/// A (M × K) packed for the kernel. M = m.count blocks of m.size rows, each block's rows padded
/// to a multiple of the packet; K = k.count blocks of k.size. Packing allocates only when the
/// shape grows.
template <typename Scalar>
class PackedMatrix {
 public:
  /// Packs the logical A(block·m.size + r, kb·k.size + d) = source view element
  /// (block, r, column kb·k.size + d).
  void pack(const View<const Scalar>& source, Blocks m, Blocks k) {
    m_m = m;
    m_k = k;
    m_blockRows = roundUp(m.size, GemmTraits<Scalar>::P);
    const Index size = m.count * m_blockRows * k.total();
    if (m_data.size() < size) m_data.resize(size);
    forEachKChunk<Scalar>(k, m.count * m_blockRows, [&](const KChunk& c) {
      for (Index block = 0; block < m.count; ++block) {
        for (Index u0 = 0; u0 < m.size; u0 += GemmTraits<Scalar>::MR) {
          const Index height = panelHeight<Scalar>(u0, m.size);
          packPanel(source, block, u0, m.size, height, c.block, k.size, c.start, c.depth,
                    panel(c, block, u0));
        }
      }
    });
    // The panels of every block in groups of up to four of one height: the order in which the
    // one-column product runs them, worked out once here instead of at every step.
    m_groups.clear();
    for (Index block = 0; block < m.count; ++block) {
      for (Index u0 = 0; u0 < m.size; u0 += GemmTraits<Scalar>::MR) {
        const Index height = panelHeight<Scalar>(u0, m.size);
        if (m_groups.empty() || m_groups.back().count == 4 || m_groups.back().height != height) {
          m_groups.push_back(PanelGroup{0, height, {}, {}, {}});
        }
        PanelGroup& g = m_groups.back();
        g.block[g.count] = block;
        g.unit[g.count] = u0;
        g.rows[g.count] = std::min<Index>(GemmTraits<Scalar>::MR, m.size - u0);
        ++g.count;
      }
    }
  }

  /// Up to four panels of one height (MR or one packet): the first unit row of each in its block.
  struct PanelGroup {
    int count;
    Index height;
    Index block[4], unit[4], rows[4];
  };
  const std::vector<PanelGroup>& panelGroups() const { return m_groups; }

  const Blocks& rowBlocks() const { return m_m; }
  const Blocks& depthBlocks() const { return m_k; }
  Index packedBlockRows() const { return m_blockRows; }

  Scalar* panel(const KChunk& c, Index block, Index u0) {
    return m_data.data() + c.offset + (block * m_blockRows + u0) * c.depth;
  }
  const Scalar* panel(const KChunk& c, Index block, Index u0) const {
    return m_data.data() + c.offset + (block * m_blockRows + u0) * c.depth;
  }

 private:
  Blocks m_m, m_k;
  Index m_blockRows = 0;
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> m_data;
  std::vector<PanelGroup> m_groups;
};

// ---- the products ------------------------------------------------------------------------------

/// Per-thread scratch for packing B (and A panels, for unpacked A).
template <typename Scalar>
struct GemmBuffer {
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> b, a;
  /// Room for a kc × n block of B and one A panel; allocates only when it grows.
  void reserve(Index n) {
    const Index needB = GemmTraits<Scalar>::KC * n;
    const Index needA = GemmTraits<Scalar>::KC * GemmTraits<Scalar>::MR;
    if (b.size() < needB) b.resize(needB);
    if (a.size() < needA) a.resize(needA);
  }
};

/// C (+)= A · B for a packed A, restricted to row blocks [mb0, mb1), rows [u0, u1) of each
/// (u0 a multiple of MR), K blocks [kb0, kb1), and the n columns of B and C. Overwrites C
/// (instead of adding) when `overwrite`. `buffer` must hold kc × n.
/// With `bias` (addressed like the rows of C), an overwriting product writes A·B + bias.
template <typename Scalar>
void gemm(const PackedMatrix<Scalar>& a, Index mb0, Index mb1, Index u0, Index u1, Index kb0,
          Index kb1, const View<const Scalar>& b, const View<Scalar>& c, Index n, bool overwrite,
          GemmBuffer<Scalar>& buffer, const Scalar* bias = nullptr) {
  if (n == 0 || u0 >= u1) return;
  constexpr int NR = GemmTraits<Scalar>::NR;
  constexpr int MR = GemmTraits<Scalar>::MR;
  const Index H = a.rowBlocks().size;
  bool first = true;
  forEachKChunk<Scalar>(
      a.depthBlocks(), a.rowBlocks().count * a.packedBlockRows(), [&](const KChunk& chunk) {
        if (chunk.block < kb0 || chunk.block >= kb1) return;
        // One column is already a packed tile of width one: use it in place.
        const Scalar* packedB = b.at(chunk.block, chunk.start, 0);
        if (n > 1 || b.transposed) {
          packB(b, chunk.block, chunk.start, chunk.depth, 0, n, buffer.b.data());
          packedB = buffer.b.data();
        }
        const bool write = overwrite && first;
        first = false;
        if (n == 1 && mb0 == 0 && mb1 == a.rowBlocks().count && u0 == 0 && u1 >= H) {
          // One column over every panel: the groups worked out when A was packed.
          PanelJob<Scalar> jobs[4];
          for (const typename PackedMatrix<Scalar>::PanelGroup& g : a.panelGroups()) {
            for (int p = 0; p < g.count; ++p) {
              const Index block = g.block[p], u = g.unit[p];
              jobs[p] =
                  PanelJob<Scalar>{a.panel(chunk, block, u), c.at(block, u, 0), g.rows[p],
                                   bias == nullptr ? nullptr : bias + block * c.blockStride + u};
            }
            gemvGroup(g.count, g.height, chunk.depth, jobs, packedB, write);
          }
          return;
        }
        if (n == 1) {  // one column: panels in groups of four of one height share x[k]
          PanelJob<Scalar> jobs[4];
          Index count = 0, groupHeight = 0;
          for (Index block = mb0; block < mb1; ++block) {
            for (Index u = u0; u < u1; u += MR) {
              const Index height = panelHeight<Scalar>(u, H);
              if (count == 4 || (count > 0 && height != groupHeight)) {
                gemvGroup(count, groupHeight, chunk.depth, jobs, packedB, write);
                count = 0;
              }
              groupHeight = height;
              jobs[count++] = PanelJob<Scalar>{
                  a.panel(chunk, block, u), c.at(block, u, 0), std::min<Index>(MR, H - u),
                  bias == nullptr ? nullptr : bias + block * c.blockStride + u};
            }
          }
          if (count > 0) gemvGroup(count, groupHeight, chunk.depth, jobs, packedB, write);
          return;
        }
        for (Index block = mb0; block < mb1; ++block) {
          for (Index u = u0; u < u1; u += MR) {
            const Index height = panelHeight<Scalar>(u, H);
            const Index rows = std::min<Index>(MR, H - u);
            const Scalar* ap = a.panel(chunk, block, u);
            for (Index j0 = 0; j0 < n; j0 += NR) {
              const Index nr = std::min<Index>(NR, n - j0);
              kernel(height, nr, chunk.depth, ap, packedB + j0 * chunk.depth, c.at(block, u, j0),
                     c.ld, rows, write,
                     bias == nullptr ? nullptr : bias + block * c.blockStride + u);
            }
          }
        }
      });
  if (first && overwrite) {  // no K chunk selected: the product is zero
    for (Index block = mb0; block < mb1; ++block)
      for (Index j = 0; j < n; ++j)
        for (Index u = u0; u < std::min(u1, H); ++u) {
          *c.at(block, u, j) = bias == nullptr ? Scalar(0) : bias[block * c.blockStride + u];
        }
  }
}

/// C (+)= A · B with A packed for a packed A over columns [n0, n1) of B and C, in blocks of NC
/// columns: the large products (the input projection of all steps, dX) split by columns.
template <typename Scalar>
void gemmColumns(const PackedMatrix<Scalar>& a, const View<const Scalar>& b, const View<Scalar>& c,
                 Index n0, Index n1, bool overwrite, GemmBuffer<Scalar>& buffer,
                 const Scalar* bias = nullptr) {
  constexpr Index NC = GemmTraits<Scalar>::NC;
  for (Index j = n0; j < n1; j += NC) {
    const Index n = std::min(NC, n1 - j);
    View<const Scalar> bj = b;
    View<Scalar> cj = c;
    if (b.transposed) {
      bj.data += j;
    } else {
      bj.data += j * b.ld;
    }
    cj.data += j * c.ld;
    gemm(a, 0, a.rowBlocks().count, 0, a.rowBlocks().size, 0, a.depthBlocks().count, bj, cj, n,
         overwrite, buffer, bias);
  }
}

/// C (+)= A · B where A is not packed in advance (a gradient that changes every call): its
/// panels are packed as they are used. A is M × K with M = m blocks, of which blocks [mb0, mb1)
/// and rows [u0, u1) of each are computed; the depth K is one block (usually the packed columns
/// of all steps); N = n. Each row's sum over K is added to `rowSums` (addressed like the rows
/// of C) if it is not null: a bias gradient, read in the same pass.
template <typename Scalar>
void gemmUnpacked(const View<const Scalar>& a, Blocks m, Index mb0, Index mb1, Index u0, Index u1,
                  Index K, const View<const Scalar>& b, const View<Scalar>& c, Index n,
                  bool overwrite, GemmBuffer<Scalar>& buffer, Scalar* rowSums = nullptr) {
  constexpr int NR = GemmTraits<Scalar>::NR;
  constexpr int MR = GemmTraits<Scalar>::MR;
  constexpr Index KC = GemmTraits<Scalar>::KC;
  for (Index k0 = 0; k0 < K; k0 += KC) {
    const Index kc = std::min(KC, K - k0);
    packB(b, 0, k0, kc, 0, n, buffer.b.data());
    const bool write = overwrite && k0 == 0;
    for (Index block = mb0; block < mb1; ++block) {
      for (Index u = u0; u < std::min(u1, m.size); u += MR) {
        const Index height = panelHeight<Scalar>(u, m.size);
        const Index rows = std::min<Index>(MR, m.size - u);
        packPanel(a, block, u, m.size, height, 0, 0, k0, kc, buffer.a.data(),
                  rowSums == nullptr ? nullptr : rowSums + block * c.blockStride + u);
        for (Index j0 = 0; j0 < n; j0 += NR) {
          const Index nr = std::min<Index>(NR, n - j0);
          kernel(height, nr, kc, buffer.a.data(), buffer.b.data() + j0 * kc, c.at(block, u, j0),
                 c.ld, rows, write);
        }
      }
    }
  }
}

}  // namespace detail
}  // namespace recurrent
