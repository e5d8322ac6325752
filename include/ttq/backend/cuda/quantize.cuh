// Online quantize + pack on the GPU: W * diag(D) -> packed codes, group scales and zeros, in one
// pass over W (fp32, fp16 or bf16, widened exactly to fp32 before the multiply by D), producing
// the same codes, scales and zeros as the scalar oracle (backend/scalar/kernels.hpp), because
// both run the per-group steps of quant/group_kernel.hpp and format.hpp: the same fp32
// multiply, an order-independent min/max fold, the same fit (true division; this header must
// never be compiled with --use_fast_math or -prec-div=false), round-half-even and clamps.
//
// Also DeviceQuantizedMatrix, the device-resident form of a QuantizedMatrix: codes in the
// library's bit layout with each row padded to whole 256-code windows (zero bits), scales and
// zeros exactly as on the host.
#pragma once

#include <cstdint>
#include <vector>

#include "ttq/backend/cuda/common.cuh"
#include "ttq/backend/cuda/gemv_layout.hpp"
#include "ttq/quant/format.hpp"
#include "ttq/quant/group_kernel.hpp"
#include "ttq/quant/packing.hpp"
#include "ttq/quant/quant_config.hpp"
#include "ttq/quant/quantized_matrix.hpp"

namespace ttq::cuda {

/// Non-owning view of quantized weights in device memory. codes: [rows, code_stride] words (row
/// bit stream of quant/packing.hpp, padded with zero bits to `code_stride` words, code_stride >=
/// packed_words_per_row(cols, bits)); scales, zeros: [rows, groups_per_row] row-major fp32.
struct DeviceQuantizedView {
  const std::uint32_t* codes = nullptr;
  const float* scales = nullptr;
  const float* zeros = nullptr;
  Index rows = 0;
  Index cols = 0;
  Index code_stride = 0;
  Index group = 0;
  int bits = 0;
  FormatKind format = FormatKind::awq_asymmetric;

  Index groups_per_row() const { return group == 0 ? 0 : (cols + group - 1) / group; }
};

/// Owns quantized weights on the device (see the file comment for the layout).
class DeviceQuantizedMatrix {
 public:
  DeviceQuantizedMatrix() = default;

  /// Allocates (uninitialised) storage for a [rows, cols] matrix quantized with `config`.
  DeviceQuantizedMatrix(const QuantConfig& config, Index rows, Index cols, cudaStream_t stream)
      : rows_(rows),
        cols_(cols),
        config_(config),
        code_stride_(layout::padded_words_per_row(cols, config.bits)),
        codes_(static_cast<std::size_t>(rows * code_stride_), stream),
        scales_(static_cast<std::size_t>(rows * groups_per_row()), stream),
        zeros_(static_cast<std::size_t>(rows * groups_per_row()), stream) {}

  /// Copies a host QuantizedMatrix to the device (stream-ordered).
  static DeviceQuantizedMatrix upload(const QuantizedMatrix& q, cudaStream_t stream) {
    DeviceQuantizedMatrix d(QuantConfig{q.bits, q.group, q.format, 1.0f}, q.rows, q.cols, stream);
    d.codes_.zero();  // the padding words must be zero bits
    if (q.rows > 0 && q.words_per_row > 0)
      detail::check(cudaMemcpy2DAsync(d.codes_.data(), static_cast<std::size_t>(d.code_stride_) * 4, q.codes.data(),
                                      static_cast<std::size_t>(q.words_per_row) * 4,
                                      static_cast<std::size_t>(q.words_per_row) * 4, static_cast<std::size_t>(q.rows),
                                      cudaMemcpyHostToDevice, stream),
                    "cudaMemcpy2DAsync (codes upload)");
    d.scales_.upload(q.scales.data(), q.scales.size());
    d.zeros_.upload(q.zeros.data(), q.zeros.size());
    return d;
  }

