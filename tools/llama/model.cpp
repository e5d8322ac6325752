// The Llama forward pass's implementation, the only translation unit of the runner that
// includes Eigen (Eigen is slow to compile; keeping it here keeps the other units quick).
// Activations are row-major [tokens, features] so a whole prefill goes through each projection
// as one matrix product, and decode is the same code with tokens = 1.
#include "llama/model.hpp"
#include "llama/error.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <optional>
#include <sstream>

#include "llama/gguf.hpp"

namespace ttq::llama {
namespace {

using MatrixRM = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using StridedMap = Eigen::Map<MatrixRM, 0, Eigen::OuterStride<>>;
using ConstStridedMap = Eigen::Map<const MatrixRM, 0, Eigen::OuterStride<>>;

class Fp32Linear final : public LinearLayer {
 public:
  Fp32Linear(const float* w, int d_out, int d_in) : w_(Eigen::Map<const MatrixRM>(w, d_out, d_in)) {}

  void forward(const float* x, int tokens, float* y) override {
    const Eigen::Map<const MatrixRM> in(x, tokens, w_.cols());
    Eigen::Map<MatrixRM> out(y, tokens, w_.rows());
    out.noalias() = in * w_.transpose();
  }

 private:
  MatrixRM w_;  // [d_out, d_in]
};

constexpr const char* kLinearSuffix[kLinearKinds] = {"attn_q",      "attn_k",   "attn_v", "attn_output",
                                                     "ffn_gate",    "ffn_up",   "ffn_down"};

std::string dims_string(const std::vector<std::uint64_t>& dims) {
  std::string s = "[";
  for (std::size_t i = 0; i < dims.size(); ++i) s += cat(i ? ", " : "", dims[i]);
  return s + "]";
}

// The tensor `name` with GGUF dims `dims` (contiguous dimension first).
const GgufTensor& expect_tensor(const GgufFile& file, const std::string& name,
                                std::vector<std::uint64_t> dims) {
  const GgufTensor* t = file.find_tensor(name);
  if (!t) throw LlamaError(cat("llama: tensor '", name, "': expected it in the file, it is absent"));
  if (t->dims != dims) {
    throw LlamaError(cat("llama: tensor '", name, "': expected dims ", dims_string(dims),
                         " (GGUF order, contiguous first), got ", dims_string(t->dims)));
  }
  return *t;
}

int positive_int(const GgufFile& file, std::string_view key, std::optional<std::uint64_t> fallback) {
  const auto v = file.find_uint(key);
  if (!v && !fallback) throw LlamaError(cat("llama: metadata '", key, "': expected the key, it is absent"));
  const std::uint64_t value = v ? *v : *fallback;
  // 2^24 bounds every size so that products of two of them fit comfortably in 64 bits.
  if (value < 1 || value > (1u << 24)) {
    throw LlamaError(cat("llama: metadata '", key, "': expected 1..2^24, got ", value));
  }
  return static_cast<int>(value);
}

}  // namespace

std::unique_ptr<LinearLayer> make_fp32_linear(std::string_view, const float* w, int d_out, int d_in) {
  return std::make_unique<Fp32Linear>(w, d_out, d_in);
}

std::string linear_tensor_name(int layer, LinearKind kind) {
  return cat("blk.", layer, ".", kLinearSuffix[static_cast<int>(kind)], ".weight");
}

LlamaConfig LlamaConfig::from_gguf(const GgufFile& file) {
  const auto arch = file.find_string("general.architecture");
  if (!arch || *arch != "llama") {
    throw LlamaError(cat("llama: general.architecture: expected \"llama\", got ",
                         arch ? cat("\"", *arch, "\"") : std::string("nothing")));
  }
  LlamaConfig c;
  c.dim = positive_int(file, "llama.embedding_length", std::nullopt);
  c.n_layers = positive_int(file, "llama.block_count", std::nullopt);
  c.n_heads = positive_int(file, "llama.attention.head_count", std::nullopt);
  c.n_kv_heads = positive_int(file, "llama.attention.head_count_kv", static_cast<std::uint64_t>(c.n_heads));
  c.ffn_dim = positive_int(file, "llama.feed_forward_length", std::nullopt);
  c.context_length = positive_int(file, "llama.context_length", 2048);
  if (c.dim % c.n_heads != 0) {
    throw LlamaError(cat("llama: embedding_length ", c.dim, ": expected a multiple of head_count ", c.n_heads));
  }
  if (c.n_heads % c.n_kv_heads != 0) {
    throw LlamaError(cat("llama: head_count ", c.n_heads, ": expected a multiple of head_count_kv ", c.n_kv_heads));
  }
  c.head_dim = c.dim / c.n_heads;
  if (c.head_dim % 2 != 0) throw LlamaError(cat("llama: head dim ", c.head_dim, ": expected an even number (RoPE pairs)"));
  if (const auto key_length = file.find_uint("llama.attention.key_length"); key_length && *key_length != static_cast<std::uint64_t>(c.head_dim)) {
    throw LlamaError(cat("llama: attention.key_length: expected embedding_length / head_count = ", c.head_dim, ", got ", *key_length));
  }
  if (const auto rot = file.find_uint("llama.rope.dimension_count"); rot && *rot != static_cast<std::uint64_t>(c.head_dim)) {
    throw LlamaError(cat("llama: rope.dimension_count: expected the head dim ", c.head_dim,
                         " (partial rotary is not supported), got ", *rot));
  }
  if (const auto scaling = file.find_string("llama.rope.scaling.type"); scaling && *scaling != "none") {
    throw LlamaError(cat("llama: rope.scaling.type: expected none, got \"", *scaling, "\" (not supported)"));
  }
  const double eps = file.find_float("llama.attention.layer_norm_rms_epsilon").value_or(1e-5);
  if (!(eps > 0.0 && eps < 1.0)) {
    throw LlamaError(cat("llama: attention.layer_norm_rms_epsilon: expected a value in (0, 1), got ", eps));
  }
  c.rms_eps = static_cast<float>(eps);
  const double base = file.find_float("llama.rope.freq_base").value_or(10000.0);
  if (!(base > 1.0 && std::isfinite(base))) {
    throw LlamaError(cat("llama: rope.freq_base: expected a finite value > 1, got ", base));
  }
  c.rope_base = static_cast<float>(base);
  const GgufTensor& embd = file.tensor("token_embd.weight");
  if (embd.dims.size() != 2 || embd.dims[0] != static_cast<std::uint64_t>(c.dim) || embd.dims[1] < 1 ||
      embd.dims[1] > (1u << 24)) {
    throw LlamaError(cat("llama: tensor 'token_embd.weight': expected dims [", c.dim,
                         ", vocab] with 1 <= vocab <= 2^24, got ", dims_string(embd.dims)));
  }
  c.vocab_size = static_cast<int>(embd.dims[1]);
  return c;
}

struct LlamaModel::Impl {
  struct Block {
    Eigen::VectorXf attn_norm;  // [dim]
    Eigen::VectorXf ffn_norm;   // [dim]
    std::array<std::unique_ptr<LinearLayer>, kLinearKinds> linear;
    std::vector<float> k_cache;  // [positions, n_kv_heads * head_dim], row-major
    std::vector<float> v_cache;  // same
  };

