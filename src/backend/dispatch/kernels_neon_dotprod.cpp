// backend::Simd behind the dispatch table, compiled for AArch64 with the dot-product extension
// (-march=armv8.2-a+dotprod, src/CMakeLists.txt): the SDOT integer decode kernels.
#if !defined(__aarch64__) || !defined(__ARM_FEATURE_DOTPROD)
#error "kernels_neon_dotprod.cpp is for AArch64 with +dotprod (src/CMakeLists.txt)"
#endif

#include <ttq/backend/simd/kernels.hpp>

#include "kernel_table.hpp"

namespace ttq::backend::detail {

const IsaKernels& neon_dotprod_kernels() {
  static const IsaKernels kernels = KernelTable<Simd>::make(Isa::neon_dotprod, Simd::isa);
  return kernels;
}

}  // namespace ttq::backend::detail
