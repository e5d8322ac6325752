// The model, once for every architecture: loading (the tensors an architecture expects, each
// checked against the shape the metadata implies, and no tensor left over), the embedding, the
// blocks (wired by the architecture's file, llama/arch/), the final norm and the output head in
// its three forms (all logits, the last token's, the streamed log-probabilities of targets).
#include "llama/model.hpp"

#include <algorithm>
#include <cmath>
#include <optional>
#include <set>

#include "llama/arch/architecture.hpp"
#include "llama/gguf.hpp"
#include "llama/layers.hpp"

namespace ttq::llama {
namespace {

constexpr const char* kLinearNames[kLinearKinds] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};

std::string dims_string(const std::vector<std::uint64_t>& dims) {
  std::string s = "[";
  for (std::size_t i = 0; i < dims.size(); ++i) s += cat(i ? ", " : "", dims[i]);
  return s + "]";
}

// A tensor the architecture expects, with its GGUF dims (contiguous dimension first).
struct Expected {
  std::string name;
  std::vector<std::uint64_t> dims;
};

const GgufTensor& checked_tensor(const GgufFile& file, const Expected& e, const std::string& arch) {
  const GgufTensor* t = file.find_tensor(e.name);
  if (!t) throw LlamaError(cat(arch, ": tensor '", e.name, "': expected it in the file, it is absent"));
  if (t->dims != e.dims)
    throw LlamaError(cat(arch, ": tensor '", e.name, "': expected dims ", dims_string(e.dims), " (GGUF order, contiguous first), got ",
                         dims_string(t->dims)));
  return *t;
}

// GGUF name of block tensor `t` of layer l: "blk.<l>.<name>.weight", or "blk.<l>.<name>" when the
// name carries its own suffix (a bias: "attn_q.bias").
std::string block_tensor_name(int layer, const BlockTensor& t) {
  return cat("blk.", layer, ".", t.name, t.name.find('.') == std::string::npos ? ".weight" : "");
}

}  // namespace

std::string_view linear_kind_name(LinearKind kind) { return kLinearNames[static_cast<int>(kind)]; }

std::string linear_tensor_name(int layer, LinearKind kind) { return cat("blk.", layer, ".", linear_kind_name(kind), ".weight"); }

std::vector<ProjectionShape> projection_shapes(const ModelConfig& c) {
  const int q_dim = c.n_heads * c.head_dim, kv_dim = c.n_kv_heads * c.head_dim;
  return {{LinearKind::q, q_dim, c.dim},           {LinearKind::k, kv_dim, c.dim},       {LinearKind::v, kv_dim, c.dim},
          {LinearKind::o, c.dim, q_dim},           {LinearKind::gate, c.ffn_dim, c.dim}, {LinearKind::up, c.ffn_dim, c.dim},
          {LinearKind::down, c.dim, c.ffn_dim}};
}

struct Model::Impl {
  ModelConfig config;
  const Architecture* arch = nullptr;
  std::vector<float> token_embd;   // [vocab, dim]
  std::vector<float> output;       // [vocab, dim]; empty when tied to token_embd
  std::vector<float> output_norm;  // [dim]
  std::vector<BlockState> blocks;
  std::optional<Rope> rope_global;
  std::optional<Rope> rope_local;
  int position = 0;
  Workspace workspace;
  Activations x;  // the residual stream [tokens, dim]
  ParallelFor parallel;

  OutputHead head() const { return {output.empty() ? token_embd.data() : output.data(), config.vocab_size, config.dim}; }
  Rope& rope_of(int layer) { return config.is_local(layer) ? *rope_local : *rope_global; }
  BlockRun block_run(int layer, int start, CalibrationMode mode) {
    return BlockRun(blocks[static_cast<std::size_t>(layer)], config, layer, start, mode, rope_of(layer), parallel, workspace);
  }

  void check_tokens(std::span<const int> tokens, int start) const {
    if (tokens.empty()) throw LlamaError("model: tokens: expected at least one token, got none");
    if (tokens.size() > static_cast<std::size_t>(config.context_length - start))
      throw LlamaError(cat("model: sequence length: expected at most context_length ", config.context_length, " positions, got ", start,
                           " cached + ", tokens.size(), " new"));
    for (std::size_t i = 0; i < tokens.size(); ++i)
      if (tokens[i] < 0 || tokens[i] >= config.vocab_size)
        throw LlamaError(cat("model: token ", i, ": expected an id in 0..", config.vocab_size - 1, ", got ", tokens[i]));
  }

  // The scaled embeddings of `tokens` into rows [0, n) of out (dim wide).
  void embed_into(std::span<const int> tokens, float* out) const {
    for (std::size_t t = 0; t < tokens.size(); ++t) {
      const float* e = token_embd.data() + static_cast<std::size_t>(tokens[t]) * config.dim;
      float* row = out + t * static_cast<std::size_t>(config.dim);
      if (config.embedding_scale == 1.0f) std::copy_n(e, config.dim, row);
      else
        for (int j = 0; j < config.dim; ++j) row[j] = e[j] * config.embedding_scale;
    }
  }

