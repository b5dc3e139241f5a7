// recurrent — detail/fused_step.hpp: one step of one sequence, as one product.
//
// A Stream of one sequence of a cell that names a fused product (Cell::FusedProduct; LSTM,
// GRU-ResetAfter, RNN), and Sequence::infer of one sequence of a small such cell, run each step as
//
//     v = [x; h]                     K = I + H scalars, copied into an aligned buffer
//     A = F · v + b_F                kBlocks·H rows, ONE pass over v for every gate
//     the cell's gate math on A      (Cell::fusedGates)
//
// where F and b_F are the cell's weights and biases laid out for this product
// (fused_product.hpp: [W_ih W_hh] for LSTM and RNN; for the GRU the candidate's input and
// recurrent halves as separate row blocks, since the reset gate sits between them).
//
// F is packed (pack(): by a Stream at construction and refresh(), by Sequence::infer at every
// call, as it packs its other weights) into panels of up to
// kPanelPackets SIMD packets of rows, each stored k-major, and each panel is one call of the
// one-column kernel (kernel.hpp's gemv) with its own accumulators. Row blocks that read only part
// of the depth (the GRU's candidate halves) skip the rest: each panel's depth range is the hull
// of its blocks' ranges. FusedStep serves a cell whose sizes I and H are compile-time constants
// (LSTMCell<float, 8, 16>, ...): every loop bound is a constant, so the compiler unrolls the small
// products completely and keeps the accumulators in registers. DynamicFusedStep runs the same
// panels with the bounds read at run time, and so the same sums. Neither allocates in a step.
// Where every panel fits in the core's L1 data cache, every other step runs the panels last to
// first (Layout::alternates).
//
// The gate math is the cell's own (the same σ and tanh on the same packet-sized chunks as the
// batched step). The product sums each row of F·v in one pass with its own order and
// interleaving, where the batched kernel (Sequence otherwise; Stream for B > 1) sums W_ih·x and
// W_hh·h separately: results agree with it to float rounding, not bit for bit.
#pragma once

#include <recurrent/detail/cpu.hpp>
#include <recurrent/detail/fused_product.hpp>
#include <recurrent/detail/kernel.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <array>
#include <type_traits>
#include <utility>
#include <vector>

namespace recurrent {
namespace detail {

/// The fused product a cell names (Cell::FusedProduct), void where it names none.
template <typename Cell, typename = void>
struct FusedProductOf {
  using type = void;
};
template <typename Cell>
struct FusedProductOf<Cell, std::void_t<typename Cell::FusedProduct>> {
  using type = typename Cell::FusedProduct;
};

/// Whether the cell offers the fused step.
template <typename Cell>
constexpr bool hasFusedStep() {
  return !std::is_void_v<typename FusedProductOf<Cell>::type>;
}

/// Whether both of the cell's sizes are compile-time constants.
template <typename Cell>
constexpr bool fixedSizes() {
  return Cell::kInputSize != Eigen::Dynamic && Cell::kHiddenSize != Eigen::Dynamic;
}

/// Stands in for FusedStep where a cell has none.
struct NoFusedStep {};

namespace fused {

constexpr int kPanelPackets = 4;  ///< packets of rows per panel

/// Independent accumulator sets over the depth for a panel of `packets` packets, so that the FMA
/// latency is hidden and several loads are in flight: sixteen accumulators in all where there are
/// 32 vector registers (AVX-512), else eight. It depends on the panel's height only, never on the
/// sizes being known at compile time, so the fixed-size and run-time-sized kernels sum in the same
/// order.
constexpr int unroll(int packets) {
  return std::max(1, (EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS >= 32 ? 16 : 8) / packets);
}

/// One panel of `NP` packets: out = W · v + bias over `depth`, everything aligned to a packet.
template <typename Scalar, int NP>
EIGEN_ALWAYS_INLINE void panel(int depth, const Scalar* w, const Scalar* v, const Scalar* bias,
                               Scalar* out) {
  const PanelJob<Scalar> job{w, out, NP * GemmTraits<Scalar>::P, bias};
  gemv<Scalar, 1, NP, unroll(NP)>(depth, &job, v, true);
}

/// Where the panels of a cell of sizes I, H lie: panel p holds rows [begin, begin + rows) of A
/// (the last rows padding) and the depth [depthBegin, depthEnd), the hull of its row blocks'
/// ranges. constexpr, so that a fixed-size cell's layout is a compile-time constant.
template <typename Cell>
struct Layout {
  using Fused = typename FusedProductOf<Cell>::type;  ///< the layout of F (fused_product.hpp)
  static constexpr int P = GemmTraits<typename Cell::Scalar>::P;
  static constexpr int kPanelRows = kPanelPackets * P;
  int I, H;

