// backend::Simd behind the dispatch table, compiled for the AArch64 baseline (NEON is part of it).
#if !defined(__aarch64__)
#error "kernels_neon.cpp is for AArch64 (src/CMakeLists.txt)"
#endif

#include <ttq/backend/simd/kernels.hpp>

#include "kernel_table.hpp"

namespace ttq::backend::detail {

const IsaKernels& neon_kernels() {
  static const IsaKernels kernels = KernelTable<Simd>::make(Isa::neon, Simd::isa);
  return kernels;
}

}  // namespace ttq::backend::detail