  /// Copies the matrix back into a host QuantizedMatrix. Synchronises `stream` (and only it):
  /// this is an inspection call for tests and tools, never part of decode.
  QuantizedMatrix download(cudaStream_t stream) const {
    QuantizedMatrix q;
    q.rows = rows_;
    q.cols = cols_;
    q.group = config_.group;
    q.bits = config_.bits;
    q.format = config_.format;
    q.words_per_row = packed_words_per_row(cols_, config_.bits);
    q.codes.assign(static_cast<std::size_t>(rows_ * q.words_per_row), 0u);
    q.scales.assign(scales_.size(), 0.0f);
    q.zeros.assign(zeros_.size(), 0.0f);
    if (rows_ > 0 && q.words_per_row > 0)
      detail::check(cudaMemcpy2DAsync(q.codes.data(), static_cast<std::size_t>(q.words_per_row) * 4, codes_.data(),
                                      static_cast<std::size_t>(code_stride_) * 4,
                                      static_cast<std::size_t>(q.words_per_row) * 4, static_cast<std::size_t>(rows_),
                                      cudaMemcpyDeviceToHost, stream),
                    "cudaMemcpy2DAsync (codes download)");
    if (!q.scales.empty()) {
      detail::check(cudaMemcpyAsync(q.scales.data(), scales_.data(), scales_.bytes(), cudaMemcpyDeviceToHost, stream),
                    "cudaMemcpyAsync (scales download)");
      detail::check(cudaMemcpyAsync(q.zeros.data(), zeros_.data(), zeros_.bytes(), cudaMemcpyDeviceToHost, stream),
                    "cudaMemcpyAsync (zeros download)");
    }
    detail::check(cudaStreamSynchronize(stream), "cudaStreamSynchronize (download)");
    return q;
  }

  DeviceQuantizedView view() const {
    return {codes_.data(), scales_.data(), zeros_.data(), rows_, cols_, code_stride_, config_.group, config_.bits, config_.format};
  }
  std::uint32_t* codes() { return codes_.data(); }
  float* scales() { return scales_.data(); }
  float* zeros() { return zeros_.data(); }
  Index rows() const { return rows_; }
  Index cols() const { return cols_; }
  Index code_stride() const { return code_stride_; }
  Index groups_per_row() const { return config_.group == 0 ? 0 : (cols_ + config_.group - 1) / config_.group; }
  const QuantConfig& config() const { return config_; }
  /// Bytes a decode step reads: codes (with row padding) plus scales and zeros.
  std::size_t bytes() const { return codes_.bytes() + scales_.bytes() + zeros_.bytes(); }

