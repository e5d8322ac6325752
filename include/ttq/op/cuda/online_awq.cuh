// CudaOnlineAWQ<P>: one linear layer quantized at test time with the whole data flow on the GPU
// (spec "TTQ (online AWQ) for one linear layer"): prompt statistics, D, re-quantization of
// W (or W - B A) and decode GEMVs all run on the caller's stream, on device buffers the operator
// owns, without ever synchronising the device.
//
// Why a separate operator rather than OnlineAWQ<..., backend::Cuda>: OnlineAWQ keeps its
// statistics, scales and quantized weights in host memory and returns results there, so every
// call would copy to and from the GPU and wait for it. Decode on a GPU needs the opposite: the
// activations arrive in device memory, the weights never leave it, and the host only enqueues.
// CudaOnlineAWQ mirrors OnlineAWQ<Quantizer, DiagCorrelation<P>, LowRankResidual, ...> call for
// call (observe / requantize / calibrate / begin_prompt / reset / forward) with the same
// numerics; OnlineAWQ<..., backend::Cuda> (kernels.cuh) still exists, for host data and tests.
#pragma once

#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "ttq/backend/cuda/common.cuh"
#include "ttq/backend/cuda/gemv.cuh"
#include "ttq/backend/cuda/quantize.cuh"
#include "ttq/backend/cuda/stats.cuh"
#include "ttq/core/error.hpp"
#include "ttq/op/layer_weights.hpp"
#include "ttq/quant/quant_config.hpp"
#include "ttq/stats/diag_correlation.hpp"
#include "ttq/stats/scale_math.hpp"

namespace ttq::cuda {

/// The full-precision parts of one layer in device memory, borrowed by CudaOnlineAWQ: the
/// caller keeps them alive and unchanged while any operator uses them.
struct DeviceLayer {
  DeviceMatrixRef quantized_part;      ///< R = W - B A (W when rank is 0), [d_out, d_in], f32/f16/bf16
  const float* lowrank_a = nullptr;    ///< A [rank, d_in] row-major fp32, or null
  const float* lowrank_bt = nullptr;   ///< B^T [rank, d_out] row-major fp32 (B transposed), or null
  int rank = 0;
  const float* bias = nullptr;  ///< [d_out] fp32, or null

  Index d_out() const { return quantized_part.rows; }
  Index d_in() const { return quantized_part.cols; }
};

/// A device copy of a host LayerWeights (R in fp32, A, B^T, bias), owned RAII-style; share it
/// between the operators of many sequences with shared_ptr<const DeviceLayerWeights>.
class DeviceLayerWeights {
 public:
  /// Uploads `weights` on `stream` (stream-ordered; from pageable host memory the call returns
  /// once the data is staged).
  DeviceLayerWeights(const LayerWeights& weights, cudaStream_t stream)
      : d_out_(weights.d_out()), d_in_(weights.d_in()), rank_(static_cast<int>(weights.rank())) {
    const ConstMatrixView r = weights.quantized_part();
    residual_ = DeviceBuffer<float>(static_cast<std::size_t>(d_out_ * d_in_), stream);
    detail::check(cudaMemcpy2DAsync(residual_.data(), static_cast<std::size_t>(d_in_) * 4, r.data,
                                    static_cast<std::size_t>(r.row_stride) * 4, static_cast<std::size_t>(d_in_) * 4,
                                    static_cast<std::size_t>(d_out_), cudaMemcpyHostToDevice, stream),
                  "cudaMemcpy2DAsync (weight upload)");
    if (rank_ > 0) {
      const LowRankFactors& f = weights.factors();
      lowrank_a_ = DeviceBuffer<float>(static_cast<std::size_t>(rank_ * d_in_), stream);
      lowrank_a_.upload(f.a.data(), static_cast<std::size_t>(f.a.size()));
      // B^T, so that the GEMV epilogue's threads (one per output row) read it coalesced. A copy
      // from pageable memory is staged before cudaMemcpyAsync returns, so a temporary is safe.
      const RowMatrix bt = f.b.transpose();
      lowrank_bt_ = DeviceBuffer<float>(static_cast<std::size_t>(rank_ * d_out_), stream);
      lowrank_bt_.upload(bt.data(), static_cast<std::size_t>(bt.size()));
    }
    if (!weights.bias().empty()) {
      bias_ = DeviceBuffer<float>(weights.bias().size(), stream);
      bias_.upload(weights.bias().data(), weights.bias().size());
    }
  }

