// recurrent — detail/packed_matrix.hpp: matrices laid out for the kernels (kernel.hpp).
//
// Every product of the library is C (+)= A · B over "gated" matrices: the rows of A and C are G
// blocks of H rows (the gates i, f, g, o of an LSTM, r, z, n of a GRU, or one block), and so may
// be the rows of B (the depth K). A is packed in panels of MR = two packets of rows (the last
// panel of a block one packet, padded with zero rows) × at most KC of depth, k-major; panels
// never straddle a block, so a thread that owns a range of units computes its rows of every gate
// with whole panels. B is packed per call in tiles of up to NR columns (tileWidth).
//
// The weights W_ih, W_hh (and their transposes, for backward) are constant while a call runs:
// they are packed once per call (PackedMatrix) and each step packs only its B, the state.
#pragma once

#include <recurrent/detail/kernel.hpp>
#include <recurrent/detail/reduced_buffer.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <vector>

namespace recurrent {
namespace detail {

/// `count` blocks of `size` rows each: the gate structure of a dimension.
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

/// The view of a column-major matrix (leading dimension `ld`) whose row blocks lie
/// `blockStride` rows apart.
template <typename Scalar>
View<Scalar> viewOf(Scalar* data, Index ld, Index blockStride = 0) {
  return View<Scalar>{data, ld, blockStride, false};
}
/// The view of the transpose of a column-major matrix: row r of the view is column r of it.
template <typename Scalar>
View<Scalar> transposedViewOf(Scalar* data, Index ld) {
  return View<Scalar>{data, ld, 0, true};
}

/// One chunk of a packed depth: at most KC consecutive depth rows of one depth block.
struct KChunk {
  Index block;   ///< depth block
  Index start;   ///< first depth row within the block
  Index depth;   ///< kc, the rows in the chunk
  Index offset;  ///< where the chunk's packed data starts (in scalars)
};

/// Where a panel lies in A: rows [row, row + height) of row block `block`, a block of
/// `blockRows` rows (rows past it are zero padding).
struct PanelRows {
  Index block;
  Index row;
  Index height;
  Index blockRows;
};

/// The height of the panel that starts at row u0 of a block of H rows in the packed data: MR, or
/// the rest rounded up to a packet.
template <typename Scalar>
inline Index panelHeight(Index u0, Index H) {
  return std::min<Index>(GemmTraits<Scalar>::MR, roundUp(H - u0, GemmTraits<Scalar>::P));
}

/// Packs the panel `rows` of the logical A over the depth [column, column + depth) of the view
/// into `dst` (k-major, rows.height scalars per k), zero beyond the block's rows. Adds each row's
/// sum over the depth to `rowSums[row]` if it is not null.
template <typename Scalar, typename SrcScalar>
inline void packPanel(const View<SrcScalar>& a, const PanelRows& rows, Index column, Index depth,
                      Scalar* dst, Scalar* rowSums = nullptr) {
  const Index height = rows.height;
  const Index real = std::min(height, rows.blockRows - rows.row);
  if (!a.transposed) {
    for (Index k = 0; k < depth; ++k) {
      Scalar* d = dst + k * height;
      const SrcScalar* s = a.at(rows.block, rows.row, column + k);
      for (Index r = 0; r < real; ++r) d[r] = static_cast<Scalar>(s[r]);
      for (Index r = real; r < height; ++r) d[r] = Scalar(0);
    }
  } else {
    // A row of the panel lies along the depth in the source: read it in order and write it down
    // its column of the k-major panel, which stays in L1 (reading the panel's rows in turn for
    // each k, one scalar of each, ran about ten times slower: 5.4 GB/s at 4 MB).
    for (Index r = 0; r < real; ++r) {
      const SrcScalar* s = a.at(rows.block, rows.row + r, column);
      for (Index k = 0; k < depth; ++k) dst[k * height + r] = static_cast<Scalar>(s[k]);
    }
    if (real < height) {
      for (Index k = 0; k < depth; ++k) {
        for (Index r = real; r < height; ++r) dst[k * height + r] = Scalar(0);
      }
    }
  }
  if (rowSums != nullptr) {
    for (Index k = 0; k < depth; ++k) {
      for (Index r = 0; r < real; ++r) rowSums[r] += dst[k * height + r];
    }
  }
}

/// The width of the tile of B's columns that starts at column j0 of n: NR, but where the columns
/// left would end in a tile narrower than NR / 2, those and the tile before are shared between
/// two tiles that differ by at most one column and are both at least 4 wide (NR = 12: 16 columns
/// run as 8 + 8, not 12 + 4), so that no tile keeps too few accumulators to hide the FMA latency
/// (measured: benchmarks/README.md, the column tiles). microKernel sums a column in one order in
/// every tile of 4 columns or more (KU = 1), and in another in the narrower ones; a split never
/// makes a tile narrower than 4. The tiles of a product depend on its n alone: threads share
/// columns in whole blocks of NC (gemmColumns), and each block's tiles start at its first column.
template <typename Scalar>
inline Index tileWidth(Index j0, Index n) {
  constexpr Index NR = GemmTraits<Scalar>::NR;
  const Index left = n - j0;
  if (left <= NR) return left;
  if (left < NR + NR / 2 && left >= 8) return (left + 1) / 2;
  return NR;
}

/// Calls f(j0, nr) for the tiles of n columns in order, nr = tileWidth(j0, n): the one walk that
/// packB and the products that read its tiles share, so a tile is read as it was packed. The
/// tile of column j0 starts at j0 · depth of the packed B.
template <typename Scalar, typename F>
inline void forEachTile(Index n, F&& f) {
  for (Index j0 = 0; j0 < n;) {
    const Index nr = tileWidth<Scalar>(j0, n);
    f(j0, nr);
    j0 += nr;
  }
}

/// Packs the depth `chunk` of the first n columns of B into tiles of tileWidth columns: each
/// tile holds chunk.depth × its width scalars, k-major.
template <typename Scalar>
inline void packB(const View<const Scalar>& b, const KChunk& chunk, Index n, Scalar* dst) {
  const Index kc = chunk.depth;
  forEachTile<Scalar>(n, [&](Index j0, Index nr) {
    Scalar* tile = dst + j0 * kc;
    if (!b.transposed) {
      for (Index j = 0; j < nr; ++j) {
        const Scalar* s = b.at(chunk.block, chunk.start, j0 + j);
        for (Index k = 0; k < kc; ++k) tile[k * nr + j] = s[k];
      }
    } else {
      for (Index k = 0; k < kc; ++k) {
        const Scalar* s = b.at(chunk.block, chunk.start + k, j0);
        for (Index j = 0; j < nr; ++j) tile[k * nr + j] = s[j];
      }
    }
  });
}

/// Splits a depth of k.count blocks of k.size rows into chunks of at most KC rows that never
/// straddle a block, `rowsPacked` rows of A each. Calls f(chunk) in order.
template <typename Scalar, typename F>
inline void forEachKChunk(const Blocks& k, Index rowsPacked, F&& f) {
  Index offset = 0;
  for (Index kb = 0; kb < k.count; ++kb) {
    for (Index k0 = 0; k0 < k.size; k0 += GemmTraits<Scalar>::KC) {
      const Index kc = std::min<Index>(GemmTraits<Scalar>::KC, k.size - k0);
      f(KChunk{kb, k0, kc, offset});
      offset += kc * rowsPacked;
    }
  }
}

/// A (M × K) packed for the kernels: M = m.count blocks of m.size rows, each block's rows padded
/// to a multiple of the packet; K = k.count blocks of k.size. Packing allocates only when the
/// shape grows.
template <typename Scalar>
class PackedMatrix {
 public:
  /// The most panels of one height that a one-column product runs together (gemm.hpp).
  static constexpr int kGroupPanels = 4;

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
          const PanelRows rows{block, u0, panelHeight<Scalar>(u0, m.size), m.size};
          packPanel(source, rows, c.block * k.size + c.start, c.depth, panel(c, block, u0));
        }
      }
    });
    // The panels of every block in groups of up to kGroupPanels of one height: the order in
    // which the one-column product runs them, worked out once here instead of at every step.
    m_groups.clear();
    for (Index block = 0; block < m.count; ++block) {
      for (Index u0 = 0; u0 < m.size; u0 += GemmTraits<Scalar>::MR) {
        const Index height = panelHeight<Scalar>(u0, m.size);
        if (m_groups.empty() || m_groups.back().count == kGroupPanels ||
            m_groups.back().height != height) {
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

  /// Up to kGroupPanels panels of one height (MR or one packet): the block of each, its first
  /// row in the block and how many of its rows exist.
  struct PanelGroup {
    int count;
    Index height;
    Index block[kGroupPanels], unit[kGroupPanels], rows[kGroupPanels];
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

/// Per-thread scratch for packing B (and A panels, for an A packed as it is used).
template <typename Scalar>
struct GemmBuffer {
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> b, a;
  ReducedBuffer reduced;  ///< the quantized inputs of the int8 and bf16 products
  /// Room for a kc × n block of B and one A panel; allocates only when it grows.
  void reserve(Index n) {
    const Index needB = GemmTraits<Scalar>::KC * n;
    const Index needA = GemmTraits<Scalar>::KC * GemmTraits<Scalar>::MR;
    if (b.size() < needB) b.resize(needB);
    if (a.size() < needA) a.resize(needA);
  }
};

}  // namespace detail
}  // namespace recurrent
