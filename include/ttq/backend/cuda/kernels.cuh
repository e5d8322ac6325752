// The `backend::Cuda` tag and its kernels for host-memory operators: with these overloads,
// OnlineAWQ<Q, C, R, backend::Cuda> (and the baselines) run their quantization and forward
// product on the GPU while keeping the operator's host-memory API. That is what lets the GPU
// test binary run the very same oracle checks as the CPU backends (identical codes, outputs
// within tolerance of backend::Scalar).
//
// Each call copies its inputs to the device, runs the kernels on the calling thread's
// per-thread default stream and copies the result back, waiting for that stream: a host-memory
// API cannot return a host result any other way. For decode-speed work keep the data on the
// device and use cuda::CudaOnlineAWQ (online_awq.cuh), which never synchronises.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ttq/backend/contract.hpp"
#include "ttq/backend/cuda/common.cuh"
#include "ttq/backend/cuda/gemv.cuh"
#include "ttq/backend/cuda/quantize.cuh"
#include "ttq/backend/scalar/kernels.hpp"
#include "ttq/core/error.hpp"
#include "ttq/core/types.hpp"
#include "ttq/quant/quant_config.hpp"
#include "ttq/quant/quantized_matrix.hpp"

namespace ttq::backend {

/// NVIDIA GPUs (sm_80 and newer): fused online quantization and tensor-core low-bit GEMV.
struct Cuda {
  static constexpr const char* name = "cuda";
};

namespace detail {

/// The stream the host-memory adapter runs on: each host thread gets its own.
inline cudaStream_t adapter_stream() { return cudaStreamPerThread; }

/// Copies a host view (any row stride) to a contiguous device buffer.
inline cuda::DeviceBuffer<float> upload_matrix(ConstMatrixView m, cudaStream_t stream) {
  cuda::DeviceBuffer<float> d(static_cast<std::size_t>(m.rows * m.cols), stream);
  if (m.rows > 0 && m.cols > 0)
    cuda::detail::check(cudaMemcpy2DAsync(d.data(), static_cast<std::size_t>(m.cols) * 4, m.data,
                                          static_cast<std::size_t>(m.row_stride) * 4, static_cast<std::size_t>(m.cols) * 4,
                                          static_cast<std::size_t>(m.rows), cudaMemcpyHostToDevice, stream),
                        "cudaMemcpy2DAsync (matrix upload)");
  return d;
}

inline cuda::DeviceBuffer<float> upload_vector(std::span<const float> v, cudaStream_t stream) {
  cuda::DeviceBuffer<float> d(v.size(), stream);
  d.upload(v.data(), v.size());
  return d;
}

}  // namespace detail

/// quantize() of backend::Scalar, on the GPU: same codes, scales and zeros. Throws
/// NonFiniteError if a scaled weight is not finite. Synchronises the per-thread stream.
inline QuantizedMatrix quantize(Cuda, const QuantConfig& config, ConstMatrixView w, std::span<const float> col_scale,
                                std::span<const float> group_clip) {
  const cudaStream_t stream = detail::adapter_stream();
  cuda::DeviceBuffer<float> weight = detail::upload_matrix(w, stream);
  const std::vector<float> ones(col_scale.empty() ? static_cast<std::size_t>(w.cols) : 0, 1.0f);
  cuda::DeviceBuffer<float> scale = detail::upload_vector(col_scale.empty() ? std::span<const float>(ones) : col_scale, stream);
  cuda::DeviceBuffer<float> clip = detail::upload_vector(group_clip, stream);
  cuda::DeviceBuffer<unsigned> status(1, stream);
  status.zero();
  cuda::DeviceQuantizedMatrix out(config, w.rows, w.cols, stream);
  cuda::QuantizeLaunchOptions options;
  options.group_clip = group_clip.empty() ? nullptr : clip.data();
  cuda::quantize_on_device(cuda::DeviceMatrixView<const float>(weight.data(), w.rows, w.cols), scale.data(), config, out,
                           status.data(), stream, options);
  unsigned flags = 0;
  cuda::detail::check(cudaMemcpyAsync(&flags, status.data(), sizeof(flags), cudaMemcpyDeviceToHost, stream),
                      "cudaMemcpyAsync (status)");
  QuantizedMatrix q = out.download(stream);  // synchronises `stream`, so `flags` has arrived too
  if (flags & cuda::kStatusNonFiniteWeight)
    throw NonFiniteError("weight", "a scaled weight is not finite; cannot quantize");
  return q;
}

/// quantize_into: the GPU quantization (identical codes), copied into `out`. The GPU has no
/// fused error kernel yet, so E (when asked) is measured on the host from the downloaded codes
/// with the reference formula: exact, but one more pass over W on the CPU (docs/cuda.md).
inline double quantize_into(Cuda tag, const QuantConfig& config, ConstMatrixView w, std::span<const float> col_scale,
                            std::span<const float> group_clip, std::span<const double> channel_weight, QuantizedMatrix& out) {
  out = quantize(tag, config, w, col_scale, group_clip);
  return channel_weight.empty() ? 0.0 : reference_weighted_error(out, w, col_scale, channel_weight);
}

/// The host-memory adapter keeps statistics on the host, where X already is (uploading it to
/// sum it would cost more than summing it), so D is exactly the reference's.
template <int P>
void accumulate_channel_stats(Cuda, ConstMatrixView x, double p, std::span<double> pnorm, std::span<double> square) {
  reference_channel_stats<P>(x, p, pnorm, square);
}

/// The Cuda backend's decode-ready weights: the quantized matrix on the device (shared, so that
/// operators stay copyable).
struct CudaPrepared {
  std::shared_ptr<const cuda::DeviceQuantizedMatrix> weights;
};

inline CudaPrepared prepare(Cuda, const QuantizedMatrix& q) {
  return {std::make_shared<const cuda::DeviceQuantizedMatrix>(cuda::DeviceQuantizedMatrix::upload(q, detail::adapter_stream()))};
}

/// forward() of backend::Scalar on the GPU (fp32 activations and outputs; the packed tensor-core
/// kernel where it applies, else the generic one). Synchronises the per-thread stream.
inline void forward(Cuda, const CudaPrepared& prepared, const ForwardArgs& a) {
  const cudaStream_t stream = detail::adapter_stream();
  const cuda::DeviceQuantizedView w = prepared.weights->view();
  cuda::DeviceBuffer<float> x = detail::upload_matrix(a.x, stream);
  // 1/D padded to a multiple of 8 floats: the kernel reads it in aligned 8-float vectors.
  std::vector<float> inverse(a.inverse_scale.begin(), a.inverse_scale.end());
  inverse.resize((inverse.size() + 7) / 8 * 8, 0.0f);
  cuda::DeviceBuffer<float> inverse_scale = detail::upload_vector(inverse, stream);
  const Index rank = a.lowrank_a.rows;
  cuda::DeviceBuffer<float> lowrank_a, lowrank_bt;
  if (rank > 0) {
    lowrank_a = detail::upload_matrix(a.lowrank_a, stream);
    const RowMatrix bt = ttq::detail::as_eigen(a.lowrank_b).transpose();
    lowrank_bt = detail::upload_matrix(ConstMatrixView(bt), stream);
  }
  cuda::DeviceBuffer<float> bias = detail::upload_vector(a.bias, stream);
  cuda::DeviceBuffer<float> y(static_cast<std::size_t>(a.y.rows * a.y.cols), stream);
  cuda::GemvOperands<float> operands;
  operands.x = cuda::DeviceMatrixView<const float>(x.data(), a.x.rows, a.x.cols);
  operands.inverse_scale = inverse_scale.data();
  operands.lowrank_a = lowrank_a.data();
  operands.lowrank_bt = lowrank_bt.data();
  operands.rank = static_cast<int>(rank);
  operands.bias = a.bias.empty() ? nullptr : bias.data();
  operands.y = cuda::DeviceMatrixView<float>(y.data(), a.y.rows, a.y.cols);
  cuda::GemvWorkspace workspace(stream);
  cuda::gemv_on_device(w, operands, workspace, stream);
  if (a.y.rows > 0 && a.y.cols > 0)
    cuda::detail::check(cudaMemcpy2DAsync(a.y.data, static_cast<std::size_t>(a.y.row_stride) * 4, y.data(),
                                          static_cast<std::size_t>(a.y.cols) * 4, static_cast<std::size_t>(a.y.cols) * 4,
                                          static_cast<std::size_t>(a.y.rows), cudaMemcpyDeviceToHost, stream),
                        "cudaMemcpy2DAsync (y download)");
  cuda::detail::check(cudaStreamSynchronize(stream), "cudaStreamSynchronize (forward)");
}

}  // namespace ttq::backend
