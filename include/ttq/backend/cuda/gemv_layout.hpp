// Index and bit arithmetic of the CUDA packed GEMV, as plain C++ (TTQ_HOST_DEVICE, no CUDA
// types) so that the CPU test suite checks, element by element, the very functions the kernel
// calls: which codes a thread reads, how it turns them into bf16 pairs for the tensor cores,
// where the activations are staged so that both sides of the mma see the same permutation of
// k, and how a launch is planned (tile, split, shared memory).
//
// The kernel (backend/cuda/gemv.cuh) multiplies 16-row tiles of the packed weight by the
// prescaled activations with mma.m16n8k16 (bf16 in, fp32 accumulate). It never repacks: it
// reads the library's row bit stream (quant/packing.hpp) directly. A 32-code "chunk" of one row
// lies inside one group (groups are multiples of 32 on this path), and the four threads of an
// mma quad split a chunk into four "fields" of 8 consecutive codes (thread i: codes 8i..8i+7).
// The order in which an mma sums over k is free as long as A and B use the same order, so each
// thread presents its field's codes in the order that is cheapest to unpack, pairs
// (e, e+4) = (0,4), (1,5), (2,6), (3,7), and the activations are staged in that same order.
#pragma once

#include <cstdint>

#include "ttq/core/host_device.hpp"

