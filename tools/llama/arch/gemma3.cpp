// Gemma 3 (`general.architecture` "gemma3"; Gemma Team, "Gemma 3 Technical Report", 2025, and
// llama.cpp's src/models/gemma3.cpp): token embeddings scaled by sqrt(dim); blocks
//   h = x + post_attention_norm(attn(attn_norm(x)));  x = h + post_ffw_norm(ffn(ffn_norm(h)))
// with RMSNorm of every head of q and k before RoPE (QK-norm), NEOX-style RoPE, a GeGLU FFN
// (GELU, tanh approximation), and local layers that attend through a sliding window with their
// own RoPE base, every `sliding_window_pattern`-th layer (default 6) global. The GGUF converter
// stores the norm weights with Gemma's "+1" already added, so the norms are plain RMSNorms.
#include "llama/arch/architecture.hpp"

#include <cmath>
#include <variant>

#include "llama/gguf.hpp"

namespace ttq::llama {
namespace {

void configure(const GgufFile& file, ModelConfig& c) {
  c.rope_style = RopeStyle::neox;
  c.ffn_activation = FfnActivation::gelu_tanh;
  // llama.cpp scales by sqrtf(n_embd) in float, as here (Hugging Face rounds it to bf16 first).
  c.embedding_scale = std::sqrt(static_cast<float>(c.dim));
  // query_pre_attn_scalar is not in the GGUF: it is the head dim for every size but 27B (62
  // layers), where it is dim / heads (gemma_pytorch's config; llama.cpp does the same).
  if (c.n_layers == 62) c.attention_scale = 1.0f / std::sqrt(static_cast<float>(c.dim / c.n_heads));
  const auto window = file.find_uint("gemma3.attention.sliding_window");
  if (!window || *window == 0) return;  // every layer global
  if (*window > (1u << 24)) throw LlamaError(cat("gemma3: attention.sliding_window: expected 0..2^24, got ", *window));
  c.sliding_window = static_cast<int>(*window);
  const double local_base = file.find_float("gemma3.rope.freq_base_swa").value_or(10000.0);
  if (!(local_base > 1.0 && std::isfinite(local_base)))
    throw LlamaError(cat("gemma3: rope.freq_base_swa: expected a finite value > 1, got ", local_base));
  c.rope_base_local = static_cast<float>(local_base);
  // The pattern: a period n (layer l is local unless l % n == n - 1), or one flag per layer.
  const GgufValue* pattern = file.find("gemma3.attention.sliding_window_pattern");
  if (pattern && pattern->type() == GgufType::array) {
    const auto& array = std::get<GgufArray>(pattern->value);
    std::vector<std::int64_t> flags;
    if (array.element_type() == GgufType::boolean) {
      for (bool f : std::get<std::vector<bool>>(array.items)) flags.push_back(f ? 1 : 0);
    } else {
      flags = file.get_int_array("gemma3.attention.sliding_window_pattern");
    }
    if (flags.size() != static_cast<std::size_t>(c.n_layers))
      throw LlamaError(cat("gemma3: attention.sliding_window_pattern: expected one flag per layer (", c.n_layers, "), got ",
                           flags.size()));
    for (std::size_t l = 0; l < flags.size(); ++l) c.local_layer[l] = flags[l] != 0;
    return;
  }
  const std::uint64_t period = pattern ? file.get_uint("gemma3.attention.sliding_window_pattern") : 6;
  for (int l = 0; l < c.n_layers; ++l)
    c.local_layer[static_cast<std::size_t>(l)] = period == 0 || static_cast<std::uint64_t>(l) % period < period - 1;
}

std::vector<BlockTensor> block_tensors(const ModelConfig& c) {
  return {{"attn_norm", c.dim},           {"attn_q_norm", c.head_dim}, {"attn_k_norm", c.head_dim},
          {"post_attention_norm", c.dim}, {"ffn_norm", c.dim},         {"post_ffw_norm", c.dim}};
}

void attention(BlockRun& b, const Activations& in, Activations& out) { b.self_attention(in, {.qk_norm = true}, out); }

void ffn(BlockRun& b, const Activations& in, Activations& out) { b.gated_ffn(in, FfnActivation::gelu_tanh, out); }

void forward(BlockRun& b, Activations& x) {
  Activations& normed = b.scratch(0);
  Activations& out = b.scratch(1);
  b.norm("attn_norm", x, normed);
  attention(b, normed, out);
  b.norm("post_attention_norm", out, out);
  add_in_place(x, out);
  b.norm("ffn_norm", x, normed);
  ffn(b, normed, out);
  b.norm("post_ffw_norm", out, out);
  add_in_place(x, out);
}

}  // namespace

const Architecture& gemma3_architecture() {
  static const Architecture a{"gemma3", configure, block_tensors, attention, ffn, forward};
  return a;
}

}  // namespace ttq::llama
