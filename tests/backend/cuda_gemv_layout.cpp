// Tests of backend/cuda/gemv_layout.hpp on the CPU: the bit and index arithmetic the CUDA packed
// GEMV and quantize kernels run, checked element by element against the library's packing
// (quant/packing.hpp). The centrepiece emulates one warp's mma.m16n8k16 on a 16 x 32 chunk:
// per-lane registers are built with the same functions the kernel calls, assembled into the A
// and B matrices by the fragment layout of the PTX ISA ("Matrix Fragments for mma.m16n8k16
// with floating point type"), multiplied, and compared with the plain dot product of codes and
// activations. No GPU needed; the kernels' own run is tests/cuda/.
#include <catch2/catch.hpp>

#include <ttq/backend/cuda/gemv_layout.hpp>
#include <ttq/core/half.hpp>
#include <ttq/quant/packing.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

using namespace ttq;
namespace layout = ttq::cuda::layout;

namespace {

float bf16_to_float(std::uint32_t half_bits) { return std::bit_cast<float>((half_bits & 0xFFFFu) << 16); }
std::uint32_t bf16_bits(float v) { return BFloat16::from_float(v).bits; }

/// A [rows, cols] matrix of random codes, packed with the library's pack_code, row-major words.
struct PackedCodes {
  int bits;
  std::int64_t cols, words_per_row;
  std::vector<std::uint32_t> codes;  // unpacked, [rows, cols]
  std::vector<std::uint32_t> words;  // [rows, words_per_row]
};

PackedCodes random_codes(int rows, std::int64_t cols, int bits, std::uint32_t seed) {
  std::mt19937 rng(seed);
  PackedCodes p{bits, cols, layout::padded_words_per_row(cols, bits), {}, {}};
  p.codes.resize(static_cast<std::size_t>(rows * cols));
  p.words.assign(static_cast<std::size_t>(rows * p.words_per_row), 0u);
  for (int r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) {
      const std::uint32_t q = rng() & ((1u << bits) - 1u);
      p.codes[static_cast<std::size_t>(r * cols + c)] = q;
      pack_code(p.words.data() + r * p.words_per_row, c, bits, q);
    }
  return p;
}

/// The two codes of bf16x2 pair j after the kernel's fma, emulated exactly in fp32.
template <int Bits>
std::pair<float, float> unpack_pair(layout::QuadField f, int j) {
  if constexpr (Bits == 8) {
    return {static_cast<float>(layout::byte_code(f, j)), static_cast<float>(layout::byte_code(f, j + 4))};
  } else {
    const std::uint32_t pattern = layout::pair_pattern<Bits>(layout::spread_field<Bits>(f), j);
    const layout::PairUnpack u = layout::pair_unpack<Bits>(j);
    const float factor = bf16_to_float(layout::bf16x2_pow2(-u.exponent));
    const float addend = bf16_to_float(layout::bf16x2_neg_pow2(7 - u.exponent));
    // Every value here is exact in bf16, so fp32 arithmetic is what fma.rn.bf16x2 computes.
    return {std::fma(bf16_to_float(pattern), factor, addend), std::fma(bf16_to_float(pattern >> 16), factor, addend)};
  }
}

template <int Bits>
void check_fields_and_pairs() {
  const std::int64_t cols = 32 * 9 + 17;  // ragged: the last chunk is partial (padding codes are 0)
  const PackedCodes p = random_codes(3, cols, Bits, 100u + Bits);
  const std::int64_t chunks = (cols + 31) / 32;
  for (int r = 0; r < 3; ++r)
    for (std::int64_t c = 0; c < chunks; ++c)
      for (int i = 0; i < 4; ++i) {
        const layout::QuadField f = layout::load_quad_field<Bits>(p.words.data() + r * p.words_per_row + c * Bits, i);
        for (int j = 0; j < 4; ++j) {
          const auto [lo, hi] = unpack_pair<Bits>(f, j);
          for (int half = 0; half < 2; ++half) {
            const std::int64_t col = 32 * c + 8 * i + j + 4 * half;
            const std::uint32_t expected = col < cols ? p.codes[static_cast<std::size_t>(r * cols + col)] : 0u;
            INFO("bits " << Bits << " row " << r << " chunk " << c << " field " << i << " pair " << j << " half " << half);
            REQUIRE((half == 0 ? lo : hi) == static_cast<float>(expected));
          }
        }
      }
}

}  // namespace

TEST_CASE("a quad thread's field holds codes 8i..8i+7 of its chunk, and its pairs unpack to the exact codes",
          "[cuda][layout]") {
  check_fields_and_pairs<2>();
  check_fields_and_pairs<3>();
  check_fields_and_pairs<4>();
  check_fields_and_pairs<8>();
}

