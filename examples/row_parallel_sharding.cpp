// Row-parallel sharding (tensor parallelism over input channels): each shard owns a block of
// W's columns cut at a group boundary, sees its block of the activations, and quantizes alone.
// TTQ's scales are normalised by the mean of s^2 over *all* channels, so the shards agree on it
// with one all-reduce (a sum and a count); their codes are then exactly the unsharded ones and
// their partial outputs sum to the unsharded output.
#include <ttq/ttq.hpp>

#include <cstdio>
#include <vector>

int main() {
  constexpr ttq::Index d_out = 64, d_in = 256, group = 64;
  using Q = ttq::Quantizer<3, group>;
  using Op = ttq::OnlineAWQ<Q, ttq::DiagCorrelation<2>>;
  const ttq::DiagCorrelationOptions options{.alpha = 0.5};
  const ttq::RowMatrix W = ttq::RowMatrix::Random(d_out, d_in) * 0.05f;
  ttq::RowMatrix X = ttq::RowMatrix::Random(16, d_in);
  X.col(5) *= 30.0f;
  X.col(190) *= 50.0f;

  Op whole(W, {}, Q(), ttq::DiagCorrelation<2>(options));
  whole.calibrate(X);

  // Two shards: channels [0, 128) and [128, 256), both group boundaries.
  const ttq::Index cut = 128;
  std::vector<Op> shards;
  for (ttq::Index first : {ttq::Index{0}, cut}) {
    shards.emplace_back(ttq::LayerWeights::borrow(ttq::ConstMatrixView(W).col_block(first, cut)), Q(),
                        ttq::DiagCorrelation<2>(options));
    shards.back().observe(ttq::ConstMatrixView(X).col_block(first, cut));
  }
  double sum_s2 = 0.0;  // the all-reduce
  for (const Op& s : shards) sum_s2 += s.correlation().sum_squared_norms();
  ttq::RowMatrix y = ttq::RowMatrix::Zero(X.rows(), d_out);
  bool same_codes = true;
  for (std::size_t k = 0; k < shards.size(); ++k) {
    shards[k].correlation().set_global_mean_square(sum_s2 / static_cast<double>(d_in));
    shards[k].requantize();
    const ttq::Index first = static_cast<ttq::Index>(k) * cut;
    for (ttq::Index r = 0; r < d_out; ++r)
      for (ttq::Index c = 0; c < cut; ++c) same_codes = same_codes && shards[k].quantized().code(r, c) == whole.quantized().code(r, first + c);
    y += shards[k].forward(ttq::ConstMatrixView(X).col_block(first, cut));  // partial sums
  }
  const ttq::RowMatrix y_whole = whole.forward(X);
  const float gap = (y - y_whole).cwiseAbs().maxCoeff() / y_whole.cwiseAbs().maxCoeff();
  std::printf("shards give the unsharded codes: %s; summed outputs within %.2e of the unsharded\n", same_codes ? "yes" : "no", gap);
  return (same_codes && gap < 1e-5f) ? 0 : 1;
}
