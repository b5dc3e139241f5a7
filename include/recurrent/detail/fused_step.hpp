// recurrent — fused_step.hpp: one step of one sequence of a fixed-size cell, as one product.
//
// A cell whose sizes I and H are compile-time constants (LSTMCell<float, 8, 16>, ...) runs a
// Stream step of one sequence as
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
// at compile time from Cell::fusedDepthBegin/End. Every loop bound is a compile-time constant,
// so the compiler unrolls the small products completely and keeps the accumulators in
// registers; a step allocates nothing.
//
// The gate math is the cell's own (the same σ and tanh on the same packet-sized chunks as the
// run-time-sized cell). The product sums each row of F·v in one pass with its own order and
// interleaving, where the batched path sums W_ih·x and W_hh·h separately: results agree with a
// run-time-sized cell to float rounding, not bit for bit.
#pragma once

#include <recurrent/detail/gemm.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <array>
#include <type_traits>
#include <utility>

namespace recurrent {
namespace detail {

/// Whether Stream<Cell> can run the fused step: the cell offers it and both sizes are fixed.
template <typename Cell, typename = void>
struct HasFusedStep : std::false_type {};
template <typename Cell>
struct HasFusedStep<Cell, std::void_t<decltype(Cell::kFusedStep)>>
    : std::integral_constant<bool, Cell::kFusedStep && Cell::kInputSize != Eigen::Dynamic &&
                                       Cell::kHiddenSize != Eigen::Dynamic> {};

/// Stands in for FusedStep where a cell has none.
struct NoFusedStep {};

template <typename Cell>
class FusedStep {
 public:
  using Scalar = typename Cell::Scalar;
  using Packet = typename GemmTraits<Scalar>::Packet;

  static constexpr int P = GemmTraits<Scalar>::P;  ///< scalars per packet
  static constexpr int I = Cell::kInputSize;
  static constexpr int H = Cell::kHiddenSize;
  static constexpr int K = I + H;                   ///< depth: [x; h]
  static constexpr int R = Cell::kFusedBlocks * H;  ///< rows of A
  static constexpr int RP = (R + P - 1) / P * P;    ///< rows padded to whole packets
  static constexpr int kPanelPackets = 4;           ///< packets of rows per panel
  static constexpr int kPanelRows = kPanelPackets * P;
  static constexpr int kPanels = (RP + kPanelRows - 1) / kPanelRows;

  /// Packs the cell's current parameters (allocates: call it outside the real-time loop).
  void pack(const Cell& cell) {
    typename Cell::Matrix f;
    typename Cell::Vector b;
    cell.fusedProduct(f, b);
    m_weights.resize(offset(kPanels));
    for (int p = 0; p < kPanels; ++p) {
      const int r0 = panelBegin(p), rows = panelRows(p), kb = depthBegin(p), ke = depthEnd(p);
      Scalar* dst = m_weights.data() + offset(p);
      for (int k = kb; k < ke; ++k) {
        for (int r = 0; r < rows; ++r) {
          dst[(k - kb) * rows + r] = r0 + r < R ? f(r0 + r, k) : Scalar(0);
        }
      }
    }
    for (int r = 0; r < RP; ++r) m_bias[static_cast<std::size_t>(r)] = r < R ? b[r] : Scalar(0);
  }

  /// One step of one sequence: x (I), hPrev, cPrev (H each; cPrev only for a cell state) in,
  /// h and c (H each) out. The outputs must not overlap the inputs.
  void step(const Cell& cell, const Scalar* x, const Scalar* hPrev, const Scalar* cPrev, Scalar* h,
            Scalar* c) {
    for (int k = 0; k < I; ++k) m_v[static_cast<std::size_t>(k)] = x[k];
    for (int k = 0; k < H; ++k) m_v[static_cast<std::size_t>(I + k)] = hPrev[k];
    product(std::make_integer_sequence<int, kPanels>());
    cell.fusedGates(m_a.data(), hPrev, cPrev, h, c);
  }

 private:
  static constexpr int panelBegin(int p) { return p * kPanelRows; }
  static constexpr int panelRows(int p) { return std::min(kPanelRows, RP - p * kPanelRows); }
  /// The depth a panel reads: the hull of its row blocks' ranges (padding rows read nothing).
  static constexpr int firstBlock(int p) { return panelBegin(p) / H; }
  static constexpr int lastBlock(int p) {
    return (std::min(R, panelBegin(p) + panelRows(p)) - 1) / H;
  }
  static constexpr int depthBegin(int p) {
    int begin = K;
    for (int b = firstBlock(p); b <= lastBlock(p); ++b) {
      begin = std::min(begin, Cell::fusedDepthBegin(b, I));
    }
    return begin;
  }
  static constexpr int depthEnd(int p) {
    int end = 0;
    for (int b = firstBlock(p); b <= lastBlock(p); ++b) {
      end = std::max(end, Cell::fusedDepthEnd(b, I, H));
    }
    return end;
  }
  /// Where panel p starts in the packed weights (panel kPanels: their total size).
  static constexpr int offset(int p) {
    int size = 0;
    for (int q = 0; q < p; ++q) size += panelRows(q) * (depthEnd(q) - depthBegin(q));
    return size;
  }
  /// Independent accumulator sets over the depth, so that the FMA latency is hidden and several
  /// loads are in flight: sixteen accumulators in all where there are 32 vector registers (AVX-512;
  /// measured on Zen 5 against 8, and against panels of 2 and 8 packets), else eight.
  static constexpr int unroll(int packets, int depth) {
    constexpr int accumulators = EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS >= 32 ? 16 : 8;
    return std::max(1, std::min(depth, accumulators / packets));
  }

  template <int... p>
  EIGEN_ALWAYS_INLINE void product(std::integer_sequence<int, p...>) {
    (panel<p>(), ...);
  }

  /// A[panel rows] = F[panel rows, depth] · v[depth] + b_F[panel rows].
  template <int p>
  EIGEN_ALWAYS_INLINE void panel() {
    constexpr int r0 = panelBegin(p), rows = panelRows(p), kb = depthBegin(p);
    constexpr int NP = rows / P, depth = depthEnd(p) - kb, KU = unroll(NP, depth);
    constexpr int main = depth / KU * KU;  // the depth in whole groups of KU
    constexpr std::size_t kU = KU, kP = NP;
    const Scalar* w = m_weights.data() + offset(p);
    const Scalar* v = m_v.data() + kb;
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
      sum = Eigen::internal::padd(sum, Eigen::internal::pload<Packet>(m_bias.data() + r0 + i * P));
      Eigen::internal::pstore(m_a.data() + r0 + i * P, sum);
    }
  }

  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> m_weights;        ///< F in panels (aligned by Eigen)
  alignas(64) std::array<Scalar, std::size_t(RP)> m_bias{};  ///< b_F, padded
  alignas(64) std::array<Scalar, std::size_t(RP)> m_a{};  ///< A, then the cell's gate activations
  alignas(64) std::array<Scalar, std::size_t(K)> m_v{};   ///< [x; h]
};

}  // namespace detail
}  // namespace recurrent
