// The per-group steps of groupwise quantization (spec "Round-to-nearest groupwise
// quantize/dequantize"), written once as TTQ_HOST_DEVICE functions so that the scalar oracle and
// the CUDA kernels run the same fp32 operations in the same order: scale a weight by D, fold a
// group's min/max (and whether every value is finite), fit the format's parameters with the clip
// ratio, encode, and the runtime-format forms of decode the GEMV kernels use.
//
// The fold is exactly order-independent for finite inputs (min and max of distinct values, and
// every zero is made +0 first), so a parallel tree reduction on the GPU yields bit for bit the
// range the sequential scalar loop yields; that is what makes "identical codes" a promise rather
// than a hope.
#pragma once

#include <cstdint>

#include "ttq/core/host_device.hpp"
#include "ttq/quant/format.hpp"

namespace ttq::detail {

/// The largest finite fp32 (FLT_MAX), spelled out so device code needs no <cfloat> constexpr.
inline constexpr float kMaxFinite = 3.40282347e38f;

/// True iff x is neither NaN nor infinite. (|NaN| <= anything is false; |Inf| > FLT_MAX.)
TTQ_HOST_DEVICE inline bool is_finite(float x) { return absf(x) <= kMaxFinite; }

/// The host half of mul_rn: kept out of line, so that the caller sees a rounded fp32 value it
/// cannot fuse into an fma. GCC contracts a*b + c whenever the target has FMA (e.g. with
/// -march=native), in ISO C++ mode too, and nothing in a header can switch that off locally.
#if defined(__GNUC__)
__attribute__((noinline))
#endif
inline float host_mul_rn(float a, float b) {
  return a * b;
}

/// a * b rounded to fp32 once, and never fused with a following add, on the host and on the
/// device alike. nvcc contracts a*b + c into an fma by default (-fmad=true), even across inlined
/// functions; __fmul_rn is exempt from contraction.
TTQ_HOST_DEVICE inline float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return host_mul_rn(a, b);
#endif
}

/// One element of the quantized matrix: the weight times its column scale D_j, one fp32
/// multiply (llm-awq's `weight * scales`). With D = 1 the product is the weight itself, bit for bit.
TTQ_HOST_DEVICE inline float scaled_weight(float w, float d) { return mul_rn(w, d); }

/// The min and max of a set of scaled weights, and whether all of them were finite. When
/// `finite` is false, min and max are meaningless and no code may be produced from them.
struct GroupRange {
  float min = kMaxFinite;
  float max = -kMaxFinite;
  bool finite = true;
};

/// The identity of `merge_range`: an empty set (what a GPU lane without elements contributes).
TTQ_HOST_DEVICE inline GroupRange empty_range() { return {kMaxFinite, -kMaxFinite, true}; }

/// The range of a single value. `+ 0.0f` turns -0 into +0 (and changes nothing else), so that
/// which zero wins a tie cannot depend on the order of the fold.
TTQ_HOST_DEVICE inline GroupRange range_of(float v) {
  const float canonical = v + 0.0f;
  return {canonical, canonical, is_finite(v)};
}

/// Union of two ranges. Associative and commutative for finite values: any reduction order
/// gives the same bits.
TTQ_HOST_DEVICE inline GroupRange merge_range(GroupRange a, GroupRange b) {
  return {minf(a.min, b.min), maxf(a.max, b.max), a.finite && b.finite};
}

/// The format's group parameters from a finite range, the clip ratio applied first
/// (paper Eq. 27-28: mn, mx <- c*mn, c*mx). Precondition: range.finite.
template <NumberFormat F>
TTQ_HOST_DEVICE GroupParams fit_group(GroupRange range, float clip, int bits) {
  // mul_rn: AwqAsymmetric::fit subtracts these products, an fma pattern for nvcc.
  return F::fit(mul_rn(clip, range.min), mul_rn(clip, range.max), bits);
}

/// Runtime-format versions of the format's members, for kernels that take the format as a value
/// (one dispatch per group, never per element in hot code). All derive from visit_format().
TTQ_HOST_DEVICE inline GroupParams fit_group(FormatKind kind, GroupRange range, float clip, int bits) {
  return visit_format(kind, [&](auto f) { return fit_group<decltype(f)>(range, clip, bits); });
}

TTQ_HOST_DEVICE inline std::uint32_t encode_value(FormatKind kind, float w, GroupParams p, int bits) {
  return visit_format(kind, [&](auto f) { return decltype(f)::encode(w, p, bits); });
}

TTQ_HOST_DEVICE inline float decode_value(FormatKind kind, std::uint32_t q, GroupParams p, int bits) {
  return visit_format(kind, [&](auto f) { return decltype(f)::decode(q, p, bits); });
}

/// The group's decode as an affine map of code_value (AffineDecode, quant/format.hpp).
TTQ_HOST_DEVICE inline AffineDecode affine_decode(FormatKind kind, GroupParams p, int bits) {
  return visit_format(kind, [&](auto f) { return decltype(f)::affine(p, bits); });
}

/// The value a code contributes before its group's affine map (see AffineDecode).
TTQ_HOST_DEVICE inline float code_value(FormatKind kind, std::uint32_t q) {
  return visit_format(kind, [&](auto f) { return decltype(f)::code_value(q); });
}

/// Whether the format's codes are their own values (F::integer_codes): packed integer layouts.
TTQ_HOST_DEVICE inline bool has_integer_codes(FormatKind kind) {
  return visit_format(kind, [](auto f) { return decltype(f)::integer_codes; });
}

/// Whether the format's zero is an integer in the code domain, stored or implied (ZeroDomain::code),
/// or there is none; false for a float offset (ZeroDomain::value).
TTQ_HOST_DEVICE inline bool has_code_zero(FormatKind kind) {
  return visit_format(kind, [](auto f) { return decltype(f)::zero_domain != ZeroDomain::value; });
}

/// The integer zero point of a group (0 for a format without a zero; meaningless for an offset).
TTQ_HOST_DEVICE inline std::uint32_t zero_code(FormatKind kind, GroupParams p, int bits) {
  return visit_format(kind, [&](auto f) -> std::uint32_t {
    using F = decltype(f);
    if constexpr (F::zero_domain == ZeroDomain::code) return F::zero_code(p, bits);
    else return 0u;
  });
}

}  // namespace ttq::detail
