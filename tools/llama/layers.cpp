// The building blocks' implementation and the fp32 reference projection: with the GGUF reader's
// dequantizers aside, the only translation unit of the runner that includes Eigen (Eigen is slow
// to compile; keeping it here keeps the architecture files and the model quick to build).
#include "llama/layers.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>

namespace ttq::llama {
namespace {

using MatrixRM = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Map = Eigen::Map<MatrixRM>;
using ConstMap = Eigen::Map<const MatrixRM>;
using StridedMap = Eigen::Map<MatrixRM, 0, Eigen::OuterStride<>>;
using ConstStridedMap = Eigen::Map<const MatrixRM, 0, Eigen::OuterStride<>>;

ConstMap view(const Activations& a) { return ConstMap(a.data(), a.rows, a.cols); }
Map view(Activations& a) { return Map(a.data(), a.rows, a.cols); }

void run_parallel(const ParallelFor& parallel, int count, const std::function<void(int, int)>& body) {
  if (parallel && count > 1) parallel(count, body);
  else body(0, count);
}

class Fp32Linear final : public LinearLayer {
 public:
  Fp32Linear(const float* w, int d_out, int d_in) : w_(ConstMap(w, d_out, d_in)) {}

  void forward(const float* x, int tokens, float* y) override {
    const ConstMap in(x, tokens, w_.cols());
    Map out(y, tokens, w_.rows());
    out.noalias() = in * w_.transpose();
  }

