// ttq_bench_cuda: the CUDA backend's speed in one binary and one run, next to its references.
//
//   gemv/ttq/b{2,3,4}/g128/<d_out>x<d_in>/T{1,4,16}   packed GEMV, fp16 activations and outputs
//   gemv/cublas_fp16/<d_out>x<d_in>/T{1,4,16}         cublasGemmEx fp16 x fp16 -> fp16, fp32 compute
//   copy/ttq_b{2,3,4}/<d_out>x<d_in>                  cudaMemcpy D2D of the GEMV's weight bytes
//   quantize/ttq/bf16/b4/g128/<d_out>x<d_in>          online quantize + pack of a bf16 weight with D
//   copy/bf16_weight/<d_out>x<d_in>                   cudaMemcpy D2D of that bf16 weight
//   calibrate/ttq/bf16/b4/g128/<d_out>x<d_in>/T{128,512,2048}   statistics + D + quantize
//   gemm/cublas_fp16/<d_out>x<d_in>/T{128,512,2048}   the prefill GEMM it is compared with (Eq. 3)
//
// Timing is manual, with CUDA events around a batch of launches that is queued behind a
// blocking kernel (so host launch overhead never shows as GPU idle time), rotating through
// enough copies of the weights to exceed three times the L2 cache (so no launch reads weights
// another launch left in L2, as in a real decode step through many layers).
//
// Bandwidths: a GEMV's is its weight bytes (codes + scales + zeros) per second; a copy's counts
// read and write, 2 * bytes per second: the DRAM traffic the device sustains, the practical
// roofline. With --ttq_summary=<file> the binary also writes the issue's targets (docs/cuda.md)
// with the measured numbers and whether each is met; --quick runs one shape of each kind only.
// Without a GPU it prints "SKIPPED" and exits 0.
#include <benchmark/benchmark.h>
#include <cublas_v2.h>

#include <ttq/backend/cuda/gemv.cuh>
#include <ttq/op/cuda/online_awq.cuh>
#include <ttq/backend/cuda/quantize.cuh>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

using namespace ttq;
using namespace ttq::cuda;

namespace {

void check_cublas(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS) throw std::runtime_error(std::string("cuBLAS: ") + what + " failed (" + std::to_string(status) + ")");
}

/// Process-wide state: the stream, a cuBLAS handle, the device's shape, the blocking flag.
struct Context {
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  int sms = 0;
  std::size_t l2_bytes = 0;
  std::size_t free_bytes = 0;
  std::string device;
  int* flag_host = nullptr;
  int* flag_device = nullptr;

  Context() {
    cuda::detail::check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
    check_cublas(cublasCreate(&cublas), "cublasCreate");
    check_cublas(cublasSetStream(cublas, stream), "cublasSetStream");
    int dev = 0, l2 = 0;
    cuda::detail::check(cudaGetDevice(&dev), "cudaGetDevice");
    cuda::detail::check(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev), "L2 size");
    l2_bytes = static_cast<std::size_t>(l2);
    sms = multiprocessor_count();
    cudaDeviceProp prop{};
    cuda::detail::check(cudaGetDeviceProperties(&prop, dev), "cudaGetDeviceProperties");
    device = prop.name;
    std::size_t total = 0;
    cuda::detail::check(cudaMemGetInfo(&free_bytes, &total), "cudaMemGetInfo");
    cuda::detail::check(cudaHostAlloc(&flag_host, sizeof(int), cudaHostAllocMapped), "cudaHostAlloc");
    cuda::detail::check(cudaHostGetDevicePointer(&flag_device, flag_host, 0), "cudaHostGetDevicePointer");
  }
};

Context& context() {
  static Context c;
  return c;
}

/// Copies of a buffer such that they span at least 3x the L2 (at most 64, and within a memory budget).
int rotation_copies(std::size_t bytes) {
  const Context& c = context();
  const std::size_t wanted = (3 * c.l2_bytes + bytes - 1) / bytes;
  const std::size_t budget = c.free_bytes / 4 / (bytes == 0 ? 1 : bytes);
  std::size_t copies = wanted < 1 ? 1 : wanted;
  if (copies > 64) copies = 64;
  if (copies > budget) copies = budget < 1 ? 1 : budget;
  return static_cast<int>(copies);
}

__device__ std::uint32_t mix(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return static_cast<std::uint32_t>(x);
}

