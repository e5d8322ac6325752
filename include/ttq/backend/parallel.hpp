// Pluggable parallelism for the CPU kernels: a small type-erased Executor (run N independent
// tasks, return when all are done), the process-wide executor the SIMD backend uses, and a
// default std::thread pool.
//
// Why: one core cannot saturate DRAM on the machines TTQ targets, so a decode step must use
// several cores; but an inference engine already owns a thread pool and must not get a second
// one fighting it. The engine therefore hands ttq its own pool once (`set_executor`), and every
// kernel splits its work into tasks and calls `Executor::run`. Without an engine, ttq starts
// its own pool lazily (std::thread; no OpenMP dependency). See docs/performance.md ("Threads").
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#endif

#include "ttq/core/error.hpp"
#include "ttq/core/types.hpp"

namespace ttq::backend {

/// Non-owning reference to a callable `void(Index task)` (a function_ref): what an executor
/// runs. Valid only while the referenced callable lives, i.e. during one Executor::run.
class TaskRef {
 public:
  template <class F>
    requires(!std::is_same_v<std::remove_cvref_t<F>, TaskRef>)
  TaskRef(F& f) noexcept  // NOLINT(google-explicit-constructor)
      : object_(const_cast<void*>(static_cast<const void*>(&f))),
        call_([](void* object, Index task) { (*static_cast<F*>(object))(task); }) {}

  void operator()(Index task) const { call_(object_, task); }

 private:
  void* object_;
  void (*call_)(void*, Index);
};

/// Runs `tasks` independent tasks numbered 0..tasks-1, each exactly once, in any order and on
/// any threads, and returns when every one has finished. `concurrency()` says how many run at
/// once, so kernels can size their tasks. Copies share the same underlying pool.
///
/// Requirements on a custom `run`: call body(i) exactly once for every i in [0, tasks); return
/// only after all calls returned; be callable from any thread (a pool that is already busy may
/// simply run the tasks inline). Task bodies never throw and never call run() recursively.
class Executor {
 public:
  using RunFunction = std::function<void(Index tasks, TaskRef body)>;

  /// Wraps an engine's pool: `run(tasks, body)` must satisfy the requirements above.
  Executor(int concurrency, RunFunction run) : concurrency_(std::max(1, concurrency)), run_(std::move(run)) {
    if (!run_) throw StateError("run", "an executor needs a run function");
  }

  /// Runs everything inline on the calling thread.
  static Executor serial() {
    return Executor(1, [](Index tasks, TaskRef body) {
      for (Index i = 0; i < tasks; ++i) body(i);
    });
  }

  int concurrency() const { return concurrency_; }
  void run(Index tasks, TaskRef body) const {
    if (tasks <= 0) return;
    if (tasks == 1 || concurrency_ == 1) {
      for (Index i = 0; i < tasks; ++i) body(i);
      return;
    }
    run_(tasks, body);
  }

