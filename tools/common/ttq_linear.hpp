// The seam between the Llama runner and ttq: LinearLayer implementations backed by ttq
// operators (RTN, static AWQ, TTQ with a fixed or an adaptive exponent, optional low rank),
// configured at run time from the tools' flags. Everything method-specific the tools need
// (static AWQ's offline calibration, the exponents TTQ picked) is reachable through
// QuantizedLinears, which makes and tracks the projections of one model.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "llama/model.hpp"

namespace ttq::llama {

enum class Method { fp32, rtn, awq, ttq };

/// TTQ auto's online clip search (ttq::ClipObjective; named here so that the tools' headers stay
/// free of the library's).
enum class ClipMode { none, diag, block };

/// Static AWQ's procedure: this library's per-projection search (each projection's scale on its
/// own output; the stronger baseline on stories260K) or llm-awq's exact one (shared q/k/v and
/// gate/up scales searched on the block's sub-layer outputs, clamp clip; common/llm_awq.hpp).
enum class AwqMode { per_projection, llm_awq };

/// Where the projections' kernels run: the reference, the SIMD backend compiled into the tools
/// (-march=native in this project's build), or ttq::dispatch's best ISA for this CPU (default).
enum class BackendChoice { scalar, simd, dispatch };

/// A quantization method and its settings, as the tools' flags give them.
struct MethodConfig {
  Method method = Method::ttq;
  int bits = 3;
  int group = 32;  ///< 0 means per-channel
  int rank = 0;    ///< low-rank residual (TTQ only)
  double p = 1.0;  ///< norm of the activation statistic (TTQ: DiagCorrelation / AdaptiveExponent; AWQ: its p)
  std::optional<double> alpha;  ///< nullopt: adaptive exponent ("auto", the default); else a fixed exponent
  double lambda = 0.0;
  std::vector<double> alpha_grid = {0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9};
  bool awq_normalisation = false;  ///< adaptive exponent: llm-awq's sqrt(max*min) normalisation
  int error_rows = 256;            ///< adaptive exponent: rows its error is measured on (0: all)
  ClipMode clip = ClipMode::none;  ///< adaptive exponent: online clip search (stats/online_clip.hpp)
  int clip_rank = 0;               ///< clip block: 0 = exact Gram block, k = top-k eigenpairs + diagonal
  double relative_floor = 0.0;     ///< adaptive exponent: D >= this times the mean (channels the prompt did not use)
  bool awq_clip_search = false;    ///< static AWQ: per-group clip search
  AwqMode awq_mode = AwqMode::per_projection;  ///< static AWQ: which procedure
  int awq_calibration_tokens = 2000;  ///< static AWQ: tokens kept per layer for the search
  BackendChoice backend = default_backend();
  /// The factory's weights outlive the model (the tools keep the GgufFile alive): operators use
  /// them in place (LayerWeights::borrow) instead of copying every projection.
  bool borrow_weights = false;

  /// dispatch where the tools were built with ttq::dispatch, else simd.
  static BackendChoice default_backend();
};

BackendChoice parse_backend(std::string_view name);  ///< "scalar" | "simd" | "dispatch"; throws LlamaError
std::string backend_name(BackendChoice backend);
/// What the backend runs on this machine, e.g. "dispatch (avx2)" or "simd (avx512bw+vnni)".
std::string backend_description(BackendChoice backend);

AwqMode parse_awq_mode(std::string_view name);  ///< "per-projection" | "llm-awq"; throws LlamaError
std::string awq_mode_name(AwqMode mode);
ClipMode parse_clip(std::string_view name);  ///< "none" | "diag" | "block"; throws LlamaError
std::string clip_name(ClipMode mode);
Method parse_method(std::string_view name);  ///< "fp32" | "rtn" | "awq" | "ttq"; throws LlamaError
std::string method_name(Method method);
/// A short human label, e.g. "TTQ (p=2, alpha=auto)".
std::string describe(const MethodConfig& config);

/// The smallest group the tools accept in the AWQ-compatible format (besides 0, per-channel).
/// That format (llm-awq's formula, docs/numerics.md "Constant and one-signed groups") keeps a
/// zero point inside the code range, so a group whose weights share one sign is clipped to its
/// range, and a one-weight group dequantizes to about +-1e-5: groups of 1 destroy every weight,
/// groups of 2 half of them (stories260K at 8 bits: perplexity 29 instead of 3.15).
inline constexpr std::int64_t kMinGroup = 4;

/// Throws LlamaError naming --group when `group` (0: per-channel) is below kMinGroup.
void check_group(std::int64_t group);
/// Throws LlamaError naming --group when `group` does not fit rows of `d_in` weights of the
/// matrix `where` (a tool's words, e.g. "projection 'blk.0.attn_q.weight' [64, 64]"): larger than
/// d_in, or leaving a ragged last group of one weight (which the format destroys).
void check_group_for_rows(std::int64_t group, std::int64_t d_in, const std::string& where);
/// The checks a projection of `config` would make of `c` (group, rank against every projection
/// shape), from the architecture alone: what a tool runs before printing anything, without
/// building (and quantizing) a model. Throws LlamaError naming the flag.
void check_method_for_model(const MethodConfig& c, const LlamaConfig& config);

class QuantizedLinear;

/// Makes the projections of one model for a MethodConfig and keeps track of them. Must outlive
/// the model built with factory().
class QuantizedLinears {
 public:
  explicit QuantizedLinears(MethodConfig config);
  ~QuantizedLinears();
  QuantizedLinears(const QuantizedLinears&) = delete;
  QuantizedLinears& operator=(const QuantizedLinears&) = delete;

  const MethodConfig& config() const { return config_; }
  LinearFactory factory();

  /// Static AWQ's offline calibration: between begin and finish, every projection computes in
  /// fp32 and records its input; finish fits and freezes each layer's scales. No-op for other methods.
  void begin_awq_calibration();
  void finish_awq_calibration();

  /// For the adaptive exponent: how often each grid exponent was chosen, over every requantization so far.
  std::map<double, std::int64_t> chosen_exponents() const;
  /// Effective storage of the quantized projections (bits per weight incl. scales/zeros; 32 for fp32).
  double bits_per_weight() const;

 private:
  MethodConfig config_;
  std::vector<QuantizedLinear*> layers_;  // owned by the model
};

}  // namespace ttq::llama
