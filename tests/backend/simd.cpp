// Tests of backend/simd/ and backend/parallel.hpp: every SIMD kernel against the scalar oracle
// (ggml's test-backend-ops idea): identical codes, scales, zeros and statistics; forward outputs
// within the bound docs/performance.md states ("Accuracy against the oracle"), which this file
// computes per output from the same data. Also the executor hook and OnlineAWQ<..., Simd>.
#include <catch2/catch.hpp>

#include <ttq/backend/parallel.hpp>
#include <ttq/backend/simd/kernels.hpp>
#include <ttq/op/online_awq.hpp>
#include <ttq/stats/adaptive_exponent.hpp>
#include <ttq/stats/static_awq.hpp>

#include <atomic>
#include <cmath>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"

using namespace ttq;

namespace {

struct Layout {
  Index rows, cols, group;
};

// Group layouts: multiples of 32, per-channel, ragged (172 = 5*32 + 12), groups that are not
// multiples of 32 (48, 7), and row counts that are not multiples of the 16-row block.
const std::vector<Layout> kLayouts = {{37, 256, 32}, {37, 256, 64},  {21, 256, 128}, {21, 256, 256},
                                      {19, 172, 32}, {19, 172, 64},  {19, 172, 172}, {17, 200, 48},
                                      {5, 100, 7},   {33, 1024, 128}};

void require_same_quantization(const QuantizedMatrix& a, const QuantizedMatrix& b) {
  REQUIRE(a.rows == b.rows);
  REQUIRE(a.cols == b.cols);
  REQUIRE(a.words_per_row == b.words_per_row);
  CHECK(a.codes == b.codes);  // packed words, padding bits included
  CHECK(a.scales == b.scales);
  CHECK(a.zeros == b.zeros);
}

// Weights with exact ties: group g of each row spans [0, qmax * 0.25] (so s = 0.25 exactly for
// the asymmetric formats) and holds multiples of 0.125, half of which sit exactly between codes.
RowMatrix tie_weights(Index rows, Index cols, Index group, int bits, FormatKind format) {
  RowMatrix w(rows, cols);
  const float qmax = static_cast<float>((1 << bits) - 1);
  const float sym_max = static_cast<float>((1 << (bits - 1)) - 1) * 0.25f;
  for (Index r = 0; r < rows; ++r)
    for (Index c = 0; c < cols; ++c) {
      const Index k = c % group;
      float v = 0.125f * static_cast<float>((k * 2 + 1 + r) % static_cast<Index>(2 * qmax + 1));
      if (format == FormatKind::symmetric) v = std::fmod(v, 2.0f * sym_max) - sym_max;
      w(r, c) = v;
    }
  // Pin each group's range so the scale is exact.
  for (Index r = 0; r < rows; ++r)
    for (Index g = 0; g * group < cols; ++g) {
      w(r, g * group) = format == FormatKind::symmetric ? -sym_max : 0.0f;
      if (g * group + 1 < cols) w(r, g * group + 1) = format == FormatKind::symmetric ? sym_max : qmax * 0.25f;
    }
  return w;
}

// The bound of docs/performance.md for one forward: |y_simd - y_ref| <= bound(t, r) with
//   bound = c_sum * sum_j a_rj |x'_tj|  +  e_L * sum_blocks absmax_b(x'_t) * sum_{j in b} |w^_rj|
//           + c_sum * sum_k |(x A^T)_tk| |B_rk|  +  c_sum * |bias_r|
// where w^ = deq(Q) (the decoded weight before 1/D), e_L = 1 / (2 * limb range) for L limbs
// (0 for fp32 activations), blocks are 32 wide for one limb and min(padded group, 128) wide
// otherwise, and c_sum = 2e-6 sqrt(d_in) covers fp32 summation in another order. a_rj = |w^_rj|
// where the kernel forms (q - z) exactly (prefill, integer limbs with an integer zero); where it
// evaluates the affine form s * sum q x' + c * sum x' (fp32 decode; offset format) the terms it
// rounds are bigger: a_rj = |q_rj s_rg| + |c_rg|.
struct Bound {
  RowMatrix value;  // [T, d_out]
};

Bound forward_bound(const QuantizedMatrix& q, ConstMatrixView x, std::span<const float> inv, ConstMatrixView a,
                    ConstMatrixView b, std::span<const float> bias, int activation_bits, bool prefill) {
  const RowMatrix deq = q.dequantize();
  const Index t_count = x.rows, d_out = q.rows, d_in = q.cols;
  const double c_sum = 2e-6 * std::sqrt(static_cast<double>(d_in)) + 1e-6;
  double e_l = 0.0;
  Index block = 0;
  // Which kernel this call runs (per call: on AVX2 the fp32 kernel serves some widths and token
  // counts, see integer_decode_policy).
  auto integer_for = [&](int bits, Index tokens) {
    switch (activation_bits) {
      case 8: return backend::SimdBackend<8>::integer_decode_for(bits, tokens);
      case 16: return backend::SimdBackend<16>::integer_decode_for(bits, tokens);
      case 24: return backend::SimdBackend<24>::integer_decode_for(bits, tokens);
      default: return false;
    }
  };
  const bool integer = !prefill && q.format != FormatKind::nf4 && integer_for(q.bits, t_count);
  if (integer) {
    const int limbs = activation_bits / 8;
    e_l = 0.5 / (limbs == 1 ? 127.0 : limbs == 2 ? 32639.0 : 8355711.0);
    const Index padded = (q.group + 31) / 32 * 32;
    block = limbs == 1 ? 32 : std::min<Index>(padded, 128);
  }
  const bool affine = !prefill && q.format != FormatKind::nf4 && (!integer || q.format == FormatKind::offset_asymmetric);
  RowMatrix magnitude = deq.cwiseAbs();
  if (affine)
    for (Index r = 0; r < d_out; ++r)
      for (Index j = 0; j < d_in; ++j) {
        const GroupParams gp = q.params(r, j / q.group);
        const float c = q.format == FormatKind::offset_asymmetric ? gp.zero
                        : q.format == FormatKind::symmetric       ? -static_cast<float>(1 << (q.bits - 1)) * gp.scale
                                                                  : -gp.zero * gp.scale;
        magnitude(r, j) = std::fabs(static_cast<float>(q.code(r, j)) * gp.scale) + std::fabs(c);
      }
  Bound out{RowMatrix::Zero(t_count, d_out)};
  for (Index t = 0; t < t_count; ++t) {
    std::vector<double> xp(static_cast<std::size_t>(d_in));
    for (Index j = 0; j < d_in; ++j) xp[static_cast<std::size_t>(j)] = static_cast<double>(x(t, j) * inv[static_cast<std::size_t>(j)]);
    // absmax of x' per activation block (blocks restart at each group; padding is zero).
    std::vector<double> block_max(static_cast<std::size_t>(d_in), 0.0);
    if (integer) {
      for (Index g = 0; g * q.group < d_in; ++g) {
        const Index begin = g * q.group, end = std::min(d_in, begin + q.group);
        for (Index b0 = begin; b0 < end; b0 += block) {
          const Index b1 = std::min(end, b0 + block);
          double m = 0.0;
          for (Index j = b0; j < b1; ++j) m = std::max(m, std::fabs(xp[static_cast<std::size_t>(j)]));
          for (Index j = b0; j < b1; ++j) block_max[static_cast<std::size_t>(j)] = m;
        }
      }
    }
    for (Index r = 0; r < d_out; ++r) {
      double sum_abs = 0.0, limb = 0.0;
      for (Index j = 0; j < d_in; ++j) {
        sum_abs += static_cast<double>(magnitude(r, j)) * std::fabs(xp[static_cast<std::size_t>(j)]);
        limb += std::fabs(static_cast<double>(deq(r, j))) * block_max[static_cast<std::size_t>(j)];
      }
      double lowrank = 0.0;
      for (Index k = 0; k < a.rows; ++k) {
        double proj = 0.0;
        for (Index j = 0; j < d_in; ++j) proj += std::fabs(static_cast<double>(x(t, j)) * a(k, j));
        lowrank += proj * std::fabs(static_cast<double>(b(r, k)));
      }
      const double bias_term = bias.empty() ? 0.0 : std::fabs(static_cast<double>(bias[static_cast<std::size_t>(r)]));
      out.value(t, r) = static_cast<float>(c_sum * (sum_abs + lowrank + bias_term) + e_l * limb * 1.0001 + 1e-30);
    }
  }
  return out;
}

template <class Simd>
void check_forward_with(const QuantizedMatrix& q, const RowMatrix& x, const std::vector<float>& inv, std::uint32_t seed, Index rank,
                        bool with_bias);

template <class Simd>
void check_forward_against_oracle(const QuantizedMatrix& q, Index tokens, std::uint32_t seed, Index rank, bool with_bias) {
  const RowMatrix x = test::outlier_activations(tokens, q.cols, 3, seed);
  const std::vector<float> d = test::lognormal_scales(q.cols, seed + 1);
  std::vector<float> inv(d.size());
  for (std::size_t j = 0; j < d.size(); ++j) inv[j] = 1.0f / d[j];
  check_forward_with<Simd>(q, x, inv, seed, rank, with_bias);
}

/// forward(Simd) on given activations against the oracle, within the bound above.
template <class Simd>
void check_forward_with(const QuantizedMatrix& q, const RowMatrix& x, const std::vector<float>& inv, std::uint32_t seed, Index rank,
                        bool with_bias) {
  const Index tokens = x.rows();
  const RowMatrix a = test::normal_matrix(rank, q.cols, seed + 2, 0.05f);
  const RowMatrix b = test::normal_matrix(q.rows, rank, seed + 3, 0.05f);
  std::vector<float> bias;
  if (with_bias)
    for (Index r = 0; r < q.rows; ++r) bias.push_back(0.01f * static_cast<float>(r % 7));

  RowMatrix y_ref(tokens, q.rows), y(tokens, q.rows);
  y.setConstant(NAN);
  const backend::ForwardArgs ref_args{x, inv, ConstMatrixView(a), ConstMatrixView(b), bias, MatrixView<float>(y_ref)};
  backend::forward(backend::Scalar{}, backend::prepare(backend::Scalar{}, q), ref_args);
  const backend::ForwardArgs args{x, inv, ConstMatrixView(a), ConstMatrixView(b), bias, MatrixView<float>(y)};
  const auto prepared = prepare(Simd{}, q);
  forward(Simd{}, prepared, args);

  const Bound bound = forward_bound(q, x, inv, a, b, bias, Simd::activation_bits, tokens > backend::kSimdDecodeMaxTokens);
  Index violations = 0;
  double worst = 0.0;
  for (Index t = 0; t < tokens; ++t)
    for (Index r = 0; r < q.rows; ++r) {
      const double err = std::fabs(static_cast<double>(y(t, r)) - static_cast<double>(y_ref(t, r)));
      worst = std::max(worst, err / bound.value(t, r));
      if (!(err <= bound.value(t, r))) ++violations;
    }
  INFO(Simd::name << " bits " << q.bits << " format " << format_name(q.format) << " " << q.rows << "x" << q.cols << " g"
                  << q.group << " T" << tokens << " rank " << rank << ": worst error / bound = " << worst);
  CHECK(violations == 0);
}

}  // namespace

