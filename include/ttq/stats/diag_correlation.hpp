// DiagCorrelation<P>: the online activation statistic of TTQ (spec "The activation statistic D").
//
// It accumulates per-channel p-norm sums of the prompt's activations across calls (chunked
// prefill), and turns them into the per-channel scales D that the weights are multiplied by
// before groupwise quantization:
//   s_j = ((1/T) sum_t |x_tj|^p)^(1/p)        (p = InfNorm: max_t |x_tj|)
//   c_j = s_j^2 / mean_k s_k^2                (all ones if the mean is 0)
//   c_j <- (1 - mu) c_j + mu c_prior_j         (optional static prior, paper App. F)
//   D_j = ((1 - lambda) c_j + lambda)^alpha,  D_j = max(D_j, 1e-6 max_k D_k)
// Each formula is one function of stats/scale_math.hpp, which the CUDA kernels evaluate too.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <concepts>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ttq/core/error.hpp"
#include "ttq/core/markers.hpp"
#include "ttq/core/types.hpp"
#include "ttq/stats/channel_stats.hpp"
#include "ttq/stats/scale_math.hpp"
#include "ttq/stats/scale_plan.hpp"

namespace ttq {

/// Runtime settings of DiagCorrelation. The defaults (with P = InfNorm, the default norm) are the
/// best fixed setting of a measured sweep on a real model: docs/numerics.md ("Defaults") and
/// docs/results.md. The paper's own suggestion (p = 2, alpha = 0.5, lambda = 0.1) measured worse
/// than RTN there.
struct DiagCorrelationOptions {
  double p = 2.0;             ///< the norm, used only when P == Dynamic: >= 1, or INFINITY
  double alpha = 0.1;         ///< exponent on the damped correlation, >= 0 (0 gives RTN)
  double lambda = 0.0;        ///< damping toward uniform in [0, 1] (1 gives RTN)
  double decay = 0.0;         ///< beta in [0, 1]: begin_prompt() multiplies old sums by it (0 forgets)
  double prior_weight = 0.0;  ///< mu in [0, 1]: weight of the static prior correlation
  std::vector<double> prior;  ///< c_prior, length d_in, finite and >= 0; required iff prior_weight > 0
};

/// Lower bound of D relative to its maximum (spec: no zero, no division by zero).
inline constexpr double kScaleFloorRatio = detail::kScaleFloor;

/// Diagonal activation correlation with streaming accumulation.
///
/// P is 1, 2, InfNorm, any integer >= 1, or Dynamic (then options.p is used).
/// Shapes: observe() takes X [T, d_in] row-major; all per-channel outputs have length d_in.
template <int P = InfNorm>
class DiagCorrelation {
  static_assert(P == Dynamic || P == InfNorm || P >= 1, "DiagCorrelation: P must be >= 1, InfNorm or Dynamic");

 public:
  static constexpr int p = P;
  /// The scales depend on the activations, so an operator must re-quantize after observing.
  static constexpr bool adapts = true;

  DiagCorrelation() : DiagCorrelation(DiagCorrelationOptions{}) {}
  explicit DiagCorrelation(DiagCorrelationOptions options) : options_(std::move(options)) {
    const double pv = norm_order();
    detail::require_range(pv >= 1.0 && !std::isnan(pv), "p", "a norm order >= 1 or infinity", std::to_string(pv));
    detail::require_range(std::isfinite(options_.alpha) && options_.alpha >= 0.0, "alpha", "a finite value >= 0",
                          std::to_string(options_.alpha));
    detail::require_range(options_.lambda >= 0.0 && options_.lambda <= 1.0, "lambda", "a value in [0, 1]",
                          std::to_string(options_.lambda));
    detail::require_range(options_.decay >= 0.0 && options_.decay <= 1.0, "decay", "a value in [0, 1]",
                          std::to_string(options_.decay));
    detail::require_range(options_.prior_weight >= 0.0 && options_.prior_weight <= 1.0, "prior_weight",
                          "a value in [0, 1]", std::to_string(options_.prior_weight));
    for (double c : options_.prior)
      if (!std::isfinite(c) || c < 0.0) throw RangeError("prior", "finite, non-negative correlations required");
    if (options_.prior_weight > 0.0 && options_.prior.empty())
      throw RangeError("prior", "a prior correlation is required when prior_weight > 0");
  }

