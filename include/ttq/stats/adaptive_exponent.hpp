// AdaptiveExponent<P>: TTQ with the exponent chosen per layer and per prompt (spec "Adaptive
// exponent", ours beyond the paper).
//
// A fixed alpha is a compromise across layers and prompts. This policy quantizes the weights
// once per candidate exponent a of a small grid, with D_a = normalised s^a, and keeps the
// candidate whose diagonal-weighted error
//     E_a = sum_j c_j sum_i (W_ij - Q(W D_a)_ij / D_a,j)^2,   c_j = mean_t x_tj^2
// is least. E_a comes out of the same pass that quantizes (no extra pass over W). On a layer of
// at most `error_rows` output rows the candidates are whole quantizations and the winner is
// handed to the operator as is (|grid| quantizations). On a taller layer E_a is measured on every
// k-th row (k = ceil(rows / error_rows)) and the winner is quantized once in full: about
// 1 + |grid| / k quantizations (docs/numerics.md, "Adaptive exponent: measured rows").
// Independent of T.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "ttq/core/error.hpp"
#include "ttq/core/types.hpp"
#include "ttq/stats/diag_correlation.hpp"
#include "ttq/quant/quant_config.hpp"
#include "ttq/quant/quantized_matrix.hpp"
#include "ttq/stats/online_clip.hpp"
#include "ttq/stats/scale_plan.hpp"

namespace ttq {

/// How the candidate scales s^a are normalised (a global factor changes nothing in exact
/// arithmetic; it moves the 1e-4 floor and the floating-point rounding).
enum class ExponentNormalisation {
  none,  ///< D_a = max(s^a, floor): the configuration of the reference measurement
  awq,   ///< D_a = max(s^a, floor) / sqrt(max * min), as llm-awq
};

struct AdaptiveExponentOptions {
  double p = 1.0;  ///< norm of the statistic s, used only when P == Dynamic
  std::vector<double> grid = {0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9};  ///< candidate exponents, >= 0
  ExponentNormalisation normalisation = ExponentNormalisation::none;
  double floor = 1e-4;  ///< lower bound on s^a (before normalisation), > 0
  /// Lower bound on s^a relative to its mean over the channels, in [0, 1): a channel the prompt
  /// never (or barely) used keeps weights a decode token can use, instead of D ~ floor scaling
  /// them to nothing (docs/numerics.md, "Channels the prompt did not use"). 0 disables it.
  double relative_floor = 0.0;
  double decay = 0.0;   ///< statistics decay across prompts, as DiagCorrelationOptions::decay
  /// Rows on which E_a is measured: all rows of a layer with at most this many, else every k-th
  /// row with k = ceil(rows / error_rows). 0 measures every row of every layer.
  Index error_rows = 256;
  /// The online clip search run after the exponent is chosen (stats/online_clip.hpp); off by default.
  OnlineClipOptions clip = {};
};

/// The candidate scales of an exponent a: v_j = max(s_j^a, floor), raised to at least
/// relative_floor * mean_k v_k when relative_floor > 0, divided by sqrt(max v * min v) when
/// `awq_normalised` (llm-awq's normalisation), as fp32. Shared by AdaptiveExponent and static AWQ
/// (which uses floor 1e-4, no relative floor and the normalisation, as llm-awq).
inline std::vector<float> exponent_scales(const std::vector<double>& s, double a, double floor, bool awq_normalised,
                                          double relative_floor = 0.0) {
  std::vector<double> v(s.size());
  double sum = 0.0;
  for (std::size_t j = 0; j < s.size(); ++j) {
    v[j] = std::max(std::pow(s[j], a), floor);
    sum += v[j];
  }
  if (relative_floor > 0.0 && !v.empty()) {
    const double lower = relative_floor * sum / static_cast<double>(v.size());
    for (double& value : v) value = std::max(value, lower);
  }
  double mx = 0.0, mn = std::numeric_limits<double>::infinity();
  for (double value : v) {
    mx = std::max(mx, value);
    mn = std::min(mn, value);
  }
  const double norm = awq_normalised ? std::sqrt(mx * mn) : 1.0;
  std::vector<float> out(s.size());
  for (std::size_t j = 0; j < s.size(); ++j) out[j] = static_cast<float>(v[j] / norm);
  // s^a past float's range (a large exponent): blame the grid, not the scales.
  for (std::size_t j = 0; j < s.size(); ++j)
    if (!(std::isfinite(out[j]) && out[j] > 0.0f))
      throw RangeError("grid", "the exponent " + std::to_string(a) + " makes the scales s^a leave float's range (channel " +
                                   std::to_string(j) + "): use smaller exponents");
  return out;
}

namespace detail {

/// The largest |x| the adaptive exponent accepts: 2^64, whose square is float's 2^128 (just past
/// FLT_MAX). The candidate errors weigh channel j by c_j = mean_t x_tj^2, which the SIMD backend
/// carries in fp32 (c_j / D_j^2); an activation whose square is no float would make every error
/// Inf or NaN. (The statistics themselves are double sums and never overflow.)
inline constexpr float kMaxAdaptiveActivation = 18446744073709551616.0f;  // 2^64

/// Throws unless every element of X is finite with |x| < 2^64: NonFiniteError naming `x` and the
/// first offending element. One pass over the exponent bits, as all_finite (vectorized).
inline void require_activation_squares_in_float(ConstMatrixView x) {
  constexpr std::uint32_t kLimitExponent = (127u + 64u) << 23;  // the biased exponent of 2^64
  std::uint32_t too_large = 0;
  for (Index r = 0; r < x.rows; ++r) {
    const float* row = x.row(r);
    for (Index c = 0; c < x.cols; ++c) {
      std::uint32_t bits;
      std::memcpy(&bits, row + c, sizeof bits);
      too_large |= static_cast<std::uint32_t>((bits & 0x7f800000u) >= kLimitExponent);
    }
  }
  if (too_large == 0) return;
  require_finite(x, "x");  // NaN and Inf get the usual message
  for (Index r = 0; r < x.rows; ++r)
    for (Index c = 0; c < x.cols; ++c)
      if (std::fabs(x(r, c)) >= kMaxAdaptiveActivation)
        throw NonFiniteError("x", "element (" + std::to_string(r) + ", " + std::to_string(c) + ") is " + show_number(x(r, c)) +
                                      ": its square overflows float, and the adaptive exponent weighs each channel's error by "
                                      "its mean square; |x| must stay below 2^64 (about 1.8e19)");
}

}  // namespace detail

/// Correlation policy choosing D = normalised s^a with a picked from a grid per requantization.
/// P as in DiagCorrelation (1, 2, InfNorm, integer, or Dynamic).
template <int P = 1>
class AdaptiveExponent {
 public:
  static constexpr int p = P;
  static constexpr bool adapts = true;

