// A test hook: counts calls of the reference kernels (quant/reference.hpp,
// stats/channel_stats.hpp), so that tests can prove an operator on a fast backend never falls
// back to them. Always on: one relaxed atomic increment per whole-matrix call costs nothing next
// to the call, and a hook that depends on a macro would make the kernels' inline code differ
// between the units of one program (tests, tools and the dispatch library link together).
#pragma once

#include <atomic>
#include <cstdint>

namespace ttq::detail {

/// Number of reference-kernel calls so far in this process.
inline std::atomic<std::int64_t>& reference_kernel_calls() {
  static std::atomic<std::int64_t> calls{0};
  return calls;
}

/// Called at the entry of each reference kernel.
inline void count_reference_call() { reference_kernel_calls().fetch_add(1, std::memory_order_relaxed); }

}  // namespace ttq::detail
