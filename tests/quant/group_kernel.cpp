// Tests of quant/group_kernel.hpp and quant/format.hpp: the per-group steps that the scalar oracle
// and the CUDA quantize and GEMV kernels share. The laws that make "identical codes" possible on
// a GPU (the range fold is order-independent bit for bit, signed zeros included; a NaN or Inf
// never passes as finite), the runtime-format forms against the policies, the contract every
// format keeps (encode is round-to-nearest on its grid, the affine decode equals decode), a
// format defined here by the recipe of docs/design.md, and that the scalar backend's parameters
// are exactly a fold + fit of these functions.
#include <catch2/catch.hpp>

#include <ttq/quant/group_kernel.hpp>
#include <ttq/quant/quantizer.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "test_support.hpp"

using namespace ttq;
namespace td = ttq::detail;

namespace {

std::uint32_t bits_of(float v) { return std::bit_cast<std::uint32_t>(v); }

td::GroupRange fold_sequential(const std::vector<float>& v) {
  td::GroupRange r = td::empty_range();
  for (float x : v) r = td::merge_range(r, td::range_of(x));
  return r;
}

/// A pairwise tree fold with the given leaf order: what a warp-shuffle reduction does.
td::GroupRange fold_tree(std::vector<td::GroupRange> level) {
  while (level.size() > 1) {
    std::vector<td::GroupRange> next;
    for (std::size_t i = 0; i + 1 < level.size(); i += 2) next.push_back(td::merge_range(level[i + 1], level[i]));
    if (level.size() % 2) next.push_back(level.back());
    level = std::move(next);
  }
  return level.empty() ? td::empty_range() : level[0];
}

template <class F>
void check_runtime_format_matches_policy(FormatKind kind) {
  std::mt19937 rng(static_cast<unsigned>(kind) + 1u);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (int bits = 2; bits <= 8; ++bits) {
    if (!F::supports_bits(bits)) continue;
    for (int trial = 0; trial < 200; ++trial) {
      const float a = dist(rng), b = dist(rng);
      const td::GroupRange range = td::merge_range(td::range_of(a), td::range_of(b));
      const float clip = trial % 3 == 0 ? 0.8f : 1.0f;
      const GroupParams p = td::fit_group<F>(range, clip, bits);
      const GroupParams pr = td::fit_group(kind, range, clip, bits);
      REQUIRE(bits_of(p.scale) == bits_of(pr.scale));
      REQUIRE(bits_of(p.zero) == bits_of(pr.zero));
      const float w = dist(rng);
      const std::uint32_t q = F::encode(w, p, bits);
      REQUIRE(td::encode_value(kind, w, p, bits) == q);
      REQUIRE(bits_of(td::decode_value(kind, q, p, bits)) == bits_of(F::decode(q, p, bits)));
      // The affine form the packed GEMV applies per group: equal to decode up to the rounding of
      // z * s, i.e. a few ulps of the group's range (code_value * scale is exact for codes < 2^8
      // only up to one rounding, offset one more, their sum one more).
      const AffineDecode affine = td::affine_decode(kind, p, bits);
      for (std::uint32_t code = 0; code < (1u << bits); ++code) {
        const double exact = F::decode(code, p, bits);
        const double via_affine = static_cast<double>(td::code_value(kind, code)) * affine.scale + affine.offset;
        const double range_size = std::fabs(static_cast<double>(p.scale)) * ((1 << bits) - 1) +
                                  std::fabs(static_cast<double>(affine.offset));
        REQUIRE(std::fabs(exact - via_affine) <= 4.0 * 0x1p-24 * range_size);
      }
    }
  }
}

/// A format defined only in this test, by the recipe of docs/design.md ("Adding a format"):
/// unsigned codes on a scale from zero, s = max(mx, 1e-5) / qmax, q = clamp(round(w / s), 0,
/// qmax), w^ = q s (negative weights clip to 0). Its kind is a value outside FormatKind's.
struct UnsignedFromZero {
  static constexpr FormatKind kind = static_cast<FormatKind>(200);
  static constexpr const char* name = "test-unsigned";
  static constexpr int zero_point_bits = 0;
  static constexpr ZeroDomain zero_domain = ZeroDomain::none;
  static constexpr bool integer_codes = true;
  static constexpr bool vector_encoder = false;
  static constexpr bool supports_bits(int b) { return b >= 2 && b <= 8; }
  static GroupParams fit(float /*mn*/, float mx, int bits) {
    return {td::maxf(mx, td::kRangeFloor) / td::max_code(bits), 0.0f};
  }
  static std::uint32_t encode(float w, GroupParams p, int bits) {
    return static_cast<std::uint32_t>(td::clampf(td::round_half_even(w / p.scale), 0.0f, td::max_code(bits)));
  }
  static float decode(std::uint32_t q, GroupParams p, int /*bits*/) { return static_cast<float>(q) * p.scale; }
  static float code_value(std::uint32_t q) { return static_cast<float>(q); }
  static AffineDecode affine(GroupParams p, int /*bits*/) { return {p.scale, 0.0f}; }
};
static_assert(NumberFormat<UnsignedFromZero>);

/// The contract of a format (quant/format.hpp), checked on random groups: codes fit in `bits`,
/// encode picks the nearest point of the format's grid for a weight inside the group's range,
/// the affine form equals decode up to the rounding of z * s, and a code-domain zero decodes to 0.
template <NumberFormat F>
void check_format_contract() {
  std::mt19937 rng(7u);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (int bits = 2; bits <= 8; ++bits) {
    if (!F::supports_bits(bits)) continue;
    for (int trial = 0; trial < 100; ++trial) {
      const float a = dist(rng), b = dist(rng);
      const GroupParams p = td::fit_group<F>(td::merge_range(td::range_of(a), td::range_of(b)), 1.0f, bits);
      const double range_size = static_cast<double>(std::max(std::fabs(a), std::fabs(b))) * 2.0;
      const float w = std::min(a, b) + std::uniform_real_distribution<float>(0.0f, 1.0f)(rng) * std::fabs(a - b);
      const std::uint32_t q = F::encode(w, p, bits);
      INFO(F::name << " bits " << bits << " trial " << trial);
      REQUIRE(q < (1u << bits));
      const double error = std::fabs(static_cast<double>(F::decode(q, p, bits)) - w);
      for (std::uint32_t other = 0; other < (1u << bits); ++other)
        REQUIRE(error <= std::fabs(static_cast<double>(F::decode(other, p, bits)) - w) + 1e-6 * range_size);
      const AffineDecode affine = F::affine(p, bits);
      for (std::uint32_t code = 0; code < (1u << bits); ++code) {
        const double via_affine = static_cast<double>(F::code_value(code)) * affine.scale + affine.offset;
        REQUIRE(std::fabs(F::decode(code, p, bits) - via_affine) <=
                4.0 * 0x1p-24 * (std::fabs(static_cast<double>(p.scale)) * ((1 << bits) - 1) + std::fabs(affine.offset)));
      }
      if constexpr (F::zero_domain == ZeroDomain::code) REQUIRE(F::decode(F::zero_code(p, bits), p, bits) == 0.0f);
      if constexpr (F::integer_codes)
        for (std::uint32_t code = 0; code < (1u << bits); ++code) REQUIRE(F::code_value(code) == static_cast<float>(code));
    }
  }
}

}  // namespace