  LlamaConfig config;
  MatrixRM token_embd;  // [vocab, dim]
  MatrixRM output;      // [vocab, dim]; empty when tied to token_embd
  Eigen::VectorXf output_norm;
  std::vector<Block> blocks;
  MatrixRM rope_cos;  // [context_length, head_dim / 2]
  MatrixRM rope_sin;
  int position = 0;

  // Scratch, [tokens, features] row-major, reused across calls.
  MatrixRM x, xb, q, k, v, attn, proj, gate, up;
  ParallelFor parallel;

  void parallel_for(int count, const std::function<void(int, int)>& body) const {
    if (parallel && count > 1) parallel(count, body);
    else body(0, count);
  }

  void run_linear(LinearLayer& layer, const MatrixRM& in, MatrixRM& out, int d_out, CalibrationMode mode) {
    const int tokens = static_cast<int>(in.rows());
    out.resize(tokens, d_out);
    if (mode == CalibrationMode::calibrate_then_forward) layer.calibrate(in.data(), tokens);
    layer.forward(in.data(), tokens, out.data());
  }

  void rms_norm(const MatrixRM& in, const Eigen::VectorXf& weight, MatrixRM& out) const {
    out.resize(in.rows(), in.cols());
    for (Eigen::Index t = 0; t < in.rows(); ++t) {
      const double mean_square = static_cast<double>(in.row(t).squaredNorm()) / static_cast<double>(in.cols());
      const float inv = static_cast<float>(1.0 / std::sqrt(mean_square + config.rms_eps));
      out.row(t) = (in.row(t) * inv).cwiseProduct(weight.transpose());
    }
  }