TEST_CASE("SIMD quantize gives the oracle's codes, scales and zeros for every format, width and group layout",
          "[backend][simd][quantize]") {
  const FormatKind formats[] = {FormatKind::awq_asymmetric, FormatKind::offset_asymmetric, FormatKind::symmetric,
                                FormatKind::nf4};
  std::uint32_t seed = 100;
  for (const Layout& layout : kLayouts)
    for (FormatKind format : formats)
      for (int bits = 2; bits <= 8; ++bits) {
        if (format == FormatKind::nf4 && bits != 4) continue;
        const QuantConfig config{bits, layout.group, format, 1.0f};
        const RowMatrix w = test::normal_matrix(layout.rows, layout.cols, ++seed);
        const std::vector<float> d = test::lognormal_scales(layout.cols, ++seed);
        INFO(format_name(format) << " b" << bits << " " << layout.rows << "x" << layout.cols << " g" << layout.group);
        require_same_quantization(backend::quantize(backend::Simd{}, config, w, d, {}),
                                  backend::quantize(backend::Scalar{}, config, w, d, {}));
        require_same_quantization(backend::quantize(backend::Simd{}, config, w, {}, {}),
                                  backend::quantize(backend::Scalar{}, config, w, {}, {}));
        // A clip ratio, and per-group clips.
        const QuantConfig clipped{bits, layout.group, format, 0.9f};
        require_same_quantization(backend::quantize(backend::Simd{}, clipped, w, d, {}),
                                  backend::quantize(backend::Scalar{}, clipped, w, d, {}));
        std::vector<float> group_clip(static_cast<std::size_t>(layout.rows * ((layout.cols + layout.group - 1) / layout.group)));
        for (std::size_t i = 0; i < group_clip.size(); ++i) group_clip[i] = 0.7f + 0.3f * static_cast<float>(i % 5) / 4.0f;
        require_same_quantization(backend::quantize(backend::Simd{}, config, w, d, group_clip),
                                  backend::quantize(backend::Scalar{}, config, w, d, group_clip));
      }
}

