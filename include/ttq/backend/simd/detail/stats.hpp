// SIMD per-channel statistics over T x d_in activations: sum_t |x_tj|^p (p = 1, 2 or max) and
// sum_t x_tj^2, in double, as backend/scalar/kernels.hpp defines them.
//
// Shape: channels are the vector lanes (doubles, widened exactly from fp32) and each task owns a
// strip of channels for all tokens, keeping its running sums in registers; tokens are added in
// the same order as the reference, and the products of widened floats are exact in double, so
// the sums are bit-identical to the oracle's. Other norms (integer p >= 3, a runtime p) need
// pow() and run the scalar loops, strip-parallel.
#pragma once

#include <cmath>
#include <span>

#include "ttq/backend/parallel.hpp"
#include "ttq/backend/simd/detail/isa.hpp"
#include "ttq/core/types.hpp"
#include "ttq/stats/channel_stats.hpp"

namespace ttq::backend::detail {
inline namespace TTQ_SIMD_NAMESPACE {

/// Loads Batch<double>::size floats widened to double (exact).
template <class A>
xsimd::batch<double, A> load_widened(const float* p, requires_arch<xsimd::generic>) {
  alignas(64) double buffer[xsimd::batch<double, A>::size];
  for (std::size_t i = 0; i < xsimd::batch<double, A>::size; ++i) buffer[i] = static_cast<double>(p[i]);
  return xsimd::batch<double, A>::load_aligned(buffer);
}
#if XSIMD_WITH_AVX
template <class A>
xsimd::batch<double, A> load_widened(const float* p, requires_arch<xsimd::avx>) {
  return _mm256_cvtps_pd(_mm_loadu_ps(p));
}
#endif
#if XSIMD_WITH_AVX512F
template <class A>
xsimd::batch<double, A> load_widened(const float* p, requires_arch<xsimd::avx512f>) {
  return _mm512_cvtps_pd(_mm256_loadu_ps(p));
}
#endif

/// The reference loop for columns [begin, end) (every P, including pow-based ones).
template <int P>
void channel_stats_scalar(ConstMatrixView x, double p, std::span<double> pnorm, std::span<double> square, Index begin,
                          Index end) {
  const ConstMatrixView strip = x.col_block(begin, end - begin);
  ttq::detail::channel_stats_loop<P>(strip, p, pnorm.subspan(static_cast<std::size_t>(begin)),
                                     square.subspan(static_cast<std::size_t>(begin)));
}

/// Columns [begin, end) for P = 1, 2, InfNorm: 4 registers of channels per step, all tokens.
template <int P>
void channel_stats_strip(ConstMatrixView x, std::span<double> pnorm, std::span<double> square, Index begin, Index end) {
  using D = Batch<double>;
  constexpr Index kLanes = static_cast<Index>(D::size);
  constexpr Index kStep = 4 * kLanes;
  Index j = begin;
  for (; j + kStep <= end; j += kStep) {
    D pn[4], sq[4];
    for (int u = 0; u < 4; ++u) {
      pn[u] = D::load_unaligned(pnorm.data() + j + u * kLanes);
      sq[u] = D::load_unaligned(square.data() + j + u * kLanes);
    }
    for (Index t = 0; t < x.rows; ++t) {
      const float* row = x.row(t) + j;
      for (int u = 0; u < 4; ++u) {
        const D v = xsimd::abs(load_widened<Arch>(row + u * kLanes, Arch{}));
        const D v2 = v * v;
        sq[u] = sq[u] + v2;
        if constexpr (P == 1) pn[u] = pn[u] + v;
        else if constexpr (P == 2) pn[u] = pn[u] + v2;
        else pn[u] = xsimd::max(pn[u], v);
      }
    }
    for (int u = 0; u < 4; ++u) {
      pn[u].store_unaligned(pnorm.data() + j + u * kLanes);
      sq[u].store_unaligned(square.data() + j + u * kLanes);
    }
  }
  if (j < end) channel_stats_scalar<P>(x, 0.0, pnorm, square, j, end);
}

/// accumulate_channel_stats for the SIMD backend (same contract as the scalar one).
template <int P>
void channel_stats(ConstMatrixView x, double p, std::span<double> pnorm, std::span<double> square, const Executor& executor) {
  // Strips of 64 channels: enough work per task, and a task's sums stay in registers.
  constexpr Index kGrain = 64;
  const Index strips = (x.cols + kGrain - 1) / kGrain;
  const bool vectorized = P == 1 || P == 2 || P == InfNorm;
  parallel_for(executor, strips, 1, [&](Index s_begin, Index s_end) {
    const Index begin = s_begin * kGrain, end = std::min(x.cols, s_end * kGrain);
    if constexpr (P == 1 || P == 2 || P == InfNorm) {
      channel_stats_strip<P>(x, pnorm, square, begin, end);
    } else {
      channel_stats_scalar<P>(x, p, pnorm, square, begin, end);
    }
  }, vectorized ? 2 : 4);
}

}  // namespace TTQ_SIMD_NAMESPACE
}  // namespace ttq::backend::detail
