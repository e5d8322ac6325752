// Tests of stats/diag_correlation.hpp: the statistic D of the spec, its streaming accumulation,
// decay, prior blend, floor, and sharding normaliser.
#include <catch2/catch.hpp>

#include <ttq/stats/diag_correlation.hpp>

#include <cmath>
#include <vector>

#include "test_support.hpp"

using namespace ttq;

TEST_CASE("streaming statistics over chunks equal one-shot statistics", "[stats][law]") {
  const RowMatrix x = test::outlier_activations(50, 24, 3, 1u);
  DiagCorrelation<2> once, chunked;
  once.observe(x);
  chunked.observe(ConstMatrixView(x).row_block(0, 13));
  chunked.observe(ConstMatrixView(x).row_block(13, 30));
  chunked.observe(ConstMatrixView(x).row_block(43, 7));
  CHECK(chunked.tokens() == 50.0);
  const auto a = once.scales(), b = chunked.scales();
  for (std::size_t j = 0; j < a.size(); ++j) CHECK(a[j] == Approx(b[j]).epsilon(1e-12));
}

TEST_CASE("alpha = 0 or lambda = 1 gives D = 1 exactly (RTN)", "[stats][law]") {
  const RowMatrix x = test::outlier_activations(20, 16, 2, 2u);
  DiagCorrelation<2> alpha0({.alpha = 0.0, .lambda = 0.0}), lambda1({.alpha = 0.7, .lambda = 1.0});
  alpha0.observe(x);
  lambda1.observe(x);
  for (float d : alpha0.scales()) CHECK(d == 1.0f);
  for (float d : lambda1.scales()) CHECK(d == 1.0f);
}

TEST_CASE("p = 2, alpha = 1/2, lambda = 0 is the normalised l2 norm of each channel", "[stats]") {
  const RowMatrix x = test::normal_matrix(40, 8, 3u);
  DiagCorrelation<2> stat({.alpha = 0.5, .lambda = 0.0});
  stat.observe(x);
  std::vector<double> l2(8);
  double mean_square = 0.0;
  for (Index j = 0; j < 8; ++j) {
    l2[static_cast<std::size_t>(j)] = std::sqrt(x.col(j).cast<double>().squaredNorm() / 40.0);
    mean_square += l2[static_cast<std::size_t>(j)] * l2[static_cast<std::size_t>(j)] / 8.0;
  }
  const auto d = stat.scales();
  for (std::size_t j = 0; j < 8; ++j) CHECK(d[j] == Approx(l2[j] / std::sqrt(mean_square)).epsilon(1e-6));
}

TEST_CASE("the p-norm statistic follows its definition for p = 1, 3, Dynamic and infinity", "[stats]") {
  RowMatrix x(3, 2);
  x << 1.0f, -2.0f, -3.0f, 0.5f, 2.0f, 4.0f;
  DiagCorrelation<1> p1;
  DiagCorrelation<3> p3;
  DiagCorrelation<Dynamic> p3_dynamic({.p = 3.0});
  DiagCorrelation<InfNorm> pinf;
  DiagCorrelation<Dynamic> pinf_dynamic({.p = INFINITY});
  for (auto* s : {&p3_dynamic, &pinf_dynamic}) s->observe(x);
  p1.observe(x);
  p3.observe(x);
  pinf.observe(x);
  CHECK(p1.channel_norms()[0] == Approx(2.0));
  CHECK(p1.channel_norms()[1] == Approx(6.5 / 3.0));
  CHECK(p3.channel_norms()[0] == Approx(std::cbrt((1.0 + 27.0 + 8.0) / 3.0)));
  CHECK(p3_dynamic.channel_norms()[1] == Approx(p3.channel_norms()[1]));
  CHECK(pinf.channel_norms()[0] == 3.0);
  CHECK(pinf.channel_norms()[1] == 4.0);
  CHECK(pinf_dynamic.channel_norms()[1] == 4.0);
}

TEST_CASE("a 32k-token prompt loses no precision in the accumulated statistic", "[stats]") {
  // 32768 tokens of 0.1f: a float running sum of squares drifts by ~1e-4 relative; double does not.
  const RowMatrix x = RowMatrix::Constant(32768, 2, 0.1f);
  DiagCorrelation<2> stat;
  for (Index t = 0; t < 32768; t += 4096) stat.observe(ConstMatrixView(x).row_block(t, 4096));
  const double expected = static_cast<double>(0.1f);
  CHECK(std::fabs(stat.channel_norms()[0] - expected) <= 1e-12 * expected);
  CHECK(std::fabs(stat.mean_squares()[1] - expected * expected) <= 1e-12 * expected * expected);
}

TEST_CASE("a global factor on the activations changes no scale", "[stats][law]") {
  const RowMatrix x = test::outlier_activations(30, 12, 2, 4u);
  const RowMatrix x8 = 8.0f * x;
  DiagCorrelation<2> a, b;
  a.observe(x);
  b.observe(x8);
  const auto da = a.scales(), db = b.scales();
  for (std::size_t j = 0; j < da.size(); ++j) CHECK(da[j] == Approx(db[j]).epsilon(1e-12));
}