__global__ void fill_words(std::uint32_t* p, std::size_t n, std::uint32_t seed) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    p[i] = mix(i * 0x9E3779B97F4A7C15ULL + seed);
}

/// Uniform in [lo, hi), as T.
template <class T>
__global__ void fill_uniform(T* p, std::size_t n, float lo, float hi, std::uint32_t seed) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const float u = static_cast<float>(mix(i * 0x9E3779B97F4A7C15ULL + seed) >> 8) * 0x1p-24f;
    p[i] = cuda::detail::from_float<T>(lo + (hi - lo) * u);
  }
}

template <class T>
void fill(T* p, std::size_t n, float lo, float hi, std::uint32_t seed) {
  fill_uniform<T><<<1024, 256, 0, context().stream>>>(p, n, lo, hi, seed);
  cuda::detail::check_launch("fill_uniform");
}

__global__ void spin_until_released(volatile int* flag) {
  long long start = 0, now = 0;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  } while (*flag == 0 && now - start < 2'000'000'000LL);  // never more than 2 s
}

/// Seconds per launch of `launches` calls of `body(i)`, queued behind a blocking kernel and
/// timed with events on the GPU.
template <class F>
double time_launches(int launches, F&& body) {
  Context& c = context();
  cudaEvent_t start, stop;
  cuda::detail::check(cudaEventCreate(&start), "cudaEventCreate");
  cuda::detail::check(cudaEventCreate(&stop), "cudaEventCreate");
  *reinterpret_cast<volatile int*>(c.flag_host) = 0;
  spin_until_released<<<1, 1, 0, c.stream>>>(c.flag_device);
  cuda::detail::check(cudaEventRecord(start, c.stream), "cudaEventRecord");
  for (int i = 0; i < launches; ++i) body(i);
  cuda::detail::check(cudaEventRecord(stop, c.stream), "cudaEventRecord");
  *reinterpret_cast<volatile int*>(c.flag_host) = 1;
  cuda::detail::check(cudaEventSynchronize(stop), "cudaEventSynchronize");
  float ms = 0.0f;
  cuda::detail::check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
  (void)cudaEventDestroy(start);
  (void)cudaEventDestroy(stop);
  return static_cast<double>(ms) * 1e-3 / launches;
}

std::string shape_name(Index d_out, Index d_in) { return std::to_string(d_out) + "x" + std::to_string(d_in); }

constexpr Index kGroup = 128;

/// Packed weights filled with random codes and positive scales (the values do not change speed).
DeviceQuantizedMatrix random_quantized(Index d_out, Index d_in, int bits, std::uint32_t seed) {
  Context& c = context();
  DeviceQuantizedMatrix q(QuantConfig{bits, kGroup, FormatKind::awq_asymmetric, 1.0f}, d_out, d_in, c.stream);
  fill_words<<<1024, 256, 0, c.stream>>>(q.codes(), static_cast<std::size_t>(d_out * q.code_stride()), seed);
  fill(q.scales(), static_cast<std::size_t>(d_out * q.groups_per_row()), 0.001f, 0.01f, seed + 1);
  fill(q.zeros(), static_cast<std::size_t>(d_out * q.groups_per_row()), 0.0f, static_cast<float>((1 << bits) - 1), seed + 2);
  return q;
}

std::size_t quantized_bytes(Index d_out, Index d_in, int bits) {
  const Index groups = (d_in + kGroup - 1) / kGroup;
  return static_cast<std::size_t>(d_out * layout::padded_words_per_row(d_in, bits) * 4 + 2 * d_out * groups * 4);
}

void gemv_ttq(benchmark::State& state, Index d_out, Index d_in, int tokens, int bits) {
  Context& c = context();
  const std::size_t bytes = quantized_bytes(d_out, d_in, bits);
  const int copies = rotation_copies(bytes);
  std::vector<DeviceQuantizedMatrix> weights;
  for (int i = 0; i < copies; ++i) weights.push_back(random_quantized(d_out, d_in, bits, 17u * static_cast<unsigned>(i) + 1u));
  DeviceBuffer<__half> x(static_cast<std::size_t>(tokens * d_in), c.stream), y(static_cast<std::size_t>(tokens * d_out), c.stream);
  DeviceBuffer<float> inverse(static_cast<std::size_t>((d_in + 255) / 256 * 256), c.stream);
  fill(x.data(), x.size(), -1.0f, 1.0f, 5u);
  fill(inverse.data(), inverse.size(), 0.5f, 2.0f, 6u);
  GemvOperands<__half> operands;
  operands.x = DeviceMatrixView<const __half>(x.data(), tokens, d_in);
  operands.inverse_scale = inverse.data();
  operands.y = DeviceMatrixView<__half>(y.data(), tokens, d_out);
  GemvWorkspace workspace(c.stream);
  for (int i = 0; i < copies; ++i) gemv_on_device(weights[static_cast<std::size_t>(i)].view(), operands, workspace, c.stream, GemvPath::packed, c.sms);
  cuda::detail::check(cudaStreamSynchronize(c.stream), "warm-up");
  for (auto _ : state) {
    state.SetIterationTime(time_launches(copies, [&](int i) {
      gemv_on_device(weights[static_cast<std::size_t>(i)].view(), operands, workspace, c.stream, GemvPath::packed, c.sms);
    }));
  }
  state.counters["weight_bytes"] = static_cast<double>(bytes);
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(bytes) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["l2_rotation"] = copies;
}

