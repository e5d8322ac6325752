// Cost of the adaptive exponent (AdaptiveExponent: |grid| quantizations per requantization)
// against one plain quantization and against an fp32 prefill of the same layer at T = 128, 512,
// 2048, all in one binary and one run (spec "Adaptive exponent": cost independent of T).
//   adaptive/quantize_once/<d>x<d>       one quantization of W (the TTQ fixed-alpha cost)
//   adaptive/grid<k>/<d>x<d>             the adaptive plan with a k-point grid
//   adaptive/prefill_fp32/<d>x<d>/T<t>   Eigen fp32 X W^T, the work the overhead is relative to
// A script divides the medians (docs/performance.md); no timing is asserted anywhere.
#include <benchmark/benchmark.h>

#include <ttq/ttq.hpp>

#include <random>
#include <string>
#include <vector>

namespace {

using Q = ttq::Quantizer<4, 128>;

ttq::RowMatrix random_matrix(ttq::Index rows, ttq::Index cols, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  ttq::RowMatrix m(rows, cols);
  for (ttq::Index i = 0; i < m.size(); ++i) m.data()[i] = dist(rng);
  return m;
}

std::vector<double> grid(int points) {
  std::vector<double> g;
  for (int i = 0; i < points; ++i) g.push_back(static_cast<double>(i) / points);
  return g;
}

void quantize_once(benchmark::State& state, ttq::Index d) {
  const ttq::RowMatrix w = random_matrix(d, d, 1), x = random_matrix(64, d, 2);
  ttq::OnlineAWQ<Q> op(w, {});
  op.observe(x);
  for (auto _ : state) op.requantize();
}

void adaptive_plan(benchmark::State& state, ttq::Index d, int points) {
  const ttq::RowMatrix w = random_matrix(d, d, 1), x = random_matrix(64, d, 2);
  ttq::OnlineAWQ<Q, ttq::AdaptiveExponent<1>> op(w, {}, Q(), ttq::AdaptiveExponent<1>({.grid = grid(points)}));
  op.observe(x);
  for (auto _ : state) op.requantize();
}

void prefill_fp32(benchmark::State& state, ttq::Index d, ttq::Index t) {
  const ttq::RowMatrix w = random_matrix(d, d, 3), x = random_matrix(t, d, 4);
  ttq::RowMatrix y(t, d);
  for (auto _ : state) y.noalias() = x * w.transpose();
}

void register_all() {
  for (long d : {1024L, 4096L}) {
    const std::string shape = std::to_string(d) + "x" + std::to_string(d);
    benchmark::RegisterBenchmark(("adaptive/quantize_once/" + shape).c_str(), quantize_once, d)->Unit(benchmark::kMillisecond);
    for (int k : {4, 10})
      benchmark::RegisterBenchmark(("adaptive/grid" + std::to_string(k) + "/" + shape).c_str(), adaptive_plan, d, k)
          ->Unit(benchmark::kMillisecond);
    for (long t : {128L, 512L, 2048L})
      benchmark::RegisterBenchmark(("adaptive/prefill_fp32/" + shape + "/T" + std::to_string(t)).c_str(), prefill_fp32, d, t)
          ->Unit(benchmark::kMillisecond);
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