TEST_CASE("begin_prompt decays old statistics by beta and forgets them with beta = 0", "[stats]") {
  const RowMatrix first = RowMatrix::Constant(10, 2, 1.0f);
  RowMatrix second = RowMatrix::Constant(10, 2, 1.0f);
  second.col(1) *= 3.0f;
  DiagCorrelation<1> forget({.decay = 0.0}), half({.decay = 0.5});
  for (auto* s : {&forget, &half}) {
    s->observe(first);
    s->begin_prompt();
    s->observe(second);
  }
  CHECK(forget.tokens() == 10.0);
  CHECK(forget.channel_norms()[1] == Approx(3.0));
  CHECK(half.tokens() == 15.0);
  CHECK(half.channel_norms()[1] == Approx((0.5 * 10.0 + 30.0) / 15.0));
}

TEST_CASE("the prior correlation blends with weight mu", "[stats]") {
  RowMatrix x(2, 2);
  x << 1.0f, 0.0f, 1.0f, 0.0f;  // c = [2, 0]
  DiagCorrelation<2> stat({.alpha = 1.0, .lambda = 0.0, .prior_weight = 0.25, .prior = {0.0, 4.0}});
  stat.observe(x);
  const auto c = stat.correlation();
  CHECK(c[0] == Approx(0.75 * 2.0));
  CHECK(c[1] == Approx(0.25 * 4.0));
}

TEST_CASE("D is floored at 1e-6 of its maximum, so a dead channel never divides by zero", "[stats]") {
  RowMatrix x = test::normal_matrix(10, 4, 5u);
  x.col(2).setZero();
  DiagCorrelation<2> stat({.alpha = 1.0, .lambda = 0.0});
  stat.observe(x);
  const auto d = stat.scales();
  const float dmax = *std::max_element(d.begin(), d.end());
  CHECK(d[2] > 0.0f);
  CHECK(d[2] == Approx(1e-6f * dmax).epsilon(1e-5));
}

TEST_CASE("before any token every channel scale is 1", "[stats]") {
  DiagCorrelation<2> stat;
  stat.bind(5);
  for (float d : stat.scales()) CHECK(d == 1.0f);
}

TEST_CASE("shards normalised by the global mean square reproduce the unsharded D", "[stats][sharding]") {
  const RowMatrix x = test::outlier_activations(25, 32, 3, 6u);
  DiagCorrelation<2> whole({.alpha = 0.5, .lambda = 0.3}), left({.alpha = 0.5, .lambda = 0.3}),
      right({.alpha = 0.5, .lambda = 0.3});
  whole.observe(x);
  left.observe(ConstMatrixView(x).col_block(0, 16));
  right.observe(ConstMatrixView(x).col_block(16, 16));
  const double global = (left.sum_squared_norms() + right.sum_squared_norms()) / 32.0;
  left.set_global_mean_square(global);
  right.set_global_mean_square(global);
  const auto d = whole.scales(), dl = left.scales(), dr = right.scales();
  for (std::size_t j = 0; j < 16; ++j) {
    CHECK(dl[j] == Approx(d[j]).epsilon(1e-6));
    CHECK(dr[j] == Approx(d[j + 16]).epsilon(1e-6));
  }
}

TEST_CASE("bad statistics input gets a typed error naming the argument", "[stats][errors]") {
  CHECK_THROWS_AS(DiagCorrelation<Dynamic>({.p = 0.5}), RangeError);
  CHECK_THROWS_AS(DiagCorrelation<2>({.alpha = -1.0}), RangeError);
  CHECK_THROWS_AS(DiagCorrelation<2>({.lambda = 1.5}), RangeError);
  CHECK_THROWS_AS(DiagCorrelation<2>({.decay = 2.0}), RangeError);
  CHECK_THROWS_AS(DiagCorrelation<2>({.prior_weight = 0.5}), RangeError);  // no prior given
  DiagCorrelation<2> stat;
  stat.bind(4);
  RowMatrix x = test::normal_matrix(3, 4, 7u);
  x(1, 2) = std::nanf("");
  try {
    stat.observe(x);
    FAIL("NaN accepted");
  } catch (const NonFiniteError& e) {
    CHECK(e.argument() == "x");
  }
  CHECK(stat.tokens() == 0.0);  // nothing of the bad chunk was accumulated
  CHECK_THROWS_AS(stat.observe(RowMatrix(0, 4)), ShapeError);
  CHECK_THROWS_AS(stat.observe(test::normal_matrix(3, 5, 8u)), ShapeError);
  DiagCorrelation<2> with_prior({.prior_weight = 0.5, .prior = {1.0, 1.0}});
  CHECK_THROWS_AS(with_prior.bind(3), ShapeError);
}

TEST_CASE("an exponent or norm order that overflows names alpha or p, not the scales (issue 16)", "[stats][errors]") {
  const RowMatrix x = test::normal_matrix(8, 16, 41u) * 10.0f;  // entries well above 1
  auto argument_of = [](auto&& f) {
    try {
      f();
    } catch (const RangeError& e) {
      return e.argument();
    }
    return std::string("<no error>");
  };
  DiagCorrelation<2> huge_alpha({.alpha = 1e308});
  huge_alpha.observe(x);
  CHECK(argument_of([&] { (void)huge_alpha.scales(); }) == "alpha");
  DiagCorrelation<Dynamic> huge_p({.p = 1e308});
  huge_p.observe(x);
  CHECK(argument_of([&] { (void)huge_p.scales(); }) == "p");
  // Large but representable settings still work.
  DiagCorrelation<2> fine({.alpha = 4.0});
  fine.observe(x);
  for (float d : fine.scales()) CHECK((std::isfinite(d) && d > 0.0f));
}
