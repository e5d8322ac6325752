// Tests of op/online_awq.hpp and op/layer_weights.hpp: the TTQ operator against the spec's
// formulas assembled independently from the policies, its laws, sharding, sharing and errors.
#include <catch2/catch.hpp>

#include <ttq/op/baselines.hpp>
#include <ttq/op/metrics.hpp>
#include <ttq/op/online_awq.hpp>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "test_support.hpp"

using namespace ttq;

namespace {

using Q3 = Quantizer<3, 32>;
using Ttq3 = OnlineAWQ<Q3, DiagCorrelation<2>>;

// Max |a - b| relative to max |b|.
double relative_max_difference(const RowMatrix& a, const RowMatrix& b) {
  return (a - b).cwiseAbs().maxCoeff() / std::max(1e-30f, b.cwiseAbs().maxCoeff());
}

}  // namespace

TEST_CASE("forward computes (X diag(1/D)) deq(Q)^T + (X A^T) B^T + bias per the spec", "[op]") {
  const RowMatrix w = test::normal_matrix(24, 64, 1u);
  const RowMatrix x = test::outlier_activations(10, 64, 3, 2u);
  std::vector<float> bias(24);
  for (std::size_t i = 0; i < bias.size(); ++i) bias[i] = 0.1f * static_cast<float>(i);
  const DiagCorrelationOptions stat_options{.alpha = 0.5, .lambda = 0.2};
  OnlineAWQ<Q3, DiagCorrelation<2>, LowRankResidual<2>> op(w, bias, Q3(), DiagCorrelation<2>(stat_options));
  op.calibrate(x);

  // Assemble the expected result from the parts, independently of the operator.
  DiagCorrelation<2> stat(stat_options);
  stat.observe(x);
  const std::vector<float> d = stat.scales();
  REQUIRE(std::equal(d.begin(), d.end(), op.scales().begin()));
  const LowRankFactors f = LowRankResidual<2>().factorize(w);
  const RowMatrix residual = w - f.b * f.a;
  CHECK(op.quantized().unpacked_codes() == Q3().quantize(residual, d).unpacked_codes());
  const RowMatrix w_hat = Q3().quantize_dequantize(residual, d) + f.b * f.a;
  CHECK(relative_max_difference(op.effective_weight(), w_hat) < 1e-5);

  const Eigen::MatrixXd expected =
      (x.cast<double>() * w_hat.cast<double>().transpose()).rowwise() +
      Eigen::Map<const Eigen::VectorXf>(bias.data(), 24).cast<double>().transpose();
  const RowMatrix y = op.forward(x);
  CHECK(relative_max_difference(y, expected.cast<float>()) < 1e-5);
}

TEST_CASE("alpha = 0 and lambda = 1 give exactly the RTN codes and outputs", "[op][law]") {
  const RowMatrix w = test::normal_matrix(16, 64, 3u);
  const RowMatrix x = test::outlier_activations(12, 64, 2, 4u);
  RtnOperator<Q3> rtn(w, {});
  Ttq3 alpha0(w, {}, Q3(), DiagCorrelation<2>({.alpha = 0.0}));
  Ttq3 lambda1(w, {}, Q3(), DiagCorrelation<2>({.lambda = 1.0}));
  rtn.calibrate(x);
  alpha0.calibrate(x);
  lambda1.calibrate(x);
  CHECK(alpha0.quantized().unpacked_codes() == rtn.quantized().unpacked_codes());
  CHECK(lambda1.quantized().unpacked_codes() == rtn.quantized().unpacked_codes());
  CHECK(alpha0.quantized().scales == rtn.quantized().scales);
  CHECK(alpha0.forward(x) == rtn.forward(x));
}

