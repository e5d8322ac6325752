// Tests of op/metrics.hpp: the relative error of Eq. 2 and the overhead model of Eq. 3.
#include <catch2/catch.hpp>

#include <ttq/op/metrics.hpp>

#include <cmath>
#include <string>

using namespace ttq;

TEST_CASE("the relative error follows its definition on a hand-computed case", "[metrics]") {
  RowMatrix x(2, 2), w(1, 2), w_hat(1, 2);
  x << 1.0f, 0.0f, 0.0f, 2.0f;
  w << 3.0f, 4.0f;      // X W^T = [3, 8], squared norm 73
  w_hat << 3.0f, 3.5f;  // X (W - W^)^T = [0, 1], squared norm 1
  CHECK(relative_error(x, w, w_hat) == Approx(1.0 / 73.0));
  CHECK(relative_error(x, w, w) == 0.0);
  CHECK_THROWS_AS(relative_error(x, w, RowMatrix(2, 2)), ShapeError);
}

TEST_CASE("the overhead model is 2/d_out + (1 + k)/T plus the low-rank term", "[metrics]") {
  const OverheadModel m{.d_out = 4096, .d_in = 4096, .tokens = 512, .quantize_ops_per_weight = 8.0};
  CHECK(m.ratio() == Approx(2.0 / 4096.0 + 9.0 / 512.0));
  OverheadModel lr = m;
  lr.rank = 16;
  CHECK(lr.ratio() - m.ratio() == Approx(16.0 * 8192.0 / (4096.0 * 4096.0)));
  CHECK_THROWS_AS((OverheadModel{.d_out = 0, .d_in = 1, .tokens = 1}.ratio()), RangeError);
}

TEST_CASE("the relative error refuses NaN or Inf input, naming it (issue 16)", "[metrics][errors]") {
  RowMatrix x = RowMatrix::Ones(2, 3), w = RowMatrix::Ones(4, 3), w_hat = RowMatrix::Ones(4, 3);
  auto argument_of = [&] {
    try {
      (void)relative_error(x, w, w_hat);
    } catch (const NonFiniteError& e) {
      return e.argument();
    }
    return std::string("<no error>");
  };
  x(1, 2) = std::nanf("");
  CHECK(argument_of() == "x");
  x(1, 2) = 1.0f;
  w(0, 0) = INFINITY;
  CHECK(argument_of() == "w");
  w(0, 0) = 1.0f;
  w_hat(3, 1) = -INFINITY;
  CHECK(argument_of() == "w_hat");
  // Finite input near FLT_MAX is computed in double: a finite answer.
  w_hat(3, 1) = 1.0f;
  x.setConstant(3e38f);
  CHECK(std::isfinite(relative_error(x, w, w_hat)));
}
