// Bit layout of packed codes, the same for every bit width 2..8 (3, 5, 6, 7 included).
//
// Layout: each row of a [rows, cols] code matrix is a little-endian bit stream stored in
// 32-bit words; code k of a row occupies bits [k*b, k*b + b) of that stream, bit i of the stream
// being bit (i % 32) of word (i / 32). A code may straddle two words (b = 3, 5, 6, 7). Every row
// starts on a fresh word: words_per_row = ceil(cols * b / 32); padding bits are zero.
// Consequences: a group of 32 codes occupies exactly b whole words, so with group sizes that
// are multiples of 32 each group starts word-aligned; b = 2, 4, 8 never straddle.
#pragma once

#include <cstdint>

#include "ttq/core/host_device.hpp"
#include "ttq/core/types.hpp"

namespace ttq {

/// Number of 32-bit words holding one packed row of `cols` codes of `bits` bits.
TTQ_HOST_DEVICE constexpr Index packed_words_per_row(Index cols, int bits) {
  return (cols * bits + 31) / 32;
}

/// Writes `code` (< 2^bits) as code number `k` of the row starting at `row_words`.
/// Precondition: the target bits are zero (rows are zero-initialised before packing).
TTQ_HOST_DEVICE inline void pack_code(std::uint32_t* row_words, Index k, int bits, std::uint32_t code) {
  const Index bit = k * bits;
  const Index word = bit / 32;
  const int shift = static_cast<int>(bit % 32);
  row_words[word] |= code << shift;
  if (shift + bits > 32) row_words[word + 1] |= code >> (32 - shift);
}

/// Reads code number `k` of the row starting at `row_words`.
TTQ_HOST_DEVICE inline std::uint32_t unpack_code(const std::uint32_t* row_words, Index k, int bits) {
  const Index bit = k * bits;
  const Index word = bit / 32;
  const int shift = static_cast<int>(bit % 32);
  std::uint32_t value = row_words[word] >> shift;
  if (shift + bits > 32) value |= row_words[word + 1] << (32 - shift);
  return value & ((1u << bits) - 1u);
}

/// Reads the codes of one row in order, 0, 1, 2, ...: a 64-bit window refilled a word at a
/// time, so a whole row costs a shift and a mask per code instead of unpack_code's index
/// arithmetic. Gives exactly unpack_code's values, and reads no word past the row's last.
class RowCodeReader {
 public:
  TTQ_HOST_DEVICE RowCodeReader(const std::uint32_t* row_words, int bits) : words_(row_words), bits_(bits), mask_((1u << bits) - 1u) {}

  TTQ_HOST_DEVICE std::uint32_t next() {
    if (available_ < bits_) {
      window_ |= static_cast<std::uint64_t>(*words_++) << available_;
      available_ += 32;
    }
    const auto code = static_cast<std::uint32_t>(window_) & mask_;
    window_ >>= bits_;
    available_ -= bits_;
    return code;
  }

 private:
  const std::uint32_t* words_;
  int bits_;
  std::uint32_t mask_;
  std::uint64_t window_ = 0;
  int available_ = 0;
};

}  // namespace ttq
