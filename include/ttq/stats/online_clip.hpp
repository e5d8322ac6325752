// OnlineClipSearch: a clip ratio per (output row, group) chosen on the prompt itself (spec
// "Online clip search", ours beyond the paper).
//
// Static AWQ's strongest part at 2-3 bits is its clip search, which needs calibration data. The
// prompt carries the same information. Given the scales D of the plan (the adaptive exponent's),
// every ratio c of a grid (llm-awq's 1.00, 0.95, ..., 0.55) quantizes W D with the range shrunk
// to [c mn, c mx]; each (row i, group g) keeps the ratio whose error on the prompt is least:
//     e_c   = w_ig - Q_c(w_ig D_g) / D_g
//     diag:  E_c = sum_{j in g} c_j e_c,j^2        c_j = (1/T) sum_t x_tj^2 (the plan's statistics)
//     block: E_c = e_c^T G_gg e_c                   G_gg = (1/T) X_g^T X_g, the prompt's Gram block
// `block` is llm-awq's auto_clip objective on the prompt. With block_rank = k > 0, G_gg is
// replaced by its top-k eigenpairs plus the diagonal of the rest (cheaper for wide groups).
//
// Identical choices on every backend: the candidates are quantized by the operator's backend
// (whose codes equal the reference's, ties included), and the errors are computed here, by one
// piece of code, from the decoded values; ties keep the larger ratio (the earlier grid point).
// The Gram blocks are summed token by token in order, so chunked prefill equals one shot exactly.
// Threads: the errors are measured in fixed blocks of 64 rows, which the operator's executor
// (ScaleContext::for_ranges) spreads over its threads, and the Gram blocks are summed one group
// per task; neither's arithmetic depends on the thread count, so no statistic or choice does.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include <Eigen/Dense>

#include "ttq/core/error.hpp"
#include "ttq/core/types.hpp"
#include "ttq/quant/quant_config.hpp"
#include "ttq/quant/quantized_matrix.hpp"
#include "ttq/stats/scale_plan.hpp"

namespace ttq {

/// What a clip ratio is chosen by (spec "Online clip search").
enum class ClipObjective {
  none,   ///< no search: every group uses the quantizer's clip
  diag,   ///< diagonal-weighted error, from the statistics TTQ already has
  block,  ///< the prompt's Gram block of the group (llm-awq's auto_clip objective)
};

inline const char* clip_objective_name(ClipObjective objective) {
  switch (objective) {
    case ClipObjective::none: return "none";
    case ClipObjective::diag: return "diag";
    case ClipObjective::block: return "block";
  }
  return "?";
}

struct OnlineClipOptions {
  ClipObjective objective = ClipObjective::none;
  /// Candidate ratios in (0, 1], tried in this order (ties keep the earlier): llm-awq's grid.
  std::vector<double> ratios = {1.00, 0.95, 0.90, 0.85, 0.80, 0.75, 0.70, 0.65, 0.60, 0.55};
  /// block only: 0 uses G_gg exactly; k > 0 its top-k eigenpairs plus the rest's diagonal.
  Index block_rank = 0;
};

/// The per-(row, group) clip search and the prompt statistics it needs beyond TTQ's (the Gram
/// blocks of `block`). Owned by a scale policy (AdaptiveExponent), which calls search() after
/// choosing D.
class OnlineClipSearch {
 public:
  OnlineClipSearch() = default;
  explicit OnlineClipSearch(OnlineClipOptions options) : options_(std::move(options)) {
    detail::require_range(!options_.ratios.empty() && options_.ratios.size() <= 255, "clip_ratios", "1 to 255 ratios",
                          std::to_string(options_.ratios.size()) + " ratios");
    for (double c : options_.ratios)
      detail::require_range(std::isfinite(c) && c > 0.0 && c <= 1.0, "clip_ratios", "ratios in (0, 1]", std::to_string(c));
    detail::require_range(options_.block_rank >= 0, "clip_rank", "a rank >= 0 (0: the exact Gram block)",
                          std::to_string(options_.block_rank));
  }

  const OnlineClipOptions& options() const { return options_; }
  bool enabled() const { return options_.objective != ClipObjective::none; }

  /// Fixes the channel count and the group size (the operator's resolved QuantConfig::group).
  void bind(Index d_in, Index group) {
    d_in_ = d_in;
    group_ = group;
    tokens_ = 0.0;
    gram_.clear();
    if (options_.objective != ClipObjective::block || group == 0) return;  // 0: not known yet
    detail::require_range(group >= 1 && group <= d_in, "group", "1 <= group <= d_in = " + std::to_string(d_in),
                          std::to_string(group));
    for (Index begin = 0; begin < d_in; begin += group) {
      const Index width = std::min(group, d_in - begin);
      gram_.emplace_back(static_cast<std::size_t>(width * width), 0.0);
    }
  }