  constexpr int rows() const { return Fused::kBlocks * H; }
  constexpr int paddedRows() const { return (rows() + P - 1) / P * P; }
  constexpr int panels() const { return (paddedRows() + kPanelRows - 1) / kPanelRows; }
  constexpr int begin(int p) const { return p * kPanelRows; }
  constexpr int panelRows(int p) const { return std::min(kPanelRows, paddedRows() - begin(p)); }
  constexpr int depthBegin(int p) const {
    int d = I + H;
    for (int b = begin(p) / H; b <= lastBlock(p); ++b) d = std::min(d, Fused::depthBegin(b, I));
    return d;
  }
  constexpr int depthEnd(int p) const {
    int d = 0;
    for (int b = begin(p) / H; b <= lastBlock(p); ++b) d = std::max(d, Fused::depthEnd(b, I, H));
    return d;
  }
  /// Where panel p starts in the packed weights (p = panels(): their total size).
  constexpr int offset(int p) const {
    int size = 0;
    for (int q = 0; q < p; ++q) size += panelRows(q) * (depthEnd(q) - depthBegin(q));
    return size;
  }

  /// Whether the panels' order alternates from step to step on a core whose L1 data cache holds
  /// `l1Bytes`: every other step runs them last to first, so that the weights read last are still
  /// in L1 when the next step starts, where a fixed order evicts each panel just before it is
  /// needed again once the weights are larger than the cache. Only where each panel fits in L1 (a
  /// larger panel is evicted before the next step in either order), and only with two panels or
  /// more. Weights that fit in L1 alternate too, which costs nothing measurable. Each panel sums
  /// its own rows, so the order changes no result.
  constexpr bool alternates(long l1Bytes) const {
    if (panels() < 2) return false;
    constexpr long kScalarBytes = sizeof(typename Cell::Scalar);
    for (int p = 0; p < panels(); ++p) {
      const long bytes = long(panelRows(p)) * (depthEnd(p) - depthBegin(p)) * kScalarBytes;
      if (bytes > l1Bytes) return false;
    }
    return true;
  }

  /// Packs F (rows() × (I + H)) into `w` (offset(panels()) scalars): a panel's rows of each
  /// column of F in turn, as one copy (a Sequence of one sequence packs at every call), and
  /// zeros in the padding rows.
  template <typename Matrix, typename Scalar>
  void pack(const Matrix& f, Scalar* w) const {
    Scalar* dst = w;
    for (int p = 0; p < panels(); ++p) {
      const int r0 = begin(p), n = panelRows(p), filled = std::min(n, rows() - r0);
      for (int k = depthBegin(p); k < depthEnd(p); ++k, dst += n) {
        Eigen::Map<Eigen::Matrix<Scalar, Eigen::Dynamic, 1>>(dst, filled) =
            f.col(k).segment(r0, filled);
        std::fill(dst + filled, dst + n, Scalar(0));
      }
    }
  }

