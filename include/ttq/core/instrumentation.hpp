// A test hook: counts calls of the reference kernels (quant/reference.hpp,
// stats/channel_stats.hpp) when TTQ_COUNT_REFERENCE_CALLS is defined, so that tests can prove an
// operator on a fast backend never falls back to them. Without the macro it compiles to nothing.
#pragma once

#include <atomic>
#include <cstdint>

namespace ttq::detail {

/// Number of reference-kernel calls so far (only counted under TTQ_COUNT_REFERENCE_CALLS).
inline std::atomic<std::int64_t>& reference_kernel_calls() {
  static std::atomic<std::int64_t> calls{0};
  return calls;
}

/// Called at the entry of each reference kernel.
inline void count_reference_call() {
#if defined(TTQ_COUNT_REFERENCE_CALLS)
  reference_kernel_calls().fetch_add(1, std::memory_order_relaxed);
#endif
}

}  // namespace ttq::detail
