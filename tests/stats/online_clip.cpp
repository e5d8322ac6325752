// Tests of stats/online_clip.hpp: the per-(row, group) clip ratio chosen on the prompt.
#include <catch2/catch.hpp>

#include <ttq/backend/scalar/kernels.hpp>
#include <ttq/op/online_awq.hpp>
#include <ttq/quant/reference.hpp>
#include <ttq/stats/adaptive_exponent.hpp>

#include <algorithm>
#include <cmath>
#include <limits>

#include "test_support.hpp"

using namespace ttq;

namespace {

using DynamicQ = Quantizer<Dynamic, Dynamic>;
template <class Backend>
using ClipOperator = OnlineAWQ<DynamicQ, AdaptiveExponent<1>, NoResidual, Backend>;

AdaptiveExponentOptions clip_options(ClipObjective objective, Index rank = 0) {
  AdaptiveExponentOptions o;
  o.clip.objective = objective;
  o.clip.block_rank = rank;
  return o;
}

// The spec's choice, computed group by group from nothing but the reference quantizer on one
// group at a time and the objective's formula written out (the Gram block from X directly).
std::vector<float> brute_force_clips(const RowMatrix& w, const RowMatrix& x, const std::vector<float>& d, QuantConfig config,
                                     ClipObjective objective, const std::vector<double>& ratios) {
  const Index rows = w.rows(), cols = w.cols(), group = config.group;
  const Index groups = (cols + group - 1) / group;
  std::vector<float> out;
  for (Index r = 0; r < rows; ++r)
    for (Index g = 0; g < groups; ++g) {
      const Index begin = g * group, width = std::min(group, cols - begin);
      double best = std::numeric_limits<double>::infinity();
      double best_ratio = 0.0;
      for (double ratio : ratios) {
        QuantConfig one = config;
        one.group = width;
        one.clip = static_cast<float>(ratio);
        RowMatrix row = w.block(r, begin, 1, width);
        const QuantizedMatrix q = reference_quantize(one, ConstMatrixView(row), std::span(d).subspan(begin, width), {});
        const RowMatrix deq = q.dequantize();
        std::vector<double> e(static_cast<std::size_t>(width));
        for (Index j = 0; j < width; ++j)
          e[j] = static_cast<double>(w(r, begin + j)) - static_cast<double>(deq(0, j)) / static_cast<double>(d[begin + j]);
        double error = 0.0;
        for (Index t = 0; t < x.rows(); ++t) {
          double dot = 0.0, diag = 0.0;
          for (Index j = 0; j < width; ++j) {
            const double xe = static_cast<double>(x(t, begin + j)) * e[j];
            dot += xe;
            diag += xe * xe;
          }
          error += objective == ClipObjective::block ? dot * dot : diag;
        }
        error /= static_cast<double>(x.rows());
        // Relative slack: the library sums in another order; a near-tie may go either way.
        if (error < best * (1.0 - 1e-9)) {
          best = error;
          best_ratio = ratio;
        }
      }
      out.push_back(static_cast<float>(best_ratio));
    }
  return out;
}

}  // namespace

