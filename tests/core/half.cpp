// Tests of core/half.hpp: exact widening of bf16/fp16 and round-to-nearest-even narrowing.
#include <catch2/catch.hpp>

#include <ttq/core/half.hpp>

#include <cmath>

using namespace ttq;

TEST_CASE("fp16 decodes known bit patterns exactly", "[core][half]") {
  CHECK(Float16{0x3C00}.to_float() == 1.0f);
  CHECK(Float16{0xC000}.to_float() == -2.0f);
  CHECK(Float16{0x7BFF}.to_float() == 65504.0f);
  CHECK(Float16{0x0001}.to_float() == std::ldexp(1.0f, -24));  // smallest subnormal
  CHECK(std::isinf(Float16{0x7C00}.to_float()));
  CHECK(std::isnan(Float16{0x7E00}.to_float()));
}

TEST_CASE("every fp16 value survives a round trip through fp32", "[core][half]") {
  for (std::uint32_t bits = 0; bits < 0x10000u; ++bits) {
    const Float16 h{static_cast<std::uint16_t>(bits)};
    const float f = h.to_float();
    if (std::isnan(f)) continue;
    REQUIRE(Float16::from_float(f).bits == h.bits);
  }
}

TEST_CASE("narrowing rounds half to even", "[core][half]") {
  // 1 + 2^-11 is exactly halfway between fp16 1.0 and 1 + 2^-10: ties to even (1.0).
  CHECK(Float16::from_float(1.0f + std::ldexp(1.0f, -11)).bits == 0x3C00);
  CHECK(Float16::from_float(1.0f + 3.0f * std::ldexp(1.0f, -11)).bits == 0x3C02);
  // bf16: 1 + 2^-8 is halfway between 1.0 and 1 + 2^-7.
  CHECK(BFloat16::from_float(1.0f + std::ldexp(1.0f, -8)).bits == 0x3F80);
  CHECK(BFloat16::from_float(1.0f).to_float() == 1.0f);
  CHECK(std::isnan(BFloat16::from_float(std::nanf("")).to_float()));
}
