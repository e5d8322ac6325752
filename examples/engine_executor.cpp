// Lending the engine's thread pool: an inference engine already owns worker threads, and ttq's
// kernels must run on them instead of starting a second pool that would fight it for cores.
// The engine wraps its pool in a ttq::backend::Executor once, at start-up; every kernel then
// splits its work into tasks and hands them to that executor.
#include <ttq/ttq.hpp>

#include <atomic>
#include <cstdio>
#include <thread>
#include <vector>

namespace {

// A stand-in for the engine's pool: runs a batch of tasks on `threads` std::threads and joins.
// (A real engine keeps its threads alive; ttq only needs "run these n tasks, return when done".)
class EnginePool {
 public:
  explicit EnginePool(int threads) : threads_(threads) {}
  int threads() const { return threads_; }

  template <class Body>
  void run_batch(ttq::Index tasks, Body&& body) {
    std::atomic<ttq::Index> next{0};
    auto worker = [&] {
      for (ttq::Index i = next++; i < tasks; i = next++) body(i);
    };
    std::vector<std::thread> helpers;
    for (int t = 1; t < threads_; ++t) helpers.emplace_back(worker);
    worker();  // the calling thread works too
    for (auto& h : helpers) h.join();
    batches_.fetch_add(1);
  }
  long batches() const { return batches_.load(); }

 private:
  int threads_;
  std::atomic<long> batches_{0};
};

}  // namespace

int main() {
  EnginePool pool(2);
  // Hand ttq the engine's pool: concurrency, and how to run `tasks` tasks.
  ttq::backend::set_executor(ttq::backend::Executor(
      pool.threads(), [&pool](ttq::Index tasks, ttq::backend::TaskRef body) { pool.run_batch(tasks, body); }));

  const ttq::RowMatrix W = ttq::RowMatrix::Random(512, 1024) * 0.05f;
  const ttq::RowMatrix X = ttq::RowMatrix::Random(32, 1024);
  ttq::OnlineAWQ<ttq::Quantizer<4, 128>> layer(W, {});
  const ttq::RowMatrix Y = layer.prefill(X);                   // statistics, quantize, GEMM
  const ttq::RowMatrix y = layer.decode(ttq::ConstMatrixView(X).row_block(0, 1));  // a decode step

  std::printf("the engine's pool ran %ld batches of ttq tasks\n", pool.batches());
  // The example's promise: ttq's kernels ran on the lent pool, and gave the same decode output
  // as the prefill's first row (same quantization; tolerance of the two kernels).
  const float gap = (Y.topRows(1) - y).cwiseAbs().maxCoeff();
  const float scale = Y.topRows(1).cwiseAbs().maxCoeff();
  const bool ok = pool.batches() > 0 && gap <= 1e-4f * scale;
  return ok ? 0 : 1;
}
