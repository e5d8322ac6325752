// Number formats: how one group of weights becomes integer codes plus a scale and a zero, and
// back (spec "Round-to-nearest groupwise quantize/dequantize"). This header is the single home
// of the per-element QDQ formulas; every backend (scalar, SIMD, CUDA) calls or mirrors these.
//
// A format is one struct: every property a kernel asks about is a member, and every runtime
// choice of format goes through visit_format() (no switch on FormatKind anywhere else):
//   kind                    FormatKind tag (runtime identity, stored in QuantizedMatrix)
//   name                    short name for tools and benchmarks
//   zero_point_bits         storage a deployment needs per group for the zero (0 if none)
//   zero_domain             where the group's zero lives (ZeroDomain below)
//   integer_codes           code_value(q) is q itself (packed integer GEMVs can run it); false
//                           for a lookup format, which backends decode from a dense copy
//   vector_encoder          whether the SIMD quantizer has a vectorised encode for it (a
//                           BatchEncoder specialisation); false: every backend runs the reference
//   supports_bits(b)        which bit widths the format defines
//   fit(mn, mx, bits)       group parameters from the group's (clipped) min and max
//   encode(w, params, bits) the stored unsigned code, in [0, 2^bits)
//   decode(q, params, bits) the dequantized value
//   code_value(q)           what a code contributes before its group's affine map: q itself for
//                           integer codes, a level for a lookup format
//   affine(params, bits)    the group's decode as w^ = code_value(q) * scale + offset
//   zero_code(params, bits) the integer zero point (ZeroDomain::code formats only)
// See the concept `NumberFormat` below, and docs/design.md ("Adding a format").
#pragma once

#include <concepts>
#include <cstdint>
#include <string>

#include "ttq/core/error.hpp"
#include "ttq/core/host_device.hpp"

namespace ttq {

enum class FormatKind : std::uint8_t { awq_asymmetric, offset_asymmetric, symmetric, nf4 };

/// Parameters of one quantization group. `zero` is the integer zero point (stored as float) for
/// the AWQ format, the float offset (group minimum) for the offset format, and 0 otherwise.
struct GroupParams {
  float scale = 1.0f;
  float zero = 0.0f;
};

/// Where a format's zero lives, which decides how packed layouts store it:
///   code   w^ = (q - z) * s with an integer z in [0, 2^bits) (stored per group, or implied)
///   value  w^ = q * s + m with a float offset m per group
///   none   w^ = code_value(q) * s (a symmetric lookup: no zero at all)
enum class ZeroDomain : std::uint8_t { code, value, none };

/// A group's decode written as one affine map of the code's value:
///   w^ = code_value(q) * scale + offset
/// A GEMV can then sum `code_value(q) * x` over a group and apply scale and offset once per group:
///   sum_k w^_k x_k = scale * sum_k code_value(q_k) x_k + offset * sum_k x_k.
/// Equal to F::decode in exact arithmetic; in fp32 it can differ by the rounding of the product
/// z * s (a few ulps of the group's range), far below the quantization step.
struct AffineDecode {
  float scale = 1.0f;
  float offset = 0.0f;
};

namespace detail {
/// The range floor of the spec (and of llm-awq): a group's range is never below this.
inline constexpr float kRangeFloor = 1e-5f;
TTQ_HOST_DEVICE constexpr float max_code(int bits) { return static_cast<float>((1u << bits) - 1u); }
}  // namespace detail

/// Asymmetric integer format, bit-for-bit llm-awq's `pseudo_quantize_tensor` in fp32:
///   s = max(mx - mn, 1e-5) / qmax,  z = clamp(-round(mn / s), 0, qmax)
///   q = clamp(round(w / s) + z, 0, qmax),  w^ = (q - z) * s
/// The clamp on z clips groups that do not straddle zero (documented in docs/numerics.md).
struct AwqAsymmetric {
  static constexpr FormatKind kind = FormatKind::awq_asymmetric;
  static constexpr const char* name = "awq";
  static constexpr int zero_point_bits = 8;
  static constexpr ZeroDomain zero_domain = ZeroDomain::code;
  static constexpr bool integer_codes = true;
  static constexpr bool vector_encoder = true;
  static constexpr bool supports_bits(int b) { return b >= 2 && b <= 8; }