TEST_CASE("online clip: the choice of every (row, group) equals a brute-force search of the spec's objective",
          "[stats][clip]") {
  struct Case {
    int bits;
    Index group;
    FormatKind format;
  };
  // Ragged groups (40 = 16 + 16 + 8; 18 + 18 + 4: widths off the diag sum's 4 lanes), every
  // format, low and high bit widths.
  const Case cases[] = {{2, 16, FormatKind::awq_asymmetric}, {3, 16, FormatKind::awq_asymmetric}, {3, 18, FormatKind::awq_asymmetric},
                        {3, 16, FormatKind::offset_asymmetric}, {4, 16, FormatKind::symmetric},
                        {4, 16, FormatKind::nf4},            {8, 40, FormatKind::awq_asymmetric}};
  for (const Case& k : cases)
    for (ClipObjective objective : {ClipObjective::diag, ClipObjective::block}) {
      CAPTURE(k.bits, k.group, format_name(k.format), clip_objective_name(objective));
      const RowMatrix w = test::normal_matrix(12, 40, 7u + static_cast<std::uint32_t>(k.bits));
      const RowMatrix x = test::outlier_activations(19, 40, 2, 31u);
      const std::vector<float> d = test::lognormal_scales(40, 5u);
      QuantConfig config{k.bits, k.group, k.format, 1.0f};

      OnlineClipOptions options;
      options.objective = objective;
      OnlineClipSearch search(options);
      search.bind(40, k.group);
      search.observe(ConstMatrixView(x));
      std::vector<double> c(40, 0.0);
      for (Index j = 0; j < 40; ++j) c[j] = x.col(j).cast<double>().squaredNorm() / 19.0;
      QuantizedMatrix output;
      ScaleContext context{ConstMatrixView(w), config, backend::quantize_kernel<backend::Scalar>(config), output};
      const std::vector<float> clip = search.search(context, d, c);

      const std::vector<float> expected = brute_force_clips(w, x, d, config, objective, options.ratios);
      CHECK(clip == expected);
      // The quantization left behind is the one of the chosen clips, and never worse than c = 1.
      const QuantizedMatrix again = reference_quantize(config, ConstMatrixView(w), d, clip);
      CHECK(output.codes == again.codes);
      CHECK(output.scales == again.scales);
      CHECK(std::any_of(clip.begin(), clip.end(), [](float v) { return v < 1.0f; }));
    }
}

TEST_CASE("online clip: the rank-k block objective is the top-k eigenpairs plus the rest's diagonal", "[stats][clip]") {
  const RowMatrix x = test::outlier_activations(50, 32, 3, 9u);
  OnlineClipOptions exact;
  exact.objective = ClipObjective::block;
  OnlineClipSearch full(exact);
  full.bind(32, 32);
  full.observe(ConstMatrixView(x));
  const Eigen::MatrixXd gram = full.gram_block(0);
  CHECK((gram - x.cast<double>().transpose() * x.cast<double>() / 50.0).cwiseAbs().maxCoeff() < 1e-9 * gram.cwiseAbs().maxCoeff());

  // With k = width the approximation is exact: the same clips as the exact objective.
  const RowMatrix w = test::normal_matrix(20, 32, 4u);
  const std::vector<float> d(32, 1.0f);
  const QuantConfig config{3, 32, FormatKind::awq_asymmetric, 1.0f};
  QuantizedMatrix out_exact, out_full_rank, out_rank2;
  const auto kernel = backend::quantize_kernel<backend::Scalar>(config);
  const std::vector<float> clip_exact = full.search({ConstMatrixView(w), config, kernel, out_exact}, d, {});
  OnlineClipOptions rank2 = exact;
  rank2.block_rank = 2;
  OnlineClipSearch approx(rank2);
  approx.bind(32, 32);
  approx.observe(ConstMatrixView(x));
  const std::vector<float> clip_rank2 = approx.search({ConstMatrixView(w), config, kernel, out_rank2}, d, {});
  // The rank-2 objective's least errors equal the formula evaluated with an explicit matrix.
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eigen(gram);
  const Eigen::MatrixXd v = eigen.eigenvectors().rightCols(2);
  const Eigen::VectorXd lambda = eigen.eigenvalues().tail(2);
  Eigen::MatrixXd approx_gram = v * lambda.asDiagonal() * v.transpose();
  approx_gram.diagonal() = gram.diagonal();  // rest's diagonal + the top-k part's diagonal
  const QuantizedMatrix q = reference_quantize(config, ConstMatrixView(w), d, clip_rank2);
  const RowMatrix deq = q.dequantize();
  for (Index r = 0; r < w.rows(); ++r) {
    const Eigen::VectorXd e = (w.row(r) - deq.row(r)).cast<double>().transpose();
    CHECK(approx.chosen_errors()[static_cast<std::size_t>(r)] == Approx(e.dot(approx_gram * e)).epsilon(1e-9));
  }
  // The exact objective's least error is the least of all ratios: rank-2's choice is no better on it.
  for (Index r = 0; r < w.rows(); ++r) {
    const QuantizedMatrix qe = reference_quantize(config, ConstMatrixView(w), d, clip_exact);
    const Eigen::VectorXd e = (w.row(r) - qe.dequantize().row(r)).cast<double>().transpose();
    const Eigen::VectorXd e2 = (w.row(r) - deq.row(r)).cast<double>().transpose();
    CHECK(e.dot(gram * e) <= e2.dot(gram * e2) * (1.0 + 1e-12));
  }
}