TEST_CASE("chunked prefill (observe per chunk, requantize once) equals calibrating on the whole prompt", "[op][law]") {
  const RowMatrix w = test::normal_matrix(16, 64, 5u);
  const RowMatrix x = test::outlier_activations(30, 64, 3, 6u);
  Ttq3 whole(w, {}), chunked(w, {});
  whole.calibrate(x);
  chunked.observe(ConstMatrixView(x).row_block(0, 7));
  chunked.observe(ConstMatrixView(x).row_block(7, 23));
  chunked.requantize();
  CHECK(chunked.quantized().unpacked_codes() == whole.quantized().unpacked_codes());
  CHECK(chunked.quantized().scales == whole.quantized().scales);
}

TEST_CASE("column-parallel shards (blocks of output rows) give the same codes and outputs", "[op][sharding]") {
  const RowMatrix w = test::normal_matrix(32, 64, 7u);
  const RowMatrix x = test::outlier_activations(9, 64, 3, 8u);
  Ttq3 whole(w, {});
  whole.calibrate(x);
  const auto codes = whole.quantized().unpacked_codes();
  const RowMatrix y = whole.forward(x);
  for (Index first : {0, 20}) {
    const Index count = first == 0 ? 20 : 12;
    Ttq3 shard(LayerWeights::borrow(ConstMatrixView(w).row_block(first, count)));
    shard.calibrate(x);
    const auto shard_codes = shard.quantized().unpacked_codes();
    CHECK(std::equal(shard_codes.begin(), shard_codes.end(), codes.begin() + first * 64));
    CHECK(relative_max_difference(shard.forward(x), y.middleCols(first, count)) < 1e-6);
  }
}

TEST_CASE("row-parallel shards (input channels cut at a group boundary) give the same codes; partial outputs sum",
          "[op][sharding]") {
  const RowMatrix w = test::normal_matrix(16, 96, 9u);
  const RowMatrix x = test::outlier_activations(11, 96, 4, 10u);
  const DiagCorrelationOptions options{.alpha = 0.5, .lambda = 0.1};
  Ttq3 whole(w, {}, Q3(), DiagCorrelation<2>(options));
  whole.calibrate(x);
  const auto codes = whole.quantized().unpacked_codes();

  struct Cut { Index first, count; };
  const Cut cuts[] = {{0, 64}, {64, 32}};  // group boundaries of group 32
  std::vector<Ttq3> shards;
  for (const Cut& cut : cuts) {
    shards.emplace_back(LayerWeights::borrow(ConstMatrixView(w).col_block(cut.first, cut.count)), Q3(),
                        DiagCorrelation<2>(options));
    shards.back().observe(ConstMatrixView(x).col_block(cut.first, cut.count));
  }
  // The one all-reduce an engine does: the mean of s^2 over all channels.
  double total = 0.0;
  for (auto& s : shards) total += s.correlation().sum_squared_norms();
  RowMatrix y_sum = RowMatrix::Zero(x.rows(), 16);
  for (std::size_t k = 0; k < shards.size(); ++k) {
    shards[k].correlation().set_global_mean_square(total / 96.0);
    shards[k].requantize();
    for (Index r = 0; r < 16; ++r)
      for (Index c = 0; c < cuts[k].count; ++c)
        REQUIRE(shards[k].quantized().code(r, c) == codes[static_cast<std::size_t>(r * 96 + cuts[k].first + c)]);
    y_sum += shards[k].forward(ConstMatrixView(x).col_block(cuts[k].first, cuts[k].count));
  }
  CHECK(relative_max_difference(y_sum, whole.forward(x)) < 1e-5);
}

TEST_CASE("on activations with outlier channels TTQ's 3-bit error is below RTN's", "[op][behaviour]") {
  const RowMatrix w = test::normal_matrix(64, 128, 11u);
  const RowMatrix x = test::outlier_activations(64, 128, 4, 12u);
  RtnOperator<Q3> rtn(w, {});
  Ttq3 ttq(w, {});
  ttq.calibrate(x);
  const double e_rtn = relative_error(x, w, rtn.effective_weight());
  const double e_ttq = relative_error(x, w, ttq.effective_weight());
  INFO("RTN " << e_rtn << ", TTQ " << e_ttq);
  CHECK(e_ttq < 0.8 * e_rtn);
}

