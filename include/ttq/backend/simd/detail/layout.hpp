// The SIMD backend's decode-ready weights (SimdPrepared) and the repacking that builds them
// from a QuantizedMatrix (the documented row-major bit stream of quant/packing.hpp).
//
// Layout, and why. Rows go in blocks of 16 (kRowBlock): one 32-bit lane of a 512-bit register
// per row, so a kernel accumulates 16 output features in one register and never reduces
// horizontally. Along d_in, each group is padded to a multiple of 32 weights (kChunk) and cut
// into chunks; a chunk of a row block holds its 16 x 32 codes in `bits` 64-byte "plane"
// registers. Operand o (0..7) of a chunk is the 16 rows' codes of the 4 consecutive weights
// k = 4o .. 4o+3 (one byte each, lane = row), exactly the u8 operand of VPDPBUSD, whose other
// operand is then the 4 activations x[4o .. 4o+3] broadcast: activations need no permutation.
// A b-bit code is split into planes of width 8, 4, 2 or 1 (b = 3 is 2+1, b = 7 is 4+2+1); a
// plane of width w packs 8/w operands per register, operand o in bit field (o mod 8/w) of each
// byte, so extracting one operand is a shift and a mask (and an OR per extra plane).
// For b = 2, 4, 8 and groups that are multiples of 32 this is a 16-row transpose of the
// documented words plus a shuffle of the fields inside each word, cheap enough to redo for
// every prompt. Per-group parameters are stored per row block: scales [rb][g][16] (fp32),
// integer zero points [rb][g][16] (u8; AWQ's z, or 2^(b-1) for the symmetric format) or float
// offsets [rb][g][16] (offset format). Padding rows and columns hold code 0 and scale 0.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "ttq/backend/parallel.hpp"
#include "ttq/backend/simd/detail/isa.hpp"
#include "ttq/core/types.hpp"
#include "ttq/quant/format.hpp"
#include "ttq/quant/group_kernel.hpp"
#include "ttq/quant/packing.hpp"
#include "ttq/quant/quantized_matrix.hpp"

