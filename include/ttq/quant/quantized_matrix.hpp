// QuantizedMatrix: the result of quantizing a [rows, cols] weight matrix groupwise, with
// everything needed to decode it (packed codes, per-group scales and zeros, shape, group size,
// bit width, format) and its storage accounting.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <vector>

#include "ttq/core/error.hpp"
#include "ttq/core/types.hpp"
#include "ttq/quant/format.hpp"
#include "ttq/quant/packing.hpp"

namespace ttq {

/// A groupwise-quantized matrix [rows, cols], row-major.
///
/// Groups are `group` consecutive columns of one row; the last group of a row is shorter when
/// `group` does not divide `cols` (ragged). Group (r, g) covers columns [g*group, min((g+1)*group, cols)).
/// `codes` uses the layout of quant/packing.hpp. `scales` and `zeros` are [rows, groups_per_row()],
/// row-major; the meaning of `zeros` depends on `format` (see GroupParams).
struct QuantizedMatrix {
  Index rows = 0;
  Index cols = 0;
  Index group = 0;  ///< resolved group size, 1 <= group <= cols (cols means per-channel)
  int bits = 0;
  FormatKind format = FormatKind::awq_asymmetric;
  Index words_per_row = 0;
  std::vector<std::uint32_t> codes;  ///< [rows, words_per_row]
  std::vector<float> scales;         ///< [rows, groups_per_row()]
  std::vector<float> zeros;          ///< [rows, groups_per_row()]

  Index groups_per_row() const { return group == 0 ? 0 : (cols + group - 1) / group; }
  /// Width of group g of a row (group, or less for the ragged last one).
  Index group_width(Index g) const { return (g + 1) * group <= cols ? group : cols - g * group; }

  const std::uint32_t* row_codes(Index r) const { return codes.data() + r * words_per_row; }
  std::uint32_t code(Index r, Index c) const { return unpack_code(row_codes(r), c, bits); }
  GroupParams params(Index r, Index g) const {
    const Index i = r * groups_per_row() + g;
    return {scales[static_cast<std::size_t>(i)], zeros[static_cast<std::size_t>(i)]};
  }

  /// All codes unpacked, [rows, cols] row-major (for tests and inspection).
  std::vector<std::uint32_t> unpacked_codes() const {
    std::vector<std::uint32_t> out(static_cast<std::size_t>(rows * cols));
    for (Index r = 0; r < rows; ++r)
      for (Index c = 0; c < cols; ++c) out[static_cast<std::size_t>(r * cols + c)] = code(r, c);
    return out;
  }

  /// Decodes row r into out[0, cols): the spec's w^ (before any 1/D).
  void dequantize_row(Index r, float* out) const {
    visit_format(format, [&](auto f) {
      using F = decltype(f);
      // 2, 4 and 8 bits never straddle a word: code c is a fixed shift of word c / (32 / bits),
      // which the compiler unrolls (the online clip search decodes every row once per ratio).
      switch (bits) {
        case 2: return decode_row_aligned<F, 2>(r, out);
        case 4: return decode_row_aligned<F, 4>(r, out);
        case 8: return decode_row_aligned<F, 8>(r, out);
        default: break;
      }
      RowCodeReader reader(row_codes(r), bits);  // groups are consecutive: one pass over the row
      for (Index g = 0; g < groups_per_row(); ++g) {
        const GroupParams p = params(r, g);
        const Index end = g * group + group_width(g);
        for (Index c = g * group; c < end; ++c) out[c] = F::decode(reader.next(), p, bits);
      }
    });
  }

  /// Decoded values [rows, cols]: the spec's w^ for every element (before any 1/D).
  RowMatrix dequantize() const {
    RowMatrix out(rows, cols);
    for (Index r = 0; r < rows; ++r) dequantize_row(r, out.data() + r * cols);
    return out;
  }