namespace ttq::cuda::layout {

/// Codes per chunk: the unit a quad of threads consumes per pair of mma k-steps.
inline constexpr int kChunkCodes = 32;
/// Chunks a warp loads before it computes (4 x 32 = 128 columns): the loads in flight per thread.
inline constexpr int kBatchChunks = 4;
inline constexpr int kBatchCols = kChunkCodes * kBatchChunks;
/// Rows per warp (one mma m-tile) and warps per block: a block computes 128 rows.
inline constexpr int kWarpRows = 16;
inline constexpr int kBlockWarps = 8;
inline constexpr int kBlockRows = kWarpRows * kBlockWarps;
/// Most tokens one launch handles (two mma n-tiles of 8).
inline constexpr int kMaxTokens = 16;
/// Device row stride of packed codes is padded to whole 256-code windows (quantize.cuh writes
/// 256 codes per warp step), so every chunk and batch read stays inside its row.
inline constexpr int kWindowCodes = 256;

/// Words per device row of packed codes: the row bit stream rounded up to whole windows.
TTQ_HOST_DEVICE constexpr std::int64_t padded_words_per_row(std::int64_t cols, int bits) {
  return (cols + kWindowCodes - 1) / kWindowCodes * (kWindowCodes / 32) * bits;
}

/// The bits of one thread's field: 8 codes, 8*bits bits, as two words (hi used for bits > 4).
struct QuadField {
  std::uint32_t lo = 0;
  std::uint32_t hi = 0;
};

/// Reads field `i` (0..3) of the chunk whose first word is `chunk` (a chunk of 32 codes is
/// `Bits` words). Field i holds codes 8i..8i+7 of the chunk, code e at bits [Bits*e, Bits*e+Bits).
template <int Bits>
TTQ_HOST_DEVICE inline QuadField load_quad_field(const std::uint32_t* chunk, int i) {
  static_assert(Bits == 2 || Bits == 3 || Bits == 4 || Bits == 8, "the packed GEMV handles 2, 3, 4 and 8 bits");
  if constexpr (Bits == 2) {
    return {(chunk[i >> 1] >> (16 * (i & 1))) & 0xFFFFu, 0u};
  } else if constexpr (Bits == 3) {
    // Field i starts at bit 24i of the 96-bit chunk: word (3i)/4, shift 24i mod 32. Field 3 ends
    // exactly at the chunk's end, so its "next word" is clamped to stay inside the chunk.
    const int word = (3 * i) >> 2;
    const int shift = (24 * i) & 31;
    const int next = word + 1 < 3 ? word + 1 : 2;
    const std::uint64_t both = (static_cast<std::uint64_t>(chunk[next]) << 32) | chunk[word];
    return {static_cast<std::uint32_t>(both >> shift) & 0xFFFFFFu, 0u};
  } else if constexpr (Bits == 4) {
    return {chunk[i], 0u};
  } else {
    return {chunk[2 * i], chunk[2 * i + 1]};
  }
}

/// For 2..4 bits: the field rearranged so that 16-bit lane 0 holds codes 0..3 and lane 1 holds
/// codes 4..7, code e at bit Bits*(e % 4) of its lane. (4 bits: already so.)
template <int Bits>
TTQ_HOST_DEVICE inline std::uint32_t spread_field(QuadField f) {
  static_assert(Bits >= 2 && Bits <= 4, "spread_field is for 2..4 bits");
  if constexpr (Bits == 2) return f.lo | (f.lo << 8);  // codes 4..7 (bits 8..15) move to 16..23
  else if constexpr (Bits == 3) return (f.lo & 0xFFFu) | ((f.lo << 4) & 0x0FFF0000u);  // bits 12..23 -> 16..27
  else return f.lo;
}

/// How pair j = codes (j, j+4) becomes two exact bf16 values with one shift, one mask-or and
/// one bf16x2 fma: shift the spread word right by `shift`, keep each lane's code bits (now at
/// bit `exponent`), OR in the bf16 pattern of 128.0 (0x4300: exponent 2^7, so mantissa bit m is
/// worth 2^m), giving 128 + q * 2^exponent exactly; then fma with factor 2^-exponent and addend
/// -128 * 2^-exponent gives q exactly. The code bits must stay inside bf16's 7 mantissa bits
/// (exponent + Bits <= 7), which is why some pairs shift and why 8-bit codes take another path.
struct PairUnpack {
  int shift;
  int exponent;
};

template <int Bits>
TTQ_HOST_DEVICE constexpr PairUnpack pair_unpack(int j) {
  static_assert(Bits >= 2 && Bits <= 4, "pair_unpack is for 2..4 bits");
  if constexpr (Bits == 2) return j < 3 ? PairUnpack{0, 2 * j} : PairUnpack{6, 0};
  else if constexpr (Bits == 3) return j < 2 ? PairUnpack{0, 3 * j} : PairUnpack{6, 3 * (j - 2)};
  else return PairUnpack{4 * j, 0};
}

/// bf16 bit patterns of 128.0 in both 16-bit lanes.
inline constexpr std::uint32_t kBf16Magic128x2 = 0x43004300u;

/// The masked, magic-or'ed bf16x2 bit pattern of pair j (see PairUnpack); lane 0 = code j, lane 1 = code j+4.
template <int Bits>
TTQ_HOST_DEVICE inline std::uint32_t pair_pattern(std::uint32_t spread, int j) {
  const PairUnpack u = pair_unpack<Bits>(j);
  const std::uint32_t lane_mask = ((1u << Bits) - 1u) << u.exponent;
  return ((spread >> u.shift) & (lane_mask | (lane_mask << 16))) | kBf16Magic128x2;
}

/// bf16x2 bit patterns of 2^e and -2^e in both lanes (the fma constants of PairUnpack).
TTQ_HOST_DEVICE constexpr std::uint32_t bf16x2_pow2(int e) {
  const std::uint32_t h = static_cast<std::uint32_t>(127 + e) << 7;
  return h | (h << 16);
}
TTQ_HOST_DEVICE constexpr std::uint32_t bf16x2_neg_pow2(int e) {
  const std::uint32_t h = 0x8000u | (static_cast<std::uint32_t>(127 + e) << 7);
  return h | (h << 16);
}

/// 8 bits: code e of the field (bytes of lo for e < 4, of hi for e >= 4).
TTQ_HOST_DEVICE inline std::uint32_t byte_code(QuadField f, int e) {
  return ((e < 4 ? f.lo : f.hi) >> (8 * (e & 3))) & 0xFFu;
}

/// Staging order of 8 consecutive activation columns e = 0..7: position p holds column
/// staged_column(p) = 0,4,1,5,2,6,3,7, so the 32-bit words of the 16-byte unit are the pairs
/// (0,4), (1,5), (2,6), (3,7): exactly the B fragments b0, b1 of k-step 0 and b0, b1 of k-step 1.
TTQ_HOST_DEVICE constexpr int staged_column(int p) { return (p & 1) ? 4 + (p >> 1) : (p >> 1); }
TTQ_HOST_DEVICE constexpr int staged_position(int e) { return e < 4 ? 2 * e : 2 * (e - 4) + 1; }

/// Which pair j feeds A-fragment register `reg` (0..3) in k-step `step` (0..1): a0/a1 (rows g and
/// g+8, k = 2i, 2i+1) take pair 2*step, a2/a3 (k = 2i+8, 2i+9) take pair 2*step + 1. B register
/// b_r of that step is staged word 2*step + r, holding the same two columns.
TTQ_HOST_DEVICE constexpr int a_register_pair(int step, int reg) { return 2 * step + (reg >> 1); }
TTQ_HOST_DEVICE constexpr int b_register_word(int step, int reg) { return 2 * step + reg; }

/// The row of A-fragment register `reg` within the thread's pair of rows: 0 for a0/a2 (row g),
/// 1 for a1/a3 (row g + 8).
TTQ_HOST_DEVICE constexpr int a_register_row(int reg) { return reg & 1; }

/// The accumulator layout of mma.m16n8k16: register c_reg of thread (g, i) holds row
/// g + 8 * c_register_row(reg) and token (n) 2i + c_register_token(reg).
TTQ_HOST_DEVICE constexpr int c_register_row(int reg) { return reg >> 1; }
TTQ_HOST_DEVICE constexpr int c_register_token(int reg) { return reg & 1; }

/// The physical column (within its chunk) that logical mma index k (0..15) of k-step `step`
/// stands for, for the quad thread i = k % 8 / 2 that supplies it. Follows from the fragment
/// layout of mma.m16n8k16 (thread i holds k = 2i, 2i+1, 2i+8, 2i+9) and the pairs above.
TTQ_HOST_DEVICE constexpr int chunk_column_of_k(int step, int k) {
  const int i = (k & 7) >> 1;
  const int pair = 2 * step + (k >> 3);  // k < 8: registers a0/a1 (pair 2*step); k >= 8: a2/a3
  const int e = (k & 1) ? pair + 4 : pair;  // lower half of a register is code j, upper is code j+4
  return 8 * i + e;
}

/// Quantize window packing (quantize.cuh): a lane's 8 codes form a field of `width` = 8*bits
/// bits, code e at bits [bits*e, bits*e + bits), that lands at bit `bit` of its window's word
/// array. These are the (up to three) words it touches: word index `first` and the bits to OR
/// into words first, first + 1, first + 2.
struct FieldWords {
  int first = 0;
  std::uint32_t w0 = 0, w1 = 0, w2 = 0;
};

TTQ_HOST_DEVICE inline FieldWords window_field_words(std::uint64_t field, int bit, int width) {
  FieldWords f;
  f.first = bit >> 5;
  const int shift = bit & 31;
  f.w0 = static_cast<std::uint32_t>(field << shift);
  f.w1 = shift + width > 32 ? static_cast<std::uint32_t>(field >> 1 >> (31 - shift)) : 0u;  // field >> (32 - shift)
  f.w2 = shift + width > 64 ? static_cast<std::uint32_t>(field >> (64 - shift)) : 0u;
  return f;
}

/// Whether the packed GEMV supports a configuration; otherwise the operator uses the generic
/// per-element kernel (any bits 2..8, any group, and formats whose codes are levels, as NF4).
TTQ_HOST_DEVICE constexpr bool packed_gemv_supports(int bits, std::int64_t group, bool integer_codes) {
  const bool bits_ok = bits == 2 || bits == 3 || bits == 4 || bits == 8;
  const bool group_ok = group % 32 == 0 && (kBatchCols % group == 0 || group % kBatchCols == 0);
  return bits_ok && group_ok && integer_codes;
}

/// Launch shape of one packed GEMV call.
struct GemvPlan {
  bool supported = false;         ///< false: use the generic kernel
  std::int64_t tile_cols = 0;     ///< columns staged in shared memory at once (a multiple of unit)
  std::int64_t split_cols = 0;    ///< columns per k-split (a multiple of tile_cols)
  int splits = 1;                 ///< blocks along k; partial sums are reduced by the last block
  std::int64_t row_blocks = 0;    ///< blocks along the output rows (128 rows each)
  std::int64_t shared_bytes = 0;  ///< dynamic shared memory per block
};

/// Shared memory of a tile: bf16 hi and lo parts of x' for `tokens` rows, each row padded by 32
/// elements (64 bytes) so that rows start 64 bytes apart modulo 128 and the 16-byte fragment loads
/// of the two token rows a quarter-warp touches fall in different banks; plus fp32 chunk sums
/// [tile_cols / 32][token slots] (8 or 16 slots).
TTQ_HOST_DEVICE constexpr std::int64_t gemv_shared_bytes(std::int64_t tile_cols, int tokens) {
  const std::int64_t slots = tokens > 8 ? 16 : 8;
  return 2 * 2 * static_cast<std::int64_t>(tokens) * (tile_cols + 32) + (tile_cols / kChunkCodes) * slots * 4;
}

/// Plans a launch for weights [d_out, d_in] and `tokens` (1..16) tokens on a device with `sms`
/// multiprocessors. Decode is bound by weight traffic, so the grid must keep every SM busy with
/// several blocks even when d_out is small: k is split until there are about four blocks per SM
/// (the last block of each row block reduces the partial sums). The tile is the largest number
/// of whole units (max(group, 128) columns) within a split, 4096 columns and 46 KiB of shared
/// memory (no opt-in needed, several blocks per SM).
TTQ_HOST_DEVICE constexpr GemvPlan plan_packed_gemv(std::int64_t d_out, std::int64_t d_in, int tokens, int bits,
                                                   std::int64_t group, bool integer_codes, int sms) {
  GemvPlan plan;
  if (!packed_gemv_supports(bits, group, integer_codes) || tokens < 1 || tokens > kMaxTokens || d_out < 1 || d_in < 1) return plan;
  const std::int64_t unit = group > kBatchCols ? group : kBatchCols;
  constexpr std::int64_t kBudget = 46 * 1024;
  if (gemv_shared_bytes(unit, tokens) > kBudget) return plan;  // one group does not fit: generic path
  const std::int64_t units = (d_in + unit - 1) / unit;
  plan.row_blocks = (d_out + kBlockRows - 1) / kBlockRows;
  const std::int64_t wanted = (4 * static_cast<std::int64_t>(sms < 1 ? 1 : sms) + plan.row_blocks - 1) / plan.row_blocks;
  const std::int64_t splits = wanted < 1 ? 1 : (wanted > units ? units : (wanted > 64 ? 64 : wanted));
  const std::int64_t units_per_split = (units + splits - 1) / splits;
  std::int64_t tile_units = 1;
  while (tile_units < units_per_split && (tile_units + 1) * unit <= 4096 &&
         gemv_shared_bytes((tile_units + 1) * unit, tokens) <= kBudget)
    ++tile_units;
  // Each split takes whole tiles; recount the splits so that none is empty.
  const std::int64_t tiles_per_split = (units_per_split + tile_units - 1) / tile_units;
  plan.tile_cols = tile_units * unit;
  plan.split_cols = tiles_per_split * plan.tile_cols;
  plan.splits = static_cast<int>((units * unit + plan.split_cols - 1) / plan.split_cols);
  plan.shared_bytes = gemv_shared_bytes(plan.tile_cols, tokens);
  plan.supported = true;
  return plan;
}

}  // namespace ttq::cuda::layout
