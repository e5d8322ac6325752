// Tests of ttq::dispatch (include/ttq/backend/dispatch.hpp): it picks the ISA this CPU supports,
// and every ISA it can run gives the scalar oracle's codes, scales, zeros and statistics and
// forward outputs within tolerance, alone and inside OnlineAWQ<..., Dispatched>.
//
// This binary is compiled for the baseline ISA. CI also runs it on QEMU's emulated x86-64 CPU,
// which has AVX2 but no AVX-512: there it must pick avx2, and an AVX-512 instruction leaking
// into the avx2 path would kill it with SIGILL (docs/backends.md).
#include <catch2/catch.hpp>

#include <ttq/backend/dispatch.hpp>
#include <ttq/backend/scalar/kernels.hpp>
#include <ttq/op/online_awq.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "test_support.hpp"

using namespace ttq;
using backend::Isa;

namespace {

// The ISAs the dispatch library can run here.
std::vector<Isa> runnable_isas() {
  std::vector<Isa> out;
  for (Isa isa : backend::compiled_isas())
    if (backend::cpu_supports(isa)) out.push_back(isa);
  return out;
}

// What best_isa() should say, from a source independent of cpuid or the auxiliary vector:
// TTQ_EXPECT_BEST_ISA (set by the emulated runs), else the feature flags of /proc/cpuinfo.
std::optional<Isa> expected_best_isa() {
  if (const char* env = std::getenv("TTQ_EXPECT_BEST_ISA"); env != nullptr && *env != '\0') return backend::parse_isa(env);
  auto compiled = [](Isa isa) {
    const auto c = backend::compiled_isas();
    return std::find(c.begin(), c.end(), isa) != c.end();
  };
  // /proc/cpuinfo's feature list (under qemu-user it is the host's, hence TTQ_EXPECT_BEST_ISA there).
#if defined(__aarch64__)
  const std::string features_line = "Features";
#else
  const std::string features_line = "flags";
#endif
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  std::set<std::string> flags;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind(features_line, 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    for (std::string w; words >> w;) flags.insert(w);
    break;
  }
  if (flags.empty()) return std::nullopt;
  auto has = [&](std::initializer_list<const char*> names) {
    return std::all_of(names.begin(), names.end(), [&](const char* n) { return flags.count(n) > 0; });
  };
#if defined(__aarch64__)
  if (compiled(Isa::neon_dotprod) && has({"asimddp"})) return Isa::neon_dotprod;
  return compiled(Isa::neon) ? Isa::neon : Isa::scalar;  // NEON is part of AArch64
#else
  if (compiled(Isa::avx512) && has({"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd", "avx512_vnni", "avx2", "fma"}))
    return Isa::avx512;
  if (compiled(Isa::avx2) && has({"avx2", "fma"})) return Isa::avx2;
  return Isa::scalar;
#endif
}

void require_same_quantization(const QuantizedMatrix& a, const QuantizedMatrix& b) {
  REQUIRE(a.rows == b.rows);
  REQUIRE(a.cols == b.cols);
  CHECK(a.codes == b.codes);
  CHECK(a.scales == b.scales);
  CHECK(a.zeros == b.zeros);
}

// |q_rj s_rg| + |z_rg s_rg|: the terms an fp32 kernel that evaluates the affine form
// s * sum q x' - z s * sum x' rounds (AWQ format), never less than |deq(Q)_rj|.
RowMatrix affine_magnitude(const QuantizedMatrix& q) {
  RowMatrix m(q.rows, q.cols);
  for (Index r = 0; r < q.rows; ++r)
    for (Index j = 0; j < q.cols; ++j) {
      const GroupParams gp = q.params(r, j / q.group);
      m(r, j) = std::fabs(static_cast<float>(q.code(r, j)) * gp.scale) + std::fabs(gp.zero * gp.scale);
    }
  return m;
}

// |y - y_ref| <= 1e-5 * (sum_j a_rj |x'_tj| + extra) + 1e-6 with a = affine_magnitude: looser
// than the per-output bound tests/backend/simd.cpp proves for the same kernels; this file
// checks the wiring of the table, not the kernels' rounding.
void require_close_forward(const RowMatrix& y, const RowMatrix& y_ref, const QuantizedMatrix& q, const RowMatrix& x_scaled,
                           const RowMatrix* extra = nullptr) {
  RowMatrix magnitude = x_scaled.cwiseAbs() * affine_magnitude(q).transpose();
  if (extra) magnitude += *extra;
  for (Index t = 0; t < y.rows(); ++t)
    for (Index r = 0; r < y.cols(); ++r) {
      INFO("t " << t << " r " << r);
      CHECK(std::fabs(y(t, r) - y_ref(t, r)) <= 1e-5f * magnitude(t, r) + 1e-6f);
    }
}

// Restores the active ISA when a test that changes it ends.
struct ActiveIsaGuard {
  Isa saved = backend::active_isa();
  ~ActiveIsaGuard() { backend::set_active_isa(saved); }
};

}  // namespace

