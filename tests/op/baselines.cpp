// Tests of op/baselines.hpp: RTN and static AWQ through the OnlineAWQ operator.
#include <catch2/catch.hpp>

#include <ttq/op/baselines.hpp>
#include <ttq/op/metrics.hpp>
#include <ttq/stats/preset_scales.hpp>

#include <cmath>

#include "test_support.hpp"

using namespace ttq;

namespace {
using Q3 = Quantizer<3, 32>;

double output_error(const RowMatrix& x, const RowMatrix& w, const RowMatrix& w_hat) {
  return (x.cast<double>() * (w - w_hat).cast<double>().transpose()).squaredNorm();
}
}  // namespace

TEST_CASE("RTN is plain groupwise QDQ and ignores activations", "[op][baselines]") {
  const RowMatrix w = test::normal_matrix(16, 64, 1u);
  RtnOperator<Q3> rtn(w, {});
  const auto before = rtn.quantized().unpacked_codes();
  rtn.calibrate(test::outlier_activations(8, 64, 3, 2u));
  CHECK(rtn.quantized().unpacked_codes() == before);
  CHECK(before == Q3().quantize(w).unpacked_codes());
}

TEST_CASE("PresetScales quantizes W diag(D) with the given D, once, whatever the activations", "[op][baselines]") {
  const RowMatrix w = test::normal_matrix(16, 64, 3u);
  const std::vector<float> d = test::lognormal_scales(64, 4u);
  OnlineAWQ<Q3, PresetScales> op(w, {}, Q3(), PresetScales(d));
  const auto codes = op.quantized().unpacked_codes();
  CHECK(codes == Q3().quantize(w, d).unpacked_codes());
  CHECK(std::vector<float>(op.scales().begin(), op.scales().end()) == d);
  op.calibrate(test::outlier_activations(8, 64, 3, 5u));
  CHECK(op.quantized().unpacked_codes() == codes);
  // The forward is the effective weight Q(W D) D^-1 applied to X.
  const RowMatrix x = test::normal_matrix(3, 64, 6u);
  const RowMatrix expected = x * Q3().quantize_dequantize(w, d).transpose();
  CHECK((op.forward(x) - expected).cwiseAbs().maxCoeff() < 1e-4f);
  // Scales that do not fit the layer, or are not positive, are argument errors.
  CHECK_THROWS_AS((OnlineAWQ<Q3, PresetScales>(w, {}, Q3(), PresetScales(std::vector<float>(63, 1.0f)))), ShapeError);
  std::vector<float> bad = d;
  bad[7] = 0.0f;
  CHECK_THROWS_AS((OnlineAWQ<Q3, PresetScales>(w, {}, Q3(), PresetScales(bad))), RangeError);
}

TEST_CASE("static AWQ picks the grid exponent with the least calibration output error", "[op][baselines]") {
  const RowMatrix w = test::normal_matrix(32, 64, 3u);
  const RowMatrix calibration = test::outlier_activations(48, 64, 3, 4u);
  StaticAwqOperator<Q3> awq(w, {});
  awq.calibrate(calibration);
  const auto chosen = awq.correlation().chosen_exponent();
  REQUIRE(chosen.has_value());
  // Exhaustive evaluation of every grid point through the public API.
  DiagCorrelation<1> stat;
  stat.observe(calibration);
  double best_error = INFINITY, best_a = -1.0;
  for (int i = 0; i < 20; ++i) {
    const double a = i / 20.0;
    const auto s = exponent_scales(stat.channel_norms(), a, 1e-4, /*awq_normalised=*/true);
    const double e = output_error(calibration, w, Q3().quantize_dequantize(w, s));
    if (e < best_error) {
      best_error = e;
      best_a = a;
    }
  }
  CHECK(*chosen == best_a);
  CHECK(output_error(calibration, w, awq.effective_weight()) == Approx(best_error).epsilon(1e-4));
  CHECK(output_error(calibration, w, awq.effective_weight()) <=
        output_error(calibration, w, Q3().quantize_dequantize(w)));  // a = 0 is on the grid: never worse than RTN
}

TEST_CASE("static AWQ is frozen after calibration; reset unfreezes it", "[op][baselines]") {
  const RowMatrix w = test::normal_matrix(16, 64, 5u);
  StaticAwqOperator<Q3> awq(w, {});
  awq.calibrate(test::outlier_activations(32, 64, 3, 6u));
  REQUIRE(awq.correlation().frozen());
  const auto codes = awq.quantized().unpacked_codes();
  awq.calibrate(test::outlier_activations(32, 64, 3, 7u));
  CHECK(awq.quantized().unpacked_codes() == codes);
  awq.reset();
  CHECK_FALSE(awq.correlation().frozen());
}

TEST_CASE("the clip search never increases the calibration output error", "[op][baselines]") {
  const RowMatrix w = test::normal_matrix(16, 64, 8u);
  const RowMatrix calibration = test::outlier_activations(32, 64, 2, 9u);
  StaticAwqOperator<Q3> plain(w, {}), clipped(w, {}, Q3(), StaticAwqScales({.clip_search = true}));
  plain.calibrate(calibration);
  clipped.calibrate(calibration);
  CHECK(output_error(calibration, w, clipped.effective_weight()) <=
        output_error(calibration, w, plain.effective_weight()) * (1.0 + 1e-9));
}

TEST_CASE("static AWQ calibrated on another distribution does worse than TTQ calibrated on the prompt",
          "[op][behaviour]") {
  const RowMatrix w = test::normal_matrix(64, 128, 10u);
  const RowMatrix prompt = test::outlier_activations(64, 128, 4, 11u);
  const RowMatrix other = test::outlier_activations(64, 128, 4, 12u);  // outliers on other channels
  StaticAwqOperator<Q3> awq(w, {});
  awq.calibrate(other);
  OnlineAWQ<Q3> ttq(w, {});
  ttq.calibrate(prompt);
  const double e_awq = relative_error(prompt, w, awq.effective_weight());
  const double e_ttq = relative_error(prompt, w, ttq.effective_weight());
  INFO("static AWQ (other calibration) " << e_awq << ", TTQ " << e_ttq);
  CHECK(e_ttq < e_awq);
}
