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

/// Runtime-format versions of `F::fit`, `F::encode` and `F::decode`, for kernels that take the
/// format as a value (one switch per group, never per element in hot code).
TTQ_HOST_DEVICE inline GroupParams fit_group(FormatKind kind, GroupRange range, float clip, int bits) {
  switch (kind) {
    case FormatKind::offset_asymmetric: return fit_group<OffsetAsymmetric>(range, clip, bits);
    case FormatKind::symmetric: return fit_group<Symmetric>(range, clip, bits);
    case FormatKind::nf4: return fit_group<NF4>(range, clip, bits);
    case FormatKind::awq_asymmetric: break;
  }
  return fit_group<AwqAsymmetric>(range, clip, bits);
}

TTQ_HOST_DEVICE inline std::uint32_t encode_value(FormatKind kind, float w, GroupParams p, int bits) {
  switch (kind) {
    case FormatKind::offset_asymmetric: return OffsetAsymmetric::encode(w, p, bits);
    case FormatKind::symmetric: return Symmetric::encode(w, p, bits);
    case FormatKind::nf4: return NF4::encode(w, p, bits);
    case FormatKind::awq_asymmetric: break;
  }
  return AwqAsymmetric::encode(w, p, bits);
}

TTQ_HOST_DEVICE inline float decode_value(FormatKind kind, std::uint32_t q, GroupParams p, int bits) {
  switch (kind) {
    case FormatKind::offset_asymmetric: return OffsetAsymmetric::decode(q, p, bits);
    case FormatKind::symmetric: return Symmetric::decode(q, p, bits);
    case FormatKind::nf4: return NF4::decode(q, p, bits);
    case FormatKind::awq_asymmetric: break;
  }
  return AwqAsymmetric::decode(q, p, bits);
}

/// A group's decode written as one affine map of the code's value:
///   w^ = code_value(q) * scale + offset
/// where code_value is q itself for the integer formats and the NF4 level for NF4. A GEMV can
/// then sum `code_value(q) * x` over a group and apply scale and offset once per group:
///   sum_k w^_k x_k = scale * sum_k code_value(q_k) x_k + offset * sum_k x_k.
/// Equal to F::decode in exact arithmetic; in fp32 it differs by the rounding of the product
/// z * s (a few ulps of the group's range), which is far below the quantization step.
struct AffineDecode {
  float scale = 1.0f;
  float offset = 0.0f;
};

TTQ_HOST_DEVICE inline AffineDecode affine_decode(FormatKind kind, GroupParams p, int bits) {
  switch (kind) {
    case FormatKind::offset_asymmetric: return {p.scale, p.zero};  // q s + m
    case FormatKind::symmetric: return {p.scale, -static_cast<float>(1 << (bits - 1)) * p.scale};  // (q - 2^(b-1)) s
    case FormatKind::nf4: return {p.scale, 0.0f};  // level(q) s
    case FormatKind::awq_asymmetric: break;
  }
  return {p.scale, -p.zero * p.scale};  // (q - z) s
}

/// The value a code contributes before its group's affine map (see AffineDecode).
TTQ_HOST_DEVICE inline float code_value(FormatKind kind, std::uint32_t q) {
  return kind == FormatKind::nf4 ? NF4::level(q) : static_cast<float>(q);
}

}  // namespace ttq::detail