  // Rotates the pairs (2i, 2i+1) of every head by position * base^(-2i / head_dim): the
  // llama2.c convention, which GGUF files keep (converters permute q/k weights to match).
  void rope(MatrixRM& m, int heads, int start) const {
    const int half = config.head_dim / 2;
    for (Eigen::Index t = 0; t < m.rows(); ++t) {
      const float* c = rope_cos.row(start + t).data();
      const float* s = rope_sin.row(start + t).data();
      float* row = m.row(t).data();
      for (int h = 0; h < heads; ++h) {
        float* p = row + h * config.head_dim;
        for (int i = 0; i < half; ++i) {
          const float a = p[2 * i];
          const float b = p[2 * i + 1];
          p[2 * i] = a * c[i] - b * s[i];
          p[2 * i + 1] = a * s[i] + b * c[i];
        }
      }
    }
  }

  // Block b's self-attention on its normalised input `in` [n, dim] at positions start..start+n-1
  // (attending to the cache before them, which it extends): q, k, v, RoPE, causal attention, o.
  // Writes out [n, dim], the sub-layer's output before the residual.
  void attention(Block& b, const MatrixRM& in, int start, CalibrationMode mode, MatrixRM& out) {
    auto& L = b.linear;
    const int n = static_cast<int>(in.rows());
    const int end = start + n;
    const int dim = config.dim;
    const int q_dim = config.n_heads * config.head_dim;
    const int kv_dim = config.n_kv_heads * config.head_dim;
    const int group = config.n_heads / config.n_kv_heads;
    const float scale = 1.0f / std::sqrt(static_cast<float>(config.head_dim));
    run_linear(*L[0], in, q, q_dim, mode);
    run_linear(*L[1], in, k, kv_dim, mode);
    run_linear(*L[2], in, v, kv_dim, mode);
    rope(q, config.n_heads, start);
    rope(k, config.n_kv_heads, start);
    const std::size_t needed = static_cast<std::size_t>(end) * kv_dim;
    if (b.k_cache.size() < needed) {
      // Grow geometrically so a decode loop does not reallocate every step.
      const std::size_t grown = std::min<std::size_t>(std::max(needed, 2 * b.k_cache.size()),
                                                      static_cast<std::size_t>(config.context_length) * kv_dim);
      b.k_cache.resize(grown);
      b.v_cache.resize(grown);
    }
    std::copy_n(k.data(), static_cast<std::size_t>(n) * kv_dim, b.k_cache.data() + static_cast<std::size_t>(start) * kv_dim);
    std::copy_n(v.data(), static_cast<std::size_t>(n) * kv_dim, b.v_cache.data() + static_cast<std::size_t>(start) * kv_dim);

    // Causal attention, one query head at a time (heads in parallel); query t (position
    // start + t) sees cache rows 0..start + t.
    attn.resize(n, q_dim);
    parallel_for(config.n_heads, [&](int h_begin, int h_end) {
      MatrixRM scores(n, end);
      for (int h = h_begin; h < h_end; ++h) {
        const int kv_head = h / group;
        const ConstStridedMap qh(q.data() + h * config.head_dim, n, config.head_dim, Eigen::OuterStride<>(q_dim));
        const ConstStridedMap kh(b.k_cache.data() + kv_head * config.head_dim, end, config.head_dim, Eigen::OuterStride<>(kv_dim));
        const ConstStridedMap vh(b.v_cache.data() + kv_head * config.head_dim, end, config.head_dim, Eigen::OuterStride<>(kv_dim));
        scores.noalias() = (qh * kh.transpose()) * scale;
        for (int t = 0; t < n; ++t) {
          const int visible = start + t + 1;
          float* row = scores.row(t).data();
          float max = row[0];
          for (int s = 1; s < visible; ++s) max = std::max(max, row[s]);
          float sum = 0.0f;
          for (int s = 0; s < visible; ++s) {
            row[s] = std::exp(row[s] - max);
            sum += row[s];
          }
          const float inv = 1.0f / sum;
          for (int s = 0; s < visible; ++s) row[s] *= inv;
          for (int s = visible; s < end; ++s) row[s] = 0.0f;
        }
        StridedMap head_out(attn.data() + h * config.head_dim, n, config.head_dim, Eigen::OuterStride<>(q_dim));
        head_out.noalias() = scores * vh;
      }
    });
    run_linear(*L[3], attn, out, dim, mode);
  }

