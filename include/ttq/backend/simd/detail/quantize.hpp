// SIMD quantize + pack: W (fp32 or bf16) times diag(D) to a QuantizedMatrix in one pass over W,
// with integer codes identical to the reference quantizer (quant/reference.hpp), and optionally
// the adaptive exponent's weighted error E from the same pass.
//
// Identity with the oracle is by construction, not by tolerance: per element the same IEEE
// operations in the same order (fp32 product w*d, division by the scale -- never a multiply by a
// reciprocal --, round half to even, add the zero, clamp low then high); per group the scalar
// F::fit itself. Min and max are exact in any order. The only freedom taken is where the codes
// go: a row's codes are gathered as bytes, then packed into the documented bit stream with
// whole-register shuffles (AVX-512BW for b = 2, 4, 8; BMI2 PEXT or a 64-bit window otherwise).
// Each row is read from memory once; the scaled row waits in an L1 buffer to be encoded.
#pragma once

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "ttq/backend/parallel.hpp"
#include "ttq/backend/simd/detail/isa.hpp"
#include "ttq/backend/simd/detail/layout.hpp"
#include "ttq/core/half.hpp"
#include "ttq/core/types.hpp"
#include "ttq/quant/format.hpp"
#include "ttq/quant/packing.hpp"
#include "ttq/quant/quant_config.hpp"
#include "ttq/quant/quantized_matrix.hpp"
#include "ttq/quant/reference.hpp"

namespace ttq::backend::detail {
inline namespace TTQ_SIMD_NAMESPACE {

// ---- loading a register of weights as fp32 ------------------------------------------------

template <class A>
xsimd::batch<float, A> load_weights(const float* p, requires_arch<xsimd::generic>) {
  return xsimd::batch<float, A>::load_unaligned(p);
}

/// bf16 -> fp32 is a 16-bit shift, exact. Generic version through a small buffer.
template <class A>
xsimd::batch<float, A> load_weights(const BFloat16* p, requires_arch<xsimd::generic>) {
  alignas(64) float buffer[xsimd::batch<float, A>::size];
  for (std::size_t i = 0; i < xsimd::batch<float, A>::size; ++i) buffer[i] = p[i].to_float();
  return xsimd::batch<float, A>::load_aligned(buffer);
}

#if XSIMD_WITH_AVX2
template <class A>
xsimd::batch<float, A> load_weights(const BFloat16* p, requires_arch<xsimd::avx2>) {
  const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}
#endif
#if XSIMD_WITH_AVX512F
template <class A>
xsimd::batch<float, A> load_weights(const BFloat16* p, requires_arch<xsimd::avx512f>) {
  const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}
#endif

inline float weight_to_float(float w) { return w; }
inline float weight_to_float(BFloat16 w) { return w.to_float(); }

// ---- storing a register of codes as bytes ----------------------------------------------------

template <class A>
void store_code_bytes(xsimd::batch<std::int32_t, A> codes, std::uint8_t* out, requires_arch<xsimd::generic>) {
  alignas(64) std::int32_t buffer[xsimd::batch<std::int32_t, A>::size];
  codes.store_aligned(buffer);
  for (std::size_t i = 0; i < xsimd::batch<std::int32_t, A>::size; ++i) out[i] = static_cast<std::uint8_t>(buffer[i]);
}
#if XSIMD_WITH_AVX2
/// Eight codes (0..255) to eight bytes: two saturating packs (exact: codes are in range).
template <class A>
void store_code_bytes(xsimd::batch<std::int32_t, A> codes, std::uint8_t* out, requires_arch<xsimd::avx2>) {
  const __m256i v = codes;
  const __m128i words = _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(out), _mm_packus_epi16(words, words));
}
#endif
#if XSIMD_WITH_AVX512F
template <class A>
void store_code_bytes(xsimd::batch<std::int32_t, A> codes, std::uint8_t* out, requires_arch<xsimd::avx512f>) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm512_cvtepi32_epi8(codes));
}
#endif

// ---- packing a row of byte codes into the documented bit stream -------------------------------