 private:
  MatrixRM w_;  // [d_out, d_in]
};

// Vocabulary rows per block of the output head: one block's slice of the head (2.6 MB for a
// 640-wide model) and its logits stay in cache while they are used.
constexpr int kVocabBlock = 1024;
// Tokens per pass of the streamed log-softmax: bounds its scratch to [512, kVocabBlock] per thread.
constexpr int kScoreRows = 512;

}  // namespace

std::unique_ptr<LinearLayer> make_fp32_linear(std::string_view, const float* w, int d_out, int d_in) {
  return std::make_unique<Fp32Linear>(w, d_out, d_in);
}

void add_in_place(Activations& x, const Activations& y) { view(x) += view(y); }

void rms_norm(const Activations& in, std::span<const float> weight, float eps, Activations& out) {
  if (&out != &in) out.resize(in.rows, in.cols);
  const Eigen::Map<const Eigen::RowVectorXf> w(weight.data(), static_cast<Eigen::Index>(weight.size()));
  const ConstMap x = view(in);
  Map y = view(out);
  for (Eigen::Index t = 0; t < x.rows(); ++t) {
    const double mean_square = static_cast<double>(x.row(t).squaredNorm()) / static_cast<double>(x.cols());
    const float inv = static_cast<float>(1.0 / std::sqrt(mean_square + eps));
    y.row(t) = (x.row(t) * inv).cwiseProduct(w);
  }
}

void rms_norm_heads(Activations& x, std::span<const float> weight, float eps) {
  const int head_dim = static_cast<int>(weight.size());
  // Every head of every row is one row of a [rows * heads, head_dim] matrix.
  Activations heads;
  heads.rows = x.rows * (x.cols / head_dim);
  heads.cols = head_dim;
  heads.values = std::move(x.values);
  rms_norm(heads, weight, eps, heads);
  x.values = std::move(heads.values);
}

Rope::Rope(int head_dim, double base, RopeStyle style, int max_positions)
    : head_dim_(head_dim), base_(base), style_(style), max_positions_(max_positions) {}

void Rope::grow(int positions) {
  // Geometric growth, capped at the context length: a decode loop does not recompute every step.
  const int target = std::min(max_positions_, std::max(positions, 2 * positions_));
  const int half = head_dim_ / 2;
  cos_.resize(static_cast<std::size_t>(target) * half);
  sin_.resize(static_cast<std::size_t>(target) * half);
  for (int p = positions_; p < target; ++p) {
    for (int i = 0; i < half; ++i) {
      // Angles in double: position * base^(-2i / head_dim) loses digits in float at long contexts.
      const double angle = p * std::pow(base_, -2.0 * i / head_dim_);
      cos_[static_cast<std::size_t>(p) * half + i] = static_cast<float>(std::cos(angle));
      sin_[static_cast<std::size_t>(p) * half + i] = static_cast<float>(std::sin(angle));
    }
  }
  positions_ = target;
}

void Rope::apply(Activations& x, int heads, int start) {
  if (start + x.rows > positions_) grow(start + x.rows);
  const int half = head_dim_ / 2;
  // The pairs (a, b) rotated by the angle of dimension pair i: (2i, 2i+1) or (i, i + half).
  const int stride = style_ == RopeStyle::adjacent_pairs ? 2 : 1;
  const int partner = style_ == RopeStyle::adjacent_pairs ? 1 : half;
  for (int t = 0; t < x.rows; ++t) {
    const float* c = cos_.data() + static_cast<std::size_t>(start + t) * half;
    const float* s = sin_.data() + static_cast<std::size_t>(start + t) * half;
    float* row = x.row(t);
    for (int h = 0; h < heads; ++h) {
      float* p = row + h * head_dim_;
      for (int i = 0; i < half; ++i) {
        float& a = p[stride * i];
        float& b = p[stride * i + partner];
        const float a0 = a, b0 = b;
        a = a0 * c[i] - b0 * s[i];
        b = a0 * s[i] + b0 * c[i];
      }
    }
  }
}

void causal_attention(const Activations& q, const Activations& k, const Activations& v, KvCache& cache, int start,
                      const AttentionShape& shape, const ParallelFor& parallel, Activations& out) {
  const int n = q.rows;
  const int end = start + n;
  const int head_dim = shape.head_dim;
  const int q_dim = shape.n_heads * head_dim;
  const int kv_dim = shape.n_kv_heads * head_dim;
  const int group = shape.n_heads / shape.n_kv_heads;
  const std::size_t needed = static_cast<std::size_t>(end) * kv_dim;
  if (cache.k.size() < needed) {
    // Grow geometrically so a decode loop does not reallocate every step.
    const std::size_t grown = std::min<std::size_t>(std::max(needed, 2 * cache.k.size()),
                                                    static_cast<std::size_t>(shape.context_length) * kv_dim);
    cache.k.resize(grown);
    cache.v.resize(grown);
  }
  std::copy_n(k.data(), static_cast<std::size_t>(n) * kv_dim, cache.k.data() + static_cast<std::size_t>(start) * kv_dim);
  std::copy_n(v.data(), static_cast<std::size_t>(n) * kv_dim, cache.v.data() + static_cast<std::size_t>(start) * kv_dim);

  // Queries in blocks, each against the keys some query of the block sees: all of them at once
  // without a window; blocks of 128 with one, so that a local layer costs O(n * window).
  const int block = shape.window > 0 ? 128 : std::max(n, 1);
  out.resize(n, q_dim);
  run_parallel(parallel, shape.n_heads, [&](int h_begin, int h_end) {
    MatrixRM scores;
    for (int h = h_begin; h < h_end; ++h) {
      const int kv_head = h / group;
      for (int b0 = 0; b0 < n; b0 += block) {
        const int rows = std::min(block, n - b0);
        // Keys first..last-1: from the window's start of the block's first query to its last query.
        const int first = shape.window > 0 ? std::max(0, start + b0 - shape.window + 1) : 0;
        const int last = start + b0 + rows;
        const ConstStridedMap qh(q.data() + static_cast<std::size_t>(b0) * q_dim + h * head_dim, rows, head_dim,
                                 Eigen::OuterStride<>(q_dim));
        const ConstStridedMap kh(cache.k.data() + static_cast<std::size_t>(first) * kv_dim + kv_head * head_dim, last - first,
                                 head_dim, Eigen::OuterStride<>(kv_dim));
        const ConstStridedMap vh(cache.v.data() + static_cast<std::size_t>(first) * kv_dim + kv_head * head_dim, last - first,
                                 head_dim, Eigen::OuterStride<>(kv_dim));
        scores.noalias() = (qh * kh.transpose()) * shape.scale;
        for (int t = 0; t < rows; ++t) {
          const int position = start + b0 + t;
          // Visible keys lo..hi-1, relative to `first`.
          const int lo = (shape.window > 0 ? std::max(0, position - shape.window + 1) : 0) - first;
          const int hi = position + 1 - first;
          float* row = scores.row(t).data();
          float max = row[lo];
          for (int s = lo + 1; s < hi; ++s) max = std::max(max, row[s]);
          float sum = 0.0f;
          for (int s = lo; s < hi; ++s) {
            row[s] = std::exp(row[s] - max);
            sum += row[s];
          }
          const float inv = 1.0f / sum;
          for (int s = 0; s < lo; ++s) row[s] = 0.0f;
          for (int s = lo; s < hi; ++s) row[s] *= inv;
          for (int s = hi; s < last - first; ++s) row[s] = 0.0f;
        }
        StridedMap head_out(out.data() + static_cast<std::size_t>(b0) * q_dim + h * head_dim, rows, head_dim,
                            Eigen::OuterStride<>(q_dim));
        head_out.noalias() = scores * vh;
      }
    }
  });
}

void gated_activation(Activations& gate, const Activations& up, FfnActivation activation) {
  auto g = view(gate).array();
  const auto u = view(up).array();
  switch (activation) {
    case FfnActivation::silu:
      g = g / (1.0f + (-g).exp()) * u;
      return;
    case FfnActivation::gelu_tanh: {
      // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), the approximation Gemma was trained with.
      constexpr float kSqrt2OverPi = 0.7978845608028654f;
      g = 0.5f * g * (1.0f + (kSqrt2OverPi * g * (1.0f + 0.044715f * g * g)).tanh()) * u;
      return;
    }
  }
}

void head_logits(const Activations& x, const OutputHead& head, const ParallelFor& parallel, std::vector<float>& logits) {
  const int n = x.rows;
  logits.resize(static_cast<std::size_t>(n) * head.vocab);
  const ConstMap table(head.table, head.vocab, head.dim);
  const ConstMap in = view(x);
  // The output head, the largest matrix of a small model: vocabulary rows in parallel blocks.
  const int vocab_blocks = (head.vocab + kVocabBlock - 1) / kVocabBlock;
  run_parallel(parallel, vocab_blocks, [&](int b_begin, int b_end) {
    const int v0 = b_begin * kVocabBlock, v1 = std::min(head.vocab, b_end * kVocabBlock);
    StridedMap out(logits.data() + v0, n, v1 - v0, Eigen::OuterStride<>(head.vocab));
    out.noalias() = in * table.middleRows(v0, v1 - v0).transpose();
  });
}

std::vector<double> head_log_probs(const Activations& x, const OutputHead& head, std::span<const int> targets,
                                   const ParallelFor& parallel) {
  std::vector<double> result(static_cast<std::size_t>(x.rows), 0.0);
  // Only the rows that have a target go through the head.
  std::vector<int> rows;
  for (int t = 0; t < x.rows; ++t)
    if (targets[static_cast<std::size_t>(t)] != kNoTarget) rows.push_back(t);
  const ConstMap table(head.table, head.vocab, head.dim);
  const int vocab_blocks = (head.vocab + kVocabBlock - 1) / kVocabBlock;
  for (std::size_t r0 = 0; r0 < rows.size(); r0 += kScoreRows) {
    const int m = static_cast<int>(std::min<std::size_t>(kScoreRows, rows.size() - r0));
    MatrixRM in(m, head.dim);
    for (int i = 0; i < m; ++i) in.row(i) = view(x).row(rows[r0 + static_cast<std::size_t>(i)]);
    // Per (block, row): the block's max logit and sum of exp(logit - max); the target's logit.
    std::vector<float> block_max(static_cast<std::size_t>(vocab_blocks) * m);
    std::vector<double> block_sum(static_cast<std::size_t>(vocab_blocks) * m);
    std::vector<float> target_logit(static_cast<std::size_t>(m));
    run_parallel(parallel, vocab_blocks, [&](int b_begin, int b_end) {
      MatrixRM logits;
      Eigen::ArrayXf e;
      for (int b = b_begin; b < b_end; ++b) {
        const int v0 = b * kVocabBlock, v1 = std::min(head.vocab, v0 + kVocabBlock);
        logits.noalias() = in * table.middleRows(v0, v1 - v0).transpose();
        for (int i = 0; i < m; ++i) {
          const float mx = logits.row(i).maxCoeff();
          e = (logits.row(i).array() - mx).exp();
          block_max[static_cast<std::size_t>(b) * m + i] = mx;
          block_sum[static_cast<std::size_t>(b) * m + i] = e.cast<double>().sum();
          const int target = targets[static_cast<std::size_t>(rows[r0 + static_cast<std::size_t>(i)])];
          if (target >= v0 && target < v1) target_logit[static_cast<std::size_t>(i)] = logits(i, target - v0);
        }
      }
    });
    for (int i = 0; i < m; ++i) {
      float mx = -std::numeric_limits<float>::infinity();
      for (int b = 0; b < vocab_blocks; ++b) mx = std::max(mx, block_max[static_cast<std::size_t>(b) * m + i]);
      double z = 0.0;
      for (int b = 0; b < vocab_blocks; ++b)
        z += block_sum[static_cast<std::size_t>(b) * m + i] *
             std::exp(static_cast<double>(block_max[static_cast<std::size_t>(b) * m + i]) - mx);
      result[static_cast<std::size_t>(rows[r0 + static_cast<std::size_t>(i)])] =
          static_cast<double>(target_logit[static_cast<std::size_t>(i)]) - mx - std::log(z);
    }
  }
  return result;
}

}  // namespace ttq::llama
