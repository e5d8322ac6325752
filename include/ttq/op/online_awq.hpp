// OnlineAWQ: one linear layer quantized at test time (spec "TTQ (online AWQ) for one linear layer").
//
//   calibrate(X):  D from X (via the correlation policy);  Q = encode(R diag(D)),  R = W - B A
//   forward(X):    Y = (X diag(1/D)) deq(Q)^T + (X A^T) B^T + bias
//
// The operator is a template over four policies: how to quantize (QuantizerPolicy), how to
// choose D (ScalePolicy: TTQ's DiagCorrelation and AdaptiveExponent, RTN's UniformScales,
// StaticAwqScales), what stays in full precision (ResidualPolicy) and where kernels run
// (BackendKernels; backend::Default, the SIMD backend, unless named). Every kernel a policy needs
// runs on the operator's backend: the operator lends them (stats/scale_plan.hpp). One operator
// per sequence; its LayerWeights are shared and immutable.
#pragma once

#include <cmath>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ttq/backend/contract.hpp"
#include "ttq/backend/default.hpp"
#include "ttq/core/error.hpp"
#include "ttq/core/types.hpp"
#include "ttq/op/layer_weights.hpp"
#include "ttq/quant/quantizer.hpp"
#include "ttq/residual/low_rank_residual.hpp"
#include "ttq/stats/diag_correlation.hpp"
#include "ttq/stats/scale_plan.hpp"

namespace ttq {

namespace detail {
/// Calls the backend's forward kernel. It exists because inside OnlineAWQ the member function
/// `forward` hides the free kernel and suppresses argument-dependent lookup; out here the
/// unqualified call finds the backend's kernel (also for backends declared after this header).
template <class BackendT, class Prepared>
void backend_forward(BackendT tag, const Prepared& prepared, const backend::ForwardArgs& args) {
  forward(tag, prepared, args);
}
}  // namespace detail

template <QuantizerPolicy QuantizerT, ScalePolicy CorrelationT = DiagCorrelation<InfNorm>,
          ResidualPolicy ResidualT = NoResidual, backend::BackendKernels BackendT = backend::Default>
class OnlineAWQ {
 public:
  using quantizer_type = QuantizerT;
  using correlation_type = CorrelationT;
  using residual_type = ResidualT;
  using backend_type = BackendT;

  /// Builds an operator on shared weights (whose rank must match ResidualT's static rank).
  /// Quantizes once with the policy's plan before any activation (D = 1 for TTQ), so forward()
  /// works immediately.
  explicit OnlineAWQ(std::shared_ptr<const LayerWeights> weights, QuantizerT quantizer = QuantizerT(),
                     CorrelationT correlation = CorrelationT())
      : weights_(std::move(weights)), quantizer_(std::move(quantizer)), correlation_(std::move(correlation)) {
    if (!weights_) throw ShapeError("weights", "null LayerWeights");
    if constexpr (ResidualT::rank != Dynamic) {
      detail::require_range(weights_->rank() == ResidualT::rank, "weights",
                            "factors of rank " + std::to_string(ResidualT::rank), "rank " + std::to_string(weights_->rank()));
    }
    config_ = quantizer_.config(weights_->d_in());
    // A policy that needs the group (the block clip search's Gram blocks) takes the config too.
    if constexpr (requires { correlation_.bind(weights_->d_in(), config_); }) correlation_.bind(weights_->d_in(), config_);
    else correlation_.bind(weights_->d_in());
    requantize();
  }

  /// Copies W [d_out, d_in] (+ bias [d_out]) into new LayerWeights factorized by `residual`.
  OnlineAWQ(ConstMatrixView w, std::span<const float> bias, QuantizerT quantizer = QuantizerT(),
            CorrelationT correlation = CorrelationT(), ResidualT residual = ResidualT())
      : OnlineAWQ(LayerWeights::copy(w, bias, residual), std::move(quantizer), std::move(correlation)) {}

  /// Accumulates statistics of X [T, d_in] (T >= 1, finite) without re-quantizing: chunked
  /// prefill calls observe() per chunk and requantize() once.
  void observe(ConstMatrixView x) {
    // A policy whose statistics can use the threads (AdaptiveExponent's Gram blocks) gets them.
    if constexpr (requires { correlation_.observe(x, backend::channel_stats_kernel<BackendT>(), backend::range_runner()); })
      correlation_.observe(x, backend::channel_stats_kernel<BackendT>(), backend::range_runner());
    else
      correlation_.observe(x, backend::channel_stats_kernel<BackendT>());
  }

