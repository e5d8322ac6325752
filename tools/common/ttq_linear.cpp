// Implementation of the ttq-backed projections. One class template wraps any OnlineAWQ
// instantiation; the method and its runtime settings pick which one at construction.
#include "llama/ttq_linear.hpp"

#include <ttq/ttq.hpp>

#include <cmath>
#include <memory>
#include <sstream>

#include "llama/tokenizer.hpp"  // LlamaError

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
using RtnOp = OnlineAWQ<DynamicQuantizer, UniformScales, NoResidual>;
using AwqOp = OnlineAWQ<DynamicQuantizer, StaticAwqScales, NoResidual>;
using TtqOp = OnlineAWQ<DynamicQuantizer, DiagCorrelation<Dynamic>, LowRankResidual<Dynamic>>;
using AdaptiveOp = OnlineAWQ<DynamicQuantizer, AdaptiveExponent<Dynamic>, LowRankResidual<Dynamic>>;

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
    if constexpr (std::is_same_v<Op, AwqOp>) fp32_ = Eigen::Map<const RowMatrix>(w, d_out, d_in);
  }

  void begin_prompt() override { op_.begin_prompt(); }

  void calibrate(const float* x, int tokens) override {
    // Only TTQ calibrates on the prompt; RTN ignores it and static AWQ is frozen.
    if constexpr (std::is_same_v<Op, TtqOp> || std::is_same_v<Op, AdaptiveOp>) {
      op_.calibrate(ConstMatrixView(x, tokens, op_.d_in()));
      if constexpr (std::is_same_v<Op, AdaptiveOp>) {
        if (auto a = op_.correlation().chosen_exponent()) ++choices_[*a];
      }
    }
  }

  void forward(const float* x, int tokens, float* y) override {
    const ConstMatrixView xv(x, tokens, op_.d_in());
    if constexpr (std::is_same_v<Op, AwqOp>) {
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
    if constexpr (std::is_same_v<Op, AwqOp>) op_.requantize();
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

}  // namespace

Method parse_method(std::string_view name) {
  if (name == "fp32") return Method::fp32;
  if (name == "rtn") return Method::rtn;
  if (name == "awq") return Method::awq;
  if (name == "ttq") return Method::ttq;
  throw LlamaError("method: expected fp32, rtn, awq or ttq, got '" + std::string(name) + "'");
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
    case Method::awq: out << "AWQ (p=" << c.p << (c.awq_clip_search ? ", clip" : "") << ")"; break;
    case Method::ttq:
      out << "TTQ (p=" << c.p << ", alpha=";
      if (c.alpha) out << *c.alpha << ", lambda=" << c.lambda;
      else out << "auto";
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
      const DynamicQuantizer quantizer({.bits = c.bits, .group = c.group == 0 ? Index(PerChannel) : Index(c.group)});
      const ConstMatrixView wv(w, d_out, d_in);
      switch (c.method) {
        case Method::rtn:
          layer = std::make_unique<OperatorLinear<RtnOp>>(RtnOp(wv, {}, quantizer), w, d_out, d_in);
          break;
        case Method::awq: {
          StaticAwqScales awq({.p = c.p, .clip_search = c.awq_clip_search,
                               .max_calibration_tokens = c.awq_calibration_tokens});
          layer = std::make_unique<OperatorLinear<AwqOp>>(AwqOp(wv, {}, quantizer, std::move(awq)), w, d_out, d_in);
          break;
        }
        default: {
          const LowRankResidual<Dynamic> residual(std::min(c.rank, std::min(d_out, d_in)));
          if (c.alpha) {
            DiagCorrelation<Dynamic> stat({.p = c.p, .alpha = *c.alpha, .lambda = c.lambda});
            layer = std::make_unique<OperatorLinear<TtqOp>>(TtqOp(wv, {}, quantizer, std::move(stat), residual), w, d_out, d_in);
          } else {
            AdaptiveExponent<Dynamic> stat({.p = c.p, .grid = c.alpha_grid,
                                            .normalisation = c.awq_normalisation ? ExponentNormalisation::awq
                                                                                 : ExponentNormalisation::none});
            layer = std::make_unique<OperatorLinear<AdaptiveOp>>(AdaptiveOp(wv, {}, quantizer, std::move(stat), residual), w,
                                                                 d_out, d_in);
          }
        }
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
