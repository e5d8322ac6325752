// Decode (skinny GEMM, T = 1..16) from packed codes at memory speed: AVX-512 VNNI integer dot
// products (VPDPBUSD: 64 u8 x s8 products per instruction) on activations held as 1, 2 or 3
// signed 8-bit "limbs".
//
// Why limbs: VPDPBUSD multiplies the u8 codes as they are (no conversion to fp32, which is what
// bounds the fp32 kernel), but wants 8-bit activations. Per block of the padded group (32
// weights for one limb, up to 128 for more), x' = x / D is scaled to an integer X with
// |X| <= 127 (256^L - 1) / 255 and written in balanced base 256: X = sum_l d_l 256^(L-1-l),
// d_l in [-128, 127]. One limb is the int8-activation path (an option); three limbs represent
// x' to 24 bits relative to the block's largest |x'| -- the rounding an fp32 sum of the same
// block commits anyway -- which is why it is the default (backend `Simd`). Per block and limb
// the integer sum_j (q_j - z) d_lj is exact in int32 (the zero point enters as the start value
// -z * sum_j d_lj, one multiply per block), is converted to fp32 once, and is scaled by the
// block's step; per group the row scale multiplies (AWQ, symmetric), and the offset format adds
// m * sum x~. Register use: TT tokens x L limbs accumulators, all 16 rows in the lanes.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>
#include <utility>
#include <vector>

#include "ttq/backend/parallel.hpp"
#include "ttq/backend/simd/detail/decode_fp32.hpp"
#include "ttq/backend/simd/detail/isa.hpp"
#include "ttq/backend/simd/detail/layout.hpp"
#include "ttq/backend/simd/detail/limbs.hpp"
#include "ttq/core/types.hpp"

