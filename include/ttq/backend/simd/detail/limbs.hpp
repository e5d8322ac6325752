// Activations for the integer decode kernels (decode_vnni.hpp, decode_avx2.hpp,
// decode_neon.hpp): x' = x / D per token as 1, 2 or 3 balanced base-256 int8 "limbs" per
// activation block, with each block's step and digit sums. See decode_vnni.hpp for the design.
// The digits are the same on every ISA that builds them (AVX-512, AVX2 and AArch64 below): the
// kernels differ only in how they form the exact integer sums.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>

#include "ttq/backend/parallel.hpp"
#include "ttq/backend/simd/detail/isa.hpp"
#include "ttq/backend/simd/detail/layout.hpp"
#include "ttq/core/types.hpp"

namespace ttq::backend::detail {
inline namespace TTQ_SIMD_NAMESPACE {

/// Largest |X| representable in L balanced base-256 digits of at most 127 in magnitude.
inline constexpr float limb_range(int limbs) {
  return limbs == 1 ? 127.0f : (limbs == 2 ? 32639.0f : 8355711.0f);  // 127 * (256^L - 1) / 255
}
/// Chunks (of 32) per activation block: 32 weights for int8 (outliers hurt one limb most),
/// 128 with more limbs (fewer block epilogues).
inline constexpr Index limb_block_chunks(int limbs) { return limbs == 1 ? 1 : 4; }

/// Per-call activations for the integer kernel.
struct LimbActivations {
  int limbs = 0;
  Index tokens = 0;
  Index groups = 0;
  Index blocks_per_group = 0;
  Index block_chunks = 0;
  AlignedVector<std::int8_t> digits;     ///< [T][groups * blocks_per_group][limbs][block_chunks * 32]
  AlignedVector<std::int32_t> neg_sums;  ///< [T][blocks][limbs]: -sum_j d_lj
  AlignedVector<float> steps;            ///< [T][blocks][limbs]: block step * 256^(L-1-l)
  AlignedVector<float> sums;             ///< [T][groups]: sum_j x~_j (offset format)

  Index blocks() const { return groups * blocks_per_group; }
  Index block_bytes() const { return block_chunks * 32; }
  const std::int8_t* block_digits(Index t, Index b) const {
    return digits.data() + ((t * blocks() + b) * limbs) * block_bytes();
  }
  const std::int32_t* block_neg_sums(Index t, Index b) const { return neg_sums.data() + (t * blocks() + b) * limbs; }
  const float* block_steps(Index t, Index b) const { return steps.data() + (t * blocks() + b) * limbs; }
  std::int8_t* block_digits(Index t, Index b) { return digits.data() + ((t * blocks() + b) * limbs) * block_bytes(); }
  std::int32_t* block_neg_sums(Index t, Index b) { return neg_sums.data() + (t * blocks() + b) * limbs; }
  float* block_steps(Index t, Index b) { return steps.data() + (t * blocks() + b) * limbs; }
};

/// Stack buffer (floats) for one padded group of x' while building the limbs.
inline constexpr Index kLimbScratch = 1024;

/// Sizes `a` for `tokens` tokens of `limbs` limbs over the groups of `p` (reusing its storage):
/// the layout every ISA's build of prepare_limb_activations fills.
inline void shape_limb_activations(const SimdPrepared& p, Index tokens, int limbs, LimbActivations& a) {
  a.limbs = limbs;
  a.tokens = tokens;
  a.groups = p.groups;
  a.block_chunks = std::min(limb_block_chunks(limbs), p.chunks_per_group());
  a.blocks_per_group = (p.chunks_per_group() + a.block_chunks - 1) / a.block_chunks;
  const Index values = tokens * a.blocks() * limbs;
  a.digits.resize(static_cast<std::size_t>(values * a.block_bytes()));
  a.neg_sums.resize(static_cast<std::size_t>(values));
  a.steps.resize(static_cast<std::size_t>(values));
  a.sums.resize(static_cast<std::size_t>(tokens * a.groups));
}

/// A block's scaling: X = round(x' * inv_step) with |X| <= range, and x' ~ X * step.
struct LimbBlockScale {
  float inv_step = 0.0f;
  float step = 0.0f;
};
inline LimbBlockScale limb_block_scale(float absmax, float range) {
  float inv_step = absmax > 0.0f ? range / absmax : 0.0f;
  if (!(inv_step < INFINITY)) inv_step = 0.0f;  // a subnormal block: contributes nothing
  // x' = x / D overflowed float (finite x, D < 1): a NaN step makes the product NaN, which
  // the operator reports as an input too large for the layer, where zeros would be garbage.
  const float step = !(absmax < INFINITY) ? std::numeric_limits<float>::quiet_NaN()
                                          : inv_step > 0.0f ? absmax / range : 0.0f;
  return {inv_step, step};
}

/// Records block bi of token t from its digit sums `totals[l]` (limb l, most significant
/// first): -totals as the zero point's start values, the limb steps step * 256^(L-1-l), and
/// the block's sum of x~ added to `group_sum`, least significant limb first (every build's order).
inline void finish_limb_block(LimbActivations& a, Index t, Index bi, float step, const std::int32_t* totals, float& group_sum) {
  std::int32_t* neg = a.block_neg_sums(t, bi);
  float* steps = a.block_steps(t, bi);
  float weight = step;
  for (int l = a.limbs - 1; l >= 0; --l) {
    neg[l] = -totals[l];
    steps[l] = weight;
    group_sum += weight * static_cast<float>(totals[l]);
    weight *= 256.0f;
  }
}

#if TTQ_SIMD_INTEGER_DOT == 2

/// Builds the limbs of x' = x * (1/D) for every token (parallel over tokens).
template <int L>
void prepare_limb_activations(const SimdPrepared& p, ConstMatrixView x, std::span<const float> inverse_scale,
                              LimbActivations& a, const Executor& executor) {
  shape_limb_activations(p, x.rows, L, a);
  const float range = limb_range(L);
  parallel_for(executor, x.rows, 2, [&](Index t_begin, Index t_end) {
    AlignedVector<float> scratch(static_cast<std::size_t>(p.padded_group));
    for (Index t = t_begin; t < t_end; ++t) {
      const float* row = x.row(t);
      for (Index g = 0; g < p.groups; ++g) {
        const Index begin = g * p.group, width = std::min(p.group, p.cols - begin);
        // x' for the group, zero-padded (masked loads for the tail).
        for (Index k = 0; k < p.padded_group; k += 16) {
          const Index n = std::clamp<Index>(width - k, 0, 16);
          const __mmask16 m = static_cast<__mmask16>((1u << n) - 1u);
          const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, row + begin + k),
                                         _mm512_maskz_loadu_ps(m, inverse_scale.data() + begin + k));
          _mm512_store_ps(scratch.data() + k, v);
        }
        float group_sum = 0.0f;
        for (Index b = 0; b < a.blocks_per_group; ++b) {
          const Index bi = g * a.blocks_per_group + b;
          const Index first = b * a.block_bytes();
          const Index n = std::min(a.block_bytes(), p.padded_group - first);
          __m512 vmax = _mm512_setzero_ps();
          for (Index k = 0; k < n; k += 16) vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_load_ps(scratch.data() + first + k)));
          const float absmax = _mm512_reduce_max_ps(vmax);
          const auto [inv_step, step] = limb_block_scale(absmax, range);
          std::int8_t* out = a.block_digits(t, bi);
          __m512i sums[L];
          for (int l = 0; l < L; ++l) sums[l] = _mm512_setzero_si512();
          const __m512i lim = _mm512_set1_epi32(static_cast<int>(range));
          for (Index k = 0; k < a.block_bytes(); k += 16) {
            __m512i big = _mm512_setzero_si512();
            if (k < n) {
              big = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_load_ps(scratch.data() + first + k), _mm512_set1_ps(inv_step)));
              big = _mm512_max_epi32(_mm512_min_epi32(big, lim), _mm512_sub_epi32(_mm512_setzero_si512(), lim));
            }
            for (int l = L - 1; l >= 0; --l) {  // least significant digit first, balanced
              const __m512i digit = _mm512_sub_epi32(
                  _mm512_and_si512(_mm512_add_epi32(big, _mm512_set1_epi32(128)), _mm512_set1_epi32(255)), _mm512_set1_epi32(128));
              big = _mm512_srai_epi32(_mm512_sub_epi32(big, digit), 8);
              sums[l] = _mm512_add_epi32(sums[l], digit);
              _mm_storeu_si128(reinterpret_cast<__m128i*>(out + l * a.block_bytes() + k), _mm512_cvtepi32_epi8(digit));
            }
          }
          std::int32_t totals[L];
          for (int l = 0; l < L; ++l) totals[l] = _mm512_reduce_add_epi32(sums[l]);
          finish_limb_block(a, t, bi, step, totals, group_sum);
        }
        a.sums[static_cast<std::size_t>(t * a.groups + g)] = group_sum;
      }
    }
  });
}