TEST_CASE("SIMD quantize_into with channel weights: the oracle's codes and its error E within 1e-5", "[backend][simd][quantize]") {
  const FormatKind formats[] = {FormatKind::awq_asymmetric, FormatKind::offset_asymmetric, FormatKind::symmetric,
                                FormatKind::nf4};
  std::uint32_t seed = 900;
  QuantizedMatrix q, q_ref;  // reused across cases: quantize_into reshapes them
  for (const Layout& layout : kLayouts)
    for (FormatKind format : formats)
      for (int bits = 2; bits <= 8; ++bits) {
        if (format == FormatKind::nf4 && bits != 4) continue;
        const QuantConfig config{bits, layout.group, format, 1.0f};
        const RowMatrix w = test::normal_matrix(layout.rows, layout.cols, ++seed);
        const std::vector<float> d = test::lognormal_scales(layout.cols, ++seed);
        const std::vector<double> c = test::channel_weights(layout.cols, ++seed);
        INFO(format_name(format) << " b" << bits << " " << layout.rows << "x" << layout.cols << " g" << layout.group);
        const double e = backend::quantize_into(backend::Simd{}, config, w, d, {}, c, q);
        const double e_ref = backend::quantize_into(backend::Scalar{}, config, w, d, {}, c, q_ref);
        require_same_quantization(q, q_ref);
        CHECK(e_ref > 0.0);
        CHECK(std::abs(e - e_ref) <= 1e-5 * e_ref);
        // Without channel weights: no error, same codes.
        CHECK(backend::quantize_into(backend::Simd{}, config, w, d, {}, {}, q) == 0.0);
        require_same_quantization(q, q_ref);
      }
}

