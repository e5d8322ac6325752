// Portability for per-element math shared by the scalar reference and the CUDA kernels.
//
// Functions marked TTQ_HOST_DEVICE are compiled for the host always and for the device when a
// .cu file includes them, so the CPU test suite exercises the exact arithmetic the GPU runs.
// They use only fp32 operations whose results IEEE 754 fixes (add, mul, div, round-half-even).
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define TTQ_HOST_DEVICE __host__ __device__
// Before a TTQ_HOST_DEVICE template that calls a callable of the caller's (a visitor): the
// instantiation for a host-only lambda is only ever called on the host, which nvcc cannot see
// and would warn about (#20013) for every such call site.
#define TTQ_HOST_DEVICE_CALLS_CALLER _Pragma("nv_exec_check_disable")
#else
#define TTQ_HOST_DEVICE
#define TTQ_HOST_DEVICE_CALLS_CALLER
#endif

namespace ttq::detail {

/// Round half to even in fp32 (std::nearbyint under the default rounding mode; rintf on device).
TTQ_HOST_DEVICE inline float round_half_even(float x) {
#if defined(__CUDA_ARCH__)
  return rintf(x);
#else
  return std::nearbyint(x);
#endif
}

TTQ_HOST_DEVICE inline float clampf(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }
TTQ_HOST_DEVICE inline float maxf(float a, float b) { return a > b ? a : b; }
TTQ_HOST_DEVICE inline float minf(float a, float b) { return a < b ? a : b; }
TTQ_HOST_DEVICE inline float absf(float a) { return a < 0.0f ? -a : a; }

}  // namespace ttq::detail