TEST_CASE("the bf16 unpacking keeps every code inside bf16's mantissa and uses exact constants", "[cuda][layout]") {
  auto check = [](auto bits_tag) {
    constexpr int kBits = decltype(bits_tag)::value;
    for (int j = 0; j < 4; ++j) {
      const layout::PairUnpack u = layout::pair_unpack<kBits>(j);
      CHECK(u.exponent + kBits <= 7);
      CHECK(bf16_to_float(layout::bf16x2_pow2(-u.exponent)) == std::ldexp(1.0f, -u.exponent));
      CHECK(bf16_to_float(layout::bf16x2_neg_pow2(7 - u.exponent)) == -std::ldexp(1.0f, 7 - u.exponent));
    }
  };
  check(std::integral_constant<int, 2>{});
  check(std::integral_constant<int, 3>{});
  check(std::integral_constant<int, 4>{});
  CHECK(bf16_to_float(layout::kBf16Magic128x2) == 128.0f);
  CHECK(bf16_to_float(layout::kBf16Magic128x2 >> 16) == 128.0f);
}

TEST_CASE("the activation staging order is a permutation whose words are the mma B fragments of the A pairs",
          "[cuda][layout]") {
  for (int p = 0; p < 8; ++p) CHECK(layout::staged_position(layout::staged_column(p)) == p);
  for (int step = 0; step < 2; ++step)
    for (int reg = 0; reg < 2; ++reg) {
      const int word = layout::b_register_word(step, reg);
      const int pair = layout::a_register_pair(step, 2 * reg);  // a0 pairs with b0, a2 with b1
      CHECK(layout::staged_column(2 * word) == pair);
      CHECK(layout::staged_column(2 * word + 1) == pair + 4);
    }
  // Logical k of one k-step covers each of the chunk's columns once per step pair.
  std::vector<int> seen(32, 0);
  for (int step = 0; step < 2; ++step)
    for (int k = 0; k < 16; ++k) ++seen[static_cast<std::size_t>(layout::chunk_column_of_k(step, k))];
  for (int c = 0; c < 32; ++c) CHECK(seen[static_cast<std::size_t>(c)] == 1);
}

