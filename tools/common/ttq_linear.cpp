// Implementation of the ttq-backed projections. One class template wraps any OnlineAWQ
// instantiation; the method and its runtime settings pick which one at construction.
#include "common/ttq_linear.hpp"

#include <ttq/ttq.hpp>
#if defined(TTQ_TOOLS_HAVE_DISPATCH)
#include <ttq/backend/dispatch.hpp>
#endif

#include <cmath>
#include <memory>
#include <optional>
#include <sstream>

#include "common/llm_awq.hpp"
#include "llama/error.hpp"

namespace ttq::llama {

// The interface QuantizedLinears uses on top of LinearLayer.
class QuantizedLinear : public LinearLayer {
 public:
  virtual void set_awq_calibrating(bool) {}
  virtual void freeze_awq() {}
  virtual void record_choice(std::map<double, std::int64_t>&) const {}
  virtual double bits_per_weight() const = 0;
  virtual double elements() const = 0;
};

namespace {

using DynamicQuantizer = Quantizer<Dynamic, Dynamic, AwqAsymmetric>;
// The four operator types of the tools, on backend B.
template <class B>
struct Operators {
  using Rtn = OnlineAWQ<DynamicQuantizer, UniformScales, NoResidual, B>;
  using Awq = OnlineAWQ<DynamicQuantizer, StaticAwqScales, NoResidual, B>;
  using Ttq = OnlineAWQ<DynamicQuantizer, DiagCorrelation<Dynamic>, LowRankResidual<Dynamic>, B>;
  using Adaptive = OnlineAWQ<DynamicQuantizer, AdaptiveExponent<Dynamic>, LowRankResidual<Dynamic>, B>;
};

template <class Op>
inline constexpr bool kIsAwq = std::is_same_v<typename Op::correlation_type, StaticAwqScales>;
template <class Op>
inline constexpr bool kIsAdaptive = std::is_same_v<typename Op::correlation_type, AdaptiveExponent<Dynamic>>;
template <class Op>
inline constexpr bool kCalibratesOnPrompt = std::is_same_v<typename Op::correlation_type, DiagCorrelation<Dynamic>> || kIsAdaptive<Op>;

class Fp32Linear final : public QuantizedLinear {
 public:
  Fp32Linear(std::string_view name, const float* w, int d_out, int d_in)
      : inner_(make_fp32_linear(name, w, d_out, d_in)), elements_(static_cast<double>(d_out) * d_in) {}
  void forward(const float* x, int tokens, float* y) override { inner_->forward(x, tokens, y); }
  double bits_per_weight() const override { return 32.0; }
  double elements() const override { return elements_; }

 private:
  std::unique_ptr<LinearLayer> inner_;
  double elements_;
};

template <class Op>
class OperatorLinear final : public QuantizedLinear {
 public:
  OperatorLinear(Op op, const float* w, int d_out, int d_in) : op_(std::move(op)) {
    if constexpr (kIsAwq<Op>) fp32_ = Eigen::Map<const RowMatrix>(w, d_out, d_in);
  }

  void begin_prompt() override { op_.begin_prompt(); }

  void calibrate(const float* x, int tokens) override {
    // Only TTQ calibrates on the prompt; RTN ignores it and static AWQ is frozen.
    if constexpr (kCalibratesOnPrompt<Op>) {
      op_.calibrate(ConstMatrixView(x, tokens, op_.d_in()));
      if constexpr (kIsAdaptive<Op>) {
        if (auto a = op_.correlation().chosen_exponent()) ++choices_[*a];
      }
    }
  }

  void forward(const float* x, int tokens, float* y) override {
    const ConstMatrixView xv(x, tokens, op_.d_in());
    if constexpr (kIsAwq<Op>) {
      if (calibrating_) {  // offline calibration: record the input, compute in fp32
        op_.observe(xv);
        Eigen::Map<RowMatrix>(y, tokens, op_.d_out()).noalias() = ttq::detail::as_eigen(xv) * fp32_.transpose();
        return;
      }
    }
    op_.forward(xv, MatrixView<float>(y, tokens, op_.d_out()));
  }

