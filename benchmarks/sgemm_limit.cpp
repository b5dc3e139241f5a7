// The practical limit: the GEMMs of a recurrent layer alone, with nothing between them, for
// benchmarks/compare. For each shape (T, B, I, H) and G gates (LSTM 4, GRU 3):
//
//   infer   P = W_ih · X                  (G·H × I)·(I × T·B)     once
//           C_t = W_hh · H_t              (G·H × H)·(H × B)       for each of the T steps
//   train   the above, then
//           dH_t = W_hhᵀ · dA_t           (H × G·H)·(G·H × B)     for each of the T steps
//           dW_hh += dA · H_prevᵀ         (G·H × T·B)·(T·B × H)   once
//           dW_ih += dA · Xᵀ              (G·H × T·B)·(T·B × I)   once
//           dX = W_ihᵀ · dA               (I × G·H)·(G·H × T·B)   once
//
// which is 2·T·B·G·H·(I + H) flops forward and three times that for training: the count
// bench_sequence uses, so GFLOP/s here and there compare directly.
//
// Two backends (the "impl" of each JSON line):
//   sgemm            Eigen's own GEMM (`C.noalias() = A * B`), which repacks its operands at
//                    every call
//   sgemm_recurrent  the library's kernel (recurrent::detail::gemm), with the weights packed
//                    once outside the timed loop, as Sequence packs them once per call
// With N threads, each thread computes its share of the rows of every per-step product (whole
// kernel panels, as Sequence shares the hidden units) and the threads meet at a barrier after
// each step; the large products are split by columns. Eigen's own threading is switched off.
// With N > 1 the same products also run on one thread, and the faster is reported (its
// "threads_used"): the limit, like Sequence, may keep work too small to share on one thread.
//
//   sgemm_limit [--cells lstm,gru] [--modes infer,train] [--shapes T:B:I:H,...] [--threads N]
//               [--repetitions R] [--min-time S] [--max-time S]
#include "peer_timing.hpp"

#include <recurrent/detail/gemm.hpp>

#include <Eigen/Core>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <algorithm>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using Matrix = Eigen::MatrixXf;
using Index = Eigen::Index;
namespace rd = recurrent::detail;

/// Runs f(rank, size) on `threads` OpenMP threads (one without OpenMP).
template <typename F>
void team(int threads, F&& f) {
#ifdef _OPENMP
  if (threads > 1) {
#pragma omp parallel num_threads(threads)
    f(omp_get_thread_num(), omp_get_num_threads());
    return;
  }
#endif
  f(0, 1);
}

void barrier(int size) {
#ifdef _OPENMP
  if (size > 1) {
#pragma omp barrier
  }
#else
  (void)size;
#endif
}

/// Share [begin, end) of `count` items for thread `rank` of `size`, in pieces of `grain`.
void share(Index count, Index grain, int rank, int size, Index& begin, Index& end) {
  const Index pieces = (count + grain - 1) / grain;
  begin = std::min(count, pieces * rank / size * grain);
  end = std::min(count, pieces * (rank + 1) / size * grain);
}

/// The operands of one shape, and both backends' versions of every product.
class Products {
 public:
  Products(Index T, Index B, Index I, Index H, Index G, int threads)
      : m_T(T), m_B(B), m_I(I), m_H(H), m_G(G) {
    const Index GH = G * H, N = T * B;
    m_wih = Matrix::Random(GH, I) * 0.1f;
    m_whh = Matrix::Random(GH, H) * 0.1f;
    m_x = Matrix::Random(I, N);
    m_h = Matrix::Random(H, N);  // h_{t-1} of every step (the forward reads, backward H_prev)
    m_gates = Matrix::Zero(GH, N);
    m_dA = Matrix::Random(GH, N);
    m_dh = Matrix::Zero(H, N);
    m_dWih = Matrix::Zero(GH, I);
    m_dWhh = Matrix::Zero(GH, H);
    m_dx = Matrix::Zero(I, N);

    const rd::Blocks gated{G, H};
    m_packedIh.pack(rd::viewOf<const float>(m_wih.data(), m_wih.outerStride(), H), gated,
                    rd::Blocks{1, I});
    m_packedHh.pack(rd::viewOf<const float>(m_whh.data(), m_whh.outerStride(), H), gated,
                    rd::Blocks{1, H});
    m_packedIhT.pack(rd::transposedViewOf<const float>(m_wih.data(), m_wih.outerStride()),
                     rd::Blocks{1, I}, gated);
    m_packedHhT.pack(rd::transposedViewOf<const float>(m_whh.data(), m_whh.outerStride()),
                     rd::Blocks{1, H}, gated);
    m_buffers.resize(static_cast<std::size_t>(threads));
    for (rd::GemmBuffer<float>& b : m_buffers) {
      b.reserve(std::max({rd::GemmTraits<float>::NC, B, H, I}));
    }
  }