/// Any width: a 64-bit window (PEXT of 8 codes at a time where BMI2 exists).
inline void pack_row_generic(const std::uint8_t* codes, Index n, int bits, std::uint32_t* words) {
  std::uint64_t window = 0;
  int have = 0;
  Index k = 0;
#if defined(__BMI2__)
  // Four codes per PEXT keep the window below 64 bits (have < 32, plus at most 28).
  const std::uint32_t mask = 0x01010101u * ((1u << bits) - 1u);
  for (; k + 4 <= n; k += 4) {
    std::uint32_t four;
    std::memcpy(&four, codes + k, 4);
    window |= static_cast<std::uint64_t>(_pext_u32(four, mask)) << have;
    have += 4 * bits;
    if (have >= 32) {
      *words++ = static_cast<std::uint32_t>(window);
      window >>= 32;
      have -= 32;
    }
  }
#endif
  for (; k < n; ++k) {
    window |= static_cast<std::uint64_t>(codes[k]) << have;
    have += bits;
    if (have >= 32) {
      *words++ = static_cast<std::uint32_t>(window);
      window >>= 32;
      have -= 32;
    }
  }
  if (have > 0) *words = static_cast<std::uint32_t>(window);
}

template <class A>
void pack_row(const std::uint8_t* codes, Index n, int bits, std::uint32_t* words, requires_arch<xsimd::generic>) {
  pack_row_generic(codes, n, bits, words);
}

#if XSIMD_WITH_AVX2
/// b = 8: bytes are the stream. b = 4: two codes per byte, b = 2: four, combined with
/// multiply-adds of the byte lanes (exact: the fields do not overlap). 32 codes per step; the
/// tail goes through the generic packer, which starts on a word boundary because 32 codes fill
/// whole words.
template <class A>
void pack_row(const std::uint8_t* codes, Index n, int bits, std::uint32_t* words, requires_arch<xsimd::avx2>) {
  if (bits != 2 && bits != 4 && bits != 8) return pack_row_generic(codes, n, bits, words);
  Index k = 0;
  auto* out = reinterpret_cast<std::uint8_t*>(words);
  for (; k + 32 <= n; k += 32) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + k));
    if (bits == 8) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + k), v);
    } else if (bits == 4) {
      // 16-bit lanes c0 + 16 c1, then to bytes; packus works per 128-bit half, so the two
      // halves' 8 bytes land in qwords 0 and 2.
      const __m256i pairs = _mm256_maddubs_epi16(v, _mm256_set1_epi16(0x1001));
      const __m256i bytes = _mm256_permute4x64_epi64(_mm256_packus_epi16(pairs, pairs), 0x08);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + k / 2), _mm256_castsi256_si128(bytes));
    } else {
      // 16-bit lanes c0 + 4 c1, 32-bit lanes of those p0 + 16 p1 (one byte), then to bytes.
      const __m256i pairs = _mm256_maddubs_epi16(v, _mm256_set1_epi16(0x0401));
      const __m256i quads = _mm256_madd_epi16(pairs, _mm256_set1_epi32(0x00100001));
      const __m256i w16 = _mm256_packus_epi32(quads, quads);
      const __m256i b8 = _mm256_packus_epi16(w16, w16);  // bytes 0..3 of each 128-bit half
      const std::uint32_t lo = static_cast<std::uint32_t>(_mm_cvtsi128_si32(_mm256_castsi256_si128(b8)));
      const std::uint32_t hi = static_cast<std::uint32_t>(_mm_cvtsi128_si32(_mm256_extracti128_si256(b8, 1)));
      std::memcpy(out + k / 4, &lo, 4);
      std::memcpy(out + k / 4 + 4, &hi, 4);
    }
  }
  if (k < n) pack_row_generic(codes + k, n - k, bits, words + k * bits / 32);
}
#endif

#if XSIMD_WITH_AVX512BW
/// b = 8: bytes are the stream. b = 4: two codes per byte via 16-bit lanes. b = 2: four per
/// byte via 32-bit lanes. 64 codes per step; the tail goes through the generic packer, which
/// starts on a word boundary because 64 codes fill whole words.
template <class A>
void pack_row(const std::uint8_t* codes, Index n, int bits, std::uint32_t* words, requires_arch<xsimd::avx512bw>) {
  if (bits != 2 && bits != 4 && bits != 8) return pack_row_generic(codes, n, bits, words);
  Index k = 0;
  auto* out = reinterpret_cast<std::uint8_t*>(words);
  for (; k + 64 <= n; k += 64) {
    const __m512i v = _mm512_loadu_si512(codes + k);
    if (bits == 8) {
      _mm512_storeu_si512(out + k, v);
    } else if (bits == 4) {
      const __m512i pairs = _mm512_and_si512(_mm512_or_si512(v, _mm512_srli_epi16(v, 4)), _mm512_set1_epi16(0x00FF));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + k / 2), _mm512_cvtepi16_epi8(pairs));
    } else {
      __m512i quads = _mm512_or_si512(v, _mm512_srli_epi32(v, 6));
      quads = _mm512_or_si512(quads, _mm512_srli_epi32(v, 12));
      quads = _mm512_or_si512(quads, _mm512_srli_epi32(v, 18));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + k / 4), _mm512_cvtepi32_epi8(_mm512_and_si512(quads, _mm512_set1_epi32(0xFF))));
    }
  }
  if (k < n) pack_row_generic(codes + k, n - k, bits, words + k * bits / 32);
}
#endif