  // Block b's SwiGLU FFN on its normalised input `in` [n, dim]: down(silu(gate in) * up in) into
  // out [n, dim], the sub-layer's output before the residual.
  void mlp(Block& b, const MatrixRM& in, CalibrationMode mode, MatrixRM& out) {
    auto& L = b.linear;
    run_linear(*L[4], in, gate, config.ffn_dim, mode);
    run_linear(*L[5], in, up, config.ffn_dim, mode);
    // SwiGLU: silu(gate) * up, into `gate`.
    gate = (gate.array() / (1.0f + (-gate.array()).exp()) * up.array()).matrix();
    run_linear(*L[6], gate, out, config.dim, mode);
  }

  Logits extend(std::span<const int> tokens, CalibrationMode mode) {
    const int n = static_cast<int>(tokens.size());
    if (n < 1) throw LlamaError("llama: tokens: expected at least one token, got none");
    if (tokens.size() > static_cast<std::size_t>(config.context_length - position)) {
      throw LlamaError(cat("llama: sequence length: expected at most context_length ", config.context_length,
                           " positions, got ", position, " cached + ", tokens.size(), " new"));
    }
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      if (tokens[i] < 0 || tokens[i] >= config.vocab_size) {
        throw LlamaError(cat("llama: token ", i, ": expected an id in 0..", config.vocab_size - 1, ", got ", tokens[i]));
      }
    }
    if (position == 0) {
      for (auto& b : blocks)
        for (auto& l : b.linear) l->begin_prompt();
    }
    const int start = position;
    const int end = start + n;

    x.resize(n, config.dim);
    for (int t = 0; t < n; ++t) x.row(t) = token_embd.row(tokens[t]);

    for (auto& b : blocks) {
      rms_norm(x, b.attn_norm, xb);
      attention(b, xb, start, mode, proj);
      x += proj;
      rms_norm(x, b.ffn_norm, xb);
      mlp(b, xb, mode, proj);
      x += proj;
    }
    position = end;

    rms_norm(x, output_norm, xb);
    Logits result;
    result.tokens = n;
    result.vocab = config.vocab_size;
    result.values.resize(static_cast<std::size_t>(n) * config.vocab_size);
    // The output head, the largest matrix of a small model: vocabulary rows in parallel blocks.
    const MatrixRM& head = output.size() ? output : token_embd;
    constexpr int kVocabBlock = 1024;
    const int vocab_blocks = (config.vocab_size + kVocabBlock - 1) / kVocabBlock;
    parallel_for(vocab_blocks, [&](int b_begin, int b_end) {
      const int v0 = b_begin * kVocabBlock, v1 = std::min(config.vocab_size, b_end * kVocabBlock);
      StridedMap logits(result.values.data() + v0, n, v1 - v0, Eigen::OuterStride<>(config.vocab_size));
      logits.noalias() = xb * head.middleRows(v0, v1 - v0).transpose();
    });
    return result;
  }
};

LlamaModel::LlamaModel(const GgufFile& file, const LinearFactory& factory) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.config = LlamaConfig::from_gguf(file);
  const LlamaConfig& c = m.config;
  const auto dim = static_cast<std::uint64_t>(c.dim);
  const auto q_dim = static_cast<std::uint64_t>(c.n_heads * c.head_dim);
  const auto kv_dim = static_cast<std::uint64_t>(c.n_kv_heads * c.head_dim);
  const auto ffn = static_cast<std::uint64_t>(c.ffn_dim);
  const auto vocab = static_cast<std::uint64_t>(c.vocab_size);

  auto vector_of = [](const GgufTensor& t) { return Eigen::Map<const Eigen::VectorXf>(t.data.data(), static_cast<Eigen::Index>(t.data.size())); };
  auto matrix_of = [](const GgufTensor& t) {
    return Eigen::Map<const MatrixRM>(t.data.data(), static_cast<Eigen::Index>(t.dims[1]), static_cast<Eigen::Index>(t.dims[0]));
  };
  m.token_embd = matrix_of(expect_tensor(file, "token_embd.weight", {dim, vocab}));
  if (file.find_tensor("output.weight")) m.output = matrix_of(expect_tensor(file, "output.weight", {dim, vocab}));
  m.output_norm = vector_of(expect_tensor(file, "output_norm.weight", {dim}));

  // GGUF dims {d_in, d_out} of each projection, in LinearKind order.
  const std::array<std::array<std::uint64_t, 2>, kLinearKinds> shapes = {{
      {dim, q_dim}, {dim, kv_dim}, {dim, kv_dim}, {q_dim, dim}, {dim, ffn}, {dim, ffn}, {ffn, dim}}};
  m.blocks.resize(static_cast<std::size_t>(c.n_layers));
  for (int l = 0; l < c.n_layers; ++l) {
    auto& b = m.blocks[static_cast<std::size_t>(l)];
    b.attn_norm = vector_of(expect_tensor(file, cat("blk.", l, ".attn_norm.weight"), {dim}));
    b.ffn_norm = vector_of(expect_tensor(file, cat("blk.", l, ".ffn_norm.weight"), {dim}));
    for (int kind = 0; kind < kLinearKinds; ++kind) {
      const std::string name = linear_tensor_name(l, static_cast<LinearKind>(kind));
      const auto [d_in, d_out] = shapes[static_cast<std::size_t>(kind)];
      const GgufTensor& w = expect_tensor(file, name, {d_in, d_out});
      b.linear[static_cast<std::size_t>(kind)] = factory(name, w.data.data(), static_cast<int>(d_out), static_cast<int>(d_in));
      if (!b.linear[static_cast<std::size_t>(kind)]) {
        throw LlamaError(cat("llama: linear factory for '", name, "': expected a layer, got nullptr"));
      }
    }
  }

  // Angles in double: position * base^(-2i / head_dim) loses digits in float at long contexts.
  const int half = c.head_dim / 2;
  m.rope_cos.resize(c.context_length, half);
  m.rope_sin.resize(c.context_length, half);
  for (int p = 0; p < c.context_length; ++p) {
    for (int i = 0; i < half; ++i) {
      const double angle = p * std::pow(static_cast<double>(c.rope_base), -2.0 * i / c.head_dim);
      m.rope_cos(p, i) = static_cast<float>(std::cos(angle));
      m.rope_sin(p, i) = static_cast<float>(std::sin(angle));
    }
  }
}