  /// Eigen's GEMM. Each thread computes rows [r0, r1) of every gate block of the per-step
  /// products (one product per gate block, so the thread's rows are contiguous).
  void eigen(bool training, int threads) {
    team(threads, [&](int rank, int size) {
      const Index N = m_T * m_B;
      Index c0, c1, u0, u1;
      share(N, 192, rank, size, c0, c1);
      m_gates.middleCols(c0, c1 - c0).noalias() = m_wih * m_x.middleCols(c0, c1 - c0);
      barrier(size);
      share(m_H, rd::GemmTraits<float>::MR, rank, size, u0, u1);
      const Index rows = u1 - u0;
      for (Index t = 0; t < m_T; ++t) {
        if (size == 1) {
          m_gates.middleCols(t * m_B, m_B).noalias() = m_whh * m_h.middleCols(t * m_B, m_B);
        } else {
          for (Index g = 0; g < m_G; ++g) {
            m_gates.block(g * m_H + u0, t * m_B, rows, m_B).noalias() =
                m_whh.middleRows(g * m_H + u0, rows) * m_h.middleCols(t * m_B, m_B);
          }
        }
        barrier(size);
      }
      if (!training) return;
      for (Index t = m_T - 1; t >= 0; --t) {
        m_dh.block(u0, t * m_B, rows, m_B).noalias() =
            m_whh.middleCols(u0, rows).transpose() * m_dA.middleCols(t * m_B, m_B);
        barrier(size);
      }
      for (Index g = 0; g < m_G; ++g) {
        m_dWhh.middleRows(g * m_H + u0, rows).noalias() +=
            m_dA.middleRows(g * m_H + u0, rows) * m_h.transpose();
        m_dWih.middleRows(g * m_H + u0, rows).noalias() +=
            m_dA.middleRows(g * m_H + u0, rows) * m_x.transpose();
      }
      m_dx.middleCols(c0, c1 - c0).noalias() = m_wih.transpose() * m_dA.middleCols(c0, c1 - c0);
    });
  }

  /// The library's kernel on the same products, the weights packed once (in the constructor).
  void kernel(bool training, int threads) {
    team(threads, [&](int rank, int size) {
      rd::GemmBuffer<float>& buffer = m_buffers[static_cast<std::size_t>(rank)];
      const Index N = m_T * m_B;
      Index c0, c1, u0, u1;
      share(N, rd::GemmTraits<float>::NC, rank, size, c0, c1);
      const rd::View<float> gates = rd::viewOf<float>(m_gates.data(), m_gates.outerStride(), m_H);
      const rd::View<const float> x = rd::viewOf<const float>(m_x.data(), m_x.outerStride());
      rd::gemmColumns(rd::Product<float>(m_packedIh, x, gates, N).overwrite(), c0, c1, buffer);
      barrier(size);
      share(m_H, rd::GemmTraits<float>::MR, rank, size, u0, u1);
      for (Index t = 0; t < m_T; ++t) {
        rd::View<const float> h = rd::viewOf<const float>(m_h.data(), m_h.outerStride());
        rd::View<float> c = gates;
        h.data += t * m_B * h.ld;
        c.data += t * m_B * c.ld;
        rd::gemm(rd::Product<float>(m_packedHh, h, c, m_B).units(u0, u1).overwrite(), buffer);
        barrier(size);
      }
      if (!training) return;
      const rd::View<const float> dA =
          rd::viewOf<const float>(m_dA.data(), m_dA.outerStride(), m_H);
      for (Index t = m_T - 1; t >= 0; --t) {
        rd::View<const float> dAt = dA;
        rd::View<float> dh = rd::viewOf<float>(m_dh.data(), m_dh.outerStride());
        dAt.data += t * m_B * dAt.ld;
        dh.data += t * m_B * dh.ld;
        rd::gemm(rd::Product<float>(m_packedHhT, dAt, dh, m_B).units(u0, u1).overwrite(), buffer);
        barrier(size);
      }
      const rd::Blocks gated{m_G, m_H};
      const auto hT = rd::transposedViewOf<const float>(m_h.data(), m_h.outerStride());
      const auto dWhh = rd::viewOf<float>(m_dWhh.data(), m_dWhh.outerStride(), m_H);
      rd::gemmUnpacked(rd::UnpackedProduct<float>(dA, gated, N, hT, dWhh, m_H).units(u0, u1),
                       buffer);
      const auto xT = rd::transposedViewOf<const float>(m_x.data(), m_x.outerStride());
      const auto dWih = rd::viewOf<float>(m_dWih.data(), m_dWih.outerStride(), m_H);
      rd::gemmUnpacked(rd::UnpackedProduct<float>(dA, gated, N, xT, dWih, m_I).units(u0, u1),
                       buffer);
      const auto dx = rd::viewOf<float>(m_dx.data(), m_dx.outerStride());
      rd::gemmColumns(rd::Product<float>(m_packedIhT, dA, dx, N).overwrite(), c0, c1, buffer);
    });
  }

