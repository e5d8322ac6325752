// The decoder-only transformer the real-model tools run, in fp32, for every architecture the
// runner knows (`general.architecture`; llama/arch/ has one file each). Its
// reason to exist is the LinearLayer seam: each of the 7 projections of every block (q, k, v, o,
// gate, up, down) is an object made by a caller-supplied factory, so a quantizer can be plugged in
// and judged on a real model against the fp32 default. It scores a whole sequence in one batched
// prefill (the log-probabilities of the next tokens streamed through the output head, never a
// [tokens, vocab] matrix), decodes one token at a time from the KV cache, and can run a prefill in
// which every projection first calibrates on exactly the input it then transforms.
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
inline constexpr std::array<LinearKind, kLinearKinds> kAllLinearKinds = {
    LinearKind::q, LinearKind::k, LinearKind::v, LinearKind::o, LinearKind::gate, LinearKind::up, LinearKind::down};

// GGUF name of a projection kind: "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down".
std::string_view linear_kind_name(LinearKind kind);
// GGUF tensor name of a projection: "blk.<layer>.attn_q.weight", ..., "blk.<layer>.ffn_down.weight".
std::string linear_tensor_name(int layer, LinearKind kind);

// Runs body(begin, end) over [0, count) split into chunks, possibly in parallel, and returns when
// all are done; body must be safe to call concurrently on disjoint ranges. The runner uses it for
// its own work (attention heads, the output head's vocabulary rows); the tools hand it ttq's
// executor so that the runner and the projections share one thread pool. Default: serial.
using ParallelFor = std::function<void(int count, const std::function<void(int begin, int end)>& body)>;

// How RoPE pairs the dimensions of a head: (2i, 2i+1) as llama2.c and Llama GGUFs (whose
// converter permutes q/k to match), or (i, i + head_dim/2) as GPT-NeoX, Gemma and Qwen.
enum class RopeStyle { adjacent_pairs, neox };
// The gate's activation of the gated FFN down(act(gate x) * up x): SiLU (SwiGLU: Llama, Qwen) or
// GELU with the tanh approximation (GeGLU: Gemma).
enum class FfnActivation { silu, gelu_tanh };

// Architecture hyper-parameters, from the `<arch>.*` metadata (arch = general.architecture), and
// the per-layer choices the architecture derives from them.
struct ModelConfig {
  std::string architecture;  // general.architecture
  int dim = 0;               // <arch>.embedding_length
  int n_layers = 0;          // <arch>.block_count
  int n_heads = 0;           // <arch>.attention.head_count
  int n_kv_heads = 0;        // <arch>.attention.head_count_kv (default: n_heads)
  int head_dim = 0;          // <arch>.attention.key_length (default: dim / n_heads)
  int ffn_dim = 0;           // <arch>.feed_forward_length
  int vocab_size = 0;        // rows of token_embd.weight
  int context_length = 0;    // <arch>.context_length (default 2048): the KV cache's limit
  float rms_eps = 1e-5f;     // <arch>.attention.layer_norm_rms_epsilon (default 1e-5)
  float rope_base = 10000.0f;  // <arch>.rope.freq_base (default 10000): RoPE base of the global layers
  RopeStyle rope_style = RopeStyle::adjacent_pairs;
  FfnActivation ffn_activation = FfnActivation::silu;
  float embedding_scale = 1.0f;  // the token embeddings are multiplied by this (Gemma: sqrt(dim))
  float attention_scale = 0.0f;  // q.k is multiplied by this (default 1/sqrt(head_dim))
  int sliding_window = 0;        // keys a local layer's query sees, itself included (0: no local layer)
  float rope_base_local = 10000.0f;  // RoPE base of the local (sliding-window) layers
  std::vector<bool> local_layer;     // per layer: attends through the sliding window

  bool is_local(int layer) const { return sliding_window > 0 && local_layer.at(static_cast<std::size_t>(layer)); }
  // Keys visible to a query of `layer`, itself included; 0: all earlier positions.
  int window(int layer) const { return is_local(layer) ? sliding_window : 0; }
  float rope_base_of(int layer) const { return is_local(layer) ? rope_base_local : rope_base; }

