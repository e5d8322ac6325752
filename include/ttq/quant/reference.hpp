// The reference quantizer: the one loop that defines groupwise quantization, written as plain
// code that follows docs/spec.md line by line. Every backend's quantize kernel is tested against
// it (identical codes, scales and zeros); the scalar backend is a thin wrapper around it, and the
// standalone Quantizer::quantize calls it directly. (ggml keeps its `quantize_row_*_ref` in the
// core library the same way: backends depend on the reference, never the other way round.)
#pragma once

#include <cmath>
#include <span>
#include <string>
#include <vector>

#include "ttq/core/error.hpp"
#include "ttq/core/instrumentation.hpp"
#include "ttq/core/types.hpp"
#include "ttq/quant/format.hpp"
#include "ttq/quant/group_kernel.hpp"
#include "ttq/quant/quant_config.hpp"
#include "ttq/quant/quantized_matrix.hpp"

namespace ttq {

/// Gives `out` the shape and metadata of a quantization of a [rows, cols] matrix with `config`,
/// reusing its storage (no allocation when the shape is unchanged: the per-prompt path).
/// `zero_codes`: clear the packed words (kernels that OR codes into words need it; kernels that
/// store whole words do not).
inline void reshape_quantized(const QuantConfig& config, Index rows, Index cols, QuantizedMatrix& out, bool zero_codes = true) {
  out.rows = rows;
  out.cols = cols;
  out.group = config.group;
  out.bits = config.bits;
  out.format = config.format;
  out.words_per_row = packed_words_per_row(cols, config.bits);
  const auto words = static_cast<std::size_t>(rows * out.words_per_row);
  const auto groups = static_cast<std::size_t>(rows * out.groups_per_row());
  if (zero_codes) out.codes.assign(words, 0u);
  else out.codes.resize(words);
  out.scales.resize(groups);
  out.zeros.resize(groups);
}

/// A new QuantizedMatrix of the right shape for `config` (codes zeroed).
inline QuantizedMatrix make_quantized_matrix(const QuantConfig& config, Index rows, Index cols) {
  QuantizedMatrix q;
  reshape_quantized(config, rows, cols, q);
  return q;
}

namespace detail {

/// Quantizes `w * diag(col_scale)` with format F into `out` (already shaped, codes zeroed).
/// Each group's min/max is taken over the scaled values (fp32 products, as llm-awq's
/// `weight * scales`), shrunk by the clip ratio, then fit/encode per the format.
/// When `channel_weight` is non-empty, also returns sum_j c_j sum_i (w_ij - w^_ij / d_j)^2, the
/// diagonal-weighted error of the adaptive exponent (spec "Adaptive exponent"), in the same pass.
template <NumberFormat F>
double reference_quantize_rows(const QuantConfig& config, ConstMatrixView w, std::span<const float> col_scale,
                               std::span<const float> group_clip, QuantizedMatrix& out,
                               std::span<const double> channel_weight) {
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
      GroupRange range = empty_range();
      for (Index k = 0; k < width; ++k) {
        const float v = col_scale.empty() ? row[begin + k] : scaled_weight(row[begin + k], col_scale[static_cast<std::size_t>(begin + k)]);
        scaled[static_cast<std::size_t>(k)] = v;
        range = merge_range(range, range_of(v));
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
      const GroupParams p = fit_group<F>(range, clip, config.bits);
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

/// The reference quantization kernel, with the contract every backend's `quantize_into` has:
/// quantizes `w * diag(col_scale)` ([rows, cols], any row stride; `col_scale` empty means all
/// ones, else length cols) into `out`, reshaped and reusing its storage. `group_clip` optionally
/// overrides the clip ratio per group ([rows, groups_per_row], row-major). When `channel_weight`
/// (length cols) is non-empty, returns E = sum_j c_j sum_i (w_ij - deq_ij / d_j)^2 from the same
/// pass, else 0. Throws NonFiniteError if a scaled weight is not finite.
/// Preconditions (checked by callers): config.validate(cols), spans sized as stated.
inline double reference_quantize_into(const QuantConfig& config, ConstMatrixView w, std::span<const float> col_scale,
                                      std::span<const float> group_clip, std::span<const double> channel_weight,
                                      QuantizedMatrix& out) {
  detail::count_reference_call();
  reshape_quantized(config, w.rows, w.cols, out);
  return visit_format(config.format, [&](auto f) {
    return detail::reference_quantize_rows<decltype(f)>(config, w, col_scale, group_clip, out, channel_weight);
  });
}

/// The spec's E = sum_j c_j sum_i (w_ij - deq(q)_ij / d_j)^2 of an existing quantization `q` of
/// w * diag(col_scale), in the reference's order and precision (what reference_quantize_into
/// returns from its own pass; for backends that quantize where E cannot be measured, e.g. a GPU).
inline double reference_weighted_error(const QuantizedMatrix& q, ConstMatrixView w, std::span<const float> col_scale,
                                       std::span<const double> channel_weight) {
  return visit_format(q.format, [&](auto f) {
    using F = decltype(f);
    double error = 0.0;
    for (Index r = 0; r < w.rows; ++r)
      for (Index c = 0; c < w.cols; ++c) {
        const auto j = static_cast<std::size_t>(c);
        const double d = col_scale.empty() ? 1.0 : static_cast<double>(col_scale[j]);
        const double diff = static_cast<double>(w(r, c)) - static_cast<double>(F::decode(q.code(r, c), q.params(r, c / q.group), q.bits)) / d;
        error += channel_weight[j] * diff * diff;
      }
    return error;
  });
}

/// reference_quantize_into into a new matrix (no error).
inline QuantizedMatrix reference_quantize(const QuantConfig& config, ConstMatrixView w, std::span<const float> col_scale,
                                          std::span<const float> group_clip) {
  QuantizedMatrix q;
  reference_quantize_into(config, w, col_scale, group_clip, {}, q);
  return q;
}

}  // namespace ttq