  DeviceLayer layer() const {
    DeviceLayer l;
    l.quantized_part = DeviceMatrixView<const float>(residual_.data(), d_out_, d_in_);
    l.lowrank_a = lowrank_a_.data();
    l.lowrank_bt = lowrank_bt_.data();
    l.rank = rank_;
    l.bias = bias_.empty() ? nullptr : bias_.data();
    return l;
  }

 private:
  Index d_out_, d_in_;
  int rank_;
  DeviceBuffer<float> residual_, lowrank_a_, lowrank_bt_, bias_;
};

/// Online AWQ (TTQ) for one layer on the GPU, statistics DiagCorrelation<P> (P = 1, 2, InfNorm,
/// an integer >= 1, or Dynamic with options.p). The default P is the host policy's, so the same
/// options give the same D on both.
///
/// Stream semantics: the operator is bound to the stream given at construction. Every method
/// only enqueues work on it (kernels, stream-ordered allocations and memsets) and returns; the
/// destructor frees its buffers stream-ordered on it too. Methods named download_* / read_* are
/// inspection calls that synchronise that stream (and only it). Not thread-safe; one operator
/// per sequence, as OnlineAWQ.
template <int P = DiagCorrelation<>::p>
class CudaOnlineAWQ {
 public:
  /// Builds an operator on borrowed device weights. Quantizes once with D = 1 (no statistics
  /// yet), so forward() works immediately. Throws RangeError on invalid config/options.
  CudaOnlineAWQ(DeviceLayer layer, const QuantConfig& config, const DiagCorrelationOptions& options,
                cudaStream_t stream, GemvPath path = GemvPath::automatic)
      : layer_(layer), config_(config), options_(options), stream_(stream), path_(path) {
    const DiagCorrelation<P> validated(options_);  // the host policy's checks of p, alpha, lambda, ...
    order_ = ttq::detail::norm_order_for<P>(validated.norm_order());
    ttq::detail::require_shape(layer_.d_out() >= 1 && layer_.d_in() >= 1 && layer_.quantized_part.data != nullptr,
                               "layer", "a non-empty [d_out, d_in] device weight", layer_.d_out(), layer_.d_in());
    ttq::detail::require_range(layer_.rank == 0 || (layer_.lowrank_a != nullptr && layer_.lowrank_bt != nullptr),
                               "layer", "rank 0, or A and B^T given", "rank " + std::to_string(layer_.rank));
    config_.validate(layer_.d_in());
    if (!options_.prior.empty())
      ttq::detail::require_shape(static_cast<Index>(options_.prior.size()) == d_in(), "prior",
                                 "[d_in] = [" + std::to_string(d_in()) + "]", 1, static_cast<Index>(options_.prior.size()));
    sms_ = multiprocessor_count();
    const auto n = static_cast<std::size_t>(d_in());
    const auto padded = static_cast<std::size_t>((d_in() + layout::kWindowCodes - 1) / layout::kWindowCodes * layout::kWindowCodes);
    pnorm_sums_ = DeviceBuffer<double>(n, stream_);
    square_sums_ = DeviceBuffer<double>(n, stream_);
    pnorm_sums_.zero();
    square_sums_.zero();
    if (options_.prior_weight > 0.0) {
      prior_ = DeviceBuffer<double>(n, stream_);
      prior_.upload(options_.prior.data(), n);
    }
    scales_ = DeviceBuffer<float>(padded, stream_);
    inverse_scales_ = DeviceBuffer<float>(padded, stream_);
    status_ = DeviceBuffer<unsigned>(1, stream_);
    status_.zero();
    quantized_ = DeviceQuantizedMatrix(config_, d_out(), d_in(), stream_);
    workspace_ = GemvWorkspace(stream_);
    requantize();
  }

