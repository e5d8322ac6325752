// ttq_bench_adaptive: what TTQ's per-prompt plan costs, phase by phase, for each scale mode,
// against the fp32 prefill of the same layer (spec "Adaptive exponent" and "Online clip search":
// every phase but the statistics is independent of T). One binary, one run, 2 threads unless
// --benchmark_filter picks the 1-thread rows; backend::Simd, 4-bit, group 128.
//
//   plan/stats/<shape>/T<t>/threads:<n>          TTQ's statistics of X (DiagCorrelation<1>::observe)
//   plan/gram/<shape>/T<t>/threads:<n>           the block objective's extra statistics: the Gram
//                                                blocks of X (OnlineClipSearch::observe, groups
//                                                spread over the threads)
//   plan/encode/<shape>/threads:<n>              one quantization with given D, plus the repack
//                                                for decode (what TTQ with a fixed exponent does)
//   plan/<mode>/<shape>/threads:<n>              requantize() of an operator whose statistics are
//                                                already observed: exponent = the tools' default
//                                                (adaptive exponent, 10-point grid, no clip),
//                                                clip-diag / clip-block / clip-block-k4 = the same
//                                                plus the online clip search
//   plan/prefill_fp32/<shape>/T<t>/threads:<n>   Eigen X W^T, row blocks on the same threads
// A script divides the medians (scripts/make_results.py, "Cost of the per-prompt plan"); no
// timing is asserted anywhere.
#include "bench_support.hpp"

#include <ttq/backend/simd/kernels.hpp>
#include <ttq/op/online_awq.hpp>
#include <ttq/stats/adaptive_exponent.hpp>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace {

using ttq::Index;
using ttq::RowMatrix;
namespace backend = ttq::backend;
namespace bench = ttq::bench;
using bench::Shape;
using bench::shape_name;

using Q = ttq::Quantizer<4, 128>;
using AdaptiveLayer = ttq::OnlineAWQ<Q, ttq::AdaptiveExponent<1>, ttq::NoResidual, backend::Simd>;

std::string suffix(int threads) { return "/threads:" + std::to_string(threads); }

/// Weights of a trained layer's spread, and activations with a few outlier channels. Kept for
/// the whole run in maps of their own (bench::cached holds one case's data only).
const RowMatrix& weights(Shape s) {
  static std::map<std::string, RowMatrix> cache;
  auto [it, inserted] = cache.try_emplace(shape_name(s));
  if (inserted) it->second = bench::random_matrix(s.d_out, s.d_in, 1, 0.02f);
  return it->second;
}
const RowMatrix& activations(Index t, Index d_in) {
  static std::map<std::string, RowMatrix> cache;
  auto [it, inserted] = cache.try_emplace(std::to_string(t) + "x" + std::to_string(d_in));
  if (inserted) it->second = bench::outlier_activations(t, d_in, 2);
  return it->second;
}

void stats(benchmark::State& state, Shape s, Index t, int threads) {
  backend::ScopedExecutor scope(bench::pool(threads));
  const RowMatrix& x = activations(t, s.d_in);
  ttq::DiagCorrelation<1> correlation;
  correlation.bind(s.d_in);
  for (auto _ : state) {
    correlation.reset();
    correlation.observe(x, backend::channel_stats_kernel<backend::Simd>());
  }
}

void gram(benchmark::State& state, Shape s, Index t, int threads) {
  backend::ScopedExecutor scope(bench::pool(threads));
  const RowMatrix& x = activations(t, s.d_in);
  ttq::OnlineClipSearch search({.objective = ttq::ClipObjective::block});
  search.bind(s.d_in, 128);
  for (auto _ : state) {
    search.reset();
    search.observe(x, backend::range_runner());  // groups over the threads, as an operator runs it
  }
}

void encode(benchmark::State& state, Shape s, int threads) {
  backend::ScopedExecutor scope(bench::pool(threads));
  const RowMatrix& w = weights(s);
  const std::vector<float> d = bench::random_scales(s.d_in, 3);
  const ttq::QuantConfig config = Q().config(s.d_in);
  ttq::QuantizedMatrix q;
  for (auto _ : state) {
    quantize_into(backend::Simd{}, config, w, d, {}, {}, q);
    auto prepared = prepare(backend::Simd{}, q);
    benchmark::DoNotOptimize(prepared);
  }
}

void requantize(benchmark::State& state, Shape s, int threads, ttq::OnlineClipOptions clip) {
  backend::ScopedExecutor scope(bench::pool(threads));
  ttq::AdaptiveExponentOptions options;
  options.clip = std::move(clip);
  AdaptiveLayer layer(weights(s), {}, Q(), ttq::AdaptiveExponent<1>(options));
  layer.observe(activations(128, s.d_in));  // the plan's cost does not depend on T
  for (auto _ : state) layer.requantize();
}

void prefill_fp32(benchmark::State& state, Shape s, Index t, int threads) {
  backend::ScopedExecutor scope(bench::pool(threads));
  const RowMatrix& w = weights(s);
  const RowMatrix& x = activations(t, s.d_in);
  RowMatrix y(t, s.d_out);
  const auto executor = backend::current_executor();
  for (auto _ : state) {
    bench::fp32_product(*executor, x, w, y);
    benchmark::ClobberMemory();
  }
}

void register_cases() {
  const bool quick = bench::options().quick;
  const std::vector<Shape> shapes = quick ? std::vector<Shape>{{576, 1536}} : std::vector<Shape>{{576, 1536}, {4096, 4096}};
  const std::vector<Index> tokens = quick ? std::vector<Index>{128} : std::vector<Index>{128, 512, 2048};
  const std::pair<const char*, ttq::OnlineClipOptions> modes[] = {
      {"exponent", {}},
      {"clip-diag", {.objective = ttq::ClipObjective::diag}},
      {"clip-block", {.objective = ttq::ClipObjective::block}},
      {"clip-block-k4", {.objective = ttq::ClipObjective::block, .block_rank = 4}}};
  for (int threads : {2, 1})
    for (Shape s : shapes) {
      const std::string shape = shape_name(s), tail = suffix(threads);
      for (Index t : tokens) {
        const std::string tt = "/T" + std::to_string(t);
        benchmark::RegisterBenchmark(("plan/stats/" + shape + tt + tail).c_str(), stats, s, t, threads)->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark(("plan/gram/" + shape + tt + tail).c_str(), gram, s, t, threads)->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark(("plan/prefill_fp32/" + shape + tt + tail).c_str(), prefill_fp32, s, t, threads)
            ->Unit(benchmark::kMillisecond);
      }
      benchmark::RegisterBenchmark(("plan/encode/" + shape + tail).c_str(), encode, s, threads)->Unit(benchmark::kMillisecond);
      for (const auto& [mode, clip] : modes)
        benchmark::RegisterBenchmark(("plan/" + std::string(mode) + "/" + shape + tail).c_str(), requantize, s, threads, clip)
            ->Unit(benchmark::kMillisecond);
    }
}

}  // namespace

int main(int argc, char** argv) { return bench::run_main(argc, argv, register_cases); }
