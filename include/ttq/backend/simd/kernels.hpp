// The SIMD backend: tag types and the kernels of backend/contract.hpp (quantize_into, quantize,
// accumulate_channel_stats, prepare, forward), with the contracts stated there; tested against
// the reference (quant/reference.hpp, stats/channel_stats.hpp, backend/scalar/kernels.hpp).
// backend::Simd is backend::Default (backend/default.hpp).
//
// What runs where (one choice per call, made here, never in inner loops):
//   quantize      fp32 or bf16 W -> packed codes, codes identical to the oracle (NF4: oracle);
//                 with channel weights also the adaptive exponent's error E, from the same pass
//   stats         p = 1, 2, inf vectorized, bit-identical sums; other p: the oracle's loops
//   prepare       repack into 16-row blocks of bit planes (detail/layout.hpp)
//   forward T<=16 decode from packed codes: integer dot products on 1-3 activation limbs where
//                 AVX-512 VNNI (detail/decode_vnni.hpp) or AVX2 (detail/decode_avx2.hpp)
//                 exists, else fp32 FMA (decode_fp32.hpp)
//   forward T>16  GEMM with weights dequantized while packing (detail/gemm.hpp)
// Work is split into tasks run by the process-wide Executor (backend/parallel.hpp). The ISA is
// the one the including translation unit is compiled for (detail/isa.hpp); without AVX-512 the
// same tags run the portable xsimd kernels (SSE2 at least on x86-64, NEON on ARM).
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "ttq/backend/contract.hpp"
#include "ttq/backend/parallel.hpp"
#include "ttq/backend/scalar/kernels.hpp"  // reference_forward, the dense (NF4) fallback
#include "ttq/backend/simd/detail/decode_avx2.hpp"
#include "ttq/backend/simd/detail/decode_fp32.hpp"
#include "ttq/backend/simd/detail/decode_neon.hpp"
#include "ttq/backend/simd/detail/decode_vnni.hpp"
#include "ttq/backend/simd/detail/gemm.hpp"
#include "ttq/backend/simd/detail/isa.hpp"
#include "ttq/backend/simd/detail/layout.hpp"
#include "ttq/backend/simd/detail/limbs.hpp"
#include "ttq/backend/simd/detail/quantize.hpp"
#include "ttq/backend/simd/detail/stats.hpp"
#include "ttq/core/half.hpp"
#include "ttq/core/types.hpp"
#include "ttq/quant/quant_config.hpp"
#include "ttq/quant/quantized_matrix.hpp"

namespace ttq::backend::detail {
inline namespace TTQ_SIMD_NAMESPACE {
/// Whether decode of `tokens` tokens of `bits`-bit codes with `limbs` activation limbs takes
/// the integer kernel here; else the fp32 kernel, which is never less precise. AVX-512 VNNI
/// and AArch64 SDOT: always (one dot product per 4 weights, 4 or 16 rows and limb, against the
/// fp32 kernel's conversion and multiply-add per weight; on AArch64 not yet measured on
/// hardware). AVX2: where it is faster (docs/performance.md, "Integer decode per ISA"): it spends a
/// VPMADDUBSW per limb and token, where the fp32 kernel shares its code conversion between
/// tokens, so three limbs serve one token only, and 8-bit codes (two nibble products per
/// limb) one limb only.
constexpr bool integer_decode_policy(int limbs, int bits, Index tokens) {
#if TTQ_SIMD_INTEGER_DOT == 2 || TTQ_SIMD_INTEGER_DOT == 3
  (void)limbs, (void)bits, (void)tokens;
  return true;
#elif TTQ_SIMD_INTEGER_DOT == 1
  if (bits == 8) return limbs == 1;
  return limbs < 3 || tokens == 1;
#else
  (void)limbs, (void)bits, (void)tokens;
  return false;
#endif
}
}  // namespace TTQ_SIMD_NAMESPACE
}  // namespace ttq::backend::detail

