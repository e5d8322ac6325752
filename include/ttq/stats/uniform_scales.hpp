// UniformScales: round-to-nearest (RTN) as a scale policy, D = 1. It quantizes once and never
// adapts; the baseline every other policy is measured against (spec "Baselines").
#pragma once

#include <string>
#include <vector>

#include "ttq/core/error.hpp"
#include "ttq/core/types.hpp"
#include "ttq/stats/channel_stats.hpp"
#include "ttq/stats/scale_plan.hpp"

namespace ttq {

/// RTN's scale policy: D = 1 whatever the activations.
struct UniformScales {
  static constexpr bool adapts = false;
  void bind(Index d_in) { d_in_ = d_in; }
  /// Validates X (RTN keeps no statistics, so the kernel is not used).
  void observe(ConstMatrixView x, const ChannelStatsKernel& = {}) {
    detail::require_valid_view(x, "x");
    detail::require_shape(x.cols == d_in_ && x.rows >= 1, "x", "[T >= 1, " + std::to_string(d_in_) + "]", x.rows, x.cols);
    detail::require_finite(x, "x");
  }
  void begin_prompt() {}
  void reset() {}
  ScalePlan plan(const ScaleContext&) const { return {std::vector<float>(static_cast<std::size_t>(d_in_), 1.0f), {}, false}; }

 private:
  Index d_in_ = 0;
};

}  // namespace ttq