  // Reads and validates the metadata of the architecture general.architecture names (LlamaError /
  // GgufError on missing, inconsistent or unsupported values: an unknown architecture, partial
  // rotary, rope scaling, logit soft-capping).
  static ModelConfig from_gguf(const GgufFile& file);
};

// One projection of a block as the model builds it: its kind and its weight's [d_out, d_in].
struct ProjectionShape {
  LinearKind kind;
  int d_out;
  int d_in;
};
// The shape table: the projections of every block of a model of `config`, in LinearKind order
// (every block has the same). The model expects its tensors with these shapes; the tools check
// their flags against them before building anything.
std::vector<ProjectionShape> projection_shapes(const ModelConfig& config);

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

// No next-token target at this position (Model::extend_log_probs).
inline constexpr int kNoTarget = -1;

class Model {
 public:
  // Builds the model from a parsed GGUF (which need not outlive it) for its architecture,
  // accounting for every tensor: each one the architecture expects must be there with the shape
  // the metadata implies, and no other may be (a file whose block_count is smaller than its
  // blocks of tensors is refused), and a vocabulary (tokenizer.ggml.tokens) must have one string
  // per embedding row. The 7 * n_layers projections come from `factory`. `output.weight` may be
  // absent (tied head: token_embd.weight is used). Throws LlamaError / GgufError.
  explicit Model(const GgufFile& file, const LinearFactory& factory = make_fp32_linear);
  ~Model();
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;

  const ModelConfig& config() const noexcept;
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

  // extend() that returns the logits of the last token only [vocab] (generation: a long prompt
  // with a large vocabulary would otherwise materialise [tokens, vocab]).
  std::vector<float> extend_last(std::span<const int> tokens,
                                 CalibrationMode mode = CalibrationMode::forward_only);

  // extend() that returns, instead of logits, log softmax(logits_t)[targets[t]] (natural log,
  // in double) for every t with targets[t] != kNoTarget, and 0 elsewhere. The log-softmax is
  // streamed through the output head one block of vocabulary rows at a time, so no [tokens, vocab]
  // matrix exists. Preconditions as extend, plus targets.size() == tokens.size() and every target
  // in [0, vocab) or kNoTarget.
  std::vector<double> extend_log_probs(std::span<const int> tokens, std::span<const int> targets,
                                       CalibrationMode mode = CalibrationMode::forward_only);

  // extend() with one token; returns its logits [vocab].
  std::vector<float> decode_step(int token);

  // Runs the runner's own work through `parallel` (nullptr: serially).
  void set_parallel(ParallelFor parallel);

  // One sub-layer of block `layer` alone, on one sequence at positions 0..tokens-1: `normed` is
  // its normalised input [tokens, dim] (what the block's pre-norm gives), `out` [tokens, dim] its
  // output before any post-norm and the residual: self-attention (q, k, v, the architecture's
  // QK-norm, RoPE, causal attention with the layer's window, o) or the gated FFN (gate, up, down).
  // What llm-awq's scale search compares candidate weights on (its "module to inspect"). Uses the
  // KV cache as scratch: the model is reset(). Throws LlamaError on a bad layer, token count
  // (1..context_length) or buffer size.
  enum class Sublayer { attention, mlp };
  void block_sublayer(int layer, Sublayer which, std::span<const float> normed, int tokens, std::span<float> out);

  // The residual stream of a sequence before block 0: the embeddings of `tokens` [tokens, dim],
  // scaled as the architecture does. Preconditions as prefill (LlamaError).
  std::vector<float> embed(std::span<const int> tokens) const;
  // Block `layer` alone on the residual stream x [tokens, dim] of one sequence at positions
  // 0..tokens-1, in place (forward only: its projections see their inputs). Running blocks
  // 0..L-1 in turn on embed(tokens) gives what a prefill feeds block L, so a search that needs
  // every block's inputs costs one pass instead of one per block. Uses the KV cache as scratch:
  // the model is reset(). Throws LlamaError on a bad layer, token count or buffer size.
  void block_forward(int layer, std::span<float> x, int tokens);

  // The projection of `layer` (0-based) of `kind`, as the factory made it.
  LinearLayer& linear(int layer, LinearKind kind);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The names the runner had while it knew only Llama; branches written against them still build.
using LlamaModel = Model;
using LlamaConfig = ModelConfig;

}  // namespace ttq::llama