TEST_CASE("dispatch picks the best ISA this CPU supports", "[dispatch]") {
  const auto compiled = backend::compiled_isas();
  REQUIRE_FALSE(compiled.empty());
  CHECK(compiled.front() == Isa::scalar);
  CHECK(backend::cpu_supports(Isa::scalar));
  const std::optional<Isa> expected = expected_best_isa();
  if (!expected) {
    WARN("no /proc/cpuinfo flags and no TTQ_EXPECT_BEST_ISA: best_isa() not cross-checked");
    return;
  }
  INFO("best_isa() = " << backend::isa_name(backend::best_isa()) << ", expected " << backend::isa_name(*expected));
  CHECK(backend::best_isa() == *expected);
  CHECK(backend::isa_kernels(backend::best_isa()).isa == backend::best_isa());
}

TEST_CASE("ISA names round-trip and bad choices are typed errors", "[dispatch][errors]") {
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512, Isa::neon, Isa::neon_dotprod})
    CHECK(backend::parse_isa(backend::isa_name(isa)) == isa);
  CHECK_THROWS_AS(backend::parse_isa("sse9"), RangeError);
  for (Isa isa : {Isa::avx2, Isa::avx512, Isa::neon, Isa::neon_dotprod}) {
    const auto compiled = backend::compiled_isas();
    if (std::find(compiled.begin(), compiled.end(), isa) != compiled.end() && backend::cpu_supports(isa)) continue;
    INFO(backend::isa_name(isa));
    CHECK_THROWS_AS(backend::isa_kernels(isa), StateError);
    CHECK_THROWS_AS(backend::set_active_isa(isa), StateError);
  }
  CHECK_THROWS_AS(forward(backend::Dispatched{}, backend::DispatchedPrepared{}, backend::ForwardArgs{}), StateError);
}

