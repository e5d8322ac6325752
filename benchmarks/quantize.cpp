// ttq_bench_quantize: the per-prompt re-quantization W * diag(D) -> packed codes with the SIMD
// backend, for fp32 and bf16 W, next to a plain read of the same bytes measured in the same
// binary (the roofline: quantizing cannot be faster than reading W once). W is cold (rotated
// through 256 MiB of copies, larger than the L3). The scalar oracle's time is shown for scale.
//
// Names: read/<fp32|bf16>/<d_out>x<d_in>/threads:<n>
//        quantize/<fp32|bf16>/b<bits>/g<group>/<d_out>x<d_in>/threads:<n>
//        quantize-scalar/fp32/b4/g128/<d_out>x<d_in>/threads:1
//        quantize-hot/fp32/b4/g128/1024x4096/threads:<n>  (W in the L3: compute speed)
// Counters: source_GB_per_s (bytes of W read per wall-clock second) and, on quantize rows,
// fraction_of_read (read time / quantize time of the same bytes). --quick: a reduced set.
#include "bench_support.hpp"

#include <ttq/backend/simd/kernels.hpp>
#include <ttq/core/half.hpp>

#include <string>
#include <vector>

namespace {

using ttq::Index;
using ttq::RowMatrix;
namespace backend = ttq::backend;
namespace bench = ttq::bench;

using bench::Shape;
using bench::shape_name;

template <class Source>
struct Weights {
  std::vector<std::vector<Source>> copies;
  std::vector<float> scales;
};

template <class Source>
Weights<Source>& weights(Shape s, bool cold = true) {
  return bench::cached<Weights<Source>>(std::string(sizeof(Source) == 4 ? "fp32/" : "bf16/") + shape_name(s) + (cold ? "" : "/hot"), [&] {
    auto d = std::make_shared<Weights<Source>>();
    const RowMatrix w = bench::random_matrix(s.d_out, s.d_in, 1);
    std::vector<Source> one(static_cast<std::size_t>(w.size()));
    for (Index i = 0; i < w.size(); ++i) {
      if constexpr (std::is_same_v<Source, float>) one[static_cast<std::size_t>(i)] = w.data()[i];
      else one[static_cast<std::size_t>(i)] = ttq::BFloat16::from_float(w.data()[i]);
    }
    d->copies.assign(cold ? bench::cold_copies(one.size() * sizeof(Source)) : 1, one);
    d->scales = bench::random_scales(s.d_in, 3);
    return d;
  });
}

const char* source_name(bool bf16) { return bf16 ? "bf16" : "fp32"; }

/// Sums every 32-bit word of W, split over the threads: the bytes quantize must read, at the
/// speed plain loads reach (vectorized by the compiler; 4 accumulators).
template <class Source>
void read_source(benchmark::State& state, Shape s, int threads) {
  backend::ScopedExecutor scope(bench::pool(threads));
  auto& w = weights<Source>(s);
  const auto executor = backend::current_executor();
  const std::size_t bytes = w.copies[0].size() * sizeof(Source);
  std::size_t i = 0;
  bench::WallTimer timer;
  for (auto _ : state) {
    const auto* words = reinterpret_cast<const std::uint32_t*>(w.copies[i++ % w.copies.size()].data());
    const Index n = static_cast<Index>(bytes / 4);
    backend::parallel_for(*executor, n / 64, 1024, [&](Index b, Index e) {
      std::uint32_t acc[16] = {};
      for (Index k = b * 64; k < e * 64; k += 16)
        for (int u = 0; u < 16; ++u) acc[u] += words[k + u];
      std::uint32_t sum = 0;
      for (auto a : acc) sum += a;
      benchmark::DoNotOptimize(sum);
    }, 1);
  }
  const double per_iteration = timer.seconds() / static_cast<double>(state.iterations());
  bench::record_baseline(std::string("read/") + source_name(sizeof(Source) == 2) + "/" + shape_name(s) + "/" + std::to_string(threads),
                         static_cast<double>(state.iterations()), per_iteration);
  state.counters["source_GB_per_s"] = static_cast<double>(bytes) / per_iteration / 1e9;
}

template <class Source, class Backend>
void quantize_source(benchmark::State& state, Shape s, int bits, Index group, int threads, bool cold) {
  backend::ScopedExecutor scope(bench::pool(threads));
  auto& w = weights<Source>(s, cold);
  const ttq::QuantConfig config{bits, group, ttq::FormatKind::awq_asymmetric, 1.0f};
  const std::size_t bytes = w.copies[0].size() * sizeof(Source);
  std::size_t i = 0;
  bench::WallTimer timer;
  for (auto _ : state) {
    const ttq::MatrixView<const Source> view(w.copies[i++ % w.copies.size()].data(), s.d_out, s.d_in);
    benchmark::DoNotOptimize(quantize(Backend{}, config, view, w.scales, {}));
  }
  const double per_iteration = timer.seconds() / static_cast<double>(state.iterations());
  state.counters["source_GB_per_s"] = static_cast<double>(bytes) / per_iteration / 1e9;
  const double read =
      bench::baseline_median(std::string("read/") + source_name(sizeof(Source) == 2) + "/" + shape_name(s) + "/" + std::to_string(threads));
  state.counters["fraction_of_read"] = (read > 0.0 && cold) ? read / per_iteration : 0.0;
}

void register_cases() {
  const bool quick = bench::options().quick;
  // Hot: a 16 MiB W that stays in the L3, to separate compute from memory.
  if (!quick)
    for (int threads : {1, 2})
      benchmark::RegisterBenchmark(("quantize-hot/fp32/b4/g128/1024x4096/threads:" + std::to_string(threads)).c_str(),
                                   quantize_source<float, backend::Simd>, Shape{1024, 4096}, 4, Index{128}, threads, false)
          ->Unit(benchmark::kMillisecond);
  const std::vector<Shape> shapes = quick ? std::vector<Shape>{{1024, 1024}} : std::vector<Shape>{{4096, 4096}, {11008, 4096}};
  const std::vector<int> all_bits = quick ? std::vector<int>{4} : std::vector<int>{2, 3, 4, 8};
  const std::vector<Index> groups = quick ? std::vector<Index>{128} : std::vector<Index>{128, 32};
  const std::vector<int> thread_counts = quick ? std::vector<int>{1} : std::vector<int>{1, 2};
  for (Shape s : shapes)
    for (bool bf16 : {false, true})
      for (int threads : thread_counts) {
        const std::string tail = "/" + shape_name(s) + "/threads:" + std::to_string(threads);
        const std::string source = source_name(bf16);
        (bf16 ? benchmark::RegisterBenchmark(("read/" + source + tail).c_str(), read_source<ttq::BFloat16>, s, threads)
              : benchmark::RegisterBenchmark(("read/" + source + tail).c_str(), read_source<float>, s, threads))
            ->Unit(benchmark::kMillisecond);
        for (int bits : all_bits)
          for (Index group : groups) {
            const std::string name = "quantize/" + source + "/b" + std::to_string(bits) + "/g" + std::to_string(group) + tail;
            (bf16 ? benchmark::RegisterBenchmark(name.c_str(), quantize_source<ttq::BFloat16, backend::Simd>, s, bits, group, threads, true)
                  : benchmark::RegisterBenchmark(name.c_str(), quantize_source<float, backend::Simd>, s, bits, group, threads, true))
                ->Unit(benchmark::kMillisecond);
          }
        if (!bf16 && threads == 1)
          benchmark::RegisterBenchmark(("quantize-scalar/fp32/b4/g128" + tail).c_str(), quantize_source<float, backend::Scalar>, s, 4,
                                       Index{128}, 1, true)
              ->Unit(benchmark::kMillisecond);
      }
}

}  // namespace

int main(int argc, char** argv) { return bench::run_main(argc, argv, register_cases); }
