// recurrent — fused_step.hpp: one step of one sequence, as one product.
//
// A Stream of one sequence (LSTM, GRU-ResetAfter, RNN) runs each step as
//
//     v = [x; h]                     K = I + H scalars, copied into an aligned buffer
//     A = F · v + b_F                R = kFusedBlocks·H rows, ONE pass over v for every gate
//     the cell's gate math on A      (Cell::fusedGates)
//
// where F and b_F are the cell's weights and biases laid out for this product
// (Cell::fusedProduct: [W_ih W_hh] for LSTM and RNN; for GRU the candidate's input and
// recurrent halves as separate row blocks, since the reset gate sits between them).
//
// F is packed once (pack(), at Stream construction and refresh()) into panels of up to
// kPanelPackets SIMD packets of rows, each stored k-major: one depth step of a panel is a few
// aligned vector loads, multiplied by one broadcast of v[k]. Row blocks that read only part of
// the depth (the GRU's candidate halves) skip the rest: each panel's depth range is worked out
// from Cell::fusedDepthBegin/End. FusedStep serves a cell whose sizes I and H are compile-time
// constants (LSTMCell<float, 8, 16>, ...): every loop bound is a constant, so the compiler
// unrolls the small products completely and keeps the accumulators in registers.
// DynamicFusedStep runs the same panels with the bounds read at run time, and so the same sums.
// Neither allocates in a step. Where the weights outgrow the L1 cache, every other step runs the
// panels last to first (Layout::alternates).
//
// The gate math is the cell's own (the same σ and tanh on the same packet-sized chunks as the
// batched step). The product sums each row of F·v in one pass with its own order and
// interleaving, where the batched kernel (Sequence; Stream for B > 1) sums W_ih·x and W_hh·h
// separately: results agree with it to float rounding, not bit for bit.
#pragma once

#include <recurrent/detail/gemm.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <array>
#include <type_traits>
#include <utility>
#include <vector>

namespace recurrent {
namespace detail {

/// Whether the cell offers the fused step (Cell::kFusedStep).
template <typename Cell, typename = void>
struct HasFusedStep : std::false_type {};
template <typename Cell>
struct HasFusedStep<Cell, std::void_t<decltype(Cell::kFusedStep)>>
    : std::integral_constant<bool, Cell::kFusedStep> {};

/// Whether both of the cell's sizes are compile-time constants.
template <typename Cell>
constexpr bool fixedSizes() {
  return Cell::kInputSize != Eigen::Dynamic && Cell::kHiddenSize != Eigen::Dynamic;
}

/// Stands in for FusedStep where a cell has none.
struct NoFusedStep {};

namespace fused {

constexpr int kPanelPackets = 4;  ///< packets of rows per panel

/// The L1 data cache the step's panel order is chosen for (Layout::alternates): 48 KB, as on
/// Zen 5 (where it was measured) and on Intel cores since Ice Lake.
constexpr int kL1Bytes = 48 * 1024;

/// Independent accumulator sets over the depth for a panel of `packets` packets, so that the FMA
/// latency is hidden and several loads are in flight: sixteen accumulators in all where there are
/// 32 vector registers (AVX-512; measured on Zen 5 against 8, and against panels of 2 and 8
/// packets), else eight. It depends on the panel's height only, never on the sizes being known at
/// compile time, so the fixed-size and run-time-sized kernels sum in the same order.
constexpr int unroll(int packets) {
  return std::max(1, (EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS >= 32 ? 16 : 8) / packets);
}

/// out[NP packets] = W[NP packets × depth] · v[depth] + bias[NP packets]; W k-major, everything
/// aligned to a packet. Inlined where depth is a constant, the loops unroll.
template <typename Scalar, int NP>
EIGEN_ALWAYS_INLINE void panel(int depth, const Scalar* w, const Scalar* v, const Scalar* bias,
                               Scalar* out) {
  using Packet = typename GemmTraits<Scalar>::Packet;
  constexpr int P = GemmTraits<Scalar>::P, KU = unroll(NP), rows = NP * P;
  constexpr std::size_t kU = KU, kP = NP;
  const int main = depth / KU * KU;  // the depth in whole groups of KU
  Packet acc[kU][kP];
  for (int u = 0; u < KU; ++u)
    for (int i = 0; i < NP; ++i) acc[u][i] = Eigen::internal::pset1<Packet>(Scalar(0));
  for (int k = 0; k < main; k += KU) {
    for (int u = 0; u < KU; ++u) {
      const Packet vk = Eigen::internal::pset1<Packet>(v[k + u]);
      for (int i = 0; i < NP; ++i) {
        acc[u][i] = Eigen::internal::pmadd(
            Eigen::internal::pload<Packet>(w + (k + u) * rows + i * P), vk, acc[u][i]);
      }
    }
  }
  for (int k = main; k < depth; ++k) {
    const Packet vk = Eigen::internal::pset1<Packet>(v[k]);
    for (int i = 0; i < NP; ++i) {
      acc[0][i] = Eigen::internal::pmadd(Eigen::internal::pload<Packet>(w + k * rows + i * P), vk,
                                         acc[0][i]);
    }
  }
  for (int i = 0; i < NP; ++i) {
    Packet sum = acc[0][i];
    for (int u = 1; u < KU; ++u) sum = Eigen::internal::padd(sum, acc[u][i]);
    sum = Eigen::internal::padd(sum, Eigen::internal::pload<Packet>(bias + i * P));
    Eigen::internal::pstore(out + i * P, sum);
  }
}

/// Where the panels of a cell of sizes I, H lie: panel p holds rows [begin, begin + rows) of A
/// (the last rows padding) and the depth [depthBegin, depthEnd), the hull of its row blocks'
/// ranges. constexpr, so that a fixed-size cell's layout is a compile-time constant.
template <typename Cell>
struct Layout {
  static constexpr int P = GemmTraits<typename Cell::Scalar>::P;
  static constexpr int kPanelRows = kPanelPackets * P;
  int I, H;