// ---- per-format encoding of a register (mirrors format.hpp exactly) --------------------------

/// Per-format encoding of a register, as three steps that mirror format.hpp exactly:
///   level(w)  the clamped code value as fp32 (the signed value for the symmetric format)
///   code(q)   the stored integer code
///   decode(q) w^ = F::decode(code(q)), the same fp32 operations in the same order
template <class F>
struct BatchEncoder;

template <>
struct BatchEncoder<AwqAsymmetric> {
  Batch<float> scale, zero, qmax;
  BatchEncoder(GroupParams p, int bits) : scale(p.scale), zero(p.zero), qmax(ttq::detail::max_code(bits)) {}
  Batch<float> level(Batch<float> w) const {
    return xsimd::min(xsimd::max(xsimd::nearbyint(divide(w, scale)) + zero, Batch<float>(0.0f)), qmax);
  }
  Batch<std::int32_t> code(Batch<float> q) const { return xsimd::batch_cast<std::int32_t>(q); }
  Batch<float> decode(Batch<float> q) const { return (q - zero) * scale; }
};

template <>
struct BatchEncoder<OffsetAsymmetric> {
  Batch<float> scale, offset, qmax;
  BatchEncoder(GroupParams p, int bits) : scale(p.scale), offset(p.zero), qmax(ttq::detail::max_code(bits)) {}
  Batch<float> level(Batch<float> w) const {
    return xsimd::min(xsimd::max(xsimd::nearbyint(divide(w - offset, scale)), Batch<float>(0.0f)), qmax);
  }
  Batch<std::int32_t> code(Batch<float> q) const { return xsimd::batch_cast<std::int32_t>(q); }
  Batch<float> decode(Batch<float> q) const { return q * scale + offset; }
};

template <>
struct BatchEncoder<Symmetric> {
  Batch<float> scale, low, high, half;
  BatchEncoder(GroupParams p, int bits)
      : scale(p.scale),
        low(-static_cast<float>(1 << (bits - 1))),
        high(static_cast<float>(1 << (bits - 1)) - 1.0f),
        half(static_cast<float>(1 << (bits - 1))) {}
  Batch<float> level(Batch<float> w) const { return xsimd::min(xsimd::max(xsimd::nearbyint(divide(w, scale)), low), high); }
  Batch<std::int32_t> code(Batch<float> q) const { return xsimd::batch_cast<std::int32_t>(q + half); }
  // (q + half) - half is exact for these small integers, so this is F::decode's value.
  Batch<float> decode(Batch<float> q) const { return q * scale; }
};

/// W streams from DRAM while the scan is busy computing; the hardware prefetcher alone leaves
/// the core waiting. 16 KiB ahead is about one row of a 4096-wide fp32 matrix (measured: -23%
/// time for 4096 x 4096 on the reference machine).
inline constexpr std::uintptr_t kQuantizePrefetchBytes = 16384;