 private:
  Index rows_ = 0;
  Index cols_ = 0;
  QuantConfig config_{};
  Index code_stride_ = 0;
  DeviceBuffer<std::uint32_t> codes_;
  DeviceBuffer<float> scales_;
  DeviceBuffer<float> zeros_;
};

namespace detail {

/// Everything a quantize kernel reads and writes (device pointers).
struct QuantizeArgs {
  const void* weight = nullptr;  ///< [rows, cols], row stride weight_stride elements
  Index rows = 0;
  Index cols = 0;
  Index weight_stride = 0;
  const float* col_scale = nullptr;   ///< D [cols]
  const float* group_clip = nullptr;  ///< [rows, groups] or null (then `clip`)
  float clip = 1.0f;
  int bits = 4;
  Index group = 128;
  Index groups_per_row = 0;
  std::uint32_t* codes = nullptr;  ///< [rows, code_stride]
  Index code_stride = 0;
  float* scales = nullptr;  ///< [rows, groups]
  float* zeros = nullptr;   ///< [rows, groups]
  unsigned* status = nullptr;
  bool vector_loads = false;  ///< weight rows and base are 16-byte aligned
};

inline constexpr int kQuantizeThreads = 256;
inline constexpr int kQuantizeWarps = kQuantizeThreads / 32;

__device__ __forceinline__ ttq::detail::GroupRange shuffle_xor_range(ttq::detail::GroupRange r, int offset) {
  ttq::detail::GroupRange o;
  o.min = __shfl_xor_sync(0xFFFFFFFFu, r.min, offset);
  o.max = __shfl_xor_sync(0xFFFFFFFFu, r.max, offset);
  o.finite = __shfl_xor_sync(0xFFFFFFFFu, static_cast<int>(r.finite), offset) != 0;
  return o;
}

/// Loads 8 consecutive weights of one row as fp32 (exact widening); elements at or past `cols`
/// read as 0 and are excluded by the caller.
template <class W>
__device__ __forceinline__ void load_weights8(const W* row, Index first, Index cols, bool vector_ok, float (&out)[8]) {
  if (vector_ok && first + 8 <= cols) {
    if constexpr (sizeof(W) == 2) {
      const uint4 raw = *reinterpret_cast<const uint4*>(row + first);
      const W* v = reinterpret_cast<const W*>(&raw);
#pragma unroll
      for (int e = 0; e < 8; ++e) out[e] = to_float(v[e]);
    } else {
      const float4 a = *reinterpret_cast<const float4*>(row + first);
      const float4 b = *reinterpret_cast<const float4*>(row + first + 4);
      out[0] = a.x, out[1] = a.y, out[2] = a.z, out[3] = a.w, out[4] = b.x, out[5] = b.y, out[6] = b.z, out[7] = b.w;
    }
    return;
  }
#pragma unroll
  for (int e = 0; e < 8; ++e) out[e] = first + e < cols ? to_float(row[first + e]) : 0.0f;
}

/// The params a non-finite group gets: NaN scale and zero, so that it decodes to NaN.
__device__ __forceinline__ GroupParams invalid_params() { return {__int_as_float(0x7FC00000), __int_as_float(0x7FC00000)}; }

/// ORs the codes of one lane's field into the warp's window buffer (layout::window_field_words).
__device__ __forceinline__ void or_field(unsigned* window, std::uint64_t field, int bit, int width) {
  const layout::FieldWords f = layout::window_field_words(field, bit, width);
  if (f.w0 != 0u) atomicOr(window + f.first, f.w0);
  if (f.w1 != 0u) atomicOr(window + f.first + 1, f.w1);
  if (f.w2 != 0u) atomicOr(window + f.first + 2, f.w2);
}

/// Quantize + pack for groups of 32, 64, 128 or 256: one warp per 256-column window of a row,
/// each lane 8 consecutive columns. A window holds whole groups (G divides 256), each group's
/// range is folded across its G/8 lanes with xor shuffles, and the window's 8*bits packed words
/// are assembled in shared memory and written coalesced. W is read exactly once.
template <class W, NumberFormat F>
__global__ void __launch_bounds__(kQuantizeThreads) quantize_window_kernel(QuantizeArgs a) {
  __shared__ unsigned window_words[kQuantizeWarps][64];
  const int warp = static_cast<int>(threadIdx.x) >> 5;
  const int lane = static_cast<int>(threadIdx.x) & 31;
  unsigned* window = window_words[warp];
  window[lane] = 0u;
  window[lane + 32] = 0u;
  __syncwarp();

  const Index windows_per_row = (a.cols + layout::kWindowCodes - 1) / layout::kWindowCodes;
  const Index total = a.rows * windows_per_row;
  const int lanes_per_group = static_cast<int>(a.group / 8);
  const int window_words_count = 8 * a.bits;
  for (Index job = static_cast<Index>(blockIdx.x) * kQuantizeWarps + warp; job < total;
       job += static_cast<Index>(gridDim.x) * kQuantizeWarps) {
    const Index r = job / windows_per_row;
    const Index j = job % windows_per_row;
    const Index first = j * layout::kWindowCodes + 8 * lane;
    const W* row = static_cast<const W*>(a.weight) + r * a.weight_stride;

    float w[8];
    load_weights8(row, first, a.cols, a.vector_loads, w);
    float v[8];
    ttq::detail::GroupRange range = ttq::detail::empty_range();
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      const bool valid = first + e < a.cols;
      v[e] = valid ? ttq::detail::scaled_weight(w[e], a.col_scale[first + e]) : 0.0f;
      if (valid) range = ttq::detail::merge_range(range, ttq::detail::range_of(v[e]));
    }
    for (int offset = 1; offset < lanes_per_group; offset <<= 1) range = ttq::detail::merge_range(range, shuffle_xor_range(range, offset));

    const Index g = first / a.group;  // every lane of a group segment computes the same g
    const bool group_exists = g * a.group < a.cols;
    GroupParams p = invalid_params();
    if (group_exists && range.finite) {
      const float clip = a.group_clip != nullptr ? a.group_clip[r * a.groups_per_row + g] : a.clip;
      p = ttq::detail::fit_group<F>(range, clip, a.bits);
    }
    if (group_exists && lane % lanes_per_group == 0) {
      a.scales[r * a.groups_per_row + g] = p.scale;
      a.zeros[r * a.groups_per_row + g] = p.zero;
      if (!range.finite) atomicOr(a.status, kStatusNonFiniteWeight);
    }

    std::uint64_t field = 0;
    if (range.finite) {
#pragma unroll
      for (int e = 0; e < 8; ++e)
        if (first + e < a.cols) field |= static_cast<std::uint64_t>(F::encode(v[e], p, a.bits)) << (a.bits * e);
    }
    or_field(window, field, 8 * lane * a.bits, 8 * a.bits);
    __syncwarp();
    if (lane < window_words_count) {
      a.codes[r * a.code_stride + j * window_words_count + lane] = window[lane];
      window[lane] = 0u;
    }
    if (lane + 32 < window_words_count) {
      a.codes[r * a.code_stride + j * window_words_count + lane + 32] = window[lane + 32];
      window[lane + 32] = 0u;
    }
    __syncwarp();
  }
}

/// Quantize + pack for any group size (ragged, per-channel, not a divisor of 256): one warp per
/// row. Pass 1 folds each group's range across the warp and writes its parameters; pass 2 builds
/// every packed word of the row from the codes that overlap it (reading the row again, from
/// cache). Slower than the window kernel, and the reference the window kernel must agree with.
template <class W, NumberFormat F>
__global__ void __launch_bounds__(kQuantizeThreads) quantize_rows_kernel(QuantizeArgs a) {
  const int warp = static_cast<int>(threadIdx.x) >> 5;
  const int lane = static_cast<int>(threadIdx.x) & 31;
  for (Index r = static_cast<Index>(blockIdx.x) * kQuantizeWarps + warp; r < a.rows;
       r += static_cast<Index>(gridDim.x) * kQuantizeWarps) {
    const W* row = static_cast<const W*>(a.weight) + r * a.weight_stride;
    for (Index g = 0; g < a.groups_per_row; ++g) {
      const Index begin = g * a.group;
      const Index end = begin + a.group < a.cols ? begin + a.group : a.cols;
      ttq::detail::GroupRange range = ttq::detail::empty_range();
      for (Index k = begin + lane; k < end; k += 32)
        range = ttq::detail::merge_range(range, ttq::detail::range_of(ttq::detail::scaled_weight(to_float(row[k]), a.col_scale[k])));
      for (int offset = 1; offset < 32; offset <<= 1) range = ttq::detail::merge_range(range, shuffle_xor_range(range, offset));
      if (lane == 0) {
        GroupParams p = invalid_params();
        if (range.finite) {
          const float clip = a.group_clip != nullptr ? a.group_clip[r * a.groups_per_row + g] : a.clip;
          p = ttq::detail::fit_group<F>(range, clip, a.bits);
        } else {
          atomicOr(a.status, kStatusNonFiniteWeight);
        }
        a.scales[r * a.groups_per_row + g] = p.scale;
        a.zeros[r * a.groups_per_row + g] = p.zero;
      }
    }
    __syncwarp();  // makes lane 0's parameter writes visible to the whole warp
    for (Index word = lane; word < a.code_stride; word += 32) {
      const Index first_bit = word * 32;
      const Index k_begin = first_bit / a.bits;
      Index k_end = (first_bit + 31) / a.bits + 1;
      if (k_end > a.cols) k_end = a.cols;
      std::uint32_t bits_out = 0;
      for (Index k = k_begin; k < k_end; ++k) {
        const Index g = k / a.group;
        const GroupParams p{a.scales[r * a.groups_per_row + g], a.zeros[r * a.groups_per_row + g]};
        if (!(p.scale == p.scale)) continue;  // a non-finite group: NaN parameters, code 0
        const std::uint32_t code = F::encode(ttq::detail::scaled_weight(to_float(row[k]), a.col_scale[k]), p, a.bits);
        const Index offset = k * a.bits - first_bit;  // may be negative: a code straddling in
        bits_out |= offset >= 0 ? code << offset : code >> (-offset);
      }
      a.codes[r * a.code_stride + word] = bits_out;
    }
    __syncwarp();
  }
}

inline int quantize_grid(Index jobs) {
  const Index blocks = (jobs + kQuantizeWarps - 1) / kQuantizeWarps;
  return static_cast<int>(blocks < 1 ? 1 : (blocks > 65535 ? 65535 : blocks));
}

/// Whether the single-pass window kernel handles this group size.
constexpr bool window_quantize_supports(Index group) { return group == 32 || group == 64 || group == 128 || group == 256; }

template <class W, NumberFormat F>
void launch_quantize_typed(const QuantizeArgs& a, bool force_rows_kernel, cudaStream_t stream) {
  if (window_quantize_supports(a.group) && !force_rows_kernel) {
    const Index windows = a.rows * ((a.cols + layout::kWindowCodes - 1) / layout::kWindowCodes);
    quantize_window_kernel<W, F><<<quantize_grid(windows), kQuantizeThreads, 0, stream>>>(a);
    check_launch("quantize_window_kernel");
  } else {
    quantize_rows_kernel<W, F><<<quantize_grid(a.rows), kQuantizeThreads, 0, stream>>>(a);
    check_launch("quantize_rows_kernel");
  }
}

template <NumberFormat F>
void launch_quantize_format(const QuantizeArgs& a, ElementType type, bool force_rows_kernel, cudaStream_t stream) {
  switch (type) {
    case ElementType::f32: return launch_quantize_typed<float, F>(a, force_rows_kernel, stream);
    case ElementType::f16: return launch_quantize_typed<__half, F>(a, force_rows_kernel, stream);
    case ElementType::bf16: return launch_quantize_typed<__nv_bfloat16, F>(a, force_rows_kernel, stream);
  }
}

}  // namespace detail