#elif TTQ_SIMD_INTEGER_DOT == 1

/// The AVX2 build of the same activations: the same fp32 products, block maxima, rounding
/// (VCVTPS2DQ, to nearest even) and digits as the AVX-512 build, so digits, steps and sums are
/// bit-identical on both ISAs.
template <int L>
void prepare_limb_activations(const SimdPrepared& p, ConstMatrixView x, std::span<const float> inverse_scale,
                              LimbActivations& a, const Executor& executor) {
  shape_limb_activations(p, x.rows, L, a);
  const float range = limb_range(L);
  auto prepare_tokens = [&](Index t_begin, Index t_end) {
    alignas(32) float scratch[kLimbScratch];  // one group's x', zero-padded
    AlignedVector<float> heap;                // groups wider than the stack buffer
    float* xs = scratch;
    if (p.padded_group > kLimbScratch) {
      heap.resize(static_cast<std::size_t>(p.padded_group));
      xs = heap.data();
    }
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    for (Index t = t_begin; t < t_end; ++t) {
      const float* row = x.row(t);
      for (Index g = 0; g < p.groups; ++g) {
        const Index begin = g * p.group, width = std::min(p.group, p.cols - begin);
        Index k = 0;
        for (; k + 8 <= width; k += 8)
          _mm256_store_ps(xs + k, _mm256_mul_ps(_mm256_loadu_ps(row + begin + k), _mm256_loadu_ps(inverse_scale.data() + begin + k)));
        for (; k < width; ++k) xs[k] = row[begin + k] * inverse_scale[static_cast<std::size_t>(begin + k)];
        for (; k < p.padded_group; ++k) xs[k] = 0.0f;
        float group_sum = 0.0f;
        for (Index b = 0; b < a.blocks_per_group; ++b) {
          const Index bi = g * a.blocks_per_group + b;
          const Index first = b * a.block_bytes();
          const Index n = std::min(a.block_bytes(), p.padded_group - first);
          __m256 vmax = _mm256_setzero_ps();
          for (Index j = 0; j < n; j += 8) vmax = _mm256_max_ps(vmax, _mm256_and_ps(_mm256_load_ps(xs + first + j), abs_mask));
          __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
          m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
          m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
          const float absmax = _mm_cvtss_f32(m4);
          const auto [inv_step, step] = limb_block_scale(absmax, range);
          std::int8_t* out = a.block_digits(t, bi);
          __m256i sums[L];
          for (int l = 0; l < L; ++l) sums[l] = _mm256_setzero_si256();
          const __m256i lim = _mm256_set1_epi32(static_cast<int>(range));
          const __m256i lanes = _mm256_setr_epi32(0, 4, 1, 1, 1, 1, 1, 1);  // bytes 0-3 of both 128-bit halves
          for (Index j = 0; j < a.block_bytes(); j += 8) {
            __m256i big = _mm256_setzero_si256();
            if (j < n) {
              big = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_load_ps(xs + first + j), _mm256_set1_ps(inv_step)));
              big = _mm256_max_epi32(_mm256_min_epi32(big, lim), _mm256_sub_epi32(_mm256_setzero_si256(), lim));
            }
            for (int l = L - 1; l >= 0; --l) {  // least significant digit first, balanced
              const __m256i digit = _mm256_sub_epi32(
                  _mm256_and_si256(_mm256_add_epi32(big, _mm256_set1_epi32(128)), _mm256_set1_epi32(255)), _mm256_set1_epi32(128));
              big = _mm256_srai_epi32(_mm256_sub_epi32(big, digit), 8);
              sums[l] = _mm256_add_epi32(sums[l], digit);
              // Digits fit int8, so the saturating packs are exact; then the two 4-byte groups.
              __m256i bytes = _mm256_packs_epi32(digit, digit);
              bytes = _mm256_packs_epi16(bytes, bytes);
              bytes = _mm256_permutevar8x32_epi32(bytes, lanes);
              _mm_storel_epi64(reinterpret_cast<__m128i*>(out + l * a.block_bytes() + j), _mm256_castsi256_si128(bytes));
            }
          }
          std::int32_t totals[L];
          for (int l = 0; l < L; ++l) {
            __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sums[l]), _mm256_extracti128_si256(sums[l], 1));
            s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
            s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
            totals[l] = _mm_cvtsi128_si32(s4);
          }
          finish_limb_block(a, t, bi, step, totals, group_sum);
        }
        a.sums[static_cast<std::size_t>(t * a.groups + g)] = group_sum;
      }
    }
  };
  // One token is too little work to hand to another thread (decode's common case).
  if (x.rows == 1) prepare_tokens(0, 1);
  else parallel_for(executor, x.rows, 2, prepare_tokens);
}

