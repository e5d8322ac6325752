// The reference activation statistics: per-channel p-norm sums and square sums over the tokens of
// X, the loop every backend's `accumulate_channel_stats` kernel is tested against (bit-identical
// sums for p = 1, 2, inf). The scalar backend wraps it; DiagCorrelation's standalone observe(x)
// calls it directly.
#pragma once

#include <cmath>
#include <functional>
#include <span>

#include "ttq/core/instrumentation.hpp"
#include "ttq/core/markers.hpp"
#include "ttq/core/types.hpp"

namespace ttq {

/// Adds per-channel sums over the rows (tokens) of `x` [T, d_in]: `pnorm[j] += sum_t |x_tj|^p`
/// (for P == InfNorm: `pnorm[j] = max(pnorm[j], max_t |x_tj|)`) and `square[j] += sum_t x_tj^2`.
/// Sums are in double so that a 32k-token prompt loses no precision. P == Dynamic reads `p`.
template <int P>
void reference_channel_stats(ConstMatrixView x, double p, std::span<double> pnorm, std::span<double> square);

namespace detail {
/// The loop of reference_channel_stats, uncounted: the SIMD kernel runs it for the p it does
/// not vectorize and for its ragged columns (core/instrumentation.hpp).
template <int P>
void channel_stats_loop(ConstMatrixView x, double p, std::span<double> pnorm, std::span<double> square) {
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
}  // namespace detail

template <int P>
void reference_channel_stats(ConstMatrixView x, double p, std::span<double> pnorm, std::span<double> square) {
  detail::count_reference_call();
  detail::channel_stats_loop<P>(x, p, pnorm, square);
}

/// The statistics kernel an operator lends its scale policy (its backend's, type-erased so that
/// policies need no backend): `p_kind` is 1, 2, InfNorm or Dynamic (then `p` is the norm; an
/// integer P other than 1 and 2 is passed as Dynamic with p = P).
using ChannelStatsKernel =
    std::function<void(int p_kind, ConstMatrixView x, double p, std::span<double> pnorm, std::span<double> square)>;

/// Runs reference_channel_stats for a runtime p_kind (the standalone path of the policies).
inline void reference_channel_stats_dynamic(int p_kind, ConstMatrixView x, double p, std::span<double> pnorm,
                                            std::span<double> square) {
  switch (p_kind) {
    case 1: reference_channel_stats<1>(x, p, pnorm, square); break;
    case 2: reference_channel_stats<2>(x, p, pnorm, square); break;
    case InfNorm: reference_channel_stats<InfNorm>(x, p, pnorm, square); break;
    default: reference_channel_stats<Dynamic>(x, p, pnorm, square); break;
  }
}

/// The p_kind a statistics kernel gets for the compile-time norm P (see ChannelStatsKernel).
constexpr int channel_stats_kind(int P) { return (P == 1 || P == 2 || P == InfNorm) ? P : Dynamic; }

}  // namespace ttq