  /// Throws unless observe() can run: the block objective needs the group size.
  void require_bound() const {
    if (options_.objective == ClipObjective::block && gram_.empty())
      throw ShapeError("clip", "the block clip objective needs the group size: bind the policy through an operator "
                               "(or call bind(d_in, config))");
  }

  /// Accumulates the Gram blocks of X [T, d_in] (block only; X already validated by the policy).
  /// `run` spreads the groups over the operator's threads (empty: the calling thread); each
  /// group's sums are its own, so the result does not depend on the thread count.
  void observe(ConstMatrixView x, const RangeRunner& run = {}) {
    if (options_.objective != ClipObjective::block) return;
    require_bound();
    detail::require_shape(x.cols == d_in_, "x", "[T, " + std::to_string(d_in_) + "]", x.rows, x.cols);
    const auto groups = static_cast<Index>(gram_.size());
    const auto accumulate = [&](Index first, Index last) {
      for (Index g = first; g < last; ++g) observe_group(x, g);
    };
    if (run) run(groups, 1, accumulate);
    else accumulate(0, groups);
    tokens_ += static_cast<double>(x.rows);
  }

  void begin_prompt(double decay) {
    for (auto& block : gram_)
      for (double& v : block) v *= decay;
    tokens_ = decay == 0.0 ? 0.0 : tokens_ * decay;
  }
  void reset() { begin_prompt(0.0); }

  /// G_gg = (1/T) X_g^T X_g of group g, symmetric [width, width] (zeros before any token).
  Eigen::MatrixXd gram_block(Index g) const {
    const Index width = std::min(group_, d_in_ - g * group_);
    Eigen::MatrixXd out = Eigen::MatrixXd::Zero(width, width);
    if (options_.objective != ClipObjective::block || tokens_ <= 0.0) return out;
    const double* gram = gram_[static_cast<std::size_t>(g)].data();
    for (Index a = 0; a < width; ++a)
      for (Index b = a; b < width; ++b) out(a, b) = out(b, a) = gram[a * width + b] / tokens_;
    return out;
  }

  /// Chooses the clip ratio of every (row, group) of context.weight for scales D, leaves the
  /// quantization with those ratios in context.output, and returns them ([rows, groups],
  /// row-major: ScalePlan::group_clip). `mean_squares` is c_j (the diag objective's weights).
  std::vector<float> search(const ScaleContext& context, std::span<const float> scales, std::span<const double> mean_squares) {
    const ConstMatrixView w = context.weight;
    const Index rows = w.rows, cols = w.cols, group = context.config.group;
    const Index groups = (cols + group - 1) / group;
    // The scales are indexed per column below: a plan without them must not get this far.
    detail::require_shape(static_cast<Index>(scales.size()) == cols, "scales", "[d_in] = [" + std::to_string(cols) + "]", 1,
                          static_cast<Index>(scales.size()));
    if (options_.objective == ClipObjective::block)
      detail::require_range(group == group_ && cols == d_in_, "group", "the group the clip search was bound with (" +
                                                                           std::to_string(group_) + ")", std::to_string(group));
    const std::vector<Objective> objective = objectives(cols, group, scales, mean_squares);

    chosen_.assign(static_cast<std::size_t>(rows * groups), 0);
    best_error_.assign(static_cast<std::size_t>(rows * groups), std::numeric_limits<double>::infinity());
    std::vector<float> uniform(static_cast<std::size_t>(rows * groups));
    constexpr Index kRowBlock = 64;  // rows measured together: bounds the error matrix (see the file comment)
    const Index row_blocks = (rows + kRowBlock - 1) / kRowBlock;
    for (std::size_t ci = 0; ci < options_.ratios.size(); ++ci) {
      std::fill(uniform.begin(), uniform.end(), static_cast<float>(options_.ratios[ci]));
      context.quantize(w, scales, uniform, {}, candidate_);
      context.run_ranges(row_blocks, 1, [&](Index block_begin, Index block_end) {
        ErrorRows error;  // the general objectives' error terms (diag needs none)
        if (options_.objective != ClipObjective::diag) error.resize(std::min(rows, kRowBlock), cols);
        std::vector<float> decoded(static_cast<std::size_t>(cols));
        for (Index block = block_begin; block < block_end; ++block)
          measure_rows(w, scales, objective, group, block * kRowBlock, std::min(kRowBlock, rows - block * kRowBlock), ci, error, decoded);
      });
    }
    std::vector<float> clip(static_cast<std::size_t>(rows * groups));
    for (std::size_t k = 0; k < clip.size(); ++k) clip[k] = static_cast<float>(options_.ratios[chosen_[k]]);
    context.quantize(w, scales, clip, {}, context.output);
    return clip;
  }

