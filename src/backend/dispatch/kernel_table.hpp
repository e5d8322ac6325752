// The one template every per-ISA translation unit instantiates: the IsaKernels table of a
// backend tag. Included only by kernels_<isa>.cpp, each compiled with its own ISA flags.
//
// ODR: the table's functions are templates on the backend tag, and the SIMD tag lives in an
// inline namespace named after the ISA (backend/simd/detail/isa.hpp), so each translation unit
// emits its own symbols. docs/backends.md says what is shared (Eigen, the standard library,
// backend/parallel.hpp) and why that is safe with the link order src/CMakeLists.txt sets.
#pragma once

#include <memory>

#include "ttq/backend/dispatch.hpp"
#include "ttq/backend/scalar/kernels.hpp"
#include "ttq/core/half.hpp"

namespace ttq::backend::detail {

template <class Tag>
struct KernelTable {
  using Prepared = decltype(prepare(Tag{}, std::declval<const QuantizedMatrix&>()));

  static double quantize_into_fp32(const QuantConfig& config, ConstMatrixView w, std::span<const float> col_scale,
                                  std::span<const float> group_clip, std::span<const double> channel_weight, QuantizedMatrix& out) {
    return quantize_into(Tag{}, config, w, col_scale, group_clip, channel_weight, out);
  }
  static double quantize_into_bf16(const QuantConfig& config, MatrixView<const BFloat16> w, std::span<const float> col_scale,
                                  std::span<const float> group_clip, std::span<const double> channel_weight, QuantizedMatrix& out) {
    if constexpr (requires { quantize_into(Tag{}, config, w, col_scale, group_clip, channel_weight, out); }) {
      return quantize_into(Tag{}, config, w, col_scale, group_clip, channel_weight, out);
    } else {  // the reference's definition: quantize the exactly widened matrix
      const RowMatrix wide = widen(w);
      return quantize_into(Tag{}, config, ConstMatrixView(wide), col_scale, group_clip, channel_weight, out);
    }
  }
  static void channel_stats(int p_kind, ConstMatrixView x, double p, std::span<double> pnorm, std::span<double> square) {
    switch (p_kind) {
      case 1: accumulate_channel_stats<1>(Tag{}, x, p, pnorm, square); break;
      case 2: accumulate_channel_stats<2>(Tag{}, x, p, pnorm, square); break;
      case InfNorm: accumulate_channel_stats<InfNorm>(Tag{}, x, p, pnorm, square); break;
      default: accumulate_channel_stats<Dynamic>(Tag{}, x, p, pnorm, square); break;
    }
  }
  static std::shared_ptr<const void> prepare_weights(const QuantizedMatrix& q) {
    return std::make_shared<const Prepared>(prepare(Tag{}, q));
  }
  static void forward_weights(const void* prepared, const ForwardArgs& args) {
    forward(Tag{}, *static_cast<const Prepared*>(prepared), args);
  }

  static IsaKernels make(Isa isa, const char* detail) {
    return IsaKernels{isa, detail, &quantize_into_fp32, &quantize_into_bf16, &channel_stats, &prepare_weights, &forward_weights};
  }
};

// One entry point per ISA translation unit, named apart (they are compiled with different flags).
const IsaKernels& scalar_kernels();
const IsaKernels& avx2_kernels();
const IsaKernels& avx512_kernels();
const IsaKernels& neon_kernels();
const IsaKernels& neon_dotprod_kernels();

}  // namespace ttq::backend::detail
