// Cost of the scalar reference backend: one online re-quantization (statistics + QDQ + pack)
// and one forward, next to Eigen's fp32 product of the same shape in the same binary. This is
// the baseline the SIMD backend is measured against; it is not meant to be fast.
#include <benchmark/benchmark.h>

#include <ttq/ttq.hpp>

#include <random>

namespace {

ttq::RowMatrix random_matrix(ttq::Index rows, ttq::Index cols, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  ttq::RowMatrix m(rows, cols);
  for (ttq::Index i = 0; i < m.size(); ++i) m.data()[i] = dist(rng);
  return m;
}

// quantize/scalar/b4/g128/<d>x<d>
void quantize_scalar(benchmark::State& state) {
  const ttq::Index d = state.range(0);
  const ttq::RowMatrix w = random_matrix(d, d, 1);
  const std::vector<float> scales(static_cast<std::size_t>(d), 1.25f);
  const ttq::Quantizer<4, 128> quantizer;
  for (auto _ : state) benchmark::DoNotOptimize(quantizer.quantize(w, scales));
  state.counters["source_GB/s"] =
      benchmark::Counter(static_cast<double>(d * d * 4) * static_cast<double>(state.iterations()) / 1e9,
                         benchmark::Counter::kIsRate);
}

// calibrate/scalar/b4/g128/<d>x<d>/T<t>: statistics + requantize of the TTQ operator
void calibrate_scalar(benchmark::State& state) {
  const ttq::Index d = state.range(0), t = state.range(1);
  const ttq::RowMatrix w = random_matrix(d, d, 2), x = random_matrix(t, d, 3);
  ttq::OnlineAWQ<ttq::Quantizer<4, 128>> op(w, {});
  for (auto _ : state) {
    op.begin_prompt();
    op.calibrate(x);
  }
}

// forward/<scalar|fp32>/<d>x<d>/T<t>
void forward_scalar(benchmark::State& state) {
  const ttq::Index d = state.range(0), t = state.range(1);
  const ttq::RowMatrix w = random_matrix(d, d, 4), x = random_matrix(t, d, 5);
  ttq::OnlineAWQ<ttq::Quantizer<4, 128>> op(w, {});
  op.calibrate(x);
  ttq::RowMatrix y(t, d);
  for (auto _ : state) op.forward(x, ttq::MatrixView<float>(y));
}

void forward_fp32(benchmark::State& state) {
  const ttq::Index d = state.range(0), t = state.range(1);
  const ttq::RowMatrix w = random_matrix(d, d, 4), x = random_matrix(t, d, 5);
  ttq::RowMatrix y(t, d);
  for (auto _ : state) y.noalias() = x * w.transpose();
}

}  // namespace

BENCHMARK(quantize_scalar)->Name("quantize/scalar/b4/g128")->Arg(1024)->Unit(benchmark::kMillisecond);
BENCHMARK(calibrate_scalar)->Name("calibrate/scalar/b4/g128")->Args({1024, 64})->Unit(benchmark::kMillisecond);
BENCHMARK(forward_scalar)->Name("forward/scalar/b4/g128")->Args({1024, 1})->Args({1024, 64})->Unit(benchmark::kMicrosecond);
BENCHMARK(forward_fp32)->Name("forward/fp32")->Args({1024, 1})->Args({1024, 64})->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
