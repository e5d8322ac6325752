// What one architecture of the runner is (llama.cpp's src/models/ is the model): a name
// (`general.architecture`), how its `<arch>.*` metadata fills a ModelConfig, the tensors of a block
// besides its 7 projections, and the wiring of a block from the shared building blocks, handed to
// it as a BlockRun. Everything else (loading and accounting for the tensors, the embedding, the
// KV cache, RoPE tables, the output head, the LinearLayer seam) is the model's, once for all
// architectures. Adding one is a file in this folder plus a line in architecture.cpp's registry:
// docs/design.md, "Adding an architecture".
#pragma once

#include <array>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "llama/layers.hpp"
#include "llama/model.hpp"

namespace ttq::llama {

class GgufFile;

// A block tensor besides the projections, a vector of `length`: "blk.<layer>.<name>.weight", or
// "blk.<layer>.<name>" when the name has its own suffix (a projection's bias: "attn_q.bias").
struct BlockTensor {
  std::string name;
  int length;
};

// One block's weights and state: the norm vectors of its BlockTensors (in their order), the 7
// projections (LinearKind order), its KV cache.
struct BlockState {
  std::vector<BlockTensor> tensor_names;
  std::vector<std::vector<float>> tensors;
  std::array<std::unique_ptr<LinearLayer>, kLinearKinds> linear;
  std::array<int, kLinearKinds> d_out{};  // of each projection
  KvCache cache;

  LinearLayer& operator[](LinearKind kind) { return *linear[static_cast<std::size_t>(kind)]; }
};

// The shared self-attention's architecture options.
struct AttentionOptions {
  bool qk_norm = false;  // RMSNorm of every head of q and k (tensors attn_q_norm, attn_k_norm) before RoPE
};

// Buffers reused across blocks and passes: the shared sub-layers' intermediates and the
// wiring's own.
struct Workspace {
  Activations q, k, v, attn, gate, up;
  std::array<Activations, 4> wiring;
};

// One block of one pass, as an architecture's wiring sees it: the shared building blocks bound
// to this block's weights, cache, position and calibration mode. Made by the model per block
// and pass; cheap.
class BlockRun {
 public:
  BlockRun(BlockState& state, const ModelConfig& config, int layer, int start, CalibrationMode mode, Rope& rope,
           const ParallelFor& parallel, Workspace& workspace)
      : state_(state),
        config_(config),
        layer_(layer),
        start_(start),
        mode_(mode),
        rope_(rope),
        parallel_(parallel),
        workspace_(workspace) {}

  const ModelConfig& config() const noexcept { return config_; }
  int layer() const noexcept { return layer_; }

  // The block tensor `name` (one of the architecture's BlockTensors; LlamaError otherwise).
  std::span<const float> tensor(std::string_view name) const;
  // RMSNorm of every row with the block tensor `name`; out may be in.
  void norm(std::string_view name, const Activations& in, Activations& out) const;
  // out = in W^T of the projection `kind`; in calibrate_then_forward it calibrates on `in` first.
  void project(LinearKind kind, const Activations& in, Activations& out);
  // Self-attention from the normalised input: q, k, v; the options' QK-norm; RoPE with this
  // layer's base; causal attention within this layer's window (ModelConfig::window), scaled by
  // config().attention_scale; o. Writes out [rows, dim], before any post-norm and residual.
  void self_attention(const Activations& in, const AttentionOptions& options, Activations& out);
  // The gated FFN down(act(gate in) * up in) into out [rows, dim].
  void gated_ffn(const Activations& in, FfnActivation activation, Activations& out);

  // Scratch buffers the wiring may use, i in 0..3 (the sub-layers above do not touch them).
  Activations& scratch(int i) { return workspace_.wiring.at(static_cast<std::size_t>(i)); }

 private:
  BlockState& state_;
  const ModelConfig& config_;
  int layer_;
  int start_;
  CalibrationMode mode_;
  Rope& rope_;
  const ParallelFor& parallel_;
  Workspace& workspace_;
};

// An architecture: plain functions, so that its file is its wiring and nothing else.
struct Architecture {
  std::string_view name;  // general.architecture
  // Fills what is specific to the architecture after read_common_config (styles, scales,
  // windows; and refuses what it does not support). LlamaError / GgufError.
  void (*configure)(const GgufFile& file, ModelConfig& config);
  // The block tensors besides the projections.
  std::vector<BlockTensor> (*block_tensors)(const ModelConfig& config);
  // The two sub-layers, from the normalised input to the output before post-norm and residual
  // (what Model::block_sublayer runs), and the whole block on the residual stream x.
  void (*attention)(BlockRun& block, const Activations& in, Activations& out);
  void (*ffn)(BlockRun& block, const Activations& in, Activations& out);
  void (*forward)(BlockRun& block, Activations& x);
};

// The architecture named `name`, or LlamaError listing the known ones.
const Architecture& find_architecture(std::string_view name);

// The keys every architecture shares, read with its prefix: `<arch>.embedding_length`,
// `.block_count`, `.attention.head_count`, `.attention.head_count_kv`, `.attention.key_length` (else
// dim / heads), `.attention.value_length` (must equal key_length), `.feed_forward_length`,
// `.context_length`, `.attention.layer_norm_rms_epsilon`, `.rope.freq_base`, `.rope.dimension_count`
// (must be the head dim), `.rope.scaling.type` (none only), `.final_logit_softcapping` (absent or 0);
// and the vocabulary size from token_embd.weight. attention_scale defaults to 1/sqrt(head_dim).
ModelConfig read_common_config(const GgufFile& file, std::string_view arch);

// The architectures of the registry (one file each in this folder).
const Architecture& llama_architecture();
const Architecture& gemma3_architecture();

}  // namespace ttq::llama
