// backend::Default: the backend an operator gets when none is named. It is the SIMD backend
// compiled for the including translation unit's instruction set (as xsimd's
// `batch<T, A = default_arch>`): build with -march=native (or x86-64-v3, ...) for AVX2/AVX-512
// kernels, or use backend::Dispatched (ttq::dispatch) to pick the ISA at run time in a binary that
// ships to many CPUs. The scalar reference stays available as backend::Scalar.
//
// TTQ_NO_SIMD (defined before including ttq) makes Default the scalar reference, for consumers
// that cannot use xsimd; CUDA translation units (nvcc) get it too, since they name backend::Cuda.
#pragma once

#include "ttq/backend/scalar/kernels.hpp"

#if !defined(TTQ_NO_SIMD) && !defined(__CUDACC__)
#include "ttq/backend/simd/kernels.hpp"
#endif

namespace ttq::backend {

#if !defined(TTQ_NO_SIMD) && !defined(__CUDACC__)
using Default = Simd;
#else
using Default = Scalar;
#endif

}  // namespace ttq::backend
