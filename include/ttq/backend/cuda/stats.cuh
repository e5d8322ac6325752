// The activation statistic D on the GPU: per-channel p-norm and square sums over the prompt's
// tokens (fp32, fp16 or bf16 activations; sums in double, as the scalar backend), the decay of
// begin_prompt(), and the plan kernel that turns the sums into D and 1/D in one small launch.
// Every formula is a TTQ_HOST_DEVICE function of stats/scale_math.hpp shared with the host
// (DiagCorrelation); only the summation order differs (atomics across token chunks, a tree for
// the channel mean), so D agrees with the host to a few ulps of double before rounding to fp32.
#pragma once

#include <cstdint>

#include "ttq/backend/cuda/common.cuh"
#include "ttq/quant/group_kernel.hpp"
#include "ttq/stats/scale_math.hpp"

namespace ttq::cuda {

namespace detail {

inline constexpr int kStatsThreads = 256;
/// Tokens one stats block sums before its atomic add: enough to amortise the atomics, few
/// enough that a 2k-token prompt still spreads over many blocks.
inline constexpr int kStatsTokensPerBlock = 32;

/// atomicMax for non-negative doubles (and NaN, whose bit pattern is larger than +Inf's, so a
/// NaN statistic stays NaN): their IEEE bit patterns order as unsigned integers.
__device__ __forceinline__ void atomic_max_nonnegative(double* address, double value) {
  atomicMax(reinterpret_cast<unsigned long long*>(address), static_cast<unsigned long long>(__double_as_longlong(value)));
}

/// Adds the statistics of x [tokens, cols] into pnorm [cols] and square [cols]: thread j of the
/// grid's x dimension owns column j (coalesced across a warp), blockIdx.y owns a chunk of tokens.
template <class X>
__global__ void __launch_bounds__(kStatsThreads)
    channel_stats_kernel(const X* x, Index tokens, Index cols, Index stride, ttq::detail::NormOrder order,
                         double* pnorm, double* square, unsigned* status) {
  const Index j = static_cast<Index>(blockIdx.x) * kStatsThreads + threadIdx.x;
  if (j >= cols) return;
  const Index t_begin = static_cast<Index>(blockIdx.y) * kStatsTokensPerBlock;
  const Index t_end = t_begin + kStatsTokensPerBlock < tokens ? t_begin + kStatsTokensPerBlock : tokens;
  double norm_sum = 0.0;
  double square_sum = 0.0;
  bool finite = true;
  for (Index t = t_begin; t < t_end; ++t) {
    const float value = to_float(x[t * stride + j]);
    finite = finite && ttq::detail::is_finite(value);
    const double magnitude = ::fabs(static_cast<double>(value));
    square_sum += ttq::detail::dmul_rn(magnitude, magnitude);
    norm_sum = ttq::detail::accumulate_norm(order, norm_sum, magnitude);
  }
  // A NaN must poison the statistic even for p = inf (fmax would skip it), so that the plan
  // kernel can mark the channel.
  if (!finite) norm_sum = __longlong_as_double(0x7FF8000000000000LL);
  atomicAdd(square + j, square_sum);
  if (order.kind == ttq::detail::NormKind::inf) atomic_max_nonnegative(pnorm + j, norm_sum);
  else atomicAdd(pnorm + j, norm_sum);
  if (!finite) atomicOr(status, kStatusNonFiniteActivation);
}

// Kernels defined in a header are templates (even when nothing varies), so that two .cu files
// of one program can both include this header: a plain __global__ function would be defined twice.
template <class Unused = void>
__global__ void scale_sums_kernel(double* a, double* b, Index n, double factor) {
  for (Index j = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x; j < n; j += static_cast<Index>(gridDim.x) * blockDim.x) {
    a[j] = ttq::detail::decayed_sum(a[j], factor);
    b[j] = ttq::detail::decayed_sum(b[j], factor);
  }
}

inline constexpr int kPlanThreads = 1024;

/// Block-wide sum (op = 0) or max (op = 1) of one double per thread, broadcast to all threads.
__device__ inline double block_reduce(double value, int op) {
  __shared__ double partial[kPlanThreads / 32];
  __syncthreads();  // `partial` may still be read from a previous call
  for (int offset = 16; offset > 0; offset >>= 1) {
    const double other = __shfl_xor_sync(0xFFFFFFFFu, value, offset);
    value = op == 0 ? value + other : ::fmax(value, other);
  }
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = value;
  __syncthreads();
  double total = op == 0 ? 0.0 : partial[0];
  for (int w = 0; w < static_cast<int>(blockDim.x >> 5); ++w) total = op == 0 ? total + partial[w] : ::fmax(total, partial[w]);
  return total;
}

/// Settings of the plan kernel (DiagCorrelationOptions resolved to plain values).
struct PlanArgs {
  const double* pnorm = nullptr;  ///< [n] p-norm sums
  Index n = 0;                    ///< d_in
  Index padded_n = 0;             ///< length of the D and 1/D buffers (>= n); the tail gets D = 1, 1/D = 0
  double tokens = 0.0;
  ttq::detail::NormOrder order{};
  bool use_global_mean = false;
  double global_mean = 0.0;
  double lambda = 0.0;
  double alpha = 0.0;
  double prior_weight = 0.0;
  const double* prior = nullptr;  ///< [n] when prior_weight > 0
  float* scales = nullptr;        ///< D [padded_n]
  float* inverse_scales = nullptr;  ///< 1/D [padded_n], fp32 division as the host operator
};

/// One block computes D for every channel: the mean of s^2, then D before the floor and its
/// maximum, then the floored fp32 D and 1/D. Each pass recomputes the per-channel value from
/// the sums (cheaper than storing it, and deterministic).
template <class Unused = void>
__global__ void __launch_bounds__(kPlanThreads) plan_scales_kernel(PlanArgs a) {
  double sum_squares = 0.0;
  for (Index j = threadIdx.x; j < a.n; j += blockDim.x) {
    const double s = ttq::detail::channel_norm(a.order, a.pnorm[j], a.tokens);
    sum_squares += ttq::detail::dmul_rn(s, s);
  }
  sum_squares = block_reduce(sum_squares, 0);
  const double mean = a.use_global_mean ? a.global_mean : (a.n > 0 ? sum_squares / static_cast<double>(a.n) : 0.0);

  auto damped = [&](Index j) {
    double c = ttq::detail::channel_correlation(ttq::detail::channel_norm(a.order, a.pnorm[j], a.tokens), mean);
    if (a.prior_weight > 0.0) c = ttq::detail::blend_prior(c, a.prior_weight, a.prior[j]);
    return ttq::detail::damped_scale(c, a.lambda, a.alpha);
  };
  double d_max = 0.0;
  for (Index j = threadIdx.x; j < a.n; j += blockDim.x) d_max = ::fmax(d_max, damped(j));
  d_max = block_reduce(d_max, 1);
  for (Index j = threadIdx.x; j < a.padded_n; j += blockDim.x) {
    if (j < a.n) {
      const double s = ttq::detail::channel_norm(a.order, a.pnorm[j], a.tokens);
      // A channel whose statistic saw a NaN/Inf gets D = NaN, so the quantize kernel marks every
      // group of that column invalid (NaN scale) instead of quantizing it with a made-up D. (The
      // host DiagCorrelation refuses such input before it gets here.)
      const bool valid = ::fabs(s) <= 1.7976931348623157e308;
      const float d = valid ? ttq::detail::floored_scale(damped(j), d_max) : __int_as_float(0x7FC00000);
      a.scales[j] = d;
      a.inverse_scales[j] = 1.0f / d;
    } else {
      a.scales[j] = 1.0f;
      a.inverse_scales[j] = 0.0f;  // padding columns contribute nothing to a GEMV
    }
  }
}

}  // namespace detail

/// Adds the statistics of x [tokens, cols] (device, any of f32/f16/bf16) to the device sums
/// pnorm [cols] and square [cols] on `stream`. A NaN/Inf activation sets
/// kStatusNonFiniteActivation in *status and makes the sums NaN/Inf.
template <class X>
  requires is_element_v<X>
void accumulate_channel_stats_on_device(DeviceMatrixView<const X> x, ttq::detail::NormOrder order, double* pnorm,
                                        double* square, unsigned* status, cudaStream_t stream) {
  if (x.rows == 0 || x.cols == 0) return;
  const dim3 grid(static_cast<unsigned>((x.cols + detail::kStatsThreads - 1) / detail::kStatsThreads),
                  static_cast<unsigned>((x.rows + detail::kStatsTokensPerBlock - 1) / detail::kStatsTokensPerBlock));
  detail::check(grid.y <= 65535u ? cudaSuccess : cudaErrorInvalidValue, "channel_stats_kernel: too many tokens in one call");
  detail::channel_stats_kernel<X><<<grid, detail::kStatsThreads, 0, stream>>>(x.data, x.rows, x.cols, x.row_stride, order,
                                                                               pnorm, square, status);
  detail::check_launch("channel_stats_kernel");
}

/// Multiplies both sum arrays [n] by `factor` (begin_prompt's decay) on `stream`.
inline void scale_sums_on_device(double* pnorm, double* square, Index n, double factor, cudaStream_t stream) {
  if (n == 0) return;
  const Index blocks = (n + 255) / 256;
  detail::scale_sums_kernel<><<<static_cast<unsigned>(blocks > 1024 ? 1024 : blocks), 256, 0, stream>>>(pnorm, square, n, factor);
  detail::check_launch("scale_sums_kernel");
}

/// Computes D and 1/D from the sums on `stream` (one block).
inline void plan_scales_on_device(const detail::PlanArgs& args, cudaStream_t stream) {
  detail::plan_scales_kernel<><<<1, detail::kPlanThreads, 0, stream>>>(args);
  detail::check_launch("plan_scales_kernel");
}

}  // namespace ttq::cuda