  TTQ_HOST_DEVICE static GroupParams fit(float mn, float mx, int bits) {
    const float qmax = detail::max_code(bits);
    const float s = detail::maxf(mx - mn, detail::kRangeFloor) / qmax;
    const float z = detail::clampf(-detail::round_half_even(mn / s), 0.0f, qmax);
    return {s, z};
  }
  TTQ_HOST_DEVICE static std::uint32_t encode(float w, GroupParams p, int bits) {
    const float q = detail::clampf(detail::round_half_even(w / p.scale) + p.zero, 0.0f, detail::max_code(bits));
    return static_cast<std::uint32_t>(q);
  }
  TTQ_HOST_DEVICE static float decode(std::uint32_t q, GroupParams p, int /*bits*/) {
    return (static_cast<float>(q) - p.zero) * p.scale;
  }
  TTQ_HOST_DEVICE static float code_value(std::uint32_t q) { return static_cast<float>(q); }
  TTQ_HOST_DEVICE static AffineDecode affine(GroupParams p, int /*bits*/) { return {p.scale, -p.zero * p.scale}; }
  TTQ_HOST_DEVICE static std::uint32_t zero_code(GroupParams p, int /*bits*/) { return static_cast<std::uint32_t>(p.zero); }
};

/// Asymmetric format with a float offset (the group minimum), as ggml's Q4_1 and HQQ: never
/// clips. s = max(mx - mn, 1e-5) / qmax, q = clamp(round((w - mn) / s), 0, qmax), w^ = q*s + mn.
struct OffsetAsymmetric {
  static constexpr FormatKind kind = FormatKind::offset_asymmetric;
  static constexpr const char* name = "offset";
  static constexpr int zero_point_bits = 32;
  static constexpr ZeroDomain zero_domain = ZeroDomain::value;
  static constexpr bool integer_codes = true;
  static constexpr bool vector_encoder = true;
  static constexpr bool supports_bits(int b) { return b >= 2 && b <= 8; }

  TTQ_HOST_DEVICE static GroupParams fit(float mn, float mx, int bits) {
    return {detail::maxf(mx - mn, detail::kRangeFloor) / detail::max_code(bits), mn};
  }
  TTQ_HOST_DEVICE static std::uint32_t encode(float w, GroupParams p, int bits) {
    const float q = detail::clampf(detail::round_half_even((w - p.zero) / p.scale), 0.0f, detail::max_code(bits));
    return static_cast<std::uint32_t>(q);
  }
  TTQ_HOST_DEVICE static float decode(std::uint32_t q, GroupParams p, int /*bits*/) {
    return static_cast<float>(q) * p.scale + p.zero;
  }
  TTQ_HOST_DEVICE static float code_value(std::uint32_t q) { return static_cast<float>(q); }
  TTQ_HOST_DEVICE static AffineDecode affine(GroupParams p, int /*bits*/) { return {p.scale, p.zero}; }
};

/// Symmetric integer format: s = max(|w|max, 1e-5) / (2^(b-1) - 1),
/// q = clamp(round(w / s), -2^(b-1), 2^(b-1) - 1), w^ = q * s. Stored code: q + 2^(b-1).
struct Symmetric {
  static constexpr FormatKind kind = FormatKind::symmetric;
  static constexpr const char* name = "sym";
  static constexpr int zero_point_bits = 0;
  static constexpr ZeroDomain zero_domain = ZeroDomain::code;  // implied: 2^(b-1), never stored
  static constexpr bool integer_codes = true;
  static constexpr bool vector_encoder = true;
  static constexpr bool supports_bits(int b) { return b >= 2 && b <= 8; }