 private:
  int concurrency_;
  RunFunction run_;
};

namespace detail {

inline void spin_pause() {
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

/// A fixed pool of `threads - 1` workers; the calling thread takes part in every job.
///
/// Shaped for decode steps of ~100 us: a job is published with one atomic store, tasks are
/// claimed with a CAS on a word packing (job generation, task count, next task) so a worker
/// that wakes late can never run a task of a finished job, and idle workers spin briefly
/// before sleeping on a condition variable, so back-to-back calls see no wake-up cost.
/// A second caller while a job runs does its tasks inline instead of waiting.
class ThreadPool {
 public:
  explicit ThreadPool(int threads) : threads_(std::max(1, threads)) {
    for (int i = 1; i < threads_; ++i) workers_.emplace_back([this] { worker_loop(); });
  }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  ~ThreadPool() {
    stop_.store(true, std::memory_order_seq_cst);
    wake_workers();
    for (auto& w : workers_) w.join();
  }

  int concurrency() const { return threads_; }

  void run(Index tasks, TaskRef body) {
    std::unique_lock<std::mutex> lock(submit_, std::try_to_lock);
    if (!lock.owns_lock() || tasks > kMaxTasks) {  // busy (or absurdly many tasks): run inline
      for (Index i = 0; i < tasks; ++i) body(i);
      return;
    }
    body_ = &body;
    completed_.store(0, std::memory_order_relaxed);
    generation_ = (generation_ + 1) & kGenerationMask;
    state_.store(pack(generation_, static_cast<std::uint64_t>(tasks), 0), std::memory_order_release);
    wake_workers();
    work(generation_);
    for (int spins = 0; completed_.load(std::memory_order_acquire) < tasks; ++spins) {
      if (spins < kCallerSpins) spin_pause();
      else std::this_thread::yield();
    }
  }

 private:
  static constexpr int kFieldBits = 24;
  static constexpr std::uint64_t kFieldMask = (std::uint64_t{1} << kFieldBits) - 1;
  static constexpr std::uint64_t kGenerationMask = 0xFFFF;
  static constexpr Index kMaxTasks = static_cast<Index>(kFieldMask);
  static constexpr int kIdleSpins = 1 << 15;  // ~100-300 us of polling before sleeping
  static constexpr int kCallerSpins = 1 << 12;

  static std::uint64_t pack(std::uint64_t generation, std::uint64_t tasks, std::uint64_t next) {
    return (generation << (2 * kFieldBits)) | (tasks << kFieldBits) | next;
  }

  // Claims and runs tasks of job `generation` until none is left or the job is no longer current.
  void work(std::uint64_t generation) {
    std::uint64_t v = state_.load(std::memory_order_acquire);
    for (;;) {
      const std::uint64_t next = v & kFieldMask;
      if ((v >> (2 * kFieldBits)) != generation || next >= ((v >> kFieldBits) & kFieldMask)) return;
      if (!state_.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
      // The job cannot complete (and body_ cannot change) before this claimed task finishes.
      (*body_)(static_cast<Index>(next));
      completed_.fetch_add(1, std::memory_order_acq_rel);
      v = state_.load(std::memory_order_acquire);
    }
  }

  // Publishes a new epoch; takes the mutex only if a worker may be asleep. Both sides use
  // seq_cst on epoch_ and sleepers_, so either the worker sees the new epoch before sleeping or
  // this sees the sleeper and notifies under the mutex the worker holds until it waits.
  void wake_workers() {
    epoch_.fetch_add(1, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      std::lock_guard<std::mutex> lock(sleep_mutex_);
      wake_.notify_all();
    }
  }

  void worker_loop() {
    // Start from the epoch at construction (0), not the current one: a job or a shutdown that
    // happened before this thread ran must still be seen.
    std::uint64_t seen = 0;
    for (;;) {
      int spins = 0;
      std::uint64_t now = epoch_.load(std::memory_order_acquire);
      while (now == seen) {
        if (spins++ < kIdleSpins) {
          spin_pause();
        } else {
          std::unique_lock<std::mutex> lock(sleep_mutex_);
          sleepers_.fetch_add(1, std::memory_order_seq_cst);
          while (epoch_.load(std::memory_order_seq_cst) == seen) wake_.wait(lock);
          sleepers_.fetch_sub(1, std::memory_order_seq_cst);
        }
        now = epoch_.load(std::memory_order_acquire);
      }
      seen = now;
      if (stop_.load(std::memory_order_acquire)) return;
      const std::uint64_t v = state_.load(std::memory_order_acquire);
      work(v >> (2 * kFieldBits));
    }
  }

  int threads_;
  std::vector<std::thread> workers_;
  std::mutex submit_;
  std::uint64_t generation_ = 0;               // written only under submit_
  const TaskRef* body_ = nullptr;              // the current job's body (see work())
  std::atomic<std::uint64_t> state_{0};        // generation:16 | tasks:24 | next:24
  std::atomic<Index> completed_{0};
  std::atomic<std::uint64_t> epoch_{0};        // bumped per job and at shutdown
  std::atomic<int> sleepers_{0};               // workers blocked on wake_
  std::mutex sleep_mutex_;
  std::condition_variable wake_;
  std::atomic<bool> stop_{false};
};

/// The process-wide executor slot (nullptr until first use or set_executor).
struct ExecutorSlot {
  std::mutex mutex;
  std::shared_ptr<const Executor> executor;
};
inline ExecutorSlot& executor_slot() {
  static ExecutorSlot slot;
  return slot;
}

}  // namespace detail

/// An executor backed by a new pool of `threads` threads (the caller counts as one of them).
inline Executor thread_pool_executor(int threads) {
  auto pool = std::make_shared<detail::ThreadPool>(threads);
  return Executor(pool->concurrency(), [pool](Index tasks, TaskRef body) { pool->run(tasks, body); });
}

/// Number of threads the default pool uses: TTQ_NUM_THREADS if set and not empty, else all
/// hardware threads. TTQ_NUM_THREADS must be a whole decimal integer in 1..1024: anything else
/// ("abc", "4x", "0", "4294967297") throws RangeError naming TTQ_NUM_THREADS instead of silently
/// running with some other count.
inline int default_thread_count() {
  if (const char* env = std::getenv("TTQ_NUM_THREADS"); env != nullptr && *env != '\0') {
    bool ok = true;
    long long n = 0;
    for (const char* c = env; *c != '\0'; ++c) {
      if (*c < '0' || *c > '9' || n > 1024) {
        ok = false;
        break;
      }
      n = n * 10 + (*c - '0');
    }
    ttq::detail::require_range(ok && n >= 1 && n <= 1024, "TTQ_NUM_THREADS", "an integer in 1..1024", std::string("'") + env + "'");
    return static_cast<int>(n);
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

namespace detail {

/// TTQ_HUGE_PAGES, read once: 1 (or unset, or empty) asks the OS for transparent huge pages for
/// large packed buffers, 0 does not (simd/detail/layout.hpp); anything else is `invalid`.
enum class HugePages { on, off, invalid };
inline HugePages huge_pages_setting() noexcept {
  static const HugePages setting = [] {
    const char* env = std::getenv("TTQ_HUGE_PAGES");
    if (env == nullptr || *env == '\0') return HugePages::on;
    const std::string_view value(env);
    return value == "1" ? HugePages::on : value == "0" ? HugePages::off : HugePages::invalid;
  }();
  return setting;
}

/// Throws RangeError naming TTQ_HUGE_PAGES for a value other than 0 or 1 ("off", "false", "yes"
/// would otherwise leave huge pages on without a word). Called by current_executor(), which
/// every kernel calls on the caller's thread before it allocates.
inline void require_valid_huge_pages() {
  if (huge_pages_setting() != HugePages::invalid) return;
  const char* env = std::getenv("TTQ_HUGE_PAGES");
  ttq::detail::require_range(false, "TTQ_HUGE_PAGES", "0 or 1 (or unset)", "'" + std::string(env != nullptr ? env : "") + "'");
}

}  // namespace detail

/// The executor kernels use now: the one given to set_executor(), else a default pool of
/// default_thread_count() threads, created on first use. Throws RangeError for a bad
/// TTQ_NUM_THREADS or TTQ_HUGE_PAGES.
inline std::shared_ptr<const Executor> current_executor() {
  detail::require_valid_huge_pages();
  auto& slot = detail::executor_slot();
  std::lock_guard<std::mutex> lock(slot.mutex);
  if (!slot.executor) slot.executor = std::make_shared<const Executor>(thread_pool_executor(default_thread_count()));
  return slot.executor;
}

/// Replaces the process-wide executor (an engine hands over its pool here, once, at start-up).
/// Calls already running keep the executor they started with.
inline void set_executor(Executor executor) {
  auto next = std::make_shared<const Executor>(std::move(executor));
  auto& slot = detail::executor_slot();
  std::lock_guard<std::mutex> lock(slot.mutex);
  slot.executor = std::move(next);
}

/// Installs an executor for the lifetime of this object and restores the previous one after
/// (tests and benchmarks use it to pin the thread count).
class ScopedExecutor {
 public:
  explicit ScopedExecutor(Executor executor) : previous_(current_executor()) { set_executor(std::move(executor)); }
  ScopedExecutor(const ScopedExecutor&) = delete;
  ScopedExecutor& operator=(const ScopedExecutor&) = delete;
  ~ScopedExecutor() {
    auto& slot = detail::executor_slot();
    std::lock_guard<std::mutex> lock(slot.mutex);
    slot.executor = previous_;
  }

 private:
  std::shared_ptr<const Executor> previous_;
};

/// Splits [0, count) into contiguous ranges of at least `grain` items, about `tasks_per_thread`
/// per thread of `executor` (more tasks than threads balance cores that another process
/// slows down), and calls `f(begin, end)` for each range through the executor.
template <class F>
void parallel_for(const Executor& executor, Index count, Index grain, F&& f, Index tasks_per_thread = 4) {
  if (count <= 0) return;
  grain = std::max<Index>(1, grain);
  const Index max_tasks = (count + grain - 1) / grain;
  const Index tasks = std::clamp<Index>(static_cast<Index>(executor.concurrency()) * tasks_per_thread, 1, max_tasks);
  if (tasks == 1) {
    f(Index{0}, count);
    return;
  }
  auto body = [&](Index task) {
    const Index begin = count * task / tasks, end = count * (task + 1) / tasks;
    if (begin < end) f(begin, end);
  };
  executor.run(tasks, TaskRef(body));
}

}  // namespace ttq::backend
