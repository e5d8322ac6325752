// The SIMD backend's only door to xsimd and to the compiler's intrinsics headers: it picks the
// instruction set the translation unit is compiled for, names it, and opens the per-ISA
// namespace every SIMD symbol lives in.
//
// The ISA is chosen at compile time by the flags of the including translation unit (ttq is
// header-only): xsimd's `default_arch` is the best instruction set those flags enable. All SIMD
// code sits in `ttq::backend::TTQ_SIMD_NAMESPACE` (an inline namespace such as
// `simd_avx512bw_vnni`), so an engine that compiles one translation unit per ISA and picks one at
// run time links distinct symbols for each, with no ODR clash (docs/performance.md, "Dispatch").
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>
#include <type_traits>

#include <xsimd/xsimd.hpp>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#endif
#if defined(__ARM_NEON) || defined(__aarch64__)
#include <arm_neon.h>
#endif

// The namespace name follows xsimd's choice of default_arch (checked below), plus whether the
// integer dot products (AVX-512 VNNI, Arm's dot-product extension) are available, which xsimd
// 8.1 does not model.
#if XSIMD_WITH_AVX512BW
#if defined(__AVX512VNNI__)
#define TTQ_SIMD_NAMESPACE simd_avx512bw_vnni
#define TTQ_SIMD_ISA_NAME "avx512bw+vnni"
#else
#define TTQ_SIMD_NAMESPACE simd_avx512bw
#define TTQ_SIMD_ISA_NAME "avx512bw"
#endif
#elif XSIMD_WITH_AVX512DQ
#define TTQ_SIMD_NAMESPACE simd_avx512dq
#define TTQ_SIMD_ISA_NAME "avx512dq"
#elif XSIMD_WITH_AVX512CD
#define TTQ_SIMD_NAMESPACE simd_avx512cd
#define TTQ_SIMD_ISA_NAME "avx512cd"
#elif XSIMD_WITH_AVX512F
#define TTQ_SIMD_NAMESPACE simd_avx512f
#define TTQ_SIMD_ISA_NAME "avx512f"
#elif XSIMD_WITH_FMA3_AVX2
#define TTQ_SIMD_NAMESPACE simd_avx2_fma
#define TTQ_SIMD_ISA_NAME "fma3+avx2"
#elif XSIMD_WITH_AVX2
#define TTQ_SIMD_NAMESPACE simd_avx2
#define TTQ_SIMD_ISA_NAME "avx2"
#elif XSIMD_WITH_FMA3_AVX
#define TTQ_SIMD_NAMESPACE simd_avx_fma
#define TTQ_SIMD_ISA_NAME "fma3+avx"
#elif XSIMD_WITH_AVX
#define TTQ_SIMD_NAMESPACE simd_avx
#define TTQ_SIMD_ISA_NAME "avx"
#elif XSIMD_WITH_FMA4
#define TTQ_SIMD_NAMESPACE simd_fma4
#define TTQ_SIMD_ISA_NAME "fma4"
#elif XSIMD_WITH_FMA3_SSE
#define TTQ_SIMD_NAMESPACE simd_sse42_fma
#define TTQ_SIMD_ISA_NAME "fma3+sse4.2"
#elif XSIMD_WITH_SSE4_2
#define TTQ_SIMD_NAMESPACE simd_sse42
#define TTQ_SIMD_ISA_NAME "sse4.2"
#elif XSIMD_WITH_SSE4_1
#define TTQ_SIMD_NAMESPACE simd_sse41
#define TTQ_SIMD_ISA_NAME "sse4.1"
#elif XSIMD_WITH_SSSE3
#define TTQ_SIMD_NAMESPACE simd_ssse3
#define TTQ_SIMD_ISA_NAME "ssse3"
#elif XSIMD_WITH_SSE3
#define TTQ_SIMD_NAMESPACE simd_sse3
#define TTQ_SIMD_ISA_NAME "sse3"
#elif XSIMD_WITH_SSE2
#define TTQ_SIMD_NAMESPACE simd_sse2
#define TTQ_SIMD_ISA_NAME "sse2"
#elif XSIMD_WITH_NEON64
#if defined(__ARM_FEATURE_DOTPROD)
#define TTQ_SIMD_NAMESPACE simd_neon64_dotprod
#define TTQ_SIMD_ISA_NAME "arm64+neon+dotprod"
#else
#define TTQ_SIMD_NAMESPACE simd_neon64
#define TTQ_SIMD_ISA_NAME "arm64+neon"
#endif
#elif XSIMD_WITH_NEON
#define TTQ_SIMD_NAMESPACE simd_neon
#define TTQ_SIMD_ISA_NAME "arm32+neon"
#else
#error "ttq's SIMD backend needs an instruction set xsimd supports (SSE2, AVX*, AVX-512 or NEON)"
#endif