  void set_awq_calibrating(bool on) override { calibrating_ = on; }
  void freeze_awq() override {
    if constexpr (kIsAwq<Op>) {
      // Without a calibration token the plan stays uniform: RTN under AWQ's name.
      if (op_.correlation().calibration_tokens() <= 0.0)
        throw LlamaError("static AWQ: a projection saw no calibration token; it would run as RTN");
      op_.requantize();
    }
  }
  void record_choice(std::map<double, std::int64_t>& out) const override {
    for (const auto& [a, n] : choices_) out[a] += n;
  }
  double bits_per_weight() const override {
    // Codes plus scales/zeros, plus the fp32 low-rank factors spread over the matrix.
    const double elements = static_cast<double>(op_.d_out()) * static_cast<double>(op_.d_in());
    const double lowrank_bits = 32.0 * static_cast<double>(op_.factors().rank()) *
                                static_cast<double>(op_.d_out() + op_.d_in());
    return op_.quantized().bits_per_weight() + lowrank_bits / elements;
  }
  double elements() const override { return static_cast<double>(op_.d_out()) * static_cast<double>(op_.d_in()); }

 private:
  Op op_;
  RowMatrix fp32_;
  bool calibrating_ = false;
  std::map<double, std::int64_t> choices_;
};

/// A projection of static AWQ in llm-awq's mode: an fp32 probe for the search
/// (common/llm_awq.hpp), then, once frozen, the operator quantized with the scales it found.
template <class B>
class LlmAwqLinear final : public QuantizedLinear, public LlmAwqProbe {
 public:
  using Op = OnlineAWQ<DynamicQuantizer, PresetScales, NoResidual, B>;

  LlmAwqLinear(DynamicQuantizer quantizer, const float* w, int d_out, int d_in)
      : quantizer_(quantizer), weight_(Eigen::Map<const RowMatrix>(w, d_out, d_in)) {}

  void forward(const float* x, int tokens, float* y) override {
    if (op_) {
      op_->forward(ConstMatrixView(x, tokens, op_->d_in()), MatrixView<float>(y, tokens, op_->d_out()));
      return;
    }
    const Eigen::Map<const RowMatrix> xv(x, tokens, weight_.cols());
    if (recording_) recorded_.emplace_back(xv);
    Eigen::Map<RowMatrix>(y, tokens, weight_.rows()).noalias() = xv * (candidate_ ? *candidate_ : weight_).transpose();
  }
  void freeze_awq() override {
    if (!op_) throw LlamaError("static AWQ (llm-awq): a projection was not searched");
  }
  double bits_per_weight() const override { return op_ ? op_->quantized().bits_per_weight() : 32.0; }
  double elements() const override { return static_cast<double>(weight_.size()); }

  const RowMatrix& weight() const override { return weight_; }
  void set_candidate(const RowMatrix* candidate) override { candidate_ = candidate; }
  void set_recording(bool on) override { recording_ = on; }
  std::vector<RowMatrix>& recorded() override { return recorded_; }
  void freeze(std::vector<float> scales, const RowMatrix& weight) override {
    op_.emplace(LayerWeights::copy(ConstMatrixView(weight), {}, NoResidual{}), quantizer_, PresetScales(std::move(scales)));
    recorded_ = {};
    candidate_ = nullptr;
  }

