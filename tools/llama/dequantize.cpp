// The GGUF reader's block dequantizers: every tensor type the runner reads, from its bytes to
// fp32, written from the block layouts of ggml's ggml-common.h (struct block_q*) and the
// decoding rules of ggml's dequantize_row_q* (reading them to learn the format; no code is
// shared). The file order of each block's fields and the order in which codes map to values are
// spelled out at each type. Every type is tested against the PyPI `gguf` package's independent
// numpy dequantizers (tests/llama/make_dequant_fixtures.py). Non-finite results are not
// checked here: read_gguf refuses them for every tensor after dequantizing.
#include <bit>
#include <cstring>
#include <type_traits>

#include "llama/error.hpp"
#include "llama/gguf.hpp"

namespace ttq::llama {
namespace {

constexpr int kSuperBlock = 256;  // QK_K: values of one K-quant block

template <class T>
T load_le(const std::byte* p) noexcept {
  static_assert(std::is_trivially_copyable_v<T>);
  T value;
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(&value, p, sizeof(T));
  } else {
    std::byte reversed[sizeof(T)];
    for (std::size_t i = 0; i < sizeof(T); ++i) reversed[i] = p[sizeof(T) - 1 - i];
    std::memcpy(&value, reversed, sizeof(T));
  }
  return value;
}

float half_at(const std::byte* p) noexcept { return half_to_float(load_le<std::uint16_t>(p)); }
unsigned byte_at(const std::byte* p, int i) noexcept { return static_cast<unsigned>(p[i]); }

// The 6-bit scale and min of sub-block j (0..7) of Q4_K and Q5_K, packed in 12 bytes: sub-blocks
// 0..3 in the low 6 bits of bytes j (scale) and j + 4 (min); sub-blocks 4..7 in the nibbles of
// byte j + 4 with their top 2 bits in the high bits of bytes j - 4 (scale) and j (min).
void scale_min_k4(int j, const std::byte* q, float& scale, float& min) noexcept {
  unsigned sc, m;
  if (j < 4) {
    sc = byte_at(q, j) & 63;
    m = byte_at(q, j + 4) & 63;
  } else {
    sc = (byte_at(q, j + 4) & 0xF) | ((byte_at(q, j - 4) >> 6) << 4);
    m = (byte_at(q, j + 4) >> 4) | ((byte_at(q, j) >> 6) << 4);
  }
  scale = static_cast<float>(sc);
  min = static_cast<float>(m);
}

// block_q5_0 { half d; u8 qh[4]; u8 qs[16]; } and block_q5_1 { half d, m; u8 qh[4]; u8 qs[16]; }:
// value j (< 16) is the low nibble of qs[j] with bit j of the little-endian qh word as its 5th bit,
// value j + 16 the high nibble with bit j + 16; x = d * (q - 16) (Q5_0) or d * q + m (Q5_1).
void dequantize_q5(const std::byte* p, bool with_min, float* out) noexcept {
  const float d = half_at(p);
  const float m = with_min ? half_at(p + 2) : 0.0f;
  const std::byte* qh_bytes = p + (with_min ? 4 : 2);
  const auto qh = load_le<std::uint32_t>(qh_bytes);
  const std::byte* qs = qh_bytes + 4;
  for (int j = 0; j < 16; ++j) {
    const unsigned low = (byte_at(qs, j) & 0x0F) | (((qh >> j) & 1u) << 4);
    const unsigned high = (byte_at(qs, j) >> 4) | (((qh >> (j + 16)) & 1u) << 4);
    if (with_min) {
      out[j] = d * static_cast<float>(low) + m;
      out[j + 16] = d * static_cast<float>(high) + m;
    } else {
      out[j] = d * static_cast<float>(static_cast<int>(low) - 16);
      out[j + 16] = d * static_cast<float>(static_cast<int>(high) - 16);
    }
  }
}

// block_q2_K { u8 scales[16]; u8 qs[64]; half d; half dmin; }: 16 sub-blocks of 16 values, each
// with a 4-bit scale (low nibble) and 4-bit min (high nibble); x = d * sc * q - dmin * m, q 2 bits.
// Each half (128 values) reads 32 bytes of qs four times, 2 bits further each time.
void dequantize_q2_k(const std::byte* p, float* out) noexcept {
  const std::byte* scales = p;
  const std::byte* q = p + 16;
  const float d = half_at(p + 80);
  const float dmin = half_at(p + 82);
  int is = 0;
  for (int half = 0; half < 2; ++half, q += 32) {
    for (int shift = 0; shift < 8; shift += 2) {
      for (int part = 0; part < 2; ++part, ++is) {
        const unsigned sc = byte_at(scales, is);
        const float dl = d * static_cast<float>(sc & 0xF);
        const float ml = dmin * static_cast<float>(sc >> 4);
        for (int l = 0; l < 16; ++l) *out++ = dl * static_cast<float>((byte_at(q, 16 * part + l) >> shift) & 3) - ml;
      }
    }
  }
}

// block_q3_K { u8 hmask[32]; u8 qs[64]; u8 scales[12]; half d; }: 16 sub-blocks of 16 values with
// 6-bit signed scales (stored + 32) packed in 12 bytes; q = 2 low bits from qs (as Q2_K) minus 4
// where the value's bit in hmask is clear; x = d * (scale - 32) * q.
void dequantize_q3_k(const std::byte* p, float* out) noexcept {
  const std::byte* hmask = p;
  const std::byte* q = p + 32;
  const std::byte* packed = p + 96;
  const float d = half_at(p + 108);
  // Scale i: low 4 bits from byte i (i < 8, low nibble) or byte i - 8 (high nibble), top 2 bits
  // from byte 8 + i % 4 at bit 2 * (i / 4).
  int scales[16];
  for (int i = 0; i < 16; ++i) {
    const unsigned low = i < 8 ? byte_at(packed, i) & 0xF : byte_at(packed, i - 8) >> 4;
    const unsigned high = (byte_at(packed, 8 + i % 4) >> (2 * (i / 4))) & 3;
    scales[i] = static_cast<int>(low | (high << 4)) - 32;
  }
  int is = 0;
  unsigned bit = 1;
  for (int half = 0; half < 2; ++half, q += 32) {
    for (int shift = 0; shift < 8; shift += 2, bit <<= 1) {
      for (int part = 0; part < 2; ++part, ++is) {
        const float dl = d * static_cast<float>(scales[is]);
        for (int l = 0; l < 16; ++l) {
          const int low = static_cast<int>((byte_at(q, 16 * part + l) >> shift) & 3);
          const int value = low - ((byte_at(hmask, 16 * part + l) & bit) ? 0 : 4);
          *out++ = dl * static_cast<float>(value);
        }
      }
    }
  }
}

// block_q4_K { half d; half dmin; u8 scales[12]; u8 qs[128]; }: 8 sub-blocks of 32 values with
// 6-bit scales and mins (scale_min_k4); each 64 values read 32 bytes of qs, low nibbles first;
// x = d * sc * q - dmin * m.
void dequantize_q4_k(const std::byte* p, float* out) noexcept {
  const float d = half_at(p);
  const float dmin = half_at(p + 2);
  const std::byte* scales = p + 4;
  const std::byte* q = p + 16;
  for (int is = 0; is < 8; is += 2, q += 32) {
    float sc, m;
    scale_min_k4(is, scales, sc, m);
    const float d1 = d * sc, m1 = dmin * m;
    scale_min_k4(is + 1, scales, sc, m);
    const float d2 = d * sc, m2 = dmin * m;
    for (int l = 0; l < 32; ++l) *out++ = d1 * static_cast<float>(byte_at(q, l) & 0xF) - m1;
    for (int l = 0; l < 32; ++l) *out++ = d2 * static_cast<float>(byte_at(q, l) >> 4) - m2;
  }
}

// block_q5_K { half d; half dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]; }: Q4_K with a 5th bit
// per value from qh, bit 2k for the low nibbles and 2k + 1 for the high nibbles of the k-th 64.
void dequantize_q5_k(const std::byte* p, float* out) noexcept {
  const float d = half_at(p);
  const float dmin = half_at(p + 2);
  const std::byte* scales = p + 4;
  const std::byte* qh = p + 16;
  const std::byte* q = p + 48;
  unsigned u1 = 1, u2 = 2;
  for (int is = 0; is < 8; is += 2, q += 32, u1 <<= 2, u2 <<= 2) {
    float sc, m;
    scale_min_k4(is, scales, sc, m);
    const float d1 = d * sc, m1 = dmin * m;
    scale_min_k4(is + 1, scales, sc, m);
    const float d2 = d * sc, m2 = dmin * m;
    for (int l = 0; l < 32; ++l)
      *out++ = d1 * static_cast<float>((byte_at(q, l) & 0xF) + ((byte_at(qh, l) & u1) ? 16 : 0)) - m1;
    for (int l = 0; l < 32; ++l)
      *out++ = d2 * static_cast<float>((byte_at(q, l) >> 4) + ((byte_at(qh, l) & u2) ? 16 : 0)) - m2;
  }
}

// block_q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; half d; }: 16 sub-blocks of 16 values with
// signed 8-bit scales; q = low 4 bits from ql | 2 high bits from qh, minus 32; x = d * sc * q.
// Each 128 values: ql[0..63] low nibbles give values 0..63, high nibbles 64..127; qh[0..31] bits
// 0-1, 2-3, 4-5, 6-7 the high bits of values l, l + 32, l + 64, l + 96.
void dequantize_q6_k(const std::byte* p, float* out) noexcept {
  const std::byte* ql = p;
  const std::byte* qh = p + 128;
  const std::byte* sc = p + 192;
  const float d = half_at(p + 208);
  for (int half = 0; half < 2; ++half, ql += 64, qh += 32, sc += 8, out += 128) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const unsigned h = byte_at(qh, l);
      const int q1 = static_cast<int>((byte_at(ql, l) & 0xF) | ((h & 3) << 4)) - 32;
      const int q2 = static_cast<int>((byte_at(ql, l + 32) & 0xF) | (((h >> 2) & 3) << 4)) - 32;
      const int q3 = static_cast<int>((byte_at(ql, l) >> 4) | (((h >> 4) & 3) << 4)) - 32;
      const int q4 = static_cast<int>((byte_at(ql, l + 32) >> 4) | (((h >> 6) & 3) << 4)) - 32;
      auto scale = [&](int k) { return static_cast<float>(static_cast<std::int8_t>(sc[k])); };
      out[l] = d * scale(is) * static_cast<float>(q1);
      out[l + 32] = d * scale(is + 2) * static_cast<float>(q2);
      out[l + 64] = d * scale(is + 4) * static_cast<float>(q3);
      out[l + 96] = d * scale(is + 6) * static_cast<float>(q4);
    }
  }
}

}  // namespace