  // Runs `tokens` through the blocks at position() and leaves the final-normed states in x.
  void run(std::span<const int> tokens, CalibrationMode mode) {
    const int n = static_cast<int>(tokens.size());
    check_tokens(tokens, position);
    if (position == 0)
      for (auto& b : blocks)
        for (auto& l : b.linear) l->begin_prompt();
    const int start = position;
    x.resize(n, config.dim);
    embed_into(tokens, x.data());
    for (int l = 0; l < config.n_layers; ++l) {
      BlockRun b = block_run(l, start, mode);
      arch->forward(b, x);
    }
    position = start + n;
    rms_norm(x, output_norm, config.rms_eps, x);
  }
};

Model::Model(const GgufFile& file, const LinearFactory& factory) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.config = ModelConfig::from_gguf(file);
  m.arch = &find_architecture(m.config.architecture);
  const ModelConfig& c = m.config;
  const std::string& arch = c.architecture;
  const auto dim = static_cast<std::uint64_t>(c.dim);
  const auto vocab = static_cast<std::uint64_t>(c.vocab_size);
  const std::vector<BlockTensor> block_tensors = m.arch->block_tensors(c);
  const std::vector<ProjectionShape> shapes = projection_shapes(c);

  // Every tensor the architecture expects, checked before anything is built (a factory may
  // quantize): present, with the shape the metadata implies; then no other tensor in the file.
  // Checked as they are named, so a claimed block_count of 2^24 stops at the first absent block.
  std::set<std::string, std::less<>> names;
  auto expect = [&](const Expected& e) {
    checked_tensor(file, e, arch);
    names.insert(e.name);
  };
  expect({"token_embd.weight", {dim, vocab}});
  expect({"output_norm.weight", {dim}});
  if (file.find_tensor("output.weight")) expect({"output.weight", {dim, vocab}});
  for (int l = 0; l < c.n_layers; ++l) {
    for (const BlockTensor& t : block_tensors) expect({block_tensor_name(l, t), {static_cast<std::uint64_t>(t.length)}});
    for (const ProjectionShape& s : shapes)
      expect({linear_tensor_name(l, s.kind), {static_cast<std::uint64_t>(s.d_in), static_cast<std::uint64_t>(s.d_out)}});
  }
  std::vector<std::string> unused;
  for (const GgufTensor& t : file.tensors())
    if (!names.count(t.name)) unused.push_back(t.name);
  if (!unused.empty())
    throw LlamaError(cat(arch, ": wrong number of tensors: a model of block_count ", c.n_layers, " uses ", names.size(), ", the file has ",
                         file.tensors().size(), "; '", unused.front(), "'", unused.size() > 1 ? cat(" and ", unused.size() - 1, " more") : "",
                         " would be ignored (an inconsistent file: its metadata does not describe its tensors)"));
  // The vocabulary names one token per embedding row; any other count fails only while decoding.
  if (const GgufValue* tokens = file.find("tokenizer.ggml.tokens"); tokens && tokens->type() == GgufType::array) {
    const std::size_t strings = std::get<GgufArray>(tokens->value).size();
    if (strings != vocab)
      throw LlamaError(cat(arch, ": tokenizer.ggml.tokens: expected one string per row of token_embd.weight (", vocab, "), got ", strings));
  }

  m.token_embd = file.tensor("token_embd.weight").data;
  if (const GgufTensor* out = file.find_tensor("output.weight")) m.output = out->data;
  m.output_norm = file.tensor("output_norm.weight").data;
  m.blocks.resize(static_cast<std::size_t>(c.n_layers));
  for (int l = 0; l < c.n_layers; ++l) {
    BlockState& b = m.blocks[static_cast<std::size_t>(l)];
    b.tensor_names = block_tensors;
    for (const BlockTensor& t : block_tensors) b.tensors.push_back(file.tensor(block_tensor_name(l, t)).data);
    for (const ProjectionShape& s : shapes) {
      const std::string name = linear_tensor_name(l, s.kind);
      const auto k = static_cast<std::size_t>(s.kind);
      b.linear[k] = factory(name, file.tensor(name).data.data(), s.d_out, s.d_in);
      b.d_out[k] = s.d_out;
      if (!b.linear[k]) throw LlamaError(cat(arch, ": linear factory for '", name, "': expected a layer, got nullptr"));
    }
  }
  // RoPE tables grow with the positions used, never to the claimed context length up front.
  m.rope_global.emplace(c.head_dim, static_cast<double>(c.rope_base), c.rope_style, c.context_length);
  if (c.sliding_window > 0) m.rope_local.emplace(c.head_dim, static_cast<double>(c.rope_base_local), c.rope_style, c.context_length);
}

Model::~Model() = default;
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;

const ModelConfig& Model::config() const noexcept { return impl_->config; }
void Model::set_parallel(ParallelFor parallel) { impl_->parallel = std::move(parallel); }
int Model::position() const noexcept { return impl_->position; }
void Model::reset() noexcept { impl_->position = 0; }

