// PresetScales: a scale policy whose D the caller gives, fixed for the operator's life. For
// scales found outside the operator: loaded from an AWQ checkpoint, or searched on a whole
// block of a model (llm-awq's procedure, which needs the model's attention and FFN and so
// lives with the model runner, tools/common/llm_awq.cpp). Like RTN it quantizes once.
#pragma once

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "ttq/core/error.hpp"
#include "ttq/core/types.hpp"
#include "ttq/stats/channel_stats.hpp"
#include "ttq/stats/scale_plan.hpp"

namespace ttq {

/// D = the given scales whatever the activations (finite and positive, one per input channel;
/// checked when the operator binds them to its d_in).
class PresetScales {
 public:
  static constexpr bool adapts = false;

  explicit PresetScales(std::vector<float> scales) : scales_(std::move(scales)) {}

  void bind(Index d_in) {
    detail::require_shape(static_cast<Index>(scales_.size()) == d_in, "scales", "[d_in] = [" + std::to_string(d_in) + "]", 1,
                          static_cast<Index>(scales_.size()));
    for (std::size_t j = 0; j < scales_.size(); ++j)
      detail::require_range(std::isfinite(scales_[j]) && scales_[j] > 0.0f, "scales", "finite positive scales",
                            std::to_string(scales_[j]) + " at channel " + std::to_string(j));
  }
  /// Validates X; the scales never change.
  void observe(ConstMatrixView x, const ChannelStatsKernel& = {}) {
    detail::require_valid_view(x, "x");
    detail::require_shape(x.cols == static_cast<Index>(scales_.size()) && x.rows >= 1, "x",
                          "[T >= 1, " + std::to_string(scales_.size()) + "]", x.rows, x.cols);
    detail::require_finite(x, "x");
  }
  void begin_prompt() {}
  void reset() {}
  ScalePlan plan(const ScaleContext&) const { return {scales_, {}, false}; }

  const std::vector<float>& scales() const { return scales_; }

 private:
  std::vector<float> scales_;
};

}  // namespace ttq