namespace {

/// Emulates one warp computing a 16-row x 8-token tile over one 32-code chunk, as
/// packed_gemv_kernel does: returns the fp32-exact D = sum over both k-steps and the hi/lo
/// activation parts, read back from the C fragments, [16][8].
template <int Bits>
std::vector<double> emulate_warp_chunk(const PackedCodes& p, std::int64_t chunk, const std::vector<float>& x) {
  // x: [8 tokens][32 columns of this chunk], fp32 x' values.
  std::uint32_t x_hi[8][32], x_lo[8][32];  // staged bf16 bit patterns, by staged position
  for (int n = 0; n < 8; ++n)
    for (int unit = 0; unit < 4; ++unit)
      for (int pos = 0; pos < 8; ++pos) {
        const float v = x[static_cast<std::size_t>(n * 32 + 8 * unit + layout::staged_column(pos))];
        const std::uint32_t h = bf16_bits(v);
        x_hi[n][8 * unit + pos] = h;
        x_lo[n][8 * unit + pos] = bf16_bits(v - bf16_to_float(h));
      }
  double a[2][16][16] = {}, b_hi[2][16][8] = {}, b_lo[2][16][8] = {};
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane >> 2, i = lane & 3;
    const std::uint32_t* row0 = p.words.data() + g * p.words_per_row + chunk * Bits;
    const std::uint32_t* row1 = p.words.data() + (g + 8) * p.words_per_row + chunk * Bits;
    const layout::QuadField f0 = layout::load_quad_field<Bits>(row0, i);
    const layout::QuadField f1 = layout::load_quad_field<Bits>(row1, i);
    for (int step = 0; step < 2; ++step) {
      // A fragment registers, as the kernel builds them.
      std::pair<float, float> reg_values[4];
      for (int reg = 0; reg < 4; ++reg) {
        const layout::QuadField& f = layout::a_register_row(reg) == 0 ? f0 : f1;
        reg_values[reg] = unpack_pair<Bits>(f, layout::a_register_pair(step, reg));
      }
      // PTX layout: a0 (row g, k 2i..2i+1), a1 (row g+8, same k), a2 (row g, k 2i+8..9), a3 (row g+8, k 2i+8..9).
      const int rows[4] = {g, g + 8, g, g + 8};
      const int ks[4] = {2 * i, 2 * i, 2 * i + 8, 2 * i + 8};
      for (int reg = 0; reg < 4; ++reg) {
        a[step][rows[reg]][ks[reg]] = reg_values[reg].first;
        a[step][rows[reg]][ks[reg] + 1] = reg_values[reg].second;
      }
      // B fragment registers: thread (g, i) holds token n = g; b0 (k 2i..2i+1), b1 (k 2i+8..9).
      for (int reg = 0; reg < 2; ++reg) {
        const int word = layout::b_register_word(step, reg);
        const int k = 2 * i + 8 * reg;
        b_hi[step][k][g] = bf16_to_float(x_hi[g][8 * i + 2 * word]);
        b_hi[step][k + 1][g] = bf16_to_float(x_hi[g][8 * i + 2 * word + 1]);
        b_lo[step][k][g] = bf16_to_float(x_lo[g][8 * i + 2 * word]);
        b_lo[step][k + 1][g] = bf16_to_float(x_lo[g][8 * i + 2 * word + 1]);
      }
    }
  }
  // The A and B matrices say which column each logical k stands for.
  for (int step = 0; step < 2; ++step)
    for (int k = 0; k < 16; ++k) {
      const int col = layout::chunk_column_of_k(step, k);
      for (int m = 0; m < 16; ++m) {
        const std::int64_t global = 32 * chunk + col;
        const std::uint32_t q = global < p.cols ? p.codes[static_cast<std::size_t>(m * p.cols + global)] : 0u;
        REQUIRE(a[step][m][k] == static_cast<double>(q));
      }
      for (int n = 0; n < 8; ++n) {
        const float v = x[static_cast<std::size_t>(n * 32 + col)];
        const float hi = bf16_to_float(bf16_bits(v));
        REQUIRE(b_hi[step][k][n] == static_cast<double>(hi));
        REQUIRE(b_lo[step][k][n] == static_cast<double>(bf16_to_float(bf16_bits(v - hi))));
      }
    }
  // D = sum over steps of A (B_hi + B_lo), then read through the C fragment layout.
  std::vector<double> d(16 * 8, 0.0);
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane >> 2, i = lane & 3;
    for (int reg = 0; reg < 4; ++reg) {
      const int m = g + 8 * layout::c_register_row(reg);
      const int n = 2 * i + layout::c_register_token(reg);
      double sum = 0.0;
      for (int step = 0; step < 2; ++step)
        for (int k = 0; k < 16; ++k) sum += a[step][m][k] * (b_hi[step][k][n] + b_lo[step][k][n]);
      d[static_cast<std::size_t>(m * 8 + n)] = sum;
    }
  }
  return d;
}

template <int Bits>
void check_warp_chunk() {
  const std::int64_t cols = 32 * 3 + 9;  // chunk 3 is ragged
  const PackedCodes p = random_codes(16, cols, Bits, 300u + Bits);
  std::mt19937 rng(7u + Bits);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  for (std::int64_t chunk = 0; chunk < 4; ++chunk) {
    std::vector<float> x(8 * 32);
    for (auto& v : x) v = dist(rng);
    const std::vector<double> d = emulate_warp_chunk<Bits>(p, chunk, x);
    for (int m = 0; m < 16; ++m)
      for (int n = 0; n < 8; ++n) {
        double expected = 0.0, magnitude = 0.0;
        for (int col = 0; col < 32; ++col) {
          const std::int64_t global = 32 * chunk + col;
          const double q = global < cols ? p.codes[static_cast<std::size_t>(m * cols + global)] : 0.0;
          expected += q * x[static_cast<std::size_t>(n * 32 + col)];
          magnitude += std::fabs(q * x[static_cast<std::size_t>(n * 32 + col)]);
        }
        INFO("bits " << Bits << " chunk " << chunk << " row " << m << " token " << n);
        // hi + lo carries x' to about 2^-16 relative.
        REQUIRE(std::fabs(d[static_cast<std::size_t>(m * 8 + n)] - expected) <= 3e-5 * magnitude + 1e-30);
      }
  }
}

}  // namespace

TEST_CASE("an emulated warp's mma over one chunk equals the dot product of codes and activations", "[cuda][layout]") {
  check_warp_chunk<2>();
  check_warp_chunk<3>();
  check_warp_chunk<4>();
  check_warp_chunk<8>();
}