  AdaptiveExponent() : AdaptiveExponent(AdaptiveExponentOptions{}) {}
  explicit AdaptiveExponent(AdaptiveExponentOptions options)
      : options_(std::move(options)), stats_(DiagCorrelationOptions{.p = options_.p, .alpha = 1.0, .lambda = 0.0,
                                                                    .decay = options_.decay}),
        clip_(options_.clip) {
    detail::require_range(!options_.grid.empty(), "grid", "at least one exponent", "an empty grid");
    for (double a : options_.grid)
      detail::require_range(std::isfinite(a) && a >= 0.0, "grid", "finite exponents >= 0", std::to_string(a));
    detail::require_range(std::isfinite(options_.floor) && options_.floor > 0.0, "floor", "a finite value > 0",
                          std::to_string(options_.floor));
    detail::require_range(std::isfinite(options_.relative_floor) && options_.relative_floor >= 0.0 && options_.relative_floor < 1.0,
                          "relative_floor", "a value in [0, 1)", std::to_string(options_.relative_floor));
    detail::require_range(options_.error_rows >= 0, "error_rows", "a row count >= 0 (0: all rows)",
                          std::to_string(options_.error_rows));
  }

  const AdaptiveExponentOptions& options() const { return options_; }
  /// Fixes the channel count. The block clip objective also needs the group: bind(d_in, config),
  /// which an operator calls.
  void bind(Index d_in) {
    stats_.bind(d_in);
    clip_.bind(d_in, 0);
  }
  void bind(Index d_in, const QuantConfig& config) {
    stats_.bind(d_in);
    clip_.bind(d_in, config.group);
  }
  void observe(ConstMatrixView x) { observe(x, ChannelStatsKernel(reference_channel_stats_dynamic)); }
  /// `run` (optional; an operator passes its executor) spreads the block objective's Gram
  /// blocks over threads; the statistics do not depend on it.
  void observe(ConstMatrixView x, const ChannelStatsKernel& kernel, const RangeRunner& run = {}) {
    clip_.require_bound();
    // Before any statistic changes: an X the errors cannot weigh is refused here, not in plan().
    detail::require_valid_view(x, "x");
    detail::require_activation_squares_in_float(x);
    stats_.observe(x, kernel);  // validates X
    clip_.observe(x, run);
  }
  void begin_prompt() {
    stats_.begin_prompt();
    clip_.begin_prompt(options_.decay);
  }
  void reset() {
    stats_.reset();
    clip_.reset();
    chosen_.reset();
    errors_.clear();
  }
  /// The clip search and its statistics (the clip ratios of the last plan: clip_search().chosen()).
  const OnlineClipSearch& clip_search() const { return clip_; }
  const DiagCorrelation<P>& statistics() const { return stats_; }

