// ttq_bench_overhead: the cost of test-time quantization measured, not modelled (paper Eq. 3).
// A full TTQ prefill of T tokens -- statistics of X, D, quantize W diag(D), repack, and the
// product with the quantized weights -- against the plain fp32 prefill X W^T (Eigen), same
// shape, same threads, one binary and one run.
//
// Names: prefill-fp32/<d_out>x<d_in>/T<t>/threads:<n>      (the baseline)
//        overhead/<d_out>x<d_in>/T<t>/threads:<n>          (TTQ, fixed exponent, backend::Simd, 4-bit, group 128)
//        overhead-default/<d_out>x<d_in>/T<t>/threads:<n>  (the tools' default TTQ: the adaptive exponent,
//                                                           p = 1, 10-point grid; same backend and quantizer)
//        overhead-clip-<mode>/<d_out>x<d_in>/T<t>/threads:<n>  (the same plus the online clip search:
//                                                           diag, block, block-k4 = rank-4 Gram blocks)
// Counters on overhead rows: ratio (TTQ time / fp32 time, medians of this run), model (the
// paper's 1 + 2/d_out + (1 + k)/T with k = 10 operations per weight for quantizing), and a
// breakdown of one prefill into stats_ms, quantize_ms (quantize + repack) and matmul_ms.
// Weights stay warm here (prefill is compute-bound at large T). --quick: a reduced set.
#include "bench_support.hpp"

#include <ttq/backend/simd/kernels.hpp>
#include <ttq/op/online_awq.hpp>
#include <ttq/stats/adaptive_exponent.hpp>

#include <algorithm>
#include <array>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using ttq::Index;
using ttq::RowMatrix;
namespace backend = ttq::backend;
namespace bench = ttq::bench;

constexpr double kQuantizeOpsPerWeight = 10.0;  // k of Eq. 3 for our quantizer (see file comment)

std::string case_key(Index d_out, Index d_in, Index t, int threads) {
  return std::to_string(d_out) + "x" + std::to_string(d_in) + "/T" + std::to_string(t) + "/threads:" + std::to_string(threads);
}

struct Data {
  RowMatrix w, x, y;
};

Data& data_for(Index d_out, Index d_in, Index t) {
  return bench::cached<Data>(case_key(d_out, d_in, t, 0), [&] {
    auto d = std::make_shared<Data>();
    d->w = bench::random_matrix(d_out, d_in, 1, 0.02f);
    d->x = bench::outlier_activations(t, d_in, 2);
    d->y = RowMatrix(t, d_out);
    return d;
  });
}

void prefill_fp32(benchmark::State& state, Index d_out, Index d_in, Index t, int threads) {
  backend::ScopedExecutor scope(bench::pool(threads));
  Data& d = data_for(d_out, d_in, t);
  const auto executor = backend::current_executor();
  bench::WallTimer timer;
  for (auto _ : state) {
    bench::fp32_product(*executor, d.x, d.w, d.y);
    benchmark::ClobberMemory();
  }
  const double per_iteration = timer.seconds() / static_cast<double>(state.iterations());
  bench::record_baseline(case_key(d_out, d_in, t, threads), static_cast<double>(state.iterations()), per_iteration);
}

using Layer = ttq::OnlineAWQ<ttq::Quantizer<4, 128>, ttq::DiagCorrelation<2>, ttq::NoResidual, backend::Simd>;
using DefaultLayer = ttq::OnlineAWQ<ttq::Quantizer<4, 128>, ttq::AdaptiveExponent<1>, ttq::NoResidual, backend::Simd>;