TEST_CASE("online clip: the operator's SIMD and scalar backends choose the same clips and codes", "[stats][clip]") {
  const RowMatrix w = test::normal_matrix(96, 136, 21u);  // 136 = 4 x 32 + 8: ragged
  const RowMatrix x = test::outlier_activations(33, 136, 4, 22u);
  for (int bits : {2, 3, 4})
    for (ClipObjective objective : {ClipObjective::diag, ClipObjective::block}) {
      CAPTURE(bits, clip_objective_name(objective));
      const DynamicQ q(QuantizerOptions{.bits = bits, .group = 32});
      ClipOperator<backend::Scalar> scalar(ConstMatrixView(w), {}, q, AdaptiveExponent<1>(clip_options(objective)));
      ClipOperator<backend::Default> fast(ConstMatrixView(w), {}, q, AdaptiveExponent<1>(clip_options(objective)));
      scalar.calibrate(ConstMatrixView(x));
      fast.calibrate(ConstMatrixView(x));
      CHECK(scalar.correlation().clip_search().chosen() == fast.correlation().clip_search().chosen());
      CHECK(scalar.quantized().codes == fast.quantized().codes);
      CHECK(scalar.quantized().scales == fast.quantized().scales);
      CHECK(scalar.correlation().chosen_exponent() == fast.correlation().chosen_exponent());
    }
}

TEST_CASE("online clip: the search's choices do not depend on the executor's threads", "[stats][clip]") {
  // 200 rows: four 64-row measuring blocks, the last one short, spread over 3 threads or none.
  const RowMatrix w = test::normal_matrix(200, 96, 51u);
  const RowMatrix x = test::outlier_activations(21, 96, 3, 52u);
  const DynamicQ q(QuantizerOptions{.bits = 3, .group = 32});
  for (ClipObjective objective : {ClipObjective::diag, ClipObjective::block}) {
    CAPTURE(clip_objective_name(objective));
    ClipOperator<backend::Default> serial(ConstMatrixView(w), {}, q, AdaptiveExponent<1>(clip_options(objective)));
    ClipOperator<backend::Default> threaded(ConstMatrixView(w), {}, q, AdaptiveExponent<1>(clip_options(objective)));
    {
      backend::ScopedExecutor scope(backend::Executor::serial());
      serial.calibrate(ConstMatrixView(x));
    }
    {
      backend::ScopedExecutor scope(backend::thread_pool_executor(3));
      threaded.calibrate(ConstMatrixView(x));
    }
    const OnlineClipSearch& a = serial.correlation().clip_search();
    const OnlineClipSearch& b = threaded.correlation().clip_search();
    // The Gram blocks were summed group by group on 3 threads: bit for bit the serial sums.
    for (Index g = 0; g < 3; ++g) CHECK(a.gram_block(g) == b.gram_block(g));
    if (objective == ClipObjective::block) CHECK(a.gram_block(0).norm() > 0.0);
    CHECK(a.chosen() == b.chosen());
    CHECK(a.chosen_errors() == b.chosen_errors());  // bit for bit: each block's arithmetic is fixed
    CHECK(serial.quantized().codes == threaded.quantized().codes);
    // Every row was measured: no error left at its +inf start value.
    CHECK(std::all_of(b.chosen_errors().begin(), b.chosen_errors().end(), [](double e) { return std::isfinite(e); }));
  }
}

