// GPU tests of the CUDA backend against the scalar oracle (backend/scalar/kernels.hpp), the same
// checks every backend passes: the quantize kernels give identical codes, scales and zeros; the
// statistics and D agree to a few ulps; the packed and generic GEMVs give the oracle's outputs
// within a tolerance derived from their arithmetic; OnlineAWQ<..., backend::Cuda> reproduces
// the scalar operator; and the device operator CudaOnlineAWQ mirrors OnlineAWQ, reports NaN/Inf
// through its status word, is deterministic and never synchronises behind the caller's back.
// Runs only on a GPU (main.cpp skips otherwise).
#include <catch2/catch.hpp>

#include <ttq/ttq_cuda.cuh>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "test_support.hpp"

using namespace ttq;
using namespace ttq::cuda;

namespace {

/// A CUDA stream owned by a test.
class Stream {
 public:
  Stream() { cuda::detail::check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate"); }
  ~Stream() {
    (void)cudaStreamSynchronize(stream_);
    (void)cudaStreamDestroy(stream_);
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  operator cudaStream_t() const { return stream_; }  // NOLINT(google-explicit-constructor)
  void sync() const { cuda::detail::check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }

 private:
  cudaStream_t stream_ = nullptr;
};

/// Host-side rounding of fp32 to an element type's storage, and back (exact).
template <class T>
std::uint32_t storage_bits(float v) {
  if constexpr (std::is_same_v<T, __half>) return Float16::from_float(v).bits;
  else if constexpr (std::is_same_v<T, __nv_bfloat16>) return BFloat16::from_float(v).bits;
  else return std::bit_cast<std::uint32_t>(v);
}
template <class T>
float widen_bits(std::uint32_t bits) {
  if constexpr (std::is_same_v<T, __half>) return Float16{static_cast<std::uint16_t>(bits)}.to_float();
  else if constexpr (std::is_same_v<T, __nv_bfloat16>) return BFloat16{static_cast<std::uint16_t>(bits)}.to_float();
  else return std::bit_cast<float>(bits);
}
template <class T>
const char* type_name() {
  return element_name(element_type_of<T>());
}

/// A host matrix rounded to T, on the device with row stride `stride`, plus its exact widening.
template <class T>
struct DeviceCopy {
  RowMatrix widened;
  DeviceBuffer<T> buffer;
  Index rows = 0, cols = 0, stride = 0;

  DeviceMatrixView<const T> view() const { return {buffer.data(), rows, cols, stride}; }
  DeviceMatrixView<T> mutable_view() const { return {buffer.data(), rows, cols, stride}; }
};

template <class T>
DeviceCopy<T> to_device(const RowMatrix& m, cudaStream_t stream, Index stride = 0) {
  DeviceCopy<T> d;
  d.rows = m.rows();
  d.cols = m.cols();
  d.stride = stride > 0 ? stride : m.cols();
  d.widened = RowMatrix(m.rows(), m.cols());
  std::vector<T> host(static_cast<std::size_t>(d.rows * d.stride));
  for (Index r = 0; r < d.rows; ++r)
    for (Index c = 0; c < d.cols; ++c) {
      const std::uint32_t bits = storage_bits<T>(m(r, c));
      d.widened(r, c) = widen_bits<T>(bits);
      // Storage bits into the CUDA type (its members are private, hence the byte copy).
      void* target = static_cast<void*>(&host[static_cast<std::size_t>(r * d.stride + c)]);
      if constexpr (sizeof(T) == 2) {
        const auto b16 = static_cast<std::uint16_t>(bits);
        std::memcpy(target, &b16, 2);
      } else {
        std::memcpy(target, &bits, 4);
      }
    }
  d.buffer = DeviceBuffer<T>(host.size(), stream);
  d.buffer.upload(host.data(), host.size());
  cuda::detail::check(cudaStreamSynchronize(stream), "sync");  // `host` dies here
  return d;
}

/// Downloads a device matrix of T (synchronises the stream), widened to fp32.
template <class T>
RowMatrix from_device(DeviceMatrixView<const T> v, cudaStream_t stream) {
  std::vector<T> host(static_cast<std::size_t>(v.rows * v.row_stride));
  cuda::detail::check(cudaMemcpyAsync(host.data(), v.data, host.size() * sizeof(T), cudaMemcpyDeviceToHost, stream), "download");
  cuda::detail::check(cudaStreamSynchronize(stream), "sync");
  RowMatrix out(v.rows, v.cols);
  for (Index r = 0; r < v.rows; ++r)
    for (Index c = 0; c < v.cols; ++c) {
      std::uint32_t bits = 0;
      std::memcpy(&bits, &host[static_cast<std::size_t>(r * v.row_stride + c)], sizeof(T));
      out(r, c) = widen_bits<T>(bits);
    }
  return out;
}

DeviceBuffer<float> upload(const std::vector<float>& v, cudaStream_t stream) {
  DeviceBuffer<float> d(v.size(), stream);
  d.upload(v.data(), v.size());
  return d;
}

std::vector<float> positive_scales(Index n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(0.25f, 4.0f);
  std::vector<float> d(static_cast<std::size_t>(n));
  for (auto& v : d) v = dist(rng);
  return d;
}

std::vector<float> inverse_of(const std::vector<float>& d, Index padded) {
  std::vector<float> inv(static_cast<std::size_t>(padded), 0.0f);
  for (std::size_t j = 0; j < d.size(); ++j) inv[j] = 1.0f / d[j];
  return inv;
}

bool same_bits(float a, float b) { return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b); }

void require_identical(const QuantizedMatrix& device, const QuantizedMatrix& host) {
  REQUIRE(device.rows == host.rows);
  REQUIRE(device.cols == host.cols);
  REQUIRE(device.unpacked_codes() == host.unpacked_codes());
  REQUIRE(device.codes == host.codes);  // padding bits included
  for (std::size_t i = 0; i < host.scales.size(); ++i) {
    INFO("group " << i);
    REQUIRE(same_bits(device.scales[i], host.scales[i]));
    REQUIRE(same_bits(device.zeros[i], host.zeros[i]));
  }
}

QuantizedMatrix quantize_on_gpu_and_download(DeviceMatrixRef w, const std::vector<float>& d, const QuantConfig& config,
                                             bool rows_kernel, const std::vector<float>& group_clip, cudaStream_t stream,
                                             unsigned* status_out = nullptr) {
  DeviceBuffer<float> scale = upload(d, stream);
  DeviceBuffer<float> clip = upload(group_clip, stream);
  DeviceBuffer<unsigned> status(1, stream);
  status.zero();
  DeviceQuantizedMatrix out(config, w.rows, w.cols, stream);
  QuantizeLaunchOptions options;
  options.force_rows_kernel = rows_kernel;
  options.group_clip = group_clip.empty() ? nullptr : clip.data();
  quantize_on_device(w, scale.data(), config, out, status.data(), stream, options);
  if (status_out) {
    cuda::detail::check(cudaMemcpyAsync(status_out, status.data(), 4, cudaMemcpyDeviceToHost, stream), "status");
  }
  return out.download(stream);
}

template <class T>
void check_quantize_type(cudaStream_t stream) {
  const Index rows = 37;
  for (Index cols : {Index{300}, Index{1024}}) {
    const RowMatrix w = test::normal_matrix(rows, cols, 1000u + static_cast<unsigned>(cols));
    const DeviceCopy<T> dw = to_device<T>(w, stream);
    const std::vector<float> d = positive_scales(cols, 7u);
    for (FormatKind format : {FormatKind::awq_asymmetric, FormatKind::offset_asymmetric, FormatKind::symmetric, FormatKind::nf4})
      for (int bits = 2; bits <= 8; ++bits) {
        if (format == FormatKind::nf4 && bits != 4) continue;
        for (Index group : {Index{32}, Index{64}, Index{128}, Index{256}, Index{48}, Index{100}, cols}) {
          for (float clip : {1.0f, 0.85f}) {
            const QuantConfig config{bits, group, format, clip};
            const QuantizedMatrix expected = backend::quantize(backend::Scalar{}, config, ConstMatrixView(dw.widened), d, {});
            for (bool rows_kernel : {false, true}) {
              INFO(type_name<T>() << " cols " << cols << " " << format_name(format) << " bits " << bits << " group " << group
                                  << " clip " << clip << (rows_kernel ? " rows kernel" : " window kernel"));
              require_identical(quantize_on_gpu_and_download(dw.view(), d, config, rows_kernel, {}, stream), expected);
            }
          }
        }
      }
  }
}

/// Relative difference max |a - b| / max |b|.
double relative_max_difference(const RowMatrix& a, const RowMatrix& b) {
  return (a - b).cwiseAbs().maxCoeff() / std::max(1e-30f, b.cwiseAbs().maxCoeff());
}

/// The decoded weight w^ [d_out, d_in] in double, and the per-element magnitude the packed
/// kernel's error scales with: |code_value * scale| + |offset| (its group sum is formed as
/// scale * sum(q x') + offset * sum(x'), so both terms' rounding counts).
struct DecodedWeights {
  Eigen::MatrixXd w, magnitude;
};

DecodedWeights decode_reference(const QuantizedMatrix& q) {
  DecodedWeights d{Eigen::MatrixXd(q.rows, q.cols), Eigen::MatrixXd(q.rows, q.cols)};
  for (Index r = 0; r < q.rows; ++r)
    for (Index k = 0; k < q.cols; ++k) {
      const GroupParams p = q.params(r, k / q.group);
      const std::uint32_t code = q.code(r, k);
      const ttq::AffineDecode affine = ttq::detail::affine_decode(q.format, p, q.bits);
      d.w(r, k) = ttq::detail::decode_value(q.format, code, p, q.bits);
      d.magnitude(r, k) = std::fabs(ttq::detail::code_value(q.format, code) * affine.scale) + std::fabs(affine.offset);
    }
  return d;
}

/// The reference Y in double, and the magnitude each output's error is measured against:
/// sum_k magnitude_rk |x'_tk| + sum_k |u_tk B_rk| + |bias_r|.
struct ReferenceOutput {
  Eigen::MatrixXd y, magnitude;
};

ReferenceOutput reference_forward(const DecodedWeights& weights, const RowMatrix& x, const std::vector<float>& inverse,
                                  const RowMatrix& a, const RowMatrix& b, const std::vector<float>& bias) {
  Eigen::MatrixXd prescaled(x.rows(), x.cols());
  for (Index t = 0; t < x.rows(); ++t)
    for (Index k = 0; k < x.cols(); ++k) prescaled(t, k) = static_cast<double>(x(t, k) * inverse[static_cast<std::size_t>(k)]);
  ReferenceOutput out{prescaled * weights.w.transpose(), prescaled.cwiseAbs() * weights.magnitude.transpose()};
  if (a.rows() > 0) {
    const Eigen::MatrixXd u = x.cast<double>() * a.cast<double>().transpose();
    out.y += u * b.cast<double>().transpose();
    out.magnitude += u.cwiseAbs() * b.cast<double>().cwiseAbs().transpose();
  }
  if (!bias.empty())
    for (Index r = 0; r < out.y.cols(); ++r) {
      out.y.col(r).array() += bias[static_cast<std::size_t>(r)];
      out.magnitude.col(r).array() += std::fabs(bias[static_cast<std::size_t>(r)]);
    }
  return out;
}

/// Half an ulp of the output type, relative, doubled for safety (fp32: the accumulation term dominates).
template <class T>
double output_rounding() {
  if constexpr (std::is_same_v<T, __half>) return 0x1p-11;
  else if constexpr (std::is_same_v<T, __nv_bfloat16>) return 0x1p-8;
  else return 0.0;
}

/// The tolerance of the GPU GEMVs relative to the magnitude: x' is carried as bf16 hi + lo
/// (about 2^-17 relative), products are exact, sums are fp32; 2e-5 leaves room for the sums.
constexpr double kGemvAccumulation = 2e-5;

void require_within(const RowMatrix& y, const ReferenceOutput& ref, double accumulation, double rounding) {
  for (Index t = 0; t < y.rows(); ++t)
    for (Index r = 0; r < y.cols(); ++r) {
      const double bound = accumulation * ref.magnitude(t, r) + rounding * std::fabs(ref.y(t, r)) + 1e-30;
      const double error = std::fabs(static_cast<double>(y(t, r)) - ref.y(t, r));
      if (!(error <= bound)) {
        INFO("token " << t << " row " << r << ": got " << y(t, r) << ", reference " << ref.y(t, r) << ", |error| " << error
                      << " > bound " << bound << " (magnitude " << ref.magnitude(t, r) << ")");
        REQUIRE(error <= bound);
      }
    }
}

/// One GEMV problem: quantized weights on the device, activations (row stride d_in + pad), 1/D,
/// optional low-rank factors and bias, and the host reference.
template <class T>
class GemvProblem {
 public:
  GemvProblem(const QuantizedMatrix& q, const DecodedWeights& decoded, const RowMatrix& x_host, Index rank, bool with_bias,
              Index x_stride_pad, cudaStream_t stream)
      : q_(q), stream_(stream), weights_(DeviceQuantizedMatrix::upload(q, stream)),
        x_(to_device<T>(x_host, stream, q.cols + x_stride_pad)) {
    const Index d_out = q.rows, d_in = q.cols;
    const std::vector<float> d = positive_scales(d_in, 31u);
    inverse_ = inverse_of(d, (d_in + 7) / 8 * 8);
    inverse_device_ = upload(inverse_, stream);
    a_ = rank > 0 ? test::normal_matrix(rank, d_in, 41u, 0.05f) : RowMatrix(0, d_in);
    b_ = rank > 0 ? test::normal_matrix(d_out, rank, 43u) : RowMatrix(d_out, 0);
    const RowMatrix bt = b_.transpose();
    a_device_ = DeviceBuffer<float>(static_cast<std::size_t>(a_.size()), stream);
    bt_device_ = DeviceBuffer<float>(static_cast<std::size_t>(bt.size()), stream);
    a_device_.upload(a_.data(), static_cast<std::size_t>(a_.size()));
    bt_device_.upload(bt.data(), static_cast<std::size_t>(bt.size()));
    if (with_bias)
      for (Index r = 0; r < d_out; ++r) bias_.push_back(0.01f * static_cast<float>(r % 17) - 0.05f);
    bias_device_ = upload(bias_, stream);
    y_device_ = DeviceBuffer<T>(static_cast<std::size_t>(x_host.rows() * (d_out + 1)), stream);
    reference_ = reference_forward(decoded, x_.widened, inverse_, a_, b_, bias_);
  }