 private:
  constexpr int lastBlock(int p) const {
    return (std::min(rows(), begin(p) + panelRows(p)) - 1) / H;
  }
};

/// F and b_F of the cell's current parameters (allocates: outside the real-time loop).
template <typename Cell>
void buildProduct(const Cell& cell, typename Cell::Matrix& f, typename Cell::Vector& b) {
  FusedProductOf<Cell>::type::build(cell.parameters(), cell.inputSize(), cell.hiddenSize(), f, b);
}

}  // namespace fused

/// The fused step of a cell with both sizes fixed at compile time.
template <typename Cell>
class FusedStep {
 public:
  using Scalar = typename Cell::Scalar;
  static constexpr int I = Cell::kInputSize;
  static constexpr int H = Cell::kHiddenSize;
  static constexpr int K = I + H;  ///< depth: [x; h]
  static constexpr fused::Layout<Cell> kLayout{I, H};
  static constexpr int RP = kLayout.paddedRows();  ///< rows of A, padded to whole packets

  /// Packs the cell's current parameters (allocates: call it outside the real-time loop).
  void pack(const Cell& cell) {
    typename Cell::Matrix f;
    typename Cell::Vector b;
    pack(cell, f, b);
  }

  /// The same with F and b_F built in the caller's f and b: packing the same sizes again
  /// allocates nothing.
  void pack(const Cell& cell, typename Cell::Matrix& f, typename Cell::Vector& b) {
    fused::buildProduct(cell, f, b);
    m_weights.resize(kLayout.offset(kLayout.panels()));
    kLayout.pack(f, m_weights.data());
    for (int r = 0; r < RP; ++r) {
      m_bias[static_cast<std::size_t>(r)] = r < kLayout.rows() ? b[r] : Scalar(0);
    }
    m_alternates = kLayout.alternates(l1DataCacheBytes());
  }

  /// One step of one sequence: x (I), hPrev, cPrev (H each; cPrev only for a cell state) in,
  /// h and c (H each) out. The outputs must not overlap the inputs.
  void step(const Cell& cell, const Scalar* x, const Scalar* hPrev, const Scalar* cPrev, Scalar* h,
            Scalar* c) {
    Scalar* v = m_v.data();
    for (int k = 0; k < I; ++k) v[k] = x[k];
    for (int k = 0; k < H; ++k) v[I + k] = hPrev[k];
    constexpr auto order = std::make_integer_sequence<int, kLayout.panels()>();
    if constexpr (kLayout.panels() >= 2) {  // every other step, the panels last to first
      m_reverse = m_alternates && !m_reverse;
      if (m_reverse) {
        reversed(order);
      } else {
        inOrder(order);
      }
    } else {
      inOrder(order);
    }
    cell.fusedGates(m_a.data(), hPrev, cPrev, h, c);
  }

  /// Whether the panels' order alternates on this machine (Layout::alternates).
  bool alternates() const { return m_alternates; }

 private:
  template <int... p>
  EIGEN_ALWAYS_INLINE void inOrder(std::integer_sequence<int, p...>) {
    (panel<p>(), ...);
  }
  template <int... p>
  EIGEN_ALWAYS_INLINE void reversed(std::integer_sequence<int, p...>) {
    (panel<kLayout.panels() - 1 - p>(), ...);
  }

  template <int p>
  EIGEN_ALWAYS_INLINE void panel() {
    constexpr int P = fused::Layout<Cell>::P;
    constexpr int r0 = kLayout.begin(p), kb = kLayout.depthBegin(p);
    constexpr int depth = kLayout.depthEnd(p) - kb, offset = kLayout.offset(p);
    fused::panel<Scalar, kLayout.panelRows(p) / P>(
        depth, m_weights.data() + offset, m_v.data() + kb, m_bias.data() + r0, m_a.data() + r0);
  }

  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> m_weights;        ///< F in panels (aligned by Eigen)
  alignas(64) std::array<Scalar, std::size_t(RP)> m_bias{};  ///< b_F, padded
  alignas(64) std::array<Scalar, std::size_t(RP)> m_a{};  ///< A, then the cell's gate activations
  alignas(64) std::array<Scalar, std::size_t(K)> m_v{};   ///< [x; h]
  bool m_alternates = false;  ///< whether the panels' order alternates (Layout::alternates)
  bool m_reverse = false;     ///< whether the last step ran the panels last to first
};

/// The same step for a cell whose sizes are known at run time only: the same panels, the same
/// kernel and so the same sums, with the loop bounds read from the layout.
template <typename Cell>
class DynamicFusedStep {
 public:
  using Scalar = typename Cell::Scalar;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