  /// The exponent of the last plan (nullopt before any token was observed).
  std::optional<double> chosen_exponent() const { return chosen_; }
  /// E_a of the last plan, one per grid point (empty before any token was observed); Inf or NaN
  /// for a candidate that overflowed float (never chosen).
  const std::vector<double>& candidate_errors() const { return errors_; }

  /// D_a for the statistics so far (spec: normalised s^a, floored).
  std::vector<float> candidate_scales(double a) const { return scales_for(stats_.channel_norms(), a); }

  ScalePlan plan(const ScaleContext& context) {
    errors_.clear();
    chosen_.reset();
    if (stats_.tokens() <= 0.0) return {std::vector<float>(static_cast<std::size_t>(stats_.channels()), 1.0f), {}, false};
    const std::vector<double> s = stats_.channel_norms();
    const std::vector<double> c = stats_.mean_squares();
    const Index rows = context.weight.rows;
    const Index step = (options_.error_rows > 0 && rows > options_.error_rows) ? (rows + options_.error_rows - 1) / options_.error_rows : 1;
    const ConstMatrixView measured = step == 1 ? context.weight : context.weight.row_sample(step);
    // The best candidate so far lives in context.output, the one being measured in candidate_:
    // a better one is swapped in, so no quantization is copied or allocated in steady state.
    // A candidate whose error is not finite -- its scaled weights w D_a, a group's range or the
    // weighted errors overflowed float -- is never chosen (its error reads Inf or NaN); if none
    // is finite, the plan fails naming the activations, which gave the scales and the weights c.
    ScalePlan best;
    double best_error = std::numeric_limits<double>::infinity();
    for (double a : options_.grid) {
      std::vector<float> d = scales_for(s, a);
      double error = std::numeric_limits<double>::infinity();
      try {
        error = context.quantize(measured, d, {}, c, candidate_);
      } catch (const NonFiniteError&) {  // a scaled weight w_ij D_a,j overflowed (W itself is finite)
      }
      errors_.push_back(error);
      if (error < best_error) {  // strict: ties keep the smaller-index exponent; NaN and Inf never win
        best_error = error;
        best.scales = std::move(d);
        std::swap(candidate_, context.output);
        chosen_ = a;
      }
    }
    if (!chosen_) {
      const auto largest = std::max_element(c.begin(), c.end());
      throw NonFiniteError("x", "no exponent of the grid quantizes this layer within float's range (the scaled weights, "
                                "their groups' ranges or the weighted errors overflow; largest mean square x^2 " +
                                    detail::show_number(*largest) + " at channel " + std::to_string(largest - c.begin()) +
                                    "): the activations are too large for this layer's weights");
    }
    try {
      if (clip_.enabled()) {  // quantizes the whole weight with the chosen clips
        best.group_clip = clip_.search(context, best.scales, c);
      } else if (step > 1) {  // the winner, measured on a subset of rows, quantized in full once
        context.quantize(context.weight, best.scales, {}, {}, context.output);
      }
    } catch (const NonFiniteError&) {  // a scaled weight of a row the candidates were not measured on
      const double a = *chosen_;
      chosen_.reset();
      throw NonFiniteError("x", "the scales of the chosen exponent " + detail::show_number(a) +
                                    " stretch a weight beyond float's range: the activations are too large for this layer's weights");
    }
    best.quantized = true;
    return best;
  }

 private:
  std::vector<float> scales_for(const std::vector<double>& s, double a) const {
    return exponent_scales(s, a, options_.floor, options_.normalisation == ExponentNormalisation::awq, options_.relative_floor);
  }

  AdaptiveExponentOptions options_;
  DiagCorrelation<P> stats_;
  std::optional<double> chosen_;
  std::vector<double> errors_;
  OnlineClipSearch clip_;
  QuantizedMatrix candidate_;  // scratch of plan(), kept to reuse its storage
};

}  // namespace ttq