TEST_CASE("the adaptive exponent on the SIMD backend chooses the oracle's exponent and codes", "[backend][simd][op]") {
  std::uint32_t seed = 1200;
  for (int bits : {2, 3, 4, 8})
    for (Index group : {32, 128}) {
      const RowMatrix w = test::normal_matrix(96, 256, ++seed);
      const RowMatrix x = test::outlier_activations(64, 256, 6, ++seed);
      const Quantizer<Dynamic, Dynamic> quantizer({.bits = bits, .group = group});
      OnlineAWQ<Quantizer<Dynamic, Dynamic>, AdaptiveExponent<1>, NoResidual, backend::Scalar> reference(w, {}, quantizer);
      OnlineAWQ<Quantizer<Dynamic, Dynamic>, AdaptiveExponent<1>, NoResidual, backend::Simd> simd(w, {}, quantizer);
      reference.calibrate(x);
      simd.calibrate(x);
      INFO("b" << bits << " g" << group);
      REQUIRE(reference.correlation().chosen_exponent().has_value());
      CHECK(simd.correlation().chosen_exponent() == reference.correlation().chosen_exponent());
      CHECK(simd.quantized().codes == reference.quantized().codes);
      const auto& e = simd.correlation().candidate_errors();
      const auto& e_ref = reference.correlation().candidate_errors();
      REQUIRE(e.size() == e_ref.size());
      for (std::size_t i = 0; i < e.size(); ++i) CHECK(std::abs(e[i] - e_ref[i]) <= 1e-5 * e_ref[i]);
    }
}

TEST_CASE("an operator on the SIMD backend never runs a reference kernel (statistics, search, quantization)",
          "[backend][simd][op]") {
  // The reference kernels count their calls (core/instrumentation.hpp): a policy that fell back
  // to the reference instead of the operator's backend would show here.
  using Q = Quantizer<3, 64>;
  const RowMatrix w = test::normal_matrix(64, 256, 31u);
  const RowMatrix x = test::outlier_activations(24, 256, 4, 32u);
  const auto before = ttq::detail::reference_kernel_calls().load();
  OnlineAWQ<Q, AdaptiveExponent<1>, NoResidual, backend::Simd> adaptive(w, {});
  adaptive.calibrate(x);
  OnlineAWQ<Q, DiagCorrelation<2>, LowRankResidual<2>, backend::Simd> ttq_op(w, {});
  ttq_op.prefill(x);
  OnlineAWQ<Q, StaticAwqScales, NoResidual, backend::Simd> awq(w, {});
  awq.calibrate(x);
  CHECK(ttq::detail::reference_kernel_calls().load() == before);
  // The counter has teeth: the scalar backend runs the reference.
  OnlineAWQ<Q, AdaptiveExponent<1>, NoResidual, backend::Scalar> reference(w, {});
  reference.calibrate(x);
  CHECK(ttq::detail::reference_kernel_calls().load() > before);
}

TEST_CASE("SIMD quantize rounds exact ties half to even like the oracle", "[backend][simd][quantize]") {
  for (FormatKind format : {FormatKind::awq_asymmetric, FormatKind::offset_asymmetric, FormatKind::symmetric})
    for (int bits = 2; bits <= 8; ++bits)
      for (Index group : {32, 64, 128}) {
        const RowMatrix w = tie_weights(19, 256, group, bits, format);
        const QuantConfig config{bits, group, format, 1.0f};
        const QuantizedMatrix simd = backend::quantize(backend::Simd{}, config, w, {}, {});
        const QuantizedMatrix scalar = backend::quantize(backend::Scalar{}, config, w, {}, {});
        INFO(format_name(format) << " b" << bits << " g" << group);
        require_same_quantization(simd, scalar);
        // The data really has ties: some w / s is an exact half.
        const float s = scalar.scales[0];
        bool tie = false;
        for (Index c = 2; c < group && !tie; ++c) {
          const float v = w(0, c) / s;
          tie = v - std::floor(v) == 0.5f;
        }
        CHECK(tie);
      }
}