namespace ttq::backend::detail {
inline namespace TTQ_SIMD_NAMESPACE {

#if TTQ_SIMD_INTEGER_DOT == 2

/// acc += per lane, sum of the 4 u8 codes of `codes` times the 4 s8 activations at `x`. The
/// activations are broadcast by the instruction's memory operand ({1to16}), which GCC 12 does
/// not fold from _mm512_set1_epi32 by itself (an extra broadcast per dot product otherwise).
inline __m512i dot_broadcast(__m512i acc, __m512i codes, const std::int8_t* x) {
#if defined(__GNUC__) && !defined(__clang__)
  asm("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(codes), "m"(*reinterpret_cast<const std::int32_t*>(x)));
  return acc;
#else
  std::int32_t four;
  std::memcpy(&four, x, 4);
  return _mm512_dpbusd_epi32(acc, codes, _mm512_set1_epi32(four));
#endif
}

/// y[t][16 rows of block rb] for tokens [t0, t0 + TT) with L activation limbs.
///
/// Operands. For b = 2, 4, 8 (one plane of width w = b) the operand in field s of a plane
/// register is used as `v & (mask << w s)`, i.e. the codes times 2^(w s): VPDPBUSD then adds
/// 2^(w s) sum q x into an accumulator kept per field, shifted down (exactly) at the end of the
/// block. One AND per operand, no shifts. Composite widths (3, 5, 6, 7) extract each operand
/// with shifts, masks and ORs (extract_operand). Accumulators are further split (by register)
/// until each tile has about 8 independent chains: VPDPBUSD's latency would serialize one chain.
template <int Bits, int L, int TT>
void decode_block_vnni(const SimdPrepared& p, const LimbActivations& a, Index t0, Index rb, float* y_tile) {
  constexpr bool kNative = Bits == 2 || Bits == 4 || Bits == 8;
  constexpr int kFields = kNative ? 8 / Bits : 1;  // accumulator per field (bit weight 2^(Bits*s))
  // Chains within a block: one block of one limb is a single chunk, and consecutive blocks are
  // independent, so only multi-chunk blocks with few chains need splitting.
  constexpr int kChains = TT * L * kFields;
  constexpr int kSplit = (L == 1 || kChains >= 4) ? 1 : 2;
  using U = Batch<std::uint32_t>;
  const Index chunks = p.chunks_per_group();
  const std::size_t chunk_bytes = p.chunk_bytes();
  const bool integer_zero = p.integer_zero();
  const Index block_bytes = a.block_bytes();
  __m512 y[TT];
  for (int t = 0; t < TT; ++t) y[t] = _mm512_setzero_ps();
  for (Index g = 0; g < p.groups; ++g) {
    const std::size_t pi = p.param_index(rb, g);
    const std::uint8_t* codes = p.block_codes(rb, g);
    const __m512i zero = integer_zero ? _mm512_cvtepu8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(p.zeros.data() + pi)))
                                      : _mm512_setzero_si512();
    __m512 group_acc[TT];
    for (int t = 0; t < TT; ++t) group_acc[t] = _mm512_setzero_ps();
    for (Index b = 0; b < a.blocks_per_group; ++b) {
      const Index bi = g * a.blocks_per_group + b;
      const Index c_begin = b * a.block_chunks, c_end = std::min(chunks, c_begin + a.block_chunks);
      __m512i acc[TT][L][kFields][kSplit];
      const std::int8_t* digits[TT];
      for (int t = 0; t < TT; ++t) {
        const std::int32_t* neg = a.block_neg_sums(t0 + t, bi);
        for (int l = 0; l < L; ++l)
          for (int f = 0; f < kFields; ++f)
            for (int u = 0; u < kSplit; ++u)
              acc[t][l][f][u] = (f == 0 && u == 0) ? _mm512_mullo_epi32(zero, _mm512_set1_epi32(neg[l])) : _mm512_setzero_si512();
        digits[t] = a.block_digits(t0 + t, bi);
      }
      auto accumulate = [&](int o, int field, int slot, __m512i op, Index offset) {
        for (int t = 0; t < TT; ++t)
          for (int l = 0; l < L; ++l) {
            acc[t][l][field][slot] = dot_broadcast(acc[t][l][field][slot], op, digits[t] + l * block_bytes + offset + 4 * o);
          }
      };
      for (Index c = c_begin; c < c_end; ++c) {
        const std::uint8_t* chunk = codes + static_cast<std::size_t>(c) * chunk_bytes;
        prefetch_chunk_ahead<Bits>(chunk);
        const Index offset = (c - c_begin) * kChunk;
        if constexpr (kNative) {
#pragma GCC unroll 8
          for (int m = 0; m < Bits; ++m) {
            const __m512i v = _mm512_load_si512(chunk + m * 64);
#pragma GCC unroll 4
            for (int f = 0; f < kFields; ++f) {
              const std::uint32_t mask = (((1u << Bits) - 1u) << (Bits * f)) * 0x01010101u;
              const __m512i op = Bits == 8 ? v : _mm512_and_si512(v, _mm512_set1_epi32(static_cast<int>(mask)));
              accumulate(m * kFields + f, f, m % kSplit, op, offset);
            }
          }
        } else {
          U regs[Bits];
          for (int m = 0; m < Bits; ++m) regs[m] = U(_mm512_load_si512(chunk + m * 64));
          [&]<int... O>(std::integer_sequence<int, O...>) {
            (accumulate(O, 0, O % kSplit, extract_operand<Bits, O>(regs), offset), ...);
          }(std::make_integer_sequence<int, 8>{});
        }
      }
      for (int t = 0; t < TT; ++t) {
        const float* steps = a.block_steps(t0 + t, bi);
        for (int l = 0; l < L; ++l) {
          __m512i sum = _mm512_setzero_si512();
          for (int f = 0; f < kFields; ++f) {
            __m512i field = acc[t][l][f][0];
            for (int u = 1; u < kSplit; ++u) field = _mm512_add_epi32(field, acc[t][l][f][u]);
            // Exact: every product in field f is a multiple of 2^(Bits f).
            sum = _mm512_add_epi32(sum, kNative ? _mm512_srai_epi32(field, Bits * f) : field);
          }
          group_acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_set1_ps(steps[l]), group_acc[t]);
        }
      }
    }
    const __m512 scale = _mm512_load_ps(p.scales.data() + pi);
    for (int t = 0; t < TT; ++t) y[t] = _mm512_fmadd_ps(group_acc[t], scale, y[t]);
    if (!integer_zero) {
      const __m512 offset = _mm512_load_ps(p.offsets.data() + pi);
      for (int t = 0; t < TT; ++t)
        y[t] = _mm512_fmadd_ps(offset, _mm512_set1_ps(a.sums[static_cast<std::size_t>((t0 + t) * a.groups + g)]), y[t]);
    }
  }
  for (int t = 0; t < TT; ++t) _mm512_storeu_ps(y_tile + t * kRowBlock, y[t]);
}

#endif  // TTQ_SIMD_INTEGER_DOT == 2

}  // namespace TTQ_SIMD_NAMESPACE
}  // namespace ttq::backend::detail