Logits Model::prefill(std::span<const int> tokens, CalibrationMode mode) {
  reset();
  return extend(tokens, mode);
}

Logits Model::extend(std::span<const int> tokens, CalibrationMode mode) {
  Impl& m = *impl_;
  m.run(tokens, mode);
  Logits result;
  result.tokens = m.x.rows;
  result.vocab = m.config.vocab_size;
  head_logits(m.x, m.head(), m.parallel, result.values);
  return result;
}

std::vector<float> Model::extend_last(std::span<const int> tokens, CalibrationMode mode) {
  Impl& m = *impl_;
  m.run(tokens, mode);
  Activations last;
  last.resize(1, m.config.dim);
  std::copy_n(m.x.row(m.x.rows - 1), m.config.dim, last.data());
  std::vector<float> logits;
  head_logits(last, m.head(), m.parallel, logits);
  return logits;
}

std::vector<double> Model::extend_log_probs(std::span<const int> tokens, std::span<const int> targets, CalibrationMode mode) {
  Impl& m = *impl_;
  if (targets.size() != tokens.size())
    throw LlamaError(cat("model: targets: expected one per token (", tokens.size(), "), got ", targets.size()));
  for (std::size_t i = 0; i < targets.size(); ++i)
    if (targets[i] != kNoTarget && (targets[i] < 0 || targets[i] >= m.config.vocab_size))
      throw LlamaError(cat("model: target ", i, ": expected an id in 0..", m.config.vocab_size - 1, " or none, got ", targets[i]));
  m.run(tokens, mode);
  return head_log_probs(m.x, m.head(), targets, m.parallel);
}

std::vector<float> Model::decode_step(int token) { return extend_last(std::span<const int>(&token, 1), CalibrationMode::forward_only); }

void Model::block_sublayer(int layer, Sublayer which, std::span<const float> normed, int tokens, std::span<float> out) {
  Impl& m = *impl_;
  const int dim = m.config.dim;
  if (layer < 0 || layer >= m.config.n_layers)
    throw LlamaError(cat("model: block_sublayer: expected layer 0..", m.config.n_layers - 1, ", got ", layer));
  if (tokens < 1 || tokens > m.config.context_length)
    throw LlamaError(cat("model: block_sublayer: expected 1..", m.config.context_length, " tokens, got ", tokens));
  const std::size_t size = static_cast<std::size_t>(tokens) * static_cast<std::size_t>(dim);
  if (normed.size() != size || out.size() != size)
    throw LlamaError(cat("model: block_sublayer: expected input and output of ", tokens, " x ", dim, " floats, got ", normed.size(), " and ",
                         out.size()));
  reset();  // the block's KV cache is scratch here
  Activations in, result;
  in.resize(tokens, dim);
  std::copy_n(normed.data(), size, in.data());
  BlockRun b = m.block_run(layer, 0, CalibrationMode::forward_only);
  if (which == Sublayer::attention) m.arch->attention(b, in, result);
  else m.arch->ffn(b, in, result);
  std::copy_n(result.data(), size, out.data());
}

std::vector<float> Model::embed(std::span<const int> tokens) const {
  impl_->check_tokens(tokens, 0);
  std::vector<float> out(tokens.size() * static_cast<std::size_t>(impl_->config.dim));
  impl_->embed_into(tokens, out.data());
  return out;
}

void Model::block_forward(int layer, std::span<float> x, int tokens) {
  Impl& m = *impl_;
  const int dim = m.config.dim;
  if (layer < 0 || layer >= m.config.n_layers)
    throw LlamaError(cat("model: block_forward: expected layer 0..", m.config.n_layers - 1, ", got ", layer));
  if (tokens < 1 || tokens > m.config.context_length)
    throw LlamaError(cat("model: block_forward: expected 1..", m.config.context_length, " tokens, got ", tokens));
  const std::size_t size = static_cast<std::size_t>(tokens) * static_cast<std::size_t>(dim);
  if (x.size() != size) throw LlamaError(cat("model: block_forward: expected ", tokens, " x ", dim, " floats, got ", x.size()));
  reset();  // the block's KV cache is scratch here
  for (auto& l : m.blocks[static_cast<std::size_t>(layer)].linear) l->begin_prompt();
  Activations stream;
  stream.resize(tokens, dim);
  std::copy_n(x.data(), size, stream.data());
  BlockRun b = m.block_run(layer, 0, CalibrationMode::forward_only);
  m.arch->forward(b, stream);
  std::copy_n(stream.data(), size, x.data());
}

LinearLayer& Model::linear(int layer, LinearKind kind) {
  const auto k = static_cast<int>(kind);
  if (layer < 0 || layer >= impl_->config.n_layers || k < 0 || k >= kLinearKinds)
    throw LlamaError(cat("model: linear(", layer, ", ", k, "): expected layer 0..", impl_->config.n_layers - 1, " and kind 0..",
                         kLinearKinds - 1));
  return impl_->blocks[static_cast<std::size_t>(layer)][kind];
}

}  // namespace ttq::llama
