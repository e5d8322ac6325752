// The Llama-architecture forward pass in fp32 that the real-model tools run: RMSNorm, RoPE on
// adjacent pairs, grouped-query causal attention with a KV cache, SwiGLU FFN, tied or untied
// output head. Its reason to exist is the LinearLayer seam: each of the 7 projections of every
// block (q, k, v, o, gate, up, down) is an object made by a caller-supplied factory, so a
// quantizer can be plugged in and judged on a real model against the fp32 default. It scores a
// whole sequence in one batched prefill, decodes one token at a time from the cache, and can run
// a prefill in which every projection first calibrates on exactly the input it then transforms.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "llama/error.hpp"

namespace ttq::llama {

class GgufFile;

// One linear projection y = x W^T, W [d_out, d_in] row-major. The model calls begin_prompt()
// whenever a sequence starts at position 0 (before any calibrate or forward of that sequence),
// calibrate(x) with a prompt's activations when running CalibrationMode::calibrate_then_forward
// (immediately before forward() on the same x), and forward(x) for every prefill or decode step.
// Implementations need not be thread-safe; the model calls them from one thread.
class LinearLayer {
 public:
  virtual ~LinearLayer() = default;
  // A new sequence starts: drop any per-prompt state.
  virtual void begin_prompt() {}
  // x: [tokens, d_in] row-major, tokens >= 1. Default: ignore.
  virtual void calibrate(const float* x, int tokens) {
    (void)x;
    (void)tokens;
  }
  // x: [tokens, d_in] row-major, y: [tokens, d_out] row-major (does not alias x), tokens >= 1.
  virtual void forward(const float* x, int tokens, float* y) = 0;
};

// Makes the projection for GGUF tensor `name` (e.g. "blk.3.ffn_down.weight") from its fp32
// weights w: [d_out, d_in], row-major, valid only during the call (copy what you keep). Must
// not return nullptr.
using LinearFactory = std::function<std::unique_ptr<LinearLayer>(
    std::string_view name, const float* w, int d_out, int d_in)>;

// The fp32 reference projection (Eigen matrix product). Matches LinearFactory.
std::unique_ptr<LinearLayer> make_fp32_linear(std::string_view name, const float* w, int d_out,
                                              int d_in);

// The 7 projections of a block, in the order the forward pass calls them.
enum class LinearKind : int { q = 0, k, v, o, gate, up, down };
inline constexpr int kLinearKinds = 7;

// GGUF tensor name of a projection: "blk.<layer>.attn_q.weight", ..., "blk.<layer>.ffn_down.weight".
std::string linear_tensor_name(int layer, LinearKind kind);

// Runs body(begin, end) over [0, count) split into chunks, possibly in parallel, and returns when
// all are done; body must be safe to call concurrently on disjoint ranges. The runner uses it for
// its own work (attention heads, the output head's vocabulary rows); the tools hand it ttq's
// executor so that the runner and the projections share one thread pool. Default: serial.
using ParallelFor = std::function<void(int count, const std::function<void(int begin, int end)>& body)>;

// Architecture hyper-parameters, from the `llama.*` metadata.
struct LlamaConfig {
  int dim = 0;             // llama.embedding_length
  int n_layers = 0;        // llama.block_count
  int n_heads = 0;         // llama.attention.head_count
  int n_kv_heads = 0;      // llama.attention.head_count_kv (default: n_heads)
  int head_dim = 0;        // dim / n_heads
  int ffn_dim = 0;         // llama.feed_forward_length
  int vocab_size = 0;      // rows of token_embd.weight
  int context_length = 0;  // llama.context_length (default 2048): the KV cache's limit
  float rms_eps = 1e-5f;   // llama.attention.layer_norm_rms_epsilon (default 1e-5)
  float rope_base = 10000.0f;  // llama.rope.freq_base (default 10000)

  // Reads and validates the metadata (LlamaError / GgufError on missing, inconsistent or
  // unsupported values: another architecture, partial rotary, rope scaling).
  static LlamaConfig from_gguf(const GgufFile& file);
};

enum class CalibrationMode {
  forward_only,            // every projection: forward(x)
  calibrate_then_forward,  // every projection: calibrate(x), then forward(x) on the same x
};

// Per-position logits of a batch: values [tokens, vocab], row-major.
struct Logits {
  int tokens = 0;
  int vocab = 0;
  std::vector<float> values;

  std::span<const float> row(int t) const {
    return {values.data() + static_cast<std::size_t>(t) * vocab, static_cast<std::size_t>(vocab)};
  }
};

class LlamaModel {
 public:
  // Builds the model from a parsed GGUF (which need not outlive it), checking every tensor's
  // shape; the 7 * n_layers projections come from `factory`. `output.weight` may be absent
  // (tied head: token_embd.weight is used). Throws LlamaError / GgufError.
  explicit LlamaModel(const GgufFile& file, const LinearFactory& factory = make_fp32_linear);
  ~LlamaModel();
  LlamaModel(LlamaModel&&) noexcept;
  LlamaModel& operator=(LlamaModel&&) noexcept;

  const LlamaConfig& config() const noexcept;
  // Tokens held in the KV cache: the position the next token will take.
  int position() const noexcept;
  // Empties the KV cache; the next call starts a new sequence.
  void reset() noexcept;

  // Starts a new sequence (reset()) and runs all tokens through in one batched pass with
  // causal attention. Returns logits [tokens.size(), vocab]: row t predicts token t + 1.
  // Preconditions (LlamaError): ids in [0, vocab), 1 <= tokens.size() <= context_length.
  Logits prefill(std::span<const int> tokens,
                 CalibrationMode mode = CalibrationMode::forward_only);

  // Appends tokens at position() (a chunk of a longer sequence), attending to the cache.
  // Calls begin_prompt() on every projection first when position() == 0. Preconditions as
  // prefill, with position() + tokens.size() <= context_length.
  Logits extend(std::span<const int> tokens,
                CalibrationMode mode = CalibrationMode::forward_only);

  // extend() with one token; returns its logits [vocab].
  std::vector<float> decode_step(int token);

  // Runs the runner's own work through `parallel` (nullptr: serially).
  void set_parallel(ParallelFor parallel);

  // One sub-layer of block `layer` alone, on one sequence at positions 0..tokens-1: `normed` is
  // its normalised input [tokens, dim] (what the block's RMSNorm gives), `out` [tokens, dim] its
  // output before the residual: self-attention (q, k, v, RoPE, causal attention, o) or the
  // SwiGLU FFN (gate, up, down). What llm-awq's scale search compares candidate weights on
  // (its "module to inspect"). Uses the KV cache as scratch: the model is reset(). Throws
  // LlamaError on a bad layer, token count (1..context_length) or buffer size.
  enum class Sublayer { attention, mlp };
  void block_sublayer(int layer, Sublayer which, std::span<const float> normed, int tokens, std::span<float> out);

  // The projection of `layer` (0-based) of `kind`, as the factory made it.
  LinearLayer& linear(int layer, LinearKind kind);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ttq::llama
