// The interface between a correlation policy (which decides the per-channel scales D) and the
// operator that quantizes with them: ScalePlan is what a policy returns, ScaleContext is what
// the operator lends it (the matrix to be quantized and a way to quantize it), so that policies
// that search over candidates (static AWQ, adaptive exponents) need no backend of their own.
#pragma once

#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "ttq/backend/scalar/kernels.hpp"
#include "ttq/core/types.hpp"
#include "ttq/quant/quant_config.hpp"
#include "ttq/quant/quantized_matrix.hpp"

namespace ttq {

/// The decision of a correlation policy for one quantization.
struct ScalePlan {
  std::vector<float> scales;      ///< D, length d_in, finite and positive
  std::vector<float> group_clip;  ///< per-group clip ratios [d_out, groups], or empty (use config.clip)
  /// Set when the policy already quantized with exactly these scales while choosing them, so the
  /// operator need not quantize again.
  std::optional<QuantizedMatrix> quantized;
};

/// What the operator lends a policy while it plans.
struct ScaleContext {
  ConstMatrixView weight;  ///< the matrix that gets quantized (W, or W - B A), [d_out, d_in]
  QuantConfig config;      ///< resolved for d_in
  /// Quantizes weight * diag(D) with optional per-group clip ratios, on the operator's backend.
  std::function<QuantizedMatrix(std::span<const float> scales, std::span<const float> group_clip)> quantize;
  /// Quantizes weight * diag(D) and returns sum_j c_j sum_i (W_ij - W^_ij)^2 from the same pass.
  std::function<backend::WeightedQuantization(std::span<const float> scales, std::span<const double> channel_weight)>
      quantize_with_error;
};

}  // namespace ttq
