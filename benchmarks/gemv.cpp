// ttq_bench_gemv: decode (T = 1, 2, 4, 16 tokens) with TTQ's packed weights next to Eigen's fp32
// product of the same shape, in one binary and one run. Weights are "cold": every iteration
// uses the next of enough distinct copies to fill 256 MiB, so each step streams its weights
// from DRAM as real decode does. Counters: weight_GB_per_s (bytes of the decode-ready weights,
// scales and zeros included, per wall-clock second) and speedup_vs_fp32 (fp32 time of the same
// shape, T and threads over this case's time).
//
// Names: gemv/<ttq|ttq-int16|ttq-int8|ttq-fp32|fp32>/b<bits>/g<group>/<d_out>x<d_in>/T<t>/threads:<n>
// (fp32 rows have no b/g), and gemv/read/<d_out>x<d_in>/threads:<n>: the roofline, a plain
// read of the bytes of the 4-bit weights, cold, in the same run. "ttq" is backend::Simd (24-bit
// activation limbs); "ttq-int16" and "ttq-int8" are the 16- and 8-bit options (int16 and fp32
// on the 4096x4096 shape only); "ttq-fp32" is the fp32-activation kernel. gemv-hot/... rows
// use one copy of the weights (L3-resident): compute speed without DRAM. --quick: reduced set.
#include "bench_support.hpp"

#include <ttq/backend/simd/kernels.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace {

using ttq::Index;
using ttq::RowMatrix;
namespace backend = ttq::backend;
namespace bench = ttq::bench;

using bench::Shape;
using bench::shape_name;
std::string baseline_key(Shape s, Index t, int threads) {
  return shape_name(s) + "/T" + std::to_string(t) + "/threads:" + std::to_string(threads);
}

struct Fp32Data {
  std::vector<RowMatrix> copies;
  RowMatrix x, y;
};

void gemv_fp32(benchmark::State& state, Shape s, Index t, int threads) {
  backend::ScopedExecutor scope(bench::pool(threads));
  const std::string key = "fp32/" + baseline_key(s, t, threads);
  auto& data = bench::cached<Fp32Data>(key, [&] {
    auto d = std::make_shared<Fp32Data>();
    const RowMatrix w = bench::random_matrix(s.d_out, s.d_in, 1);
    d->copies.assign(bench::cold_copies(static_cast<std::size_t>(w.size()) * 4), w);
    d->x = bench::random_matrix(t, s.d_in, 2);
    d->y = RowMatrix(t, s.d_out);
    return d;
  });
  const auto executor = backend::current_executor();
  std::size_t i = 0;
  bench::WallTimer timer;
  for (auto _ : state) {
    const RowMatrix& w = data.copies[i++ % data.copies.size()];
    bench::fp32_product(*executor, data.x, w, data.y);
    benchmark::ClobberMemory();
  }
  const double per_iteration = timer.seconds() / static_cast<double>(state.iterations());
  bench::record_baseline(baseline_key(s, t, threads), static_cast<double>(state.iterations()), per_iteration);
  state.counters["weight_GB_per_s"] = static_cast<double>(s.d_out * s.d_in * 4) / per_iteration / 1e9;
  state.counters["speedup_vs_fp32"] = 1.0;
}

/// The roofline: a plain read of as many bytes as the 4-bit, group-128 weights of the shape,
/// cold like the decode cases, split over the same threads.
void read_roofline(benchmark::State& state, Shape s, int threads) {
  backend::ScopedExecutor scope(bench::pool(threads));
  const std::size_t bytes = static_cast<std::size_t>(s.d_out * s.d_in / 2) / 64 * 64;
  // The kernels' allocator, so the roofline reads pages of the same size (huge pages, see
  // backend/simd/detail/layout.hpp) as the decode cases.
  using Words = backend::detail::AlignedVector<std::uint32_t>;
  auto& copies = bench::cached<std::vector<Words>>("read/" + shape_name(s), [&] {
    return std::make_shared<std::vector<Words>>(bench::cold_copies(bytes), Words(bytes / 4, 1u));
  });
  const auto executor = backend::current_executor();
  std::size_t i = 0;
  bench::WallTimer timer;
  for (auto _ : state) {
    const std::uint32_t* words = copies[i++ % copies.size()].data();
    backend::parallel_for(*executor, static_cast<Index>(bytes / 64), 256, [&](Index b, Index e) {
      std::uint32_t acc[16] = {};
      for (Index k = b * 16; k < e * 16; k += 16)
        for (int u = 0; u < 16; ++u) acc[u] += words[k + u];
      std::uint32_t sum = 0;
      for (auto a : acc) sum += a;
      benchmark::DoNotOptimize(sum);
    }, 16);  // the task granularity of the decode kernels
  }
  const double per_iteration = timer.seconds() / static_cast<double>(state.iterations());
  state.counters["weight_GB_per_s"] = static_cast<double>(bytes) / per_iteration / 1e9;
}

struct TtqData {
  std::vector<backend::SimdPrepared> copies;
  RowMatrix x, y;
  std::vector<float> inverse_scale;
};