/// Options of quantize_on_device.
struct QuantizeLaunchOptions {
  const float* group_clip = nullptr;  ///< device [rows, groups] per-group clip ratios, or null
  bool force_rows_kernel = false;     ///< use the any-group kernel even where the window kernel applies (tests)
};

/// Quantizes weight * diag(col_scale) into `out` on `stream`: codes, scales and zeros equal to
/// backend::quantize(Scalar{}, config, widened weight, D, clip) (same fp32 arithmetic).
/// weight: [rows, cols] device matrix (f32/f16/bf16); col_scale: device D [cols], finite and
/// positive; out: allocated for (config, rows, cols); status: device word, kStatusNonFiniteWeight
/// is OR'ed in if a scaled weight is NaN/Inf (that group's scale and zero become NaN, codes 0).
/// Preconditions (checked): config.validate(cols), shapes agree.
inline void quantize_on_device(DeviceMatrixRef weight, const float* col_scale, const QuantConfig& config,
                               DeviceQuantizedMatrix& out, unsigned* status, cudaStream_t stream,
                               QuantizeLaunchOptions options = {}) {
  config.validate(weight.cols);
  ttq::detail::require_shape(out.rows() == weight.rows && out.cols() == weight.cols && out.config().bits == config.bits &&
                                 out.config().group == config.group && out.config().format == config.format,
                             "out", "a DeviceQuantizedMatrix allocated for this weight and config", out.rows(), out.cols());
  ttq::detail::require_shape(weight.row_stride >= weight.cols, "weight", "row_stride >= cols", weight.rows, weight.cols);
  if (weight.rows == 0) return;
  detail::QuantizeArgs a;
  a.weight = weight.data;
  a.rows = weight.rows;
  a.cols = weight.cols;
  a.weight_stride = weight.row_stride;
  a.col_scale = col_scale;
  a.group_clip = options.group_clip;
  a.clip = config.clip;
  a.bits = config.bits;
  a.group = config.group;
  a.groups_per_row = out.groups_per_row();
  a.codes = out.codes();
  a.code_stride = out.code_stride();
  a.scales = out.scales();
  a.zeros = out.zeros();
  a.status = status;
  const std::size_t element = element_size(weight.type);
  a.vector_loads = reinterpret_cast<std::uintptr_t>(weight.data) % 16 == 0 &&
                   (static_cast<std::size_t>(weight.row_stride) * element) % 16 == 0;
  visit_format(config.format, [&](auto f) {
    detail::launch_quantize_format<decltype(f)>(a, weight.type, options.force_rows_kernel, stream);
  });
}

}  // namespace ttq::cuda