TEST_CASE("every runnable ISA gives the oracle's codes, scales, zeros and statistics", "[dispatch][quantize]") {
  struct Layout {
    Index rows, cols, group;
  };
  const Layout layouts[] = {{37, 256, 32}, {21, 256, 128}, {19, 172, 32}, {19, 172, 172}, {17, 200, 48}, {5, 100, 7}};
  const FormatKind formats[] = {FormatKind::awq_asymmetric, FormatKind::offset_asymmetric, FormatKind::symmetric, FormatKind::nf4};
  for (Isa isa : runnable_isas()) {
    const backend::IsaKernels& k = backend::isa_kernels(isa);
    CHECK(k.isa == isa);
    std::uint32_t seed = 500;
    for (const Layout& layout : layouts)
      for (FormatKind format : formats)
        for (int bits = 2; bits <= 8; ++bits) {
          if (format == FormatKind::nf4 && bits != 4) continue;
          const RowMatrix w = test::normal_matrix(layout.rows, layout.cols, ++seed);
          const std::vector<float> d = test::lognormal_scales(layout.cols, ++seed);
          std::vector<float> clip(static_cast<std::size_t>(layout.rows * ((layout.cols + layout.group - 1) / layout.group)));
          for (std::size_t i = 0; i < clip.size(); ++i) clip[i] = 0.7f + 0.1f * static_cast<float>(i % 4);
          const QuantConfig config{bits, layout.group, format, 1.0f};
          INFO(backend::isa_name(isa) << " " << format_name(format) << " b" << bits << " " << layout.rows << "x" << layout.cols
                                      << " g" << layout.group);
          auto quantize_with = [&](std::span<const float> group_clip) {
            QuantizedMatrix q;
            k.quantize_into(config, w, d, group_clip, {}, q);
            return q;
          };
          require_same_quantization(quantize_with({}), backend::quantize(backend::Scalar{}, config, w, d, {}));
          require_same_quantization(quantize_with(clip), backend::quantize(backend::Scalar{}, config, w, d, clip));
          // The fused error: same codes, E within the stated relative tolerance of the reference's.
          const std::vector<double> c = test::channel_weights(layout.cols, ++seed);
          QuantizedMatrix q_err, q_ref;
          const double e = k.quantize_into(config, w, d, {}, c, q_err);
          const double e_ref = backend::quantize_into(backend::Scalar{}, config, w, d, {}, c, q_ref);
          require_same_quantization(q_err, q_ref);
          CHECK(std::abs(e - e_ref) <= 1e-5 * e_ref);
          // bf16 weights: the oracle on the exactly widened matrix.
          std::vector<BFloat16> w16(static_cast<std::size_t>(w.size()));
          for (Index i = 0; i < w.size(); ++i) w16[static_cast<std::size_t>(i)] = BFloat16::from_float(w.data()[i]);
          const MatrixView<const BFloat16> view(w16.data(), layout.rows, layout.cols);
          const RowMatrix wide = widen(view);
          QuantizedMatrix q16;
          k.quantize_into_bf16(config, view, d, {}, {}, q16);
          require_same_quantization(q16, backend::quantize(backend::Scalar{}, config, wide, d, {}));
        }
    // Statistics, p = 1, 2, inf and a Dynamic p.
    const RowMatrix x = test::outlier_activations(37, 203, 5, 9u);
    for (int p_kind : {1, 2, backend::InfNorm, Dynamic}) {
      std::vector<double> pn(203, 0.0), sq(203, 0.0), pn_ref(203, 0.0), sq_ref(203, 0.0);
      k.accumulate_channel_stats(p_kind, x, 3.0, pn, sq);
      switch (p_kind) {
        case 1: backend::accumulate_channel_stats<1>(backend::Scalar{}, x, 3.0, pn_ref, sq_ref); break;
        case 2: backend::accumulate_channel_stats<2>(backend::Scalar{}, x, 3.0, pn_ref, sq_ref); break;
        case backend::InfNorm: backend::accumulate_channel_stats<backend::InfNorm>(backend::Scalar{}, x, 3.0, pn_ref, sq_ref); break;
        default: backend::accumulate_channel_stats<Dynamic>(backend::Scalar{}, x, 3.0, pn_ref, sq_ref); break;
      }
      INFO(backend::isa_name(isa) << " p kind " << p_kind);
      CHECK(pn == pn_ref);
      CHECK(sq == sq_ref);
    }
  }
}

TEST_CASE("every runnable ISA's forward matches the scalar forward: decode tiles, prefill, low rank, bias",
          "[dispatch][forward]") {
  for (Isa isa : runnable_isas())
    for (int bits : {2, 3, 4, 5, 8})
      for (Index group : {32, 128}) {
        const Index d_out = 45, d_in = 300;  // ragged rows (45 = 2*16 + 13) and groups (300 = 9*32 + 12)
        const RowMatrix w = test::normal_matrix(d_out, d_in, 31u + static_cast<std::uint32_t>(bits));
        const std::vector<float> d = test::lognormal_scales(d_in, 33u);
        const QuantConfig config{bits, group, FormatKind::awq_asymmetric, 1.0f};
        const QuantizedMatrix q = backend::quantize(backend::Scalar{}, config, w, d, {});
        const backend::IsaKernels& k = backend::isa_kernels(isa);
        const auto prepared = k.prepare(q);
        const backend::ScalarPrepared reference = backend::prepare(backend::Scalar{}, q);
        const RowMatrix a = test::normal_matrix(3, d_in, 35u, 0.1f), b = test::normal_matrix(d_out, 3, 36u, 0.1f);
        std::vector<float> inverse(d.size()), bias(static_cast<std::size_t>(d_out));
        for (std::size_t j = 0; j < d.size(); ++j) inverse[j] = 1.0f / d[j];
        for (std::size_t r = 0; r < bias.size(); ++r) bias[r] = 0.01f * static_cast<float>(r);
        for (Index tokens : {1, 3, 8, 16, 17, 40}) {
          const RowMatrix x = test::outlier_activations(tokens, d_in, 3, 37u + static_cast<std::uint32_t>(tokens));
          RowMatrix y(tokens, d_out), y_ref(tokens, d_out);
          const backend::ForwardArgs args{x, inverse, a, b, bias, MatrixView<float>(y)};
          k.forward(prepared.get(), args);
          backend::forward(backend::Scalar{}, reference, backend::ForwardArgs{x, inverse, a, b, bias, MatrixView<float>(y_ref)});
          RowMatrix x_scaled = x;
          for (Index j = 0; j < d_in; ++j) x_scaled.col(j) *= inverse[static_cast<std::size_t>(j)];
          // The low-rank and bias terms join the magnitude the tolerance scales with.
          RowMatrix extra = (x * a.transpose()).cwiseAbs() * b.cwiseAbs().transpose();
          for (Index r = 0; r < d_out; ++r) extra.col(r).array() += std::fabs(bias[static_cast<std::size_t>(r)]);
          INFO(backend::isa_name(isa) << " b" << bits << " g" << group << " T" << tokens);
          require_close_forward(y, y_ref, q, x_scaled, &extra);
        }
      }
}

