// recurrent — team.hpp: the threads that run one Sequence call together.
//
// One OpenMP parallel region spans a whole forward or backward call; inside it the threads
// split the hidden units (the rows of every gate) between them and meet at one barrier per time
// step. Built without OpenMP, a team is one thread and the barrier does nothing.
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <atomic>
#include <thread>

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#endif

namespace recurrent {
namespace detail {

/// A sense-reversing barrier for the threads of one team. A thread that arrives early spins
/// for a short while (a time step of the shapes worth sharing lasts microseconds) and then
/// yields its core, so that on a busy machine a descheduled partner can run instead of the
/// waiting thread burning its time slice.
class Barrier {
 public:
  explicit Barrier(int size) : m_size(size) {}
  /// Only before any thread waits.
  void resize(int size) { m_size = size; }

  void wait() {
    const unsigned phase = m_phase.load(std::memory_order_acquire);
    if (m_arrived.fetch_add(1, std::memory_order_acq_rel) == m_size - 1) {
      m_arrived.store(0, std::memory_order_relaxed);
      m_phase.store(phase + 1, std::memory_order_release);
      return;
    }
    for (int spin = 0; m_phase.load(std::memory_order_acquire) == phase; ++spin) {
      if (spin < kSpins) {
        pause();
      } else {
        std::this_thread::yield();
      }
    }
  }

 private:
  static constexpr int kSpins = 2000;
  static void pause() {
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
    _mm_pause();
#endif
  }

  int m_size;
  std::atomic<int> m_arrived{0};
  std::atomic<unsigned> m_phase{0};
};

struct Team {
  int rank = 0;
  int size = 1;
  Barrier* sync = nullptr;

  void barrier() const {
    if (size > 1) sync->wait();
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
    Barrier barrier(threads);
#pragma omp parallel num_threads(threads)
    {
      // OpenMP may start fewer threads than asked; size the barrier to the team it got.
#pragma omp single
      barrier.resize(omp_get_num_threads());
      const Team team{omp_get_thread_num(), omp_get_num_threads(), &barrier};
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
