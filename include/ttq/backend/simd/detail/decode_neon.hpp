// Decode (skinny GEMM, T = 1..16) from packed codes with the AArch64 dot-product extension
// (SDOT) on the activation limbs of limbs.hpp: the AArch64 port of decode_vnni.hpp.
//
// SDOT multiplies 16 signed bytes by 16 signed bytes and adds each group of 4 products into one
// int32 lane: on a 128-bit quarter of a plane register (4 rows x 4 weights, the layout of
// layout.hpp) against the 4 activation digits of the operand in every lane, that is the
// quarter's 4 rows of VPDPBUSD, and SDOT's indexed form takes the 4 digits from one 32-bit lane
// of a register holding 16, so the digits need no broadcast. Codes must be signed bytes here:
// every width b <= 7 is extracted (decode_fp32.hpp's extract_operand) as a field below
// 2^b <= 128; 8-bit codes go as q - 128 (an XOR of the sign bit), the 128 returned through the
// start value:
// sum_j (q_j - z) d_j = sum_j (q_j - 128) d_j + (z - 128)(-sum_j d_j). One SDOT per 4 weights,
// 4 rows and limb, at every width.
//
// Result: per block and limb the same exact int32 sum sum_j (q_j - z) d_lj as the VNNI and AVX2
// kernels, then the same fp32 operations in the same order (convert, fused multiply-add by the
// block's step, per group by the row scale, plus the offset term), so the output equals theirs
// bit for bit. The 16 rows of a block are 4 quarter registers; a tile of TT tokens holds
// TT x L x 4 int32 accumulators, and TT L <= 4 keeps them and the digits in the 32 registers.
#pragma once

#include <cstdint>
#include <cstring>
#include <utility>

#include "ttq/backend/simd/detail/decode_fp32.hpp"
#include "ttq/backend/simd/detail/isa.hpp"
#include "ttq/backend/simd/detail/layout.hpp"
#include "ttq/backend/simd/detail/limbs.hpp"
#include "ttq/core/types.hpp"