  /// Builds an operator that shares (and keeps alive) device weights uploaded from the host.
  CudaOnlineAWQ(std::shared_ptr<const DeviceLayerWeights> weights, const QuantConfig& config,
                const DiagCorrelationOptions& options, cudaStream_t stream, GemvPath path = GemvPath::automatic)
      : CudaOnlineAWQ(checked(weights)->layer(), config, options, stream, path) {
    owned_ = std::move(weights);
  }

  CudaOnlineAWQ(const CudaOnlineAWQ&) = delete;
  CudaOnlineAWQ& operator=(const CudaOnlineAWQ&) = delete;
  CudaOnlineAWQ(CudaOnlineAWQ&&) noexcept = default;
  CudaOnlineAWQ& operator=(CudaOnlineAWQ&&) noexcept = default;

  /// Accumulates the statistics of X [T >= 1, d_in] (device; f32, f16 or bf16) without
  /// re-quantizing. A NaN/Inf in X sets kStatusNonFiniteActivation; the next requantize() then
  /// gives that channel D = NaN, which marks its groups invalid (never valid-looking codes).
  template <class X>
    requires is_element_v<std::remove_const_t<X>>
  void observe(DeviceMatrixView<X> x) {
    if (!(x.cols == d_in() && x.rows >= 1 && x.row_stride >= x.cols))
      ttq::detail::require_shape(false, "x", "[T >= 1, " + std::to_string(d_in()) + "]", x.rows, x.cols);
    accumulate_channel_stats_on_device(DeviceMatrixView<const std::remove_const_t<X>>(x.data, x.rows, x.cols, x.row_stride),
                                       order_, pnorm_sums_.data(), square_sums_.data(), status_.data(), stream_);
    tokens_ += static_cast<double>(x.rows);
  }

  /// Re-plans D from the statistics so far and quantizes W (or W - B A) with it.
  void requantize() {
    detail::PlanArgs plan;
    plan.pnorm = pnorm_sums_.data();
    plan.n = d_in();
    plan.padded_n = static_cast<Index>(scales_.size());
    plan.tokens = tokens_;
    plan.order = order_;
    plan.use_global_mean = global_mean_square_.has_value();
    plan.global_mean = global_mean_square_.value_or(0.0);
    plan.lambda = options_.lambda;
    plan.alpha = options_.alpha;
    plan.prior_weight = options_.prior_weight;
    plan.prior = prior_.empty() ? nullptr : prior_.data();
    plan.scales = scales_.data();
    plan.inverse_scales = inverse_scales_.data();
    plan_scales_on_device(plan, stream_);
    quantize_on_device(layer_.quantized_part, scales_.data(), config_, quantized_, status_.data(), stream_);
  }

  /// observe(X) then requantize(): TTQ's per-prompt calibration.
  template <class X>
    requires is_element_v<std::remove_const_t<X>>
  void calibrate(DeviceMatrixView<X> x) {
    observe(x);
    requantize();
  }

  /// Starts a new prompt: the sums are multiplied by the decay beta (0 forgets them); the
  /// current quantization stays until the next calibrate().
  void begin_prompt() {
    scale_sums_on_device(pnorm_sums_.data(), square_sums_.data(), d_in(), options_.decay, stream_);
    tokens_ = ttq::detail::decayed_tokens(tokens_, options_.decay);
  }

  /// Forgets all statistics and re-quantizes with D = 1.
  void reset() {
    pnorm_sums_.zero();
    square_sums_.zero();
    tokens_ = 0.0;
    requantize();
  }

  /// Y [T, d_out] = (X diag(1/D)) deq(Q)^T + (X A^T) B^T + bias, X [T >= 1, d_in] and Y in
  /// device memory, fp16, bf16 (or f32). Decode (T = 1..16) is one launch plus, with a low-rank
  /// residual, one small projection launch; larger T runs in slices of 16.
  template <class Act>
    requires is_element_v<Act>
  void forward(DeviceMatrixView<const std::type_identity_t<Act>> x, DeviceMatrixView<Act> y) {
    GemvOperands<Act> operands;
    operands.x = x;
    operands.inverse_scale = inverse_scales_.data();
    operands.lowrank_a = layer_.lowrank_a;
    operands.lowrank_bt = layer_.lowrank_bt;
    operands.rank = layer_.rank;
    operands.bias = layer_.bias;
    operands.y = y;
    gemv_on_device(quantized_.view(), operands, workspace_, stream_, path_, sms_);
  }

