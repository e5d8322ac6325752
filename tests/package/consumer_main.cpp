// A downstream program: quantizes a small layer through the installed or embedded ttq and
// checks the result is sane. Exit code 0 means the package works end to end. With
// TTQ_CONSUMER_DISPATCH (the installed package), it also runs ttq::dispatch's operator and checks
// that it chose the same codes as the default backend.
#include <ttq/ttq.hpp>
#if defined(TTQ_CONSUMER_DISPATCH)
#include <ttq/backend/dispatch.hpp>
#endif

#include <cstdio>

int main() {
  ttq::RowMatrix w = ttq::RowMatrix::Random(16, 64);
  ttq::RowMatrix x = ttq::RowMatrix::Random(4, 64);
  ttq::OnlineAWQ<ttq::Quantizer<4, 32>> op(w, {});
  const ttq::RowMatrix y = op.prefill(x);
  const double e = ttq::relative_error(x, w, op.effective_weight());
  std::printf("consumer: backend %s, y %ldx%ld, relative error %.4g\n", decltype(op)::backend_type::name,
              static_cast<long>(y.rows()), static_cast<long>(y.cols()), e);
  bool ok = y.rows() == 4 && y.cols() == 16 && e > 0.0 && e < 0.05;
#if defined(TTQ_CONSUMER_DISPATCH)
  ttq::OnlineAWQ<ttq::Quantizer<4, 32>, ttq::DiagCorrelation<>, ttq::NoResidual, ttq::backend::Dispatched> dispatched(w, {});
  dispatched.calibrate(x);
  const bool same = dispatched.quantized().codes == op.quantized().codes;
  std::printf("consumer: ttq::dispatch runs %s, same codes: %s\n", ttq::backend::isa_name(ttq::backend::active_isa()),
              same ? "yes" : "no");
  ok = ok && same;
#endif
  return ok ? 0 : 1;
}