#elif TTQ_SIMD_INTEGER_DOT == 3

/// The AArch64 build, in portable C++ (the compiler vectorizes the loops; per token it is a
/// small fraction of a decode call): the same fp32 products, block maxima, rounding to nearest
/// even and digits as the x86 builds, so digits, steps and sums are bit-identical to theirs.
template <int L>
void prepare_limb_activations(const SimdPrepared& p, ConstMatrixView x, std::span<const float> inverse_scale,
                              LimbActivations& a, const Executor& executor) {
  shape_limb_activations(p, x.rows, L, a);
  const float range = limb_range(L);
  auto prepare_tokens = [&](Index t_begin, Index t_end) {
    alignas(64) float scratch[kLimbScratch];  // one group's x', zero-padded
    AlignedVector<float> heap;                // groups wider than the stack buffer
    float* xs = scratch;
    if (p.padded_group > kLimbScratch) {
      heap.resize(static_cast<std::size_t>(p.padded_group));
      xs = heap.data();
    }
    for (Index t = t_begin; t < t_end; ++t) {
      const float* row = x.row(t);
      for (Index g = 0; g < p.groups; ++g) {
        const Index begin = g * p.group, width = std::min(p.group, p.cols - begin);
        Index k = 0;
        for (; k < width; ++k) xs[k] = row[begin + k] * inverse_scale[static_cast<std::size_t>(begin + k)];
        for (; k < p.padded_group; ++k) xs[k] = 0.0f;
        float group_sum = 0.0f;
        for (Index b = 0; b < a.blocks_per_group; ++b) {
          const Index bi = g * a.blocks_per_group + b;
          const Index first = b * a.block_bytes();
          const Index n = std::min(a.block_bytes(), p.padded_group - first);
          float absmax = 0.0f;
          for (Index j = 0; j < n; ++j) absmax = std::max(absmax, std::fabs(xs[first + j]));
          const auto [inv_step, step] = limb_block_scale(absmax, range);
          std::int8_t* out = a.block_digits(t, bi);
          std::int32_t sums[L] = {};
          for (Index j = 0; j < a.block_bytes(); ++j) {
            std::int32_t big = 0;
            if (j < n) {
              float v = std::nearbyint(xs[first + j] * inv_step);
              // x86's conversion gives INT_MIN for NaN and out-of-range values, which the clamp
              // then makes -range; the same here (only reached with the NaN step above).
              if (!(std::fabs(v) < 2147483648.0f)) v = -range;
              big = static_cast<std::int32_t>(std::clamp(v, -range, range));
            }
            for (int l = L - 1; l >= 0; --l) {  // least significant digit first, balanced
              const std::int32_t digit = ((big + 128) & 255) - 128;
              big = (big - digit) >> 8;
              sums[l] += digit;
              out[l * a.block_bytes() + j] = static_cast<std::int8_t>(digit);
            }
          }
          finish_limb_block(a, t, bi, step, sums, group_sum);
        }
        a.sums[static_cast<std::size_t>(t * a.groups + g)] = group_sum;
      }
    }
  };
  if (x.rows == 1) prepare_tokens(0, 1);
  else parallel_for(executor, x.rows, 2, prepare_tokens);
}

#endif

}  // namespace TTQ_SIMD_NAMESPACE
}  // namespace ttq::backend::detail