TEST_CASE("the quantize window's field words reproduce pack_code at every bit width", "[cuda][layout]") {
  std::mt19937 rng(11u);
  for (int bits = 2; bits <= 8; ++bits) {
    const int words = 8 * bits;  // one 256-code window
    std::vector<std::uint32_t> expected(static_cast<std::size_t>(words), 0u), got(static_cast<std::size_t>(words), 0u);
    for (int lane = 0; lane < 32; ++lane) {
      std::uint64_t field = 0;
      for (int e = 0; e < 8; ++e) {
        const std::uint32_t q = rng() & ((1u << bits) - 1u);
        field |= static_cast<std::uint64_t>(q) << (bits * e);
        pack_code(expected.data(), 8 * lane + e, bits, q);
      }
      const layout::FieldWords f = layout::window_field_words(field, 8 * lane * bits, 8 * bits);
      got[static_cast<std::size_t>(f.first)] |= f.w0;
      if (f.w1 != 0u) got[static_cast<std::size_t>(f.first + 1)] |= f.w1;
      if (f.w2 != 0u) got[static_cast<std::size_t>(f.first + 2)] |= f.w2;
    }
    INFO("bits " << bits);
    CHECK(got == expected);
  }
}

TEST_CASE("device rows are padded to whole windows, so every batch a kernel reads stays inside its row", "[cuda][layout]") {
  for (int bits = 2; bits <= 8; ++bits)
    for (std::int64_t cols : {1, 31, 32, 100, 255, 256, 257, 4096, 4100, 28672}) {
      const std::int64_t padded = layout::padded_words_per_row(cols, bits);
      CHECK(padded >= packed_words_per_row(cols, bits));
      CHECK(padded % (8 * bits) == 0);
      // The packed GEMV reads chunks up to ceil(cols / 32), in batches of 4 from a multiple of 4.
      const std::int64_t chunks = (cols + 31) / 32;
      CHECK(chunks * bits <= padded);
    }
}

TEST_CASE("the packed GEMV supports 2/3/4/8 bits, integer formats and groups of whole chunks aligned to 128",
          "[cuda][layout]") {
  for (int bits : {2, 3, 4, 8}) {
    for (std::int64_t group : {32, 64, 128, 256, 512, 1024}) CHECK(layout::packed_gemv_supports(bits, group, true));
    CHECK_FALSE(layout::packed_gemv_supports(bits, 128, false));  // NF4: lookup codes
    for (std::int64_t group : {16, 48, 96, 100, 192}) CHECK_FALSE(layout::packed_gemv_supports(bits, group, true));
  }
  for (int bits : {5, 6, 7}) CHECK_FALSE(layout::packed_gemv_supports(bits, 128, true));
}

TEST_CASE("launch plans tile whole groups, fit shared memory, cover every column and leave no split empty",
          "[cuda][layout]") {
  const std::int64_t shapes[][2] = {{4096, 4096}, {8192, 8192}, {28672, 8192}, {8192, 28672}, {1, 32},
                                    {100, 4100}, {130, 96},     {4096, 11008}, {333, 5000}};
  for (const auto& shape : shapes)
    for (int tokens : {1, 2, 4, 7, 8, 9, 16})
      for (std::int64_t group : {32, 64, 128, 256, 512})
        for (int sms : {1, 108, 132}) {
          const std::int64_t d_out = shape[0], d_in = shape[1];
          const layout::GemvPlan plan = layout::plan_packed_gemv(d_out, d_in, tokens, 4, group, true, sms);
          INFO(d_out << "x" << d_in << " T=" << tokens << " g=" << group << " sms=" << sms);
          REQUIRE(plan.supported);
          const std::int64_t unit = std::max<std::int64_t>(group, layout::kBatchCols);
          CHECK(plan.tile_cols % unit == 0);
          CHECK(plan.tile_cols <= std::max<std::int64_t>(4096, unit));
          CHECK(plan.split_cols % plan.tile_cols == 0);
          CHECK(plan.shared_bytes == layout::gemv_shared_bytes(plan.tile_cols, tokens));
          CHECK(plan.shared_bytes <= 46 * 1024);
          CHECK(static_cast<std::int64_t>(plan.splits) * plan.split_cols >= d_in);
          CHECK(static_cast<std::int64_t>(plan.splits - 1) * plan.split_cols < d_in);
          CHECK(plan.splits <= 64);
          CHECK(plan.row_blocks == (d_out + 127) / 128);
        }
  // A group too large for shared memory at 16 tokens falls back to the generic kernel.
  CHECK_FALSE(layout::plan_packed_gemv(64, 8192, 16, 4, 8192, true, 132).supported);
  CHECK(layout::plan_packed_gemv(64, 8192, 1, 4, 8192, true, 132).supported);
  CHECK_FALSE(layout::plan_packed_gemv(64, 4096, 17, 4, 128, true, 132).supported);
}