  TTQ_HOST_DEVICE static GroupParams fit(float mn, float mx, int bits) {
    const float absmax = detail::maxf(detail::absf(mn), detail::absf(mx));
    return {detail::maxf(absmax, detail::kRangeFloor) / static_cast<float>((1 << (bits - 1)) - 1), 0.0f};
  }
  TTQ_HOST_DEVICE static std::uint32_t encode(float w, GroupParams p, int bits) {
    const float half = static_cast<float>(1 << (bits - 1));
    const float q = detail::clampf(detail::round_half_even(w / p.scale), -half, half - 1.0f);
    return static_cast<std::uint32_t>(q + half);
  }
  TTQ_HOST_DEVICE static float decode(std::uint32_t q, GroupParams p, int bits) {
    return (static_cast<float>(q) - static_cast<float>(1 << (bits - 1))) * p.scale;
  }
  TTQ_HOST_DEVICE static float code_value(std::uint32_t q) { return static_cast<float>(q); }
  TTQ_HOST_DEVICE static AffineDecode affine(GroupParams p, int bits) {
    return {p.scale, -static_cast<float>(1 << (bits - 1)) * p.scale};
  }
  TTQ_HOST_DEVICE static std::uint32_t zero_code(GroupParams /*p*/, int bits) { return 1u << (bits - 1); }
};

/// NormalFloat4 (QLoRA / bitsandbytes): absmax scaling per group, code = index of the nearest
/// of 16 fixed levels (ties go to the lower index), w^ = level[code] * absmax. 4 bits only.
struct NF4 {
  static constexpr FormatKind kind = FormatKind::nf4;
  static constexpr const char* name = "nf4";
  static constexpr int zero_point_bits = 0;
  static constexpr ZeroDomain zero_domain = ZeroDomain::none;
  static constexpr bool integer_codes = false;   // levels
  static constexpr bool vector_encoder = false;  // a nearest-level search: the reference's loop
  static constexpr bool supports_bits(int b) { return b == 4; }