namespace ttq::backend::detail {
inline namespace TTQ_SIMD_NAMESPACE {

#if TTQ_SIMD_INTEGER_DOT == 3

/// Operand O (0..7) of one quarter (4 rows) of a chunk whose plane quarters are `regs`: the 4
/// codes k = 4O..4O+3 of each row, one signed byte each. The fields come from the fp32
/// kernel's extract_operand (each below 2^Bits <= 128 for Bits <= 7); 8-bit codes minus 128.
template <int Bits, int O>
inline int8x16_t operand_neon(const Batch<std::uint32_t>* regs) {
  const uint8x16_t op = vreinterpretq_u8_u32(extract_operand<Bits, O>(regs));
  return vreinterpretq_s8_u8(Bits == 8 ? veorq_u8(op, vdupq_n_u8(0x80)) : op);
}

/// y[t][16 rows of block rb] for tokens [t0, t0 + TT) with L activation limbs (see the file
/// comment).
template <int Bits, int L, int TT>
void decode_block_neon(const SimdPrepared& p, const LimbActivations& a, Index t0, Index rb, float* y_tile) {
  static_assert(TT * L <= 4, "decode_block_neon: TT x L x 4 accumulators must fit the registers");
  constexpr int kQuarters = 4;  // 4 rows per 128-bit register
  const Index chunks = p.chunks_per_group();
  const std::size_t chunk_bytes = p.chunk_bytes();
  const bool integer_zero = p.integer_zero();
  const Index block_bytes = a.block_bytes();
  float32x4_t y[TT][kQuarters];
  for (int t = 0; t < TT; ++t)
    for (int q = 0; q < kQuarters; ++q) y[t][q] = vdupq_n_f32(0.0f);
  for (Index g = 0; g < p.groups; ++g) {
    const std::size_t pi = p.param_index(rb, g);
    const std::uint8_t* codes = p.block_codes(rb, g);
    // The zero point of the exact sum, less 128 for 8-bit codes (see the file comment); the
    // offset format has none (0).
    int32x4_t zero[kQuarters];
    {
      const uint8x16_t z8 = integer_zero ? vld1q_u8(p.zeros.data() + pi) : vdupq_n_u8(0);
      const uint16x8_t lo = vmovl_u8(vget_low_u8(z8)), hi = vmovl_high_u8(z8);
      zero[0] = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(lo)));
      zero[1] = vreinterpretq_s32_u32(vmovl_high_u16(lo));
      zero[2] = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(hi)));
      zero[3] = vreinterpretq_s32_u32(vmovl_high_u16(hi));
      if constexpr (Bits == 8)
        for (int q = 0; q < kQuarters; ++q) zero[q] = vsubq_s32(zero[q], vdupq_n_s32(128));
    }
    float32x4_t group_acc[TT][kQuarters];
    for (int t = 0; t < TT; ++t)
      for (int q = 0; q < kQuarters; ++q) group_acc[t][q] = vdupq_n_f32(0.0f);
    for (Index b = 0; b < a.blocks_per_group; ++b) {
      const Index bi = g * a.blocks_per_group + b;
      const Index c_begin = b * a.block_chunks, c_end = std::min(chunks, c_begin + a.block_chunks);
      int32x4_t acc[TT][L][kQuarters];
      const std::int8_t* digits[TT];
      for (int t = 0; t < TT; ++t) {
        const std::int32_t* neg = a.block_neg_sums(t0 + t, bi);
        for (int l = 0; l < L; ++l)
          for (int q = 0; q < kQuarters; ++q) acc[t][l][q] = vmulq_s32(zero[q], vdupq_n_s32(neg[l]));
        digits[t] = a.block_digits(t0 + t, bi);
      }
      for (Index c = c_begin; c < c_end; ++c) {
        const std::uint8_t* chunk = codes + static_cast<std::size_t>(c) * chunk_bytes;
        const Index offset = (c - c_begin) * kChunk;
        // The chunk's 32 digits per token and limb: operands 0-3 in x[..][0], 4-7 in x[..][1].
        int8x16_t x[TT][L][2];
        for (int t = 0; t < TT; ++t)
          for (int l = 0; l < L; ++l)
            for (int h = 0; h < 2; ++h) x[t][l][h] = vld1q_s8(digits[t] + l * block_bytes + offset + 16 * h);
        for (int q = 0; q < kQuarters; ++q) {
          Batch<std::uint32_t> regs[Bits];
          for (int m = 0; m < Bits; ++m)
            regs[m] = Batch<std::uint32_t>::load_unaligned(reinterpret_cast<const std::uint32_t*>(chunk + m * 64 + 16 * q));
          [&]<int... O>(std::integer_sequence<int, O...>) {
            (
                [&] {
                  const int8x16_t op = operand_neon<Bits, O>(regs);
                  for (int t = 0; t < TT; ++t)
                    for (int l = 0; l < L; ++l) acc[t][l][q] = vdotq_laneq_s32(acc[t][l][q], op, x[t][l][O / 4], O % 4);
                }(),
                ...);
          }(std::make_integer_sequence<int, 8>{});
        }
      }
      for (int t = 0; t < TT; ++t) {
        const float* steps = a.block_steps(t0 + t, bi);
        for (int l = 0; l < L; ++l)
          for (int q = 0; q < kQuarters; ++q)
            group_acc[t][q] = vfmaq_f32(group_acc[t][q], vcvtq_f32_s32(acc[t][l][q]), vdupq_n_f32(steps[l]));
      }
    }
    for (int q = 0; q < kQuarters; ++q) {
      const float32x4_t scale = vld1q_f32(p.scales.data() + pi + 4 * q);
      for (int t = 0; t < TT; ++t) y[t][q] = vfmaq_f32(y[t][q], group_acc[t][q], scale);
      if (!integer_zero) {
        const float32x4_t offset = vld1q_f32(p.offsets.data() + pi + 4 * q);
        for (int t = 0; t < TT; ++t)
          y[t][q] = vfmaq_f32(y[t][q], offset, vdupq_n_f32(a.sums[static_cast<std::size_t>((t0 + t) * a.groups + g)]));
      }
    }
  }
  for (int t = 0; t < TT; ++t)
    for (int q = 0; q < kQuarters; ++q) vst1q_f32(y_tile + t * kRowBlock + 4 * q, y[t][q]);
}

#endif  // TTQ_SIMD_INTEGER_DOT == 3

}  // namespace TTQ_SIMD_NAMESPACE
}  // namespace ttq::backend::detail