  /// Normalises c by this mean of s^2 instead of the layer's own (row-parallel sharding, as
  /// DiagCorrelation::set_global_mean_square); nullopt undoes it. Takes effect at requantize().
  void set_global_mean_square(std::optional<double> mean_square) {
    if (mean_square)
      ttq::detail::require_range(std::isfinite(*mean_square) && *mean_square >= 0.0, "mean_square", "a finite value >= 0",
                                 std::to_string(*mean_square));
    global_mean_square_ = mean_square;
  }

  Index d_in() const { return layer_.d_in(); }
  Index d_out() const { return layer_.d_out(); }
  double tokens() const { return tokens_; }
  const QuantConfig& config() const { return config_; }
  const DiagCorrelationOptions& options() const { return options_; }
  cudaStream_t stream() const { return stream_; }
  /// The kernel forward() runs for T tokens (packed tensor-core or generic).
  bool forward_uses_packed_kernel(int tokens) const { return plan_gemv(quantized_.view(), tokens, path_, sms_).supported; }

  /// Device pointers (valid for the operator's lifetime; contents follow the stream's order).
  DeviceQuantizedView quantized() const { return quantized_.view(); }
  const float* device_scales() const { return scales_.data(); }          ///< D [d_in]
  const float* device_inverse_scales() const { return inverse_scales_.data(); }  ///< 1/D [d_in]
  const double* device_pnorm_sums() const { return pnorm_sums_.data(); }  ///< [d_in]
  const double* device_square_sums() const { return square_sums_.data(); }  ///< [d_in]
  /// The status word (StatusBits), OR'ed by kernels that met NaN/Inf; cleared by clear_status().
  const unsigned* device_status() const { return status_.data(); }
  void clear_status() { status_.zero(); }

  /// Inspection (synchronises the operator's stream): the current quantization, D, and status.
  QuantizedMatrix download_quantized() const { return quantized_.download(stream_); }
  std::vector<float> download_scales() const { return download(scales_.data(), static_cast<std::size_t>(d_in())); }
  unsigned read_status() const { return download(status_.data(), 1)[0]; }
  /// Throws NonFiniteError if any kernel so far met a NaN/Inf (synchronises the stream).
  void throw_if_invalid() const {
    const unsigned status = read_status();
    if (status & kStatusNonFiniteActivation) throw NonFiniteError("x", "an observed activation was NaN or Inf");
    if (status & kStatusNonFiniteWeight)
      throw NonFiniteError("weight", "a scaled weight W * D was NaN or Inf; its groups have NaN scales");
  }

 private:
  static const std::shared_ptr<const DeviceLayerWeights>& checked(const std::shared_ptr<const DeviceLayerWeights>& w) {
    if (!w) throw ShapeError("weights", "null DeviceLayerWeights");
    return w;
  }

  template <class T>
  std::vector<T> download(const T* device, std::size_t count) const {
    std::vector<T> host(count);
    detail::check(cudaMemcpyAsync(host.data(), device, count * sizeof(T), cudaMemcpyDeviceToHost, stream_),
                  "cudaMemcpyAsync (download)");
    detail::check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize (download)");
    return host;
  }

  DeviceLayer layer_;
  std::shared_ptr<const DeviceLayerWeights> owned_;
  QuantConfig config_;
  DiagCorrelationOptions options_;
  cudaStream_t stream_;
  GemvPath path_;
  ttq::detail::NormOrder order_{};
  int sms_ = 0;
  double tokens_ = 0.0;
  std::optional<double> global_mean_square_;
  DeviceBuffer<double> pnorm_sums_, square_sums_, prior_;
  DeviceBuffer<float> scales_, inverse_scales_;
  DeviceBuffer<unsigned> status_;
  DeviceQuantizedMatrix quantized_;
  GemvWorkspace workspace_;
};

}  // namespace ttq::cuda
