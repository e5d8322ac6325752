// Backend tags and the `Backend` concept.
//
// A backend is an empty tag type. Kernels are free functions overloaded on the tag (as xsimd's
// `requires_arch<A>`), found by argument-dependent lookup in namespace ttq::backend:
//   quantize(tag, QuantConfig, ConstMatrixView w, span col_scale, span group_clip) -> QuantizedMatrix
//   accumulate_channel_stats<P>(tag, ConstMatrixView x, double p, span<double> pnorm, span<double> square)
//   prepare(tag, const QuantizedMatrix&) -> the backend's decode-ready form of the weights
//   forward(tag, prepared, ForwardArgs) -> writes Y
// Operators dispatch once per call at this boundary, never inside loops. The scalar backend
// (backend/scalar/) is the oracle every other backend is tested against.
#pragma once

#include <concepts>

namespace ttq::backend {

/// Plain loops that read like the spec; the reference for every other backend.
struct Scalar {
  static constexpr const char* name = "scalar";
};

/// Tag-type requirements: a name and being an empty, default-constructible tag.
template <class B>
concept Backend = std::is_empty_v<B> && std::default_initializable<B> && requires {
  { B::name } -> std::convertible_to<const char*>;
};

}  // namespace ttq::backend
