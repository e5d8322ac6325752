// llm-awq's static AWQ on the Llama runner: the search of common/llm_awq.hpp. Written from the
// procedure the spec describes (llm-awq's auto_scale / auto_clip), on ttq's reference QDQ.
#include "common/llm_awq.hpp"

#include <ttq/quant/quantizer.hpp>
#include <ttq/stats/adaptive_exponent.hpp>
#include <ttq/stats/diag_correlation.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <span>
#include <string>
#include <utility>

#include "llama/error.hpp"

namespace ttq::llama {
namespace {

using Kind = LinearKind;
using DynamicQuantizer = Quantizer<Dynamic, Dynamic, AwqAsymmetric>;

constexpr int kScaleGrid = 20;         // exponents a = i / 20, i = 0..19 (llm-awq's n_grid)
constexpr int kClipGrid = 20;          // clamp ratios 1 - i / 20 ...
constexpr int kClipSteps = 10;         // ... for i < 10 (max_shrink 0.5): 1.00 down to 0.55
constexpr Index kClipSampleTokens = 512;  // llm-awq's n_sample_token

/// Mean |x| per channel over every recorded token (llm-awq's get_act_scale): the library's p = 1
/// statistic, as static AWQ's per-projection mode uses it.
std::vector<double> mean_abs(const std::vector<RowMatrix>& xs) {
  DiagCorrelation<Dynamic> stats(DiagCorrelationOptions{.p = 1.0, .alpha = 1.0, .lambda = 0.0});
  stats.bind(xs.front().cols());
  for (const RowMatrix& x : xs) stats.observe(ConstMatrixView(x));
  return stats.channel_norms();
}

/// sum_w ||X_w (W - W^)^T||^2: a projection's own output error (llm-awq's loss up to a constant factor).
double own_output_error(const std::vector<RowMatrix>& xs, const RowMatrix& w, const RowMatrix& w_hat) {
  const RowMatrix diff = w - w_hat;
  double error = 0.0;
  for (const RowMatrix& x : xs) error += (x * diff.transpose()).cast<double>().squaredNorm();
  return error;
}

/// The exponent grid search of one scale shared by `probes`: candidate weights Q(W s) / s on
/// all of them, `loss(candidates)` measured with them in place; the first least loss wins (as llm-awq).
template <class Loss>
std::vector<float> search_scale(const DynamicQuantizer& quantizer, std::span<LlmAwqProbe* const> probes, const std::vector<RowMatrix>& xs,
                                Loss&& loss) {
  const std::vector<double> s = mean_abs(xs);
  double best = std::numeric_limits<double>::infinity();
  std::vector<float> best_scales;
  std::vector<RowMatrix> candidates(probes.size());
  for (int i = 0; i < kScaleGrid; ++i) {
    std::vector<float> scales = exponent_scales(s, static_cast<double>(i) / kScaleGrid, 1e-4, /*awq_normalised=*/true);
    for (std::size_t p = 0; p < probes.size(); ++p) {
      candidates[p] = quantizer.quantize_dequantize(ConstMatrixView(probes[p]->weight()), scales);
      probes[p]->set_candidate(&candidates[p]);
    }
    const double value = loss(std::as_const(candidates));
    for (LlmAwqProbe* p : probes) p->set_candidate(nullptr);
    if (!std::isfinite(value)) throw LlamaError("static AWQ (llm-awq): the scale search's loss is not finite");
    if (value < best) {
      best = value;
      best_scales = std::move(scales);
    }
  }
  return best_scales;
}

/// Every (T / 512)-th token of the recorded inputs (all when fewer than 1024), divided by the
/// chosen scales: the clip search's view of the activations of W diag(s).
RowMatrix clip_sample(const std::vector<RowMatrix>& xs, const std::vector<float>& scales) {
  Index total = 0;
  for (const RowMatrix& x : xs) total += x.rows();
  const Index step = std::max<Index>(1, total / kClipSampleTokens);
  const Index d = xs.front().cols();
  RowMatrix out((total + step - 1) / step, d);
  Index t_all = 0, row = 0;
  for (const RowMatrix& x : xs)
    for (Index t = 0; t < x.rows(); ++t, ++t_all)
      if (t_all % step == 0) {
        for (Index j = 0; j < d; ++j) out(row, j) = x(t, j) / scales[static_cast<std::size_t>(j)];
        ++row;
      }
  return out;
}

/// `w` with each (row, group) clamped to +-ratio * max |w| of that group.
RowMatrix clamp_groups(const RowMatrix& w, Index group, std::span<const float> ratio) {
  const Index groups = (w.cols() + group - 1) / group;
  RowMatrix out = w;
  for (Index r = 0; r < w.rows(); ++r)
    for (Index g = 0; g < groups; ++g) {
      const Index begin = g * group, width = std::min(group, w.cols() - begin);
      const float limit = w.row(r).segment(begin, width).cwiseAbs().maxCoeff() * ratio[static_cast<std::size_t>(r * groups + g)];
      for (Index c = begin; c < begin + width; ++c) out(r, c) = std::clamp(w(r, c), -limit, limit);
    }
  return out;
}

/// llm-awq's auto_clip for one projection: per (row, group) the clamp ratio whose group output
/// error on the sampled tokens x (already divided by s) is least (the first of equals). w: W diag(s).
std::vector<float> search_clamp(const DynamicQuantizer& quantizer, const RowMatrix& w, const RowMatrix& x, Index group) {
  const Index groups = (w.cols() + group - 1) / group;
  const auto cells = static_cast<std::size_t>(w.rows() * groups);
  std::vector<float> best_ratio(cells, 1.0f);
  std::vector<double> best_error(cells, std::numeric_limits<double>::infinity());
  for (int i = 0; i < kClipSteps; ++i) {
    const float ratio = 1.0f - static_cast<float>(i) / kClipGrid;
    const std::vector<float> uniform(cells, ratio);
    const RowMatrix diff = quantizer.quantize_dequantize(ConstMatrixView(clamp_groups(w, group, uniform))) - w;
    for (Index g = 0; g < groups; ++g) {
      const Index begin = g * group, width = std::min(group, w.cols() - begin);
      const Eigen::MatrixXd err = (x.middleCols(begin, width) * diff.middleCols(begin, width).transpose()).cast<double>();  // [T, rows]
      for (Index r = 0; r < w.rows(); ++r) {
        const double e = err.col(r).squaredNorm();
        const auto k = static_cast<std::size_t>(r * groups + g);
        if (e < best_error[k]) {
          best_error[k] = e;
          best_ratio[k] = ratio;
        }
      }
    }
  }
  return best_ratio;
}

}  // namespace

void run_blocks(LlamaModel& model, std::span<const int> window) {
  // No target: the output head (the largest matrix of a small-vocabulary-heavy model) is skipped.
  const std::vector<int> none(window.size(), kNoTarget);
  model.reset();
  (void)model.extend_log_probs(window, none, CalibrationMode::forward_only);
}

void search_llm_awq(LlamaModel& model, const MethodConfig& config, const std::vector<std::vector<int>>& windows) {
  const LlamaConfig& arch = model.config();
  const DynamicQuantizer quantizer({.bits = config.bits, .group = config.group == 0 ? Index(PerChannel) : Index(config.group)});
  auto probe = [&](int layer, Kind kind) -> LlmAwqProbe& {
    auto* p = dynamic_cast<LlmAwqProbe*>(&model.linear(layer, kind));
    if (p == nullptr) throw LlamaError("static AWQ (llm-awq): the model's projections are not llm-awq projections");
    return *p;
  };
  std::size_t calibration_tokens = 0;
  for (const auto& w : windows) calibration_tokens += w.size();
  if (calibration_tokens == 0) throw LlamaError("static AWQ (llm-awq): no calibration token");
  // o is scaled (and its scale searched) only when v and o have the same shape, as llm-awq
  // (not with grouped-query attention, nor when the heads are wider than dim / heads: Gemma 3).
  const std::vector<ProjectionShape> shapes = projection_shapes(arch);
  const ProjectionShape& v_shape = shapes[static_cast<std::size_t>(Kind::v)];
  const ProjectionShape& o_shape = shapes[static_cast<std::size_t>(Kind::o)];
  const bool scale_o = v_shape.d_out == o_shape.d_out && v_shape.d_in == o_shape.d_in;
  const auto started = std::chrono::steady_clock::now();

  struct Plan {
    std::vector<float> scales;  // empty: D = 1
    std::vector<float> clamp;   // empty: no clamp
  };
  std::vector<std::array<Plan, kLinearKinds>> plans(static_cast<std::size_t>(arch.n_layers));
  // Each window's residual stream before the current block: every block is searched on the fp32
  // model's activations, so block l's inputs are the fp32 blocks 0..l-1 applied in turn, one block
  // per search step (not a prefill of the whole model per block).
  std::vector<std::vector<float>> streams;
  for (const auto& w : windows) streams.push_back(model.embed(w));
  for (int layer = 0; layer < arch.n_layers; ++layer) {
    // The fp32 inputs of this block's projections, recorded while its stream advances through
    // it. q, k and v share their input, as gate and up do.
    const std::array<Kind, 4> inputs_of{Kind::q, Kind::o, Kind::gate, Kind::down};
    for (Kind k : inputs_of) {
      probe(layer, k).recorded().clear();
      probe(layer, k).set_recording(true);
    }
    for (std::size_t w = 0; w < windows.size(); ++w) model.block_forward(layer, streams[w], static_cast<int>(windows[w].size()));
    for (Kind k : inputs_of) probe(layer, k).set_recording(false);
    const std::vector<RowMatrix> x_attn = std::move(probe(layer, Kind::q).recorded());
    const std::vector<RowMatrix> x_o = std::move(probe(layer, Kind::o).recorded());
    const std::vector<RowMatrix> x_ffn = std::move(probe(layer, Kind::gate).recorded());
    const std::vector<RowMatrix> x_down = std::move(probe(layer, Kind::down).recorded());

    // A sub-layer's output on every window, and its squared distance from the fp32 one.
    auto run = [&](LlamaModel::Sublayer which, const std::vector<RowMatrix>& xs) {
      std::vector<RowMatrix> out(xs.size());
      for (std::size_t w = 0; w < xs.size(); ++w) {
        out[w].resize(xs[w].rows(), arch.dim);
        model.block_sublayer(layer, which, std::span<const float>(xs[w].data(), static_cast<std::size_t>(xs[w].size())),
                             static_cast<int>(xs[w].rows()), std::span<float>(out[w].data(), static_cast<std::size_t>(out[w].size())));
      }
      return out;
    };
    auto distance = [&](LlamaModel::Sublayer which, const std::vector<RowMatrix>& xs, const std::vector<RowMatrix>& reference) {
      const std::vector<RowMatrix> out = run(which, xs);
      double d = 0.0;
      for (std::size_t w = 0; w < out.size(); ++w) d += (out[w] - reference[w]).cast<double>().squaredNorm();
      return d;
    };
    auto& plan = plans[static_cast<std::size_t>(layer)];
    auto at = [&](Kind k) -> Plan& { return plan[static_cast<std::size_t>(k)]; };

    const std::vector<RowMatrix> attn_ref = run(LlamaModel::Sublayer::attention, x_attn);
    const std::array<LlmAwqProbe*, 3> qkv{&probe(layer, Kind::q), &probe(layer, Kind::k), &probe(layer, Kind::v)};
    const std::vector<float> s_qkv =
        search_scale(quantizer, qkv, x_attn, [&](const auto&) { return distance(LlamaModel::Sublayer::attention, x_attn, attn_ref); });
    for (Kind k : {Kind::q, Kind::k, Kind::v}) at(k).scales = s_qkv;

    if (scale_o) {
      LlmAwqProbe* o = &probe(layer, Kind::o);
      at(Kind::o).scales = search_scale(quantizer, std::span<LlmAwqProbe* const>(&o, 1), x_o,
                                        [&](const std::vector<RowMatrix>& c) { return own_output_error(x_o, o->weight(), c.front()); });
    }

    const std::vector<RowMatrix> mlp_ref = run(LlamaModel::Sublayer::mlp, x_ffn);
    const std::array<LlmAwqProbe*, 2> gate_up{&probe(layer, Kind::gate), &probe(layer, Kind::up)};
    const std::vector<float> s_ffn =
        search_scale(quantizer, gate_up, x_ffn, [&](const auto&) { return distance(LlamaModel::Sublayer::mlp, x_ffn, mlp_ref); });
    at(Kind::gate).scales = s_ffn;
    at(Kind::up).scales = s_ffn;

    LlmAwqProbe* down = &probe(layer, Kind::down);
    at(Kind::down).scales = search_scale(quantizer, std::span<LlmAwqProbe* const>(&down, 1), x_down,
                                         [&](const std::vector<RowMatrix>& c) { return own_output_error(x_down, down->weight(), c.front()); });

    if (config.awq_clip_search) {
      auto clip = [&](Kind k, const std::vector<RowMatrix>& xs) {
        Plan& p = at(k);
        const RowMatrix& w = probe(layer, k).weight();
        const std::vector<float> ones(static_cast<std::size_t>(w.cols()), 1.0f);
        const std::vector<float>& s = p.scales.empty() ? ones : p.scales;
        RowMatrix ws = w;
        for (Index c = 0; c < ws.cols(); ++c) ws.col(c) *= s[static_cast<std::size_t>(c)];
        const Index group = config.group == 0 ? w.cols() : config.group;
        p.clamp = search_clamp(quantizer, ws, clip_sample(xs, s), group);
      };
      clip(Kind::v, x_attn);
      clip(Kind::o, x_o);
      clip(Kind::gate, x_ffn);
      clip(Kind::up, x_ffn);
      clip(Kind::down, x_down);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::fprintf(stderr, "\rllm-awq: block %d/%d searched (%zu calibration tokens, %.1f s)", layer + 1, arch.n_layers,
                 calibration_tokens, seconds);
    std::fflush(stderr);
  }
  std::fprintf(stderr, "\n");

  // Freeze: quantize clamp(W diag(s)) with D = s, as llm-awq's apply_scale + apply_clip + quantize.
  for (int layer = 0; layer < arch.n_layers; ++layer)
    for (int kind = 0; kind < kLinearKinds; ++kind) {
      LlmAwqProbe& p = probe(layer, static_cast<Kind>(kind));
      const Plan& plan = plans[static_cast<std::size_t>(layer)][static_cast<std::size_t>(kind)];
      const RowMatrix& w = p.weight();
      std::vector<float> scales = plan.scales.empty() ? std::vector<float>(static_cast<std::size_t>(w.cols()), 1.0f) : plan.scales;
      RowMatrix ws = w;
      for (Index c = 0; c < ws.cols(); ++c) ws.col(c) *= scales[static_cast<std::size_t>(c)];
      if (!plan.clamp.empty()) ws = clamp_groups(ws, config.group == 0 ? w.cols() : config.group, plan.clamp);
      for (Index c = 0; c < ws.cols(); ++c) ws.col(c) /= scales[static_cast<std::size_t>(c)];
      p.freeze(std::move(scales), ws);
    }
  model.reset();
}

}  // namespace ttq::llama