TEST_CASE("SIMD quantize of bf16 weights equals the oracle on the widened matrix", "[backend][simd][quantize]") {
  for (const Layout& layout : kLayouts)
    for (int bits : {2, 3, 4, 8}) {
      const RowMatrix w32 = test::normal_matrix(layout.rows, layout.cols, 7u + static_cast<std::uint32_t>(bits));
      std::vector<BFloat16> w16(static_cast<std::size_t>(w32.size()));
      for (Index i = 0; i < w32.size(); ++i) w16[static_cast<std::size_t>(i)] = BFloat16::from_float(w32.data()[i]);
      const MatrixView<const BFloat16> view(w16.data(), layout.rows, layout.cols);
      const RowMatrix wide = widen(view);
      const std::vector<float> d = test::lognormal_scales(layout.cols, 9u);
      for (FormatKind format : {FormatKind::awq_asymmetric, FormatKind::offset_asymmetric, FormatKind::nf4}) {
        const QuantConfig config{format == FormatKind::nf4 ? 4 : bits, layout.group, format, 1.0f};
        INFO(format_name(format) << " b" << config.bits << " g" << layout.group);
        require_same_quantization(backend::quantize(backend::Simd{}, config, view, d, {}),
                                  backend::quantize(backend::Scalar{}, config, wide, d, {}));
      }
    }
}

TEST_CASE("SIMD quantize refuses a non-finite scaled weight with the oracle's error", "[backend][simd][errors]") {
  RowMatrix w = test::normal_matrix(20, 128, 3u);
  w(13, 77) = NAN;
  const QuantConfig config{4, 32, FormatKind::awq_asymmetric, 1.0f};
  CHECK_THROWS_AS(backend::quantize(backend::Simd{}, config, w, {}, {}), NonFiniteError);
  w(13, 77) = 1.0f;
  std::vector<float> d(128, 1.0f);
  d[5] = 1e38f;
  w(2, 5) = 1e10f;  // overflows to inf after scaling
  CHECK_THROWS_AS(backend::quantize(backend::Simd{}, config, w, d, {}), NonFiniteError);
}

TEST_CASE("SIMD channel statistics equal the oracle's sums bit for bit for p = 1, 2 and inf",
          "[backend][simd][stats]") {
  for (Index cols : {1, 7, 64, 200, 4096})
    for (Index tokens : {1, 5, 33}) {
      const RowMatrix x = test::outlier_activations(tokens, cols, 2, static_cast<std::uint32_t>(cols + tokens));
      auto run = [&]<int P>(auto backend_tag, double p) {
        std::vector<double> pnorm(static_cast<std::size_t>(cols), 0.5), square(static_cast<std::size_t>(cols), 0.25);
        backend::accumulate_channel_stats<P>(backend_tag, x, p, pnorm, square);
        return std::make_pair(pnorm, square);
      };
      INFO("T " << tokens << " d_in " << cols);
      CHECK(run.template operator()<1>(backend::Simd{}, 1.0) == run.template operator()<1>(backend::Scalar{}, 1.0));
      CHECK(run.template operator()<2>(backend::Simd{}, 2.0) == run.template operator()<2>(backend::Scalar{}, 2.0));
      CHECK(run.template operator()<backend::InfNorm>(backend::Simd{}, INFINITY) ==
            run.template operator()<backend::InfNorm>(backend::Scalar{}, INFINITY));
      // pow-based norms take the oracle's own loops.
      CHECK(run.template operator()<3>(backend::Simd{}, 3.0) == run.template operator()<3>(backend::Scalar{}, 3.0));
      CHECK(run.template operator()<Dynamic>(backend::Simd{}, 1.5) == run.template operator()<Dynamic>(backend::Scalar{}, 1.5));
    }
}

TEST_CASE("SIMD forward matches the scalar forward within the stated bound: bits 2-8, all group layouts, T = 1..16",
          "[backend][simd][forward]") {
  std::uint32_t seed = 500;
  for (const Layout& layout : kLayouts)
    for (int bits = 2; bits <= 8; ++bits)
      for (FormatKind format : {FormatKind::awq_asymmetric, FormatKind::offset_asymmetric, FormatKind::symmetric}) {
        const RowMatrix w = test::normal_matrix(layout.rows, layout.cols, ++seed);
        const QuantizedMatrix q =
            backend::quantize(backend::Scalar{}, QuantConfig{bits, layout.group, format, 1.0f}, w, test::lognormal_scales(layout.cols, seed), {});
        const Index tokens = 1 + static_cast<Index>(seed % 16);
        check_forward_against_oracle<backend::Simd>(q, tokens, seed, 0, false);
        check_forward_against_oracle<backend::SimdInt8>(q, 1 + static_cast<Index>((seed + 5) % 16), seed, 0, true);
        if (bits == 4 || bits == 3) {
          check_forward_against_oracle<backend::SimdFp32>(q, tokens, seed, 3, true);
          check_forward_against_oracle<backend::SimdInt16>(q, tokens, seed, 0, false);
        }
      }
}