TEST_CASE("operators share one immutable weight without copying it", "[op]") {
  const RowMatrix w = test::normal_matrix(8, 32, 13u);
  auto shared = LayerWeights::borrow(w);
  CHECK(shared->weight().data == w.data());
  Ttq3 a(shared), b(shared);
  a.calibrate(test::outlier_activations(5, 32, 2, 14u));
  b.calibrate(test::outlier_activations(5, 32, 2, 15u));
  CHECK(a.weights().get() == b.weights().get());
  CHECK(std::vector<float>(a.scales().begin(), a.scales().end()) != std::vector<float>(b.scales().begin(), b.scales().end()));
}

TEST_CASE("bf16 and fp16 weights are widened exactly", "[op]") {
  const RowMatrix w = test::normal_matrix(4, 32, 16u);
  std::vector<BFloat16> wb(128);
  std::vector<Float16> wh(128);
  for (Index i = 0; i < 128; ++i) {
    wb[static_cast<std::size_t>(i)] = BFloat16::from_float(w.data()[i]);
    wh[static_cast<std::size_t>(i)] = Float16::from_float(w.data()[i]);
  }
  auto from_bf16 = LayerWeights::copy(MatrixView<const BFloat16>(wb.data(), 4, 32));
  auto from_f16 = LayerWeights::copy(MatrixView<const Float16>(wh.data(), 4, 32));
  for (Index i = 0; i < 128; ++i) {
    CHECK(from_bf16->weight().data[i] == wb[static_cast<std::size_t>(i)].to_float());
    CHECK(from_f16->weight().data[i] == wh[static_cast<std::size_t>(i)].to_float());
  }
  CHECK((Eigen::Map<const RowMatrix>(from_f16->weight().data, 4, 32) - w).cwiseAbs().maxCoeff() < 2e-3f);
}

TEST_CASE("reset forgets the prompt and prefill is calibrate then forward", "[op]") {
  const RowMatrix w = test::normal_matrix(8, 64, 17u);
  const RowMatrix x = test::outlier_activations(6, 64, 2, 18u);
  Ttq3 op(w, {});
  const auto rtn_codes = op.quantized().unpacked_codes();
  const RowMatrix y = op.prefill(x);
  CHECK(op.quantized().unpacked_codes() != rtn_codes);
  CHECK(y == op.forward(x));
  op.reset();
  CHECK(op.quantized().unpacked_codes() == rtn_codes);
  for (float d : op.scales()) CHECK(d == 1.0f);
}

TEST_CASE("a larger low-rank residual lowers the error on fixed seeded data (a tendency)", "[op][tendency]") {
  const RowMatrix w = test::normal_matrix(32, 64, 19u) + test::normal_matrix(32, 2, 20u) * test::normal_matrix(2, 64, 21u);
  const RowMatrix x = test::outlier_activations(32, 64, 2, 22u);
  double previous = INFINITY;
  for (Index rank : {0, 2, 8}) {
    OnlineAWQ<Quantizer<2, 32>, DiagCorrelation<2>, LowRankResidual<Dynamic>> op(w, {}, {}, {}, LowRankResidual<Dynamic>(rank));
    op.calibrate(x);
    const double e = relative_error(x, w, op.effective_weight());
    CHECK(e < previous);
    previous = e;
  }
}

