// recurrent — detail/cpu.hpp: what the kernels read off the machine they run on.
#pragma once

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

namespace recurrent {
namespace detail {

/// The L1 data cache of one core, in bytes, as the operating system reports it (glibc reads it
/// with cpuid); 32 KB where it does not say, the smallest L1 of the x86 cores of the last decade.
/// Read once.
inline long l1DataCacheBytes() {
  static const long bytes = [] {
    long reported = 0;
#ifdef _SC_LEVEL1_DCACHE_SIZE
    reported = sysconf(_SC_LEVEL1_DCACHE_SIZE);
#endif
    return reported > 0 ? reported : 32L * 1024;
  }();
  return bytes;
}

}  // namespace detail
}  // namespace recurrent
