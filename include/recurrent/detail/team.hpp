// recurrent — team.hpp: the threads that run one Sequence call together.
//
// One OpenMP parallel region spans a whole forward or backward call; inside it the threads
// split the hidden units (the rows of every gate) between them and meet at one barrier per time
// step. Built without OpenMP, a team is one thread and the barrier does nothing.
#pragma once

#include <Eigen/Core>

#include <algorithm>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace recurrent {
namespace detail {

struct Team {
  int rank = 0;
  int size = 1;

  void barrier() const {
#ifdef _OPENMP
    if (size > 1) {
#pragma omp barrier
    }
#endif
  }

  /// This thread's share [begin, end) of `count` items, in contiguous pieces of `grain`.
  void share(Eigen::Index count, Eigen::Index grain, Eigen::Index& begin, Eigen::Index& end) const {
    const Eigen::Index pieces = (count + grain - 1) / grain;
    begin = std::min(count, pieces * rank / size * grain);
    end = std::min(count, pieces * (rank + 1) / size * grain);
  }
};

/// The number of threads OpenMP would use by default (1 without OpenMP).
inline int defaultThreads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

/// Runs f(team) on `threads` threads (one without OpenMP), each with its own Team.
template <typename F>
void parallel(int threads, F&& f) {
#ifdef _OPENMP
  if (threads > 1) {
#pragma omp parallel num_threads(threads)
    {
      const Team team{omp_get_thread_num(), omp_get_num_threads()};
      f(team);
    }
    return;
  }
#endif
  (void)threads;
  f(Team{});
}

}  // namespace detail
}  // namespace recurrent
