// Metrics of the spec: the relative activation-aware error of a layer (paper Eq. 2) and the
// analytic overhead model of online quantization (paper Eq. 3).
#pragma once

#include <string>

#include "ttq/core/error.hpp"
#include "ttq/core/types.hpp"

namespace ttq {

/// E = ||X (W - W^)^T||_F^2 / ||X W^T||_F^2, in double. X [T, d_in], W and W^ [d_out, d_in].
/// Returns 0 when both numerator and denominator are 0; +inf when only the denominator is.
/// NaN or Inf in any input throws NonFiniteError naming it (never a NaN "error").
inline double relative_error(ConstMatrixView x, ConstMatrixView w, ConstMatrixView w_hat) {
  detail::require_valid_view(x, "x");
  detail::require_valid_view(w, "w");
  detail::require_valid_view(w_hat, "w_hat");
  detail::require_shape(w.cols == x.cols, "w", "[d_out, " + std::to_string(x.cols) + "]", w.rows, w.cols);
  detail::require_shape(w_hat.rows == w.rows && w_hat.cols == w.cols, "w_hat", detail::describe_shape(w.rows, w.cols),
                        w_hat.rows, w_hat.cols);
  detail::require_finite(x, "x");
  detail::require_finite(w, "w");
  detail::require_finite(w_hat, "w_hat");
  const Eigen::MatrixXd xd = detail::as_eigen(x).cast<double>();
  const Eigen::MatrixXd wd = detail::as_eigen(w).cast<double>();
  const Eigen::MatrixXd ed = wd - detail::as_eigen(w_hat).cast<double>();
  const double numerator = (xd * ed.transpose()).squaredNorm();
  const double denominator = (xd * wd.transpose()).squaredNorm();
  if (denominator == 0.0) return numerator == 0.0 ? 0.0 : INFINITY;
  return numerator / denominator;
}

/// The inputs of the Eq. 3 overhead model.
struct OverheadModel {
  Index d_out = 0;
  Index d_in = 0;
  Index tokens = 0;                 ///< T
  double quantize_ops_per_weight = 8.0;  ///< k: operations per weight of one quantization pass
  Index rank = 0;                   ///< low-rank r (0: none)

  /// (2 d_in T + (1 + k) d_out d_in) / (d_out d_in T) + r (d_in + d_out) / (d_out d_in):
  /// extra operations relative to the plain projection's d_out d_in T multiply-adds.
  double ratio() const {
    detail::require_range(d_out >= 1 && d_in >= 1 && tokens >= 1, "OverheadModel", "d_out, d_in, tokens >= 1",
                          detail::describe_shape(d_out, d_in) + ", T=" + std::to_string(tokens));
    const double o = static_cast<double>(d_out), i = static_cast<double>(d_in), t = static_cast<double>(tokens);
    const double base = (2.0 * i * t + (1.0 + quantize_ops_per_weight) * o * i) / (o * i * t);
    return base + static_cast<double>(rank) * (i + o) / (o * i);
  }
};

}  // namespace ttq
