// CPU detection and the process-wide active ISA of ttq::dispatch. Baseline flags: this file
// runs before anything is known about the CPU.
#include <ttq/backend/dispatch.hpp>
#include <ttq/core/error.hpp>

#include <atomic>
#include <cstdlib>
#include <string>

#if defined(__aarch64__) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

#include "kernel_table.hpp"

namespace ttq::backend {
namespace {

// TTQ_DISPATCH_AVX2 / _AVX512 / _NEON / _NEON_DOTPROD are defined by src/CMakeLists.txt for
// the ISAs it builds.
constexpr Isa kCompiled[] = {
    Isa::scalar,
#if defined(TTQ_DISPATCH_NEON)
    Isa::neon,
#endif
#if defined(TTQ_DISPATCH_NEON_DOTPROD)
    Isa::neon_dotprod,
#endif
#if defined(TTQ_DISPATCH_AVX2)
    Isa::avx2,
#endif
#if defined(TTQ_DISPATCH_AVX512)
    Isa::avx512,
#endif
};

bool compiled_in(Isa isa) {
  for (Isa c : kCompiled)
    if (c == isa) return true;
  return false;
}

// An error's message without its "ttq: argument '...': " prefix, to name another argument.
std::string without_argument(const Error& e) {
  const std::string message = e.what();
  const std::string prefix = "ttq: argument '" + e.argument() + "': ";
  return message.rfind(prefix, 0) == 0 ? message.substr(prefix.size()) : message;
}

// The ISA set_active_isa() chose, or -1 until TTQ_ISA / best_isa() decide at first use.
std::atomic<int> g_active{-1};

}  // namespace

const char* isa_name(Isa isa) noexcept {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    case Isa::neon: return "neon";
    case Isa::neon_dotprod: return "neon-dotprod";
  }
  return "?";
}

Isa parse_isa(std::string_view name) {
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512, Isa::neon, Isa::neon_dotprod})
    if (name == isa_name(isa)) return isa;
  throw RangeError("isa", "expected scalar, avx2, avx512, neon or neon-dotprod, got '" + std::string(name) + "'");
}

std::span<const Isa> compiled_isas() noexcept { return kCompiled; }

bool cpu_supports(Isa isa) noexcept {
  switch (isa) {
    case Isa::scalar: return true;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    // __builtin_cpu_supports checks cpuid and, for AVX and AVX-512, that the OS saves the
    // registers (xgetbv), as the kernels need.
    case Isa::avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512vnni") &&
             __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
#if defined(__aarch64__)
    case Isa::neon: return true;  // Advanced SIMD is mandatory in AArch64
#if defined(__linux__) && defined(HWCAP_ASIMDDP)
    case Isa::neon_dotprod: return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;  // as the kernel reports it
#endif
#endif
    default: return false;
  }
}

Isa best_isa() noexcept {
  Isa best = Isa::scalar;
  for (Isa isa : kCompiled)  // ordered worst to best
    if (cpu_supports(isa)) best = isa;
  return best;
}

const IsaKernels& isa_kernels(Isa isa) {
  if (!compiled_in(isa))
    throw StateError("isa", std::string("'") + isa_name(isa) + "' is not compiled into this build of ttq::dispatch");
  if (!cpu_supports(isa)) throw StateError("isa", std::string("this CPU cannot run '") + isa_name(isa) + "'");
  switch (isa) {
#if defined(TTQ_DISPATCH_AVX2)
    case Isa::avx2: return detail::avx2_kernels();
#endif
#if defined(TTQ_DISPATCH_AVX512)
    case Isa::avx512: return detail::avx512_kernels();
#endif
#if defined(TTQ_DISPATCH_NEON)
    case Isa::neon: return detail::neon_kernels();
#endif
#if defined(TTQ_DISPATCH_NEON_DOTPROD)
    case Isa::neon_dotprod: return detail::neon_dotprod_kernels();
#endif
    default: return detail::scalar_kernels();
  }
}

Isa active_isa() {
  int current = g_active.load(std::memory_order_acquire);
  if (current < 0) {
    Isa chosen = best_isa();
    if (const char* env = std::getenv("TTQ_ISA"); env != nullptr && *env != '\0') {
      // A TTQ_ISA this build or CPU cannot run is an error, not a silent fallback; its message
      // names the variable, which the user set, not the argument 'isa' of parse_isa.
      try {
        chosen = parse_isa(env);
        (void)isa_kernels(chosen);
      } catch (const RangeError& e) {
        throw RangeError("TTQ_ISA", without_argument(e));
      } catch (const StateError& e) {
        throw StateError("TTQ_ISA", without_argument(e));
      }
    }
    int expected = -1;
    g_active.compare_exchange_strong(expected, static_cast<int>(chosen), std::memory_order_acq_rel);
    current = g_active.load(std::memory_order_acquire);
  }
  return static_cast<Isa>(current);
}

void set_active_isa(Isa isa) {
  (void)isa_kernels(isa);
  g_active.store(static_cast<int>(isa), std::memory_order_release);
}

double quantize_into(Dispatched, const QuantConfig& config, ConstMatrixView w, std::span<const float> col_scale,
                     std::span<const float> group_clip, std::span<const double> channel_weight, QuantizedMatrix& out) {
  return isa_kernels(active_isa()).quantize_into(config, w, col_scale, group_clip, channel_weight, out);
}

double quantize_into(Dispatched, const QuantConfig& config, MatrixView<const BFloat16> w, std::span<const float> col_scale,
                     std::span<const float> group_clip, std::span<const double> channel_weight, QuantizedMatrix& out) {
  return isa_kernels(active_isa()).quantize_into_bf16(config, w, col_scale, group_clip, channel_weight, out);
}

QuantizedMatrix quantize(Dispatched tag, const QuantConfig& config, ConstMatrixView w, std::span<const float> col_scale,
                         std::span<const float> group_clip) {
  QuantizedMatrix q;
  quantize_into(tag, config, w, col_scale, group_clip, {}, q);
  return q;
}

QuantizedMatrix quantize(Dispatched tag, const QuantConfig& config, MatrixView<const BFloat16> w, std::span<const float> col_scale,
                         std::span<const float> group_clip) {
  QuantizedMatrix q;
  quantize_into(tag, config, w, col_scale, group_clip, {}, q);
  return q;
}

DispatchedPrepared prepare(Dispatched, const QuantizedMatrix& q) {
  const IsaKernels& kernels = isa_kernels(active_isa());
  return {&kernels, kernels.prepare(q)};
}

void forward(Dispatched, const DispatchedPrepared& prepared, const ForwardArgs& args) {
  if (prepared.kernels == nullptr || prepared.data == nullptr)
    throw StateError("prepared", "forward on weights that were never prepared");
  prepared.kernels->forward(prepared.data.get(), args);
}

}  // namespace ttq::backend
