// backend::Simd behind the dispatch table, compiled for -march=x86-64-v3 (AVX2, FMA, BMI2).
#if !defined(__AVX2__) || !defined(__FMA__) || defined(__AVX512F__)
#error "kernels_avx2.cpp must be compiled for AVX2 + FMA and without AVX-512 (src/CMakeLists.txt)"
#endif

#include <ttq/backend/simd/kernels.hpp>

#include "kernel_table.hpp"

namespace ttq::backend::detail {

const IsaKernels& avx2_kernels() {
  static const IsaKernels kernels = KernelTable<Simd>::make(Isa::avx2, Simd::isa);
  return kernels;
}

}  // namespace ttq::backend::detail
