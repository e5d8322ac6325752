// Tests of stats/scale_math.hpp: the per-channel formulas of D, which DiagCorrelation<P> and the
// CUDA statistics and plan kernels both evaluate. What is left to check is what the two do not
// share: the host accumulates its sums with the statistics kernels (stats/channel_stats.hpp), the
// device with accumulate_norm(). Accumulating with accumulate_norm() must reproduce
// DiagCorrelation<P>'s channel norms and scales bit for bit, for every norm the policy supports,
// with damping, a prior, a global mean and decay; the constants must agree with the policy's.
#include <catch2/catch.hpp>

#include <ttq/stats/diag_correlation.hpp>
#include <ttq/stats/scale_math.hpp>

#include <bit>
#include <cmath>
#include <vector>

#include "test_support.hpp"

using namespace ttq;
namespace td = ttq::detail;

namespace {

/// D computed from X with the shared functions only, sums in the scalar backend's order.
std::vector<float> shared_scales(const std::vector<RowMatrix>& prompts, td::NormOrder order, const DiagCorrelationOptions& o,
                                 std::optional<double> global_mean, std::vector<double>* norms_out) {
  const Index n = prompts[0].cols();
  std::vector<double> sums(static_cast<std::size_t>(n), 0.0);
  double tokens = 0.0;
  for (std::size_t prompt = 0; prompt < prompts.size(); ++prompt) {
    if (prompt > 0) {  // begin_prompt(): the decay
      for (auto& s : sums) s *= o.decay;
      tokens *= o.decay;
      if (o.decay == 0.0) tokens = 0.0;
    }
    const RowMatrix& x = prompts[prompt];
    for (Index t = 0; t < x.rows(); ++t)
      for (Index j = 0; j < n; ++j)
        sums[static_cast<std::size_t>(j)] =
            td::accumulate_norm(order, sums[static_cast<std::size_t>(j)], std::fabs(static_cast<double>(x(t, j))));
    tokens += static_cast<double>(x.rows());
  }
  std::vector<double> norms(static_cast<std::size_t>(n));
  double mean = 0.0;
  for (std::size_t j = 0; j < norms.size(); ++j) {
    norms[j] = td::channel_norm(order, sums[j], tokens);
    mean += td::dmul_rn(norms[j], norms[j]);
  }
  mean = global_mean ? *global_mean : mean / static_cast<double>(n);
  std::vector<double> damped(norms.size());
  double d_max = 0.0;
  for (std::size_t j = 0; j < norms.size(); ++j) {
    double c = td::channel_correlation(norms[j], mean);
    if (o.prior_weight > 0.0) c = td::blend_prior(c, o.prior_weight, o.prior[j]);
    damped[j] = td::damped_scale(c, o.lambda, o.alpha);
    d_max = std::max(d_max, damped[j]);
  }
  std::vector<float> out(norms.size());
  for (std::size_t j = 0; j < out.size(); ++j) out[j] = td::floored_scale(damped[j], d_max);
  if (norms_out) *norms_out = norms;
  return out;
}

template <int P>
void check_policy(DiagCorrelationOptions o, std::optional<double> global_mean = std::nullopt) {
  const std::vector<RowMatrix> prompts = {test::outlier_activations(13, 40, 3, 21u), test::outlier_activations(7, 40, 2, 22u)};
  DiagCorrelation<P> policy(o);
  policy.bind(40);
  policy.set_global_mean_square(global_mean);
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    if (i > 0) policy.begin_prompt();
    policy.observe(prompts[i]);
  }
  std::vector<double> norms;
  const std::vector<float> shared = shared_scales(prompts, td::norm_order_for<P>(policy.norm_order()), o, global_mean, &norms);
  const std::vector<double> host_norms = policy.channel_norms();
  const std::vector<float> host = policy.scales();
  INFO("P = " << P << ", p = " << o.p);
  for (std::size_t j = 0; j < host.size(); ++j) {
    REQUIRE(std::bit_cast<std::uint64_t>(norms[j]) == std::bit_cast<std::uint64_t>(host_norms[j]));
    REQUIRE(std::bit_cast<std::uint32_t>(shared[j]) == std::bit_cast<std::uint32_t>(host[j]));
  }
}

}  // namespace

TEST_CASE("the shared constants are the policy's", "[stats][scale_math]") {
  STATIC_REQUIRE(td::kDynamicNormMarker == Dynamic);
  STATIC_REQUIRE(td::kInfNormMarker == InfNorm);
  STATIC_REQUIRE(td::kScaleFloor == kScaleFloorRatio);
}

TEST_CASE("the norm order mirrors DiagCorrelation's compile-time dispatch", "[stats][scale_math]") {
  CHECK(td::norm_order_for<1>(1.0).kind == td::NormKind::one);
  CHECK(td::norm_order_for<2>(2.0).kind == td::NormKind::two);
  CHECK(td::norm_order_for<InfNorm>(INFINITY).kind == td::NormKind::inf);
  CHECK(td::norm_order_for<3>(3.0).kind == td::NormKind::power);
  CHECK(td::norm_order_for<3>(3.0).p == 3.0);
  // Dynamic with p = 2 calls pow on the host, so the device must too.
  CHECK(td::norm_order_for<Dynamic>(2.0).kind == td::NormKind::power);
  CHECK(td::norm_order_for<Dynamic>(INFINITY).kind == td::NormKind::inf);
  // Dynamic with p = 1 takes the one-norm sums on the host (pow(v, 1) = v), and so on the device.
  CHECK(td::norm_order_for<Dynamic>(1.0).kind == td::NormKind::one);
}

TEST_CASE("the device's accumulation gives DiagCorrelation's norms and scales bit for bit", "[stats][scale_math]") {
  check_policy<1>({.alpha = 0.5, .lambda = 0.1});
  check_policy<2>({.alpha = 0.5, .lambda = 0.1});
  check_policy<2>({.alpha = 0.35, .lambda = 0.0, .decay = 0.5});
  check_policy<3>({.alpha = 0.7, .lambda = 0.3});
  check_policy<InfNorm>({.alpha = 0.5, .lambda = 0.2});
  check_policy<Dynamic>({.p = 1.0, .alpha = 0.5, .lambda = 0.1});
  check_policy<Dynamic>({.p = 2.0, .alpha = 0.5, .lambda = 0.1});
  check_policy<Dynamic>({.p = 2.5, .alpha = 0.25, .lambda = 0.05, .decay = 0.9});
  check_policy<Dynamic>({.p = INFINITY, .alpha = 0.5, .lambda = 0.1});
  std::vector<double> prior(40);
  for (std::size_t j = 0; j < prior.size(); ++j) prior[j] = 0.5 + 0.05 * static_cast<double>(j % 7);
  check_policy<2>({.alpha = 0.5, .lambda = 0.1, .prior_weight = 0.3, .prior = prior});
  check_policy<2>({.alpha = 0.5, .lambda = 0.1}, 2.75);
}

TEST_CASE("before any token D is exactly one, as the operator's first quantization needs", "[stats][scale_math]") {
  const td::NormOrder order = td::norm_order_for<2>(2.0);
  CHECK(td::channel_norm(order, 0.0, 0.0) == 0.0);
  CHECK(td::channel_correlation(0.0, 0.0) == 1.0);
  for (double alpha : {0.0, 0.3, 0.5, 1.0})
    for (double lambda : {0.0, 0.1, 1.0}) CHECK(td::floored_scale(td::damped_scale(1.0, lambda, alpha), 1.0) == 1.0f);
}
