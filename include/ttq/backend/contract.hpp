// The backend contract: what a backend is and which kernels it must provide.
//
// A backend is an empty tag type. Its kernels are free functions overloaded on the tag (as
// xsimd's `requires_arch<A>`), found by argument-dependent lookup, so a backend can be declared
// outside ttq's headers. Operators call them once per call at this boundary, never inside loops;
// the scale policies reach them only through what the operator lends them (stats/scale_plan.hpp),
// so every policy runs on the operator's backend. A backend that lacks a kernel does not satisfy
// `BackendKernels` and the operator does not compile: there is no silent fallback.
//
// The kernels (B is the tag; the reference implementations are in quant/reference.hpp and
// stats/channel_stats.hpp, and every backend is tested against them):
//   quantize_into(B, QuantConfig, ConstMatrixView w, span<const float> col_scale,
//                 span<const float> group_clip, span<const double> channel_weight,
//                 QuantizedMatrix& out) -> double
//       quantize w*diag(col_scale) into `out` (reshaped, storage reused); identical codes to the
//       reference; returns the diagonal-weighted error E when channel_weight is non-empty
//       (docs/numerics.md states each backend's accuracy of E), else 0.
//   quantize(B, QuantConfig, w, col_scale, group_clip) -> QuantizedMatrix
//       quantize_into into a new matrix.
//   accumulate_channel_stats<P>(B, ConstMatrixView x, double p, span<double> pnorm, span<double> square)
//       the reference statistics (bit-identical sums for P = 1, 2, InfNorm).
//   prepare(B, const QuantizedMatrix&) -> the backend's decode-ready form of the weights
//   forward(B, const Prepared&, const ForwardArgs&)
//       Y = (X diag(1/D)) deq^T + (X A^T) B^T + bias, within the backend's stated tolerance.
#pragma once

#include <concepts>
#include <functional>
#include <span>
#include <type_traits>
#include <utility>

#include "ttq/backend/parallel.hpp"
#include "ttq/core/markers.hpp"
#include "ttq/core/types.hpp"
#include "ttq/quant/quant_config.hpp"
#include "ttq/quant/quantized_matrix.hpp"
#include "ttq/stats/channel_stats.hpp"
#include "ttq/stats/scale_plan.hpp"

namespace ttq::backend {

using ttq::InfNorm;

/// Tag-type requirements: a name and being an empty, default-constructible tag.
template <class B>
concept Backend = std::is_empty_v<B> && std::default_initializable<B> && requires {
  { B::name } -> std::convertible_to<const char*>;
};

/// Everything the forward product reads besides the prepared weights.
struct ForwardArgs {
  ConstMatrixView x;                     ///< [T, d_in]
  std::span<const float> inverse_scale;  ///< 1/D, length d_in
  ConstMatrixView lowrank_a;             ///< A [r, d_in] (r may be 0)
  ConstMatrixView lowrank_b;             ///< B [d_out, r]
  std::span<const float> bias;           ///< length d_out, or empty
  MatrixView<float> y;                   ///< [T, d_out], written
};

/// A backend tag together with every kernel of the contract above.
template <class B>
concept BackendKernels =
    Backend<B> && requires(const QuantConfig& config, ConstMatrixView w, std::span<const float> scales,
                           std::span<const double> weights, QuantizedMatrix& out, const QuantizedMatrix& q,
                           std::span<double> sums, const ForwardArgs& args) {
      { quantize_into(B{}, config, w, scales, scales, weights, out) } -> std::same_as<double>;
      { quantize(B{}, config, w, scales, scales) } -> std::same_as<QuantizedMatrix>;
      accumulate_channel_stats<1>(B{}, w, 1.0, sums, sums);
      accumulate_channel_stats<InfNorm>(B{}, w, 1.0, sums, sums);
      accumulate_channel_stats<Dynamic>(B{}, w, 1.0, sums, sums);
      forward(B{}, prepare(B{}, q), args);
    };

/// B's statistics kernel, type-erased as the scale policies take it (stats/scale_plan.hpp).
template <class B>
ChannelStatsKernel channel_stats_kernel() {
  return [](int p_kind, ConstMatrixView x, double p, std::span<double> pnorm, std::span<double> square) {
    switch (p_kind) {
      case 1: accumulate_channel_stats<1>(B{}, x, p, pnorm, square); break;
      case 2: accumulate_channel_stats<2>(B{}, x, p, pnorm, square); break;
      case InfNorm: accumulate_channel_stats<InfNorm>(B{}, x, p, pnorm, square); break;
      default: accumulate_channel_stats<Dynamic>(B{}, x, p, pnorm, square); break;
    }
  };
}

/// B's quantize_into for `config`, type-erased as the scale policies take it.
template <class B>
QuantizeKernel quantize_kernel(const QuantConfig& config) {
  return [config](ConstMatrixView w, std::span<const float> d, std::span<const float> clip, std::span<const double> c,
                  QuantizedMatrix& out) { return quantize_into(B{}, config, w, d, clip, c, out); };
}

/// The current executor (backend/parallel.hpp) as the scale policies take it.
inline RangeRunner range_runner() {
  return [](Index count, Index grain, const std::function<void(Index, Index)>& f) { parallel_for(*current_executor(), count, grain, f); };
}

/// The decode-ready weights type of backend B.
template <class B>
using PreparedWeights = decltype(prepare(B{}, std::declval<const QuantizedMatrix&>()));

}  // namespace ttq::backend