TEST_CASE("every format keeps the format contract, the test format included", "[quant][format][law]") {
  for_each_format([](auto f) { check_format_contract<decltype(f)>(); });
  check_format_contract<UnsignedFromZero>();
}

TEST_CASE("the format visitor dispatches by kind over its list and refuses an unknown kind", "[quant][format]") {
  std::vector<std::string> names;
  for_each_format([&](auto f) {
    names.emplace_back(decltype(f)::name);
    CHECK(visit_format(decltype(f)::kind, [](auto g) { return std::string(decltype(g)::name); }) == decltype(f)::name);
  });
  CHECK(names == std::vector<std::string>{"awq", "offset", "sym", "nf4"});
  // One list entry is all a new format needs to be dispatched at run time.
  auto name_of = [](auto g) { return std::string(decltype(g)::name); };
  CHECK(td::visit_in(FormatList<AwqAsymmetric, UnsignedFromZero>{}, UnsignedFromZero::kind, name_of) == "test-unsigned");
  // A FormatKind cast from an unchecked integer is a typed error, never a silent default format.
  CHECK_FALSE(is_known_format(UnsignedFromZero::kind));
  try {
    (void)format_name(UnsignedFromZero::kind);
    FAIL("an unknown FormatKind was visited");
  } catch (const RangeError& e) {
    CHECK(e.argument() == "format");
  }
  CHECK_THROWS_AS(QuantConfig({4, 32, UnsignedFromZero::kind, 1.0f}).validate(32), RangeError);
}

