// recurrent — detail/reduced_step.hpp: the fused step of one sequence in int8 or bf16.
//
// A Stream of one sequence in a reduced precision runs each step as the float fused step does
// (fused_step.hpp): A = F · [x; h] + b_F, then the cell's gate math on A (Cell::fusedGates). F's
// two column halves are ReducedMatrix (reduced_matrix.hpp) of their own:
//
//     X = F's x-part, the row blocks that read x       A_b = (b_b + X_b · x) + R_b · h
//     R = F's h-part, the row blocks that read h
//
// (the reset-after GRU's candidate halves read one side each: X has its blocks r, z, n_x and R its
// blocks r, z, m). x and h are quantized separately, each with its own scale and zero point, and
// X's and R's rows have their own scales, exactly as Sequence quantizes W_ih·x and W_hh·h (and as
// PyTorch's dynamic quantization does): the codes and the int32 sums are Sequence's. What the
// step saves against the batched kernel's two products is their second pass over A and the
// calls around them; a panel of A is written once, from the register. In bf16, where AMX is
// targeted and granted and h is 128 deep or more, the panels are summed on the tiles, four at a
// time over one column (tileProduct, reduced_amx.hpp's columnSums).
#pragma once

#include <recurrent/detail/cpu.hpp>
#include <recurrent/detail/fused_step.hpp>
#include <recurrent/detail/reduced_kernel.hpp>
#include <recurrent/precision.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <array>
#include <cstdint>
#include <type_traits>

namespace recurrent {
namespace detail {

/// The reduced-precision step of one sequence of a cell that names a fused product.
template <typename Cell>
class ReducedFusedStep {
 public:
  using Scalar = typename Cell::Scalar;
  using Fused = typename FusedProductOf<Cell>::type;
  static constexpr int kBlocks = Fused::kBlocks;
  /// For each of A's blocks, a part's block that it reads, or −1.
  using BlockMap = std::array<int, std::size_t(kBlocks)>;

  /// Packs the cell's current parameters in `precision` (Int8 or BF16; allocates).
  void pack(const Cell& cell, Precision precision) {
    typename Cell::Matrix f;
    typename Cell::Vector b;
    fused::buildProduct(cell, f, b);
    const Index I = cell.inputSize(), H = cell.hiddenSize();
    // Each part: the rows of the blocks that read it, from its columns of F; source[b] is the
    // part's block that A's block b reads, or −1.
    const auto part = [&](bool input, ReducedMatrix& m, BlockMap& source) {
      Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> rows(kBlocks * H, input ? I : H);
      int count = 0;
      for (int block = 0; block < kBlocks; ++block) {
        const bool reads = input ? Fused::depthBegin(block, int(I)) < I
                                 : Fused::depthEnd(block, int(I), int(H)) > I;
        source[std::size_t(block)] = reads ? count : -1;
        if (!reads) continue;
        rows.middleRows(count * H, H) = f.block(block * H, input ? 0 : I, H, rows.cols());
        ++count;
      }
      m.pack(viewOf<const Scalar>(rows.data(), rows.rows(), H), Blocks{count, H}, rows.cols(),
             precision);
    };
    part(true, m_x, m_xBlock);
    part(false, m_r, m_rBlock);
    m_hiddenSize = H;
    m_bias = b;
    m_a.setZero(kBlocks * H);
    // x's codes, then h's, each padded to its part's depth group.
    m_hCodes = m_x.paddedDepth();
    const auto codes = static_cast<std::size_t>(m_x.paddedDepth() + m_r.paddedDepth());
    m_buffer.int8.assign(codes, 0);
    m_buffer.bf16.assign(codes, 0);
    m_buffer.scale.assign(2, 1.0f);
    m_buffer.zero.assign(2, 0);
    // Two panels sharing each broadcast run eight chains and save a load per group, which pays
    // where the weights stay in L1 from step to step, beside the codes, A and the state (a
    // quarter of L1 left for them, and for int8's row scales and sums, 8 bytes a row, which are
    // not counted); from L2 the single sequential stream is faster (measured:
    // benchmarks/README.md, the reduced fused step). Elsewhere than the AVX-512 float kernels a
    // pair runs as two panels one after the other.
    const Index codeBytes = precision == Precision::Int8 ? 1 : 2;
    const Index weightBytes =
        codeBytes * (m_x.rowBlocks().count * m_x.packedBlockRows() * m_x.paddedDepth() +
                     m_r.rowBlocks().count * m_r.packedBlockRows() * m_r.paddedDepth());
    m_pairs = 4 * weightBytes <= 3 * l1DataCacheBytes();
#if defined(RECURRENT_AMX)
    // bf16 on the tiles where h's depth fills four of their chunks (128): a tile product of one
    // column (3.2 ns measured) does 512 multiply-adds in the time of about 5 vdpbf16ps, 170;
    // int8's does 1024 in the time of about 21 vpdpbusd, 1340, so int8 stays on the vectors.
    // At a depth of 64 the tiles gained nothing (benchmarks/README.md).
    m_amx = std::is_same_v<Scalar, float> && precision == Precision::BF16 &&
            m_r.paddedDepth() / depthGroup(precision) >= 4 * amx::kChunkGroups && amx::available();
#endif
  }

