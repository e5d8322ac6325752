// Shared vocabulary of the CUDA backend: the error type and checks, the 16-bit element types the
// kernels accept and their exact widening to fp32, non-owning views of device matrices, the
// device status word, and DeviceBuffer, the RAII owner of every allocation the backend makes.
//
// Every allocation is stream-ordered (cudaMallocAsync / cudaFreeAsync): unlike cudaMalloc and
// cudaFree, these never synchronise the device, which is the backend's promise to its caller.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "ttq/core/error.hpp"
#include "ttq/core/host_device.hpp"
#include "ttq/core/types.hpp"

namespace ttq::cuda {

/// A CUDA runtime call failed (out of memory, invalid launch, a sticky error from an earlier
/// kernel...). `code()` is the CUDA error; what() names the call. A ttq::Error like every error
/// ttq throws (one root to catch), with no argument to blame.
class CudaError : public Error {
 public:
  CudaError(cudaError_t code, const std::string& what)
      : Error("", std::string("cuda: ") + what + ": " + cudaGetErrorName(code) + " (" + cudaGetErrorString(code) + ")"),
        code_(code) {}
  cudaError_t code() const noexcept { return code_; }

 private:
  cudaError_t code_;
};

namespace detail {

inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw CudaError(status, what);
}

/// Checks that a kernel launch was accepted (configuration errors surface here; faults inside
/// the kernel surface at the caller's next synchronisation, as always in CUDA).
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

}  // namespace detail

/// The element types of activations and weights the kernels read and write.
enum class ElementType : std::uint8_t { f32, f16, bf16 };

template <class T>
inline constexpr bool is_element_v =
    std::is_same_v<T, float> || std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>;

template <class T>
  requires is_element_v<T>
constexpr ElementType element_type_of() {
  if constexpr (std::is_same_v<T, float>) return ElementType::f32;
  else if constexpr (std::is_same_v<T, __half>) return ElementType::f16;
  else return ElementType::bf16;
}

inline constexpr std::size_t element_size(ElementType type) { return type == ElementType::f32 ? 4 : 2; }

inline const char* element_name(ElementType type) {
  switch (type) {
    case ElementType::f32: return "f32";
    case ElementType::f16: return "f16";
    case ElementType::bf16: return "bf16";
  }
  return "?";
}

namespace detail {

/// Exact widening to fp32 (fp16 and bf16 are subsets of fp32), as ttq's host BFloat16/Float16.
__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

/// Round-to-nearest-even narrowing of an fp32 result to the output type.
template <class T>
__device__ __forceinline__ T from_float(float v) {
  if constexpr (std::is_same_v<T, float>) return v;
  else if constexpr (std::is_same_v<T, __half>) return __float2half_rn(v);
  else return __float2bfloat16_rn(v);
}

}  // namespace detail

/// Non-owning view of a row-major matrix in device memory: element (r, c) is
/// data[r * row_stride + c], row_stride >= cols (in elements). The caller keeps it alive.
template <class T>
struct DeviceMatrixView {
  T* data = nullptr;
  Index rows = 0;
  Index cols = 0;
  Index row_stride = 0;

  constexpr DeviceMatrixView() = default;
  constexpr DeviceMatrixView(T* d, Index r, Index c) : data(d), rows(r), cols(c), row_stride(c) {}
  constexpr DeviceMatrixView(T* d, Index r, Index c, Index stride) : data(d), rows(r), cols(c), row_stride(stride) {}

  constexpr operator DeviceMatrixView<const T>() const  // NOLINT(google-explicit-constructor)
    requires(!std::is_const_v<T>)
  {
    return {data, rows, cols, row_stride};
  }
};

/// A device matrix whose element type is known at run time (f32, f16 or bf16): the weight the
/// quantize kernel reads. Kernels are dispatched on `type` once per call.
struct DeviceMatrixRef {
  const void* data = nullptr;
  Index rows = 0;
  Index cols = 0;
  Index row_stride = 0;  ///< in elements
  ElementType type = ElementType::f32;

  DeviceMatrixRef() = default;
  template <class T>
    requires is_element_v<std::remove_const_t<T>>
  DeviceMatrixRef(DeviceMatrixView<T> v)  // NOLINT(google-explicit-constructor)
      : data(v.data), rows(v.rows), cols(v.cols), row_stride(v.row_stride),
        type(element_type_of<std::remove_const_t<T>>()) {}
};

/// Bits of the device status word (see CudaOnlineAWQ::device_status): set by kernels that met a
/// NaN or Inf. The kernel that sets a bit also makes its output visibly invalid (NaN group
/// scales), so a non-finite input never becomes a valid-looking quantized weight.
enum StatusBits : unsigned {
  kStatusNonFiniteWeight = 1u,      ///< a scaled weight w * D was NaN/Inf: its group's scale is NaN
  kStatusNonFiniteActivation = 2u,  ///< an observed activation was NaN/Inf: the statistics are NaN/Inf
};

/// A stream-ordered device allocation of `count` elements of T, freed on the same stream when
/// destroyed. Move-only. Contents are uninitialised unless `zero()` is called.
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(std::size_t count, cudaStream_t stream) : count_(count), stream_(stream) {
    if (count_ > 0) detail::check(cudaMallocAsync(reinterpret_cast<void**>(&data_), count_ * sizeof(T), stream_), "cudaMallocAsync");
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept { swap(other); }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    DeviceBuffer(std::move(other)).swap(*this);
    return *this;
  }
  ~DeviceBuffer() {
    // Stream-ordered: the memory is released after the work already queued on the stream.
    if (data_ != nullptr) (void)cudaFreeAsync(data_, stream_);
  }

  T* data() const { return data_; }
  std::size_t size() const { return count_; }
  std::size_t bytes() const { return count_ * sizeof(T); }
  cudaStream_t stream() const { return stream_; }
  bool empty() const { return count_ == 0; }

  /// Sets every byte to zero (stream-ordered).
  void zero() {
    if (count_ > 0) detail::check(cudaMemsetAsync(data_, 0, bytes(), stream_), "cudaMemsetAsync");
  }
  /// Copies `count` elements from host memory (stream-ordered; from pageable memory the call may
  /// return only once the data is staged, as cudaMemcpyAsync does).
  void upload(const T* host, std::size_t count, std::size_t offset = 0) {
    if (count > 0)
      detail::check(cudaMemcpyAsync(data_ + offset, host, count * sizeof(T), cudaMemcpyHostToDevice, stream_),
                    "cudaMemcpyAsync (upload)");
  }

  void swap(DeviceBuffer& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(count_, other.count_);
    std::swap(stream_, other.stream_);
  }

 private:
  T* data_ = nullptr;
  std::size_t count_ = 0;
  cudaStream_t stream_ = nullptr;
};

/// Number of multiprocessors of the current device (the GEMV plans its grid for it).
inline int multiprocessor_count() {
  int device = 0;
  detail::check(cudaGetDevice(&device), "cudaGetDevice");
  int sms = 0;
  detail::check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
  return sms;
}

}  // namespace ttq::cuda
