// Shared plumbing of the ttq benchmark programs: the reduced-set flag, seeded data, "cold"
// weight rotation (so a decode step reads DRAM, not the 32 MiB L3, as real decode does), a
// one-entry cache so Google Benchmark's repeated calls of a case do not rebuild its data, and
// the registry of fp32 baseline times that the speed-up counters divide by.
//
// Times: every program reports Google Benchmark's `real_time` (wall clock; the kernels run on
// ttq's own thread pool, not on benchmark threads) and computes its rate counters from wall time.
#pragma once

#include <benchmark/benchmark.h>

#include <ttq/backend/parallel.hpp>
#include <ttq/core/types.hpp>

#include <algorithm>
#include <any>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace ttq::bench {

struct Options {
  bool quick = false;                            ///< --quick: a reduced set of cases for CI smoke runs
  std::size_t cold_bytes = std::size_t{256} << 20;  ///< weight copies to rotate through
};

inline Options& options() {
  static Options o;
  return o;
}

/// Consumes ttq's own flags (--quick) before Google Benchmark sees the command line.
inline void parse_args(int& argc, char** argv) {
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      options().quick = true;
      options().cold_bytes = std::size_t{16} << 20;
    } else {
      argv[out++] = argv[i];
    }
  }
  argc = out;
}

inline RowMatrix random_matrix(Index rows, Index cols, unsigned seed, float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  RowMatrix m(rows, cols);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = dist(rng);
  return m;
}

/// Activations [t, d_in] with a few outlier channels (every 97th, 30x), as in LLMs.
inline RowMatrix outlier_activations(Index t, Index d_in, unsigned seed) {
  RowMatrix x = random_matrix(t, d_in, seed);
  for (Index j = 0; j < d_in; j += 97) x.col(j) *= 30.0f;
  return x;
}

/// The fp32 baseline Y = X W^T: Eigen's product, split over the executor's threads by output
/// rows (Eigen itself runs one thread).
inline void fp32_product(const backend::Executor& executor, const RowMatrix& x, const RowMatrix& w, RowMatrix& y) {
  backend::parallel_for(executor, w.rows(), 64, [&](Index r0, Index r1) {
    y.middleCols(r0, r1 - r0).noalias() = x * w.middleRows(r0, r1 - r0).transpose();
  }, 1);
}

/// Positive per-channel scales with the spread of real activation statistics.
inline std::vector<float> random_scales(Index n, unsigned seed) {
  std::mt19937 rng(seed);
  std::lognormal_distribution<float> dist(0.0f, 0.5f);
  std::vector<float> d(static_cast<std::size_t>(n));
  for (auto& v : d) v = dist(rng);
  return d;
}

/// How many copies of `bytes` fill the cold-rotation budget (at least 1).
inline std::size_t cold_copies(std::size_t bytes) {
  return std::max<std::size_t>(1, (options().cold_bytes + bytes - 1) / bytes);
}

/// Keeps the data of the most recent case alive across Google Benchmark's calls of it.
template <class T>
T& cached(const std::string& key, const std::function<std::shared_ptr<T>()>& build) {
  static std::string current;
  static std::shared_ptr<void> value;
  if (current != key || !value) {
    value.reset();  // free the previous case first
    value = build();
    current = key;
  }
  return *static_cast<T*>(value.get());
}

/// An executor of n threads per case (the thread count is part of every case name).
inline backend::Executor& pool(int threads) {
  static std::map<int, backend::Executor> pools;
  auto it = pools.find(threads);
  if (it == pools.end()) it = pools.emplace(threads, backend::thread_pool_executor(threads)).first;
  return it->second;
}

/// Seconds per iteration of baseline runs, by key, with the iteration count of each run.
struct BaselineRun {
  double iterations = 0.0;
  double seconds_per_iteration = 0.0;
};
inline std::map<std::string, std::vector<BaselineRun>>& baseline_runs() {
  static std::map<std::string, std::vector<BaselineRun>> runs;
  return runs;
}
inline void record_baseline(const std::string& key, double iterations, double seconds_per_iteration) {
  baseline_runs()[key].push_back({iterations, seconds_per_iteration});
}
/// Median over the runs of `key` that were measured (Google Benchmark also calls a case with
/// few iterations while it sizes the run; those are left out). 0 if none was recorded.
inline double baseline_median(const std::string& key) {
  auto it = baseline_runs().find(key);
  if (it == baseline_runs().end() || it->second.empty()) return 0.0;
  double most = 0.0;
  for (const auto& r : it->second) most = std::max(most, r.iterations);
  std::vector<double> v;
  for (const auto& r : it->second)
    if (r.iterations * 2.0 >= most) v.push_back(r.seconds_per_iteration);
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
  return v[v.size() / 2];
}

/// Wall-clock timing of a state loop.
class WallTimer {
 public:
  WallTimer() : start_(std::chrono::steady_clock::now()) {}
  double seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }

 private:
  std::chrono::steady_clock::time_point start_;
};

/// Runs the benchmark main with ttq's flags stripped.
inline int run_main(int argc, char** argv, const std::function<void()>& register_cases) {
  parse_args(argc, argv);
  register_cases();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  std::fprintf(stderr, "ttq benchmarks: %s set, cold rotation %zu MiB\n", options().quick ? "quick" : "full",
               options().cold_bytes >> 20);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

/// A weight shape [d_out, d_in], named "<d_out>x<d_in>" in case names.
struct Shape {
  Index d_out, d_in;
};
inline std::string shape_name(Shape s) { return std::to_string(s.d_out) + "x" + std::to_string(s.d_in); }

}  // namespace ttq::bench
