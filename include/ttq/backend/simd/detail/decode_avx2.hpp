// Decode (skinny GEMM, T = 1..16) from packed codes with AVX2 integer dot products on the
// activation limbs of limbs.hpp: the AVX2 port of decode_vnni.hpp, for CPUs without AVX-512
// VNNI (every Intel client core since Alder Lake, AMD before Zen 4).
//
// AVX2 has no VPDPBUSD. Its u8 x s8 product, VPMADDUBSW, multiplies the 32 code bytes of a
// 256-bit operand (8 rows x 4 weights, the layout of layout.hpp; one 64-byte plane register is
// two of them, rows 0-7 and 8-15) by the 4 activation digits broadcast to every row, and adds
// adjacent pairs into 16 int16 lanes, saturating. Pair sums are exact while
// 2 (2^b - 1) 128 <= 32767, which holds for every width b <= 7 (codes are fields of the plane
// registers, extracted with shifts and masks, never scaled by 2^(w s) as the VNNI kernel does).
// 8-bit codes are split into two nibbles (q = 16 h + l) whose products are summed apart. The
// int16 pair sums of n consecutive operands are then added in int16 -- exact while
// n 2 (2^b - 1) 128 <= 32767: n = 42, 18, 8, 4, 2, 1 for b = 2..7 and 8 per nibble -- and
// widened once per run by VPMADDWD against ones (16 for the high nibble) into the int32
// accumulator of the block and limb. Multiplies per operand and limb: 1 + 1/n (2 + 2/8 at 8
// bits), so the cost falls with the width: a whole 128-block of 2-bit codes is one int16 run.
//
// Result: per block and limb the same exact int32 sum sum_j (q_j - z) d_lj as the VNNI kernel
// (the zero point enters as the start value -z sum_j d_lj), then the same fp32 operations in
// the same order (convert, times the block's step, per group times the row scale, plus the
// offset term): the output equals the VNNI kernel's bit for bit. Rows are two halves of 8 (one
// 256-bit register each); a tile of TT tokens holds TT x L int32 and TT x L int16 accumulators
// per half, and both halves share one pass (one digit broadcast feeds two products) where
// those fit the 16 registers. Whole activation blocks (1 chunk for one limb, 4 for more) are
// unrolled at compile time, so every int16 run boundary is static.
//
// Cost on AVX2: VPMADDUBSW and VPMADDWD issue on two ports (Zen 3, and Intel since Haswell),
// and each limb needs one per 4 weights x 8 rows, so the kernel is compute-bound on AVX2 well
// before memory speed: from cache, for 2-4-bit codes one limb (SimdInt8) runs about 2x faster
// than the fp32 kernel and three limbs (Simd) about 1.4-1.7x; 8-bit codes (two nibble products)
// about as fast as the fp32 kernel (docs/performance.md, "Integer decode per ISA").
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>

#include "ttq/backend/simd/detail/isa.hpp"
#include "ttq/backend/simd/detail/layout.hpp"
#include "ttq/backend/simd/detail/limbs.hpp"
#include "ttq/core/types.hpp"

