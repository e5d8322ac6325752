// The compile-time markers every layer uses in template arguments: `Dynamic` (a value given at
// run time) and `InfNorm` (the p = infinity norm of the activation statistic). Eigen-free, so
// that the lowest layers can name them without pulling in a matrix library.
#pragma once

namespace ttq {

/// Marker for a template size known only at run time (as Eigen's `Dynamic`).
inline constexpr int Dynamic = -1;

/// Marker for the p = infinity (max) norm in `DiagCorrelation<P>` and the statistics kernels.
inline constexpr int InfNorm = 0x7fffffff;

}  // namespace ttq