  /// The first group (index into `scales`, r * groups_per_row() + g) whose step or zero point is
  /// not finite, or -1. A fit from a range max - min that overflowed float gives an infinite step,
  /// and such a group decodes to NaN or Inf whatever its codes.
  Index first_unrepresentable_group() const {
    for (std::size_t k = 0; k < scales.size(); ++k)
      if (!(std::isfinite(scales[k]) && std::isfinite(zeros[k]))) return static_cast<Index>(k);
    return -1;
  }

  /// Storage per weight in bits, counting codes plus per-group scale (fp32) and zero point at
  /// the format's deployment size (8 bits for an integer zero, 32 for a float offset), with
  /// ragged groups counted exactly: total bits / (rows * cols). Row padding is not counted.
  double bits_per_weight() const {
    if (rows == 0 || cols == 0) return 0.0;
    const int zero_bits = visit_format(format, [](auto f) { return decltype(f)::zero_point_bits; });
    const double per_group = 32.0 + zero_bits;
    const double total = static_cast<double>(rows) *
                         (static_cast<double>(cols) * bits + static_cast<double>(groups_per_row()) * per_group);
    return total / (static_cast<double>(rows) * static_cast<double>(cols));
  }

 private:
  // dequantize_row for a width whose codes never straddle a word (the values of unpack_code).
  template <class F, int Bits>
  void decode_row_aligned(Index r, float* out) const {
    constexpr Index kPerWord = 32 / Bits;
    constexpr std::uint32_t kMask = (1u << Bits) - 1u;
    const std::uint32_t* words = row_codes(r);
    for (Index g = 0; g < groups_per_row(); ++g) {
      const GroupParams p = params(r, g);
      const Index end = g * group + group_width(g);
      for (Index c = g * group; c < end; ++c) {
        const std::uint32_t code = (words[c / kPerWord] >> ((c % kPerWord) * Bits)) & kMask;
        out[c] = F::decode(code, p, Bits);
      }
    }
  }
};

namespace detail {
/// A number for an error message, as %g (std::to_string prints 1e20 with 21 digits).
inline std::string show_number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}
}  // namespace detail

/// Throws NonFiniteError when a group of `q`, the quantization of w * diag(scales) (w [d_out,
/// d_in]; `scales` empty for all ones, else length d_in), decodes to NaN or Inf: its range
/// max - min overflowed float. Names `weight` when the group's own weights span more than float's
/// range (no scales can quantize them), else `scales_argument`, whose scales stretch the group
/// past it (an operator names `x`, whose statistics gave D). A decoded NaN would otherwise
/// surface later as an error about some input.
inline void require_representable_groups(const QuantizedMatrix& q, ConstMatrixView w, std::span<const float> scales,
                                         const char* scales_argument) {
  const Index k = q.first_unrepresentable_group();
  if (k < 0) return;
  const Index groups = q.groups_per_row(), r = k / groups, g = k % groups;
  const Index begin = g * q.group, end = begin + q.group_width(g);
  float mn = w(r, begin), mx = w(r, begin), d_max = 0.0f;
  for (Index c = begin; c < end; ++c) {
    mn = std::min(mn, w(r, c));
    mx = std::max(mx, w(r, c));
    if (!scales.empty()) d_max = std::max(d_max, scales[static_cast<std::size_t>(c)]);
  }
  const std::string where = "row " + std::to_string(r) + ", columns " + std::to_string(begin) + ".." + std::to_string(end - 1);
  if (!std::isfinite(mx - mn))
    throw NonFiniteError("weight", "the group at " + where + " spans [" + detail::show_number(mn) + ", " + detail::show_number(mx) +
                                       "], a range beyond float's: it cannot be quantized");
  throw NonFiniteError(scales_argument, "the scales it gives (up to " + detail::show_number(d_max) + " in this group) stretch the " +
                                           "weight group at " + where + " beyond float's range: too large for this layer's weights");
}

}  // namespace ttq
