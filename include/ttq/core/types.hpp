// Small vocabulary types shared by every ttq component: the `Dynamic` size marker, index type,
// non-owning matrix views, and the owning row-major matrix type results are returned in.
//
// Public APIs take `MatrixView<const float>` so engines can pass their own buffers (any row
// stride) without copying, and return `RowMatrix` (an Eigen row-major matrix) when they allocate.
#pragma once

#include <Eigen/Core>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>

#include "ttq/core/error.hpp"
#include "ttq/core/markers.hpp"

namespace ttq {

using Index = std::ptrdiff_t;

/// Owning row-major fp32 matrix; the type ttq returns results in.
using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Vector = Eigen::VectorXf;

/// Non-owning view of a row-major matrix: element (r, c) is `data[r * row_stride + c]`.
/// `row_stride >= cols`. A view never owns or frees memory; the caller keeps it alive.
template <class T>
struct MatrixView {
  T* data = nullptr;
  Index rows = 0;
  Index cols = 0;
  Index row_stride = 0;

  constexpr MatrixView() = default;
  constexpr MatrixView(T* d, Index r, Index c) : data(d), rows(r), cols(c), row_stride(c) {}
  constexpr MatrixView(T* d, Index r, Index c, Index stride) : data(d), rows(r), cols(c), row_stride(stride) {}

  /// Views an Eigen row-major matrix (const or not) without copying.
  template <class Derived>
    requires(std::is_same_v<std::remove_const_t<T>, typename Derived::Scalar> &&
             ((Derived::Flags & Eigen::RowMajorBit) != 0))
  MatrixView(Eigen::PlainObjectBase<Derived>& m)  // NOLINT(google-explicit-constructor)
      : data(m.data()), rows(m.rows()), cols(m.cols()), row_stride(m.cols()) {}
  template <class Derived>
    requires(std::is_const_v<T> && std::is_same_v<std::remove_const_t<T>, typename Derived::Scalar> &&
             ((Derived::Flags & Eigen::RowMajorBit) != 0))
  MatrixView(const Eigen::PlainObjectBase<Derived>& m)  // NOLINT(google-explicit-constructor)
      : data(m.data()), rows(m.rows()), cols(m.cols()), row_stride(m.cols()) {}

  /// A mutable view converts to a const one.
  constexpr operator MatrixView<const T>() const  // NOLINT(google-explicit-constructor)
    requires(!std::is_const_v<T>)
  {
    return {data, rows, cols, row_stride};
  }

  T* row(Index r) const { return data + r * row_stride; }
  T& operator()(Index r, Index c) const { return data[r * row_stride + c]; }

  /// Rows [first, first + count) as a view.
  MatrixView row_block(Index first, Index count) const { return {data + first * row_stride, count, cols, row_stride}; }
  /// Every `step`-th row (rows 0, step, 2 step, ...) as a view.
  MatrixView row_sample(Index step) const { return {data, (rows + step - 1) / step, cols, row_stride * step}; }
  /// Columns [first, first + count) as a view (same row stride).
  MatrixView col_block(Index first, Index count) const { return {data + first, rows, count, row_stride}; }
};

using ConstMatrixView = MatrixView<const float>;

namespace detail {

/// Validates a view's basic integrity (non-null data when non-empty, stride >= cols).
template <class T>
void require_valid_view(const MatrixView<T>& m, const char* argument) {
  if (m.rows < 0 || m.cols < 0) throw ShapeError(argument, "negative extent " + describe_shape(m.rows, m.cols));
  if (m.rows > 0 && m.cols > 0 && m.data == nullptr) throw ShapeError(argument, "null data for a non-empty matrix");
  if (m.row_stride < m.cols)
    throw ShapeError(argument, "row stride " + std::to_string(m.row_stride) + " is smaller than cols " +
                                   std::to_string(m.cols));
}

/// Whether every element of `m` is finite: the exponent bits of each float, an integer test
/// that the compiler vectorizes (std::isfinite per element would not be).
inline bool all_finite(ConstMatrixView m) {
  std::uint32_t non_finite = 0;
  for (Index r = 0; r < m.rows; ++r) {
    const float* row = m.row(r);
    for (Index c = 0; c < m.cols; ++c) {
      std::uint32_t bits;
      std::memcpy(&bits, row + c, sizeof bits);
      non_finite |= static_cast<std::uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
    }
  }
  return non_finite == 0;
}

/// Throws NonFiniteError naming the first NaN/Inf element of `m`.
inline void require_finite(ConstMatrixView m, const char* argument) {
  if (all_finite(m)) return;
  for (Index r = 0; r < m.rows; ++r) {
    const float* row = m.row(r);
    for (Index c = 0; c < m.cols; ++c) {
      if (!std::isfinite(row[c]))
        throw NonFiniteError(argument, "element (" + std::to_string(r) + ", " + std::to_string(c) + ") is " +
                                           std::to_string(row[c]) + "; finite values required");
    }
  }
}

inline void require_finite(std::span<const float> v, const char* argument) {
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (!std::isfinite(v[i]))
      throw NonFiniteError(argument, "element " + std::to_string(i) + " is " + std::to_string(v[i]) +
                                         "; finite values required");
  }
}

/// Copies a view into an owning matrix (contiguous rows).
inline RowMatrix to_matrix(ConstMatrixView m) {
  RowMatrix out(m.rows, m.cols);
  for (Index r = 0; r < m.rows; ++r)
    for (Index c = 0; c < m.cols; ++c) out(r, c) = m(r, c);
  return out;
}

inline Eigen::Map<const RowMatrix, 0, Eigen::OuterStride<>> as_eigen(ConstMatrixView m) {
  return {m.data, m.rows, m.cols, Eigen::OuterStride<>(m.row_stride)};
}
inline Eigen::Map<RowMatrix, 0, Eigen::OuterStride<>> as_eigen(MatrixView<float> m) {
  return {m.data, m.rows, m.cols, Eigen::OuterStride<>(m.row_stride)};
}

}  // namespace detail
}  // namespace ttq