namespace ttq::backend::detail {
inline namespace TTQ_SIMD_NAMESPACE {

#if TTQ_SIMD_INTEGER_DOT == 1

/// Operand O (0..7) of a chunk for one 8-row half whose plane registers are `regs`: the 4
/// codes k = 4O..4O+3 of each row, one per byte (< 2^Bits). Constant shifts and masks.
template <int Bits, int O>
inline __m256i operand_avx2(const __m256i* regs) {
  if constexpr (Bits == 8) {
    return regs[O];
  } else {
    __m256i result = _mm256_setzero_si256();
    [&]<int... P>(std::integer_sequence<int, P...>) {
      (
          [&] {
            constexpr PlaneSpec spec = plane_spec(Bits, P);
            constexpr int per = 8 / spec.width;
            constexpr int reg = plane_offset(Bits, P) + O / per;
            constexpr int shift = spec.width * (O % per) - spec.significance;
            constexpr std::uint32_t mask = (((1u << spec.width) - 1u) << spec.significance) * 0x01010101u;
            __m256i part = regs[reg];
            if constexpr (shift > 0) part = _mm256_srli_epi32(part, shift);
            if constexpr (shift < 0) part = _mm256_slli_epi32(part, -shift);
            part = _mm256_and_si256(part, _mm256_set1_epi32(static_cast<int>(mask)));
            if constexpr (P == 0) result = part;
            else result = _mm256_or_si256(result, part);
          }(),
          ...);
    }(std::make_integer_sequence<int, plane_count(Bits)>{});
    return result;
  }
}

// The kernel's lambdas must inline: an out-of-line one takes the accumulators by reference,
// through memory.
#if defined(__GNUC__)
#define TTQ_AVX2_INLINE __attribute__((always_inline))
#else
#define TTQ_AVX2_INLINE
#endif

/// Operands whose VPMADDUBSW pair sums add exactly in int16: each pair sum is at most
/// 2 (2^b - 1) 128 in magnitude (codes below 2^b, digits in [-128, 127]); 8-bit codes go as
/// nibbles (b = 4).
inline constexpr int int16_run(int bits) { return 32767 / (256 * ((1 << (bits == 8 ? 4 : bits)) - 1)); }

/// An optimisation barrier on an accumulator: GCC 12 otherwise reassociates the unrolled int16
/// sums of a run into trees whose partial products outnumber the 16 registers (spills).
inline void accumulate_in_order(__m256i& v) {
#if defined(__GNUC__)
  __asm__("" : "+x"(v));
#else
  (void)v;
#endif
}

/// The 4 activation digits at `x` in every 32-bit lane.
inline __m256i broadcast_digits(const std::int8_t* x) {
  std::int32_t four;
  std::memcpy(&four, x, 4);
  return _mm256_set1_epi32(four);
}

/// Both 8-row halves share one pass (one broadcast of the digits feeds two products) while
/// the tile's int32 and int16 accumulators for both halves number at most this many (of 16
/// registers; the rest hold codes, operands and digits); else one half at a time.
inline constexpr int kBothHalvesMax = 12;

/// acc[t][l][h] += sum over the chunks of one activation block of (codes x digits), exactly:
/// int16 runs of VPMADDUBSW pair sums (int16_run), widened by VPMADDWD. `chunk` is the block's
/// first chunk, already offset to the first half of the pass; kChunks > 0 is the chunk count at
/// compile time (whole blocks: every run boundary is then known), 0 = `chunks` at run time.
template <int Bits, int L, int TT, int kHalves, int kChunks>
inline void block_products(const std::uint8_t* chunk, std::size_t chunk_bytes, Index chunks, const std::int8_t* const* digits,
                           Index block_bytes, __m256i (&acc)[TT][L][kHalves]) {
  constexpr bool kNibbles = Bits == 8;
  constexpr int kRun = int16_run(Bits);
  // Runs end inside a chunk (every kRunOps operands, a divisor of 8) or after kRunChunks chunks.
  constexpr int kRunOps = kRun >= 8 ? 8 : (kRun >= 4 ? 4 : (kRun >= 2 ? 2 : 1));
  constexpr int kRunChunks = kRun >= 8 ? kRun / 8 : 1;
  constexpr int kHi = kNibbles ? TT : 1;  // high-nibble runs (8-bit codes only)
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i sixteen = _mm256_set1_epi16(16);
  const __m256i low_nibbles = _mm256_set1_epi8(0x0F);
  __m256i run[TT][L][kHalves], run_hi[kHi][L][kHalves];
  for (int t = 0; t < TT; ++t)
    for (int l = 0; l < L; ++l)
      for (int h = 0; h < kHalves; ++h) {
        run[t][l][h] = _mm256_setzero_si256();
        if constexpr (kNibbles) run_hi[t][l][h] = _mm256_setzero_si256();
      }
  auto flush = [&]() TTQ_AVX2_INLINE {
    for (int t = 0; t < TT; ++t)
      for (int l = 0; l < L; ++l)
        for (int h = 0; h < kHalves; ++h) {
          acc[t][l][h] = _mm256_add_epi32(acc[t][l][h], _mm256_madd_epi16(run[t][l][h], ones));
          run[t][l][h] = _mm256_setzero_si256();
          if constexpr (kNibbles) {
            acc[t][l][h] = _mm256_add_epi32(acc[t][l][h], _mm256_madd_epi16(run_hi[t][l][h], sixteen));
            run_hi[t][l][h] = _mm256_setzero_si256();
          }
        }
  };
  auto products = [&](Index c) TTQ_AVX2_INLINE {
    const std::uint8_t* here = chunk + static_cast<std::size_t>(c) * chunk_bytes;
    prefetch_chunk_ahead<Bits>(here);
    __m256i regs[kHalves][Bits];
    for (int h = 0; h < kHalves; ++h)
      for (int m = 0; m < Bits; ++m) regs[h][m] = _mm256_load_si256(reinterpret_cast<const __m256i*>(here + m * 64 + 32 * h));
    const Index offset = c * kChunk;
    [&]<int... O>(std::integer_sequence<int, O...>) TTQ_AVX2_INLINE {
      (
          [&]() TTQ_AVX2_INLINE {
            __m256i lo[kHalves], hi[kHalves];
            for (int h = 0; h < kHalves; ++h) {
              const __m256i op = operand_avx2<Bits, O>(regs[h]);
              lo[h] = kNibbles ? _mm256_and_si256(op, low_nibbles) : op;
              hi[h] = kNibbles ? _mm256_and_si256(_mm256_srli_epi16(op, 4), low_nibbles) : op;
            }
            for (int t = 0; t < TT; ++t)
              for (int l = 0; l < L; ++l) {
                const __m256i x = broadcast_digits(digits[t] + l * block_bytes + offset + 4 * O);
                for (int h = 0; h < kHalves; ++h) {
                  run[t][l][h] = _mm256_add_epi16(run[t][l][h], _mm256_maddubs_epi16(lo[h], x));
                  accumulate_in_order(run[t][l][h]);
                  if constexpr (kNibbles) {
                    run_hi[t][l][h] = _mm256_add_epi16(run_hi[t][l][h], _mm256_maddubs_epi16(hi[h], x));
                    accumulate_in_order(run_hi[t][l][h]);
                  }
                }
              }
            if constexpr (kRunOps < 8 && (O + 1) % kRunOps == 0) flush();
          }(),
          ...);
    }(std::make_integer_sequence<int, 8>{});
  };
  if constexpr (kChunks > 0) {
    [&]<int... C>(std::integer_sequence<int, C...>) TTQ_AVX2_INLINE {
      (
          [&]() TTQ_AVX2_INLINE {
            products(C);
            if constexpr (kRunOps == 8 && ((C + 1) % kRunChunks == 0 || C + 1 == kChunks)) flush();
          }(),
          ...);
    }(std::make_integer_sequence<int, kChunks>{});
  } else {
    int pending = 0;  // chunks in the open run (runs of whole chunks)
    for (Index c = 0; c < chunks; ++c) {
      products(c);
      if constexpr (kRunOps == 8) {
        if (++pending == kRunChunks) {
          flush();
          pending = 0;
        }
      }
    }
    if (pending > 0) flush();
  }
}

/// y[t][16 rows of block rb] for tokens [t0, t0 + TT) with L activation limbs (see the file
/// comment).
template <int Bits, int L, int TT>
void decode_block_avx2(const SimdPrepared& p, const LimbActivations& a, Index t0, Index rb, float* y_tile) {
  // 8-bit codes take one half at a time: their 16 plane registers per pass and the nibble
  // runs ran about 1.4x (T = 1, one limb: 2x) slower with both halves (measured, cold 4096x4096).
  constexpr int kHalves = (Bits != 8 && 2 * TT * L * 2 <= kBothHalvesMax) ? 2 : 1;
  constexpr int kFull = static_cast<int>(limb_block_chunks(L));  // chunks of a whole block
  const Index chunks = p.chunks_per_group();
  const std::size_t chunk_bytes = p.chunk_bytes();
  const bool integer_zero = p.integer_zero();
  const Index block_bytes = a.block_bytes();
  const std::int8_t* digits0[TT];  // block 0 of each token; blocks follow at L * block_bytes
  const std::int32_t* neg0[TT];
  const float* steps0[TT];
  for (int t = 0; t < TT; ++t) {
    digits0[t] = a.block_digits(t0 + t, 0);
    neg0[t] = a.block_neg_sums(t0 + t, 0);
    steps0[t] = a.block_steps(t0 + t, 0);
  }
  __m256 y[TT][2];
  for (int t = 0; t < TT; ++t) y[t][0] = y[t][1] = _mm256_setzero_ps();
  for (Index g = 0; g < p.groups; ++g) {
    const std::size_t pi = p.param_index(rb, g);
    const std::uint8_t* codes = p.block_codes(rb, g);
    __m256i zero[2];
    for (int h = 0; h < 2; ++h)
      zero[h] = integer_zero ? _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p.zeros.data() + pi + 8 * h)))
                             : _mm256_setzero_si256();
    __m256 group_acc[TT][2];
    for (int t = 0; t < TT; ++t) group_acc[t][0] = group_acc[t][1] = _mm256_setzero_ps();
    for (Index b = 0; b < a.blocks_per_group; ++b) {
      const Index bi = g * a.blocks_per_group + b;
      const Index c_begin = b * a.block_chunks, c_end = std::min(chunks, c_begin + a.block_chunks);
      const std::int8_t* digits[TT];
      for (int t = 0; t < TT; ++t) digits[t] = digits0[t] + bi * L * block_bytes;
      for (int h0 = 0; h0 < 2; h0 += kHalves) {
        __m256i acc[TT][L][kHalves];
        for (int t = 0; t < TT; ++t)
          for (int l = 0; l < L; ++l)
            for (int h = 0; h < kHalves; ++h) acc[t][l][h] = _mm256_mullo_epi32(zero[h0 + h], _mm256_set1_epi32(neg0[t][bi * L + l]));
        const std::uint8_t* first = codes + static_cast<std::size_t>(c_begin) * chunk_bytes + 32 * h0;
        if (c_end - c_begin == kFull)
          block_products<Bits, L, TT, kHalves, kFull>(first, chunk_bytes, kFull, digits, block_bytes, acc);
        else
          block_products<Bits, L, TT, kHalves, 0>(first, chunk_bytes, c_end - c_begin, digits, block_bytes, acc);
        for (int t = 0; t < TT; ++t)
          for (int h = 0; h < kHalves; ++h)
            for (int l = 0; l < L; ++l)
              group_acc[t][h0 + h] =
                  _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[t][l][h]), _mm256_set1_ps(steps0[t][bi * L + l]), group_acc[t][h0 + h]);
      }
    }
    for (int h = 0; h < 2; ++h) {
      const __m256 scale = _mm256_load_ps(p.scales.data() + pi + 8 * h);
      for (int t = 0; t < TT; ++t) y[t][h] = _mm256_fmadd_ps(group_acc[t][h], scale, y[t][h]);
      if (!integer_zero) {
        const __m256 offset = _mm256_load_ps(p.offsets.data() + pi + 8 * h);
        for (int t = 0; t < TT; ++t)
          y[t][h] = _mm256_fmadd_ps(offset, _mm256_set1_ps(a.sums[static_cast<std::size_t>((t0 + t) * a.groups + g)]), y[t][h]);
      }
    }
  }
  for (int t = 0; t < TT; ++t)
    for (int h = 0; h < 2; ++h) _mm256_storeu_ps(y_tile + t * kRowBlock + 8 * h, y[t][h]);
}

#undef TTQ_AVX2_INLINE

#endif  // TTQ_SIMD_INTEGER_DOT == 1

}  // namespace TTQ_SIMD_NAMESPACE
}  // namespace ttq::backend::detail