  /// Index into options().ratios chosen for each (row, group) by the last search.
  const std::vector<std::uint8_t>& chosen() const { return chosen_; }
  /// The least error of each (row, group) found by the last search.
  const std::vector<double>& chosen_errors() const { return best_error_; }

 private:
  // The quadratic form of one group, in the scaled domain where the quantizer works: with
  // e'_j = w_j D_j - w^_j (= D_j e_j: the product of two floats is exact in double, and no
  // division per element is left), E = e^T A e = e'^T (D^-1 A D^-1) e', so the terms below are
  // the objective's with row and column j divided by D_j once per search:
  //   E(e') = sum_j diagonal_j e'_j^2 + e'^T gram e' + sum_i weights_i (e' . basis_i)^2
  // diag: the diagonal only; block: gram only; block of rank k: the diagonal and the basis.
  struct Objective {
    Eigen::VectorXd diagonal;
    Eigen::MatrixXd gram;   // [width, width] or empty
    Eigen::MatrixXd basis;  // [width, k] or empty
    Eigen::VectorXd weights;
  };

  std::vector<Objective> objectives(Index cols, Index group, std::span<const float> scales, std::span<const double> mean_squares) const {
    std::vector<Objective> out;
    for (Index begin = 0, g = 0; begin < cols; begin += group, ++g) {
      const Index width = std::min(group, cols - begin);
      Eigen::VectorXd inverse_d(width);  // 1 / D_j of the group's columns
      for (Index j = 0; j < width; ++j) inverse_d(j) = 1.0 / static_cast<double>(scales[static_cast<std::size_t>(begin + j)]);
      Objective o;
      if (options_.objective == ClipObjective::diag) {
        detail::require_shape(static_cast<Index>(mean_squares.size()) == cols, "mean_squares", "[d_in]", 1,
                              static_cast<Index>(mean_squares.size()));
        o.diagonal = Eigen::Map<const Eigen::VectorXd>(mean_squares.data() + begin, width).cwiseProduct(inverse_d.cwiseAbs2());
      } else {
        Eigen::MatrixXd gram = gram_block(g);
        if (options_.block_rank == 0 || options_.block_rank >= width) {
          o.diagonal = Eigen::VectorXd::Zero(width);
          o.gram = inverse_d.asDiagonal() * gram * inverse_d.asDiagonal();
        } else {
          Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eigen(gram);
          const Index k = options_.block_rank;
          o.basis = eigen.eigenvectors().rightCols(k);  // eigenvalues ascend: the top k are last
          o.weights = eigen.eigenvalues().tail(k).cwiseMax(0.0);
          // The rest's diagonal: G_jj - sum_i lambda_i v_ij^2 (>= 0 in exact arithmetic).
          o.diagonal = (gram.diagonal() - o.basis.array().square().matrix() * o.weights).cwiseMax(0.0);
          // Into the scaled domain (the eigenpairs are G_gg's own, as the option promises).
          o.diagonal = o.diagonal.cwiseProduct(inverse_d.cwiseAbs2());
          o.basis = inverse_d.asDiagonal() * o.basis;
        }
      }
      out.push_back(std::move(o));
    }
    return out;
  }

  // Adds X_g^T X_g of group g (upper triangle), token by token in order: chunk boundaries do not
  // change a single sum, so chunked prefill equals one shot.
  void observe_group(ConstMatrixView x, Index g) {
    const Index begin = g * group_, width = std::min(group_, d_in_ - begin);
    double* gram = gram_[static_cast<std::size_t>(g)].data();
    for (Index t = 0; t < x.rows; ++t) {
      const float* xr = x.row(t) + begin;
      for (Index a = 0; a < width; ++a) {
        const double xa = xr[a];
        double* row = gram + a * width;
        for (Index b = a; b < width; ++b) row[b] += xa * static_cast<double>(xr[b]);
      }
    }
  }

  using ErrorRows = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