template <class Backend>
void gemv_ttq(benchmark::State& state, Shape s, int bits, Index group, Index t, int threads, bool cold) {
  backend::ScopedExecutor scope(bench::pool(threads));
  const std::string key = std::string(Backend::name) + "/" + std::to_string(bits) + "/" + std::to_string(group) + "/" +
                          baseline_key(s, t, threads) + (cold ? "" : "/hot");
  auto& data = bench::cached<TtqData>(key, [&] {
    auto d = std::make_shared<TtqData>();
    const RowMatrix w = bench::random_matrix(s.d_out, s.d_in, 1);
    const std::vector<float> scales = bench::random_scales(s.d_in, 3);
    const ttq::QuantConfig config{bits, group, ttq::FormatKind::awq_asymmetric, 1.0f};
    const backend::SimdPrepared p = prepare(Backend{}, quantize(Backend{}, config, w, scales, {}));
    d->copies.assign(cold ? bench::cold_copies(p.streamed_bytes()) : 1, p);
    d->x = bench::random_matrix(t, s.d_in, 2);
    d->y = RowMatrix(t, s.d_out);
    for (float v : scales) d->inverse_scale.push_back(1.0f / v);
    return d;
  });
  std::size_t i = 0;
  bench::WallTimer timer;
  for (auto _ : state) {
    const backend::ForwardArgs args{data.x, data.inverse_scale, {}, {}, {}, ttq::MatrixView<float>(data.y)};
    forward(Backend{}, data.copies[i++ % data.copies.size()], args);
    benchmark::ClobberMemory();
  }
  const double per_iteration = timer.seconds() / static_cast<double>(state.iterations());
  state.counters["weight_GB_per_s"] = static_cast<double>(data.copies[0].streamed_bytes()) / per_iteration / 1e9;
  const double fp32 = bench::baseline_median(baseline_key(s, t, threads));
  state.counters["speedup_vs_fp32"] = (fp32 > 0.0 && cold) ? fp32 / per_iteration : 0.0;
  state.counters["bits_per_weight"] =
      8.0 * static_cast<double>(data.copies[0].streamed_bytes()) / static_cast<double>(s.d_out * s.d_in);
}

void register_cases() {
  const bool quick = bench::options().quick;
  // Hot: one copy of the weights (9 MiB at 4 bits, inside the 32 MiB L3): the kernels' compute
  // speed without DRAM, to tell compute-bound from memory-bound cases.
  if (!quick)
    for (int threads : {1, 2})
      for (int bits : {2, 3, 4, 8}) {
        const std::string tail = "/b" + std::to_string(bits) + "/g128/4096x4096/T1/threads:" + std::to_string(threads);
        benchmark::RegisterBenchmark(("gemv-hot/ttq" + tail).c_str(), gemv_ttq<backend::Simd>, Shape{4096, 4096}, bits, Index{128},
                                     Index{1}, threads, false)
            ->Unit(benchmark::kMicrosecond);
        benchmark::RegisterBenchmark(("gemv-hot/ttq-int8" + tail).c_str(), gemv_ttq<backend::SimdInt8>, Shape{4096, 4096}, bits,
                                     Index{128}, Index{1}, threads, false)
            ->Unit(benchmark::kMicrosecond);
      }
  const std::vector<Shape> shapes = quick ? std::vector<Shape>{{1024, 1024}}
                                          : std::vector<Shape>{{4096, 4096}, {11008, 4096}, {4096, 11008}, {1024, 1024}, {576, 1536}};
  const std::vector<int> all_bits = quick ? std::vector<int>{4} : std::vector<int>{2, 3, 4, 8};
  const std::vector<Index> groups = quick ? std::vector<Index>{128} : std::vector<Index>{128, 32};
  const std::vector<Index> tokens = quick ? std::vector<Index>{1} : std::vector<Index>{1, 2, 4, 16};
  const std::vector<int> thread_counts = quick ? std::vector<int>{1} : std::vector<int>{1, 2};
  for (Shape s : shapes)
    for (int threads : thread_counts)
      benchmark::RegisterBenchmark(("gemv/read/" + shape_name(s) + "/threads:" + std::to_string(threads)).c_str(), read_roofline, s,
                                   threads)
          ->Unit(benchmark::kMicrosecond);
  for (Shape s : shapes)
    for (Index t : tokens)
      for (int threads : thread_counts) {
        const std::string tail = "/" + baseline_key(s, t, threads);
        benchmark::RegisterBenchmark(("gemv/fp32" + tail).c_str(), gemv_fp32, s, t, threads)->Unit(benchmark::kMicrosecond);
        for (int bits : all_bits)
          for (Index group : groups) {
            const std::string bg = "/b" + std::to_string(bits) + "/g" + std::to_string(group);
            benchmark::RegisterBenchmark(("gemv/ttq" + bg + tail).c_str(), gemv_ttq<backend::Simd>, s, bits, group, t, threads, true)
                ->Unit(benchmark::kMicrosecond);
            benchmark::RegisterBenchmark(("gemv/ttq-int8" + bg + tail).c_str(), gemv_ttq<backend::SimdInt8>, s, bits, group, t,
                                         threads, true)
                ->Unit(benchmark::kMicrosecond);
            // The 16-bit middle ground, on the headline shape.
            if (s.d_out == 4096 && s.d_in == 4096)
              benchmark::RegisterBenchmark(("gemv/ttq-int16" + bg + tail).c_str(), gemv_ttq<backend::SimdInt16>, s, bits, group, t,
                                           threads, true)
                  ->Unit(benchmark::kMicrosecond);
            // The fp32-activation kernel: the portable path, shown on the headline shapes only.
            if (group == 128 && (s.d_out == 4096 && s.d_in == 4096))
              benchmark::RegisterBenchmark(("gemv/ttq-fp32" + bg + tail).c_str(), gemv_ttq<backend::SimdFp32>, s, bits, group, t,
                                           threads, true)
                  ->Unit(benchmark::kMicrosecond);
          }
      }
}

}  // namespace

int main(int argc, char** argv) { return bench::run_main(argc, argv, register_cases); }
