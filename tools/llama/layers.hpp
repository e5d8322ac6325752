// The building blocks every architecture of the runner is wired from (llama/arch/*.cpp): RMSNorm
// (of whole rows or of each head), RoPE in both pairings with lazily grown tables, causal
// self-attention over a KV cache with grouped-query heads and an optional sliding window, the
// gated FFN's activations, and the output head's streamed log-softmax. The interface is free of
// Eigen: activations are plain row-major buffers, so only layers.cpp pays Eigen's compile time.
#pragma once

#include <cstddef>
#include <new>
#include <span>
#include <vector>

#include "llama/model.hpp"

namespace ttq::llama {

// Memory aligned to 64 bytes (a cache line, an AVX-512 register). Not only for speed: Eigen sums
// the dot products of small matrices (the attention of a short sequence) in an order that depends
// on where the data starts, so buffers whose alignment varies from run to run would give two
// models built from one file different last bits.
template <class T>
struct AlignedAllocator {
  using value_type = T;
  static constexpr std::align_val_t kAlignment{64};
  AlignedAllocator() = default;
  template <class U>
  AlignedAllocator(const AlignedAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlignment)); }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, kAlignment); }
  template <class U>
  bool operator==(const AlignedAllocator<U>&) const noexcept { return true; }
};
using AlignedFloats = std::vector<float, AlignedAllocator<float>>;

// Activations [rows, cols], row-major: a whole prefill (rows = tokens) goes through each
// projection as one matrix product, and decode is the same code with rows = 1.
struct Activations {
  int rows = 0;
  int cols = 0;
  AlignedFloats values;

  void resize(int r, int c) {
    rows = r;
    cols = c;
    values.resize(static_cast<std::size_t>(r) * static_cast<std::size_t>(c));
  }
  float* data() noexcept { return values.data(); }
  const float* data() const noexcept { return values.data(); }
  float* row(int t) noexcept { return values.data() + static_cast<std::size_t>(t) * static_cast<std::size_t>(cols); }
  const float* row(int t) const noexcept { return values.data() + static_cast<std::size_t>(t) * static_cast<std::size_t>(cols); }
};

// x += y (same shape).
void add_in_place(Activations& x, const Activations& y);

// out[t] = in[t] / sqrt(mean(in[t]^2) + eps) * weight, every row (the mean square in double).
// `out` may be `in`. weight.size() == in.cols.
void rms_norm(const Activations& in, std::span<const float> weight, float eps, Activations& out);

// The same on every head of every row in place: x is [rows, heads * weight.size()] (QK-norm).
void rms_norm_heads(Activations& x, std::span<const float> weight, float eps);

// Rotary position embedding of one base and pairing. The cos/sin tables cover the positions
// used so far and grow on demand up to `max_positions` (never sized from a file's claimed
// context length up front). Not thread-safe: the model applies it from one thread.
class Rope {
 public:
  Rope(int head_dim, double base, RopeStyle style, int max_positions);
  // Rotates every head of x [rows, heads * head_dim], row t at position start + t.
  void apply(Activations& x, int heads, int start);
  int table_positions() const noexcept { return positions_; }

 private:
  void grow(int positions);
  int head_dim_;
  double base_;
  RopeStyle style_;
  int max_positions_;
  int positions_ = 0;
  std::vector<float> cos_;  // [positions, head_dim / 2]
  std::vector<float> sin_;
};

// One block's cached keys and values: [positions, kv_heads * head_dim] each, row-major.
struct KvCache {
  AlignedFloats k;
  AlignedFloats v;
};

struct AttentionShape {
  int n_heads;
  int n_kv_heads;
  int head_dim;
  float scale;          // multiplies q.k
  int window;           // keys a query sees, itself included; 0: every earlier position
  int context_length;   // the cache's limit
};

// Causal attention of the queries q [n, n_heads * head_dim] at positions start..start+n-1: the
// new keys and values k, v [n, n_kv_heads * head_dim] are appended to `cache`, and query t sees
// the cached rows max(0, p - window + 1)..p of its position p (query head h reads kv head
// h / (n_heads / n_kv_heads)). Writes out [n, n_heads * head_dim]. Heads run through `parallel`.
void causal_attention(const Activations& q, const Activations& k, const Activations& v, KvCache& cache, int start,
                      const AttentionShape& shape, const ParallelFor& parallel, Activations& out);

// gate = act(gate) * up, elementwise (the gated FFN's middle).
void gated_activation(Activations& gate, const Activations& up, FfnActivation activation);

// The output head over a vocabulary table [vocab, dim] (row-major fp32).
struct OutputHead {
  const float* table;
  int vocab;
  int dim;
};
// logits [rows of x, vocab] = x head^T.
void head_logits(const Activations& x, const OutputHead& head, const ParallelFor& parallel, std::vector<float>& logits);
// log softmax(x[t] head^T)[targets[t]] in double for targets[t] != kNoTarget (else 0), streamed
// over blocks of vocabulary rows: each block's logits live only while its partial max and sum are
// taken. Deterministic: partials are merged in block order whatever the thread timing.
std::vector<double> head_log_probs(const Activations& x, const OutputHead& head, std::span<const int> targets,
                                   const ParallelFor& parallel);

}  // namespace ttq::llama
