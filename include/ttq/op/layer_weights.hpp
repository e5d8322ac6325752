// LayerWeights: the immutable, shareable part of one linear layer: W, the optional bias, the
// static low-rank factors and the residual R = W - B A that gets quantized.
//
// One LayerWeights serves any number of per-sequence operators (held by shared_ptr<const>):
// sequences differ only in their statistics and quantized copies, never in W.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ttq/core/error.hpp"
#include "ttq/core/half.hpp"
#include "ttq/core/types.hpp"
#include "ttq/residual/low_rank_residual.hpp"

namespace ttq {

class LayerWeights {
 public:
  /// Copies W [d_out, d_in] (row-major, any row stride; finite) and bias (empty or [d_out]),
  /// and factorizes with `residual`.
  template <ResidualPolicy Residual = NoResidual>
  static std::shared_ptr<const LayerWeights> copy(ConstMatrixView w, std::span<const float> bias = {},
                                                  const Residual& residual = {}) {
    validate(w, bias);
    auto layer = std::shared_ptr<LayerWeights>(new LayerWeights());
    layer->owned_ = ttq::detail::to_matrix(w);
    layer->weight_ = ConstMatrixView(layer->owned_);
    layer->finish(bias, residual);
    return layer;
  }

  /// Like copy() but for bf16 / fp16 weights, widened exactly to fp32.
  template <class Half, ResidualPolicy Residual = NoResidual>
    requires(std::is_same_v<Half, BFloat16> || std::is_same_v<Half, Float16>)
  static std::shared_ptr<const LayerWeights> copy(MatrixView<const Half> w, std::span<const float> bias = {},
                                                  const Residual& residual = {}) {
    const RowMatrix wide = widen(w);
    return copy(ConstMatrixView(wide), bias, residual);
  }

  /// Uses W in place without copying: the caller keeps `w`'s memory alive and unchanged for the
  /// lifetime of the returned object and of every operator built on it (e.g. an mmapped model).
  template <ResidualPolicy Residual = NoResidual>
  static std::shared_ptr<const LayerWeights> borrow(ConstMatrixView w, std::span<const float> bias = {},
                                                    const Residual& residual = {}) {
    validate(w, bias);
    auto layer = std::shared_ptr<LayerWeights>(new LayerWeights());
    layer->weight_ = w;
    layer->finish(bias, residual);
    return layer;
  }

  Index d_out() const { return weight_.rows; }
  Index d_in() const { return weight_.cols; }
  Index rank() const { return factors_.rank(); }
  /// W [d_out, d_in].
  ConstMatrixView weight() const { return weight_; }
  /// The matrix TTQ quantizes: W - B A [d_out, d_in] (W itself when rank is 0).
  ConstMatrixView quantized_part() const { return rank() == 0 ? weight_ : ConstMatrixView(residual_); }
  const LowRankFactors& factors() const { return factors_; }
  std::span<const float> bias() const { return bias_; }

 private:
  LayerWeights() = default;

  static void validate(ConstMatrixView w, std::span<const float> bias) {
    detail::require_valid_view(w, "weight");
    detail::require_shape(w.rows >= 1 && w.cols >= 1, "weight", "[d_out >= 1, d_in >= 1]", w.rows, w.cols);
    detail::require_finite(w, "weight");
    if (!bias.empty()) {
      detail::require_shape(static_cast<Index>(bias.size()) == w.rows, "bias", "[d_out] = [" + std::to_string(w.rows) + "]",
                            1, static_cast<Index>(bias.size()));
      detail::require_finite(bias, "bias");
    }
  }

  template <ResidualPolicy Residual>
  void finish(std::span<const float> bias, const Residual& residual) {
    bias_.assign(bias.begin(), bias.end());
    factors_ = residual.factorize(weight_);
    if (factors_.rank() > 0) residual_ = ttq::detail::as_eigen(weight_) - factors_.b * factors_.a;
  }

  RowMatrix owned_;
  ConstMatrixView weight_;
  std::vector<float> bias_;
  LowRankFactors factors_;
  RowMatrix residual_;
};

}  // namespace ttq
