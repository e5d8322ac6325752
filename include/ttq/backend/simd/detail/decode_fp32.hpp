// Decode (skinny GEMM, T = 1..16) straight from the packed codes with fp32 activations: the
// portable kernel (any ISA xsimd supports) and the exact-activation path on every machine.
//
// Math (spec "TTQ for one linear layer", with the prescale folded into x):
//   y_r = sum_g s_rg * (sum_{j in g} q_rj x'_j) + c_rg * (sum_{j in g} x'_j),   x' = x / D
// where c = -z s for the integer formats and c = m (the group minimum) for the offset format;
// the per-group sums of x' are computed once per token, never per row. Shape: 16 rows are the
// lanes (the layout of layout.hpp), codes are extracted per operand with shifts and masks,
// converted to fp32 once and reused by every token of the tile (FMA against a broadcast x').
// It converts every code, so on AVX-512 it is compute-bound near 2x the memory time of a
// 4-bit matrix; decode_vnni.hpp is the memory-speed kernel.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>
#include <utility>
#include <vector>

#include "ttq/backend/simd/detail/isa.hpp"
#include "ttq/backend/simd/detail/layout.hpp"
#include "ttq/core/types.hpp"

namespace ttq::backend::detail {
inline namespace TTQ_SIMD_NAMESPACE {

/// Operand O (0..7) of a chunk whose plane registers are `regs` (one register = one row block
/// half on ISAs narrower than 512 bits): the 4 codes k = 4O..4O+3 of each row as bytes.
/// Shifts and masks are compile-time constants; works on xsimd uint32 batches.
template <int Bits, int O, class R>
inline R extract_operand(const R* regs) {
  if constexpr (Bits == 8) {
    return regs[O];
  } else {
    R result{};
    [&]<int... P>(std::integer_sequence<int, P...>) {
      (
          [&] {
            constexpr PlaneSpec spec = plane_spec(Bits, P);
            constexpr int per = 8 / spec.width;
            constexpr int reg = plane_offset(Bits, P) + O / per;
            constexpr int shift = spec.width * (O % per) - spec.significance;
            constexpr std::uint32_t mask = (((1u << spec.width) - 1u) << spec.significance) * 0x01010101u;
            R part = regs[reg];
            if constexpr (shift > 0) part = shift_right<shift>(part);
            if constexpr (shift < 0) part = shift_left<-shift>(part);
            part = part & R(mask);
            if constexpr (P == 0) result = part;
            else result = result | part;
          }(),
          ...);
    }(std::make_integer_sequence<int, plane_count(Bits)>{});
    return result;
  }
}

/// Byte j (0..3) of every 32-bit lane, zero-extended: the code of weight 4o + j of each row.
template <class U>
inline U byte_of_lanes(U op, int j) {
  switch (j) {
    case 0: return op & U(0xFFu);
    case 1: return shift_right<8>(op) & U(0xFFu);
    case 2: return shift_right<16>(op) & U(0xFFu);
    default: return shift_right<24>(op);
  }
}

/// Per-call fp32 activations: x' = x * (1/D) laid out in padded groups, and sum x' per group.
struct Fp32Activations {
  Index tokens = 0;
  Index padded_cols = 0;
  Index groups = 0;
  AlignedVector<float> values;  ///< [T][padded_cols]
  AlignedVector<float> sums;    ///< [T][groups]
  const float* token(Index t) const { return values.data() + t * padded_cols; }
  const float* group_sums(Index t) const { return sums.data() + t * groups; }
};

/// Builds the fp32 activations (prescale identical to the scalar backend: one fp32 multiply).
inline void prepare_fp32_activations(const SimdPrepared& p, ConstMatrixView x, std::span<const float> inverse_scale,
                                     Fp32Activations& a) {
  a.tokens = x.rows;
  a.padded_cols = p.padded_cols();
  a.groups = p.groups;
  a.values.assign(static_cast<std::size_t>(a.tokens * a.padded_cols), 0.0f);
  a.sums.assign(static_cast<std::size_t>(a.tokens * a.groups), 0.0f);
  for (Index t = 0; t < x.rows; ++t) {
    const float* row = x.row(t);
    float* out = a.values.data() + t * a.padded_cols;
    float* sums = a.sums.data() + t * a.groups;
    for (Index g = 0; g < p.groups; ++g) {
      const Index begin = g * p.group, width = std::min(p.group, p.cols - begin);
      float* dst = out + g * p.padded_group;
      Batch<float> sum(0.0f);
      Index k = 0;
      for (; k + kFloatLanes <= width; k += kFloatLanes) {
        const Batch<float> v = Batch<float>::load_unaligned(row + begin + k) * Batch<float>::load_unaligned(inverse_scale.data() + begin + k);
        v.store_unaligned(dst + k);
        sum = sum + v;
      }
      float tail = 0.0f;
      for (; k < width; ++k) {
        dst[k] = row[begin + k] * inverse_scale[static_cast<std::size_t>(begin + k)];
        tail += dst[k];
      }
      sums[g] = hsum(sum) + tail;
    }
  }
}

/// y[t][16 rows of block rb] for tokens [t0, t0 + TT): the portable fp32 kernel.
template <int Bits, int TT>
void decode_block_fp32(const SimdPrepared& p, const Fp32Activations& a, Index t0, Index rb, float* y_tile) {
  using F = Batch<float>;
  using U = Batch<std::uint32_t>;
  using I = Batch<std::int32_t>;
  constexpr int H = static_cast<int>(kRowBlock) / kFloatLanes;  // registers per row block
  const Index chunks = p.chunks_per_group();
  const std::size_t chunk_bytes = p.chunk_bytes();
  const bool integer_zero = p.integer_zero();
  F y[TT][H];
  for (int t = 0; t < TT; ++t)
    for (int h = 0; h < H; ++h) y[t][h] = F(0.0f);
  for (Index g = 0; g < p.groups; ++g) {
    const std::size_t pi = p.param_index(rb, g);
    const std::uint8_t* codes = p.block_codes(rb, g);
    // Independent accumulators (by code byte j) so FMA latency does not serialize small tiles.
    constexpr int kSplit = TT >= 4 ? 1 : 4 / TT;
    F acc[TT][H][kSplit];
    for (int t = 0; t < TT; ++t)
      for (int h = 0; h < H; ++h)
        for (int u = 0; u < kSplit; ++u) acc[t][h][u] = F(0.0f);
    for (Index c = 0; c < chunks; ++c) {
      U regs[Bits][H];
      const std::uint8_t* here = codes + static_cast<std::size_t>(c) * chunk_bytes;
      prefetch_chunk_ahead<Bits>(here);
      const auto* words = reinterpret_cast<const std::uint32_t*>(here);
      for (int m = 0; m < Bits; ++m)
        for (int h = 0; h < H; ++h) regs[m][h] = U::load_aligned(words + m * kRowBlock + h * kFloatLanes);
      const Index k0 = g * p.padded_group + c * kChunk;
      [&]<int... O>(std::integer_sequence<int, O...>) {
        (
            [&] {
              U op[H];
              for (int h = 0; h < H; ++h) {
                U plane[Bits];
                for (int m = 0; m < Bits; ++m) plane[m] = regs[m][h];
                op[h] = extract_operand<Bits, O>(plane);
              }
              for (int j = 0; j < 4; ++j) {
                F code[H];
                for (int h = 0; h < H; ++h)
                  code[h] = xsimd::batch_cast<float>(xsimd::bitwise_cast<I>(byte_of_lanes(op[h], j)));
                for (int t = 0; t < TT; ++t) {
                  const F xv(a.token(t0 + t)[k0 + 4 * O + j]);
                  for (int h = 0; h < H; ++h) acc[t][h][j % kSplit] = fmadd(code[h], xv, acc[t][h][j % kSplit]);
                }
              }
            }(),
            ...);
      }(std::make_integer_sequence<int, 8>{});
    }
    for (int h = 0; h < H; ++h) {
      const F s = F::load_aligned(p.scales.data() + pi + h * kFloatLanes);
      F c;
      if (integer_zero) {
        alignas(64) float z[kRowBlock];
        for (int r = 0; r < kFloatLanes; ++r) z[r] = static_cast<float>(p.zeros[pi + h * kFloatLanes + r]);
        c = -(F::load_aligned(z) * s);
      } else {
        c = F::load_aligned(p.offsets.data() + pi + h * kFloatLanes);
      }
      for (int t = 0; t < TT; ++t) {
        F sum = acc[t][h][0];
        for (int u = 1; u < kSplit; ++u) sum = sum + acc[t][h][u];
        y[t][h] = fmadd(sum, s, y[t][h]);
        y[t][h] = fmadd(c, F(a.group_sums(t0 + t)[g]), y[t][h]);
      }
    }
  }
  for (int t = 0; t < TT; ++t)
    for (int h = 0; h < H; ++h) y[t][h].store_unaligned(y_tile + t * kRowBlock + h * kFloatLanes);
}

}  // namespace TTQ_SIMD_NAMESPACE
}  // namespace ttq::backend::detail
