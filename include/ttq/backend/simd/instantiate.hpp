// Compiling the SIMD kernels once per program instead of once per translation unit.
//
// The kernels are templates over the activation precision, so every translation unit that runs
// an operator on a SimdBackend compiles them again: seconds per unit in an optimised build, and
// minutes under sanitizers. A program with many such units (an engine, a test suite) declares
// them instantiated elsewhere in a header its units include, and instantiates them in one unit:
//
//   // simd_kernels.hpp, included by every unit
//   #include <ttq/backend/simd/instantiate.hpp>
//   TTQ_SIMD_EXTERN_KERNELS(24)        // backend::Simd; 8, 16 and 32 for the other variants
//
//   // simd_kernels.cpp, one unit
//   #include <ttq/backend/simd/instantiate.hpp>
//   TTQ_SIMD_INSTANTIATE_KERNELS(24)
//
// Every unit must be compiled for the same instruction set (the kernels are compiled for the
// including unit's ISA). Results are bit for bit the same either way.
#pragma once

#include <span>

#include "ttq/backend/simd/kernels.hpp"

// One declaration per kernel entry point of backend/simd/kernels.hpp (the BackendKernels
// contract); `prefix` is `template` (instantiate) or `extern template` (declare).
#define TTQ_SIMD_KERNELS_(prefix, A)                                                                                       \
  prefix double ttq::backend::quantize_into<A>(ttq::backend::SimdBackend<A>, const ttq::QuantConfig&, ttq::ConstMatrixView, \
                                               std::span<const float>, std::span<const float>, std::span<const double>,    \
                                               ttq::QuantizedMatrix&);                                                     \
  prefix double ttq::backend::quantize_into<A>(ttq::backend::SimdBackend<A>, const ttq::QuantConfig&,                      \
                                               ttq::MatrixView<const ttq::BFloat16>, std::span<const float>,               \
                                               std::span<const float>, std::span<const double>, ttq::QuantizedMatrix&);    \
  prefix void ttq::backend::accumulate_channel_stats<1, A>(ttq::backend::SimdBackend<A>, ttq::ConstMatrixView, double,     \
                                                           std::span<double>, std::span<double>);                          \
  prefix void ttq::backend::accumulate_channel_stats<2, A>(ttq::backend::SimdBackend<A>, ttq::ConstMatrixView, double,     \
                                                           std::span<double>, std::span<double>);                          \
  prefix void ttq::backend::accumulate_channel_stats<ttq::InfNorm, A>(ttq::backend::SimdBackend<A>, ttq::ConstMatrixView,  \
                                                                      double, std::span<double>, std::span<double>);       \
  prefix void ttq::backend::accumulate_channel_stats<ttq::Dynamic, A>(ttq::backend::SimdBackend<A>, ttq::ConstMatrixView,  \
                                                                      double, std::span<double>, std::span<double>);       \
  prefix ttq::backend::SimdPrepared ttq::backend::prepare<A>(ttq::backend::SimdBackend<A>, const ttq::QuantizedMatrix&);   \
  prefix void ttq::backend::forward<A>(ttq::backend::SimdBackend<A>, const ttq::backend::SimdPrepared&,                   \
                                       const ttq::backend::ForwardArgs&);

#define TTQ_SIMD_EXTERN_KERNELS(A) TTQ_SIMD_KERNELS_(extern template, A)
#define TTQ_SIMD_INSTANTIATE_KERNELS(A) TTQ_SIMD_KERNELS_(template, A)
