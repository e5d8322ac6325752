// Quick start: one linear layer quantized for the prompt at hand (the README's first example,
// made runnable). The prompt's activations decide the per-channel scales D, the weights are
// quantized to 4 bits with them, and decode steps reuse that quantization.
#include <ttq/ttq.hpp>

#include <cstdio>
#include <random>

namespace {

// A random layer and LLM-like activations: a few input channels far larger than the rest.
ttq::RowMatrix normal(ttq::Index rows, ttq::Index cols, float stddev, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  ttq::RowMatrix m(rows, cols);
  for (ttq::Index i = 0; i < m.size(); ++i) m.data()[i] = dist(rng);
  return m;
}

ttq::RowMatrix activations(ttq::Index tokens, ttq::Index d_in, unsigned seed) {
  ttq::RowMatrix x = normal(tokens, d_in, 1.0f, seed);
  for (ttq::Index c : {3, 77, 200, 401}) x.col(c) *= 40.0f;
  return x;
}

}  // namespace

int main() {
  const ttq::RowMatrix W = normal(256, 512, 0.05f, 1);  // [d_out, d_in], an nn.Linear weight
  const ttq::RowMatrix X = activations(64, 512, 2);     // the prompt, [T, d_in]
  const ttq::RowMatrix x_next = activations(1, 512, 3); // one decode step

  using Q = ttq::Quantizer<4, 128>;        // 4 bits, groups of 128, AWQ-compatible format
  ttq::OnlineAWQ<Q> layer(W, /*bias=*/{});  // TTQ on the default (SIMD) backend
  const ttq::RowMatrix Y = layer.prefill(X);      // calibrate on the prompt, then forward it
  const ttq::RowMatrix y = layer.decode(x_next);  // decode steps reuse the quantization
  layer.begin_prompt();                           // the next prompt starts fresh statistics

  ttq::RtnOperator<Q> rtn(W, {});  // the baseline: same quantizer, D = 1
  const double e_ttq = ttq::relative_error(X, W, layer.effective_weight());
  const double e_rtn = ttq::relative_error(X, W, rtn.effective_weight());
  std::printf("backend %s: Y %ldx%ld, y %ldx%ld\n", decltype(layer)::backend_type::name, static_cast<long>(Y.rows()),
              static_cast<long>(Y.cols()), static_cast<long>(y.rows()), static_cast<long>(y.cols()));
  std::printf("relative output error on the prompt: TTQ %.3e, RTN %.3e\n", e_ttq, e_rtn);
  // What this example promises: the shapes, and TTQ below RTN on activations with outliers.
  const bool ok = Y.rows() == 64 && Y.cols() == 256 && y.rows() == 1 && e_ttq < e_rtn;
  return ok ? 0 : 1;
}
