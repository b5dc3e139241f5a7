// recurrent — detail/gemm.hpp: the matrix products of the time loop, never allocating.
//
// Three products, each C (+)= A · B over the gated matrices of packed_matrix.hpp:
//
//   gemm          A packed once (the weights), any part of its rows and depth: the per-step
//                 products W_hh·h and W_hhᵀ·dA of a thread's units
//   gemmColumns   the same over a range of columns, in blocks of NC: the products over every
//                 step at once (the input projection, dX), split between threads by columns
//   gemmUnpacked  A packed as it is used (a gradient that changes every call): the weight
//                 gradients dW = dG · Xᵀ, with the bias gradient Σ dG summed in the same pass
//
// Each is described by one argument struct (Product, UnpackedProduct) whose setters name the
// part to compute, so that a call reads what it multiplies:
//
//   gemm(Product<Scalar>(packedWhh, h, gates, n).blocks(g0, g1).units(u0, u1).overwrite(), buf);
//
// The kernel is the classic one of GotoBLAS and BLIS (kernel.hpp): for several columns the
// micro-kernel keeps an MR × NR tile of C in registers; for one column, panels of A in groups of
// up to four share each broadcast of x[k] (gemv).
#pragma once

#include <recurrent/detail/kernel.hpp>
#include <recurrent/detail/packed_matrix.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cstddef>

namespace recurrent {
namespace detail {

/// The indices [begin, end).
struct Range {
  Index begin = 0;
  Index end = 0;
};

/// The part of C a product computes: row blocks (gates), the rows of each selected block (a
/// thread's units; the first a multiple of MR), and whether C is overwritten or added to.
template <typename Derived>
struct RowSelection {
  Range selectedBlocks, selectedUnits;
  bool overwriting = false;

  /// Row blocks [first, last) only (default: all).
  Derived& blocks(Index first, Index last) {
    selectedBlocks = Range{first, last};
    return static_cast<Derived&>(*this);
  }
  /// Rows [first, last) of each selected block only — a thread's units of every gate (default:
  /// all).
  Derived& units(Index first, Index last) {
    selectedUnits = Range{first, last};
    return static_cast<Derived&>(*this);
  }
  /// C = A·B instead of C += A·B.
  Derived& overwrite(bool yes = true) {
    overwriting = yes;
    return static_cast<Derived&>(*this);
  }
};

/// C (+)= A · B with A packed: A's rows, B's and C's first `columns` columns.
template <typename Scalar>
struct Product : RowSelection<Product<Scalar>> {
  Product(const PackedMatrix<Scalar>& a_, const View<const Scalar>& b_, const View<Scalar>& c_,
          Index columns_)
      : a(a_), b(b_), c(c_), columns(columns_), selectedDepth{0, a_.depthBlocks().count} {
    this->selectedBlocks = Range{0, a_.rowBlocks().count};
    this->selectedUnits = Range{0, a_.rowBlocks().size};
  }
  /// Depth blocks [first, last) of A (and rows of B) only (default: all).
  Product& depthBlocks(Index first, Index last) {
    selectedDepth = Range{first, last};
    return *this;
  }
  /// With overwrite(): C = A·B + bias, `bias` addressed like the rows of C.
  Product& plusBias(const Scalar* b_) {
    bias = b_;
    return *this;
  }

  const PackedMatrix<Scalar>& a;
  View<const Scalar> b;
  View<Scalar> c;
  Index columns;
  Range selectedDepth;
  const Scalar* bias = nullptr;
};

/// C (+)= A · B where A (aRows = G blocks of H rows × `depth`) is packed as it is used; B is
/// depth × columns.
template <typename Scalar>
struct UnpackedProduct : RowSelection<UnpackedProduct<Scalar>> {
  UnpackedProduct(const View<const Scalar>& a_, Blocks aRows_, Index depth_,
                  const View<const Scalar>& b_, const View<Scalar>& c_, Index columns_)
      : a(a_), aRows(aRows_), depth(depth_), b(b_), c(c_), columns(columns_) {
    this->selectedBlocks = Range{0, aRows_.count};
    this->selectedUnits = Range{0, aRows_.size};
  }
  /// Adds each row's sum over the depth to `sums` (addressed like the rows of C): a bias
  /// gradient, read in the same pass.
  UnpackedProduct& sumRowsInto(Scalar* sums) {
    rowSums = sums;
    return *this;
  }