  /// Re-plans D from the statistics so far and quantizes W (or W - B A) with it. The policy
  /// quantizes through the operator's backend into reused storage; the current quantization
  /// stays in force if anything throws.
  void requantize() {
    const ConstMatrixView weight = weights_->quantized_part();
    ScaleContext context{weight, config_, backend::quantize_kernel<BackendT>(config_), next_, backend::range_runner()};
    ScalePlan plan = correlation_.plan(context);
    detail::require_shape(static_cast<Index>(plan.scales.size()) == d_in(), "scales",
                          "[d_in] = [" + std::to_string(d_in()) + "]", 1, static_cast<Index>(plan.scales.size()));
    for (float d : plan.scales)
      if (!(std::isfinite(d) && d > 0.0f)) throw NonFiniteError("scales", "the scale policy produced a non-positive or non-finite D");
    if (!plan.quantized) quantize_into(BackendT{}, config_, weight, plan.scales, plan.group_clip, {}, next_);
    // A group whose range overflowed float decodes to NaN: an error naming the weight or x now,
    // not a NaN output blamed on a later input.
    require_representable_groups(next_, weight, plan.scales, "x");
    auto prepared = prepare(BackendT{}, next_);
    std::swap(quantized_, next_);
    scales_ = std::move(plan.scales);
    inverse_scales_.resize(scales_.size());
    for (std::size_t j = 0; j < scales_.size(); ++j) inverse_scales_[j] = 1.0f / scales_[j];
    prepared_ = std::move(prepared);
  }

  /// observe(X) then requantize(): the per-prompt calibration of TTQ. A policy that does not
  /// adapt (RTN) only validates X.
  void calibrate(ConstMatrixView x) {
    observe(x);
    if constexpr (CorrelationT::adapts) requantize();
  }

  /// Starts a new prompt (decays or forgets the statistics per the policy); the current
  /// quantization stays until the next calibrate().
  void begin_prompt() { correlation_.begin_prompt(); }

  /// Forgets all statistics and returns to the policy's plan before any activation.
  void reset() {
    correlation_.reset();
    requantize();
  }

  /// Y [T, d_out] = forward of X [T, d_in] with the current quantization (decode step or scoring).
  RowMatrix forward(ConstMatrixView x) const {
    RowMatrix y(x.rows, d_out());
    forward(x, MatrixView<float>(y));
    return y;
  }

  /// Writes the forward of X [T, d_in] into Y [T, d_out] (caller's buffer, any row stride).
  void forward(ConstMatrixView x, MatrixView<float> y) const {
    detail::require_valid_view(x, "x");
    detail::require_valid_view(y, "y");
    detail::require_shape(x.cols == d_in() && x.rows >= 1, "x", "[T >= 1, " + std::to_string(d_in()) + "]", x.rows, x.cols);
    detail::require_shape(y.rows == x.rows && y.cols == d_out(), "y",
                          "[" + std::to_string(x.rows) + ", " + std::to_string(d_out()) + "]", y.rows, y.cols);
    detail::require_finite(x, "x");
    const LowRankFactors& f = weights_->factors();
    backend::ForwardArgs args{x, inverse_scales_, ConstMatrixView(f.a), ConstMatrixView(f.b), weights_->bias(), y};
    detail::backend_forward(backend_type{}, prepared_, args);
    // Finite X can still give an infinite Y (entries near FLT_MAX): an error naming X, never
    // an Inf passed on as a result. A vectorized read of Y, negligible next to the product; the
    // element is named only on failure.
    if (detail::all_finite(ConstMatrixView(y.data, y.rows, y.cols, y.row_stride))) return;
    for (Index t = 0; t < y.rows; ++t)
      for (Index o = 0; o < y.cols; ++o)
        if (!std::isfinite(y(t, o)))
          throw NonFiniteError("x", "the output overflowed float at token " + std::to_string(t) + ", output " + std::to_string(o) +
                                        ": the input's magnitude is too large for this layer");
  }

  /// Prefill convenience: calibrate on the prompt X, then forward it with the new quantization.
  RowMatrix prefill(ConstMatrixView x) {
    calibrate(x);
    return forward(x);
  }

  /// Decode convenience: forward with the current quantization (no statistics update).
  RowMatrix decode(ConstMatrixView x) const { return forward(x); }

  Index d_in() const { return weights_->d_in(); }
  Index d_out() const { return weights_->d_out(); }
  /// The per-channel scales D in use, length d_in.
  std::span<const float> scales() const { return scales_; }
  const QuantizedMatrix& quantized() const { return quantized_; }
  const LowRankFactors& factors() const { return weights_->factors(); }
  const std::shared_ptr<const LayerWeights>& weights() const { return weights_; }
  const QuantizerT& quantizer() const { return quantizer_; }
  const QuantConfig& config() const { return config_; }
  const CorrelationT& correlation() const { return correlation_; }
  CorrelationT& correlation() { return correlation_; }

  /// W^ = B A + deq(Q) diag(1/D) [d_out, d_in]: the weight this operator effectively applies.
  RowMatrix effective_weight() const {
    RowMatrix w = quantized_.dequantize();
    for (Index r = 0; r < w.rows(); ++r)
      for (Index c = 0; c < w.cols(); ++c) w(r, c) *= inverse_scales_[static_cast<std::size_t>(c)];
    if (weights_->rank() > 0) w += weights_->factors().b * weights_->factors().a;
    return w;
  }

 private:
  using Prepared = backend::PreparedWeights<BackendT>;

  std::shared_ptr<const LayerWeights> weights_;
  QuantizerT quantizer_;
  CorrelationT correlation_;
  QuantConfig config_;
  std::vector<float> scales_;
  std::vector<float> inverse_scales_;
  QuantizedMatrix quantized_;
  QuantizedMatrix next_;  // where the next quantization is built (its storage is reused)
  Prepared prepared_;
};

}  // namespace ttq
