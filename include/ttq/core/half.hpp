// 16-bit floating-point storage types (bfloat16 and IEEE half) and their exact conversion to
// fp32. ttq computes in fp32; these exist so that engines holding bf16/fp16 weights can hand
// them over without a conversion pass of their own.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include "ttq/core/types.hpp"

namespace ttq {

/// bfloat16 storage: the upper 16 bits of an IEEE fp32. Conversion to fp32 is exact.
struct BFloat16 {
  std::uint16_t bits = 0;

  /// Round-to-nearest-even from fp32 (NaN stays NaN).
  static BFloat16 from_float(float f) {
    const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
    if (std::isnan(f)) return {static_cast<std::uint16_t>((u >> 16) | 0x40u)};
    const std::uint32_t rounding = 0x7FFFu + ((u >> 16) & 1u);
    return {static_cast<std::uint16_t>((u + rounding) >> 16)};
  }
  float to_float() const { return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16); }
};

/// IEEE 754 binary16 storage. Conversion to fp32 is exact (subnormals included).
struct Float16 {
  std::uint16_t bits = 0;

  float to_float() const {
    const std::uint32_t sign = (bits & 0x8000u) << 16;
    const std::uint32_t exponent = (bits >> 10) & 0x1Fu;
    const std::uint32_t mantissa = bits & 0x3FFu;
    if (exponent == 0) {
      // Zero or subnormal: value = mantissa * 2^-24, exact in fp32.
      const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
      return sign ? -magnitude : magnitude;
    }
    if (exponent == 31) return std::bit_cast<float>(sign | 0x7F800000u | (mantissa << 13));
    return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
  }

  /// Round-to-nearest-even from fp32; out-of-range values become infinities.
  static Float16 from_float(float f) {
    const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
    const std::uint16_t sign = static_cast<std::uint16_t>((u >> 16) & 0x8000u);
    const float a = std::fabs(f);
    if (std::isnan(f)) return {static_cast<std::uint16_t>(sign | 0x7E00u)};
    if (a >= 65520.0f) return {static_cast<std::uint16_t>(sign | 0x7C00u)};
    if (a < 6.103515625e-05f) {  // subnormal half: multiples of 2^-24, rounded half-to-even
      const float q = std::nearbyint(std::ldexp(a, 24));
      return {static_cast<std::uint16_t>(sign | static_cast<std::uint16_t>(q))};
    }
    std::uint32_t mag = u & 0x7FFFFFFFu;
    const std::uint32_t rounding = 0xFFFu + ((mag >> 13) & 1u);
    mag += rounding;
    return {static_cast<std::uint16_t>(sign | (((mag >> 13) - (112u << 10)) & 0x7FFFu))};
  }
};

/// Widens a row-major 16-bit matrix to an owning fp32 matrix (exact).
template <class Half>
  requires(std::is_same_v<Half, BFloat16> || std::is_same_v<Half, Float16>)
RowMatrix widen(MatrixView<const Half> m) {
  detail::require_valid_view(m, "weight");
  RowMatrix out(m.rows, m.cols);
  for (Index r = 0; r < m.rows; ++r)
    for (Index c = 0; c < m.cols; ++c) out(r, c) = m(r, c).to_float();
  return out;
}

}  // namespace ttq