  constexpr int rows() const { return Cell::kFusedBlocks * H; }
  constexpr int paddedRows() const { return (rows() + P - 1) / P * P; }
  constexpr int panels() const { return (paddedRows() + kPanelRows - 1) / kPanelRows; }
  constexpr int begin(int p) const { return p * kPanelRows; }
  constexpr int panelRows(int p) const { return std::min(kPanelRows, paddedRows() - begin(p)); }
  constexpr int depthBegin(int p) const {
    int d = I + H;
    for (int b = begin(p) / H; b <= lastBlock(p); ++b) d = std::min(d, Cell::fusedDepthBegin(b, I));
    return d;
  }
  constexpr int depthEnd(int p) const {
    int d = 0;
    for (int b = begin(p) / H; b <= lastBlock(p); ++b)
      d = std::max(d, Cell::fusedDepthEnd(b, I, H));
    return d;
  }
  /// Where panel p starts in the packed weights (p = panels(): their total size).
  constexpr int offset(int p) const {
    int size = 0;
    for (int q = 0; q < p; ++q) size += panelRows(q) * (depthEnd(q) - depthBegin(q));
    return size;
  }

  /// Whether the panels' order alternates from step to step: every other step runs them last to
  /// first, so that the weights read last are still in the L1 cache when the next step starts,
  /// where a fixed order evicts each panel just before it is needed again once the weights are
  /// larger than the cache (measured on Zen 5: GRU I = 1, H = 64, 49 KB, 331 -> 218 ns a step;
  /// LSTM I = H = 64, 128 KB, 951 -> 852 ns). Only where each panel fits in L1: a larger panel
  /// is evicted before the next step in either order (I = H = 128, 64 KB panels: no gain
  /// measured). Weights that fit in L1 alternate too, at no measurable cost, which serves a CPU
  /// whose L1 is smaller than kL1Bytes. Each panel sums its own rows, so the order changes no
  /// result.
  constexpr bool alternates() const {
    if (panels() < 2) return false;
    constexpr long long kScalarBytes = sizeof(typename Cell::Scalar);
    for (int p = 0; p < panels(); ++p) {
      const long long bytes =
          static_cast<long long>(panelRows(p)) * (depthEnd(p) - depthBegin(p)) * kScalarBytes;
      if (bytes > kL1Bytes) return false;
    }
    return true;
  }

  /// Packs F (rows() × (I + H)) into `w` (offset(panels()) scalars).
  template <typename Matrix, typename Scalar>
  void pack(const Matrix& f, Scalar* w) const {
    for (int p = 0; p < panels(); ++p) {
      const int r0 = begin(p), n = panelRows(p), kb = depthBegin(p);
      Scalar* dst = w + offset(p);
      for (int k = kb; k < depthEnd(p); ++k) {
        for (int r = 0; r < n; ++r)
          dst[(k - kb) * n + r] = r0 + r < rows() ? f(r0 + r, k) : Scalar(0);
      }
    }
  }

 private:
  constexpr int lastBlock(int p) const {
    return (std::min(rows(), begin(p) + panelRows(p)) - 1) / H;
  }
};

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
    cell.fusedProduct(f, b);
    m_weights.resize(kLayout.offset(kLayout.panels()));
    kLayout.pack(f, m_weights.data());
    for (int r = 0; r < RP; ++r) {
      m_bias[static_cast<std::size_t>(r)] = r < kLayout.rows() ? b[r] : Scalar(0);
    }
  }

  /// One step of one sequence: x (I), hPrev, cPrev (H each; cPrev only for a cell state) in,
  /// h and c (H each) out. The outputs must not overlap the inputs.
  void step(const Cell& cell, const Scalar* x, const Scalar* hPrev, const Scalar* cPrev, Scalar* h,
            Scalar* c) {
    Scalar* v = m_v.data();
    for (int k = 0; k < I; ++k) v[k] = x[k];
    for (int k = 0; k < H; ++k) v[I + k] = hPrev[k];
    if constexpr (kLayout.alternates()) {  // every other step, the panels last to first
      m_reverse = !m_reverse;
      if (m_reverse) {
        reversed(std::make_integer_sequence<int, kLayout.panels()>());
      } else {
        inOrder(std::make_integer_sequence<int, kLayout.panels()>());
      }
    } else {
      inOrder(std::make_integer_sequence<int, kLayout.panels()>());
    }
    cell.fusedGates(m_a.data(), hPrev, cPrev, h, c);
  }

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
  bool m_reverse = false;  ///< whether the last step ran the panels last to first
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
    cell.fusedProduct(f, b);
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
    m_alternates = layout.alternates();
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
      switch (p.packets) {
        case 1:
          fused::panel<Scalar, 1>(p.depth, w + p.offset, v + p.depthBegin, bias + p.begin,
                                  a + p.begin);
          break;
        case 2:
          fused::panel<Scalar, 2>(p.depth, w + p.offset, v + p.depthBegin, bias + p.begin,
                                  a + p.begin);
          break;
        case 3:
          fused::panel<Scalar, 3>(p.depth, w + p.offset, v + p.depthBegin, bias + p.begin,
                                  a + p.begin);
          break;
        default:
          fused::panel<Scalar, 4>(p.depth, w + p.offset, v + p.depthBegin, bias + p.begin,
                                  a + p.begin);
          break;
      }
    }
    cell.fusedGates(a, hPrev, cPrev, h, c);
  }

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