/// Quantizes rows [row_begin, row_end) of `w * diag(col_scale)` into `out` with format F.
/// Returns false (and stops) if a scaled weight may be non-finite; the caller then reruns the
/// reference, which throws the reference error (or, after a false alarm, returns the codes).
///
/// With `error_weight` (length cols: c_j / d_j^2) it also writes each row's weighted error
/// sum_j error_weight_j (v_j - w^_j)^2 into `row_error[r]`, v = w*d the scaled weight: the
/// spec's c_j (w_j - w^_j / d_j)^2 up to the rounding of v (one ulp of w, relative), summed in
/// fp32 per group and in double over the groups (docs/numerics.md, "Adaptive exponent").
///
/// Shape: a software pipeline over the groups of a row. The scan of group g+1 (load, scale by
/// D, store into an L1 row buffer, min, max) runs in the same loop as the encoding of group g
/// (divide, round, clamp, narrow), so the multiply/compare pipes and the divider -- the
/// bottleneck, one division per weight -- work at the same time. Group g is fitted (the scalar
/// F::fit, exactly) between the two. The finiteness canary is the plain sum of the row's scaled
/// values: NaN or Inf anywhere makes it non-finite (an overflowing sum only costs a rerun).
template <class F, class Source>
bool quantize_rows(const QuantConfig& config, MatrixView<const Source> w, std::span<const float> col_scale,
                   std::span<const float> group_clip, QuantizedMatrix& out, Index row_begin, Index row_end,
                   const float* error_weight, double* row_error) {
  using B = Batch<float>;
  constexpr Index kLanes = static_cast<Index>(B::size);
  const Index cols = w.cols;
  const Index groups = out.groups_per_row();
  const bool scaled = !col_scale.empty();
  const float* d = col_scale.data();
  AlignedVector<float> row_buffer(static_cast<std::size_t>(cols + kLanes));
  std::vector<std::uint8_t> codes(static_cast<std::size_t>(cols + 64), 0);
  float* buffer = row_buffer.data();
  std::uint8_t* code_bytes = codes.data();
  for (Index r = row_begin; r < row_end; ++r) {
    const Source* row = w.row(r);
    B canary(0.0f);
    float tail_canary = 0.0f;
    // Scan of vector k (or the scalar tail) of the group starting at `begin`.
    auto scan = [&](Index begin, Index k, B& vmin, B& vmax) {
      prefetch_ahead(row + begin + k, kQuantizePrefetchBytes);
      B v = load_weights<Arch>(row + begin + k, Arch{});
      if (scaled) v = v * B::load_unaligned(d + begin + k);
      v.store_unaligned(buffer + begin + k);
      vmin = xsimd::min(vmin, v);
      vmax = xsimd::max(vmax, v);
      canary = canary + v;
    };
    auto scan_tail = [&](Index begin, Index from, Index width, float& mn, float& mx) {
      for (Index k = from; k < width; ++k) {
        float v = weight_to_float(row[begin + k]);
        if (scaled) v = v * d[begin + k];
        buffer[begin + k] = v;
        mn = std::fmin(mn, v);
        mx = std::fmax(mx, v);
        tail_canary += v;
      }
    };
    // Prologue: scan group 0.
    float next_min, next_max;
    {
      const Index width = out.group_width(0), vec_end = width / kLanes * kLanes;
      B vmin(INFINITY), vmax(-INFINITY);
      for (Index k = 0; k < vec_end; k += kLanes) scan(0, k, vmin, vmax);
      next_min = hmin(vmin);
      next_max = hmax(vmax);
      scan_tail(0, vec_end, width, next_min, next_max);
    }
    double row_error_sum = 0.0;
    for (Index g = 0; g < groups; ++g) {
      const Index begin = g * config.group;
      const Index width = out.group_width(g), vec_end = width / kLanes * kLanes;
      // Fit group g. The oracle folds v + 0 (so -0 becomes +0) before min/max; after is the same.
      const float clip = group_clip.empty() ? config.clip : group_clip[static_cast<std::size_t>(r * groups + g)];
      const GroupParams p = F::fit(clip * (next_min + 0.0f), clip * (next_max + 0.0f), config.bits);
      out.scales[static_cast<std::size_t>(r * groups + g)] = p.scale;
      out.zeros[static_cast<std::size_t>(r * groups + g)] = p.zero;
      const BatchEncoder<F> encode(p, config.bits);
      B error_sum(0.0f);
      float error_tail = 0.0f;
      // Encodes the register at column begin + e (and accumulates its weighted error).
      auto encode_at = [&](Index e) {
        const B v = B::load_unaligned(buffer + begin + e);
        const B q = encode.level(v);
        store_code_bytes<Arch>(encode.code(q), code_bytes + begin + e, Arch{});
        if (error_weight != nullptr) {
          const B diff = v - encode.decode(q);
          error_sum = xsimd::fma(diff * diff, B::load_unaligned(error_weight + begin + e), error_sum);
        }
      };
      // Encode g while scanning g + 1.
      const bool has_next = g + 1 < groups;
      const Index next_begin = begin + config.group;
      const Index next_width = has_next ? out.group_width(g + 1) : 0, next_vec_end = next_width / kLanes * kLanes;
      B vmin(INFINITY), vmax(-INFINITY);
      const Index common = std::min(vec_end, next_vec_end);
      Index k = 0;
      for (; k < common; k += kLanes) {
        encode_at(k);
        scan(next_begin, k, vmin, vmax);
      }
      for (Index e = k; e < vec_end; e += kLanes) encode_at(e);
      for (Index e = vec_end; e < width; ++e) {
        const std::uint32_t code = F::encode(buffer[begin + e], p, config.bits);
        code_bytes[begin + e] = static_cast<std::uint8_t>(code);
        if (error_weight != nullptr) {
          const float diff = buffer[begin + e] - F::decode(code, p, config.bits);
          error_tail += error_weight[begin + e] * (diff * diff);
        }
      }
      if (error_weight != nullptr) row_error_sum += static_cast<double>(hsum(error_sum)) + static_cast<double>(error_tail);
      if (has_next) {
        for (Index e = k; e < next_vec_end; e += kLanes) scan(next_begin, e, vmin, vmax);
        next_min = hmin(vmin);
        next_max = hmax(vmax);
        scan_tail(next_begin, next_vec_end, next_width, next_min, next_max);
      }
    }
    const float check = hsum(canary) + tail_canary;
    if (!(check - check == 0.0f)) return false;
    if (error_weight != nullptr) row_error[r] = row_error_sum;
    pack_row<Arch>(code_bytes, cols, config.bits, out.codes.data() + r * out.words_per_row, Arch{});
  }
  return true;
}