TEST_CASE("SIMD forward covers every token count of the decode tiles and the prefill GEMM", "[backend][simd][forward]") {
  const RowMatrix w = test::normal_matrix(50, 320, 77u);
  const QuantizedMatrix q = backend::quantize(backend::Scalar{}, QuantConfig{4, 64, FormatKind::awq_asymmetric, 1.0f}, w, {}, {});
  for (Index tokens = 1; tokens <= 40; ++tokens) {
    check_forward_against_oracle<backend::Simd>(q, tokens, 900u + static_cast<std::uint32_t>(tokens), 5, true);
    if (tokens % 3 == 0) check_forward_against_oracle<backend::SimdInt8>(q, tokens, 1000u + static_cast<std::uint32_t>(tokens), 0, false);
  }
  // Prefill on other bit widths and layouts, with and without a low-rank term.
  for (int bits : {2, 3, 5, 8})
    for (const Layout& layout : {Layout{37, 256, 32}, Layout{19, 172, 64}, Layout{17, 200, 48}}) {
      const QuantizedMatrix qb = backend::quantize(backend::Scalar{}, QuantConfig{bits, layout.group, FormatKind::offset_asymmetric, 1.0f},
                                                   test::normal_matrix(layout.rows, layout.cols, 5u), {}, {});
      check_forward_against_oracle<backend::Simd>(qb, 29, 11u, bits == 3 ? 4 : 0, bits == 5);
    }
}

// The integer decode kernels (AVX-512 VNNI, AVX2 or AArch64 SDOT, whichever this build has; the
// fp32 kernel elsewhere) for every activation precision, width, packed format and token count
// 1..16 (every tile split: 8/4/2/1 on VNNI, 4/2/1 or 2/1 on AVX2, 4/2/1, 2/1 or 1 on AArch64),
// on ragged and non-multiple-of-32 groups, with and without the low-rank term and the bias.
TEST_CASE("SIMD integer decode matches the oracle for every width, format and token count 1..16",
          "[backend][simd][forward][integer]") {
#if defined(__AVX2__) || (defined(__aarch64__) && defined(__ARM_FEATURE_DOTPROD))
  STATIC_REQUIRE(backend::Simd::integer_decode);  // x86-64 with AVX2, AArch64 with SDOT: integer kernels exist
  STATIC_REQUIRE(backend::Simd::integer_decode_for(4, 1));  // and serve one token
#endif
  std::uint32_t seed = 3000;
  for (const Layout& layout : {Layout{19, 172, 64}, Layout{17, 200, 48}, Layout{33, 256, 128}})
    for (int bits = 2; bits <= 8; ++bits)
      for (FormatKind format : {FormatKind::awq_asymmetric, FormatKind::offset_asymmetric, FormatKind::symmetric}) {
        const RowMatrix w = test::normal_matrix(layout.rows, layout.cols, ++seed);
        const QuantizedMatrix q =
            backend::quantize(backend::Scalar{}, QuantConfig{bits, layout.group, format, 1.0f}, w, test::lognormal_scales(layout.cols, seed), {});
        for (Index tokens = 1; tokens <= backend::kSimdDecodeMaxTokens; ++tokens) {
          const Index rank = tokens % 3 == 0 ? 3 : 0;
          const bool bias = tokens % 2 == 1;
          check_forward_against_oracle<backend::Simd>(q, tokens, seed + static_cast<std::uint32_t>(tokens), rank, bias);
          check_forward_against_oracle<backend::SimdInt16>(q, tokens, seed + 50u + static_cast<std::uint32_t>(tokens), rank, !bias);
          check_forward_against_oracle<backend::SimdInt8>(q, tokens, seed + 100u + static_cast<std::uint32_t>(tokens), rank, bias);
        }
      }
}

// Each token's output depends on that token alone: T tokens in one call (token tiles) give,
// bit for bit, what T calls of one token give.
TEST_CASE("SIMD decode gives each token the same bits in any tile", "[backend][simd][forward][integer]") {
  auto check = [&]<class Simd>(Simd, const QuantizedMatrix& q, std::uint32_t seed) {
    const Index tokens = backend::kSimdDecodeMaxTokens;
    const RowMatrix x = test::outlier_activations(tokens, q.cols, 3, seed);
    const std::vector<float> inv(static_cast<std::size_t>(q.cols), 0.75f);
    const auto prepared = prepare(Simd{}, q);
    RowMatrix all(tokens, q.rows), one(1, q.rows);
    forward(Simd{}, prepared, backend::ForwardArgs{x, inv, {}, {}, {}, MatrixView<float>(all)});
    // Only the integer kernels promise this (the fp32 kernel splits its sums by tile size), so
    // only where they serve both calls (AVX2's policy gives some to the fp32 kernel).
    if (!Simd::integer_decode_for(q.bits, tokens) || !Simd::integer_decode_for(q.bits, 1)) return;
    for (Index t = 0; t < tokens; ++t) {
      const RowMatrix xt = x.row(t);
      forward(Simd{}, prepared, backend::ForwardArgs{xt, inv, {}, {}, {}, MatrixView<float>(one)});
      INFO(Simd::name << " bits " << q.bits << " token " << t);
      CHECK(one.row(0) == all.row(t));
    }
  };
  for (int bits = 2; bits <= 8; ++bits) {
    const QuantizedMatrix q = backend::quantize(backend::Scalar{}, QuantConfig{bits, 128, FormatKind::awq_asymmetric, 1.0f},
                                                test::normal_matrix(40, 384, 60u + static_cast<std::uint32_t>(bits)), {}, {});
    check(backend::Simd{}, q, 70u);
    check(backend::SimdInt16{}, q, 71u);
    check(backend::SimdInt8{}, q, 72u);
  }
}

