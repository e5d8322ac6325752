// Quantizer<Bits, Group, Format>: the quantization policy of an operator, and a standalone
// groupwise quantizer (`quantize(W, D)` -> QuantizedMatrix) for users who want only QDQ.
//
// Bits and Group are compile-time values or `Dynamic` (given at run time); Group may also be
// `PerChannel` (one group per row, resolved to d_in when the row length is known).
#pragma once

#include <concepts>
#include <span>
#include <string>

#include "ttq/core/error.hpp"
#include "ttq/core/types.hpp"
#include "ttq/quant/format.hpp"
#include "ttq/quant/quant_config.hpp"
#include "ttq/quant/quantized_matrix.hpp"
#include "ttq/quant/reference.hpp"

namespace ttq {

/// Group-size marker: one group spans the whole row (per-channel quantization).
inline constexpr int PerChannel = -2;

/// Runtime values for the `Dynamic` parameters of a Quantizer, plus the clip ratio.
struct QuantizerOptions {
  int bits = 0;      ///< required iff Bits == Dynamic (2..8, or 4 for NF4)
  Index group = 0;   ///< required iff Group == Dynamic (>= 1; PerChannel allowed)
  float clip = 1.0f; ///< range shrink ratio in (0, 1]; 1 is plain RTN
};

/// Groupwise round-to-nearest quantizer policy.
///
/// Template parameters (re-exported as `bits`, `group`, `format`):
///   Bits   2..8, or Dynamic
///   Group  a positive group size, PerChannel, or Dynamic
///   Format a NumberFormat policy (AwqAsymmetric, OffsetAsymmetric, Symmetric, NF4)
/// Runtime accessors `bit_width()` and `group_size()` answer for Dynamic parameters too.
template <int Bits, int Group, NumberFormat Format = AwqAsymmetric>
class Quantizer {
  static_assert(Bits == Dynamic || (Bits >= 2 && Bits <= 8), "Quantizer: Bits must be in 2..8 or Dynamic");
  static_assert(Bits == Dynamic || Format::supports_bits(Bits), "Quantizer: this Format does not support Bits");
  static_assert(Group == Dynamic || Group == PerChannel || Group >= 1,
                "Quantizer: Group must be positive, PerChannel or Dynamic");

 public:
  static constexpr int bits = Bits;
  static constexpr int group = Group;
  using format = Format;

  /// Default construction only when nothing is Dynamic.
  Quantizer()
    requires(Bits != Dynamic && Group != Dynamic)
      : bits_(Bits), group_(Group), clip_(1.0f) {}

  /// Sets the Dynamic parameters and the clip ratio; static ones must be left 0 or match.
  explicit Quantizer(QuantizerOptions options)
      : bits_(Bits == Dynamic ? options.bits : Bits), group_(Group == Dynamic ? options.group : Group), clip_(options.clip) {
    detail::require_range(Bits == Dynamic || options.bits == 0 || options.bits == Bits, "bits",
                          "0 or the compile-time " + std::to_string(Bits), std::to_string(options.bits));
    detail::require_range(Group == Dynamic || options.group == 0 || options.group == Group, "group",
                          "0 or the compile-time " + std::to_string(Group), std::to_string(options.group));
    detail::require_range(Format::supports_bits(bits_), "bits",
                          std::string("a bit width supported by format '") + Format::name + "'", std::to_string(bits_));
    detail::require_range(group_ >= 1 || group_ == PerChannel, "group", "a positive group size or PerChannel",
                          std::to_string(group_));
    detail::require_range(clip_ > 0.0f && clip_ <= 1.0f, "clip", "a ratio in (0, 1]", std::to_string(clip_));
  }

  int bit_width() const { return bits_; }
  /// The configured group size (PerChannel stays PerChannel until resolved by `config`).
  Index group_size() const { return group_; }
  float clip() const { return clip_; }

  /// The runtime config for rows of `d_in` elements. Throws RangeError if the group is larger
  /// than d_in (a fixed group never silently becomes per-channel).
  QuantConfig config(Index d_in) const {
    QuantConfig c{bits_, group_ == PerChannel ? d_in : group_, Format::kind, clip_};
    detail::require_range(d_in >= 1, "d_in", "at least 1 input channel", std::to_string(d_in));
    c.validate(d_in);
    return c;
  }

  /// Quantizes `w * diag(col_scale)` with the reference quantizer (quant/reference.hpp; an
  /// operator quantizes on its backend instead, with identical codes). w: [rows, cols], finite.
  /// col_scale: empty (all ones) or length cols, finite and positive. Returns the codes and
  /// group parameters. A group whose range max - min (scaled) overflows float is a NonFiniteError
  /// naming `weight` (its own range overflows) or `col_scale`.
  QuantizedMatrix quantize(ConstMatrixView w, std::span<const float> col_scale = {}) const {
    detail::require_valid_view(w, "weight");
    const QuantConfig c = config(w.cols);
    if (!col_scale.empty()) {
      detail::require_shape(static_cast<Index>(col_scale.size()) == w.cols, "col_scale", "[d_in] = [" + std::to_string(w.cols) + "]",
                            1, static_cast<Index>(col_scale.size()));
      detail::require_finite(col_scale, "col_scale");
      for (std::size_t j = 0; j < col_scale.size(); ++j)
        detail::require_range(col_scale[j] > 0.0f, "col_scale", "positive scales",
                              std::to_string(col_scale[j]) + " at channel " + std::to_string(j));
    }
    QuantizedMatrix q = reference_quantize(c, w, col_scale, {});
    require_representable_groups(q, w, col_scale, "col_scale");  // a range past float's would decode to NaN
    return q;
  }

  /// Q(W D) D^-1 (paper Eq. 20) as a dense matrix: the effective weight this quantizer gives
  /// for per-channel scales D (empty D: plain QDQ).
  RowMatrix quantize_dequantize(ConstMatrixView w, std::span<const float> col_scale = {}) const {
    RowMatrix out = quantize(w, col_scale).dequantize();
    if (!col_scale.empty())
      for (Index r = 0; r < out.rows(); ++r)
        for (Index c = 0; c < out.cols(); ++c) out(r, c) /= col_scale[static_cast<std::size_t>(c)];
    return out;
  }

 private:
  int bits_;
  Index group_;
  float clip_;
};

/// What an operator needs from a quantizer policy.
template <class Q>
concept QuantizerPolicy = requires(const Q& q, Index d_in) {
  { Q::bits } -> std::convertible_to<int>;
  { Q::group } -> std::convertible_to<int>;
  typename Q::format;
  { q.config(d_in) } -> std::same_as<QuantConfig>;
};

}  // namespace ttq