  void pack(const Cell& cell) {
    typename Cell::Matrix f;
    typename Cell::Vector b;
    pack(cell, f, b);
  }

  /// FusedStep::pack's overload: the same sizes again allocate nothing.
  void pack(const Cell& cell, typename Cell::Matrix& f, typename Cell::Vector& b) {
    fused::buildProduct(cell, f, b);
    const fused::Layout<Cell> layout{static_cast<int>(cell.inputSize()),
                                     static_cast<int>(cell.hiddenSize())};
    m_inputSize = layout.I;
    m_hiddenSize = layout.H;
    m_weights.resize(layout.offset(layout.panels()));
    layout.pack(f, m_weights.data());
    m_panels.clear();
    m_panels.reserve(2 * static_cast<std::size_t>(layout.panels()));
    for (int p = 0; p < layout.panels(); ++p) {
      m_panels.push_back(Panel{layout.panelRows(p) / fused::Layout<Cell>::P, layout.begin(p),
                               layout.depthBegin(p), layout.depthEnd(p) - layout.depthBegin(p),
                               layout.offset(p)});
    }
    // The same panels last to first follow them, for the steps that run backwards.
    const std::size_t count = m_panels.size();
    for (std::size_t q = count; q-- > 0;) {
      const Panel copy = m_panels[q];
      m_panels.push_back(copy);
    }
    m_alternates = layout.alternates(l1DataCacheBytes());
    m_bias.setZero(layout.paddedRows());
    m_bias.head(layout.rows()) = b;
    m_a.setZero(layout.paddedRows());
    m_v.setZero(layout.I + layout.H);
  }

  void step(const Cell& cell, const Scalar* x, const Scalar* hPrev, const Scalar* cPrev, Scalar* h,
            Scalar* c) {
    Scalar* v = m_v.data();
    for (int k = 0; k < m_inputSize; ++k) v[k] = x[k];
    for (int k = 0; k < m_hiddenSize; ++k) v[m_inputSize + k] = hPrev[k];
    const Scalar* w = m_weights.data();
    const Scalar* bias = m_bias.data();
    Scalar* a = m_a.data();
    m_reverse = m_alternates && !m_reverse;  // see Layout::alternates
    const std::size_t count = m_panels.size() / 2;
    const Panel* first = m_panels.data() + (m_reverse ? count : 0);
    for (const Panel* end = first + count; first != end; ++first) {
      const Panel& p = *first;
      withCount<fused::kPanelPackets>(p.packets, [&](auto np) {
        fused::panel<Scalar, decltype(np)::value>(p.depth, w + p.offset, v + p.depthBegin,
                                                  bias + p.begin, a + p.begin);
      });
    }
    cell.fusedGates(a, hPrev, cPrev, h, c);
  }

  /// Whether the panels' order alternates on this machine (Layout::alternates).
  bool alternates() const { return m_alternates; }

 private:
  struct Panel {
    int packets, begin, depthBegin, depth, offset;
  };
  int m_inputSize = 0, m_hiddenSize = 0;
  bool m_alternates = false;  ///< whether the panels' order alternates (Layout::alternates)
  bool m_reverse = false;     ///< whether the last step ran the panels last to first
  Vector m_weights, m_bias, m_a, m_v;  // aligned by Eigen
  std::vector<Panel> m_panels;         ///< first to last, then last to first
};

}  // namespace detail
}  // namespace recurrent