  /// Runs the GEMV on `path` and returns Y (synchronises).
  RowMatrix run(GemvPath path) {
    const Index tokens = x_.rows, d_out = q_.rows;
    GemvOperands<T> operands;
    operands.x = x_.view();
    operands.inverse_scale = inverse_device_.data();
    operands.lowrank_a = a_.rows() > 0 ? a_device_.data() : nullptr;
    operands.lowrank_bt = a_.rows() > 0 ? bt_device_.data() : nullptr;
    operands.rank = static_cast<int>(a_.rows());
    operands.bias = bias_.empty() ? nullptr : bias_device_.data();
    operands.y = DeviceMatrixView<T>(y_device_.data(), tokens, d_out, d_out + 1);  // a row stride != cols
    GemvWorkspace workspace(stream_);
    gemv_on_device(weights_.view(), operands, workspace, stream_, path);
    return from_device<T>(DeviceMatrixView<const T>(y_device_.data(), tokens, d_out, d_out + 1), stream_);
  }

  void check(const RowMatrix& y) const { require_within(y, reference_, kGemvAccumulation, output_rounding<T>()); }

  /// The scalar backend's forward on the same (widened) inputs also lies within the bound.
  void check_scalar_forward(const backend::ScalarPrepared& prepared) const {
    const std::vector<float> inverse(inverse_.begin(), inverse_.begin() + q_.cols);
    RowMatrix y(x_.rows, q_.rows);
    backend::forward(backend::Scalar{}, prepared,
                     backend::ForwardArgs{ConstMatrixView(x_.widened), inverse, ConstMatrixView(a_), ConstMatrixView(b_), bias_,
                                          MatrixView<float>(y)});
    require_within(y, reference_, kGemvAccumulation, 0.0);
  }

