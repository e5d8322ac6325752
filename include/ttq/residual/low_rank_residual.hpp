// Residual policies: what part of W is kept in full precision next to the quantized weights.
//
// LowRankResidual<R> keeps the rank-R truncated SVD of W (B = U_r S_r, A = V_r^T; paper
// "TTQ with Low-Rank Decomposition") and TTQ quantizes only R = W - B A. NoResidual keeps nothing.
// The factors are static: computed once when the layer's shared weights are built.
#pragma once

#include <Eigen/SVD>

#include <algorithm>
#include <concepts>
#include <string>

#include "ttq/core/error.hpp"
#include "ttq/core/types.hpp"

namespace ttq {

/// Low-rank factors of a weight: W ~ B A.
struct LowRankFactors {
  RowMatrix a;  ///< A [r, d_in], row-major
  RowMatrix b;  ///< B [d_out, r], row-major
  Index rank() const { return a.rows(); }
};

/// No full-precision residual: the whole W is quantized.
struct NoResidual {
  static constexpr int rank = 0;
  Index rank_value() const { return 0; }
  LowRankFactors factorize(ConstMatrixView w) const { return {RowMatrix(0, w.cols), RowMatrix(w.rows, 0)}; }
};

/// Rank-R truncated SVD of W, computed in double precision (Eigen's BDCSVD).
/// R is a compile-time rank >= 1 or Dynamic (then given to the constructor).
template <int R>
class LowRankResidual {
  static_assert(R == Dynamic || R >= 1, "LowRankResidual: R must be >= 1 or Dynamic (use NoResidual for 0)");

 public:
  static constexpr int rank = R;

  LowRankResidual()
    requires(R != Dynamic)
      : rank_(R) {}
  /// For R == Dynamic: the runtime rank (>= 0; 0 behaves as NoResidual). Otherwise must equal R.
  explicit LowRankResidual(Index runtime_rank) : rank_(runtime_rank) {
    detail::require_range(runtime_rank >= 0 && (R == Dynamic || runtime_rank == R), "rank",
                          R == Dynamic ? std::string("a rank >= 0") : "the compile-time rank " + std::to_string(R),
                          std::to_string(runtime_rank));
  }

  Index rank_value() const { return rank_; }

  /// B, A of the rank-r truncated SVD of w [d_out, d_in]. Throws RangeError if r > min(d_out, d_in).
  LowRankFactors factorize(ConstMatrixView w) const {
    detail::require_range(rank_ <= std::min(w.rows, w.cols), "rank",
                          "rank <= min(d_out, d_in) = " + std::to_string(std::min(w.rows, w.cols)), std::to_string(rank_));
    if (rank_ == 0) return NoResidual{}.factorize(w);
    const Eigen::MatrixXd wd = ttq::detail::as_eigen(w).cast<double>();
    Eigen::BDCSVD<Eigen::MatrixXd> svd(wd, Eigen::ComputeThinU | Eigen::ComputeThinV);
    LowRankFactors f;
    f.b = (svd.matrixU().leftCols(rank_) * svd.singularValues().head(rank_).asDiagonal()).cast<float>();
    f.a = svd.matrixV().leftCols(rank_).transpose().cast<float>();
    return f;
  }

 private:
  Index rank_;
};

/// What an operator needs from a residual policy: a `rank` constant (or Dynamic), the runtime
/// `rank_value()`, and `factorize(W) -> LowRankFactors`.
template <class R>
concept ResidualPolicy = requires(const R& r, ConstMatrixView w) {
  { R::rank } -> std::convertible_to<int>;
  { r.rank_value() } -> std::convertible_to<Index>;
  { r.factorize(w) } -> std::same_as<LowRankFactors>;
};

}  // namespace ttq