// The extremes of the integer sums: every code at its maximum 2^b - 1 (or alternating with 0),
// zero point 0, and activation blocks whose digits are all +-127 or end in -128: the largest
// 16-bit partial sums the AVX2 kernel forms (a saturated one would be off by thousands).
TEST_CASE("SIMD integer decode is exact at the largest codes and digits", "[backend][simd][forward][integer]") {
  for (int bits = 2; bits <= 8; ++bits)
    for (int pattern = 0; pattern < 2; ++pattern) {
      QuantizedMatrix q;
      q.rows = 24;
      q.cols = 256;
      q.group = 128;
      q.bits = bits;
      q.format = FormatKind::awq_asymmetric;
      q.words_per_row = packed_words_per_row(q.cols, bits);
      q.codes.assign(static_cast<std::size_t>(q.rows * q.words_per_row), 0u);
      const std::uint32_t qmax = (1u << bits) - 1u;
      for (Index r = 0; r < q.rows; ++r)
        for (Index c = 0; c < q.cols; ++c)
          pack_code(q.codes.data() + r * q.words_per_row, c, bits, (pattern == 0 || (c + r) % 2 == 0) ? qmax : 0u);
      q.scales.assign(static_cast<std::size_t>(q.rows * q.groups_per_row()), 0.5f);
      q.zeros.assign(q.scales.size(), 0.0f);
      RowMatrix x(4, q.cols);
      for (Index c = 0; c < q.cols; ++c) {
        x(0, c) = 1.0f;                              // all digits +127
        x(1, c) = -1.0f;                             // all digits -127
        x(2, c) = c % 32 == 0 ? 1.0f : 8355456.0f / 8355711.0f;  // 3 limbs: 127, 127, -128
        x(3, c) = c % 32 == 0 ? -1.0f : -(32384.0f / 32639.0f);  // 2 limbs: -126, -128
      }
      const std::vector<float> inv(static_cast<std::size_t>(q.cols), 1.0f);
      INFO("bits " << bits << " pattern " << pattern);
      // All four tokens in one call, and each alone (a single token takes the integer kernel
      // for every precision and width that has one).
      for (Index t = -1; t < x.rows(); ++t) {
        const RowMatrix xt = t < 0 ? x : RowMatrix(x.row(t));
        check_forward_with<backend::Simd>(q, xt, inv, 5u, 0, false);
        check_forward_with<backend::SimdInt16>(q, xt, inv, 5u, 0, false);
        check_forward_with<backend::SimdInt8>(q, xt, inv, 5u, 0, false);
      }
      // And the exact value: every output is scale * sum q x', computed here in double.
      for (Index t = 0; t < 2; ++t) {
        const RowMatrix xt = x.row(t);
        RowMatrix y(1, q.rows);
        forward(backend::Simd{}, prepare(backend::Simd{}, q), backend::ForwardArgs{xt, inv, {}, {}, {}, MatrixView<float>(y)});
        for (Index r = 0; r < q.rows; ++r) {
          double exact = 0.0;
          for (Index c = 0; c < q.cols; ++c) exact += 0.5 * static_cast<double>(q.code(r, c)) * static_cast<double>(x(t, c));
          CHECK(std::fabs(static_cast<double>(y(0, r)) - exact) <= 1e-5 * std::fabs(exact) + 1e-6);
        }
      }
    }
}

TEST_CASE("SIMD forward of NF4 falls back to the dense product", "[backend][simd][forward]") {
  const RowMatrix w = test::normal_matrix(20, 128, 8u);
  const QuantizedMatrix q = backend::quantize(backend::Scalar{}, QuantConfig{4, 32, FormatKind::nf4, 1.0f}, w, {}, {});
  check_forward_against_oracle<backend::Simd>(q, 3, 4u, 0, true);
  check_forward_against_oracle<backend::Simd>(q, 20, 4u, 2, false);
}

