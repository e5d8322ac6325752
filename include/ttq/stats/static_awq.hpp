// StaticAwqScales: offline (calibrated) AWQ as a scale policy, the strongest baseline
// (spec "Baselines"). The first plan after observing calibration tokens grid-searches the
// exponent a (and optionally per-group clip ratios) on those tokens, then freezes; later
// activations never change it. reset() unfreezes.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "ttq/core/error.hpp"
#include "ttq/core/types.hpp"
#include "ttq/quant/quantized_matrix.hpp"
#include "ttq/stats/adaptive_exponent.hpp"
#include "ttq/stats/channel_stats.hpp"
#include "ttq/stats/diag_correlation.hpp"
#include "ttq/stats/scale_plan.hpp"
#include "ttq/stats/uniform_scales.hpp"

namespace ttq {

struct StaticAwqOptions {
  double p = 1.0;                  ///< norm of the activation statistic (1: the original AWQ)
  int grid = 20;                   ///< exponents a = i / grid, i = 0 .. grid-1 (the spec's 20 points in [0, 1))
  bool clip_search = false;        ///< also search a clip ratio per (row, group)
  int clip_grid = 20;              ///< clip ratios 1 - i / clip_grid ...
  double max_shrink = 0.5;         ///< ... for i < max_shrink * clip_grid (AWQ's auto_clip)
  Index max_calibration_tokens = 4096;  ///< tokens kept for the search; later ones only counted
};

/// Static (offline) AWQ. Scales s_j^a / sqrt(max s^a * min s^a), s_j the p-norm statistic of
/// the calibration tokens, s^a floored at 1e-4 (as llm-awq; exponent_scales()), a minimising the
/// calibration output error ||X W^T - X diag(1/s) Q(W diag(s))^T||_F^2. Frozen after the first
/// fit; reset() unfreezes.
class StaticAwqScales {
 public:
  static constexpr bool adapts = true;  // until frozen

  StaticAwqScales() : StaticAwqScales(StaticAwqOptions{}) {}
  explicit StaticAwqScales(StaticAwqOptions options)
      : options_(options), stats_(DiagCorrelationOptions{.p = options.p, .alpha = 1.0, .lambda = 0.0}) {
    detail::require_range(options_.grid >= 1, "grid", "at least 1 exponent", std::to_string(options_.grid));
    detail::require_range(options_.clip_grid >= 1 && options_.max_shrink >= 0.0 && options_.max_shrink < 1.0, "clip_grid",
                          "clip_grid >= 1 and max_shrink in [0, 1)", std::to_string(options_.clip_grid));
    detail::require_range(options_.max_calibration_tokens >= 1, "max_calibration_tokens", ">= 1",
                          std::to_string(options_.max_calibration_tokens));
  }

  void bind(Index d_in) {
    stats_.bind(d_in);
    calibration_ = RowMatrix(0, d_in);
    frozen_.reset();
  }

  /// Records calibration tokens X [T, d_in]; ignored (validated only) once frozen.
  void observe(ConstMatrixView x) { observe(x, ChannelStatsKernel(reference_channel_stats_dynamic)); }
  void observe(ConstMatrixView x, const ChannelStatsKernel& kernel) {
    if (frozen_) {
      UniformScales check;
      check.bind(stats_.channels());
      check.observe(x);
      return;
    }
    stats_.observe(x, kernel);
    const Index keep = std::min<Index>(x.rows, options_.max_calibration_tokens - calibration_.rows());
    if (keep > 0) {
      const Index old = calibration_.rows();
      calibration_.conservativeResize(old + keep, x.cols);
      for (Index t = 0; t < keep; ++t)
        for (Index j = 0; j < x.cols; ++j) calibration_(old + t, j) = x(t, j);
    }
  }
  void begin_prompt() {}
  void reset() { bind(stats_.channels()); }

  bool frozen() const { return frozen_.has_value(); }
  /// Calibration tokens observed so far (before freezing).
  double calibration_tokens() const { return stats_.tokens(); }
  /// The chosen exponent (nullopt before fitting).
  std::optional<double> chosen_exponent() const { return exponent_; }

