// recurrent — detail/fused_product.hpp: how a cell's weights form the one product of a fused step.
//
// The fused step (fused_step.hpp) computes a whole step of one sequence as A = F · [x; h] + b_F
// followed by the cell's gate math on A (Cell::fusedGates). A cell names the layout of F it needs
// (Cell::FusedProduct, one of the types below, or void for none); the layout says how many row
// blocks of H rows A has, which part of the depth [x; h] each block reads (so that zero blocks
// are never multiplied), and how F and b_F are built from the cell's parameters.
#pragma once

#include <Eigen/Core>

namespace recurrent {
namespace detail {
namespace fused {

/// F = [W_ih W_hh], b_F = b_ih + b_hh: each of the G gate blocks reads all of [x; h]. The LSTM
/// (G = 4: A = [A_i; A_f; A_g; A_o]) and the plain RNN (G = 1).
template <int G>
struct Concatenated {
  static constexpr int kBlocks = G;
  static constexpr int depthBegin(int /*block*/, int /*I*/) { return 0; }
  static constexpr int depthEnd(int /*block*/, int I, int H) { return I + H; }

  /// Writes F (G·H × (I + H)) and b_F (G·H).
  template <typename Parameters, typename Matrix, typename Vector>
  static void build(const Parameters& p, Eigen::Index I, Eigen::Index H, Matrix& f, Vector& b) {
    f.resize(G * H, I + H);
    f << p.weight_ih, p.weight_hh;
    b = p.bias_ih + p.bias_hh;
  }
};

/// The reset-after GRU: the candidate's input and recurrent halves are separate row blocks,
/// because r multiplies only the recurrent one (n = tanh(A_nx + r ⊙ m)):
///
///     A = [A_r; A_z; A_nx; m],   F = [W_ir W_hr]   b_F = [b_ir + b_hr]
///                                    [W_iz W_hz]         [b_iz + b_hz]
///                                    [W_in  0  ]         [b_in       ]
///                                    [ 0   W_hn]         [b_hn       ]
///
/// Block 2 reads only x, block 3 only h.
struct SplitCandidate {
  static constexpr int kBlocks = 4;
  static constexpr int depthBegin(int block, int I) { return block == 3 ? I : 0; }
  static constexpr int depthEnd(int block, int I, int H) { return block == 2 ? I : I + H; }

  /// Writes F (4H × (I + H)) and b_F (4H).
  template <typename Parameters, typename Matrix, typename Vector>
  static void build(const Parameters& p, Eigen::Index I, Eigen::Index H, Matrix& f, Vector& b) {
    f.setZero(kBlocks * H, I + H);
    f.topLeftCorner(3 * H, I) = p.weight_ih;
    f.block(0, I, 2 * H, H) = p.weight_hh.topRows(2 * H);
    f.block(3 * H, I, H, H) = p.weight_hh.bottomRows(H);
    b.resize(kBlocks * H);
    b.head(2 * H) = p.bias_ih.head(2 * H) + p.bias_hh.head(2 * H);
    b.segment(2 * H, H) = p.bias_ih.tail(H);
    b.tail(H) = p.bias_hh.tail(H);
  }
};

}  // namespace fused
}  // namespace detail
}  // namespace recurrent
