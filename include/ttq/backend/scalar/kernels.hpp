// The scalar reference backend: quantization, activation statistics and the forward product
// written as plain loops that follow ../shared/spec/ttq-math.md line by line. It is the oracle
// for the SIMD and CUDA backends (identical codes, outputs within stated tolerances).
#pragma once

#include <cmath>
#include <span>
#include <string>
#include <vector>

#include "ttq/backend/backend.hpp"
#include "ttq/core/error.hpp"
#include "ttq/core/types.hpp"
#include "ttq/quant/format.hpp"
#include "ttq/quant/group_kernel.hpp"
#include "ttq/quant/quant_config.hpp"
#include "ttq/quant/quantized_matrix.hpp"

namespace ttq::backend {

namespace detail {

/// Quantizes rows [0, w.rows) of `w * diag(col_scale)` with format F into `out` (already sized).
/// Each group's min/max is taken over the scaled values (fp32 products, as llm-awq's
/// `weight * scales`), shrunk by the clip ratio, then fit/encode per the format.
/// When `channel_weight` is non-empty, also returns sum_j c_j sum_i (w_ij - w^_ij / d_j)^2, the
/// diagonal-weighted error of the adaptive exponent (spec "Adaptive exponent"), in the same pass.
template <NumberFormat F>
double quantize_rows(const QuantConfig& config, ConstMatrixView w, std::span<const float> col_scale,
                     std::span<const float> group_clip, QuantizedMatrix& out,
                     std::span<const double> channel_weight = {}) {
  double weighted_error = 0.0;
  const Index groups = out.groups_per_row();
  std::vector<float> scaled(static_cast<std::size_t>(config.group));
  for (Index r = 0; r < w.rows; ++r) {
    const float* row = w.row(r);
    std::uint32_t* words = out.codes.data() + r * out.words_per_row;
    for (Index g = 0; g < groups; ++g) {
      const Index begin = g * config.group;
      const Index width = out.group_width(g);
      // The per-group steps are the TTQ_HOST_DEVICE functions of quant/group_kernel.hpp, which
      // the CUDA quantize kernels run too: same fp32 operations, same order, same codes.
      ttq::detail::GroupRange range = ttq::detail::empty_range();
      for (Index k = 0; k < width; ++k) {
        const float v = col_scale.empty()
                            ? row[begin + k]
                            : ttq::detail::scaled_weight(row[begin + k], col_scale[static_cast<std::size_t>(begin + k)]);
        scaled[static_cast<std::size_t>(k)] = v;
        range = ttq::detail::merge_range(range, ttq::detail::range_of(v));
      }
      // A NaN or Inf must never become a code: name the first offending element.
      if (!range.finite) {
        for (Index k = 0; k < width; ++k) {
          if (!std::isfinite(scaled[static_cast<std::size_t>(k)]))
            throw NonFiniteError("weight", "scaled weight at (" + std::to_string(r) + ", " + std::to_string(begin + k) +
                                               ") is not finite; cannot quantize");
        }
      }
      const float clip = group_clip.empty() ? config.clip : group_clip[static_cast<std::size_t>(r * groups + g)];
      const GroupParams p = ttq::detail::fit_group<F>(range, clip, config.bits);
      out.scales[static_cast<std::size_t>(r * groups + g)] = p.scale;
      out.zeros[static_cast<std::size_t>(r * groups + g)] = p.zero;
      for (Index k = 0; k < width; ++k) {
        const std::uint32_t code = F::encode(scaled[static_cast<std::size_t>(k)], p, config.bits);
        pack_code(words, begin + k, config.bits, code);
        if (!channel_weight.empty()) {
          const auto j = static_cast<std::size_t>(begin + k);
          const double d = col_scale.empty() ? 1.0 : static_cast<double>(col_scale[j]);
          const double diff = static_cast<double>(row[begin + k]) - static_cast<double>(F::decode(code, p, config.bits)) / d;
          weighted_error += channel_weight[j] * diff * diff;
        }
      }
    }
  }
  return weighted_error;
}

}  // namespace detail

/// Allocates a QuantizedMatrix of the right shape for `config` and `w` (codes zeroed).
inline QuantizedMatrix make_quantized_matrix(const QuantConfig& config, Index rows, Index cols) {
  QuantizedMatrix q;
  q.rows = rows;
  q.cols = cols;
  q.group = config.group;
  q.bits = config.bits;
  q.format = config.format;
  q.words_per_row = packed_words_per_row(cols, config.bits);
  q.codes.assign(static_cast<std::size_t>(rows * q.words_per_row), 0u);
  q.scales.assign(static_cast<std::size_t>(rows * q.groups_per_row()), 0.0f);
  q.zeros.assign(static_cast<std::size_t>(rows * q.groups_per_row()), 0.0f);
  return q;
}

/// Quantizes `w * diag(col_scale)` ([rows, cols], row-major; `col_scale` empty means all ones,
/// else length cols). `group_clip` optionally overrides the clip ratio per group
/// ([rows, groups_per_row], row-major). Throws NonFiniteError if a scaled weight is not finite.
/// Preconditions (checked by callers): config.validate(cols), spans sized as stated.
inline QuantizedMatrix quantize(Scalar, const QuantConfig& config, ConstMatrixView w, std::span<const float> col_scale,
                                std::span<const float> group_clip) {
  QuantizedMatrix q = make_quantized_matrix(config, w.rows, w.cols);
  visit_format(config.format, [&](auto f) { detail::quantize_rows<decltype(f)>(config, w, col_scale, group_clip, q); });
  return q;
}

/// A quantization together with its diagonal-weighted error (see quantize_with_error).
struct WeightedQuantization {
  QuantizedMatrix quantized;
  double weighted_error = 0.0;
};

/// quantize() that also returns E = sum_j c_j sum_i (w_ij - deq_ij / d_j)^2 computed in the same
/// pass over w. `channel_weight` (c) has length cols. Used to choose among candidate scales.
inline WeightedQuantization quantize_with_error(Scalar, const QuantConfig& config, ConstMatrixView w,
                                                std::span<const float> col_scale, std::span<const double> channel_weight) {
  WeightedQuantization result{make_quantized_matrix(config, w.rows, w.cols), 0.0};
  visit_format(config.format, [&](auto f) {
    result.weighted_error = detail::quantize_rows<decltype(f)>(config, w, col_scale, {}, result.quantized, channel_weight);
  });
  return result;
}

/// Marker for the p = infinity norm in `DiagCorrelation<P>` and the statistics kernels.
inline constexpr int InfNorm = 0x7fffffff;

/// Adds per-channel sums over the rows (tokens) of `x` [T, d_in]: `pnorm[j] += sum_t |x_tj|^p`
/// (for P == InfNorm: `pnorm[j] = max(pnorm[j], max_t |x_tj|)`) and `square[j] += sum_t x_tj^2`.
/// Sums are in double so that a 32k-token prompt loses no precision. P == Dynamic reads `p`.
template <int P>
void accumulate_channel_stats(Scalar, ConstMatrixView x, double p, std::span<double> pnorm, std::span<double> square) {
  for (Index t = 0; t < x.rows; ++t) {
    const float* row = x.row(t);
    for (Index j = 0; j < x.cols; ++j) {
      const double v = std::fabs(static_cast<double>(row[j]));
      const auto jj = static_cast<std::size_t>(j);
      square[jj] += v * v;
      if constexpr (P == 1) {
        pnorm[jj] += v;
      } else if constexpr (P == 2) {
        pnorm[jj] += v * v;
      } else if constexpr (P == InfNorm) {
        pnorm[jj] = std::fmax(pnorm[jj], v);
      } else if constexpr (P == Dynamic) {
        pnorm[jj] = std::isinf(p) ? std::fmax(pnorm[jj], v) : pnorm[jj] + std::pow(v, p);
      } else {
        pnorm[jj] += std::pow(v, static_cast<double>(P));
      }
    }
  }
}

/// The scalar backend's decode-ready weights: the dequantized matrix, [d_out, d_in] row-major.
struct ScalarPrepared {
  RowMatrix dequantized;
};

inline ScalarPrepared prepare(Scalar, const QuantizedMatrix& q) { return {q.dequantize()}; }

/// Everything the forward product reads besides the prepared weights.
struct ForwardArgs {
  ConstMatrixView x;                     ///< [T, d_in]
  std::span<const float> inverse_scale;  ///< 1/D, length d_in
  ConstMatrixView lowrank_a;             ///< A [r, d_in] (r may be 0)
  ConstMatrixView lowrank_b;             ///< B [d_out, r]
  std::span<const float> bias;           ///< length d_out, or empty
  MatrixView<float> y;                   ///< [T, d_out], written
};

/// Y = (X diag(1/D)) deq^T + (X A^T) B^T + bias (spec "TTQ for one linear layer").
/// The prescale is an fp32 multiply by the precomputed 1/D; the products are Eigen fp32 GEMMs.
inline void forward(Scalar, const ScalarPrepared& prepared, const ForwardArgs& a) {
  const auto x = ttq::detail::as_eigen(a.x);
  const Eigen::Map<const Eigen::RowVectorXf> inv(a.inverse_scale.data(), static_cast<Index>(a.inverse_scale.size()));
  RowMatrix prescaled = x.array().rowwise() * inv.array();
  auto y = ttq::detail::as_eigen(a.y);
  y.noalias() = prescaled * prepared.dequantized.transpose();
  if (a.lowrank_a.rows > 0) {
    const RowMatrix projected = x * ttq::detail::as_eigen(a.lowrank_a).transpose();  // [T, r]
    y.noalias() += projected * ttq::detail::as_eigen(a.lowrank_b).transpose();
  }
  if (!a.bias.empty()) {
    const Eigen::Map<const Eigen::RowVectorXf> bias(a.bias.data(), static_cast<Index>(a.bias.size()));
    y.rowwise() += bias;
  }
}

}  // namespace ttq::backend