  ScalePlan plan(const ScaleContext& context) {
    if (frozen_) {
      context.output = frozen_->quantized;  // a copy into reused storage
      return {frozen_->scales, frozen_->group_clip, true};
    }
    if (calibration_.rows() == 0) return {std::vector<float>(static_cast<std::size_t>(stats_.channels()), 1.0f), {}, false};
    const std::vector<double> s = stats_.channel_norms();
    const auto x = calibration_.cast<double>();
    const Eigen::MatrixXd w = detail::as_eigen(context.weight).cast<double>();
    double best_error = std::numeric_limits<double>::infinity();
    ScalePlan best;
    QuantizedMatrix candidate;
    for (int i = 0; i < options_.grid; ++i) {
      const double a = static_cast<double>(i) / options_.grid;
      std::vector<float> scales = exponent_scales(s, a, 1e-4, /*awq_normalised=*/true);
      context.quantize(context.weight, scales, {}, {}, candidate);
      const double error = output_error(x, w, candidate, scales);
      if (error < best_error) {
        best_error = error;
        best.scales = std::move(scales);
        std::swap(candidate, context.output);
        exponent_ = a;
      }
    }
    if (options_.clip_search) search_clip(context, x, w, best);
    best.quantized = true;
    frozen_ = Frozen{best.scales, best.group_clip, context.output};
    return best;
  }

 private:
  struct Frozen {
    std::vector<float> scales;
    std::vector<float> group_clip;
    QuantizedMatrix quantized;
  };

  // W^ = deq(Q) diag(1/s) in double.
  static Eigen::MatrixXd effective(const QuantizedMatrix& q, const std::vector<float>& scales) {
    Eigen::MatrixXd w = q.dequantize().cast<double>();
    for (Index c = 0; c < w.cols(); ++c) w.col(c) /= static_cast<double>(scales[static_cast<std::size_t>(c)]);
    return w;
  }
  static double output_error(const Eigen::MatrixXd& x, const Eigen::MatrixXd& w, const QuantizedMatrix& q,
                             const std::vector<float>& scales) {
    return (x * (w - effective(q, scales)).transpose()).squaredNorm();
  }

  // Per (row, group): the clip ratio whose group output error sum_t (x_tg . (w - w^)_g)^2 is least.
  // Leaves the quantization with the chosen clips in context.output and the clips in best.
  void search_clip(const ScaleContext& context, const Eigen::MatrixXd& x, const Eigen::MatrixXd& w, ScalePlan& best) {
    const Index rows = w.rows();
    const Index group = context.config.group;
    const Index groups = (w.cols() + group - 1) / group;
    std::vector<float> best_clip(static_cast<std::size_t>(rows * groups), 1.0f);
    std::vector<double> best_error(static_cast<std::size_t>(rows * groups), std::numeric_limits<double>::infinity());
    const int steps = std::max(1, static_cast<int>(options_.max_shrink * options_.clip_grid));
    QuantizedMatrix candidate;
    for (int i = 0; i < steps; ++i) {
      const float ratio = static_cast<float>(1.0 - static_cast<double>(i) / options_.clip_grid);
      const std::vector<float> clip(static_cast<std::size_t>(rows * groups), ratio);
      context.quantize(context.weight, best.scales, clip, {}, candidate);
      const Eigen::MatrixXd diff = w - effective(candidate, best.scales);
      for (Index g = 0; g < groups; ++g) {
        const Index begin = g * group, width = std::min(group, w.cols() - begin);
        const Eigen::MatrixXd err = x.middleCols(begin, width) * diff.middleCols(begin, width).transpose();  // [T, rows]
        for (Index r = 0; r < rows; ++r) {
          const double e = err.col(r).squaredNorm();
          auto k = static_cast<std::size_t>(r * groups + g);
          if (e < best_error[k]) {
            best_error[k] = e;
            best_clip[k] = ratio;
          }
        }
      }
    }
    context.quantize(context.weight, best.scales, best_clip, {}, context.output);
    best.group_clip = std::move(best_clip);
  }

  StaticAwqOptions options_;
  DiagCorrelation<Dynamic> stats_;
  RowMatrix calibration_;
  std::optional<Frozen> frozen_;
  std::optional<double> exponent_;
};

}  // namespace ttq