template <class LayerT>
void prefill_ttq(benchmark::State& state, Index d_out, Index d_in, Index t, int threads, ttq::OnlineClipOptions clip) {
  backend::ScopedExecutor scope(bench::pool(threads));
  Data& d = data_for(d_out, d_in, t);
  LayerT layer = [&] {
    if constexpr (std::is_same_v<LayerT, DefaultLayer>) {
      ttq::AdaptiveExponentOptions options;
      options.clip = clip;
      return LayerT(d.w, {}, ttq::Quantizer<4, 128>(), ttq::AdaptiveExponent<1>(options));
    } else {
      return LayerT(d.w, {});
    }
  }();
  bench::WallTimer timer;
  for (auto _ : state) {
    layer.begin_prompt();
    layer.calibrate(d.x);  // statistics, D, quantize, repack
    layer.forward(d.x, ttq::MatrixView<float>(d.y));
    benchmark::ClobberMemory();
  }
  const double per_iteration = timer.seconds() / static_cast<double>(state.iterations());
  const double fp32 = bench::baseline_median(case_key(d_out, d_in, t, threads));
  state.counters["ratio"] = fp32 > 0.0 ? per_iteration / fp32 : 0.0;
  state.counters["model"] = 1.0 + 2.0 / static_cast<double>(d_out) + (1.0 + kQuantizeOpsPerWeight) / static_cast<double>(t);
  if constexpr (!std::is_same_v<LayerT, Layer>) return;  // the breakdown below is the fixed-exponent pipeline's

  // Breakdown of a prefill into its phases (once per case, outside the timed loop; the fastest
  // of three, so first-touch page faults of fresh buffers are left out as in the loop above).
  static std::map<std::string, std::array<double, 3>> breakdown;
  auto& parts = breakdown[case_key(d_out, d_in, t, threads)];
  if (parts[0] == 0.0) {
    parts = {1e30, 1e30, 1e30};
    for (int repeat = 0; repeat < 3; ++repeat) {
      ttq::DiagCorrelation<2> stats;
      bench::WallTimer t0;
      stats.observe(d.x, backend::channel_stats_kernel<backend::Simd>());
      const std::vector<float> scales = stats.scales();
      parts[0] = std::min(parts[0], t0.seconds());
      bench::WallTimer t1;
      const ttq::QuantConfig config = ttq::Quantizer<4, 128>().config(d_in);
      const auto prepared = prepare(backend::Simd{}, quantize(backend::Simd{}, config, d.w, scales, {}));
      parts[1] = std::min(parts[1], t1.seconds());
      std::vector<float> inverse(scales.size());
      for (std::size_t j = 0; j < scales.size(); ++j) inverse[j] = 1.0f / scales[j];
      bench::WallTimer t2;
      forward(backend::Simd{}, prepared, backend::ForwardArgs{d.x, inverse, {}, {}, {}, ttq::MatrixView<float>(d.y)});
      parts[2] = std::min(parts[2], t2.seconds());
    }
  }
  state.counters["stats_ms"] = parts[0] * 1e3;
  state.counters["quantize_ms"] = parts[1] * 1e3;
  state.counters["matmul_ms"] = parts[2] * 1e3;
}

void register_cases() {
  const bool quick = bench::options().quick;
  const Index d_in = quick ? 1024 : 4096;
  const std::vector<Index> outs = quick ? std::vector<Index>{1024} : std::vector<Index>{1024, 4096, 11008};
  const std::vector<Index> tokens = quick ? std::vector<Index>{1, 64} : std::vector<Index>{1, 16, 64, 128, 256, 512, 1024, 2048};
  const std::vector<int> thread_counts = quick ? std::vector<int>{1} : std::vector<int>{1, 2};
  for (Index d_out : outs)
    for (Index t : tokens)
      for (int threads : thread_counts) {
        const std::string key = case_key(d_out, d_in, t, threads);
        const auto unit = t >= 256 ? benchmark::kMillisecond : benchmark::kMicrosecond;
        benchmark::RegisterBenchmark(("prefill-fp32/" + key).c_str(), prefill_fp32, d_out, d_in, t, threads)->Unit(unit);
        benchmark::RegisterBenchmark(("overhead/" + key).c_str(), prefill_ttq<Layer>, d_out, d_in, t, threads,
                                     ttq::OnlineClipOptions{})
            ->Unit(unit);
        if (t >= 64)
          benchmark::RegisterBenchmark(("overhead-default/" + key).c_str(), prefill_ttq<DefaultLayer>, d_out, d_in, t, threads,
                                       ttq::OnlineClipOptions{})
              ->Unit(unit);
        if ((t == 128 || t == 512 || t == 2048 || (quick && t == 64)) && d_out <= 4096) {
          const std::pair<const char*, ttq::OnlineClipOptions> modes[] = {
              {"diag", {.objective = ttq::ClipObjective::diag}},
              {"block", {.objective = ttq::ClipObjective::block}},
              {"block-k4", {.objective = ttq::ClipObjective::block, .block_rank = 4}}};
          for (const auto& [mode, clip] : modes)
            benchmark::RegisterBenchmark(("overhead-clip-" + std::string(mode) + "/" + key).c_str(), prefill_ttq<DefaultLayer>,
                                         d_out, d_in, t, threads, clip)
                ->Unit(benchmark::kMillisecond);
        }
      }
}

}  // namespace

int main(int argc, char** argv) { return bench::run_main(argc, argv, register_cases); }
