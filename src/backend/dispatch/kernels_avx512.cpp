// backend::Simd behind the dispatch table, compiled for -march=x86-64-v4 -mavx512vnni (AVX-512 F/BW/DQ/VL/CD + VNNI).
#if !defined(__AVX512BW__) || !defined(__AVX512VNNI__)
#error "kernels_avx512.cpp must be compiled for AVX-512 BW + VNNI (src/CMakeLists.txt)"
#endif

#include <ttq/backend/simd/kernels.hpp>

#include "kernel_table.hpp"

namespace ttq::backend::detail {

const IsaKernels& avx512_kernels() {
  static const IsaKernels kernels = KernelTable<Simd>::make(Isa::avx512, Simd::isa);
  return kernels;
}

}  // namespace ttq::backend::detail