TEST_CASE("online clip: chunked prefill equals one shot exactly, across prompts with decay", "[stats][clip]") {
  const RowMatrix w = test::normal_matrix(40, 72, 41u);
  const RowMatrix x = test::outlier_activations(29, 72, 3, 42u);
  const RowMatrix x2 = test::outlier_activations(11, 72, 2, 43u);
  const DynamicQ q(QuantizerOptions{.bits = 3, .group = 24});
  AdaptiveExponentOptions o = clip_options(ClipObjective::block);
  o.decay = 0.5;
  ClipOperator<backend::Default> one(ConstMatrixView(w), {}, q, AdaptiveExponent<1>(o));
  ClipOperator<backend::Default> chunked(ConstMatrixView(w), {}, q, AdaptiveExponent<1>(o));
  for (const RowMatrix* prompt : {&x, &x2}) {
    one.begin_prompt();
    chunked.begin_prompt();
    one.calibrate(ConstMatrixView(*prompt));
    const ConstMatrixView view(*prompt);
    for (Index first = 0; first < prompt->rows(); first += 7) chunked.observe(view.row_block(first, std::min<Index>(7, prompt->rows() - first)));
    chunked.requantize();
    for (Index g = 0; g < 3; ++g) CHECK(one.correlation().clip_search().gram_block(g) == chunked.correlation().clip_search().gram_block(g));
    CHECK(one.correlation().clip_search().chosen() == chunked.correlation().clip_search().chosen());
    CHECK(one.quantized().codes == chunked.quantized().codes);
  }
  // decay 0.5 kept half of the first prompt: the Gram block is not the second prompt's alone.
  OnlineClipOptions block;
  block.objective = ClipObjective::block;
  OnlineClipSearch second_only(block);
  second_only.bind(72, 24);
  second_only.observe(ConstMatrixView(x2));
  CHECK(one.correlation().clip_search().gram_block(0) != second_only.gram_block(0));
}

TEST_CASE("online clip: row-parallel shards at group boundaries choose the unsharded clips", "[stats][clip]") {
  // A group's Gram block is local to its shard; with a per-channel D (no global normalisation)
  // and one exponent, every shard's choices are the unsharded choices of its columns.
  const RowMatrix w = test::normal_matrix(24, 96, 51u);
  const RowMatrix x = test::outlier_activations(21, 96, 3, 52u);
  const DynamicQ q(QuantizerOptions{.bits = 2, .group = 16});
  AdaptiveExponentOptions o = clip_options(ClipObjective::block);
  o.grid = {0.5};
  ClipOperator<backend::Default> whole(ConstMatrixView(w), {}, q, AdaptiveExponent<1>(o));
  whole.calibrate(ConstMatrixView(x));
  const auto& all = whole.correlation().clip_search().chosen();
  for (Index shard = 0; shard < 2; ++shard) {
    const RowMatrix ws = w.middleCols(shard * 48, 48), xs = x.middleCols(shard * 48, 48);
    ClipOperator<backend::Default> part(ConstMatrixView(ws), {}, q, AdaptiveExponent<1>(o));
    part.calibrate(ConstMatrixView(xs));
    const auto& mine = part.correlation().clip_search().chosen();
    for (Index r = 0; r < 24; ++r)
      for (Index g = 0; g < 3; ++g) CHECK(mine[static_cast<std::size_t>(r * 3 + g)] == all[static_cast<std::size_t>(r * 6 + shard * 3 + g)]);
  }
}

