// recurrent — detail/mpi.hpp: what DataParallel (train/distributed.hpp) needs of MPI, and the
// layout of its buckets.
#pragma once

#include <recurrent/detail/errors.hpp>

#include <mpi.h>

#include <Eigen/Core>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace recurrent {
namespace detail {

template <typename Scalar>
MPI_Datatype mpiType() {
  static_assert(std::is_same_v<Scalar, float> || std::is_same_v<Scalar, double>,
                "DataParallel: float or double");
  return std::is_same_v<Scalar, float> ? MPI_FLOAT : MPI_DOUBLE;
}

/// FNV-1a over bytes: the fingerprint of a parameter list's layout, compared across processes.
inline std::uint64_t fingerprint(std::uint64_t h, const void* data, std::size_t bytes) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t k = 0; k < bytes; ++k) h = (h ^ p[k]) * 0x100000001b3ULL;
  return h;
}

inline bool mpiRunning() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized != 0 && finalized == 0;
}

/// The sum of every process's weight (gathered, so the same on every process), in rank order.
/// Throws unless each is finite and >= 0 (a refused weight was sent as NaN; `bad` is this
/// process's, `rank` this process) and the sum is positive.
inline double sumWeights(const std::vector<double>& weights, int rank, double bad) {
  double total = 0;
  for (std::size_t r = 0; r < weights.size(); ++r) {
    if (std::isnan(weights[r])) {
      fail("DataParallel::finish: every weight must be finite and >= 0, got ",
           static_cast<int>(r) == rank ? std::to_string(bad) : std::string("another"), " on rank ",
           r);
    }
    total += weights[r];
  }
  if (!(total > 0)) {
    fail("DataParallel::finish: the processes' weights sum to ", total,
         "; at least one must be positive");
  }
  return total;
}

/// One bucket of a DataParallel: whole tensors of the list, packed one after the other, and the
/// slices the processes sum.
struct Bucket {
  std::vector<std::size_t> entries;  ///< list indices, packed in this order
  Eigen::Index offset = 0;           ///< into the packed buffer
  int count = 0;                     ///< scalars
  std::size_t pending = 0;           ///< entries not yet ready in the average in flight
  /// Process r's slice of the bucket: [displs[r], displs[r] + counts[r]).
  std::vector<int> counts, displs;
  /// This process's slice as sent by each process: slice r at r · counts[rank].
  std::vector<int> mineCounts, mineDispls;
  Eigen::Index gatherOffset = 0;  ///< into the buffer of this process's slices
};

/// Groups list entries of `sizes` scalars into buckets of about `bucketScalars` (a tensor never
/// split; at least one a bucket), from the last entry to the first (the order backward completes
/// them), each cut into near-equal slices for `size` processes. Sets `numel` (every bucket) and
/// `sliceNumel` (this process's slices from every process). Returns why it cannot (empty: it
/// can): a count beyond MPI's int.
inline std::string makeBuckets(const std::vector<Eigen::Index>& sizes, std::size_t bucketScalars,
                               int rank, int size, std::vector<Bucket>& buckets,
                               Eigen::Index& numel, Eigen::Index& sliceNumel) {
  const auto close = [&](std::vector<std::size_t>& entries) {
    Eigen::Index count = 0;
    for (std::size_t k : entries) count += sizes[k];
    if (count > std::numeric_limits<int>::max()) return false;
    Bucket bucket;
    bucket.entries = std::move(entries);
    entries.clear();
    bucket.offset = numel;
    bucket.count = static_cast<int>(count);
    // Near-equal slices, one a process: process r sums elements [c·r/N, c·(r+1)/N).
    const auto N = static_cast<std::size_t>(size);
    bucket.counts.resize(N);
    bucket.displs.resize(N);
    for (std::size_t r = 0; r < N; ++r) {
      const Eigen::Index begin = count * Eigen::Index(r) / size;
      const Eigen::Index end = count * Eigen::Index(r + 1) / size;
      bucket.displs[r] = static_cast<int>(begin);
      bucket.counts[r] = static_cast<int>(end - begin);
    }
    const int mine = bucket.counts[static_cast<std::size_t>(rank)];
    if (Eigen::Index(mine) * size > std::numeric_limits<int>::max()) return false;
    bucket.mineCounts.assign(N, mine);
    bucket.mineDispls.resize(N);
    for (std::size_t r = 0; r < N; ++r) bucket.mineDispls[r] = static_cast<int>(r) * mine;
    bucket.gatherOffset = sliceNumel;
    sliceNumel += Eigen::Index(mine) * size;
    numel += count;
    buckets.push_back(std::move(bucket));
    return true;
  };
  std::string tooLarge = "a bucket would exceed MPI's count of " +
                         std::to_string(std::numeric_limits<int>::max()) + " scalars";
  std::vector<std::size_t> entries;
  std::size_t scalars = 0;
  for (std::size_t k = sizes.size(); k-- > 0;) {
    const auto n = static_cast<std::size_t>(sizes[k]);
    if (!entries.empty() && scalars + n > bucketScalars) {
      if (!close(entries)) return tooLarge;
      scalars = 0;
    }
    entries.push_back(k);
    scalars += n;
  }
  if (!close(entries)) return tooLarge;
  return {};
}

}  // namespace detail
}  // namespace recurrent