  const DiagCorrelationOptions& options() const { return options_; }
  /// The norm order in use (INFINITY for InfNorm).
  double norm_order() const {
    if constexpr (P == Dynamic) return options_.p;
    else if constexpr (P == InfNorm) return INFINITY;
    else return static_cast<double>(P);
  }

  /// Fixes the number of channels (the operator calls this once). Resets the statistics.
  void bind(Index d_in) {
    detail::require_range(d_in >= 1, "d_in", "at least 1 channel", std::to_string(d_in));
    if (!options_.prior.empty())
      detail::require_shape(static_cast<Index>(options_.prior.size()) == d_in, "prior",
                            "[d_in] = [" + std::to_string(d_in) + "]", 1, static_cast<Index>(options_.prior.size()));
    pnorm_sums_.assign(static_cast<std::size_t>(d_in), 0.0);
    square_sums_.assign(static_cast<std::size_t>(d_in), 0.0);
    tokens_ = 0.0;
  }

  Index channels() const { return static_cast<Index>(pnorm_sums_.size()); }
  /// Tokens accumulated (fractional after decay).
  double tokens() const { return tokens_; }

  /// Accumulates the statistics of X [T, d_in] (T >= 1, finite) with the reference statistics
  /// (stats/channel_stats.hpp): the standalone use. Binds on first use.
  void observe(ConstMatrixView x) { observe(x, ChannelStatsKernel(reference_channel_stats_dynamic)); }

  /// The same with the statistics kernel an operator lends (its backend's; scale_plan.hpp).
  void observe(ConstMatrixView x, const ChannelStatsKernel& kernel) {
    detail::require_valid_view(x, "x");
    if (pnorm_sums_.empty()) bind(x.cols);
    detail::require_shape(x.cols == channels(), "x", "[T, " + std::to_string(channels()) + "]", x.rows, x.cols);
    detail::require_shape(x.rows >= 1, "x", "at least one token", x.rows, x.cols);
    detail::require_finite(x, "x");
    // An integer P other than 1, 2 runs as Dynamic with p = P (the same pow(v, P) either way). A
    // runtime p of 1 or infinity takes the kernels of those norms: the same sums (pow(v, 1) = v),
    // without pow, as the device does (stats/scale_math.hpp, norm_order_for). (p = 2 keeps pow,
    // which the device repeats.)
    int kind = channel_stats_kind(P);
    if constexpr (P == Dynamic) {
      if (options_.p == 1.0) kind = 1;
      else if (std::isinf(options_.p)) kind = InfNorm;
    }
    const double p_value = (P == Dynamic || P == InfNorm) ? options_.p : static_cast<double>(P);
    kernel(kind, x, p_value, std::span<double>(pnorm_sums_), std::span<double>(square_sums_));
    tokens_ += static_cast<double>(x.rows);
  }

  /// Starts a new prompt: past sums are multiplied by the decay beta (0 forgets them).
  void begin_prompt() {
    for (auto& v : pnorm_sums_) v = detail::decayed_sum(v, options_.decay);
    for (auto& v : square_sums_) v = detail::decayed_sum(v, options_.decay);
    tokens_ = detail::decayed_tokens(tokens_, options_.decay);
  }

  /// Forgets every statistic (keeps d_in and options).
  void reset() {
    std::fill(pnorm_sums_.begin(), pnorm_sums_.end(), 0.0);
    std::fill(square_sums_.begin(), square_sums_.end(), 0.0);
    tokens_ = 0.0;
  }

