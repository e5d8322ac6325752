// The interface between a scale policy (which decides the per-channel scales D: TTQ's
// DiagCorrelation, AdaptiveExponent, RTN's UniformScales, StaticAwqScales) and the operator that
// quantizes with them.
//
// The operator lends the policy its backend's kernels, type-erased, so that a policy needs no
// backend of its own and can never run on a different one than the operator's:
//   observe(X, ChannelStatsKernel)   statistics of the activations (stats/channel_stats.hpp)
//   plan(ScaleContext) -> ScalePlan  D (and optionally per-group clips); a policy that searches
//                                    over candidates quantizes through context.quantize
#pragma once

#include <concepts>
#include <functional>
#include <span>
#include <vector>

#include "ttq/core/types.hpp"
#include "ttq/quant/quant_config.hpp"
#include "ttq/quant/quantized_matrix.hpp"
#include "ttq/stats/channel_stats.hpp"

namespace ttq {

/// The decision of a scale policy for one quantization.
struct ScalePlan {
  std::vector<float> scales;      ///< D, length d_in, finite and positive
  std::vector<float> group_clip;  ///< per-group clip ratios [d_out, groups], or empty (use config.clip)
  /// True when the policy already quantized the whole weight with exactly these scales and clips
  /// into context.output, so the operator need not quantize again.
  bool quantized = false;
};

/// The operator's quantization kernel (its backend's quantize_into, backend/contract.hpp) on a
/// weight view of the policy's choosing: the operator's weight, or a subset of its rows.
/// Returns E = sum_j c_j sum_i (w_ij - deq_ij / d_j)^2 when channel_weight (c) is non-empty.
using QuantizeKernel = std::function<double(ConstMatrixView w, std::span<const float> scales, std::span<const float> group_clip,
                                            std::span<const double> channel_weight, QuantizedMatrix& out)>;

/// Calls f(begin, end) for contiguous ranges that cover [0, count) exactly once, possibly on
/// several threads at the same time (the operator's executor); `grain` is the least range worth
/// a task. A policy sends independent per-row work through it, and its result must not depend on
/// how [0, count) is cut. f must not throw and must not call the operator's kernels (they
/// already run on the executor).
using RangeRunner = std::function<void(Index count, Index grain, const std::function<void(Index, Index)>& f)>;

/// What the operator lends a policy while it plans.
struct ScaleContext {
  ConstMatrixView weight;   ///< the matrix that gets quantized (W, or W - B A), [d_out, d_in]
  QuantConfig config;       ///< resolved for d_in
  QuantizeKernel quantize;  ///< the operator's backend
  /// Storage the operator adopts when the plan says `quantized` (reused across prompts, so a
  /// policy that swaps its candidates with it allocates nothing in steady state).
  QuantizedMatrix& output;
  RangeRunner for_ranges = {};  ///< the operator's executor; empty: one range on the calling thread

  void run_ranges(Index count, Index grain, const std::function<void(Index, Index)>& f) const {
    if (count <= 0) return;
    if (for_ranges) for_ranges(count, grain, f);
    else f(0, count);
  }
};

/// What an operator needs from a scale policy (the thing that decides D):
///   adapts                      whether observing activations can change the plan (false: quantize once)
///   bind(d_in)                  fix the channel count (an operator calls bind(d_in, QuantConfig)
///                               instead where the policy has it: policies that need the group)
///   observe(X [T, d_in], kernel) accumulate statistics with the operator's statistics kernel
///   begin_prompt(), reset()     decay / forget statistics
///   plan(ScaleContext)          -> ScalePlan
template <class C>
concept ScalePolicy = requires(C& c, Index d_in, ConstMatrixView x, const ChannelStatsKernel& kernel, const ScaleContext& ctx) {
  { C::adapts } -> std::convertible_to<bool>;
  c.bind(d_in);
  c.observe(x, kernel);
  c.begin_prompt();
  c.reset();
  { c.plan(ctx) } -> std::same_as<ScalePlan>;
};

}  // namespace ttq
