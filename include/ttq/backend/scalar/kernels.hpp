// The scalar reference backend: the kernels of backend/contract.hpp as thin wrappers around the
// reference algorithms (quant/reference.hpp, stats/channel_stats.hpp) and an Eigen fp32 forward
// product on the dequantized weights. It is the oracle the SIMD and CUDA backends are tested
// against (identical codes, outputs within stated tolerances), not a fast path: its prepared
// form is a dense fp32 copy of the weights. Engines use backend::Default (backend/default.hpp).
#pragma once

#include <span>

#include "ttq/backend/contract.hpp"
#include "ttq/core/types.hpp"
#include "ttq/quant/quant_config.hpp"
#include "ttq/quant/quantized_matrix.hpp"
#include "ttq/quant/reference.hpp"
#include "ttq/stats/channel_stats.hpp"

namespace ttq::backend {

/// Plain loops that read like the spec; the reference for every other backend.
struct Scalar {
  static constexpr const char* name = "scalar";
};

/// quantize_into: the reference quantizer (quant/reference.hpp), E computed exactly as the spec.
inline double quantize_into(Scalar, const QuantConfig& config, ConstMatrixView w, std::span<const float> col_scale,
                            std::span<const float> group_clip, std::span<const double> channel_weight, QuantizedMatrix& out) {
  return reference_quantize_into(config, w, col_scale, group_clip, channel_weight, out);
}

inline QuantizedMatrix quantize(Scalar, const QuantConfig& config, ConstMatrixView w, std::span<const float> col_scale,
                                std::span<const float> group_clip) {
  return reference_quantize(config, w, col_scale, group_clip);
}

/// accumulate_channel_stats: the reference statistics (stats/channel_stats.hpp).
template <int P>
void accumulate_channel_stats(Scalar, ConstMatrixView x, double p, std::span<double> pnorm, std::span<double> square) {
  reference_channel_stats<P>(x, p, pnorm, square);
}

/// The scalar backend's decode-ready weights: the dequantized matrix, [d_out, d_in] row-major.
struct ScalarPrepared {
  RowMatrix dequantized;
};

inline ScalarPrepared prepare(Scalar, const QuantizedMatrix& q) { return {q.dequantize()}; }

/// The reference forward product on a dense dequantized matrix [d_out, d_in]:
/// Y = (X diag(1/D)) deq^T + (X A^T) B^T + bias. The prescale is an fp32 multiply by the
/// precomputed 1/D; the products are Eigen fp32 GEMMs. (The SIMD backend's dense fallback uses
/// it too.)
inline void reference_forward(const RowMatrix& dequantized, const ForwardArgs& a) {
  const auto x = ttq::detail::as_eigen(a.x);
  const Eigen::Map<const Eigen::RowVectorXf> inv(a.inverse_scale.data(), static_cast<Index>(a.inverse_scale.size()));
  const RowMatrix prescaled = x.array().rowwise() * inv.array();
  auto y = ttq::detail::as_eigen(a.y);
  y.noalias() = prescaled * dequantized.transpose();
  if (a.lowrank_a.rows > 0) {
    const RowMatrix projected = x * ttq::detail::as_eigen(a.lowrank_a).transpose();  // [T, r]
    y.noalias() += projected * ttq::detail::as_eigen(a.lowrank_b).transpose();
  }
  if (!a.bias.empty()) {
    const Eigen::Map<const Eigen::RowVectorXf> bias(a.bias.data(), static_cast<Index>(a.bias.size()));
    y.rowwise() += bias;
  }
}

inline void forward(Scalar, const ScalarPrepared& prepared, const ForwardArgs& a) { reference_forward(prepared.dequantized, a); }

}  // namespace ttq::backend