  /// One step: x (I), hPrev, cPrev (H each; cPrev only for a cell state) in, h and c out.
  void step(const Cell& cell, const Scalar* x, const Scalar* hPrev, const Scalar* cPrev, Scalar* h,
            Scalar* c) {
    const Precision precision = m_x.precision();
    const Index G = depthGroup(precision);
    quantizeColumn(x, m_x.depth(), m_x.paddedDepth(), precision, m_buffer, 0, 0, G);
    quantizeColumn(hPrev, m_r.depth(), m_r.paddedDepth(), precision, m_buffer, 1, m_hCodes, G);
    // X's panels, then R's: A = (b + X·x) + R·h, the order of the batched kernel's products.
#if defined(RECURRENT_AMX)
    if constexpr (std::is_same_v<Scalar, float>) {
      if (m_amx) {
        const amx::Configuration configuration(1);
        tileProduct(m_x, m_xBlock, 0, 0, false);
        tileProduct(m_r, m_rBlock, m_hCodes, 1, true);
        cell.fusedGates(m_a.data(), hPrev, cPrev, h, c);
        return;
      }
    }
#endif
    product(m_x, m_xBlock, 0, 0, false);
    product(m_r, m_rBlock, m_hCodes, 1, true);
    cell.fusedGates(m_a.data(), hPrev, cPrev, h, c);
  }

 private:
  /// A (+)= m · buffer column j, whose codes start at `codes`, in the blocks of A that read m
  /// (source[b], m's block, ≥ 0): onto the bias, or, when `adding`, onto what X's pass wrote
  /// where A's block reads X too.
  void product(const ReducedMatrix& m, const BlockMap& source, Index codes, Index j, bool adding) {
    const Index panels = (m_hiddenSize + kPanelRows - 1) / kPanelRows;
    for (int block = 0; block < kBlocks; ++block) {
      const int mb = source[std::size_t(block)];
      if (mb < 0) continue;
      const bool onBias = !adding || m_xBlock[std::size_t(block)] < 0;
      Index p = 0;
      if (m_pairs) {
        for (; p + 2 <= panels; p += 2) writePanels<2>(m, mb, p, block, onBias, codes, j);
      }
      for (; p < panels; ++p) writePanels<1>(m, mb, p, block, onBias, codes, j);
    }
  }

#if defined(RECURRENT_AMX)
  /// Up to four panels of one of A's blocks, for tileProduct.
  struct TileJob {
    reduced::Panel panel[4];
    int count;
    Index block;
    bool onBias;
  };

  /// product() on the AMX tiles (a Configuration of one column loaded): four panels at a time
  /// summed over the depth's whole chunks by the tile unit, the rest of the depth and the
  /// scaling by amxValues, A's rows written as writePanels writes them. The jobs are pipelined
  /// over two stores of sums, as amxGemm's: a job's values are read while the next job's tile
  /// products run.
  void tileProduct(const ReducedMatrix& m, const BlockMap& source, Index codes, Index j,
                   bool adding) {
    // bf16 only (pack() sets m_amx for BF16 alone): no row scales or sums to apply.
    const Index H = m_hiddenSize, panels = (H + kPanelRows - 1) / kPanelRows;
    const Index chunks = m.paddedDepth() / 2 / amx::kChunkGroups;
    const std::uint16_t* x = m_buffer.bf16.data() + codes;
    float* a = m_a.data();
    const float* bias = m_bias.data();
    alignas(64) std::uint8_t sums[2][4 * 64];
    const auto finish = [&](const TileJob& job, const std::uint8_t* jobSums) {
      for (int q = 0; q < job.count; ++q) {
        const reduced::Panel& panel = job.panel[q];
        const __m512 v = reduced::amxValues(m, panel, m_buffer, x, j, jobSums + q * 64,
                                            chunks * amx::kChunkGroups, _mm512_setzero_ps(),
                                            _mm512_setzero_si512());
        const __mmask16 rows = reduced::rowMask(panel);
        const Index at = job.block * H + panel.unit;
        reduced::writePanel(v, a + at, job.onBias, true, _mm512_maskz_loadu_ps(rows, bias + at),
                            rows);
      }
    };
    TileJob pending{};
    bool hasPending = false;
    int slot = 0;
    for (int block = 0; block < kBlocks; ++block) {
      const int mb = source[std::size_t(block)];
      if (mb < 0) continue;
      for (Index p = 0; p < panels; p += 4) {
        TileJob job{};
        job.count = static_cast<int>(std::min<Index>(4, panels - p));
        job.block = block;
        job.onBias = !adding || m_xBlock[std::size_t(block)] < 0;
        const void* w[4];
        for (int q = 0; q < job.count; ++q) {
          const Index unit = (p + q) * kPanelRows;
          job.panel[q] = reduced::Panel{mb, unit, 0, std::min<Index>(kPanelRows, H - unit)};
          w[q] = m.bf16Panel(mb, unit);
        }
        withCount<4>(job.count, [&](auto np) {
          amx::columnSums<decltype(np)::value>(x, w, chunks, sums[slot]);
        });
        if (hasPending) finish(pending, sums[1 - slot]);
        pending = job;
        hasPending = true;
        slot = 1 - slot;
      }
    }
    if (hasPending) finish(pending, sums[1 - slot]);
  }
#endif