namespace ttq::backend::detail {
inline namespace TTQ_SIMD_NAMESPACE {

/// The instruction set of this translation unit, as xsimd names it.
using Arch = xsimd::default_arch;
template <class T>
using Batch = xsimd::batch<T, Arch>;
using xsimd::kernel::requires_arch;

/// Lanes of a float register (16 on AVX-512, 8 on AVX2, 4 on SSE/NEON).
inline constexpr int kFloatLanes = static_cast<int>(Batch<float>::size);

/// Which integer decode kernel this translation unit has: 2 = AVX-512 VNNI (VPDPBUSD,
/// decode_vnni.hpp), 1 = AVX2 (VPMADDUBSW + VPMADDWD, decode_avx2.hpp), 3 = AArch64 with the
/// dot-product extension (SDOT, decode_neon.hpp; Armv8.4-A and later, optional from v8.2-A),
/// 0 = none (the fp32 kernel decodes). Integer dot products are what make decoding from packed
/// codes run at memory speed.
#if XSIMD_WITH_AVX512BW && defined(__AVX512VNNI__)
#define TTQ_SIMD_INTEGER_DOT 2
#elif defined(__AVX2__)
#define TTQ_SIMD_INTEGER_DOT 1
#elif defined(__aarch64__) && defined(__ARM_FEATURE_DOTPROD)
#define TTQ_SIMD_INTEGER_DOT 3
#else
#define TTQ_SIMD_INTEGER_DOT 0
#endif
/// Whether decode has an integer kernel here (limb activations; see TTQ_SIMD_INTEGER_DOT).
inline constexpr bool kHasIntegerDot = TTQ_SIMD_INTEGER_DOT != 0;

inline constexpr const char* kIsaName = TTQ_SIMD_ISA_NAME;

// Horizontal reductions (xsimd 8.1 has only hadd). Per-arch overloads as xsimd's own kernels.
template <class A, class T>
T reduce_min(xsimd::batch<T, A> v, requires_arch<xsimd::generic>) {
  alignas(64) T buffer[xsimd::batch<T, A>::size];
  v.store_aligned(buffer);
  T m = buffer[0];
  for (std::size_t i = 1; i < xsimd::batch<T, A>::size; ++i) m = buffer[i] < m ? buffer[i] : m;
  return m;
}
template <class A, class T>
T reduce_max(xsimd::batch<T, A> v, requires_arch<xsimd::generic>) {
  alignas(64) T buffer[xsimd::batch<T, A>::size];
  v.store_aligned(buffer);
  T m = buffer[0];
  for (std::size_t i = 1; i < xsimd::batch<T, A>::size; ++i) m = buffer[i] > m ? buffer[i] : m;
  return m;
}
#if XSIMD_WITH_AVX512F
template <class A>
float reduce_min(xsimd::batch<float, A> v, requires_arch<xsimd::avx512f>) {
  return _mm512_reduce_min_ps(v);
}
template <class A>
float reduce_max(xsimd::batch<float, A> v, requires_arch<xsimd::avx512f>) {
  return _mm512_reduce_max_ps(v);
}
#endif

// Fused multiply-add. xsimd 8.1 has FMA kernels for FMA3 and NEON but none for AVX-512, where
// its generic fallback is x*y+z -- two instructions, since ttq builds with -ffp-contract=off.
template <class A, class T>
xsimd::batch<T, A> fused_multiply_add(xsimd::batch<T, A> a, xsimd::batch<T, A> b, xsimd::batch<T, A> c,
                                      requires_arch<xsimd::generic>) {
  return xsimd::fma(a, b, c);
}
#if XSIMD_WITH_AVX512F
template <class A>
xsimd::batch<float, A> fused_multiply_add(xsimd::batch<float, A> a, xsimd::batch<float, A> b, xsimd::batch<float, A> c,
                                          requires_arch<xsimd::avx512f>) {
  return _mm512_fmadd_ps(a, b, c);
}
#endif

// Shifts of 32-bit lanes by a constant. xsimd 8.1's AVX-512 shifts pick the instruction with a
// run-time switch on the element size whose dead branches draw -Wmaybe-uninitialized from GCC 12.
template <int N, class A>
xsimd::batch<std::uint32_t, A> shift_right_lanes(xsimd::batch<std::uint32_t, A> v, requires_arch<xsimd::generic>) {
  return v >> N;
}
template <int N, class A>
xsimd::batch<std::uint32_t, A> shift_left_lanes(xsimd::batch<std::uint32_t, A> v, requires_arch<xsimd::generic>) {
  return v << N;
}
#if XSIMD_WITH_AVX512F
template <int N, class A>
xsimd::batch<std::uint32_t, A> shift_right_lanes(xsimd::batch<std::uint32_t, A> v, requires_arch<xsimd::avx512f>) {
  return _mm512_srli_epi32(v, N);
}
template <int N, class A>
xsimd::batch<std::uint32_t, A> shift_left_lanes(xsimd::batch<std::uint32_t, A> v, requires_arch<xsimd::avx512f>) {
  return _mm512_slli_epi32(v, N);
}
#endif
/// Logical shifts of every 32-bit lane by N (scalars too).
template <int N, class U>
U shift_right(U v) {
  if constexpr (std::is_integral_v<U>) return v >> N;
  else return shift_right_lanes<N, Arch>(v, Arch{});
}
template <int N, class U>
U shift_left(U v) {
  if constexpr (std::is_integral_v<U>) return v << N;
  else return shift_left_lanes<N, Arch>(v, Arch{});
}

// IEEE division. xsimd 8.1 divides floats on NEON (neon64 included) by a reciprocal estimate
// and two Newton steps, which is off by an ulp often enough to change quantization codes; the
// oracle's contract is the correctly rounded quotient (AArch64 has it: FDIV).
template <class A>
xsimd::batch<float, A> exact_divide(xsimd::batch<float, A> a, xsimd::batch<float, A> b, requires_arch<xsimd::generic>) {
  return a / b;
}
#if XSIMD_WITH_NEON64
template <class A>
xsimd::batch<float, A> exact_divide(xsimd::batch<float, A> a, xsimd::batch<float, A> b, requires_arch<xsimd::neon64>) {
  return vdivq_f32(a, b);
}
#elif XSIMD_WITH_NEON
template <class A>
xsimd::batch<float, A> exact_divide(xsimd::batch<float, A> a, xsimd::batch<float, A> b, requires_arch<xsimd::neon>) {
  alignas(16) float x[4], y[4];  // ARMv7 NEON has no vector division: lane by lane
  a.store_aligned(x);
  b.store_aligned(y);
  for (int i = 0; i < 4; ++i) x[i] /= y[i];
  return xsimd::batch<float, A>::load_aligned(x);
}
#endif
/// a / b, correctly rounded on every ISA.
inline Batch<float> divide(Batch<float> a, Batch<float> b) { return exact_divide<Arch>(a, b, Arch{}); }

/// a * b + c with one rounding where the ISA has FMA.
template <class T>
Batch<T> fmadd(Batch<T> a, Batch<T> b, Batch<T> c) {
  return fused_multiply_add<Arch>(a, b, c, Arch{});
}

template <class T>
T hmin(Batch<T> v) {
  return reduce_min<Arch>(v, Arch{});
}
template <class T>
T hmax(Batch<T> v) {
  return reduce_max<Arch>(v, Arch{});
}
template <class T>
T hsum(Batch<T> v) {
  return xsimd::hadd(v);
}

/// Hints the cache line `bytes_ahead` bytes after `p` into L1. The arithmetic is on integers:
/// the address may lie past the end of the buffer, where the hint is harmless (it never faults)
/// but pointer arithmetic would be undefined. (The decode kernels instead prefetch inside their
/// buffer with plain pointers: in them GCC 12 dropped the hint built from an integer address.)
inline void prefetch_ahead(const void* p, std::uintptr_t bytes_ahead) {
  const auto* line = reinterpret_cast<const char*>(reinterpret_cast<std::uintptr_t>(p) + bytes_ahead);
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
  _mm_prefetch(line, _MM_HINT_T0);
#else
  __builtin_prefetch(line);
#endif
}

// The namespace name must describe what xsimd actually picked (the two lists must agree).
static_assert(std::string_view(TTQ_SIMD_ISA_NAME).substr(0, std::string_view(Arch::name()).size()) ==
                  std::string_view(Arch::name()),
              "ttq: TTQ_SIMD_NAMESPACE disagrees with xsimd::default_arch; update backend/simd/detail/isa.hpp");

}  // namespace TTQ_SIMD_NAMESPACE
}  // namespace ttq::backend::detail