GgufBlockLayout gguf_block_layout(std::uint32_t type) {
  switch (static_cast<GgufTensorType>(type)) {
    case GgufTensorType::f32: return {4, 1};
    case GgufTensorType::f16: return {2, 1};
    case GgufTensorType::bf16: return {2, 1};
    case GgufTensorType::q8_0: return {2 + 32, 32};          // fp16 scale, 32 x int8
    case GgufTensorType::q4_0: return {2 + 16, 32};          // fp16 scale, 32 x 4 bit
    case GgufTensorType::q4_1: return {2 + 2 + 16, 32};      // fp16 scale, fp16 min, 32 x 4 bit
    case GgufTensorType::q5_0: return {2 + 4 + 16, 32};      // fp16 scale, 32 high bits, 32 x 4 bit
    case GgufTensorType::q5_1: return {2 + 2 + 4 + 16, 32};  // + fp16 min
    case GgufTensorType::q2_k: return {16 + 64 + 2 + 2, kSuperBlock};
    case GgufTensorType::q3_k: return {32 + 64 + 12 + 2, kSuperBlock};
    case GgufTensorType::q4_k: return {2 + 2 + 12 + 128, kSuperBlock};
    case GgufTensorType::q5_k: return {2 + 2 + 12 + 32 + 128, kSuperBlock};
    case GgufTensorType::q6_k: return {128 + 64 + 16 + 2, kSuperBlock};
  }
  throw GgufError(cat("gguf: tensor type: expected one of ", kReadableTensorTypes, ", got ", gguf_tensor_type_name(type), " (", type, ")"));
}

