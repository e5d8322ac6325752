// A downstream program: quantizes a small layer through the installed or embedded ttq and
// checks the result is sane. Exit code 0 means the package works end to end.
#include <ttq/ttq.hpp>

#include <cstdio>

int main() {
  ttq::RowMatrix w = ttq::RowMatrix::Random(16, 64);
  ttq::RowMatrix x = ttq::RowMatrix::Random(4, 64);
  ttq::OnlineAWQ<ttq::Quantizer<4, 32>> op(w, {});
  const ttq::RowMatrix y = op.prefill(x);
  const double e = ttq::relative_error(x, w, op.effective_weight());
  std::printf("consumer: y %ldx%ld, relative error %.4g\n", static_cast<long>(y.rows()), static_cast<long>(y.cols()), e);
  return (y.rows() == 4 && y.cols() == 16 && e > 0.0 && e < 0.05) ? 0 : 1;
}