TEST_CASE("OnlineAWQ<..., Dispatched> reproduces the scalar operator under every runnable ISA", "[dispatch][op]") {
  ActiveIsaGuard guard;
  using Q = Quantizer<4, 32>;
  const RowMatrix w = test::normal_matrix(40, 160, 41u);
  const RowMatrix x = test::outlier_activations(24, 160, 4, 42u);
  OnlineAWQ<Q, DiagCorrelation<>, NoResidual> scalar_op(w, {});
  scalar_op.calibrate(x);
  for (Isa isa : runnable_isas()) {
    backend::set_active_isa(isa);
    REQUIRE(backend::active_isa() == isa);
    OnlineAWQ<Q, DiagCorrelation<>, NoResidual, backend::Dispatched> op(w, {});
    op.calibrate(x);
    INFO(backend::isa_name(isa));
    CHECK(std::equal(scalar_op.scales().begin(), scalar_op.scales().end(), op.scales().begin()));
    CHECK(op.quantized().codes == scalar_op.quantized().codes);
    CHECK(op.quantized().scales == scalar_op.quantized().scales);
    CHECK(op.quantized().zeros == scalar_op.quantized().zeros);
    // Prepared weights keep the ISA that prepared them, whatever is active later.
    backend::set_active_isa(Isa::scalar);
    for (Index tokens : {1, 5, 24}) {
      const RowMatrix xt = x.topRows(tokens);
      RowMatrix x_scaled = xt;
      for (Index j = 0; j < xt.cols(); ++j) x_scaled.col(j) /= op.scales()[static_cast<std::size_t>(j)];
      require_close_forward(op.forward(xt), scalar_op.forward(xt), scalar_op.quantized(), x_scaled);
    }
    // Finite input whose x / D overflows float: an error naming x under every ISA. (The integer
    // paths once read the overflowed block as zeros and returned a finite, wrong output.)
    const RowMatrix huge = RowMatrix::Constant(2, 160, std::numeric_limits<float>::max());
    try {
      (void)op.forward(huge);
      FAIL("forward of an overflowing input returned under " << backend::isa_name(isa));
    } catch (const NonFiniteError& e) {
      CHECK(e.argument() == "x");
    }
  }
}

// Run by CTest with TTQ_ISA set (tests/CMakeLists.txt): the environment picks the active ISA.
TEST_CASE("TTQ_ISA chooses the active ISA", "[.][dispatch-env]") {
  const char* env = std::getenv("TTQ_ISA");
  REQUIRE(env != nullptr);
  CHECK(backend::active_isa() == backend::parse_isa(env));
}

// Run by CTest in its own process with TTQ_ISA=bogus (read once per process).
TEST_CASE("a bad TTQ_ISA is an error naming TTQ_ISA, not the argument 'isa' (issue 27)", "[.][dispatch-env-bad]") {
  const char* env = std::getenv("TTQ_ISA");
  REQUIRE(env != nullptr);
  REQUIRE(std::string(env) == "bogus");
  try {
    (void)backend::active_isa();
    FAIL("TTQ_ISA=bogus accepted");
  } catch (const RangeError& e) {
    CHECK(e.argument() == "TTQ_ISA");
    CHECK(std::string(e.what()) == "ttq: argument 'TTQ_ISA': expected scalar, avx2, avx512, neon or neon-dotprod, got 'bogus'");
  }
}
