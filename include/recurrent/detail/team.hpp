// recurrent — detail/team.hpp: the library's threads, all of them OpenMP's.
//
// One OpenMP parallel region spans a whole Sequence call; inside it the threads split the hidden
// units (the rows of every gate) between them and meet at one barrier per time step (Team,
// Barrier, parallel). A Stack runs the two directions of a layer side by side (runBoth). Built
// without OpenMP, a team is one thread, the barrier does nothing and runBoth runs in turn.
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <atomic>
#include <exception>
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

/// Runs a() and b(), at the same time on two threads if `together` (and OpenMP is on), else one
/// after the other. An exception thrown by either is rethrown on the calling thread.
template <typename A, typename B>
void runBoth(bool together, A&& a, B&& b) {
#ifdef _OPENMP
  if (together) {
    std::exception_ptr errors[2];
#pragma omp parallel num_threads(2)
    {
      const int rank = omp_get_thread_num();
      try {
        if (omp_get_num_threads() == 1) {
          a();
          b();
        } else if (rank == 0) {
          a();
        } else {
          b();
        }
      } catch (...) {
        errors[rank] = std::current_exception();
      }
    }
    for (const std::exception_ptr& e : errors) {
      if (e) std::rethrow_exception(e);
    }
    return;
  }
#endif
  (void)together;
  a();
  b();
}

/// Whether a parallel region opened inside one more region would get more than one thread
/// (OpenMP's nested parallelism is on and has a level to spare).
inline bool nestedParallelism() {
#ifdef _OPENMP
  return omp_get_max_active_levels() > omp_get_active_level() + 1;
#else
  return false;
#endif
}

}  // namespace detail
}  // namespace recurrent