TEST_CASE("bad operator input gets a typed error naming the argument; a NaN never becomes a code", "[op][errors]") {
  const RowMatrix w = test::normal_matrix(8, 32, 23u);
  auto argument_of = [](auto&& f) {
    try {
      f();
    } catch (const Error& e) {
      return e.argument();
    }
    return std::string("<no error>");
  };
  Ttq3 op(w, {});
  CHECK(argument_of([&] { op.forward(test::normal_matrix(2, 31, 1u)); }) == "x");
  CHECK_THROWS_AS(op.forward(RowMatrix(0, 32)), ShapeError);
  CHECK_THROWS_AS(op.calibrate(RowMatrix(0, 32)), ShapeError);
  RowMatrix y_wrong(3, 9);
  CHECK(argument_of([&] { op.forward(test::normal_matrix(3, 32, 2u), MatrixView<float>(y_wrong)); }) == "y");

  const auto codes_before = op.quantized().unpacked_codes();
  RowMatrix x_nan = test::normal_matrix(4, 32, 3u);
  x_nan(2, 7) = std::nanf("");
  CHECK_THROWS_AS(op.calibrate(x_nan), NonFiniteError);
  CHECK_THROWS_AS(op.forward(x_nan), NonFiniteError);
  CHECK(op.quantized().unpacked_codes() == codes_before);
  x_nan(2, 7) = INFINITY;
  CHECK_THROWS_AS(op.calibrate(x_nan), NonFiniteError);

  RowMatrix w_nan = w;
  w_nan(3, 3) = std::nanf("");
  CHECK(argument_of([&] { Ttq3 bad(w_nan, {}); }) == "weight");
  CHECK(argument_of([&] { Ttq3 bad(RowMatrix(8, 0), {}); }) == "weight");
  std::vector<float> bias(7, 0.0f);
  CHECK(argument_of([&] { Ttq3 bad(w, bias); }) == "bias");
  CHECK(argument_of([&] { OnlineAWQ<Quantizer<3, 64>> bad(w, {}); }) == "group");
  CHECK(argument_of([&] {
          OnlineAWQ<Q3, DiagCorrelation<2>, LowRankResidual<Dynamic>> bad(w, {}, {}, {}, LowRankResidual<Dynamic>(9));
        }) == "rank");
  CHECK(argument_of([] { Ttq3 bad(std::shared_ptr<const LayerWeights>{}); }) == "weights");
}

TEST_CASE("the default TTQ operator uses the measured default statistic: max norm, alpha 0.1, lambda 0", "[op]") {
  using Default = OnlineAWQ<Q3>;
  STATIC_REQUIRE(std::is_same_v<Default::correlation_type, DiagCorrelation<InfNorm>>);
  const RowMatrix w = test::normal_matrix(8, 64, 24u);
  const RowMatrix x = test::outlier_activations(16, 64, 2, 25u);
  Default op(w, {});
  CHECK(op.correlation().options().alpha == 0.1);
  CHECK(op.correlation().options().lambda == 0.0);
  op.calibrate(x);
  DiagCorrelation<InfNorm> stat({.alpha = 0.1, .lambda = 0.0});
  stat.observe(x);
  const auto d = stat.scales();
  CHECK(std::equal(d.begin(), d.end(), op.scales().begin()));
}

TEST_CASE("finite input whose output overflows float is an error naming x, never an Inf result (issue 16)",
          "[op][errors]") {
  const RowMatrix w = test::normal_matrix(8, 32, 47u);
  Ttq3 op(w, {});
  op.calibrate(test::normal_matrix(4, 32, 48u));
  const RowMatrix huge = RowMatrix::Constant(2, 32, std::numeric_limits<float>::max());
  try {
    (void)op.forward(huge);
    FAIL("an infinite output returned");
  } catch (const NonFiniteError& e) {
    CHECK(e.argument() == "x");
  }
  // Ordinary input still runs.
  const RowMatrix y = op.forward(test::normal_matrix(2, 32, 49u));
  CHECK(y.allFinite());
}