namespace ttq::backend::detail {
inline namespace TTQ_SIMD_NAMESPACE {

inline constexpr Index kRowBlock = 16;  ///< rows per block: one 32-bit lane per row of a 512-bit register
inline constexpr Index kChunk = 32;     ///< weights per row in one chunk (b registers of 64 bytes)
inline constexpr Index kChunkBytesPerBit = kRowBlock * kChunk / 8;  ///< 64: bytes per plane register

/// How far ahead of the chunk it multiplies a decode kernel may prefetch codes; the codes buffer
/// carries this many bytes past its last chunk so that the address stays inside it. A row
/// block's codes are one sequential stream, yet on AVX2 (Zen 3) with the hardware prefetcher
/// alone cold 4096x4096 decode ran up to 1.4x slower, and VNNI decode on Zen 5 up to 1.4x
/// (docs/performance.md, "Software prefetch on AVX2" and "Against ggml on an AVX-512 VNNI
/// machine"). 2 KiB is four 128-wide groups of 2-bit codes, one of 8-bit codes; 1 and 4 KiB
/// measured no better (AVX2).
inline constexpr std::size_t kDecodePrefetchBytes = 2048;

/// Hints into L1 the `Bits` plane registers that lie kDecodePrefetchBytes past `chunk`, the
/// chunk a decode kernel is about to multiply: one line per plane, so the stream stays ahead at
/// every width. The codes' tail (kDecodePrefetchBytes) keeps the address inside the buffer, so
/// the pointer arithmetic is defined.
template <int Bits>
inline void prefetch_chunk_ahead(const std::uint8_t* chunk) {
  for (int m = 0; m < Bits; ++m) __builtin_prefetch(chunk + kDecodePrefetchBytes + kChunkBytesPerBit * m);
}

/// Whether large buffers ask the OS for transparent huge pages: on unless TTQ_HUGE_PAGES=0 (read
/// once; any value but 0 and 1 is refused by current_executor(), on the caller's thread, before a
/// kernel allocates: backend/parallel.hpp). Decode streams the packed weights from DRAM, and with
/// 4 KiB pages every 4 KiB of them costs a TLB miss and a page walk; huge pages made cold
/// 4096x4096 decode 1.1-2x faster on the development machine (docs/performance.md, "Huge pages").
inline bool huge_pages_enabled() noexcept { return ttq::backend::detail::huge_pages_setting() != ttq::backend::detail::HugePages::off; }

inline constexpr std::size_t kHugePage = std::size_t{2} << 20;

/// 64-byte aligned allocation for the packed arrays (full-register loads never split lines).
/// Buffers of 2 MiB or more are 2 MiB aligned and advised as huge pages (Linux, MADV_HUGEPAGE;
/// where the system's transparent huge pages are off the advice is ignored).
template <class T>
struct AlignedAllocator {
  using value_type = T;
  static constexpr std::size_t kAlignment = 64;
  static std::size_t alignment_for(std::size_t n) { return n * sizeof(T) >= kHugePage ? kHugePage : kAlignment; }
  AlignedAllocator() = default;
  template <class U>
  AlignedAllocator(const AlignedAllocator<U>&) noexcept {}  // NOLINT(google-explicit-constructor)
  /// Default-initializes (no zero fill): resize() of a buffer that is overwritten anyway
  /// should not write it twice. Call sites that need zeros use assign() or fill().
  template <class U>
  void construct(U* p) noexcept(std::is_nothrow_default_constructible_v<U>) {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
  T* allocate(std::size_t n) {
    const std::size_t alignment = alignment_for(n);
    void* p = ::operator new(n * sizeof(T), std::align_val_t(alignment));
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (alignment == kHugePage && huge_pages_enabled()) ::madvise(p, n * sizeof(T) / kHugePage * kHugePage, MADV_HUGEPAGE);
#endif
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t n) noexcept { ::operator delete(p, std::align_val_t(alignment_for(n))); }
  template <class U>
  bool operator==(const AlignedAllocator<U>&) const noexcept {
    return true;
  }
};

template <class T>
using AlignedVector = std::vector<T, AlignedAllocator<T>>;

/// One plane of a b-bit code: `width` bits starting at bit `significance` of the code.
struct PlaneSpec {
  int width = 0;
  int significance = 0;
};

/// The planes of a b-bit code, widest first (the widest defines nothing special; all planes
/// use the same operand order). Widths are 8, 4, 2, 1 so a register holds whole operands.
inline constexpr int plane_count(int bits) { return bits == 7 ? 3 : (bits == 3 || bits == 5 || bits == 6) ? 2 : 1; }
inline constexpr PlaneSpec plane_spec(int bits, int p) {
  switch (bits) {
    case 2: return {2, 0};
    case 3: return p == 0 ? PlaneSpec{2, 0} : PlaneSpec{1, 2};
    case 4: return {4, 0};
    case 5: return p == 0 ? PlaneSpec{4, 0} : PlaneSpec{1, 4};
    case 6: return p == 0 ? PlaneSpec{4, 0} : PlaneSpec{2, 4};
    case 7: return p == 0 ? PlaneSpec{4, 0} : (p == 1 ? PlaneSpec{2, 4} : PlaneSpec{1, 6});
    default: return {8, 0};
  }
}
/// Register index (within the chunk) where plane p starts: widths of the planes before it.
inline constexpr int plane_offset(int bits, int p) {
  int offset = 0;
  for (int i = 0; i < p; ++i) offset += plane_spec(bits, i).width;
  return offset;
}

/// Reorders the fields of one documented word (32/w codes of width w, code n at bits w*n) so
/// that byte j holds codes j, j+4, j+8, ... in consecutive fields: the operand order above.
/// Works on scalars and on xsimd batches of uint32 alike.
template <class U>
U shuffle_fields(U x, int width) {
  if (width == 4) {  // nibbles a0..a3 b0..b3 -> a0 b0 a1 b1 a2 b2 a3 b3 (outer perfect shuffle)
    x = (x & U(0xFF0000FFu)) | (shift_left<8>(x) & U(0x00FF0000u)) | (shift_right<8>(x) & U(0x0000FF00u));
    x = (x & U(0xF00FF00Fu)) | (shift_left<4>(x) & U(0x0F000F00u)) | (shift_right<4>(x) & U(0x00F000F0u));
  } else if (width == 2) {  // 4x4 transpose of crumbs (byte = row, crumb = column): two delta swaps
    U t = (shift_right<12>(x) ^ x) & U(0x0000F0F0u);
    x = x ^ t ^ shift_left<12>(t);
    t = (shift_right<6>(x) ^ x) & U(0x00CC00CCu);
    x = x ^ t ^ shift_left<6>(t);
  }
  return x;  // width 8: bytes are already in place
}

#if defined(__BMI2__)
/// PEXT mask selecting plane `p` of 8 consecutive b-bit codes.
constexpr std::uint64_t slice_plane_mask(int bits, int p) {
  std::uint64_t mask = 0;
  for (int i = 0; i < 8; ++i)
    mask |= static_cast<std::uint64_t>((1u << plane_spec(bits, p).width) - 1u) << (plane_spec(bits, p).significance + bits * i);
  return mask;
}

/// The plane words of one row's chunk of Bits-bit codes (Bits = 3, 5, 6, 7), straight from the
/// documented bit stream `words` (Bits words, 32 codes): per slice of 8 codes (8 Bits <= 56
/// bits) one PEXT per plane collects the plane's bits in natural order, then the field shuffle
/// of that width puts them in operand order. `out[m * 16]` is plane register m's lane.
template <int Bits>
void composite_plane_words(const std::uint32_t* words, std::uint32_t* out) {
  constexpr int kPlanes = plane_count(Bits);
  std::uint32_t natural[Bits] = {};  // per plane register, natural order
  std::uint64_t stream[4];           // the 32 Bits-bit codes as four 8-code slices
  for (int q = 0; q < 4; ++q) {
    constexpr std::uint64_t kSlice = (std::uint64_t{1} << (8 * Bits)) - 1;
    const int bit = 8 * Bits * q, i = bit / 32, shift = bit % 32;  // the slice ends inside the chunk
    std::uint64_t v = words[i];
    if (i + 1 < Bits) v |= static_cast<std::uint64_t>(words[i + 1]) << 32;
    v >>= shift;
    if (shift + 8 * Bits > 64) v |= static_cast<std::uint64_t>(words[i + 2]) << (64 - shift);
    stream[q] = v & kSlice;
  }
  [&]<int... P>(std::integer_sequence<int, P...>) {
    (
        [&] {
          constexpr PlaneSpec spec = plane_spec(Bits, P);
          constexpr std::uint64_t mask = slice_plane_mask(Bits, P);
          constexpr int offset = plane_offset(Bits, P);
          for (int q = 0; q < 4; ++q) {
            const int bit = 8 * spec.width * q;  // position in the plane's natural stream
            natural[offset + bit / 32] |= static_cast<std::uint32_t>(_pext_u64(stream[q], mask) << (bit % 32));
          }
          for (int m = 0; m < spec.width; ++m) {
            const std::uint32_t x = natural[offset + m];
            std::uint32_t word = 0;
            if constexpr (spec.width == 1) {  // natural bit 4t + j -> byte j, bit t
              for (int j = 0; j < 4; ++j) word |= static_cast<std::uint32_t>(_pext_u32(x, 0x11111111u << j)) << (8 * j);
            } else {
              word = shuffle_fields(x, spec.width);
            }
            out[(offset + m) * kRowBlock] = word;
          }
        }(),
        ...);
  }(std::make_integer_sequence<int, kPlanes>{});
}

inline void composite_plane_words(const std::uint32_t* words, int bits, std::uint32_t* out) {
  switch (bits) {
    case 3: return composite_plane_words<3>(words, out);
    case 5: return composite_plane_words<5>(words, out);
    case 6: return composite_plane_words<6>(words, out);
    default: return composite_plane_words<7>(words, out);
  }
}
#endif

/// Plane word m of plane `spec` for one row and chunk, from the chunk's 32 codes as bytes:
/// byte j, field s holds bits [significance, significance + width) of code 4 (per*m + s) + j.
inline std::uint32_t build_plane_word(const std::uint8_t* codes32, PlaneSpec spec, int m) {
  const int per = 8 / spec.width;
  const std::uint32_t mask = ((1u << spec.width) - 1u) * 0x01010101u;
  std::uint32_t word = 0;
  for (int s = 0; s < per; ++s) {
    std::uint32_t u;
    std::memcpy(&u, codes32 + 4 * (per * m + s), 4);
    word |= ((u >> spec.significance) & mask) << (spec.width * s);
  }
  return word;
}

/// Plane registers of the b = 2, 4, 8 fast path: words [first, first + count) of rows
/// [rb*16, rb*16 + 16) of `q`'s packed codes, one register per word (lane = row; zero past the
/// last row or the row's last word), fields shuffled into operand order, written to `out`.
template <class A>
void transpose_plane_words(const QuantizedMatrix& q, Index rb, Index first, Index count, std::uint32_t* out,
                           requires_arch<xsimd::generic>) {
  alignas(64) std::uint32_t lanes[kRowBlock];
  for (Index w = 0; w < count; ++w) {
    const Index word = first + w;
    for (Index r = 0; r < kRowBlock; ++r) {
      const Index row = rb * kRowBlock + r;
      lanes[r] = (row < q.rows && word < q.words_per_row) ? q.row_codes(row)[word] : 0u;
    }
    for (Index h = 0; h < kRowBlock; h += kFloatLanes)
      shuffle_fields(Batch<std::uint32_t>::load_aligned(lanes + h), q.bits).store_aligned(out + w * kRowBlock + h);
  }
}
#if XSIMD_WITH_AVX512F
/// 16 x 16 transpose of 32-bit elements in registers: r[i] = row i becomes r[j] = column j.
inline void transpose_16x16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    r[4 * i + 0] = _mm512_unpacklo_epi64(t[4 * i + 0], t[4 * i + 2]);
    r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i + 0], t[4 * i + 2]);
    r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  for (int k = 0; k < 4; ++k) {  // r[4i + k], 128-bit lane L: rows 4i..4i+3 of column 4L + k
    t[k + 0] = _mm512_shuffle_i32x4(r[k], r[4 + k], 0x88);
    t[k + 4] = _mm512_shuffle_i32x4(r[k], r[4 + k], 0xDD);
    t[k + 8] = _mm512_shuffle_i32x4(r[8 + k], r[12 + k], 0x88);
    t[k + 12] = _mm512_shuffle_i32x4(r[8 + k], r[12 + k], 0xDD);
  }
  for (int k = 0; k < 4; ++k) {
    r[k + 0] = _mm512_shuffle_i32x4(t[k], t[k + 8], 0x88);
    r[k + 8] = _mm512_shuffle_i32x4(t[k], t[k + 8], 0xDD);
    r[k + 4] = _mm512_shuffle_i32x4(t[k + 4], t[k + 12], 0x88);
    r[k + 12] = _mm512_shuffle_i32x4(t[k + 4], t[k + 12], 0xDD);
  }
}
/// AVX-512: 16 rows x 16 words at a time, loaded row by row (contiguous), transposed in registers.
template <class A>
void transpose_plane_words(const QuantizedMatrix& q, Index rb, Index first, Index count, std::uint32_t* out,
                           requires_arch<xsimd::avx512f>) {
  for (Index w0 = 0; w0 < count; w0 += 16) {
    const Index n = std::clamp<Index>(std::min(count - w0, q.words_per_row - (first + w0)), 0, 16);
    const __mmask16 mask = static_cast<__mmask16>((1u << n) - 1u);
    __m512i r[16];
    for (Index i = 0; i < kRowBlock; ++i) {
      const Index row = rb * kRowBlock + i;
      r[i] = row < q.rows ? _mm512_maskz_loadu_epi32(mask, q.row_codes(row) + first + w0) : _mm512_setzero_si512();
    }
    transpose_16x16(r);
    for (Index i = 0; i < 16 && w0 + i < count; ++i)
      shuffle_fields(Batch<std::uint32_t>(r[i]), q.bits).store_aligned(out + (w0 + i) * kRowBlock);
  }
}
#endif

}  // namespace TTQ_SIMD_NAMESPACE
}  // namespace ttq::backend::detail