  /// A's rows of panels [p, p + NP) of m's block mb, which are A's block `block`: the bias (or A)
  /// + m · buffer column j, whose codes start at `codes`.
  template <int NP>
  EIGEN_ALWAYS_INLINE void writePanels(const ReducedMatrix& m, Index mb, Index p, Index block,
                                       bool onBias, Index codes, Index j) {
    const Index H = m_hiddenSize;
    reduced::Panel panels[std::size_t(NP)];
    RECURRENT_UNROLL
    for (int q = 0; q < NP; ++q) {
      const Index unit = (p + q) * kPanelRows;
      panels[q] = reduced::Panel{mb, unit, 0, std::min<Index>(kPanelRows, H - unit)};
    }
    Scalar* a = m_a.data();
    const Scalar* bias = m_bias.data();
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<Scalar, float>) {
      const bool int8 = m.precision() == Precision::Int8;
      const __m512 scale = _mm512_set1_ps(int8 ? m_buffer.scale[std::size_t(j)] : 0.0f);
      const __m512i zero = _mm512_set1_epi32(int8 ? m_buffer.zero[std::size_t(j)] : 0);
      __m512 v[std::size_t(NP)];
      reduced::columnPanels<NP>(m, panels, m_buffer, codes, zero, scale, v);
      RECURRENT_UNROLL
      for (int q = 0; q < NP; ++q) {
        const __mmask16 rows = reduced::rowMask(panels[q]);
        const Index at = block * H + panels[q].unit;
        reduced::writePanel(v[q], a + at, onBias, true, _mm512_maskz_loadu_ps(rows, bias + at),
                            rows);
      }
      return;
    }
#endif
    for (int q = 0; q < NP; ++q) {
      float v[kPanelRows];
      panelValues(m, panels[q], codes, j, v);
      const Index at = block * H + panels[q].unit;
      const Scalar* base = onBias ? bias : a;
      for (Index r = 0; r < panels[q].last; ++r) {
        a[at + r] = base[at + r] + static_cast<Scalar>(v[r]);
      }
    }
  }

  /// The 16 values of a panel of `m` times buffer column j, whose codes start at `codes`:
  /// tile()'s operations, one panel and one column.
  void panelValues(const ReducedMatrix& m, const reduced::Panel& panel, Index codes, Index j,
                   float* v) const {
    const Index ld = m.paddedDepth(), block = panel.block, unit = panel.unit;
    if (m.precision() == Precision::Int8) {
      alignas(64) std::int32_t sums[kPanelRows];
      const std::int8_t* w = m.int8Panel(block, unit);
      int8Kernel<1, 1>(ld / 4, &w, m_buffer.int8.data() + codes, sums);
      const float* scale = m.scales(block, unit);
      const std::int32_t* rowSum = m.rowSums(block, unit);
      for (int r = 0; r < kPanelRows; ++r) {
        v[r] = reduced::dequantize(sums[r], m_buffer.zero[std::size_t(j)], rowSum[r], scale[r],
                                   m_buffer.scale[std::size_t(j)]);
      }
    } else {
      const std::uint16_t* w = m.bf16Panel(block, unit);
      bf16Kernel<1, 1>(ld / 2, &w, m_buffer.bf16.data() + codes, v);
    }
  }

  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  ReducedMatrix m_x, m_r;
  BlockMap m_xBlock{}, m_rBlock{};  ///< X's, R's block of A's block b, or −1
  Index m_hiddenSize = 0;
  Index m_hCodes = 0;    ///< where h's codes start in the buffer
  bool m_pairs = false;  ///< whether two panels share each broadcast (weights that fit in L1)
#if defined(RECURRENT_AMX)
  bool m_amx = false;  ///< whether the step runs on the AMX tiles
#endif
  ReducedBuffer m_buffer;  ///< x's codes (column 0), then h's (column 1)
  Vector m_bias, m_a;      // aligned by Eigen
};

}  // namespace detail
}  // namespace recurrent
