// The examples' processes: one, or, with --distributed in a build with MPI
// (RECURRENT_EXAMPLE_MPI), MPI's, each training on its share of the streams with the gradients
// averaged over all of them (recurrent::DataParallel). Rank 0 alone prints and writes files.
#pragma once

#include <recurrent/recurrent.hpp>

#ifdef RECURRENT_EXAMPLE_MPI
#include <recurrent/train/distributed.hpp>

#include <mpi.h>

#include <memory>
#endif

#include <cstddef>
#include <cstdio>
#include <exception>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

namespace example {

/// Throws unless this build can train distributed (`flag`, the option that asked).
inline void requireMpi(const std::string& flag) {
#ifndef RECURRENT_EXAMPLE_MPI
  throw std::invalid_argument(flag + " needs a build with MPI (libopenmpi-dev)");
#else
  (void)flag;
#endif
}

/// The processes this run trains on: one, or MPI's (start(true, ...)).
struct World {
  int rank = 0, size = 1;
  bool distributed = false;

  bool root() const { return rank == 0; }

  /// The sum of `v` over the processes.
  double sum(double v) const {
#ifdef RECURRENT_EXAMPLE_MPI
    if (size > 1) MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
#endif
    return v;
  }

  /// One process, or with `distributed` MPI's (MPI_Init), every process's standard output but
  /// rank 0's discarded.
  static World start(bool distributed, int& argc, char**& argv) {
    World world;
#ifdef RECURRENT_EXAMPLE_MPI
    if (distributed) {
      MPI_Init(&argc, &argv);
      world.distributed = true;
      MPI_Comm_rank(MPI_COMM_WORLD, &world.rank);
      MPI_Comm_size(MPI_COMM_WORLD, &world.size);
      if (!world.root() && std::freopen("/dev/null", "w", stdout) == nullptr) {
        throw std::runtime_error("cannot discard the standard output of rank " +
                                 std::to_string(world.rank));
      }
    }
#else
    (void)distributed;
    (void)argc;
    (void)argv;
#endif
    return world;
  }

  /// The end of a run that succeeded (MPI_Finalize).
  void finish() const {
#ifdef RECURRENT_EXAMPLE_MPI
    if (distributed) MPI_Finalize();
#endif
  }

  /// After an error on any process: ends every process (MPI_Abort), which would otherwise wait
  /// forever for this one; nothing without MPI running.
  static void abortAll() {
#ifdef RECURRENT_EXAMPLE_MPI
    int running = 0;
    MPI_Initialized(&running);
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (running != 0 && finalized == 0) MPI_Abort(MPI_COMM_WORLD, 1);
#endif
  }
};

/// The streams this process trains, out of `streams` (the examples' --batch) of `steps` steps
/// each: all of them on one process; under --distributed its share (recurrent::shareOfBatch),
/// every process starting from rank 0's parameters and the gradients averaged over the processes,
/// weighted by their steps, into the whole batch's.
class StreamShare {
 public:
  StreamShare(const World& world, const recurrent::ParameterList<float>& params, int streams,
              int steps)
      : m_mine(static_cast<std::size_t>(streams)) {
    std::iota(m_mine.begin(), m_mine.end(), 0);
#ifdef RECURRENT_EXAMPLE_MPI
    if (world.distributed) {
      if (streams < world.size) {
        throw std::invalid_argument("--distributed: --batch (" + std::to_string(streams) +
                                    ") must be at least the number of processes (" +
                                    std::to_string(world.size) + ")");
      }
      m_dp = std::make_unique<recurrent::DataParallel<float>>(params);
      m_dp->broadcastParameters();
      m_mine =
          recurrent::shareOfBatch(std::vector<int>(m_mine.size(), steps), world.rank, world.size);
    }
#else
    (void)world;
    (void)params;
    (void)steps;
#endif
  }

  StreamShare(const StreamShare&) = delete;
  StreamShare& operator=(const StreamShare&) = delete;

  /// Frees the DataParallel (collective: every process frees its own together), except while an
  /// exception unwinds the stack: the other processes may be waiting in an average then, and
  /// would wait for ever on this one's free as it would on theirs. That process is about to end
  /// them all (World::abortAll), so its DataParallel is left to the end of the process.
  ~StreamShare() {
#ifdef RECURRENT_EXAMPLE_MPI
    if (std::uncaught_exceptions() > 0) (void)m_dp.release();
#endif
  }

  /// The indices of this process's streams, in order.
  const std::vector<int>& streams() const { return m_mine; }

  /// Averages the gradients over the processes, this one's weighing `terms` (its loss terms);
  /// nothing on one process.
  void average(double terms) {
#ifdef RECURRENT_EXAMPLE_MPI
    if (m_dp) m_dp->averageGradients(terms);
#else
    (void)terms;
#endif
  }

 private:
  std::vector<int> m_mine;
#ifdef RECURRENT_EXAMPLE_MPI
  std::unique_ptr<recurrent::DataParallel<float>> m_dp;
#endif
};

}  // namespace example
