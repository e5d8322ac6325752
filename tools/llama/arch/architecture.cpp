// The shared part of every architecture: the registry, the `<arch>.*` keys they all read, and
// the sub-layers a BlockRun offers the wiring (composed from llama/layers.hpp).
#include "llama/arch/architecture.hpp"

#include <cmath>
#include <optional>

#include "llama/gguf.hpp"

namespace ttq::llama {
namespace {

int positive_int(const GgufFile& file, const std::string& key, std::optional<std::uint64_t> fallback) {
  const auto v = file.find_uint(key);
  if (!v && !fallback) throw LlamaError(cat("model: metadata '", key, "': expected the key, it is absent"));
  const std::uint64_t value = v ? *v : *fallback;
  // 2^24 bounds every size so that products of two of them fit comfortably in 64 bits.
  if (value < 1 || value > (1u << 24)) throw LlamaError(cat("model: metadata '", key, "': expected 1..2^24, got ", value));
  return static_cast<int>(value);
}

std::string dims_string(const std::vector<std::uint64_t>& dims) {
  std::string s = "[";
  for (std::size_t i = 0; i < dims.size(); ++i) s += cat(i ? ", " : "", dims[i]);
  return s + "]";
}

}  // namespace

const Architecture& find_architecture(std::string_view name) {
  for (const Architecture* a : {&llama_architecture(), &gemma3_architecture()})
    if (a->name == name) return *a;
  throw LlamaError(cat("model: general.architecture: expected \"llama\" or \"gemma3\", got \"", name, "\""));
}

ModelConfig read_common_config(const GgufFile& file, std::string_view arch) {
  const std::string p = cat(arch, ".");
  ModelConfig c;
  c.architecture = std::string(arch);
  c.dim = positive_int(file, p + "embedding_length", std::nullopt);
  c.n_layers = positive_int(file, p + "block_count", std::nullopt);
  c.n_heads = positive_int(file, p + "attention.head_count", std::nullopt);
  c.n_kv_heads = positive_int(file, p + "attention.head_count_kv", static_cast<std::uint64_t>(c.n_heads));
  c.ffn_dim = positive_int(file, p + "feed_forward_length", std::nullopt);
  c.context_length = positive_int(file, p + "context_length", 2048);
  if (c.n_heads % c.n_kv_heads != 0)
    throw LlamaError(cat(arch, ": attention.head_count ", c.n_heads, ": expected a multiple of head_count_kv ", c.n_kv_heads));
  if (file.find(p + "attention.key_length")) {
    // A head may be wider than dim / heads (Gemma 3 270M: 4 heads of 256 in a 640-wide model).
    c.head_dim = positive_int(file, p + "attention.key_length", std::nullopt);
  } else {
    if (c.dim % c.n_heads != 0)
      throw LlamaError(cat(arch, ": embedding_length ", c.dim, ": expected a multiple of head_count ", c.n_heads,
                           " (or an attention.key_length)"));
    c.head_dim = c.dim / c.n_heads;
  }
  if (c.head_dim % 2 != 0) throw LlamaError(cat(arch, ": head dim ", c.head_dim, ": expected an even number (RoPE pairs)"));
  if (static_cast<std::int64_t>(c.n_heads) * c.head_dim > (1 << 24))
    throw LlamaError(cat(arch, ": head_count x key_length = ", c.n_heads, " x ", c.head_dim, ": expected at most 2^24"));
  if (const auto v = file.find_uint(p + "attention.value_length"); v && *v != static_cast<std::uint64_t>(c.head_dim))
    throw LlamaError(cat(arch, ": attention.value_length: expected the key length ", c.head_dim, ", got ", *v));
  if (const auto rot = file.find_uint(p + "rope.dimension_count"); rot && *rot != static_cast<std::uint64_t>(c.head_dim))
    throw LlamaError(cat(arch, ": rope.dimension_count: expected the head dim ", c.head_dim, " (partial rotary is not supported), got ",
                         *rot));
  if (const auto scaling = file.find_string(p + "rope.scaling.type"); scaling && *scaling != "none")
    throw LlamaError(cat(arch, ": rope.scaling.type: expected none, got \"", *scaling, "\" (not supported)"));
  if (const auto cap = file.find_float(p + "final_logit_softcapping"); cap && *cap != 0.0)
    throw LlamaError(cat(arch, ": final_logit_softcapping: expected none, got ", *cap, " (not supported)"));
  const double eps = file.find_float(p + "attention.layer_norm_rms_epsilon").value_or(1e-5);
  if (!(eps > 0.0 && eps < 1.0))
    throw LlamaError(cat(arch, ": attention.layer_norm_rms_epsilon: expected a value in (0, 1), got ", eps));
  c.rms_eps = static_cast<float>(eps);
  const double base = file.find_float(p + "rope.freq_base").value_or(10000.0);
  if (!(base > 1.0 && std::isfinite(base)))
    throw LlamaError(cat(arch, ": rope.freq_base: expected a finite value > 1, got ", base));
  c.rope_base = static_cast<float>(base);
  c.attention_scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  c.local_layer.assign(static_cast<std::size_t>(c.n_layers), false);
  const GgufTensor& embd = file.tensor("token_embd.weight");
  if (embd.dims.size() != 2 || embd.dims[0] != static_cast<std::uint64_t>(c.dim) || embd.dims[1] < 1 || embd.dims[1] > (1u << 24))
    throw LlamaError(cat(arch, ": tensor 'token_embd.weight': expected dims [", c.dim, ", vocab] with 1 <= vocab <= 2^24, got ",
                         dims_string(embd.dims)));
  c.vocab_size = static_cast<int>(embd.dims[1]);
  return c;
}

ModelConfig ModelConfig::from_gguf(const GgufFile& file) {
  const auto arch = file.find_string("general.architecture");
  if (!arch) throw LlamaError("model: general.architecture: expected \"llama\" or \"gemma3\", got nothing");
  const Architecture& a = find_architecture(*arch);
  ModelConfig c = read_common_config(file, a.name);
  a.configure(file, c);
  return c;
}

std::span<const float> BlockRun::tensor(std::string_view name) const {
  for (std::size_t i = 0; i < state_.tensor_names.size(); ++i)
    if (state_.tensor_names[i].name == name) return state_.tensors[i];
  throw LlamaError(cat("model: block tensor '", name, "': not one of the ", config_.architecture, " architecture's"));
}

void BlockRun::norm(std::string_view name, const Activations& in, Activations& out) const {
  rms_norm(in, tensor(name), config_.rms_eps, out);
}

void BlockRun::project(LinearKind kind, const Activations& in, Activations& out) {
  LinearLayer& layer = state_[kind];
  out.resize(in.rows, state_.d_out[static_cast<std::size_t>(kind)]);
  if (mode_ == CalibrationMode::calibrate_then_forward) layer.calibrate(in.data(), in.rows);
  layer.forward(in.data(), in.rows, out.data());
}

void BlockRun::self_attention(const Activations& in, const AttentionOptions& options, Activations& out) {
  Workspace& w = workspace_;
  project(LinearKind::q, in, w.q);
  project(LinearKind::k, in, w.k);
  project(LinearKind::v, in, w.v);
  if (options.qk_norm) {
    rms_norm_heads(w.q, tensor("attn_q_norm"), config_.rms_eps);
    rms_norm_heads(w.k, tensor("attn_k_norm"), config_.rms_eps);
  }
  rope_.apply(w.q, config_.n_heads, start_);
  rope_.apply(w.k, config_.n_kv_heads, start_);
  const AttentionShape shape{config_.n_heads, config_.n_kv_heads, config_.head_dim, config_.attention_scale,
                             config_.window(layer_), config_.context_length};
  causal_attention(w.q, w.k, w.v, state_.cache, start_, shape, parallel_, w.attn);
  project(LinearKind::o, w.attn, out);
}

void BlockRun::gated_ffn(const Activations& in, FfnActivation activation, Activations& out) {
  Workspace& w = workspace_;
  project(LinearKind::gate, in, w.gate);
  project(LinearKind::up, in, w.up);
  gated_activation(w.gate, w.up, activation);
  project(LinearKind::down, w.gate, out);
}

}  // namespace ttq::llama