namespace ttq::backend {
inline namespace TTQ_SIMD_NAMESPACE {

/// The SIMD backend's decode-ready form of a QuantizedMatrix (see the file comment for the
/// layout). Built by prepare(); read by forward(). Formats whose codes are levels (NF4:
/// !integer_codes) keep the dequantized matrix instead and decode with a dense product.
struct SimdPrepared {
  Index rows = 0;          ///< d_out
  Index cols = 0;          ///< d_in
  Index group = 0;         ///< resolved group size
  Index groups = 0;        ///< groups per row
  Index padded_group = 0;  ///< group rounded up to a multiple of 32
  Index row_blocks = 0;    ///< ceil(rows / 16)
  int bits = 0;
  FormatKind format = FormatKind::awq_asymmetric;
  /// [row_blocks][groups][padded_group / 32][bits][64 bytes] (see the file comment), then
  /// detail::kDecodePrefetchBytes of tail that no kernel reads.
  detail::AlignedVector<std::uint8_t> codes;
  detail::AlignedVector<float> scales;         ///< [row_blocks][groups][16]
  detail::AlignedVector<std::uint8_t> zeros;   ///< [row_blocks][groups][16], integer-zero formats
  detail::AlignedVector<float> offsets;        ///< [row_blocks][groups][16], offset format
  RowMatrix dequantized;                            ///< [rows, cols], only for formats without codes here

  bool packed() const { return bits != 0 && !codes.empty(); }
  bool integer_zero() const { return ttq::detail::has_code_zero(format); }
  Index chunks_per_group() const { return padded_group / detail::kChunk; }
  /// Padded length of a row along d_in: the K of the products.
  Index padded_cols() const { return groups * padded_group; }
  std::size_t chunk_bytes() const { return static_cast<std::size_t>(bits) * detail::kChunkBytesPerBit; }
  const std::uint8_t* block_codes(Index rb, Index g) const {
    return codes.data() + static_cast<std::size_t>((rb * groups + g) * chunks_per_group()) * chunk_bytes();
  }
  std::size_t param_index(Index rb, Index g) const { return static_cast<std::size_t>((rb * groups + g) * detail::kRowBlock); }
  /// Bytes one decode call streams from memory (codes + scales + zeros or offsets).
  std::size_t streamed_bytes() const {
    const std::size_t code_bytes = codes.empty() ? 0 : codes.size() - detail::kDecodePrefetchBytes;
    return code_bytes + sizeof(float) * (scales.size() + offsets.size()) + zeros.size();
  }
};

}  // namespace TTQ_SIMD_NAMESPACE
}  // namespace ttq::backend

