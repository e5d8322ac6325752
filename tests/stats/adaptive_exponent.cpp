// Tests of stats/adaptive_exponent.hpp: the per-prompt exponent choice of TTQ.
#include <catch2/catch.hpp>

#include <ttq/backend/scalar/kernels.hpp>
#include <ttq/op/metrics.hpp>
#include <ttq/op/online_awq.hpp>
#include <ttq/stats/adaptive_exponent.hpp>

#include <cmath>
#include <string>

#include "test_support.hpp"

using namespace ttq;

namespace {
using Q3 = Quantizer<3, 32>;
using Adaptive3 = OnlineAWQ<Q3, AdaptiveExponent<1>>;

// E_a of the spec, computed from the public pieces only: Quantizer::quantize_dequantize and
// the statistics of DiagCorrelation.
double diagonal_weighted_error(const RowMatrix& w, const std::vector<float>& d, const std::vector<double>& c) {
  const RowMatrix w_hat = Q3().quantize_dequantize(w, d);
  double e = 0.0;
  for (Index j = 0; j < w.cols(); ++j) e += c[static_cast<std::size_t>(j)] * (w.col(j) - w_hat.col(j)).cast<double>().squaredNorm();
  return e;
}
}  // namespace

TEST_CASE("the adaptive exponent picks alpha = 0 when activations are uniform", "[stats][adaptive]") {
  const RowMatrix w = test::normal_matrix(16, 64, 1u);
  RowMatrix x = RowMatrix::Ones(8, 64);
  for (Index t = 0; t < 8; t += 2) x.row(t) *= -1.0f;  // |x| = 1 everywhere: s_j all equal
  Adaptive3 op(w, {});
  op.calibrate(x);
  REQUIRE(op.correlation().chosen_exponent().has_value());
  CHECK(*op.correlation().chosen_exponent() == 0.0);
}

TEST_CASE("the adaptive choice equals an exhaustive evaluation of every grid point through the public API",
          "[stats][adaptive]") {
  for (std::uint32_t seed : {2u, 3u, 4u}) {
    const RowMatrix w = test::normal_matrix(32, 96, seed);
    const RowMatrix x = test::outlier_activations(40, 96, 3, seed + 100u);
    Adaptive3 op(w, {});
    op.calibrate(x);

    DiagCorrelation<1> stat;
    stat.observe(x);
    const std::vector<double> s = stat.channel_norms(), c = stat.mean_squares();
    double best = INFINITY, best_a = -1.0;
    const auto& grid = op.correlation().options().grid;
    for (std::size_t k = 0; k < grid.size(); ++k) {
      std::vector<float> d(s.size());
      for (std::size_t j = 0; j < s.size(); ++j) d[j] = static_cast<float>(std::max(std::pow(s[j], grid[k]), 1e-4));
      const double e = diagonal_weighted_error(w, d, c);
      // quantize_dequantize divides by D in fp32, the kernel in double: ~1e-7 relative apart.
      CHECK(op.correlation().candidate_errors()[k] == Approx(e).epsilon(1e-6));
      if (e < best) {
        best = e;
        best_a = grid[k];
      }
    }
    CHECK(*op.correlation().chosen_exponent() == best_a);
    // The operator's quantization is the winning candidate's, not a re-quantization with other scales.
    std::vector<float> d_best(s.size());
    for (std::size_t j = 0; j < s.size(); ++j) d_best[j] = static_cast<float>(std::max(std::pow(s[j], best_a), 1e-4));
    CHECK(op.quantized().unpacked_codes() == Q3().quantize(w, d_best).unpacked_codes());
  }
}

TEST_CASE("on a tall layer the candidates are measured on every k-th row; the winner is quantized in full",
          "[stats][adaptive]") {
  // 100 rows, error_rows 32: k = ceil(100 / 32) = 4, rows 0, 4, ..., 96 (25 rows) are measured.
  const RowMatrix w = test::normal_matrix(100, 96, 41u);
  const RowMatrix x = test::outlier_activations(40, 96, 3, 42u);
  AdaptiveExponentOptions sampled_options;
  sampled_options.error_rows = 32;
  OnlineAWQ<Q3, AdaptiveExponent<1>, NoResidual, backend::Scalar> sampled(w, {}, Q3(), AdaptiveExponent<1>(sampled_options));
  sampled.calibrate(x);

  RowMatrix measured(25, 96);
  for (Index i = 0; i < 25; ++i) measured.row(i) = w.row(4 * i);
  DiagCorrelation<1> stat;
  stat.observe(x);
  const std::vector<double> s = stat.channel_norms(), c = stat.mean_squares();
  const auto& grid = sampled.correlation().options().grid;
  double best = INFINITY, best_a = -1.0;
  for (std::size_t k = 0; k < grid.size(); ++k) {
    const std::vector<float> d = exponent_scales(s, grid[k], 1e-4, false);
    const double e = diagonal_weighted_error(measured, d, c);
    CHECK(sampled.correlation().candidate_errors()[k] == Approx(e).epsilon(1e-6));
    if (e < best) {
      best = e;
      best_a = grid[k];
    }
  }
  CHECK(*sampled.correlation().chosen_exponent() == best_a);
  // Every row, measured or not, holds the full quantization with the winner's scales.
  CHECK(sampled.quantized().rows == 100);
  CHECK(sampled.quantized().unpacked_codes() == Q3().quantize(w, exponent_scales(s, best_a, 1e-4, false)).unpacked_codes());

  // A layer no taller than error_rows is measured on every row: the same as error_rows = 0.
  AdaptiveExponentOptions all_rows;
  all_rows.error_rows = 0;
  AdaptiveExponentOptions tall_enough;
  tall_enough.error_rows = 100;
  OnlineAWQ<Q3, AdaptiveExponent<1>, NoResidual, backend::Scalar> exact(w, {}, Q3(), AdaptiveExponent<1>(all_rows));
  OnlineAWQ<Q3, AdaptiveExponent<1>, NoResidual, backend::Scalar> same(w, {}, Q3(), AdaptiveExponent<1>(tall_enough));
  exact.calibrate(x);
  same.calibrate(x);
  CHECK(same.correlation().candidate_errors() == exact.correlation().candidate_errors());
  CHECK(same.quantized().codes == exact.quantized().codes);
}

