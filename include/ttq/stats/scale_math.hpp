// The per-channel formulas of the activation statistic D (spec "The activation statistic D"),
// as TTQ_HOST_DEVICE functions in double precision: DiagCorrelation<P> on the host and the CUDA
// statistics and planning kernels are both written with them, so both evaluate the same
// expressions in the same order. (tests/stats/scale_math.cpp checks the one part they do not
// share, the host's statistics kernels against accumulate_norm().)
//
//   accumulate:  S_j += |x_tj|^p          (p = inf: S_j = max(S_j, |x_tj|))
//   s_j = (S_j / T)^(1/p)                 (p = 1, 2 and inf have their own exact forms)
//   c_j = s_j^2 / mean_k s_k^2            (1 if the mean is 0), optionally blended with a prior
//   D_j = ((1 - lambda) c_j + lambda)^alpha,  floored at 1e-6 max_k D_k, as fp32
#pragma once

#include <math.h>  // ::pow, ::sqrt, ::fabs, ::fmax: the same names on the host and in CUDA device code

#include <cstdint>

#include "ttq/core/host_device.hpp"

namespace ttq::detail {

/// Which p-norm a statistic uses. Mirrors the dispatch of DiagCorrelation<P>: P == 1 -> one,
/// P == 2 -> two, P == InfNorm -> inf, any other P -> power with p = P, and P == Dynamic -> inf
/// if options.p is infinite, one if it is 1 (pow(v, 1) = v exactly, so the sums are the same),
/// else power with p = options.p (even for p = 2: the host's Dynamic path calls pow, and the
/// device must make the same call).
enum class NormKind : std::uint8_t { one, two, inf, power };

struct NormOrder {
  NormKind kind = NormKind::two;
  double p = 2.0;  ///< used by NormKind::power only
};

/// The values of ttq::Dynamic and backend::InfNorm, repeated here so that this header needs
/// neither Eigen nor the scalar backend (a CPU test checks that they agree).
inline constexpr int kDynamicNormMarker = -1;
inline constexpr int kInfNormMarker = 0x7fffffff;

/// The NormOrder that DiagCorrelation<P> with options.p = `p` uses.
template <int P>
constexpr NormOrder norm_order_for(double p) {
  if constexpr (P == 1) return {NormKind::one, 1.0};
  else if constexpr (P == 2) return {NormKind::two, 2.0};
  else if constexpr (P == kInfNormMarker) return {NormKind::inf, 0.0};
  else if constexpr (P == kDynamicNormMarker)
    return p > 1.7976931348623157e308 ? NormOrder{NormKind::inf, 0.0} : (p == 1.0 ? NormOrder{NormKind::one, 1.0} : NormOrder{NormKind::power, p});
  else return {NormKind::power, static_cast<double>(P)};
}

/// The lower bound of D relative to its maximum (DiagCorrelation's kScaleFloorRatio).
inline constexpr double kScaleFloor = 1e-6;

/// The host half of dmul_rn, out of line so that no caller can fuse it into an fma (GCC
/// contracts a*b + c whenever the target has FMA, ISO C++ mode included).
#if defined(__GNUC__)
__attribute__((noinline))
#endif
inline double host_dmul_rn(double a, double b) {
  return a * b;
}

/// a * b rounded to double once and never fused with a following add, on the host and on the
/// device (nvcc contracts by default; __dmul_rn is exempt), so that both evaluate these
/// formulas identically.
TTQ_HOST_DEVICE inline double dmul_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return host_dmul_rn(a, b);
#endif
}

/// One token's contribution to the p-norm sum of a channel; `magnitude` is |x_tj| in double.
TTQ_HOST_DEVICE inline double accumulate_norm(NormOrder order, double sum, double magnitude) {
  switch (order.kind) {
    case NormKind::one: return sum + magnitude;
    case NormKind::two: return sum + dmul_rn(magnitude, magnitude);
    case NormKind::inf: return ::fmax(sum, magnitude);
    case NormKind::power: break;
  }
  return sum + ::pow(magnitude, order.p);
}

/// s_j from the p-norm sum over `tokens` tokens (0 before any token).
TTQ_HOST_DEVICE inline double channel_norm(NormOrder order, double sum, double tokens) {
  if (tokens <= 0.0) return 0.0;
  switch (order.kind) {
    case NormKind::one: return sum / tokens;
    case NormKind::two: return ::sqrt(sum / tokens);
    case NormKind::inf: return sum;
    case NormKind::power: break;
  }
  return ::pow(sum / tokens, 1.0 / order.p);
}

/// c_j = s_j^2 / mean_k s_k^2, or 1 when the mean is 0 (no statistics yet).
TTQ_HOST_DEVICE inline double channel_correlation(double norm, double mean_square) {
  return mean_square > 0.0 ? dmul_rn(norm, norm) / mean_square : 1.0;
}

/// c_j blended with a static prior (paper App. F); callers skip it when mu == 0.
TTQ_HOST_DEVICE inline double blend_prior(double c, double mu, double prior) {
  return dmul_rn(1.0 - mu, c) + dmul_rn(mu, prior);
}

/// D_j before the floor: ((1 - lambda) c_j + lambda)^alpha.
TTQ_HOST_DEVICE inline double damped_scale(double c, double lambda, double alpha) {
  return ::pow(dmul_rn(1.0 - lambda, c) + lambda, alpha);
}

/// The final fp32 D_j: floored at kScaleFloor * max_k D_k (no zero, no division by zero), and 1
/// if even the floor is 0.
TTQ_HOST_DEVICE inline float floored_scale(double d, double d_max) {
  const double floor = dmul_rn(kScaleFloor, d_max);
  const double floored = d < floor ? floor : d;  // std::max(d, floor), spelled for device code
  return static_cast<float>(floored > 0.0 ? floored : 1.0);
}

/// begin_prompt()'s decay beta applied to one running sum (beta = 0 forgets it).
TTQ_HOST_DEVICE inline double decayed_sum(double sum, double beta) { return sum * beta; }

/// The token count after the decay: scaled like the sums, and exactly 0 when beta = 0, so that
/// a forgotten history reads as "no statistics" rather than as a tiny weight.
TTQ_HOST_DEVICE inline double decayed_tokens(double tokens, double beta) { return beta == 0.0 ? 0.0 : tokens * beta; }

}  // namespace ttq::detail