  // Errors of the candidate in candidate_ (grid index ci) for rows [first, first + count);
  // keeps the better ratio per (row, group). `error` has at least `count` rows.
  void measure_rows(ConstMatrixView w, std::span<const float> scales, const std::vector<Objective>& objective, Index group,
                    Index first, Index count, std::size_t ci, ErrorRows& error, std::vector<float>& decoded) {
    const Index cols = w.cols;
    if (options_.objective == ClipObjective::diag) return measure_rows_diag(w, scales, objective, group, first, count, ci, decoded);
    for (Index r = 0; r < count; ++r) {
      candidate_.dequantize_row(first + r, decoded.data());
      const float* wr = w.row(first + r);
      for (Index j = 0; j < cols; ++j)
        error(r, j) = static_cast<double>(wr[j]) * static_cast<double>(scales[static_cast<std::size_t>(j)]) -
                      static_cast<double>(decoded[static_cast<std::size_t>(j)]);  // e' (see Objective)
    }
    const Index groups = static_cast<Index>(objective.size());
    for (Index g = 0; g < groups; ++g) {
      const Index begin = g * group, width = std::min(group, cols - begin);
      const auto e = error.block(0, begin, count, width);
      const Objective& o = objective[static_cast<std::size_t>(g)];
      // E = sum_j d_j e_j^2 + sum_i (e . v_i)^2 lambda_i  (block exact: d = 0, V Lambda V^T = G)
      Eigen::VectorXd group_error = e.array().square().matrix() * o.diagonal;
      if (o.gram.size() > 0) group_error += ((e * o.gram).array() * e.array()).rowwise().sum().matrix();
      if (o.basis.size() > 0) group_error += (e * o.basis).array().square().matrix() * o.weights;
      for (Index r = 0; r < count; ++r) keep_if_better(static_cast<std::size_t>((first + r) * groups + g), group_error(r), ci);
    }
  }

  // Keeps the better ratio of (row, group) k for an error measured with grid index ci. A NaN or
  // Inf error never wins: a (row, group) without a finite error keeps the first ratio (1.0 on
  // the default grid, no clip), the documented fallback (docs/numerics.md, "Error policy").
  void keep_if_better(std::size_t k, double error, std::size_t ci) {
    if (error < best_error_[k]) {  // strict: ties keep the earlier (larger) ratio
      best_error_[k] = error;
      chosen_[k] = static_cast<std::uint8_t>(ci);
    }
  }

  // measure_rows for the diag objective, one pass per row: each error term is used once, so it
  // is never stored (the general path's error matrix made the whole search of a 4096x4096
  // layer 1.1x slower).
  void measure_rows_diag(ConstMatrixView w, std::span<const float> scales, const std::vector<Objective>& objective,
                         Index group, Index first, Index count, std::size_t ci, std::vector<float>& decoded) {
    const Index cols = w.cols, groups = static_cast<Index>(objective.size());
    for (Index r = 0; r < count; ++r) {
      candidate_.dequantize_row(first + r, decoded.data());
      const float* wr = w.row(first + r);
      for (Index g = 0; g < groups; ++g) {
        const Index begin = g * group, width = std::min(group, cols - begin);
        const double* weight = objective[static_cast<std::size_t>(g)].diagonal.data();
        // kLanes partial sums, lane = j % kLanes (one vector of doubles per step on AVX-512),
        // added in a fixed tree: the result depends on the data only.
        constexpr Index kLanes = 8;
        double partial[kLanes] = {};
        const float* w_group = wr + begin;
        const float* d_group = scales.data() + begin;
        const float* q_group = decoded.data() + begin;
        auto add = [&](Index j, Index lane) {
          const double e = static_cast<double>(w_group[j]) * static_cast<double>(d_group[j]) - static_cast<double>(q_group[j]);
          partial[lane] += weight[j] * (e * e);
        };
        Index j = 0;
        for (; j + kLanes <= width; j += kLanes)
          for (Index lane = 0; lane < kLanes; ++lane) add(j + lane, lane);
        for (; j < width; ++j) add(j, j % kLanes);
        const double sum = ((partial[0] + partial[1]) + (partial[2] + partial[3])) + ((partial[4] + partial[5]) + (partial[6] + partial[7]));
        keep_if_better(static_cast<std::size_t>((first + r) * groups + g), sum, ci);
      }
    }
  }

  OnlineClipOptions options_;
  Index d_in_ = 0;
  Index group_ = 0;
  double tokens_ = 0.0;
  std::vector<std::vector<double>> gram_;  // per group, upper triangle of sum_t x_g x_g^T
  std::vector<std::uint8_t> chosen_;
  std::vector<double> best_error_;
  QuantizedMatrix candidate_;  // scratch, kept to reuse its storage
};

}  // namespace ttq