LlamaModel::~LlamaModel() = default;
LlamaModel::LlamaModel(LlamaModel&&) noexcept = default;
LlamaModel& LlamaModel::operator=(LlamaModel&&) noexcept = default;

const LlamaConfig& LlamaModel::config() const noexcept { return impl_->config; }
void LlamaModel::set_parallel(ParallelFor parallel) { impl_->parallel = std::move(parallel); }
int LlamaModel::position() const noexcept { return impl_->position; }
void LlamaModel::reset() noexcept { impl_->position = 0; }

Logits LlamaModel::prefill(std::span<const int> tokens, CalibrationMode mode) {
  reset();
  return impl_->extend(tokens, mode);
}

Logits LlamaModel::extend(std::span<const int> tokens, CalibrationMode mode) { return impl_->extend(tokens, mode); }

std::vector<float> LlamaModel::decode_step(int token) {
  return std::move(impl_->extend(std::span<const int>(&token, 1), CalibrationMode::forward_only).values);
}

void LlamaModel::block_sublayer(int layer, Sublayer which, std::span<const float> normed, int tokens, std::span<float> out) {
  Impl& m = *impl_;
  const int dim = m.config.dim;
  if (layer < 0 || layer >= m.config.n_layers)
    throw LlamaError(cat("llama: block_sublayer: expected layer 0..", m.config.n_layers - 1, ", got ", layer));
  if (tokens < 1 || tokens > m.config.context_length)
    throw LlamaError(cat("llama: block_sublayer: expected 1..", m.config.context_length, " tokens, got ", tokens));
  const std::size_t size = static_cast<std::size_t>(tokens) * static_cast<std::size_t>(dim);
  if (normed.size() != size || out.size() != size)
    throw LlamaError(cat("llama: block_sublayer: expected input and output of ", tokens, " x ", dim, " floats, got ", normed.size(),
                         " and ", out.size()));
  reset();  // the block's KV cache is scratch here
  MatrixRM in = Eigen::Map<const MatrixRM>(normed.data(), tokens, dim);
  MatrixRM result;
  auto& block = m.blocks[static_cast<std::size_t>(layer)];
  if (which == Sublayer::attention) m.attention(block, in, 0, CalibrationMode::forward_only, result);
  else m.mlp(block, in, CalibrationMode::forward_only, result);
  std::copy_n(result.data(), size, out.data());
}

LinearLayer& LlamaModel::linear(int layer, LinearKind kind) {
  const auto k = static_cast<int>(kind);
  if (layer < 0 || layer >= impl_->config.n_layers || k < 0 || k >= kLinearKinds) {
    throw LlamaError(cat("llama: linear(", layer, ", ", k, "): expected layer 0..", impl_->config.n_layers - 1,
                         " and kind 0..", kLinearKinds - 1));
  }
  return *impl_->blocks[static_cast<std::size_t>(layer)].linear[static_cast<std::size_t>(k)];
}

}  // namespace ttq::llama