TEST_CASE("the range fold gives the same bits in any order, signed zeros included", "[quant][group_kernel][law]") {
  std::mt19937 rng(3u);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<float> v(static_cast<std::size_t>(1 + trial % 257));
    for (auto& x : v) {
      const unsigned pick = rng() % 8;
      x = pick == 0 ? 0.0f : (pick == 1 ? -0.0f : dist(rng));
    }
    const td::GroupRange sequential = fold_sequential(v);
    std::vector<float> shuffled = v;
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    std::vector<td::GroupRange> leaves;
    for (float x : shuffled) leaves.push_back(td::range_of(x));
    const td::GroupRange tree = fold_tree(leaves);
    const td::GroupRange reversed = fold_sequential(std::vector<float>(v.rbegin(), v.rend()));
    REQUIRE(sequential.finite);
    REQUIRE(bits_of(tree.min) == bits_of(sequential.min));
    REQUIRE(bits_of(tree.max) == bits_of(sequential.max));
    REQUIRE(bits_of(reversed.min) == bits_of(sequential.min));
    REQUIRE(bits_of(reversed.max) == bits_of(sequential.max));
    REQUIRE(sequential.min == *std::min_element(v.begin(), v.end()));
    REQUIRE(sequential.max == *std::max_element(v.begin(), v.end()));
  }
  // -0 and +0 are one value in a range: +0, whichever comes first.
  const td::GroupRange zeros = fold_sequential({-0.0f, 0.0f, -0.0f});
  CHECK(bits_of(zeros.min) == 0u);
  CHECK(bits_of(zeros.max) == 0u);
  // The empty range is the identity (a GPU lane without elements contributes it).
  const td::GroupRange one = td::range_of(-2.5f);
  const td::GroupRange merged = td::merge_range(td::empty_range(), one);
  CHECK(merged.min == -2.5f);
  CHECK(merged.max == -2.5f);
  CHECK(merged.finite);
}

TEST_CASE("a NaN or Inf anywhere in a group marks its range non-finite, in any order", "[quant][group_kernel][errors]") {
  for (float bad : {std::nanf(""), INFINITY, -INFINITY}) {
    CHECK_FALSE(td::is_finite(bad));
    CHECK_FALSE(td::range_of(bad).finite);
    for (std::size_t position = 0; position < 5; ++position) {
      std::vector<float> v = {0.5f, -1.0f, 2.0f, 0.25f, 3.0f};
      v[position] = bad;
      CHECK_FALSE(fold_sequential(v).finite);
      std::vector<td::GroupRange> leaves;
      for (float x : v) leaves.push_back(td::range_of(x));
      CHECK_FALSE(fold_tree(leaves).finite);
    }
  }
  CHECK(td::is_finite(3.4028234e38f));
  CHECK(td::is_finite(-1e-45f));  // subnormal
}

TEST_CASE("scaled_weight is one fp32 multiply, and the weight itself when D = 1", "[quant][group_kernel]") {
  std::mt19937 rng(5u);
  std::normal_distribution<float> dist(0.0f, 10.0f);
  for (int i = 0; i < 1000; ++i) {
    const float w = dist(rng), d = std::fabs(dist(rng)) + 0.01f;
    CHECK(bits_of(td::scaled_weight(w, d)) == bits_of(w * d));
    CHECK(bits_of(td::scaled_weight(w, 1.0f)) == bits_of(w));
  }
  CHECK(bits_of(td::scaled_weight(-0.0f, 1.0f)) == bits_of(-0.0f));
}

TEST_CASE("the runtime-format fit, encode and decode equal the format policies bit for bit", "[quant][group_kernel]") {
  check_runtime_format_matches_policy<AwqAsymmetric>(FormatKind::awq_asymmetric);
  check_runtime_format_matches_policy<OffsetAsymmetric>(FormatKind::offset_asymmetric);
  check_runtime_format_matches_policy<Symmetric>(FormatKind::symmetric);
  check_runtime_format_matches_policy<NF4>(FormatKind::nf4);
}

TEST_CASE("the scalar backend's group parameters are a fold of range_of plus fit_group", "[quant][group_kernel]") {
  const RowMatrix w = test::normal_matrix(5, 100, 17u);  // groups of 32: 32, 32, 32, 4 (ragged)
  std::vector<float> d(100);
  for (std::size_t j = 0; j < d.size(); ++j) d[j] = 0.3f + 0.07f * static_cast<float>(j % 13);
  const Quantizer<3, 32, OffsetAsymmetric> quantizer({.clip = 0.9f});
  const QuantizedMatrix q = quantizer.quantize(w, d);
  for (Index r = 0; r < 5; ++r)
    for (Index g = 0; g < q.groups_per_row(); ++g) {
      td::GroupRange range = td::empty_range();
      for (Index c = g * 32; c < g * 32 + q.group_width(g); ++c)
        range = td::merge_range(range, td::range_of(td::scaled_weight(w(r, c), d[static_cast<std::size_t>(c)])));
      const GroupParams p = td::fit_group<OffsetAsymmetric>(range, 0.9f, 3);
      CHECK(bits_of(q.params(r, g).scale) == bits_of(p.scale));
      CHECK(bits_of(q.params(r, g).zero) == bits_of(p.zero));
      for (Index c = g * 32; c < g * 32 + q.group_width(g); ++c)
        CHECK(q.code(r, c) == OffsetAsymmetric::encode(td::scaled_weight(w(r, c), d[static_cast<std::size_t>(c)]), p, 3));
    }
}
