// Tests of residual/low_rank_residual.hpp: the truncated SVD factors and the residual policy.
#include <catch2/catch.hpp>

#include <ttq/residual/low_rank_residual.hpp>

#include "test_support.hpp"

using namespace ttq;

TEST_CASE("the rank-r factors reconstruct a rank-r matrix exactly", "[residual]") {
  const RowMatrix u = test::normal_matrix(20, 3, 1u), v = test::normal_matrix(3, 12, 2u);
  const RowMatrix w = u * v;
  const LowRankFactors f = LowRankResidual<3>().factorize(w);
  CHECK(f.rank() == 3);
  CHECK(f.a.rows() == 3);
  CHECK(f.a.cols() == 12);
  CHECK(f.b.rows() == 20);
  CHECK(f.b.cols() == 3);
  CHECK((f.b * f.a - w).norm() <= 1e-5 * w.norm());
}

TEST_CASE("A has orthonormal rows and B carries the singular values", "[residual]") {
  const RowMatrix w = test::normal_matrix(16, 10, 3u);
  const LowRankFactors f = LowRankResidual<Dynamic>(4).factorize(w);
  const RowMatrix gram = f.a * f.a.transpose();
  CHECK((gram - RowMatrix::Identity(4, 4)).cwiseAbs().maxCoeff() < 1e-5f);
  // Columns of B have non-increasing norms (singular values in order).
  for (Index k = 1; k < 4; ++k) CHECK(f.b.col(k).norm() <= f.b.col(k - 1).norm() + 1e-5f);
}

TEST_CASE("a larger rank leaves a smaller residual on fixed seeded data", "[residual][tendency]") {
  const RowMatrix w = test::normal_matrix(24, 24, 4u);
  double previous = w.squaredNorm();
  for (Index r = 1; r <= 8; ++r) {
    const LowRankFactors f = LowRankResidual<Dynamic>(r).factorize(w);
    const double residual = (w - f.b * f.a).squaredNorm();
    CHECK(residual < previous);
    previous = residual;
  }
}

TEST_CASE("NoResidual and rank 0 keep nothing", "[residual]") {
  const RowMatrix w = test::normal_matrix(5, 7, 5u);
  CHECK(NoResidual{}.factorize(w).rank() == 0);
  CHECK(LowRankResidual<Dynamic>(0).factorize(w).rank() == 0);
}

TEST_CASE("a rank above min(d_out, d_in) is refused with a typed error", "[residual][errors]") {
  const RowMatrix w = test::normal_matrix(5, 7, 6u);
  try {
    LowRankResidual<6>().factorize(w);
    FAIL("rank 6 accepted for a 5x7 matrix");
  } catch (const RangeError& e) {
    CHECK(e.argument() == "rank");
  }
  CHECK_THROWS_AS(LowRankResidual<Dynamic>(-1), RangeError);
  CHECK_THROWS_AS(LowRankResidual<4>(3), RangeError);
}