/// Y [T, d_out] = X [T, d_in] W^T, fp16 in and out, fp32 compute (column-major: Y^T = W X^T with W^T stored).
void cublas_fp16(cudaStream_t, const __half* w, const __half* x, __half* y, Index d_out, Index d_in, Index tokens) {
  const float alpha = 1.0f, beta = 0.0f;
  check_cublas(cublasGemmEx(context().cublas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(d_out), static_cast<int>(tokens),
                            static_cast<int>(d_in), &alpha, w, CUDA_R_16F, static_cast<int>(d_in), x, CUDA_R_16F,
                            static_cast<int>(d_in), &beta, y, CUDA_R_16F, static_cast<int>(d_out), CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT),
               "cublasGemmEx");
}

void gemm_cublas(benchmark::State& state, Index d_out, Index d_in, Index tokens) {
  Context& c = context();
  const std::size_t bytes = static_cast<std::size_t>(d_out * d_in) * 2;
  const int copies = rotation_copies(bytes);
  std::vector<DeviceBuffer<__half>> weights;
  for (int i = 0; i < copies; ++i) {
    weights.emplace_back(static_cast<std::size_t>(d_out * d_in), c.stream);
    fill(weights.back().data(), weights.back().size(), -0.05f, 0.05f, 100u + static_cast<unsigned>(i));
  }
  DeviceBuffer<__half> x(static_cast<std::size_t>(tokens * d_in), c.stream), y(static_cast<std::size_t>(tokens * d_out), c.stream);
  fill(x.data(), x.size(), -1.0f, 1.0f, 7u);
  cublas_fp16(c.stream, weights[0].data(), x.data(), y.data(), d_out, d_in, tokens);  // warm-up (heuristics, workspace)
  cuda::detail::check(cudaStreamSynchronize(c.stream), "warm-up");
  for (auto _ : state) {
    state.SetIterationTime(time_launches(copies, [&](int i) {
      cublas_fp16(c.stream, weights[static_cast<std::size_t>(i)].data(), x.data(), y.data(), d_out, d_in, tokens);
    }));
  }
  state.counters["weight_bytes"] = static_cast<double>(bytes);
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(bytes) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["TFLOP/s"] = benchmark::Counter(2.0 * static_cast<double>(d_out * d_in * tokens) * 1e-12,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

void copy_bytes(benchmark::State& state, std::size_t bytes) {
  Context& c = context();
  const int copies = rotation_copies(2 * bytes);
  std::vector<DeviceBuffer<unsigned char>> source, target;
  for (int i = 0; i < copies; ++i) {
    source.emplace_back(bytes, c.stream);
    target.emplace_back(bytes, c.stream);
    source.back().zero();
  }
  for (auto _ : state) {
    state.SetIterationTime(time_launches(copies, [&](int i) {
      cuda::detail::check(cudaMemcpyAsync(target[static_cast<std::size_t>(i)].data(), source[static_cast<std::size_t>(i)].data(), bytes,
                                    cudaMemcpyDeviceToDevice, c.stream),
                    "cudaMemcpyAsync");
    }));
  }
  state.counters["bytes"] = static_cast<double>(bytes);
  // Read + write: the DRAM traffic a copy sustains.
  state.counters["GB/s"] = benchmark::Counter(2.0 * static_cast<double>(bytes) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void quantize_ttq(benchmark::State& state, Index d_out, Index d_in) {
  Context& c = context();
  DeviceBuffer<__nv_bfloat16> w(static_cast<std::size_t>(d_out * d_in), c.stream);
  DeviceBuffer<float> d(static_cast<std::size_t>(d_in), c.stream);
  DeviceBuffer<unsigned> status(1, c.stream);
  status.zero();
  fill(w.data(), w.size(), -0.05f, 0.05f, 11u);
  fill(d.data(), d.size(), 0.5f, 2.0f, 12u);
  const QuantConfig config{4, kGroup, FormatKind::awq_asymmetric, 1.0f};
  DeviceQuantizedMatrix q(config, d_out, d_in, c.stream);
  const DeviceMatrixRef ref = DeviceMatrixView<const __nv_bfloat16>(w.data(), d_out, d_in);
  quantize_on_device(ref, d.data(), config, q, status.data(), c.stream);
  cuda::detail::check(cudaStreamSynchronize(c.stream), "warm-up");
  for (auto _ : state)
    state.SetIterationTime(time_launches(3, [&](int) { quantize_on_device(ref, d.data(), config, q, status.data(), c.stream); }));
  const double traffic = static_cast<double>(w.bytes() + q.bytes());
  state.counters["weight_bytes"] = static_cast<double>(w.bytes());
  state.counters["traffic_bytes"] = traffic;
  state.counters["GB/s"] = benchmark::Counter(traffic * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void calibrate_ttq(benchmark::State& state, Index d_out, Index d_in, Index tokens) {
  Context& c = context();
  DeviceBuffer<__nv_bfloat16> w(static_cast<std::size_t>(d_out * d_in), c.stream), x(static_cast<std::size_t>(tokens * d_in), c.stream);
  fill(w.data(), w.size(), -0.05f, 0.05f, 21u);
  fill(x.data(), x.size(), -2.0f, 2.0f, 22u);
  DeviceLayer layer;
  layer.quantized_part = DeviceMatrixView<const __nv_bfloat16>(w.data(), d_out, d_in);
  CudaOnlineAWQ<2> op(layer, QuantConfig{4, kGroup, FormatKind::awq_asymmetric, 1.0f}, DiagCorrelationOptions{}, c.stream);
  const DeviceMatrixView<const __nv_bfloat16> xv(x.data(), tokens, d_in);
  op.calibrate(xv);
  cuda::detail::check(cudaStreamSynchronize(c.stream), "warm-up");
  for (auto _ : state)
    state.SetIterationTime(time_launches(3, [&](int) {
      op.begin_prompt();  // decay 0: a fresh prompt each time, as in serving
      op.calibrate(xv);
    }));
  state.counters["tokens"] = static_cast<double>(tokens);
}

/// Records every run for the summary, and prints as the console reporter does.
class RecordingReporter : public benchmark::ConsoleReporter {
 public:
  struct Result {
    double seconds = 0.0;
    std::map<std::string, double> counters;
  };
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      if (run.error_occurred || run.run_type != Run::RT_Iteration || run.iterations == 0) continue;
      Result r;
      r.seconds = run.real_accumulated_time / static_cast<double>(run.iterations);
      for (const auto& [name, counter] : run.counters) r.counters[name] = counter.value;
      results[run.benchmark_name()] = r;
    }
    ConsoleReporter::ReportRuns(runs);
  }
  std::map<std::string, Result> results;
};

// The issue's shapes; --quick (the smoke run of CI's benchmark loop) keeps the first of each.
std::vector<std::pair<Index, Index>> kGemvShapes = {{4096, 4096}, {8192, 8192}, {28672, 8192}, {8192, 28672}};
std::vector<std::pair<Index, Index>> kQuantizeShapes = {{8192, 8192}, {28672, 8192}};
std::vector<int> kDecodeTokens = {1, 4, 16};
std::vector<int> kPrefillTokens = {128, 512, 2048};
const std::vector<int> kBits = {2, 3, 4};

void use_quick_set() {
  kGemvShapes.resize(1);
  kQuantizeShapes.resize(1);
  kDecodeTokens = {1};
  kPrefillTokens = {128};
}

std::string gemv_name(int bits, Index d_out, Index d_in, int t) {
  return "gemv/ttq/b" + std::to_string(bits) + "/g128/" + shape_name(d_out, d_in) + "/T" + std::to_string(t);
}
std::string cublas_name(Index d_out, Index d_in, int t) {
  return (t <= 16 ? "gemv/cublas_fp16/" : "gemm/cublas_fp16/") + shape_name(d_out, d_in) + "/T" + std::to_string(t);
}
std::string copy_name(int bits, Index d_out, Index d_in) { return "copy/ttq_b" + std::to_string(bits) + "/" + shape_name(d_out, d_in); }

void register_benchmarks() {
  auto finish = [](benchmark::internal::Benchmark* b) { b->UseManualTime()->Unit(benchmark::kMicrosecond)->MinTime(0.05); };
  for (const auto& [d_out, d_in] : kGemvShapes) {
    for (int t : kDecodeTokens) {
      for (int bits : kBits)
        finish(benchmark::RegisterBenchmark(gemv_name(bits, d_out, d_in, t).c_str(),
                                            [=](benchmark::State& s) { gemv_ttq(s, d_out, d_in, t, bits); }));
      finish(benchmark::RegisterBenchmark(cublas_name(d_out, d_in, t).c_str(),
                                          [=](benchmark::State& s) { gemm_cublas(s, d_out, d_in, t); }));
    }
    for (int bits : kBits)
      finish(benchmark::RegisterBenchmark(copy_name(bits, d_out, d_in).c_str(),
                                          [=](benchmark::State& s) { copy_bytes(s, quantized_bytes(d_out, d_in, bits)); }));
  }
  for (const auto& [d_out, d_in] : kQuantizeShapes) {
    finish(benchmark::RegisterBenchmark(("quantize/ttq/bf16/b4/g128/" + shape_name(d_out, d_in)).c_str(),
                                        [=](benchmark::State& s) { quantize_ttq(s, d_out, d_in); }));
    finish(benchmark::RegisterBenchmark(("copy/bf16_weight/" + shape_name(d_out, d_in)).c_str(),
                                        [=](benchmark::State& s) { copy_bytes(s, static_cast<std::size_t>(d_out * d_in) * 2); }));
    for (int t : kPrefillTokens) {
      finish(benchmark::RegisterBenchmark(
          ("calibrate/ttq/bf16/b4/g128/" + shape_name(d_out, d_in) + "/T" + std::to_string(t)).c_str(),
          [=](benchmark::State& s) { calibrate_ttq(s, d_out, d_in, t); }));
      finish(benchmark::RegisterBenchmark(cublas_name(d_out, d_in, t).c_str(),
                                          [=](benchmark::State& s) { gemm_cublas(s, d_out, d_in, t); }));
    }
  }
}

/// The issue's targets against the measurements, as JSON.
std::string summary_json(const std::map<std::string, RecordingReporter::Result>& r) {
  const Context& c = context();
  auto seconds = [&](const std::string& name) { auto it = r.find(name); return it == r.end() ? NAN : it->second.seconds; };
  std::ostringstream out;
  out.precision(6);
  auto number = [&](double v) { std::ostringstream s; s.precision(6); if (std::isfinite(v)) s << v; else s << "null"; return s.str(); };
  out << "{\n  \"device\": \"" << c.device << "\",\n  \"sms\": " << c.sms << ",\n  \"l2_bytes\": " << c.l2_bytes << ",\n";
  // GEMV comparisons for every shape and T.
  out << "  \"gemv\": [\n";
  bool first = true;
  for (const auto& [d_out, d_in] : kGemvShapes)
    for (int t : kDecodeTokens) {
      const double cublas = seconds(cublas_name(d_out, d_in, t));
      for (int bits : kBits) {
        const double ttq = seconds(gemv_name(bits, d_out, d_in, t));
        const double copy = seconds(copy_name(bits, d_out, d_in));
        const double bytes = static_cast<double>(quantized_bytes(d_out, d_in, bits));
        out << (first ? "" : ",\n") << "    {\"shape\": \"" << shape_name(d_out, d_in) << "\", \"T\": " << t << ", \"bits\": " << bits
            << ", \"ttq_us\": " << number(ttq * 1e6) << ", \"cublas_fp16_us\": " << number(cublas * 1e6)
            << ", \"speedup_vs_cublas\": " << number(cublas / ttq) << ", \"ttq_GBps\": " << number(bytes / ttq * 1e-9)
            << ", \"copy_GBps\": " << number(2.0 * bytes / copy * 1e-9)
            << ", \"fraction_of_copy_bandwidth\": " << number((bytes / ttq) / (2.0 * bytes / copy)) << "}";
        first = false;
      }
    }
  out << "\n  ],\n";
  const double b4_8k = seconds(gemv_name(4, 8192, 8192, 1)), b2_8k = seconds(gemv_name(2, 8192, 8192, 1));
  const double cublas_8k = seconds(cublas_name(8192, 8192, 1));
  const double b4_big = seconds(gemv_name(4, 28672, 8192, 1)), copy_big = seconds(copy_name(4, 28672, 8192));
  const double bytes_big = static_cast<double>(quantized_bytes(28672, 8192, 4));
  const double fraction_big = (bytes_big / b4_big) / (2.0 * bytes_big / copy_big);
  out << "  \"targets\": [\n";
  auto target = [&](const char* name, double value, double threshold, bool last = false) {
    out << "    {\"target\": \"" << name << "\", \"measured\": " << number(value) << ", \"threshold\": " << threshold
        << ", \"met\": " << (std::isfinite(value) && value >= threshold ? "true" : "false") << "}" << (last ? "\n" : ",\n");
  };
  target("4-bit GEMV 8192x8192 T=1 speedup vs cuBLAS fp16", cublas_8k / b4_8k, 3.0);
  target("4-bit GEMV 28672x8192 T=1 fraction of copy bandwidth", fraction_big, 0.75);
  target("2-bit GEMV 8192x8192 T=1 speedup vs 4-bit", b4_8k / b2_8k, 1.6);
  for (std::size_t i = 0; i < kQuantizeShapes.size(); ++i) {
    const auto [d_out, d_in] = kQuantizeShapes[i];
    auto it = r.find("quantize/ttq/bf16/b4/g128/" + shape_name(d_out, d_in));
    const double quant_rate = it == r.end() ? NAN : it->second.counters.at("traffic_bytes") / it->second.seconds;
    const double copy_rate = 2.0 * static_cast<double>(d_out * d_in * 2) / seconds("copy/bf16_weight/" + shape_name(d_out, d_in));
    const std::string name = "quantize " + shape_name(d_out, d_in) + " bf16 fraction of copy bandwidth";
    target(name.c_str(), quant_rate / copy_rate, 0.60, i + 1 == kQuantizeShapes.size());
  }
  out << "  ],\n  \"eq3\": [\n";
  first = true;
  for (const auto& [d_out, d_in] : kQuantizeShapes)
    for (int t : kPrefillTokens) {
      const double calibrate = seconds("calibrate/ttq/bf16/b4/g128/" + shape_name(d_out, d_in) + "/T" + std::to_string(t));
      const double gemm = seconds(cublas_name(d_out, d_in, t));
      const double ratio = calibrate / gemm;
      // Eq. 3: overhead = 2/d_out + (1 + k)/T; the k this measurement implies.
      const double k = (ratio - 2.0 / static_cast<double>(d_out)) * t - 1.0;
      out << (first ? "" : ",\n") << "    {\"shape\": \"" << shape_name(d_out, d_in) << "\", \"T\": " << t
          << ", \"calibrate_us\": " << number(calibrate * 1e6) << ", \"cublas_gemm_us\": " << number(gemm * 1e6)
          << ", \"measured_ratio\": " << number(ratio) << ", \"model_ratio_k1\": " << number(2.0 / static_cast<double>(d_out) + 2.0 / t)
          << ", \"implied_k\": " << number(k) << "}";
      first = false;
    }
  out << "\n  ]\n}\n";
  return out.str();
}

}  // namespace

int main(int argc, char** argv) {
  std::string summary_path;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--ttq_summary=", 14) == 0) summary_path = argv[i] + 14;
    else if (std::strcmp(argv[i], "--quick") == 0) use_quick_set();
    else args.push_back(argv[i]);
  }
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    // Not an error: CI builds this binary on machines without a GPU and may smoke-run it.
    std::printf("ttq_bench_cuda: SKIPPED: no CUDA device\n");
    return 0;
  }
  int argc2 = static_cast<int>(args.size());
  benchmark::Initialize(&argc2, args.data());
  if (benchmark::ReportUnrecognizedArguments(argc2, args.data())) return 1;
  std::printf("ttq_bench_cuda: %s, %d SMs, L2 %.0f MiB\n", context().device.c_str(), context().sms,
              static_cast<double>(context().l2_bytes) / (1024.0 * 1024.0));
  register_benchmarks();
  RecordingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  if (!summary_path.empty()) {
    std::ofstream(summary_path) << summary_json(reporter.results);
    std::printf("ttq_bench_cuda: targets written to %s\n", summary_path.c_str());
  }
  benchmark::Shutdown();
  return 0;
}
