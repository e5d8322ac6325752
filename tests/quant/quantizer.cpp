// Tests of quant/: formats, packing, QuantizedMatrix and Quantizer<Bits, Group, Format>.
// Exactness against fixtures from an independent numpy implementation
// (tests/reference/make_quant_fixtures.py, llm-awq's pseudo_quantize_tensor rule in fp32), and
// the laws the spec promises, on seeded random data.
#include <catch2/catch.hpp>

#include <ttq/quant/quantizer.hpp>

#include <bit>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "test_support.hpp"

using namespace ttq;

namespace {

struct FixtureCase {
  std::string name, format;
  int bits = 0;
  float clip = 1.0f;
  std::vector<float> w, deq;
  std::vector<std::uint32_t> q;
  float scale = 0.0f, zero = 0.0f;
};

std::vector<float> parse_floats(std::istringstream& in, std::size_t n) {
  std::vector<float> v(n);
  std::string token;
  for (auto& x : v) {
    in >> token;
    x = std::strtof(token.c_str(), nullptr);
  }
  return v;
}

std::vector<FixtureCase> load_fixtures() {
  std::ifstream file(std::string(TTQ_TEST_FIXTURES) + "/quant_fixtures.txt");
  REQUIRE(file.good());
  std::vector<FixtureCase> cases;
  std::string line, key, token;
  while (std::getline(file, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream in(line);
    in >> key;
    if (key == "case") {
      FixtureCase c;
      std::size_t n = 0;
      in >> c.name >> token >> c.format >> token >> c.bits >> token >> token;
      c.clip = std::strtof(token.c_str(), nullptr);
      in >> token >> n;
      c.w.resize(n);
      cases.push_back(c);
    } else if (key == "w") {
      cases.back().w = parse_floats(in, cases.back().w.size());
    } else if (key == "q") {
      for (std::size_t i = 0; i < cases.back().w.size(); ++i) {
        std::uint32_t v;
        in >> v;
        cases.back().q.push_back(v);
      }
    } else if (key == "scale") {
      cases.back().scale = parse_floats(in, 1)[0];
    } else if (key == "zero") {
      cases.back().zero = parse_floats(in, 1)[0];
    } else if (key == "deq") {
      cases.back().deq = parse_floats(in, cases.back().w.size());
    }
  }
  return cases;
}

QuantizedMatrix quantize_case(const FixtureCase& c) {
  const ConstMatrixView w(c.w.data(), 1, static_cast<Index>(c.w.size()));
  const QuantizerOptions options{c.bits, static_cast<Index>(c.w.size()), c.clip};
  if (c.format == "awq") return Quantizer<Dynamic, Dynamic, AwqAsymmetric>(options).quantize(w);
  if (c.format == "offset") return Quantizer<Dynamic, Dynamic, OffsetAsymmetric>(options).quantize(w);
  if (c.format == "sym") return Quantizer<Dynamic, Dynamic, Symmetric>(options).quantize(w);
  REQUIRE(c.format == "nf4");
  return Quantizer<Dynamic, Dynamic, NF4>(options).quantize(w);
}

template <class Q>
RowMatrix qdq(const Q& q, const RowMatrix& w) {
  return q.quantize(w).dequantize();
}

}  // namespace

TEST_CASE("every format reproduces the independent numpy reference bit for bit, ties and degenerate groups included",
          "[quant][reference]") {
  const auto cases = load_fixtures();
  REQUIRE(cases.size() >= 150);
  int checked = 0;
  for (const auto& c : cases) {
    INFO("case " << c.name);
    const QuantizedMatrix q = quantize_case(c);
    const RowMatrix deq = q.dequantize();
    REQUIRE(q.groups_per_row() == 1);
    CHECK(std::bit_cast<std::uint32_t>(q.scales[0]) == std::bit_cast<std::uint32_t>(c.scale));
    CHECK(q.zeros[0] == c.zero);  // numeric compare: -0.0 and +0.0 zero points decode identically
    for (std::size_t i = 0; i < c.w.size(); ++i) {
      INFO("element " << i);
      CHECK(q.code(0, static_cast<Index>(i)) == c.q[i]);
      CHECK(deq(0, static_cast<Index>(i)) == c.deq[i]);  // exact; == treats -0.0 as 0.0
    }
    ++checked;
  }
  CHECK(checked == static_cast<int>(cases.size()));
}

TEST_CASE("dequantize decodes every code with its own group's parameters, at every format and width", "[quant][packing]") {
  // Groups of 18 leave a ragged last group; 700 is one group per row.
  for (FormatKind format : {FormatKind::awq_asymmetric, FormatKind::offset_asymmetric, FormatKind::symmetric, FormatKind::nf4})
    for (int bits = 2; bits <= 8; ++bits)
      for (Index group : {18, 96, 700}) {
        if (format == FormatKind::nf4 && bits != 4) continue;
        QuantizedMatrix q{.rows = 3, .cols = 700, .group = group, .bits = bits, .format = format};
        q.words_per_row = packed_words_per_row(q.cols, bits);
        q.codes.assign(static_cast<std::size_t>(q.rows * q.words_per_row), 0u);
        for (Index r = 0; r < q.rows; ++r)
          for (Index c = 0; c < q.cols; ++c)
            pack_code(q.codes.data() + r * q.words_per_row, c, bits, static_cast<std::uint32_t>((r * 131 + c * 37 + 5) % (1 << bits)));
        const auto n = static_cast<std::size_t>(q.rows * q.groups_per_row());
        for (std::size_t i = 0; i < n; ++i) {
          q.scales.push_back(0.01f * static_cast<float>(i + 1));
          q.zeros.push_back(static_cast<float>(i % 3));
        }
        const RowMatrix deq = q.dequantize();
        visit_format(format, [&](auto f) {
          using F = decltype(f);
          for (Index r = 0; r < q.rows; ++r)
            for (Index c = 0; c < q.cols; ++c) {
              INFO("format " << static_cast<int>(format) << " bits " << bits << " group " << group << " at " << r << "," << c);
              REQUIRE(deq(r, c) == F::decode(q.code(r, c), q.params(r, c / group), bits));
            }
        });
      }
}

TEST_CASE("packing round-trips every code at every bit width, including codes straddling words; rows read in order", "[quant][packing]") {
  for (int bits = 2; bits <= 8; ++bits) {
    for (Index cols : {1, 7, 31, 32, 33, 100}) {
      std::vector<std::uint32_t> words(static_cast<std::size_t>(packed_words_per_row(cols, bits)), 0u);
      for (Index k = 0; k < cols; ++k) pack_code(words.data(), k, bits, static_cast<std::uint32_t>((k * 37 + 11) % (1 << bits)));
      for (Index k = 0; k < cols; ++k)
        REQUIRE(unpack_code(words.data(), k, bits) == static_cast<std::uint32_t>((k * 37 + 11) % (1 << bits)));
      // The sequential reader gives the same codes and reads no word past the row (the vector
      // has exactly the row's words: ASan in CI sees any overread).
      RowCodeReader reader(words.data(), bits);
      for (Index k = 0; k < cols; ++k) REQUIRE(reader.next() == unpack_code(words.data(), k, bits));
      // Padding bits past the last code stay zero.
      const Index used = cols * bits;
      if (used % 32 != 0) CHECK((words.back() >> (used % 32)) == 0u);
    }
  }
  // The documented layout, spelled out for 3 bits: code k at bits [3k, 3k+3) of the row stream.
  std::uint32_t row[2] = {0, 0};
  pack_code(row, 10, 3, 0b101u);  // bits 30..32: straddles words 0 and 1
  CHECK(row[0] == (0b01u << 30));
  CHECK(row[1] == 0b1u);
}

TEST_CASE("a round trip stays within half a step for the offset format always", "[quant][law]") {
  for (int bits = 2; bits <= 8; ++bits) {
    const RowMatrix w = test::normal_matrix(8, 96, 100u + static_cast<unsigned>(bits));
    const Quantizer<Dynamic, 32, OffsetAsymmetric> quantizer({.bits = bits});
    const QuantizedMatrix q = quantizer.quantize(w);
    const RowMatrix deq = q.dequantize();
    for (Index r = 0; r < w.rows(); ++r)
      for (Index c = 0; c < w.cols(); ++c) {
        const float step = q.params(r, c / 32).scale;
        REQUIRE(std::fabs(deq(r, c) - w(r, c)) <= 0.5f * step * (1.0f + 1e-5f));
      }
  }
}

TEST_CASE("the AWQ format is within half a step when the group straddles zero and clips hard when it does not",
          "[quant][law]") {
  for (int bits = 2; bits <= 8; ++bits) {
    const RowMatrix w = test::normal_matrix(8, 64, 200u + static_cast<unsigned>(bits));
    const Quantizer<Dynamic, 16> quantizer({.bits = bits});
    const QuantizedMatrix q = quantizer.quantize(w);
    const RowMatrix deq = q.dequantize();
    for (Index r = 0; r < w.rows(); ++r)
      for (Index g = 0; g < 4; ++g) {
        const auto block = w.row(r).segment(g * 16, 16);
        if (!(block.minCoeff() < 0.0f && block.maxCoeff() > 0.0f)) continue;
        const float step = q.params(r, g).scale;
        // Half a step, plus the half step the rounded zero point may shift the grid by.
        for (Index c = g * 16; c < g * 16 + 16; ++c) REQUIRE(std::fabs(deq(r, c) - w(r, c)) <= step * (1.0f + 1e-5f));
      }
  }
  // Weights in [0.5, 1.0] at 4 bits: s = 0.5 / 15, z = clamp(-round(0.5 / s), 0, 15) = 0, and
  // w / s >= 15 everywhere, so every code saturates at 15 and every weight decodes to 0.5.
  RowMatrix positive(1, 16);
  for (Index c = 0; c < 16; ++c) positive(0, c) = 0.5f + 0.5f * static_cast<float>(c) / 15.0f;
  const QuantizedMatrix q = Quantizer<4, 16>().quantize(positive);
  CHECK(q.zeros[0] == 0.0f);
  const RowMatrix deq = q.dequantize();
  for (Index c = 0; c < 16; ++c) {
    CHECK(q.code(0, c) == 15u);
    CHECK(deq(0, c) == Approx(0.5f).epsilon(1e-6));
  }
}

TEST_CASE("quantizing an already quantized matrix changes nothing", "[quant][law]") {
  const RowMatrix w = test::normal_matrix(6, 64, 7u);
  const Quantizer<3, 32, OffsetAsymmetric> quantizer;
  const RowMatrix once = qdq(quantizer, w);
  const RowMatrix twice = qdq(quantizer, once);
  CHECK((once - twice).cwiseAbs().maxCoeff() <= 1e-6f * once.cwiseAbs().maxCoeff());
}

TEST_CASE("a ragged last group equals the same elements quantized alone", "[quant][law]") {
  const RowMatrix w = test::normal_matrix(4, 70, 11u);  // groups of 32: 32, 32, 6
  const QuantizedMatrix whole = Quantizer<4, 32>().quantize(w);
  REQUIRE(whole.groups_per_row() == 3);
  CHECK(whole.group_width(2) == 6);
  const RowMatrix tail = w.rightCols(6);
  const QuantizedMatrix alone = Quantizer<4, Dynamic>({.group = 6}).quantize(tail);
  for (Index r = 0; r < 4; ++r) {
    CHECK(whole.params(r, 2).scale == alone.params(r, 0).scale);
    CHECK(whole.params(r, 2).zero == alone.params(r, 0).zero);
    for (Index c = 0; c < 6; ++c) CHECK(whole.code(r, 64 + c) == alone.code(r, c));
  }
}

TEST_CASE("a power-of-two factor on the column scales changes no code", "[quant][law]") {
  const RowMatrix w = test::normal_matrix(8, 64, 13u);
  std::vector<float> d(64), d_scaled(64);
  for (Index j = 0; j < 64; ++j) {
    d[static_cast<std::size_t>(j)] = 0.25f + static_cast<float>(j % 9) * 0.3f;
    d_scaled[static_cast<std::size_t>(j)] = 8.0f * d[static_cast<std::size_t>(j)];
  }
  for (int bits : {2, 3, 4, 8}) {
    const Quantizer<Dynamic, 32> quantizer({.bits = bits});
    CHECK(quantizer.quantize(w, d).unpacked_codes() == quantizer.quantize(w, d_scaled).unpacked_codes());
  }
}

TEST_CASE("more bits give lower error on fixed seeded data (a tendency, not a law)", "[quant][tendency]") {
  const RowMatrix w = test::normal_matrix(32, 128, 17u);
  double previous = INFINITY;
  for (int bits = 2; bits <= 8; ++bits) {
    const double error = (qdq(Quantizer<Dynamic, 32>({.bits = bits}), w) - w).squaredNorm();
    CHECK(error < previous);
    previous = error;
  }
}

TEST_CASE("per-channel groups span the whole row", "[quant]") {
  const RowMatrix w = test::normal_matrix(3, 50, 19u);
  const QuantizedMatrix q = Quantizer<4, PerChannel>().quantize(w);
  CHECK(q.group == 50);
  CHECK(q.groups_per_row() == 1);
  CHECK(q.bits_per_weight() == Approx(4.0 + 40.0 / 50.0));
}

TEST_CASE("bits per weight counts codes, scales and zero points, ragged groups exactly", "[quant]") {
  const RowMatrix w = test::normal_matrix(2, 70, 23u);
  CHECK(Quantizer<4, 32>().quantize(w).bits_per_weight() == Approx(4.0 + 3.0 * 40.0 / 70.0));
  CHECK(Quantizer<3, 32, OffsetAsymmetric>().quantize(w).bits_per_weight() == Approx(3.0 + 3.0 * 64.0 / 70.0));
  CHECK(Quantizer<4, 32, Symmetric>().quantize(w).bits_per_weight() == Approx(4.0 + 3.0 * 32.0 / 70.0));
  CHECK(Quantizer<4, 32, NF4>().quantize(w).bits_per_weight() == Approx(4.0 + 3.0 * 32.0 / 70.0));
}

TEST_CASE("the clip ratio shrinks the range before the scale", "[quant]") {
  RowMatrix w(1, 4);
  w << -1.0f, -0.2f, 0.3f, 1.0f;
  const QuantizedMatrix plain = Quantizer<Dynamic, 4>({.bits = 4}).quantize(w);
  const QuantizedMatrix clipped = Quantizer<Dynamic, 4>({.bits = 4, .clip = 0.5f}).quantize(w);
  CHECK(clipped.scales[0] == Approx(plain.scales[0] * 0.5f));
  CHECK(clipped.code(0, 3) == 15u);  // 1.0 is beyond the clipped range and saturates
}

TEST_CASE("bad quantizer input gets a typed error naming the argument", "[quant][errors]") {
  const RowMatrix w = test::normal_matrix(2, 16, 29u);
  auto argument_of = [](auto&& f) {
    try {
      f();
    } catch (const Error& e) {
      return e.argument();
    }
    return std::string("<no error>");
  };
  CHECK(argument_of([] { Quantizer<Dynamic, 8>({.bits = 1}); }) == "bits");
  CHECK(argument_of([] { Quantizer<Dynamic, 8>({.bits = 9}); }) == "bits");
  CHECK(argument_of([] { Quantizer<Dynamic, 8, NF4>({.bits = 3}); }) == "bits");
  CHECK(argument_of([] { Quantizer<4, Dynamic>({.group = 0}); }) == "group");
  CHECK(argument_of([] { Quantizer<4, 8>({.clip = 0.0f}); }) == "clip");
  CHECK(argument_of([] { Quantizer<4, 8>({.clip = 1.5f}); }) == "clip");
  CHECK(argument_of([&] { Quantizer<4, 32>().quantize(w); }) == "group");  // fixed group larger than d_in
  CHECK_THROWS_AS((Quantizer<4, 32>().quantize(w)), RangeError);
  std::vector<float> short_scale(3, 1.0f);
  CHECK(argument_of([&] { Quantizer<4, 8>().quantize(w, short_scale); }) == "col_scale");
}

TEST_CASE("a NaN or Inf weight never becomes a code", "[quant][errors]") {
  RowMatrix w = test::normal_matrix(2, 16, 31u);
  w(1, 5) = std::nanf("");
  CHECK_THROWS_AS((Quantizer<4, 8>().quantize(w)), NonFiniteError);
  w(1, 5) = INFINITY;
  CHECK_THROWS_AS((Quantizer<4, 8>().quantize(w)), NonFiniteError);
  // Finite weights times a huge scale overflow to Inf: also refused.
  RowMatrix big = RowMatrix::Constant(1, 8, 3e38f);
  std::vector<float> d(8, 10.0f);
  CHECK_THROWS_AS((Quantizer<4, 8>().quantize(big, d)), NonFiniteError);
}

TEST_CASE("a zero or negative column scale is refused, naming col_scale (issue 16)", "[quant][errors]") {
  const RowMatrix w = test::normal_matrix(2, 16, 37u);
  for (float bad : {0.0f, -1.0f, -0.0f}) {
    std::vector<float> d(16, 1.0f);
    d[5] = bad;
    try {
      (void)Quantizer<4, 8>().quantize(w, d);
      FAIL("col_scale " << bad << " accepted");
    } catch (const RangeError& e) {
      CHECK(e.argument() == "col_scale");
      CHECK(std::string(e.what()).find("channel 5") != std::string::npos);
    }
  }
  std::vector<float> d(16, 1.0f);
  d[3] = std::nanf("");
  CHECK_THROWS_AS((Quantizer<4, 8>().quantize(w, d)), NonFiniteError);
}

TEST_CASE("a group whose range exceeds float's is refused, naming the weight or col_scale, never NaN codes (issue 27)",
          "[quant][errors][issue27]") {
  // Every weight is finite, but max - min = 6e38 overflows: the step would be Inf and every
  // decode NaN.
  RowMatrix w = test::normal_matrix(2, 16, 91u);
  w(1, 9) = 3e38f;
  w(1, 10) = -3e38f;
  try {
    (void)Quantizer<4, 8>().quantize(w);
    FAIL("a group spanning 6e38 quantized");
  } catch (const NonFiniteError& e) {
    CHECK(e.argument() == "weight");
    CHECK(std::string(e.what()).find("row 1, columns 8..15") != std::string::npos);
  }
  // Finite scaled weights whose range overflows: the column scales are to blame.
  RowMatrix v = test::normal_matrix(2, 16, 92u);
  v(0, 2) = 1e38f;
  v(0, 3) = -1e38f;
  std::vector<float> d(16, 1.0f);
  d[2] = d[3] = 3.0f;  // +-3e38: finite, but 6e38 apart
  try {
    (void)Quantizer<4, 8>().quantize(v, d);
    FAIL("a scaled group spanning 6e38 quantized");
  } catch (const NonFiniteError& e) {
    CHECK(e.argument() == "col_scale");
  }
  // The symmetric format fits max |w| only: the same group is representable there.
  CHECK_NOTHROW(Quantizer<4, 8, Symmetric>().quantize(v, d));
}