TEST_CASE("on outlier activations the adaptive exponent is no worse than RTN in its own criterion", "[stats][adaptive]") {
  const RowMatrix w = test::normal_matrix(64, 128, 5u);
  const RowMatrix x = test::outlier_activations(64, 128, 4, 6u);
  Adaptive3 op(w, {});
  op.calibrate(x);
  const auto& errors = op.correlation().candidate_errors();
  CHECK(*std::min_element(errors.begin(), errors.end()) <= errors.front());  // grid[0] = 0 is RTN
  CHECK(relative_error(x, w, op.effective_weight()) < relative_error(x, w, Q3().quantize_dequantize(w)));
}

TEST_CASE("the AWQ normalisation changes only a global factor of the candidate scales", "[stats][adaptive]") {
  const RowMatrix x = test::outlier_activations(20, 32, 2, 7u);
  AdaptiveExponent<1> plain, awq({.normalisation = ExponentNormalisation::awq});
  plain.bind(32);
  awq.bind(32);
  plain.observe(x);
  awq.observe(x);
  const auto a = plain.candidate_scales(0.5), b = awq.candidate_scales(0.5);
  for (std::size_t j = 1; j < a.size(); ++j) CHECK(a[j] / b[j] == Approx(a[0] / b[0]).epsilon(1e-5));
}

TEST_CASE("bad adaptive-exponent options get typed errors", "[stats][adaptive][errors]") {
  CHECK_THROWS_AS(AdaptiveExponent<1>({.grid = {}}), RangeError);
  CHECK_THROWS_AS(AdaptiveExponent<1>({.grid = {0.0, -0.5}}), RangeError);
  CHECK_THROWS_AS(AdaptiveExponent<1>({.floor = 0.0}), RangeError);
  CHECK_THROWS_AS(AdaptiveExponent<1>({.error_rows = -1}), RangeError);
}

TEST_CASE("a grid exponent whose scales leave float's range names the grid (issue 16)", "[stats][adaptive][errors]") {
  const RowMatrix w = test::normal_matrix(8, 32, 43u);
  RowMatrix x = test::normal_matrix(16, 32, 44u);
  x.col(3) *= 100.0f;
  OnlineAWQ<Q3, AdaptiveExponent<1>> op(w, {}, Q3(), AdaptiveExponent<1>({.grid = {0.0, 1e308}}));
  try {
    op.calibrate(x);
    FAIL("an exponent of 1e308 accepted");
  } catch (const RangeError& e) {
    CHECK(e.argument() == "grid");
  }
}

TEST_CASE("the relative floor keeps the weights of a channel the prompt did not use", "[stats][adaptive]") {
  // Channel 5 is zero for the whole prompt: with only the absolute floor its D is 1e-4 while the
  // others' are ~1, so its weights quantize to nothing and a decode token that uses it gets
  // nothing. The relative floor keeps them (at a coarser step than the used channels).
  const RowMatrix w = test::normal_matrix(16, 64, 31u);
  RowMatrix x = test::normal_matrix(24, 64, 32u);
  x.col(5).setZero();
  AdaptiveExponentOptions no_floor;
  no_floor.grid = {0.9};  // a strong exponent: the dead channel's D is 1e-4 next to ~1
  AdaptiveExponentOptions floored = no_floor;
  floored.relative_floor = 0.5;
  Adaptive3 plain(w, {}, Q3(), AdaptiveExponent<1>(no_floor));
  Adaptive3 kept(w, {}, Q3(), AdaptiveExponent<1>(floored));
  plain.calibrate(x);
  kept.calibrate(x);
  const double column = w.col(5).squaredNorm();
  const double lost = (w.col(5) - plain.effective_weight().col(5)).squaredNorm();
  const double error = (w.col(5) - kept.effective_weight().col(5)).squaredNorm();
  CHECK(lost > 0.9 * column);    // gone
  CHECK(error < 0.25 * column);  // kept
  // Channels the prompt used are not touched by a floor below them.
  for (Index j = 0; j < 64; ++j)
    if (j != 5) CHECK(plain.scales()[static_cast<std::size_t>(j)] == kept.scales()[static_cast<std::size_t>(j)]);
  AdaptiveExponentOptions bad;
  bad.relative_floor = 1.0;
  CHECK_THROWS_AS(AdaptiveExponent<1>(bad), RangeError);
}

