// Prefill (T up to thousands of tokens): a blocked fp32 GEMM whose weight panels are
// dequantized from the packed codes while they are packed, so quantized weights cost no more
// than fp32 ones (the packing pass every GEMM makes anyway does the decoding).
//
// Shape (GotoBLAS): the activations X' = X / D are packed once per call into panels of MR tokens
// x KC inputs (prescale and group padding applied there); each task owns a range of 16-row
// blocks of W and, per block of KC inputs, dequantizes NC rows into an L2-resident panel
// ([row block][KC][16], exactly the scalar decode (q - z) * s in fp32), then runs an MR x
// (NRB * 16) register-tile kernel: one broadcast activation times 16 weights per FMA. The same
// machinery multiplies by plain fp32 matrices (the low-rank factors). Accumulation is fp32 with
// FMA, in a different order from Eigen's: outputs match the scalar backend to ~1e-6 relative.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>
#include <utility>
#include <vector>

#include "ttq/backend/parallel.hpp"
#include "ttq/backend/simd/detail/decode_fp32.hpp"
#include "ttq/backend/simd/detail/isa.hpp"
#include "ttq/backend/simd/detail/layout.hpp"
#include "ttq/core/types.hpp"

namespace ttq::backend::detail {
inline namespace TTQ_SIMD_NAMESPACE {

/// Register tile: MR tokens x NRB row blocks (16 features each). Sized so the accumulators
/// (MR * NRB * 16 / lanes registers) take about three quarters of the register file.
struct GemmShape {
#if XSIMD_WITH_AVX512F
  static constexpr int kMr = 12, kNrb = 2;  // 24 of 32 zmm
#elif XSIMD_WITH_AVX
  static constexpr int kMr = 6, kNrb = 1;   // 12 of 16 ymm
#elif XSIMD_WITH_NEON64
  static constexpr int kMr = 6, kNrb = 1;   // 24 of 32 q registers
#else
  static constexpr int kMr = 3, kNrb = 1;   // 12 of 16 xmm / q registers
#endif
  static constexpr Index kKc = 256;  ///< inputs per panel (a multiple of the 32-wide chunk)
  static constexpr Index kNcBlocks = 8;  ///< row blocks per weight panel (128 rows: 128 KiB at KC = 256)
};

/// Activations packed for the GEMM: [K / KC][ceil(T / MR)][KC][MR], zero where padded.
struct PackedActivations {
  Index tokens = 0, depth = 0, token_blocks = 0, k_blocks = 0;
  AlignedVector<float> data;
  const float* panel(Index kb, Index tb) const {
    return data.data() + ((kb * token_blocks + tb) * GemmShape::kKc) * GemmShape::kMr;
  }
  float* panel(Index kb, Index tb) { return data.data() + ((kb * token_blocks + tb) * GemmShape::kKc) * GemmShape::kMr; }
};

/// Packs X [T, cols] into panels. `column_of(k)` maps padded input k to a real column (or -1
/// for padding); `inverse_scale` (empty: none) prescales by one fp32 multiply per element.
template <class ColumnOf>
void pack_activations(ConstMatrixView x, Index depth, ColumnOf column_of, std::span<const float> inverse_scale,
                      PackedActivations& a, const Executor& executor) {
  constexpr int kMr = GemmShape::kMr;
  constexpr Index kKc = GemmShape::kKc;
  a.tokens = x.rows;
  a.depth = depth;
  a.token_blocks = (x.rows + kMr - 1) / kMr;
  a.k_blocks = (depth + kKc - 1) / kKc;
  a.data.resize(static_cast<std::size_t>(a.k_blocks * a.token_blocks * kKc * kMr));
  parallel_for(executor, a.k_blocks * a.token_blocks, 4, [&](Index begin, Index end) {
    for (Index i = begin; i < end; ++i) {
      const Index kb = i / a.token_blocks, tb = i % a.token_blocks;
      float* out = a.panel(kb, tb);
      for (Index kk = 0; kk < kKc; ++kk) {
        const Index k = kb * kKc + kk;
        const Index col = k < depth ? column_of(k) : -1;
        for (int m = 0; m < kMr; ++m) {
          const Index t = tb * kMr + m;
          float v = 0.0f;
          if (col >= 0 && t < x.rows) {
            v = x(t, col);
            if (!inverse_scale.empty()) v = v * inverse_scale[static_cast<std::size_t>(col)];
          }
          out[kk * kMr + m] = v;
        }
      }
    }
  });
}

/// C[MR x NRB*16] (+)= A panel [kc][MR] x B panels [NRB][kc][16]; `b_stride` separates the
/// row-block panels. Writes to `c` with leading dimension `ldc` (a full tile).
template <int NRB>
inline void gemm_micro(Index kc, const float* a, const float* b, Index b_stride, float* c, Index ldc, bool accumulate) {
  using F = Batch<float>;
  constexpr int kMr = GemmShape::kMr;
  constexpr int H = static_cast<int>(kRowBlock) / kFloatLanes;
  // Every loop but k is unrolled so that the accumulators live in registers.
  F acc[kMr][NRB][H];
#pragma GCC unroll 16
  for (int i = 0; i < kMr; ++i)
#pragma GCC unroll 4
    for (int n = 0; n < NRB; ++n)
#pragma GCC unroll 4
      for (int h = 0; h < H; ++h) acc[i][n][h] = F(0.0f);
  for (Index k = 0; k < kc; ++k) {
    F bv[NRB][H];
#pragma GCC unroll 4
    for (int n = 0; n < NRB; ++n)
#pragma GCC unroll 4
      for (int h = 0; h < H; ++h) bv[n][h] = F::load_aligned(b + n * b_stride + k * kRowBlock + h * kFloatLanes);
#pragma GCC unroll 16
    for (int i = 0; i < kMr; ++i) {
      const F av(a[k * kMr + i]);
#pragma GCC unroll 4
      for (int n = 0; n < NRB; ++n)
#pragma GCC unroll 4
        for (int h = 0; h < H; ++h) acc[i][n][h] = fmadd(av, bv[n][h], acc[i][n][h]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < kMr; ++i)
#pragma GCC unroll 4
    for (int n = 0; n < NRB; ++n)
#pragma GCC unroll 4
      for (int h = 0; h < H; ++h) {
        float* dst = c + i * ldc + n * kRowBlock + h * kFloatLanes;
        F v = acc[i][n][h];
        if (accumulate) v = v + F::load_unaligned(dst);
        v.store_unaligned(dst);
      }
}

/// Dequantizes row block rb, padded inputs [k0, k0 + kc) (whole chunks) into panel[kc][16].
inline void dequantize_panel(const SimdPrepared& p, Index rb, Index k0, Index kc, float* panel) {
  using F = Batch<float>;
  using U = Batch<std::uint32_t>;
  using I = Batch<std::int32_t>;
  constexpr int H = static_cast<int>(kRowBlock) / kFloatLanes;
  const Index chunks = p.chunks_per_group();
  const std::size_t chunk_bytes = p.chunk_bytes();
  for (Index kk = 0; kk < kc; kk += kChunk) {
    const Index chunk = (k0 + kk) / kChunk;
    const Index g = chunk / chunks, c = chunk % chunks;
    const std::size_t pi = p.param_index(rb, g);
    F scale[H], shift[H];
    for (int h = 0; h < H; ++h) {
      scale[h] = F::load_aligned(p.scales.data() + pi + h * kFloatLanes);
      if (p.integer_zero()) {
        alignas(64) float z[kRowBlock];
        for (int r = 0; r < kFloatLanes; ++r) z[r] = static_cast<float>(p.zeros[pi + h * kFloatLanes + r]);
        shift[h] = F::load_aligned(z);
      } else {
        shift[h] = F::load_aligned(p.offsets.data() + pi + h * kFloatLanes);
      }
    }
    const auto* words = reinterpret_cast<const std::uint32_t*>(p.block_codes(rb, g) + static_cast<std::size_t>(c) * chunk_bytes);
    auto decode_operands = [&]<int Bits>() {
      U regs[Bits][H];
      for (int m = 0; m < Bits; ++m)
        for (int h = 0; h < H; ++h) regs[m][h] = U::load_aligned(words + m * kRowBlock + h * kFloatLanes);
      [&]<int... O>(std::integer_sequence<int, O...>) {
        (
            [&] {
              for (int h = 0; h < H; ++h) {
                U plane[Bits];
                for (int m = 0; m < Bits; ++m) plane[m] = regs[m][h];
                const U op = extract_operand<Bits, O>(plane);
                for (int j = 0; j < 4; ++j) {
                  const F code = xsimd::batch_cast<float>(xsimd::bitwise_cast<I>(byte_of_lanes(op, j)));
                  // Exactly the scalar decode: (q - z) * s, or q * s + m (no FMA).
                  const F w = p.integer_zero() ? (code - shift[h]) * scale[h] : code * scale[h] + shift[h];
                  w.store_aligned(panel + (kk + 4 * O + j) * kRowBlock + h * kFloatLanes);
                }
              }
            }(),
            ...);
      }(std::make_integer_sequence<int, 8>{});
    };
    switch (p.bits) {
      case 2: decode_operands.template operator()<2>(); break;
      case 3: decode_operands.template operator()<3>(); break;
      case 4: decode_operands.template operator()<4>(); break;
      case 5: decode_operands.template operator()<5>(); break;
      case 6: decode_operands.template operator()<6>(); break;
      case 7: decode_operands.template operator()<7>(); break;
      default: decode_operands.template operator()<8>(); break;
    }
  }
}

/// Copies rows [rb*16, rb*16 + 16) of a dense fp32 matrix m [N, K] (K contiguous), inputs
/// [k0, k0 + kc), transposed into panel[kc][16] (zero past N or K).
inline void copy_panel(ConstMatrixView m, Index rb, Index k0, Index kc, float* panel) {
  for (Index kk = 0; kk < kc; ++kk)
    for (Index r = 0; r < kRowBlock; ++r) {
      const Index row = rb * kRowBlock + r, k = k0 + kk;
      panel[kk * kRowBlock + r] = (row < m.rows && k < m.cols) ? m(row, k) : 0.0f;
    }
}

/// C [T, N] (+)= packed activations x B^T, where B has `row_blocks` blocks of 16 rows (N rows
/// valid) and `fill_panel(rb, k0, kc, panel)` writes the [kc][16] panel of a block.
template <class FillPanel>
void gemm(const PackedActivations& a, Index row_blocks, Index n_valid, FillPanel fill_panel, MatrixView<float> c,
          bool accumulate, const Executor& executor) {
  constexpr int kMr = GemmShape::kMr;
  constexpr int kNrb = GemmShape::kNrb;
  constexpr Index kKc = GemmShape::kKc;
  constexpr Index kNc = GemmShape::kNcBlocks;
  const Index nc_blocks = (row_blocks + kNc - 1) / kNc;
  parallel_for(executor, nc_blocks, 1, [&](Index nb_begin, Index nb_end) {
    AlignedVector<float> panel(static_cast<std::size_t>(kNc * kKc * kRowBlock));
    alignas(64) float tile[kMr * kNrb * kRowBlock];
    for (Index nb = nb_begin; nb < nb_end; ++nb) {
      const Index rb0 = nb * kNc, rbs = std::min(kNc, row_blocks - rb0);
      for (Index kb = 0; kb < a.k_blocks; ++kb) {
        const Index k0 = kb * kKc, kc = std::min(kKc, a.depth - k0);
        for (Index i = 0; i < rbs; ++i) fill_panel(rb0 + i, k0, kc, panel.data() + i * kKc * kRowBlock);
        const bool acc = accumulate || kb > 0;
        for (Index tb = 0; tb < a.token_blocks; ++tb) {
          const float* ap = a.panel(kb, tb);
          const Index t0 = tb * kMr, tn = std::min<Index>(kMr, a.tokens - t0);
          for (Index i = 0; i < rbs; i += kNrb) {
            const Index n0 = (rb0 + i) * kRowBlock;
            const int nrb = static_cast<int>(std::min<Index>(kNrb, rbs - i));
            const Index nn = std::min<Index>(nrb * kRowBlock, n_valid - n0);
            const float* bp = panel.data() + i * kKc * kRowBlock;
            const bool full = tn == kMr && nn == kNrb * kRowBlock;
            float* dst = full ? c.row(t0) + n0 : tile;
            const Index ldc = full ? c.row_stride : kNrb * kRowBlock;
            if (!full) {  // partial tile: work on a copy
              std::fill(std::begin(tile), std::end(tile), 0.0f);
              if (acc)
                for (Index t = 0; t < tn; ++t) std::copy_n(c.row(t0 + t) + n0, nn, tile + t * ldc);
            }
            if (nrb == kNrb) gemm_micro<kNrb>(kc, ap, bp, kKc * kRowBlock, dst, ldc, acc);
            else gemm_micro<1>(kc, ap, bp, kKc * kRowBlock, dst, ldc, acc);
            if (!full)
              for (Index t = 0; t < tn; ++t) std::copy_n(tile + t * ldc, nn, c.row(t0 + t) + n0);
          }
        }
      }
    }
  }, 2);
}

}  // namespace TTQ_SIMD_NAMESPACE
}  // namespace ttq::backend::detail