  /// s_j, the per-channel p-norm statistic (zeros before any token).
  std::vector<double> channel_norms() const {
    std::vector<double> s(pnorm_sums_.size(), 0.0);
    if (tokens_ <= 0.0) return s;
    const double pv = norm_order();
    const detail::NormOrder order = detail::norm_order_for<P>(pv);
    for (std::size_t j = 0; j < s.size(); ++j) {
      s[j] = detail::channel_norm(order, pnorm_sums_[j], tokens_);
      // A sum of |x|^p past double's range: blame the norm order, not the scales it would give.
      if (!std::isfinite(s[j]))
        throw RangeError("p", "the p-norm statistic overflowed double at channel " + std::to_string(j) + " (p = " +
                                  std::to_string(pv) + "): use a smaller p, or infinity for the max norm");
    }
    return s;
  }

  /// mean_t x_tj^2 per channel: the diagonal of the activation auto-correlation (zeros before any token).
  std::vector<double> mean_squares() const {
    std::vector<double> m(square_sums_.size(), 0.0);
    if (tokens_ > 0.0)
      for (std::size_t j = 0; j < m.size(); ++j) m[j] = square_sums_[j] / tokens_;
    return m;
  }

  /// sum_k s_k^2 over this object's channels: what shards of a row-parallel layer all-reduce
  /// (with the channel count) to agree on the normaliser; see set_global_mean_square().
  double sum_squared_norms() const {
    double total = 0.0;
    for (double s : channel_norms()) total += s * s;
    return total;
  }

  /// Normalises c by the given mean of s^2 instead of this object's own channels (row-parallel
  /// sharding: every shard passes the global mean so D equals the unsharded one). nullopt undoes it.
  void set_global_mean_square(std::optional<double> mean_square) {
    if (mean_square) detail::require_range(std::isfinite(*mean_square) && *mean_square >= 0.0, "mean_square",
                                           "a finite value >= 0", std::to_string(*mean_square));
    global_mean_square_ = mean_square;
  }

  /// c_j = s_j^2 / mean_k s_k^2 (ones if the mean is 0), blended with the prior if configured.
  std::vector<double> correlation() const {
    const std::vector<double> s = channel_norms();
    std::vector<double> c(s.size(), 1.0);
    double mean = 0.0;
    if (global_mean_square_) {
      mean = *global_mean_square_;
    } else {
      for (double v : s) mean += detail::dmul_rn(v, v);
      mean = s.empty() ? 0.0 : mean / static_cast<double>(s.size());
    }
    for (std::size_t j = 0; j < s.size(); ++j) c[j] = detail::channel_correlation(s[j], mean);
    if (options_.prior_weight > 0.0)
      for (std::size_t j = 0; j < c.size(); ++j) c[j] = detail::blend_prior(c[j], options_.prior_weight, options_.prior[j]);
    return c;
  }

  /// D_j = ((1 - lambda) c_j + lambda)^alpha, floored at 1e-6 max_k D_k; as fp32.
  std::vector<float> scales() const {
    const std::vector<double> c = correlation();
    std::vector<double> d(c.size());
    double dmax = 0.0;
    for (std::size_t j = 0; j < c.size(); ++j) {
      d[j] = detail::damped_scale(c[j], options_.lambda, options_.alpha);
      dmax = std::max(dmax, d[j]);
    }
    // D past float's range (c^alpha with a large alpha): blame alpha, not the scales.
    if (!(dmax <= static_cast<double>(std::numeric_limits<float>::max())))
      throw RangeError("alpha", "D = ((1 - lambda) c + lambda)^alpha overflows float (alpha = " + std::to_string(options_.alpha) +
                                    ", largest D = " + std::to_string(dmax) + "): use a smaller alpha");
    std::vector<float> out(c.size());
    // A zero D (c_j = 0 with lambda = 0) would divide by zero in the prescale: floored.
    for (std::size_t j = 0; j < c.size(); ++j) out[j] = detail::floored_scale(d[j], dmax);
    return out;
  }

  /// ScalePolicy hook: TTQ's plan is just D from the statistics.
  ScalePlan plan(const ScaleContext& /*context*/) const { return {scales(), {}, false}; }

 private:
  DiagCorrelationOptions options_;
  std::vector<double> pnorm_sums_;
  std::vector<double> square_sums_;
  double tokens_ = 0.0;
  std::optional<double> global_mean_square_;
};

}  // namespace ttq
