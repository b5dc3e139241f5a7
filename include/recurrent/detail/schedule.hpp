// recurrent — detail/schedule.hpp: a batch of variable-length sequences as packed columns.
//
// The batch is ordered by length once (longest first, ties in batch order). The sequences still
// running at step t are then the first n_t sorted columns, and every step's active columns can
// be stored side by side: step t occupies the packed columns [offset_t, offset_t + n_t), N = Σ
// lengths in all (PyTorch's PackedSequence layout). Work in that layout is proportional to N,
// not to T·B; when every length is T the packed layout is the caller's own.
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <cstddef>
#include <vector>

namespace recurrent {
namespace detail {

class Schedule {
 public:
  using Index = Eigen::Index;

  /// Orders a batch of B = lengths.size() sequences of T steps by length (an in-place sort: no
  /// allocation after the first call of a size). With `offsets`, also lists each step's first
  /// packed column (one index per step); without, nothing is kept per step.
  void plan(const std::vector<int>& lengths, Index T, bool offsets) {
    const Index B = static_cast<Index>(lengths.size());
    m_T = T;
    m_B = B;
    m_order.resize(static_cast<std::size_t>(B));
    for (Index b = 0; b < B; ++b) m_order[static_cast<std::size_t>(b)] = b;
    std::sort(m_order.begin(), m_order.end(), [&lengths](Index a, Index b) {
      const int la = lengths[static_cast<std::size_t>(a)],
                lb = lengths[static_cast<std::size_t>(b)];
      return la != lb ? la > lb : a < b;
    });
    m_sorted.resize(static_cast<std::size_t>(B));
    m_N = 0;
    for (Index j = 0; j < B; ++j) {
      m_sorted[static_cast<std::size_t>(j)] = lengths[static_cast<std::size_t>(order(j))];
      m_N += m_sorted[static_cast<std::size_t>(j)];
    }
    m_full = (m_N == T * B);
    if (offsets) {
      m_offset.resize(static_cast<std::size_t>(T + 1));
      m_offset[0] = 0;
      for (Index t = 0; t < T; ++t) {
        m_offset[static_cast<std::size_t>(t + 1)] =
            m_offset[static_cast<std::size_t>(t)] + active(t);
      }
    }
  }

  Index steps() const { return m_T; }    ///< T
  Index batch() const { return m_B; }    ///< B
  Index columns() const { return m_N; }  ///< N = Σ lengths
  /// Whether every length is T: the packed layout is then the caller's own.
  bool full() const { return m_full; }

  /// n_t: the sequences still running at step t, the first n_t sorted columns.
  Index active(Index t) const {
    return std::partition_point(m_sorted.begin(), m_sorted.end(),
                                [t](int len) { return len > t; }) -
           m_sorted.begin();
  }
  /// The first packed column of step t (planned with offsets).
  Index offset(Index t) const { return m_offset[static_cast<std::size_t>(t)]; }
  /// The caller's index of the j-th sequence in length order.
  Index order(Index j) const { return m_order[static_cast<std::size_t>(j)]; }
  /// The length of the j-th sequence in length order.
  Index length(Index j) const { return m_sorted[static_cast<std::size_t>(j)]; }

  /// Copies the active columns of steps [t0, t1) of x (the caller's T·B layout) into `packed`,
  /// counting packed columns from step t0; only the packed columns [c0, c1) are written.
  template <typename In, typename Out>
  void gather(const In& x, Index t0, Index t1, Index c0, Index c1, Out& packed) const {
    Index col = 0;
    for (Index t = t0; t < t1 && col < c1; ++t) {
      for (Index j = 0; j < active(t); ++j, ++col) {
        if (col >= c0 && col < c1) packed.col(col) = x.col(t * m_B + order(j));
      }
    }
  }

 private:
  Index m_T = 0, m_B = 0, m_N = 0;
  bool m_full = false;
  std::vector<Index> m_order, m_offset;
  std::vector<int> m_sorted;
};

}  // namespace detail
}  // namespace recurrent