namespace ttq::backend::detail {
inline namespace TTQ_SIMD_NAMESPACE {

/// Repacks `q` into the SIMD layout. Formats other than the integer ones keep a dense copy.
inline SimdPrepared prepare_matrix(const QuantizedMatrix& q, const Executor& executor) {
  SimdPrepared p;
  p.rows = q.rows;
  p.cols = q.cols;
  p.group = q.group;
  p.groups = q.groups_per_row();
  p.bits = q.bits;
  p.format = q.format;
  if (!ttq::detail::has_integer_codes(q.format) || q.rows == 0 || q.cols == 0) {
    p.bits = 0;
    p.dequantized = q.dequantize();
    return p;
  }
  p.padded_group = (q.group + kChunk - 1) / kChunk * kChunk;
  p.row_blocks = (q.rows + kRowBlock - 1) / kRowBlock;
  const Index chunks = p.chunks_per_group();
  const std::size_t chunk_bytes = p.chunk_bytes();
  const std::size_t params = static_cast<std::size_t>(p.row_blocks * p.groups * kRowBlock);
  // The fast path writes every code byte; the generic one relies on zeros (padding rows, and
  // plane words built lane by lane).
  p.codes.resize(static_cast<std::size_t>(p.row_blocks * p.groups * chunks) * chunk_bytes + kDecodePrefetchBytes);
  p.scales.assign(params, 0.0f);
  if (p.integer_zero()) p.zeros.assign(params, 0);
  else p.offsets.assign(params, 0.0f);

  const int bits = q.bits;
  const int planes = plane_count(bits);
  // b = 2, 4, 8 with word-aligned groups: transpose whole words and shuffle fields in place.
  const bool word_path = (bits == 2 || bits == 4 || bits == 8) && q.group % kChunk == 0;
  if (!word_path) std::fill(p.codes.begin(), p.codes.end(), std::uint8_t{0});

  const bool integer_zero = p.integer_zero();
  auto pack_blocks = [&](Index rb_begin, Index rb_end) {
    std::uint8_t codes32[kChunk];
    const Index groups = p.groups;
    for (Index rb = rb_begin; rb < rb_end; ++rb) {
      const Index rows_here = std::min(kRowBlock, q.rows - rb * kRowBlock);
      // Group parameters, indexed directly (QuantizedMatrix::params divides per call).
      for (Index r = 0; r < rows_here; ++r) {
        const std::size_t row = static_cast<std::size_t>(rb * kRowBlock + r);
        const float* scales = q.scales.data() + row * static_cast<std::size_t>(groups);
        const float* zeros = q.zeros.data() + row * static_cast<std::size_t>(groups);
        for (Index g = 0; g < groups; ++g) {
          const std::size_t pi = p.param_index(rb, g) + static_cast<std::size_t>(r);
          p.scales[pi] = scales[g];
          if (!integer_zero) p.offsets[pi] = zeros[g];
          else p.zeros[pi] = static_cast<std::uint8_t>(ttq::detail::zero_code(q.format, GroupParams{scales[g], zeros[g]}, bits));
        }
      }
      if (word_path) {  // whole plane registers at once
        for (Index g = 0; g < groups; ++g) {
          auto* out = reinterpret_cast<std::uint32_t*>(p.codes.data() + static_cast<std::size_t>((rb * groups + g) * chunks) * chunk_bytes);
          transpose_plane_words<Arch>(q, rb, g * q.group * bits / 32, chunks * bits, out, Arch{});
        }
        continue;
      }
      // Generic path: per row and chunk, the codes as bytes (zero past the group), then the
      // plane words.
      for (Index g = 0; g < groups; ++g) {
        std::uint32_t* out = reinterpret_cast<std::uint32_t*>(p.codes.data() + static_cast<std::size_t>((rb * groups + g) * chunks) * chunk_bytes);
        const Index begin = g * q.group, width = q.group_width(g);
        for (Index r = 0; r < rows_here; ++r) {
          const std::uint32_t* words = q.row_codes(rb * kRowBlock + r);
          for (Index c = 0; c < chunks; ++c) {
            std::uint32_t* chunk_out = out + static_cast<std::size_t>(c) * chunk_bytes / 4;
            const Index first = c * kChunk;
            const Index n = std::clamp<Index>(width - first, 0, kChunk);
#if defined(__BMI2__)
            if (q.group % kChunk == 0 && n == kChunk && planes > 1) {
              composite_plane_words(words + (begin + first) * bits / 32, bits, chunk_out + r);
              continue;
            }
#endif
            if (q.group % kChunk == 0 && n == kChunk) {
              // Word-aligned chunk: slide a 64-bit window over the b words.
              const std::uint32_t* cw = words + (begin + first) * bits / 32;
              std::uint64_t window = 0;
              int have = 0;
              Index next_word = 0;
              const std::uint32_t mask = (1u << bits) - 1u;
              for (Index k = 0; k < kChunk; ++k) {
                if (have < bits) {
                  window |= static_cast<std::uint64_t>(cw[next_word++]) << have;
                  have += 32;
                }
                codes32[k] = static_cast<std::uint8_t>(window & mask);
                window >>= bits;
                have -= bits;
              }
            } else {
              for (Index k = 0; k < kChunk; ++k)
                codes32[k] = k < n ? static_cast<std::uint8_t>(unpack_code(words, begin + first + k, bits)) : 0;
            }
            for (int pl = 0; pl < planes; ++pl) {
              const PlaneSpec spec = plane_spec(bits, pl);
              const int offset = plane_offset(bits, pl);
              for (int m = 0; m < spec.width; ++m) chunk_out[(offset + m) * kRowBlock + r] = build_plane_word(codes32, spec, m);
            }
          }
        }
      }
    }
  };
  parallel_for(executor, p.row_blocks, 4, pack_blocks);
  return p;
}

}  // namespace TTQ_SIMD_NAMESPACE
}  // namespace ttq::backend::detail