TEST_CASE("TTQ_NUM_THREADS is parsed strictly: a bad value is an error naming it (issue 16)", "[backend][errors]") {
  const char* saved = std::getenv("TTQ_NUM_THREADS");
  const std::string restore = saved ? saved : "";
  for (const char* bad : {"abc", "4x", " 4", "0", "-2", "4294967297", "1e3"}) {
    ::setenv("TTQ_NUM_THREADS", bad, 1);
    try {
      (void)backend::default_thread_count();
      FAIL("TTQ_NUM_THREADS='" << bad << "' accepted");
    } catch (const RangeError& e) {
      CHECK(e.argument() == "TTQ_NUM_THREADS");
    }
  }
  ::setenv("TTQ_NUM_THREADS", "3", 1);
  CHECK(backend::default_thread_count() == 3);
  if (saved) ::setenv("TTQ_NUM_THREADS", restore.c_str(), 1);
  else ::unsetenv("TTQ_NUM_THREADS");
}

// Run by CTest in its own process with TTQ_HUGE_PAGES=yes (read once per process).
TEST_CASE("TTQ_HUGE_PAGES other than 0 or 1 is an error naming it, before any kernel runs (issue 27)",
          "[.][huge-pages-env]") {
  const char* env = std::getenv("TTQ_HUGE_PAGES");
  REQUIRE(env != nullptr);
  REQUIRE(std::string(env) == "yes");
  try {
    OnlineAWQ<Q3> op(test::normal_matrix(8, 32, 85u), {});
    FAIL("TTQ_HUGE_PAGES=yes accepted");
  } catch (const RangeError& e) {
    CHECK(e.argument() == "TTQ_HUGE_PAGES");
  }
  CHECK_THROWS_AS(backend::current_executor(), RangeError);
}

TEST_CASE("a weight group whose range exceeds float's is an error naming the weight, not a NaN blamed on x (issue 27)",
          "[op][errors][issue27]") {
  RowMatrix w = test::normal_matrix(8, 64, 81u);
  w(2, 40) = 3e38f;
  w(2, 41) = -3e38f;  // max - min = 6e38: the step is Inf and every code decodes to NaN
  try {
    OnlineAWQ<Quantizer<4, 32>> op(w, {});
    FAIL("an operator built on an unquantizable group");
  } catch (const NonFiniteError& e) {
    CHECK(e.argument() == "weight");
    CHECK(std::string(e.what()).find("row 2, columns 32..63") != std::string::npos);
  }
  // The same weights in different groups are fine.
  w(2, 41) = 0.0f;
  w(2, 0) = -3e38f;
  OnlineAWQ<Quantizer<4, 32>> op(w, {});
  CHECK(op.forward(test::normal_matrix(2, 64, 82u, 1e-3f)).allFinite());  // small x: Y ~ 3e35, not past float
}

TEST_CASE("scales that stretch a weight group past float's range are an error naming x; the quantization stays (issue 27)",
          "[op][errors][issue27]") {
  // Groups of 32 over 64 channels; channels 0 and 1 carry the prompt's energy, so c_0 = c_1 = 32
  // and D = sqrt(c) = 5.7 there (alpha 0.5): w = +-5e37 scale to +-2.8e38, a range of 5.7e38.
  RowMatrix w = test::normal_matrix(8, 64, 83u);
  w(0, 0) = 5e37f;
  w(0, 1) = -5e37f;
  using Op = OnlineAWQ<Quantizer<4, 32>, DiagCorrelation<InfNorm>>;
  Op op(w, {}, {}, DiagCorrelation<InfNorm>({.alpha = 0.5}));
  const auto codes = op.quantized().unpacked_codes();
  RowMatrix x = RowMatrix::Zero(4, 64);
  x.col(0).setConstant(1.0f);
  x.col(1).setConstant(1.0f);
  try {
    op.calibrate(x);
    FAIL("a quantization that decodes to NaN was accepted");
  } catch (const NonFiniteError& e) {
    CHECK(e.argument() == "x");
  }
  CHECK(op.quantized().unpacked_codes() == codes);
  CHECK(op.forward(test::normal_matrix(2, 64, 84u, 1e-3f)).allFinite());
}
