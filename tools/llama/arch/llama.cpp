// Llama (`general.architecture` "llama": Llama 1-3 without rope scaling, stories260K, SmolLM2):
// pre-norm blocks x += attn(norm(x)); x += ffn(norm(x)), RoPE on adjacent pairs (the GGUF
// converter permutes q and k for it), grouped-query attention, SwiGLU FFN.
#include "llama/arch/architecture.hpp"

#include "llama/gguf.hpp"

namespace ttq::llama {
namespace {

void configure(const GgufFile&, ModelConfig& c) {
  c.rope_style = RopeStyle::adjacent_pairs;
  c.ffn_activation = FfnActivation::silu;
}

std::vector<BlockTensor> block_tensors(const ModelConfig& c) { return {{"attn_norm", c.dim}, {"ffn_norm", c.dim}}; }

void attention(BlockRun& b, const Activations& in, Activations& out) { b.self_attention(in, {}, out); }

void ffn(BlockRun& b, const Activations& in, Activations& out) { b.gated_ffn(in, FfnActivation::silu, out); }

void forward(BlockRun& b, Activations& x) {
  Activations& normed = b.scratch(0);
  Activations& out = b.scratch(1);
  b.norm("attn_norm", x, normed);
  attention(b, normed, out);
  add_in_place(x, out);
  b.norm("ffn_norm", x, normed);
  ffn(b, normed, out);
  add_in_place(x, out);
}

}  // namespace

const Architecture& llama_architecture() {
  static const Architecture a{"llama", configure, block_tensors, attention, ffn, forward};
  return a;
}

}  // namespace ttq::llama