/// The reference quantizer on the exactly widened matrix (the NF4 path, and the rerun that
/// names a non-finite element).
template <class Source>
double reference_quantize_source(const QuantConfig& config, MatrixView<const Source> w, std::span<const float> col_scale,
                                 std::span<const float> group_clip, std::span<const double> channel_weight, QuantizedMatrix& out) {
  if constexpr (std::is_same_v<Source, float>) {
    return reference_quantize_into(config, w, col_scale, group_clip, channel_weight, out);
  } else {
    const RowMatrix wide = widen(w);
    return reference_quantize_into(config, ConstMatrixView(wide), col_scale, group_clip, channel_weight, out);
  }
}

/// The SIMD quantizer for fp32 or bf16 weights [rows, cols] into `out` (see quantize_into in
/// kernels.hpp). Returns E when channel_weight is non-empty: rows in parallel, each row's error
/// in its own slot, summed in row order, so the result does not depend on the thread count.
template <class Source>
double quantize_matrix_into(const QuantConfig& config, MatrixView<const Source> w, std::span<const float> col_scale,
                            std::span<const float> group_clip, std::span<const double> channel_weight, QuantizedMatrix& out,
                            const Executor& executor) {
  const bool vectorised = visit_format(config.format, [](auto f) { return decltype(f)::vector_encoder; });
  if (!vectorised)  // e.g. NF4's nearest-level search: the reference is the vector kernel
    return reference_quantize_source(config, w, col_scale, group_clip, channel_weight, out);
  reshape_quantized(config, w.rows, w.cols, out, /*zero_codes=*/false);  // rows store whole words
  const bool with_error = !channel_weight.empty();
  std::vector<float> error_weight;
  std::vector<double> row_error;
  if (with_error) {
    error_weight.resize(static_cast<std::size_t>(w.cols));
    for (std::size_t j = 0; j < error_weight.size(); ++j) {
      const double d = col_scale.empty() ? 1.0 : static_cast<double>(col_scale[j]);
      error_weight[j] = static_cast<float>(channel_weight[j] / (d * d));
    }
    row_error.assign(static_cast<std::size_t>(w.rows), 0.0);
  }
  std::atomic<bool> finite{true};
  visit_format(config.format, [&](auto f) {
    using F = decltype(f);
    if constexpr (F::vector_encoder) {
      parallel_for(executor, w.rows, 8, [&](Index begin, Index end) {
        if (finite.load(std::memory_order_relaxed) &&
            !quantize_rows<F>(config, w, col_scale, group_clip, out, begin, end, with_error ? error_weight.data() : nullptr,
                              row_error.data()))
          finite.store(false, std::memory_order_relaxed);
      });
    }
  });
  if (!finite.load())  // rerun the reference: it throws NonFiniteError naming the element
    return reference_quantize_source(config, w, col_scale, group_clip, channel_weight, out);
  double total = 0.0;
  for (double e : row_error) total += e;
  return total;
}

}  // namespace TTQ_SIMD_NAMESPACE
}  // namespace ttq::backend::detail