namespace ttq::backend {
inline namespace TTQ_SIMD_NAMESPACE {

/// The SIMD backend. `ActivationBits` is the precision decode may give the activations x' = x/D
/// (prefill, quantization and statistics do not depend on it):
///   32  fp32 FMA on converted codes (exact activations; the portable kernel)
///   24  three int8 limbs per activation, 24 bits relative to each 128-block's largest |x'|: the
///       rounding error of an fp32 sum of that block (default, `Simd`)
///   16  two limbs; 8: one limb per 32-block (the int8-activation path, an option)
/// Limbs need AVX-512 VNNI, AVX2 or AArch64's dot-product extension (same results on all);
/// elsewhere every variant runs the fp32 kernel (never less precise).
template <int ActivationBits>
struct SimdBackend {
  static_assert(ActivationBits == 8 || ActivationBits == 16 || ActivationBits == 24 || ActivationBits == 32,
                "SimdBackend: ActivationBits must be 8, 16, 24 (integer limbs) or 32 (fp32)");
  static constexpr int activation_bits = ActivationBits;
  static constexpr const char* name = ActivationBits == 24   ? "simd"
                                      : ActivationBits == 32 ? "simd-fp32"
                                      : ActivationBits == 16 ? "simd-int16"
                                                             : "simd-int8";
  /// The instruction set this translation unit compiled the kernels for (e.g. "avx512bw+vnni").
  static constexpr const char* isa = detail::kIsaName;
  /// Whether decode has integer kernels here (else it always runs the fp32 kernel).
  static constexpr bool integer_decode = ActivationBits < 32 && detail::kHasIntegerDot;
  /// Whether a decode call of `tokens` tokens on `bits`-bit codes runs them (per call, see
  /// detail::integer_decode_policy); the error bound follows the kernel that runs.
  static constexpr bool integer_decode_for(int bits, Index tokens) {
    return integer_decode && detail::integer_decode_policy(ActivationBits / 8, bits, tokens);
  }
};

using Simd = SimdBackend<24>;      ///< default: fp32-faithful decode at memory speed
using SimdFp32 = SimdBackend<32>;  ///< fp32 activations everywhere
using SimdInt16 = SimdBackend<16>;
using SimdInt8 = SimdBackend<8>;   ///< int8 activations in decode (fastest, least precise)

/// Largest token count that takes the decode kernels; larger calls take the GEMM.
inline constexpr Index kSimdDecodeMaxTokens = 16;

/// quantize_into for fp32 weights: identical codes to the reference; E (when asked) as stated in
/// detail/quantize.hpp (fp32 per group, in the scaled domain).
template <int A>
double quantize_into(SimdBackend<A>, const QuantConfig& config, ConstMatrixView w, std::span<const float> col_scale,
                     std::span<const float> group_clip, std::span<const double> channel_weight, QuantizedMatrix& out) {
  return detail::quantize_matrix_into<float>(config, w, col_scale, group_clip, channel_weight, out, *current_executor());
}

/// quantize_into for bf16 weights [rows, cols] (any row stride): the codes of the reference on
/// the exactly widened fp32 matrix, without materialising it.
template <int A>
double quantize_into(SimdBackend<A>, const QuantConfig& config, MatrixView<const BFloat16> w, std::span<const float> col_scale,
                     std::span<const float> group_clip, std::span<const double> channel_weight, QuantizedMatrix& out) {
  return detail::quantize_matrix_into<BFloat16>(config, w, col_scale, group_clip, channel_weight, out, *current_executor());
}

template <int A>
QuantizedMatrix quantize(SimdBackend<A> tag, const QuantConfig& config, ConstMatrixView w, std::span<const float> col_scale,
                         std::span<const float> group_clip) {
  QuantizedMatrix q;
  quantize_into(tag, config, w, col_scale, group_clip, {}, q);
  return q;
}

template <int A>
QuantizedMatrix quantize(SimdBackend<A> tag, const QuantConfig& config, MatrixView<const BFloat16> w,
                         std::span<const float> col_scale, std::span<const float> group_clip) {
  QuantizedMatrix q;
  quantize_into(tag, config, w, col_scale, group_clip, {}, q);
  return q;
}

/// accumulate_channel_stats: same contract, and bit-identical sums for P = 1, 2, InfNorm.
template <int P, int A>
void accumulate_channel_stats(SimdBackend<A>, ConstMatrixView x, double p, std::span<double> pnorm, std::span<double> square) {
  detail::channel_stats<P>(x, p, pnorm, square, *current_executor());
}

/// prepare: the decode-ready layout of `q` (detail/layout.hpp).
template <int A>
SimdPrepared prepare(SimdBackend<A>, const QuantizedMatrix& q) {
  return detail::prepare_matrix(q, *current_executor());
}

}  // namespace TTQ_SIMD_NAMESPACE
}  // namespace ttq::backend

