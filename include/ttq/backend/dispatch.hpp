// Run-time choice of the instruction set, for engines that ship one binary for many CPUs.
//
// ttq is header-only, so `backend::Simd` is compiled for the ISA of the including translation
// unit. The compiled add-on `ttq::dispatch` (src/backend/dispatch/, CMake option
// TTQ_BUILD_DISPATCH) builds the kernels once per ISA, each in its own translation unit with its
// own flags, and exposes them here behind one table of function pointers per ISA:
//
//   x86-64   scalar (the oracle, baseline flags), avx2 (-march=x86-64-v3: AVX2 + FMA),
//            avx512 (-march=x86-64-v4 -mavx512vnni: AVX-512 F/BW/DQ/VL + VNNI)
//   AArch64  scalar, neon
//
// `best_isa()` is the best one both compiled in and supported by this CPU and OS. The backend
// tag `Dispatched` runs whichever is active (`active_isa()`: the environment variable TTQ_ISA if
// set, else best_isa(); `set_active_isa()` changes it), so `OnlineAWQ<Q, C, R, Dispatched>` is
// an operator whose ISA is chosen at run time, once per call. The weights an operator prepared
// keep the ISA that prepared them. docs/backends.md says how this is tested.
#pragma once

#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "ttq/backend/contract.hpp"
#include "ttq/backend/scalar/kernels.hpp"
#include "ttq/core/half.hpp"
#include "ttq/core/types.hpp"
#include "ttq/quant/quant_config.hpp"
#include "ttq/quant/quantized_matrix.hpp"

namespace ttq::backend {

/// The instruction sets ttq::dispatch can be built for.
/// neon_dotprod is AArch64 with the dot-product extension (the integer decode kernels).
enum class Isa { scalar, avx2, avx512, neon, neon_dotprod };

/// "scalar", "avx2", "avx512", "neon" or "neon-dotprod".
const char* isa_name(Isa isa) noexcept;
/// The inverse of isa_name; throws RangeError("isa") for any other name.
Isa parse_isa(std::string_view name);

/// One ISA's kernels. `prepare` returns that ISA's decode-ready weights, type-erased; `forward`
/// takes them back. Every entry has the contract of the matching kernel of backend/backend.hpp.
struct IsaKernels {
  Isa isa;
  const char* detail;  ///< what the translation unit was compiled for, e.g. "avx512bw+vnni"
  double (*quantize_into)(const QuantConfig&, ConstMatrixView w, std::span<const float> col_scale,
                          std::span<const float> group_clip, std::span<const double> channel_weight, QuantizedMatrix& out);
  double (*quantize_into_bf16)(const QuantConfig&, MatrixView<const BFloat16> w, std::span<const float> col_scale,
                               std::span<const float> group_clip, std::span<const double> channel_weight, QuantizedMatrix& out);
  /// p_kind is 1, 2, InfNorm or Dynamic (then `p` is the norm).
  void (*accumulate_channel_stats)(int p_kind, ConstMatrixView x, double p, std::span<double> pnorm, std::span<double> square);
  std::shared_ptr<const void> (*prepare)(const QuantizedMatrix&);
  void (*forward)(const void* prepared, const ForwardArgs&);
};

/// The ISAs this build of ttq::dispatch contains, scalar first, best last.
std::span<const Isa> compiled_isas() noexcept;
/// Whether this CPU and OS can run `isa` (cpuid and xgetbv on x86; NEON is part of AArch64).
bool cpu_supports(Isa isa) noexcept;
/// The best ISA that is both compiled in and supported here.
Isa best_isa() noexcept;
/// The kernels of `isa`; throws StateError("isa") if it is not compiled in or not supported here.
const IsaKernels& isa_kernels(Isa isa);

/// The ISA `Dispatched` runs now: set_active_isa()'s, else TTQ_ISA's (read once), else best_isa().
Isa active_isa();
/// Makes `isa` the active one process-wide; throws as isa_kernels() does. Operators already
/// prepared keep running the ISA that prepared them.
void set_active_isa(Isa isa);

/// Backend tag whose kernels are those of active_isa().
struct Dispatched {
  static constexpr const char* name = "dispatched";
};

/// Decode-ready weights of a Dispatched operator: the kernels that prepared them and their data.
struct DispatchedPrepared {
  const IsaKernels* kernels = nullptr;
  std::shared_ptr<const void> data;
};

double quantize_into(Dispatched, const QuantConfig& config, ConstMatrixView w, std::span<const float> col_scale,
                     std::span<const float> group_clip, std::span<const double> channel_weight, QuantizedMatrix& out);
double quantize_into(Dispatched, const QuantConfig& config, MatrixView<const BFloat16> w, std::span<const float> col_scale,
                     std::span<const float> group_clip, std::span<const double> channel_weight, QuantizedMatrix& out);
QuantizedMatrix quantize(Dispatched, const QuantConfig& config, ConstMatrixView w, std::span<const float> col_scale,
                         std::span<const float> group_clip);
QuantizedMatrix quantize(Dispatched, const QuantConfig& config, MatrixView<const BFloat16> w, std::span<const float> col_scale,
                         std::span<const float> group_clip);
DispatchedPrepared prepare(Dispatched, const QuantizedMatrix& q);
/// Throws StateError("prepared") for weights that were never prepared.
void forward(Dispatched, const DispatchedPrepared& prepared, const ForwardArgs& args);

/// accumulate_channel_stats for any P (integer P other than 1, 2 runs as Dynamic with p = P:
/// the scalar oracle computes pow(v, P) either way).
template <int P>
void accumulate_channel_stats(Dispatched, ConstMatrixView x, double p, std::span<double> pnorm, std::span<double> square) {
  constexpr bool kVectorized = P == 1 || P == 2 || P == InfNorm;
  const double norm = P == Dynamic ? p : static_cast<double>(P);
  isa_kernels(active_isa()).accumulate_channel_stats(kVectorized ? P : Dynamic, x, norm, pnorm, square);
}

}  // namespace ttq::backend
