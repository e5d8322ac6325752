// Shared helpers for the ttq tests: seeded random matrices, including LLM-like activations
// with a few outlier channels. Everything is deterministic for a given seed.
#pragma once

#include <ttq/core/types.hpp>

#include <cstdint>
#include <random>
#include <vector>

namespace ttq::test {

inline RowMatrix normal_matrix(Index rows, Index cols, std::uint32_t seed, float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  RowMatrix m(rows, cols);
  for (Index r = 0; r < rows; ++r)
    for (Index c = 0; c < cols; ++c) m(r, c) = dist(rng);
  return m;
}

/// Activations [tokens, d_in] ~ N(0, 1) with `outliers` channels scaled by factors spread over
/// [20, 100] (the LLM pattern AWQ exploits). Outlier channel indices come from `seed` too.
inline RowMatrix outlier_activations(Index tokens, Index d_in, Index outliers, std::uint32_t seed,
                                     std::vector<Index>* outlier_channels = nullptr) {
  RowMatrix x = normal_matrix(tokens, d_in, seed);
  std::mt19937 rng(seed ^ 0x9e3779b9u);
  std::uniform_int_distribution<Index> channel(0, d_in - 1);
  for (Index k = 0; k < outliers; ++k) {
    const Index j = channel(rng);
    const float factor = 20.0f + 80.0f * static_cast<float>(k) / static_cast<float>(std::max<Index>(1, outliers - 1));
    x.col(j) *= factor;
    if (outlier_channels) outlier_channels->push_back(j);
  }
  return x;
}

/// Positive per-channel scales D, log-normal (sigma 0.7) like real activation statistics.
inline std::vector<float> lognormal_scales(Index n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::lognormal_distribution<float> dist(0.0f, 0.7f);
  std::vector<float> d(static_cast<std::size_t>(n));
  for (auto& v : d) v = dist(rng);
  return d;
}

/// Per-channel weights c_j (mean squares of activations with outlier channels): the adaptive
/// exponent's error weights.
inline std::vector<double> channel_weights(Index n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::lognormal_distribution<double> dist(0.0, 1.5);
  std::vector<double> c(static_cast<std::size_t>(n));
  for (auto& v : c) v = dist(rng);
  return c;
}

}  // namespace ttq::test