namespace ttq::backend::detail {
inline namespace TTQ_SIMD_NAMESPACE {

/// Y += (X A^T) B^T for T <= 16 tokens: dot products, parallel over the rank, then per output
/// row in the decode epilogue (see forward_decode).
inline void lowrank_projection(ConstMatrixView x, ConstMatrixView a, std::vector<float>& projected, const Executor& executor) {
  const Index rank = a.rows;
  projected.assign(static_cast<std::size_t>(x.rows * rank), 0.0f);
  parallel_for(executor, rank, 4, [&](Index k_begin, Index k_end) {
    for (Index k = k_begin; k < k_end; ++k)
      for (Index t = 0; t < x.rows; ++t) {
        Batch<float> sum(0.0f);
        Index j = 0;
        for (; j + kFloatLanes <= x.cols; j += kFloatLanes)
          sum = fmadd(Batch<float>::load_unaligned(x.row(t) + j), Batch<float>::load_unaligned(a.row(k) + j), sum);
        float tail = 0.0f;
        for (; j < x.cols; ++j) tail += x(t, j) * a(k, j);
        projected[static_cast<std::size_t>(t * rank + k)] = hsum(sum) + tail;
      }
  });
}

template <class Activations>
using DecodeKernel = void (*)(const SimdPrepared&, const Activations&, Index, Index, float*);

/// Token tiles for T tokens: greedy over the allowed tile sizes (largest first).
struct TilePlan {
  Index first[kSimdDecodeMaxTokens];
  int size[kSimdDecodeMaxTokens];
  int count = 0;
};
inline TilePlan plan_tiles(Index tokens, std::span<const int> sizes) {
  TilePlan plan;
  Index t = 0;
  while (t < tokens) {
    for (int s : sizes)
      if (t + s <= tokens) {
        plan.first[plan.count] = t;
        plan.size[plan.count++] = s;
        t += s;
        break;
      }
  }
  return plan;
}

/// Picks kernel<Bits, TT> for runtime bits and tile size (the per-call dispatch).
template <class Activations, template <int, int> class Kernel, int... Sizes>
DecodeKernel<Activations> select_kernel(int bits, int tile) {
  DecodeKernel<Activations> k = nullptr;
  auto for_bits = [&]<int Bits>() { ((tile == Sizes ? (k = &Kernel<Bits, Sizes>::run, 0) : 0), ...); };
  switch (bits) {
    case 2: for_bits.template operator()<2>(); break;
    case 3: for_bits.template operator()<3>(); break;
    case 4: for_bits.template operator()<4>(); break;
    case 5: for_bits.template operator()<5>(); break;
    case 6: for_bits.template operator()<6>(); break;
    case 7: for_bits.template operator()<7>(); break;
    default: for_bits.template operator()<8>(); break;
  }
  return k;
}

/// The token tile sizes a decode kernel is instantiated for, largest first.
template <int... Sizes>
struct TileSizes {
  static constexpr int list[] = {Sizes...};
  template <class Activations, template <int, int> class Kernel>
  static DecodeKernel<Activations> select(int bits, int tile) {
    return select_kernel<Activations, Kernel, Sizes...>(bits, tile);
  }
};

#if TTQ_SIMD_INTEGER_DOT != 0
/// The integer kernel's tiles for L limbs: as many tokens as the registers hold accumulators.
///   AVX-512 VNNI: 8/4/2/1, three limbs 4/2/1;
///   AVX2: 16 registers hold TT x L int32 and int16 accumulators per 8-row half: one limb
///   4/2/1, more 2/1;
///   AArch64: TT x L x 4 int32 accumulators of 32 registers (TT L <= 4): 4/2/1, 2/1, 1.
template <int L>
using LimbTiles =
#if TTQ_SIMD_INTEGER_DOT == 2
    std::conditional_t<L == 3, TileSizes<4, 2, 1>, TileSizes<8, 4, 2, 1>>;
#elif TTQ_SIMD_INTEGER_DOT == 1
    std::conditional_t<L == 1, TileSizes<4, 2, 1>, TileSizes<2, 1>>;
#else
    std::conditional_t<L == 1, TileSizes<4, 2, 1>, std::conditional_t<L == 2, TileSizes<2, 1>, TileSizes<1>>>;
#endif
#endif

template <int Bits, int TT>
struct Fp32Kernel {
  static void run(const SimdPrepared& p, const Fp32Activations& a, Index t0, Index rb, float* y) {
    decode_block_fp32<Bits, TT>(p, a, t0, rb, y);
  }
};
#if TTQ_SIMD_INTEGER_DOT != 0
template <int L>
struct LimbKernel {
  template <int Bits, int TT>
  struct Of {
    static void run(const SimdPrepared& p, const LimbActivations& a, Index t0, Index rb, float* y) {
#if TTQ_SIMD_INTEGER_DOT == 2
      decode_block_vnni<Bits, L, TT>(p, a, t0, rb, y);
#elif TTQ_SIMD_INTEGER_DOT == 3
      decode_block_neon<Bits, L, TT>(p, a, t0, rb, y);
#else
      decode_block_avx2<Bits, L, TT>(p, a, t0, rb, y);
#endif
    }
  };
};
#endif

/// Runs the decode kernels over all row blocks, then the epilogue (low-rank term, bias).
template <class Activations>
void run_decode(const SimdPrepared& p, const Activations& act, const TilePlan& plan,
                const DecodeKernel<Activations>* kernels, const ForwardArgs& args, const Executor& executor) {
  const Index tokens = args.x.rows;
  std::vector<float> projected;
  const Index rank = args.lowrank_a.rows;
  if (rank > 0) lowrank_projection(args.x, args.lowrank_a, projected, executor);
  // Many small tasks (16 per thread): a core that another process slows down takes fewer.
  parallel_for(executor, p.row_blocks, 2, [&](Index rb_begin, Index rb_end) {
    alignas(64) float block[kSimdDecodeMaxTokens * kRowBlock];
    for (Index rb = rb_begin; rb < rb_end; ++rb) {
      for (int i = 0; i < plan.count; ++i) kernels[i](p, act, plan.first[i], rb, block + plan.first[i] * kRowBlock);
      const Index r0 = rb * kRowBlock, rows = std::min(kRowBlock, p.rows - r0);
      if (rows == kRowBlock && rank == 0) {
        // Whole registers: the kernels stored `block` with vector stores, and scalar reloads of
        // those would stall on store forwarding.
        for (Index t = 0; t < tokens; ++t)
          for (Index h = 0; h < kRowBlock; h += kFloatLanes) {
            Batch<float> v = Batch<float>::load_aligned(block + t * kRowBlock + h);
            if (!args.bias.empty()) v = v + Batch<float>::load_unaligned(args.bias.data() + r0 + h);
            v.store_unaligned(args.y.row(t) + r0 + h);
          }
        continue;
      }
      for (Index r = 0; r < rows; ++r) {
        float extra = args.bias.empty() ? 0.0f : args.bias[static_cast<std::size_t>(r0 + r)];
        for (Index t = 0; t < tokens; ++t) {
          float v = block[t * kRowBlock + r];
          if (rank > 0) {
            float lr = 0.0f;
            const float* b = args.lowrank_b.row(r0 + r);
            for (Index k = 0; k < rank; ++k) lr += projected[static_cast<std::size_t>(t * rank + k)] * b[k];
            v += lr;
          }
          args.y(t, r0 + r) = v + extra;
        }
      }
    }
  }, 16);
}

template <int ActivationBits>
void forward_decode(const SimdPrepared& p, const ForwardArgs& args, const Executor& executor) {
  const Index tokens = args.x.rows;
  constexpr bool kInteger = ActivationBits < 32 && kHasIntegerDot;
  if constexpr (kInteger) {
    if (integer_decode_policy(ActivationBits / 8, p.bits, tokens)) {
#if TTQ_SIMD_INTEGER_DOT != 0
      constexpr int L = ActivationBits / 8;
      using Tiles = LimbTiles<L>;
      thread_local LimbActivations act;
      prepare_limb_activations<L>(p, args.x, args.inverse_scale, act, executor);
      const TilePlan plan = plan_tiles(tokens, Tiles::list);
      DecodeKernel<LimbActivations> kernels[kSimdDecodeMaxTokens];
      for (int i = 0; i < plan.count; ++i)
        kernels[i] = Tiles::template select<LimbActivations, LimbKernel<L>::template Of>(p.bits, plan.size[i]);
      run_decode(p, act, plan, kernels, args, executor);
#endif
      return;
    }
  }
  {
    thread_local Fp32Activations act;
    prepare_fp32_activations(p, args.x, args.inverse_scale, act);
    using Tiles = TileSizes<8, 4, 2, 1>;
    const TilePlan plan = plan_tiles(tokens, Tiles::list);
    DecodeKernel<Fp32Activations> kernels[kSimdDecodeMaxTokens];
    for (int i = 0; i < plan.count; ++i) kernels[i] = Tiles::template select<Fp32Activations, Fp32Kernel>(p.bits, plan.size[i]);
    run_decode(p, act, plan, kernels, args, executor);
  }
}

/// T > 16: GEMM on weights dequantized into panels, then the low-rank GEMMs and the bias.
inline void forward_prefill(const SimdPrepared& p, const ForwardArgs& args, const Executor& executor) {
  thread_local PackedActivations packed;
  const Index group = p.group, padded = p.padded_group, cols = p.cols;
  pack_activations(
      args.x, p.padded_cols(),
      [=](Index k) {
        const Index g = k / padded, i = k % padded, col = g * group + i;
        return (i < group && col < cols) ? col : Index{-1};
      },
      args.inverse_scale, packed, executor);
  gemm(packed, p.row_blocks, p.rows, [&](Index rb, Index k0, Index kc, float* panel) { dequantize_panel(p, rb, k0, kc, panel); },
       args.y, false, executor);
  const Index rank = args.lowrank_a.rows;
  if (rank > 0) {
    RowMatrix projected(args.x.rows, rank);
    auto identity = [](Index k) { return k; };
    pack_activations(args.x, args.x.cols, identity, {}, packed, executor);
    gemm(packed, (rank + kRowBlock - 1) / kRowBlock, rank,
         [&](Index rb, Index k0, Index kc, float* panel) { copy_panel(args.lowrank_a, rb, k0, kc, panel); },
         MatrixView<float>(projected), false, executor);
    pack_activations(ConstMatrixView(projected), rank, identity, {}, packed, executor);
    gemm(packed, p.row_blocks, p.rows, [&](Index rb, Index k0, Index kc, float* panel) { copy_panel(args.lowrank_b, rb, k0, kc, panel); },
         args.y, true, executor);
  }
  if (!args.bias.empty())
    parallel_for(executor, args.y.rows, 16, [&](Index t_begin, Index t_end) {
      for (Index t = t_begin; t < t_end; ++t) {
        float* row = args.y.row(t);
        Index r = 0;
        for (; r + kFloatLanes <= args.y.cols; r += kFloatLanes)
          (Batch<float>::load_unaligned(row + r) + Batch<float>::load_unaligned(args.bias.data() + r)).store_unaligned(row + r);
        for (; r < args.y.cols; ++r) row[r] += args.bias[static_cast<std::size_t>(r)];
      }
    });
}

}  // namespace TTQ_SIMD_NAMESPACE
}  // namespace ttq::backend::detail

namespace ttq::backend {
inline namespace TTQ_SIMD_NAMESPACE {

/// forward: Y = (X diag(1/D)) deq^T + (X A^T) B^T + bias, as forward(Scalar, ...), within the
/// tolerance stated in docs/performance.md ("Accuracy against the oracle").
template <int A>
void forward(SimdBackend<A>, const SimdPrepared& p, const ForwardArgs& args) {
  const auto executor = current_executor();
  if (!p.packed()) {  // dense fallback (NF4): the reference products on the dequantized copy
    reference_forward(p.dequantized, args);
    return;
  }
  if (args.x.rows <= kSimdDecodeMaxTokens) detail::forward_decode<A>(p, args, *executor);
  else detail::forward_prefill(p, args, *executor);
}

}  // namespace TTQ_SIMD_NAMESPACE
}  // namespace ttq::backend