 private:
  const QuantizedMatrix& q_;
  cudaStream_t stream_;
  DeviceQuantizedMatrix weights_;
  DeviceCopy<T> x_;
  std::vector<float> inverse_;
  DeviceBuffer<float> inverse_device_, a_device_, bt_device_, bias_device_;
  RowMatrix a_, b_;
  std::vector<float> bias_;
  DeviceBuffer<T> y_device_;
  ReferenceOutput reference_;
};

template <class T>
void check_gemv_type(cudaStream_t stream) {
  struct Shape {
    Index d_out, d_in;
  };
  for (const Shape shape : {Shape{1, 256}, Shape{100, 1000}, Shape{300, 4100}})
    for (int bits : {2, 3, 4, 8})
      for (Index group : {Index{32}, Index{64}, Index{128}, Index{256}})
        for (FormatKind format : {FormatKind::awq_asymmetric, FormatKind::offset_asymmetric, FormatKind::symmetric}) {
          const RowMatrix w = test::normal_matrix(shape.d_out, shape.d_in, 500u + static_cast<unsigned>(bits));
          const std::vector<float> d = positive_scales(shape.d_in, 31u);
          const QuantizedMatrix q = backend::quantize(backend::Scalar{}, QuantConfig{bits, group, format, 1.0f}, w, d, {});
          const DecodedWeights decoded = decode_reference(q);
          const backend::ScalarPrepared prepared = backend::prepare(backend::Scalar{}, q);
          // 1 and 8 tokens: one mma n-tile; 9 and 16: two; 20: two launches. Odd T: low rank.
          for (int tokens : {1, 3, 8, 9, 16, 20}) {
            if (shape.d_in > 1000 && (tokens == 3 || tokens == 8)) continue;  // keep the big shape quick
            const RowMatrix x = test::outlier_activations(tokens, shape.d_in, 2, 600u + static_cast<unsigned>(tokens));
            const Index rank = tokens % 2 ? 4 : 0;
            const bool bias = tokens % 3 == 0;
            INFO(type_name<T>() << " " << shape.d_out << "x" << shape.d_in << " bits " << bits << " group " << group << " "
                                << format_name(format) << " T " << tokens << " rank " << rank << " bias " << bias);
            GemvProblem<T> problem(q, decoded, x, rank, bias, tokens == 3 ? 3 : 0, stream);
            {
              INFO("packed kernel");
              problem.check(problem.run(GemvPath::packed));
            }
            {
              INFO("generic kernel");
              problem.check(problem.run(GemvPath::generic));
            }
            if (std::is_same_v<T, float>) problem.check_scalar_forward(prepared);
          }
        }
}

}  // namespace

TEST_CASE("the quantize kernels give the scalar oracle's codes, scales and zeros bit for bit (fp32 weights)",
          "[cuda][quantize]") {
  Stream stream;
  check_quantize_type<float>(stream);
}

TEST_CASE("the quantize kernels give the scalar oracle's codes for fp16 and bf16 weights widened exactly",
          "[cuda][quantize]") {
  Stream stream;
  check_quantize_type<__half>(stream);
  check_quantize_type<__nv_bfloat16>(stream);
}

TEST_CASE("per-group clip ratios and strided weights quantize as on the host", "[cuda][quantize]") {
  Stream stream;
  const RowMatrix w = test::normal_matrix(9, 200, 77u);
  const DeviceCopy<__nv_bfloat16> dw = to_device<__nv_bfloat16>(w, stream, 203);  // misaligned rows: scalar loads
  const std::vector<float> d = positive_scales(200, 78u);
  for (Index group : {Index{32}, Index{40}}) {
    const QuantConfig config{3, group, FormatKind::awq_asymmetric, 1.0f};
    const Index groups = (200 + group - 1) / group;
    std::vector<float> clip(static_cast<std::size_t>(9 * groups));
    for (std::size_t i = 0; i < clip.size(); ++i) clip[i] = 0.7f + 0.03f * static_cast<float>(i % 10);
    const QuantizedMatrix expected = backend::quantize(backend::Scalar{}, config, ConstMatrixView(dw.widened), d, clip);
    for (bool rows_kernel : {false, true})
      require_identical(quantize_on_gpu_and_download(dw.view(), d, config, rows_kernel, clip, stream), expected);
  }
}

TEST_CASE("a NaN or Inf scaled weight sets the status bit and gives its group NaN parameters, never a code",
          "[cuda][quantize][errors]") {
  Stream stream;
  RowMatrix w = test::normal_matrix(4, 256, 91u);
  w(2, 70) = std::nanf("");
  w(3, 5) = INFINITY;
  const DeviceCopy<float> dw = to_device<float>(w, stream);
  const std::vector<float> d(256, 1.0f);
  for (bool rows_kernel : {false, true}) {
    unsigned status = 0;
    const QuantizedMatrix q =
        quantize_on_gpu_and_download(dw.view(), d, QuantConfig{4, 64, FormatKind::awq_asymmetric, 1.0f}, rows_kernel, {}, stream, &status);
    CHECK((status & kStatusNonFiniteWeight) != 0u);
    CHECK(std::isnan(q.params(2, 1).scale));
    CHECK(std::isnan(q.params(3, 0).scale));
    CHECK(std::isfinite(q.params(2, 0).scale));
    for (Index c = 64; c < 128; ++c) CHECK(q.code(2, c) == 0u);
  }
  // The host-memory adapter refuses it like the scalar backend.
  CHECK_THROWS_AS(backend::quantize(backend::Cuda{}, QuantConfig{4, 64, FormatKind::awq_asymmetric, 1.0f}, ConstMatrixView(w), d, {}),
                  NonFiniteError);
}

TEST_CASE("the statistics kernels and the plan kernel agree with DiagCorrelation", "[cuda][stats]") {
  Stream stream;
  const Index d_in = 777;
  auto check = [&](auto policy_tag, DiagCorrelationOptions options, auto element_tag) {
    constexpr int P = decltype(policy_tag)::value;
    using T = typename decltype(element_tag)::type;
    const RowMatrix x1 = test::outlier_activations(45, d_in, 4, 5u), x2 = test::outlier_activations(70, d_in, 3, 6u);
    const DeviceCopy<T> dx1 = to_device<T>(x1, stream), dx2 = to_device<T>(x2, stream);
    DiagCorrelation<P> host(options);
    host.bind(d_in);
    host.observe(dx1.widened);
    host.begin_prompt();
    host.observe(dx2.widened);

    const RowMatrix w = test::normal_matrix(16, d_in, 8u);
    const DeviceCopy<float> dw = to_device<float>(w, stream);
    DeviceLayer layer;
    layer.quantized_part = dw.view();
    CudaOnlineAWQ<P> op(layer, QuantConfig{4, 128, FormatKind::awq_asymmetric, 1.0f}, options, stream);
    op.observe(dx1.view());
    op.begin_prompt();
    op.calibrate(dx2.view());
    CHECK(op.tokens() == host.tokens());
    std::vector<double> pnorm(static_cast<std::size_t>(d_in));
    cuda::detail::check(cudaMemcpyAsync(pnorm.data(), op.device_pnorm_sums(), pnorm.size() * 8, cudaMemcpyDeviceToHost, stream), "copy");
    const std::vector<float> d_device = op.download_scales();
    const std::vector<float> d_host = host.scales();
    const std::vector<double> s_host = host.channel_norms();
    for (Index j = 0; j < d_in; ++j) {
      INFO("P " << P << " " << type_name<T>() << " channel " << j);
      const double s = ttq::detail::channel_norm(ttq::detail::norm_order_for<P>(host.norm_order()), pnorm[static_cast<std::size_t>(j)],
                                                 op.tokens());
      CHECK(s == Approx(s_host[static_cast<std::size_t>(j)]).epsilon(1e-12));
      CHECK(d_device[static_cast<std::size_t>(j)] == Approx(d_host[static_cast<std::size_t>(j)]).epsilon(1e-6));
    }
    CHECK(op.read_status() == 0u);
    // The quantization on the device used exactly its D: the host quantizes to the same codes.
    const QuantizedMatrix expected =
        backend::quantize(backend::Scalar{}, QuantConfig{4, 128, FormatKind::awq_asymmetric, 1.0f}, w, d_device, {});
    require_identical(op.download_quantized(), expected);
  };
  check(std::integral_constant<int, 2>{}, DiagCorrelationOptions{.alpha = 0.5, .lambda = 0.1, .decay = 0.5},
        std::type_identity<float>{});
  check(std::integral_constant<int, 1>{}, DiagCorrelationOptions{.alpha = 0.4, .lambda = 0.0},
        std::type_identity<__nv_bfloat16>{});
  check(std::integral_constant<int, InfNorm>{}, DiagCorrelationOptions{.alpha = 0.5, .lambda = 0.2}, std::type_identity<__half>{});
  check(std::integral_constant<int, Dynamic>{}, DiagCorrelationOptions{.p = 2.5, .alpha = 0.3, .lambda = 0.05, .decay = 0.9},
        std::type_identity<float>{});
}

TEST_CASE("the packed and generic GEMVs give the scalar forward within tolerance (fp16 activations)", "[cuda][gemv]") {
  Stream stream;
  check_gemv_type<__half>(stream);
}

TEST_CASE("the packed and generic GEMVs give the scalar forward within tolerance (bf16 activations)", "[cuda][gemv]") {
  Stream stream;
  check_gemv_type<__nv_bfloat16>(stream);
}

TEST_CASE("the packed and generic GEMVs give the scalar forward within tolerance (fp32 activations)", "[cuda][gemv]") {
  Stream stream;
  check_gemv_type<float>(stream);
}

TEST_CASE("configurations the packed kernel does not cover run the generic kernel and match too", "[cuda][gemv]") {
  Stream stream;
  const RowMatrix w = test::normal_matrix(70, 500, 3u);
  const std::vector<float> d = positive_scales(500, 31u);
  const RowMatrix x = test::outlier_activations(5, 500, 2, 4u);
  for (const QuantConfig config : {QuantConfig{4, 128, FormatKind::nf4, 1.0f}, QuantConfig{5, 64, FormatKind::awq_asymmetric, 1.0f},
                                   QuantConfig{4, 48, FormatKind::offset_asymmetric, 1.0f},
                                   QuantConfig{6, 500, FormatKind::symmetric, 1.0f}}) {
    const QuantizedMatrix q = backend::quantize(backend::Scalar{}, config, w, d, {});
    INFO(format_name(config.format) << " bits " << config.bits << " group " << config.group);
    GemvProblem<__half> problem(q, decode_reference(q), x, 3, true, 0, stream);
    problem.check(problem.run(GemvPath::automatic));
    CHECK_THROWS_AS(problem.run(GemvPath::packed), RangeError);
  }
}

TEST_CASE("the packed GEMV is deterministic: the same input gives the same bits", "[cuda][gemv]") {
  Stream stream;
  const RowMatrix w = test::normal_matrix(1000, 4096, 13u);
  const std::vector<float> d = positive_scales(4096, 31u);
  const QuantizedMatrix q = backend::quantize(backend::Scalar{}, QuantConfig{4, 128, FormatKind::awq_asymmetric, 1.0f}, w, d, {});
  const RowMatrix x = test::outlier_activations(4, 4096, 3, 14u);
  GemvProblem<__nv_bfloat16> problem(q, decode_reference(q), x, 0, false, 0, stream);
  const RowMatrix first = problem.run(GemvPath::packed);
  problem.check(first);
  for (int repeat = 0; repeat < 3; ++repeat) CHECK(problem.run(GemvPath::packed) == first);
}

TEST_CASE("OnlineAWQ on backend::Cuda gives the scalar operator's codes and outputs", "[cuda][op]") {
  const RowMatrix w = test::normal_matrix(96, 320, 51u);
  std::vector<float> bias(96);
  for (std::size_t i = 0; i < bias.size(); ++i) bias[i] = 0.02f * static_cast<float>(i % 9);
  const RowMatrix prompt = test::outlier_activations(24, 320, 3, 52u);
  const RowMatrix decode = test::outlier_activations(3, 320, 3, 53u);
  auto check = [&](auto quantizer) {
    using Q = decltype(quantizer);
    using Host = OnlineAWQ<Q, DiagCorrelation<2>, LowRankResidual<Dynamic>, backend::Scalar>;
    using Gpu = OnlineAWQ<Q, DiagCorrelation<2>, LowRankResidual<Dynamic>, backend::Cuda>;
    const auto weights = LayerWeights::copy(w, bias, LowRankResidual<Dynamic>(4));
    Host host(weights, quantizer);
    Gpu gpu(weights, quantizer);
    host.calibrate(prompt);
    gpu.calibrate(prompt);
    REQUIRE(std::equal(host.scales().begin(), host.scales().end(), gpu.scales().begin()));
    CHECK(gpu.quantized().unpacked_codes() == host.quantized().unpacked_codes());
    CHECK(gpu.quantized().scales == host.quantized().scales);
    const RowMatrix y_host = host.forward(decode), y_gpu = gpu.forward(decode);
    CHECK(relative_max_difference(y_gpu, y_host) < 1e-4);
  };
  check(Quantizer<4, 32>());
  check(Quantizer<3, 64, OffsetAsymmetric>());
  check(Quantizer<2, 128>());
  check(Quantizer<8, 32, Symmetric>());
  check(Quantizer<4, 64, NF4>());
  check(Quantizer<5, 40>());
  // The baselines run on the backend too.
  RtnOperator<Quantizer<4, 32>, backend::Cuda> rtn_gpu(w, bias);
  RtnOperator<Quantizer<4, 32>> rtn_host(w, bias);
  CHECK(rtn_gpu.quantized().unpacked_codes() == rtn_host.quantized().unpacked_codes());
  CHECK(relative_max_difference(rtn_gpu.forward(decode), rtn_host.forward(decode)) < 1e-4);
}

TEST_CASE("CudaOnlineAWQ mirrors OnlineAWQ: D, codes with that D, and decode outputs", "[cuda][op]") {
  Stream stream;
  const Index d_out = 300, d_in = 1024;
  const RowMatrix w = test::normal_matrix(d_out, d_in, 61u);
  std::vector<float> bias(static_cast<std::size_t>(d_out), 0.125f);
  const auto weights = LayerWeights::copy(w, bias, LowRankResidual<Dynamic>(8));
  const DiagCorrelationOptions options{.alpha = 0.5, .lambda = 0.1};
  const QuantConfig config = Quantizer<4, 128>().config(d_in);
  const RowMatrix prompt = test::outlier_activations(64, d_in, 5, 62u);
  const RowMatrix step = test::outlier_activations(1, d_in, 5, 63u);
  const DeviceCopy<__nv_bfloat16> prompt_device = to_device<__nv_bfloat16>(prompt, stream);
  const DeviceCopy<__nv_bfloat16> step_device = to_device<__nv_bfloat16>(step, stream);

  CudaOnlineAWQ<2> op(std::make_shared<const DeviceLayerWeights>(*weights, stream), config, options, stream);
  CHECK(op.forward_uses_packed_kernel(1));
  op.calibrate(prompt_device.view());
  DeviceBuffer<__nv_bfloat16> y_device(static_cast<std::size_t>(d_out), stream);
  op.forward(step_device.view(), DeviceMatrixView<__nv_bfloat16>(y_device.data(), 1, d_out));
  const RowMatrix y = from_device<__nv_bfloat16>(DeviceMatrixView<const __nv_bfloat16>(y_device.data(), 1, d_out), stream);
  op.throw_if_invalid();

  OnlineAWQ<Quantizer<4, 128>, DiagCorrelation<2>, LowRankResidual<Dynamic>> host(weights, Quantizer<4, 128>(),
                                                                                  DiagCorrelation<2>(options));
  host.calibrate(prompt_device.widened);
  const std::vector<float> d = op.download_scales();
  for (Index j = 0; j < d_in; ++j) CHECK(d[static_cast<std::size_t>(j)] == Approx(host.scales()[static_cast<std::size_t>(j)]).epsilon(1e-6));
  require_identical(op.download_quantized(), backend::quantize(backend::Scalar{}, config, weights->quantized_part(), d, {}));
  const RowMatrix y_host = host.forward(step_device.widened);
  CHECK(relative_max_difference(y, y_host) < 1e-2);  // bf16 output, and D within 1e-6

  // reset() returns to D = 1: RTN codes.
  op.reset();
  const std::vector<float> ones = op.download_scales();
  CHECK(std::all_of(ones.begin(), ones.end(), [](float v) { return v == 1.0f; }));
  require_identical(op.download_quantized(), backend::quantize(backend::Scalar{}, config, weights->quantized_part(), {}, {}));
}

TEST_CASE("a CUDA runtime failure is a ttq::Error that names the call and keeps the CUDA code", "[cuda][errors]") {
  STATIC_REQUIRE(std::is_base_of_v<Error, CudaError>);
  try {
    cuda::detail::check(cudaErrorInvalidValue, "cudaMemcpyAsync (upload)");
    FAIL("check() accepted a failed status");
  } catch (const Error& e) {
    const std::string what = e.what();
    CHECK(what.find("cudaMemcpyAsync (upload)") != std::string::npos);
    CHECK(what.find("cudaErrorInvalidValue") != std::string::npos);
    CHECK(e.argument().empty());
    CHECK(dynamic_cast<const CudaError&>(e).code() == cudaErrorInvalidValue);
  }
}

TEST_CASE("CudaOnlineAWQ reports a NaN activation through its status and poisons only that channel's groups",
          "[cuda][op][errors]") {
  Stream stream;
  const RowMatrix w = test::normal_matrix(32, 256, 71u);
  const DeviceCopy<float> dw = to_device<float>(w, stream);
  DeviceLayer layer;
  layer.quantized_part = dw.view();
  CudaOnlineAWQ<2> op(layer, QuantConfig{4, 64, FormatKind::awq_asymmetric, 1.0f}, DiagCorrelationOptions{}, stream);
  RowMatrix x = test::normal_matrix(8, 256, 72u);
  x(3, 100) = std::nanf("");
  const DeviceCopy<float> dx = to_device<float>(x, stream);
  op.calibrate(dx.view());
  const unsigned status = op.read_status();
  CHECK((status & kStatusNonFiniteActivation) != 0u);
  CHECK((status & kStatusNonFiniteWeight) != 0u);
  CHECK_THROWS_AS(op.throw_if_invalid(), NonFiniteError);
  const QuantizedMatrix q = op.download_quantized();
  for (Index r = 0; r < 32; ++r) CHECK(std::isnan(q.params(r, 1).scale));  // column 100 is in group 1
  op.clear_status();
  CHECK(op.read_status() == 0u);
}

namespace {

/// Spins until *flag becomes non-zero or about `timeout_ns` passed: blocks a stream so that a
/// test can see whether a host call waits for it.
__global__ void spin_until(volatile int* flag, long long timeout_ns) {
  long long start = 0;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  for (;;) {
    if (*flag != 0) return;
    long long now = 0;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    if (now - start > timeout_ns) return;
  }
}

}  // namespace

TEST_CASE("CudaOnlineAWQ only enqueues: calibrate and forward return while its stream is still blocked",
          "[cuda][op][stream]") {
  Stream stream;
  const Index d_out = 256, d_in = 512;
  const RowMatrix w = test::normal_matrix(d_out, d_in, 81u);
  const DeviceCopy<__half> dw = to_device<__half>(w, stream);
  const DeviceCopy<__half> x = to_device<__half>(test::outlier_activations(4, d_in, 2, 82u), stream);
  DeviceBuffer<__half> y(static_cast<std::size_t>(4 * d_out), stream);
  DeviceLayer layer;
  layer.quantized_part = dw.view();
  CudaOnlineAWQ<2> op(layer, QuantConfig{4, 128, FormatKind::awq_asymmetric, 1.0f}, DiagCorrelationOptions{}, stream);
  op.forward(x.view(), DeviceMatrixView<__half>(y.data(), 4, d_out));  // warm-up: allocates its workspace
  stream.sync();

  int* flag = nullptr;
  cuda::detail::check(cudaHostAlloc(&flag, sizeof(int), cudaHostAllocMapped), "cudaHostAlloc");
  *flag = 0;
  int* flag_device = nullptr;
  cuda::detail::check(cudaHostGetDevicePointer(&flag_device, flag, 0), "cudaHostGetDevicePointer");
  spin_until<<<1, 1, 0, stream>>>(flag_device, 5'000'000'000LL);
  cuda::detail::check_launch("spin_until");
  const auto start = std::chrono::steady_clock::now();
  op.calibrate(x.view());
  op.forward(x.view(), DeviceMatrixView<__half>(y.data(), 4, d_out));
  op.begin_prompt();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const cudaError_t pending = cudaStreamQuery(stream);
  *reinterpret_cast<volatile int*>(flag) = 1;
  stream.sync();
  cuda::detail::check(cudaFreeHost(flag), "cudaFreeHost");
  CHECK(pending == cudaErrorNotReady);  // the work is still queued behind the spinning kernel
  CHECK(seconds < 2.0);
  CHECK(op.read_status() == 0u);
}