float half_to_float(std::uint16_t bits) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000u) << 16;
  const std::uint32_t exponent = (bits >> 10) & 0x1Fu;
  const std::uint32_t mantissa = bits & 0x3FFu;
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact in fp32.
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 31) return std::bit_cast<float>(sign | 0x7F800000u | (mantissa << 13));
  return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

float bf16_to_float(std::uint16_t bits) noexcept { return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16); }

void dequantize(GgufTensorType type, std::span<const std::byte> src, std::span<float> dst) {
  const auto layout = gguf_block_layout(static_cast<std::uint32_t>(type));
  const std::uint64_t count = dst.size();
  const std::string name = gguf_tensor_type_name(static_cast<std::uint32_t>(type));
  if (count % layout.block_values != 0)
    throw GgufError(cat("gguf: dequantize ", name, ": expected a multiple of ", layout.block_values, " values, got ", count));
  const std::uint64_t blocks = count / layout.block_values;
  if (src.size() != blocks * layout.block_bytes)
    throw GgufError(cat("gguf: dequantize ", name, ": expected ", blocks * layout.block_bytes, " bytes for ", count, " values, got ",
                        src.size()));
  const std::byte* p = src.data();
  float* out = dst.data();
  const std::uint64_t step = layout.block_bytes;
  const auto per_block = static_cast<std::ptrdiff_t>(layout.block_values);
  switch (type) {
    case GgufTensorType::f32:
      for (std::uint64_t i = 0; i < count; ++i) out[i] = load_le<float>(p + 4 * i);
      return;
    case GgufTensorType::f16:
      for (std::uint64_t i = 0; i < count; ++i) out[i] = half_to_float(load_le<std::uint16_t>(p + 2 * i));
      return;
    case GgufTensorType::bf16:
      for (std::uint64_t i = 0; i < count; ++i) out[i] = bf16_to_float(load_le<std::uint16_t>(p + 2 * i));
      return;
    case GgufTensorType::q8_0:
      // block_q8_0 { half d; i8 qs[32]; }: x[j] = d * qs[j].
      for (std::uint64_t b = 0; b < blocks; ++b, p += step, out += per_block) {
        const float d = half_at(p);
        for (int j = 0; j < 32; ++j) out[j] = d * static_cast<float>(static_cast<std::int8_t>(p[2 + j]));
      }
      return;
    case GgufTensorType::q4_0:
      // block_q4_0 { half d; u8 qs[16]; }: the low nibble of qs[j] is x[j], the high nibble is
      // x[j + 16]; x = d * (nibble - 8).
      for (std::uint64_t b = 0; b < blocks; ++b, p += step, out += per_block) {
        const float d = half_at(p);
        for (int j = 0; j < 16; ++j) {
          const unsigned q = byte_at(p + 2, j);
          out[j] = d * static_cast<float>(static_cast<int>(q & 0x0F) - 8);
          out[j + 16] = d * static_cast<float>(static_cast<int>(q >> 4) - 8);
        }
      }
      return;
    case GgufTensorType::q4_1:
      // block_q4_1 { half d; half m; u8 qs[16]; }: same nibble order as Q4_0; x = d * nibble + m.
      for (std::uint64_t b = 0; b < blocks; ++b, p += step, out += per_block) {
        const float d = half_at(p);
        const float m = half_at(p + 2);
        for (int j = 0; j < 16; ++j) {
          const unsigned q = byte_at(p + 4, j);
          out[j] = d * static_cast<float>(q & 0x0F) + m;
          out[j + 16] = d * static_cast<float>(q >> 4) + m;
        }
      }
      return;
    case GgufTensorType::q5_0:
    case GgufTensorType::q5_1:
      for (std::uint64_t b = 0; b < blocks; ++b, p += step, out += per_block) dequantize_q5(p, type == GgufTensorType::q5_1, out);
      return;
    case GgufTensorType::q2_k:
      for (std::uint64_t b = 0; b < blocks; ++b, p += step, out += per_block) dequantize_q2_k(p, out);
      return;
    case GgufTensorType::q3_k:
      for (std::uint64_t b = 0; b < blocks; ++b, p += step, out += per_block) dequantize_q3_k(p, out);
      return;
    case GgufTensorType::q4_k:
      for (std::uint64_t b = 0; b < blocks; ++b, p += step, out += per_block) dequantize_q4_k(p, out);
      return;
    case GgufTensorType::q5_k:
      for (std::uint64_t b = 0; b < blocks; ++b, p += step, out += per_block) dequantize_q5_k(p, out);
      return;
    case GgufTensorType::q6_k:
      for (std::uint64_t b = 0; b < blocks; ++b, p += step, out += per_block) dequantize_q6_k(p, out);
      return;
  }
}

}  // namespace ttq::llama