TEST_CASE("online clip: the block objective lowers the prompt's output error below no clip", "[stats][clip]") {
  const RowMatrix w = test::normal_matrix(64, 128, 61u);
  const RowMatrix x = test::outlier_activations(48, 128, 4, 62u);
  const DynamicQ q(QuantizerOptions{.bits = 2, .group = 32});
  ClipOperator<backend::Default> none(ConstMatrixView(w), {}, q, AdaptiveExponent<1>(clip_options(ClipObjective::none)));
  ClipOperator<backend::Default> block(ConstMatrixView(w), {}, q, AdaptiveExponent<1>(clip_options(ClipObjective::block)));
  none.calibrate(ConstMatrixView(x));
  block.calibrate(ConstMatrixView(x));
  const RowMatrix y = x * w.transpose();
  const double e_none = (none.forward(ConstMatrixView(x)) - y).squaredNorm();
  const double e_block = (block.forward(ConstMatrixView(x)) - y).squaredNorm();
  CHECK(e_block < 0.9 * e_none);
}

TEST_CASE("online clip: bad options and unbound use are errors", "[stats][clip][errors]") {
  OnlineClipOptions o;
  o.objective = ClipObjective::diag;
  o.ratios = {1.0, 0.0};
  CHECK_THROWS_AS(OnlineClipSearch(o), RangeError);
  o.ratios = {};
  CHECK_THROWS_AS(OnlineClipSearch(o), RangeError);
  o.ratios = {1.0};
  o.block_rank = -1;
  CHECK_THROWS_AS(OnlineClipSearch(o), RangeError);
  // The block objective needs the group: a standalone policy bound without it says so.
  AdaptiveExponent<1> standalone(clip_options(ClipObjective::block));
  const RowMatrix x = test::normal_matrix(4, 16, 1u);
  CHECK_THROWS_AS(standalone.observe(ConstMatrixView(x)), ShapeError);
}

TEST_CASE("online clip: a search without scales is an error naming them, not a crash (issue 27)", "[stats][clip][errors][issue27]") {
  OnlineClipSearch search(OnlineClipOptions{.objective = ClipObjective::diag});
  search.bind(64, 32);
  const RowMatrix w = test::normal_matrix(4, 64, 71u);
  const QuantConfig config = Quantizer<4, 32>().config(64);
  QuantizedMatrix out;
  const ScaleContext context{ConstMatrixView(w), config, backend::quantize_kernel<backend::Scalar>(config), out};
  const std::vector<double> mean_squares(64, 1.0);
  try {
    (void)search.search(context, {}, mean_squares);
    FAIL("a search without scales returned");
  } catch (const ShapeError& e) {
    CHECK(e.argument() == "scales");
  }
}

TEST_CASE("online clip: a (row, group) without a finite error keeps the first ratio (issue 27)", "[stats][clip][errors][issue27]") {
  // Every candidate decodes to NaN (a poisoned kernel): no ratio is chosen by a NaN error; the
  // documented fallback is the first ratio, 1.0 on the default grid (no clip).
  OnlineClipSearch search(OnlineClipOptions{.objective = ClipObjective::diag});
  search.bind(64, 32);
  const RowMatrix w = test::normal_matrix(4, 64, 72u);
  const QuantConfig config = Quantizer<4, 32>().config(64);
  const std::size_t candidates = search.options().ratios.size();
  std::size_t calls = 0;
  const QuantizeKernel poisoned = [&](ConstMatrixView m, std::span<const float> d, std::span<const float> clip,
                                      std::span<const double> c, QuantizedMatrix& q) {
    const double e = reference_quantize_into(config, m, d, clip, c, q);
    if (calls++ < candidates) std::fill(q.scales.begin(), q.scales.end(), std::numeric_limits<float>::quiet_NaN());
    return e;
  };
  QuantizedMatrix out;
  const ScaleContext context{ConstMatrixView(w), config, poisoned, out};
  const std::vector<float> scales(64, 1.0f);
  const std::vector<double> mean_squares(64, 1.0);
  const std::vector<float> clip = search.search(context, scales, mean_squares);
  CHECK(std::all_of(clip.begin(), clip.end(), [](float c) { return c == 1.0f; }));
  CHECK(std::all_of(search.chosen().begin(), search.chosen().end(), [](std::uint8_t k) { return k == 0; }));
  CHECK(out.first_unrepresentable_group() == -1);
}