namespace {

// The argument a call's ttq::Error names ("<no error>" if it returns).
template <class F>
std::string argument_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.argument();
  }
  return "<no error>";
}

// W [8, 128] with a weight of 1e36 in column 0 of row 0, and X [16, 128] whose column 0 is
// 1e10: D_a,0 = 1e10^a (p = 1), so w_00 D_a,0 leaves float's range for every a >= 0.3.
struct StretchedLayer {
  RowMatrix w = test::normal_matrix(8, 128, 61u);
  RowMatrix x = test::normal_matrix(16, 128, 62u);
  StretchedLayer() {
    w(0, 0) = 1e36f;
    x.col(0).setConstant(1e10f);
  }
};

template <class Backend>
using Adaptive4 = OnlineAWQ<Quantizer<4, 32>, AdaptiveExponent<1>, NoResidual, Backend>;

template <class Backend>
void check_overflowing_activations_refused(ClipObjective clip) {
  const RowMatrix w = test::normal_matrix(8, 128, 51u);
  Adaptive4<Backend> op(w, {}, {}, AdaptiveExponent<1>({.clip = {.objective = clip}}));
  op.calibrate(test::normal_matrix(4, 128, 52u));
  const auto codes = op.quantized().unpacked_codes();
  const double tokens = op.correlation().statistics().tokens();
  const auto chosen = op.correlation().chosen_exponent();
  // |x| = 1e20: x^2 = 1e40 is no float. Before issue 27 the SIMD backend's errors were all
  // non-finite and the plan kept empty scales: a segmentation fault with the clip search, an
  // error about 'scales' without it.
  const RowMatrix huge = RowMatrix::Constant(4, 128, 1e20f);
  CHECK(argument_of([&] { op.calibrate(huge); }) == "x");
  // Refused before any statistic changed: the prompt's state is as it was.
  CHECK(op.correlation().statistics().tokens() == tokens);
  CHECK(op.correlation().chosen_exponent() == chosen);
  CHECK(op.quantized().unpacked_codes() == codes);
  // Just below the bound still runs (2^63: x^2 = 2^126 is a float).
  const RowMatrix below = RowMatrix::Constant(4, 128, 9.2e18f);
  CHECK_NOTHROW(op.calibrate(below));
}

}  // namespace

TEST_CASE("activations whose square overflows float are refused naming x, before any state changes (issue 27)",
          "[stats][adaptive][errors][issue27]") {
  for (ClipObjective clip : {ClipObjective::none, ClipObjective::diag, ClipObjective::block}) {
    CAPTURE(clip_objective_name(clip));
    check_overflowing_activations_refused<backend::Default>(clip);
    check_overflowing_activations_refused<backend::Scalar>(clip);
  }
}

TEST_CASE("a grid exponent whose scaled weights overflow float is skipped, not an error about the weight (issue 27)",
          "[stats][adaptive][errors][issue27]") {
  // The scalar backend measures E_a in double: a = 0, 0.1, 0.2 are finite and one of them wins.
  const StretchedLayer layer;
  Adaptive4<backend::Scalar> op(layer.w, {});
  op.calibrate(layer.x);
  REQUIRE(op.correlation().chosen_exponent().has_value());
  CHECK(*op.correlation().chosen_exponent() <= 0.2);
  const auto& errors = op.correlation().candidate_errors();
  REQUIRE(errors.size() == 10);
  for (std::size_t k = 0; k < errors.size(); ++k) CHECK(std::isfinite(errors[k]) == (k <= 2));
  CHECK(op.forward(test::normal_matrix(2, 128, 64u)).allFinite());
}

TEST_CASE("when no exponent of the grid quantizes within float's range the error names x, on every backend (issue 27)",
          "[stats][adaptive][errors][issue27]") {
  const StretchedLayer layer;
  const AdaptiveExponentOptions grid{.grid = {0.5, 0.9}};
  for (ClipObjective clip : {ClipObjective::none, ClipObjective::block}) {
    CAPTURE(clip_objective_name(clip));
    AdaptiveExponentOptions o = grid;
    o.clip.objective = clip;
    Adaptive4<backend::Default> simd(layer.w, {}, {}, AdaptiveExponent<1>(o));
    Adaptive4<backend::Scalar> scalar(layer.w, {}, {}, AdaptiveExponent<1>(o));
    CHECK(argument_of([&] { simd.calibrate(layer.x); }) == "x");
    CHECK(argument_of([&] { scalar.calibrate(layer.x); }) == "x");
    CHECK_FALSE(simd.correlation().chosen_exponent().has_value());
    // The quantization in force stays usable.
    CHECK(simd.forward(test::normal_matrix(2, 128, 63u)).allFinite());
  }
}