  /// The 16 NormalFloat4 levels of bitsandbytes, ascending.
  TTQ_HOST_DEVICE static float level(std::uint32_t code) {
    constexpr float kLevels[16] = {-1.0f,
                                   -0.6961928009986877f,
                                   -0.5250730514526367f,
                                   -0.39491748809814453f,
                                   -0.28444138169288635f,
                                   -0.18477343022823334f,
                                   -0.09105003625154495f,
                                   0.0f,
                                   0.07958029955625534f,
                                   0.16093020141124725f,
                                   0.24611230790615082f,
                                   0.33791524171829224f,
                                   0.44070982985305786f,
                                   0.5626170039176941f,
                                   0.7229568362236023f,
                                   1.0f};
    return kLevels[code & 15u];
  }
  TTQ_HOST_DEVICE static GroupParams fit(float mn, float mx, int /*bits*/) {
    return {detail::maxf(detail::maxf(detail::absf(mn), detail::absf(mx)), detail::kRangeFloor), 0.0f};
  }
  TTQ_HOST_DEVICE static std::uint32_t encode(float w, GroupParams p, int /*bits*/) {
    const float x = w / p.scale;
    std::uint32_t best = 0;
    float best_distance = detail::absf(x - level(0));
    for (std::uint32_t c = 1; c < 16; ++c) {
      const float distance = detail::absf(x - level(c));
      if (distance < best_distance) {  // strict: ties keep the lower index
        best = c;
        best_distance = distance;
      }
    }
    return best;
  }
  TTQ_HOST_DEVICE static float decode(std::uint32_t q, GroupParams p, int /*bits*/) { return level(q) * p.scale; }
  TTQ_HOST_DEVICE static float code_value(std::uint32_t q) { return level(q); }
  TTQ_HOST_DEVICE static AffineDecode affine(GroupParams p, int /*bits*/) { return {p.scale, 0.0f}; }
};

/// What a number-format policy must provide (see the file comment).
template <class F>
concept NumberFormat = requires(float w, std::uint32_t q, GroupParams p, int bits) {
  { F::kind } -> std::convertible_to<FormatKind>;
  { F::name } -> std::convertible_to<const char*>;
  { F::zero_point_bits } -> std::convertible_to<int>;
  { F::zero_domain } -> std::convertible_to<ZeroDomain>;
  { F::integer_codes } -> std::convertible_to<bool>;
  { F::vector_encoder } -> std::convertible_to<bool>;
  { F::supports_bits(bits) } -> std::same_as<bool>;
  { F::fit(w, w, bits) } -> std::same_as<GroupParams>;
  { F::encode(w, p, bits) } -> std::same_as<std::uint32_t>;
  { F::decode(q, p, bits) } -> std::same_as<float>;
  { F::code_value(q) } -> std::same_as<float>;
  { F::affine(p, bits) } -> std::same_as<AffineDecode>;
} && (F::zero_domain != ZeroDomain::code || requires(GroupParams p, int bits) {
  { F::zero_code(p, bits) } -> std::same_as<std::uint32_t>;
});

/// A list of formats, the domain of a visitor.
template <NumberFormat... Formats>
struct FormatList {};

/// Every format ttq runs. Adding a format: its struct above, its FormatKind value, and one entry
/// here (docs/design.md, "Adding a format").
using BuiltinFormats = FormatList<AwqAsymmetric, OffsetAsymmetric, Symmetric, NF4>;

namespace detail {
template <NumberFormat... Formats>
constexpr bool kinds_are_distinct(FormatList<Formats...>) {
  const FormatKind kinds[] = {Formats::kind...};
  for (std::size_t i = 0; i < sizeof...(Formats); ++i)
    for (std::size_t j = i + 1; j < sizeof...(Formats); ++j)
      if (kinds[i] == kinds[j]) return false;
  return true;
}

template <NumberFormat... Formats>
TTQ_HOST_DEVICE constexpr bool is_listed(FormatList<Formats...>, FormatKind kind) {
  return ((Formats::kind == kind) || ...);
}

// Calls f(F{}) for the F of the list whose kind is `kind`; the caller has checked that one is.
TTQ_HOST_DEVICE_CALLS_CALLER
template <class Visitor, NumberFormat First, NumberFormat... Rest>
TTQ_HOST_DEVICE decltype(auto) visit_listed(FormatKind kind, Visitor& f) {
  if constexpr (sizeof...(Rest) == 0) {
    (void)kind;
    return f(First{});
  } else {
    if (kind == First::kind) return f(First{});
    return visit_listed<Visitor, Rest...>(kind, f);
  }
}

TTQ_HOST_DEVICE_CALLS_CALLER
template <class Visitor, NumberFormat... Formats>
TTQ_HOST_DEVICE decltype(auto) visit_in(FormatList<Formats...>, FormatKind kind, Visitor& f) {
  return visit_listed<Visitor, Formats...>(kind, f);
}
}  // namespace detail

static_assert(detail::kinds_are_distinct(BuiltinFormats{}), "BuiltinFormats: two formats share a FormatKind");

/// True iff `kind` names a format ttq runs (a FormatKind cast from an unchecked integer may not).
TTQ_HOST_DEVICE constexpr bool is_known_format(FormatKind kind) { return detail::is_listed(BuiltinFormats{}, kind); }

/// Calls `f(Format{})` with the format policy named by `kind`: the one runtime switch on the
/// format, for host and device code. On the host an unknown kind is a RangeError naming
/// "format"; device code receives formats the host has validated (QuantConfig::validate).
TTQ_HOST_DEVICE_CALLS_CALLER
template <class F>
TTQ_HOST_DEVICE decltype(auto) visit_format(FormatKind kind, F&& f) {
#if !defined(__CUDA_ARCH__)
  if (!is_known_format(kind))
    throw RangeError("format", "an unknown FormatKind value " + std::to_string(static_cast<int>(kind)));
#endif
  return detail::visit_in(BuiltinFormats{}, kind, f);
}

inline const char* format_name(FormatKind kind) {
  return visit_format(kind, [](auto f) { return decltype(f)::name; });
}

/// Calls `f(Format{})` for every format ttq runs, in BuiltinFormats order (parsers, listings).
template <class F>
void for_each_format(F&& f) {
  [&]<NumberFormat... Formats>(FormatList<Formats...>) { (f(Formats{}), ...); }(BuiltinFormats{});
}

}  // namespace ttq
