// recurrent — train/batch_share.hpp: a batch of sequences split over processes by length.
#pragma once

#include <recurrent/detail/errors.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cstddef>
#include <vector>

namespace recurrent {

/// The sequences (indices into `lengths`, ascending) that process `rank` of `size` takes of a
/// batch, so that every process gets a near-equal share of the total length: the longest
/// sequence first, each to the process with the least length so far (the lowest rank on a tie).
/// No two processes' totals differ by more than the longest sequence. Every process computes
/// the same split from the same lengths. A process gets none when B < size; it then takes part
/// with weight 0 (DataParallel::averageGradients). Throws unless 0 <= rank < size and every
/// length is at least 1.
inline std::vector<int> shareOfBatch(const std::vector<int>& lengths, int rank, int size) {
  if (size < 1 || rank < 0 || rank >= size) {
    detail::fail("shareOfBatch: rank must be in 0..size-1 with size >= 1, got rank ", rank, " of ",
                 size);
  }
  std::vector<int> order(lengths.size());
  for (std::size_t b = 0; b < lengths.size(); ++b) {
    if (lengths[b] < 1) {
      detail::fail("shareOfBatch: every length must be at least 1, got ", lengths[b], " at ", b);
    }
    order[b] = static_cast<int>(b);
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return lengths[std::size_t(a)] > lengths[std::size_t(b)]; });
  std::vector<long long> load(static_cast<std::size_t>(size), 0);
  std::vector<int> mine;
  for (int b : order) {
    const auto least = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());
    load[static_cast<std::size_t>(least)] += lengths[static_cast<std::size_t>(b)];
    if (least == rank) mine.push_back(b);
  }
  std::sort(mine.begin(), mine.end());
  return mine;
}

/// The columns of the sequences `indices` of a batch in the Sequence layout (column t·B + b of
/// `x`, B = batch), as a batch of indices.size() sequences in the same layout and order. Throws
/// unless x has a multiple of B columns and every index is in 0..B-1.
template <typename Derived>
Eigen::Matrix<typename Derived::Scalar, Eigen::Dynamic, Eigen::Dynamic> selectSequences(
    const Eigen::MatrixBase<Derived>& x, Eigen::Index batch, const std::vector<int>& indices) {
  if (batch < 1 || x.cols() % batch != 0) {
    detail::fail("selectSequences: x must have T x B columns for B = ", batch, ", got ", x.cols());
  }
  const Eigen::Index T = x.cols() / batch;
  const auto b = static_cast<Eigen::Index>(indices.size());
  for (int k : indices) {
    if (k < 0 || k >= batch) {
      detail::fail("selectSequences: every index must be in 0..", batch - 1, ", got ", k);
    }
  }
  Eigen::Matrix<typename Derived::Scalar, Eigen::Dynamic, Eigen::Dynamic> out(x.rows(), T * b);
  for (Eigen::Index t = 0; t < T; ++t) {
    for (Eigen::Index j = 0; j < b; ++j) {
      out.col(t * b + j) = x.col(t * batch + indices[static_cast<std::size_t>(j)]);
    }
  }
  return out;
}

/// The elements of `v` at `indices`, in that order (the lengths of a share of a batch).
inline std::vector<int> selectLengths(const std::vector<int>& v, const std::vector<int>& indices) {
  std::vector<int> out;
  out.reserve(indices.size());
  for (int k : indices) {
    if (k < 0 || static_cast<std::size_t>(k) >= v.size()) {
      detail::fail("selectLengths: index ", k, " is not in 0..", v.size(), " - 1");
    }
    out.push_back(v[static_cast<std::size_t>(k)]);
  }
  return out;
}

}  // namespace recurrent