 private:
  Index m_T, m_B, m_I, m_H, m_G;
  Matrix m_wih, m_whh, m_x, m_h, m_gates, m_dA, m_dh, m_dWih, m_dWhh, m_dx;
  rd::PackedMatrix<float> m_packedIh, m_packedHh, m_packedIhT, m_packedHhT;
  std::vector<rd::GemmBuffer<float>> m_buffers;
};

}  // namespace

int main(int argc, char** argv) {
  try {
    const peer::Options o = peer::parse(argc, argv);
    Eigen::setNbThreads(1);  // threads come from the row split above, not from Eigen
    std::printf(
        "{\"config\": {\"impl\": \"sgemm\", \"eigen\": \"%d.%d.%d\", \"simd\": \"%s\", "
        "\"threads\": %d}}\n",
        EIGEN_WORLD_VERSION, EIGEN_MAJOR_VERSION, EIGEN_MINOR_VERSION,
        Eigen::SimdInstructionSetsInUse(), o.threads);
    std::fflush(stdout);
    for (const std::string& cell : o.cells) {
      if (cell != "lstm" && cell != "gru") {
        throw std::invalid_argument("unknown cell " + cell + " (lstm, gru)");
      }
      const Index G = cell == "lstm" ? 4 : 3;
      for (const std::string& mode : o.modes) {
        if (mode == "step") continue;  // one step of one sequence is no GEMM
        if (mode != "infer" && mode != "train") {
          throw std::invalid_argument("unknown mode " + mode + " (infer, train)");
        }
        const bool training = mode == "train";
        for (const peer::Shape& s : o.shapes) {
          Products products(s.T, s.B, s.I, s.H, G, o.threads);
          const double flops = 2.0 * double(s.T) * double(s.B) * double(G) * double(s.H) *
                               double(s.I + s.H) * (training ? 3 : 1);
          for (const std::string impl : {"sgemm", "sgemm_recurrent"}) {
            const bool eigen = impl == "sgemm";
            // With N threads, the better of N and 1: the limit may keep small work on one
            // thread, as Sequence does.
            peer::Timing best{0, 0, 0};
            int used = 0;
            const std::vector<int> counts =
                o.threads > 1 ? std::vector<int>{o.threads, 1} : std::vector<int>{1};
            for (int threads : counts) {
              const peer::Timing t = peer::measure(
                  [&] {
                    if (eigen) {
                      products.eigen(training, threads);
                    } else {
                      products.kernel(training, threads);
                    }
                  },
                  o);
              if (used == 0 || t.medianMs < best.medianMs) {
                best = t;
                used = threads;
              }
            }
            std::printf(
                "{\"impl\": \"%s\", \"cell\": \"%s\", \"mode\": \"%s\", \"T\": %lld, \"B\": %lld, "
                "\"I\": %lld, \"H\": %lld, \"threads\": %d, \"threads_used\": %d, "
                "\"lengths\": \"full\", \"median_ms\": %.6g, \"gflops\": %.4g, "
                "\"iterations\": %ld, \"repetitions\": %d}\n",
                impl.c_str(), cell.c_str(), mode.c_str(), s.T, s.B, s.I, s.H, o.threads, used,
                best.medianMs, flops / (best.medianMs * 1e6), best.iterations, best.repetitions);
            std::fflush(stdout);
          }
        }
      }
    }
  } catch (const std::exception& e) {
    std::printf("{\"error\": \"%s\"}\n", e.what());
    return 1;
  }
  return 0;
}