TEST_CASE("OnlineAWQ with the SIMD backend reproduces the scalar operator", "[backend][simd][op]") {
  using Q = Quantizer<4, 32>;
  const RowMatrix w = test::normal_matrix(48, 160, 21u);
  const RowMatrix x = test::outlier_activations(40, 160, 4, 22u);
  std::vector<float> bias(48, 0.25f);
  OnlineAWQ<Q, DiagCorrelation<2>, LowRankResidual<3>, backend::Scalar> scalar_op(w, bias);
  OnlineAWQ<Q, DiagCorrelation<2>, LowRankResidual<3>, backend::Simd> simd_op(w, bias);
  scalar_op.calibrate(x);
  simd_op.calibrate(x);
  CHECK(std::equal(scalar_op.scales().begin(), scalar_op.scales().end(), simd_op.scales().begin()));
  CHECK(scalar_op.quantized().codes == simd_op.quantized().codes);
  CHECK(scalar_op.quantized().scales == simd_op.quantized().scales);
  for (Index tokens : {1, 7, 40}) {
    const RowMatrix xt = x.topRows(tokens);
    const RowMatrix ys = scalar_op.forward(xt), yv = simd_op.forward(xt);
    CHECK((ys - yv).cwiseAbs().maxCoeff() <= 1e-4f * ys.cwiseAbs().maxCoeff());
  }
  // Chunked prefill through the SIMD statistics equals one call.
  OnlineAWQ<Q, DiagCorrelation<2>, NoResidual, backend::Simd> chunked(w, {}), whole(w, {});
  const RowMatrix head = x.topRows(15), tail = x.bottomRows(25);
  chunked.observe(head);
  chunked.observe(tail);
  chunked.requantize();
  whole.calibrate(x);
  CHECK(chunked.quantized().codes == whole.quantized().codes);
}

TEST_CASE("the SIMD backend names its instruction set", "[backend][simd]") {
  CHECK(std::string(backend::Simd::isa).size() > 0);
  CHECK(std::string(backend::Simd::name) == "simd");
  CHECK(std::string(backend::SimdInt8::name) == "simd-int8");
  STATIC_REQUIRE(backend::Backend<backend::Simd>);
  STATIC_REQUIRE(backend::Backend<backend::SimdFp32>);
}

TEST_CASE("the thread pool runs every task exactly once, also with concurrent callers", "[backend][parallel]") {
  const backend::Executor pool = backend::thread_pool_executor(3);
  CHECK(pool.concurrency() == 3);
  for (Index tasks : {1, 2, 3, 17, 1000}) {
    std::vector<std::atomic<int>> hits(static_cast<std::size_t>(tasks));
    auto body = [&](Index i) { hits[static_cast<std::size_t>(i)].fetch_add(1); };
    for (int round = 0; round < 20; ++round) pool.run(tasks, backend::TaskRef(body));
    for (auto& h : hits) CHECK(h.load() == 20);
  }
  // Two threads submitting at once: the second runs inline, nothing is lost.
  std::atomic<long> total{0};
  auto submit = [&] {
    for (int round = 0; round < 200; ++round) {
      auto body = [&](Index i) { total.fetch_add(i + 1); };
      pool.run(10, backend::TaskRef(body));
    }
  };
  std::thread other(submit);
  submit();
  other.join();
  CHECK(total.load() == 2 * 200 * 55);
}

TEST_CASE("an engine's executor replaces the default and is restored after its scope", "[backend][parallel]") {
  std::atomic<int> calls{0};
  {
    backend::ScopedExecutor scope(backend::Executor(2, [&](Index tasks, backend::TaskRef body) {
      calls.fetch_add(1);
      for (Index i = tasks - 1; i >= 0; --i) body(i);  // any order is allowed
    }));
    CHECK(backend::current_executor()->concurrency() == 2);
    const RowMatrix w = test::normal_matrix(64, 256, 1u);
    const QuantConfig config{4, 128, FormatKind::awq_asymmetric, 1.0f};
    require_same_quantization(backend::quantize(backend::Simd{}, config, w, {}, {}),
                              backend::quantize(backend::Scalar{}, config, w, {}, {}));
    CHECK(calls.load() >= 1);
  }
  const int after = calls.load();
  const RowMatrix w = test::normal_matrix(64, 256, 2u);
  (void)backend::quantize(backend::Simd{}, QuantConfig{4, 128, FormatKind::awq_asymmetric, 1.0f}, w, {}, {});
  CHECK(calls.load() == after);
  // parallel_for covers the range exactly once with any executor.
  for (const backend::Executor& e : {backend::Executor::serial(), backend::thread_pool_executor(2)}) {
    std::vector<int> seen(1001, 0);
    backend::parallel_for(e, 1001, 10, [&](Index b, Index end) {
      for (Index i = b; i < end; ++i) seen[static_cast<std::size_t>(i)] += 1;
    });
    CHECK(std::all_of(seen.begin(), seen.end(), [](int v) { return v == 1; }));
  }
}