  View<const Scalar> a;
  Blocks aRows;
  Index depth;
  View<const Scalar> b;
  View<Scalar> c;
  Index columns;
  Scalar* rowSums = nullptr;
};

/// Sets of accumulators of the one-column product: two where 32 vector registers hold them, else
/// one. The same for every group of panels, so a row's sum does not depend on which panels ran
/// together (and so on the number of threads).
constexpr int kGemvUnroll = EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS >= 32 ? 2 : 1;

/// Runs `count` (1..kGroupPanels) panels of `height` rows (a whole number of packets, at most
/// MR) with the one-column product compiled for them.
template <typename Scalar>
inline void gemvGroup(int count, Index height, Index depth, const PanelJob<Scalar>* jobs,
                      const Scalar* x, bool overwrite) {
  constexpr int P = GemmTraits<Scalar>::P;
  eigen_assert(height % P == 0);
  withCount<GemmTraits<Scalar>::MP>(static_cast<int>(height / P), [&](auto mp) {
    withCount<PackedMatrix<Scalar>::kGroupPanels>(count, [&](auto np) {
      gemv<Scalar, decltype(np)::value, decltype(mp)::value, kGemvUnroll>(depth, jobs, x,
                                                                          overwrite);
    });
  });
}

/// Computes the Product. `buffer` must hold kc × p.columns.
template <typename Scalar>
void gemm(const Product<Scalar>& p, GemmBuffer<Scalar>& buffer) {
  const Range blocks = p.selectedBlocks, units = p.selectedUnits;
  const Range depthBlocks = p.selectedDepth;
  const Index n = p.columns;
  if (n == 0 || units.begin >= units.end) return;
  constexpr int MR = GemmTraits<Scalar>::MR;
  constexpr int kGroup = PackedMatrix<Scalar>::kGroupPanels;
  const PackedMatrix<Scalar>& a = p.a;
  const View<Scalar>& c = p.c;
  const Index H = a.rowBlocks().size;
  const bool everyRow =
      blocks.begin == 0 && blocks.end == a.rowBlocks().count && units.begin == 0 && units.end >= H;
  // Where the bias of row u of block `block` is (null without a bias).
  const auto biasOf = [&](Index block, Index u) {
    return p.bias == nullptr ? nullptr : p.bias + block * c.blockStride + u;
  };
  bool first = true;
  forEachKChunk<Scalar>(
      a.depthBlocks(), a.rowBlocks().count * a.packedBlockRows(), [&](const KChunk& chunk) {
        if (chunk.block < depthBlocks.begin || chunk.block >= depthBlocks.end) return;
        // One column is already a packed tile of width one: use it in place.
        const Scalar* packedB = p.b.at(chunk.block, chunk.start, 0);
        if (n > 1 || p.b.transposed) {
          packB(p.b, chunk, n, buffer.b.data());
          packedB = buffer.b.data();
        }
        const bool write = p.overwriting && first;
        first = false;
        if (n == 1 && everyRow) {
          // One column over every panel: the groups worked out when A was packed.
          PanelJob<Scalar> jobs[std::size_t(kGroup)];
          for (const typename PackedMatrix<Scalar>::PanelGroup& g : a.panelGroups()) {
            for (int k = 0; k < g.count; ++k) {
              const Index block = g.block[k], u = g.unit[k];
              jobs[k] = PanelJob<Scalar>{a.panel(chunk, block, u), c.at(block, u, 0), g.rows[k],
                                         biasOf(block, u)};
            }
            gemvGroup(g.count, g.height, chunk.depth, jobs, packedB, write);
          }
          return;
        }
        if (n == 1) {  // one column: panels in groups of one height share x[k]
          PanelJob<Scalar> jobs[std::size_t(kGroup)];
          int count = 0;
          Index groupHeight = 0;
          for (Index block = blocks.begin; block < blocks.end; ++block) {
            for (Index u = units.begin; u < units.end; u += MR) {
              const Index height = panelHeight<Scalar>(u, H);
              if (count == kGroup || (count > 0 && height != groupHeight)) {
                gemvGroup(count, groupHeight, chunk.depth, jobs, packedB, write);
                count = 0;
              }
              groupHeight = height;
              jobs[count++] = PanelJob<Scalar>{a.panel(chunk, block, u), c.at(block, u, 0),
                                               std::min<Index>(MR, H - u), biasOf(block, u)};
            }
          }
          if (count > 0) gemvGroup(count, groupHeight, chunk.depth, jobs, packedB, write);
          return;
        }
        for (Index block = blocks.begin; block < blocks.end; ++block) {
          for (Index u = units.begin; u < units.end; u += MR) {
            const Index height = panelHeight<Scalar>(u, H);
            const Index rows = std::min<Index>(MR, H - u);
            const Scalar* ap = a.panel(chunk, block, u);
            forEachTile<Scalar>(n, [&](Index j0, Index nr) {
              kernel(height, nr, chunk.depth, ap, packedB + j0 * chunk.depth, c.at(block, u, j0),
                     c.ld, rows, write, biasOf(block, u));
            });
          }
        }
      });
  if (first && p.overwriting) {  // no depth chunk selected: the product is zero
    for (Index block = blocks.begin; block < blocks.end; ++block)
      for (Index j = 0; j < n; ++j)
        for (Index u = units.begin; u < std::min(units.end, H); ++u) {
          *c.at(block, u, j) = p.bias == nullptr ? Scalar(0) : *biasOf(block, u);
        }
  }
}

/// Computes columns [first, last) of the Product (all its rows and depth) in blocks of NC
/// columns: the large products (the input projection of all steps, dX), split by columns
/// between threads.
template <typename Scalar>
void gemmColumns(const Product<Scalar>& p, Index first, Index last, GemmBuffer<Scalar>& buffer) {
  constexpr Index NC = GemmTraits<Scalar>::NC;
  eigen_assert(last <= p.columns);
  for (Index j = first; j < last; j += NC) {
    View<const Scalar> bj = p.b;
    bj.data += p.b.transposed ? j : j * p.b.ld;
    View<Scalar> cj = p.c;
    cj.data += j * p.c.ld;
    Product<Scalar> part(p.a, bj, cj, std::min(NC, last - j));
    gemm(part.overwrite(p.overwriting).plusBias(p.bias), buffer);
  }
}

/// Computes the UnpackedProduct, its depth in chunks of KC. `buffer` must hold kc × p.columns.
template <typename Scalar>
void gemmUnpacked(const UnpackedProduct<Scalar>& p, GemmBuffer<Scalar>& buffer) {
  constexpr int MR = GemmTraits<Scalar>::MR;
  constexpr Index KC = GemmTraits<Scalar>::KC;
  const Index H = p.aRows.size, n = p.columns;
  const Index unitsEnd = std::min(p.selectedUnits.end, H);
  for (Index k0 = 0; k0 < p.depth; k0 += KC) {
    const KChunk chunk{0, k0, std::min(KC, p.depth - k0), 0};
    packB(p.b, chunk, n, buffer.b.data());
    const bool write = p.overwriting && k0 == 0;
    for (Index block = p.selectedBlocks.begin; block < p.selectedBlocks.end; ++block) {
      for (Index u = p.selectedUnits.begin; u < unitsEnd; u += MR) {
        const PanelRows panel{block, u, panelHeight<Scalar>(u, H), H};
        packPanel(p.a, panel, k0, chunk.depth, buffer.a.data(),
                  p.rowSums == nullptr ? nullptr : p.rowSums + block * p.c.blockStride + u);
        forEachTile<Scalar>(n, [&](Index j0, Index nr) {
          kernel(panel.height, nr, chunk.depth, buffer.a.data(), buffer.b.data() + j0 * chunk.depth,
                 p.c.at(block, u, j0), p.c.ld, std::min<Index>(MR, H - u), write);
        });
      }
    }
  }
}

}  // namespace detail
}  // namespace recurrent