 private:
  DynamicQuantizer quantizer_;
  RowMatrix weight_;
  const RowMatrix* candidate_ = nullptr;
  bool recording_ = false;
  std::vector<RowMatrix> recorded_;
  std::optional<Op> op_;
};

/// The flags checked against one projection's shape, before ttq's own (argument-named) checks.
void check_projection(const MethodConfig& c, std::string_view name, int d_out, int d_in) {
  const std::string where = "projection '" + std::string(name) + "' [" + std::to_string(d_out) + ", " + std::to_string(d_in) + "]";
  check_group_for_rows(c.group, d_in, where);
  if (c.method == Method::ttq && c.rank > std::min(d_out, d_in))
    throw LlamaError("--rank " + std::to_string(c.rank) + ": larger than min(d_out, d_in) = " +
                     std::to_string(std::min(d_out, d_in)) + " of " + where);
}

/// The projection of method config `c` on backend B.
template <class B>
std::unique_ptr<QuantizedLinear> make_operator_linear(std::string_view name, const MethodConfig& c, const float* w, int d_out,
                                                      int d_in) {
  using Ops = Operators<B>;
  // The flags checked against this projection's shape, before ttq's own (argument-named) checks.
  check_projection(c, name, d_out, d_in);
  const DynamicQuantizer quantizer({.bits = c.bits, .group = c.group == 0 ? Index(PerChannel) : Index(c.group)});
  const ConstMatrixView wv(w, d_out, d_in);
  auto weights = [&](const auto& residual) {
    return c.borrow_weights ? LayerWeights::borrow(wv, {}, residual) : LayerWeights::copy(wv, {}, residual);
  };
  switch (c.method) {
    case Method::rtn:
      return std::make_unique<OperatorLinear<typename Ops::Rtn>>(typename Ops::Rtn(weights(NoResidual{}), quantizer), w, d_out, d_in);
    case Method::awq: {
      if (c.awq_mode == AwqMode::llm_awq) return std::make_unique<LlmAwqLinear<B>>(quantizer, w, d_out, d_in);
      StaticAwqScales awq({.p = c.p, .clip_search = c.awq_clip_search, .max_calibration_tokens = c.awq_calibration_tokens});
      return std::make_unique<OperatorLinear<typename Ops::Awq>>(typename Ops::Awq(weights(NoResidual{}), quantizer, std::move(awq)),
                                                                 w, d_out, d_in);
    }
    default: {
      const LowRankResidual<Dynamic> residual(c.rank);
      if (c.alpha) {
        DiagCorrelation<Dynamic> stat({.p = c.p, .alpha = *c.alpha, .lambda = c.lambda});
        return std::make_unique<OperatorLinear<typename Ops::Ttq>>(typename Ops::Ttq(weights(residual), quantizer, std::move(stat)),
                                                                   w, d_out, d_in);
      }
      AdaptiveExponent<Dynamic> stat({.p = c.p, .grid = c.alpha_grid,
                                      .normalisation = c.awq_normalisation ? ExponentNormalisation::awq : ExponentNormalisation::none,
                                      .relative_floor = c.relative_floor,
                                      .error_rows = c.error_rows,
                                      .clip = {.objective = c.clip == ClipMode::block  ? ClipObjective::block
                                                            : c.clip == ClipMode::diag ? ClipObjective::diag
                                                                                       : ClipObjective::none,
                                               .block_rank = c.clip_rank}});
      return std::make_unique<OperatorLinear<typename Ops::Adaptive>>(typename Ops::Adaptive(weights(residual), quantizer, std::move(stat)),
                                                                      w, d_out, d_in);
    }
  }
}

}  // namespace

void check_group(std::int64_t group) {
  if (group == 0 || group >= kMinGroup) return;
  const std::string n = std::to_string(group);
  throw LlamaError("--group " + n + ": " +
                   (group == 1 ? std::string("every one-weight group dequantizes to about +-1e-5")
                               : "groups of " + n + " weights often share one sign and are clipped to their range") +
                   " in the AWQ-compatible format (llm-awq's formula; docs/numerics.md), which destroys the model; use --group 0 "
                   "(per-channel) or a group of at least " + std::to_string(kMinGroup));
}

void check_group_for_rows(std::int64_t group, std::int64_t d_in, const std::string& where) {
  if (group > d_in)
    throw LlamaError("--group " + std::to_string(group) + ": larger than the rows of " + where +
                     "; use --group 0 (per-channel) or a group of at most " + std::to_string(d_in));
  if (group > 1 && d_in % group == 1)
    throw LlamaError("--group " + std::to_string(group) + ": the last group of each row of " + where +
                     " holds one weight, which the AWQ-compatible format dequantizes to about +-1e-5 (docs/numerics.md); "
                     "choose a group that divides " + std::to_string(d_in) + " or leaves at least 2 weights");
}

void check_method_for_model(const MethodConfig& c, const LlamaConfig& config) {
  if (c.method == Method::fp32) return;
  for (const ProjectionShape& s : projection_shapes(config)) check_projection(c, linear_tensor_name(0, s.kind), s.d_out, s.d_in);
}

BackendChoice MethodConfig::default_backend() {
#if defined(TTQ_TOOLS_HAVE_DISPATCH)
  return BackendChoice::dispatch;
#else
  return BackendChoice::simd;
#endif
}

BackendChoice parse_backend(std::string_view name) {
  if (name == "scalar") return BackendChoice::scalar;
  if (name == "simd") return BackendChoice::simd;
  if (name == "dispatch") return BackendChoice::dispatch;
  throw LlamaError("--backend: expected scalar, simd or dispatch, got '" + std::string(name) + "'");
}

std::string backend_name(BackendChoice backend) {
  switch (backend) {
    case BackendChoice::scalar: return "scalar";
    case BackendChoice::simd: return "simd";
    case BackendChoice::dispatch: return "dispatch";
  }
  return "?";
}

std::string backend_description(BackendChoice backend) {
  switch (backend) {
    case BackendChoice::scalar: return "scalar (reference)";
    case BackendChoice::simd: return std::string("simd (") + backend::Simd::isa + ")";
    case BackendChoice::dispatch:
#if defined(TTQ_TOOLS_HAVE_DISPATCH)
      return std::string("dispatch (") + backend::isa_name(backend::active_isa()) + ")";
#else
      return "dispatch (not built)";
#endif
  }
  return "?";
}

AwqMode parse_awq_mode(std::string_view name) {
  if (name == "per-projection") return AwqMode::per_projection;
  if (name == "llm-awq") return AwqMode::llm_awq;
  throw LlamaError("--awq-mode: expected per-projection or llm-awq, got '" + std::string(name) + "'");
}

std::string awq_mode_name(AwqMode mode) { return mode == AwqMode::llm_awq ? "llm-awq" : "per-projection"; }

ClipMode parse_clip(std::string_view name) {
  if (name == "none") return ClipMode::none;
  if (name == "diag") return ClipMode::diag;
  if (name == "block") return ClipMode::block;
  throw LlamaError("--clip: expected none, diag or block, got '" + std::string(name) + "'");
}

std::string clip_name(ClipMode mode) {
  switch (mode) {
    case ClipMode::none: return "none";
    case ClipMode::diag: return "diag";
    case ClipMode::block: return "block";
  }
  return "?";
}

Method parse_method(std::string_view name) {
  if (name == "fp32") return Method::fp32;
  if (name == "rtn") return Method::rtn;
  if (name == "awq") return Method::awq;
  if (name == "ttq") return Method::ttq;
  throw LlamaError("--method: expected fp32, rtn, awq or ttq, got '" + std::string(name) + "'");
}

std::string method_name(Method method) {
  switch (method) {
    case Method::fp32: return "fp32";
    case Method::rtn: return "rtn";
    case Method::awq: return "awq";
    case Method::ttq: return "ttq";
  }
  return "?";
}

std::string describe(const MethodConfig& c) {
  std::ostringstream out;
  switch (c.method) {
    case Method::fp32: return "FP32";
    case Method::rtn: out << "RTN"; break;
    case Method::awq:
      if (c.awq_mode == AwqMode::llm_awq) out << "AWQ (llm-awq" << (c.awq_clip_search ? ", clip" : "") << ")";
      else out << "AWQ (p=" << c.p << (c.awq_clip_search ? ", clip" : "") << ")";
      break;
    case Method::ttq:
      out << "TTQ (p=" << c.p << ", alpha=";
      if (c.alpha) out << *c.alpha << ", lambda=" << c.lambda;
      else out << "auto";
      if (!c.alpha && c.clip != ClipMode::none) {
        out << ", clip=" << clip_name(c.clip);
        if (c.clip == ClipMode::block && c.clip_rank > 0) out << "(k=" << c.clip_rank << ")";
      }
      if (!c.alpha && c.relative_floor > 0.0) out << ", floor=" << c.relative_floor << " x mean";
      if (c.rank > 0) out << ", r=" << c.rank;
      out << ")";
      break;
  }
  return out.str();
}

QuantizedLinears::QuantizedLinears(MethodConfig config) : config_(std::move(config)) {}
QuantizedLinears::~QuantizedLinears() = default;

LinearFactory QuantizedLinears::factory() {
  return [this](std::string_view name, const float* w, int d_out, int d_in) -> std::unique_ptr<LinearLayer> {
    std::unique_ptr<QuantizedLinear> layer;
    const MethodConfig& c = config_;
    if (c.method == Method::fp32) {
      layer = std::make_unique<Fp32Linear>(name, w, d_out, d_in);
    } else {
      switch (c.backend) {
        case BackendChoice::scalar: layer = make_operator_linear<backend::Scalar>(name, c, w, d_out, d_in); break;
        case BackendChoice::simd: layer = make_operator_linear<backend::Simd>(name, c, w, d_out, d_in); break;
        case BackendChoice::dispatch:
#if defined(TTQ_TOOLS_HAVE_DISPATCH)
          layer = make_operator_linear<backend::Dispatched>(name, c, w, d_out, d_in);
          break;
#else
          throw LlamaError("--backend dispatch: these tools were built without ttq::dispatch (TTQ_BUILD_DISPATCH=OFF)");
#endif
      }
    }
    layers_.push_back(layer.get());
    return layer;
  };
}

void QuantizedLinears::begin_awq_calibration() {
  for (auto* l : layers_) l->set_awq_calibrating(true);
}

void QuantizedLinears::finish_awq_calibration() {
  for (auto* l : layers_) {
    l->set_awq_calibrating(false);
    l->freeze_awq();
  }
}

std::map<double, std::int64_t> QuantizedLinears::chosen_exponents() const {
  std::map<double, std::int64_t> out;
  for (const auto* l : layers_) l->record_choice(out);
  return out;
}

double QuantizedLinears::bits_per_weight() const {
  // Weighted by each projection's size: total stored bits over total weights.
  double bits = 0.0, elements = 0.0;
  for (const auto* l : layers_) {
    bits += l->bits_per_weight() * l->elements();
    elements += l->elements();
  }
  return elements > 0.0 ? bits / elements : 0.0;
}

}  // namespace ttq::llama
